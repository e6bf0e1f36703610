/*
 * test_ks_store.c - the store (db/ks_store.h) on both backends: schema
 * migrations, host reports and their idempotency, the CPU scan, VM allocation
 * constraints, transactions, backup, events, idempotency keys, tokens, the
 * change feed, leadership and copying a fleet between stores.
 *
 * Without arguments every test runs on SQLite (ctest label "unit").  With
 * `--pg` they run on PostgreSQL (ctest label "pg"): KS_PG_DIR names the socket
 * directory of a running throwaway cluster (scripts/pg-test-cluster.sh, started
 * by a ctest fixture); its absence is a failure, not a skip.  Each test gets a
 * fresh temporary directory and database (SQLite file, or an emptied
 * PostgreSQL database of its own).
 */
#include "ks_test.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#ifdef KS_HAVE_LIBPQ
#include <libpq-fe.h>
#endif

#include "ks_feature.h"
#include "ks_report.h"
#include "ks_store.h"
#include "ks_store_schema.sql.h" /* to forge a schema-2 database */

typedef struct fixture {
    char dir[1024];
    char path[1200]; /* the store URL: a SQLite path, or a postgresql:// URL */
    ks_store *s;
} fixture;

/* PostgreSQL run: the cluster's socket directory and this binary's database. */
static bool g_pg;
static char g_pg_dir[512];
#define PG_DB "ks_test_store"

#ifdef KS_HAVE_LIBPQ
/* Runs SQL as the cluster's superuser on database `db`; fails the test on error. */
static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static void pg_admin(const char *db, const char *sql)
{
    char conninfo[700];
    ks_test_path(conninfo, sizeof(conninfo), "host=%s user=postgres dbname=%s", g_pg_dir, db);
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("connect to the test cluster in %s: %s", g_pg_dir, msg);
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
#endif

/* Runs a statement on the test database behind the store's back (to damage it
 * or forge a version). */
static void raw_sql(fixture *f, const char *sql)
{
    if (g_pg) {
#ifdef KS_HAVE_LIBPQ
        pg_admin(PG_DB, sql);
#endif
        return;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("'%s': %s", sql, msg ? msg : "?");
    sqlite3_close(db);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    ks_test_mkdtemp(f->dir, sizeof(f->dir));
    if (g_pg) {
#ifdef KS_HAVE_LIBPQ
        /* A clean database per test: drop everything the last one made. */
        pg_admin(PG_DB, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
#endif
        ks_test_path(f->path, sizeof(f->path), "postgresql:///%s?host=%s&user=postgres", PG_DB,
                     g_pg_dir);
    } else {
        ks_test_path(f->path, sizeof(f->path), "%s/ks.db", f->dir);
    }
    ks_err err = {0};
    if (ks_store_open(&f->s, f->path, NULL, &err) != KS_OK)
        fail_msg("open %s: %s", f->path, err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ks_store_close(f->s);
    ks_test_rmdir(f->dir);
    free(f);
    return 0;
}

static int64_t qint(ks_store *s, const char *sql)
{
    int64_t v = -12345;
    ks_err err = {0};
    if (ks_store_query_int(&v, s, sql, &err) != KS_OK)
        fail_msg("query '%s': %s", sql, err.msg);
    return v;
}

static uint64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

/* CPU time of this process: the machine running the tests is shared, so wall
 * time alone understates what the store can do. */
static uint64_t cpu_us(void)
{
    return clock_us(CLOCK_PROCESS_CPUTIME_ID);
}

/* A deterministic report: n CPUs with ids first_id.., two core kinds, feature
 * sets varying with the CPU and `seed`, one defect on CPU first_id+1. */
static ks_report *make_report(const char *host, const char *boot, uint64_t gen, uint32_t n,
                              int32_t first_id, unsigned seed)
{
    ks_report *r = NULL;
    ks_err err = {0};
    assert_int_equal(ks_report_new(&r, &err), KS_OK);
    snprintf(r->host.id, sizeof(r->host.id), "%s", host);
    snprintf(r->host.hostname, sizeof(r->host.hostname), "%s.example", host);
    r->host.arch = KS_ARCH_X86_64;
    snprintf(r->host.vendor, sizeof(r->host.vendor), "GenuineIntel");
    snprintf(r->host.model_name, sizeof(r->host.model_name), "Test CPU %u", seed);
    snprintf(r->host.boot_id, sizeof(r->host.boot_id), "%s", boot);
    r->host.generation = gen;
    assert_int_equal(ks_report_alloc_kinds(r, 2, &err), KS_OK);
    snprintf(r->kinds[0].name, sizeof(r->kinds[0].name), "IntelAtom");
    r->kinds[0].kind_class = KS_KIND_EFFICIENCY;
    snprintf(r->kinds[1].name, sizeof(r->kinds[1].name), "IntelCore");
    r->kinds[1].kind_class = KS_KIND_PERFORMANCE;
    assert_int_equal(ks_report_alloc_cpus(r, n, &err), KS_OK);
    unsigned nf = (unsigned)ks_feature_count();
    for (uint32_t i = 0; i < n; i++) {
        ks_cpu *c = &r->cpus[i];
        c->id = first_id + (int32_t)i;
        c->package = 0;
        c->die = 0;
        c->cluster = (int32_t)i / 4;
        c->core = (int32_t)i / 2;
        c->thread = (int32_t)i % 2;
        c->numa_node = (int32_t)(i % 2);
        c->l2_group = (int32_t)i / 4;
        c->l3_group = 0;
        c->kind = i % 3 == 0 ? 0 : 1;
        c->base_mhz = 2000 + i;
        c->max_mhz = 5000 + seed;
        for (unsigned b = 0; b < 40; b++)
            ks_featset_set(&c->native, (b * 7 + i + seed) % nf);
        ks_featset_set(&c->native, nf - 1); /* the last word is used too */
        c->usable = c->native;
        c->reserved = i == 0;
        c->state = KS_CPU_ONLINE;
    }
    if (n > 1) {
        ks_cpu *c = &r->cpus[1];
        ks_defect d = {.feature = 5, .source = KS_DEFECT_SELFTEST, .time_us = 1000 + seed};
        snprintf(d.detail, sizeof(d.detail), "known-answer test failed");
        assert_int_equal(ks_cpu_add_defect(c, &d, &err), KS_OK);
        ks_featset_set(&c->defective, 5);
        ks_featset_unset(&c->usable, 5);
        c->state = KS_CPU_DEGRADED;
    }
    if (n > 2) {
        ks_cpu *c = &r->cpus[2];
        ks_defect d = {.feature = KS_FEATURE_NONE, .source = KS_DEFECT_OPERATOR, .time_us = 7};
        assert_int_equal(ks_cpu_add_defect(c, &d, &err), KS_OK);
        ks_featset_clear(&c->usable);
        c->state = KS_CPU_QUARANTINED;
    }
    return r;
}

/* Puts a report in its own transaction; returns the code. */
static ks_code put(ks_store *s, const ks_report *r, ks_store_put_result *res, ks_err *err)
{
    ks_code rc = ks_store_begin(s, err);
    if (rc != KS_OK)
        return rc;
    rc = ks_store_host_put_report(s, r, "{\"schema\":1}", 100, res, err);
    if (rc == KS_OK)
        return ks_store_commit(s, err);
    ks_store_rollback(s, NULL);
    return rc;
}

static void put_ok(ks_store *s, const char *host, const char *boot, uint64_t gen, uint32_t n)
{
    ks_report *r = make_report(host, boot, gen, n, 0, 0);
    ks_err err = {0};
    ks_code rc = put(s, r, NULL, &err);
    ks_report_free(r);
    if (rc != KS_OK)
        fail_msg("put report of %s: %s", host, err.msg);
}

/* Inserts VM `name` on `host` with vCPU i on cpus[i]; inside the open
 * transaction when there is one, else in its own. */
static ks_code insert_vm(ks_store *s, const char *name, const char *host, const int32_t *cpus,
                         uint32_t n, ks_err *err)
{
    ks_store_vm_row vm;
    memset(&vm, 0, sizeof(vm));
    snprintf(vm.name, sizeof(vm.name), "%s", name);
    snprintf(vm.host_id, sizeof(vm.host_id), "%s", host);
    vm.state = KS_STORE_VM_RUNNING;
    vm.generation = 1;
    vm.created_us = vm.updated_us = 42;
    vm.request_json = (char *)"{\"name\":\"x\"}";
    vm.plan_json = (char *)"{\"generation\":1}";
    ks_store_vcpu_alloc v[64];
    assert_true(n <= 64);
    for (uint32_t i = 0; i < n; i++) {
        v[i].vcpu = (int32_t)i;
        v[i].cpu_id = cpus[i];
    }
    if (ks_store_in_txn(s))
        return ks_store_vm_insert(s, &vm, v, n, err);
    ks_code rc = ks_store_begin(s, err);
    if (rc != KS_OK)
        return rc;
    rc = ks_store_vm_insert(s, &vm, v, n, err);
    if (rc == KS_OK)
        return ks_store_commit(s, err);
    ks_store_rollback(s, NULL);
    return rc;
}

typedef struct scan_count_fwd {
    uint64_t rows;
} scan_count_fwd;

static int count_rows(void *ctx, const ks_store_cpu_row *row)
{
    (void)row;
    ((scan_count_fwd *)ctx)->rows++;
    return 0;
}

/* ---- schema and open ----------------------------------------------------- */

static void test_store__pg_migrate_and_reopen(void **state);

static void test_store__migrate_empty_and_reopen(void **state)
{
    fixture *f = *state;
    if (g_pg) {
        test_store__pg_migrate_and_reopen(state);
        return;
    }
    assert_int_equal(qint(f->s, "PRAGMA user_version"), KS_STORE_SCHEMA_VERSION);
    const char *tables = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                         "('hosts','host_reports','cpus','cpu_defects','vms','cpu_alloc','pools',"
                         "'pool_members','policies','events','capacity_snapshots',"
                         "'idempotency_keys','tokens','changes')";
    assert_int_equal(qint(f->s, tables), 14);
    /* schema 3: vCPUs in the VM rows and per-host bitmaps, read through a view */
    assert_int_equal(qint(f->s, "SELECT count(*) FROM sqlite_master WHERE type = 'view' AND "
                                "name = 'vm_vcpus'"),
                     1);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM pragma_journal_mode WHERE "
                                "journal_mode = 'wal'"),
                     1);
    assert_int_equal(qint(f->s, "PRAGMA foreign_keys"), 1);
    assert_int_equal(qint(f->s, "PRAGMA synchronous"), 1); /* NORMAL */
    assert_string_equal(ks_store_backend(f->s), "sqlite");
    put_ok(f->s, "h1", "b1", 1, 4);

    ks_store_close(f->s);
    ks_err err = {0};
    char url[1300];
    ks_test_path(url, sizeof(url), "sqlite:%s", f->path);
    ks_store_options o = KS_STORE_OPTIONS_INIT;
    o.sync_full = true;
    assert_int_equal(ks_store_open(&f->s, url, &o, &err), KS_OK);
    assert_int_equal(qint(f->s, "PRAGMA user_version"), KS_STORE_SCHEMA_VERSION);
    assert_int_equal(qint(f->s, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(qint(f->s, tables), 14);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus"), 4);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);
}

static void test_store__newer_schema_refused(void **state)
{
    fixture *f = *state;
    if (g_pg) {
        /* The version is max(version) of schema_migrations. */
        ks_store_close(f->s);
        f->s = NULL;
        raw_sql(f, "INSERT INTO schema_migrations VALUES (7, 0)");
        ks_store *s = NULL;
        ks_err err = {0};
        assert_int_equal(ks_store_open(&s, f->path, NULL, &err), KS_EINVAL);
        assert_null(s);
        char want[200];
        snprintf(want, sizeof(want),
                 "database schema version 7 is newer than this kintsugid supports (%d)",
                 KS_STORE_SCHEMA_VERSION);
        assert_string_equal(err.msg, want);
        assert_int_equal(ks_store_open_readonly(&s, f->path, &err), KS_EINVAL);
        assert_string_equal(err.msg, want);
        return;
    }
    char path[1300];
    ks_test_path(path, sizeof(path), "%s/future.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "CREATE TABLE t(x); PRAGMA user_version = 7", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    ks_store *s = NULL;
    ks_err err = {0};
    assert_int_equal(ks_store_open(&s, path, NULL, &err), KS_EINVAL);
    assert_null(s);
    char want[200];
    snprintf(want, sizeof(want),
             "database schema version 7 is newer than this kintsugid supports (%d)",
             KS_STORE_SCHEMA_VERSION);
    assert_string_equal(err.msg, want);
    /* Read-only handles refuse it too. */
    assert_int_equal(ks_store_open_readonly(&s, path, &err), KS_EINVAL);
    assert_string_equal(err.msg, want);
}

static void test_store__urls(void **state)
{
    fixture *f = *state;
    ks_store *s = NULL;
    ks_err err = {0};
#ifdef KS_HAVE_LIBPQ
    /* No server behind this socket directory: unreachable, not a crash. */
    assert_int_equal(ks_store_open(&s, "postgresql:///ks?host=/nonexistent-ks-dir", NULL, &err),
                     KS_EUNAVAIL);
    assert_non_null(strstr(err.msg, "connect to postgresql"));
#else
    assert_int_equal(ks_store_open(&s, "postgres://db.example/ks", NULL, &err), KS_EUNSUPPORTED);
#endif
    assert_int_equal(ks_store_open(&s, "mysql://x", NULL, &err), KS_EINVAL);
    assert_int_equal(ks_store_open(&s, "sqlite:", NULL, &err), KS_EINVAL);
    assert_int_equal(ks_store_open(&s, "", NULL, &err), KS_EINVAL);
    char bad[1300];
    ks_test_path(bad, sizeof(bad), "%s/no/such/dir/x.db", f->dir);
    assert_int_equal(ks_store_open(&s, bad, NULL, &err), KS_EIO);
    assert_null(s);
    /* A read-only handle of a missing database is refused, not created. */
    ks_test_path(bad, sizeof(bad), "%s/missing.db", f->dir);
    assert_int_equal(ks_store_open_readonly(&s, bad, &err), KS_EINVAL);
    assert_int_equal(access(bad, F_OK), -1);
}

static void test_store__writes_need_a_transaction(void **state)
{
    fixture *f = *state;
    ks_report *r = make_report("h1", "b1", 1, 2, 0, 0);
    ks_err err = {0};
    assert_int_equal(ks_store_host_put_report(f->s, r, NULL, 1, NULL, &err), KS_EINTERNAL);
    assert_int_equal(ks_store_event_append(NULL, f->s, 1, "x", NULL, NULL, NULL, &err),
                     KS_EINTERNAL);
    assert_int_equal(ks_store_commit(f->s, &err), KS_EINTERNAL);
    assert_int_equal(ks_store_rollback(f->s, &err), KS_OK);
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_true(ks_store_in_txn(f->s));
    assert_int_equal(ks_store_begin(f->s, &err), KS_EINTERNAL); /* no nesting */
    assert_int_equal(ks_store_backup(f->s, "/tmp/never", &err), KS_EINTERNAL);
    assert_int_equal(ks_store_rollback(f->s, &err), KS_OK);
    assert_false(ks_store_in_txn(f->s));
    assert_int_equal(qint(f->s, "SELECT count(*) FROM hosts"), 0);
    ks_report_free(r);
}

/* ---- hosts --------------------------------------------------------------- */

static void test_store__host_put_get_generations(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    ks_store_put_result res;
    ks_report *r = make_report("h1", "boot-a", 5, 8, 0, 1);
    assert_int_equal(put(f->s, r, &res, &err), KS_OK);
    assert_true(res.created);
    assert_false(res.unchanged);
    assert_int_equal(res.n_cpus_added, 8);
    assert_int_equal(res.n_cpus_removed, 0);

    ks_store_host_row h;
    assert_int_equal(ks_store_host_get(&h, f->s, "h1", true, &err), KS_OK);
    assert_string_equal(h.id, "h1");
    assert_string_equal(h.hostname, "h1.example");
    assert_int_equal(h.arch, KS_ARCH_X86_64);
    assert_string_equal(h.vendor, "GenuineIntel");
    assert_string_equal(h.boot_id, "boot-a");
    assert_int_equal(h.generation, 5);
    assert_int_equal(h.n_cpus, 8);
    assert_int_equal(h.state, KS_STORE_HOST_READY);
    assert_int_equal(h.registered_us, 100);
    assert_string_equal(h.report_json, "{\"schema\":1}");
    ks_store_host_row_destroy(&h);
    ks_store_host_row_destroy(&h); /* idempotent */
    assert_int_equal(ks_store_host_get(&h, f->s, "h1", false, &err), KS_OK);
    assert_null(h.report_json);

    /* SPEC: same boot, older generation -> conflict with both numbers. */
    r->host.generation = 3;
    assert_int_equal(put(f->s, r, &res, &err), KS_ECONFLICT);
    assert_string_equal(err.msg, "report generation 3 is older than stored 5");
    /* Same boot and generation: a replay, nothing written. */
    r->host.generation = 5;
    snprintf(r->host.hostname, sizeof(r->host.hostname), "changed");
    assert_int_equal(put(f->s, r, &res, &err), KS_OK);
    assert_true(res.unchanged);
    assert_int_equal(ks_store_host_get(&h, f->s, "h1", false, &err), KS_OK);
    assert_string_equal(h.hostname, "h1.example");
    /* Higher generation: replaced, CPU rows updated in place. */
    r->host.generation = 6;
    assert_int_equal(put(f->s, r, &res, &err), KS_OK);
    assert_false(res.unchanged || res.created || res.boot_changed);
    assert_int_equal(res.n_cpus_added, 0);
    assert_int_equal(ks_store_host_get(&h, f->s, "h1", false, &err), KS_OK);
    assert_string_equal(h.hostname, "changed");
    assert_int_equal(h.generation, 6);
    /* A new boot may restart generations from 1. */
    snprintf(r->host.boot_id, sizeof(r->host.boot_id), "boot-b");
    r->host.generation = 1;
    assert_int_equal(put(f->s, r, &res, &err), KS_OK);
    assert_true(res.boot_changed);
    assert_int_equal(ks_store_host_get(&h, f->s, "h1", false, &err), KS_OK);
    assert_int_equal(h.generation, 1);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus"), 8);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpu_defects"), 2);

    /* Heartbeat, state, unknown host. */
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_host_heartbeat(f->s, "h1", 999, &err), KS_OK);
    assert_int_equal(ks_store_host_set_state(f->s, "h1", KS_STORE_HOST_LOST, 1000, &err), KS_OK);
    assert_int_equal(ks_store_host_heartbeat(f->s, "nope", 999, &err), KS_ENOTFOUND);
    assert_int_equal(ks_store_host_set_state(f->s, "h1", (ks_store_host_state)9, 1, &err),
                     KS_EINVAL);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_int_equal(ks_store_host_get(&h, f->s, "h1", false, &err), KS_OK);
    assert_int_equal(h.last_heartbeat_us, 999);
    assert_int_equal(h.state, KS_STORE_HOST_LOST);
    assert_int_equal(ks_store_host_get(&h, f->s, "nope", false, &err), KS_ENOTFOUND);
    /* A lost host that reports again is ready; draining stays draining. */
    r->host.generation = 2;
    assert_int_equal(put(f->s, r, &res, &err), KS_OK);
    assert_int_equal(ks_store_host_get(&h, f->s, "h1", false, &err), KS_OK);
    assert_int_equal(h.state, KS_STORE_HOST_READY);
    assert_int_equal(h.last_heartbeat_us, 100);
    ks_report_free(r);

    /* Bad input is refused before storage. */
    r = make_report("bad id!", "b", 1, 2, 0, 0);
    assert_int_equal(put(f->s, r, &res, &err), KS_EINVAL);
    ks_report_free(r);
    r = make_report("h2", "b", 1, 3, 0, 0);
    r->cpus[2].id = 1; /* not sorted/unique */
    assert_int_equal(put(f->s, r, &res, &err), KS_EINVAL);
    ks_report_free(r);
}

#define LBUF 400 /* room for composed "a:b:c" strings */

typedef struct id_list {
    char ids[64][LBUF];
    int n;
} id_list;

static int collect_host(void *ctx, const ks_store_host_row *row)
{
    id_list *l = ctx;
    assert_null(row->report_json);
    snprintf(l->ids[l->n++], LBUF, "%s", row->id);
    return 0;
}

static void test_store__host_list_filters_pagination(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "h%02d", 9 - i); /* inserted out of order */
        put_ok(f->s, id, "b", 1, 2);
    }
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_host_set_state(f->s, "h03", KS_STORE_HOST_DRAINING, 5, &err), KS_OK);
    assert_int_equal(ks_store_host_set_state(f->s, "h07", KS_STORE_HOST_DRAINING, 5, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);

    /* Pages of 4 by keyset: h00..h03, h04..h07, h08..h09. */
    ks_store_host_filter flt = KS_STORE_HOST_FILTER_INIT;
    flt.limit = 4;
    id_list all = {.n = 0};
    char after[LBUF] = "";
    for (int page = 0; page < 5; page++) {
        id_list l = {.n = 0};
        flt.after_id = page ? after : NULL;
        assert_int_equal(ks_store_host_list(f->s, &flt, collect_host, &l, &err), KS_OK);
        if (l.n == 0)
            break;
        assert_true(l.n <= 4);
        for (int i = 0; i < l.n; i++)
            snprintf(all.ids[all.n++], LBUF, "%s", l.ids[i]);
        snprintf(after, sizeof(after), "%s", l.ids[l.n - 1]);
    }
    assert_int_equal(all.n, 10);
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "h%02d", i);
        assert_string_equal(all.ids[i], id);
    }

    ks_store_host_filter st = KS_STORE_HOST_FILTER_INIT;
    st.state = KS_STORE_HOST_DRAINING;
    id_list l = {.n = 0};
    assert_int_equal(ks_store_host_list(f->s, &st, collect_host, &l, &err), KS_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.ids[0], "h03");
    assert_string_equal(l.ids[1], "h07");
    uint64_t n = 0;
    assert_int_equal(ks_store_host_count(&n, f->s, &st, &err), KS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ks_store_host_count(&n, f->s, NULL, &err), KS_OK);
    assert_int_equal(n, 10);
    st.state = -1;
    st.arch = KS_ARCH_ARM64;
    assert_int_equal(ks_store_host_count(&n, f->s, &st, &err), KS_OK);
    assert_int_equal(n, 0);
    st.arch = KS_ARCH_X86_64;
    st.vendor = "GenuineIntel";
    assert_int_equal(ks_store_host_count(&n, f->s, &st, &err), KS_OK);
    assert_int_equal(n, 10);
    st.vendor = "AuthenticAMD";
    assert_int_equal(ks_store_host_count(&n, f->s, &st, &err), KS_OK);
    assert_int_equal(n, 0);
    st.state = 17;
    assert_int_equal(ks_store_host_count(&n, f->s, &st, &err), KS_EINVAL);
}

