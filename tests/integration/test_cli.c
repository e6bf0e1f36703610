/*
 * test_cli.c - kintsugictl end to end: a real kintsugid (temp database, port 0,
 * token auth) with a known fleet registered from recorded fixtures, and the
 * built kintsugictl run as a subprocess for every command and output format.
 *
 * Fleet (registered once, in the group setup):
 *   h-rpl  Raptor Lake i7-1370P: hybrid, 12 P + 8 E logical CPUs, no AVX-512
 *   h-spr  2x Sapphire Rapids Xeon Max: 160 CPUs, AVX-512
 *   h-skl  2x Skylake Xeon 6140: 72 CPUs, AVX-512
 *   h-def  2x Haswell E5-2680v3 (24 CPUs) sent by `kintsugi-agent run --once` with an
 *          operator defect file: CPU 3 loses avx2 (degraded), CPU 5 quarantined
 *   h-arm  2-CPU ARM box, drained early and deleted last
 * The tests run in order and build on each other's VMs, pools and bans; report
 * and capacity numbers are cross-checked against the database with SQL counts.
 *
 * SPEC: cli/ks_cli.h (exit codes 0/1/2), cli/kintsugictl.c (settings: config file,
 * then KINTSUGI_* environment, then flags; unknown config keys are errors),
 * docs/api.md#pools-bans-capacity (GET /v1/capacity, GET /v1/reports/capacity),
 * scheduler/ks_sched.h ks_capacity (what each capacity count means).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "ks_store.h"
#include "test_api_harness.h"
#include "test_cli_util.h"

#define RUN_TIMEOUT_MS 30000u

static struct {
    kd d;
    char ctl[600], agent[600];
    char fx[600];      /* unpacked fixtures */
    char scratch[600]; /* files handed to kintsugictl, its run.out/err */
    char server[128];
    char admin[128], reader[128], agent_tok[128];
    char dead_server[128]; /* a loopback port nobody listens on */
} S;

/* ---- running kintsugictl ---- */

/* Every run starts from a clean environment: no KINTSUGI_* variables and a HOME
 * without a config file, unless `env` (applied after) says otherwise. */
static int ctl_env(cli_run *r, bool with_server, const char *token, const char *const *env,
                   const char *stdin_data, const char *const *args)
{
    char home[700];
    ks_test_path(home, sizeof(home), "HOME=%s", S.scratch);
    const char *envv[32] = {"KINTSUGI_SERVER", "KINTSUGI_TOKEN", "KINTSUGI_CONFIG", home};
    size_t ne = 4;
    for (size_t i = 0; env && env[i] && ne < 31; i++)
        envv[ne++] = env[i];
    envv[ne] = NULL;
    const char *argv[64];
    size_t a = 0;
    argv[a++] = S.ctl;
    if (with_server) {
        argv[a++] = "--server";
        argv[a++] = S.server;
    }
    if (token) {
        argv[a++] = "--token";
        argv[a++] = token;
    }
    for (size_t i = 0; args[i]; i++) {
        assert_true(a < 63);
        argv[a++] = args[i];
    }
    argv[a] = NULL;
    return cli_exec(r, S.scratch, argv, envv, stdin_data, RUN_TIMEOUT_MS);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
/* As admin, against the test daemon. */
#define CTL(r, ...) ctl_env(r, true, S.admin, NULL, NULL, ARGS(__VA_ARGS__))
#define CTL_AS(r, tok, ...) ctl_env(r, true, tok, NULL, NULL, ARGS(__VA_ARGS__))

static void expect_ok(const cli_run *r)
{
    if (r->status != 0)
        fail_msg("kintsugictl exited %d; stderr: %s; stdout: %.400s", r->status, r->err, r->out);
}

/* Exit code `code` and stderr containing every given fragment. */
static void expect_fail(const cli_run *r, int code, const char *const *fragments)
{
    if (r->status != code)
        fail_msg("kintsugictl exited %d, expected %d; stderr: %s", r->status, code, r->err);
    for (size_t i = 0; fragments && fragments[i]; i++)
        if (!strstr(r->err, fragments[i]))
            fail_msg("stderr lacks '%s': %s", fragments[i], r->err);
}

static json_t *parse_json(const cli_run *r)
{
    json_error_t je;
    json_t *doc = json_loads(r->out, 0, &je);
    if (!doc)
        fail_msg("stdout is not JSON (%s, line %d): %.300s", je.text, je.line, r->out);
    return doc;
}

/* The object in array `arr` whose `key` is the string `value` (borrowed), or NULL. */
static json_t *find_by(const json_t *arr, const char *key, const char *value)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *v = json_string_value(json_object_get(e, key));
        if (v && strcmp(v, value) == 0)
            return e;
    }
    return NULL;
}

static json_int_t jint(const json_t *o, const char *k1, const char *k2, const char *k3)
{
    const json_t *v = json_object_get(o, k1);
    if (k2)
        v = json_object_get(v, k2);
    if (k3)
        v = json_object_get(v, k3);
    if (!json_is_integer(v))
        fail_msg("no integer at %s.%s.%s", k1, k2 ? k2 : "", k3 ? k3 : "");
    return json_integer_value(v);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static bool array_has_string(const json_t *arr, const char *s)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) if (json_is_string(e) &&
                                      strcmp(json_string_value(e), s) == 0) return true;
    return false;
}

/* True when a line of s, leading blanks removed, equals `kv` (yaml "key: value"). */
static bool has_trimmed_line(const char *s, const char *kv)
{
    size_t n = strlen(kv);
    for (const char *p = s; p && *p;) {
        const char *q = p + strspn(p, " ");
        const char *nl = strchr(q, '\n');
        size_t len = nl ? (size_t)(nl - q) : strlen(q);
        while (len > 0 && q[len - 1] == ' ')
            len--;
        if (len == n && strncmp(q, kv, n) == 0)
            return true;
        nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    return false;
}

/* Table object rendering: the value printed after `key` and blanks ("" if absent). */
static const char *table_value(const char *s, const char *key, char *buf, size_t cap)
{
    size_t n = strlen(key);
    buf[0] = '\0';
    for (const char *p = s; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (strncmp(p, key, n) == 0 && p[n] == ' ') {
            const char *v = p + n + strspn(p + n, " ");
            size_t len = nl ? (size_t)(nl - v) : strlen(v);
            while (len > 0 && v[len - 1] == ' ')
                len--;
            if (len >= cap)
                len = cap - 1;
            memcpy(buf, v, len);
            buf[len] = '\0';
            return buf;
        }
        p = nl ? nl + 1 : NULL;
    }
    return buf;
}

/* The n-th line (0-based) of s, into buf. */
static const char *nth_line(const char *s, size_t idx, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0; s && *s; i++) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        if (i == idx) {
            if (len >= cap)
                len = cap - 1;
            memcpy(buf, s, len);
            buf[len] = '\0';
            return buf;
        }
        s = nl ? nl + 1 : NULL;
    }
    return buf;
}

/* ---- the database, read-only ---- */

static int64_t db_count(const char *sql)
{
    ks_store *st = NULL;
    ks_err err = {0};
    int64_t v = -1;
    if (ks_store_open_readonly(&st, S.d.db, &err) != KS_OK)
        fail_msg("open %s read-only: %s", S.d.db, err.msg);
    if (ks_store_query_int(&v, st, sql, &err) != KS_OK) {
        ks_store_close(st);
        fail_msg("%s: %s", sql, err.msg);
    }
    ks_store_close(st);
    return v;
}

#define SQL_TOTAL "SELECT count(*) FROM cpus"
#define SQL_ALLOCATED "SELECT count(*) FROM vm_vcpus"
#define SQL_QUARANTINED                                                                            \
    "SELECT count(*) FROM cpus c WHERE c.state = 'quarantined' AND NOT EXISTS "                    \
    "(SELECT 1 FROM vm_vcpus v WHERE v.host_id = c.host_id AND v.cpu_id = c.cpu_id)"
#define SQL_DEGRADED_USABLE "SELECT count(*) FROM cpus WHERE state = 'degraded' AND reserved = 0"
#define SQL_RECLAIMED                                                                              \
    "SELECT count(*) FROM vm_vcpus v JOIN cpus c ON c.host_id = v.host_id AND "                    \
    "c.cpu_id = v.cpu_id WHERE c.state = 'degraded'"

/* ---- setup: daemon, tokens, fleet ---- */

static void run_tool(const char *const *argv, char **out)
{
    cli_run r;
    int st = cli_exec(&r, S.scratch, argv, NULL, NULL, 60000);
    if (st != 0)
        fail_msg("%s exited %d: %s", argv[0], st, r.err);
    if (out) {
        *out = r.out;
        r.out = NULL;
    }
    cli_run_free(&r);
}

static void unpack(const char *tarball)
{
    const char *argv[] = {"/bin/tar", "-xjf", tarball, "-C", S.fx, NULL};
    run_tool(argv, NULL);
}

/* kintsugi-agent report for a fixture, PUT by the admin. */
static void register_host(const char *fixture, const char *host)
{
    char dir[800], path[200];
    char *report = NULL;
    ks_test_path(dir, sizeof(dir), "%s/%s", S.fx, fixture);
    const char *argv[] = {S.agent, "report", "--fixture", dir, "--host-id", host, NULL};
    run_tool(argv, &report);
    ks_test_path(path, sizeof(path), "/v1/hosts/%s/report", host);
    resp r;
    long st = kd_http(&S.d, &r, "PUT", path, S.admin, report);
    if (st != 200 && st != 201)
        fail_msg("PUT %s: HTTP %ld: %s", path, st, r.body ? r.body : "");
    resp_free(&r);
    free(report);
}

