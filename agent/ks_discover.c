/*
 * ks_discover.c - builds the host report: hwloc for the topology, CPUID (live
 * and pinned, or per-CPU dump files) for native features, core types and the
 * PMU, procfs/sysfs for the rest (ks_discover_os.c).
 *
 * Flow of ks_discover_host():
 *   source (live | dump dir | sysfs tree, tarballs unpacked)
 *   -> dumps parsed up front, so a garbled file fails before hwloc reads it
 *   -> hwloc load (environment pointed at the fixture, under env_lock)
 *   -> CPUs = hwloc complete cpuset (offline = complete \ topology cpuset)
 *   -> caches, topology ids, NUMA nodes from hwloc objects
 *   -> per CPU: native features + hybrid core type + CPUID 0x16 frequencies
 *   -> core kinds: hwloc cpukinds, unless CPUID core types split CPUs that
 *      hwloc 2.9 put in one kind (it predates low-power E-cores and AMD
 *      heterogeneous cores), in which case the CPUID types are the kinds
 *   -> host identity, PMU, vulnerabilities, then ks_report_derive_state().
 *
 * Topology ids (package, die, cluster, core) are dense hwloc logical indices,
 * unique host-wide (OS core ids repeat across packages).  A cluster is the
 * Linux "Cluster" group when hwloc has one (ARM), else the CPU's L2 instance,
 * else its core.  Offline CPUs have no topology (hwloc only knows their
 * number): their ids are 0, caches/kind/NUMA -1, and their native set empty.
 */
#include "ks_discover_int.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <dirent.h>
#include <hwloc.h>

#include "ks_cpuid.h"

#ifndef KS_VERSION
#define KS_VERSION "0"
#endif

static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;

/* What discovery learned about one CPU beyond the report fields. */
typedef struct cpu_scan {
    hwloc_obj_t pu;           /* NULL when offline */
    bool has_cpuid;
    bool has_core_type;
    ks_cpuid_core core;
    uint32_t cpuid_base_mhz, cpuid_max_mhz;
    bool has_core_key;
    uint32_t core_key;        /* which physical core CPUID says this CPU is on */
} cpu_scan;

typedef struct disc {
    const ks_discover_options *opts;
    ks_discover__src src;
    hwloc_topology_t topo;
    ks_cpuid_dump **dumps;    /* by OS index, dump mode only */
    uint32_t n_dumps;
    ks_discover__cpuinfo ci;
    bool have_ci;
    ks_report *r;
    cpu_scan *scan;           /* parallel to r->cpus */
    ks_cpuid_ident ident;     /* first CPU with CPUID */
    bool have_ident;
    ks_cpuid_pmu pmu;
} disc;

static void cpy(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- CPUID dumps ---------------------------------------------------------------------- */

static ks_code load_dumps(disc *d, ks_err *err)
{
    ks_code rc = KS_OK;
    DIR *dir = opendir(d->src.dir);
    struct dirent *e;
    uint32_t max = 0, count = 0;
    if (!dir)
        return ks_err_set(err, KS_EIO, "cannot list cpuid dump '%s'", d->src.dir);
    while ((e = readdir(dir)) != NULL) {
        const char *s = e->d_name;
        if (strncmp(s, "pu", 2) != 0 || !s[2])
            continue;
        uint64_t v = 0;
        bool ok = true;
        for (const char *q = s + 2; *q && ok; q++) {
            ok = *q >= '0' && *q <= '9' && v < KS_REPORT_MAX_CPUS;
            v = v * 10 + (uint64_t)(*q - '0');
        }
        if (!ok || v >= KS_REPORT_MAX_CPUS) {
            rc = ks_err_set(err, KS_EINVAL, "cpuid dump '%s' has an invalid file '%s'",
                            d->src.dir, s);
            goto done;
        }
        if (v + 1 > max)
            max = (uint32_t)v + 1;
        count++;
    }
    if (count == 0) {
        rc = ks_err_set(err, KS_EINVAL, "cpuid dump '%s' has no pu<N> files", d->src.dir);
        goto done;
    }
    d->dumps = calloc(max, sizeof(*d->dumps));
    if (!d->dumps) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory loading cpuid dumps");
        goto done;
    }
    d->n_dumps = max;
    for (uint32_t i = 0; i < max; i++) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/pu%u", d->src.dir, i) >= (int)sizeof(path)) {
            rc = ks_err_set(err, KS_EINVAL, "cpuid dump path too long");
            goto done;
        }
        rc = ks_cpuid_dump_load(&d->dumps[i], path, err);
        if (rc == KS_ENOTFOUND) {
            /* hwloc ignores a dump with a gap (and says so on stderr): refuse it first. */
            rc = ks_err_set(err, KS_EINVAL, "cpuid dump '%s' lacks pu%u (pu0..pu%u expected)",
                            d->src.dir, i, max - 1);
            goto done;
        }
        if (rc != KS_OK)
            goto done;
    }
done:
    closedir(dir);
    return rc;
}

/* ---- hwloc ---------------------------------------------------------------------------- */

typedef struct saved_env {
    const char *name;
    char *old; /* strdup of the previous value, NULL when unset */
} saved_env;

