/*
 * ks_api_router.c - the route table and the one request pipeline.
 *
 * ks_api_handle_call() is what every request goes through, from the socket
 * transport (ks_api_http.c) or in-process (ks_api_handle()): request id, route
 * match (404 unknown path, 405 + Allow for a known path with another method),
 * body limit (413), authentication (401), authorization (403), rate limit (429),
 * JSON content type (415), then the handler; finally one access-log line and the
 * metrics.  It never touches the store itself; handlers take the fleet lock.
 *
 * Threading: reentrant; shared state is the metrics (own mutex) and the request
 * counter (atomic).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ks_api_int.h"
#include "ks_log.h"

const ks_api_route ks_api_routes[] = {
    {"GET", "/healthz", ks_api_h_healthz, KS_ACCESS_PUBLIC, false},
    {"GET", "/readyz", ks_api_h_readyz, KS_ACCESS_PUBLIC, false},
    {"GET", "/metrics", ks_api_h_metrics, KS_ACCESS_READ, false},
    {"GET", "/openapi.json", ks_api_h_openapi, KS_ACCESS_PUBLIC, false},
    {"GET", "/v1/openapi.json", ks_api_h_openapi, KS_ACCESS_PUBLIC, false},
    {"PUT", "/v1/hosts/{id}/report", ks_api_h_host_report, KS_ACCESS_HOST_WRITE, true},
    {"POST", "/v1/hosts/{id}/heartbeat", ks_api_h_host_heartbeat, KS_ACCESS_HOST_WRITE, false},
    {"GET", "/v1/hosts", ks_api_h_hosts_list, KS_ACCESS_READ, false},
    {"GET", "/v1/hosts/{id}", ks_api_h_host_get, KS_ACCESS_HOST_READ, false},
    {"DELETE", "/v1/hosts/{id}", ks_api_h_host_delete, KS_ACCESS_ADMIN, false},
    {"GET", "/v1/hosts/{id}/cpus", ks_api_h_host_cpus, KS_ACCESS_HOST_READ, false},
    {"POST", "/v1/hosts/{id}/drain", ks_api_h_host_drain, KS_ACCESS_ADMIN, false},
    {"POST", "/v1/vms", ks_api_h_vm_create, KS_ACCESS_ADMIN, true},
    {"GET", "/v1/vms", ks_api_h_vms_list, KS_ACCESS_READ, false},
    {"GET", "/v1/vms/{name}", ks_api_h_vm_get, KS_ACCESS_READ, false},
    {"DELETE", "/v1/vms/{name}", ks_api_h_vm_delete, KS_ACCESS_ADMIN, false},
    {"POST", "/v1/pools", ks_api_h_pool_create, KS_ACCESS_ADMIN, true},
    {"GET", "/v1/pools", ks_api_h_pools_list, KS_ACCESS_READ, false},
    {"GET", "/v1/pools/{pool}", ks_api_h_pool_get, KS_ACCESS_READ, false},
    {"DELETE", "/v1/pools/{pool}", ks_api_h_pool_delete, KS_ACCESS_ADMIN, false},
    {"POST", "/v1/policies/feature-bans", ks_api_h_ban_create, KS_ACCESS_ADMIN, true},
    {"GET", "/v1/policies/feature-bans", ks_api_h_bans_list, KS_ACCESS_READ, false},
    {"DELETE", "/v1/policies/feature-bans/{ban}", ks_api_h_ban_delete, KS_ACCESS_ADMIN, false},
    {"GET", "/v1/capacity", ks_api_h_capacity, KS_ACCESS_READ, false},
    {"GET", "/v1/capacity/history", ks_api_h_capacity_history, KS_ACCESS_READ, false},
    {"GET", "/v1/reports/capacity", ks_api_h_capacity_report, KS_ACCESS_READ, false},
    {"GET", "/v1/events", ks_api_h_events, KS_ACCESS_READ, false},
};
const size_t ks_api_n_routes = sizeof(ks_api_routes) / sizeof(ks_api_routes[0]);

uint64_t ks_api_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t ks_api_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Matches `path` against `pattern`, capturing {params}.  Segments must be
 * non-empty; a trailing slash is not the same path. */
