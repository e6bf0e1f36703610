/*
 * ks_store_sqlite.c - the SQLite backend of ks_store.
 *
 * Owns one sqlite3 connection and a cache of prepared statements (one per
 * entry of `sql_text[]`, prepared on first use with SQLITE_PREPARE_PERSISTENT,
 * reused with sqlite3_reset; ks_store_close finalizes them all).
 *
 * Invariants:
 *  1. A statement is reset before the function that used it returns, so no
 *     statement keeps a read snapshot open between calls (WAL readers and
 *     checkpoints are not held back).
 *  2. `base.in_txn` mirrors "an explicit transaction is open".  SQLite may roll
 *     a transaction back by itself after some errors (I/O, out of memory); the
 *     commit/rollback paths read sqlite3_get_autocommit() and resynchronise.
 *  3. A host's cpu_alloc row holds exactly: in `used` the CPUs in the vcpus
 *     of the VMs on that host, each once; in `present` the CPUs of its cpus
 *     rows; in `vms` the names of those VMs (written here only, in the same
 *     transaction as the rows they describe; sq_integrity_check verifies it).
 *
 * Threading: a handle is used by one thread at a time (opened with
 * SQLITE_OPEN_NOMUTEX); separate handles may be used by separate threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ks_feature.h"
#include "ks_store.h"
#include "ks_store_int.h"
#include "ks_store_schema.sql.h"
#include "ks_vm.h"
#include "ks_zdoc.h"

/* ---- statement table --------------------------------------------------- */

#define HOST_COLS                                                                                  \
    "id, hostname, arch, vendor, model_name, state, boot_id, generation, n_cpus, "                 \
    "registered_us, updated_us, last_heartbeat_us"
#define CPU_COLS                                                                                   \
    "host_id, cpu_id, package, die, cluster, core, thread, numa_node, l2_group, l3_group, "        \
    "kind_class, kind_name, base_mhz, max_mhz, state, reserved, native, usable, defective"
/* JSON columns only when ?5 is true: CASE is evaluated lazily, so the (large)
 * documents are not even read when a listing does not want them. */
#define VM_COLS                                                                                    \
    "name, host_id, state, generation, applied_generation, pool, anti_affinity_group, "            \
    "apply_error, n_vcpus, created_us, updated_us, CASE WHEN ?5 THEN request_json END, "           \
    "CASE WHEN ?5 THEN plan_json END, CASE WHEN ?5 THEN plan_z END"
#define VM_FILTER "(?1 IS NULL OR state = ?1) AND (?2 IS NULL OR pool = ?2) AND name > ?3 "
/* The VMs of host ?N come from its cpu_alloc.vms list (schema 3 has no index
 * on vms.host_id: writing one cost two random pages per placement). */
#define HOST_VMS(n)                                                                                \
    "name IN (SELECT value FROM json_each((SELECT vms FROM cpu_alloc WHERE host_id = ?" #n    \
    "))) AND host_id = ?" #n " "

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SP_MARK,
    ST_SP_KEEP,
    ST_SP_UNDO,
    ST_HOST_HEAD,
    ST_HOST_UPSERT,
    ST_REPORT_UPSERT,
    ST_ALLOC_PRESENT,
    ST_CPU_DELETE,
    ST_CPU_INSERT,
    ST_CPU_UPDATE,
    ST_DEFECTS_DELETE,
    ST_DEFECT_INSERT,
    ST_HOST_GET,
    ST_REPORT_GET,
    ST_HOST_HEARTBEAT,
    ST_HOST_SET_STATE,
    ST_HOST_VM_COUNT,
    ST_HOST_DELETE,
    ST_HOST_LIST,
    ST_HOST_COUNT,
    ST_CPU_SCAN_ALL,
    ST_CPU_SCAN_HOST,
    ST_CPU_GET,
    ST_DEFECT_LIST,
    ST_DEFECT_LIST_HOST,
    ST_VM_INSERT,
    ST_VM_GET,
    ST_VM_LIST_ALL,
    ST_VM_LIST_HOST,
    ST_VM_COUNT,
    ST_VM_COUNT_HOST,
    ST_VM_DELETE,
    ST_VM_ALLOC,
    ST_VM_SET_VCPUS,
    ST_ALLOC_GET,
    ST_ALLOC_PUT,
    ST_VM_UPDATE_PLAN,
    ST_VM_SET_STATE,
    ST_VM_SET_APPLIED,
    ST_VCPU_SCAN_ALL,
    ST_VCPU_SCAN_HOST,
    ST_VCPU_SCAN_VM,
    ST_POOL_INSERT,
    ST_POOL_GET,
    ST_POOL_LIST,
    ST_POOL_VM_COUNT,
    ST_POOL_DELETE,
    ST_POOL_EXISTS,
    ST_MEMBERS_DELETE,
    ST_MEMBER_INSERT,
    ST_MEMBERS_LIST,
    ST_POLICY_INSERT,
    ST_POLICY_LIST,
    ST_POLICY_DELETE,
    ST_EVENT_INSERT,
    ST_EVENT_LIST,
    ST_EVENT_PRUNE,
    ST_CAP_INSERT,
    ST_CAP_LIST_ALL,
    ST_CAP_LIST_SCOPE,
    ST_CAP_PRUNE,
    ST_IDEM_GET,
    ST_IDEM_INSERT,
    ST_IDEM_EXPIRE,
    ST_TOKEN_INSERT,
    ST_TOKEN_FIND,
    ST_TOKEN_LIST,
    ST_TOKEN_DELETE,
    ST_CHANGE_INSERT,
    ST_CHANGES_SINCE,
    ST_CHANGES_CURSOR,
    ST_CHANGES_PRUNE,
    ST_BEGIN_READ,
    ST_ZDICT_LIST,
    ST_ZDICT_INSERT,
    ST__COUNT
};

static const char *const sql_text[ST__COUNT] = {
    [ST_ZDICT_LIST] = "SELECT id, content FROM zdicts ORDER BY id",
    [ST_ZDICT_INSERT] = "INSERT INTO zdicts (id, content) VALUES (?1, ?2)",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SP_MARK] = "SAVEPOINT ks_unit",
    [ST_SP_KEEP] = "RELEASE ks_unit",
    [ST_SP_UNDO] = "ROLLBACK TO ks_unit",
    [ST_HOST_HEAD] = "SELECT boot_id, generation FROM hosts WHERE id = ?1",
    [ST_HOST_UPSERT] =
        "INSERT INTO hosts (id, hostname, arch, vendor, model_name, state, boot_id, generation, "
        "n_cpus, registered_us, updated_us, last_heartbeat_us) "
        "VALUES (?1, ?2, ?3, ?4, ?5, 'ready', ?6, ?7, ?8, ?9, ?9, ?9) "
        "ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, arch = excluded.arch, "
        "vendor = excluded.vendor, model_name = excluded.model_name, "
        "state = CASE hosts.state WHEN 'lost' THEN 'ready' ELSE hosts.state END, "
        "boot_id = excluded.boot_id, generation = excluded.generation, n_cpus = excluded.n_cpus, "
        "updated_us = excluded.updated_us, last_heartbeat_us = excluded.last_heartbeat_us",
    [ST_REPORT_UPSERT] = "INSERT INTO host_reports (host_id, report_json) VALUES (?1, ?2) "
                         "ON CONFLICT (host_id) DO UPDATE SET report_json = excluded.report_json",
    [ST_ALLOC_PRESENT] = "INSERT INTO cpu_alloc (host_id, present, used) VALUES (?1, ?2, X'') "
                         "ON CONFLICT (host_id) DO UPDATE SET present = excluded.present",
    [ST_CPU_DELETE] = "DELETE FROM cpus WHERE host_id = ?1 AND cpu_id = ?2",
    [ST_CPU_INSERT] = "INSERT INTO cpus (" CPU_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                      "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    [ST_CPU_UPDATE] = "UPDATE cpus SET package = ?3, die = ?4, cluster = ?5, core = ?6, "
                      "thread = ?7, numa_node = ?8, l2_group = ?9, l3_group = ?10, "
                      "kind_class = ?11, kind_name = ?12, base_mhz = ?13, max_mhz = ?14, "
                      "state = ?15, reserved = ?16, native = ?17, usable = ?18, defective = ?19 "
                      "WHERE host_id = ?1 AND cpu_id = ?2",
    [ST_DEFECTS_DELETE] = "DELETE FROM cpu_defects WHERE host_id = ?1",
    [ST_DEFECT_INSERT] = "INSERT INTO cpu_defects (host_id, cpu_id, feature, source, time_us, "
                         "detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_HOST_GET] = "SELECT " HOST_COLS " FROM hosts WHERE id = ?1",
    [ST_REPORT_GET] = "SELECT report_json FROM host_reports WHERE host_id = ?1",
    [ST_HOST_HEARTBEAT] = "UPDATE hosts SET last_heartbeat_us = ?2 WHERE id = ?1",
    [ST_HOST_SET_STATE] = "UPDATE hosts SET state = ?2, updated_us = ?3 WHERE id = ?1",
    [ST_HOST_VM_COUNT] =
        "SELECT coalesce((SELECT json_array_length(vms) FROM cpu_alloc WHERE host_id = ?1), 0)",
    [ST_HOST_DELETE] = "DELETE FROM hosts WHERE id = ?1",
    /* id > ?4 (never NULL: '' when not paginating) keeps the primary key usable
     * for the keyset seek. */
    [ST_HOST_LIST] = "SELECT " HOST_COLS " FROM hosts WHERE (?1 IS NULL OR state = ?1) "
                     "AND (?2 IS NULL OR arch = ?2) AND (?3 IS NULL OR vendor = ?3) "
                     "AND id > ?4 ORDER BY id LIMIT ?5",
    [ST_HOST_COUNT] = "SELECT count(*) FROM hosts WHERE (?1 IS NULL OR state = ?1) "
                      "AND (?2 IS NULL OR arch = ?2) AND (?3 IS NULL OR vendor = ?3)",
    [ST_CPU_SCAN_ALL] = "SELECT " CPU_COLS " FROM cpus ORDER BY host_id, cpu_id",
    [ST_CPU_SCAN_HOST] = "SELECT " CPU_COLS " FROM cpus WHERE host_id = ?1 ORDER BY cpu_id",
    [ST_CPU_GET] = "SELECT " CPU_COLS " FROM cpus WHERE host_id = ?1 AND cpu_id = ?2",
    [ST_DEFECT_LIST] = "SELECT host_id, cpu_id, feature, source, time_us, detail FROM cpu_defects "
                       "WHERE (?1 IS NULL OR host_id = ?1) AND (?2 < 0 OR cpu_id = ?2) "
                       "ORDER BY host_id, cpu_id, time_us, id",
    [ST_DEFECT_LIST_HOST] = "SELECT host_id, cpu_id, feature, source, time_us, detail "
                            "FROM cpu_defects WHERE host_id = ?1 AND (?2 < 0 OR cpu_id = ?2) "
                            "ORDER BY cpu_id, time_us, id",
    [ST_VM_INSERT] = "INSERT INTO vms (name, host_id, state, generation, applied_generation, "
                     "pool, anti_affinity_group, apply_error, n_vcpus, created_us, updated_us, "
                     "request_json, plan_json, vcpus, plan_z) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [ST_VM_GET] = "SELECT " VM_COLS " FROM vms WHERE name = ?1",
    [ST_VM_LIST_ALL] = "SELECT " VM_COLS " FROM vms WHERE " VM_FILTER "ORDER BY name LIMIT ?4",
    [ST_VM_LIST_HOST] =
        "SELECT " VM_COLS " FROM vms WHERE " HOST_VMS(6) "AND " VM_FILTER "ORDER BY name LIMIT ?4",
    [ST_VM_COUNT] = "SELECT count(*) FROM vms WHERE (?6 IS NULL OR host_id = ?6) "
                    "AND (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR pool = ?2)",
    [ST_VM_COUNT_HOST] = "SELECT count(*) FROM vms WHERE " HOST_VMS(6)
                         "AND (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR pool = ?2)",
    [ST_VM_DELETE] = "DELETE FROM vms WHERE name = ?1 RETURNING host_id, vcpus",
    [ST_VM_ALLOC] = "SELECT generation, host_id, vcpus FROM vms WHERE name = ?1",
    [ST_VM_SET_VCPUS] = "UPDATE vms SET vcpus = ?2 WHERE name = ?1",
    [ST_ALLOC_GET] = "SELECT used, present, vms FROM cpu_alloc WHERE host_id = ?1",
    [ST_ALLOC_PUT] = "INSERT INTO cpu_alloc (host_id, present, used, vms) VALUES (?1, X'', ?2, ?3) "
                     "ON CONFLICT (host_id) DO UPDATE SET used = excluded.used, vms = excluded.vms",
    [ST_VM_UPDATE_PLAN] = "UPDATE vms SET host_id = ?2, generation = ?3, plan_json = ?4, "
                          "n_vcpus = ?5, updated_us = ?6, vcpus = ?7, plan_z = ?8 WHERE name = ?1",
    [ST_VM_SET_STATE] = "UPDATE vms SET state = ?2, updated_us = ?3 WHERE name = ?1",
    [ST_VM_SET_APPLIED] = "UPDATE vms SET applied_generation = ?2, apply_error = ?3, "
                          "updated_us = ?4 WHERE name = ?1",
    /* the VMs with their vcpus, a host's rows together */
    [ST_VCPU_SCAN_ALL] = "SELECT name, host_id, vcpus FROM vms ORDER BY host_id",
    [ST_VCPU_SCAN_HOST] = "SELECT name, host_id, vcpus FROM vms WHERE " HOST_VMS(1),
    [ST_VCPU_SCAN_VM] = "SELECT name, host_id, vcpus FROM vms "
                        "WHERE name = ?2 AND (?1 IS NULL OR host_id = ?1)",
    [ST_POOL_INSERT] = "INSERT INTO pools (name, selector_json, created_us) VALUES (?1, ?2, ?3)",
    [ST_POOL_GET] = "SELECT name, selector_json, "
                    "(SELECT count(*) FROM pool_members m WHERE m.pool = pools.name), created_us "
                    "FROM pools WHERE name = ?1",
    [ST_POOL_LIST] = "SELECT name, selector_json, "
                     "(SELECT count(*) FROM pool_members m WHERE m.pool = pools.name), "
                     "created_us FROM pools ORDER BY name",
    /* pool <> '' lets the partial index vms_pool answer */
    [ST_POOL_VM_COUNT] = "SELECT count(*) FROM vms WHERE pool = ?1 AND pool <> ''",
    [ST_POOL_DELETE] = "DELETE FROM pools WHERE name = ?1",
    [ST_POOL_EXISTS] = "SELECT 1 FROM pools WHERE name = ?1",
    [ST_MEMBERS_DELETE] = "DELETE FROM pool_members WHERE pool = ?1",
    [ST_MEMBER_INSERT] = "INSERT INTO pool_members (pool, host_id) VALUES (?1, ?2)",
    [ST_MEMBERS_LIST] = "SELECT pool, host_id FROM pool_members "
                        "WHERE (?1 IS NULL OR pool = ?1) ORDER BY pool, host_id",
    [ST_POLICY_INSERT] = "INSERT INTO policies (kind, features_json, reason, created_us) "
                         "VALUES (?1, ?2, ?3, ?4)",
    [ST_POLICY_LIST] = "SELECT id, kind, features_json, reason, created_us FROM policies "
                       "ORDER BY id",
    [ST_POLICY_DELETE] = "DELETE FROM policies WHERE id = ?1",
    [ST_EVENT_INSERT] = "INSERT INTO events (time_us, type, host_id, vm, detail_json) "
                        "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_EVENT_LIST] = "SELECT id, time_us, type, host_id, vm, detail_json FROM events "
                      "WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_EVENT_PRUNE] = "DELETE FROM events WHERE time_us < ?1",
    [ST_CAP_INSERT] = "INSERT INTO capacity_snapshots (time_us, scope, total, allocated, free, "
                      "degraded_usable, reclaimed, stranded, quarantined) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_CAP_LIST_ALL] = "SELECT id, time_us, scope, total, allocated, free, degraded_usable, "
                        "reclaimed, stranded, quarantined FROM capacity_snapshots "
                        "WHERE time_us >= ?2 ORDER BY time_us, id LIMIT ?3",
    [ST_CAP_LIST_SCOPE] = "SELECT id, time_us, scope, total, allocated, free, degraded_usable, "
                          "reclaimed, stranded, quarantined FROM capacity_snapshots "
                          "WHERE scope = ?1 AND time_us >= ?2 ORDER BY time_us, id LIMIT ?3",
    [ST_CAP_PRUNE] = "DELETE FROM capacity_snapshots WHERE time_us < ?1",
    [ST_IDEM_GET] = "SELECT key, request_hash, status, response_json, created_us "
                    "FROM idempotency_keys WHERE key = ?1",
    [ST_IDEM_INSERT] = "INSERT INTO idempotency_keys (key, request_hash, status, response_json, "
                       "created_us) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_IDEM_EXPIRE] = "DELETE FROM idempotency_keys WHERE created_us < ?1",
    [ST_TOKEN_INSERT] = "INSERT INTO tokens (hash, role, host_id, description, created_us) "
                        "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_TOKEN_FIND] = "SELECT id, hash, role, host_id, description, created_us FROM tokens "
                      "WHERE hash = ?1",
    [ST_TOKEN_LIST] = "SELECT id, hash, role, host_id, description, created_us FROM tokens "
                      "ORDER BY id",
    [ST_TOKEN_DELETE] = "DELETE FROM tokens WHERE id = ?1",
    [ST_CHANGE_INSERT] =
        "INSERT INTO changes (time_us, kind, key, host_id) VALUES (?1, ?2, ?3, ?4)",
    [ST_CHANGES_SINCE] = "SELECT seq, kind, key, host_id, time_us FROM changes WHERE seq > ?1 "
                         "ORDER BY seq",
    /* The AUTOINCREMENT counter, not max(seq): it never goes back after a prune. */
    [ST_CHANGES_CURSOR] = "SELECT coalesce((SELECT seq FROM sqlite_sequence "
                          "WHERE name = 'changes'), 0)",
    [ST_CHANGES_PRUNE] = "DELETE FROM changes WHERE time_us < ?1",
    /* Deferred: the read snapshot starts at the first read and holds until
     * the end, without taking the write lock. */
    [ST_BEGIN_READ] = "BEGIN DEFERRED",
};