static void env_set(saved_env *s, const char *name, const char *value)
{
    const char *old = getenv(name);
    s->name = name;
    s->old = old ? strdup(old) : NULL;
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

static void env_restore(saved_env *s)
{
    if (!s->name)
        return;
    if (s->old)
        setenv(s->name, s->old, 1);
    else
        unsetenv(s->name);
    free(s->old);
    s->old = NULL;
    s->name = NULL;
}

static ks_code load_topology(disc *d, ks_err *err)
{
    ks_code rc = KS_OK;
    saved_env env[5];
    memset(env, 0, sizeof(env));
    pthread_mutex_lock(&env_lock);
    if (d->src.kind == KS_DISCOVER_CPUID_DUMP) {
        /* Without ",stop" hwloc adds the build machine's own topology. */
        env_set(&env[0], "HWLOC_CPUID_PATH", d->src.dir);
        env_set(&env[1], "HWLOC_COMPONENTS", "x86,stop");
        env_set(&env[2], "HWLOC_THISSYSTEM", "0");
        env_set(&env[3], "HWLOC_FSROOT", NULL);
    } else if (d->src.kind == KS_DISCOVER_SYSFS) {
        /* Only the Linux backend: the x86 one would mix in this machine's CPUID. */
        env_set(&env[0], "HWLOC_FSROOT", d->src.dir);
        env_set(&env[1], "HWLOC_COMPONENTS", "linux,stop");
        env_set(&env[2], "HWLOC_THISSYSTEM", "0");
        env_set(&env[3], "HWLOC_CPUID_PATH", NULL);
    }
    /* hwloc prints "invalid information from the OS" banners on stderr for some
     * recorded machines (Hygon); library code must stay quiet. */
    env_set(&env[4], "HWLOC_HIDE_ERRORS", "2");
    if (hwloc_topology_init(&d->topo) != 0) {
        d->topo = NULL;
        rc = ks_err_set(err, KS_ENOMEM, "hwloc_topology_init failed");
        goto done;
    }
    /* The report covers the whole machine, not just this process's cgroup. */
    hwloc_topology_set_flags(d->topo, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
    hwloc_topology_set_io_types_filter(d->topo, HWLOC_TYPE_FILTER_KEEP_NONE);
    /* hwloc drops instruction caches by default; the report lists every cache. */
    hwloc_topology_set_icache_types_filter(d->topo, HWLOC_TYPE_FILTER_KEEP_ALL);
    if (hwloc_topology_load(d->topo) != 0) {
        rc = ks_err_set(err, KS_EIO, "hwloc cannot load the topology of '%s' (errno %d)",
                        d->src.kind == KS_DISCOVER_LIVE ? "this host" : d->src.dir, errno);
        goto done;
    }
done:
    for (int i = 4; i >= 0; i--)
        env_restore(&env[i]);
    pthread_mutex_unlock(&env_lock);
    return rc;
}

static int32_t cache_index(hwloc_obj_t o)
{
    return o && o->userdata ? (int32_t)((uintptr_t)o->userdata - 1) : -1;
}

static ks_code fill_caches(disc *d, ks_err *err)
{
    static const hwloc_obj_type_t types[] = {
        HWLOC_OBJ_L1CACHE, HWLOC_OBJ_L1ICACHE, HWLOC_OBJ_L2CACHE, HWLOC_OBJ_L2ICACHE,
        HWLOC_OBJ_L3CACHE, HWLOC_OBJ_L3ICACHE, HWLOC_OBJ_L4CACHE, HWLOC_OBJ_L5CACHE,
    };
    ks_report *r = d->r;
    uint32_t n = 0;
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        int k = hwloc_get_nbobjs_by_type(d->topo, types[t]);
        if (k > 0)
            n += (uint32_t)k;
    }
    if (n == 0)
        return KS_OK;
    ks_code rc = ks_report_alloc_caches(r, n, err);
    if (rc != KS_OK)
        return rc;
    uint32_t i = 0;
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        for (hwloc_obj_t o = hwloc_get_next_obj_by_type(d->topo, types[t], NULL); o && i < n;
             o = hwloc_get_next_obj_by_type(d->topo, types[t], o)) {
            ks_cache *c = &r->caches[i];
            c->level = (uint8_t)o->attr->cache.depth;
            c->type = o->attr->cache.type == HWLOC_OBJ_CACHE_DATA          ? 'd'
                      : o->attr->cache.type == HWLOC_OBJ_CACHE_INSTRUCTION ? 'i'
                                                                           : 'u';
            c->size_bytes = o->attr->cache.size;
            c->line_bytes = o->attr->cache.linesize;
            int w = o->cpuset ? hwloc_bitmap_weight(o->cpuset) : 0;
            c->n_cpus = 0;
            c->cpus = NULL;
            if (w > 0) {
                c->cpus = calloc((size_t)w, sizeof(*c->cpus));
                if (!c->cpus)
                    return ks_err_set(err, KS_ENOMEM, "out of memory listing cache cpus");
                unsigned id;
                hwloc_bitmap_foreach_begin(id, o->cpuset)
                {
                    if (c->n_cpus < (uint32_t)w)
                        c->cpus[c->n_cpus++] = (int32_t)id;
                }
                hwloc_bitmap_foreach_end();
            }
            o->userdata = (void *)(uintptr_t)(i + 1);
            i++;
        }
    }
    r->n_caches = i;
    return KS_OK;
}

