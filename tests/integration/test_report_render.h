/*
 * test_report_render.h - a known capacity-report document (the shape of
 * GET /v1/reports/capacity, see cli/ks_cli_report.h) shared by the renderer's
 * unit test (tests/unit/test_ks_cli_report.c) and the headless-Chromium render
 * test (tests/integration/test_report_render.c).
 *
 * Numbers are chosen so that every bar segment is non-zero and percentages are
 * exact: fleet 1000 CPUs, 600 allocated (60%), 40 reclaimed (4%).  One host id
 * is hostile markup (`<b>&"x'`) to prove escaping; a VM needing migration has
 * a <script> name.  History has KS_DOC_HISTORY_POINTS snapshots whose reclaimed
 * counts rise 0 -> 40.
 */
#ifndef TEST_REPORT_RENDER_H
#define TEST_REPORT_RENDER_H

#define KS_DOC_GENERATED_STAMP "2026-11-27 04:00:00 UTC"
#define KS_DOC_HISTORY_POINTS 6
#define KS_DOC_N_DEFECTS 3
#define KS_DOC_N_HEAT_HOSTS 3 /* distinct hosts in the defects' by_host */
#define KS_DOC_EVIL_HOST "<b>&\"x'"
#define KS_DOC_EVIL_HOST_ESCAPED "&lt;b&gt;&amp;&quot;x&#39;"

static const char ks_report_doc_json[] =
    "{\"generated_us\": 1795752000000000,\n"
    " \"fleet\": {\"scope\": \"fleet\", \"total\": 1000, \"allocated\": 600, \"free\": 300,\n"
    "           \"degraded_usable\": 50, \"reclaimed\": 40, \"stranded\": 20,\n"
    "           \"quarantined\": 10, \"offline\": 5},\n"
    " \"pools\": [\n"
    "   {\"scope\": \"pool-a\", \"total\": 400, \"allocated\": 300, \"free\": 80, "
    "\"degraded_usable\": 30,\n"
    "    \"reclaimed\": 25, \"stranded\": 10, \"quarantined\": 4, \"offline\": 0},\n"
    "   {\"scope\": \"pool-b\", \"total\": 200, \"allocated\": 50, \"free\": 140, "
    "\"degraded_usable\": 5,\n"
    "    \"reclaimed\": 5, \"stranded\": 0, \"quarantined\": 0, \"offline\": 2}],\n"
    " \"kinds\": [\n"
    "   {\"scope\": \"performance\", \"total\": 700, \"allocated\": 500, \"free\": 170,\n"
    "    \"degraded_usable\": 45, \"reclaimed\": 38, \"stranded\": 12, \"quarantined\": 8, "
    "\"offline\": 3},\n"
    "   {\"scope\": \"efficiency\", \"total\": 300, \"allocated\": 100, \"free\": 130,\n"
    "    \"degraded_usable\": 5, \"reclaimed\": 2, \"stranded\": 8, \"quarantined\": 2, "
    "\"offline\": 2}],\n"
    " \"hosts\": [\n"
    "   {\"scope\": \"h-1\", \"total\": 500, \"allocated\": 350, \"free\": 140, "
    "\"degraded_usable\": 30,\n"
    "    \"reclaimed\": 30, \"stranded\": 10, \"quarantined\": 6, \"offline\": 0},\n"
    "   {\"scope\": \"h-2\", \"total\": 300, \"allocated\": 150, \"free\": 100, "
    "\"degraded_usable\": 12,\n"
    "    \"reclaimed\": 8, \"stranded\": 10, \"quarantined\": 2, \"offline\": 5},\n"
    "   {\"scope\": \"<b>&\\\"x'\", \"total\": 200, \"allocated\": 100, \"free\": 60,\n"
    "    \"degraded_usable\": 8, \"reclaimed\": 2, \"stranded\": 0, \"quarantined\": 2, "
    "\"offline\": 0}],\n"
    " \"defects\": [\n"
    "   {\"feature\": \"avx512f\", \"cpus\": 5, \"hosts\": 2, \"by_host\": {\"h-1\": 3, "
    "\"<b>&\\\"x'\": 2}},\n"
    "   {\"feature\": \"aes\", \"cpus\": 5, \"hosts\": 2, \"by_host\": {\"h-1\": 1, \"h-2\": 4}},\n"
    "   {\"feature\": \"avx2\", \"cpus\": 1, \"hosts\": 1, \"by_host\": {\"h-2\": 1}}],\n"
    " \"needs_migration\": [\n"
    "   {\"name\": \"vm-9\", \"host\": \"h-2\", \"reason\": \"defect on CPU 7 (avx2)\"},\n"
    "   {\"name\": \"<script>alert(1)</script>\", \"host\": \"h-1\", \"reason\": \"a&b\"}],\n"
    " \"history\": [\n"
    "   {\"time_us\": 1795700000000000, \"total\": 1000, \"allocated\": 400, \"reclaimed\": 0},\n"
    "   {\"time_us\": 1795710000000000, \"total\": 1000, \"allocated\": 450, \"reclaimed\": 10},\n"
    "   {\"time_us\": 1795720000000000, \"total\": 1000, \"allocated\": 500, \"reclaimed\": 20},\n"
    "   {\"time_us\": 1795730000000000, \"total\": 1000, \"allocated\": 520, \"reclaimed\": 25},\n"
    "   {\"time_us\": 1795740000000000, \"total\": 1000, \"allocated\": 580, \"reclaimed\": 30},\n"
    "   {\"time_us\": 1795750000000000, \"total\": 1000, \"allocated\": 600, \"reclaimed\": "
    "40}]}\n";

#endif
