/*
 * test_ks_cli_report.c - kintsugictl's capacity-report renderers
 * (cli/ks_cli_report.c): the HTML page (charts as inline SVG, KPIs, tables,
 * escaping of everything the server sends) and the CSV, fed a known document
 * (tests/integration/test_report_render.h), plus the `report` command's own
 * argument and error handling.
 *
 * The report command lives in the same file and calls a few helpers of
 * kintsugictl.c (ks_cli.h); minimal versions of those are defined here so the
 * renderer links without main().
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>

#include "integration/test_report_render.h"
#include "ks_cli.h"
#include "ks_cli_report.h"
#include "ks_test.h"

/* ---- the kintsugictl.c helpers ks_cli_report.c uses ---- */

static int usage_errors;

int ks_cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    usage_errors++;
    return KS_CLI_USAGE;
}

int ks_cli_fail(const ks_err *err)
{
    fprintf(stderr, "fail: %s\n", err->msg);
    return KS_CLI_API_ERROR;
}

int ks_cli_wants_help(int argc, char **argv, const char *help)
{
    (void)help;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}

ks_code ks_cli_query_add(ks_cli *cli, char *buf, size_t cap, const char *key, const char *value,
                         ks_err *err)
{
    if (!value)
        return KS_OK;
    size_t used = strlen(buf);
    int n = snprintf(buf + used, cap - used, "%c%s=", strchr(buf, '?') ? '&' : '?', key);
    if (n < 0 || (size_t)n >= cap - used)
        return ks_err_set(err, KS_EINVAL, "query too long");
    return ks_cli_http_escape(cli->http, value, buf, cap, err);
}

/* ---- helpers ---- */

static json_t *known_doc(void)
{
    json_error_t je;
    json_t *doc = json_loads(ks_report_doc_json, JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        fail_msg("test document: %s (line %d)", je.text, je.line);
    return doc;
}

typedef void (*render_fn)(FILE *out, const json_t *doc);

static char *render(render_fn fn, const json_t *doc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    fn(f, doc);
    assert_int_equal(fclose(f), 0);
    assert_non_null(buf);
    assert_int_equal(strlen(buf), len);
    return buf;
}

static size_t count(const char *s, const char *sub)
{
    size_t n = 0, l = strlen(sub);
    for (const char *p = s; (p = strstr(p, sub)); p += l)
        n++;
    return n;
}

/* The text from `start` to the end of the following `end` (heap copy), or fails. */
static char *section(const char *s, const char *start, const char *end)
{
    const char *a = strstr(s, start);
    if (!a)
        fail_msg("no '%s' in the output", start);
    const char *b = strstr(a, end);
    if (!b)
        fail_msg("'%s' is not closed by '%s'", start, end);
    return strndup(a, (size_t)(b - a) + strlen(end));
}

static void expect_in(const char *s, const char *sub)
{
    if (!strstr(s, sub))
        fail_msg("expected '%s' in the output", sub);
}

/* ---- HTML ---- */

static void test_cli_report__html_structure_and_kpis(void **state)
{
    (void)state;
    json_t *doc = known_doc();
    char *html = render(ks_cli_report_html, doc);
    assert_true(strncmp(html, "<!DOCTYPE html>\n<html lang=\"en\">", 31) == 0);
    assert_int_equal(strcmp(html + strlen(html) - 15, "</body></html>\n"), 0);
    /* Self-contained: no external fetches of any kind. */
    assert_null(strstr(html, "http://"));
    assert_null(strstr(html, "https://"));
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "<link"));
    expect_in(html, "<p>Generated " KS_DOC_GENERATED_STAMP ".</p>");

    static const struct {
        const char *id, *value;
    } kpis[] = {{"total", "1000</b>CPUs"},        {"allocated", "600</b>allocated"},
                {"reclaimed", "40</b>reclaimed"}, {"degraded_usable", "50</b>degraded, usable"},
                {"stranded", "20</b>stranded"},   {"quarantined", "10</b>quarantined"}};
    for (size_t i = 0; i < sizeof(kpis) / sizeof(kpis[0]); i++) {
        char want[128];
        ks_test_path(want, sizeof(want), "<div class=\"kpi\" id=\"kpi-%s\"><b>%s</div>", kpis[i].id,
                     kpis[i].value);
        expect_in(html, want);
    }
    expect_in(html, "<p id=\"reclaimed-summary\">40 CPUs (4.0% of the fleet) run VMs");

    /* Capacity tables: scope, 10 counts (total ... offline, unschedulable, reserved),
     * used % and reclaimed %. */
    expect_in(html, "<tr><td>fleet</td><td>1000</td><td>600</td><td>300</td><td>50</td>"
                    "<td>40</td><td>20</td><td>10</td><td>5</td><td>0</td><td>0</td>"
                    "<td>60.0</td><td>4.0</td></tr>");
    expect_in(html, "<tr><td>pool-a</td><td>400</td><td>300</td><td>80</td><td>30</td>"
                    "<td>25</td><td>10</td><td>4</td><td>0</td><td>0</td><td>0</td><td>75.0</td>");
    expect_in(html, "<tr><td>efficiency</td><td>300</td><td>100</td>");
    expect_in(html, "<tr><td>h-2</td><td>300</td><td>150</td>");
    assert_int_equal(count(html, "<table class=\"capacity\">"), 4);

    /* Top defective features and VMs needing migration. */
    char *defects = section(html, "<table id=\"defects\">", "</table>");
    expect_in(defects, "<tr><td>avx512f</td><td>5</td><td>2</td></tr>");
    expect_in(defects, "<tr><td>avx2</td><td>1</td><td>1</td></tr>");
    assert_int_equal(count(defects, "<tr><td>"), KS_DOC_N_DEFECTS);
    free(defects);
    char *mig = section(html, "<table id=\"migrations\">", "</table>");
    expect_in(mig, "<tr><td>vm-9</td><td>h-2</td><td>defect on CPU 7 (avx2)</td></tr>");
    assert_int_equal(count(mig, "<tr><td>"), 2);
    free(mig);
    free(html);
    json_decref(doc);
}

