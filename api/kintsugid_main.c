/*
 * kintsugid_main.c - the kintsugid daemon: configuration (flags, KS_* env,
 * defaults), store + index start-up, the listen loop, signals, and the
 * `token create|list|delete` sub-commands.
 *
 * One options table drives --help, environment lookup, parsing and
 * --print-config.  Precedence: built-in default < environment < command line.
 * Signals: SIGTERM/SIGINT/SIGHUP are blocked in every thread and taken by
 * sigwait() in main: SIGTERM/SIGINT shut the API down gracefully (requests in
 * flight finish), SIGHUP re-reads --reload-file (log level and format).
 * systemd (Type=notify): READY=1 once listening, WATCHDOG=1 from a thread every
 * WATCHDOG_USEC/2, RELOADING=1/READY=1 around a reload, STOPPING=1 on SIGTERM
 * (common/ks_sdnotify.h; all no-ops outside systemd).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ks_api.h"
#include "ks_log.h"
#include "ks_report.h"
#include "ks_sdnotify.h"
#include "ks_store.h"

typedef enum opt_type { OPT_STR, OPT_U64, OPT_BOOL } opt_type;

typedef struct opt_def {
    const char *name; /* --name */
    const char *env;  /* KS_... */
    opt_type type;
    const char *def;  /* default as text, NULL = unset */
    uint64_t min, max;
    const char *arg;  /* metavariable for --help */
    const char *help;
} opt_def;

enum {
    O_LISTEN, O_PORT_FILE, O_DB, O_DB_SYNC_FULL, O_THREADS, O_MAX_CONN, O_CONN_TIMEOUT,
    O_MAX_BODY, O_LOST_AFTER, O_SNAPSHOT, O_RATE, O_GRACE, O_TLS_CERT, O_TLS_KEY,
    O_INSECURE, O_LOG_LEVEL, O_LOG_JSON, O_PLAN_TOKEN, O_NO_PUSH, O_RELOAD_FILE, O__COUNT
};

static const opt_def opts_table[O__COUNT] = {
    [O_LISTEN] = {"listen", "KS_LISTEN", OPT_STR, "127.0.0.1:7420", 0, 0, "ADDR:PORT",
                  "address to listen on; port 0 picks a free port; IPv6 as [::1]:7420"},
    [O_PORT_FILE] = {"port-file", "KS_PORT_FILE", OPT_STR, NULL, 0, 0, "PATH",
                     "write the bound port number to PATH once listening"},
    [O_DB] = {"db", "KS_DB", OPT_STR, "./kintsugi.db", 0, 0, "PATH|URL",
              "SQLite database file, or a postgresql:// URL (several replicas)"},
    [O_DB_SYNC_FULL] = {"db-sync-full", "KS_DB_SYNC_FULL", OPT_BOOL, "0", 0, 1, NULL,
                        "fsync every commit (synchronous=FULL) for power-loss durability"},
    [O_THREADS] = {"threads", "KS_THREADS", OPT_U64, "0", 0, 256, "N",
                   "HTTP worker threads; 0 = one per connection"},
    [O_MAX_CONN] = {"max-connections", "KS_MAX_CONNECTIONS", OPT_U64, "256", 1, 65536, "N",
                    "simultaneous connections"},
    [O_CONN_TIMEOUT] = {"connection-timeout", "KS_CONNECTION_TIMEOUT", OPT_U64, "30", 1, 3600,
                        "SECONDS", "close idle connections after this long"},
    [O_MAX_BODY] = {"max-body", "KS_MAX_BODY", OPT_U64, "8388608", 1024, 1073741824, "BYTES",
                    "largest request body accepted (larger: 413)"},
    [O_LOST_AFTER] = {"lost-after", "KS_LOST_AFTER", OPT_U64, "60", 0, 86400 * 30, "SECONDS",
                      "mark a host lost after this long without heartbeat (0 = never)"},
    [O_SNAPSHOT] = {"snapshot-interval", "KS_SNAPSHOT_INTERVAL", OPT_U64, "300", 0, 86400 * 30,
                    "SECONDS", "capacity snapshot period (0 = never)"},
    [O_RATE] = {"rate-limit", "KS_RATE_LIMIT", OPT_U64, "0", 0, 1000000, "RPS",
                "requests per second per token (0 = unlimited)"},
    [O_GRACE] = {"shutdown-grace", "KS_SHUTDOWN_GRACE", OPT_U64, "10", 0, 3600, "SECONDS",
                 "how long requests in flight may take to finish on SIGTERM"},
    [O_TLS_CERT] = {"tls-cert", "KS_TLS_CERT", OPT_STR, NULL, 0, 0, "PATH",
                    "PEM certificate: serve HTTPS (needs --tls-key)"},
    [O_TLS_KEY] = {"tls-key", "KS_TLS_KEY", OPT_STR, NULL, 0, 0, "PATH", "PEM private key"},
    [O_INSECURE] = {"insecure-no-auth", "KS_INSECURE_NO_AUTH", OPT_BOOL, "0", 0, 1, NULL,
                    "no authentication: every request is admin (demos only!)"},
    [O_LOG_LEVEL] = {"log-level", "KS_LOG_LEVEL", OPT_STR, "info", 0, 0, "LEVEL",
                     "debug, info, warn or error"},
    [O_LOG_JSON] = {"log-json", "KS_LOG_JSON", OPT_BOOL, "0", 0, 1, NULL,
                    "log lines as JSON objects"},
    [O_PLAN_TOKEN] = {"agent-plan-token", "KS_AGENT_PLAN_TOKEN", OPT_STR, NULL, 0, 0, "TOKEN",
                      "bearer token sent with plans pushed to agents (their --plan-token)"},
    [O_NO_PUSH] = {"no-plan-push", "KS_NO_PLAN_PUSH", OPT_BOOL, "0", 0, 1, NULL,
                   "do not deliver plans to the agents' agent_url"},
    [O_RELOAD_FILE] = {"reload-file", "KS_RELOAD_FILE", OPT_STR, NULL, 0, 0, "PATH",
                       "KS_*=VALUE file re-read on SIGHUP (log level and format apply)"},
};

