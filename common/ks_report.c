/*
 * ks_report.c - the host report model (allocation, deep copy, lookup, CPU
 * state derivation) and its JSON codec, schema 1 (docs/report-schema.md).
 *
 * Invariants of a report handed out by the decoder (consumers may index
 * without re-checking):
 *   - cpus[] is sorted by id; ids are unique and in [0, KS_REPORT_MAX_CPUS);
 *   - every array is within its KS_REPORT_MAX_* cap;
 *   - cpus[].kind / l2_group / l3_group are -1 or valid indices (l2_group names
 *     a level-2 cache, l3_group a level-3 one); cache cpus[] are ascending,
 *     unique and name CPUs of the report;
 *   - usable is a subset of native, disjoint from defective, and empty when the
 *     CPU is offline or quarantined; defective is the union of defects[];
 *   - every fixed string buffer is NUL-terminated.
 * No global state: every function is reentrant; a report is not locked and
 * must not be changed while another thread reads it.
 */
#include "ks_report.h"

#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ks_json_util.h"

/* ---- enum tables -------------------------------------------------------- */

static const char *const cpu_state_names[KS_CPU_STATE__COUNT] = {
    [KS_CPU_ONLINE] = "online",
    [KS_CPU_DEGRADED] = "degraded",
    [KS_CPU_OFFLINE] = "offline",
    [KS_CPU_QUARANTINED] = "quarantined",
};

static const char *const kind_class_names[KS_KIND_CLASS__COUNT] = {
    [KS_KIND_PERFORMANCE] = "performance",
    [KS_KIND_EFFICIENCY] = "efficiency",
};

static const char *const defect_source_names[KS_DEFECT_SOURCE__COUNT] = {
    [KS_DEFECT_SELFTEST] = "selftest",
    [KS_DEFECT_IFS] = "ifs",
    [KS_DEFECT_OPERATOR] = "operator",
    [KS_DEFECT_MCE] = "mce",
};

static int table_find(const char *const *table, int n, const char *s)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(table[i], s) == 0)
            return i;
    return -1;
}

const char *ks_cpu_state_to_str(ks_cpu_state s)
{
    return (unsigned)s < KS_CPU_STATE__COUNT ? cpu_state_names[s] : "unknown";
}

int ks_cpu_state_from_str(const char *s)
{
    return table_find(cpu_state_names, KS_CPU_STATE__COUNT, s);
}

const char *ks_kind_class_to_str(ks_kind_class k)
{
    return (unsigned)k < KS_KIND_CLASS__COUNT ? kind_class_names[k] : "unknown";
}

int ks_kind_class_from_str(const char *s)
{
    return table_find(kind_class_names, KS_KIND_CLASS__COUNT, s);
}

const char *ks_defect_source_to_str(ks_defect_source s)
{
    return (unsigned)s < KS_DEFECT_SOURCE__COUNT ? defect_source_names[s] : "unknown";
}

int ks_defect_source_from_str(const char *s)
{
    return table_find(defect_source_names, KS_DEFECT_SOURCE__COUNT, s);
}

static const char *cache_type_to_str(char t)
{
    switch (t) {
    case 'd':
        return "data";
    case 'i':
        return "instruction";
    default:
        return "unified";
    }
}

static int cache_type_from_str(const char *s)
{
    if (strcmp(s, "unified") == 0)
        return 'u';
    if (strcmp(s, "data") == 0)
        return 'd';
    if (strcmp(s, "instruction") == 0)
        return 'i';
    return -1;
}

bool ks_id_valid(const char *s)
{
    if (!s)
        return false;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n >= KS_ID_MAX - 1)
            return false;
    }
    return n > 0 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* ---- model -------------------------------------------------------------- */

ks_code ks_report_new(ks_report **out, ks_err *err)
{
    ks_report *r = calloc(1, sizeof(*r));
    if (!r)
        return ks_err_set(err, KS_ENOMEM, "out of memory allocating a report");
    r->schema = KS_REPORT_SCHEMA;
    *out = r;
    return KS_OK;
}

void ks_report_free(ks_report *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; r->cpus && i < r->n_cpus; i++)
        free(r->cpus[i].defects);
    free(r->cpus);
    for (uint32_t i = 0; r->caches && i < r->n_caches; i++)
        free(r->caches[i].cpus);
    free(r->caches);
    free(r->kinds);
    free(r->numa);
    free(r->pmu.names);
    free(r->pmu.events);
    free(r->vulns);
    free(r->vms);
    free(r);
}

/* malloc+memcpy of n elements of size sz; *out = NULL for n == 0.  false on ENOMEM. */
static bool memdup_n(void **out, const void *src, size_t n, size_t sz)
{
    *out = NULL;
    if (n == 0 || !src)
        return true;
    *out = malloc(n * sz);
    if (!*out)
        return false;
    memcpy(*out, src, n * sz);
    return true;
}

ks_code ks_report_dup(ks_report **out, const ks_report *r, ks_err *err)
{
    ks_report *c = calloc(1, sizeof(*c));
    if (!c)
        return ks_err_set(err, KS_ENOMEM, "out of memory copying a report");
    *c = *r;
    /* Detach every owned pointer first so a failure below frees only copies. */
    c->cpus = NULL;
    c->caches = NULL;
    c->kinds = NULL;
    c->numa = NULL;
    c->pmu.names = NULL;
    c->pmu.events = NULL;
    c->vulns = NULL;
    c->vms = NULL;
    c->n_cpus = c->n_caches = 0;

    bool ok = true;
    if (r->n_cpus) {
        c->cpus = calloc(r->n_cpus, sizeof(*c->cpus));
        ok = c->cpus != NULL;
        for (uint32_t i = 0; ok && i < r->n_cpus; i++) {
            c->cpus[i] = r->cpus[i];
            c->cpus[i].defects = NULL;
            c->n_cpus = i + 1;
            ok = memdup_n((void **)&c->cpus[i].defects, r->cpus[i].defects, r->cpus[i].n_defects,
                          sizeof(ks_defect));
        }
    }
    if (ok && r->n_caches) {
        c->caches = calloc(r->n_caches, sizeof(*c->caches));
        ok = c->caches != NULL;
        for (uint32_t i = 0; ok && i < r->n_caches; i++) {
            c->caches[i] = r->caches[i];
            c->caches[i].cpus = NULL;
            c->n_caches = i + 1;
            ok = memdup_n((void **)&c->caches[i].cpus, r->caches[i].cpus, r->caches[i].n_cpus,
                          sizeof(int32_t));
        }
    }
    ok = ok && memdup_n((void **)&c->kinds, r->kinds, r->n_kinds, sizeof(ks_kind));
    ok = ok && memdup_n((void **)&c->numa, r->numa, r->n_numa, sizeof(ks_numa_node));
    ok = ok && ks_json__names_dup(&c->pmu.names, (const char(*)[KS_NAME_MAX])r->pmu.names,
                                  r->pmu.n_names);
    ok = ok && ks_json__names_dup(&c->pmu.events, (const char(*)[KS_NAME_MAX])r->pmu.events,
                                  r->pmu.n_events);
    ok = ok && memdup_n((void **)&c->vulns, r->vulns, r->n_vulns, sizeof(ks_vuln));
    ok = ok && memdup_n((void **)&c->vms, r->vms, r->n_vms, sizeof(ks_running_vm));
    if (!ok) {
        /* Counts of arrays not reached yet must not make free walk NULL arrays. */
        ks_report_free(c);
        return ks_err_set(err, KS_ENOMEM, "out of memory copying a report");
    }
    *out = c;
    return KS_OK;
}

