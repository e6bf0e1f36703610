/*
 * fuzz_api.c - the REST API of kintsugid in-process: router, auth, body and
 * query handling, every handler, the store and the scheduler behind them.
 *
 * Each input gets a fresh API over a fresh in-memory SQLite store (so a crash
 * reproduces from its input alone), holding three tokens: admin, reader and an
 * agent token for host "h-fuzz".  The store is a byte-for-byte clone of one
 * built at start-up (see "The pristine store" below), which saves creating
 * the schema per input.  The input is a sequence of at most MAX_REQUESTS
 * requests separated by a line "###":
 *
 *     METHOD URL
 *     Header-Name: value
 *     ...
 *     <empty line>
 *     body bytes
 *
 * In header values "$admin", "$reader" and "$agent" stand for the tokens; a
 * request without an Authorization header is sent as admin.  Properties, for
 * every response:
 *   - a status in 200..599 and never 500 (bad input must get a 4xx, and a
 *     valid request must not hit an internal error);
 *   - a NUL-terminated body of body_len bytes, and a request id;
 *   - a JSON content type means the body parses; an error status means the
 *     body is {"error":{"code","message","request_id"}} with the request id of
 *     the response and a code whose status is this one;
 *   - a 405 names the allowed methods;
 *   - after a successful PUT of a host report, GET of that host answers 200;
 *   - after the last request, the fleet is consistent (check_fleet()), and a
 *     new API over the same store (a kintsugid restart) starts and shows the
 *     same VMs, hosts, capacity, pools and bans (check_restart()).
 */
#include <ctype.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "ks_api.h"
#include "ks_api_int.h"
#include "ks_fuzz.h"
#include "ks_log.h"
#include "ks_store.h"
#include "ks_vm.h"

#define MAX_REQUESTS 8
#define MAX_HEADERS 16
#define FUZZ_HOST "h-fuzz"

static char tok_admin[48], tok_reader[48], tok_agent[48];
static uint8_t dig_admin[32], dig_reader[32], dig_agent[32];

static void build_image(void);
static void init_pristine_views(void);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* The access log would write a line per request. */
    ks_log_set_level(KS_LOG_ERROR);
    /* Fixed tokens: inputs stay reproducible across processes. */
    snprintf(tok_admin, sizeof(tok_admin), "ks_fuzzadmin0000000000000000000000000000000000");
    snprintf(tok_reader, sizeof(tok_reader), "ks_fuzzreader000000000000000000000000000000000");
    snprintf(tok_agent, sizeof(tok_agent), "ks_fuzzagent0000000000000000000000000000000000");
    KS_FUZZ_CHECK(ks_api_token_digest(dig_admin, tok_admin, NULL) == KS_OK &&
                      ks_api_token_digest(dig_reader, tok_reader, NULL) == KS_OK &&
                      ks_api_token_digest(dig_agent, tok_agent, NULL) == KS_OK,
                  "token digests");
    build_image();
    init_pristine_views();
    return 0;
}

/*
 * ---- The pristine store ----
 *
 * Creating the schema took a third of each input's time under ASan.  Instead,
 * LLVMFuzzerInitialize() builds the store once (schema and tokens, through
 * ks_store_open() and ks_store_token_add() as before), keeps its serialized
 * bytes, and each input's ks_store_open(":memory:") gets a private in-memory
 * copy of those bytes: an SQLite auto-extension runs inside sqlite3_open_v2()
 * of that open and sqlite3_deserialize()s the image into the new connection,
 * so ks_store_open() finds the schema at its version and only sets its
 * pragmas.  Every input thus starts from identical bytes, and a finding
 * reproduces from its input alone, as before.  The copy lives in SQLite's
 * memdb VFS, which like ":memory:" has a memory journal (ks_store_open()
 * accepts it) and gives the harness the store's current bytes cheaply
 * (store_unchanged()).
 */
