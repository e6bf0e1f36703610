/*
 * ks_api_misc.c - pools, feature-ban policies, capacity, events, health,
 * readiness, metrics and the OpenAPI document.
 *
 * Pools and bans follow the same rule as placements: store first (one
 * transaction with its event), then the index.  A new ban re-plans every VM that
 * sees a banned feature (each re-plan its own transaction, new generation).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_api_util.h"
#include "ks_log.h"

/* Rejects keys of `obj` not in the NULL-terminated `allowed`. */
static ks_code only_keys(const json_t *obj, const char *const *allowed, ks_err *err)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok)
            return ks_err_set_field(err, KS_EINVAL, key, "unknown field '%s'", key);
    }
    return KS_OK;
}

/* Parses the body as a JSON object with only `allowed` keys; *out is new on success. */
static ks_code body_object(json_t **out, const ks_api_req *req, const char *const *allowed,
                           ks_err *err)
{
    json_t *doc = NULL;
    ks_code rc = ks_api_body_json(&doc, req, err);
    if (rc == KS_OK && !json_is_object(doc))
        rc = ks_err_set_field(err, KS_EINVAL, "$", "body must be a JSON object");
    if (rc == KS_OK)
        rc = only_keys(doc, allowed, err);
    if (rc != KS_OK) {
        json_decref(doc);
        return rc;
    }
    *out = doc;
    return KS_OK;
}

/* ---- pools ---- */

typedef struct name_vec {
    char (*v)[KS_ID_MAX];
    size_t n, cap;
    bool oom;
} name_vec;

static void name_vec_push(name_vec *nv, const char *s)
{
    if (nv->n == nv->cap) {
        size_t ncap = nv->cap ? nv->cap * 2 : 16;
        void *p = realloc(nv->v, ncap * sizeof(*nv->v));
        if (!p) {
            nv->oom = true;
            return;
        }
        nv->v = p;
        nv->cap = ncap;
    }
    snprintf(nv->v[nv->n++], KS_ID_MAX, "%s", s);
}

static void match_host(void *ctx, const char *host) { name_vec_push(ctx, host); }

static int push_member(void *ctx, const char *pool, const char *host_id)
{
    (void)pool;
    name_vec_push(ctx, host_id);
    return 0;
}