/* Dense index of `o` among the objects seen so far (pointer identity). */
static int32_t dense_id(hwloc_obj_t *seen, uint32_t *n_seen, uint32_t cap, hwloc_obj_t o)
{
    for (uint32_t i = 0; i < *n_seen; i++)
        if (seen[i] == o)
            return (int32_t)i;
    if (*n_seen >= cap)
        return -1;
    seen[*n_seen] = o;
    return (int32_t)(*n_seen)++;
}

static hwloc_obj_t cluster_of(hwloc_topology_t t, hwloc_obj_t pu)
{
    for (hwloc_obj_t o = pu->parent; o; o = o->parent)
        if (o->type == HWLOC_OBJ_GROUP && o->subtype && strcmp(o->subtype, "Cluster") == 0)
            return o;
    hwloc_obj_t l2 = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_L2CACHE, pu);
    if (l2)
        return l2;
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_CORE, pu);
    return core ? core : pu;
}

static uint32_t count_distinct(const ks_report *r, size_t offset)
{
    /* Ids are dense logical indices < n_cpus, so a flag array is enough. */
    uint32_t n = 0;
    bool *seen = calloc(r->n_cpus + 1, sizeof(bool));
    if (!seen)
        return 0;
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        int32_t v;
        if (r->cpus[i].state == KS_CPU_OFFLINE)
            continue;
        memcpy(&v, (const char *)&r->cpus[i] + offset, sizeof(v));
        if (v >= 0 && (uint32_t)v <= r->n_cpus && !seen[v]) {
            seen[v] = true;
            n++;
        }
    }
    free(seen);
    return n;
}

static ks_code fill_cpus(disc *d, ks_err *err)
{
    ks_code rc = KS_OK;
    ks_report *r = d->r;
    hwloc_const_bitmap_t complete = hwloc_topology_get_complete_cpuset(d->topo);
    hwloc_const_bitmap_t online = hwloc_topology_get_topology_cpuset(d->topo);
    hwloc_obj_t *seen = NULL;
    int w = hwloc_bitmap_weight(complete);
    if (w <= 0)
        return ks_err_set(err, KS_EINVAL, "hwloc found no CPU");
    if (w > KS_REPORT_MAX_CPUS || hwloc_bitmap_last(complete) >= KS_REPORT_MAX_CPUS)
        return ks_err_set(err, KS_EINVAL, "host has more than %d CPUs", KS_REPORT_MAX_CPUS);
    rc = ks_report_alloc_cpus(r, (uint32_t)w, err);
    if (rc != KS_OK)
        return rc;
    d->scan = calloc((size_t)w, sizeof(*d->scan));
    seen = calloc((size_t)w, sizeof(*seen));
    if (!d->scan || !seen) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory building the cpu list");
        goto done;
    }
    uint32_t i = 0, n_seen = 0;
    bool has_die = hwloc_get_nbobjs_by_type(d->topo, HWLOC_OBJ_DIE) > 0;
    unsigned id;
    hwloc_bitmap_foreach_begin(id, complete)
    {
        ks_cpu *c = &r->cpus[i];
        cpu_scan *s = &d->scan[i];
        i++;
        memset(c, 0, sizeof(*c));
        c->id = (int32_t)id;
        /* The report schema has no "unknown" for these; offline CPUs are told
         * apart by their state and excluded from the distinct counts. */
        c->package = c->die = c->cluster = c->core = c->thread = 0;
        c->numa_node = c->l2_group = c->l3_group = c->kind = -1;
        c->state = KS_CPU_OFFLINE;
        hwloc_obj_t pu = hwloc_bitmap_isset(online, id)
                             ? hwloc_get_pu_obj_by_os_index(d->topo, id)
                             : NULL;
        s->pu = pu;
        if (!pu)
            continue;
        c->state = KS_CPU_ONLINE;
        hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(d->topo, HWLOC_OBJ_PACKAGE, pu);
        hwloc_obj_t die = hwloc_get_ancestor_obj_by_type(d->topo, HWLOC_OBJ_DIE, pu);
        hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(d->topo, HWLOC_OBJ_CORE, pu);
        c->package = pkg ? (int32_t)pkg->logical_index : 0;
        c->die = has_die && die ? (int32_t)die->logical_index : c->package;
        c->core = core ? (int32_t)core->logical_index : (int32_t)pu->logical_index;
        c->cluster = dense_id(seen, &n_seen, (uint32_t)w, cluster_of(d->topo, pu));
        /* SMT sibling index: position among the core's PUs (PUs are not always
         * direct children of their core, e.g. under a per-thread L1i). */
        c->thread = 0;
        if (core) {
            unsigned sib;
            hwloc_bitmap_foreach_begin(sib, core->cpuset)
            {
                if (sib >= id)
                    break;
                c->thread++;
            }
            hwloc_bitmap_foreach_end();
        }
        int node = pu->nodeset ? hwloc_bitmap_first(pu->nodeset) : -1;
        c->numa_node = node >= 0 ? node : -1;
        c->l2_group = cache_index(hwloc_get_ancestor_obj_by_type(d->topo, HWLOC_OBJ_L2CACHE, pu));
        c->l3_group = cache_index(hwloc_get_ancestor_obj_by_type(d->topo, HWLOC_OBJ_L3CACHE, pu));
    }
    hwloc_bitmap_foreach_end();
    r->n_cpus = i;
    r->n_packages = count_distinct(r, offsetof(ks_cpu, package));
    r->n_dies = count_distinct(r, offsetof(ks_cpu, die));
    r->n_clusters = count_distinct(r, offsetof(ks_cpu, cluster));
    r->n_cores = count_distinct(r, offsetof(ks_cpu, core));