static unsigned char *g_image; /* the pristine store's bytes (sqlite3_malloc) */
static sqlite3_int64 g_image_len;
static enum { HOOK_OFF, HOOK_CAPTURE, HOOK_CLONE } g_hook_mode;
static sqlite3 *g_hook_db; /* the connection the last hooked open made */
static int g_hook_rc;

/* SQLite's auto-extension entry point: runs at the end of every sqlite3_open*(). */
static int on_sqlite_open(sqlite3 *db, char **errmsg, const sqlite3_api_routines *thunk)
{
    (void)errmsg;
    (void)thunk;
    if (g_hook_mode == HOOK_OFF)
        return SQLITE_OK;
    g_hook_db = db;
    g_hook_rc = SQLITE_OK;
    if (g_hook_mode == HOOK_CLONE) {
        unsigned char *copy = sqlite3_malloc64((sqlite3_uint64)g_image_len);
        if (!copy) {
            g_hook_rc = SQLITE_NOMEM;
            return SQLITE_OK;
        }
        memcpy(copy, g_image, (size_t)g_image_len);
        /* FREEONCLOSE: the connection owns the copy, even on failure. */
        g_hook_rc = sqlite3_deserialize(db, "main", copy, g_image_len, g_image_len,
                                        SQLITE_DESERIALIZE_FREEONCLOSE |
                                            SQLITE_DESERIALIZE_RESIZEABLE);
    }
    return SQLITE_OK;
}

/* Opens an in-memory store; *db gets its SQLite connection. */
static ks_store *open_hooked(sqlite3 **db, int mode)
{
    ks_store *s = NULL;
    ks_err err = {0};
    g_hook_mode = mode;
    g_hook_db = NULL;
    ks_code rc = ks_store_open(&s, ":memory:", NULL, &err);
    g_hook_mode = HOOK_OFF;
    KS_FUZZ_CHECK(rc == KS_OK, "store: %s", err.msg);
    KS_FUZZ_CHECK(g_hook_db != NULL && g_hook_rc == SQLITE_OK,
                  "the store's connection was not hooked (%d)", g_hook_rc);
    *db = g_hook_db;
    return s;
}

/* The pristine store, built the slow way: schema, then the three tokens. */
static void build_image(void)
{
    /* The cast is SQLite's documented way to register an entry point. */
    KS_FUZZ_CHECK(sqlite3_auto_extension((void (*)(void))on_sqlite_open) == SQLITE_OK,
                  "sqlite3_auto_extension");
    sqlite3 *db = NULL;
    ks_store *s = open_hooked(&db, HOOK_CAPTURE);
    ks_err err = {0};
    KS_FUZZ_CHECK(ks_store_begin(s, &err) == KS_OK, "begin: %s", err.msg);
    KS_FUZZ_CHECK(
        ks_store_token_add(NULL, s, dig_admin, 32, "admin", NULL, NULL, 1, &err) == KS_OK &&
            ks_store_token_add(NULL, s, dig_reader, 32, "reader", NULL, NULL, 1, &err) == KS_OK &&
            ks_store_token_add(NULL, s, dig_agent, 32, "agent", FUZZ_HOST, NULL, 1, &err) == KS_OK,
        "tokens: %s", err.msg);
    KS_FUZZ_CHECK(ks_store_commit(s, &err) == KS_OK, "commit: %s", err.msg);
    g_image = sqlite3_serialize(db, "main", &g_image_len, 0);
    KS_FUZZ_CHECK(g_image != NULL && g_image_len > 0, "cannot serialize the pristine store");
    ks_store_close(s);
}

/* A fresh store for one input: a private copy of the pristine image. */
static ks_store *open_store(sqlite3 **db)
{
    return open_hooked(db, HOOK_CLONE);
}

/*
 * What a restart over the untouched store shows, and those store bytes
 * (g_ref): computed once, with the same steps as check_restart().
 */
static unsigned char *g_ref;
static sqlite3_int64 g_ref_len;