void ks_api_h_pool_create(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    json_t *doc = NULL;
    name_vec members = {0};
    const char **ptrs = NULL;
    char *selector_text = NULL;
    static const char *const top[] = {"name", "hosts", "selector", NULL};
    static const char *const sel_keys[] = {"vendor", "model", "required_features", NULL};
    ks_code rc = body_object(&doc, req, top, &err);
    if (rc != KS_OK)
        goto fail;
    json_t *jn = json_object_get(doc, "name"), *jh = json_object_get(doc, "hosts"),
           *js = json_object_get(doc, "selector");
    const char *name = json_string_value(jn);
    if (!name || !ks_id_valid(name)) {
        rc = ks_err_set_field(&err, KS_EINVAL, "name",
                              "name must be a string of 1..63 [A-Za-z0-9._-]");
        goto fail;
    }
    if (jh && !json_is_array(jh)) {
        rc = ks_err_set_field(&err, KS_EINVAL, "hosts", "hosts must be an array of host ids");
        goto fail;
    }
    size_t i;
    json_t *el;
    json_array_foreach(jh, i, el)
    {
        if (!json_is_string(el) || !ks_id_valid(json_string_value(el))) {
            char f[32];
            snprintf(f, sizeof(f), "hosts[%zu]", i);
            rc = ks_err_set_field(&err, KS_EINVAL, f, "not a valid host id");
            goto fail;
        }
    }
    ks_featset required;
    ks_featset_clear(&required);
    const char *vendor = NULL, *model = NULL;
    if (js) {
        if (!json_is_object(js)) {
            rc = ks_err_set_field(&err, KS_EINVAL, "selector", "selector must be an object");
            goto fail;
        }
        if ((rc = only_keys(js, sel_keys, &err)) != KS_OK) {
            char f[sizeof(err.field)];
            snprintf(f, sizeof(f), "selector.%.100s", err.field);
            snprintf(err.field, sizeof(err.field), "%s", f);
            goto fail;
        }
        json_t *jv = json_object_get(js, "vendor"), *jm = json_object_get(js, "model"),
               *jr = json_object_get(js, "required_features");
        if ((jv && !json_is_string(jv)) || (jm && !json_is_string(jm))) {
            rc = ks_err_set_field(&err, KS_EINVAL, jv && !json_is_string(jv) ? "selector.vendor"
                                                                             : "selector.model",
                                  "must be a string");
            goto fail;
        }
        vendor = json_string_value(jv);
        model = json_string_value(jm);
        if (jr && (rc = ks_featset_from_json(&required, jr, "selector.required_features",
                                             &err)) != KS_OK)
            goto fail;
        selector_text = json_dumps(js, JSON_COMPACT | JSON_SORT_KEYS);
    }
    if (!jh && !js) {
        rc = ks_err_set_field(&err, KS_EINVAL, "hosts", "a pool needs hosts or a selector");
        goto fail;
    }

    pthread_mutex_lock(&api->lock);
    json_array_foreach(jh, i, el) name_vec_push(&members, json_string_value(el));
    if (js)
        ks_fleet_hosts_matching(api->fleet, vendor, model, &required, match_host, &members);
    /* Hosts named twice (listed and matched) count once. */
    size_t n = 0;
    for (size_t a = 0; a < members.n; a++) {
        bool dup = false;
        for (size_t b = 0; b < n && !dup; b++)
            dup = strcmp(members.v[a], members.v[b]) == 0;
        if (!dup)
            memmove(members.v[n++], members.v[a], KS_ID_MAX);
    }
    members.n = n;
    ptrs = calloc(members.n + 1, sizeof(*ptrs));
    if (!ptrs || members.oom)
        rc = ks_err_set(&err, KS_ENOMEM, "out of memory");
    for (size_t k = 0; rc == KS_OK && k < members.n; k++)
        ptrs[k] = members.v[k];
    if (rc == KS_OK)
        rc = ks_api__begin(api, &err);
    if (rc == KS_OK) {
        rc = ks_store_pool_create(api->store, name, selector_text, ks_api_now_us(), &err);
        if (rc == KS_OK)
            rc = ks_store_pool_members_set(api->store, name, ptrs, (uint32_t)members.n, &err);
        if (rc == KS_OK)
            rc = ks_api__event(api, "pool.created", NULL, NULL,
                               json_pack("{s:s,s:i}", "pool", name, "members", (int)members.n),
                               &err);
        if (rc == KS_OK)
            rc = ks_store_commit(api->store, &err);
        else
            ks_api__rollback(api, rc);
    }
    if (rc == KS_OK)
        rc = ks_fleet_pool_set(api->fleet, name, ptrs, members.n, &err);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK)
        goto fail;
    json_t *arr = json_array();
    for (size_t k = 0; k < members.n; k++)
        json_array_append_new(arr, json_string(members.v[k]));
    snprintf(req->resp->location, sizeof(req->resp->location), "/v1/pools/%s", name);
    ks_api_send_json(req, 201, json_pack("{s:s,s:o}", "name", name, "members", arr));
    goto out;
fail:
    ks_api_send_error(req, &err);
out:
    json_decref(doc);
    free(members.v);
    free(ptrs);
    free(selector_text);
}

typedef struct pool_list_ctx {
    ks_api *api;
    json_t *items;
} pool_list_ctx;

static json_t *members_json(ks_api *api, const char *pool)
{
    name_vec nv = {0};
    ks_store_pool_members_list(api->store, pool, push_member, &nv, NULL);
    json_t *arr = json_array();
    for (size_t i = 0; i < nv.n; i++)
        json_array_append_new(arr, json_string(nv.v[i]));
    free(nv.v);
    return arr;
}

static json_t *selector_of(const char *text)
{
    json_error_t je;
    json_t *v = text ? json_loads(text, 0, &je) : NULL;
    return v ? v : json_null();
}

static int list_pool(void *ctx, const ks_store_pool_row *row)
{
    pool_list_ctx *p = ctx;
    json_array_append_new(
        p->items, json_pack("{s:s,s:o,s:o,s:I}", "name", row->name, "members",
                            members_json(p->api, row->name), "selector",
                            selector_of(row->selector_json), "created_us",
                            (json_int_t)row->created_us));
    return 0;
}

void ks_api_h_pools_list(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    pool_list_ctx p = {.api = api, .items = json_array()};
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_store_pool_list(api->store, list_pool, &p, &err);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        json_decref(p.items);
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_json(req, 200, json_pack("{s:o,s:n}", "items", p.items, "next_cursor"));
}

static void narrowing_cb(void *ctx, const char *host, const ks_featset *gained,
                         unsigned n_gained)
{
    json_array_append_new(ctx, json_pack("{s:s,s:i,s:o}", "host", host, "n_gained",
                                         (int)n_gained, "gained", ks_featset_to_json(gained)));
}