static int group_setup(void **state)
{
    (void)state;
    memset(&S, 0, sizeof(S));
    ks_test_mkdtemp(S.d.dir, sizeof(S.d.dir));
    ks_test_path(S.d.db, sizeof(S.d.db), "%s/kintsugi.db", S.d.dir);
    ks_test_path(S.d.port_file, sizeof(S.d.port_file), "%s/port", S.d.dir);
    ks_test_path(S.d.log, sizeof(S.d.log), "%s/kintsugid.log", S.d.dir);
    ks_test_path(S.fx, sizeof(S.fx), "%s/fx", S.d.dir);
    ks_test_path(S.scratch, sizeof(S.scratch), "%s/scratch", S.d.dir);
    assert_int_equal(mkdir(S.fx, 0700), 0);
    assert_int_equal(mkdir(S.scratch, 0700), 0);
    ks_test_path(S.ctl, sizeof(S.ctl), "%s/cli/kintsugictl", ks_test_build_dir());
    ks_test_path(S.agent, sizeof(S.agent), "%s/agent/kintsugi-agent", ks_test_build_dir());
    assert_int_equal(access(S.ctl, X_OK), 0);
    assert_int_equal(access(S.agent, X_OK), 0);

    kd_token(&S.d, "admin", NULL, S.admin, sizeof(S.admin));
    kd_token(&S.d, "reader", NULL, S.reader, sizeof(S.reader));
    kd_token(&S.d, "agent", "h-def", S.agent_tok, sizeof(S.agent_tok));
    /* No heartbeats in this test: hosts must not turn "lost" on a slow run.  A
     * capacity snapshot every second gives the report a history to draw. */
    const char *extra[] = {"--lost-after", "0", "--snapshot-interval", "1", NULL};
    kd_spawn(&S.d, extra);
    ks_test_path(S.server, sizeof(S.server), "http://127.0.0.1:%u", S.d.port);

    /* A port that was free a moment ago: connecting to it is refused. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    ks_test_path(S.dead_server, sizeof(S.dead_server), "http://127.0.0.1:%u",
                 (unsigned)ntohs(sa.sin_port));
    close(fd);

    static const char *const tarballs[] = {
        "hwloc-x86/Intel-RaptorLake-Corei7-1370P", "hwloc-x86/Intel-SapphireRapids-2xXeonMax9460",
        "hwloc-x86/Intel-Skylake-2xXeon6140", "hwloc-x86/Intel-Haswell-2xXeon-E5-2680v3",
        "hwloc-linux/2arm-2c"};
    for (size_t i = 0; i < sizeof(tarballs) / sizeof(tarballs[0]); i++) {
        char tb[800];
        ks_test_path(tb, sizeof(tb), "%s/%s.tar.bz2", ks_test_fixtures_dir(), tarballs[i]);
        unpack(tb);
    }
    register_host("Intel-RaptorLake-Corei7-1370P", "h-rpl");
    register_host("Intel-SapphireRapids-2xXeonMax9460", "h-spr");
    register_host("Intel-Skylake-2xXeon6140", "h-skl");
    register_host("2arm-2c", "h-arm");

    /* The defective host comes through the agent daemon, defects applied. */
    char defects[700], dir[800];
    ks_test_path(defects, sizeof(defects), "%s/defects.json", S.d.dir);
    const char *dj = "[{\"cpu\": 3, \"features\": [\"avx2\"], \"reason\": \"vendor RMA 1234\"},\n"
                     " {\"cpu\": 5, \"quarantine\": true, \"reason\": \"MCE storm\"}]\n";
    cli_write_file(defects, dj, strlen(dj));
    ks_test_path(dir, sizeof(dir), "%s/Intel-Haswell-2xXeon-E5-2680v3", S.fx);
    const char *argv[] = {S.agent,     "run",     "--once",    "--no-serve", "--server",
                          S.server,    "--token", S.agent_tok, "--fixture",  dir,
                          "--host-id", "h-def",   "--defects", defects,      NULL};
    run_tool(argv, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kd_teardown(&S.d, true);
    return 0;
}

/* ---- help, usage errors, connection and auth errors, config ---- */

static void test_cli__help_and_version(void **state)
{
    (void)state;
    cli_run r;
    CTL(&r, "--help");
    expect_ok(&r);
    assert_non_null(strstr(r.out, "usage: kintsugictl [global options] <command>"));
    assert_non_null(strstr(r.out, "Exit status: 0 ok, 1"));
    cli_run_free(&r);
    CTL(&r, "--version");
    expect_ok(&r);
    assert_true(strncmp(r.out, "kintsugictl ", 12) == 0);
    cli_run_free(&r);
    static const char *const cmds[] = {"hosts", "cpus",     "vms",    "pools",
                                       "bans",  "capacity", "events", "report"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        char want[64];
        ks_test_path(want, sizeof(want), "usage: kintsugictl %s", cmds[i]);
        /* Help needs no server: the dead one proves no request is made. */
        const char *const args[] = {"--server", S.dead_server, cmds[i], "--help", NULL};
        ctl_env(&r, false, NULL, NULL, NULL, args);
        expect_ok(&r);
        if (!strstr(r.out, want))
            fail_msg("'%s --help' lacks '%s': %s", cmds[i], want, r.out);
        cli_run_free(&r);
    }
}

static void test_cli__usage_errors(void **state)
{
    (void)state;
    char good[700], bad[700];
    ks_test_path(good, sizeof(good), "%s/good-vm.json", S.scratch);
    ks_test_path(bad, sizeof(bad), "%s/bad-vm.json", S.scratch);
    cli_write_file(good, "{\"name\":\"never\",\"vcpus\":1}", 26);
    cli_write_file(bad, "{\"name\": \"x\",", 13);
    const struct {
        const char *args[12];
        const char *want;
    } cases[] = {
        {{"frob"}, "unknown command 'frob'"},
        {{"--frob", "hosts", "list"}, "unknown option '--frob'"},
        {{"-o", "xml", "hosts", "list"}, "unknown output format 'xml'"},
        {{"--output", "toml", "vms", "list"}, "unknown output format 'toml'"},
        {{"--timeout", "0", "hosts", "list"}, "--timeout"},
        {{"--server"}, "needs a value"},
        {{"hosts"}, "missing verb"},
        {{"hosts", "show"}, "expected exactly one host id"},
        {{"hosts", "show", "a", "b"}, "expected exactly one host id"},
        {{"hosts", "frob", "x"}, "unknown verb 'frob'"},
        {{"hosts", "list", "--bogus"}, "unknown option '--bogus'"},
        {{"hosts", "list", "extra"}, "unexpected argument 'extra'"},
        {{"cpus"}, "cpus list --host"},
        {{"cpus", "list"}, "--host is required"},
        {{"cpus", "list", "--host", "h-def", "--bogus"}, "unknown option"},
        {{"vms"}, "missing verb"},
        {{"vms", "create"}, "expected exactly one VM name"},
        {{"vms", "create", "x", "--vcpus", "-3"}, "non-negative integer"},
        {{"vms", "create", "x", "--vcpus", "two"}, "non-negative integer"},
        {{"vms", "create", "x", "--vcpus", "2", "--performance", "1"}, "use --vcpus or"},
        {{"vms", "create", "x", "--require", "avx,,aes"}, "bad feature list"},
        {{"vms", "create", "x", "--frob"}, "unknown option '--frob'"},
        {{"vms", "create", "-f", "/nonexistent/vm.json"}, "cannot read '/nonexistent/vm.json'"},
        {{"vms", "create", "-f", bad}, "cannot read"},
        {{"vms", "create", "-f", good, "--vcpus", "2"}, "-f takes the whole body"},
        {{"vms", "show"}, "expected exactly one VM name"},
        {{"vms", "delete", "x", "--if-match"}, "expected exactly one VM name"},
        {{"vms", "frob", "x"}, "unknown verb 'frob'"},
        {{"vms", "list", "--bogus"}, "unknown option '--bogus'"},
        {{"pools"}, "missing verb"},
        {{"pools", "create", "p"}, "either --hosts or a selector"},
        {{"pools", "create", "p", "--hosts", "a", "--vendor", "v"}, "either --hosts or a selector"},
        {{"pools", "create", "--hosts", "a"}, "expected exactly one pool name"},
        {{"pools", "show"}, "expected exactly one pool name"},
        {{"bans"}, "missing verb"},
        {{"bans", "add", "avx2"}, "need FEATURES and --reason"},
        {{"bans", "add", "--reason", "x"}, "need FEATURES and --reason"},
        {{"bans", "remove"}, "expected exactly one ban id"},
        {{"bans", "frob"}, "unknown verb 'frob'"},
        {{"capacity", "extra"}, "unexpected argument 'extra'"},
        {{"capacity", "--frob"}, "unknown option"},
        {{"events", "--since", "abc"}, "--since: 'abc' is not a non-negative integer"},
        {{"events", "--since", "-1"}, "--since: '-1' is not a non-negative integer"},
        {{"events", "--limit", "0"}, "--limit: '0' is not an integer in 1..10000"},
        {{"capacity", "--by", "rack"}, "--by takes fleet, pool, host or kind"},
        {{"events", "--frob"}, "unknown option"},
        {{"report"}, "choose --html FILE, --csv FILE or --json"},
        {{"report", "--pdf", "x"}, "unknown option"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cli_run r;
        ctl_env(&r, true, S.admin, NULL, NULL, cases[i].args);
        if (r.status != 2 || !strstr(r.err, cases[i].want) || !strstr(r.err, "kintsugictl: "))
            fail_msg("case %zu (%s %s ...): exit %d (want 2), stderr '%s' (want '%s')", i,
                     cases[i].args[0], cases[i].args[1] ? cases[i].args[1] : "", r.status, r.err,
                     cases[i].want);
        cli_run_free(&r);
    }
    /* No command at all. */
    cli_run r;
    ctl_env(&r, false, NULL, NULL, NULL, ARGS("-o", "json"));
    expect_fail(&r, 2, ARGS("no command given"));
    cli_run_free(&r);
    /* Nothing was created by any of them. */
    assert_int_equal(db_count("SELECT count(*) FROM vms"), 0);
    assert_int_equal(db_count("SELECT count(*) FROM pools"), 0);
}

static void test_cli__connection_and_auth_errors(void **state)
{
    (void)state;
    cli_run r;
    const char *const down[] = {"--server", S.dead_server, "--token", S.admin,
                                "hosts",    "list",        NULL};
    ctl_env(&r, false, NULL, NULL, NULL, down);
    expect_fail(&r, 1, ARGS("cannot reach kintsugid", S.dead_server));
    assert_int_equal(r.out_len, 0);
    cli_run_free(&r);

    CTL_AS(&r, "ks_not_a_real_token", "hosts", "list");
    expect_fail(&r, 1, ARGS("unauthenticated", "401"));
    cli_run_free(&r);
    ctl_env(&r, true, NULL, NULL, NULL, ARGS("hosts", "list"));
    expect_fail(&r, 1, ARGS("unauthenticated", "401"));
    cli_run_free(&r);

    CTL_AS(&r, S.reader, "vms", "create", "nope", "--vcpus", "1");
    expect_fail(&r, 1, ARGS("forbidden", "403"));
    cli_run_free(&r);
    CTL_AS(&r, S.reader, "bans", "add", "avx2", "--reason", "x");
    expect_fail(&r, 1, ARGS("forbidden", "403"));
    cli_run_free(&r);
    CTL_AS(&r, S.reader, "-o", "json", "hosts", "list");
    expect_ok(&r);
    json_t *hosts = parse_json(&r);
    assert_int_equal(json_array_size(hosts), 5);
    json_decref(hosts);
    cli_run_free(&r);

    static const char *const nf[][5] = {{"hosts", "show", "h-nope"},
                                        {"hosts", "drain", "h-nope"},
                                        {"cpus", "list", "--host", "h-nope"},
                                        {"vms", "show", "vm-nope"},
                                        {"vms", "delete", "vm-nope"},
                                        {"pools", "show", "pool-nope"},
                                        {"bans", "remove", "4242"}};
    for (size_t i = 0; i < sizeof(nf) / sizeof(nf[0]); i++) {
        ctl_env(&r, true, S.admin, NULL, NULL, nf[i]);
        if (r.status != 1 || !strstr(r.err, "not found") || !strstr(r.err, "404"))
            fail_msg("%s %s: exit %d, stderr %s", nf[i][0], nf[i][1], r.status, r.err);
        cli_run_free(&r);
    }
}

static void test_cli__config_sources(void **state)
{
    (void)state;
    cli_run r;
    char env_server[200], env_token[200], env_cfg[800], cfg[700], path[700];

    /* Environment only. */
    ks_test_path(env_server, sizeof(env_server), "KINTSUGI_SERVER=%s", S.server);
    ks_test_path(env_token, sizeof(env_token), "KINTSUGI_TOKEN=%s", S.admin);
    ctl_env(&r, false, NULL, ARGS(env_server, env_token), NULL, ARGS("-o", "csv", "hosts", "list"));
    expect_ok(&r);
    assert_int_equal(cli_count_lines(r.out), 6);
    cli_run_free(&r);

    /* Flags override the environment, both ways. */
    char env_dead[200], env_bad_tok[200];
    ks_test_path(env_dead, sizeof(env_dead), "KINTSUGI_SERVER=%s", S.dead_server);
    ks_test_path(env_bad_tok, sizeof(env_bad_tok), "KINTSUGI_TOKEN=ks_wrong");
    ctl_env(&r, true, S.admin, ARGS(env_dead, env_bad_tok), NULL, ARGS("hosts", "list"));
    expect_ok(&r);
    cli_run_free(&r);
    ctl_env(&r, false, "ks_wrong_flag", ARGS(env_server, env_token), NULL, ARGS("hosts", "list"));
    expect_fail(&r, 1, ARGS("unauthenticated"));
    cli_run_free(&r);

    /* A config file with comments, blank lines and all three keys; output = json. */
    ks_test_path(path, sizeof(path), "%s/ctl.conf", S.scratch);
    ks_test_path(cfg, sizeof(cfg),
                 "# kintsugictl test config\n\nserver = %s\n  token=%s\noutput = json\n", S.server,
                 S.admin);
    cli_write_file(path, cfg, strlen(cfg));
    ctl_env(&r, false, NULL, NULL, NULL, ARGS("--config", path, "hosts", "list"));
    expect_ok(&r);
    json_t *doc = parse_json(&r);
    assert_int_equal(json_array_size(doc), 5);
    json_decref(doc);
    cli_run_free(&r);

    /* KINTSUGI_CONFIG; -o on the command line beats the file's output. */
    ks_test_path(env_cfg, sizeof(env_cfg), "KINTSUGI_CONFIG=%s", path);
    ctl_env(&r, false, NULL, ARGS(env_cfg), NULL, ARGS("-o", "csv", "hosts", "list"));
    expect_ok(&r);
    assert_true(strncmp(r.out, "ID,HOSTNAME,", 12) == 0);
    cli_run_free(&r);

    /* The environment beats the file. */
    ctl_env(&r, false, NULL, ARGS(env_cfg, env_bad_tok), NULL, ARGS("hosts", "list"));
    expect_fail(&r, 1, ARGS("unauthenticated"));
    cli_run_free(&r);

    /* The default file under $HOME. */
    char home_dir[800], home_env[900], home_cfg[900];
    ks_test_path(home_dir, sizeof(home_dir), "%s/home", S.scratch);
    ks_test_path(home_env, sizeof(home_env), "HOME=%s", home_dir);
    ks_test_path(home_cfg, sizeof(home_cfg), "%s/.config/kintsugi", home_dir);
    const char *mk[] = {"/bin/mkdir", "-p", home_cfg, NULL};
    run_tool(mk, NULL);
    ks_test_path(home_cfg, sizeof(home_cfg), "%s/.config/kintsugi/kintsugictl.conf", home_dir);
    cli_write_file(home_cfg, cfg, strlen(cfg));
    ctl_env(&r, false, NULL, ARGS(home_env), NULL, ARGS("pools", "list"));
    expect_ok(&r);
    doc = parse_json(&r);
    assert_true(json_is_array(doc));
    json_decref(doc);
    cli_run_free(&r);

    /* Unknown key: usage error naming the key and line, also via KINTSUGI_CONFIG. */
    char badcfg[700];
    ks_test_path(badcfg, sizeof(badcfg), "%s/bad.conf", S.scratch);
    const char *bc = "server = http://127.0.0.1:1\ncolour = blue\n";
    cli_write_file(badcfg, bc, strlen(bc));
    ctl_env(&r, true, S.admin, NULL, NULL, ARGS("--config", badcfg, "hosts", "list"));
    expect_fail(&r, 2, ARGS("unknown key 'colour'", ":2:"));
    cli_run_free(&r);
    char env_badcfg[800];
    ks_test_path(env_badcfg, sizeof(env_badcfg), "KINTSUGI_CONFIG=%s", badcfg);
    ctl_env(&r, true, S.admin, ARGS(env_badcfg), NULL, ARGS("hosts", "list"));
    expect_fail(&r, 2, ARGS("unknown key 'colour'"));
    cli_run_free(&r);
    /* A line without '=', and a named file that does not exist. */
    cli_write_file(badcfg, "server http://x\n", 16);
    ctl_env(&r, true, S.admin, NULL, NULL, ARGS("--config", badcfg, "hosts", "list"));
    expect_fail(&r, 2, ARGS("expected 'key = value'"));
    cli_run_free(&r);
    ctl_env(&r, true, S.admin, NULL, NULL,
            ARGS("--config", "/nonexistent/k.conf", "hosts", "list"));
    expect_fail(&r, 2, ARGS("cannot read config '/nonexistent/k.conf'"));
    cli_run_free(&r);
    /* An output format from the file is checked too. */
    cli_write_file(badcfg, "output = xml\n", 13);
    ctl_env(&r, true, S.admin, NULL, NULL, ARGS("--config", badcfg, "hosts", "list"));
    expect_fail(&r, 2, ARGS("unknown output format 'xml'"));
    cli_run_free(&r);
}

/* ---- hosts and cpus ---- */

static void test_cli__hosts_list_formats(void **state)
{
    (void)state;
    cli_run r;
    CTL(&r, "-o", "json", "hosts", "list");
    expect_ok(&r);
    json_t *hosts = parse_json(&r);
    assert_int_equal(json_array_size(hosts), 5);
    static const struct {
        const char *id;
        int cpus, degraded, quarantined;
    } want[] = {{"h-rpl", 20, 0, 0},
                {"h-spr", 160, 0, 0},
                {"h-skl", 72, 0, 0},
                {"h-def", 24, 1, 1},
                {"h-arm", 2, 0, 0}};
    for (size_t i = 0; i < 5; i++) {
        json_t *h = find_by(hosts, "id", want[i].id);
        if (!h)
            fail_msg("hosts list lacks %s", want[i].id);
        assert_int_equal(jint(h, "n_cpus", NULL, NULL), want[i].cpus);
        assert_int_equal(jint(h, "counts", "cpus_by_state", "degraded"), want[i].degraded);
        assert_int_equal(jint(h, "counts", "cpus_by_state", "quarantined"), want[i].quarantined);
        assert_string_equal(jstr(h, "state"), "ready");
    }
    assert_int_equal(jint(find_by(hosts, "id", "h-rpl"), "counts", "cpus_by_kind", "efficiency"),
                     8);
    assert_string_equal(jstr(find_by(hosts, "id", "h-arm"), "arch"), "aarch64");
    json_decref(hosts);
    cli_run_free(&r);

    CTL(&r, "-o", "csv", "hosts", "list");
    expect_ok(&r);
    char line[512];
    assert_string_equal(nth_line(r.out, 0, line, sizeof(line)),
                        "ID,HOSTNAME,STATE,ARCH,MODEL,CPUS,FREE,DEGRADED,QUARANTINED,VMS");
    assert_int_equal(cli_count_lines(r.out), 6);
    assert_true(cli_has_line(r.out, "h-def,Intel-Haswell-2xXeon-E5-2680v3,ready,x86_64,"
                                    "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz,24,23,1,1,0"));
    assert_true(cli_has_line_prefix(r.out, "h-spr,Intel-SapphireRapids-2xXeonMax9460,ready,"));
    cli_run_free(&r);

    CTL(&r, "-o", "yaml", "hosts", "list");
    expect_ok(&r);
    size_t items = 0;
    for (const char *p = r.out; (p = strstr(p, "\n-\n")); p++)
        items++;
    assert_int_equal(items + (strncmp(r.out, "-\n", 2) == 0), 5);
    assert_true(has_trimmed_line(r.out, "id: h-def"));
    assert_true(has_trimmed_line(r.out, "n_cpus: 160"));
    assert_true(has_trimmed_line(r.out, "arch: aarch64"));
    assert_true(has_trimmed_line(r.out, "quarantined: 1"));
    cli_run_free(&r);

    CTL(&r, "hosts", "list");
    expect_ok(&r);
    assert_true(cli_has_line_prefix(r.out, "ID "));
    assert_non_null(strstr(nth_line(r.out, 0, line, sizeof(line)), "QUARANTINED"));
    assert_int_equal(cli_count_lines(r.out), 6);
    static const char *const ids[] = {"h-rpl ", "h-spr ", "h-skl ", "h-def ", "h-arm "};
    for (size_t i = 0; i < 5; i++)
        assert_true(cli_has_line_prefix(r.out, ids[i]));
    cli_run_free(&r);

    /* A server-side filter: only the AVX-512 hosts. */
    CTL(&r, "-o", "json", "hosts", "list", "--feature", "avx512f");
    expect_ok(&r);
    hosts = parse_json(&r);
    assert_int_equal(json_array_size(hosts), 2);
    assert_non_null(find_by(hosts, "id", "h-spr"));
    assert_non_null(find_by(hosts, "id", "h-skl"));
    json_decref(hosts);
    cli_run_free(&r);
}

static void test_cli__hosts_show_formats(void **state)
{
    (void)state;
    cli_run r;
    char buf[256];
    CTL(&r, "-o", "json", "hosts", "show", "h-rpl");
    expect_ok(&r);
    json_t *h = parse_json(&r);
    assert_string_equal(jstr(h, "id"), "h-rpl");
    assert_int_equal(jint(h, "n_cpus", NULL, NULL), 20);
    assert_int_equal(jint(h, "counts", "cpus_by_kind", "performance"), 12);
    assert_int_equal(jint(h, "counts", "cpus_by_kind", "efficiency"), 8);
    json_decref(h);
    cli_run_free(&r);

    CTL(&r, "-o", "yaml", "hosts", "show", "h-rpl");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "id: h-rpl"));
    assert_true(cli_has_line(r.out, "n_cpus: 20"));
    assert_true(cli_has_line(r.out, "counts:"));
    assert_true(cli_has_line(r.out, "    efficiency: 8"));
    assert_true(cli_has_line(r.out, "arch: x86_64"));
    cli_run_free(&r);

    CTL(&r, "-o", "csv", "hosts", "show", "h-def");
    expect_ok(&r);
    assert_string_equal(nth_line(r.out, 0, buf, sizeof(buf)), "field,value");
    assert_true(cli_has_line(r.out, "id,h-def"));
    assert_true(cli_has_line(r.out, "n_cpus,24"));
    assert_true(cli_has_line(r.out, "counts.cpus_by_state.degraded,1"));
    assert_true(cli_has_line(r.out, "counts.cpus_by_state.quarantined,1"));
    cli_run_free(&r);

    CTL(&r, "hosts", "show", "h-def");
    expect_ok(&r);
    assert_string_equal(table_value(r.out, "id", buf, sizeof(buf)), "h-def");
    assert_string_equal(table_value(r.out, "n_cpus", buf, sizeof(buf)), "24");
    assert_string_equal(table_value(r.out, "counts.cpus_by_state.online", buf, sizeof(buf)), "22");
    assert_string_equal(table_value(r.out, "state", buf, sizeof(buf)), "ready");
    cli_run_free(&r);
}

