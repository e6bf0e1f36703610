/*
 * test_api_daemon.c - kintsugid as a process: command line, tokens, lost hosts,
 * graceful shutdown; and the router in-process through ks_api_handle() (the same
 * pipeline the sockets use, without them).  SPEC: docs/api.md.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "ks_api_int.h"
#include "ks_store.h"
#include "test_api_harness.h"

static int run_status(char *const argv[])
{
    char out[4096];
    return kd_run_capture(argv, out, sizeof(out));
}

static void test_daemon__command_line(void **state)
{
    (void)state;
    char bin[600], out[8192];
    kd_binary(bin, sizeof(bin));
    char *help[] = {bin, (char *)"--help", NULL};
    assert_int_equal(kd_run_capture(help, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "Usage: kintsugid"));
    char *version[] = {bin, (char *)"--version", NULL};
    assert_int_equal(kd_run_capture(version, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "kintsugid "));
    char *unknown[] = {bin, (char *)"--frobnicate", NULL};
    assert_int_equal(run_status(unknown), 2);
    char *bad_num[] = {bin, (char *)"--threads", (char *)"zero", NULL};
    assert_int_equal(run_status(bad_num), 2);
    char *bad_listen[] = {bin, (char *)"--listen", (char *)"nowhere", NULL};
    assert_int_equal(run_status(bad_listen), 2);
    char *bad_role[] = {bin, (char *)"token", (char *)"create", (char *)"--role", (char *)"god",
                        NULL};
    assert_int_equal(run_status(bad_role), 2);
    char *agent_no_host[] = {bin, (char *)"token", (char *)"create", (char *)"--role",
                             (char *)"agent", NULL};
    assert_int_equal(run_status(agent_no_host), 2);
    /* Environment is read (KS_THREADS) and flags override it (--print-config). */
    setenv("KS_THREADS", "7", 1);
    char *print[] = {bin, (char *)"--print-config", NULL};
    char full[8192] = "";
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        execv(bin, print);
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(pfd[0], full + len, sizeof(full) - len - 1)) > 0)
        len += (size_t)n;
    full[len] = '\0';
    close(pfd[0]);
    waitpid(pid, NULL, 0);
    unsetenv("KS_THREADS");
    assert_non_null(strstr(full, "threads=7  # env"));
}

static void test_daemon__lost_hosts_and_shutdown(void **state)
{
    (void)state;
    kd d = {0};
    static const char *const args[] = {"--lost-after", "1", "--snapshot-interval", "1", NULL};
    kd_setup(&d, args);
    resp r;
    /* SPEC: docs/api.md#lost-hosts */
    assert_int_equal(kd_put_report(&d, d.agent_a, "h-a", 2, 2, 1, "b", -1, NULL, NULL), 201);
    uint64_t deadline = kd_mono_ms() + 15000;
    bool lost = false;
    while (!lost && kd_mono_ms() < deadline) {
        assert_int_equal(kd_http(&d, &r, "GET", "/v1/hosts/h-a", d.reader, NULL), 200);
        lost = strcmp(json_string_value(json_object_get(r.json, "state")), "lost") == 0;
        resp_free(&r);
        if (!lost)
            kd_nap_ms(100);
    }
    assert_true(lost);
    /* A lost host takes no VM. */
    assert_int_equal(kd_http(&d, &r, "POST", "/v1/vms", d.admin,
                             "{\"name\":\"v\",\"vcpus\":1,\"memory_mib\":64}"),
                     409);
    resp_free(&r);
    /* Its heartbeat brings it back. */
    assert_int_equal(kd_http(&d, &r, "POST", "/v1/hosts/h-a/heartbeat", d.agent_a, NULL), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "ready");
    resp_free(&r);
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/events?limit=1000", d.reader, NULL), 200);
    int changes = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(r.json, "items"), i, ev)
        if (strcmp(json_string_value(json_object_get(ev, "type")), "host.state_changed") == 0)
            changes++;
    assert_true(changes >= 2);
    resp_free(&r);
    /* Capacity snapshots were written by the background thread (1 s period). */
    deadline = kd_mono_ms() + 15000;
    int64_t snaps = 0;
    while (snaps == 0 && kd_mono_ms() < deadline) {
        ks_store *s = NULL;
        if (ks_store_open_readonly(&s, d.db, NULL) == KS_OK) {
            ks_store_query_int(&snaps, s, "SELECT count(*) FROM capacity_snapshots", NULL);
            ks_store_close(s);
        }
        if (snaps == 0)
            kd_nap_ms(100);
    }
    assert_true(snaps > 0);
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/capacity/history?scope=host:h-a", d.reader, NULL),
                     200);
    json_t *first = json_array_get(json_object_get(r.json, "items"), 0);
    assert_int_equal(json_integer_value(json_object_get(first, "total")), 4);
    resp_free(&r);
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/capacity/history?since_us=x", d.reader, NULL),
                     400);
    resp_free(&r);
    /* A restart gives every host a fresh --lost-after period: stop for longer than
     * that, restart, and the host must still be ready right away. */
    assert_int_equal(kd_put_report(&d, d.agent_a, "h-a", 2, 2, 2, "b", -1, NULL, NULL), 200);
    uint64_t reported = kd_mono_ms();
    assert_int_equal(kd_stop(&d), 0);
    while (kd_mono_ms() < reported + 5300) /* the outage being simulated: > --lost-after */
        kd_nap_ms(100);
    static const char *const again[] = {"--lost-after", "5", NULL};
    kd_spawn(&d, again);
    uint64_t started = kd_mono_ms();
    /* The sweep runs every 1.25 s; after 1.6 s it has run, and must have spared h-a
     * (the grace lasts 5 s, ample margin for a slow machine). */
    while (kd_mono_ms() < started + 1600)
        kd_nap_ms(100);
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/hosts/h-a", d.reader, NULL), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "ready");
    resp_free(&r);
    /* SIGTERM: clean exit 0 (and no leaks under ASan). */
    kd_teardown(&d, true);
}

