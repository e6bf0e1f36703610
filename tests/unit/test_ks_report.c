/*
 * test_ks_report.c - the host report model and its schema-1 JSON codec
 * (docs/report-schema.md): round trips, state derivation, and a table of
 * malformed documents each with the JSON path and message it must produce.
 */
#include "ks_test.h"

#include <jansson.h>

#include "ks_feature.h"
#include "ks_report.h"

static unsigned fid(const char *name)
{
    unsigned id = 0;
    ks_err err;
    if (ks_feature_lookup(name, &id, &err) != KS_OK)
        fail_msg("catalogue lacks '%s': %s", name, err.msg);
    return id;
}

static void set_names(ks_featset *s, const char *const *names)
{
    ks_featset_clear(s);
    for (size_t i = 0; names[i]; i++)
        assert_int_equal(ks_feature_add_name(s, names[i], NULL), KS_OK);
}

static const char *const k_full[] = {"fpu", "tsc", "cx8", "cmov", "mmx", "fxsr", "sse",
                                     "sse2", "lm", "sse4_2", "avx", "avx2", "fma", "aes",
                                     "avx512", NULL};
static const char *const k_small[] = {"fpu", "tsc", "cx8", "cmov", "mmx", "fxsr", "sse",
                                      "sse2", "lm", "sse4_2", "avx", "avx2", NULL};

static void add_defect(ks_cpu *c, unsigned feature, ks_defect_source src, const char *detail)
{
    ks_defect d;
    memset(&d, 0, sizeof(d));
    d.feature = (uint16_t)feature;
    d.source = (uint8_t)src;
    d.time_us = UINT64_C(1700000000000000) + c->id;
    snprintf(d.detail, sizeof(d.detail), "%s", detail);
    assert_int_equal(ks_cpu_add_defect(c, &d, NULL), KS_OK);
}

/*
 * A hybrid host: 2 P-cores with SMT (cpus 0-3), 4 E-cores in one cluster
 * (cpus 4-7), 2 NUMA nodes, L2 per P-core and per E-cluster, one L3.
 * CPU 2 has a faulty avx512f, CPU 6 a whole-CPU defect, CPU 7 is offline.
 */
