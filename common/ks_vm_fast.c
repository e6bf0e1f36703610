/*
 * ks_vm_fast.c - VM request and plan text decoded without building JSON
 * values, for reloading a store (kintsugid's start-up reads ~213k of each at
 * 10k hosts, and jansson's trees were a third of that).
 *
 * Each decoder takes only the plain subset of JSON that the store's own
 * encoder writes: objects of known keys, each at most once, in any order,
 * integers without fraction or exponent, strings of printable ASCII without
 * escapes, any blanks.  Everything it takes it checks exactly as
 * ks_vm_request_from_json / ks_plan_from_json would.  Anything else (an
 * unknown or duplicate key, an escape, a value out of range, invalid JSON)
 * makes it give up without a result, and the caller decodes the text the
 * plain way: so results and error messages are always the plain decoder's.
 */
#include <stdlib.h>
#include <string.h>

#include "ks_json_util.h"
#include "ks_vm_int.h"

/* ---- a lexer over one text ---- */

typedef struct lx {
    const char *p, *end;
} lx;

/* Skips blanks; true (and steps past it) when the next byte is c. */
static bool lx_ch(lx *l, char c)
{
    l->p = ks_json__skip_ws(l->p, l->end);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return true;
    }
    return false;
}

/* A string of printable ASCII without escapes; its contents [*s, *s + *n). */
static bool lx_str(lx *l, const char **s, size_t *n)
{
    l->p = ks_json__skip_ws(l->p, l->end);
    if (l->p >= l->end || *l->p != '"')
        return false;
    const char *b = l->p + 1;
    for (const char *q = b; q < l->end; q++) {
        unsigned char c = (unsigned char)*q;
        if (c == '"') {
            *s = b;
            *n = (size_t)(q - b);
            l->p = q + 1;
            return true;
        }
        if (c < 0x20 || c > 0x7e || c == '\\')
            return false;
    }
    return false;
}

/* A string into buf[cap] (shorter than cap). */
static bool lx_str_buf(lx *l, char *buf, size_t cap)
{
    const char *s;
    size_t n;
    if (!lx_str(l, &s, &n) || n >= cap)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return true;
}

/* An id (ks_id_valid) into buf[KS_ID_MAX]. */
static bool lx_id(lx *l, char *buf)
{
    return lx_str_buf(l, buf, KS_ID_MAX) && ks_id_valid(buf);
}

/* An integer in min..max (ks_vm__lex_int). */
static bool lx_int(lx *l, int64_t min, int64_t max, int64_t *out)
{
    const char *p = ks_json__skip_ws(l->p, l->end);
    int64_t x = 0;
    if (!ks_vm__lex_int(&p, l->end, &x) || x < min || x > max)
        return false;
    *out = x;
    l->p = p;
    return true;
}

static bool lx_u32(lx *l, uint32_t max, uint32_t *out)
{
    int64_t x = 0;
    if (!lx_int(l, 0, max, &x))
        return false;
    *out = (uint32_t)x;
    return true;
}

static bool lx_i32(lx *l, int32_t min, int32_t max, int32_t *out)
{
    int64_t x = 0;
    if (!lx_int(l, min, max, &x))
        return false;
    *out = (int32_t)x;
    return true;
}

static bool lx_bool(lx *l, bool *out)
{
    const char *p = ks_json__skip_ws(l->p, l->end);
    size_t left = (size_t)(l->end - p);
    if (left >= 4 && memcmp(p, "true", 4) == 0) {
        *out = true;
        l->p = p + 4;
        return true;
    }
    if (left >= 5 && memcmp(p, "false", 5) == 0) {
        *out = false;
        l->p = p + 5;
        return true;
    }
    return false;
}

/* Opens an object or array: *more = it has members. */
static bool lx_open(lx *l, char open, char close, bool *more)
{
    if (!lx_ch(l, open))
        return false;
    *more = !lx_ch(l, close);
    return true;
}