/* ---- in-process: the router without sockets ---- */

static void handle(ks_api *api, ks_api_response *out, const char *method, const char *url,
                   const char *token, const char *body)
{
    char auth[200];
    ks_api_kv h[2];
    size_t n = 0;
    if (token) {
        snprintf(auth, sizeof(auth), "Bearer %s", token);
        h[n++] = (ks_api_kv){"Authorization", auth};
    }
    if (body)
        h[n++] = (ks_api_kv){"content-type", "application/json; charset=utf-8"};
    ks_api_handle(api, method, url, h, n, body, body ? strlen(body) : 0, out);
}

static void test_daemon__in_process_router(void **state)
{
    (void)state;
    char dir[512], db[600];
    ks_test_mkdtemp(dir, sizeof(dir));
    ks_test_path(db, sizeof(db), "%s/k.db", dir);
    ks_store *store = NULL;
    assert_int_equal(ks_store_open(&store, db, NULL, NULL), KS_OK);
    char token[48];
    uint8_t digest[32];
    assert_int_equal(ks_api_token_generate(token, NULL), KS_OK);
    assert_int_equal(ks_api_token_digest(digest, token, NULL), KS_OK);
    assert_int_equal(ks_store_begin(store, NULL), KS_OK);
    assert_int_equal(ks_store_token_add(NULL, store, digest, 32, "admin", NULL, NULL, 1, NULL),
                     KS_OK);
    assert_int_equal(ks_store_commit(store, NULL), KS_OK);
    ks_api_options o = KS_API_OPTIONS_INIT;
    o.max_body_bytes = 4096;
    ks_api *api = NULL;
    assert_int_equal(ks_api_new(&api, &o, store, NULL), KS_OK);

    ks_api_response r;
    handle(api, &r, "GET", "/healthz", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_true(r.request_id[0] != '\0');
    ks_api_response_destroy(&r);
    handle(api, &r, "GET", "/v1/hosts?limit=5&cursor=", token, NULL);
    assert_int_equal(r.status, 400); /* empty cursor is malformed */
    ks_api_response_destroy(&r);
    handle(api, &r, "GET", "/v1/hosts?limit=5", token, NULL);
    assert_int_equal(r.status, 200);
    ks_api_response_destroy(&r);
    handle(api, &r, "DELETE", "/v1/hosts", token, NULL);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET");
    ks_api_response_destroy(&r);
    handle(api, &r, "GET", "/v1/hosts/", token, NULL);
    assert_int_equal(r.status, 404);
    ks_api_response_destroy(&r);
    handle(api, &r, "GET", "/v1/vms/a%2Fb", token, NULL);
    assert_int_equal(r.status, 404); /* decoded before routing, like libmicrohttpd does */
    ks_api_response_destroy(&r);
    /* Invalid UTF-8 quoted in a message is replaced, never dropped. */
    handle(api, &r, "GET", "/v1/nothing/%ff%c3", token, NULL);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "\"message\":\"no such path '/v1/nothing/?" "?'\""));
    ks_api_response_destroy(&r);
    /* "%00" must not cut a name short (it would address another object). */
    handle(api, &r, "DELETE", "/v1/vms/a%00b", token, NULL);
    assert_int_equal(r.status, 400);
    ks_api_response_destroy(&r);
    handle(api, &r, "GET", "/v1/vms/a%24b", token, NULL);
    assert_int_equal(r.status, 400); /* '$' is not allowed in a name */
    ks_api_response_destroy(&r);
    char *big = calloc(1, 5000);
    assert_non_null(big);
    memset(big, ' ', 4999);
    handle(api, &r, "POST", "/v1/vms", token, big);
    assert_int_equal(r.status, 413);
    free(big);
    ks_api_response_destroy(&r);

    /* Every code maps to a status and a slug; unknown codes are 500s with a
     * generic message (the real one goes to the log only). */
    assert_int_equal(ks_api_status_of(KS_EINVAL), 400);
    assert_int_equal(ks_api_status_of(KS_EAUTH), 401);
    assert_int_equal(ks_api_status_of(KS_EFORBIDDEN), 403);
    assert_int_equal(ks_api_status_of(KS_ENOTFOUND), 404);
    assert_int_equal(ks_api_status_of(KS_EEXIST), 409);
    assert_int_equal(ks_api_status_of(KS_ECONFLICT), 409);
    assert_int_equal(ks_api_status_of(KS_ENOCAPACITY), 409);
    assert_int_equal(ks_api_status_of(KS_EPRECOND), 412);
    assert_int_equal(ks_api_status_of(KS_ETOOLARGE), 413);
    assert_int_equal(ks_api_status_of(KS_API_EMEDIATYPE), 415);
    assert_int_equal(ks_api_status_of(KS_API_EIDEMPOTENCY), 422);
    assert_int_equal(ks_api_status_of(KS_API_ERATELIMIT), 429);
    assert_int_equal(ks_api_status_of(KS_EUNAVAIL), 503);
    assert_int_equal(ks_api_status_of(KS_EIO), 500);
    assert_int_equal(ks_api_status_of(KS_EINTERNAL), 500);
    ks_api_req fake = {.api = api, .resp = &r};
    memset(&r, 0, sizeof(r));
    snprintf(fake.request_id, sizeof(fake.request_id), "rq-1");
    ks_err e;
    ks_err_set(&e, KS_EIO, "disk on fire at /secret/path");
    ks_api_send_error(&fake, &e);
    assert_int_equal(r.status, 500);
    assert_null(strstr(r.body, "secret"));
    assert_non_null(strstr(r.body, "\"request_id\":\"rq-1\""));
    ks_api_response_destroy(&r);

    /* Cursors round-trip and reject garbage. */
    char *c = ks_api_cursor_encode("host-\xc3\xa9-42");
    char back[64];
    assert_int_equal(ks_api_cursor_decode(back, sizeof(back), c, NULL), KS_OK);
    assert_string_equal(back, "host-\xc3\xa9-42");
    free(c);
    assert_int_equal(ks_api_cursor_decode(back, sizeof(back), "!!", NULL), KS_EINVAL);

    ks_api_free(api);
    ks_store_close(store);
    ks_test_rmdir(dir);
}

