/*
 * ks_api_metrics.c - request and placement counters in Prometheus text format.
 *
 * Counters are kept per route (the route pattern is the label, never the raw
 * path, so label cardinality is bounded by the route table) and per status.
 * Latency histograms use fixed buckets from 100us to 10s.
 * Threading: one mutex; updates are a few increments.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_api_int.h"

static const double bucket_s[KS_METRICS_N_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001,
                                                      0.0025, 0.005,   0.01,   0.025,
                                                      0.05,   0.1,     1.0,    10.0};

void ks_metrics_init(ks_metrics *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->mu, NULL);
}

void ks_metrics_destroy(ks_metrics *m) { pthread_mutex_destroy(&m->mu); }

static void observe(uint64_t *buckets, double *sum, uint64_t *count, uint64_t us)
{
    double s = (double)us / 1e6;
    for (int i = 0; i < KS_METRICS_N_BUCKETS; i++)
        if (s <= bucket_s[i])
            buckets[i]++;
    buckets[KS_METRICS_N_BUCKETS]++; /* +Inf */
    *sum += s;
    (*count)++;
}

void ks_metrics_request(ks_metrics *m, size_t route_index, int status, uint64_t duration_us)
{
    if (route_index > KS_METRICS_MAX_ROUTES)
        route_index = KS_METRICS_MAX_ROUTES;
    if (status < 0 || status >= 600)
        status = 0;
    pthread_mutex_lock(&m->mu);
    m->route[route_index].by_status[status]++;
    observe(m->route[route_index].buckets, &m->route[route_index].sum_s,
            &m->route[route_index].count, duration_us);
    pthread_mutex_unlock(&m->mu);
}

void ks_metrics_placement(ks_metrics *m, bool ok, uint64_t duration_us)
{
    pthread_mutex_lock(&m->mu);
    if (ok)
        m->placements_total++;
    else
        m->placements_failed++;
    observe(m->place_buckets, &m->place_sum_s, &m->place_count, duration_us);
    pthread_mutex_unlock(&m->mu);
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap ? b->cap * 2 : 8192;
        while (ncap < b->len + (size_t)n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

static void histogram(sbuf *b, const char *name, const char *labels, const uint64_t *buckets,
                      double sum, uint64_t count)
{
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < KS_METRICS_N_BUCKETS; i++)
        sb_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bucket_s[i],
                  (unsigned long long)buckets[i]);
    sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
              (unsigned long long)buckets[KS_METRICS_N_BUCKETS]);
    const char *lo = labels[0] ? "{" : "", *lc = labels[0] ? "}" : "";
    sb_printf(b, "%s_sum%s%s%s %.6f\n", name, lo, labels, lc, sum);
    sb_printf(b, "%s_count%s%s%s %llu\n", name, lo, labels, lc, (unsigned long long)count);
}

char *ks_metrics_format(ks_metrics *m, const char *extra)
{
    sbuf b = {0};
    pthread_mutex_lock(&m->mu);
    sb_printf(&b, "# HELP ks_http_requests_total HTTP requests by route, method and status.\n"
                  "# TYPE ks_http_requests_total counter\n");
    for (size_t r = 0; r <= ks_api_n_routes && r <= KS_METRICS_MAX_ROUTES; r++) {
        const char *route = r < ks_api_n_routes ? ks_api_routes[r].pattern : "unmatched";
        const char *method = r < ks_api_n_routes ? ks_api_routes[r].method : "any";
        for (int s = 0; s < 600; s++)
            if (m->route[r].by_status[s])
                sb_printf(&b,
                          "ks_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} "
                          "%llu\n",
                          route, method, s, (unsigned long long)m->route[r].by_status[s]);
    }
    sb_printf(&b, "# HELP ks_http_request_duration_seconds Request latency by route.\n"
                  "# TYPE ks_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= ks_api_n_routes && r <= KS_METRICS_MAX_ROUTES; r++) {
        if (!m->route[r].count)
            continue;
        char labels[160];
        snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\"",
                 r < ks_api_n_routes ? ks_api_routes[r].pattern : "unmatched",
                 r < ks_api_n_routes ? ks_api_routes[r].method : "any");
        histogram(&b, "ks_http_request_duration_seconds", labels, m->route[r].buckets,
                  m->route[r].sum_s, m->route[r].count);
    }
    sb_printf(&b,
              "# HELP ks_placements_total VM placements by result.\n"
              "# TYPE ks_placements_total counter\n"
              "ks_placements_total{result=\"placed\"} %llu\n"
              "ks_placements_total{result=\"failed\"} %llu\n",
              (unsigned long long)m->placements_total, (unsigned long long)m->placements_failed);
    sb_printf(&b, "# HELP ks_placement_duration_seconds Time to decide and commit a placement.\n"
                  "# TYPE ks_placement_duration_seconds histogram\n");
    histogram(&b, "ks_placement_duration_seconds", "", m->place_buckets, m->place_sum_s,
              m->place_count);
    pthread_mutex_unlock(&m->mu);
    if (extra)
        sb_printf(&b, "%s", extra);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