static ks_report *build_report(void)
{
    ks_report *r = NULL;
    ks_err err;
    assert_int_equal(ks_report_new(&r, &err), KS_OK);
    snprintf(r->host.id, sizeof(r->host.id), "h-0042");
    snprintf(r->host.hostname, sizeof(r->host.hostname), "node42.example.org");
    r->host.arch = KS_ARCH_X86_64;
    snprintf(r->host.vendor, sizeof(r->host.vendor), "GenuineIntel");
    snprintf(r->host.model_name, sizeof(r->host.model_name), "12th Gen Intel(R) Core(TM) i9");
    r->host.family = 6;
    r->host.model = 151;
    r->host.stepping = 2;
    snprintf(r->host.microcode, sizeof(r->host.microcode), "0x2c");
    snprintf(r->host.kernel, sizeof(r->host.kernel), "6.1.0-13-amd64");
    snprintf(r->host.agent_version, sizeof(r->host.agent_version), "0.1.0");
    snprintf(r->host.boot_id, sizeof(r->host.boot_id), "6f1e2d3c-aaaa-bbbb-cccc-0123456789ab");
    r->host.generation = 7;
    r->host.memory_mib = 65536;
    snprintf(r->host.source, sizeof(r->host.source), "fixture:adl");
    r->n_packages = 1;
    r->n_dies = 1;
    r->n_clusters = 3;
    r->n_cores = 6;

    assert_int_equal(ks_report_alloc_kinds(r, 2, &err), KS_OK);
    snprintf(r->kinds[0].name, sizeof(r->kinds[0].name), "IntelAtom");
    r->kinds[0].efficiency_rank = 0;
    r->kinds[0].kind_class = KS_KIND_EFFICIENCY;
    r->kinds[0].max_mhz = 3900;
    snprintf(r->kinds[1].name, sizeof(r->kinds[1].name), "IntelCore");
    r->kinds[1].efficiency_rank = 1;
    r->kinds[1].kind_class = KS_KIND_PERFORMANCE;
    r->kinds[1].max_mhz = 5200;

    assert_int_equal(ks_report_alloc_numa(r, 2, &err), KS_OK);
    r->numa[0].id = 0;
    r->numa[0].memory_mib = 32768;
    r->numa[1].id = 1;
    r->numa[1].memory_mib = 32768;

    assert_int_equal(ks_report_alloc_caches(r, 4, &err), KS_OK);
    static const int32_t l2a[] = {0, 1}, l2b[] = {2, 3}, l2e[] = {4, 5, 6, 7};
    static const int32_t l3[] = {0, 1, 2, 3, 4, 5, 6, 7};
    const int32_t *lists[] = {l2a, l2b, l2e, l3};
    uint32_t lens[] = {2, 2, 4, 8};
    for (int i = 0; i < 4; i++) {
        ks_cache *c = &r->caches[i];
        c->level = i < 3 ? 2 : 3;
        c->type = 'u';
        c->size_bytes = i < 3 ? 1310720 : 31457280;
        c->line_bytes = 64;
        c->n_cpus = lens[i];
        c->cpus = malloc(lens[i] * sizeof(int32_t));
        assert_non_null(c->cpus);
        memcpy(c->cpus, lists[i], lens[i] * sizeof(int32_t));
    }

    ks_featset full, small;
    set_names(&full, k_full);
    set_names(&small, k_small);
    assert_int_equal(ks_report_alloc_cpus(r, 8, &err), KS_OK);
    for (int i = 0; i < 8; i++) {
        ks_cpu *c = &r->cpus[i];
        bool p = i < 4;
        c->id = i;
        c->package = 0;
        c->die = 0;
        c->cluster = p ? i / 2 : 2;
        c->core = p ? i / 2 : 2 + (i - 4);
        c->thread = p ? i % 2 : 0;
        c->numa_node = p ? 0 : 1;
        c->l2_group = p ? i / 2 : 2;
        c->l3_group = 3;
        c->kind = p ? 1 : 0;
        c->base_mhz = p ? 3200 : 2400;
        c->max_mhz = p ? 5200 : 3900;
        c->native = p ? full : small;
        c->reserved = i == 0;
    }
    add_defect(&r->cpus[2], fid("avx512f"), KS_DEFECT_SELFTEST, "avx512 fma known-answer mismatch");
    add_defect(&r->cpus[6], KS_FEATURE_NONE, KS_DEFECT_OPERATOR, "ticket \"OPS-17\"");
    add_defect(&r->cpus[6], fid("aes"), KS_DEFECT_MCE, "");
    r->cpus[7].state = KS_CPU_OFFLINE;
    ks_report_derive_state(r);

    r->pmu.version = 5;
    r->pmu.gp_counters = 8;
    r->pmu.gp_width = 48;
    r->pmu.fixed_counters = 4;
    r->pmu.fixed_width = 48;
    r->pmu.n_names = 2;
    r->pmu.names = calloc(2, KS_NAME_MAX);
    assert_non_null(r->pmu.names);
    snprintf(r->pmu.names[0], KS_NAME_MAX, "cpu_core");
    snprintf(r->pmu.names[1], KS_NAME_MAX, "cpu_atom");
    r->pmu.n_events = 1;
    r->pmu.events = calloc(1, KS_NAME_MAX);
    assert_non_null(r->pmu.events);
    snprintf(r->pmu.events[0], KS_NAME_MAX, "instructions");

    r->n_vulns = 2;
    r->vulns = calloc(2, sizeof(*r->vulns));
    assert_non_null(r->vulns);
    snprintf(r->vulns[0].name, KS_NAME_MAX, "spectre_v2");
    snprintf(r->vulns[0].status, KS_TEXT_MAX, "Mitigation: Enhanced IBRS");
    snprintf(r->vulns[1].name, KS_NAME_MAX, "gds");
    snprintf(r->vulns[1].status, KS_TEXT_MAX, "Not affected");

    r->n_vms = 1;
    r->vms = calloc(1, sizeof(*r->vms));
    assert_non_null(r->vms);
    snprintf(r->vms[0].name, KS_ID_MAX, "web-1");
    r->vms[0].generation = 3;
    return r;
}

