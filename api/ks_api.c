/*
 * ks_api.c - the ks_api object: start-up (index rebuilt from the store), the
 * background thread (lost hosts, capacity snapshots) and shutdown.
 *
 * Invariant: the fleet index only ever holds what the store has committed.  At
 * start it is rebuilt from the store: every host's last report, its drained/lost
 * state, pools, feature bans, then every live VM with its request and plan.
 *
 * Threading: api->lock (the fleet lock) guards store + fleet; the background
 * thread takes it like any handler.  The transport lives in ks_api_http.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ks_api_int.h"
#include "ks_api_push.h"
#include "ks_log.h"
#include "ks_sched.h"
#include "ks_store.h"

/* ks_api_http.c */
ks_code ks_api__http_start(ks_api *api, ks_err *err);
void ks_api__http_stop(ks_api *api, uint64_t grace_us);

/* ---- rebuilding the index ---- */

typedef struct rebuild_ctx {
    ks_api *api;
    ks_store *rd; /* where the hosts are read: a second handle, or api->store */
    ks_code rc;
    ks_err *err;
    uint32_t n_hosts, n_vms, n_skipped;
} rebuild_ctx;

typedef struct id_list {
    char (*ids)[KS_ID_MAX];
    size_t n, cap;
    bool oom;
} id_list;

/* Appends an id; returns non-zero (stop listing) when out of memory. */
static int id_list_push(id_list *l, const char *id)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->ids, ncap * sizeof(*l->ids));
        if (!p) {
            l->oom = true;
            return 1;
        }
        l->ids = p;
        l->cap = ncap;
    }
    snprintf(l->ids[l->n++], KS_ID_MAX, "%s", id);
    return 0;
}

static int collect_pool(void *ctx, const ks_store_pool_row *row)
{
    return id_list_push(ctx, row->name);
}
static int collect_member(void *ctx, const char *pool, const char *host_id)
{
    (void)pool;
    return id_list_push(ctx, host_id);
}

/*
 * A second read-only handle for a bulk scan (SQLite on a file only: a
 * PostgreSQL replica keeps to its one connection), mapping the whole file:
 * the start-up reads most of it once, and pages read through the mapping
 * are not copied.  NULL when there is none to be had.
 */
static ks_store *open_bulk_reader(ks_store *store, ks_err *e)
{
    ks_store *rd = NULL;
    int64_t mapped = 0;
    if (strcmp(ks_store_backend(store), "sqlite") != 0 ||
        ks_store_open_reader(&rd, store, e) != KS_OK)
        return NULL;
    /* SQLite caps it at its build's maximum (2 GiB by default) */
    if (ks_store_query_int(&mapped, rd, "PRAGMA mmap_size = 2147418112", e) != KS_OK)
        ks_log(KS_LOG_DEBUG, "index rebuild: no mmap error='%s'", e->msg);
    return rd;
}

/*
 * Hosts are rebuilt from the cpus table (one sequential ks_store_cpu_scan, the
 * feature sets already decoded) rather than from each stored report's JSON:
 * decoding ~128 CPUs of JSON per host was most of a 10k-host start-up.  What
 * the scheduler reads that the rows lack (host info, kinds, numa, pmu) comes
 * from the report's small top-level members (ks_report_parse_header).  A host
 * whose rows and header do not fit together falls back to the full report.
 */
typedef struct host_slot {
    ks_store_host_row row;
    ks_report *head; /* header-only report; NULL when unreadable */
    bool taken;      /* its rows were scanned (the scan's) */
    bool done;       /* indexed (the index thread's) */
} host_slot;

/*
 * The headers are read (~45 KB of report text per host, one scan of the
 * stored reports) on a thread of their own with its own handle while the cpus
 * scan runs, ahead of it in the same (id) order; the scan waits for a host's
 * header only when it gets there first.
 */
typedef struct head_reader {
    ks_store *rd;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n_done;  /* hosts[0 .. n_done) have their header (under mu) */
    size_t next;    /* the thread's: the next host it may fill */
    bool finished;  /* the thread has ended (under mu) */
    bool stop;      /* the scan gave up (under mu) */
    ks_code rc;     /* a failed query ends it; the rebuild then fails */
    ks_err err;
    struct host_scan *s;
} head_reader;

typedef struct host_scan {
    rebuild_ctx *c;
    host_slot *hosts;
    size_t n_hosts, cap_hosts;
    /* the host being scanned: its rows go straight into its header's CPUs */
    char current[KS_ID_MAX];
    host_slot *cur; /* NULL: rows of no host, or of one already taken */
    uint32_t cur_n;
    bool cur_ok;    /* false: its rows do not fit its header (or no header) */
    ks_err cur_err;
    bool oom;
    head_reader *hr; /* NULL: headers read before the scan */
    /* With a scan thread: hosts whose header took their rows, for the index
     * thread to add (indexes into hosts, in scan order; under mu). */
    bool threaded;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t *ready;
    size_t n_ready, n_added;
    bool finished;
    ks_code rc; /* the scan's */
    ks_err err;
} host_scan;

static int collect_host_row(void *ctx, const ks_store_host_row *row)
{
    host_scan *s = ctx;
    if (s->n_hosts == s->cap_hosts) {
        size_t ncap = s->cap_hosts ? s->cap_hosts * 2 : 256;
        void *p = realloc(s->hosts, ncap * sizeof(*s->hosts));
        if (!p) {
            s->oom = true;
            return 1;
        }
        s->hosts = p;
        s->cap_hosts = ncap;
    }
    host_slot *h = &s->hosts[s->n_hosts++];
    memset(h, 0, sizeof(*h));
    h->row = *row;
    h->row.report_json = NULL;
    return 0;
}

