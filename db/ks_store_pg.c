/*
 * ks_store_pg.c - the PostgreSQL backend of ks_store (libpq), so that several
 * kintsugid replicas can share one database.
 *
 * One connection per handle, opened from the libpq URL given to
 * ks_store_open() ("postgres://" or "postgresql://"; multi-host URLs with
 * target_session_attrs=read-write reach the current primary after a
 * failover).  Every statement is prepared once per connection (PQprepare, on
 * first use) and run with PQexecPrepared; a reconnection prepares again.
 *
 * Isolation: READ COMMITTED with explicit row locks, not SERIALIZABLE.  Why:
 *  - The double-allocation guard is the UNIQUE (host_id, cpu_id) of vm_vcpus,
 *    which holds at any isolation level: a second transaction inserting the
 *    same CPU waits for the first and fails with 23505 once it commits.
 *  - The few read-then-write paths lock what they read: the host row (FOR
 *    UPDATE) before comparing report generations or deleting CPUs and hosts,
 *    the VM row before comparing plan generations, the pool row before
 *    counting its VMs (and a placement into a pool holds it FOR SHARE).
 *    Foreign keys lock the rows they reference, so a CPU or host cannot vanish
 *    under a placement that commits (23503 -> KS_ECONFLICT).
 *  - SERIALIZABLE would also abort transactions that merely read overlapping
 *    pages (heartbeats, events, unrelated placements on one index page): false
 *    conflicts surface as retries and 409s under load, for no invariant the
 *    constraints and locks above do not already keep.
 * Conflicts for the caller to retry on a refreshed index: 23505 (unique),
 * 40001 (serialization), 40P01 (deadlock) -> KS_ECONFLICT.  Lock waits longer
 * than busy_timeout_ms (lock_timeout, 55P03) and lost connections (class 08)
 * -> KS_EUNAVAIL.  A failed statement aborts the transaction (PostgreSQL
 * semantics); the caller rolls back, as the interface already requires.
 * Expected duplicates (VM, pool, token, idempotency key) use ON CONFLICT DO
 * NOTHING, so KS_EEXIST leaves the transaction usable, as on SQLite.
 *
 * Change feed: changes.xid is the writer's transaction id.  A cursor is a
 * snapshot xmin: a poll returns the rows with cursor <= xid < xmin(now), and
 * every transaction below xmin(now) has finished, so no row can later appear
 * behind the cursor - whatever order concurrent transactions commit in.  The
 * price: a change shows once older transactions have ended (an idle open
 * transaction elsewhere in the database holds the feed back).
 *
 * Leadership: a session advisory lock (pg_try_advisory_lock); it dies with the
 * connection, so a crashed or partitioned leader's lock is released by the
 * server and another replica's next ks_store_try_leader() wins it.
 *
 * Options: busy_timeout_ms -> lock_timeout.  sync_full is ignored: durability
 * is the server's (synchronous_commit, synchronous_standby_names).
 * read_only -> default_transaction_read_only.
 *
 * Threading: a handle is used by one thread at a time (one PGconn); separate
 * handles may be used by separate threads.  Library code prints nothing: the
 * notice processor is silenced.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ks_feature.h"
#include "ks_parse.h"
#include "ks_store.h"
#include "ks_store_int.h"
#include "ks_store_schema_pg.sql.h"

/* Advisory lock keys ("kintsugi" and "ksmigrat" in ASCII). */
#define LEADER_KEY INT64_C(0x6b696e7473756769)
#define MIGRATE_KEY INT64_C(0x6b736d6967726174)

/* ---- statement table --------------------------------------------------- */

#define HOST_COLS                                                                                  \
    "id, hostname, arch, vendor, model_name, state, boot_id, generation, n_cpus, "                 \
    "registered_us, updated_us, last_heartbeat_us"
#define CPU_COLS                                                                                   \
    "host_id, cpu_id, package, die, cluster, core, thread, numa_node, l2_group, l3_group, "        \
    "kind_class, kind_name, base_mhz, max_mhz, state, reserved, native, usable, defective"
#define VM_COLS                                                                                    \
    "name, host_id, state, generation, applied_generation, pool, anti_affinity_group, "            \
    "apply_error, n_vcpus, created_us, updated_us, CASE WHEN $5::boolean THEN request_json END, "  \
    "CASE WHEN $5::boolean THEN plan_json END"
#define VM_FILTER                                                                                  \
    "($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR pool = $2) AND name > $3::text "
#define HOST_FILTER                                                                                \
    "($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR arch = $2) "                        \
    "AND ($3::text IS NULL OR vendor = $3)"

enum {
    ST_HOST_HEAD,
    ST_HOST_UPSERT,
    ST_REPORT_UPSERT,
    ST_VCPU_ON_CPU,
    ST_CPU_DELETE,
    ST_CPU_INSERT,
    ST_CPU_UPDATE,
    ST_DEFECTS_DELETE,
    ST_DEFECT_INSERT,
    ST_HOST_GET,
    ST_REPORT_GET,
    ST_HOST_HEARTBEAT,
    ST_HOST_SET_STATE,
    ST_HOST_LOCK,
    ST_HOST_VM_COUNT,
    ST_HOST_DELETE,
    ST_HOST_LIST,
    ST_HOST_COUNT,
    ST_CPU_SCAN_ALL,
    ST_CPU_SCAN_HOST,
    ST_CPU_GET,
    ST_DEFECT_LIST,
    ST_DEFECT_LIST_HOST,
    ST_POOL_SHARE,
    ST_VM_INSERT,
    ST_VCPU_INSERT,
    ST_VM_GET,
    ST_VM_LIST_ALL,
    ST_VM_LIST_HOST,
    ST_VM_COUNT,
    ST_VM_DELETE,
    ST_VM_GEN_LOCK,
    ST_VCPU_DELETE_VM,
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
    ST_POOL_LOCK,
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
    ST_CHANGES_CURSOR,
    ST_CHANGES_SINCE,
    ST_CHANGES_PRUNE,
    ST_LEADER_TRY,
    ST_LEADER_UNLOCK,
    ST_PING,
    ST__COUNT
};

static const char *const sql_text[ST__COUNT] = {
    [ST_HOST_HEAD] = "SELECT boot_id, generation FROM hosts WHERE id = $1 FOR UPDATE",
    [ST_HOST_UPSERT] =
        "INSERT INTO hosts (id, hostname, arch, vendor, model_name, state, boot_id, generation, "
        "n_cpus, registered_us, updated_us, last_heartbeat_us) "
        "VALUES ($1, $2, $3, $4, $5, 'ready', $6, $7, $8, $9, $9, $9) "
        "ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, arch = excluded.arch, "
        "vendor = excluded.vendor, model_name = excluded.model_name, "
        "state = CASE hosts.state WHEN 'lost' THEN 'ready' ELSE hosts.state END, "
        "boot_id = excluded.boot_id, generation = excluded.generation, n_cpus = excluded.n_cpus, "
        "updated_us = excluded.updated_us, last_heartbeat_us = excluded.last_heartbeat_us",
    [ST_REPORT_UPSERT] = "INSERT INTO host_reports (host_id, report_json) VALUES ($1, $2) "
                         "ON CONFLICT (host_id) DO UPDATE SET report_json = excluded.report_json",
    [ST_VCPU_ON_CPU] = "SELECT vm_name FROM vm_vcpus WHERE host_id = $1 AND cpu_id = $2",
    [ST_CPU_DELETE] = "DELETE FROM cpus WHERE host_id = $1 AND cpu_id = $2",
    [ST_CPU_INSERT] = "INSERT INTO cpus (" CPU_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                      "$9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    [ST_CPU_UPDATE] = "UPDATE cpus SET package = $3, die = $4, cluster = $5, core = $6, "
                      "thread = $7, numa_node = $8, l2_group = $9, l3_group = $10, "
                      "kind_class = $11, kind_name = $12, base_mhz = $13, max_mhz = $14, "
                      "state = $15, reserved = $16, native = $17, usable = $18, defective = $19 "
                      "WHERE host_id = $1 AND cpu_id = $2",
    [ST_DEFECTS_DELETE] = "DELETE FROM cpu_defects WHERE host_id = $1",
    [ST_DEFECT_INSERT] = "INSERT INTO cpu_defects (host_id, cpu_id, feature, source, time_us, "
                         "detail) VALUES ($1, $2, $3, $4, $5, $6)",
    [ST_HOST_GET] = "SELECT " HOST_COLS " FROM hosts WHERE id = $1",
    [ST_REPORT_GET] = "SELECT report_json FROM host_reports WHERE host_id = $1",
    [ST_HOST_HEARTBEAT] = "UPDATE hosts SET last_heartbeat_us = $2 WHERE id = $1",
    [ST_HOST_SET_STATE] = "UPDATE hosts SET state = $2, updated_us = $3 WHERE id = $1",
    /* Placements reference the host row (FOR KEY SHARE through the foreign
     * key): once this lock is held no VM can land on it before commit. */
    [ST_HOST_LOCK] = "SELECT 1 FROM hosts WHERE id = $1 FOR UPDATE",
    [ST_HOST_VM_COUNT] = "SELECT count(*) FROM vms WHERE host_id = $1",
    [ST_HOST_DELETE] = "DELETE FROM hosts WHERE id = $1",
    [ST_HOST_LIST] = "SELECT " HOST_COLS " FROM hosts WHERE " HOST_FILTER
                     " AND id > $4::text ORDER BY id LIMIT $5::bigint",
    [ST_HOST_COUNT] = "SELECT count(*) FROM hosts WHERE " HOST_FILTER,
    [ST_CPU_SCAN_ALL] = "SELECT " CPU_COLS " FROM cpus ORDER BY host_id, cpu_id",
    [ST_CPU_SCAN_HOST] = "SELECT " CPU_COLS " FROM cpus WHERE host_id = $1 ORDER BY cpu_id",
    [ST_CPU_GET] = "SELECT " CPU_COLS " FROM cpus WHERE host_id = $1 AND cpu_id = $2",
    [ST_DEFECT_LIST] = "SELECT host_id, cpu_id, feature, source, time_us, detail FROM cpu_defects "
                       "WHERE ($1::text IS NULL OR host_id = $1) "
                       "AND ($2::bigint < 0 OR cpu_id = $2) ORDER BY host_id, cpu_id, time_us, id",
    [ST_DEFECT_LIST_HOST] = "SELECT host_id, cpu_id, feature, source, time_us, detail "
                            "FROM cpu_defects WHERE host_id = $1 "
                            "AND ($2::bigint < 0 OR cpu_id = $2) ORDER BY cpu_id, time_us, id",
    [ST_POOL_SHARE] = "SELECT 1 FROM pools WHERE name = $1 FOR SHARE",
    [ST_VM_INSERT] = "INSERT INTO vms (name, host_id, state, generation, applied_generation, "
                     "pool, anti_affinity_group, apply_error, n_vcpus, created_us, updated_us, "
                     "request_json, plan_json) "
                     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
                     "ON CONFLICT (name) DO NOTHING",
    [ST_VCPU_INSERT] = "INSERT INTO vm_vcpus (vm_name, vcpu, host_id, cpu_id) "
                       "VALUES ($1, $2, $3, $4)",
    [ST_VM_GET] = "SELECT name, host_id, state, generation, applied_generation, pool, "
                  "anti_affinity_group, apply_error, n_vcpus, created_us, updated_us, "
                  "CASE WHEN $2::boolean THEN request_json END, "
                  "CASE WHEN $2::boolean THEN plan_json END FROM vms WHERE name = $1",
    [ST_VM_LIST_ALL] =
        "SELECT " VM_COLS " FROM vms WHERE " VM_FILTER "ORDER BY name LIMIT $4::bigint",
    [ST_VM_LIST_HOST] = "SELECT " VM_COLS " FROM vms WHERE host_id = $6 AND " VM_FILTER
                        "ORDER BY name LIMIT $4::bigint",
    [ST_VM_COUNT] = "SELECT count(*) FROM vms WHERE ($3::text IS NULL OR host_id = $3) "
                    "AND ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR pool = $2)",
    [ST_VM_DELETE] = "DELETE FROM vms WHERE name = $1",
    [ST_VM_GEN_LOCK] = "SELECT generation FROM vms WHERE name = $1 FOR UPDATE",
    [ST_VCPU_DELETE_VM] = "DELETE FROM vm_vcpus WHERE vm_name = $1",
    [ST_VM_UPDATE_PLAN] = "UPDATE vms SET host_id = $2, generation = $3, plan_json = $4, "
                          "n_vcpus = $5, updated_us = $6 WHERE name = $1",
    [ST_VM_SET_STATE] = "UPDATE vms SET state = $2, updated_us = $3 WHERE name = $1",
    [ST_VM_SET_APPLIED] = "UPDATE vms SET applied_generation = $2, apply_error = $3, "
                          "updated_us = $4 WHERE name = $1",
    [ST_VCPU_SCAN_ALL] = "SELECT vm_name, vcpu, host_id, cpu_id FROM vm_vcpus "
                         "ORDER BY host_id, cpu_id",
    [ST_VCPU_SCAN_HOST] = "SELECT vm_name, vcpu, host_id, cpu_id FROM vm_vcpus "
                          "WHERE host_id = $1 ORDER BY cpu_id",
    [ST_VCPU_SCAN_VM] = "SELECT vm_name, vcpu, host_id, cpu_id FROM vm_vcpus "
                        "WHERE vm_name = $1 AND ($2::text IS NULL OR host_id = $2) ORDER BY vcpu",
    [ST_POOL_INSERT] = "INSERT INTO pools (name, selector_json, created_us) VALUES ($1, $2, $3) "
                       "ON CONFLICT (name) DO NOTHING",
    [ST_POOL_GET] = "SELECT name, selector_json, "
                    "(SELECT count(*) FROM pool_members m WHERE m.pool = pools.name), created_us "
                    "FROM pools WHERE name = $1",
    [ST_POOL_LIST] = "SELECT name, selector_json, "
                     "(SELECT count(*) FROM pool_members m WHERE m.pool = pools.name), "
                     "created_us FROM pools ORDER BY name",
    [ST_POOL_VM_COUNT] = "SELECT count(*) FROM vms WHERE pool = $1",
    [ST_POOL_DELETE] = "DELETE FROM pools WHERE name = $1",
    [ST_POOL_LOCK] = "SELECT 1 FROM pools WHERE name = $1 FOR UPDATE",
    [ST_MEMBERS_DELETE] = "DELETE FROM pool_members WHERE pool = $1",
    [ST_MEMBER_INSERT] = "INSERT INTO pool_members (pool, host_id) VALUES ($1, $2)",
    [ST_MEMBERS_LIST] = "SELECT pool, host_id FROM pool_members "
                        "WHERE ($1::text IS NULL OR pool = $1) ORDER BY pool, host_id",
    [ST_POLICY_INSERT] = "INSERT INTO policies (kind, features_json, reason, created_us) "
                         "VALUES ($1, $2, $3, $4) RETURNING id",
    [ST_POLICY_LIST] = "SELECT id, kind, features_json, reason, created_us FROM policies "
                       "ORDER BY id",
    [ST_POLICY_DELETE] = "DELETE FROM policies WHERE id = $1",
    [ST_EVENT_INSERT] = "INSERT INTO events (time_us, type, host_id, vm, detail_json) "
                        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
    [ST_EVENT_LIST] = "SELECT id, time_us, type, host_id, vm, detail_json FROM events "
                      "WHERE id > $1 ORDER BY id LIMIT $2::bigint",
    [ST_EVENT_PRUNE] = "DELETE FROM events WHERE time_us < $1",
    [ST_CAP_INSERT] = "INSERT INTO capacity_snapshots (time_us, scope, total, allocated, free, "
                      "degraded_usable, reclaimed, stranded, quarantined) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    [ST_CAP_LIST_ALL] = "SELECT id, time_us, scope, total, allocated, free, degraded_usable, "
                        "reclaimed, stranded, quarantined FROM capacity_snapshots "
                        "WHERE time_us >= $1 ORDER BY time_us, id LIMIT $2::bigint",
    [ST_CAP_LIST_SCOPE] = "SELECT id, time_us, scope, total, allocated, free, degraded_usable, "
                          "reclaimed, stranded, quarantined FROM capacity_snapshots "
                          "WHERE scope = $1 AND time_us >= $2 ORDER BY time_us, id "
                          "LIMIT $3::bigint",
    [ST_CAP_PRUNE] = "DELETE FROM capacity_snapshots WHERE time_us < $1",
    [ST_IDEM_GET] = "SELECT key, request_hash, status, response_json, created_us "
                    "FROM idempotency_keys WHERE key = $1",
    [ST_IDEM_INSERT] = "INSERT INTO idempotency_keys (key, request_hash, status, response_json, "
                       "created_us) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
    [ST_IDEM_EXPIRE] = "DELETE FROM idempotency_keys WHERE created_us < $1",
    [ST_TOKEN_INSERT] = "INSERT INTO tokens (hash, role, host_id, description, created_us) "
                        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hash) DO NOTHING RETURNING id",
    [ST_TOKEN_FIND] = "SELECT id, hash, role, host_id, description, created_us FROM tokens "
                      "WHERE hash = $1",
    [ST_TOKEN_LIST] = "SELECT id, hash, role, host_id, description, created_us FROM tokens "
                      "ORDER BY id",
    [ST_TOKEN_DELETE] = "DELETE FROM tokens WHERE id = $1",
    [ST_CHANGE_INSERT] =
        "INSERT INTO changes (time_us, kind, key, host_id) VALUES ($1, $2, $3, $4)",
    [ST_CHANGES_CURSOR] = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text",
    /* One statement, one snapshot: the horizon and the rows below it agree. */
    [ST_CHANGES_SINCE] = "SELECT h.x::text, c.seq, c.kind, c.key, c.host_id, c.time_us "
                         "FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS x) h "
                         "LEFT JOIN changes c ON c.xid >= $1::text::xid8 AND c.xid < h.x "
                         "ORDER BY c.xid, c.seq",
    [ST_CHANGES_PRUNE] = "DELETE FROM changes WHERE time_us < $1",
    [ST_LEADER_TRY] = "SELECT pg_try_advisory_lock($1::bigint)",
    [ST_LEADER_UNLOCK] = "SELECT pg_advisory_unlock($1::bigint)",
    [ST_PING] = "SELECT 1",
};

