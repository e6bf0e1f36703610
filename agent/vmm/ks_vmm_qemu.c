/*
 * ks_vmm_qemu.c - the QEMU driver: plan -> command line, start, QMP, pinning.
 *
 * Mapping (ks_vmm_qemu_argv):
 *   -name VM,debug-threads=on   vCPU threads are named "CPU n/KVM|TCG"
 *   -machine M -accel kvm|tcg    kvm when /dev/kvm works (or forced), else tcg
 *   -cpu host|max|MODEL,-f,...   "host" needs KVM and becomes "max" under TCG; every
 *                                feature of plan->disable with a QEMU name known to
 *                                this binary is removed; a named model additionally
 *                                gets +f for plan->visible; pmu=on|off
 *   -smp N[,maxcpus=P],sockets,dies[,clusters],cores,threads
 *                                clusters only when the binary supports it on x86
 *                                (QEMU >= 9.0); otherwise ks_vmm_topology_for folds
 *                                them and a dropped note says how
 *   -m MiB, -object memory-backend-ram + -numa node,... for plans with > 1 node
 *   -nographic -nodefaults -qmp unix:SOCK,server=on,wait=off -pidfile FILE
 * Online (ks_vmm_apply): vCPU threads are re-pinned with sched_setaffinity (same
 * QEMU process); more vCPUs within the -smp maxcpus slots are hot-plugged
 * (device_add); anything else that differs from the plan QEMU was started with is
 * reported needs_restart.  PMU event filters are never applied (QEMU 7.2 has no
 * interface for KVM_SET_PMU_EVENT_FILTER, and TCG has no PMU): reported dropped.
 *
 * The QEMU process is our child (posix_spawn, new session, output in
 * <state_dir>/<vm>.log); QMP connections are opened per operation.
 */
#include "ks_vmm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ks_feature.h"
#include "ks_qmp.h"

#define QMP_TIMEOUT_US 5000000u

/* ---------------------------------------------------------------- probing */

void ks_vmm_qemu_caps_destroy(ks_vmm_qemu_caps *c)
{
    if (!c)
        return;
    free(c->known_flags);
    c->known_flags = NULL;
}

/* /dev/kvm answers and lets us create a VM: the cheapest check that KVM works. */
static bool kvm_usable(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
    if (ok) {
        int vm = ioctl(fd, KVM_CREATE_VM, 0);
        ok = vm >= 0;
        if (vm >= 0)
            close(vm);
    }
    close(fd);
    return ok;
}

ks_code ks_vmm_qemu_probe(ks_vmm_qemu_caps *out, const char *binary, const char *accel,
                          ks_err *err)
{
    ks_vmm_qemu_caps c = {0};
    char *text = NULL;
    int status = 0;
    ks_code rc = KS_OK;
    char *vargv[] = {(char *)binary, "-version", NULL};
    char *hargv[] = {(char *)binary, "-cpu", "help", NULL};

    if (strcmp(accel, "kvm") == 0)
        c.kvm = true;
    else if (strcmp(accel, "tcg") == 0)
        c.kvm = false;
    else if (strcmp(accel, "auto") == 0)
        c.kvm = kvm_usable();
    else
        return ks_err_set_field(err, KS_EINVAL, "accel", "accel '%s' is not auto, kvm or tcg",
                                accel);
    if ((rc = ks_vmm__run(&text, &status, vargv, 10000000, err)) != KS_OK)
        goto done;
    const char *v = strstr(text, "version ");
    if (status != 0 || !v || sscanf(v + 8, "%d.%d.%d", &c.major, &c.minor, &c.micro) < 2) {
        rc = ks_err_set(err, KS_EUNAVAIL, "'%s -version' did not report a QEMU version", binary);
        goto done;
    }
    /* x86 gained -smp clusters= in QEMU 9.0 (7.2 rejects it: PLATFORM.md). */
    c.clusters = c.major >= 9;
    free(text);
    text = NULL;
    if ((rc = ks_vmm__run(&text, &status, hargv, 10000000, err)) != KS_OK)
        goto done;
    const char *flags = strstr(text, "Recognized CPUID flags:");
    if (status == 0 && flags) {
        flags += strlen("Recognized CPUID flags:");
        size_t n = strlen(flags);
        c.known_flags = malloc(n + 3);
        if (!c.known_flags) {
            rc = ks_err_set(err, KS_ENOMEM, "out of memory");
            goto done;
        }
        /* One space-separated list with a space at both ends, for " name " lookups. */
        size_t o = 0;
        c.known_flags[o++] = ' ';
        for (size_t i = 0; i < n; i++) {
            char ch = flags[i];
            if (ch == ' ' || ch == '\n' || ch == '\t') {
                if (c.known_flags[o - 1] != ' ')
                    c.known_flags[o++] = ' ';
            } else {
                c.known_flags[o++] = ch;
            }
        }
        if (c.known_flags[o - 1] != ' ')
            c.known_flags[o++] = ' ';
        c.known_flags[o] = '\0';
    }
    *out = c;
    c.known_flags = NULL;
done:
    free(text);
    ks_vmm_qemu_caps_destroy(&c);
    return rc;
}

