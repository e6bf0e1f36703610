/*
 * test_crash.c - crash safety of kintsugid: SIGKILL under load, restart, check.
 *
 * A real kintsugid (temporary SQLite store, default synchronous=NORMAL) gets a
 * fleet of synthetic hosts, then worker threads drive concurrent VM placements
 * and deletions while the main thread kills the daemon with SIGKILL at random
 * moments (fixed seed) and restarts it.  Every request's outcome is recorded:
 *   - 2xx on create  = acknowledged placement: must exist after every later restart
 *                      unless a deletion of it was acknowledged;
 *   - 409 on create  = refused: must never exist;
 *   - 2xx on delete  = acknowledged deletion: must never reappear;
 *   - no answer / 5xx = unknown: either outcome is allowed.
 * After each kill (daemon dead, store as the crash left it): PRAGMA integrity_check
 * and "no CPU allocated twice" on a read-only handle.  After each restart, before
 * the workers see the new port: the rebuilt index equals the store (per host,
 * every CPU the API shows allocated is the store's vm_vcpus row, and the counts
 * match, so nothing allocated in the store is free in the index).  At the end:
 * every name's presence in the API and the store against its recorded outcome.
 *
 * SPEC: db/ks_store.h (WAL + synchronous=NORMAL survives a process crash),
 *       docs/api.md#vm-create (no CPU is ever allocated twice, even across crashes),
 *       docs/reliability.md#crash-safety (the figures printed at the end).
 * Bounded: the run stops after KILLS kills or RUN_BUDGET_MS, whichever first.
 */
#include "integration/test_api_harness.h"

#include <pthread.h>
#include <stdatomic.h>

#include "ks_store.h"

enum {
    N_HOSTS = 16,
    N_P = 24,
    N_E = 8,
    N_WORKERS = 8,
    KILLS = 25,
    MIN_OPS = 1400, /* placements + deletions answered, at least */
    KILLS_FULL = 8, /* the synchronous=FULL run is shorter */
    MIN_OPS_FULL = 400,
    MAX_NAMES = 20000,      /* every create uses a fresh name */
    RUN_BUDGET_MS = 120000, /* the kill loop never runs longer */
};

typedef enum vm_state {
    VM_CREATING, /* request in flight */
    VM_ACKED,    /* 201 received */
    VM_REFUSED,  /* 4xx received: not placed */
    VM_CREATE_UNKNOWN,
    VM_DELETING,
    VM_DELETED, /* 2xx on DELETE received */
    VM_DELETE_UNKNOWN,
} vm_state;

typedef struct vm_rec {
    char name[24];
    vm_state state;
} vm_rec;

static struct {
    kd d;
    pthread_mutex_t mu;
    vm_rec *vms;
    size_t n_vms;
    atomic_uint port; /* 0 while the daemon is down or being checked */
    atomic_bool stop;
    atomic_ulong answered, acked_creates, acked_deletes, refused, transport_errors, server_errors,
        unexpected;
    char token[128];
} G;

static uint64_t rng_state = UINT64_C(0x5eedc0ffee);

/* xorshift64*: the kill schedule is reproducible from the fixed seed. */
static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

/* ---- worker side (no cmocka asserts off the main thread) ---- */

typedef struct sink {
    char buf[512];
    size_t len;
} sink;

static size_t sink_cb(char *p, size_t sz, size_t n, void *ud)
{
    sink *s = ud;
    size_t add = sz * n, room = sizeof(s->buf) - 1 - s->len;
    memcpy(s->buf + s->len, p, add < room ? add : room);
    s->len += add < room ? add : room;
    s->buf[s->len] = '\0';
    return sz * n;
}

/* One request on the worker's reusable handle; 0 = no answer (daemon down). */
static long worker_req(CURL *c, unsigned port, const char *method, const char *path,
                       const char *body, sink *out)
{
    char url[256], auth[200];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", G.token);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    out->len = 0;
    out->buf[0] = '\0';
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 2L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    return status;
}

/* Picks a random acknowledged VM and marks it VM_DELETING; SIZE_MAX if none. */
static size_t pick_victim(uint64_t *seed)
{
    size_t found = SIZE_MAX;
    pthread_mutex_lock(&G.mu);
    if (G.n_vms) {
        size_t start = (size_t)(*seed % G.n_vms);
        for (size_t k = 0; k < G.n_vms; k++) {
            size_t i = (start + k) % G.n_vms;
            if (G.vms[i].state == VM_ACKED) {
                G.vms[i].state = VM_DELETING;
                found = i;
                break;
            }
        }
    }
    pthread_mutex_unlock(&G.mu);
    return found;
}

