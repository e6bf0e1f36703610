/*
 * ks_api_util.c - pieces several handlers share: events, the re-plan step, and
 * the JSON shapes of hosts and VMs (so GET, list and ETag agree byte for byte).
 * Every function here expects the fleet lock held by the caller.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_api_push.h"
#include "ks_api_util.h"
#include "ks_json_util.h"
#include "ks_log.h"

ks_code ks_api__event(ks_api *api, const char *type, const char *host, const char *vm,
                      json_t *detail, ks_err *err)
{
    char *text = detail ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(detail);
    ks_code rc = ks_store_event_append(NULL, api->store, ks_api_now_us(), type, host, vm, text,
                                       err);
    free(text);
    return rc;
}

ks_code ks_api__rollback(ks_api *api, ks_code rc)
{
    ks_store_rollback(api->store, NULL);
    return rc;
}

ks_code ks_api__replan_vm(ks_api *api, const char *name, const char *why, json_t *results,
                          ks_err *err)
{
    ks_plan *np = NULL;
    ks_err e = {0};
    char *plan_text = NULL;
    ks_store_vcpu_alloc *allocs = NULL;
    json_t *item = json_object();
    if (!item)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    json_object_set_new(item, "vm", json_string(name));
    ks_code rc = ks_sched_replan(&np, api->fleet, name, &e);
    if (rc == KS_ENOCAPACITY) {
        rc = ks_api__begin(api, err);
        if (rc == KS_OK)
            rc = ks_store_vm_set_state(api->store, name, KS_STORE_VM_NEEDS_MIGRATION,
                                       ks_api_now_us(), err);
        if (rc == KS_OK)
            rc = ks_api__event(api, "vm.needs_migration", NULL, name,
                               json_pack("{s:s,s:s}", "reason", why, "detail", e.msg), err);
        if (rc == KS_OK)
            rc = ks_store_commit(api->store, err);
        else
            ks_api__rollback(api, rc);
        if (rc == KS_OK) {
            json_object_set_new(item, "result", json_string("needs_migration"));
            json_object_set_new(item, "detail", json_string(e.msg));
            ks_log(KS_LOG_WARN, "vm needs migration vm='%s' reason='%s' detail='%s'", name, why,
                   e.msg);
        }
        goto done;
    }
    if (rc != KS_OK) {
        *err = e;
        goto done;
    }
    json_t *pj = ks_plan_to_json(np);
    plan_text = pj ? json_dumps(pj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(pj);
    allocs = calloc(np->n_vcpus ? np->n_vcpus : 1, sizeof(*allocs));
    if (!plan_text || !allocs) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < np->n_vcpus; i++)
        allocs[i] = (ks_store_vcpu_alloc){np->vcpus[i].id, np->vcpus[i].host_cpu};
    rc = ks_api__begin(api, err);
    if (rc == KS_OK)
        rc = ks_store_vm_update_plan(api->store, name, np->host, np->generation, plan_text,
                                     allocs, np->n_vcpus, ks_api_now_us(), err);
    if (rc == KS_OK)
        rc = ks_store_vm_set_state(api->store, name, KS_STORE_VM_RUNNING, ks_api_now_us(), err);
    if (rc == KS_OK)
        rc = ks_api__event(api, "vm.replanned", np->host, name,
                           json_pack("{s:s,s:I}", "reason", why, "generation",
                                     (json_int_t)np->generation),
                           err);
    if (rc == KS_OK)
        rc = ks_store_commit(api->store, err);
    else
        ks_api__rollback(api, rc);
    if (rc != KS_OK)
        goto done;
    rc = ks_fleet_vm_update_plan(api->fleet, np, err);
    if (rc != KS_OK) {
        /* Store and index now disagree on this VM: a bug; the next restart heals it. */
        ks_log(KS_LOG_ERROR, "index update after replan failed vm='%s' error='%s'", name,
               err ? err->msg : "");
        goto done;
    }
    ks_api_pusher_apply(api->pusher, name, np->host);
    json_object_set_new(item, "result", json_string("replanned"));
    json_object_set_new(item, "generation", json_integer((json_int_t)np->generation));
    json_object_set_new(item, "host", json_string(np->host));
