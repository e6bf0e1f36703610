/*
 * test_ks_sched.c - placement engine tests on small synthetic fleets: kinds,
 * NUMA, SMT isolation, anti-affinity, least capable fit, pack/spread, pools,
 * bans, defects and re-planning, capacity, explanations, index bookkeeping.
 */
#include "ks_test.h"

#include "test_ks_sched_util.h"

static ks_fleet *fleet_of(const tks_hspec *specs, size_t n)
{
    ks_fleet *f = NULL;
    assert_int_equal(ks_fleet_new(&f, NULL), KS_OK);
    for (size_t i = 0; i < n; i++) {
        ks_report *r = tks_report(&specs[i]);
        ks_err err;
        assert_int_equal(ks_fleet_host_update(f, r, NULL, &err), KS_OK);
        ks_report_free(r);
    }
    return f;
}

static void add_report(ks_fleet *f, ks_report *r, ks_sched_affected *aff)
{
    ks_err err;
    ks_code rc = ks_fleet_host_update(f, r, aff, &err);
    if (rc != KS_OK)
        fail_msg("host_update: %s", err.msg);
}

/* Places and commits; returns the code.  *plan_out (may be NULL) gets a copy. */
static ks_code place(ks_fleet *f, const ks_vm_request *q, ks_sched_explain *why)
{
    ks_plan *p = NULL;
    ks_err err;
    ks_code rc = ks_sched_place(&p, f, q, why, &err);
    if (rc != KS_OK)
        return rc;
    assert_non_null(p);
    assert_int_equal(p->generation, 1);
    assert_int_equal(p->n_vcpus, ks_vm_request_vcpus(q));
    rc = ks_fleet_vm_add(f, q, p, &err);
    if (rc != KS_OK)
        fail_msg("vm_add after place: %s", err.msg);
    ks_plan_free(p);
    ks_err cerr;
    if (ks_fleet_check(f, &cerr) != KS_OK)
        fail_msg("index check: %s", cerr.msg);
    return KS_OK;
}

static uint64_t explain_count(const ks_sched_explain *e, const char *reason)
{
    for (uint32_t i = 0; i < e->n; i++)
        if (strcmp(e->items[i].reason, reason) == 0)
            return e->items[i].count;
    return 0;
}

static const char *cpu_owner(const ks_fleet *f, const char *host, int32_t cpu);

typedef struct owner_ctx {
    int32_t cpu;
    const char *vm;
    bool found;
} owner_ctx;

static bool owner_cb(void *ctx, const ks_fleet_cpu_view *c)
{
    owner_ctx *o = ctx;
    if (c->id == o->cpu) {
        o->vm = c->vm;
        o->found = true;
        return false;
    }
    return true;
}

static const char *cpu_owner(const ks_fleet *f, const char *host, int32_t cpu)
{
    owner_ctx o = {cpu, NULL, false};
    assert_int_equal(ks_fleet_host_cpus(f, host, owner_cb, &o, NULL), KS_OK);
    assert_true(o.found);
    return o.vm;
}

/* SPEC: DESIGN.md#scheduler - performance vCPUs on performance-class CPUs,
 * efficiency on efficiency. */
static void test_sched__hybrid_kinds(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "h1",
                       .n_p = 8,
                       .n_e = 8,
                       .smt = true,
                       .p_feats = TKS_CLIENT_P,
                       .e_feats = TKS_CLIENT_E}};
    ks_fleet *f = fleet_of(hs, 1);
    ks_vm_request q = tks_req("web-1", 2, 4, 0, "avx2");
    ks_plan *p = NULL;
    ks_err err;
    assert_int_equal(ks_sched_place(&p, f, &q, NULL, &err), KS_OK);
    uint32_t n_p = 0, n_e = 0;
    for (uint32_t i = 0; i < p->n_vcpus; i++) {
        bool perf = p->vcpus[i].host_cpu < 8;
        assert_int_equal(p->vcpus[i].kind_class, perf ? KS_KIND_PERFORMANCE : KS_KIND_EFFICIENCY);
        assert_string_equal(p->vcpus[i].kind_name, perf ? "IntelCore" : "IntelAtom");
        n_p += perf;
        n_e += !perf;
    }
    assert_int_equal(n_p, 2);
    assert_int_equal(n_e, 4);
    /* the E cores lack bmi2: the guest sees the intersection */
    ks_featset bmi2 = tks_fs("bmi2");
    assert_false(ks_featset_intersects(&p->visible, &bmi2));
    assert_true(ks_featset_intersects(&p->disable, &bmi2));
    /* 4 E cores sharing one L2 -> one guest L2 group for them */
    int32_t e_l2 = -1;
    for (uint32_t i = 0; i < p->n_vcpus; i++)
        if (p->vcpus[i].kind_class == KS_KIND_EFFICIENCY) {
            if (e_l2 < 0)
                e_l2 = p->vcpus[i].l2_group;
            assert_int_equal(p->vcpus[i].l2_group, e_l2);
        }
    /* the P pair is one core's two threads */
    assert_int_equal(p->topology.threads, 2);
    assert_true(p->topology.sockets * p->topology.dies * p->topology.clusters * p->topology.cores *
                    p->topology.threads >=
                p->n_vcpus);
    assert_int_equal(p->pmu.enabled, false);
    assert_int_equal(p->n_numa, 1);
    assert_int_equal(p->numa[0].memory_mib, q.memory_mib);
    ks_plan_free(p);

    /* PMU: enabled by the request, sized by the host's PMU */
    ks_vm_request pm = tks_req("pmu-1", 1, 0, 0, NULL);
    char events[2][KS_NAME_MAX] = {"instructions", "cycles"};
    pm.pmu.enabled = true;
    pm.pmu.n_allow = 2;
    pm.pmu.allow_events = events;
    assert_int_equal(ks_sched_place(&p, f, &pm, NULL, &err), KS_OK);
    assert_true(p->pmu.enabled);
    assert_int_equal(p->pmu.version, 5);
    assert_int_equal(p->pmu.gp_counters, 8);
    assert_int_equal(p->pmu.n_allow, 2);
    assert_string_equal(p->pmu.allow_events[1], "cycles");
    assert_int_equal(p->pmu.n_deny, 0);
    ks_plan_free(p);

    /* `vcpus: N` lands on one kind when possible */
    ks_vm_request any = tks_req("any-1", 0, 0, 6, NULL);
    assert_int_equal(place(f, &any, NULL), KS_OK);
    const ks_plan *ap = ks_fleet_vm_get_plan(f, "any-1");
    for (uint32_t i = 1; i < ap->n_vcpus; i++)
        assert_int_equal(ap->vcpus[i].kind_class, ap->vcpus[0].kind_class);
    /* more efficiency vCPUs than E cores: no capacity */
    ks_vm_request big = tks_req("big", 0, 9, 0, NULL);
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    assert_int_equal(place(f, &big, &why), KS_ENOCAPACITY);
    assert_int_equal(explain_count(&why, "not enough free efficiency cpus"), 1);
    ks_sched_explain_destroy(&why);
    ks_fleet_free(f);
}

