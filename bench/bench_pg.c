/*
 * bench_pg.c - placements per second through the store with 1, 2, 3 ...
 * scheduler replicas on one PostgreSQL, next to SQLite, in the same run.
 *
 * A replica is a store handle, a mutex (kintsugid's fleet lock) and an index
 * of free CPUs refreshed from the change feed; `--clients` threads per replica
 * place 1-2 vCPU VMs optimistically (pick on the index, insert in a
 * transaction, on KS_ECONFLICT refresh and retry, at most 8 times).  Each
 * configuration starts on a fresh database with the same hosts.  SQLite runs
 * one replica (one process owns the file).
 *
 *   bench_pg [--replicas 1,2,3] [--hosts 64] [--cpus 64] [--vms 3000] [--clients 2]
 *            [--pg-dir DIR]
 *
 * Without --pg-dir (or KS_PG_DIR) it starts a throwaway cluster with
 * scripts/pg-test-cluster.sh in a temporary directory and stops it at the end.
 * The PostgreSQL cluster runs on this machine with fsync on: figures include
 * its commit latency.  Output: one line per configuration,
 *   bench=pg_place backend=postgresql replicas=2 clients=4 vms=3000 ... placements_per_s=...
 */
#include <pthread.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ks_feature.h"
#include "ks_parse.h"
#include "ks_report.h"
#include "ks_store.h"

#ifndef KS_PG_CLUSTER_SCRIPT
#define KS_PG_CLUSTER_SCRIPT "scripts/pg-test-cluster.sh"
#endif

#define MAX_HOSTS 4096
#define MAX_CPUS 64
#define MAX_TRIES 8

static int g_hosts = 64, g_cpus = 64, g_vms = 3000, g_clients = 2;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static int pg_admin(const char *dir, const char *sql)
{
    char conninfo[700];
    snprintf(conninfo, sizeof(conninfo), "host=%s user=postgres dbname=postgres", dir);
    PGconn *c = PQconnectdb(conninfo);
    int ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PQsetNoticeProcessor(c, quiet_notice, NULL); /* "does not exist, skipping" */
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "bench_pg: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "bench_pg: connect to %s: %s", dir, PQerrorMessage(c));
    }
    PQfinish(c);
    return ok ? 0 : -1;
}

/* ---- replicas ------------------------------------------------------------ */

typedef struct replica {
    ks_store *s;
    pthread_mutex_t mu;
    uint64_t used[MAX_HOSTS];
    int64_t cursor;
    uint64_t last_poll_us;
    uint64_t placed, conflicts, gave_up, errors;
} replica;

typedef struct client {
    replica *r;
    int id, rep_no, n_vms;
    unsigned seed;
} client;

static int mark_vcpu(void *ctx, const ks_store_vcpu_row *row)
{
    uint64_t *used = ctx;
    int h = -1;
    if (sscanf(row->host_id, "h%d", &h) == 1 && h >= 0 && h < g_hosts && row->cpu_id >= 0 &&
        row->cpu_id < MAX_CPUS)
        used[h] |= UINT64_C(1) << row->cpu_id;
    return 0;
}

typedef struct dirty {
    unsigned char host[MAX_HOSTS];
    int all;
} dirty;

static int note_change(void *ctx, const ks_store_change_row *c)
{
    dirty *d = ctx;
    int h = -1;
    if (sscanf(c->host_id, "h%d", &h) == 1 && h >= 0 && h < g_hosts)
        d->host[h] = 1;
    else if (c->kind == KS_STORE_CHANGE_VM || c->kind == KS_STORE_CHANGE_HOST)
        d->all = 1;
    return 0;
}

static ks_code refresh(replica *r, ks_err *err)
{
    static dirty zero;
    dirty *d = malloc(sizeof(*d));
    if (!d)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    *d = zero;
    int64_t next = 0;
    ks_code rc = ks_store_changes_since(&next, r->s, r->cursor, note_change, d, err);
    if (rc == KS_OK) {
        r->cursor = next;
        r->last_poll_us = now_us();
    }
    for (int h = 0; rc == KS_OK && h < g_hosts; h++) {
        if (!d->all && !d->host[h])
            continue;
        char id[16];
        uint64_t bits[MAX_HOSTS];
        snprintf(id, sizeof(id), "h%d", h);
        bits[h] = 0;
        rc = ks_store_vcpu_scan(r->s, id, NULL, mark_vcpu, bits, err);
        if (rc == KS_OK)
            r->used[h] = bits[h];
    }
    free(d);
    return rc;
}

