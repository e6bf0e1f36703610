/*
 * place_bench.c - in-process placement benchmark of libks-sched.
 *
 * Builds a synthetic fleet (hybrid 20-CPU clients, 128- and 256-CPU two-node
 * servers, ~5% of hosts with degraded cores; pool "gen" = every other 128-CPU
 * server, ~20% of the hosts, for the pool shape), fills it to a target
 * allocation, then runs a mixed stream of placements and deletions, timing
 * each ks_sched_place() decision.  Finally rebuilds the index from scratch
 * (host_update for every host + vm_add for every live VM), as kintsugid does
 * at start, and checks it equals the live one.
 *
 * Output: a table for people and one `place_bench key=value ...` line per
 * fleet size for scripts.
 *
 * Usage: place_bench [--hosts N[,N...]] [--ops N] [--fill PCT] [--seed N]
 * Defaults: --hosts 1000,10000 --ops 200000 --fill 60 --seed 1
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ks_feature.h"
#include "ks_report.h"
#include "ks_sched.h"
#include "ks_vm.h"

#define BASE "fpu tsc cx8 cmov mmx fxsr sse sse2 pni ssse3 sse4_1 sse4_2 popcnt"
#define CLIENT_P BASE " aes avx avx2 fma bmi1 bmi2 sha_ni"
#define CLIENT_E BASE " aes avx avx2 fma bmi1 sha_ni"
#define SERVER CLIENT_P " avx512f avx512dq avx512bw avx512vl avx512cd"

static uint64_t g_rng;

static uint32_t rnd(uint32_t n)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return n ? (uint32_t)((g_rng * UINT64_C(2685821657736338717)) >> 33) % n : 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t rss_bytes(void)
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

static ks_featset fs(const char *names)
{
    ks_featset s;
    char buf[1024];
    ks_featset_clear(&s);
    snprintf(buf, sizeof(buf), "%s", names);
    for (char *t = buf; *t;) {
        char *end = strchr(t, ' ');
        if (end)
            *end = '\0';
        if (*t && ks_feature_add_name(&s, t, NULL) != KS_OK) {
            fprintf(stderr, "place_bench: unknown feature '%s'\n", t);
            exit(1);
        }
        if (!end)
            break;
        t = end + 1;
    }
    return s;
}

static ks_featset g_client_p, g_client_e, g_server, g_avx512f, g_aes_closure;

#define POOL "gen"

/* Host i's kind: 0-3 hybrid, 4-7 server 128, 8-9 server 256 (host_report's
 * first draw). */
static uint32_t host_kind(uint32_t i)
{
    uint64_t save = g_rng;
    g_rng = UINT64_C(0x9E3779B97F4A7C15) ^ ((uint64_t)i * 7919 + 1);
    uint32_t kind = rnd(10);
    g_rng = save;
    return kind;
}

static bool pool_member(uint32_t i)
{
    uint32_t k = host_kind(i);
    return k >= 4 && k < 8 && i % 2 == 0;
}