static void test_cli__hosts_drain(void **state)
{
    (void)state;
    cli_run r;
    char buf[128];
    CTL(&r, "hosts", "drain", "h-arm");
    expect_ok(&r);
    assert_string_equal(table_value(r.out, "state", buf, sizeof(buf)), "draining");
    cli_run_free(&r);
    CTL(&r, "-o", "json", "hosts", "show", "h-arm");
    expect_ok(&r);
    json_t *h = parse_json(&r);
    assert_string_equal(jstr(h, "state"), "draining");
    assert_true(json_is_false(json_object_get(h, "schedulable")));
    json_decref(h);
    cli_run_free(&r);
    assert_int_equal(
        db_count("SELECT count(*) FROM hosts WHERE id = 'h-arm' AND state = 'draining'"), 1);
    CTL(&r, "-o", "json", "hosts", "list", "--state", "draining");
    expect_ok(&r);
    h = parse_json(&r);
    assert_int_equal(json_array_size(h), 1);
    assert_string_equal(jstr(json_array_get(h, 0), "id"), "h-arm");
    json_decref(h);
    cli_run_free(&r);
}

static void test_cli__cpus_list(void **state)
{
    (void)state;
    cli_run r;
    char line[512];
    CTL(&r, "-o", "json", "cpus", "list", "--host", "h-def");
    expect_ok(&r);
    json_t *cpus = parse_json(&r);
    assert_int_equal(json_array_size(cpus), 24);
    json_decref(cpus);
    cli_run_free(&r);

    CTL(&r, "-o", "json", "cpus", "list", "--host", "h-def", "--state", "degraded");
    expect_ok(&r);
    cpus = parse_json(&r);
    assert_int_equal(json_array_size(cpus), 1);
    json_t *c = json_array_get(cpus, 0);
    assert_int_equal(jint(c, "id", NULL, NULL), 3);
    assert_string_equal(jstr(c, "state"), "degraded");
    assert_true(array_has_string(json_object_get(c, "unusable"), "avx2"));
    json_decref(cpus);
    cli_run_free(&r);

    CTL(&r, "-o", "yaml", "cpus", "list", "--host", "h-def", "--state", "quarantined");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "-"));
    assert_true(has_trimmed_line(r.out, "id: 5"));
    assert_true(has_trimmed_line(r.out, "state: quarantined"));
    assert_false(has_trimmed_line(r.out, "id: 3"));
    cli_run_free(&r);

    CTL(&r, "-o", "csv", "cpus", "list", "--host", "h-def", "--state", "online");
    expect_ok(&r);
    assert_string_equal(nth_line(r.out, 0, line, sizeof(line)),
                        "CPU,STATE,KIND,CORE,NUMA,MAX_MHZ,VM,UNUSABLE");
    assert_int_equal(cli_count_lines(r.out), 1 + 22);
    cli_run_free(&r);

    CTL(&r, "cpus", "list", "--host", "h-def", "--state", "degraded");
    expect_ok(&r);
    assert_true(cli_has_line_prefix(r.out, "CPU "));
    assert_true(cli_has_line_prefix(r.out, "3 "));
    assert_non_null(strstr(r.out, "degraded"));
    assert_non_null(strstr(r.out, "avx2"));
    assert_int_equal(cli_count_lines(r.out), 2);
    cli_run_free(&r);

    /* The hybrid host: 12 performance + 8 efficiency logical CPUs. */
    CTL(&r, "-o", "json", "cpus", "list", "--host", "h-rpl");
    expect_ok(&r);
    cpus = parse_json(&r);
    size_t i, n_eff = 0, n_perf = 0;
    json_array_foreach(cpus, i, c)
    {
        n_eff += strcmp(jstr(c, "kind"), "efficiency") == 0;
        n_perf += strcmp(jstr(c, "kind"), "performance") == 0;
    }
    assert_int_equal(n_eff, 8);
    assert_int_equal(n_perf, 12);
    json_decref(cpus);
    cli_run_free(&r);
}