static bool flag_known(const ks_vmm_qemu_caps *caps, const char *name)
{
    if (!caps->known_flags)
        return true;
    char key[96];
    snprintf(key, sizeof(key), " %s ", name);
    return strstr(caps->known_flags, key) != NULL;
}

/* ---------------------------------------------------------------- argv */

static ks_code argv_add(ks_vmm_argv *a, ks_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ks_code argv_add(ks_vmm_argv *a, ks_err *err, const char *fmt, ...)
{
    if (a->n + 2 > a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 32;
        char **nv = realloc(a->v, ncap * sizeof(*nv));
        if (!nv)
            return ks_err_set(err, KS_ENOMEM, "out of memory");
        a->v = nv;
        a->cap = ncap;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&a->v[a->n], fmt, ap);
    va_end(ap);
    if (n < 0)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    a->v[++a->n] = NULL;
    return KS_OK;
}

/* A growable string for option values; cap 1 MiB. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (int tries = 0; tries < 2 && !b->oom; tries++) {
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->s && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = (b->cap ? b->cap : 256);
        while (ncap < b->len + (size_t)n + 1)
            ncap *= 2;
        char *ns = ncap <= (1u << 20) ? realloc(b->s, ncap) : NULL;
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = ncap;
    }
}

static bool is_host_like(const char *model)
{
    return !model[0] || strcmp(model, "host") == 0 || strcmp(model, "max") == 0;
}

/* CPU list of a NUMA node as QEMU wants it: "cpus=0-1,cpus=4". */
static void numa_cpus(sbuf *b, const ks_plan_numa *nd)
{
    uint8_t bits[KS_VM_MAX_VCPUS / 8] = {0};
    for (uint32_t k = 0; k < nd->n_vcpus; k++)
        bits[nd->vcpus[k] / 8] |= (uint8_t)(1u << (nd->vcpus[k] % 8));
    char list[4096];
    ks_vmm_cpulist(list, sizeof(list), bits, KS_VM_MAX_VCPUS);
    for (char *tok = list, *next; tok && *tok; tok = next) {
        next = strchr(tok, ',');
        if (next)
            *next++ = '\0';
        sb_add(b, ",cpus=%s", tok);
    }
}

ks_code ks_vmm_qemu_argv(ks_vmm_argv *out, const ks_plan *plan, const ks_vmm_qemu_caps *caps,
                         const ks_vmm_qemu_paths *paths, ks_vmm_result *res, ks_err *err)
{
    ks_vmm_argv a = {0};
    sbuf cpu = {0}, smp = {0};
    ks_code rc = ks_vmm_plan_check(plan, err);
    if (rc != KS_OK)
        goto done;

    const char *model = plan->cpu_model;
    bool host_like = is_host_like(model);
    const char *qmodel = model[0] ? model : "host";
    if (strcmp(qmodel, "host") == 0 && !caps->kvm) {
        qmodel = "max";
        ks_vmm_result_add(res, KS_VMM_APPLIED, "features.model",
                          "cpu model 'host' needs KVM: using 'max' under TCG");
    } else {
        ks_vmm_result_add(res, KS_VMM_APPLIED, "features.model", "-cpu %s", qmodel);
    }
    sb_add(&cpu, "%s", qmodel);
    for (int id = ks_featset_next(&plan->disable, 0); id >= 0;
         id = ks_featset_next(&plan->disable, (unsigned)id + 1)) {
        const ks_feature_info *fi = ks_feature_get((unsigned)id);
        char item[KS_VMM_ITEM_MAX];
        snprintf(item, sizeof(item), "feature.%s", fi ? fi->name : "?");
        if (!fi || !fi->qemu)
            ks_vmm_result_add(res, KS_VMM_DROPPED, item,
                              "no QEMU -cpu property: cannot be hidden, the guest may see it");
        else if (!flag_known(caps, fi->qemu))
            ks_vmm_result_add(res, KS_VMM_DROPPED, item,
                              "'%s' is not a CPUID flag of this QEMU %d.%d: cannot be hidden",
                              fi->qemu, caps->major, caps->minor);
        else {
            sb_add(&cpu, ",-%s", fi->qemu);
            ks_vmm_result_add(res, KS_VMM_APPLIED, item, "hidden: -cpu %s,-%s", qmodel, fi->qemu);
        }
    }
    if (!host_like) {
        for (int id = ks_featset_next(&plan->visible, 0); id >= 0;
             id = ks_featset_next(&plan->visible, (unsigned)id + 1)) {
            const ks_feature_info *fi = ks_feature_get((unsigned)id);
            char item[KS_VMM_ITEM_MAX];
            snprintf(item, sizeof(item), "feature.%s", fi ? fi->name : "?");
            if (!fi || !fi->qemu || !flag_known(caps, fi->qemu))
                ks_vmm_result_add(res, KS_VMM_DROPPED, item,
                                  "no QEMU -cpu property known: not added to model '%s'", qmodel);
            else
                sb_add(&cpu, ",+%s", fi->qemu);
        }
    }
    sb_add(&cpu, ",pmu=%s", plan->pmu.enabled ? "on" : "off");
    ks_vmm_result_add(res, KS_VMM_APPLIED, "pmu",
                      "pmu=%s%s", plan->pmu.enabled ? "on" : "off",
                      plan->pmu.enabled && !caps->kvm ? " (TCG emulates no PMU counters)" : "");
    if ((plan->pmu.n_allow || plan->pmu.n_deny) && caps->kvm)
        ks_vmm_result_add(res, KS_VMM_DROPPED, "pmu.filter",
                          "QEMU %d.%d has no PMU event filter interface (KVM_SET_PMU_EVENT_FILTER)"
                          ": %u allow / %u deny rules not applied",
                          caps->major, caps->minor, plan->pmu.n_allow, plan->pmu.n_deny);
    else if (plan->pmu.n_allow || plan->pmu.n_deny)
        ks_vmm_result_add(res, KS_VMM_DROPPED, "pmu.filter",
                          "PMU event filter needs KVM: %u allow / %u deny rules not applied "
                          "under TCG",
                          plan->pmu.n_allow, plan->pmu.n_deny);
    if (plan->pmu.gp_counters > 0 || plan->pmu.version > 0)
        ks_vmm_result_add(res, KS_VMM_DROPPED, "pmu.counters",
                          "QEMU -cpu cannot set PMU version %d / %d counters: guest gets the "
                          "host's",
                          plan->pmu.version, plan->pmu.gp_counters);

    ks_vmm_topology topo;
    ks_vmm_topology_for(&topo, plan, caps->clusters, "QEMU x86", res);
    uint32_t slots = topo.sockets * topo.dies * topo.clusters * topo.cores * topo.threads;
    sb_add(&smp, "%u", plan->n_vcpus);
    if (slots != plan->n_vcpus)
        sb_add(&smp, ",maxcpus=%u", slots);
    sb_add(&smp, ",sockets=%u,dies=%u", topo.sockets, topo.dies);
    if (topo.clusters > 1)
        sb_add(&smp, ",clusters=%u", topo.clusters);
    sb_add(&smp, ",cores=%u,threads=%u", topo.cores, topo.threads);
    ks_vmm_result_add(res, KS_VMM_APPLIED, "topology", "-smp %s", smp.s ? smp.s : "");
    if (cpu.oom || smp.oom) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }

    if ((rc = argv_add(&a, err, "%s", paths->binary)) ||
        (rc = argv_add(&a, err, "-name")) ||
        (rc = argv_add(&a, err, "%s,debug-threads=on", plan->vm)) ||
        (rc = argv_add(&a, err, "-machine")) ||
        (rc = argv_add(&a, err, "%s", paths->machine)) ||
        (rc = argv_add(&a, err, "-accel")) ||
        (rc = argv_add(&a, err, "%s", caps->kvm ? "kvm" : "tcg")) ||
        (rc = argv_add(&a, err, "-cpu")) || (rc = argv_add(&a, err, "%s", cpu.s)) ||
        (rc = argv_add(&a, err, "-smp")) || (rc = argv_add(&a, err, "%s", smp.s)) ||
        (rc = argv_add(&a, err, "-m")) ||
        (rc = argv_add(&a, err, "%lluM", (unsigned long long)plan->memory_mib)))
        goto done;
    ks_vmm_result_add(res, KS_VMM_APPLIED, "memory", "-m %lluM",
                      (unsigned long long)plan->memory_mib);
    if (plan->n_numa > 1) {
        for (uint32_t n = 0; n < plan->n_numa; n++) {
            const ks_plan_numa *nd = &plan->numa[n];
            sbuf obj = {0}, node = {0};
            sb_add(&obj, "memory-backend-ram,id=ks-mem%u,size=%lluM", n,
                   (unsigned long long)nd->memory_mib);
            if (nd->host_node >= 0)
                sb_add(&obj, ",host-nodes=%d,policy=bind", nd->host_node);
            sb_add(&node, "node,nodeid=%d", nd->node);
            numa_cpus(&node, nd);
            sb_add(&node, ",memdev=ks-mem%u", n);
            if (!obj.oom && !node.oom && !(rc = argv_add(&a, err, "-object")) &&
                !(rc = argv_add(&a, err, "%s", obj.s)) && !(rc = argv_add(&a, err, "-numa")))
                rc = argv_add(&a, err, "%s", node.s);
            else if (!rc)
                rc = ks_err_set(err, KS_ENOMEM, "out of memory");
            free(obj.s);
            free(node.s);
            if (rc)
                goto done;
        }
        ks_vmm_result_add(res, KS_VMM_APPLIED, "numa", "%u guest NUMA nodes", plan->n_numa);
    }
    if ((rc = argv_add(&a, err, "-nographic")) || (rc = argv_add(&a, err, "-nodefaults")) ||
        (rc = argv_add(&a, err, "-qmp")) ||
        (rc = argv_add(&a, err, "unix:%s,server=on,wait=off", paths->qmp_socket)) ||
        (rc = argv_add(&a, err, "-pidfile")) || (rc = argv_add(&a, err, "%s", paths->pidfile)))
        goto done;
    *out = a;
    memset(&a, 0, sizeof(a));
done:
    ks_vmm_argv_destroy(&a);
    free(cpu.s);
    free(smp.s);
    return rc;
}