static void assert_reports_equal(const ks_report *a, const ks_report *b)
{
    assert_int_equal(a->schema, b->schema);
    assert_memory_equal(&a->host, &b->host, sizeof(a->host));
    assert_int_equal(a->n_packages, b->n_packages);
    assert_int_equal(a->n_dies, b->n_dies);
    assert_int_equal(a->n_clusters, b->n_clusters);
    assert_int_equal(a->n_cores, b->n_cores);
    assert_int_equal(a->n_kinds, b->n_kinds);
    for (uint32_t i = 0; i < a->n_kinds; i++) {
        assert_string_equal(a->kinds[i].name, b->kinds[i].name);
        assert_int_equal(a->kinds[i].efficiency_rank, b->kinds[i].efficiency_rank);
        assert_int_equal(a->kinds[i].kind_class, b->kinds[i].kind_class);
        assert_int_equal(a->kinds[i].max_mhz, b->kinds[i].max_mhz);
    }
    assert_int_equal(a->n_numa, b->n_numa);
    for (uint32_t i = 0; i < a->n_numa; i++) {
        assert_int_equal(a->numa[i].id, b->numa[i].id);
        assert_int_equal(a->numa[i].memory_mib, b->numa[i].memory_mib);
    }
    assert_int_equal(a->n_caches, b->n_caches);
    for (uint32_t i = 0; i < a->n_caches; i++) {
        assert_int_equal(a->caches[i].level, b->caches[i].level);
        assert_int_equal(a->caches[i].type, b->caches[i].type);
        assert_int_equal(a->caches[i].size_bytes, b->caches[i].size_bytes);
        assert_int_equal(a->caches[i].line_bytes, b->caches[i].line_bytes);
        assert_int_equal(a->caches[i].n_cpus, b->caches[i].n_cpus);
        assert_memory_equal(a->caches[i].cpus, b->caches[i].cpus,
                            a->caches[i].n_cpus * sizeof(int32_t));
    }
    assert_int_equal(a->n_cpus, b->n_cpus);
    for (uint32_t i = 0; i < a->n_cpus; i++) {
        const ks_cpu *x = &a->cpus[i], *y = &b->cpus[i];
        assert_int_equal(x->id, y->id);
        assert_int_equal(x->package, y->package);
        assert_int_equal(x->die, y->die);
        assert_int_equal(x->cluster, y->cluster);
        assert_int_equal(x->core, y->core);
        assert_int_equal(x->thread, y->thread);
        assert_int_equal(x->numa_node, y->numa_node);
        assert_int_equal(x->l2_group, y->l2_group);
        assert_int_equal(x->l3_group, y->l3_group);
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->base_mhz, y->base_mhz);
        assert_int_equal(x->max_mhz, y->max_mhz);
        assert_true(ks_featset_equal(&x->native, &y->native));
        assert_true(ks_featset_equal(&x->defective, &y->defective));
        assert_true(ks_featset_equal(&x->usable, &y->usable));
        assert_int_equal(x->state, y->state);
        assert_int_equal(x->reserved, y->reserved);
        assert_int_equal(x->n_defects, y->n_defects);
        for (uint16_t d = 0; d < x->n_defects; d++) {
            assert_int_equal(x->defects[d].feature, y->defects[d].feature);
            assert_int_equal(x->defects[d].source, y->defects[d].source);
            assert_int_equal(x->defects[d].time_us, y->defects[d].time_us);
            assert_string_equal(x->defects[d].detail, y->defects[d].detail);
        }
    }
    assert_int_equal(a->pmu.version, b->pmu.version);
    assert_int_equal(a->pmu.gp_counters, b->pmu.gp_counters);
    assert_int_equal(a->pmu.gp_width, b->pmu.gp_width);
    assert_int_equal(a->pmu.fixed_counters, b->pmu.fixed_counters);
    assert_int_equal(a->pmu.fixed_width, b->pmu.fixed_width);
    assert_int_equal(a->pmu.n_names, b->pmu.n_names);
    for (uint32_t i = 0; i < a->pmu.n_names; i++)
        assert_string_equal(a->pmu.names[i], b->pmu.names[i]);
    assert_int_equal(a->pmu.n_events, b->pmu.n_events);
    for (uint32_t i = 0; i < a->pmu.n_events; i++)
        assert_string_equal(a->pmu.events[i], b->pmu.events[i]);
    assert_int_equal(a->n_vulns, b->n_vulns);
    for (uint32_t i = 0; i < a->n_vulns; i++) {
        assert_string_equal(a->vulns[i].name, b->vulns[i].name);
        assert_string_equal(a->vulns[i].status, b->vulns[i].status);
    }
    assert_int_equal(a->n_vms, b->n_vms);
    for (uint32_t i = 0; i < a->n_vms; i++) {
        assert_string_equal(a->vms[i].name, b->vms[i].name);
        assert_int_equal(a->vms[i].generation, b->vms[i].generation);
    }
}

static void test_report__enum_strings(void **state)
{
    (void)state;
    for (int s = 0; s < KS_CPU_STATE__COUNT; s++)
        assert_int_equal(ks_cpu_state_from_str(ks_cpu_state_to_str((ks_cpu_state)s)), s);
    for (int k = 0; k < KS_KIND_CLASS__COUNT; k++)
        assert_int_equal(ks_kind_class_from_str(ks_kind_class_to_str((ks_kind_class)k)), k);
    for (int d = 0; d < KS_DEFECT_SOURCE__COUNT; d++)
        assert_int_equal(ks_defect_source_from_str(ks_defect_source_to_str((ks_defect_source)d)),
                         d);
    assert_string_equal(ks_cpu_state_to_str(KS_CPU_QUARANTINED), "quarantined");
    assert_string_equal(ks_kind_class_to_str(KS_KIND_EFFICIENCY), "efficiency");
    assert_string_equal(ks_defect_source_to_str(KS_DEFECT_IFS), "ifs");
    assert_int_equal(ks_cpu_state_from_str("Online"), -1);
    assert_int_equal(ks_cpu_state_from_str(NULL), -1);
    assert_int_equal(ks_defect_source_from_str("cosmic-ray"), -1);
    assert_string_equal(ks_cpu_state_to_str((ks_cpu_state)99), "unknown");
}

static void test_report__id_valid(void **state)
{
    (void)state;
    char max[KS_ID_MAX], over[KS_ID_MAX + 1];
    memset(max, 'a', sizeof(max) - 1);
    max[sizeof(max) - 1] = '\0';
    memset(over, 'a', sizeof(over) - 1);
    over[sizeof(over) - 1] = '\0';
    assert_true(ks_id_valid("h-0042"));
    assert_true(ks_id_valid("web_1.prod"));
    assert_true(ks_id_valid("..."));
    assert_true(ks_id_valid(max));
    assert_false(ks_id_valid(over));
    assert_false(ks_id_valid(""));
    assert_false(ks_id_valid("."));
    assert_false(ks_id_valid(".."));
    assert_false(ks_id_valid("a/b"));
    assert_false(ks_id_valid("a b"));
    assert_false(ks_id_valid("caf\xc3\xa9"));
    assert_false(ks_id_valid(NULL));
}

