/*
 * ks_api_hosts.c - /v1/hosts: reports, heartbeats, listing, drain, delete, and
 * the lost-host sweep of the background thread.
 *
 * Report flow (docs/api.md#host-report): decode -> id check -> [lock] store the
 * report in one transaction with its events -> commit -> update the index ->
 * re-plan every VM whose vCPU sits on a CPU that lost something the VM sees
 * (each re-plan is its own transaction; VMs that cannot stay are marked
 * needs_migration) -> [unlock].  The index is only touched after a commit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_api_push.h"
#include "ks_api_util.h"
#include "ks_log.h"

/* Host state -> fleet schedulable flag. */
static void sync_schedulable(ks_api *api, const char *id, int state)
{
    ks_fleet_host_set_schedulable(api->fleet, id, state == KS_STORE_HOST_READY, NULL);
}

/*
 * The report's running VMs say which plan generation the agent applied: record
 * it (inside the report's transaction) for VMs we placed on this host.  VMs we
 * do not know there are returned so the agent (or an operator) can act.
 */
static ks_code record_running_vms(ks_api *api, const ks_report *r, uint64_t now,
                                  json_t *unknown, ks_err *err)
{
    for (uint32_t i = 0; i < r->n_vms; i++) {
        const ks_running_vm *v = &r->vms[i];
        ks_store_vm_row row = {0};
        ks_code rc = ks_store_vm_get(&row, api->store, v->name, false, err);
        if (rc == KS_ENOTFOUND || (rc == KS_OK && strcmp(row.host_id, r->host.id) != 0)) {
            json_array_append_new(unknown, json_string(v->name));
            ks_err_clear(err);
            continue;
        }
        if (rc != KS_OK)
            return rc;
        /* A generation we never planned is not "applied"; keep the last true one. */
        if (v->generation > row.generation || v->generation == row.applied_generation)
            continue;
        rc = ks_store_vm_set_applied(api->store, v->name, v->generation, NULL, now, err);
        if (rc != KS_OK)
            return rc;
    }
    return KS_OK;
}

typedef struct missing_ctx {
    const ks_report *r;
    json_t *names; /* VMs the agent should run but does not report */
} missing_ctx;

static int collect_missing(void *ctx, const ks_store_vm_row *row)
{
    missing_ctx *m = ctx;
    if (row->applied_generation == 0)
        return 0; /* never applied yet: the pusher is on it */
    for (uint32_t i = 0; i < m->r->n_vms; i++)
        if (strcmp(m->r->vms[i].name, row->name) == 0)
            return 0;
    json_array_append_new(m->names, json_string(row->name));
    return 0;
}

/*
 * Reconciliation, the other way round: a VM whose plan this host's agent had
 * applied but which its report no longer lists is gone from the host (the agent
 * restarted and stopped its VMs, the VMM died).  Its applied generation goes back
 * to 0 so the plan is pushed again and the agent starts it.  Only for agents that
 * serve plans (agent_url set): a report without one cannot run VMs at all.
 * Names are appended to `missing`.
 */
static ks_code reset_missing_vms(ks_api *api, const ks_report *r, uint64_t now, json_t *missing,
                                 ks_err *err)
{
    if (!r->host.agent_url[0])
        return KS_OK;
    ks_store_vm_filter f = KS_STORE_VM_FILTER_INIT;
    f.host_id = r->host.id;
    missing_ctx m = {.r = r, .names = missing};
    ks_code rc = ks_store_vm_list(api->store, &f, collect_missing, &m, err);
    size_t i;
    json_t *name;
    json_array_foreach(missing, i, name)
    {
        if (rc != KS_OK)
            break;
        rc = ks_store_vm_set_applied(api->store, json_string_value(name), 0, NULL, now, err);
        if (rc == KS_OK)
            rc = ks_api__event(api, "vm.missing_on_host", r->host.id, json_string_value(name),
                               json_pack("{s:s}", "action", "plan pushed again"), err);
    }
    return rc;
}