/* options.background_checkpoint: a thread with its own connection. */
typedef struct sq_checkpointer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    sqlite3 *db;
    char *path;               /* the database file; "-wal" appended for the WAL */
    atomic_bool want_restart; /* the writer should restart the WAL after its commit */
} sq_checkpointer;

typedef struct sq_store {
    ks_store base; /* first: a ks_store * is a sq_store * */
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    sqlite3_stmt *raw_ins[KS_STORE__N_TABLES]; /* ks_store_copy inserts, prepared on first use */
    sq_checkpointer *ckpt;                     /* NULL unless background_checkpoint */
    bool skip_change_feed;                     /* options.skip_change_feed */
    ks_zdoc *zdoc;                             /* plans are stored compressed */
    bool (*veto)(void *ctx);                   /* ks_store_set_commit_veto */
    void *veto_ctx;
} sq_store;

static sq_store *sq(ks_store *s)
{
    return (sq_store *)s;
}

/* ---- errors ------------------------------------------------------------ */

static ks_code map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return KS_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return KS_EUNAVAIL;
    case SQLITE_NOMEM:
        return KS_ENOMEM;
    case SQLITE_CONSTRAINT:
        return KS_ECONFLICT;
    case SQLITE_TOOBIG:
        return KS_ETOOLARGE;
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
        return KS_EINTERNAL;
    default:
        return KS_EIO;
    }
}

static ks_code sq_fail(sq_store *q, int rc, const char *what, ks_err *err)
{
    return ks_err_set(err, map_rc(rc), "%s: %s", what, sqlite3_errmsg(q->db));
}

/* ---- statements -------------------------------------------------------- */

static ks_code stmt(sqlite3_stmt **out, sq_store *q, int id, ks_err *err)
{
    if (!q->st[id]) {
        int rc = sqlite3_prepare_v3(q->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &q->st[id],
                                    NULL);
        if (rc != SQLITE_OK) {
            /* Our own SQL failing to compile is a bug or a damaged schema. */
            q->st[id] = NULL;
            return ks_err_set(err, rc == SQLITE_NOMEM ? KS_ENOMEM : KS_EINTERNAL,
                              "prepare statement %d: %s", id, sqlite3_errmsg(q->db));
        }
    }
    *out = q->st[id];
    return KS_OK;
}

/* Invariant 1: every use ends here (NULL-safe). */
static void stmt_done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* "" binds as NULL: optional filter strings. */
static void bind_opt_text(sqlite3_stmt *st, int i, const char *s)
{
    bind_text(st, i, s && s[0] ? s : NULL);
}

static void bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
    /* Times and generations stay far below 2^63; larger values wrap into the
     * negative range and come back intact through the same cast. */
    sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

static uint64_t col_u64(sqlite3_stmt *st, int i)
{
    return (uint64_t)sqlite3_column_int64(st, i);
}

static void col_text(char *dst, size_t cap, sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, i) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, t, n);
    dst[n] = '\0';
}

/* Heap copy of a text column; *out NULL for SQL NULL.  KS_ENOMEM. */
static ks_code col_dup(char **out, sqlite3_stmt *st, int i, ks_err *err)
{
    *out = NULL;
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t)
        return sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM
                   ? ks_err_set(err, KS_ENOMEM, "out of memory reading a text column")
                   : KS_OK;
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    char *p = malloc(n + 1);
    if (!p)
        return ks_err_set(err, KS_ENOMEM, "out of memory copying %zu bytes", n);
    memcpy(p, t, n);
    p[n] = '\0';
    *out = p;
    return KS_OK;
}

static const char *col_str(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Steps a statement expected to produce no row (INSERT/UPDATE/DELETE). */
static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* ---- feature set blobs ------------------------------------------------- */

/* Little-endian words, trailing zero words trimmed; returns the byte length. */
static int featset_encode(uint8_t buf[KS_FEATSET_WORDS * 8], const ks_featset *f)
{
    int n = KS_FEATSET_WORDS;
    while (n > 0 && f->w[n - 1] == 0)
        n--;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(buf, f->w, (size_t)n * 8);
#else
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 8; b++)
            buf[i * 8 + b] = (uint8_t)(f->w[i] >> (8 * b));
#endif
    return n * 8;
}

static bool featset_decode(ks_featset *f, const void *blob, int len)
{
    if (len < 0 || len % 8 != 0 || len > KS_FEATSET_WORDS * 8 || (len > 0 && !blob))
        return false;
    int n = len / 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n)
        memcpy(f->w, blob, (size_t)len);
#else
    const uint8_t *p = blob;
    for (int i = 0; i < n; i++) {
        uint64_t w = 0;
        for (int b = 0; b < 8; b++)
            w |= (uint64_t)p[i * 8 + b] << (8 * b);
        f->w[i] = w;
    }
#endif
    for (int i = n; i < KS_FEATSET_WORDS; i++)
        f->w[i] = 0;
    return true;
}

static bool col_featset(ks_featset *f, sqlite3_stmt *st, int i)
{
    const void *b = sqlite3_column_blob(st, i);
    return featset_decode(f, b, sqlite3_column_bytes(st, i));
}

/* ---- open / close / transactions --------------------------------------- */

static ks_code sq_exec(sq_store *q, const char *sql, const char *what, ks_err *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(q->db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return KS_OK;
    ks_code code = ks_err_set(err, map_rc(rc), "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return code;
}

static ks_code sq_int_pragma(int64_t *out, sq_store *q, const char *sql, ks_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    ks_code code = KS_OK;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        code = sq_fail(q, rc, sql, err);
    sqlite3_finalize(st);
    return code;
}

#define CHECKPOINT_PERIOD_NS 100000000L
/* A WAL past this many pages (256 MiB), which background checkpoints could
 * not drain because commits never paused, is restarted from its beginning:
 * a pause of one commit (~10-50 ms here) every few hundred thousand pages. */
#define CHECKPOINT_RESTART_PAGES 65536

/* fdatasync of a file by name; best effort (the checkpoint syncs anyway). */
static void sync_file(const char *path, const char *suffix)
{
    char name[4096];
    if (snprintf(name, sizeof(name), "%s%s", path, suffix) >= (int)sizeof(name))
        return;
    int fd = open(name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)fdatasync(fd);
    close(fd);
}

static void *checkpoint_main(void *arg)
{
    sq_checkpointer *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += CHECKPOINT_PERIOD_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->mu);
        /* PASSIVE: copies what no reader still needs, never waits for the
         * writer; a busy or failed round is retried at the next period.
         * Under a steady stream of commits the WAL never drains, so it
         * only grows, until COMMIT checkpoints it inline (the safety net):
         * a long stall.  Instead, once it is long, this thread copies and
         * syncs what it can without holding anyone back, then asks the
         * writer to RESTART the WAL right after its next commit (sq_commit),
         * when little is left to copy and to sync. */
        int wal = 0, done = 0;
        sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &wal, &done);
        if (wal > CHECKPOINT_RESTART_PAGES && !atomic_load(&c->want_restart)) {
            sync_file(c->path, "-wal");
            sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
            sync_file(c->path, "");
            atomic_store(&c->want_restart, true);
        }
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Frees a checkpointer whose thread is not running (or never started). */
static void checkpointer_free(sq_checkpointer *c)
{
    sqlite3_close_v2(c->db);
    free(c->path);
    free(c);
}

static void checkpointer_stop(sq_checkpointer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    checkpointer_free(c);
}

static ks_code checkpointer_start(sq_checkpointer **out, const char *path, ks_err *err)
{
    sq_checkpointer *c = calloc(1, sizeof(*c));
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    }
    int src = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    /* A connection that has read nothing does not know the database is in
     * WAL mode: its checkpoints would do nothing. */
    if (src == SQLITE_OK)
        src = sqlite3_exec(c->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        ks_code rc = ks_err_set(err, map_rc(src), "open '%s' for checkpoints: %s", path,
                                c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(src));
        checkpointer_free(c);
        return rc;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, checkpoint_main, c) != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        checkpointer_free(c);
        return ks_err_set(err, KS_EINTERNAL, "cannot start the checkpoint thread");
    }
    *out = c;
    return KS_OK;
}

static void sq_close(ks_store *s)
{
    sq_store *q = sq(s);
    checkpointer_stop(q->ckpt);
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(q->st[i]);
    for (int i = 0; i < KS_STORE__N_TABLES; i++)
        sqlite3_finalize(q->raw_ins[i]);
    if (q->db) {
        if (!sqlite3_get_autocommit(q->db))
            sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close_v2(q->db);
    }
    ks_zdoc_free(q->zdoc);
    free(q);
}

static ks_code sq_begin(ks_store *s, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_BEGIN, err);
    if (rc != KS_OK)
        return rc;
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, "begin transaction", err);
    s->in_txn = true;
    return KS_OK;
}

static ks_code sq_rollback(ks_store *s, ks_err *err)
{
    sq_store *q = sq(s);
    s->in_txn = false;
    if (sqlite3_get_autocommit(q->db))
        return KS_OK; /* invariant 2: SQLite already rolled back */
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_ROLLBACK, err);
    if (rc != KS_OK)
        return rc;
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, "rollback", err);
    return KS_OK;
}

static ks_code sq_commit(ks_store *s, ks_err *err)
{
    sq_store *q = sq(s);
    if (sqlite3_get_autocommit(q->db)) {
        s->in_txn = false;
        return ks_err_set(err, KS_EIO, "transaction was rolled back by an earlier error");
    }
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_COMMIT, err);
    if (rc != KS_OK) {
        sq_rollback(s, NULL);
        return rc;
    }
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK) {
        rc = sq_fail(q, src, "commit", err);
        sq_rollback(s, NULL);
        return rc;
    }
    s->in_txn = false;
    /* Asked by the checkpoint thread: the WAL is long and mostly copied. */
    if (q->ckpt && atomic_exchange(&q->ckpt->want_restart, false))
        sqlite3_wal_checkpoint_v2(q->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
    return KS_OK;
}

static ks_code sq_savepoint(ks_store *s, ks_store_sp_action action, ks_err *err)
{
    sq_store *q = sq(s);
    if (sqlite3_get_autocommit(q->db))
        return ks_err_set(err, KS_EIO, "transaction was rolled back by an earlier error");
    static const int which[] = {[KS_STORE_SP_MARK] = ST_SP_MARK, [KS_STORE_SP_KEEP] = ST_SP_KEEP,
                                [KS_STORE_SP_UNDO] = ST_SP_UNDO};
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, which[action], err);
    if (rc != KS_OK)
        return rc;
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, "savepoint", err);
    /* ROLLBACK TO keeps the savepoint open: end it, writes discarded. */
    return action == KS_STORE_SP_UNDO ? sq_savepoint(s, KS_STORE_SP_KEEP, err) : KS_OK;
}

static int commit_hook(void *arg)
{
    sq_store *q = arg;
    return q->veto && q->veto(q->veto_ctx) ? 1 : 0;
}

static ks_code sq_set_commit_veto(ks_store *s, bool (*veto)(void *ctx), void *ctx, ks_err *err)
{
    (void)err;
    sq_store *q = sq(s);
    q->veto = veto;
    q->veto_ctx = ctx;
    sqlite3_commit_hook(q->db, veto ? commit_hook : NULL, q);
    return KS_OK;
}

/* Makes a rename durable; best effort (the data itself is already synced). */
static void sync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof(dir))
        return;
    if (slash && n == 0)
        n = 1; /* "/file" lives in "/" */
    memcpy(dir, slash ? path : ".", slash ? n : 1);
    dir[slash ? n : 1] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static ks_code sq_backup(ks_store *s, const char *path, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3 *dst = NULL;
    sqlite3_backup *b = NULL;
    char tmp[4096], side[4200];
    ks_code rc = KS_OK;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return ks_err_set(err, KS_EINVAL, "backup path too long");
    unlink(tmp);
    int src = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (src != SQLITE_OK) {
        rc = ks_err_set(err, map_rc(src), "open backup '%s': %s", tmp,
                        dst ? sqlite3_errmsg(dst) : sqlite3_errstr(src));
        goto done;
    }
    b = sqlite3_backup_init(dst, "main", q->db, "main");
    if (!b) {
        rc = ks_err_set(err, KS_EIO, "backup to '%s': %s", tmp, sqlite3_errmsg(dst));
        goto done;
    }
    /* One step copies everything under one read snapshot: a consistent image.
     * The writer (this handle) is ours, so nothing can change it meanwhile. */
    src = sqlite3_backup_step(b, -1);
    int fin = sqlite3_backup_finish(b);
    b = NULL;
    if (src != SQLITE_DONE || fin != SQLITE_OK) {
        rc = ks_err_set(err, map_rc(src != SQLITE_DONE ? src : fin), "backup to '%s': %s", tmp,
                        sqlite3_errmsg(dst));
        goto done;
    }
    src = sqlite3_close(dst);
    dst = NULL;
    if (src != SQLITE_OK) {
        rc = ks_err_set(err, KS_EIO, "close backup '%s': %s", tmp, sqlite3_errstr(src));
        goto done;
    }
    /* A stale -wal beside the target would be replayed into the new file. */
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
    if (rename(tmp, path) != 0) {
        rc = ks_err_set(err, KS_EIO, "rename backup to '%s': errno %d", path, errno);
        goto done;
    }
    sync_parent_dir(path);
done:
    if (dst)
        sqlite3_close(dst);
    if (rc != KS_OK)
        unlink(tmp);
    return rc;
}