typedef struct pg_store {
    ks_store base; /* first: a ks_store * is a pg_store * */
    PGconn *c;
    char *url;
    uint32_t lock_timeout_ms;
    bool prepared[ST__COUNT];
    bool raw_prepared[KS_STORE__N_TABLES];
    bool leader;
    /* The last failed statement's SQLSTATE and constraint, for callers that
     * turn a constraint violation into a precise error. */
    char sqlstate[6];
    char constraint[64];
} pg_store;

static pg_store *pg(ks_store *s)
{
    return (pg_store *)s;
}

/* ---- errors ------------------------------------------------------------ */

static bool state_is(const pg_store *p, const char *code)
{
    return strcmp(p->sqlstate, code) == 0;
}

static bool constraint_is(const pg_store *p, const char *name)
{
    return strcmp(p->constraint, name) == 0;
}

static ks_code map_state(const char *st, bool conn_bad)
{
    if (conn_bad || !st || !st[0] || strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 ||
        strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0 || strcmp(st, "25006") == 0)
        return strcmp(st ? st : "", "25006") == 0 ? KS_EINVAL : KS_EUNAVAIL;
    if (strcmp(st, "23505") == 0 || strcmp(st, "23503") == 0 || strcmp(st, "40001") == 0 ||
        strcmp(st, "40P01") == 0)
        return KS_ECONFLICT;
    if (strcmp(st, "55P03") == 0 || strcmp(st, "57014") == 0)
        return KS_EUNAVAIL;
    if (strncmp(st, "23", 2) == 0 || strncmp(st, "22", 2) == 0)
        return KS_EINVAL;
    if (strcmp(st, "54000") == 0)
        return KS_ETOOLARGE;
    if (strcmp(st, "53200") == 0)
        return KS_ENOMEM;
    if (strncmp(st, "42", 2) == 0 || strcmp(st, "26000") == 0)
        return KS_EINTERNAL; /* our own SQL failing: a bug or a damaged schema */
    return KS_EIO;
}

/* Records the failure of `r` (may be NULL: no answer at all) and fills err. */
static ks_code pg_fail(pg_store *p, const PGresult *r, const char *what, ks_err *err)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *cn = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    ks_store__copy(p->sqlstate, sizeof(p->sqlstate), st);
    ks_store__copy(p->constraint, sizeof(p->constraint), cn);
    bool bad = PQstatus(p->c) != CONNECTION_OK;
    if (bad)
        p->leader = false; /* the server released the session's advisory lock */
    if (!msg || !msg[0])
        msg = PQerrorMessage(p->c);
    char clean[200];
    ks_store__copy(clean, sizeof(clean), msg);
    size_t n = strlen(clean);
    while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' '))
        clean[--n] = '\0';
    if (state_is(p, "25P02"))
        return ks_err_set(err, KS_EIO, "%s: transaction aborted by an earlier error", what);
    return ks_err_set(err, map_state(p->sqlstate, bad && !st), "%s: %s%s%s%s", what, clean,
                      p->sqlstate[0] ? " (SQLSTATE " : "", p->sqlstate, p->sqlstate[0] ? ")" : "");
}

/* ---- parameters -------------------------------------------------------- */

/* Parameters of one statement: text format, except bytea in binary. */
typedef struct pgp {
    int n;
    const char *v[KS_STORE__MAX_COLS];
    int len[KS_STORE__MAX_COLS];
    int fmt[KS_STORE__MAX_COLS];
    char num[KS_STORE__MAX_COLS][24];
} pgp;

static void p_text(pgp *a, const char *s)
{
    a->v[a->n] = s; /* NULL = SQL NULL */
    a->len[a->n] = 0;
    a->fmt[a->n] = 0;
    a->n++;
}

/* "" binds as NULL: optional filter strings. */
static void p_opt(pgp *a, const char *s)
{
    p_text(a, s && s[0] ? s : NULL);
}

static void p_i64(pgp *a, int64_t x)
{
    snprintf(a->num[a->n], sizeof(a->num[a->n]), "%" PRId64, x);
    p_text(a, a->num[a->n]);
}

/* Times and generations stay far below 2^63; larger values wrap and come back
 * through the same cast, as on SQLite. */
static void p_u64(pgp *a, uint64_t x)
{
    p_i64(a, (int64_t)x);
}

static void p_bool(pgp *a, bool b)
{
    p_text(a, b ? "t" : "f");
}

/* A LIMIT: 0 = none (NULL). */
static void p_limit(pgp *a, uint32_t limit)
{
    if (limit)
        p_i64(a, limit);
    else
        p_text(a, NULL);
}

static void p_blob(pgp *a, const void *b, size_t n)
{
    a->v[a->n] = b ? b : "";
    a->len[a->n] = (int)n;
    a->fmt[a->n] = 1;
    a->n++;
}

/* ---- results (text format) --------------------------------------------- */

static const char *g_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int64_t g_i64(const PGresult *r, int row, int col)
{
    const char *s = g_str(r, row, col);
    int64_t v = 0;
    if (!s || ks_parse_i64(&v, s, INT64_MIN, INT64_MAX, "column", NULL) != KS_OK)
        return 0;
    return v;
}

static uint64_t g_u64(const PGresult *r, int row, int col)
{
    return (uint64_t)g_i64(r, row, col);
}

static void g_text(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    ks_store__copy(dst, cap, g_str(r, row, col));
}

