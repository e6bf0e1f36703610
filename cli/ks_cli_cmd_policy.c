/*
 * ks_cli_cmd_policy.c - pools (migration pools with a common feature baseline)
 * and bans (fleet-wide feature bans).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "ks_cli.h"

static const ks_cli_column pool_columns[] = {
    {"NAME", "name"}, {"MEMBERS", "members"}, {"SELECTOR", "selector"}, {"CREATED_US", "created_us"},
};

static const ks_cli_column ban_columns[] = {
    {"ID", "id"}, {"FEATURES", "features"}, {"REASON", "reason"}, {"CREATED_US", "created_us"},
};

static const char pools_help[] =
    "usage: kintsugictl pools create NAME --hosts H1,H2,..\n"
    "       kintsugictl pools create NAME [--vendor V] [--model SUBSTR] [--feature F,..]\n"
    "       kintsugictl pools list\n"
    "       kintsugictl pools show NAME     (baseline and the members narrowing it most)\n"
    "       kintsugictl pools delete NAME\n";

static json_t *csv_to_array(const char *s)
{
    json_t *arr = json_array();
    while (arr && *s) {
        size_t n = strcspn(s, ",");
        if (n)
            json_array_append_new(arr, json_stringn(s, n));
        s += n + (s[n] == ',');
    }
    return arr;
}

static int simple_call(ks_cli *cli, const char *method, const char *prefix, const char *id,
                       const json_t *body, bool print)
{
    char path[1024];
    ks_err err = {0};
    json_t *doc = NULL;
    if (ks_cli_path(cli, path, sizeof(path), prefix, id, NULL, &err) != KS_OK ||
        ks_cli_http_call(cli->http, method, path, body, NULL, &doc, &err) != KS_OK)
        return ks_cli_fail(&err);
    if (print && !json_is_null(doc))
        ks_cli_print_object(cli->out, cli->format, doc);
    json_decref(doc);
    return KS_CLI_OK;
}

static int list_all(ks_cli *cli, const char *path, const ks_cli_column *cols, size_t n)
{
    ks_err err = {0};
    json_t *items = NULL;
    if (ks_cli_get_all(cli, path, &items, &err) != KS_OK)
        return ks_cli_fail(&err);
    ks_cli_print_list(cli->out, cli->format, items, cols, n);
    json_decref(items);
    return KS_CLI_OK;
}

static int create_pool(ks_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"hosts", required_argument, 0, 'h'},
                                         {"vendor", required_argument, 0, 'v'},
                                         {"model", required_argument, 0, 'm'},
                                         {"feature", required_argument, 0, 'f'},
                                         {0, 0, 0, 0}};
    json_t *body = json_object(), *selector = json_object();
    int c, rc = KS_CLI_USAGE;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'h')
            json_object_set_new(body, "hosts", csv_to_array(optarg));
        else if (c == 'v')
            json_object_set_new(selector, "vendor", json_string(optarg));
        else if (c == 'm')
            json_object_set_new(selector, "model", json_string(optarg));
        else if (c == 'f')
            json_object_set_new(selector, "required_features", csv_to_array(optarg));
        else {
            ks_cli_usage_error("pools create: unknown option '%s'", argv[optind - 1]);
            goto done;
        }
    }
    if (optind + 1 != argc) {
        ks_cli_usage_error("pools create: expected exactly one pool name");
        goto done;
    }
    bool has_hosts = json_object_get(body, "hosts") != NULL;
    if (has_hosts == (json_object_size(selector) > 0)) {
        ks_cli_usage_error("pools create: give either --hosts or a selector "
                           "(--vendor/--model/--feature)");
        goto done;
    }
    json_object_set_new(body, "name", json_string(argv[optind]));
    if (!has_hosts)
        json_object_set(body, "selector", selector);
    rc = simple_call(cli, "POST", "/v1/pools", NULL, body, true);
done:
    json_decref(body);
    json_decref(selector);
    return rc;
}

int ks_cli_cmd_pools(ks_cli *cli, int argc, char **argv)
{
    if (ks_cli_wants_help(argc, argv, pools_help))
        return KS_CLI_OK;
    if (argc < 2)
        return ks_cli_usage_error("pools: missing verb (create, list, show, delete)");
    const char *verb = argv[1];
    if (strcmp(verb, "create") == 0)
        return create_pool(cli, argc - 1, argv + 1);
    if (strcmp(verb, "list") == 0)
        return list_all(cli, "/v1/pools", pool_columns, sizeof(pool_columns) / sizeof(pool_columns[0]));
    if (argc != 3)
        return ks_cli_usage_error("pools %s: expected exactly one pool name", verb);
    if (strcmp(verb, "show") == 0)
        return simple_call(cli, "GET", "/v1/pools/", argv[2], NULL, true);
    if (strcmp(verb, "delete") == 0) {
        int rc = simple_call(cli, "DELETE", "/v1/pools/", argv[2], NULL, false);
        if (rc == KS_CLI_OK && cli->format == KS_OUT_TABLE)
            fprintf(cli->out, "pool '%s' deleted\n", argv[2]);
        return rc;
    }
    return ks_cli_usage_error("pools: unknown verb '%s'", verb);
}

static const char bans_help[] =
    "usage: kintsugictl bans add FEATURE[,FEATURE..] --reason TEXT\n"
    "       kintsugictl bans list\n"
    "       kintsugictl bans remove ID\n"
    "Adding a ban prints the VMs that saw the features; their plans get a new\n"
    "generation without them.\n";

int ks_cli_cmd_bans(ks_cli *cli, int argc, char **argv)
{
    if (ks_cli_wants_help(argc, argv, bans_help))
        return KS_CLI_OK;
    if (argc < 2)
        return ks_cli_usage_error("bans: missing verb (add, list, remove)");
    const char *verb = argv[1];
    if (strcmp(verb, "list") == 0)
        return list_all(cli, "/v1/policies/feature-bans", ban_columns,
                        sizeof(ban_columns) / sizeof(ban_columns[0]));
    if (strcmp(verb, "remove") == 0) {
        if (argc != 3)
            return ks_cli_usage_error("bans remove: expected exactly one ban id");
        int rc = simple_call(cli, "DELETE", "/v1/policies/feature-bans/", argv[2], NULL, false);
        if (rc == KS_CLI_OK && cli->format == KS_OUT_TABLE)
            fprintf(cli->out, "ban %s removed\n", argv[2]);
        return rc;
    }
    if (strcmp(verb, "add") != 0)
        return ks_cli_usage_error("bans: unknown verb '%s'", verb);
    const char *features = NULL, *reason = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
            reason = argv[++i];
        else if (argv[i][0] != '-' && !features)
            features = argv[i];
        else
            return ks_cli_usage_error("bans add: unexpected argument '%s'", argv[i]);
    }
    if (!features || !reason)
        return ks_cli_usage_error("bans add: need FEATURES and --reason");
    json_t *body = json_pack("{s:o,s:s}", "features", csv_to_array(features), "reason", reason);
    int rc = simple_call(cli, "POST", "/v1/policies/feature-bans", NULL, body, true);
    json_decref(body);
    return rc;
}
