/*
 * test_agent_resilience.c - kintsugi-agent run against a kintsugid that comes
 * and goes, and reports that arrive twice or out of order.
 *
 * One agent (a recorded AMD 2-socket fixture, --heartbeat 1, --no-serve, the
 * operator defect file deploy/defects.json.example) and one kintsugid on a
 * fixed free loopback port, through these phases in order:
 *   1. the agent starts first: the host registers once kintsugid comes up;
 *   2. kintsugid is SIGKILLed and stays down a few seconds: the agent keeps
 *      retrying and the host is ready again (not lost) after the restart;
 *   3. kintsugid restarts from a restored backup that predates the agent's last
 *      report: the heartbeat tells the agent, which resends (the server
 *      converges on the agent's generation and defects);
 *   4. duplicate and out-of-order reports sent by hand: same generation = 200
 *      unchanged, older = 409, newer = 200; the stored view never goes back;
 *   5. running VMs listed in a report: what kintsugid reconciles today.
 * SPEC: docs/api.md#host-report (idempotent by host, boot id, generation),
 *       agent/cmd_run.c (nothing lost while kintsugid is down),
 *       docs/reliability.md#agent-resilience.
 * Every wait polls with a deadline.
 */
#include "integration/test_api_harness.h"

#include <netinet/in.h>
#include <sys/socket.h>

#define HOST "res-1"

typedef struct agent_proc {
    pid_t pid;
    char log[600];
} agent_proc;

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void write_file(const char *path, const char *text)
{
    char tmp[700];
    ks_test_path(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0); /* the agent never reads half a file */
}

static void copy_file(const char *from, const char *to)
{
    size_t len = 0;
    char *buf = ks_test_read_file(from, &len);
    unlink(to);
    if (!buf)
        return; /* absent (-wal/-shm after a clean stop): stays absent */
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(buf);
}

static void copy_db(const char *from, const char *to)
{
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char a[700], b[700];
        ks_test_path(a, sizeof(a), "%s%s", from, sfx[i]);
        ks_test_path(b, sizeof(b), "%s%s", to, sfx[i]);
        copy_file(a, b);
    }
}