/* ---- cpus ---------------------------------------------------------------- */

typedef struct cpu_check {
    const ks_report *r;
    uint32_t n;
    bool ok;
} cpu_check;

static int check_cpu(void *ctx, const ks_store_cpu_row *row)
{
    cpu_check *c = ctx;
    if (c->n >= c->r->n_cpus) {
        c->ok = false;
        return 1;
    }
    const ks_cpu *want = &c->r->cpus[c->n++];
    const ks_kind *k = &c->r->kinds[want->kind];
    bool ok = strcmp(row->host_id, c->r->host.id) == 0 && row->cpu_id == want->id &&
              row->package == want->package && row->die == want->die &&
              row->cluster == want->cluster && row->core == want->core &&
              row->thread == want->thread && row->numa_node == want->numa_node &&
              row->l2_group == want->l2_group && row->l3_group == want->l3_group &&
              row->kind_class == k->kind_class && strcmp(row->kind_name, k->name) == 0 &&
              row->base_mhz == want->base_mhz && row->max_mhz == want->max_mhz &&
              row->state == want->state && row->reserved == want->reserved &&
              ks_featset_equal(&row->native, &want->native) &&
              ks_featset_equal(&row->usable, &want->usable) &&
              ks_featset_equal(&row->defective, &want->defective);
    if (!ok) {
        fprintf(stderr, "cpu %d of %s differs\n", want->id, c->r->host.id);
        c->ok = false;
    }
    return 0;
}

typedef struct defect_list {
    ks_store_defect_row rows[8];
    int n;
} defect_list;

static int collect_defect(void *ctx, const ks_store_defect_row *row)
{
    defect_list *l = ctx;
    if (l->n < 8)
        l->rows[l->n] = *row;
    l->n++;
    return 0;
}