/*
 * Resizes *arr from *n to new_n elements of size sz, zeroing new ones.
 * The caller has already released what the dropped elements own.
 */
static ks_code resize(void **arr, uint32_t *n, uint32_t new_n, size_t sz, ks_err *err)
{
    if (new_n == 0) {
        free(*arr);
        *arr = NULL;
        *n = 0;
        return KS_OK;
    }
    void *p = realloc(*arr, (size_t)new_n * sz);
    if (!p)
        return ks_err_set(err, KS_ENOMEM, "out of memory resizing to %u entries", new_n);
    if (new_n > *n)
        memset((char *)p + (size_t)*n * sz, 0, (size_t)(new_n - *n) * sz);
    *arr = p;
    *n = new_n;
    return KS_OK;
}

static ks_code over_cap(ks_err *err, const char *what, uint32_t n, uint32_t cap)
{
    return ks_err_set(err, KS_EINVAL, "too many %s (%u, at most %u)", what, n, cap);
}

/*
 * resize() for arrays whose elements own one heap pointer (at `owned_offset`):
 * when shrinking, the dropped elements' pointers are freed only once the resize
 * can no longer fail (a shrinking realloc may still fail).
 */
static ks_code resize_owning(void **arr, uint32_t *n, uint32_t new_n, size_t sz,
                             size_t owned_offset, const char *what, ks_err *err)
{
    uint32_t old = *n;
    void **keep = NULL;
    if (new_n < old) {
        keep = malloc((size_t)(old - new_n) * sizeof(*keep));
        if (!keep)
            return ks_err_set(err, KS_ENOMEM, "out of memory resizing %s", what);
        for (uint32_t i = new_n; i < old; i++)
            memcpy(&keep[i - new_n], (char *)*arr + (size_t)i * sz + owned_offset,
                   sizeof(void *));
    }
    ks_code rc = resize(arr, n, new_n, sz, err);
    if (rc == KS_OK && new_n < old)
        for (uint32_t i = 0; i < old - new_n; i++)
            free(keep[i]);
    free(keep);
    return rc;
}

ks_code ks_report_alloc_cpus(ks_report *r, uint32_t n, ks_err *err)
{
    if (n > KS_REPORT_MAX_CPUS)
        return over_cap(err, "cpus", n, KS_REPORT_MAX_CPUS);
    uint32_t old = r->n_cpus;
    ks_code rc = resize_owning((void **)&r->cpus, &r->n_cpus, n, sizeof(ks_cpu),
                               offsetof(ks_cpu, defects), "cpus", err);
    if (rc != KS_OK)
        return rc;
    for (uint32_t i = old; i < n; i++) {
        ks_cpu *c = &r->cpus[i];
        c->id = -1;
        c->numa_node = -1;
        c->l2_group = -1;
        c->l3_group = -1;
        c->kind = -1;
        c->state = KS_CPU_ONLINE;
    }
    return KS_OK;
}

ks_code ks_report_alloc_caches(ks_report *r, uint32_t n, ks_err *err)
{
    if (n > KS_REPORT_MAX_CACHES)
        return over_cap(err, "caches", n, KS_REPORT_MAX_CACHES);
    uint32_t old = r->n_caches;
    ks_code rc = resize_owning((void **)&r->caches, &r->n_caches, n, sizeof(ks_cache),
                               offsetof(ks_cache, cpus), "caches", err);
    if (rc != KS_OK)
        return rc;
    for (uint32_t i = old; i < n; i++)
        r->caches[i].type = 'u';
    return KS_OK;
}

ks_code ks_report_alloc_kinds(ks_report *r, uint32_t n, ks_err *err)
{
    if (n > KS_REPORT_MAX_KINDS)
        return over_cap(err, "kinds", n, KS_REPORT_MAX_KINDS);
    return resize((void **)&r->kinds, &r->n_kinds, n, sizeof(ks_kind), err);
}

ks_code ks_report_alloc_numa(ks_report *r, uint32_t n, ks_err *err)
{
    if (n > KS_REPORT_MAX_NUMA)
        return over_cap(err, "numa nodes", n, KS_REPORT_MAX_NUMA);
    uint32_t old = r->n_numa;
    ks_code rc = resize((void **)&r->numa, &r->n_numa, n, sizeof(ks_numa_node), err);
    for (uint32_t i = old; rc == KS_OK && i < n; i++)
        r->numa[i].id = -1;
    return rc;
}

ks_code ks_cpu_add_defect(ks_cpu *cpu, const ks_defect *d, ks_err *err)
{
    if (cpu->n_defects >= KS_REPORT_MAX_DEFECTS)
        return ks_err_set(err, KS_EINVAL, "cpu %d has too many defects (at most %d)", cpu->id,
                          KS_REPORT_MAX_DEFECTS);
    ks_defect *p = realloc(cpu->defects, ((size_t)cpu->n_defects + 1) * sizeof(*p));
    if (!p)
        return ks_err_set(err, KS_ENOMEM, "out of memory adding a defect");
    cpu->defects = p;
    p[cpu->n_defects] = *d;
    p[cpu->n_defects].detail[KS_TEXT_MAX - 1] = '\0';
    cpu->n_defects++;
    if (d->feature != KS_FEATURE_NONE)
        ks_featset_set(&cpu->defective, d->feature);
    return KS_OK;
}

