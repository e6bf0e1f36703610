/*
 * ks_vmm_libvirt.c - the libvirt driver: plan -> domain XML, and virsh when a
 * connection URI is configured.
 *
 * XML (valid for libvirt 9.0's domain.rng, checked by virt-xml-validate in tests):
 *   <vcpu placement='static' [current=N]>slots</vcpu>, <cputune><vcpupin .../>,
 *   <numatune> (host NUMA node binding), <features><pmu state/>,
 *   <cpu mode='host-passthrough'|'maximum'|'custom'> with <topology sockets dies cores
 *   threads/> (no clusters attribute in the schema: folded, reported dropped),
 *   <feature policy='disable'|'require' name=libvirt-name/>, <numa><cell/>.
 * Every value is XML-escaped.  Without a URI the driver writes the XML to
 * <state_dir>/<vm>.xml and reports define/start/pinning as dropped (nothing runs).
 */
#include "ks_vmm_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ks_feature.h"

typedef struct xbuf {
    char *s;
    size_t len, cap;
    bool oom;
} xbuf;

static void xb_raw(xbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *ns = ncap <= (8u << 20) ? realloc(b->s, ncap) : NULL;
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = ncap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

/* printf into the buffer; %s arguments are NOT escaped: use xb_esc for values. */
static void xb_add(xbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void xb_add(xbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->oom = true; /* fixed markup only: longer means a bug, never user data */
        return;
    }
    xb_raw(b, tmp, (size_t)n);
}

static void xb_esc(xbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': xb_raw(b, "&amp;", 5); break;
        case '<': xb_raw(b, "&lt;", 4); break;
        case '>': xb_raw(b, "&gt;", 4); break;
        case '\'': xb_raw(b, "&apos;", 6); break;
        case '"': xb_raw(b, "&quot;", 6); break;
        default: xb_raw(b, s, 1);
        }
    }
}

static void numa_cpulist(char *buf, size_t cap, const ks_plan_numa *nd)
{
    uint8_t bits[KS_VM_MAX_VCPUS / 8] = {0};
    for (uint32_t k = 0; k < nd->n_vcpus; k++)
        bits[nd->vcpus[k] / 8] |= (uint8_t)(1u << (nd->vcpus[k] % 8));
    ks_vmm_cpulist(buf, cap, bits, KS_VM_MAX_VCPUS);
}

static void feature_elems(xbuf *b, const ks_featset *set, const char *policy, ks_vmm_result *res)
{
    for (int id = ks_featset_next(set, 0); id >= 0; id = ks_featset_next(set, (unsigned)id + 1)) {
        const ks_feature_info *fi = ks_feature_get((unsigned)id);
        char item[KS_VMM_ITEM_MAX];
        snprintf(item, sizeof(item), "feature.%s", fi ? fi->name : "?");
        if (!fi || !fi->libvirt) {
            ks_vmm_result_add(res, KS_VMM_DROPPED, item,
                              "no libvirt feature name: policy '%s' not expressed", policy);
            continue;
        }
        xb_add(b, "    <feature policy='%s' name='", policy);
        xb_esc(b, fi->libvirt);
        xb_raw(b, "'/>\n", 4);
        ks_vmm_result_add(res, KS_VMM_APPLIED, item, "<feature policy='%s' name='%s'/>", policy,
                          fi->libvirt);
    }
}