/* After a member or element: a ',' (*more) or the closing byte. */
static bool lx_next(lx *l, char close, bool *more)
{
    if (lx_ch(l, ',')) {
        *more = true;
        return true;
    }
    *more = false;
    return lx_ch(l, close);
}

/* A member key from keys (NULL-terminated, at most 32), not seen before,
 * and its ':'; its index, or -1. */
static int lx_key(lx *l, const char *const *keys, uint32_t *seen)
{
    const char *s;
    size_t n;
    if (!lx_str(l, &s, &n))
        return -1;
    for (int i = 0; keys[i]; i++) {
        /* the first byte first: strlen only for the few keys sharing it */
        if (!n || keys[i][0] != s[0] || strlen(keys[i]) != n || memcmp(keys[i], s, n) != 0)
            continue;
        if (*seen & (1u << i))
            return -1; /* jansson keeps the last of duplicates: the plain way */
        *seen |= 1u << i;
        return lx_ch(l, ':') ? i : -1;
    }
    return -1;
}

/* An array of at most KS_VM_MAX_EVENTS names (1..KS_NAME_MAX-1 bytes) into a
 * new array, as ks_json__names_from_json; *out stays NULL when empty. */
static bool lx_names(lx *l, char (**out)[KS_NAME_MAX], uint32_t *n_out)
{
    const char *start = l->p, *s;
    size_t n, count = 0;
    bool more;
    if (!lx_open(l, '[', ']', &more))
        return false;
    while (more) {
        if (!lx_str(l, &s, &n) || n == 0 || n >= KS_NAME_MAX || ++count > KS_VM_MAX_EVENTS ||
            !lx_next(l, ']', &more))
            return false;
    }
    if (count == 0)
        return true;
    char (*names)[KS_NAME_MAX] = calloc(count, sizeof(*names));
    if (!names)
        return false;
    lx again = {start, l->end};
    lx_ch(&again, '[');
    for (size_t i = 0; i < count; i++) {
        lx_str(&again, &s, &n);
        memcpy(names[i], s, n);
        lx_ch(&again, ',');
    }
    *out = names;
    *n_out = (uint32_t)count;
    return true;
}

/* An array of feature names into *set, as ks_featset_from_json. */
static bool lx_featset(lx *l, ks_featset *set)
{
    bool more;
    ks_featset_clear(set);
    if (!lx_open(l, '[', ']', &more))
        return false;
    while (more) {
        char name[KS_NAME_MAX];
        if (!lx_str_buf(l, name, sizeof(name)) || ks_feature_add_name(set, name, NULL) != KS_OK ||
            !lx_next(l, ']', &more))
            return false;
    }
    return true;
}

/* After the top-level value: blanks only. */
static bool lx_done(lx *l)
{
    return ks_json__skip_ws(l->p, l->end) == l->end;
}

static bool names_overlap(char (*a)[KS_NAME_MAX], uint32_t na, char (*b)[KS_NAME_MAX],
                          uint32_t nb)
{
    for (uint32_t i = 0; a && i < na; i++)
        for (uint32_t j = 0; b && j < nb; j++)
            if (strcmp(a[i], b[j]) == 0)
                return true;
    return false;
}

/* ---- plan ---- */

static const char *const plan_keys[] = {"vm",       "generation", "host", "memory_mib", "topology",
                                        "vcpus",    "features",   "pmu",  "numa",       NULL};
enum { P_VM, P_GENERATION, P_HOST, P_MEMORY, P_TOPOLOGY, P_VCPUS, P_FEATURES, P_PMU, P_NUMA };
static const char *const topology_keys[] = {"sockets", "dies", "clusters", "cores", "threads",
                                            NULL};
static const char *const plan_pmu_keys[] = {"enabled",        "version",      "gp_counters",
                                            "fixed_counters", "allow_events", "deny_events",
                                            NULL};
static const char *const numa_keys[] = {"node", "host_node", "vcpus", "memory_mib", NULL};