/* SPEC: DESIGN.md#scheduler - share L2/L3 like the guest topology says: among
 * equally capable CPUs, whole clusters (best fit) before split ones. */
static void test_sched__clusters(void **state)
{
    (void)state;
    tks_hspec hs[] = {
        {.id = "k1", .n_p = 2, .n_e = 8, .p_feats = TKS_CLIENT_P, .e_feats = TKS_CLIENT_E}};
    ks_fleet *f = fleet_of(hs, 1);
    ks_vm_request x = tks_req("x", 0, 1, 0, NULL);
    assert_int_equal(place(f, &x, NULL), KS_OK);
    /* cluster A has 3 free E-cores, cluster B 4: four vCPUs fit B whole */
    ks_vm_request y = tks_req("y", 0, 4, 0, NULL);
    assert_int_equal(place(f, &y, NULL), KS_OK);
    const ks_plan *py = ks_fleet_vm_get_plan(f, "y");
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(py->vcpus[i].l2_group, 0);
    assert_int_equal(py->topology.clusters, 1);
    assert_int_not_equal(py->vcpus[0].host_cpu / 4,
                         ks_fleet_vm_get_plan(f, "x")->vcpus[0].host_cpu / 4);
    /* three more fill cluster A exactly */
    ks_vm_request z = tks_req("z", 0, 3, 0, NULL);
    assert_int_equal(place(f, &z, NULL), KS_OK);
    assert_int_equal(ks_fleet_vm_get_plan(f, "z")->topology.clusters, 1);
    ks_fleet_free(f);
}

/* SPEC: DESIGN.md#scheduler - keep a VM's vCPUs in one NUMA node. */
static void test_sched__numa(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "n1", .n_p = 8, .n_numa = 2}};
    ks_fleet *f = fleet_of(hs, 1);
    ks_vm_request a = tks_req("a", 3, 0, 0, NULL);
    assert_int_equal(place(f, &a, NULL), KS_OK);
    const ks_plan *pa = ks_fleet_vm_get_plan(f, "a");
    assert_int_equal(pa->n_numa, 1);
    ks_vm_request b = tks_req("b", 3, 0, 0, NULL);
    b.numa = KS_NUMA_STRICT;
    assert_int_equal(place(f, &b, NULL), KS_OK);
    const ks_plan *pb = ks_fleet_vm_get_plan(f, "b");
    assert_int_equal(pb->n_numa, 1);
    assert_int_not_equal(pb->numa[0].host_node, pa->numa[0].host_node);
    /* one CPU free per node now */
    ks_vm_request c = tks_req("c", 2, 0, 0, NULL);
    c.numa = KS_NUMA_STRICT;
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    assert_int_equal(place(f, &c, &why), KS_ENOCAPACITY);
    assert_int_equal(explain_count(&why, "numa strict: no single node fits"), 1);
    c.numa = KS_NUMA_PREFERRED;
    c.memory_mib = 3001;
    assert_int_equal(place(f, &c, &why), KS_OK);
    const ks_plan *pc = ks_fleet_vm_get_plan(f, "c");
    assert_int_equal(pc->n_numa, 2);
    assert_int_equal(pc->topology.sockets, 2);
    assert_int_equal(pc->numa[0].memory_mib + pc->numa[1].memory_mib, 3001);
    assert_int_equal(pc->numa[0].n_vcpus + pc->numa[1].n_vcpus, 2);
    ks_sched_explain_destroy(&why);
    ks_fleet_free(f);
}

/* SPEC: DESIGN.md#scheduler - never two VMs on sibling threads with smt isolate. */
static void test_sched__smt_isolate(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "s1", .n_p = 8, .smt = true}};
    ks_fleet *f = fleet_of(hs, 1);
    ks_vm_request iso = tks_req("iso", 1, 0, 0, NULL);
    iso.smt = KS_SMT_ISOLATE;
    assert_int_equal(place(f, &iso, NULL), KS_OK);
    int32_t ic = ks_fleet_vm_get_plan(f, "iso")->vcpus[0].host_cpu;
    int32_t sib = ic ^ 1;
    char name[16];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        ks_vm_request q = tks_req(name, 1, 0, 0, NULL);
        assert_int_equal(place(f, &q, NULL), KS_OK);
        assert_int_not_equal(ks_fleet_vm_get_plan(f, name)->vcpus[0].host_cpu, sib);
    }
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    ks_vm_request q = tks_req("n6", 1, 0, 0, NULL);
    assert_int_equal(place(f, &q, &why), KS_ENOCAPACITY);
    assert_int_equal(explain_count(&why, "free cpus blocked by smt-isolated vms"), 1);
    assert_null(cpu_owner(f, "s1", sib));
    /* an isolate VM cannot take a CPU whose sibling another VM holds */
    assert_int_equal(ks_fleet_vm_remove(f, "n0", NULL), KS_OK);
    ks_vm_request iso2 = tks_req("iso2", 1, 0, 0, NULL);
    iso2.smt = KS_SMT_ISOLATE;
    assert_int_equal(place(f, &iso2, &why), KS_ENOCAPACITY);
    assert_int_equal(explain_count(&why, "smt isolate: sibling threads busy"), 1);
    /* once the isolate VM leaves, its sibling is free for anyone */
    assert_int_equal(ks_fleet_vm_remove(f, "iso", NULL), KS_OK);
    assert_int_equal(place(f, &q, NULL), KS_OK);
    ks_sched_explain_destroy(&why);
    ks_fleet_free(f);
}

/* SPEC: DESIGN.md#scheduler - anti_affinity_group: no two VMs of a group per host. */
static void test_sched__anti_affinity(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "a1", .n_p = 8}, {.id = "a2", .n_p = 8}};
    ks_fleet *f = fleet_of(hs, 2);
    const char *hosts[3];
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "db-%d", i);
        ks_vm_request q = tks_req(name, 1, 0, 0, NULL);
        snprintf(q.anti_affinity_group, sizeof(q.anti_affinity_group), "db");
        ks_sched_explain why;
        ks_sched_explain_init(&why);
        ks_code rc = place(f, &q, &why);
        if (i < 2) {
            assert_int_equal(rc, KS_OK);
            hosts[i] = ks_fleet_vm_get_plan(f, name)->host;
        } else {
            assert_int_equal(rc, KS_ENOCAPACITY);
            assert_int_equal(explain_count(&why, "anti-affinity group 'db'"), 2);
            assert_int_equal(why.hosts_considered, 2);
            json_t *j = ks_sched_explain_to_json(&why);
            assert_non_null(j);
            assert_int_equal(json_integer_value(json_object_get(j, "anti-affinity group 'db'")), 2);
            json_decref(j);
        }
        ks_sched_explain_destroy(&why);
    }
    assert_string_not_equal(hosts[0], hosts[1]);
    /* other groups are unaffected */
    ks_vm_request w = tks_req("web", 1, 0, 0, NULL);
    snprintf(w.anti_affinity_group, sizeof(w.anti_affinity_group), "web");
    assert_int_equal(place(f, &w, NULL), KS_OK);
    ks_fleet_free(f);
}

