/*
 * cmd_run.c - `kintsugi-agent run`: the agent daemon.
 *
 *   discover (hwloc + CPUID, or a fixture) ─▶ defects (self-tests, IFS, MCE,
 *   operator file) ─▶ serve plans (agent REST + VMM driver) ─▶ PUT the report
 *   to kintsugid ─▶ heartbeat every --heartbeat seconds ─▶ re-report when the
 *   defects, the running VMs or the server's view change.
 *
 * Nothing is lost while kintsugid is down: the latest report is kept and
 * re-sent with exponential backoff and full jitter until it is accepted, and a
 * heartbeat answer saying the server holds an older generation (a restored
 * backup) triggers a resend.
 *
 * Signals: SIGTERM/SIGINT stop (the plan server finishes in-flight requests),
 * SIGHUP re-reads the operator defect file at once (it is also re-read every
 * second).  They are blocked in every
 * thread and taken synchronously by the main loop with sigtimedwait(), which is
 * also its only sleep.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ks_agent_client.h"
#include "ks_agent_cmds.h"
#include "ks_agent_server.h"
#include "ks_defects.h"
#include "ks_discover.h"
#include "ks_log.h"
#include "ks_parse.h"
#include "ks_sdnotify.h"

typedef struct run_options {
    const char *server;
    const char *token;
    const char *fixture;
    const char *host_id;
    const char *listen_addr;
    uint16_t listen_port;
    const char *advertise;
    const char *plan_token;
    bool insecure_no_auth;
    bool serve;
    const char *driver;
    const char *state_dir;
    const char *qemu_binary;
    const char *accel;
    const char *defects_file;
    bool selftest;
    uint64_t selftest_interval_s;
    const char *inject;
    uint64_t heartbeat_s;
    bool once;
} run_options;

typedef struct agent {
    run_options opt;
    ks_report *base;          /* discovered topology and native features, no defects */
    ks_report *current;       /* base + defects + running VMs: what was last sent */
    ks_report *scanned;       /* the last full scan (self-tests, IFS): its defects are kept
                               * by the cheap refreshes in between */
    uint64_t generation;
    ks_defects_state defects;
    ks_agent_server *server;
    ks_agent_client *client;
    char agent_url[KS_TEXT_MAX];
    bool report_pending;      /* `current` not yet accepted by kintsugid */
    unsigned attempt;         /* consecutive failed sends, for the backoff */
    bool ready_sent;          /* READY=1 told to systemd */
    uint64_t rng;
} agent;

static const char run_help[] =
    "usage: kintsugi-agent run --server URL [options]\n"
    "\n"
    "Runs the agent daemon: reports this host (or a recorded fixture) to kintsugid,\n"
    "heartbeats, re-reports when defects change, and applies vCPU plans to the VMM.\n"
    "\n"
    "reporting:\n"
    "  --server URL            kintsugid base URL (env KINTSUGI_SERVER)\n"
    "  --token TOKEN           agent token for kintsugid (env KINTSUGI_AGENT_TOKEN)\n"
    "  --heartbeat SEC         heartbeat period (default 10)\n"
    "  --once                  send one report and exit (0 when accepted)\n"
    "host:\n"
    "  --fixture PATH          report a recorded machine (dump dir, sysfs tree or .tar.bz2)\n"
    "  --host-id ID            host id (default /etc/machine-id, fixtures fx-<name>)\n"
    "defects:\n"
    "  --defects FILE          operator defect file (default /etc/kintsugi/defects.json)\n"
    "  --no-selftest           do not run the per-CPU self-tests (fixtures never do)\n"
    "  --selftest-interval SEC self-test period (default 21600 = 6 h, 0 = only at start)\n"
    "  --inject CPU:FEAT,..    fault injection for tests and demos (env KS_INJECT_FAULT)\n"
    "plans:\n"
    "  --listen ADDR:PORT      plan endpoint (default 127.0.0.1:7421, port 0 = any)\n"
    "  --advertise URL         URL kintsugid should push plans to (default from --listen)\n"
    "  --plan-token TOKEN      token kintsugid must present (env KINTSUGI_PLAN_TOKEN)\n"
    "  --insecure-no-auth      accept plans without a token (demos only)\n"
    "  --no-serve              do not serve plans\n"
    "  --driver NAME           qemu, libvirt, cloud-hypervisor, firecracker, dry-run (default)\n"
    "  --state-dir DIR         VMM sockets, logs, configs (default /run/kintsugi)\n"
    "  --qemu-binary PATH      QEMU binary (default qemu-system-x86_64)\n"
    "  --accel auto|kvm|tcg    QEMU accelerator (default auto)\n";

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int parse_seconds(const char *s, uint64_t max, uint64_t *out)
{
    return ks_parse_u64(out, s, 0, max, "seconds", NULL) == KS_OK ? 0 : -1;
}

