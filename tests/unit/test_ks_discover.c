/*
 * test_ks_discover.c - host discovery (agent/ks_discover*.c, agent/ks_cpuid.c,
 * agent/cmd_report.c) against the recorded fixtures and the live machine, and
 * the agent's reporting client (agent/ks_agent_client.c) against a loopback
 * libmicrohttpd server.
 *
 * Oracles: each hwloc-x86 fixture's .xml (written by hwloc 3.0, which 2.9
 * cannot import) is read by the small reader below and compared by structure:
 * PU set, core and package counts, every cache (level, size, CPUs) and the
 * cpukind cpusets.  Hygon-Dhyana: PUs, cores and features only (PLATFORM.md).
 */
#include "ks_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <hwloc.h>
#include <microhttpd.h>

#include "ks_agent_client.h"
#include "ks_agent_cmds.h"
#include "ks_cpuid.h"
#include "ks_discover.h"
#include "ks_feature.h"
#include "ks_report.h"

static char g_tmp[1024];

static int setup_all(void **state)
{
    (void)state;
    ks_test_mkdtemp(g_tmp, sizeof(g_tmp));
    return 0;
}

static int teardown_all(void **state)
{
    (void)state;
    ks_test_rmdir(g_tmp);
    return 0;
}

static ks_report *discover(const char *path, ks_code want)
{
    ks_discover_options o = KS_DISCOVER_OPTIONS_INIT;
    ks_report *r = NULL;
    ks_err err;
    ks_err_clear(&err);
    o.fixture_path = path;
    o.tmp_dir = g_tmp;
    ks_code rc = ks_discover_host(&r, &o, &err);
    if (rc != want)
        fail_msg("discover '%s': got %s (%s), want %s", path ? path : "live", ks_code_str(rc),
                 err.msg, ks_code_str(want));
    if (want != KS_OK) {
        assert_null(r);
        assert_true(err.msg[0] != '\0');
    }
    return r;
}

static ks_report *discover_fixture(const char *sub, const char *name)
{
    char p[1024];
    ks_test_path(p, sizeof(p), "%s/%s/%s.tar.bz2", ks_test_fixtures_dir(), sub, name);
    return discover(p, KS_OK);
}

/* The report must survive its own codec: encode, decode, equal key fields. */
static void check_roundtrip(const ks_report *r)
{
    json_t *doc = ks_report_to_json(r);
    assert_non_null(doc);
    ks_report *back = NULL;
    ks_err err;
    ks_err_clear(&err);
    ks_code rc = ks_report_from_json(&back, doc, &err);
    if (rc != KS_OK)
        fail_msg("report of '%s' does not decode: %s at %s", r->host.source, err.msg, err.field);
    assert_int_equal(back->n_cpus, r->n_cpus);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        assert_true(ks_featset_equal(&back->cpus[i].native, &r->cpus[i].native));
        assert_int_equal(back->cpus[i].state, r->cpus[i].state);
        assert_int_equal(back->cpus[i].kind, r->cpus[i].kind);
    }
    ks_report_free(back);
    json_decref(doc);
}

static unsigned feat(const char *name)
{
    unsigned id = 0;
    if (ks_feature_lookup(name, &id, NULL) != KS_OK)
        fail_msg("feature '%s' is not in the catalogue", name);
    return id;
}

static bool has_feat(const ks_cpu *c, const char *name)
{
    return ks_featset_test(&c->native, feat(name));
}

/* ---- the hwloc 3.0 XML oracle -------------------------------------------------------- */

typedef struct oracle_obj {
    char type[32];
    hwloc_bitmap_t cpuset;
    uint64_t cache_size;
    int depth;
} oracle_obj;

typedef struct oracle {
    int n_obj;
    oracle_obj *obj;
    int n_kinds;
    hwloc_bitmap_t kinds[16];
} oracle;

/* Value of attribute `name` inside the tag [tag, end), copied to buf; false if absent. */
static bool xml_attr(const char *tag, const char *end, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = tag; p + nl + 2 < end; p++) {
        if (p[-1] != ' ' || strncmp(p, name, nl) != 0 || p[nl] != '=' || p[nl + 1] != '"')
            continue;
        const char *v = p + nl + 2;
        const char *q = memchr(v, '"', (size_t)(end - v));
        if (!q || (size_t)(q - v) >= cap)
            return false;
        memcpy(buf, v, (size_t)(q - v));
        buf[q - v] = '\0';
        return true;
    }
    return false;
}

static void oracle_load(oracle *o, const char *name)
{
    char p[1024], v[8192];
    ks_test_path(p, sizeof(p), "%s/hwloc-x86/%s.xml", ks_test_fixtures_dir(), name);
    char *text = ks_test_read_file(p, NULL);
    assert_non_null(text);
    memset(o, 0, sizeof(*o));
    int cap = 0;
    for (char *t = text; (t = strchr(t, '<')) != NULL; t++) {
        char *end = strchr(t, '>');
        assert_non_null(end);
        if (strncmp(t, "<object ", 8) == 0) {
            if (o->n_obj == cap) {
                cap = cap ? cap * 2 : 256;
                o->obj = realloc(o->obj, (size_t)cap * sizeof(*o->obj));
                assert_non_null(o->obj);
            }
            oracle_obj *ob = &o->obj[o->n_obj++];
            memset(ob, 0, sizeof(*ob));
            assert_true(xml_attr(t + 1, end, "type", ob->type, sizeof(ob->type)));
            ob->cpuset = hwloc_bitmap_alloc();
            if (xml_attr(t + 1, end, "cpuset", v, sizeof(v)))
                assert_int_equal(hwloc_bitmap_sscanf(ob->cpuset, v), 0);
            if (xml_attr(t + 1, end, "cache_size", v, sizeof(v)))
                assert_int_equal(sscanf(v, "%" SCNu64, &ob->cache_size), 1);
            if (xml_attr(t + 1, end, "depth", v, sizeof(v)))
                assert_int_equal(sscanf(v, "%d", &ob->depth), 1);
        } else if (strncmp(t, "<cpukind ", 9) == 0) {
            assert_true(o->n_kinds < 16);
            assert_true(xml_attr(t + 1, end, "cpuset", v, sizeof(v)));
            o->kinds[o->n_kinds] = hwloc_bitmap_alloc();
            assert_int_equal(hwloc_bitmap_sscanf(o->kinds[o->n_kinds], v), 0);
            o->n_kinds++;
        }
    }
    free(text);
}

static void oracle_free(oracle *o)
{
    for (int i = 0; i < o->n_obj; i++)
        hwloc_bitmap_free(o->obj[i].cpuset);
    for (int i = 0; i < o->n_kinds; i++)
        hwloc_bitmap_free(o->kinds[i]);
    free(o->obj);
}

static int oracle_count(const oracle *o, const char *type)
{
    int n = 0;
    for (int i = 0; i < o->n_obj; i++)
        n += strcmp(o->obj[i].type, type) == 0;
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "size:cpulist" lines for caches of one level/kind, sorted, as one string. */
static char *join_sorted(char **items, int n)
{
    qsort(items, (size_t)n, sizeof(char *), cmp_str);
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(items[i]) + 1;
    char *s = calloc(1, len);
    assert_non_null(s);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        size_t k = strlen(items[i]);
        memcpy(s + o, items[i], k);
        s[o + k] = ';';
        o += k + 1;
        free(items[i]);
    }
    s[o] = '\0';
    return s;
}

static char *cache_line(uint64_t size, hwloc_const_bitmap_t set)
{
    char list[8192];
    hwloc_bitmap_list_snprintf(list, sizeof(list), set);
    char *s = malloc(strlen(list) + 32);
    assert_non_null(s);
    snprintf(s, strlen(list) + 32, "%llu:%s", (unsigned long long)size, list);
    return s;
}

