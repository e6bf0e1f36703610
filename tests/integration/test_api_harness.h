/*
 * test_api_harness.h - runs the real kintsugid binary for the API integration
 * tests and talks HTTP to it with libcurl.  Header-only (one test binary per .c).
 *
 * A daemon is started on 127.0.0.1 port 0 with --port-file and a temporary
 * database; readiness is polled on /healthz with a deadline (no fixed sleeps).
 * Host reports are built with the ks_report API and encoded by
 * ks_report_to_json(), so the tests exercise the real codec.
 */
#ifndef TEST_API_HARNESS_H
#define TEST_API_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ks_report.h"
#include "ks_test.h"

typedef struct kd {
    pid_t pid;
    char dir[512];
    char db[600];
    char port_file[600];
    char log[600];
    unsigned port;
    char admin[128], reader[128], agent_a[128], agent_b[128];
    const char *scheme;   /* "http" (default) or "https" */
    char cafile[700];     /* https: the certificate to trust */
} kd;

static inline uint64_t kd_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Short pause inside deadline-bounded polling loops (not a correctness sleep). */
static inline void kd_nap_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline const char *kd_binary(char *buf, size_t cap)
{
    return ks_test_path(buf, cap, "%s/api/kintsugid", ks_test_build_dir());
}

/* Runs argv, returns its stdout (first line, trimmed) in out; exit status returned. */
static inline int kd_run_capture(char *const argv[], char *out, size_t cap)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(pfd[0], out + len, cap - len - 1)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(pfd[0]);
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = '\0';
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static inline void kd_token(kd *d, const char *role, const char *host, char *out, size_t cap)
{
    char bin[600];
    kd_binary(bin, sizeof(bin));
    char *argv[12];
    int a = 0;
    argv[a++] = bin;
    argv[a++] = (char *)"token";
    argv[a++] = (char *)"create";
    argv[a++] = (char *)"--role";
    argv[a++] = (char *)role;
    if (host) {
        argv[a++] = (char *)"--host";
        argv[a++] = (char *)host;
    }
    argv[a++] = (char *)"--db";
    argv[a++] = d->db;
    argv[a] = NULL;
    assert_int_equal(kd_run_capture(argv, out, cap), 0);
    assert_true(strncmp(out, "ks_", 3) == 0);
}

typedef struct resp {
    long status;
    char *body;
    size_t len;
    json_t *json;
    char etag[128];
    char allow[128];
    char location[256];
    char content_type[128];
} resp;

