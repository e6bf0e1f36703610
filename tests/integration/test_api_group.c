/*
 * test_api_group.c - group commit of VM creates and deletes (api/ks_api_group.c),
 * in process through ks_api_handle() over a file store with background
 * checkpoints, as kintsugid runs it.
 *
 *  - concurrent creates and deletes, with names that collide on purpose (a
 *    unit failing inside a group must be undone alone): every answer is the
 *    one a serial run could give, groups of more than one unit formed, and a
 *    restarted API (index rebuilt from the store) shows the same fleet;
 *  - a commit that fails (fault injected with ks_store_set_commit_veto)
 *    fails every unit of its group and withdraws their CPU reservations;
 *  - the CPUs of a deletion stay taken until it committed: a create of the
 *    same name in the same group is refused, not double-booked.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ks_api_int.h"
#include "ks_fleetsim.h"
#include "ks_store.h"
#include "ks_test.h"

#define N_HOSTS 6
#define N_THREADS 12
#define OPS_PER_THREAD 60
#define N_NAMES 40 /* < N_THREADS * OPS_PER_THREAD: names collide */

typedef struct group_fixture {
    char dir[512];
    char db[600];
    ks_store *store;
    ks_api *api;
    ks_fleetsim *sim;
} group_fixture;

static const ks_api_options *api_options(void)
{
    static ks_api_options o = KS_API_OPTIONS_INIT;
    o.insecure_no_auth = true;
    o.lost_after_us = 0;
    o.snapshot_interval_us = 0;
    o.no_plan_push = true;
    return &o;
}

