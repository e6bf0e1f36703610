/*
 * test_ks_selftest.c - the CPU feature self-tests (agent/selftest/): every test
 * passes on every CPU of this machine where its features exist, is
 * "not-present" where they do not, injected faults are detected on exactly the
 * injected CPU and feature, the scalar references agree with published test
 * vectors, and `kintsugi-agent selftest` reports an injected fault end to end.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include <jansson.h>

#include "ks_test.h"

#include "ks_feature.h"
#include "ks_selftest.h"
#include "ks_selftest_int.h"

/* CPUs this process may run on (the machine's, unless a cpuset narrows it). */
static int allowed_cpus(int *out, int cap)
{
    cpu_set_t set;
    int n = 0;
    CPU_ZERO(&set);
    assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
    for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
        if (CPU_ISSET(c, &set))
            out[n++] = c;
    assert_true(n > 0);
    return n;
}

static const ks_selftest_result *find_result(const ks_selftest_cpu_result *r, const char *name)
{
    for (uint32_t i = 0; i < r->n_results; i++)
        if (strcmp(r->results[i].test, name) == 0)
            return &r->results[i];
    return NULL;
}

static size_t test_index(const char *name)
{
    for (size_t i = 0; i < ks_selftest_count(); i++)
        if (strcmp(ks_selftest_name(i), name) == 0)
            return i;
    fail_msg("no self-test named '%s'", name);
    return 0;
}

static bool test_present(const ks_selftest_cpu_result *r, size_t i)
{
    ks_featset req;
    assert_int_equal(ks_selftest_required_features(i, &req, NULL), KS_OK);
    return ks_featset_subset(&req, &r->native);
}

static unsigned feature_id(const char *name)
{
    unsigned id;
    assert_int_equal(ks_feature_lookup(name, &id, NULL), KS_OK);
    return id;
}

/* Every test on every CPU: pass where present, not-present where absent; each
 * passing workload ran >= 1 ms; the suite stays within 2 s per CPU. */
static void test_selftest__all_pass_on_every_cpu(void **state)
{
    (void)state;
    int cpus[64];
    int n = allowed_cpus(cpus, 64);
    ks_selftest_cpu_result *r = malloc(sizeof(*r));
    ks_selftest_options o = KS_SELFTEST_OPTIONS_INIT;
    ks_err err;
    assert_non_null(r);
    for (int k = 0; k < n; k++) {
        assert_int_equal(ks_selftest_run_cpu(r, cpus[k], &o, &err), KS_OK);
        assert_int_equal(r->cpu, cpus[k]);
        assert_int_equal(r->n_results, ks_selftest_count());
        assert_true(ks_featset_test(&r->native, feature_id("sse2")));
        unsigned n_pass = 0;
        for (size_t i = 0; i < r->n_results; i++) {
            const ks_selftest_result *t = &r->results[i];
            bool present = test_present(r, i);
            if (!present) {
                assert_int_equal(t->status, KS_SELFTEST_NOT_PRESENT);
                assert_int_equal(t->reps, 0);
                continue;
            }
            /* present by CPUID: pass, or not-present by XCR0, or an AMX permission refusal */
            if (t->status == KS_SELFTEST_SKIPPED) {
                assert_string_equal(t->test, "amx");
                continue;
            }
            if (t->status == KS_SELFTEST_NOT_PRESENT) {
                assert_non_null(strstr(t->detail, "register state"));
                continue;
            }
            if (t->status != KS_SELFTEST_PASS)
                fail_msg("cpu %d test %s: %s", cpus[k], t->test, t->detail);
            assert_false(t->injected);
            assert_true(ks_featset_empty(&t->faulty));
            assert_true(t->reps >= 1);
            assert_true(t->elapsed_us >= 1000);
            n_pass++;
        }
        assert_true(n_pass >= 3); /* integer, x87 and sse2 exist on every x86-64 */
        assert_int_equal(ks_selftest_n_failed(r), 0);
        assert_true(r->elapsed_us <= 2000000);
        print_message("cpu %d: %u tests passed, suite %.1f ms\n", cpus[k], n_pass,
                      (double)r->elapsed_us / 1000.0);
    }
    free(r);
}

