/*
 * ks_store_int.h - private to libks-db: the backend operations table behind
 * ks_store.h.  ks_store.c checks arguments and the transaction rule once, then
 * calls the backend through `ops`; a backend (ks_store_sqlite.c, later
 * PostgreSQL) embeds struct ks_store as the first member of its handle.
 *
 * Each operation has the public function's contract, with arguments already
 * validated (non-NULL where required, ids valid on writes, a transaction open
 * for writes).  The backend maintains `in_txn`.
 */
#ifndef KS_STORE_INT_H
#define KS_STORE_INT_H

#include "ks_store.h"

/* One column value of a raw row (copying between backends). */
typedef enum {
    KS_STORE__V_NULL,
    KS_STORE__V_INT,
    KS_STORE__V_TEXT,
    KS_STORE__V_BLOB
} ks_store__vtype;
typedef struct ks_store__val {
    ks_store__vtype type;
    int64_t i;     /* KS_STORE__V_INT */
    const void *p; /* TEXT (NUL-terminated) or BLOB bytes; borrowed */
    size_t len;    /* bytes of p (TEXT: without the NUL) */
} ks_store__val;

/* The tables copied by ks_store_copy, parents before children.  `types` has one
 * letter per column: 'I' integer, 'T' text, 'B' blob (any may be NULL in SQL);
 * `id_col` names an autoincrement id column ("" when none). */
typedef struct ks_store__table {
    const char *name;
    const char *cols;
    const char *types;
    const char *order_by;
    const char *id_col;
} ks_store__table;

#define KS_STORE__N_TABLES 13
#define KS_STORE__MAX_COLS 24
extern const ks_store__table ks_store__tables[KS_STORE__N_TABLES];

typedef struct ks_store_ops {
    const char *name;
    void (*close)(ks_store *s);
    ks_code (*begin)(ks_store *s, ks_err *err);
    ks_code (*commit)(ks_store *s, ks_err *err);
    ks_code (*rollback)(ks_store *s, ks_err *err);
    ks_code (*savepoint)(ks_store *s, ks_store_sp_action action, ks_err *err);
    ks_code (*set_commit_veto)(ks_store *s, bool (*veto)(void *ctx), void *ctx,
                               ks_err *err); /* NULL: unsupported */
    ks_code (*backup)(ks_store *s, const char *path, ks_err *err);
    ks_code (*integrity_check)(ks_store *s, ks_err *err);
    ks_code (*query_int)(int64_t *out, ks_store *s, const char *sql, ks_err *err);

    ks_code (*host_put_report)(ks_store *s, const ks_report *r, const char *report_json,
                               uint64_t now_us, ks_store_put_result *res, ks_err *err);
    ks_code (*host_get)(ks_store_host_row *out, ks_store *s, const char *id, bool with_report,
                        ks_err *err);
    ks_code (*host_heartbeat)(ks_store *s, const char *id, uint64_t now_us, ks_err *err);
    ks_code (*host_set_state)(ks_store *s, const char *id, ks_store_host_state state,
                              uint64_t now_us, ks_err *err);
    ks_code (*host_delete)(ks_store *s, const char *id, ks_err *err);
    ks_code (*host_list)(ks_store *s, const ks_store_host_filter *f, ks_store_host_cb cb, void *ctx,
                         ks_err *err);
    ks_code (*host_count)(uint64_t *out, ks_store *s, const ks_store_host_filter *f, ks_err *err);

    ks_code (*cpu_scan)(ks_store *s, const char *host_id, ks_store_cpu_cb cb, void *ctx,
                        ks_err *err);
    ks_code (*cpu_get)(ks_store_cpu_row *out, ks_store *s, const char *host_id, int32_t cpu_id,
                       ks_err *err);
    ks_code (*defect_list)(ks_store *s, const char *host_id, int32_t cpu_id, ks_store_defect_cb cb,
                           void *ctx, ks_err *err);

    ks_code (*vm_insert)(ks_store *s, const ks_store_vm_row *vm, const ks_store_vcpu_alloc *vcpus,
                         uint32_t n_vcpus, ks_err *err);
    ks_code (*vm_get)(ks_store_vm_row *out, ks_store *s, const char *name, bool with_json,
                      ks_err *err);
    ks_code (*vm_list)(ks_store *s, const ks_store_vm_filter *f, ks_store_vm_cb cb, void *ctx,
                       ks_err *err);
    ks_code (*vm_count)(uint64_t *out, ks_store *s, const ks_store_vm_filter *f, ks_err *err);
    ks_code (*vm_delete)(ks_store *s, const char *name, ks_err *err);
    ks_code (*vm_update_plan)(ks_store *s, const char *name, const char *host_id,
                              uint64_t generation, const char *plan_json,
                              const ks_store_vcpu_alloc *vcpus, uint32_t n_vcpus, uint64_t now_us,
                              ks_err *err);
    ks_code (*vm_set_state)(ks_store *s, const char *name, ks_store_vm_state state, uint64_t now_us,
                            ks_err *err);
    ks_code (*vm_set_applied)(ks_store *s, const char *name, uint64_t applied_generation,
                              const char *apply_error, uint64_t now_us, ks_err *err);
    ks_code (*vcpu_scan)(ks_store *s, const char *host_id, const char *vm_name, ks_store_vcpu_cb cb,
                         void *ctx, ks_err *err);

    ks_code (*pool_create)(ks_store *s, const char *name, const char *selector_json,
                           uint64_t now_us, ks_err *err);
    ks_code (*pool_get)(ks_store_pool_row *out, ks_store *s, const char *name, ks_err *err);
    ks_code (*pool_list)(ks_store *s, ks_store_pool_cb cb, void *ctx, ks_err *err);
    ks_code (*pool_delete)(ks_store *s, const char *name, ks_err *err);
    ks_code (*pool_members_set)(ks_store *s, const char *name, const char *const *host_ids,
                                uint32_t n, ks_err *err);
    ks_code (*pool_members_list)(ks_store *s, const char *pool, ks_store_member_cb cb, void *ctx,
                                 ks_err *err);

    ks_code (*policy_add)(int64_t *out_id, ks_store *s, ks_store_policy_kind kind,
                          const char *features_json, const char *reason, uint64_t now_us,
                          ks_err *err);
    ks_code (*policy_list)(ks_store *s, ks_store_policy_cb cb, void *ctx, ks_err *err);
    ks_code (*policy_delete)(ks_store *s, int64_t id, ks_err *err);

    ks_code (*event_append)(int64_t *out_id, ks_store *s, uint64_t time_us, const char *type,
                            const char *host_id, const char *vm, const char *detail_json,
                            ks_err *err);
    ks_code (*event_list)(ks_store *s, int64_t since_id, uint32_t limit, ks_store_event_cb cb,
                          void *ctx, ks_err *err);
    ks_code (*event_prune)(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err);

    ks_code (*capacity_insert)(int64_t *out_id, ks_store *s, const ks_store_capacity_row *row,
                               ks_err *err);
    ks_code (*capacity_list)(ks_store *s, const char *scope, uint64_t since_us, uint32_t limit,
                             ks_store_capacity_cb cb, void *ctx, ks_err *err);
    ks_code (*capacity_prune)(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err);

    ks_code (*idem_get)(ks_store_idem_row *out, ks_store *s, const char *key, ks_err *err);
    ks_code (*idem_put)(ks_store *s, const char *key, const char *request_hash, int32_t status,
                        const char *response_json, uint64_t now_us, ks_err *err);
    ks_code (*idem_expire)(uint64_t *out_n, ks_store *s, uint64_t older_than_us, ks_err *err);

    ks_code (*token_add)(int64_t *out_id, ks_store *s, const uint8_t *hash, size_t hash_len,
                         const char *role, const char *host_id, const char *description,
                         uint64_t now_us, ks_err *err);
    ks_code (*token_find)(ks_store_token_row *out, ks_store *s, const uint8_t *hash,
                          size_t hash_len, ks_err *err);
    ks_code (*token_list)(ks_store *s, ks_store_token_cb cb, void *ctx, ks_err *err);
    ks_code (*token_delete)(ks_store *s, int64_t id, ks_err *err);

    /* Change feed and leadership (ks_store.h).  change_append writes one row
     * inside the caller's transaction; the front end calls it after each
     * write that the feed covers. */
    ks_code (*change_append)(ks_store *s, ks_store_change_kind kind, const char *key,
                             const char *host_id, ks_err *err);
    ks_code (*changes_cursor)(int64_t *out, ks_store *s, ks_err *err);
    ks_code (*changes_since)(int64_t *next, ks_store *s, int64_t cursor, ks_store_change_cb cb,
                             void *ctx, ks_err *err);
    ks_code (*changes_prune)(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err);
    ks_code (*try_leader)(bool *out, ks_store *s, ks_err *err);
    ks_code (*leader_release)(ks_store *s, ks_err *err);

    /* Row-level copy (ks_store_copy, backups).  begin_snapshot opens a
     * read-only transaction seeing one point in time (sets in_txn; ended with
     * rollback).  raw_scan calls cb with every row of table t in key order;
     * raw_insert writes one row (inside a transaction); raw_fixup, after a
     * copy, moves id generators past the copied ids. */
    ks_code (*begin_snapshot)(ks_store *s, ks_err *err);
    ks_code (*raw_scan)(ks_store *s, int t, int (*cb)(void *ctx, const struct ks_store__val *v),
                        void *ctx, ks_err *err);
    ks_code (*raw_insert)(ks_store *s, int t, const struct ks_store__val *v, ks_err *err);
    ks_code (*raw_fixup)(ks_store *s, ks_err *err);
} ks_store_ops;