void ks_api_h_host_report(ks_api_req *req)
{
    ks_api *api = req->api;
    const char *id = req->params[0];
    ks_err err = {0};
    ks_report *r = NULL;
    ks_sched_affected affected;
    ks_sched_affected_init(&affected);
    json_t *replans = json_array(), *unknown_vms = NULL, *missing = json_array();
    bool locked = false;
    if (!ks_api__valid_param(req, id, "host id"))
        goto out;
    ks_code rc = ks_report_parse(&r, req->call->body, req->call->body_len, &err);
    if (rc != KS_OK)
        goto fail;
    if (strcmp(r->host.id, id) != 0) {
        rc = ks_err_set_field(&err, KS_EINVAL, "host.id",
                              "report is for host '%s' but was sent to '%s'", r->host.id, id);
        goto fail;
    }
    if (r->n_cpus == 0) {
        rc = ks_err_set_field(&err, KS_EINVAL, "cpus", "a report must list at least one cpu");
        goto fail;
    }
    pthread_mutex_lock(&api->lock);
    locked = true;
    ks_store_host_row before = {0};
    bool existed = ks_store_host_get(&before, api->store, id, false, NULL) == KS_OK;
    ks_store_put_result res = {0};
    uint64_t now = ks_api_now_us();
    rc = ks_api__begin(api, &err);
    if (rc == KS_OK)
        rc = ks_store_host_put_report(api->store, r, req->call->body, now, &res, &err);
    if (rc == KS_OK && !res.unchanged) {
        json_t *detail = json_pack("{s:s,s:I,s:i}", "boot_id", r->host.boot_id, "generation",
                                   (json_int_t)r->host.generation, "cpus", (int)r->n_cpus);
        rc = ks_api__event(api, res.created ? "host.registered" : "host.reported", id, NULL,
                           detail, &err);
        if (rc == KS_OK && existed && before.state == KS_STORE_HOST_LOST)
            rc = ks_api__event(api, "host.state_changed", id, NULL,
                               json_pack("{s:s,s:s}", "from", "lost", "to", "ready"), &err);
    }
    unknown_vms = json_array();
    if (rc == KS_OK && !res.unchanged)
        rc = record_running_vms(api, r, now, unknown_vms, &err);
    if (rc == KS_OK && !res.unchanged)
        rc = reset_missing_vms(api, r, now, missing, &err);
    if (rc == KS_OK)
        rc = ks_store_commit(api->store, &err);
    else
        ks_api__rollback(api, rc);
    if (rc != KS_OK)
        goto fail;

    bool replan_ok = true;
    if (!res.unchanged) {
        ks_api_pusher_host_changed(api->pusher, id);
        size_t mi;
        json_t *mv;
        json_array_foreach(missing, mi, mv)
        {
            ks_api_pusher_apply(api->pusher, json_string_value(mv), id);
        }
        rc = ks_fleet_host_update(api->fleet, r, &affected, &err);
        if (rc != KS_OK) {
            /* The store took it; the index did not.  Surface it: the agent retries. */
            ks_err_prefix(&err, "report stored but not indexed");
            goto fail;
        }
        ks_store_host_row after = {0};
        if (ks_store_host_get(&after, api->store, id, false, NULL) == KS_OK)
            sync_schedulable(api, id, after.state);
        /* One re-plan per VM, whatever number of its vCPUs were hit. */
        for (uint32_t i = 0; i < affected.n; i++) {
            bool seen = false;
            for (uint32_t k = 0; k < i && !seen; k++)
                seen = strcmp(affected.items[k].vm, affected.items[i].vm) == 0;
            if (seen)
                continue;
            ks_err e = {0};
            if (ks_api__replan_vm(api, affected.items[i].vm, affected.items[i].reason, replans,
                                  &e) != KS_OK) {
                replan_ok = false;
                ks_log(KS_LOG_ERROR, "replan failed vm='%s' req=%s error='%s'",
                       affected.items[i].vm, req->request_id, e.msg);
            }
        }
    }
    pthread_mutex_unlock(&api->lock);
    locked = false;

    json_t *aff = json_array();
    for (uint32_t i = 0; i < affected.n; i++)
        json_array_append_new(aff, json_pack("{s:s,s:i,s:i,s:s}", "vm", affected.items[i].vm,
                                             "host_cpu", affected.items[i].host_cpu, "vcpu",
                                             affected.items[i].vcpu, "reason",
                                             affected.items[i].reason));
    json_t *body = json_pack("{s:s,s:I,s:s,s:b,s:b,s:b,s:o,s:O,s:b,s:o,s:O}", "host", id,
                             "generation", (json_int_t)r->host.generation, "boot_id",
                             r->host.boot_id, "created", res.created, "unchanged", res.unchanged,
                             "boot_changed", res.boot_changed, "affected", aff, "replans",
                             replans, "replans_complete", replan_ok, "unknown_vms", unknown_vms,
                             "missing_vms", missing);
    unknown_vms = NULL; /* taken by json_pack's "o" */
    ks_api_send_json(req, res.created ? 201 : 200, body);
    goto out;
fail:
    if (locked)
        pthread_mutex_unlock(&api->lock);
    locked = false;
    ks_api_send_error(req, &err);
out:
    json_decref(replans);
    json_decref(unknown_vms);
    json_decref(missing);
    ks_sched_affected_destroy(&affected);
    ks_report_free(r);
}

