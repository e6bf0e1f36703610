/*
 * ks_api_int.h - internals shared by the files of libks-api (not installed).
 *
 * A handler gets a ks_api_req: the call, the matched route and its path
 * parameters, the authenticated principal, and the response to fill.  It answers
 * with ks_api_send_json() or, for every failure, ks_api_send_error() - the one
 * choke point that maps a ks_code to an HTTP status and an error slug.
 */
#ifndef KS_API_INT_H
#define KS_API_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <jansson.h>

#include "ks_api.h"

/*
 * API-only error codes: statuses with no ks_code of their own.  They live far
 * above KS_CODE__COUNT so common/ can keep appending codes; they never leave the
 * process as numbers (clients see the slug).
 */
#define KS_API_EMEDIATYPE ((ks_code)1001)   /* 415 unsupported_media_type */
#define KS_API_EIDEMPOTENCY ((ks_code)1002) /* 422 idempotency_mismatch */
#define KS_API_ERATELIMIT ((ks_code)1003)   /* 429 rate_limited */
#define KS_API_EMETHOD ((ks_code)1004)      /* 405 method_not_allowed */
#define KS_API_ENOROUTE ((ks_code)1005)     /* 404 not_found (no such path) */

typedef enum ks_role {
    KS_ROLE_NONE,   /* unauthenticated */
    KS_ROLE_READER, /* GET only */
    KS_ROLE_AGENT,  /* its own host: report, heartbeat, read it */
    KS_ROLE_ADMIN,
    KS_ROLE__COUNT
} ks_role;

const char *ks_role_to_str(ks_role r);
int ks_role_from_str(const char *s); /* -1 when unknown */

typedef struct ks_principal {
    ks_role role;
    char host[64];  /* agent tokens: the one host they may write */
    char token_id[64];
} ks_principal;

/* Route access rules. */
typedef enum ks_route_access {
    KS_ACCESS_PUBLIC,     /* no token needed */
    KS_ACCESS_READ,       /* reader, admin (agent: 403 unless the handler allows) */
    KS_ACCESS_HOST_READ,  /* reader, admin, agent of the {id} host */
    KS_ACCESS_HOST_WRITE, /* admin, agent of the {id} host */
    KS_ACCESS_ADMIN,      /* admin only */
    KS_ACCESS__COUNT
} ks_route_access;

struct ks_api_req;
typedef void (*ks_api_handler)(struct ks_api_req *req);

typedef struct ks_api_route {
    const char *method;
    const char *pattern;  /* "/v1/hosts/{id}/report" */
    ks_api_handler handler;
    ks_route_access access;
    bool json_body;       /* the body must be application/json */
} ks_api_route;

extern const ks_api_route ks_api_routes[];
extern const size_t ks_api_n_routes;

#define KS_API_MAX_PARAMS 4
#define KS_API_PARAM_MAX 256

typedef struct ks_api_req {
    ks_api *api;
    const ks_api_call *call;
    const ks_api_route *route;
    size_t n_params;
    char params[KS_API_MAX_PARAMS][KS_API_PARAM_MAX];
    ks_principal principal;
    char request_id[40];
    ks_api_response *resp;
} ks_api_req;

/* ---- metrics (ks_api_metrics.c) ---- */
#define KS_METRICS_MAX_ROUTES 64
#define KS_METRICS_N_BUCKETS 12
typedef struct ks_metrics {
    pthread_mutex_t mu;
    /* requests[route][status class index] with a latency histogram per route */
    struct {
        uint64_t by_status[600];
        uint64_t buckets[KS_METRICS_N_BUCKETS + 1];
        double sum_s;
        uint64_t count;
    } route[KS_METRICS_MAX_ROUTES + 1]; /* last = unrouted */
    uint64_t placements_total, placements_failed;
    uint64_t place_buckets[KS_METRICS_N_BUCKETS + 1];
    double place_sum_s;
    uint64_t place_count;
} ks_metrics;

void ks_metrics_init(ks_metrics *m);
void ks_metrics_destroy(ks_metrics *m);
/* route_index = index into ks_api_routes, or ks_api_n_routes when unrouted. */
void ks_metrics_request(ks_metrics *m, size_t route_index, int status, uint64_t duration_us);
void ks_metrics_placement(ks_metrics *m, bool ok, uint64_t duration_us);
/* Appends the request/placement families in Prometheus text format to a jansson-free
 * growable string; returns a malloc'ed NUL-terminated text or NULL (ENOMEM). */
char *ks_metrics_format(ks_metrics *m, const char *extra);

