/*
 * test_ks_defects.c - defect detection (agent/ks_defects*.c): dependency closure
 * through ks_report_derive_state, self-test faults (real runs with injection)
 * becoming defects on exactly the injected CPU, the operator file (valid,
 * missing, malformed, unknown CPU/feature, last good kept), IFS and MCE readers
 * on fake sysfs/procfs trees, and the report JSON carrying defects and states.
 */
#include <sched.h>
#include <sys/stat.h>

#include <jansson.h>

#include "ks_test.h"

#include "ks_defects.h"
#include "ks_feature.h"
#include "ks_report.h"
#include "ks_selftest.h"

static unsigned fid(const char *name)
{
    unsigned id;
    if (ks_feature_lookup(name, &id, NULL) != KS_OK)
        fail_msg("feature '%s' not in the catalogue", name);
    return id;
}

/* A report of n CPUs with ids[] (or 0..n-1), two threads per core, every x86 feature. */
static ks_report *make_report(uint32_t n, const int32_t *ids)
{
    ks_report *r = NULL;
    assert_int_equal(ks_report_new(&r, NULL), KS_OK);
    r->host.arch = KS_ARCH_X86_64;
    assert_int_equal(ks_report_alloc_cpus(r, n, NULL), KS_OK);
    for (uint32_t i = 0; i < n; i++) {
        ks_cpu *c = &r->cpus[i];
        c->id = ids ? ids[i] : (int32_t)i;
        c->package = 0;
        c->core = (int32_t)(i / 2);
        c->thread = (int32_t)(i % 2);
        c->state = KS_CPU_ONLINE;
        ks_feature_all_of_arch(KS_ARCH_X86_64, &c->native);
        c->usable = c->native;
    }
    ks_report_derive_state(r);
    return r;
}

/* The CPUs this process may run on, as a report (real CPU ids). */
static ks_report *make_live_report(void)
{
    cpu_set_t set;
    int32_t ids[64];
    uint32_t n = 0;
    assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
    for (int c = 0; c < CPU_SETSIZE && n < 64; c++)
        if (CPU_ISSET(c, &set))
            ids[n++] = c;
    return make_report(n, ids);
}

static bool usable(const ks_cpu *c, const char *name)
{
    return ks_featset_test(&c->usable, fid(name));
}

