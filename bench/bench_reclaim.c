/*
 * bench_reclaim.c - capacity Kintsugi keeps on partially defective CPUs,
 * against the baseline policy that takes every degraded CPU out of service.
 *
 * One simulated fleet, two indexes: (1) Kintsugi: degraded CPUs stay in
 * service minus their faulty feature; (2) baseline: every degraded CPU is
 * offline (quarantined CPUs are lost in both).  The same VM trace is replayed
 * on both (fill to --fill % of the CPUs, then churn).  Reported at the end of
 * the fill and at the end of the trace:
 *   - VMs and vCPUs placed by each policy;
 *   - reclaimed CPUs: allocated AND degraded in the Kintsugi fleet (what the
 *     baseline lost and Kintsugi sells);
 *   - recovered % = reclaimed / CPUs the baseline took offline (target >= 95);
 *   - extra vCPUs allocated by Kintsugi over the baseline;
 *   - faulty-feature placements: every live VM's plan is walked vCPU by vCPU
 *     and its host CPU must have every feature the guest sees usable (must be 0).
 * Then both fleets are saturated with 1-vCPU VMs that need no feature: the
 * extra CPUs Kintsugi sells over the baseline, as a share of what the baseline
 * lost, is the capacity recovered when CPU count (not shape) is what binds.
 * (At the trace's fill, refusals come from shapes - AVX-512, pools, 32 vCPUs -
 * not from the CPU count, so the VMs placed differ only by noise there.)
 *
 * Output: a table, then `bench=reclaim key=value ...`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_fleetsim.h"
#include "ks_sched.h"

#define TARGET_RECOVERED_PCT 95.0

static void die(const char *what, const ks_err *err)
{
    fprintf(stderr, "bench_reclaim: %s: %s\n", what, err && err->msg[0] ? err->msg : "failed");
    exit(1);
}

static void capacity_cb(void *ctx, const char *scope, const ks_capacity *c)
{
    (void)scope;
    *(ks_capacity *)ctx = *c;
}

typedef struct point {
    uint64_t placed_vms, placed_vcpus, no_capacity;
    ks_capacity cap;
    uint64_t violations, checked;
    char first[KS_TEXT_MAX];
} point;

static void snap(point *p, const ks_fleet *f, const ks_fleetsim_replay *r)
{
    p->placed_vms = r->placed_ok;
    p->placed_vcpus = r->placed_vcpus;
    p->no_capacity = r->no_capacity;
    ks_fleet_capacity(f, KS_CAPACITY_FLEET, capacity_cb, &p->cap);
    p->violations = ks_fleetsim_check_all(f, &p->checked, p->first);
}

typedef struct probe_ctx {
    bool found;
    int32_t cpu;
    ks_featset native;
} probe_ctx;

static bool probe_cpu(void *ctx, const ks_fleet_cpu_view *c)
{
    probe_ctx *p = ctx;
    if (c->state != KS_CPU_DEGRADED)
        return true;
    p->found = true;
    p->cpu = c->id;
    p->native = *c->native;
    return false;
}

/*
 * Negative control for the checker: a hand-made plan that shows a degraded
 * CPU's full native set (faulty feature included) must be flagged.  Returns
 * 1 when flagged, 0 when not (checker broken), -1 when no degraded CPU exists.
 */
static int checker_self_test(const ks_fleet *f)
{
    size_t n = ks_fleet_host_count(f);
    for (size_t i = 0; i < n; i++) {
        ks_fleet_host_view hv;
        probe_ctx p = {0};
        if (ks_fleet_host_at(f, i, &hv, NULL) != KS_OK)
            continue;
        ks_fleet_host_cpus(f, hv.id, probe_cpu, &p, NULL);
        if (!p.found)
            continue;
        ks_plan *plan = NULL;
        if (ks_plan_new(&plan, 1, NULL) != KS_OK)
            return 0;
        snprintf(plan->vm, sizeof(plan->vm), "probe");
        snprintf(plan->host, sizeof(plan->host), "%s", hv.id);
        plan->vcpus[0].id = 0;
        plan->vcpus[0].host_cpu = p.cpu;
        plan->visible = p.native;
        uint32_t bad = ks_fleetsim_check_plan(f, plan, NULL);
        ks_plan_free(plan);
        return bad == 1;
    }
    return -1;
}