void ks_api_h_host_heartbeat(ks_api_req *req)
{
    ks_api *api = req->api;
    const char *id = req->params[0];
    ks_err err = {0};
    json_t *doc = NULL;
    const char *boot_id = NULL;
    json_int_t generation = -1;
    if (!ks_api__valid_param(req, id, "host id"))
        return;
    if (req->call->body_len > 0) {
        const char *ct = ks_api_header(req, "Content-Type");
        if (!ct || strncmp(ct, "application/json", 16) != 0) {
            ks_err_set(&err, KS_API_EMEDIATYPE, "Content-Type must be application/json");
            goto fail;
        }
        if (ks_api_body_json(&doc, req, &err) != KS_OK)
            goto fail;
        json_t *b = json_object_get(doc, "boot_id"), *g = json_object_get(doc, "generation");
        const char *key;
        json_t *val;
        if (!json_is_object(doc)) {
            ks_err_set_field(&err, KS_EINVAL, "$", "heartbeat body must be an object");
            goto fail;
        }
        json_object_foreach(doc, key, val)
        {
            if (strcmp(key, "boot_id") && strcmp(key, "generation")) {
                ks_err_set_field(&err, KS_EINVAL, key, "unknown field '%s'", key);
                goto fail;
            }
        }
        if (b && !json_is_string(b)) {
            ks_err_set_field(&err, KS_EINVAL, "boot_id", "boot_id must be a string");
            goto fail;
        }
        if (g && (!json_is_integer(g) || json_integer_value(g) < 0)) {
            ks_err_set_field(&err, KS_EINVAL, "generation",
                             "generation must be a non-negative integer");
            goto fail;
        }
        boot_id = b ? json_string_value(b) : NULL;
        generation = g ? json_integer_value(g) : -1;
    }
    pthread_mutex_lock(&api->lock);
    ks_store_host_row row = {0};
    ks_code rc = ks_store_host_get(&row, api->store, id, false, &err);
    if (rc == KS_OK)
        rc = ks_api__begin(api, &err);
    if (rc == KS_OK)
        rc = ks_store_host_heartbeat(api->store, id, ks_api_now_us(), &err);
    bool revived = rc == KS_OK && row.state == KS_STORE_HOST_LOST;
    if (revived) {
        rc = ks_store_host_set_state(api->store, id, KS_STORE_HOST_READY, ks_api_now_us(), &err);
        if (rc == KS_OK)
            rc = ks_api__event(api, "host.state_changed", id, NULL,
                               json_pack("{s:s,s:s}", "from", "lost", "to", "ready"), &err);
    }
    if (rc == KS_OK)
        rc = ks_store_commit(api->store, &err);
    else
        ks_api__rollback(api, rc);
    if (rc == KS_OK && revived)
        sync_schedulable(api, id, KS_STORE_HOST_READY);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK)
        goto fail;
    /* The agent must re-send its full report when we hold another boot or an older
     * generation than it has (e.g. after our database was restored). */
    bool report_required = (boot_id && strcmp(boot_id, row.boot_id) != 0) ||
                           (generation >= 0 && (uint64_t)generation > row.generation);
    ks_api_send_json(req, 200,
                     json_pack("{s:s,s:s,s:b}", "host", id, "state",
                               revived ? "ready" : ks_store_host_state_to_str(row.state),
                               "report_required", report_required));
    json_decref(doc);
    return;
