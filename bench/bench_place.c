/*
 * bench_place.c - durable in-process placement, measured the way kintsugid
 * places a VM (api/ks_api_vms.c without HTTP): ks_sched_place -> request and
 * plan JSON -> BEGIN; vm row + vCPU allocations + "vm.placed" event; COMMIT
 * (synchronous=NORMAL in WAL mode unless --sync-full) -> ks_fleet_vm_add.
 *
 * For each fleet size: the simulated fleet (bench/ks_fleetsim.h) is written to
 * a fresh SQLite store (reports with their JSON, as the API stores them) and
 * loaded into an index, filled to --fill % with the trace's fill phase (stored
 * in batches: that is set-up, not measured), then --ops churn steps
 * (departure + arrival) are run one transaction per placement and timed.
 * Then the cold start: the store is closed and reopened and the index rebuilt
 * (a) by kintsugid's own start-up code (ks_api_new: stored report JSON + VM
 * JSON) and (b) from the store's cpus scan (ks_store_cpu_scan) + VM rows.
 *
 * Baseline in the same run, at the detailed size: a naive first-fit linear
 * scan (hosts in order, CPUs checked one by one with the same feature test)
 * started from the same filled state and fed the same churn steps.
 *
 * Output: a table, then `bench=place ...` (detailed size) and `bench=scaling
 * ...` (every size) summary lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ks_api.h"
#include "ks_fleetsim.h"
#include "ks_sched.h"
#include "ks_store.h"

#define TARGET_RATE 20000.0
#define TARGET_P99_US 200.0
#define TARGET_INDEX_BYTES (1024.0 * 1024 * 1024)
#define TARGET_COLD_S 5.0

typedef struct result {
    uint32_t hosts;
    uint64_t cpus, live_vms, arrivals, placed, no_capacity;
    double load_store_s, load_index_s, fill_s;
    double decide_p50_us, decide_p99_us, decide_p999_us, decide_per_s;
    double ok_p99_us, fail_p50_us, fail_p99_us; /* placed / refused decisions */
    double durable_per_s, durable_p50_us, durable_p99_us, commit_avg_us;
    uint32_t group;                          /* units per commit (group commit) */
    double units_per_commit, commit_p99_us, commit_max_us;
    double single_per_s, single_p50_us, single_p99_us; /* one commit per placement */
    size_t index_bytes, rss_delta;
    double cold_api_s, cold_scan_s;
    bool scan_equal;
    char scan_diff[KS_TEXT_MAX];
    uint64_t cold_api_hosts;
    /* decision p50/p99 and count per shape (detailed size) */
    double shape_p50_us[KS_FLEETSIM_MAX_SHAPES], shape_p99_us[KS_FLEETSIM_MAX_SHAPES];
    size_t shape_n[KS_FLEETSIM_MAX_SHAPES];
    /* baseline (detailed size only) */
    bool has_baseline;
    uint64_t base_arrivals, base_placed;
    double base_p50_us, base_p99_us, base_per_s;
    uint64_t violations, checked;
} result;

static void die(const char *what, const ks_err *err)
{
    fprintf(stderr, "bench_place: %s: %s\n", what, err && err->msg[0] ? err->msg : "failed");
    exit(1);
}

/* ---- naive first-fit baseline ---- */

typedef struct nv_cpu {
    ks_featset usable;
    uint8_t kind;
    bool in_service;
    uint32_t vm; /* 0 = free, else VM number + 1 */
} nv_cpu;

typedef struct nv_host {
    uint32_t first, n, n_free;
    bool pool;
} nv_host;

typedef struct naive {
    nv_host *hosts;
    nv_cpu *cpus;
    uint32_t n_hosts;
    uint64_t n_cpus, cap_cpus;
} naive;

typedef struct nv_fill_ctx {
    naive *nv;
    nv_host *h;
} nv_fill_ctx;

static bool nv_cpu_cb(void *ctx, const ks_fleet_cpu_view *c)
{
    nv_fill_ctx *f = ctx;
    naive *nv = f->nv;
    if (nv->n_cpus == nv->cap_cpus) {
        nv->cap_cpus = nv->cap_cpus ? nv->cap_cpus * 2 : 65536;
        nv->cpus = realloc(nv->cpus, nv->cap_cpus * sizeof(*nv->cpus));
        if (!nv->cpus)
            die("naive baseline", NULL);
    }
    nv_cpu *x = &nv->cpus[nv->n_cpus++];
    x->usable = *c->usable;
    x->kind = c->kind_class;
    x->in_service = (c->state == KS_CPU_ONLINE || c->state == KS_CPU_DEGRADED) && !c->reserved;
    x->vm = 0;
    if (c->vm) {
        uint64_t n = 0;
        x->vm =
            strncmp(c->vm, "vm-", 3) == 0 && ks_fleetsim_parse_u64(&n, c->vm + 3, 0, UINT32_MAX - 1)
                ? (uint32_t)n + 1
                : UINT32_MAX;
    }
    f->h->n++;
    if (x->in_service && !x->vm)
        f->h->n_free++;
    return true;
}

