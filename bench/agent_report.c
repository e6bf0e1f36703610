/*
 * agent_report.c - how long a full host report takes and how much memory it
 * needs: discovery (hwloc + per-CPU CPUID decode + procfs/sysfs) plus the JSON
 * encoding, on the largest recorded fixture (Knights Landing, 256 PUs), the
 * AMD Zen 3 server (128 PUs) and the live host.
 *
 * Each scenario runs in its own child process so that its peak RSS
 * (getrusage ru_maxrss, via wait4) is its own.  Targets: <= 50 ms and
 * <= 10 MiB of growth for 256 CPUs.  Prints `name=value` lines, then a table.
 *
 * usage: agent_report [--runs N] [--fixtures DIR]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ks_discover.h"
#include "ks_discover_int.h"
#include "ks_report.h"

#define TARGET_MS 50.0
#define TARGET_RSS_MIB 10.0

typedef struct result {
    int ok;
    unsigned n_cpus;
    double best_ms, median_ms;
    double base_rss_kib; /* high-water mark before the first report */
    size_t json_bytes;
} result;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One full report: discover + encode + serialise. */
static int one_report(const char *fixture, unsigned *n_cpus, size_t *json_bytes)
{
    ks_discover_options o = KS_DISCOVER_OPTIONS_INIT;
    ks_report *r = NULL;
    ks_err err;
    o.fixture_path = fixture;
    if (ks_discover_host(&r, &o, &err) != KS_OK) {
        fprintf(stderr, "agent_report: %s\n", err.msg);
        return -1;
    }
    json_t *doc = ks_report_to_json(r);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    *n_cpus = r->n_cpus;
    *json_bytes = text ? strlen(text) : 0;
    free(text);
    json_decref(doc);
    ks_report_free(r);
    return *json_bytes ? 0 : -1;
}

static void run_child(int fd, const char *fixture, int runs)
{
    result res;
    struct rusage ru;
    memset(&res, 0, sizeof(res));
    getrusage(RUSAGE_SELF, &ru);
    res.base_rss_kib = (double)ru.ru_maxrss;
    double *t = calloc((size_t)runs, sizeof(double));
    res.ok = t != NULL;
    for (int i = 0; res.ok && i < runs; i++) {
        double t0 = now_ms();
        res.ok = one_report(fixture, &res.n_cpus, &res.json_bytes) == 0;
        t[i] = now_ms() - t0;
    }
    if (res.ok) {
        qsort(t, (size_t)runs, sizeof(double), cmp_double);
        res.best_ms = t[0];
        res.median_ms = t[runs / 2];
    }
    free(t);
    ssize_t w = write(fd, &res, sizeof(res));
    _exit(w == (ssize_t)sizeof(res) && res.ok ? 0 : 1);
}

/* tar -xjf tarball -C dir, without a shell. */
static int untar(const char *tarball, const char *dir)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execlp("tar", "tar", "-xjf", tarball, "-C", dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int run_scenario(const char *fixture, int runs, result *res, double *peak_kib)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        run_child(fds[1], fixture, runs);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], res, sizeof(*res));
    close(fds[0]);
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR)
            return -1;
    *peak_kib = (double)ru.ru_maxrss;
    return n == (ssize_t)sizeof(*res) && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    int runs = 15;
    const char *fixtures = getenv("KS_FIXTURES_DIR");
#ifdef KS_BENCH_FIXTURES_DIR
    if (!fixtures)
        fixtures = KS_BENCH_FIXTURES_DIR;
