/*
 * test_ks_vmm_rest.c - the Cloud Hypervisor and Firecracker drivers against a
 * fake VMM: a libmicrohttpd server listening on a unix socket we bind ourselves
 * (MHD_OPTION_LISTEN_SOCKET).  It records every request and checks it against the
 * published API shapes kept in tests/data/vmm/ (*.schema.json) (route table +
 * definitions transcribed from fixtures/vmm-api); a request that does not match
 * gets HTTP 400 with a Firecracker-style fault_message and is counted as a
 * violation, so the drivers fail loudly.
 */
#include "ks_test.h"

#include <errno.h>
#include <microhttpd.h>
#include <signal.h>
#include <pthread.h>
#include <regex.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ks_feature.h"
#include "ks_vmm.h"

/* ---------------------------------------------------------------- mini schema check */

/* Validates v against schema s (subset of JSON Schema used by the test data:
 * $ref, type, required, properties, additionalProperties:false, items, minimum,
 * maximum, enum, pattern).  Writes the first violation to why. */
static bool check(const json_t *root, const json_t *s, const json_t *v, const char *path,
                  char *why, size_t cap)
{
    const char *ref = json_string_value(json_object_get(s, "$ref"));
    if (ref) {
        const char *name = strrchr(ref, '/');
        s = json_object_get(json_object_get(root, "definitions"), name ? name + 1 : ref);
        if (!s) {
            snprintf(why, cap, "%s: unknown $ref %s", path, ref);
            return false;
        }
    }
    const char *type = json_string_value(json_object_get(s, "type"));
    if (type) {
        bool ok = (!strcmp(type, "object") && json_is_object(v)) ||
                  (!strcmp(type, "array") && json_is_array(v)) ||
                  (!strcmp(type, "string") && json_is_string(v)) ||
                  (!strcmp(type, "integer") && json_is_integer(v)) ||
                  (!strcmp(type, "boolean") && json_is_boolean(v));
        if (!ok) {
            snprintf(why, cap, "%s: expected %s", path, type);
            return false;
        }
    }
    json_t *en = json_object_get(s, "enum");
    if (en) {
        bool found = false;
        size_t i;
        json_t *e;
        json_array_foreach(en, i, e) found |= json_equal(e, v);
        if (!found) {
            snprintf(why, cap, "%s: not in enum", path);
            return false;
        }
    }
    json_t *mn = json_object_get(s, "minimum"), *mx = json_object_get(s, "maximum");
    if ((mn && json_integer_value(v) < json_integer_value(mn)) ||
        (mx && json_integer_value(v) > json_integer_value(mx))) {
        snprintf(why, cap, "%s: %lld out of range", path, (long long)json_integer_value(v));
        return false;
    }
    const char *pat = json_string_value(json_object_get(s, "pattern"));
    if (pat) {
        regex_t re;
        assert_int_equal(regcomp(&re, pat, REG_EXTENDED | REG_NOSUB), 0);
        int m = regexec(&re, json_string_value(v), 0, NULL, 0);
        regfree(&re);
        if (m != 0) {
            snprintf(why, cap, "%s: '%s' does not match %s", path, json_string_value(v), pat);
            return false;
        }
    }
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(s, "required"), i, e)
    {
        if (!json_object_get(v, json_string_value(e))) {
            snprintf(why, cap, "%s: missing required '%s'", path, json_string_value(e));
            return false;
        }
    }
    json_t *props = json_object_get(s, "properties");
    if (json_is_object(v) && props) {
        const char *k;
        json_t *pv;
        json_object_foreach((json_t *)v, k, pv)
        {
            char sub[256];
            snprintf(sub, sizeof(sub), "%s.%s", path, k);
            json_t *ps = json_object_get(props, k);
            if (!ps) {
                if (json_is_false(json_object_get(s, "additionalProperties"))) {
                    snprintf(why, cap, "%s: key not in the published shape", sub);
                    return false;
                }
                continue;
            }
            if (!check(root, ps, pv, sub, why, cap))
                return false;
        }
    }
    json_t *items = json_object_get(s, "items");
    if (json_is_array(v) && items) {
        json_array_foreach(v, i, e)
        {
            char sub[256];
            snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
            if (!check(root, items, e, sub, why, cap))
                return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- fake VMM */

#define MAX_REQS 32

typedef struct fake_req {
    char line[96];  /* "PUT /machine-config" */
    json_t *body;   /* NULL when empty */
} fake_req;

typedef struct fake {
    char dir[256], sock[300];
    struct MHD_Daemon *mhd;
    json_t *schema;
    pthread_mutex_t lock;
    fake_req reqs[MAX_REQS];
    int n_reqs;
    int violations;
    char last_violation[300];
    const char *fail_route;  /* answer this route with HTTP 400 */
    const char *info_state;  /* "state" of GET vm.info / GET / */
} fake;

typedef struct body_buf {
    char *s;
    size_t len;
} body_buf;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (text[0])
        MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result fake_handle(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *upload,
                                   size_t *upload_size, void **con_cls)
{
    fake *f = cls;
    body_buf *b = *con_cls;
    if (!b) {
        *con_cls = calloc(1, sizeof(body_buf));
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        char *ns = realloc(b->s, b->len + *upload_size + 1);
        if (!ns)
            return MHD_NO;
        memcpy(ns + b->len, upload, *upload_size);
        b->s = ns;
        b->len += *upload_size;
        b->s[b->len] = '\0';
        *upload_size = 0;
        return MHD_YES;
    }
    char line[96], why[300] = "";
    snprintf(line, sizeof(line), "%s %s", method, url);
    json_t *body = b->len ? json_loadb(b->s, b->len, 0, NULL) : NULL;
    json_t *routes = json_object_get(f->schema, "routes");
    json_t *route = json_object_get(routes, line);
    if (!route)
        snprintf(why, sizeof(why), "%s: not a route of the published API", line);
    else if (json_is_string(route)) {
        json_t *ref = json_pack("{s:s+}", "$ref", "#/definitions/", json_string_value(route));
        if (!body)
            snprintf(why, sizeof(why), "%s: body missing or not JSON", line);
        else
            check(f->schema, ref, body, json_string_value(route), why, sizeof(why));
        json_decref(ref);
    } else if (b->len) {
        snprintf(why, sizeof(why), "%s: takes no body", line);
    }
    pthread_mutex_lock(&f->lock);
    if (f->n_reqs < MAX_REQS) {
        snprintf(f->reqs[f->n_reqs].line, sizeof(f->reqs[0].line), "%s", line);
        f->reqs[f->n_reqs++].body = json_incref(body);
    }
    if (why[0]) {
        f->violations++;
        snprintf(f->last_violation, sizeof(f->last_violation), "%s", why);
    }
    bool fail = f->fail_route && strcmp(f->fail_route, line) == 0;
    pthread_mutex_unlock(&f->lock);
    json_decref(body);
    if (why[0] || fail) {
        char msg[400];
        json_t *fm = json_pack("{s:s}", "fault_message", why[0] ? why : "injected failure");
        char *t = json_dumps(fm, JSON_COMPACT);
        snprintf(msg, sizeof(msg), "%s", t);
        free(t);
        json_decref(fm);
        return reply(c, MHD_HTTP_BAD_REQUEST, msg);
    }
    if (strcmp(method, "GET") == 0) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "{\"state\":\"%s\",\"config\":{\"payload\":{}},\"id\":\"x\",\"app_name\":"
                 "\"Firecracker\",\"vmm_version\":\"1.17.0\"}",
                 f->info_state ? f->info_state : "Running");
        return reply(c, MHD_HTTP_OK, msg);
    }
    return reply(c, MHD_HTTP_NO_CONTENT, "");
}