/* topology: {sockets, dies, clusters, cores, threads}, 1..KS_VM_MAX_VCPUS each,
 * sockets and cores required, the others 1 when absent. */
static bool plan_topology(lx *l, uint32_t t[5])
{
    uint32_t seen = 0;
    bool more;
    t[0] = t[1] = t[2] = t[3] = t[4] = 1;
    if (!lx_open(l, '{', '}', &more))
        return false;
    while (more) {
        int k = lx_key(l, topology_keys, &seen);
        if (k < 0 || !lx_u32(l, KS_VM_MAX_VCPUS, &t[k]) || !lx_next(l, '}', &more))
            return false;
    }
    if ((seen & 1u) == 0 || (seen & 8u) == 0)
        return false;
    for (int i = 0; i < 5; i++)
        if (t[i] == 0)
            return false;
    return true;
}

static bool plan_pmu(lx *l, ks_plan *p)
{
    uint32_t seen = 0;
    bool more;
    if (!lx_open(l, '{', '}', &more))
        return false;
    while (more) {
        bool ok;
        switch (lx_key(l, plan_pmu_keys, &seen)) {
        case 0:
            ok = lx_bool(l, &p->pmu.enabled);
            break;
        case 1:
            ok = lx_i32(l, 0, 255, &p->pmu.version);
            break;
        case 2:
            ok = lx_i32(l, 0, 255, &p->pmu.gp_counters);
            break;
        case 3:
            ok = lx_i32(l, 0, 255, &p->pmu.fixed_counters);
            break;
        case 4:
            ok = lx_names(l, &p->pmu.allow_events, &p->pmu.n_allow);
            break;
        case 5:
            ok = lx_names(l, &p->pmu.deny_events, &p->pmu.n_deny);
            break;
        default:
            ok = false;
        }
        if (!ok || !lx_next(l, '}', &more))
            return false;
    }
    return !names_overlap(p->pmu.allow_events, p->pmu.n_allow, p->pmu.deny_events,
                          p->pmu.n_deny);
}

/* One element of "numa"; owner[] maps vcpu id -> node index + 1. */
static bool plan_numa_node(lx *l, ks_plan *p, uint32_t i, uint16_t *owner)
{
    ks_plan_numa *nn = &p->numa[i];
    uint32_t seen = 0;
    bool more;
    nn->host_node = -1;
    if (!lx_open(l, '{', '}', &more))
        return false;
    while (more) {
        bool ok;
        int k = lx_key(l, numa_keys, &seen);
        if (k == 0) {
            ok = lx_i32(l, 0, KS_REPORT_MAX_NUMA - 1, &nn->node);
        } else if (k == 1) {
            ok = lx_i32(l, -1, KS_REPORT_MAX_NUMA - 1, &nn->host_node);
        } else if (k == 3) {
            int64_t x = 0;
            ok = lx_int(l, 0, (int64_t)KS_VM_MAX_MEMORY_MIB, &x);
            nn->memory_mib = (uint64_t)x;
        } else if (k == 2) {
            int32_t ids[KS_VM_MAX_VCPUS];
            uint32_t n = 0;
            bool more_ids;
            ok = lx_open(l, '[', ']', &more_ids);
            while (ok && more_ids) {
                ok = n < p->n_vcpus && lx_i32(l, 0, (int32_t)p->n_vcpus - 1, &ids[n]) &&
                     owner[ids[n]] == 0 && lx_next(l, ']', &more_ids);
                if (ok)
                    owner[ids[n++]] = (uint16_t)(i + 1);
            }
            if (ok && n) {
                nn->vcpus = malloc(n * sizeof(*nn->vcpus));
                ok = nn->vcpus != NULL;
                if (ok)
                    memcpy(nn->vcpus, ids, n * sizeof(*nn->vcpus));
            }
            nn->n_vcpus = n;
        } else {
            ok = false;
        }
        if (!ok || !lx_next(l, '}', &more))
            return false;
    }
    /* node and vcpus are required; a node only once */
    if ((seen & 5u) != 5u)
        return false;
    for (uint32_t j = 0; j < i; j++)
        if (p->numa[j].node == nn->node)
            return false;
    return true;
}

