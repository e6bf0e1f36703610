/*
 * ks_selftest.c - the self-test framework: the test table, name resolution,
 * fault-injection specs, and running a suite pinned on one CPU.
 *
 * Invariants:
 *  - a test result is PASS only after the workload ran on this CPU and every
 *    repetition compared equal to the reference; a test whose features are not
 *    enumerated (CPUID on the pinned CPU) or whose state is not enabled (XCR0)
 *    is NOT_PRESENT and its workload never executes (it would fault);
 *  - fault injection flips a bit of the computed result *before* the one
 *    comparison, so an injected fault travels the same path as a real one.
 * Threading: each run gets its own worker thread (see ks_selftest.h); the
 * table is const; nothing here has global mutable state.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "ks_feature.h"
#include "ks_selftest.h"
#include "ks_selftest_int.h"

/* The workload seed.  volatile: see ks_selftest_int.h.  The integer test's
 * stored answer is valid for this value only. */
volatile uint64_t ks_selftest__seed = UINT64_C(0x243f6a8885a308d3);

#define ST(n) ks_st__##n##_expect, ks_st__##n##_run

static const ks_selftest__def tests[] = {
    {"integer", "", NULL, 0, NULL, ST(int)},
#if defined(__x86_64__)
    {"x87", "fpu", "fpu", 0, NULL, ST(x87)},
    {"sse2", "sse2", "sse2", 0, NULL, ST(sse2)},
    {"sse4_2", "sse4_2", "sse4_2", 0, NULL, ST(sse42)},
    {"popcnt", "popcnt", "popcnt", 0, NULL, ST(popcnt)},
    {"lzcnt", "abm", "abm", 0, NULL, ST(lzcnt)},
    {"bmi1", "bmi1", "bmi1", 0, NULL, ST(bmi1)},
    {"bmi2", "bmi2", "bmi2", 0, NULL, ST(bmi2)},
    {"adx", "adx", "adx", 0, NULL, ST(adx)},
    {"rdrand", "rdrand", "rdrand", 0, NULL, ST(rdrand)},
    {"rdseed", "rdseed", "rdseed", 0, NULL, ST(rdseed)},
    {"avx", "avx", "avx", KS_ST_XCR0_AVX, NULL, ST(avx)},
    {"avx2", "avx avx2", "avx2", KS_ST_XCR0_AVX, NULL, ST(avx2)},
    {"fma", "avx fma", "fma", KS_ST_XCR0_AVX, NULL, ST(fma)},
    {"avx512f", "avx512f", "avx512f", KS_ST_XCR0_AVX512, NULL, ST(avx512f)},
    {"avx512bw", "avx512f avx512bw", "avx512bw", KS_ST_XCR0_AVX512, NULL, ST(avx512bw)},
    {"avx512vl", "avx512f avx512vl", "avx512vl", KS_ST_XCR0_AVX512, NULL, ST(avx512vl)},
    {"avx512dq", "avx512f avx512dq", "avx512dq", KS_ST_XCR0_AVX512, NULL, ST(avx512dq)},
    {"avx512_vnni", "avx512f avx512_vnni", "avx512_vnni", KS_ST_XCR0_AVX512, NULL, ST(vnni)},
    {"avx512cd", "avx512f avx512cd", "avx512cd", KS_ST_XCR0_AVX512, NULL, ST(avx512cd)},
    {"avx512_vpopcntdq", "avx512f avx512_vpopcntdq", "avx512_vpopcntdq", KS_ST_XCR0_AVX512, NULL,
     ST(vpopcntdq)},
    {"avx512_bitalg", "avx512f avx512bw avx512_bitalg", "avx512_bitalg", KS_ST_XCR0_AVX512, NULL,
     ST(bitalg)},
    {"avx512vbmi", "avx512f avx512bw avx512vbmi", "avx512vbmi", KS_ST_XCR0_AVX512, NULL, ST(vbmi)},
    {"avx512ifma", "avx512f avx512ifma", "avx512ifma", KS_ST_XCR0_AVX512, NULL, ST(ifma)},
    {"gfni", "gfni sse2", "gfni", 0, NULL, ST(gfni)},
    {"aes", "aes", "aes", 0, NULL, ST(aes)},
    {"vaes", "avx2 vaes", "vaes", KS_ST_XCR0_AVX, NULL, ST(vaes)},
    {"pclmulqdq", "pclmulqdq", "pclmulqdq", 0, NULL, ST(pclmul)},
    {"vpclmulqdq", "avx2 vpclmulqdq", "vpclmulqdq", KS_ST_XCR0_AVX, NULL, ST(vpclmul)},
    {"sha_ni", "sha_ni sse4_1 ssse3", "sha_ni", 0, NULL, ST(sha)},
    /* A wrong tile product may be the int8 unit or the tile machinery it shares. */
    {"amx", "amx_tile amx_int8", "amx_tile amx_int8", KS_ST_XCR0_AMX | KS_ST_XCR0_AVX,
     ks_st__amx_prepare, ST(amx)},
#endif
};
#define N_TESTS (sizeof(tests) / sizeof(tests[0]))
_Static_assert(N_TESTS <= KS_SELFTEST_MAX_TESTS, "test table larger than the result array");
_Static_assert(KS_SELFTEST_MAX_TESTS <= 64, "test masks are 64-bit");

