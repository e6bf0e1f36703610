/*
 * test_ks_vmm_server.c - the agent REST endpoint (ks_agent_server) with the
 * dry-run driver: authentication, the generation rules of PUT .../plan (create,
 * idempotent retry, conflict on same-generation-different-plan and on older
 * generations, online apply), GET/DELETE/list, errors and limits.
 */
#include "ks_test.h"

#include <curl/curl.h>

#include "ks_agent_server.h"
#include "ks_vm.h"

#define TOKEN "tok-123"

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

/* raw may be NULL (then body JSON or nothing). token NULL: no Authorization. */
static long http(uint16_t port, const char *token, const char *method, const char *path,
                 const json_t *body, const char *raw, json_t **out)
{
    char url[256], hdr[128], *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    buf b = {0};
    ks_test_path(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    if (token) {
        ks_test_path(hdr, sizeof(hdr), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, hdr);
    }
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (payload || raw)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload ? payload : raw);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (out)
        *out = b.len ? json_loads(b.s, 0, NULL) : NULL;
    free(b.s);
    free(payload);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static json_t *plan(const char *vm, uint64_t gen, int cpu0, int cpu1)
{
    ks_plan *p = NULL;
    assert_int_equal(ks_plan_new(&p, 2, NULL), KS_OK);
    snprintf(p->vm, sizeof(p->vm), "%s", vm);
    snprintf(p->host, sizeof(p->host), "h-1");
    p->generation = gen;
    p->memory_mib = 128;
    p->vcpus[0].host_cpu = cpu0;
    p->vcpus[1].host_cpu = cpu1;
    p->vcpus[1].core = 1;
    json_t *j = ks_plan_to_json(p);
    ks_plan_free(p);
    assert_non_null(j);
    return j;
}

static const char *err_code(const json_t *doc)
{
    return json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
}

typedef struct seen {
    int n;
    char names[4][KS_ID_MAX];
} seen;

static void on_vm(void *ctx, const ks_vmm_state *vm)
{
    seen *s = ctx;
    if (s->n < 4)
        snprintf(s->names[s->n++], KS_ID_MAX, "%s", vm->vm);
}

static void test_vmm_server__plan_lifecycle(void **state)
{
    ks_agent_server_options o = KS_AGENT_SERVER_OPTIONS_INIT;
    o.port = 0;
    o.token = TOKEN;
    o.vmm.driver = "dry-run";
    o.max_body_bytes = 64 * 1024;
    o.host_id = "h-1";
    ks_agent_server *srv = NULL;
    ks_err err = {0};
    assert_int_equal(ks_agent_server_start(&srv, &o, &err), KS_OK);
    uint16_t port = ks_agent_server_port(srv);
    assert_true(port > 0);
    json_t *resp = NULL;

    /* Health needs no token; everything else does. */
    assert_int_equal(http(port, NULL, "GET", "/healthz", NULL, NULL, NULL), 200);
    assert_int_equal(http(port, NULL, "GET", "/v1/vms", NULL, NULL, &resp), 401);
    assert_string_equal(err_code(resp), "unauthenticated");
    json_decref(resp);
    assert_int_equal(http(port, "tok-124", "GET", "/v1/vms", NULL, NULL, NULL), 401);
    assert_int_equal(http(port, "tok-12", "GET", "/v1/vms", NULL, NULL, NULL), 401);

    json_t *p3 = plan("web-1", 3, 4, 5);
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", p3, NULL, &resp), 201);
    assert_int_equal(json_integer_value(json_object_get(resp, "generation")), 3);
    assert_string_equal(json_string_value(json_object_get(resp, "driver")), "dry-run");
    json_t *v1 = json_array_get(json_object_get(resp, "vcpus"), 1);
    assert_int_equal(json_integer_value(json_object_get(v1, "host_cpu")), 5);
    assert_int_equal(json_array_size(json_object_get(json_object_get(resp, "result"), "applied")),
                     2);
    json_decref(resp);

    /* SPEC: same generation, same plan -> 200 without re-applying. */
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", p3, NULL, &resp), 200);
    assert_int_equal(json_integer_value(json_object_get(resp, "generation")), 3);
    json_decref(resp);
    /* Same generation, different plan -> 409; older generation -> 409. */
    json_t *p3b = plan("web-1", 3, 6, 5), *p2 = plan("web-1", 2, 4, 5);
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", p3b, NULL, &resp), 409);
    assert_string_equal(err_code(resp), "conflict");
    json_decref(resp);
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", p2, NULL, &resp), 409);
    assert_string_equal(json_string_value(json_object_get(json_object_get(resp, "error"),
                                                          "field")),
                        "generation");
    json_decref(resp);

    /* Newer generation -> applied (only the moved vCPU is reported). */
    json_t *p4 = plan("web-1", 4, 6, 5);
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", p4, NULL, &resp), 200);
    json_t *applied = json_object_get(json_object_get(resp, "result"), "applied");
    assert_int_equal(json_array_size(applied), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(applied, 0), "item")),
                        "vcpu[0].pin");
    json_decref(resp);

    /* Input errors: a plan for another host, another vm, not JSON, not a plan. */
    json_t *elsewhere = plan("web-1", 9, 6, 5);
    json_object_set_new(elsewhere, "host", json_string("h-2"));
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", elsewhere, NULL, &resp), 400);
    assert_string_equal(json_string_value(json_object_get(json_object_get(resp, "error"),
                                                          "field")),
                        "host");
    json_decref(resp);
    json_decref(elsewhere);
    json_t *other = plan("db-1", 1, 0, 1);
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", other, NULL, &resp), 400);
    assert_string_equal(json_string_value(json_object_get(json_object_get(resp, "error"),
                                                          "field")),
                        "vm");
    json_decref(resp);
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", NULL, "{not json", &resp),
                     400);
    assert_string_equal(err_code(resp), "invalid_argument");
    json_decref(resp);
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", NULL, "{\"vm\":\"web-1\"}",
                          NULL),
                     400);
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/bad%2Cname/plan", p4, NULL, NULL), 400);
    char *big = malloc(70 * 1024);
    assert_non_null(big);
    memset(big, ' ', 70 * 1024 - 1);
    big[70 * 1024 - 1] = '\0';
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", NULL, big, &resp), 413);
    assert_string_equal(err_code(resp), "too_large");
    json_decref(resp);
    free(big);
    assert_int_equal(http(port, TOKEN, "POST", "/v1/vms/web-1/plan", p4, NULL, NULL), 400);
    assert_int_equal(http(port, TOKEN, "GET", "/v1/nothing", NULL, NULL, NULL), 404);

    /* A second VM, the list and the running-VM report. */
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/db-1/plan", other, NULL, NULL), 201);
    assert_int_equal(http(port, TOKEN, "GET", "/v1/vms", NULL, NULL, &resp), 200);
    assert_int_equal(json_array_size(json_object_get(resp, "vms")), 2);
    json_decref(resp);
    seen s = {0};
    assert_int_equal(ks_agent_server_running_vms(srv, on_vm, &s), 2);
    assert_int_equal(s.n, 2);

    assert_int_equal(http(port, TOKEN, "GET", "/v1/vms/web-1", NULL, NULL, &resp), 200);
    assert_int_equal(json_integer_value(json_object_get(resp, "generation")), 4);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(resp, "vcpus"), 0),
                                          "affinity")),
        "6");
    assert_true(json_is_array(json_object_get(resp, "dropped")));
    assert_true(json_is_array(json_object_get(resp, "needs_restart")));
    json_decref(resp);
    assert_int_equal(http(port, TOKEN, "DELETE", "/v1/vms/web-1", NULL, NULL, NULL), 204);
    assert_int_equal(http(port, TOKEN, "GET", "/v1/vms/web-1", NULL, NULL, &resp), 404);
    assert_string_equal(err_code(resp), "not_found");
    json_decref(resp);
    assert_int_equal(http(port, TOKEN, "DELETE", "/v1/vms/web-1", NULL, NULL, NULL), 404);
    assert_int_equal(ks_agent_server_running_vms(srv, NULL, NULL), 1);
    /* After a DELETE the name can start over at any generation. */
    assert_int_equal(http(port, TOKEN, "PUT", "/v1/vms/web-1/plan", p2, NULL, NULL), 201);

    json_decref(p2);
    json_decref(p3);
    json_decref(p3b);
    json_decref(p4);
    json_decref(other);
    ks_agent_server_stop(srv);
}

