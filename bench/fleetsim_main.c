/*
 * fleetsim_main.c - the `fleetsim` tool: builds a simulated fleet from the
 * fixtures, writes it to a SQLite store and/or sends its reports to a running
 * kintsugid, then replays a VM arrival/departure trace (in process against the
 * store, or through the API with --api).
 *
 * Output: a human table, then one line `bench=fleetsim key=value ...`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_fleetsim.h"
#include "ks_sched.h"
#include "ks_store.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fleetsim [--hosts N] [--seed S] [--defect-rate R] [--quarantine-share Q]\n"
            "                [--mix hybrid=0.2,server=0.8] [--db PATH] [--batch N]\n"
            "                [--api URL [--token T] [--clients N]] [--trace-steps K]\n"
            "                [--fill PCT] [--policy kintsugi|offline-degraded]\n"
            "                [--fixtures DIR]\n"
            "Builds N hosts (default 10000) from the recorded fixtures, with R (default 0.05)\n"
            "of them having defective cores, writes them to the SQLite store PATH (batched)\n"
            "and/or PUTs their reports to the API at URL, then replays a VM trace: arrivals\n"
            "up to PCT%% (default 85) of the fleet's CPUs, then K churn steps (default 10000).\n");
}

typedef struct api_replay {
    const ks_fleetsim_trace *trace;
    uint32_t clients;
    uint32_t *queue; /* event indices grouped by slot */
    uint32_t *q_start, *q_pos, *q_end;
    uint8_t *placed;
    uint64_t posts, placed_ok, no_capacity, deletes, errors;
    ks_fleetsim_samples lat;
    char *body;
    char first_error[256];
} api_replay;

static bool api_next(void *ctx, uint32_t slot, ks_fleetsim_http_req *req)
{
    api_replay *a = ctx;
    while (a->q_pos[slot] < a->q_end[slot]) {
        const ks_fleetsim_event *ev = &a->trace->events[a->queue[a->q_pos[slot]++]];
        char name[KS_ID_MAX];
        ks_fleetsim_vm_name(name, ev->vm);
        if (ev->type == KS_FLEETSIM_DEPART) {
            if (!a->placed[ev->vm])
                continue;
            req->method = "DELETE";
            snprintf(req->path, sizeof(req->path), "/v1/vms/%s", name);
            req->tag = -(int)ev->vm - 1;
            return true;
        }
        ks_vm_request vr;
        ks_fleetsim_make_request(&vr, ev->vm, ev->shape);
        json_t *doc = ks_vm_request_to_json(&vr);
        free(a->body);
        a->body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        if (!a->body)
            continue;
        req->method = "POST";
        snprintf(req->path, sizeof(req->path), "/v1/vms");
        req->body = a->body;
        req->body_len = strlen(a->body);
        req->tag = (int)ev->vm;
        return true;
    }
    return false;
}

static void api_done(void *ctx, uint32_t slot, int tag, long status, uint64_t latency_ns,
                     const char *body, size_t body_len)
{
    api_replay *a = ctx;
    (void)slot;
    (void)body_len;
    ks_fleetsim_samples_push(&a->lat, latency_ns);
    if (tag >= 0) {
        a->posts++;
        if (status == 201) {
            a->placed[tag] = 1;
            a->placed_ok++;
        } else if (status == 409) {
            a->no_capacity++;
        } else {
            if (!a->errors)
                snprintf(a->first_error, sizeof(a->first_error), "POST %ld: %.200s", status, body);
            a->errors++;
        }
    } else {
        a->deletes++;
        if (status < 200 || status > 299) {
            if (!a->errors)
                snprintf(a->first_error, sizeof(a->first_error), "DELETE %ld: %.200s", status,
                         body);
            a->errors++;
        }
        a->placed[-tag - 1] = 0;
    }
}