/* Invariant 3, and the constraints vm_vcpus used to declare. */
static const struct {
    const char *sql;
    const char *what;
} alloc_checks[] = {
    {"SELECT host_id || '/' || cpu_id FROM vm_vcpus GROUP BY host_id, cpu_id "
     "HAVING count(*) > 1 LIMIT 1",
     "cpu allocated twice"},
    {"SELECT vm_name || ' on ' || host_id || '/' || cpu_id FROM vm_vcpus v WHERE NOT EXISTS "
     "(SELECT 1 FROM cpus c WHERE c.host_id = v.host_id AND c.cpu_id = v.cpu_id) LIMIT 1",
     "vcpu pinned to a cpu that does not exist"},
    {"SELECT coalesce(a.host_id, v.host_id) FROM cpu_alloc a FULL JOIN "
     "(SELECT host_id, ks_cpu_bitmap(cpu_id) AS used FROM vm_vcpus GROUP BY host_id) v "
     "ON v.host_id = a.host_id WHERE coalesce(a.used, X'') IS NOT coalesce(v.used, X'') LIMIT 1",
     "cpu allocation differs from the vcpus of the vms on host"},
    {"SELECT coalesce(a.host_id, c.host_id) FROM cpu_alloc a FULL JOIN "
     "(SELECT host_id, ks_cpu_bitmap(cpu_id) AS present FROM cpus GROUP BY host_id) c "
     "ON c.host_id = a.host_id WHERE coalesce(a.present, X'') IS NOT coalesce(c.present, X'') "
     "LIMIT 1",
     "cpu set differs from the cpus of host"},
    {"SELECT name FROM vms WHERE plan_z IS NOT NULL AND ks_plan_text(NULL, plan_z) IS NULL LIMIT 1",
     "plan not readable of vm"},
    {"SELECT v.host_id || '/' || v.name FROM vms v WHERE NOT EXISTS (SELECT 1 FROM cpu_alloc a, "
     "json_each(a.vms) j WHERE a.host_id = v.host_id AND j.value = v.name) LIMIT 1",
     "vm missing from the list of its host"},
    {"SELECT a.host_id || '/' || j.value FROM cpu_alloc a, json_each(a.vms) j "
     "GROUP BY a.host_id, j.value HAVING count(*) > 1 OR NOT EXISTS (SELECT 1 FROM vms v "
     "WHERE v.name = j.value AND v.host_id = a.host_id) LIMIT 1",
     "host lists a vm twice or one it does not run"},
};

static ks_code sq_integrity_check(ks_store *s, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = KS_OK;
    int src = sqlite3_prepare_v2(q->db, "PRAGMA integrity_check", -1, &st, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    if (src != SQLITE_ROW) {
        rc = sq_fail(q, src, "integrity check", err);
        goto done;
    }
    const char *res = col_str(st, 0);
    if (!res || strcmp(res, "ok") != 0) {
        rc = ks_err_set(err, KS_EIO, "integrity check: %s", res ? res : "(null)");
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    src = sqlite3_prepare_v2(q->db, "PRAGMA foreign_key_check", -1, &st, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        rc = ks_err_set(err, KS_EIO, "foreign key violation: row %lld of table '%s' -> '%s'",
                        (long long)sqlite3_column_int64(st, 1), col_str(st, 0), col_str(st, 2));
        goto done;
    }
    if (src != SQLITE_DONE)
        rc = sq_fail(q, src, "foreign key check", err);
    for (size_t i = 0; rc == KS_OK && i < sizeof(alloc_checks) / sizeof(alloc_checks[0]); i++) {
        sqlite3_finalize(st);
        st = NULL;
        src = sqlite3_prepare_v2(q->db, alloc_checks[i].sql, -1, &st, NULL);
        if (src == SQLITE_OK)
            src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            rc = ks_err_set(err, KS_EIO, "integrity check: %s: %s", alloc_checks[i].what,
                            col_str(st, 0) ? col_str(st, 0) : "?");
        else if (src != SQLITE_DONE)
            rc = sq_fail(q, src, "integrity check", err);
    }
done:
    sqlite3_finalize(st);
    return rc;
}

static ks_code sq_query_int(int64_t *out, ks_store *s, const char *sql, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = KS_OK;
    const char *tail = NULL;
    int src = sqlite3_prepare_v2(q->db, sql, -1, &st, &tail);
    if (src != SQLITE_OK) {
        rc = ks_err_set(err, src == SQLITE_NOMEM ? KS_ENOMEM : KS_EINVAL, "query '%s': %s", sql,
                        sqlite3_errmsg(q->db));
        goto done;
    }
    while (tail && (*tail == ' ' || *tail == '\t' || *tail == '\n' || *tail == ';'))
        tail++;
    if (!st || (tail && *tail)) {
        rc = ks_err_set(err, KS_EINVAL, "query '%s' is not exactly one statement", sql);
        goto done;
    }
    /* An escape hatch for reading: it must never become a way around the
     * transaction rule. */
    if (!sqlite3_stmt_readonly(st)) {
        rc = ks_err_set(err, KS_EINVAL, "query '%s' is not read-only", sql);
        goto done;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_DONE) {
        rc = ks_err_set(err, KS_ENOTFOUND, "query '%s' returned no row", sql);
        goto done;
    }
    if (src != SQLITE_ROW) {
        rc = sq_fail(q, src, "query", err);
        goto done;
    }
    if (sqlite3_column_type(st, 0) != SQLITE_INTEGER) {
        rc = ks_err_set(err, KS_EINVAL, "query '%s' did not return an integer", sql);
        goto done;
    }
    *out = sqlite3_column_int64(st, 0);
done:
    sqlite3_finalize(st);
    return rc;
}

/* ---- CPU allocations ---------------------------------------------------- */

/*
 * Schema 3 keeps a VM's vCPUs in its own row (vms.vcpus, the text
 * [[vcpu,cpu],...] by vcpu) and, per host, one cpu_alloc row: the allocated
 * CPUs and the CPUs it has as bitmaps, and the names of its VMs.  A placement
 * then writes its VM row and that small row, instead of a row per vCPU in two
 * B-trees and an entry in an index by host.  The bitmap is the guard against
 * double allocation: every writer of vms goes through vcpus_take and
 * vcpus_release below, inside its own transaction.  Callers only pass CPU
 * ids in [0, KS_REPORT_MAX_CPUS) to bitmap_set.
 */

#define ALLOC_BYTES (KS_REPORT_MAX_CPUS / 8) /* report CPU ids are below the cap */

typedef struct cpu_bitmap {
    uint8_t b[ALLOC_BYTES];
    int len; /* bytes that may hold a set bit */
} cpu_bitmap;

/* The vCPU list of one VM, decoded from its row. */
typedef struct vcpu_list {
    ks_store_vcpu_alloc v[KS_VM_MAX_VCPUS];
    uint32_t n;
} vcpu_list;

static bool bitmap_test(const cpu_bitmap *m, int32_t cpu)
{
    return cpu >= 0 && cpu / 8 < m->len && (m->b[cpu / 8] >> (cpu % 8)) & 1;
}

static void bitmap_set(cpu_bitmap *m, int32_t cpu, bool on)
{
    if (on) {
        while (m->len <= cpu / 8)
            m->b[m->len++] = 0;
        m->b[cpu / 8] |= (uint8_t)(1u << (cpu % 8));
    } else if (cpu / 8 < m->len) {
        m->b[cpu / 8] &= (uint8_t) ~(1u << (cpu % 8));
    }
}

/* Loads a bitmap blob; false when it is longer than any host can need. */
static bool bitmap_load(cpu_bitmap *m, const void *blob, int len)
{
    if (len < 0 || len > ALLOC_BYTES || (len > 0 && !blob))
        return false;
    if (len)
        memcpy(m->b, blob, (size_t)len);
    m->len = len;
    return true;
}

/* One host's cpu_alloc row. */
typedef struct host_alloc {
    cpu_bitmap used;    /* allocated CPUs */
    cpu_bitmap present; /* the CPUs it has */
    char *vms;          /* its VMs: a JSON array of names (malloc'd) */
} host_alloc;

static void host_alloc_free(host_alloc *a)
{
    free(a->vms);
    a->vms = NULL;
}

/* Reads a host's row; a host without one has no CPUs and no VMs. */
static ks_code alloc_read(host_alloc *a, sq_store *q, const char *host, ks_err *err)
{
    sqlite3_stmt *st = NULL;
    a->used.len = a->present.len = 0;
    a->vms = NULL;
    ks_code rc = stmt(&st, q, ST_ALLOC_GET, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, host);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW &&
        (!bitmap_load(&a->used, sqlite3_column_blob(st, 0), sqlite3_column_bytes(st, 0)) ||
         !bitmap_load(&a->present, sqlite3_column_blob(st, 1), sqlite3_column_bytes(st, 1))))
        rc = ks_err_set(err, KS_EIO, "cpu allocation of host '%s' is damaged", host);
    else if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "read cpu allocation", err);
    const char *vms = src == SQLITE_ROW ? col_str(st, 2) : NULL;
    if (rc == KS_OK && !(a->vms = strdup(vms ? vms : "[]")))
        rc = ks_err_set(err, KS_ENOMEM, "out of memory reading host '%s'", host);
    stmt_done(st);
    return rc;
}

static void bind_bitmap(sqlite3_stmt *st, int i, cpu_bitmap *m)
{
    while (m->len > 0 && m->b[m->len - 1] == 0)
        m->len--;
    sqlite3_bind_blob(st, i, m->len ? (const void *)m->b : "", m->len, SQLITE_STATIC);
}

/* Stores the host's allocated CPUs and VM list. */
static ks_code alloc_write(sq_store *q, const char *host, host_alloc *a, ks_err *err)
{
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_ALLOC_PUT, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, host);
    bind_bitmap(st, 2, &a->used);
    bind_text(st, 3, a->vms);
    int src = step_done(st);
    stmt_done(st);
    return src == SQLITE_OK ? KS_OK : sq_fail(q, src, "store cpu allocation", err);
}

/* Where "vm" (quotes included) is in a host's list, or NULL.  Names are
 * [A-Za-z0-9._-] (ks_store.c checks them): quotes delimit them exactly. */
static char *vms_list_find(char *list, const char *vm)
{
    size_t k = strlen(vm);
    for (char *p = strstr(list, vm); p; p = strstr(p + 1, vm))
        if (p > list && p[-1] == '"' && p[k] == '"')
            return p - 1;
    return NULL;
}

static ks_code vms_list_add(host_alloc *a, const char *vm, const char *host, ks_err *err)
{
    if (vms_list_find(a->vms, vm))
        return ks_err_set(err, KS_EIO, "host '%s' lists vm '%s' already (run the integrity check)",
                          host, vm);
    size_t n = strlen(a->vms), k = strlen(vm);
    char *p = n >= 2 && a->vms[n - 1] == ']' ? realloc(a->vms, n + k + 4) : NULL;
    if (!p)
        return n >= 2 ? ks_err_set(err, KS_ENOMEM, "out of memory")
                      : ks_err_set(err, KS_EIO, "vm list of host '%s' is damaged", host);
    a->vms = p;
    snprintf(p + n - 1, k + 5, "%s\"%s\"]", n > 2 ? "," : "", vm);
    return KS_OK;
}

static ks_code vms_list_remove(host_alloc *a, const char *vm, const char *host, ks_err *err)
{
    char *p = vms_list_find(a->vms, vm);
    if (!p)
        return ks_err_set(err, KS_EIO, "host '%s' does not list vm '%s' (run the integrity check)",
                          host, vm);
    char *end = p + strlen(vm) + 2;
    if (*end == ',')
        end++;
    else if (p[-1] == ',')
        p--;
    memmove(p, end, strlen(end) + 1);
    return KS_OK;
}

/* Stores the CPUs a host has, after its cpus rows changed. */
static ks_code alloc_write_present(sq_store *q, const char *host, cpu_bitmap *present, ks_err *err)
{
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_ALLOC_PRESENT, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, host);
    bind_bitmap(st, 2, present);
    int src = step_done(st);
    stmt_done(st);
    return src == SQLITE_OK ? KS_OK : sq_fail(q, src, "store cpu set", err);
}

static int vcpu_order(const void *a, const void *b)
{
    const ks_store_vcpu_alloc *x = a, *y = b;
    return (x->vcpu > y->vcpu) - (x->vcpu < y->vcpu);
}

/* Writes v >= 0 in decimal at p; returns the length. */
static size_t put_uint(char *p, int32_t v)
{
    char tmp[12];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* *out = the vcpus text of v[0..n) sorted by vcpu (malloc'd).  KS_EINVAL on a
 * vcpu listed twice, KS_ENOMEM.  Plans list their vCPUs in order already:
 * sorted only when they are not. */
static ks_code vcpus_format(char **out, const char *vm, const ks_store_vcpu_alloc *v, uint32_t n,
                            ks_err *err)
{
    *out = NULL;
    bool in_order = true;
    for (uint32_t i = 1; i < n && in_order; i++)
        in_order = v[i - 1].vcpu < v[i].vcpu;
    ks_store_vcpu_alloc *sorted = in_order ? NULL : malloc(n * sizeof(*sorted));
    char *text = malloc(3 + (size_t)n * 24); /* "[" + n * "[vcpu,cpu]," + "]" */
    ks_code rc = KS_OK;
    if ((!in_order && !sorted) || !text) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    if (sorted) {
        memcpy(sorted, v, n * sizeof(*sorted));
        qsort(sorted, n, sizeof(*sorted), vcpu_order);
        v = sorted;
    }
    size_t len = 0;
    text[len++] = '[';
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0 && v[i].vcpu == v[i - 1].vcpu) {
            rc = ks_err_set(err, KS_EINVAL, "vcpu %d of vm '%s' is listed twice", v[i].vcpu, vm);
            goto done;
        }
        if (i)
            text[len++] = ',';
        text[len++] = '[';
        len += put_uint(text + len, v[i].vcpu);
        text[len++] = ',';
        len += put_uint(text + len, v[i].cpu_id);
        text[len++] = ']';
    }
    text[len++] = ']';
    text[len] = '\0';
    *out = text;
    text = NULL;
done:
    free(sorted);
    free(text);
    return rc;
}

/* An empty list on the heap (KS_VM_MAX_VCPUS entries: too big for a stack). */
static vcpu_list *vcpu_list_new(ks_err *err)
{
    vcpu_list *l = malloc(sizeof(*l));
    if (l)
        l->n = 0;
    else
        ks_err_set(err, KS_ENOMEM, "out of memory for a vcpu list");
    return l;
}

static bool parse_int(const char **p, int32_t *out)
{
    const char *s = *p;
    int64_t v = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++)
        if ((v = v * 10 + (*s - '0')) > INT32_MAX)
            return false;
    *out = (int32_t)v;
    *p = s;
    return true;
}

/* Decodes a vcpus text as this file or migration 3 wrote it. */
static ks_code vcpus_parse(vcpu_list *out, const char *text, const char *vm, ks_err *err)
{
    const char *p = text ? text : "";
    out->n = 0;
    bool ok = *p++ == '[';
    while (ok && *p != ']') {
        ks_store_vcpu_alloc a;
        ok = out->n < KS_VM_MAX_VCPUS && (out->n == 0 || *p++ == ',') && *p++ == '[' &&
             parse_int(&p, &a.vcpu) && *p++ == ',' && parse_int(&p, &a.cpu_id) && *p++ == ']';
        if (ok)
            out->v[out->n++] = a;
    }
    if (!ok || p[1] != '\0')
        return ks_err_set(err, KS_EIO, "vcpus of vm '%s' are damaged", vm);
    return KS_OK;
}

/* Allocates the CPUs of v[0..n) on `host`: each must exist (what vm_vcpus'
 * foreign key to cpus enforced) and be free; and lists `vm` on the host
 * unless it is NULL (a copied vCPU of a VM listed already). */