static void test_store__cpu_scan_equals_put(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    ks_report *a = make_report("ha", "b", 1, 16, 0, 3);
    ks_report *b = make_report("hb", "b", 1, 12, 100, 4);
    ks_cpu_add_defect(&b->cpus[4], &(ks_defect){.feature = 9, .source = KS_DEFECT_MCE}, &err);
    assert_int_equal(put(f->s, b, NULL, &err), KS_OK);
    assert_int_equal(put(f->s, a, NULL, &err), KS_OK);

    /* Whole fleet: host order, then cpu order. */
    cpu_check ca = {.r = a, .n = 0, .ok = true};
    assert_int_equal(ks_store_cpu_scan(f->s, "ha", check_cpu, &ca, &err), KS_OK);
    assert_true(ca.ok);
    assert_int_equal(ca.n, 16);
    cpu_check cb = {.r = b, .n = 0, .ok = true};
    assert_int_equal(ks_store_cpu_scan(f->s, "hb", check_cpu, &cb, &err), KS_OK);
    assert_true(cb.ok);
    assert_int_equal(cb.n, 12);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus"), 28);

    ks_store_cpu_row row;
    assert_int_equal(ks_store_cpu_get(&row, f->s, "hb", 101, &err), KS_OK);
    assert_int_equal(row.state, KS_CPU_DEGRADED);
    assert_true(ks_featset_test(&row.defective, 5));
    assert_false(ks_featset_test(&row.usable, 5));
    assert_int_equal(ks_store_cpu_get(&row, f->s, "hb", 5, &err), KS_ENOTFOUND);

    /* Trailing zero words are trimmed in the blob; decoding pads them. */
    assert_int_equal(qint(f->s, "SELECT max(length(defective)) FROM cpus"), 8);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus WHERE length(native) % 8 != 0"), 0);

    defect_list dl = {.n = 0};
    assert_int_equal(ks_store_defect_list(f->s, "hb", -1, collect_defect, &dl, &err), KS_OK);
    assert_int_equal(dl.n, 3);
    assert_int_equal(dl.rows[0].cpu_id, 101);
    assert_int_equal(dl.rows[0].feature, 5);
    assert_string_equal(dl.rows[0].feature_name, ks_feature_name(5));
    assert_int_equal(dl.rows[0].source, KS_DEFECT_SELFTEST);
    assert_string_equal(dl.rows[0].detail, "known-answer test failed");
    assert_int_equal(dl.rows[1].cpu_id, 102);
    assert_int_equal(dl.rows[1].feature, KS_FEATURE_NONE);
    assert_string_equal(dl.rows[1].feature_name, "");
    assert_int_equal(dl.rows[2].cpu_id, 104);
    assert_int_equal(dl.rows[2].feature, 9);
    assert_int_equal(dl.rows[2].source, KS_DEFECT_MCE);
    dl.n = 0;
    assert_int_equal(ks_store_defect_list(f->s, NULL, 1, collect_defect, &dl, &err), KS_OK);
    assert_int_equal(dl.n, 1); /* only ha/1 */
    dl.n = 0;
    assert_int_equal(ks_store_defect_list(f->s, NULL, -1, collect_defect, &dl, &err), KS_OK);
    assert_int_equal(dl.n, 5);

    /* A new report drops CPUs no longer reported and their defects. */
    ks_report *b2 = make_report("hb", "b", 2, 6, 100, 4);
    ks_store_put_result res;
    assert_int_equal(put(f->s, b2, &res, &err), KS_OK);
    assert_int_equal(res.n_cpus_removed, 6);
    assert_int_equal(res.n_cpus_added, 0);
    cb = (cpu_check){.r = b2, .n = 0, .ok = true};
    assert_int_equal(ks_store_cpu_scan(f->s, "hb", check_cpu, &cb, &err), KS_OK);
    assert_true(cb.ok);
    assert_int_equal(cb.n, 6);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpu_defects WHERE host_id = 'hb'"), 2);
    assert_int_equal(qint(f->s, "SELECT n_cpus FROM hosts WHERE id = 'hb'"), 6);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);
    ks_report_free(a);
    ks_report_free(b);
    ks_report_free(b2);
}

/* ---- vms and allocations ------------------------------------------------- */

static void test_store__double_allocation_refused(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    put_ok(f->s, "h1", "b", 1, 8);
    const int32_t a[] = {1, 2, 3};
    const int32_t b[] = {4, 3};
    assert_int_equal(insert_vm(f->s, "vm-a", "h1", a, 3, &err), KS_OK);
    /* SPEC: the store's allocation guard is the last line of defence. */
    assert_int_equal(insert_vm(f->s, "vm-b", "h1", b, 2, &err), KS_ECONFLICT);
    assert_string_equal(err.msg, "host cpu h1/3 is already allocated");
    /* The first VM is intact, the second left nothing behind. */
    ks_store_vm_row v;
    assert_int_equal(ks_store_vm_get(&v, f->s, "vm-a", true, &err), KS_OK);
    assert_int_equal(v.n_vcpus, 3);
    assert_string_equal(v.plan_json, "{\"generation\":1}");
    assert_string_equal(v.request_json, "{\"name\":\"x\"}");
    ks_store_vm_row_destroy(&v);
    assert_int_equal(ks_store_vm_get(&v, f->s, "vm-b", false, &err), KS_ENOTFOUND);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vm_vcpus"), 3);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vm_vcpus WHERE vm_name = 'vm-a' AND "
                                "cpu_id = 3"),
                     1);

    /* Same name: exists.  Unknown CPU / host: not found.  Duplicate vcpu: invalid. */
    const int32_t c[] = {5};
    assert_int_equal(insert_vm(f->s, "vm-a", "h1", c, 1, &err), KS_EEXIST);
    assert_string_equal(err.msg, "vm 'vm-a' already exists");
    const int32_t d[] = {50};
    assert_int_equal(insert_vm(f->s, "vm-c", "h1", d, 1, &err), KS_ENOTFOUND);
    assert_string_equal(err.msg, "host 'h1' has no cpu 50");
    assert_int_equal(insert_vm(f->s, "vm-c", "h9", c, 1, &err), KS_ENOTFOUND);
    ks_store_vm_row vm;
    memset(&vm, 0, sizeof(vm));
    snprintf(vm.name, sizeof(vm.name), "vm-d");
    snprintf(vm.host_id, sizeof(vm.host_id), "h1");
    ks_store_vcpu_alloc dup[2] = {{0, 6}, {0, 7}};
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_vm_insert(f->s, &vm, dup, 2, &err), KS_EINVAL);
    assert_int_equal(ks_store_rollback(f->s, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vms"), 1);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);
}

static void test_store__rollback_leaves_nothing(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    ks_report *r = make_report("h1", "b", 1, 4, 0, 0);
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_host_put_report(f->s, r, "{}", 1, NULL, &err), KS_OK);
    ks_store_vm_row vm;
    memset(&vm, 0, sizeof(vm));
    snprintf(vm.name, sizeof(vm.name), "vm1");
    snprintf(vm.host_id, sizeof(vm.host_id), "h1");
    ks_store_vcpu_alloc v[2] = {{0, 1}, {1, 1}};
    assert_int_equal(
        ks_store_event_append(NULL, f->s, 1, "host.registered", "h1", NULL, NULL, &err), KS_OK);
    /* The second vcpu collides with the first: the whole placement fails. */
    assert_int_equal(ks_store_vm_insert(f->s, &vm, v, 2, &err), KS_ECONFLICT);
    assert_true(ks_store_in_txn(f->s));
    assert_int_equal(ks_store_rollback(f->s, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM hosts"), 0);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus"), 0);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vms"), 0);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vm_vcpus"), 0);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM events"), 0);

    /* Closing with a transaction open discards it too. */
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_host_put_report(f->s, r, "{}", 1, NULL, &err), KS_OK);
    ks_store_close(f->s);
    assert_int_equal(ks_store_open(&f->s, f->path, NULL, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM hosts"), 0);
    ks_report_free(r);
}

/* A unit that fails inside a shared transaction is undone alone. */
static void test_store__savepoints(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    put_ok(f->s, "h1", "b", 1, 8);
    assert_int_equal(ks_store_savepoint(f->s, KS_STORE_SP_MARK, &err), KS_EINTERNAL);
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    static const int32_t a[] = {0, 1}, b[] = {1, 2}, c[] = {3};
    assert_int_equal(ks_store_savepoint(f->s, KS_STORE_SP_MARK, &err), KS_OK);
    assert_int_equal(insert_vm(f->s, "vm-a", "h1", a, 2, &err), KS_OK);
    assert_int_equal(ks_store_savepoint(f->s, KS_STORE_SP_KEEP, &err), KS_OK);
    /* cpu 1 is taken: this unit fails and is undone, vm-a stays */
    assert_int_equal(ks_store_savepoint(f->s, KS_STORE_SP_MARK, &err), KS_OK);
    assert_int_equal(ks_store_event_append(NULL, f->s, 1, "vm.placed", "h1", "vm-b", NULL, &err),
                     KS_OK);
    assert_int_equal(insert_vm(f->s, "vm-b", "h1", b, 2, &err), KS_ECONFLICT);
    assert_int_equal(ks_store_savepoint(f->s, KS_STORE_SP_UNDO, &err), KS_OK);
    assert_int_equal(ks_store_savepoint(f->s, KS_STORE_SP_MARK, &err), KS_OK);
    assert_int_equal(insert_vm(f->s, "vm-c", "h1", c, 1, &err), KS_OK);
    assert_int_equal(ks_store_savepoint(f->s, KS_STORE_SP_KEEP, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vms"), 2);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vm_vcpus"), 3);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM events WHERE vm = 'vm-b'"), 0);
    assert_int_equal(ks_store_savepoint(f->s, (ks_store_sp_action)7, &err), KS_EINTERNAL);
}

static bool veto_all(void *ctx)
{
    (*(int *)ctx)++;
    return true;
}

/* The fault hook: a vetoed COMMIT fails, keeps nothing, and the store works after. */
static void test_store__commit_veto(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    int asked = 0;
    if (g_pg) {
        assert_int_equal(ks_store_set_commit_veto(f->s, veto_all, &asked, &err), KS_EUNSUPPORTED);
        return;
    }
    assert_int_equal(ks_store_set_commit_veto(f->s, veto_all, &asked, &err), KS_OK);
    ks_report *r = make_report("h1", "b", 1, 4, 0, 0);
    assert_int_not_equal(put(f->s, r, NULL, &err), KS_OK);
    assert_int_equal(asked, 1);
    assert_false(ks_store_in_txn(f->s));
    assert_int_equal(qint(f->s, "SELECT count(*) FROM hosts"), 0);
    assert_int_equal(ks_store_set_commit_veto(f->s, NULL, NULL, &err), KS_OK);
    assert_int_equal(put(f->s, r, NULL, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM hosts"), 1);
    ks_report_free(r);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* options.background_checkpoint: the WAL's pages reach the database file
 * without any COMMIT checkpointing them (autocheckpoint is far away). */
static void test_store__background_checkpoint(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    ks_store_options o = KS_STORE_OPTIONS_INIT;
    o.background_checkpoint = true;
    ks_store_close(f->s);
    f->s = NULL;
    if (g_pg) { /* ignored there */
        assert_int_equal(ks_store_open(&f->s, f->path, &o, &err), KS_OK);
        return;
    }
    char db[600];
    ks_test_path(db, sizeof(db), "%s/ckpt.db", f->dir);
    assert_int_equal(ks_store_open(&f->s, db, &o, &err), KS_OK);
    long before = file_size(db);
    char host[16];
    for (int i = 0; i < 40; i++) {
        snprintf(host, sizeof(host), "h%d", i);
        put_ok(f->s, host, "b", 1, 64);
    }
    long after = before;
    for (int tries = 0; tries < 100 && after <= before + 65536; tries++) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        after = file_size(db);
    }
    if (after <= before + 65536)
        fail_msg("database file %ld -> %ld bytes: nothing was checkpointed", before, after);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM hosts"), 40);
}

static void test_store__host_delete_with_vms_refused(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    put_ok(f->s, "h1", "b", 1, 4);
    put_ok(f->s, "h2", "b", 1, 4);
    const int32_t a[] = {0, 1};
    assert_int_equal(insert_vm(f->s, "vm1", "h1", a, 2, &err), KS_OK);
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_pool_create(f->s, "p1", NULL, 1, &err), KS_OK);
    const char *members[] = {"h1", "h2"};
    assert_int_equal(ks_store_pool_members_set(f->s, "p1", members, 2, &err), KS_OK);
    assert_int_equal(ks_store_host_delete(f->s, "h1", &err), KS_ECONFLICT);
    assert_string_equal(err.msg, "host 'h1' has 1 vms");
    assert_int_equal(ks_store_host_delete(f->s, "nope", &err), KS_ENOTFOUND);
    /* A report that drops an allocated CPU is refused as well. */
    ks_report *r = make_report("h1", "b", 2, 4, 1, 0); /* ids 1..4: cpu 0 gone */
    assert_int_equal(ks_store_host_put_report(f->s, r, NULL, 2, NULL, &err), KS_ECONFLICT);
    assert_string_equal(err.msg, "cpu 0 of host 'h1' is allocated to vm 'vm1' but no longer "
                                 "reported");
    ks_report_free(r);
    assert_int_equal(ks_store_vm_delete(f->s, "vm1", &err), KS_OK);
    assert_int_equal(ks_store_vm_delete(f->s, "vm1", &err), KS_ENOTFOUND);
    assert_int_equal(ks_store_host_delete(f->s, "h1", &err), KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    /* Cascades: cpus, defects, report, memberships. */
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus WHERE host_id = 'h1'"), 0);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpu_defects WHERE host_id = 'h1'"), 0);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM host_reports WHERE host_id = 'h1'"), 0);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM pool_members"), 1);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vm_vcpus"), 0);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus"), 4);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);
}

typedef struct vcpu_list {
    ks_store_vcpu_row rows[16];
    int n;
} vcpu_list;

static int collect_vcpu(void *ctx, const ks_store_vcpu_row *row)
{
    vcpu_list *l = ctx;
    if (l->n < 16)
        l->rows[l->n] = *row;
    l->n++;
    return 0;
}