fail:
    json_decref(doc);
    ks_api_send_error(req, &err);
}

/* ---- GET /v1/hosts ---- */

typedef struct list_ctx {
    ks_api *api;
    int kind;          /* ks_kind_class, -1 any, KS_KIND_CLASS__COUNT = hybrid */
    bool has_feature;
    unsigned feature;
    unsigned limit;
    json_t *items;
    char last[KS_ID_MAX];
    bool more;
    ks_code rc;
} list_ctx;

typedef struct host_probe {
    int kind;
    bool has_feature;
    unsigned feature;
    bool kind_ok, feature_ok;
    bool seen_kind[KS_KIND_CLASS__COUNT];
} host_probe;

static bool probe_cpu(void *ctx, const ks_fleet_cpu_view *c)
{
    host_probe *p = ctx;
    /* Hosts without core kinds count as all-performance (as the index treats them). */
    if (c->kind_class < KS_KIND_CLASS__COUNT)
        p->seen_kind[c->kind_class] = true;
    if (p->has_feature && c->usable && ks_featset_test(c->usable, p->feature))
        p->feature_ok = true;
    return true;
}

static int list_host(void *ctx, const ks_store_host_row *row)
{
    list_ctx *l = ctx;
    if (l->kind >= 0 || l->has_feature) {
        host_probe p = {.kind = l->kind, .has_feature = l->has_feature, .feature = l->feature};
        if (ks_fleet_host_cpus(l->api->fleet, row->id, probe_cpu, &p, NULL) != KS_OK)
            return 0; /* not indexed: cannot match a CPU filter */
        if (l->kind == KS_KIND_CLASS__COUNT)
            p.kind_ok = p.seen_kind[KS_KIND_PERFORMANCE] && p.seen_kind[KS_KIND_EFFICIENCY];
        else if (l->kind >= 0)
            p.kind_ok = p.seen_kind[l->kind];
        else
            p.kind_ok = true;
        if (!p.kind_ok || (l->has_feature && !p.feature_ok))
            return 0;
    }
    if (json_array_size(l->items) == l->limit) {
        l->more = true;
        return 1;
    }
    json_t *h = ks_api__host_json(l->api, row);
    if (!h) {
        l->rc = KS_ENOMEM;
        return 1;
    }
    json_array_append_new(l->items, h);
    snprintf(l->last, sizeof(l->last), "%s", row->id);
    return 0;
}

static json_t *page(json_t *items, bool more, const char *last)
{
    char *cursor = more ? ks_api_cursor_encode(last) : NULL;
    json_t *doc = json_pack("{s:o,s:s?}", "items", items, "next_cursor", cursor);
    if (doc && !cursor)
        json_object_set_new(doc, "next_cursor", json_null());
    free(cursor);
    return doc;
}

