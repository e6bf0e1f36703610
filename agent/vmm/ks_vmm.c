/*
 * ks_vmm.c - the driver-independent half of agent/vmm/: results and state
 * objects, the plan checks and topology fallback every driver shares, the
 * create/apply/query/destroy wrappers (generation rules, standing notes), the
 * dry-run driver, and process/affinity helpers.
 *
 * Invariants: a ks_vmm_vm always owns a valid plan; vm->standing holds the dropped
 * and needs_restart notes of the last successful create/apply (they stay true
 * until the VMM restarts).  Not thread-safe: callers serialise (see ks_vmm.h).
 */
#include "ks_vmm_int.h"

#include "ks_feature.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---------------------------------------------------------------- results */

static const char *const outcome_names[KS_VMM_OUTCOME__COUNT] = {
    [KS_VMM_APPLIED] = "applied",
    [KS_VMM_DROPPED] = "dropped",
    [KS_VMM_NEEDS_RESTART] = "needs_restart",
    [KS_VMM_FAILED] = "failed",
};

const char *ks_vmm_outcome_to_str(ks_vmm_outcome o)
{
    return (unsigned)o < KS_VMM_OUTCOME__COUNT ? outcome_names[o] : "?";
}

void ks_vmm_result_init(ks_vmm_result *r)
{
    memset(r, 0, sizeof(*r));
}

void ks_vmm_result_destroy(ks_vmm_result *r)
{
    if (!r)
        return;
    free(r->notes);
    memset(r, 0, sizeof(*r));
}

void ks_vmm_result_reset(ks_vmm_result *r)
{
    r->n_notes = 0;
    r->n_lost = 0;
    r->generation = 0;
}

static void result_push(ks_vmm_result *r, const ks_vmm_note *n)
{
    if (r->n_notes == r->cap) {
        uint32_t ncap = r->cap ? r->cap * 2 : 16;
        if (r->cap >= KS_VMM_MAX_NOTES) {
            r->n_lost++;
            return;
        }
        if (ncap > KS_VMM_MAX_NOTES)
            ncap = KS_VMM_MAX_NOTES;
        ks_vmm_note *nn = realloc(r->notes, ncap * sizeof(*nn));
        if (!nn) {
            r->n_lost++;
            return;
        }
        r->notes = nn;
        r->cap = ncap;
    }
    r->notes[r->n_notes++] = *n;
}

void ks_vmm_result_add(ks_vmm_result *r, ks_vmm_outcome o, const char *item, const char *fmt, ...)
{
    if (!r)
        return;
    ks_vmm_note n;
    n.outcome = (uint8_t)o;
    snprintf(n.item, sizeof(n.item), "%s", item ? item : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n.detail, sizeof(n.detail), fmt, ap);
    va_end(ap);
    result_push(r, &n);
}

uint32_t ks_vmm_result_count(const ks_vmm_result *r, ks_vmm_outcome o)
{
    uint32_t c = 0;
    for (uint32_t i = 0; r && i < r->n_notes; i++)
        c += r->notes[i].outcome == o;
    return c;
}

const ks_vmm_note *ks_vmm_result_find(const ks_vmm_result *r, const char *item)
{
    for (uint32_t i = 0; r && i < r->n_notes; i++)
        if (strcmp(r->notes[i].item, item) == 0)
            return &r->notes[i];
    return NULL;
}

void ks_vmm_result_append(ks_vmm_result *dst, const ks_vmm_result *src)
{
    for (uint32_t i = 0; src && i < src->n_notes; i++)
        result_push(dst, &src->notes[i]);
    if (src)
        dst->n_lost += src->n_lost;
}

json_t *ks_vmm_result_to_json(const ks_vmm_result *r)
{
    json_t *doc = json_object();
    json_t *lists[KS_VMM_OUTCOME__COUNT] = {0};
    if (!doc)
        return NULL;
    for (int o = 0; o < KS_VMM_OUTCOME__COUNT; o++) {
        lists[o] = json_array();
        if (!lists[o] || json_object_set_new(doc, outcome_names[o], lists[o]) != 0)
            goto fail;
    }
    for (uint32_t i = 0; i < r->n_notes; i++) {
        const ks_vmm_note *n = &r->notes[i];
        if (n->outcome >= KS_VMM_OUTCOME__COUNT)
            continue; /* cannot happen: ks_vmm_result_add takes the enum */
        json_t *e = json_pack("{s:s, s:s}", "item", n->item, "detail", n->detail);
        if (!e || json_array_append_new(lists[n->outcome], e))
            goto fail;
    }
    if (json_object_set_new(doc, "generation", json_integer((json_int_t)r->generation)) ||
        json_object_set_new(doc, "lost", json_integer(r->n_lost)))
        goto fail;
    return doc;
fail:
    json_decref(doc);
    return NULL;
}