done:
    free(seen);
    return rc;
}

static ks_code fill_numa(disc *d, ks_err *err)
{
    int n = hwloc_get_nbobjs_by_type(d->topo, HWLOC_OBJ_NUMANODE);
    if (n <= 0)
        return KS_OK;
    ks_code rc = ks_report_alloc_numa(d->r, (uint32_t)n, err);
    if (rc != KS_OK)
        return rc;
    uint32_t i = 0;
    for (hwloc_obj_t o = hwloc_get_next_obj_by_type(d->topo, HWLOC_OBJ_NUMANODE, NULL);
         o && i < (uint32_t)n; o = hwloc_get_next_obj_by_type(d->topo, HWLOC_OBJ_NUMANODE, o)) {
        d->r->numa[i].id = o->os_index == HWLOC_UNKNOWN_INDEX ? (int32_t)o->logical_index
                                                              : (int32_t)o->os_index;
        d->r->numa[i].memory_mib = o->attr->numanode.local_memory >> 20;
        i++;
    }
    d->r->n_numa = i;
    return KS_OK;
}

/* ---- per-CPU features ----------------------------------------------------------------- */

static void scan_cpuid(disc *d, uint32_t i, ks_cpuid_fn fn, void *ctx)
{
    ks_cpu *c = &d->r->cpus[i];
    cpu_scan *s = &d->scan[i];
    ks_feature_decode_cpuid(&c->native, fn, ctx);
    s->has_cpuid = true;
    s->has_core_type = ks_cpuid_core_type(&s->core, fn, ctx);
    ks_cpuid_freq_mhz(&s->cpuid_base_mhz, &s->cpuid_max_mhz, fn, ctx);
    s->has_core_key = ks_cpuid_core_key(&s->core_key, fn, ctx);
    if (!d->have_ident) {
        ks_cpuid_identify(&d->ident, fn, ctx);
        ks_cpuid_pmu_decode(&d->pmu, fn, ctx);
        d->have_ident = true;
    }
}

static bool scan_cpuinfo(disc *d, uint32_t i)
{
    if (!d->have_ci)
        return false;
    const char *flags = ks_discover__cpuinfo_flags(&d->ci, d->r->cpus[i].id);
    if (!flags)
        return false;
    ks_feature_from_cpuinfo(&d->r->cpus[i].native, (ks_arch)d->r->host.arch, flags, NULL);
    return true;
}

static ks_code scan_features_dump(disc *d, ks_err *err)
{
    for (uint32_t i = 0; i < d->r->n_cpus; i++) {
        ks_cpu *c = &d->r->cpus[i];
        if (c->state == KS_CPU_OFFLINE)
            continue;
        if ((uint32_t)c->id >= d->n_dumps || !d->dumps[c->id])
            return ks_err_set(err, KS_EINVAL, "cpuid dump '%s' lacks pu%d", d->src.dir, c->id);
        scan_cpuid(d, i, ks_cpuid_dump_fn, d->dumps[c->id]);
    }
    return KS_OK;
}

/*
 * Live: CPUID answers for the CPU it runs on, and CPUs of one host may differ
 * (hybrid parts, microcode, a fused-off unit), so run it pinned on each CPU.
 * The original affinity is restored whatever happens.
 */
static ks_code scan_features_live(disc *d, ks_err *err)
{
    ks_code rc = KS_OK;
    int32_t max_id = d->r->cpus[d->r->n_cpus - 1].id;
    size_t setsize = CPU_ALLOC_SIZE(max_id + 1);
    cpu_set_t *orig = CPU_ALLOC(max_id + 1), *one = CPU_ALLOC(max_id + 1);
    bool pinned = false;
    if (!orig || !one) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory allocating cpu sets");
        goto done;
    }
    CPU_ZERO_S(setsize, orig);
    bool can_pin = ks_cpuid_live_available() && sched_getaffinity(0, setsize, orig) == 0;
    for (uint32_t i = 0; i < d->r->n_cpus; i++) {
        ks_cpu *c = &d->r->cpus[i];
        if (c->state == KS_CPU_OFFLINE)
            continue;
        if (can_pin) {
            CPU_ZERO_S(setsize, one);
            CPU_SET_S((size_t)c->id, setsize, one);
            if (sched_setaffinity(0, setsize, one) == 0 && sched_getcpu() == c->id) {
                pinned = true;
                scan_cpuid(d, i, ks_cpuid_live_fn, NULL);
                continue;
            }
        }
        /* Not allowed to run there (cgroup, isolcpus) or not x86: what the kernel saw. */
        scan_cpuinfo(d, i);
    }
done:
    if (pinned && sched_setaffinity(0, setsize, orig) != 0 && rc == KS_OK)
        rc = ks_err_set(err, KS_EIO, "cannot restore the cpu affinity (errno %d)", errno);
    if (orig)
        CPU_FREE(orig);
    if (one)
        CPU_FREE(one);
    return rc;
}