done:
    if (rc == KS_OK && results)
        json_array_append(results, item);
    json_decref(item);
    free(allocs);
    free(plan_text);
    ks_plan_free(np);
    return rc;
}

/* ---- JSON shapes ---- */

static json_t *text_or_null(const char *json_text)
{
    if (!json_text)
        return json_null();
    json_error_t je;
    json_t *v = json_loads(json_text, 0, &je);
    return v ? v : json_null();
}

json_t *ks_api__vm_json(const ks_store_vm_row *row)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "name", json_string(row->name));
    json_object_set_new(o, "host", json_string(row->host_id));
    json_object_set_new(o, "state", json_string(ks_store_vm_state_to_str(row->state)));
    json_object_set_new(o, "generation", json_integer((json_int_t)row->generation));
    json_object_set_new(o, "applied_generation",
                        json_integer((json_int_t)row->applied_generation));
    json_object_set_new(o, "pool", row->pool[0] ? json_string(row->pool) : json_null());
    json_object_set_new(o, "anti_affinity_group", row->anti_affinity_group[0]
                                                      ? json_string(row->anti_affinity_group)
                                                      : json_null());
    json_object_set_new(o, "apply_error",
                        row->apply_error[0] ? json_string(row->apply_error) : json_null());
    json_object_set_new(o, "vcpus", json_integer(row->n_vcpus));
    json_object_set_new(o, "created_us", json_integer((json_int_t)row->created_us));
    json_object_set_new(o, "updated_us", json_integer((json_int_t)row->updated_us));
    json_object_set_new(o, "request", text_or_null(row->request_json));
    json_object_set_new(o, "plan", text_or_null(row->plan_json));
    return o;
}

/* Appends `s` as a JSON string, or null when empty; false when it needs
 * escaping (left to jansson). */
static bool put_str_or_null(char **p, size_t *left, const char *s)
{
    if (!ks_json__plain(s, strlen(s)))
        return false;
    int n = s[0] ? snprintf(*p, *left, "\"%s\"", s) : snprintf(*p, *left, "null");
    if (n < 0 || (size_t)n >= *left)
        return false;
    *p += n;
    *left -= (size_t)n;
    return true;
}

char *ks_api__vm_text(const ks_store_vm_row *row)
{
    const char *req = row->request_json ? row->request_json : "null";
    const char *plan = row->plan_json ? row->plan_json : "null";
    size_t cap = strlen(req) + strlen(plan) + 3 * KS_ID_MAX + KS_TEXT_MAX + 512;
    char *text = malloc(cap);
    if (!text)
        return NULL;
    char *p = text;
    size_t left = cap;
    bool ok = true;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int n_ = ok ? snprintf(p, left, __VA_ARGS__) : -1;                                         \
        ok = n_ >= 0 && (size_t)n_ < left;                                                         \
        if (ok) {                                                                                  \
            p += n_;                                                                               \
            left -= (size_t)n_;                                                                    \
        }                                                                                          \
    } while (0)
    /* Keys in byte order, as JSON_SORT_KEYS writes them. */
    PUT("{\"anti_affinity_group\":");
    ok = ok && put_str_or_null(&p, &left, row->anti_affinity_group);
    PUT(",\"applied_generation\":%lld,\"apply_error\":", (long long)row->applied_generation);
    ok = ok && put_str_or_null(&p, &left, row->apply_error);
    PUT(",\"created_us\":%lld,\"generation\":%lld,\"host\":", (long long)row->created_us,
        (long long)row->generation);
    ok = ok && put_str_or_null(&p, &left, row->host_id);
    PUT(",\"name\":");
    ok = ok && put_str_or_null(&p, &left, row->name);
    PUT(",\"plan\":%s,\"pool\":", plan);
    ok = ok && put_str_or_null(&p, &left, row->pool);
    PUT(",\"request\":%s,\"state\":\"%s\",\"updated_us\":%lld,\"vcpus\":%u}", req,
        ks_store_vm_state_to_str(row->state), (long long)row->updated_us, row->n_vcpus);
