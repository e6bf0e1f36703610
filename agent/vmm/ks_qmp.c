/*
 * ks_qmp.c - QMP client over a unix socket.
 *
 * The connection keeps one receive buffer; each reply is a '\n'-terminated JSON
 * object.  Every wait uses poll() against an absolute monotonic deadline, so a
 * stuck QEMU costs at most the caller's timeout.  Replies are matched by "id".
 */
#include "ks_qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct ks_qmp {
    int fd;
    char *buf;
    size_t len, cap;
    uint64_t next_id;
    json_t *greeting;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Reads one line (without '\n') into a new json value. */
static ks_code read_msg(json_t **out, ks_qmp *q, uint64_t deadline, ks_err *err)
{
    for (;;) {
        char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
        if (nl) {
            size_t line_len = (size_t)(nl - q->buf);
            json_error_t je;
            json_t *msg = json_loadb(q->buf, line_len, 0, &je);
            memmove(q->buf, nl + 1, q->len - line_len - 1);
            q->len -= line_len + 1;
            if (!msg || !json_is_object(msg)) {
                json_decref(msg);
                return ks_err_set(err, KS_EUNAVAIL, "qmp: malformed message: %s", je.text);
            }
            *out = msg;
            return KS_OK;
        }
        if (q->len + 4096 > q->cap) {
            size_t ncap = q->cap ? q->cap * 2 : 16384;
            if (ncap > KS_QMP_MAX_LINE)
                return ks_err_set(err, KS_EUNAVAIL, "qmp: message above %u bytes",
                                  KS_QMP_MAX_LINE);
            char *nb = realloc(q->buf, ncap);
            if (!nb)
                return ks_err_set(err, KS_ENOMEM, "out of memory");
            q->buf = nb;
            q->cap = ncap;
        }
        uint64_t now = now_us();
        if (now >= deadline)
            return ks_err_set(err, KS_EUNAVAIL, "qmp: timed out waiting for qemu");
        struct pollfd pfd = {.fd = q->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return ks_err_set(err, KS_EUNAVAIL, "qmp: poll: %s", strerrordesc_np(errno));
        if (pr == 0)
            continue;
        ssize_t n = recv(q->fd, q->buf + q->len, q->cap - q->len, 0);
        if (n == 0)
            return ks_err_set(err, KS_EUNAVAIL, "qmp: qemu closed the connection");
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return ks_err_set(err, KS_EUNAVAIL, "qmp: recv: %s", strerrordesc_np(errno));
        }
        q->len += (size_t)n;
    }
}

static ks_code send_all(ks_qmp *q, const char *s, size_t len, uint64_t deadline, ks_err *err)
{
    while (len > 0) {
        uint64_t now = now_us();
        if (now >= deadline)
            return ks_err_set(err, KS_EUNAVAIL, "qmp: timed out sending");
        struct pollfd pfd = {.fd = q->fd, .events = POLLOUT};
        int pr = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
        if (pr <= 0)
            continue;
        ssize_t n = send(q->fd, s, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return ks_err_set(err, KS_EUNAVAIL, "qmp: send: %s", strerrordesc_np(errno));
        }
        s += n;
        len -= (size_t)n;
    }
    return KS_OK;
}

static ks_code execute(json_t **out, ks_qmp *q, const char *cmd, const json_t *args,
                       uint64_t deadline, ks_err *err)
{
    ks_code rc = KS_OK;
    char *line = NULL;
    json_t *msg = NULL;
    uint64_t id = ++q->next_id;
    json_t *req = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t)id);
    if (!req || (args && json_object_set(req, "arguments", (json_t *)args) != 0)) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    line = json_dumps(req, JSON_COMPACT);
    if (!line) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = send_all(q, line, strlen(line), deadline, err)) != KS_OK ||
        (rc = send_all(q, "\n", 1, deadline, err)) != KS_OK)
        goto done;
    for (;;) {
        json_decref(msg);
        msg = NULL;
        if ((rc = read_msg(&msg, q, deadline, err)) != KS_OK)
            goto done;
        if (json_object_get(msg, "event"))
            continue; /* asynchronous events are not replies */
        json_t *rid = json_object_get(msg, "id");
        if (rid && (!json_is_integer(rid) || (uint64_t)json_integer_value(rid) != id))
            continue; /* reply to an earlier, timed-out command */
        break;
    }
    json_t *ret = json_object_get(msg, "return");
    json_t *qerr = json_object_get(msg, "error");
    if (qerr) {
        const char *cls = json_string_value(json_object_get(qerr, "class"));
        const char *desc = json_string_value(json_object_get(qerr, "desc"));
        rc = ks_err_set(err,
                        cls && strcmp(cls, "CommandNotFound") == 0 ? KS_EUNSUPPORTED : KS_EINVAL,
                        "qmp '%s': %s: %s", cmd, cls ? cls : "?", desc ? desc : "?");
        goto done;
    }
    if (!ret) {
        rc = ks_err_set(err, KS_EUNAVAIL, "qmp '%s': reply without return or error", cmd);
        goto done;
    }
    if (out)
        *out = json_incref(ret);
done:
    json_decref(msg);
    json_decref(req);
    free(line);
    return rc;
}

ks_code ks_qmp_connect(ks_qmp **out, const char *path, uint64_t timeout_us, ks_err *err)
{
    uint64_t deadline = now_us() + timeout_us;
    ks_code rc = KS_OK;
    ks_qmp *q = calloc(1, sizeof(*q));
    if (!q)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    q->fd = -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        rc = ks_err_set(err, KS_EINVAL, "qmp socket path '%s' is too long", path);
        goto done;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (q->fd < 0) {
        rc = ks_err_set(err, KS_EIO, "socket: %s", strerrordesc_np(errno));
        goto done;
    }
    if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        rc = ks_err_set(err, KS_EUNAVAIL, "cannot connect to qmp '%s': %s", path,
                        strerrordesc_np(errno));
        goto done;
    }
    if ((rc = read_msg(&q->greeting, q, deadline, err)) != KS_OK)
        goto done;
    if (!json_is_object(json_object_get(q->greeting, "QMP"))) {
        rc = ks_err_set(err, KS_EUNAVAIL, "'%s' is not a qmp socket", path);
        goto done;
    }
    if ((rc = execute(NULL, q, "qmp_capabilities", NULL, deadline, err)) != KS_OK)
        goto done;
    *out = q;
    q = NULL;
done:
    ks_qmp_close(q);
    return rc;
}

const json_t *ks_qmp_greeting(const ks_qmp *q)
{
    return q->greeting;
}

void ks_qmp_version(const ks_qmp *q, int *major, int *minor, int *micro)
{
    json_t *v = json_object_get(
        json_object_get(json_object_get(q->greeting, "QMP"), "version"), "qemu");
    *major = (int)json_integer_value(json_object_get(v, "major"));
    *minor = (int)json_integer_value(json_object_get(v, "minor"));
    *micro = (int)json_integer_value(json_object_get(v, "micro"));
}

ks_code ks_qmp_execute(json_t **out, ks_qmp *q, const char *cmd, const json_t *args,
                       uint64_t timeout_us, ks_err *err)
{
    return execute(out, q, cmd, args, now_us() + timeout_us, err);
}

void ks_qmp_close(ks_qmp *q)
{
    if (!q)
        return;
    if (q->fd >= 0)
        close(q->fd);
    json_decref(q->greeting);
    free(q->buf);
    free(q);
}
