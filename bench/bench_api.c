/*
 * bench_api.c - kintsugid over loopback: report ingestion and VM create/delete
 * throughput and latency, with a libcurl-multi closed-loop load generator
 * (--clients keep-alive connections, one request in flight each).
 *
 * The bench starts a real kintsugid (build/api/kintsugid or --kintsugid PATH)
 * on 127.0.0.1 port 0 with a temporary database and --insecure-no-auth, waits
 * for /healthz with a deadline, then:
 *   1. report ingestion: PUT /v1/hosts/{id}/report for every simulated host
 *      (this also pre-loads the fleet); baseline in the same run: the same
 *      reports written in process with ks_store_host_put_report, one
 *      transaction each (the store's cost without HTTP, JSON decode, index);
 *   2. baseline: GET /healthz (the transport's own ceiling);
 *   3. POST /v1/vms + DELETE /v1/vms/{name} pairs (small/medium shapes of the
 *      simulator's mix): req/s and p50/p99 per method.
 * Targets: >= 5,000 req/s and p99 <= 10 ms for create+delete.
 *
 * Output: a table, then `bench=api ...` and `bench=ingest ...` lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ks_fleetsim.h"
#include "ks_store.h"

#ifndef KS_BENCH_KINTSUGID
#define KS_BENCH_KINTSUGID "build/api/kintsugid"
#endif

#define TARGET_RPS 5000.0
#define TARGET_P99_MS 10.0

static pid_t g_child = -1;

static void stop_child(void)
{
    if (g_child <= 0)
        return;
    kill(g_child, SIGTERM);
    for (int i = 0; i < 200; i++) { /* 10 s */
        int st;
        if (waitpid(g_child, &st, WNOHANG) == g_child) {
            g_child = -1;
            return;
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    kill(g_child, SIGKILL);
    waitpid(g_child, NULL, 0);
    g_child = -1;
}

static void die(const char *what, const ks_err *err)
{
    fprintf(stderr, "bench_api: %s: %s\n", what, err && err->msg[0] ? err->msg : "failed");
    stop_child();
    exit(1);
}

/* ---- starting kintsugid ---- */

/* One GET: /healthz, or /metrics for the group commit counters. */
typedef struct probe {
    const char *path;
    long status;
    double groups, units; /* ks_commit_groups_total, ks_commit_group_units_total */
    double post_p99_le_s, delete_p99_le_s; /* kintsugid's own p99 (histogram bucket bound) */
} probe;

static bool probe_next(void *ctx, uint32_t slot, ks_fleetsim_http_req *req)
{
    probe *p = ctx;
    (void)slot;
    if (p->status)
        return false;
    req->method = "GET";
    snprintf(req->path, sizeof(req->path), "%s", p->path ? p->path : "/healthz");
    p->status = -1;
    return true;
}

static double metric(const char *text, const char *name)
{
    char key[96];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *at = strstr(text, key);
    return at ? strtod(at + strlen(key), NULL) : 0;
}

/* The upper bound of the histogram bucket holding the 99th percentile of
 * ks_http_request_duration_seconds for one route and method (0 = no data). */
static double handler_p99(const char *text, const char *route, const char *method)
{
    char prefix[160];
    int n = snprintf(prefix, sizeof(prefix),
                     "ks_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"",
                     route, method);
    double le[32], count[32];
    size_t k = 0;
    for (const char *at = strstr(text, prefix); at && k < 32; at = strstr(at + 1, prefix)) {
        const char *v = at + n;
        le[k] = strncmp(v, "+Inf", 4) == 0 ? 1e9 : strtod(v, NULL);
        const char *sp = strchr(v, ' ');
        count[k++] = sp ? strtod(sp + 1, NULL) : 0;
    }
    for (size_t i = 0; k && i < k; i++)
        if (count[i] >= 0.99 * count[k - 1])
            return le[i];
    return 0;
}

static void probe_done(void *ctx, uint32_t slot, int tag, long status, uint64_t lat,
                       const char *body, size_t len)
{
    probe *p = ctx;
    (void)slot;
    (void)tag;
    (void)lat;
    p->status = status;
    if (status == 200 && body && len) {
        p->groups = metric(body, "ks_commit_groups_total");
        p->units = metric(body, "ks_commit_group_units_total");
        p->post_p99_le_s = handler_p99(body, "/v1/vms", "POST");
        p->delete_p99_le_s = handler_p99(body, "/v1/vms/{name}", "DELETE");
    }
}