/*
 * hwloc 2.9 builds some cores wrongly from CPUID dumps (Hygon Dhyana: four
 * SMT pairs in one "Core").  When CPUID's own core ids split a hwloc core,
 * they win: cores become (package, CPUID core id), numbered densely.
 */
static void fix_cores(disc *d)
{
    ks_report *r = d->r;
    bool split = false;
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        if (r->cpus[i].state == KS_CPU_OFFLINE)
            continue;
        if (!d->scan[i].has_core_key)
            return;
        for (uint32_t j = i + 1; j < r->n_cpus && !split; j++)
            split = r->cpus[j].state != KS_CPU_OFFLINE && r->cpus[j].core == r->cpus[i].core &&
                    d->scan[j].has_core_key && d->scan[j].core_key != d->scan[i].core_key;
    }
    if (!split)
        return;
    int32_t next = 0;
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        ks_cpu *c = &r->cpus[i];
        if (c->state == KS_CPU_OFFLINE)
            continue;
        int32_t core = -1, thread = 0;
        for (uint32_t j = 0; j < i; j++) {
            if (r->cpus[j].state == KS_CPU_OFFLINE || r->cpus[j].package != c->package ||
                d->scan[j].core_key != d->scan[i].core_key)
                continue;
            core = r->cpus[j].core;
            thread++;
        }
        c->core = core >= 0 ? core : next++;
        c->thread = thread;
    }
    r->n_cores = count_distinct(r, offsetof(ks_cpu, core));
}

/* ---- core kinds ----------------------------------------------------------------------- */

static const char *info_of(const struct hwloc_info_s *infos, unsigned n, const char *name)
{
    for (unsigned i = 0; i < n; i++)
        if (infos[i].name && strcmp(infos[i].name, name) == 0)
            return infos[i].value;
    return NULL;
}

static uint32_t u32_of(const char *s)
{
    uint32_t v = 0;
    if (!s)
        return 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > 400000000u)
            return 0;
        v = v * 10 + (uint32_t)(*s - '0');
    }
    return v;
}

/* Whether hwloc's kinds separate CPUs exactly as their CPUID core types do. */
static bool hwloc_kinds_match_cpuid(disc *d, const int *hw_kind)
{
    const ks_report *r = d->r;
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        if (!d->scan[i].has_core_type)
            continue;
        for (uint32_t j = i + 1; j < r->n_cpus; j++) {
            if (!d->scan[j].has_core_type)
                continue;
            bool same_type = strcmp(d->scan[i].core.name, d->scan[j].core.name) == 0;
            if (same_type != (hw_kind[i] == hw_kind[j]))
                return false;
        }
    }
    return true;
}

static ks_code kinds_from_cpuid(disc *d, ks_err *err)
{
    ks_report *r = d->r;
    const char *names[8];
    int32_t ranks[8];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        if (!d->scan[i].has_core_type)
            continue;
        uint32_t k = 0;
        while (k < n && strcmp(names[k], d->scan[i].core.name) != 0)
            k++;
        if (k == n && n < 8) {
            names[n] = d->scan[i].core.name;
            ranks[n] = d->scan[i].core.rank;
            n++;
        }
    }
    /* Ascending rank, as the report requires. */
    for (uint32_t a = 1; a < n; a++)
        for (uint32_t b = a; b > 0 && ranks[b - 1] > ranks[b]; b--) {
            const char *tn = names[b];
            int32_t tr = ranks[b];
            names[b] = names[b - 1];
            ranks[b] = ranks[b - 1];
            names[b - 1] = tn;
            ranks[b - 1] = tr;
        }
    ks_code rc = ks_report_alloc_kinds(r, n, err);
    if (rc != KS_OK)
        return rc;
    for (uint32_t k = 0; k < n; k++) {
        ks_kind *kd = &r->kinds[k];
        memset(kd, 0, sizeof(*kd));
        cpy(kd->name, sizeof(kd->name), names[k]);
        kd->efficiency_rank = (int32_t)k;
        kd->kind_class = k + 1 == n ? KS_KIND_PERFORMANCE : KS_KIND_EFFICIENCY;
    }
    r->n_kinds = n;
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        if (!d->scan[i].has_core_type)
            continue;
        for (uint32_t k = 0; k < n; k++)
            if (strcmp(names[k], d->scan[i].core.name) == 0)
                r->cpus[i].kind = (int32_t)k;
    }
    return KS_OK;
}