void ks_api_h_pool_get(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    const char *name = req->params[0];
    if (!ks_api__valid_param(req, name, "pool name"))
        return;
    ks_store_pool_row row = {0};
    ks_featset base;
    uint32_t n_cpus = 0;
    json_t *narrow = json_array();
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_store_pool_get(&row, api->store, name, &err);
    if (rc == KS_OK)
        rc = ks_fleet_pool_baseline(api->fleet, name, &base, &n_cpus, &err);
    if (rc == KS_OK)
        rc = ks_fleet_pool_narrowing(api->fleet, name, narrowing_cb, narrow, &err);
    json_t *members = rc == KS_OK ? members_json(api, name) : NULL;
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        json_decref(narrow);
        ks_store_pool_row_destroy(&row);
        ks_api_send_error(req, &err);
        return;
    }
    json_t *doc = json_pack("{s:s,s:o,s:o,s:o,s:i,s:i,s:o,s:I}", "name", name, "members",
                            members, "selector", selector_of(row.selector_json), "baseline",
                            ks_featset_to_json(&base), "baseline_size",
                            (int)ks_featset_popcount(&base), "baseline_cpus", (int)n_cpus,
                            "narrowing", narrow, "created_us", (json_int_t)row.created_us);
    ks_store_pool_row_destroy(&row);
    ks_api_etag_of(req->resp->etag, doc);
    ks_api_send_json(req, 200, doc);
}

void ks_api_h_pool_delete(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    const char *name = req->params[0];
    if (!ks_api__valid_param(req, name, "pool name"))
        return;
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_api__begin(api, &err);
    if (rc == KS_OK) {
        rc = ks_store_pool_delete(api->store, name, &err);
        if (rc == KS_OK)
            rc = ks_api__event(api, "pool.deleted", NULL, NULL, json_pack("{s:s}", "pool", name),
                               &err);
        if (rc == KS_OK)
            rc = ks_store_commit(api->store, &err);
        else
            ks_api__rollback(api, rc);
    }
    if (rc == KS_OK) {
        ks_err e = {0};
        if (ks_fleet_pool_remove(api->fleet, name, &e) != KS_OK)
            ks_log(KS_LOG_ERROR, "index remove pool='%s' error='%s'", name, e.msg);
    }
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_text(req, 204, "application/json", "", 0);
}

/* ---- feature bans ---- */

static void seeing_cb(void *ctx, const char *vm, const char *host)
{
    (void)host;
    name_vec_push(ctx, vm);
}

void ks_api_h_ban_create(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    json_t *doc = NULL;
    char *features_text = NULL;
    name_vec vms = {0};
    static const char *const keys[] = {"features", "reason", NULL};
    ks_featset banned;
    ks_code rc = body_object(&doc, req, keys, &err);
    if (rc != KS_OK)
        goto fail;
    json_t *jf = json_object_get(doc, "features"), *jr = json_object_get(doc, "reason");
    if (!json_is_array(jf) || json_array_size(jf) == 0) {
        rc = ks_err_set_field(&err, KS_EINVAL, "features",
                              "features must be a non-empty array of feature names");
        goto fail;
    }
    if (jr && (!json_is_string(jr) || strlen(json_string_value(jr)) >= KS_TEXT_MAX)) {
        rc = ks_err_set_field(&err, KS_EINVAL, "reason", "reason must be a string under %d bytes",
                              KS_TEXT_MAX);
        goto fail;
    }
    const char *reason = jr ? json_string_value(jr) : "";
    if ((rc = ks_featset_from_json(&banned, jf, "features", &err)) != KS_OK)
        goto fail;
    json_t *canon = ks_featset_to_json(&banned);
    features_text = canon ? json_dumps(canon, JSON_COMPACT) : NULL;
    json_decref(canon);
    if (!features_text) {
        rc = ks_err_set(&err, KS_ENOMEM, "out of memory");
        goto fail;
    }
    int64_t id = 0;
    uint64_t now = ks_api_now_us();
    json_t *results = json_array();
    pthread_mutex_lock(&api->lock);
    rc = ks_api__begin(api, &err);
    if (rc == KS_OK) {
        rc = ks_store_policy_add(&id, api->store, KS_STORE_POLICY_FEATURE_BAN, features_text,
                                 reason, now, &err);
        if (rc == KS_OK)
            rc = ks_api__event(api, "policy.ban_added", NULL, NULL,
                               json_pack("{s:I,s:s,s:s}", "id", (json_int_t)id, "features",
                                         features_text, "reason", reason),
                               &err);
        if (rc == KS_OK)
            rc = ks_store_commit(api->store, &err);
        else
            ks_api__rollback(api, rc);
    }
    if (rc == KS_OK)
        rc = ks_api__sync_bans(api, &err);
    if (rc == KS_OK) {
        ks_fleet_vms_seeing(api->fleet, &banned, seeing_cb, &vms);
        char why[KS_TEXT_MAX];
        snprintf(why, sizeof(why), "feature ban %lld", (long long)id);
        for (size_t i = 0; i < vms.n; i++) {
            ks_err e = {0};
            if (ks_api__replan_vm(api, vms.v[i], why, results, &e) != KS_OK)
                ks_log(KS_LOG_ERROR, "replan for ban failed vm='%s' req=%s error='%s'",
                       vms.v[i], req->request_id, e.msg);
        }
    }
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        json_decref(results);
        goto fail;
    }
    json_error_t je;
    char loc[64];
    snprintf(loc, sizeof(loc), "/v1/policies/feature-bans/%lld", (long long)id);
    snprintf(req->resp->location, sizeof(req->resp->location), "%s", loc);
    ks_api_send_json(req, 201,
                     json_pack("{s:I,s:o,s:s,s:I,s:i,s:o}", "id", (json_int_t)id, "features",
                               json_loads(features_text, 0, &je), "reason", reason, "created_us",
                               (json_int_t)now, "n_affected", (int)vms.n, "affected", results));
    goto out;