static bool route_match(const char *pattern, const char *path, ks_api_req *req)
{
    size_t n = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *pe = strchr(p, '}');
            const char *se = strchr(s, '/');
            if (!se)
                se = s + strlen(s);
            size_t len = (size_t)(se - s);
            if (len == 0 || len >= KS_API_PARAM_MAX || n >= KS_API_MAX_PARAMS)
                return false;
            if (req) {
                memcpy(req->params[n], s, len);
                req->params[n][len] = '\0';
            }
            n++;
            p = pe + 1;
            s = se;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    if (*p || *s)
        return false;
    if (req)
        req->n_params = n;
    return true;
}

const char *ks_api_header(const ks_api_req *req, const char *name)
{
    for (size_t i = 0; i < req->call->n_headers; i++)
        if (req->call->headers[i].name && strcasecmp(req->call->headers[i].name, name) == 0)
            return req->call->headers[i].value;
    return NULL;
}

const char *ks_api_query(const ks_api_req *req, const char *name)
{
    for (size_t i = 0; i < req->call->n_query; i++)
        if (req->call->query[i].name && strcmp(req->call->query[i].name, name) == 0)
            return req->call->query[i].value ? req->call->query[i].value : "";
    return NULL;
}

ks_code ks_api_body_json(json_t **out, const ks_api_req *req, ks_err *err)
{
    if (!req->call->body || req->call->body_len == 0)
        return ks_err_set(err, KS_EINVAL, "request body is empty; a JSON document is required");
    json_error_t je;
    json_t *doc = json_loadb(req->call->body, req->call->body_len,
                             JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        return ks_err_set(err, KS_EINVAL, "invalid JSON at line %d column %d: %s", je.line,
                          je.column, je.text);
    *out = doc;
    return KS_OK;
}

ks_code ks_api_query_limit(unsigned *out, const ks_api_req *req, unsigned def, unsigned max,
                           ks_err *err)
{
    const char *v = ks_api_query(req, "limit");
    if (!v) {
        *out = def;
        return KS_OK;
    }
    unsigned long n = 0;
    if (!*v || strlen(v) > 9)
        return ks_err_set_field(err, KS_EINVAL, "limit", "limit must be 1..%u", max);
    for (const char *c = v; *c; c++) {
        if (!isdigit((unsigned char)*c))
            return ks_err_set_field(err, KS_EINVAL, "limit", "limit must be 1..%u", max);
        n = n * 10 + (unsigned long)(*c - '0');
    }
    if (n < 1 || n > max)
        return ks_err_set_field(err, KS_EINVAL, "limit", "limit must be 1..%u", max);
    *out = (unsigned)n;
    return KS_OK;
}

/* ---- cursors: base64url(key) so clients treat them as opaque ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *ks_api_cursor_encode(const char *key)
{
    size_t len = strlen(key);
    char *out = malloc(len * 4 / 3 + 5);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)key[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)(unsigned char)key[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)key[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = b64[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = b64[v & 63];
    }
    out[o] = '\0';
    return out;
}

ks_code ks_api_cursor_decode(char *out, size_t cap, const char *cursor, ks_err *err)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (const char *c = cursor; *c; c++) {
        const char *pos = strchr(b64, *c);
        if (!pos || !*c)
            return ks_err_set_field(err, KS_EINVAL, "cursor", "malformed cursor");
        acc = (acc << 6) | (uint32_t)(pos - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= cap)
                return ks_err_set_field(err, KS_EINVAL, "cursor", "malformed cursor");
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    if (o == 0 || memchr(out, '\0', o))
        return ks_err_set_field(err, KS_EINVAL, "cursor", "malformed cursor");
    return KS_OK;
}

/* ---- the pipeline ---- */

static bool is_json_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strlen("application/json");
    if (strncasecmp(ct, "application/json", n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

static void make_request_id(ks_api *api, const ks_api_call *call, char out[40])
{
    /* A client-supplied id is kept when it is short and harmless, so logs of both
     * sides can be joined; otherwise a process-unique one is made. */
    for (size_t i = 0; i < call->n_headers; i++) {
        if (!call->headers[i].name || strcasecmp(call->headers[i].name, "X-Request-Id") != 0)
            continue;
        const char *v = call->headers[i].value;
        size_t len = v ? strlen(v) : 0;
        bool ok = len > 0 && len < 40;
        for (size_t k = 0; ok && k < len; k++)
            ok = isalnum((unsigned char)v[k]) || v[k] == '-' || v[k] == '_' || v[k] == '.';
        if (ok) {
            memcpy(out, v, len + 1);
            return;
        }
    }
    uint64_t n = atomic_fetch_add(&api->next_request, 1);
    snprintf(out, 40, "%08llx-%06llx", (unsigned long long)(ks_api_now_us() / 1000000u) & 0xffffffffu,
             (unsigned long long)n & 0xffffffu);
}

/* Client text in a log line: control characters, quotes and backslashes become
 * '?' so one request is always one well-formed line; long values are cut. */
static void log_safe(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    for (; *in && o + 4 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        out[o++] = (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') ? '?' : (char)c;
    }
    if (*in)
        for (int k = 0; k < 3; k++)
            out[o++] = '.';
    out[o] = '\0';
}

void ks_api_handle_call(ks_api *api, const ks_api_call *call, ks_api_response *resp)
{
    uint64_t t0 = ks_api_mono_us();
    memset(resp, 0, sizeof(*resp));
    ks_api_req req = {.api = api, .call = call, .resp = resp};
    make_request_id(api, call, req.request_id);
    snprintf(resp->request_id, sizeof(resp->request_id), "%s", req.request_id);
    ks_err err = {0};
    size_t route_index = ks_api_n_routes;

    const char *path = call->path ? call->path : "";
    const char *method = call->method ? call->method : "";
    /* HEAD is GET without a body (the transport drops the body). */
    const char *match_method = strcmp(method, "HEAD") == 0 ? "GET" : method;
    bool path_known = false;
    char allow[64] = "";
    for (size_t i = 0; i < ks_api_n_routes; i++) {
        if (!route_match(ks_api_routes[i].pattern, path, NULL))
            continue;
        path_known = true;
        if (strcmp(ks_api_routes[i].method, match_method) == 0) {
            route_index = i;
            break;
        }
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof(allow) - used, "%s%s", used ? ", " : "",
                 ks_api_routes[i].method);
    }
    if (route_index == ks_api_n_routes) {
        if (path_known) {
            ks_err_set(&err, KS_API_EMETHOD, "method '%s' is not allowed on '%s'", method, path);
            snprintf(resp->allow, sizeof(resp->allow), "%s", allow);
        } else {
            ks_err_set(&err, KS_API_ENOROUTE, "no such path '%s'", path);
        }
        ks_api_send_error(&req, &err);
        goto done;
    }
    req.route = &ks_api_routes[route_index];
    route_match(req.route->pattern, path, &req);

    if (call->body_too_large || call->body_len > api->opts.max_body_bytes) {
        ks_err_set(&err, KS_ETOOLARGE, "request body exceeds the limit of %zu bytes",
                   api->opts.max_body_bytes);
        ks_api_send_error(&req, &err);
        goto done;
    }
    if (req.route->access != KS_ACCESS_PUBLIC) {
        if (ks_api_authenticate(&req, &err) != KS_OK || ks_api_authorize(&req, &err) != KS_OK ||
            ks_api_rate_check(api, &req, &err) != KS_OK) {
            ks_api_send_error(&req, &err);
            goto done;
        }
    }
    if (req.route->json_body && !is_json_type(ks_api_header(&req, "Content-Type"))) {
        ks_err_set(&err, KS_API_EMEDIATYPE, "Content-Type must be application/json");
        ks_api_send_error(&req, &err);
        goto done;
    }
    /* JSON text never holds a raw NUL (RFC 8259: control characters only
     * escaped, and NUL is no whitespace), but jansson takes one after a
     * number; the text stored as a C string would then end there.  Finding
     * fuzz api crash-2: a stored report cut short that no restart could load. */
    if (call->body_len && memchr(call->body, '\0', call->body_len)) {
        ks_err_set(&err, KS_EINVAL, "request body holds a NUL byte at offset %zu: not JSON text",
                   (size_t)((const char *)memchr(call->body, '\0', call->body_len) - call->body));
        ks_api_send_error(&req, &err);
        goto done;
    }
    req.route->handler(&req);
    if (resp->status == 0) {
        ks_err_set(&err, KS_EINTERNAL, "handler for '%s' produced no response",
                   req.route->pattern);
        ks_api_send_error(&req, &err);
    }
done:;
    uint64_t dur = ks_api_mono_us() - t0;
    ks_metrics_request(&api->metrics, route_index, resp->status, dur);
    if (ks_log_get_level() <= KS_LOG_INFO) {
        char safe_path[256], safe_method[16];
        log_safe(safe_path, sizeof(safe_path), path);
        log_safe(safe_method, sizeof(safe_method), method);
        ks_log(KS_LOG_INFO, "access method=%s path='%s' status=%d duration_us=%llu req=%s role=%s",
               safe_method, safe_path, resp->status, (unsigned long long)dur, req.request_id,
               ks_role_to_str(req.principal.role));
    }
}

/* ---- in-process entry point ---- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

size_t ks_api__unescape(char *s, bool plus_is_space)
{
    char *o = s, *start = s;
    for (; *s; s++) {
        int hi = *s == '%' ? hexval(s[1]) : -1, lo = hi >= 0 ? hexval(s[2]) : -1;
        if (lo >= 0 && (hi | lo) != 0) {
            *o++ = (char)(hi * 16 + lo);
            s += 2;
        } else if (*s == '+' && plus_is_space) {
            *o++ = ' ';
        } else {
            /* "%00" stays as it is: a NUL would silently cut the name short
             * ("vm%00x" must not address "vm"); left literal it is invalid. */
            *o++ = *s;
        }
    }
    *o = '\0';
    return (size_t)(o - start);
}

