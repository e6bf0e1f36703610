/*
 * ks_cli_cmd_vms.c - vms create|list|show|delete.  `create` builds the
 * POST /v1/vms body from flags, or sends a JSON file as is (-f vm.json; "-" reads
 * stdin), so that everything the API accepts can be expressed.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "ks_cli.h"
#include "ks_parse.h"

static const ks_cli_column vm_columns[] = {
    {"NAME", "name"},         {"HOST", "host"},             {"STATE", "state"},
    {"VCPUS", "vcpus"},       {"GEN", "generation"},        {"APPLIED", "applied_generation"},
    {"POOL", "pool"},         {"ERROR", "apply_error"},
};

static const char vms_help[] =
    "usage: kintsugictl vms create NAME [--vcpus N | --performance N --efficiency M]\n"
    "                              [--memory MIB] [--require F,..] [--forbid F,..]\n"
    "                              [--pool P] [--host H] [--placement pack|spread]\n"
    "                              [--numa strict|preferred] [--smt allow|isolate]\n"
    "                              [--anti-affinity GROUP] [--min-mhz N] [--pmu]\n"
    "                              [--idempotency-key KEY]\n"
    "       kintsugictl vms create -f vm.json   (the POST /v1/vms body; - for stdin)\n"
    "       kintsugictl vms list [--host H] [--state S] [--pool P]\n"
    "       kintsugictl vms show NAME\n"
    "       kintsugictl vms delete NAME [--if-match ETAG]\n"
    "Features are catalogue names or groups (avx512, aes, amx, ...), comma-separated.\n";

/* "a,b,c" -> ["a","b","c"] (empty items are a usage error). */
static json_t *split_list(const char *s)
{
    json_t *arr = json_array();
    const char *p = s;
    while (arr && *p) {
        size_t n = strcspn(p, ",");
        if (n == 0) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, json_stringn(p, n));
        p += n + (p[n] == ',');
    }
    return arr;
}

static int parse_count(const char *s, const char *what, json_int_t *out)
{
    uint64_t v;
    ks_err err = {0};
    if (ks_parse_u64(&v, s, 0, 1000000, what, &err) != KS_OK) {
        ks_cli_usage_error("vms create: %s", err.msg);
        return -1;
    }
    *out = (json_int_t)v;
    return 0;
}

static json_t *load_body_file(const char *path)
{
    json_error_t jerr;
    json_t *doc = strcmp(path, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
                                         : json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        ks_cli_usage_error("cannot read '%s': %s (line %d, column %d)", path, jerr.text,
                           jerr.line, jerr.column);
    return doc;
}

static int create_vm(ks_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, 0, 'f'},        {"vcpus", required_argument, 0, 'n'},
        {"performance", required_argument, 0, 'P'}, {"efficiency", required_argument, 0, 'E'},
        {"memory", required_argument, 0, 'm'},      {"require", required_argument, 0, 'r'},
        {"forbid", required_argument, 0, 'x'},      {"pool", required_argument, 0, 'p'},
        {"host", required_argument, 0, 'H'},        {"placement", required_argument, 0, 'l'},
        {"numa", required_argument, 0, 'N'},        {"smt", required_argument, 0, 's'},
        {"anti-affinity", required_argument, 0, 'a'}, {"min-mhz", required_argument, 0, 'z'},
        {"pmu", no_argument, 0, 'u'},               {"idempotency-key", required_argument, 0, 'k'},
        {0, 0, 0, 0}};
    json_t *body = json_object(), *file_body = NULL;
    json_int_t n = 0, perf = -1, eff = -1;
    const char *idem = NULL;
    int c, rc = KS_CLI_USAGE;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "f:", opts, NULL)) != -1) {
        json_int_t v;
        json_t *list;
        switch (c) {
        case 'f':
            json_decref(file_body);
            if (!(file_body = load_body_file(optarg)))
                goto done;
            break;
        case 'n':
            if (parse_count(optarg, "--vcpus", &n) != 0)
                goto done;
            break;
        case 'P':
            if (parse_count(optarg, "--performance", &perf) != 0)
                goto done;
            break;
        case 'E':
            if (parse_count(optarg, "--efficiency", &eff) != 0)
                goto done;
            break;
        case 'm':
        case 'z':
            if (parse_count(optarg, c == 'm' ? "--memory" : "--min-mhz", &v) != 0)
                goto done;
            json_object_set_new(body, c == 'm' ? "memory_mib" : "min_mhz", json_integer(v));
            break;
        case 'r':
        case 'x':
            if (!(list = split_list(optarg))) {
                ks_cli_usage_error("vms create: bad feature list '%s'", optarg);
                goto done;
            }
            json_object_set_new(body, c == 'r' ? "required_features" : "forbidden_features", list);
            break;
        case 'p':
            json_object_set_new(body, "pool", json_string(optarg));
            break;
        case 'H':
            json_object_set_new(body, "host", json_string(optarg));
            break;
        case 'l':
            json_object_set_new(body, "placement", json_string(optarg));
            break;
        case 'N':
            json_object_set_new(body, "numa", json_string(optarg));
            break;
        case 's':
            json_object_set_new(body, "smt", json_string(optarg));
            break;
        case 'a':
            json_object_set_new(body, "anti_affinity_group", json_string(optarg));
            break;
        case 'u':
            json_object_set_new(body, "pmu", json_pack("{s:b}", "enabled", 1));
            break;
        case 'k':
            idem = optarg;
            break;
        default:
            ks_cli_usage_error("vms create: unknown option '%s'", argv[optind - 1]);
            goto done;
        }
    }
    if (file_body) {
        if (optind < argc || json_object_size(body) || n || perf >= 0 || eff >= 0) {
            ks_cli_usage_error("vms create: -f takes the whole body; give no other flags");
            goto done;
        }
        json_decref(body);
        body = file_body;
        file_body = NULL;
    } else {
        if (optind + 1 != argc) {
            ks_cli_usage_error("vms create: expected exactly one VM name");
            goto done;
        }
        json_object_set_new(body, "name", json_string(argv[optind]));
        if (perf >= 0 || eff >= 0) {
            if (n) {
                ks_cli_usage_error("vms create: use --vcpus or --performance/--efficiency");
                goto done;
            }
            json_object_set_new(body, "vcpus", json_pack("{s:I,s:I}", "performance",
                                                          perf < 0 ? 0 : perf, "efficiency",
                                                          eff < 0 ? 0 : eff));
        } else {
            json_object_set_new(body, "vcpus", json_integer(n ? n : 1));
        }
    }
    char header[300];
    if (idem)
        snprintf(header, sizeof(header), "Idempotency-Key: %s", idem);
    ks_err err = {0};
    json_t *doc = NULL;
    if (ks_cli_http_call(cli->http, "POST", "/v1/vms", body, idem ? header : NULL, &doc, &err) !=
        KS_OK) {
        rc = ks_cli_fail(&err);
        goto done;
    }
    ks_cli_print_object(cli->out, cli->format, doc);
    json_decref(doc);
    rc = KS_CLI_OK;