void ks_api_h_hosts_list(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    ks_store_host_filter f = KS_STORE_HOST_FILTER_INIT;
    list_ctx l = {.api = api, .kind = -1};
    char after[KS_ID_MAX];
    const char *v;
    if (ks_api_query_limit(&l.limit, req, 100, 1000, &err) != KS_OK)
        goto fail;
    if ((v = ks_api_query(req, "state")) && (f.state = ks_store_host_state_from_str(v)) < 0) {
        ks_err_set_field(&err, KS_EINVAL, "state", "unknown host state '%s'", v);
        goto fail;
    }
    if ((v = ks_api_query(req, "arch")) && (f.arch = ks_arch_from_str(v)) < 0) {
        ks_err_set_field(&err, KS_EINVAL, "arch", "unknown arch '%s'", v);
        goto fail;
    }
    if ((v = ks_api_query(req, "vendor")))
        f.vendor = v;
    if ((v = ks_api_query(req, "kind"))) {
        if (strcmp(v, "hybrid") == 0)
            l.kind = KS_KIND_CLASS__COUNT;
        else if ((l.kind = ks_kind_class_from_str(v)) < 0) {
            ks_err_set_field(&err, KS_EINVAL, "kind",
                             "kind must be performance, efficiency or hybrid, not '%s'", v);
            goto fail;
        }
    }
    if ((v = ks_api_query(req, "feature"))) {
        if (ks_feature_lookup(v, &l.feature, &err) != KS_OK) {
            snprintf(err.field, sizeof(err.field), "feature");
            goto fail;
        }
        l.has_feature = true;
    }
    if ((v = ks_api_query(req, "cursor"))) {
        if (ks_api_cursor_decode(after, sizeof(after), v, &err) != KS_OK)
            goto fail;
        f.after_id = after;
    }
    l.items = json_array();
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_store_host_list(api->store, &f, list_host, &l, &err);
    pthread_mutex_unlock(&api->lock);
    if (rc == KS_OK && l.rc != KS_OK)
        rc = ks_err_set(&err, l.rc, "out of memory");
    if (rc != KS_OK) {
        json_decref(l.items);
        goto fail;
    }
    ks_api_send_json(req, 200, page(l.items, l.more, l.last));
    return;
fail:
    ks_api_send_error(req, &err);
}

/* Loads the host JSON (lock held); KS_ENOTFOUND passes up. */
static ks_code host_doc(json_t **out, ks_api *api, const char *id, ks_err *err)
{
    ks_store_host_row row = {0};
    ks_code rc = ks_store_host_get(&row, api->store, id, false, err);
    if (rc != KS_OK)
        return rc;
    json_t *doc = ks_api__host_json(api, &row);
    if (!doc)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    char url[KS_TEXT_MAX];
    ks_api_agent_url(api->pusher, api, id, url, sizeof(url));
    json_object_set_new(doc, "agent_url", url[0] ? json_string(url) : json_null());
    *out = doc;
    return KS_OK;
}

void ks_api_h_host_get(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    json_t *doc = NULL;
    if (!ks_api__valid_param(req, req->params[0], "host id"))
        return;
    pthread_mutex_lock(&api->lock);
    ks_code rc = host_doc(&doc, api, req->params[0], &err);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_json_etag(req, doc);
}

/* ---- GET /v1/hosts/{id}/cpus ---- */

typedef struct cpus_ctx {
    json_t *items;
    int state;
    const char *host;
    ks_api *api;
    json_t *defects; /* {"<cpu id>": [defect, ...]} */
} cpus_ctx;

static int collect_defect(void *ctx, const ks_store_defect_row *d)
{
    cpus_ctx *x = ctx;
    char key[16];
    snprintf(key, sizeof(key), "%d", d->cpu_id);
    json_t *arr = json_object_get(x->defects, key);
    if (!arr) {
        arr = json_array();
        json_object_set_new(x->defects, key, arr);
    }
    json_array_append_new(
        arr, json_pack("{s:o,s:s,s:I,s:s}", "feature",
                       d->feature_name[0] ? json_string(d->feature_name) : json_null(), "source",
                       ks_defect_source_to_str((ks_defect_source)d->source), "time_us",
                       (json_int_t)d->time_us, "detail", d->detail));
    return 0;
}