/* ---- the API object (ks_api.c) ---- */
struct ks_api {
    ks_api_options opts;
    char listen_host[64];
    char *tls_cert, *tls_key;
    struct ks_store *store;
    struct ks_fleet *fleet;
    struct ks_api_pusher *pusher; /* NULL when plan push is off or not started */
    char *agent_plan_token;
    pthread_mutex_t lock;        /* the fleet lock: store + fleet */
    bool index_loaded;
    void *daemon;                /* struct MHD_Daemon * */
    uint16_t bound_port;
    int in_flight;               /* requests started, not completed (flight_mu) */
    pthread_mutex_t flight_mu;
    pthread_cond_t flight_cv;
    atomic_bool shutting_down;
    atomic_uint_fast64_t next_request;
    ks_metrics metrics;
    /* background thread */
    pthread_t bg_thread;
    bool bg_started;
    pthread_mutex_t bg_mu;
    pthread_cond_t bg_cv;
    bool bg_stop;
    uint64_t started_us;         /* wall clock at ks_api_new() */
    uint64_t last_snapshot_us;
    uint64_t last_expire_us;
    uint64_t last_sweep_us;
    uint64_t last_push_sweep_us; /* leader: last re-queue of undelivered plans */
    /* several replicas on one store (ks_api_replica.c) */
    bool replicated;             /* the store is shared (PostgreSQL): follow its change feed */
    bool leader;                 /* holds the store's leadership (singleton jobs) */
    int64_t change_cursor;       /* change feed position already applied to the index */
    /* group commit (ks_api_group.c), all under `lock` */
    struct ks_api_unit *group_head; /* units of the open transaction not yet committed */
    size_t group_units;
    uint64_t group_opened_us;       /* monotonic time the first unit joined */
    atomic_int group_writers;       /* writers announced, not yet in or out of a group */
    pthread_cond_t group_cv;        /* a group's outcome is known */
    uint64_t groups_committed, group_units_committed;
    /* rate limiter: small table of token buckets keyed by principal */
    pthread_mutex_t rl_mu;
    struct {
        char key[64];
        double tokens;
        uint64_t last_us;
    } rl[64];
};

/* ---- responses and errors (ks_api_error.c) ---- */
/* Maps the error to a status + slug and fills req->resp; 5xx messages are replaced by a
 * generic sentence and the real one is logged with the request id. */
void ks_api_send_error(ks_api_req *req, const ks_err *err);
/* Same, with a JSON "details" object (stolen reference, may be NULL). */
void ks_api_send_error_details(ks_api_req *req, const ks_err *err, json_t *details);
/* Serialises `doc` (stolen) as the response. */
void ks_api_send_json(ks_api_req *req, int status, json_t *doc);
/* Plain text body (copied). */
void ks_api_send_text(ks_api_req *req, int status, const char *content_type, const char *text,
                      size_t len);
int ks_api_status_of(ks_code code);
const char *ks_api_slug_of(ks_code code);

/* ---- request helpers (ks_api_router.c) ---- */
/* Percent-decodes in place and returns the new length; "%00" is kept literally
 * so a decoded path or value never contains a NUL. */
size_t ks_api__unescape(char *s, bool plus_is_space);
const char *ks_api_header(const ks_api_req *req, const char *name);
const char *ks_api_query(const ks_api_req *req, const char *name);
/* Parses the body as one JSON value.  KS_EINVAL with line/column. */
ks_code ks_api_body_json(json_t **out, const ks_api_req *req, ks_err *err);
/* Parses query "limit" (default def, 1..max).  KS_EINVAL. */
ks_code ks_api_query_limit(unsigned *out, const ks_api_req *req, unsigned def, unsigned max,
                           ks_err *err);
/* Strong ETag (quoted hex) of a JSON document: SHA-256 of its canonical dump. */
void ks_api_etag_of(char out[80], const json_t *doc);
/* The same for the canonical text of a document (what ks_api_etag_of hashes). */
void ks_api_etag_of_text(char out[80], const char *text);
/* Sends `doc` (stolen) as 200 with its ETag, or an empty 304 when the request's
 * If-None-Match names that ETag. */
void ks_api_send_json_etag(ks_api_req *req, json_t *doc);
/* If-Match check against the current ETag: KS_OK when absent, "*" or matching; else
 * KS_EPRECOND. */
ks_code ks_api_check_if_match(const ks_api_req *req, const char *etag, ks_err *err);
uint64_t ks_api_now_us(void);
uint64_t ks_api_mono_us(void);

/* Opaque cursors: base64url of a JSON array [sort key]. */
char *ks_api_cursor_encode(const char *key);
ks_code ks_api_cursor_decode(char *out, size_t cap, const char *cursor, ks_err *err);

/* ---- auth (ks_api_auth.c) ---- */
/* Resolves the Authorization header; KS_EAUTH when missing/invalid.  Takes the fleet lock. */
ks_code ks_api_authenticate(ks_api_req *req, ks_err *err);
/* Applies the route's access rule to req->principal.  KS_EFORBIDDEN / KS_EAUTH. */
ks_code ks_api_authorize(const ks_api_req *req, ks_err *err);
/* Per-principal token bucket; KS_API_ERATELIMIT when over. */
ks_code ks_api_rate_check(ks_api *api, const ks_api_req *req, ks_err *err);

/* ---- handlers (ks_api_*.c) ---- */
void ks_api_h_healthz(ks_api_req *req);
void ks_api_h_readyz(ks_api_req *req);
void ks_api_h_metrics(ks_api_req *req);
void ks_api_h_openapi(ks_api_req *req);