static int host_slot_cmp(const void *a, const void *b)
{
    return strcmp(((const host_slot *)a)->row.id, ((const host_slot *)b)->row.id);
}

static host_slot *host_slot_find(host_scan *s, const char *id)
{
    host_slot key;
    snprintf(key.row.id, sizeof(key.row.id), "%s", id);
    return bsearch(&key, s->hosts, s->n_hosts, sizeof(*s->hosts), host_slot_cmp);
}

/* The old way, for one host: its whole stored report. */
static void rebuild_host_from_report(rebuild_ctx *c, host_slot *h)
{
    ks_store_host_row row = {0};
    ks_report *r = NULL;
    ks_err e = {0};
    h->done = true;
    if (ks_store_host_get(&row, c->rd, h->row.id, true, &e) != KS_OK ||
        !row.report_json ||
        ks_report_parse(&r, row.report_json, strlen(row.report_json), &e) != KS_OK ||
        ks_fleet_host_update(c->api->fleet, r, NULL, &e) != KS_OK) {
        /* A stored report this build cannot load (older schema, catalogue change)
         * must not keep the daemon down: the agent's next report restores it. */
        ks_log(KS_LOG_WARN, "index rebuild host='%s' error='%s', skipping until its next report",
               h->row.id, e.msg[0] ? e.msg : "no report");
        c->n_skipped++;
    } else {
        c->n_hosts++;
        if (h->row.state != KS_STORE_HOST_READY)
            ks_fleet_host_set_schedulable(c->api->fleet, h->row.id, false, NULL);
    }
    ks_report_free(r);
    ks_store_host_row_destroy(&row);
}

/* One cpus row into r's CPU cp; false when the report does not list its kind. */
static bool cpu_from_row(const ks_report *r, ks_cpu *cp, const ks_store_cpu_row *w, ks_err *e)
{
    ks_store_cpu_row_to_cpu(cp, w);
    if (w->kind_class < 0)
        return true;
    /* the row keeps the kind's class and name; its index is the report's */
    for (uint32_t k = 0; k < r->n_kinds && cp->kind < 0; k++)
        if (r->kinds[k].kind_class == w->kind_class &&
            strcmp(r->kinds[k].name, w->kind_name) == 0)
            cp->kind = (int32_t)k;
    if (cp->kind < 0) {
        ks_err_set(e, KS_EINVAL, "cpu %d has kind '%s' the report does not list", w->cpu_id,
                   w->kind_name);
        return false;
    }
    return true;
}

/* Reads host h's report and decodes its header into h->head (left NULL when
 * it has none or it does not decode); fails only when the query does. */
static ks_code head_read(ks_store *rd, host_slot *h, ks_err *err)
{
    ks_store_host_row row = {0};
    ks_err e = {0};
    ks_code rc = ks_store_host_get(&row, rd, h->row.id, true, err);
    if (rc == KS_OK && row.report_json)
        ks_report_parse_header(&h->head, row.report_json, strlen(row.report_json), &e);
    ks_store_host_row_destroy(&row);
    return rc;
}

/* One stored report (in host id order): its header into its host's slot. */
static int head_report(void *ctx, const char *host_id, const char *text, size_t len)
{
    head_reader *hr = ctx;
    host_scan *s = hr->s;
    host_slot *h = host_slot_find(s, host_id);
    if (!h || (size_t)(h - s->hosts) < hr->next)
        return 0; /* no host row, or out of order: the full report decides later */
    ks_err e = {0};
    if (text)
        ks_report_parse_header(&h->head, text, len, &e);
    /* the hosts before it have no report: their headers stay NULL */
    hr->next = (size_t)(h - s->hosts) + 1;
    pthread_mutex_lock(&hr->mu);
    hr->n_done = hr->next;
    bool stop = hr->stop;
    pthread_cond_broadcast(&hr->cv);
    pthread_mutex_unlock(&hr->mu);
    return stop;
}

/* One scan of the stored reports (no point query, no copy per host). */
static void *head_reader_main(void *arg)
{
    head_reader *hr = arg;
    ks_err e = {0};
    ks_code rc = ks_store_report_scan(hr->rd, head_report, hr, &e);
    pthread_mutex_lock(&hr->mu);
    hr->finished = true;
    hr->rc = rc;
    hr->err = e;
    pthread_cond_broadcast(&hr->cv);
    pthread_mutex_unlock(&hr->mu);
    return NULL;
}

/* Waits until hosts[i]'s header is read (or will never be). */
static void head_wait(head_reader *hr, size_t i)
{
    pthread_mutex_lock(&hr->mu);
    while (hr->n_done <= i && !hr->finished)
        pthread_cond_wait(&hr->cv, &hr->mu);
    pthread_mutex_unlock(&hr->mu);
}

/* Indexes a host whose header took its rows (the index thread). */
static void host_index(rebuild_ctx *c, host_slot *h)
{
    ks_err e = {0};
    if (ks_fleet_host_update(c->api->fleet, h->head, NULL, &e) == KS_OK) {
        h->done = true;
        c->n_hosts++;
        if (h->row.state != KS_STORE_HOST_READY)
            ks_fleet_host_set_schedulable(c->api->fleet, h->row.id, false, NULL);
    } else {
        ks_log(KS_LOG_DEBUG, "index rebuild host='%s' from cpu rows failed error='%s', "
                             "loading its report", h->row.id, e.msg);
    }
    ks_report_free(h->head);
    h->head = NULL;
}