static ks_code try_place(replica *r, const char *name, int want, unsigned *seed, ks_err *err)
{
    int start = (int)(rand_r(seed) % (unsigned)g_hosts);
    for (int k = 0; k < g_hosts; k++) {
        int h = (start + k) % g_hosts;
        uint64_t mask = g_cpus == 64 ? ~UINT64_C(0) : (UINT64_C(1) << g_cpus) - 1;
        uint64_t free_bits = ~r->used[h] & mask;
        if (__builtin_popcountll(free_bits) < want)
            continue;
        ks_store_vcpu_alloc v[2];
        uint64_t take = 0;
        for (int i = 0; i < want; i++) {
            int cpu = __builtin_ctzll(free_bits);
            free_bits &= free_bits - 1;
            take |= UINT64_C(1) << cpu;
            v[i] = (ks_store_vcpu_alloc){i, cpu};
        }
        ks_store_vm_row vm;
        memset(&vm, 0, sizeof(vm));
        snprintf(vm.name, sizeof(vm.name), "%s", name);
        snprintf(vm.host_id, sizeof(vm.host_id), "h%d", h);
        vm.generation = 1;
        vm.created_us = vm.updated_us = 1;
        vm.plan_json = (char *)"{}";
        /* What kintsugid writes per placement: the VM, its vCPUs, an event. */
        ks_code rc = ks_store_begin(r->s, err);
        if (rc == KS_OK)
            rc = ks_store_vm_insert(r->s, &vm, v, (uint32_t)want, err);
        if (rc == KS_OK)
            rc = ks_store_event_append(NULL, r->s, 1, "vm.placed", vm.host_id, name, NULL, err);
        if (rc == KS_OK)
            rc = ks_store_commit(r->s, err);
        else
            ks_store_rollback(r->s, NULL);
        if (rc == KS_OK)
            r->used[h] |= take;
        return rc;
    }
    return ks_err_set(err, KS_ENOCAPACITY, "full");
}