static int parse_listen(const char *s, run_options *o)
{
    static char addr[64];
    const char *colon = strrchr(s, ':');
    uint64_t port;
    if (!colon || (size_t)(colon - s) >= sizeof(addr) || parse_seconds(colon + 1, 65535, &port))
        return -1;
    memcpy(addr, s, (size_t)(colon - s));
    addr[colon - s] = '\0';
    if (addr[0] == '[') { /* [::1]:7421 */
        size_t n = strlen(addr);
        if (n < 2 || addr[n - 1] != ']')
            return -1;
        memmove(addr, addr + 1, n - 2);
        addr[n - 2] = '\0';
    }
    o->listen_addr = addr;
    o->listen_port = (uint16_t)port;
    return 0;
}

static int parse_args(run_options *o, int argc, char **argv)
{
    enum { O_SERVER = 256, O_TOKEN, O_FIXTURE, O_HOST_ID, O_LISTEN, O_ADVERTISE, O_PLAN_TOKEN,
           O_NO_AUTH, O_NO_SERVE, O_DRIVER, O_STATE_DIR, O_QEMU, O_ACCEL, O_DEFECTS,
           O_NO_SELFTEST, O_SELFTEST_INTERVAL, O_INJECT, O_HEARTBEAT, O_ONCE, O_HELP };
    static const struct option opts[] = {
        {"server", required_argument, 0, O_SERVER},
        {"token", required_argument, 0, O_TOKEN},
        {"fixture", required_argument, 0, O_FIXTURE},
        {"host-id", required_argument, 0, O_HOST_ID},
        {"listen", required_argument, 0, O_LISTEN},
        {"advertise", required_argument, 0, O_ADVERTISE},
        {"plan-token", required_argument, 0, O_PLAN_TOKEN},
        {"insecure-no-auth", no_argument, 0, O_NO_AUTH},
        {"no-serve", no_argument, 0, O_NO_SERVE},
        {"driver", required_argument, 0, O_DRIVER},
        {"state-dir", required_argument, 0, O_STATE_DIR},
        {"qemu-binary", required_argument, 0, O_QEMU},
        {"accel", required_argument, 0, O_ACCEL},
        {"defects", required_argument, 0, O_DEFECTS},
        {"no-selftest", no_argument, 0, O_NO_SELFTEST},
        {"selftest-interval", required_argument, 0, O_SELFTEST_INTERVAL},
        {"inject", required_argument, 0, O_INJECT},
        {"heartbeat", required_argument, 0, O_HEARTBEAT},
        {"once", no_argument, 0, O_ONCE},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_SERVER: o->server = optarg; break;
        case O_TOKEN: o->token = optarg; break;
        case O_FIXTURE: o->fixture = optarg; break;
        case O_HOST_ID: o->host_id = optarg; break;
        case O_ADVERTISE: o->advertise = optarg; break;
        case O_PLAN_TOKEN: o->plan_token = optarg; break;
        case O_NO_AUTH: o->insecure_no_auth = true; break;
        case O_NO_SERVE: o->serve = false; break;
        case O_DRIVER: o->driver = optarg; break;
        case O_STATE_DIR: o->state_dir = optarg; break;
        case O_QEMU: o->qemu_binary = optarg; break;
        case O_ACCEL: o->accel = optarg; break;
        case O_DEFECTS: o->defects_file = optarg; break;
        case O_NO_SELFTEST: o->selftest = false; break;
        case O_INJECT: o->inject = optarg; break;
        case O_ONCE: o->once = true; break;
        case O_HELP: fputs(run_help, stdout); return 1;
        case O_LISTEN:
            if (parse_listen(optarg, o) != 0) {
                fprintf(stderr, "kintsugi-agent run: --listen wants ADDR:PORT, got '%s'\n", optarg);
                return -1;
            }
            break;
        case O_SELFTEST_INTERVAL:
        case O_HEARTBEAT:
            if (parse_seconds(optarg, 7 * 86400, c == O_HEARTBEAT ? &o->heartbeat_s
                                                                   : &o->selftest_interval_s) ||
                (c == O_HEARTBEAT && o->heartbeat_s == 0)) {
                fprintf(stderr, "kintsugi-agent run: '%s' is not a valid number of seconds\n",
                        optarg);
                return -1;
            }
            break;
        default:
            fprintf(stderr, "kintsugi-agent run: unknown option '%s' (try --help)\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kintsugi-agent run: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->server) {
        fprintf(stderr, "kintsugi-agent run: --server is required (or KINTSUGI_SERVER)\n");
        return -1;
    }
    if (o->serve && !o->insecure_no_auth && !o->plan_token) {
        fprintf(stderr, "kintsugi-agent run: the plan endpoint needs --plan-token "
                        "(or --insecure-no-auth, or --no-serve)\n");
        return -1;
    }
    return 0;
}

/* CPUs that host vCPUs: self-tests and scans leave them alone. */
typedef struct busy_cpus {
    int32_t cpus[KS_REPORT_MAX_CPUS];
    uint32_t n;
} busy_cpus;

static void collect_busy(void *ctx, const ks_vmm_state *vm)
{
    busy_cpus *b = ctx;
    for (uint32_t i = 0; i < vm->n_vcpus && b->n < KS_REPORT_MAX_CPUS; i++)
        if (vm->vcpus[i].host_cpu >= 0)
            b->cpus[b->n++] = vm->vcpus[i].host_cpu;
}

typedef struct vm_list {
    ks_running_vm *vms;
    uint32_t n, cap;
} vm_list;

static void collect_vm(void *ctx, const ks_vmm_state *vm)
{
    vm_list *l = ctx;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 16;
        ks_running_vm *nv = realloc(l->vms, cap * sizeof(*nv));
        if (!nv)
            return;
        l->vms = nv;
        l->cap = cap;
    }
    ks_running_vm *r = &l->vms[l->n++];
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", vm->vm);
    r->generation = vm->generation;
}

