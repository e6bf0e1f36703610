/*
 * test_pg_replicas.c - several scheduler replicas sharing one PostgreSQL
 * database through the store, the way kintsugid replicas do.
 *
 * Each replica has its own store handle and an in-memory index of free CPUs
 * (one bit per CPU), refreshed incrementally from the change feed
 * (ks_store_changes_since).  Client threads place VMs through their replica
 * optimistically: pick CPUs the index says are free, insert in a transaction;
 * on KS_ECONFLICT (another replica took a CPU first) refresh and retry, at most
 * MAX_TRIES times, then give up (what the API answers with 409).  A leader job
 * runs on whichever replica holds ks_store_try_leader().
 *
 * Checked: no CPU is ever allocated twice, every acknowledged placement is in
 * the database with its vCPUs, nothing unacknowledged is; every surviving
 * replica's index converges to the database; when the leader replica dies
 * (its connection closes) another one takes over the leader job.
 *
 * Needs KS_PG_DIR (the throwaway cluster of the ctest fixture): FAILS without.
 */
#include "ks_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <libpq-fe.h>

#include "ks_feature.h"
#include "ks_report.h"
#include "ks_store.h"

#define N_HOSTS 40
#define N_CPUS 64 /* one uint64_t of free bits per host */
#define N_REPLICAS 3
#define CLIENTS_PER_REPLICA 2
#define MAX_TRIES 8
#define DB "ks_test_replicas"

static char g_dir[512];
static char g_url[700];

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static void pg_admin(const char *db, const char *sql)
{
    char conninfo[700];
    ks_test_path(conninfo, sizeof(conninfo), "host=%s user=postgres dbname=%s", g_dir, db);
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("connect to the test cluster in %s: %s", g_dir, msg);
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL); /* "does not exist, skipping" */
    PGresult *r = PQexec(c, sql);
    ExecStatusType es = PQresultStatus(r);
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
        fail_msg("'%s': %s", sql, msg);
    }
    PQclear(r);
    PQfinish(c);
}

static int64_t qint(ks_store *s, const char *sql)
{
    int64_t v = -1;
    ks_err err = {0};
    if (ks_store_query_int(&v, s, sql, &err) != KS_OK)
        fail_msg("'%s': %s", sql, err.msg);
    return v;
}

/* ---- a replica: store handle + index + change feed ------------------------ */

typedef struct replica {
    int no;
    ks_store *s;
    pthread_mutex_t mu; /* the "fleet lock": one store user at a time */
    uint64_t used[N_HOSTS];
    int64_t cursor;
    uint64_t last_poll_us;
    atomic_bool dead;
    /* statistics */
    uint64_t placed, conflicts, gave_up, refreshes, leader_rounds;
} replica;

static int host_index(const char *id)
{
    int h = -1;
    if (sscanf(id, "h%d", &h) != 1 || h < 0 || h >= N_HOSTS)
        return -1;
    return h;
}

static int mark_vcpu(void *ctx, const ks_store_vcpu_row *row)
{
    uint64_t *bits = ctx;
    if (row->cpu_id >= 0 && row->cpu_id < N_CPUS)
        *bits |= UINT64_C(1) << row->cpu_id;
    return 0;
}

static ks_code reload_host(replica *r, int h, ks_err *err)
{
    char id[16];
    uint64_t bits = 0;
    snprintf(id, sizeof(id), "h%d", h);
    ks_code rc = ks_store_vcpu_scan(r->s, id, NULL, mark_vcpu, &bits, err);
    if (rc == KS_OK)
        r->used[h] = bits;
    return rc;
}

typedef struct dirty {
    bool host[N_HOSTS];
    bool all;
} dirty;

static int note_change(void *ctx, const ks_store_change_row *c)
{
    dirty *d = ctx;
    int h = host_index(c->host_id);
    if (c->kind == KS_STORE_CHANGE_HOST || c->kind == KS_STORE_CHANGE_VM) {
        if (h >= 0)
            d->host[h] = true;
        else
            d->all = true; /* a VM delete does not name its host: reload all */
    }
    return 0;
}

