/*
 * fleetsim_http.c - a small closed-loop HTTP load driver on libcurl multi:
 * `concurrency` keep-alive connections, each with one request in flight, fed
 * by a callback.  Used by `fleetsim --api` and bench_api.
 *
 * Each slot owns one easy handle, reused for every request of the slot, so
 * libcurl keeps its connection open (keep-alive) across requests.  Single
 * threaded: the caller's callbacks run on the calling thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ks_fleetsim.h"

typedef struct slot {
    CURL *easy;
    char url[512];
    char *body; /* copy of the request body */
    char *resp; /* response body */
    size_t resp_len, resp_cap;
    uint64_t t0;
    int tag;
    bool active;
} slot;

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    slot *s = ud;
    size_t len = size * n;
    if (s->resp_len + len + 1 > s->resp_cap) {
        size_t nc = s->resp_cap ? s->resp_cap : 4096;
        while (nc < s->resp_len + len + 1)
            nc *= 2;
        char *q = realloc(s->resp, nc);
        if (!q)
            return 0;
        s->resp = q;
        s->resp_cap = nc;
    }
    memcpy(s->resp + s->resp_len, p, len);
    s->resp_len += len;
    s->resp[s->resp_len] = '\0';
    return len;
}

/* Sets up slot s for req; false when out of memory. */
static bool slot_prepare(slot *s, const char *base_url, const ks_fleetsim_http_req *req)
{
    free(s->body);
    s->body = NULL;
    s->resp_len = 0;
    snprintf(s->url, sizeof(s->url), "%s%s", base_url, req->path);
    curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
    if (req->body) {
        s->body = malloc(req->body_len + 1);
        if (!s->body)
            return false;
        memcpy(s->body, req->body, req->body_len);
        s->body[req->body_len] = '\0';
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
        curl_easy_setopt(s->easy, CURLOPT_CUSTOMREQUEST,
                         strcmp(req->method, "POST") == 0 ? NULL : req->method);
    } else {
        curl_easy_setopt(s->easy, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(s->easy, CURLOPT_CUSTOMREQUEST,
                         strcmp(req->method, "GET") == 0 ? NULL : req->method);
    }
    s->tag = req->tag;
    s->t0 = ks_fleetsim_now_ns();
    return true;
}

ks_code ks_fleetsim_http_run(const char *base_url, const char *token, uint32_t concurrency,
                             ks_fleetsim_http_next_fn next, ks_fleetsim_http_done_fn done,
                             void *ctx, ks_err *err)
{
    ks_code rc = KS_OK;
    CURLM *multi = NULL;
    struct curl_slist *headers = NULL;
    slot *slots = NULL;
    char auth[512];
    uint32_t n_active = 0;
    if (concurrency == 0 || concurrency > 4096)
        return ks_err_set(err, KS_EINVAL, "concurrency must be 1..4096");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ks_err_set(err, KS_EIO, "curl_global_init failed");
    multi = curl_multi_init();
    slots = calloc(concurrency, sizeof(*slots));
    headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = headers ? curl_slist_append(headers, "Expect:") : NULL;
    if (token && headers) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, auth);
    }
    if (!multi || !slots || !headers) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory setting up curl");
        goto done;
    }
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)concurrency);
    for (uint32_t i = 0; i < concurrency; i++) {
        slot *s = &slots[i];
        s->easy = curl_easy_init();
        if (!s->easy) {
            rc = ks_err_set(err, KS_EIO, "curl_easy_init failed");
            goto done;
        }
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->easy, CURLOPT_TIMEOUT, 60L);
        ks_fleetsim_http_req req = {0};
        if (next(ctx, i, &req)) {
            if (!slot_prepare(s, base_url, &req)) {
                rc = ks_err_set(err, KS_ENOMEM, "out of memory");
                goto done;
            }
            curl_multi_add_handle(multi, s->easy);
            s->active = true;
            n_active++;
        }
    }
    while (n_active) {
        int running = 0;
        if (curl_multi_perform(multi, &running) != CURLM_OK) {
            rc = ks_err_set(err, KS_EIO, "curl_multi_perform failed");
            goto done;
        }
        CURLMsg *msg;
        int left = 0;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            slot *s = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
            long status = 0;
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            uint64_t lat = ks_fleetsim_now_ns() - s->t0;
            curl_multi_remove_handle(multi, e);
            s->active = false;
            n_active--;
            uint32_t idx = (uint32_t)(s - slots);
            done(ctx, idx, s->tag, status, lat, s->resp ? s->resp : "", s->resp_len);
            ks_fleetsim_http_req req = {0};
            if (next(ctx, idx, &req)) {
                if (!slot_prepare(s, base_url, &req)) {
                    rc = ks_err_set(err, KS_ENOMEM, "out of memory");
                    goto done;
                }
                curl_multi_add_handle(multi, s->easy);
                s->active = true;
                n_active++;
            }
        }
        if (n_active && curl_multi_poll(multi, NULL, 0, 100, NULL) != CURLM_OK) {
            rc = ks_err_set(err, KS_EIO, "curl_multi_poll failed");
            goto done;
        }
    }
done:
    for (uint32_t i = 0; slots && i < concurrency; i++) {
        if (slots[i].active)
            curl_multi_remove_handle(multi, slots[i].easy);
        if (slots[i].easy)
            curl_easy_cleanup(slots[i].easy);
        free(slots[i].body);
        free(slots[i].resp);
    }
    free(slots);
    curl_slist_free_all(headers);
    if (multi)
        curl_multi_cleanup(multi);
    curl_global_cleanup();
    return rc;
}

/* ---- host reports through the API ---- */