/* SPEC: DESIGN.md#scheduler - least capable fit: degraded cores first. */
static void test_sched__least_capable_fit(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "l1", .n_p = 4}};
    ks_report *r = tks_report(&hs[0]);
    tks_degrade(r, 2, "avx512f");            /* cpu 2: no AVX-512 */
    tks_set_state(r, 3, KS_CPU_QUARANTINED); /* cpu 3: unusable */
    ks_fleet *f = NULL;
    assert_int_equal(ks_fleet_new(&f, NULL), KS_OK);
    add_report(f, r, NULL);

    /* needs only AVX2: the degraded core is the least capable fit */
    ks_vm_request a = tks_req("a", 1, 0, 0, "avx2");
    assert_int_equal(place(f, &a, NULL), KS_OK);
    const ks_plan *pa = ks_fleet_vm_get_plan(f, "a");
    assert_int_equal(pa->vcpus[0].host_cpu, 2);
    ks_featset avx512f = tks_fs("avx512f");
    assert_false(ks_featset_intersects(&pa->visible, &avx512f));
    assert_true(ks_featset_intersects(&pa->disable, &avx512f));

    /* needs AVX-512: healthy cores only, never the faulty or quarantined one */
    assert_int_equal(ks_fleet_vm_remove(f, "a", NULL), KS_OK);
    ks_vm_request b = tks_req("b", 2, 0, 0, "avx512f");
    assert_int_equal(place(f, &b, NULL), KS_OK);
    const ks_plan *pb = ks_fleet_vm_get_plan(f, "b");
    for (uint32_t i = 0; i < pb->n_vcpus; i++) {
        assert_int_not_equal(pb->vcpus[i].host_cpu, 2);
        assert_int_not_equal(pb->vcpus[i].host_cpu, 3);
    }
    assert_true(ks_featset_intersects(&pb->visible, &avx512f));
    ks_vm_request c = tks_req("c", 1, 0, 0, "avx512f");
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    assert_int_equal(place(f, &c, &why), KS_ENOCAPACITY);
    assert_int_equal(explain_count(&why, "no free cpu with avx512f"), 1);
    /* a VM that needs nothing still fits on the degraded core */
    ks_vm_request d = tks_req("d", 1, 0, 0, NULL);
    assert_int_equal(place(f, &d, NULL), KS_OK);
    assert_int_equal(ks_fleet_vm_get_plan(f, "d")->vcpus[0].host_cpu, 2);
    ks_vm_request e = tks_req("e", 1, 0, 0, NULL);
    assert_int_equal(place(f, &e, &why), KS_ENOCAPACITY); /* cpu 3 is quarantined */
    ks_sched_explain_destroy(&why);
    ks_fleet_free(f);
    ks_report_free(r);

    /* across hosts: the host with a degraded core wins over a healthy one */
    tks_hspec two[] = {{.id = "healthy", .n_p = 4}, {.id = "scarred", .n_p = 4}};
    ks_report *r1 = tks_report(&two[0]), *r2 = tks_report(&two[1]);
    tks_degrade(r2, 1, "avx512f");
    assert_int_equal(ks_fleet_new(&f, NULL), KS_OK);
    add_report(f, r1, NULL);
    add_report(f, r2, NULL);
    ks_vm_request g = tks_req("g", 1, 0, 0, "sse2");
    assert_int_equal(place(f, &g, NULL), KS_OK);
    assert_string_equal(ks_fleet_vm_get_plan(f, "g")->host, "scarred");
    assert_int_equal(ks_fleet_vm_get_plan(f, "g")->vcpus[0].host_cpu, 1);
    ks_fleet_free(f);
    ks_report_free(r1);
    ks_report_free(r2);
}

/* SPEC: DESIGN.md#scheduler - pack or spread by request. */
static void test_sched__pack_spread(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "p1", .n_p = 8}, {.id = "p2", .n_p = 8}, {.id = "p3", .n_p = 8}};
    for (int mode = 0; mode < 2; mode++) {
        ks_fleet *f = fleet_of(hs, 3);
        char first[KS_ID_MAX] = "";
        int distinct = 0;
        const char *seen[3] = {0};
        for (int i = 0; i < 3; i++) {
            char name[16];
            snprintf(name, sizeof(name), "vm%d", i);
            ks_vm_request q = tks_req(name, 2, 0, 0, NULL);
            q.placement = mode ? KS_PLACE_SPREAD : KS_PLACE_PACK;
            assert_int_equal(place(f, &q, NULL), KS_OK);
            const char *h = ks_fleet_vm_get_plan(f, name)->host;
            if (!first[0])
                snprintf(first, sizeof(first), "%s", h);
            bool dup = false;
            for (int j = 0; j < distinct; j++)
                dup |= strcmp(seen[j], h) == 0;
            if (!dup)
                seen[distinct++] = h;
        }
        assert_int_equal(distinct, mode ? 3 : 1);
        ks_fleet_free(f);
    }
}

static void pool_cb(void *ctx, const char *name, const char *const *hosts, size_t n)
{
    char *out = ctx;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s=%zu:%s ", name, n, n ? hosts[n - 1] : "");
    strncat(out, buf, 255 - strlen(out));
}

static void narrow_cb(void *ctx, const char *host, const ks_featset *gained, unsigned n)
{
    char *order = ctx;
    char buf[64];
    snprintf(buf, sizeof(buf), "%s:%u ", host, n);
    strncat(order, buf, 255 - strlen(order));
    (void)gained;
}

static void host_cb(void *ctx, const char *host)
{
    char *list = ctx;
    strncat(list, host, 255 - strlen(list));
    strncat(list, " ", 255 - strlen(list));
}