static void fake_done(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    body_buf *b = *con_cls;
    if (b) {
        free(b->s);
        free(b);
    }
    *con_cls = NULL;
}

/* Starts a fake VMM on <dir>/<vm>.<driver>.sock with the given schema file. */
static fake *fake_start(const char *driver, const char *vm, const char *schema_file)
{
    fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    pthread_mutex_init(&f->lock, NULL);
    ks_test_mkdtemp(f->dir, sizeof(f->dir));
    ks_test_path(f->sock, sizeof(f->sock), "%s/%s.%s.sock", f->dir, vm, driver);
    char path[512];
    const char *src = getenv("KS_SOURCE_DIR");
    ks_test_path(path, sizeof(path), "%s/tests/data/vmm/%s", src ? src : "..", schema_file);
    f->schema = json_load_file(path, 0, NULL);
    assert_non_null(f->schema);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(f->sock) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, f->sock, strlen(f->sock) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    f->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, fake_handle, f,
                              MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
                              fake_done, f, MHD_OPTION_END);
    assert_non_null(f->mhd);
    return f;
}

static void fake_clear(fake *f)
{
    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < f->n_reqs; i++)
        json_decref(f->reqs[i].body);
    f->n_reqs = 0;
    pthread_mutex_unlock(&f->lock);
}

