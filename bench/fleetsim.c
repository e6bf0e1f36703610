/*
 * fleetsim.c - the fleet simulator: fixture templates, per-host descriptors
 * (machine type and drawn defects), reports built on demand, loading a fleet
 * index or a store, the workload trace, and the plan checker.
 *
 * Invariants: templates never change after ks_fleetsim_new(); a host's report
 * is a pure function of (options, host number, policy), so the same host is
 * identical in the Kintsugi fleet and in the offline-degraded baseline fleet
 * except for its degraded CPUs.
 *
 * Defect model (why these weights): published silent-data-corruption studies
 * (Google "Cores that don't count", Meta "Silent Data Corruptions at Scale")
 * find most mercurial cores in wide vector units (AVX-512, AVX2/FMA) and
 * crypto (AES) paths.  A faulty unit is per physical core, so every SMT
 * thread of the core gets the defect.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include "ks_discover.h"
#include "ks_feature.h"
#include "ks_fleetsim.h"
#include "ks_sched.h"
#include "ks_store.h"

/* ---- PRNG and measurement helpers ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

void ks_fleetsim_rng_seed(ks_fleetsim_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    r->s = splitmix64(&x);
    if (r->s == 0)
        r->s = 1;
}

uint64_t ks_fleetsim_rng_next(ks_fleetsim_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * UINT64_C(2685821657736338717);
}

uint32_t ks_fleetsim_rng_below(ks_fleetsim_rng *r, uint32_t n)
{
    return n ? (uint32_t)((ks_fleetsim_rng_next(r) >> 32) * n >> 32) : 0;
}

double ks_fleetsim_rng_unit(ks_fleetsim_rng *r)
{
    return (double)(ks_fleetsim_rng_next(r) >> 11) / 9007199254740992.0;
}

bool ks_fleetsim_parse_u64(uint64_t *out, const char *s, uint64_t min, uint64_t max)
{
    uint64_t v = 0;
    const char *c = s;
    if (!s || !*s)
        return false;
    for (; *c >= '0' && *c <= '9'; c++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*c - '0');
    }
    if (*c || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool ks_fleetsim_parse_double(double *out, const char *s, double min, double max)
{
    char *end = NULL;
    if (!s || !*s)
        return false;
    double v = strtod(s, &end);
    if (*end || !(v >= min && v <= max))
        return false;
    *out = v;
    return true;
}

uint64_t ks_fleetsim_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

size_t ks_fleetsim_rss_bytes(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    unsigned long pages = 0, res = 0;
    if (!fp)
        return 0;
    if (fscanf(fp, "%lu %lu", &pages, &res) != 2)
        res = 0;
    fclose(fp);
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t ks_fleetsim_quantile(uint64_t *v, size_t n, double q)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof(*v), cmp_u64);
    size_t k = (size_t)(q * (double)n);
    return v[k >= n ? n - 1 : k];
}

bool ks_fleetsim_samples_push(ks_fleetsim_samples *s, uint64_t x)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        uint64_t *p = realloc(s->v, nc * sizeof(*p));
        if (!p)
            return false;
        s->v = p;
        s->cap = nc;
    }
    s->v[s->n++] = x;
    return true;
}

void ks_fleetsim_samples_destroy(ks_fleetsim_samples *s)
{
    if (!s)
        return;
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* ---- machine types ---- */

typedef struct machine_def {
    const char *name;
    const char *path; /* relative to the fixtures dir */
    ks_fleetsim_class klass;
    double weight; /* within its class */
} machine_def;

/* Proportions: about 129 logical CPUs per host on average with the default
 * 20/80 hybrid/server mix (10,000 hosts ~ 1.29M CPUs). */
static const machine_def g_machines[] = {
    {"raptorlake-1370p", "hwloc-x86/Intel-RaptorLake-Corei7-1370P.tar.bz2", KS_FLEETSIM_HYBRID,
     0.7},
    {"hybrid-i7-sysfs", "hwloc-linux/20em64t-hybrid-1p6c2t+2ca4co1t.tar.bz2", KS_FLEETSIM_HYBRID,
     0.3},
    {"sapphirerapids-2x9460", "hwloc-x86/Intel-SapphireRapids-2xXeonMax9460.tar.bz2",
     KS_FLEETSIM_SERVER, 0.40},
    {"zen3-2x7763", "hwloc-x86/AMD-19h-Zen3-2xEpyc-7763.tar.bz2", KS_FLEETSIM_SERVER, 0.20},
    {"knightslanding-7210", "hwloc-x86/Intel-KnightsLanding-XeonPhi-7210.tar.bz2",
     KS_FLEETSIM_SERVER, 0.20},
    {"cascadelake-2x6230", "hwloc-x86/Intel-CascadeLake-2xXeon6230.tar.bz2", KS_FLEETSIM_SERVER,
     0.10},
    {"skylake-2x6140", "hwloc-x86/Intel-Skylake-2xXeon6140.tar.bz2", KS_FLEETSIM_SERVER, 0.05},
    {"hygon-dhyana-32c", "hwloc-x86/Hygon-Dhyana-32cores.tar.bz2", KS_FLEETSIM_SERVER, 0.05},
};
#define N_MACHINES (sizeof(g_machines) / sizeof(g_machines[0]))
#define POOL_MACHINE 2 /* sapphirerapids: the pool is one hardware generation */