void ks_api_h_host_report(ks_api_req *req);
void ks_api_h_host_heartbeat(ks_api_req *req);
void ks_api_h_hosts_list(ks_api_req *req);
void ks_api_h_host_get(ks_api_req *req);
void ks_api_h_host_cpus(ks_api_req *req);
void ks_api_h_host_drain(ks_api_req *req);
void ks_api_h_host_delete(ks_api_req *req);

void ks_api_h_vm_create(ks_api_req *req);
void ks_api_h_vms_list(ks_api_req *req);
void ks_api_h_vm_get(ks_api_req *req);
void ks_api_h_vm_delete(ks_api_req *req);

void ks_api_h_pool_create(ks_api_req *req);
void ks_api_h_pools_list(ks_api_req *req);
void ks_api_h_pool_get(ks_api_req *req);
void ks_api_h_pool_delete(ks_api_req *req);

void ks_api_h_ban_create(ks_api_req *req);
void ks_api_h_bans_list(ks_api_req *req);
void ks_api_h_ban_delete(ks_api_req *req);

void ks_api_h_capacity(ks_api_req *req);
void ks_api_h_capacity_history(ks_api_req *req);
void ks_api_h_capacity_report(ks_api_req *req);
void ks_api_h_events(ks_api_req *req);

/* ---- background work (ks_api_hosts.c / ks_api_misc.c), called with the lock held ---- */
void ks_api__mark_lost_hosts(ks_api *api);
void ks_api__capacity_snapshot(ks_api *api);
/* Store -> fleet: one pool's members; all ban policies (lock held). */
ks_code ks_api__sync_pool(ks_api *api, const char *name, ks_err *err);
ks_code ks_api__sync_bans(ks_api *api, ks_err *err);

/* ---- several replicas on one store (ks_api_replica.c); api->lock held ---- */
/* Notes whether the store is shared and takes the change feed position; call
 * before loading the index so that no change falls in between. */
ks_code ks_api__changes_start(ks_api *api, ks_err *err);
/* Applies the other replicas' changes since the last call to the index. */
ks_code ks_api__sync_changes(ks_api *api, ks_err *err);
/* Loads the VMs of `host` the index does not know yet (after a lost race). */
ks_code ks_api__sync_host(ks_api *api, const char *host, ks_err *err);
/* Deletes change feed rows older than `older_than_us` (wall clock); a replica
 * further behind must restart to reload its index. */
void ks_api__prune_changes(ks_api *api, uint64_t older_than_us);
/* True when this replica runs the singleton jobs (always on SQLite). */
bool ks_api__is_leader(ks_api *api);
/* Placement attempts when another replica takes the chosen CPUs first. */
#define KS_API_PLACE_TRIES 8

/* ---- group commit (ks_api_group.c) ----
 *
 * VM creates and deletes ("units") that run while other units wait for a
 * commit share one store transaction, committed once for all of them: one
 * WAL append instead of one per request.  Each unit runs inside a savepoint,
 * so a unit that fails is undone alone.  A create reserves its CPUs in the
 * index before the commit (so the next unit cannot pick them) and the
 * reservation is withdrawn if the commit fails; a delete releases its CPUs
 * only after the commit.  A unit is answered only after its group committed.
 *
 * Who commits: the writer that joins when no other announced writer is still
 * on its way (api->group_writers == 0); the others wait.  So a lone request
 * commits at once, exactly as before, and groups grow with concurrency.  A
 * group is also committed by the unit that makes it 256 units or finds it
 * 5 ms old, so arrivals that never pause cannot hold it open.
 * Other writers (any ks_api__begin) first commit the open group.  Readers
 * holding the lock may see units of the open group before they commit.
 * With a shared store (replicas) there are no groups: each unit commits
 * alone, because another replica's conflict must fail only its own unit.
 */
typedef struct ks_api_unit {
    struct ks_api_unit *next;
    const char *reserved_vm; /* create: VM added to the index before the commit */
    bool done;
    ks_code rc;
    ks_err err;
} ks_api_unit;

/* Before taking the lock in a create or delete handler. */
void ks_api__unit_announce(ks_api *api);
/* Lock held.  The announced writer will not start a unit after all. */
void ks_api__unit_withdraw(ks_api *api);
/* Lock held.  Opens the unit: the shared transaction (begun if none is open)
 * and a savepoint.  On failure the unit is withdrawn. */
ks_code ks_api__unit_begin(ks_api *api, ks_err *err);
/* Lock held.  Ends the unit: rc != KS_OK undoes its writes and returns rc;
 * otherwise keeps them, joins the group and returns when the group committed
 * (KS_OK) or failed (its error in *err; u->reserved_vm left the index).  The
 * lock is released while waiting. */
ks_code ks_api__unit_end(ks_api *api, ks_api_unit *u, ks_code rc, ks_err *err);
/* Lock held: commits the open group now (no-op when none). */
void ks_api__group_flush(ks_api *api);
/* Lock held: ks_store_begin after committing the open group. */
ks_code ks_api__begin(ks_api *api, ks_err *err);

/* The OpenAPI document text (ks_api_openapi.c). */
extern const char ks_api_openapi_json[];

#endif
