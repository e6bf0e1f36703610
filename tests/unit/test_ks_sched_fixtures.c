/*
 * test_ks_sched_fixtures.c - placement on fleets of recorded machines: host
 * reports come from agent discovery of the shared hwloc fixtures (hybrid
 * Raptor Lake, two-socket Sapphire Rapids / Skylake / Cascade Lake / Haswell
 * servers, AMD Zen 3), so kinds, SMT siblings, caches and NUMA nodes are the
 * real ones.
 */
#include "ks_test.h"

#include "ks_discover.h"
#include "test_ks_sched_util.h"

static char g_tmp[4096];

static ks_report *load(const char *name, const char *host_id)
{
    char path[4200];
    ks_test_path(path, sizeof(path), "%s/hwloc-x86/%s.tar.bz2", ks_test_fixtures_dir(), name);
    ks_discover_options o = KS_DISCOVER_OPTIONS_INIT;
    o.fixture_path = path;
    o.host_id = host_id;
    o.tmp_dir = g_tmp;
    ks_report *r = NULL;
    ks_err err;
    if (ks_discover_host(&r, &o, &err) != KS_OK)
        fail_msg("discover %s: %s", name, err.msg);
    return r;
}

static int setup(void **state)
{
    (void)state;
    ks_test_mkdtemp(g_tmp, sizeof(g_tmp));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ks_test_rmdir(g_tmp);
    return 0;
}

static void commit(ks_fleet *f, const ks_vm_request *q, ks_plan **out)
{
    ks_plan *p = NULL;
    ks_err err;
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    if (ks_sched_place(&p, f, q, &why, &err) != KS_OK)
        fail_msg("place %s: %s", q->name, err.msg);
    if (ks_fleet_vm_add(f, q, p, &err) != KS_OK)
        fail_msg("vm_add %s: %s", q->name, err.msg);
    if (ks_fleet_check(f, &err) != KS_OK)
        fail_msg("check: %s", err.msg);
    ks_sched_explain_destroy(&why);
    *out = p;
}

static uint8_t report_kind(const ks_report *r, int32_t cpu)
{
    const ks_cpu *c = ks_report_find_cpu(r, cpu);
    assert_non_null(c);
    return c->kind >= 0 ? r->kinds[c->kind].kind_class : KS_KIND_PERFORMANCE;
}

/* Raptor Lake i7-1370P: 6 P-cores x 2 threads + 8 E-cores. */
static void test_sched_fixtures__hybrid_raptorlake(void **state)
{
    (void)state;
    ks_report *r = load("Intel-RaptorLake-Corei7-1370P", "rpl");
    ks_fleet *f = NULL;
    assert_int_equal(ks_fleet_new(&f, NULL), KS_OK);
    assert_int_equal(ks_fleet_host_update(f, r, NULL, NULL), KS_OK);
    uint32_t n_p = 0, n_e = 0;
    for (uint32_t i = 0; i < r->n_cpus; i++)
        report_kind(r, r->cpus[i].id) == KS_KIND_PERFORMANCE ? n_p++ : n_e++;
    assert_int_equal(n_p, 12);
    assert_int_equal(n_e, 8);

    ks_vm_request q = tks_req("web", 2, 4, 0, "avx2");
    ks_plan *p = NULL;
    commit(f, &q, &p);
    uint32_t got[2] = {0, 0};
    for (uint32_t i = 0; i < p->n_vcpus; i++) {
        assert_int_equal(p->vcpus[i].kind_class, report_kind(r, p->vcpus[i].host_cpu));
        got[p->vcpus[i].kind_class]++;
    }
    assert_int_equal(got[KS_KIND_PERFORMANCE], 2);
    assert_int_equal(got[KS_KIND_EFFICIENCY], 4);
    /* E-cores come in clusters of 4 sharing an L2: one guest L2 group */
    int32_t l2 = -1;
    for (uint32_t i = 0; i < p->n_vcpus; i++)
        if (p->vcpus[i].kind_class == KS_KIND_EFFICIENCY) {
            if (l2 < 0)
                l2 = p->vcpus[i].l2_group;
            assert_int_equal(p->vcpus[i].l2_group, l2);
        }
    ks_plan_free(p);

    /* all remaining E-cores, then no more */
    ks_vm_request e = tks_req("eff", 0, 4, 0, NULL);
    commit(f, &e, &p);
    ks_plan_free(p);
    ks_vm_request e2 = tks_req("eff2", 0, 1, 0, NULL);
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    assert_int_equal(ks_sched_place(&p, f, &e2, &why, NULL), KS_ENOCAPACITY);
    assert_int_equal(why.n, 1);
    assert_string_equal(why.items[0].reason, "not enough free efficiency cpus");
    ks_sched_explain_destroy(&why);

    /* smt isolate on P-cores: one whole core each */
    ks_vm_request iso = tks_req("iso", 2, 0, 0, NULL);
    iso.smt = KS_SMT_ISOLATE;
    commit(f, &iso, &p);
    const ks_cpu *a = ks_report_find_cpu(r, p->vcpus[0].host_cpu);
    const ks_cpu *b = ks_report_find_cpu(r, p->vcpus[1].host_cpu);
    assert_int_equal(a->core, b->core);
    assert_int_equal(p->topology.threads, 2);
    ks_plan_free(p);
    ks_fleet_free(f);
    ks_report_free(r);
}

/* Two-socket Sapphire Rapids: NUMA strict keeps one node; a defect steers
 * AVX-512-free guests onto the degraded core. */