static ks_code vcpus_take(sq_store *q, const char *host, const char *vm,
                          const ks_store_vcpu_alloc *v, uint32_t n, ks_err *err)
{
    host_alloc a;
    ks_code rc = alloc_read(&a, q, host, err);
    for (uint32_t i = 0; rc == KS_OK && i < n; i++) {
        if (v[i].cpu_id >= KS_REPORT_MAX_CPUS || !bitmap_test(&a.present, v[i].cpu_id))
            rc = ks_err_set(err, KS_ENOTFOUND, "host '%s' has no cpu %d", host, v[i].cpu_id);
        else if (bitmap_test(&a.used, v[i].cpu_id))
            rc = ks_err_set(err, KS_ECONFLICT, "host cpu %s/%d is already allocated", host,
                            v[i].cpu_id);
        else
            bitmap_set(&a.used, v[i].cpu_id, true);
    }
    if (rc == KS_OK && vm)
        rc = vms_list_add(&a, vm, host, err);
    if (rc == KS_OK)
        rc = alloc_write(q, host, &a, err);
    host_alloc_free(&a);
    return rc;
}

/* Frees the CPUs of VM `vm` on `host` and takes it off the host's list.  A
 * CPU the bitmap does not hold means the store was changed behind our back:
 * refused, not papered over. */
static ks_code vcpus_release(sq_store *q, const char *host, const vcpu_list *l, const char *vm,
                             ks_err *err)
{
    host_alloc a;
    ks_code rc = alloc_read(&a, q, host, err);
    for (uint32_t i = 0; rc == KS_OK && i < l->n; i++) {
        if (!bitmap_test(&a.used, l->v[i].cpu_id))
            rc = ks_err_set(err, KS_EIO,
                            "cpu allocation of host '%s' lacks cpu %d of vm '%s' (run the "
                            "integrity check)",
                            host, l->v[i].cpu_id, vm);
        bitmap_set(&a.used, l->v[i].cpu_id, false);
    }
    if (rc == KS_OK)
        rc = vms_list_remove(&a, vm, host, err);
    if (rc == KS_OK)
        rc = alloc_write(q, host, &a, err);
    host_alloc_free(&a);
    return rc;
}

/* ks_cpu_bitmap(cpu_id): the aggregate migration 3 and the integrity check
 * build cpu_alloc bitmaps with (an error for a CPU id no host can have). */
static void cpu_bitmap_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    cpu_bitmap *m = sqlite3_aggregate_context(ctx, (int)sizeof(*m));
    if (!m)
        return;
    sqlite3_int64 cpu = sqlite3_value_int64(argv[0]);
    if (cpu < 0 || cpu >= KS_REPORT_MAX_CPUS) {
        sqlite3_result_error(ctx, "ks_cpu_bitmap: cpu id out of range", -1);
        return;
    }
    bitmap_set(m, (int32_t)cpu, true);
}

static void cpu_bitmap_final(sqlite3_context *ctx)
{
    cpu_bitmap *m = sqlite3_aggregate_context(ctx, 0);
    int len = m ? m->len : 0;
    while (len > 0 && m->b[len - 1] == 0)
        len--;
    sqlite3_result_blob(ctx, len ? (const void *)m->b : "", len, SQLITE_TRANSIENT);
}

/* ---- compressed plans (ks_zdoc.h) ----------------------------------------- */

/* Loads the database's dictionaries; a read-write handle writes with the
 * newest. */
static ks_code zdicts_load(sq_store *q, ks_err *err)
{
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_ZDICT_LIST, err);
    int src = SQLITE_DONE;
    while (rc == KS_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
        rc = ks_zdoc_add_dict(q->zdoc, sqlite3_column_int(st, 0), sqlite3_column_blob(st, 1),
                              (size_t)sqlite3_column_bytes(st, 1), !q->base.read_only, err);
    if (rc == KS_OK && src != SQLITE_DONE)
        rc = sq_fail(q, src, "read dictionaries", err);
    stmt_done(st);
    return rc;
}

/* A read-write handle on a database without a dictionary stores the first
 * (another process may store it at the same time: the first one wins). */
static ks_code zdicts_init(sq_store *q, ks_err *err)
{
    ks_code rc = zdicts_load(q, err);
    if (rc != KS_OK || q->base.read_only || ks_zdoc_can_write(q->zdoc))
        return rc;
    size_t len = 0;
    char *dict = ks_zdoc_plan_dict(&len);
    sqlite3_stmt *st = NULL;
    rc = dict ? sq_exec(q, "BEGIN IMMEDIATE", "begin", err)
              : ks_err_set(err, KS_ENOMEM, "out of memory building a dictionary");
    if (rc == KS_OK)
        rc = stmt(&st, q, ST_ZDICT_INSERT, err);
    if (rc == KS_OK) {
        sqlite3_bind_int(st, 1, 1);
        sqlite3_bind_blob(st, 2, dict, (int)len, SQLITE_STATIC);
        int src = step_done(st);
        stmt_done(st);
        if (src != SQLITE_OK && sqlite3_extended_errcode(q->db) != SQLITE_CONSTRAINT_PRIMARYKEY)
            rc = sq_fail(q, src, "store dictionary", err);
    }
    if (rc == KS_OK)
        rc = sq_exec(q, "COMMIT", "commit dictionary", err);
    if (!sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    free(dict);
    return rc == KS_OK ? zdicts_load(q, err) : rc;
}

/* Binds a plan as its compressed blob (at i_z), its text column NULL. */
static ks_code bind_plan(sq_store *q, sqlite3_stmt *st, int i_text, int i_z, const char *plan,
                         ks_err *err)
{
    sqlite3_bind_null(st, i_text);
    sqlite3_bind_null(st, i_z);
    if (!plan)
        return KS_OK;
    const uint8_t *z = NULL;
    size_t n = 0;
    ks_code rc = ks_zdoc_compress(&z, &n, q->zdoc, plan, strlen(plan), err);
    if (rc == KS_OK && n > INT32_MAX)
        return ks_err_set(err, KS_ETOOLARGE, "plan of %zu bytes", strlen(plan));
    /* the buffer outlives the statement's step: the caller steps and resets it next */
    if (rc == KS_OK)
        sqlite3_bind_blob(st, i_z, z, (int)n, SQLITE_STATIC);
    return rc;
}

/* *text = a stored plan: its text column, or its blob decompressed into the
 * handle's buffer (valid until the next plan read). */
static ks_code plan_read(const char **text, sq_store *q, sqlite3_stmt *st, int i_text, int i_z,
                         ks_err *err)
{
    *text = col_str(st, i_text);
    const void *z = sqlite3_column_blob(st, i_z);
    if (*text || !z)
        return KS_OK;
    size_t n = (size_t)sqlite3_column_bytes(st, i_z);
    ks_code rc = KS_OK;
    if (!ks_zdoc_has_dict(q->zdoc, ks_zdoc_blob_dict(z, n)))
        rc = zdicts_load(q, err); /* stored after this handle opened */
    return rc == KS_OK ? ks_zdoc_decompress(text, q->zdoc, z, n, err) : rc;
}

/* ks_plan_text(plan_json, plan_z): the plan as text, for SQL that reads
 * whole rows (ks_store_copy, the integrity check). */
static void plan_text_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    sq_store *q = sqlite3_user_data(ctx);
    if (sqlite3_value_type(argv[0]) != SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL) {
        sqlite3_result_value(ctx, argv[0]);
        return;
    }
    const void *z = sqlite3_value_blob(argv[1]);
    ks_err e = {0};
    const char *text = NULL;
    if (ks_zdoc_decompress(&text, q->zdoc, z, (size_t)sqlite3_value_bytes(argv[1]), &e) != KS_OK)
        sqlite3_result_error(ctx, e.msg, -1);
    else
        sqlite3_result_text(ctx, text, -1, SQLITE_TRANSIENT);
}

/* ---- hosts ------------------------------------------------------------- */

static void host_row_read(ks_store_host_row *h, sqlite3_stmt *st)
{
    col_text(h->id, sizeof(h->id), st, 0);
    col_text(h->hostname, sizeof(h->hostname), st, 1);
    h->arch = ks_store__arch_parse(col_str(st, 2));
    col_text(h->vendor, sizeof(h->vendor), st, 3);
    col_text(h->model_name, sizeof(h->model_name), st, 4);
    int state = ks_store_host_state_from_str(col_str(st, 5));
    h->state = (uint8_t)(state < 0 ? KS_STORE_HOST_LOST : state);
    col_text(h->boot_id, sizeof(h->boot_id), st, 6);
    h->generation = col_u64(st, 7);
    h->n_cpus = (uint32_t)sqlite3_column_int64(st, 8);
    h->registered_us = col_u64(st, 9);
    h->updated_us = col_u64(st, 10);
    h->last_heartbeat_us = col_u64(st, 11);
    h->report_json = NULL;
}

static bool cpu_row_read(ks_store_cpu_row *c, sqlite3_stmt *st);

enum { CPU_NEW = 0, CPU_SAME, CPU_CHANGED };

/* Does the stored row say exactly what the report says about CPU c? */
static bool cpu_row_matches(const ks_store_cpu_row *row, const ks_report *r, const ks_cpu *c)
{
    const ks_kind *k = c->kind >= 0 ? &r->kinds[c->kind] : NULL;
    return row->package == c->package && row->die == c->die && row->cluster == c->cluster &&
           row->core == c->core && row->thread == c->thread && row->numa_node == c->numa_node &&
           row->l2_group == c->l2_group && row->l3_group == c->l3_group &&
           row->kind_class == (k ? (int32_t)k->kind_class : -1) &&
           strcmp(row->kind_name, k ? k->name : "") == 0 && row->base_mhz == c->base_mhz &&
           row->max_mhz == c->max_mhz && row->state == c->state && row->reserved == c->reserved &&
           ks_featset_equal(&row->native, &c->native) &&
           ks_featset_equal(&row->usable, &c->usable) &&
           ks_featset_equal(&row->defective, &c->defective);
}

/*
 * One ordered read of the host's stored CPUs, merged with r->cpus (sorted by
 * id): what[i] says whether report CPU i is new, identical (nothing to write:
 * most reports change one CPU, so this is what keeps updates cheap) or changed;
 * *stale gets the stored ids no longer reported.
 */
static ks_code diff_cpus(uint8_t *what, int32_t **stale, uint32_t *n_stale, sq_store *q,
                         const ks_report *r, ks_err *err)
{
    sqlite3_stmt *st = NULL;
    ks_store_cpu_row row;
    int32_t *ids = NULL;
    uint32_t n = 0, cap = 0, j = 0;
    ks_code rc = stmt(&st, q, ST_CPU_SCAN_HOST, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, r->host.id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        bool ok = cpu_row_read(&row, st);
        int32_t id = row.cpu_id;
        while (j < r->n_cpus && r->cpus[j].id < id)
            j++;
        if (j < r->n_cpus && r->cpus[j].id == id) {
            /* A row that does not decode is rewritten from the report. */
            what[j] = ok && cpu_row_matches(&row, r, &r->cpus[j]) ? CPU_SAME : CPU_CHANGED;
            continue;
        }
        if (n == cap) {
            uint32_t ncap = cap ? cap * 2 : 16;
            int32_t *nids = realloc(ids, ncap * sizeof(*ids));
            if (!nids) {
                rc = ks_err_set(err, KS_ENOMEM, "out of memory listing stale cpus");
                goto done;
            }
            ids = nids;
            cap = ncap;
        }
        ids[n++] = id;
    }
    if (src != SQLITE_DONE) {
        rc = sq_fail(q, src, "read cpus", err);
        goto done;
    }
    *stale = ids;
    *n_stale = n;
    ids = NULL;
done:
    stmt_done(st);
    free(ids);
    return rc;
}

/* Names the VM holding `cpu` of `host` (into vm). */
static ks_code cpu_owner(char vm[KS_ID_MAX], sq_store *q, const char *host, int32_t cpu,
                         ks_err *err)
{
    sqlite3_stmt *st = NULL;
    vcpu_list *l = vcpu_list_new(err);
    if (!l)
        return KS_ENOMEM;
    ks_code rc = stmt(&st, q, ST_VCPU_SCAN_HOST, err);
    if (rc != KS_OK) {
        free(l);
        return rc;
    }
    snprintf(vm, KS_ID_MAX, "?");
    bind_text(st, 1, host);
    int src = SQLITE_ROW;
    while (rc == KS_OK && src == SQLITE_ROW && (src = sqlite3_step(st)) == SQLITE_ROW) {
        rc = vcpus_parse(l, col_str(st, 2), col_str(st, 0), err);
        for (uint32_t i = 0; rc == KS_OK && i < l->n; i++)
            if (l->v[i].cpu_id == cpu) {
                col_text(vm, KS_ID_MAX, st, 0);
                src = SQLITE_DONE;
                break;
            }
    }
    if (rc == KS_OK && src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "find cpu owner", err);
    stmt_done(st);
    free(l);
    return rc;
}

static ks_code delete_stale_cpus(sq_store *q, const char *host, const int32_t *ids, uint32_t n,
                                 ks_err *err)
{
    sqlite3_stmt *del = NULL;
    host_alloc a = {.vms = NULL};
    char vm[KS_ID_MAX];
    ks_code rc = n ? alloc_read(&a, q, host, err) : KS_OK;
    if (rc == KS_OK && n)
        rc = stmt(&del, q, ST_CPU_DELETE, err);
    for (uint32_t i = 0; rc == KS_OK && i < n; i++) {
        if (bitmap_test(&a.used, ids[i])) {
            rc = cpu_owner(vm, q, host, ids[i], err);
            if (rc == KS_OK)
                rc = ks_err_set(err, KS_ECONFLICT,
                                "cpu %d of host '%s' is allocated to vm '%s' but no longer reported",
                                ids[i], host, vm);
            break;
        }
        bind_text(del, 1, host);
        sqlite3_bind_int(del, 2, ids[i]);
        int src = step_done(del);
        stmt_done(del);
        if (src != SQLITE_OK)
            rc = sq_fail(q, src, "delete cpu", err);
    }
    stmt_done(del);
    host_alloc_free(&a);
    return rc;
}

/* INSERTs the new CPUs and UPDATEs the changed ones (both statements take the
 * same parameters). */
static ks_code write_cpus(sq_store *q, const ks_report *r, const uint8_t *what, ks_err *err)
{
    sqlite3_stmt *ins = NULL, *upd = NULL;
    uint8_t bn[KS_FEATSET_WORDS * 8], bu[KS_FEATSET_WORDS * 8], bd[KS_FEATSET_WORDS * 8];
    ks_code rc = KS_OK;
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        if (what[i] == CPU_SAME)
            continue;
        sqlite3_stmt **pst = what[i] == CPU_NEW ? &ins : &upd;
        if (!*pst &&
            (rc = stmt(pst, q, what[i] == CPU_NEW ? ST_CPU_INSERT : ST_CPU_UPDATE, err)) != KS_OK)
            break;
        sqlite3_stmt *st = *pst;
        const ks_cpu *c = &r->cpus[i];
        const ks_kind *k = c->kind >= 0 ? &r->kinds[c->kind] : NULL;
        bind_text(st, 1, r->host.id);
        sqlite3_bind_int(st, 2, c->id);
        sqlite3_bind_int(st, 3, c->package);
        sqlite3_bind_int(st, 4, c->die);
        sqlite3_bind_int(st, 5, c->cluster);
        sqlite3_bind_int(st, 6, c->core);
        sqlite3_bind_int(st, 7, c->thread);
        sqlite3_bind_int(st, 8, c->numa_node);
        sqlite3_bind_int(st, 9, c->l2_group);
        sqlite3_bind_int(st, 10, c->l3_group);
        bind_text(st, 11, k ? ks_store__kind_class_str(k->kind_class) : NULL);
        bind_text(st, 12, k ? k->name : "");
        sqlite3_bind_int64(st, 13, c->base_mhz);
        sqlite3_bind_int64(st, 14, c->max_mhz);
        bind_text(st, 15, ks_store__cpu_state_str(c->state));
        sqlite3_bind_int(st, 16, c->reserved ? 1 : 0);
        sqlite3_bind_blob(st, 17, bn, featset_encode(bn, &c->native), SQLITE_STATIC);
        sqlite3_bind_blob(st, 18, bu, featset_encode(bu, &c->usable), SQLITE_STATIC);
        sqlite3_bind_blob(st, 19, bd, featset_encode(bd, &c->defective), SQLITE_STATIC);
        int src = step_done(st);
        sqlite3_reset(st);
        if (src != SQLITE_OK) {
            rc = sq_fail(q, src, "store cpu", err);
            break;
        }
    }
    stmt_done(ins);
    stmt_done(upd);
    return rc;
}

