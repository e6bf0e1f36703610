/*
 * test_ks_sched_prop.c - property test of the placement engine: random fleets
 * and random sequences of placements, deletions, new defects, drains and bans
 * (fixed seeds, 10,000 steps each) keep the invariants:
 *  - the index's own consistency (ks_fleet_check) after every step;
 *  - no host CPU held by two VMs;
 *  - every vCPU of a VM not marked for migration is on a CPU that is usable
 *    and has every feature the VM sees usable; visible contains required and
 *    no forbidden or banned feature;
 *  - kind counts, anti-affinity and SMT isolation hold;
 *  - allocated counts match the VMs' vCPUs;
 *  - the pool baseline the index serves (cached, invalidated by reports,
 *    drains and membership changes) equals one computed here from scratch
 *    from the reports, the drains and the current members;
 *  - an index rebuilt from scratch (reports + pools + bans + VMs) equals the
 *    live one (ks_fleet_equal), as a restart from the store would build it.
 */
#include "ks_test.h"

#include "test_ks_sched_util.h"

#define MAX_HOSTS 24
#define MAX_VMS 512
#define STEPS 10000

typedef struct pvm {
    ks_vm_request req;
    bool needs_migration;
} pvm;

typedef struct pstate {
    uint64_t rng;
    ks_fleet *f;
    uint32_t n_hosts;
    ks_report *reports[MAX_HOSTS];
    bool drained[MAX_HOSTS];
    uint32_t n_vms;
    pvm vms[MAX_VMS];
    uint32_t next_id;
    ks_featset bans;
    ks_featset bans_ever; /* a banned required feature stays dropped after the ban lifts */
    const char *pool_members[MAX_HOSTS];
    uint32_t n_pool;
    uint64_t placed, failed, removed, defects, replans, migrations, max_live, oracle_checked;
} pstate;

static uint32_t rnd(pstate *s, uint32_t n)
{
    /* xorshift64*: deterministic per seed */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return n ? (uint32_t)((s->rng * UINT64_C(2685821657736338717)) >> 33) % n : 0;
}

static const char *const feats[] = {"avx2", "aes", "avx512f", "fma", "bmi2"};

static void build_fleet(pstate *s)
{
    assert_int_equal(ks_fleet_new(&s->f, NULL), KS_OK);
    s->n_hosts = 12 + rnd(s, MAX_HOSTS - 12);
    for (uint32_t i = 0; i < s->n_hosts; i++) {
        char id[32];
        snprintf(id, sizeof(id), "h%02u", i);
        tks_hspec sp = {.id = id};
        switch (rnd(s, 3)) {
        case 0: /* hybrid client */
            sp.n_p = 2 * (2 + rnd(s, 3));
            sp.n_e = 4 * (1 + rnd(s, 3));
            sp.smt = true;
            sp.p_feats = TKS_CLIENT_P;
            sp.e_feats = TKS_CLIENT_E;
            break;
        case 1: /* server */
            sp.n_p = 16 + 16 * rnd(s, 3);
            sp.smt = true;
            sp.n_numa = 1 + rnd(s, 2);
            sp.p_mhz = 3800;
            break;
        default: /* small */
            sp.n_p = 4 + rnd(s, 5);
            sp.p_feats = rnd(s, 2) ? TKS_CLIENT_P : TKS_SERVER;
            break;
        }
        ks_report *r = tks_report(&sp);
        for (uint32_t c = 0; c < r->n_cpus; c++) {
            uint32_t x = rnd(s, 100);
            if (x < 6)
                tks_degrade(r, (int32_t)c, feats[rnd(s, 5)]);
            else if (x == 6)
                tks_set_state(r, (int32_t)c, KS_CPU_QUARANTINED);
            else if (x == 7)
                tks_set_state(r, (int32_t)c, KS_CPU_OFFLINE);
            else if (x == 8)
                r->cpus[c].reserved = true;
        }
        s->reports[i] = r;
        assert_int_equal(ks_fleet_host_update(s->f, r, NULL, NULL), KS_OK);
        if (i % 2 == 0)
            s->pool_members[s->n_pool++] = r->host.id;
    }
    assert_int_equal(ks_fleet_pool_set(s->f, "pa", s->pool_members, s->n_pool, NULL), KS_OK);
}