fail:
    ks_api_send_error(req, &err);
out:
    json_decref(doc);
    free(features_text);
    free(vms.v);
}

static int list_ban(void *ctx, const ks_store_policy_row *row)
{
    if (row->kind != KS_STORE_POLICY_FEATURE_BAN)
        return 0;
    json_error_t je;
    json_t *f = row->features_json ? json_loads(row->features_json, 0, &je) : NULL;
    json_array_append_new(ctx, json_pack("{s:I,s:o,s:s,s:I}", "id", (json_int_t)row->id,
                                         "features", f ? f : json_array(), "reason", row->reason,
                                         "created_us", (json_int_t)row->created_us));
    return 0;
}

void ks_api_h_bans_list(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    json_t *items = json_array();
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_store_policy_list(api->store, list_ban, items, &err);
    ks_featset all;
    ks_fleet_get_bans(api->fleet, &all);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        json_decref(items);
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_json(req, 200,
                     json_pack("{s:o,s:o,s:n}", "items", items, "banned", ks_featset_to_json(&all),
                               "next_cursor"));
}

void ks_api_h_ban_delete(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    const char *p = req->params[0];
    int64_t id = 0;
    bool ok = *p && strlen(p) < 18;
    for (const char *c = p; ok && *c; c++) {
        ok = isdigit((unsigned char)*c);
        id = id * 10 + (*c - '0');
    }
    if (!ok) {
        ks_err_set_field(&err, KS_EINVAL, "id", "ban id must be a positive integer, not '%.32s'",
                         p);
        ks_api_send_error(req, &err);
        return;
    }
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_api__begin(api, &err);
    if (rc == KS_OK) {
        rc = ks_store_policy_delete(api->store, id, &err);
        if (rc == KS_OK)
            rc = ks_api__event(api, "policy.ban_removed", NULL, NULL,
                               json_pack("{s:I}", "id", (json_int_t)id), &err);
        if (rc == KS_OK)
            rc = ks_store_commit(api->store, &err);
        else
            ks_api__rollback(api, rc);
    }
    if (rc == KS_OK)
        rc = ks_api__sync_bans(api, &err);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_text(req, 204, "application/json", "", 0);
}

/* ---- capacity ---- */

static json_t *capacity_json(const char *scope, const ks_capacity *c)
{
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "scope", scope, "total",
                     (json_int_t)c->total, "allocated", (json_int_t)c->allocated, "free",
                     (json_int_t)c->free, "unschedulable", (json_int_t)c->unschedulable,
                     "reserved", (json_int_t)c->reserved, "quarantined",
                     (json_int_t)c->quarantined, "offline", (json_int_t)c->offline,
                     "degraded_usable", (json_int_t)c->degraded_usable, "reclaimed",
                     (json_int_t)c->reclaimed, "stranded", (json_int_t)c->stranded);
}

static void capacity_cb(void *ctx, const char *scope, const ks_capacity *c)
{
    json_array_append_new(ctx, capacity_json(scope, c));
}