static bool cpu_json(void *ctx, const ks_fleet_cpu_view *c)
{
    cpus_ctx *x = ctx;
    if (x->state >= 0 && c->state != x->state)
        return true;
    ks_featset lost;
    ks_featset_andnot(&lost, c->native, c->usable);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(c->id));
    json_object_set_new(o, "package", json_integer(c->package));
    json_object_set_new(o, "core", json_integer(c->core));
    json_object_set_new(o, "thread", json_integer(c->thread));
    json_object_set_new(o, "numa_node", json_integer(c->numa_node));
    json_object_set_new(o, "l2_group", json_integer(c->l2_group));
    json_object_set_new(o, "l3_group", json_integer(c->l3_group));
    json_object_set_new(o, "kind", json_string(ks_kind_class_to_str((ks_kind_class)c->kind_class)));
    json_object_set_new(o, "kind_name", json_string(c->kind_name ? c->kind_name : ""));
    json_object_set_new(o, "max_mhz", json_integer(c->max_mhz));
    json_object_set_new(o, "state", json_string(ks_cpu_state_to_str((ks_cpu_state)c->state)));
    json_object_set_new(o, "reserved", json_boolean(c->reserved));
    json_object_set_new(o, "n_native", json_integer(ks_featset_popcount(c->native)));
    json_object_set_new(o, "n_usable", json_integer(ks_featset_popcount(c->usable)));
    json_object_set_new(o, "unusable", ks_featset_to_json(&lost));
    json_object_set_new(o, "vm", c->vm ? json_string(c->vm) : json_null());
    char key[16];
    snprintf(key, sizeof(key), "%d", c->id);
    json_t *d = json_object_get(x->defects, key);
    json_object_set_new(o, "defects", d ? json_incref(d) : json_array());
    json_array_append_new(x->items, o);
    return true;
}

