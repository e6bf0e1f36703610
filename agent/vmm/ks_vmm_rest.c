/*
 * ks_vmm_rest.c - the Cloud Hypervisor and Firecracker drivers: JSON requests over
 * the VMM's unix API socket (libcurl CURLOPT_UNIX_SOCKET_PATH).
 *
 * Cloud Hypervisor (API 0.3.0): PUT /api/v1/vm.create with VmConfig {cpus:
 *   CpusConfig {boot_vcpus, max_vcpus, topology, affinity, features.amx}, memory,
 *   payload, numa}, PUT /api/v1/vm.boot when a kernel is configured, PUT
 *   /api/v1/vm.resize {desired_vcpus} for an online vCPU count change.  CH's API
 *   cannot re-pin a running vCPU or hide CPUID features other than AMX: those are
 *   reported needs_restart / dropped.
 * Firecracker (API 1.17): PUT /machine-config {vcpu_count, mem_size_mib, smt}, PUT
 *   /cpu-config with a custom CPU template clearing the CPUID bit of each hidden
 *   feature, then PUT /boot-source + PUT /actions InstanceStart when a kernel is
 *   configured.  Both configs are pre-boot only.  Firecracker has no vCPU affinity
 *   in its API: when the agent started the process it pins the "fc_vcpu N" threads
 *   itself (online moves too); otherwise pins are reported dropped.
 * The socket is <state_dir>/<vm>.<driver>.sock; when opts.vmm_binary is set the
 * driver starts the VMM itself on that socket.
 */
#include "ks_vmm_int.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ks_feature.h"

#define HTTP_TIMEOUT_US 10000000u
#define HTTP_MAX_REPLY (1u << 20)

/* ---------------------------------------------------------------- HTTP */

typedef struct reply {
    char *s;
    size_t len;
    bool too_big;
} reply;

static size_t on_data(char *ptr, size_t size, size_t n, void *ud)
{
    reply *r = ud;
    size_t add = size * n;
    if (r->len + add > HTTP_MAX_REPLY) {
        r->too_big = true;
        return 0;
    }
    char *ns = realloc(r->s, r->len + add + 1);
    if (!ns)
        return 0;
    memcpy(ns + r->len, ptr, add);
    r->s = ns;
    r->len += add;
    r->s[r->len] = '\0';
    return add;
}

ks_code ks_vmm__http(long *status, json_t **resp, const char *sock, const char *method,
                     const char *path, const json_t *body, uint64_t timeout_us, ks_err *err)
{
    ks_code rc = KS_OK;
    reply r = {0};
    char *payload = NULL;
    char url[512];
    struct curl_slist *hdrs = NULL;
    CURL *c = curl_easy_init();
    if (!c)
        return ks_err_set(err, KS_ENOMEM, "curl_easy_init failed");
    snprintf(url, sizeof(url), "http://localhost%s", path);
    if (body && !(payload = json_dumps(body, JSON_COMPACT))) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (payload)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload ? payload : "");
    if (!payload && strcmp(method, "GET") == 0)
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_us / 1000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        rc = ks_err_set(err, KS_EUNAVAIL, "%s %s on '%s': %s", method, path, sock,
                        r.too_big ? "reply too large" : curl_easy_strerror(cc));
        goto done;
    }
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    *status = code;
    json_t *doc = r.len ? json_loadb(r.s, r.len, 0, NULL) : NULL;
    if (code < 200 || code > 299) {
        const char *msg = json_string_value(json_object_get(doc, "fault_message"));
        if (r.s)
            r.s[strcspn(r.s, "\r\n")] = '\0';
        rc = ks_err_set(err, code >= 500 ? KS_EUNAVAIL : KS_EINVAL, "%s %s: HTTP %ld: %.160s",
                        method, path, code, msg ? msg : (r.s ? r.s : ""));
        json_decref(doc);
        goto done;
    }
    if (resp)
        *resp = doc;
    else
        json_decref(doc);
done:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    free(payload);
    free(r.s);
    return rc;
}