static void test_daemon__rate_limit(void **state)
{
    (void)state;
    kd d = {0};
    static const char *const args[] = {"--rate-limit", "5", NULL};
    kd_setup(&d, args);
    int limited = 0;
    for (int i = 0; i < 30 && !limited; i++) {
        resp r;
        if (kd_http(&d, &r, "GET", "/v1/hosts", d.reader, NULL) == 429) {
            limited++;
            assert_string_equal(kd_err_code(&r), "rate_limited");
        }
        resp_free(&r);
    }
    assert_true(limited > 0);
    /* Public health checks are never limited. */
    resp r;
    assert_int_equal(kd_http(&d, &r, "GET", "/healthz", NULL, NULL), 200);
    resp_free(&r);
    kd_teardown(&d, true);
}


/* ---- graceful shutdown: a request in flight at SIGTERM still gets its answer ---- */

static int raw_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        s += n;
        len -= (size_t)n;
    }
}

/* Reads until `needle` is in the buffer or EOF (bounded by SO_RCVTIMEO). */
static bool recv_until(int fd, char *buf, size_t cap, const char *needle)
{
    size_t len = strlen(buf);
    while (!strstr(buf, needle) && len + 1 < cap) {
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0)
            return false;
        len += (size_t)n;
        buf[len] = '\0';
    }
    return strstr(buf, needle) != NULL;
}

