/*
 * test_qemu_vmm.c - real QEMU (TCG) driven through the agent's REST endpoint:
 * PUT a plan -> QEMU starts, every vCPU thread's affinity equals the plan (read
 * from /proc, not from the driver); a newer generation re-pins online (same pid);
 * a hidden feature reads false through QMP while a plain -cpu max VM reads it
 * true; clusters fall back to dies on QEMU 7.2; a pin that cannot be applied
 * fails the create, reports what was applied first and leaves nothing running;
 * DELETE stops QEMU (pid gone).  The build machine has CPUs 0 and 1 only.
 * Every QEMU is killed in teardown (ks_agent_server_stop destroys all VMs).
 */
#include "ks_test.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>

#include "ks_agent_server.h"
#include "ks_feature.h"
#include "ks_qmp.h"
#include "ks_vm.h"

#define TOKEN "s3cret-agent-token"

typedef struct fixture {
    char dir[256];
    ks_agent_server *srv;
    uint16_t port;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    ks_test_mkdtemp(f->dir, sizeof(f->dir));
    ks_agent_server_options o = KS_AGENT_SERVER_OPTIONS_INIT;
    o.port = 0;
    o.token = TOKEN;
    o.vmm.driver = "qemu";
    o.vmm.accel = "tcg"; /* /dev/kvm may open here but KVM does not work (PLATFORM.md) */
    o.vmm.state_dir = f->dir;
    o.vmm.start_timeout_us = 20000000;
    ks_err err = {0};
    if (ks_agent_server_start(&f->srv, &o, &err) != KS_OK)
        fail_msg("agent server: %s", err.msg);
    f->port = ks_agent_server_port(f->srv);
    assert_true(f->port > 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ks_agent_server_stop(f->srv); /* kills every QEMU it started */
    ks_test_rmdir(f->dir);
    free(f);
    return 0;
}

/* ---------------------------------------------------------------- HTTP */

typedef struct buf {
    char *s;
    size_t len;
} buf;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    buf *b = ud;
    char *ns = realloc(b->s, b->len + sz * n + 1);
    assert_non_null(ns);
    memcpy(ns + b->len, p, sz * n);
    b->s = ns;
    b->len += sz * n;
    b->s[b->len] = '\0';
    return sz * n;
}