static bool plan_numa(lx *l, ks_plan *p)
{
    uint16_t owner[KS_VM_MAX_VCPUS];
    uint32_t cap = 0;
    bool more;
    memset(owner, 0, sizeof(owner));
    if (!lx_open(l, '[', ']', &more))
        return false;
    while (more) {
        if (p->n_numa == KS_REPORT_MAX_NUMA)
            return false;
        if (p->n_numa == cap) {
            uint32_t ncap = cap ? cap * 2 : 2;
            ks_plan_numa *q = realloc(p->numa, ncap * sizeof(*q));
            if (!q)
                return false;
            p->numa = q;
            cap = ncap;
        }
        memset(&p->numa[p->n_numa], 0, sizeof(p->numa[0]));
        uint32_t i = p->n_numa++;
        if (!plan_numa_node(l, p, i, owner) || !lx_next(l, ']', &more))
            return false;
    }
    /* with nodes, every vcpu is in exactly the one its numa_node names */
    for (uint32_t v = 0; p->n_numa && v < p->n_vcpus; v++)
        if (!owner[v] || p->vcpus[v].numa_node != p->numa[owner[v] - 1].node)
            return false;
    return true;
}

bool ks_vm__plan_fast(ks_plan **out, const char *text, size_t len, ks_plan_cache *cache)
{
    lx l = {text, text + len};
    ks_plan_vcpu *pre = ks_vm__cache_vcpus(cache);
    char vm[KS_ID_MAX], host[KS_ID_MAX], model[32];
    int64_t generation = 0, memory = 0;
    uint32_t topo[5], n_pre = 0, seen = 0;
    ks_featset visible, disable;
    /* pmu and numa: where their values start and end */
    const char *pmu = NULL, *pmu_end = NULL, *numa = NULL, *numa_end = NULL;
    bool more;
    if (!pre || !lx_open(&l, '{', '}', &more))
        return false;
    while (more) {
        bool ok;
        int k = lx_key(&l, plan_keys, &seen);
        switch (k) {
        case P_VM:
            ok = lx_id(&l, vm);
            break;
        case P_GENERATION:
            ok = lx_int(&l, 1, INT64_MAX, &generation);
            break;
        case P_HOST:
            ok = lx_id(&l, host);
            break;
        case P_MEMORY:
            ok = lx_int(&l, 0, (int64_t)KS_VM_MAX_MEMORY_MIB, &memory);
            break;
        case P_TOPOLOGY:
            ok = plan_topology(&l, topo);
            break;
        case P_VCPUS:
            l.p = ks_json__skip_ws(l.p, l.end);
            ok = ks_vm__lex_vcpus(l.p, l.end, pre, &n_pre, &l.p);
            break;
        case P_FEATURES:
            l.p = ks_json__skip_ws(l.p, l.end);
            ok = ks_vm__cache_features(cache, l.p, l.end, &l.p, model, sizeof(model), &visible,
                                       &disable);
            break;
        case P_PMU:
        case P_NUMA: {
            /* decoded once the plan exists; here only stepped over */
            const char *v = ks_json__skip_ws(l.p, l.end);
            const char *e = ks_json__skip_value(v, l.end);
            ok = e != NULL;
            if (k == P_PMU)
                pmu = v, pmu_end = e;
            else
                numa = v, numa_end = e;
            l.p = e;
            break;
        }
        default:
            ok = false;
        }
        if (!ok || !lx_next(&l, '}', &more))
            return false;
    }
    uint32_t required = 1u << P_VM | 1u << P_GENERATION | 1u << P_HOST | 1u << P_TOPOLOGY |
                        1u << P_VCPUS | 1u << P_FEATURES;
    if ((seen & required) != required || !lx_done(&l))
        return false;
    uint64_t slots = (uint64_t)topo[0] * topo[1] * topo[2] * topo[3] * topo[4];
    if (slots < n_pre)
        return false;
    ks_plan *p = NULL;
    if (ks_plan_new(&p, n_pre, NULL) != KS_OK)
        return false;
    memcpy(p->vm, vm, sizeof(vm));
    memcpy(p->host, host, sizeof(host));
    p->generation = (uint64_t)generation;
    p->memory_mib = (uint64_t)memory;
    p->topology.sockets = topo[0];
    p->topology.dies = topo[1];
    p->topology.clusters = topo[2];
    p->topology.cores = topo[3];
    p->topology.threads = topo[4];
    bool ok = ks_vm__pre_vcpus_valid(p, pre);
    for (uint32_t i = 0; ok && i < n_pre; i++)
        p->vcpus[pre[i].id] = pre[i];
    memcpy(p->cpu_model, model, sizeof(p->cpu_model));
    p->visible = visible;
    p->disable = disable;
    /* each must end where it was stepped over */
    if (ok && pmu) {
        lx lp = {pmu, pmu_end};
        ok = plan_pmu(&lp, p) && lp.p == pmu_end;
    }
    if (ok && numa) {
        lx ln = {numa, numa_end};
        ok = plan_numa(&ln, p) && ln.p == numa_end;
    }
    if (ok && p->n_numa == 0) {
        free(p->numa); /* an empty "numa" is no nodes */
        p->numa = NULL;
    }
    if (!ok) {
        ks_plan_free(p);
        return false;
    }
    *out = p;
    return true;
}