typedef struct opt_val {
    const char *str;
    uint64_t num;
    const char *source; /* "default", "env", "flag" */
} opt_val;

static opt_val arg_vals[O__COUNT];

static void usage(FILE *f)
{
    fprintf(f, "Usage: kintsugid [OPTIONS]\n"
               "       kintsugid token create --role admin|reader|agent [--host ID]\n"
               "                 [--description TEXT] [--db PATH]\n"
               "       kintsugid token list [--db PATH]\n"
               "       kintsugid token delete ID [--db PATH]\n"
               "       kintsugid migrate --from STORE --to STORE   (copy a fleet, e.g.\n"
               "                 --from sqlite:/var/lib/kintsugi/kintsugi.db --to postgresql://...)\n"
               "       kintsugid backup PATH [--db STORE]   (consistent copy as a SQLite file)\n"
               "       kintsugid check [--db STORE]   (the store's consistency checks)\n"
               "\n"
               "The Kintsugi scheduler daemon: REST API (/v1), SQLite store, fleet index.\n"
               "\nOptions (environment variable in brackets; flags override it):\n");
    for (int i = 0; i < O__COUNT; i++) {
        const opt_def *o = &opts_table[i];
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "",
                 o->arg ? o->arg : "");
        fprintf(f, "  %-32s %s [%s]%s%s\n", left, o->help, o->env, o->def ? " default: " : "",
                o->def ? o->def : "");
    }
    fprintf(f, "  %-32s %s\n", "--print-config", "print the effective configuration and exit");
    fprintf(f, "  %-32s %s\n", "--help", "this text");
    fprintf(f, "  %-32s %s\n", "--version", "print the version");
    fprintf(f, "\nAuthentication: 'Authorization: Bearer <token>' with tokens made by\n"
               "'kintsugid token create'.  Exit status: 0 ok, 1 runtime error, 2 usage error.\n");
}

