/*
 * ks_api_vms.c - /v1/vms: create (= place), list, get, delete.
 *
 * Placement (docs/api.md#vm-create), all under the fleet lock so two requests
 * can never pick the same CPU: decide (ks_sched_place, index untouched) ->
 * one store unit (vm row, vCPU allocations - UNIQUE per host CPU -, the
 * event, and the idempotency record) -> ks_fleet_vm_add (the CPUs are now
 * reserved) -> group commit (ks_api_group.c) -> answer.  A failed commit
 * withdraws the reservation.
 * Idempotency-Key: keys are scoped to the token; the same key with the same
 * request replays the stored 201, with another request it is 422.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "ks_api_push.h"
#include "ks_api_util.h"
#include "ks_log.h"

static void request_hash(char out[65], const ks_api_req *req)
{
    gnutls_hash_hd_t h;
    uint8_t d[32] = {0};
    if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) == 0) {
        gnutls_hash(h, req->call->method, strlen(req->call->method) + 1);
        gnutls_hash(h, req->call->path, strlen(req->call->path) + 1);
        if (req->call->body_len)
            gnutls_hash(h, req->call->body, req->call->body_len);
        gnutls_hash_deinit(h, d);
    }
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = '\0';
}

void ks_api_h_vm_create(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    json_t *doc = NULL;
    ks_vm_request *vr = NULL;
    ks_plan *plan = NULL;
    char *request_text = NULL, *plan_text = NULL, *response_text = NULL;
    ks_store_vcpu_alloc *allocs = NULL;
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    bool locked = false, announced = false;
    char idem_key[KS_TEXT_MAX] = "", hash[65] = "";
    ks_code rc = ks_api_body_json(&doc, req, &err);
    if (rc == KS_OK)
        rc = ks_vm_request_from_json(&vr, doc, &err);
    if (rc != KS_OK)
        goto fail;
    const char *key = ks_api_header(req, "Idempotency-Key");
    if (key) {
        size_t klen = strlen(key);
        if (klen == 0 || klen > 128) {
            rc = ks_err_set_field(&err, KS_EINVAL, "Idempotency-Key",
                                  "Idempotency-Key must be 1..128 characters");
            goto fail;
        }
        snprintf(idem_key, sizeof(idem_key), "%s:%s", req->principal.token_id, key);
        request_hash(hash, req);
    }

    ks_api__unit_announce(api);
    pthread_mutex_lock(&api->lock);
    locked = true;
    announced = true;
    if (idem_key[0]) {
        ks_store_idem_row prev = {0};
        rc = ks_store_idem_get(&prev, api->store, idem_key, &err);
        if (rc == KS_OK) {
            bool same = strcmp(prev.request_hash, hash) == 0;
            if (same) {
                ks_api_send_text(req, prev.status, "application/json",
                                 prev.response_json ? prev.response_json : "",
                                 prev.response_json ? strlen(prev.response_json) : 0);
                if (prev.response_json) {
                    json_error_t je;
                    json_t *stored = json_loads(prev.response_json, 0, &je);
                    if (stored)
                        ks_api_etag_of(req->resp->etag, stored);
                    json_decref(stored);
                }
                snprintf(req->resp->location, sizeof(req->resp->location), "/v1/vms/%s",
                         vr->name);
            } else {
                ks_err_set_field(&err, KS_API_EIDEMPOTENCY, "Idempotency-Key",
                                 "Idempotency-Key '%s' was used with a different request", key);
            }
            ks_store_idem_row_destroy(&prev);
            ks_api__unit_withdraw(api);
            announced = false;
            pthread_mutex_unlock(&api->lock);
            locked = false;
            if (!same)
                goto fail;
            goto out;
        }
        if (rc != KS_ENOTFOUND)
            goto fail;
        ks_err_clear(&err);
    }

    int attempt = 0;
    if (api->replicated) {
        /* Start from what the other replicas committed: fewer lost races. */
        ks_err se = {0};
        if (ks_api__sync_changes(api, &se) != KS_OK)
            ks_log(KS_LOG_WARN, "change feed error='%s' req=%s", se.msg, req->request_id);
    }