static int collect_vm(void *ctx, const ks_store_vm_row *row)
{
    id_list *l = ctx;
    snprintf(l->ids[l->n++], LBUF, "%s", row->name);
    return 0;
}

static int stop_at_first_vm(void *ctx, const ks_store_vm_row *row)
{
    (void)row;
    (*(int *)ctx)++;
    return 1;
}

/* ---- schema 3: CPU allocations as per-host bitmaps (SQLite) --------------- */

static void sqlite_exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("'%.60s...': %s", sql, msg ? msg : "?");
}

/* Deletes VM `name` in a transaction of its own, rolled back on error. */
static ks_code delete_vm(ks_store *s, const char *name, ks_err *err)
{
    ks_code rc = ks_store_begin(s, err);
    if (rc == KS_OK)
        rc = ks_store_vm_delete(s, name, err);
    if (rc == KS_OK)
        return ks_store_commit(s, err);
    ks_store_rollback(s, NULL);
    return rc;
}

/* A schema-2 database (a vm_vcpus row per vCPU) migrates to the vCPUs in the
 * VM rows and one bitmap per host, and the guard holds on what it carried. */
static void test_store__migrate_v2_allocations(void **state)
{
    fixture *f = *state;
    if (g_pg)
        return; /* PostgreSQL keeps its vm_vcpus table and UNIQUE constraint */
    ks_store_close(f->s);
    f->s = NULL;
    char path[1300];
    ks_test_path(path, sizeof(path), "%s/v2.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite_exec_ok(db, ks_store__migrations[0]);
    sqlite_exec_ok(db, ks_store__migrations[1]);
    sqlite_exec_ok(
        db, "PRAGMA user_version = 2;"
            "INSERT INTO hosts (id, registered_us, updated_us) VALUES ('h1', 1, 1), ('h2', 1, 1);"
            "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 15) "
            "INSERT INTO cpus (host_id, cpu_id, package, die, cluster, core, thread, numa_node, "
            "l2_group, l3_group, state, native, usable, defective) "
            "SELECT h.id, c.i, 0, 0, 0, c.i, 0, 0, 0, 0, 'online', X'', X'', X'' FROM c, hosts h;"
            "INSERT INTO vms (name, host_id, state, generation, n_vcpus, created_us, updated_us, "
            "plan_json) VALUES ('vm-a', 'h1', 'running', 1, 3, 1, 1, '{}'), "
            "('vm-b', 'h2', 'running', 1, 1, 1, 1, '{}'), ('vm-c', 'h1', 'failed', 1, 0, 1, 1, "
            "NULL);"
            "INSERT INTO vm_vcpus VALUES ('vm-a', 2, 'h1', 1), ('vm-a', 0, 'h1', 3), "
            "('vm-a', 1, 'h1', 9), ('vm-b', 0, 'h2', 15);");
    sqlite3_close(db);

    ks_err err = {0};
    assert_int_equal(ks_store_open(&f->s, path, NULL, &err), KS_OK);
    assert_int_equal(qint(f->s, "PRAGMA user_version"), KS_STORE_SCHEMA_VERSION);
    assert_int_equal(qint(f->s, "SELECT vcpus = '[[0,3],[1,9],[2,1]]' FROM vms "
                                "WHERE name = 'vm-a'"),
                     1);
    assert_int_equal(qint(f->s, "SELECT vcpus = '[]' FROM vms WHERE name = 'vm-c'"), 1);
    /* bit c%8 of byte c/8: h1 holds CPUs 1, 3 and 9, h2 CPU 15 */
    assert_int_equal(qint(f->s, "SELECT used = X'0A02' FROM cpu_alloc WHERE host_id = 'h1'"), 1);
    assert_int_equal(qint(f->s, "SELECT used = X'0080' FROM cpu_alloc WHERE host_id = 'h2'"), 1);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpu_alloc WHERE present = X'FFFF'"), 2);
    /* each host lists its VMs (vm-c has no vCPU but is on h1) */
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpu_alloc a, json_each(a.vms) j WHERE "
                                "a.host_id = 'h1' AND j.value IN ('vm-a', 'vm-c')"),
                     2);
    assert_int_equal(qint(f->s, "SELECT vms = '[\"vm-b\"]' FROM cpu_alloc WHERE host_id = 'h2'"), 1);
    vcpu_list vl = {0};
    assert_int_equal(ks_store_vcpu_scan(f->s, "h1", NULL, collect_vcpu, &vl, &err), KS_OK);
    assert_int_equal(vl.n, 3);
    assert_int_equal(vl.rows[0].cpu_id, 1);
    assert_int_equal(vl.rows[0].vcpu, 2);
    assert_int_equal(vl.rows[2].cpu_id, 9);
    assert_string_equal(vl.rows[2].vm_name, "vm-a");
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);

    const int32_t want[] = {8, 9};
    assert_int_equal(insert_vm(f->s, "vm-d", "h1", want, 2, &err), KS_ECONFLICT);
    assert_string_equal(err.msg, "host cpu h1/9 is already allocated");
    assert_int_equal(delete_vm(f->s, "vm-a", &err), KS_OK);
    assert_int_equal(insert_vm(f->s, "vm-d", "h1", want, 2, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT used = X'0003' FROM cpu_alloc WHERE host_id = 'h1'"), 1);
    assert_int_equal(qint(f->s, "SELECT vms = '[\"vm-c\",\"vm-d\"]' FROM cpu_alloc "
                                "WHERE host_id = 'h1'"),
                     1);
    ks_store_vm_filter flt = KS_STORE_VM_FILTER_INIT;
    flt.host_id = "h1";
    uint64_t n = 0;
    assert_int_equal(ks_store_vm_count(&n, f->s, &flt, &err), KS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);
}

/* A plan is stored compressed (SQLite) and read back byte for byte, by a
 * second handle too; a damaged one is an error, never a wrong document. */
static void test_store__plan_compressed(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    put_ok(f->s, "h1", "b", 1, 8);
    /* a plan's shape: feature names, and keys repeated per vCPU */
    char plan[8192];
    size_t len = (size_t)snprintf(plan, sizeof(plan), "{\"features\":{\"enable\":[");
    for (unsigned i = 0; i < 120 && i < ks_feature_count(); i++)
        len += (size_t)snprintf(plan + len, sizeof(plan) - len, "%s\"%s\"", i ? "," : "",
                                ks_feature_name(i));
    len += (size_t)snprintf(plan + len, sizeof(plan) - len, "]},\"vcpus\":[");
    for (int i = 0; i < 8; i++)
        len += (size_t)snprintf(plan + len, sizeof(plan) - len,
                                "%s{\"core\":%d,\"host_cpu\":%d,\"kind\":\"performance\"}",
                                i ? "," : "", i, i * 3);
    snprintf(plan + len, sizeof(plan) - len, "]}");
    ks_store_vm_row vm;
    memset(&vm, 0, sizeof(vm));
    snprintf(vm.name, sizeof(vm.name), "vm-z");
    snprintf(vm.host_id, sizeof(vm.host_id), "h1");
    vm.generation = 1;
    vm.plan_json = plan;
    ks_store_vcpu_alloc one = {0, 1};
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_vm_insert(f->s, &vm, &one, 1, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    ks_store_vm_row got;
    assert_int_equal(ks_store_vm_get(&got, f->s, "vm-z", true, &err), KS_OK);
    assert_string_equal(got.plan_json, plan);
    ks_store_vm_row_destroy(&got);
    if (g_pg)
        return; /* PostgreSQL compresses large values itself (TOAST) */
    assert_int_equal(qint(f->s, "SELECT plan_json IS NULL FROM vms"), 1);
    int64_t stored = qint(f->s, "SELECT length(plan_z) FROM vms");
    assert_true(stored > 0 && (size_t)stored * 4 < strlen(plan));
    ks_store *r = NULL;
    assert_int_equal(ks_store_open_readonly(&r, f->path, &err), KS_OK);
    assert_int_equal(ks_store_vm_get(&got, r, "vm-z", true, &err), KS_OK);
    assert_string_equal(got.plan_json, plan);
    ks_store_vm_row_destroy(&got);
    ks_store_close(r);

    raw_sql(f, "UPDATE vms SET plan_z = X'01ff00'");
    assert_int_equal(ks_store_vm_get(&got, f->s, "vm-z", true, &err), KS_EIO);
    assert_non_null(strstr(err.msg, "plan of vm 'vm-z'"));
    assert_int_equal(ks_store_vm_get(&got, f->s, "vm-z", false, &err), KS_OK); /* no plan read */
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_EIO);
    raw_sql(f, "UPDATE vms SET plan_z = X'07ff00'"); /* a dictionary the database lacks */
    assert_int_equal(ks_store_vm_get(&got, f->s, "vm-z", true, &err), KS_EIO);
    assert_non_null(strstr(err.msg, "needs dictionary 7"));
}

/* Damages the store behind its back with `sql`; the integrity check must
 * report exactly `msg`. */
static void expect_damage_found(fixture *f, const char *sql, const char *msg)
{
    ks_err err = {0};
    raw_sql(f, sql);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_EIO);
    assert_string_equal(err.msg, msg);
}

/* What the bitmap guard replaced a declared constraint with is checked: damage
 * done behind the store's back is reported, and a delete that would make it
 * worse is refused whole. */
static void test_store__allocation_damage_found(void **state)
{
    fixture *f = *state;
    if (g_pg)
        return; /* PostgreSQL declares the guard: UNIQUE (host_id, cpu_id) */
    ks_err err = {0};
    put_ok(f->s, "h1", "b", 1, 8);
    const int32_t a[] = {1, 2}, b[] = {3};
    assert_int_equal(insert_vm(f->s, "vm-a", "h1", a, 2, &err), KS_OK);
    assert_int_equal(insert_vm(f->s, "vm-b", "h1", b, 1, &err), KS_OK);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);

    expect_damage_found(f, "UPDATE cpu_alloc SET used = X'06'", /* CPU 3 lost */
                        "integrity check: cpu allocation differs from the vcpus of the vms on "
                        "host: h1");
    assert_int_equal(delete_vm(f->s, "vm-b", &err), KS_EIO);
    assert_non_null(strstr(err.msg, "lacks cpu 3 of vm 'vm-b'"));
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vms"), 2);
    raw_sql(f, "UPDATE cpu_alloc SET used = X'0E'");
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);

    /* the CPU set stands for the foreign key to cpus */
    expect_damage_found(f, "UPDATE cpu_alloc SET present = X'0F'",
                        "integrity check: cpu set differs from the cpus of host: h1");
    const int32_t c[] = {5};
    assert_int_equal(insert_vm(f->s, "vm-c", "h1", c, 1, &err), KS_ENOTFOUND);
    assert_string_equal(err.msg, "host 'h1' has no cpu 5");
    put_ok(f->s, "h1", "b", 2, 6); /* a report with changed CPUs writes the set anew */
    assert_int_equal(qint(f->s, "SELECT present = X'3F' FROM cpu_alloc"), 1);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);

    /* the host's VM list stands for the index on vms.host_id */
    expect_damage_found(f, "UPDATE cpu_alloc SET vms = '[\"vm-a\"]'",
                        "integrity check: vm missing from the list of its host: h1/vm-b");
    expect_damage_found(f, "UPDATE cpu_alloc SET vms = '[\"vm-a\",\"vm-b\",\"vm-x\"]'",
                        "integrity check: host lists a vm twice or one it does not run: h1/vm-x");
    raw_sql(f, "UPDATE cpu_alloc SET vms = '[\"vm-a\",\"vm-b\"]'");
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);

    expect_damage_found(f, "UPDATE vms SET vcpus = '[[0,2]]' WHERE name = 'vm-b'",
                        "integrity check: cpu allocated twice: h1/2");
    expect_damage_found(f, "UPDATE vms SET vcpus = '[[0,50]]' WHERE name = 'vm-b'",
                        "integrity check: vcpu pinned to a cpu that does not exist: vm-b on h1/50");
    raw_sql(f, "UPDATE vms SET vcpus = '[[0,3]' WHERE name = 'vm-b'");
    vcpu_list vl = {0};
    assert_int_equal(ks_store_vcpu_scan(f->s, NULL, "vm-b", collect_vcpu, &vl, &err), KS_EIO);
    assert_string_equal(err.msg, "vcpus of vm 'vm-b' are damaged");
    assert_int_equal(delete_vm(f->s, "vm-b", &err), KS_EIO);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_EIO);
}