/* Copies the self-test and IFS defects of the last full scan into r (same CPU order). */
static ks_code carry_scan_defects(ks_report *r, const ks_report *scanned, ks_err *err)
{
    for (uint32_t i = 0; scanned && i < r->n_cpus && i < scanned->n_cpus; i++) {
        const ks_cpu *from = &scanned->cpus[i];
        for (uint16_t d = 0; d < from->n_defects; d++) {
            if (from->defects[d].source != KS_DEFECT_SELFTEST &&
                from->defects[d].source != KS_DEFECT_IFS)
                continue;
            ks_code rc = ks_cpu_add_defect(&r->cpus[i], &from->defects[d], err);
            if (rc != KS_OK)
                return rc;
        }
    }
    return KS_OK;
}

/*
 * Builds a fresh report: a copy of the discovered base with defects applied
 * and the running VMs listed.  A full scan runs the self-tests and IFS; the
 * cheap refresh (every second) only re-reads the operator file and MCE counts
 * and keeps the last full scan's findings.  *out is new; the caller frees it.
 */
static ks_code build_report(ks_report **out, agent *a, bool full_scan, ks_err *err)
{
    ks_report *r = NULL;
    busy_cpus *busy = calloc(1, sizeof(*busy));
    vm_list vms = {0};
    ks_code rc = busy ? ks_report_dup(&r, a->base, err) : ks_err_set(err, KS_ENOMEM, "out of memory");
    if (rc != KS_OK)
        goto done;
    if (a->server)
        ks_agent_server_running_vms(a->server, collect_busy, busy);

    if (!full_scan && (rc = carry_scan_defects(r, a->scanned, err)) != KS_OK)
        goto done;
    ks_defects_options dopt = KS_DEFECTS_OPTIONS_INIT;
    bool live = a->opt.fixture == NULL;
    dopt.run_selftests = live && full_scan && a->opt.selftest;
    dopt.use_ifs = live && full_scan;
    dopt.use_mce = live;
    dopt.operator_file = a->opt.defects_file;
    dopt.inject = a->opt.inject;
    dopt.skip_cpus = busy->cpus;
    dopt.n_skip_cpus = busy->n;
    dopt.selftest_idle = true;
    rc = ks_defects_apply(r, &dopt, &a->defects, err);
    if (rc != KS_OK) {
        /* The report is consistent even then: a bad operator file leaves its last
         * good content applied, a failing source is skipped.  Only the first report
         * insists on every source working, so that a broken defect list never
         * announces CPUs as healthy. */
        if (!a->current)
            goto done;
        ks_log(KS_LOG_WARN, "defect source failed code=%s field='%s' msg='%s', keeping the "
               "last good state", ks_code_slug(err->code), err->field, err->msg);
        rc = KS_OK;
    }
    if (a->defects.warning[0])
        ks_log(KS_LOG_WARN, "defects warning='%s', ignoring", a->defects.warning);

    if (a->server) {
        ks_agent_server_running_vms(a->server, collect_vm, &vms);
        free(r->vms);
        r->vms = vms.vms;
        r->n_vms = vms.n;
        vms.vms = NULL;
    }
    snprintf(r->host.agent_url, sizeof(r->host.agent_url), "%s", a->agent_url);
    if (full_scan) {
        ks_report *copy = NULL;
        if ((rc = ks_report_dup(&copy, r, err)) != KS_OK)
            goto done;
        ks_report_free(a->scanned);
        a->scanned = copy;
    }
    *out = r;
    r = NULL;
done:
    free(vms.vms);
    free(busy);
    ks_report_free(r);
    return rc;
}

