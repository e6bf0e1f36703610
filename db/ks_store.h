/*
 * ks_store.h - the persistent store of kintsugid: hosts and their CPUs, VMs and
 * their vCPU allocations, pools, policies, events, capacity history,
 * idempotency keys and API tokens.
 *
 * The store is an interface: a ks_store is opened from a URL and carries a table
 * of operations, so that a PostgreSQL backend can be added later without
 * touching callers.  Today:
 *     "PATH" or "sqlite:PATH"   SQLite file (created when missing)
 *     "postgres://..." or "postgresql://..."   PostgreSQL through libpq (any
 *                               libpq URL, e.g. multi-host with
 *                               target_session_attrs=read-write); KS_EUNSUPPORTED
 *                               when this build has no libpq
 * No SQLite or libpq type appears here; only db/ includes sqlite3.h / libpq-fe.h.
 * The PostgreSQL backend (ks_store_pg.c) keeps every contract below; where it
 * differs (isolation, options, backup) its file header and docs/operations.md
 * say how.
 *
 * SQLite settings: WAL journal, foreign_keys=ON, busy_timeout (options),
 * synchronous=NORMAL by default.  Why NORMAL: in WAL mode a committed
 * transaction survives a crash of the process (the WAL is in the OS page cache),
 * and only an OS crash or power loss may roll back the last few commits - which
 * the agents repair by re-sending their reports.  Fleets that cannot afford to
 * lose a placement on power loss set ks_store_options.sync_full (synchronous=
 * FULL: one fsync of the WAL per commit).
 *
 * Schema versions: PRAGMA user_version.  Opening migrates an older database
 * forward (migration 1 creates everything); a database newer than this build
 * (user_version > KS_STORE_SCHEMA_VERSION) is refused with KS_EINVAL
 * "database schema version N is newer than this kintsugid supports (M)".
 *
 * Threading: a ks_store is NOT thread-safe.  One handle is used by one thread
 * at a time; the caller serialises with a mutex.  Readers that must not wait for
 * the writer may open a second handle with options.read_only (WAL lets it read
 * the last committed state while the writer writes).
 *
 * Transactions: every write function must be called between ks_store_begin()
 * and ks_store_commit()/ks_store_rollback(); outside one it returns
 * KS_EINTERNAL (a caller bug).  Read functions work in or out of a transaction.
 * When a write function fails, the transaction stays open: the caller rolls
 * back (nothing of it is kept).  ks_store_commit() failing rolls back itself.
 * On PostgreSQL a write refused by the database (a constraint, a lock
 * timeout, a lost connection) also aborts the transaction: later statements
 * fail until the rollback.  Refusals decided without a failed statement
 * leave it usable on both backends: an existing VM, pool, token or
 * idempotency key (KS_EEXIST), no row to update or delete (KS_ENOTFOUND),
 * stale generations, hosts or pools still in use, pool member errors.
 *
 * Conventions: functions return ks_code and take ks_err *err last (may be NULL).
 * An output parameter comes first and is written only on success.  Rows are
 * plain structs with fixed-size strings; a row filled by a _get/_find function
 * may own heap strings (the `char *..._json` fields): release them with the
 * row's _destroy function (NULL-safe, idempotent).  List functions call a
 * callback per row: `int cb(void *ctx, const ks_store_x_row *row)`; pointer
 * fields of a row passed to a callback are BORROWED (valid during the call
 * only, NULL when not loaded); a non-zero return stops the listing, which then
 * returns KS_OK.  A callback must not call into the same ks_store (the listing
 * statement is still running); collect what it needs and act afterwards.
 * Codes common to all functions: KS_EINVAL (bad argument), KS_EIO (storage
 * failure, with SQLite's message), KS_ENOMEM.
 *
 * Ids (host ids, VM, pool names) are checked with ks_id_valid() on writes.
 *
 * Schema (SQLite): see db/ks_store_schema.sql.h.  One deviation from the
 * indicative table list: the report document lives in host_reports(host_id,
 * report_json), not in hosts, so heartbeats rewrite a small row.
 */
#ifndef KS_STORE_H
#define KS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ks_bitset.h"
#include "ks_err.h"
#include "ks_report.h"

/* Schema version this build writes and understands (SQLite: PRAGMA user_version;
 * PostgreSQL: max(version) of schema_migrations).  2 added the change feed, 3
 * the per-host CPU allocation bitmaps of SQLite and partial pool indexes. */
#define KS_STORE_SCHEMA_VERSION 3

typedef struct ks_store ks_store;

/* ------------------------------------------------------------------------ */
/* Opening, closing, transactions, maintenance                              */
/* ------------------------------------------------------------------------ */

