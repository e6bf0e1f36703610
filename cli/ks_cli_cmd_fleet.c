/*
 * ks_cli_cmd_fleet.c - read-mostly fleet commands: hosts, cpus, capacity, events.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ks_cli.h"
#include "ks_parse.h"

static const ks_cli_column host_columns[] = {
    {"ID", "id"},           {"HOSTNAME", "hostname"},  {"STATE", "state"},
    {"ARCH", "arch"},       {"MODEL", "model_name"},   {"CPUS", "n_cpus"},
    {"FREE", "counts.free"}, {"DEGRADED", "counts.cpus_by_state.degraded"},
    {"QUARANTINED", "counts.cpus_by_state.quarantined"}, {"VMS", "counts.vms"},
};

static const ks_cli_column cpu_columns[] = {
    {"CPU", "id"},        {"STATE", "state"},      {"KIND", "kind"},
    {"CORE", "core"},     {"NUMA", "numa_node"},   {"MAX_MHZ", "max_mhz"},
    {"VM", "vm"},         {"UNUSABLE", "unusable"},
};

static const ks_cli_column capacity_columns[] = {
    {"SCOPE", "scope"},         {"TOTAL", "total"},         {"ALLOCATED", "allocated"},
    {"FREE", "free"},           {"DEGRADED_USABLE", "degraded_usable"},
    {"RECLAIMED", "reclaimed"}, {"STRANDED", "stranded"},   {"QUARANTINED", "quarantined"},
    {"OFFLINE", "offline"},
};

static const ks_cli_column event_columns[] = {
    {"ID", "id"}, {"TIME_US", "time_us"}, {"TYPE", "type"}, {"HOST", "host"}, {"VM", "vm"},
    {"DETAIL", "detail"},
};

static const char hosts_help[] =
    "usage: kintsugictl hosts list [--state S] [--kind K] [--feature F] [--vendor V]\n"
    "       kintsugictl hosts show ID\n"
    "       kintsugictl hosts drain ID\n"
    "       kintsugictl hosts delete ID\n";

static int list_hosts(ks_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"state", required_argument, 0, 's'},
                                         {"kind", required_argument, 0, 'k'},
                                         {"feature", required_argument, 0, 'f'},
                                         {"vendor", required_argument, 0, 'v'},
                                         {0, 0, 0, 0}};
    char path[2048] = "/v1/hosts";
    ks_err err = {0};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *key = c == 's' ? "state" : c == 'k' ? "kind" : c == 'f' ? "feature"
                        : c == 'v' ? "vendor" : NULL;
        if (!key)
            return ks_cli_usage_error("hosts list: unknown option '%s'", argv[optind - 1]);
        if (ks_cli_query_add(cli, path, sizeof(path), key, optarg, &err) != KS_OK)
            return ks_cli_fail(&err);
    }
    if (optind < argc)
        return ks_cli_usage_error("hosts list: unexpected argument '%s'", argv[optind]);
    json_t *items = NULL;
    if (ks_cli_get_all(cli, path, &items, &err) != KS_OK)
        return ks_cli_fail(&err);
    ks_cli_print_list(cli->out, cli->format, items, host_columns,
                      sizeof(host_columns) / sizeof(host_columns[0]));
    json_decref(items);
    return KS_CLI_OK;
}

/* One call on /v1/<prefix>/<id><suffix>; prints the answer as an object. */
static int call_one(ks_cli *cli, const char *method, const char *prefix, const char *id,
                    const char *suffix, bool print)
{
    char path[1024];
    ks_err err = {0};
    json_t *doc = NULL;
    if (ks_cli_path(cli, path, sizeof(path), prefix, id, suffix, &err) != KS_OK ||
        ks_cli_http_call(cli->http, method, path, NULL, NULL, &doc, &err) != KS_OK)
        return ks_cli_fail(&err);
    if (print && !json_is_null(doc))
        ks_cli_print_object(cli->out, cli->format, doc);
    json_decref(doc);
    return KS_CLI_OK;
}

int ks_cli_cmd_hosts(ks_cli *cli, int argc, char **argv)
{
    if (ks_cli_wants_help(argc, argv, hosts_help))
        return KS_CLI_OK;
    if (argc < 2)
        return ks_cli_usage_error("hosts: missing verb (list, show, drain, delete)");
    const char *verb = argv[1];
    if (strcmp(verb, "list") == 0)
        return list_hosts(cli, argc - 1, argv + 1);
    if (argc != 3)
        return ks_cli_usage_error("hosts %s: expected exactly one host id", verb);
    if (strcmp(verb, "show") == 0)
        return call_one(cli, "GET", "/v1/hosts/", argv[2], NULL, true);
    if (strcmp(verb, "drain") == 0)
        return call_one(cli, "POST", "/v1/hosts/", argv[2], "/drain", true);
    if (strcmp(verb, "delete") == 0) {
        int rc = call_one(cli, "DELETE", "/v1/hosts/", argv[2], NULL, false);
        if (rc == KS_CLI_OK && cli->format == KS_OUT_TABLE)
            fprintf(cli->out, "host '%s' deleted\n", argv[2]);
        return rc;
    }
    return ks_cli_usage_error("hosts: unknown verb '%s'", verb);
}

static const char cpus_help[] = "usage: kintsugictl cpus list --host H [--state online|degraded|"
                                "quarantined|offline]\n";