place:;
    uint64_t t0 = ks_api_mono_us();
    rc = ks_sched_place(&plan, api->fleet, vr, &why, &err);
    if (rc != KS_OK) {
        ks_metrics_placement(&api->metrics, false, ks_api_mono_us() - t0);
        if (rc == KS_ENOCAPACITY) {
            ks_api__unit_withdraw(api);
            announced = false;
            pthread_mutex_unlock(&api->lock);
            locked = false;
            json_t *details = json_pack("{s:I,s:o}", "hosts_considered",
                                        (json_int_t)why.hosts_considered, "reasons",
                                        ks_sched_explain_to_json(&why));
            ks_log(KS_LOG_INFO, "placement failed vm='%s' req=%s reason='%s'", vr->name,
                   req->request_id, err.msg);
            ks_api_send_error_details(req, &err, details);
            goto out;
        }
        goto fail;
    }
    request_text = ks_vm_request_to_text(vr);
    plan_text = ks_plan_to_text(plan);
    allocs = calloc(plan->n_vcpus ? plan->n_vcpus : 1, sizeof(*allocs));
    if (!request_text || !plan_text || !allocs) {
        rc = ks_err_set(&err, KS_ENOMEM, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < plan->n_vcpus; i++)
        allocs[i] = (ks_store_vcpu_alloc){plan->vcpus[i].id, plan->vcpus[i].host_cpu};
    uint64_t now = ks_api_now_us();
    ks_store_vm_row row = {.state = KS_STORE_VM_RUNNING, .generation = plan->generation,
                           .n_vcpus = plan->n_vcpus, .created_us = now, .updated_us = now,
                           .request_json = request_text, .plan_json = plan_text};
    snprintf(row.name, sizeof(row.name), "%s", vr->name);
    snprintf(row.host_id, sizeof(row.host_id), "%s", plan->host);
    snprintf(row.pool, sizeof(row.pool), "%s", vr->pool);
    snprintf(row.anti_affinity_group, sizeof(row.anti_affinity_group), "%s",
             vr->anti_affinity_group);
    response_text = ks_api__vm_text(&row);
    if (!response_text) {
        rc = ks_err_set(&err, KS_ENOMEM, "out of memory");
        goto fail;
    }
    rc = ks_api__unit_begin(api, &err);
    announced = false; /* from here on ks_api__unit_end or the begin failure settles it */
    if (rc != KS_OK)
        goto fail;
    rc = ks_store_vm_insert(api->store, &row, allocs, plan->n_vcpus, &err);
    if (rc == KS_OK)
        rc = ks_api__event(api, "vm.placed", plan->host, vr->name,
                           json_pack("{s:I,s:i}", "generation", (json_int_t)plan->generation,
                                     "vcpus", (int)plan->n_vcpus),
                           &err);
    if (rc == KS_OK && idem_key[0])
        rc = ks_store_idem_put(api->store, idem_key, hash, 201, response_text, now, &err);
    /* Fails when a deletion of the same name waits for its commit: the
     * index still holds that VM.  The client retries. */
    ks_api_unit unit = {0};
    if (rc == KS_OK && (rc = ks_fleet_vm_add(api->fleet, vr, plan, &err)) == KS_OK)
        unit.reserved_vm = vr->name;
    rc = ks_api__unit_end(api, &unit, rc, &err);
    /* Another replica took one of these CPUs first (the store's UNIQUE
     * constraint): learn its changes and choose again, a bounded number of
     * times; after that the conflict goes to the client (409). */
    if (rc == KS_ECONFLICT && api->replicated && ++attempt < KS_API_PLACE_TRIES) {
        ks_err se = {0};
        if (ks_api__sync_host(api, plan->host, &se) != KS_OK ||
            ks_api__sync_changes(api, &se) != KS_OK)
            ks_log(KS_LOG_WARN, "replica sync error='%s' req=%s", se.msg, req->request_id);
        ks_plan_free(plan);
        plan = NULL;
        free(request_text);
        free(plan_text);
        free(response_text);
        free(allocs);
        request_text = plan_text = response_text = NULL;
        allocs = NULL;
        ks_log(KS_LOG_DEBUG, "placement conflict vm='%s' attempt=%d req=%s, retrying", vr->name,
               attempt, req->request_id);
        ks_err_clear(&err);
        ks_api__unit_announce(api);
        announced = true;
        goto place;
    }
    if (rc != KS_OK)
        goto fail;
    ks_metrics_placement(&api->metrics, true, ks_api_mono_us() - t0);
    ks_api_pusher_apply(api->pusher, vr->name, plan->host);
    pthread_mutex_unlock(&api->lock);
    locked = false;
    ks_log(KS_LOG_INFO, "vm placed vm='%s' host='%s' vcpus=%u req=%s", vr->name, plan->host,
           plan->n_vcpus, req->request_id);
    ks_api_etag_of_text(req->resp->etag, response_text);
    snprintf(req->resp->location, sizeof(req->resp->location), "/v1/vms/%s", vr->name);
    ks_api_send_text(req, 201, "application/json", response_text, strlen(response_text));
    goto out;
fail:
    if (announced)
        ks_api__unit_withdraw(api);
    if (locked)
        pthread_mutex_unlock(&api->lock);
    ks_api_send_error(req, &err);
out:
    json_decref(doc);
    ks_vm_request_free(vr);
    ks_plan_free(plan);
    free(request_text);
    free(plan_text);
    free(response_text);
    free(allocs);
    ks_sched_explain_destroy(&why);
}