typedef struct ks_store_options {
    bool sync_full;           /* synchronous=FULL (power-loss durable commits); default NORMAL */
    uint32_t busy_timeout_ms; /* wait for a lock held by another connection; default 5000 */
    bool read_only;           /* open an existing, current database for reading only */
    /* SQLite: WAL checkpoints run on a background thread of the handle (its
     * own connection, PASSIVE, every 100 ms) instead of inside the COMMIT
     * that crosses 1000 WAL pages, so commits stay a WAL append and no
     * request pays for a checkpoint's copy and fsync.  When commits never
     * pause long enough for the WAL to drain, the commit after it passed
     * 256 MiB restarts it (a pause of that one commit); COMMIT checkpoints
     * inline only past 512 MiB (the thread fell behind).  Ignored by
     * PostgreSQL and read-only handles. */
    bool background_checkpoint;
    /* SQLite: write no change feed rows (ks_store_changes_since then sees
     * none).  Only kintsugid replicas read the feed, and replicas need
     * PostgreSQL; on SQLite each write paid two B-tree inserts for it.
     * Ignored by PostgreSQL. */
    bool skip_change_feed;
} ks_store_options;

#define KS_STORE_OPTIONS_INIT                                                                      \
    {                                                                                              \
        false, 5000, false, false, false                                                           \
    }

/*
 * Opens (creating and migrating when needed, unless read_only) the store at
 * `url`.  opts may be NULL (defaults).  On success *out is a new handle; close it
 * with ks_store_close().
 * KS_EINVAL: bad URL, newer schema version, read_only on a missing/old database.
 * KS_EUNSUPPORTED: a postgres:// URL in a build without libpq.  KS_EIO: cannot
 * open/migrate.  KS_EUNAVAIL: the PostgreSQL server cannot be reached.
 */
ks_code ks_store_open(ks_store **out, const char *url, const ks_store_options *opts, ks_err *err);

/* Same as ks_store_open() with read_only = true (a second handle for readers). */
ks_code ks_store_open_readonly(ks_store **out, const char *url, ks_err *err);

/* A second, read-only handle on the store s was opened on (same URL), for
 * another thread: a handle is not thread-safe.  KS_EUNSUPPORTED when there
 * is none to be had (an in-memory SQLite database).  Close it with
 * ks_store_close(). */
ks_code ks_store_open_reader(ks_store **out, const ks_store *s, ks_err *err);

/* NULL-safe.  Rolls back an open transaction, finalizes every statement. */
void ks_store_close(ks_store *s);

/* "sqlite" or "postgresql" (borrowed, static). */
const char *ks_store_backend(const ks_store *s);

/*
 * BEGIN IMMEDIATE: takes the write lock now, so a transaction never fails
 * half-way because another connection wrote first (waits busy_timeout_ms).
 * KS_EINTERNAL when a transaction is already open (no nesting).
 * KS_EUNAVAIL when the lock could not be had in time.  KS_EINVAL on a read-only
 * handle.
 */
ks_code ks_store_begin(ks_store *s, ks_err *err);
/* KS_EINTERNAL when no transaction is open.  On failure the transaction is rolled back. */
ks_code ks_store_commit(ks_store *s, ks_err *err);
/* Discards the open transaction; a no-op returning KS_OK when none is open. */
ks_code ks_store_rollback(ks_store *s, ks_err *err);
bool ks_store_in_txn(const ks_store *s);

/*
 * Savepoints inside the open transaction, for callers that put several
 * independent units of work in one transaction (kintsugid's group commit):
 * a unit that fails is undone alone.  One level only.
 *   KS_STORE_SP_MARK      starts the unit;
 *   KS_STORE_SP_KEEP      ends it, keeping its writes in the transaction;
 *   KS_STORE_SP_UNDO      ends it, discarding its writes.
 * KS_EINTERNAL without an open transaction.  KS_EIO when the whole
 * transaction was already lost (SQLite rolls back on I/O errors): the caller
 * must roll back.
 */
typedef enum { KS_STORE_SP_MARK, KS_STORE_SP_KEEP, KS_STORE_SP_UNDO } ks_store_sp_action;
ks_code ks_store_savepoint(ks_store *s, ks_store_sp_action action, ks_err *err);

/*
 * Fault injection for tests: while set, every COMMIT asks veto(ctx) and a
 * true answer turns it into a rollback, so ks_store_commit() fails (and
 * rolls back) as it would on a full disk.  NULL clears it.  KS_EUNSUPPORTED on
 * PostgreSQL.
 */
ks_code ks_store_set_commit_veto(ks_store *s, bool (*veto)(void *ctx), void *ctx, ks_err *err);