/* Faulty units and their relative weights (see the file comment). */
typedef struct fault_def {
    const char *feature;
    const char *fallback; /* when the core does not have `feature` */
    uint32_t weight;
} fault_def;

static const fault_def g_faults[] = {
    {"avx512f", "avx2", 28}, {"avx2", "avx", 16},  {"fma", "avx", 16},   {"aes", "pclmulqdq", 16},
    {"vaes", "aes", 6},      {"avx", "sse4_2", 6}, {"sha_ni", "aes", 6}, {"pclmulqdq", "sse4_2", 6},
};
#define N_FAULTS (sizeof(g_faults) / sizeof(g_faults[0]))
#define MAX_HOST_FAULTS 3

typedef struct core_ref {
    int32_t package, core;
    uint16_t first, n; /* CPU indices [first, first+n) in the template's by-core order */
} core_ref;

typedef struct machine {
    ks_report *tmpl;
    uint32_t n_cores;
    core_ref *cores;
    uint16_t *core_cpus; /* template CPU indices grouped by core */
    uint64_t n_hosts;
} machine;

typedef struct host_fault {
    uint16_t core;    /* index into machine.cores */
    uint16_t feature; /* KS_FEATURE_NONE = whole core (quarantine) */
} host_fault;

typedef struct host_desc {
    uint8_t machine;
    uint8_t n_faults;
    host_fault faults[MAX_HOST_FAULTS];
} host_desc;

struct ks_fleetsim {
    ks_fleetsim_options opts;
    char fixtures_dir[1024];
    machine machines[N_MACHINES];
    host_desc *hosts;
    ks_fleetsim_stats stats;
    uint64_t fault_cpus[KS_FEATSET_BITS + 1]; /* last slot: whole-core */
};

/* Splits buf in place at `sep`; returns the next token or NULL (strtok without
 * hidden state). */
static char *next_token(char **cursor, char sep)
{
    char *t = *cursor;
    while (t && *t == sep)
        t++;
    if (!t || !*t)
        return NULL;
    char *end = strchr(t, sep);
    if (end) {
        *end = '\0';
        *cursor = end + 1;
    } else {
        *cursor = NULL;
    }
    return t;
}

ks_code ks_fleetsim_parse_mix(double *hybrid_share, const char *mix, ks_err *err)
{
    double h = -1, s = -1;
    char buf[256];
    if (!mix || strlen(mix) >= sizeof(buf))
        return ks_err_set(err, KS_EINVAL, "bad mix '%s'", mix ? mix : "");
    snprintf(buf, sizeof(buf), "%s", mix);
    char *cur = buf;
    for (char *t = next_token(&cur, ','); t; t = next_token(&cur, ',')) {
        char *eq = strchr(t, '=');
        char *end = NULL;
        if (!eq)
            return ks_err_set(err, KS_EINVAL, "mix part '%s' is not class=share", t);
        *eq = '\0';
        double v = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || !(v >= 0 && v <= 1))
            return ks_err_set(err, KS_EINVAL, "mix share '%s' is not in [0, 1]", eq + 1);
        if (strcmp(t, "hybrid") == 0)
            h = v;
        else if (strcmp(t, "server") == 0)
            s = v;
        else
            return ks_err_set(err, KS_EINVAL, "unknown mix class '%s' (hybrid, server)", t);
    }
    if (h < 0 && s < 0)
        return ks_err_set(err, KS_EINVAL, "empty mix");
    if (h < 0)
        h = 1 - s;
    else if (s >= 0 && fabs(h + s - 1) > 0.001)
        return ks_err_set(err, KS_EINVAL, "mix shares sum to %.3f, not 1", h + s);
    *hybrid_share = h;
    return KS_OK;
}