/* Copies the index's hosts, CPUs and allocations into the naive structure. */
static void naive_build(naive *nv, const ks_fleet *fleet, const ks_fleetsim *sim)
{
    memset(nv, 0, sizeof(*nv));
    nv->n_hosts = (uint32_t)ks_fleet_host_count(fleet);
    nv->hosts = calloc(nv->n_hosts, sizeof(*nv->hosts));
    if (!nv->hosts)
        die("naive baseline", NULL);
    for (uint32_t i = 0; i < nv->n_hosts; i++) {
        ks_fleet_host_view hv;
        ks_err err;
        if (ks_fleet_host_at(fleet, i, &hv, &err) != KS_OK)
            die("host_at", &err);
        nv_fill_ctx f = {nv, &nv->hosts[i]};
        nv->hosts[i].first = (uint32_t)nv->n_cpus;
        uint64_t num = 0;
        nv->hosts[i].pool = ks_fleetsim_parse_u64(&num, hv.id + 4, 0, UINT32_MAX) &&
                            ks_fleetsim_pool_member(sim, (uint32_t)num);
        if (ks_fleet_host_cpus(fleet, hv.id, nv_cpu_cb, &f, &err) != KS_OK)
            die("host_cpus", &err);
    }
}

/* First fit: the first host (in order) with enough free matching CPUs. */
static bool naive_place(naive *nv, const ks_vm_request *q, uint32_t vm)
{
    uint32_t need = ks_vm_request_vcpus(q);
    for (uint32_t h = 0; h < nv->n_hosts; h++) {
        nv_host *host = &nv->hosts[h];
        if (host->n_free < need || (q->pool[0] && !host->pool))
            continue;
        uint32_t n_p = 0, n_e = 0, n_any = 0;
        for (uint32_t c = host->first; c < host->first + host->n; c++) {
            nv_cpu *x = &nv->cpus[c];
            if (!x->in_service || x->vm || !ks_featset_subset(&q->required, &x->usable))
                continue;
            if (x->kind == KS_KIND_PERFORMANCE && n_p < q->n_performance)
                n_p++;
            else if (x->kind == KS_KIND_EFFICIENCY && n_e < q->n_efficiency)
                n_e++;
            else if (n_any < q->n_any)
                n_any++;
        }
        if (n_p < q->n_performance || n_e < q->n_efficiency || n_any < q->n_any)
            continue;
        n_p = n_e = n_any = 0;
        for (uint32_t c = host->first; c < host->first + host->n; c++) {
            nv_cpu *x = &nv->cpus[c];
            if (!x->in_service || x->vm || !ks_featset_subset(&q->required, &x->usable))
                continue;
            bool take = false;
            if (x->kind == KS_KIND_PERFORMANCE && n_p < q->n_performance)
                take = ++n_p;
            else if (x->kind == KS_KIND_EFFICIENCY && n_e < q->n_efficiency)
                take = ++n_e;
            else if (n_any < q->n_any)
                take = ++n_any;
            if (take) {
                x->vm = vm + 1;
                host->n_free--;
            }
        }
        return true;
    }
    return false;
}

static void naive_remove(naive *nv, uint32_t vm)
{
    /* The baseline keeps no VM -> CPU map (it is naive); departures are not timed. */
    for (uint32_t h = 0; h < nv->n_hosts; h++) {
        nv_host *host = &nv->hosts[h];
        for (uint32_t c = host->first; c < host->first + host->n; c++) {
            if (nv->cpus[c].vm == vm + 1) {
                nv->cpus[c].vm = 0;
                host->n_free++;
            }
        }
    }
}

static void naive_free(naive *nv)
{
    free(nv->hosts);
    free(nv->cpus);
}

/* ---- cold start from the cpus scan ---- */

typedef struct scan_ctx {
    ks_fleet *fleet;
    ks_store_host_row *hosts;
    size_t n_hosts, cap_hosts, host_ix;
    ks_store_cpu_row *rows;
    size_t n_rows, cap_rows;
    char current[KS_ID_MAX];
    ks_code rc;
    ks_err *err;
    uint64_t n_vms;
} scan_ctx;

static int scan_host_cb(void *ctx, const ks_store_host_row *row)
{
    scan_ctx *s = ctx;
    if (s->n_hosts == s->cap_hosts) {
        s->cap_hosts = s->cap_hosts ? s->cap_hosts * 2 : 1024;
        s->hosts = realloc(s->hosts, s->cap_hosts * sizeof(*s->hosts));
        if (!s->hosts)
            die("scan", NULL);
    }
    s->hosts[s->n_hosts++] = *row;
    s->hosts[s->n_hosts - 1].report_json = NULL;
    return 0;
}