static inline void resp_free(resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static inline size_t kd_write_cb(char *ptr, size_t size, size_t n, void *ud)
{
    resp *r = ud;
    size_t add = size * n;
    char *nb = realloc(r->body, r->len + add + 1);
    if (!nb)
        return 0;
    memcpy(nb + r->len, ptr, add);
    r->body = nb;
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static inline void kd_header_value(char *dst, size_t cap, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return;
    const char *v = colon + 1;
    while (v < line + len && *v == ' ')
        v++;
    size_t vl = (size_t)(line + len - v);
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
        vl--;
    if (vl >= cap)
        vl = cap - 1;
    memcpy(dst, v, vl);
    dst[vl] = '\0';
}

static inline size_t kd_header_cb(char *line, size_t size, size_t n, void *ud)
{
    resp *r = ud;
    size_t len = size * n;
    if (len > 5 && strncasecmp(line, "ETag:", 5) == 0)
        kd_header_value(r->etag, sizeof(r->etag), line, len);
    else if (len > 6 && strncasecmp(line, "Allow:", 6) == 0)
        kd_header_value(r->allow, sizeof(r->allow), line, len);
    else if (len > 9 && strncasecmp(line, "Location:", 9) == 0)
        kd_header_value(r->location, sizeof(r->location), line, len);
    else if (len > 13 && strncasecmp(line, "Content-Type:", 13) == 0)
        kd_header_value(r->content_type, sizeof(r->content_type), line, len);
    return len;
}

/*
 * One request.  `token` NULL = no Authorization; `ctype` NULL = no Content-Type;
 * `extra` a NULL-terminated list of raw header lines (may be NULL).  Returns the
 * status (0 on a transport error); r->json is the parsed body when it is JSON.
 */
static inline long kd_http_ex(const kd *d, resp *r, const char *method, const char *path,
                       const char *token, const char *ctype, const char *body, size_t len,
                       const char *const *extra)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[1024], auth[300], ct[200];
    snprintf(url, sizeof(url), "%s://127.0.0.1:%u%s", d->scheme ? d->scheme : "http", d->port,
             path);
    if (d->cafile[0]) {
        curl_easy_setopt(c, CURLOPT_CAINFO, d->cafile);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    }
    struct curl_slist *h = NULL;
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    if (ctype) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
        h = curl_slist_append(h, ct);
    } else if (body) {
        h = curl_slist_append(h, "Content-Type:"); /* curl would add a form type */
    }
    h = curl_slist_append(h, "Expect:");
    for (size_t i = 0; extra && extra[i]; i++)
        h = curl_slist_append(h, extra[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, kd_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, kd_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body && r->len) {
        json_error_t je;
        r->json = json_loadb(r->body, r->len, 0, &je);
    }
    return r->status;
}

static inline long kd_http(const kd *d, resp *r, const char *method, const char *path,
                    const char *token, const char *json_body)
{
    return kd_http_ex(d, r, method, path, token, json_body ? "application/json" : NULL,
                      json_body, json_body ? strlen(json_body) : 0, NULL);
}

/* Error slug of an error response ("" when none). */
static inline const char *kd_err_code(const resp *r)
{
    const char *s = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
    return s ? s : "";
}

static inline const char *kd_err_field(const resp *r)
{
    const char *s = json_string_value(json_object_get(json_object_get(r->json, "error"), "field"));
    return s ? s : "";
}

/* Starts kintsugid on the daemon's db; extra_args NULL-terminated (may be NULL). */
static inline void kd_spawn(kd *d, const char *const *extra_args)
{
    char bin[600];
    kd_binary(bin, sizeof(bin));
    unlink(d->port_file);
    char *argv[40];
    int a = 0;
    argv[a++] = bin;
    argv[a++] = (char *)"--listen";
    argv[a++] = (char *)"127.0.0.1:0";
    argv[a++] = (char *)"--port-file";
    argv[a++] = d->port_file;
    argv[a++] = (char *)"--db";
    argv[a++] = d->db;
    argv[a++] = (char *)"--threads";
    argv[a++] = (char *)"0"; /* kintsugid's default: a thread per connection */
    for (size_t i = 0; extra_args && extra_args[i] && a < 38; i++)
        argv[a++] = (char *)extra_args[i];
    argv[a] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    d->pid = pid;
    d->port = 0;
    uint64_t deadline = kd_mono_ms() + 60000; /* ASan builds start slowly on 2 shared cores */
    while (kd_mono_ms() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = 0;
            fail_msg("kintsugid exited during start-up (status %d); see %s", st, d->log);
        }
        if (!d->port) {
            char *txt = ks_test_read_file(d->port_file, NULL);
            if (txt) {
                d->port = (unsigned)strtoul(txt, NULL, 10);
                free(txt);
            }
        }
        if (d->port) {
            resp r;
            long s = kd_http(d, &r, "GET", "/healthz", NULL, NULL);
            resp_free(&r);
            if (s == 200)
                return;
        }
        kd_nap_ms(20);
    }
    fail_msg("kintsugid did not become healthy within the deadline; see %s", d->log);
}