/* Friendly names that are neither a test nor a catalogue feature. */
static const struct {
    const char *alias, *test;
} aliases[] = {{"crc32", "sse4_2"}, {"int", "integer"}, {"alu", "integer"}, {"sha", "sha_ni"}};

static const char *const status_names[KS_SELFTEST_STATUS__COUNT] = {"pass", "FAIL", "not-present",
                                                                    "skipped"};

const char *ks_selftest_status_to_str(ks_selftest_status s)
{
    return (unsigned)s < KS_SELFTEST_STATUS__COUNT ? status_names[s] : "?";
}

size_t ks_selftest_count(void)
{
    return N_TESTS;
}

const char *ks_selftest_name(size_t i)
{
    return i < N_TESTS ? tests[i].name : NULL;
}

bool ks_selftest_is_whole_cpu(size_t i)
{
    return i < N_TESTS && tests[i].faulty == NULL;
}

/* Space-separated catalogue names -> set.  On an unknown name, copies it to
 * `bad` and returns false. */
static bool names_to_set(const char *names, ks_featset *out, char *bad, size_t bad_cap)
{
    ks_featset_clear(out);
    if (!names)
        return true;
    const char *p = names;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        char word[64];
        unsigned id;
        snprintf(word, sizeof(word), "%.*s", (int)n, p);
        if (ks_feature_lookup(word, &id, NULL) != KS_OK) {
            snprintf(bad, bad_cap, "%s", word);
            return false;
        }
        ks_featset_set(out, id);
        p += n;
    }
    return true;
}

void ks_selftest_faulty_features(size_t i, ks_featset *out)
{
    char bad[64];
    ks_featset_clear(out);
    if (i < N_TESTS && !names_to_set(tests[i].faulty, out, bad, sizeof(bad)))
        ks_featset_clear(out);
}

ks_code ks_selftest_required_features(size_t i, ks_featset *out, ks_err *err)
{
    char bad[64];
    if (i >= N_TESTS)
        return ks_err_set(err, KS_EINVAL, "no self-test number %zu", i);
    if (!names_to_set(tests[i].required, out, bad, sizeof(bad)))
        return ks_err_set(err, KS_EINTERNAL,
                          "self-test '%s' needs feature '%s' unknown to the "
                          "catalogue",
                          tests[i].name, bad);
    return KS_OK;
}

/* Lower-case, '-' and '.' as '_', so "SSE4.2", "sse4-2" and "sse4_2" all match. */
static void normalize(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++) {
        char c = src[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c == '-' || c == '.')
            c = '_';
        dst[i] = c;
    }
    dst[i] = '\0';
}

