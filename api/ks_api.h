/*
 * ks_api.h - libks-api: the REST API of kintsugid (docs/api.md).
 *
 * One ks_api object glues the store (db/ks_store.h), the in-memory fleet index
 * (scheduler/ks_sched.h) and an HTTP transport (libmicrohttpd).  Every request,
 * from a socket or from ks_api_handle() (tests, fuzzing), goes through the same
 * router, auth check, error choke point and access log.
 *
 * Threading: the transport runs handlers on a thread per connection (or a
 * pool, options.threads).  The store and the
 * fleet index are not thread-safe; ks_api serialises every access to them with
 * one mutex (the "fleet lock").  Placement therefore cannot double-allocate.
 */
#ifndef KS_API_H
#define KS_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ks_err.h"

struct ks_store;
typedef struct ks_api ks_api;

#define KS_API_DEFAULT_PORT 7420

typedef struct ks_api_options {
    const char *listen_host;       /* numeric IPv4/IPv6 address, default "127.0.0.1" */
    uint16_t port;                 /* 0 = ephemeral, read back by ks_api_bound_port() */
    unsigned threads;              /* transport thread pool size; 0 = a thread per connection */
    unsigned connection_limit;     /* simultaneous connections */
    unsigned connection_timeout_s; /* idle connection timeout */
    size_t max_body_bytes;         /* request bodies above this get 413 */
    bool insecure_no_auth;         /* every request is admin (demo only) */
    const char *tls_cert_pem;      /* PEM text (not a path); both or neither */
    const char *tls_key_pem;
    uint64_t lost_after_us;        /* no heartbeat for this long -> host "lost"; 0 = never */
    uint64_t snapshot_interval_us; /* capacity snapshot period; 0 = never */
    unsigned rate_limit_rps;       /* per-principal request rate, 0 = unlimited */
    bool no_plan_push;             /* do not deliver plans to the hosts' agents */
    const char *agent_plan_token;  /* bearer token agents expect on plan pushes, NULL none */
} ks_api_options;

#define KS_API_OPTIONS_INIT                                                                        \
    {                                                                                              \
        .listen_host = "127.0.0.1", .port = KS_API_DEFAULT_PORT, .threads = 0,                     \
        .connection_limit = 256, .connection_timeout_s = 30, .max_body_bytes = 8u << 20,           \
        .lost_after_us = 60ull * 1000000, .snapshot_interval_us = 300ull * 1000000,                \
    }

/*
 * Creates the API over an open store (borrowed: it must outlive the ks_api) and
 * rebuilds the scheduler index from it (hosts' last reports, live VMs and
 * their plans, pools, feature bans).  Does not listen yet.
 * KS_EINVAL (bad options), KS_EIO (store), KS_ENOMEM.
 */
ks_code ks_api_new(ks_api **out, const ks_api_options *opts, struct ks_store *store, ks_err *err);

/* Binds and starts the transport threads, the background (lost hosts,
 * snapshots) thread and the plan pusher (ks_api_push.h: every committed plan
 * change is delivered to the host's agent_url).  KS_EIO when the address
 * cannot be bound, KS_EINVAL (TLS). */
ks_code ks_api_listen(ks_api *api, ks_err *err);
/* The port actually bound (useful with port 0), 0 before ks_api_listen(). */
uint16_t ks_api_bound_port(const ks_api *api);

/*
 * Graceful stop: stops accepting, lets requests in flight finish (at most
 * `grace_us`), then stops the transport and the background thread.  Idempotent.
 */
void ks_api_shutdown(ks_api *api, uint64_t grace_us);
/* NULL-safe; shuts down first if needed.  Does not close the store. */
void ks_api_free(ks_api *api);

/* A header or query parameter; both strings borrowed. */
typedef struct ks_api_kv {
    const char *name;
    const char *value;
} ks_api_kv;

/* One request as the router sees it (every pointer borrowed for the call). */
typedef struct ks_api_call {
    const char *method;
    const char *path;             /* without the query string */
    const ks_api_kv *query;       /* decoded query parameters */
    size_t n_query;
    const ks_api_kv *headers;     /* names compared case-insensitively */
    size_t n_headers;
    const char *body;
    size_t body_len;
    bool body_too_large;          /* the transport refused to buffer the body */
} ks_api_call;

/* The answer.  Owned by the caller; release with ks_api_response_destroy(). */
typedef struct ks_api_response {
    int status;
    char *body;                   /* malloc'ed, NUL-terminated, may be NULL */
    size_t body_len;
    char content_type[64];
    char etag[80];                /* "" when none; quoted */
    char location[256];
    char allow[64];               /* for 405 */
    char request_id[40];
    unsigned retry_after_s;       /* for 429/503, 0 = none */
} ks_api_response;

void ks_api_response_destroy(ks_api_response *resp);

/* Runs one request through the router (the transport calls the same code). */
void ks_api_handle_call(ks_api *api, const ks_api_call *call, ks_api_response *resp);

/*
 * Convenience for tests and fuzzing: `url` may carry a query string (it is
 * split and percent-decoded here); `headers` is n_headers name/value pairs.
 */
void ks_api_handle(ks_api *api, const char *method, const char *url, const ks_api_kv *headers,
                   size_t n_headers, const char *body, size_t body_len, ks_api_response *resp);

/*
 * Tokens: SHA-256 (GnuTLS) of a bearer token, the form the store keeps.
 * KS_EINTERNAL when hashing fails.
 */
ks_code ks_api_token_digest(uint8_t out[32], const char *token, ks_err *err);
/* A new random token "ks_" + 43 url-safe chars from getrandom(2).  KS_EIO. */
ks_code ks_api_token_generate(char out[48], ks_err *err);

#endif