/* A PUT whose success becomes an applied note and failure a failed note. */
static ks_code put(const ks_vmm_vm *vm, const char *path, const json_t *body, const char *item,
                   ks_vmm_result *res, ks_err *err)
{
    long status = 0;
    ks_code rc = ks_vmm__http(&status, NULL, vm->sock, "PUT", path, body, HTTP_TIMEOUT_US, err);
    if (rc != KS_OK)
        ks_vmm_result_add(res, KS_VMM_FAILED, item, "%s", err ? err->msg : "request failed");
    else
        ks_vmm_result_add(res, KS_VMM_APPLIED, item, "PUT %s: HTTP %ld", path, status);
    return rc;
}

static ks_code rest_init(ks_vmm_driver *d, ks_err *err)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ks_err_set(err, KS_EINTERNAL, "curl_global_init failed");
    return KS_OK;
}

/* Sets vm->sock and, with opts.vmm_binary, starts the VMM and waits until `ping`
 * answers on the socket. */
static ks_code rest_open(ks_vmm_driver *d, ks_vmm_vm *vm, const char *suffix, const char *ping,
                         ks_vmm_result *res, ks_err *err)
{
    ks_code rc = ks_vmm__path(vm->sock, sizeof(vm->sock), d, vm->plan->vm, suffix, err);
    if (rc != KS_OK || !d->opts.vmm_binary)
        return rc;
    bool ch = strcmp(d->ops->name, "cloud-hypervisor") == 0;
    char sockarg[160];
    snprintf(sockarg, sizeof(sockarg), ch ? "path=%s" : "%s", vm->sock);
    char *argv[] = {(char *)d->opts.vmm_binary, ch ? "--api-socket" : "--api-sock", sockarg,
                    NULL};
    if ((rc = ks_vmm__path(vm->log, sizeof(vm->log), d, vm->plan->vm, ".log", err)) != KS_OK)
        return rc;
    unlink(vm->sock);
    if ((rc = ks_vmm__spawn(&vm->pid, argv, vm->log, err)) != KS_OK)
        return rc;
    uint64_t deadline = ks_vmm__now_us() + d->opts.start_timeout_us;
    for (;;) {
        long status;
        if (!ks_vmm__alive(vm)) {
            char tail[200];
            ks_vmm__log_tail(vm->log, tail, sizeof(tail));
            rc = ks_err_set(err, KS_EUNAVAIL, "%s exited at start: %s", d->opts.vmm_binary, tail);
            break;
        }
        if (access(vm->sock, F_OK) == 0 &&
            ks_vmm__http(&status, NULL, vm->sock, "GET", ping, NULL, 1000000, NULL) == KS_OK) {
            ks_vmm_result_add(res, KS_VMM_APPLIED, "start", "%s pid %d", d->opts.vmm_binary,
                              (int)vm->pid);
            return KS_OK;
        }
        if (ks_vmm__now_us() > deadline) {
            rc = ks_err_set(err, KS_EUNAVAIL, "%s did not answer on '%s'", d->opts.vmm_binary,
                            vm->sock);
            break;
        }
        ks_vmm__sleep_us(20000);
    }
    kill(vm->pid, SIGKILL);
    ks_vmm__reap(vm, 1000000);
    ks_vmm_result_add(res, KS_VMM_FAILED, "start", "%s", err ? err->msg : "");
    return rc;
}

static void rest_stop_process(ks_vmm_driver *d, ks_vmm_vm *vm)
{
    if (vm->pid > 0 && ks_vmm__alive(vm)) {
        kill(vm->pid, SIGTERM);
        ks_vmm__reap(vm, d->opts.stop_timeout_us);
    }
    if (vm->pid > 0)
        unlink(vm->sock);
}

static void note_pmu_dropped(const ks_plan *plan, const char *vmm, ks_vmm_result *res)
{
    if (plan->pmu.enabled || plan->pmu.n_allow || plan->pmu.n_deny)
        ks_vmm_result_add(res, KS_VMM_DROPPED, "pmu", "%s API has no vPMU or PMU event filter "
                          "control", vmm);
}

/* ---------------------------------------------------------------- Cloud Hypervisor */

static int feature_id(const char *name)
{
    unsigned id;
    return ks_feature_lookup(name, &id, NULL) == KS_OK ? (int)id : -1;
}

