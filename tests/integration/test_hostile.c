/*
 * test_hostile.c - a real kintsugid on loopback against hostile clients.
 *
 * Every route is taken from the daemon's own GET /v1/openapi.json, so a route
 * added later is covered without editing this file: without a token (401), with
 * an unknown token (401), with a reader token on mutating methods (403) and with
 * an agent token on another host (403).  Then oversized and deeply nested bodies,
 * idle half-sent requests (slowloris), 2,000 connections against
 * --max-connections 256, odd ids and absurd numbers.  The daemon must answer
 * each with a 4xx (never 5xx, never a crash), keep serving others, and exit
 * cleanly (leak-free under ASan) at the end.
 *
 * SPEC: docs/api.md#authentication-and-roles, docs/api.md#errors,
 *       docs/reliability.md#hostile-clients.
 * Every loop is bounded in iterations and by a deadline; sockets are loopback only.
 */
#include "integration/test_api_harness.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>

#define MAX_BODY 1048576
#define CONN_TIMEOUT_S 2
#define MAX_CONNS 256

static kd D;
static const char *const daemon_args[] = {
    "--max-body", "1048576", "--connection-timeout", "2", "--max-connections", "256", NULL};

static int setup(void **state)
{
    (void)state;
    memset(&D, 0, sizeof(D));
    kd_setup(&D, daemon_args);
    /* Two hosts so that routes with {id} reach a real object. */
    assert_int_equal(kd_put_report(&D, D.admin, "h-a", 4, 4, 1, "boot-a", -1, NULL, NULL), 201);
    assert_int_equal(kd_put_report(&D, D.admin, "h-b", 4, 4, 1, "boot-b", -1, NULL, NULL), 201);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kd_teardown(&D, true);
    return 0;
}

static void assert_alive(void)
{
    resp r;
    assert_int_equal(kd_http(&D, &r, "GET", "/healthz", NULL, NULL), 200);
    resp_free(&r);
}

/* ---- raw sockets ---- */

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)D.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void raw_send(int fd, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server may close early (that is what we test) */
        off += (size_t)w;
    }
}

/* Reads until EOF or `ms`; returns the HTTP status of the first line (0 if none). */
static int raw_status(int fd, int ms)
{
    char buf[2048];
    size_t len = 0;
    uint64_t deadline = kd_mono_ms() + (uint64_t)ms;
    while (len + 1 < sizeof(buf) && kd_mono_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n"))
            break;
    }
    buf[len] = '\0';
    int status = 0;
    if (strncmp(buf, "HTTP/1.", 7) == 0 && len >= 12)
        status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    return status;
}

/* True when the peer closed (EOF or reset) within `ms`. */
static bool raw_closed_within(int fd, int ms)
{
    uint64_t deadline = kd_mono_ms() + (uint64_t)ms;
    char b[512];
    while (kd_mono_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return true;
    }
    return false;
}

/* ---- every route x auth ---- */

static bool is_mutating(const char *m)
{
    return strcmp(m, "get") != 0 && strcmp(m, "head") != 0;
}

/* Replaces {param} segments: {id} -> host, anything else -> "x1". */
static void fill_path(char *out, size_t cap, const char *tmpl, const char *host)
{
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 1 < cap;) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            assert_non_null(end);
            const char *val = strncmp(p, "{id}", 4) == 0 ? host : "x1";
            size_t vl = strlen(val);
            assert_true(o + vl < cap);
            memcpy(out + o, val, vl);
            o += vl;
            p = end + 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

static void upper(char *dst, const char *src, size_t cap)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++)
        dst[i] = (char)(src[i] >= 'a' && src[i] <= 'z' ? src[i] - 32 : src[i]);
    dst[i] = '\0';
}

static long call(const char *method, const char *path, const char *token, const char *auth_raw)
{
    const char *extra[] = {auth_raw, NULL};
    resp r;
    bool body = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
    long s =
        kd_http_ex(&D, &r, method, path, auth_raw ? NULL : token, body ? "application/json" : NULL,
                   body ? "{}" : NULL, body ? 2 : 0, auth_raw ? extra : NULL);
    resp_free(&r);
    return s;
}