static ks_vm_request random_req(pstate *s)
{
    char name[KS_ID_MAX];
    snprintf(name, sizeof(name), "vm-%u", s->next_id++);
    uint32_t np = 0, ne = 0, na = 0;
    uint32_t k = rnd(s, 10);
    if (k < 3)
        na = 1 + rnd(s, 4);
    else if (k < 7)
        np = 1 + rnd(s, 4);
    else if (k < 9) {
        np = 1 + rnd(s, 2);
        ne = 1 + rnd(s, 4);
    } else
        ne = 1 + rnd(s, 4);
    ks_vm_request q = tks_req(name, np, ne, na, NULL);
    for (unsigned i = 0; i < 5; i++)
        if (rnd(s, 5) == 0)
            ks_feature_add_name(&q.required, feats[i], NULL);
    if (rnd(s, 10) == 0) {
        ks_featset aes = tks_fs("aes");
        ks_featset_andnot(&q.required, &q.required, &aes);
        q.forbidden = aes;
    }
    q.smt = rnd(s, 10) == 0 ? KS_SMT_ISOLATE : KS_SMT_ALLOW;
    q.numa = rnd(s, 5) == 0 ? KS_NUMA_STRICT : KS_NUMA_PREFERRED;
    q.placement = rnd(s, 3) == 0 ? KS_PLACE_SPREAD : KS_PLACE_PACK;
    if (rnd(s, 5) == 0)
        snprintf(q.anti_affinity_group, sizeof(q.anti_affinity_group), "g%u", rnd(s, 2));
    if (rnd(s, 10) == 0)
        snprintf(q.pool, sizeof(q.pool), "pa");
    if (rnd(s, 10) == 0)
        q.min_mhz = 4000;
    if (rnd(s, 20) == 0)
        snprintf(q.host, sizeof(q.host), "%s", s->reports[rnd(s, s->n_hosts)]->host.id);
    return q;
}

static pvm *find_vm(pstate *s, const char *name)
{
    for (uint32_t i = 0; i < s->n_vms; i++)
        if (strcmp(s->vms[i].req.name, name) == 0)
            return &s->vms[i];
    return NULL;
}

static void replan_vm(pstate *s, pvm *v)
{
    ks_plan *p = NULL;
    ks_err err;
    ks_code rc = ks_sched_replan(&p, s->f, v->req.name, &err);
    s->replans++;
    if (rc == KS_ENOCAPACITY) {
        v->needs_migration = true;
        s->migrations++;
        return;
    }
    if (rc != KS_OK)
        fail_msg("replan %s: %s", v->req.name, err.msg);
    rc = ks_fleet_vm_update_plan(s->f, p, &err);
    if (rc != KS_OK)
        fail_msg("update_plan %s: %s", v->req.name, err.msg);
    v->needs_migration = false;
    ks_plan_free(p);
}

static int32_t g_owner[MAX_HOSTS][256];

/* (host index, cpu id) -> index into s->vms, -1 when free. */
static void build_owner(pstate *s)
{
    for (uint32_t h = 0; h < MAX_HOSTS; h++)
        for (uint32_t c = 0; c < 256; c++)
            g_owner[h][c] = -1;
    for (uint32_t i = 0; i < s->n_vms; i++) {
        const ks_plan *p = ks_fleet_vm_get_plan(s->f, s->vms[i].req.name);
        uint32_t h = 0;
        while (h < s->n_hosts && strcmp(s->reports[h]->host.id, p->host) != 0)
            h++;
        assert_true(h < s->n_hosts);
        for (uint32_t k = 0; k < p->n_vcpus; k++) {
            int32_t cpu = p->vcpus[k].host_cpu;
            assert_true(cpu >= 0 && cpu < 256);
            if (g_owner[h][cpu] != -1)
                fail_msg("cpu %d of %s held by %s and %s", cpu, p->host,
                         s->vms[g_owner[h][cpu]].req.name, s->vms[i].req.name);
            g_owner[h][cpu] = (int32_t)i;
        }
    }
}

