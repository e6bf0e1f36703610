/*
 * test_e2e_qemu.c - the full chain of issue 7: kintsugid + kintsugi-agent run +
 * real QEMU (TCG), nothing mocked.
 *
 *   POST /v1/vms ─▶ kintsugid places ─▶ plan pusher PUTs the plan to the host's
 *   agent_url ─▶ the agent's QEMU driver starts QEMU and pins every vCPU thread
 *   ─▶ kintsugid records applied_generation.
 *
 * This machine has two logical CPUs (0 and 1) and is not hybrid, so the agents
 * report MINI FIXTURES whose CPU ids are 0 and 1, derived at test time from the
 * recorded Raptor Lake CPUID dump (hwloc-x86/Intel-RaptorLake-Corei7-1370P):
 *   hyb: pu0 (a P-core thread, x2APIC 0x00) + pu12 renamed pu1 (an E-core,
 *        x2APIC 0x30): cpu 0 performance, cpu 1 efficiency;
 *   smp: pu0 + pu2 renamed pu1 (another P-core, x2APIC 0x08): two performance
 *        CPUs.  A re-plan only moves a vCPU to a free CPU of the SAME kind
 *        (scheduler/ks_sched.h, ks_sched_replan), which a 1P+1E host never has,
 *        hence the second host for the re-plan.
 * The CPUID leaves already carry distinct APIC ids, so hwloc builds two cores
 * without any edit; the agents pin real threads to the real CPUs 0 and 1.
 *
 * Cases (in order, sharing one kintsugid and two agents):
 *  1. hybrid shape: {"performance":1,"efficiency":1} on hyb-1 -> the P vCPU's
 *     thread is pinned to host cpu 0 and the E vCPU's to cpu 1 (read from
 *     /proc/<pid>/task/<tid>/status), DELETE stops QEMU (/proc/<pid> gone);
 *  2. defect at placement + re-plan: smp-1's cpu 0 has an operator aes defect
 *     from the start; a 1-vCPU VM lands on it (least capable fit), QEMU runs
 *     with -cpu max,...,-aes and the guest reads aes=false over QMP; then the
 *     defect file gains avx2 on cpu 0 -> the agent re-reports, kintsugid
 *     re-plans (generation 2, vCPU on cpu 1) and pushes, the agent re-pins
 *     online: same QEMU pid and thread, affinity now 1, nothing to restart;
 *  3. a fleet-wide ban of pclmulqdq re-plans the VM (generation 3): QEMU
 *     cannot change a running vCPU's CPUID, so the agent lists "features" under
 *     needs_restart and the guest still reads pclmulqdq=true (recorded honestly);
 *  4. the agents stop cleanly on SIGTERM (exit 0, leak-free under ASan) and
 *     take their QEMU with them.
 * Every wait polls with a deadline; teardown SIGKILLs whatever is left.
 */
#include "integration/test_api_harness.h"

#include <sys/prctl.h>

#include "ks_qmp.h"

#define PLAN_TOKEN "e2e-plan-token-0123456789"
#define HYB "hyb-1"
#define SMP "smp-1"
#define WAIT_MS 20000u
#define MAX_QEMU 8

typedef struct agent_proc {
    pid_t pid;
    const char *host;
    char token[128];
    char log[700];
    char defects[700];
    char state_dir[700];
    char url[128];
    unsigned port;
} agent_proc;

typedef struct e2e {
    kd d;
    char fx_hyb[700], fx_smp[700];
    agent_proc hyb, smp;
    pid_t qemu[MAX_QEMU]; /* every QEMU seen: SIGKILLed in teardown if still alive */
    size_t n_qemu;
    pid_t mv_pid; /* case 2's QEMU, stopped by case 4 */
} e2e;

/*
 * Watchdog: the test must end (and take every process it started with it) well
 * inside ctest's 60 s TIMEOUT, which would kill only this process and orphan
 * kintsugid, the agents and QEMU.  SIGALRM stops them with async-signal-safe
 * calls only: SIGTERM (an agent stops its QEMU), a bounded reap, then SIGKILL.
 */
#define WATCHDOG_S 50
static e2e *g_e2e;

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "test_e2e_qemu: watchdog expired, stopping every process\n";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    (void)w;
    e2e *e = g_e2e;
    if (e) {
        pid_t kids[3] = {e->hyb.pid, e->smp.pid, e->d.pid};
        for (int i = 0; i < 3; i++)
            if (kids[i] > 0)
                kill(kids[i], SIGTERM);
        for (int t = 0; t < 100; t++) { /* up to 5 s */
            int left = 0;
            for (int i = 0; i < 3; i++)
                if (kids[i] > 0 && waitpid(kids[i], NULL, WNOHANG) == 0)
                    left++;
            if (!left)
                break;
            struct timespec ts = {0, 50000000L};
            nanosleep(&ts, NULL);
        }
        for (int i = 0; i < 3; i++)
            if (kids[i] > 0)
                kill(kids[i], SIGKILL);
        for (size_t i = 0; i < e->n_qemu; i++)
            kill(e->qemu[i], SIGKILL);
    }
    _exit(1);
}