ks_code ks_vmm_ch_vm_config(json_t **out, const ks_plan *plan, const char *kernel,
                            const char *cmdline, ks_vmm_result *res, ks_err *err)
{
    ks_code rc = ks_vmm_plan_check(plan, err);
    if (rc != KS_OK)
        return rc;
    ks_vmm_topology topo;
    ks_vmm_topology_for(&topo, plan, false, "Cloud Hypervisor", res);
    uint32_t slots = topo.sockets * topo.dies * topo.cores * topo.threads;
    json_t *affinity = json_array();
    json_t *cfg = NULL;
    for (uint32_t i = 0; affinity && i < plan->n_vcpus; i++) {
        char item[KS_VMM_ITEM_MAX];
        snprintf(item, sizeof(item), "vcpu[%u].pin", i);
        if (plan->vcpus[i].host_cpu < 0) {
            ks_vmm_result_add(res, KS_VMM_DROPPED, item, "plan gives no host cpu: unpinned");
            continue;
        }
        json_array_append_new(affinity, json_pack("{s:i, s:[i]}", "vcpu", (int)i, "host_cpus",
                                                  plan->vcpus[i].host_cpu));
        ks_vmm_result_add(res, KS_VMM_APPLIED, item, "affinity host_cpus [%d]",
                          plan->vcpus[i].host_cpu);
    }
    /* AMX is the one CPUID feature CH's API controls (off unless asked for). */
    int amx = feature_id("amx_tile");
    bool want_amx = amx >= 0 && ks_featset_test(&plan->visible, (unsigned)amx) &&
                    !ks_featset_test(&plan->disable, (unsigned)amx);
    for (int id = ks_featset_next(&plan->disable, 0); id >= 0;
         id = ks_featset_next(&plan->disable, (unsigned)id + 1)) {
        const ks_feature_info *fi = ks_feature_get((unsigned)id);
        char item[KS_VMM_ITEM_MAX];
        snprintf(item, sizeof(item), "feature.%s", fi ? fi->name : "?");
        if (fi && strncmp(fi->name, "amx", 3) == 0)
            ks_vmm_result_add(res, KS_VMM_APPLIED, item, "cpus.features.amx=false");
        else
            ks_vmm_result_add(res, KS_VMM_DROPPED, item,
                              "Cloud Hypervisor API cannot hide this CPUID feature");
    }
    note_pmu_dropped(plan, "Cloud Hypervisor", res);
    json_t *cpus = json_pack("{s:i, s:i, s:{s:i, s:i, s:i, s:i}, s:o, s:{s:b}}", "boot_vcpus",
                             (int)plan->n_vcpus, "max_vcpus", (int)slots, "topology",
                             "threads_per_core", (int)topo.threads, "cores_per_die",
                             (int)topo.cores, "dies_per_package", (int)topo.dies, "packages",
                             (int)topo.sockets, "affinity", affinity, "features", "amx",
                             want_amx);
    affinity = NULL; /* stolen by "o" (also on failure) */
    json_t *payload = json_object();
    if (payload && kernel)
        json_object_set_new(payload, "kernel", json_string(kernel));
    if (payload && kernel && cmdline)
        json_object_set_new(payload, "cmdline", json_string(cmdline));
    cfg = json_pack("{s:o, s:{s:I}, s:o}", "cpus", cpus, "memory", "size",
                    (json_int_t)(plan->memory_mib << 20), "payload", payload);
    if (!cfg)
        goto oom;
    ks_vmm_result_add(res, KS_VMM_APPLIED, "topology",
                      "packages=%u dies_per_package=%u cores_per_die=%u threads_per_core=%u",
                      topo.sockets, topo.dies, topo.cores, topo.threads);
    ks_vmm_result_add(res, KS_VMM_APPLIED, "memory", "%llu MiB",
                      (unsigned long long)plan->memory_mib);
    if (plan->n_numa > 1) {
        json_t *numa = json_array();
        if (!numa || json_object_set_new(cfg, "numa", numa))
            goto oom;
        for (uint32_t n = 0; n < plan->n_numa; n++) {
            json_t *list = json_array();
            for (uint32_t k = 0; list && k < plan->numa[n].n_vcpus; k++)
                json_array_append_new(list, json_integer(plan->numa[n].vcpus[k]));
            if (!list || json_array_append_new(numa, json_pack("{s:i, s:o}", "guest_numa_id",
                                                               (int)n, "cpus", list)))
                goto oom;
        }
        ks_vmm_result_add(res, KS_VMM_APPLIED, "numa", "%u guest NUMA nodes (cpus)",
                          plan->n_numa);
        ks_vmm_result_add(res, KS_VMM_DROPPED, "numa.memory",
                          "per-node memory needs CH memory zones: not configured");
    }
    *out = cfg;
    return KS_OK;
oom:
    json_decref(affinity);
    json_decref(cfg);
    return ks_err_set(err, KS_ENOMEM, "out of memory");
}