static ks_defects_options quiet_options(void)
{
    ks_defects_options o = KS_DEFECTS_OPTIONS_INIT;
    o.run_selftests = false;
    o.use_ifs = false;
    o.use_mce = false;
    o.use_operator = false;
    o.inject = ""; /* ignore $KS_INJECT_FAULT unless a test sets it */
    o.selftest_min_us = 1000;
    return o;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void mkdirs(const char *path)
{
    char tmp[4096];
    ks_test_path(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    mkdir(tmp, 0755);
}

/* ---- dependency closure and states ------------------------------------------------------ */

/* A self-test fault on feature F removes F and everything built on it (table). */
static void test_defects__closure_table(void **state)
{
    (void)state;
    static const struct {
        const char *faulty;
        const char *lost[6]; /* must become unusable */
        const char *kept[4]; /* must stay usable */
        ks_cpu_state st;
    } cases[] = {
        {"avx",
         {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"},
         {"sse4_2", "aes", "bmi2", NULL},
         KS_CPU_DEGRADED},
        {"avx2",
         {"avx2", "avx512f", "avx512vl", NULL},
         {"avx", "fma", "aes", NULL},
         KS_CPU_DEGRADED},
        {"avx512f",
         {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", NULL},
         {"avx2", "fma", "avx", NULL},
         KS_CPU_DEGRADED},
        {"aes", {"aes", "vaes", NULL}, {"avx2", "pclmulqdq", NULL}, KS_CPU_DEGRADED},
        {"bmi2", {"bmi2", NULL}, {"bmi1", "avx2", NULL}, KS_CPU_DEGRADED},
        {"sse2", {"sse2", "avx", "aes", NULL}, {NULL}, KS_CPU_QUARANTINED},
        {"fpu", {"fpu", "sse2", NULL}, {NULL}, KS_CPU_QUARANTINED},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        ks_report *r = make_report(2, NULL);
        ks_selftest_cpu_result *res = calloc(1, sizeof(*res));
        bool changed = false;
        assert_non_null(res);
        res->cpu = 1;
        res->n_results = 1;
        res->results[0].test = "synthetic";
        res->results[0].status = KS_SELFTEST_FAIL;
        ks_featset_set(&res->results[0].faulty, fid(cases[k].faulty));
        assert_int_equal(ks_defects_add_selftest(r, res, &changed, NULL), KS_OK);
        assert_true(changed);
        const ks_cpu *c = ks_report_find_cpu(r, 1);
        assert_int_equal(c->state, cases[k].st);
        for (int i = 0; i < 6 && cases[k].lost[i]; i++)
            if (usable(c, cases[k].lost[i]))
                fail_msg("faulty %s: %s still usable", cases[k].faulty, cases[k].lost[i]);
        for (int i = 0; i < 4 && cases[k].kept[i]; i++)
            if (!usable(c, cases[k].kept[i]))
                fail_msg("faulty %s: %s lost", cases[k].faulty, cases[k].kept[i]);
        /* the other CPU is untouched */
        assert_int_equal(ks_report_find_cpu(r, 0)->state, KS_CPU_ONLINE);
        assert_int_equal(ks_report_find_cpu(r, 0)->n_defects, 0);
        /* adding the same result again adds nothing */
        assert_int_equal(ks_defects_add_selftest(r, res, &changed, NULL), KS_OK);
        assert_false(changed);
        assert_int_equal(c->n_defects, 1);
        assert_int_equal(c->defects[0].source, KS_DEFECT_SELFTEST);
        free(res);
        ks_report_free(r);
    }
}

/* ---- self-tests through ks_defects_apply (real runs) ------------------------------------ */

static void test_defects__integer_fault_quarantines_only_that_cpu(void **state)
{
    (void)state;
    ks_report *r = make_live_report();
    ks_defects_state st;
    ks_defects_options o = quiet_options();
    char spec[32];
    ks_err err;
    int32_t target = r->cpus[r->n_cpus - 1].id;
    ks_defects_state_init(&st);
    snprintf(spec, sizeof(spec), "%d:integer", (int)target);
    o.run_selftests = true;
    o.inject = spec;
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_OK);
    assert_int_equal(st.n_selftest_cpus, r->n_cpus);
    assert_int_equal(st.n_selftest_failures, 1);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *c = &r->cpus[i];
        if (c->id != target) {
            assert_int_equal(c->state, KS_CPU_ONLINE);
            assert_int_equal(c->n_defects, 0);
            continue;
        }
        assert_int_equal(c->state, KS_CPU_QUARANTINED);
        assert_true(ks_featset_empty(&c->usable));
        assert_int_equal(c->n_defects, 1);
        assert_int_equal(c->defects[0].feature, KS_FEATURE_NONE);
        assert_int_equal(c->defects[0].source, KS_DEFECT_SELFTEST);
        assert_true(c->defects[0].time_us > 0);
        assert_non_null(strstr(c->defects[0].detail, "integer"));
    }
    ks_defects_state_destroy(&st);
    ks_report_free(r);
}

/* $KS_INJECT_FAULT is the default spec; the fault lands on that CPU and feature only,
 * and the report JSON carries the defect and the state. */
static void test_defects__env_injection_and_report_json(void **state)
{
    (void)state;
    ks_report *r = make_live_report();
    ks_defects_state st;
    ks_defects_options o = quiet_options();
    char spec[32];
    ks_err err;
    int32_t target = r->cpus[0].id;
    ks_defects_state_init(&st);
    /* only meaningful where the CPU has AVX2 */
    ks_selftest_cpu_result *probe = malloc(sizeof(*probe));
    ks_selftest_options so = KS_SELFTEST_OPTIONS_INIT;
    uint64_t mask;
    assert_non_null(probe);
    assert_int_equal(ks_selftest_resolve(&mask, "avx2", NULL), KS_OK);
    so.tests = mask;
    so.min_test_us = 1000;
    assert_int_equal(ks_selftest_run_cpu(probe, target, &so, NULL), KS_OK);
    bool has_avx2 = probe->results[0].status == KS_SELFTEST_PASS;
    free(probe);
    if (!has_avx2) {
        ks_report_free(r);
        skip();
    }
    snprintf(spec, sizeof(spec), "%d:avx2", (int)target);
    assert_int_equal(setenv("KS_INJECT_FAULT", spec, 1), 0);
    o.run_selftests = true;
    o.inject = NULL;
    ks_code rc = ks_defects_apply(r, &o, &st, &err);
    unsetenv("KS_INJECT_FAULT");
    assert_int_equal(rc, KS_OK);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *c = &r->cpus[i];
        if (c->id != target) {
            assert_int_equal(c->state, KS_CPU_ONLINE);
            continue;
        }
        assert_int_equal(c->state, KS_CPU_DEGRADED);
        assert_int_equal(c->n_defects, 1);
        assert_int_equal(c->defects[0].feature, fid("avx2"));
        assert_false(usable(c, "avx2"));
        assert_false(usable(c, "avx512f"));
        assert_true(usable(c, "avx"));
    }
    json_t *doc = ks_report_to_json(r);
    assert_non_null(doc);
    json_t *cpus = json_object_get(doc, "cpus"), *cpu;
    size_t i;
    bool seen = false;
    json_array_foreach(cpus, i, cpu)
    {
        json_t *defects = json_object_get(cpu, "defects");
        const char *st_name = json_string_value(json_object_get(cpu, "state"));
        if (json_integer_value(json_object_get(cpu, "id")) != target) {
            assert_string_equal(st_name, "online");
            assert_int_equal(json_array_size(defects), 0);
            continue;
        }
        seen = true;
        assert_string_equal(st_name, "degraded");
        json_t *d = json_array_get(defects, 0);
        assert_string_equal(json_string_value(json_object_get(d, "feature")), "avx2");
        assert_string_equal(json_string_value(json_object_get(d, "source")), "selftest");
        assert_non_null(strstr(json_string_value(json_object_get(d, "detail")), "avx2"));
    }
    assert_true(seen);
    json_decref(doc);
    ks_defects_state_destroy(&st);
    ks_report_free(r);
}

static void test_defects__bad_injection_changes_nothing(void **state)
{
    (void)state;
    ks_report *r = make_report(2, NULL);
    ks_defects_state st;
    ks_defects_options o = quiet_options();
    ks_err err;
    ks_defects_state_init(&st);
    o.run_selftests = true;
    o.inject = "0:avx513";
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "unknown test or feature 'avx513'"));
    o.inject = "7:avx2";
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "cpu 7 is not on this host"));
    assert_int_equal(st.n_selftest_cpus, 0);
    ks_defects_state_destroy(&st);
    ks_report_free(r);
}