/* Injection table: the fault shows on exactly the injected CPU and test, with the
 * features the test proves faulty, and nowhere else. */
static void test_selftest__injected_fault_detected_exactly(void **state)
{
    (void)state;
    static const struct {
        const char *spec_name; /* what the operator types */
        const char *test;      /* the test that must fail */
        const char *faulty;    /* feature it proves faulty, NULL = whole cpu */
    } cases[] = {
        {"avx2", "avx2", "avx2"},
        {"aes", "aes", "aes"},
        {"sse4_2", "sse4_2", "sse4_2"},
        {"crc32", "sse4_2", "sse4_2"},
        {"fma", "fma", "fma"},
        {"bmi2", "bmi2", "bmi2"},
        {"integer", "integer", NULL},
        {"avx512f", "avx512f", "avx512f"},
        {"pclmulqdq", "pclmulqdq", "pclmulqdq"},
        {"gfni", "gfni", "gfni"},
        {"AVX512IFMA", "avx512ifma", "avx512ifma"},
    };
    int cpus[64];
    int n = allowed_cpus(cpus, 64);
    ks_selftest_cpu_result *r = malloc(sizeof(*r));
    assert_non_null(r);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int target = cpus[c % (size_t)n];
        char spec[64];
        ks_selftest_inject inj;
        ks_selftest_options o = KS_SELFTEST_OPTIONS_INIT;
        ks_err err;
        snprintf(spec, sizeof(spec), "%d:%s", target, cases[c].spec_name);
        if (ks_selftest_inject_parse(&inj, spec, &err) != KS_OK)
            fail_msg("'%s': %s", spec, err.msg);
        o.inject = &inj;
        o.min_test_us = 1000;
        for (int k = 0; k < n; k++) {
            assert_int_equal(ks_selftest_run_cpu(r, cpus[k], &o, &err), KS_OK);
            const ks_selftest_result *t = find_result(r, cases[c].test);
            assert_non_null(t);
            bool present = test_present(r, test_index(cases[c].test));
            if (cpus[k] != target || !present) {
                /* nowhere else - and an absent feature is "not present", never a fault */
                assert_int_equal(ks_selftest_n_failed(r), 0);
                if (!present)
                    assert_int_equal(t->status, KS_SELFTEST_NOT_PRESENT);
                continue;
            }
            assert_int_equal(ks_selftest_n_failed(r), 1);
            assert_int_equal(t->status, KS_SELFTEST_FAIL);
            assert_true(t->injected);
            assert_non_null(strstr(t->detail, "injected"));
            if (cases[c].faulty) {
                assert_false(t->whole_cpu);
                assert_int_equal(ks_featset_popcount(&t->faulty), 1);
                assert_true(ks_featset_test(&t->faulty, feature_id(cases[c].faulty)));
            } else {
                assert_true(t->whole_cpu);
                assert_true(ks_featset_empty(&t->faulty));
            }
        }
    }
    free(r);
}

