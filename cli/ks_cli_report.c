/*
 * ks_cli_report.c - renders the capacity-utilization report.  HTML is written
 * in one pass; every value from the server is escaped; charts are inline SVG
 * sized from the data, so the page works offline and in any browser.
 */
#include "ks_cli_report.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ks_cli.h"

/* Segment order and colours of the utilisation bars. */
static const struct {
    const char *field, *label, *color;
} segments[] = {
    {"allocated_healthy", "allocated (healthy)", "#3b6ea5"},
    {"reclaimed", "reclaimed (allocated on degraded cores)", "#d4a017"},
    {"free_usable", "free", "#9ccc65"},
    {"stranded", "stranded (free, no shape fits)", "#ef9a9a"},
    {"quarantined", "quarantined", "#8d6e63"},
    {"offline", "offline", "#bdbdbd"},
    {"unschedulable", "unschedulable (host drained or lost)", "#90a4ae"},
    {"reserved", "reserved for the host", "#ce93d8"},
};
#define N_SEGMENTS (sizeof(segments) / sizeof(segments[0]))

static json_int_t num(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static void html_escape(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&#39;", out); break;
        default: fputc(*s, out);
        }
    }
}

/* Splits a capacity object into the bar segments (they add up to total). */
static void segment_values(const json_t *c, json_int_t v[N_SEGMENTS])
{
    json_int_t allocated = num(c, "allocated"), reclaimed = num(c, "reclaimed");
    json_int_t free_cpus = num(c, "free"), stranded = num(c, "stranded");
    v[0] = allocated - reclaimed > 0 ? allocated - reclaimed : 0;
    v[1] = reclaimed;
    v[2] = free_cpus - stranded > 0 ? free_cpus - stranded : 0;
    v[3] = stranded;
    v[4] = num(c, "quarantined");
    v[5] = num(c, "offline");
    v[6] = num(c, "unschedulable");
    v[7] = num(c, "reserved");
}

static double pct(json_int_t part, json_int_t whole)
{
    return whole > 0 ? 100.0 * (double)part / (double)whole : 0.0;
}

static void stacked_bars(FILE *out, const char *title, const char *id, const json_t *rows)
{
    size_t n = json_array_size(rows);
    int bar_h = 22, gap = 8, label_w = 180, width = 760;
    int height = (int)n * (bar_h + gap) + 40;
    fprintf(out, "<h2>%s</h2>\n", title);
    if (n == 0) {
        fputs("<p class=\"empty\">none</p>\n", out);
        return;
    }
    fprintf(out, "<svg id=\"%s\" class=\"chart stacked\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" role=\"img\">\n", id, width, height, width, height);
    for (size_t r = 0; r < n; r++) {
        const json_t *row = json_array_get(rows, r);
        json_int_t v[N_SEGMENTS], total = num(row, "total");
        segment_values(row, v);
        int y = (int)r * (bar_h + gap) + 10;
        fprintf(out, "<text x=\"0\" y=\"%d\" class=\"label\">", y + 16);
        html_escape(out, json_string_value(json_object_get(row, "scope")));
        fputs("</text>\n", out);
        /* A non-zero segment is at least 2 px wide, so one reclaimed CPU in a large
         * fleet stays visible; the other segments share what is left. */
        double x = label_w, span = width - label_w - 70, min_w = 2.0, floor_w = 0;
        json_int_t small = 0;
        for (size_t s = 0; s < N_SEGMENTS; s++)
            if (v[s] > 0 && total > 0 && span * (double)v[s] / (double)total < min_w) {
                floor_w += min_w;
                small += v[s];
            }
        for (size_t s = 0; s < N_SEGMENTS; s++) {
            if (v[s] <= 0 || total <= 0)
                continue;
            double w = span * (double)v[s] / (double)total;
            if (w < min_w)
                w = min_w;
            else if (total > small)
                w = (span - floor_w) * (double)v[s] / (double)(total - small);
            fprintf(out, "<rect class=\"seg seg-%zu\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" "
                         "height=\"%d\" fill=\"%s\"><title>%s: %" JSON_INTEGER_FORMAT
                         "</title></rect>\n", s, x, y, w, bar_h, segments[s].color,
                    segments[s].label, v[s]);
            x += w;
        }
        fprintf(out, "<text x=\"%d\" y=\"%d\" class=\"value\">%.0f%% used</text>\n",
                width - 66, y + 16, pct(num(row, "allocated"), total));
    }
    fputs("</svg>\n<div class=\"legend\">", out);
    for (size_t s = 0; s < N_SEGMENTS; s++)
        fprintf(out, "<span><i style=\"background:%s\"></i>%s</span>", segments[s].color,
                segments[s].label);
    fputs("</div>\n", out);
}