ks_cpu *ks_report_find_cpu(const ks_report *r, int32_t id)
{
    if (!r || !r->cpus)
        return NULL;
    size_t lo = 0, hi = r->n_cpus;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int32_t m = r->cpus[mid].id;
        if (m == id)
            return &r->cpus[mid];
        if (m < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Recomputes defective from defects[]; true when a defect names the whole CPU. */
static bool collect_defective(ks_cpu *c)
{
    bool whole = false;
    ks_featset_clear(&c->defective);
    for (uint16_t i = 0; c->defects && i < c->n_defects; i++) {
        if (c->defects[i].feature == KS_FEATURE_NONE)
            whole = true;
        else
            ks_featset_set(&c->defective, c->defects[i].feature);
    }
    return whole;
}

static void derive_cpu(ks_cpu *c, const ks_featset *base)
{
    bool whole = collect_defective(c);
    if (c->state == KS_CPU_OFFLINE) {
        ks_featset_clear(&c->usable);
        return;
    }
    if (whole || ks_featset_intersects(&c->defective, base)) {
        c->state = KS_CPU_QUARANTINED;
        ks_featset_clear(&c->usable);
        return;
    }
    ks_featset lost;
    ks_feature_dependents_closure(&lost, &c->defective);
    ks_featset_andnot(&c->usable, &c->native, &lost);
    c->state = c->n_defects > 0 ? KS_CPU_DEGRADED : KS_CPU_ONLINE;
}

void ks_report_derive_state(ks_report *r)
{
    if (!r)
        return;
    ks_featset base;
    ks_feature_base_isa((ks_arch)r->host.arch, &base);
    for (uint32_t i = 0; r->cpus && i < r->n_cpus; i++)
        derive_cpu(&r->cpus[i], &base);
}

/* ---- feature sets <-> JSON ------------------------------------------------ */

json_t *ks_featset_to_json(const ks_featset *s)
{
    json_t *arr = json_array();
    bool bad = arr == NULL;
    for (int b = ks_featset_next(s, 0); !bad && b >= 0; b = ks_featset_next(s, (unsigned)b + 1))
        bad |= ks_json__append(arr, json_string(ks_feature_name((unsigned)b)));
    if (bad) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

ks_code ks_featset_from_json(ks_featset *out, const json_t *arr, const char *path, ks_err *err)
{
    if (!json_is_array(arr))
        return ks_json__type_error(arr, path, "array of feature names", err);
    ks_featset s;
    ks_featset_clear(&s);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *v = json_array_get(arr, i);
        /* Hot path (every plan and report in the store at start-up): the
         * string is looked up in place, the path formatted only on error. */
        if (json_is_string(v) && json_string_length(v) < KS_NAME_MAX &&
            strlen(json_string_value(v)) == json_string_length(v) &&
            ks_feature_add_name(&s, json_string_value(v), NULL) == KS_OK)
            continue;
        char p[KS_JSON_PATH_MAX];
        ks_json__path_idx(p, sizeof(p), path, i);
        if (!json_is_string(v))
            return ks_json__type_error(v, p, "feature name string", err);
        return ks_err_set_field(err, KS_EINVAL, p, "unknown feature '%.64s'",
                                json_string_value(v));
    }
    *out = s;
    return KS_OK;
}

/* ---- encoder ------------------------------------------------------------ */

/*
 * The report-level feature-set table: distinct sets in order of first use,
 * found again through an open-addressing hash on ks_featset_hash().
 */
typedef struct set_table {
    ks_featset *sets;
    uint32_t n, cap;
    uint32_t *slots; /* index + 1, 0 = empty */
    uint64_t *hashes;
    uint32_t mask;
} set_table;

static bool set_table_init(set_table *t, uint32_t max_sets)
{
    memset(t, 0, sizeof(*t));
    uint32_t n_slots = 16;
    while (n_slots < 2 * max_sets)
        n_slots *= 2;
    t->cap = max_sets ? max_sets : 1;
    t->sets = malloc((size_t)t->cap * sizeof(*t->sets));
    t->slots = calloc(n_slots, sizeof(*t->slots));
    t->hashes = calloc(n_slots, sizeof(*t->hashes));
    t->mask = n_slots - 1;
    return t->sets && t->slots && t->hashes;
}

static void set_table_destroy(set_table *t)
{
    free(t->sets);
    free(t->slots);
    free(t->hashes);
}

/* Index of s in the table, inserting it when new (the table never fills: 2x slots). */
static uint32_t set_table_intern(set_table *t, const ks_featset *s)
{
    uint64_t h = ks_featset_hash(s);
    for (uint32_t pos = (uint32_t)h & t->mask;; pos = (pos + 1) & t->mask) {
        uint32_t slot = t->slots[pos];
        if (slot == 0) {
            t->sets[t->n] = *s;
            t->slots[pos] = ++t->n;
            t->hashes[pos] = h;
            return t->n - 1;
        }
        if (t->hashes[pos] == h && ks_featset_equal(&t->sets[slot - 1], s))
            return slot - 1;
    }
}

#define STR(buf) ks_json__string((buf), sizeof(buf))

static json_t *host_to_json(const ks_host_info *h)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool bad = false;
    bad |= ks_json__set(o, "id", STR(h->id));
    bad |= ks_json__set(o, "hostname", STR(h->hostname));
    bad |= ks_json__set(o, "arch", json_string(ks_arch_to_str((ks_arch)h->arch)));
    bad |= ks_json__set(o, "vendor", STR(h->vendor));
    bad |= ks_json__set(o, "model_name", STR(h->model_name));
    bad |= ks_json__set(o, "family", json_integer(h->family));
    bad |= ks_json__set(o, "model", json_integer(h->model));
    bad |= ks_json__set(o, "stepping", json_integer(h->stepping));
    bad |= ks_json__set(o, "microcode", STR(h->microcode));
    bad |= ks_json__set(o, "kernel", STR(h->kernel));
    bad |= ks_json__set(o, "agent_version", STR(h->agent_version));
    bad |= ks_json__set(o, "boot_id", STR(h->boot_id));
    bad |= ks_json__set(o, "generation", ks_json__uint(h->generation));
    bad |= ks_json__set(o, "memory_mib", ks_json__uint(h->memory_mib));
    bad |= ks_json__set(o, "source", STR(h->source));
    bad |= ks_json__set(o, "agent_url", STR(h->agent_url));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *defect_to_json(const ks_defect *d)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool bad = false;
    bad |= ks_json__set(o, "feature", d->feature == KS_FEATURE_NONE
                                          ? json_null()
                                          : json_string(ks_feature_name(d->feature)));
    bad |= ks_json__set(o, "source", json_string(ks_defect_source_to_str(d->source)));
    bad |= ks_json__set(o, "time_us", ks_json__uint(d->time_us));
    bad |= ks_json__set(o, "detail", STR(d->detail));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *cpu_to_json(const ks_cpu *c, set_table *sets)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool bad = false;
    bad |= ks_json__set(o, "id", json_integer(c->id));
    bad |= ks_json__set(o, "package", json_integer(c->package));
    bad |= ks_json__set(o, "die", json_integer(c->die));
    bad |= ks_json__set(o, "cluster", json_integer(c->cluster));
    bad |= ks_json__set(o, "core", json_integer(c->core));
    bad |= ks_json__set(o, "thread", json_integer(c->thread));
    bad |= ks_json__set(o, "numa_node", json_integer(c->numa_node));
    bad |= ks_json__set(o, "l2", json_integer(c->l2_group));
    bad |= ks_json__set(o, "l3", json_integer(c->l3_group));
    bad |= ks_json__set(o, "kind", json_integer(c->kind));
    bad |= ks_json__set(o, "base_mhz", json_integer(c->base_mhz));
    bad |= ks_json__set(o, "max_mhz", json_integer(c->max_mhz));
    bad |= ks_json__set(o, "native", json_integer(set_table_intern(sets, &c->native)));
    bad |= ks_json__set(o, "usable", json_integer(set_table_intern(sets, &c->usable)));
    json_t *defects = json_array();
    for (uint16_t i = 0; defects && !bad && c->defects && i < c->n_defects; i++)
        bad |= ks_json__append(defects, defect_to_json(&c->defects[i]));
    bad |= ks_json__set(o, "defects", defects);
    bad |= ks_json__set(o, "state", json_string(ks_cpu_state_to_str((ks_cpu_state)c->state)));
    bad |= ks_json__set(o, "reserved", json_boolean(c->reserved));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *cache_to_json(const ks_cache *c)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool bad = false;
    bad |= ks_json__set(o, "level", json_integer(c->level));
    bad |= ks_json__set(o, "type", json_string(cache_type_to_str(c->type)));
    bad |= ks_json__set(o, "size_bytes", ks_json__uint(c->size_bytes));
    bad |= ks_json__set(o, "line_bytes", json_integer(c->line_bytes));
    json_t *cpus = json_array();
    for (uint32_t i = 0; cpus && !bad && c->cpus && i < c->n_cpus; i++)
        bad |= ks_json__append(cpus, json_integer(c->cpus[i]));
    bad |= ks_json__set(o, "cpus", cpus);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *kind_to_json(const ks_kind *k)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool bad = false;
    bad |= ks_json__set(o, "name", STR(k->name));
    bad |= ks_json__set(o, "efficiency_rank", json_integer(k->efficiency_rank));
    bad |= ks_json__set(o, "class",
                        json_string(ks_kind_class_to_str((ks_kind_class)k->kind_class)));
    bad |= ks_json__set(o, "max_mhz", json_integer(k->max_mhz));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *pmu_to_json(const ks_pmu_info *p)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool bad = false;
    bad |= ks_json__set(o, "version", json_integer(p->version));
    bad |= ks_json__set(o, "gp_counters", json_integer(p->gp_counters));
    bad |= ks_json__set(o, "gp_width", json_integer(p->gp_width));
    bad |= ks_json__set(o, "fixed_counters", json_integer(p->fixed_counters));
    bad |= ks_json__set(o, "fixed_width", json_integer(p->fixed_width));
    bad |= ks_json__set(o, "names", ks_json__names_to_json((const char(*)[KS_NAME_MAX])p->names,
                                                           p->names ? p->n_names : 0));
    bad |= ks_json__set(o, "events", ks_json__names_to_json((const char(*)[KS_NAME_MAX])p->events,
                                                            p->events ? p->n_events : 0));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *ks_report_to_json(const ks_report *r)
{
    set_table sets;
    json_t *o = NULL;
    bool bad = !set_table_init(&sets, 2 * r->n_cpus);
    if (bad)
        goto done;
    o = json_object();
    bad = o == NULL;
    if (bad)
        goto done;
    bad |= ks_json__set(o, "schema", json_integer(KS_REPORT_SCHEMA));
    bad |= ks_json__set(o, "host", host_to_json(&r->host));

    json_t *topo = json_object();
    if (topo) {
        bad |= ks_json__set(topo, "packages", json_integer(r->n_packages));
        bad |= ks_json__set(topo, "dies", json_integer(r->n_dies));
        bad |= ks_json__set(topo, "clusters", json_integer(r->n_clusters));
        bad |= ks_json__set(topo, "cores", json_integer(r->n_cores));
    }
    bad |= ks_json__set(o, "topology", topo);

    /* CPUs first: they fill the feature-set table that is emitted before them. */
    json_t *cpus = json_array();
    for (uint32_t i = 0; cpus && !bad && r->cpus && i < r->n_cpus; i++)
        bad |= ks_json__append(cpus, cpu_to_json(&r->cpus[i], &sets));
    json_t *fsets = json_array();
    for (uint32_t i = 0; fsets && !bad && i < sets.n; i++)
        bad |= ks_json__append(fsets, ks_featset_to_json(&sets.sets[i]));
    bad |= ks_json__set(o, "feature_sets", fsets);

    json_t *kinds = json_array();
    for (uint32_t i = 0; kinds && !bad && r->kinds && i < r->n_kinds; i++)
        bad |= ks_json__append(kinds, kind_to_json(&r->kinds[i]));
    bad |= ks_json__set(o, "kinds", kinds);

    json_t *caches = json_array();
    for (uint32_t i = 0; caches && !bad && r->caches && i < r->n_caches; i++)
        bad |= ks_json__append(caches, cache_to_json(&r->caches[i]));
    bad |= ks_json__set(o, "caches", caches);

    json_t *numa = json_array();
    for (uint32_t i = 0; numa && !bad && r->numa && i < r->n_numa; i++) {
        json_t *n = json_object();
        if (n) {
            bad |= ks_json__set(n, "id", json_integer(r->numa[i].id));
            bad |= ks_json__set(n, "memory_mib", ks_json__uint(r->numa[i].memory_mib));
        }
        bad |= ks_json__append(numa, n);
    }
    bad |= ks_json__set(o, "numa", numa);
    bad |= ks_json__set(o, "cpus", cpus);
    bad |= ks_json__set(o, "pmu", pmu_to_json(&r->pmu));

    json_t *vulns = json_array();
    for (uint32_t i = 0; vulns && !bad && r->vulns && i < r->n_vulns; i++) {
        json_t *v = json_object();
        if (v) {
            bad |= ks_json__set(v, "name", STR(r->vulns[i].name));
            bad |= ks_json__set(v, "status", STR(r->vulns[i].status));
        }
        bad |= ks_json__append(vulns, v);
    }
    bad |= ks_json__set(o, "vulnerabilities", vulns);

    json_t *vms = json_array();
    for (uint32_t i = 0; vms && !bad && r->vms && i < r->n_vms; i++) {
        json_t *v = json_object();
        if (v) {
            bad |= ks_json__set(v, "name", STR(r->vms[i].name));
            bad |= ks_json__set(v, "generation", ks_json__uint(r->vms[i].generation));
        }
        bad |= ks_json__append(vms, v);
    }
    bad |= ks_json__set(o, "vms", vms);
done:
    set_table_destroy(&sets);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- decoder ------------------------------------------------------------ */

#define PATH(buf, parent, key) ks_json__path_key((buf), sizeof(buf), (parent), (key))
#define IDX(buf, parent, i) ks_json__path_idx((buf), sizeof(buf), (parent), (i))

static const char *const report_keys[] = {
    "schema", "host",     "topology", "feature_sets",    "kinds", "caches",
    "numa",   "cpus",     "pmu",      "vulnerabilities", "vms",   NULL,
};
static const char *const host_keys[] = {
    "id",        "hostname", "arch",          "vendor",  "model_name", "family",
    "model",     "stepping", "microcode",     "kernel",  "agent_version",
    "boot_id",   "generation", "memory_mib",  "source",  "agent_url", NULL,
};
static const char *const topology_keys[] = {"packages", "dies", "clusters", "cores", NULL};
static const char *const kind_keys[] = {"name", "efficiency_rank", "class", "max_mhz", NULL};
static const char *const cache_keys[] = {"level", "type", "size_bytes", "line_bytes", "cpus",
                                         NULL};
static const char *const numa_keys[] = {"id", "memory_mib", NULL};
static const char *const cpu_keys[] = {
    "id",   "package", "die",      "cluster", "core",    "thread", "numa_node",
    "l2",   "l3",      "kind",     "base_mhz", "max_mhz", "native", "usable",
    "defects", "state", "reserved", NULL,
};
static const char *const defect_keys[] = {"feature", "source", "time_us", "detail", NULL};
static const char *const pmu_keys[] = {"version",     "gp_counters", "gp_width", "fixed_counters",
                                       "fixed_width", "names",       "events",   NULL};
static const char *const vuln_keys[] = {"name", "status", NULL};
static const char *const vm_keys[] = {"name", "generation", NULL};

#define KS_MAX_MHZ 1000000u
#define KS_MAX_MEMORY_MIB (UINT64_C(1) << 40)

static ks_code decode_host(ks_host_info *h, const json_t *o, const char *path, ks_err *err)
{
    ks_code rc = ks_json__check_object(o, path, host_keys, err);
    char arch[KS_NAME_MAX] = "";
    char p[KS_JSON_PATH_MAX];
    if (rc == KS_OK)
        rc = ks_json__get_id(o, path, "id", true, h->id, sizeof(h->id), err);
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "arch", true, arch, sizeof(arch), err);
    if (rc == KS_OK) {
        int a = ks_arch_from_str(arch);
        if (a < 0)
            return ks_err_set_field(err, KS_EINVAL, PATH(p, path, "arch"),
                                    "unknown arch '%s' (expected x86_64 or aarch64)", arch);
        h->arch = (uint8_t)a;
    }
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "hostname", false, h->hostname, sizeof(h->hostname), err);
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "vendor", false, h->vendor, sizeof(h->vendor), err);
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "model_name", false, h->model_name, sizeof(h->model_name),
                              err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "family", false, 0, INT32_MAX, &h->family, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "model", false, 0, INT32_MAX, &h->model, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "stepping", false, 0, INT32_MAX, &h->stepping, err);
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "microcode", false, h->microcode, sizeof(h->microcode), err);
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "kernel", false, h->kernel, sizeof(h->kernel), err);
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "agent_version", false, h->agent_version,
                              sizeof(h->agent_version), err);
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "boot_id", false, h->boot_id, sizeof(h->boot_id), err);
    if (rc == KS_OK)
        rc = ks_json__get_u64(o, path, "generation", false, UINT64_MAX, &h->generation, err);
    if (rc == KS_OK)
        rc = ks_json__get_u64(o, path, "memory_mib", false, KS_MAX_MEMORY_MIB, &h->memory_mib,
                              err);
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "source", false, h->source, sizeof(h->source), err);
    if (rc == KS_OK)
        rc = ks_json__get_str(o, path, "agent_url", false, h->agent_url, sizeof(h->agent_url),
                              err);
    return rc;
}