static ks_code g_dup(char **out, const PGresult *r, int row, int col, ks_err *err)
{
    *out = NULL;
    const char *s = g_str(r, row, col);
    if (!s)
        return KS_OK;
    size_t n = (size_t)PQgetlength(r, row, col);
    char *d = malloc(n + 1);
    if (!d)
        return ks_err_set(err, KS_ENOMEM, "out of memory copying %zu bytes", n);
    memcpy(d, s, n);
    d[n] = '\0';
    *out = d;
    return KS_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A bytea in text form ("\x0a1b...") into buf; returns the length or -1. */
static long g_bytea(uint8_t *buf, size_t cap, const PGresult *r, int row, int col)
{
    const char *s = g_str(r, row, col);
    if (!s || s[0] != '\\' || s[1] != 'x')
        return -1;
    s += 2;
    size_t n = strlen(s);
    if (n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        buf[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

/* ---- feature set blobs (the SQLite encoding) ---------------------------- */

static size_t featset_encode(uint8_t buf[KS_FEATSET_WORDS * 8], const ks_featset *f)
{
    int n = KS_FEATSET_WORDS;
    while (n > 0 && f->w[n - 1] == 0)
        n--;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 8; b++)
            buf[i * 8 + b] = (uint8_t)(f->w[i] >> (8 * b));
    return (size_t)n * 8;
}

static bool g_featset(ks_featset *f, const PGresult *r, int row, int col)
{
    uint8_t buf[KS_FEATSET_WORDS * 8];
    long len = g_bytea(buf, sizeof(buf), r, row, col);
    if (len < 0 || len % 8 != 0)
        return false;
    int n = (int)(len / 8);
    for (int i = 0; i < KS_FEATSET_WORDS; i++) {
        uint64_t w = 0;
        if (i < n)
            for (int b = 0; b < 8; b++)
                w |= (uint64_t)buf[i * 8 + b] << (8 * b);
        f->w[i] = w;
    }
    return true;
}

/* ---- connection and statements ------------------------------------------ */

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static ks_code exec_simple(pg_store *p, const char *sql, const char *what, ks_err *err)
{
    PGresult *r = PQexec(p->c, sql);
    ExecStatusType es = PQresultStatus(r);
    ks_code rc = KS_OK;
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK)
        rc = pg_fail(p, r, what, err);
    PQclear(r);
    return rc;
}

/* Session settings, after every (re)connection. */
static ks_code session_setup(pg_store *p, ks_err *err)
{
    memset(p->prepared, 0, sizeof(p->prepared));
    memset(p->raw_prepared, 0, sizeof(p->raw_prepared));
    p->leader = false;
    PQsetNoticeProcessor(p->c, quiet_notices, NULL);
    if (PQserverVersion(p->c) < 130000)
        return ks_err_set(err, KS_EUNSUPPORTED, "postgresql %d is too old (13 or later needed)",
                          PQserverVersion(p->c));
    char sql[160];
    snprintf(sql, sizeof(sql),
             "SET lock_timeout = %u; SET client_min_messages = warning; "
             "SET default_transaction_read_only = %s",
             p->lock_timeout_ms ? p->lock_timeout_ms : 1, /* 0 would mean "wait forever" */
             p->base.read_only ? "on" : "off");
    return exec_simple(p, sql, "configure session", err);
}

/* Outside a transaction a lost connection is re-opened (a failover moved the
 * primary, or the server restarted); inside one the transaction is gone and
 * the caller must roll back and retry. */
static ks_code ensure_conn(pg_store *p, ks_err *err)
{
    if (PQstatus(p->c) == CONNECTION_OK)
        return KS_OK;
    if (p->base.in_txn)
        return ks_err_set(err, KS_EUNAVAIL, "connection to postgresql lost in a transaction");
    PQreset(p->c);
    if (PQstatus(p->c) != CONNECTION_OK)
        return ks_err_set(err, KS_EUNAVAIL, "reconnect to postgresql: %s", PQerrorMessage(p->c));
    return session_setup(p, err);
}

/* Runs statement `id`; on success *out (may be NULL) gets the result, which the
 * caller PQclears. */
static ks_code run(PGresult **out, pg_store *p, int id, const pgp *a, const char *what, ks_err *err)
{
    char name[16];
    p->sqlstate[0] = p->constraint[0] = '\0';
    ks_code rc = ensure_conn(p, err);
    if (rc != KS_OK)
        return rc;
    snprintf(name, sizeof(name), "ks%d", id);
    if (!p->prepared[id]) {
        PGresult *r = PQprepare(p->c, name, sql_text[id], 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = pg_fail(p, r, what, err);
            PQclear(r);
            return rc;
        }
        PQclear(r);
        p->prepared[id] = true;
    }
    PGresult *r = PQexecPrepared(p->c, name, a ? a->n : 0, a ? a->v : NULL, a ? a->len : NULL,
                                 a ? a->fmt : NULL, 0);
    ExecStatusType es = PQresultStatus(r);
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
        rc = pg_fail(p, r, what, err);
        PQclear(r);
        return rc;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return KS_OK;
}

static int64_t affected(const PGresult *r)
{
    const char *t = PQcmdTuples((PGresult *)r);
    int64_t v = 0;
    if (!t || !t[0] || ks_parse_i64(&v, t, 0, INT64_MAX, "rows", NULL) != KS_OK)
        return 0;
    return v;
}

/* Runs a write keyed by a name; KS_ENOTFOUND when no row changed. */
static ks_code write_one(pg_store *p, int id, const pgp *a, const char *what, const char *name,
                         ks_err *err)
{
    PGresult *r = NULL;
    ks_code rc = run(&r, p, id, a, what, err);
    if (rc != KS_OK)
        return rc;
    int64_t n = affected(r);
    PQclear(r);
    if (n == 0)
        return ks_err_set(err, KS_ENOTFOUND, "%s '%s' not found", what, name);
    return KS_OK;
}

/* A single count(*) with one text parameter. */
static ks_code count_by(int64_t *out, pg_store *p, int id, const char *arg, ks_err *err)
{
    pgp a = {0};
    PGresult *r = NULL;
    p_text(&a, arg);
    ks_code rc = run(&r, p, id, &a, "count", err);
    if (rc != KS_OK)
        return rc;
    *out = PQntuples(r) ? g_i64(r, 0, 0) : 0;
    PQclear(r);
    return KS_OK;
}

/*
 * Batches: many executions of prepared statements sent in one round trip
 * (libpq pipeline mode), for the rows of one report or one placement.  The
 * statements run in order; after a failure the rest are skipped by the
 * server.  batch_end reports the first failure and, in *failed_at, the index
 * (in sending order) of the statement that failed.
 */
typedef struct batch {
    int n_sent;
    bool pipelined; /* false: each send ran at once (no pipeline support) */
    ks_code rc;     /* first failure */
    long failed_at;
} batch;

static ks_code prepare(pg_store *p, int id, ks_err *err)
{
    if (p->prepared[id])
        return KS_OK;
    char name[16];
    snprintf(name, sizeof(name), "ks%d", id);
    PGresult *r = PQprepare(p->c, name, sql_text[id], 0, NULL);
    ks_code rc = KS_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = pg_fail(p, r, "prepare", err);
    else
        p->prepared[id] = true;
    PQclear(r);
    return rc;
}

static ks_code batch_begin(batch *b, pg_store *p, const int *ids, int n_ids, ks_err *err)
{
    memset(b, 0, sizeof(*b));
    b->failed_at = -1;
    p->sqlstate[0] = p->constraint[0] = '\0';
    ks_code rc = ensure_conn(p, err);
    for (int i = 0; rc == KS_OK && i < n_ids; i++)
        rc = prepare(p, ids[i], err);
    if (rc != KS_OK)
        return rc;
#ifdef LIBPQ_HAS_PIPELINING
    b->pipelined = PQenterPipelineMode(p->c) == 1;
#endif
    return KS_OK;
}

static void batch_send(batch *b, pg_store *p, int id, const pgp *a, const char *what, ks_err *err)
{
    if (b->rc != KS_OK)
        return;
    char name[16];
    snprintf(name, sizeof(name), "ks%d", id);
#ifdef LIBPQ_HAS_PIPELINING
    if (b->pipelined) {
        if (PQsendQueryPrepared(p->c, name, a->n, a->v, a->len, a->fmt, 0) != 1) {
            b->rc = pg_fail(p, NULL, what, err);
            b->failed_at = b->n_sent;
        }
        b->n_sent++;
        return;
    }
#endif
    PGresult *r = PQexecPrepared(p->c, name, a->n, a->v, a->len, a->fmt, 0);
    ExecStatusType es = PQresultStatus(r);
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
        b->rc = pg_fail(p, r, what, err);
        b->failed_at = b->n_sent;
    }
    PQclear(r);
    b->n_sent++;
}

static ks_code batch_end(batch *b, pg_store *p, long *failed_at, const char *what, ks_err *err)
{
#ifdef LIBPQ_HAS_PIPELINING
    if (b->pipelined) {
        bool synced = PQpipelineSync(p->c) == 1;
        /* Each statement's result(s) end with NULL; then the sync point. */
        for (int i = 0; i < b->n_sent && PQstatus(p->c) == CONNECTION_OK; i++) {
            PGresult *r;
            while ((r = PQgetResult(p->c)) != NULL) {
                ExecStatusType es = PQresultStatus(r);
                if (es == PGRES_FATAL_ERROR && b->rc == KS_OK) {
                    b->rc = pg_fail(p, r, what, err);
                    b->failed_at = i;
                }
                PQclear(r);
            }
        }
        while (synced && PQstatus(p->c) == CONNECTION_OK) {
            PGresult *r = PQgetResult(p->c);
            if (!r)
                continue;
            ExecStatusType es = PQresultStatus(r);
            PQclear(r);
            if (es == PGRES_PIPELINE_SYNC)
                break;
        }
        if (PQexitPipelineMode(p->c) != 1 && b->rc == KS_OK)
            b->rc = ks_err_set(err, KS_EUNAVAIL, "%s: %s", what, PQerrorMessage(p->c));
        if (PQstatus(p->c) != CONNECTION_OK && b->rc == KS_OK)
            b->rc = pg_fail(p, NULL, what, err);
    }
#endif
    if (failed_at)
        *failed_at = b->failed_at;
    return b->rc;
}

/* ---- close / transactions ----------------------------------------------- */

static void pg_close(ks_store *s)
{
    pg_store *p = pg(s);
    if (p->c)
        PQfinish(p->c); /* an open transaction is rolled back by the server */
    free(p->url);
    free(p);
}

static ks_code pg_begin(ks_store *s, ks_err *err)
{
    pg_store *p = pg(s);
    ks_code rc = ensure_conn(p, err);
    if (rc == KS_OK)
        rc = exec_simple(p, "BEGIN ISOLATION LEVEL READ COMMITTED", "begin transaction", err);
    if (rc != KS_OK)
        return rc;
    s->in_txn = true;
    return KS_OK;
}

static ks_code pg_rollback(ks_store *s, ks_err *err)
{
    pg_store *p = pg(s);
    s->in_txn = false;
    if (PQstatus(p->c) != CONNECTION_OK || PQtransactionStatus(p->c) == PQTRANS_IDLE)
        return KS_OK; /* the server has already discarded it */
    return exec_simple(p, "ROLLBACK", "rollback", err);
}

static ks_code pg_savepoint(ks_store *s, ks_store_sp_action action, ks_err *err)
{
    pg_store *p = pg(s);
    if (PQtransactionStatus(p->c) == PQTRANS_IDLE)
        return ks_err_set(err, KS_EIO, "transaction was rolled back by an earlier error");
    static const char *const sql[] = {[KS_STORE_SP_MARK] = "SAVEPOINT ks_unit",
                                      [KS_STORE_SP_KEEP] = "RELEASE SAVEPOINT ks_unit",
                                      [KS_STORE_SP_UNDO] = "ROLLBACK TO SAVEPOINT ks_unit"};
    ks_code rc = exec_simple(p, sql[action], "savepoint", err);
    if (rc == KS_OK && action == KS_STORE_SP_UNDO)
        rc = exec_simple(p, sql[KS_STORE_SP_KEEP], "savepoint", err);
    return rc;
}

static ks_code pg_commit(ks_store *s, ks_err *err)
{
    pg_store *p = pg(s);
    if (PQtransactionStatus(p->c) == PQTRANS_INERROR) {
        pg_rollback(s, NULL);
        return ks_err_set(err, KS_EIO, "transaction was rolled back by an earlier error");
    }
    PGresult *r = PQexec(p->c, "COMMIT");
    ks_code rc = KS_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        /* Lost connection: the outcome is unknown to us; readers will see. */
        rc = pg_fail(p, r, "commit", err);
    } else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        rc = ks_err_set(err, KS_EIO, "commit: the server rolled the transaction back");
    }
    PQclear(r);
    if (rc != KS_OK)
        pg_rollback(s, NULL);
    s->in_txn = false;
    return rc;
}

static ks_code pg_begin_snapshot(ks_store *s, ks_err *err)
{
    pg_store *p = pg(s);
    ks_code rc = ensure_conn(p, err);
    if (rc == KS_OK)
        rc = exec_simple(p, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "begin snapshot",
                         err);
    if (rc == KS_OK)
        s->in_txn = true;
    return rc;
}

/* ---- maintenance -------------------------------------------------------- */

static void sync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof(dir))
        return;
    if (slash && n == 0)
        n = 1;
    memcpy(dir, slash ? path : ".", slash ? n : 1);
    dir[slash ? n : 1] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* A SQLite file with every row, taken under one snapshot (see ks_store.h). */
static ks_code pg_backup(ks_store *s, const char *path, ks_err *err)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return ks_err_set(err, KS_EINVAL, "backup path too long");
    unlink(tmp);
    ks_store *dst = NULL;
    ks_store_options o = KS_STORE_OPTIONS_INIT;
    o.sync_full = true;
    ks_code rc = ks_store__sqlite_open(&dst, tmp, &o, err);
    if (rc == KS_OK)
        rc = ks_store_copy(NULL, dst, s, err);
    ks_store_close(dst);
    if (rc == KS_OK) {
        char side[4200];
        snprintf(side, sizeof(side), "%s-wal", path);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", path);
        unlink(side);
        if (rename(tmp, path) != 0)
            rc = ks_err_set(err, KS_EIO, "rename backup to '%s': errno %d", path, errno);
        else
            sync_parent_dir(path);
    }
    if (rc != KS_OK) {
        char side[4200];
        unlink(tmp);
        snprintf(side, sizeof(side), "%s-wal", tmp);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", tmp);
        unlink(side);
    }
    return rc;
}

static ks_code pg_query_int(int64_t *out, ks_store *s, const char *sql, ks_err *err);

/* The server checks pages and constraints itself; what is left to check is
 * the schema version and the one invariant no constraint states (a VM's vCPU
 * rows are on the VM's host). */
static ks_code pg_integrity_check(ks_store *s, ks_err *err)
{
    int64_t v = 0;
    ks_code rc =
        pg_query_int(&v, s, "SELECT coalesce(max(version), 0) FROM schema_migrations", err);
    if (rc != KS_OK)
        return rc;
    if (v != KS_STORE_SCHEMA_VERSION)
        return ks_err_set(err, KS_EIO, "schema version %lld, expected %d", (long long)v,
                          KS_STORE_SCHEMA_VERSION);
    rc = pg_query_int(&v, s,
                      "SELECT count(*) FROM vm_vcpus a JOIN vms v ON v.name = a.vm_name "
                      "WHERE a.host_id <> v.host_id",
                      err);
    if (rc == KS_OK && v != 0)
        rc = ks_err_set(err, KS_EIO, "%lld vcpu rows are not on their vm's host", (long long)v);
    return rc;
}

