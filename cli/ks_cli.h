/*
 * ks_cli.h - shared state of one kintsugictl invocation and the command
 * entry points (one file per resource group).
 *
 * Exit codes: KS_CLI_OK 0, KS_CLI_API_ERROR 1 (the server or the network said
 * no: one line on stderr), KS_CLI_USAGE 2 (bad command line or input file).
 */
#ifndef KS_CLI_H
#define KS_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "ks_cli_http.h"
#include "ks_cli_output.h"

enum { KS_CLI_OK = 0, KS_CLI_API_ERROR = 1, KS_CLI_USAGE = 2 };

typedef struct ks_cli {
    ks_cli_http *http;
    ks_cli_format format;
    const char *server;
    FILE *out;
} ks_cli;

/* Each takes argv with argv[0] = the verb's group ("hosts") and returns the exit code. */
int ks_cli_cmd_hosts(ks_cli *cli, int argc, char **argv);
int ks_cli_cmd_cpus(ks_cli *cli, int argc, char **argv);
int ks_cli_cmd_vms(ks_cli *cli, int argc, char **argv);
int ks_cli_cmd_pools(ks_cli *cli, int argc, char **argv);
int ks_cli_cmd_bans(ks_cli *cli, int argc, char **argv);
int ks_cli_cmd_capacity(ks_cli *cli, int argc, char **argv);
int ks_cli_cmd_events(ks_cli *cli, int argc, char **argv);
int ks_cli_cmd_report(ks_cli *cli, int argc, char **argv);

/* Prints "kintsugictl: <msg>" and returns KS_CLI_API_ERROR (or USAGE for KS_EINVAL
 * raised locally before any request). */
int ks_cli_fail(const ks_err *err);
/* Prints a usage error and returns KS_CLI_USAGE. */
int ks_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* GET every page of a list endpoint (following next_cursor) into one array
 * (new reference in *out).  `path` may already contain a query string. */
ks_code ks_cli_get_all(ks_cli *cli, const char *path, json_t **out, ks_err *err);

/* Builds "/v1/<a>/<escaped b><suffix>" into buf.  KS_EINVAL when too long. */
ks_code ks_cli_path(ks_cli *cli, char *buf, size_t cap, const char *prefix, const char *id,
                    const char *suffix, ks_err *err);

/* Appends "&key=value" (or "?key=value" for the first) with value escaped. */
ks_code ks_cli_query_add(ks_cli *cli, char *buf, size_t cap, const char *key, const char *value,
                         ks_err *err);

/* True when argv holds -h/--help; prints `help` to stdout. */
int ks_cli_wants_help(int argc, char **argv, const char *help);

#endif