ks_code ks_vmm_libvirt_xml(char **out, const ks_plan *plan, const char *domain_type,
                           const char *machine, ks_vmm_result *res, ks_err *err)
{
    xbuf b = {0};
    ks_code rc = ks_vmm_plan_check(plan, err);
    if (rc != KS_OK)
        return rc;
    bool kvm = strcmp(domain_type, "kvm") == 0;
    if (!kvm && strcmp(domain_type, "qemu") != 0)
        return ks_err_set(err, KS_EINVAL, "libvirt domain type '%s' is not kvm or qemu",
                          domain_type);
    ks_vmm_topology topo;
    ks_vmm_topology_for(&topo, plan, false, "libvirt 9.0", res);
    uint32_t slots = topo.sockets * topo.dies * topo.cores * topo.threads;

    xb_add(&b, "<domain type='%s'>\n  <name>", domain_type);
    xb_esc(&b, plan->vm);
    xb_add(&b, "</name>\n  <memory unit='MiB'>%llu</memory>\n",
           (unsigned long long)plan->memory_mib);
    if (slots != plan->n_vcpus)
        xb_add(&b, "  <vcpu placement='static' current='%u'>%u</vcpu>\n", plan->n_vcpus, slots);
    else
        xb_add(&b, "  <vcpu placement='static'>%u</vcpu>\n", plan->n_vcpus);

    bool any_pin = false;
    for (uint32_t i = 0; i < plan->n_vcpus; i++)
        any_pin |= plan->vcpus[i].host_cpu >= 0;
    if (any_pin) {
        xb_add(&b, "  <cputune>\n");
        for (uint32_t i = 0; i < plan->n_vcpus; i++) {
            char item[KS_VMM_ITEM_MAX];
            snprintf(item, sizeof(item), "vcpu[%u].pin", i);
            if (plan->vcpus[i].host_cpu < 0) {
                ks_vmm_result_add(res, KS_VMM_DROPPED, item, "plan gives no host cpu: unpinned");
                continue;
            }
            xb_add(&b, "    <vcpupin vcpu='%u' cpuset='%d'/>\n", i, plan->vcpus[i].host_cpu);
        }
        xb_add(&b, "  </cputune>\n");
    }
    bool any_host_node = false;
    for (uint32_t n = 0; n < plan->n_numa; n++)
        any_host_node |= plan->numa[n].host_node >= 0;
    if (any_host_node && plan->n_numa == 1) {
        xb_add(&b, "  <numatune>\n    <memory mode='strict' nodeset='%d'/>\n  </numatune>\n",
               plan->numa[0].host_node);
    } else if (any_host_node) {
        xb_add(&b, "  <numatune>\n");
        for (uint32_t n = 0; n < plan->n_numa; n++)
            if (plan->numa[n].host_node >= 0)
                xb_add(&b, "    <memnode cellid='%u' mode='strict' nodeset='%d'/>\n", n,
                       plan->numa[n].host_node);
        xb_add(&b, "  </numatune>\n");
    }
    xb_add(&b, "  <os>\n    <type arch='x86_64' machine='");
    xb_esc(&b, machine);
    xb_add(&b, "'>hvm</type>\n  </os>\n");
    xb_add(&b, "  <features>\n    <acpi/>\n    <pmu state='%s'/>\n  </features>\n",
           plan->pmu.enabled ? "on" : "off");
    ks_vmm_result_add(res, KS_VMM_APPLIED, "pmu", "<pmu state='%s'/>",
                      plan->pmu.enabled ? "on" : "off");
    if (plan->pmu.n_allow || plan->pmu.n_deny)
        ks_vmm_result_add(res, KS_VMM_DROPPED, "pmu.filter",
                          "libvirt has no PMU event filter element: %u allow / %u deny rules not "
                          "applied",
                          plan->pmu.n_allow, plan->pmu.n_deny);

    const char *model = plan->cpu_model;
    bool host_like = !model[0] || strcmp(model, "host") == 0 || strcmp(model, "max") == 0;
    if (host_like && kvm && strcmp(model, "max") != 0)
        xb_add(&b, "  <cpu mode='host-passthrough' check='none' migratable='on'>\n");
    else if (host_like)
        xb_add(&b, "  <cpu mode='maximum' check='none' migratable='on'>\n");
    else {
        xb_add(&b, "  <cpu mode='custom' match='exact' check='partial'>\n"
                   "    <model fallback='forbid'>");
        xb_esc(&b, model);
        xb_add(&b, "</model>\n");
    }
    xb_add(&b, "    <topology sockets='%u' dies='%u' cores='%u' threads='%u'/>\n", topo.sockets,
           topo.dies, topo.cores, topo.threads);
    ks_vmm_result_add(res, KS_VMM_APPLIED, "topology",
                      "<topology sockets='%u' dies='%u' cores='%u' threads='%u'/>", topo.sockets,
                      topo.dies, topo.cores, topo.threads);
    if (!host_like)
        feature_elems(&b, &plan->visible, "require", res);
    feature_elems(&b, &plan->disable, "disable", res);
    if (plan->n_numa > 1) {
        xb_add(&b, "    <numa>\n");
        for (uint32_t n = 0; n < plan->n_numa; n++) {
            char list[4096];
            numa_cpulist(list, sizeof(list), &plan->numa[n]);
            xb_add(&b, "      <cell id='%u' cpus='", n);
            xb_esc(&b, list);
            xb_add(&b, "' memory='%llu' unit='MiB'/>\n",
                   (unsigned long long)plan->numa[n].memory_mib);
        }
        xb_add(&b, "    </numa>\n");
        ks_vmm_result_add(res, KS_VMM_APPLIED, "numa", "%u <cell> elements", plan->n_numa);
    }
    xb_add(&b, "  </cpu>\n</domain>\n");
    if (b.oom) {
        free(b.s);
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    }
    *out = b.s;
    return KS_OK;
}