/* SIGTERM and wait (bounded); returns the exit status (0 = clean, leak-free under ASan). */
static inline int kd_stop(kd *d)
{
    if (!d->pid)
        return -1;
    kill(d->pid, SIGTERM);
    uint64_t deadline = kd_mono_ms() + 30000;
    int st = 0;
    while (kd_mono_ms() < deadline) {
        pid_t w = waitpid(d->pid, &st, WNOHANG);
        if (w == d->pid) {
            d->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        kd_nap_ms(20);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &st, 0);
    d->pid = 0;
    return -2;
}

/* Creates the temp dir (unless d->dir is set), the db with four tokens, and starts
 * the daemon.  d->scheme/cafile may be preset. */
static inline void kd_setup(kd *d, const char *const *extra_args)
{
    if (!d->dir[0])
        ks_test_mkdtemp(d->dir, sizeof(d->dir));
    ks_test_path(d->db, sizeof(d->db), "%s/kintsugi.db", d->dir);
    ks_test_path(d->port_file, sizeof(d->port_file), "%s/port", d->dir);
    ks_test_path(d->log, sizeof(d->log), "%s/kintsugid.log", d->dir);
    kd_token(d, "admin", NULL, d->admin, sizeof(d->admin));
    kd_token(d, "reader", NULL, d->reader, sizeof(d->reader));
    kd_token(d, "agent", "h-a", d->agent_a, sizeof(d->agent_a));
    kd_token(d, "agent", "h-b", d->agent_b, sizeof(d->agent_b));
    kd_spawn(d, extra_args);
}

static inline void kd_teardown(kd *d, bool keep_on_failure)
{
    int st = kd_stop(d);
    if (st != 0 && st != -1) {
        char *log = ks_test_read_file(d->log, NULL);
        fprintf(stderr, "kintsugid exit status %d; log:\n%s\n", st, log ? log : "(none)");
        free(log);
    }
    if (!keep_on_failure || st == 0 || st == -1)
        ks_test_rmdir(d->dir);
    assert_true(st == 0 || st == -1);
}

/* ---- synthetic host reports ---- */

static const char *const kd_full_features[] = {"fpu", "tsc", "cx8", "cmov", "mmx", "fxsr",
                                               "sse", "sse2", "lm", "sse4_2", "avx", "avx2",
                                               "fma", "aes", "avx512f", NULL};
static const char *const kd_small_features[] = {"fpu", "tsc", "cx8", "cmov", "mmx", "fxsr",
                                                "sse", "sse2", "lm", "sse4_2", "avx", "avx2",
                                                "aes", NULL};

static inline void kd_set_names(ks_featset *s, const char *const *names)
{
    ks_featset_clear(s);
    for (size_t i = 0; names[i]; i++)
        assert_int_equal(ks_feature_add_name(s, names[i], NULL), KS_OK);
}

/*
 * A hybrid host: n_p performance CPUs (ids 0..n_p-1, full features incl. avx512f)
 * then n_e efficiency CPUs (no avx512f, no fma), one NUMA node, one L3.
 * `defect_cpu` >= 0 gets a self-test defect on `defect_feature`.
 */
static inline ks_report *kd_report(const char *host, uint32_t n_p, uint32_t n_e, uint64_t generation,
                            const char *boot_id, int defect_cpu, const char *defect_feature)
{
    ks_report *r = NULL;
    assert_int_equal(ks_report_new(&r, NULL), KS_OK);
    snprintf(r->host.id, sizeof(r->host.id), "%s", host);
    snprintf(r->host.hostname, sizeof(r->host.hostname), "%s.test", host);
    r->host.arch = KS_ARCH_X86_64;
    snprintf(r->host.vendor, sizeof(r->host.vendor), "GenuineIntel");
    snprintf(r->host.model_name, sizeof(r->host.model_name), "Test Hybrid CPU");
    r->host.family = 6;
    r->host.model = 151;
    snprintf(r->host.microcode, sizeof(r->host.microcode), "0x2c");
    snprintf(r->host.kernel, sizeof(r->host.kernel), "6.1.0");
    snprintf(r->host.agent_version, sizeof(r->host.agent_version), "0.1.0");
    snprintf(r->host.boot_id, sizeof(r->host.boot_id), "%s", boot_id);
    r->host.generation = generation;
    r->host.memory_mib = 65536;
    snprintf(r->host.source, sizeof(r->host.source), "live");
    uint32_t n = n_p + n_e;
    r->n_packages = 1;
    r->n_dies = 1;
    r->n_clusters = 1;
    r->n_cores = n;
    assert_int_equal(ks_report_alloc_kinds(r, 2, NULL), KS_OK);
    snprintf(r->kinds[0].name, sizeof(r->kinds[0].name), "IntelAtom");
    r->kinds[0].efficiency_rank = 0;
    r->kinds[0].kind_class = KS_KIND_EFFICIENCY;
    r->kinds[0].max_mhz = 3900;
    snprintf(r->kinds[1].name, sizeof(r->kinds[1].name), "IntelCore");
    r->kinds[1].efficiency_rank = 1;
    r->kinds[1].kind_class = KS_KIND_PERFORMANCE;
    r->kinds[1].max_mhz = 5200;
    assert_int_equal(ks_report_alloc_numa(r, 1, NULL), KS_OK);
    r->numa[0].id = 0;
    r->numa[0].memory_mib = 65536;
    assert_int_equal(ks_report_alloc_caches(r, 1, NULL), KS_OK);
    r->caches[0].level = 3;
    r->caches[0].type = 'u';
    r->caches[0].size_bytes = 32u << 20;
    r->caches[0].line_bytes = 64;
    r->caches[0].n_cpus = n;
    r->caches[0].cpus = malloc(n * sizeof(int32_t));
    assert_non_null(r->caches[0].cpus);
    ks_featset full, small;
    kd_set_names(&full, kd_full_features);
    kd_set_names(&small, kd_small_features);
    assert_int_equal(ks_report_alloc_cpus(r, n, NULL), KS_OK);
    for (uint32_t i = 0; i < n; i++) {
        ks_cpu *c = &r->cpus[i];
        bool p = i < n_p;
        r->caches[0].cpus[i] = (int32_t)i;
        c->id = (int32_t)i;
        c->package = 0;
        c->die = 0;
        c->cluster = 0;
        c->core = (int32_t)i;
        c->thread = 0;
        c->numa_node = 0;
        c->l2_group = -1;
        c->l3_group = 0;
        c->kind = p ? 1 : 0;
        c->base_mhz = p ? 3200 : 2400;
        c->max_mhz = p ? 5200 : 3900;
        c->native = p ? full : small;
    }
    if (defect_cpu >= 0) {
        ks_defect d;
        memset(&d, 0, sizeof(d));
        unsigned fid = 0;
        assert_int_equal(ks_feature_lookup(defect_feature, &fid, NULL), KS_OK);
        d.feature = (uint16_t)fid;
        d.source = KS_DEFECT_SELFTEST;
        d.time_us = UINT64_C(1700000000000000);
        snprintf(d.detail, sizeof(d.detail), "known-answer mismatch");
        assert_int_equal(ks_cpu_add_defect(&r->cpus[defect_cpu], &d, NULL), KS_OK);
    }
    ks_report_derive_state(r);
    return r;
}

/* The report as JSON text (caller frees). */
static inline char *kd_report_json(const char *host, uint32_t n_p, uint32_t n_e, uint64_t generation,
                            const char *boot_id, int defect_cpu, const char *defect_feature)
{
    ks_report *r = kd_report(host, n_p, n_e, generation, boot_id, defect_cpu, defect_feature);
    json_t *doc = ks_report_to_json(r);
    assert_non_null(doc);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    ks_report_free(r);
    assert_non_null(text);
    return text;
}

/* PUT a report; returns the status. */
static inline long kd_put_report(const kd *d, const char *token, const char *host, uint32_t n_p,
                          uint32_t n_e, uint64_t generation, const char *boot_id, int defect_cpu,
                          const char *defect_feature, resp *out)
{
    char *body = kd_report_json(host, n_p, n_e, generation, boot_id, defect_cpu, defect_feature);
    char path[256];
    snprintf(path, sizeof(path), "/v1/hosts/%s/report", host);
    resp r;
    long s = kd_http(d, &r, "PUT", path, token, body);
    free(body);
    if (out)
        *out = r;
    else
        resp_free(&r);
    return s;
}

#endif