static void test_report__alloc_caps_and_find(void **state)
{
    (void)state;
    ks_report *r = NULL;
    ks_err err;
    assert_int_equal(ks_report_new(&r, &err), KS_OK);
    assert_int_equal(r->schema, KS_REPORT_SCHEMA);
    assert_int_equal(ks_report_alloc_cpus(r, KS_REPORT_MAX_CPUS + 1, &err), KS_EINVAL);
    assert_int_equal(ks_report_alloc_caches(r, KS_REPORT_MAX_CACHES + 1, &err), KS_EINVAL);
    assert_int_equal(ks_report_alloc_kinds(r, KS_REPORT_MAX_KINDS + 1, &err), KS_EINVAL);
    assert_int_equal(ks_report_alloc_numa(r, KS_REPORT_MAX_NUMA + 1, &err), KS_EINVAL);
    assert_int_equal(r->n_cpus, 0);

    assert_int_equal(ks_report_alloc_cpus(r, 100, &err), KS_OK);
    assert_int_equal(r->cpus[99].id, -1);
    assert_int_equal(r->cpus[99].kind, -1);
    assert_int_equal(r->cpus[99].l2_group, -1);
    assert_int_equal(r->cpus[99].numa_node, -1);
    for (int i = 0; i < 100; i++)
        r->cpus[i].id = 3 * i + 1;
    assert_null(ks_report_find_cpu(r, 0));
    assert_null(ks_report_find_cpu(r, 2));
    assert_null(ks_report_find_cpu(r, 1000));
    for (int i = 0; i < 100; i++) {
        ks_cpu *c = ks_report_find_cpu(r, 3 * i + 1);
        assert_non_null(c);
        assert_ptr_equal(c, &r->cpus[i]);
    }

    ks_defect d;
    memset(&d, 0, sizeof(d));
    d.feature = (uint16_t)fid("avx2");
    for (int i = 0; i < KS_REPORT_MAX_DEFECTS; i++)
        assert_int_equal(ks_cpu_add_defect(&r->cpus[5], &d, &err), KS_OK);
    assert_int_equal(ks_cpu_add_defect(&r->cpus[5], &d, &err), KS_EINVAL);
    assert_int_equal(r->cpus[5].n_defects, KS_REPORT_MAX_DEFECTS);
    /* Shrinking frees the dropped CPUs' defects (ASan checks the leak). */
    assert_int_equal(ks_report_alloc_cpus(r, 3, &err), KS_OK);
    assert_int_equal(r->n_cpus, 3);
    assert_int_equal(ks_report_alloc_cpus(r, 0, &err), KS_OK);
    assert_null(r->cpus);
    assert_null(ks_report_find_cpu(r, 1));
    ks_report_free(r);
    ks_report_free(NULL);
}

static void test_report__derive_state(void **state)
{
    (void)state;
    ks_report *r = build_report();
    ks_featset avx512, full, small;
    set_names(&avx512, (const char *const[]){"avx512", NULL});
    set_names(&full, k_full);
    set_names(&small, k_small);

    /* healthy CPU */
    assert_int_equal(r->cpus[1].state, KS_CPU_ONLINE);
    assert_true(ks_featset_equal(&r->cpus[1].usable, &full));
    assert_true(ks_featset_empty(&r->cpus[1].defective));

    /* avx512f defect: degraded, every avx512* gone, the rest kept */
    const ks_cpu *c = &r->cpus[2];
    assert_int_equal(c->state, KS_CPU_DEGRADED);
    assert_true(ks_featset_test(&c->defective, fid("avx512f")));
    assert_int_equal(ks_featset_popcount(&c->defective), 1);
    assert_false(ks_featset_intersects(&c->usable, &avx512));
    assert_true(ks_featset_test(&c->usable, fid("avx2")));
    assert_true(ks_featset_test(&c->usable, fid("aes")));
    assert_true(ks_featset_subset(&c->usable, &c->native));

    /* whole-CPU defect: quarantined with an empty usable set */
    assert_int_equal(r->cpus[6].state, KS_CPU_QUARANTINED);
    assert_true(ks_featset_empty(&r->cpus[6].usable));
    assert_true(ks_featset_test(&r->cpus[6].defective, fid("aes")));

    /* offline stays offline with an empty usable set */
    assert_int_equal(r->cpus[7].state, KS_CPU_OFFLINE);
    assert_true(ks_featset_empty(&r->cpus[7].usable));

    /* sse2 (base ISA) defect: quarantined */
    add_defect(&r->cpus[4], fid("sse2"), KS_DEFECT_IFS, "scan chunk 3 failed");
    ks_report_derive_state(r);
    assert_int_equal(r->cpus[4].state, KS_CPU_QUARANTINED);
    assert_true(ks_featset_empty(&r->cpus[4].usable));

    /* a defect on avx (not base): degraded and avx2/fma/avx512 go with it */
    add_defect(&r->cpus[5], fid("avx"), KS_DEFECT_SELFTEST, "");
    ks_report_derive_state(r);
    assert_int_equal(r->cpus[5].state, KS_CPU_DEGRADED);
    assert_false(ks_featset_test(&r->cpus[5].usable, fid("avx")));
    assert_false(ks_featset_test(&r->cpus[5].usable, fid("avx2")));
    assert_true(ks_featset_test(&r->cpus[5].usable, fid("sse4_2")));

    /* operator clears the defects: online again with the full native set */
    free(r->cpus[2].defects);
    r->cpus[2].defects = NULL;
    r->cpus[2].n_defects = 0;
    ks_report_derive_state(r);
    assert_int_equal(r->cpus[2].state, KS_CPU_ONLINE);
    assert_true(ks_featset_equal(&r->cpus[2].usable, &full));
    assert_true(ks_featset_empty(&r->cpus[2].defective));

    /* arm64: a fault on asimd quarantines */
    r->host.arch = KS_ARCH_ARM64;
    ks_featset_clear(&r->cpus[3].native);
    ks_featset_set(&r->cpus[3].native, fid("fp"));
    ks_featset_set(&r->cpus[3].native, fid("asimd"));
    add_defect(&r->cpus[3], fid("asimd"), KS_DEFECT_SELFTEST, "");
    ks_report_derive_state(r);
    assert_int_equal(r->cpus[3].state, KS_CPU_QUARANTINED);
    ks_report_free(r);
    ks_report_derive_state(NULL);
}