/* ---------------------------------------------------------------- state */

void ks_vmm_state_init(ks_vmm_state *s)
{
    memset(s, 0, sizeof(*s));
}

void ks_vmm_state_destroy(ks_vmm_state *s)
{
    if (!s)
        return;
    free(s->vcpus);
    memset(s, 0, sizeof(*s));
}

json_t *ks_vmm_state_to_json(const ks_vmm_state *s)
{
    json_t *vcpus = json_array();
    if (!vcpus)
        return NULL;
    for (uint32_t i = 0; i < s->n_vcpus; i++) {
        const ks_vmm_vcpu_state *v = &s->vcpus[i];
        json_t *e = json_pack("{s:i, s:I, s:i, s:s}", "id", (int)v->id, "thread_id",
                              (json_int_t)v->thread_id, "host_cpu", (int)v->host_cpu,
                              "affinity", v->affinity);
        if (!e || json_array_append_new(vcpus, e)) {
            json_decref(vcpus);
            return NULL;
        }
    }
    return json_pack("{s:s, s:s, s:I, s:b, s:I, s:s, s:o}", "vm", s->vm, "driver", s->driver,
                     "generation", (json_int_t)s->generation, "running", s->running, "pid",
                     (json_int_t)s->pid, "control", s->control, "vcpus", vcpus);
}

/* ---------------------------------------------------------------- argv, cpulist */

void ks_vmm_argv_destroy(ks_vmm_argv *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof(*a));
}

char *ks_vmm_argv_join(const ks_vmm_argv *a)
{
    size_t len = 1;
    for (size_t i = 0; i < a->n; i++)
        len += strlen(a->v[i]) + 1;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    for (size_t i = 0; i < a->n; i++) {
        size_t l = strlen(a->v[i]);
        if (i)
            *p++ = ' ';
        memcpy(p, a->v[i], l);
        p += l;
    }
    *p = '\0';
    return s;
}

const char *ks_vmm_cpulist(char *buf, size_t cap, const uint8_t *bits, size_t n_bits)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n_bits; i++) {
        if (!(bits[i / 8] >> (i % 8) & 1))
            continue;
        size_t j = i;
        while (j + 1 < n_bits && (bits[(j + 1) / 8] >> ((j + 1) % 8) & 1))
            j++;
        int n = j > i ? snprintf(buf + used, cap - used, "%s%zu-%zu", used ? "," : "", i, j)
                      : snprintf(buf + used, cap - used, "%s%zu", used ? "," : "", i);
        if (n < 0 || (size_t)n >= cap - used) {
            buf[used] = '\0';
            break;
        }
        used += (size_t)n;
        i = j;
    }
    return buf;
}

/* ---------------------------------------------------------------- plan checks */