/* True when the store holds exactly the bytes g_ref. */
static bool store_unchanged(sqlite3 *db)
{
    sqlite3_int64 n = 0;
    /* NOCOPY: the memdb's own buffer; NULL (so "changed") if it is not one. */
    const unsigned char *p = sqlite3_serialize(db, "main", &n, SQLITE_SERIALIZE_NOCOPY);
    return p && n == g_ref_len && memcmp(p, g_ref, (size_t)n) == 0;
}

/* A header value with $admin/$reader/$agent replaced by the token. */
static void expand_value(char *out, size_t cap, const char *v)
{
    static const struct {
        const char *name;
        const char *token;
    } subs[] = {{"$admin", tok_admin}, {"$reader", tok_reader}, {"$agent", tok_agent}};
    size_t n = 0;
    while (*v && n + 1 < cap) {
        bool done = false;
        for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]) && !done; i++) {
            size_t l = strlen(subs[i].name);
            if (strncmp(v, subs[i].name, l) == 0) {
                size_t tl = strlen(subs[i].token);
                if (n + tl + 1 < cap) {
                    memcpy(out + n, subs[i].token, tl);
                    n += tl;
                }
                v += l;
                done = true;
            }
        }
        if (!done)
            out[n++] = *v++;
    }
    out[n] = '\0';
}