static size_t new_name(void)
{
    size_t i = SIZE_MAX;
    pthread_mutex_lock(&G.mu);
    if (G.n_vms < MAX_NAMES) {
        i = G.n_vms++;
        snprintf(G.vms[i].name, sizeof(G.vms[i].name), "vm-%05zu", i);
        G.vms[i].state = VM_CREATING;
    }
    pthread_mutex_unlock(&G.mu);
    return i;
}

static void set_state(size_t i, vm_state s)
{
    pthread_mutex_lock(&G.mu);
    G.vms[i].state = s;
    pthread_mutex_unlock(&G.mu);
}

static void *worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * UINT64_C(0x9E3779B97F4A7C15) + 1;
    CURL *c = curl_easy_init();
    sink out;
    bool full = false;
    while (c && !atomic_load(&G.stop)) {
        unsigned port = atomic_load(&G.port);
        if (!port) {
            kd_nap_ms(5);
            continue;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        /* A full fleet only deletes until a deletion frees room. */
        bool do_delete = full || (seed % 10) < 3;
        size_t i = do_delete ? pick_victim(&seed) : SIZE_MAX;
        if (i != SIZE_MAX) {
            char path[64];
            snprintf(path, sizeof(path), "/v1/vms/%s", G.vms[i].name);
            long s = worker_req(c, port, "DELETE", path, NULL, &out);
            if (s >= 200 && s < 300) {
                set_state(i, VM_DELETED);
                atomic_fetch_add(&G.acked_deletes, 1);
                full = false;
            } else if (s == 0 || s >= 500) {
                set_state(i, VM_DELETE_UNKNOWN);
                atomic_fetch_add(s ? &G.server_errors : &G.transport_errors, 1);
            } else {
                /* An acknowledged VM that the server does not know (404) is lost. */
                fprintf(stderr, "DELETE %s -> %ld %s\n", G.vms[i].name, s, out.buf);
                set_state(i, VM_ACKED);
                atomic_fetch_add(&G.unexpected, 1);
            }
            if (s)
                atomic_fetch_add(&G.answered, 1);
            continue;
        }
        i = new_name();
        if (i == SIZE_MAX)
            break;
        char body[256];
        snprintf(body, sizeof(body), "{\"name\":\"%s\",\"vcpus\":%u,\"memory_mib\":256}",
                 G.vms[i].name, (unsigned)(1 + seed % 4));
        long s = worker_req(c, port, "POST", "/v1/vms", body, &out);
        if (s == 201 || s == 200) {
            set_state(i, VM_ACKED);
            atomic_fetch_add(&G.acked_creates, 1);
        } else if (s == 409) {
            set_state(i, VM_REFUSED);
            atomic_fetch_add(&G.refused, 1);
            full = strstr(out.buf, "no_capacity") != NULL;
        } else if (s == 0 || s >= 500) {
            set_state(i, VM_CREATE_UNKNOWN);
            atomic_fetch_add(s ? &G.server_errors : &G.transport_errors, 1);
        } else {
            fprintf(stderr, "POST %s -> %ld %s\n", G.vms[i].name, s, out.buf);
            set_state(i, VM_REFUSED);
            atomic_fetch_add(&G.unexpected, 1);
        }
        if (s)
            atomic_fetch_add(&G.answered, 1);
    }
    curl_easy_cleanup(c);
    return NULL;
}

/* ---- checks (main thread) ---- */

static int64_t q_int(ks_store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int64_t q_int(ks_store *st, const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(sql));
    int64_t v = -1;
    ks_err e;
    ks_code rc = ks_store_query_int(&v, st, sql, &e);
    if (rc != KS_OK)
        fail_msg("query '%s': %s", sql, e.msg);
    return v;
}

/* The store as the crash left it: intact, and no CPU allocated twice. */
static void check_store_after_kill(void)
{
    ks_store *st = NULL;
    ks_err e;
    if (ks_store_open_readonly(&st, G.d.db, &e) != KS_OK)
        fail_msg("open read-only after kill: %s", e.msg);
    if (ks_store_integrity_check(st, &e) != KS_OK)
        fail_msg("integrity_check after kill: %s", e.msg);
    assert_int_equal(q_int(st, "SELECT count(*) FROM (SELECT host_id, cpu_id, count(*) "
                               "FROM vm_vcpus GROUP BY 1, 2 HAVING count(*) > 1)"),
                     0);
    /* Each VM's vCPU rows are all there or none (one transaction). */
    assert_int_equal(q_int(st, "SELECT count(*) FROM vms v WHERE v.n_vcpus != "
                               "(SELECT count(*) FROM vm_vcpus x WHERE x.vm_name = v.name)"),
                     0);
    ks_store_close(st);
}