static int cmp_core_cpu(const void *a, const void *b, void *ctx)
{
    const ks_report *r = ctx;
    const ks_cpu *x = &r->cpus[*(const uint16_t *)a], *y = &r->cpus[*(const uint16_t *)b];
    if (x->package != y->package)
        return x->package < y->package ? -1 : 1;
    if (x->core != y->core)
        return x->core < y->core ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Groups the template's online CPUs by physical core. */
static ks_code machine_index_cores(machine *m, ks_err *err)
{
    const ks_report *r = m->tmpl;
    m->core_cpus = calloc(r->n_cpus ? r->n_cpus : 1, sizeof(uint16_t));
    m->cores = calloc(r->n_cpus ? r->n_cpus : 1, sizeof(core_ref));
    if (!m->core_cpus || !m->cores)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_cpus; i++)
        if (r->cpus[i].state == KS_CPU_ONLINE && !r->cpus[i].reserved)
            m->core_cpus[n++] = (uint16_t)i;
    qsort_r(m->core_cpus, n, sizeof(uint16_t), cmp_core_cpu, (void *)r);
    for (uint32_t i = 0; i < n; i++) {
        const ks_cpu *c = &r->cpus[m->core_cpus[i]];
        core_ref *last = m->n_cores ? &m->cores[m->n_cores - 1] : NULL;
        if (last && last->package == c->package && last->core == c->core) {
            last->n++;
            continue;
        }
        m->cores[m->n_cores++] = (core_ref){c->package, c->core, (uint16_t)i, 1};
    }
    if (m->n_cores == 0)
        return ks_err_set(err, KS_EINVAL, "fixture has no online cpu");
    return KS_OK;
}

static unsigned feature_id(const char *name)
{
    unsigned id = 0;
    if (ks_feature_lookup(name, &id, NULL) != KS_OK)
        return KS_FEATURE_NONE;
    return id;
}

/* A fault for core `core` of machine m: a feature it has, by the weights. */
static uint16_t draw_fault_feature(const machine *m, uint32_t core, ks_fleetsim_rng *rng)
{
    uint32_t total = 0;
    for (size_t i = 0; i < N_FAULTS; i++)
        total += g_faults[i].weight;
    uint32_t x = ks_fleetsim_rng_below(rng, total);
    size_t k = 0;
    while (k + 1 < N_FAULTS && x >= g_faults[k].weight) {
        x -= g_faults[k].weight;
        k++;
    }
    const ks_featset *native = &m->tmpl->cpus[m->core_cpus[m->cores[core].first]].native;
    const char *name = g_faults[k].feature;
    /* Walk the fallback chain until the core has the unit (bounded). */
    for (int hop = 0; hop < 6; hop++) {
        unsigned id = feature_id(name);
        if (id != KS_FEATURE_NONE && ks_featset_test(native, id))
            return (uint16_t)id;
        const char *next = NULL;
        for (size_t i = 0; i < N_FAULTS; i++)
            if (strcmp(g_faults[i].feature, name) == 0)
                next = g_faults[i].fallback;
        if (!next)
            next = "sse4_2";
        name = next;
    }
    return KS_FEATURE_NONE;
}

static void draw_host(ks_fleetsim *sim, uint32_t i)
{
    ks_fleetsim_rng rng;
    ks_fleetsim_rng_seed(&rng, sim->opts.seed * UINT64_C(0x100000001B3) + i);
    host_desc *h = &sim->hosts[i];
    memset(h, 0, sizeof(*h));
    ks_fleetsim_class klass = ks_fleetsim_rng_unit(&rng) < sim->opts.hybrid_share
                                  ? KS_FLEETSIM_HYBRID
                                  : KS_FLEETSIM_SERVER;
    double x = ks_fleetsim_rng_unit(&rng), acc = 0, total = 0;
    for (size_t m = 0; m < N_MACHINES; m++)
        if (g_machines[m].klass == klass)
            total += g_machines[m].weight;
    size_t pick = N_MACHINES;
    for (size_t m = 0; m < N_MACHINES; m++) {
        if (g_machines[m].klass != klass)
            continue;
        pick = m;
        acc += g_machines[m].weight / total;
        if (x < acc)
            break;
    }
    h->machine = (uint8_t)pick;
    machine *m = &sim->machines[pick];
    m->n_hosts++;
    sim->stats.n_hosts_by_class[klass]++;
    sim->stats.n_cpus += m->tmpl->n_cpus;
    if (ks_fleetsim_rng_unit(&rng) >= sim->opts.defect_rate)
        return;
    /* 1 defective core mostly, sometimes 2 or 3 */
    double y = ks_fleetsim_rng_unit(&rng);
    uint32_t n = y < 0.80 ? 1 : y < 0.95 ? 2 : 3;
    if (n > m->n_cores)
        n = m->n_cores;
    sim->stats.n_defective_hosts++;
    for (uint32_t f = 0; f < n; f++) {
        uint16_t core;
        bool dup;
        do {
            core = (uint16_t)ks_fleetsim_rng_below(&rng, m->n_cores);
            dup = false;
            for (uint32_t g = 0; g < f; g++)
                dup |= h->faults[g].core == core;
        } while (dup);
        uint16_t feat = ks_fleetsim_rng_unit(&rng) < sim->opts.quarantine_share
                            ? (uint16_t)KS_FEATURE_NONE
                            : draw_fault_feature(m, core, &rng);
        h->faults[h->n_faults++] = (host_fault){core, feat};
        uint32_t threads = m->cores[core].n;
        if (feat == KS_FEATURE_NONE) {
            sim->stats.n_quarantined_cpus += threads;
            sim->fault_cpus[KS_FEATSET_BITS] += threads;
        } else {
            sim->stats.n_degraded_cpus += threads;
            sim->fault_cpus[feat] += threads;
        }
    }
}