static void test_store__vm_update_and_list(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    put_ok(f->s, "h1", "b", 1, 8);
    put_ok(f->s, "h2", "b", 1, 8);
    const int32_t a[] = {0, 1}, b[] = {2}, c[] = {0};
    assert_int_equal(insert_vm(f->s, "vm-a", "h1", a, 2, &err), KS_OK);
    assert_int_equal(insert_vm(f->s, "vm-b", "h1", b, 1, &err), KS_OK);
    assert_int_equal(insert_vm(f->s, "vm-c", "h2", c, 1, &err), KS_OK);

    /* Re-plan vm-a: move to h2, three vcpus; old rows go, generation must grow. */
    ks_store_vcpu_alloc nv[3] = {{0, 5}, {1, 6}, {2, 7}};
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_vm_update_plan(f->s, "vm-a", "h2", 1, "{}", nv, 3, 50, &err),
                     KS_ECONFLICT);
    assert_string_equal(err.msg, "plan generation 1 is not newer than stored 1");
    assert_int_equal(ks_store_vm_update_plan(f->s, "vm-a", "h2", 2, "{\"g\":2}", nv, 3, 50, &err),
                     KS_OK);
    assert_int_equal(ks_store_vm_update_plan(f->s, "zz", "h2", 2, "{}", nv, 0, 50, &err),
                     KS_ENOTFOUND);
    assert_int_equal(ks_store_vm_set_state(f->s, "vm-b", KS_STORE_VM_NEEDS_MIGRATION, 60, &err),
                     KS_OK);
    assert_int_equal(ks_store_vm_set_applied(f->s, "vm-c", 1, "qmp timeout", 61, &err), KS_OK);
    assert_int_equal(ks_store_vm_set_applied(f->s, "zz", 1, NULL, 61, &err), KS_ENOTFOUND);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);

    ks_store_vm_row v;
    assert_int_equal(ks_store_vm_get(&v, f->s, "vm-a", true, &err), KS_OK);
    assert_string_equal(v.host_id, "h2");
    assert_int_equal(v.generation, 2);
    assert_int_equal(v.n_vcpus, 3);
    assert_int_equal(v.updated_us, 50);
    assert_string_equal(v.plan_json, "{\"g\":2}");
    ks_store_vm_row_destroy(&v);
    assert_int_equal(ks_store_vm_get(&v, f->s, "vm-c", false, &err), KS_OK);
    assert_int_equal(v.applied_generation, 1);
    assert_string_equal(v.apply_error, "qmp timeout");
    assert_null(v.plan_json);

    vcpu_list vl = {.n = 0};
    assert_int_equal(ks_store_vcpu_scan(f->s, NULL, NULL, collect_vcpu, &vl, &err), KS_OK);
    assert_int_equal(vl.n, 5); /* h1: b/2; h2: c/0, a/5,6,7 */
    assert_string_equal(vl.rows[0].host_id, "h1");
    assert_string_equal(vl.rows[0].vm_name, "vm-b");
    assert_string_equal(vl.rows[1].vm_name, "vm-c");
    assert_int_equal(vl.rows[4].cpu_id, 7);
    assert_int_equal(vl.rows[4].vcpu, 2);
    vl.n = 0;
    assert_int_equal(ks_store_vcpu_scan(f->s, NULL, "vm-a", collect_vcpu, &vl, &err), KS_OK);
    assert_int_equal(vl.n, 3);
    vl.n = 0;
    assert_int_equal(ks_store_vcpu_scan(f->s, "h1", NULL, collect_vcpu, &vl, &err), KS_OK);
    assert_int_equal(vl.n, 1);

    id_list l = {.n = 0};
    ks_store_vm_filter flt = KS_STORE_VM_FILTER_INIT;
    flt.host_id = "h2";
    assert_int_equal(ks_store_vm_list(f->s, &flt, collect_vm, &l, &err), KS_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.ids[0], "vm-a");
    assert_string_equal(l.ids[1], "vm-c");
    flt = (ks_store_vm_filter)KS_STORE_VM_FILTER_INIT;
    flt.state = KS_STORE_VM_NEEDS_MIGRATION;
    l.n = 0;
    assert_int_equal(ks_store_vm_list(f->s, &flt, collect_vm, &l, &err), KS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.ids[0], "vm-b");
    flt = (ks_store_vm_filter)KS_STORE_VM_FILTER_INIT;
    flt.after_name = "vm-a";
    flt.limit = 1;
    l.n = 0;
    assert_int_equal(ks_store_vm_list(f->s, &flt, collect_vm, &l, &err), KS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.ids[0], "vm-b");
    int calls = 0;
    assert_int_equal(ks_store_vm_list(f->s, NULL, stop_at_first_vm, &calls, &err), KS_OK);
    assert_int_equal(calls, 1);
    uint64_t n = 0;
    flt = (ks_store_vm_filter)KS_STORE_VM_FILTER_INIT;
    flt.pool = "";
    assert_int_equal(ks_store_vm_count(&n, f->s, &flt, &err), KS_OK);
    assert_int_equal(n, 3);
    flt.pool = "p";
    assert_int_equal(ks_store_vm_count(&n, f->s, &flt, &err), KS_OK);
    assert_int_equal(n, 0);
    flt = (ks_store_vm_filter)KS_STORE_VM_FILTER_INIT;
    flt.host_id = "h2";
    assert_int_equal(ks_store_vm_count(&n, f->s, &flt, &err), KS_OK);
    assert_int_equal(n, 2);
    flt.state = KS_STORE_VM_RUNNING;
    assert_int_equal(ks_store_vm_count(&n, f->s, &flt, &err), KS_OK);
    assert_int_equal(n, 2);
    flt.host_id = "h1";
    assert_int_equal(ks_store_vm_count(&n, f->s, &flt, &err), KS_OK);
    assert_int_equal(n, 0); /* vm-b on h1 needs migration */
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);
}

/* ---- backup -------------------------------------------------------------- */

static void test_store__backup_restores(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    put_ok(f->s, "h1", "b", 1, 16);
    put_ok(f->s, "h2", "b", 3, 8);
    const int32_t a[] = {3, 4};
    assert_int_equal(insert_vm(f->s, "vm1", "h1", a, 2, &err), KS_OK);
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_event_append(NULL, f->s, 5, "vm.placed", "h1", "vm1", "{}", &err),
                     KS_OK);
    uint8_t hash[32] = {1, 2, 3};
    assert_int_equal(ks_store_token_add(NULL, f->s, hash, 32, "admin", NULL, "ops", 1, &err),
                     KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);

    char bpath[1300];
    ks_test_path(bpath, sizeof(bpath), "%s/backup.db", f->dir);
    assert_int_equal(ks_store_backup(f->s, bpath, &err), KS_OK);
    /* Writes after the backup are not in it. */
    put_ok(f->s, "h3", "b", 1, 2);

    ks_store *b = NULL;
    assert_int_equal(ks_store_open(&b, bpath, NULL, &err), KS_OK);
    assert_int_equal(ks_store_integrity_check(b, &err), KS_OK);
    /* On PostgreSQL too the backup is a SQLite file. */
    assert_string_equal(ks_store_backend(b), "sqlite");
    assert_int_equal(qint(b, "PRAGMA user_version"), KS_STORE_SCHEMA_VERSION);
    const char *counts[] = {"SELECT count(*) FROM cpus WHERE host_id != 'h3'",
                            "SELECT count(*) FROM cpu_defects WHERE host_id != 'h3'",
                            "SELECT count(*) FROM vm_vcpus", "SELECT count(*) FROM events",
                            "SELECT count(*) FROM tokens"};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        assert_int_equal(qint(b, counts[i]), qint(f->s, counts[i]));
    assert_int_equal(qint(b, "SELECT count(*) FROM hosts"), 2);
    ks_store_host_row h;
    assert_int_equal(ks_store_host_get(&h, b, "h2", true, &err), KS_OK);
    assert_int_equal(h.generation, 3);
    assert_string_equal(h.report_json, "{\"schema\":1}");
    ks_store_host_row_destroy(&h);
    ks_report *r = make_report("h1", "b", 1, 16, 0, 0);
    cpu_check cc = {.r = r, .n = 0, .ok = true};
    assert_int_equal(ks_store_cpu_scan(b, "h1", check_cpu, &cc, &err), KS_OK);
    assert_true(cc.ok);
    assert_int_equal(cc.n, 16);
    ks_report_free(r);
    ks_store_token_row t;
    assert_int_equal(ks_store_token_find(&t, b, hash, 32, &err), KS_OK);
    assert_string_equal(t.description, "ops");
    ks_store_close(b);

    /* Backing up again over an existing file replaces it. */
    assert_int_equal(ks_store_backup(f->s, bpath, &err), KS_OK);
    assert_int_equal(ks_store_open_readonly(&b, bpath, &err), KS_OK);
    assert_int_equal(qint(b, "SELECT count(*) FROM hosts"), 3);
    ks_store_close(b);
}

static void test_store__readonly_handle(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    put_ok(f->s, "h1", "b", 1, 4);
    ks_store *ro = NULL;
    assert_int_equal(ks_store_open_readonly(&ro, f->path, &err), KS_OK);
    assert_int_equal(qint(ro, "SELECT count(*) FROM cpus"), 4);
    assert_int_equal(ks_store_begin(ro, &err), KS_EINVAL);
    /* The reader sees what the writer commits later. */
    put_ok(f->s, "h2", "b", 1, 4);
    assert_int_equal(qint(ro, "SELECT count(*) FROM cpus"), 8);
    ks_store_close(ro);
}

/* ---- events, capacity, pools, policies ----------------------------------- */

typedef struct event_list {
    int64_t ids[16];
    char types[16][LBUF];
    int n;
} event_list;

static int collect_event(void *ctx, const ks_store_event_row *row)
{
    event_list *l = ctx;
    if (l->n < 16) {
        l->ids[l->n] = row->id;
        snprintf(l->types[l->n], LBUF, "%s", row->type);
    }
    l->n++;
    return 0;
}