/* SPEC: DESIGN.md#scheduler - pools: baseline, which hosts narrow it. */
static void test_sched__pools(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "x1", .n_p = 4, .p_feats = TKS_SERVER},
                      {.id = "x2", .n_p = 4, .p_feats = TKS_CLIENT_E},
                      {.id = "x3", .n_p = 4, .p_feats = TKS_SERVER},
                      {.id = "x4", .n_p = 4, .p_feats = TKS_SERVER}};
    ks_fleet *f = fleet_of(hs, 4);
    const char *members[] = {"x1", "x2", "x3", "ghost-host"};
    assert_int_equal(ks_fleet_pool_set(f, "gen", members, 4, NULL), KS_OK);
    ks_featset base, expect = tks_fs(TKS_CLIENT_E);
    uint32_t n_cpus = 0;
    assert_int_equal(ks_fleet_pool_baseline(f, "gen", &base, &n_cpus, NULL), KS_OK);
    assert_true(ks_featset_equal(&base, &expect));
    assert_int_equal(n_cpus, 12);
    char pools[256] = "";
    ks_fleet_pools_foreach(f, pool_cb, pools);
    assert_string_equal(pools, "gen=4:ghost-host ");
    char order[256] = "";
    assert_int_equal(ks_fleet_pool_narrowing(f, "gen", narrow_cb, order, NULL), KS_OK);
    /* x2 lacks bmi2 + 4 avx512 features */
    assert_string_equal(order, "x2:5 x1:0 x3:0 ");

    /* a pool VM sees the baseline wherever it lands, even on a server host */
    ks_vm_request q = tks_req("pv", 1, 0, 0, "avx2");
    snprintf(q.pool, sizeof(q.pool), "gen");
    snprintf(q.host, sizeof(q.host), "x1");
    assert_int_equal(place(f, &q, NULL), KS_OK);
    const ks_plan *p = ks_fleet_vm_get_plan(f, "pv");
    assert_string_equal(p->host, "x1");
    assert_true(ks_featset_equal(&p->visible, &expect));
    assert_int_equal(ks_fleet_pool_remove(f, "gen", NULL), KS_ECONFLICT);
    /* outside the pool: x4 is not a member */
    ks_vm_request o = tks_req("po", 1, 0, 0, NULL);
    snprintf(o.pool, sizeof(o.pool), "gen");
    snprintf(o.host, sizeof(o.host), "x4");
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    assert_int_equal(place(f, &o, &why), KS_ENOCAPACITY);
    assert_int_equal(explain_count(&why, "host not in pool 'gen'"), 1);
    /* required beyond the baseline */
    ks_vm_request r = tks_req("pr", 1, 0, 0, "avx512f");
    snprintf(r.pool, sizeof(r.pool), "gen");
    assert_int_equal(place(f, &r, &why), KS_ENOCAPACITY);
    assert_int_equal(explain_count(&why, "pool 'gen' baseline lacks 'avx512f'"), 1);
    ks_vm_request u = tks_req("pu", 1, 0, 0, NULL);
    snprintf(u.pool, sizeof(u.pool), "nope");
    assert_int_equal(place(f, &u, &why), KS_ENOTFOUND);
    /* draining x2 widens the baseline */
    assert_int_equal(ks_fleet_host_set_schedulable(f, "x2", false, NULL), KS_OK);
    assert_int_equal(ks_fleet_pool_baseline(f, "gen", &base, NULL, NULL), KS_OK);
    expect = tks_fs(TKS_SERVER);
    assert_true(ks_featset_equal(&base, &expect));
    /* selector helper */
    char list[256] = "";
    ks_featset need = tks_fs("avx512f");
    ks_fleet_hosts_matching(f, "genuineintel", "xeon", &need, host_cb, list);
    assert_string_equal(list, "x1 x3 x4 ");
    list[0] = '\0';
    ks_fleet_hosts_matching(f, "AuthenticAMD", NULL, NULL, host_cb, list);
    assert_string_equal(list, "");
    assert_int_equal(ks_fleet_vm_remove(f, "pv", NULL), KS_OK);
    assert_int_equal(ks_fleet_pool_remove(f, "gen", NULL), KS_OK);
    assert_int_equal(ks_fleet_pool_remove(f, "gen", NULL), KS_ENOTFOUND);
    ks_sched_explain_destroy(&why);
    ks_fleet_free(f);
}

/* The pool's baseline as the API reports it and as a pool VM placed now sees
 * it (ks_sched_place reads the cached baseline); ks_fleet_check compares the
 * cache with a from-scratch intersection. */
static void expect_pool_base(ks_fleet *f, const char *pool, const ks_featset *want,
                             uint32_t want_cpus, const ks_featset *bans)
{
    ks_featset base;
    uint32_t n_cpus = UINT32_MAX;
    ks_err err;
    assert_int_equal(ks_fleet_pool_baseline(f, pool, &base, &n_cpus, NULL), KS_OK);
    assert_true(ks_featset_equal(&base, want));
    assert_int_equal(n_cpus, want_cpus);
    if (ks_fleet_check(f, &err) != KS_OK)
        fail_msg("index check: %s", err.msg);
    if (want_cpus == 0)
        return;
    ks_vm_request q = tks_req("probe", 1, 0, 0, NULL);
    snprintf(q.pool, sizeof(q.pool), "%s", pool);
    ks_plan *p = NULL;
    if (ks_sched_place(&p, f, &q, NULL, &err) != KS_OK)
        fail_msg("pool placement: %s", err.msg);
    ks_featset seen;
    ks_featset_andnot(&seen, want, bans);
    assert_true(ks_featset_equal(&p->visible, &seen));
    ks_plan_free(p);
}

/* SPEC: DESIGN.md#scheduler - the cached pool baseline follows every change
 * that can move it: member reports (defect, repair, all CPUs offline), a member
 * appearing, draining/undraining, host removal, pool re-set and removal; it
 * ignores non-members and allocations, and the bans apply on top of it. */