/* ---------------------------------------------------------------- files, processes */

static void write_file(const char *path, const char *text)
{
    char tmp[800];
    ks_test_path(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0); /* the agent never reads half a file */
}

static void copy_file(const char *from, const char *to)
{
    size_t len = 0;
    char *buf = ks_test_read_file(from, &len);
    if (!buf)
        fail_msg("cannot read %s", from);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(buf);
}

/* Runs argv (PATH lookup), output discarded; returns the exit status. */
static int run_quiet(char *const argv[])
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* dst/ = hwloc-cpuid-info + src/<pu0> as pu0 + src/<pu1> as pu1. */
static void derive_fixture(const char *src, const char *dst, const char *pu0, const char *pu1)
{
    char a[800], b[800];
    assert_int_equal(mkdir(dst, 0755), 0);
    copy_file(ks_test_path(a, sizeof(a), "%s/hwloc-cpuid-info", src),
              ks_test_path(b, sizeof(b), "%s/hwloc-cpuid-info", dst));
    copy_file(ks_test_path(a, sizeof(a), "%s/%s", src, pu0),
              ks_test_path(b, sizeof(b), "%s/pu0", dst));
    copy_file(ks_test_path(a, sizeof(a), "%s/%s", src, pu1),
              ks_test_path(b, sizeof(b), "%s/pu1", dst));
}

static bool proc_exists(pid_t pid)
{
    char p[64];
    struct stat st;
    snprintf(p, sizeof(p), "/proc/%d", (int)pid);
    return stat(p, &st) == 0;
}

static void note_qemu(e2e *e, pid_t pid)
{
    for (size_t i = 0; i < e->n_qemu; i++)
        if (e->qemu[i] == pid)
            return;
    if (e->n_qemu < MAX_QEMU)
        e->qemu[e->n_qemu++] = pid;
}

/* The last `max` bytes of a log, for failure messages (caller frees). */
static char *log_tail(const char *path, size_t max)
{
    size_t len = 0;
    char *txt = ks_test_read_file(path, &len);
    if (!txt)
        return strdup("(no log)");
    if (len > max) {
        memmove(txt, txt + len - max, max + 1);
    }
    return txt;
}

static void dump_logs(const e2e *e)
{
    const char *logs[] = {e->d.log, e->hyb.log, e->smp.log};
    for (size_t i = 0; i < 3; i++) {
        char *t = log_tail(logs[i], 3000);
        fprintf(stderr, "---- %s (tail)\n%s\n", logs[i], t);
        free(t);
    }
}

/* ---------------------------------------------------------------- agents */