/* ---------------------------------------------------------------- driver ops */

static ks_code write_file(const char *path, const char *text, ks_err *err)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    if (!f)
        return ks_err_set(err, KS_EIO, "cannot write '%s'", tmp);
    bool ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return ks_err_set(err, KS_EIO, "cannot write '%s'", path);
    }
    return KS_OK;
}

/* virsh -c URI args...; KS_EIO with virsh's output when it fails. */
static ks_code virsh(ks_vmm_driver *d, ks_err *err, const char *a1, const char *a2,
                     const char *a3, const char *a4, const char *a5)
{
    char *argv[] = {(char *)d->opts.virsh_binary, "-c", (char *)d->opts.libvirt_uri,
                    (char *)a1, (char *)a2, (char *)a3, (char *)a4, (char *)a5, NULL};
    char *outp = NULL;
    int status = -1;
    ks_code rc = ks_vmm__run(&outp, &status, argv, 30000000, err);
    if (rc == KS_OK && status != 0) {
        if (outp)
            outp[strcspn(outp, "\n")] = '\0';
        rc = ks_err_set(err, KS_EIO, "virsh %s failed: %s", a1, outp ? outp : "");
    }
    free(outp);
    return rc;
}

static ks_code lv_write(ks_vmm_driver *d, ks_vmm_vm *vm, const ks_plan *plan, ks_vmm_result *res,
                        ks_err *err)
{
    char *xml = NULL;
    ks_code rc = ks_vmm__path(vm->config, sizeof(vm->config), d, plan->vm, ".xml", err);
    if (rc == KS_OK)
        rc = ks_vmm_libvirt_xml(&xml, plan, "kvm", d->opts.machine, res, err);
    if (rc == KS_OK)
        rc = write_file(vm->config, xml, err);
    if (rc == KS_OK)
        ks_vmm_result_add(res, KS_VMM_APPLIED, "config", "domain XML written to %s", vm->config);
    free(xml);
    return rc;
}

static ks_code lv_create(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_result *res, ks_err *err)
{
    ks_code rc = lv_write(d, vm, vm->plan, res, err);
    if (rc != KS_OK)
        return rc;
    if (!d->opts.libvirt_uri) {
        ks_vmm_result_add(res, KS_VMM_DROPPED, "start",
                          "no libvirt URI configured: domain defined in XML only, not started");
        return KS_OK;
    }
    if ((rc = virsh(d, err, "define", vm->config, NULL, NULL, NULL)) != KS_OK) {
        ks_vmm_result_add(res, KS_VMM_FAILED, "define", "%s", err ? err->msg : "");
        return rc;
    }
    ks_vmm_result_add(res, KS_VMM_APPLIED, "define", "virsh define %s", vm->config);
    if ((rc = virsh(d, err, "start", vm->plan->vm, NULL, NULL, NULL)) != KS_OK) {
        ks_vmm_result_add(res, KS_VMM_FAILED, "start", "%s", err ? err->msg : "");
        virsh(d, NULL, "undefine", vm->plan->vm, NULL, NULL, NULL);
        return rc;
    }
    ks_vmm_result_add(res, KS_VMM_APPLIED, "start", "virsh start %s", vm->plan->vm);
    return KS_OK;
}