static void trend_line(FILE *out, const json_t *history)
{
    size_t n = json_array_size(history);
    int width = 760, height = 220, pad = 40;
    fputs("<h2>Reclaimed capacity over time</h2>\n", out);
    if (n == 0) {
        fputs("<p class=\"empty\">no capacity snapshots yet</p>\n", out);
        return;
    }
    json_int_t max = 1;
    for (size_t i = 0; i < n; i++) {
        json_int_t r = num(json_array_get(history, i), "reclaimed");
        if (r > max)
            max = r;
    }
    fprintf(out, "<svg id=\"trend\" class=\"chart trend\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" role=\"img\">\n", width, height, width, height);
    fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", pad,
            height - pad, width - 10, height - pad);
    fprintf(out, "<line x1=\"%d\" y1=\"10\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", pad, pad,
            height - pad);
    fprintf(out, "<text x=\"2\" y=\"16\" class=\"label\">%" JSON_INTEGER_FORMAT "</text>\n", max);
    fprintf(out, "<text x=\"2\" y=\"%d\" class=\"label\">0</text>\n", height - pad);
    /* Time axis: the first and the last snapshot. */
    for (size_t k = 0; k < (n > 1 ? 2u : 1u); k++) {
        const json_t *h = json_array_get(history, k ? n - 1 : 0);
        time_t t = (time_t)(num(h, "time_us") / 1000000);
        struct tm tm;
        char when[32];
        strftime(when, sizeof(when), "%H:%M:%S", gmtime_r(&t, &tm));
        fprintf(out, "<text x=\"%d\" y=\"%d\" class=\"label axis-time\" text-anchor=\"%s\">"
                     "%s UTC</text>\n", k ? width - 10 : pad, height - pad + 16,
                k ? "end" : "start", when);
    }
    fputs("<polyline class=\"trend-line\" fill=\"none\" stroke=\"#d4a017\" stroke-width=\"2\" "
          "points=\"", out);
    for (size_t i = 0; i < n; i++) {
        double x = pad + (n > 1 ? (double)(width - pad - 10) * (double)i / (double)(n - 1) : 0);
        double y = (height - pad) -
                   (double)(height - pad - 10) * (double)num(json_array_get(history, i), "reclaimed") /
                       (double)max;
        fprintf(out, "%s%.1f,%.1f", i ? " " : "", x, y);
    }
    fputs("\"/>\n</svg>\n", out);
}