/* ---------------------------------------------------------------- QMP helpers */

typedef struct vcpu_thread {
    int64_t tid;
    char qom_path[128];
} vcpu_thread;

/* query-cpus-fast -> threads[cpu-index]; *n_found = how many were listed. */
static ks_code vcpu_threads(vcpu_thread *threads, uint32_t n, ks_qmp *q, ks_err *err)
{
    json_t *ret = NULL;
    ks_code rc = ks_qmp_execute(&ret, q, "query-cpus-fast", NULL, QMP_TIMEOUT_US, err);
    if (rc != KS_OK)
        return rc;
    memset(threads, 0, n * sizeof(*threads));
    size_t i;
    json_t *e;
    json_array_foreach(ret, i, e)
    {
        json_int_t idx = json_integer_value(json_object_get(e, "cpu-index"));
        if (idx < 0 || (uint64_t)idx >= n)
            continue;
        threads[idx].tid = json_integer_value(json_object_get(e, "thread-id"));
        const char *p = json_string_value(json_object_get(e, "qom-path"));
        snprintf(threads[idx].qom_path, sizeof(threads[idx].qom_path), "%s", p ? p : "");
    }
    json_decref(ret);
    for (uint32_t k = 0; k < n; k++)
        if (threads[k].tid <= 0)
            return ks_err_set(err, KS_EUNAVAIL, "qemu reports no thread for vcpu %u", k);
    return KS_OK;
}