static void test_sched__pool_baseline_cache(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "m1", .n_p = 4, .p_feats = TKS_SERVER},
                      {.id = "m2", .n_p = 4, .p_feats = TKS_SERVER},
                      {.id = "m3", .n_p = 2, .p_feats = TKS_CLIENT_E},
                      {.id = "out", .n_p = 4, .p_feats = TKS_BASE}};
    ks_report *r[4];
    for (int i = 0; i < 4; i++)
        r[i] = tks_report(&hs[i]);
    ks_fleet *f = NULL;
    assert_int_equal(ks_fleet_new(&f, NULL), KS_OK);
    add_report(f, r[0], NULL);
    add_report(f, r[1], NULL);
    add_report(f, r[3], NULL);
    ks_featset none, server = tks_fs(TKS_SERVER), client = tks_fs(TKS_CLIENT_E);
    ks_featset_clear(&none);
    const char *members[] = {"m1", "m2", "m3"};
    assert_int_equal(ks_fleet_pool_set(f, "gen", members, 3, NULL), KS_OK);
    expect_pool_base(f, "gen", &server, 8, &none);

    /* a non-member's report and allocations leave it alone */
    tks_degrade(r[3], 0, "sse2");
    add_report(f, r[3], NULL);
    ks_vm_request a = tks_req("a", 3, 0, 0, NULL);
    snprintf(a.pool, sizeof(a.pool), "gen");
    assert_int_equal(place(f, &a, NULL), KS_OK);
    expect_pool_base(f, "gen", &server, 8, &none);

    /* a member reports a new defect: the baseline shrinks */
    tks_degrade(r[1], 3, "avx512f");
    r[1]->host.generation++;
    add_report(f, r[1], NULL);
    ks_featset shrunk = server, closure, bad = tks_fs("avx512f");
    ks_feature_dependents_closure(&closure, &bad);
    ks_featset_andnot(&shrunk, &shrunk, &closure);
    expect_pool_base(f, "gen", &shrunk, 8, &none);
    ks_vm_request need = tks_req("need512", 1, 0, 0, "avx512f");
    snprintf(need.pool, sizeof(need.pool), "gen");
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    assert_int_equal(place(f, &need, &why), KS_ENOCAPACITY);
    assert_int_equal(explain_count(&why, "pool 'gen' baseline lacks 'avx512f'"), 1);

    /* the same report again changes nothing (the cache may stay) */
    add_report(f, r[1], NULL);
    expect_pool_base(f, "gen", &shrunk, 8, &none);

    /* the defective CPU goes offline: the member's usable CPUs are healthy again */
    tks_set_state(r[1], 3, KS_CPU_OFFLINE);
    add_report(f, r[1], NULL);
    expect_pool_base(f, "gen", &server, 7, &none);
    assert_int_equal(place(f, &need, NULL), KS_OK);

    /* a member not reported until now appears: the baseline narrows */
    add_report(f, r[2], NULL);
    expect_pool_base(f, "gen", &client, 9, &none);
    /* draining it widens the baseline, undraining narrows it again */
    assert_int_equal(ks_fleet_host_set_schedulable(f, "m3", false, NULL), KS_OK);
    expect_pool_base(f, "gen", &server, 7, &none);
    assert_int_equal(ks_fleet_host_set_schedulable(f, "m3", true, NULL), KS_OK);
    expect_pool_base(f, "gen", &client, 9, &none);
    /* every CPU of it offline: it contributes nothing */
    for (int32_t c = 0; c < 2; c++)
        tks_set_state(r[2], c, KS_CPU_OFFLINE);
    add_report(f, r[2], NULL);
    expect_pool_base(f, "gen", &server, 7, &none);
    for (int32_t c = 0; c < 2; c++) {
        ks_cpu *cp = ks_report_find_cpu(r[2], c);
        cp->state = KS_CPU_ONLINE;
        cp->usable = cp->native;
    }
    add_report(f, r[2], NULL);
    expect_pool_base(f, "gen", &client, 9, &none);
    /* removed: the baseline widens; reported again: it narrows */
    assert_int_equal(ks_fleet_host_remove(f, "m3", NULL), KS_OK);
    expect_pool_base(f, "gen", &server, 7, &none);
    add_report(f, r[2], NULL);
    expect_pool_base(f, "gen", &client, 9, &none);
    assert_int_equal(ks_fleet_host_remove(f, "m3", NULL), KS_OK);

    /* bans are applied on top of the baseline, not cached into it */
    ks_featset ban = tks_fs("avx512vl");
    ks_fleet_set_bans(f, &ban);
    expect_pool_base(f, "gen", &server, 7, &ban);
    ks_fleet_set_bans(f, NULL);
    expect_pool_base(f, "gen", &server, 7, &none);

    /* re-set with other members: the baseline is theirs */
    const char *other[] = {"m1", "out"};
    assert_int_equal(ks_fleet_pool_set(f, "gen", other, 2, NULL), KS_OK);
    ks_featset narrow = tks_fs(TKS_BASE), sse2 = tks_fs("sse2");
    ks_feature_dependents_closure(&closure, &sse2);
    ks_featset_andnot(&narrow, &narrow, &closure);
    expect_pool_base(f, "gen", &narrow, 8, &none);
    assert_int_equal(ks_fleet_vm_remove(f, "a", NULL), KS_OK);
    assert_int_equal(ks_fleet_vm_remove(f, "need512", NULL), KS_OK);
    /* removed and created anew (members not reported): nothing stale survives */
    assert_int_equal(ks_fleet_pool_remove(f, "gen", NULL), KS_OK);
    const char *ghosts[] = {"m3"};
    assert_int_equal(ks_fleet_pool_set(f, "gen", ghosts, 1, NULL), KS_OK);
    expect_pool_base(f, "gen", &none, 0, &none);
    add_report(f, r[2], NULL);
    expect_pool_base(f, "gen", &client, 2, &none);

    ks_sched_explain_destroy(&why);
    for (int i = 0; i < 4; i++)
        ks_report_free(r[i]);
    ks_fleet_free(f);
}

/* SPEC: DESIGN.md#scheduler - pool candidates that tie (same fit, same free
 * count) are taken in host id order whatever the member order; an anti-
 * affinity group still excludes a member (its summary defers to the host). */
static void test_sched__pool_ties(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "z9", .n_p = 4}, {.id = "a1", .n_p = 4}, {.id = "m5", .n_p = 4}};
    ks_fleet *f = fleet_of(hs, 3);
    const char *members[] = {"z9", "m5", "a1"};
    assert_int_equal(ks_fleet_pool_set(f, "tie", members, 3, NULL), KS_OK);
    ks_vm_request a = tks_req("a", 4, 0, 0, NULL);
    snprintf(a.pool, sizeof(a.pool), "tie");
    snprintf(a.anti_affinity_group, sizeof(a.anti_affinity_group), "g");
    assert_int_equal(place(f, &a, NULL), KS_OK);
    assert_string_equal(ks_fleet_vm_get_plan(f, "a")->host, "a1");
    ks_vm_request b = tks_req("b", 1, 0, 0, NULL);
    snprintf(b.pool, sizeof(b.pool), "tie");
    snprintf(b.anti_affinity_group, sizeof(b.anti_affinity_group), "g");
    assert_int_equal(place(f, &b, NULL), KS_OK);
    assert_string_equal(ks_fleet_vm_get_plan(f, "b")->host, "m5");
    ks_vm_request c = tks_req("c", 1, 0, 0, NULL);
    snprintf(c.pool, sizeof(c.pool), "tie");
    snprintf(c.anti_affinity_group, sizeof(c.anti_affinity_group), "g");
    assert_int_equal(place(f, &c, NULL), KS_OK);
    assert_string_equal(ks_fleet_vm_get_plan(f, "c")->host, "z9");
    /* without the group: m5 and z9 tie again (3 free each) */
    ks_vm_request d = tks_req("d", 1, 0, 0, NULL);
    snprintf(d.pool, sizeof(d.pool), "tie");
    assert_int_equal(place(f, &d, NULL), KS_OK);
    assert_string_equal(ks_fleet_vm_get_plan(f, "d")->host, "m5");
    /* removing a member host re-indexes the last one (m5): the pool follows,
     * and pack picks the fullest member that fits (m5: 2 free, z9: 3) */
    assert_int_equal(ks_fleet_vm_remove(f, "a", NULL), KS_OK);
    assert_int_equal(ks_fleet_host_remove(f, "a1", NULL), KS_OK);
    ks_err err;
    assert_int_equal(ks_fleet_check(f, &err), KS_OK);
    ks_vm_request e = tks_req("e", 2, 0, 0, NULL);
    snprintf(e.pool, sizeof(e.pool), "tie");
    assert_int_equal(place(f, &e, NULL), KS_OK);
    assert_string_equal(ks_fleet_vm_get_plan(f, "e")->host, "m5");
    ks_fleet_free(f);
}

