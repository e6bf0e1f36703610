/*
 * kintsugictl.c - the operator and control-plane CLI over kintsugid's REST API:
 * global options, configuration sources and dispatch.
 *
 * Settings come from, later overriding earlier: the config file
 * ($KINTSUGI_CONFIG or ~/.config/kintsugi/kintsugictl.conf, lines "key = value"
 * for server, token, output), the environment (KINTSUGI_SERVER,
 * KINTSUGI_TOKEN), then the command line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ks_cli.h"
#include "ks_parse.h"

#define KS_CLI_DEFAULT_SERVER "http://127.0.0.1:7420"

static const char usage_text[] =
    "usage: kintsugictl [global options] <command> [args]\n"
    "\n"
    "Talks to kintsugid, the Kintsugi fleet CPU scheduler.\n"
    "\n"
    "global options:\n"
    "  --server URL      kintsugid base URL (env KINTSUGI_SERVER, default " KS_CLI_DEFAULT_SERVER ")\n"
    "  --token TOKEN     bearer token (env KINTSUGI_TOKEN)\n"
    "  --config FILE     config file (env KINTSUGI_CONFIG, default ~/.config/kintsugi/kintsugictl.conf)\n"
    "  -o, --output FMT  table (default), json, yaml or csv\n"
    "  --timeout SEC     request timeout (default 30)\n"
    "  --version, --help\n"
    "\n"
    "commands:\n"
    "  hosts list|show|drain|delete      hosts and their state\n"
    "  cpus list --host H [--state S]    logical CPUs of a host, usable features, defects\n"
    "  vms create|list|show|delete       place and inspect VMs (create = place)\n"
    "  pools create|list|show|delete     migration pools and their feature baseline\n"
    "  bans add|list|remove              fleet-wide feature bans\n"
    "  capacity [--by fleet|pool|host|kind]\n"
    "  events [--since ID] [--follow]\n"
    "  report --html FILE | --csv FILE | --json   capacity-utilization report\n"
    "\n"
    "Run 'kintsugictl <command> --help' for a command's options.\n"
    "Exit status: 0 ok, 1 the server (or network) refused, 2 usage error.\n";

int ks_cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kintsugictl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (try --help)\n", stderr);
    va_end(ap);
    return KS_CLI_USAGE;
}

int ks_cli_fail(const ks_err *err)
{
    fprintf(stderr, "kintsugictl: %s\n", err->msg[0] ? err->msg : ks_code_str(err->code));
    /* Answers from the server carry their slug in err->field; a KS_EINVAL raised
     * here, before any request (a value too long for a path), is a usage error. */
    return err->code == KS_EINVAL && !err->field[0] ? KS_CLI_USAGE : KS_CLI_API_ERROR;
}

int ks_cli_wants_help(int argc, char **argv, const char *help)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(help, stdout);
            return 1;
        }
    }
    return 0;
}

ks_code ks_cli_path(ks_cli *cli, char *buf, size_t cap, const char *prefix, const char *id,
                    const char *suffix, ks_err *err)
{
    int n = snprintf(buf, cap, "%s", prefix);
    if (n < 0 || (size_t)n >= cap)
        return ks_err_set(err, KS_EINVAL, "path too long");
    if (id) {
        ks_code rc = ks_cli_http_escape(cli->http, id, buf, cap, err);
        if (rc != KS_OK)
            return rc;
    }
    if (suffix) {
        size_t used = strlen(buf);
        if (used + strlen(suffix) + 1 > cap)
            return ks_err_set(err, KS_EINVAL, "path too long");
        memcpy(buf + used, suffix, strlen(suffix) + 1);
    }
    return KS_OK;
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

ks_code ks_cli_get_all(ks_cli *cli, const char *path, json_t **out, ks_err *err)
{
    json_t *all = json_array();
    char *cursor = NULL;
    ks_code rc = KS_OK;
    if (!all)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    for (int page = 0; page < 100000; page++) {
        char url[2048];
        snprintf(url, sizeof(url), "%s", path);
        if (cursor && (rc = ks_cli_query_add(cli, url, sizeof(url), "cursor", cursor, err)) != KS_OK)
            break;
        json_t *doc = NULL;
        rc = ks_cli_http_call(cli->http, "GET", url, NULL, NULL, &doc, err);
        if (rc != KS_OK)
            break;
        json_t *items = json_object_get(doc, "items");
        if (json_is_array(items))
            json_array_extend(all, items);
        else if (json_is_array(doc))
            json_array_extend(all, doc);
        const char *next = json_string_value(json_object_get(doc, "next_cursor"));
        free(cursor);
        cursor = next && next[0] ? strdup(next) : NULL;
        json_decref(doc);
        if (!cursor)
            break;
    }
    free(cursor);
    if (rc != KS_OK) {
        json_decref(all);
        return rc;
    }
    *out = all;
    return KS_OK;
}

/* Reads "key = value" lines; unknown keys are an error so typos are not ignored. */
static int load_config(const char *path, bool must_exist, char **server, char **token,
                       char **output)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!must_exist && errno == ENOENT)
            return 0;
        fprintf(stderr, "kintsugictl: cannot read config '%s': %s\n", path,
                errno == ENOENT ? "no such file" : "permission denied or I/O error");
        return -1;
    }
    char line[1024];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *p = line + strspn(line, " \t");
        if (*p == '#' || *p == '\n' || *p == '\0')
            continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            fprintf(stderr, "kintsugictl: %s:%d: expected 'key = value'\n", path, lineno);
            rc = -1;
            break;
        }
        char *kend = eq;
        while (kend > p && (kend[-1] == ' ' || kend[-1] == '\t'))
            kend--;
        *kend = '\0';
        char *val = eq + 1 + strspn(eq + 1, " \t");
        val[strcspn(val, "\r\n")] = '\0';
        char **slot = strcmp(p, "server") == 0 ? server
                    : strcmp(p, "token") == 0 ? token
                    : strcmp(p, "output") == 0 ? output : NULL;
        if (!slot) {
            fprintf(stderr, "kintsugictl: %s:%d: unknown key '%s'\n", path, lineno, p);
            rc = -1;
            break;
        }
        free(*slot);
        *slot = strdup(val);
    }
    fclose(f);
    return rc;
}