static ks_code ch_create(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_result *res, ks_err *err)
{
    json_t *cfg = NULL;
    ks_vmm_result built;
    ks_vmm_result_init(&built);
    ks_code rc = ks_vmm_ch_vm_config(&cfg, vm->plan, d->opts.kernel, d->opts.cmdline, &built, err);
    if (rc != KS_OK)
        goto done;
    if ((rc = rest_open(d, vm, ".cloud-hypervisor.sock", "/api/v1/vmm.ping", res, err)) != KS_OK)
        goto done;
    if ((rc = put(vm, "/api/v1/vm.create", cfg, "create", res, err)) != KS_OK)
        goto done;
    ks_vmm_result_append(res, &built);
    if (!d->opts.kernel)
        ks_vmm_result_add(res, KS_VMM_DROPPED, "boot", "no guest kernel configured: created, "
                          "not booted");
    else if ((rc = put(vm, "/api/v1/vm.boot", NULL, "boot", res, err)) != KS_OK)
        goto done;
done:
    if (rc != KS_OK) {
        if (vm->sock[0] && !vm->pid) {
            long st;
            ks_vmm__http(&st, NULL, vm->sock, "PUT", "/api/v1/vm.delete", NULL, HTTP_TIMEOUT_US,
                         NULL);
        }
        rest_stop_process(d, vm);
    }
    json_decref(cfg);
    ks_vmm_result_destroy(&built);
    return rc;
}

/* max_vcpus the VM was created with (topology slots after folding). */
static uint32_t one_slot_count(const ks_plan *p)
{
    ks_vmm_topology t;
    ks_vmm_topology_for(&t, p, false, "Cloud Hypervisor", NULL);
    return t.sockets * t.dies * t.cores * t.threads;
}

static bool pins_differ(const ks_plan *a, const ks_plan *b)
{
    uint32_t n = a->n_vcpus < b->n_vcpus ? a->n_vcpus : b->n_vcpus;
    for (uint32_t i = 0; i < n; i++)
        if (a->vcpus[i].host_cpu != b->vcpus[i].host_cpu)
            return true;
    return false;
}

static ks_code ch_apply(ks_vmm_driver *d, ks_vmm_vm *vm, const ks_plan *plan, ks_vmm_result *res,
                        ks_err *err)
{
    ks_vmm_result diff;
    ks_vmm_result_init(&diff);
    ks_code rc = KS_OK;
    for (uint32_t i = 0; i < vm->standing.n_notes; i++)
        if (vm->standing.notes[i].outcome == KS_VMM_DROPPED)
            ks_vmm_result_add(res, KS_VMM_DROPPED, vm->standing.notes[i].item, "%s",
                              vm->standing.notes[i].detail);
    ks_vmm__restart_notes(vm->boot_plan, plan, &diff);
    uint32_t max = one_slot_count(vm->boot_plan);
    for (uint32_t i = 0; i < diff.n_notes; i++) {
        const ks_vmm_note *n = &diff.notes[i];
        /* A count change within max_vcpus is CH's vm.resize (vCPU hot-plug). */
        if (strcmp(n->item, "vcpus") == 0 && plan->n_vcpus <= max) {
            if (plan->n_vcpus == vm->plan->n_vcpus)
                continue;
            json_t *body = json_pack("{s:i}", "desired_vcpus", (int)plan->n_vcpus);
            rc = body ? put(vm, "/api/v1/vm.resize", body, "vcpus", res, err)
                      : ks_err_set(err, KS_ENOMEM, "out of memory");
            json_decref(body);
            if (rc != KS_OK)
                goto done;
            continue;
        }
        ks_vmm_result_add(res, (ks_vmm_outcome)n->outcome, n->item, "%s", n->detail);
    }
    if (pins_differ(vm->boot_plan, plan))
        ks_vmm_result_add(res, KS_VMM_NEEDS_RESTART, "vcpu.pin",
                          "Cloud Hypervisor's API sets vCPU affinity only at vm.create");
done:
    ks_vmm_result_destroy(&diff);
    return rc;
}