static void test_cli_report__html_stacked_bars(void **state)
{
    (void)state;
    json_t *doc = known_doc();
    char *html = render(ks_cli_report_html, doc);

    /* Fleet: all six segments present (every one is non-zero in the document). */
    char *fleet = section(html, "<svg id=\"bars-fleet\"", "</svg>");
    assert_int_equal(count(fleet, "<rect class=\"seg "), 6);
    for (int s = 0; s < 6; s++) {
        char cls[32];
        ks_test_path(cls, sizeof(cls), "class=\"seg seg-%d\"", s);
        assert_int_equal(count(fleet, cls), 1);
    }
    expect_in(fleet, "<title>allocated (healthy): 560</title>");
    expect_in(fleet, "<title>reclaimed (allocated on degraded cores): 40</title>");
    expect_in(fleet, "<title>free: 280</title>");
    expect_in(fleet, "<title>stranded (free, no shape fits): 20</title>");
    expect_in(fleet, "60% used");
    /* Segment widths are proportional: they add up to span * 915 / 1000. */
    double sum = 0;
    for (const char *p = fleet; (p = strstr(p, "<rect class=\"seg ")); p++) {
        const char *w = strstr(p, " width=\"");
        assert_non_null(w);
        sum += strtod(w + 8, NULL);
    }
    assert_true(sum > 510.0 * 0.915 - 0.5 && sum < 510.0 * 0.915 + 0.5);
    free(fleet);

    /* Pools: two rows; zero segments are not drawn (pool-a 5, pool-b 4). */
    char *pools = section(html, "<svg id=\"bars-pools\"", "</svg>");
    assert_int_equal(count(pools, "class=\"label\">pool-a</text>"), 1);
    assert_int_equal(count(pools, "class=\"label\">pool-b</text>"), 1);
    assert_int_equal(count(pools, "<rect class=\"seg "), 9);
    expect_in(pools, "75% used");
    expect_in(pools, "25% used");
    free(pools);

    char *kinds = section(html, "<svg id=\"bars-kinds\"", "</svg>");
    expect_in(kinds, ">performance</text>");
    expect_in(kinds, ">efficiency</text>");
    expect_in(kinds, "71% used"); /* 500 / 700 */
    free(kinds);
    /* One legend per chart. */
    assert_int_equal(count(html, "<div class=\"legend\">"), 3);
    free(html);
    json_decref(doc);
}

