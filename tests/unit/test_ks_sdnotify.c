/*
 * test_ks_sdnotify.c - the sd_notify client against a fake systemd: a datagram
 * socket we bind ourselves (filesystem path and abstract '@' name), pointed to
 * by $NOTIFY_SOCKET, and read back with a bounded poll().
 */
#include "ks_test.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ks_sdnotify.h"

/* Binds a receiver at `name` ("/path" or "@abstract"); returns the fd. */
static int bind_receiver(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t len = strlen(name);
    assert_true(len < sizeof(sa.sun_path));
    memcpy(sa.sun_path, name, len);
    socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    else
        sl++;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sl), 0);
    return fd;
}

/* Receives one datagram within 5 s into buf (NUL-terminated); returns its length. */
static size_t recv_one(int fd, char *buf, size_t cap)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    ssize_t n = recv(fd, buf, cap - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    return (size_t)n;
}

static bool nothing_pending(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

static void test_sdnotify__unset_is_noop(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    bool sent = true;
    ks_err e;
    assert_int_equal(ks_sdnotify_send(&sent, KS_SDNOTIFY_READY, &e), KS_OK);
    assert_false(sent);
    setenv("NOTIFY_SOCKET", "", 1);
    sent = true;
    assert_int_equal(ks_sdnotify_send(&sent, KS_SDNOTIFY_READY, &e), KS_OK);
    assert_false(sent);
    unsetenv("NOTIFY_SOCKET");
}

static void test_sdnotify__path_socket(void **state)
{
    (void)state;
    char dir[256], sock[400], buf[512];
    ks_test_mkdtemp(dir, sizeof(dir));
    ks_test_path(sock, sizeof(sock), "%s/notify", dir);
    int fd = bind_receiver(sock);
    setenv("NOTIFY_SOCKET", sock, 1);
    bool sent = false;
    ks_err e;
    const char *states[] = {KS_SDNOTIFY_READY, KS_SDNOTIFY_WATCHDOG, KS_SDNOTIFY_STOPPING};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(ks_sdnotify_send(&sent, states[i], &e), KS_OK);
        assert_true(sent);
        assert_int_equal(recv_one(fd, buf, sizeof(buf)), strlen(states[i]));
        assert_string_equal(buf, states[i]);
    }
    assert_int_equal(ks_sdnotifyf(&sent, &e, "STATUS=%u hosts", 42u), KS_OK);
    recv_one(fd, buf, sizeof(buf));
    assert_string_equal(buf, "STATUS=42 hosts");
    /* RELOADING carries the monotonic time systemd >= 253 wants with it. */
    assert_int_equal(ks_sdnotify_reloading(&sent, &e), KS_OK);
    recv_one(fd, buf, sizeof(buf));
    assert_true(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
    assert_true(strlen(buf) > 27);
    for (const char *c = buf + 27; *c; c++)
        assert_true(*c >= '0' && *c <= '9');
    assert_true(nothing_pending(fd));
    close(fd);
    unsetenv("NOTIFY_SOCKET");
    ks_test_rmdir(dir);
}

static void test_sdnotify__abstract_socket(void **state)
{
    (void)state;
    char name[108], buf[256];
    /* A name unique to this process, so parallel runs do not collide. */
    ks_test_path(name, sizeof(name), "@ks-test-sdnotify-%ld", (long)getpid());
    int fd = bind_receiver(name);
    setenv("NOTIFY_SOCKET", name, 1);
    bool sent = false;
    ks_err e;
    assert_int_equal(ks_sdnotify_send(&sent, KS_SDNOTIFY_READY, &e), KS_OK);
    assert_true(sent);
    recv_one(fd, buf, sizeof(buf));
    assert_string_equal(buf, "READY=1");
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void test_sdnotify__errors(void **state)
{
    (void)state;
    bool sent = true;
    ks_err e;
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(ks_sdnotify_send(&sent, KS_SDNOTIFY_READY, &e), KS_EINVAL);
    assert_false(sent);
    char longp[300];
    memset(longp, 'x', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longp, 1);
    assert_int_equal(ks_sdnotify_send(&sent, KS_SDNOTIFY_READY, &e), KS_EINVAL);
    setenv("NOTIFY_SOCKET", "@", 1);
    assert_int_equal(ks_sdnotify_send(&sent, KS_SDNOTIFY_READY, &e), KS_EINVAL);
    /* Nobody listening: the send fails, the caller decides (it logs and goes on). */
    setenv("NOTIFY_SOCKET", "/nonexistent-ks-dir/notify", 1);
    assert_int_equal(ks_sdnotify_send(&sent, KS_SDNOTIFY_READY, &e), KS_EIO);
    assert_false(sent);
    assert_int_equal(ks_sdnotify_send(&sent, "", &e), KS_EINVAL);
    assert_int_equal(ks_sdnotify_send(&sent, NULL, &e), KS_EINVAL);
    char big[2000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(ks_sdnotifyf(&sent, &e, "STATUS=%s", big), KS_EINVAL);
    unsetenv("NOTIFY_SOCKET");
}

static void test_sdnotify__watchdog_usec(void **state)
{
    (void)state;
    char pid[32];
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_int_equal(ks_sdnotify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "30000000", 1);
    assert_int_equal(ks_sdnotify_watchdog_usec(), 30000000u);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(ks_sdnotify_watchdog_usec(), 30000000u);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1); /* meant for another process */
    assert_int_equal(ks_sdnotify_watchdog_usec(), 0);
    setenv("WATCHDOG_PID", "garbage", 1);
    assert_int_equal(ks_sdnotify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    const char *bad[] = {"", "-5", "12abc", " 1", "99999999999999999999999", "0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("WATCHDOG_USEC", bad[i], 1);
        assert_int_equal(ks_sdnotify_watchdog_usec(), 0);
    }
    unsetenv("WATCHDOG_USEC");
}

static void test_sdnotify__journal_stream(void **state)
{
    (void)state;
    struct stat st;
    char v[64];
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    unsetenv("JOURNAL_STREAM");
    assert_false(ks_sdnotify_stderr_is_journal());
    snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", v, 1);
    assert_true(ks_sdnotify_stderr_is_journal());
    /* Inherited by a process whose stderr goes elsewhere: another inode. */
    snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino + 1);
    setenv("JOURNAL_STREAM", v, 1);
    assert_false(ks_sdnotify_stderr_is_journal());
    const char *bad[] = {"", ":", "12", "a:b", "1:2:3", "-1:5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("JOURNAL_STREAM", bad[i], 1);
        assert_false(ks_sdnotify_stderr_is_journal());
    }
    unsetenv("JOURNAL_STREAM");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sdnotify__unset_is_noop),
        cmocka_unit_test(test_sdnotify__path_socket),
        cmocka_unit_test(test_sdnotify__abstract_socket),
        cmocka_unit_test(test_sdnotify__errors),
        cmocka_unit_test(test_sdnotify__watchdog_usec),
        cmocka_unit_test(test_sdnotify__journal_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
