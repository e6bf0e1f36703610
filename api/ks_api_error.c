/*
 * ks_api_error.c - the error choke point of the REST API and the response setters.
 *
 * One table maps each ks_code (and the API-only codes of ks_api_int.h) to an HTTP
 * status and a stable slug; ks_api_send_error() is the only way an error reaches
 * a client, so every error body has the same shape:
 *   {"error":{"code":slug,"message":...,"field":...,"request_id":...,"details":...}}
 * Server-side failures (5xx other than 503) get a generic message; the real one is
 * logged here, once, with the request id.  Slugs are API: never rename.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_api_int.h"
#include "ks_log.h"

typedef struct status_entry {
    int status;
    const char *slug;
} status_entry;

static status_entry lookup(ks_code code)
{
    switch ((int)code) {
    case KS_OK: return (status_entry){200, "ok"};
    case KS_EINVAL: return (status_entry){400, ks_code_slug(KS_EINVAL)};
    case KS_EAUTH: return (status_entry){401, ks_code_slug(KS_EAUTH)};
    case KS_EFORBIDDEN: return (status_entry){403, ks_code_slug(KS_EFORBIDDEN)};
    case KS_ENOTFOUND: return (status_entry){404, ks_code_slug(KS_ENOTFOUND)};
    case KS_API_ENOROUTE: return (status_entry){404, ks_code_slug(KS_ENOTFOUND)};
    case KS_API_EMETHOD: return (status_entry){405, "method_not_allowed"};
    case KS_EEXIST: return (status_entry){409, ks_code_slug(KS_EEXIST)};
    case KS_ECONFLICT: return (status_entry){409, ks_code_slug(KS_ECONFLICT)};
    case KS_ENOCAPACITY: return (status_entry){409, ks_code_slug(KS_ENOCAPACITY)};
    case KS_EPRECOND: return (status_entry){412, ks_code_slug(KS_EPRECOND)};
    case KS_ETOOLARGE: return (status_entry){413, ks_code_slug(KS_ETOOLARGE)};
    case KS_API_EMEDIATYPE: return (status_entry){415, "unsupported_media_type"};
    case KS_API_EIDEMPOTENCY: return (status_entry){422, "idempotency_mismatch"};
    case KS_API_ERATELIMIT: return (status_entry){429, "rate_limited"};
    case KS_EUNSUPPORTED: return (status_entry){501, ks_code_slug(KS_EUNSUPPORTED)};
    case KS_EUNAVAIL: return (status_entry){503, ks_code_slug(KS_EUNAVAIL)};
    default: return (status_entry){500, ks_code_slug(KS_EINTERNAL)};
    }
}

int ks_api_status_of(ks_code code) { return lookup(code).status; }
const char *ks_api_slug_of(ks_code code) { return lookup(code).slug; }

void ks_api_send_json(ks_api_req *req, int status, json_t *doc)
{
    ks_api_response *r = req->resp;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (doc && !text) {
        /* Out of memory while serialising: say so without allocating again. */
        static const char oom[] = "{\"error\":{\"code\":\"out_of_memory\",\"message\":"
                                  "\"internal error\"}}";
        r->status = 500;
        r->body = strdup(oom);
        r->body_len = r->body ? strlen(r->body) : 0;
        snprintf(r->content_type, sizeof(r->content_type), "application/json");
        return;
    }
    r->status = status;
    r->body = text;
    r->body_len = text ? strlen(text) : 0;
    snprintf(r->content_type, sizeof(r->content_type), "application/json");
}

void ks_api_send_text(ks_api_req *req, int status, const char *content_type, const char *text,
                      size_t len)
{
    ks_api_response *r = req->resp;
    free(r->body);
    r->body = malloc(len + 1);
    if (!r->body) {
        r->status = 500;
        r->body_len = 0;
        return;
    }
    memcpy(r->body, text, len);
    r->body[len] = '\0';
    r->body_len = len;
    r->status = status;
    snprintf(r->content_type, sizeof(r->content_type), "%s", content_type);
}

/* Copies `in` replacing every byte that does not start a valid UTF-8 sequence by
 * '?': messages quote client input (paths, names), and JSON strings must be
 * valid UTF-8 or jansson refuses them. */
static void utf8_clean(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)in;
    while (*p && o + 1 < cap) {
        size_t n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3
                                 : (*p & 0xf8) == 0xf0 ? 4 : 0;
        bool ok = n > 0 && o + n < cap;
        for (size_t k = 1; ok && k < n; k++)
            ok = (p[k] & 0xc0) == 0x80;
        /* Reject overlong forms and surrogates, which jansson refuses too. */
        if (ok && n == 2)
            ok = *p >= 0xc2;
        if (ok && n == 3) {
            unsigned cp = ((p[0] & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
            ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
        }
        if (ok && n == 4) {
            unsigned cp = ((p[0] & 0x07u) << 18) | ((p[1] & 0x3fu) << 12) |
                          ((p[2] & 0x3fu) << 6) | (p[3] & 0x3fu);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (!ok) {
            out[o++] = '?';
            p++;
            continue;
        }
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
}

void ks_api_send_error_details(ks_api_req *req, const ks_err *err, json_t *details)
{
    ks_err fallback = {.code = KS_EINTERNAL, .msg = "error without a description"};
    if (!err || err->code == KS_OK)
        err = &fallback;
    status_entry e = lookup(err->code);
    const char *message = err->msg[0] ? err->msg : ks_code_str(err->code);
    if (e.status >= 500 && e.status != 503 && e.status != 501) {
        ks_log(KS_LOG_ERROR, "request failed req=%s code=%s route='%s' error='%s'",
               req->request_id, e.slug, req->route ? req->route->pattern : "-", message);
        message = "internal error; see the server log for this request id";
    }
    json_t *body = json_object();
    json_t *inner = json_object();
    if (!body || !inner) {
        json_decref(body);
        json_decref(inner);
        json_decref(details);
        ks_api_send_json(req, e.status, NULL);
        req->resp->status = e.status;
        return;
    }
    char clean[sizeof(err->msg) + sizeof(err->field)];
    json_object_set_new(inner, "code", json_string(e.slug));
    utf8_clean(clean, sizeof(clean), message);
    json_object_set_new(inner, "message", json_string(clean[0] ? clean : ks_code_str(err->code)));
    if (err->field[0]) {
        utf8_clean(clean, sizeof(clean), err->field);
        json_object_set_new(inner, "field", json_string(clean));
    }
    json_object_set_new(inner, "request_id", json_string(req->request_id));
    if (details)
        json_object_set_new(inner, "details", details);
    json_object_set_new(body, "error", inner);
    ks_api_send_json(req, e.status, body);
    if (err->code == KS_API_ERATELIMIT)
        req->resp->retry_after_s = 1;
}

void ks_api_send_error(ks_api_req *req, const ks_err *err)
{
    ks_api_send_error_details(req, err, NULL);
}

void ks_api_response_destroy(ks_api_response *resp)
{
    if (!resp)
        return;
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}