static void compare_caches(const ks_report *r, const oracle *o, const char *name)
{
    static const struct {
        const char *xml_type;
        int level;
        bool icache;
    } keys[] = {{"L1Cache", 1, false}, {"L1iCache", 1, true}, {"L2Cache", 2, false},
                {"L3Cache", 3, false}, {"L4Cache", 4, false}};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        char **want = calloc((size_t)o->n_obj + 1, sizeof(char *));
        char **got = calloc(r->n_caches + 1, sizeof(char *));
        int nw = 0, ng = 0;
        for (int i = 0; i < o->n_obj; i++)
            if (strcmp(o->obj[i].type, keys[k].xml_type) == 0)
                want[nw++] = cache_line(o->obj[i].cache_size, o->obj[i].cpuset);
        for (uint32_t i = 0; i < r->n_caches; i++) {
            const ks_cache *c = &r->caches[i];
            if (c->level != keys[k].level || (c->type == 'i') != keys[k].icache)
                continue;
            hwloc_bitmap_t set = hwloc_bitmap_alloc();
            for (uint32_t j = 0; j < c->n_cpus; j++)
                hwloc_bitmap_set(set, (unsigned)c->cpus[j]);
            assert_true(c->line_bytes > 0);
            got[ng++] = cache_line(c->size_bytes, set);
            hwloc_bitmap_free(set);
        }
        char *ws = join_sorted(want, nw), *gs = join_sorted(got, ng);
        if (nw != ng || strcmp(ws, gs) != 0)
            fail_msg("%s: %s caches differ: oracle %d, report %d\n  oracle %.300s\n  report %.300s",
                     name, keys[k].xml_type, nw, ng, ws, gs);
        free(ws);
        free(gs);
        free(want);
        free(got);
    }
}

static void compare_kinds(const ks_report *r, const oracle *o, const char *name)
{
    if ((int)r->n_kinds != o->n_kinds)
        fail_msg("%s: %u kinds, oracle has %d", name, r->n_kinds, o->n_kinds);
    for (uint32_t k = 0; k < r->n_kinds; k++) {
        hwloc_bitmap_t set = hwloc_bitmap_alloc();
        for (uint32_t i = 0; i < r->n_cpus; i++)
            if (r->cpus[i].kind == (int32_t)k)
                hwloc_bitmap_set(set, (unsigned)r->cpus[i].id);
        /* Both lists are in ascending efficiency. */
        if (!hwloc_bitmap_isequal(set, o->kinds[k])) {
            char a[256], b[256];
            hwloc_bitmap_list_snprintf(a, sizeof(a), set);
            hwloc_bitmap_list_snprintf(b, sizeof(b), o->kinds[k]);
            fail_msg("%s: kind %u has cpus %s, oracle %s", name, k, a, b);
        }
        hwloc_bitmap_free(set);
    }
}

/* Each CPU's native set must be the catalogue decode of that CPU's own pu<N> file. */
static void compare_features_with_dumps(const ks_report *r, const char *name)
{
    char dir[1024], cmd[2048], p[1200];
    ks_test_path(dir, sizeof(dir), "%s/feat-%s", g_tmp, name);
    assert_int_equal(mkdir(dir, 0700), 0);
    ks_test_path(cmd, sizeof(cmd), "tar -xjf '%s/hwloc-x86/%s.tar.bz2' -C '%s'",
                 ks_test_fixtures_dir(), name, dir);
    assert_int_equal(system(cmd), 0);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        ks_cpuid_dump *d = NULL;
        ks_featset want;
        ks_test_path(p, sizeof(p), "%s/%s/pu%d", dir, name, r->cpus[i].id);
        assert_int_equal(ks_cpuid_dump_load(&d, p, NULL), KS_OK);
        ks_feature_decode_cpuid(&want, ks_cpuid_dump_fn, d);
        if (!ks_featset_equal(&want, &r->cpus[i].native))
            fail_msg("%s: cpu %d features differ from its dump", name, r->cpus[i].id);
        assert_false(ks_featset_empty(&want));
        ks_cpuid_dump_free(d);
    }
    ks_test_rmdir(dir);
}

static void test_discover__x86_fixtures_match_oracle(void **state)
{
    (void)state;
    static const char *const names[] = {
        "Intel-RaptorLake-Corei7-1370P",     "Intel-SapphireRapids-2xXeonMax9460",
        "AMD-19h-Zen3-2xEpyc-7763",          "Intel-Skylake-2xXeon6140",
        "Intel-CascadeLake-2xXeon6230",      "Intel-Haswell-2xXeon-E5-2680v3",
        "Hygon-Dhyana-32cores",              "Intel-KnightsLanding-XeonPhi-7210",
    };
    for (size_t f = 0; f < sizeof(names) / sizeof(names[0]); f++) {
        const char *name = names[f];
        bool hygon = strncmp(name, "Hygon", 5) == 0;
        oracle o;
        oracle_load(&o, name);
        ks_report *r = discover_fixture("hwloc-x86", name);

        /* PUs: same OS ids, all online */
        hwloc_bitmap_t want = hwloc_bitmap_alloc(), got = hwloc_bitmap_alloc();
        for (int i = 0; i < o.n_obj; i++)
            if (strcmp(o.obj[i].type, "PU") == 0)
                hwloc_bitmap_or(want, want, o.obj[i].cpuset);
        for (uint32_t i = 0; i < r->n_cpus; i++) {
            hwloc_bitmap_set(got, (unsigned)r->cpus[i].id);
            assert_int_equal(r->cpus[i].state, KS_CPU_ONLINE);
            if (i > 0)
                assert_true(r->cpus[i].id > r->cpus[i - 1].id);
        }
        if ((int)r->n_cpus != oracle_count(&o, "PU") || !hwloc_bitmap_isequal(want, got))
            fail_msg("%s: %u cpus, oracle %d PUs", name, r->n_cpus, oracle_count(&o, "PU"));
        if ((int)r->n_cores != oracle_count(&o, "Core"))
            fail_msg("%s: %u cores, oracle %d", name, r->n_cores, oracle_count(&o, "Core"));
        /* Cores group exactly the oracle's PUs: compare the partition. */
        for (int i = 0; i < o.n_obj; i++) {
            if (strcmp(o.obj[i].type, "Core") != 0)
                continue;
            int core = -1, first = hwloc_bitmap_first(o.obj[i].cpuset);
            ks_cpu *c0 = ks_report_find_cpu(r, first);
            assert_non_null(c0);
            core = c0->core;
            int members = 0;
            for (uint32_t k = 0; k < r->n_cpus; k++)
                if (r->cpus[k].core == core) {
                    members++;
                    assert_true(hwloc_bitmap_isset(o.obj[i].cpuset, (unsigned)r->cpus[k].id));
                }
            assert_int_equal(members, hwloc_bitmap_weight(o.obj[i].cpuset));
        }
        if (!hygon) {
            if ((int)r->n_packages != oracle_count(&o, "Package"))
                fail_msg("%s: %u packages, oracle %d", name, r->n_packages,
                         oracle_count(&o, "Package"));
            compare_caches(r, &o, name);
            compare_kinds(r, &o, name);
            /* l2/l3 indices point at caches of that level holding the CPU */
            for (uint32_t i = 0; i < r->n_cpus; i++) {
                const ks_cpu *c = &r->cpus[i];
                if (c->l2_group >= 0)
                    assert_int_equal(r->caches[c->l2_group].level, 2);
                if (c->l3_group >= 0)
                    assert_int_equal(r->caches[c->l3_group].level, 3);
            }
        }
        compare_features_with_dumps(r, name);
        assert_string_equal(r->host.source + strlen("fixture:"), name);
        assert_true(ks_id_valid(r->host.id));
        assert_int_equal(strncmp(r->host.id, "fx-", 3), 0);
        check_roundtrip(r);
        hwloc_bitmap_free(want);
        hwloc_bitmap_free(got);
        ks_report_free(r);
        oracle_free(&o);
    }
}