static void check_response(const ks_api_response *r, const char *method, const char *url)
{
    KS_FUZZ_CHECK(r->status >= 200 && r->status <= 599, "%s %s: status %d", method, url, r->status);
    KS_FUZZ_CHECK(r->status != 500, "%s %s: internal error: %.300s", method, url,
                  r->body ? r->body : "");
    KS_FUZZ_CHECK(r->request_id[0] != '\0', "%s %s: no request id", method, url);
    KS_FUZZ_CHECK(r->body != NULL || r->body_len == 0, "body_len without a body");
    if (r->body)
        KS_FUZZ_CHECK(r->body[r->body_len] == '\0', "%s %s: body not NUL-terminated", method, url);
    if (r->status == 405)
        KS_FUZZ_CHECK(r->allow[0] != '\0', "%s %s: 405 without Allow", method, url);
    bool is_json = strncmp(r->content_type, "application/json", 16) == 0;
    if (!is_json || r->body_len == 0) {
        KS_FUZZ_CHECK(r->status < 400 || r->status == 429 || is_json,
                      "%s %s: error %d without a JSON body", method, url, r->status);
        return;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(r->body, r->body_len, 0, &jerr);
    KS_FUZZ_CHECK(doc != NULL, "%s %s: response is not JSON (%s): %.200s", method, url, jerr.text,
                  r->body);
    if (r->status >= 400) {
        json_t *e = json_object_get(doc, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        const char *rid = json_string_value(json_object_get(e, "request_id"));
        KS_FUZZ_CHECK(code != NULL, "%s %s: error body without a code %.200s", method, url,
                      r->body);
        /* Finding api-error-utf8: a message quoting invalid UTF-8 is dropped. */
        KS_FUZZ_CHECK_KNOWN("api-error-utf8", msg && msg[0],
                            "%s %s: error body without a message %.200s", method, url, r->body);
        KS_FUZZ_CHECK(rid && strcmp(rid, r->request_id) == 0, "%s %s: request id mismatch", method,
                      url);
        ks_code c = ks_code_from_slug(code);
        if (c != KS_EINTERNAL)
            KS_FUZZ_CHECK(ks_api_status_of(c) == r->status, "%s %s: code '%s' with status %d",
                          method, url, code, r->status);
    }
    json_decref(doc);
}

/* Sends one request text (NUL-terminated, may hold a body after a blank line). */
static void run_one(ks_api *api, char *req, size_t len)
{
    char *end = req + len;
    char *line_end = memchr(req, '\n', len);
    if (!line_end)
        line_end = end;
    *line_end = '\0';
    char *sp = strchr(req, ' ');
    if (!sp)
        return;
    *sp = '\0';
    const char *method = req;
    const char *url = sp + 1;

    ks_api_kv headers[MAX_HEADERS + 1];
    static char values[MAX_HEADERS][1024];
    size_t n_headers = 0;
    bool has_auth = false;
    char *p = line_end < end ? line_end + 1 : end;
    const char *body = "";
    size_t body_len = 0;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        if (le == p || (le == p + 1 && *p == '\r')) { /* blank line: body follows */
            body = nl ? nl + 1 : end;
            body_len = (size_t)(end - body);
            break;
        }
        *le = '\0';
        char *colon = strchr(p, ':');
        if (colon && n_headers < MAX_HEADERS) {
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ')
                v++;
            size_t vl = strlen(v);
            if (vl && v[vl - 1] == '\r')
                v[vl - 1] = '\0';
            expand_value(values[n_headers], sizeof(values[n_headers]), v);
            if (strcasecmp(p, "Authorization") == 0)
                has_auth = true;
            headers[n_headers] = (ks_api_kv){p, values[n_headers]};
            n_headers++;
        }
        p = nl ? nl + 1 : end;
    }
    static char admin_auth[64];
    if (!has_auth) {
        snprintf(admin_auth, sizeof(admin_auth), "Bearer %s", tok_admin);
        headers[n_headers++] = (ks_api_kv){"Authorization", admin_auth};
    }

    ks_api_response resp;
    memset(&resp, 0, sizeof(resp));
    ks_api_handle(api, method, url, headers, n_headers, body, body_len, &resp);
    if (getenv("KS_FUZZ_VERBOSE")) /* to check what the seeds reach */
        fprintf(stderr, "%s %s -> %d %.160s\n", method, url, resp.status,
                resp.body ? resp.body : "");
    check_response(&resp, method, url);

    /* A stored report must be readable back. */
    char host[KS_ID_MAX];
    if (strcmp(method, "PUT") == 0 && resp.status >= 200 && resp.status < 300 &&
        sscanf(url, "/v1/hosts/%63[A-Za-z0-9._-]/report", host) == 1 &&
        strlen(url) == strlen("/v1/hosts//report") + strlen(host)) {
        ks_api_response g;
        memset(&g, 0, sizeof(g));
        char path[128];
        snprintf(path, sizeof(path), "/v1/hosts/%s", host);
        ks_api_kv auth = {"Authorization", admin_auth};
        snprintf(admin_auth, sizeof(admin_auth), "Bearer %s", tok_admin);
        ks_api_handle(api, "GET", path, &auth, 1, NULL, 0, &g);
        check_response(&g, "GET", path);
        KS_FUZZ_CHECK(g.status == 200, "stored host '%s' reads back as %d", host, g.status);
        ks_api_response_destroy(&g);
    }
    ks_api_response_destroy(&resp);
}

/* A plan document (borrowed JSON) as the agent would decode it; NULL when refused. */
static ks_plan *decode_plan(const json_t *doc, const char *vm)
{
    ks_plan *p = NULL;
    ks_err err = {0};
    ks_code rc = ks_plan_from_json(&p, doc, &err);
    KS_FUZZ_CHECK_KNOWN("api-plan-invalid", rc == KS_OK,
                        "vm '%s': the scheduler's plan is refused by the plan decoder: %s: %s", vm,
                        err.field, err.msg);
    return rc == KS_OK ? p : NULL;
}

/*
 * After the input's requests: every live VM's plan must decode (the agent
 * decodes it), belong to that VM and host, give it the vCPUs its request
 * asked for, show the guest its required features (unless banned) and hide
 * the forbidden ones, running VMs must not see a banned feature; and no host
 * CPU may be pinned by two running VMs.
 */
static void check_fleet(ks_api *api)
{
    char auth[64];
    snprintf(auth, sizeof(auth), "Bearer %s", tok_admin);
    ks_api_kv h = {"Authorization", auth};
    ks_api_response r;
    /* Fleet-wide bans hide a feature from every VM, even one that requires it. */
    ks_featset banned;
    ks_featset_clear(&banned);
    memset(&r, 0, sizeof(r));
    ks_api_handle(api, "GET", "/v1/policies/feature-bans", &h, 1, NULL, 0, &r);
    check_response(&r, "GET", "/v1/policies/feature-bans");
    KS_FUZZ_CHECK(r.status == 200, "listing bans answers %d", r.status);
    json_t *bans = json_loadb(r.body, r.body_len, 0, NULL);
    KS_FUZZ_CHECK(ks_featset_from_json(&banned, json_object_get(bans, "banned"), "banned", NULL) ==
                      KS_OK,
                  "bans list without a valid 'banned' array: %.200s", r.body);
    json_decref(bans);
    ks_api_response_destroy(&r);
    memset(&r, 0, sizeof(r));
    ks_api_handle(api, "GET", "/v1/vms?limit=1000", &h, 1, NULL, 0, &r);
    check_response(&r, "GET", "/v1/vms?limit=1000");
    KS_FUZZ_CHECK(r.status == 200, "listing vms answers %d", r.status);
    json_t *doc = json_loadb(r.body, r.body_len, 0, NULL);
    json_t *items = json_object_get(doc, "items");
    KS_FUZZ_CHECK(json_is_array(items), "vm list without items");
    /* (host index, host cpu) of running VMs; few VMs per input, so a flat list */
    enum { MAX_PINS = 4096 };
    static struct {
        char host[KS_ID_MAX];
        int32_t cpu;
        char vm[KS_ID_MAX];
    } pins[MAX_PINS];
    size_t n_pins = 0;
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *name = json_string_value(json_object_get(it, "name"));
        const char *host = json_string_value(json_object_get(it, "host"));
        const char *state = json_string_value(json_object_get(it, "state"));
        json_t *pj = json_object_get(it, "plan"), *rj = json_object_get(it, "request");
        KS_FUZZ_CHECK(name && host && state, "vm item without name/host/state");
        if (!json_is_object(pj))
            continue;
        ks_plan *p = decode_plan(pj, name);
        if (!p)
            continue;
        KS_FUZZ_CHECK(strcmp(p->vm, name) == 0 && strcmp(p->host, host) == 0,
                      "vm '%s' on '%s' has a plan for '%s' on '%s'", name, host, p->vm, p->host);
        ks_vm_request *vr = NULL;
        if (json_is_object(rj) && ks_vm_request_from_json(&vr, rj, NULL) == KS_OK) {
            KS_FUZZ_CHECK(ks_vm_request_vcpus(vr) == p->n_vcpus, "vm '%s' asked %u vcpus, got %u",
                          name, ks_vm_request_vcpus(vr), p->n_vcpus);
            ks_featset wanted;
            ks_featset_andnot(&wanted, &vr->required, &banned);
            KS_FUZZ_CHECK(ks_featset_subset(&wanted, &p->visible),
                          "vm '%s': a required, unbanned feature is not visible to the guest",
                          name);
            KS_FUZZ_CHECK(!ks_featset_intersects(&vr->forbidden, &p->visible),
                          "vm '%s': a forbidden feature is visible to the guest", name);
        }
        ks_vm_request_free(vr);
        if (strcmp(state, "running") == 0)
            KS_FUZZ_CHECK_KNOWN("api-ban-not-applied", !ks_featset_intersects(&banned, &p->visible),
                                "running vm '%s' still sees a banned feature", name);
        for (uint32_t v = 0; strcmp(state, "running") == 0 && v < p->n_vcpus; v++) {
            for (size_t k = 0; k < n_pins; k++)
                KS_FUZZ_CHECK_KNOWN("api-double-allocation",
                                    pins[k].cpu != p->vcpus[v].host_cpu ||
                                        strcmp(pins[k].host, host) != 0,
                                    "host '%s' cpu %d pinned by vm '%s' and vm '%s'", host,
                                    pins[k].cpu, pins[k].vm, name);
            if (n_pins < MAX_PINS) {
                snprintf(pins[n_pins].host, sizeof(pins[n_pins].host), "%s", host);
                snprintf(pins[n_pins].vm, sizeof(pins[n_pins].vm), "%s", name);
                pins[n_pins].cpu = p->vcpus[v].host_cpu;
                n_pins++;
            }
        }
        ks_plan_free(p);
    }
    if (getenv("KS_FUZZ_VERBOSE"))
        fprintf(stderr, "check_fleet: %zu vms, %zu pinned cpus\n", json_array_size(items), n_pins);
    json_decref(doc);
    ks_api_response_destroy(&r);
}

