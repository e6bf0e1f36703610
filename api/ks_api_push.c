/*
 * ks_api_push.c - the plan pusher: a queue of (VM, operation) items and one
 * worker thread that delivers them to the agents over HTTP.
 *
 * Invariants:
 *  - at most one APPLY item per VM is queued (p->queued, by name); a later
 *    change of the same VM only needs the newest plan, which the worker reads
 *    from the store when it delivers, so re-queueing is a no-op;
 *  - a DELETE item carries the agent URL resolved at enqueue time;
 *  - the agent URL of a host is cached (p->urls); "" caches "no agent URL", so
 *    hosts without an agent (benchmarks, fixtures without --listen) cost one
 *    lookup, not a queue entry per placement.
 * The queue is short in practice (one entry per VM waiting for its agent), so
 * the worker finds the next due item by a linear scan.
 */
#include "ks_api_push.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ks_api_int.h"
#include "ks_log.h"
#include "ks_store.h"

#define PUSH_BACKOFF_BASE_US 250000u
#define PUSH_BACKOFF_MAX_US 30000000u
#define PUSH_DELETE_MAX_ATTEMPTS 20u
#define PUSH_TIMEOUT_MS 10000L
#define URL_BUCKETS 1024u

typedef enum push_op { PUSH_APPLY, PUSH_DELETE } push_op;

typedef struct push_item {
    struct push_item *next;
    push_op op;
    char vm[KS_ID_MAX];
    char host[KS_ID_MAX];
    char url[KS_TEXT_MAX]; /* DELETE: resolved at enqueue */
    unsigned attempt;
    uint64_t due_us;       /* monotonic */
} push_item;

typedef struct url_entry {
    struct url_entry *next;
    char host[KS_ID_MAX];
    char url[KS_TEXT_MAX]; /* "" = the host advertises no agent */
} url_entry;

struct ks_api_pusher {
    ks_api *api;
    char *auth_header;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    bool stop;
    push_item *head;
    size_t n_items;
    size_t in_flight;
    url_entry *urls[URL_BUCKETS];
    uint64_t rng;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % URL_BUCKETS;
}

/* Cached URL of a host, or NULL when unknown (caller holds p->mu). */
static url_entry *url_find(ks_api_pusher *p, const char *host)
{
    for (url_entry *e = p->urls[hash_str(host)]; e; e = e->next)
        if (strcmp(e->host, host) == 0)
            return e;
    return NULL;
}

static void url_put(ks_api_pusher *p, const char *host, const char *url)
{
    url_entry *e = url_find(p, host);
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e)
            return; /* not cached: resolved again next time */
        snprintf(e->host, sizeof(e->host), "%s", host);
        unsigned b = hash_str(host);
        e->next = p->urls[b];
        p->urls[b] = e;
    }
    snprintf(e->url, sizeof(e->url), "%s", url);
}

/*
 * Reads host.agent_url from the stored report (caller holds the fleet lock).
 * "" when the host advertises none or is gone.
 */
static void url_from_store(ks_api *api, const char *host, char *out, size_t cap)
{
    ks_store_host_row row;
    out[0] = '\0';
    memset(&row, 0, sizeof(row));
    if (ks_store_host_get(&row, api->store, host, true, NULL) != KS_OK)
        return;
    json_t *doc = row.report_json ? json_loads(row.report_json, 0, NULL) : NULL;
    const char *url = json_string_value(json_object_get(json_object_get(doc, "host"), "agent_url"));
    if (url)
        snprintf(out, cap, "%s", url);
    json_decref(doc);
    ks_store_host_row_destroy(&row);
}

void ks_api_agent_url(ks_api_pusher *p, ks_api *api, const char *host, char *out, size_t cap)
{
    if (!p) {
        url_from_store(api, host, out, cap);
        return;
    }
    pthread_mutex_lock(&p->mu);
    url_entry *e = url_find(p, host);
    if (e)
        snprintf(out, cap, "%s", e->url);
    pthread_mutex_unlock(&p->mu);
    if (e)
        return;
    url_from_store(api, host, out, cap);
    pthread_mutex_lock(&p->mu);
    url_put(p, host, out);
    pthread_mutex_unlock(&p->mu);
}

static push_item *queued_apply(ks_api_pusher *p, const char *vm)
{
    for (push_item *it = p->head; it; it = it->next)
        if (it->op == PUSH_APPLY && strcmp(it->vm, vm) == 0)
            return it;
    return NULL;
}