static int setup(void **state)
{
    group_fixture *f = calloc(1, sizeof(*f));
    ks_err err = {0};
    assert_non_null(f);
    ks_test_mkdtemp(f->dir, sizeof(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/ks.db", f->dir);
    ks_fleetsim_options so = KS_FLEETSIM_OPTIONS_INIT;
    so.fixtures_dir = ks_test_fixtures_dir();
    so.n_hosts = N_HOSTS;
    so.seed = 3;
    so.tmp_dir = f->dir;
    assert_int_equal(ks_fleetsim_new(&f->sim, &so, &err), KS_OK);
    ks_store_options sto = KS_STORE_OPTIONS_INIT;
    sto.background_checkpoint = true;
    assert_int_equal(ks_store_open(&f->store, f->db, &sto, &err), KS_OK);
    assert_int_equal(ks_fleetsim_load_store(f->sim, f->store, KS_FLEETSIM_KINTSUGI, 16, true, &err),
                     KS_OK);
    assert_int_equal(ks_api_new(&f->api, api_options(), f->store, &err), KS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    group_fixture *f = *state;
    ks_api_free(f->api);
    ks_store_close(f->store);
    ks_fleetsim_free(f->sim);
    ks_test_rmdir(f->dir);
    free(f);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int call(ks_api *api, const char *method, const char *url, const char *body,
                char **out_body)
{
    ks_api_response r;
    memset(&r, 0, sizeof(r));
    ks_api_kv ct = {"Content-Type", "application/json"};
    ks_api_handle(api, method, url, &ct, 1, body, body ? strlen(body) : 0, &r);
    int status = r.status;
    if (out_body) {
        *out_body = r.body;
        r.body = NULL;
    }
    ks_api_response_destroy(&r);
    return status;
}

static void vm_body(char *out, size_t cap, const char *name, unsigned vcpus)
{
    snprintf(out, cap, "{\"name\":\"%s\",\"vcpus\":{\"any\":%u}}", name, vcpus);
}

typedef struct worker {
    ks_api *api;
    unsigned seed;
    unsigned created, deleted, refused;
    char bad[256]; /* first unexpected answer */
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < OPS_PER_THREAD; i++) {
        char name[32], url[64], body[128];
        snprintf(name, sizeof(name), "g-%u", (unsigned)(rand_r(&w->seed) % N_NAMES));
        int st;
        if (rand_r(&w->seed) % 3 == 0) {
            snprintf(url, sizeof(url), "/v1/vms/%s", name);
            st = call(w->api, "DELETE", url, NULL, NULL);
            if (st == 204)
                w->deleted++;
            else if (st != 404 && !w->bad[0])
                snprintf(w->bad, sizeof(w->bad), "DELETE %s -> %d", name, st);
        } else {
            vm_body(body, sizeof(body), name, 1 + (unsigned)(rand_r(&w->seed) % 4));
            st = call(w->api, "POST", "/v1/vms", body, NULL);
            if (st == 201)
                w->created++;
            else if (st == 409)
                w->refused++;
            else if (!w->bad[0])
                snprintf(w->bad, sizeof(w->bad), "POST %s -> %d", name, st);
        }
    }
    return NULL;
}

/* What a client reads of the fleet; must survive a restart. */
static char *views(ks_api *api)
{
    static const char *const urls[] = {"/v1/vms?limit=1000", "/v1/capacity"};
    json_t *all = json_array();
    for (size_t i = 0; i < 2; i++) {
        char *body = NULL;
        assert_int_equal(call(api, "GET", urls[i], NULL, &body), 200);
        json_t *doc = json_loads(body, 0, NULL);
        assert_non_null(doc);
        /* "stranded" is measured against recently requested shapes, kept in
         * memory only: a restart forgets them. */
        size_t j;
        json_t *it;
        json_array_foreach(json_object_get(doc, "items"), j, it) json_object_del(it, "stranded");
        json_array_append_new(all, doc);
        free(body);
    }
    char *text = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(all);
    return text;
}

static void restart(group_fixture *f)
{
    ks_err err = {0};
    ks_api_free(f->api);
    f->api = NULL;
    assert_int_equal(ks_api_new(&f->api, api_options(), f->store, &err), KS_OK);
}

/* A restarted API (index rebuilt from the store) shows what this one shows. */
static void assert_restart_shows_the_same(group_fixture *f)
{
    char *before = views(f->api);
    restart(f);
    char *after = views(f->api);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_group__concurrent_units(void **state)
{
    group_fixture *f = *state;
    pthread_t th[N_THREADS];
    worker w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (worker){.api = f->api, .seed = 100u + (unsigned)i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    unsigned created = 0, deleted = 0, refused = 0;
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N_THREADS; i++) {
        if (w[i].bad[0])
            fail_msg("thread %d: unexpected answer %s", i, w[i].bad);
        created += w[i].created;
        deleted += w[i].deleted;
        refused += w[i].refused;
    }
    /* Names collided (409s), and every create is either deleted or live. */
    assert_true(refused > 0);
    assert_true(deleted > 0);
    int64_t live = 0;
    ks_err err = {0};
    assert_int_equal(ks_store_query_int(&live, f->store, "SELECT count(*) FROM vms", &err), KS_OK);
    assert_int_equal(live, (int64_t)created - (int64_t)deleted);
    pthread_mutex_lock(&f->api->lock);
    uint64_t groups = f->api->groups_committed, units = f->api->group_units_committed;
    pthread_mutex_unlock(&f->api->lock);
    print_message("%u creates, %u deletes, %u refused: %llu units in %llu commits\n", created,
                  deleted, refused, (unsigned long long)units, (unsigned long long)groups);
    assert_int_equal(units, created + deleted);
    assert_true(groups < units); /* some units shared a commit */
    /* The same counters on /metrics. */
    char *metrics = NULL, want[128];
    assert_int_equal(call(f->api, "GET", "/metrics", NULL, &metrics), 200);
    snprintf(want, sizeof(want), "\nks_commit_groups_total %llu\n", (unsigned long long)groups);
    assert_non_null(strstr(metrics, want));
    snprintf(want, sizeof(want), "\nks_commit_group_units_total %llu\n", (unsigned long long)units);
    assert_non_null(strstr(metrics, want));
    free(metrics);

    int64_t twice = -1;
    assert_int_equal(ks_store_query_int(&twice, f->store,
                                        "SELECT count(*) FROM (SELECT host_id, cpu_id FROM "
                                        "vm_vcpus GROUP BY 1, 2 HAVING count(*) > 1)",
                                        &err),
                     KS_OK);
    assert_int_equal(twice, 0);
    assert_restart_shows_the_same(f);
}

typedef struct veto_state {
    bool on;
} veto_state;

static bool veto(void *ctx)
{
    return ((veto_state *)ctx)->on;
}

typedef struct one_call {
    ks_api *api;
    const char *method;
    char url[64];
    char body[128];
    atomic_int status; /* 0 until answered */
} one_call;

static void *one_call_main(void *arg)
{
    one_call *c = arg;
    atomic_store(&c->status, call(c->api, c->method, c->url, c->body[0] ? c->body : NULL, NULL));
    return NULL;
}

static size_t answered(one_call *c, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += atomic_load(&c[i].status) != 0;
    return k;
}

/* Waits (bounded, 10 s) until `want` units wait in the open group, counting
 * the calls of c[0..n) already answered as units too. */
static void wait_units(group_fixture *f, one_call *c, size_t n, size_t want)
{
    for (int tries = 0; tries < 5000; tries++) {
        pthread_mutex_lock(&f->api->lock);
        size_t in = f->api->group_units;
        pthread_mutex_unlock(&f->api->lock);
        if (in + answered(c, n) >= want)
            return;
        sleep_ms(2);
    }
}

/* Waits (bounded) until `want` units are in the open group and every other
 * call of c[from..n) was answered, then lets the group commit: this thread
 * is the announced writer that held it open. */
static void release_group_when(group_fixture *f, one_call *c, size_t n, size_t want)
{
    wait_units(f, c, n, want);
    pthread_mutex_lock(&f->api->lock);
    ks_api__unit_withdraw(f->api);
    pthread_mutex_unlock(&f->api->lock);
}

/* Runs n calls that all meet in one group. */
static void run_in_one_group(group_fixture *f, one_call *c, size_t n)
{
    pthread_t th[8];
    assert_true(n <= 8);
    ks_api__unit_announce(f->api);
    for (size_t i = 0; i < n; i++) {
        c[i].api = f->api;
        assert_int_equal(pthread_create(&th[i], NULL, one_call_main, &c[i]), 0);
    }
    release_group_when(f, c, n, n);
    for (size_t i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

static void test_group__failed_commit_withdraws_reservations(void **state)
{
    group_fixture *f = *state;
    ks_err err = {0};
    char *before = views(f->api);
    veto_state vs = {.on = true};
    assert_int_equal(ks_store_set_commit_veto(f->store, veto, &vs, &err), KS_OK);
    one_call c[4];
    memset(c, 0, sizeof(c));
    for (int i = 0; i < 4; i++) {
        c[i].method = "POST";
        snprintf(c[i].url, sizeof(c[i].url), "/v1/vms");
        char name[16];
        snprintf(name, sizeof(name), "f-%d", i == 3 ? 0 : i);
        vm_body(c[i].body, sizeof(c[i].body), name, 2);
    }
    run_in_one_group(f, c, 4);
    /* f-0 twice: the second one was undone alone (409); the others failed
     * with the commit. */
    int n409 = 0, n5xx = 0;
    for (int i = 0; i < 4; i++) {
        n409 += atomic_load(&c[i].status) == 409;
        n5xx += atomic_load(&c[i].status) >= 500;
    }
    assert_int_equal(n409, 1);
    assert_int_equal(n5xx, 3);
    vs.on = false;
    char *after = views(f->api);
    assert_string_equal(before, after); /* no reservation left behind */
    free(after);
    restart(f);
    after = views(f->api);
    assert_string_equal(before, after);
    free(after);
    free(before);
    /* And the store works again. */
    char body[128];
    vm_body(body, sizeof(body), "f-9", 2);
    assert_int_equal(call(f->api, "POST", "/v1/vms", body, NULL), 201);
    assert_int_equal(ks_store_set_commit_veto(f->store, NULL, NULL, &err), KS_OK);
}

static void test_group__delete_then_create_same_name(void **state)
{
    group_fixture *f = *state;
    char body[128];
    vm_body(body, sizeof(body), "d-1", 2);
    assert_int_equal(call(f->api, "POST", "/v1/vms", body, NULL), 201);
    one_call c[2];
    memset(c, 0, sizeof(c));
    c[0].method = "DELETE";
    snprintf(c[0].url, sizeof(c[0].url), "/v1/vms/d-1");
    c[1].method = "POST";
    snprintf(c[1].url, sizeof(c[1].url), "/v1/vms");
    vm_body(c[1].body, sizeof(c[1].body), "d-1", 2);
    /* The delete must join first: start it alone, then the create. */
    ks_api__unit_announce(f->api);
    pthread_t t0, t1;
    c[0].api = c[1].api = f->api;
    assert_int_equal(pthread_create(&t0, NULL, one_call_main, &c[0]), 0);
    wait_units(f, c, 0, 1);
    assert_int_equal(pthread_create(&t1, NULL, one_call_main, &c[1]), 0);
    /* the create is refused at once, or (wrongly) joins the group */
    release_group_when(f, c, 2, 2);
    pthread_join(t0, NULL);
    pthread_join(t1, NULL);
    assert_int_equal(atomic_load(&c[0].status), 204);
    assert_int_equal(atomic_load(&c[1].status), 409);
    /* Nothing of d-1 is left, in the index or the store. */
    assert_int_equal(call(f->api, "GET", "/v1/vms/d-1", NULL, NULL), 404);
    assert_restart_shows_the_same(f);
}

/* A group is committed once it is 5 ms old even while a writer that
 * announced itself has not joined (arrivals that never pause). */
static void test_group__old_group_commits(void **state)
{
    group_fixture *f = *state;
    one_call c[2];
    memset(c, 0, sizeof(c));
    pthread_t th[2];
    ks_api__unit_announce(f->api); /* a writer that never comes */
    for (int i = 0; i < 2; i++) {
        c[i].api = f->api;
        c[i].method = "POST";
        snprintf(c[i].url, sizeof(c[i].url), "/v1/vms");
        char name[16];
        snprintf(name, sizeof(name), "o-%d", i);
        vm_body(c[i].body, sizeof(c[i].body), name, 1);
    }
    assert_int_equal(pthread_create(&th[0], NULL, one_call_main, &c[0]), 0);
    wait_units(f, c, 0, 1);
    sleep_ms(10);
    assert_int_equal(atomic_load(&c[0].status), 0); /* still waiting for its group */
    assert_int_equal(pthread_create(&th[1], NULL, one_call_main, &c[1]), 0);
    pthread_join(th[1], NULL);
    pthread_join(th[0], NULL);
    assert_int_equal(atomic_load(&c[0].status), 201);
    assert_int_equal(atomic_load(&c[1].status), 201);
    pthread_mutex_lock(&f->api->lock);
    ks_api__unit_withdraw(f->api);
    pthread_mutex_unlock(&f->api->lock);
}

/* A create answers with the VM document written as text (ks_api__vm_text);
 * GET builds it through jansson (ks_api__vm_json): the same bytes and ETag,
 * with and without the optional members. */
static void test_group__create_answer_equals_get(void **state)
{
    group_fixture *f = *state;
    ks_api_kv ct = {"Content-Type", "application/json"};
    static const char *const bodies[] = {
        "{\"name\":\"same-1\",\"vcpus\":{\"any\":2}}",
        "{\"name\":\"same-2\",\"vcpus\":{\"any\":1},\"anti_affinity_group\":\"ag\"}"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        ks_api_response post, get;
        memset(&post, 0, sizeof(post));
        memset(&get, 0, sizeof(get));
        ks_api_handle(f->api, "POST", "/v1/vms", &ct, 1, bodies[i], strlen(bodies[i]), &post);
        assert_int_equal(post.status, 201);
        char url[64];
        snprintf(url, sizeof(url), "/v1/vms/same-%zu", i + 1);
        ks_api_handle(f->api, "GET", url, NULL, 0, NULL, 0, &get);
        assert_int_equal(get.status, 200);
        assert_string_equal(post.body, get.body);
        assert_string_equal(post.etag, get.etag);
        ks_api_response_destroy(&post);
        ks_api_response_destroy(&get);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group__concurrent_units, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group__failed_commit_withdraws_reservations, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group__delete_then_create_same_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group__old_group_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group__create_answer_equals_get, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