static void fake_stop(fake *f)
{
    MHD_stop_daemon(f->mhd); /* closes the listen socket it was given */
    fake_clear(f);
    json_decref(f->schema);
    pthread_mutex_destroy(&f->lock);
    ks_test_rmdir(f->dir);
    free(f);
}

static void expect_requests(fake *f, const char *const *lines, int n)
{
    pthread_mutex_lock(&f->lock);
    if (f->violations)
        fail_msg("request violates the published API: %s", f->last_violation);
    for (int i = 0; i < f->n_reqs && i < n; i++)
        if (strcmp(f->reqs[i].line, lines[i]) != 0)
            fail_msg("request %d is '%s', want '%s'", i, f->reqs[i].line, lines[i]);
    if (f->n_reqs != n)
        fail_msg("%d requests, want %d", f->n_reqs, n);
    pthread_mutex_unlock(&f->lock);
}

/* ---------------------------------------------------------------- plans */

static ks_plan *mk_plan(const char *vm, uint32_t n, uint32_t clusters, uint32_t cores,
                        uint32_t threads)
{
    ks_plan *p = NULL;
    assert_int_equal(ks_plan_new(&p, n, NULL), KS_OK);
    snprintf(p->vm, sizeof(p->vm), "%s", vm);
    p->generation = 1;
    p->memory_mib = 512;
    p->topology.clusters = clusters;
    p->topology.cores = cores;
    p->topology.threads = threads;
    for (uint32_t i = 0; i < n; i++)
        p->vcpus[i].host_cpu = (int)i;
    return p;
}

static void hide(ks_plan *p, const char *name)
{
    unsigned id;
    assert_int_equal(ks_feature_lookup(name, &id, NULL), KS_OK);
    ks_featset_set(&p->disable, id);
}

static ks_vmm_driver *driver(const char *name, const char *dir, const char *kernel)
{
    ks_vmm_options o = KS_VMM_OPTIONS_INIT;
    o.driver = name;
    o.state_dir = dir;
    o.kernel = kernel;
    ks_vmm_driver *d = NULL;
    ks_err err = {0};
    if (ks_vmm_driver_new(&d, &o, &err) != KS_OK)
        fail_msg("driver: %s", err.msg);
    return d;
}

static bool note_is(const ks_vmm_result *r, const char *item, ks_vmm_outcome o)
{
    const ks_vmm_note *n = ks_vmm_result_find(r, item);
    return n && n->outcome == o;
}

/* ---------------------------------------------------------------- Cloud Hypervisor */