/* True when what the scheduler must know differs: defects, states, usable sets, VMs. */
static bool report_changed(const ks_report *old, const ks_report *cur)
{
    if (!old || old->n_cpus != cur->n_cpus || old->n_vms != cur->n_vms)
        return true;
    for (uint32_t i = 0; i < cur->n_cpus; i++) {
        const ks_cpu *x = &old->cpus[i], *y = &cur->cpus[i];
        if (x->state != y->state || !ks_featset_equal(&x->defective, &y->defective) ||
            !ks_featset_equal(&x->usable, &y->usable))
            return true;
    }
    for (uint32_t i = 0; i < cur->n_vms; i++)
        if (strcmp(old->vms[i].name, cur->vms[i].name) != 0 ||
            old->vms[i].generation != cur->vms[i].generation)
            return true;
    return false;
}

/* Re-derives the report; when it changed, bumps the generation and marks it for sending. */
static void refresh_report(agent *a, bool full_scan)
{
    ks_err err = {0};
    ks_report *r = NULL;
    if (build_report(&r, a, full_scan, &err) != KS_OK) {
        /* The operator file keeps its last good content; other sources are retried. */
        ks_log(KS_LOG_WARN, "refresh failed code=%s msg='%s', keeping the last report",
               ks_code_slug(err.code), err.msg);
        return;
    }
    if (!report_changed(a->current, r)) {
        ks_report_free(r);
        return;
    }
    r->host.generation = ++a->generation;
    ks_report_free(a->current);
    a->current = r;
    a->report_pending = true;
    ks_log(KS_LOG_INFO, "report changed host='%s' generation=%llu", r->host.id,
           (unsigned long long)a->generation);
}

/* One attempt to deliver the current report.  KS_OK when kintsugid accepted it. */
static ks_code send_report(agent *a, ks_err *err)
{
    json_t *doc = ks_report_to_json(a->current);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return ks_err_set(err, KS_ENOMEM, "out of memory encoding the report");
    ks_code rc = ks_agent_client_put_report(a->client, text, err);
    free(text);
    if (rc == KS_ECONFLICT) {
        /* kintsugid holds a newer generation of this boot (we restarted without a
         * new boot id): jump past it rather than being refused forever. */
        a->generation += 1000;
        a->current->host.generation = a->generation;
    }
    return rc;
}