static void test_store__events_since(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    int64_t ids[5];
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    for (int i = 0; i < 5; i++) {
        char type[32];
        snprintf(type, sizeof(type), "t%d", i);
        assert_int_equal(ks_store_event_append(&ids[i], f->s, (uint64_t)(100 + i), type,
                                               i % 2 ? "h1" : NULL, NULL, "{\"i\":1}", &err),
                         KS_OK);
        if (i)
            assert_true(ids[i] > ids[i - 1]);
    }
    assert_int_equal(ks_store_event_append(NULL, f->s, 1, "", NULL, NULL, NULL, &err), KS_EINVAL);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    event_list l = {.n = 0};
    assert_int_equal(ks_store_event_list(f->s, ids[1], 0, collect_event, &l, &err), KS_OK);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.ids[0], ids[2]);
    assert_string_equal(l.types[2], "t4");
    l.n = 0;
    assert_int_equal(ks_store_event_list(f->s, 0, 2, collect_event, &l, &err), KS_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.types[0], "t0");
    l.n = 0;
    assert_int_equal(ks_store_event_list(f->s, ids[4], 0, collect_event, &l, &err), KS_OK);
    assert_int_equal(l.n, 0);

    /* Prune by time; ids are never reused (AUTOINCREMENT). */
    uint64_t pruned = 0;
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_event_prune(&pruned, f->s, 105, &err), KS_OK);
    assert_int_equal(pruned, 5);
    int64_t id6 = 0;
    assert_int_equal(ks_store_event_append(&id6, f->s, 200, "t5", NULL, NULL, NULL, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_true(id6 > ids[4]);
}

static int collect_cap(void *ctx, const ks_store_capacity_row *row)
{
    event_list *l = ctx;
    if (l->n < 16) {
        l->ids[l->n] = (int64_t)row->allocated;
        snprintf(l->types[l->n], LBUF, "%s", row->scope);
    }
    l->n++;
    return 0;
}

static int collect_member(void *ctx, const char *pool, const char *host)
{
    id_list *l = ctx;
    snprintf(l->ids[l->n++], LBUF, "%s/%s", pool, host);
    return 0;
}

static int collect_pool(void *ctx, const ks_store_pool_row *row)
{
    id_list *l = ctx;
    snprintf(l->ids[l->n++], LBUF, "%s:%u", row->name, row->n_members);
    return 0;
}

static int collect_policy(void *ctx, const ks_store_policy_row *row)
{
    event_list *l = ctx;
    if (l->n < 16) {
        l->ids[l->n] = row->id;
        snprintf(l->types[l->n], LBUF, "%s %s", row->features_json, row->reason);
    }
    l->n++;
    return 0;
}

static void test_store__capacity_pools_policies(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    put_ok(f->s, "h1", "b", 1, 2);
    put_ok(f->s, "h2", "b", 1, 2);
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    for (int i = 0; i < 4; i++) {
        ks_store_capacity_row c;
        memset(&c, 0, sizeof(c));
        c.time_us = (uint64_t)(10 * i);
        snprintf(c.scope, sizeof(c.scope), "%s", i % 2 ? "fleet" : "host:h1");
        c.total = 100;
        c.allocated = (uint64_t)i;
        assert_int_equal(ks_store_capacity_insert(NULL, f->s, &c, &err), KS_OK);
    }
    assert_int_equal(ks_store_pool_create(f->s, "gold", "{\"vendor\":\"x\"}", 5, &err), KS_OK);
    assert_int_equal(ks_store_pool_create(f->s, "gold", NULL, 5, &err), KS_EEXIST);
    assert_int_equal(ks_store_pool_create(f->s, "bad name", NULL, 5, &err), KS_EINVAL);
    assert_int_equal(ks_store_pool_create(f->s, "iron", NULL, 5, &err), KS_OK);
    const char *m1[] = {"h2", "h1"};
    assert_int_equal(ks_store_pool_members_set(f->s, "gold", m1, 2, &err), KS_OK);
    const char *m2[] = {"h1", "h1"};
    assert_int_equal(ks_store_pool_members_set(f->s, "iron", m2, 2, &err), KS_EINVAL);
    const char *m3[] = {"h9"};
    assert_int_equal(ks_store_pool_members_set(f->s, "iron", m3, 1, &err), KS_ENOTFOUND);
    assert_int_equal(ks_store_pool_members_set(f->s, "none", m1, 2, &err), KS_ENOTFOUND);
    const char *m4[] = {"h1"};
    assert_int_equal(ks_store_pool_members_set(f->s, "iron", m4, 1, &err), KS_OK);
    int64_t pid = 0;
    assert_int_equal(ks_store_policy_add(&pid, f->s, KS_STORE_POLICY_FEATURE_BAN, "[\"rdrand\"]",
                                         "CVE", 9, &err),
                     KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);

    event_list l = {.n = 0};
    assert_int_equal(ks_store_capacity_list(f->s, "host:h1", 0, 0, collect_cap, &l, &err), KS_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.ids[1], 2);
    l.n = 0;
    assert_int_equal(ks_store_capacity_list(f->s, NULL, 15, 0, collect_cap, &l, &err), KS_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.types[0], "host:h1");
    assert_string_equal(l.types[1], "fleet");

    ks_store_pool_row p;
    assert_int_equal(ks_store_pool_get(&p, f->s, "gold", &err), KS_OK);
    assert_int_equal(p.n_members, 2);
    assert_string_equal(p.selector_json, "{\"vendor\":\"x\"}");
    ks_store_pool_row_destroy(&p);
    assert_int_equal(ks_store_pool_get(&p, f->s, "nope", &err), KS_ENOTFOUND);
    id_list il = {.n = 0};
    assert_int_equal(ks_store_pool_list(f->s, collect_pool, &il, &err), KS_OK);
    assert_int_equal(il.n, 2);
    assert_string_equal(il.ids[0], "gold:2");
    assert_string_equal(il.ids[1], "iron:1");
    il.n = 0;
    assert_int_equal(ks_store_pool_members_list(f->s, NULL, collect_member, &il, &err), KS_OK);
    assert_int_equal(il.n, 3);
    assert_string_equal(il.ids[0], "gold/h1");
    assert_string_equal(il.ids[2], "iron/h1");

    l.n = 0;
    assert_int_equal(ks_store_policy_list(f->s, collect_policy, &l, &err), KS_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.ids[0], pid);
    assert_string_equal(l.types[0], "[\"rdrand\"] CVE");

    /* A pool named by a VM cannot go. */
    ks_store_vm_row vm;
    memset(&vm, 0, sizeof(vm));
    snprintf(vm.name, sizeof(vm.name), "vm1");
    snprintf(vm.host_id, sizeof(vm.host_id), "h1");
    snprintf(vm.pool, sizeof(vm.pool), "gold");
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_vm_insert(f->s, &vm, NULL, 0, &err), KS_OK);
    assert_int_equal(ks_store_pool_delete(f->s, "gold", &err), KS_ECONFLICT);
    assert_int_equal(ks_store_pool_delete(f->s, "iron", &err), KS_OK);
    assert_int_equal(ks_store_pool_delete(f->s, "iron", &err), KS_ENOTFOUND);
    assert_int_equal(ks_store_policy_delete(f->s, pid, &err), KS_OK);
    assert_int_equal(ks_store_policy_delete(f->s, pid, &err), KS_ENOTFOUND);
    uint64_t pruned = 0;
    assert_int_equal(ks_store_capacity_prune(&pruned, f->s, 20, &err), KS_OK);
    assert_int_equal(pruned, 2);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM pool_members"), 2);
}

/* ---- idempotency and tokens ---------------------------------------------- */

static void test_store__idempotency(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    ks_store_idem_row r;
    assert_int_equal(ks_store_idem_get(&r, f->s, "k1", &err), KS_ENOTFOUND);
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_idem_put(f->s, "k1", "abc", 201, "{\"ok\":1}", 100, &err), KS_OK);
    assert_int_equal(ks_store_idem_put(f->s, "k1", "def", 201, "{}", 101, &err), KS_EEXIST);
    assert_int_equal(ks_store_idem_put(f->s, "k2", "abc", 409, NULL, 200, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_int_equal(ks_store_idem_get(&r, f->s, "k1", &err), KS_OK);
    assert_string_equal(r.key, "k1");
    assert_string_equal(r.request_hash, "abc");
    assert_int_equal(r.status, 201);
    assert_string_equal(r.response_json, "{\"ok\":1}");
    assert_int_equal(r.created_us, 100);
    ks_store_idem_row_destroy(&r);
    assert_int_equal(ks_store_idem_get(&r, f->s, "k2", &err), KS_OK);
    assert_null(r.response_json);
    uint64_t n = 0;
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_idem_expire(&n, f->s, 150, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ks_store_idem_get(&r, f->s, "k1", &err), KS_ENOTFOUND);
    assert_int_equal(ks_store_idem_get(&r, f->s, "k2", &err), KS_OK);
}

static int collect_token(void *ctx, const ks_store_token_row *row)
{
    id_list *l = ctx;
    snprintf(l->ids[l->n++], LBUF, "%s:%s:%u", row->role, row->host_id, row->hash_len);
    return 0;
}

static void test_store__tokens(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    uint8_t h1[32], h2[32];
    for (int i = 0; i < 32; i++) {
        h1[i] = (uint8_t)i;
        h2[i] = (uint8_t)(255 - i);
    }
    int64_t id1 = 0, id2 = 0;
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_token_add(&id1, f->s, h1, 32, "admin", NULL, "root", 1, &err), KS_OK);
    assert_int_equal(ks_store_token_add(&id2, f->s, h2, 32, "agent", "h7", NULL, 2, &err), KS_OK);
    assert_int_equal(ks_store_token_add(NULL, f->s, h1, 32, "reader", NULL, NULL, 3, &err),
                     KS_EEXIST);
    assert_int_equal(ks_store_token_add(NULL, f->s, h1, 0, "reader", NULL, NULL, 3, &err),
                     KS_EINVAL);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    ks_store_token_row t;
    assert_int_equal(ks_store_token_find(&t, f->s, h2, 32, &err), KS_OK);
    assert_int_equal(t.id, id2);
    assert_string_equal(t.role, "agent");
    assert_string_equal(t.host_id, "h7");
    assert_memory_equal(t.hash, h2, 32);
    assert_int_equal(t.hash_len, 32);
    assert_int_equal(ks_store_token_find(&t, f->s, h2, 31, &err), KS_ENOTFOUND);
    id_list l = {.n = 0};
    assert_int_equal(ks_store_token_list(f->s, collect_token, &l, &err), KS_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.ids[0], "admin::32");
    assert_string_equal(l.ids[1], "agent:h7:32");
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_token_delete(f->s, id1, &err), KS_OK);
    assert_int_equal(ks_store_token_delete(f->s, id1, &err), KS_ENOTFOUND);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_int_equal(ks_store_token_find(&t, f->s, h1, 32, &err), KS_ENOTFOUND);
}

/* ---- durability and locking ---------------------------------------------- */

/* SPEC: ks_store.h "in WAL mode a committed transaction survives a crash of
 * the process": a child commits one report, leaves a second transaction open
 * and dies without closing anything. */
static void test_store__commit_survives_process_crash(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    ks_store_close(f->s);
    f->s = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ks_store *s = NULL;
        ks_report *a = make_report("h-committed", "b", 1, 8, 0, 0);
        ks_report *b = make_report("h-open", "b", 1, 8, 0, 0);
        if (ks_store_open(&s, f->path, NULL, &err) != KS_OK || put(s, a, NULL, &err) != KS_OK ||
            ks_store_begin(s, &err) != KS_OK ||
            ks_store_host_put_report(s, b, NULL, 1, NULL, &err) != KS_OK)
            _exit(3);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(ks_store_open(&f->s, f->path, NULL, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM hosts WHERE id = 'h-committed'"), 1);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus"), 8);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM hosts WHERE id = 'h-open'"), 0);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);
}

static void test_store__second_writer_waits_then_gives_up(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    ks_store *other = NULL;
    if (g_pg) {
        /* Row locks, not a database lock: the second writer waits for the
         * host row only, lock_timeout = busy_timeout_ms. */
        put_ok(f->s, "h1", "b", 1, 4);
        ks_store_options o = KS_STORE_OPTIONS_INIT;
        o.busy_timeout_ms = 50;
        assert_int_equal(ks_store_open(&other, f->path, &o, &err), KS_OK);
        assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
        assert_int_equal(ks_store_host_set_state(f->s, "h1", KS_STORE_HOST_DRAINING, 5, &err),
                         KS_OK);
        assert_int_equal(ks_store_begin(other, &err), KS_OK); /* no lock taken yet */
        uint64_t t0 = now_us();
        assert_int_equal(ks_store_host_set_state(other, "h1", KS_STORE_HOST_READY, 6, &err),
                         KS_EUNAVAIL);
        assert_true(now_us() - t0 >= 40000);
        assert_int_equal(ks_store_rollback(other, &err), KS_OK);
        assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
        /* Other rows were never blocked; after the commit the row is free. */
        assert_int_equal(ks_store_begin(other, &err), KS_OK);
        assert_int_equal(ks_store_host_set_state(other, "h1", KS_STORE_HOST_READY, 6, &err), KS_OK);
        assert_int_equal(ks_store_commit(other, &err), KS_OK);
        ks_store_close(other);
        return;
    }
    ks_store_options o = KS_STORE_OPTIONS_INIT;
    o.busy_timeout_ms = 50;
    assert_int_equal(ks_store_open(&other, f->path, &o, &err), KS_OK);
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    uint64_t t0 = now_us();
    assert_int_equal(ks_store_begin(other, &err), KS_EUNAVAIL);
    assert_true(now_us() - t0 >= 40000); /* it did wait for the lock */
    assert_false(ks_store_in_txn(other));
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_int_equal(ks_store_begin(other, &err), KS_OK);
    assert_int_equal(ks_store_rollback(other, &err), KS_OK);
    ks_store_close(other);
}

/* ---- escape hatch and damaged data --------------------------------------- */

static void test_store__query_int_and_corrupt_rows(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    int64_t v = 0;
    put_ok(f->s, "h1", "b", 1, 4);
    assert_int_equal(ks_store_query_int(&v, f->s, "SELECT count(*) FROM cpus;", &err), KS_OK);
    assert_int_equal(v, 4);
    /* Never a way around the transaction rule or into several statements. */
    assert_int_equal(ks_store_query_int(&v, f->s, "DELETE FROM cpus", &err), KS_EINVAL);
    assert_int_equal(ks_store_query_int(&v, f->s, "SELECT 1; DELETE FROM cpus", &err), KS_EINVAL);
    assert_int_equal(ks_store_query_int(&v, f->s, "SELEKT 1", &err), KS_EINVAL);
    assert_int_equal(ks_store_query_int(&v, f->s, "SELECT 'x'", &err), KS_EINVAL);
    assert_int_equal(ks_store_query_int(&v, f->s, "SELECT 1 WHERE 1 = 0", &err), KS_ENOTFOUND);
    /* Inside a transaction too, and without disturbing it. */
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_query_int(&v, f->s, "DELETE FROM cpus", &err), KS_EINVAL);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus"), 4);
    assert_int_equal(ks_store_event_append(NULL, f->s, 1, "x", NULL, NULL, NULL, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM events"), 1);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus"), 4);

    /* A feature blob that is not whole words is reported, not decoded. */
    raw_sql(f, g_pg ? "UPDATE cpus SET usable = '\\x01020304050607'::bytea "
                      "WHERE host_id = 'h1' AND cpu_id = 2"
                    : "UPDATE cpus SET usable = x'01020304050607' "
                      "WHERE host_id = 'h1' AND cpu_id = 2");
    scan_count_fwd sc = {0};
    assert_int_equal(ks_store_cpu_scan(f->s, NULL, count_rows, &sc, &err), KS_EIO);
    assert_string_equal(err.msg, "corrupt row for cpu 2 of host 'h1'");
    ks_store_cpu_row row;
    assert_int_equal(ks_store_cpu_get(&row, f->s, "h1", 2, &err), KS_EIO);
    /* The next report rewrites the damaged row. */
    ks_report *r = make_report("h1", "b", 2, 4, 0, 0);
    assert_int_equal(put(f->s, r, NULL, &err), KS_OK);
    assert_int_equal(ks_store_cpu_get(&row, f->s, "h1", 2, &err), KS_OK);
    assert_true(ks_featset_equal(&row.usable, &r->cpus[2].usable));
    ks_report_free(r);
}

/* ---- PostgreSQL schema --------------------------------------------------- */