static void test_cli_report__html_trend(void **state)
{
    (void)state;
    json_t *doc = known_doc();
    char *html = render(ks_cli_report_html, doc);
    char *trend = section(html, "<svg id=\"trend\"", "</svg>");
    expect_in(trend, "class=\"label\">40</text>"); /* the y-axis maximum */
    const char *pts = strstr(trend, "<polyline class=\"trend-line\"");
    assert_non_null(pts);
    pts = strstr(pts, "points=\"");
    assert_non_null(pts);
    pts += 8;
    double x[16], y[16];
    size_t n = 0;
    while (*pts != '"' && n < 16) {
        char *end;
        x[n] = strtod(pts, &end);
        assert_true(end != pts && *end == ',');
        y[n] = strtod(end + 1, &end);
        n++;
        pts = end + (*end == ' ');
    }
    assert_int_equal(n, KS_DOC_HISTORY_POINTS);
    /* x spans the plot left to right; y: 0 reclaimed on the axis (180), the max at the top (10). */
    assert_true(x[0] > 39.9 && x[0] < 40.1);
    assert_true(x[n - 1] > 749.9 && x[n - 1] < 750.1);
    assert_true(y[0] > 179.9 && y[0] < 180.1);
    assert_true(y[n - 1] > 9.9 && y[n - 1] < 10.1);
    for (size_t i = 1; i < n; i++) {
        assert_true(x[i] > x[i - 1]);
        assert_true(y[i] < y[i - 1]); /* reclaimed rises in the document */
    }
    /* 20 of 40 reclaimed: half way up. */
    assert_true(y[2] > 94.9 && y[2] < 95.1);
    free(trend);
    free(html);
    json_decref(doc);
}

static void test_cli_report__html_heatmap(void **state)
{
    (void)state;
    json_t *doc = known_doc();
    char *html = render(ks_cli_report_html, doc);
    char *heat = section(html, "<svg id=\"heatmap\"", "</svg>");
    assert_int_equal(count(heat, "<rect class=\"cell\""), KS_DOC_N_DEFECTS * KS_DOC_N_HEAT_HOSTS);
    /* Row labels are the features, column labels the hosts (escaped). */
    expect_in(heat, ">avx512f</text>");
    expect_in(heat, ">aes</text>");
    expect_in(heat, ">avx2</text>");
    expect_in(heat, ">h-1</text>");
    expect_in(heat, ">h-2</text>");
    expect_in(heat, ">" KS_DOC_EVIL_HOST_ESCAPED "</text>");
    /* The hottest cell (aes on h-2, 4 CPUs) gets the full colour; 4 cells are empty. */
    assert_int_equal(count(heat, "fill=\"rgb(255,75,35)\"><title>4 CPUs</title>"), 1);
    assert_int_equal(count(heat, "fill=\"rgb(255,245,235)\"><title>0 CPUs</title>"), 4);
    expect_in(heat, "<title>3 CPUs</title>");
    free(heat);
    free(html);
    json_decref(doc);
}