ks_code ks_selftest_resolve(uint64_t *out_mask, const char *name, ks_err *err)
{
    char norm[64];
    unsigned id;
    if (!name || !name[0])
        return ks_err_set(err, KS_EINVAL, "empty test or feature name");
    if (strlen(name) >= sizeof(norm))
        return ks_err_set(err, KS_EINVAL, "test or feature name too long");
    normalize(norm, sizeof(norm), name);
    for (size_t a = 0; a < sizeof(aliases) / sizeof(aliases[0]); a++)
        if (strcmp(norm, aliases[a].alias) == 0)
            snprintf(norm, sizeof(norm), "%s", aliases[a].test);
    for (size_t i = 0; i < N_TESTS; i++) {
        if (strcmp(norm, tests[i].name) == 0) {
            *out_mask = UINT64_C(1) << i;
            return KS_OK;
        }
    }
    if (ks_feature_lookup(name, &id, NULL) != KS_OK)
        return ks_err_set(err, KS_EINVAL, "unknown test or feature '%s'", name);
    uint64_t mask = 0;
    for (size_t i = 0; i < N_TESTS; i++) {
        ks_featset f;
        ks_selftest_faulty_features(i, &f);
        if (ks_featset_test(&f, id))
            mask |= UINT64_C(1) << i;
    }
    if (!mask)
        return ks_err_set(err, KS_EINVAL, "no self-test checks feature '%s'", name);
    *out_mask = mask;
    return KS_OK;
}

/* Decimal CPU number, 0..KS_REPORT_MAX_CPUS-1. */
static bool parse_cpu(const char *s, size_t n, int32_t *out)
{
    int32_t v = 0;
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v >= KS_REPORT_MAX_CPUS)
        return false;
    *out = v;
    return true;
}

ks_code ks_selftest_inject_parse(ks_selftest_inject *out, const char *spec, ks_err *err)
{
    ks_selftest_inject inj;
    memset(&inj, 0, sizeof(inj));
    const char *p = spec ? spec : "";
    unsigned idx = 0;
    while (*p) {
        size_t n = strcspn(p, ",");
        char entry[128];
        idx++;
        /* trim spaces around the entry */
        const char *b = p, *e = p + n;
        while (b < e && *b == ' ')
            b++;
        while (e > b && e[-1] == ' ')
            e--;
        if ((size_t)(e - b) >= sizeof(entry))
            return ks_err_set(err, KS_EINVAL, "inject entry %u: too long", idx);
        snprintf(entry, sizeof(entry), "%.*s", (int)(e - b), b);
        if (inj.n >= KS_SELFTEST_INJECT_MAX)
            return ks_err_set(err, KS_EINVAL, "inject: more than %d entries",
                              KS_SELFTEST_INJECT_MAX);
        const char *colon = strchr(entry, ':');
        if (!colon)
            return ks_err_set(err, KS_EINVAL, "inject entry %u '%s': expected 'cpu:feature'", idx,
                              entry);
        int32_t cpu;
        if (!parse_cpu(entry, (size_t)(colon - entry), &cpu))
            return ks_err_set(err, KS_EINVAL,
                              "inject entry %u '%s': cpu '%.*s' is not a cpu number", idx, entry,
                              (int)(colon - entry), entry);
        const char *name = colon + 1;
        ks_err sub;
        uint64_t mask;
        if (ks_selftest_resolve(&mask, name, &sub) != KS_OK)
            return ks_err_set(err, KS_EINVAL, "inject entry %u '%s': %s", idx, entry, sub.msg);
        inj.e[inj.n].cpu = cpu;
        inj.e[inj.n].tests = mask;
        snprintf(inj.e[inj.n].name, sizeof(inj.e[inj.n].name), "%s", name);
        inj.n++;
        p += n;
        if (*p == ',') {
            p++;
            if (!*p)
                return ks_err_set(err, KS_EINVAL, "inject: trailing ','");
        }
    }
    *out = inj;
    return KS_OK;
}

uint64_t ks_selftest_inject_mask(const ks_selftest_inject *inj, int32_t cpu)
{
    uint64_t mask = 0;
    for (uint32_t i = 0; inj && i < inj->n; i++)
        if (inj->e[i].cpu == cpu)
            mask |= inj->e[i].tests;
    return mask;
}

uint32_t ks_selftest_n_failed(const ks_selftest_cpu_result *r)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_results; i++)
        n += r->results[i].status == KS_SELFTEST_FAIL;
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Running                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#if defined(__x86_64__)

static bool cpuid_live(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4])
{
    (void)ctx;
    unsigned a, b, c, d;
    __cpuid_count(leaf, subleaf, a, b, c, d);
    regs[0] = a;
    regs[1] = b;
    regs[2] = c;
    regs[3] = d;
    return true;
}