/* ---- vms ---- */

static json_t *create_vm_json(const char *const *args)
{
    const char *argv[40] = {"-o", "json", "vms", "create"};
    size_t a = 4;
    for (size_t i = 0; args[i] && a < 39; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    cli_run r;
    ctl_env(&r, true, S.admin, NULL, NULL, argv);
    expect_ok(&r);
    json_t *vm = parse_json(&r);
    cli_run_free(&r);
    return vm;
}

static void test_cli__vms_create(void **state)
{
    (void)state;
    /* P/E shape: only the hybrid host has efficiency cores. */
    json_t *vm = create_vm_json(ARGS("web-1", "--performance", "2", "--efficiency", "2"));
    assert_string_equal(jstr(vm, "host"), "h-rpl");
    assert_int_equal(jint(vm, "vcpus", NULL, NULL), 4);
    assert_int_equal(jint(vm, "request", "vcpus", "performance"), 2);
    assert_int_equal(jint(vm, "request", "vcpus", "efficiency"), 2);
    size_t i, n_eff = 0;
    json_t *v;
    json_array_foreach(json_object_get(json_object_get(vm, "plan"), "vcpus"), i, v) n_eff +=
        strcmp(jstr(v, "kind"), "efficiency") == 0;
    assert_int_equal(n_eff, 2);
    json_decref(vm);

    /* --require avx512f lands on an AVX-512 server; --memory is passed through. */
    vm = create_vm_json(ARGS("avx-1", "--vcpus", "2", "--require", "avx512f", "--memory", "2048"));
    const char *host = jstr(vm, "host");
    assert_true(strcmp(host, "h-skl") == 0 || strcmp(host, "h-spr") == 0);
    assert_true(array_has_string(
        json_object_get(json_object_get(vm, "request"), "required_features"), "avx512f"));
    assert_int_equal(jint(vm, "request", "memory_mib", NULL), 2048);
    json_decref(vm);

    /* Least-capable fit puts a plain 1-vCPU VM pinned to h-def on its degraded CPU 3. */
    vm = create_vm_json(ARGS("rec-1", "--host", "h-def", "--vcpus", "1"));
    assert_string_equal(jstr(vm, "host"), "h-def");
    assert_int_equal(jint(json_array_get(json_object_get(json_object_get(vm, "plan"), "vcpus"), 0),
                          "host_cpu", NULL, NULL),
                     3);
    json_decref(vm);
    cli_run r;
    CTL(&r, "-o", "json", "cpus", "list", "--host", "h-def", "--state", "degraded");
    expect_ok(&r);
    json_t *cpus = parse_json(&r);
    assert_string_equal(jstr(json_array_get(cpus, 0), "vm"), "rec-1");
    json_decref(cpus);
    cli_run_free(&r);

    /* --idempotency-key: the retry answers the first placement, nothing new is made. */
    json_t *a = create_vm_json(
        ARGS("idem-1", "--vcpus", "2", "--require", "avx512f", "--idempotency-key", "key-idem-1"));
    json_t *b = create_vm_json(
        ARGS("idem-1", "--vcpus", "2", "--require", "avx512f", "--idempotency-key", "key-idem-1"));
    assert_int_equal(jint(a, "created_us", NULL, NULL), jint(b, "created_us", NULL, NULL));
    assert_string_equal(jstr(a, "host"), jstr(b, "host"));
    json_decref(a);
    json_decref(b);
    assert_int_equal(db_count("SELECT count(*) FROM vms WHERE name = 'idem-1'"), 1);
    assert_int_equal(db_count("SELECT count(*) FROM vm_vcpus WHERE vm_name = 'idem-1'"), 2);
    /* Same name without the key: a conflict. */
    CTL(&r, "vms", "create", "idem-1", "--vcpus", "2", "--require", "avx512f");
    expect_fail(&r, 1, ARGS("409"));
    cli_run_free(&r);

    /* -f FILE: the body as is (needs sha_ni, forbids avx512f: only the Raptor Lake). */
    char path[700];
    ks_test_path(path, sizeof(path), "%s/file-1.json", S.scratch);
    const char *body = "{\"name\": \"file-1\", \"vcpus\": 2, \"required_features\": [\"sha_ni\"],\n"
                       " \"forbidden_features\": [\"avx512f\"], \"memory_mib\": 512}\n";
    cli_write_file(path, body, strlen(body));
    vm = create_vm_json(ARGS("-f", path));
    assert_string_equal(jstr(vm, "name"), "file-1");
    assert_string_equal(jstr(vm, "host"), "h-rpl");
    assert_int_equal(jint(vm, "request", "memory_mib", NULL), 512);
    assert_false(array_has_string(
        json_object_get(json_object_get(json_object_get(vm, "plan"), "features"), "enable"),
        "avx512f"));
    json_decref(vm);

    /* -f - reads the body from stdin. */
    ctl_env(&r, true, S.admin, NULL,
            "{\"name\":\"stdin-1\",\"vcpus\":{\"performance\":1,\"efficiency\":1}}",
            ARGS("-o", "json", "vms", "create", "-f", "-"));
    expect_ok(&r);
    vm = parse_json(&r);
    assert_string_equal(jstr(vm, "name"), "stdin-1");
    assert_string_equal(jstr(vm, "host"), "h-rpl");
    json_decref(vm);
    cli_run_free(&r);

    /* Table output of a create: key/value rows. */
    CTL(&r, "vms", "create", "tbl-1", "--vcpus", "1", "--require", "avx512f", "--placement",
        "spread", "--smt", "isolate");
    expect_ok(&r);
    char buf[128];
    assert_string_equal(table_value(r.out, "name", buf, sizeof(buf)), "tbl-1");
    assert_string_equal(table_value(r.out, "request.placement", buf, sizeof(buf)), "spread");
    assert_string_equal(table_value(r.out, "request.smt", buf, sizeof(buf)), "isolate");
    cli_run_free(&r);

    /* No capacity: exit 1 with the server's reason. */
    CTL(&r, "vms", "create", "huge-1", "--vcpus", "100000");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "kintsugictl: "));
    cli_run_free(&r);
    assert_int_equal(db_count("SELECT count(*) FROM vms"), 7);
}

