/*
 * ks_vm.c - the VM request (body of POST /v1/vms) and the vCPU plan
 * (scheduler -> agent -> VMM): allocation, copies and their strict JSON codecs
 * (docs/report-schema.md describes both documents field by field).
 *
 * Invariants of decoded values: a request has 1..KS_VM_MAX_VCPUS vCPUs in
 * total, valid ids in name/pool/host/anti_affinity_group (or "" when
 * omitted), and disjoint required/forbidden sets.  A plan has
 * 1..KS_VM_MAX_VCPUS vCPUs stored at index == id, no host CPU twice, guest
 * coordinates inside its topology (whose product covers every vCPU), disjoint
 * enable/disable sets and, when it has NUMA nodes, every vCPU in exactly one
 * of them (the one its numa_node names).  Stateless and reentrant.
 */
#include "ks_vm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_json_util.h"
#include "ks_vm_int.h"

/* limits and defaults (KS_VM_MAX_MEMORY_MIB, ...): ks_vm_int.h */

#define PATH(buf, parent, key) ks_json__path_key((buf), sizeof(buf), (parent), (key))
#define IDX(buf, parent, i) ks_json__path_idx((buf), sizeof(buf), (parent), (i))

/* ---- enum tables -------------------------------------------------------- */

static const char *const placement_names[KS_PLACE__COUNT] = {
    [KS_PLACE_PACK] = "pack",
    [KS_PLACE_SPREAD] = "spread",
};
static const char *const numa_mode_names[KS_NUMA__COUNT] = {
    [KS_NUMA_PREFERRED] = "preferred",
    [KS_NUMA_STRICT] = "strict",
};
static const char *const smt_names[KS_SMT__COUNT] = {
    [KS_SMT_ALLOW] = "allow",
    [KS_SMT_ISOLATE] = "isolate",
};

static int table_find(const char *const *table, int n, const char *s)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(table[i], s) == 0)
            return i;
    return -1;
}

const char *ks_placement_mode_to_str(ks_placement_mode m)
{
    return (unsigned)m < KS_PLACE__COUNT ? placement_names[m] : "unknown";
}

const char *ks_numa_mode_to_str(ks_numa_mode m)
{
    return (unsigned)m < KS_NUMA__COUNT ? numa_mode_names[m] : "unknown";
}

const char *ks_smt_mode_to_str(ks_smt_mode m)
{
    return (unsigned)m < KS_SMT__COUNT ? smt_names[m] : "unknown";
}

int ks_placement_mode_from_str(const char *s)
{
    return table_find(placement_names, KS_PLACE__COUNT, s);
}

int ks_numa_mode_from_str(const char *s)
{
    return table_find(numa_mode_names, KS_NUMA__COUNT, s);
}

int ks_smt_mode_from_str(const char *s)
{
    return table_find(smt_names, KS_SMT__COUNT, s);
}

/* ---- shared pieces ------------------------------------------------------ */

/* First feature in both a and b; "?" when none. */
static const char *first_common(const ks_featset *a, const ks_featset *b)
{
    ks_featset both;
    ks_featset_and(&both, a, b);
    int bit = ks_featset_next(&both, 0);
    return bit >= 0 ? ks_feature_name((unsigned)bit) : "?";
}

/* An event name present in both lists, or NULL. */
static const char *common_name(char (*a)[KS_NAME_MAX], uint32_t na, char (*b)[KS_NAME_MAX],
                               uint32_t nb)
{
    for (uint32_t i = 0; a && i < na; i++)
        for (uint32_t j = 0; b && j < nb; j++)
            if (strcmp(a[i], b[j]) == 0)
                return a[i];
    return NULL;
}

/* Optional array of names at obj[key]; leaves *out NULL / *n 0 when absent. */
static ks_code get_names(const json_t *obj, const char *path, const char *key,
                         char (**out)[KS_NAME_MAX], uint32_t *n, ks_err *err)
{
    const json_t *arr = NULL;
    char p[KS_JSON_PATH_MAX];
    ks_code rc = ks_json__get_array(obj, path, key, false, KS_VM_MAX_EVENTS, &arr, err);
    if (rc != KS_OK || !arr)
        return rc;
    return ks_json__names_from_json(out, n, arr, PATH(p, path, key), KS_VM_MAX_EVENTS, err);
}

/* Optional feature set at obj[key]. */
static ks_code get_featset(const json_t *obj, const char *path, const char *key, ks_featset *out,
                           ks_err *err)
{
    char p[KS_JSON_PATH_MAX];
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return KS_OK;
    return ks_featset_from_json(out, v, PATH(p, path, key), err);
}

/* ---- VM request ----------------------------------------------------------- */

static const char *const request_keys[] = {
    "name",     "vcpus", "memory_mib", "required_features", "forbidden_features",
    "pool",     "host",  "anti_affinity_group", "min_mhz",  "placement",
    "numa",     "smt",   "pmu",        NULL,
};
static const char *const vcpus_keys[] = {"performance", "efficiency", "any", NULL};
static const char *const req_pmu_keys[] = {"enabled", "allow_events", "deny_events", NULL};

void ks_vm_request_free(ks_vm_request *r)
{
    if (!r)
        return;
    free(r->pmu.allow_events);
    free(r->pmu.deny_events);
    free(r);
}