/* Rebuilt index == store: per host, the API's allocated CPUs are the store's rows. */
static void check_index_equals_store(const kd *d)
{
    ks_store *st = NULL;
    ks_err e;
    if (ks_store_open_readonly(&st, d->db, &e) != KS_OK)
        fail_msg("open read-only: %s", e.msg);
    int64_t api_total = 0;
    for (int h = 0; h < N_HOSTS; h++) {
        char path[64], host[16];
        snprintf(host, sizeof(host), "crash-%02d", h);
        snprintf(path, sizeof(path), "/v1/hosts/%s/cpus", host);
        resp r;
        assert_int_equal(kd_http(d, &r, "GET", path, d->admin, NULL), 200);
        json_t *items = json_object_get(r.json, "items");
        assert_int_equal(json_array_size(items), N_P + N_E);
        int64_t allocated = 0;
        size_t k;
        json_t *cpu;
        json_array_foreach(items, k, cpu)
        {
            const char *vm = json_string_value(json_object_get(cpu, "vm"));
            if (!vm)
                continue;
            allocated++;
            int64_t id = json_integer_value(json_object_get(cpu, "id"));
            int64_t in_db = q_int(st,
                                  "SELECT count(*) FROM vm_vcpus WHERE host_id = '%s' AND "
                                  "cpu_id = %lld AND vm_name = '%s'",
                                  host, (long long)id, vm);
            if (in_db != 1)
                fail_msg("index has %s cpu %lld -> %s, the store does not", host, (long long)id,
                         vm);
        }
        int64_t db_alloc = q_int(st, "SELECT count(*) FROM vm_vcpus WHERE host_id = '%s'", host);
        if (db_alloc != allocated)
            fail_msg("host %s: index %lld allocated CPUs, store %lld", host, (long long)allocated,
                     (long long)db_alloc);
        api_total += allocated;
        resp_free(&r);
    }
    resp r;
    assert_int_equal(kd_http(d, &r, "GET", "/v1/capacity", d->admin, NULL), 200);
    json_t *items = json_object_get(r.json, "items");
    int64_t cap_alloc = -1;
    if (json_array_size(items) > 0)
        cap_alloc = json_integer_value(json_object_get(json_array_get(items, 0), "allocated"));
    assert_int_equal(cap_alloc, api_total);
    assert_int_equal(q_int(st, "SELECT count(*) FROM vm_vcpus"), api_total);
    resp_free(&r);
    ks_store_close(st);
}

/* Every name against its recorded outcome, through the API and in the store. */
static void check_outcomes(const kd *d, size_t *present_out)
{
    ks_store *st = NULL;
    ks_err e;
    if (ks_store_open_readonly(&st, d->db, &e) != KS_OK)
        fail_msg("open read-only: %s", e.msg);
    size_t present = 0;
    for (size_t i = 0; i < G.n_vms; i++) {
        const vm_rec *v = &G.vms[i];
        char path[64];
        snprintf(path, sizeof(path), "/v1/vms/%s", v->name);
        resp r;
        long s = kd_http(d, &r, "GET", path, d->admin, NULL);
        resp_free(&r);
        int64_t in_db = q_int(st, "SELECT count(*) FROM vms WHERE name = '%s'", v->name);
        assert_true(s == 200 || s == 404);
        if ((s == 200) != (in_db == 1))
            fail_msg("%s: API says %ld, store has %lld rows", v->name, s, (long long)in_db);
        switch (v->state) {
        case VM_ACKED:
            if (s != 200)
                fail_msg("acknowledged placement %s lost (GET %ld)", v->name, s);
            break;
        case VM_REFUSED:
        case VM_DELETED:
            if (s != 404)
                fail_msg("%s (%s) exists after restart", v->name,
                         v->state == VM_DELETED ? "acknowledged deletion" : "refused create");
            break;
        case VM_CREATE_UNKNOWN:
        case VM_DELETE_UNKNOWN:
            break;
        case VM_CREATING:
        case VM_DELETING:
            fail_msg("%s left in flight", v->name);
        }
        present += s == 200;
    }
    assert_int_equal(q_int(st, "SELECT count(*) FROM vms"), (int64_t)present);
    ks_store_close(st);
    *present_out = present;
}

/* ---- the run ---- */