/* Injecting into a test whose feature this CPU lacks yields "not-present". */
static void test_selftest__inject_absent_feature_is_not_present(void **state)
{
    (void)state;
    int cpus[64];
    allowed_cpus(cpus, 64);
    ks_selftest_cpu_result *r = malloc(sizeof(*r));
    ks_selftest_options o = KS_SELFTEST_OPTIONS_INIT;
    ks_selftest_inject inj;
    ks_err err;
    assert_non_null(r);
    o.min_test_us = 1000;
    o.tests = UINT64_C(1) << test_index("integer"); /* cheap run, only to read CPUID */
    assert_int_equal(ks_selftest_run_cpu(r, cpus[0], &o, &err), KS_OK);
    size_t absent = ks_selftest_count();
    for (size_t i = 0; i < ks_selftest_count(); i++)
        if (!test_present(r, i))
            absent = i;
    if (absent == ks_selftest_count()) {
        free(r);
        skip(); /* this CPU has every feature we test */
    }
    char spec[64];
    snprintf(spec, sizeof(spec), "%d:%s", cpus[0], ks_selftest_name(absent));
    assert_int_equal(ks_selftest_inject_parse(&inj, spec, &err), KS_OK);
    o.inject = &inj;
    o.tests = UINT64_C(1) << absent;
    assert_int_equal(ks_selftest_run_cpu(r, cpus[0], &o, &err), KS_OK);
    assert_int_equal(r->n_results, 1);
    assert_int_equal(r->results[0].status, KS_SELFTEST_NOT_PRESENT);
    assert_int_equal(ks_selftest_n_failed(r), 0);
    free(r);
}

static void test_selftest__inject_parse(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        ks_code rc;
        const char *msg; /* substring of the error, or NULL */
        uint32_t n;
    } cases[] = {
        {"", KS_OK, NULL, 0},
        {"0:avx2", KS_OK, NULL, 1},
        {"0:avx2, 1:AES", KS_OK, NULL, 2},
        {"3:SSE4.2,3:int", KS_OK, NULL, 2},
        {"0:avx513", KS_EINVAL, "unknown test or feature 'avx513'", 0},
        {"x:avx2", KS_EINVAL, "cpu 'x' is not a cpu number", 0},
        {":avx2", KS_EINVAL, "is not a cpu number", 0},
        {"99999:avx2", KS_EINVAL, "is not a cpu number", 0},
        {"0", KS_EINVAL, "expected 'cpu:feature'", 0},
        {"0:", KS_EINVAL, "empty test or feature name", 0},
        {"0:avx2,", KS_EINVAL, "trailing ','", 0},
        {"0:avx2,1:nope", KS_EINVAL, "inject entry 2 '1:nope'", 0},
        {"0:avx512_bf16", KS_EINVAL, "no self-test checks feature 'avx512_bf16'", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ks_selftest_inject inj;
        ks_err err;
        memset(&err, 0, sizeof(err));
        ks_code rc = ks_selftest_inject_parse(&inj, cases[i].spec, &err);
        if (rc != cases[i].rc)
            fail_msg("'%s': rc %d, want %d (%s)", cases[i].spec, rc, cases[i].rc, err.msg);
        if (cases[i].msg && !strstr(err.msg, cases[i].msg))
            fail_msg("'%s': message '%s' lacks '%s'", cases[i].spec, err.msg, cases[i].msg);
        if (rc == KS_OK)
            assert_int_equal(inj.n, cases[i].n);
    }
    ks_selftest_inject inj;
    assert_int_equal(ks_selftest_inject_parse(&inj, NULL, NULL), KS_OK);
    assert_int_equal(inj.n, 0);
    assert_int_equal(ks_selftest_inject_parse(&inj, "2:avx2,5:aes,2:bmi2", NULL), KS_OK);
    assert_true(ks_selftest_inject_mask(&inj, 2) ==
                ((UINT64_C(1) << test_index("avx2")) | (UINT64_C(1) << test_index("bmi2"))));
    assert_true(ks_selftest_inject_mask(&inj, 5) == UINT64_C(1) << test_index("aes"));
    assert_true(ks_selftest_inject_mask(&inj, 0) == 0);
}