/* XCR0, or 0 when the OS has not enabled XSAVE (then no extended state is usable). */
static uint64_t read_xcr0(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) /* OSXSAVE */
        return 0;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

#endif

#define KS_ST_MAX_REPS 1000000u

static void run_test(size_t i, const ks_featset *native, uint64_t xcr0, bool inject,
                     uint32_t min_us, ks_selftest_result *r)
{
    const ks_selftest__def *d = &tests[i];
    ks_featset req;
    ks_err e;
    char bad[64];
    memset(r, 0, sizeof(*r));
    r->test = d->name;
    r->whole_cpu = d->faulty == NULL;
    uint64_t t0 = mono_us();
    if (ks_selftest_required_features(i, &req, &e) != KS_OK ||
        !names_to_set(d->faulty, &r->faulty, bad, sizeof(bad))) {
        r->status = KS_SELFTEST_SKIPPED;
        snprintf(r->detail, sizeof(r->detail), "feature names unknown to the catalogue");
        ks_featset_clear(&r->faulty);
        goto done;
    }
    if (!ks_featset_subset(&req, native)) {
        ks_featset missing;
        ks_featset_andnot(&missing, &req, native);
        r->status = KS_SELFTEST_NOT_PRESENT;
        snprintf(r->detail, sizeof(r->detail), "cpu lacks '%s'",
                 ks_feature_name((unsigned)ks_featset_next(&missing, 0)));
        goto done;
    }
    if ((xcr0 & d->xcr0) != d->xcr0) {
        r->status = KS_SELFTEST_NOT_PRESENT;
        snprintf(r->detail, sizeof(r->detail),
                 "os has not enabled the register state (xcr0 0x%llx, needs 0x%llx)",
                 (unsigned long long)xcr0, (unsigned long long)d->xcr0);
        goto done;
    }
    if (d->prepare && !d->prepare(r->detail, sizeof(r->detail))) {
        r->status = KS_SELFTEST_SKIPPED;
        goto done;
    }

    uint8_t want[KS_ST_OUT_MAX], got[KS_ST_OUT_MAX];
    size_t want_len = d->expect(want);
    uint64_t reps_start = mono_us();
    r->status = KS_SELFTEST_PASS;
    do {
        memset(got, 0, sizeof(got));
        size_t got_len = d->run(got);
        if (inject)
            got[0] ^= 0x01; /* one flipped bit, like a real silent corruption */
        r->reps++;
        if (got_len != want_len || memcmp(got, want, want_len) != 0) {
            size_t at = 0;
            while (at < want_len && at < got_len && got[at] == want[at])
                at++;
            r->status = KS_SELFTEST_FAIL;
            r->injected = inject;
            snprintf(r->detail, sizeof(r->detail),
                     "result differs from the known answer at byte %zu (got 0x%02x, want "
                     "0x%02x) in repetition %u%s",
                     at, at < got_len ? got[at] : 0, at < want_len ? want[at] : 0, r->reps,
                     inject ? " [injected fault]" : "");
            break;
        }
    } while (mono_us() - reps_start < min_us && r->reps < KS_ST_MAX_REPS);
    if (r->status == KS_SELFTEST_PASS)
        snprintf(r->detail, sizeof(r->detail), "%u repetitions", r->reps);
done:
    if (r->status != KS_SELFTEST_FAIL)
        ks_featset_clear(&r->faulty);
    r->elapsed_us = mono_us() - t0;
    r->time_us = wall_us();
}

typedef struct run_ctx {
    int32_t cpu;
    const ks_selftest_options *opts;
    ks_selftest_cpu_result *res;
    int progress_fd; /* isolated runs: records to the parent, -1 otherwise */
    ks_code rc;
    ks_err err;
} run_ctx;

/*
 * Isolated runs stream fixed-size records from the child to the parent; each is
 * smaller than PIPE_BUF, so a write is atomic and a record is never torn.
 */