/*
 * Online backup of the whole database to a new file at `path` (replaced if it
 * exists), consistent as of one point in time, while the store stays usable.
 * Must not be called inside a transaction (KS_EINTERNAL).  KS_EIO.
 * PostgreSQL: the file is a SQLite database holding a copy of every row
 * (ks_store_copy under one snapshot), restorable with ks_store_copy /
 * `kintsugid migrate`; server-side backups (pg_basebackup, PITR) remain the
 * operator's primary tool.
 */
ks_code ks_store_backup(ks_store *s, const char *path, ks_err *err);

/* PRAGMA integrity_check + foreign_key_check.  KS_OK when clean, KS_EIO with the
 * first problem otherwise. */
ks_code ks_store_integrity_check(ks_store *s, ks_err *err);

/*
 * Runs a single-integer SELECT (e.g. "SELECT count(*) FROM cpus") and stores the
 * first column of the first row.  For tests, cross-checks and reports; never
 * build `sql` from user input.  KS_ENOTFOUND when no row, KS_EINVAL when the SQL
 * is invalid, not exactly one statement, not read-only, or the value is not an
 * integer (NULL included).
 */
ks_code ks_store_query_int(int64_t *out, ks_store *s, const char *sql, ks_err *err);

/* ------------------------------------------------------------------------ */
/* Hosts                                                                    */
/* ------------------------------------------------------------------------ */

typedef enum ks_store_host_state {
    KS_STORE_HOST_READY,    /* "ready": schedulable */
    KS_STORE_HOST_DRAINING, /* "draining": keeps its VMs, takes no new ones */
    KS_STORE_HOST_LOST,     /* "lost": heartbeats stopped */
    KS_STORE_HOST_STATE__COUNT
} ks_store_host_state;

const char *ks_store_host_state_to_str(ks_store_host_state st); /* "ready", ...; "?" when bad */
int ks_store_host_state_from_str(const char *s);                /* -1 when unknown */

typedef struct ks_store_host_row {
    char id[KS_ID_MAX];
    char hostname[KS_NAME_MAX];
    int32_t arch; /* ks_arch, -1 when unknown */
    char vendor[KS_NAME_MAX];
    char model_name[KS_NAME_MAX];
    uint8_t state; /* ks_store_host_state */
    char boot_id[KS_ID_MAX];
    uint64_t generation;        /* report generation stored */
    uint32_t n_cpus;            /* CPU rows of the host */
    uint64_t registered_us;     /* first report */
    uint64_t updated_us;        /* last change of the row (report, state) */
    uint64_t last_heartbeat_us; /* last heartbeat or accepted report */
    char *report_json;          /* the report as received; owned after ks_store_host_get
                                   with with_report, else NULL */
} ks_store_host_row;

/* Frees row->report_json and sets it NULL.  NULL-safe. */
void ks_store_host_row_destroy(ks_store_host_row *row);

typedef struct ks_store_put_result {
    bool created;            /* the host was not known before */
    bool unchanged;          /* same boot id and generation: nothing written */
    bool boot_changed;       /* a new boot id replaced the stored one */
    uint32_t n_cpus_added;   /* CPU rows inserted */
    uint32_t n_cpus_removed; /* CPU rows deleted (no longer reported) */
} ks_store_put_result;

/*
 * Stores a host report (write; inside a transaction).  `r` must be valid
 * (decoded by ks_report_from_json or built by the agent, CPUs sorted by id);
 * r->host.id is the host id.  report_json is the document as received (may be
 * NULL), kept for GET.
 *   - same boot_id, generation < stored:  KS_ECONFLICT
 *     "report generation 3 is older than stored 5"
 *   - same boot_id, same generation: nothing written, res->unchanged = true
 *   - otherwise (new host, new boot_id or higher generation): the host row is
 *     replaced (state: new host -> ready, lost -> ready, draining stays), CPU
 *     rows upserted, CPUs no longer reported deleted - unless a VM vCPU is
 *     allocated on one: KS_ECONFLICT "cpu 7 of host 'h1' is allocated to vm
 *     'web-1' but no longer reported" - and the CPU defects replaced.
 * `res` may be NULL.  A written report also sets last_heartbeat_us = now_us
 * (a replay does not: send a heartbeat for that).
 */
ks_code ks_store_host_put_report(ks_store *s, const ks_report *r, const char *report_json,
                                 uint64_t now_us, ks_store_put_result *res, ks_err *err);

/* Loads host `id`; report_json is loaded (owned by *out) only when with_report.
 * KS_ENOTFOUND. */
ks_code ks_store_host_get(ks_store_host_row *out, ks_store *s, const char *id, bool with_report,
                          ks_err *err);

/* last_heartbeat_us = now_us (write).  KS_ENOTFOUND. */
ks_code ks_store_host_heartbeat(ks_store *s, const char *id, uint64_t now_us, ks_err *err);