static void test_hostile__auth_every_route(void **state)
{
    (void)state;
    resp doc;
    assert_int_equal(kd_http(&D, &doc, "GET", "/v1/openapi.json", NULL, NULL), 200);
    json_t *paths = json_object_get(doc.json, "paths");
    assert_true(json_object_size(paths) >= 10);
    const char *tmpl;
    json_t *ops;
    size_t n_ops = 0, n_public = 0;
    json_object_foreach(paths, tmpl, ops)
    {
        const char *m;
        json_t *op;
        json_object_foreach(ops, m, op)
        {
            if (strcmp(m, "get") && strcmp(m, "put") && strcmp(m, "post") && strcmp(m, "delete") &&
                strcmp(m, "patch"))
                continue; /* "parameters" and other non-operation keys */
            char method[16], path_b[512], path_a[512];
            upper(method, m, sizeof(method));
            fill_path(path_b, sizeof(path_b), tmpl, "h-b");
            fill_path(path_a, sizeof(path_a), tmpl, "h-a");
            json_t *sec = json_object_get(op, "security");
            bool is_public = json_is_array(sec) && json_array_size(sec) == 0;
            n_ops++;
            if (is_public) {
                n_public++;
                long s = call(method, path_b, NULL, NULL);
                if (s < 200 || s >= 500)
                    fail_msg("public %s %s -> %ld", method, path_b, s);
                continue;
            }
            long s = call(method, path_b, NULL, NULL);
            if (s != 401)
                fail_msg("no token: %s %s -> %ld (want 401)", method, path_b, s);
            s = call(method, path_b, "ks_0000000000000000000000000000000000000000", NULL);
            if (s != 401)
                fail_msg("unknown token: %s %s -> %ld (want 401)", method, path_b, s);
            s = call(method, path_b, NULL, "Authorization: Basic YWRtaW46YWRtaW4=");
            if (s != 401)
                fail_msg("basic auth: %s %s -> %ld (want 401)", method, path_b, s);
            s = call(method, path_b, D.reader, NULL);
            if (is_mutating(m) && s != 403)
                fail_msg("reader: %s %s -> %ld (want 403)", method, path_b, s);
            if (!is_mutating(m) && (s == 401 || s == 403 || s >= 500))
                fail_msg("reader: %s %s -> %ld (want it allowed)", method, path_b, s);
            /* An agent acting on another host's objects. */
            s = call(method, path_b, D.agent_a, NULL);
            bool other_host = strstr(tmpl, "{id}") != NULL;
            if ((is_mutating(m) || other_host) && s != 403)
                fail_msg("agent h-a: %s %s -> %ld (want 403)", method, path_b, s);
            if (s == 401 || s >= 500)
                fail_msg("agent h-a: %s %s -> %ld", method, path_b, s);
            (void)path_a;
        }
    }
    fprintf(stderr, "hostile: %zu operations checked (%zu public)\n", n_ops, n_public);
    assert_true(n_ops >= 20);
    resp_free(&doc);
    /* The agent's own host stays writable: the 403s above are about the target. */
    assert_int_equal(kd_put_report(&D, D.agent_a, "h-a", 4, 4, 2, "boot-a", -1, NULL, NULL), 200);
    assert_int_equal(kd_put_report(&D, D.agent_a, "h-b", 4, 4, 2, "boot-b", -1, NULL, NULL), 403);
    assert_alive();
}

/* ---- bodies ---- */