static void enqueue(ks_api_pusher *p, push_op op, const char *vm, const char *host,
                    const char *url)
{
    push_item *it = calloc(1, sizeof(*it));
    if (!it) {
        ks_log(KS_LOG_ERROR, "plan push dropped vm='%s': out of memory", vm);
        return;
    }
    it->op = op;
    snprintf(it->vm, sizeof(it->vm), "%s", vm);
    snprintf(it->host, sizeof(it->host), "%s", host ? host : "");
    snprintf(it->url, sizeof(it->url), "%s", url ? url : "");
    it->due_us = mono_us();
    /* FIFO: append at the tail. */
    push_item **tail = &p->head;
    while (*tail)
        tail = &(*tail)->next;
    *tail = it;
    p->n_items++;
    pthread_cond_signal(&p->cv);
}

void ks_api_pusher_apply(ks_api_pusher *p, const char *vm, const char *host)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    url_entry *e = url_find(p, host);
    push_item *it = queued_apply(p, vm);
    bool has_agent = !e || e->url[0]; /* unknown hosts are resolved by the worker */
    if (has_agent && it)
        it->due_us = mono_us(); /* a newer plan: try now */
    else if (has_agent)
        enqueue(p, PUSH_APPLY, vm, host, NULL);
    pthread_mutex_unlock(&p->mu);
}

void ks_api_pusher_delete(ks_api_pusher *p, const char *vm, const char *host)
{
    if (!p)
        return;
    char url[KS_TEXT_MAX];
    ks_api_agent_url(p, p->api, host, url, sizeof(url)); /* fleet lock held by the caller */
    if (!url[0])
        return;
    pthread_mutex_lock(&p->mu);
    /* A pending apply of the same VM is moot now. */
    for (push_item **pp = &p->head; *pp;) {
        if ((*pp)->op == PUSH_APPLY && strcmp((*pp)->vm, vm) == 0) {
            push_item *dead = *pp;
            *pp = dead->next;
            free(dead);
            p->n_items--;
        } else {
            pp = &(*pp)->next;
        }
    }
    enqueue(p, PUSH_DELETE, vm, host, url);
    pthread_mutex_unlock(&p->mu);
}

void ks_api_pusher_host_changed(ks_api_pusher *p, const char *host)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    url_entry **pp = &p->urls[hash_str(host)];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->host, host) == 0) {
            url_entry *dead = *pp;
            *pp = dead->next;
            free(dead);
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

size_t ks_api_pusher_pending(ks_api_pusher *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    size_t n = p->n_items + p->in_flight;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* ---------------------------------------------------------------- delivery */

typedef struct http_answer {
    long status;        /* 0 when no HTTP answer */
    char message[KS_TEXT_MAX];
    uint64_t generation;/* "generation" of the agent's answer, 0 when absent */
} http_answer;

typedef struct body_buf {
    char data[16384];
    size_t len;
} body_buf;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    body_buf *b = userdata;
    size_t n = size * nmemb, room = sizeof(b->data) - 1 - b->len;
    memcpy(b->data + b->len, ptr, n < room ? n : room);
    b->len += n < room ? n : room;
    b->data[b->len] = '\0';
    return n; /* the rest of a long answer is not needed */
}

static void http_call(CURL *curl, const ks_api_pusher *p, const char *method, const char *url,
                      const char *body, http_answer *ans)
{
    body_buf *resp = calloc(1, sizeof(*resp));
    struct curl_slist *headers = NULL;
    memset(ans, 0, sizeof(*ans));
    if (!resp) {
        snprintf(ans->message, sizeof(ans->message), "out of memory");
        return;
    }
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, PUSH_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, resp);
    if (p->auth_header)
        headers = curl_slist_append(headers, p->auth_header);
    if (body) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    CURLcode cc = curl_easy_perform(curl);
    if (cc != CURLE_OK) {
        snprintf(ans->message, sizeof(ans->message), "agent unreachable at %s: %s", url,
                 curl_easy_strerror(cc));
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &ans->status);
        json_t *doc = json_loadb(resp->data, resp->len, 0, NULL);
        const char *msg = json_string_value(json_object_get(json_object_get(doc, "error"),
                                                            "message"));
        if (msg)
            snprintf(ans->message, sizeof(ans->message), "agent: %s", msg);
        else if (ans->status >= 300)
            snprintf(ans->message, sizeof(ans->message), "agent answered HTTP %ld", ans->status);
        ans->generation = (uint64_t)json_integer_value(json_object_get(doc, "generation"));
        json_decref(doc);
    }
    curl_slist_free_all(headers);
    free(resp);
}

/* Records the outcome of an apply in the store (takes the fleet lock). */
static void record_applied(ks_api *api, const char *vm, uint64_t generation, const char *error)
{
    ks_err err = {0};
    pthread_mutex_lock(&api->lock);
    ks_store_vm_row row;
    memset(&row, 0, sizeof(row));
    uint64_t applied = generation;
    if (error && ks_store_vm_get(&row, api->store, vm, false, NULL) == KS_OK)
        applied = row.applied_generation; /* a failure keeps what was applied before */
    ks_code rc = ks_api__begin(api, &err);
    if (rc == KS_OK)
        rc = ks_store_vm_set_applied(api->store, vm, applied, error, ks_api_now_us(), &err);
    if (rc == KS_OK)
        rc = ks_store_commit(api->store, &err);
    else
        ks_store_rollback(api->store, NULL);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK && rc != KS_ENOTFOUND)
        ks_log(KS_LOG_WARN, "plan push: cannot record vm='%s' code=%s msg='%s', ignoring", vm,
               ks_code_slug(rc), err.msg);
}