static ks_code decode_topology(ks_report *r, const json_t *o, ks_err *err)
{
    const char *path = "topology";
    ks_code rc = ks_json__check_object(o, path, topology_keys, err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, path, "packages", false, KS_REPORT_MAX_CPUS, &r->n_packages, err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, path, "dies", false, KS_REPORT_MAX_CPUS, &r->n_dies, err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, path, "clusters", false, KS_REPORT_MAX_CPUS, &r->n_clusters, err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, path, "cores", false, KS_REPORT_MAX_CPUS, &r->n_cores, err);
    return rc;
}

static ks_code decode_kinds(ks_report *r, const json_t *arr, ks_err *err)
{
    ks_code rc = ks_report_alloc_kinds(r, (uint32_t)json_array_size(arr), err);
    for (uint32_t i = 0; rc == KS_OK && i < r->n_kinds; i++) {
        char p[KS_JSON_PATH_MAX], q[KS_JSON_PATH_MAX];
        const json_t *o = json_array_get(arr, i);
        ks_kind *k = &r->kinds[i];
        int cls = KS_KIND_PERFORMANCE;
        IDX(p, "kinds", i);
        rc = ks_json__check_object(o, p, kind_keys, err);
        if (rc == KS_OK)
            rc = ks_json__get_str(o, p, "name", true, k->name, sizeof(k->name), err);
        if (rc == KS_OK)
            rc = ks_json__get_i32(o, p, "efficiency_rank", false, INT32_MIN, INT32_MAX,
                                  &k->efficiency_rank, err);
        if (rc == KS_OK)
            rc = ks_json__get_enum(o, p, "class", true, ks_kind_class_from_str,
                                   "performance or efficiency", &cls, err);
        k->kind_class = (uint8_t)cls;
        if (rc == KS_OK)
            rc = ks_json__get_u32(o, p, "max_mhz", false, KS_MAX_MHZ, &k->max_mhz, err);
        if (rc == KS_OK && i > 0 && k->efficiency_rank < r->kinds[i - 1].efficiency_rank)
            rc = ks_err_set_field(err, KS_EINVAL, PATH(q, p, "efficiency_rank"),
                                  "kinds must be in ascending efficiency_rank order (%d after %d)",
                                  k->efficiency_rank, r->kinds[i - 1].efficiency_rank);
    }
    return rc;
}