/* Pins the vCPU threads of `plan` and reads the affinity back.  Only vCPUs whose pin
 * differs from `prev` get a note (prev NULL: all). */
static ks_code pin_vcpus(ks_vmm_vm *vm, ks_qmp *q, const ks_plan *plan, const ks_plan *prev,
                         uint32_t n_running, ks_vmm_result *res, ks_err *err)
{
    ks_code rc = KS_OK;
    uint32_t n = plan->n_vcpus < n_running ? plan->n_vcpus : n_running;
    vcpu_thread *th = calloc(n_running, sizeof(*th));
    if (!th)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    if ((rc = vcpu_threads(th, n_running, q, err)) != KS_OK)
        goto done;
    for (uint32_t i = 0; i < n; i++) {
        int cpu = plan->vcpus[i].host_cpu;
        int was = prev && i < prev->n_vcpus ? prev->vcpus[i].host_cpu : -2;
        char item[KS_VMM_ITEM_MAX], got[128], want[16];
        snprintf(item, sizeof(item), "vcpu[%u].pin", i);
        if (cpu < 0) {
            if (was != cpu)
                ks_vmm_result_add(res, KS_VMM_DROPPED, item, "plan gives no host cpu: unpinned");
            continue;
        }
        if ((rc = ks_vmm__pin((pid_t)th[i].tid, cpu, err)) != KS_OK ||
            (rc = ks_vmm__affinity(got, sizeof(got), vm->pid, (pid_t)th[i].tid, err)) != KS_OK) {
            ks_vmm_result_add(res, KS_VMM_FAILED, item, "%s", err ? err->msg : "pinning failed");
            goto done;
        }
        snprintf(want, sizeof(want), "%d", cpu);
        if (strcmp(got, want) != 0) {
            rc = ks_err_set(err, KS_EIO, "vcpu %u thread %lld: affinity is '%s', wanted '%s'", i,
                            (long long)th[i].tid, got, want);
            ks_vmm_result_add(res, KS_VMM_FAILED, item, "%s", err ? err->msg : "");
            goto done;
        }
        if (was == -2)
            ks_vmm_result_add(res, KS_VMM_APPLIED, item, "thread %lld pinned to host cpu %d",
                              (long long)th[i].tid, cpu);
        else if (was != cpu)
            ks_vmm_result_add(res, KS_VMM_APPLIED, item,
                              "thread %lld moved online from host cpu %d to %d",
                              (long long)th[i].tid, was, cpu);
    }
done:
    free(th);
    return rc;
}