static void test_report__round_trip(void **state)
{
    (void)state;
    ks_report *r = build_report();
    ks_report *back = NULL;
    ks_err err;
    json_t *doc = ks_report_to_json(r);
    assert_non_null(doc);

    /* Identical sets share one entry: full, small, full-minus-avx512, empty. */
    json_t *sets = json_object_get(doc, "feature_sets");
    assert_int_equal(json_array_size(sets), 4);
    json_t *cpus = json_object_get(doc, "cpus");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(cpus, 0), "native")),
                     json_integer_value(json_object_get(json_array_get(cpus, 3), "native")));
    assert_true(json_is_null(json_object_get(
        json_array_get(json_object_get(json_array_get(cpus, 6), "defects"), 0), "feature")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(cpus, 2), "state")),
                        "degraded");

    ks_code rc = ks_report_from_json(&back, doc, &err);
    if (rc != KS_OK)
        fail_msg("decode failed: %s: %s", err.field, err.msg);
    assert_reports_equal(r, back);

    json_t *again = ks_report_to_json(back);
    assert_non_null(again);
    assert_true(json_equal(doc, again));

    /* Through text as well (ks_report_parse). */
    char *text = json_dumps(doc, JSON_COMPACT);
    assert_non_null(text);
    ks_report *parsed = NULL;
    assert_int_equal(ks_report_parse(&parsed, text, strlen(text), &err), KS_OK);
    assert_reports_equal(r, parsed);

    /* Deep copy: equal, and independent of the original. */
    ks_report *copy = NULL;
    assert_int_equal(ks_report_dup(&copy, parsed, &err), KS_OK);
    ks_report_free(parsed);
    assert_reports_equal(r, copy);
    ks_report_free(copy);

    free(text);
    json_decref(again);
    json_decref(doc);
    ks_report_free(back);
    ks_report_free(r);
}

/* CPUs given out of order come back sorted; inline sets and groups are accepted. */
static void test_report__decode_sorts_and_inline_sets(void **state)
{
    (void)state;
    static const char text[] =
        "{\"schema\":1,\"host\":{\"id\":\"h1\",\"arch\":\"x86_64\"},"
        "\"cpus\":[{\"id\":9,\"native\":[\"sse2\",\"avx512\"]},"
        "{\"id\":2,\"native\":[\"sse2\",\"avx2\"],\"usable\":[\"sse2\"],\"state\":\"degraded\","
        "\"defects\":[{\"feature\":\"avx2\",\"source\":\"selftest\"}]},"
        "{\"id\":5,\"native\":[\"sse2\"],\"state\":\"offline\"}]}";
    ks_report *r = NULL;
    ks_err err;
    ks_code rc = ks_report_parse(&r, text, sizeof(text) - 1, &err);
    if (rc != KS_OK)
        fail_msg("decode failed: %s: %s", err.field, err.msg);
    assert_int_equal(r->n_cpus, 3);
    assert_int_equal(r->cpus[0].id, 2);
    assert_int_equal(r->cpus[1].id, 5);
    assert_int_equal(r->cpus[2].id, 9);
    assert_ptr_equal(ks_report_find_cpu(r, 9), &r->cpus[2]);
    assert_true(ks_featset_test(&r->cpus[2].native, fid("avx512bw")));
    /* omitted usable/state are derived */
    assert_int_equal(r->cpus[2].state, KS_CPU_ONLINE);
    assert_true(ks_featset_equal(&r->cpus[2].usable, &r->cpus[2].native));
    assert_int_equal(r->cpus[2].kind, -1);
    assert_int_equal(r->cpus[2].numa_node, -1);
    /* sent usable/state are kept */
    assert_int_equal(r->cpus[0].state, KS_CPU_DEGRADED);
    assert_int_equal(ks_featset_popcount(&r->cpus[0].usable), 1);
    assert_true(ks_featset_test(&r->cpus[0].defective, fid("avx2")));
    assert_int_equal(r->cpus[1].state, KS_CPU_OFFLINE);
    assert_true(ks_featset_empty(&r->cpus[1].usable));
    ks_report_free(r);
}