/* The deterministic report of host i (same on every call). */
static ks_report *host_report(uint32_t i)
{
    uint64_t save = g_rng;
    g_rng = UINT64_C(0x9E3779B97F4A7C15) ^ ((uint64_t)i * 7919 + 1);
    uint32_t kind = rnd(10); /* 0-3 hybrid, 4-7 server 128, 8-9 server 256 */
    bool hybrid = kind < 4;
    uint32_t n = hybrid ? 20 : kind < 8 ? 128 : 256;
    uint32_t n_numa = hybrid ? 1 : 2;
    ks_report *r = NULL;
    if (ks_report_new(&r, NULL) != KS_OK || ks_report_alloc_cpus(r, n, NULL) != KS_OK ||
        ks_report_alloc_numa(r, n_numa, NULL) != KS_OK ||
        (hybrid && ks_report_alloc_kinds(r, 2, NULL) != KS_OK)) {
        fprintf(stderr, "place_bench: out of memory\n");
        exit(1);
    }
    snprintf(r->host.id, sizeof(r->host.id), "h%05u", i);
    snprintf(r->host.vendor, sizeof(r->host.vendor), "GenuineIntel");
    snprintf(r->host.model_name, sizeof(r->host.model_name), "%s",
             hybrid ? "12th Gen Intel(R) Core(TM) i7-12700" : "Intel(R) Xeon(R) Platinum 8480+");
    r->pmu.version = 5;
    r->pmu.gp_counters = 8;
    if (hybrid) {
        snprintf(r->kinds[0].name, sizeof(r->kinds[0].name), "IntelAtom");
        r->kinds[0].kind_class = KS_KIND_EFFICIENCY;
        snprintf(r->kinds[1].name, sizeof(r->kinds[1].name), "IntelCore");
        r->kinds[1].kind_class = KS_KIND_PERFORMANCE;
        r->kinds[1].efficiency_rank = 1;
    }
    for (uint32_t k = 0; k < n_numa; k++) {
        r->numa[k].id = (int32_t)k;
        r->numa[k].memory_mib = 262144;
    }
    bool scarred = rnd(100) < 5;
    for (uint32_t c = 0; c < n; c++) {
        ks_cpu *x = &r->cpus[c];
        bool perf = !hybrid || c < 16;
        x->id = (int32_t)c;
        x->numa_node = (int32_t)(c * n_numa / n);
        x->core = (int32_t)(perf ? c / 2 : c);
        x->thread = (int32_t)(perf ? c % 2 : 0);
        x->l2_group = perf ? x->core : (int32_t)(16 + (c - 16) / 4);
        x->cluster = x->l2_group;
        x->l3_group = x->numa_node;
        x->kind = hybrid ? (perf ? 1 : 0) : -1;
        x->max_mhz = hybrid ? (perf ? 4900 : 3600) : 3800;
        x->native = hybrid ? (perf ? g_client_p : g_client_e) : g_server;
        x->usable = x->native;
        x->state = KS_CPU_ONLINE;
        if (scarred && rnd(100) < 6) {
            ks_featset_andnot(&x->usable, &x->usable, hybrid ? &g_aes_closure : &g_avx512f);
            x->state = KS_CPU_DEGRADED;
        }
        x->reserved = c == 0;
    }
    g_rng = save;
    return r;
}

typedef struct shape {
    uint32_t n_p, n_e, n_any;
    const char *required;
    uint8_t placement, smt;
    bool aa;
    bool pool; /* in pool POOL */
} shape;

static const shape g_shapes[] = {
    {0, 0, 1, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, false},
    {0, 0, 2, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, false},
    {0, 0, 2, "avx2", KS_PLACE_PACK, KS_SMT_ALLOW, false, false},
    {0, 0, 4, "avx2 aes", KS_PLACE_PACK, KS_SMT_ALLOW, false, false},
    {0, 0, 4, "", KS_PLACE_SPREAD, KS_SMT_ALLOW, true, false},
    {4, 0, 0, "avx512f", KS_PLACE_PACK, KS_SMT_ALLOW, false, false},
    {8, 0, 0, "avx512f", KS_PLACE_PACK, KS_SMT_ISOLATE, false, false},
    {2, 4, 0, "avx2", KS_PLACE_PACK, KS_SMT_ALLOW, false, false},
    {0, 4, 0, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, false},
    {0, 0, 8, "sha_ni", KS_PLACE_SPREAD, KS_SMT_ALLOW, false, false},
    {16, 0, 0, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, false},
    {0, 0, 1, "aes", KS_PLACE_PACK, KS_SMT_ALLOW, false, false},
    {0, 0, 4, "", KS_PLACE_PACK, KS_SMT_ALLOW, false, true},
};
#define N_SHAPES (sizeof(g_shapes) / sizeof(g_shapes[0]))

static ks_featset g_shape_req[N_SHAPES];

static void make_req(ks_vm_request *q, uint32_t vm_id, uint32_t shape_ix)
{
    const shape *sh = &g_shapes[shape_ix];
    memset(q, 0, sizeof(*q));
    snprintf(q->name, sizeof(q->name), "vm-%u", vm_id);
    q->n_performance = sh->n_p;
    q->n_efficiency = sh->n_e;
    q->n_any = sh->n_any;
    q->memory_mib = 2048u * (sh->n_p + sh->n_e + sh->n_any);
    q->required = g_shape_req[shape_ix];
    q->placement = sh->placement;
    q->smt = sh->smt;
    if (sh->aa)
        snprintf(q->anti_affinity_group, sizeof(q->anti_affinity_group), "g%u", vm_id % 64);
    if (sh->pool)
        snprintf(q->pool, sizeof(q->pool), "%s", POOL);
}