ks_code ks_fleetsim_new(ks_fleetsim **out, const ks_fleetsim_options *opts, ks_err *err)
{
    ks_code rc = KS_OK;
    ks_fleetsim *sim = NULL;
    if (!opts || !opts->fixtures_dir || !opts->fixtures_dir[0])
        return ks_err_set(err, KS_EINVAL, "no fixtures directory");
    if (opts->n_hosts == 0 || opts->n_hosts > 1000000)
        return ks_err_set(err, KS_EINVAL, "hosts must be 1..1000000, not %u", opts->n_hosts);
    if (!(opts->defect_rate >= 0 && opts->defect_rate <= 1) ||
        !(opts->quarantine_share >= 0 && opts->quarantine_share <= 1) ||
        !(opts->hybrid_share >= 0 && opts->hybrid_share <= 1))
        return ks_err_set(err, KS_EINVAL, "rates and shares must be in [0, 1]");
    sim = calloc(1, sizeof(*sim));
    if (!sim)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    sim->opts = *opts;
    snprintf(sim->fixtures_dir, sizeof(sim->fixtures_dir), "%s", opts->fixtures_dir);
    sim->opts.fixtures_dir = sim->fixtures_dir;
    sim->opts.tmp_dir = NULL; /* only used during new() */
    sim->hosts = calloc(opts->n_hosts, sizeof(*sim->hosts));
    if (!sim->hosts) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t m = 0; m < N_MACHINES; m++) {
        double share =
            g_machines[m].klass == KS_FLEETSIM_HYBRID ? opts->hybrid_share : 1 - opts->hybrid_share;
        if (share <= 0 || g_machines[m].weight <= 0)
            continue;
        char path[1200];
        snprintf(path, sizeof(path), "%s/%s", opts->fixtures_dir, g_machines[m].path);
        ks_discover_options d = KS_DISCOVER_OPTIONS_INIT;
        d.fixture_path = path;
        d.tmp_dir = opts->tmp_dir;
        rc = ks_discover_host(&sim->machines[m].tmpl, &d, err);
        if (rc != KS_OK) {
            ks_err_prefix(err, "fixture '%s': ", g_machines[m].name);
            goto done;
        }
        rc = machine_index_cores(&sim->machines[m], err);
        if (rc != KS_OK)
            goto done;
    }
    sim->stats.n_machines = N_MACHINES;
    sim->stats.n_hosts = opts->n_hosts;
    for (uint32_t i = 0; i < opts->n_hosts; i++)
        draw_host(sim, i);
    *out = sim;
    sim = NULL;
done:
    ks_fleetsim_free(sim);
    return rc;
}

ks_code ks_fleetsim_new_like(ks_fleetsim **out, const ks_fleetsim *base, uint32_t n_hosts,
                             ks_err *err)
{
    ks_code rc = KS_OK;
    if (!base || n_hosts == 0 || n_hosts > 1000000)
        return ks_err_set(err, KS_EINVAL, "hosts must be 1..1000000, not %u", n_hosts);
    ks_fleetsim *sim = calloc(1, sizeof(*sim));
    if (!sim)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    sim->opts = base->opts;
    sim->opts.n_hosts = n_hosts;
    snprintf(sim->fixtures_dir, sizeof(sim->fixtures_dir), "%s", base->fixtures_dir);
    sim->opts.fixtures_dir = sim->fixtures_dir;
    sim->hosts = calloc(n_hosts, sizeof(*sim->hosts));
    if (!sim->hosts) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t m = 0; m < N_MACHINES; m++) {
        if (!base->machines[m].tmpl)
            continue;
        rc = ks_report_dup(&sim->machines[m].tmpl, base->machines[m].tmpl, err);
        if (rc == KS_OK)
            rc = machine_index_cores(&sim->machines[m], err);
        if (rc != KS_OK)
            goto done;
    }
    sim->stats.n_machines = N_MACHINES;
    sim->stats.n_hosts = n_hosts;
    for (uint32_t i = 0; i < n_hosts; i++)
        draw_host(sim, i);
    *out = sim;
    sim = NULL;