/* Every hidden feature must read false on the vCPU object at qom_path (qom-get):
 * QEMU silently ignores some -cpu requests (e.g. TCG-unsupported bits), so the
 * command line alone proves nothing. */
static ks_code verify_hidden(ks_qmp *q, const ks_plan *plan, const ks_vmm_qemu_caps *caps,
                             const char *qom_path, ks_vmm_result *res, ks_err *err)
{
    for (int id = ks_featset_next(&plan->disable, 0); id >= 0;
         id = ks_featset_next(&plan->disable, (unsigned)id + 1)) {
        const ks_feature_info *fi = ks_feature_get((unsigned)id);
        if (!fi || !fi->qemu || !flag_known(caps, fi->qemu))
            continue;
        char item[KS_VMM_ITEM_MAX];
        snprintf(item, sizeof(item), "feature.%s", fi->name);
        json_t *args = json_pack("{s:s, s:s}", "path", qom_path, "property", fi->qemu);
        json_t *ret = NULL;
        ks_err qerr = {0};
        ks_code qrc = args ? ks_qmp_execute(&ret, q, "qom-get", args, QMP_TIMEOUT_US, &qerr)
                           : ks_err_set(&qerr, KS_ENOMEM, "out of memory");
        json_decref(args);
        if (qrc == KS_EUNAVAIL || qrc == KS_ENOMEM) {
            json_decref(ret);
            if (err)
                *err = qerr;
            return qrc;
        }
        if (qrc != KS_OK)
            ks_vmm_result_add(res, KS_VMM_DROPPED, item, "hidden on -cpu but not verifiable: %s",
                              qerr.msg);
        else if (json_is_true(ret)) {
            json_decref(ret);
            ks_vmm_result_add(res, KS_VMM_FAILED, item,
                              "qom-get %s still reports true after -%s", fi->qemu, fi->qemu);
            return ks_err_set(err, KS_EINTERNAL, "qemu still exposes '%s' after -cpu ...,-%s",
                              fi->name, fi->qemu);
        }
        json_decref(ret);
    }
    return KS_OK;
}

/* ---------------------------------------------------------------- driver ops */

static ks_code qemu_init(ks_vmm_driver *d, ks_err *err)
{
    ks_vmm_qemu_caps *caps = calloc(1, sizeof(*caps));
    if (!caps)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    ks_code rc = ks_vmm_qemu_probe(caps, d->opts.qemu_binary, d->opts.accel, err);
    if (rc != KS_OK) {
        free(caps);
        return rc;
    }
    d->priv = caps;
    return KS_OK;
}

static void qemu_fini(ks_vmm_driver *d)
{
    ks_vmm_qemu_caps_destroy(d->priv);
    free(d->priv);
}

