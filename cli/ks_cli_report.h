/*
 * ks_cli_report.h - the capacity-utilization report: fetched as one document
 * from GET /v1/reports/capacity and rendered as a self-contained HTML page
 * (inline CSS and SVG, no external fetches), CSV or JSON.
 *
 * The document: {"generated_us", "fleet":{capacity}, "pools":[capacity],
 * "kinds":[capacity], "hosts":[capacity], "defects":[{"feature","cpus","hosts",
 * "by_host":{host:n}}], "needs_migration":[{"name","host","reason"}],
 * "history":[{"time_us", capacity fields}]} where a capacity object has "scope",
 * "total", "allocated", "free", "degraded_usable", "reclaimed", "stranded",
 * "quarantined", "offline".
 */
#ifndef KS_CLI_REPORT_H
#define KS_CLI_REPORT_H

#include <stdio.h>

#include <jansson.h>

void ks_cli_report_html(FILE *out, const json_t *doc);
void ks_cli_report_csv(FILE *out, const json_t *doc);

#endif