done:
    ks_fleetsim_free(sim);
    return rc;
}

void ks_fleetsim_free(ks_fleetsim *sim)
{
    if (!sim)
        return;
    for (size_t m = 0; m < N_MACHINES; m++) {
        ks_report_free(sim->machines[m].tmpl);
        free(sim->machines[m].cores);
        free(sim->machines[m].core_cpus);
    }
    free(sim->hosts);
    free(sim);
}

uint32_t ks_fleetsim_host_count(const ks_fleetsim *sim)
{
    return sim->opts.n_hosts;
}

void ks_fleetsim_host_id(char buf[KS_ID_MAX], uint32_t i)
{
    snprintf(buf, KS_ID_MAX, "sim-%06u", i);
}

void ks_fleetsim_get_stats(const ks_fleetsim *sim, ks_fleetsim_stats *out)
{
    *out = sim->stats;
}

bool ks_fleetsim_machine_at(const ks_fleetsim *sim, uint32_t m, ks_fleetsim_machine_view *out)
{
    if (m >= N_MACHINES)
        return false;
    out->name = g_machines[m].name;
    out->klass = g_machines[m].klass;
    out->n_cpus = sim->machines[m].tmpl ? sim->machines[m].tmpl->n_cpus : 0;
    out->n_hosts = sim->machines[m].n_hosts;
    return true;
}

void ks_fleetsim_faults_foreach(const ks_fleetsim *sim, ks_fleetsim_fault_fn cb, void *ctx)
{
    bool done[KS_FEATSET_BITS + 1] = {false};
    for (;;) {
        size_t best = SIZE_MAX;
        for (size_t f = 0; f <= KS_FEATSET_BITS; f++)
            if (!done[f] && sim->fault_cpus[f] &&
                (best == SIZE_MAX || sim->fault_cpus[f] > sim->fault_cpus[best]))
                best = f;
        if (best == SIZE_MAX)
            return;
        done[best] = true;
        cb(ctx, best == KS_FEATSET_BITS ? "(whole core)" : ks_feature_name((unsigned)best),
           sim->fault_cpus[best]);
    }
}

bool ks_fleetsim_pool_member(const ks_fleetsim *sim, uint32_t i)
{
    return i < sim->opts.n_hosts && sim->hosts[i].machine == POOL_MACHINE && i % 2 == 0;
}

ks_code ks_fleetsim_host_report(ks_report **out, const ks_fleetsim *sim, uint32_t i,
                                ks_fleetsim_policy policy, ks_err *err)
{
    if (!sim || i >= sim->opts.n_hosts)
        return ks_err_set(err, KS_EINVAL, "no host %u", i);
    const host_desc *h = &sim->hosts[i];
    const machine *m = &sim->machines[h->machine];
    ks_report *r = NULL;
    ks_code rc = ks_report_dup(&r, m->tmpl, err);
    if (rc != KS_OK)
        return rc;
    ks_fleetsim_host_id(r->host.id, i);
    snprintf(r->host.hostname, sizeof(r->host.hostname), "%s.sim", r->host.id);
    snprintf(r->host.boot_id, sizeof(r->host.boot_id), "boot-%llx-%u",
             (unsigned long long)sim->opts.seed, i);
    snprintf(r->host.source, sizeof(r->host.source), "fixture:%s", g_machines[h->machine].name);
    r->host.generation = 1;
    for (uint32_t f = 0; f < h->n_faults; f++) {
        const core_ref *c = &m->cores[h->faults[f].core];
        for (uint32_t k = 0; k < c->n; k++) {
            ks_cpu *cpu = &r->cpus[m->core_cpus[c->first + k]];
            ks_defect d = {.feature = h->faults[f].feature,
                           .source = (uint8_t)(f % 2 ? KS_DEFECT_IFS : KS_DEFECT_SELFTEST),
                           .time_us = UINT64_C(1767225600000000)};
            snprintf(d.detail, sizeof(d.detail), "fleetsim seed %llu",
                     (unsigned long long)sim->opts.seed);
            rc = ks_cpu_add_defect(cpu, &d, err);
            if (rc != KS_OK)
                goto done;
        }
    }
    if (h->n_faults)
        ks_report_derive_state(r);
    if (policy == KS_FLEETSIM_OFFLINE_DEGRADED) {
        /* The disable-the-core policy: a degraded CPU is taken out of service. */
        for (uint32_t c = 0; c < r->n_cpus; c++) {
            if (r->cpus[c].state == KS_CPU_DEGRADED) {
                r->cpus[c].state = KS_CPU_OFFLINE;
                ks_featset_clear(&r->cpus[c].usable);
            }
        }
    }
    *out = r;
    r = NULL;
done:
    ks_report_free(r);
    return rc;
}