/* CPUs hosting vCPUs are not tested unless forced. */
static void test_defects__skip_cpus_unless_forced(void **state)
{
    (void)state;
    ks_report *r = make_live_report();
    ks_defects_state st;
    ks_defects_options o = quiet_options();
    int32_t target = r->cpus[0].id;
    char spec[32];
    ks_defects_state_init(&st);
    snprintf(spec, sizeof(spec), "%d:integer", (int)target);
    o.run_selftests = true;
    o.inject = spec;
    o.skip_cpus = &target;
    o.n_skip_cpus = 1;
    assert_int_equal(ks_defects_apply(r, &o, &st, NULL), KS_OK);
    assert_int_equal(st.n_selftest_cpus, r->n_cpus - 1);
    assert_int_equal(ks_report_find_cpu(r, target)->state, KS_CPU_ONLINE);
    o.force = true;
    assert_int_equal(ks_defects_apply(r, &o, &st, NULL), KS_OK);
    assert_int_equal(ks_report_find_cpu(r, target)->state, KS_CPU_QUARANTINED);
    ks_defects_state_destroy(&st);
    ks_report_free(r);
}

/* A recorded machine's CPUs are not ours: no self-tests for fixture reports. */
static void test_defects__no_selftests_for_fixture_reports(void **state)
{
    (void)state;
    ks_report *r = make_live_report();
    ks_defects_state st;
    ks_defects_options o = quiet_options();
    char spec[32];
    ks_defects_state_init(&st);
    snprintf(r->host.source, sizeof(r->host.source), "fixture:hybrid-client");
    snprintf(spec, sizeof(spec), "%d:integer", (int)r->cpus[0].id);
    o.run_selftests = true;
    o.inject = spec;
    assert_int_equal(ks_defects_apply(r, &o, &st, NULL), KS_OK);
    assert_int_equal(st.n_selftest_cpus, 0);
    assert_non_null(strstr(st.warning, "fixture:hybrid-client"));
    assert_int_equal(r->cpus[0].state, KS_CPU_ONLINE);
    ks_defects_state_destroy(&st);
    ks_report_free(r);
}

