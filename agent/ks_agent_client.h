/*
 * ks_agent_client.h - the agent's HTTP client to kintsugid: sends the host
 * report (PUT /v1/hosts/{id}/report) and heartbeats (POST
 * /v1/hosts/{id}/heartbeat) with a bearer token, over one kept-alive
 * connection, and maps the server's answers into ks_err.
 *
 * Error mapping (the server's JSON error body {"error":{"code","message",
 * "field"}} supplies the code slug, message and field):
 *   connection refused / reset / timed out, 5xx, 429  -> KS_EUNAVAIL (retry with backoff)
 *   401 -> KS_EAUTH, 403 -> KS_EFORBIDDEN, 404 -> KS_ENOTFOUND,
 *   409 -> KS_ECONFLICT (or KS_EEXIST / KS_ENOCAPACITY from the slug),
 *   412 -> KS_EPRECOND, 413 -> KS_ETOOLARGE, other 4xx -> KS_EINVAL,
 *   a response body above the cap -> KS_ETOOLARGE.
 *
 * Threading: a client is used by one thread at a time (it owns one CURL easy
 * handle); separate clients may be used concurrently.
 */
#ifndef KS_AGENT_CLIENT_H
#define KS_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ks_err.h"

typedef struct ks_agent_client ks_agent_client;

typedef struct ks_agent_client_options {
    uint64_t connect_timeout_us;  /* TCP (+TLS) connect; 0 = 2 s */
    uint64_t timeout_us;          /* whole request; 0 = 10 s */
    size_t max_response_bytes;    /* response body cap; 0 = 1 MiB */
    const char *ca_file;          /* PEM bundle for https, NULL = system default */
} ks_agent_client_options;

#define KS_AGENT_CLIENT_OPTIONS_INIT {2000000, 10000000, 1u << 20, NULL}

/*
 * Creates a client for `server_url` ("http://127.0.0.1:8080", trailing '/'
 * ignored; http or https) authenticating with `token` (NULL: none).  The
 * strings are copied.  KS_EINVAL (bad URL or token), KS_ENOMEM.
 */
ks_code ks_agent_client_new(ks_agent_client **out, const char *server_url, const char *token,
                            const ks_agent_client_options *opts, ks_err *err);
void ks_agent_client_free(ks_agent_client *c); /* NULL-safe */

/*
 * PUTs a report (JSON text, schema 1) to /v1/hosts/{host.id}/report; the host
 * id is read from the document.  KS_EINVAL when the text is not a report with
 * a valid host id, otherwise the mapping above.
 */
ks_code ks_agent_client_put_report(ks_agent_client *c, const char *json, ks_err *err);

/* POSTs an empty heartbeat for `host_id`. */
ks_code ks_agent_client_heartbeat(ks_agent_client *c, const char *host_id, ks_err *err);

/*
 * POSTs a heartbeat carrying the agent's boot id and report generation (NULL /
 * 0 to omit); *report_required (may be NULL) says whether the server wants the
 * full report again (it holds another boot or an older generation).
 */
ks_code ks_agent_client_heartbeat_ex(ks_agent_client *c, const char *host_id,
                                     const char *boot_id, uint64_t generation,
                                     bool *report_required, ks_err *err);

/* HTTP status and body of the last response (0 / "" when none).  Borrowed: valid
 * until the next request on this client. */
int ks_agent_client_last_status(const ks_agent_client *c);
const char *ks_agent_client_last_body(const ks_agent_client *c);

/*
 * Exponential backoff with full jitter: a uniform random delay in
 * [0, min(max_us, base_us * 2^attempt)].  *rng is the caller's xorshift state
 * (any value; 0 is replaced by a fixed seed).  attempt 0 is the first retry.
 */
uint64_t ks_backoff_next_us(unsigned attempt, uint64_t base_us, uint64_t max_us, uint64_t *rng);

#endif
