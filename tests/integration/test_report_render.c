/*
 * test_report_render.c - the capacity report as a browser shows it: the HTML
 * that ks_cli_report_html() makes for the known document
 * (test_report_render.h) is loaded by headless Chromium, which must
 *   - build a DOM with the report's SVG charts (--dump-dom), and
 *   - paint a 1100x1400 screenshot that is a valid PNG and shows the charts
 *     (pixels of the bar and heatmap colours, not a blank page).
 * The PNG is decoded here (zlib inflate + the five row filters) to count pixels.
 * A missing chromium FAILS the test: scripts/deps.sh --test installs it.
 * Set KS_KEEP_RENDER=1 to keep the screenshot (its path is printed).
 */
#include <stdarg.h>

#include <jansson.h>
#include <zlib.h>

#include "ks_cli.h"
#include "ks_cli_report.h"
#include "test_cli_util.h"
#include "test_report_render.h"

#define CHROMIUM_TIMEOUT_MS 60000u

/* ks_cli_report.c also holds the `report` command, which calls these kintsugictl.c
 * helpers; this test only renders, so they just have to link. */
int ks_cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    return KS_CLI_USAGE;
}

int ks_cli_fail(const ks_err *err)
{
    fprintf(stderr, "%s\n", err->msg);
    return KS_CLI_API_ERROR;
}

int ks_cli_wants_help(int argc, char **argv, const char *help)
{
    (void)argc;
    (void)argv;
    (void)help;
    return 0;
}

ks_code ks_cli_query_add(ks_cli *cli, char *buf, size_t cap, const char *key, const char *value,
                         ks_err *err)
{
    (void)cli;
    (void)buf;
    (void)cap;
    (void)key;
    (void)value;
    return ks_err_set(err, KS_EUNSUPPORTED, "not used by this test");
}

static char tmp[512];

static const char *find_chromium(char *buf, size_t cap)
{
    const char *env = getenv("KS_CHROMIUM");
    static const char *const candidates[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser",
                                             "/usr/bin/google-chrome"};
    if (env && access(env, X_OK) == 0)
        return ks_test_path(buf, cap, "%s", env);
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (access(candidates[i], X_OK) == 0)
            return ks_test_path(buf, cap, "%s", candidates[i]);
    fail_msg("chromium not found (install it: scripts/deps.sh --test, or set KS_CHROMIUM)");
    return NULL;
}

/* Runs chromium headless on the page with one extra mode argument; a fresh profile
 * directory each time.  Returns the run (stdout = the dumped DOM for --dump-dom). */
static void run_chromium(cli_run *r, const char *mode_arg, const char *url, const char *profile)
{
    char bin[256], udd[700], home[700], xdg_cfg[800], xdg_cache[800];
    find_chromium(bin, sizeof(bin));
    ks_test_path(udd, sizeof(udd), "--user-data-dir=%s", profile);
    ks_test_path(home, sizeof(home), "HOME=%s", profile);
    ks_test_path(xdg_cfg, sizeof(xdg_cfg), "XDG_CONFIG_HOME=%s/.config", profile);
    ks_test_path(xdg_cache, sizeof(xdg_cache), "XDG_CACHE_HOME=%s/.cache", profile);
    assert_int_equal(mkdir(profile, 0700), 0);
    const char *argv[] = {bin,
                          "--headless",
                          "--no-sandbox",
                          "--disable-gpu",
                          "--disable-quic",
                          "--no-first-run",
                          "--disable-background-networking",
                          "--disable-component-update",
                          "--disable-sync",
                          "--disable-dev-shm-usage",
                          "--hide-scrollbars",
                          udd,
                          "--window-size=1100,1400",
                          mode_arg,
                          url,
                          NULL};
    const char *env[] = {home, xdg_cfg, xdg_cache, NULL};
    cli_exec(r, tmp, argv, env, NULL, CHROMIUM_TIMEOUT_MS);
    if (r->status != 0)
        fail_msg("chromium %s exited %d: %s", mode_arg, r->status, r->err);
}

static size_t count(const char *s, const char *sub)
{
    size_t n = 0, l = strlen(sub);
    for (const char *p = s; (p = strstr(p, sub)); p += l)
        n++;
    return n;
}