static ks_code decode_numa(ks_report *r, const json_t *arr, ks_err *err)
{
    ks_code rc = ks_report_alloc_numa(r, (uint32_t)json_array_size(arr), err);
    for (uint32_t i = 0; rc == KS_OK && i < r->n_numa; i++) {
        char p[KS_JSON_PATH_MAX], q[KS_JSON_PATH_MAX];
        const json_t *o = json_array_get(arr, i);
        IDX(p, "numa", i);
        rc = ks_json__check_object(o, p, numa_keys, err);
        if (rc == KS_OK)
            rc = ks_json__get_i32(o, p, "id", true, 0, KS_REPORT_MAX_NUMA - 1, &r->numa[i].id, err);
        if (rc == KS_OK)
            rc = ks_json__get_u64(o, p, "memory_mib", false, KS_MAX_MEMORY_MIB,
                                  &r->numa[i].memory_mib, err);
        for (uint32_t j = 0; rc == KS_OK && j < i; j++)
            if (r->numa[j].id == r->numa[i].id)
                rc = ks_err_set_field(err, KS_EINVAL, PATH(q, p, "id"), "duplicate numa node id %d",
                                      r->numa[i].id);
    }
    return rc;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static ks_code decode_caches(ks_report *r, const json_t *arr, ks_err *err)
{
    ks_code rc = ks_report_alloc_caches(r, (uint32_t)json_array_size(arr), err);
    for (uint32_t i = 0; rc == KS_OK && i < r->n_caches; i++) {
        char p[KS_JSON_PATH_MAX], q[KS_JSON_PATH_MAX], e[KS_JSON_PATH_MAX];
        const json_t *o = json_array_get(arr, i);
        ks_cache *c = &r->caches[i];
        int32_t level = 0;
        int type = 'u';
        const json_t *cpus = NULL;
        IDX(p, "caches", i);
        rc = ks_json__check_object(o, p, cache_keys, err);
        if (rc == KS_OK)
            rc = ks_json__get_i32(o, p, "level", true, 1, 4, &level, err);
        c->level = (uint8_t)level;
        if (rc == KS_OK)
            rc = ks_json__get_enum(o, p, "type", false, cache_type_from_str,
                                   "unified, data or instruction", &type, err);
        c->type = (char)type;
        if (rc == KS_OK)
            rc = ks_json__get_u64(o, p, "size_bytes", false, (uint64_t)INT64_MAX, &c->size_bytes,
                                  err);
        if (rc == KS_OK)
            rc = ks_json__get_u32(o, p, "line_bytes", false, 1u << 20, &c->line_bytes, err);
        if (rc == KS_OK)
            rc = ks_json__get_array(o, p, "cpus", true, KS_REPORT_MAX_CPUS, &cpus, err);
        if (rc != KS_OK)
            break;
        PATH(q, p, "cpus");
        size_t n = json_array_size(cpus);
        if (n > 0) {
            c->cpus = malloc(n * sizeof(*c->cpus));
            if (!c->cpus)
                return ks_err_set_field(err, KS_ENOMEM, q, "out of memory");
        }
        c->n_cpus = (uint32_t)n;
        for (size_t j = 0; rc == KS_OK && j < n; j++) {
            int64_t id = 0;
            rc = ks_json__int_value(json_array_get(cpus, j), IDX(e, q, j), 0,
                                    KS_REPORT_MAX_CPUS - 1, &id, err);
            c->cpus[j] = (int32_t)id;
        }
        if (rc == KS_OK && n > 1) {
            qsort(c->cpus, n, sizeof(*c->cpus), cmp_i32);
            for (size_t j = 1; j < n; j++)
                if (c->cpus[j] == c->cpus[j - 1])
                    return ks_err_set_field(err, KS_EINVAL, q, "cpu %d listed twice", c->cpus[j]);
        }
    }
    return rc;
}

/* A CPU's native/usable: an index into feature_sets or an inline array of names. */
static ks_code decode_set_ref(ks_featset *out, const json_t *v, const char *path,
                              const ks_featset *sets, size_t n_sets, ks_err *err)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || (uint64_t)i >= n_sets)
            return ks_err_set_field(err, KS_EINVAL, path,
                                    "feature set index %lld out of range (feature_sets has %zu)",
                                    (long long)i, n_sets);
        *out = sets[i];
        return KS_OK;
    }
    if (json_is_array(v))
        return ks_featset_from_json(out, v, path, err);
    return ks_json__type_error(v, path, "feature set index or array of feature names", err);
}

/* First feature in a but not in b (a must not be a subset of b). */
static const char *first_extra(const ks_featset *a, const ks_featset *b)
{
    ks_featset d;
    ks_featset_andnot(&d, a, b);
    int bit = ks_featset_next(&d, 0);
    return bit >= 0 ? ks_feature_name((unsigned)bit) : "?";
}