/* Errors of the caller's SQL (syntax, unknown table, not read-only, several
 * statements) are KS_EINVAL, as on SQLite. */
static ks_code query_fail(pg_store *p, const PGresult *r, const char *sql, ks_err *err)
{
    ks_code rc = pg_fail(p, r, "query", err);
    if (rc == KS_EINTERNAL || state_is(p, "25006") || strncmp(p->sqlstate, "22", 2) == 0 ||
        strncmp(p->sqlstate, "42", 2) == 0)
        return ks_err_set(err, KS_EINVAL, "query '%s': %s", sql, err ? err->msg : "invalid");
    return rc;
}

static ks_code pg_query_int(int64_t *out, ks_store *s, const char *sql, ks_err *err)
{
    pg_store *p = pg(s);
    ks_code rc = ensure_conn(p, err);
    if (rc != KS_OK)
        return rc;
    /* An escape hatch for reading: it runs read-only, in a subtransaction when
     * the caller has one open, so it can neither write nor end it. */
    bool nested = s->in_txn;
    rc = exec_simple(p,
                     nested ? "SAVEPOINT ks_query_int; SET LOCAL transaction_read_only = on"
                            : "BEGIN READ ONLY",
                     "begin query", err);
    if (rc != KS_OK)
        return rc;
    /* Extended protocol: several statements are refused by the server. */
    PGresult *r = PQexecParams(p->c, sql, 0, NULL, NULL, NULL, NULL, 0);
    ExecStatusType es = PQresultStatus(r);
    if (es != PGRES_TUPLES_OK) {
        rc = es == PGRES_COMMAND_OK ? ks_err_set(err, KS_EINVAL, "query '%s' is not a select", sql)
                                    : query_fail(p, r, sql, err);
    } else if (PQntuples(r) == 0) {
        rc = ks_err_set(err, KS_ENOTFOUND, "query '%s' returned no row", sql);
    } else {
        /* int2/int4/int8, or a numeric holding an integer (sum() of bigints). */
        Oid t = PQftype(r, 0);
        const char *txt = g_str(r, 0, 0);
        int64_t x = 0;
        bool integral = txt && ks_parse_i64(&x, txt, INT64_MIN, INT64_MAX, "value", NULL) == KS_OK;
        if ((t != 20 && t != 21 && t != 23 && t != 1700) || !integral)
            rc = ks_err_set(err, KS_EINVAL, "query '%s' did not return an integer", sql);
        else
            *out = x;
    }
    PQclear(r);
    ks_code rc2 = exec_simple(
        p,
        nested ? "ROLLBACK TO SAVEPOINT ks_query_int; RELEASE SAVEPOINT ks_query_int" : "ROLLBACK",
        "end query", rc == KS_OK ? err : NULL);
    return rc != KS_OK ? rc : rc2;
}

/* ---- hosts ------------------------------------------------------------- */

static void host_row_read(ks_store_host_row *h, const PGresult *r, int i)
{
    g_text(h->id, sizeof(h->id), r, i, 0);
    g_text(h->hostname, sizeof(h->hostname), r, i, 1);
    h->arch = ks_store__arch_parse(g_str(r, i, 2));
    g_text(h->vendor, sizeof(h->vendor), r, i, 3);
    g_text(h->model_name, sizeof(h->model_name), r, i, 4);
    int state = ks_store_host_state_from_str(g_str(r, i, 5));
    h->state = (uint8_t)(state < 0 ? KS_STORE_HOST_LOST : state);
    g_text(h->boot_id, sizeof(h->boot_id), r, i, 6);
    h->generation = g_u64(r, i, 7);
    h->n_cpus = (uint32_t)g_i64(r, i, 8);
    h->registered_us = g_u64(r, i, 9);
    h->updated_us = g_u64(r, i, 10);
    h->last_heartbeat_us = g_u64(r, i, 11);
    h->report_json = NULL;
}

static bool cpu_row_read(ks_store_cpu_row *c, const PGresult *r, int i)
{
    g_text(c->host_id, sizeof(c->host_id), r, i, 0);
    c->cpu_id = (int32_t)g_i64(r, i, 1);
    c->package = (int32_t)g_i64(r, i, 2);
    c->die = (int32_t)g_i64(r, i, 3);
    c->cluster = (int32_t)g_i64(r, i, 4);
    c->core = (int32_t)g_i64(r, i, 5);
    c->thread = (int32_t)g_i64(r, i, 6);
    c->numa_node = (int32_t)g_i64(r, i, 7);
    c->l2_group = (int32_t)g_i64(r, i, 8);
    c->l3_group = (int32_t)g_i64(r, i, 9);
    const char *kc = g_str(r, i, 10);
    c->kind_class = kc ? ks_store__kind_class_parse(kc) : -1;
    g_text(c->kind_name, sizeof(c->kind_name), r, i, 11);
    c->base_mhz = (uint32_t)g_i64(r, i, 12);
    c->max_mhz = (uint32_t)g_i64(r, i, 13);
    int state = ks_store__cpu_state_parse(g_str(r, i, 14));
    c->state = (uint8_t)(state < 0 ? KS_CPU_QUARANTINED : state);
    c->reserved = g_i64(r, i, 15) != 0;
    return state >= 0 && g_featset(&c->native, r, i, 16) && g_featset(&c->usable, r, i, 17) &&
           g_featset(&c->defective, r, i, 18);
}

enum { CPU_NEW = 0, CPU_SAME, CPU_CHANGED };

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

/* As on SQLite: one ordered read of the stored CPUs merged with the report,
 * so that unchanged CPUs are not rewritten. */
static ks_code diff_cpus(uint8_t *what, int32_t **stale, uint32_t *n_stale, pg_store *p,
                         const ks_report *r, ks_err *err)
{
    pgp a = {0};
    PGresult *res = NULL;
    ks_store_cpu_row row;
    p_text(&a, r->host.id);
    ks_code rc = run(&res, p, ST_CPU_SCAN_HOST, &a, "read cpus", err);
    if (rc != KS_OK)
        return rc;
    int rows = PQntuples(res);
    int32_t *ids = malloc(((size_t)rows + 1) * sizeof(*ids));
    uint32_t n = 0, j = 0;
    if (!ids) {
        PQclear(res);
        return ks_err_set(err, KS_ENOMEM, "out of memory listing stale cpus");
    }
    for (int i = 0; i < rows; i++) {
        bool ok = cpu_row_read(&row, res, i);
        int32_t id = row.cpu_id;
        while (j < r->n_cpus && r->cpus[j].id < id)
            j++;
        if (j < r->n_cpus && r->cpus[j].id == id) {
            what[j] = ok && cpu_row_matches(&row, r, &r->cpus[j]) ? CPU_SAME : CPU_CHANGED;
            continue;
        }
        ids[n++] = id;
    }
    PQclear(res);
    *stale = ids;
    *n_stale = n;
    return KS_OK;
}

static ks_code delete_stale_cpus(pg_store *p, const char *host, const int32_t *ids, uint32_t n,
                                 ks_err *err)
{
    for (uint32_t i = 0; i < n; i++) {
        pgp a = {0};
        PGresult *r = NULL;
        p_text(&a, host);
        p_i64(&a, ids[i]);
        ks_code rc = run(&r, p, ST_VCPU_ON_CPU, &a, "check cpu allocation", err);
        if (rc != KS_OK)
            return rc;
        if (PQntuples(r) > 0) {
            rc = ks_err_set(err, KS_ECONFLICT,
                            "cpu %d of host '%s' is allocated to vm '%s' but no longer reported",
                            ids[i], host, PQgetvalue(r, 0, 0));
            PQclear(r);
            return rc;
        }
        PQclear(r);
        rc = run(NULL, p, ST_CPU_DELETE, &a, "delete cpu", err);
        if (rc != KS_OK) {
            /* A placement committed on it meanwhile (the foreign key). */
            if (state_is(p, "23503"))
                return ks_err_set(err, KS_ECONFLICT,
                                  "cpu %d of host '%s' was allocated meanwhile but is no longer "
                                  "reported",
                                  ids[i], host);
            return rc;
        }
    }
    return KS_OK;
}

/* New and changed CPUs, then the host's defects, in one round trip. */
static ks_code write_cpus(pg_store *p, const ks_report *r, const uint8_t *what, ks_err *err)
{
    uint8_t bn[KS_FEATSET_WORDS * 8], bu[KS_FEATSET_WORDS * 8], bd[KS_FEATSET_WORDS * 8];
    static const int ids[] = {ST_CPU_INSERT, ST_CPU_UPDATE, ST_DEFECTS_DELETE, ST_DEFECT_INSERT};
    batch b;
    ks_code rc = batch_begin(&b, p, ids, 4, err);
    if (rc != KS_OK)
        return rc;
    int32_t *sent_cpu = malloc(((size_t)r->n_cpus + 1) * sizeof(*sent_cpu));
    if (!sent_cpu) {
        batch_end(&b, p, NULL, "store cpu", NULL);
        return ks_err_set(err, KS_ENOMEM, "out of memory storing a report");
    }
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        if (what[i] == CPU_SAME)
            continue;
        const ks_cpu *c = &r->cpus[i];
        const ks_kind *k = c->kind >= 0 ? &r->kinds[c->kind] : NULL;
        pgp a = {0};
        p_text(&a, r->host.id);
        p_i64(&a, c->id);
        p_i64(&a, c->package);
        p_i64(&a, c->die);
        p_i64(&a, c->cluster);
        p_i64(&a, c->core);
        p_i64(&a, c->thread);
        p_i64(&a, c->numa_node);
        p_i64(&a, c->l2_group);
        p_i64(&a, c->l3_group);
        p_text(&a, k ? ks_store__kind_class_str(k->kind_class) : NULL);
        p_text(&a, k ? k->name : "");
        p_i64(&a, c->base_mhz);
        p_i64(&a, c->max_mhz);
        p_text(&a, ks_store__cpu_state_str(c->state));
        p_i64(&a, c->reserved ? 1 : 0);
        p_blob(&a, bn, featset_encode(bn, &c->native));
        p_blob(&a, bu, featset_encode(bu, &c->usable));
        p_blob(&a, bd, featset_encode(bd, &c->defective));
        sent_cpu[b.n_sent] = c->id;
        batch_send(&b, p, what[i] == CPU_NEW ? ST_CPU_INSERT : ST_CPU_UPDATE, &a, "store cpu", err);
    }
    long n_cpu_sent = b.n_sent;
    pgp d = {0};
    p_text(&d, r->host.id);
    batch_send(&b, p, ST_DEFECTS_DELETE, &d, "delete defects", err);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *c = &r->cpus[i];
        for (uint16_t k = 0; k < c->n_defects; k++) {
            const ks_defect *df = &c->defects[k];
            pgp a = {0};
            p_text(&a, r->host.id);
            p_i64(&a, c->id);
            p_text(&a, df->feature == KS_FEATURE_NONE ? NULL : ks_feature_name(df->feature));
            p_text(&a, ks_store__defect_source_str(df->source));
            p_u64(&a, df->time_us);
            p_text(&a, df->detail);
            batch_send(&b, p, ST_DEFECT_INSERT, &a, "store defect", err);
        }
    }
    long failed = -1;
    rc = batch_end(&b, p, &failed, "store cpus", err);
    if (rc != KS_OK && failed >= 0 && failed < n_cpu_sent && state_is(p, "23505"))
        rc =
            ks_err_set(err, KS_ECONFLICT, /* another replica stored the same new host first */
                       "cpu %d of host '%s' was stored concurrently", sent_cpu[failed], r->host.id);
    free(sent_cpu);
    return rc;
}