static ks_code replay_api(api_replay *a, const ks_fleetsim_trace *t, const char *url,
                          const char *token, uint32_t clients, ks_err *err)
{
    ks_code rc = KS_OK;
    memset(a, 0, sizeof(*a));
    a->trace = t;
    a->clients = clients;
    a->queue = calloc(t->n_events ? t->n_events : 1, sizeof(uint32_t));
    a->q_start = calloc(clients + 1, sizeof(uint32_t));
    a->q_pos = calloc(clients, sizeof(uint32_t));
    a->q_end = calloc(clients, sizeof(uint32_t));
    a->placed = calloc(t->n_vms ? t->n_vms : 1, 1);
    if (!a->queue || !a->q_start || !a->q_pos || !a->q_end || !a->placed)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    /* A VM's events all go to one connection, in trace order. */
    for (uint32_t e = 0; e < t->n_events; e++)
        a->q_start[t->events[e].vm % clients + 1]++;
    for (uint32_t s = 0; s < clients; s++)
        a->q_start[s + 1] += a->q_start[s];
    for (uint32_t s = 0; s < clients; s++)
        a->q_pos[s] = a->q_end[s] = a->q_start[s];
    for (uint32_t e = 0; e < t->n_events; e++) {
        uint32_t s = t->events[e].vm % clients;
        a->queue[a->q_end[s]++] = e;
    }
    rc = ks_fleetsim_http_run(url, token, clients, api_next, api_done, a, err);
    return rc;
}

static void api_replay_destroy(api_replay *a)
{
    free(a->queue);
    free(a->q_start);
    free(a->q_pos);
    free(a->q_end);
    free(a->placed);
    free(a->body);
    ks_fleetsim_samples_destroy(&a->lat);
}

static void print_fault(void *ctx, const char *feature, uint64_t n)
{
    (void)ctx;
    printf("    %-24s %8llu cpus\n", feature, (unsigned long long)n);
}

static void capacity_cb(void *ctx, const char *scope, const ks_capacity *c)
{
    *(ks_capacity *)ctx = *c;
    (void)scope;
}