/* Incremental refresh: only hosts named by changes since the cursor. */
static ks_code refresh(replica *r, ks_err *err)
{
    dirty d;
    memset(&d, 0, sizeof(d));
    int64_t next = 0;
    ks_code rc = ks_store_changes_since(&next, r->s, r->cursor, note_change, &d, err);
    if (rc != KS_OK)
        return rc;
    r->cursor = next;
    r->last_poll_us = now_us();
    for (int h = 0; rc == KS_OK && h < N_HOSTS; h++)
        if (d.all || d.host[h]) {
            rc = reload_host(r, h, err);
            r->refreshes++;
        }
    return rc;
}

static ks_code replica_open(replica *r, int no, ks_err *err)
{
    memset(r, 0, sizeof(*r));
    r->no = no;
    pthread_mutex_init(&r->mu, NULL);
    ks_store_options o = KS_STORE_OPTIONS_INIT;
    o.busy_timeout_ms = 10000;
    ks_code rc = ks_store_open(&r->s, g_url, &o, err);
    /* Cursor first, then the full load: nothing can fall in between. */
    if (rc == KS_OK)
        rc = ks_store_changes_cursor(&r->cursor, r->s, err);
    for (int h = 0; rc == KS_OK && h < N_HOSTS; h++)
        rc = reload_host(r, h, err);
    return rc;
}

/* ---- placements ------------------------------------------------------------ */

typedef struct client {
    replica *r;
    int id;
    int n_vms;
    unsigned seed;
    char (*acked)[KS_ID_MAX]; /* names acknowledged */
    int n_acked;
    int n_failed_hard;
    char last_err[256];
} client;

/* One placement attempt: choose on the index, commit in the database. */
static ks_code try_place(replica *r, const char *name, int want, unsigned *seed, ks_err *err)
{
    int start = (int)(rand_r(seed) % N_HOSTS);
    for (int k = 0; k < N_HOSTS; k++) {
        int h = (start + k) % N_HOSTS;
        uint64_t free_bits = ~r->used[h];
        if (__builtin_popcountll(free_bits) < want)
            continue;
        ks_store_vcpu_alloc v[4];
        uint64_t take = 0;
        for (int i = 0; i < want; i++) {
            int cpu = __builtin_ctzll(free_bits);
            free_bits &= free_bits - 1;
            take |= UINT64_C(1) << cpu;
            v[i] = (ks_store_vcpu_alloc){i, cpu};
        }
        ks_store_vm_row vm;
        memset(&vm, 0, sizeof(vm));
        snprintf(vm.name, sizeof(vm.name), "%s", name);
        snprintf(vm.host_id, sizeof(vm.host_id), "h%d", h);
        vm.generation = 1;
        vm.created_us = vm.updated_us = 1;
        vm.plan_json = (char *)"{}";
        ks_code rc = ks_store_begin(r->s, err);
        if (rc == KS_OK)
            rc = ks_store_vm_insert(r->s, &vm, v, (uint32_t)want, err);
        if (rc == KS_OK)
            rc = ks_store_event_append(NULL, r->s, 1, "vm.placed", vm.host_id, name, NULL, err);
        if (rc == KS_OK)
            rc = ks_store_commit(r->s, err);
        else
            ks_store_rollback(r->s, NULL);
        if (rc == KS_OK)
            r->used[h] |= take;
        return rc;
    }
    return ks_err_set(err, KS_ENOCAPACITY, "no host has %d free cpus", want);
}