static void test_defects__next_selftest_cpu_round_robin(void **state)
{
    (void)state;
    int32_t ids[4] = {0, 1, 4, 5};
    ks_report *r = make_report(4, ids);
    ks_defects_state st;
    ks_defects_options o = quiet_options();
    int32_t skip = 4;
    ks_defects_state_init(&st);
    r->cpus[1].state = KS_CPU_OFFLINE;
    o.skip_cpus = &skip;
    o.n_skip_cpus = 1;
    static const int32_t want[] = {0, 5, 0, 5};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ks_defects_selftest_next_cpu(&st, r, &o), want[i]);
    o.force = true;
    assert_int_equal(ks_defects_selftest_next_cpu(&st, r, &o), 0);
    assert_int_equal(ks_defects_selftest_next_cpu(&st, r, &o), 4);
    ks_defects_state_destroy(&st);
    ks_report_free(r);
}

/* ---- operator file ---------------------------------------------------------------------- */

static void test_defects__operator_file_valid_and_missing(void **state)
{
    (void)state;
    char dir[4096], path[4200];
    ks_test_mkdtemp(dir, sizeof(dir));
    ks_test_path(path, sizeof(path), "%s/defects.json", dir);
    write_file(path, "[{\"cpu\": 1, \"features\": [\"avx512f\", \"aes\"], \"reason\": \"RMA 7\"},\n"
                     " {\"cpu\": 3, \"quarantine\": true, \"reason\": \"vendor advisory\"},\n"
                     " {\"cpu\": 2, \"features\": [\"avx512\"]}]\n");
    ks_report *r = make_report(4, NULL);
    ks_defects_state st;
    ks_defects_options o = quiet_options();
    ks_err err;
    ks_defects_state_init(&st);
    o.use_operator = true;
    o.operator_file = path;
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_OK);
    assert_int_equal(st.n_operator, 3);
    const ks_cpu *c1 = ks_report_find_cpu(r, 1), *c2 = ks_report_find_cpu(r, 2);
    const ks_cpu *c3 = ks_report_find_cpu(r, 3);
    assert_int_equal(c1->state, KS_CPU_DEGRADED);
    assert_int_equal(c1->n_defects, 2);
    assert_int_equal(c1->defects[0].source, KS_DEFECT_OPERATOR);
    assert_non_null(strstr(c1->defects[0].detail, "RMA 7"));
    assert_false(usable(c1, "avx512f"));
    assert_false(usable(c1, "aes"));
    assert_true(usable(c1, "avx2"));
    assert_int_equal(c3->state, KS_CPU_QUARANTINED);
    assert_int_equal(c2->state, KS_CPU_DEGRADED); /* the group expanded */
    assert_false(usable(c2, "avx512bw"));
    assert_int_equal(ks_report_find_cpu(r, 0)->state, KS_CPU_ONLINE);
    /* re-applying is idempotent */
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_OK);
    assert_int_equal(c1->n_defects, 2);
    /* deleting the file clears the operator's defects (no error) */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_OK);
    assert_int_equal(st.n_operator, 0);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        assert_int_equal(r->cpus[i].state, KS_CPU_ONLINE);
        assert_int_equal(r->cpus[i].n_defects, 0);
    }
    ks_defects_state_destroy(&st);
    ks_report_free(r);
    ks_test_rmdir(dir);
}