/* Sets the host state (write).  KS_ENOTFOUND. */
ks_code ks_store_host_set_state(ks_store *s, const char *id, ks_store_host_state state,
                                uint64_t now_us, ks_err *err);

/*
 * Deletes the host, its CPUs, defects and pool memberships (write).
 * KS_ENOTFOUND; KS_ECONFLICT "host 'h1' has 3 vms" while any VM row is on it.
 */
ks_code ks_store_host_delete(ks_store *s, const char *id, ks_err *err);

typedef struct ks_store_host_filter {
    int state;            /* ks_store_host_state, -1 = any */
    int arch;             /* ks_arch, -1 = any */
    const char *vendor;   /* exact vendor string, NULL = any */
    const char *after_id; /* keyset pagination: only ids > after_id; NULL = from the start */
    uint32_t limit;       /* at most this many rows, 0 = no limit */
} ks_store_host_filter;

#define KS_STORE_HOST_FILTER_INIT                                                                  \
    {                                                                                              \
        -1, -1, NULL, NULL, 0                                                                      \
    }

typedef int (*ks_store_host_cb)(void *ctx, const ks_store_host_row *row);

/* Hosts matching `f` (NULL = all) in ascending id order; report_json is NULL. */
ks_code ks_store_host_list(ks_store *s, const ks_store_host_filter *f, ks_store_host_cb cb,
                           void *ctx, ks_err *err);

/* Number of hosts matching f's state/arch/vendor (after_id and limit ignored). */
ks_code ks_store_host_count(uint64_t *out, ks_store *s, const ks_store_host_filter *f, ks_err *err);

/* ------------------------------------------------------------------------ */
/* CPUs and defects                                                         */
/* ------------------------------------------------------------------------ */

typedef struct ks_store_cpu_row {
    char host_id[KS_ID_MAX];
    int32_t cpu_id; /* OS logical CPU number */
    int32_t package, die, cluster, core, thread;
    int32_t numa_node;           /* -1 when unknown */
    int32_t l2_group, l3_group;  /* as in ks_cpu, -1 when none */
    int32_t kind_class;          /* ks_kind_class, -1 when the host is not hybrid-aware */
    char kind_name[KS_NAME_MAX]; /* "" when none */
    uint32_t base_mhz, max_mhz;
    uint8_t state; /* ks_cpu_state */
    bool reserved;
    ks_featset native, usable, defective;
} ks_store_cpu_row;

typedef int (*ks_store_cpu_cb)(void *ctx, const ks_store_cpu_row *row);

/* Copies a cpus row into *out: every member but the kind, which is set to -1
 * (a kind is an index into its report's kinds: the caller maps it). */
void ks_store_cpu_row_to_cpu(ks_cpu *out, const ks_store_cpu_row *row);

/*
 * Every CPU of host `host_id` (NULL = the whole fleet), ordered by host id then
 * cpu id, feature sets decoded.  This is how the scheduler rebuilds its index
 * at start: one sequential scan, no allocation per row.
 */
ks_code ks_store_cpu_scan(ks_store *s, const char *host_id, ks_store_cpu_cb cb, void *ctx,
                          ks_err *err);

/*
 * Every stored report, ordered by host id (as ks_store_cpu_scan), in one scan:
 * cb gets the host id and the report's text (NULL when none; borrowed for the
 * call, `len` bytes, NUL-terminated).  A non-zero return stops the scan.
 */
typedef int (*ks_store_report_cb)(void *ctx, const char *host_id, const char *report_json,
                                  size_t len);
ks_code ks_store_report_scan(ks_store *s, ks_store_report_cb cb, void *ctx, ks_err *err);

/* One CPU.  KS_ENOTFOUND. */
ks_code ks_store_cpu_get(ks_store_cpu_row *out, ks_store *s, const char *host_id, int32_t cpu_id,
                         ks_err *err);

typedef struct ks_store_defect_row {
    char host_id[KS_ID_MAX];
    int32_t cpu_id;
    uint16_t feature;               /* catalogue id, KS_FEATURE_NONE for a whole-CPU defect */
    char feature_name[KS_NAME_MAX]; /* canonical name, "" for a whole-CPU defect */
    uint8_t source;                 /* ks_defect_source */
    uint64_t time_us;
    char detail[KS_TEXT_MAX];
} ks_store_defect_row;

typedef int (*ks_store_defect_cb)(void *ctx, const ks_store_defect_row *row);

/* Defects of host_id (NULL = all hosts) and cpu_id (-1 = all CPUs), ordered by
 * host, cpu, time. */
ks_code ks_store_defect_list(ks_store *s, const char *host_id, int32_t cpu_id,
                             ks_store_defect_cb cb, void *ctx, ks_err *err);

