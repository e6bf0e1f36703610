/*
 * ks_cli_http.h - kintsugictl's one way to talk to kintsugid: a libcurl easy
 * handle reused across calls (keep-alive), JSON in and out, and the server's
 * {"error":{...}} body turned into a ks_err whose message is what the user sees.
 */
#ifndef KS_CLI_HTTP_H
#define KS_CLI_HTTP_H

#include <jansson.h>

#include "ks_err.h"

typedef struct ks_cli_http ks_cli_http;

/* server: base URL ("http://127.0.0.1:7420"); token may be NULL.  KS_ENOMEM. */
ks_code ks_cli_http_new(ks_cli_http **out, const char *server, const char *token,
                        long timeout_ms, ks_err *err);
void ks_cli_http_free(ks_cli_http *h);

/*
 * Sends `method path` (path starts with "/v1/..." and is already escaped) with
 * an optional JSON body.  On a 2xx answer *out (may be NULL) receives the parsed
 * body (a new reference; JSON null for an empty body).  Otherwise returns the
 * code the server's slug maps to (KS_EUNAVAIL when the server cannot be
 * reached) with a one-line message; err->field carries the server's slug.
 * extra_header may be NULL ("If-Match: ...", "Idempotency-Key: ...").
 */
ks_code ks_cli_http_call(ks_cli_http *h, const char *method, const char *path, const json_t *body,
                         const char *extra_header, json_t **out, ks_err *err);

/* Appends `value` URL-escaped to buf (for path segments and query values).  KS_ENOMEM. */
ks_code ks_cli_http_escape(ks_cli_http *h, const char *value, char *buf, size_t cap, ks_err *err);

#endif