static int parse_u64(uint64_t *out, const char *s)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static int set_opt(int i, const char *value, const char *source)
{
    const opt_def *o = &opts_table[i];
    if (o->type == OPT_STR) {
        arg_vals[i].str = value;
    } else {
        uint64_t v;
        if (o->type == OPT_BOOL && (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0))
            v = 1;
        else if (o->type == OPT_BOOL &&
                 (strcmp(value, "false") == 0 || strcmp(value, "no") == 0))
            v = 0;
        else if (parse_u64(&v, value) != 0 || v < o->min || v > o->max) {
            fprintf(stderr, "kintsugid: %s '%s' for %s%s: expected %llu..%llu\n",
                    strcmp(source, "env") == 0 ? "environment value" : "value", value,
                    strcmp(source, "env") == 0 ? o->env : "--", strcmp(source, "env") == 0 ? "" : o->name,
                    (unsigned long long)o->min, (unsigned long long)o->max);
            return -1;
        }
        arg_vals[i].num = v;
        arg_vals[i].str = value;
    }
    arg_vals[i].source = source;
    return 0;
}

/* Defaults, then KS_* env, then argv (from index `first`).  Returns -1 on a usage
 * error (message printed), 1 for --help/--version/--print-config handled. */
static int load_config(int argc, char **argv, int first, bool token_mode)
{
    for (int i = 0; i < O__COUNT; i++) {
        arg_vals[i] = (opt_val){0};
        if (opts_table[i].def && set_opt(i, opts_table[i].def, "default") != 0)
            return -1;
    }
    for (int i = 0; i < O__COUNT; i++) {
        const char *e = getenv(opts_table[i].env);
        if (e && set_opt(i, e, "env") != 0)
            return -1;
    }
    bool print = false;
    for (int a = first; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("kintsugid %s\n", KS_VERSION);
            return 1;
        }
        if (strcmp(arg, "--print-config") == 0 && !token_mode) {
            print = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "kintsugid: unexpected argument '%s' (see --help)\n", arg);
            return -1;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        int found = -1;
        for (int i = 0; i < O__COUNT; i++)
            if (strlen(opts_table[i].name) == nlen && strncmp(opts_table[i].name, name, nlen) == 0)
                found = i;
        if (found < 0) {
            fprintf(stderr, "kintsugid: unknown option '%s' (see --help)\n", arg);
            return -1;
        }
        const char *value;
        if (eq)
            value = eq + 1;
        else if (opts_table[found].type == OPT_BOOL)
            value = "1";
        else if (a + 1 < argc)
            value = argv[++a];
        else {
            fprintf(stderr, "kintsugid: option '--%s' needs a value\n", opts_table[found].name);
            return -1;
        }
        if (set_opt(found, value, "flag") != 0)
            return -1;
    }
    if (print) {
        for (int i = 0; i < O__COUNT; i++)
            printf("%s=%s  # %s\n", opts_table[i].name,
                   !arg_vals[i].str ? "" : i == O_PLAN_TOKEN ? "(secret)" : arg_vals[i].str,
                   arg_vals[i].source ? arg_vals[i].source : "unset");
        return 1;
    }
    return 0;
}