/* Reads the raw output register `reg` of (leaf, subleaf) from a pu file, independently
 * of the parser under test. */
static uint32_t raw_reg(const char *dir, int cpu, uint32_t leaf, uint32_t sub, int reg)
{
    char p[1200], pat[64];
    ks_test_path(p, sizeof(p), "%s/pu%d", dir, cpu);
    char *text = ks_test_read_file(p, NULL);
    assert_non_null(text);
    snprintf(pat, sizeof(pat), "\n5 %x 0 %x 0 => ", leaf, sub);
    char *l = strstr(text, pat);
    assert_non_null(l);
    unsigned v[4];
    assert_int_equal(sscanf(l + strlen(pat), "%x %x %x %x", &v[0], &v[1], &v[2], &v[3]), 4);
    free(text);
    return v[reg];
}

static void test_discover__raptorlake_hybrid(void **state)
{
    (void)state;
    const char *name = "Intel-RaptorLake-Corei7-1370P";
    ks_report *r = discover_fixture("hwloc-x86", name);
    char dir[1024], cmd[2048], sub[1200];
    ks_test_path(dir, sizeof(dir), "%s/rl", g_tmp);
    assert_int_equal(mkdir(dir, 0700), 0);
    ks_test_path(cmd, sizeof(cmd), "tar -xjf '%s/hwloc-x86/%s.tar.bz2' -C '%s'",
                 ks_test_fixtures_dir(), name, dir);
    assert_int_equal(system(cmd), 0);
    ks_test_path(sub, sizeof(sub), "%s/%s", dir, name);

    assert_int_equal(r->n_kinds, 2);
    assert_string_equal(r->kinds[0].name, "IntelAtom");
    assert_int_equal(r->kinds[0].kind_class, KS_KIND_EFFICIENCY);
    assert_string_equal(r->kinds[1].name, "IntelCore");
    assert_int_equal(r->kinds[1].kind_class, KS_KIND_PERFORMANCE);
    assert_true(r->kinds[0].efficiency_rank < r->kinds[1].efficiency_rank);
    unsigned lip = feat("intel_pt_lip");
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *c = &r->cpus[i];
        /* P-cores are CPUs 0-11 (6 cores x 2 threads), E-cores 12-19 */
        assert_int_equal(r->kinds[c->kind].kind_class,
                         c->id < 12 ? KS_KIND_PERFORMANCE : KS_KIND_EFFICIENCY);
        /* CPUID leaf 0x1A in the dump agrees: 0x40 Core, 0x20 Atom */
        uint32_t type = raw_reg(sub, c->id, 0x1a, 0, 0) >> 24;
        assert_int_equal(type, c->id < 12 ? 0x40 : 0x20);
        /* Per-CPU features follow each CPU's own dump: leaf 0x14.0 ECX[31] (intel_pt_lip)
         * is set on the E-cores only. */
        bool raw_lip = raw_reg(sub, c->id, 0x14, 0, 2) >> 31;
        assert_int_equal(ks_featset_test(&c->native, lip), raw_lip);
        assert_int_equal(raw_lip, c->id >= 12);
        /* frequencies: CPUID 0x16 says 5200 MHz max on P, 3900 on E */
        assert_int_equal(c->max_mhz, c->id < 12 ? 5200 : 3900);
        assert_int_equal(c->base_mhz, 2200);
        assert_true(has_feat(c, "avx2"));
        assert_false(has_feat(c, "avx512f"));
        assert_true(has_feat(c, "hybrid_cpu"));
    }
    /* E-core clusters: 4 E-cores share one L2 (cluster); each P-core has its own */
    assert_int_equal(r->n_clusters, 8);
    assert_int_equal(r->cpus[12].cluster, r->cpus[15].cluster);
    assert_int_not_equal(r->cpus[15].cluster, r->cpus[16].cluster);
    assert_int_equal(r->cpus[12].l2_group, r->cpus[15].l2_group);
    assert_int_equal(r->caches[r->cpus[12].l2_group].size_bytes, 2u << 20);
    assert_int_equal(r->caches[r->cpus[0].l2_group].size_bytes, 1280u << 10);
    /* PMU leaf 0xA of CPU 0 */
    assert_int_equal(r->pmu.version, 5);
    assert_int_equal(r->pmu.gp_counters, 6);
    assert_int_equal(r->pmu.fixed_counters, 3);
    assert_int_equal(r->pmu.n_events, 7);
    assert_string_equal(r->pmu.events[0], "cycles");
    assert_string_equal(r->host.vendor, "GenuineIntel");
    assert_string_equal(r->host.model_name, "13th Gen Intel(R) Core(TM) i7-1370P");
    assert_int_equal(r->host.family, 6);
    assert_int_equal(r->host.model, 186);
    ks_report_free(r);
    ks_test_rmdir(dir);
}

static void test_discover__feature_spot_checks(void **state)
{
    (void)state;
    ks_report *r = discover_fixture("hwloc-x86", "Intel-SapphireRapids-2xXeonMax9460");
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        assert_true(has_feat(&r->cpus[i], "amx_tile"));
        assert_true(has_feat(&r->cpus[i], "avx512f"));
    }
    assert_int_equal(r->n_packages, 2);
    ks_report_free(r);

    r = discover_fixture("hwloc-x86", "Intel-Haswell-2xXeon-E5-2680v3");
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        assert_true(has_feat(&r->cpus[i], "avx2"));
        assert_false(has_feat(&r->cpus[i], "avx512f"));
    }
    ks_report_free(r);

    r = discover_fixture("hwloc-x86", "Intel-KnightsLanding-XeonPhi-7210");
    assert_int_equal(r->n_cpus, 256);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        assert_true(has_feat(&r->cpus[i], "avx512f"));
        assert_true(has_feat(&r->cpus[i], "avx512er"));
        assert_true(has_feat(&r->cpus[i], "avx512pf"));
        assert_false(has_feat(&r->cpus[i], "avx512bw"));
    }
    /* 4 threads per core */
    assert_int_equal(r->cpus[0].core, r->cpus[64].core);
    assert_int_equal(r->cpus[64].thread, 1);
    assert_int_equal(r->cpus[192].thread, 3);
    ks_report_free(r);

    r = discover_fixture("hwloc-x86", "Intel-CascadeLake-2xXeon6230");
    assert_true(has_feat(&r->cpus[0], "avx512_vnni"));
    ks_report_free(r);

    r = discover_fixture("hwloc-x86", "Hygon-Dhyana-32cores");
    assert_string_equal(r->host.vendor, "HygonGenuine");
    assert_true(has_feat(&r->cpus[0], "avx2"));
    assert_false(has_feat(&r->cpus[0], "avx512f"));
    assert_int_equal(r->n_cores, 32);
    ks_report_free(r);
}


static void unpack_to(char *out, size_t cap, const char *tag, const char *name)
{
    char dir[1024], cmd[2400];
    ks_test_path(dir, sizeof(dir), "%s/%s", g_tmp, tag);
    assert_int_equal(mkdir(dir, 0700), 0);
    ks_test_path(cmd, sizeof(cmd), "tar -xjf '%s/hwloc-x86/%s.tar.bz2' -C '%s'",
                 ks_test_fixtures_dir(), name, dir);
    assert_int_equal(system(cmd), 0);
    ks_test_path(out, cap, "%s/%s", dir, name);
}

/*
 * PLATFORM.md: hwloc 2.9 predates Intel low-power E-cores (Atom type, no L3)
 * and AMD heterogeneous cores (CPUID 0x80000026).  Forge both into copies of
 * real dumps: discovery must split the kinds from CPUID where hwloc cannot.
 */