static ks_code pool_ids(const ks_fleetsim *sim, char (**ids)[KS_ID_MAX], const char ***ptrs,
                        size_t *n, ks_err *err)
{
    size_t cnt = 0;
    for (uint32_t i = 0; i < sim->opts.n_hosts; i++)
        cnt += ks_fleetsim_pool_member(sim, i);
    *ids = calloc(cnt + 1, sizeof(**ids));
    *ptrs = calloc(cnt + 1, sizeof(**ptrs));
    if (!*ids || !*ptrs)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    size_t k = 0;
    for (uint32_t i = 0; i < sim->opts.n_hosts; i++) {
        if (!ks_fleetsim_pool_member(sim, i))
            continue;
        ks_fleetsim_host_id((*ids)[k], i);
        (*ptrs)[k] = (*ids)[k];
        k++;
    }
    *n = k;
    return KS_OK;
}

ks_code ks_fleetsim_load_fleet(const ks_fleetsim *sim, ks_fleet *fleet, ks_fleetsim_policy policy,
                               ks_err *err)
{
    ks_code rc = KS_OK;
    for (uint32_t i = 0; rc == KS_OK && i < sim->opts.n_hosts; i++) {
        ks_report *r = NULL;
        rc = ks_fleetsim_host_report(&r, sim, i, policy, err);
        if (rc == KS_OK)
            rc = ks_fleet_host_update(fleet, r, NULL, err);
        ks_report_free(r);
    }
    char(*ids)[KS_ID_MAX] = NULL;
    const char **ptrs = NULL;
    size_t n = 0;
    if (rc == KS_OK)
        rc = pool_ids(sim, &ids, &ptrs, &n, err);
    if (rc == KS_OK)
        rc = ks_fleet_pool_set(fleet, KS_FLEETSIM_POOL, ptrs, n, err);
    free(ids);
    free(ptrs);
    return rc;
}

ks_code ks_fleetsim_load_store(const ks_fleetsim *sim, ks_store *store, ks_fleetsim_policy policy,
                               uint32_t batch, bool with_json, ks_err *err)
{
    ks_code rc = KS_OK;
    char(*ids)[KS_ID_MAX] = NULL;
    const char **ptrs = NULL;
    size_t n = 0;
    uint64_t now = (uint64_t)time(NULL) * 1000000u;
    if (batch == 0)
        batch = 1;
    for (uint32_t i = 0; rc == KS_OK && i < sim->opts.n_hosts; i++) {
        ks_report *r = NULL;
        char *text = NULL;
        if (i % batch == 0)
            rc = ks_store_begin(store, err);
        if (rc == KS_OK)
            rc = ks_fleetsim_host_report(&r, sim, i, policy, err);
        if (rc == KS_OK && with_json) {
            json_t *doc = ks_report_to_json(r);
            text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
            json_decref(doc);
            if (!text)
                rc = ks_err_set(err, KS_ENOMEM, "out of memory encoding a report");
        }
        if (rc == KS_OK)
            rc = ks_store_host_put_report(store, r, text, now, NULL, err);
        free(text);
        ks_report_free(r);
        if (rc == KS_OK && (i % batch == batch - 1 || i + 1 == sim->opts.n_hosts))
            rc = ks_store_commit(store, err);
    }
    if (rc == KS_OK)
        rc = pool_ids(sim, &ids, &ptrs, &n, err);
    if (rc == KS_OK)
        rc = ks_store_begin(store, err);
    if (rc == KS_OK)
        rc = ks_store_pool_create(store, KS_FLEETSIM_POOL, NULL, now, err);
    if (rc == KS_OK)
        rc = ks_store_pool_members_set(store, KS_FLEETSIM_POOL, ptrs, (uint32_t)n, err);
    if (rc == KS_OK)
        rc = ks_store_commit(store, err);
    if (rc != KS_OK)
        ks_store_rollback(store, NULL);
    free(ids);
    free(ptrs);
    return rc;
}

/* ---- workload ---- */