static ks_code start_plan_server(agent *a, ks_err *err)
{
    ks_agent_server_options so = KS_AGENT_SERVER_OPTIONS_INIT;
    so.listen_addr = a->opt.listen_addr;
    so.port = a->opt.listen_port;
    so.token = a->opt.plan_token;
    so.insecure_no_auth = a->opt.insecure_no_auth;
    so.host_id = a->base->host.id;
    so.vmm.driver = a->opt.driver;
    so.vmm.state_dir = a->opt.state_dir;
    if (a->opt.qemu_binary)
        so.vmm.qemu_binary = a->opt.qemu_binary;
    if (a->opt.accel)
        so.vmm.accel = a->opt.accel;
    if (mkdir(a->opt.state_dir, 0700) != 0 && errno != EEXIST)
        return ks_err_set(err, KS_EIO, "cannot create state dir '%s'", a->opt.state_dir);
    ks_code rc = ks_agent_server_start(&a->server, &so, err);
    if (rc != KS_OK)
        return rc;
    if (a->opt.advertise)
        snprintf(a->agent_url, sizeof(a->agent_url), "%s", a->opt.advertise);
    else
        snprintf(a->agent_url, sizeof(a->agent_url), strchr(so.listen_addr, ':') ?
                 "http://[%s]:%u" : "http://%s:%u", so.listen_addr,
                 (unsigned)ks_agent_server_port(a->server));
    ks_log(KS_LOG_INFO, "serving plans url='%s' driver=%s", a->agent_url, a->opt.driver);
    return KS_OK;
}

/* The main loop; returns the exit status. */
static int run_loop(agent *a, const sigset_t *sigs)
{
    uint64_t next_heartbeat = 0, next_selftest = 0, next_send = 0, next_watchdog = 0;
    uint64_t interval_us = a->opt.selftest_interval_s * 1000000u;
    uint64_t watchdog_us = ks_sdnotify_watchdog_usec() / 2; /* 0 outside systemd */
    if (interval_us)
        next_selftest = now_us() + interval_us;
    for (;;) {
        uint64_t now = now_us();
        ks_err err = {0};
        if (a->report_pending && now >= next_send) {
            if (send_report(a, &err) == KS_OK) {
                ks_log(KS_LOG_INFO, "report accepted host='%s' generation=%llu",
                       a->current->host.id, (unsigned long long)a->current->host.generation);
                if (!a->ready_sent) {
                    /* systemd (Type=notify): ready once kintsugid knows this host. */
                    ks_sdnotify_send(NULL, KS_SDNOTIFY_READY, NULL);
                    a->ready_sent = true;
                }
                a->report_pending = false;
                a->attempt = 0;
                next_heartbeat = now + a->opt.heartbeat_s * 1000000u;
                if (a->opt.once)
                    return 0;
            } else {
                uint64_t wait = ks_backoff_next_us(a->attempt++, 500000, 60000000, &a->rng);
                ks_log(a->attempt == 1 ? KS_LOG_WARN : KS_LOG_DEBUG,
                       "report not delivered code=%s msg='%s' retry_in_ms=%llu",
                       ks_code_slug(err.code), err.msg, (unsigned long long)(wait / 1000));
                next_send = now + wait;
                if (a->opt.once && (err.code == KS_EAUTH || err.code == KS_EFORBIDDEN ||
                                    err.code == KS_EINVAL))
                    return 1;
            }
        } else if (!a->report_pending && now >= next_heartbeat) {
            bool required = false;
            if (ks_agent_client_heartbeat_ex(a->client, a->current->host.id,
                                             a->current->host.boot_id, a->generation, &required,
                                             &err) != KS_OK) {
                ks_log(KS_LOG_WARN, "heartbeat failed code=%s msg='%s', will resend the report",
                       ks_code_slug(err.code), err.msg);
                required = true;
            }
            if (required) {
                /* The server lost us (restart from an old backup, host deleted): resend. */
                a->report_pending = true;
                next_send = now;
            }
            next_heartbeat = now + a->opt.heartbeat_s * 1000000u;
        }
        if (watchdog_us && now >= next_watchdog) {
            /* The loop wakes at least every second, so half the period is kept. */
            ks_sdnotify_send(NULL, KS_SDNOTIFY_WATCHDOG, NULL);
            next_watchdog = now + watchdog_us;
        }
        if (interval_us && now >= next_selftest) {
            refresh_report(a, true);
            next_selftest = now + interval_us;
        }
        /* Cheap refresh: the operator file, the running VMs and the MCE counts may
         * have changed since the last turn. */
        refresh_report(a, false);

        uint64_t wake = a->report_pending ? next_send : next_heartbeat;
        if (interval_us && next_selftest < wake)
            wake = next_selftest;
        now = now_us();
        uint64_t sleep_us = wake > now ? wake - now : 0;
        if (sleep_us > 1000000)
            sleep_us = 1000000; /* notice defect-file and VM changes within a second */
        struct timespec ts = {(time_t)(sleep_us / 1000000u), (long)(sleep_us % 1000000u) * 1000};
        int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            ks_log(KS_LOG_INFO, "stopping signal=%d", sig);
            ks_sdnotify_send(NULL, KS_SDNOTIFY_STOPPING, NULL);
            return 0;
        }
        if (sig == SIGHUP) {
            ks_log(KS_LOG_INFO, "SIGHUP: re-reading the operator defect file");
            ks_sdnotify_reloading(NULL, NULL);
            refresh_report(a, false);
            ks_sdnotify_send(NULL, KS_SDNOTIFY_READY, NULL);
        }
    }
}