/* ---- VM request ---- */

static const char *const request_keys[] = {
    "name",     "vcpus", "memory_mib", "required_features", "forbidden_features",
    "pool",     "host",  "anti_affinity_group", "min_mhz",  "placement",
    "numa",     "smt",   "pmu",        NULL,
};
enum {
    R_NAME, R_VCPUS, R_MEMORY, R_REQUIRED, R_FORBIDDEN, R_POOL, R_HOST, R_AAG, R_MIN_MHZ,
    R_PLACEMENT, R_NUMA, R_SMT, R_PMU
};
static const char *const vcpus_keys[] = {"performance", "efficiency", "any", NULL};
static const char *const req_pmu_keys[] = {"enabled", "allow_events", "deny_events", NULL};

/* "vcpus": N (1..KS_VM_MAX_VCPUS) or {performance, efficiency, any}. */
static bool request_vcpus(lx *l, ks_vm_request *r)
{
    uint32_t seen = 0;
    bool more;
    if (lx_u32(l, KS_VM_MAX_VCPUS, &r->n_any))
        return r->n_any >= 1;
    if (!lx_open(l, '{', '}', &more))
        return false;
    while (more) {
        uint32_t *dst[] = {&r->n_performance, &r->n_efficiency, &r->n_any};
        int k = lx_key(l, vcpus_keys, &seen);
        if (k < 0 || !lx_u32(l, KS_VM_MAX_VCPUS, dst[k]) || !lx_next(l, '}', &more))
            return false;
    }
    uint32_t total = ks_vm_request_vcpus(r);
    return total >= 1 && total <= KS_VM_MAX_VCPUS;
}

static bool request_pmu(lx *l, ks_pmu_request *pmu)
{
    uint32_t seen = 0;
    bool more;
    if (!lx_open(l, '{', '}', &more))
        return false;
    while (more) {
        bool ok;
        switch (lx_key(l, req_pmu_keys, &seen)) {
        case 0:
            ok = lx_bool(l, &pmu->enabled);
            break;
        case 1:
            ok = lx_names(l, &pmu->allow_events, &pmu->n_allow);
            break;
        case 2:
            ok = lx_names(l, &pmu->deny_events, &pmu->n_deny);
            break;
        default:
            ok = false;
        }
        if (!ok || !lx_next(l, '}', &more))
            return false;
    }
    return !names_overlap(pmu->allow_events, pmu->n_allow, pmu->deny_events, pmu->n_deny);
}