typedef struct live {
    uint32_t *ids;  /* vm id */
    uint8_t *shape; /* shape index */
    uint32_t n, cap;
} live;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static ks_fleet *build(uint32_t n_hosts, uint64_t *cpus, double *ms)
{
    ks_fleet *f = NULL;
    ks_err err;
    if (ks_fleet_new(&f, &err) != KS_OK)
        exit(1);
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < n_hosts; i++) {
        ks_report *r = host_report(i);
        if (cpus)
            *cpus += r->n_cpus;
        if (ks_fleet_host_update(f, r, NULL, &err) != KS_OK) {
            fprintf(stderr, "place_bench: host_update: %s\n", err.msg);
            exit(1);
        }
        ks_report_free(r);
    }
    char(*ids)[KS_ID_MAX] = calloc(n_hosts ? n_hosts : 1, KS_ID_MAX);
    const char **ptrs = calloc(n_hosts ? n_hosts : 1, sizeof(char *));
    uint32_t n_pool = 0;
    if (!ids || !ptrs)
        exit(1);
    for (uint32_t i = 0; i < n_hosts; i++)
        if (pool_member(i)) {
            snprintf(ids[n_pool], KS_ID_MAX, "h%05u", i);
            ptrs[n_pool] = ids[n_pool];
            n_pool++;
        }
    if (ks_fleet_pool_set(f, POOL, ptrs, n_pool, &err) != KS_OK) {
        fprintf(stderr, "place_bench: pool_set: %s\n", err.msg);
        exit(1);
    }
    free(ids);
    free(ptrs);
    *ms = (double)(now_ns() - t0) / 1e6;
    return f;
}