/* What a client can read of the fleet; must survive a restart unchanged. */
static const char *const k_views[] = {"/v1/vms?limit=1000", "/v1/hosts?limit=1000", "/v1/capacity",
                                      "/v1/pools", "/v1/policies/feature-bans"};
#define N_VIEWS (sizeof(k_views) / sizeof(k_views[0]))

static void read_views(ks_api *api, json_t *out[N_VIEWS])
{
    char auth[64];
    snprintf(auth, sizeof(auth), "Bearer %s", tok_admin);
    ks_api_kv h = {"Authorization", auth};
    for (size_t i = 0; i < N_VIEWS; i++) {
        ks_api_response r;
        memset(&r, 0, sizeof(r));
        ks_api_handle(api, "GET", k_views[i], &h, 1, NULL, 0, &r);
        check_response(&r, "GET", k_views[i]);
        KS_FUZZ_CHECK(r.status == 200, "GET %s answers %d", k_views[i], r.status);
        out[i] = json_loadb(r.body, r.body_len, 0, NULL);
        KS_FUZZ_CHECK(out[i] != NULL, "GET %s: no JSON", k_views[i]);
        /* "stranded" is measured against the shapes requested recently, which
         * live in memory only: a restart legitimately forgets them. */
        size_t j;
        json_t *it;
        json_array_foreach(json_object_get(out[i], "items"), j, it)
        {
            if (strncmp(k_views[i], "/v1/capacity", 12) == 0)
                json_object_del(it, "stranded");
        }
        ks_api_response_destroy(&r);
    }
}

