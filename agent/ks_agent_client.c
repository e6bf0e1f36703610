/*
 * ks_agent_client.c - libcurl client from the agent to kintsugid.
 *
 * One CURL easy handle per client, reused for every request so that libcurl
 * keeps the connection alive between a report and the following heartbeats.
 * Per request only the URL, method, body and response buffer change.  The
 * response body goes to a buffer capped at max_response_bytes (the write
 * callback refuses more).  curl_global_init runs once per process.
 */
#include "ks_agent_client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ks_report.h"

#define KS_CLIENT_URL_MAX 2048

struct ks_agent_client {
    CURL *curl;
    struct curl_slist *headers;
    char base[KS_CLIENT_URL_MAX];
    ks_agent_client_options opts;
    /* last response */
    long status;
    char *body;
    size_t body_len, body_cap;
    bool overflow;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    ks_agent_client *c = userdata;
    size_t n = size * nmemb;
    if (n > c->opts.max_response_bytes - c->body_len) {
        c->overflow = true;
        return 0; /* makes libcurl fail the transfer with CURLE_WRITE_ERROR */
    }
    if (c->body_len + n + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + n + 1)
            cap *= 2;
        char *nb = realloc(c->body, cap);
        if (!nb)
            return 0;
        c->body = nb;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, data, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
    return n;
}

ks_code ks_agent_client_new(ks_agent_client **out, const char *server_url, const char *token,
                            const ks_agent_client_options *opts, ks_err *err)
{
    ks_code rc = KS_OK;
    ks_agent_client *c = NULL;
    char *auth = NULL;
    if (!server_url || (strncmp(server_url, "http://", 7) != 0 &&
                        strncmp(server_url, "https://", 8) != 0))
        return ks_err_set_field(err, KS_EINVAL, "server_url",
                                "server url must start with http:// or https://");
    size_t ulen = strlen(server_url);
    while (ulen > 0 && server_url[ulen - 1] == '/')
        ulen--;
    if (ulen >= KS_CLIENT_URL_MAX - 128 || ulen <= 8)
        return ks_err_set_field(err, KS_EINVAL, "server_url", "invalid server url");
    if (token) {
        for (const char *p = token; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                return ks_err_set_field(err, KS_EINVAL, "token",
                                        "token must be printable ASCII without spaces");
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return ks_err_set(err, KS_EINTERNAL, "curl_global_init failed");

    c = calloc(1, sizeof(*c));
    if (!c)
        return ks_err_set(err, KS_ENOMEM, "out of memory creating the client");
    memcpy(c->base, server_url, ulen);
    c->base[ulen] = '\0';
    ks_agent_client_options dflt = KS_AGENT_CLIENT_OPTIONS_INIT;
    c->opts = opts ? *opts : dflt;
    if (!c->opts.connect_timeout_us)
        c->opts.connect_timeout_us = dflt.connect_timeout_us;
    if (!c->opts.timeout_us)
        c->opts.timeout_us = dflt.timeout_us;
    if (!c->opts.max_response_bytes)
        c->opts.max_response_bytes = dflt.max_response_bytes;

    c->curl = curl_easy_init();
    if (!c->curl) {
        rc = ks_err_set(err, KS_ENOMEM, "curl_easy_init failed");
        goto done;
    }
    struct curl_slist *h = NULL;
    bool ok = (h = curl_slist_append(NULL, "Content-Type: application/json")) != NULL;
    c->headers = h;
    /* No "Expect: 100-continue" round trip before large reports. */
    ok = ok && (h = curl_slist_append(c->headers, "Expect:")) != NULL;
    ok = ok && (h = curl_slist_append(c->headers, "Accept: application/json")) != NULL;
    if (ok && token && token[0]) {
        size_t n = strlen(token) + sizeof("Authorization: Bearer ");
        auth = malloc(n);
        ok = auth != NULL;
        if (ok) {
            snprintf(auth, n, "Authorization: Bearer %s", token);
            ok = (h = curl_slist_append(c->headers, auth)) != NULL;
        }
    }
    if (!ok) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory building request headers");
        goto done;
    }
    CURL *e = c->curl;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->opts.connect_timeout_us / 1000));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(c->opts.timeout_us / 1000));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "kintsugi-agent/" KS_VERSION);
    if (c->opts.ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->opts.ca_file);
    *out = c;
    c = NULL;
done:
    free(auth);
    ks_agent_client_free(c);
    return rc;
}

void ks_agent_client_free(ks_agent_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    free(c->body);
    free(c);
}

int ks_agent_client_last_status(const ks_agent_client *c)
{
    return c ? (int)c->status : 0;
}

const char *ks_agent_client_last_body(const ks_agent_client *c)
{
    return c && c->body ? c->body : "";
}

/* Code for an HTTP error status when the body names none we know. */
static ks_code code_of_status(long status)
{
    switch (status) {
    case 401: return KS_EAUTH;
    case 403: return KS_EFORBIDDEN;
    case 404: return KS_ENOTFOUND;
    case 409: return KS_ECONFLICT;
    case 412: return KS_EPRECOND;
    case 413: return KS_ETOOLARGE;
    case 429: return KS_EUNAVAIL;
    default: return status >= 500 ? KS_EUNAVAIL : KS_EINVAL;
    }
}

/* Maps an error response into err: the body's slug when it agrees with the status
 * class, the status otherwise; the body's message and field are kept. */