static void agent_start(e2e *e, agent_proc *ag, const char *host, const char *fixture,
                        const char *defects_json)
{
    char bin[600], server[128];
    ag->host = host;
    kd_token(&e->d, "agent", host, ag->token, sizeof(ag->token));
    ks_test_path(bin, sizeof(bin), "%s/agent/kintsugi-agent", ks_test_build_dir());
    ks_test_path(server, sizeof(server), "http://127.0.0.1:%u", e->d.port);
    ks_test_path(ag->log, sizeof(ag->log), "%s/agent-%s.log", e->d.dir, host);
    ks_test_path(ag->defects, sizeof(ag->defects), "%s/defects-%s.json", e->d.dir, host);
    ks_test_path(ag->state_dir, sizeof(ag->state_dir), "%s/state-%s", e->d.dir, host);
    write_file(ag->defects, defects_json);
    char *argv[] = {bin,
                    (char *)"run",
                    (char *)"--server",
                    server,
                    (char *)"--token",
                    ag->token,
                    (char *)"--fixture",
                    (char *)fixture,
                    (char *)"--host-id",
                    (char *)host,
                    (char *)"--driver",
                    (char *)"qemu",
                    (char *)"--accel",
                    (char *)"tcg",
                    (char *)"--plan-token",
                    (char *)PLAN_TOKEN,
                    (char *)"--listen",
                    (char *)"127.0.0.1:0",
                    (char *)"--state-dir",
                    ag->state_dir,
                    (char *)"--heartbeat",
                    (char *)"1",
                    (char *)"--defects",
                    ag->defects,
                    NULL};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the agent stops its QEMU on SIGTERM */
        int fd = open(ag->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    ag->pid = pid;
}

static void agent_assert_running(const e2e *e, agent_proc *ag)
{
    int st;
    if (ag->pid && waitpid(ag->pid, &st, WNOHANG) == ag->pid) {
        ag->pid = 0;
        dump_logs(e);
        fail_msg("kintsugi-agent for %s exited (status %d)", ag->host, st);
    }
}

/*
 * Waits for the agent's plan endpoint URL and for kintsugid to hold the host
 * (ready).  The URL the agent serves on is taken from its own log line
 * "serving plans url='...'" and must be what kintsugid shows as the host's
 * agent_url (where it pushes plans).
 */
static void agent_wait_ready(e2e *e, agent_proc *ag)
{
    uint64_t deadline = kd_mono_ms() + 30000;
    char path[160], last_shown[256] = "(not ready)";
    ks_test_path(path, sizeof(path), "/v1/hosts/%s", ag->host);
    while (kd_mono_ms() < deadline) {
        agent_assert_running(e, ag);
        if (!ag->url[0]) {
            char *log = ks_test_read_file(ag->log, NULL);
            const char *u = log ? strstr(log, "serving plans url='") : NULL;
            if (u) {
                u += strlen("serving plans url='");
                size_t n = strcspn(u, "'");
                if (n < sizeof(ag->url)) {
                    memcpy(ag->url, u, n);
                    ag->url[n] = '\0';
                }
            }
            free(log);
            const char *colon = ag->url[0] ? strrchr(ag->url, ':') : NULL;
            if (colon)
                ag->port = (unsigned)strtoul(colon + 1, NULL, 10);
        }
        if (ag->port) {
            resp r;
            long s = kd_http(&e->d, &r, "GET", path, e->d.admin, NULL);
            bool ready =
                s == 200 && strcmp(json_string_value(json_object_get(r.json, "state"))
                                       ? json_string_value(json_object_get(r.json, "state"))
                                       : "",
                                   "ready") == 0;
            /* After an agent restart the host is still ready with the old
             * agent's URL until the new agent's first report is stored. */
            const char *shown = ready ? json_string_value(json_object_get(r.json, "agent_url")) : NULL;
            snprintf(last_shown, sizeof(last_shown), "%s", shown ? shown : "(none)");
            bool current = ready && shown && strcmp(shown, ag->url) == 0;
            resp_free(&r);
            if (current)
                return;
        }
        kd_nap_ms(50);
    }
    dump_logs(e);
    fail_msg("agent for %s: no plan URL or host not ready with it in time (agent serves '%s', "
             "kintsugid shows '%s')",
             ag->host, ag->url, last_shown);
}

/* SIGTERM and a bounded wait; the exit status (-1 not running, -2 had to SIGKILL). */
static int agent_stop(agent_proc *ag)
{
    if (!ag->pid)
        return -1;
    kill(ag->pid, SIGTERM);
    int st = 0;
    uint64_t deadline = kd_mono_ms() + 20000;
    while (kd_mono_ms() < deadline) {
        if (waitpid(ag->pid, &st, WNOHANG) == ag->pid) {
            ag->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        kd_nap_ms(20);
    }
    kill(ag->pid, SIGKILL);
    waitpid(ag->pid, &st, 0);
    ag->pid = 0;
    return -2;
}

/* GET {agent_url}/v1/vms/{vm} with the plan token; returns the status. */
static long agent_vm_get(const agent_proc *ag, const char *vm, resp *r)
{
    kd a;
    memset(&a, 0, sizeof(a));
    a.port = ag->port;
    char path[160];
    ks_test_path(path, sizeof(path), "/v1/vms/%s", vm);
    return kd_http(&a, r, "GET", path, PLAN_TOKEN, NULL);
}

/* ---------------------------------------------------------------- kintsugid views */

/* Polls GET /v1/vms/{vm} until generation >= min_gen and applied_generation ==
 * generation; returns the VM document (caller decrefs). */
static json_t *wait_applied(e2e *e, const char *vm, uint64_t min_gen)
{
    char path[160];
    ks_test_path(path, sizeof(path), "/v1/vms/%s", vm);
    uint64_t deadline = kd_mono_ms() + WAIT_MS;
    char last[512] = "";
    while (kd_mono_ms() < deadline) {
        agent_assert_running(e, &e->hyb);
        agent_assert_running(e, &e->smp);
        resp r;
        if (kd_http(&e->d, &r, "GET", path, e->d.admin, NULL) == 200) {
            json_int_t gen = json_integer_value(json_object_get(r.json, "generation"));
            json_int_t app = json_integer_value(json_object_get(r.json, "applied_generation"));
            snprintf(last, sizeof(last), "%.500s", r.body);
            if ((uint64_t)gen >= min_gen && app == gen) {
                json_t *doc = json_incref(r.json);
                resp_free(&r);
                return doc;
            }
        }
        resp_free(&r);
        kd_nap_ms(50);
    }
    dump_logs(e);
    fail_msg("vm %s: generation >= %llu not applied in time; last: %s", vm,
             (unsigned long long)min_gen, last);
    return NULL;
}

/* host_cpu of vCPU `i` in a kintsugid VM document's plan. */
static int plan_cpu(const json_t *vm, size_t i)
{
    json_t *v = json_array_get(json_object_get(json_object_get(vm, "plan"), "vcpus"), i);
    assert_non_null(v);
    return (int)json_integer_value(json_object_get(v, "host_cpu"));
}

static const char *plan_kind(const json_t *vm, size_t i)
{
    json_t *v = json_array_get(json_object_get(json_object_get(vm, "plan"), "vcpus"), i);
    const char *k = json_string_value(json_object_get(v, "kind"));
    return k ? k : "";
}

static bool json_list_has(const json_t *list, const char *s)
{
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x)
    {
        if (json_is_string(x) && strcmp(json_string_value(x), s) == 0)
            return true;
    }
    return false;
}

/* The kind ("performance"/"efficiency") kintsugid holds for a host CPU. */
static void host_cpu_kind(const e2e *e, const char *host, int cpu, char *out, size_t cap)
{
    char path[160];
    ks_test_path(path, sizeof(path), "/v1/hosts/%s/cpus", host);
    resp r;
    assert_int_equal(kd_http(&e->d, &r, "GET", path, e->d.admin, NULL), 200);
    size_t i;
    json_t *c;
    out[0] = '\0';
    json_array_foreach(json_object_get(r.json, "items"), i, c)
    {
        if (json_integer_value(json_object_get(c, "id")) == cpu)
            snprintf(out, cap, "%s", json_string_value(json_object_get(c, "kind")));
    }
    resp_free(&r);
}

/* Number of defects kintsugid lists on `cpu` of `host` naming `feature`. */
static int host_cpu_defects(const e2e *e, const char *host, int cpu, const char *feature)
{
    char path[160];
    ks_test_path(path, sizeof(path), "/v1/hosts/%s/cpus", host);
    resp r;
    assert_int_equal(kd_http(&e->d, &r, "GET", path, e->d.admin, NULL), 200);
    size_t i, k;
    json_t *c, *df;
    int n = 0;
    json_array_foreach(json_object_get(r.json, "items"), i, c)
    {
        if (json_integer_value(json_object_get(c, "id")) != cpu)
            continue;
        json_array_foreach(json_object_get(c, "defects"), k, df)
        {
            const char *f = json_string_value(json_object_get(df, "feature"));
            if (f && strcmp(f, feature) == 0)
                n++;
        }
    }
    resp_free(&r);
    return n;
}

/* ---------------------------------------------------------------- QEMU, from the OS */

/* Cpus_allowed_list of a thread, straight from /proc. */
static void thread_affinity(pid_t pid, pid_t tid, char *out, size_t cap)
{
    char path[128];
    ks_test_path(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
    char *st = ks_test_read_file(path, NULL);
    if (!st)
        fail_msg("thread %d of QEMU %d is gone", (int)tid, (int)pid);
    char *l = strstr(st, "Cpus_allowed_list:");
    assert_non_null(l);
    l += strlen("Cpus_allowed_list:");
    l += strspn(l, " \t");
    l[strcspn(l, "\n")] = '\0';
    snprintf(out, cap, "%s", l);
    free(st);
}

static void thread_comm(pid_t pid, pid_t tid, char *out, size_t cap)
{
    char path[128];
    ks_test_path(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid, (int)tid);
    char *c = ks_test_read_file(path, NULL);
    assert_non_null(c);
    c[strcspn(c, "\n")] = '\0';
    snprintf(out, cap, "%s", c);
    free(c);
}

/*
 * Checks the agent's view of `vm` against kintsugid's plan `kvm`: same
 * generation, running, and every vCPU thread's affinity in /proc equal to the
 * plan's host_cpu (the thread named "CPU i/TCG" really is vCPU i).  Returns the
 * agent document (caller decrefs) and the QEMU pid.
 */
static json_t *expect_pinned(e2e *e, const agent_proc *ag, const char *vm, const json_t *kvm,
                             pid_t *pid_out)
{
    resp r;
    assert_int_equal(agent_vm_get(ag, vm, &r), 200);
    json_t *a = json_incref(r.json);
    resp_free(&r);
    assert_non_null(a);
    assert_int_equal(json_integer_value(json_object_get(a, "generation")),
                     json_integer_value(json_object_get(kvm, "generation")));
    assert_true(json_is_true(json_object_get(a, "running")));
    pid_t pid = (pid_t)json_integer_value(json_object_get(a, "pid"));
    assert_true(pid > 0);
    note_qemu(e, pid);
    json_t *vcpus = json_object_get(a, "vcpus");
    size_t n = json_array_size(json_object_get(json_object_get(kvm, "plan"), "vcpus"));
    assert_int_equal(json_array_size(vcpus), n);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(vcpus, i);
        assert_int_equal(json_integer_value(json_object_get(v, "id")), (json_int_t)i);
        pid_t tid = (pid_t)json_integer_value(json_object_get(v, "thread_id"));
        assert_true(tid > 0 && tid != pid);
        char aff[64], comm[64], want[16], want_comm[32];
        thread_affinity(pid, tid, aff, sizeof(aff));
        thread_comm(pid, tid, comm, sizeof(comm));
        ks_test_path(want, sizeof(want), "%d", plan_cpu(kvm, i));
        ks_test_path(want_comm, sizeof(want_comm), "CPU %zu/TCG", i);
        if (strcmp(aff, want) != 0)
            fail_msg("%s vcpu %zu (thread %d): Cpus_allowed_list '%s', plan host_cpu %s", vm, i,
                     (int)tid, aff, want);
        assert_string_equal(comm, want_comm);
        assert_int_equal(json_integer_value(json_object_get(v, "host_cpu")), plan_cpu(kvm, i));
    }
    *pid_out = pid;
    return a;
}

/* The argument after "-cpu" on QEMU's command line (caller frees). */
static char *qemu_cpu_arg(pid_t pid)
{
    char path[64];
    size_t len = 0;
    ks_test_path(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    char *cmd = ks_test_read_file(path, &len);
    assert_non_null(cmd);
    char *res = NULL;
    for (size_t off = 0; off < len;) {
        const char *arg = cmd + off;
        size_t n = strlen(arg);
        if (strcmp(arg, "-cpu") == 0 && off + n + 1 < len) {
            res = strdup(arg + n + 1);
            break;
        }
        off += n + 1;
    }
    free(cmd);
    if (!res)
        fail_msg("QEMU %d has no -cpu argument", (int)pid);
    return res;
}

/* True when ",-feat" (or ",feat=off") is in the -cpu argument. */
static bool cpu_arg_hides(const char *arg, const char *feat)
{
    char a[64], b[64];
    ks_test_path(a, sizeof(a), ",-%s", feat);
    ks_test_path(b, sizeof(b), ",%s=off", feat);
    for (const char *p = arg; (p = strstr(p, a)) != NULL; p += strlen(a))
        if (p[strlen(a)] == ',' || p[strlen(a)] == '\0')
            return true;
    return strstr(arg, b) != NULL;
}

/* qom-get of a CPUID feature property of vCPU `idx` over the VM's QMP socket. */
static bool guest_feature(const json_t *agent_vm, size_t idx, const char *prop)
{
    const char *sock = json_string_value(json_object_get(agent_vm, "control"));
    assert_non_null(sock);
    ks_qmp *q = NULL;
    ks_err err = {0};
    if (ks_qmp_connect(&q, sock, 5000000, &err) != KS_OK)
        fail_msg("qmp %s: %s", sock, err.msg);
    json_t *cpus = NULL, *val = NULL;
    assert_int_equal(ks_qmp_execute(&cpus, q, "query-cpus-fast", NULL, 5000000, &err), KS_OK);
    const char *path = json_string_value(json_object_get(json_array_get(cpus, idx), "qom-path"));
    assert_non_null(path);
    json_t *args = json_pack("{s:s, s:s}", "path", path, "property", prop);
    if (ks_qmp_execute(&val, q, "qom-get", args, 5000000, &err) != KS_OK)
        fail_msg("qom-get %s: %s", prop, err.msg);
    assert_true(json_is_boolean(val));
    bool on = json_is_true(val);
    json_decref(args);
    json_decref(val);
    json_decref(cpus);
    ks_qmp_close(q);
    return on;
}

/* True when the agent document lists `item` under `list` with `sub` in its detail. */
static bool has_note(const json_t *agent_vm, const char *list, const char *item, const char *sub)
{
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(agent_vm, list), i, n)
    {
        const char *it = json_string_value(json_object_get(n, "item"));
        const char *de = json_string_value(json_object_get(n, "detail"));
        if (it && strcmp(it, item) == 0 && (!sub || (de && strstr(de, sub))))
            return true;
    }
    return false;
}

static void wait_gone(const e2e *e, pid_t pid, const char *what)
{
    uint64_t deadline = kd_mono_ms() + WAIT_MS;
    while (kd_mono_ms() < deadline && proc_exists(pid))
        kd_nap_ms(25);
    if (proc_exists(pid)) {
        dump_logs(e);
        fail_msg("%s: QEMU %d still exists (/proc/%d) after the deadline", what, (int)pid,
                 (int)pid);
    }
}

/* ---------------------------------------------------------------- setup */

static int group_setup(void **state)
{
    e2e *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    *state = e;
    g_e2e = e;
    signal(SIGALRM, watchdog);
    alarm(WATCHDOG_S);
    static const char *const extra[] = {"--agent-plan-token", PLAN_TOKEN, NULL};
    kd_setup(&e->d, extra);

    /* Mini fixtures from the recorded Raptor Lake dump (see the header). */
    char unpack[700], tarball[700];
    ks_test_path(unpack, sizeof(unpack), "%s/unpacked", e->d.dir);
    ks_test_path(tarball, sizeof(tarball), "%s/hwloc-x86/Intel-RaptorLake-Corei7-1370P.tar.bz2",
                 ks_test_fixtures_dir());
    assert_int_equal(mkdir(unpack, 0755), 0);
    char *tar[] = {
        (char *)"tar", (char *)"--no-same-owner", (char *)"-xjf", tarball, (char *)"-C", unpack,
        NULL};
    assert_int_equal(run_quiet(tar), 0);
    char src[800];
    ks_test_path(src, sizeof(src), "%s/Intel-RaptorLake-Corei7-1370P", unpack);
    ks_test_path(e->fx_hyb, sizeof(e->fx_hyb), "%s/fx-hyb", e->d.dir);
    ks_test_path(e->fx_smp, sizeof(e->fx_smp), "%s/fx-smp", e->d.dir);
    derive_fixture(src, e->fx_hyb, "pu0", "pu12");
    derive_fixture(src, e->fx_smp, "pu0", "pu2");

    agent_start(e, &e->hyb, HYB, e->fx_hyb, "[]\n");
    agent_start(e, &e->smp, SMP, e->fx_smp,
                "[{\"cpu\": 0, \"features\": [\"aes\"], \"reason\": \"e2e: aes bad\"}]\n");
    agent_wait_ready(e, &e->hyb);
    agent_wait_ready(e, &e->smp);
    return 0;
}

static int group_teardown(void **state)
{
    e2e *e = *state;
    if (!e)
        return 0;
    int s1 = agent_stop(&e->hyb), s2 = agent_stop(&e->smp);
    for (size_t i = 0; i < e->n_qemu; i++)
        if (proc_exists(e->qemu[i]))
            kill(e->qemu[i], SIGKILL); /* only QEMUs the agents reported */
    bool bad = (s1 != 0 && s1 != -1) || (s2 != 0 && s2 != -1);
    if (bad) {
        fprintf(stderr, "agent exit statuses %d %d\n", s1, s2);
        dump_logs(e);
    }
    kd_teardown(&e->d, bad);
    alarm(0);
    g_e2e = NULL;
    free(e);
    return bad ? -1 : 0;
}

/* ---------------------------------------------------------------- cases */

/* 1. A hybrid shape: the P vCPU on the P core, the E vCPU on the E core. */
static void test_e2e_qemu__hybrid_shape_pins_and_delete_stops(void **state)
{
    e2e *e = *state;
    char kind0[32], kind1[32];
    host_cpu_kind(e, HYB, 0, kind0, sizeof(kind0));
    host_cpu_kind(e, HYB, 1, kind1, sizeof(kind1));
    assert_string_equal(kind0, "performance"); /* the mini fixture really is hybrid */
    assert_string_equal(kind1, "efficiency");

    resp r;
    uint64_t t0 = kd_mono_ms();
    long s = kd_http(&e->d, &r, "POST", "/v1/vms", e->d.admin,
                     "{\"name\":\"e2e-hyb\",\"host\":\"" HYB "\",\"memory_mib\":128,"
                     "\"vcpus\":{\"performance\":1,\"efficiency\":1}}");
    if (s != 201)
        fail_msg("POST /v1/vms -> %ld %s", s, r.body ? r.body : "");
    resp_free(&r);
    json_t *kvm = wait_applied(e, "e2e-hyb", 1);
    uint64_t t_applied = kd_mono_ms();
    assert_string_equal(json_string_value(json_object_get(kvm, "state")), "running");
    for (size_t i = 0; i < 2; i++) {
        char hk[32];
        host_cpu_kind(e, HYB, plan_cpu(kvm, i), hk, sizeof(hk));
        assert_string_equal(plan_kind(kvm, i), hk); /* each vCPU on a CPU of its kind */
    }
    assert_string_not_equal(plan_kind(kvm, 0), plan_kind(kvm, 1));

    pid_t pid = 0;
    json_t *avm = expect_pinned(e, &e->hyb, "e2e-hyb", kvm, &pid);
    json_decref(avm);
    json_decref(kvm);

    uint64_t t1 = kd_mono_ms();
    assert_int_equal(kd_http(&e->d, &r, "DELETE", "/v1/vms/e2e-hyb", e->d.admin, NULL), 204);
    resp_free(&r);
    wait_gone(e, pid, "DELETE /v1/vms/e2e-hyb");
    printf("e2e: POST /v1/vms -> QEMU pinned and applied_generation 1: %llu ms; DELETE -> "
           "QEMU gone: %llu ms\n",
           (unsigned long long)(t_applied - t0), (unsigned long long)(kd_mono_ms() - t1));
    uint64_t deadline = kd_mono_ms() + WAIT_MS;
    long as = 0;
    while (kd_mono_ms() < deadline && (as = agent_vm_get(&e->hyb, "e2e-hyb", &r)) != 404) {
        resp_free(&r);
        kd_nap_ms(25);
    }
    resp_free(&r);
    assert_int_equal(as, 404);
    assert_int_equal(kd_http(&e->d, &r, "GET", "/v1/hosts/" HYB, e->d.admin, NULL), 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "counts"), "free")),
                     2);
    resp_free(&r);
}