static void test_cli__vms_list_show_formats(void **state)
{
    (void)state;
    static const char *const names[] = {"web-1",  "avx-1",   "rec-1", "idem-1",
                                        "file-1", "stdin-1", "tbl-1"};
    cli_run r;
    char line[512];
    CTL(&r, "-o", "json", "vms", "list");
    expect_ok(&r);
    json_t *vms = parse_json(&r);
    assert_int_equal(json_array_size(vms), 7);
    for (size_t i = 0; i < 7; i++)
        assert_non_null(find_by(vms, "name", names[i]));
    assert_string_equal(jstr(find_by(vms, "name", "web-1"), "host"), "h-rpl");
    json_decref(vms);
    cli_run_free(&r);

    CTL(&r, "-o", "csv", "vms", "list");
    expect_ok(&r);
    assert_string_equal(nth_line(r.out, 0, line, sizeof(line)),
                        "NAME,HOST,STATE,VCPUS,GEN,APPLIED,POOL,ERROR");
    assert_int_equal(cli_count_lines(r.out), 8);
    assert_true(cli_has_line(r.out, "web-1,h-rpl,running,4,1,0,-,-"));
    assert_true(cli_has_line(r.out, "rec-1,h-def,running,1,1,0,-,-"));
    cli_run_free(&r);

    CTL(&r, "-o", "yaml", "vms", "list", "--host", "h-def");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "  name: rec-1"));
    assert_true(cli_has_line(r.out, "  host: h-def"));
    assert_false(strstr(r.out, "web-1"));
    cli_run_free(&r);

    CTL(&r, "vms", "list", "--host", "h-rpl");
    expect_ok(&r);
    assert_true(cli_has_line_prefix(r.out, "NAME "));
    assert_int_equal(cli_count_lines(r.out), 4); /* web-1, file-1, stdin-1 */
    assert_true(cli_has_line_prefix(r.out, "web-1 "));
    assert_true(cli_has_line_prefix(r.out, "stdin-1 "));
    assert_true(cli_has_line_prefix(r.out, "file-1 "));
    cli_run_free(&r);

    CTL(&r, "-o", "json", "vms", "show", "web-1");
    expect_ok(&r);
    json_t *vm = parse_json(&r);
    assert_string_equal(jstr(vm, "name"), "web-1");
    assert_string_equal(jstr(vm, "state"), "running");
    assert_int_equal(json_array_size(json_object_get(json_object_get(vm, "plan"), "vcpus")), 4);
    json_decref(vm);
    cli_run_free(&r);

    CTL(&r, "-o", "yaml", "vms", "show", "web-1");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "name: web-1"));
    assert_true(cli_has_line(r.out, "host: h-rpl"));
    assert_true(cli_has_line(r.out, "    efficiency: 2"));
    cli_run_free(&r);

    /* YAML must not turn names into booleans or numbers (yes, 1e3): they are quoted. */
    static const char *const tricky[] = {"yes", "1e3", "Off"};
    for (size_t i = 0; i < 3; i++) {
        char want_line[64];
        CTL(&r, "vms", "create", tricky[i], "--vcpus", "1");
        expect_ok(&r);
        cli_run_free(&r);
        CTL(&r, "-o", "yaml", "vms", "show", tricky[i]);
        expect_ok(&r);
        ks_test_path(want_line, sizeof(want_line), "name: \"%s\"", tricky[i]);
        assert_true(cli_has_line(r.out, want_line));
        cli_run_free(&r);
        CTL(&r, "vms", "delete", tricky[i]);
        expect_ok(&r);
        cli_run_free(&r);
    }

    CTL(&r, "-o", "csv", "vms", "show", "web-1");
    expect_ok(&r);
    assert_string_equal(nth_line(r.out, 0, line, sizeof(line)), "field,value");
    assert_true(cli_has_line(r.out, "name,web-1"));
    assert_true(cli_has_line(r.out, "request.vcpus.efficiency,2"));
    assert_true(cli_has_line(r.out, "plan.host,h-rpl"));
    cli_run_free(&r);

    CTL(&r, "vms", "show", "web-1");
    expect_ok(&r);
    assert_string_equal(table_value(r.out, "host", line, sizeof(line)), "h-rpl");
    assert_string_equal(table_value(r.out, "vcpus", line, sizeof(line)), "4");
    cli_run_free(&r);
}