static ks_code replace_defects(sq_store *q, const ks_report *r, ks_err *err)
{
    sqlite3_stmt *del = NULL, *ins = NULL;
    ks_code rc = stmt(&del, q, ST_DEFECTS_DELETE, err);
    if (rc != KS_OK)
        return rc;
    bind_text(del, 1, r->host.id);
    int src = step_done(del);
    stmt_done(del);
    if (src != SQLITE_OK)
        return sq_fail(q, src, "delete defects", err);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *c = &r->cpus[i];
        for (uint16_t d = 0; d < c->n_defects; d++) {
            const ks_defect *df = &c->defects[d];
            if (!ins && (rc = stmt(&ins, q, ST_DEFECT_INSERT, err)) != KS_OK)
                return rc;
            bind_text(ins, 1, r->host.id);
            sqlite3_bind_int(ins, 2, c->id);
            bind_text(ins, 3, df->feature == KS_FEATURE_NONE ? NULL : ks_feature_name(df->feature));
            bind_text(ins, 4, ks_store__defect_source_str(df->source));
            bind_u64(ins, 5, df->time_us);
            bind_text(ins, 6, df->detail);
            src = step_done(ins);
            stmt_done(ins);
            if (src != SQLITE_OK)
                return sq_fail(q, src, "store defect", err);
        }
    }
    return KS_OK;
}

static ks_code sq_host_put_report(ks_store *s, const ks_report *r, const char *report_json,
                                  uint64_t now_us, ks_store_put_result *res, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    int32_t *stale = NULL;
    uint8_t *what = NULL;
    uint32_t n_stale = 0;
    ks_code rc = stmt(&st, q, ST_HOST_HEAD, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, r->host.id);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        const char *boot = col_str(st, 0);
        uint64_t gen = col_u64(st, 1);
        if (boot && strcmp(boot, r->host.boot_id) == 0) {
            if (r->host.generation < gen) {
                rc = ks_err_set(err, KS_ECONFLICT,
                                "report generation %llu is older than stored %llu",
                                (unsigned long long)r->host.generation, (unsigned long long)gen);
                goto done;
            }
            if (r->host.generation == gen) {
                res->unchanged = true; /* idempotent replay: by (host, boot id, generation) */
                goto done;
            }
        } else {
            res->boot_changed = true;
        }
    } else if (src == SQLITE_DONE) {
        res->created = true;
    } else {
        rc = sq_fail(q, src, "read host", err);
        goto done;
    }
    stmt_done(st);

    rc = stmt(&st, q, ST_HOST_UPSERT, err);
    if (rc != KS_OK)
        goto done;
    bind_text(st, 1, r->host.id);
    bind_text(st, 2, r->host.hostname);
    bind_text(st, 3, ks_store__arch_str(r->host.arch));
    bind_text(st, 4, r->host.vendor);
    bind_text(st, 5, r->host.model_name);
    bind_text(st, 6, r->host.boot_id);
    bind_u64(st, 7, r->host.generation);
    sqlite3_bind_int64(st, 8, r->n_cpus);
    bind_u64(st, 9, now_us);
    src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK) {
        rc = sq_fail(q, src, "store host", err);
        goto done;
    }
    rc = stmt(&st, q, ST_REPORT_UPSERT, err);
    if (rc != KS_OK)
        goto done;
    bind_text(st, 1, r->host.id);
    bind_text(st, 2, report_json);
    src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK) {
        rc = sq_fail(q, src, "store report", err);
        goto done;
    }
    st = NULL;

    what = calloc(r->n_cpus ? r->n_cpus : 1, 1); /* all CPU_NEW */
    if (!what) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory storing a report");
        goto done;
    }
    if (!res->created) {
        rc = diff_cpus(what, &stale, &n_stale, q, r, err);
        if (rc == KS_OK)
            rc = delete_stale_cpus(q, r->host.id, stale, n_stale, err);
        if (rc != KS_OK)
            goto done;
    }
    rc = write_cpus(q, r, what, err);
    if (rc == KS_OK)
        rc = replace_defects(q, r, err);
    if (rc != KS_OK)
        goto done;
    res->n_cpus_removed = n_stale;
    for (uint32_t i = 0; i < r->n_cpus; i++)
        res->n_cpus_added += what[i] == CPU_NEW;
    if (res->created || res->n_cpus_added || res->n_cpus_removed) {
        cpu_bitmap present = {.len = 0};
        for (uint32_t i = 0; i < r->n_cpus; i++)
            if (r->cpus[i].id >= 0 && r->cpus[i].id < KS_REPORT_MAX_CPUS)
                bitmap_set(&present, r->cpus[i].id, true);
        rc = alloc_write_present(q, r->host.id, &present, err);
    }
done:
    stmt_done(st);
    free(stale);
    free(what);
    return rc;
}

static ks_code sq_host_get(ks_store_host_row *out, ks_store *s, const char *id, bool with_report,
                           ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_host_row h;
    memset(&h, 0, sizeof(h));
    ks_code rc = stmt(&st, q, ST_HOST_GET, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, id);
    int src = sqlite3_step(st);
    if (src == SQLITE_DONE) {
        rc = ks_err_set(err, KS_ENOTFOUND, "host '%s' not found", id);
        goto done;
    }
    if (src != SQLITE_ROW) {
        rc = sq_fail(q, src, "read host", err);
        goto done;
    }
    host_row_read(&h, st);
    stmt_done(st);
    st = NULL;
    if (with_report) {
        rc = stmt(&st, q, ST_REPORT_GET, err);
        if (rc != KS_OK)
            goto done;
        bind_text(st, 1, id);
        src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            rc = col_dup(&h.report_json, st, 0, err);
        else if (src != SQLITE_DONE)
            rc = sq_fail(q, src, "read report", err);
        if (rc != KS_OK)
            goto done;
    }
    *out = h;
    h.report_json = NULL;
done:
    stmt_done(st);
    ks_store_host_row_destroy(&h);
    return rc;
}

/* Runs an UPDATE/DELETE keyed by a name; KS_ENOTFOUND when no row changed. */
static ks_code write_one(sq_store *q, sqlite3_stmt *st, const char *what, const char *name,
                         ks_err *err)
{
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, what, err);
    if (sqlite3_changes(q->db) == 0)
        return ks_err_set(err, KS_ENOTFOUND, "%s '%s' not found", what, name);
    return KS_OK;
}

static ks_code sq_host_heartbeat(ks_store *s, const char *id, uint64_t now_us, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_HOST_HEARTBEAT, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, id);
    bind_u64(st, 2, now_us);
    return write_one(q, st, "host", id, err);
}

static ks_code sq_host_set_state(ks_store *s, const char *id, ks_store_host_state state,
                                 uint64_t now_us, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_HOST_SET_STATE, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, id);
    bind_text(st, 2, ks_store_host_state_to_str(state));
    bind_u64(st, 3, now_us);
    return write_one(q, st, "host", id, err);
}

/* A single count(*) with one text parameter. */
static ks_code count_by(int64_t *out, sq_store *q, int id, const char *arg, ks_err *err)
{
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, id, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, arg);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = sq_fail(q, src, "count", err);
    stmt_done(st);
    return rc;
}

/* Deletes row `id` of a host or pool (`what`), refused while VMs use it. */
static ks_code delete_if_no_vms(sq_store *q, int count_st, int delete_st, const char *what,
                                const char *id, ks_err *err)
{
    int64_t n_vms = 0;
    ks_code rc = count_by(&n_vms, q, count_st, id, err);
    if (rc != KS_OK)
        return rc;
    if (n_vms > 0)
        return ks_err_set(err, KS_ECONFLICT, "%s '%s' has %lld vms", what, id, (long long)n_vms);
    sqlite3_stmt *st = NULL;
    rc = stmt(&st, q, delete_st, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, id);
    return write_one(q, st, what, id, err);
}

static ks_code sq_host_delete(ks_store *s, const char *id, ks_err *err)
{
    return delete_if_no_vms(sq(s), ST_HOST_VM_COUNT, ST_HOST_DELETE, "host", id, err);
}

static void bind_host_filter(sqlite3_stmt *st, const ks_store_host_filter *f)
{
    bind_text(st, 1, f->state >= 0 ? ks_store_host_state_to_str(f->state) : NULL);
    bind_text(st, 2, f->arch >= 0 ? ks_store__arch_str(f->arch) : NULL);
    bind_text(st, 3, f->vendor);
}

static ks_code sq_host_list(ks_store *s, const ks_store_host_filter *f, ks_store_host_cb cb,
                            void *ctx, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_host_row h;
    ks_code rc = stmt(&st, q, ST_HOST_LIST, err);
    if (rc != KS_OK)
        return rc;
    bind_host_filter(st, f);
    bind_text(st, 4, f->after_id ? f->after_id : "");
    sqlite3_bind_int64(st, 5, f->limit ? (sqlite3_int64)f->limit : -1);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        host_row_read(&h, st);
        if (cb(ctx, &h) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "list hosts", err);
    stmt_done(st);
    return rc;
}

static ks_code sq_host_count(uint64_t *out, ks_store *s, const ks_store_host_filter *f, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_HOST_COUNT, err);
    if (rc != KS_OK)
        return rc;
    bind_host_filter(st, f);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *out = col_u64(st, 0);
    else
        rc = sq_fail(q, src, "count hosts", err);
    stmt_done(st);
    return rc;
}

/* ---- cpus -------------------------------------------------------------- */

/* Hot path of the start-up scan: no allocation, text compared in place. */
static bool cpu_row_read(ks_store_cpu_row *c, sqlite3_stmt *st)
{
    col_text(c->host_id, sizeof(c->host_id), st, 0);
    c->cpu_id = sqlite3_column_int(st, 1);
    c->package = sqlite3_column_int(st, 2);
    c->die = sqlite3_column_int(st, 3);
    c->cluster = sqlite3_column_int(st, 4);
    c->core = sqlite3_column_int(st, 5);
    c->thread = sqlite3_column_int(st, 6);
    c->numa_node = sqlite3_column_int(st, 7);
    c->l2_group = sqlite3_column_int(st, 8);
    c->l3_group = sqlite3_column_int(st, 9);
    const char *kc = col_str(st, 10);
    c->kind_class = kc ? ks_store__kind_class_parse(kc) : -1;
    col_text(c->kind_name, sizeof(c->kind_name), st, 11);
    c->base_mhz = (uint32_t)sqlite3_column_int64(st, 12);
    c->max_mhz = (uint32_t)sqlite3_column_int64(st, 13);
    int state = ks_store__cpu_state_parse(col_str(st, 14));
    c->state = (uint8_t)(state < 0 ? KS_CPU_QUARANTINED : state);
    c->reserved = sqlite3_column_int(st, 15) != 0;
    return state >= 0 && col_featset(&c->native, st, 16) && col_featset(&c->usable, st, 17) &&
           col_featset(&c->defective, st, 18);
}

static ks_code sq_cpu_scan(ks_store *s, const char *host_id, ks_store_cpu_cb cb, void *ctx,
                           ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_cpu_row c;
    ks_code rc = stmt(&st, q, host_id ? ST_CPU_SCAN_HOST : ST_CPU_SCAN_ALL, err);
    if (rc != KS_OK)
        return rc;
    if (host_id)
        bind_text(st, 1, host_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (!cpu_row_read(&c, st)) {
            rc =
                ks_err_set(err, KS_EIO, "corrupt row for cpu %d of host '%s'", c.cpu_id, c.host_id);
            break;
        }
        if (cb(ctx, &c) != 0)
            break;
    }
    if (rc == KS_OK && src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "scan cpus", err);
    stmt_done(st);
    return rc;
}

static ks_code sq_cpu_get(ks_store_cpu_row *out, ks_store *s, const char *host_id, int32_t cpu_id,
                          ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_cpu_row c;
    ks_code rc = stmt(&st, q, ST_CPU_GET, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, host_id);
    sqlite3_bind_int(st, 2, cpu_id);
    int src = sqlite3_step(st);
    if (src == SQLITE_DONE)
        rc = ks_err_set(err, KS_ENOTFOUND, "host '%s' has no cpu %d", host_id, cpu_id);
    else if (src != SQLITE_ROW)
        rc = sq_fail(q, src, "read cpu", err);
    else if (!cpu_row_read(&c, st))
        rc = ks_err_set(err, KS_EIO, "corrupt row for cpu %d of host '%s'", cpu_id, host_id);
    else
        *out = c;
    stmt_done(st);
    return rc;
}

static ks_code sq_defect_list(ks_store *s, const char *host_id, int32_t cpu_id,
                              ks_store_defect_cb cb, void *ctx, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_defect_row d;
    ks_code rc = stmt(&st, q, host_id ? ST_DEFECT_LIST_HOST : ST_DEFECT_LIST, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, host_id);
    sqlite3_bind_int(st, 2, cpu_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        col_text(d.host_id, sizeof(d.host_id), st, 0);
        d.cpu_id = sqlite3_column_int(st, 1);
        col_text(d.feature_name, sizeof(d.feature_name), st, 2);
        d.feature = KS_FEATURE_NONE;
        unsigned fid;
        if (d.feature_name[0] && ks_feature_lookup(d.feature_name, &fid, NULL) == KS_OK)
            d.feature = (uint16_t)fid;
        int source = ks_store__defect_source_parse(col_str(st, 3));
        d.source = (uint8_t)(source < 0 ? KS_DEFECT_OPERATOR : source);
        d.time_us = col_u64(st, 4);
        col_text(d.detail, sizeof(d.detail), st, 5);
        if (cb(ctx, &d) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "list defects", err);
    stmt_done(st);
    return rc;
}

/* ---- vms --------------------------------------------------------------- */

static ks_code sq_vm_insert(ks_store *s, const ks_store_vm_row *vm,
                            const ks_store_vcpu_alloc *vcpus, uint32_t n_vcpus, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_VM_INSERT, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, vm->name);
    bind_text(st, 2, vm->host_id);
    bind_text(st, 3, ks_store_vm_state_to_str(vm->state));
    bind_u64(st, 4, vm->generation);
    bind_u64(st, 5, vm->applied_generation);
    bind_text(st, 6, vm->pool);
    bind_text(st, 7, vm->anti_affinity_group);
    bind_text(st, 8, vm->apply_error);
    sqlite3_bind_int64(st, 9, n_vcpus);
    bind_u64(st, 10, vm->created_us);
    bind_u64(st, 11, vm->updated_us);
    bind_text(st, 12, vm->request_json);
    char *text = NULL;
    rc = bind_plan(q, st, 13, 15, vm->plan_json, err);
    if (rc == KS_OK)
        rc = vcpus_format(&text, vm->name, vcpus, n_vcpus, err);
    if (rc != KS_OK) {
        stmt_done(st);
        return rc;
    }
    sqlite3_bind_text(st, 14, text, -1, free);
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK) {
        switch (sqlite3_extended_errcode(q->db)) {
        case SQLITE_CONSTRAINT_PRIMARYKEY:
            return ks_err_set(err, KS_EEXIST, "vm '%s' already exists", vm->name);
        case SQLITE_CONSTRAINT_FOREIGNKEY:
            return ks_err_set(err, KS_ENOTFOUND, "host '%s' not found", vm->host_id);
        default:
            return sq_fail(q, src, "store vm", err);
        }
    }
    return vcpus_take(q, vm->host_id, vm->name, vcpus, n_vcpus, err);
}

/* Fills *v from a VM_COLS row; JSON pointers borrowed from the statement or
 * the handle's buffer, until the next row. */
