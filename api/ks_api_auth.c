/*
 * ks_api_auth.c - bearer tokens, roles and the per-principal rate limit.
 *
 * Tokens are random strings handed out once (kintsugid token create); the store
 * keeps only their SHA-256 (GnuTLS), so a stolen database gives no credentials.
 * Roles: admin (everything), reader (GET only), agent (bound to one host id: may
 * report/heartbeat and read that host only).  --insecure-no-auth makes every
 * request admin.
 *
 * Threading: token lookups take the fleet lock (the store is not thread-safe);
 * the rate limiter has its own mutex.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "ks_api_int.h"
#include "ks_store.h"

static const char *const role_names[KS_ROLE__COUNT] = {"none", "reader", "agent", "admin"};

const char *ks_role_to_str(ks_role r)
{
    return (unsigned)r < KS_ROLE__COUNT ? role_names[r] : "?";
}

int ks_role_from_str(const char *s)
{
    for (int i = 1; s && i < KS_ROLE__COUNT; i++)
        if (strcmp(s, role_names[i]) == 0)
            return i;
    return -1;
}

static ks_code sha256(uint8_t out[32], const void *data, size_t len, ks_err *err)
{
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out) < 0)
        return ks_err_set(err, KS_EINTERNAL, "sha-256 failed");
    return KS_OK;
}

static void to_hex(char *out, const uint8_t *in, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

ks_code ks_api_token_digest(uint8_t out[32], const char *token, ks_err *err)
{
    return sha256(out, token, strlen(token), err);
}

void ks_api_etag_of(char out[80], const json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    ks_api_etag_of_text(out, text ? text : "");
    free(text);
}

void ks_api_etag_of_text(char out[80], const char *text)
{
    uint8_t d[32] = {0};
    sha256(d, text, strlen(text), NULL);
    char hex[65];
    /* 128 bits are plenty to tell versions of one resource apart. */
    to_hex(hex, d, 16);
    snprintf(out, 80, "\"%s\"", hex);
}

void ks_api_send_json_etag(ks_api_req *req, json_t *doc)
{
    ks_api_etag_of(req->resp->etag, doc);
    const char *inm = ks_api_header(req, "If-None-Match");
    if (inm && strcmp(inm, req->resp->etag) == 0) {
        json_decref(doc);
        ks_api_send_text(req, 304, "application/json", "", 0);
        return;
    }
    ks_api_send_json(req, 200, doc);
}

ks_code ks_api_check_if_match(const ks_api_req *req, const char *etag, ks_err *err)
{
    const char *im = ks_api_header(req, "If-Match");
    if (!im)
        return KS_OK;
    /* A list of entity tags; "*" matches any existing resource; weak tags never
     * match under strong comparison (RFC 9110 13.1.1). */
    const char *p = im;
    size_t elen = strlen(etag);
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '*')
            return KS_OK;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len == elen && memcmp(p, etag, elen) == 0)
            return KS_OK;
        if (!end)
            break;
        p = end;
    }
    return ks_err_set(err, KS_EPRECOND, "If-Match %s does not match the current ETag %s", im,
                      etag);
}

ks_code ks_api_token_generate(char out[48], ks_err *err)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t raw[43];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0)
            return ks_err_set(err, KS_EIO, "getrandom failed");
        got += (size_t)n;
    }
    memcpy(out, "ks_", 3);
    for (size_t i = 0; i < sizeof(raw); i++)
        out[3 + i] = alphabet[raw[i] & 63]; /* 64 symbols: no modulo bias */
    out[3 + sizeof(raw)] = '\0';
    return KS_OK;
}

ks_code ks_api_authenticate(ks_api_req *req, ks_err *err)
{
    ks_api *api = req->api;
    if (api->opts.insecure_no_auth) {
        req->principal.role = KS_ROLE_ADMIN;
        snprintf(req->principal.token_id, sizeof(req->principal.token_id), "insecure");
        return KS_OK;
    }
    const char *h = ks_api_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7])
        return ks_err_set(err, KS_EAUTH, "missing bearer token (Authorization: Bearer <token>)");
    const char *token = h + 7;
    while (*token == ' ')
        token++;
    if (strlen(token) > 512)
        return ks_err_set(err, KS_EAUTH, "invalid bearer token");
    uint8_t d[32];
    ks_code rc = sha256(d, token, strlen(token), err);
    if (rc != KS_OK)
        return rc;
    ks_store_token_row row;
    pthread_mutex_lock(&api->lock);
    rc = ks_store_token_find(&row, api->store, d, sizeof(d), err);
    pthread_mutex_unlock(&api->lock);
    if (rc == KS_ENOTFOUND)
        return ks_err_set(err, KS_EAUTH, "invalid bearer token");
    if (rc != KS_OK)
        return rc;
    int role = ks_role_from_str(row.role);
    if (role < 0)
        return ks_err_set(err, KS_EAUTH, "token has an unknown role '%s'", row.role);
    req->principal.role = (ks_role)role;
    snprintf(req->principal.host, sizeof(req->principal.host), "%s", row.host_id);
    snprintf(req->principal.token_id, sizeof(req->principal.token_id), "%lld",
             (long long)row.id);
    return KS_OK;
}

