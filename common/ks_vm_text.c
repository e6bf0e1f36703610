/*
 * ks_vm_text.c - the plan and VM request documents as text, written directly.
 *
 * kintsugid stores and returns the plan of every placement as canonical JSON
 * (compact, keys sorted: what json_dumps(ks_plan_to_json(p), JSON_COMPACT |
 * JSON_SORT_KEYS) gives).  Building it through jansson costs a few hundred
 * small allocations per plan, most of them for the two feature-name arrays
 * (~140 names each), and was the largest CPU cost of a placement after the
 * SQLite commit.  This writer produces the same bytes with one growing buffer,
 * and keeps the text of recently seen feature sets: a fleet's plans share a
 * handful of them.  Anything it does not write byte-identically (strings that
 * need escaping or are not plain ASCII) goes to the jansson path instead.
 *
 * The request document (ks_vm_request_to_json) is stored with every placement
 * too; it is small, but through jansson it still cost a few dozen allocations
 * per placement, so it is written the same way.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_feature.h"
#include "ks_json_util.h"
#include "ks_vm.h"

typedef struct text_buf {
    char *p;
    size_t len, cap;
    bool bad; /* out of memory, or a string this writer does not handle */
} text_buf;

static void tb_grow(text_buf *b, size_t more)
{
    if (b->bad || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->bad = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void tb_put(text_buf *b, const char *s, size_t n)
{
    tb_grow(b, n);
    if (b->bad)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void tb_lit(text_buf *b, const char *s)
{
    tb_put(b, s, strlen(s));
}

/* Decimal, as "%lld" writes it: a plan has ~15 integers per vCPU, and
 * snprintf's format machinery was 7 % of a durable placement. */
static void tb_int(text_buf *b, long long v)
{
    char num[24];
    size_t n = sizeof(num);
    /* negate through unsigned: LLONG_MIN has no positive long long */
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        num[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        num[--n] = '-';
    tb_put(b, num + n, sizeof(num) - n);
}

/* `key` is the member's text up to its value, e.g. ",\"core\":". */
static void tb_member_int(text_buf *b, const char *key, long long v)
{
    tb_lit(b, key);
    tb_int(b, v);
}

/* A JSON string of printable ASCII needing no escape; anything else is left
 * to jansson (its escaping and UTF-8 repair rules). */
static void tb_str(text_buf *b, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (!ks_json__plain(s, n)) {
        b->bad = true;
        return;
    }
    tb_put(b, "\"", 1);
    tb_put(b, s, n);
    tb_put(b, "\"", 1);
}

/* ---- feature-set text cache (process state, shared by all threads) ---- */

#define FEATSET_CACHE_SLOTS 64

/* Slots are replaced round-robin when full: plans of one fleet use a few
 * sets, so a miss is the exception and needs no smarter policy. */
static struct {
    pthread_mutex_t mu;
    struct {
        ks_featset set;
        char *text; /* owned; NULL = empty slot */
        size_t len;
    } slot[FEATSET_CACHE_SLOTS];
    unsigned next;
} featset_cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

static char *featset_text(const ks_featset *s, size_t *len)
{
    text_buf b = {0};
    tb_put(&b, "[", 1);
    bool first = true;
    for (int f = ks_featset_next(s, 0); f >= 0 && !b.bad; f = ks_featset_next(s, (unsigned)f + 1)) {
        const char *name = ks_feature_name((unsigned)f);
        if (!name) {
            b.bad = true;
            break;
        }
        if (!first)
            tb_put(&b, ",", 1);
        first = false;
        tb_str(&b, name, KS_NAME_MAX);
    }
    tb_put(&b, "]", 1);
    if (b.bad) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

static void tb_featset(text_buf *b, const ks_featset *s)
{
    if (b->bad)
        return;
    pthread_mutex_lock(&featset_cache.mu);
    for (unsigned i = 0; i < FEATSET_CACHE_SLOTS; i++) {
        if (featset_cache.slot[i].text && ks_featset_equal(&featset_cache.slot[i].set, s)) {
            tb_put(b, featset_cache.slot[i].text, featset_cache.slot[i].len);
            pthread_mutex_unlock(&featset_cache.mu);
            return;
        }
    }
    pthread_mutex_unlock(&featset_cache.mu);
    size_t len = 0;
    char *text = featset_text(s, &len);
    if (!text) {
        b->bad = true;
        return;
    }
    tb_put(b, text, len);
    pthread_mutex_lock(&featset_cache.mu);
    unsigned i = featset_cache.next++ % FEATSET_CACHE_SLOTS;
    free(featset_cache.slot[i].text);
    featset_cache.slot[i].set = *s;
    featset_cache.slot[i].text = text;
    featset_cache.slot[i].len = len;
    pthread_mutex_unlock(&featset_cache.mu);
}

static void tb_names(text_buf *b, const char (*names)[KS_NAME_MAX], uint32_t n)
{
    tb_put(b, "[", 1);
    for (uint32_t i = 0; names && i < n; i++) {
        if (i)
            tb_put(b, ",", 1);
        tb_str(b, names[i], KS_NAME_MAX);
    }
    tb_put(b, "]", 1);
}

/* Keys in byte order, as JSON_SORT_KEYS writes them. */
static void tb_vcpu(text_buf *b, const ks_plan_vcpu *v)
{
    tb_member_int(b, "{\"cluster\":", v->cluster);
    tb_member_int(b, ",\"core\":", v->core);
    tb_member_int(b, ",\"die\":", v->die);
    tb_member_int(b, ",\"host_cpu\":", v->host_cpu);
    tb_member_int(b, ",\"id\":", v->id);
    tb_lit(b, ",\"kind\":");
    tb_str(b, ks_kind_class_to_str((ks_kind_class)v->kind_class), KS_NAME_MAX);
    tb_lit(b, ",\"kind_name\":");
    tb_str(b, v->kind_name, sizeof(v->kind_name));
    tb_member_int(b, ",\"l2_group\":", v->l2_group);
    tb_member_int(b, ",\"l3_group\":", v->l3_group);
    tb_member_int(b, ",\"max_mhz\":", v->max_mhz);
    tb_member_int(b, ",\"numa_node\":", v->numa_node);
    tb_member_int(b, ",\"socket\":", v->socket);
    tb_member_int(b, ",\"thread\":", v->thread);
    tb_lit(b, "}");
}

static long long clamp_u64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (long long)v;
}

static void tb_plan(text_buf *b, const ks_plan *p)
{
    tb_lit(b, "{\"features\":{\"disable\":");
    tb_featset(b, &p->disable);
    tb_lit(b, ",\"enable\":");
    tb_featset(b, &p->visible);
    tb_lit(b, ",\"model\":");
    tb_str(b, p->cpu_model, sizeof(p->cpu_model));
    tb_member_int(b, "},\"generation\":", clamp_u64(p->generation));
    tb_lit(b, ",\"host\":");
    tb_str(b, p->host, sizeof(p->host));
    tb_member_int(b, ",\"memory_mib\":", clamp_u64(p->memory_mib));
    tb_lit(b, ",\"numa\":[");
    for (uint32_t i = 0; p->numa && i < p->n_numa; i++) {
        const ks_plan_numa *n = &p->numa[i];
        tb_lit(b, i ? ",{\"host_node\":" : "{\"host_node\":");
        tb_int(b, n->host_node);
        tb_member_int(b, ",\"memory_mib\":", clamp_u64(n->memory_mib));
        tb_member_int(b, ",\"node\":", n->node);
        tb_lit(b, ",\"vcpus\":[");
        for (uint32_t j = 0; n->vcpus && j < n->n_vcpus; j++) {
            if (j)
                tb_put(b, ",", 1);
            tb_int(b, n->vcpus[j]);
        }
        tb_lit(b, "]}");
    }
    tb_lit(b, "],\"pmu\":{\"allow_events\":");
    tb_names(b, (const char(*)[KS_NAME_MAX])p->pmu.allow_events,
             p->pmu.allow_events ? p->pmu.n_allow : 0);
    tb_lit(b, ",\"deny_events\":");
    tb_names(b, (const char(*)[KS_NAME_MAX])p->pmu.deny_events,
             p->pmu.deny_events ? p->pmu.n_deny : 0);
    tb_lit(b, p->pmu.enabled ? ",\"enabled\":true" : ",\"enabled\":false");
    tb_member_int(b, ",\"fixed_counters\":", p->pmu.fixed_counters);
    tb_member_int(b, ",\"gp_counters\":", p->pmu.gp_counters);
    tb_member_int(b, ",\"version\":", p->pmu.version);
    tb_member_int(b, "},\"topology\":{\"clusters\":", p->topology.clusters);
    tb_member_int(b, ",\"cores\":", p->topology.cores);
    tb_member_int(b, ",\"dies\":", p->topology.dies);
    tb_member_int(b, ",\"sockets\":", p->topology.sockets);
    tb_member_int(b, ",\"threads\":", p->topology.threads);
    tb_lit(b, "},\"vcpus\":[");
    for (uint32_t i = 0; p->vcpus && i < p->n_vcpus; i++) {
        if (i)
            tb_put(b, ",", 1);
        tb_vcpu(b, &p->vcpus[i]);
    }
    tb_lit(b, "],\"vm\":");
    tb_str(b, p->vm, sizeof(p->vm));
    tb_lit(b, "}");
}

/* The writer's text; when it could not write one byte-identically (b->bad),
 * NULL after freeing what it wrote: the caller dumps the document instead. */
static char *tb_take(text_buf *b)
{
    if (!b->bad)
        return b->p;
    free(b->p);
    return NULL;
}

/* The canonical dump of a document built by the jansson codec (consumed). */
static char *dump_canonical(json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    return text;
}

char *ks_plan_to_text(const ks_plan *p)
{
    if (!p)
        return NULL;
    text_buf b = {0};
    tb_plan(&b, p);
    char *text = tb_take(&b);
    return text ? text : dump_canonical(ks_plan_to_json(p));
}

/* ---- VM request ------------------------------------------------------------ */

/* Requests mostly ask for no feature at all ("forbidden_features" nearly
 * always, "required_features" often): "[]" needs neither the cache's lock
 * nor one of its slots, which the plans' large sets make better use of. */
static void tb_req_featset(text_buf *b, const ks_featset *s)
{
    if (ks_featset_empty(s))
        tb_put(b, "[]", 2);
    else
        tb_featset(b, s);
}

/* ks_vm_request_to_json writes "vcpus": N when only "any" vCPUs are asked
 * for, else the object form, with "any" only when non-zero. */
static void tb_req_vcpus(text_buf *b, const ks_vm_request *r)
{
    if (r->n_performance == 0 && r->n_efficiency == 0) {
        tb_member_int(b, ",\"vcpus\":", r->n_any);
        return;
    }
    tb_lit(b, ",\"vcpus\":{");
    if (r->n_any) {
        tb_member_int(b, "\"any\":", r->n_any);
        tb_put(b, ",", 1);
    }
    tb_member_int(b, "\"efficiency\":", r->n_efficiency);
    tb_member_int(b, ",\"performance\":", r->n_performance);
    tb_put(b, "}", 1);
}

/* An optional id: empty means "not set" and the member is left out (as
 * ks_vm_request_to_json does).  `key` is the member's text up to its value. */
static void tb_req_id(text_buf *b, const char *key, const char *id, size_t cap)
{
    if (!id[0])
        return;
    tb_lit(b, key);
    tb_str(b, id, cap);
}

/* Keys in byte order, as JSON_SORT_KEYS writes them.  "forbidden_features"
 * is always present and follows the only optional key before it, so every
 * member after the first starts with its comma. */
static void tb_request(text_buf *b, const ks_vm_request *r)
{
    tb_put(b, "{", 1);
    if (r->anti_affinity_group[0]) {
        tb_lit(b, "\"anti_affinity_group\":");
        tb_str(b, r->anti_affinity_group, sizeof(r->anti_affinity_group));
        tb_put(b, ",", 1);
    }
    tb_lit(b, "\"forbidden_features\":");
    tb_req_featset(b, &r->forbidden);
    tb_req_id(b, ",\"host\":", r->host, sizeof(r->host));
    tb_member_int(b, ",\"memory_mib\":", clamp_u64(r->memory_mib));
    tb_member_int(b, ",\"min_mhz\":", r->min_mhz);
    tb_lit(b, ",\"name\":");
    tb_str(b, r->name, sizeof(r->name));
    tb_lit(b, ",\"numa\":");
    tb_str(b, ks_numa_mode_to_str((ks_numa_mode)r->numa), KS_NAME_MAX);
    tb_lit(b, ",\"placement\":");
    tb_str(b, ks_placement_mode_to_str((ks_placement_mode)r->placement), KS_NAME_MAX);
    tb_lit(b, ",\"pmu\":{\"allow_events\":");
    tb_names(b, (const char(*)[KS_NAME_MAX])r->pmu.allow_events,
             r->pmu.allow_events ? r->pmu.n_allow : 0);
    tb_lit(b, ",\"deny_events\":");
    tb_names(b, (const char(*)[KS_NAME_MAX])r->pmu.deny_events,
             r->pmu.deny_events ? r->pmu.n_deny : 0);
    tb_lit(b, r->pmu.enabled ? ",\"enabled\":true}" : ",\"enabled\":false}");
    tb_req_id(b, ",\"pool\":", r->pool, sizeof(r->pool));
    tb_lit(b, ",\"required_features\":");
    tb_req_featset(b, &r->required);
    tb_lit(b, ",\"smt\":");
    tb_str(b, ks_smt_mode_to_str((ks_smt_mode)r->smt), KS_NAME_MAX);
    tb_req_vcpus(b, r);
    tb_put(b, "}", 1);
}

char *ks_vm_request_to_text(const ks_vm_request *r)
{
    if (!r)
        return NULL;
    text_buf b = {0};
    tb_request(&b, r);
    char *text = tb_take(&b);
    return text ? text : dump_canonical(ks_vm_request_to_json(r));
}