static char *read_text_file(const char *path)
{
    FILE *f = fopen(path, "rbe");
    if (!f)
        return NULL;
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (cap - len < 2) {
            if (cap > (1u << 20)) { /* a PEM file is small; refuse anything silly */
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* "127.0.0.1:7420", "[::1]:0" -> host, port. */
static int split_listen(const char *s, char *host, size_t cap, uint16_t *port)
{
    const char *colon;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= cap)
            return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= cap || colon == s)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    uint64_t p;
    if (parse_u64(&p, colon + 1) != 0 || p > 65535)
        return -1;
    *port = (uint16_t)p;
    return 0;
}

static int open_store(ks_store **out)
{
    ks_err err = {0};
    ks_store_options so = KS_STORE_OPTIONS_INIT;
    so.sync_full = arg_vals[O_DB_SYNC_FULL].num != 0;
    so.background_checkpoint = true;
    so.skip_change_feed = true; /* replicas (the feed's readers) need PostgreSQL */
    if (ks_store_open(out, arg_vals[O_DB].str, &so, &err) != KS_OK) {
        ks_log(KS_LOG_ERROR, "cannot open store db='%s' error='%s'", arg_vals[O_DB].str, err.msg);
        return -1;
    }
    return 0;
}

/* ---- token sub-commands ---- */

static int token_list_cb(void *ctx, const ks_store_token_row *row)
{
    (void)ctx;
    printf("%lld\t%s\t%s\t%s\n", (long long)row->id, row->role,
           row->host_id[0] ? row->host_id : "-", row->description);
    return 0;
}

static int cmd_token(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "kintsugid: token needs a sub-command: create, list or delete\n");
        return 2;
    }
    const char *sub = argv[2];
    const char *role = NULL, *host = NULL, *desc = NULL, *id_s = NULL;
    /* Token flags are taken out first; the rest (--db ...) goes through the table. */
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    if (!rest)
        return 1;
    int n_rest = 0;
    rest[n_rest++] = argv[0];
    for (int a = 3; a < argc; a++) {
        if ((strcmp(argv[a], "--role") == 0 || strcmp(argv[a], "--host") == 0 ||
             strcmp(argv[a], "--description") == 0) && a + 1 < argc) {
            const char **dst = argv[a][2] == 'r' ? &role : argv[a][2] == 'h' ? &host : &desc;
            *dst = argv[++a];
        } else if (argv[a][0] != '-' && !id_s && strcmp(sub, "delete") == 0) {
            id_s = argv[a];
        } else {
            rest[n_rest++] = argv[a];
        }
    }
    int lc = load_config(n_rest, rest, 1, true);
    free(rest);
    if (lc != 0)
        return lc < 0 ? 2 : 0;
    ks_store *store = NULL;
    ks_err err = {0};
    int ret = 1;
    if (strcmp(sub, "create") == 0) {
        if (!role || (strcmp(role, "admin") && strcmp(role, "reader") && strcmp(role, "agent"))) {
            fprintf(stderr, "kintsugid: token create needs --role admin|reader|agent\n");
            return 2;
        }
        if (strcmp(role, "agent") == 0 && (!host || !ks_id_valid(host))) {
            fprintf(stderr, "kintsugid: an agent token needs --host ID (a valid host id)\n");
            return 2;
        }
        if (strcmp(role, "agent") != 0 && host) {
            fprintf(stderr, "kintsugid: --host only applies to agent tokens\n");
            return 2;
        }
        if (open_store(&store) != 0)
            return 1;
        char token[48];
        uint8_t digest[32];
        int64_t id = 0;
        ks_code rc = ks_api_token_generate(token, &err);
        if (rc == KS_OK)
            rc = ks_api_token_digest(digest, token, &err);
        if (rc == KS_OK)
            rc = ks_store_begin(store, &err);
        if (rc == KS_OK) {
            rc = ks_store_token_add(&id, store, digest, sizeof(digest), role, host, desc,
                                    (uint64_t)time(NULL) * 1000000u, &err);
            if (rc == KS_OK)
                rc = ks_store_commit(store, &err);
            else
                ks_store_rollback(store, NULL);
        }
        if (rc != KS_OK) {
            fprintf(stderr, "kintsugid: token create failed: %s\n", err.msg);
        } else {
            /* The token is printed once and never stored: only its hash is. */
            printf("%s\n", token);
            fprintf(stderr, "kintsugid: token id %lld role %s%s%s created; store it now, it "
                            "cannot be shown again\n",
                    (long long)id, role, host ? " host " : "", host ? host : "");
            ret = 0;
        }
    } else if (strcmp(sub, "list") == 0) {
        if (open_store(&store) != 0)
            return 1;
        if (ks_store_token_list(store, token_list_cb, NULL, &err) != KS_OK)
            fprintf(stderr, "kintsugid: token list failed: %s\n", err.msg);
        else
            ret = 0;
    } else if (strcmp(sub, "delete") == 0) {
        uint64_t id;
        if (!id_s || parse_u64(&id, id_s) != 0) {
            fprintf(stderr, "kintsugid: token delete needs a numeric token id\n");
            return 2;
        }
        if (open_store(&store) != 0)
            return 1;
        ks_code rc = ks_store_begin(store, &err);
        if (rc == KS_OK) {
            rc = ks_store_token_delete(store, (int64_t)id, &err);
            if (rc == KS_OK)
                rc = ks_store_commit(store, &err);
            else
                ks_store_rollback(store, NULL);
        }
        if (rc != KS_OK)
            fprintf(stderr, "kintsugid: token delete failed: %s\n", err.msg);
        else
            ret = 0;
    } else {
        fprintf(stderr, "kintsugid: unknown token sub-command '%s'\n", sub);
        return 2;
    }
    ks_store_close(store);
    return ret;
}