static void url_decode(char *s, bool plus_is_space) { ks_api__unescape(s, plus_is_space); }

void ks_api_handle(ks_api *api, const char *method, const char *url, const ks_api_kv *headers,
                   size_t n_headers, const char *body, size_t body_len, ks_api_response *resp)
{
    enum { MAX_Q = 32 };
    ks_api_kv query[MAX_Q];
    size_t n_query = 0;
    char *copy = strdup(url ? url : "");
    if (!copy) {
        memset(resp, 0, sizeof(*resp));
        resp->status = 500;
        return;
    }
    char *q = strchr(copy, '?');
    if (q) {
        *q++ = '\0';
        for (char *part = q, *next; part && n_query < MAX_Q; part = next) {
            next = strchr(part, '&');
            if (next)
                *next++ = '\0';
            if (!*part)
                continue;
            char *eq = strchr(part, '=');
            if (eq)
                *eq++ = '\0';
            url_decode(part, true);
            if (eq)
                url_decode(eq, true);
            query[n_query++] = (ks_api_kv){part, eq ? eq : ""};
        }
    }
    url_decode(copy, false);
    ks_api_call call = {.method = method, .path = copy, .query = query, .n_query = n_query,
                        .headers = headers, .n_headers = n_headers, .body = body,
                        .body_len = body_len};
    ks_api_handle_call(api, &call, resp);
    free(copy);
}