static ks_code decode_defects(ks_cpu *c, const json_t *arr, const char *path, ks_err *err)
{
    ks_code rc = KS_OK;
    size_t n = json_array_size(arr);
    if (n > 0) {
        c->defects = calloc(n, sizeof(*c->defects));
        if (!c->defects)
            return ks_err_set_field(err, KS_ENOMEM, path, "out of memory");
    }
    c->n_defects = (uint16_t)n;
    for (size_t i = 0; rc == KS_OK && i < n; i++) {
        char p[KS_JSON_PATH_MAX], q[KS_JSON_PATH_MAX];
        const json_t *o = json_array_get(arr, i);
        ks_defect *d = &c->defects[i];
        int src = 0;
        IDX(p, path, i);
        rc = ks_json__check_object(o, p, defect_keys, err);
        if (rc != KS_OK)
            break;
        const json_t *f = json_object_get(o, "feature");
        PATH(q, p, "feature");
        if (!f) {
            rc = ks_err_set_field(err, KS_EINVAL, q,
                                  "missing required key 'feature' (null for the whole cpu)");
        } else if (json_is_null(f)) {
            d->feature = KS_FEATURE_NONE;
        } else if (json_is_string(f)) {
            char name[KS_NAME_MAX];
            unsigned id = 0;
            if (ks_json__str_value(f, q, name, sizeof(name), NULL) != KS_OK ||
                ks_feature_lookup(name, &id, NULL) != KS_OK || id >= KS_FEATSET_BITS)
                rc = ks_err_set_field(err, KS_EINVAL, q, "unknown feature '%.64s'",
                                      json_string_value(f));
            d->feature = (uint16_t)id;
        } else {
            rc = ks_json__type_error(f, q, "feature name or null", err);
        }
        if (rc == KS_OK)
            rc = ks_json__get_enum(o, p, "source", true, ks_defect_source_from_str,
                                   "selftest, ifs, operator or mce", &src, err);
        d->source = (uint8_t)src;
        if (rc == KS_OK)
            rc = ks_json__get_u64(o, p, "time_us", false, (uint64_t)INT64_MAX, &d->time_us, err);
        if (rc == KS_OK)
            rc = ks_json__get_str(o, p, "detail", false, d->detail, sizeof(d->detail), err);
    }
    return rc;
}

/* An index into a report array of n entries, or -1 for none. */
static ks_code get_index(const json_t *o, const char *p, const char *key, uint32_t n,
                         const char *array, int32_t *out, ks_err *err)
{
    int32_t x = -1;
    ks_code rc = ks_json__get_i32(o, p, key, false, -1, INT32_MAX, &x, err);
    if (rc != KS_OK)
        return rc;
    if (x >= 0 && (uint32_t)x >= n) {
        char q[KS_JSON_PATH_MAX];
        return ks_err_set_field(err, KS_EINVAL, PATH(q, p, key),
                                "%s index %d out of range (%s has %u)", key, x, array, n);
    }
    *out = x;
    return KS_OK;
}

static ks_code decode_cpu(ks_report *r, ks_cpu *c, const json_t *o, const char *p,
                          const ks_featset *sets, size_t n_sets, const ks_featset *arch_all,
                          const ks_featset *base, ks_err *err)
{
    char q[KS_JSON_PATH_MAX];
    const json_t *defects = NULL;
    int state = -1;
    ks_code rc = ks_json__check_object(o, p, cpu_keys, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, p, "id", true, 0, KS_REPORT_MAX_CPUS - 1, &c->id, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, p, "package", false, 0, INT32_MAX, &c->package, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, p, "die", false, 0, INT32_MAX, &c->die, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, p, "cluster", false, 0, INT32_MAX, &c->cluster, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, p, "core", false, 0, INT32_MAX, &c->core, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, p, "thread", false, 0, 255, &c->thread, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, p, "numa_node", false, -1, KS_REPORT_MAX_NUMA - 1, &c->numa_node,
                              err);
    if (rc == KS_OK && c->numa_node >= 0 && r->n_numa > 0) {
        bool found = false;
        for (uint32_t i = 0; i < r->n_numa && !found; i++)
            found = r->numa[i].id == c->numa_node;
        if (!found)
            rc = ks_err_set_field(err, KS_EINVAL, PATH(q, p, "numa_node"),
                                  "unknown numa node %d", c->numa_node);
    }
    if (rc == KS_OK)
        rc = get_index(o, p, "kind", r->n_kinds, "kinds", &c->kind, err);
    if (rc == KS_OK)
        rc = get_index(o, p, "l2", r->n_caches, "caches", &c->l2_group, err);
    if (rc == KS_OK)
        rc = get_index(o, p, "l3", r->n_caches, "caches", &c->l3_group, err);
    if (rc == KS_OK && c->l2_group >= 0 && r->caches[c->l2_group].level != 2)
        rc = ks_err_set_field(err, KS_EINVAL, PATH(q, p, "l2"), "cache %d is level %d, not 2",
                              c->l2_group, r->caches[c->l2_group].level);
    if (rc == KS_OK && c->l3_group >= 0 && r->caches[c->l3_group].level != 3)
        rc = ks_err_set_field(err, KS_EINVAL, PATH(q, p, "l3"), "cache %d is level %d, not 3",
                              c->l3_group, r->caches[c->l3_group].level);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, p, "base_mhz", false, KS_MAX_MHZ, &c->base_mhz, err);
    if (rc == KS_OK)
        rc = ks_json__get_u32(o, p, "max_mhz", false, KS_MAX_MHZ, &c->max_mhz, err);
    if (rc == KS_OK)
        rc = ks_json__get_bool(o, p, "reserved", false, &c->reserved, err);
    if (rc != KS_OK)
        return rc;

    const json_t *nat = json_object_get(o, "native");
    if (!nat)
        return ks_err_set_field(err, KS_EINVAL, PATH(q, p, "native"),
                                "missing required key 'native'");
    rc = decode_set_ref(&c->native, nat, PATH(q, p, "native"), sets, n_sets, err);
    if (rc != KS_OK)
        return rc;
    if (!ks_featset_subset(&c->native, arch_all))
        return ks_err_set_field(err, KS_EINVAL, q, "feature '%s' is not a %s feature",
                                first_extra(&c->native, arch_all),
                                ks_arch_to_str((ks_arch)r->host.arch));

    rc = ks_json__get_array(o, p, "defects", false, KS_REPORT_MAX_DEFECTS, &defects, err);
    if (rc == KS_OK && defects)
        rc = decode_defects(c, defects, PATH(q, p, "defects"), err);
    if (rc == KS_OK)
        rc = ks_json__get_enum(o, p, "state", false, ks_cpu_state_from_str,
                               "online, degraded, offline or quarantined", &state, err);
    if (rc != KS_OK)
        return rc;

    /* Omitted state/usable are derived (see docs/report-schema.md); given ones
     * are kept as sent and only checked for consistency. */
    ks_featset sent_usable;
    const json_t *us = json_object_get(o, "usable");
    if (us) {
        rc = decode_set_ref(&sent_usable, us, PATH(q, p, "usable"), sets, n_sets, err);
        if (rc != KS_OK)
            return rc;
    }
    c->state = state >= 0 ? (uint8_t)state : KS_CPU_ONLINE;
    derive_cpu(c, base);
    if (state >= 0) {
        c->state = (uint8_t)state;
        if (state == KS_CPU_OFFLINE || state == KS_CPU_QUARANTINED)
            ks_featset_clear(&c->usable);
    }
    if (!us)
        return KS_OK;
    PATH(q, p, "usable");
    if (!ks_featset_subset(&sent_usable, &c->native))
        return ks_err_set_field(err, KS_EINVAL, q,
                                "usable is not a subset of native ('%s' is not native)",
                                first_extra(&sent_usable, &c->native));
    if (ks_featset_intersects(&sent_usable, &c->defective)) {
        ks_featset both;
        ks_featset_and(&both, &sent_usable, &c->defective);
        return ks_err_set_field(err, KS_EINVAL, q, "usable contains defective feature '%s'",
                                ks_feature_name((unsigned)ks_featset_next(&both, 0)));
    }
    if ((c->state == KS_CPU_OFFLINE || c->state == KS_CPU_QUARANTINED) &&
        !ks_featset_empty(&sent_usable))
        return ks_err_set_field(err, KS_EINVAL, q, "usable must be empty when state is '%s'",
                                ks_cpu_state_to_str((ks_cpu_state)c->state));
    c->usable = sent_usable;
    return KS_OK;
}