static void test_vmm_rest__ch_create_resize_destroy(void **state)
{
    fake *f = fake_start("cloud-hypervisor", "ch-1", "cloud-hypervisor-vcpu.schema.json");
    ks_vmm_driver *d = driver("cloud-hypervisor", f->dir, "/boot/vmlinux");
    ks_plan *p = mk_plan("ch-1", 4, 2, 2, 1); /* 4 slots: clusters fold into dies=2 */
    p->topology.dies = 1;
    p->n_vcpus = 2;                            /* boot 2 of them */
    hide(p, "avx2");
    ks_vmm_vm *vm = NULL;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    ks_err err = {0};
    if (ks_vmm_create(&vm, d, p, &res, &err) != KS_OK)
        fail_msg("create: %s", err.msg);
    const char *want_create[] = {"PUT /api/v1/vm.create", "PUT /api/v1/vm.boot"};
    expect_requests(f, want_create, 2);
    json_t *cpus = json_object_get(f->reqs[0].body, "cpus");
    assert_int_equal(json_integer_value(json_object_get(cpus, "boot_vcpus")), 2);
    assert_int_equal(json_integer_value(json_object_get(cpus, "max_vcpus")), 4);
    assert_int_equal(json_array_size(json_object_get(cpus, "affinity")), 2);
    assert_true(note_is(&res, "topology.clusters", KS_VMM_DROPPED));
    assert_true(note_is(&res, "feature.avx2", KS_VMM_DROPPED));
    assert_true(note_is(&res, "vcpu[1].pin", KS_VMM_APPLIED));

    /* Generation 2: one more vCPU (hot-plug via vm.resize) and a moved vCPU. */
    fake_clear(f);
    ks_plan *p2 = mk_plan("ch-1", 3, 2, 2, 1);
    p2->generation = 2;
    p2->vcpus[0].host_cpu = 7;
    hide(p2, "avx2");
    ks_vmm_result_reset(&res);
    if (ks_vmm_apply(d, vm, p2, &res, &err) != KS_OK)
        fail_msg("apply: %s", err.msg);
    const char *want_resize[] = {"PUT /api/v1/vm.resize"};
    expect_requests(f, want_resize, 1);
    assert_int_equal(json_integer_value(json_object_get(f->reqs[0].body, "desired_vcpus")), 3);
    assert_true(note_is(&res, "vcpus", KS_VMM_APPLIED));
    assert_true(note_is(&res, "vcpu.pin", KS_VMM_NEEDS_RESTART));
    assert_true(note_is(&res, "topology.clusters", KS_VMM_DROPPED)); /* still dropped */

    ks_vmm_state st;
    assert_int_equal(ks_vmm_query(&st, d, vm, &err), KS_OK);
    assert_true(st.running);
    assert_int_equal(st.generation, 2);
    ks_vmm_state_destroy(&st);

    fake_clear(f);
    assert_int_equal(ks_vmm_destroy(d, vm, &err), KS_OK);
    const char *want_delete[] = {"PUT /api/v1/vm.delete"};
    expect_requests(f, want_delete, 1);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
    ks_plan_free(p2);
    ks_vmm_driver_free(d);
    fake_stop(f);
}

static void test_vmm_rest__ch_create_error_reported(void **state)
{
    fake *f = fake_start("cloud-hypervisor", "ch-2", "cloud-hypervisor-vcpu.schema.json");
    f->fail_route = "PUT /api/v1/vm.boot";
    ks_vmm_driver *d = driver("cloud-hypervisor", f->dir, "/boot/vmlinux");
    ks_plan *p = mk_plan("ch-2", 2, 1, 2, 1);
    ks_vmm_vm *vm = NULL;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    ks_err err = {0};
    assert_int_equal(ks_vmm_create(&vm, d, p, &res, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "injected failure"));
    assert_null(vm);
    /* vm.create had been applied before vm.boot failed: both are reported, and the
     * half-created VM is deleted. */
    assert_true(note_is(&res, "create", KS_VMM_APPLIED));
    assert_true(note_is(&res, "boot", KS_VMM_FAILED));
    const char *want[] = {"PUT /api/v1/vm.create", "PUT /api/v1/vm.boot",
                          "PUT /api/v1/vm.delete"};
    expect_requests(f, want, 3);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
    ks_vmm_driver_free(d);
    fake_stop(f);
}