static const ks_fleetsim_shape g_shapes[] = {
    {"small-1", 0, 0, 1, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, false, 20},
    {"small-2", 0, 0, 2, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, false, 16},
    {"medium-4", 0, 0, 4, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, false, 12},
    {"medium-8-spread", 0, 0, 8, "", KS_PLACE_SPREAD, KS_SMT_ALLOW, false, false, 6},
    {"large-16", 0, 0, 16, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, false, 3},
    {"large-32-perf-isolate", 32, 0, 0, "", KS_PLACE_PACK, KS_SMT_ISOLATE, false, false, 1},
    {"hybrid-2p4e", 2, 4, 0, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, false, 4},
    {"hybrid-4e", 0, 4, 0, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, false, 3},
    {"avx512-4", 0, 0, 4, "avx512f", KS_PLACE_PACK, KS_SMT_ALLOW, false, false, 8},
    {"avx512bw-8", 0, 0, 8, "avx512f avx512bw avx512vl", KS_PLACE_PACK, KS_SMT_ALLOW, false, false,
     3},
    {"aes-2", 0, 0, 2, "aes", KS_PLACE_PACK, KS_SMT_ALLOW, false, false, 8},
    {"vaes-4", 0, 0, 4, "aes vaes", KS_PLACE_PACK, KS_SMT_ALLOW, false, false, 3},
    {"avx2-fma-4", 0, 0, 4, "avx2 fma", KS_PLACE_PACK, KS_SMT_ALLOW, false, false, 6},
    {"pool-4", 0, 0, 4, "", KS_PLACE_PACK, KS_SMT_ALLOW, true, false, 4},
    {"anti-affinity-2-spread", 0, 0, 2, "", KS_PLACE_SPREAD, KS_SMT_ALLOW, false, true, 3},
};
#define N_SHAPES (sizeof(g_shapes) / sizeof(g_shapes[0]))
_Static_assert(N_SHAPES <= KS_FLEETSIM_MAX_SHAPES, "shape table larger than the replay's arrays");

static ks_featset g_shape_required[N_SHAPES];
static pthread_once_t g_shape_once = PTHREAD_ONCE_INIT;

static void shapes_init(void)
{
    for (size_t s = 0; s < N_SHAPES; s++) {
        char buf[256];
        ks_featset_clear(&g_shape_required[s]);
        snprintf(buf, sizeof(buf), "%s", g_shapes[s].required);
        char *cur = buf;
        for (char *t = next_token(&cur, ' '); t; t = next_token(&cur, ' '))
            ks_feature_add_name(&g_shape_required[s], t, NULL); /* names are ours, known */
    }
}

const ks_fleetsim_shape *ks_fleetsim_shapes(size_t *n)
{
    if (n)
        *n = N_SHAPES;
    return g_shapes;
}

void ks_fleetsim_vm_name(char buf[KS_ID_MAX], uint32_t vm)
{
    snprintf(buf, KS_ID_MAX, "vm-%u", vm);
}

void ks_fleetsim_make_request(ks_vm_request *req, uint32_t vm, uint32_t shape)
{
    pthread_once(&g_shape_once, shapes_init);
    const ks_fleetsim_shape *sh = &g_shapes[shape < N_SHAPES ? shape : 0];
    memset(req, 0, sizeof(*req));
    ks_fleetsim_vm_name(req->name, vm);
    req->n_performance = sh->n_performance;
    req->n_efficiency = sh->n_efficiency;
    req->n_any = sh->n_any;
    req->memory_mib = 2048u * (uint64_t)ks_vm_request_vcpus(req);
    req->required = g_shape_required[shape < N_SHAPES ? shape : 0];
    req->placement = sh->placement;
    req->smt = sh->smt;
    if (sh->in_pool)
        snprintf(req->pool, sizeof(req->pool), "%s", KS_FLEETSIM_POOL);
    if (sh->anti_affinity)
        snprintf(req->anti_affinity_group, sizeof(req->anti_affinity_group), "aa-%u", vm % 64);
}

static uint32_t shape_vcpus(uint32_t s)
{
    return g_shapes[s].n_performance + g_shapes[s].n_efficiency + g_shapes[s].n_any;
}

static uint32_t draw_shape(ks_fleetsim_rng *rng)
{
    uint32_t total = 0;
    for (size_t s = 0; s < N_SHAPES; s++)
        total += g_shapes[s].weight;
    uint32_t x = ks_fleetsim_rng_below(rng, total);
    uint32_t s = 0;
    while (s + 1 < N_SHAPES && x >= g_shapes[s].weight) {
        x -= g_shapes[s].weight;
        s++;
    }
    return s;
}

static bool trace_push(ks_fleetsim_trace *t, uint32_t *cap, ks_fleetsim_event ev)
{
    if (t->n_events == *cap) {
        uint32_t nc = *cap ? *cap * 2 : 4096;
        void *p = realloc(t->events, (size_t)nc * sizeof(*t->events));
        if (!p)
            return false;
        t->events = p;
        *cap = nc;
    }
    t->events[t->n_events++] = ev;
    return true;
}