/* 2. A defect at placement hides the feature; a new defect moves the vCPU online. */
static void test_e2e_qemu__defect_hides_then_replan_repins_online(void **state)
{
    e2e *e = *state;
    assert_int_equal(host_cpu_defects(e, SMP, 0, "aes"), 1);

    resp r;
    long s = kd_http(&e->d, &r, "POST", "/v1/vms", e->d.admin,
                     "{\"name\":\"e2e-mv\",\"host\":\"" SMP "\",\"memory_mib\":128,\"vcpus\":1}");
    if (s != 201)
        fail_msg("POST /v1/vms -> %ld %s", s, r.body ? r.body : "");
    resp_free(&r);
    json_t *kvm = wait_applied(e, "e2e-mv", 1);
    /* Least capable fit: the degraded cpu 0 is used first (DESIGN.md, Scheduler). */
    assert_int_equal(plan_cpu(kvm, 0), 0);
    json_t *disable =
        json_object_get(json_object_get(json_object_get(kvm, "plan"), "features"), "disable");
    assert_true(json_list_has(disable, "aes"));
    uint64_t gen1 = (uint64_t)json_integer_value(json_object_get(kvm, "generation"));

    pid_t pid = 0;
    json_t *avm = expect_pinned(e, &e->smp, "e2e-mv", kvm, &pid);
    e->mv_pid = pid;
    pid_t tid = (pid_t)json_integer_value(
        json_object_get(json_array_get(json_object_get(avm, "vcpus"), 0), "thread_id"));
    char *cpu = qemu_cpu_arg(pid);
    if (strncmp(cpu, "max", 3) != 0 || !cpu_arg_hides(cpu, "aes"))
        fail_msg("QEMU -cpu '%s': want max with -aes", cpu);
    free(cpu);
    assert_false(guest_feature(avm, 0, "aes"));
    assert_true(guest_feature(avm, 0, "avx2")); /* only what the plan hides is hidden */
    json_decref(avm);
    json_decref(kvm);

    /* cpu 0 also loses avx2, which the guest sees: kintsugid must move the vCPU. */
    uint64_t t0 = kd_mono_ms();
    write_file(e->smp.defects,
               "[{\"cpu\": 0, \"features\": [\"aes\", \"avx2\"], \"reason\": \"e2e: more\"}]\n");
    kvm = wait_applied(e, "e2e-mv", gen1 + 1);
    printf("e2e: defect file written -> re-plan applied by the agent: %llu ms\n",
           (unsigned long long)(kd_mono_ms() - t0));
    assert_string_equal(json_string_value(json_object_get(kvm, "state")), "running");
    assert_int_equal(plan_cpu(kvm, 0), 1);
    pid_t pid2 = 0;
    avm = expect_pinned(e, &e->smp, "e2e-mv", kvm, &pid2);
    assert_int_equal(pid2, pid); /* re-pinned online: the same QEMU ... */
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(avm, "vcpus"), 0), "thread_id")),
                     tid); /* ... and the same vCPU thread */
    assert_int_equal(json_array_size(json_object_get(avm, "needs_restart")), 0);
    assert_true(has_note(json_object_get(avm, "result"), "applied", "vcpu[0].pin", NULL));
    assert_false(guest_feature(avm, 0, "aes")); /* the guest's CPUID did not change */
    assert_true(guest_feature(avm, 0, "avx2"));
    json_decref(avm);
    json_decref(kvm);
}