int main(int argc, char **argv)
{
    ks_fleetsim_options o = KS_FLEETSIM_OPTIONS_INIT;
    const char *db = NULL, *api = NULL, *token = NULL, *env_fx = getenv("KS_FIXTURES_DIR");
    uint64_t steps = 10000, fill = 85, batch = 500, clients = 32, v = 0;
    ks_fleetsim_policy policy = KS_FLEETSIM_KINTSUGI;
    ks_err err = {0};
    int status = 1;
    o.fixtures_dir = env_fx && *env_fx ? env_fx : KS_BENCH_FIXTURES_DIR;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (!val) {
            fprintf(stderr, "fleetsim: '%s' needs a value or is unknown\n", a);
            usage(stderr);
            return 2;
        }
        if (strcmp(a, "--hosts") == 0) {
            ok = ks_fleetsim_parse_u64(&v, val, 1, 1000000);
            o.n_hosts = (uint32_t)v;
        } else if (strcmp(a, "--seed") == 0) {
            ok = ks_fleetsim_parse_u64(&o.seed, val, 0, UINT64_MAX);
        } else if (strcmp(a, "--defect-rate") == 0) {
            ok = ks_fleetsim_parse_double(&o.defect_rate, val, 0, 1);
        } else if (strcmp(a, "--quarantine-share") == 0) {
            ok = ks_fleetsim_parse_double(&o.quarantine_share, val, 0, 1);
        } else if (strcmp(a, "--mix") == 0) {
            ok = ks_fleetsim_parse_mix(&o.hybrid_share, val, &err) == KS_OK;
        } else if (strcmp(a, "--db") == 0) {
            db = val;
        } else if (strcmp(a, "--batch") == 0) {
            ok = ks_fleetsim_parse_u64(&batch, val, 1, 1000000);
        } else if (strcmp(a, "--api") == 0) {
            api = val;
        } else if (strcmp(a, "--token") == 0) {
            token = val;
        } else if (strcmp(a, "--clients") == 0) {
            ok = ks_fleetsim_parse_u64(&clients, val, 1, 4096);
        } else if (strcmp(a, "--trace-steps") == 0) {
            ok = ks_fleetsim_parse_u64(&steps, val, 0, 100000000);
        } else if (strcmp(a, "--fill") == 0) {
            ok = ks_fleetsim_parse_u64(&fill, val, 0, 100);
        } else if (strcmp(a, "--fixtures") == 0) {
            o.fixtures_dir = val;
        } else if (strcmp(a, "--policy") == 0) {
            ok = strcmp(val, "kintsugi") == 0 || strcmp(val, "offline-degraded") == 0;
            policy =
                strcmp(val, "kintsugi") == 0 ? KS_FLEETSIM_KINTSUGI : KS_FLEETSIM_OFFLINE_DEGRADED;
        } else {
            fprintf(stderr, "fleetsim: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "fleetsim: bad value '%s' for %s%s%s\n", val, a, err.msg[0] ? ": " : "",
                    err.msg);
            return 2;
        }
    }

    ks_fleetsim *sim = NULL;
    ks_store *store = NULL;
    ks_fleet *fleet = NULL;
    ks_fleetsim_trace *trace = NULL;
    ks_fleetsim_replay rp = {0};
    api_replay ar = {0};
    double build_ms = 0, db_ms = 0, api_ms = 0, replay_ms = 0, index_ms = 0;
    uint64_t report_failed = 0, api_ns = 0;

    uint64_t t0 = ks_fleetsim_now_ns();
    if (ks_fleetsim_new(&sim, &o, &err) != KS_OK)
        goto fail;
    build_ms = (double)(ks_fleetsim_now_ns() - t0) / 1e6;
    ks_fleetsim_stats st;
    ks_fleetsim_get_stats(sim, &st);
    printf("fleetsim: %llu hosts, %llu logical cpus, seed %llu, built in %.1f ms\n",
           (unsigned long long)st.n_hosts, (unsigned long long)st.n_cpus,
           (unsigned long long)o.seed, build_ms);
    printf("  %-24s %6s %8s %10s\n", "machine", "class", "cpus", "hosts");
    for (uint32_t m = 0; m < st.n_machines; m++) {
        ks_fleetsim_machine_view mv;
        if (ks_fleetsim_machine_at(sim, m, &mv) && mv.n_hosts)
            printf("  %-24s %6s %8u %10llu\n", mv.name,
                   mv.klass == KS_FLEETSIM_HYBRID ? "hybrid" : "server", mv.n_cpus,
                   (unsigned long long)mv.n_hosts);
    }
    printf("  defective hosts %llu (%.2f%%), degraded cpus %llu, quarantined cpus %llu\n",
           (unsigned long long)st.n_defective_hosts,
           100.0 * (double)st.n_defective_hosts / (double)st.n_hosts,
           (unsigned long long)st.n_degraded_cpus, (unsigned long long)st.n_quarantined_cpus);
    printf("  faults by unit:\n");
    ks_fleetsim_faults_foreach(sim, print_fault, NULL);

    if (db) {
        ks_store_options so = KS_STORE_OPTIONS_INIT;
        remove(db); /* a fresh fleet: stale WAL files would belong to the old one */
        char side[1100];
        snprintf(side, sizeof(side), "%s-wal", db);
        remove(side);
        snprintf(side, sizeof(side), "%s-shm", db);
        remove(side);
        if (ks_store_open(&store, db, &so, &err) != KS_OK)
            goto fail;
        t0 = ks_fleetsim_now_ns();
        if (ks_fleetsim_load_store(sim, store, policy, (uint32_t)batch, true, &err) != KS_OK)
            goto fail;
        db_ms = (double)(ks_fleetsim_now_ns() - t0) / 1e6;
        printf("  store '%s': %u hosts in %.1f ms (%.0f hosts/s, %llu per transaction)\n", db,
               o.n_hosts, db_ms, o.n_hosts / (db_ms / 1e3), (unsigned long long)batch);
    }
    if (api) {
        if (ks_fleetsim_send_reports(sim, api, token, (uint32_t)clients, policy, &report_failed,
                                     &api_ns, NULL, &err) != KS_OK)
            goto fail;
        api_ms = (double)api_ns / 1e6;
        if (ks_fleetsim_create_pool_api(sim, api, token, &err) != KS_OK)
            goto fail;
        printf("  api '%s': %u reports in %.1f ms (%.0f reports/s, %llu failed)\n", api, o.n_hosts,
               api_ms, o.n_hosts / (api_ms / 1e3), (unsigned long long)report_failed);
    }

    uint64_t fill_vcpus = st.n_cpus * fill / 100;
    if (ks_fleetsim_trace_new(&trace, o.seed, fill_vcpus, (uint32_t)steps, &err) != KS_OK)
        goto fail;
    printf("  trace: %u events, %u vms (fill %llu%% = %llu vcpus, %llu churn steps)\n",
           trace->n_events, trace->n_vms, (unsigned long long)fill, (unsigned long long)fill_vcpus,
           (unsigned long long)steps);
    uint64_t violations = 0, checked = 0, reclaimed = 0, placed = 0, no_cap = 0;
    char first[KS_TEXT_MAX] = "";
    if (api) {
        t0 = ks_fleetsim_now_ns();
        if (replay_api(&ar, trace, api, token, (uint32_t)clients, &err) != KS_OK)
            goto fail;
        replay_ms = (double)(ks_fleetsim_now_ns() - t0) / 1e6;
        placed = ar.placed_ok;
        no_cap = ar.no_capacity;
        uint64_t p99 = ks_fleetsim_quantile(ar.lat.v, ar.lat.n, 0.99);
        printf("  replay via api: %llu POST (%llu placed, %llu no capacity), %llu DELETE, "
               "%llu errors, %.1f ms, p99 %.2f ms\n",
               (unsigned long long)ar.posts, (unsigned long long)ar.placed_ok,
               (unsigned long long)ar.no_capacity, (unsigned long long)ar.deletes,
               (unsigned long long)ar.errors, replay_ms, (double)p99 / 1e6);
        if (ar.errors)
            printf("  first error: %s\n", ar.first_error);
    } else {
        if (ks_fleet_new(&fleet, &err) != KS_OK)
            goto fail;
        t0 = ks_fleetsim_now_ns();
        if (ks_fleetsim_load_fleet(sim, fleet, policy, &err) != KS_OK)
            goto fail;
        index_ms = (double)(ks_fleetsim_now_ns() - t0) / 1e6;
        if (ks_fleetsim_replay_init(&rp, trace, &err) != KS_OK)
            goto fail;
        t0 = ks_fleetsim_now_ns();
        if (ks_fleetsim_replay_run(&rp, fleet, trace->n_events, store, (uint32_t)batch, &err) !=
            KS_OK)
            goto fail;
        replay_ms = (double)(ks_fleetsim_now_ns() - t0) / 1e6;
        placed = rp.placed_ok;
        no_cap = rp.no_capacity;
        violations = ks_fleetsim_check_all(fleet, &checked, first);
        ks_capacity cap = {0};
        ks_fleet_capacity(fleet, KS_CAPACITY_FLEET, capacity_cb, &cap);
        reclaimed = cap.reclaimed;
        printf("  index built in %.1f ms; replay %.1f ms: %llu arrivals, %llu placed, %llu no "
               "capacity, %llu departures\n",
               index_ms, replay_ms, (unsigned long long)rp.arrivals,
               (unsigned long long)rp.placed_ok, (unsigned long long)rp.no_capacity,
               (unsigned long long)rp.departures);
        printf("  capacity: total %llu allocated %llu free %llu degraded-usable %llu "
               "reclaimed %llu stranded %llu\n",
               (unsigned long long)cap.total, (unsigned long long)cap.allocated,
               (unsigned long long)cap.free, (unsigned long long)cap.degraded_usable,
               (unsigned long long)cap.reclaimed, (unsigned long long)cap.stranded);
        printf("  checked %llu live vms: %llu vcpus on a cpu lacking a visible feature%s%s\n",
               (unsigned long long)checked, (unsigned long long)violations,
               violations ? ", first: " : "", first);
    }
    printf("bench=fleetsim hosts=%u cpus=%llu seed=%llu defective_hosts=%llu degraded_cpus=%llu "
           "quarantined_cpus=%llu build_ms=%.1f db_ms=%.1f api_reports_ms=%.1f "
           "report_failures=%llu trace_events=%u placed=%llu no_capacity=%llu replay_ms=%.1f "
           "reclaimed_cpus=%llu checked_vms=%llu faulty_feature_vcpus=%llu\n",
           o.n_hosts, (unsigned long long)st.n_cpus, (unsigned long long)o.seed,
           (unsigned long long)st.n_defective_hosts, (unsigned long long)st.n_degraded_cpus,
           (unsigned long long)st.n_quarantined_cpus, build_ms, db_ms, api_ms,
           (unsigned long long)report_failed, trace->n_events, (unsigned long long)placed,
           (unsigned long long)no_cap, replay_ms, (unsigned long long)reclaimed,
           (unsigned long long)checked, (unsigned long long)violations);
    status = violations || ar.errors || report_failed ? 3 : 0;
    goto done;
fail:
    fprintf(stderr, "fleetsim: %s%s%s\n", err.field[0] ? err.field : "", err.field[0] ? ": " : "",
            err.msg[0] ? err.msg : ks_code_str(KS_EINTERNAL));
done:
    api_replay_destroy(&ar);
    ks_fleetsim_replay_destroy(&rp);
    ks_fleetsim_trace_free(trace);
    ks_fleet_free(fleet);
    ks_store_close(store);
    ks_fleetsim_free(sim);
    return status;
}