static void test_discover__cpuid_kinds_beyond_hwloc(void **state)
{
    (void)state;
    char root[1200], cmd[4096];
    /* RaptorLake with E-cores 16-19 turned into LP E-cores: their leaf 4 lists no L3 */
    unpack_to(root, sizeof(root), "lpe", "Intel-RaptorLake-Corei7-1370P");
    ks_test_path(cmd, sizeof(cmd),
                 "cd '%s' && sed -i 's/^5 4 0 3 0 => .*/5 4 0 3 0 => 0 0 0 0/' pu16 pu17 pu18 pu19",
                 root);
    assert_int_equal(system(cmd), 0);
    ks_report *r = discover(root, KS_OK);
    assert_int_equal(r->n_kinds, 3);
    assert_string_equal(r->kinds[0].name, "IntelAtomLP");
    assert_string_equal(r->kinds[1].name, "IntelAtom");
    assert_string_equal(r->kinds[2].name, "IntelCore");
    assert_int_equal(r->kinds[0].kind_class, KS_KIND_EFFICIENCY);
    assert_int_equal(r->kinds[1].kind_class, KS_KIND_EFFICIENCY);
    assert_int_equal(r->kinds[2].kind_class, KS_KIND_PERFORMANCE);
    for (uint32_t i = 0; i < r->n_cpus; i++)
        assert_int_equal(r->cpus[i].kind, r->cpus[i].id < 12 ? 2 : r->cpus[i].id < 16 ? 1 : 0);
    check_roundtrip(r);
    ks_report_free(r);

    /* Zen 3 server made heterogeneous: 0x80000026 says CPUs 64-127 are efficiency cores */
    unpack_to(root, sizeof(root), "amdhet", "AMD-19h-Zen3-2xEpyc-7763");
    ks_test_path(cmd, sizeof(cmd),
                 "cd '%s' && for i in $(seq 0 127); do "
                 "sed -i 's/^1 80000000 0 0 0 => 80000023 /1 80000000 0 0 0 => 80000026 /' pu$i && "
                 "if [ $i -lt 64 ]; then t=00000002; else t=10000002; fi && "
                 "echo \"5 80000026 0 0 0 => 40000000 $t 100 0\" >> pu$i; done",
                 root);
    assert_int_equal(system(cmd), 0);
    r = discover(root, KS_OK);
    assert_int_equal(r->n_kinds, 2);
    assert_string_equal(r->kinds[0].name, "AMDEfficiency");
    assert_int_equal(r->kinds[0].kind_class, KS_KIND_EFFICIENCY);
    assert_string_equal(r->kinds[1].name, "AMDPerformance");
    assert_int_equal(r->kinds[1].kind_class, KS_KIND_PERFORMANCE);
    for (uint32_t i = 0; i < r->n_cpus; i++)
        assert_int_equal(r->cpus[i].kind, r->cpus[i].id < 64 ? 1 : 0);
    check_roundtrip(r);
    ks_report_free(r);
}

/* ---- Linux sysfs fixtures ------------------------------------------------------------- */

static void test_discover__linux_hybrid(void **state)
{
    (void)state;
    ks_report *r = discover_fixture("hwloc-linux", "20em64t-hybrid-1p6c2t+2ca4co1t");
    assert_int_equal(r->n_cpus, 20);
    assert_int_equal(r->n_cores, 14);
    assert_int_equal(r->n_kinds, 2);
    assert_int_equal(r->kinds[0].kind_class, KS_KIND_EFFICIENCY);
    assert_int_equal(r->kinds[1].kind_class, KS_KIND_PERFORMANCE);
    assert_int_equal(r->kinds[0].max_mhz, 3900);
    assert_int_equal(r->kinds[1].max_mhz, 5000); /* hwloc's FrequencyMaxMHz of the kind */
    assert_int_equal(r->cpus[4].max_mhz, 5200);
    assert_int_equal(r->cpus[0].max_mhz, 5000);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *c = &r->cpus[i];
        assert_int_equal(r->kinds[c->kind].kind_class,
                         c->id < 12 ? KS_KIND_PERFORMANCE : KS_KIND_EFFICIENCY);
        /* cpufreq sysfs: P 5000 or 5200 (favoured cores) / 1900 MHz, E 3900/1400 MHz */
        if (c->id < 12)
            assert_int_equal(c->max_mhz, (c->id / 2 == 2 || c->id / 2 == 4) ? 5200 : 5000);
        else
            assert_int_equal(c->max_mhz, 3900);
        assert_int_equal(c->base_mhz, c->id < 12 ? 1900 : 1400);
        /* features from the fixture's /proc/cpuinfo */
        assert_true(has_feat(c, "avx2"));
        assert_true(has_feat(c, "sha_ni"));
        assert_int_equal(c->state, KS_CPU_ONLINE);
    }
    assert_string_equal(r->host.vendor, "GenuineIntel");
    assert_string_equal(r->host.model_name, "13th Gen Intel(R) Core(TM) i7-1370P");
    assert_string_equal(r->host.microcode, "0x4119");
    assert_string_equal(r->host.kernel, "6.1.0-13-amd64");
    assert_string_equal(r->host.id, "fx-20em64t-hybrid-1p6c2t-2ca4co1t");
    assert_true(r->host.memory_mib > 30000);
    assert_int_equal(r->n_numa, 1);
    check_roundtrip(r);
    ks_report_free(r);
}

static void test_discover__linux_arm_clusters(void **state)
{
    (void)state;
    ks_report *r = discover_fixture("hwloc-linux", "128arm-2pa2n8cluster4co");
    assert_int_equal(r->host.arch, KS_ARCH_ARM64);
    assert_int_equal(r->n_cpus, 128);
    assert_int_equal(r->n_packages, 2);
    assert_int_equal(r->n_cores, 128);
    assert_int_equal(r->n_clusters, 32);
    /* 4 consecutive cores per cluster, each with its own L2 */
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        assert_int_equal(r->cpus[i].cluster, r->cpus[i - i % 4].cluster);
        if (i % 4)
            assert_int_not_equal(r->cpus[i].l2_group, r->cpus[i - 1].l2_group);
        else if (i)
            assert_int_not_equal(r->cpus[i].cluster, r->cpus[i - 1].cluster);
        assert_true(has_feat(&r->cpus[i], "asimd"));
        assert_true(has_feat(&r->cpus[i], "atomics"));
    }
    assert_int_equal(r->n_numa, 4);
    /* a single kind: performance */
    assert_int_equal(r->n_kinds, 1);
    assert_int_equal(r->kinds[0].kind_class, KS_KIND_PERFORMANCE);
    assert_string_equal(r->host.vendor, "HiSilicon");
    check_roundtrip(r);
    ks_report_free(r);
}

static void check_offline(const char *name, const int *offline, int n_offline, uint32_t n_cpus)
{
    ks_report *r = discover_fixture("hwloc-linux", name);
    assert_int_equal(r->n_cpus, n_cpus);
    int seen = 0;
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *c = &r->cpus[i];
        bool off = false;
        for (int k = 0; k < n_offline; k++)
            off = off || offline[k] == c->id;
        if (off) {
            seen++;
            assert_int_equal(c->state, KS_CPU_OFFLINE);
            assert_true(ks_featset_empty(&c->usable));
            assert_int_equal(c->l2_group, -1);
        } else {
            assert_int_equal(c->state, KS_CPU_ONLINE);
            assert_false(ks_featset_empty(&c->native));
            assert_true(ks_featset_equal(&c->native, &c->usable));
        }
    }
    assert_int_equal(seen, n_offline);
    check_roundtrip(r);
    ks_report_free(r);
}

static void test_discover__linux_offline(void **state)
{
    (void)state;
    /* .console: "4 processors not represented in topology: 0x00006024" */
    static const int off1[] = {2, 5, 13, 14};
    check_offline("16em64t-4s2c2t-offlines", off1, 4, 16);
    /* .console: "7 processors not represented in topology: 0x00e0000f" */
    static const int off2[] = {0, 1, 2, 3, 21, 22, 23};
    check_offline("offline-cpu0-node0", off2, 7, 24);
}