static int cmp_cpu(const void *a, const void *b)
{
    return cmp_i32(&((const ks_cpu *)a)->id, &((const ks_cpu *)b)->id);
}

static ks_code decode_cpus(ks_report *r, const json_t *arr, const ks_featset *sets, size_t n_sets,
                           ks_err *err)
{
    size_t n = json_array_size(arr);
    uint8_t seen[KS_REPORT_MAX_CPUS / 8];
    ks_featset arch_all, base;
    ks_feature_all_of_arch((ks_arch)r->host.arch, &arch_all);
    ks_feature_base_isa((ks_arch)r->host.arch, &base);
    memset(seen, 0, sizeof(seen));
    ks_code rc = ks_report_alloc_cpus(r, (uint32_t)n, err);
    for (size_t i = 0; rc == KS_OK && i < n; i++) {
        char p[KS_JSON_PATH_MAX], q[KS_JSON_PATH_MAX];
        ks_cpu *c = &r->cpus[i];
        IDX(p, "cpus", i);
        rc = decode_cpu(r, c, json_array_get(arr, i), p, sets, n_sets, &arch_all, &base, err);
        if (rc != KS_OK)
            break;
        if (seen[c->id / 8] & (1u << (c->id % 8)))
            return ks_err_set_field(err, KS_EINVAL, PATH(q, p, "id"), "duplicate cpu id %d",
                                    c->id);
        seen[c->id / 8] |= (uint8_t)(1u << (c->id % 8));
    }
    if (rc == KS_OK && n > 1)
        qsort(r->cpus, n, sizeof(*r->cpus), cmp_cpu);
    return rc;
}

static ks_code decode_pmu(ks_pmu_info *pmu, const json_t *o, ks_err *err)
{
    const char *path = "pmu";
    char q[KS_JSON_PATH_MAX];
    const json_t *names = NULL, *events = NULL;
    ks_code rc = ks_json__check_object(o, path, pmu_keys, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "version", false, 0, 255, &pmu->version, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "gp_counters", false, 0, 255, &pmu->gp_counters, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "gp_width", false, 0, 255, &pmu->gp_width, err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "fixed_counters", false, 0, 255, &pmu->fixed_counters,
                              err);
    if (rc == KS_OK)
        rc = ks_json__get_i32(o, path, "fixed_width", false, 0, 255, &pmu->fixed_width, err);
    if (rc == KS_OK)
        rc = ks_json__get_array(o, path, "names", false, KS_REPORT_MAX_PMU_NAMES, &names, err);
    if (rc == KS_OK && names)
        rc = ks_json__names_from_json(&pmu->names, &pmu->n_names, names, PATH(q, path, "names"),
                                      KS_REPORT_MAX_PMU_NAMES, err);
    if (rc == KS_OK)
        rc = ks_json__get_array(o, path, "events", false, KS_REPORT_MAX_PMU_EVENTS, &events, err);
    if (rc == KS_OK && events)
        rc = ks_json__names_from_json(&pmu->events, &pmu->n_events, events,
                                      PATH(q, path, "events"), KS_REPORT_MAX_PMU_EVENTS, err);
    return rc;
}

static ks_code decode_vulns(ks_report *r, const json_t *arr, ks_err *err)
{
    size_t n = json_array_size(arr);
    if (n > 0) {
        r->vulns = calloc(n, sizeof(*r->vulns));
        if (!r->vulns)
            return ks_err_set_field(err, KS_ENOMEM, "vulnerabilities", "out of memory");
    }
    r->n_vulns = (uint32_t)n;
    ks_code rc = KS_OK;
    for (size_t i = 0; rc == KS_OK && i < n; i++) {
        char p[KS_JSON_PATH_MAX];
        const json_t *o = json_array_get(arr, i);
        IDX(p, "vulnerabilities", i);
        rc = ks_json__check_object(o, p, vuln_keys, err);
        if (rc == KS_OK)
            rc = ks_json__get_str(o, p, "name", true, r->vulns[i].name, sizeof(r->vulns[i].name),
                                  err);
        if (rc == KS_OK)
            rc = ks_json__get_str(o, p, "status", false, r->vulns[i].status,
                                  sizeof(r->vulns[i].status), err);
    }
    return rc;
}

static ks_code decode_vms(ks_report *r, const json_t *arr, ks_err *err)
{
    size_t n = json_array_size(arr);
    if (n > 0) {
        r->vms = calloc(n, sizeof(*r->vms));
        if (!r->vms)
            return ks_err_set_field(err, KS_ENOMEM, "vms", "out of memory");
    }
    r->n_vms = (uint32_t)n;
    ks_code rc = KS_OK;
    for (size_t i = 0; rc == KS_OK && i < n; i++) {
        char p[KS_JSON_PATH_MAX];
        const json_t *o = json_array_get(arr, i);
        IDX(p, "vms", i);
        rc = ks_json__check_object(o, p, vm_keys, err);
        if (rc == KS_OK)
            rc = ks_json__get_id(o, p, "name", true, r->vms[i].name, sizeof(r->vms[i].name), err);
        if (rc == KS_OK)
            rc = ks_json__get_u64(o, p, "generation", false, UINT64_MAX, &r->vms[i].generation,
                                  err);
    }
    return rc;
}

/* Cache CPUs must exist; done once the CPUs are decoded and sorted. */
static ks_code check_cache_cpus(const ks_report *r, ks_err *err)
{
    for (uint32_t i = 0; i < r->n_caches; i++) {
        const ks_cache *c = &r->caches[i];
        for (uint32_t j = 0; j < c->n_cpus; j++) {
            if (ks_report_find_cpu(r, c->cpus[j]))
                continue;
            char p[KS_JSON_PATH_MAX], q[KS_JSON_PATH_MAX];
            IDX(p, "caches", i);
            PATH(q, p, "cpus");
            return ks_err_set_field(err, KS_EINVAL, q, "unknown cpu %d", c->cpus[j]);
        }
    }
    return KS_OK;
}