/* ------------------------------------------------------------------------ */
/* VMs and vCPU allocations                                                 */
/* ------------------------------------------------------------------------ */

typedef enum ks_store_vm_state {
    KS_STORE_VM_RUNNING,         /* "running" */
    KS_STORE_VM_NEEDS_MIGRATION, /* "needs_migration": could not be re-planned on its host */
    KS_STORE_VM_FAILED,          /* "failed" */
    KS_STORE_VM_STATE__COUNT
} ks_store_vm_state;

const char *ks_store_vm_state_to_str(ks_store_vm_state st); /* "?" when bad */
int ks_store_vm_state_from_str(const char *s);              /* -1 when unknown */

typedef struct ks_store_vm_row {
    char name[KS_ID_MAX];
    char host_id[KS_ID_MAX];
    uint8_t state;                       /* ks_store_vm_state */
    uint64_t generation;                 /* plan generation */
    uint64_t applied_generation;         /* last generation the agent reported applied, 0 = none */
    char pool[KS_ID_MAX];                /* "" = none */
    char anti_affinity_group[KS_ID_MAX]; /* "" = none */
    char apply_error[KS_TEXT_MAX];       /* "" = none */
    uint32_t n_vcpus;                    /* allocation rows of the VM */
    uint64_t created_us, updated_us;
    char *request_json; /* ks_vm_request JSON; see the row rules at the top */
    char *plan_json;    /* ks_plan JSON */
} ks_store_vm_row;

/* Frees request_json and plan_json and sets them NULL.  NULL-safe. */
void ks_store_vm_row_destroy(ks_store_vm_row *row);

/* One vCPU allocation: vCPU `vcpu` of the VM pinned to CPU `cpu_id` of the VM's host. */
typedef struct ks_store_vcpu_alloc {
    int32_t vcpu;
    int32_t cpu_id;
} ks_store_vcpu_alloc;

/*
 * Records a placed VM (write): the vm row (name, host_id, state, generation,
 * applied_generation, pool, anti_affinity_group, apply_error, created_us,
 * updated_us, request_json, plan_json are taken from `vm`; n_vcpus is ignored)
 * and its n vCPU allocations on vm->host_id.
 *   KS_EEXIST    "vm 'web-1' already exists"
 *   KS_ECONFLICT "host cpu h1/7 is already allocated" (the store's own
 *                guard, checked in the same transaction: the last line of
 *                defence against double allocation)
 *   KS_ENOTFOUND "host 'h1' has no cpu 7" / unknown host
 *   KS_EINVAL    duplicate vcpu index
 * On error the caller rolls back (nothing of the VM is kept).
 */
ks_code ks_store_vm_insert(ks_store *s, const ks_store_vm_row *vm, const ks_store_vcpu_alloc *vcpus,
                           uint32_t n_vcpus, ks_err *err);

/* Loads VM `name`; request_json and plan_json are loaded (owned) when with_json.
 * KS_ENOTFOUND. */
ks_code ks_store_vm_get(ks_store_vm_row *out, ks_store *s, const char *name, bool with_json,
                        ks_err *err);

typedef struct ks_store_vm_filter {
    const char *host_id;    /* NULL = any */
    int state;              /* ks_store_vm_state, -1 = any */
    const char *pool;       /* NULL = any, "" = VMs in no pool */
    const char *after_name; /* keyset pagination: names > after_name; NULL = from the start */
    uint32_t limit;         /* 0 = no limit */
    bool with_json;         /* pass request_json/plan_json (borrowed) to the callback */
} ks_store_vm_filter;

#define KS_STORE_VM_FILTER_INIT                                                                    \
    {                                                                                              \
        NULL, -1, NULL, NULL, 0, false                                                             \
    }

typedef int (*ks_store_vm_cb)(void *ctx, const ks_store_vm_row *row);

/* VMs matching f (NULL = all) by ascending name. */
ks_code ks_store_vm_list(ks_store *s, const ks_store_vm_filter *f, ks_store_vm_cb cb, void *ctx,
                         ks_err *err);

/* Number of VMs matching f's host/state/pool. */
ks_code ks_store_vm_count(uint64_t *out, ks_store *s, const ks_store_vm_filter *f, ks_err *err);

/* Deletes the VM and its vCPU allocations (write).  KS_ENOTFOUND. */
ks_code ks_store_vm_delete(ks_store *s, const char *name, ks_err *err);

/*
 * Replaces the VM's plan (write): host_id (a migration may change it),
 * generation (must be > the stored one, else KS_ECONFLICT "plan generation 2 is
 * not newer than stored 4"), plan_json, and its vCPU allocations (old rows
 * deleted, the n new ones inserted on host_id; same errors as insert).
 * updated_us = now_us.  KS_ENOTFOUND.
 */