static ks_code decode_vcpus(ks_vm_request *r, const json_t *v, ks_err *err)
{
    const char *path = "vcpus";
    ks_code rc = KS_OK;
    if (json_is_integer(v)) {
        int64_t n = 0;
        rc = ks_json__int_value(v, path, 1, KS_VM_MAX_VCPUS, &n, err);
        r->n_any = (uint32_t)n;
        return rc;
    }
    if (!json_is_object(v))
        return ks_json__type_error(v, path, "integer or object {performance, efficiency}", err);
    rc = ks_json__check_object(v, path, vcpus_keys, err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(v, path, "performance", false, KS_VM_MAX_VCPUS, &r->n_performance,
                              err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(v, path, "efficiency", false, KS_VM_MAX_VCPUS, &r->n_efficiency,
                              err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(v, path, "any", false, KS_VM_MAX_VCPUS, &r->n_any, err);
    if (rc != KS_OK)
        return rc;
    uint32_t total = ks_vm_request_vcpus(r);
    if (total == 0)
        return ks_err_set_field(err, KS_EINVAL, path, "a vm needs at least 1 vcpu");
    if (total > KS_VM_MAX_VCPUS)
        return ks_err_set_field(err, KS_EINVAL, path, "too many vcpus (%u, at most %d)", total,
                                KS_VM_MAX_VCPUS);
    return KS_OK;
}

static ks_code decode_request_pmu(ks_pmu_request *pmu, const json_t *o, ks_err *err)
{
    const char *path = "pmu";
    ks_code rc = ks_json__check_object(o, path, req_pmu_keys, err);
    if (rc == KS_OK)
        rc = ks_json__get_bool(o, path, "enabled", false, &pmu->enabled, err);
    if (rc == KS_OK)
        rc = get_names(o, path, "allow_events", &pmu->allow_events, &pmu->n_allow, err);
    if (rc == KS_OK)
        rc = get_names(o, path, "deny_events", &pmu->deny_events, &pmu->n_deny, err);
    if (rc != KS_OK)
        return rc;
    const char *both = common_name(pmu->allow_events, pmu->n_allow, pmu->deny_events, pmu->n_deny);
    if (both)
        return ks_err_set_field(err, KS_EINVAL, "pmu.deny_events",
                                "event '%s' is both allowed and denied", both);
    return KS_OK;
}

ks_code ks_vm_request_from_json(ks_vm_request **out, const json_t *doc, ks_err *err)
{
    ks_vm_request *r = NULL;
    int mode;
    ks_code rc = ks_json__check_object(doc, "", request_keys, err);
    if (rc != KS_OK) {
        if (!json_is_object(doc))
            ks_err_set_field(err, KS_EINVAL, "", "a vm request must be a JSON object, got %s",
                             doc ? ks_json__type_name(doc) : "nothing");
        goto done;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory decoding a vm request");
        goto done;
    }
    r->memory_mib = KS_VM_DEFAULT_MEMORY_MIB;
    r->placement = KS_PLACE_PACK;
    r->numa = KS_NUMA_PREFERRED;
    r->smt = KS_SMT_ALLOW;

    rc = ks_json__get_id(doc, "", "name", true, r->name, sizeof(r->name), err);
    if (rc != KS_OK)
        goto done;
    const json_t *vcpus = json_object_get(doc, "vcpus");
    if (!vcpus) {
        rc = ks_err_set_field(err, KS_EINVAL, "vcpus", "missing required key 'vcpus'");
        goto done;
    }
    rc = decode_vcpus(r, vcpus, err);
    if (rc == KS_OK)
        rc = ks_json__get_u64(doc, "", "memory_mib", false, KS_VM_MAX_MEMORY_MIB, &r->memory_mib,
                              err);
    if (rc == KS_OK && r->memory_mib == 0)
        rc = ks_err_set_field(err, KS_EINVAL, "memory_mib", "memory_mib must be at least 1");
    if (rc == KS_OK)
        rc = get_featset(doc, "", "required_features", &r->required, err);
    if (rc == KS_OK)
        rc = get_featset(doc, "", "forbidden_features", &r->forbidden, err);
    if (rc == KS_OK && ks_featset_intersects(&r->required, &r->forbidden))
        rc = ks_err_set_field(err, KS_EINVAL, "forbidden_features",
                              "feature '%s' is both required and forbidden",
                              first_common(&r->required, &r->forbidden));
    if (rc == KS_OK)
        rc = ks_json__get_id(doc, "", "pool", false, r->pool, sizeof(r->pool), err);
    if (rc == KS_OK)
        rc = ks_json__get_id(doc, "", "host", false, r->host, sizeof(r->host), err);
    if (rc == KS_OK)
        rc = ks_json__get_id(doc, "", "anti_affinity_group", false, r->anti_affinity_group,
                             sizeof(r->anti_affinity_group), err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(doc, "", "min_mhz", false, KS_VM_MAX_MHZ, &r->min_mhz, err);
    mode = r->placement;
    if (rc == KS_OK)
        rc = ks_json__get_enum(doc, "", "placement", false, ks_placement_mode_from_str,
                               "pack or spread", &mode, err);
    r->placement = (uint8_t)mode;
    mode = r->numa;
    if (rc == KS_OK)
        rc = ks_json__get_enum(doc, "", "numa", false, ks_numa_mode_from_str,
                               "strict or preferred", &mode, err);
    r->numa = (uint8_t)mode;
    mode = r->smt;
    if (rc == KS_OK)
        rc = ks_json__get_enum(doc, "", "smt", false, ks_smt_mode_from_str, "allow or isolate",
                               &mode, err);
    r->smt = (uint8_t)mode;
    const json_t *pmu = json_object_get(doc, "pmu");
    if (rc == KS_OK && pmu)
        rc = decode_request_pmu(&r->pmu, pmu, err);
    if (rc != KS_OK)
        goto done;
    *out = r;
    r = NULL;
done:
    ks_vm_request_free(r);
    return rc;
}

#define STR(buf) ks_json__string((buf), sizeof(buf))

json_t *ks_vm_request_to_json(const ks_vm_request *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool bad = false;
    bad |= ks_json__set(o, "name", STR(r->name));
    if (r->n_performance == 0 && r->n_efficiency == 0) {
        bad |= ks_json__set(o, "vcpus", json_integer(r->n_any));
    } else {
        json_t *v = json_object();
        if (v) {
            bad |= ks_json__set(v, "performance", json_integer(r->n_performance));
            bad |= ks_json__set(v, "efficiency", json_integer(r->n_efficiency));
            if (r->n_any)
                bad |= ks_json__set(v, "any", json_integer(r->n_any));
        }
        bad |= ks_json__set(o, "vcpus", v);
    }
    bad |= ks_json__set(o, "memory_mib", ks_json__uint(r->memory_mib));
    bad |= ks_json__set(o, "required_features", ks_featset_to_json(&r->required));
    bad |= ks_json__set(o, "forbidden_features", ks_featset_to_json(&r->forbidden));
    /* Empty ids mean "not set" and are omitted: "" is not a valid id. */
    if (r->pool[0])
        bad |= ks_json__set(o, "pool", STR(r->pool));
    if (r->host[0])
        bad |= ks_json__set(o, "host", STR(r->host));
    if (r->anti_affinity_group[0])
        bad |= ks_json__set(o, "anti_affinity_group", STR(r->anti_affinity_group));
    bad |= ks_json__set(o, "min_mhz", json_integer(r->min_mhz));
    bad |= ks_json__set(o, "placement",
                        json_string(ks_placement_mode_to_str((ks_placement_mode)r->placement)));
    bad |= ks_json__set(o, "numa", json_string(ks_numa_mode_to_str((ks_numa_mode)r->numa)));
    bad |= ks_json__set(o, "smt", json_string(ks_smt_mode_to_str((ks_smt_mode)r->smt)));
    json_t *pmu = json_object();
    if (pmu) {
        bad |= ks_json__set(pmu, "enabled", json_boolean(r->pmu.enabled));
        bad |= ks_json__set(pmu, "allow_events",
                            ks_json__names_to_json((const char(*)[KS_NAME_MAX])r->pmu.allow_events,
                                                   r->pmu.allow_events ? r->pmu.n_allow : 0));
        bad |= ks_json__set(pmu, "deny_events",
                            ks_json__names_to_json((const char(*)[KS_NAME_MAX])r->pmu.deny_events,
                                                   r->pmu.deny_events ? r->pmu.n_deny : 0));
    }
    bad |= ks_json__set(o, "pmu", pmu);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- plan ----------------------------------------------------------------- */

static void plan_vcpu_init(ks_plan_vcpu *v, int32_t id)
{
    memset(v, 0, sizeof(*v));
    v->id = id;
    v->host_cpu = -1;
    v->kind_class = KS_KIND_PERFORMANCE;
}

ks_code ks_plan_new(ks_plan **out, uint32_t n_vcpus, ks_err *err)
{
    if (n_vcpus > KS_VM_MAX_VCPUS)
        return ks_err_set(err, KS_EINVAL, "too many vcpus (%u, at most %d)", n_vcpus,
                          KS_VM_MAX_VCPUS);
    ks_plan *p = calloc(1, sizeof(*p));
    if (!p)
        return ks_err_set(err, KS_ENOMEM, "out of memory allocating a plan");
    if (n_vcpus > 0) {
        p->vcpus = calloc(n_vcpus, sizeof(*p->vcpus));
        if (!p->vcpus) {
            free(p);
            return ks_err_set(err, KS_ENOMEM, "out of memory allocating a plan");
        }
    }
    p->n_vcpus = n_vcpus;
    for (uint32_t i = 0; i < n_vcpus; i++)
        plan_vcpu_init(&p->vcpus[i], (int32_t)i);
    p->generation = 1;
    p->topology.sockets = p->topology.dies = p->topology.clusters = p->topology.threads = 1;
    p->topology.cores = n_vcpus ? n_vcpus : 1;
    snprintf(p->cpu_model, sizeof(p->cpu_model), "host");
    *out = p;
    return KS_OK;
}

void ks_plan_free(ks_plan *p)
{
    if (!p)
        return;
    free(p->vcpus);
    free(p->pmu.allow_events);
    free(p->pmu.deny_events);
    for (uint32_t i = 0; p->numa && i < p->n_numa; i++)
        free(p->numa[i].vcpus);
    free(p->numa);
    free(p);
}

ks_code ks_plan_dup(ks_plan **out, const ks_plan *p, ks_err *err)
{
    ks_plan *c = calloc(1, sizeof(*c));
    if (!c)
        return ks_err_set(err, KS_ENOMEM, "out of memory copying a plan");
    *c = *p;
    c->vcpus = NULL;
    c->pmu.allow_events = c->pmu.deny_events = NULL;
    c->numa = NULL;
    c->n_numa = 0;
    bool ok = true;
    if (p->n_vcpus && p->vcpus) {
        c->vcpus = malloc((size_t)p->n_vcpus * sizeof(*c->vcpus));
        ok = c->vcpus != NULL;
        if (ok)
            memcpy(c->vcpus, p->vcpus, (size_t)p->n_vcpus * sizeof(*c->vcpus));
    }
    ok = ok && ks_json__names_dup(&c->pmu.allow_events,
                                  (const char(*)[KS_NAME_MAX])p->pmu.allow_events, p->pmu.n_allow);
    ok = ok && ks_json__names_dup(&c->pmu.deny_events,
                                  (const char(*)[KS_NAME_MAX])p->pmu.deny_events, p->pmu.n_deny);
    if (ok && p->n_numa && p->numa) {
        c->numa = calloc(p->n_numa, sizeof(*c->numa));
        ok = c->numa != NULL;
        for (uint32_t i = 0; ok && i < p->n_numa; i++) {
            c->numa[i] = p->numa[i];
            c->numa[i].vcpus = NULL;
            c->n_numa = i + 1;
            if (p->numa[i].n_vcpus && p->numa[i].vcpus) {
                c->numa[i].vcpus = malloc((size_t)p->numa[i].n_vcpus * sizeof(int32_t));
                ok = c->numa[i].vcpus != NULL;
                if (ok)
                    memcpy(c->numa[i].vcpus, p->numa[i].vcpus,
                           (size_t)p->numa[i].n_vcpus * sizeof(int32_t));
            }
        }
    }
    if (!ok) {
        ks_plan_free(c);
        return ks_err_set(err, KS_ENOMEM, "out of memory copying a plan");
    }
    *out = c;
    return KS_OK;
}

static json_t *plan_vcpu_to_json(const ks_plan_vcpu *v)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool bad = false;
    bad |= ks_json__set(o, "id", json_integer(v->id));
    bad |= ks_json__set(o, "host_cpu", json_integer(v->host_cpu));
    bad |= ks_json__set(o, "kind", json_string(ks_kind_class_to_str((ks_kind_class)v->kind_class)));
    bad |= ks_json__set(o, "kind_name", STR(v->kind_name));
    bad |= ks_json__set(o, "max_mhz", json_integer(v->max_mhz));
    bad |= ks_json__set(o, "socket", json_integer(v->socket));
    bad |= ks_json__set(o, "die", json_integer(v->die));
    bad |= ks_json__set(o, "cluster", json_integer(v->cluster));
    bad |= ks_json__set(o, "core", json_integer(v->core));
    bad |= ks_json__set(o, "thread", json_integer(v->thread));
    bad |= ks_json__set(o, "l2_group", json_integer(v->l2_group));
    bad |= ks_json__set(o, "l3_group", json_integer(v->l3_group));
    bad |= ks_json__set(o, "numa_node", json_integer(v->numa_node));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *ks_plan_to_json(const ks_plan *p)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool bad = false;
    bad |= ks_json__set(o, "vm", STR(p->vm));
    bad |= ks_json__set(o, "generation", ks_json__uint(p->generation));
    bad |= ks_json__set(o, "host", STR(p->host));
    bad |= ks_json__set(o, "memory_mib", ks_json__uint(p->memory_mib));
    json_t *topo = json_object();
    if (topo) {
        bad |= ks_json__set(topo, "sockets", json_integer(p->topology.sockets));
        bad |= ks_json__set(topo, "dies", json_integer(p->topology.dies));
        bad |= ks_json__set(topo, "clusters", json_integer(p->topology.clusters));
        bad |= ks_json__set(topo, "cores", json_integer(p->topology.cores));
        bad |= ks_json__set(topo, "threads", json_integer(p->topology.threads));
    }
    bad |= ks_json__set(o, "topology", topo);
    json_t *vcpus = json_array();
    for (uint32_t i = 0; vcpus && !bad && p->vcpus && i < p->n_vcpus; i++)
        bad |= ks_json__append(vcpus, plan_vcpu_to_json(&p->vcpus[i]));
    bad |= ks_json__set(o, "vcpus", vcpus);
    json_t *features = json_object();
    if (features) {
        bad |= ks_json__set(features, "model", STR(p->cpu_model));
        bad |= ks_json__set(features, "enable", ks_featset_to_json(&p->visible));
        bad |= ks_json__set(features, "disable", ks_featset_to_json(&p->disable));
    }
    bad |= ks_json__set(o, "features", features);
    json_t *pmu = json_object();
    if (pmu) {
        bad |= ks_json__set(pmu, "enabled", json_boolean(p->pmu.enabled));
        bad |= ks_json__set(pmu, "version", json_integer(p->pmu.version));
        bad |= ks_json__set(pmu, "gp_counters", json_integer(p->pmu.gp_counters));
        bad |= ks_json__set(pmu, "fixed_counters", json_integer(p->pmu.fixed_counters));
        bad |= ks_json__set(pmu, "allow_events",
                            ks_json__names_to_json((const char(*)[KS_NAME_MAX])p->pmu.allow_events,
                                                   p->pmu.allow_events ? p->pmu.n_allow : 0));
        bad |= ks_json__set(pmu, "deny_events",
                            ks_json__names_to_json((const char(*)[KS_NAME_MAX])p->pmu.deny_events,
                                                   p->pmu.deny_events ? p->pmu.n_deny : 0));
    }
    bad |= ks_json__set(o, "pmu", pmu);
    json_t *numa = json_array();
    for (uint32_t i = 0; numa && !bad && p->numa && i < p->n_numa; i++) {
        const ks_plan_numa *n = &p->numa[i];
        json_t *no = json_object();
        json_t *nv = json_array();
        for (uint32_t j = 0; nv && !bad && n->vcpus && j < n->n_vcpus; j++)
            bad |= ks_json__append(nv, json_integer(n->vcpus[j]));
        if (no) {
            bad |= ks_json__set(no, "node", json_integer(n->node));
            bad |= ks_json__set(no, "host_node", json_integer(n->host_node));
            bad |= ks_json__set(no, "vcpus", nv);
            nv = NULL;
            bad |= ks_json__set(no, "memory_mib", ks_json__uint(n->memory_mib));
        }
        json_decref(nv);
        bad |= ks_json__append(numa, no);
    }
    bad |= ks_json__set(o, "numa", numa);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static const char *const plan_keys[] = {"vm",       "generation", "host", "memory_mib", "topology",
                                        "vcpus",    "features",   "pmu",  "numa",       NULL};
static const char *const plan_topology_keys[] = {"sockets", "dies", "clusters", "cores",
                                                 "threads", NULL};
static const char *const plan_vcpu_keys[] = {
    "id",   "host_cpu", "kind",   "kind_name", "max_mhz",  "socket",    "die",
    "cluster", "core",  "thread", "l2_group",  "l3_group", "numa_node", NULL,
};
static const char *const plan_features_keys[] = {"model", "enable", "disable", NULL};
static const char *const plan_pmu_keys[] = {"enabled",        "version",      "gp_counters",
                                            "fixed_counters", "allow_events", "deny_events",
                                            NULL};
static const char *const plan_numa_keys[] = {"node", "host_node", "vcpus", "memory_mib", NULL};

static ks_code decode_plan_topology(ks_plan *p, const json_t *o, ks_err *err)
{
    const char *path = "topology";
    ks_code rc = ks_json__check_object(o, path, plan_topology_keys, err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, path, "sockets", true, KS_VM_MAX_VCPUS, &p->topology.sockets, err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, path, "dies", false, KS_VM_MAX_VCPUS, &p->topology.dies, err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, path, "clusters", false, KS_VM_MAX_VCPUS, &p->topology.clusters,
                              err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, path, "cores", true, KS_VM_MAX_VCPUS, &p->topology.cores, err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, path, "threads", false, KS_VM_MAX_VCPUS, &p->topology.threads,
                              err);
    if (rc != KS_OK)
        return rc;
    const char *names[] = {"sockets", "dies", "clusters", "cores", "threads"};
    uint32_t vals[] = {p->topology.sockets, p->topology.dies, p->topology.clusters,
                       p->topology.cores, p->topology.threads};
    uint64_t product = 1;
    for (int i = 0; i < 5; i++) {
        char q[KS_JSON_PATH_MAX];
        if (vals[i] == 0)
            return ks_err_set_field(err, KS_EINVAL, PATH(q, path, names[i]),
                                    "%s must be at least 1", names[i]);
        product *= vals[i];
    }
    if (product < p->n_vcpus)
        return ks_err_set_field(err, KS_EINVAL, path,
                                "topology has %llu vcpu slots but the plan has %u vcpus",
                                (unsigned long long)product, p->n_vcpus);
    return KS_OK;
}

/* A guest coordinate: 0..limit-1 where limit is the topology count at that level. */
static ks_code get_coord(const json_t *o, const char *p, const char *key, uint32_t limit,
                         const char *level, int32_t *out, ks_err *err)
{
    int32_t x = 0;
    ks_code rc = ks_json__get_i32(o, p, key, false, 0, INT32_MAX, &x, err);
    if (rc != KS_OK)
        return rc;
    if ((uint32_t)x >= limit) {
        char q[KS_JSON_PATH_MAX];
        return ks_err_set_field(err, KS_EINVAL, PATH(q, p, key),
                                "%s %d out of range (topology has %u %s)", key, x, limit, level);
    }
    *out = x;
    return KS_OK;
}

static ks_code decode_plan_vcpus(ks_plan *p, const json_t *arr, ks_err *err)
{
    uint8_t seen_id[KS_VM_MAX_VCPUS];
    /* host CPU -> index into arr + 1, for the "used twice" message.  Small
     * plans (nearly all) search the few host CPUs seen so far instead: a
     * table over every possible CPU per plan dominated reloading a store. */
    enum { SMALL = 64 };
    int32_t small_hc[SMALL];
    bool small = p->n_vcpus <= SMALL;
    uint16_t *host_used = small ? NULL : calloc(KS_REPORT_MAX_CPUS, sizeof(*host_used));
    ks_code rc = KS_OK;
    if (!small && !host_used)
        return ks_err_set_field(err, KS_ENOMEM, "vcpus", "out of memory");
    memset(seen_id, 0, (size_t)p->n_vcpus);
    for (size_t i = 0; rc == KS_OK && i < p->n_vcpus; i++) {
        char e[KS_JSON_PATH_MAX], q[KS_JSON_PATH_MAX];
        const json_t *o = json_array_get(arr, i);
        ks_plan_vcpu v;
        int kind = KS_KIND_PERFORMANCE;
        plan_vcpu_init(&v, -1);
        IDX(e, "vcpus", i);
        rc = ks_json__check_object(o, e, plan_vcpu_keys, err);
        if (rc == KS_OK)
            rc = ks_json__get_i32(o, e, "id", true, 0, (int32_t)p->n_vcpus - 1, &v.id, err);
        if (rc == KS_OK && seen_id[v.id])
            rc = ks_err_set_field(err, KS_EINVAL, PATH(q, e, "id"), "duplicate vcpu id %d", v.id);
        if (rc == KS_OK)
            rc = ks_json__get_i32(o, e, "host_cpu", true, 0, KS_REPORT_MAX_CPUS - 1, &v.host_cpu,
                                  err);
        uint32_t used_by = 0; /* index + 1 of an earlier vcpu on the same host cpu */
        if (rc == KS_OK && small) {
            for (size_t j = 0; j < i && !used_by; j++)
                if (small_hc[j] == v.host_cpu)
                    used_by = (uint32_t)j + 1;
        } else if (rc == KS_OK) {
            used_by = host_used[v.host_cpu];
        }
        if (rc == KS_OK && used_by)
            rc = ks_err_set_field(err, KS_EINVAL, PATH(q, e, "host_cpu"),
                                  "host cpu %d is already used by vcpus[%u]", v.host_cpu,
                                  used_by - 1u);
        if (rc == KS_OK)
            rc = ks_json__get_enum(o, e, "kind", true, ks_kind_class_from_str,
                                   "performance or efficiency", &kind, err);
        v.kind_class = (uint8_t)kind;
        if (rc == KS_OK)
            rc = ks_json__get_str(o, e, "kind_name", false, v.kind_name, sizeof(v.kind_name), err);
        if (rc == KS_OK)
            rc = ks_json__get_u32(o, e, "max_mhz", false, KS_VM_MAX_MHZ, &v.max_mhz, err);
        if (rc == KS_OK)
            rc = get_coord(o, e, "socket", p->topology.sockets, "sockets", &v.socket, err);
        if (rc == KS_OK)
            rc = get_coord(o, e, "die", p->topology.dies, "dies", &v.die, err);
        if (rc == KS_OK)
            rc = get_coord(o, e, "cluster", p->topology.clusters, "clusters", &v.cluster, err);
        if (rc == KS_OK)
            rc = get_coord(o, e, "core", p->topology.cores, "cores", &v.core, err);
        if (rc == KS_OK)
            rc = get_coord(o, e, "thread", p->topology.threads, "threads", &v.thread, err);
        if (rc == KS_OK)
            rc = ks_json__get_i32(o, e, "l2_group", false, 0, (int32_t)p->n_vcpus - 1,
                                  &v.l2_group, err);
        if (rc == KS_OK)
            rc = ks_json__get_i32(o, e, "l3_group", false, 0, (int32_t)p->n_vcpus - 1,
                                  &v.l3_group, err);
        if (rc == KS_OK)
            rc = ks_json__get_i32(o, e, "numa_node", false, 0, KS_REPORT_MAX_NUMA - 1,
                                  &v.numa_node, err);
        if (rc == KS_OK) {
            seen_id[v.id] = 1;
            if (small)
                small_hc[i] = v.host_cpu;
            else
                host_used[v.host_cpu] = (uint16_t)(i + 1);
            p->vcpus[v.id] = v;
        }
    }
    free(host_used);
    return rc;
}

static ks_code decode_plan_features(ks_plan *p, const json_t *o, ks_err *err)
{
    const char *path = "features";
    ks_code rc = ks_json__check_object(o, path, plan_features_keys, err);
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "model", false, p->cpu_model, sizeof(p->cpu_model), err);
    if (rc == KS_OK && !p->cpu_model[0])
        rc = ks_err_set_field(err, KS_EINVAL, "features.model", "empty cpu model");
    if (rc == KS_OK)
        rc = get_featset(o, path, "enable", &p->visible, err);
    if (rc == KS_OK)
        rc = get_featset(o, path, "disable", &p->disable, err);
    if (rc == KS_OK && ks_featset_intersects(&p->visible, &p->disable))
        rc = ks_err_set_field(err, KS_EINVAL, "features.disable",
                              "feature '%s' is both enabled and disabled",
                              first_common(&p->visible, &p->disable));
    return rc;
}

static ks_code decode_plan_pmu(ks_plan *p, const json_t *o, ks_err *err)
{
    const char *path = "pmu";
    ks_code rc = ks_json__check_object(o, path, plan_pmu_keys, err);
    if (rc == KS_OK)
        rc = ks_json__get_bool(o, path, "enabled", false, &p->pmu.enabled, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "version", false, 0, 255, &p->pmu.version, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "gp_counters", false, 0, 255, &p->pmu.gp_counters, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "fixed_counters", false, 0, 255, &p->pmu.fixed_counters,
                              err);
    if (rc == KS_OK)
        rc = get_names(o, path, "allow_events", &p->pmu.allow_events, &p->pmu.n_allow, err);
    if (rc == KS_OK)
        rc = get_names(o, path, "deny_events", &p->pmu.deny_events, &p->pmu.n_deny, err);
    if (rc != KS_OK)
        return rc;
    const char *both = common_name(p->pmu.allow_events, p->pmu.n_allow, p->pmu.deny_events,
                                   p->pmu.n_deny);
    if (both)
        return ks_err_set_field(err, KS_EINVAL, "pmu.deny_events",
                                "event '%s' is both allowed and denied", both);
    return KS_OK;
}

static ks_code decode_plan_numa(ks_plan *p, const json_t *arr, ks_err *err)
{
    size_t n = json_array_size(arr);
    /* vcpu id -> numa[] index + 1 */
    uint16_t owner[KS_VM_MAX_VCPUS];
    ks_code rc = KS_OK;
    memset(owner, 0, sizeof(owner));
    if (n == 0)
        return KS_OK;
    p->numa = calloc(n, sizeof(*p->numa));
    if (!p->numa)
        return ks_err_set_field(err, KS_ENOMEM, "numa", "out of memory");
    p->n_numa = (uint32_t)n;
    for (size_t i = 0; rc == KS_OK && i < n; i++) {
        char e[KS_JSON_PATH_MAX], q[KS_JSON_PATH_MAX], f[KS_JSON_PATH_MAX];
        const json_t *o = json_array_get(arr, i);
        const json_t *vcpus = NULL;
        ks_plan_numa *nn = &p->numa[i];
        nn->host_node = -1;
        IDX(e, "numa", i);
        rc = ks_json__check_object(o, e, plan_numa_keys, err);
        if (rc == KS_OK)
            rc = ks_json__get_i32(o, e, "node", true, 0, KS_REPORT_MAX_NUMA - 1, &nn->node, err);
        for (size_t j = 0; rc == KS_OK && j < i; j++)
            if (p->numa[j].node == nn->node)
                rc = ks_err_set_field(err, KS_EINVAL, PATH(q, e, "node"),
                                      "duplicate numa node %d", nn->node);
        if (rc == KS_OK)
            rc = ks_json__get_i32(o, e, "host_node", false, -1, KS_REPORT_MAX_NUMA - 1,
                                  &nn->host_node, err);
        if (rc == KS_OK)
            rc = ks_json__get_u64(o, e, "memory_mib", false, KS_VM_MAX_MEMORY_MIB,
                                  &nn->memory_mib, err);
        if (rc == KS_OK)
            rc = ks_json__get_array(o, e, "vcpus", true, p->n_vcpus, &vcpus, err);
        if (rc != KS_OK)
            break;
        PATH(q, e, "vcpus");
        size_t nv = json_array_size(vcpus);
        if (nv > 0) {
            nn->vcpus = malloc(nv * sizeof(*nn->vcpus));
            if (!nn->vcpus)
                return ks_err_set_field(err, KS_ENOMEM, q, "out of memory");
        }
        nn->n_vcpus = (uint32_t)nv;
        for (size_t j = 0; rc == KS_OK && j < nv; j++) {
            int64_t id = 0;
            IDX(f, q, j);
            rc = ks_json__int_value(json_array_get(vcpus, j), f, 0, (int64_t)p->n_vcpus - 1, &id,
                                    err);
            if (rc != KS_OK)
                break;
            nn->vcpus[j] = (int32_t)id;
            if (owner[id])
                rc = ks_err_set_field(err, KS_EINVAL, f, "vcpu %d is already in numa[%u]",
                                      (int)id, owner[id] - 1u);
            owner[id] = (uint16_t)(i + 1);
        }
    }
    for (uint32_t v = 0; rc == KS_OK && v < p->n_vcpus; v++) {
        char q[KS_JSON_PATH_MAX];
        if (!owner[v])
            return ks_err_set_field(err, KS_EINVAL, "numa", "vcpu %u is in no numa node", v);
        const ks_plan_numa *nn = &p->numa[owner[v] - 1];
        if (p->vcpus[v].numa_node != nn->node)
            return ks_err_set_field(err, KS_EINVAL, IDX(q, "vcpus", v),
                                    "vcpu %u has numa_node %d but numa[%u] (node %d) lists it", v,
                                    p->vcpus[v].numa_node, owner[v] - 1u, nn->node);
    }
    return rc;
}

/* Checks pre-decoded vcpus (ks_plan_parse's fast path) as decode_plan_vcpus
 * would; false when any check fails (the caller then decodes the plain way,
 * for the exact error). */
static bool pre_vcpus_valid(const ks_plan *p, const ks_plan_vcpu *pre)
{
    uint8_t seen_id[KS_VM_MAX_VCPUS];
    bool small = p->n_vcpus <= 64; /* small plans: search earlier vcpus, no table */
    uint8_t *host_used = small ? NULL : calloc(KS_REPORT_MAX_CPUS, 1);
    bool ok = small || host_used != NULL;
    memset(seen_id, 0, (size_t)p->n_vcpus);
    for (uint32_t i = 0; ok && i < p->n_vcpus; i++) {
        for (uint32_t j = 0; small && ok && j < i; j++)
            ok = pre[j].host_cpu != pre[i].host_cpu;
        const ks_plan_vcpu *v = &pre[i];
        int32_t n = (int32_t)p->n_vcpus;
        ok = ok && v->id >= 0 && v->id < n && !seen_id[v->id] && v->host_cpu >= 0 &&
             v->host_cpu < KS_REPORT_MAX_CPUS && (small || !host_used[v->host_cpu]) &&
             v->kind_class < KS_KIND_CLASS__COUNT && v->max_mhz <= KS_VM_MAX_MHZ &&
             v->socket >= 0 && (uint32_t)v->socket < p->topology.sockets && v->die >= 0 &&
             (uint32_t)v->die < p->topology.dies && v->cluster >= 0 &&
             (uint32_t)v->cluster < p->topology.clusters && v->core >= 0 &&
             (uint32_t)v->core < p->topology.cores && v->thread >= 0 &&
             (uint32_t)v->thread < p->topology.threads && v->l2_group >= 0 && v->l2_group < n &&
             v->l3_group >= 0 && v->l3_group < n && v->numa_node >= 0 &&
             v->numa_node < KS_REPORT_MAX_NUMA;
        if (ok) {
            seen_id[v->id] = 1;
            if (!small)
                host_used[v->host_cpu] = 1;
        }
    }
    free(host_used);
    return ok;
}

/*
 * ks_plan_from_json, or with pre (n_pre vcpus decoded from the text by
 * ks_plan_parse; doc's "vcpus" is then a stub) when *pre_bad is set on
 * return: those vcpus did not pass a check, decode the plain way instead.
 */
static ks_code plan_decode(ks_plan **out, const json_t *doc, const ks_plan_vcpu *pre,
                           uint32_t n_pre, bool *pre_bad, ks_err *err)
{
    ks_plan *p = NULL;
    const json_t *vcpus = NULL, *numa = NULL;
    ks_code rc = ks_json__check_object(doc, "", plan_keys, err);
    if (rc != KS_OK) {
        if (!json_is_object(doc))
            ks_err_set_field(err, KS_EINVAL, "", "a plan must be a JSON object, got %s",
                             doc ? ks_json__type_name(doc) : "nothing");
        goto done;
    }
    if (!pre) {
        rc = ks_json__get_array(doc, "", "vcpus", true, KS_VM_MAX_VCPUS, &vcpus, err);
        if (rc != KS_OK)
            goto done;
        if (json_array_size(vcpus) == 0) {
            rc = ks_err_set_field(err, KS_EINVAL, "vcpus", "a plan needs at least 1 vcpu");
            goto done;
        }
    }
    rc = ks_plan_new(&p, pre ? n_pre : (uint32_t)json_array_size(vcpus), err);
    if (rc != KS_OK)
        goto done;
    rc = ks_json__get_id(doc, "", "vm", true, p->vm, sizeof(p->vm), err);
    if (rc == KS_OK)
        rc = ks_json__get_u64(doc, "", "generation", true, UINT64_MAX, &p->generation, err);
    if (rc == KS_OK && p->generation == 0)
        rc = ks_err_set_field(err, KS_EINVAL, "generation", "generation must be at least 1");
    if (rc == KS_OK)
        rc = ks_json__get_id(doc, "", "host", true, p->host, sizeof(p->host), err);
    if (rc == KS_OK)
        rc = ks_json__get_u64(doc, "", "memory_mib", false, KS_VM_MAX_MEMORY_MIB, &p->memory_mib,
                              err);
    if (rc != KS_OK)
        goto done;
    const json_t *topo = json_object_get(doc, "topology");
    if (!topo) {
        rc = ks_err_set_field(err, KS_EINVAL, "topology", "missing required key 'topology'");
        goto done;
    }
    rc = decode_plan_topology(p, topo, err);
    if (rc == KS_OK && pre) {
        if (!pre_vcpus_valid(p, pre)) {
            *pre_bad = true;
            rc = KS_EINVAL;
            goto done;
        }
        for (uint32_t i = 0; i < n_pre; i++)
            p->vcpus[pre[i].id] = pre[i];
    } else if (rc == KS_OK) {
        rc = decode_plan_vcpus(p, vcpus, err);
    }
    if (rc != KS_OK)
        goto done;
    const json_t *features = json_object_get(doc, "features");
    if (!features) {
        rc = ks_err_set_field(err, KS_EINVAL, "features", "missing required key 'features'");
        goto done;
    }
    rc = decode_plan_features(p, features, err);
    const json_t *pmu = json_object_get(doc, "pmu");
    if (rc == KS_OK && pmu)
        rc = decode_plan_pmu(p, pmu, err);
    if (rc == KS_OK)
        rc = ks_json__get_array(doc, "", "numa", false, KS_REPORT_MAX_NUMA, &numa, err);
    if (rc == KS_OK && numa)
        rc = decode_plan_numa(p, numa, err);
    if (rc != KS_OK)
        goto done;
    *out = p;
    p = NULL;
done:
    ks_plan_free(p);
    return rc;
}

ks_code ks_plan_from_json(ks_plan **out, const json_t *doc, ks_err *err)
{
    return plan_decode(out, doc, NULL, 0, NULL, err);
}

/* ---- plan text with a cache of decoded "features" members ---- */

#define PLAN_CACHE_SLOTS 4096u /* power of two; at most half filled */

typedef struct plan_feat_entry {
    uint64_t hash;
    size_t len;
    char *text; /* the member's bytes; NULL = empty slot */
    char cpu_model[32];
    ks_featset visible, disable;
} plan_feat_entry;

struct ks_plan_cache {
    plan_feat_entry slots[PLAN_CACHE_SLOTS];
    uint32_t n;
    ks_plan_vcpu *vcpus; /* scratch for the text-decoded vcpus, KS_VM_MAX_VCPUS */
};

ks_code ks_plan_cache_new(ks_plan_cache **out, ks_err *err)
{
    *out = calloc(1, sizeof(**out));
    if (*out && !((*out)->vcpus = malloc(KS_VM_MAX_VCPUS * sizeof(ks_plan_vcpu)))) {
        free(*out);
        *out = NULL;
    }
    return *out ? KS_OK : ks_err_set(err, KS_ENOMEM, "out of memory");
}

void ks_plan_cache_free(ks_plan_cache *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < PLAN_CACHE_SLOTS; i++)
        free(c->slots[i].text);
    free(c->vcpus);
    free(c);
}

/* Eight bytes a step (a ~2 KB features member per plan): FNV-style mixing of
 * 64-bit words, then of the tail bytes.  Only ever compared with itself. */
static uint64_t text_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 1099511628211ull;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* The slot holding (or to hold) text; NULL when the cache is full. */
static plan_feat_entry *plan_cache_slot(ks_plan_cache *c, const char *t, size_t n, uint64_t h)
{
    for (uint32_t i = (uint32_t)h & (PLAN_CACHE_SLOTS - 1);; i = (i + 1) & (PLAN_CACHE_SLOTS - 1)) {
        plan_feat_entry *e = &c->slots[i];
        if (!e->text)
            return c->n < PLAN_CACHE_SLOTS / 2 ? e : NULL;
        if (e->hash == h && e->len == n && memcmp(e->text, t, n) == 0)
            return e;
    }
}

/* The cached decode of the features member text [fs, fs + flen), decoding and
 * adding it when new; NULL when it does not decode (or the cache is full). */
static const plan_feat_entry *plan_cache_get(ks_plan_cache *c, const char *fs, size_t flen)
{
    uint64_t h = text_hash(fs, flen);
    plan_feat_entry *e = plan_cache_slot(c, fs, flen, h);
    if (!e || e->text)
        return e;
    json_error_t je;
    ks_plan tmp;
    memset(&tmp, 0, sizeof(tmp));
    json_t *fj = json_loadb(fs, flen, 0, &je);
    bool ok = fj && decode_plan_features(&tmp, fj, NULL) == KS_OK;
    json_decref(fj);
    char *copy = ok ? malloc(flen ? flen : 1) : NULL;
    if (!copy)
        return NULL;
    memcpy(copy, fs, flen);
    e->text = copy;
    e->len = flen;
    e->hash = h;
    memcpy(e->cpu_model, tmp.cpu_model, sizeof(e->cpu_model));
    e->visible = tmp.visible;
    e->disable = tmp.disable;
    c->n++;
    return e;
}

/* Finds the top-level members "features" and "vcpus" of an object's text in
 * one pass: [*fs, *fe) and [*vs, *ve).  False unless both are found once
 * each: jansson keeps the last of duplicate keys, so a duplicate goes to the
 * plain decoder (finding plan-parse-dup-keys). */
static bool find_members(const char *text, size_t len, const char **fs, const char **fe,
                         const char **vs, const char **ve)
{
    const char *end = text + len, *p = ks_json__skip_ws(text, end);
    *fs = *vs = NULL;
    if (p >= end || *p != '{')
        return false;
    p = ks_json__skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *ke = ks_json__skip_string(p, end);
        const char *v = ke ? ks_json__skip_ws(ke, end) : NULL;
        if (!v || v >= end || *v != ':')
            return false;
        v = ks_json__skip_ws(v + 1, end);
        const char *e = ks_json__skip_value(v, end);
        if (!e)
            return false;
        size_t kl = (size_t)(ke - p) - 2;
        if (kl == 8 && memcmp(p + 1, "features", 8) == 0) {
            if (*fs)
                return false;
            *fs = v;
            *fe = e;
        } else if (kl == 5 && memcmp(p + 1, "vcpus", 5) == 0) {
            if (*vs)
                return false;
            *vs = v;
            *ve = e;
        }
        p = ks_json__skip_ws(e, end);
        if (p < end && *p == ',')
            p = ks_json__skip_ws(p + 1, end);
    }
    return *fs && *vs;
}

bool ks_vm__lex_int(const char **pp, const char *end, int64_t *out)
{
    const char *p = *pp;
    bool neg = p < end && *p == '-';
    p += neg;
    if (p >= end || *p < '0' || *p > '9' || (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9'))
        return false;
    int64_t x = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (x > (INT64_MAX - 9) / 10)
            return false;
        x = x * 10 + (*p - '0');
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
        return false;
    *out = neg ? -x : x;
    *pp = p;
    return true;
}

/*
 * The "vcpus" array's text decoded without building JSON objects: flat
 * objects of known keys, each at most once, plain integers and strings
 * without escapes.  Anything else returns false (the plain decoder then
 * judges it).  Values are range-checked later by pre_vcpus_valid.
 */
static bool lex_vcpus(const char *p, const char *end, ks_plan_vcpu *out, uint32_t *n_out,
                      const char **after)
{
    uint32_t n = 0;
    p = ks_json__skip_ws(p, end);
    if (p >= end || *p != '[')
        return false;
    p = ks_json__skip_ws(p + 1, end);
    while (p < end && *p == '{') {
        if (n == KS_VM_MAX_VCPUS)
            return false;
        ks_plan_vcpu *v = &out[n++];
        uint32_t seen = 0;
        plan_vcpu_init(v, -1);
        p = ks_json__skip_ws(p + 1, end);
        while (p < end && *p == '"') {
            const char *ke = ks_json__skip_string(p, end);
            if (!ke)
                return false;
            const char *k = p + 1;
            size_t kl = (size_t)(ke - k) - 1;
            int key = -1;
            /* Length before bytes: a key with an embedded NUL ("id\0zz") must not
             * match "id", nor make us read past the end of a known key.  The first
             * byte first: strlen only for the few keys that share it. */
            for (int i = 0; plan_vcpu_keys[i] && key < 0; i++)
                if (kl && plan_vcpu_keys[i][0] == k[0] && strlen(plan_vcpu_keys[i]) == kl &&
                    memcmp(plan_vcpu_keys[i], k, kl) == 0)
                    key = i;
            if (key < 0 || (seen & (1u << key)))
                return false;
            seen |= 1u << key;
            p = ks_json__skip_ws(ke, end);
            if (p >= end || *p != ':')
                return false;
            p = ks_json__skip_ws(p + 1, end);
            enum { K_KIND = 2, K_KIND_NAME = 3, K_MAX_MHZ = 4 }; /* in plan_vcpu_keys */
            if (key == K_KIND || key == K_KIND_NAME) {
                const char *se = p < end && *p == '"' ? ks_json__skip_string(p, end) : NULL;
                if (!se)
                    return false;
                size_t sl = (size_t)(se - p) - 2;
                /* printable ASCII only: escapes, control bytes and UTF-8 are
                 * left to jansson's checks */
                for (size_t c = 1; c <= sl; c++)
                    if (p[c] < 0x20 || p[c] > 0x7e || p[c] == '\\')
                        return false;
                if (key == K_KIND_NAME) {
                    if (sl >= sizeof(v->kind_name))
                        return false;
                    memcpy(v->kind_name, p + 1, sl);
                    v->kind_name[sl] = '\0';
                } else {
                    char buf[16];
                    if (sl >= sizeof(buf))
                        return false;
                    memcpy(buf, p + 1, sl);
                    buf[sl] = '\0';
                    int kc = ks_kind_class_from_str(buf);
                    if (kc < 0)
                        return false;
                    v->kind_class = (uint8_t)kc;
                }
                p = se;
            } else {
                int64_t x;
                if (!ks_vm__lex_int(&p, end, &x) || x < 0 || x > INT32_MAX)
                    return false;
                int32_t *dst[] = {&v->id,       &v->host_cpu, NULL,       NULL,
                                  NULL,         &v->socket,   &v->die,    &v->cluster,
                                  &v->core,     &v->thread,   &v->l2_group, &v->l3_group,
                                  &v->numa_node};
                if (key == K_MAX_MHZ)
                    v->max_mhz = (uint32_t)x;
                else if (key < (int)(sizeof(dst) / sizeof(dst[0])) && dst[key])
                    *dst[key] = (int32_t)x;
                else
                    return false;
            }
            p = ks_json__skip_ws(p, end);
            if (p < end && *p == ',') {
                p = ks_json__skip_ws(p + 1, end);
                if (p >= end || *p != '"')
                    return false; /* a trailing comma is not JSON */
            } else if (p >= end || *p != '}') {
                return false;
            }
        }
        /* required: id, host_cpu, kind */
        if (p >= end || *p != '}' || (seen & 7u) != 7u)
            return false;
        p = ks_json__skip_ws(p + 1, end);
        if (p < end && *p == ',') {
            p = ks_json__skip_ws(p + 1, end);
            if (p >= end || *p != '{')
                return false;
        } else if (p >= end || *p != ']') {
            return false;
        }
    }
    if (p >= end || *p != ']' || n == 0)
        return false;
    *n_out = n;
    if (after)
        *after = p + 1;
    return true;
}

static ks_code plan_parse_plain(ks_plan **out, const char *text, size_t len, ks_err *err)
{
    json_error_t je;
    json_t *doc = json_loadb(text, len, 0, &je);
    if (!doc)
        return ks_err_set_field(err, KS_EINVAL, "", "invalid JSON at line %d column %d: %s",
                                je.line, je.column, je.text);
    ks_code rc = ks_plan_from_json(out, doc, err);
    json_decref(doc);
    return rc;
}

/*
 * The features member is swapped for a stub before the text is parsed, and
 * its cached decode put in afterwards.  Anything unusual (no member found,
 * its decode failing, the cache full, an error anywhere) goes the plain way,
 * so results and error messages are exactly ks_plan_from_json's.
 */
ks_code ks_plan_parse(ks_plan **out, const char *text, size_t len, ks_plan_cache *cache,
                      ks_err *err)
{
    static const char fstub[] = "{\"model\":\"-\"}", vstub[] = "[]";
    const char *fs = NULL, *fe = NULL, *vs = NULL, *ve = NULL;
    if (!text)
        return ks_err_set_field(err, KS_EINVAL, "", "no plan text");
    if (cache && ks_vm__plan_fast(out, text, len, cache))
        return KS_OK;
    if (!cache || !find_members(text, len, &fs, &fe, &vs, &ve))
        return plan_parse_plain(out, text, len, err);
    const plan_feat_entry *e = plan_cache_get(cache, fs, (size_t)(fe - fs));
    if (!e || !cache->vcpus)
        return plan_parse_plain(out, text, len, err);
    uint32_t n_pre = 0;
    if (!lex_vcpus(vs, ve, cache->vcpus, &n_pre, NULL))
        return plan_parse_plain(out, text, len, err);
    /* the text with both members stubbed, spans in text order */
    const char *s1 = fs, *e1 = fe, *s2 = vs, *e2 = ve, *t1 = fstub, *t2 = vstub;
    if (vs < fs) {
        s1 = vs, e1 = ve, s2 = fs, e2 = fe, t1 = vstub, t2 = fstub;
    }
    size_t l1 = strlen(t1), l2 = strlen(t2);
    size_t n = (size_t)(s1 - text) + l1 + (size_t)(s2 - e1) + l2 + (size_t)(text + len - e2);
    char *buf = malloc(n);
    if (!buf)
        return plan_parse_plain(out, text, len, err);
    char *w = buf;
    memcpy(w, text, (size_t)(s1 - text)), w += s1 - text;
    memcpy(w, t1, l1), w += l1;
    memcpy(w, e1, (size_t)(s2 - e1)), w += s2 - e1;
    memcpy(w, t2, l2), w += l2;
    memcpy(w, e2, (size_t)(text + len - e2));
    json_error_t je;
    json_t *doc = json_loadb(buf, n, 0, &je);
    free(buf);
    ks_plan *p = NULL;
    bool pre_bad = false;
    ks_code rc = doc ? plan_decode(&p, doc, cache->vcpus, n_pre, &pre_bad, NULL) : KS_EINVAL;
    json_decref(doc);
    if (rc == KS_OK && strcmp(p->cpu_model, "-") != 0) {
        /* a later duplicate "features" won over the stub: not the cached one */
        ks_plan_free(p);
        rc = KS_EINVAL;
    }
    if (rc != KS_OK) /* whatever went wrong, the plain decoder says it exactly */
        return plan_parse_plain(out, text, len, err);
    memcpy(p->cpu_model, e->cpu_model, sizeof(p->cpu_model));
    p->visible = e->visible;
    p->disable = e->disable;
    *out = p;
    return KS_OK;
}

/* ---- for the text decoders of ks_vm_fast.c (ks_vm_int.h) ---- */

bool ks_vm__lex_vcpus(const char *p, const char *end, ks_plan_vcpu *out, uint32_t *n_out,
                      const char **after)
{
    return lex_vcpus(p, end, out, n_out, after);
}

bool ks_vm__pre_vcpus_valid(const ks_plan *p, const ks_plan_vcpu *pre)
{
    return pre_vcpus_valid(p, pre);
}

ks_plan_vcpu *ks_vm__cache_vcpus(ks_plan_cache *c)
{
    return c->vcpus;
}

bool ks_vm__cache_features(ks_plan_cache *c, const char *fs, const char *end, const char **after,
                           char *model, size_t model_cap, ks_featset *visible,
                           ks_featset *disable)
{
    const plan_feat_entry *e = NULL;
    if (fs >= end || *fs != '{')
        return false;
    /* Usually the member ends at its first '}' (names hold none): its bytes
     * equal to a cached member's are that member, which is a whole object.
     * Otherwise find its end lexically. */
    const char *cand = memchr(fs, '}', (size_t)(end - fs));
    if (cand) {
        size_t n = (size_t)(cand + 1 - fs);
        plan_feat_entry *s = plan_cache_slot(c, fs, n, text_hash(fs, n));
        e = s && s->text ? s : NULL;
    }
    if (!e) {
        const char *fe = ks_json__skip_value(fs, end);
        e = fe ? plan_cache_get(c, fs, (size_t)(fe - fs)) : NULL;
    }
    if (!e || model_cap < sizeof(e->cpu_model))
        return false;
    *after = fs + e->len;
    memcpy(model, e->cpu_model, sizeof(e->cpu_model));
    *visible = e->visible;
    *disable = e->disable;
    return true;
}