static void test_selftest__resolve(void **state)
{
    (void)state;
    static const struct {
        const char *name, *test;
    } cases[] = {
        {"SSE4.2", "sse4_2"},
        {"crc32", "sse4_2"},
        {"avx512f", "avx512f"},
        {"sha-ni", "sha_ni"},
        {"abm", "lzcnt"},
        {"amx_int8", "amx"},
        {"fpu", "x87"},
        {"integer", "integer"},
        {"avx512-vnni", "avx512_vnni"},
        {"avx512-vpopcntdq", "avx512_vpopcntdq"},
        {"avx512bitalg", "avx512_bitalg"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t mask = 0;
        ks_err err;
        if (ks_selftest_resolve(&mask, cases[i].name, &err) != KS_OK)
            fail_msg("'%s': %s", cases[i].name, err.msg);
        assert_true(mask == UINT64_C(1) << test_index(cases[i].test));
    }
    /* every test's features are in the catalogue, and whole-CPU means the integer test */
    for (size_t i = 0; i < ks_selftest_count(); i++) {
        ks_featset req, faulty;
        ks_err err;
        assert_int_equal(ks_selftest_required_features(i, &req, &err), KS_OK);
        ks_selftest_faulty_features(i, &faulty);
        assert_int_equal(ks_selftest_is_whole_cpu(i), strcmp(ks_selftest_name(i), "integer") == 0);
        if (!ks_selftest_is_whole_cpu(i))
            assert_false(ks_featset_empty(&faulty));
    }
}

static void hex(char *out, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* The scalar references against published vectors (FIPS 180-2, carry-less products). */
static void test_selftest__references_match_known_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *msg, *digest;
    } sha[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof(sha) / sizeof(sha[0]); i++) {
        uint8_t d[32];
        char h[65];
        ks_st__sha256_ref((const uint8_t *)sha[i].msg, strlen(sha[i].msg), d);
        hex(h, d, 32);
        assert_string_equal(h, sha[i].digest);
    }
    uint64_t p[2];
    ks_st__clmul_ref(3, 3, p); /* (x+1)^2 = x^2+1 */
    assert_true(p[0] == 5 && p[1] == 0);
    ks_st__clmul_ref(UINT64_C(1) << 63, 2, p);
    assert_true(p[0] == 0 && p[1] == 1);
    ks_st__clmul_ref(UINT64_MAX, UINT64_MAX, p); /* alternating bits */
    assert_true(p[0] == UINT64_C(0x5555555555555555) && p[1] == UINT64_C(0x5555555555555555));
    /* AES: the all-zero state after one final round is SubBytes(0) = 0x63 everywhere,
     * and InvMixColumns of a column of equal bytes keeps it (14^11^13^9 = 1). */
    uint8_t s[16] = {0}, k[16] = {0};
    ks_st__aes_ref_enc(s, k, true);
    for (int i = 0; i < 16; i++)
        assert_int_equal(s[i], 0x63);
    ks_st__aes_ref_imc(s);
    for (int i = 0; i < 16; i++)
        assert_int_equal(s[i], 0x63);
    ks_st__aes_ref_dec(s, k, true);
    for (int i = 0; i < 16; i++)
        assert_int_equal(s[i], 0);
}

/* The integer test's stored answer is compared for real: a different seed gives a
 * different result, so a constant "expect" could not hide a broken run. */