static void test_cli_report__html_escaping(void **state)
{
    (void)state;
    json_t *doc = known_doc();
    char *html = render(ks_cli_report_html, doc);
    assert_null(strstr(html, KS_DOC_EVIL_HOST));
    assert_null(strstr(html, "<b>&"));
    assert_null(strstr(html, "<script>"));
    /* The host appears in the heatmap and in the hosts table, escaped both times. */
    assert_int_equal(count(html, KS_DOC_EVIL_HOST_ESCAPED), 2);
    expect_in(html, "<td>" KS_DOC_EVIL_HOST_ESCAPED "</td><td>200</td>");
    expect_in(html, "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>h-1</td><td>a&amp;b</td>");

    /* A feature name and a pool name carrying markup are escaped in every place. */
    json_t *feature =
        json_object_get(json_array_get(json_object_get(doc, "defects"), 0), "feature");
    json_string_set(feature, "</svg><img src=x>");
    json_t *pool = json_object_get(json_array_get(json_object_get(doc, "pools"), 0), "scope");
    json_string_set(pool, "p\"><i>");
    char *html2 = render(ks_cli_report_html, doc);
    assert_null(strstr(html2, "<img"));
    assert_null(strstr(html2, "<i>"));
    assert_int_equal(count(html2, "&lt;/svg&gt;&lt;img src=x&gt;"), 2); /* heatmap + table */
    assert_int_equal(count(html2, "p&quot;&gt;&lt;i&gt;"), 2);          /* bars + table */
    free(html2);
    free(html);
    json_decref(doc);
}

static void test_cli_report__html_empty_sections(void **state)
{
    (void)state;
    json_t *doc =
        json_pack("{s:I,s:{s:s,s:i,s:i,s:i},s:[],s:[],s:[],s:[],s:[],s:[]}", "generated_us",
                  (json_int_t)0, "fleet", "scope", "fleet", "total", 0, "allocated", 0, "free", 0,
                  "pools", "kinds", "hosts", "defects", "needs_migration", "history");
    assert_non_null(doc);
    char *html = render(ks_cli_report_html, doc);
    expect_in(html, "<p>Generated 1970-01-01 00:00:00 UTC.</p>");
    expect_in(html, "0 CPUs (0.0% of the fleet)");
    expect_in(html, "no capacity snapshots yet");
    expect_in(html, "no defective features reported");
    expect_in(html, "<p class=\"empty\" id=\"migrations\">none</p>");
    assert_null(strstr(html, "id=\"trend\""));
    assert_null(strstr(html, "id=\"heatmap\""));
    assert_null(strstr(html, "id=\"bars-pools\""));
    assert_null(strstr(html, "nan"));
    assert_null(strstr(html, "inf"));
    expect_in(html, "<svg id=\"bars-fleet\""); /* the fleet row exists, with no segments */
    free(html);
    json_decref(doc);

    /* Nothing at all (a broken server answer): still a complete page, no crash. */
    doc = json_object();
    html = render(ks_cli_report_html, doc);
    assert_true(strncmp(html, "<!DOCTYPE html>", 15) == 0);
    expect_in(html, "</body></html>\n");
    free(html);
    char *csv = render(ks_cli_report_csv, doc);
    assert_int_equal(strcmp(csv, "level,scope,total,allocated,free,degraded_usable,reclaimed,"
                                 "stranded,quarantined,offline,unschedulable,reserved,used_pct,"
                                 "reclaimed_pct\n"),
                     0);
    free(csv);
    json_decref(doc);

    /* One history point: a single x at the left axis, not a division by zero. */
    doc = known_doc();
    json_t *hist = json_object_get(doc, "history");
    while (json_array_size(hist) > 1)
        json_array_remove(hist, 1);
    html = render(ks_cli_report_html, doc);
    char *trend = section(html, "<svg id=\"trend\"", "</svg>");
    expect_in(trend, "points=\"40.0,180.0\"");
    free(trend);
    free(html);
    json_decref(doc);
}

/* ---- CSV ---- */