static void test_daemon__graceful_shutdown(void **state)
{
    (void)state;
    kd d = {0};
    kd_setup(&d, NULL);
    int fd = raw_connect(d.port);
    assert_true(fd >= 0);
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const char *body = "{\"name\":\"late\",\"vcpus\":1,\"memory_mib\":64}";
    char head[1024];
    int hl = snprintf(head, sizeof(head),
                      "POST /v1/vms HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Expect: 100-continue\r\n\r\n",
                      d.admin, strlen(body));
    send_all(fd, head, (size_t)hl);
    /* "100 Continue" proves the request is being handled (in flight). */
    char buf[8192] = "";
    assert_true(recv_until(fd, buf, sizeof(buf), "100 Continue"));
    kill(d.pid, SIGTERM);
    /* Wait until the daemon stopped accepting (quiesced), bounded. */
    uint64_t deadline = kd_mono_ms() + 20000;
    for (;;) {
        int probe = raw_connect(d.port);
        if (probe < 0)
            break;
        close(probe);
        assert_true(kd_mono_ms() < deadline);
        kd_nap_ms(20);
    }
    send_all(fd, body, strlen(body));
    buf[0] = '\0';
    assert_true(recv_until(fd, buf, sizeof(buf), "\r\n\r\n"));
    /* No host exists, so the placement is a clean 409 - but it is answered. */
    assert_non_null(strstr(buf, "HTTP/1.1 409"));
    close(fd);
    int st = kd_stop(&d);
    assert_int_equal(st, 0);
    ks_test_rmdir(d.dir);
}

/* ---- TLS ---- */

static void write_datum(const char *path, const gnutls_datum_t *dt)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(dt->data, 1, dt->size, f), dt->size);
    fclose(f);
}

/* A self-signed certificate for 127.0.0.1 made with GnuTLS (no CLI tools needed). */
static void make_cert(const char *cert_path, const char *key_path)
{
    gnutls_x509_privkey_t key;
    gnutls_x509_crt_t crt;
    assert_int_equal(gnutls_x509_privkey_init(&key), 0);
    assert_int_equal(gnutls_x509_privkey_generate(
                         key, GNUTLS_PK_EC, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                     0);
    assert_int_equal(gnutls_x509_crt_init(&crt), 0);
    gnutls_x509_crt_set_version(crt, 3);
    gnutls_x509_crt_set_serial(crt, "\x01\x02", 2);
    gnutls_x509_crt_set_activation_time(crt, time(NULL) - 3600);
    gnutls_x509_crt_set_expiration_time(crt, time(NULL) + 86400);
    gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "127.0.0.1", 9);
    assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
    gnutls_x509_crt_set_basic_constraints(crt, 1, -1);
    gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_CERT_SIGN);
    static const unsigned char ip[4] = {127, 0, 0, 1};
    gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip, 4, GNUTLS_FSAN_SET);
    assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
    gnutls_datum_t dt;
    assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &dt), 0);
    write_datum(cert_path, &dt);
    gnutls_free(dt.data);
    assert_int_equal(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &dt), 0);
    write_datum(key_path, &dt);
    gnutls_free(dt.data);
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
}

static void test_daemon__tls(void **state)
{
    (void)state;
    kd d = {0};
    ks_test_mkdtemp(d.dir, sizeof(d.dir));
    char cert[700], key[700];
    ks_test_path(cert, sizeof(cert), "%s/cert.pem", d.dir);
    ks_test_path(key, sizeof(key), "%s/key.pem", d.dir);
    make_cert(cert, key);
    d.scheme = "https";
    snprintf(d.cafile, sizeof(d.cafile), "%s", cert);
    const char *const args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    kd_setup(&d, args); /* readiness is polled over https */
    resp r;
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/hosts", d.reader, NULL), 200);
    resp_free(&r);
    /* Plain HTTP on the TLS port gets no HTTP answer. */
    d.scheme = "http";
    d.cafile[0] = '\0';
    assert_true(kd_http(&d, &r, "GET", "/healthz", NULL, NULL) != 200);
    resp_free(&r);
    kd_teardown(&d, true);
}