static ks_code ch_query(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_state *out, ks_err *err)
{
    json_t *info = NULL;
    long status = 0;
    ks_code rc = ks_vmm__http(&status, &info, vm->sock, "GET", "/api/v1/vm.info", NULL,
                              HTTP_TIMEOUT_US, err);
    if (rc != KS_OK)
        return rc;
    const char *state = json_string_value(json_object_get(info, "state"));
    out->running = state && strcmp(state, "Running") == 0;
    json_decref(info);
    return KS_OK;
}

static ks_code ch_destroy(ks_vmm_driver *d, ks_vmm_vm *vm, ks_err *err)
{
    long status;
    ks_code rc = ks_vmm__http(&status, NULL, vm->sock, "PUT", "/api/v1/vm.delete", NULL,
                              HTTP_TIMEOUT_US, err);
    if (vm->pid > 0) {
        ks_vmm__http(&status, NULL, vm->sock, "PUT", "/api/v1/vmm.shutdown", NULL, 1000000, NULL);
        rest_stop_process(d, vm);
    }
    return rc;
}

const ks_vmm_ops ks_vmm__ch_ops = {
    .name = "cloud-hypervisor",
    .init = rest_init,
    .create = ch_create,
    .apply = ch_apply,
    .query = ch_query,
    .destroy = ch_destroy,
};

/* ---------------------------------------------------------------- Firecracker */

ks_code ks_vmm_fc_machine_config(json_t **out, const ks_plan *plan, ks_vmm_result *res,
                                 ks_err *err)
{
    ks_code rc = ks_vmm_plan_check(plan, err);
    if (rc != KS_OK)
        return rc;
    uint32_t n = plan->n_vcpus;
    if (n > 32 || (n != 1 && n % 2 != 0))
        return ks_err_set_field(err, KS_EINVAL, "vcpus",
                                "firecracker needs 1 or an even number of vcpus up to 32, plan "
                                "has %u",
                                n);
    uint32_t threads = plan->topology.threads ? plan->topology.threads : 1;
    if (threads > 2)
        ks_vmm_result_add(res, KS_VMM_DROPPED, "topology.threads",
                          "firecracker SMT is 2 threads per core: threads=%u not expressible",
                          threads);
    if (plan->topology.sockets > 1 || plan->topology.dies > 1 || plan->topology.clusters > 1)
        ks_vmm_result_add(res, KS_VMM_DROPPED, "topology",
                          "firecracker guests see one socket and die: sockets=%u dies=%u "
                          "clusters=%u not expressed",
                          plan->topology.sockets, plan->topology.dies, plan->topology.clusters);
    bool smt = threads >= 2 && n % 2 == 0;
    json_t *mc = json_pack("{s:i, s:I, s:b}", "vcpu_count", (int)n, "mem_size_mib",
                           (json_int_t)plan->memory_mib, "smt", smt);
    if (!mc)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    ks_vmm_result_add(res, KS_VMM_APPLIED, "vcpus", "vcpu_count=%u smt=%s", n,
                      smt ? "true" : "false");
    ks_vmm_result_add(res, KS_VMM_APPLIED, "memory", "mem_size_mib=%llu",
                      (unsigned long long)plan->memory_mib);
    note_pmu_dropped(plan, "Firecracker", res);
    *out = mc;
    return KS_OK;
}

static const char *const reg_names[] = {"eax", "ebx", "ecx", "edx"};

/* One (leaf, subleaf, register) group of the template: the bits to clear. */
typedef struct cpuid_mask {
    uint32_t leaf, subleaf;
    uint8_t reg;
    bool has_subleaf;
    uint32_t clear;
} cpuid_mask;

static int mask_cmp(const void *a, const void *b)
{
    const cpuid_mask *x = a, *y = b;
    if (x->leaf != y->leaf)
        return x->leaf < y->leaf ? -1 : 1;
    if (x->subleaf != y->subleaf)
        return x->subleaf < y->subleaf ? -1 : 1;
    return (int)x->reg - (int)y->reg;
}