/* Builds the report of the host whose rows are buffered and adds it. */
static void scan_flush(scan_ctx *s)
{
    if (!s->n_rows || s->rc != KS_OK)
        return;
    ks_report *r = NULL;
    const ks_store_host_row *h = NULL;
    while (s->host_ix < s->n_hosts && strcmp(s->hosts[s->host_ix].id, s->current) < 0)
        s->host_ix++;
    if (s->host_ix < s->n_hosts && strcmp(s->hosts[s->host_ix].id, s->current) == 0)
        h = &s->hosts[s->host_ix];
    s->rc = ks_report_new(&r, s->err);
    if (s->rc == KS_OK)
        s->rc = ks_report_alloc_cpus(r, (uint32_t)s->n_rows, s->err);
    if (s->rc == KS_OK)
        s->rc = ks_report_alloc_kinds(r, 2, s->err);
    if (s->rc != KS_OK)
        goto done;
    snprintf(r->host.id, sizeof(r->host.id), "%s", s->current);
    if (h) {
        snprintf(r->host.vendor, sizeof(r->host.vendor), "%s", h->vendor);
        snprintf(r->host.model_name, sizeof(r->host.model_name), "%s", h->model_name);
        snprintf(r->host.boot_id, sizeof(r->host.boot_id), "%s", h->boot_id);
        r->host.generation = h->generation;
        r->host.arch = (uint8_t)(h->arch < 0 ? 0 : h->arch);
    }
    bool kinds_used[2] = {false, false};
    for (size_t i = 0; i < s->n_rows; i++) {
        const ks_store_cpu_row *w = &s->rows[i];
        ks_cpu *c = &r->cpus[i];
        ks_store_cpu_row_to_cpu(c, w);
        if (w->kind_class >= 0 && w->kind_class < 2) {
            /* kinds[0] = efficiency, kinds[1] = performance (ascending rank) */
            int k = w->kind_class == KS_KIND_PERFORMANCE ? 1 : 0;
            c->kind = k;
            if (!kinds_used[k])
                snprintf(r->kinds[k].name, sizeof(r->kinds[k].name), "%s", w->kind_name);
            kinds_used[k] = true;
        }
    }
    if (kinds_used[0] || kinds_used[1]) {
        r->kinds[0].kind_class = KS_KIND_EFFICIENCY;
        r->kinds[1].kind_class = KS_KIND_PERFORMANCE;
        r->kinds[1].efficiency_rank = 1;
    } else {
        r->n_kinds = 0;
    }
    s->rc = ks_fleet_host_update(s->fleet, r, NULL, s->err);
    if (s->rc == KS_OK && h && h->state != KS_STORE_HOST_READY)
        s->rc = ks_fleet_host_set_schedulable(s->fleet, r->host.id, false, s->err);
done:
    ks_report_free(r);
    s->n_rows = 0;
}

static int scan_cpu_cb(void *ctx, const ks_store_cpu_row *row)
{
    scan_ctx *s = ctx;
    if (strcmp(row->host_id, s->current) != 0) {
        scan_flush(s);
        snprintf(s->current, sizeof(s->current), "%s", row->host_id);
    }
    if (s->n_rows == s->cap_rows) {
        s->cap_rows = s->cap_rows ? s->cap_rows * 2 : 512;
        s->rows = realloc(s->rows, s->cap_rows * sizeof(*s->rows));
        if (!s->rows)
            die("scan", NULL);
    }
    s->rows[s->n_rows++] = *row;
    return s->rc != KS_OK;
}

static int scan_vm_cb(void *ctx, const ks_store_vm_row *row)
{
    scan_ctx *s = ctx;
    json_error_t je;
    json_t *rj = row->request_json ? json_loads(row->request_json, 0, &je) : NULL;
    json_t *pj = row->plan_json ? json_loads(row->plan_json, 0, &je) : NULL;
    ks_vm_request *req = NULL;
    ks_plan *plan = NULL;
    s->rc = rj && pj ? ks_vm_request_from_json(&req, rj, s->err) : KS_EINVAL;
    if (s->rc == KS_OK)
        s->rc = ks_plan_from_json(&plan, pj, s->err);
    if (s->rc == KS_OK)
        s->rc = ks_fleet_vm_add(s->fleet, req, plan, s->err);
    s->n_vms += s->rc == KS_OK;
    json_decref(rj);
    json_decref(pj);
    ks_vm_request_free(req);
    ks_plan_free(plan);
    return s->rc != KS_OK;
}

static void pool_cb(void *ctx, const char *name, const char *const *hosts, size_t n)
{
    ks_fleet *g = ctx;
    ks_fleet_pool_set(g, name, hosts, n, NULL);
}