static void test_selftest__integer_answer_depends_on_the_workload(void **state)
{
    (void)state;
    uint8_t a[KS_ST_OUT_MAX], b[KS_ST_OUT_MAX];
    size_t na = ks_st__int_run(a);
    size_t nb = ks_st__int_expect(b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    uint64_t saved = ks_selftest__seed;
    ks_selftest__seed = saved + 1;
    na = ks_st__int_run(a);
    ks_selftest__seed = saved;
    assert_memory_not_equal(a, b, na);
}

/* The caller's affinity and policy are untouched, even with idle_priority. */
static void test_selftest__caller_affinity_and_policy_untouched(void **state)
{
    (void)state;
    int cpus[64];
    int n = allowed_cpus(cpus, 64);
    cpu_set_t before, after;
    int pol_before, pol_after;
    struct sched_param sp;
    ks_selftest_cpu_result *r = malloc(sizeof(*r));
    ks_selftest_options o = KS_SELFTEST_OPTIONS_INIT;
    ks_err err;
    assert_non_null(r);
    assert_int_equal(sched_getaffinity(0, sizeof(before), &before), 0);
    assert_int_equal(pthread_getschedparam(pthread_self(), &pol_before, &sp), 0);
    o.idle_priority = true;
    o.min_test_us = 1000;
    o.tests = (UINT64_C(1) << test_index("integer")) | (UINT64_C(1) << test_index("sse2"));
    assert_int_equal(ks_selftest_run_cpu(r, cpus[n - 1], &o, &err), KS_OK);
    assert_int_equal(r->n_results, 2);
    assert_int_equal(ks_selftest_n_failed(r), 0);
    assert_int_equal(sched_getaffinity(0, sizeof(after), &after), 0);
    assert_int_equal(pthread_getschedparam(pthread_self(), &pol_after, &sp), 0);
    assert_true(CPU_EQUAL(&before, &after));
    assert_int_equal(pol_before, pol_after);
    free(r);
}

static void test_selftest__unusable_cpu_is_an_error(void **state)
{
    (void)state;
    ks_selftest_cpu_result *r = malloc(sizeof(*r));
    ks_err err;
    assert_non_null(r);
    assert_int_equal(ks_selftest_run_cpu(r, -1, NULL, &err), KS_EINVAL);
    assert_int_equal(ks_selftest_run_cpu(r, KS_REPORT_MAX_CPUS - 1, NULL, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "cannot run on cpu"));
    free(r);
}

static void test_selftest__result_json(void **state)
{
    (void)state;
    int cpus[64];
    allowed_cpus(cpus, 64);
    ks_selftest_cpu_result *r = malloc(sizeof(*r));
    ks_selftest_options o = KS_SELFTEST_OPTIONS_INIT;
    ks_selftest_inject inj;
    char spec[32];
    ks_err err;
    assert_non_null(r);
    snprintf(spec, sizeof(spec), "%d:integer", cpus[0]);
    assert_int_equal(ks_selftest_inject_parse(&inj, spec, NULL), KS_OK);
    o.inject = &inj;
    o.tests = UINT64_C(1) << test_index("integer");
    assert_int_equal(ks_selftest_run_cpu(r, cpus[0], &o, &err), KS_OK);
    json_t *doc = ks_selftest_cpu_result_to_json(r);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "failed")), 1);
    json_t *t = json_array_get(json_object_get(doc, "results"), 0);
    assert_string_equal(json_string_value(json_object_get(t, "status")), "FAIL");
    assert_true(json_is_true(json_object_get(t, "whole_cpu")));
    assert_true(json_is_true(json_object_get(t, "injected")));
    json_decref(doc);
    free(r);
}

static size_t hook_target;
static int hook_mode; /* 1 = crash with SIGILL, 2 = hang */

static void test_hook(size_t i)
{
    if (i != hook_target)
        return;
    if (hook_mode == 1)
        raise(SIGILL);
    for (;;)
        pause();
}

/* Isolated runs: the same verdicts through the child, and a workload that crashes
 * or hangs becomes a FAIL of that test naming its features, the rest skipped. */