/*
 * Brute-force oracle for simple requests (smt allow, numa preferred, no pool):
 * when the engine says no capacity, no schedulable host may have enough free
 * suitable CPUs of each kind.
 */
static void check_no_capacity(pstate *s, const ks_vm_request *q)
{
    if (q->smt != KS_SMT_ALLOW || q->numa != KS_NUMA_PREFERRED || q->pool[0] ||
        ks_featset_intersects(&q->required, &s->bans))
        return;
    build_owner(s);
    for (uint32_t h = 0; h < s->n_hosts; h++) {
        const ks_report *r = s->reports[h];
        if (s->drained[h] || (q->host[0] && strcmp(q->host, r->host.id) != 0))
            continue;
        bool aa = false;
        for (uint32_t i = 0; i < s->n_vms && q->anti_affinity_group[0]; i++)
            if (strcmp(s->vms[i].req.anti_affinity_group, q->anti_affinity_group) == 0 &&
                strcmp(ks_fleet_vm_get_plan(s->f, s->vms[i].req.name)->host, r->host.id) == 0)
                aa = true;
        if (aa)
            continue;
        uint32_t avail[2] = {0, 0};
        for (uint32_t c = 0; c < r->n_cpus; c++) {
            const ks_cpu *x = &r->cpus[c];
            if (g_owner[h][x->id] >= 0 || x->reserved ||
                !(x->state == KS_CPU_ONLINE || x->state == KS_CPU_DEGRADED) ||
                x->max_mhz < q->min_mhz || !ks_featset_subset(&q->required, &x->usable))
                continue;
            bool blocked = false;
            for (uint32_t d = 0; d < r->n_cpus; d++) {
                const ks_cpu *y = &r->cpus[d];
                int32_t o = g_owner[h][y->id];
                if (d != c && y->core == x->core && y->package == x->package && o >= 0 &&
                    s->vms[o].req.smt == KS_SMT_ISOLATE)
                    blocked = true;
            }
            if (blocked)
                continue;
            int k = x->kind >= 0 ? r->kinds[x->kind].kind_class : KS_KIND_PERFORMANCE;
            avail[k]++;
        }
        if (avail[0] >= q->n_performance && avail[1] >= q->n_efficiency &&
            avail[0] + avail[1] >= ks_vm_request_vcpus(q))
            fail_msg("no capacity for %s but host %s has %u+%u suitable free cpus", q->name,
                     r->host.id, avail[0], avail[1]);
    }
    s->oracle_checked++;
}