typedef struct bad_doc {
    const char *name;
    const char *text;
    const char *field;
    const char *msg; /* substring of err.msg */
} bad_doc;

#define HOST "\"host\":{\"id\":\"h1\",\"arch\":\"x86_64\"}"
#define SETS "\"feature_sets\":[[\"sse\",\"sse2\",\"avx\",\"avx2\"],[\"sse\",\"sse2\"]]"
#define KINDS "\"kinds\":[{\"name\":\"IntelCore\",\"class\":\"performance\"}]"
#define CACHES "\"caches\":[{\"level\":2,\"cpus\":[0,1]},{\"level\":3,\"cpus\":[0,1]}]"
#define NUMA "\"numa\":[{\"id\":0,\"memory_mib\":1024}]"
#define CPU0 "{\"id\":0,\"native\":0,\"kind\":0,\"l2\":0,\"l3\":1,\"numa_node\":0}"
#define CPU1 "{\"id\":1,\"native\":0}"
#define DOC(...) "{\"schema\":1," HOST "," SETS "," KINDS "," CACHES "," NUMA "," __VA_ARGS__ "}"
#define CPUS(...) "\"cpus\":[" CPU0 "," __VA_ARGS__ "]"

static const char k_valid[] = DOC(CPUS(CPU1));

static const bad_doc k_bad[] = {
    {"unknown feature inline",
     DOC(CPUS("{\"id\":1,\"native\":[\"sse\",\"sse2\",\"fpu\",\"avx513\"]}")),
     "cpus[1].native[3]", "unknown feature 'avx513'"},
    {"unknown feature in table",
     "{\"schema\":1," HOST ",\"feature_sets\":[[\"sse\"],[\"sse\",\"avx513\"]],\"cpus\":[]}",
     "feature_sets[1][1]", "unknown feature 'avx513'"},
    {"unknown top-level key", "{\"schema\":1," HOST ",\"cpus\":[],\"colour\":\"red\"}", "colour",
     "unknown key 'colour'"},
    {"unknown cpu key", DOC(CPUS("{\"id\":1,\"native\":0,\"speed\":9}")), "cpus[1].speed",
     "unknown key 'speed'"},
    {"cpu id wrong type", DOC(CPUS("{\"id\":\"1\",\"native\":0}")), "cpus[1].id",
     "expected integer, got string"},
    {"native wrong type", DOC(CPUS("{\"id\":1,\"native\":true}")), "cpus[1].native",
     "expected feature set index"},
    {"duplicate cpu id", DOC(CPUS("{\"id\":0,\"native\":1}")), "cpus[1].id",
     "duplicate cpu id 0"},
    {"cache names unknown cpu",
     "{\"schema\":1," HOST ",\"caches\":[{\"level\":2,\"cpus\":[0,7]}],"
     "\"cpus\":[{\"id\":0,\"native\":[\"sse2\"]}]}",
     "caches[0].cpus", "unknown cpu 7"},
    {"kind index out of range", DOC(CPUS("{\"id\":1,\"native\":0,\"kind\":1}")), "cpus[1].kind",
     "kind index 1 out of range"},
    {"l2 index out of range", DOC(CPUS("{\"id\":1,\"native\":0,\"l2\":5}")), "cpus[1].l2",
     "l2 index 5 out of range"},
    {"l3 names an L2 cache", DOC(CPUS("{\"id\":1,\"native\":0,\"l3\":0}")), "cpus[1].l3",
     "cache 0 is level 2, not 3"},
    {"usable not subset of native", DOC(CPUS("{\"id\":1,\"native\":1,\"usable\":0}")),
     "cpus[1].usable", "usable is not a subset of native ('avx' is not native)"},
    {"usable keeps a defective feature",
     DOC(CPUS("{\"id\":1,\"native\":0,\"usable\":0,\"defects\":[{\"feature\":\"avx2\","
              "\"source\":\"ifs\"}]}")),
     "cpus[1].usable", "usable contains defective feature 'avx2'"},
    {"quarantined with usable", DOC(CPUS("{\"id\":1,\"native\":0,\"usable\":1,"
                                         "\"state\":\"quarantined\"}")),
     "cpus[1].usable", "usable must be empty when state is 'quarantined'"},
    {"schema 2", "{\"schema\":2," HOST ",\"cpus\":[]}", "schema", "unsupported schema 2"},
    {"schema missing", "{" HOST ",\"cpus\":[]}", "schema", "missing required key 'schema'"},
    {"over-long hostname",
     "{\"schema\":1,\"host\":{\"id\":\"h1\",\"arch\":\"x86_64\",\"hostname\":\""
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"},\"cpus\":[]}",
     "host.hostname", "string too long (130 bytes, at most 127)"},
    {"negative cpu id", DOC(CPUS("{\"id\":-1,\"native\":0}")), "cpus[1].id",
     "value -1 out of range (0..8191)"},
    {"cpu id above cap", DOC(CPUS("{\"id\":8192,\"native\":0}")), "cpus[1].id",
     "out of range (0..8191)"},
    {"bad state string", DOC(CPUS("{\"id\":1,\"native\":0,\"state\":\"sleeping\"}")),
     "cpus[1].state", "unknown value 'sleeping'"},
    {"feature set index out of range", DOC(CPUS("{\"id\":1,\"native\":2}")), "cpus[1].native",
     "feature set index 2 out of range (feature_sets has 2)"},
    {"unknown defect feature",
     DOC(CPUS("{\"id\":1,\"native\":0,\"defects\":[{\"feature\":\"avx9\",\"source\":\"mce\"}]}")),
     "cpus[1].defects[0].feature", "unknown feature 'avx9'"},
    {"bad defect source",
     DOC(CPUS("{\"id\":1,\"native\":0,\"defects\":[{\"feature\":null,\"source\":\"gut\"}]}")),
     "cpus[1].defects[0].source", "unknown value 'gut'"},
    {"invalid host id", "{\"schema\":1,\"host\":{\"id\":\"a/b\",\"arch\":\"x86_64\"},\"cpus\":[]}",
     "host.id", "invalid id 'a/b'"},
    {"unknown arch", "{\"schema\":1,\"host\":{\"id\":\"h\",\"arch\":\"sparc\"},\"cpus\":[]}",
     "host.arch", "unknown arch 'sparc'"},
    {"arm feature on x86 host", DOC(CPUS("{\"id\":1,\"native\":[\"sse2\",\"asimd\"]}")),
     "cpus[1].native", "feature 'asimd' is not a x86_64 feature"},
    {"missing cpus", "{\"schema\":1," HOST "}", "cpus", "missing required key 'cpus'"},
    {"cpus not an array", "{\"schema\":1," HOST ",\"cpus\":{}}", "cpus",
     "expected array, got object"},
    {"real where integer", DOC(CPUS("{\"id\":1.5,\"native\":0}")), "cpus[1].id",
     "expected integer, got real"},
    {"unknown numa node", DOC(CPUS("{\"id\":1,\"native\":0,\"numa_node\":3}")),
     "cpus[1].numa_node", "unknown numa node 3"},
    {"cache level out of range",
     "{\"schema\":1," HOST ",\"caches\":[{\"level\":9,\"cpus\":[]}],\"cpus\":[]}",
     "caches[0].level", "value 9 out of range (1..4)"},
    {"cache cpu twice",
     "{\"schema\":1," HOST ",\"caches\":[{\"level\":2,\"cpus\":[3,3]}],\"cpus\":[]}",
     "caches[0].cpus", "cpu 3 listed twice"},
    {"kinds out of rank order",
     "{\"schema\":1," HOST ",\"kinds\":[{\"name\":\"a\",\"class\":\"performance\","
     "\"efficiency_rank\":2},{\"name\":\"b\",\"class\":\"efficiency\",\"efficiency_rank\":1}],"
     "\"cpus\":[]}",
     "kinds[1].efficiency_rank", "ascending efficiency_rank"},
    {"string with NUL", "{\"schema\":1,\"host\":{\"id\":\"h1\",\"arch\":\"x86_64\","
                        "\"kernel\":\"6.1\\u0000x\"},\"cpus\":[]}",
     "", "is not allowed"}, /* jansson refuses \u0000 when parsing text */
    {"document not an object", "[1,2,3]", "", "a report must be a JSON object, got array"},
    {"too many defects",
     "{\"schema\":1," HOST ",\"cpus\":[{\"id\":0,\"native\":[],\"defects\":["
     "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
     "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}",
     "cpus[0].defects", "too many elements (65, at most 64)"},
    {"invalid vm name", "{\"schema\":1," HOST ",\"cpus\":[],\"vms\":[{\"name\":\"..\"}]}",
     "vms[0].name", "invalid id '..'"},
    /* parse-level errors (ks_report_parse) */
    {"truncated JSON", "{\"schema\":1,\"host\":{\"id\":\"h1\",", "", "invalid JSON at line 1"},
    {"duplicate key", "{\"schema\":1,\"schema\":1}", "", "duplicate object key"},
    {"empty text", "", "", "invalid JSON"},
};