static void test_selftest__isolated_crash_and_hang_become_failures(void **state)
{
    (void)state;
    int cpus[64];
    int n = allowed_cpus(cpus, 64);
    int cpu = cpus[n - 1];
    ks_selftest_cpu_result *r = malloc(sizeof(*r));
    ks_selftest_options o = KS_SELFTEST_OPTIONS_INIT;
    ks_selftest_inject inj;
    char spec[32];
    ks_err err;
    assert_non_null(r);
    o.isolate = true;
    o.min_test_us = 1000;
    o.tests = (UINT64_C(1) << test_index("integer")) | (UINT64_C(1) << test_index("x87")) |
              (UINT64_C(1) << test_index("sse2")) | (UINT64_C(1) << test_index("popcnt"));
    /* plain and injected runs come through the pipe intact */
    assert_int_equal(ks_selftest_run_cpu(r, cpu, &o, &err), KS_OK);
    assert_int_equal(r->cpu, cpu);
    assert_int_equal(r->n_results, 4);
    assert_int_equal(ks_selftest_n_failed(r), 0);
    assert_true(ks_featset_test(&r->native, feature_id("sse2")));
    assert_true(r->elapsed_us > 0);
    snprintf(spec, sizeof(spec), "%d:x87", cpu);
    assert_int_equal(ks_selftest_inject_parse(&inj, spec, NULL), KS_OK);
    o.inject = &inj;
    assert_int_equal(ks_selftest_run_cpu(r, cpu, &o, &err), KS_OK);
    assert_int_equal(ks_selftest_n_failed(r), 1);
    assert_int_equal(find_result(r, "x87")->status, KS_SELFTEST_FAIL);
    assert_true(find_result(r, "x87")->injected);
    o.inject = NULL;

    /* a crash inside the sse2 workload */
    hook_target = test_index("sse2");
    hook_mode = 1;
    ks_selftest__hook = test_hook;
    ks_code rc = ks_selftest_run_cpu(r, cpu, &o, &err);
    ks_selftest__hook = NULL;
    assert_int_equal(rc, KS_OK);
    assert_int_equal(r->n_results, 4);
    assert_int_equal(find_result(r, "integer")->status, KS_SELFTEST_PASS);
    assert_int_equal(find_result(r, "x87")->status, KS_SELFTEST_PASS);
    const ks_selftest_result *t = find_result(r, "sse2");
    assert_int_equal(t->status, KS_SELFTEST_FAIL);
    assert_non_null(strstr(t->detail, "SIGILL"));
    assert_true(ks_featset_test(&t->faulty, feature_id("sse2")));
    assert_int_equal(find_result(r, "popcnt")->status, KS_SELFTEST_SKIPPED);

    /* a hang inside the integer workload: killed at the deadline */
    hook_target = test_index("integer");
    hook_mode = 2;
    o.timeout_ms = 1000;
    ks_selftest__hook = test_hook;
    rc = ks_selftest_run_cpu(r, cpu, &o, &err);
    ks_selftest__hook = NULL;
    assert_int_equal(rc, KS_OK);
    t = find_result(r, "integer");
    assert_int_equal(t->status, KS_SELFTEST_FAIL);
    assert_true(t->whole_cpu);
    assert_non_null(strstr(t->detail, "did not finish within 1000 ms"));
    assert_int_equal(find_result(r, "sse2")->status, KS_SELFTEST_SKIPPED);

    /* an unusable cpu is still an error, not a crash */
    assert_int_equal(ks_selftest_run_cpu(r, KS_REPORT_MAX_CPUS - 1, &o, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "cannot run on cpu"));
    free(r);
}