static void test_daemon__tokens_and_insecure(void **state)
{
    (void)state;
    kd d = {0};
    kd_setup(&d, NULL);
    resp r;
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/hosts", d.reader, NULL), 200);
    resp_free(&r);
    char bin[600], out[4096];
    kd_binary(bin, sizeof(bin));
    char *list[] = {bin, (char *)"token", (char *)"list", (char *)"--db", d.db, NULL};
    assert_int_equal(kd_run_capture(list, out, sizeof(out)), 0);
    /* First line: the admin token (id 1); tokens were made admin, reader, agent, agent. */
    assert_non_null(strstr(out, "admin"));
    char *del[] = {bin, (char *)"token", (char *)"delete", (char *)"2", (char *)"--db", d.db, NULL};
    assert_int_equal(kd_run_capture(del, out, sizeof(out)), 0);
    /* Revocation is immediate: tokens are looked up on every request. */
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/hosts", d.reader, NULL), 401);
    resp_free(&r);
    assert_int_equal(kd_http(&d, &r, "GET", "/v1/hosts", d.admin, NULL), 200);
    resp_free(&r);
    char *del_again[] = {bin, (char *)"token", (char *)"delete", (char *)"2", (char *)"--db", d.db,
                         NULL};
    assert_int_equal(kd_run_capture(del_again, out, sizeof(out)), 1);
    assert_int_equal(kd_stop(&d), 0);
    /* --insecure-no-auth: no token needed, and the log says so loudly. */
    static const char *const insecure[] = {"--insecure-no-auth", NULL};
    kd_spawn(&d, insecure);
    assert_int_equal(kd_http(&d, &r, "POST", "/v1/pools", NULL, "{\"name\":\"p\",\"hosts\":[]}"),
                     201);
    resp_free(&r);
    assert_int_equal(kd_stop(&d), 0);
    char *log = ks_test_read_file(d.log, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "level=warn AUTHENTICATION DISABLED"));
    free(log);
    ks_test_rmdir(d.dir);
}

/* ---- plan push: committed plans reach the host's agent ---- */

typedef struct fake_agent {
    pthread_mutex_t mu;
    int puts, deletes, unauthorized;
    long last_generation;
    char last_vm[64];
    int refuse; /* answer PUTs with 409 */
} fake_agent;

typedef struct fa_req {
    char *body;
    size_t len;
} fa_req;

static enum MHD_Result fa_handler(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *up,
                                  size_t *up_size, void **con_cls)
{
    (void)version;
    fake_agent *fa = cls;
    fa_req *rq = *con_cls;
    if (!rq) {
        *con_cls = calloc(1, sizeof(fa_req));
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*up_size) {
        char *nb = realloc(rq->body, rq->len + *up_size + 1);
        if (!nb)
            return MHD_NO;
        memcpy(nb + rq->len, up, *up_size);
        rq->body = nb;
        rq->len += *up_size;
        rq->body[rq->len] = '\0';
        *up_size = 0;
        return MHD_YES;
    }
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    unsigned status = 200;
    const char *answer = "{}";
    pthread_mutex_lock(&fa->mu);
    if (!auth || strcmp(auth, "Bearer plan-secret") != 0) {
        fa->unauthorized++;
        status = 401;
    } else if (strcmp(method, "PUT") == 0 && strstr(url, "/plan")) {
        fa->puts++;
        json_t *doc = rq->body ? json_loads(rq->body, 0, NULL) : NULL;
        fa->last_generation = (long)json_integer_value(json_object_get(doc, "generation"));
        snprintf(fa->last_vm, sizeof(fa->last_vm), "%s",
                 json_string_value(json_object_get(doc, "vm")) ? json_string_value(json_object_get(doc, "vm")) : "");
        json_decref(doc);
        if (fa->refuse) {
            status = 409;
            answer = "{\"error\":{\"code\":\"conflict\",\"message\":\"vmm lacks avx512\"}}";
        }
    } else if (strcmp(method, "DELETE") == 0) {
        fa->deletes++;
    }
    pthread_mutex_unlock(&fa->mu);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(answer), (void *)answer, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void fa_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    fa_req *rq = *con_cls;
    if (rq) {
        free(rq->body);
        free(rq);
    }
    *con_cls = NULL;
}

static int fa_count(fake_agent *fa, const int *field)
{
    pthread_mutex_lock(&fa->mu);
    int v = *field;
    pthread_mutex_unlock(&fa->mu);
    return v;
}