static void kill9_and_reap(kd *d)
{
    assert_int_equal(kill(d->pid, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(d->pid, &st, 0), d->pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    d->pid = 0;
}

/* One run: `kills` SIGKILLs and at least `min_ops` answered requests (bounded by
 * RUN_BUDGET_MS), daemon started with `args` (NULL-terminated, may be NULL). */
static void crash_run(const char *label, const char *const *args, int kills_want,
                      unsigned long min_ops)
{
    memset(&G, 0, sizeof(G));
    pthread_mutex_init(&G.mu, NULL);
    G.vms = calloc(MAX_NAMES, sizeof(*G.vms));
    assert_non_null(G.vms);
    kd *d = &G.d;
    kd_setup(d, args);
    snprintf(G.token, sizeof(G.token), "%s", d->admin);
    for (int h = 0; h < N_HOSTS; h++) {
        char host[16];
        snprintf(host, sizeof(host), "crash-%02d", h);
        long s = kd_put_report(d, d->admin, host, N_P, N_E, 1, "boot-crash", -1, NULL, NULL);
        assert_int_equal(s, 201);
    }

    pthread_t th[N_WORKERS];
    for (uintptr_t t = 0; t < N_WORKERS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, worker, (void *)(t + 1)), 0);

    uint64_t t0 = kd_mono_ms(), down_ms = 0;
    int kills = 0;
    atomic_store(&G.port, d->port);
    while (kills < kills_want || atomic_load(&G.answered) < min_ops) {
        if (kd_mono_ms() - t0 > RUN_BUDGET_MS)
            break;
        /* Let this incarnation answer some requests, then a random extra delay,
         * so kills land in every phase of a request (parse, txn, commit, reply). */
        unsigned long base = atomic_load(&G.answered);
        uint64_t wait_until = kd_mono_ms() + 5000;
        while (atomic_load(&G.answered) < base + 10 && kd_mono_ms() < wait_until)
            kd_nap_ms(2);
        kd_nap_ms((unsigned)(rng_next() % 250));
        atomic_store(&G.port, 0); /* requests in flight still see the kill */
        kill9_and_reap(d);
        kills++;
        uint64_t t_down = kd_mono_ms();
        check_store_after_kill();
        kd_spawn(d, args);
        check_index_equals_store(d);
        down_ms += kd_mono_ms() - t_down;
        atomic_store(&G.port, d->port);
    }
    atomic_store(&G.stop, true);
    for (int t = 0; t < N_WORKERS; t++)
        pthread_join(th[t], NULL);
    uint64_t run_ms = kd_mono_ms() - t0;

    /* One last kill with the workers quiet, then the full check. */
    kill9_and_reap(d);
    kills++;
    check_store_after_kill();
    kd_spawn(d, args);
    check_index_equals_store(d);
    size_t present = 0;
    check_outcomes(d, &present);

    fprintf(stderr,
            "crash[%s]: kills=%d run_ms=%llu restart_and_check_ms_total=%llu names=%zu "
            "answered=%lu acked_creates=%lu acked_deletes=%lu refused=%lu "
            "no_answer=%lu server_5xx=%lu unexpected=%lu vms_present=%zu "
            "answered_per_s_up=%.0f\n",
            label, kills, (unsigned long long)run_ms, (unsigned long long)down_ms, G.n_vms,
            atomic_load(&G.answered), atomic_load(&G.acked_creates), atomic_load(&G.acked_deletes),
            atomic_load(&G.refused), atomic_load(&G.transport_errors),
            atomic_load(&G.server_errors), atomic_load(&G.unexpected), present,
            run_ms > down_ms
                ? 1000.0 * (double)atomic_load(&G.answered) / (double)(run_ms - down_ms)
                : 0.0);
    assert_true(kills >= kills_want);
    assert_true(atomic_load(&G.acked_creates) + atomic_load(&G.acked_deletes) >= min_ops * 3 / 4);
    assert_int_equal(atomic_load(&G.unexpected), 0);
    assert_int_equal(atomic_load(&G.server_errors), 0);

    kd_teardown(d, true);
    free(G.vms);
    pthread_mutex_destroy(&G.mu);
}

/* The default: WAL + synchronous=NORMAL (db/ks_store.h). */
static void test_crash__kill9_under_load(void **state)
{
    (void)state;
    crash_run("normal", NULL, KILLS, MIN_OPS);
}

/* --db-sync-full: the same guarantees, and the cost of an fsync per commit. */
static void test_crash__kill9_sync_full(void **state)
{
    (void)state;
    static const char *const args[] = {"--db-sync-full", NULL};
    crash_run("full", args, KILLS_FULL, MIN_OPS_FULL);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash__kill9_under_load),
        cmocka_unit_test(test_crash__kill9_sync_full),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
