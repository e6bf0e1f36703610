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

static int collect_host(void *ctx, const ks_store_host_row *row) { return id_list_push(ctx, row->id); }
static int collect_vm(void *ctx, const ks_store_vm_row *row) { return id_list_push(ctx, row->name); }
static int collect_pool(void *ctx, const ks_store_pool_row *row)
{
    return id_list_push(ctx, row->name);
}
static int collect_member(void *ctx, const char *pool, const char *host_id)
{
    (void)pool;
    return id_list_push(ctx, host_id);
}

static ks_code rebuild_hosts(rebuild_ctx *c)
{
    ks_api *api = c->api;
    id_list ids = {0};
    ks_code rc = ks_store_host_list(api->store, NULL, collect_host, &ids, c->err);
    if (rc == KS_OK && ids.oom)
        rc = ks_err_set(c->err, KS_ENOMEM, "out of memory listing hosts");
    for (size_t i = 0; rc == KS_OK && i < ids.n; i++) {
        ks_store_host_row row = {0};
        ks_report *r = NULL;
        ks_err e = {0};
        rc = ks_store_host_get(&row, api->store, ids.ids[i], true, c->err);
        if (rc != KS_OK)
            break;
        if (!row.report_json ||
            ks_report_parse(&r, row.report_json, strlen(row.report_json), &e) != KS_OK ||
            ks_fleet_host_update(api->fleet, r, NULL, &e) != KS_OK) {
            /* A stored report this build cannot load (older schema, catalogue change)
             * must not keep the daemon down: the agent's next report restores it. */
            ks_log(KS_LOG_WARN, "index rebuild host='%s' error='%s', skipping until its next "
                                "report", ids.ids[i], row.report_json ? e.msg : "no report");
            c->n_skipped++;
        } else {
            c->n_hosts++;
            if (row.state != KS_STORE_HOST_READY)
                ks_fleet_host_set_schedulable(api->fleet, row.id, false, NULL);
        }
        ks_report_free(r);
        ks_store_host_row_destroy(&row);
    }
    free(ids.ids);
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

static ks_code rebuild_vms(rebuild_ctx *c)
{
    ks_api *api = c->api;
    id_list names = {0};
    ks_code rc = ks_store_vm_list(api->store, NULL, collect_vm, &names, c->err);
    if (rc == KS_OK && names.oom)
        rc = ks_err_set(c->err, KS_ENOMEM, "out of memory listing vms");
    for (size_t i = 0; rc == KS_OK && i < names.n; i++) {
        ks_store_vm_row row = {0};
        rc = ks_store_vm_get(&row, api->store, names.ids[i], true, c->err);
        if (rc != KS_OK)
            break;
        ks_vm_request *req = NULL;
        ks_plan *plan = NULL;
        ks_err e = {0};
        json_error_t je;
        json_t *rj = row.request_json ? json_loads(row.request_json, 0, &je) : NULL;
        json_t *pj = row.plan_json ? json_loads(row.plan_json, 0, &je) : NULL;
        if (!rj || !pj || ks_vm_request_from_json(&req, rj, &e) != KS_OK ||
            ks_plan_from_json(&plan, pj, &e) != KS_OK ||
            ks_fleet_vm_add(api->fleet, req, plan, &e) != KS_OK) {
            /* Its CPUs stay reserved in the store (vm_vcpus), so nothing can be placed
             * on them twice; an operator must look at it. */
            ks_log(KS_LOG_ERROR, "index rebuild vm='%s' error='%s', its cpus stay allocated "
                                 "in the store", names.ids[i], e.msg[0] ? e.msg : "bad json");
            c->n_skipped++;
        } else {
            c->n_vms++;
        }
        json_decref(rj);
        json_decref(pj);
        ks_vm_request_free(req);
        ks_plan_free(plan);
        ks_store_vm_row_destroy(&row);
    }
    free(names.ids);
    return rc;
}

static ks_code rebuild_index(ks_api *api, ks_err *err)
{
    rebuild_ctx c = {.api = api, .err = err};
    uint64_t t0 = ks_api_mono_us();
    ks_code rc = rebuild_hosts(&c);
    id_list pools = {0};
    if (rc == KS_OK)
        rc = ks_store_pool_list(api->store, collect_pool, &pools, err);
    for (size_t i = 0; rc == KS_OK && i < pools.n; i++)
        rc = ks_api__sync_pool(api, pools.ids[i], err);
    free(pools.ids);
    if (rc == KS_OK)
        rc = ks_api__sync_bans(api, err);
    if (rc == KS_OK)
        rc = rebuild_vms(&c);
    if (rc == KS_OK)
        ks_log(KS_LOG_INFO, "index rebuilt hosts=%u vms=%u skipped=%u duration_us=%llu",
               c.n_hosts, c.n_vms, c.n_skipped, (unsigned long long)(ks_api_mono_us() - t0));
    return rc;
}

/* ---- lifecycle ---- */

ks_code ks_api_new(ks_api **out, const ks_api_options *opts, struct ks_store *store, ks_err *err)
{
    ks_code rc = KS_OK;
    ks_api *api = NULL;
    if (!opts || !store)
        return ks_err_set(err, KS_EINVAL, "options and store are required");
    if (opts->threads < 1 || opts->threads > 256)
        return ks_err_set_field(err, KS_EINVAL, "threads", "threads must be 1..256");
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
    pthread_mutex_init(&api->rl_mu, NULL);
    pthread_mutex_init(&api->flight_mu, NULL);
    pthread_cond_init(&api->flight_cv, NULL);
    ks_metrics_init(&api->metrics);
    atomic_init(&api->next_request, 1);
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
#define KS_API_IDEM_TTL_US (24ull * 3600 * 1000000)

/* Idempotency keys are kept one day: long enough for any client retry loop. */
static void expire_old_rows(ks_api *api)
{
    ks_err err = {0};
    uint64_t n = 0, now = ks_api_now_us();
    ks_code rc = ks_store_begin(api->store, &err);
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
    api->last_snapshot_us = ks_api_mono_us();
    api->last_expire_us = api->last_snapshot_us;
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
        if (api->opts.lost_after_us)
            ks_api__mark_lost_hosts(api);
        uint64_t now = ks_api_mono_us();
        if (now - api->last_expire_us >= KS_API_EXPIRE_PERIOD_US) {
            api->last_expire_us = now;
            expire_old_rows(api);
        }
        if (api->opts.snapshot_interval_us &&
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
    pthread_mutex_destroy(&api->rl_mu);
    pthread_mutex_destroy(&api->flight_mu);
    pthread_cond_destroy(&api->flight_cv);
    free(api->tls_cert);
    free(api->tls_key);
    free(api->agent_plan_token);
    free(api);
}