static void test_store__pg_migrate_and_reopen(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    assert_string_equal(ks_store_backend(f->s), "postgresql");
    assert_int_equal(qint(f->s, "SELECT max(version) FROM schema_migrations"),
                     KS_STORE_SCHEMA_VERSION);
    const char *tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                         "'public' AND table_name IN ('hosts','host_reports','cpus','cpu_defects',"
                         "'vms','vm_vcpus','pools','pool_members','policies','events',"
                         "'capacity_snapshots','idempotency_keys','tokens','changes')";
    assert_int_equal(qint(f->s, tables), 14);
    /* The invariants are the database's: UNIQUE, foreign keys, CHECKs. */
    assert_int_equal(qint(f->s, "SELECT count(*) FROM pg_constraint WHERE conname IN "
                                "('vm_vcpus_cpu_unique','vm_vcpus_cpu_fkey')"),
                     2);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM pg_constraint c JOIN pg_class t ON "
                                "t.oid = c.conrelid WHERE t.relname = 'cpus' AND c.contype = 'c'"),
                     4);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM information_schema.columns WHERE "
                                "table_name = 'cpus' AND data_type = 'bytea'"),
                     3);
    put_ok(f->s, "h1", "b1", 1, 4);
    /* A forbidden value is refused by the CHECK, not only by the C code. */
    ks_store_close(f->s);
    f->s = NULL;
    assert_int_equal(ks_store_open(&f->s, f->path, NULL, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM schema_migrations"), KS_STORE_SCHEMA_VERSION);
    assert_int_equal(qint(f->s, tables), 14);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus"), 4);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);
}

/* ---- change feed --------------------------------------------------------- */

typedef struct change_list {
    ks_store_change_row rows[32];
    int n;
    int stop_after; /* 0 = never */
} change_list;

static int collect_change(void *ctx, const ks_store_change_row *row)
{
    change_list *l = ctx;
    if (l->n < 32)
        l->rows[l->n] = *row;
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

/* Polls the feed until `want` changes arrived (PostgreSQL shows a change once
 * older transactions have ended: other sessions may delay it briefly). */
static int64_t poll_changes(ks_store *s, int64_t cursor, change_list *l, int want)
{
    ks_err err = {0};
    uint64_t deadline = now_us() + 10000000;
    for (;;) {
        int64_t next = -1;
        if (ks_store_changes_since(&next, s, cursor, collect_change, l, &err) != KS_OK)
            fail_msg("changes since %lld: %s", (long long)cursor, err.msg);
        assert_true(next >= cursor);
        cursor = next;
        if (l->n >= want || now_us() > deadline)
            return cursor;
        usleep(10000);
    }
}

/* options.skip_change_feed: SQLite writes no feed rows; PostgreSQL ignores it. */
static void test_store__skip_change_feed(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    ks_store_close(f->s);
    ks_store_options o = KS_STORE_OPTIONS_INIT;
    o.skip_change_feed = true;
    assert_int_equal(ks_store_open(&f->s, f->path, &o, &err), KS_OK);
    put_ok(f->s, "h1", "b", 1, 4);
    const int32_t a[] = {1};
    assert_int_equal(insert_vm(f->s, "vm-a", "h1", a, 1, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM changes") > 0, g_pg);
}

static void test_store__changes_feed(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    int64_t c0 = -1, next = -1;
    assert_int_equal(ks_store_changes_cursor(&c0, f->s, &err), KS_OK);
    assert_true(c0 >= 0);
    put_ok(f->s, "h1", "b", 1, 8);
    const int32_t a[] = {1, 2};
    assert_int_equal(insert_vm(f->s, "vm1", "h1", a, 2, &err), KS_OK);
    /* Not in the feed: a heartbeat, a replayed report, applied generations. */
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_host_heartbeat(f->s, "h1", 7, &err), KS_OK);
    assert_int_equal(ks_store_vm_set_applied(f->s, "vm1", 1, NULL, 8, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    put_ok(f->s, "h1", "b", 1, 8);
    /* A rolled-back write leaves no change behind. */
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_host_set_state(f->s, "h1", KS_STORE_HOST_LOST, 9, &err), KS_OK);
    assert_int_equal(ks_store_rollback(f->s, &err), KS_OK);
    int64_t pid = 0;
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_pool_create(f->s, "p1", NULL, 1, &err), KS_OK);
    assert_int_equal(
        ks_store_policy_add(&pid, f->s, KS_STORE_POLICY_FEATURE_BAN, "[\"avx\"]", NULL, 1, &err),
        KS_OK);
    assert_int_equal(ks_store_vm_delete(f->s, "vm1", &err), KS_OK);
    assert_int_equal(ks_store_host_set_state(f->s, "h1", KS_STORE_HOST_DRAINING, 10, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);

    change_list l = {.n = 0};
    int64_t c1 = poll_changes(f->s, c0, &l, 6);
    assert_int_equal(l.n, 6);
    char pkey[24];
    snprintf(pkey, sizeof(pkey), "%lld", (long long)pid);
    const struct {
        ks_store_change_kind kind;
        const char *key, *host;
    } want[] = {{KS_STORE_CHANGE_HOST, "h1", "h1"}, {KS_STORE_CHANGE_VM, "vm1", "h1"},
                {KS_STORE_CHANGE_POOL, "p1", ""},   {KS_STORE_CHANGE_POLICY, pkey, ""},
                {KS_STORE_CHANGE_VM, "vm1", ""},    {KS_STORE_CHANGE_HOST, "h1", "h1"}};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(l.rows[i].kind, want[i].kind);
        assert_string_equal(l.rows[i].key, want[i].key);
        assert_string_equal(l.rows[i].host_id, want[i].host);
        assert_true(l.rows[i].time_us > 0);
        if (i)
            assert_true(l.rows[i].seq > l.rows[i - 1].seq);
    }
    assert_string_equal(ks_store_change_kind_to_str(l.rows[2].kind), "pool");
    /* Nothing new: the same cursor again (or later), no rows. */
    change_list none = {.n = 0};
    assert_int_equal(ks_store_changes_since(&next, f->s, c1, collect_change, &none, &err), KS_OK);
    assert_int_equal(none.n, 0);
    assert_true(next >= c1);
    /* From the start: everything ever recorded. */
    change_list all = {.n = 0};
    poll_changes(f->s, 0, &all, 6);
    assert_int_equal(all.n, 6);
    /* Stopping early skips the rest of the batch. */
    change_list one = {.n = 0, .stop_after = 1};
    assert_int_equal(ks_store_changes_since(&next, f->s, c0, collect_change, &one, &err), KS_OK);
    assert_int_equal(one.n, 1);
    none.n = 0;
    assert_int_equal(ks_store_changes_since(&next, f->s, next, collect_change, &none, &err), KS_OK);
    assert_int_equal(none.n, 0);
    /* Reads of the feed are outside transactions; pruning is a write. */
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_changes_since(&next, f->s, c0, collect_change, &none, &err),
                     KS_EINTERNAL);
    uint64_t pruned = 0;
    assert_int_equal(ks_store_changes_prune(&pruned, f->s, UINT64_C(1) << 62, &err), KS_OK);
    assert_int_equal(pruned, 6);
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_int_equal(ks_store_changes_prune(&pruned, f->s, 1, &err), KS_EINTERNAL);
    assert_int_equal(ks_store_changes_since(&next, f->s, -1, collect_change, &none, &err),
                     KS_EINVAL);
    /* The cursor never goes back after a prune. */
    int64_t c2 = -1;
    assert_int_equal(ks_store_changes_cursor(&c2, f->s, &err), KS_OK);
    assert_true(c2 >= c1);
}

/* ---- leadership ---------------------------------------------------------- */

static void test_store__leader_handover(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    bool lead = false;
    assert_int_equal(ks_store_try_leader(&lead, f->s, &err), KS_OK);
    assert_true(lead);
    assert_int_equal(ks_store_try_leader(&lead, f->s, &err), KS_OK); /* stays the leader */
    assert_true(lead);
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_try_leader(&lead, f->s, &err), KS_EINTERNAL);
    assert_int_equal(ks_store_rollback(f->s, &err), KS_OK);
    if (!g_pg) {
        /* One process owns a SQLite file: it is always the leader. */
        assert_int_equal(ks_store_leader_release(f->s, &err), KS_OK);
        return;
    }
    ks_store *b = NULL, *c = NULL;
    assert_int_equal(ks_store_open(&b, f->path, NULL, &err), KS_OK);
    assert_int_equal(ks_store_open(&c, f->path, NULL, &err), KS_OK);
    assert_int_equal(ks_store_try_leader(&lead, b, &err), KS_OK);
    assert_false(lead);
    /* Released explicitly: the next candidate wins. */
    assert_int_equal(ks_store_leader_release(f->s, &err), KS_OK);
    assert_int_equal(ks_store_try_leader(&lead, b, &err), KS_OK);
    assert_true(lead);
    assert_int_equal(ks_store_try_leader(&lead, f->s, &err), KS_OK);
    assert_false(lead);
    /* The leader dies (its connection closes): the server frees the lock and
     * another replica takes over - within a bounded time. */
    ks_store_close(b);
    uint64_t deadline = now_us() + 10000000;
    bool got = false;
    while (!got && now_us() < deadline) {
        assert_int_equal(ks_store_try_leader(&got, c, &err), KS_OK);
        if (!got)
            usleep(10000);
    }
    assert_true(got);
    assert_int_equal(ks_store_try_leader(&lead, f->s, &err), KS_OK);
    assert_false(lead);
    ks_store_close(c);
}

/* ---- copying a fleet ----------------------------------------------------- */

static void fill_fleet(ks_store *s)
{
    ks_err err = {0};
    put_ok(s, "h1", "b", 1, 16);
    put_ok(s, "h2", "b", 3, 8);
    const int32_t a[] = {3, 4};
    assert_int_equal(insert_vm(s, "vm1", "h1", a, 2, &err), KS_OK);
    assert_int_equal(ks_store_begin(s, &err), KS_OK);
    assert_int_equal(ks_store_pool_create(s, "p1", "{\"arch\":\"x86_64\"}", 3, &err), KS_OK);
    const char *members[] = {"h1", "h2"};
    assert_int_equal(ks_store_pool_members_set(s, "p1", members, 2, &err), KS_OK);
    assert_int_equal(
        ks_store_policy_add(NULL, s, KS_STORE_POLICY_FEATURE_BAN, "[\"tsx\"]", "errata", 4, &err),
        KS_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            ks_store_event_append(NULL, s, 5 + (uint64_t)i, "vm.placed", "h1", "vm1", "{}", &err),
            KS_OK);
    ks_store_capacity_row cap = {.time_us = 9, .total = 24, .allocated = 2, .free = 22};
    snprintf(cap.scope, sizeof(cap.scope), "fleet");
    assert_int_equal(ks_store_capacity_insert(NULL, s, &cap, &err), KS_OK);
    assert_int_equal(ks_store_idem_put(s, "k1", "hash", 201, "{\"ok\":true}", 10, &err), KS_OK);
    uint8_t hash[32] = {9, 8, 7, 0, 1};
    assert_int_equal(ks_store_token_add(NULL, s, hash, 32, "admin", NULL, "ops", 11, &err), KS_OK);
    assert_int_equal(ks_store_commit(s, &err), KS_OK);
}

static const char *const fleet_counts[] = {
    "SELECT count(*) FROM hosts",
    "SELECT count(*) FROM host_reports",
    "SELECT count(*) FROM cpus",
    "SELECT count(*) FROM cpu_defects",
    "SELECT count(*) FROM pools",
    "SELECT count(*) FROM pool_members",
    "SELECT count(*) FROM vms",
    "SELECT count(*) FROM vm_vcpus",
    "SELECT count(*) FROM policies",
    "SELECT count(*) FROM events",
    "SELECT max(id) FROM events",
    "SELECT count(*) FROM capacity_snapshots",
    "SELECT count(*) FROM idempotency_keys",
    "SELECT count(*) FROM tokens",
    "SELECT sum(generation) FROM hosts",
    "SELECT sum(last_heartbeat_us) FROM hosts",
    "SELECT count(*) FROM cpus WHERE state = 'quarantined'",
};

static void same_fleet(ks_store *a, ks_store *b)
{
    for (size_t i = 0; i < sizeof(fleet_counts) / sizeof(fleet_counts[0]); i++)
        if (qint(a, fleet_counts[i]) != qint(b, fleet_counts[i]))
            fail_msg("'%s' differs: %lld vs %lld", fleet_counts[i],
                     (long long)qint(a, fleet_counts[i]), (long long)qint(b, fleet_counts[i]));
    ks_err err = {0};
    ks_report *r = make_report("h1", "b", 1, 16, 0, 0);
    cpu_check cc = {.r = r, .n = 0, .ok = true};
    assert_int_equal(ks_store_cpu_scan(b, "h1", check_cpu, &cc, &err), KS_OK);
    assert_true(cc.ok);
    assert_int_equal(cc.n, 16);
    ks_report_free(r);
    ks_store_vm_row v;
    assert_int_equal(ks_store_vm_get(&v, b, "vm1", true, &err), KS_OK);
    assert_string_equal(v.plan_json, "{\"generation\":1}");
    assert_int_equal(v.created_us, 42);
    ks_store_vm_row_destroy(&v);
    ks_store_token_row t;
    uint8_t hash[32] = {9, 8, 7, 0, 1};
    assert_int_equal(ks_store_token_find(&t, b, hash, 32, &err), KS_OK);
    assert_string_equal(t.description, "ops");
    ks_store_pool_row p;
    assert_int_equal(ks_store_pool_get(&p, b, "p1", &err), KS_OK);
    assert_string_equal(p.selector_json, "{\"arch\":\"x86_64\"}");
    assert_int_equal(p.n_members, 2);
    ks_store_pool_row_destroy(&p);
    ks_store_idem_row k;
    assert_int_equal(ks_store_idem_get(&k, b, "k1", &err), KS_OK);
    assert_int_equal(k.status, 201);
    ks_store_idem_row_destroy(&k);
    assert_int_equal(ks_store_integrity_check(b, &err), KS_OK);
}

static void test_store__copy_between_backends(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    fill_fleet(f->s);
    /* Out to a SQLite file... */
    char path[1300], url2[1300];
    ks_test_path(path, sizeof(path), "%s/copy.db", f->dir);
    ks_store *mid = NULL, *back = NULL;
    assert_int_equal(ks_store_open(&mid, path, NULL, &err), KS_OK);
    uint64_t rows = 0;
    if (ks_store_copy(&rows, mid, f->s, &err) != KS_OK)
        fail_msg("copy out: %s", err.msg);
    assert_true(rows > 24 + 2 + 2);
    same_fleet(f->s, mid);
    /* ...and in again to an empty store of the run's backend. */
    if (g_pg) {
#ifdef KS_HAVE_LIBPQ
        pg_admin("postgres", "DROP DATABASE IF EXISTS ks_test_copy WITH (FORCE)");
        pg_admin("postgres", "CREATE DATABASE ks_test_copy");
#endif
        ks_test_path(url2, sizeof(url2), "postgresql:///ks_test_copy?host=%s&user=postgres",
                     g_pg_dir);
    } else {
        ks_test_path(url2, sizeof(url2), "sqlite:%s/copy2.db", f->dir);
    }
    assert_int_equal(ks_store_open(&back, url2, NULL, &err), KS_OK);
    uint64_t rows2 = 0;
    if (ks_store_copy(&rows2, back, mid, &err) != KS_OK)
        fail_msg("copy back: %s", err.msg);
    assert_int_equal(rows2, rows);
    same_fleet(f->s, back);
    /* Ids go on after the copied ones. */
    int64_t id = 0;
    assert_int_equal(ks_store_begin(back, &err), KS_OK);
    assert_int_equal(ks_store_event_append(&id, back, 99, "x", NULL, NULL, NULL, &err), KS_OK);
    assert_int_equal(ks_store_commit(back, &err), KS_OK);
    assert_int_equal(id, qint(f->s, "SELECT max(id) FROM events") + 1);
    /* The copy keeps the rules: a double allocation is still refused. */
    const int32_t dup[] = {4};
    assert_int_equal(insert_vm(back, "vm2", "h1", dup, 1, &err), KS_ECONFLICT);
    /* A destination that is not empty is refused and left alone. */
    assert_int_equal(ks_store_copy(NULL, back, mid, &err), KS_ECONFLICT);
    assert_non_null(strstr(err.msg, "not empty"));
    assert_int_equal(ks_store_copy(NULL, back, back, &err), KS_EINVAL);
    assert_int_equal(ks_store_begin(mid, &err), KS_OK);
    assert_int_equal(ks_store_copy(NULL, back, mid, &err), KS_EINTERNAL);
    assert_int_equal(ks_store_rollback(mid, &err), KS_OK);
    ks_store_close(back);
    ks_store_close(mid);
#ifdef KS_HAVE_LIBPQ
    if (g_pg)
        pg_admin("postgres", "DROP DATABASE IF EXISTS ks_test_copy WITH (FORCE)");
#endif
}

/* ---- two writers, one CPU ------------------------------------------------ */

typedef struct racer {
    const char *url;
    ks_code rc;
    char msg[256];
} racer;

static void *race_insert(void *arg)
{
    racer *r = arg;
    ks_store *s = NULL;
    ks_err err = {0};
    ks_store_options o = KS_STORE_OPTIONS_INIT;
    o.busy_timeout_ms = 20000;
    r->rc = ks_store_open(&s, r->url, &o, &err);
    if (r->rc == KS_OK) {
        const int32_t cpus[] = {5, 3};
        r->rc = insert_vm(s, "vm-b", "h1", cpus, 2, &err);
    }
    snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
    ks_store_close(s);
    return NULL;
}

/* A second handle (another replica) allocating a CPU the first is committing
 * waits for it and then fails with a conflict: never both. */
static void test_store__concurrent_allocation_conflicts(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    put_ok(f->s, "h1", "b", 1, 8);
    ks_store_vm_row vm;
    memset(&vm, 0, sizeof(vm));
    snprintf(vm.name, sizeof(vm.name), "vm-a");
    snprintf(vm.host_id, sizeof(vm.host_id), "h1");
    ks_store_vcpu_alloc v[1] = {{0, 3}};
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_vm_insert(f->s, &vm, v, 1, &err), KS_OK);
    racer r = {.url = f->path, .rc = KS_EINTERNAL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, race_insert, &r), 0);
    usleep(200000); /* whether it waits or comes late, the answer is the same */
    assert_int_equal(ks_store_commit(f->s, &err), KS_OK);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(r.rc, KS_ECONFLICT);
    assert_string_equal(r.msg, "host cpu h1/3 is already allocated");
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vm_vcpus"), 1);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vms"), 1);
}