/* Runs the agent binary; returns its exit status and its stdout (caller frees). */
static int run_agent_env(const char *env, const char *args, char **out)
{
    char cmd[8400], path[4096];
    ks_test_path(path, sizeof(path), "%s/agent/kintsugi-agent", ks_test_build_dir());
    assert_int_equal(access(path, X_OK), 0);
    ks_test_path(cmd, sizeof(cmd), "env -u KS_INJECT_FAULT %s '%s' %s 2>/dev/null", env, path,
                 args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (size_t n; (n = fread(buf + len, 1, cap - len - 1, p)) > 0;)
        len += n;
    buf[len] = '\0';
    int st = pclose(p);
    *out = buf;
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static int run_agent(const char *args, char **out)
{
    return run_agent_env("", args, out);
}

/* End to end: `kintsugi-agent selftest --inject 0:avx2` exits 1 and names avx2 on cpu 0. */
static void test_selftest__agent_command_reports_injected_fault(void **state)
{
    (void)state;
    int cpus[64];
    allowed_cpus(cpus, 64);
    if (cpus[0] != 0)
        skip(); /* cpu 0 outside our cpuset */
    ks_selftest_cpu_result *r = malloc(sizeof(*r));
    ks_selftest_options o = KS_SELFTEST_OPTIONS_INIT;
    assert_non_null(r);
    o.tests = UINT64_C(1) << test_index("integer");
    assert_int_equal(ks_selftest_run_cpu(r, 0, &o, NULL), KS_OK);
    bool has_avx2 = test_present(r, test_index("avx2"));
    free(r);

    char *out = NULL;
    int rc = run_agent("selftest --inject 0:avx2 --min-ms 1", &out);
    assert_int_equal(rc, has_avx2 ? 1 : 0);
    unsigned n_fail = 0;
    bool avx2_on_0 = false;
    for (char *line = out, *next; line && *line; line = next) {
        char cpu[16], test[32], status[32];
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (sscanf(line, "%15s %31s %31s", cpu, test, status) != 3)
            continue;
        if (strcmp(status, "FAIL") == 0) {
            n_fail++;
            avx2_on_0 |=
                strcmp(cpu, "0") == 0 && strcmp(test, "avx2") == 0 && strstr(line, "avx2") != NULL;
        }
    }
    free(out);
    assert_int_equal(n_fail, has_avx2 ? 1 : 0);
    assert_int_equal(avx2_on_0, has_avx2);

    rc = run_agent("selftest --json --cpu 0 --feature avx2 --inject 0:avx2 --min-ms 1", &out);
    assert_int_equal(rc, has_avx2 ? 1 : 0);
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    free(out);
    assert_non_null(doc);
    json_t *cpu0 = json_array_get(json_object_get(doc, "cpus"), 0);
    assert_int_equal(json_integer_value(json_object_get(cpu0, "cpu")), 0);
    json_t *t = json_array_get(json_object_get(cpu0, "results"), 0);
    assert_string_equal(json_string_value(json_object_get(t, "test")), "avx2");
    assert_string_equal(json_string_value(json_object_get(t, "status")),
                        has_avx2 ? "FAIL" : "not-present");
    if (has_avx2)
        assert_string_equal(json_string_value(json_array_get(json_object_get(t, "faulty"), 0)),
                            "avx2");
    json_decref(doc);

    /* usage errors exit 2 */
    rc = run_agent("selftest --inject 0:avx513", &out);
    free(out);
    assert_int_equal(rc, 2);
    rc = run_agent("selftest --cpu 4000", &out);
    free(out);
    assert_int_equal(rc, 2);
    rc = run_agent("selftest --bogus", &out);
    free(out);
    assert_int_equal(rc, 2);
    /* the environment switch works too */
    rc = run_agent_env("KS_INJECT_FAULT=0:integer", "selftest --cpu 0 --feature integer", &out);
    assert_non_null(strstr(out, "(whole cpu)"));
    free(out);
    assert_int_equal(rc, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selftest__all_pass_on_every_cpu),
        cmocka_unit_test(test_selftest__injected_fault_detected_exactly),
        cmocka_unit_test(test_selftest__inject_absent_feature_is_not_present),
        cmocka_unit_test(test_selftest__inject_parse),
        cmocka_unit_test(test_selftest__resolve),
        cmocka_unit_test(test_selftest__references_match_known_vectors),
        cmocka_unit_test(test_selftest__integer_answer_depends_on_the_workload),
        cmocka_unit_test(test_selftest__caller_affinity_and_policy_untouched),
        cmocka_unit_test(test_selftest__unusable_cpu_is_an_error),
        cmocka_unit_test(test_selftest__result_json),
        cmocka_unit_test(test_selftest__isolated_crash_and_hang_become_failures),
        cmocka_unit_test(test_selftest__agent_command_reports_injected_fault),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