typedef struct vm_list_ctx {
    json_t *items;
    unsigned limit;
    bool more;
    char last[KS_ID_MAX];
    bool oom;
} vm_list_ctx;

static int list_vm(void *ctx, const ks_store_vm_row *row)
{
    vm_list_ctx *l = ctx;
    if (json_array_size(l->items) == l->limit) {
        l->more = true;
        return 1;
    }
    json_t *o = ks_api__vm_json(row);
    if (!o) {
        l->oom = true;
        return 1;
    }
    json_array_append_new(l->items, o);
    snprintf(l->last, sizeof(l->last), "%s", row->name);
    return 0;
}

void ks_api_h_vms_list(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    ks_store_vm_filter f = KS_STORE_VM_FILTER_INIT;
    vm_list_ctx l = {0};
    char after[KS_ID_MAX];
    const char *v;
    f.with_json = true;
    if (ks_api_query_limit(&l.limit, req, 100, 1000, &err) != KS_OK)
        goto fail;
    if ((v = ks_api_query(req, "host"))) {
        if (!ks_id_valid(v)) {
            ks_err_set_field(&err, KS_EINVAL, "host", "invalid host id '%.64s'", v);
            goto fail;
        }
        f.host_id = v;
    }
    if (req->principal.role == KS_ROLE_AGENT) {
        /* An agent sees only the VMs of its own host. */
        if (f.host_id && strcmp(f.host_id, req->principal.host) != 0) {
            ks_err_set(&err, KS_EFORBIDDEN, "agent token of host '%s' may not list vms of '%s'",
                       req->principal.host, f.host_id);
            goto fail;
        }
        f.host_id = req->principal.host;
    }
    if ((v = ks_api_query(req, "state")) && (f.state = ks_store_vm_state_from_str(v)) < 0) {
        ks_err_set_field(&err, KS_EINVAL, "state", "unknown vm state '%s'", v);
        goto fail;
    }
    if ((v = ks_api_query(req, "pool")))
        f.pool = v;
    if ((v = ks_api_query(req, "cursor"))) {
        if (ks_api_cursor_decode(after, sizeof(after), v, &err) != KS_OK)
            goto fail;
        f.after_name = after;
    }
    l.items = json_array();
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_store_vm_list(api->store, &f, list_vm, &l, &err);
    pthread_mutex_unlock(&api->lock);
    if (rc == KS_OK && l.oom)
        rc = ks_err_set(&err, KS_ENOMEM, "out of memory");
    if (rc != KS_OK) {
        json_decref(l.items);
        goto fail;
    }
    char *cursor = l.more ? ks_api_cursor_encode(l.last) : NULL;
    json_t *doc = json_pack("{s:o}", "items", l.items);
    json_object_set_new(doc, "next_cursor", cursor ? json_string(cursor) : json_null());
    free(cursor);
    ks_api_send_json(req, 200, doc);
    return;
fail:
    ks_api_send_error(req, &err);
}