static ks_code vm_row_read(ks_store_vm_row *v, sq_store *q, sqlite3_stmt *st, ks_err *err)
{
    col_text(v->name, sizeof(v->name), st, 0);
    col_text(v->host_id, sizeof(v->host_id), st, 1);
    int state = ks_store_vm_state_from_str(col_str(st, 2));
    v->state = (uint8_t)(state < 0 ? KS_STORE_VM_FAILED : state);
    v->generation = col_u64(st, 3);
    v->applied_generation = col_u64(st, 4);
    col_text(v->pool, sizeof(v->pool), st, 5);
    col_text(v->anti_affinity_group, sizeof(v->anti_affinity_group), st, 6);
    col_text(v->apply_error, sizeof(v->apply_error), st, 7);
    v->n_vcpus = (uint32_t)sqlite3_column_int64(st, 8);
    v->created_us = col_u64(st, 9);
    v->updated_us = col_u64(st, 10);
    v->request_json = (char *)col_str(st, 11);
    const char *plan = NULL;
    ks_code rc = plan_read(&plan, q, st, 12, 13, err);
    if (rc != KS_OK) {
        ks_err_prefix(err, "plan of vm '%s'", v->name);
        return rc;
    }
    v->plan_json = (char *)plan;
    return KS_OK;
}

static ks_code sq_vm_get(ks_store_vm_row *out, ks_store *s, const char *name, bool with_json,
                         ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_vm_row v;
    memset(&v, 0, sizeof(v));
    ks_code rc = stmt(&st, q, ST_VM_GET, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, name);
    sqlite3_bind_int(st, 5, with_json ? 1 : 0);
    int src = sqlite3_step(st);
    if (src == SQLITE_DONE) {
        rc = ks_err_set(err, KS_ENOTFOUND, "vm '%s' not found", name);
        goto done;
    }
    if (src != SQLITE_ROW) {
        rc = sq_fail(q, src, "read vm", err);
        goto done;
    }
    rc = vm_row_read(&v, q, st, err);
    const char *plan = v.plan_json;
    v.request_json = v.plan_json = NULL;
    if (rc == KS_OK && with_json) {
        rc = col_dup(&v.request_json, st, 11, err);
        if (rc == KS_OK && plan && !(v.plan_json = strdup(plan)))
            rc = ks_err_set(err, KS_ENOMEM, "out of memory copying a plan");
    }
    if (rc != KS_OK)
        goto done;
    *out = v;
    v.request_json = v.plan_json = NULL;
done:
    stmt_done(st);
    ks_store_vm_row_destroy(&v);
    return rc;
}

static void bind_vm_filter(sqlite3_stmt *st, const ks_store_vm_filter *f)
{
    bind_text(st, 1, f->state >= 0 ? ks_store_vm_state_to_str(f->state) : NULL);
    bind_text(st, 2, f->pool); /* "" matches VMs in no pool */
    bind_opt_text(st, 6, f->host_id);
}

static ks_code sq_vm_list(ks_store *s, const ks_store_vm_filter *f, ks_store_vm_cb cb, void *ctx,
                          ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_vm_row v;
    bool by_host = f->host_id && f->host_id[0];
    ks_code rc = stmt(&st, q, by_host ? ST_VM_LIST_HOST : ST_VM_LIST_ALL, err);
    if (rc != KS_OK)
        return rc;
    bind_vm_filter(st, f);
    bind_text(st, 3, f->after_name ? f->after_name : "");
    sqlite3_bind_int64(st, 4, f->limit ? (sqlite3_int64)f->limit : -1);
    sqlite3_bind_int(st, 5, f->with_json ? 1 : 0);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        rc = vm_row_read(&v, q, st, err);
        if (rc != KS_OK || cb(ctx, &v) != 0)
            break;
    }
    if (rc == KS_OK && src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "list vms", err);
    stmt_done(st);
    return rc;
}

static ks_code sq_vm_count(uint64_t *out, ks_store *s, const ks_store_vm_filter *f, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    bool by_host = f->host_id && f->host_id[0];
    ks_code rc = stmt(&st, q, by_host ? ST_VM_COUNT_HOST : ST_VM_COUNT, err);
    if (rc != KS_OK)
        return rc;
    bind_vm_filter(st, f);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *out = col_u64(st, 0);
    else
        rc = sq_fail(q, src, "count vms", err);
    stmt_done(st);
    return rc;
}

static ks_code sq_vm_delete(ks_store *s, const char *name, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    char host[KS_ID_MAX];
    vcpu_list *l = vcpu_list_new(err);
    if (!l)
        return KS_ENOMEM;
    ks_code rc = stmt(&st, q, ST_VM_DELETE, err);
    if (rc != KS_OK) {
        free(l);
        return rc;
    }
    bind_text(st, 1, name);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        col_text(host, sizeof(host), st, 0);
        rc = vcpus_parse(l, col_str(st, 1), name, err);
        src = sqlite3_step(st);
    } else if (src == SQLITE_DONE) {
        rc = ks_err_set(err, KS_ENOTFOUND, "vm '%s' not found", name);
    }
    if (rc == KS_OK && src != SQLITE_DONE)
        rc = sq_fail(q, src, "delete vm", err);
    stmt_done(st);
    if (rc == KS_OK)
        rc = vcpus_release(q, host, l, name, err);
    free(l);
    return rc;
}

/* The generation, host and vCPUs of VM `name` (KS_ENOTFOUND). */
static ks_code vm_alloc_read(uint64_t *gen, char host[KS_ID_MAX], vcpu_list *l, sq_store *q,
                             const char *name, ks_err *err)
{
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_VM_ALLOC, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, name);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *gen = col_u64(st, 0);
        col_text(host, KS_ID_MAX, st, 1);
        rc = vcpus_parse(l, col_str(st, 2), name, err);
    } else if (src == SQLITE_DONE) {
        rc = ks_err_set(err, KS_ENOTFOUND, "vm '%s' not found", name);
    } else {
        rc = sq_fail(q, src, "read vm", err);
    }
    stmt_done(st);
    return rc;
}

static ks_code sq_vm_update_plan(ks_store *s, const char *name, const char *host_id,
                                 uint64_t generation, const char *plan_json,
                                 const ks_store_vcpu_alloc *vcpus, uint32_t n_vcpus,
                                 uint64_t now_us, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    uint64_t gen = 0;
    char old_host[KS_ID_MAX], *text = NULL;
    vcpu_list *old = vcpu_list_new(err);
    if (!old)
        return KS_ENOMEM;
    ks_code rc = vm_alloc_read(&gen, old_host, old, q, name, err);
    if (rc == KS_OK && generation <= gen)
        rc = ks_err_set(err, KS_ECONFLICT, "plan generation %llu is not newer than stored %llu",
                        (unsigned long long)generation, (unsigned long long)gen);
    if (rc == KS_OK)
        rc = vcpus_format(&text, name, vcpus, n_vcpus, err);
    if (rc == KS_OK)
        rc = vcpus_release(q, old_host, old, name, err);
    free(old);
    if (rc == KS_OK)
        rc = stmt(&st, q, ST_VM_UPDATE_PLAN, err);
    if (rc != KS_OK) {
        free(text);
        return rc;
    }
    bind_text(st, 1, name);
    bind_text(st, 2, host_id);
    bind_u64(st, 3, generation);
    sqlite3_bind_int64(st, 5, n_vcpus);
    bind_u64(st, 6, now_us);
    sqlite3_bind_text(st, 7, text, -1, free);
    rc = bind_plan(q, st, 4, 8, plan_json, err);
    if (rc != KS_OK) {
        stmt_done(st);
        return rc;
    }
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK) {
        if (sqlite3_extended_errcode(q->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
            return ks_err_set(err, KS_ENOTFOUND, "host '%s' not found", host_id);
        return sq_fail(q, src, "update vm", err);
    }
    return vcpus_take(q, host_id, name, vcpus, n_vcpus, err);
}

static ks_code sq_vm_set_state(ks_store *s, const char *name, ks_store_vm_state state,
                               uint64_t now_us, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_VM_SET_STATE, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, name);
    bind_text(st, 2, ks_store_vm_state_to_str(state));
    bind_u64(st, 3, now_us);
    return write_one(q, st, "vm", name, err);
}

static ks_code sq_vm_set_applied(ks_store *s, const char *name, uint64_t applied_generation,
                                 const char *apply_error, uint64_t now_us, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_VM_SET_APPLIED, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, name);
    bind_u64(st, 2, applied_generation);
    bind_text(st, 3, apply_error ? apply_error : "");
    bind_u64(st, 4, now_us);
    return write_one(q, st, "vm", name, err);
}

static int vcpu_row_order(const void *a, const void *b)
{
    const ks_store_vcpu_row *x = a, *y = b;
    return (x->cpu_id > y->cpu_id) - (x->cpu_id < y->cpu_id);
}

/* The vCPUs of one host, gathered from its VM rows and passed on by CPU. */
typedef struct vcpu_batch {
    ks_store_vcpu_row *rows;
    size_t n, cap;
} vcpu_batch;

static bool batch_add(vcpu_batch *b, const char *vm, const char *host, const vcpu_list *l)
{
    if (b->n + l->n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + l->n)
            cap *= 2;
        ks_store_vcpu_row *rows = realloc(b->rows, cap * sizeof(*rows));
        if (!rows)
            return false;
        b->rows = rows;
        b->cap = cap;
    }
    for (uint32_t i = 0; i < l->n; i++) {
        ks_store_vcpu_row *r = &b->rows[b->n++];
        snprintf(r->vm_name, sizeof(r->vm_name), "%s", vm);
        snprintf(r->host_id, sizeof(r->host_id), "%s", host);
        r->vcpu = l->v[i].vcpu;
        r->cpu_id = l->v[i].cpu_id;
    }
    return true;
}

/* Calls cb for the batch (sorted by CPU unless by_vcpu) and empties it; 1 when
 * cb asked to stop. */
static int batch_flush(vcpu_batch *b, bool by_vcpu, ks_store_vcpu_cb cb, void *ctx)
{
    if (!by_vcpu && b->n > 1)
        qsort(b->rows, b->n, sizeof(*b->rows), vcpu_row_order);
    int stop = 0;
    for (size_t i = 0; i < b->n && !stop; i++)
        stop = cb(ctx, &b->rows[i]);
    b->n = 0;
    return stop;
}

static ks_code sq_vcpu_scan(ks_store *s, const char *host_id, const char *vm_name,
                            ks_store_vcpu_cb cb, void *ctx, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    vcpu_batch b = {0};
    int id = vm_name ? ST_VCPU_SCAN_VM : host_id ? ST_VCPU_SCAN_HOST : ST_VCPU_SCAN_ALL;
    vcpu_list *l = vcpu_list_new(err);
    if (!l)
        return KS_ENOMEM;
    ks_code rc = stmt(&st, q, id, err);
    if (rc != KS_OK) {
        free(l);
        return rc;
    }
    if (host_id)
        bind_text(st, 1, host_id);
    if (vm_name)
        bind_text(st, 2, vm_name);
    int src = SQLITE_DONE, stop = 0;
    char host[KS_ID_MAX] = "";
    while (!stop && (src = sqlite3_step(st)) == SQLITE_ROW) {
        if (strcmp(host, col_str(st, 1)) != 0) {
            stop = batch_flush(&b, vm_name != NULL, cb, ctx);
            col_text(host, sizeof(host), st, 1);
        }
        rc = vcpus_parse(l, col_str(st, 2), col_str(st, 0), err);
        if (rc == KS_OK && !batch_add(&b, col_str(st, 0), host, l))
            rc = ks_err_set(err, KS_ENOMEM, "out of memory listing vcpus");
        if (rc != KS_OK)
            break;
    }
    if (rc == KS_OK && !stop && src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "scan vcpus", err);
    stmt_done(st);
    if (rc == KS_OK && !stop)
        batch_flush(&b, vm_name != NULL, cb, ctx);
    free(b.rows);
    free(l);
    return rc;
}

/* ---- pools ------------------------------------------------------------- */

static ks_code sq_pool_create(ks_store *s, const char *name, const char *selector_json,
                              uint64_t now_us, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_POOL_INSERT, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, name);
    bind_text(st, 2, selector_json);
    bind_u64(st, 3, now_us);
    int src = step_done(st);
    stmt_done(st);
    if (src == SQLITE_OK)
        return KS_OK;
    if (sqlite3_extended_errcode(q->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
        return ks_err_set(err, KS_EEXIST, "pool '%s' already exists", name);
    return sq_fail(q, src, "store pool", err);
}

static void pool_row_read(ks_store_pool_row *p, sqlite3_stmt *st)
{
    col_text(p->name, sizeof(p->name), st, 0);
    p->selector_json = (char *)col_str(st, 1);
    p->n_members = (uint32_t)sqlite3_column_int64(st, 2);
    p->created_us = col_u64(st, 3);
}

static ks_code sq_pool_get(ks_store_pool_row *out, ks_store *s, const char *name, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_pool_row p;
    memset(&p, 0, sizeof(p));
    ks_code rc = stmt(&st, q, ST_POOL_GET, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, name);
    int src = sqlite3_step(st);
    if (src == SQLITE_DONE) {
        rc = ks_err_set(err, KS_ENOTFOUND, "pool '%s' not found", name);
        goto done;
    }
    if (src != SQLITE_ROW) {
        rc = sq_fail(q, src, "read pool", err);
        goto done;
    }
    pool_row_read(&p, st);
    rc = col_dup(&p.selector_json, st, 1, err);
    if (rc != KS_OK)
        goto done;
    *out = p;
    p.selector_json = NULL;
done:
    stmt_done(st);
    ks_store_pool_row_destroy(&p);
    return rc;
}

static ks_code sq_pool_list(ks_store *s, ks_store_pool_cb cb, void *ctx, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_pool_row p;
    ks_code rc = stmt(&st, q, ST_POOL_LIST, err);
    if (rc != KS_OK)
        return rc;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        pool_row_read(&p, st);
        if (cb(ctx, &p) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "list pools", err);
    stmt_done(st);
    return rc;
}

static ks_code sq_pool_delete(ks_store *s, const char *name, ks_err *err)
{
    return delete_if_no_vms(sq(s), ST_POOL_VM_COUNT, ST_POOL_DELETE, "pool", name, err);
}

static ks_code sq_pool_members_set(ks_store *s, const char *name, const char *const *host_ids,
                                   uint32_t n, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    int64_t exists = 0;
    ks_code rc = stmt(&st, q, ST_POOL_EXISTS, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, name);
    int src = sqlite3_step(st);
    exists = src == SQLITE_ROW;
    stmt_done(st);
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        return sq_fail(q, src, "read pool", err);
    if (!exists)
        return ks_err_set(err, KS_ENOTFOUND, "pool '%s' not found", name);
    rc = stmt(&st, q, ST_MEMBERS_DELETE, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, name);
    src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, "delete pool members", err);
    rc = stmt(&st, q, ST_MEMBER_INSERT, err);
    for (uint32_t i = 0; rc == KS_OK && i < n; i++) {
        bind_text(st, 1, name);
        bind_text(st, 2, host_ids[i]);
        src = step_done(st);
        stmt_done(st);
        if (src == SQLITE_OK)
            continue;
        switch (sqlite3_extended_errcode(q->db)) {
        case SQLITE_CONSTRAINT_PRIMARYKEY:
            rc = ks_err_set(err, KS_EINVAL, "host '%s' listed twice in pool '%s'", host_ids[i],
                            name);
            break;
        case SQLITE_CONSTRAINT_FOREIGNKEY:
            rc = ks_err_set(err, KS_ENOTFOUND, "host '%s' not found", host_ids[i]);
            break;
        default:
            rc = sq_fail(q, src, "store pool member", err);
        }
    }
    return rc;
}

static ks_code sq_pool_members_list(ks_store *s, const char *pool, ks_store_member_cb cb, void *ctx,
                                    ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_MEMBERS_LIST, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, pool);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW)
        if (cb(ctx, col_str(st, 0), col_str(st, 1)) != 0)
            break;
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "list pool members", err);
    stmt_done(st);
    return rc;
}

/* ---- policies ---------------------------------------------------------- */

/* *out_id (may be NULL) = the rowid just inserted by `st`. */
static ks_code insert_returning_id(int64_t *out_id, sq_store *q, sqlite3_stmt *st, const char *what,
                                   ks_err *err)
{
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, what, err);
    if (out_id)
        *out_id = sqlite3_last_insert_rowid(q->db);
    return KS_OK;
}