/* Snapshot of what an apply must send (read under the fleet lock). */
typedef struct apply_job {
    bool send;
    uint64_t generation;
    char url[KS_TEXT_MAX + KS_ID_MAX + 32];
    char *plan_json;
} apply_job;

static void prepare_apply(ks_api_pusher *p, const push_item *it, apply_job *job)
{
    ks_api *api = p->api;
    ks_store_vm_row row;
    memset(&row, 0, sizeof(row));
    memset(job, 0, sizeof(*job));
    pthread_mutex_lock(&api->lock);
    if (ks_store_vm_get(&row, api->store, it->vm, true, NULL) != KS_OK ||
        row.applied_generation >= row.generation) {
        pthread_mutex_unlock(&api->lock);
        ks_store_vm_row_destroy(&row);
        return; /* deleted, or already applied */
    }
    char base[KS_TEXT_MAX];
    ks_api_agent_url(p, api, row.host_id, base, sizeof(base));
    pthread_mutex_unlock(&api->lock);
    if (base[0] && row.plan_json) {
        size_t n = strlen(base);
        while (n > 0 && base[n - 1] == '/')
            base[--n] = '\0';
        snprintf(job->url, sizeof(job->url), "%s/v1/vms/%s/plan", base, row.name);
        job->plan_json = row.plan_json;
        row.plan_json = NULL;
        job->generation = row.generation;
        job->send = true;
    }
    ks_store_vm_row_destroy(&row);
}

/* Delivers one item; returns true when it is finished (done or given up). */
static bool deliver(ks_api_pusher *p, CURL *curl, push_item *it)
{
    http_answer ans;
    if (it->op == PUSH_DELETE) {
        char url[KS_TEXT_MAX + KS_ID_MAX + 32];
        snprintf(url, sizeof(url), "%s/v1/vms/%s", it->url, it->vm);
        http_call(curl, p, "DELETE", url, NULL, &ans);
        if ((ans.status >= 200 && ans.status < 300) || ans.status == 404)
            return true;
        if (ans.status >= 400 && ans.status < 500) {
            ks_log(KS_LOG_WARN, "plan push: agent refused to stop vm='%s' msg='%s'", it->vm,
                   ans.message);
            return true;
        }
        if (it->attempt + 1 >= PUSH_DELETE_MAX_ATTEMPTS) {
            ks_log(KS_LOG_ERROR, "plan push: giving up stopping vm='%s' on host='%s' msg='%s'",
                   it->vm, it->host, ans.message);
            return true;
        }
        return false;
    }
    apply_job job;
    prepare_apply(p, it, &job);
    if (!job.send)
        return true;
    http_call(curl, p, "PUT", job.url, job.plan_json, &ans);
    free(job.plan_json);
    if (ans.status >= 200 && ans.status < 300) {
        record_applied(p->api, it->vm, job.generation, NULL);
        ks_log(KS_LOG_INFO, "plan applied vm='%s' generation=%llu", it->vm,
               (unsigned long long)job.generation);
        return true;
    }
    if (ans.status >= 400 && ans.status < 500 && ans.status != 429) {
        /* The agent looked at the plan and said no: retrying would not help. */
        record_applied(p->api, it->vm, job.generation, ans.message);
        ks_log(KS_LOG_WARN, "plan refused vm='%s' generation=%llu msg='%s'", it->vm,
               (unsigned long long)job.generation, ans.message);
        return true;
    }
    if (it->attempt + 1 == KS_PUSH_FLAG_AFTER)
        record_applied(p->api, it->vm, job.generation, ans.message);
    return false;
}

static push_item *take_due(ks_api_pusher *p, uint64_t now, uint64_t *next_due)
{
    *next_due = UINT64_MAX;
    for (push_item **pp = &p->head; *pp; pp = &(*pp)->next) {
        if ((*pp)->due_us <= now) {
            push_item *it = *pp;
            *pp = it->next;
            it->next = NULL;
            p->n_items--;
            return it;
        }
        if ((*pp)->due_us < *next_due)
            *next_due = (*pp)->due_us;
    }
    return NULL;
}

