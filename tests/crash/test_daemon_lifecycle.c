/*
 * test_daemon_lifecycle.c - kintsugid under a fake systemd: the notifications it
 * sends on $NOTIFY_SOCKET through its life (READY=1 once serving, WATCHDOG=1 at
 * half of $WATCHDOG_USEC, RELOADING=1 then READY=1 around a SIGHUP that re-reads
 * the log level from --reload-file, STOPPING=1 on SIGTERM), and a clean exit.
 * Lives with the crash test: both are about how the daemon starts and stops.
 *
 * SPEC: deploy/kintsugid.service (Type=notify, WatchdogSec, ExecReload),
 *       docs/reliability.md#daemons.
 */
#include "integration/test_api_harness.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Receives one datagram within `ms` into buf; returns false on timeout. */
static bool recv_note(int fd, char *buf, size_t cap, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return false;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    if (n < 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* Waits up to `ms` for a notification containing `what` (skipping watchdog pings
 * unless that is what we wait for); counts the pings seen meanwhile. */
static bool wait_note(int fd, const char *what, int ms, int *pings)
{
    uint64_t deadline = kd_mono_ms() + (uint64_t)ms;
    char buf[1024];
    while (kd_mono_ms() < deadline) {
        if (!recv_note(fd, buf, sizeof(buf), (int)(deadline - kd_mono_ms())))
            return false;
        if (strstr(buf, "WATCHDOG=1") && pings)
            (*pings)++;
        if (strstr(buf, what))
            return true;
    }
    return false;
}

/* Watchdog pings received during `ms`. */
static int count_pings(int fd, int ms)
{
    int n = 0;
    char buf[256];
    uint64_t deadline = kd_mono_ms() + (uint64_t)ms;
    for (uint64_t now; (now = kd_mono_ms()) < deadline;)
        if (recv_note(fd, buf, sizeof(buf), (int)(deadline - now)) && strstr(buf, "WATCHDOG=1"))
            n++;
    return n;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_lifecycle__notify_watchdog_reload_stop(void **state)
{
    (void)state;
    kd d;
    memset(&d, 0, sizeof(d));
    ks_test_mkdtemp(d.dir, sizeof(d.dir));
    char sock[700], conf[700];
    ks_test_path(sock, sizeof(sock), "%s/notify", d.dir);
    ks_test_path(conf, sizeof(conf), "%s/kintsugid.conf", d.dir);
    write_text(conf, "# reloadable settings\nKS_LOG_LEVEL=info\nKS_LOG_JSON=0\n");

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(sock) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);

    /* The child inherits these; WATCHDOG_PID unset means "for whoever reads it". */
    setenv("NOTIFY_SOCKET", sock, 1);
    setenv("WATCHDOG_USEC", "400000", 1);
    const char *args[] = {"--reload-file", conf, NULL};
    kd_setup(&d, args);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");

    /* READY=1 was sent before /healthz answered (kd_setup waited for that). */
    int pings = 0;
    assert_true(wait_note(fd, "READY=1", 5000, &pings));
    /* Pings every 200 ms: at least 4 in 1.5 s even on a loaded machine. */
    pings = count_pings(fd, 1500);
    fprintf(stderr, "lifecycle: %d watchdog pings in 1.5 s\n", pings);
    assert_true(pings >= 4);

    /* Reload: a new log level from the file, announced RELOADING=1 then READY=1. */
    write_text(conf, "KS_LOG_LEVEL=debug\nKS_LOG_JSON=0\nKS_THREADS=7\n");
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    assert_true(wait_note(fd, "RELOADING=1", 5000, NULL));
    assert_true(wait_note(fd, "READY=1", 5000, NULL));
    char *log = NULL;
    bool seen = false;
    uint64_t deadline = kd_mono_ms() + 5000;
    while (!seen && kd_mono_ms() < deadline) {
        free(log);
        log = ks_test_read_file(d.log, NULL);
        seen = log && strstr(log, "log_level=debug") && strstr(log, "threads");
        if (!seen)
            kd_nap_ms(50);
    }
    if (!seen)
        fail_msg("no reload log line; log:\n%s", log ? log : "");
    free(log);
    /* Still serving after the reload. */
    resp r;
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/hosts", d.reader, NULL), 200);
    resp_free(&r);
    /* A bad file keeps the running settings. */
    write_text(conf, "KS_LOG_LEVEL=loud\n");
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    assert_true(wait_note(fd, "READY=1", 5000, NULL));
    assert_int_equal(kd_http(&d, &r, "GET", "/healthz", NULL, NULL), 200);
    resp_free(&r);

    /* SIGTERM: STOPPING=1, then a clean exit (kd_teardown checks status 0). */
    pid_t pid = d.pid;
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_true(wait_note(fd, "STOPPING=1", 10000, NULL));
    kd_teardown(&d, true);
    close(fd);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle__notify_watchdog_reload_stop),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