static ks_code fill_kinds(disc *d, ks_err *err)
{
    ks_code rc = KS_OK;
    ks_report *r = d->r;
    int nk = hwloc_cpukinds_get_nr(d->topo, 0);
    uint32_t n_types = 0;
    const char *first_type = NULL;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    int *hw_kind = calloc(r->n_cpus, sizeof(int));
    if (!set || !hw_kind) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory reading cpu kinds");
        goto done;
    }
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        hw_kind[i] = -1;
        if (!d->scan[i].has_core_type)
            continue;
        if (!first_type) {
            first_type = d->scan[i].core.name;
            n_types = 1;
        } else if (n_types == 1 && strcmp(first_type, d->scan[i].core.name) != 0) {
            n_types = 2;
        }
    }
    for (int k = 0; k < nk; k++) {
        if (hwloc_cpukinds_get_info(d->topo, (unsigned)k, set, NULL, NULL, NULL, 0) != 0)
            continue;
        for (uint32_t i = 0; i < r->n_cpus; i++)
            if (hwloc_bitmap_isset(set, (unsigned)r->cpus[i].id))
                hw_kind[i] = k;
    }
    if (n_types >= 2 && (nk < 2 || !hwloc_kinds_match_cpuid(d, hw_kind))) {
        rc = kinds_from_cpuid(d, err);
        goto done;
    }
    if (nk <= 0)
        goto done; /* not hybrid-aware: kinds stay empty, cpu.kind -1 */

    rc = ks_report_alloc_kinds(r, (uint32_t)nk, err);
    if (rc != KS_OK)
        goto done;
    int max_eff = -1;
    for (int k = 0; k < nk; k++) {
        int eff = -1;
        unsigned n_infos = 0;
        struct hwloc_info_s *infos = NULL;
        ks_kind *kd = &r->kinds[k];
        memset(kd, 0, sizeof(*kd));
        hwloc_cpukinds_get_info(d->topo, (unsigned)k, set, &eff, &n_infos, &infos, 0);
        /* Unknown efficiencies (-1) come in no order: fall back to hwloc's order. */
        kd->efficiency_rank = eff >= 0 ? eff : k;
        if (kd->efficiency_rank > max_eff)
            max_eff = kd->efficiency_rank;
        kd->max_mhz = u32_of(info_of(infos, n_infos, "FrequencyMaxMHz"));
        const char *name = info_of(infos, n_infos, "CoreType");
        for (uint32_t i = 0; !name && i < r->n_cpus; i++)
            if (hw_kind[i] == k && d->scan[i].has_core_type)
                name = d->scan[i].core.name;
        if (name)
            cpy(kd->name, sizeof(kd->name), name);
        else
            snprintf(kd->name, sizeof(kd->name), "kind%d", k);
    }
    for (int k = 0; k < nk; k++)
        r->kinds[k].kind_class =
            r->kinds[k].efficiency_rank == max_eff ? KS_KIND_PERFORMANCE : KS_KIND_EFFICIENCY;
    r->n_kinds = (uint32_t)nk;
    for (uint32_t i = 0; i < r->n_cpus; i++)
        r->cpus[i].kind = hw_kind[i];
done:
    free(hw_kind);
    hwloc_bitmap_free(set);
    return rc;
}

/* ---- frequencies ---------------------------------------------------------------------- */

static void fill_freqs(disc *d)
{
    ks_report *r = d->r;
    int nk = hwloc_cpukinds_get_nr(d->topo, 0);
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        ks_cpu *c = &r->cpus[i];
        uint64_t khz;
        char rel[128];
        if (c->state == KS_CPU_OFFLINE)
            continue;
        if (d->src.kind != KS_DISCOVER_CPUID_DUMP) {
            snprintf(rel, sizeof(rel), "/sys/devices/system/cpu/cpu%d/cpufreq/cpuinfo_max_freq",
                     c->id);
            if (ks_discover__read_u64(&khz, d->src.root, rel) && khz / 1000 <= UINT32_MAX)
                c->max_mhz = (uint32_t)(khz / 1000);
            snprintf(rel, sizeof(rel), "/sys/devices/system/cpu/cpu%d/cpufreq/base_frequency",
                     c->id);
            if (ks_discover__read_u64(&khz, d->src.root, rel) && khz / 1000 <= UINT32_MAX)
                c->base_mhz = (uint32_t)(khz / 1000);
        }
        if (!c->max_mhz)
            c->max_mhz = d->scan[i].cpuid_max_mhz;
        if (!c->base_mhz)
            c->base_mhz = d->scan[i].cpuid_base_mhz;
        for (int k = 0; set && k < nk && (!c->max_mhz || !c->base_mhz); k++) {
            unsigned n_infos = 0;
            struct hwloc_info_s *infos = NULL;
            if (hwloc_cpukinds_get_info(d->topo, (unsigned)k, set, NULL, &n_infos, &infos, 0) !=
                    0 ||
                !hwloc_bitmap_isset(set, (unsigned)c->id))
                continue;
            if (!c->max_mhz)
                c->max_mhz = u32_of(info_of(infos, n_infos, "FrequencyMaxMHz"));
            if (!c->base_mhz)
                c->base_mhz = u32_of(info_of(infos, n_infos, "FrequencyBaseMHz"));
        }
    }
    /* A kind without a hwloc frequency takes the fastest of its CPUs. */
    for (uint32_t k = 0; k < r->n_kinds; k++) {
        if (r->kinds[k].max_mhz)
            continue;
        for (uint32_t i = 0; i < r->n_cpus; i++)
            if (r->cpus[i].kind == (int32_t)k && r->cpus[i].max_mhz > r->kinds[k].max_mhz)
                r->kinds[k].max_mhz = r->cpus[i].max_mhz;
    }
    hwloc_bitmap_free(set);
}

/* ---- host identity -------------------------------------------------------------------- */

static void sanitize_id(char *out, size_t cap, const char *prefix, const char *name)
{
    size_t o = 0;
    for (const char *p = prefix; *p && o + 1 < cap && o + 1 < KS_ID_MAX; p++)
        out[o++] = *p;
    for (const char *p = name; *p && o + 1 < cap && o + 1 < KS_ID_MAX; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        out[o++] = ok ? ch : '-';
    }
    out[o] = '\0';
}