static uint64_t backoff_us(ks_api_pusher *p, unsigned attempt)
{
    uint64_t cap = PUSH_BACKOFF_BASE_US << (attempt < 16 ? attempt : 16);
    if (cap > PUSH_BACKOFF_MAX_US)
        cap = PUSH_BACKOFF_MAX_US;
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    return cap / 2 + p->rng % (cap / 2 + 1);
}

static void *worker_main(void *arg)
{
    ks_api_pusher *p = arg;
    CURL *curl = curl_easy_init();
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        uint64_t next_due;
        push_item *it = curl ? take_due(p, mono_us(), &next_due) : NULL;
        if (!it) {
            if (next_due == UINT64_MAX || !curl) {
                pthread_cond_wait(&p->cv, &p->mu);
            } else {
                uint64_t wait = next_due - mono_us() + 1000;
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += (time_t)(wait / 1000000u);
                ts.tv_nsec += (long)(wait % 1000000u) * 1000;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            }
            continue;
        }
        p->in_flight++;
        pthread_mutex_unlock(&p->mu);
        bool finished = deliver(p, curl, it);
        pthread_mutex_lock(&p->mu);
        p->in_flight--;
        if (finished || p->stop) {
            free(it);
            continue;
        }
        it->due_us = mono_us() + backoff_us(p, it->attempt);
        it->attempt++;
        if (it->op == PUSH_APPLY && queued_apply(p, it->vm)) {
            free(it); /* a newer request for the same VM arrived meanwhile */
            continue;
        }
        it->next = p->head;
        p->head = it;
        p->n_items++;
    }
    pthread_mutex_unlock(&p->mu);
    if (curl)
        curl_easy_cleanup(curl);
    return NULL;
}

typedef struct unapplied_ctx {
    ks_api_pusher *p;
    uint64_t older_than_us; /* UINT64_MAX: any age */
} unapplied_ctx;

/* Called with p->mu held. */
static int queue_unapplied(void *ctx, const ks_store_vm_row *row)
{
    unapplied_ctx *u = ctx;
    if (row->applied_generation < row->generation && !row->apply_error[0] &&
        row->updated_us < u->older_than_us && !queued_apply(u->p, row->name))
        enqueue(u->p, PUSH_APPLY, row->name, row->host_id, NULL);
    return 0;
}

void ks_api_pusher_sweep(ks_api_pusher *p, uint64_t older_than_us)
{
    if (!p)
        return;
    ks_err err = {0};
    ks_store_vm_filter f = KS_STORE_VM_FILTER_INIT;
    unapplied_ctx u = {.p = p, .older_than_us = older_than_us};
    size_t before = ks_api_pusher_pending(p);
    pthread_mutex_lock(&p->mu);
    ks_code rc = ks_store_vm_list(p->api->store, &f, queue_unapplied, &u, &err);
    size_t after = p->n_items + p->in_flight;
    pthread_mutex_unlock(&p->mu);
    if (rc != KS_OK)
        ks_log(KS_LOG_WARN, "plan push sweep failed error='%s', retrying later", err.msg);
    else if (after > before)
        ks_log(KS_LOG_INFO, "plan push sweep queued=%zu undelivered plans", after - before);
}

ks_code ks_api_pusher_start(ks_api_pusher **out, ks_api *api, const char *token, ks_err *err)
{
    ks_api_pusher *p = calloc(1, sizeof(*p));
    if (!p)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    p->api = api;
    p->rng = mono_us() | 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (token && token[0]) {
        size_t cap = strlen(token) + 32;
        p->auth_header = malloc(cap);
        if (!p->auth_header) {
            ks_api_pusher_stop(p);
            return ks_err_set(err, KS_ENOMEM, "out of memory");
        }
        snprintf(p->auth_header, cap, "Authorization: Bearer %s", token);
    }
    ks_store_vm_filter f = KS_STORE_VM_FILTER_INIT;
    unapplied_ctx u = {.p = p, .older_than_us = UINT64_MAX};
    pthread_mutex_lock(&p->mu);
    ks_code rc = ks_store_vm_list(api->store, &f, queue_unapplied, &u, err);
    pthread_mutex_unlock(&p->mu);
    if (rc != KS_OK) {
        ks_api_pusher_stop(p);
        return rc;
    }
    if (pthread_create(&p->thread, NULL, worker_main, p) != 0) {
        ks_api_pusher_stop(p);
        return ks_err_set(err, KS_ENOMEM, "cannot start the plan push thread");
    }
    p->started = true;
    *out = p;
    return KS_OK;
}

void ks_api_pusher_stop(ks_api_pusher *p)
{
    if (!p)
        return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    while (p->head) {
        push_item *it = p->head;
        p->head = it->next;
        free(it);
    }
    for (unsigned b = 0; b < URL_BUCKETS; b++)
        while (p->urls[b]) {
            url_entry *e = p->urls[b];
            p->urls[b] = e->next;
            free(e);
        }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->auth_header);
    free(p);
}