static void *client_main(void *arg)
{
    client *c = arg;
    replica *r = c->r;
    for (int i = 0; i < c->n_vms && !atomic_load(&r->dead); i++) {
        char name[KS_ID_MAX];
        snprintf(name, sizeof(name), "vm-r%d-c%d-%d", r->no, c->id, i);
        int want = 1 + (int)(rand_r(&c->seed) % 2);
        ks_err err = {0};
        ks_code rc = KS_ECONFLICT;
        pthread_mutex_lock(&r->mu);
        if (now_us() - r->last_poll_us > 50000)
            refresh(r, NULL); /* periodic poll of the feed */
        for (int t = 0; t < MAX_TRIES && rc == KS_ECONFLICT; t++) {
            rc = try_place(r, name, want, &c->seed, &err);
            if (rc == KS_ECONFLICT) {
                r->conflicts++;
                ks_err e2 = {0};
                if (refresh(r, &e2) != KS_OK) {
                    rc = e2.code;
                    snprintf(err.msg, sizeof(err.msg), "%s", e2.msg);
                }
            }
        }
        if (rc == KS_OK) {
            r->placed++;
            snprintf(c->acked[c->n_acked++], KS_ID_MAX, "%s", name);
        } else if (rc == KS_ECONFLICT) {
            r->gave_up++; /* the API's 409 */
        } else if (rc != KS_ENOCAPACITY) {
            c->n_failed_hard++;
            snprintf(c->last_err, sizeof(c->last_err), "%s", err.msg);
        }
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

/* ---- the leader job -------------------------------------------------------- */

typedef struct leader_ctx {
    replica *reps;
    atomic_bool stop;
    atomic_int current;     /* replica leading in the last round, -1 = none */
    atomic_int two_leaders; /* rounds where two replicas said "leader" */
    int first, after_kill;
} leader_ctx;

static void *leader_main(void *arg)
{
    leader_ctx *l = arg;
    while (!atomic_load(&l->stop)) {
        int who = -1;
        for (int i = 0; i < N_REPLICAS; i++) {
            replica *r = &l->reps[i];
            if (atomic_load(&r->dead))
                continue;
            bool lead = false;
            pthread_mutex_lock(&r->mu);
            ks_err err = {0};
            if (r->s && ks_store_try_leader(&lead, r->s, &err) == KS_OK && lead) {
                r->leader_rounds++;
                /* A round is not atomic: a leader killed since it answered
                 * is no longer one. */
                if (who >= 0 && !atomic_load(&l->reps[who].dead))
                    atomic_fetch_add(&l->two_leaders, 1);
                who = i;
            }
            pthread_mutex_unlock(&r->mu);
        }
        atomic_store(&l->current, who);
        usleep(20000);
    }
    return NULL;
}

/* ---- the test -------------------------------------------------------------- */

static ks_report *make_report(int h)
{
    ks_report *r = NULL;
    ks_err err = {0};
    assert_int_equal(ks_report_new(&r, &err), KS_OK);
    snprintf(r->host.id, sizeof(r->host.id), "h%d", h);
    snprintf(r->host.boot_id, sizeof(r->host.boot_id), "boot");
    r->host.arch = KS_ARCH_X86_64;
    r->host.generation = 1;
    assert_int_equal(ks_report_alloc_cpus(r, N_CPUS, &err), KS_OK);
    for (int i = 0; i < N_CPUS; i++) {
        r->cpus[i].id = i;
        r->cpus[i].core = i / 2;
        r->cpus[i].thread = i % 2;
        r->cpus[i].kind = -1;
        r->cpus[i].state = KS_CPU_ONLINE;
        ks_featset_set(&r->cpus[i].native, (unsigned)i % ks_feature_count());
        r->cpus[i].usable = r->cpus[i].native;
    }
    return r;
}

static void test_pg__replicas_place_without_double_allocation(void **state)
{
    (void)state;
    ks_err err = {0};
    pg_admin("postgres", "DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
    pg_admin("postgres", "CREATE DATABASE " DB);
    ks_store *admin = NULL;
    assert_int_equal(ks_store_open(&admin, g_url, NULL, &err), KS_OK);
    for (int h = 0; h < N_HOSTS; h++) {
        ks_report *rep = make_report(h);
        assert_int_equal(ks_store_begin(admin, &err), KS_OK);
        assert_int_equal(ks_store_host_put_report(admin, rep, NULL, 1, NULL, &err), KS_OK);
        assert_int_equal(ks_store_commit(admin, &err), KS_OK);
        ks_report_free(rep);
    }

    static replica reps[N_REPLICAS];
    for (int i = 0; i < N_REPLICAS; i++)
        if (replica_open(&reps[i], i, &err) != KS_OK)
            fail_msg("replica %d: %s", i, err.msg);
    /* Replica 0 becomes the leader before the others try. */
    bool lead = false;
    assert_int_equal(ks_store_try_leader(&lead, reps[0].s, &err), KS_OK);
    assert_true(lead);
    leader_ctx lc = {.reps = reps, .first = 0, .after_kill = -1};
    atomic_init(&lc.stop, false);
    atomic_init(&lc.current, 0);
    atomic_init(&lc.two_leaders, 0);
    pthread_t lt;
    assert_int_equal(pthread_create(&lt, NULL, leader_main, &lc), 0);

    /* Phase 1: every replica's clients place VMs at once (2560 CPUs, VMs of
     * 1-2 vCPUs: about 1200 placements, contention on every host). */
    const int per_client = 200;
    client cl[N_REPLICAS * CLIENTS_PER_REPLICA];
    pthread_t ct[N_REPLICAS * CLIENTS_PER_REPLICA];
    memset(cl, 0, sizeof(cl));
    uint64_t t0 = now_us();
    for (int i = 0; i < N_REPLICAS * CLIENTS_PER_REPLICA; i++) {
        cl[i].r = &reps[i / CLIENTS_PER_REPLICA];
        cl[i].id = i % CLIENTS_PER_REPLICA;
        cl[i].n_vms = per_client;
        cl[i].seed = 1234u + (unsigned)i;
        cl[i].acked = calloc((size_t)per_client * 2, KS_ID_MAX);
        assert_non_null(cl[i].acked);
        assert_int_equal(pthread_create(&ct[i], NULL, client_main, &cl[i]), 0);
    }
    /* Kill the leader replica half-way: its connection closes as a crashed
     * process's would, its clients stop; acknowledged VMs must survive. */
    uint64_t deadline = now_us() + 60000000;
    while (reps[0].placed < 100 && now_us() < deadline)
        usleep(5000);
    atomic_store(&reps[0].dead, true);
    for (int i = 0; i < CLIENTS_PER_REPLICA; i++)
        assert_int_equal(pthread_join(ct[i], NULL), 0);
    pthread_mutex_lock(&reps[0].mu);
    ks_store_close(reps[0].s);
    reps[0].s = NULL;
    pthread_mutex_unlock(&reps[0].mu);
    uint64_t t_kill = now_us();
    int new_leader = -1;
    deadline = now_us() + 10000000;
    while (now_us() < deadline) {
        int cur = atomic_load(&lc.current);
        if (cur > 0) {
            new_leader = cur;
            break;
        }
        usleep(5000);
    }
    uint64_t handover_us = now_us() - t_kill;
    assert_true(new_leader > 0);
    for (int i = CLIENTS_PER_REPLICA; i < N_REPLICAS * CLIENTS_PER_REPLICA; i++)
        assert_int_equal(pthread_join(ct[i], NULL), 0);
    uint64_t t1 = now_us();
    uint64_t placed_p1 = 0;
    for (int i = 0; i < N_REPLICAS; i++)
        placed_p1 += reps[i].placed;

    /* Phase 2 (churn): delete a third of the survivors' VMs through one
     * replica, place again through the other: the feed carries the frees. */
    int deleted = 0;
    replica *del = &reps[1];
    pthread_mutex_lock(&del->mu);
    for (int i = CLIENTS_PER_REPLICA; i < N_REPLICAS * CLIENTS_PER_REPLICA; i++) {
        for (int k = 0; k < cl[i].n_acked; k += 3) {
            assert_int_equal(ks_store_begin(del->s, &err), KS_OK);
            assert_int_equal(ks_store_vm_delete(del->s, cl[i].acked[k], &err), KS_OK);
            assert_int_equal(ks_store_commit(del->s, &err), KS_OK);
            cl[i].acked[k][0] = '\0'; /* no longer expected */
            deleted++;
        }
    }
    pthread_mutex_unlock(&del->mu);
    client more[CLIENTS_PER_REPLICA];
    pthread_t mt[CLIENTS_PER_REPLICA];
    memset(more, 0, sizeof(more));
    for (int i = 0; i < CLIENTS_PER_REPLICA; i++) {
        more[i].r = &reps[2];
        more[i].id = 10 + i;
        more[i].n_vms = per_client;
        more[i].seed = 99u + (unsigned)i;
        more[i].acked = calloc((size_t)per_client, KS_ID_MAX);
        assert_non_null(more[i].acked);
        assert_int_equal(pthread_create(&mt[i], NULL, client_main, &more[i]), 0);
    }
    for (int i = 0; i < CLIENTS_PER_REPLICA; i++)
        assert_int_equal(pthread_join(mt[i], NULL), 0);
    atomic_store(&lc.stop, true);
    assert_int_equal(pthread_join(lt, NULL), 0);
    assert_int_equal(atomic_load(&lc.two_leaders), 0);

    /* Every acknowledged placement is there, with its vCPUs; nothing else. */
    int64_t acked = 0, hard = 0;
    for (int pass = 0; pass < 2; pass++) {
        client *set = pass ? more : cl;
        int n = pass ? CLIENTS_PER_REPLICA : N_REPLICAS * CLIENTS_PER_REPLICA;
        for (int i = 0; i < n; i++) {
            hard += set[i].n_failed_hard;
            if (set[i].n_failed_hard)
                fprintf(stderr, "client error: %s\n", set[i].last_err);
            for (int k = 0; k < set[i].n_acked; k++) {
                if (!set[i].acked[k][0])
                    continue;
                ks_store_vm_row v;
                if (ks_store_vm_get(&v, admin, set[i].acked[k], false, &err) != KS_OK)
                    fail_msg("acknowledged vm %s missing: %s", set[i].acked[k], err.msg);
                assert_true(v.n_vcpus >= 1);
                acked++;
            }
        }
    }
    assert_int_equal(hard, 0);
    assert_int_equal(qint(admin, "SELECT count(*) FROM vms"), acked);
    assert_int_equal(qint(admin, "SELECT count(*) FROM vm_vcpus"),
                     qint(admin, "SELECT sum(n_vcpus) FROM vms"));
    assert_int_equal(qint(admin, "SELECT count(*) FROM (SELECT DISTINCT host_id, cpu_id "
                                 "FROM vm_vcpus) d"),
                     qint(admin, "SELECT count(*) FROM vm_vcpus"));
    assert_int_equal(ks_store_integrity_check(admin, &err), KS_OK);

    /* Surviving replicas converge on the database through the feed alone. */
    uint64_t truth[N_HOSTS];
    for (int h = 0; h < N_HOSTS; h++) {
        char id[16];
        truth[h] = 0;
        snprintf(id, sizeof(id), "h%d", h);
        assert_int_equal(ks_store_vcpu_scan(admin, id, NULL, mark_vcpu, &truth[h], &err), KS_OK);
    }
    for (int i = 1; i < N_REPLICAS; i++) {
        deadline = now_us() + 10000000;
        bool same = false;
        while (!same && now_us() < deadline) {
            assert_int_equal(refresh(&reps[i], &err), KS_OK);
            same = memcmp(reps[i].used, truth, sizeof(truth)) == 0;
            if (!same)
                usleep(10000);
        }
        if (!same)
            fail_msg("replica %d's index did not converge", i);
    }

    uint64_t conflicts = 0, gave_up = 0, placed = 0;
    for (int i = 0; i < N_REPLICAS; i++) {
        conflicts += reps[i].conflicts;
        gave_up += reps[i].gave_up;
        placed += reps[i].placed;
    }
    printf("replicas: %llu placements (%lld live, %d deleted), %llu conflicts retried, "
           "%llu gave up (409); phase 1: %.0f placements/s over %d replicas; leader handover "
           "to replica %d in %.1f ms\n",
           (unsigned long long)placed, (long long)acked, deleted, (unsigned long long)conflicts,
           (unsigned long long)gave_up, 1e6 * (double)placed_p1 / (double)(t1 - t0 + 1), N_REPLICAS,
           new_leader, (double)handover_us / 1000.0);
    assert_true(placed >= 1000);

    for (int i = 1; i < N_REPLICAS; i++) {
        ks_store_close(reps[i].s);
        pthread_mutex_destroy(&reps[i].mu);
    }
    pthread_mutex_destroy(&reps[0].mu);
    for (int i = 0; i < N_REPLICAS * CLIENTS_PER_REPLICA; i++)
        free(cl[i].acked);
    for (int i = 0; i < CLIENTS_PER_REPLICA; i++)
        free(more[i].acked);
    ks_store_close(admin);
    pg_admin("postgres", "DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
}

int main(void)
{
    const char *d = getenv("KS_PG_DIR");
    if (!d || !d[0] || strlen(d) >= sizeof(g_dir)) {
        fprintf(stderr, "test_pg_replicas: KS_PG_DIR (the test cluster) is not set\n");
        return 1;
    }
    snprintf(g_dir, sizeof(g_dir), "%s", d);
    snprintf(g_url, sizeof(g_url), "postgresql:///%s?host=%s&user=postgres", DB, g_dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pg__replicas_place_without_double_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