/* ---------------------------------------------------------------- Firecracker */

static void test_vmm_rest__fc_create_and_template(void **state)
{
    fake *f = fake_start("firecracker", "fc-1", "firecracker-vcpu.schema.json");
    ks_vmm_driver *d = driver("firecracker", f->dir, "/boot/vmlinux");
    ks_plan *p = mk_plan("fc-1", 4, 1, 2, 2);
    hide(p, "avx512f");
    hide(p, "aes");
    hide(p, "sdbg");
    ks_vmm_vm *vm = NULL;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    ks_err err = {0};
    if (ks_vmm_create(&vm, d, p, &res, &err) != KS_OK)
        fail_msg("create: %s", err.msg);
    const char *want[] = {"PUT /machine-config", "PUT /cpu-config", "PUT /boot-source",
                          "PUT /actions"};
    expect_requests(f, want, 4);
    json_t *mc = f->reqs[0].body;
    assert_int_equal(json_integer_value(json_object_get(mc, "vcpu_count")), 4);
    assert_true(json_is_true(json_object_get(mc, "smt")));
    json_t *mods = json_object_get(f->reqs[1].body, "cpuid_modifiers");
    assert_int_equal(json_array_size(mods), 2); /* leaf 0x1 (aes, sdbg) and 0x7 (avx512f) */
    json_t *m1 = json_array_get(json_object_get(json_array_get(mods, 0), "modifiers"), 0);
    /* aes = ecx bit 25, sdbg = ecx bit 11: one modifier for the register */
    assert_string_equal(json_string_value(json_object_get(m1, "bitmap")),
                        "0bxxxxxx0xxxxxxxxxxxxx0xxxxxxxxxxx");
    assert_true(note_is(&res, "vcpu[0].pin", KS_VMM_DROPPED));
    assert_true(note_is(&res, "feature.sdbg", KS_VMM_APPLIED));

    /* Booted: a moved vCPU or a new feature set cannot be applied online. */
    fake_clear(f);
    ks_plan *p2 = mk_plan("fc-1", 4, 1, 2, 2);
    p2->generation = 2;
    hide(p2, "avx512f");
    ks_vmm_result_reset(&res);
    assert_int_equal(ks_vmm_apply(d, vm, p2, &res, &err), KS_OK);
    assert_true(note_is(&res, "features", KS_VMM_NEEDS_RESTART));
    expect_requests(f, NULL, 0);
    assert_int_equal(ks_vmm_destroy(d, vm, &err), KS_OK);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
    ks_plan_free(p2);
    ks_vmm_driver_free(d);
    fake_stop(f);
}

static void test_vmm_rest__fc_bad_vcpu_count_sends_nothing(void **state)
{
    fake *f = fake_start("firecracker", "fc-2", "firecracker-vcpu.schema.json");
    ks_vmm_driver *d = driver("firecracker", f->dir, NULL);
    ks_plan *p = mk_plan("fc-2", 3, 1, 3, 1);
    ks_vmm_vm *vm = NULL;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    ks_err err = {0};
    assert_int_equal(ks_vmm_create(&vm, d, p, &res, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "1 or an even number"));
    expect_requests(f, NULL, 0);

    /* Not booted (no kernel): a newer generation re-sends both configs. */
    ks_plan_free(p);
    p = mk_plan("fc-2", 2, 1, 2, 1);
    ks_vmm_result_reset(&res);
    assert_int_equal(ks_vmm_create(&vm, d, p, &res, &err), KS_OK);
    assert_true(note_is(&res, "boot", KS_VMM_DROPPED));
    p->generation = 2;
    hide(p, "avx2");
    ks_vmm_result_reset(&res);
    assert_int_equal(ks_vmm_apply(d, vm, p, &res, &err), KS_OK);
    const char *want[] = {"PUT /machine-config", "PUT /cpu-config", "PUT /machine-config",
                          "PUT /cpu-config"};
    expect_requests(f, want, 4);
    assert_true(note_is(&res, "feature.avx2", KS_VMM_APPLIED));
    assert_int_equal(ks_vmm_destroy(d, vm, &err), KS_OK);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
    ks_vmm_driver_free(d);
    fake_stop(f);
}