static int by_scope(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "scope"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "scope"));
    return strcmp(x ? x : "", y ? y : "");
}

void ks_api_h_capacity(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    const char *by_s = ks_api_query(req, "by");
    int by = by_s ? ks_capacity_by_from_str(by_s) : KS_CAPACITY_FLEET;
    if (by < 0) {
        ks_err_set_field(&err, KS_EINVAL, "by", "by must be fleet, pool, host or kind, not '%s'",
                         by_s);
        ks_api_send_error(req, &err);
        return;
    }
    json_t *items = json_array();
    pthread_mutex_lock(&api->lock);
    ks_fleet_capacity(api->fleet, (ks_capacity_by)by, capacity_cb, items);
    pthread_mutex_unlock(&api->lock);
    /* The index's host order is insertion order; answer in scope order so the
     * output is stable across restarts. */
    size_t n = json_array_size(items);
    json_t **v = n ? calloc(n, sizeof(*v)) : NULL;
    if (v) {
        for (size_t i = 0; i < n; i++)
            v[i] = json_incref(json_array_get(items, i));
        qsort(v, n, sizeof(*v), by_scope);
        json_array_clear(items);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(items, v[i]);
        free(v);
    }
    ks_api_send_json(req, 200, json_pack("{s:s,s:o}", "by", ks_capacity_by_to_str(by), "items",
                                         items));
}

typedef struct snap_ctx {
    ks_api *api;
    const char *prefix;
    uint64_t now;
    ks_code rc;
    ks_err *err;
} snap_ctx;

static void snap_cb(void *ctx, const char *scope, const ks_capacity *c)
{
    snap_ctx *s = ctx;
    if (s->rc != KS_OK)
        return;
    ks_store_capacity_row row = {.time_us = s->now, .total = c->total,
                                 .allocated = c->allocated, .free = c->free,
                                 .degraded_usable = c->degraded_usable,
                                 .reclaimed = c->reclaimed, .stranded = c->stranded,
                                 .quarantined = c->quarantined};
    snprintf(row.scope, sizeof(row.scope), "%s%s", s->prefix, scope);
    s->rc = ks_store_capacity_insert(NULL, s->api->store, &row, s->err);
}

void ks_api__capacity_snapshot(ks_api *api)
{
    ks_err err = {0};
    snap_ctx s = {.api = api, .now = ks_api_now_us(), .err = &err};
    s.rc = ks_api__begin(api, &err);
    if (s.rc == KS_OK) {
        s.prefix = "";
        ks_fleet_capacity(api->fleet, KS_CAPACITY_FLEET, snap_cb, &s);
        s.prefix = "pool:";
        ks_fleet_capacity(api->fleet, KS_CAPACITY_POOL, snap_cb, &s);
        s.prefix = "host:";
        ks_fleet_capacity(api->fleet, KS_CAPACITY_HOST, snap_cb, &s);
        if (s.rc == KS_OK)
            s.rc = ks_store_commit(api->store, &err);
        else
            ks_api__rollback(api, s.rc);
    }
    if (s.rc != KS_OK)
        ks_log(KS_LOG_WARN, "capacity snapshot failed error='%s', ignoring", err.msg);
}

static int history_row(void *ctx, const ks_store_capacity_row *row)
{
    json_array_append_new(
        ctx, json_pack("{s:I,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "id", (json_int_t)row->id,
                       "time_us", (json_int_t)row->time_us, "scope", row->scope, "total",
                       (json_int_t)row->total, "allocated", (json_int_t)row->allocated, "free",
                       (json_int_t)row->free, "degraded_usable", (json_int_t)row->degraded_usable,
                       "reclaimed", (json_int_t)row->reclaimed, "stranded",
                       (json_int_t)row->stranded, "quarantined", (json_int_t)row->quarantined));
    return 0;
}

/* Parses a non-negative decimal query value; false when malformed. */
static bool query_u64(const ks_api_req *req, const char *name, uint64_t *out)
{
    const char *v = ks_api_query(req, name);
    if (!v)
        return true;
    uint64_t n = 0;
    if (!*v || strlen(v) > 19)
        return false;
    for (const char *c = v; *c; c++) {
        if (!isdigit((unsigned char)*c))
            return false;
        n = n * 10 + (uint64_t)(*c - '0');
    }
    *out = n;
    return true;
}