static bool name_ok(const char *s)
{
    size_t n = strnlen(s, KS_ID_MAX);
    if (n == 0 || n >= KS_ID_MAX || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static uint32_t one_if_zero(uint32_t v)
{
    return v ? v : 1;
}

ks_code ks_vmm_plan_check(const ks_plan *plan, ks_err *err)
{
    if (!plan)
        return ks_err_set(err, KS_EINVAL, "no plan");
    if (!name_ok(plan->vm))
        return ks_err_set_field(err, KS_EINVAL, "vm",
                                "vm name '%.63s' must be 1-63 characters of [A-Za-z0-9._-]",
                                plan->vm);
    if (plan->n_vcpus == 0 || plan->n_vcpus > KS_VM_MAX_VCPUS || !plan->vcpus)
        return ks_err_set_field(err, KS_EINVAL, "vcpus", "plan needs 1..%d vcpus, has %u",
                                KS_VM_MAX_VCPUS, plan->n_vcpus);
    if (plan->memory_mib == 0)
        return ks_err_set_field(err, KS_EINVAL, "memory_mib", "memory_mib must be > 0");
    uint64_t slots = (uint64_t)one_if_zero(plan->topology.sockets) *
                     one_if_zero(plan->topology.dies) * one_if_zero(plan->topology.clusters) *
                     one_if_zero(plan->topology.cores) * one_if_zero(plan->topology.threads);
    if (slots < plan->n_vcpus || slots > KS_VM_MAX_VCPUS)
        return ks_err_set_field(err, KS_EINVAL, "topology",
                                "topology has %llu vcpu slots for %u vcpus (max %d)",
                                (unsigned long long)slots, plan->n_vcpus, KS_VM_MAX_VCPUS);
    for (uint32_t i = 0; i < plan->n_vcpus; i++) {
        const ks_plan_vcpu *v = &plan->vcpus[i];
        char field[64];
        snprintf(field, sizeof(field), "vcpus[%u]", i);
        if (v->id != (int32_t)i)
            return ks_err_set_field(err, KS_EINVAL, field, "vcpu ids must be 0..n-1 in order");
        if (v->host_cpu < -1 || v->host_cpu >= CPU_SETSIZE)
            return ks_err_set_field(err, KS_EINVAL, field, "host_cpu %d out of range",
                                    v->host_cpu);
        for (uint32_t j = 0; j < i && v->host_cpu >= 0; j++)
            if (plan->vcpus[j].host_cpu == v->host_cpu)
                return ks_err_set_field(err, KS_EINVAL, field,
                                        "host cpu %d is given to vcpus %u and %u", v->host_cpu,
                                        j, i);
    }
    uint64_t numa_mib = 0;
    for (uint32_t n = 0; n < plan->n_numa; n++) {
        const ks_plan_numa *nd = &plan->numa[n];
        char field[64];
        snprintf(field, sizeof(field), "numa[%u]", n);
        if (nd->node != (int32_t)n)
            return ks_err_set_field(err, KS_EINVAL, field, "numa nodes must be 0..n-1 in order");
        for (uint32_t k = 0; k < nd->n_vcpus; k++)
            if (nd->vcpus[k] < 0 || (uint32_t)nd->vcpus[k] >= plan->n_vcpus)
                return ks_err_set_field(err, KS_EINVAL, field, "vcpu %d is not in the plan",
                                        nd->vcpus[k]);
        numa_mib += nd->memory_mib;
    }
    if (plan->n_numa > 1 && numa_mib != plan->memory_mib)
        return ks_err_set_field(err, KS_EINVAL, "numa",
                                "numa memory adds up to %llu MiB, memory_mib is %llu",
                                (unsigned long long)numa_mib,
                                (unsigned long long)plan->memory_mib);
    return KS_OK;
}

void ks_vmm_topology_for(ks_vmm_topology *out, const ks_plan *plan, bool clusters_supported,
                         const char *vmm, ks_vmm_result *res)
{
    out->sockets = one_if_zero(plan->topology.sockets);
    out->dies = one_if_zero(plan->topology.dies);
    out->clusters = one_if_zero(plan->topology.clusters);
    out->cores = one_if_zero(plan->topology.cores);
    out->threads = one_if_zero(plan->topology.threads);
    if (out->clusters == 1 || clusters_supported)
        return;
    /* Without a cluster level the L2 groups can still be told apart by the guest if
     * each becomes a die (dies have their own cache domain in the guest's CPUID);
     * that is only free when the plan does not use dies itself. */
    if (out->dies == 1) {
        out->dies = out->clusters;
        ks_vmm_result_add(res, KS_VMM_DROPPED, "topology.clusters",
                          "%s has no clusters level: clusters=%u not set; L2 groups expressed "
                          "as dies=%u",
                          vmm, out->clusters, out->dies);
    } else {
        out->cores *= out->clusters;
        ks_vmm_result_add(res, KS_VMM_DROPPED, "topology.clusters",
                          "%s has no clusters level: clusters=%u folded into cores=%u (L2 "
                          "groups not visible to the guest)",
                          vmm, out->clusters, out->cores);
    }
    out->clusters = 1;
}

/* ---------------------------------------------------------------- plan differences */

static bool topo_equal(const ks_plan *a, const ks_plan *b)
{
    return a->topology.sockets == b->topology.sockets && a->topology.dies == b->topology.dies &&
           a->topology.clusters == b->topology.clusters &&
           a->topology.cores == b->topology.cores && a->topology.threads == b->topology.threads;
}

static bool pmu_equal(const ks_plan *a, const ks_plan *b)
{
    if (a->pmu.enabled != b->pmu.enabled || a->pmu.n_allow != b->pmu.n_allow ||
        a->pmu.n_deny != b->pmu.n_deny)
        return false;
    for (uint32_t i = 0; i < a->pmu.n_allow; i++)
        if (strcmp(a->pmu.allow_events[i], b->pmu.allow_events[i]) != 0)
            return false;
    for (uint32_t i = 0; i < a->pmu.n_deny; i++)
        if (strcmp(a->pmu.deny_events[i], b->pmu.deny_events[i]) != 0)
            return false;
    return true;
}

static bool numa_equal(const ks_plan *a, const ks_plan *b)
{
    if (a->n_numa != b->n_numa)
        return false;
    for (uint32_t n = 0; n < a->n_numa; n++) {
        const ks_plan_numa *x = &a->numa[n], *y = &b->numa[n];
        if (x->host_node != y->host_node || x->memory_mib != y->memory_mib ||
            x->n_vcpus != y->n_vcpus ||
            (x->n_vcpus && memcmp(x->vcpus, y->vcpus, x->n_vcpus * sizeof(*x->vcpus)) != 0))
            return false;
    }
    return true;
}

/* Names of the features in a but not in b, for a note ("avx2 sha_ni ..."). */
static void feature_diff(char *buf, size_t cap, const ks_featset *a, const ks_featset *b)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int id = ks_featset_next(a, 0); id >= 0; id = ks_featset_next(a, (unsigned)id + 1)) {
        if (ks_featset_test(b, (unsigned)id))
            continue;
        int n = snprintf(buf + used, cap - used, "%s%s", used ? " " : "",
                         ks_feature_name((unsigned)id));
        if (n < 0 || (size_t)n >= cap - used) {
            buf[used] = '\0';
            break;
        }
        used += (size_t)n;
    }
}