enum { REC_START, REC_RESULT, REC_DONE, REC_ERROR };
typedef struct run_rec {
    uint32_t kind;
    uint32_t index;            /* REC_START: test table index */
    ks_selftest_result result; /* REC_RESULT */
    ks_featset native;         /* REC_DONE */
    uint64_t start_us, elapsed_us;
    ks_code rc; /* REC_ERROR */
    char msg[256];
} run_rec;
_Static_assert(sizeof(run_rec) <= 4096, "run_rec must fit in PIPE_BUF");

void (*ks_selftest__hook)(size_t test_index);

static void send_rec(int fd, const run_rec *rec)
{
    ssize_t n;
    do
        n = write(fd, rec, sizeof(*rec));
    while (n < 0 && errno == EINTR);
}

/* Pins the calling thread (or child process), then runs the selected tests. */
static void run_suite(run_ctx *c)
{
    ks_selftest_cpu_result *res = c->res;
    cpu_set_t *set = CPU_ALLOC((int)c->cpu + 1);
    size_t set_size = CPU_ALLOC_SIZE((int)c->cpu + 1);
    if (!set) {
        c->rc = ks_err_set(&c->err, KS_ENOMEM, "out of memory for a cpu set");
        return;
    }
    CPU_ZERO_S(set_size, set);
    CPU_SET_S((int)c->cpu, set_size, set);
    if (sched_setaffinity(0, set_size, set) != 0) {
        c->rc = ks_err_set(&c->err, KS_EINVAL, "cannot run on cpu %d (%s)", (int)c->cpu,
                           strerrorname_np(errno));
        goto done;
    }
    if (c->opts->idle_priority) {
        struct sched_param sp = {0};
        int e = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
        if (e != 0) {
            c->rc =
                ks_err_set(&c->err, KS_EINTERNAL, "cannot set SCHED_IDLE (%s)", strerrorname_np(e));
            goto done;
        }
    }
    if (sched_getcpu() != c->cpu) {
        c->rc = ks_err_set(&c->err, KS_EINTERNAL, "pinned to cpu %d but running on cpu %d",
                           (int)c->cpu, sched_getcpu());
        goto done;
    }
#if defined(__x86_64__)
    res->cpu = c->cpu;
    res->start_us = wall_us();
    uint64_t t0 = mono_us();
    /* CPUID and XCR0 read here, on the pinned CPU: hybrid parts differ per core. */
    ks_feature_decode_cpuid(&res->native, cpuid_live, NULL);
    uint64_t xcr0 = read_xcr0();
    uint64_t inject = ks_selftest_inject_mask(c->opts->inject, c->cpu);
    uint32_t min_us = c->opts->min_test_us < 1000 ? 1000 : c->opts->min_test_us;
    res->n_results = 0;
    for (size_t i = 0; i < N_TESTS; i++) {
        run_rec rec;
        if (c->opts->tests && !(c->opts->tests >> i & 1))
            continue;
        if (c->progress_fd >= 0) {
            memset(&rec, 0, sizeof(rec));
            rec.kind = REC_START;
            rec.index = (uint32_t)i;
            send_rec(c->progress_fd, &rec);
        }
        if (ks_selftest__hook)
            ks_selftest__hook(i);
        ks_selftest_result *r = &res->results[res->n_results++];
        run_test(i, &res->native, xcr0, inject >> i & 1, min_us, r);
        if (c->progress_fd >= 0) {
            rec.kind = REC_RESULT;
            rec.result = *r;
            send_rec(c->progress_fd, &rec);
        }
    }
    res->elapsed_us = mono_us() - t0;
    c->rc = KS_OK;
#else
    c->rc = ks_err_set(&c->err, KS_EUNSUPPORTED, "self-tests need an x86-64 build");
#endif
done:
    CPU_FREE(set);
}

static void *run_worker(void *arg)
{
    run_suite(arg);
    return NULL;
}

static ks_code run_in_thread(run_ctx *c, ks_err *err)
{
    pthread_t th;
    int e = pthread_create(&th, NULL, run_worker, c);
    if (e != 0)
        return ks_err_set(err, KS_EINTERNAL, "cannot create the self-test thread (%s)",
                          strerrorname_np(e));
    pthread_join(th, NULL);
    if (c->rc != KS_OK && err)
        *err = c->err;
    return c->rc;
}

/* Records a test that did not finish in an isolated child (crash or hang) as a
 * FAIL of that test, and the selected tests after it as skipped. */