static void *client_main(void *arg)
{
    client *c = arg;
    replica *r = c->r;
    for (int i = 0; i < c->n_vms; i++) {
        char name[KS_ID_MAX];
        snprintf(name, sizeof(name), "vm-%d-%d-%d", c->rep_no, c->id, i);
        int want = 1 + (int)(rand_r(&c->seed) % 2);
        ks_err err = {0};
        ks_code rc = KS_ECONFLICT;
        pthread_mutex_lock(&r->mu);
        if (now_us() - r->last_poll_us > 50000)
            refresh(r, NULL);
        for (int t = 0; t < MAX_TRIES && rc == KS_ECONFLICT; t++) {
            rc = try_place(r, name, want, &c->seed, &err);
            if (rc == KS_ECONFLICT) {
                r->conflicts++;
                refresh(r, NULL);
            }
        }
        if (rc == KS_OK)
            r->placed++;
        else if (rc == KS_ECONFLICT)
            r->gave_up++;
        else if (rc != KS_ENOCAPACITY && r->errors++ == 0)
            fprintf(stderr, "bench_pg: placement error: %s\n", err.msg);
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

static ks_report *make_report(int h)
{
    ks_report *r = NULL;
    if (ks_report_new(&r, NULL) != KS_OK || ks_report_alloc_cpus(r, (uint32_t)g_cpus, NULL))
        return NULL;
    snprintf(r->host.id, sizeof(r->host.id), "h%d", h);
    snprintf(r->host.boot_id, sizeof(r->host.boot_id), "boot");
    r->host.arch = KS_ARCH_X86_64;
    r->host.generation = 1;
    for (int i = 0; i < g_cpus; i++) {
        r->cpus[i].id = i;
        r->cpus[i].core = i / 2;
        r->cpus[i].thread = i % 2;
        r->cpus[i].kind = -1;
        r->cpus[i].state = KS_CPU_ONLINE;
        for (unsigned b = 0; b < 40; b++)
            ks_featset_set(&r->cpus[i].native, (b * 7 + (unsigned)i) % ks_feature_count());
        r->cpus[i].usable = r->cpus[i].native;
    }
    return r;
}

/* One configuration on a fresh database; prints its line; 0 on success. */
static int run_config(const char *backend, const char *url, int n_rep)
{
    ks_err err = {0};
    ks_store *admin = NULL;
    if (ks_store_open(&admin, url, NULL, &err) != KS_OK) {
        fprintf(stderr, "bench_pg: open %s: %s\n", url, err.msg);
        return -1;
    }
    for (int h = 0; h < g_hosts; h++) {
        ks_report *rep = make_report(h);
        ks_code rc = rep ? ks_store_begin(admin, &err) : KS_ENOMEM;
        if (rc == KS_OK)
            rc = ks_store_host_put_report(admin, rep, NULL, 1, NULL, &err);
        if (rc == KS_OK)
            rc = ks_store_commit(admin, &err);
        ks_report_free(rep);
        if (rc != KS_OK) {
            fprintf(stderr, "bench_pg: host %d: %s\n", h, err.msg);
            ks_store_close(admin);
            return -1;
        }
    }
    replica *reps = calloc((size_t)n_rep, sizeof(*reps));
    int n_cl = n_rep * g_clients;
    client *cl = calloc((size_t)n_cl, sizeof(*cl));
    pthread_t *th = calloc((size_t)n_cl, sizeof(*th));
    int rc = reps && cl && th ? 0 : -1;
    for (int i = 0; rc == 0 && i < n_rep; i++) {
        pthread_mutex_init(&reps[i].mu, NULL);
        ks_store_options o = KS_STORE_OPTIONS_INIT;
        o.busy_timeout_ms = 30000;
        if (ks_store_open(&reps[i].s, url, &o, &err) != KS_OK ||
            ks_store_changes_cursor(&reps[i].cursor, reps[i].s, &err) != KS_OK ||
            ks_store_vcpu_scan(reps[i].s, NULL, NULL, mark_vcpu, reps[i].used, &err) != KS_OK) {
            fprintf(stderr, "bench_pg: replica %d: %s\n", i, err.msg);
            rc = -1;
        }
        reps[i].last_poll_us = now_us();
    }
    uint64_t t0 = now_us(), c0 = (uint64_t)clock();
    for (int i = 0; rc == 0 && i < n_cl; i++) {
        cl[i] = (client){&reps[i / g_clients], i % g_clients, i / g_clients, g_vms / n_cl,
                         77u + (unsigned)i};
        if (pthread_create(&th[i], NULL, client_main, &cl[i]) != 0) {
            rc = -1;
            n_cl = i;
        }
    }
    for (int i = 0; i < n_cl && th; i++)
        pthread_join(th[i], NULL);
    uint64_t t1 = now_us(), c1 = (uint64_t)clock();
    uint64_t placed = 0, conflicts = 0, gave_up = 0, errors = 0;
    for (int i = 0; reps && i < n_rep; i++) {
        placed += reps[i].placed;
        conflicts += reps[i].conflicts;
        gave_up += reps[i].gave_up;
        errors += reps[i].errors;
    }
    int64_t stored = -1, dup = -1;
    if (rc == 0 && (ks_store_query_int(&stored, admin, "SELECT count(*) FROM vms", &err) ||
                    ks_store_query_int(&dup, admin,
                                       "SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT "
                                       "host_id, cpu_id FROM vm_vcpus) d) FROM vm_vcpus",
                                       &err)))
        rc = -1;
    if (rc == 0) {
        printf("bench=pg_place backend=%s replicas=%d clients=%d hosts=%d cpus=%d vms=%llu "
               "stored=%lld double_allocations=%lld conflicts=%llu gave_up=%llu errors=%llu "
               "seconds=%.2f placements_per_s=%.0f cpu_s=%.2f\n",
               backend, n_rep, n_rep * g_clients, g_hosts, g_cpus, (unsigned long long)placed,
               (long long)stored, (long long)dup, (unsigned long long)conflicts,
               (unsigned long long)gave_up, (unsigned long long)errors, (double)(t1 - t0) / 1e6,
               1e6 * (double)placed / (double)(t1 - t0 + 1), (double)(c1 - c0) / CLOCKS_PER_SEC);
        fflush(stdout);
        if ((uint64_t)stored != placed || dup != 0 || errors)
            rc = -1;
    }
    for (int i = 0; reps && i < n_rep; i++) {
        ks_store_close(reps[i].s);
        pthread_mutex_destroy(&reps[i].mu);
    }
    free(reps);
    free(cl);
    free(th);
    ks_store_close(admin);
    return rc;
}

/* "1,2,3": each 1..64. */
static int parse_list(int *out, int max, const char *s)
{
    int n = 0;
    char item[24];
    while (*s && n < max) {
        size_t len = strcspn(s, ",");
        uint64_t v = 0;
        if (len == 0 || len >= sizeof(item))
            return -1;
        memcpy(item, s, len);
        item[len] = '\0';
        if (ks_parse_u64(&v, item, 1, 64, "--replicas", NULL) != KS_OK)
            return -1;
        out[n++] = (int)v;
        s += len + (s[len] == ',');
    }
    return n;
}

static int parse_int(int *out, const char *s, int min, int max)
{
    uint64_t v = 0;
    if (ks_parse_u64(&v, s, (uint64_t)min, (uint64_t)max, "option", NULL) != KS_OK)
        return -1;
    *out = (int)v;
    return 0;
}

/* scripts/pg-test-cluster.sh start|stop DIR, stdout to /dev/null; 0 on success. */
static int cluster(const char *cmd, const char *dir)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        FILE *devnull = freopen("/dev/null", "w", stdout);
        (void)devnull;
        execl(KS_PG_CLUSTER_SCRIPT, KS_PG_CLUSTER_SCRIPT, cmd, dir, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    int replicas[16] = {1, 2, 3}, n_replicas = 3;
    const char *pg_dir = getenv("KS_PG_DIR");
    for (int a = 1; a < argc; a++) {
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(argv[a], "--replicas") == 0 && v) {
            n_replicas = parse_list(replicas, 16, v);
            a++;
        } else if (strcmp(argv[a], "--hosts") == 0 && v) {
            if (parse_int(&g_hosts, v, 1, MAX_HOSTS) != 0)
                n_replicas = -1;
            a++;
        } else if (strcmp(argv[a], "--cpus") == 0 && v) {
            if (parse_int(&g_cpus, v, 2, MAX_CPUS) != 0)
                n_replicas = -1;
            a++;
        } else if (strcmp(argv[a], "--vms") == 0 && v) {
            if (parse_int(&g_vms, v, 1, 10000000) != 0)
                n_replicas = -1;
            a++;
        } else if (strcmp(argv[a], "--clients") == 0 && v) {
            if (parse_int(&g_clients, v, 1, 64) != 0)
                n_replicas = -1;
            a++;
        } else if (strcmp(argv[a], "--pg-dir") == 0 && v) {
            pg_dir = v;
            a++;
        } else {
            fprintf(stderr,
                    "usage: bench_pg [--replicas 1,2,3] [--hosts N] [--cpus N<=64] [--vms N] "
                    "[--clients N per replica] [--pg-dir DIR]\n");
            return 2;
        }
    }
    if (n_replicas < 1 || g_hosts < 1 || g_hosts > MAX_HOSTS || g_cpus < 2 || g_cpus > MAX_CPUS ||
        g_vms < 1 || g_clients < 1 || g_clients > 64) {
        fprintf(stderr, "bench_pg: bad arguments\n");
        return 2;
    }
    char tmp[256] = "", own_dir[300] = "";
    if (!pg_dir || !pg_dir[0]) {
        /* A cluster of our own, in a temporary directory. */
        snprintf(tmp, sizeof(tmp), "/tmp/ks-bench-pg-XXXXXX");
        if (!mkdtemp(tmp)) {
            perror("bench_pg: mkdtemp");
            return 1;
        }
        /* The script hands the directory to the cluster's user and removes
         * it on stop. */
        snprintf(own_dir, sizeof(own_dir), "%s", tmp);
        if (cluster("start", own_dir) != 0) {
            fprintf(stderr, "bench_pg: could not start a PostgreSQL cluster with %s\n",
                    KS_PG_CLUSTER_SCRIPT);
            cluster("stop", own_dir);
            return 1;
        }
        pg_dir = own_dir;
    }
    int rc = 0;
    char sqlite_dir[] = "/tmp/ks-bench-sqlite-XXXXXX";
    if (!mkdtemp(sqlite_dir)) {
        perror("bench_pg: mkdtemp");
        rc = 1;
    }
    if (rc == 0) {
        char url[600];
        snprintf(url, sizeof(url), "%s/bench.db", sqlite_dir);
        if (run_config("sqlite", url, 1) != 0)
            rc = 1;
        static const char *const side[] = {"", "-wal", "-shm"};
        for (int i = 0; i < 3; i++) {
            char f[700];
            snprintf(f, sizeof(f), "%s%s", url, side[i]);
            unlink(f);
        }
        rmdir(sqlite_dir);
    }
    for (int i = 0; rc == 0 && i < n_replicas; i++) {
        char url[700];
        if (pg_admin(pg_dir, "DROP DATABASE IF EXISTS ks_bench WITH (FORCE)") ||
            pg_admin(pg_dir, "CREATE DATABASE ks_bench")) {
            rc = 1;
            break;
        }
        snprintf(url, sizeof(url), "postgresql:///ks_bench?host=%s&user=postgres", pg_dir);
        if (run_config("postgresql", url, replicas[i]) != 0)
            rc = 1;
    }
    if (own_dir[0]) {
        if (cluster("stop", own_dir) != 0)
            fprintf(stderr, "bench_pg: could not stop the cluster in %s\n", own_dir);
    } else {
        pg_admin(pg_dir, "DROP DATABASE IF EXISTS ks_bench WITH (FORCE)");
    }
    return rc;
}
