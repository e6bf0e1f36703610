/*
 * ks_sdnotify.c - sd_notify(3) client: one AF_UNIX datagram per notification.
 *
 * Owns nothing between calls: every send opens a SOCK_DGRAM|SOCK_CLOEXEC socket,
 * sends the state with sendto() and closes it, so concurrent callers (the main
 * thread and a watchdog thread) never share a descriptor.  $NOTIFY_SOCKET is
 * read on each call and left set; the unit files use NotifyAccess=main, so a
 * child process that inherited it could not notify on the daemon's behalf.
 *
 * Address forms (systemd's own): "/path/to/socket" (filesystem) and
 * "@name" (Linux abstract namespace: sun_path[0] = '\0', the name follows and
 * the address length counts exactly the bytes used, no terminating NUL).
 */
#include "ks_sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Longest state we format with ks_sdnotifyf(); systemd accepts far more, but a
 * notification is a few short lines. */
#define KS_SDNOTIFY_STATE_MAX 1024

ks_code ks_sdnotify_send(bool *sent_out, const char *state, ks_err *err)
{
    ks_code rc = KS_OK;
    int fd = -1;
    bool sent = false;
    const char *path = getenv("NOTIFY_SOCKET");

    if (!state || !state[0]) {
        rc = ks_err_set(err, KS_EINVAL, "empty notification state");
        goto done;
    }
    if (!path || !path[0])
        goto done; /* not started by systemd (or Type=simple): nothing to tell */

    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (path[0] != '/' && path[0] != '@') {
        rc = ks_err_set(err, KS_EINVAL, "NOTIFY_SOCKET '%s' is neither a path nor '@name'", path);
        goto done;
    }
    if (len < 2 || len > sizeof(sa.sun_path) - (path[0] == '/' ? 1 : 0)) {
        rc = ks_err_set(err, KS_EINVAL, "NOTIFY_SOCKET has a bad length (%zu bytes)", len);
        goto done;
    }
    memcpy(sa.sun_path, path, len);
    socklen_t sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract: the length above excludes any NUL */
    else
        sa_len++; /* filesystem: count the terminating NUL, as systemd does */

    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = ks_err_set(err, KS_EIO, "notify socket: errno %d", errno);
        goto done;
    }
    size_t n = strlen(state);
    ssize_t w;
    do {
        w = sendto(fd, state, n, MSG_NOSIGNAL, (const struct sockaddr *)&sa, sa_len);
    } while (w < 0 && errno == EINTR);
    if (w < 0 || (size_t)w != n) {
        rc = ks_err_set(err, KS_EIO, "notify '%s': errno %d", path, w < 0 ? errno : 0);
        goto done;
    }
    sent = true;
done:
    if (fd >= 0)
        close(fd);
    if (sent_out)
        *sent_out = sent;
    return rc;
}

ks_code ks_sdnotifyf(bool *sent_out, ks_err *err, const char *fmt, ...)
{
    char buf[KS_SDNOTIFY_STATE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        if (sent_out)
            *sent_out = false;
        return ks_err_set(err, KS_EINVAL, "notification longer than %d bytes",
                          KS_SDNOTIFY_STATE_MAX - 1);
    }
    return ks_sdnotify_send(sent_out, buf, err);
}

ks_code ks_sdnotify_reloading(bool *sent_out, ks_err *err)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long now_us =
        (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull;
    return ks_sdnotifyf(sent_out, err, "RELOADING=1\nMONOTONIC_USEC=%llu", now_us);
}

/* Decimal digits only (no sign, no spaces); false on anything else or overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

uint64_t ks_sdnotify_watchdog_usec(void)
{
    uint64_t usec = 0, pid = 0;
    if (!parse_u64(getenv("WATCHDOG_USEC"), &usec))
        return 0;
    /* systemd sets WATCHDOG_PID so that a child that inherited the environment
     * does not think the watchdog is meant for it. */
    const char *p = getenv("WATCHDOG_PID");
    if (p && *p && (!parse_u64(p, &pid) || pid != (uint64_t)getpid()))
        return 0;
    return usec;
}

bool ks_sdnotify_stderr_is_journal(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    const char *colon = v ? strchr(v, ':') : NULL;
    char dev_s[32];
    uint64_t dev = 0, ino = 0;
    struct stat st;
    if (!colon || (size_t)(colon - v) >= sizeof(dev_s))
        return false;
    memcpy(dev_s, v, (size_t)(colon - v));
    dev_s[colon - v] = '\0';
    if (!parse_u64(dev_s, &dev) || !parse_u64(colon + 1, &ino))
        return false;
    if (fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (uint64_t)st.st_dev == dev && (uint64_t)st.st_ino == ino;
}