static void write_file(const char *dir, const char *rel, const char *text)
{
    char p[2048], cmd[2400];
    ks_test_path(p, sizeof(p), "%s/%s", dir, rel);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    ks_test_path(cmd, sizeof(cmd), "mkdir -p '%s'", p);
    assert_int_equal(system(cmd), 0);
    *slash = '/';
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A copy of the hybrid tree with vulnerability files and hybrid PMUs added. */
static void test_discover__linux_vulns_and_pmu(void **state)
{
    (void)state;
    char dir[1024], cmd[2048], root[1200];
    ks_test_path(dir, sizeof(dir), "%s/vuln", g_tmp);
    assert_int_equal(mkdir(dir, 0700), 0);
    ks_test_path(cmd, sizeof(cmd),
                 "tar -xjf '%s/hwloc-linux/20em64t-hybrid-1p6c2t+2ca4co1t.tar.bz2' -C '%s'",
                 ks_test_fixtures_dir(), dir);
    assert_int_equal(system(cmd), 0);
    ks_test_path(root, sizeof(root), "%s/20em64t-hybrid-1p6c2t+2ca4co1t", dir);
    write_file(root, "sys/devices/system/cpu/vulnerabilities/spectre_v2",
               "Mitigation: Enhanced / Automatic IBRS\nsecond line\n");
    write_file(root, "sys/devices/system/cpu/vulnerabilities/meltdown", "Not affected\n");
    write_file(root, "sys/bus/event_source/devices/cpu_core/cpus", "0-11\n");
    write_file(root, "sys/bus/event_source/devices/cpu_atom/cpus", "12-19\n");
    write_file(root, "sys/bus/event_source/devices/power/type", "9\n");
    write_file(root, "proc/sys/kernel/random/boot_id", "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab\n");

    ks_report *r = discover(root, KS_OK);
    assert_int_equal(r->n_vulns, 2);
    assert_string_equal(r->vulns[0].name, "meltdown");
    assert_string_equal(r->vulns[0].status, "Not affected");
    assert_string_equal(r->vulns[1].name, "spectre_v2");
    assert_string_equal(r->vulns[1].status, "Mitigation: Enhanced / Automatic IBRS");
    assert_int_equal(r->pmu.n_names, 2);
    assert_string_equal(r->pmu.names[0], "cpu_atom");
    assert_string_equal(r->pmu.names[1], "cpu_core");
    assert_string_equal(r->host.boot_id, "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab");
    check_roundtrip(r);
    ks_report_free(r);
    ks_test_rmdir(dir);
}

/* ---- live ----------------------------------------------------------------------------- */

/*
 * Flags Linux does not print although CPUID enumerates them (so a CPUID-decoded
 * set may hold them and /proc/cpuinfo not):
 *   osxsave      - cleared from cpuinfo on purpose (it mirrors CR4, not the CPU)
 *   invtsc       - printed as constant_tsc + nonstop_tsc
 *   shstk        - printed as user_shstk only when user shadow stacks are enabled
 *   amd_ibpb_ret, amd_psfd, amd_stibp_always_on, lfence_rdtsc, no_smm_ctl_msr,
 *   intel_psfd, ipred_ctrl, rrsba_ctrl, bhi_ctrl, ddpd_u
 *                - kernel-internal bits with an empty cpuinfo name
 *   la57, pks, pku, ospke, sgx, sgx_lc, tme, waitpkg, umip, ibt, tsxldtrk, pconfig, hle,
 *   rtm, mpx, xsaves, avx512* ...
 *                - disabled by the kernel (config, boot options, errata) on some
 *                  hosts: allowed only through the set below, which lists just the
 *                  first group; add a name here with the reason when a host needs it.
 * And flags cpuinfo prints that CPUID has no bit for are synthesised by Linux:
 * catalogue entries with has_cpuid == false are ignored on that side.
 */
static const char *const live_cpuid_only_ok[] = {
    "osxsave",      "invtsc",   "shstk",      "amd_ibpb_ret", "amd_psfd", "amd_stibp_always_on",
    "lfence_rdtsc", "no_smm_ctl_msr", "intel_psfd", "ipred_ctrl", "rrsba_ctrl", "bhi_ctrl",
    "ddpd_u",
};

static bool live_allowed(unsigned id)
{
    for (size_t i = 0; i < sizeof(live_cpuid_only_ok) / sizeof(live_cpuid_only_ok[0]); i++)
        if (strcmp(ks_feature_name(id), live_cpuid_only_ok[i]) == 0)
            return true;
    return false;
}

static void test_discover__live(void **state)
{
    (void)state;
    cpu_set_t before, after;
    assert_int_equal(sched_getaffinity(0, sizeof(before), &before), 0);
    ks_report *r = discover(NULL, KS_OK);
    assert_int_equal(sched_getaffinity(0, sizeof(after), &after), 0);
    assert_true(CPU_EQUAL(&before, &after)); /* affinity restored */

    assert_string_equal(r->host.source, "live");
    assert_true(ks_id_valid(r->host.id));
    assert_true(r->host.kernel[0] != '\0');
    assert_true(r->host.boot_id[0] != '\0');
    assert_true(r->host.memory_mib > 0);
    long n_conf = sysconf(_SC_NPROCESSORS_CONF);
    assert_true(r->n_cpus >= 1 && (long)r->n_cpus <= n_conf);
    check_roundtrip(r);

    char *ci = ks_test_read_file("/proc/cpuinfo", NULL);
    assert_non_null(ci);
    bool x86 = r->host.arch == KS_ARCH_X86_64;
    const char *key = x86 ? "\nflags\t\t: " : "\nFeatures\t: ";
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *c = &r->cpus[i];
        if (c->state == KS_CPU_OFFLINE)
            continue;
        char pat[64];
        snprintf(pat, sizeof(pat), "processor\t: %d\n", c->id);
        char *blk = strstr(ci, pat);
        assert_non_null(blk);
        char *fl = strstr(blk, key);
        assert_non_null(fl);
        fl += strlen(key);
        char *eol = strchr(fl, '\n');
        char saved = *eol;
        *eol = '\0';
        ks_featset want;
        ks_feature_from_cpuinfo(&want, (ks_arch)r->host.arch, fl, NULL);
        *eol = saved;
        for (unsigned id = 0; id < ks_feature_count(); id++) {
            const ks_feature_info *fi = ks_feature_get(id);
            bool in_report = ks_featset_test(&c->native, id), in_ci = ks_featset_test(&want, id);
            if (in_report == in_ci)
                continue;
            if (in_report && !in_ci && live_allowed(id))
                continue;
            if (!in_report && in_ci && !fi->has_cpuid)
                continue;
            fail_msg("live cpu %d: feature '%s' %s in the report but %s in /proc/cpuinfo", c->id,
                     fi->name, in_report ? "present" : "absent", in_ci ? "present" : "absent");
        }
    }
    free(ci);
    ks_report_free(r);
}

/* ---- bad input ------------------------------------------------------------------------ */

static void copy_rl(char *out, size_t cap, const char *tag)
{
    char dir[1024], cmd[2400];
    ks_test_path(dir, sizeof(dir), "%s/%s", g_tmp, tag);
    assert_int_equal(mkdir(dir, 0700), 0);
    ks_test_path(cmd, sizeof(cmd),
                 "tar -xjf '%s/hwloc-x86/Intel-RaptorLake-Corei7-1370P.tar.bz2' -C '%s'",
                 ks_test_fixtures_dir(), dir);
    assert_int_equal(system(cmd), 0);
    ks_test_path(out, cap, "%s/Intel-RaptorLake-Corei7-1370P", dir);
}