done:
    json_decref(body);
    json_decref(file_body);
    return rc;
}

static int list_vms(ks_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"host", required_argument, 0, 'H'},
                                         {"state", required_argument, 0, 's'},
                                         {"pool", required_argument, 0, 'p'},
                                         {0, 0, 0, 0}};
    char path[2048] = "/v1/vms";
    ks_err err = {0};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *key = c == 'H' ? "host" : c == 's' ? "state" : c == 'p' ? "pool" : NULL;
        if (!key)
            return ks_cli_usage_error("vms list: unknown option '%s'", argv[optind - 1]);
        if (ks_cli_query_add(cli, path, sizeof(path), key, optarg, &err) != KS_OK)
            return ks_cli_fail(&err);
    }
    if (optind < argc)
        return ks_cli_usage_error("vms list: unexpected argument '%s'", argv[optind]);
    json_t *items = NULL;
    if (ks_cli_get_all(cli, path, &items, &err) != KS_OK)
        return ks_cli_fail(&err);
    ks_cli_print_list(cli->out, cli->format, items, vm_columns,
                      sizeof(vm_columns) / sizeof(vm_columns[0]));
    json_decref(items);
    return KS_CLI_OK;
}

int ks_cli_cmd_vms(ks_cli *cli, int argc, char **argv)
{
    if (ks_cli_wants_help(argc, argv, vms_help))
        return KS_CLI_OK;
    if (argc < 2)
        return ks_cli_usage_error("vms: missing verb (create, list, show, delete)");
    const char *verb = argv[1];
    if (strcmp(verb, "create") == 0)
        return create_vm(cli, argc - 1, argv + 1);
    if (strcmp(verb, "list") == 0)
        return list_vms(cli, argc - 1, argv + 1);
    const char *if_match = NULL;
    if (strcmp(verb, "delete") == 0 && argc == 5 && strcmp(argv[3], "--if-match") == 0)
        if_match = argv[4];
    else if (argc != 3)
        return ks_cli_usage_error("vms %s: expected exactly one VM name", verb);
    bool is_show = strcmp(verb, "show") == 0;
    if (!is_show && strcmp(verb, "delete") != 0)
        return ks_cli_usage_error("vms: unknown verb '%s'", verb);
    char path[1024], header[300];
    ks_err err = {0};
    json_t *doc = NULL;
    if (if_match)
        snprintf(header, sizeof(header), "If-Match: %s", if_match);
    if (ks_cli_path(cli, path, sizeof(path), "/v1/vms/", argv[2], NULL, &err) != KS_OK ||
        ks_cli_http_call(cli->http, is_show ? "GET" : "DELETE", path, NULL,
                         if_match ? header : NULL, &doc, &err) != KS_OK)
        return ks_cli_fail(&err);
    if (is_show)
        ks_cli_print_object(cli->out, cli->format, doc);
    else if (cli->format == KS_OUT_TABLE)
        fprintf(cli->out, "vm '%s' deleted\n", argv[2]);
    json_decref(doc);
    return KS_CLI_OK;
}