/* ---- the daemon ---- */

/* Tells systemd `state`; a failure is logged and otherwise ignored (the service
 * manager, not kintsugid, decides what a missing notification means). */
static void notify(const char *state)
{
    ks_err err = {0};
    if (ks_sdnotify_send(NULL, state, &err) != KS_OK)
        ks_log(KS_LOG_WARN, "sd_notify failed error='%s', ignoring", err.msg);
}

/* Pings systemd's watchdog every half period until its pipe becomes readable
 * (written at shutdown).  poll() times out on the monotonic clock, so a wall
 * clock jump never delays a ping. */
typedef struct watchdog {
    pthread_t thread;
    int pipe[2];
    int period_ms;
    bool running;
} watchdog;

static void *watchdog_main(void *arg)
{
    const watchdog *w = arg;
    struct pollfd p = {.fd = w->pipe[0], .events = POLLIN};
    for (;;) {
        int n = poll(&p, 1, w->period_ms);
        if (n > 0)
            break;
        if (n == 0)
            ks_sdnotify_send(NULL, KS_SDNOTIFY_WATCHDOG, NULL);
    }
    return NULL;
}

static void watchdog_start(watchdog *w)
{
    uint64_t usec = ks_sdnotify_watchdog_usec();
    w->running = false;
    if (!usec)
        return;
    uint64_t half_ms = usec / 2000u;
    w->period_ms = half_ms == 0 ? 1 : half_ms > 3600000u ? 3600000 : (int)half_ms;
    if (pipe2(w->pipe, O_CLOEXEC) != 0) {
        ks_log(KS_LOG_WARN, "watchdog pipe errno=%d, no watchdog pings", errno);
        return;
    }
    if (pthread_create(&w->thread, NULL, watchdog_main, w) != 0) {
        ks_log(KS_LOG_WARN, "watchdog thread not started, no watchdog pings");
        close(w->pipe[0]);
        close(w->pipe[1]);
        return;
    }
    w->running = true;
    ks_log(KS_LOG_INFO, "systemd watchdog ping_ms=%d", w->period_ms);
}