static void test_discover__garbled_dumps(void **state)
{
    (void)state;
    static const struct {
        const char *tag;
        const char *file;
        const char *content; /* NULL: truncate the real file mid-line */
        bool must_fail;
    } cases[] = {
        {"cut", "pu3", NULL, true},
        {"junk", "pu5", "# mask e[abcd]x => e[abcd]x\n1 0 0 0 0 => zz 756e6547 6c65746e\n", true},
        {"empty", "pu7", "", true},
        {"noleaf0", "pu2", "1 1 0 0 0 => b06a2 800800 7ffafbff bfebfbff\n", true},
        {"binary", "pu9", "1 0 0 0 0 => 20 756e\x00\x01\x02 6c65746e 49656e69\n", true},
        {"overflow", "pu4", "1 0 0 0 0 => 123456789 756e6547 6c65746e 49656e69\n", true},
        {"noarrow", "pu6", "1 0 0 0 0 20 756e6547 6c65746e 49656e69 1 2 3 4\n", true},
        {"badmask", "pu8", "ff 0 0 0 0 => 20 756e6547 6c65746e 49656e69\n", true},
        {"strayname", "puX", "whatever\n", true},
        {"missing", "pu11", NULL, true}, /* removed: a gap in the numbering */
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char root[1200], p[1400];
        copy_rl(root, sizeof(root), cases[k].tag);
        ks_test_path(p, sizeof(p), "%s/%s", root, cases[k].file);
        if (strcmp(cases[k].tag, "missing") == 0) {
            assert_int_equal(unlink(p), 0);
        } else if (!cases[k].content) {
            size_t len = 0;
            char *text = ks_test_read_file(p, &len);
            assert_non_null(text);
            FILE *f = fopen(p, "w");
            assert_non_null(f);
            fwrite(text, 1, len / 2 + 3, f); /* ends mid-record */
            fclose(f);
            free(text);
        } else {
            FILE *f = fopen(p, "w");
            assert_non_null(f);
            static const char binary[] = "1 0 0 0 0 => 20 756e\x00\x01\x02 6c65746e 49656e69\n";
            size_t n = strlen(cases[k].content);
            if (strcmp(cases[k].tag, "binary") == 0)
                n = sizeof(binary) - 1;
            fwrite(strcmp(cases[k].tag, "binary") == 0 ? binary : cases[k].content, 1, n, f);
            fclose(f);
        }
        ks_discover_options o = KS_DISCOVER_OPTIONS_INIT;
        ks_report *r = NULL;
        ks_err err;
        ks_err_clear(&err);
        o.fixture_path = root;
        ks_code rc = ks_discover_host(&r, &o, &err);
        if (cases[k].must_fail) {
            if (rc != KS_EINVAL)
                fail_msg("case '%s': got %s, want invalid", cases[k].tag, ks_code_str(rc));
            assert_null(r);
            assert_non_null(strstr(err.msg, cases[k].file));
        } else if (rc == KS_OK) {
            assert_true(r->n_cpus >= 1);
            ks_report_free(r);
        }
    }
}

static void test_discover__bad_fixtures(void **state)
{
    (void)state;
    char p[1200];
    /* missing */
    ks_test_path(p, sizeof(p), "%s/no-such-fixture.tar.bz2", g_tmp);
    discover(p, KS_ENOTFOUND);
    /* a directory that is no fixture */
    ks_test_path(p, sizeof(p), "%s/not-a-fixture", g_tmp);
    assert_int_equal(mkdir(p, 0700), 0);
    discover(p, KS_EINVAL);
    /* a corrupt tarball */
    write_file(g_tmp, "corrupt.tar.bz2", "BZh91AY&SY this is not bzip2 data at all\n");
    ks_test_path(p, sizeof(p), "%s/corrupt.tar.bz2", g_tmp);
    discover(p, KS_EINVAL);
    /* a truncated tarball */
    char src[1024];
    ks_test_path(src, sizeof(src), "%s/hwloc-x86/Intel-Haswell-2xXeon-E5-2680v3.tar.bz2",
                 ks_test_fixtures_dir());
    size_t len = 0;
    char *data = ks_test_read_file(src, &len);
    assert_non_null(data);
    ks_test_path(p, sizeof(p), "%s/truncated.tar.bz2", g_tmp);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite(data, 1, len / 2, f);
    fclose(f);
    free(data);
    discover(p, KS_EINVAL);
    /* the unpack directories are gone afterwards */
    char cmd[1400];
    ks_test_path(cmd, sizeof(cmd), "ls -d '%s'/ks-fixture-* 2>/dev/null", g_tmp);
    assert_int_not_equal(system(cmd), 0);
}

static void test_discover__cpuid_dump_parse(void **state)
{
    (void)state;
    static const char ok[] = "# mask e[abcd]x => e[abcd]x\n"
                             "1 0 0 0 0 => d 68747541 444d4163 69746e65\n"
                             "1 1 0 0 0 => a00f11 800 7ed8320b 178bfbff\n"
                             "5 7 0 0 0 => 0 219c91a9 400004 0\n"
                             "5 7 0 1 0 => 0 0 0 0\n"
                             "\n";
    ks_cpuid_dump *d = NULL;
    uint32_t regs[4];
    assert_int_equal(ks_cpuid_dump_parse(&d, "t", ok, strlen(ok), NULL), KS_OK);
    assert_true(ks_cpuid_dump_fn(d, 7, 0, regs));
    assert_int_equal(regs[1], 0x219c91a9);
    assert_true(ks_cpuid_dump_fn(d, 7, 1, regs));
    assert_int_equal(regs[1], 0);
    assert_false(ks_cpuid_dump_fn(d, 7, 2, regs)); /* subleaf not recorded */
    assert_true(ks_cpuid_dump_fn(d, 1, 5, regs));  /* leaf without subleaves */
    assert_false(ks_cpuid_dump_fn(d, 0xd, 0, regs));
    ks_cpuid_ident id;
    ks_cpuid_identify(&id, ks_cpuid_dump_fn, d);
    assert_string_equal(id.vendor, "AuthenticAMD");
    assert_int_equal(id.family, 0x19);
    assert_int_equal(id.model, 0x01);
    ks_cpuid_dump_free(d);

    static const char *const bad[] = {
        "1 0 0 0 0 => d 68747541 444d4163\n",             /* short */
        "1 0 0 0 0 => d 68747541 444d4163 69746e65 7\n",  /* long */
        "1 0 0 0 0 => d 68747541 444d4163 69746e65",      /* no final newline */
        "1 0 0 0 0 -> d 68747541 444d4163 69746e65\n",    /* wrong arrow */
        "0 0 0 0 0 => d 68747541 444d4163 69746e65\n",    /* empty mask */
        "1 0 0 0 0 => -d 68747541 444d4163 69746e65\n",   /* sign */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ks_err err;
        d = NULL;
        assert_int_equal(ks_cpuid_dump_parse(&d, "bad", bad[i], strlen(bad[i]), &err), KS_EINVAL);
        assert_null(d);
    }
}

static void test_discover__options(void **state)
{
    (void)state;
    char p[1024];
    ks_test_path(p, sizeof(p), "%s/hwloc-x86/Intel-Haswell-2xXeon-E5-2680v3.tar.bz2",
                 ks_test_fixtures_dir());
    ks_discover_options o = KS_DISCOVER_OPTIONS_INIT;
    o.fixture_path = p;
    o.tmp_dir = g_tmp;
    o.host_id = "h-0042";
    o.hostname = "rack1-h42";
    o.boot_id = "boot-7";
    o.generation = 9;
    ks_report *r = NULL;
    assert_int_equal(ks_discover_host(&r, &o, NULL), KS_OK);
    assert_string_equal(r->host.id, "h-0042");
    assert_string_equal(r->host.hostname, "rack1-h42");
    assert_string_equal(r->host.boot_id, "boot-7");
    assert_int_equal(r->host.generation, 9);
    ks_report_free(r);
    /* the same fixture twice gives the same boot id (idempotent reports) */
    ks_report *a = discover(p, KS_OK), *b = discover(p, KS_OK);
    assert_string_equal(a->host.boot_id, b->host.boot_id);
    ks_report_free(a);
    ks_report_free(b);
    ks_err err;
    o.host_id = "bad id/with slash";
    r = NULL;
    assert_int_equal(ks_discover_host(&r, &o, &err), KS_EINVAL);
    assert_null(r);
    assert_string_equal(err.field, "host_id");
}