void ks_vmm__restart_notes(const ks_plan *boot, const ks_plan *plan, ks_vmm_result *res)
{
    if (boot->n_vcpus != plan->n_vcpus)
        ks_vmm_result_add(res, KS_VMM_NEEDS_RESTART, "vcpus",
                          "vcpu count %u -> %u: not hot-plugged by this driver", boot->n_vcpus,
                          plan->n_vcpus);
    if (!topo_equal(boot, plan))
        ks_vmm_result_add(res, KS_VMM_NEEDS_RESTART, "topology",
                          "guest topology is fixed at QEMU start");
    if (boot->memory_mib != plan->memory_mib)
        ks_vmm_result_add(res, KS_VMM_NEEDS_RESTART, "memory", "memory %llu -> %llu MiB",
                          (unsigned long long)boot->memory_mib,
                          (unsigned long long)plan->memory_mib);
    if (strcmp(boot->cpu_model, plan->cpu_model) != 0)
        ks_vmm_result_add(res, KS_VMM_NEEDS_RESTART, "features.model", "cpu model '%s' -> '%s'",
                          boot->cpu_model, plan->cpu_model);
    if (!ks_featset_equal(&boot->disable, &plan->disable) ||
        !ks_featset_equal(&boot->visible, &plan->visible)) {
        char hide[160], show[160];
        feature_diff(hide, sizeof(hide), &plan->disable, &boot->disable);
        feature_diff(show, sizeof(show), &boot->disable, &plan->disable);
        ks_vmm_result_add(res, KS_VMM_NEEDS_RESTART, "features",
                          "QEMU cannot change a running vCPU's CPUID: hide [%s] show [%s]", hide,
                          show);
    }
    if (!pmu_equal(boot, plan))
        ks_vmm_result_add(res, KS_VMM_NEEDS_RESTART, "pmu", "vPMU settings are fixed at start");
    if (!numa_equal(boot, plan))
        ks_vmm_result_add(res, KS_VMM_NEEDS_RESTART, "numa", "guest NUMA layout is fixed at start");
}