int ks_agent_cmd_run(int argc, char **argv)
{
    agent a = {0};
    a.opt = (run_options){
        .server = getenv("KINTSUGI_SERVER"),
        .token = getenv("KINTSUGI_AGENT_TOKEN"),
        .plan_token = getenv("KINTSUGI_PLAN_TOKEN"),
        .listen_addr = "127.0.0.1",
        .listen_port = KS_AGENT_DEFAULT_PORT,
        .serve = true,
        .driver = "dry-run",
        .state_dir = "/run/kintsugi",
        .selftest = true,
        .selftest_interval_s = 6 * 3600,
        .heartbeat_s = 10,
    };
    int pr = parse_args(&a.opt, argc, argv);
    if (pr != 0)
        return pr > 0 ? 0 : 2;
    ks_log_set_journald(ks_sdnotify_stderr_is_journal());

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* before any thread starts */

    int status = 1;
    ks_err err = {0};
    ks_discover_options dopt = KS_DISCOVER_OPTIONS_INIT;
    dopt.fixture_path = a.opt.fixture;
    dopt.host_id = a.opt.host_id;
    ks_defects_state_init(&a.defects);
    a.rng = now_us() ^ (uint64_t)getpid();
    if (ks_discover_host(&a.base, &dopt, &err) != KS_OK) {
        fprintf(stderr, "kintsugi-agent run: %s\n", err.msg);
        status = 2;
        goto done;
    }
    if (a.opt.serve && start_plan_server(&a, &err) != KS_OK) {
        fprintf(stderr, "kintsugi-agent run: plan endpoint: %s\n", err.msg);
        goto done;
    }
    if (ks_agent_client_new(&a.client, a.opt.server, a.opt.token, NULL, &err) != KS_OK) {
        fprintf(stderr, "kintsugi-agent run: %s\n", err.msg);
        status = 2;
        goto done;
    }
    /* The first report must be complete: an unreadable operator file here is fatal. */
    /* Generations must keep increasing across agent restarts within one boot, or
     * kintsugid would refuse the new agent's reports as older (409): start from
     * the clock, in milliseconds, and count up from there. */
    a.generation = now_us() / 1000u;
    if (build_report(&a.current, &a, true, &err) != KS_OK) {
        fprintf(stderr, "kintsugi-agent run: %s%s%s\n", err.field[0] ? err.field : "",
                err.field[0] ? ": " : "", err.msg);
        status = 2;
        goto done;
    }
    a.current->host.generation = a.generation;
    a.report_pending = true;
    ks_log(KS_LOG_INFO, "agent started host='%s' cpus=%u server='%s'", a.current->host.id,
           a.current->n_cpus, a.opt.server);
    status = run_loop(&a, &sigs);
done:
    ks_agent_server_stop(a.server);
    ks_agent_client_free(a.client);
    ks_report_free(a.base);
    ks_report_free(a.current);
    ks_report_free(a.scanned);
    ks_defects_state_destroy(&a.defects);
    return status;
}