/* A fake firecracker binary (python3): serves the API on --api-sock and, on
 * InstanceStart, creates one thread per vCPU named "fc_vcpu N" like Firecracker. */
static const char FAKE_FC[] =
    "#!/usr/bin/python3\n"
    "import ctypes, json, os, socketserver, sys, threading, time\n"
    "from http.server import BaseHTTPRequestHandler\n"
    "libc = ctypes.CDLL(None)\n"
    "sock = sys.argv[sys.argv.index('--api-sock') + 1]\n"
    "st = {'vcpus': 1, 'running': False}\n"
    "def vcpu(i, ready):\n"
    "    libc.prctl(15, ('fc_vcpu %d' % i).encode(), 0, 0, 0)\n"
    "    ready.set()\n"
    "    while True:\n"
    "        time.sleep(3600)\n"
    "class H(BaseHTTPRequestHandler):\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "    def address_string(self):\n"
    "        return 'unix'\n"
    "    def reply(self, code, body=None):\n"
    "        data = json.dumps(body).encode() if body is not None else b''\n"
    "        self.send_response(code)\n"
    "        self.send_header('Content-Length', str(len(data)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(data)\n"
    "    def do_GET(self):\n"
    "        self.reply(200, {'id': 'fake', 'app_name': 'Firecracker', 'vmm_version': '1.17.0',\n"
    "                         'state': 'Running' if st['running'] else 'Not started'})\n"
    "    def do_PUT(self):\n"
    "        n = int(self.headers.get('Content-Length') or 0)\n"
    "        body = json.loads(self.rfile.read(n) or b'null')\n"
    "        if self.path == '/machine-config':\n"
    "            st['vcpus'] = body['vcpu_count']\n"
    "        if self.path == '/actions' and body['action_type'] == 'InstanceStart':\n"
    "            for i in range(st['vcpus']):\n"
    "                ready = threading.Event()\n"
    "                threading.Thread(target=vcpu, args=(i, ready), daemon=True).start()\n"
    "                ready.wait()\n"
    "            st['running'] = True\n"
    "        self.reply(204)\n"
    "class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):\n"
    "    daemon_threads = True\n"
    "S(sock, H).serve_forever()\n";