static int run_cmd(int argc, const char **argv)
{
    /* The command prints the report: send it to /dev/null for the test. */
    fflush(stdout);
    int saved = dup(1);
    FILE *devnull = fopen("/dev/null", "w");
    dup2(fileno(devnull), 1);
    int rc = ks_agent_cmd_report(argc, (char **)argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    fclose(devnull);
    return rc;
}

static void test_discover__cmd_report(void **state)
{
    (void)state;
    char p[1024], missing[1200];
    ks_test_path(p, sizeof(p), "%s/hwloc-x86/Intel-Skylake-2xXeon6140.tar.bz2",
                 ks_test_fixtures_dir());
    ks_test_path(missing, sizeof(missing), "%s/nope.tar.bz2", g_tmp);
    const char *ok[] = {"report", "--fixture-tarball", p, "--pretty", "--host-id", "h1"};
    assert_int_equal(run_cmd(6, ok), 0);
    const char *help[] = {"report", "--help"};
    assert_int_equal(run_cmd(2, help), 0);
    const char *miss[] = {"report", "--fixture", missing};
    assert_int_equal(run_cmd(3, miss), 2);
    const char *noval[] = {"report", "--fixture"};
    assert_int_equal(run_cmd(2, noval), 2);
    const char *unknown[] = {"report", "--frobnicate"};
    assert_int_equal(run_cmd(2, unknown), 2);
    const char *badid[] = {"report", "--fixture", p, "--host-id", "a b"};
    assert_int_equal(run_cmd(5, badid), 2);
}


/* ---- the reporting client against a loopback libmicrohttpd server -------------------- */

typedef struct srv_req {
    char *body;
    size_t len;
} srv_req;

typedef struct srv {
    struct MHD_Daemon *d;
    uint16_t port;
    char url[64];
    pthread_mutex_t mu;
    int n_conn, n_req;
    char method[16], path[256], auth[256], ctype[128];
    char *body;
    /* scripted answer */
    unsigned status;
    const char *reply;
    size_t reply_len;
} srv;

static void srv_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode toe)
{
    srv *s = cls;
    (void)conn;
    (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        pthread_mutex_lock(&s->mu);
        s->n_conn++;
        pthread_mutex_unlock(&s->mu);
    }
}

static void srv_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    srv_req *rq = *con_cls;
    if (rq) {
        free(rq->body);
        free(rq);
    }
    *con_cls = NULL;
}

static void copy_hdr(char *dst, size_t cap, struct MHD_Connection *conn, const char *name)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    snprintf(dst, cap, "%s", v ? v : "");
}