static void test_vmm_server__options(void **state)
{
    ks_agent_server_options o = KS_AGENT_SERVER_OPTIONS_INIT;
    ks_agent_server *srv = NULL;
    ks_err err = {0};
    o.port = 0;
    o.vmm.driver = "dry-run";
    /* No token and no explicit opt-out: refused. */
    assert_int_equal(ks_agent_server_start(&srv, &o, &err), KS_EINVAL);
    assert_string_equal(err.field, "token");
    o.token = "x";
    o.listen_addr = "localhost-ish";
    assert_int_equal(ks_agent_server_start(&srv, &o, &err), KS_EINVAL);
    o.listen_addr = "127.0.0.1";
    o.vmm.driver = "bhyve";
    assert_int_equal(ks_agent_server_start(&srv, &o, &err), KS_EINVAL);
    assert_null(srv);
    o.vmm.driver = "dry-run";
    o.listen_addr = "::1";
    if (ks_agent_server_start(&srv, &o, &err) == KS_OK) { /* IPv6 loopback may be absent */
        assert_true(ks_agent_server_port(srv) > 0);
        ks_agent_server_stop(srv);
    }
    ks_agent_server_stop(NULL);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm_server__plan_lifecycle),
        cmocka_unit_test(test_vmm_server__options),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