static void seeing_cb(void *ctx, const char *vm, const char *host)
{
    char *list = ctx;
    strncat(list, vm, 255 - strlen(list));
    strncat(list, "@", 255 - strlen(list));
    strncat(list, host, 255 - strlen(list));
    strncat(list, " ", 255 - strlen(list));
}

/* SPEC: DESIGN.md#scheduler - fleet-wide feature bans: affected VMs, re-plans. */
static void test_sched__bans(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "b1", .n_p = 4}};
    ks_fleet *f = fleet_of(hs, 1);
    ks_vm_request a = tks_req("a", 2, 0, 0, "avx2");
    ks_vm_request n = tks_req("n", 1, 0, 0, NULL);
    n.forbidden = tks_fs("aes");
    assert_int_equal(place(f, &a, NULL), KS_OK);
    assert_int_equal(place(f, &n, NULL), KS_OK);
    ks_featset aes = tks_fs("aes");
    assert_false(ks_featset_intersects(&ks_fleet_vm_get_plan(f, "n")->visible, &aes));
    assert_true(ks_featset_intersects(&ks_fleet_vm_get_plan(f, "n")->disable, &aes));
    ks_fleet_set_bans(f, &aes);
    char list[256] = "";
    ks_fleet_vms_seeing(f, &aes, seeing_cb, list);
    assert_string_equal(list, "a@b1 ");
    ks_plan *p = NULL;
    ks_err err;
    assert_int_equal(ks_sched_replan(&p, f, "a", &err), KS_OK);
    assert_int_equal(p->generation, 2);
    assert_false(ks_featset_intersects(&p->visible, &aes));
    assert_true(ks_featset_intersects(&p->disable, &aes));
    const ks_plan *old = ks_fleet_vm_get_plan(f, "a");
    for (uint32_t i = 0; i < p->n_vcpus; i++) /* same CPUs: still suitable */
        assert_int_equal(p->vcpus[i].host_cpu, old->vcpus[i].host_cpu);
    assert_int_equal(ks_fleet_vm_update_plan(f, p, &err), KS_OK);
    assert_int_equal(ks_fleet_vm_update_plan(f, p, &err), KS_EINVAL); /* same generation */
    ks_plan_free(p);
    list[0] = '\0';
    ks_fleet_vms_seeing(f, &aes, seeing_cb, list);
    assert_string_equal(list, "");
    /* new placements never see a banned feature; requiring one fails */
    ks_vm_request b = tks_req("b", 1, 0, 0, NULL);
    assert_int_equal(place(f, &b, NULL), KS_OK);
    assert_false(ks_featset_intersects(&ks_fleet_vm_get_plan(f, "b")->visible, &aes));
    ks_vm_request c = tks_req("c", 1, 0, 0, "aes");
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    assert_int_equal(place(f, &c, &why), KS_ENOCAPACITY);
    assert_int_equal(explain_count(&why, "required feature 'aes' is banned"), 1);
    ks_featset got;
    ks_fleet_get_bans(f, &got);
    assert_true(ks_featset_equal(&got, &aes));
    ks_sched_explain_destroy(&why);
    ks_fleet_free(f);
}

/* SPEC: DESIGN.md#scheduler - a new defect on a CPU in use: re-plan on the same
 * host, else mark for migration. */
static void test_sched__defect_replan(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "d1", .n_p = 4}};
    ks_report *r = tks_report(&hs[0]);
    ks_fleet *f = NULL;
    ks_err err;
    assert_int_equal(ks_fleet_new(&f, NULL), KS_OK);
    add_report(f, r, NULL);
    ks_vm_request a = tks_req("a", 2, 0, 0, NULL);
    assert_int_equal(place(f, &a, NULL), KS_OK);
    int32_t c0 = ks_fleet_vm_get_plan(f, "a")->vcpus[0].host_cpu;
    ks_featset avx512f = tks_fs("avx512f");
    assert_true(ks_featset_intersects(&ks_fleet_vm_get_plan(f, "a")->visible, &avx512f));

    /* AVX-512 breaks on a's first CPU */
    tks_degrade(r, c0, "avx512f");
    r->host.generation++;
    ks_sched_affected aff;
    ks_sched_affected_init(&aff);
    add_report(f, r, &aff);
    assert_int_equal(aff.n, 1);
    assert_string_equal(aff.items[0].vm, "a");
    assert_int_equal(aff.items[0].host_cpu, c0);
    assert_int_equal(aff.items[0].vcpu, 0);
    assert_string_equal(aff.items[0].reason, "cpu 0 lost avx512f");
    assert_string_equal(cpu_owner(f, "d1", c0), "a"); /* allocation kept */
    assert_int_equal(ks_fleet_check(f, &err), KS_OK);

    ks_plan *p = NULL;
    assert_int_equal(ks_sched_replan(&p, f, "a", &err), KS_OK);
    assert_int_equal(p->generation, 2);
    assert_int_not_equal(p->vcpus[0].host_cpu, c0);
    assert_int_equal(p->vcpus[1].host_cpu, ks_fleet_vm_get_plan(f, "a")->vcpus[1].host_cpu);
    assert_true(ks_featset_intersects(&p->visible, &avx512f));
    assert_int_equal(ks_fleet_vm_update_plan(f, p, &err), KS_OK);
    int32_t moved_to = p->vcpus[0].host_cpu;
    ks_plan_free(p);
    assert_null(cpu_owner(f, "d1", c0));
    assert_string_equal(cpu_owner(f, "d1", moved_to), "a");
    assert_int_equal(ks_fleet_check(f, &err), KS_OK);

    /* fill the last healthy CPU, then break one of a's: nowhere to go */
    ks_vm_request b = tks_req("b", 1, 0, 0, "avx512f");
    assert_int_equal(place(f, &b, NULL), KS_OK);
    p = NULL;
    tks_set_state(r, moved_to, KS_CPU_QUARANTINED);
    ks_sched_affected_destroy(&aff);
    ks_sched_affected_init(&aff);
    add_report(f, r, &aff);
    assert_int_equal(aff.n, 1);
    char want[64];
    snprintf(want, sizeof(want), "cpu %d quarantined", moved_to);
    assert_string_equal(aff.items[0].reason, want);
    assert_int_equal(ks_sched_replan(&p, f, "a", &err), KS_ENOCAPACITY);
    assert_null(p);
    /* host removal refuses while VMs live */
    assert_int_equal(ks_fleet_host_remove(f, "d1", &err), KS_ECONFLICT);
    assert_int_equal(ks_fleet_vm_remove(f, "a", &err), KS_OK);
    assert_int_equal(ks_fleet_vm_remove(f, "b", &err), KS_OK);
    assert_int_equal(ks_fleet_vm_remove(f, "b", &err), KS_ENOTFOUND);
    assert_int_equal(ks_fleet_host_remove(f, "d1", &err), KS_OK);
    assert_int_equal(ks_fleet_host_count(f), 0);
    ks_sched_affected_destroy(&aff);
    ks_fleet_free(f);
    ks_report_free(r);
}