static void heatmap(FILE *out, const json_t *defects)
{
    size_t n = json_array_size(defects);
    fputs("<h2>Defects by feature and host</h2>\n", out);
    if (n == 0) {
        fputs("<p class=\"empty\">no defective features reported</p>\n", out);
        return;
    }
    /* Columns: the hosts that appear, in first-seen order, at most 24. */
    const char *hosts[24];
    size_t n_hosts = 0;
    json_int_t max = 1;
    for (size_t i = 0; i < n; i++) {
        const char *h;
        json_t *v;
        json_object_foreach(json_object_get(json_array_get(defects, i), "by_host"), h, v)
        {
            size_t k = 0;
            while (k < n_hosts && strcmp(hosts[k], h) != 0)
                k++;
            if (k == n_hosts && n_hosts < 24)
                hosts[n_hosts++] = h;
            if (json_integer_value(v) > max)
                max = json_integer_value(v);
        }
    }
    int cell = 22, label_w = 150, top = 90;
    int width = label_w + (int)n_hosts * cell + 10, height = top + (int)n * cell + 10;
    fprintf(out, "<svg id=\"heatmap\" class=\"chart heatmap\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" role=\"img\">\n", width, height, width, height);
    for (size_t k = 0; k < n_hosts; k++) {
        fprintf(out, "<text class=\"label\" transform=\"translate(%d,%d) rotate(-60)\">",
                label_w + (int)k * cell + 14, top - 4);
        html_escape(out, hosts[k]);
        fputs("</text>\n", out);
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *d = json_array_get(defects, i);
        int y = top + (int)i * cell;
        fprintf(out, "<text x=\"0\" y=\"%d\" class=\"label\">", y + 15);
        html_escape(out, json_string_value(json_object_get(d, "feature")));
        fputs("</text>\n", out);
        for (size_t k = 0; k < n_hosts; k++) {
            json_int_t v = json_integer_value(json_object_get(json_object_get(d, "by_host"), hosts[k]));
            double t = (double)v / (double)max;
            fprintf(out, "<rect class=\"cell\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                         "fill=\"rgb(%d,%d,%d)\"><title>%" JSON_INTEGER_FORMAT
                         " CPUs</title></rect>\n", label_w + (int)k * cell, y, cell - 2, cell - 2,
                    255, (int)(245 - 170 * t), (int)(235 - 200 * t), v);
        }
    }
    fputs("</svg>\n", out);
}

static void capacity_table(FILE *out, const char *title, const json_t *rows)
{
    static const char *const cols[] = {"total",     "allocated",   "free",    "degraded_usable",
                                       "reclaimed", "stranded",    "quarantined", "offline",
                                       "unschedulable", "reserved"};
    fprintf(out, "<h2>%s</h2>\n<table class=\"capacity\"><tr><th>scope</th>", title);
    for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++)
        fprintf(out, "<th>%s</th>", cols[c]);
    fputs("<th>used %</th><th>reclaimed %</th></tr>\n", out);
    for (size_t r = 0; r < json_array_size(rows); r++) {
        const json_t *row = json_array_get(rows, r);
        fputs("<tr><td>", out);
        html_escape(out, json_string_value(json_object_get(row, "scope")));
        fputs("</td>", out);
        for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++)
            fprintf(out, "<td>%" JSON_INTEGER_FORMAT "</td>", num(row, cols[c]));
        fprintf(out, "<td>%.1f</td><td>%.1f</td></tr>\n",
                pct(num(row, "allocated"), num(row, "total")),
                pct(num(row, "reclaimed"), num(row, "total")));
    }
    fputs("</table>\n", out);
}