static ks_code pg_host_put_report(ks_store *s, const ks_report *r, const char *report_json,
                                  uint64_t now_us, ks_store_put_result *res, ks_err *err)
{
    pg_store *p = pg(s);
    PGresult *head = NULL;
    int32_t *stale = NULL;
    uint8_t *what = NULL;
    uint32_t n_stale = 0;
    pgp a = {0};
    p_text(&a, r->host.id);
    /* FOR UPDATE: concurrent reports of one host are compared one at a time. */
    ks_code rc = run(&head, p, ST_HOST_HEAD, &a, "read host", err);
    if (rc != KS_OK)
        return rc;
    if (PQntuples(head) > 0) {
        const char *boot = g_str(head, 0, 0);
        uint64_t gen = g_u64(head, 0, 1);
        if (boot && strcmp(boot, r->host.boot_id) == 0) {
            if (r->host.generation < gen) {
                rc = ks_err_set(err, KS_ECONFLICT,
                                "report generation %llu is older than stored %llu",
                                (unsigned long long)r->host.generation, (unsigned long long)gen);
                goto done;
            }
            if (r->host.generation == gen) {
                res->unchanged = true;
                goto done;
            }
        } else {
            res->boot_changed = true;
        }
    } else {
        res->created = true;
    }

    pgp h = {0};
    p_text(&h, r->host.id);
    p_text(&h, r->host.hostname);
    p_text(&h, ks_store__arch_str(r->host.arch));
    p_text(&h, r->host.vendor);
    p_text(&h, r->host.model_name);
    p_text(&h, r->host.boot_id);
    p_u64(&h, r->host.generation);
    p_i64(&h, r->n_cpus);
    p_u64(&h, now_us);
    rc = run(NULL, p, ST_HOST_UPSERT, &h, "store host", err);
    if (rc != KS_OK)
        goto done;
    pgp j = {0};
    p_text(&j, r->host.id);
    p_text(&j, report_json);
    rc = run(NULL, p, ST_REPORT_UPSERT, &j, "store report", err);
    if (rc != KS_OK)
        goto done;

    what = calloc(r->n_cpus ? r->n_cpus : 1, 1); /* all CPU_NEW */
    if (!what) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory storing a report");
        goto done;
    }
    if (!res->created) {
        rc = diff_cpus(what, &stale, &n_stale, p, r, err);
        if (rc == KS_OK)
            rc = delete_stale_cpus(p, r->host.id, stale, n_stale, err);
        if (rc != KS_OK)
            goto done;
    }
    rc = write_cpus(p, r, what, err);
    if (rc != KS_OK)
        goto done;
    res->n_cpus_removed = n_stale;
    for (uint32_t i = 0; i < r->n_cpus; i++)
        res->n_cpus_added += what[i] == CPU_NEW;
done:
    PQclear(head);
    free(stale);
    free(what);
    return rc;
}

static ks_code pg_host_get(ks_store_host_row *out, ks_store *s, const char *id, bool with_report,
                           ks_err *err)
{
    pg_store *p = pg(s);
    PGresult *r = NULL;
    ks_store_host_row h;
    memset(&h, 0, sizeof(h));
    pgp a = {0};
    p_text(&a, id);
    ks_code rc = run(&r, p, ST_HOST_GET, &a, "read host", err);
    if (rc != KS_OK)
        return rc;
    if (PQntuples(r) == 0) {
        rc = ks_err_set(err, KS_ENOTFOUND, "host '%s' not found", id);
        goto done;
    }
    host_row_read(&h, r, 0);
    PQclear(r);
    r = NULL;
    if (with_report) {
        rc = run(&r, p, ST_REPORT_GET, &a, "read report", err);
        if (rc == KS_OK && PQntuples(r) > 0)
            rc = g_dup(&h.report_json, r, 0, 0, err);
        if (rc != KS_OK)
            goto done;
    }
    *out = h;
    h.report_json = NULL;
done:
    PQclear(r);
    ks_store_host_row_destroy(&h);
    return rc;
}

static ks_code pg_host_heartbeat(ks_store *s, const char *id, uint64_t now_us, ks_err *err)
{
    pgp a = {0};
    p_text(&a, id);
    p_u64(&a, now_us);
    return write_one(pg(s), ST_HOST_HEARTBEAT, &a, "host", id, err);
}

static ks_code pg_host_set_state(ks_store *s, const char *id, ks_store_host_state state,
                                 uint64_t now_us, ks_err *err)
{
    pgp a = {0};
    p_text(&a, id);
    p_text(&a, ks_store_host_state_to_str(state));
    p_u64(&a, now_us);
    return write_one(pg(s), ST_HOST_SET_STATE, &a, "host", id, err);
}

/* Deletes row `id` of a host or pool (`what`) under its row lock, refused while
 * VMs use it. */
static ks_code delete_if_no_vms(pg_store *p, int lock_st, int count_st, int delete_st,
                                const char *what, const char *id, ks_err *err)
{
    pgp a = {0};
    p_text(&a, id);
    ks_code rc = write_one(p, lock_st, &a, what, id, err);
    int64_t n_vms = 0;
    if (rc == KS_OK)
        rc = count_by(&n_vms, p, count_st, id, err);
    if (rc != KS_OK)
        return rc;
    if (n_vms > 0)
        return ks_err_set(err, KS_ECONFLICT, "%s '%s' has %lld vms", what, id, (long long)n_vms);
    return write_one(p, delete_st, &a, what, id, err);
}

static ks_code pg_host_delete(ks_store *s, const char *id, ks_err *err)
{
    return delete_if_no_vms(pg(s), ST_HOST_LOCK, ST_HOST_VM_COUNT, ST_HOST_DELETE, "host", id,
                            err);
}

static void p_host_filter(pgp *a, const ks_store_host_filter *f)
{
    p_text(a, f->state >= 0 ? ks_store_host_state_to_str(f->state) : NULL);
    p_text(a, f->arch >= 0 ? ks_store__arch_str(f->arch) : NULL);
    p_text(a, f->vendor);
}

static ks_code pg_host_list(ks_store *s, const ks_store_host_filter *f, ks_store_host_cb cb,
                            void *ctx, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_host_row h;
    pgp a = {0};
    p_host_filter(&a, f);
    p_text(&a, f->after_id ? f->after_id : "");
    p_limit(&a, f->limit);
    ks_code rc = run(&r, pg(s), ST_HOST_LIST, &a, "list hosts", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        host_row_read(&h, r, i);
        if (cb(ctx, &h) != 0)
            break;
    }
    PQclear(r);
    return KS_OK;
}

static ks_code pg_host_count(uint64_t *out, ks_store *s, const ks_store_host_filter *f, ks_err *err)
{
    PGresult *r = NULL;
    pgp a = {0};
    p_host_filter(&a, f);
    ks_code rc = run(&r, pg(s), ST_HOST_COUNT, &a, "count hosts", err);
    if (rc != KS_OK)
        return rc;
    *out = g_u64(r, 0, 0);
    PQclear(r);
    return KS_OK;
}

/* ---- cpus -------------------------------------------------------------- */

static ks_code pg_cpu_scan(ks_store *s, const char *host_id, ks_store_cpu_cb cb, void *ctx,
                           ks_err *err)
{
    PGresult *r = NULL;
    ks_store_cpu_row c;
    pgp a = {0};
    if (host_id)
        p_text(&a, host_id);
    ks_code rc = run(&r, pg(s), host_id ? ST_CPU_SCAN_HOST : ST_CPU_SCAN_ALL, &a, "scan cpus", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        if (!cpu_row_read(&c, r, i)) {
            rc =
                ks_err_set(err, KS_EIO, "corrupt row for cpu %d of host '%s'", c.cpu_id, c.host_id);
            break;
        }
        if (cb(ctx, &c) != 0)
            break;
    }
    PQclear(r);
    return rc;
}

static ks_code pg_cpu_get(ks_store_cpu_row *out, ks_store *s, const char *host_id, int32_t cpu_id,
                          ks_err *err)
{
    PGresult *r = NULL;
    ks_store_cpu_row c;
    pgp a = {0};
    p_text(&a, host_id);
    p_i64(&a, cpu_id);
    ks_code rc = run(&r, pg(s), ST_CPU_GET, &a, "read cpu", err);
    if (rc != KS_OK)
        return rc;
    if (PQntuples(r) == 0)
        rc = ks_err_set(err, KS_ENOTFOUND, "host '%s' has no cpu %d", host_id, cpu_id);
    else if (!cpu_row_read(&c, r, 0))
        rc = ks_err_set(err, KS_EIO, "corrupt row for cpu %d of host '%s'", cpu_id, host_id);
    else
        *out = c;
    PQclear(r);
    return rc;
}

static ks_code pg_defect_list(ks_store *s, const char *host_id, int32_t cpu_id,
                              ks_store_defect_cb cb, void *ctx, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_defect_row d;
    pgp a = {0};
    p_text(&a, host_id);
    p_i64(&a, cpu_id);
    ks_code rc =
        run(&r, pg(s), host_id ? ST_DEFECT_LIST_HOST : ST_DEFECT_LIST, &a, "list defects", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        g_text(d.host_id, sizeof(d.host_id), r, i, 0);
        d.cpu_id = (int32_t)g_i64(r, i, 1);
        g_text(d.feature_name, sizeof(d.feature_name), r, i, 2);
        d.feature = KS_FEATURE_NONE;
        unsigned fid;
        if (d.feature_name[0] && ks_feature_lookup(d.feature_name, &fid, NULL) == KS_OK)
            d.feature = (uint16_t)fid;
        int source = ks_store__defect_source_parse(g_str(r, i, 3));
        d.source = (uint8_t)(source < 0 ? KS_DEFECT_OPERATOR : source);
        d.time_us = g_u64(r, i, 4);
        g_text(d.detail, sizeof(d.detail), r, i, 5);
        if (cb(ctx, &d) != 0)
            break;
    }
    PQclear(r);
    return KS_OK;
}

/* ---- vms --------------------------------------------------------------- */

/* All vCPU rows in one round trip; the first one refused names the error. */
static ks_code insert_vcpus(pg_store *p, const char *vm, const char *host,
                            const ks_store_vcpu_alloc *v, uint32_t n, ks_err *err)
{
    static const int ids[] = {ST_VCPU_INSERT};
    if (n == 0)
        return KS_OK;
    batch b;
    ks_code rc = batch_begin(&b, p, ids, 1, err);
    if (rc != KS_OK)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        pgp a = {0};
        p_text(&a, vm);
        p_i64(&a, v[i].vcpu);
        p_text(&a, host);
        p_i64(&a, v[i].cpu_id);
        batch_send(&b, p, ST_VCPU_INSERT, &a, "store vcpu", err);
    }
    long i = -1;
    rc = batch_end(&b, p, &i, "store vcpus", err);
    if (rc == KS_OK || i < 0 || i >= (long)n)
        return rc;
    if (constraint_is(p, "vm_vcpus_cpu_unique"))
        return ks_err_set(err, KS_ECONFLICT, "host cpu %s/%d is already allocated", host,
                          v[i].cpu_id);
    if (constraint_is(p, "vm_vcpus_pkey"))
        return ks_err_set(err, KS_EINVAL, "vcpu %d of vm '%s' is listed twice", v[i].vcpu, vm);
    if (constraint_is(p, "vm_vcpus_cpu_fkey"))
        return ks_err_set(err, KS_ENOTFOUND, "host '%s' has no cpu %d", host, v[i].cpu_id);
    return rc;
}

static ks_code pg_vm_insert(ks_store *s, const ks_store_vm_row *vm,
                            const ks_store_vcpu_alloc *vcpus, uint32_t n_vcpus, ks_err *err)
{
    pg_store *p = pg(s);
    ks_code rc = KS_OK;
    if (vm->pool[0]) {
        /* Holds the pool (if it exists) against a concurrent pool delete. */
        pgp a = {0};
        p_text(&a, vm->pool);
        rc = run(NULL, p, ST_POOL_SHARE, &a, "lock pool", err);
        if (rc != KS_OK)
            return rc;
    }
    pgp a = {0};
    p_text(&a, vm->name);
    p_text(&a, vm->host_id);
    p_text(&a, ks_store_vm_state_to_str(vm->state));
    p_u64(&a, vm->generation);
    p_u64(&a, vm->applied_generation);
    p_text(&a, vm->pool);
    p_text(&a, vm->anti_affinity_group);
    p_text(&a, vm->apply_error);
    p_i64(&a, n_vcpus);
    p_u64(&a, vm->created_us);
    p_u64(&a, vm->updated_us);
    p_text(&a, vm->request_json);
    p_text(&a, vm->plan_json);
    PGresult *r = NULL;
    rc = run(&r, p, ST_VM_INSERT, &a, "store vm", err);
    if (rc != KS_OK) {
        if (state_is(p, "23503"))
            return ks_err_set(err, KS_ENOTFOUND, "host '%s' not found", vm->host_id);
        return rc;
    }
    int64_t n = affected(r);
    PQclear(r);
    if (n == 0)
        return ks_err_set(err, KS_EEXIST, "vm '%s' already exists", vm->name);
    return insert_vcpus(p, vm->name, vm->host_id, vcpus, n_vcpus, err);
}

/* JSON pointers borrowed from the result. */
static void vm_row_read(ks_store_vm_row *v, const PGresult *r, int i)
{
    g_text(v->name, sizeof(v->name), r, i, 0);
    g_text(v->host_id, sizeof(v->host_id), r, i, 1);
    int state = ks_store_vm_state_from_str(g_str(r, i, 2));
    v->state = (uint8_t)(state < 0 ? KS_STORE_VM_FAILED : state);
    v->generation = g_u64(r, i, 3);
    v->applied_generation = g_u64(r, i, 4);
    g_text(v->pool, sizeof(v->pool), r, i, 5);
    g_text(v->anti_affinity_group, sizeof(v->anti_affinity_group), r, i, 6);
    g_text(v->apply_error, sizeof(v->apply_error), r, i, 7);
    v->n_vcpus = (uint32_t)g_i64(r, i, 8);
    v->created_us = g_u64(r, i, 9);
    v->updated_us = g_u64(r, i, 10);
    v->request_json = (char *)g_str(r, i, 11);
    v->plan_json = (char *)g_str(r, i, 12);
}