/* Rebuilds an index from the cpus scan; returns seconds, *out the index. */
static double cold_scan(ks_fleet **out, const char *db, const ks_fleet *live, ks_err *err)
{
    uint64_t t0 = ks_fleetsim_now_ns();
    ks_store *store = NULL;
    scan_ctx s = {.err = err};
    ks_store_options so = KS_STORE_OPTIONS_INIT;
    if (ks_store_open(&store, db, &so, err) != KS_OK || ks_fleet_new(&s.fleet, err) != KS_OK)
        die("cold start (scan) open", err);
    if (ks_store_host_list(store, NULL, scan_host_cb, &s, err) != KS_OK ||
        ks_store_cpu_scan(store, NULL, scan_cpu_cb, &s, err) != KS_OK)
        die("cold start (scan)", err);
    scan_flush(&s);
    if (s.rc != KS_OK)
        die("cold start (scan) host", err);
    /* Pools: the bench's pool membership is the same as the live index's. */
    ks_fleet_pools_foreach(live, pool_cb, s.fleet);
    ks_store_vm_filter vf = KS_STORE_VM_FILTER_INIT;
    vf.with_json = true;
    if (ks_store_vm_list(store, &vf, scan_vm_cb, &s, err) != KS_OK || s.rc != KS_OK)
        die("cold start (scan) vms", err);
    double sec = (double)(ks_fleetsim_now_ns() - t0) / 1e9;
    ks_store_close(store);
    free(s.hosts);
    free(s.rows);
    *out = s.fleet;
    return sec;
}

/* kintsugid's own start-up: open the store, ks_api_new rebuilds the index. */
static double cold_api(const char *db, uint64_t *n_hosts, ks_err *err)
{
    uint64_t t0 = ks_fleetsim_now_ns();
    ks_store *store = NULL;
    ks_api *api = NULL;
    ks_store_options so = KS_STORE_OPTIONS_INIT;
    ks_api_options ao = KS_API_OPTIONS_INIT;
    ao.port = 0;
    ao.snapshot_interval_us = 0;
    ao.lost_after_us = 0;
    if (ks_store_open(&store, db, &so, err) != KS_OK || ks_api_new(&api, &ao, store, err) != KS_OK)
        die("cold start (kintsugid)", err);
    double sec = (double)(ks_fleetsim_now_ns() - t0) / 1e9;
    ks_api_free(api);
    ks_store_host_count(n_hosts, store, NULL, err);
    ks_store_close(store);
    return sec;
}

static double us(uint64_t ns)
{
    return (double)ns / 1e3;
}