static void kill_vm(ks_vmm_vm *vm)
{
    if (ks_vmm__alive(vm))
        kill(vm->pid, SIGKILL);
    ks_vmm__reap(vm, 2000000);
    unlink(vm->sock);
    unlink(vm->pidfile);
}

/* Starts QEMU with `argv` and waits for QMP.  On failure nothing runs. */
static ks_code start_qemu(ks_qmp **out, ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_argv *argv,
                          ks_err *err)
{
    unlink(vm->sock);
    unlink(vm->pidfile);
    unlink(vm->log);
    vm->exited = false;
    ks_code rc = ks_vmm__spawn(&vm->pid, argv->v, vm->log, err);
    if (rc != KS_OK)
        return rc;
    uint64_t deadline = ks_vmm__now_us() + d->opts.start_timeout_us;
    for (;;) {
        if (!ks_vmm__alive(vm)) {
            char tail[200];
            ks_vmm__log_tail(vm->log, tail, sizeof(tail));
            rc = ks_err_set(err, KS_EUNAVAIL, "qemu exited at start: %s", tail);
            break;
        }
        if (access(vm->sock, F_OK) == 0 && ks_qmp_connect(out, vm->sock, 2000000, NULL) == KS_OK)
            return KS_OK;
        if (ks_vmm__now_us() > deadline) {
            rc = ks_err_set(err, KS_EUNAVAIL, "qemu did not answer on '%s' within %llu ms",
                            vm->sock, (unsigned long long)(d->opts.start_timeout_us / 1000));
            break;
        }
        ks_vmm__sleep_us(20000);
    }
    kill_vm(vm);
    return rc;
}

static ks_code qemu_create(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_result *res, ks_err *err)
{
    ks_vmm_qemu_caps *caps = d->priv;
    ks_vmm_qemu_caps run_caps = *caps;
    ks_vmm_argv argv = {0};
    ks_vmm_result built;
    ks_qmp *q = NULL;
    ks_code rc;
    const ks_plan *plan = vm->plan;
    ks_vmm_result_init(&built);

    if ((rc = ks_vmm__path(vm->sock, sizeof(vm->sock), d, plan->vm, ".qmp", err)) ||
        (rc = ks_vmm__path(vm->pidfile, sizeof(vm->pidfile), d, plan->vm, ".pid", err)) ||
        (rc = ks_vmm__path(vm->log, sizeof(vm->log), d, plan->vm, ".log", err)))
        goto done;
    ks_vmm_qemu_paths paths = {d->opts.qemu_binary, d->opts.machine, vm->sock, vm->pidfile};
    for (int attempt = 0;; attempt++) {
        ks_vmm_result_reset(&built);
        ks_vmm_argv_destroy(&argv);
        if ((rc = ks_vmm_qemu_argv(&argv, plan, &run_caps, &paths, &built, err)) != KS_OK)
            goto done;
        rc = start_qemu(&q, d, vm, &argv, err);
        if (rc == KS_OK)
            break;
        /* /dev/kvm can open yet fail QEMU (nested setups): with accel=auto, fall back. */
        if (attempt == 0 && run_caps.kvm && strcmp(d->opts.accel, "auto") == 0) {
            ks_vmm_result_add(res, KS_VMM_DROPPED, "accel.kvm", "kvm start failed (%s): using tcg",
                              err ? err->msg : "?");
            run_caps.kvm = false;
            continue;
        }
        /* Nothing runs: only what could never be applied is worth reporting. */
        for (uint32_t i = 0; i < built.n_notes; i++)
            if (built.notes[i].outcome == KS_VMM_DROPPED)
                ks_vmm_result_add(res, KS_VMM_DROPPED, built.notes[i].item, "%s",
                                  built.notes[i].detail);
        ks_vmm_result_add(res, KS_VMM_FAILED, "start", "%s", err ? err->msg : "qemu did not start");
        goto done;
    }
    ks_vmm_result_add(res, KS_VMM_APPLIED, "start", "qemu pid %d, accel %s", (int)vm->pid,
                      run_caps.kvm ? "kvm" : "tcg");
    int major, minor, micro;
    ks_qmp_version(q, &major, &minor, &micro);
    if (major && (major != caps->major || minor != caps->minor))
        ks_vmm_result_add(res, KS_VMM_APPLIED, "qemu.version",
                          "running QEMU %d.%d.%d differs from the probed %d.%d", major, minor,
                          micro, caps->major, caps->minor);
    ks_vmm_result_append(res, &built);
    vcpu_thread first;
    if ((rc = vcpu_threads(&first, 1, q, err)) != KS_OK ||
        (rc = verify_hidden(q, plan, &run_caps, first.qom_path, res, err)) != KS_OK ||
        (rc = pin_vcpus(vm, q, plan, NULL, plan->n_vcpus, res, err)) != KS_OK) {
        ks_qmp_close(q);
        q = NULL;
        kill_vm(vm);
        ks_vmm_result_add(res, KS_VMM_FAILED, "start", "qemu stopped after: %s",
                          err ? err->msg : "?");
    }
done:
    ks_qmp_close(q);
    ks_vmm_argv_destroy(&argv);
    ks_vmm_result_destroy(&built);
    return rc;
}