/* Hands a host to the index thread (which takes them all, in order).  At
 * most 256 wait, each with a whole host's CPUs. */
static void host_ready(host_scan *s, host_slot *h)
{
    pthread_mutex_lock(&s->mu);
    while (s->n_ready - s->n_added >= 256)
        pthread_cond_wait(&s->cv, &s->mu);
    s->ready[s->n_ready++] = (size_t)(h - s->hosts);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* The host just scanned, its rows taken: to the index, or to the fallback. */
static void host_scan_flush(host_scan *s)
{
    host_slot *h = s->cur;
    if (!h)
        return;
    s->cur = NULL;
    if (s->cur_ok && ks_report_alloc_cpus(h->head, s->cur_n, &s->cur_err) == KS_OK) {
        if (s->threaded)
            host_ready(s, h);
        else
            host_index(s->c, h);
        return;
    }
    /* Loaded from its full report after the scan: no store query while the
     * cpus scan is open. */
    ks_log(KS_LOG_DEBUG, "index rebuild host='%s' from cpu rows failed error='%s', "
                         "loading its report", h->row.id, s->cur_err.msg);
    ks_report_free(h->head);
    h->head = NULL;
}

/* The first row of host `id`: its slot, its header, room for its CPUs. */
static void host_scan_begin(host_scan *s, const char *id)
{
    host_slot *h = host_slot_find(s, id);
    snprintf(s->current, sizeof(s->current), "%s", id);
    s->cur = NULL;
    if (!h || h->taken)
        return; /* rows without a host row: nothing the daemon could index */
    h->taken = true;
    s->cur = h;
    s->cur_n = 0;
    s->cur_err = (ks_err){0};
    if (s->hr)
        head_wait(s->hr, (size_t)(h - s->hosts));
    s->cur_ok = h->head && strcmp(h->head->host.id, h->row.id) == 0 &&
                ks_report_alloc_cpus(h->head, h->row.n_cpus ? h->row.n_cpus : 64,
                                     &s->cur_err) == KS_OK;
}

static int scan_cpu_row(void *ctx, const ks_store_cpu_row *row)
{
    host_scan *s = ctx;
    if (strcmp(row->host_id, s->current) != 0) {
        host_scan_flush(s);
        host_scan_begin(s, row->host_id);
    }
    if (!s->cur || !s->cur_ok)
        return 0;
    ks_report *r = s->cur->head;
    /* more rows than the hosts row said: room for twice as many */
    if (s->cur_n == r->n_cpus &&
        ks_report_alloc_cpus(r, r->n_cpus ? r->n_cpus * 2 : 64, &s->cur_err) != KS_OK) {
        s->cur_ok = false;
        return 0;
    }
    s->cur_ok = cpu_from_row(r, &r->cpus[s->cur_n], row, &s->cur_err);
    s->cur_n++;
    return 0;
}

/* The cpus scan: on its own thread (s->threaded), or inline. */
static void *host_scan_main(void *arg)
{
    host_scan *s = arg;
    ks_err e = {0};
    ks_code rc = ks_store_cpu_scan(s->c->rd, NULL, scan_cpu_row, s, &e);
    if (rc == KS_OK && s->oom)
        rc = ks_err_set(&e, KS_ENOMEM, "out of memory scanning cpus");
    if (rc == KS_OK)
        host_scan_flush(s);
    pthread_mutex_lock(&s->mu);
    s->finished = true;
    s->rc = rc;
    s->err = e;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static ks_code rebuild_hosts(rebuild_ctx *c)
{
    host_scan s = {.c = c};
    ks_code rc = ks_store_host_list(c->rd, NULL, collect_host_row, &s, c->err);
    if (rc == KS_OK && s.oom)
        rc = ks_err_set(c->err, KS_ENOMEM, "out of memory listing hosts");
    if (rc == KS_OK && s.n_hosts)
        qsort(s.hosts, s.n_hosts, sizeof(*s.hosts), host_slot_cmp);
    head_reader hr = {.s = &s};
    ks_err e = {0};
    pthread_mutex_init(&hr.mu, NULL);
    pthread_cond_init(&hr.cv, NULL);
    if (rc == KS_OK && s.n_hosts && (hr.rd = open_bulk_reader(c->api->store, &e))) {
        hr.started = pthread_create(&hr.thread, NULL, head_reader_main, &hr) == 0;
        s.hr = hr.started ? &hr : NULL;
    }
    for (size_t i = 0; rc == KS_OK && !hr.started && i < s.n_hosts; i++)
        rc = head_read(c->rd, &s.hosts[i], c->err);
    /* The scan on a thread of its own when the hosts are read on a second
     * handle (c->rd is then the scan's alone until it ends). */
    pthread_t scan_thread;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    if (rc == KS_OK && hr.started && c->rd != c->api->store &&
        (s.ready = malloc((s.n_hosts + 1) * sizeof(*s.ready))))
        s.threaded = pthread_create(&scan_thread, NULL, host_scan_main, &s) == 0;
    if (rc == KS_OK && !s.threaded) {
        host_scan_main(&s);
        rc = s.rc;
        if (rc != KS_OK)
            *c->err = s.err;
    }
    if (s.threaded) {
        /* add the hosts as the scan hands them over, in its order */
        pthread_mutex_lock(&s.mu);
        for (;;) {
            if (s.n_added < s.n_ready) {
                host_slot *h = &s.hosts[s.ready[s.n_added++]];
                pthread_cond_broadcast(&s.cv);
                pthread_mutex_unlock(&s.mu);
                host_index(c, h);
                pthread_mutex_lock(&s.mu);
            } else if (s.finished) {
                break;
            } else {
                pthread_cond_wait(&s.cv, &s.mu);
            }
        }
        pthread_mutex_unlock(&s.mu);
        pthread_join(scan_thread, NULL);
        rc = s.rc;
        if (rc != KS_OK)
            *c->err = s.err;
    }
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    free(s.ready);
    if (hr.started) {
        pthread_mutex_lock(&hr.mu);
        hr.stop = true;
        pthread_mutex_unlock(&hr.mu);
        pthread_join(hr.thread, NULL);
        if (rc == KS_OK && hr.rc != KS_OK) {
            rc = hr.rc;
            *c->err = hr.err;
        }
    }
    ks_store_close(hr.rd);
    pthread_mutex_destroy(&hr.mu);
    pthread_cond_destroy(&hr.cv);
    /* Hosts the scan never reached (no cpu rows) or whose rows did not fit
     * their header: the full report decides, as before. */
    for (size_t i = 0; rc == KS_OK && i < s.n_hosts; i++)
        if (!s.hosts[i].done)
            rebuild_host_from_report(c, &s.hosts[i]);
    for (size_t i = 0; i < s.n_hosts; i++)
        ks_report_free(s.hosts[i].head);
    free(s.hosts);
    return rc;
}

/* Loads pool `name`'s members from the store into the fleet. */
ks_code ks_api__sync_pool(ks_api *api, const char *name, ks_err *err)
{
    id_list hosts = {0};
    ks_code rc = ks_store_pool_members_list(api->store, name, collect_member, &hosts, err);
    if (rc == KS_OK && hosts.oom)
        rc = ks_err_set(err, KS_ENOMEM, "out of memory listing pool members");
    const char **ptrs = NULL;
    if (rc == KS_OK) {
        ptrs = calloc(hosts.n + 1, sizeof(*ptrs));
        if (!ptrs)
            rc = ks_err_set(err, KS_ENOMEM, "out of memory");
    }
    for (size_t i = 0; rc == KS_OK && i < hosts.n; i++)
        ptrs[i] = hosts.ids[i];
    if (rc == KS_OK)
        rc = ks_fleet_pool_set(api->fleet, name, ptrs, hosts.n, err);
    free(ptrs);
    free(hosts.ids);
    return rc;
}

typedef struct ban_ctx {
    ks_featset set;
    ks_code rc;
    ks_err *err;
} ban_ctx;

static int collect_ban(void *ctx, const ks_store_policy_row *row)
{
    ban_ctx *b = ctx;
    if (row->kind != KS_STORE_POLICY_FEATURE_BAN || !row->features_json)
        return 0;
    json_error_t je;
    json_t *arr = json_loads(row->features_json, 0, &je);
    ks_featset s;
    ks_err e = {0};
    if (!arr || ks_featset_from_json(&s, arr, "features", &e) != KS_OK) {
        ks_log(KS_LOG_WARN, "policy id=%lld has unreadable features, ignoring",
               (long long)row->id);
    } else {
        ks_featset_or(&b->set, &b->set, &s);
    }
    json_decref(arr);
    return 0;
}

/* Recomputes the fleet's banned set from every stored ban policy. */
ks_code ks_api__sync_bans(ks_api *api, ks_err *err)
{
    ban_ctx b = {.err = err};
    ks_featset_clear(&b.set);
    ks_code rc = ks_store_policy_list(api->store, collect_ban, &b, err);
    if (rc == KS_OK)
        ks_fleet_set_bans(api->fleet, &b.set);
    return rc;
}

/*
 * VMs: one sequential scan of the vm rows with their JSON (not a point query
 * per VM), in batches; their VMs are added to the fleet in scan order by the
 * index thread alone.
 *
 * With a second read-only handle on the store (SQLite on a file), a loader
 * thread reads the rows and decodes each from the store's buffers while the
 * index thread still rebuilds the hosts; the index thread then adds the
 * decoded batches.  Without one (an in-memory store), the scan runs after the
 * hosts and each batch's text is copied and decoded by two threads.
 */
#define KS_API_VM_BATCH 2048
/* Decoded batches the loader may hold ahead of the index (~4.5 MB each):
 * bounds the start-up's extra memory when the hosts are slow.  At 10k hosts
 * (104 batches) 64 was as fast as 128. */
#define KS_API_VM_AHEAD 64

typedef struct vm_item {
    char name[KS_ID_MAX];
    size_t req_off, plan_off; /* into the batch text; SIZE_MAX = no JSON */
    size_t req_len, plan_len;
    ks_vm_request *req;
    ks_plan *plan;
    ks_err e;
    ks_code rc;
} vm_item;

typedef struct vm_batch {
    struct vm_batch *next;
    size_t n;
    char *text; /* the rows' JSON, NUL-terminated one after another */
    size_t text_len, text_cap;
    bool oom;
    vm_item items[KS_API_VM_BATCH];
} vm_batch;

/* One VM's request and plan text (NULL: the row has none). */
static void vm_item_decode(vm_item *it, const char *rq, size_t rq_len, const char *pl,
                           size_t pl_len, ks_plan_cache *cache)
{
    it->rc = KS_EINVAL;
    if (!rq || !pl) {
        ks_err_set(&it->e, KS_EINVAL, "bad json");
        return;
    }
    it->rc = ks_vm_request_parse(&it->req, rq, rq_len, &it->e);
    if (it->rc == KS_OK)
        it->rc = ks_plan_parse(&it->plan, pl, pl_len, cache, &it->e);
}

static void vm_decode(vm_batch *b, size_t from, size_t to, ks_plan_cache *cache)
{
    for (size_t i = from; i < to; i++) {
        vm_item *it = &b->items[i];
        bool has = it->req_off != SIZE_MAX && it->plan_off != SIZE_MAX;
        vm_item_decode(it, has ? b->text + it->req_off : NULL, it->req_len,
                       has ? b->text + it->plan_off : NULL, it->plan_len, cache);
    }
}

typedef struct vm_part {
    vm_batch *b;
    size_t from, to;
    ks_plan_cache *cache;
} vm_part;

static void *vm_decode_part(void *arg)
{
    vm_part *pt = arg;
    vm_decode(pt->b, pt->from, pt->to, pt->cache);
    return NULL;
}

static size_t vm_batch_put(vm_batch *b, const char *t, size_t *len)
{
    if (!t)
        return SIZE_MAX;
    *len = strlen(t);
    size_t n = *len + 1;
    if (b->text_len + n > b->text_cap) {
        size_t ncap = b->text_cap ? b->text_cap : 1u << 20;
        while (ncap < b->text_len + n)
            ncap *= 2;
        char *p = realloc(b->text, ncap);
        if (!p) {
            b->oom = true;
            return SIZE_MAX;
        }
        b->text = p;
        b->text_cap = ncap;
    }
    memcpy(b->text + b->text_len, t, n);
    b->text_len += n;
    return b->text_len - n;
}

/* Appends one row's name and text; false when out of memory. */
static bool vm_batch_put_row(vm_batch *b, const ks_store_vm_row *row)
{
    vm_item *it = &b->items[b->n];
    memset(it, 0, sizeof(*it));
    snprintf(it->name, sizeof(it->name), "%s", row->name);
    it->req_off = vm_batch_put(b, row->request_json, &it->req_len);
    it->plan_off = vm_batch_put(b, row->plan_json, &it->plan_len);
    if (b->oom)
        return false;
    b->n++;
    return true;
}

/* Adds a decoded batch's VMs to the fleet, in order, and empties it. */
static void vm_batch_add(rebuild_ctx *c, vm_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        vm_item *it = &b->items[i];
        if (it->rc == KS_OK)
            it->rc = ks_fleet_vm_add(c->api->fleet, it->req, it->plan, &it->e);
        if (it->rc != KS_OK) {
            /* Its CPUs stay reserved in the store (vm_vcpus), so nothing can be placed
             * on them twice; an operator must look at it. */
            ks_log(KS_LOG_ERROR, "index rebuild vm='%s' error='%s', its cpus stay allocated "
                                 "in the store", it->name, it->e.msg[0] ? it->e.msg : "bad json");
            c->n_skipped++;
        } else {
            c->n_vms++;
        }
        ks_vm_request_free(it->req);
        ks_plan_free(it->plan);
        it->req = NULL;
        it->plan = NULL;
    }
    b->n = 0;
    b->text_len = 0;
}

/* NULL-safe; frees what a batch never added still holds. */
static void vm_batch_free(vm_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        ks_vm_request_free(b->items[i].req);
        ks_plan_free(b->items[i].plan);
    }
    free(b->text);
    free(b);
}