/* 3. A ban hides a feature the running guest sees: the agent says needs_restart. */
static void test_e2e_qemu__ban_reports_needs_restart(void **state)
{
    e2e *e = *state;
    assert_true(e->mv_pid > 0);
    resp r;
    assert_int_equal(kd_http(&e->d, &r, "GET", "/v1/vms/e2e-mv", e->d.admin, NULL), 200);
    uint64_t gen = (uint64_t)json_integer_value(json_object_get(r.json, "generation"));
    resp_free(&r);
    long s = kd_http(&e->d, &r, "POST", "/v1/policies/feature-bans", e->d.admin,
                     "{\"features\":[\"pclmulqdq\"],\"reason\":\"e2e ban\"}");
    if (s != 201 && s != 200)
        fail_msg("POST /v1/policies/feature-bans -> %ld %s", s, r.body ? r.body : "");
    resp_free(&r);
    json_t *kvm = wait_applied(e, "e2e-mv", gen + 1);
    json_t *disable =
        json_object_get(json_object_get(json_object_get(kvm, "plan"), "features"), "disable");
    assert_true(json_list_has(disable, "pclmulqdq"));
    pid_t pid = 0;
    json_t *avm = expect_pinned(e, &e->smp, "e2e-mv", kvm, &pid);
    assert_int_equal(pid, e->mv_pid); /* the pusher does not allow restarts */
    if (!has_note(avm, "needs_restart", "features", "pclmulqdq"))
        fail_msg("agent did not list the hidden pclmulqdq under needs_restart: %s",
                 json_dumps(avm, JSON_COMPACT));
    /* What the guest really sees until a restart: pclmulqdq is still on (TCG's
     * max model has it; QEMU 7.2's TCG has no sha-ni to test this with). */
    assert_true(guest_feature(avm, 0, "pclmulqdq"));
    json_decref(avm);
    json_decref(kvm);
}