#endif
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = 0;
            for (const char *p = argv[++i]; *p >= '0' && *p <= '9' && runs < 100000; p++)
                runs = runs * 10 + (*p - '0');
        } else if (strcmp(argv[i], "--fixtures") == 0 && i + 1 < argc) {
            fixtures = argv[++i];
        } else {
            fprintf(stderr, "usage: agent_report [--runs N] [--fixtures DIR]\n");
            return 2;
        }
    }
    if (runs < 1 || !fixtures) {
        fprintf(stderr, "agent_report: need --runs >= 1 and a fixtures directory\n");
        return 2;
    }

    /* Unpack the tarballs once: the agent reports a live host many times, so the
     * steady state has no unpacking; the tarball path is measured separately. */
    char tmp[] = "/tmp/ks-bench-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("agent_report: mkdtemp");
        return 1;
    }
    static const struct {
        const char *label, *name;
    } fx[] = {{"knl256", "Intel-KnightsLanding-XeonPhi-7210"},
              {"zen3_128", "AMD-19h-Zen3-2xEpyc-7763"}};
    struct {
        const char *label;
        char path[1200];
        result res;
        double peak_kib;
        int ok;
    } sc[5];
    int n_sc = 0;
    for (size_t i = 0; i < sizeof(fx) / sizeof(fx[0]); i++) {
        char tarball[2048];
        snprintf(tarball, sizeof(tarball), "%s/hwloc-x86/%s.tar.bz2", fixtures, fx[i].name);
        if (untar(tarball, tmp) != 0) {
            fprintf(stderr, "agent_report: cannot unpack %s\n", fx[i].name);
            continue;
        }
        sc[n_sc].label = fx[i].label;
        snprintf(sc[n_sc].path, sizeof(sc[n_sc].path), "%s/%s", tmp, fx[i].name);
        n_sc++;
    }
    sc[n_sc].label = "knl256_tarball";
    snprintf(sc[n_sc].path, sizeof(sc[n_sc].path), "%s/hwloc-x86/%s.tar.bz2", fixtures,
             fx[0].name);
    n_sc++;
    sc[n_sc].label = "live";
    sc[n_sc].path[0] = '\0';
    n_sc++;

    int failed = 0;
    for (int i = 0; i < n_sc; i++) {
        sc[i].ok = run_scenario(sc[i].path[0] ? sc[i].path : NULL, runs, &sc[i].res,
                                &sc[i].peak_kib) == 0;
        if (!sc[i].ok) {
            failed = 1;
            printf("agent_report.%s.ok=0\n", sc[i].label);
            continue;
        }
        const result *r = &sc[i].res;
        double growth = sc[i].peak_kib - r->base_rss_kib;
        printf("agent_report.%s.cpus=%u\n", sc[i].label, r->n_cpus);
        printf("agent_report.%s.wall_ms_median=%.2f\n", sc[i].label, r->median_ms);
        printf("agent_report.%s.wall_ms_best=%.2f\n", sc[i].label, r->best_ms);
        printf("agent_report.%s.peak_rss_kib=%.0f\n", sc[i].label, sc[i].peak_kib);
        printf("agent_report.%s.rss_growth_kib=%.0f\n", sc[i].label, growth);
        printf("agent_report.%s.json_bytes=%zu\n", sc[i].label, r->json_bytes);
    }
    printf("agent_report.runs=%d\n", runs);
    printf("agent_report.target_ms=%.0f\nagent_report.target_rss_growth_mib=%.0f\n", TARGET_MS,
           TARGET_RSS_MIB);

    printf("\n%-16s %6s %12s %10s %12s %12s %10s\n", "scenario", "cpus", "median ms", "best ms",
           "peak RSS", "RSS growth", "JSON");
    for (int i = 0; i < n_sc; i++) {
        if (!sc[i].ok) {
            printf("%-16s failed\n", sc[i].label);
            continue;
        }
        const result *r = &sc[i].res;
        printf("%-16s %6u %12.2f %10.2f %9.1f MiB %8.1f MiB %7zu kB\n", sc[i].label, r->n_cpus,
               r->median_ms, r->best_ms, sc[i].peak_kib / 1024.0,
               (sc[i].peak_kib - r->base_rss_kib) / 1024.0, r->json_bytes / 1024);
    }
    if (sc[0].ok && strcmp(sc[0].label, "knl256") == 0) {
        double growth_mib = (sc[0].peak_kib - sc[0].res.base_rss_kib) / 1024.0;
        printf("\ntarget for 256 CPUs: <= %.0f ms, <= %.0f MiB growth: %s (%.2f ms, %.1f MiB)\n",
               TARGET_MS, TARGET_RSS_MIB,
               sc[0].res.median_ms <= TARGET_MS && growth_mib <= TARGET_RSS_MIB ? "met"
                                                                               : "NOT met",
               sc[0].res.median_ms, growth_mib);
    }
    if (ks_discover__rmtree(tmp) != 0)
        fprintf(stderr, "agent_report: could not remove %s\n", tmp);
    return failed;
}