void ks_cli_report_html(FILE *out, const json_t *doc)
{
    const json_t *fleet = json_object_get(doc, "fleet");
    time_t when = (time_t)(num(doc, "generated_us") / 1000000);
    char stamp[64];
    struct tm tm;
    strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&when, &tm));

    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<title>Kintsugi capacity-utilization report</title>\n<style>\n"
          "body{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}\n"
          "h1{font-size:22px}h2{font-size:17px;margin-top:28px}\n"
          ".kpis{display:flex;gap:16px;flex-wrap:wrap}\n"
          ".kpi{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:120px}\n"
          ".kpi b{display:block;font-size:22px}\n"
          "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;"
          "padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}\n"
          ".label{font-size:12px}.value{font-size:12px;fill:#444}.axis{stroke:#888}\n"
          "#migrations td,#defects td:first-child{text-align:left}\n"
          ".legend span{margin-right:14px;font-size:12px}.legend i{display:inline-block;"
          "width:10px;height:10px;margin-right:4px}.empty{color:#888}\n"
          "</style></head><body>\n<h1>Kintsugi capacity-utilization report</h1>\n", out);
    fprintf(out, "<p>Generated %s.</p>\n<div class=\"kpis\">\n", stamp);
    static const struct {
        const char *key, *label;
    } kpis[] = {{"total", "CPUs"}, {"allocated", "allocated"}, {"reclaimed", "reclaimed"},
                {"degraded_usable", "degraded, usable"}, {"stranded", "stranded"},
                {"quarantined", "quarantined"}};
    for (size_t k = 0; k < sizeof(kpis) / sizeof(kpis[0]); k++)
        fprintf(out, "<div class=\"kpi\" id=\"kpi-%s\"><b>%" JSON_INTEGER_FORMAT "</b>%s</div>\n",
                kpis[k].key, num(fleet, kpis[k].key), kpis[k].label);
    fputs("</div>\n", out);
    json_int_t reclaimed = num(fleet, "reclaimed");
    fprintf(out, "<p id=\"reclaimed-summary\">%" JSON_INTEGER_FORMAT " %s (%.1f%% of the fleet) "
                 "%s VMs on cores with a defective unit: a disable-the-core policy would "
                 "have lost %s.</p>\n", reclaimed, reclaimed == 1 ? "CPU" : "CPUs",
            pct(reclaimed, num(fleet, "total")), reclaimed == 1 ? "runs" : "run",
            reclaimed == 1 ? "it" : "them");

    json_t *fleet_rows = json_array();
    json_array_append(fleet_rows, (json_t *)fleet);
    stacked_bars(out, "Fleet utilisation", "bars-fleet", fleet_rows);
    stacked_bars(out, "Utilisation by pool", "bars-pools", json_object_get(doc, "pools"));
    stacked_bars(out, "Utilisation by core kind", "bars-kinds", json_object_get(doc, "kinds"));
    trend_line(out, json_object_get(doc, "history"));
    heatmap(out, json_object_get(doc, "defects"));

    capacity_table(out, "Fleet", fleet_rows);
    json_decref(fleet_rows);
    capacity_table(out, "Pools", json_object_get(doc, "pools"));
    capacity_table(out, "Core kinds", json_object_get(doc, "kinds"));
    capacity_table(out, "Hosts", json_object_get(doc, "hosts"));

    const json_t *defects = json_object_get(doc, "defects");
    fputs("<h2>Top defective features</h2>\n<table id=\"defects\"><tr><th>feature</th>"
          "<th>CPUs</th><th>hosts</th></tr>\n", out);
    for (size_t i = 0; i < json_array_size(defects); i++) {
        const json_t *d = json_array_get(defects, i);
        fputs("<tr><td>", out);
        html_escape(out, json_string_value(json_object_get(d, "feature")));
        fprintf(out, "</td><td>%" JSON_INTEGER_FORMAT "</td><td>%" JSON_INTEGER_FORMAT
                     "</td></tr>\n", num(d, "cpus"), num(d, "hosts"));
    }
    fputs("</table>\n", out);

    const json_t *moving = json_object_get(doc, "needs_migration");
    fputs("<h2>VMs needing migration</h2>\n", out);
    if (json_array_size(moving) == 0)
        fputs("<p class=\"empty\" id=\"migrations\">none</p>\n", out);
    else {
        fputs("<table id=\"migrations\"><tr><th>VM</th><th>host</th><th>reason</th></tr>\n", out);
        for (size_t i = 0; i < json_array_size(moving); i++) {
            const json_t *m = json_array_get(moving, i);
            static const char *const keys[] = {"name", "host", "reason"};
            fputs("<tr>", out);
            for (int k = 0; k < 3; k++) {
                fputs("<td>", out);
                html_escape(out, json_string_value(json_object_get(m, keys[k])));
                fputs("</td>", out);
            }
            fputs("</tr>\n", out);
        }
        fputs("</table>\n", out);
    }
    fputs("</body></html>\n", out);
}