/* ---------------------------------------------------------------- process helpers */

uint64_t ks_vmm__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void ks_vmm__sleep_us(uint64_t us)
{
    struct timespec ts = {.tv_sec = (time_t)(us / 1000000u),
                          .tv_nsec = (long)(us % 1000000u) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

ks_code ks_vmm__path(char *buf, size_t cap, const ks_vmm_driver *d, const char *vm,
                     const char *suffix, ks_err *err)
{
    int n = snprintf(buf, cap, "%s/%s%s", d->opts.state_dir, vm, suffix);
    if (n < 0 || (size_t)n >= cap)
        return ks_err_set(err, KS_EINVAL, "path '%s/%s%s' is too long (max %zu)",
                          d->opts.state_dir, vm, suffix, cap - 1);
    return KS_OK;
}

ks_code ks_vmm__spawn(pid_t *out, char *const argv[], const char *log_path, ks_err *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    ks_code rc = KS_OK;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0640);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    /* The VMM must not inherit the agent's sockets (its listening port, QMP, curl). */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    /* A new session: the VMM must not die with the agent's terminal or its signals. */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    pid_t pid;
    int e = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
    if (e != 0)
        rc = ks_err_set(err, KS_EUNAVAIL, "cannot start '%s': %s", argv[0], strerrordesc_np(e));
    else
        *out = pid;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return rc;
}

bool ks_vmm__alive(ks_vmm_vm *vm)
{
    if (vm->pid <= 0 || vm->exited)
        return false;
    int st;
    pid_t r = waitpid(vm->pid, &st, WNOHANG);
    if (r == vm->pid || (r < 0 && errno == ECHILD)) {
        vm->exited = true;
        return false;
    }
    return true;
}

void ks_vmm__reap(ks_vmm_vm *vm, uint64_t timeout_us)
{
    uint64_t deadline = ks_vmm__now_us() + timeout_us;
    while (ks_vmm__alive(vm) && ks_vmm__now_us() < deadline)
        ks_vmm__sleep_us(10000);
    if (ks_vmm__alive(vm)) {
        kill(vm->pid, SIGKILL);
        int st;
        while (waitpid(vm->pid, &st, 0) < 0 && errno == EINTR)
            ;
        vm->exited = true;
    }
}

void ks_vmm__log_tail(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0])
            snprintf(buf, cap, "%s", line);
    }
    fclose(f);
}

ks_code ks_vmm__pin(pid_t tid, int cpu, ks_err *err)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return ks_err_set(err, KS_EINVAL, "host cpu %d out of range", cpu);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(tid, sizeof(set), &set) != 0) {
        /* EINVAL: the CPU is offline, absent or outside our cpuset - a plan error. */
        int e = errno;
        return ks_err_set(err, e == EINVAL ? KS_EINVAL : KS_EIO,
                          "cannot pin thread %d to host cpu %d: %s", (int)tid, cpu,
                          strerrordesc_np(e));
    }
    return KS_OK;
}

ks_code ks_vmm__affinity(char *buf, size_t cap, pid_t pid, pid_t tid, ks_err *err)
{
    char path[96], line[512];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return ks_err_set(err, KS_EIO, "cannot read '%s': %s", path, strerrordesc_np(errno));
    ks_code rc = ks_err_set(err, KS_EIO, "no Cpus_allowed_list in '%s'", path);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Cpus_allowed_list:", 18) == 0) {
            char *v = line + 18;
            v += strspn(v, " \t");
            v[strcspn(v, "\r\n")] = '\0';
            snprintf(buf, cap, "%s", v);
            rc = KS_OK;
            ks_err_clear(err);
            break;
        }
    }
    fclose(f);
    return rc;
}

pid_t ks_vmm__thread_by_name(pid_t pid, const char *name)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    pid_t found = 0;
    if (!dir)
        return 0;
    for (struct dirent *de; !found && (de = readdir(dir));) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char comm_path[400], comm[64] = "";
        snprintf(comm_path, sizeof(comm_path), "%s/%s/comm", path, de->d_name);
        FILE *f = fopen(comm_path, "re");
        if (!f)
            continue;
        if (fgets(comm, sizeof(comm), f)) {
            comm[strcspn(comm, "\n")] = '\0';
            if (strcmp(comm, name) == 0) {
                long tid = 0; /* d_name is a kernel-made decimal tid */
                for (const char *c = de->d_name; *c >= '0' && *c <= '9' && tid < INT_MAX / 10; c++)
                    tid = tid * 10 + (*c - '0');
                found = (pid_t)tid;
            }
        }
        fclose(f);
    }
    closedir(dir);
    return found;
}