static ks_code pg_vm_get(ks_store_vm_row *out, ks_store *s, const char *name, bool with_json,
                         ks_err *err)
{
    PGresult *r = NULL;
    ks_store_vm_row v;
    memset(&v, 0, sizeof(v));
    pgp a = {0};
    p_text(&a, name);
    p_bool(&a, with_json);
    ks_code rc = run(&r, pg(s), ST_VM_GET, &a, "read vm", err);
    if (rc != KS_OK)
        return rc;
    if (PQntuples(r) == 0) {
        rc = ks_err_set(err, KS_ENOTFOUND, "vm '%s' not found", name);
        goto done;
    }
    vm_row_read(&v, r, 0);
    v.request_json = v.plan_json = NULL;
    if (with_json) {
        rc = g_dup(&v.request_json, r, 0, 11, err);
        if (rc == KS_OK)
            rc = g_dup(&v.plan_json, r, 0, 12, err);
        if (rc != KS_OK)
            goto done;
    }
    *out = v;
    v.request_json = v.plan_json = NULL;
done:
    PQclear(r);
    ks_store_vm_row_destroy(&v);
    return rc;
}

static ks_code pg_vm_list(ks_store *s, const ks_store_vm_filter *f, ks_store_vm_cb cb, void *ctx,
                          ks_err *err)
{
    PGresult *r = NULL;
    ks_store_vm_row v;
    bool by_host = f->host_id && f->host_id[0];
    pgp a = {0};
    p_text(&a, f->state >= 0 ? ks_store_vm_state_to_str(f->state) : NULL);
    p_text(&a, f->pool); /* "" matches VMs in no pool */
    p_text(&a, f->after_name ? f->after_name : "");
    p_limit(&a, f->limit);
    p_bool(&a, f->with_json);
    if (by_host)
        p_text(&a, f->host_id);
    ks_code rc = run(&r, pg(s), by_host ? ST_VM_LIST_HOST : ST_VM_LIST_ALL, &a, "list vms", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        vm_row_read(&v, r, i);
        if (cb(ctx, &v) != 0)
            break;
    }
    PQclear(r);
    return KS_OK;
}

static ks_code pg_vm_count(uint64_t *out, ks_store *s, const ks_store_vm_filter *f, ks_err *err)
{
    PGresult *r = NULL;
    pgp a = {0};
    p_text(&a, f->state >= 0 ? ks_store_vm_state_to_str(f->state) : NULL);
    p_text(&a, f->pool);
    p_opt(&a, f->host_id);
    ks_code rc = run(&r, pg(s), ST_VM_COUNT, &a, "count vms", err);
    if (rc != KS_OK)
        return rc;
    *out = g_u64(r, 0, 0);
    PQclear(r);
    return KS_OK;
}

static ks_code pg_vm_delete(ks_store *s, const char *name, ks_err *err)
{
    pgp a = {0};
    p_text(&a, name);
    return write_one(pg(s), ST_VM_DELETE, &a, "vm", name, err);
}

static ks_code pg_vm_update_plan(ks_store *s, const char *name, const char *host_id,
                                 uint64_t generation, const char *plan_json,
                                 const ks_store_vcpu_alloc *vcpus, uint32_t n_vcpus,
                                 uint64_t now_us, ks_err *err)
{
    pg_store *p = pg(s);
    PGresult *r = NULL;
    pgp a = {0};
    p_text(&a, name);
    /* FOR UPDATE: two replicas re-planning one VM compare generations in turn. */
    ks_code rc = run(&r, p, ST_VM_GEN_LOCK, &a, "read vm", err);
    if (rc != KS_OK)
        return rc;
    bool found = PQntuples(r) > 0;
    uint64_t gen = found ? g_u64(r, 0, 0) : 0;
    PQclear(r);
    if (!found)
        return ks_err_set(err, KS_ENOTFOUND, "vm '%s' not found", name);
    if (generation <= gen)
        return ks_err_set(err, KS_ECONFLICT, "plan generation %llu is not newer than stored %llu",
                          (unsigned long long)generation, (unsigned long long)gen);
    rc = run(NULL, p, ST_VCPU_DELETE_VM, &a, "delete vcpus", err);
    if (rc != KS_OK)
        return rc;
    pgp u = {0};
    p_text(&u, name);
    p_text(&u, host_id);
    p_u64(&u, generation);
    p_text(&u, plan_json);
    p_i64(&u, n_vcpus);
    p_u64(&u, now_us);
    rc = run(NULL, p, ST_VM_UPDATE_PLAN, &u, "update vm", err);
    if (rc != KS_OK) {
        if (state_is(p, "23503"))
            return ks_err_set(err, KS_ENOTFOUND, "host '%s' not found", host_id);
        return rc;
    }
    return insert_vcpus(p, name, host_id, vcpus, n_vcpus, err);
}

static ks_code pg_vm_set_state(ks_store *s, const char *name, ks_store_vm_state state,
                               uint64_t now_us, ks_err *err)
{
    pgp a = {0};
    p_text(&a, name);
    p_text(&a, ks_store_vm_state_to_str(state));
    p_u64(&a, now_us);
    return write_one(pg(s), ST_VM_SET_STATE, &a, "vm", name, err);
}

static ks_code pg_vm_set_applied(ks_store *s, const char *name, uint64_t applied_generation,
                                 const char *apply_error, uint64_t now_us, ks_err *err)
{
    pgp a = {0};
    p_text(&a, name);
    p_u64(&a, applied_generation);
    p_text(&a, apply_error ? apply_error : "");
    p_u64(&a, now_us);
    return write_one(pg(s), ST_VM_SET_APPLIED, &a, "vm", name, err);
}

static ks_code pg_vcpu_scan(ks_store *s, const char *host_id, const char *vm_name,
                            ks_store_vcpu_cb cb, void *ctx, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_vcpu_row v;
    pgp a = {0};
    int id = vm_name ? ST_VCPU_SCAN_VM : host_id ? ST_VCPU_SCAN_HOST : ST_VCPU_SCAN_ALL;
    if (vm_name) {
        p_text(&a, vm_name);
        p_text(&a, host_id);
    } else if (host_id) {
        p_text(&a, host_id);
    }
    ks_code rc = run(&r, pg(s), id, &a, "scan vcpus", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        g_text(v.vm_name, sizeof(v.vm_name), r, i, 0);
        v.vcpu = (int32_t)g_i64(r, i, 1);
        g_text(v.host_id, sizeof(v.host_id), r, i, 2);
        v.cpu_id = (int32_t)g_i64(r, i, 3);
        if (cb(ctx, &v) != 0)
            break;
    }
    PQclear(r);
    return KS_OK;
}

/* ---- pools ------------------------------------------------------------- */

static ks_code pg_pool_create(ks_store *s, const char *name, const char *selector_json,
                              uint64_t now_us, ks_err *err)
{
    PGresult *r = NULL;
    pgp a = {0};
    p_text(&a, name);
    p_text(&a, selector_json);
    p_u64(&a, now_us);
    ks_code rc = run(&r, pg(s), ST_POOL_INSERT, &a, "store pool", err);
    if (rc != KS_OK)
        return rc;
    int64_t n = affected(r);
    PQclear(r);
    return n ? KS_OK : ks_err_set(err, KS_EEXIST, "pool '%s' already exists", name);
}

static void pool_row_read(ks_store_pool_row *p, const PGresult *r, int i)
{
    g_text(p->name, sizeof(p->name), r, i, 0);
    p->selector_json = (char *)g_str(r, i, 1);
    p->n_members = (uint32_t)g_i64(r, i, 2);
    p->created_us = g_u64(r, i, 3);
}

static ks_code pg_pool_get(ks_store_pool_row *out, ks_store *s, const char *name, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_pool_row pr;
    memset(&pr, 0, sizeof(pr));
    pgp a = {0};
    p_text(&a, name);
    ks_code rc = run(&r, pg(s), ST_POOL_GET, &a, "read pool", err);
    if (rc != KS_OK)
        return rc;
    if (PQntuples(r) == 0) {
        rc = ks_err_set(err, KS_ENOTFOUND, "pool '%s' not found", name);
        goto done;
    }
    pool_row_read(&pr, r, 0);
    rc = g_dup(&pr.selector_json, r, 0, 1, err);
    if (rc != KS_OK)
        goto done;
    *out = pr;
    pr.selector_json = NULL;
done:
    PQclear(r);
    ks_store_pool_row_destroy(&pr);
    return rc;
}

static ks_code pg_pool_list(ks_store *s, ks_store_pool_cb cb, void *ctx, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_pool_row pr;
    ks_code rc = run(&r, pg(s), ST_POOL_LIST, NULL, "list pools", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        pool_row_read(&pr, r, i);
        if (cb(ctx, &pr) != 0)
            break;
    }
    PQclear(r);
    return KS_OK;
}

static ks_code pg_pool_delete(ks_store *s, const char *name, ks_err *err)
{
    return delete_if_no_vms(pg(s), ST_POOL_LOCK, ST_POOL_VM_COUNT, ST_POOL_DELETE, "pool", name,
                            err);
}

/* Members are the one write whose constraint errors (a duplicate, an unknown
 * host) are routine operator mistakes: a savepoint keeps the transaction
 * usable after them, as on SQLite. */
static ks_code pg_pool_members_set(ks_store *s, const char *name, const char *const *host_ids,
                                   uint32_t n, ks_err *err)
{
    pg_store *p = pg(s);
    ks_code rc = exec_simple(p, "SAVEPOINT ks_members", "pool members", err);
    if (rc != KS_OK)
        return rc;
    pgp a = {0};
    p_text(&a, name);
    rc = write_one(p, ST_POOL_LOCK, &a, "pool", name, err);
    if (rc == KS_OK)
        rc = run(NULL, p, ST_MEMBERS_DELETE, &a, "delete pool members", err);
    for (uint32_t i = 0; rc == KS_OK && i < n; i++) {
        pgp b = {0};
        p_text(&b, name);
        p_text(&b, host_ids[i]);
        rc = run(NULL, p, ST_MEMBER_INSERT, &b, "store pool member", err);
        if (rc == KS_OK)
            continue;
        if (constraint_is(p, "pool_members_pkey"))
            rc = ks_err_set(err, KS_EINVAL, "host '%s' listed twice in pool '%s'", host_ids[i],
                            name);
        else if (state_is(p, "23503"))
            rc = ks_err_set(err, KS_ENOTFOUND, "host '%s' not found", host_ids[i]);
    }
    ks_code rc2 = exec_simple(p,
                              rc == KS_OK ? "RELEASE SAVEPOINT ks_members"
                                          : "ROLLBACK TO SAVEPOINT ks_members; "
                                            "RELEASE SAVEPOINT ks_members",
                              "pool members", rc == KS_OK ? err : NULL);
    return rc != KS_OK ? rc : rc2;
}

static ks_code pg_pool_members_list(ks_store *s, const char *pool, ks_store_member_cb cb, void *ctx,
                                    ks_err *err)
{
    PGresult *r = NULL;
    pgp a = {0};
    p_text(&a, pool);
    ks_code rc = run(&r, pg(s), ST_MEMBERS_LIST, &a, "list pool members", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++)
        if (cb(ctx, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1)) != 0)
            break;
    PQclear(r);
    return KS_OK;
}

/* ---- policies, events, capacity ----------------------------------------- */

/* Runs an INSERT ... RETURNING id; *out_id may be NULL. */
static ks_code insert_returning_id(int64_t *out_id, pg_store *p, int id, const pgp *a,
                                   const char *what, ks_err *err)
{
    PGresult *r = NULL;
    ks_code rc = run(&r, p, id, a, what, err);
    if (rc != KS_OK)
        return rc;
    if (out_id)
        *out_id = PQntuples(r) ? g_i64(r, 0, 0) : 0;
    PQclear(r);
    return KS_OK;
}

static ks_code pg_policy_add(int64_t *out_id, ks_store *s, ks_store_policy_kind kind,
                             const char *features_json, const char *reason, uint64_t now_us,
                             ks_err *err)
{
    pgp a = {0};
    p_text(&a, ks_store_policy_kind_to_str(kind));
    p_text(&a, features_json);
    p_text(&a, reason ? reason : "");
    p_u64(&a, now_us);
    return insert_returning_id(out_id, pg(s), ST_POLICY_INSERT, &a, "store policy", err);
}

static ks_code pg_policy_list(ks_store *s, ks_store_policy_cb cb, void *ctx, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_policy_row pr;
    ks_code rc = run(&r, pg(s), ST_POLICY_LIST, NULL, "list policies", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        pr.id = g_i64(r, i, 0);
        int kind = ks_store_policy_kind_from_str(g_str(r, i, 1));
        pr.kind = (uint8_t)(kind < 0 ? 0 : kind);
        pr.features_json = g_str(r, i, 2);
        g_text(pr.reason, sizeof(pr.reason), r, i, 3);
        pr.created_us = g_u64(r, i, 4);
        if (cb(ctx, &pr) != 0)
            break;
    }
    PQclear(r);
    return KS_OK;
}