static void run_size(result *res, const ks_fleetsim *base, uint32_t n_hosts, uint32_t ops,
                     uint32_t fill, bool sync_full, bool baseline, const char *dir, uint64_t seed,
                     uint32_t group)
{
    ks_err err = {0};
    ks_fleetsim *sim = NULL;
    ks_store *store = NULL;
    ks_fleet *fleet = NULL;
    ks_fleetsim_trace *trace = NULL;
    ks_fleetsim_replay rp;
    char db[1024];
    memset(res, 0, sizeof(*res));
    res->hosts = n_hosts;
    if (ks_fleetsim_new_like(&sim, base, n_hosts, &err) != KS_OK)
        die("fleet", &err);
    ks_fleetsim_stats st;
    ks_fleetsim_get_stats(sim, &st);
    res->cpus = st.n_cpus;
    snprintf(db, sizeof(db), "%s/place-%u.db", dir, n_hosts);
    ks_store_options so = KS_STORE_OPTIONS_INIT;
    so.sync_full = sync_full;
    so.background_checkpoint = true; /* as kintsugid opens it */
    so.skip_change_feed = true;
    if (ks_store_open(&store, db, &so, &err) != KS_OK)
        die("store open", &err);
    uint64_t t0 = ks_fleetsim_now_ns();
    if (ks_fleetsim_load_store(sim, store, KS_FLEETSIM_KINTSUGI, 500, true, &err) != KS_OK)
        die("store load", &err);
    res->load_store_s = (double)(ks_fleetsim_now_ns() - t0) / 1e9;
    size_t rss0 = ks_fleetsim_rss_bytes();
    t0 = ks_fleetsim_now_ns();
    if (ks_fleet_new(&fleet, &err) != KS_OK ||
        ks_fleetsim_load_fleet(sim, fleet, KS_FLEETSIM_KINTSUGI, &err) != KS_OK)
        die("index load", &err);
    res->load_index_s = (double)(ks_fleetsim_now_ns() - t0) / 1e9;
    if (ks_fleetsim_trace_new(&trace, seed, st.n_cpus * fill / 100, ops, &err) != KS_OK ||
        ks_fleetsim_replay_init(&rp, trace, &err) != KS_OK)
        die("trace", &err);
    t0 = ks_fleetsim_now_ns();
    if (ks_fleetsim_replay_run(&rp, fleet, trace->n_fill_events, store, 2000, &err) != KS_OK)
        die("fill", &err);
    res->fill_s = (double)(ks_fleetsim_now_ns() - t0) / 1e9;

    naive nv = {0};
    uint32_t churn_from = rp.pos;
    if (baseline)
        naive_build(&nv, fleet, sim);

    /* measured: the first fifth of the churn with one transaction per
     * placement (kintsugid serving one client at a time), the rest with
     * group commits of `group` units (kintsugid under concurrent clients) */
    ks_fleetsim_replay m1, m;
    if (ks_fleetsim_replay_init(&m1, trace, &err) != KS_OK ||
        ks_fleetsim_replay_init(&m, trace, &err) != KS_OK)
        die("replay", &err);
    memcpy(m1.placed, rp.placed, trace->n_vms);
    m1.pos = rp.pos;
    m1.record_latency = true;
    if (ks_fleetsim_replay_run(&m1, fleet, (trace->n_events - m1.pos) / 5, store, 1, &err) !=
        KS_OK)
        die("churn", &err);
    res->single_per_s = m1.place_ns ? (double)m1.placed_ok / ((double)m1.place_ns / 1e9) : 0;
    res->single_p50_us = us(ks_fleetsim_quantile(m1.place_lat.v, m1.place_lat.n, 0.50));
    res->single_p99_us = us(ks_fleetsim_quantile(m1.place_lat.v, m1.place_lat.n, 0.99));
    memcpy(m.placed, m1.placed, trace->n_vms);
    m.pos = m1.pos;
    m.record_latency = true;
    m.group_commit = true;
    res->group = group;
    if (ks_fleetsim_replay_run(&m, fleet, trace->n_events - m.pos, store, group, &err) != KS_OK)
        die("churn", &err);
    res->units_per_commit = m.n_commits ? (double)m.n_units / (double)m.n_commits : 0;
    res->commit_p99_us = us(ks_fleetsim_quantile(m.commit_lat.v, m.commit_lat.n, 0.99));
    res->commit_max_us = us(ks_fleetsim_quantile(m.commit_lat.v, m.commit_lat.n, 1.0));
    res->arrivals = m.arrivals;
    res->placed = m.placed_ok;
    res->no_capacity = m.no_capacity;
    res->decide_p50_us = us(ks_fleetsim_quantile(m.decide_lat.v, m.decide_lat.n, 0.50));
    res->decide_p99_us = us(ks_fleetsim_quantile(m.decide_lat.v, m.decide_lat.n, 0.99));
    res->decide_p999_us = us(ks_fleetsim_quantile(m.decide_lat.v, m.decide_lat.n, 0.999));
    for (size_t k = 0; k < KS_FLEETSIM_MAX_SHAPES; k++) {
        ks_fleetsim_samples *sl = &m.shape_lat[k];
        res->shape_n[k] = sl->n;
        res->shape_p50_us[k] = us(ks_fleetsim_quantile(sl->v, sl->n, 0.50));
        res->shape_p99_us[k] = us(ks_fleetsim_quantile(sl->v, sl->n, 0.99));
    }
    res->ok_p99_us = us(ks_fleetsim_quantile(m.decide_ok_lat.v, m.decide_ok_lat.n, 0.99));
    res->fail_p50_us = us(ks_fleetsim_quantile(m.decide_fail_lat.v, m.decide_fail_lat.n, 0.50));
    res->fail_p99_us = us(ks_fleetsim_quantile(m.decide_fail_lat.v, m.decide_fail_lat.n, 0.99));
    res->decide_per_s = m.decide_ns ? (double)m.arrivals / ((double)m.decide_ns / 1e9) : 0;
    res->durable_per_s = m.place_ns ? (double)m.placed_ok / ((double)m.place_ns / 1e9) : 0;
    res->durable_p50_us = us(ks_fleetsim_quantile(m.place_lat.v, m.place_lat.n, 0.50));
    res->durable_p99_us = us(ks_fleetsim_quantile(m.place_lat.v, m.place_lat.n, 0.99));
    res->commit_avg_us = m.n_commits ? us(m.commit_ns / m.n_commits) : 0;
    res->index_bytes = ks_fleet_memory_bytes(fleet);
    size_t rss1 = ks_fleetsim_rss_bytes();
    res->rss_delta = rss1 > rss0 ? rss1 - rss0 : 0;
    res->live_vms = ks_fleet_vm_count(fleet);
    res->violations = ks_fleetsim_check_all(fleet, &res->checked, NULL);

    if (baseline) {
        /* the same churn steps, first fit on the same filled state */
        ks_fleetsim_samples lat = {0};
        uint8_t *placed = calloc(trace->n_vms, 1);
        memcpy(placed, rp.placed, trace->n_vms);
        uint64_t dec_ns = 0;
        uint32_t limit = ops < 5000 ? ops : 5000; /* first fit is slow: cap its steps */
        for (uint32_t e = churn_from; e < trace->n_events && res->base_arrivals < limit; e++) {
            const ks_fleetsim_event *ev = &trace->events[e];
            if (ev->type == KS_FLEETSIM_DEPART) {
                if (placed[ev->vm])
                    naive_remove(&nv, ev->vm);
                placed[ev->vm] = 0;
                continue;
            }
            ks_vm_request q;
            ks_fleetsim_make_request(&q, ev->vm, ev->shape);
            uint64_t a = ks_fleetsim_now_ns();
            bool ok = naive_place(&nv, &q, ev->vm);
            uint64_t dt = ks_fleetsim_now_ns() - a;
            dec_ns += dt;
            ks_fleetsim_samples_push(&lat, dt);
            res->base_arrivals++;
            res->base_placed += ok;
            placed[ev->vm] = ok;
        }
        res->has_baseline = true;
        res->base_p50_us = us(ks_fleetsim_quantile(lat.v, lat.n, 0.50));
        res->base_p99_us = us(ks_fleetsim_quantile(lat.v, lat.n, 0.99));
        res->base_per_s = dec_ns ? (double)res->base_arrivals / ((double)dec_ns / 1e9) : 0;
        ks_fleetsim_samples_destroy(&lat);
        free(placed);
        naive_free(&nv);
    }
    ks_store_close(store);
    store = NULL;

    /* cold start: kintsugid's path, then the cpus scan */
    res->cold_api_s = cold_api(db, &res->cold_api_hosts, &err);
    ks_fleet *g = NULL;
    res->cold_scan_s = cold_scan(&g, db, fleet, &err);
    ks_err eq = {0};
    res->scan_equal = ks_fleet_equal(fleet, g, &eq);
    snprintf(res->scan_diff, sizeof(res->scan_diff), "%s", eq.msg);
    ks_fleet_free(g);

    ks_fleetsim_replay_destroy(&m);
    ks_fleetsim_replay_destroy(&m1);
    ks_fleetsim_replay_destroy(&rp);
    ks_fleetsim_trace_free(trace);
    ks_fleet_free(fleet);
    ks_fleetsim_free(sim);
    char side[1100];
    remove(db);
    snprintf(side, sizeof(side), "%s-wal", db);
    remove(side);
    snprintf(side, sizeof(side), "%s-shm", db);
    remove(side);
}