struct ks_store {
    const ks_store_ops *ops;
    bool in_txn; /* a transaction opened by ks_store_begin() is open */
    bool read_only;
    char *url;   /* as opened (ks_store_open_reader); set and freed by ks_store.c */
};

/* The SQLite backend: `path` is the file (URL prefix removed). */
ks_code ks_store__sqlite_open(ks_store **out, const char *path, const ks_store_options *opts,
                              ks_err *err);

/* The PostgreSQL backend (only in builds with libpq, KS_HAVE_LIBPQ): `url` is
 * the whole libpq connection URL. */
ks_code ks_store__pg_open(ks_store **out, const char *url, const ks_store_options *opts,
                          ks_err *err);

/* Wall clock in microseconds (change rows). */
uint64_t ks_store__wall_us(void);

/* The persistent name of a change kind ("host", ...); NULL when bad. */
const char *ks_store__change_kind_str(int k);
int ks_store__change_kind_parse(const char *s);

/*
 * Persistent encodings of enums (the database stores these strings, so they
 * are frozen here independently of display names elsewhere).  -1 when unknown.
 */
const char *ks_store__cpu_state_str(unsigned st);
int ks_store__cpu_state_parse(const char *s);
const char *ks_store__kind_class_str(int k); /* NULL for -1 */
int ks_store__kind_class_parse(const char *s);
const char *ks_store__defect_source_str(unsigned src);
int ks_store__defect_source_parse(const char *s);
const char *ks_store__arch_str(int arch); /* "" for -1 */
int ks_store__arch_parse(const char *s);

/* Copies src (may be NULL: "") into dst[cap], truncating at a character boundary
 * never needed for valid data; returns false when it did not fit. */
bool ks_store__copy(char *dst, size_t cap, const char *src);

#endif