static void watchdog_stop(watchdog *w)
{
    if (!w->running)
        return;
    ssize_t n;
    do {
        n = write(w->pipe[1], "x", 1);
    } while (n < 0 && errno == EINTR);
    pthread_join(w->thread, NULL);
    close(w->pipe[0]);
    close(w->pipe[1]);
    w->running = false;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/*
 * SIGHUP: re-reads --reload-file, KEY=VALUE lines with KS_* names (the unit's
 * EnvironmentFile; '#' comments, optional quotes).  KS_LOG_LEVEL and KS_LOG_JSON
 * apply at once unless a command-line flag set them; every other setting that
 * differs from the running value needs a restart and is only named in the log.
 * A bad file changes nothing.  Keys of other programs are ignored.
 */
static void reload_config(void)
{
    const char *path = arg_vals[O_RELOAD_FILE].str;
    ks_err err = {0};
    if (ks_sdnotify_reloading(NULL, &err) != KS_OK)
        ks_log(KS_LOG_WARN, "sd_notify failed error='%s', ignoring", err.msg);
    FILE *f = path ? fopen(path, "re") : NULL;
    if (!f) {
        ks_log(KS_LOG_WARN, "SIGHUP: %s path='%s', keeping the running settings",
               path ? "cannot open the reload file" : "no --reload-file", path ? path : "");
        notify(KS_SDNOTIFY_READY);
        return;
    }
    int level = -1, json = -1;
    char level_s[16] = "unchanged", restart[512] = "", line[4096];
    size_t rl = 0;
    unsigned lineno = 0;
    bool bad = false;
    while (!bad && fgets(line, sizeof(line), f)) {
        lineno++;
        char *k = trim(line), *eq = strchr(k, '=');
        if (!*k || *k == '#')
            continue;
        if (!eq) {
            ks_log(KS_LOG_WARN, "reload path='%s' line=%u: expected KEY=VALUE", path, lineno);
            bad = true;
            break;
        }
        *eq = '\0';
        char *v = trim(eq + 1);
        size_t vl = strlen(v);
        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            v[vl - 1] = '\0';
            v++;
        }
        int i = 0;
        while (i < O__COUNT && strcmp(opts_table[i].env, trim(k)) != 0)
            i++;
        if (i == O__COUNT || strcmp(arg_vals[i].source ? arg_vals[i].source : "", "flag") == 0)
            continue; /* not ours, or the command line wins as at start-up */
        if (i == O_LOG_LEVEL) {
            level = ks_log_level_from_str(v);
            snprintf(level_s, sizeof(level_s), "%s", v);
            bad = level < 0;
        } else if (i == O_LOG_JSON) {
            if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"))
                json = 1;
            else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no"))
                json = 0;
            else
                bad = true;
        } else if (!arg_vals[i].str || strcmp(arg_vals[i].str, v) != 0) {
            int w = snprintf(restart + rl, sizeof(restart) - rl, "%s%s", rl ? "," : "",
                             opts_table[i].name);
            rl = w > 0 && (size_t)w < sizeof(restart) - rl ? rl + (size_t)w : rl;
        }
        if (bad)
            ks_log(KS_LOG_WARN, "reload path='%s' line=%u: bad value for %s", path, lineno,
                   opts_table[i].env);
    }
    fclose(f);
    if (!bad) {
        if (level >= 0)
            ks_log_set_level((ks_log_level)level);
        if (json >= 0)
            ks_log_set_json(json);
        ks_log(KS_LOG_INFO, "reloaded path='%s' log_level=%s log_json=%s needs_restart='%s'", path,
               level_s, json < 0 ? "unchanged" : (json ? "1" : "0"), restart);
    } else {
        ks_log(KS_LOG_WARN, "reload path='%s' refused, keeping the running settings", path);
    }
    notify(KS_SDNOTIFY_READY);
}