static const char *mark(bool met)
{
    return met ? "met" : "MISSED";
}

static void print_detail(const result *r, bool sync_full)
{
    printf("\n== bench_place: %u hosts, %llu logical cpus (durable = committed, SQLite WAL "
           "synchronous=%s) ==\n",
           r->hosts, (unsigned long long)r->cpus, sync_full ? "FULL" : "NORMAL");
    printf("  set-up: store load %.1f s, index load %.2f s, fill %.1f s -> %llu live vms\n",
           r->load_store_s, r->load_index_s, r->fill_s, (unsigned long long)r->live_vms);
    printf("  %-40s %14s %14s %10s\n", "figure", "kintsugi", "first-fit", "target");
    printf("  %-40s %14.0f %14.0f %10s\n", "decisions/s (ks_sched_place only)", r->decide_per_s,
           r->base_per_s, "");
    printf("  %-40s %14.1f %14.1f %10s\n", "decision p50 (us)", r->decide_p50_us, r->base_p50_us,
           "");
    printf("  %-40s %14.1f %14.1f %10s %s\n", "decision p99 (us)", r->decide_p99_us, r->base_p99_us,
           "<= 200", mark(r->decide_p99_us <= TARGET_P99_US));
    printf("  %-40s %14.1f %14s %10s\n", "decision p99.9 (us)", r->decide_p999_us, "", "");
    printf("  %-40s %14.1f %14s %10s %s\n", "  p99 of placed requests only (us)", r->ok_p99_us, "",
           "<= 200", mark(r->ok_p99_us <= TARGET_P99_US));
    printf("  %-40s %14.1f %14s\n", "  p50 of refused requests (us)", r->fail_p50_us, "");
    printf("  %-40s %14.1f %14s\n", "  p99 of refused requests (us)", r->fail_p99_us, "");
    printf("  %-40s %14.0f %14s %10s %s\n", "durable placements/s, group commit",
           r->durable_per_s, "", ">= 20000", mark(r->durable_per_s >= TARGET_RATE));
    printf("  %-40s %14.1f %14s\n", "  units per commit (group limit)", r->units_per_commit, "");
    printf("  %-40s %14u %14s\n", "  group limit", r->group, "");
    printf("  %-40s %14.1f %14s\n", "  placement p50, decision to commit (us)", r->durable_p50_us,
           "");
    printf("  %-40s %14.1f %14s\n", "  placement p99, decision to commit (us)", r->durable_p99_us,
           "");
    printf("  %-40s %14.1f %14s\n", "  commit avg (us)", r->commit_avg_us, "");
    printf("  %-40s %14.1f %14s\n", "  commit p99 (us)", r->commit_p99_us, "");
    printf("  %-40s %14.1f %14s\n", "  commit max (us)", r->commit_max_us, "");
    printf("  %-40s %14.0f %14s\n", "durable placements/s, one commit each", r->single_per_s, "");
    printf("  %-40s %14.1f %14s\n", "  placement p50 (us)", r->single_p50_us, "");
    printf("  %-40s %14.1f %14s\n", "  placement p99 (us)", r->single_p99_us, "");
    printf("  %-40s %14llu %14llu\n", "arrivals placed", (unsigned long long)r->placed,
           (unsigned long long)r->base_placed);
    printf("  %-40s %14llu %14llu\n", "arrivals timed", (unsigned long long)r->arrivals,
           (unsigned long long)r->base_arrivals);
    printf("  %-40s %14.1f %14s %10s %s\n", "index memory (MiB, own accounting)",
           (double)r->index_bytes / 1048576.0, "", "<= 1024",
           mark((double)r->index_bytes <= TARGET_INDEX_BYTES));
    printf("  %-40s %14.1f\n", "RSS growth index+vms (MiB)", (double)r->rss_delta / 1048576.0);
    printf("  %-40s %14.2f %14s %10s %s\n", "cold start, kintsugid ks_api_new (s)", r->cold_api_s,
           "", "<= 5", mark(r->cold_api_s <= TARGET_COLD_S));
    printf("  %-40s %14.2f %14s %10s %s (%s)\n", "cold start, cpus scan (s)", r->cold_scan_s, "",
           "<= 5", mark(r->cold_scan_s <= TARGET_COLD_S),
           r->scan_equal ? "index equals live" : r->scan_diff);
    printf("  %-40s %14llu (of %llu live vms)\n", "vcpus on a cpu lacking a visible feature",
           (unsigned long long)r->violations, (unsigned long long)r->checked);
    size_t n_sh = 0;
    const ks_fleetsim_shape *sh = ks_fleetsim_shapes(&n_sh);
    printf("  decision latency by shape:\n  %-28s %8s %10s %10s\n", "shape", "n", "p50 us",
           "p99 us");
    for (size_t k = 0; k < n_sh && k < KS_FLEETSIM_MAX_SHAPES; k++)
        printf("  %-28s %8zu %10.1f %10.1f\n", sh[k].name, r->shape_n[k], r->shape_p50_us[k],
               r->shape_p99_us[k]);
}