/* A stable, UUID-shaped boot id for a fixture (FNV-1a of its name, twice). */
static void fixture_boot_id(char *out, size_t cap, const char *name)
{
    uint64_t h1 = 1469598103934665603ull, h2 = 1099511628211ull * 31;
    for (const char *p = name; *p; p++) {
        h1 = (h1 ^ (unsigned char)*p) * 1099511628211ull;
        h2 = (h2 ^ (unsigned char)*p) * 1099511628211ull + 7;
    }
    snprintf(out, cap, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(h1 >> 32),
             (unsigned)(h1 >> 16) & 0xffff, (unsigned)h1 & 0xffff, (unsigned)(h2 >> 48),
             (unsigned long long)(h2 & 0xffffffffffffull));
}

static ks_code fill_host(disc *d, ks_err *err)
{
    ks_report *r = d->r;
    ks_host_info *h = &r->host;
    const ks_discover_options *o = d->opts;
    hwloc_obj_t root = hwloc_get_root_obj(d->topo);
    hwloc_obj_t pkg = hwloc_get_obj_by_type(d->topo, HWLOC_OBJ_PACKAGE, 0);
    bool live = d->src.kind == KS_DISCOVER_LIVE;

    cpy(h->agent_version, sizeof(h->agent_version), KS_VERSION);
    h->generation = o && o->generation ? o->generation : 1;
    if (live)
        cpy(h->source, sizeof(h->source), "live");
    else
        snprintf(h->source, sizeof(h->source), "fixture:%s", d->src.name);

    /* identity: CPUID first, cpuinfo for what CPUID does not say (microcode) */
    if (d->have_ident && d->ident.vendor[0]) {
        cpy(h->vendor, sizeof(h->vendor), d->ident.vendor);
        cpy(h->model_name, sizeof(h->model_name), d->ident.brand);
        h->family = d->ident.family;
        h->model = d->ident.model;
        h->stepping = d->ident.stepping;
    } else if (d->have_ci && d->ci.has_ident) {
        cpy(h->vendor, sizeof(h->vendor), d->ci.vendor);
        cpy(h->model_name, sizeof(h->model_name), d->ci.model_name);
        h->family = d->ci.family;
        h->model = d->ci.model;
        h->stepping = d->ci.stepping;
    }
    if (!h->model_name[0] && d->have_ci)
        cpy(h->model_name, sizeof(h->model_name), d->ci.model_name);
    if (!h->model_name[0] && pkg)
        cpy(h->model_name, sizeof(h->model_name), hwloc_obj_get_info_by_name(pkg, "CPUModel"));
    if (d->have_ci)
        cpy(h->microcode, sizeof(h->microcode), d->ci.microcode);

    /* kernel and host name */
    struct utsname u;
    if (live && uname(&u) == 0)
        cpy(h->kernel, sizeof(h->kernel), u.release);
    else if (!live)
        cpy(h->kernel, sizeof(h->kernel), hwloc_obj_get_info_by_name(root, "OSRelease"));
    if (o && o->hostname) {
        cpy(h->hostname, sizeof(h->hostname), o->hostname);
    } else if (live) {
        char hn[256] = "";
        if (gethostname(hn, sizeof(hn) - 1) == 0)
            cpy(h->hostname, sizeof(h->hostname), hn);
    } else {
        const char *hn = hwloc_obj_get_info_by_name(root, "HostName");
        cpy(h->hostname, sizeof(h->hostname), hn ? hn : d->src.name);
    }

    /* host id */
    if (o && o->host_id) {
        if (!ks_id_valid(o->host_id))
            return ks_err_set_field(err, KS_EINVAL, "host_id",
                                    "invalid host id '%.64s' (1..63 of [A-Za-z0-9._-])",
                                    o->host_id);
        cpy(h->id, sizeof(h->id), o->host_id);
    } else if (live) {
        char mid[128];
        if (ks_discover__read_line(mid, sizeof(mid), "", "/etc/machine-id") && ks_id_valid(mid))
            cpy(h->id, sizeof(h->id), mid);
        else
            sanitize_id(h->id, sizeof(h->id), "host-", h->hostname[0] ? h->hostname : "unknown");
    } else {
        sanitize_id(h->id, sizeof(h->id), "fx-", d->src.name);
    }

    /* boot id */
    if (o && o->boot_id) {
        if (!ks_id_valid(o->boot_id))
            return ks_err_set_field(err, KS_EINVAL, "boot_id", "invalid boot id '%.64s'",
                                    o->boot_id);
        cpy(h->boot_id, sizeof(h->boot_id), o->boot_id);
    } else if (d->src.kind == KS_DISCOVER_CPUID_DUMP ||
               !ks_discover__read_line(h->boot_id, sizeof(h->boot_id), d->src.root,
                                       "/proc/sys/kernel/random/boot_id")) {
        fixture_boot_id(h->boot_id, sizeof(h->boot_id), live ? h->hostname : d->src.name);
    }

    /* memory: what hwloc saw in the NUMA nodes, else the kernel's total */
    for (uint32_t i = 0; i < r->n_numa; i++)
        h->memory_mib += r->numa[i].memory_mib;
    if (!h->memory_mib && live) {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages > 0 && psz > 0)
            h->memory_mib = (uint64_t)pages * (uint64_t)psz >> 20;
    }
    return KS_OK;
}