static void finish_aborted(run_ctx *c, int started, const char *why)
{
    ks_selftest_cpu_result *res = c->res;
    uint64_t now = wall_us();
    for (size_t i = started < 0 ? 0 : (size_t)started; i < N_TESTS; i++) {
        if (c->opts->tests && !(c->opts->tests >> i & 1))
            continue;
        ks_selftest_result *r = &res->results[res->n_results++];
        memset(r, 0, sizeof(*r));
        r->test = tests[i].name;
        r->time_us = now;
        if ((int)i == started) {
            char bad[64];
            r->status = KS_SELFTEST_FAIL;
            r->whole_cpu = tests[i].faulty == NULL;
            if (!names_to_set(tests[i].faulty, &r->faulty, bad, sizeof(bad)))
                ks_featset_clear(&r->faulty);
            snprintf(r->detail, sizeof(r->detail), "the workload %s", why);
        } else {
            r->status = KS_SELFTEST_SKIPPED;
            snprintf(r->detail, sizeof(r->detail), "not run: an earlier test %s", why);
        }
    }
}

#define KS_SELFTEST_DEFAULT_TIMEOUT_MS 30000u

static ks_code run_isolated(run_ctx *c, ks_err *err)
{
    int fds[2];
    ks_code rc = KS_OK;
    int started = -1, status = 0;
    bool finished = false;
    char why[96] = "";
    unsigned warm;
    /* build the catalogue's name index before fork, so the child never waits on a
     * pthread_once another thread of ours was in the middle of */
    (void)ks_feature_lookup("sse2", &warm, NULL);
    if (pipe2(fds, O_CLOEXEC) != 0)
        return ks_err_set(err, KS_EINTERNAL, "cannot create a pipe (%s)", strerrorname_np(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return ks_err_set(err, KS_EINTERNAL, "cannot fork the self-test process (%s)",
                          strerrorname_np(errno));
    }
    if (pid == 0) {
        /* child: single-threaded copy of the caller; report and leave without
         * running the parent's atexit handlers */
        static const int fatal[] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGTRAP};
        run_rec rec;
        /* a fault must kill the child so the parent sees which signal: the
         * caller's crash handlers (a daemon's, a test framework's) must not run */
        for (size_t k = 0; k < sizeof(fatal) / sizeof(fatal[0]); k++)
            signal(fatal[k], SIG_DFL);
        close(fds[0]);
        c->progress_fd = fds[1];
        run_suite(c);
        memset(&rec, 0, sizeof(rec));
        rec.kind = c->rc == KS_OK ? REC_DONE : REC_ERROR;
        rec.rc = c->rc;
        snprintf(rec.msg, sizeof(rec.msg), "%s", c->rc == KS_OK ? "" : c->err.msg);
        rec.native = c->res->native;
        rec.start_us = c->res->start_us;
        rec.elapsed_us = c->res->elapsed_us;
        send_rec(fds[1], &rec);
        _exit(0);
    }
    close(fds[1]);
    uint32_t timeout_ms =
        c->opts->timeout_ms ? c->opts->timeout_ms : KS_SELFTEST_DEFAULT_TIMEOUT_MS;
    uint64_t deadline = mono_us() + (uint64_t)timeout_ms * 1000u;
    ks_selftest_cpu_result *res = c->res;
    res->cpu = c->cpu;
    res->n_results = 0;
    for (;;) {
        uint64_t now = mono_us();
        if (now >= deadline) {
            snprintf(why, sizeof(why), "did not finish within %u ms", timeout_ms);
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int pr = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue; /* the deadline check above ends the loop */
        run_rec rec;
        ssize_t n = read(fds[0], &rec, sizeof(rec));
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(rec))
            break; /* EOF: the child is gone (finished or crashed) */
        if (rec.kind == REC_START) {
            started = (int)rec.index;
        } else if (rec.kind == REC_RESULT && res->n_results < KS_SELFTEST_MAX_TESTS) {
            res->results[res->n_results++] = rec.result;
            started = -1;
        } else if (rec.kind == REC_DONE) {
            res->native = rec.native;
            res->start_us = rec.start_us;
            res->elapsed_us = rec.elapsed_us;
            finished = true;
        } else if (rec.kind == REC_ERROR) {
            rc = ks_err_set(err, rec.rc, "%s", rec.msg);
            finished = true;
        }
    }
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (finished)
        return rc;
    if (!why[0]) {
        if (WIFSIGNALED(status))
            snprintf(why, sizeof(why), "crashed the test process with SIG%s",
                     sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
        else
            snprintf(why, sizeof(why), "ended the test process (status %d)",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    if (started < 0 && res->n_results == 0)
        return ks_err_set(err, KS_EINTERNAL, "self-test process on cpu %d %s before any test",
                          (int)c->cpu, why);
    /* a crash between tests is charged to the next one: it was the code running */
    if (started < 0) {
        size_t next = N_TESTS;
        for (size_t i = 0; i < N_TESTS && next == N_TESTS; i++) {
            bool selected = !c->opts->tests || (c->opts->tests >> i & 1);
            bool have = false;
            for (uint32_t k = 0; k < res->n_results; k++)
                have |= res->results[k].test == tests[i].name;
            if (selected && !have)
                next = i;
        }
        if (next == N_TESTS) /* every test reported: only DONE was lost */
            return ks_err_set(err, KS_EINTERNAL, "self-test process on cpu %d %s", (int)c->cpu,
                              why);
        started = (int)next;
    }
    finish_aborted(c, started, why);
    res->elapsed_us = 0;
    return KS_OK;
}

ks_code ks_selftest_run_cpu(ks_selftest_cpu_result *out, int32_t cpu,
                            const ks_selftest_options *opts, ks_err *err)
{
    static const ks_selftest_options defaults = KS_SELFTEST_OPTIONS_INIT;
    ks_selftest_cpu_result *res = NULL;
    run_ctx c;
    ks_code rc;
    if (cpu < 0 || cpu >= KS_REPORT_MAX_CPUS)
        return ks_err_set(err, KS_EINVAL, "cpu %d out of range", (int)cpu);
    res = calloc(1, sizeof(*res));
    if (!res)
        return ks_err_set(err, KS_ENOMEM, "out of memory for self-test results");
    memset(&c, 0, sizeof(c));
    c.cpu = cpu;
    c.opts = opts ? opts : &defaults;
    c.res = res;
    c.progress_fd = -1;
    c.rc = KS_EINTERNAL;
    rc = c.opts->isolate ? run_isolated(&c, err) : run_in_thread(&c, err);
    if (rc == KS_OK)
        *out = *res;
    free(res);
    return rc;
}

json_t *ks_selftest_cpu_result_to_json(const ks_selftest_cpu_result *r)
{
    json_t *doc = json_object(), *arr = json_array();
    if (!doc || !arr)
        goto fail;
    if (json_object_set_new(doc, "cpu", json_integer(r->cpu)) ||
        json_object_set_new(doc, "elapsed_ms", json_real((double)r->elapsed_us / 1000.0)) ||
        json_object_set_new(doc, "failed", json_integer(ks_selftest_n_failed(r))))
        goto fail;
    for (uint32_t i = 0; i < r->n_results; i++) {
        const ks_selftest_result *t = &r->results[i];
        json_t *o = json_object();
        /* set_new and append_new take the reference even when they fail */
        if (!o || json_array_append_new(arr, o))
            goto fail;
        if (json_object_set_new(o, "test", json_string(t->test)) ||
            json_object_set_new(o, "status", json_string(ks_selftest_status_to_str(t->status))) ||
            json_object_set_new(o, "ms", json_real((double)t->elapsed_us / 1000.0)) ||
            json_object_set_new(o, "reps", json_integer(t->reps)) ||
            json_object_set_new(o, "faulty", ks_featset_to_json(&t->faulty)) ||
            json_object_set_new(o, "whole_cpu", json_boolean(t->whole_cpu)) ||
            json_object_set_new(o, "injected", json_boolean(t->injected)) ||
            json_object_set_new(o, "detail", json_string(t->detail)))
            goto fail;
    }
    if (json_object_set_new(doc, "results", arr))
        goto fail_doc;
    return doc;
fail:
    json_decref(arr);
fail_doc:
    json_decref(doc);
    return NULL;
}