static ks_code sq_policy_add(int64_t *out_id, ks_store *s, ks_store_policy_kind kind,
                             const char *features_json, const char *reason, uint64_t now_us,
                             ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_POLICY_INSERT, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, ks_store_policy_kind_to_str(kind));
    bind_text(st, 2, features_json);
    bind_text(st, 3, reason ? reason : "");
    bind_u64(st, 4, now_us);
    return insert_returning_id(out_id, q, st, "store policy", err);
}

static ks_code sq_policy_list(ks_store *s, ks_store_policy_cb cb, void *ctx, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_policy_row p;
    ks_code rc = stmt(&st, q, ST_POLICY_LIST, err);
    if (rc != KS_OK)
        return rc;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        p.id = sqlite3_column_int64(st, 0);
        int kind = ks_store_policy_kind_from_str(col_str(st, 1));
        p.kind = (uint8_t)(kind < 0 ? 0 : kind);
        p.features_json = col_str(st, 2);
        col_text(p.reason, sizeof(p.reason), st, 3);
        p.created_us = col_u64(st, 4);
        if (cb(ctx, &p) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "list policies", err);
    stmt_done(st);
    return rc;
}

static ks_code delete_by_id(sq_store *q, int stmt_id, int64_t id, const char *what, ks_err *err)
{
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, stmt_id, err);
    if (rc != KS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, what, err);
    if (sqlite3_changes(q->db) == 0)
        return ks_err_set(err, KS_ENOTFOUND, "%s %lld not found", what, (long long)id);
    return KS_OK;
}

static ks_code sq_policy_delete(ks_store *s, int64_t id, ks_err *err)
{
    return delete_by_id(sq(s), ST_POLICY_DELETE, id, "policy", err);
}

/* ---- events ------------------------------------------------------------ */

static ks_code sq_event_append(int64_t *out_id, ks_store *s, uint64_t time_us, const char *type,
                               const char *host_id, const char *vm, const char *detail_json,
                               ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_EVENT_INSERT, err);
    if (rc != KS_OK)
        return rc;
    bind_u64(st, 1, time_us);
    bind_text(st, 2, type);
    bind_opt_text(st, 3, host_id);
    bind_opt_text(st, 4, vm);
    bind_text(st, 5, detail_json);
    return insert_returning_id(out_id, q, st, "store event", err);
}

static ks_code sq_event_list(ks_store *s, int64_t since_id, uint32_t limit, ks_store_event_cb cb,
                             void *ctx, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_event_row e;
    ks_code rc = stmt(&st, q, ST_EVENT_LIST, err);
    if (rc != KS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, since_id);
    sqlite3_bind_int64(st, 2, limit ? (sqlite3_int64)limit : -1);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        e.id = sqlite3_column_int64(st, 0);
        e.time_us = col_u64(st, 1);
        col_text(e.type, sizeof(e.type), st, 2);
        col_text(e.host_id, sizeof(e.host_id), st, 3);
        col_text(e.vm, sizeof(e.vm), st, 4);
        e.detail_json = col_str(st, 5);
        if (cb(ctx, &e) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "list events", err);
    stmt_done(st);
    return rc;
}

static ks_code delete_before(uint64_t *out_n, sq_store *q, int stmt_id, uint64_t before_us,
                             const char *what, ks_err *err)
{
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, stmt_id, err);
    if (rc != KS_OK)
        return rc;
    bind_u64(st, 1, before_us);
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, what, err);
    if (out_n)
        *out_n = (uint64_t)sqlite3_changes64(q->db);
    return KS_OK;
}

static ks_code sq_event_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err)
{
    return delete_before(out_n, sq(s), ST_EVENT_PRUNE, before_us, "prune events", err);
}

/* ---- capacity ---------------------------------------------------------- */

static ks_code sq_capacity_insert(int64_t *out_id, ks_store *s, const ks_store_capacity_row *row,
                                  ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_CAP_INSERT, err);
    if (rc != KS_OK)
        return rc;
    bind_u64(st, 1, row->time_us);
    bind_text(st, 2, row->scope);
    bind_u64(st, 3, row->total);
    bind_u64(st, 4, row->allocated);
    bind_u64(st, 5, row->free);
    bind_u64(st, 6, row->degraded_usable);
    bind_u64(st, 7, row->reclaimed);
    bind_u64(st, 8, row->stranded);
    bind_u64(st, 9, row->quarantined);
    return insert_returning_id(out_id, q, st, "store capacity snapshot", err);
}

static ks_code sq_capacity_list(ks_store *s, const char *scope, uint64_t since_us, uint32_t limit,
                                ks_store_capacity_cb cb, void *ctx, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_capacity_row c;
    ks_code rc = stmt(&st, q, scope ? ST_CAP_LIST_SCOPE : ST_CAP_LIST_ALL, err);
    if (rc != KS_OK)
        return rc;
    if (scope)
        bind_text(st, 1, scope);
    bind_u64(st, 2, since_us);
    sqlite3_bind_int64(st, 3, limit ? (sqlite3_int64)limit : -1);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        c.id = sqlite3_column_int64(st, 0);
        c.time_us = col_u64(st, 1);
        col_text(c.scope, sizeof(c.scope), st, 2);
        c.total = col_u64(st, 3);
        c.allocated = col_u64(st, 4);
        c.free = col_u64(st, 5);
        c.degraded_usable = col_u64(st, 6);
        c.reclaimed = col_u64(st, 7);
        c.stranded = col_u64(st, 8);
        c.quarantined = col_u64(st, 9);
        if (cb(ctx, &c) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "list capacity", err);
    stmt_done(st);
    return rc;
}

static ks_code sq_capacity_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err)
{
    return delete_before(out_n, sq(s), ST_CAP_PRUNE, before_us, "prune capacity", err);
}

/* ---- idempotency ------------------------------------------------------- */

static ks_code sq_idem_get(ks_store_idem_row *out, ks_store *s, const char *key, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_idem_row r;
    memset(&r, 0, sizeof(r));
    ks_code rc = stmt(&st, q, ST_IDEM_GET, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, key);
    int src = sqlite3_step(st);
    if (src == SQLITE_DONE) {
        rc = ks_err_set(err, KS_ENOTFOUND, "idempotency key not found");
        goto done;
    }
    if (src != SQLITE_ROW) {
        rc = sq_fail(q, src, "read idempotency key", err);
        goto done;
    }
    col_text(r.key, sizeof(r.key), st, 0);
    col_text(r.request_hash, sizeof(r.request_hash), st, 1);
    r.status = sqlite3_column_int(st, 2);
    r.created_us = col_u64(st, 4);
    rc = col_dup(&r.response_json, st, 3, err);
    if (rc != KS_OK)
        goto done;
    *out = r;
    r.response_json = NULL;
done:
    stmt_done(st);
    ks_store_idem_row_destroy(&r);
    return rc;
}

static ks_code sq_idem_put(ks_store *s, const char *key, const char *request_hash, int32_t status,
                           const char *response_json, uint64_t now_us, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_IDEM_INSERT, err);
    if (rc != KS_OK)
        return rc;
    bind_text(st, 1, key);
    bind_text(st, 2, request_hash);
    sqlite3_bind_int(st, 3, status);
    bind_text(st, 4, response_json);
    bind_u64(st, 5, now_us);
    int src = step_done(st);
    stmt_done(st);
    if (src == SQLITE_OK)
        return KS_OK;
    if (sqlite3_extended_errcode(q->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
        return ks_err_set(err, KS_EEXIST, "idempotency key already stored");
    return sq_fail(q, src, "store idempotency key", err);
}

static ks_code sq_idem_expire(uint64_t *out_n, ks_store *s, uint64_t older_than_us, ks_err *err)
{
    return delete_before(out_n, sq(s), ST_IDEM_EXPIRE, older_than_us, "expire idempotency keys",
                         err);
}

/* ---- tokens ------------------------------------------------------------ */

static ks_code sq_token_add(int64_t *out_id, ks_store *s, const uint8_t *hash, size_t hash_len,
                            const char *role, const char *host_id, const char *description,
                            uint64_t now_us, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_TOKEN_INSERT, err);
    if (rc != KS_OK)
        return rc;
    sqlite3_bind_blob(st, 1, hash, (int)hash_len, SQLITE_STATIC);
    bind_text(st, 2, role);
    bind_text(st, 3, host_id ? host_id : "");
    bind_text(st, 4, description ? description : "");
    bind_u64(st, 5, now_us);
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK) {
        if (sqlite3_extended_errcode(q->db) == SQLITE_CONSTRAINT_UNIQUE)
            return ks_err_set(err, KS_EEXIST, "token already exists");
        return sq_fail(q, src, "store token", err);
    }
    if (out_id)
        *out_id = sqlite3_last_insert_rowid(q->db);
    return KS_OK;
}

static void token_row_read(ks_store_token_row *t, sqlite3_stmt *st)
{
    t->id = sqlite3_column_int64(st, 0);
    const void *h = sqlite3_column_blob(st, 1);
    int n = sqlite3_column_bytes(st, 1);
    if (n < 0 || n > KS_STORE_TOKEN_HASH_MAX || !h)
        n = 0;
    memset(t->hash, 0, sizeof(t->hash));
    if (n)
        memcpy(t->hash, h, (size_t)n);
    t->hash_len = (uint32_t)n;
    col_text(t->role, sizeof(t->role), st, 2);
    col_text(t->host_id, sizeof(t->host_id), st, 3);
    col_text(t->description, sizeof(t->description), st, 4);
    t->created_us = col_u64(st, 5);
}

static ks_code sq_token_find(ks_store_token_row *out, ks_store *s, const uint8_t *hash,
                             size_t hash_len, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_TOKEN_FIND, err);
    if (rc != KS_OK)
        return rc;
    sqlite3_bind_blob(st, 1, hash, (int)hash_len, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        token_row_read(out, st);
    else if (src == SQLITE_DONE)
        rc = ks_err_set(err, KS_ENOTFOUND, "token not found");
    else
        rc = sq_fail(q, src, "read token", err);
    stmt_done(st);
    return rc;
}

static ks_code sq_token_list(ks_store *s, ks_store_token_cb cb, void *ctx, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_token_row t;
    ks_code rc = stmt(&st, q, ST_TOKEN_LIST, err);
    if (rc != KS_OK)
        return rc;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        token_row_read(&t, st);
        if (cb(ctx, &t) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "list tokens", err);
    stmt_done(st);
    return rc;
}

static ks_code sq_token_delete(ks_store *s, int64_t id, ks_err *err)
{
    return delete_by_id(sq(s), ST_TOKEN_DELETE, id, "token", err);
}

/* ---- change feed, leadership --------------------------------------------- */

static ks_code sq_change_append(ks_store *s, ks_store_change_kind kind, const char *key,
                                const char *host_id, ks_err *err)
{
    sq_store *q = sq(s);
    if (q->skip_change_feed)
        return KS_OK;
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_CHANGE_INSERT, err);
    if (rc != KS_OK)
        return rc;
    bind_u64(st, 1, ks_store__wall_us());
    bind_text(st, 2, ks_store__change_kind_str(kind));
    bind_text(st, 3, key);
    bind_text(st, 4, host_id);
    return insert_returning_id(NULL, q, st, "record change", err);
}

static ks_code sq_changes_cursor(int64_t *out, ks_store *s, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_CHANGES_CURSOR, err);
    if (rc != KS_OK)
        return rc;
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = sq_fail(q, src, "read change cursor", err);
    stmt_done(st);
    return rc;
}

/* One writer at a time (the write lock): seq order is commit order, so the
 * cursor is simply the last seq seen. */
static ks_code sq_changes_since(int64_t *next, ks_store *s, int64_t cursor, ks_store_change_cb cb,
                                void *ctx, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_store_change_row c;
    int64_t last = cursor;
    ks_code rc = stmt(&st, q, ST_CHANGES_SINCE, err);
    if (rc != KS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, cursor);
    int src;
    bool stopped = false;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        c.seq = sqlite3_column_int64(st, 0);
        int kind = ks_store__change_kind_parse(col_str(st, 1));
        c.kind = (uint8_t)(kind < 0 ? KS_STORE_CHANGE_HOST : kind);
        col_text(c.key, sizeof(c.key), st, 2);
        col_text(c.host_id, sizeof(c.host_id), st, 3);
        c.time_us = col_u64(st, 4);
        last = c.seq;
        if (cb(ctx, &c) != 0) {
            stopped = true;
            break;
        }
    }
    if (!stopped && src != SQLITE_DONE)
        rc = sq_fail(q, src, "read changes", err);
    stmt_done(st);
    /* Stopping early skips the rest of the batch (the contract). */
    if (rc == KS_OK && stopped)
        rc = sq_changes_cursor(&last, s, err);
    if (rc == KS_OK)
        *next = last;
    return rc;
}

static ks_code sq_changes_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err)
{
    return delete_before(out_n, sq(s), ST_CHANGES_PRUNE, before_us, "prune changes", err);
}

/* A SQLite file has one kintsugid: it is always the leader. */
static ks_code sq_try_leader(bool *out, ks_store *s, ks_err *err)
{
    *out = true;
    return KS_OK;
}

static ks_code sq_leader_release(ks_store *s, ks_err *err)
{
    return KS_OK;
}

/* ---- raw rows (ks_store_copy) -------------------------------------------- */

static ks_code sq_begin_snapshot(ks_store *s, ks_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    ks_code rc = stmt(&st, q, ST_BEGIN_READ, err);
    if (rc != KS_OK)
        return rc;
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, "begin snapshot", err);
    s->in_txn = true;
    return KS_OK;
}

static ks_code sq_raw_scan(ks_store *s, int t, int (*cb)(void *ctx, const ks_store__val *v),
                           void *ctx, ks_err *err)
{
    sq_store *q = sq(s);
    const ks_store__table *tb = &ks_store__tables[t];
    ks_store__val v[KS_STORE__MAX_COLS];
    char sql[1024];
    sqlite3_stmt *st = NULL;
    ks_code rc = KS_OK;
    const char *cols = tb->cols;
    char vm_cols[512];
    if (strcmp(tb->name, "vms") == 0) {
        /* plans are stored compressed: copy them as text */
        size_t n = strlen(cols), k = strlen("plan_json");
        if (n < k || strcmp(cols + n - k, "plan_json") != 0)
            return ks_err_set(err, KS_EINTERNAL, "vms copy columns do not end with plan_json");
        snprintf(vm_cols, sizeof(vm_cols), "%.*sks_plan_text(plan_json, plan_z)", (int)(n - k), cols);
        cols = vm_cols;
    }
    int len = snprintf(sql, sizeof(sql), "SELECT %s FROM %s ORDER BY %s", cols, tb->name,
                       tb->order_by);
    if (len < 0 || (size_t)len >= sizeof(sql))
        return ks_err_set(err, KS_EINTERNAL, "scan statement for %s too long", tb->name);
    int src = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
    if (src != SQLITE_OK) {
        rc = sq_fail(q, src, "prepare table scan", err);
        goto done;
    }
    int n = (int)strlen(tb->types);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < n; i++) {
            memset(&v[i], 0, sizeof(v[i]));
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_NULL:
                v[i].type = KS_STORE__V_NULL;
                break;
            case SQLITE_INTEGER:
                v[i].type = KS_STORE__V_INT;
                v[i].i = sqlite3_column_int64(st, i);
                break;
            case SQLITE_BLOB:
                v[i].type = KS_STORE__V_BLOB;
                v[i].p = sqlite3_column_blob(st, i);
                v[i].len = (size_t)sqlite3_column_bytes(st, i);
                break;
            default:
                v[i].type = KS_STORE__V_TEXT;
                v[i].p = sqlite3_column_text(st, i);
                v[i].len = (size_t)sqlite3_column_bytes(st, i);
                if (!v[i].p)
                    v[i].type = KS_STORE__V_NULL;
            }
        }
        if (cb(ctx, v) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = sq_fail(q, src, "scan table", err);
done:
    sqlite3_finalize(st);
    return rc;
}

/* An id column of a copied row as a string; false unless text shorter than
 * KS_ID_MAX. */