/* Linear vCPU index of a hot-pluggable slot from its topology props (the order QEMU
 * gives cpu-index on x86), or -1 when it lacks ids. */
static long slot_index(const json_t *props, const ks_vmm_topology *t)
{
    const char *keys[] = {"socket-id", "die-id", "cluster-id", "core-id", "thread-id"};
    const uint32_t size[] = {t->sockets, t->dies, t->clusters, t->cores, t->threads};
    long idx = 0;
    for (int k = 0; k < 5; k++) {
        json_t *v = json_object_get(props, keys[k]);
        idx = idx * (long)size[k] + (v ? (long)json_integer_value(v) : 0);
    }
    return idx;
}

/* Hot-plugs vCPUs vm->n_vcpus_running .. want-1 with device_add into the slots QEMU
 * reserved (-smp maxcpus), so each gets cpu-index == its plan id, and checks that
 * the hidden features are hidden on the new vCPUs too. */
static ks_code hotplug_vcpus(ks_vmm_driver *d, ks_vmm_vm *vm, ks_qmp *q, const ks_plan *plan,
                             ks_vmm_result *res, ks_err *err)
{
    ks_vmm_qemu_caps *caps = d->priv;
    ks_vmm_topology topo;
    ks_vmm_topology_for(&topo, vm->boot_plan, caps->clusters, "QEMU x86", NULL);
    json_t *slots = NULL;
    ks_code rc = ks_qmp_execute(&slots, q, "query-hotpluggable-cpus", NULL, QMP_TIMEOUT_US, err);
    if (rc != KS_OK)
        return rc;
    while (rc == KS_OK && vm->n_vcpus_running < plan->n_vcpus) {
        uint32_t id = vm->n_vcpus_running;
        const json_t *slot = NULL;
        size_t i;
        json_t *e;
        json_array_foreach(slots, i, e)
        {
            if (!json_object_get(e, "qom-path") &&
                slot_index(json_object_get(e, "props"), &topo) == (long)id)
                slot = e;
        }
        if (!slot) {
            rc = ks_err_set(err, KS_EUNSUPPORTED, "qemu has no free hot-plug slot for vcpu %u", id);
            ks_vmm_result_add(res, KS_VMM_FAILED, "vcpus", "%s", err ? err->msg : "");
            break;
        }
        char dev_id[32], qom[64];
        snprintf(dev_id, sizeof(dev_id), "ks-vcpu%u", id);
        json_t *args = json_pack("{s:s, s:s}", "driver",
                                 json_string_value(json_object_get(slot, "type")), "id", dev_id);
        if (!args || json_object_update(args, json_object_get(slot, "props")) != 0) {
            json_decref(args);
            rc = ks_err_set(err, KS_ENOMEM, "out of memory");
            break;
        }
        rc = ks_qmp_execute(NULL, q, "device_add", args, QMP_TIMEOUT_US, err);
        json_decref(args);
        if (rc != KS_OK) {
            ks_vmm_result_add(res, KS_VMM_FAILED, "vcpus", "device_add vcpu %u: %s", id,
                              err ? err->msg : "");
            break;
        }
        vm->n_vcpus_running = id + 1;
        ks_vmm_result_add(res, KS_VMM_APPLIED, "vcpus", "vcpu %u hot-plugged online (%s)", id,
                          dev_id);
        snprintf(qom, sizeof(qom), "/machine/peripheral/%s", dev_id);
        rc = verify_hidden(q, plan, caps, qom, res, err);
    }
    json_decref(slots);
    return rc;
}