static ks_code delete_by_id(pg_store *p, int stmt_id, int64_t id, const char *what, ks_err *err)
{
    PGresult *r = NULL;
    pgp a = {0};
    p_i64(&a, id);
    ks_code rc = run(&r, p, stmt_id, &a, what, err);
    if (rc != KS_OK)
        return rc;
    int64_t n = affected(r);
    PQclear(r);
    return n ? KS_OK : ks_err_set(err, KS_ENOTFOUND, "%s %lld not found", what, (long long)id);
}

static ks_code pg_policy_delete(ks_store *s, int64_t id, ks_err *err)
{
    return delete_by_id(pg(s), ST_POLICY_DELETE, id, "policy", err);
}

static ks_code pg_event_append(int64_t *out_id, ks_store *s, uint64_t time_us, const char *type,
                               const char *host_id, const char *vm, const char *detail_json,
                               ks_err *err)
{
    pgp a = {0};
    p_u64(&a, time_us);
    p_text(&a, type);
    p_opt(&a, host_id);
    p_opt(&a, vm);
    p_text(&a, detail_json);
    return insert_returning_id(out_id, pg(s), ST_EVENT_INSERT, &a, "store event", err);
}

static ks_code pg_event_list(ks_store *s, int64_t since_id, uint32_t limit, ks_store_event_cb cb,
                             void *ctx, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_event_row e;
    pgp a = {0};
    p_i64(&a, since_id);
    p_limit(&a, limit);
    ks_code rc = run(&r, pg(s), ST_EVENT_LIST, &a, "list events", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        e.id = g_i64(r, i, 0);
        e.time_us = g_u64(r, i, 1);
        g_text(e.type, sizeof(e.type), r, i, 2);
        g_text(e.host_id, sizeof(e.host_id), r, i, 3);
        g_text(e.vm, sizeof(e.vm), r, i, 4);
        e.detail_json = g_str(r, i, 5);
        if (cb(ctx, &e) != 0)
            break;
    }
    PQclear(r);
    return KS_OK;
}

static ks_code delete_before(uint64_t *out_n, pg_store *p, int stmt_id, uint64_t before_us,
                             const char *what, ks_err *err)
{
    PGresult *r = NULL;
    pgp a = {0};
    p_u64(&a, before_us);
    ks_code rc = run(&r, p, stmt_id, &a, what, err);
    if (rc != KS_OK)
        return rc;
    if (out_n)
        *out_n = (uint64_t)affected(r);
    PQclear(r);
    return KS_OK;
}

static ks_code pg_event_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err)
{
    return delete_before(out_n, pg(s), ST_EVENT_PRUNE, before_us, "prune events", err);
}

static ks_code pg_capacity_insert(int64_t *out_id, ks_store *s, const ks_store_capacity_row *row,
                                  ks_err *err)
{
    pgp a = {0};
    p_u64(&a, row->time_us);
    p_text(&a, row->scope);
    p_u64(&a, row->total);
    p_u64(&a, row->allocated);
    p_u64(&a, row->free);
    p_u64(&a, row->degraded_usable);
    p_u64(&a, row->reclaimed);
    p_u64(&a, row->stranded);
    p_u64(&a, row->quarantined);
    return insert_returning_id(out_id, pg(s), ST_CAP_INSERT, &a, "store capacity snapshot", err);
}

static ks_code pg_capacity_list(ks_store *s, const char *scope, uint64_t since_us, uint32_t limit,
                                ks_store_capacity_cb cb, void *ctx, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_capacity_row c;
    pgp a = {0};
    if (scope)
        p_text(&a, scope);
    p_u64(&a, since_us);
    p_limit(&a, limit);
    ks_code rc =
        run(&r, pg(s), scope ? ST_CAP_LIST_SCOPE : ST_CAP_LIST_ALL, &a, "list capacity", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        c.id = g_i64(r, i, 0);
        c.time_us = g_u64(r, i, 1);
        g_text(c.scope, sizeof(c.scope), r, i, 2);
        c.total = g_u64(r, i, 3);
        c.allocated = g_u64(r, i, 4);
        c.free = g_u64(r, i, 5);
        c.degraded_usable = g_u64(r, i, 6);
        c.reclaimed = g_u64(r, i, 7);
        c.stranded = g_u64(r, i, 8);
        c.quarantined = g_u64(r, i, 9);
        if (cb(ctx, &c) != 0)
            break;
    }
    PQclear(r);
    return KS_OK;
}

static ks_code pg_capacity_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err)
{
    return delete_before(out_n, pg(s), ST_CAP_PRUNE, before_us, "prune capacity", err);
}

/* ---- idempotency, tokens ------------------------------------------------ */

static ks_code pg_idem_get(ks_store_idem_row *out, ks_store *s, const char *key, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_idem_row row;
    memset(&row, 0, sizeof(row));
    pgp a = {0};
    p_text(&a, key);
    ks_code rc = run(&r, pg(s), ST_IDEM_GET, &a, "read idempotency key", err);
    if (rc != KS_OK)
        return rc;
    if (PQntuples(r) == 0) {
        rc = ks_err_set(err, KS_ENOTFOUND, "idempotency key not found");
        goto done;
    }
    g_text(row.key, sizeof(row.key), r, 0, 0);
    g_text(row.request_hash, sizeof(row.request_hash), r, 0, 1);
    row.status = (int32_t)g_i64(r, 0, 2);
    row.created_us = g_u64(r, 0, 4);
    rc = g_dup(&row.response_json, r, 0, 3, err);
    if (rc != KS_OK)
        goto done;
    *out = row;
    row.response_json = NULL;
done:
    PQclear(r);
    ks_store_idem_row_destroy(&row);
    return rc;
}

static ks_code pg_idem_put(ks_store *s, const char *key, const char *request_hash, int32_t status,
                           const char *response_json, uint64_t now_us, ks_err *err)
{
    PGresult *r = NULL;
    pgp a = {0};
    p_text(&a, key);
    p_text(&a, request_hash);
    p_i64(&a, status);
    p_text(&a, response_json);
    p_u64(&a, now_us);
    ks_code rc = run(&r, pg(s), ST_IDEM_INSERT, &a, "store idempotency key", err);
    if (rc != KS_OK)
        return rc;
    int64_t n = affected(r);
    PQclear(r);
    return n ? KS_OK : ks_err_set(err, KS_EEXIST, "idempotency key already stored");
}

static ks_code pg_idem_expire(uint64_t *out_n, ks_store *s, uint64_t older_than_us, ks_err *err)
{
    return delete_before(out_n, pg(s), ST_IDEM_EXPIRE, older_than_us, "expire idempotency keys",
                         err);
}

static ks_code pg_token_add(int64_t *out_id, ks_store *s, const uint8_t *hash, size_t hash_len,
                            const char *role, const char *host_id, const char *description,
                            uint64_t now_us, ks_err *err)
{
    PGresult *r = NULL;
    pgp a = {0};
    p_blob(&a, hash, hash_len);
    p_text(&a, role);
    p_text(&a, host_id ? host_id : "");
    p_text(&a, description ? description : "");
    p_u64(&a, now_us);
    ks_code rc = run(&r, pg(s), ST_TOKEN_INSERT, &a, "store token", err);
    if (rc != KS_OK)
        return rc;
    bool added = PQntuples(r) > 0;
    if (added && out_id)
        *out_id = g_i64(r, 0, 0);
    PQclear(r);
    return added ? KS_OK : ks_err_set(err, KS_EEXIST, "token already exists");
}

static void token_row_read(ks_store_token_row *t, const PGresult *r, int i)
{
    t->id = g_i64(r, i, 0);
    memset(t->hash, 0, sizeof(t->hash));
    long n = g_bytea(t->hash, sizeof(t->hash), r, i, 1);
    t->hash_len = n < 0 ? 0 : (uint32_t)n;
    g_text(t->role, sizeof(t->role), r, i, 2);
    g_text(t->host_id, sizeof(t->host_id), r, i, 3);
    g_text(t->description, sizeof(t->description), r, i, 4);
    t->created_us = g_u64(r, i, 5);
}

static ks_code pg_token_find(ks_store_token_row *out, ks_store *s, const uint8_t *hash,
                             size_t hash_len, ks_err *err)
{
    PGresult *r = NULL;
    pgp a = {0};
    p_blob(&a, hash, hash_len);
    ks_code rc = run(&r, pg(s), ST_TOKEN_FIND, &a, "read token", err);
    if (rc != KS_OK)
        return rc;
    if (PQntuples(r) > 0)
        token_row_read(out, r, 0);
    else
        rc = ks_err_set(err, KS_ENOTFOUND, "token not found");
    PQclear(r);
    return rc;
}

static ks_code pg_token_list(ks_store *s, ks_store_token_cb cb, void *ctx, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_token_row t;
    ks_code rc = run(&r, pg(s), ST_TOKEN_LIST, NULL, "list tokens", err);
    if (rc != KS_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        token_row_read(&t, r, i);
        if (cb(ctx, &t) != 0)
            break;
    }
    PQclear(r);
    return KS_OK;
}

static ks_code pg_token_delete(ks_store *s, int64_t id, ks_err *err)
{
    return delete_by_id(pg(s), ST_TOKEN_DELETE, id, "token", err);
}

/* ---- change feed, leadership -------------------------------------------- */

static ks_code pg_change_append(ks_store *s, ks_store_change_kind kind, const char *key,
                                const char *host_id, ks_err *err)
{
    pgp a = {0};
    p_u64(&a, ks_store__wall_us());
    p_text(&a, ks_store__change_kind_str(kind));
    p_text(&a, key);
    p_text(&a, host_id);
    return run(NULL, pg(s), ST_CHANGE_INSERT, &a, "record change", err);
}

static ks_code pg_changes_cursor(int64_t *out, ks_store *s, ks_err *err)
{
    PGresult *r = NULL;
    ks_code rc = run(&r, pg(s), ST_CHANGES_CURSOR, NULL, "read change cursor", err);
    if (rc != KS_OK)
        return rc;
    *out = g_i64(r, 0, 0);
    PQclear(r);
    return KS_OK;
}

static ks_code pg_changes_since(int64_t *next, ks_store *s, int64_t cursor, ks_store_change_cb cb,
                                void *ctx, ks_err *err)
{
    PGresult *r = NULL;
    ks_store_change_row c;
    pgp a = {0};
    p_i64(&a, cursor);
    ks_code rc = run(&r, pg(s), ST_CHANGES_SINCE, &a, "read changes", err);
    if (rc != KS_OK)
        return rc;
    int64_t horizon = PQntuples(r) ? g_i64(r, 0, 0) : cursor;
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetisnull(r, i, 1))
            continue; /* the LEFT JOIN's row when nothing is new */
        c.seq = g_i64(r, i, 1);
        int kind = ks_store__change_kind_parse(g_str(r, i, 2));
        c.kind = (uint8_t)(kind < 0 ? KS_STORE_CHANGE_HOST : kind);
        g_text(c.key, sizeof(c.key), r, i, 3);
        g_text(c.host_id, sizeof(c.host_id), r, i, 4);
        c.time_us = g_u64(r, i, 5);
        if (cb(ctx, &c) != 0)
            break;
    }
    PQclear(r);
    /* The horizon never goes back, but a cursor from elsewhere might be ahead. */
    *next = horizon > cursor ? horizon : cursor;
    return KS_OK;
}

static ks_code pg_changes_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err)
{
    return delete_before(out_n, pg(s), ST_CHANGES_PRUNE, before_us, "prune changes", err);
}

static ks_code pg_try_leader(bool *out, ks_store *s, ks_err *err)
{
    pg_store *p = pg(s);
    PGresult *r = NULL;
    if (p->leader) {
        /* Session locks live as long as the session: a round trip proves it.
         * A lost connection clears p->leader (pg_fail, session_setup). */
        ks_code rc = run(NULL, p, ST_PING, NULL, "check leadership", err);
        if (rc == KS_OK && p->leader) {
            *out = true;
            return KS_OK;
        }
        if (rc != KS_OK)
            return rc;
    }
    pgp a = {0};
    p_i64(&a, LEADER_KEY);
    ks_code rc = run(&r, p, ST_LEADER_TRY, &a, "try leadership", err);
    if (rc != KS_OK)
        return rc;
    p->leader = PQntuples(r) > 0 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    *out = p->leader;
    return KS_OK;
}

static ks_code pg_leader_release(ks_store *s, ks_err *err)
{
    pg_store *p = pg(s);
    if (!p->leader)
        return KS_OK;
    p->leader = false;
    if (PQstatus(p->c) != CONNECTION_OK)
        return KS_OK; /* the server released it with the session */
    pgp a = {0};
    p_i64(&a, LEADER_KEY);
    return run(NULL, p, ST_LEADER_UNLOCK, &a, "release leadership", err);
}

/* ---- raw rows (ks_store_copy) -------------------------------------------- */