static void test_vmm_rest__fc_spawned_pins_vcpu_threads(void **state)
{
    char dir[256], bin[320];
    ks_test_mkdtemp(dir, sizeof(dir));
    ks_test_path(bin, sizeof(bin), "%s/firecracker", dir);
    FILE *f = fopen(bin, "w");
    assert_non_null(f);
    fputs(FAKE_FC, f);
    fclose(f);
    assert_int_equal(chmod(bin, 0755), 0);
    ks_vmm_options o = KS_VMM_OPTIONS_INIT;
    o.driver = "firecracker";
    o.state_dir = dir;
    o.vmm_binary = bin;
    o.kernel = "/boot/vmlinux";
    ks_vmm_driver *d = NULL;
    ks_err err = {0};
    assert_int_equal(ks_vmm_driver_new(&d, &o, &err), KS_OK);
    ks_plan *p = mk_plan("fc-4", 2, 1, 2, 1);
    p->vcpus[0].host_cpu = 1;
    p->vcpus[1].host_cpu = 0;
    ks_vmm_vm *vm = NULL;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    if (ks_vmm_create(&vm, d, p, &res, &err) != KS_OK)
        fail_msg("create: %s", err.msg);
    assert_true(note_is(&res, "start", KS_VMM_APPLIED));
    assert_true(note_is(&res, "vcpu[0].pin", KS_VMM_APPLIED));
    assert_true(note_is(&res, "vcpu[1].pin", KS_VMM_APPLIED));
    ks_vmm_state st;
    assert_int_equal(ks_vmm_query(&st, d, vm, &err), KS_OK);
    assert_true(st.running);
    pid_t pid = st.pid;
    assert_true(pid > 0);
    assert_true(st.vcpus[0].thread_id > 0);
    assert_string_equal(st.vcpus[0].affinity, "1");
    assert_string_equal(st.vcpus[1].affinity, "0");
    ks_vmm_state_destroy(&st);

    /* A newer generation swaps them: pinned online, same process. */
    p->generation = 2;
    p->vcpus[0].host_cpu = 0;
    p->vcpus[1].host_cpu = 1;
    ks_vmm_result_reset(&res);
    assert_int_equal(ks_vmm_apply(d, vm, p, &res, &err), KS_OK);
    assert_true(note_is(&res, "vcpu[0].pin", KS_VMM_APPLIED));
    assert_int_equal(ks_vmm_result_count(&res, KS_VMM_NEEDS_RESTART), 0);
    assert_int_equal(ks_vmm_query(&st, d, vm, &err), KS_OK);
    assert_int_equal(st.pid, pid);
    assert_string_equal(st.vcpus[0].affinity, "0");
    assert_string_equal(st.vcpus[1].affinity, "1");
    ks_vmm_state_destroy(&st);

    assert_int_equal(ks_vmm_destroy(d, vm, &err), KS_OK);
    assert_true(kill(pid, 0) != 0 && errno == ESRCH);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
    ks_vmm_driver_free(d);
    ks_test_rmdir(dir);
}

static void test_vmm_rest__schema_check_catches_typos(void **state)
{
    /* The fake's validation can fail: wrong key, wrong type, bad bitmap. */
    fake *f = fake_start("firecracker", "fc-3", "firecracker-vcpu.schema.json");
    json_t *ref = json_pack("{s:s}", "$ref", "#/definitions/MachineConfiguration");
    char why[300];
    json_t *bad = json_pack("{s:i, s:i}", "vcpu_cnt", 2, "mem_size_mib", 64);
    assert_false(check(f->schema, ref, bad, "mc", why, sizeof(why)));
    json_decref(bad);
    bad = json_pack("{s:i, s:i}", "vcpu_count", 64, "mem_size_mib", 64);
    assert_false(check(f->schema, ref, bad, "mc", why, sizeof(why)));
    assert_non_null(strstr(why, "out of range"));
    json_decref(bad);
    json_decref(ref);
    ref = json_pack("{s:s}", "$ref", "#/definitions/CpuidRegisterModifier");
    bad = json_pack("{s:s, s:s}", "register", "ebx", "bitmap", "0bxx0");
    assert_false(check(f->schema, ref, bad, "m", why, sizeof(why)));
    json_decref(bad);
    json_decref(ref);
    fake_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm_rest__ch_create_resize_destroy),
        cmocka_unit_test(test_vmm_rest__ch_create_error_reported),
        cmocka_unit_test(test_vmm_rest__fc_create_and_template),
        cmocka_unit_test(test_vmm_rest__fc_bad_vcpu_count_sends_nothing),
        cmocka_unit_test(test_vmm_rest__fc_spawned_pins_vcpu_threads),
        cmocka_unit_test(test_vmm_rest__schema_check_catches_typos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