static ks_code map_http_error(ks_agent_client *c, const char *what, ks_err *err)
{
    ks_code code = code_of_status(c->status);
    const char *msg = NULL, *field = NULL;
    json_t *doc = c->body_len ? json_loadb(c->body, c->body_len, 0, NULL) : NULL;
    json_t *e = doc ? json_object_get(doc, "error") : NULL;
    if (json_is_object(e)) {
        const char *slug = json_string_value(json_object_get(e, "code"));
        msg = json_string_value(json_object_get(e, "message"));
        field = json_string_value(json_object_get(e, "field"));
        ks_code from_slug = slug ? ks_code_from_slug(slug) : KS_EINTERNAL;
        /* 5xx stays "unavailable" (retry); a 4xx slug refines the status (409
         * conflict vs already_exists vs no_capacity). */
        if (c->status < 500 && from_slug != KS_EINTERNAL && from_slug != KS_OK)
            code = from_slug;
    }
    if (field)
        ks_err_set_field(err, code, field, "%s: server answered %ld: %.160s", what, c->status,
                         msg ? msg : ks_code_str(code));
    else
        ks_err_set(err, code, "%s: server answered %ld: %.160s", what, c->status,
                   msg ? msg : ks_code_str(code));
    json_decref(doc);
    return code;
}

/* One request on the kept-alive handle.  method: "PUT" or "POST". */
static ks_code request(ks_agent_client *c, const char *method, const char *path,
                       const char *body, size_t body_len, const char *what, ks_err *err)
{
    char url[KS_CLIENT_URL_MAX];
    if (snprintf(url, sizeof(url), "%s%s", c->base, path) >= (int)sizeof(url))
        return ks_err_set(err, KS_EINVAL, "%s: url too long", what);
    c->status = 0;
    c->body_len = 0;
    if (c->body)
        c->body[0] = '\0';
    c->overflow = false;
    CURL *e = c->curl;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") == 0 ? NULL : method);
    CURLcode cr = curl_easy_perform(e);
    if (cr != CURLE_OK) {
        if (c->overflow)
            return ks_err_set(err, KS_ETOOLARGE, "%s: server response above %zu bytes", what,
                              c->opts.max_response_bytes);
        /* Refused, reset, unreachable or timed out: the server is not there (yet). */
        return ks_err_set(err, KS_EUNAVAIL, "%s: %s (%s)", what, curl_easy_strerror(cr), c->base);
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &c->status);
    if (c->status >= 200 && c->status < 300)
        return KS_OK;
    return map_http_error(c, what, err);
}

ks_code ks_agent_client_put_report(ks_agent_client *c, const char *json, ks_err *err)
{
    char path[64 + KS_ID_MAX];
    json_error_t jerr;
    if (!c || !json)
        return ks_err_set(err, KS_EINVAL, "put report: no client or report");
    size_t len = strlen(json);
    json_t *doc = json_loadb(json, len, 0, &jerr);
    const char *id = NULL;
    if (doc)
        id = json_string_value(json_object_get(json_object_get(doc, "host"), "id"));
    if (!id || !ks_id_valid(id)) {
        json_decref(doc);
        return ks_err_set_field(err, KS_EINVAL, "host.id",
                                "put report: the document has no valid host id");
    }
    snprintf(path, sizeof(path), "/v1/hosts/%s/report", id);
    json_decref(doc);
    return request(c, "PUT", path, json, len, "put report", err);
}

ks_code ks_agent_client_heartbeat_ex(ks_agent_client *c, const char *host_id,
                                     const char *boot_id, uint64_t generation,
                                     bool *report_required, ks_err *err)
{
    char path[64 + KS_ID_MAX];
    if (report_required)
        *report_required = false;
    if (!c || !host_id || !ks_id_valid(host_id))
        return ks_err_set_field(err, KS_EINVAL, "host_id", "heartbeat: invalid host id");
    json_t *doc = json_object();
    if (doc && boot_id)
        json_object_set_new(doc, "boot_id", json_string(boot_id));
    if (doc && generation)
        json_object_set_new(doc, "generation", json_integer((json_int_t)generation));
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!body)
        return ks_err_set(err, KS_ENOMEM, "heartbeat: out of memory");
    snprintf(path, sizeof(path), "/v1/hosts/%s/heartbeat", host_id);
    ks_code rc = request(c, "POST", path, body, strlen(body), "heartbeat", err);
    free(body);
    if (rc == KS_OK && report_required && c->body_len) {
        json_t *resp = json_loadb(c->body, c->body_len, 0, NULL);
        *report_required = json_is_true(json_object_get(resp, "report_required"));
        json_decref(resp);
    }
    return rc;
}

ks_code ks_agent_client_heartbeat(ks_agent_client *c, const char *host_id, ks_err *err)
{
    return ks_agent_client_heartbeat_ex(c, host_id, NULL, 0, NULL, err);
}

/* ---- backoff -------------------------------------------------------------------------- */

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

uint64_t ks_backoff_next_us(unsigned attempt, uint64_t base_us, uint64_t max_us, uint64_t *rng)
{
    uint64_t cap = base_us;
    /* Doubling stops at max_us, so no shift can overflow. */
    for (unsigned i = 0; i < attempt && cap < max_us; i++)
        cap = cap > UINT64_MAX / 2 ? UINT64_MAX : cap * 2;
    if (cap > max_us)
        cap = max_us;
    if (cap == 0)
        return 0;
    uint64_t r = rng ? xorshift64(rng) : 0;
    return cap == UINT64_MAX ? r : r % (cap + 1);
}