void ks_api_h_capacity_history(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    unsigned limit;
    uint64_t since = 0;
    const char *scope = ks_api_query(req, "scope");
    if (ks_api_query_limit(&limit, req, 100, 10000, &err) != KS_OK)
        goto fail;
    if (!query_u64(req, "since_us", &since)) {
        ks_err_set_field(&err, KS_EINVAL, "since_us", "since_us must be a time in microseconds");
        goto fail;
    }
    if (!scope)
        scope = "fleet";
    if (strlen(scope) >= KS_NAME_MAX) {
        ks_err_set_field(&err, KS_EINVAL, "scope", "scope too long");
        goto fail;
    }
    json_t *items = json_array();
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_store_capacity_list(api->store, scope, since, limit, history_row, items, &err);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        json_decref(items);
        goto fail;
    }
    ks_api_send_json(req, 200, json_pack("{s:s,s:o}", "scope", scope, "items", items));
    return;
fail:
    ks_api_send_error(req, &err);
}

/* ---- the capacity report (one document for kintsugictl report) ---- */

typedef struct defect_agg {
    json_t *by_feature; /* feature -> {"cpus": n, "by_host": {host: n}} */
    char last_host[KS_ID_MAX];
    int32_t last_cpu;
    char last_feature[KS_NAME_MAX];
} defect_agg;

static int agg_defect(void *ctx, const ks_store_defect_row *d)
{
    defect_agg *a = ctx;
    const char *feature = d->feature_name[0] ? d->feature_name : "(whole cpu)";
    /* Rows come by host, cpu, time: a CPU with the same feature twice counts once. */
    if (strcmp(a->last_host, d->host_id) == 0 && a->last_cpu == d->cpu_id &&
        strcmp(a->last_feature, feature) == 0)
        return 0;
    snprintf(a->last_host, sizeof(a->last_host), "%s", d->host_id);
    snprintf(a->last_feature, sizeof(a->last_feature), "%s", feature);
    a->last_cpu = d->cpu_id;
    json_t *f = json_object_get(a->by_feature, feature);
    if (!f) {
        f = json_pack("{s:i,s:{}}", "cpus", 0, "by_host");
        json_object_set_new(a->by_feature, feature, f);
    }
    json_object_set_new(f, "cpus",
                        json_integer(json_integer_value(json_object_get(f, "cpus")) + 1));
    json_t *bh = json_object_get(f, "by_host");
    json_object_set_new(bh, d->host_id,
                        json_integer(json_integer_value(json_object_get(bh, d->host_id)) + 1));
    return 0;
}

static int collect_moving(void *ctx, const ks_store_vm_row *row)
{
    json_array_append_new(ctx, json_pack("{s:s,s:s,s:s}", "name", row->name, "host",
                                         row->host_id, "reason",
                                         row->apply_error[0]
                                             ? row->apply_error
                                             : "no suitable free cpu left on its host"));
    return 0;
}

typedef struct ring {
    json_t *items;
    size_t keep;
} ring;

static int history_keep_last(void *ctx, const ks_store_capacity_row *row)
{
    ring *r = ctx;
    history_row(r->items, row);
    json_t *last = json_array_get(r->items, json_array_size(r->items) - 1);
    if (last) {
        json_object_del(last, "id");
        json_object_del(last, "scope");
    }
    if (json_array_size(r->items) > r->keep)
        json_array_remove(r->items, 0);
    return 0;
}

static void sorted_capacity(ks_api *api, ks_capacity_by by, json_t *items)
{
    ks_fleet_capacity(api->fleet, by, capacity_cb, items);
    size_t n = json_array_size(items);
    json_t **v = n ? calloc(n, sizeof(*v)) : NULL;
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(items, i));
    qsort(v, n, sizeof(*v), by_scope);
    json_array_clear(items);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, v[i]);
    free(v);
}