static void test_report__valid_base_document(void **state)
{
    (void)state;
    ks_report *r = NULL;
    ks_err err;
    ks_code rc = ks_report_parse(&r, k_valid, strlen(k_valid), &err);
    if (rc != KS_OK)
        fail_msg("base document rejected: %s: %s", err.field, err.msg);
    assert_int_equal(r->n_cpus, 2);
    assert_int_equal(r->cpus[0].l2_group, 0);
    assert_int_equal(r->cpus[0].l3_group, 1);
    assert_int_equal(r->cpus[0].kind, 0);
    ks_report_free(r);
}

static void test_report__malformed_documents(void **state)
{
    (void)state;
    size_t n = sizeof(k_bad) / sizeof(k_bad[0]);
    assert_true(n >= 20);
    for (size_t i = 0; i < n; i++) {
        const bad_doc *b = &k_bad[i];
        ks_report *r = NULL;
        ks_err err;
        memset(&err, 0, sizeof(err));
        ks_code rc = ks_report_parse(&r, b->text, strlen(b->text), &err);
        if (rc == KS_OK) {
            ks_report_free(r);
            fail_msg("case '%s' was accepted", b->name);
        }
        assert_null(r);
        if (rc != KS_EINVAL || strcmp(err.field, b->field) != 0 || !strstr(err.msg, b->msg))
            fail_msg("case '%s': got code %d field '%s' msg '%s', want field '%s' msg ~'%s'",
                     b->name, rc, err.field, err.msg, b->field, b->msg);
    }
}