/* ---- PostgreSQL: a server-side disconnect (failover, restart) ------------- */

static void test_store__pg_reconnects_after_lost_session(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    if (!g_pg)
        return; /* a SQLite file has no session to lose */
    put_ok(f->s, "h1", "b", 1, 4);
    bool lead = false;
    assert_int_equal(ks_store_try_leader(&lead, f->s, &err), KS_OK);
    assert_true(lead);
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%lld)",
             (long long)qint(f->s, "SELECT pg_backend_pid()"));
    raw_sql(f, sql);
    /* The first use notices the loss (a retryable error) and gives up the
     * leadership it can no longer prove... */
    assert_int_equal(ks_store_try_leader(&lead, f->s, &err), KS_EUNAVAIL);
    /* ...the next one reconnects, prepares again and works as before. */
    assert_int_equal(ks_store_try_leader(&lead, f->s, &err), KS_OK);
    assert_true(lead);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM cpus"), 4);
    put_ok(f->s, "h2", "b", 1, 4);
    /* Lost inside a transaction: the transaction fails, the caller rolls
     * back, and the store reconnects at the next begin. */
    assert_int_equal(ks_store_begin(f->s, &err), KS_OK);
    assert_int_equal(ks_store_host_heartbeat(f->s, "h1", 5, &err), KS_OK);
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%lld)",
             (long long)qint(f->s, "SELECT pg_backend_pid()"));
    raw_sql(f, sql);
    assert_int_equal(ks_store_host_heartbeat(f->s, "h2", 6, &err), KS_EUNAVAIL);
    assert_int_equal(ks_store_rollback(f->s, &err), KS_OK);
    assert_false(ks_store_in_txn(f->s));
    const int32_t a[] = {1};
    assert_int_equal(insert_vm(f->s, "vm1", "h2", a, 1, &err), KS_OK);
    assert_int_equal(qint(f->s, "SELECT count(*) FROM vms"), 1);
    assert_int_equal(qint(f->s, "SELECT last_heartbeat_us FROM hosts WHERE id = 'h1'"), 100);
}

/* ---- throughput (figures printed, never asserted) ------------------------ */

typedef struct scan_count {
    uint64_t rows;
    unsigned bits;
} scan_count;

static int count_cpu(void *ctx, const ks_store_cpu_row *row)
{
    scan_count *c = ctx;
    c->rows++;
    c->bits += ks_featset_popcount(&row->usable);
    return 0;
}

static void test_store__throughput(void **state)
{
    fixture *f = *state;
    ks_err err = {0};
    /* PostgreSQL pays a round trip per statement: fewer hosts keep it short. */
    const uint32_t n_hosts = g_pg ? 200 : 1000, n_cpus = 128;
    ks_report **reps = calloc(n_hosts, sizeof(*reps));
    assert_non_null(reps);
    for (uint32_t i = 0; i < n_hosts; i++) {
        char id[16];
        snprintf(id, sizeof(id), "host-%04u", i);
        reps[i] = make_report(id, "boot", 1, n_cpus, 0, i % 7);
    }
    /* One report per transaction, as kintsugid does. */
    uint64_t t0 = now_us(), c0 = cpu_us();
    for (uint32_t i = 0; i < n_hosts; i++)
        if (put(f->s, reps[i], NULL, &err) != KS_OK)
            fail_msg("put %u: %s", i, err.msg);
    uint64_t t1 = now_us(), c1 = cpu_us();
    /* Updates (generation 2), one CPU changed per report: the steady state. */
    for (uint32_t i = 0; i < n_hosts; i++) {
        reps[i]->host.generation = 2;
        ks_featset_unset(&reps[i]->cpus[7].usable, 3);
        if (put(f->s, reps[i], NULL, &err) != KS_OK)
            fail_msg("put %u: %s", i, err.msg);
    }
    uint64_t t2 = now_us(), c2 = cpu_us();
    /* Updates where every CPU changed. */
    for (uint32_t i = 0; i < n_hosts / 4; i++) {
        reps[i]->host.generation = 3;
        for (uint32_t c = 0; c < n_cpus; c++)
            reps[i]->cpus[c].max_mhz++;
        if (put(f->s, reps[i], NULL, &err) != KS_OK)
            fail_msg("put %u: %s", i, err.msg);
    }
    uint64_t t3 = now_us(), c3 = cpu_us();
    scan_count sc = {0, 0};
    assert_int_equal(ks_store_cpu_scan(f->s, NULL, count_cpu, &sc, &err), KS_OK);
    uint64_t t4 = now_us(), c4 = cpu_us();
    assert_int_equal(sc.rows, (uint64_t)n_hosts * n_cpus);
#define RATE(n, a, b) ((double)(n)*1e6 / (double)((b) - (a) + 1))
    printf("store throughput on %s (%u hosts, %u cpus per report; wall / cpu-time rates):\n"
           "  new host reports      %8.0f /s  %8.0f /s\n"
           "  reports, 1 cpu change %8.0f /s  %8.0f /s\n"
           "  reports, all changed  %8.0f /s  %8.0f /s\n"
           "  cpu scan              %8.0f rows/s  %8.0f rows/s (%llu rows)\n",
           ks_store_backend(f->s), n_hosts, n_cpus, RATE(n_hosts, t0, t1), RATE(n_hosts, c0, c1),
           RATE(n_hosts, t1, t2), RATE(n_hosts, c1, c2), RATE(n_hosts / 4, t2, t3),
           RATE(n_hosts / 4, c2, c3), RATE(sc.rows, t3, t4), RATE(sc.rows, c3, c4),
           (unsigned long long)sc.rows);
#undef RATE
    for (uint32_t i = 0; i < n_hosts; i++)
        ks_report_free(reps[i]);
    free(reps);
    assert_int_equal(ks_store_integrity_check(f->s, &err), KS_OK);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--pg") == 0) {
#ifndef KS_HAVE_LIBPQ
        fprintf(stderr, "test_ks_store --pg: built without libpq\n");
        return 1;
#else
        const char *d = getenv("KS_PG_DIR");
        if (!d || !d[0] || strlen(d) >= sizeof(g_pg_dir)) {
            fprintf(stderr, "test_ks_store --pg: KS_PG_DIR (the test cluster) is not set\n");
            return 1;
        }
        snprintf(g_pg_dir, sizeof(g_pg_dir), "%s", d);
        g_pg = true;
        /* This binary's own database, so it can run beside other PG tests. */
        pg_admin("postgres", "DROP DATABASE IF EXISTS " PG_DB " WITH (FORCE)");
        pg_admin("postgres", "CREATE DATABASE " PG_DB);
#endif
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store__migrate_empty_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__savepoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__commit_veto, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__background_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__writes_need_a_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__host_put_get_generations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__host_list_filters_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__cpu_scan_equals_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__double_allocation_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__rollback_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__host_delete_with_vms_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__vm_update_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__migrate_v2_allocations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__allocation_damage_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__plan_compressed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__backup_restores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__readonly_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__events_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__capacity_pools_policies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__commit_survives_process_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__second_writer_waits_then_gives_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store__query_int_and_corrupt_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__changes_feed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__skip_change_feed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__leader_handover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__copy_between_backends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__concurrent_allocation_conflicts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store__pg_reconnects_after_lost_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store__throughput, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