void ks_api_h_capacity_report(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    uint64_t keep = 200;
    if (!query_u64(req, "history", &keep) || keep > 10000) {
        ks_err_set_field(&err, KS_EINVAL, "history", "history must be 0..10000 snapshots");
        ks_api_send_error(req, &err);
        return;
    }
    json_t *fleet = json_array(), *pools = json_array(), *kinds = json_array(),
           *hosts = json_array(), *moving = json_array();
    defect_agg agg = {.by_feature = json_object(), .last_cpu = -1};
    ring hist = {.items = json_array(), .keep = keep};
    ks_store_vm_filter vf = KS_STORE_VM_FILTER_INIT;
    vf.state = KS_STORE_VM_NEEDS_MIGRATION;
    uint64_t now = ks_api_now_us();
    /* Bound the history scan to about `keep` snapshot periods back. */
    uint64_t span = api->opts.snapshot_interval_us ? api->opts.snapshot_interval_us * (keep + 1)
                                                   : now;
    pthread_mutex_lock(&api->lock);
    sorted_capacity(api, KS_CAPACITY_FLEET, fleet);
    sorted_capacity(api, KS_CAPACITY_POOL, pools);
    sorted_capacity(api, KS_CAPACITY_KIND, kinds);
    sorted_capacity(api, KS_CAPACITY_HOST, hosts);
    ks_code rc = ks_store_defect_list(api->store, NULL, -1, agg_defect, &agg, &err);
    if (rc == KS_OK)
        rc = ks_store_vm_list(api->store, &vf, collect_moving, moving, &err);
    if (rc == KS_OK && keep)
        rc = ks_store_capacity_list(api->store, "fleet", now > span ? now - span : 0, 0,
                                    history_keep_last, &hist, &err);
    pthread_mutex_unlock(&api->lock);
    json_t *defects = json_array();
    const char *feature;
    json_t *f;
    json_object_foreach(agg.by_feature, feature, f)
    {
        json_array_append_new(defects,
                              json_pack("{s:s,s:O,s:i,s:O}", "feature", feature, "cpus",
                                        json_object_get(f, "cpus"), "hosts",
                                        (int)json_object_size(json_object_get(f, "by_host")),
                                        "by_host", json_object_get(f, "by_host")));
    }
    json_decref(agg.by_feature);
    if (rc != KS_OK) {
        json_decref(fleet);
        json_decref(pools);
        json_decref(kinds);
        json_decref(hosts);
        json_decref(moving);
        json_decref(defects);
        json_decref(hist.items);
        ks_api_send_error(req, &err);
        return;
    }
    json_t *fleet0 = json_incref(json_array_get(fleet, 0));
    json_decref(fleet);
    ks_api_send_json(req, 200,
                     json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "generated_us",
                               (json_int_t)now, "fleet", fleet0 ? fleet0 : json_object(), "pools",
                               pools, "kinds", kinds, "hosts", hosts, "defects", defects,
                               "needs_migration", moving, "history", hist.items));
}

/* ---- events ---- */

static int list_event(void *ctx, const ks_store_event_row *row)
{
    json_error_t je;
    json_t *d = row->detail_json ? json_loads(row->detail_json, 0, &je) : NULL;
    json_array_append_new(ctx, json_pack("{s:I,s:I,s:s,s:o,s:o,s:o}", "id", (json_int_t)row->id,
                                         "time_us", (json_int_t)row->time_us, "type", row->type,
                                         "host",
                                         row->host_id[0] ? json_string(row->host_id)
                                                         : json_null(),
                                         "vm", row->vm[0] ? json_string(row->vm) : json_null(),
                                         "detail", d ? d : json_null()));
    return 0;
}

void ks_api_h_events(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    unsigned limit;
    int64_t since = 0;
    const char *v = ks_api_query(req, "since");
    if (ks_api_query_limit(&limit, req, 100, 1000, &err) != KS_OK)
        goto fail;
    if (v) {
        bool ok = *v && strlen(v) < 18;
        for (const char *c = v; ok && *c; c++) {
            ok = isdigit((unsigned char)*c);
            since = since * 10 + (*c - '0');
        }
        if (!ok) {
            ks_err_set_field(&err, KS_EINVAL, "since", "since must be an event id (integer)");
            goto fail;
        }
    }
    json_t *items = json_array();
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_store_event_list(api->store, since, limit, list_event, items, &err);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        json_decref(items);
        goto fail;
    }
    size_t n = json_array_size(items);
    json_int_t next = n ? json_integer_value(json_object_get(json_array_get(items, n - 1), "id"))
                        : since;
    ks_api_send_json(req, 200, json_pack("{s:o,s:I}", "items", items, "next_since", next));
    return;
fail:
    ks_api_send_error(req, &err);
}

/* ---- health, readiness, metrics, OpenAPI ---- */

void ks_api_h_healthz(ks_api_req *req)
{
    ks_api_send_json(req, 200, json_pack("{s:s,s:s}", "status", "ok", "version", KS_VERSION));
}