int ks_cli_cmd_cpus(ks_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"host", required_argument, 0, 'H'},
                                         {"state", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    if (ks_cli_wants_help(argc, argv, cpus_help))
        return KS_CLI_OK;
    if (argc < 2 || strcmp(argv[1], "list") != 0)
        return ks_cli_usage_error("cpus: expected 'cpus list --host H'");
    const char *host = NULL, *state = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        if (c == 'H')
            host = optarg;
        else if (c == 's')
            state = optarg;
        else
            return ks_cli_usage_error("cpus list: unknown option '%s'", argv[optind]);
    }
    if (!host)
        return ks_cli_usage_error("cpus list: --host is required");
    char path[1024];
    ks_err err = {0};
    json_t *items = NULL;
    if (ks_cli_path(cli, path, sizeof(path), "/v1/hosts/", host, "/cpus", &err) != KS_OK ||
        ks_cli_query_add(cli, path, sizeof(path), "state", state, &err) != KS_OK ||
        ks_cli_get_all(cli, path, &items, &err) != KS_OK)
        return ks_cli_fail(&err);
    ks_cli_print_list(cli->out, cli->format, items, cpu_columns,
                      sizeof(cpu_columns) / sizeof(cpu_columns[0]));
    json_decref(items);
    return KS_CLI_OK;
}

static const char capacity_help[] = "usage: kintsugictl capacity [--by fleet|pool|host|kind]\n";

int ks_cli_cmd_capacity(ks_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"by", required_argument, 0, 'b'}, {0, 0, 0, 0}};
    if (ks_cli_wants_help(argc, argv, capacity_help))
        return KS_CLI_OK;
    const char *by = "fleet";
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c != 'b')
            return ks_cli_usage_error("capacity: unknown option '%s'", argv[optind - 1]);
        by = optarg;
    }
    if (optind < argc)
        return ks_cli_usage_error("capacity: unexpected argument '%s'", argv[optind]);
    if (strcmp(by, "fleet") && strcmp(by, "pool") && strcmp(by, "host") && strcmp(by, "kind"))
        return ks_cli_usage_error("capacity: --by takes fleet, pool, host or kind, not '%s'", by);
    char path[256] = "/v1/capacity";
    ks_err err = {0};
    json_t *doc = NULL;
    if (ks_cli_query_add(cli, path, sizeof(path), "by", by, &err) != KS_OK ||
        ks_cli_http_call(cli->http, "GET", path, NULL, NULL, &doc, &err) != KS_OK)
        return ks_cli_fail(&err);
    json_t *items = json_object_get(doc, "items");
    if (cli->format == KS_OUT_TABLE || cli->format == KS_OUT_CSV)
        ks_cli_print_list(cli->out, cli->format, items ? items : doc, capacity_columns,
                          sizeof(capacity_columns) / sizeof(capacity_columns[0]));
    else
        ks_cli_print_object(cli->out, cli->format, doc);
    json_decref(doc);
    return KS_CLI_OK;
}

static const char events_help[] =
    "usage: kintsugictl events [--since ID] [--limit N] [--follow [--interval SEC]]\n"
    "  --follow keeps polling for new events until interrupted.\n";

int ks_cli_cmd_events(ks_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"since", required_argument, 0, 's'},
                                         {"limit", required_argument, 0, 'l'},
                                         {"follow", no_argument, 0, 'f'},
                                         {"interval", required_argument, 0, 'i'},
                                         {0, 0, 0, 0}};
    if (ks_cli_wants_help(argc, argv, events_help))
        return KS_CLI_OK;
    uint64_t since = 0, limit = 100, interval = 2;
    bool follow = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        ks_err err = {0};
        ks_code rc = KS_OK;
        if (c == 's')
            rc = ks_parse_u64(&since, optarg, 0, INT64_MAX, "--since", &err);
        else if (c == 'l')
            rc = ks_parse_u64(&limit, optarg, 1, 10000, "--limit", &err);
        else if (c == 'i')
            rc = ks_parse_u64(&interval, optarg, 1, 3600, "--interval", &err);
        else if (c == 'f')
            follow = true;
        else
            return ks_cli_usage_error("events: unknown option '%s'", argv[optind - 1]);
        if (rc != KS_OK)
            return ks_cli_usage_error("events: %s", err.msg);
    }
    bool header_done = false;
    for (;;) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/events?since=%llu&limit=%llu",
                 (unsigned long long)since, (unsigned long long)limit);
        ks_err err = {0};
        json_t *doc = NULL;
        if (ks_cli_http_call(cli->http, "GET", path, NULL, NULL, &doc, &err) != KS_OK)
            return ks_cli_fail(&err);
        json_t *items = json_object_get(doc, "items");
        size_t n = json_array_size(items);
        if (cli->format == KS_OUT_JSON && follow) {
            /* One JSON object per line, so a consumer can stream it. */
            for (size_t i = 0; i < n; i++) {
                json_dumpf(json_array_get(items, i), cli->out, JSON_COMPACT);
                fputc('\n', cli->out);
            }
        } else if (n > 0 || !header_done) {
            ks_cli_print_rows(cli->out, cli->format, items ? items : doc, event_columns,
                              sizeof(event_columns) / sizeof(event_columns[0]), !header_done);
            header_done = true;
        }
        if (n > 0)
            since = (uint64_t)json_integer_value(json_object_get(json_array_get(items, n - 1), "id"));
        json_decref(doc);
        fflush(cli->out);
        if (!follow)
            return KS_CLI_OK;
        if (n == limit)
            continue;
        sleep((unsigned)interval);
    }
}