/*
 * 4. An agent restart stops its VMs (SIGTERM stops QEMU); the new agent's report
 *    no longer lists e2e-mv, so kintsugid resets its applied generation, pushes
 *    the plan again, and the VM runs again: a new QEMU, pinned as planned.
 */
static void test_e2e_qemu__agent_restart_restarts_its_vm(void **state)
{
    e2e *e = *state;
    pid_t old = e->mv_pid;
    assert_true(old > 0 && proc_exists(old));
    int st = agent_stop(&e->smp);
    if (st != 0) {
        dump_logs(e);
        fail_msg("%s agent exit status %d", SMP, st);
    }
    wait_gone(e, old, "agent SIGTERM");

    char *defects = ks_test_read_file(e->smp.defects, NULL);
    assert_non_null(defects);
    unlink(e->smp.log); /* agent_wait_ready reads the new agent's URL from its log */
    e->smp.url[0] = '\0';
    e->smp.port = 0;
    agent_start(e, &e->smp, SMP, e->fx_smp, defects);
    free(defects);
    agent_wait_ready(e, &e->smp);

    uint64_t deadline = kd_mono_ms() + WAIT_MS;
    long status = 0;
    while (kd_mono_ms() < deadline) {
        resp r;
        status = agent_vm_get(&e->smp, "e2e-mv", &r);
        resp_free(&r);
        if (status == 200)
            break;
        kd_nap_ms(50);
    }
    if (status != 200) {
        dump_logs(e);
        fail_msg("the restarted agent was not given e2e-mv again (last status %ld)", status);
    }
    resp r;
    assert_int_equal(kd_http(&e->d, &r, "GET", "/v1/vms/e2e-mv", e->d.admin, NULL), 200);
    uint64_t gen = (uint64_t)json_integer_value(json_object_get(r.json, "generation"));
    resp_free(&r);
    json_t *kvm = wait_applied(e, "e2e-mv", gen);
    pid_t pid = 0;
    json_t *avm = expect_pinned(e, &e->smp, "e2e-mv", kvm, &pid);
    assert_true(pid != old);
    note_qemu(e, pid);
    e->mv_pid = pid;
    json_decref(avm);
    json_decref(kvm);

    /* The event log says why the plan went out again. */
    assert_int_equal(kd_http(&e->d, &r, "GET", "/v1/events?limit=1000", e->d.admin, NULL), 200);
    bool seen = false;
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(r.json, "items"), i, ev)
    {
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *vm = json_string_value(json_object_get(ev, "vm"));
        seen |= type && vm && strcmp(type, "vm.missing_on_host") == 0 && strcmp(vm, "e2e-mv") == 0;
    }
    resp_free(&r);
    assert_true(seen);
}

/* 5. SIGTERM stops each agent cleanly and its QEMU with it. */
static void test_e2e_qemu__agents_stop_with_their_qemu(void **state)
{
    e2e *e = *state;
    assert_true(e->mv_pid > 0);
    assert_true(proc_exists(e->mv_pid));
    int s1 = agent_stop(&e->hyb);
    int s2 = agent_stop(&e->smp);
    if (s1 != 0 || s2 != 0) {
        dump_logs(e);
        fail_msg("agent exit statuses: %s %d, %s %d", HYB, s1, SMP, s2);
    }
    wait_gone(e, e->mv_pid, "agent SIGTERM");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_qemu__hybrid_shape_pins_and_delete_stops),
        cmocka_unit_test(test_e2e_qemu__defect_hides_then_replan_repins_online),
        cmocka_unit_test(test_e2e_qemu__ban_reports_needs_restart),
        cmocka_unit_test(test_e2e_qemu__agent_restart_restarts_its_vm),
        cmocka_unit_test(test_e2e_qemu__agents_stop_with_their_qemu),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