static void test_cli__vms_delete(void **state)
{
    (void)state;
    cli_run r;
    CTL(&r, "vms", "delete", "file-1", "--if-match", "\"bogus-etag\"");
    expect_fail(&r, 1, ARGS("precondition_failed", "412"));
    cli_run_free(&r);
    CTL(&r, "vms", "show", "file-1");
    expect_ok(&r);
    cli_run_free(&r);

    resp h;
    assert_int_equal(kd_http(&S.d, &h, "GET", "/v1/vms/file-1", S.admin, NULL), 200);
    assert_true(h.etag[0] != '\0');
    CTL(&r, "vms", "delete", "file-1", "--if-match", h.etag);
    resp_free(&h);
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "vm 'file-1' deleted"));
    cli_run_free(&r);
    CTL(&r, "vms", "show", "file-1");
    expect_fail(&r, 1, ARGS("not found", "404"));
    cli_run_free(&r);

    CTL(&r, "-o", "json", "vms", "delete", "stdin-1");
    expect_ok(&r);
    assert_int_equal(r.out_len, 0);
    cli_run_free(&r);
    CTL(&r, "vms", "delete", "tbl-1");
    expect_ok(&r);
    cli_run_free(&r);
    assert_int_equal(db_count("SELECT count(*) FROM vms"), 4);
    assert_int_equal(db_count("SELECT count(*) FROM vm_vcpus WHERE vm_name IN "
                              "('file-1','stdin-1','tbl-1')"),
                     0);
}

/* ---- pools and bans ---- */

static void test_cli__pools(void **state)
{
    (void)state;
    cli_run r;
    char line[512];
    CTL(&r, "pools", "create", "pa", "--hosts", "h-skl,h-spr");
    expect_ok(&r);
    assert_string_equal(table_value(r.out, "name", line, sizeof(line)), "pa");
    assert_non_null(strstr(table_value(r.out, "members", line, sizeof(line)), "h-skl"));
    cli_run_free(&r);

    CTL(&r, "-o", "json", "pools", "create", "pintel", "--vendor", "GenuineIntel", "--feature",
        "avx512f");
    expect_ok(&r);
    json_t *p = parse_json(&r);
    assert_string_equal(jstr(p, "name"), "pintel");
    assert_int_equal(json_array_size(json_object_get(p, "members")), 2);
    assert_true(array_has_string(json_object_get(p, "members"), "h-skl"));
    assert_true(array_has_string(json_object_get(p, "members"), "h-spr"));
    json_decref(p);
    cli_run_free(&r);

    CTL(&r, "-o", "json", "pools", "list");
    expect_ok(&r);
    p = parse_json(&r);
    assert_int_equal(json_array_size(p), 2);
    assert_string_equal(jstr(json_object_get(find_by(p, "name", "pintel"), "selector"), "vendor"),
                        "GenuineIntel");
    json_decref(p);
    cli_run_free(&r);

    CTL(&r, "-o", "csv", "pools", "list");
    expect_ok(&r);
    assert_string_equal(nth_line(r.out, 0, line, sizeof(line)), "NAME,MEMBERS,SELECTOR,CREATED_US");
    assert_int_equal(cli_count_lines(r.out), 3);
    /* Members joined with ',' must be quoted in CSV. */
    assert_true(cli_has_line_prefix(r.out, "pa,\"h-s"));
    cli_run_free(&r);

    CTL(&r, "-o", "yaml", "pools", "list");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "  name: pa"));
    assert_true(cli_has_line(r.out, "  name: pintel"));
    assert_true(cli_has_line(r.out, "    vendor: GenuineIntel"));
    cli_run_free(&r);

    CTL(&r, "pools", "list");
    expect_ok(&r);
    assert_true(cli_has_line_prefix(r.out, "NAME "));
    assert_true(cli_has_line_prefix(r.out, "pa "));
    assert_true(cli_has_line_prefix(r.out, "pintel "));
    cli_run_free(&r);

    CTL(&r, "-o", "json", "pools", "show", "pa");
    expect_ok(&r);
    p = parse_json(&r);
    assert_true(array_has_string(json_object_get(p, "baseline"), "avx512f"));
    assert_true(array_has_string(json_object_get(p, "members"), "h-spr"));
    json_decref(p);
    cli_run_free(&r);
    CTL(&r, "-o", "yaml", "pools", "show", "pa");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "name: pa"));
    assert_true(cli_has_line(r.out, "  - avx512f"));
    cli_run_free(&r);
    CTL(&r, "-o", "csv", "pools", "show", "pa");
    expect_ok(&r);
    assert_string_equal(nth_line(r.out, 0, line, sizeof(line)), "field,value");
    assert_true(cli_has_line(r.out, "name,pa"));
    cli_run_free(&r);
    CTL(&r, "pools", "show", "pa");
    expect_ok(&r);
    assert_string_equal(table_value(r.out, "name", line, sizeof(line)), "pa");
    assert_non_null(strstr(table_value(r.out, "baseline", line, sizeof(line)), "avx512f"));
    cli_run_free(&r);

    /* --pool: the VM lands in the pool and sees its baseline. */
    json_t *vm =
        create_vm_json(ARGS("pooled-1", "--pool", "pa", "--vcpus", "2", "--require", "avx512f"));
    assert_string_equal(jstr(vm, "pool"), "pa");
    const char *host = jstr(vm, "host");
    assert_true(strcmp(host, "h-skl") == 0 || strcmp(host, "h-spr") == 0);
    json_decref(vm);
    CTL(&r, "-o", "csv", "vms", "list", "--pool", "pa");
    expect_ok(&r);
    assert_int_equal(cli_count_lines(r.out), 2);
    assert_true(cli_has_line_prefix(r.out, "pooled-1,"));
    cli_run_free(&r);

    CTL(&r, "pools", "delete", "pintel");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "pool 'pintel' deleted"));
    cli_run_free(&r);
    CTL(&r, "pools", "show", "pintel");
    expect_fail(&r, 1, ARGS("404"));
    cli_run_free(&r);
    assert_int_equal(db_count("SELECT count(*) FROM pools"), 1);
}

static void test_cli__bans(void **state)
{
    (void)state;
    cli_run r;
    char line[512];
    /* web-1 on the Raptor Lake sees sha_ni. */
    CTL(&r, "-o", "json", "bans", "add", "sha_ni", "--reason", "crypto erratum 42");
    expect_ok(&r);
    json_t *ban = parse_json(&r);
    json_int_t id = jint(ban, "id", NULL, NULL);
    assert_true(jint(ban, "n_affected", NULL, NULL) >= 1);
    assert_true(array_has_string(json_object_get(ban, "features"), "sha_ni"));
    json_decref(ban);
    cli_run_free(&r);

    CTL(&r, "-o", "json", "vms", "show", "web-1");
    expect_ok(&r);
    json_t *vm = parse_json(&r);
    assert_int_equal(jint(vm, "generation", NULL, NULL), 2);
    assert_true(array_has_string(
        json_object_get(json_object_get(json_object_get(vm, "plan"), "features"), "disable"),
        "sha_ni"));
    json_decref(vm);
    cli_run_free(&r);

    CTL(&r, "-o", "json", "bans", "list");
    expect_ok(&r);
    ban = parse_json(&r);
    assert_int_equal(json_array_size(ban), 1);
    assert_string_equal(jstr(json_array_get(ban, 0), "reason"), "crypto erratum 42");
    json_decref(ban);
    cli_run_free(&r);
    CTL(&r, "-o", "csv", "bans", "list");
    expect_ok(&r);
    assert_string_equal(nth_line(r.out, 0, line, sizeof(line)), "ID,FEATURES,REASON,CREATED_US");
    ks_test_path(line, sizeof(line), "%" JSON_INTEGER_FORMAT ",sha_ni,crypto erratum 42,", id);
    assert_true(cli_has_line_prefix(r.out, line));
    assert_int_equal(cli_count_lines(r.out), 2);
    cli_run_free(&r);
    CTL(&r, "-o", "yaml", "bans", "list");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "  reason: crypto erratum 42"));
    assert_true(cli_has_line(r.out, "    - sha_ni"));
    cli_run_free(&r);
    CTL(&r, "bans", "list");
    expect_ok(&r);
    assert_true(cli_has_line_prefix(r.out, "ID "));
    assert_non_null(strstr(r.out, "crypto erratum 42"));
    cli_run_free(&r);

    char ids[32];
    ks_test_path(ids, sizeof(ids), "%" JSON_INTEGER_FORMAT, id);
    CTL(&r, "bans", "remove", ids);
    expect_ok(&r);
    ks_test_path(line, sizeof(line), "ban %s removed", ids);
    assert_true(cli_has_line(r.out, line));
    cli_run_free(&r);
    CTL(&r, "bans", "list");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "(none)"));
    cli_run_free(&r);
    CTL(&r, "-o", "json", "bans", "list");
    expect_ok(&r);
    ban = parse_json(&r);
    assert_int_equal(json_array_size(ban), 0);
    json_decref(ban);
    cli_run_free(&r);
}

/* ---- capacity, events, report ---- */

static void check_fleet_against_db(const json_t *fleet, const char *what)
{
    struct {
        const char *field, *sql;
    } checks[] = {{"total", SQL_TOTAL},
                  {"allocated", SQL_ALLOCATED},
                  {"quarantined", SQL_QUARANTINED},
                  {"degraded_usable", SQL_DEGRADED_USABLE},
                  {"reclaimed", SQL_RECLAIMED}};
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        int64_t want = db_count(checks[i].sql);
        json_int_t got = jint(fleet, checks[i].field, NULL, NULL);
        if (got != want)
            fail_msg("%s: %s is %" JSON_INTEGER_FORMAT ", the database says %lld", what,
                     checks[i].field, got, (long long)want);
    }
}