static void step_place(pstate *s)
{
    if (s->n_vms == MAX_VMS)
        return;
    ks_vm_request q = random_req(s);
    ks_plan *p = NULL;
    ks_sched_explain why;
    ks_err err;
    ks_sched_explain_init(&why);
    ks_code rc = ks_sched_place(&p, s->f, &q, &why, &err);
    if (rc == KS_OK) {
        rc = ks_fleet_vm_add(s->f, &q, p, &err);
        if (rc != KS_OK)
            fail_msg("vm_add %s: %s", q.name, err.msg);
        if (s->placed % 16 == 0) {
            /* what the agent receives must decode back to the same plan */
            json_t *j = ks_plan_to_json(p);
            ks_plan *back = NULL;
            assert_non_null(j);
            if (ks_plan_from_json(&back, j, &err) != KS_OK)
                fail_msg("plan of %s does not decode: %s (%s)", q.name, err.msg, err.field);
            assert_int_equal(back->n_vcpus, p->n_vcpus);
            for (uint32_t k = 0; k < p->n_vcpus; k++)
                assert_int_equal(back->vcpus[k].host_cpu, p->vcpus[k].host_cpu);
            assert_true(ks_featset_equal(&back->visible, &p->visible));
            assert_true(ks_featset_equal(&back->disable, &p->disable));
            json_decref(j);
            ks_plan_free(back);
        }
        s->vms[s->n_vms].req = q;
        s->vms[s->n_vms].needs_migration = false;
        s->n_vms++;
        s->placed++;
        ks_plan_free(p);
    } else {
        if (rc != KS_ENOCAPACITY)
            fail_msg("place %s: %s (%s)", q.name, err.msg, ks_code_str(rc));
        assert_null(p);
        assert_true(why.n > 0);
        s->failed++;
        check_no_capacity(s, &q);
    }
    ks_sched_explain_destroy(&why);
}

static void step_remove(pstate *s)
{
    if (!s->n_vms)
        return;
    uint32_t i = rnd(s, s->n_vms);
    assert_int_equal(ks_fleet_vm_remove(s->f, s->vms[i].req.name, NULL), KS_OK);
    s->vms[i] = s->vms[--s->n_vms];
    s->removed++;
}

static void step_defect(pstate *s)
{
    uint32_t h = rnd(s, s->n_hosts);
    ks_report *r = s->reports[h];
    int32_t c = (int32_t)rnd(s, r->n_cpus);
    if (rnd(s, 5) == 0)
        tks_set_state(r, c, KS_CPU_QUARANTINED);
    else if (r->cpus[c].state == KS_CPU_ONLINE || r->cpus[c].state == KS_CPU_DEGRADED)
        tks_degrade(r, c, feats[rnd(s, 5)]);
    r->host.generation++;
    ks_sched_affected aff;
    ks_sched_affected_init(&aff);
    assert_int_equal(ks_fleet_host_update(s->f, r, &aff, NULL), KS_OK);
    s->defects++;
    for (uint32_t i = 0; i < aff.n; i++) {
        pvm *v = find_vm(s, aff.items[i].vm);
        assert_non_null(v);
        assert_string_equal(aff.items[i].host, r->host.id);
        /* one replan per VM, on its first item */
        bool first = true;
        for (uint32_t j = 0; j < i; j++)
            first &= strcmp(aff.items[j].vm, aff.items[i].vm) != 0;
        if (first)
            replan_vm(s, v);
    }
    ks_sched_affected_destroy(&aff);
}

/* The operator clears a CPU's defects: it only gains features. */
static void step_repair(pstate *s)
{
    uint32_t h = rnd(s, s->n_hosts);
    ks_report *r = s->reports[h];
    ks_cpu *c = &r->cpus[rnd(s, r->n_cpus)];
    c->state = KS_CPU_ONLINE;
    ks_featset_clear(&c->defective);
    c->usable = c->native;
    r->host.generation++;
    ks_sched_affected aff;
    ks_sched_affected_init(&aff);
    assert_int_equal(ks_fleet_host_update(s->f, r, &aff, NULL), KS_OK);
    for (uint32_t i = 0; i < aff.n; i++)
        assert_true(find_vm(s, aff.items[i].vm)->needs_migration);
    ks_sched_affected_destroy(&aff);
    /* a VM waiting for migration may now fit on its host again */
    for (uint32_t i = 0; i < s->n_vms; i++)
        if (s->vms[i].needs_migration && rnd(s, 2))
            replan_vm(s, &s->vms[i]);
}

static void seeing_cb(void *ctx, const char *vm, const char *host)
{
    pstate *s = ctx;
    (void)host;
    pvm *v = find_vm(s, vm);
    assert_non_null(v);
    v->needs_migration = true; /* re-planned right after the walk */
}