/* GET views of a restart over the untouched store (init_pristine_views()). */
static json_t *g_pristine_views[N_VIEWS];

/*
 * A restart: kintsugid rebuilds its in-memory fleet from the store
 * (ks_api_new), so a new API over the same store must start and show exactly
 * what the old one showed.  Frees the old API.
 *
 * The new API is a function of the store's bytes alone.  When the input left
 * them exactly as a pristine input leaves them (most inputs change nothing:
 * they are refused, or only read), its views are those of the restart that
 * init_pristine_views() made over those very bytes, so the old API's views
 * are compared with those instead of building a third ks_api per input.  The
 * property checked is the same; an input that changed the store in any way
 * (even a row written and deleted again) gets the real restart.  Should the
 * comparison ever wrongly say "unchanged", the input's views would be compared
 * with an empty fleet's and fail loudly, not pass.
 */
static void check_restart(ks_api *api, ks_store *store, sqlite3 *db, const ks_api_options *o)
{
    json_t *before[N_VIEWS], *after[N_VIEWS];
    read_views(api, before);
    ks_api_free(api);
    ks_api *api2 = NULL;
    bool unchanged = store_unchanged(db);
    if (getenv("KS_FUZZ_VERBOSE"))
        fprintf(stderr, "check_restart: store %s\n", unchanged ? "unchanged" : "changed");
    if (unchanged) {
        for (size_t i = 0; i < N_VIEWS; i++)
            after[i] = json_incref(g_pristine_views[i]);
    } else {
        ks_err err = {0};
        KS_FUZZ_CHECK(ks_api_new(&api2, o, store, &err) == KS_OK,
                      "kintsugid cannot restart on the store it wrote: %s: %s", err.field, err.msg);
        read_views(api2, after);
    }
    for (size_t i = 0; i < N_VIEWS; i++) {
        if (!json_equal(before[i], after[i])) {
            char *a = json_dumps(before[i], JSON_COMPACT), *b = json_dumps(after[i], JSON_COMPACT);
            KS_FUZZ_CHECK_KNOWN("api-restart-differs", false,
                                "GET %s differs after a restart%s:\n before %.600s\n after  %.600s",
                                k_views[i], unchanged ? " (store unchanged)" : "", a ? a : "?",
                                b ? b : "?");
            free(a);
            free(b);
        }
        json_decref(before[i]);
        json_decref(after[i]);
    }
    ks_api_free(api2);
}

