/*
 * ks_cli_http.c - libcurl transport of kintsugictl.  One easy handle per
 * process, so `events --follow` and multi-page listings reuse the connection.
 * Response bodies are capped (KS_CLI_MAX_BODY) like everything a peer can make
 * us allocate.
 */
#include "ks_cli_http.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define KS_CLI_MAX_BODY (64u * 1024 * 1024)

struct ks_cli_http {
    CURL *curl;
    char *server;
    char *auth_header;
    long timeout_ms;
};

typedef struct body_buf {
    char *data;
    size_t len, cap;
    bool too_large;
} body_buf;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    body_buf *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n + 1 > KS_CLI_MAX_BODY) {
        b->too_large = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nd = realloc(b->data, cap);
        if (!nd)
            return 0;
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

ks_code ks_cli_http_new(ks_cli_http **out, const char *server, const char *token,
                        long timeout_ms, ks_err *err)
{
    ks_cli_http *h = calloc(1, sizeof(*h));
    if (!h)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    size_t len = strlen(server);
    while (len > 0 && server[len - 1] == '/')
        len--;
    h->server = strndup(server, len);
    h->curl = curl_easy_init();
    h->timeout_ms = timeout_ms;
    if (token && token[0]) {
        size_t cap = strlen(token) + 32;
        h->auth_header = malloc(cap);
        if (h->auth_header)
            snprintf(h->auth_header, cap, "Authorization: Bearer %s", token);
    }
    if (!h->server || !h->curl || (token && token[0] && !h->auth_header)) {
        ks_cli_http_free(h);
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    }
    *out = h;
    return KS_OK;
}

void ks_cli_http_free(ks_cli_http *h)
{
    if (!h)
        return;
    if (h->curl)
        curl_easy_cleanup(h->curl);
    free(h->server);
    free(h->auth_header);
    free(h);
}

ks_code ks_cli_http_escape(ks_cli_http *h, const char *value, char *buf, size_t cap, ks_err *err)
{
    char *esc = curl_easy_escape(h->curl, value, 0);
    if (!esc)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    size_t used = strlen(buf), n = strlen(esc);
    ks_code rc = KS_OK;
    if (used + n + 1 > cap)
        rc = ks_err_set(err, KS_EINVAL, "value too long: '%.40s'", value);
    else
        memcpy(buf + used, esc, n + 1);
    curl_free(esc);
    return rc;
}

/* Turns a non-2xx answer into a ks_err: the server's own message when it sent one. */
static ks_code error_from_response(long status, const body_buf *b, ks_err *err)
{
    json_t *doc = b->data ? json_loadb(b->data, b->len, 0, NULL) : NULL;
    json_t *e = doc ? json_object_get(doc, "error") : NULL;
    const char *slug = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    const char *field = json_string_value(json_object_get(e, "field"));
    ks_code code = slug ? ks_code_from_slug(slug) : KS_EINTERNAL;
    if (!slug) {
        code = status == 401 ? KS_EAUTH : status == 403 ? KS_EFORBIDDEN
             : status == 404 ? KS_ENOTFOUND : status >= 500 ? KS_EUNAVAIL : KS_EINVAL;
        slug = ks_code_slug(code);
    }
    if (field && field[0])
        ks_err_set(err, code, "%s (HTTP %ld): %s (field '%s')", slug, status,
                   msg ? msg : ks_code_str(code), field);
    else
        ks_err_set(err, code, "%s (HTTP %ld): %s", slug, status, msg ? msg : ks_code_str(code));
    if (err)
        snprintf(err->field, sizeof(err->field), "%s", slug);
    json_decref(doc);
    return code;
}

ks_code ks_cli_http_call(ks_cli_http *h, const char *method, const char *path, const json_t *body,
                         const char *extra_header, json_t **out, ks_err *err)
{
    ks_code rc = KS_OK;
    char *payload = NULL;
    struct curl_slist *headers = NULL;
    body_buf resp = {0};
    size_t url_cap = strlen(h->server) + strlen(path) + 1;
    char *url = malloc(url_cap);
    if (!url)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    snprintf(url, url_cap, "%s%s", h->server, path);

    curl_easy_reset(h->curl);
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &resp);
    headers = curl_slist_append(headers, "Accept: application/json");
    if (h->auth_header)
        headers = curl_slist_append(headers, h->auth_header);
    if (extra_header)
        headers = curl_slist_append(headers, extra_header);
    if (body) {
        payload = json_dumps(body, JSON_COMPACT);
        if (!payload) {
            rc = ks_err_set(err, KS_ENOMEM, "out of memory");
            goto done;
        }
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE, 0L);
    }
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h->curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);

    CURLcode cc = curl_easy_perform(h->curl);
    if (resp.too_large) {
        rc = ks_err_set(err, KS_ETOOLARGE, "response from %s is larger than %u bytes", h->server,
                        KS_CLI_MAX_BODY);
        goto done;
    }
    if (cc != CURLE_OK) {
        rc = ks_err_set(err, KS_EUNAVAIL, "cannot reach kintsugid at %s: %s", h->server,
                        curl_easy_strerror(cc));
        goto done;
    }
    long status = 0;
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        rc = error_from_response(status, &resp, err);
        goto done;
    }
    if (out) {
        if (resp.len == 0) {
            *out = json_null();
        } else {
            json_error_t jerr;
            json_t *doc = json_loadb(resp.data, resp.len, 0, &jerr);
            if (!doc) {
                rc = ks_err_set(err, KS_EIO, "kintsugid sent invalid JSON: %s", jerr.text);
                goto done;
            }
            *out = doc;
        }
    }
done:
    curl_slist_free_all(headers);
    free(payload);
    free(resp.data);
    free(url);
    return rc;
}