static void step_bans(pstate *s)
{
    ks_featset b;
    ks_featset_clear(&b);
    if (rnd(s, 5) != 0) {
        static const char *const bannable[] = {"aes", "fma", "avx512dq"};
        for (unsigned i = 0; i < 3; i++)
            if (rnd(s, 2))
                ks_feature_add_name(&b, bannable[i], NULL);
    }
    s->bans = b;
    ks_featset_or(&s->bans_ever, &s->bans_ever, &b);
    ks_fleet_set_bans(s->f, &b);
    bool before[MAX_VMS];
    for (uint32_t i = 0; i < s->n_vms; i++) {
        before[i] = s->vms[i].needs_migration;
        s->vms[i].needs_migration = false;
    }
    ks_fleet_vms_seeing(s->f, &b, seeing_cb, s);
    for (uint32_t i = 0; i < s->n_vms; i++) {
        if (s->vms[i].needs_migration || before[i])
            replan_vm(s, &s->vms[i]);
    }
}

/* ---- invariants ---- */

static const ks_cpu *report_cpu(const pstate *s, const char *host, int32_t id)
{
    for (uint32_t i = 0; i < s->n_hosts; i++)
        if (strcmp(s->reports[i]->host.id, host) == 0)
            return ks_report_find_cpu(s->reports[i], id);
    return NULL;
}

/* Pool baseline from scratch: the intersection of usable & native over the
 * usable CPUs of the undrained members (what DESIGN.md defines). */
static void check_pool_baseline(pstate *s)
{
    ks_featset want, got;
    uint32_t n = 0, got_n = UINT32_MAX;
    ks_featset_clear(&want);
    for (uint32_t m = 0; m < s->n_pool; m++)
        for (uint32_t h = 0; h < s->n_hosts; h++) {
            const ks_report *r = s->reports[h];
            if (strcmp(r->host.id, s->pool_members[m]) != 0 || s->drained[h])
                continue;
            for (uint32_t c = 0; c < r->n_cpus; c++) {
                const ks_cpu *rc = &r->cpus[c];
                if ((rc->state != KS_CPU_ONLINE && rc->state != KS_CPU_DEGRADED) || rc->reserved)
                    continue;
                ks_featset u;
                ks_featset_and(&u, &rc->usable, &rc->native);
                if (n++ == 0)
                    want = u;
                else
                    ks_featset_and(&want, &want, &u);
            }
        }
    assert_int_equal(ks_fleet_pool_baseline(s->f, "pa", &got, &got_n, NULL), KS_OK);
    assert_int_equal(got_n, n);
    if (!ks_featset_equal(&got, &want))
        fail_msg("cached pool baseline differs from a from-scratch one");
}

/* The pool gets a random half of the hosts (membership changes invalidate
 * the cached baseline; VMs placed in it stay where they are). */
static void step_pool_reset(pstate *s)
{
    s->n_pool = 0;
    for (uint32_t i = 0; i < s->n_hosts; i++)
        if (rnd(s, 2))
            s->pool_members[s->n_pool++] = s->reports[i]->host.id;
    assert_int_equal(ks_fleet_pool_set(s->f, "pa", s->pool_members, s->n_pool, NULL), KS_OK);
}