/* Places 1-vCPU VMs that need no feature until the fleet refuses one: every
 * in-service free CPU ends up allocated.  Returns how many were placed. */
static uint64_t saturate(ks_fleet *f, uint32_t first_vm)
{
    uint64_t n = 0;
    ks_vm_request q;
    for (uint32_t vm = first_vm;; vm++) {
        ks_plan *plan = NULL;
        ks_err err = {0};
        ks_fleetsim_make_request(&q, vm, 0); /* shape 0: small-1, no required feature */
        ks_code rc = ks_sched_place(&plan, f, &q, NULL, &err);
        if (rc == KS_ENOCAPACITY)
            break;
        if (rc != KS_OK || ks_fleet_vm_add(f, &q, plan, &err) != KS_OK)
            die("saturation", &err);
        ks_plan_free(plan);
        n++;
    }
    return n;
}

static double pct(uint64_t a, uint64_t b)
{
    return b ? 100.0 * (double)a / (double)b : 100.0;
}

static void print_point(const char *when, const point *k, const point *b, uint64_t lost)
{
    printf("\n  -- %s --\n", when);
    printf("  %-44s %14s %14s\n", "", "kintsugi", "offline-degr.");
    printf("  %-44s %14llu %14llu\n", "VMs placed (cumulative)", (unsigned long long)k->placed_vms,
           (unsigned long long)b->placed_vms);
    printf("  %-44s %14llu %14llu\n", "vCPUs placed (cumulative)",
           (unsigned long long)k->placed_vcpus, (unsigned long long)b->placed_vcpus);
    printf("  %-44s %14llu %14llu\n", "arrivals refused (no capacity)",
           (unsigned long long)k->no_capacity, (unsigned long long)b->no_capacity);
    printf("  %-44s %14llu %14llu\n", "CPUs allocated now", (unsigned long long)k->cap.allocated,
           (unsigned long long)b->cap.allocated);
    printf("  %-44s %14llu %14llu\n", "CPUs in service (total - offline - quar.)",
           (unsigned long long)(k->cap.total - k->cap.offline - k->cap.quarantined),
           (unsigned long long)(b->cap.total - b->cap.offline - b->cap.quarantined));
    printf("  %-44s %14llu %14s\n", "degraded CPUs still usable",
           (unsigned long long)k->cap.degraded_usable, "0");
    printf("  %-44s %14llu %14s\n", "reclaimed (allocated on degraded CPUs)",
           (unsigned long long)k->cap.reclaimed, "0");
    printf("  %-44s %13.1f%% %14s %s\n", "baseline's lost capacity recovered",
           pct(k->cap.reclaimed, lost), "(>= 95%)",
           pct(k->cap.reclaimed, lost) >= TARGET_RECOVERED_PCT ? "met" : "MISSED");
    printf("  %-44s %14lld\n", "extra CPUs allocated vs baseline",
           (long long)k->cap.allocated - (long long)b->cap.allocated);
    printf("  %-44s %14llu %14llu\n", "vCPUs on a CPU lacking a visible feature",
           (unsigned long long)k->violations, (unsigned long long)b->violations);
    printf("  %-44s %14llu %14llu\n", "live VMs checked", (unsigned long long)k->checked,
           (unsigned long long)b->checked);
    if (k->violations)
        printf("  first violation: %s\n", k->first);
}