int main(int argc, char **argv)
{
    ks_fleetsim_options o = KS_FLEETSIM_OPTIONS_INIT;
    const char *env_fx = getenv("KS_FIXTURES_DIR");
    char scaling[256] = "1000,2000,5000,10000,20000";
    uint64_t hosts = 10000, ops = 20000, fill = 70, group = 32;
    bool sync_full = false;
    o.fixtures_dir = env_fx && *env_fx ? env_fx : KS_BENCH_FIXTURES_DIR;
    for (int i = 1; i < argc;) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "--sync-full") == 0) {
            sync_full = true;
            i++;
            continue;
        }
        if (!v) {
            fprintf(stderr, "usage: bench_place [--hosts N] [--ops N] [--fill PCT] [--seed S] "
                            "[--defect-rate R] [--scaling N,N,...|none] [--group N] "
                            "[--sync-full]\n");
            return 2;
        }
        i += 2;
        if (strcmp(a, "--hosts") == 0)
            ok = ks_fleetsim_parse_u64(&hosts, v, 1, 1000000);
        else if (strcmp(a, "--ops") == 0)
            ok = ks_fleetsim_parse_u64(&ops, v, 1, 100000000);
        else if (strcmp(a, "--group") == 0)
            ok = ks_fleetsim_parse_u64(&group, v, 1, 4096);
        else if (strcmp(a, "--fill") == 0)
            ok = ks_fleetsim_parse_u64(&fill, v, 0, 95);
        else if (strcmp(a, "--seed") == 0)
            ok = ks_fleetsim_parse_u64(&o.seed, v, 0, UINT64_MAX);
        else if (strcmp(a, "--defect-rate") == 0)
            ok = ks_fleetsim_parse_double(&o.defect_rate, v, 0, 1);
        else if (strcmp(a, "--scaling") == 0)
            ok = snprintf(scaling, sizeof(scaling), "%s", strcmp(v, "none") == 0 ? "" : v) <
                 (int)sizeof(scaling);
        else
            ok = false;
        if (!ok) {
            fprintf(stderr, "bench_place: bad option %s '%s'\n", a, v);
            return 2;
        }
    }
    /* sizes: the scaling list plus the detailed size, each once */
    uint32_t sizes[32];
    size_t n_sizes = 0;
    bool have_detail = false;
    for (char *t = scaling; *t && n_sizes < 31;) {
        char *end = strchr(t, ',');
        if (end)
            *end = '\0';
        uint64_t n = 0;
        if (!ks_fleetsim_parse_u64(&n, t, 1, 1000000)) {
            fprintf(stderr, "bench_place: bad --scaling size '%s'\n", t);
            return 2;
        }
        sizes[n_sizes++] = (uint32_t)n;
        have_detail |= n == hosts;
        if (!end)
            break;
        t = end + 1;
    }
    if (!have_detail)
        sizes[n_sizes++] = (uint32_t)hosts;
    uint32_t max_hosts = 0;
    for (size_t i = 0; i < n_sizes; i++)
        max_hosts = sizes[i] > max_hosts ? sizes[i] : max_hosts;

    char dir[] = "/tmp/ks-bench-place-XXXXXX";
    const char *tmp = getenv("TMPDIR");
    char dirbuf[1024];
    snprintf(dirbuf, sizeof(dirbuf), "%s/ks-bench-place-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    char *d = mkdtemp(dirbuf);
    if (!d)
        d = mkdtemp(dir);
    if (!d) {
        fprintf(stderr, "bench_place: cannot create a temporary directory\n");
        return 1;
    }
    ks_err err = {0};
    ks_fleetsim *base = NULL;
    o.n_hosts = max_hosts;
    o.tmp_dir = d;
    if (ks_fleetsim_new(&base, &o, &err) != KS_OK)
        die("fixtures", &err);

    result *res = calloc(n_sizes, sizeof(*res));
    result *detail = NULL;
    for (size_t i = 0; i < n_sizes; i++) {
        bool is_detail = sizes[i] == hosts && !detail;
        /* scaling rows run fewer steps (the curve, not the tail, matters there) */
        uint32_t n_ops = is_detail ? (uint32_t)ops : (uint32_t)(ops / 2 > 0 ? ops / 2 : 1);
        fprintf(stderr, "bench_place: %u hosts...\n", sizes[i]);
        run_size(&res[i], base, sizes[i], n_ops, (uint32_t)fill, sync_full, is_detail, d, o.seed,
                 (uint32_t)group);
        if (is_detail)
            detail = &res[i];
    }
    print_detail(detail, sync_full);

    printf("\n== scaling (durable = group commit / one commit each; decision latency; cold start "
           "= kintsugid) ==\n");
    printf("  %8s %10s %12s %10s %10s %10s %10s %10s %12s %10s %10s %10s\n", "hosts", "cpus",
           "durable/s", "single/s", "p50 us", "p99 us", "p999 us", "placed p99", "index MiB",
           "cold s", "scan s", "live vms");
    for (size_t i = 0; i < n_sizes; i++) {
        const result *r = &res[i];
        printf("  %8u %10llu %12.0f %10.0f %10.1f %10.1f %10.1f %10.1f %12.1f %10.2f %10.2f "
               "%10llu\n",
               r->hosts, (unsigned long long)r->cpus, r->durable_per_s, r->single_per_s,
               r->decide_p50_us,
               r->decide_p99_us, r->decide_p999_us, r->ok_p99_us,
               (double)r->index_bytes / 1048576.0, r->cold_api_s, r->cold_scan_s,
               (unsigned long long)r->live_vms);
    }
    const result *r = detail;
    printf("bench=place hosts=%u cpus=%llu sync=%s group=%u units_per_commit=%.1f "
           "durable_per_s=%.0f%s single_commit_per_s=%.0f decide_per_s=%.0f "
           "p50_us=%.1f p99_us=%.1f%s p999_us=%.1f placed_p99_us=%.1f refused_p99_us=%.1f "
           "durable_p99_us=%.1f commit_avg_us=%.1f "
           "index_mib=%.1f%s rss_mib=%.1f cold_start_s=%.2f%s cold_scan_s=%.2f%s "
           "baseline_firstfit_per_s=%.0f baseline_firstfit_p99_us=%.1f faulty_feature_vcpus=%llu\n",
           r->hosts, (unsigned long long)r->cpus, sync_full ? "full" : "normal", r->group,
           r->units_per_commit, r->durable_per_s, r->durable_per_s >= TARGET_RATE ? "" : "(MISSED)",
           r->single_per_s, r->decide_per_s, r->decide_p50_us,
           r->decide_p99_us, r->decide_p99_us <= TARGET_P99_US ? "" : "(MISSED)", r->decide_p999_us,
           r->ok_p99_us, r->fail_p99_us, r->durable_p99_us, r->commit_avg_us,
           (double)r->index_bytes / 1048576.0,
           (double)r->index_bytes <= TARGET_INDEX_BYTES ? "" : "(MISSED)",
           (double)r->rss_delta / 1048576.0, r->cold_api_s,
           r->cold_api_s <= TARGET_COLD_S ? "" : "(MISSED)", r->cold_scan_s,
           r->cold_scan_s <= TARGET_COLD_S ? "" : "(MISSED)", r->base_per_s, r->base_p99_us,
           (unsigned long long)r->violations);
    printf("bench=scaling");
    for (size_t i = 0; i < n_sizes; i++)
        printf(" h%u_durable_per_s=%.0f h%u_single_per_s=%.0f h%u_p50_us=%.1f h%u_p99_us=%.1f "
               "h%u_p999_us=%.1f h%u_index_mib=%.1f h%u_cold_s=%.2f",
               res[i].hosts, res[i].durable_per_s, res[i].hosts, res[i].single_per_s, res[i].hosts,
               res[i].decide_p50_us, res[i].hosts,
               res[i].decide_p99_us, res[i].hosts, res[i].decide_p999_us, res[i].hosts,
               (double)res[i].index_bytes / 1048576.0, res[i].hosts, res[i].cold_api_s);
    printf("\n");
    int status = 0;
    for (size_t i = 0; i < n_sizes; i++)
        status |= res[i].violations ? 3 : 0;
    free(res);
    ks_fleetsim_free(base);
    rmdir(d);
    return status;
}