static void write_report(char *html_path, size_t cap, char *url, size_t url_cap)
{
    json_error_t je;
    json_t *doc = json_loads(ks_report_doc_json, 0, &je);
    assert_non_null(doc);
    ks_test_path(html_path, cap, "%s/report.html", tmp);
    FILE *f = fopen(html_path, "w");
    assert_non_null(f);
    ks_cli_report_html(f, doc);
    assert_int_equal(fclose(f), 0);
    json_decref(doc);
    ks_test_path(url, url_cap, "file://%s", html_path);
}

static void test_report_render__dom(void **state)
{
    (void)state;
    char html[700], url[800], profile[700];
    write_report(html, sizeof(html), url, sizeof(url));
    ks_test_path(profile, sizeof(profile), "%s/profile-dom", tmp);
    cli_run r;
    run_chromium(&r, "--dump-dom", url, profile);
    const char *dom = r.out;
    if (!strstr(dom, "</html>"))
        fail_msg("no DOM dumped; stderr: %s", r.err);
    /* The parsed document has every chart as an SVG element with its shapes. */
    static const char *const ids[] = {"<svg id=\"bars-fleet\"", "<svg id=\"bars-pools\"",
                                      "<svg id=\"bars-kinds\"", "<svg id=\"trend\"",
                                      "<svg id=\"heatmap\""};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        if (count(dom, ids[i]) != 1)
            fail_msg("DOM has %zu of %s", count(dom, ids[i]), ids[i]);
    assert_int_equal(count(dom, "<polyline class=\"trend-line\""), 1);
    assert_int_equal(count(dom, "<rect class=\"cell\""), KS_DOC_N_DEFECTS * KS_DOC_N_HEAT_HOSTS);
    assert_int_equal(count(dom, "<rect class=\"seg "), 6 + 9 + 12);
    assert_int_equal(count(dom, "<table class=\"capacity\">"), 4);
    assert_int_equal(count(dom, "<div class=\"kpi\""), 6);
    /* The hostile host and VM names stayed text: no <b> or <script> element appeared. */
    assert_null(strstr(dom, "<b>&amp;"));
    assert_null(strstr(dom, "<script"));
    assert_true(count(dom, "&lt;b&gt;&amp;\"x'") == 2);
    assert_non_null(strstr(dom, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_non_null(strstr(dom, "<title>Kintsugi capacity-utilization report</title>"));
    cli_run_free(&r);
}

/* ---- a minimal PNG reader: 8-bit RGB/RGBA, not interlaced (what Chromium writes) ---- */

typedef struct png_stats {
    uint32_t width, height;
    unsigned long non_white;
    unsigned long near[4]; /* pixels within +-6 of each probe colour */
} png_stats;

static const unsigned char probe_colours[4][3] = {
    {0x3b, 0x6e, 0xa5}, /* allocated (healthy) bar segment */
    {0xd4, 0xa0, 0x17}, /* reclaimed segment and trend line */
    {255, 75, 35},      /* hottest heatmap cell */
    {0x9c, 0xcc, 0x65}, /* free segment */
};

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Decodes the PNG in data[0..len) and counts pixels; fails the test on anything odd. */
static void png_decode_stats(const unsigned char *data, size_t len, png_stats *st)
{
    memset(st, 0, sizeof(*st));
    assert_true(len > 33);
    assert_memory_equal(data, "\x89PNG\r\n\x1a\n", 8);
    assert_memory_equal(data + 12, "IHDR", 4);
    st->width = be32(data + 16);
    st->height = be32(data + 20);
    unsigned depth = data[24], ctype = data[25], interlace = data[28];
    if (depth != 8 || (ctype != 2 && ctype != 6) || interlace != 0)
        fail_msg("unexpected PNG format: depth %u colour type %u interlace %u", depth, ctype,
                 interlace);
    assert_true(st->width > 0 && st->width <= 10000 && st->height > 0 && st->height <= 10000);
    size_t bpp = ctype == 2 ? 3 : 4, stride = st->width * bpp;
    size_t raw_len = st->height * (stride + 1);

    unsigned char *idat = malloc(len), *raw = malloc(raw_len);
    assert_non_null(idat);
    assert_non_null(raw);
    size_t idat_len = 0;
    for (size_t pos = 8; pos + 12 <= len;) {
        uint32_t n = be32(data + pos);
        assert_true(n <= len - pos - 12);
        if (memcmp(data + pos + 4, "IDAT", 4) == 0) {
            memcpy(idat + idat_len, data + pos + 8, n);
            idat_len += n;
        }
        pos += 12 + (size_t)n;
    }
    uLongf out_len = (uLongf)raw_len;
    assert_int_equal(uncompress(raw, &out_len, idat, (uLong)idat_len), Z_OK);
    assert_int_equal(out_len, raw_len);

    unsigned char *prev = calloc(1, stride);
    assert_non_null(prev);
    for (uint32_t y = 0; y < st->height; y++) {
        unsigned char filter = raw[y * (stride + 1)];
        unsigned char *line = raw + y * (stride + 1) + 1;
        assert_true(filter <= 4);
        for (size_t x = 0; x < stride; x++) {
            int a = x >= bpp ? line[x - bpp] : 0, b = prev[x], c = x >= bpp ? prev[x - bpp] : 0;
            int add = filter == 1   ? a
                      : filter == 2 ? b
                      : filter == 3 ? (a + b) / 2
                      : filter == 4 ? paeth(a, b, c)
                                    : 0;
            line[x] = (unsigned char)(line[x] + add);
        }
        for (size_t x = 0; x < stride; x += bpp) {
            const unsigned char *px = line + x;
            if (px[0] < 245 || px[1] < 245 || px[2] < 245)
                st->non_white++;
            for (int k = 0; k < 4; k++)
                if (abs(px[0] - probe_colours[k][0]) <= 6 &&
                    abs(px[1] - probe_colours[k][1]) <= 6 && abs(px[2] - probe_colours[k][2]) <= 6)
                    st->near[k]++;
        }
        memcpy(prev, line, stride);
    }
    free(prev);
    free(raw);
    free(idat);
}

static void test_report_render__screenshot(void **state)
{
    (void)state;
    char html[700], url[800], profile[700], png[700], shot_arg[800];
    write_report(html, sizeof(html), url, sizeof(url));
    ks_test_path(profile, sizeof(profile), "%s/profile-shot", tmp);
    ks_test_path(png, sizeof(png), "%s/report.png", tmp);
    ks_test_path(shot_arg, sizeof(shot_arg), "--screenshot=%s", png);
    cli_run r;
    run_chromium(&r, shot_arg, url, profile);
    cli_run_free(&r);

    size_t len = 0;
    char *data = ks_test_read_file(png, &len);
    if (!data)
        fail_msg("chromium wrote no screenshot at %s", png);
    /* A page of text and charts compresses to tens of KB; a blank one to a few. */
    if (len < 20000)
        fail_msg("screenshot is only %zu bytes: blank page?", len);
    png_stats st;
    png_decode_stats((const unsigned char *)data, len, &st);
    free(data);
    fprintf(stderr,
            "screenshot %ux%u: %lu non-white px, bar blue %lu, gold %lu, heat %lu, green %lu\n",
            st.width, st.height, st.non_white, st.near[0], st.near[1], st.near[2], st.near[3]);
    assert_int_equal(st.width, 1100);
    assert_int_equal(st.height, 1400);
    /* Not blank: text, tables and charts cover several percent of the page. */
    assert_true(st.non_white > 1100ul * 1400ul / 50);
    /* The charts were painted: the fleet bar's healthy-allocation blue (a 22 px high
     * bar, hundreds of px wide), the reclaimed gold (bars + trend line), the
     * hottest heatmap cell (20x20) and the free green. */
    assert_true(st.near[0] > 22ul * 200ul);
    assert_true(st.near[1] > 300);
    assert_true(st.near[2] >= 300);
    assert_true(st.near[3] > 22ul * 100ul);
    if (getenv("KS_KEEP_RENDER")) {
        char keep[700];
        ks_test_path(keep, sizeof(keep), "%s/kintsugi-report-render.png",
                     getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        rename(png, keep);
        fprintf(stderr, "kept %s and %s\n", keep, html);
    }
}

static int setup(void **state)
{
    (void)state;
    ks_test_mkdtemp(tmp, sizeof(tmp));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (!getenv("KS_KEEP_RENDER"))
        ks_test_rmdir(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_render__dom),
        cmocka_unit_test(test_report_render__screenshot),
    };
    return cmocka_run_group_tests_name("report_render", tests, setup, teardown);
}