/* ---- without a second handle: scan after the hosts, two decode threads ---- */

typedef struct vm_here {
    rebuild_ctx *c;
    vm_batch *b;
    ks_plan_cache *cache[2];
} vm_here;

static void vm_here_flush(vm_here *h)
{
    vm_batch *b = h->b;
    vm_part parts[2] = {{b, 0, b->n / 2, h->cache[0]}, {b, b->n / 2, b->n, h->cache[1]}};
    pthread_t th;
    bool threaded = b->n >= 64 && pthread_create(&th, NULL, vm_decode_part, &parts[1]) == 0;
    if (!threaded)
        parts[0].to = b->n;
    vm_decode_part(&parts[0]);
    if (threaded)
        pthread_join(th, NULL);
    vm_batch_add(h->c, b);
}

static int vm_here_row(void *ctx, const ks_store_vm_row *row)
{
    vm_here *h = ctx;
    if (!vm_batch_put_row(h->b, row))
        return 1;
    if (h->b->n == KS_API_VM_BATCH)
        vm_here_flush(h);
    return 0;
}

static ks_code rebuild_vms_here(rebuild_ctx *c)
{
    ks_store_vm_filter f = KS_STORE_VM_FILTER_INIT;
    f.with_json = true;
    vm_here h = {.c = c};
    ks_code rc = KS_OK;
    if (!(h.b = calloc(1, sizeof(*h.b))))
        return ks_err_set(c->err, KS_ENOMEM, "out of memory");
    rc = ks_plan_cache_new(&h.cache[0], c->err);
    if (rc == KS_OK)
        rc = ks_plan_cache_new(&h.cache[1], c->err);
    if (rc == KS_OK)
        rc = ks_store_vm_list(c->api->store, &f, vm_here_row, &h, c->err);
    if (rc == KS_OK && h.b->oom)
        rc = ks_err_set(c->err, KS_ENOMEM, "out of memory loading vms");
    if (rc == KS_OK)
        vm_here_flush(&h);
    ks_plan_cache_free(h.cache[0]);
    ks_plan_cache_free(h.cache[1]);
    vm_batch_free(h.b);
    return rc;
}