typedef struct report_ctx {
    char **bodies;
    size_t *lens;
    uint32_t n, next;
    uint64_t failed;
    ks_fleetsim_samples *lat;
    bool oom;
    char first_error[256];
} report_ctx;

static bool report_next(void *ctx, uint32_t slot_ix, ks_fleetsim_http_req *req)
{
    report_ctx *c = ctx;
    (void)slot_ix;
    if (c->next >= c->n)
        return false;
    uint32_t i = c->next++;
    char id[KS_ID_MAX];
    ks_fleetsim_host_id(id, i);
    req->method = "PUT";
    snprintf(req->path, sizeof(req->path), "/v1/hosts/%s/report", id);
    req->body = c->bodies[i];
    req->body_len = c->lens[i];
    req->tag = (int)i;
    return true;
}

static void report_done(void *ctx, uint32_t slot_ix, int tag, long status, uint64_t latency_ns,
                        const char *body, size_t body_len)
{
    report_ctx *c = ctx;
    (void)slot_ix;
    (void)body_len;
    if (status < 200 || status > 299) {
        if (!c->failed)
            snprintf(c->first_error, sizeof(c->first_error), "status %ld: %.200s", status, body);
        c->failed++;
    }
    if (c->lat && !ks_fleetsim_samples_push(c->lat, latency_ns))
        c->oom = true;
    free(c->bodies[tag]);
    c->bodies[tag] = NULL;
}

ks_code ks_fleetsim_send_reports(const ks_fleetsim *sim, const char *base_url, const char *token,
                                 uint32_t concurrency, ks_fleetsim_policy policy,
                                 uint64_t *out_failed, uint64_t *out_ns, ks_fleetsim_samples *lat,
                                 ks_err *err)
{
    ks_code rc = KS_OK;
    report_ctx c = {.n = ks_fleetsim_host_count(sim), .lat = lat};
    c.bodies = calloc(c.n, sizeof(char *));
    c.lens = calloc(c.n, sizeof(size_t));
    if (!c.bodies || !c.lens) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    /* Encode every report first so the timed part is only the API's work. */
    for (uint32_t i = 0; rc == KS_OK && i < c.n; i++) {
        ks_report *r = NULL;
        rc = ks_fleetsim_host_report(&r, sim, i, policy, err);
        if (rc != KS_OK)
            break;
        json_t *doc = ks_report_to_json(r);
        c.bodies[i] = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        ks_report_free(r);
        if (!c.bodies[i])
            rc = ks_err_set(err, KS_ENOMEM, "out of memory encoding a report");
        else
            c.lens[i] = strlen(c.bodies[i]);
    }
    if (rc != KS_OK)
        goto done;
    uint64_t t0 = ks_fleetsim_now_ns();
    rc = ks_fleetsim_http_run(base_url, token, concurrency, report_next, report_done, &c, err);
    if (rc == KS_OK && c.oom)
        rc = ks_err_set(err, KS_ENOMEM, "out of memory recording latencies");
    if (rc == KS_OK && c.failed == c.n)
        rc = ks_err_set(err, KS_EUNAVAIL, "every report failed, first: %s", c.first_error);
    if (rc == KS_OK) {
        *out_ns = ks_fleetsim_now_ns() - t0;
        *out_failed = c.failed;
    }
done:
    for (uint32_t i = 0; c.bodies && i < c.n; i++)
        free(c.bodies[i]);
    free(c.bodies);
    free(c.lens);
    return rc;
}

/* ---- the pool through the API ---- */

typedef struct pool_ctx {
    const char *body;
    bool sent;
    long status;
    char answer[256];
} pool_ctx;

static bool pool_next(void *ctx, uint32_t slot_ix, ks_fleetsim_http_req *req)
{
    pool_ctx *c = ctx;
    (void)slot_ix;
    if (c->sent)
        return false;
    c->sent = true;
    req->method = "POST";
    snprintf(req->path, sizeof(req->path), "/v1/pools");
    req->body = c->body;
    req->body_len = strlen(c->body);
    return true;
}

static void pool_done(void *ctx, uint32_t slot_ix, int tag, long status, uint64_t latency_ns,
                      const char *body, size_t body_len)
{
    pool_ctx *c = ctx;
    (void)slot_ix;
    (void)tag;
    (void)latency_ns;
    (void)body_len;
    c->status = status;
    snprintf(c->answer, sizeof(c->answer), "%.200s", body);
}

ks_code ks_fleetsim_create_pool_api(const ks_fleetsim *sim, const char *base_url, const char *token,
                                    ks_err *err)
{
    ks_code rc = KS_OK;
    json_t *hosts = json_array();
    json_t *doc = hosts ? json_pack("{s:s,s:O}", "name", KS_FLEETSIM_POOL, "hosts", hosts) : NULL;
    char *text = NULL;
    for (uint32_t i = 0; doc && i < ks_fleetsim_host_count(sim); i++) {
        if (!ks_fleetsim_pool_member(sim, i))
            continue;
        char id[KS_ID_MAX];
        ks_fleetsim_host_id(id, i);
        json_array_append_new(json_object_get(doc, "hosts"), json_string(id));
    }
    text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (!text) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    pool_ctx c = {.body = text};
    rc = ks_fleetsim_http_run(base_url, token, 1, pool_next, pool_done, &c, err);
    if (rc == KS_OK && !(c.status >= 200 && c.status <= 299) && c.status != 409)
        rc = ks_err_set(err, KS_EUNAVAIL, "creating pool '%s': status %ld: %s", KS_FLEETSIM_POOL,
                        c.status, c.answer);
done:
    free(text);
    json_decref(doc);
    json_decref(hosts);
    return rc;
}