static void agent_start(agent_proc *ag, const kd *d, const char *token, const char *defects)
{
    char bin[600], fixture[700], server[128];
    ks_test_path(bin, sizeof(bin), "%s/agent/kintsugi-agent", ks_test_build_dir());
    ks_test_path(fixture, sizeof(fixture), "%s/hwloc-x86/AMD-19h-Zen3-2xEpyc-7763.tar.bz2",
                 ks_test_fixtures_dir());
    ks_test_path(server, sizeof(server), "http://127.0.0.1:%u", d->port);
    ks_test_path(ag->log, sizeof(ag->log), "%s/agent.log", d->dir);
    char *argv[] = {bin,
                    (char *)"run",
                    (char *)"--fixture",
                    fixture,
                    (char *)"--host-id",
                    (char *)HOST,
                    (char *)"--server",
                    server,
                    (char *)"--token",
                    (char *)token,
                    (char *)"--heartbeat",
                    (char *)"1",
                    (char *)"--no-serve",
                    (char *)"--defects",
                    (char *)defects,
                    NULL};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
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

static int agent_stop(agent_proc *ag)
{
    if (!ag->pid)
        return -1;
    kill(ag->pid, SIGTERM);
    int st = 0;
    uint64_t deadline = kd_mono_ms() + 30000;
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

static void agent_assert_running(const agent_proc *ag)
{
    int st;
    if (waitpid(ag->pid, &st, WNOHANG) == ag->pid) {
        char *log = ks_test_read_file(ag->log, NULL);
        fail_msg("kintsugi-agent exited (status %d); log:\n%s", st, log ? log : "");
    }
}

/* GET /v1/hosts/HOST; *gen_out the stored generation; returns the status. */
static long host_get(const kd *d, uint64_t *gen_out, char *state, size_t cap,
                     uint64_t *heartbeat_us)
{
    resp r;
    long s = kd_http(d, &r, "GET", "/v1/hosts/" HOST, d->admin, NULL);
    if (s == 200) {
        if (gen_out)
            *gen_out = (uint64_t)json_integer_value(json_object_get(r.json, "generation"));
        if (state)
            snprintf(state, cap, "%s", json_string_value(json_object_get(r.json, "state")));
        if (heartbeat_us)
            *heartbeat_us =
                (uint64_t)json_integer_value(json_object_get(r.json, "last_heartbeat_us"));
    }
    resp_free(&r);
    return s;
}

/* Number of defects kintsugid lists for `cpu` of HOST naming `feature` (or any
 * when NULL), and the CPU's state. */
static int cpu_defects(const kd *d, int cpu, const char *feature, char *state, size_t cap)
{
    resp r;
    assert_int_equal(kd_http(d, &r, "GET", "/v1/hosts/" HOST "/cpus", d->admin, NULL), 200);
    json_t *items = json_object_get(r.json, "items"), *c;
    size_t i;
    int n = -1;
    json_array_foreach(items, i, c)
    {
        if (json_integer_value(json_object_get(c, "id")) != cpu)
            continue;
        n = 0;
        if (state)
            snprintf(state, cap, "%s", json_string_value(json_object_get(c, "state")));
        json_t *defs = json_object_get(c, "defects"), *df;
        size_t k;
        json_array_foreach(defs, k, df)
        {
            const char *f = json_string_value(json_object_get(df, "feature"));
            if (!feature || (f && strcmp(f, feature) == 0))
                n++;
        }
    }
    resp_free(&r);
    return n;
}

/* Polls until HOST is stored with generation >= min_gen and state ready. */
static uint64_t wait_host(const kd *d, const agent_proc *ag, uint64_t min_gen, const char *what)
{
    uint64_t deadline = kd_mono_ms() + 90000, gen = 0;
    char state[32] = "";
    while (kd_mono_ms() < deadline) {
        agent_assert_running(ag);
        if (host_get(d, &gen, state, sizeof(state), NULL) == 200 && gen >= min_gen &&
            strcmp(state, "ready") == 0)
            return gen;
        kd_nap_ms(100);
    }
    char *log = ks_test_read_file(ag->log, NULL);
    fail_msg("%s: host generation %llu state '%s' (want >= %llu, ready); agent log:\n%s", what,
             (unsigned long long)gen, state, (unsigned long long)min_gen, log ? log : "");
    return 0; /* not reached: fail_msg() ends the test */
}

static void test_agent_resilience__phases(void **state)
{
    (void)state;
    kd d;
    memset(&d, 0, sizeof(d));
    ks_test_mkdtemp(d.dir, sizeof(d.dir));
    ks_test_path(d.db, sizeof(d.db), "%s/kintsugi.db", d.dir);
    ks_test_path(d.port_file, sizeof(d.port_file), "%s/port", d.dir);
    ks_test_path(d.log, sizeof(d.log), "%s/kintsugid.log", d.dir);
    char agent_tok[128], backup[700], defects[700], example[700], listen[64];
    kd_token(&d, "admin", NULL, d.admin, sizeof(d.admin));
    kd_token(&d, "agent", HOST, agent_tok, sizeof(agent_tok));
    ks_test_path(backup, sizeof(backup), "%s/backup.db", d.dir);
    ks_test_path(defects, sizeof(defects), "%s/defects.json", d.dir);
    const char *src = getenv("KS_SOURCE_DIR");
    ks_test_path(example, sizeof(example), "%s/deploy/defects.json.example", src ? src : "..");
    copy_file(example, defects); /* the shipped example must be accepted as is */
    d.port = free_port();
    ks_test_path(listen, sizeof(listen), "127.0.0.1:%u", d.port);
    unsigned port = d.port;
    const char *args[] = {"--listen", listen, "--lost-after", "4", NULL};

    /* 1. The agent first, kintsugid a little later. */
    agent_proc ag = {0};
    agent_start(&ag, &d, agent_tok, defects);
    uint64_t until = kd_mono_ms() + 1500; /* let it fail a few sends */
    while (kd_mono_ms() < until) {
        agent_assert_running(&ag);
        kd_nap_ms(50);
    }
    kd_spawn(&d, args);
    assert_int_equal(d.port, port);
    uint64_t gen1 = wait_host(&d, &ag, 1, "first registration");
    char cst[32];
    assert_true(cpu_defects(&d, 63, NULL, cst, sizeof(cst)) >= 1);
    assert_string_equal(cst, "quarantined");
    assert_true(cpu_defects(&d, 40, "aes", NULL, 0) == 1);
    fprintf(stderr, "resilience: registered at generation %llu\n", (unsigned long long)gen1);

    /* 2. SIGKILL, down for 3 s (longer than a heartbeat, shorter than lost-after). */
    uint64_t hb_before = 0;
    assert_int_equal(host_get(&d, NULL, NULL, 0, &hb_before), 200);
    kill(d.pid, SIGKILL);
    waitpid(d.pid, NULL, 0);
    d.pid = 0;
    until = kd_mono_ms() + 3000;
    while (kd_mono_ms() < until) {
        agent_assert_running(&ag);
        kd_nap_ms(50);
    }
    kd_spawn(&d, args);
    uint64_t t_restart = kd_mono_ms(), hb = 0;
    uint64_t deadline = kd_mono_ms() + 60000;
    while (kd_mono_ms() < deadline) {
        if (host_get(&d, NULL, NULL, 0, &hb) == 200 && hb > hb_before)
            break;
        kd_nap_ms(100);
    }
    assert_true(hb > hb_before);
    fprintf(stderr, "resilience: heartbeat resumed %llu ms after the restart\n",
            (unsigned long long)(kd_mono_ms() - t_restart));
    /* Not lost: ready now and still ready past --lost-after. */
    wait_host(&d, &ag, gen1, "after SIGKILL");
    until = kd_mono_ms() + 5000;
    while (kd_mono_ms() < until) {
        char st[32] = "";
        assert_int_equal(host_get(&d, NULL, st, sizeof(st), NULL), 200);
        assert_string_equal(st, "ready");
        kd_nap_ms(250);
    }

    /* 3. Back up, let the agent move on, restore the backup. */
    assert_int_equal(kd_stop(&d), 0);
    copy_db(d.db, backup);
    kd_spawn(&d, args);
    size_t elen = 0;
    char *ex = ks_test_read_file(example, &elen);
    assert_non_null(ex);
    char *close_br = strrchr(ex, ']');
    assert_non_null(close_br);
    *close_br = '\0';
    char *more = NULL;
    assert_true(asprintf(&more,
                         "%s,\n  {\"cpu\": 5, \"features\": [\"avx2\"], \"reason\": "
                         "\"resilience test\"}\n]\n",
                         ex) > 0);
    free(ex);
    write_file(defects, more);
    free(more);
    uint64_t gen2 = wait_host(&d, &ag, gen1 + 1, "defect file change");
    assert_int_equal(cpu_defects(&d, 5, "avx2", NULL, 0), 1);
    assert_int_equal(kd_stop(&d), 0);
    copy_db(backup, d.db); /* the server forgets generation gen2 */
    kd_spawn(&d, args);
    uint64_t g = 0;
    assert_int_equal(host_get(&d, &g, NULL, 0, NULL), 200);
    assert_true(g < gen2);
    uint64_t t_restore = kd_mono_ms();
    uint64_t gen3 = wait_host(&d, &ag, gen2, "restored backup");
    assert_int_equal(gen3, gen2);
    assert_int_equal(cpu_defects(&d, 5, "avx2", NULL, 0), 1);
    fprintf(stderr,
            "resilience: restored backup at generation %llu, agent resent generation %llu "
            "within %llu ms\n",
            (unsigned long long)g, (unsigned long long)gen3,
            (unsigned long long)(kd_mono_ms() - t_restore));

    /* 4. Duplicates and stale reports, by hand, for a second host. */
    char tok2[128];
    kd_token(&d, "agent", "res-2", tok2, sizeof(tok2));
    resp r;
    assert_int_equal(kd_put_report(&d, tok2, "res-2", 4, 4, 5, "boot-r2", -1, NULL, NULL), 201);
    assert_int_equal(kd_put_report(&d, tok2, "res-2", 4, 4, 5, "boot-r2", -1, NULL, &r), 200);
    assert_true(json_is_true(json_object_get(r.json, "unchanged")));
    resp_free(&r);
    assert_int_equal(kd_put_report(&d, tok2, "res-2", 4, 4, 4, "boot-r2", 1, "avx2", &r), 409);
    assert_string_equal(kd_err_code(&r), "conflict");
    resp_free(&r);
    assert_int_equal(kd_put_report(&d, tok2, "res-2", 4, 4, 7, "boot-r2", 2, "aes", NULL), 200);
    assert_int_equal(kd_put_report(&d, tok2, "res-2", 4, 4, 6, "boot-r2", -1, NULL, NULL), 409);
    assert_int_equal(kd_put_report(&d, tok2, "res-2", 4, 4, 7, "boot-r2", 2, "aes", &r), 200);
    assert_true(json_is_true(json_object_get(r.json, "unchanged")));
    resp_free(&r);
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/hosts/res-2", tok2, NULL), 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "generation")), 7);
    resp_free(&r);
    /* A new boot restarts generations: an older number with a new boot id is news. */
    assert_int_equal(kd_put_report(&d, tok2, "res-2", 4, 4, 1, "boot-r2b", -1, NULL, NULL), 200);
    /* The same for the agent's host: a stale copy of its report is refused and the
     * stored view stays the agent's. */
    char boot[128] = "";
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/hosts/" HOST, d.admin, NULL), 200);
    snprintf(boot, sizeof(boot), "%s", json_string_value(json_object_get(r.json, "boot_id")));
    resp_free(&r);
    assert_int_equal(kd_put_report(&d, d.admin, HOST, 4, 4, gen1, boot, -1, NULL, NULL), 409);
    assert_int_equal(host_get(&d, &g, NULL, 0, NULL), 200);
    assert_int_equal(g, gen3);
    /* Heartbeats: an older generation than stored asks for nothing; a newer one
     * (the server is behind) asks for the report. */
    char hbody[256];
    snprintf(hbody, sizeof(hbody), "{\"boot_id\":\"%s\",\"generation\":%llu}", boot,
             (unsigned long long)(gen3 + 10));
    assert_int_equal(kd_http(&d, &r, "POST", "/v1/hosts/" HOST "/heartbeat", agent_tok, hbody),
                     200);
    assert_true(json_is_true(json_object_get(r.json, "report_required")));
    resp_free(&r);
    snprintf(hbody, sizeof(hbody), "{\"boot_id\":\"%s\",\"generation\":%llu}", boot,
             (unsigned long long)gen3);
    assert_int_equal(kd_http(&d, &r, "POST", "/v1/hosts/" HOST "/heartbeat", agent_tok, hbody),
                     200);
    assert_false(json_is_true(json_object_get(r.json, "report_required")));
    resp_free(&r);

    /* 5. Running VMs in a report.  kintsugid records the plan generation the agent
     * applied for VMs it placed there and names the VMs it does not know
     * (unknown_vms); it does not delete, create or re-place anything from a report. */
    assert_int_equal(kd_http(&d, &r, "POST", "/v1/vms", d.admin,
                             "{\"name\":\"rec-1\",\"vcpus\":2,\"memory_mib\":256,\"host\":"
                             "\"res-2\"}"),
                     201);
    resp_free(&r);
    assert_int_equal(kd_http(&d, &r, "POST", "/v1/vms", d.admin,
                             "{\"name\":\"rec-2\",\"vcpus\":1,\"memory_mib\":256,\"host\":"
                             "\"res-2\"}"),
                     201);
    resp_free(&r);
    ks_report *rep = kd_report("res-2", 4, 4, 2, "boot-r2b", -1, NULL);
    rep->vms = calloc(2, sizeof(*rep->vms));
    assert_non_null(rep->vms);
    rep->n_vms = 2;
    snprintf(rep->vms[0].name, sizeof(rep->vms[0].name), "rec-1");
    rep->vms[0].generation = 1;
    snprintf(rep->vms[1].name, sizeof(rep->vms[1].name), "ghost-vm");
    rep->vms[1].generation = 3;
    json_t *doc = ks_report_to_json(rep);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    ks_report_free(rep);
    assert_int_equal(kd_http(&d, &r, "PUT", "/v1/hosts/res-2/report", tok2, text), 200);
    free(text);
    json_t *unknown = json_object_get(r.json, "unknown_vms");
    assert_int_equal(json_array_size(unknown), 1);
    assert_string_equal(json_string_value(json_array_get(unknown, 0)), "ghost-vm");
    resp_free(&r);
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/vms/rec-1", d.admin, NULL), 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "applied_generation")), 1);
    resp_free(&r);
    /* rec-2 was not in the report: it stays as placed (not reconciled away). */
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/vms/rec-2", d.admin, NULL), 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "applied_generation")), 0);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "running");
    resp_free(&r);
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/vms/ghost-vm", d.admin, NULL), 404);
    resp_free(&r);

    int ast = agent_stop(&ag);
    if (ast != 0) {
        char *log = ks_test_read_file(ag.log, NULL);
        fprintf(stderr, "agent exit %d; log:\n%s\n", ast, log ? log : "");
        free(log);
    }
    assert_int_equal(ast, 0);
    kd_teardown(&d, true);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_resilience__phases),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