ks_code ks_vmm__run(char **out, int *status, char *const argv[], uint64_t timeout_us,
                    ks_err *err)
{
    int fds[2];
    ks_code rc = KS_OK;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (pipe2(fds, O_CLOEXEC) != 0)
        return ks_err_set(err, KS_EIO, "pipe: %s", strerrordesc_np(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    pid_t pid;
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (e != 0) {
        close(fds[0]);
        return ks_err_set(err, KS_EUNAVAIL, "cannot run '%s': %s", argv[0], strerrordesc_np(e));
    }
    uint64_t deadline = ks_vmm__now_us() + timeout_us;
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    for (;;) {
        if (len + 4096 > cap) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *nb = ncap <= (1u << 20) ? realloc(buf, ncap) : NULL;
            if (!nb) {
                rc = ks_err_set(err, KS_ENOMEM, "output of '%s' above 1 MiB", argv[0]);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fds[0], buf + len, cap - len - 1);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n == 0)
            break;
        if (errno != EAGAIN && errno != EINTR) {
            rc = ks_err_set(err, KS_EIO, "reading '%s': %s", argv[0], strerrordesc_np(errno));
            break;
        }
        if (ks_vmm__now_us() > deadline) {
            rc = ks_err_set(err, KS_EIO, "'%s' did not finish in time", argv[0]);
            break;
        }
        ks_vmm__sleep_us(2000);
    }
    close(fds[0]);
    if (rc != KS_OK)
        kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (rc == KS_OK) {
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (out) {
            buf[len] = '\0';
            *out = buf;
            buf = NULL;
        }
    }
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- dry-run driver */

static ks_code dry_pins(const ks_plan *old, const ks_plan *plan, ks_vmm_result *res)
{
    for (uint32_t i = 0; i < plan->n_vcpus; i++) {
        const ks_plan_vcpu *v = &plan->vcpus[i];
        if (old && i < old->n_vcpus && old->vcpus[i].host_cpu == v->host_cpu)
            continue;
        char item[KS_VMM_ITEM_MAX];
        snprintf(item, sizeof(item), "vcpu[%u].pin", i);
        ks_vmm_result_add(res, KS_VMM_APPLIED, item, "dry-run: recorded host cpu %d",
                          v->host_cpu);
    }
    return KS_OK;
}

static ks_code dry_create(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_result *res, ks_err *err)
{
    return dry_pins(NULL, vm->plan, res);
}

static ks_code dry_apply(ks_vmm_driver *d, ks_vmm_vm *vm, const ks_plan *plan, ks_vmm_result *res,
                         ks_err *err)
{
    return dry_pins(vm->plan, plan, res);
}

static ks_code dry_query(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_state *out, ks_err *err)
{
    out->running = true;
    for (uint32_t i = 0; i < out->n_vcpus; i++)
        if (out->vcpus[i].host_cpu >= 0)
            snprintf(out->vcpus[i].affinity, sizeof(out->vcpus[i].affinity), "%d",
                     out->vcpus[i].host_cpu);
    return KS_OK;
}

static ks_code dry_destroy(ks_vmm_driver *d, ks_vmm_vm *vm, ks_err *err)
{
    return KS_OK;
}

static const ks_vmm_ops dry_ops = {
    .name = "dry-run",
    .create = dry_create,
    .apply = dry_apply,
    .query = dry_query,
    .destroy = dry_destroy,
};

/* ---------------------------------------------------------------- driver wrappers */

static const ks_vmm_ops *const all_ops[] = {&dry_ops, &ks_vmm__qemu_ops, &ks_vmm__libvirt_ops,
                                            &ks_vmm__ch_ops, &ks_vmm__fc_ops};

static ks_code copy_opt(ks_vmm_driver *d, int slot, const char **field, ks_err *err)
{
    if (!*field)
        return KS_OK;
    d->copies[slot] = strdup(*field);
    if (!d->copies[slot])
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    *field = d->copies[slot];
    return KS_OK;
}

ks_code ks_vmm_driver_new(ks_vmm_driver **out, const ks_vmm_options *opts, ks_err *err)
{
    ks_vmm_options defaults = KS_VMM_OPTIONS_INIT;
    ks_vmm_driver *d = NULL;
    ks_code rc = KS_OK;
    const char *name = opts && opts->driver ? opts->driver : defaults.driver;
    const ks_vmm_ops *ops = NULL;
    for (size_t i = 0; i < sizeof(all_ops) / sizeof(all_ops[0]); i++)
        if (strcmp(all_ops[i]->name, name) == 0)
            ops = all_ops[i];
    if (!ops) {
        rc = ks_err_set_field(err, KS_EINVAL, "driver",
                              "unknown vmm driver '%s' (qemu, libvirt, cloud-hypervisor, "
                              "firecracker, dry-run)",
                              name);
        goto done;
    }
    d = calloc(1, sizeof(*d));
    if (!d) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    d->ops = ops;
    d->opts = opts ? *opts : defaults;
    /* Unset options take their defaults one by one, so callers may zero-initialise. */
    if (!d->opts.state_dir)
        d->opts.state_dir = defaults.state_dir;
    if (!d->opts.qemu_binary)
        d->opts.qemu_binary = defaults.qemu_binary;
    if (!d->opts.accel)
        d->opts.accel = defaults.accel;
    if (!d->opts.machine)
        d->opts.machine = defaults.machine;
    if (!d->opts.virsh_binary)
        d->opts.virsh_binary = defaults.virsh_binary;
    if (!d->opts.start_timeout_us)
        d->opts.start_timeout_us = defaults.start_timeout_us;
    if (!d->opts.stop_timeout_us)
        d->opts.stop_timeout_us = defaults.stop_timeout_us;
    d->opts.driver = ops->name;
    const char **fields[] = {&d->opts.state_dir, &d->opts.qemu_binary, &d->opts.accel,
                             &d->opts.machine,   &d->opts.libvirt_uri, &d->opts.virsh_binary,
                             &d->opts.vmm_binary, &d->opts.kernel,     &d->opts.cmdline};
    for (int i = 0; i < (int)(sizeof(fields) / sizeof(fields[0])); i++)
        if ((rc = copy_opt(d, i, fields[i], err)) != KS_OK)
            goto done;
    if (strcmp(ops->name, "dry-run") != 0) {
        struct stat st;
        if (stat(d->opts.state_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = ks_err_set_field(err, KS_EINVAL, "state_dir", "state dir '%s' is not a directory",
                                  d->opts.state_dir);
            goto done;
        }
    }
    if (ops->init && (rc = ops->init(d, err)) != KS_OK)
        goto done;
    *out = d;
    d = NULL;
done:
    if (d) {
        d->ops = NULL; /* init failed or never ran: no fini */
        ks_vmm_driver_free(d);
    }
    return rc;
}

void ks_vmm_driver_free(ks_vmm_driver *d)
{
    if (!d)
        return;
    if (d->ops && d->ops->fini)
        d->ops->fini(d);
    for (size_t i = 0; i < sizeof(d->copies) / sizeof(d->copies[0]); i++)
        free(d->copies[i]);
    free(d);
}

const char *ks_vmm_driver_name(const ks_vmm_driver *d)
{
    return d->ops->name;
}

static void vm_free(ks_vmm_vm *vm)
{
    if (!vm)
        return;
    ks_plan_free(vm->plan);
    ks_plan_free(vm->boot_plan);
    ks_vmm_result_destroy(&vm->standing);
    free(vm);
}

/* The standing notes after an operation: what is still dropped or waiting for a
 * restart (an apply recomputes them against the boot plan, so they are complete). */
static void set_standing(ks_vmm_vm *vm, const ks_vmm_result *res)
{
    ks_vmm_result_reset(&vm->standing);
    vm->standing.generation = vm->plan->generation;
    for (uint32_t i = 0; i < res->n_notes; i++)
        if (res->notes[i].outcome == KS_VMM_DROPPED ||
            res->notes[i].outcome == KS_VMM_NEEDS_RESTART)
            ks_vmm_result_add(&vm->standing, (ks_vmm_outcome)res->notes[i].outcome,
                              res->notes[i].item, "%s", res->notes[i].detail);
}

ks_code ks_vmm_create(ks_vmm_vm **out, ks_vmm_driver *d, const ks_plan *plan,
                      ks_vmm_result *res, ks_err *err)
{
    ks_vmm_vm *vm = NULL;
    ks_code rc = ks_vmm_plan_check(plan, err);
    if (rc != KS_OK)
        goto done;
    res->generation = plan->generation;
    vm = calloc(1, sizeof(*vm));
    if (!vm) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    ks_vmm_result_init(&vm->standing);
    if ((rc = ks_plan_dup(&vm->plan, plan, err)) != KS_OK ||
        (rc = ks_plan_dup(&vm->boot_plan, plan, err)) != KS_OK)
        goto done;
    vm->n_vcpus_running = plan->n_vcpus;
    if ((rc = d->ops->create(d, vm, res, err)) != KS_OK)
        goto done;
    set_standing(vm, res);
    *out = vm;
    vm = NULL;
done:
    vm_free(vm);
    return rc;
}

ks_code ks_vmm_apply(ks_vmm_driver *d, ks_vmm_vm *vm, const ks_plan *plan, ks_vmm_result *res,
                     ks_err *err)
{
    ks_plan *copy = NULL;
    ks_code rc = ks_vmm_plan_check(plan, err);
    if (rc != KS_OK)
        goto done;
    res->generation = plan->generation;
    if (strcmp(plan->vm, vm->plan->vm) != 0) {
        rc = ks_err_set_field(err, KS_EINVAL, "vm", "plan for vm '%s' applied to vm '%s'",
                              plan->vm, vm->plan->vm);
        goto done;
    }
    if (plan->generation <= vm->plan->generation) {
        rc = ks_err_set_field(err, KS_ECONFLICT, "generation",
                              "generation %llu is not newer than the applied %llu",
                              (unsigned long long)plan->generation,
                              (unsigned long long)vm->plan->generation);
        goto done;
    }
    if ((rc = ks_plan_dup(&copy, plan, err)) != KS_OK)
        goto done;
    if ((rc = d->ops->apply(d, vm, plan, res, err)) != KS_OK)
        goto done;
    ks_plan_free(vm->plan);
    vm->plan = copy;
    copy = NULL;
    set_standing(vm, res);
done:
    ks_plan_free(copy);
    return rc;
}

ks_code ks_vmm_query(ks_vmm_state *out, ks_vmm_driver *d, ks_vmm_vm *vm, ks_err *err)
{
    ks_vmm_state s;
    ks_vmm_state_init(&s);
    ks_code rc = KS_OK;
    snprintf(s.vm, sizeof(s.vm), "%s", vm->plan->vm);
    snprintf(s.driver, sizeof(s.driver), "%s", d->ops->name);
    snprintf(s.control, sizeof(s.control), "%.255s", vm->config[0] ? vm->config : vm->sock);
    s.generation = vm->plan->generation;
    s.pid = vm->pid;
    s.vcpus = calloc(vm->plan->n_vcpus, sizeof(*s.vcpus));
    if (!s.vcpus) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    s.n_vcpus = vm->plan->n_vcpus;
    for (uint32_t i = 0; i < s.n_vcpus; i++) {
        s.vcpus[i].id = (int32_t)i;
        s.vcpus[i].host_cpu = vm->plan->vcpus[i].host_cpu;
    }
    if ((rc = d->ops->query(d, vm, &s, err)) != KS_OK)
        goto done;
    *out = s;
    ks_vmm_state_init(&s);
done:
    ks_vmm_state_destroy(&s);
    return rc;
}

ks_code ks_vmm_destroy(ks_vmm_driver *d, ks_vmm_vm *vm, ks_err *err)
{
    if (!vm)
        return KS_OK;
    ks_code rc = d->ops->destroy(d, vm, err);
    vm_free(vm);
    return rc;
}

const ks_plan *ks_vmm_vm_plan(const ks_vmm_vm *vm)
{
    return vm->plan;
}

const ks_vmm_result *ks_vmm_vm_standing(const ks_vmm_vm *vm)
{
    return &vm->standing;
}