static void check_invariants(pstate *s)
{
    ks_err err;
    if (ks_fleet_check(s->f, &err) != KS_OK)
        fail_msg("index check: %s", err.msg);
    assert_int_equal(ks_fleet_vm_count(s->f), s->n_vms);
    check_pool_baseline(s);
    uint64_t vcpus = 0;
    build_owner(s); /* fails on a CPU held twice */
    for (uint32_t i = 0; i < s->n_vms; i++) {
        const pvm *v = &s->vms[i];
        const ks_plan *p = ks_fleet_vm_get_plan(s->f, v->req.name);
        assert_non_null(p);
        uint32_t h = 0;
        while (h < s->n_hosts && strcmp(s->reports[h]->host.id, p->host) != 0)
            h++;
        assert_true(h < s->n_hosts);
        assert_int_equal(p->n_vcpus, ks_vm_request_vcpus(&v->req));
        vcpus += p->n_vcpus;
        uint32_t kinds[2] = {0, 0};
        for (uint32_t k = 0; k < p->n_vcpus; k++) {
            int32_t cpu = p->vcpus[k].host_cpu;
            assert_int_equal(g_owner[h][cpu], (int32_t)i);
            const ks_cpu *rc = report_cpu(s, p->host, cpu);
            assert_non_null(rc);
            kinds[p->vcpus[k].kind_class]++;
            if (v->needs_migration)
                continue;
            bool usable =
                (rc->state == KS_CPU_ONLINE || rc->state == KS_CPU_DEGRADED) && !rc->reserved;
            if (!usable || !ks_featset_subset(&p->visible, &rc->usable))
                fail_msg("vm %s vcpu %u on unsuitable cpu %d of %s", v->req.name, k, cpu, p->host);
        }
        assert_true(kinds[KS_KIND_PERFORMANCE] >= v->req.n_performance);
        assert_true(kinds[KS_KIND_EFFICIENCY] >= v->req.n_efficiency);
        assert_true(ks_featset_subset(&v->req.required, &p->visible) ||
                    ks_featset_intersects(&v->req.required, &s->bans_ever));
        assert_false(ks_featset_intersects(&p->visible, &v->req.forbidden));
        if (!v->needs_migration)
            assert_false(ks_featset_intersects(&p->visible, &s->bans));
        if (v->req.anti_affinity_group[0])
            for (uint32_t j = 0; j < i; j++) {
                const ks_plan *q = ks_fleet_vm_get_plan(s->f, s->vms[j].req.name);
                if (strcmp(s->vms[j].req.anti_affinity_group, v->req.anti_affinity_group) == 0)
                    assert_string_not_equal(q->host, p->host);
            }
    }
    /* SMT isolation: no sibling of an isolate VM's CPU held by another VM */
    for (uint32_t h = 0; h < s->n_hosts; h++) {
        const ks_report *r = s->reports[h];
        for (uint32_t a = 0; a < r->n_cpus; a++)
            for (uint32_t b = 0; b < r->n_cpus; b++) {
                const ks_cpu *x = &r->cpus[a], *y = &r->cpus[b];
                if (a == b || x->core != y->core || x->package != y->package)
                    continue;
                int32_t ox = g_owner[h][x->id], oy = g_owner[h][y->id];
                if (ox < 0 || oy < 0 || ox == oy)
                    continue;
                if (s->vms[ox].req.smt == KS_SMT_ISOLATE)
                    fail_msg("isolate vm %s shares a core with %s", s->vms[ox].req.name,
                             s->vms[oy].req.name);
            }
    }
    uint64_t alloc = 0;
    for (uint32_t h = 0; h < ks_fleet_host_count(s->f); h++) {
        ks_fleet_host_view hv;
        assert_int_equal(ks_fleet_host_at(s->f, h, &hv, NULL), KS_OK);
        alloc += hv.n_allocated;
    }
    assert_int_equal(alloc, vcpus);
}