typedef struct cap_ctx {
    int calls;
    char scopes[256];
    ks_capacity last;
} cap_ctx;

static void cap_cb(void *ctx, const char *scope, const ks_capacity *c)
{
    cap_ctx *cc = ctx;
    cc->calls++;
    strncat(cc->scopes, scope, 255 - strlen(cc->scopes));
    strncat(cc->scopes, " ", 255 - strlen(cc->scopes));
    cc->last = *c;
}

/* SPEC: DESIGN.md#scheduler - capacity: total, allocated, free, degraded-but-usable,
 * reclaimed, stranded. */
static void test_sched__capacity(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "c1", .n_p = 8}};
    ks_report *r = tks_report(&hs[0]);
    r->cpus[0].reserved = true;
    tks_set_state(r, 1, KS_CPU_OFFLINE);
    tks_set_state(r, 2, KS_CPU_QUARANTINED);
    tks_degrade(r, 3, "avx512f");
    tks_degrade(r, 4, "aes");
    ks_fleet *f = NULL;
    assert_int_equal(ks_fleet_new(&f, NULL), KS_OK);
    add_report(f, r, NULL);
    ks_vm_request a = tks_req("a", 1, 0, 0, "avx2"); /* lands on degraded cpu 3 */
    assert_int_equal(place(f, &a, NULL), KS_OK);
    assert_int_equal(ks_fleet_vm_get_plan(f, "a")->vcpus[0].host_cpu, 3);
    cap_ctx cc = {0};
    ks_fleet_capacity(f, KS_CAPACITY_FLEET, cap_cb, &cc);
    assert_int_equal(cc.calls, 1);
    assert_string_equal(cc.scopes, "fleet ");
    assert_int_equal(cc.last.total, 8);
    assert_int_equal(cc.last.allocated, 1);
    assert_int_equal(cc.last.reserved, 1);
    assert_int_equal(cc.last.offline, 1);
    assert_int_equal(cc.last.quarantined, 1);
    assert_int_equal(cc.last.free, 4);
    assert_int_equal(cc.last.degraded_usable, 2);
    assert_int_equal(cc.last.reclaimed, 1);
    assert_int_equal(cc.last.stranded, 0);
    /* only AVX-512 shapes recently: the aes-degraded core still has AVX-512,
     * so nothing is stranded; AES+AVX-512 shapes strand cpu 4 */
    ks_fleet_set_shape_window(f, 10);
    ks_vm_request s = tks_req("s", 1, 0, 0, "avx512f aes");
    ks_plan *p = NULL;
    assert_int_equal(ks_sched_place(&p, f, &s, NULL, NULL), KS_OK);
    ks_plan_free(p);
    memset(&cc, 0, sizeof(cc));
    ks_fleet_capacity(f, KS_CAPACITY_HOST, cap_cb, &cc);
    assert_string_equal(cc.scopes, "c1 ");
    assert_int_equal(cc.last.stranded, 1);
    memset(&cc, 0, sizeof(cc));
    ks_fleet_capacity(f, KS_CAPACITY_KIND, cap_cb, &cc);
    assert_string_equal(cc.scopes, "performance efficiency ");
    assert_int_equal(cc.last.total, 0);
    /* draining moves free CPUs to unschedulable */
    assert_int_equal(ks_fleet_host_set_schedulable(f, "c1", false, NULL), KS_OK);
    memset(&cc, 0, sizeof(cc));
    ks_fleet_capacity(f, KS_CAPACITY_FLEET, cap_cb, &cc);
    assert_int_equal(cc.last.free, 0);
    assert_int_equal(cc.last.unschedulable, 4);
    ks_vm_request d = tks_req("d", 1, 0, 0, NULL);
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    assert_int_equal(place(f, &d, &why), KS_ENOCAPACITY);
    assert_int_equal(explain_count(&why, "host draining"), 1);
    ks_sched_explain_destroy(&why);
    const char *members[] = {"c1"};
    assert_int_equal(ks_fleet_pool_set(f, "pp", members, 1, NULL), KS_OK);
    memset(&cc, 0, sizeof(cc));
    ks_fleet_capacity(f, KS_CAPACITY_POOL, cap_cb, &cc);
    assert_string_equal(cc.scopes, "pp ");
    assert_int_equal(cc.last.total, 8);
    assert_string_equal(ks_capacity_by_to_str(KS_CAPACITY_KIND), "kind");
    assert_int_equal(ks_capacity_by_from_str("pool"), KS_CAPACITY_POOL);
    assert_int_equal(ks_capacity_by_from_str("nope"), -1);
    assert_true(ks_fleet_memory_bytes(f) > 0);
    ks_fleet_free(f);
    ks_report_free(r);
}