static void test_hostile__huge_body(void **state)
{
    (void)state;
    /* Content-Length above --max-body: refused before the body is read. */
    int fd = raw_connect();
    char hdr[512];
    int n = snprintf(hdr, sizeof(hdr),
                     "POST /v1/vms HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                     D.admin, 4 * MAX_BODY);
    raw_send(fd, hdr, (size_t)n);
    assert_int_equal(raw_status(fd, 10000), 413);
    close(fd);

    /* Chunked (no length up front): discarded past the limit, still 413. */
    fd = raw_connect();
    n = snprintf(hdr, sizeof(hdr),
                 "PUT /v1/hosts/h-a/report HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n",
                 D.admin);
    raw_send(fd, hdr, (size_t)n);
    size_t chunk = 65536;
    char *buf = malloc(chunk + 32);
    assert_non_null(buf);
    int hl = snprintf(buf, 32, "%zx\r\n", chunk);
    memset(buf + hl, ' ', chunk);
    buf[0 + hl] = '[';
    memcpy(buf + hl + chunk, "\r\n", 2);
    for (int i = 0; i < 2 * MAX_BODY / (int)chunk; i++)
        raw_send(fd, buf, (size_t)hl + chunk + 2);
    raw_send(fd, "0\r\n\r\n", 5);
    free(buf);
    assert_int_equal(raw_status(fd, 10000), 413);
    close(fd);

    /* Through libcurl too, a body just over the limit. */
    size_t big = MAX_BODY + 1;
    char *body = malloc(big);
    assert_non_null(body);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    resp r;
    long s = kd_http_ex(&D, &r, "POST", "/v1/vms", D.admin, "application/json", body, big, NULL);
    assert_true(s == 413 || s == 0); /* 0: curl saw the close while still sending */
    resp_free(&r);
    free(body);
    assert_alive();
}

static void test_hostile__deep_nesting(void **state)
{
    (void)state;
    const size_t depth = 100000;
    const char *targets[][2] = {{"POST", "/v1/vms"},
                                {"PUT", "/v1/hosts/h-a/report"},
                                {"POST", "/v1/pools"},
                                {"POST", "/v1/policies/feature-bans"},
                                {"POST", "/v1/hosts/h-a/heartbeat"}};
    char *body = malloc(2 * depth + 16);
    assert_non_null(body);
    for (int shape = 0; shape < 3; shape++) {
        size_t len = 0;
        if (shape == 0) { /* [[[[...  unterminated */
            memset(body, '[', depth);
            len = depth;
        } else if (shape == 1) { /* [[[...]]] balanced */
            memset(body, '[', depth);
            memset(body + depth, ']', depth);
            len = 2 * depth;
        } else { /* {"a":{"a":... */
            for (size_t i = 0; i + 5 < depth; i += 5)
                memcpy(body + len, "{\"a\":", 5), len += 5;
        }
        for (size_t t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
            resp r;
            long s = kd_http_ex(&D, &r, targets[t][0], targets[t][1], D.admin, "application/json",
                                body, len, NULL);
            if (s != 400)
                fail_msg("nesting shape %d: %s %s -> %ld (want 400)", shape, targets[t][0],
                         targets[t][1], s);
            resp_free(&r);
        }
    }
    free(body);
    assert_alive();
}

/* A raw NUL inside a JSON body (jansson takes one after a number): refused
 * on every JSON route before any handler stores the text (fuzz api crash-2). */
static void test_hostile__nul_in_body(void **state)
{
    (void)state;
    static const char body[] = "{\"generation\":0\0,\"host\":{}}";
    const char *targets[][2] = {{"POST", "/v1/vms"},
                                {"PUT", "/v1/hosts/h-a/report"},
                                {"POST", "/v1/pools"},
                                {"POST", "/v1/policies/feature-bans"}};
    for (size_t t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
        resp r;
        long s = kd_http_ex(&D, &r, targets[t][0], targets[t][1], D.admin, "application/json",
                            body, sizeof(body) - 1, NULL);
        if (s != 400)
            fail_msg("%s %s with a NUL in its body -> %ld (want 400)", targets[t][0],
                     targets[t][1], s);
        resp_free(&r);
    }
    resp r;
    assert_int_equal(kd_http(&D, &r, "GET", "/v1/hosts/h-a", D.admin, NULL), 200);
    resp_free(&r);
    assert_alive();
}

/* ---- connections ---- */

static void test_hostile__slowloris(void **state)
{
    (void)state;
    enum { N = 32 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect();
        /* A request that never ends: headers started, no blank line. */
        const char *part = "GET /v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
        raw_send(fds[i], part, strlen(part));
    }
    /* Meanwhile others are served. */
    uint64_t t0 = kd_mono_ms();
    for (int i = 0; i < 5; i++)
        assert_alive();
    /* Each idle connection is closed after --connection-timeout (bounded wait). */
    uint64_t deadline = t0 + (CONN_TIMEOUT_S + 8) * 1000u;
    int closed = 0;
    for (int i = 0; i < N; i++) {
        uint64_t now = kd_mono_ms();
        closed += raw_closed_within(fds[i], now < deadline ? (int)(deadline - now) : 0);
    }
    uint64_t took = kd_mono_ms() - t0;
    fprintf(stderr, "hostile: slowloris %d/%d closed after %llu ms\n", closed, N,
            (unsigned long long)took);
    assert_int_equal(closed, N);
    assert_true(took >= (CONN_TIMEOUT_S - 1) * 1000u);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    assert_alive();
}

/* Sockets the process `pid` holds (its /proc/PID/fd entries that are sockets). */
static int count_sockets(pid_t pid)
{
    char dir[64], link[320], target[128];
    snprintf(dir, sizeof(dir), "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
        ssize_t l = readlink(link, target, sizeof(target) - 1);
        if (l > 0) {
            target[l] = '\0';
            n += strncmp(target, "socket:", 7) == 0;
        }
    }
    closedir(d);
    return n;
}

static void test_hostile__many_connections(void **state)
{
    (void)state;
    enum { N = 2000 };
    int *fds = malloc(N * sizeof(int));
    assert_non_null(fds);
    int opened = 0;
    uint64_t deadline = kd_mono_ms() + 30000;
    for (int i = 0; i < N && kd_mono_ms() < deadline; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(fd >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)D.port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        if (rc != 0 && errno != EINPROGRESS) {
            close(fd);
            continue;
        }
        fds[opened++] = fd;
    }
    assert_true(opened > 1000);
    /* The limit holds on the server side: sample how many sockets kintsugid has
     * open (accepted connections + listener + internal) for a while, below the
     * idle timeout.  Connections beyond the limit wait in the kernel's accept
     * queue or are accepted and closed at once; neither costs the server a slot. */
    int max_socks = 0;
    uint64_t t0 = kd_mono_ms();
    while (kd_mono_ms() - t0 < (CONN_TIMEOUT_S * 1000u) * 3 / 4) {
        int n = count_sockets(D.pid);
        if (n > max_socks)
            max_socks = n;
        kd_nap_ms(50);
    }
    int closed = 0;
    for (int i = 0; i < opened; i++) {
        char b[64];
        ssize_t n = recv(fds[i], b, sizeof(b), MSG_DONTWAIT);
        closed += n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
    }
    fprintf(stderr,
            "hostile: %d connections opened; kintsugid held at most %d sockets "
            "(limit %d); %d closed by the server\n",
            opened, max_socks, MAX_CONNS, closed);
    assert_true(max_socks <= MAX_CONNS + 8);
    /* It did take connections (the test loaded it): at least half the limit. */
    assert_true(max_socks >= MAX_CONNS / 2);
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    free(fds);
    /* And the server is still there for everyone else once they are gone. */
    uint64_t until = kd_mono_ms() + 10000;
    long s = 0;
    while (kd_mono_ms() < until) {
        resp r;
        s = kd_http(&D, &r, "GET", "/healthz", NULL, NULL);
        resp_free(&r);
        if (s == 200)
            break;
        kd_nap_ms(50);
    }
    assert_int_equal(s, 200);
    resp r;
    assert_int_equal(kd_http(&D, &r, "GET", "/v1/hosts", D.reader, NULL), 200);
    resp_free(&r);
}

/* ---- odd ids ---- */

static void test_hostile__odd_ids(void **state)
{
    (void)state;
    char longid[6000];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    const char *ids[] = {
        "..%2f..%2fetc",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "..",
        "a%20b",
        "%C3%A9t%C3%A9",
        "%F0%9F%92%A9",
        "%ff%fe",
        "%C0%AF",
        "a%0d%0aX-Injected:%201",
        "a%22b%27c%3c%3e",
        "%25",
        "a;b",
        "*",
        "a%2Fb",
        "%7B%7D",
        "-1",
        "18446744073709551616",
        longid,
    };
    /* method, path before the id, path after it */
    const char *tmpls[][3] = {
        {"GET", "/v1/hosts/", ""},
        {"GET", "/v1/hosts/", "/cpus"},
        {"DELETE", "/v1/hosts/", ""},
        {"PUT", "/v1/hosts/", "/report"},
        {"POST", "/v1/hosts/", "/heartbeat"},
        {"POST", "/v1/hosts/", "/drain"},
        {"GET", "/v1/vms/", ""},
        {"DELETE", "/v1/vms/", ""},
        {"GET", "/v1/pools/", ""},
        {"DELETE", "/v1/pools/", ""},
        {"DELETE", "/v1/policies/feature-bans/", ""},
    };
    char *path = malloc(sizeof(longid) + 64);
    assert_non_null(path);
    size_t n = 0;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        for (size_t t = 0; t < sizeof(tmpls) / sizeof(tmpls[0]); t++) {
            snprintf(path, sizeof(longid) + 64, "%s%s%s", tmpls[t][1], ids[i], tmpls[t][2]);
            const char *m = tmpls[t][0];
            bool body = strcmp(m, "GET") != 0;
            resp r;
            long s = kd_http_ex(&D, &r, m, path, D.admin, body ? "application/json" : NULL,
                                body ? "{}" : NULL, body ? 2 : 0, NULL);
            /* 414: the URI is longer than the server's request buffer. */
            if (s != 400 && s != 404 && s != 414)
                fail_msg("%s %.80s -> %ld (want 400/404)", m, path, s);
            resp_free(&r);
            n++;
        }
    }
    free(path);
    /* A VM name that is not a name. */
    const char *bad_names[] = {"../etc", "a b", "", "\\u0000", "\\u00e9", "a/b"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"name\":\"%s\",\"vcpus\":1,\"memory_mib\":64}",
                 bad_names[i]);
        resp r;
        long s = kd_http(&D, &r, "POST", "/v1/vms", D.admin, body);
        if (s != 400)
            fail_msg("VM name '%s' -> %ld (want 400)", bad_names[i], s);
        resp_free(&r);
    }
    fprintf(stderr, "hostile: %zu odd-id requests\n", n);
    assert_alive();
}