static ks_code qemu_apply(ks_vmm_driver *d, ks_vmm_vm *vm, const ks_plan *plan, ks_vmm_result *res,
                          ks_err *err)
{
    ks_qmp *q = NULL;
    ks_vmm_result diff;
    ks_code rc;
    if (!ks_vmm__alive(vm))
        return ks_err_set(err, KS_EUNAVAIL, "qemu of vm '%s' is not running", plan->vm);
    if ((rc = ks_qmp_connect(&q, vm->sock, QMP_TIMEOUT_US, err)) != KS_OK)
        return rc;
    ks_vmm_result_init(&diff);
    /* What was dropped at start is still dropped. */
    for (uint32_t i = 0; i < vm->standing.n_notes; i++)
        if (vm->standing.notes[i].outcome == KS_VMM_DROPPED)
            ks_vmm_result_add(res, KS_VMM_DROPPED, vm->standing.notes[i].item, "%s",
                              vm->standing.notes[i].detail);
    ks_vmm__restart_notes(vm->boot_plan, plan, &diff);
    bool same_topology = !ks_vmm_result_find(&diff, "topology");
    for (uint32_t i = 0; i < diff.n_notes; i++)
        if (strcmp(diff.notes[i].item, "vcpus") != 0) /* the count is handled below */
            ks_vmm_result_add(res, (ks_vmm_outcome)diff.notes[i].outcome, diff.notes[i].item,
                              "%s", diff.notes[i].detail);
    /* vCPU count: more within the -smp maxcpus slots is hot-plugged; fewer would need
     * the guest to give vCPUs up (device_del), which an agent cannot force. */
    if (plan->n_vcpus > vm->n_vcpus_running && same_topology)
        rc = hotplug_vcpus(d, vm, q, plan, res, err);
    else if (plan->n_vcpus != vm->n_vcpus_running)
        ks_vmm_result_add(res, KS_VMM_NEEDS_RESTART, "vcpus",
                          "vcpu count %u -> %u: %s", vm->n_vcpus_running, plan->n_vcpus,
                          plan->n_vcpus < vm->n_vcpus_running
                              ? "removing vCPUs needs the guest's cooperation"
                              : "the topology changes too");
    if (rc == KS_OK)
        rc = pin_vcpus(vm, q, plan, vm->plan, vm->n_vcpus_running, res, err);
    ks_qmp_close(q);
    ks_vmm_result_destroy(&diff);
    return rc;
}

static ks_code qemu_query(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_state *out, ks_err *err)
{
    ks_qmp *q = NULL;
    vcpu_thread *th = NULL;
    ks_code rc = KS_OK;
    out->running = ks_vmm__alive(vm);
    if (!out->running)
        return KS_OK;
    uint32_t n = vm->n_vcpus_running;
    th = calloc(n, sizeof(*th));
    if (!th)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    if ((rc = ks_qmp_connect(&q, vm->sock, QMP_TIMEOUT_US, err)) != KS_OK ||
        (rc = vcpu_threads(th, n, q, err)) != KS_OK)
        goto done;
    for (uint32_t i = 0; i < out->n_vcpus && i < n; i++) {
        out->vcpus[i].thread_id = th[i].tid;
        if (ks_vmm__affinity(out->vcpus[i].affinity, sizeof(out->vcpus[i].affinity), vm->pid,
                             (pid_t)th[i].tid, NULL) != KS_OK)
            out->vcpus[i].affinity[0] = '\0';
    }
done:
    ks_qmp_close(q);
    free(th);
    return rc;
}

static ks_code qemu_destroy(ks_vmm_driver *d, ks_vmm_vm *vm, ks_err *err)
{
    if (ks_vmm__alive(vm)) {
        ks_qmp *q = NULL;
        /* A graceful quit first; the deadline below covers a QEMU that ignores it. */
        if (ks_qmp_connect(&q, vm->sock, 1000000, NULL) == KS_OK)
            ks_qmp_execute(NULL, q, "quit", NULL, 1000000, NULL);
        ks_qmp_close(q);
        ks_vmm__reap(vm, d->opts.stop_timeout_us);
    }
    unlink(vm->sock);
    unlink(vm->pidfile);
    return KS_OK;
}

const ks_vmm_ops ks_vmm__qemu_ops = {
    .name = "qemu",
    .init = qemu_init,
    .fini = qemu_fini,
    .create = qemu_create,
    .apply = qemu_apply,
    .query = qemu_query,
    .destroy = qemu_destroy,
};