/* SPEC: DESIGN.md#scheduler - failure explanations count hosts per reason. */
static void test_sched__explain(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "e1", .n_p = 4, .p_feats = TKS_CLIENT_P},
                      {.id = "e2", .n_p = 4, .p_feats = TKS_CLIENT_P},
                      {.id = "e3", .n_p = 4, .p_feats = TKS_CLIENT_P},
                      {.id = "e4", .n_p = 4},
                      {.id = "e5", .n_p = 4},
                      {.id = "e6", .n_p = 4, .p_mhz = 2000}};
    ks_fleet *f = fleet_of(hs, 6);
    assert_int_equal(ks_fleet_host_set_schedulable(f, "e4", false, NULL), KS_OK);
    assert_int_equal(ks_fleet_host_set_schedulable(f, "e5", false, NULL), KS_OK);
    ks_vm_request q = tks_req("q", 2, 0, 0, "avx512f");
    q.min_mhz = 3000;
    ks_sched_explain why;
    ks_sched_explain_init(&why);
    ks_err err;
    ks_plan *p = NULL;
    assert_int_equal(ks_sched_place(&p, f, &q, &why, &err), KS_ENOCAPACITY);
    assert_null(p);
    assert_int_equal(why.hosts_considered, 6);
    assert_int_equal(explain_count(&why, "no free cpu with avx512f"), 3);
    assert_int_equal(explain_count(&why, "host draining"), 2);
    assert_int_equal(explain_count(&why, "no free cpu at min_mhz 3000"), 1);
    assert_string_equal(why.items[0].reason, "no free cpu with avx512f"); /* sorted */
    assert_non_null(strstr(err.msg, "avx512f"));
    /* bad requests */
    ks_vm_request z = tks_req("z", 0, 0, 0, NULL);
    assert_int_equal(ks_sched_place(&p, f, &z, &why, &err), KS_EINVAL);
    ks_vm_request bad = tks_req("bad name!", 1, 0, 0, NULL);
    assert_int_equal(ks_sched_place(&p, f, &bad, &why, &err), KS_EINVAL);
    ks_vm_request pin = tks_req("pin", 1, 0, 0, NULL);
    snprintf(pin.host, sizeof(pin.host), "nowhere");
    assert_int_equal(ks_sched_place(&p, f, &pin, &why, &err), KS_ENOTFOUND);
    ks_vm_request both = tks_req("both", 1, 0, 0, "aes");
    both.forbidden = tks_fs("aes");
    assert_int_equal(ks_sched_place(&p, f, &both, &why, &err), KS_EINVAL);
    ks_sched_explain_destroy(&why);
    ks_fleet_free(f);
}

static bool count_plan(void *ctx, const ks_plan *p)
{
    int *n = ctx;
    assert_string_equal(p->vm, "a");
    (*n)++;
    return true;
}

/* Index bookkeeping: vm_add conflicts, replace keeps allocations, equality. */
static void test_sched__index(void **state)
{
    (void)state;
    tks_hspec hs[] = {{.id = "i1", .n_p = 4, .n_e = 4}};
    ks_fleet *f = fleet_of(hs, 1);
    ks_vm_request a = tks_req("a", 1, 1, 0, NULL);
    ks_plan *p = NULL;
    ks_err err;
    assert_int_equal(ks_sched_place(&p, f, &a, NULL, &err), KS_OK);
    assert_int_equal(ks_fleet_vm_add(f, &a, p, &err), KS_OK);
    assert_int_equal(ks_fleet_vm_add(f, &a, p, &err), KS_EEXIST);
    assert_int_equal(ks_sched_place(&p, f, &a, NULL, &err) == KS_EEXIST, true);
    /* same CPUs under another name: conflict, index unchanged */
    snprintf(p->vm, sizeof(p->vm), "b");
    assert_int_equal(ks_fleet_vm_add(f, &a, p, &err), KS_ECONFLICT);
    p->vcpus[0].host_cpu = 77;
    assert_int_equal(ks_fleet_vm_add(f, &a, p, &err), KS_EINVAL);
    snprintf(p->host, sizeof(p->host), "zz");
    assert_int_equal(ks_fleet_vm_add(f, &a, p, &err), KS_ENOTFOUND);
    ks_plan_free(p);
    assert_int_equal(ks_fleet_vm_count(f), 1);
    assert_int_equal(ks_fleet_check(f, &err), KS_OK);

    int n_plans = 0;
    ks_fleet_vms_foreach(f, count_plan, &n_plans);
    assert_int_equal(n_plans, 1);
    ks_fleet_host_view hv;
    assert_int_equal(ks_fleet_host_get(f, "i1", &hv, &err), KS_OK);
    assert_int_equal(hv.n_cpus, 8);
    assert_int_equal(hv.n_allocated, 2);
    assert_int_equal(hv.n_free, 6);
    assert_int_equal(hv.n_vms, 1);
    assert_int_equal(ks_fleet_host_at(f, 0, &hv, &err), KS_OK);
    assert_string_equal(hv.id, "i1");
    assert_int_equal(ks_fleet_host_at(f, 1, &hv, &err), KS_ENOTFOUND);

    /* rebuild equals live; a difference is named */
    ks_fleet *g = fleet_of(hs, 1);
    assert_false(ks_fleet_equal(f, g, &err));
    assert_int_equal(err.code, KS_ECONFLICT);
    assert_int_equal(ks_fleet_vm_add(g, &a, ks_fleet_vm_get_plan(f, "a"), &err), KS_OK);
    assert_true(ks_fleet_equal(f, g, &err));
    assert_true(ks_fleet_equal(g, f, &err));
    /* a report replacing the host keeps allocations: still equal after both update */
    ks_report *r = tks_report(&hs[0]);
    add_report(f, r, NULL);
    assert_true(ks_fleet_equal(f, g, &err));
    ks_report_free(r);
    /* a report that drops a held CPU keeps it as a ghost and reports the VM */
    tks_hspec smaller = {.id = "i1", .n_p = 4, .n_e = 0};
    r = tks_report(&smaller);
    ks_sched_affected aff;
    ks_sched_affected_init(&aff);
    add_report(f, r, &aff);
    assert_int_equal(aff.n, 1);
    assert_string_equal(aff.items[0].vm, "a");
    assert_non_null(strstr(aff.items[0].reason, "vanished"));
    assert_int_equal(ks_fleet_check(f, &err), KS_OK);
    ks_sched_affected_destroy(&aff);
    ks_report_free(r);
    /* invalid reports are refused */
    tks_hspec empty = {.id = "bad id", .n_p = 1};
    r = tks_report(&empty);
    assert_int_equal(ks_fleet_host_update(f, r, NULL, &err), KS_EINVAL);
    ks_report_free(r);
    tks_hspec dup = {.id = "dup", .n_p = 2};
    r = tks_report(&dup);
    r->cpus[1].id = 0;
    assert_int_equal(ks_fleet_host_update(f, r, NULL, &err), KS_EINVAL);
    ks_report_free(r);
    assert_int_equal(ks_fleet_host_count(f), 1);
    ks_fleet_free(g);
    ks_fleet_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sched__hybrid_kinds),
        cmocka_unit_test(test_sched__clusters),
        cmocka_unit_test(test_sched__numa),
        cmocka_unit_test(test_sched__smt_isolate),
        cmocka_unit_test(test_sched__anti_affinity),
        cmocka_unit_test(test_sched__least_capable_fit),
        cmocka_unit_test(test_sched__pack_spread),
        cmocka_unit_test(test_sched__pools),
        cmocka_unit_test(test_sched__pool_baseline_cache),
        cmocka_unit_test(test_sched__pool_ties),
        cmocka_unit_test(test_sched__bans),
        cmocka_unit_test(test_sched__defect_replan),
        cmocka_unit_test(test_sched__capacity),
        cmocka_unit_test(test_sched__explain),
        cmocka_unit_test(test_sched__index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