static void test_sched_fixtures__server_numa_defect(void **state)
{
    (void)state;
    ks_report *r = load("Intel-SapphireRapids-2xXeonMax9460", "spr");
    ks_fleet *f = NULL;
    ks_err err;
    assert_int_equal(ks_fleet_new(&f, NULL), KS_OK);
    assert_int_equal(ks_fleet_host_update(f, r, NULL, NULL), KS_OK);
    ks_vm_request q = tks_req("db", 8, 0, 0, "avx512f");
    q.numa = KS_NUMA_STRICT;
    q.memory_mib = 16384;
    ks_plan *p = NULL;
    commit(f, &q, &p);
    assert_int_equal(p->n_numa, 1);
    int32_t node = ks_report_find_cpu(r, p->vcpus[0].host_cpu)->numa_node;
    for (uint32_t i = 0; i < p->n_vcpus; i++)
        assert_int_equal(ks_report_find_cpu(r, p->vcpus[i].host_cpu)->numa_node, node);
    assert_int_equal(p->numa[0].memory_mib, 16384);
    ks_featset amx = tks_fs("avx512f");
    assert_true(ks_featset_intersects(&p->visible, &amx));
    ks_plan_free(p);

    /* AVX-512 fails on the highest CPU: a guest needing only AVX2 gets it */
    int32_t bad = r->cpus[r->n_cpus - 1].id;
    tks_degrade(r, bad, "avx512f");
    r->host.generation++;
    ks_sched_affected aff;
    ks_sched_affected_init(&aff);
    assert_int_equal(ks_fleet_host_update(f, r, &aff, &err), KS_OK);
    assert_int_equal(aff.n, 0); /* nobody ran there */
    ks_sched_affected_destroy(&aff);
    ks_vm_request w = tks_req("web", 1, 0, 0, "avx2");
    commit(f, &w, &p);
    assert_int_equal(p->vcpus[0].host_cpu, bad);
    ks_plan_free(p);

    /* rebuild equals live */
    ks_fleet *g = NULL;
    assert_int_equal(ks_fleet_new(&g, NULL), KS_OK);
    assert_int_equal(ks_fleet_host_update(g, r, NULL, NULL), KS_OK);
    assert_int_equal(ks_fleet_vm_add(g, &q, ks_fleet_vm_get_plan(f, "db"), &err), KS_OK);
    assert_int_equal(ks_fleet_vm_add(g, &w, ks_fleet_vm_get_plan(f, "web"), &err), KS_OK);
    if (!ks_fleet_equal(f, g, &err))
        fail_msg("rebuild differs: %s", err.msg);
    ks_fleet_free(g);
    ks_fleet_free(f);
    ks_report_free(r);
}

static void narrow_cb(void *ctx, const char *host, const ks_featset *gained, unsigned n)
{
    char *order = ctx;
    (void)gained;
    if (n) {
        strncat(order, host, 255 - strlen(order));
        strncat(order, " ", 255 - strlen(order));
    }
}

/* A migration pool across server generations: Haswell narrows the baseline
 * (no AVX-512); without it the baseline has AVX-512. */
static void test_sched_fixtures__pool_generations(void **state)
{
    (void)state;
    const char *names[] = {"Intel-Skylake-2xXeon6140", "Intel-CascadeLake-2xXeon6230",
                           "Intel-Haswell-2xXeon-E5-2680v3"};
    const char *ids[] = {"skx", "clx", "hsw"};
    ks_fleet *f = NULL;
    assert_int_equal(ks_fleet_new(&f, NULL), KS_OK);
    for (int i = 0; i < 3; i++) {
        ks_report *r = load(names[i], ids[i]);
        assert_int_equal(ks_fleet_host_update(f, r, NULL, NULL), KS_OK);
        ks_report_free(r);
    }
    assert_int_equal(ks_fleet_pool_set(f, "gen", ids, 3, NULL), KS_OK);
    ks_featset base, avx512f = tks_fs("avx512f"), avx2 = tks_fs("avx2");
    assert_int_equal(ks_fleet_pool_baseline(f, "gen", &base, NULL, NULL), KS_OK);
    assert_false(ks_featset_intersects(&base, &avx512f));
    assert_true(ks_featset_subset(&avx2, &base));
    char order[256] = "";
    assert_int_equal(ks_fleet_pool_narrowing(f, "gen", narrow_cb, order, NULL), KS_OK);
    assert_true(strncmp(order, "hsw ", 4) == 0);
    /* pool VMs see the baseline even on the Cascade Lake host */
    ks_vm_request q = tks_req("mig", 4, 0, 0, "avx2");
    snprintf(q.pool, sizeof(q.pool), "gen");
    snprintf(q.host, sizeof(q.host), "clx");
    ks_plan *p = NULL;
    commit(f, &q, &p);
    assert_true(ks_featset_equal(&p->visible, &base));
    assert_true(ks_featset_intersects(&p->disable, &avx512f));
    ks_plan_free(p);
    const char *newer[] = {"skx", "clx"};
    assert_int_equal(ks_fleet_pool_set(f, "avx512", newer, 2, NULL), KS_OK);
    assert_int_equal(ks_fleet_pool_baseline(f, "avx512", &base, NULL, NULL), KS_OK);
    assert_true(ks_featset_subset(&avx512f, &base));
    ks_fleet_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sched_fixtures__hybrid_raptorlake),
        cmocka_unit_test(test_sched_fixtures__server_numa_defect),
        cmocka_unit_test(test_sched_fixtures__pool_generations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