ks_code ks_vmm_fc_cpu_template(json_t **out, const ks_plan *plan, ks_vmm_result *res,
                               ks_err *err)
{
    cpuid_mask masks[KS_FEATSET_BITS];
    size_t n_masks = 0;
    ks_code rc = ks_vmm_plan_check(plan, err);
    if (rc != KS_OK)
        return rc;
    for (int id = ks_featset_next(&plan->disable, 0); id >= 0;
         id = ks_featset_next(&plan->disable, (unsigned)id + 1)) {
        const ks_feature_info *fi = ks_feature_get((unsigned)id);
        char item[KS_VMM_ITEM_MAX];
        snprintf(item, sizeof(item), "feature.%s", fi ? fi->name : "?");
        if (!fi || fi->arch != KS_ARCH_X86_64 || !fi->has_cpuid || fi->reg > KS_CPUID_EDX ||
            fi->bit > 31) {
            ks_vmm_result_add(res, KS_VMM_DROPPED, item,
                              "no CPUID location: a CPU template cannot hide it");
            continue;
        }
        bool has_sub = fi->subleaf != KS_CPUID_NO_SUBLEAF;
        uint32_t sub = has_sub ? fi->subleaf : 0;
        size_t k = 0;
        while (k < n_masks && !(masks[k].leaf == fi->leaf && masks[k].subleaf == sub &&
                                masks[k].reg == fi->reg))
            k++;
        if (k == n_masks)
            masks[n_masks++] = (cpuid_mask){fi->leaf, sub, fi->reg, has_sub, 0};
        masks[k].has_subleaf |= has_sub;
        masks[k].clear |= UINT32_C(1) << fi->bit;
        ks_vmm_result_add(res, KS_VMM_APPLIED, item, "cpuid 0x%x.0x%x %s bit %u cleared",
                          fi->leaf, sub, reg_names[fi->reg], fi->bit);
    }
    qsort(masks, n_masks, sizeof(masks[0]), mask_cmp);
    json_t *mods = json_array();
    json_t *leaf = NULL;
    for (size_t k = 0; mods && k < n_masks; k++) {
        if (k == 0 || masks[k].leaf != masks[k - 1].leaf ||
            masks[k].subleaf != masks[k - 1].subleaf) {
            char l[16], s[16];
            snprintf(l, sizeof(l), "0x%x", masks[k].leaf);
            snprintf(s, sizeof(s), "0x%x", masks[k].subleaf);
            /* KVM_CPUID_FLAG_SIGNIFCANT_INDEX (1) when the leaf is indexed by ECX. */
            leaf = json_pack("{s:s, s:s, s:i, s:[]}", "leaf", l, "subleaf", s, "flags",
                             masks[k].has_subleaf ? 1 : 0, "modifiers");
            if (!leaf || json_array_append_new(mods, leaf)) {
                json_decref(mods);
                return ks_err_set(err, KS_ENOMEM, "out of memory");
            }
        }
        char bitmap[35] = "0b";
        for (int bit = 31; bit >= 0; bit--)
            bitmap[2 + (31 - bit)] = (masks[k].clear >> bit) & 1 ? '0' : 'x';
        bitmap[34] = '\0';
        json_array_append_new(json_object_get(leaf, "modifiers"),
                              json_pack("{s:s, s:s}", "register", reg_names[masks[k].reg],
                                        "bitmap", bitmap));
    }
    json_t *tpl = mods ? json_pack("{s:o, s:[]}", "cpuid_modifiers", mods, "msr_modifiers")
                       : NULL;
    if (!tpl)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    *out = tpl;
    return KS_OK;
}