/* ---- with a second handle: the loader thread ---- */

typedef struct vm_loader {
    rebuild_ctx *c;
    ks_store *reader; /* the loader's own read-only handle */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu: */
    vm_batch *head, *tail; /* decoded, in scan order */
    size_t n_queued;
    vm_batch *spare; /* added batches, for reuse (no fresh pages per batch) */
    bool stop;       /* the index thread gave up: end the scan */
    bool done;       /* the scan has ended; rc and err say how */
    ks_code rc;
    ks_err err;
    /* the loader's alone: */
    vm_batch *filling;
    bool oom;
    ks_plan_cache *cache;
} vm_loader;

/* Queues the filled batch; false when the index thread gave up. */
static bool loader_push(vm_loader *L)
{
    pthread_mutex_lock(&L->mu);
    while (L->n_queued >= KS_API_VM_AHEAD && !L->stop)
        pthread_cond_wait(&L->cv, &L->mu);
    bool ok = !L->stop;
    if (ok) {
        vm_batch *b = L->filling;
        L->filling = NULL;
        if (L->tail)
            L->tail->next = b;
        else
            L->head = b;
        L->tail = b;
        L->n_queued++;
        pthread_cond_broadcast(&L->cv);
    }
    pthread_mutex_unlock(&L->mu);
    return ok;
}