/* Returns the HTTP status; *out (may be NULL) gets the decoded body or NULL. */
static long http(fixture *f, const char *method, const char *path, const json_t *body,
                 json_t **out)
{
    char url[256], *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    buf b = {0};
    ks_test_path(url, sizeof(url), "http://127.0.0.1:%u%s", f->port, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " TOKEN);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (payload)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (out)
        *out = b.len ? json_loads(b.s, 0, NULL) : NULL;
    if (status >= 300 && b.s)
        fprintf(stderr, "%s %s -> %ld %s\n", method, path, status, b.s);
    free(b.s);
    free(payload);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* ---------------------------------------------------------------- plans */

static json_t *plan_json(const char *vm, uint64_t gen, uint32_t n, const int *host_cpus,
                         uint32_t dies, uint32_t clusters, uint32_t cores, const char *hide)
{
    ks_plan *p = NULL;
    assert_int_equal(ks_plan_new(&p, n, NULL), KS_OK);
    snprintf(p->vm, sizeof(p->vm), "%s", vm);
    snprintf(p->host, sizeof(p->host), "h-test");
    p->generation = gen;
    p->memory_mib = 64;
    p->topology.sockets = 1;
    p->topology.dies = dies;
    p->topology.clusters = clusters;
    p->topology.cores = cores;
    p->topology.threads = 1;
    for (uint32_t i = 0; i < n; i++) {
        p->vcpus[i].host_cpu = host_cpus[i];
        p->vcpus[i].core = (int32_t)(i % cores);
        p->vcpus[i].cluster = (int32_t)((i / cores) % clusters);
        p->vcpus[i].die = (int32_t)((i / (cores * clusters)) % dies);
    }
    if (hide) {
        unsigned id;
        assert_int_equal(ks_feature_lookup(hide, &id, NULL), KS_OK);
        ks_featset_set(&p->disable, id);
    }
    json_t *j = ks_plan_to_json(p);
    assert_non_null(j);
    ks_plan_free(p);
    return j;
}

/* Cpus_allowed_list and comm of a thread, straight from /proc. */
static void proc_thread(pid_t pid, pid_t tid, char *aff, size_t aff_cap, char *comm, size_t cap)
{
    char path[128];
    ks_test_path(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
    char *st = ks_test_read_file(path, NULL);
    assert_non_null(st);
    char *l = strstr(st, "Cpus_allowed_list:");
    assert_non_null(l);
    l += strlen("Cpus_allowed_list:");
    l += strspn(l, " \t");
    l[strcspn(l, "\n")] = '\0';
    snprintf(aff, aff_cap, "%s", l);
    free(st);
    ks_test_path(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid, (int)tid);
    char *c = ks_test_read_file(path, NULL);
    assert_non_null(c);
    c[strcspn(c, "\n")] = '\0';
    snprintf(comm, cap, "%s", c);
    free(c);
}

/* Checks every vCPU of the VM object against the expected host CPUs, reading the
 * thread's affinity from /proc; returns the QEMU pid. */
static pid_t expect_pins(const json_t *vm, uint32_t n, const int *host_cpus)
{
    pid_t pid = (pid_t)json_integer_value(json_object_get(vm, "pid"));
    assert_true(pid > 0);
    assert_true(json_is_true(json_object_get(vm, "running")));
    json_t *vcpus = json_object_get(vm, "vcpus");
    assert_int_equal(json_array_size(vcpus), n);
    for (uint32_t i = 0; i < n; i++) {
        json_t *v = json_array_get(vcpus, i);
        pid_t tid = (pid_t)json_integer_value(json_object_get(v, "thread_id"));
        assert_true(tid > 0 && tid != pid);
        char aff[64], comm[64], want[16], want_comm[32];
        proc_thread(pid, tid, aff, sizeof(aff), comm, sizeof(comm));
        ks_test_path(want, sizeof(want), "%d", host_cpus[i]);
        ks_test_path(want_comm, sizeof(want_comm), "CPU %u/TCG", i);
        if (strcmp(aff, want) != 0)
            fail_msg("vcpu %u thread %d: affinity '%s', plan says '%s'", i, (int)tid, aff, want);
        assert_string_equal(comm, want_comm); /* the thread really is vCPU i */
        assert_string_equal(json_string_value(json_object_get(v, "affinity")), want);
    }
    return pid;
}

/* qom-get of a feature property on vCPU `idx` over the VM's QMP socket. */
static bool guest_feature_at(const json_t *vm, size_t idx, const char *prop)
{
    const char *sock = json_string_value(json_object_get(vm, "control"));
    assert_non_null(sock);
    ks_qmp *q = NULL;
    ks_err err = {0};
    if (ks_qmp_connect(&q, sock, 5000000, &err) != KS_OK)
        fail_msg("qmp: %s", err.msg);
    json_t *cpus = NULL, *val = NULL;
    assert_int_equal(ks_qmp_execute(&cpus, q, "query-cpus-fast", NULL, 5000000, &err), KS_OK);
    const char *path = json_string_value(json_object_get(json_array_get(cpus, idx), "qom-path"));
    json_t *args = json_pack("{s:s, s:s}", "path", path, "property", prop);
    assert_int_equal(ks_qmp_execute(&val, q, "qom-get", args, 5000000, &err), KS_OK);
    assert_true(json_is_boolean(val));
    bool on = json_is_true(val);
    json_decref(args);
    json_decref(val);
    json_decref(cpus);
    ks_qmp_close(q);
    return on;
}

static bool guest_feature(const json_t *vm, const char *prop)
{
    return guest_feature_at(vm, 0, prop);
}

static bool has_note(const json_t *result, const char *list, const char *item, const char *sub)
{
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(result, list), i, n)
    {
        if (strcmp(json_string_value(json_object_get(n, "item")), item) == 0 &&
            (!sub || strstr(json_string_value(json_object_get(n, "detail")), sub)))
            return true;
    }
    return false;
}

static bool pid_gone(pid_t pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

/* ---------------------------------------------------------------- tests */

static void test_qemu__pin_repin_features_delete(void **state)
{
    fixture *f = *state;
    json_t *resp = NULL;
    int pins1[] = {0, 1}, pins2[] = {1, 0};

    json_t *p1 = plan_json("vm-a", 5, 2, pins1, 1, 1, 2, "avx2");
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-a/plan", p1, &resp), 201);
    pid_t pid = expect_pins(resp, 2, pins1);
    json_t *result = json_object_get(resp, "result");
    assert_true(has_note(result, "applied", "vcpu[0].pin", "host cpu 0"));
    assert_true(has_note(result, "applied", "feature.avx2", "-avx2"));
    /* The guest really does not see AVX2 (checked on the vCPU object, not -cpu). */
    assert_false(guest_feature(resp, "avx2"));
    assert_true(guest_feature(resp, "sse4.2"));
    json_decref(resp);

    /* Same generation, same plan: idempotent.  Older: conflict. */
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-a/plan", p1, NULL), 200);
    json_t *p0 = plan_json("vm-a", 4, 2, pins2, 1, 1, 2, "avx2");
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-a/plan", p0, NULL), 409);
    json_t *p1b = plan_json("vm-a", 5, 2, pins2, 1, 1, 2, "avx2");
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-a/plan", p1b, NULL), 409);

    /* Generation 6 swaps the vCPUs between host CPUs: re-pinned online. */
    json_t *p2 = plan_json("vm-a", 6, 2, pins2, 1, 1, 2, "avx2");
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-a/plan", p2, &resp), 200);
    assert_int_equal(expect_pins(resp, 2, pins2), pid);
    assert_int_equal(json_integer_value(json_object_get(resp, "generation")), 6);
    assert_true(has_note(json_object_get(resp, "result"), "applied", "vcpu[0].pin",
                         "moved online from host cpu 0 to 1"));
    assert_int_equal(json_array_size(json_object_get(resp, "needs_restart")), 0);
    json_decref(resp);

    /* Generation 7 changes the hidden features: QEMU cannot, so needs_restart,
     * and the running VM is left as it was. */
    json_t *p3 = plan_json("vm-a", 7, 2, pins2, 1, 1, 2, "sha_ni");
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-a/plan", p3, &resp), 200);
    assert_int_equal(expect_pins(resp, 2, pins2), pid);
    assert_true(has_note(resp, "needs_restart", "features", "hide [sha_ni] show [avx2]"));
    assert_false(guest_feature(resp, "avx2"));
    json_decref(resp);

    /* Generation 8, same change, restart allowed: a new QEMU that hides sha-ni and
     * shows avx2 again, pinned as planned. */
    json_t *p8 = plan_json("vm-a", 8, 2, pins2, 1, 1, 2, "sha_ni");
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-a/plan?restart=allowed", p8, &resp), 200);
    pid_t pid8 = expect_pins(resp, 2, pins2);
    assert_int_not_equal(pid8, pid);
    assert_true(pid_gone(pid));
    assert_true(has_note(json_object_get(resp, "result"), "applied", "restart", "generation 8"));
    assert_int_equal(json_array_size(json_object_get(resp, "needs_restart")), 0);
    assert_true(guest_feature(resp, "avx2"));
    assert_false(guest_feature(resp, "sha-ni"));
    json_decref(resp);
    json_decref(p8);
    pid = pid8;

    assert_int_equal(http(f, "GET", "/v1/vms/vm-a", NULL, &resp), 200);
    assert_int_equal(json_integer_value(json_object_get(resp, "generation")), 8);
    assert_string_equal(json_string_value(json_object_get(resp, "driver")), "qemu");
    char sock[300];
    snprintf(sock, sizeof(sock), "%s", json_string_value(json_object_get(resp, "control")));
    json_decref(resp);
    assert_int_equal(ks_agent_server_running_vms(f->srv, NULL, NULL), 1);

    assert_int_equal(http(f, "DELETE", "/v1/vms/vm-a", NULL, NULL), 204);
    assert_true(pid_gone(pid));
    struct stat st;
    assert_int_not_equal(stat(sock, &st), 0); /* QMP socket removed */
    assert_int_equal(http(f, "GET", "/v1/vms/vm-a", NULL, NULL), 404);
    assert_int_equal(ks_agent_server_running_vms(f->srv, NULL, NULL), 0);
    json_decref(p0);
    json_decref(p1);
    json_decref(p1b);
    json_decref(p2);
    json_decref(p3);
}

static void test_qemu__plain_max_and_clusters_fallback(void **state)
{
    fixture *f = *state;
    json_t *resp = NULL;
    int pins[] = {1, 0};
    /* Two L2 groups (clusters=2): QEMU 7.2 cannot, so they become two dies. */
    json_t *p = plan_json("vm-b", 1, 2, pins, 1, 2, 1, NULL);
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-b/plan", p, &resp), 201);
    pid_t pid = expect_pins(resp, 2, pins);
    assert_true(has_note(resp, "dropped", "topology.clusters", "dies=2"));
    /* The control for the avx2 check above: a plain -cpu max guest sees AVX2. */
    assert_true(guest_feature(resp, "avx2"));

    /* QEMU put the two vCPUs in different dies. */
    ks_qmp *q = NULL;
    json_t *cpus = NULL;
    assert_int_equal(ks_qmp_connect(&q, json_string_value(json_object_get(resp, "control")),
                                     5000000, NULL),
                     KS_OK);
    assert_int_equal(ks_qmp_execute(&cpus, q, "query-cpus-fast", NULL, 5000000, NULL), KS_OK);
    assert_int_equal(json_array_size(cpus), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *props = json_object_get(json_array_get(cpus, i), "props");
        assert_int_equal(json_integer_value(json_object_get(props, "die-id")), (json_int_t)i);
    }
    json_decref(cpus);
    ks_qmp_close(q);
    json_decref(resp);
    json_decref(p);
    assert_int_equal(http(f, "DELETE", "/v1/vms/vm-b", NULL, NULL), 204);
    assert_true(pid_gone(pid));
}

static void test_qemu__failed_pin_reports_and_cleans_up(void **state)
{
    fixture *f = *state;
    json_t *resp = NULL;
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    int pins[] = {0, (int)ncpu + 3}; /* no such host CPU */
    json_t *p = plan_json("vm-c", 1, 2, pins, 1, 1, 2, NULL);
    long st = http(f, "PUT", "/v1/vms/vm-c/plan", p, &resp);
    assert_int_equal(st, 400); /* the plan names a CPU this host does not have */
    json_t *e = json_object_get(resp, "error");
    assert_non_null(e);
    json_t *details = json_object_get(e, "details");
    /* What was applied before the failure is reported, then the failure. */
    assert_true(has_note(details, "applied", "vcpu[0].pin", "host cpu 0"));
    assert_true(has_note(details, "failed", "vcpu[1].pin", NULL));
    assert_true(has_note(details, "failed", "start", "qemu stopped"));
    json_decref(resp);
    json_decref(p);
    assert_int_equal(http(f, "GET", "/v1/vms/vm-c", NULL, NULL), 404);
    char path[300];
    struct stat sb;
    ks_test_path(path, sizeof(path), "%s/vm-c.qmp", f->dir);
    assert_int_not_equal(stat(path, &sb), 0);
    ks_test_path(path, sizeof(path), "%s/vm-c.pid", f->dir);
    assert_int_not_equal(stat(path, &sb), 0); /* removed by the driver after SIGKILL */
}

/* A second vCPU within the -smp maxcpus slots is hot-plugged online (device_add):
 * same QEMU, a new "CPU 1/TCG" thread pinned as planned, the hidden feature hidden
 * on it too; fewer vCPUs again is reported needs_restart. */
static void test_qemu__hotplug_vcpu(void **state)
{
    fixture *f = *state;
    json_t *resp = NULL;
    int pins[] = {0, 1};
    json_t *p1 = plan_json("vm-d", 1, 1, pins, 1, 1, 2, "avx2");
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-d/plan", p1, &resp), 201);
    pid_t pid = expect_pins(resp, 1, pins);
    json_decref(resp);
    json_t *p2 = plan_json("vm-d", 2, 2, pins, 1, 1, 2, "avx2");
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-d/plan", p2, &resp), 200);
    assert_int_equal(expect_pins(resp, 2, pins), pid);
    assert_true(has_note(json_object_get(resp, "result"), "applied", "vcpus", "hot-plugged"));
    assert_int_equal(json_array_size(json_object_get(resp, "needs_restart")), 0);
    assert_false(guest_feature_at(resp, 1, "avx2"));
    json_decref(resp);
    json_t *p3 = plan_json("vm-d", 3, 1, pins, 1, 1, 2, "avx2");
    assert_int_equal(http(f, "PUT", "/v1/vms/vm-d/plan", p3, &resp), 200);
    assert_true(has_note(resp, "needs_restart", "vcpus", "cooperation"));
    json_decref(resp);
    json_decref(p1);
    json_decref(p2);
    json_decref(p3);
}

/* accel=auto picks KVM when /dev/kvm answers; where KVM then fails inside QEMU (this
 * build machine: /dev/kvm opens, QEMU aborts setting an MSR) the driver falls back
 * to TCG and says so instead of failing. */
static void test_qemu__auto_accel_runs_or_falls_back(void **state)
{
    fixture *f = *state;
    ks_vmm_options o = KS_VMM_OPTIONS_INIT;
    o.driver = "qemu";
    o.accel = "auto";
    o.state_dir = f->dir;
    o.start_timeout_us = 20000000;
    ks_vmm_driver *d = NULL;
    ks_err err = {0};
    assert_int_equal(ks_vmm_driver_new(&d, &o, &err), KS_OK);
    ks_plan *p = NULL;
    assert_int_equal(ks_plan_new(&p, 1, NULL), KS_OK);
    snprintf(p->vm, sizeof(p->vm), "vm-auto");
    p->memory_mib = 64;
    p->vcpus[0].host_cpu = 1;
    ks_vmm_vm *vm = NULL;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    if (ks_vmm_create(&vm, d, p, &res, &err) != KS_OK)
        fail_msg("create: %s", err.msg);
    const ks_vmm_note *start = ks_vmm_result_find(&res, "start");
    assert_non_null(start);
    const ks_vmm_note *fb = ks_vmm_result_find(&res, "accel.kvm");
    fprintf(stderr, "accel=auto: %s%s%s\n", start->detail, fb ? "; " : "", fb ? fb->detail : "");
    if (fb) {
        assert_int_equal(fb->outcome, KS_VMM_DROPPED);
        assert_non_null(strstr(start->detail, "accel tcg"));
    } else {
        assert_non_null(strstr(start->detail, "accel"));
    }
    ks_vmm_state st;
    assert_int_equal(ks_vmm_query(&st, d, vm, &err), KS_OK);
    assert_true(st.running);
    assert_string_equal(st.vcpus[0].affinity, "1");
    pid_t pid = st.pid;
    ks_vmm_state_destroy(&st);
    assert_int_equal(ks_vmm_destroy(d, vm, &err), KS_OK);
    assert_true(pid_gone(pid));
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
    ks_vmm_driver_free(d);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qemu__pin_repin_features_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qemu__plain_max_and_clusters_fallback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qemu__failed_pin_reports_and_cleans_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qemu__auto_accel_runs_or_falls_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qemu__hotplug_vcpu, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