/* Rows of one copy batch to the callback; *stop set when it asks to stop. */
static ks_code raw_rows(const PGresult *r, const ks_store__table *tb,
                        int (*cb)(void *ctx, const ks_store__val *v), void *ctx, bool *stop,
                        ks_err *err)
{
    int n = (int)strlen(tb->types);
    ks_store__val v[KS_STORE__MAX_COLS];
    char *text[KS_STORE__MAX_COLS];
    ks_code rc = KS_OK;
    memset(text, 0, sizeof(text));
    for (int i = 0; i < PQntuples(r) && rc == KS_OK && !*stop; i++) {
        for (int k = 0; k < n; k++) {
            memset(&v[k], 0, sizeof(v[k]));
            if (PQgetisnull(r, i, k))
                continue; /* KS_STORE__V_NULL */
            const uint8_t *b = (const uint8_t *)PQgetvalue(r, i, k);
            size_t len = (size_t)PQgetlength(r, i, k);
            if (tb->types[k] == 'I') {
                uint64_t x = 0; /* binary int8: big-endian */
                for (size_t j = 0; j < len && j < 8; j++)
                    x = x << 8 | b[j];
                v[k].type = KS_STORE__V_INT;
                v[k].i = (int64_t)x;
            } else if (tb->types[k] == 'B') {
                v[k].type = KS_STORE__V_BLOB;
                v[k].p = b;
                v[k].len = len;
            } else {
                /* Binary text is the bytes without a terminator: copy. */
                char *d = malloc(len + 1);
                if (!d) {
                    rc = ks_err_set(err, KS_ENOMEM, "out of memory copying %zu bytes", len);
                    break;
                }
                memcpy(d, b, len);
                d[len] = '\0';
                free(text[k]);
                text[k] = d;
                v[k].type = KS_STORE__V_TEXT;
                v[k].p = d;
                v[k].len = len;
            }
        }
        if (rc == KS_OK && cb(ctx, v) != 0)
            *stop = true;
    }
    for (int k = 0; k < n; k++)
        free(text[k]);
    return rc;
}

/* A binary cursor inside the snapshot transaction: the table is read in
 * batches, so a large events table never sits in memory whole. */
static ks_code pg_raw_scan(ks_store *s, int t, int (*cb)(void *ctx, const ks_store__val *v),
                           void *ctx, ks_err *err)
{
    pg_store *p = pg(s);
    const ks_store__table *tb = &ks_store__tables[t];
    char sql[600];
    snprintf(sql, sizeof(sql),
             "DECLARE ks_copy BINARY NO SCROLL CURSOR FOR SELECT %s FROM %s "
             "ORDER BY %s",
             tb->cols, tb->name, tb->order_by);
    ks_code rc = exec_simple(p, sql, "scan table", err);
    bool stop = false;
    while (rc == KS_OK && !stop) {
        PGresult *r = PQexec(p->c, "FETCH 5000 FROM ks_copy");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = pg_fail(p, r, "scan table", err);
        } else if (PQntuples(r) == 0) {
            stop = true;
        } else {
            rc = raw_rows(r, tb, cb, ctx, &stop, err);
        }
        PQclear(r);
    }
    ks_code rc2 = exec_simple(p, "CLOSE ks_copy", "scan table", rc == KS_OK ? err : NULL);
    return rc != KS_OK ? rc : rc2;
}

static ks_code pg_raw_insert(ks_store *s, int t, const ks_store__val *v, ks_err *err)
{
    pg_store *p = pg(s);
    const ks_store__table *tb = &ks_store__tables[t];
    int n = (int)strlen(tb->types);
    char name[16];
    snprintf(name, sizeof(name), "ksraw%d", t);
    if (!p->raw_prepared[t]) {
        char sql[768];
        int len = snprintf(sql, sizeof(sql), "INSERT INTO %s (%s) VALUES (", tb->name, tb->cols);
        for (int i = 0; i < n && len > 0 && (size_t)len < sizeof(sql); i++)
            len += snprintf(sql + len, sizeof(sql) - (size_t)len, "%s$%d", i ? ", " : "", i + 1);
        if (len > 0 && (size_t)len < sizeof(sql))
            len += snprintf(sql + len, sizeof(sql) - (size_t)len, ")");
        if (len <= 0 || (size_t)len >= sizeof(sql))
            return ks_err_set(err, KS_EINTERNAL, "insert statement for %s too long", tb->name);
        PGresult *r = PQprepare(p->c, name, sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            ks_code rc = pg_fail(p, r, "prepare copy insert", err);
            PQclear(r);
            return rc;
        }
        PQclear(r);
        p->raw_prepared[t] = true;
    }
    pgp a = {0};
    for (int i = 0; i < n; i++) {
        switch (v[i].type) {
        case KS_STORE__V_INT:
            p_i64(&a, v[i].i);
            break;
        case KS_STORE__V_TEXT:
            p_text(&a, v[i].p);
            break;
        case KS_STORE__V_BLOB:
            p_blob(&a, v[i].p, v[i].len);
            break;
        default:
            p_text(&a, NULL);
        }
    }
    PGresult *r = PQexecPrepared(p->c, name, a.n, a.v, a.len, a.fmt, 0);
    ks_code rc = KS_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = pg_fail(p, r, "insert copied row", err);
    PQclear(r);
    return rc;
}

/* Identity sequences restart past the copied ids. */
static ks_code pg_raw_fixup(ks_store *s, ks_err *err)
{
    pg_store *p = pg(s);
    for (int t = 0; t < KS_STORE__N_TABLES; t++) {
        const ks_store__table *tb = &ks_store__tables[t];
        if (!tb->id_col[0])
            continue;
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT setval(pg_get_serial_sequence('%s', '%s'), "
                 "coalesce(max(%s), 0) + 1, false) FROM %s",
                 tb->name, tb->id_col, tb->id_col, tb->name);
        ks_code rc = exec_simple(p, sql, "move id sequence", err);
        if (rc != KS_OK)
            return rc;
    }
    return KS_OK;
}

/* ---- operations table and open ------------------------------------------ */

static const ks_store_ops pg_ops = {
    .name = "postgresql",
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .savepoint = pg_savepoint,
    .backup = pg_backup,
    .integrity_check = pg_integrity_check,
    .query_int = pg_query_int,
    .host_put_report = pg_host_put_report,
    .host_get = pg_host_get,
    .host_heartbeat = pg_host_heartbeat,
    .host_set_state = pg_host_set_state,
    .host_delete = pg_host_delete,
    .host_list = pg_host_list,
    .host_count = pg_host_count,
    .cpu_scan = pg_cpu_scan,
    .cpu_get = pg_cpu_get,
    .defect_list = pg_defect_list,
    .vm_insert = pg_vm_insert,
    .vm_get = pg_vm_get,
    .vm_list = pg_vm_list,
    .vm_count = pg_vm_count,
    .vm_delete = pg_vm_delete,
    .vm_update_plan = pg_vm_update_plan,
    .vm_set_state = pg_vm_set_state,
    .vm_set_applied = pg_vm_set_applied,
    .vcpu_scan = pg_vcpu_scan,
    .pool_create = pg_pool_create,
    .pool_get = pg_pool_get,
    .pool_list = pg_pool_list,
    .pool_delete = pg_pool_delete,
    .pool_members_set = pg_pool_members_set,
    .pool_members_list = pg_pool_members_list,
    .policy_add = pg_policy_add,
    .policy_list = pg_policy_list,
    .policy_delete = pg_policy_delete,
    .event_append = pg_event_append,
    .event_list = pg_event_list,
    .event_prune = pg_event_prune,
    .capacity_insert = pg_capacity_insert,
    .capacity_list = pg_capacity_list,
    .capacity_prune = pg_capacity_prune,
    .idem_get = pg_idem_get,
    .idem_put = pg_idem_put,
    .idem_expire = pg_idem_expire,
    .token_add = pg_token_add,
    .token_find = pg_token_find,
    .token_list = pg_token_list,
    .token_delete = pg_token_delete,
    .change_append = pg_change_append,
    .changes_cursor = pg_changes_cursor,
    .changes_since = pg_changes_since,
    .changes_prune = pg_changes_prune,
    .try_leader = pg_try_leader,
    .leader_release = pg_leader_release,
    .begin_snapshot = pg_begin_snapshot,
    .raw_scan = pg_raw_scan,
    .raw_insert = pg_raw_insert,
    .raw_fixup = pg_raw_fixup,
};

/* The schema version: max(version) of schema_migrations, 0 when absent. */
static ks_code read_version(int64_t *out, pg_store *p, ks_err *err)
{
    PGresult *r = PQexec(p->c, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    ks_code rc = KS_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = pg_fail(p, r, "read schema version", err);
    } else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        *out = 0; /* an empty database */
    } else {
        PQclear(r);
        r = PQexec(p->c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = pg_fail(p, r, "read schema version", err);
        else
            *out = g_i64(r, 0, 0);
    }
    PQclear(r);
    return rc;
}

/*
 * Brings the schema to KS_STORE_SCHEMA_VERSION in one transaction.  Replicas
 * starting together serialise on a transaction advisory lock and re-read the
 * version under it, so each migration runs once.
 */
static ks_code migrate(pg_store *p, ks_err *err)
{
    int64_t v = 0;
    ks_code rc = read_version(&v, p, err);
    if (rc != KS_OK)
        return rc;
    if (v > KS_STORE_SCHEMA_VERSION)
        return ks_err_set(err, KS_EINVAL,
                          "database schema version %lld is newer than this kintsugid supports (%d)",
                          (long long)v, KS_STORE_SCHEMA_VERSION);
    if (p->base.read_only) {
        if (v < KS_STORE_SCHEMA_VERSION)
            return ks_err_set(err, KS_EINVAL,
                              "database has schema version %lld, expected %d (open it read-write "
                              "once to migrate)",
                              (long long)v, KS_STORE_SCHEMA_VERSION);
        return KS_OK;
    }
    if (v == KS_STORE_SCHEMA_VERSION)
        return KS_OK;
    char sql[200];
    snprintf(sql, sizeof(sql),
             "BEGIN; SELECT pg_advisory_xact_lock(%" PRId64 "); "
             "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, "
             "applied_us bigint NOT NULL)",
             MIGRATE_KEY);
    rc = exec_simple(p, sql, "begin migration", err);
    if (rc == KS_OK)
        rc = read_version(&v, p, err);
    if (rc == KS_OK && v > KS_STORE_SCHEMA_VERSION)
        rc = ks_err_set(err, KS_EINVAL,
                        "database schema version %lld is newer than this kintsugid supports (%d)",
                        (long long)v, KS_STORE_SCHEMA_VERSION);
    for (int64_t m = v; rc == KS_OK && m < KS_STORE_SCHEMA_VERSION; m++) {
        if (m >= KS_STORE__PG_N_MIGRATIONS) {
            rc = ks_err_set(err, KS_EINTERNAL, "no migration from schema version %lld",
                            (long long)m);
            break;
        }
        char what[64];
        snprintf(what, sizeof(what), "migration %lld", (long long)m + 1);
        rc = exec_simple(p, ks_store__pg_migrations[m], what, err);
        if (rc == KS_OK) {
            snprintf(sql, sizeof(sql),
                     "INSERT INTO schema_migrations (version, applied_us) VALUES (%lld, %" PRIu64
                     ")",
                     (long long)m + 1, ks_store__wall_us());
            rc = exec_simple(p, sql, "record migration", err);
        }
    }
    if (rc == KS_OK)
        rc = exec_simple(p, "COMMIT", "commit migration", err);
    if (rc != KS_OK && PQtransactionStatus(p->c) != PQTRANS_IDLE)
        exec_simple(p, "ROLLBACK", "rollback migration", NULL);
    return rc;
}

ks_code ks_store__pg_open(ks_store **out, const char *url, const ks_store_options *opts,
                          ks_err *err)
{
    pg_store *p = calloc(1, sizeof(*p));
    ks_code rc = KS_OK;
    if (!p)
        return ks_err_set(err, KS_ENOMEM, "out of memory opening the store");
    p->base.ops = &pg_ops;
    p->base.read_only = opts->read_only;
    p->lock_timeout_ms = opts->busy_timeout_ms;
    p->url = strdup(url);
    if (!p->url) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory opening the store");
        goto done;
    }
    /* A default connect timeout, which the URL's own connect_timeout overrides
     * (later keywords win; dbname expands to the URL's settings). */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {"10", "kintsugid", url, NULL};
    p->c = PQconnectdbParams(keys, vals, 1);
    if (!p->c) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory connecting to postgresql");
        goto done;
    }
    if (PQstatus(p->c) != CONNECTION_OK) {
        char msg[200];
        ks_store__copy(msg, sizeof(msg), PQerrorMessage(p->c));
        size_t n = strlen(msg);
        while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            msg[--n] = '\0';
        rc = ks_err_set(err, KS_EUNAVAIL, "connect to postgresql: %s", msg);
        goto done;
    }
    rc = session_setup(p, err);
    if (rc == KS_OK)
        rc = migrate(p, err);
    if (rc != KS_OK)
        goto done;
    *out = &p->base;
    p = NULL;
done:
    if (p)
        pg_close(&p->base);
    return rc;
}