static void test_cli__capacity(void **state)
{
    (void)state;
    cli_run r;
    char line[512];
    /* The known fleet: 20 + 160 + 72 + 24 + 2 CPUs; rec-1's CPU is reclaimed. */
    assert_int_equal(db_count(SQL_TOTAL), 278);
    assert_int_equal(db_count(SQL_RECLAIMED), 1);
    assert_int_equal(db_count(SQL_QUARANTINED), 1);

    CTL(&r, "-o", "json", "capacity");
    expect_ok(&r);
    json_t *doc = parse_json(&r);
    json_t *fleet = json_array_get(json_object_get(doc, "items"), 0);
    assert_string_equal(jstr(fleet, "scope"), "fleet");
    check_fleet_against_db(fleet, "capacity -o json");
    json_int_t total = jint(fleet, "total", NULL, NULL);
    json_decref(doc);
    cli_run_free(&r);

    CTL(&r, "-o", "json", "capacity", "--by", "kind");
    expect_ok(&r);
    doc = parse_json(&r);
    json_t *items = json_object_get(doc, "items");
    json_int_t sum = 0;
    size_t i;
    json_t *e;
    json_array_foreach(items, i, e) sum += jint(e, "total", NULL, NULL);
    assert_int_equal(sum, total);
    assert_int_equal(jint(find_by(items, "scope", "efficiency"), "total", NULL, NULL), 8);
    assert_int_equal(jint(find_by(items, "scope", "efficiency"), "allocated", NULL, NULL),
                     db_count("SELECT count(*) FROM vm_vcpus v JOIN cpus c ON c.host_id = "
                              "v.host_id AND c.cpu_id = v.cpu_id WHERE c.kind_class = "
                              "'efficiency'"));
    json_decref(doc);
    cli_run_free(&r);

    CTL(&r, "-o", "csv", "capacity", "--by", "host");
    expect_ok(&r);
    assert_string_equal(nth_line(r.out, 0, line, sizeof(line)),
                        "SCOPE,TOTAL,ALLOCATED,FREE,DEGRADED_USABLE,RECLAIMED,STRANDED,"
                        "QUARANTINED,OFFLINE");
    assert_int_equal(cli_count_lines(r.out), 1 + 5);
    /* h-def: 24 CPUs, rec-1 on CPU 3 (degraded, so reclaimed), CPU 5 quarantined. */
    assert_true(cli_has_line_prefix(r.out, "h-def,24,1,22,1,1,"));
    assert_true(cli_has_line_prefix(r.out, "h-arm,2,0,0,"));
    cli_run_free(&r);

    CTL(&r, "-o", "yaml", "capacity", "--by", "pool");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "by: pool"));
    assert_true(has_trimmed_line(r.out, "scope: pa"));
    ks_test_path(line, sizeof(line), "total: %lld",
                 (long long)db_count("SELECT count(*) FROM cpus WHERE host_id IN "
                                     "('h-skl','h-spr')"));
    assert_true(has_trimmed_line(r.out, line));
    cli_run_free(&r);

    CTL(&r, "capacity", "--by", "fleet");
    expect_ok(&r);
    assert_true(cli_has_line_prefix(r.out, "SCOPE "));
    assert_true(cli_has_line_prefix(r.out, "fleet "));
    assert_int_equal(cli_count_lines(r.out), 2);
    cli_run_free(&r);

    /* An unknown grouping is refused (by the server) with a clear message. */
    CTL(&r, "capacity", "--by", "rack");
    assert_int_not_equal(r.status, 0);
    assert_non_null(strstr(r.err, "rack"));
    cli_run_free(&r);
}

static json_int_t last_event_id(void)
{
    resp h;
    json_int_t id = 0;
    assert_int_equal(kd_http(&S.d, &h, "GET", "/v1/events?since=0&limit=1000", S.admin, NULL), 200);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(h.json, "items"), i, e)
    {
        json_int_t v = json_integer_value(json_object_get(e, "id"));
        if (v > id)
            id = v;
    }
    resp_free(&h);
    return id;
}

static void test_cli__events(void **state)
{
    (void)state;
    cli_run r;
    char line[512];
    CTL(&r, "-o", "json", "events");
    expect_ok(&r);
    json_t *ev = parse_json(&r);
    size_t n = json_array_size(ev);
    assert_true(n >= 10);
    static const char *const types[] = {"host.registered", "vm.placed", "pool.created",
                                        "policy.ban_added", "vm.replanned"};
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
        if (!find_by(ev, "type", types[t]))
            fail_msg("no %s event", types[t]);
    json_int_t mid = json_integer_value(json_object_get(json_array_get(ev, n / 2), "id"));
    json_decref(ev);
    cli_run_free(&r);

    char since[32];
    ks_test_path(since, sizeof(since), "%" JSON_INTEGER_FORMAT, mid);
    CTL(&r, "-o", "json", "events", "--since", since);
    expect_ok(&r);
    ev = parse_json(&r);
    assert_true(json_array_size(ev) > 0 && json_array_size(ev) < n);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 0), "id")), mid + 1);
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) assert_true(json_integer_value(json_object_get(e, "id")) > mid);
    json_decref(ev);
    cli_run_free(&r);

    CTL(&r, "-o", "json", "events", "--limit", "3");
    expect_ok(&r);
    ev = parse_json(&r);
    assert_int_equal(json_array_size(ev), 3);
    json_decref(ev);
    cli_run_free(&r);

    CTL(&r, "-o", "csv", "events");
    expect_ok(&r);
    assert_string_equal(nth_line(r.out, 0, line, sizeof(line)), "ID,TIME_US,TYPE,HOST,VM,DETAIL");
    assert_int_equal(cli_count_lines(r.out), n + 1);
    assert_non_null(strstr(r.out, ",vm.placed,h-rpl,web-1,"));
    cli_run_free(&r);

    CTL(&r, "-o", "yaml", "events", "--since", since);
    expect_ok(&r);
    assert_true(has_trimmed_line(r.out, "type: policy.ban_added") ||
                has_trimmed_line(r.out, "type: vm.placed"));
    cli_run_free(&r);

    CTL(&r, "events");
    expect_ok(&r);
    assert_true(cli_has_line_prefix(r.out, "ID "));
    assert_non_null(strstr(r.out, "host.registered"));
    cli_run_free(&r);
}

static void test_cli__events_follow(void **state)
{
    (void)state;
    json_int_t last = last_event_id();
    char since[32], out_path[700], err_path[700];
    ks_test_path(since, sizeof(since), "%" JSON_INTEGER_FORMAT, last);
    ks_test_path(out_path, sizeof(out_path), "%s/follow.out", S.d.dir);
    ks_test_path(err_path, sizeof(err_path), "%s/follow.err", S.d.dir);
    const char *argv[] = {S.ctl,    "--server", S.server,  "--token", S.admin,      "-o", "json",
                          "events", "--follow", "--since", since,     "--interval", "1",  NULL};
    pid_t pid = cli_spawn(argv, ARGS("KINTSUGI_CONFIG", "KINTSUGI_SERVER", "KINTSUGI_TOKEN"), NULL,
                          out_path, err_path);

    cli_run r;
    CTL(&r, "vms", "create", "follow-1", "--vcpus", "1", "--require", "avx512f");
    expect_ok(&r);
    cli_run_free(&r);

    /* Read the follower's lines until the placement shows up (deadline, no fixed sleep). */
    uint64_t deadline = cli_mono_ms() + 20000;
    char *text = NULL;
    bool seen = false;
    while (!seen && cli_mono_ms() < deadline) {
        free(text);
        text = ks_test_read_file(out_path, NULL);
        seen = text && strstr(text, "\"follow-1\"") && strstr(text, "vm.placed");
        int st;
        if (!seen && waitpid(pid, &st, WNOHANG) == pid) {
            char *err = ks_test_read_file(err_path, NULL);
            fail_msg("events --follow exited early (%d): %s", st, err ? err : "");
        }
        if (!seen)
            cli_nap_ms(50);
    }
    kill(pid, SIGTERM);
    int status = cli_wait(pid, 10000, "events --follow");
    if (!seen)
        fail_msg("events --follow did not print the new event; got: %s", text ? text : "");
    /* It was still following (killed by our signal), and every line is one new event. */
    assert_int_equal(status, 128 + SIGTERM);
    size_t lines = 0;
    for (char *p = text, *nl; p && *p; p = nl + 1) {
        nl = strchr(p, '\n');
        assert_non_null(nl);
        *nl = '\0';
        json_t *e = json_loads(p, 0, NULL);
        if (!json_is_object(e))
            fail_msg("follow line is not a JSON object: %s", p);
        assert_true(json_integer_value(json_object_get(e, "id")) > last);
        json_decref(e);
        lines++;
    }
    assert_true(lines >= 1);
    free(text);
}

/* Reads a file the CLI wrote (fails when missing). */
static char *slurp(const char *path)
{
    char *s = ks_test_read_file(path, NULL);
    if (!s)
        fail_msg("%s was not written", path);
    return s;
}

/* Fleet snapshots, whose latest reclaimed count is the current one (rec-1). */
static void wait_for_snapshots(int64_t n)
{
    uint64_t deadline = cli_mono_ms() + 20000;
    const char *sql = "SELECT count(*) FROM capacity_snapshots WHERE scope = 'fleet' AND "
                      "reclaimed = 1";
    while (db_count(sql) < n) {
        if (cli_mono_ms() > deadline)
            fail_msg("fewer than %lld fleet snapshots after 20 s (--snapshot-interval 1)",
                     (long long)n);
        cli_nap_ms(100);
    }
}