static ks_code fc_configure(ks_vmm_vm *vm, const ks_plan *plan, ks_vmm_result *res, ks_err *err)
{
    json_t *mc = NULL, *tpl = NULL;
    ks_vmm_result built;
    ks_vmm_result_init(&built);
    ks_code rc;
    if ((rc = ks_vmm_fc_machine_config(&mc, plan, &built, err)) != KS_OK ||
        (rc = ks_vmm_fc_cpu_template(&tpl, plan, &built, err)) != KS_OK)
        goto done;
    if ((rc = put(vm, "/machine-config", mc, "machine-config", res, err)) != KS_OK ||
        (rc = put(vm, "/cpu-config", tpl, "cpu-config", res, err)) != KS_OK)
        goto done;
    ks_vmm_result_append(res, &built);
done:
    /* Dropped items stay dropped whatever the requests did. */
    if (rc != KS_OK)
        for (uint32_t i = 0; i < built.n_notes; i++)
            if (built.notes[i].outcome == KS_VMM_DROPPED)
                ks_vmm_result_add(res, KS_VMM_DROPPED, built.notes[i].item, "%s",
                                  built.notes[i].detail);
    json_decref(mc);
    json_decref(tpl);
    ks_vmm_result_destroy(&built);
    return rc;
}

/* Firecracker's API has no vCPU affinity, but its vCPU threads are named "fc_vcpu N":
 * when the agent started the process (and the guest runs) it pins them itself.
 * Only vCPUs whose pin differs from `prev` are touched (prev NULL: all). */
static ks_code fc_pin(ks_vmm_vm *vm, const ks_plan *plan, const ks_plan *prev, bool booted,
                      ks_vmm_result *res, ks_err *err)
{
    for (uint32_t i = 0; i < plan->n_vcpus; i++) {
        int cpu = plan->vcpus[i].host_cpu;
        int was = prev && i < prev->n_vcpus ? prev->vcpus[i].host_cpu : -2;
        char item[KS_VMM_ITEM_MAX], name[24], got[128], want[16];
        bool can_pin = vm->pid > 0 && booted;
        /* What cannot be pinned is reported for every vCPU, so it stays standing. */
        if (cpu < 0 || (cpu == was && can_pin))
            continue;
        snprintf(item, sizeof(item), "vcpu[%u].pin", i);
        if (!can_pin) {
            ks_vmm_result_add(res, KS_VMM_DROPPED, item,
                              "firecracker API has no vCPU affinity and %s: host cpu %d not "
                              "applied",
                              vm->pid <= 0 ? "the agent did not start this firecracker"
                                           : "the guest is not started",
                              cpu);
            continue;
        }
        snprintf(name, sizeof(name), "fc_vcpu %u", i);
        pid_t tid = 0;
        uint64_t deadline = ks_vmm__now_us() + 2000000;
        while ((tid = ks_vmm__thread_by_name(vm->pid, name)) == 0 && ks_vmm__now_us() < deadline)
            ks_vmm__sleep_us(10000);
        if (tid == 0) {
            ks_vmm_result_add(res, KS_VMM_FAILED, item, "no thread '%s' in firecracker pid %d",
                              name, (int)vm->pid);
            return ks_err_set(err, KS_EUNAVAIL, "no thread '%s' in firecracker pid %d", name,
                              (int)vm->pid);
        }
        ks_code rc = ks_vmm__pin(tid, cpu, err);
        if (rc == KS_OK)
            rc = ks_vmm__affinity(got, sizeof(got), vm->pid, tid, err);
        snprintf(want, sizeof(want), "%d", cpu);
        if (rc == KS_OK && strcmp(got, want) != 0)
            rc = ks_err_set(err, KS_EIO, "thread '%s': affinity is '%s', wanted '%s'", name, got,
                            want);
        if (rc != KS_OK) {
            ks_vmm_result_add(res, KS_VMM_FAILED, item, "%s", err ? err->msg : "pinning failed");
            return rc;
        }
        ks_vmm_result_add(res, KS_VMM_APPLIED, item, "thread '%s' (%d) pinned to host cpu %d%s",
                          name, (int)tid, cpu, was >= -1 ? " online" : "");
    }
    return KS_OK;
}