/* Starts kintsugid and fills url; polls the port file and /healthz (20 s deadline). */
static void start_kintsugid(char *url, size_t url_len, const char *bin, const char *dir,
                            unsigned threads)
{
    char db[1100], port_file[1100], log[1100], thr[16];
    snprintf(db, sizeof(db), "%s/api.db", dir);
    snprintf(port_file, sizeof(port_file), "%s/port", dir);
    snprintf(log, sizeof(log), "%s/kintsugid.log", dir);
    snprintf(thr, sizeof(thr), "%u", threads);
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "bench_api: kintsugid not found at '%s' (build it, or --kintsugid PATH)\n",
                bin);
        exit(1);
    }
    g_child = fork();
    if (g_child < 0)
        die("fork", NULL);
    if (g_child == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(bin, bin, "--listen", "127.0.0.1:0", "--port-file", port_file, "--db", db,
              "--insecure-no-auth", "--log-level", "warn", "--threads", thr, "--max-connections",
              "1024", "--snapshot-interval", "0", "--lost-after", "0", (char *)NULL);
        _exit(127);
    }
    uint64_t deadline = ks_fleetsim_now_ns() + 20ull * 1000000000u;
    unsigned port = 0;
    while (ks_fleetsim_now_ns() < deadline) {
        int st;
        if (waitpid(g_child, &st, WNOHANG) == g_child) {
            g_child = -1;
            fprintf(stderr, "bench_api: kintsugid exited at start (see %s)\n", log);
            exit(1);
        }
        FILE *f = fopen(port_file, "r");
        if (f) {
            if (fscanf(f, "%u", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (port) {
            snprintf(url, url_len, "http://127.0.0.1:%u", port);
            probe p = {0};
            ks_err err = {0};
            if (ks_fleetsim_http_run(url, NULL, 1, probe_next, probe_done, &p, &err) == KS_OK &&
                p.status == 200)
                return;
        }
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    die("kintsugid did not become healthy within 20 s", NULL);
}

/* ---- workloads ---- */

typedef struct load {
    uint64_t budget, issued;
    uint32_t mode; /* 0 = healthz, 1 = create/delete */
    uint32_t *slot_k;
    uint8_t *slot_state; /* 0: next is POST, 1: next is DELETE */
    char **slot_body;
    ks_fleetsim_samples lat_all, lat_post, lat_delete;
    uint64_t n_2xx, n_409, n_other, n_fail;
    uint32_t shapes[8];
    uint32_t n_shapes;
    char first_error[256];
} load;

static bool load_next(void *ctx, uint32_t slot, ks_fleetsim_http_req *req)
{
    load *l = ctx;
    if (l->issued >= l->budget && (l->mode == 0 || l->slot_state[slot] == 0))
        return false;
    l->issued++;
    if (l->mode == 0) {
        req->method = "GET";
        snprintf(req->path, sizeof(req->path), "/healthz");
        return true;
    }
    char name[KS_ID_MAX];
    snprintf(name, sizeof(name), "api-%u-%u", slot, l->slot_k[slot]);
    if (l->slot_state[slot] == 1) {
        req->method = "DELETE";
        snprintf(req->path, sizeof(req->path), "/v1/vms/%s", name);
        req->tag = 1;
        return true;
    }
    ks_vm_request vr;
    uint32_t shape = l->shapes[(slot + l->slot_k[slot]) % l->n_shapes];
    ks_fleetsim_make_request(&vr, 0, shape);
    snprintf(vr.name, sizeof(vr.name), "%s", name);
    json_t *doc = ks_vm_request_to_json(&vr);
    free(l->slot_body[slot]);
    l->slot_body[slot] = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!l->slot_body[slot])
        return false;
    req->method = "POST";
    snprintf(req->path, sizeof(req->path), "/v1/vms");
    req->body = l->slot_body[slot];
    req->body_len = strlen(l->slot_body[slot]);
    req->tag = 0;
    return true;
}

static void load_done(void *ctx, uint32_t slot, int tag, long status, uint64_t lat,
                      const char *body, size_t len)
{
    load *l = ctx;
    (void)len;
    ks_fleetsim_samples_push(&l->lat_all, lat);
    if (status >= 200 && status < 300)
        l->n_2xx++;
    else if (status == 409)
        l->n_409++;
    else if (status == 0)
        l->n_fail++;
    else
        l->n_other++;
    if ((status < 200 || status > 299) && status != 409 && !l->first_error[0])
        snprintf(l->first_error, sizeof(l->first_error), "%ld %.200s", status, body);
    if (l->mode == 0)
        return;
    if (tag == 0) {
        ks_fleetsim_samples_push(&l->lat_post, lat);
        if (status == 201)
            l->slot_state[slot] = 1;
        else
            l->slot_k[slot]++;
    } else {
        ks_fleetsim_samples_push(&l->lat_delete, lat);
        l->slot_state[slot] = 0;
        l->slot_k[slot]++;
    }
}

static void load_destroy(load *l, uint32_t clients)
{
    for (uint32_t i = 0; l->slot_body && i < clients; i++)
        free(l->slot_body[i]);
    free(l->slot_body);
    free(l->slot_k);
    free(l->slot_state);
    ks_fleetsim_samples_destroy(&l->lat_all);
    ks_fleetsim_samples_destroy(&l->lat_post);
    ks_fleetsim_samples_destroy(&l->lat_delete);
}

static double run_load(load *l, const char *url, uint32_t clients, uint32_t mode, uint64_t n)
{
    ks_err err = {0};
    memset(l, 0, sizeof(*l));
    l->budget = n;
    l->mode = mode;
    l->slot_k = calloc(clients, sizeof(uint32_t));
    l->slot_state = calloc(clients, 1);
    l->slot_body = calloc(clients, sizeof(char *));
    if (!l->slot_k || !l->slot_state || !l->slot_body)
        die("out of memory", NULL);
    size_t n_sh = 0;
    const ks_fleetsim_shape *sh = ks_fleetsim_shapes(&n_sh);
    for (size_t s = 0; s < n_sh && l->n_shapes < 8; s++)
        if (sh[s].n_any + sh[s].n_performance + sh[s].n_efficiency <= 8)
            l->shapes[l->n_shapes++] = (uint32_t)s;
    uint64_t t0 = ks_fleetsim_now_ns();
    if (ks_fleetsim_http_run(url, NULL, clients, load_next, load_done, l, &err) != KS_OK)
        die("load", &err);
    return (double)(ks_fleetsim_now_ns() - t0) / 1e9;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

int main(int argc, char **argv)
{
    ks_fleetsim_options o = KS_FLEETSIM_OPTIONS_INIT;
    const char *env_fx = getenv("KS_FIXTURES_DIR");
    const char *bin = getenv("KS_KINTSUGID") ? getenv("KS_KINTSUGID") : KS_BENCH_KINTSUGID;
    uint64_t requests = 40000, clients = 32, threads = 0, v = 0; /* kintsugid's default */
    o.n_hosts = 1000;
    o.fixtures_dir = env_fx && *env_fx ? env_fx : KS_BENCH_FIXTURES_DIR;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = val != NULL;
        if (ok && strcmp(a, "--hosts") == 0) {
            ok = ks_fleetsim_parse_u64(&v, val, 1, 1000000);
            o.n_hosts = (uint32_t)v;
        } else if (ok && strcmp(a, "--requests") == 0) {
            ok = ks_fleetsim_parse_u64(&requests, val, 1, 100000000);
        } else if (ok && strcmp(a, "--clients") == 0) {
            ok = ks_fleetsim_parse_u64(&clients, val, 1, 1024);
        } else if (ok && strcmp(a, "--threads") == 0) {
            ok = ks_fleetsim_parse_u64(&threads, val, 0, 256);
        } else if (ok && strcmp(a, "--seed") == 0) {
            ok = ks_fleetsim_parse_u64(&o.seed, val, 0, UINT64_MAX);
        } else if (ok && strcmp(a, "--kintsugid") == 0) {
            bin = val;
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "usage: bench_api [--hosts N] [--requests N] [--clients N] "
                            "[--threads N] [--seed S] [--kintsugid PATH]\n");
            return 2;
        }
    }
    const char *tmp = getenv("TMPDIR");
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/ks-bench-api-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "bench_api: cannot create a temporary directory\n");
        return 1;
    }
    ks_err err = {0};
    ks_fleetsim *sim = NULL;
    o.tmp_dir = dir;
    if (ks_fleetsim_new(&sim, &o, &err) != KS_OK)
        die("fleet", &err);
    ks_fleetsim_stats st;
    ks_fleetsim_get_stats(sim, &st);

    /* baseline for ingestion: the store alone, in process, one transaction per report */
    char bdb[1100];
    snprintf(bdb, sizeof(bdb), "%s/baseline.db", dir);
    ks_store *bs = NULL;
    ks_store_options so = KS_STORE_OPTIONS_INIT;
    if (ks_store_open(&bs, bdb, &so, &err) != KS_OK)
        die("baseline store", &err);
    uint64_t t0 = ks_fleetsim_now_ns();
    if (ks_fleetsim_load_store(sim, bs, KS_FLEETSIM_KINTSUGI, 1, true, &err) != KS_OK)
        die("baseline store load", &err);
    double base_ingest_s = (double)(ks_fleetsim_now_ns() - t0) / 1e9;
    ks_store_close(bs);

    char url[128];
    atexit(stop_child);
    start_kintsugid(url, sizeof(url), bin, dir, (unsigned)threads);
    fprintf(stderr, "bench_api: kintsugid at %s, %u hosts, %llu requests, %llu clients\n", url,
            o.n_hosts, (unsigned long long)requests, (unsigned long long)clients);

    ks_fleetsim_samples ingest_lat = {0};
    uint64_t failed = 0, ingest_ns = 0;
    if (ks_fleetsim_send_reports(sim, url, NULL, (uint32_t)clients, KS_FLEETSIM_KINTSUGI, &failed,
                                 &ingest_ns, &ingest_lat, &err) != KS_OK)
        die("report ingestion", &err);
    double ingest_rate = (double)o.n_hosts / ((double)ingest_ns / 1e9);
    double ingest_p99 = ms(ks_fleetsim_quantile(ingest_lat.v, ingest_lat.n, 0.99));
    double base_ingest_rate = (double)o.n_hosts / base_ingest_s;

    load hz, vm;
    double hz_s = run_load(&hz, url, (uint32_t)clients, 0, requests);
    double hz_rps = (double)hz.lat_all.n / hz_s;
    double hz_p99 = ms(ks_fleetsim_quantile(hz.lat_all.v, hz.lat_all.n, 0.99));
    double vm_s = run_load(&vm, url, (uint32_t)clients, 1, requests);
    double vm_rps = (double)vm.lat_all.n / vm_s;
    double vm_p50 = ms(ks_fleetsim_quantile(vm.lat_all.v, vm.lat_all.n, 0.50));
    double vm_p99 = ms(ks_fleetsim_quantile(vm.lat_all.v, vm.lat_all.n, 0.99));
    double post_p50 = ms(ks_fleetsim_quantile(vm.lat_post.v, vm.lat_post.n, 0.50));
    double post_p99 = ms(ks_fleetsim_quantile(vm.lat_post.v, vm.lat_post.n, 0.99));
    double del_p50 = ms(ks_fleetsim_quantile(vm.lat_delete.v, vm.lat_delete.n, 0.50));
    double del_p99 = ms(ks_fleetsim_quantile(vm.lat_delete.v, vm.lat_delete.n, 0.99));
    probe mp = {.path = "/metrics"};
    if (ks_fleetsim_http_run(url, NULL, 1, probe_next, probe_done, &mp, &err) != KS_OK ||
        mp.status != 200)
        die("GET /metrics", &err);
    double group_avg = mp.groups > 0 ? mp.units / mp.groups : 0;
    stop_child();

    printf("\n== bench_api: kintsugid (%llu threads) on loopback, %llu keep-alive clients, "
           "%u hosts / %llu cpus ==\n",
           (unsigned long long)threads, (unsigned long long)clients, o.n_hosts,
           (unsigned long long)st.n_cpus);
    printf("  %-38s %12s %10s %10s %10s\n", "workload", "req/s", "p50 ms", "p99 ms", "target");
    printf("  %-38s %12.0f %10s %10.2f %10s\n", "PUT report (ingestion, via API)", ingest_rate, "",
           ingest_p99, "");
    printf("  %-38s %12.0f %10s %10s %10s\n", "  baseline: store only, in process",
           base_ingest_rate, "", "", "");
    printf("  %-38s %12.0f %10.2f %10.2f %10s\n", "GET /healthz (transport baseline)", hz_rps,
           ms(ks_fleetsim_quantile(hz.lat_all.v, hz.lat_all.n, 0.50)), hz_p99, "");
    printf("  %-38s %12.0f %10.2f %10.2f %10s %s\n", "POST /v1/vms + DELETE (all)", vm_rps, vm_p50,
           vm_p99, ">=5000/10", vm_rps >= TARGET_RPS && vm_p99 <= TARGET_P99_MS ? "met" : "MISSED");
    printf("  %-38s %12s %10.2f %10.2f\n", "  POST /v1/vms", "", post_p50, post_p99);
    printf("  %-38s %12s %10.2f %10.2f\n", "  DELETE /v1/vms/{name}", "", del_p50, del_p99);
    printf("  group commit: %.0f units in %.0f commits, %.1f per commit\n", mp.units, mp.groups,
           group_avg);
    printf("  kintsugid's own p99 (handler time, histogram bucket bound): POST <= %g ms, "
           "DELETE <= %g ms\n",
           mp.post_p99_le_s * 1e3, mp.delete_p99_le_s * 1e3);
    printf("  responses: %llu 2xx, %llu 409, %llu other, %llu transport failures; report "
           "failures %llu%s%s\n",
           (unsigned long long)vm.n_2xx, (unsigned long long)vm.n_409,
           (unsigned long long)vm.n_other, (unsigned long long)vm.n_fail,
           (unsigned long long)failed, vm.first_error[0] ? "; first error: " : "", vm.first_error);
    printf("bench=ingest hosts=%u reports_per_s=%.0f p99_ms=%.2f failed=%llu "
           "baseline_store_reports_per_s=%.0f\n",
           o.n_hosts, ingest_rate, ingest_p99, (unsigned long long)failed, base_ingest_rate);
    printf("bench=api clients=%llu threads=%llu requests=%zu req_per_s=%.0f%s p50_ms=%.2f "
           "p99_ms=%.2f%s post_p99_ms=%.2f delete_p99_ms=%.2f ok=%llu conflict=%llu other=%llu "
           "transport_fail=%llu baseline_healthz_req_per_s=%.0f baseline_healthz_p99_ms=%.2f "
           "units_per_commit=%.1f handler_post_p99_le_ms=%g handler_delete_p99_le_ms=%g\n",
           (unsigned long long)clients, (unsigned long long)threads, vm.lat_all.n, vm_rps,
           vm_rps >= TARGET_RPS ? "" : "(MISSED)", vm_p50, vm_p99,
           vm_p99 <= TARGET_P99_MS ? "" : "(MISSED)", post_p99, del_p99,
           (unsigned long long)vm.n_2xx, (unsigned long long)vm.n_409,
           (unsigned long long)vm.n_other, (unsigned long long)vm.n_fail, hz_rps, hz_p99,
           group_avg, mp.post_p99_le_s * 1e3, mp.delete_p99_le_s * 1e3);
    int status = vm.n_other || vm.n_fail || failed || vm.n_2xx == 0 ? 3 : 0;
    load_destroy(&hz, (uint32_t)clients);
    load_destroy(&vm, (uint32_t)clients);
    ks_fleetsim_samples_destroy(&ingest_lat);
    ks_fleetsim_free(sim);
    /* temp dir: database, WAL, log, port file */
    const char *files[] = {"api.db",          "api.db-wal",      "api.db-shm", "baseline.db",
                           "baseline.db-wal", "baseline.db-shm", "port",       "kintsugid.log"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char p[1200];
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        if (status == 0 || strcmp(files[i], "kintsugid.log") != 0)
            remove(p);
    }
    if (status == 0)
        rmdir(dir);
    else
        fprintf(stderr, "bench_api: kept %s/kintsugid.log\n", dir);
    return status;
}