int main(int argc, char **argv)
{
    ks_fleetsim_options o = KS_FLEETSIM_OPTIONS_INIT;
    const char *env_fx = getenv("KS_FIXTURES_DIR");
    uint64_t steps = 20000, fill = 97, v = 0;
    o.fixtures_dir = env_fx && *env_fx ? env_fx : KS_BENCH_FIXTURES_DIR;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = val != NULL;
        ks_err e = {0};
        if (ok && strcmp(a, "--hosts") == 0) {
            ok = ks_fleetsim_parse_u64(&v, val, 1, 1000000);
            o.n_hosts = (uint32_t)v;
        } else if (ok && strcmp(a, "--seed") == 0) {
            ok = ks_fleetsim_parse_u64(&o.seed, val, 0, UINT64_MAX);
        } else if (ok && strcmp(a, "--defect-rate") == 0) {
            ok = ks_fleetsim_parse_double(&o.defect_rate, val, 0, 1);
        } else if (ok && strcmp(a, "--quarantine-share") == 0) {
            ok = ks_fleetsim_parse_double(&o.quarantine_share, val, 0, 1);
        } else if (ok && strcmp(a, "--mix") == 0) {
            ok = ks_fleetsim_parse_mix(&o.hybrid_share, val, &e) == KS_OK;
        } else if (ok && strcmp(a, "--trace-steps") == 0) {
            ok = ks_fleetsim_parse_u64(&steps, val, 0, 100000000);
        } else if (ok && strcmp(a, "--fill") == 0) {
            ok = ks_fleetsim_parse_u64(&fill, val, 1, 200);
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr,
                    "usage: bench_reclaim [--hosts N] [--seed S] [--defect-rate R] "
                    "[--quarantine-share Q] [--mix hybrid=H,server=S] [--trace-steps K] "
                    "[--fill PCT]\n%s",
                    e.msg[0] ? e.msg : "");
            return 2;
        }
    }
    ks_err err = {0};
    ks_fleetsim *sim = NULL;
    ks_fleet *kf = NULL, *bf = NULL;
    ks_fleetsim_trace *trace = NULL;
    ks_fleetsim_replay kr, br;
    if (ks_fleetsim_new(&sim, &o, &err) != KS_OK)
        die("fleet", &err);
    ks_fleetsim_stats st;
    ks_fleetsim_get_stats(sim, &st);
    if (ks_fleet_new(&kf, &err) != KS_OK || ks_fleet_new(&bf, &err) != KS_OK ||
        ks_fleetsim_load_fleet(sim, kf, KS_FLEETSIM_KINTSUGI, &err) != KS_OK ||
        ks_fleetsim_load_fleet(sim, bf, KS_FLEETSIM_OFFLINE_DEGRADED, &err) != KS_OK)
        die("index", &err);
    if (ks_fleetsim_trace_new(&trace, o.seed, st.n_cpus * fill / 100, (uint32_t)steps, &err) !=
            KS_OK ||
        ks_fleetsim_replay_init(&kr, trace, &err) != KS_OK ||
        ks_fleetsim_replay_init(&br, trace, &err) != KS_OK)
        die("trace", &err);
    uint64_t t0 = ks_fleetsim_now_ns();
    point kfill, bfill, kend, bend;
    if (ks_fleetsim_replay_run(&kr, kf, trace->n_fill_events, NULL, 1, &err) != KS_OK)
        die("replay (kintsugi)", &err);
    snap(&kfill, kf, &kr);
    if (ks_fleetsim_replay_run(&kr, kf, trace->n_events, NULL, 1, &err) != KS_OK)
        die("replay (kintsugi)", &err);
    snap(&kend, kf, &kr);
    double k_s = (double)(ks_fleetsim_now_ns() - t0) / 1e9;
    t0 = ks_fleetsim_now_ns();
    if (ks_fleetsim_replay_run(&br, bf, trace->n_fill_events, NULL, 1, &err) != KS_OK)
        die("replay (baseline)", &err);
    snap(&bfill, bf, &br);
    if (ks_fleetsim_replay_run(&br, bf, trace->n_events, NULL, 1, &err) != KS_OK)
        die("replay (baseline)", &err);
    snap(&bend, bf, &br);
    double b_s = (double)(ks_fleetsim_now_ns() - t0) / 1e9;
    /* then fill every remaining CPU with 1-vCPU VMs: the fleets' full capacity */
    uint64_t k_sat = saturate(kf, trace->n_vms), b_sat = saturate(bf, trace->n_vms);
    point ksat, bsat;
    snap(&ksat, kf, &kr);
    snap(&bsat, bf, &br);
    ksat.placed_vms += k_sat;
    ksat.placed_vcpus += k_sat;
    bsat.placed_vms += b_sat;
    bsat.placed_vcpus += b_sat;

    int self_test = checker_self_test(kf);
    /* what the baseline took out of service (its offline count beyond Kintsugi's) */
    uint64_t lost =
        bend.cap.offline + bend.cap.quarantined - kend.cap.offline - kend.cap.quarantined;
    printf("== bench_reclaim: %llu hosts, %llu cpus, %llu defective hosts, %llu degraded cpus, "
           "%llu quarantined cpus ==\n",
           (unsigned long long)st.n_hosts, (unsigned long long)st.n_cpus,
           (unsigned long long)st.n_defective_hosts, (unsigned long long)st.n_degraded_cpus,
           (unsigned long long)st.n_quarantined_cpus);
    printf("  trace: fill to %llu%% of cpus (%u events before churn), then %llu churn steps; "
           "%u events, replayed in %.1f s (kintsugi) and %.1f s (baseline)\n",
           (unsigned long long)fill, trace->n_fill_events, (unsigned long long)steps,
           trace->n_events, k_s, b_s);
    printf("  baseline takes %llu degraded cpus offline\n", (unsigned long long)lost);
    printf("  checker self-test (a plan showing a degraded cpu's faulty feature is flagged): %s\n",
           self_test == 1  ? "yes"
           : self_test < 0 ? "skipped, no degraded cpu"
                           : "NO - BROKEN");
    print_point("end of fill", &kfill, &bfill, lost);
    print_point("end of trace", &kend, &bend, lost);
    print_point("after saturating with 1-vCPU VMs (full capacity)", &ksat, &bsat, lost);
    long long extra_sat = (long long)ksat.cap.allocated - (long long)bsat.cap.allocated;
    double rec_sat = lost ? 100.0 * (double)extra_sat / (double)lost : 100.0;
    printf("  capacity recovered at saturation: %lld more CPUs sold than the baseline = %.1f%% of "
           "the %llu it lost (>= 95%%) %s\n",
           extra_sat, rec_sat, (unsigned long long)lost,
           rec_sat >= TARGET_RECOVERED_PCT ? "met" : "MISSED");
    double rec_fill = pct(kfill.cap.reclaimed, lost), rec_end = pct(kend.cap.reclaimed, lost);
    printf("bench=reclaim hosts=%llu cpus=%llu degraded_cpus=%llu baseline_lost_cpus=%llu "
           "vms_placed=%llu baseline_vms_placed=%llu vcpus_placed=%llu baseline_vcpus_placed=%llu "
           "reclaimed_cpus=%llu recovered_pct=%.1f%s recovered_pct_at_fill=%.1f "
           "extra_allocated_cpus=%lld faulty_feature_vcpus=%llu baseline_faulty_feature_vcpus=%llu "
           "checked_vms=%llu checker_self_test=%s saturation_extra_cpus=%lld "
           "saturation_recovered_pct=%.1f%s saturation_faulty_feature_vcpus=%llu\n",
           (unsigned long long)st.n_hosts, (unsigned long long)st.n_cpus,
           (unsigned long long)st.n_degraded_cpus, (unsigned long long)lost,
           (unsigned long long)kend.placed_vms, (unsigned long long)bend.placed_vms,
           (unsigned long long)kend.placed_vcpus, (unsigned long long)bend.placed_vcpus,
           (unsigned long long)kend.cap.reclaimed, rec_end,
           rec_end >= TARGET_RECOVERED_PCT ? "" : "(MISSED)", rec_fill,
           (long long)kend.cap.allocated - (long long)bend.cap.allocated,
           (unsigned long long)kend.violations, (unsigned long long)bend.violations,
           (unsigned long long)kend.checked,
           self_test == 1  ? "pass"
           : self_test < 0 ? "skipped"
                           : "FAIL",
           extra_sat, rec_sat, rec_sat >= TARGET_RECOVERED_PCT ? "" : "(MISSED)",
           (unsigned long long)ksat.violations);
    int status = kend.violations || kfill.violations || bend.violations || ksat.violations ||
                         bsat.violations || self_test == 0
                     ? 3
                     : 0;
    ks_fleetsim_replay_destroy(&kr);
    ks_fleetsim_replay_destroy(&br);
    ks_fleetsim_trace_free(trace);
    ks_fleet_free(kf);
    ks_fleet_free(bf);
    ks_fleetsim_free(sim);
    return status;
}