ks_code ks_fleetsim_trace_new(ks_fleetsim_trace **out, uint64_t seed, uint64_t fill_vcpus,
                              uint32_t steps, ks_err *err)
{
    ks_code rc = KS_OK;
    ks_fleetsim_trace *t = calloc(1, sizeof(*t));
    uint32_t cap = 0, n_live = 0, live_cap = 4096;
    uint32_t *live = malloc(live_cap * sizeof(uint32_t));
    uint8_t *live_shape = malloc(live_cap);
    ks_fleetsim_rng rng;
    ks_fleetsim_rng_seed(&rng, seed ^ UINT64_C(0x7472616365));
    if (!t || !live || !live_shape) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    uint64_t requested = 0;
    bool churn = false;
    for (uint64_t step = 0; !churn || step < steps;) {
        /* once filled, every step is a departure and an arrival, whatever the sizes */
        churn = churn || requested >= fill_vcpus;
        if (churn && step >= steps)
            break;
        if (!churn)
            t->n_fill_events = t->n_events + 1;
        if (churn && n_live) {
            uint32_t k = ks_fleetsim_rng_below(&rng, n_live);
            if (!trace_push(t, &cap,
                            (ks_fleetsim_event){KS_FLEETSIM_DEPART, live_shape[k], live[k]})) {
                rc = ks_err_set(err, KS_ENOMEM, "out of memory");
                goto done;
            }
            requested -= shape_vcpus(live_shape[k]);
            live[k] = live[n_live - 1];
            live_shape[k] = live_shape[n_live - 1];
            n_live--;
        }
        uint32_t s = draw_shape(&rng);
        if (!trace_push(t, &cap, (ks_fleetsim_event){KS_FLEETSIM_ARRIVE, (uint8_t)s, t->n_vms})) {
            rc = ks_err_set(err, KS_ENOMEM, "out of memory");
            goto done;
        }
        if (n_live == live_cap) {
            live_cap *= 2;
            uint32_t *nl = realloc(live, live_cap * sizeof(uint32_t));
            if (nl)
                live = nl;
            uint8_t *ns = realloc(live_shape, live_cap);
            if (ns)
                live_shape = ns;
            if (!nl || !ns) {
                rc = ks_err_set(err, KS_ENOMEM, "out of memory");
                goto done;
            }
        }
        live[n_live] = t->n_vms++;
        live_shape[n_live++] = (uint8_t)s;
        requested += shape_vcpus(s);
        if (churn)
            step++;
    }
    *out = t;
    t = NULL;
done:
    free(live);
    free(live_shape);
    ks_fleetsim_trace_free(t);
    return rc;
}

void ks_fleetsim_trace_free(ks_fleetsim_trace *t)
{
    if (!t)
        return;
    free(t->events);
    free(t);
}

/* ---- plan checker ---- */

typedef struct check_ctx {
    const ks_plan *plan;
    uint32_t n_found, n_bad;
    char *first;
} check_ctx;

static bool check_cpu(void *ctx, const ks_fleet_cpu_view *cpu)
{
    check_ctx *c = ctx;
    for (uint32_t v = 0; v < c->plan->n_vcpus; v++) {
        if (c->plan->vcpus[v].host_cpu != cpu->id)
            continue;
        c->n_found++;
        bool state_ok = cpu->state == KS_CPU_ONLINE || cpu->state == KS_CPU_DEGRADED;
        if (!state_ok || !ks_featset_subset(&c->plan->visible, cpu->usable)) {
            if (c->n_bad == 0 && c->first) {
                ks_featset missing;
                ks_featset_andnot(&missing, &c->plan->visible, cpu->usable);
                int f = -1;
                for (unsigned b = 0; b < KS_FEATSET_BITS && f < 0; b++)
                    if (ks_featset_test(&missing, b))
                        f = (int)b;
                snprintf(c->first, KS_TEXT_MAX, "vm '%s' vcpu %d on %s cpu %d (%s): %s%s",
                         c->plan->vm, c->plan->vcpus[v].id, c->plan->host, cpu->id,
                         ks_cpu_state_to_str(cpu->state),
                         f >= 0 ? "sees unusable feature " : "cpu not in service",
                         f >= 0 ? ks_feature_name((unsigned)f) : "");
            }
            c->n_bad++;
        }
    }
    return true;
}

uint32_t ks_fleetsim_check_plan(const ks_fleet *fleet, const ks_plan *plan, char first[KS_TEXT_MAX])
{
    check_ctx c = {.plan = plan, .first = first};
    if (first)
        first[0] = '\0';
    if (ks_fleet_host_cpus(fleet, plan->host, check_cpu, &c, NULL) != KS_OK) {
        if (first)
            snprintf(first, KS_TEXT_MAX, "vm '%s' on unknown host '%s'", plan->vm, plan->host);
        return plan->n_vcpus ? plan->n_vcpus : 1;
    }
    if (c.n_found != plan->n_vcpus && c.n_bad == 0 && first)
        snprintf(first, KS_TEXT_MAX, "vm '%s': %u of %u vcpus on cpus the host lacks", plan->vm,
                 plan->n_vcpus - c.n_found, plan->n_vcpus);
    return c.n_bad + (plan->n_vcpus - c.n_found);
}