/* Each row is decoded as it is read, from the store's own buffers: no copy. */
static int loader_row(void *ctx, const ks_store_vm_row *row)
{
    vm_loader *L = ctx;
    if (!L->filling) {
        pthread_mutex_lock(&L->mu);
        L->filling = L->spare;
        if (L->spare)
            L->spare = L->spare->next;
        pthread_mutex_unlock(&L->mu);
        if (!L->filling && !(L->filling = malloc(sizeof(*L->filling)))) {
            L->oom = true;
            return 1;
        }
        L->filling->next = NULL;
        L->filling->n = 0;
        L->filling->text = NULL;
    }
    vm_item *it = &L->filling->items[L->filling->n++];
    it->req = NULL;
    it->plan = NULL;
    it->e.code = KS_OK;
    it->e.field[0] = it->e.msg[0] = '\0';
    snprintf(it->name, sizeof(it->name), "%s", row->name);
    const char *rq = row->request_json, *pl = row->plan_json;
    vm_item_decode(it, rq, rq ? strlen(rq) : 0, pl, pl ? strlen(pl) : 0, L->cache);
    if (L->filling->n == KS_API_VM_BATCH && !loader_push(L))
        return 1; /* told to stop */
    return 0;
}

static void *loader_main(void *arg)
{
    vm_loader *L = arg;
    ks_store_vm_filter f = KS_STORE_VM_FILTER_INIT;
    ks_err e = {0};
    f.with_json = true;
    ks_code rc = ks_store_vm_list(L->reader, &f, loader_row, L, &e);
    if (rc == KS_OK && L->oom)
        rc = ks_err_set(&e, KS_ENOMEM, "out of memory loading vms");
    if (rc == KS_OK && L->filling && L->filling->n)
        loader_push(L); /* the last, partial batch (refused only when told to stop) */
    pthread_mutex_lock(&L->mu);
    L->done = true;
    L->rc = rc;
    L->err = e;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* Starts the loader (when `go` and a second handle can be had); else
 * L->started stays false. */
static void vm_loader_start(vm_loader *L, rebuild_ctx *c, bool go)
{
    ks_err e = {0};
    memset(L, 0, sizeof(*L));
    L->c = c;
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv, NULL);
    if (!go)
        return;
    if (!(L->reader = open_bulk_reader(c->api->store, &e)) ||
        ks_plan_cache_new(&L->cache, &e) != KS_OK ||
        pthread_create(&L->thread, NULL, loader_main, L) != 0) {
        ks_log(KS_LOG_DEBUG, "index rebuild: vms loaded after the hosts (%s)",
               e.msg[0] ? e.msg : "not sqlite");
        return;
    }
    L->started = true;
}

/* The index thread, hosts done: adds the decoded batches in scan order. */
static ks_code vm_loader_consume(vm_loader *L)
{
    rebuild_ctx *c = L->c;
    pthread_mutex_lock(&L->mu);
    for (;;) {
        vm_batch *b = L->head;
        if (!b) {
            if (L->done)
                break;
            pthread_cond_wait(&L->cv, &L->mu);
            continue;
        }
        L->head = b->next;
        if (!L->head)
            L->tail = NULL;
        L->n_queued--;
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
        vm_batch_add(c, b);
        pthread_mutex_lock(&L->mu);
        b->next = L->spare;
        L->spare = b;
    }
    ks_code rc = L->rc;
    if (rc != KS_OK)
        *c->err = L->err;
    pthread_mutex_unlock(&L->mu);
    return rc;
}

/* Stops the loader (when still running) and frees what it holds. */
static void vm_loader_finish(vm_loader *L)
{
    if (L->started) {
        pthread_mutex_lock(&L->mu);
        L->stop = true;
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
        pthread_join(L->thread, NULL);
    }
    while (L->head) {
        vm_batch *b = L->head;
        L->head = b->next;
        vm_batch_free(b);
    }
    while (L->spare) {
        vm_batch *b = L->spare;
        L->spare = b->next;
        vm_batch_free(b);
    }
    vm_batch_free(L->filling);
    ks_plan_cache_free(L->cache);
    ks_store_close(L->reader);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv);
}