static void replace(char **slot, const char *value)
{
    if (!value)
        return;
    free(*slot);
    *slot = strdup(value);
}

typedef int (*command_fn)(ks_cli *cli, int argc, char **argv);

static const struct {
    const char *name;
    command_fn fn;
} commands[] = {
    {"hosts", ks_cli_cmd_hosts},       {"cpus", ks_cli_cmd_cpus},
    {"vms", ks_cli_cmd_vms},           {"pools", ks_cli_cmd_pools},
    {"bans", ks_cli_cmd_bans},         {"capacity", ks_cli_cmd_capacity},
    {"events", ks_cli_cmd_events},     {"report", ks_cli_cmd_report},
};

int main(int argc, char **argv)
{
    char *server = NULL, *token = NULL, *output = NULL, *config = NULL;
    long timeout_s = 30;
    int i = 1, status = KS_CLI_USAGE;
    const char *config_arg = NULL, *server_arg = NULL, *token_arg = NULL, *output_arg = NULL;

    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return KS_CLI_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("kintsugictl %s\n", KS_VERSION);
            return KS_CLI_OK;
        }
        const char **slot = strcmp(a, "--server") == 0 ? &server_arg
                          : strcmp(a, "--token") == 0 ? &token_arg
                          : strcmp(a, "--config") == 0 ? &config_arg
                          : (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) ? &output_arg
                          : NULL;
        if (slot) {
            if (!next)
                return ks_cli_usage_error("option '%s' needs a value", a);
            *slot = next;
            i++;
        } else if (strcmp(a, "--timeout") == 0) {
            uint64_t v;
            if (ks_parse_u64(&v, next, 1, 3600, "--timeout", NULL) != KS_OK)
                return ks_cli_usage_error("--timeout needs seconds between 1 and 3600");
            timeout_s = (long)v;
            i++;
        } else {
            return ks_cli_usage_error("unknown option '%s'", a);
        }
    }
    if (i >= argc)
        return ks_cli_usage_error("no command given");

    /* Config file, then environment, then flags. */
    const char *cfg_env = getenv("KINTSUGI_CONFIG");
    const char *home = getenv("HOME");
    if (config_arg || cfg_env) {
        config = strdup(config_arg ? config_arg : cfg_env);
    } else if (home) {
        size_t cap = strlen(home) + 64;
        config = malloc(cap);
        if (config)
            snprintf(config, cap, "%s/.config/kintsugi/kintsugictl.conf", home);
    }
    if (config && load_config(config, config_arg || cfg_env, &server, &token, &output) != 0)
        goto done;
    replace(&server, getenv("KINTSUGI_SERVER"));
    replace(&token, getenv("KINTSUGI_TOKEN"));
    replace(&server, server_arg);
    replace(&token, token_arg);
    replace(&output, output_arg);
    if (!server)
        server = strdup(KS_CLI_DEFAULT_SERVER);

    ks_cli cli = {.format = KS_OUT_TABLE, .server = server, .out = stdout};
    if (output) {
        int f = ks_cli_format_from_str(output);
        if (f < 0) {
            status = ks_cli_usage_error("unknown output format '%s' (table, json, yaml, csv)", output);
            goto done;
        }
        cli.format = (ks_cli_format)f;
    }
    command_fn fn = NULL;
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
        if (strcmp(argv[i], commands[c].name) == 0)
            fn = commands[c].fn;
    if (!fn) {
        status = ks_cli_usage_error("unknown command '%s'", argv[i]);
        goto done;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ks_err err = {0};
    if (ks_cli_http_new(&cli.http, server, token, timeout_s * 1000, &err) != KS_OK) {
        status = ks_cli_fail(&err);
    } else {
        status = fn(&cli, argc - i, argv + i);
        ks_cli_http_free(cli.http);
    }
    curl_global_cleanup();
done:
    free(server);
    free(token);
    free(output);
    free(config);
    return status;
}