/* An enum member: a string shorter than KS_NAME_MAX that from_str knows. */
static bool request_enum(lx *l, int (*from_str)(const char *), uint8_t *out)
{
    char buf[KS_NAME_MAX];
    if (!lx_str_buf(l, buf, sizeof(buf)))
        return false;
    int x = from_str(buf);
    if (x < 0)
        return false;
    *out = (uint8_t)x;
    return true;
}

static bool request_fast(ks_vm_request *r, const char *text, size_t len)
{
    lx l = {text, text + len};
    uint32_t seen = 0;
    bool more;
    if (!lx_open(&l, '{', '}', &more))
        return false;
    while (more) {
        bool ok;
        int64_t x = 0;
        switch (lx_key(&l, request_keys, &seen)) {
        case R_NAME:
            ok = lx_id(&l, r->name);
            break;
        case R_VCPUS:
            ok = request_vcpus(&l, r);
            break;
        case R_MEMORY:
            ok = lx_int(&l, 1, (int64_t)KS_VM_MAX_MEMORY_MIB, &x);
            r->memory_mib = (uint64_t)x;
            break;
        case R_REQUIRED:
            ok = lx_featset(&l, &r->required);
            break;
        case R_FORBIDDEN:
            ok = lx_featset(&l, &r->forbidden);
            break;
        case R_POOL:
            ok = lx_id(&l, r->pool);
            break;
        case R_HOST:
            ok = lx_id(&l, r->host);
            break;
        case R_AAG:
            ok = lx_id(&l, r->anti_affinity_group);
            break;
        case R_MIN_MHZ:
            ok = lx_u32(&l, KS_VM_MAX_MHZ, &r->min_mhz);
            break;
        case R_PLACEMENT:
            ok = request_enum(&l, ks_placement_mode_from_str, &r->placement);
            break;
        case R_NUMA:
            ok = request_enum(&l, ks_numa_mode_from_str, &r->numa);
            break;
        case R_SMT:
            ok = request_enum(&l, ks_smt_mode_from_str, &r->smt);
            break;
        case R_PMU:
            ok = request_pmu(&l, &r->pmu);
            break;
        default:
            ok = false;
        }
        if (!ok || !lx_next(&l, '}', &more))
            return false;
    }
    uint32_t required = 1u << R_NAME | 1u << R_VCPUS;
    return (seen & required) == required && lx_done(&l) &&
           !ks_featset_intersects(&r->required, &r->forbidden);
}

bool ks_vm__request_fast(ks_vm_request **out, const char *text, size_t len)
{
    ks_vm_request *r = calloc(1, sizeof(*r));
    if (!r)
        return false;
    r->memory_mib = KS_VM_DEFAULT_MEMORY_MIB;
    r->placement = KS_PLACE_PACK;
    r->numa = KS_NUMA_PREFERRED;
    r->smt = KS_SMT_ALLOW;
    if (!request_fast(r, text, len)) {
        ks_vm_request_free(r);
        return false;
    }
    *out = r;
    return true;
}

ks_code ks_vm_request_parse(ks_vm_request **out, const char *text, size_t len, ks_err *err)
{
    if (!text)
        return ks_err_set_field(err, KS_EINVAL, "", "no vm request text");
    if (ks_vm__request_fast(out, text, len))
        return KS_OK;
    json_error_t je;
    json_t *doc = json_loadb(text, len, 0, &je);
    if (!doc)
        return ks_err_set_field(err, KS_EINVAL, "", "invalid JSON at line %d column %d: %s",
                                je.line, je.column, je.text);
    ks_code rc = ks_vm_request_from_json(out, doc, err);
    json_decref(doc);
    return rc;
}