/* Polls GET /v1/vms/{name} until `key` equals `want` (deadline 15 s). */
static json_t *wait_vm(kd *d, const char *name, const char *key, json_int_t want)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s", name);
    uint64_t deadline = kd_mono_ms() + 15000;
    for (;;) {
        resp r;
        assert_int_equal(kd_http(d, &r, "GET", path, d->reader, NULL), 200);
        if (json_integer_value(json_object_get(r.json, key)) == want ||
            kd_mono_ms() > deadline) {
            json_t *j = json_incref(r.json);
            resp_free(&r);
            return j;
        }
        resp_free(&r);
        kd_nap_ms(20);
    }
}

static void test_daemon__plan_push(void **state)
{
    (void)state;
    fake_agent fa = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct MHD_Daemon *agent = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, fa_handler, &fa,
        MHD_OPTION_NOTIFY_COMPLETED, fa_done, NULL, MHD_OPTION_END);
    assert_non_null(agent);
    unsigned aport = MHD_get_daemon_info(agent, MHD_DAEMON_INFO_BIND_PORT)->port;

    kd d = {0};
    static const char *const args[] = {"--agent-plan-token", "plan-secret", NULL};
    kd_setup(&d, args);
    /* SPEC: docs/api.md#plan-push */
    ks_report *rep = kd_report("h-a", 2, 2, 1, "b", -1, NULL);
    snprintf(rep->host.agent_url, sizeof(rep->host.agent_url), "http://127.0.0.1:%u/", aport);
    json_t *rj = ks_report_to_json(rep);
    char *text = json_dumps(rj, JSON_COMPACT);
    json_decref(rj);
    ks_report_free(rep);
    resp r;
    assert_int_equal(kd_http(&d, &r, "PUT", "/v1/hosts/h-a/report", d.agent_a, text), 201);
    resp_free(&r);
    free(text);
    assert_int_equal(kd_http(&d, &r, "POST", "/v1/vms", d.admin,
                             "{\"name\":\"pushed\",\"vcpus\":1,\"memory_mib\":64}"),
                     201);
    resp_free(&r);
    json_t *vm = wait_vm(&d, "pushed", "applied_generation", 1);
    assert_int_equal(json_integer_value(json_object_get(vm, "applied_generation")), 1);
    assert_true(json_is_null(json_object_get(vm, "apply_error")));
    json_decref(vm);
    assert_int_equal(fa_count(&fa, &fa.puts), 1);
    assert_int_equal(fa_count(&fa, &fa.unauthorized), 0);
    pthread_mutex_lock(&fa.mu);
    assert_string_equal(fa.last_vm, "pushed");
    assert_int_equal(fa.last_generation, 1);
    fa.refuse = 1;
    pthread_mutex_unlock(&fa.mu);

    /* A refused plan is recorded as apply_error, not retried forever. */
    assert_int_equal(kd_http(&d, &r, "POST", "/v1/vms", d.admin,
                             "{\"name\":\"refused\",\"vcpus\":1,\"memory_mib\":64}"),
                     201);
    resp_free(&r);
    uint64_t deadline = kd_mono_ms() + 15000;
    bool flagged = false;
    while (!flagged && kd_mono_ms() < deadline) {
        assert_int_equal(kd_http(&d, &r, "GET", "/v1/vms/refused", d.reader, NULL), 200);
        const char *e = json_string_value(json_object_get(r.json, "apply_error"));
        flagged = e && strstr(e, "vmm lacks avx512");
        resp_free(&r);
        if (!flagged)
            kd_nap_ms(20);
    }
    assert_true(flagged);

    /* Deleting a VM stops it on its agent. */
    assert_int_equal(kd_http(&d, &r, "DELETE", "/v1/vms/pushed", d.admin, NULL), 204);
    resp_free(&r);
    deadline = kd_mono_ms() + 15000;
    while (fa_count(&fa, &fa.deletes) < 1 && kd_mono_ms() < deadline)
        kd_nap_ms(20);
    assert_int_equal(fa_count(&fa, &fa.deletes), 1);
    kd_teardown(&d, true);
    MHD_stop_daemon(agent);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_daemon__command_line),
        cmocka_unit_test(test_daemon__in_process_router),
        cmocka_unit_test(test_daemon__lost_hosts_and_shutdown),
        cmocka_unit_test(test_daemon__rate_limit),
        cmocka_unit_test(test_daemon__graceful_shutdown),
        cmocka_unit_test(test_daemon__tls),
        cmocka_unit_test(test_daemon__tokens_and_insecure),
        cmocka_unit_test(test_daemon__plan_push),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