static ks_code lv_apply(ks_vmm_driver *d, ks_vmm_vm *vm, const ks_plan *plan, ks_vmm_result *res,
                        ks_err *err)
{
    ks_vmm_result xml_notes;
    ks_vmm_result_init(&xml_notes);
    ks_code rc = lv_write(d, vm, plan, &xml_notes, err);
    /* The new XML holds the whole plan, but only its dropped notes hold for the
     * running domain; the rest is pinned online or needs a restart. */
    for (uint32_t i = 0; i < xml_notes.n_notes; i++)
        if (xml_notes.notes[i].outcome == KS_VMM_DROPPED ||
            strcmp(xml_notes.notes[i].item, "config") == 0)
            ks_vmm_result_add(res, (ks_vmm_outcome)xml_notes.notes[i].outcome,
                              xml_notes.notes[i].item, "%s", xml_notes.notes[i].detail);
    ks_vmm_result_destroy(&xml_notes);
    if (rc != KS_OK)
        return rc;
    ks_vmm__restart_notes(vm->boot_plan, plan, res);
    uint32_t n = plan->n_vcpus < vm->boot_plan->n_vcpus ? plan->n_vcpus : vm->boot_plan->n_vcpus;
    for (uint32_t i = 0; i < n; i++) {
        int cpu = plan->vcpus[i].host_cpu, was = vm->plan->vcpus[i].host_cpu;
        if (cpu == was || cpu < 0)
            continue;
        char item[KS_VMM_ITEM_MAX], vc[16], hc[16];
        snprintf(item, sizeof(item), "vcpu[%u].pin", i);
        if (!d->opts.libvirt_uri) {
            ks_vmm_result_add(res, KS_VMM_DROPPED, item,
                              "no libvirt URI: host cpu %d -> %d only in the XML", was, cpu);
            continue;
        }
        snprintf(vc, sizeof(vc), "%u", i);
        snprintf(hc, sizeof(hc), "%d", cpu);
        if ((rc = virsh(d, err, "vcpupin", plan->vm, vc, hc, "--live")) != KS_OK) {
            ks_vmm_result_add(res, KS_VMM_FAILED, item, "%s", err ? err->msg : "");
            return rc;
        }
        ks_vmm_result_add(res, KS_VMM_APPLIED, item, "virsh vcpupin --live: host cpu %d -> %d",
                          was, cpu);
    }
    if (d->opts.libvirt_uri && (rc = virsh(d, err, "define", vm->config, NULL, NULL, NULL)))
        ks_vmm_result_add(res, KS_VMM_FAILED, "define", "%s", err ? err->msg : "");
    return rc;
}

static ks_code lv_query(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_state *out, ks_err *err)
{
    if (!d->opts.libvirt_uri) {
        out->running = false;
        return KS_OK;
    }
    char *argv[] = {(char *)d->opts.virsh_binary, "-c", (char *)d->opts.libvirt_uri, "domstate",
                    vm->plan->vm, NULL};
    char *text = NULL;
    int status = -1;
    ks_code rc = ks_vmm__run(&text, &status, argv, 10000000, err);
    if (rc == KS_OK && status != 0)
        rc = ks_err_set(err, KS_EUNAVAIL, "virsh domstate '%s' failed", vm->plan->vm);
    if (rc == KS_OK)
        out->running = strncmp(text, "running", 7) == 0;
    free(text);
    return rc;
}

static ks_code lv_destroy(ks_vmm_driver *d, ks_vmm_vm *vm, ks_err *err)
{
    ks_code rc = KS_OK;
    if (d->opts.libvirt_uri) {
        virsh(d, NULL, "destroy", vm->plan->vm, NULL, NULL, NULL); /* may not be running */
        rc = virsh(d, err, "undefine", vm->plan->vm, NULL, NULL, NULL);
    }
    if (vm->config[0])
        unlink(vm->config);
    return rc;
}

const ks_vmm_ops ks_vmm__libvirt_ops = {
    .name = "libvirt",
    .create = lv_create,
    .apply = lv_apply,
    .query = lv_query,
    .destroy = lv_destroy,
};