#undef PUT
    if (ok && row->host_id[0] && row->name[0])
        return text;
    free(text);
    json_t *doc = ks_api__vm_json(row);
    text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    return text;
}

typedef struct cpu_counts {
    uint32_t by_state[KS_CPU_STATE__COUNT];
    uint32_t by_kind[KS_KIND_CLASS__COUNT];
    uint32_t reserved;
} cpu_counts;

static bool count_cpu(void *ctx, const ks_fleet_cpu_view *c)
{
    cpu_counts *n = ctx;
    if (c->state < KS_CPU_STATE__COUNT)
        n->by_state[c->state]++;
    if (c->kind_class < KS_KIND_CLASS__COUNT)
        n->by_kind[c->kind_class]++;
    if (c->reserved)
        n->reserved++;
    return true;
}

json_t *ks_api__host_json(ks_api *api, const ks_store_host_row *row)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_string(row->id));
    json_object_set_new(o, "hostname", json_string(row->hostname));
    json_object_set_new(o, "arch", row->arch >= 0 ? json_string(ks_arch_to_str((ks_arch)row->arch))
                                                  : json_null());
    json_object_set_new(o, "vendor", json_string(row->vendor));
    json_object_set_new(o, "model_name", json_string(row->model_name));
    json_object_set_new(o, "state", json_string(ks_store_host_state_to_str(row->state)));
    json_object_set_new(o, "boot_id", json_string(row->boot_id));
    json_object_set_new(o, "generation", json_integer((json_int_t)row->generation));
    json_object_set_new(o, "registered_us", json_integer((json_int_t)row->registered_us));
    json_object_set_new(o, "updated_us", json_integer((json_int_t)row->updated_us));
    json_object_set_new(o, "last_heartbeat_us", json_integer((json_int_t)row->last_heartbeat_us));
    json_object_set_new(o, "n_cpus", json_integer(row->n_cpus));
    ks_fleet_host_view v;
    json_t *counts = json_object();
    if (counts && ks_fleet_host_get(api->fleet, row->id, &v, NULL) == KS_OK) {
        cpu_counts n = {0};
        ks_fleet_host_cpus(api->fleet, row->id, count_cpu, &n, NULL);
        json_t *st = json_object(), *kd = json_object();
        for (int i = 0; i < KS_CPU_STATE__COUNT; i++)
            json_object_set_new(st, ks_cpu_state_to_str((ks_cpu_state)i),
                                json_integer(n.by_state[i]));
        for (int i = 0; i < KS_KIND_CLASS__COUNT; i++)
            json_object_set_new(kd, ks_kind_class_to_str((ks_kind_class)i),
                                json_integer(n.by_kind[i]));
        json_object_set_new(counts, "cpus_by_state", st);
        json_object_set_new(counts, "cpus_by_kind", kd);
        json_object_set_new(counts, "reserved", json_integer(n.reserved));
        json_object_set_new(counts, "allocated", json_integer(v.n_allocated));
        json_object_set_new(counts, "free", json_integer(v.n_free));
        json_object_set_new(counts, "vms", json_integer(v.n_vms));
        json_object_set_new(o, "schedulable", json_boolean(v.schedulable));
        json_object_set_new(o, "indexed", json_true());
    } else {
        json_object_set_new(o, "schedulable", json_false());
        json_object_set_new(o, "indexed", json_false());
    }
    if (counts)
        json_object_set_new(o, "counts", counts);
    return o;
}

bool ks_api__valid_param(ks_api_req *req, const char *value, const char *what)
{
    if (ks_id_valid(value))
        return true;
    ks_err e;
    ks_err_set_field(&e, KS_EINVAL, what, "invalid %s '%.64s': 1..63 of [A-Za-z0-9._-]", what,
                     value);
    ks_api_send_error(req, &e);
    return false;
}