static ks_code rebuild_index(ks_api *api, ks_err *err)
{
    rebuild_ctx c = {.api = api, .err = err};
    vm_loader loader;
    ks_err e = {0};
    uint64_t t0 = ks_api_mono_us();
    ks_code rc = ks_api__changes_start(api, err);
    /* after the change cursor: what the scans miss, the feed replays */
    vm_loader_start(&loader, &c, rc == KS_OK);
    ks_store *host_reader = rc == KS_OK ? open_bulk_reader(api->store, &e) : NULL;
    c.rd = host_reader ? host_reader : api->store;
    if (rc == KS_OK)
        rc = rebuild_hosts(&c);
    ks_store_close(host_reader);
    uint64_t t_hosts = ks_api_mono_us();
    id_list pools = {0};
    if (rc == KS_OK)
        rc = ks_store_pool_list(api->store, collect_pool, &pools, err);
    for (size_t i = 0; rc == KS_OK && i < pools.n; i++)
        rc = ks_api__sync_pool(api, pools.ids[i], err);
    free(pools.ids);
    if (rc == KS_OK)
        rc = ks_api__sync_bans(api, err);
    uint64_t t_vms = ks_api_mono_us();
    if (rc == KS_OK)
        rc = loader.started ? vm_loader_consume(&loader) : rebuild_vms_here(&c);
    vm_loader_finish(&loader);
    uint64_t t1 = ks_api_mono_us();
    if (rc == KS_OK)
        ks_log(KS_LOG_INFO,
               "index rebuilt hosts=%u vms=%u skipped=%u duration_us=%llu hosts_us=%llu "
               "vms_us=%llu vm_loader=%d",
               c.n_hosts, c.n_vms, c.n_skipped, (unsigned long long)(t1 - t0),
               (unsigned long long)(t_hosts - t0), (unsigned long long)(t1 - t_vms),
               loader.started);
    return rc;
}

/* ---- lifecycle ---- */

ks_code ks_api_new(ks_api **out, const ks_api_options *opts, struct ks_store *store, ks_err *err)
{
    ks_code rc = KS_OK;
    ks_api *api = NULL;
    if (!opts || !store)
        return ks_err_set(err, KS_EINVAL, "options and store are required");
    if (opts->threads > 256)
        return ks_err_set_field(err, KS_EINVAL, "threads",
                                "threads must be 0 (one per connection) or 1..256");
    if (opts->max_body_bytes < 1024)
        return ks_err_set_field(err, KS_EINVAL, "max-body", "body limit must be >= 1024 bytes");
    if (!opts->tls_cert_pem != !opts->tls_key_pem)
        return ks_err_set_field(err, KS_EINVAL, "tls-cert",
                                "TLS needs both a certificate and a key");
    api = calloc(1, sizeof(*api));
    if (!api)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    api->opts = *opts;
    snprintf(api->listen_host, sizeof(api->listen_host), "%s",
             opts->listen_host ? opts->listen_host : "127.0.0.1");
    api->opts.listen_host = api->listen_host;
    if (opts->tls_cert_pem) {
        api->tls_cert = strdup(opts->tls_cert_pem);
        api->tls_key = strdup(opts->tls_key_pem);
        if (!api->tls_cert || !api->tls_key) {
            rc = ks_err_set(err, KS_ENOMEM, "out of memory");
            goto done;
        }
    }
    api->opts.tls_cert_pem = api->tls_cert;
    api->opts.tls_key_pem = api->tls_key;
    if (opts->agent_plan_token && !(api->agent_plan_token = strdup(opts->agent_plan_token))) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    api->opts.agent_plan_token = api->agent_plan_token;
    api->store = store;
    api->started_us = ks_api_now_us();
    pthread_mutex_init(&api->lock, NULL);
    pthread_mutex_init(&api->bg_mu, NULL);
    pthread_cond_init(&api->bg_cv, NULL);
    pthread_cond_init(&api->group_cv, NULL);
    pthread_mutex_init(&api->rl_mu, NULL);
    pthread_mutex_init(&api->flight_mu, NULL);
    pthread_cond_init(&api->flight_cv, NULL);
    ks_metrics_init(&api->metrics);
    atomic_init(&api->next_request, 1);
    atomic_init(&api->group_writers, 0);
    rc = ks_fleet_new(&api->fleet, err);
    if (rc != KS_OK)
        goto done;
    rc = rebuild_index(api, err);
    if (rc != KS_OK)
        goto done;
    api->index_loaded = true;
    *out = api;
    api = NULL;
done:
    ks_api_free(api);
    return rc;
}

#define KS_API_EXPIRE_PERIOD_US (600ull * 1000000)
/* Replicas: how often the leader re-queues plans no replica delivered, and how
 * old such a plan must be (younger ones are still in their replica's queue). */
#define KS_API_PUSH_SWEEP_US (5ull * 1000000)
#define KS_API_IDEM_TTL_US (24ull * 3600 * 1000000)