static void test_cli__report_history(void **state)
{
    (void)state;
    wait_for_snapshots(3);
    cli_run r;
    CTL(&r, "report", "--json");
    expect_ok(&r);
    json_t *doc = parse_json(&r);
    cli_run_free(&r);
    /* Every point is a stored fleet snapshot, oldest first (the first ones may predate
     * the last host registrations). */
    const json_t *hist = json_object_get(doc, "history");
    size_t n = json_array_size(hist);
    assert_true(n >= 3);
    assert_true((int64_t)n <= db_count("SELECT count(*) FROM capacity_snapshots WHERE scope = "
                                       "'fleet'"));
    json_int_t prev = 0;
    size_t i;
    json_t *e;
    json_array_foreach(hist, i, e)
    {
        char sql[300];
        assert_true(jint(e, "time_us", NULL, NULL) > prev);
        prev = jint(e, "time_us", NULL, NULL);
        ks_test_path(sql, sizeof(sql),
                     "SELECT count(*) FROM capacity_snapshots WHERE scope = 'fleet' AND "
                     "time_us = %" JSON_INTEGER_FORMAT " AND total = %" JSON_INTEGER_FORMAT
                     " AND allocated = %" JSON_INTEGER_FORMAT
                     " AND reclaimed = %" JSON_INTEGER_FORMAT,
                     prev, jint(e, "total", NULL, NULL), jint(e, "allocated", NULL, NULL),
                     jint(e, "reclaimed", NULL, NULL));
        assert_int_equal(db_count(sql), 1);
    }
    /* The newest was taken after the fleet was complete and rec-1 placed. */
    assert_int_equal(jint(json_array_get(hist, n - 1), "total", NULL, NULL), db_count(SQL_TOTAL));
    assert_int_equal(jint(json_array_get(hist, n - 1), "reclaimed", NULL, NULL), 1);
    json_decref(doc);

    /* --history N keeps at most the last N. */
    CTL(&r, "report", "--json", "--history", "2");
    expect_ok(&r);
    doc = parse_json(&r);
    cli_run_free(&r);
    n = json_array_size(json_object_get(doc, "history"));
    assert_true(n >= 1 && n <= 2);
    json_decref(doc);

    /* The HTML trend draws one polyline point per snapshot. */
    char html_path[700];
    ks_test_path(html_path, sizeof(html_path), "%s/trend.html", S.scratch);
    CTL(&r, "report", "--html", html_path);
    expect_ok(&r);
    cli_run_free(&r);
    char *html = ks_test_read_file(html_path, NULL);
    assert_non_null(html);
    const char *pts = strstr(html, "<polyline class=\"trend-line\"");
    assert_non_null(pts);
    pts = strstr(pts, "points=\"");
    assert_non_null(pts);
    const char *end = strchr(pts + 8, '"');
    size_t points = 0;
    for (const char *p = pts + 8; p < end; p++)
        points += *p == ',';
    assert_true(points >= 3);
    free(html);

    CTL(&r, "report", "--json", "--history", "x");
    expect_fail(&r, 1, ARGS("history"));
    cli_run_free(&r);
}

static void test_cli__report(void **state)
{
    (void)state;
    cli_run r;
    CTL(&r, "report", "--json");
    expect_ok(&r);
    json_t *doc = parse_json(&r);
    cli_run_free(&r);
    const json_t *fleet = json_object_get(doc, "fleet");
    assert_true(json_is_object(fleet));
    check_fleet_against_db(fleet, "report --json");
    assert_true(json_integer_value(json_object_get(doc, "generated_us")) > 0);

    /* The same numbers as `capacity`. */
    CTL(&r, "-o", "json", "capacity");
    expect_ok(&r);
    json_t *cap = parse_json(&r);
    cli_run_free(&r);
    const json_t *cf = json_array_get(json_object_get(cap, "items"), 0);
    static const char *const fields[] = {"total",     "allocated", "free",        "degraded_usable",
                                         "reclaimed", "stranded",  "quarantined", "offline"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        assert_int_equal(jint(fleet, fields[i], NULL, NULL), jint(cf, fields[i], NULL, NULL));
    json_decref(cap);

    const json_t *hosts = json_object_get(doc, "hosts");
    assert_int_equal(json_array_size(hosts), 5);
    assert_int_equal(jint(find_by(hosts, "scope", "h-def"), "reclaimed", NULL, NULL), 1);
    assert_int_equal(jint(find_by(hosts, "scope", "h-def"), "quarantined", NULL, NULL), 1);
    assert_int_equal(
        jint(find_by(json_object_get(doc, "kinds"), "scope", "efficiency"), "total", NULL, NULL),
        8);
    assert_non_null(find_by(json_object_get(doc, "pools"), "scope", "pa"));
    const json_t *avx2 = find_by(json_object_get(doc, "defects"), "feature", "avx2");
    if (!avx2)
        fail_msg("report defects lack avx2");
    assert_true(jint(avx2, "by_host", "h-def", NULL) >= 1);
    assert_true(json_is_array(json_object_get(doc, "history")));
    assert_true(json_is_array(json_object_get(doc, "needs_migration")));

    /* CSV: header, one row per fleet/pool/kind/host, percentages from the counts. */
    char csv_path[700], html_path[700], want[256];
    ks_test_path(csv_path, sizeof(csv_path), "%s/report.csv", S.scratch);
    ks_test_path(html_path, sizeof(html_path), "%s/report.html", S.scratch);
    CTL(&r, "report", "--csv", csv_path, "--html", html_path);
    expect_ok(&r);
    cli_run_free(&r);
    char *csv = slurp(csv_path);
    char line[512];
    assert_string_equal(nth_line(csv, 0, line, sizeof(line)),
                        "level,scope,total,allocated,free,degraded_usable,reclaimed,stranded,"
                        "quarantined,offline,unschedulable,reserved,used_pct,reclaimed_pct");
    size_t rows = 1 + json_array_size(json_object_get(doc, "pools")) +
                  json_array_size(json_object_get(doc, "kinds")) + json_array_size(hosts);
    assert_int_equal(cli_count_lines(csv), 1 + rows);
    int64_t total = db_count(SQL_TOTAL), alloc = db_count(SQL_ALLOCATED);
    ks_test_path(want, sizeof(want), "fleet,fleet,%lld,%lld,", (long long)total, (long long)alloc);
    assert_true(cli_has_line_prefix(csv, want));
    char pct[64];
    ks_test_path(pct, sizeof(pct), ",%.2f,%.2f", 100.0 * (double)alloc / (double)total,
                 100.0 / (double)total);
    assert_non_null(strstr(nth_line(csv, 1, line, sizeof(line)), pct));
    assert_true(cli_has_line_prefix(csv, "host,h-def,24,1,"));
    assert_true(cli_has_line_prefix(csv, "kind,efficiency,8,"));
    assert_true(cli_has_line_prefix(csv, "pool,pa,"));
    free(csv);

    char *html = slurp(html_path);
    assert_true(strncmp(html, "<!DOCTYPE html>", 15) == 0);
    static const char *const parts[] = {"<svg id=\"bars-fleet\"", "<svg id=\"bars-kinds\"",
                                        "<svg id=\"bars-pools\"", "<svg id=\"heatmap\"",
                                        "<table id=\"defects\">", "</body></html>"};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        if (!strstr(html, parts[i]))
            fail_msg("report HTML lacks %s", parts[i]);
    ks_test_path(want, sizeof(want), "<div class=\"kpi\" id=\"kpi-total\"><b>%lld</b>",
                 (long long)total);
    assert_non_null(strstr(html, want));
    assert_non_null(strstr(html, "<div class=\"kpi\" id=\"kpi-reclaimed\"><b>1</b>"));
    assert_non_null(strstr(html, "<td>h-def</td><td>24</td>"));
    free(html);

    /* Only --json also prints nothing else; an unwritable file is a usage error. */
    CTL(&r, "report", "--html", "/nonexistent-dir/r.html");
    expect_fail(&r, 2, ARGS("cannot write '/nonexistent-dir/r.html'"));
    cli_run_free(&r);
    json_decref(doc);
}

static void test_cli__hosts_delete(void **state)
{
    (void)state;
    cli_run r;
    CTL(&r, "hosts", "delete", "h-rpl");
    expect_fail(&r, 1, ARGS("409"));
    cli_run_free(&r);
    CTL(&r, "hosts", "delete", "h-arm");
    expect_ok(&r);
    assert_true(cli_has_line(r.out, "host 'h-arm' deleted"));
    cli_run_free(&r);
    CTL(&r, "hosts", "show", "h-arm");
    expect_fail(&r, 1, ARGS("not found", "404"));
    cli_run_free(&r);
    assert_int_equal(db_count("SELECT count(*) FROM hosts"), 4);
    assert_int_equal(db_count("SELECT count(*) FROM cpus WHERE host_id = 'h-arm'"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli__help_and_version),
        cmocka_unit_test(test_cli__usage_errors),
        cmocka_unit_test(test_cli__connection_and_auth_errors),
        cmocka_unit_test(test_cli__config_sources),
        cmocka_unit_test(test_cli__hosts_list_formats),
        cmocka_unit_test(test_cli__hosts_show_formats),
        cmocka_unit_test(test_cli__hosts_drain),
        cmocka_unit_test(test_cli__cpus_list),
        cmocka_unit_test(test_cli__vms_create),
        cmocka_unit_test(test_cli__vms_list_show_formats),
        cmocka_unit_test(test_cli__vms_delete),
        cmocka_unit_test(test_cli__pools),
        cmocka_unit_test(test_cli__bans),
        cmocka_unit_test(test_cli__capacity),
        cmocka_unit_test(test_cli__events),
        cmocka_unit_test(test_cli__events_follow),
        cmocka_unit_test(test_cli__report),
        cmocka_unit_test(test_cli__report_history),
        cmocka_unit_test(test_cli__hosts_delete),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests_name("kintsugictl", tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