static void test_cli_report__csv_rows(void **state)
{
    (void)state;
    json_t *doc = known_doc();
    char *csv = render(ks_cli_report_csv, doc);
    static const char *const want[] = {
        "level,scope,total,allocated,free,degraded_usable,reclaimed,stranded,quarantined,offline,"
        "unschedulable,reserved,used_pct,reclaimed_pct",
        "fleet,fleet,1000,600,300,50,40,20,10,5,0,0,60.00,4.00",
        "pool,pool-a,400,300,80,30,25,10,4,0,0,0,75.00,6.25",
        "pool,pool-b,200,50,140,5,5,0,0,2,0,0,25.00,2.50",
        "kind,performance,700,500,170,45,38,12,8,3,0,0,71.43,5.43",
        "kind,efficiency,300,100,130,5,2,8,2,2,0,0,33.33,0.67",
        "host,h-1,500,350,140,30,30,10,6,0,0,0,70.00,6.00",
        "host,h-2,300,150,100,12,8,10,2,5,0,0,50.00,2.67",
    };
    const char *p = csv;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        if ((size_t)(nl - p) != strlen(want[i]) || strncmp(p, want[i], strlen(want[i])) != 0)
            fail_msg("CSV line %zu: got '%.*s', want '%s'", i, (int)(nl - p), p, want[i]);
        p = nl + 1;
    }
    /* The third host row, then nothing more: 1 header + 1 + 2 + 2 + 3 rows. */
    assert_int_equal(count(csv, "\n"), 9);
    assert_true(strstr(p, ",200,100,60,8,2,0,2,0,0,0,50.00,1.00\n") != NULL);
    free(csv);

    /* A zero-CPU fleet gives 0.00 percentages, never nan. */
    json_t *zero = json_pack("{s:{s:s,s:i}}", "fleet", "scope", "fleet", "total", 0);
    csv = render(ks_cli_report_csv, zero);
    assert_non_null(strstr(csv, "\nfleet,fleet,0,0,0,0,0,0,0,0,0,0,0.00,0.00\n"));
    free(csv);
    json_decref(zero);
    json_decref(doc);
}

/* ---- the report command's argument and error handling ---- */

static void test_cli_report__report_command_errors(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ks_cli cli = {.format = KS_OUT_TABLE, .server = "http://127.0.0.1:1", .out = stdout};
    ks_err err = {0};
    assert_int_equal(ks_cli_http_new(&cli.http, cli.server, "tok", 5000, &err), KS_OK);

    char a0[] = "report", a1[] = "--html", a2[] = "/nonexistent-ks-dir/x.html", a3[] = "--pdf";
    char *no_mode[] = {a0, NULL};
    usage_errors = 0;
    assert_int_equal(ks_cli_cmd_report(&cli, 1, no_mode), KS_CLI_USAGE);
    assert_int_equal(usage_errors, 1);
    char *bad_opt[] = {a0, a3, NULL};
    assert_int_equal(ks_cli_cmd_report(&cli, 2, bad_opt), KS_CLI_USAGE);
    assert_int_equal(usage_errors, 2);
    /* The fetch fails first (port 1 refuses): an API error, and no file is written. */
    char *html[] = {a0, a1, a2, NULL};
    assert_int_equal(ks_cli_cmd_report(&cli, 3, html), KS_CLI_API_ERROR);
    assert_int_equal(usage_errors, 2);
    assert_int_not_equal(access(a2, F_OK), 0);
    ks_cli_http_free(cli.http);
    curl_global_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_report__html_structure_and_kpis),
        cmocka_unit_test(test_cli_report__html_stacked_bars),
        cmocka_unit_test(test_cli_report__html_trend),
        cmocka_unit_test(test_cli_report__html_heatmap),
        cmocka_unit_test(test_cli_report__html_escaping),
        cmocka_unit_test(test_cli_report__html_empty_sections),
        cmocka_unit_test(test_cli_report__csv_rows),
        cmocka_unit_test(test_cli_report__report_command_errors),
    };
    return cmocka_run_group_tests_name("ks_cli_report", tests, NULL, NULL);
}