/* Idempotency keys are kept one day: long enough for any client retry loop. */
static void expire_old_rows(ks_api *api)
{
    ks_err err = {0};
    uint64_t n = 0, now = ks_api_now_us();
    ks_code rc = ks_api__begin(api, &err);
    if (rc == KS_OK)
        rc = ks_store_idem_expire(&n, api->store, now - KS_API_IDEM_TTL_US, &err);
    if (rc == KS_OK)
        rc = ks_store_commit(api->store, &err);
    else
        ks_store_rollback(api->store, NULL);
    if (rc != KS_OK)
        ks_log(KS_LOG_WARN, "idempotency key expiry failed error='%s', ignoring", err.msg);
    else if (n)
        ks_log(KS_LOG_INFO, "idempotency keys expired n=%llu", (unsigned long long)n);
}

static void *bg_main(void *arg)
{
    ks_api *api = arg;
    uint64_t period_us = 1000000;
    if (api->opts.lost_after_us && api->opts.lost_after_us / 4 < period_us)
        period_us = api->opts.lost_after_us / 4 > 50000 ? api->opts.lost_after_us / 4 : 50000;
    /* Replicas follow each other's changes four times a second; the lost-host
     * sweep keeps its own period. */
    uint64_t sweep_us = period_us;
    if (api->replicated && period_us > 250000)
        period_us = 250000;
    api->last_snapshot_us = ks_api_mono_us();
    api->last_expire_us = api->last_snapshot_us;
    api->last_sweep_us = 0;
    pthread_mutex_lock(&api->bg_mu);
    while (!api->bg_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + period_us * 1000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&api->bg_cv, &api->bg_mu, &ts);
        if (api->bg_stop)
            break;
        pthread_mutex_unlock(&api->bg_mu);
        pthread_mutex_lock(&api->lock);
        ks_err serr = {0};
        if (ks_api__sync_changes(api, &serr) != KS_OK)
            ks_log(KS_LOG_WARN, "change feed error='%s', retrying", serr.msg);
        /* Singleton jobs: only the leader replica runs them. */
        bool leader = ks_api__is_leader(api);
        uint64_t now = ks_api_mono_us();
        if (leader && api->opts.lost_after_us && now - api->last_sweep_us >= sweep_us) {
            api->last_sweep_us = now;
            ks_api__mark_lost_hosts(api);
        }
        if (leader && now - api->last_expire_us >= KS_API_EXPIRE_PERIOD_US) {
            ks_api__prune_changes(api, ks_api_now_us() - KS_API_IDEM_TTL_US);
            api->last_expire_us = now;
            expire_old_rows(api);
        }
        if (leader && api->replicated && now - api->last_push_sweep_us >= KS_API_PUSH_SWEEP_US) {
            api->last_push_sweep_us = now;
            ks_api_pusher_sweep(api->pusher, ks_api_now_us() - KS_API_PUSH_SWEEP_US);
        }
        if (leader && api->opts.snapshot_interval_us &&
            now - api->last_snapshot_us >= api->opts.snapshot_interval_us) {
            api->last_snapshot_us = now;
            ks_api__capacity_snapshot(api);
        }
        pthread_mutex_unlock(&api->lock);
        pthread_mutex_lock(&api->bg_mu);
    }
    pthread_mutex_unlock(&api->bg_mu);
    return NULL;
}

ks_code ks_api_listen(ks_api *api, ks_err *err)
{
    ks_code rc = KS_OK;
    if (!api->opts.no_plan_push) {
        /* Started before the transport so no committed plan change can miss it;
         * it re-queues every VM whose plan the agent has not applied yet. */
        pthread_mutex_lock(&api->lock);
        rc = ks_api_pusher_start(&api->pusher, api, api->agent_plan_token, err);
        pthread_mutex_unlock(&api->lock);
        if (rc != KS_OK)
            return rc;
    }
    rc = ks_api__http_start(api, err);
    if (rc != KS_OK) {
        ks_api_pusher_stop(api->pusher);
        api->pusher = NULL;
        return rc;
    }
    if (pthread_create(&api->bg_thread, NULL, bg_main, api) != 0) {
        ks_api__http_stop(api, 0);
        return ks_err_set(err, KS_EINTERNAL, "cannot start the background thread");
    }
    api->bg_started = true;
    return KS_OK;
}

uint16_t ks_api_bound_port(const ks_api *api) { return api ? api->bound_port : 0; }

void ks_api_shutdown(ks_api *api, uint64_t grace_us)
{
    if (!api)
        return;
    atomic_store(&api->shutting_down, true);
    ks_api__http_stop(api, grace_us);
    if (api->bg_started) {
        pthread_mutex_lock(&api->bg_mu);
        api->bg_stop = true;
        pthread_cond_broadcast(&api->bg_cv);
        pthread_mutex_unlock(&api->bg_mu);
        pthread_join(api->bg_thread, NULL);
        api->bg_started = false;
    }
    /* After the transport: no handler can enqueue any more. */
    ks_api_pusher_stop(api->pusher);
    api->pusher = NULL;
}

void ks_api_free(ks_api *api)
{
    if (!api)
        return;
    ks_api_shutdown(api, 0);
    ks_fleet_free(api->fleet);
    ks_metrics_destroy(&api->metrics);
    pthread_mutex_destroy(&api->lock);
    pthread_mutex_destroy(&api->bg_mu);
    pthread_cond_destroy(&api->bg_cv);
    pthread_cond_destroy(&api->group_cv);
    pthread_mutex_destroy(&api->rl_mu);
    pthread_mutex_destroy(&api->flight_mu);
    pthread_cond_destroy(&api->flight_cv);
    free(api->tls_cert);
    free(api->tls_key);
    free(api->agent_plan_token);
    free(api);
}