void ks_api_h_host_cpus(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    const char *id = req->params[0];
    cpus_ctx x = {.state = -1, .host = id, .api = api};
    const char *v = ks_api_query(req, "state");
    if (!ks_api__valid_param(req, id, "host id"))
        return;
    if (v && (x.state = ks_cpu_state_from_str(v)) < 0) {
        ks_err_set_field(&err, KS_EINVAL, "state", "unknown cpu state '%s'", v);
        ks_api_send_error(req, &err);
        return;
    }
    x.items = json_array();
    x.defects = json_object();
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_store_defect_list(api->store, id, -1, collect_defect, &x, &err);
    if (rc == KS_OK)
        rc = ks_fleet_host_cpus(api->fleet, id, cpu_json, &x, &err);
    if (rc == KS_ENOTFOUND)
        ks_err_set(&err, KS_ENOTFOUND, "host '%s' not found", id);
    pthread_mutex_unlock(&api->lock);
    json_decref(x.defects);
    if (rc != KS_OK) {
        json_decref(x.items);
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_json(req, 200, json_pack("{s:s,s:o}", "host", id, "items", x.items));
}

/* ---- drain / delete ---- */

void ks_api_h_host_drain(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    const char *id = req->params[0];
    json_t *doc = NULL;
    if (!ks_api__valid_param(req, id, "host id"))
        return;
    pthread_mutex_lock(&api->lock);
    ks_store_host_row row = {0};
    ks_code rc = host_doc(&doc, api, id, &err);
    char etag[80] = "";
    if (rc == KS_OK) {
        ks_api_etag_of(etag, doc);
        rc = ks_api_check_if_match(req, etag, &err);
    }
    if (rc == KS_OK)
        rc = ks_store_host_get(&row, api->store, id, false, &err);
    bool change = rc == KS_OK && row.state != KS_STORE_HOST_DRAINING;
    if (change) {
        rc = ks_api__begin(api, &err);
        if (rc == KS_OK)
            rc = ks_store_host_set_state(api->store, id, KS_STORE_HOST_DRAINING, ks_api_now_us(),
                                         &err);
        if (rc == KS_OK)
            rc = ks_api__event(
                api, "host.state_changed", id, NULL,
                json_pack("{s:s,s:s}", "from", ks_store_host_state_to_str(row.state), "to",
                          "draining"),
                &err);
        if (rc == KS_OK)
            rc = ks_store_commit(api->store, &err);
        else
            ks_api__rollback(api, rc);
        if (rc == KS_OK)
            sync_schedulable(api, id, KS_STORE_HOST_DRAINING);
    }
    json_decref(doc);
    doc = NULL;
    if (rc == KS_OK)
        rc = host_doc(&doc, api, id, &err);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_etag_of(req->resp->etag, doc);
    ks_api_send_json(req, 200, doc);
}

void ks_api_h_host_delete(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    const char *id = req->params[0];
    json_t *doc = NULL;
    if (!ks_api__valid_param(req, id, "host id"))
        return;
    pthread_mutex_lock(&api->lock);
    ks_code rc = host_doc(&doc, api, id, &err);
    if (rc == KS_OK) {
        char etag[80];
        ks_api_etag_of(etag, doc);
        rc = ks_api_check_if_match(req, etag, &err);
    }
    if (rc == KS_OK)
        rc = ks_api__begin(api, &err);
    if (rc == KS_OK) {
        rc = ks_store_host_delete(api->store, id, &err);
        if (rc == KS_OK)
            rc = ks_api__event(api, "host.deleted", id, NULL, NULL, &err);
        if (rc == KS_OK)
            rc = ks_store_commit(api->store, &err);
        else
            ks_api__rollback(api, rc);
    }
    if (rc == KS_OK) {
        ks_err e = {0};
        ks_code frc = ks_fleet_host_remove(api->fleet, id, &e);
        if (frc != KS_OK && frc != KS_ENOTFOUND)
            ks_log(KS_LOG_ERROR, "index remove host='%s' error='%s'", id, e.msg);
    }
    pthread_mutex_unlock(&api->lock);
    json_decref(doc);
    if (rc != KS_OK) {
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_text(req, 204, "application/json", "", 0);
}

/* ---- background: hosts whose heartbeats stopped ---- */

typedef struct stale_list {
    char (*ids)[KS_ID_MAX];
    uint8_t *states;
    size_t n, cap;
    uint64_t cutoff_us;
} stale_list;

static int find_stale(void *ctx, const ks_store_host_row *row)
{
    stale_list *s = ctx;
    if (row->state == KS_STORE_HOST_LOST || row->last_heartbeat_us >= s->cutoff_us)
        return 0;
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        void *a = realloc(s->ids, ncap * sizeof(*s->ids));
        if (!a)
            return 1;
        s->ids = a;
        void *b = realloc(s->states, ncap);
        if (!b)
            return 1;
        s->states = b;
        s->cap = ncap;
    }
    snprintf(s->ids[s->n], KS_ID_MAX, "%s", row->id);
    s->states[s->n++] = row->state;
    return 0;
}

void ks_api__mark_lost_hosts(ks_api *api)
{
    uint64_t now = ks_api_now_us();
    /* While we were down no agent could reach us: every host gets a full
     * --lost-after period from our start before it can be declared lost. */
    if (now - api->started_us < api->opts.lost_after_us)
        return;
    stale_list s = {.cutoff_us = now > api->opts.lost_after_us ? now - api->opts.lost_after_us : 0};
    ks_err err = {0};
    if (ks_store_host_list(api->store, NULL, find_stale, &s, &err) != KS_OK)
        ks_log(KS_LOG_WARN, "lost-host sweep error='%s', ignoring", err.msg);
    for (size_t i = 0; i < s.n; i++) {
        ks_code rc = ks_api__begin(api, &err);
        if (rc == KS_OK)
            rc = ks_store_host_set_state(api->store, s.ids[i], KS_STORE_HOST_LOST, now, &err);
        if (rc == KS_OK)
            rc = ks_api__event(api, "host.state_changed", s.ids[i], NULL,
                               json_pack("{s:s,s:s,s:s}", "from",
                                         ks_store_host_state_to_str(s.states[i]), "to", "lost",
                                         "reason", "heartbeat timeout"),
                               &err);
        if (rc == KS_OK)
            rc = ks_store_commit(api->store, &err);
        else
            ks_api__rollback(api, rc);
        if (rc == KS_OK) {
            sync_schedulable(api, s.ids[i], KS_STORE_HOST_LOST);
            ks_log(KS_LOG_WARN, "host lost host='%s' after_us=%llu", s.ids[i],
                   (unsigned long long)api->opts.lost_after_us);
        } else {
            ks_log(KS_LOG_WARN, "marking host='%s' lost failed error='%s', ignoring", s.ids[i],
                   err.msg);
        }
    }
    free(s.ids);
    free(s.states);
}