static void run(uint32_t n_hosts, uint32_t ops, uint32_t fill_pct)
{
    ks_err err;
    uint64_t n_cpus = 0;
    double build_ms;
    size_t rss0 = rss_bytes();
    ks_fleet *f = build(n_hosts, &n_cpus, &build_ms);
    live lv = {0};
    lv.cap = 1024;
    lv.ids = malloc(lv.cap * sizeof(uint32_t));
    lv.shape = malloc(lv.cap);
    uint32_t next_id = 0;
    uint64_t allocated = 0, target = n_cpus * fill_pct / 100;
    uint64_t fill_fail = 0;
    uint64_t t_fill = now_ns();
    ks_vm_request q;

    /* fill */
    uint32_t fill_streak = 0;
    while (allocated < target) {
        uint32_t sh = rnd(N_SHAPES);
        make_req(&q, next_id, sh);
        ks_plan *p = NULL;
        if (ks_sched_place(&p, f, &q, NULL, &err) != KS_OK) {
            fill_fail++;
            if (++fill_streak > 500)
                break; /* the fleet is as full as these shapes get */
            continue;
        }
        if (ks_fleet_vm_add(f, &q, p, &err) != KS_OK) {
            fprintf(stderr, "place_bench: vm_add: %s\n", err.msg);
            exit(1);
        }
        allocated += p->n_vcpus;
        fill_streak = 0;
        ks_plan_free(p);
        if (lv.n == lv.cap) {
            lv.cap *= 2;
            lv.ids = realloc(lv.ids, lv.cap * sizeof(uint32_t));
            lv.shape = realloc(lv.shape, lv.cap);
            if (!lv.ids || !lv.shape)
                exit(1);
        }
        lv.ids[lv.n] = next_id++;
        lv.shape[lv.n] = (uint8_t)sh;
        lv.n++;
    }
    double fill_s = (double)(now_ns() - t_fill) / 1e9;
    uint32_t fill_vms = lv.n;

    /* steady state: place then delete a random VM, timing each decision */
    uint64_t *lat = malloc((size_t)ops * sizeof(uint64_t));
    uint64_t *lat_ok = malloc((size_t)ops * sizeof(uint64_t));
    uint64_t *shape_lat[N_SHAPES];
    uint32_t shape_n[N_SHAPES] = {0};
    for (size_t i = 0; i < N_SHAPES; i++)
        shape_lat[i] = malloc((size_t)ops * sizeof(uint64_t));
    uint32_t n_lat = 0, n_ok = 0, placed = 0, failed = 0;
    uint64_t t_run = now_ns(), t_decide = 0;
    for (uint32_t op = 0; op < ops; op++) {
        uint32_t sh = rnd(N_SHAPES);
        make_req(&q, next_id, sh);
        ks_plan *p = NULL;
        uint64_t t0 = now_ns();
        ks_code rc = ks_sched_place(&p, f, &q, NULL, &err);
        uint64_t dt = now_ns() - t0;
        t_decide += dt;
        lat[n_lat++] = dt;
        if (rc == KS_OK)
            lat_ok[n_ok++] = dt;
        shape_lat[sh][shape_n[sh]++] = dt | (uint64_t)(rc == KS_OK) << 63;
        if (rc == KS_OK) {
            if (ks_fleet_vm_add(f, &q, p, &err) != KS_OK)
                exit(1);
            ks_plan_free(p);
            placed++;
            if (lv.n == lv.cap) {
                lv.cap *= 2;
                lv.ids = realloc(lv.ids, lv.cap * sizeof(uint32_t));
                lv.shape = realloc(lv.shape, lv.cap);
                if (!lv.ids || !lv.shape)
                    exit(1);
            }
            lv.ids[lv.n] = next_id++;
            lv.shape[lv.n] = (uint8_t)sh;
            lv.n++;
        } else {
            failed++;
        }
        /* one deletion per placement keeps the fleet at its filled level */
        if (rc == KS_OK && lv.n) {
            uint32_t k = rnd(lv.n);
            char name[KS_ID_MAX];
            snprintf(name, sizeof(name), "vm-%u", lv.ids[k]);
            if (ks_fleet_vm_remove(f, name, &err) != KS_OK)
                exit(1);
            lv.ids[k] = lv.ids[lv.n - 1];
            lv.shape[k] = lv.shape[lv.n - 1];
            lv.n--;
        }
    }
    double run_s = (double)(now_ns() - t_run) / 1e9;
    qsort(lat, n_lat, sizeof(uint64_t), cmp_u64);
    double p50 = n_lat ? lat[n_lat / 2] / 1e3 : 0;
    double p99 = n_lat ? lat[(size_t)(n_lat * 0.99)] / 1e3 : 0;
    double p999 = n_lat ? lat[(size_t)(n_lat * 0.999)] / 1e3 : 0;
    double pmax = n_lat ? lat[n_lat - 1] / 1e3 : 0;
    qsort(lat_ok, n_ok, sizeof(uint64_t), cmp_u64);
    double ok_p99 = n_ok ? lat_ok[(size_t)(n_ok * 0.99)] / 1e3 : 0;
    size_t index_bytes = ks_fleet_memory_bytes(f);
    size_t rss1 = rss_bytes();

    /* rebuild: every host + every live VM, as at start from the store */
    uint64_t t_rb = now_ns();
    double hosts_ms;
    ks_fleet *g = build(n_hosts, NULL, &hosts_ms);
    for (uint32_t i = 0; i < lv.n; i++) {
        char name[KS_ID_MAX];
        snprintf(name, sizeof(name), "vm-%u", lv.ids[i]);
        make_req(&q, lv.ids[i], lv.shape[i]);
        if (ks_fleet_vm_add(g, &q, ks_fleet_vm_get_plan(f, name), &err) != KS_OK) {
            fprintf(stderr, "place_bench: rebuild vm_add: %s\n", err.msg);
            exit(1);
        }
    }
    double rebuild_ms = (double)(now_ns() - t_rb) / 1e6;
    bool equal = ks_fleet_equal(f, g, &err);

    double decisions_per_s = n_lat ? n_lat / (t_decide / 1e9) : 0;
    double placements_per_s = run_s > 0 ? placed / run_s : 0;
    printf("\n== place_bench: %u hosts, %llu cpus, fill %u%% ==\n", n_hosts,
           (unsigned long long)n_cpus, fill_pct);
    printf("  %-28s %12.1f ms\n", "initial index build", build_ms);
    printf("  %-28s %12u vms, %.0f%% of cpus (%.1f s, %llu no capacity)\n", "fill", fill_vms,
           100.0 * (double)allocated / (double)n_cpus, fill_s, (unsigned long long)fill_fail);
    printf("  %-28s %12u (%u placed, %u no capacity)\n", "decisions timed", n_lat, placed, failed);
    printf("  %-28s %12.0f /s\n", "decisions (place only)", decisions_per_s);
    printf("  %-28s %12.0f /s\n", "placements (place+commit+del)", placements_per_s);
    printf("  %-28s %12.1f us\n", "decision p50", p50);
    printf("  %-28s %12.1f us\n", "decision p99", p99);
    printf("  %-28s %12.1f us\n", "decision p99.9", p999);
    printf("  %-28s %12.1f us\n", "decision max", pmax);
    printf("  %-28s %12.1f us\n", "successful decision p99", ok_p99);
    printf("  %-28s %12.1f MiB\n", "index (own accounting)", index_bytes / 1048576.0);
    printf("  %-28s %12.1f MiB\n", "RSS delta", (rss1 > rss0 ? rss1 - rss0 : 0) / 1048576.0);
    printf("  %-28s %12.1f ms (%s)\n", "rebuild (hosts + vms)", rebuild_ms,
           equal ? "equals live index" : err.msg);
    printf("place_bench hosts=%u cpus=%llu live_vms=%u decisions=%u placed=%u failed=%u "
           "decisions_per_s=%.0f placements_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f "
           "max_us=%.1f ok_p99_us=%.1f index_bytes=%zu rss_delta_bytes=%zu build_ms=%.1f "
           "rebuild_ms=%.1f "
           "rebuild_equal=%d\n",
           n_hosts, (unsigned long long)n_cpus, lv.n, n_lat, placed, failed, decisions_per_s,
           placements_per_s, p50, p99, p999, pmax, ok_p99, index_bytes,
           rss1 > rss0 ? rss1 - rss0 : 0, build_ms, rebuild_ms, equal ? 1 : 0);
    fflush(stdout);
    if (getenv("PLACE_BENCH_SHAPES")) {
        for (size_t i = 0; i < N_SHAPES; i++) {
            uint32_t n = shape_n[i], ok = 0;
            for (uint32_t k = 0; k < n; k++) {
                ok += (uint32_t)(shape_lat[i][k] >> 63);
                shape_lat[i][k] &= ~(UINT64_C(1) << 63);
            }
            qsort(shape_lat[i], n, sizeof(uint64_t), cmp_u64);
            printf("  shape %2zu (%uP+%uE+%u any, '%s'%s%s%s): n=%u ok=%u p50=%.1f us p99=%.1f us "
                   "p99.9=%.1f us\n",
                   i, g_shapes[i].n_p, g_shapes[i].n_e, g_shapes[i].n_any, g_shapes[i].required,
                   g_shapes[i].smt == KS_SMT_ISOLATE ? " isolate" : "",
                   g_shapes[i].placement == KS_PLACE_SPREAD ? " spread" : "",
                   g_shapes[i].pool ? " pool" : "", n, ok, n ? shape_lat[i][n / 2] / 1e3 : 0,
                   n ? shape_lat[i][(size_t)(n * 0.99)] / 1e3 : 0,
                   n ? shape_lat[i][(size_t)(n * 0.999)] / 1e3 : 0);
        }
    }
    for (size_t i = 0; i < N_SHAPES; i++)
        free(shape_lat[i]);
    free(lat);
    free(lat_ok);
    free(lv.ids);
    free(lv.shape);
    ks_fleet_free(g);
    ks_fleet_free(f);
    if (!equal)
        exit(2);
}