/* SPEC: an id is the whole path segment.  An encoded NUL must not truncate the
 * id and address another object: "DELETE /v1/vms/v%00x" must not delete "v". */
static void test_hostile__nul_in_path(void **state)
{
    (void)state;
    resp r0;
    assert_int_equal(kd_http(&D, &r0, "POST", "/v1/vms", D.admin,
                             "{\"name\":\"nul-victim\",\"vcpus\":1,\"memory_mib\":64}"),
                     201);
    resp_free(&r0);
    const char *nul_paths[][2] = {{"DELETE", "/v1/vms/nul-victim%00x"},
                                  {"DELETE", "/v1/vms/nul-victim%00"},
                                  {"GET", "/v1/vms/nul-victim%00/../x"},
                                  {"POST", "/v1/hosts/h-b%00/drain"}};
    for (size_t i = 0; i < sizeof(nul_paths) / sizeof(nul_paths[0]); i++) {
        bool body = strcmp(nul_paths[i][0], "POST") == 0;
        long s =
            kd_http_ex(&D, &r0, nul_paths[i][0], nul_paths[i][1], D.admin,
                       body ? "application/json" : NULL, body ? "{}" : NULL, body ? 2 : 0, NULL);
        resp_free(&r0);
        if (s != 400 && s != 404)
            fail_msg("%s %s -> %ld (want 400/404)", nul_paths[i][0], nul_paths[i][1], s);
    }
    assert_int_equal(kd_http(&D, &r0, "GET", "/v1/vms/nul-victim", D.admin, NULL), 200);
    resp_free(&r0);
    assert_int_equal(kd_http(&D, &r0, "GET", "/v1/hosts/h-b", D.admin, NULL), 200);
    assert_string_equal(json_string_value(json_object_get(r0.json, "state")), "ready");
    resp_free(&r0);
    assert_int_equal(kd_http(&D, &r0, "DELETE", "/v1/vms/nul-victim", D.admin, NULL), 204);
    resp_free(&r0);
    const char *ids[] = {"a%00b", "%00", "h-a%00"};
    const char *tmpls[][3] = {{"GET", "/v1/hosts/", ""},
                              {"PUT", "/v1/hosts/", "/report"},
                              {"POST", "/v1/hosts/", "/heartbeat"},
                              {"GET", "/v1/vms/", ""}};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        for (size_t t = 0; t < sizeof(tmpls) / sizeof(tmpls[0]); t++) {
            char path[128];
            snprintf(path, sizeof(path), "%s%s%s", tmpls[t][1], ids[i], tmpls[t][2]);
            bool body = strcmp(tmpls[t][0], "GET") != 0;
            long s =
                kd_http_ex(&D, &r0, tmpls[t][0], path, D.admin, body ? "application/json" : NULL,
                           body ? "{}" : NULL, body ? 2 : 0, NULL);
            resp_free(&r0);
            if (s != 400 && s != 404)
                fail_msg("%s %s -> %ld (want 400/404)", tmpls[t][0], path, s);
        }
    }
    assert_alive();
}