ks_code ks_store_vm_update_plan(ks_store *s, const char *name, const char *host_id,
                                uint64_t generation, const char *plan_json,
                                const ks_store_vcpu_alloc *vcpus, uint32_t n_vcpus, uint64_t now_us,
                                ks_err *err);

/* Sets the VM state (write).  KS_ENOTFOUND. */
ks_code ks_store_vm_set_state(ks_store *s, const char *name, ks_store_vm_state state,
                              uint64_t now_us, ks_err *err);

/* Records what the agent reported (write): applied_generation and apply_error
 * (NULL or "" = none).  KS_ENOTFOUND. */
ks_code ks_store_vm_set_applied(ks_store *s, const char *name, uint64_t applied_generation,
                                const char *apply_error, uint64_t now_us, ks_err *err);

typedef struct ks_store_vcpu_row {
    char vm_name[KS_ID_MAX];
    int32_t vcpu;
    char host_id[KS_ID_MAX];
    int32_t cpu_id;
} ks_store_vcpu_row;

typedef int (*ks_store_vcpu_cb)(void *ctx, const ks_store_vcpu_row *row);

/* Live vCPU allocations, filtered by host_id and/or vm_name (NULL = any);
 * ordered by host, cpu when vm_name is NULL, else by vcpu. */
ks_code ks_store_vcpu_scan(ks_store *s, const char *host_id, const char *vm_name,
                           ks_store_vcpu_cb cb, void *ctx, ks_err *err);

/* ------------------------------------------------------------------------ */
/* Pools                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct ks_store_pool_row {
    char name[KS_ID_MAX];
    char *selector_json; /* owned after ks_store_pool_get, borrowed in callbacks */
    uint32_t n_members;
    uint64_t created_us;
} ks_store_pool_row;

void ks_store_pool_row_destroy(ks_store_pool_row *row);

/* Creates pool `name` (write); selector_json may be NULL.  KS_EEXIST. */
ks_code ks_store_pool_create(ks_store *s, const char *name, const char *selector_json,
                             uint64_t now_us, ks_err *err);
/* KS_ENOTFOUND. */
ks_code ks_store_pool_get(ks_store_pool_row *out, ks_store *s, const char *name, ks_err *err);

typedef int (*ks_store_pool_cb)(void *ctx, const ks_store_pool_row *row);
/* All pools by name. */
ks_code ks_store_pool_list(ks_store *s, ks_store_pool_cb cb, void *ctx, ks_err *err);

/* Deletes the pool and its memberships (write).  KS_ENOTFOUND; KS_ECONFLICT
 * "pool 'p' has 2 vms" while VMs name it. */
ks_code ks_store_pool_delete(ks_store *s, const char *name, ks_err *err);

/* Replaces the members of pool `name` by the n hosts (write).  KS_ENOTFOUND for
 * an unknown pool or host; KS_EINVAL for a duplicate. */
ks_code ks_store_pool_members_set(ks_store *s, const char *name, const char *const *host_ids,
                                  uint32_t n, ks_err *err);

typedef int (*ks_store_member_cb)(void *ctx, const char *pool, const char *host_id);
/* Memberships of pool (NULL = all pools), ordered by pool then host. */
ks_code ks_store_pool_members_list(ks_store *s, const char *pool, ks_store_member_cb cb, void *ctx,
                                   ks_err *err);

/* ------------------------------------------------------------------------ */
/* Policies (fleet-wide feature bans)                                       */
/* ------------------------------------------------------------------------ */

typedef enum ks_store_policy_kind {
    KS_STORE_POLICY_FEATURE_BAN, /* "feature_ban" */
    KS_STORE_POLICY_KIND__COUNT
} ks_store_policy_kind;

const char *ks_store_policy_kind_to_str(ks_store_policy_kind k);
int ks_store_policy_kind_from_str(const char *s);

typedef struct ks_store_policy_row {
    int64_t id;
    uint8_t kind;              /* ks_store_policy_kind */
    const char *features_json; /* JSON array of feature names; borrowed (callback) */
    char reason[KS_TEXT_MAX];
    uint64_t created_us;
} ks_store_policy_row;

/* Adds a policy (write); *out_id gets its id (out_id may be NULL). */
ks_code ks_store_policy_add(int64_t *out_id, ks_store *s, ks_store_policy_kind kind,
                            const char *features_json, const char *reason, uint64_t now_us,
                            ks_err *err);
typedef int (*ks_store_policy_cb)(void *ctx, const ks_store_policy_row *row);
/* All policies by id. */
ks_code ks_store_policy_list(ks_store *s, ks_store_policy_cb cb, void *ctx, ks_err *err);
/* KS_ENOTFOUND. */
ks_code ks_store_policy_delete(ks_store *s, int64_t id, ks_err *err);