static ks_code fc_create(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_result *res, ks_err *err)
{
    json_t *mc = NULL;
    ks_vmm_result scratch;
    ks_vmm_result_init(&scratch);
    /* Validate before touching the VMM: a bad vCPU count must not start anything. */
    ks_code rc = ks_vmm_fc_machine_config(&mc, vm->plan, &scratch, err);
    json_decref(mc);
    ks_vmm_result_destroy(&scratch);
    if (rc != KS_OK)
        return rc;
    if ((rc = rest_open(d, vm, ".firecracker.sock", "/", res, err)) != KS_OK)
        return rc;
    if ((rc = fc_configure(vm, vm->plan, res, err)) != KS_OK)
        goto done;
    if (!d->opts.kernel) {
        ks_vmm_result_add(res, KS_VMM_DROPPED, "boot",
                          "no guest kernel configured: configured, not started");
        rc = fc_pin(vm, vm->plan, NULL, false, res, err);
        goto done;
    }
    json_t *bs = json_pack("{s:s}", "kernel_image_path", d->opts.kernel);
    if (bs && d->opts.cmdline)
        json_object_set_new(bs, "boot_args", json_string(d->opts.cmdline));
    json_t *act = json_pack("{s:s}", "action_type", "InstanceStart");
    if (!bs || !act)
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
    if (rc == KS_OK)
        rc = put(vm, "/boot-source", bs, "boot-source", res, err);
    if (rc == KS_OK)
        rc = put(vm, "/actions", act, "boot", res, err);
    if (rc == KS_OK)
        rc = fc_pin(vm, vm->plan, NULL, true, res, err);
    json_decref(bs);
    json_decref(act);
done:
    if (rc != KS_OK)
        rest_stop_process(d, vm);
    return rc;
}

static ks_code fc_apply(ks_vmm_driver *d, ks_vmm_vm *vm, const ks_plan *plan, ks_vmm_result *res,
                        ks_err *err)
{
    json_t *mc = NULL;
    ks_vmm_result scratch;
    ks_vmm_result_init(&scratch);
    ks_code rc = ks_vmm_fc_machine_config(&mc, plan, &scratch, err);
    json_decref(mc);
    ks_vmm_result_destroy(&scratch);
    if (rc != KS_OK)
        return rc;
    if (!d->opts.kernel) {
        /* Not booted: machine-config and cpu-config may still be replaced. */
        rc = fc_configure(vm, plan, res, err);
        return rc == KS_OK ? fc_pin(vm, plan, vm->plan, false, res, err) : rc;
    }
    for (uint32_t i = 0; i < vm->standing.n_notes; i++)
        if (vm->standing.notes[i].outcome == KS_VMM_DROPPED &&
            strncmp(vm->standing.notes[i].item, "vcpu[", 5) != 0)
            ks_vmm_result_add(res, KS_VMM_DROPPED, vm->standing.notes[i].item, "%s",
                              vm->standing.notes[i].detail);
    ks_vmm__restart_notes(vm->boot_plan, plan, res);
    return fc_pin(vm, plan, vm->plan, true, res, err);
}

static ks_code fc_query(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_state *out, ks_err *err)
{
    json_t *info = NULL;
    long status = 0;
    ks_code rc = ks_vmm__http(&status, &info, vm->sock, "GET", "/", NULL, HTTP_TIMEOUT_US, err);
    if (rc != KS_OK)
        return rc;
    const char *state = json_string_value(json_object_get(info, "state"));
    out->running = state && strcmp(state, "Running") == 0;
    json_decref(info);
    for (uint32_t i = 0; vm->pid > 0 && ks_vmm__alive(vm) && i < out->n_vcpus; i++) {
        char name[24];
        snprintf(name, sizeof(name), "fc_vcpu %u", i);
        pid_t tid = ks_vmm__thread_by_name(vm->pid, name);
        out->vcpus[i].thread_id = tid;
        if (tid <= 0 || ks_vmm__affinity(out->vcpus[i].affinity, sizeof(out->vcpus[i].affinity),
                                         vm->pid, tid, NULL) != KS_OK)
            out->vcpus[i].affinity[0] = '\0';
    }
    return KS_OK;
}

static ks_code fc_destroy(ks_vmm_driver *d, ks_vmm_vm *vm, ks_err *err)
{
    /* Firecracker's API has no shutdown on x86 besides the guest's own; stopping is
     * killing the process, which only we can do when we started it. */
    rest_stop_process(d, vm);
    return KS_OK;
}

const ks_vmm_ops ks_vmm__fc_ops = {
    .name = "firecracker",
    .init = rest_init,
    .create = fc_create,
    .apply = fc_apply,
    .query = fc_query,
    .destroy = fc_destroy,
};