static void test_defects__operator_file_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *field; /* err.field, "" for whole-document errors */
        const char *msg;   /* substring of err.msg */
    } cases[] = {
        {"[{\"cpu\": 1, \"features\": [\"avx2\"]}", "", "line"},
        {"{\"cpu\": 1}", "", "expected a JSON array"},
        {"[7]", "entries[0]", "expected an object"},
        {"[{\"cpu\":0,\"features\":[\"aes\"]},{\"cpu\":1,\"features\":[\"aes\"]},"
         "{\"cpu\":2,\"features\":[\"avx513\"]}]",
         "entries[2].features[0]", "entries[2].features[0]: unknown feature 'avx513'"},
        {"[{\"cpu\": 0, \"features\": [\"aes\"]}, {\"cpu\": 99, \"quarantine\": true}]",
         "entries[1].cpu", "cpu 99 is not on this host"},
        {"[{\"cpu\": -1, \"quarantine\": true}]", "entries[0].cpu", "expected a cpu number"},
        {"[{\"cpu\": \"3\", \"quarantine\": true}]", "entries[0].cpu", "expected a cpu number"},
        {"[{\"features\": [\"aes\"]}]", "entries[0].cpu", "missing"},
        {"[{\"cpu\": 0}]", "entries[0]", "needs a non-empty 'features'"},
        {"[{\"cpu\": 0, \"quarantine\": false}]", "entries[0]", "needs a non-empty"},
        {"[{\"cpu\": 0, \"features\": \"aes\"}]", "entries[0].features", "expected an array"},
        {"[{\"cpu\": 0, \"features\": [3]}]", "entries[0].features[0]", "expected a feature"},
        {"[{\"cpu\": 0, \"quarantine\": 1}]", "entries[0].quarantine", "expected true or false"},
        {"[{\"cpu\": 0, \"quarantine\": true, \"why\": \"x\"}]", "entries[0].why",
         "unknown key 'why'"},
        {"[{\"cpu\": 0, \"quarantine\": true, \"cpu\": 1}]", "", "duplicate"},
        {"[{\"cpu\": 0, \"features\": [\"asimd\"]}]", "entries[0].features[0]",
         "is not a x86_64 feature"},
    };
    ks_report *r = make_report(4, NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ks_defects_state st;
        ks_err err;
        memset(&err, 0, sizeof(err));
        ks_defects_state_init(&st);
        ks_code rc =
            ks_defects_parse_operator(&st, cases[i].text, strlen(cases[i].text), 1, r, &err);
        if (rc != KS_EINVAL)
            fail_msg("case %zu: rc %d (%s)", i, rc, err.msg);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg, cases[i].msg);
        if (cases[i].field[0])
            assert_string_equal(err.field, cases[i].field);
        assert_false(st.operator_loaded);
        ks_defects_state_destroy(&st);
    }
    ks_report_free(r);
}

/* A bad file keeps the last good one in force, and the error names the file. */
static void test_defects__operator_file_keeps_last_good(void **state)
{
    (void)state;
    char dir[4096], path[4200];
    ks_test_mkdtemp(dir, sizeof(dir));
    ks_test_path(path, sizeof(path), "%s/defects.json", dir);
    write_file(path, "[{\"cpu\": 1, \"features\": [\"fma\"], \"reason\": \"first\"}]");
    ks_report *r = make_report(2, NULL);
    ks_defects_state st;
    ks_defects_options o = quiet_options();
    ks_err err;
    ks_defects_state_init(&st);
    assert_int_equal(ks_defects_load_operator_file(&st, path, r, &err), KS_OK);
    assert_int_equal(st.n_operator, 1);
    write_file(path, "[{\"cpu\": 1, \"features\": [\"avx513\"]}]");
    assert_int_equal(ks_defects_load_operator_file(&st, path, r, &err), KS_EINVAL);
    assert_int_equal(st.n_operator, 1);
    assert_true(ks_featset_test(&st.operator_entries[0].features, fid("fma")));
    write_file(path, "not json");
    o.use_operator = true;
    o.operator_file = path;
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, path));
    /* the last good file still applies */
    const ks_cpu *c = ks_report_find_cpu(r, 1);
    assert_int_equal(c->state, KS_CPU_DEGRADED);
    assert_int_equal(c->n_defects, 1);
    assert_int_equal(c->defects[0].feature, fid("fma"));
    assert_false(usable(c, "fma"));
    assert_false(usable(c, "avx512f"));
    /* an unreadable path is an error too, keeping the content */
    assert_int_equal(ks_defects_load_operator_file(&st, dir, r, &err), KS_EIO);
    assert_int_equal(st.n_operator, 1);
    ks_defects_state_destroy(&st);
    ks_report_free(r);
    ks_test_rmdir(dir);
}

/* ---- Intel IFS on a fake sysfs tree ----------------------------------------------------- */