ks_code ks_report_from_json(ks_report **out, const json_t *doc, ks_err *err)
{
    ks_report *r = NULL;
    ks_featset *sets = NULL;
    size_t n_sets = 0;
    const json_t *arr = NULL, *cpus = NULL;
    int64_t schema = 0;
    ks_code rc = ks_json__check_object(doc, "", report_keys, err);
    if (rc != KS_OK) {
        if (!json_is_object(doc))
            ks_err_set_field(err, KS_EINVAL, "", "a report must be a JSON object, got %s",
                             doc ? ks_json__type_name(doc) : "nothing");
        goto done;
    }
    rc = ks_json__get_i64(doc, "", "schema", true, INT64_MIN, INT64_MAX, &schema, err);
    if (rc != KS_OK)
        goto done;
    if (schema != KS_REPORT_SCHEMA) {
        rc = ks_err_set_field(err, KS_EINVAL, "schema", "unsupported schema %lld (expected %d)",
                              (long long)schema, KS_REPORT_SCHEMA);
        goto done;
    }
    rc = ks_report_new(&r, err);
    if (rc != KS_OK)
        goto done;

    const json_t *host = json_object_get(doc, "host");
    if (!host) {
        rc = ks_err_set_field(err, KS_EINVAL, "host", "missing required key 'host'");
        goto done;
    }
    rc = decode_host(&r->host, host, "host", err);
    if (rc != KS_OK)
        goto done;
    const json_t *topo = json_object_get(doc, "topology");
    if (topo && (rc = decode_topology(r, topo, err)) != KS_OK)
        goto done;

    rc = ks_json__get_array(doc, "", "feature_sets", false, KS_REPORT_MAX_FEATURE_SETS, &arr, err);
    if (rc != KS_OK)
        goto done;
    n_sets = json_array_size(arr);
    if (n_sets > 0) {
        sets = malloc(n_sets * sizeof(*sets));
        if (!sets) {
            rc = ks_err_set_field(err, KS_ENOMEM, "feature_sets", "out of memory");
            goto done;
        }
    }
    for (size_t i = 0; i < n_sets; i++) {
        char p[KS_JSON_PATH_MAX];
        rc = ks_featset_from_json(&sets[i], json_array_get(arr, i), IDX(p, "feature_sets", i),
                                  err);
        if (rc != KS_OK)
            goto done;
    }

    /* Sizes of every array are checked against their caps before anything is
     * allocated for them (ks_json__get_array). */
    rc = ks_json__get_array(doc, "", "kinds", false, KS_REPORT_MAX_KINDS, &arr, err);
    if (rc == KS_OK && arr)
        rc = decode_kinds(r, arr, err);
    if (rc == KS_OK)
        rc = ks_json__get_array(doc, "", "numa", false, KS_REPORT_MAX_NUMA, &arr, err);
    if (rc == KS_OK && arr)
        rc = decode_numa(r, arr, err);
    if (rc == KS_OK)
        rc = ks_json__get_array(doc, "", "caches", false, KS_REPORT_MAX_CACHES, &arr, err);
    if (rc == KS_OK && arr)
        rc = decode_caches(r, arr, err);
    if (rc == KS_OK)
        rc = ks_json__get_array(doc, "", "cpus", true, KS_REPORT_MAX_CPUS, &cpus, err);
    if (rc == KS_OK)
        rc = decode_cpus(r, cpus, sets, n_sets, err);
    if (rc == KS_OK)
        rc = check_cache_cpus(r, err);
    const json_t *pmu = json_object_get(doc, "pmu");
    if (rc == KS_OK && pmu)
        rc = decode_pmu(&r->pmu, pmu, err);
    if (rc == KS_OK)
        rc = ks_json__get_array(doc, "", "vulnerabilities", false, KS_REPORT_MAX_VULNS, &arr, err);
    if (rc == KS_OK && arr)
        rc = decode_vulns(r, arr, err);
    if (rc == KS_OK)
        rc = ks_json__get_array(doc, "", "vms", false, KS_REPORT_MAX_VMS, &arr, err);
    if (rc == KS_OK && arr)
        rc = decode_vms(r, arr, err);
    if (rc != KS_OK)
        goto done;
    *out = r;
    r = NULL;
done:
    free(sets);
    ks_report_free(r);
    return rc;
}

ks_code ks_report_parse(ks_report **out, const char *text, size_t len, ks_err *err)
{
    json_error_t jerr;
    if (!text)
        return ks_err_set_field(err, KS_EINVAL, "", "no report text");
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return ks_err_set_field(err, KS_EINVAL, "", "invalid JSON at line %d column %d: %s",
                                jerr.line, jerr.column, jerr.text);
    ks_code rc = ks_report_from_json(out, doc, err);
    json_decref(doc);
    return rc;
}

/* ---- partial decode: everything but the per-CPU arrays ---------------- */

ks_code ks_report_parse_header(ks_report **out, const char *text, size_t len, ks_err *err)
{
    static const char *const wanted[] = {"schema", "host", "kinds", "numa", "pmu", NULL};
    ks_report *r = NULL;
    json_t *doc = NULL;
    int64_t schema = 0;
    ks_code rc = KS_OK;
    if (!text)
        return ks_err_set_field(err, KS_EINVAL, "", "no report text");
    const char *end = text + len, *p = ks_json__skip_ws(text, end);
    if (p >= end || *p != '{')
        return ks_err_set_field(err, KS_EINVAL, "", "a report must be a JSON object");
    doc = json_object();
    if (!doc)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    p = ks_json__skip_ws(p + 1, end);
    while (p < end && *p != '}') {
        const char *k = p;
        const char *ke = *p == '"' ? ks_json__skip_string(p, end) : NULL;
        const char *v = ke ? ks_json__skip_ws(ke, end) : NULL;
        if (!v || v >= end || *v != ':')
            goto bad;
        v = ks_json__skip_ws(v + 1, end);
        const char *ve = ks_json__skip_value(v, end);
        if (!ve)
            goto bad;
        size_t klen = (size_t)(ke - k) - 2;
        if (memchr(k + 1, '\\', klen)) {
            /* an escaped key could spell a wanted one: leave it to the full decoder */
            rc = ks_err_set_field(err, KS_EINVAL, "", "escaped top-level key");
            goto done;
        }
        for (size_t i = 0; wanted[i]; i++) {
            if (strlen(wanted[i]) != klen || memcmp(wanted[i], k + 1, klen) != 0)
                continue;
            json_error_t je;
            json_t *val = json_loadb(v, (size_t)(ve - v), JSON_DECODE_ANY, &je);
            if (!val) {
                rc = ks_err_set_field(err, KS_EINVAL, wanted[i], "invalid JSON: %s", je.text);
                goto done;
            }
            if (json_object_set_new(doc, wanted[i], val) != 0) {
                rc = ks_err_set(err, KS_ENOMEM, "out of memory");
                goto done;
            }
        }
        p = ks_json__skip_ws(ve, end);
        if (p < end && *p == ',')
            p = ks_json__skip_ws(p + 1, end);
        else if (p >= end || *p != '}')
            goto bad;
    }
    if (p >= end)
        goto bad;

    rc = ks_json__get_i64(doc, "", "schema", true, INT64_MIN, INT64_MAX, &schema, err);
    if (rc == KS_OK && schema != KS_REPORT_SCHEMA)
        rc = ks_err_set_field(err, KS_EINVAL, "schema", "unsupported schema %lld (expected %d)",
                              (long long)schema, KS_REPORT_SCHEMA);
    if (rc == KS_OK)
        rc = ks_report_new(&r, err);
    const json_t *o = json_object_get(doc, "host");
    if (rc == KS_OK && !o)
        rc = ks_err_set_field(err, KS_EINVAL, "host", "missing required key 'host'");
    if (rc == KS_OK)
        rc = decode_host(&r->host, o, "host", err);
    const json_t *arr = NULL;
    if (rc == KS_OK)
        rc = ks_json__get_array(doc, "", "kinds", false, KS_REPORT_MAX_KINDS, &arr, err);
    if (rc == KS_OK && arr)
        rc = decode_kinds(r, arr, err);
    if (rc == KS_OK)
        rc = ks_json__get_array(doc, "", "numa", false, KS_REPORT_MAX_NUMA, &arr, err);
    if (rc == KS_OK && arr)
        rc = decode_numa(r, arr, err);
    o = json_object_get(doc, "pmu");
    if (rc == KS_OK && o)
        rc = decode_pmu(&r->pmu, o, err);
    if (rc != KS_OK)
        goto done;
    *out = r;
    r = NULL;
    goto done;
bad:
    rc = ks_err_set_field(err, KS_EINVAL, "", "invalid JSON near byte %zu", (size_t)(p - text));
done:
    json_decref(doc);
    ks_report_free(r);
    return rc;
}