static int write_port_file(const char *path, uint16_t port)
{
    /* Written to a temporary name and renamed so a reader never sees a partial number. */
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -1;
    FILE *f = fopen(tmp, "we");
    if (!f)
        return -1;
    fprintf(f, "%u\n", (unsigned)port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

static int serve(void)
{
    int ret = 1;
    ks_store *store = NULL;
    ks_api *api = NULL;
    char *cert = NULL, *key = NULL;
    ks_err err = {0};
    ks_api_options o = KS_API_OPTIONS_INIT;
    char host[64];
    if (split_listen(arg_vals[O_LISTEN].str, host, sizeof(host), &o.port) != 0) {
        fprintf(stderr, "kintsugid: --listen '%s' must be ADDR:PORT\n", arg_vals[O_LISTEN].str);
        return 2;
    }
    o.listen_host = host;
    o.threads = (unsigned)arg_vals[O_THREADS].num;
    o.connection_limit = (unsigned)arg_vals[O_MAX_CONN].num;
    o.connection_timeout_s = (unsigned)arg_vals[O_CONN_TIMEOUT].num;
    o.max_body_bytes = (size_t)arg_vals[O_MAX_BODY].num;
    o.lost_after_us = arg_vals[O_LOST_AFTER].num * 1000000u;
    o.snapshot_interval_us = arg_vals[O_SNAPSHOT].num * 1000000u;
    o.rate_limit_rps = (unsigned)arg_vals[O_RATE].num;
    o.insecure_no_auth = arg_vals[O_INSECURE].num != 0;
    o.agent_plan_token = arg_vals[O_PLAN_TOKEN].str;
    o.no_plan_push = arg_vals[O_NO_PUSH].num != 0;
    if (!arg_vals[O_TLS_CERT].str != !arg_vals[O_TLS_KEY].str) {
        fprintf(stderr, "kintsugid: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (arg_vals[O_TLS_CERT].str) {
        cert = read_text_file(arg_vals[O_TLS_CERT].str);
        key = read_text_file(arg_vals[O_TLS_KEY].str);
        if (!cert || !key) {
            ks_log(KS_LOG_ERROR, "cannot read TLS certificate or key cert='%s' key='%s'",
                   arg_vals[O_TLS_CERT].str, arg_vals[O_TLS_KEY].str);
            goto done;
        }
        o.tls_cert_pem = cert;
        o.tls_key_pem = key;
    }
    if (o.insecure_no_auth)
        ks_log(KS_LOG_WARN, "AUTHENTICATION DISABLED (--insecure-no-auth): every client is "
                            "admin; use only for demos on a trusted machine");

    /* Block the stop and reload signals before any thread exists so that all
     * inherit the mask and only sigwait() below sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (open_store(&store) != 0)
        goto done;
    if (ks_api_new(&api, &o, store, &err) != KS_OK) {
        ks_log(KS_LOG_ERROR, "start-up failed error='%s'", err.msg);
        goto done;
    }
    if (ks_api_listen(api, &err) != KS_OK) {
        ks_log(KS_LOG_ERROR, "listen failed error='%s'", err.msg);
        goto done;
    }
    if (arg_vals[O_PORT_FILE].str &&
        write_port_file(arg_vals[O_PORT_FILE].str, ks_api_bound_port(api)) != 0) {
        ks_log(KS_LOG_ERROR, "cannot write port file path='%s'", arg_vals[O_PORT_FILE].str);
        goto done;
    }
    ks_log(KS_LOG_INFO, "kintsugid ready version=%s db='%s' port=%u", KS_VERSION,
           arg_vals[O_DB].str, (unsigned)ks_api_bound_port(api));
    if (ks_sdnotifyf(NULL, &err, "READY=1\nSTATUS=serving on port %u",
                     (unsigned)ks_api_bound_port(api)) != KS_OK)
        ks_log(KS_LOG_WARN, "sd_notify failed error='%s', ignoring", err.msg);
    watchdog wd;
    watchdog_start(&wd);
    int sig = 0;
    for (;;) {
        if (sigwait(&stop, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            break;
        reload_config();
    }
    notify(KS_SDNOTIFY_STOPPING);
    ks_log(KS_LOG_INFO, "signal=%d received, shutting down grace_s=%llu", sig,
           (unsigned long long)arg_vals[O_GRACE].num);
    ks_api_shutdown(api, arg_vals[O_GRACE].num * 1000000u);
    watchdog_stop(&wd);
    ret = 0;
done:
    ks_api_free(api);
    ks_store_close(store);
    free(cert);
    free(key);
    if (ret == 0)
        ks_log(KS_LOG_INFO, "kintsugid stopped");
    return ret;
}

/* ---- store sub-commands: migrate, backup ---- */

/* Opens a store for a sub-command; reports on stderr.  URLs are not printed
 * back: they may hold a password. */
static int open_cli_store(ks_store **out, const char *what, const char *url)
{
    ks_err err = {0};
    if (ks_store_open(out, url, NULL, &err) != KS_OK) {
        fprintf(stderr, "kintsugid: cannot open the %s store: %s\n", what, err.msg);
        return -1;
    }
    return 0;
}

/* kintsugid migrate --from STORE --to STORE: ks_store_copy into an empty store. */
static int cmd_migrate(int argc, char **argv)
{
    const char *from = NULL, *to = NULL;
    for (int a = 2; a < argc; a++) {
        if (strcmp(argv[a], "--from") == 0 && a + 1 < argc) {
            from = argv[++a];
        } else if (strcmp(argv[a], "--to") == 0 && a + 1 < argc) {
            to = argv[++a];
        } else if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "kintsugid migrate: unexpected argument '%s'\n", argv[a]);
            return 2;
        }
    }
    if (!from || !to) {
        fprintf(stderr, "usage: kintsugid migrate --from STORE --to STORE\n");
        return 2;
    }
    ks_store *src = NULL, *dst = NULL;
    ks_err err = {0};
    uint64_t rows = 0;
    int ret = 1;
    if (open_cli_store(&src, "source", from) != 0 || open_cli_store(&dst, "target", to) != 0)
        goto done;
    if (ks_store_copy(&rows, dst, src, &err) != KS_OK) {
        fprintf(stderr, "kintsugid migrate: %s\n", err.msg);
        ret = err.code == KS_ECONFLICT ? 2 : 1;
        goto done;
    }
    printf("copied %llu rows from the %s store to the %s store\n", (unsigned long long)rows,
           ks_store_backend(src), ks_store_backend(dst));
    ret = 0;
done:
    ks_store_close(dst);
    ks_store_close(src);
    return ret;
}

/* kintsugid backup PATH [--db STORE]: ks_store_backup (a SQLite file). */
/* A store sub-command's work: KS_OK, or the error for the user, after
 * printing its result. */
typedef ks_code (*store_op)(ks_store *s, const char *arg, ks_err *err);

static ks_code backup_op(ks_store *s, const char *path, ks_err *err)
{
    ks_code rc = ks_store_backup(s, path, err);
    if (rc == KS_OK)
        printf("backup of the %s store written to %s\n", ks_store_backend(s), path);
    return rc;
}

static ks_code check_op(ks_store *s, const char *unused, ks_err *err)
{
    (void)unused;
    ks_code rc = ks_store_integrity_check(s, err);
    if (rc == KS_OK)
        printf("the %s store is consistent\n", ks_store_backend(s));
    return rc;
}

/* Runs `op` on the store named by --db, KS_DB or ./kintsugi.db: 0 done, 1 not. */
static int on_store(const char *db, const char *cmd, store_op op, const char *arg)
{
    ks_store *s = NULL;
    ks_err err = {0};
    if (open_cli_store(&s, "database", db && db[0] ? db : "./kintsugi.db") != 0)
        return 1;
    int ret = 0;
    if (op(s, arg, &err) != KS_OK) {
        fprintf(stderr, "kintsugid %s: %s\n", cmd, err.msg);
        ret = 1;
    }
    ks_store_close(s);
    return ret;
}

static int cmd_backup(int argc, char **argv)
{
    const char *path = NULL, *db = getenv("KS_DB");
    for (int a = 2; a < argc; a++) {
        if (strcmp(argv[a], "--db") == 0 && a + 1 < argc)
            db = argv[++a];
        else if (argv[a][0] != '-' && !path)
            path = argv[a];
        else {
            fprintf(stderr, "kintsugid backup: unexpected argument '%s'\n", argv[a]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: kintsugid backup PATH [--db STORE]\n");
        return 2;
    }
    return on_store(db, "backup", backup_op, path);
}

/* kintsugid check [--db STORE]: what the schema does not declare (SQLite's
 * CPU bitmaps and VM lists, compressed plans) and what it does. */
static int cmd_check(int argc, char **argv)
{
    const char *db = getenv("KS_DB");
    for (int a = 2; a < argc; a++) {
        if (strcmp(argv[a], "--db") == 0 && a + 1 < argc) {
            db = argv[++a];
        } else {
            fprintf(stderr, "kintsugid check: unexpected argument '%s'\n", argv[a]);
            return 2;
        }
    }
    return on_store(db, "check", check_op, NULL);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "token") == 0)
        return cmd_token(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "migrate") == 0)
        return cmd_migrate(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "backup") == 0)
        return cmd_backup(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "check") == 0)
        return cmd_check(argc, argv);
    int lc = load_config(argc, argv, 1, false);
    if (lc != 0)
        return lc < 0 ? 2 : 0;
    int level = ks_log_level_from_str(arg_vals[O_LOG_LEVEL].str);
    if (level < 0) {
        fprintf(stderr, "kintsugid: unknown log level '%s'\n", arg_vals[O_LOG_LEVEL].str);
        return 2;
    }
    ks_log_set_level((ks_log_level)level);
    ks_log_set_json(arg_vals[O_LOG_JSON].num != 0);
    /* Under systemd, stderr is the journal: add priority prefixes it understands. */
    if (ks_sdnotify_stderr_is_journal())
        ks_log_set_journald(1);
    return serve();
}