/* ---- numbers ---- */

static void test_hostile__numbers(void **state)
{
    (void)state;
    const char *vcpus[] = {"9223372036854775808",
                           "9223372036854775807",
                           "18446744073709551616",
                           "-1",
                           "0",
                           "1e308",
                           "-1e308",
                           "1.5",
                           "4294967297",
                           "\"4\"",
                           "null",
                           "{\"performance\":9223372036854775807}",
                           "{\"performance\":-1,\"efficiency\":2}",
                           "{\"performance\":4294967295,\"efficiency\":4294967295}",
                           "{\"any\":1e400}"};
    for (size_t i = 0; i < sizeof(vcpus) / sizeof(vcpus[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{\"name\":\"num-%zu\",\"vcpus\":%s,\"memory_mib\":64}", i,
                 vcpus[i]);
        resp r;
        long s = kd_http(&D, &r, "POST", "/v1/vms", D.admin, body);
        if (s != 400)
            fail_msg("vcpus %s -> %ld (want 400) %s", vcpus[i], s, r.body ? r.body : "");
        resp_free(&r);
    }
    const char *mem[] = {"18446744073709551615", "9223372036854775807", "-5", "1e308", "0.5"};
    for (size_t i = 0; i < sizeof(mem) / sizeof(mem[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{\"name\":\"mem-%zu\",\"vcpus\":1,\"memory_mib\":%s}", i,
                 mem[i]);
        resp r;
        long s = kd_http(&D, &r, "POST", "/v1/vms", D.admin, body);
        /* Absurd but well-formed memory may be a capacity question (409), never 2xx/5xx. */
        if (s != 400 && s != 409)
            fail_msg("memory_mib %s -> %ld (want 400/409) %s", mem[i], s, r.body ? r.body : "");
        resp_free(&r);
    }
    const char *queries[] = {
        "/v1/hosts?limit=-1",
        "/v1/hosts?limit=0",
        "/v1/hosts?limit=18446744073709551616",
        "/v1/hosts?limit=9223372036854775808",
        "/v1/hosts?limit=1e3",
        "/v1/hosts?limit=abc",
        "/v1/hosts?limit=",
        "/v1/hosts?limit=100001",
        "/v1/hosts?cursor=!!!!",
        "/v1/hosts?cursor=%00%ff",
        "/v1/vms?limit=-1",
        "/v1/vms?cursor=!!!!",
        "/v1/vms?limit=18446744073709551616",
        "/v1/events?since=-1",
        "/v1/events?since=18446744073709551616",
        "/v1/events?limit=-1",
        "/v1/capacity?by=everything",
    };
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        resp r;
        long s = kd_http(&D, &r, "GET", queries[i], D.admin, NULL);
        if (s != 400)
            fail_msg("GET %s -> %ld (want 400)", queries[i], s);
        resp_free(&r);
    }
    /* A cursor that decodes is only a position: a page, never a 5xx. */
    const char *odd_cursors[] = {"/v1/hosts?cursor=garbage", "/v1/vms?cursor=____",
                                 "/v1/vms?cursor=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
    for (size_t i = 0; i < sizeof(odd_cursors) / sizeof(odd_cursors[0]); i++) {
        resp r;
        long s = kd_http(&D, &r, "GET", odd_cursors[i], D.admin, NULL);
        if (s != 200 && s != 400)
            fail_msg("GET %s -> %ld (want 200/400)", odd_cursors[i], s);
        resp_free(&r);
    }
    /* Heartbeat generation out of range. */
    const char *hb[] = {"{\"generation\":-1}", "{\"generation\":1e308}",
                        "{\"generation\":18446744073709551616}"};
    for (size_t i = 0; i < sizeof(hb) / sizeof(hb[0]); i++) {
        resp r;
        long s = kd_http(&D, &r, "POST", "/v1/hosts/h-a/heartbeat", D.admin, hb[i]);
        if (s != 400)
            fail_msg("heartbeat %s -> %ld (want 400)", hb[i], s);
        resp_free(&r);
    }
    assert_alive();
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile__auth_every_route),
        cmocka_unit_test(test_hostile__huge_body),
        cmocka_unit_test(test_hostile__deep_nesting),
        cmocka_unit_test(test_hostile__nul_in_body),
        cmocka_unit_test(test_hostile__odd_ids),
        cmocka_unit_test(test_hostile__nul_in_path),
        cmocka_unit_test(test_hostile__numbers),
        cmocka_unit_test(test_hostile__slowloris),
        cmocka_unit_test(test_hostile__many_connections),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