/* ------------------------------------------------------------------------ */
/* Events                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct ks_store_event_row {
    int64_t id; /* increasing, never reused */
    uint64_t time_us;
    char type[KS_NAME_MAX];  /* "host.registered", "vm.placed", ... */
    char host_id[KS_ID_MAX]; /* "" = none */
    char vm[KS_ID_MAX];      /* "" = none */
    const char *detail_json; /* borrowed (callback), NULL when none */
} ks_store_event_row;

/* Appends an event (write); host_id, vm, detail_json may be NULL.  *out_id (may
 * be NULL) gets its id. */
ks_code ks_store_event_append(int64_t *out_id, ks_store *s, uint64_t time_us, const char *type,
                              const char *host_id, const char *vm, const char *detail_json,
                              ks_err *err);
typedef int (*ks_store_event_cb)(void *ctx, const ks_store_event_row *row);
/* Events with id > since_id, ascending, at most limit (0 = no limit). */
ks_code ks_store_event_list(ks_store *s, int64_t since_id, uint32_t limit, ks_store_event_cb cb,
                            void *ctx, ks_err *err);
/* Deletes events older than before_us (write); *out_n (may be NULL) = rows deleted. */
ks_code ks_store_event_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err);

/* ------------------------------------------------------------------------ */
/* Capacity history                                                         */
/* ------------------------------------------------------------------------ */

typedef struct ks_store_capacity_row {
    int64_t id;
    uint64_t time_us;
    char scope[KS_NAME_MAX]; /* "fleet", "host:<id>", "pool:<name>" */
    uint64_t total, allocated, free, degraded_usable, reclaimed, stranded, quarantined;
} ks_store_capacity_row;

/* Inserts a snapshot (write); row->id is ignored, *out_id (may be NULL) gets it. */
ks_code ks_store_capacity_insert(int64_t *out_id, ks_store *s, const ks_store_capacity_row *row,
                                 ks_err *err);
typedef int (*ks_store_capacity_cb)(void *ctx, const ks_store_capacity_row *row);
/* Snapshots of `scope` (NULL = all) with time_us >= since_us, by time then id,
 * at most limit (0 = no limit). */
ks_code ks_store_capacity_list(ks_store *s, const char *scope, uint64_t since_us, uint32_t limit,
                               ks_store_capacity_cb cb, void *ctx, ks_err *err);
/* Deletes snapshots older than before_us (write). */
ks_code ks_store_capacity_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err);

/* ------------------------------------------------------------------------ */
/* Idempotency keys (POST replay)                                           */
/* ------------------------------------------------------------------------ */

typedef struct ks_store_idem_row {
    char key[KS_TEXT_MAX];          /* the Idempotency-Key (the caller may prefix a principal) */
    char request_hash[KS_NAME_MAX]; /* e.g. hex SHA-256 of method+path+body */
    int32_t status;                 /* HTTP status of the stored response */
    char *response_json;            /* owned after ks_store_idem_get */
    uint64_t created_us;
} ks_store_idem_row;

void ks_store_idem_row_destroy(ks_store_idem_row *row);

/* KS_ENOTFOUND. */
ks_code ks_store_idem_get(ks_store_idem_row *out, ks_store *s, const char *key, ks_err *err);
/* Stores a response (write).  KS_EEXIST when the key is already stored. */
ks_code ks_store_idem_put(ks_store *s, const char *key, const char *request_hash, int32_t status,
                          const char *response_json, uint64_t now_us, ks_err *err);
/* Deletes keys created before older_than_us (write); *out_n (may be NULL) = rows deleted. */
ks_code ks_store_idem_expire(uint64_t *out_n, ks_store *s, uint64_t older_than_us, ks_err *err);

/* ------------------------------------------------------------------------ */
/* API tokens (only hashes are stored)                                      */
/* ------------------------------------------------------------------------ */

#define KS_STORE_TOKEN_HASH_MAX 64

typedef struct ks_store_token_row {
    int64_t id;
    uint8_t hash[KS_STORE_TOKEN_HASH_MAX];
    uint32_t hash_len;
    char role[32];           /* "admin", "agent", "reader" (the API owns the meaning) */
    char host_id[KS_ID_MAX]; /* agent tokens: the only host it may act for; "" otherwise */
    char description[KS_TEXT_MAX];
    uint64_t created_us;
} ks_store_token_row;

/* Adds a token by its hash (1..KS_STORE_TOKEN_HASH_MAX bytes) (write); host_id and
 * description may be NULL.  KS_EEXIST for a known hash. */
ks_code ks_store_token_add(int64_t *out_id, ks_store *s, const uint8_t *hash, size_t hash_len,
                           const char *role, const char *host_id, const char *description,
                           uint64_t now_us, ks_err *err);