static void test_report__too_many_cpus(void **state)
{
    (void)state;
    json_t *doc = json_pack("{s:i, s:{s:s, s:s}}", "schema", 1, "host", "id", "h1", "arch",
                            "x86_64");
    json_t *cpus = json_array();
    assert_non_null(doc);
    assert_non_null(cpus);
    /* The cap is checked before anything is allocated or decoded: the
     * elements need not even be CPU objects. */
    for (int i = 0; i <= KS_REPORT_MAX_CPUS; i++)
        assert_int_equal(json_array_append_new(cpus, json_null()), 0);
    assert_int_equal(json_object_set_new(doc, "cpus", cpus), 0);
    ks_report *r = NULL;
    ks_err err;
    assert_int_equal(ks_report_from_json(&r, doc, &err), KS_EINVAL);
    assert_null(r);
    assert_string_equal(err.field, "cpus");
    assert_non_null(strstr(err.msg, "too many elements (8193, at most 8192)"));
    assert_int_equal(ks_report_from_json(&r, NULL, &err), KS_EINVAL);
    json_decref(doc);

    /* A NUL inside a string built in C (text parsing refuses it already). */
    doc = json_pack("{s:i, s:{s:s, s:s, s:s%}, s:[]}", "schema", 1, "host", "id", "h1", "arch",
                    "x86_64", "kernel", "6.1\0x", (size_t)5, "cpus");
    assert_non_null(doc);
    assert_int_equal(ks_report_from_json(&r, doc, &err), KS_EINVAL);
    assert_string_equal(err.field, "host.kernel");
    assert_non_null(strstr(err.msg, "NUL character"));
    json_decref(doc);
}

/* Every prefix and a few thousand byte mutations of a real document: errors, never crashes. */
static void test_report__never_crashes(void **state)
{
    (void)state;
    ks_report *r = build_report();
    json_t *doc = ks_report_to_json(r);
    char *text = json_dumps(doc, JSON_COMPACT);
    assert_non_null(text);
    size_t len = strlen(text);
    for (size_t cut = 0; cut < len; cut++) {
        ks_report *x = NULL;
        ks_err err;
        assert_int_equal(ks_report_parse(&x, text, cut, &err), KS_EINVAL);
        assert_null(x);
    }
    static const char junk[] = "{}[]\",:0123456789-.eEtfnul\\ \x80\xff";
    char *buf = malloc(len);
    assert_non_null(buf);
    uint32_t seed = 12345;
    size_t accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, text, len);
        for (int k = 0; k < 1 + iter % 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            buf[pos] = junk[(seed >> 8) % (sizeof(junk) - 1)];
        }
        ks_report *x = NULL;
        ks_err err;
        if (ks_report_parse(&x, buf, len, &err) == KS_OK) {
            accepted++;
            json_t *again = ks_report_to_json(x);
            assert_non_null(again);
            json_decref(again);
            ks_report_free(x);
        }
    }
    /* Most mutations must be rejected (a decoder that accepts anything fails this). */
    assert_true(accepted < 1500);
    free(buf);
    free(text);
    json_decref(doc);
    ks_report_free(r);
}

static void test_report__featset_json(void **state)
{
    (void)state;
    ks_featset s, back;
    ks_err err;
    set_names(&s, (const char *const[]){"avx2", "sse2", "aes", NULL});
    json_t *arr = ks_featset_to_json(&s);
    assert_int_equal(json_array_size(arr), 3);
    /* canonical names in catalogue-id order */
    assert_string_equal(json_string_value(json_array_get(arr, 0)), "sse2");
    assert_int_equal(ks_featset_from_json(&back, arr, "x", &err), KS_OK);
    assert_true(ks_featset_equal(&s, &back));
    json_decref(arr);

    arr = json_pack("[s,i]", "sse2", 4);
    assert_int_equal(ks_featset_from_json(&back, arr, "required", &err), KS_EINVAL);
    assert_string_equal(err.field, "required[1]");
    json_decref(arr);
    arr = json_pack("{}");
    assert_int_equal(ks_featset_from_json(&back, arr, "required", &err), KS_EINVAL);
    assert_string_equal(err.field, "required");
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report__enum_strings),
        cmocka_unit_test(test_report__id_valid),
        cmocka_unit_test(test_report__alloc_caps_and_find),
        cmocka_unit_test(test_report__derive_state),
        cmocka_unit_test(test_report__round_trip),
        cmocka_unit_test(test_report__decode_sorts_and_inline_sets),
        cmocka_unit_test(test_report__valid_base_document),
        cmocka_unit_test(test_report__malformed_documents),
        cmocka_unit_test(test_report__too_many_cpus),
        cmocka_unit_test(test_report__never_crashes),
        cmocka_unit_test(test_report__featset_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