static enum MHD_Result srv_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version,
                                   const char *upload_data, size_t *upload_size, void **con_cls)
{
    srv *s = cls;
    (void)version;
    srv_req *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof(*rq));
        if (!rq)
            return MHD_NO;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        char *nb = realloc(rq->body, rq->len + *upload_size + 1);
        if (!nb)
            return MHD_NO;
        memcpy(nb + rq->len, upload_data, *upload_size);
        rq->body = nb;
        rq->len += *upload_size;
        rq->body[rq->len] = '\0';
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&s->mu);
    s->n_req++;
    snprintf(s->method, sizeof(s->method), "%s", method);
    snprintf(s->path, sizeof(s->path), "%s", url);
    copy_hdr(s->auth, sizeof(s->auth), conn, "Authorization");
    copy_hdr(s->ctype, sizeof(s->ctype), conn, "Content-Type");
    free(s->body);
    s->body = rq->body ? strdup(rq->body) : strdup("");
    unsigned status = s->status;
    const char *reply = s->reply;
    size_t reply_len = s->reply_len ? s->reply_len : strlen(reply);
    pthread_mutex_unlock(&s->mu);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(reply_len, (void *)reply, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void srv_start(srv *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->status = 200;
    s->reply = "{}";
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL,
                            srv_handler, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, srv_completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, srv_notify, s, MHD_OPTION_END);
    assert_non_null(s->d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    s->port = info->port;
    assert_true(s->port != 0);
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%u/", s->port);
}

static void srv_reply(srv *s, unsigned status, const char *body)
{
    pthread_mutex_lock(&s->mu);
    s->status = status;
    s->reply = body;
    s->reply_len = 0;
    pthread_mutex_unlock(&s->mu);
}

static void srv_stop(srv *s)
{
    MHD_stop_daemon(s->d);
    free(s->body);
    pthread_mutex_destroy(&s->mu);
}

static ks_agent_client *client_for(const char *url, uint64_t timeout_us)
{
    ks_agent_client_options o = KS_AGENT_CLIENT_OPTIONS_INIT;
    ks_agent_client *c = NULL;
    o.timeout_us = timeout_us;
    o.connect_timeout_us = timeout_us;
    assert_int_equal(ks_agent_client_new(&c, url, "s3cret-token", &o, NULL), KS_OK);
    return c;
}

static const char small_report[] = "{\"schema\":1,\"host\":{\"id\":\"h-0007\"},\"cpus\":[]}";

static void test_client__report_and_heartbeat(void **state)
{
    (void)state;
    srv s;
    srv_start(&s);
    ks_agent_client *c = client_for(s.url, 5000000);
    ks_err err;

    /* a real report from a fixture, as the daemon sends it */
    char p[1024];
    ks_test_path(p, sizeof(p), "%s/hwloc-x86/Intel-Haswell-2xXeon-E5-2680v3.tar.bz2",
                 ks_test_fixtures_dir());
    ks_report *r = discover(p, KS_OK);
    json_t *doc = ks_report_to_json(r);
    char *text = json_dumps(doc, JSON_COMPACT);
    srv_reply(&s, 201, "{\"host\":\"fx-Intel-Haswell-2xXeon-E5-2680v3\",\"created\":true}");
    assert_int_equal(ks_agent_client_put_report(c, text, &err), KS_OK);
    assert_int_equal(ks_agent_client_last_status(c), 201);
    assert_non_null(strstr(ks_agent_client_last_body(c), "\"created\":true"));
    assert_string_equal(s.method, "PUT");
    assert_string_equal(s.path, "/v1/hosts/fx-Intel-Haswell-2xXeon-E5-2680v3/report");
    assert_string_equal(s.auth, "Bearer s3cret-token");
    assert_string_equal(s.ctype, "application/json");
    assert_string_equal(s.body, text);
    free(text);
    json_decref(doc);
    ks_report_free(r);

    /* heartbeats on the same connection */
    srv_reply(&s, 200, "{\"host\":\"h-0007\",\"state\":\"ready\",\"report_required\":false}");
    assert_int_equal(ks_agent_client_heartbeat(c, "h-0007", &err), KS_OK);
    assert_string_equal(s.method, "POST");
    assert_string_equal(s.path, "/v1/hosts/h-0007/heartbeat");
    assert_string_equal(s.body, "{}");
    bool again = true;
    srv_reply(&s, 200, "{\"host\":\"h-0007\",\"state\":\"ready\",\"report_required\":true}");
    assert_int_equal(ks_agent_client_heartbeat_ex(c, "h-0007", "b-1", 4, &again, &err), KS_OK);
    assert_true(again);
    assert_non_null(strstr(s.body, "\"boot_id\":\"b-1\""));
    assert_non_null(strstr(s.body, "\"generation\":4"));
    assert_int_equal(ks_agent_client_put_report(c, small_report, &err), KS_OK);
    assert_string_equal(s.path, "/v1/hosts/h-0007/report");
    assert_int_equal(s.n_req, 4);
    assert_int_equal(s.n_conn, 1); /* keep-alive: one TCP connection for all four */

    /* bad input never reaches the server */
    assert_int_equal(ks_agent_client_put_report(c, "{\"host\":{}}", &err), KS_EINVAL);
    assert_int_equal(ks_agent_client_put_report(c, "not json", &err), KS_EINVAL);
    assert_int_equal(ks_agent_client_heartbeat(c, "../etc", &err), KS_EINVAL);
    assert_int_equal(s.n_req, 4);
    ks_agent_client_free(c);
    srv_stop(&s);

    ks_agent_client *bad = NULL;
    assert_int_equal(ks_agent_client_new(&bad, "ftp://x", NULL, NULL, &err), KS_EINVAL);
    assert_int_equal(ks_agent_client_new(&bad, "http://h", "tok en", NULL, &err), KS_EINVAL);
    assert_null(bad);
}

static void test_client__error_mapping(void **state)
{
    (void)state;
    static const struct {
        unsigned status;
        const char *body;
        ks_code want;
        const char *msg;
    } cases[] = {
        {409,
         "{\"error\":{\"code\":\"conflict\",\"message\":\"stale generation 3 < 5\","
         "\"field\":\"host.generation\",\"request_id\":\"r1\"}}",
         KS_ECONFLICT, "stale generation 3 < 5"},
        {409, "{\"error\":{\"code\":\"already_exists\",\"message\":\"dup\"}}", KS_EEXIST, "dup"},
        {401, "{\"error\":{\"code\":\"unauthenticated\",\"message\":\"bad token\"}}", KS_EAUTH,
         "bad token"},
        {403, "{\"error\":{\"code\":\"forbidden\",\"message\":\"not your host\"}}",
         KS_EFORBIDDEN, "not your host"},
        {404, "{\"error\":{\"code\":\"not_found\",\"message\":\"no host\"}}", KS_ENOTFOUND,
         "no host"},
        {400, "{\"error\":{\"code\":\"invalid_argument\",\"message\":\"unknown feature "
              "'avx513'\",\"field\":\"cpus[3].native[0]\"}}",
         KS_EINVAL, "avx513"},
        {400, "<html>bad</html>", KS_EINVAL, "400"},
        {413, "", KS_ETOOLARGE, "413"},
        {429, "{\"error\":{\"code\":\"rate_limited\",\"message\":\"slow down\"}}", KS_EUNAVAIL,
         "slow down"},
        {500, "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}", KS_EUNAVAIL,
         "500"},
        {503, "{\"error\":{\"code\":\"unavailable\",\"message\":\"draining\"}}", KS_EUNAVAIL,
         "draining"},
    };
    srv s;
    srv_start(&s);
    ks_agent_client *c = client_for(s.url, 5000000);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ks_err err;
        ks_err_clear(&err);
        srv_reply(&s, cases[i].status, cases[i].body);
        ks_code rc = ks_agent_client_put_report(c, small_report, &err);
        if (rc != cases[i].want)
            fail_msg("HTTP %u: got %s, want %s (%s)", cases[i].status, ks_code_str(rc),
                     ks_code_str(cases[i].want), err.msg);
        assert_int_equal(err.code, cases[i].want);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("HTTP %u: message '%s' lacks '%s'", cases[i].status, err.msg, cases[i].msg);
        assert_int_equal(ks_agent_client_last_status(c), (int)cases[i].status);
    }
    ks_err err;
    srv_reply(&s, 409, cases[0].body);
    assert_int_equal(ks_agent_client_heartbeat(c, "h-0007", &err), KS_ECONFLICT);
    assert_string_equal(err.field, "host.generation");
    ks_agent_client_free(c);

    /* a response above the cap */
    ks_agent_client_options o = KS_AGENT_CLIENT_OPTIONS_INIT;
    o.max_response_bytes = 64;
    assert_int_equal(ks_agent_client_new(&c, s.url, NULL, &o, NULL), KS_OK);
    static char big[4096];
    memset(big, ' ', sizeof(big) - 3);
    big[0] = '{';
    big[sizeof(big) - 3] = '}';
    srv_reply(&s, 200, big);
    assert_int_equal(ks_agent_client_heartbeat(c, "h-0007", &err), KS_ETOOLARGE);
    ks_agent_client_free(c);
    srv_stop(&s);
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void test_client__unavailable(void **state)
{
    (void)state;
    ks_err err;
    /* refused: a port that was free a moment ago and has no listener */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(sa.sin_port));
    ks_agent_client *c = client_for(url, 2000000);
    assert_int_equal(ks_agent_client_put_report(c, small_report, &err), KS_EUNAVAIL);
    assert_non_null(strstr(err.msg, "put report"));
    assert_int_equal(ks_agent_client_heartbeat(c, "h-0007", &err), KS_EUNAVAIL);
    ks_agent_client_free(c);

    /* a server that accepts the connection and never answers: the total timeout */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    sa.sin_port = 0;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 4), 0);
    sl = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(sa.sin_port));
    c = client_for(url, 300000);
    uint64_t t0 = mono_us();
    assert_int_equal(ks_agent_client_heartbeat(c, "h-0007", &err), KS_EUNAVAIL);
    uint64_t dt = mono_us() - t0;
    assert_true(dt >= 250000 && dt < 5000000);
    ks_agent_client_free(c);
    close(fd);
}

static void test_client__backoff(void **state)
{
    (void)state;
    uint64_t rng = 42, rng2 = 42;
    /* full jitter: within [0, min(max, base * 2^attempt)], reproducible per seed */
    for (unsigned attempt = 0; attempt < 70; attempt++) {
        uint64_t cap = attempt < 20 ? (100000ull << attempt) : UINT64_MAX;
        if (cap > 30000000ull)
            cap = 30000000ull;
        for (int k = 0; k < 50; k++) {
            uint64_t v = ks_backoff_next_us(attempt, 100000, 30000000, &rng);
            assert_true(v <= cap);
            assert_int_equal(v, ks_backoff_next_us(attempt, 100000, 30000000, &rng2));
        }
    }
    /* the jitter spreads: late attempts are not all near the cap or near zero */
    uint64_t lo = UINT64_MAX, hi = 0, sum = 0;
    for (int k = 0; k < 1000; k++) {
        uint64_t v = ks_backoff_next_us(10, 100000, 30000000, &rng);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += v;
    }
    assert_true(lo < 3000000 && hi > 27000000);
    assert_true(sum / 1000 > 12000000 && sum / 1000 < 18000000); /* mean ~ cap/2 */
    /* degenerate inputs */
    assert_int_equal(ks_backoff_next_us(5, 0, 1000, &rng), 0);
    assert_true(ks_backoff_next_us(1000, 1, UINT64_MAX, &rng) <= UINT64_MAX);
    uint64_t zero = 0;
    assert_true(ks_backoff_next_us(3, 1000, 8000, &zero) <= 8000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_discover__cpuid_dump_parse),
        cmocka_unit_test(test_discover__x86_fixtures_match_oracle),
        cmocka_unit_test(test_discover__raptorlake_hybrid),
        cmocka_unit_test(test_discover__feature_spot_checks),
        cmocka_unit_test(test_discover__cpuid_kinds_beyond_hwloc),
        cmocka_unit_test(test_discover__linux_hybrid),
        cmocka_unit_test(test_discover__linux_arm_clusters),
        cmocka_unit_test(test_discover__linux_offline),
        cmocka_unit_test(test_discover__linux_vulns_and_pmu),
        cmocka_unit_test(test_discover__live),
        cmocka_unit_test(test_discover__garbled_dumps),
        cmocka_unit_test(test_discover__bad_fixtures),
        cmocka_unit_test(test_discover__options),
        cmocka_unit_test(test_discover__cmd_report),
        cmocka_unit_test(test_client__report_and_heartbeat),
        cmocka_unit_test(test_client__error_mapping),
        cmocka_unit_test(test_client__unavailable),
        cmocka_unit_test(test_client__backoff),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