static void check_rebuild(pstate *s)
{
    ks_fleet *g = NULL;
    ks_err err;
    assert_int_equal(ks_fleet_new(&g, NULL), KS_OK);
    for (uint32_t i = 0; i < s->n_hosts; i++) {
        assert_int_equal(ks_fleet_host_update(g, s->reports[i], NULL, NULL), KS_OK);
        if (s->drained[i])
            assert_int_equal(ks_fleet_host_set_schedulable(g, s->reports[i]->host.id, false, NULL),
                             KS_OK);
    }
    assert_int_equal(ks_fleet_pool_set(g, "pa", s->pool_members, s->n_pool, NULL), KS_OK);
    ks_fleet_set_bans(g, &s->bans);
    for (uint32_t i = 0; i < s->n_vms; i++) {
        const ks_plan *p = ks_fleet_vm_get_plan(s->f, s->vms[i].req.name);
        if (ks_fleet_vm_add(g, &s->vms[i].req, p, &err) != KS_OK)
            fail_msg("rebuild vm_add %s: %s", s->vms[i].req.name, err.msg);
    }
    if (!ks_fleet_equal(s->f, g, &err))
        fail_msg("rebuilt index differs: %s", err.msg);
    if (!ks_fleet_equal(g, s->f, &err))
        fail_msg("rebuilt index differs (reverse): %s", err.msg);
    ks_fleet_free(g);
}

static void run_seed(uint64_t seed)
{
    pstate *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->rng = seed;
    build_fleet(s);
    for (uint32_t step = 0; step < STEPS; step++) {
        uint32_t op = rnd(s, 100);
        if (op < 60) {
            step_place(s);
        } else if (op < 83) {
            step_remove(s);
        } else if (op < 85) {
            step_defect(s);
        } else if (op < 87) {
            step_repair(s);
        } else if (op < 90) {
            uint32_t h = rnd(s, s->n_hosts);
            s->drained[h] = !s->drained[h];
            assert_int_equal(
                ks_fleet_host_set_schedulable(s->f, s->reports[h]->host.id, !s->drained[h], NULL),
                KS_OK);
        } else if (op < 92) {
            step_bans(s);
        } else if (op < 93) {
            step_pool_reset(s);
        } else {
            /* an unchanged report (a restarted agent) changes nothing */
            uint32_t h = rnd(s, s->n_hosts);
            ks_sched_affected aff;
            ks_sched_affected_init(&aff);
            assert_int_equal(ks_fleet_host_update(s->f, s->reports[h], &aff, NULL), KS_OK);
            for (uint32_t i = 0; i < aff.n; i++)
                assert_true(find_vm(s, aff.items[i].vm)->needs_migration);
            ks_sched_affected_destroy(&aff);
        }
        if (s->n_vms > s->max_live)
            s->max_live = s->n_vms;
        if (step % 5 == 0)
            check_invariants(s);
        if (step % 1000 == 999)
            check_rebuild(s);
    }
    check_invariants(s);
    check_rebuild(s);
    print_message("seed %llu: hosts=%u placed=%llu failed=%llu removed=%llu defects=%llu "
                  "replans=%llu migrations=%llu live=%u max_live=%llu oracle=%llu\n",
                  (unsigned long long)seed, s->n_hosts, (unsigned long long)s->placed,
                  (unsigned long long)s->failed, (unsigned long long)s->removed,
                  (unsigned long long)s->defects, (unsigned long long)s->replans,
                  (unsigned long long)s->migrations, s->n_vms, (unsigned long long)s->max_live,
                  (unsigned long long)s->oracle_checked);
    /* the run exercised both outcomes */
    assert_true(s->placed > 1000);
    assert_true(s->failed > 0);
    assert_true(s->replans > 0);
    assert_true(s->oracle_checked > 100);
    for (uint32_t i = 0; i < s->n_hosts; i++)
        ks_report_free(s->reports[i]);
    ks_fleet_free(s->f);
    free(s);
}

static void test_sched_prop__seed1(void **state)
{
    (void)state;
    run_seed(UINT64_C(0x9E3779B97F4A7C15));
}

static void test_sched_prop__seed2(void **state)
{
    (void)state;
    run_seed(UINT64_C(42));
}

static void test_sched_prop__seed3(void **state)
{
    (void)state;
    run_seed(UINT64_C(0xC0FFEE1234567));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sched_prop__seed1),
        cmocka_unit_test(test_sched_prop__seed2),
        cmocka_unit_test(test_sched_prop__seed3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