static void make_ifs(const char *root, const char *name, const char *status, const char *details)
{
    char d[4096], p[4200];
    ks_test_path(d, sizeof(d), "%s/sys/devices/virtual/misc/%s", root, name);
    mkdirs(d);
    ks_test_path(p, sizeof(p), "%s/run_test", d);
    write_file(p, "");
    ks_test_path(p, sizeof(p), "%s/status", d);
    write_file(p, status);
    ks_test_path(p, sizeof(p), "%s/details", d);
    write_file(p, details);
}

static void test_defects__ifs_fake_tree(void **state)
{
    (void)state;
    char root[4096], p[4200];
    ks_ifs_result res[16];
    size_t n = 0;
    ks_err err;
    ks_test_mkdtemp(root, sizeof(root));
    /* no driver */
    assert_int_equal(ks_defects_ifs_run_cpu(res, 16, &n, root, 0, &err), KS_ENOTFOUND);
    make_ifs(root, "intel_ifs_1", "pass\n", "0x0\n");
    make_ifs(root, "intel_ifs_0", "fail\n", "0x8081\n");
    assert_int_equal(ks_defects_ifs_run_cpu(res, 16, &n, root, 3, &err), KS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(res[0].test, "intel_ifs_0");
    assert_string_equal(res[0].status, "fail");
    assert_string_equal(res[0].details, "0x8081");
    assert_string_equal(res[1].status, "pass");
    /* run_test got the CPU number, as the kernel interface wants */
    ks_test_path(p, sizeof(p), "%s/sys/devices/virtual/misc/intel_ifs_0/run_test", root);
    char *written = ks_test_read_file(p, NULL);
    assert_non_null(written);
    assert_string_equal(written, "3\n");
    free(written);

    /* apply: 4 CPUs on 2 cores; core 1 (cpus 2, 3) runs a vCPU on cpu 2 */
    ks_report *r = make_report(4, NULL);
    ks_defects_state st;
    ks_defects_options o = quiet_options();
    int32_t busy = 2;
    ks_defects_state_init(&st);
    o.use_ifs = true;
    o.root = root;
    o.skip_cpus = &busy;
    o.n_skip_cpus = 1;
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_OK);
    assert_int_equal(st.n_ifs_cores, 1);
    assert_int_equal(st.n_ifs_failures, 1);
    for (int32_t id = 0; id < 4; id++) {
        const ks_cpu *c = ks_report_find_cpu(r, id);
        if (id >= 2) {
            assert_int_equal(c->state, KS_CPU_ONLINE);
            continue;
        }
        assert_int_equal(c->state, KS_CPU_QUARANTINED);
        assert_int_equal(c->n_defects, 1);
        assert_int_equal(c->defects[0].source, KS_DEFECT_IFS);
        assert_int_equal(c->defects[0].feature, KS_FEATURE_NONE);
        assert_non_null(strstr(c->defects[0].detail, "0x8081"));
    }
    /* a later passing scan clears the verdict; "untested" adds nothing but warns */
    make_ifs(root, "intel_ifs_0", "untested\n", "0x1\n");
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_OK);
    assert_int_equal(ks_report_find_cpu(r, 0)->state, KS_CPU_ONLINE);
    assert_int_equal(ks_report_find_cpu(r, 1)->n_defects, 0);
    assert_non_null(strstr(st.warning, "did not complete"));
    /* a status the driver never writes is an error for that scan, reported as a warning */
    make_ifs(root, "intel_ifs_0", "bogus\n", "0x1\n");
    assert_int_equal(ks_defects_ifs_run_cpu(res, 16, &n, root, 0, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "unexpected value 'bogus'"));
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_OK);
    assert_non_null(strstr(st.warning, "bogus"));
    ks_defects_state_destroy(&st);
    ks_report_free(r);
    ks_test_rmdir(root);
}

/* ---- machine-check counts on a fake /proc/interrupts ------------------------------------ */