/* KS_ENOTFOUND. */
ks_code ks_store_token_find(ks_store_token_row *out, ks_store *s, const uint8_t *hash,
                            size_t hash_len, ks_err *err);
typedef int (*ks_store_token_cb)(void *ctx, const ks_store_token_row *row);
/* All tokens by id. */
ks_code ks_store_token_list(ks_store *s, ks_store_token_cb cb, void *ctx, ks_err *err);
/* KS_ENOTFOUND. */
ks_code ks_store_token_delete(ks_store *s, int64_t id, ks_err *err);

/* ------------------------------------------------------------------------ */
/* Several kintsugid replicas: change feed, leadership, copying a fleet     */
/* ------------------------------------------------------------------------ */

/*
 * Every write that changes what the scheduler's in-memory index holds also
 * records a change row in the same transaction (so a change is visible exactly
 * when its data is): hosts (report stored, state, delete), VMs (insert, plan,
 * state, delete), pools (create, delete, members) and policies (add, delete).
 * Heartbeats and applied-generation updates do not.  A replica polls the feed
 * and re-reads what each change names; re-reading is idempotent, so seeing a
 * change twice is harmless, and the feed never skips one.
 */
typedef enum ks_store_change_kind {
    KS_STORE_CHANGE_HOST,   /* "host": key = host id; re-read its row and CPUs */
    KS_STORE_CHANGE_VM,     /* "vm": key = VM name, host_id = its host ("" after a delete) */
    KS_STORE_CHANGE_POOL,   /* "pool": key = pool name */
    KS_STORE_CHANGE_POLICY, /* "policy": key = policy id in decimal */
    KS_STORE_CHANGE_KIND__COUNT
} ks_store_change_kind;

const char *ks_store_change_kind_to_str(ks_store_change_kind k); /* "?" when bad */

typedef struct ks_store_change_row {
    int64_t seq;  /* increasing per database; informative (order within a poll) */
    uint8_t kind; /* ks_store_change_kind */
    char key[KS_ID_MAX];
    char host_id[KS_ID_MAX];
    uint64_t time_us; /* wall clock of the writer */
} ks_store_change_row;

typedef int (*ks_store_change_cb)(void *ctx, const ks_store_change_row *row);

/*
 * The feed position now (*out; an opaque cursor, 0 = the beginning).  Take it
 * BEFORE loading the index from the tables: changes committed during the load
 * are then replayed by the next ks_store_changes_since, never missed.
 * Outside a transaction.
 */
ks_code ks_store_changes_cursor(int64_t *out, ks_store *s, ks_err *err);

/*
 * Calls cb for every change committed after `cursor` (a value from
 * ks_store_changes_cursor or a previous call), oldest first, and stores the new
 * cursor in *next (written also when cb stops the listing early: then the rest
 * of this batch is skipped, so stop only when giving up on the feed).  Never
 * skips a committed change; on PostgreSQL a change becomes visible once every
 * transaction older than it has finished (milliseconds for kintsugid's short
 * transactions).  Outside a transaction.
 */
ks_code ks_store_changes_since(int64_t *next, ks_store *s, int64_t cursor, ks_store_change_cb cb,
                               void *ctx, ks_err *err);

/* Deletes change rows older than before_us (write).  Replicas further behind
 * than that must reload their index.  *out_n (may be NULL) = rows deleted. */
ks_code ks_store_changes_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err);

/*
 * Leader election for singleton jobs (lost-host detection, capacity snapshots,
 * plan pushes): *out = true when this handle is the leader.  PostgreSQL: a
 * session advisory lock, taken when free and held until the handle is closed
 * or its connection is lost (then the next call answers false, and another
 * replica's next call true).  Call it before each round of leader work, since
 * leadership can be lost between calls.  SQLite: one process owns the file,
 * always true.  Outside a transaction.
 */
ks_code ks_store_try_leader(bool *out, ks_store *s, ks_err *err);

/* Gives up leadership (a no-op when not the leader).  Outside a transaction. */
ks_code ks_store_leader_release(ks_store *s, ks_err *err);

/*
 * Copies every row of `src` into `dst` (a fleet move, e.g. SQLite to
 * PostgreSQL), ids, times and states unchanged; the change feed is not copied.
 * `src` is read under one snapshot while it stays usable; `dst` must be empty
 * (no host, VM, pool, policy, event, token: KS_ECONFLICT otherwise) and is
 * written in one transaction, so a failed copy leaves it empty.  Neither store
 * may be in a transaction (KS_EINTERNAL).  *out_rows (may be NULL) = rows copied.
 */
ks_code ks_store_copy(uint64_t *out_rows, ks_store *dst, ks_store *src, ks_err *err);

#endif