static bool val_id(char dst[KS_ID_MAX], const ks_store__val *v)
{
    if (v->type != KS_STORE__V_TEXT || v->len >= KS_ID_MAX)
        return false;
    memcpy(dst, v->p, v->len);
    dst[v->len] = '\0';
    return true;
}

/* An integer column of a copied row in [0, max). */
static bool val_index(int32_t *out, const ks_store__val *v, int64_t max)
{
    if (v->type != KS_STORE__V_INT || v->i < 0 || v->i >= max)
        return false;
    *out = (int32_t)v->i;
    return true;
}

/* Copies one vm_vcpus row (vm_name, vcpu, host_id, cpu_id) into the VM's row
 * and its host's bitmap: vm_vcpus is a view here. */
static ks_code copy_vcpu(sq_store *q, const ks_store__val *v, ks_err *err)
{
    char vm[KS_ID_MAX], host[KS_ID_MAX], vm_host[KS_ID_MAX], *text = NULL;
    uint64_t gen;
    ks_store_vcpu_alloc a;
    if (!val_id(vm, &v[0]) || !val_index(&a.vcpu, &v[1], INT32_MAX) || !val_id(host, &v[2]) ||
        !val_index(&a.cpu_id, &v[3], KS_REPORT_MAX_CPUS))
        return ks_err_set(err, KS_EINVAL, "vm_vcpus row out of range");
    vcpu_list *l = vcpu_list_new(err);
    sqlite3_stmt *st = NULL;
    if (!l)
        return KS_ENOMEM;
    ks_code rc = vm_alloc_read(&gen, vm_host, l, q, vm, err);
    if (rc == KS_OK && strcmp(host, vm_host) != 0)
        rc = ks_err_set(err, KS_EINVAL, "vcpu %d of vm '%s' is on host '%s', the vm on '%s'",
                        a.vcpu, vm, host, vm_host);
    if (rc == KS_OK && l->n == KS_VM_MAX_VCPUS)
        rc = ks_err_set(err, KS_EINVAL, "vm '%s' has too many vcpus", vm);
    if (rc == KS_OK) {
        l->v[l->n++] = a;
        rc = vcpus_format(&text, vm, l->v, l->n, err);
    }
    free(l);
    if (rc == KS_OK)
        rc = stmt(&st, q, ST_VM_SET_VCPUS, err);
    if (rc != KS_OK) {
        free(text);
        return rc;
    }
    bind_text(st, 1, vm);
    sqlite3_bind_text(st, 2, text, -1, free);
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, "store vcpus", err);
    return vcpus_take(q, host, NULL, &a, 1, err);
}

/* A copied cpus row (host_id, cpu_id, ...) is also a bit of its host's set. */
static ks_code copy_cpu_present(sq_store *q, const ks_store__val *v, ks_err *err)
{
    char host[KS_ID_MAX];
    int32_t cpu;
    if (!val_id(host, &v[0]) || !val_index(&cpu, &v[1], KS_REPORT_MAX_CPUS))
        return ks_err_set(err, KS_EINVAL, "cpus row out of range");
    host_alloc a;
    ks_code rc = alloc_read(&a, q, host, err);
    bitmap_set(&a.present, cpu, true);
    if (rc == KS_OK)
        rc = alloc_write_present(q, host, &a.present, err);
    host_alloc_free(&a);
    return rc;
}

/* A copied vms row (name, host_id, ...) is listed on its host. */
static ks_code copy_vm_listed(sq_store *q, const ks_store__val *v, ks_err *err)
{
    char vm[KS_ID_MAX], host[KS_ID_MAX];
    if (!val_id(vm, &v[0]) || !val_id(host, &v[1]))
        return ks_err_set(err, KS_EINVAL, "vms row out of range");
    return vcpus_take(q, host, vm, NULL, 0, err);
}

static ks_code sq_raw_insert(ks_store *s, int t, const ks_store__val *v, ks_err *err)
{
    sq_store *q = sq(s);
    const ks_store__table *tb = &ks_store__tables[t];
    if (strcmp(tb->name, "vm_vcpus") == 0)
        return copy_vcpu(q, v, err);
    bool is_cpu = strcmp(tb->name, "cpus") == 0;
    int n = (int)strlen(tb->types);
    if (!q->raw_ins[t]) {
        char sql[768];
        int len = snprintf(sql, sizeof(sql), "INSERT INTO %s (%s) VALUES (", tb->name, tb->cols);
        for (int i = 0; i < n && len > 0 && (size_t)len < sizeof(sql); i++)
            len += snprintf(sql + len, sizeof(sql) - (size_t)len, "%s?", i ? ", " : "");
        if (len > 0 && (size_t)len < sizeof(sql))
            len += snprintf(sql + len, sizeof(sql) - (size_t)len, ")");
        if (len <= 0 || (size_t)len >= sizeof(sql))
            return ks_err_set(err, KS_EINTERNAL, "insert statement for %s too long", tb->name);
        int src =
            sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q->raw_ins[t], NULL);
        if (src != SQLITE_OK) {
            q->raw_ins[t] = NULL;
            return sq_fail(q, src, "prepare copy insert", err);
        }
    }
    sqlite3_stmt *st = q->raw_ins[t];
    for (int i = 0; i < n; i++) {
        switch (v[i].type) {
        case KS_STORE__V_INT:
            sqlite3_bind_int64(st, i + 1, v[i].i);
            break;
        case KS_STORE__V_TEXT:
            sqlite3_bind_text(st, i + 1, v[i].p, (int)v[i].len, SQLITE_STATIC);
            break;
        case KS_STORE__V_BLOB:
            /* A NULL pointer would bind SQL NULL: an empty set is "". */
            sqlite3_bind_blob(st, i + 1, v[i].p ? v[i].p : "", (int)v[i].len, SQLITE_STATIC);
            break;
        default:
            sqlite3_bind_null(st, i + 1);
        }
    }
    int src = step_done(st);
    stmt_done(st);
    if (src != SQLITE_OK)
        return sq_fail(q, src, "insert copied row", err);
    if (is_cpu)
        return copy_cpu_present(q, v, err);
    return strcmp(tb->name, "vms") == 0 ? copy_vm_listed(q, v, err) : KS_OK;
}

/* AUTOINCREMENT counters follow explicit ids by themselves. */
static ks_code sq_raw_fixup(ks_store *s, ks_err *err)
{
    return KS_OK;
}

/* ---- operations table and open ----------------------------------------- */

static const ks_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .savepoint = sq_savepoint,
    .set_commit_veto = sq_set_commit_veto,
    .backup = sq_backup,
    .integrity_check = sq_integrity_check,
    .query_int = sq_query_int,
    .host_put_report = sq_host_put_report,
    .host_get = sq_host_get,
    .host_heartbeat = sq_host_heartbeat,
    .host_set_state = sq_host_set_state,
    .host_delete = sq_host_delete,
    .host_list = sq_host_list,
    .host_count = sq_host_count,
    .cpu_scan = sq_cpu_scan,
    .cpu_get = sq_cpu_get,
    .defect_list = sq_defect_list,
    .vm_insert = sq_vm_insert,
    .vm_get = sq_vm_get,
    .vm_list = sq_vm_list,
    .vm_count = sq_vm_count,
    .vm_delete = sq_vm_delete,
    .vm_update_plan = sq_vm_update_plan,
    .vm_set_state = sq_vm_set_state,
    .vm_set_applied = sq_vm_set_applied,
    .vcpu_scan = sq_vcpu_scan,
    .pool_create = sq_pool_create,
    .pool_get = sq_pool_get,
    .pool_list = sq_pool_list,
    .pool_delete = sq_pool_delete,
    .pool_members_set = sq_pool_members_set,
    .pool_members_list = sq_pool_members_list,
    .policy_add = sq_policy_add,
    .policy_list = sq_policy_list,
    .policy_delete = sq_policy_delete,
    .event_append = sq_event_append,
    .event_list = sq_event_list,
    .event_prune = sq_event_prune,
    .capacity_insert = sq_capacity_insert,
    .capacity_list = sq_capacity_list,
    .capacity_prune = sq_capacity_prune,
    .idem_get = sq_idem_get,
    .idem_put = sq_idem_put,
    .idem_expire = sq_idem_expire,
    .token_add = sq_token_add,
    .token_find = sq_token_find,
    .token_list = sq_token_list,
    .token_delete = sq_token_delete,
    .change_append = sq_change_append,
    .changes_cursor = sq_changes_cursor,
    .changes_since = sq_changes_since,
    .changes_prune = sq_changes_prune,
    .try_leader = sq_try_leader,
    .leader_release = sq_leader_release,
    .begin_snapshot = sq_begin_snapshot,
    .raw_scan = sq_raw_scan,
    .raw_insert = sq_raw_insert,
    .raw_fixup = sq_raw_fixup,
};

/* Brings the schema to KS_STORE_SCHEMA_VERSION in one transaction. */
static ks_code migrate(sq_store *q, const char *path, ks_err *err)
{
    int64_t v = 0;
    ks_code rc = sq_int_pragma(&v, q, "PRAGMA user_version", err);
    if (rc != KS_OK)
        return rc;
    if (v > KS_STORE_SCHEMA_VERSION)
        return ks_err_set(err, KS_EINVAL,
                          "database schema version %lld is newer than this kintsugid supports (%d)",
                          (long long)v, KS_STORE_SCHEMA_VERSION);
    if (q->base.read_only) {
        if (v < KS_STORE_SCHEMA_VERSION)
            return ks_err_set(err, KS_EINVAL,
                              "database '%s' has schema version %lld, expected %d (open it "
                              "read-write once to migrate)",
                              path, (long long)v, KS_STORE_SCHEMA_VERSION);
        return KS_OK;
    }
    if (v == KS_STORE_SCHEMA_VERSION)
        return KS_OK;
    rc = sq_exec(q, "BEGIN IMMEDIATE", "begin migration", err);
    if (rc != KS_OK)
        return rc;
    /* Another process may have migrated between the read and the lock. */
    rc = sq_int_pragma(&v, q, "PRAGMA user_version", err);
    for (int64_t m = v; rc == KS_OK && m < KS_STORE_SCHEMA_VERSION; m++) {
        if (m >= KS_STORE__N_MIGRATIONS) {
            rc = ks_err_set(err, KS_EINTERNAL, "no migration from schema version %lld",
                            (long long)m);
            break;
        }
        char what[64];
        snprintf(what, sizeof(what), "migration %lld", (long long)m + 1);
        rc = sq_exec(q, ks_store__migrations[m], what, err);
    }
    if (rc == KS_OK && v < KS_STORE_SCHEMA_VERSION) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", KS_STORE_SCHEMA_VERSION);
        rc = sq_exec(q, sql, "set schema version", err);
    }
    if (rc == KS_OK)
        rc = sq_exec(q, "COMMIT", "commit migration", err);
    if (rc != KS_OK && !sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

ks_code ks_store__sqlite_open(ks_store **out, const char *path, const ks_store_options *opts,
                              ks_err *err)
{
    sq_store *q = calloc(1, sizeof(*q));
    ks_code rc = KS_OK;
    if (!q)
        return ks_err_set(err, KS_ENOMEM, "out of memory opening the store");
    q->base.ops = &sqlite_ops;
    q->base.read_only = opts->read_only;
    q->skip_change_feed = opts->skip_change_feed;
    int flags =
        SQLITE_OPEN_NOMUTEX |
        (opts->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int src = sqlite3_open_v2(path, &q->db, flags, NULL);
    if (src != SQLITE_OK) {
        rc = ks_err_set(err, opts->read_only && src == SQLITE_CANTOPEN ? KS_EINVAL : map_rc(src),
                        "open database '%s': %s", path,
                        q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(src));
        goto done;
    }
    sqlite3_extended_result_codes(q->db, 1);
    rc = ks_zdoc_new(&q->zdoc, err);
    if (rc != KS_OK)
        goto done;
    src = sqlite3_create_function_v2(q->db, "ks_cpu_bitmap", 1,
                                     SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, NULL,
                                     NULL, cpu_bitmap_step, cpu_bitmap_final, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_create_function_v2(q->db, "ks_plan_text", 2,
                                         SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, q,
                                         plan_text_fn, NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        rc = sq_fail(q, src, "register functions", err);
        goto done;
    }
    sqlite3_busy_timeout(
        q->db, (int)(opts->busy_timeout_ms > INT32_MAX ? INT32_MAX : opts->busy_timeout_ms));
    if (!opts->read_only) {
        int64_t dummy;
        /* journal_mode answers with the mode in force: "wal", or "memory" for
         * an in-memory database (used by tests), anything else is an error. */
        sqlite3_stmt *st = NULL;
        src = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (src == SQLITE_OK)
            src = sqlite3_step(st);
        if (src != SQLITE_ROW) {
            sqlite3_finalize(st);
            rc = sq_fail(q, src, "set WAL mode", err);
            goto done;
        }
        const char *mode = col_str(st, 0);
        bool ok = mode && (strcmp(mode, "wal") == 0 || strcmp(mode, "memory") == 0);
        char seen[16];
        ks_store__copy(seen, sizeof(seen), mode);
        sqlite3_finalize(st);
        if (!ok) {
            rc = ks_err_set(err, KS_EIO, "database '%s' refused WAL mode (got '%s')", path, seen);
            goto done;
        }
        rc = sq_exec(q,
                     opts->sync_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                     "set synchronous", err);
        if (rc == KS_OK)
            rc = sq_exec(q, "PRAGMA foreign_keys = ON", "enable foreign keys", err);
        /* After a burst the WAL is truncated back to this size at checkpoints
         * instead of keeping its high-water mark on disk.  With background
         * checkpoints the WAL is restarted at 256 MiB under load: truncating
         * it then made every later commit grow the file again (block
         * allocation in the kernel, 15 % of a commit at 10,000 hosts). */
        if (rc == KS_OK)
            rc = sq_exec(q,
                         opts->background_checkpoint ? "PRAGMA journal_size_limit = 536870912"
                                                     : "PRAGMA journal_size_limit = 67108864",
                         "set WAL size limit", err);
        /* 131072 pages = 512 MiB: only a safety net when the background
         * checkpoints fall behind (the default, 1000 pages, runs a
         * checkpoint and its fsync inside every ~1000th page's COMMIT). */
        if (rc == KS_OK && opts->background_checkpoint)
            rc = sq_exec(q, "PRAGMA wal_autocheckpoint = 131072", "set WAL checkpoint", err);
        if (rc == KS_OK)
            rc = sq_int_pragma(&dummy, q, "PRAGMA foreign_keys", err);
        if (rc == KS_OK && dummy != 1)
            rc = ks_err_set(err, KS_EIO, "this SQLite cannot enforce foreign keys");
        if (rc != KS_OK)
            goto done;
    } else {
        rc = sq_exec(q, "PRAGMA query_only = ON", "set query_only", err);
        if (rc != KS_OK)
            goto done;
    }
    rc = sq_exec(q, "PRAGMA cache_size = -32768", "set cache size", err);
    /* Savepoints (group commit) keep the pages they change in a sub-journal:
     * in memory, not in a temporary file per transaction. */
    if (rc == KS_OK)
        rc = sq_exec(q, "PRAGMA temp_store = MEMORY", "set temp store", err);
    /* Reads through a mapping skip a copy and a system call per page: the
     * start-up CPU scan reads the whole table, and a departure reads the
     * random page of its VM.  2 GiB (Debian's SQLite caps it there) covers a
     * 10,000-host fleet's database; writes still go through the WAL. */
    if (rc == KS_OK)
        rc = sq_exec(q, "PRAGMA mmap_size = 2147418112", "set mmap size", err);
    if (rc == KS_OK)
        rc = migrate(q, path, err);
    if (rc == KS_OK)
        rc = zdicts_init(q, err);
    /* An in-memory database has no WAL to checkpoint. */
    if (rc == KS_OK && opts->background_checkpoint && !opts->read_only &&
        strcmp(path, ":memory:") != 0)
        rc = checkpointer_start(&q->ckpt, path, err);
    if (rc != KS_OK)
        goto done;
    *out = &q->base;
    q = NULL;
done:
    if (q)
        sq_close(&q->base);
    return rc;
}