static ks_api_options api_options(void)
{
    ks_api_options o = KS_API_OPTIONS_INIT;
    o.max_body_bytes = 64 * 1024;
    o.lost_after_us = 0;
    o.snapshot_interval_us = 0;
    return o;
}

/*
 * The reference for check_restart(): an input without requests, i.e. an API
 * over a fresh clone, freed; the store's bytes then (g_ref); and the views of
 * a new API over them.
 */
static void init_pristine_views(void)
{
    sqlite3 *db = NULL;
    ks_store *store = open_store(&db);
    ks_api_options o = api_options();
    ks_api *api = NULL;
    ks_err err = {0};
    KS_FUZZ_CHECK(ks_api_new(&api, &o, store, &err) == KS_OK, "api: %s", err.msg);
    ks_api_free(api);
    api = NULL;
    g_ref = sqlite3_serialize(db, "main", &g_ref_len, 0);
    KS_FUZZ_CHECK(g_ref != NULL, "cannot serialize the store");
    /* Else every input would take the slow path without saying so. */
    KS_FUZZ_CHECK(store_unchanged(db), "the cloned store is not an SQLite memdb");
    KS_FUZZ_CHECK(ks_api_new(&api, &o, store, &err) == KS_OK,
                  "kintsugid cannot restart on a pristine store: %s", err.msg);
    read_views(api, g_pristine_views);
    ks_api_free(api);
    ks_store_close(store);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > KS_FUZZ_MAX_INPUT)
        return 0;
    /* A private, NUL-terminated copy that the splitter may write into. */
    char *text = malloc(size + 1);
    KS_FUZZ_CHECK(text != NULL, "out of memory");
    memcpy(text, data, size);
    text[size] = '\0';

    sqlite3 *db = NULL;
    ks_store *store = open_store(&db);
    ks_api_options o = api_options();
    ks_api *api = NULL;
    ks_err err = {0};
    KS_FUZZ_CHECK(ks_api_new(&api, &o, store, &err) == KS_OK, "api: %s", err.msg);

    char *p = text, *end = text + size;
    for (int n = 0; p < end && n < MAX_REQUESTS; n++) {
        char *sep = NULL;
        for (char *s = p; s + 4 <= end; s++) {
            if ((s == p || s[-1] == '\n') && memcmp(s, "###", 3) == 0 &&
                (s + 3 == end || s[3] == '\n')) {
                sep = s;
                break;
            }
        }
        char *req_end = sep ? sep : end;
        /* The request text must be NUL-terminated for the header parser. */
        size_t rl = (size_t)(req_end - p);
        char *one = malloc(rl + 1);
        KS_FUZZ_CHECK(one != NULL, "out of memory");
        memcpy(one, p, rl);
        one[rl] = '\0';
        run_one(api, one, rl);
        free(one);
        p = sep ? sep + 4 : end;
    }

    check_fleet(api);
    check_restart(api, store, db, &o);
    ks_store_close(store);
    free(text);
    return 0;
}