static void test_defects__mce_fake_tree(void **state)
{
    (void)state;
    char root[4096], p[4200];
    ks_mce_count *c = NULL;
    uint32_t n = 0;
    ks_err err;
    ks_test_mkdtemp(root, sizeof(root));
    assert_int_equal(ks_defects_mce_read(&c, &n, root, &err), KS_ENOTFOUND);
    ks_test_path(p, sizeof(p), "%s/proc", root);
    mkdirs(p);
    ks_test_path(p, sizeof(p), "%s/proc/interrupts", root);
    /* CPU 2 offline: columns are 0, 1, 3 */
    write_file(p, "           CPU0       CPU1       CPU3       \n"
                  "  0:         33          0          0   IO-APIC   2-edge      timer\n"
                  "NMI:          0          0          0   Non-maskable interrupts\n"
                  "MCE:          0          2          0   Machine check exceptions\n"
                  "MCP:         90         90         90   Machine check polls\n"
                  "THR:          1          0         40   Threshold APIC interrupts\n"
                  "DFR:          0          4          0   Deferred Error APIC interrupts\n"
                  "ERR:          0\n");
    assert_int_equal(ks_defects_mce_read(&c, &n, root, &err), KS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(c[2].cpu, 3);
    assert_true(c[1].mce == 2 && c[1].thr == 0 && c[1].dfr == 4);
    assert_true(c[2].thr == 40);
    free(c);

    int32_t ids[4] = {0, 1, 2, 3};
    ks_report *r = make_report(4, ids);
    ks_defects_state st;
    ks_defects_options o = quiet_options();
    ks_defects_state_init(&st);
    o.use_mce = true;
    o.root = root;
    o.mce_threshold = 5;
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_OK);
    assert_int_equal(st.n_mce_cpus, 2);
    assert_int_equal(ks_report_find_cpu(r, 0)->state, KS_CPU_ONLINE);      /* 1 event */
    assert_int_equal(ks_report_find_cpu(r, 1)->state, KS_CPU_QUARANTINED); /* 6 */
    assert_int_equal(ks_report_find_cpu(r, 2)->state, KS_CPU_ONLINE);      /* no column */
    const ks_cpu *c3 = ks_report_find_cpu(r, 3);
    assert_int_equal(c3->state, KS_CPU_QUARANTINED);
    assert_int_equal(c3->defects[0].source, KS_DEFECT_MCE);
    assert_int_equal(c3->defects[0].feature, KS_FEATURE_NONE);
    assert_non_null(strstr(c3->defects[0].detail, "thr=40"));
    /* a higher threshold re-reads and drops the MCE defects */
    o.mce_threshold = 100;
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_OK);
    assert_int_equal(ks_report_find_cpu(r, 3)->state, KS_CPU_ONLINE);
    assert_int_equal(ks_report_find_cpu(r, 3)->n_defects, 0);
    assert_int_equal(st.warning[0], '\0');
    /* rasdaemon's database is noticed, not read */
    ks_test_path(p, sizeof(p), "%s/var/lib/rasdaemon", root);
    mkdirs(p);
    ks_test_path(p, sizeof(p), "%s/var/lib/rasdaemon/ras-mc_event.db", root);
    write_file(p, "");
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_OK);
    assert_non_null(strstr(st.warning, "rasdaemon"));
    ks_test_path(p, sizeof(p), "%s/proc/interrupts", root);
    /* malformed rows are errors naming the file */
    write_file(p, "  CPU0  CPU1\nMCE:  1\n");
    assert_int_equal(ks_defects_mce_read(&c, &n, root, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "fewer counts"));
    write_file(p, "  CPU0  GPU1\n");
    assert_int_equal(ks_defects_mce_read(&c, &n, root, &err), KS_EINVAL);
    assert_int_equal(ks_defects_apply(r, &o, &st, &err), KS_EINVAL);
    ks_defects_state_destroy(&st);
    ks_report_free(r);
    ks_test_rmdir(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defects__closure_table),
        cmocka_unit_test(test_defects__integer_fault_quarantines_only_that_cpu),
        cmocka_unit_test(test_defects__env_injection_and_report_json),
        cmocka_unit_test(test_defects__bad_injection_changes_nothing),
        cmocka_unit_test(test_defects__skip_cpus_unless_forced),
        cmocka_unit_test(test_defects__no_selftests_for_fixture_reports),
        cmocka_unit_test(test_defects__next_selftest_cpu_round_robin),
        cmocka_unit_test(test_defects__operator_file_valid_and_missing),
        cmocka_unit_test(test_defects__operator_file_errors),
        cmocka_unit_test(test_defects__operator_file_keeps_last_good),
        cmocka_unit_test(test_defects__ifs_fake_tree),
        cmocka_unit_test(test_defects__mce_fake_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