static ks_code fill_pmu(disc *d, ks_err *err)
{
    ks_report *r = d->r;
    r->pmu.version = d->pmu.version;
    r->pmu.gp_counters = d->pmu.gp_counters;
    r->pmu.gp_width = d->pmu.gp_width;
    r->pmu.fixed_counters = d->pmu.fixed_counters;
    r->pmu.fixed_width = d->pmu.fixed_width;
    unsigned n = (unsigned)__builtin_popcount(d->pmu.events);
    if (n) {
        r->pmu.events = calloc(n, sizeof(*r->pmu.events));
        if (!r->pmu.events)
            return ks_err_set(err, KS_ENOMEM, "out of memory listing pmu events");
        for (unsigned i = 0; i < KS_CPUID_PMU_EVENTS; i++)
            if (d->pmu.events & (1u << i))
                cpy(r->pmu.events[r->pmu.n_events++], KS_NAME_MAX, ks_cpuid_pmu_event_name(i));
    }
    if (d->src.kind == KS_DISCOVER_CPUID_DUMP)
        return KS_OK;
    return ks_discover__pmu_names(r, d->src.root, err);
}

static int arch_of(disc *d)
{
    if (d->src.kind == KS_DISCOVER_CPUID_DUMP)
        return KS_ARCH_X86_64;
    const char *a = hwloc_obj_get_info_by_name(hwloc_get_root_obj(d->topo), "Architecture");
    int v = a ? ks_arch_from_str(a) : -1;
    if (v < 0 && d->src.kind == KS_DISCOVER_LIVE) {
        struct utsname u;
        if (uname(&u) == 0)
            v = ks_arch_from_str(u.machine);
    }
    if (v < 0 && d->have_ci)
        v = d->ci.arch;
    /* 32-bit Arm ("arm", "armv7l") has no arch of its own in the catalogue. */
    if (v < 0 && a && strncmp(a, "arm", 3) == 0)
        v = KS_ARCH_ARM64;
    return v < 0 ? KS_ARCH_X86_64 : v;
}

/* ---- entry point ---------------------------------------------------------------------- */

ks_code ks_discover_host(ks_report **out, const ks_discover_options *opts, ks_err *err)
{
    ks_code rc;
    disc d;
    memset(&d, 0, sizeof(d));
    d.opts = opts;
    d.ci.arch = -1;

    rc = ks_discover__src_open(&d.src, opts, err);
    if (rc != KS_OK)
        return rc;
    if (d.src.kind == KS_DISCOVER_CPUID_DUMP) {
        rc = load_dumps(&d, err);
        if (rc != KS_OK)
            goto done;
    } else {
        ks_err sub;
        rc = ks_discover__cpuinfo_load(&d.ci, d.src.root, &sub);
        if (rc == KS_ENOMEM) {
            if (err)
                *err = sub;
            goto done;
        }
        d.have_ci = rc == KS_OK; /* optional: hwloc and CPUID carry on without it */
        rc = KS_OK;
    }
    rc = load_topology(&d, err);
    if (rc != KS_OK)
        goto done;
    rc = ks_report_new(&d.r, err);
    if (rc != KS_OK)
        goto done;
    d.r->host.arch = (uint8_t)arch_of(&d);
    rc = fill_caches(&d, err);
    if (rc != KS_OK)
        goto done;
    rc = fill_cpus(&d, err);
    if (rc != KS_OK)
        goto done;
    rc = fill_numa(&d, err);
    if (rc != KS_OK)
        goto done;
    if (d.src.kind == KS_DISCOVER_CPUID_DUMP) {
        rc = scan_features_dump(&d, err);
    } else if (d.src.kind == KS_DISCOVER_LIVE) {
        rc = scan_features_live(&d, err);
    } else {
        for (uint32_t i = 0; i < d.r->n_cpus; i++)
            if (d.r->cpus[i].state != KS_CPU_OFFLINE)
                scan_cpuinfo(&d, i);
    }
    if (rc != KS_OK)
        goto done;
    fix_cores(&d);
    rc = fill_kinds(&d, err);
    if (rc != KS_OK)
        goto done;
    fill_freqs(&d);
    rc = fill_host(&d, err);
    if (rc != KS_OK)
        goto done;
    rc = fill_pmu(&d, err);
    if (rc != KS_OK)
        goto done;
    if (d.src.kind != KS_DISCOVER_CPUID_DUMP) {
        rc = ks_discover__vulns(d.r, d.src.root, err);
        if (rc != KS_OK)
            goto done;
    }
    ks_report_derive_state(d.r);
    *out = d.r;
    d.r = NULL;
done:
    ks_report_free(d.r);
    free(d.scan);
    for (uint32_t i = 0; i < d.n_dumps; i++)
        ks_cpuid_dump_free(d.dumps[i]);
    free(d.dumps);
    if (d.have_ci)
        ks_discover__cpuinfo_destroy(&d.ci);
    if (d.topo)
        hwloc_topology_destroy(d.topo);
    ks_discover__src_close(&d.src);
    return rc;
}