ks_code ks_api_authorize(const ks_api_req *req, ks_err *err)
{
    const ks_principal *p = &req->principal;
    const char *method = req->call->method;
    const char *host = req->n_params > 0 ? req->params[0] : "";
    switch (req->route->access) {
    case KS_ACCESS_PUBLIC:
        return KS_OK;
    case KS_ACCESS_READ:
        if (p->role == KS_ROLE_ADMIN || p->role == KS_ROLE_READER)
            return KS_OK;
        /* An agent may read the VMs of its own host (the handlers enforce the host). */
        if (p->role == KS_ROLE_AGENT && (strcmp(req->route->pattern, "/v1/vms") == 0 ||
                                         strcmp(req->route->pattern, "/v1/vms/{name}") == 0))
            return KS_OK;
        break;
    case KS_ACCESS_HOST_READ:
        if (p->role == KS_ROLE_ADMIN || p->role == KS_ROLE_READER)
            return KS_OK;
        if (p->role == KS_ROLE_AGENT && strcmp(p->host, host) == 0)
            return KS_OK;
        break;
    case KS_ACCESS_HOST_WRITE:
        if (p->role == KS_ROLE_ADMIN)
            return KS_OK;
        if (p->role == KS_ROLE_AGENT && strcmp(p->host, host) == 0)
            return KS_OK;
        break;
    case KS_ACCESS_ADMIN:
        if (p->role == KS_ROLE_ADMIN)
            return KS_OK;
        break;
    case KS_ACCESS__COUNT:
        break; /* not a rule: deny */
    }
    if (p->role == KS_ROLE_AGENT)
        return ks_err_set(err, KS_EFORBIDDEN, "agent token of host '%s' may not %s '%s'", p->host,
                          method, req->call->path);
    return ks_err_set(err, KS_EFORBIDDEN, "role '%s' may not %s '%s'", ks_role_to_str(p->role),
                      method, req->call->path);
}

ks_code ks_api_rate_check(ks_api *api, const ks_api_req *req, ks_err *err)
{
    unsigned rps = api->opts.rate_limit_rps;
    if (rps == 0)
        return KS_OK;
    const char *key = req->principal.token_id[0] ? req->principal.token_id : "anonymous";
    uint64_t now = ks_api_mono_us();
    ks_code rc = KS_OK;
    pthread_mutex_lock(&api->rl_mu);
    size_t slot = 0, oldest = 0;
    bool found = false;
    for (size_t i = 0; i < sizeof(api->rl) / sizeof(api->rl[0]); i++) {
        if (strcmp(api->rl[i].key, key) == 0) {
            slot = i;
            found = true;
            break;
        }
        if (api->rl[i].last_us < api->rl[oldest].last_us)
            oldest = i;
    }
    if (!found) {
        /* Evicting the least recently seen principal forgets its debt: acceptable for
         * a limiter meant to stop runaway clients, not to meter. */
        slot = oldest;
        snprintf(api->rl[slot].key, sizeof(api->rl[slot].key), "%s", key);
        api->rl[slot].tokens = rps;
        api->rl[slot].last_us = now;
    }
    double t = api->rl[slot].tokens + (double)(now - api->rl[slot].last_us) / 1e6 * rps;
    if (t > rps)
        t = rps;
    api->rl[slot].last_us = now;
    if (t < 1.0) {
        rc = ks_err_set(err, KS_API_ERATELIMIT, "rate limit of %u requests per second exceeded",
                        rps);
    } else {
        t -= 1.0;
    }
    api->rl[slot].tokens = t;
    pthread_mutex_unlock(&api->rl_mu);
    return rc;
}