static void csv_rows(FILE *out, const char *level, const json_t *rows)
{
    for (size_t r = 0; r < json_array_size(rows); r++) {
        const json_t *c = json_array_get(rows, r);
        const char *scope = json_string_value(json_object_get(c, "scope"));
        fprintf(out, "%s,%s", level, scope ? scope : "");
        static const char *const cols[] = {"total",       "allocated", "free",
                                           "degraded_usable", "reclaimed", "stranded",
                                           "quarantined", "offline",   "unschedulable",
                                           "reserved"};
        for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
            fprintf(out, ",%" JSON_INTEGER_FORMAT, num(c, cols[i]));
        fprintf(out, ",%.2f,%.2f\n", pct(num(c, "allocated"), num(c, "total")),
                pct(num(c, "reclaimed"), num(c, "total")));
    }
}

void ks_cli_report_csv(FILE *out, const json_t *doc)
{
    fputs("level,scope,total,allocated,free,degraded_usable,reclaimed,stranded,quarantined,"
          "offline,unschedulable,reserved,used_pct,reclaimed_pct\n", out);
    json_t *fleet_rows = json_array();
    json_array_append(fleet_rows, json_object_get(doc, "fleet"));
    csv_rows(out, "fleet", fleet_rows);
    json_decref(fleet_rows);
    csv_rows(out, "pool", json_object_get(doc, "pools"));
    csv_rows(out, "kind", json_object_get(doc, "kinds"));
    csv_rows(out, "host", json_object_get(doc, "hosts"));
}

static const char report_help[] =
    "usage: kintsugictl report (--html FILE | --csv FILE | --json) [--history N]\n"
    "Writes the capacity-utilization report: totals, allocated, free, degraded-usable,\n"
    "reclaimed, stranded and quarantined CPUs for the fleet, pools, core kinds and\n"
    "hosts, the top defective features, VMs needing migration and the trend.\n";

int ks_cli_cmd_report(ks_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"html", required_argument, 0, 'h'},
                                         {"csv", required_argument, 0, 'c'},
                                         {"json", no_argument, 0, 'j'},
                                         {"history", required_argument, 0, 'n'},
                                         {0, 0, 0, 0}};
    if (ks_cli_wants_help(argc, argv, report_help))
        return KS_CLI_OK;
    const char *html = NULL, *csv = NULL, *history = "200";
    bool json = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'h')
            html = optarg;
        else if (c == 'c')
            csv = optarg;
        else if (c == 'j')
            json = true;
        else if (c == 'n')
            history = optarg;
        else
            return ks_cli_usage_error("report: unknown option '%s'", argv[optind - 1]);
    }
    if (!html && !csv && !json)
        return ks_cli_usage_error("report: choose --html FILE, --csv FILE or --json");
    char path[256] = "/v1/reports/capacity";
    ks_err err = {0};
    json_t *doc = NULL;
    if (ks_cli_query_add(cli, path, sizeof(path), "history", history, &err) != KS_OK ||
        ks_cli_http_call(cli->http, "GET", path, NULL, NULL, &doc, &err) != KS_OK)
        return ks_cli_fail(&err);
    int rc = KS_CLI_OK;
    const char *files[2] = {html, csv};
    for (int k = 0; k < 2 && rc == KS_CLI_OK; k++) {
        if (!files[k])
            continue;
        FILE *f = fopen(files[k], "w");
        if (!f) {
            rc = ks_cli_usage_error("report: cannot write '%s'", files[k]);
            break;
        }
        if (k == 0)
            ks_cli_report_html(f, doc);
        else
            ks_cli_report_csv(f, doc);
        if (fclose(f) != 0)
            rc = ks_cli_usage_error("report: error writing '%s'", files[k]);
    }
    if (json && rc == KS_CLI_OK) {
        json_dumpf(doc, cli->out, JSON_INDENT(2));
        fputc('\n', cli->out);
    }
    json_decref(doc);
    return rc;
}