/* The VM document (lock held). */
static ks_code vm_doc(json_t **out, ks_api *api, const char *name, ks_err *err)
{
    ks_store_vm_row row = {0};
    ks_code rc = ks_store_vm_get(&row, api->store, name, true, err);
    if (rc != KS_OK)
        return rc;
    json_t *doc = ks_api__vm_json(&row);
    ks_store_vm_row_destroy(&row);
    if (!doc)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    *out = doc;
    return KS_OK;
}

void ks_api_h_vm_get(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    json_t *doc = NULL;
    if (!ks_api__valid_param(req, req->params[0], "vm name"))
        return;
    pthread_mutex_lock(&api->lock);
    ks_code rc = vm_doc(&doc, api, req->params[0], &err);
    pthread_mutex_unlock(&api->lock);
    if (rc != KS_OK) {
        ks_api_send_error(req, &err);
        return;
    }
    if (req->principal.role == KS_ROLE_AGENT &&
        strcmp(json_string_value(json_object_get(doc, "host")), req->principal.host) != 0) {
        json_decref(doc);
        ks_err_set(&err, KS_EFORBIDDEN, "agent token of host '%s' may not read vm '%s'",
                   req->principal.host, req->params[0]);
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_json_etag(req, doc);
}

void ks_api_h_vm_delete(ks_api_req *req)
{
    ks_api *api = req->api;
    ks_err err = {0};
    const char *name = req->params[0];
    if (!ks_api__valid_param(req, name, "vm name"))
        return;
    /* The document (and its JSON) is read only to check an If-Match. */
    bool if_match = ks_api_header(req, "If-Match") != NULL;
    ks_store_vm_row row = {0};
    /* The CPUs stay taken in the index until the deletion committed. */
    ks_api__unit_announce(api);
    pthread_mutex_lock(&api->lock);
    ks_code rc = ks_store_vm_get(&row, api->store, name, if_match, &err);
    if (rc == KS_OK && if_match) {
        char etag[80];
        json_t *doc = ks_api__vm_json(&row);
        if (!doc)
            rc = ks_err_set(&err, KS_ENOMEM, "out of memory");
        else
            ks_api_etag_of(etag, doc);
        json_decref(doc);
        if (rc == KS_OK)
            rc = ks_api_check_if_match(req, etag, &err);
    }
    if (rc == KS_OK) {
        rc = ks_api__unit_begin(api, &err);
        if (rc == KS_OK) {
            rc = ks_store_vm_delete(api->store, name, &err);
            if (rc == KS_OK)
                rc = ks_api__event(api, "vm.deleted", row.host_id, name, NULL, &err);
            ks_api_unit unit = {0};
            rc = ks_api__unit_end(api, &unit, rc, &err);
        }
    } else {
        ks_api__unit_withdraw(api);
    }
    if (rc == KS_OK) {
        ks_err e = {0};
        if (ks_fleet_vm_remove(api->fleet, name, &e) != KS_OK)
            ks_log(KS_LOG_ERROR, "index remove vm='%s' error='%s'", name, e.msg);
        ks_api_pusher_delete(api->pusher, name, row.host_id);
    }
    pthread_mutex_unlock(&api->lock);
    ks_store_vm_row_destroy(&row);
    if (rc != KS_OK) {
        ks_api_send_error(req, &err);
        return;
    }
    ks_api_send_text(req, 204, "application/json", "", 0);
}