static uint32_t parse_u32(const char *s, const char *what)
{
    uint64_t v = 0;
    const char *c = s;
    for (; *c >= '0' && *c <= '9' && v <= 100000000u; c++)
        v = v * 10 + (uint64_t)(*c - '0');
    if (!s[0] || *c || v > 100000000u) {
        fprintf(stderr, "place_bench: bad %s '%s'\n", what, s);
        exit(1);
    }
    return (uint32_t)v;
}

int main(int argc, char **argv)
{
    char hosts_arg[256] = "1000,10000";
    uint32_t ops = 200000, fill = 60, seed = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--hosts") == 0 && i + 1 < argc)
            snprintf(hosts_arg, sizeof(hosts_arg), "%s", argv[++i]);
        else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc)
            ops = parse_u32(argv[++i], "--ops");
        else if (strcmp(argv[i], "--fill") == 0 && i + 1 < argc)
            fill = parse_u32(argv[++i], "--fill");
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = parse_u32(argv[++i], "--seed");
        else {
            fprintf(stderr, "usage: place_bench [--hosts N[,N...]] [--ops N] [--fill PCT] "
                            "[--seed N]\n");
            return 1;
        }
    }
    if (fill > 95)
        fill = 95;
    g_client_p = fs(CLIENT_P);
    g_client_e = fs(CLIENT_E);
    g_server = fs(SERVER);
    g_avx512f = fs("avx512f avx512dq avx512bw avx512vl avx512cd");
    ks_featset aes = fs("aes");
    ks_feature_dependents_closure(&g_aes_closure, &aes);
    for (size_t i = 0; i < N_SHAPES; i++)
        g_shape_req[i] = fs(g_shapes[i].required);
    for (char *t = hosts_arg; *t;) {
        char *end = strchr(t, ',');
        if (end)
            *end = '\0';
        g_rng = UINT64_C(88172645463325252) ^ seed;
        run(parse_u32(t, "--hosts"), ops, fill);
        if (!end)
            break;
        t = end + 1;
    }
    return 0;
}