void ks_api_h_readyz(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    int64_t one = 0;
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_store_query_int(&one, api->store, "SELECT 1", &err);
    bool loaded = api->index_loaded;
    size_t hosts = ks_fleet_host_count(api->fleet), vms = ks_fleet_vm_count(api->fleet);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK || !loaded || atomic_load(&api->shutting_down)) {
        ks_err_set(&err, KS_EUNAVAIL, "not ready: %s",
                   rc != KS_OK ? "database unavailable"
                               : !loaded ? "index not loaded" : "shutting down");
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_json(req, 200, json_pack("{s:s,s:s,s:I,s:I}", "status", "ready", "store",
                                         ks_store_backend(api->store), "hosts", (json_int_t)hosts,
                                         "vms", (json_int_t)vms));
}

typedef struct state_counts {
    uint64_t cpus[KS_CPU_STATE__COUNT];
    uint64_t allocated;
} state_counts;

static bool count_state(void *ctx, const ks_fleet_cpu_view *c)
{
    state_counts *s = ctx;
    if (c->state < KS_CPU_STATE__COUNT)
        s->cpus[c->state]++;
    if (c->vm)
        s->allocated++;
    return true;
}

void ks_api_h_metrics(ks_api_req *req)
{
    ks_api *api = req->api;
    char extra[4096];
    size_t off = 0;
    state_counts sc = {0};
    uint64_t hosts[KS_STORE_HOST_STATE__COUNT] = {0};
    pthread_mutex_lock(&api->lock);
    for (int s = 0; s < KS_STORE_HOST_STATE__COUNT; s++) {
        ks_store_host_filter f = KS_STORE_HOST_FILTER_INIT;
        f.state = s;
        ks_store_host_count(&hosts[s], api->store, &f, NULL);
    }
    size_t nh = ks_fleet_host_count(api->fleet), nvm = ks_fleet_vm_count(api->fleet);
    uint64_t groups = api->groups_committed, units = api->group_units_committed;
    for (size_t i = 0; i < nh; i++) {
        ks_fleet_host_view v;
        if (ks_fleet_host_at(api->fleet, i, &v, NULL) == KS_OK)
            ks_fleet_host_cpus(api->fleet, v.id, count_state, &sc, NULL);
    }
    pthread_mutex_unlock(&api->lock);
    off += (size_t)snprintf(extra + off, sizeof(extra) - off,
                            "# HELP ks_hosts Hosts by state.\n# TYPE ks_hosts gauge\n");
    for (int s = 0; s < KS_STORE_HOST_STATE__COUNT; s++)
        off += (size_t)snprintf(extra + off, sizeof(extra) - off, "ks_hosts{state=\"%s\"} %llu\n",
                                ks_store_host_state_to_str((ks_store_host_state)s),
                                (unsigned long long)hosts[s]);
    off += (size_t)snprintf(extra + off, sizeof(extra) - off,
                            "# HELP ks_cpus Logical CPUs by state.\n# TYPE ks_cpus gauge\n");
    for (int s = 0; s < KS_CPU_STATE__COUNT; s++)
        off += (size_t)snprintf(extra + off, sizeof(extra) - off, "ks_cpus{state=\"%s\"} %llu\n",
                                ks_cpu_state_to_str((ks_cpu_state)s),
                                (unsigned long long)sc.cpus[s]);
    off += (size_t)snprintf(extra + off, sizeof(extra) - off,
                            "# HELP ks_cpus_allocated Logical CPUs held by VMs.\n"
                            "# TYPE ks_cpus_allocated gauge\nks_cpus_allocated %llu\n"
                            "# HELP ks_vms VMs in the index.\n# TYPE ks_vms gauge\nks_vms %llu\n",
                            (unsigned long long)sc.allocated, (unsigned long long)nvm);
    off += (size_t)snprintf(extra + off, sizeof(extra) - off,
                            "# HELP ks_commit_groups_total Group commits of VM creates and "
                            "deletes.\n# TYPE ks_commit_groups_total counter\n"
                            "ks_commit_groups_total %llu\n"
                            "# HELP ks_commit_group_units_total VM creates and deletes committed "
                            "in groups (units / groups = average group size).\n"
                            "# TYPE ks_commit_group_units_total counter\n"
                            "ks_commit_group_units_total %llu\n",
                            (unsigned long long)groups, (unsigned long long)units);
    char *text = ks_metrics_format(&api->metrics, extra);
    if (!text) {
        ks_err err;
        ks_err_set(&err, KS_ENOMEM, "out of memory formatting metrics");
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_text(req, 200, "text/plain; version=0.0.4", text, strlen(text));
    free(text);
}

void ks_api_h_openapi(ks_api_req *req)
{
    ks_api_send_text(req, 200, "application/json", ks_api_openapi_json,
                     strlen(ks_api_openapi_json));
}
