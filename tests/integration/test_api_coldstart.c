/*
 * test_api_coldstart.c - kintsugid's start-up rebuild (ks_api_new) builds
 * hosts from the store's cpus rows plus each report's small members, and VMs
 * from their plan text through a cache.  The index it builds must equal the
 * one built the old way from the same store: every stored report JSON decoded
 * in full (ks_report_parse + ks_fleet_host_update) and every VM's request and
 * plan JSON decoded by ks_plan_from_json.
 *
 * The store holds simulated hosts (hybrid and server fixtures, many with
 * defective and quarantined cores), some with a PMU and NUMA memory (only in
 * the report JSON), one whose JSON names its kinds unlike its cpu rows (the
 * fallback to the full report), a draining host, a pool, and placed VMs (some
 * with a PMU).
 * ks_fleet_equal does not compare PMU or kind names, so the same requests are
 * also placed on both indexes afterwards and the plans compared as JSON.
 *
 * Some VMs' texts are stored spelled otherwise (indented, keys in insertion
 * order, an escaped name): the text decoders must take them or hand them to
 * the plain decoder, with the same index either way.  The rebuild runs on the
 * file store (hosts and VMs read by threads on second handles) and on an
 * in-memory copy (no second handle: everything on the one).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_api_int.h"
#include "ks_fleetsim.h"
#include "ks_sched.h"
#include "ks_store.h"
#include "ks_test.h"

#define N_HOSTS 40
#define N_VMS 300

typedef struct cs_fixture {
    char dir[512];
    char db[600];
    ks_store *store;
    ks_fleet *ref;
    ks_fleetsim *sim;
} cs_fixture;

static char *dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(s);
    return s;
}

/* Re-stores host i's report with a PMU and NUMA memory (higher generation). */
static void store_with_pmu(cs_fixture *f, uint32_t i)
{
    ks_err err = {0};
    ks_report *r = NULL;
    assert_int_equal(ks_fleetsim_host_report(&r, f->sim, i, KS_FLEETSIM_KINTSUGI, &err), KS_OK);
    r->host.generation += 7;
    r->pmu.version = 5;
    r->pmu.gp_counters = 8;
    r->pmu.gp_width = 48;
    r->pmu.fixed_counters = 3 + (int32_t)(i % 2);
    r->pmu.fixed_width = 48;
    for (uint32_t n = 0; n < r->n_numa; n++)
        r->numa[n].memory_mib = 65536u * (n + 1);
    json_t *j = ks_report_to_json(r);
    assert_non_null(j);
    char *text = dump(j);
    assert_int_equal(ks_store_begin(f->store, &err), KS_OK);
    assert_int_equal(ks_store_host_put_report(f->store, r, text, 1, NULL, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->store, &err), KS_OK);
    free(text);
    json_decref(j);
    ks_report_free(r);
}

/*
 * Re-stores a hybrid host whose JSON names its kinds differently from the
 * report the store's cpu rows come from: the rows then do not fit the
 * report's header and kintsugid must fall back to the full report JSON.
 * Returns false when host i is not hybrid.
 */
static bool store_mismatched_kinds(cs_fixture *f, uint32_t i)
{
    ks_err err = {0};
    ks_report *r = NULL;
    assert_int_equal(ks_fleetsim_host_report(&r, f->sim, i, KS_FLEETSIM_KINTSUGI, &err), KS_OK);
    if (r->n_kinds == 0) {
        ks_report_free(r);
        return false;
    }
    r->host.generation += 20;
    char saved[KS_REPORT_MAX_KINDS][KS_NAME_MAX];
    for (uint32_t k = 0; k < r->n_kinds; k++) {
        memcpy(saved[k], r->kinds[k].name, KS_NAME_MAX);
        snprintf(r->kinds[k].name, KS_NAME_MAX, "Renamed%u", k);
    }
    json_t *j = ks_report_to_json(r);
    assert_non_null(j);
    char *text = dump(j);
    for (uint32_t k = 0; k < r->n_kinds; k++)
        memcpy(r->kinds[k].name, saved[k], KS_NAME_MAX);
    assert_int_equal(ks_store_begin(f->store, &err), KS_OK);
    assert_int_equal(ks_store_host_put_report(f->store, r, text, 1, NULL, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->store, &err), KS_OK);
    free(text);
    json_decref(j);
    ks_report_free(r);
    return true;
}

static int collect_id(void *ctx, const ks_store_host_row *row)
{
    char (*ids)[KS_ID_MAX] = ctx;
    for (int i = 0; i < N_HOSTS + 8; i++)
        if (!ids[i][0]) {
            snprintf(ids[i], KS_ID_MAX, "%s", row->id);
            return 0;
        }
    return 1;
}

/* The old start-up: every stored report decoded in full. */
static void build_reference(cs_fixture *f)
{
    ks_err err = {0};
    static char ids[N_HOSTS + 8][KS_ID_MAX];
    memset(ids, 0, sizeof(ids));
    assert_int_equal(ks_fleet_new(&f->ref, &err), KS_OK);
    assert_int_equal(ks_store_host_list(f->store, NULL, collect_id, ids, &err), KS_OK);
    for (int i = 0; ids[i][0]; i++) {
        ks_store_host_row row = {0};
        ks_report *r = NULL;
        assert_int_equal(ks_store_host_get(&row, f->store, ids[i], true, &err), KS_OK);
        assert_non_null(row.report_json);
        assert_int_equal(ks_report_parse(&r, row.report_json, strlen(row.report_json), &err),
                         KS_OK);
        assert_int_equal(ks_fleet_host_update(f->ref, r, NULL, &err), KS_OK);
        if (row.state != KS_STORE_HOST_READY)
            assert_int_equal(ks_fleet_host_set_schedulable(f->ref, row.id, false, &err), KS_OK);
        ks_report_free(r);
        ks_store_host_row_destroy(&row);
    }
    const char *members[N_HOSTS];
    size_t n = 0;
    static char pool_ids[N_HOSTS][KS_ID_MAX];
    for (uint32_t i = 0; i < N_HOSTS; i++)
        if (ks_fleetsim_pool_member(f->sim, i)) {
            ks_fleetsim_host_id(pool_ids[n], i);
            members[n] = pool_ids[n];
            n++;
        }
    assert_int_equal(ks_fleet_pool_set(f->ref, KS_FLEETSIM_POOL, members, n, &err), KS_OK);
}

/* Text with the first `"key":"` string value's first byte as a \u escape. */
static char *escape_first(char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    char *at = strstr(text, pat);
    assert_non_null(at);
    size_t pre = (size_t)(at - text) + strlen(pat), len = strlen(text);
    char *out = malloc(len + 6);
    assert_non_null(out);
    memcpy(out, text, pre);
    snprintf(out + pre, 7, "\\u%04x", (unsigned char)text[pre]);
    memcpy(out + pre + 6, text + pre + 1, len - pre);
    free(text);
    return out;
}

/* Places a VM on the reference index and commits it to the store; its texts
 * spelled per `spelling` (0: as kintsugid stores them). */
static bool place_and_store(cs_fixture *f, const ks_vm_request *req, int spelling)
{
    ks_err err = {0};
    ks_plan *plan = NULL;
    if (ks_sched_place(&plan, f->ref, req, NULL, &err) != KS_OK)
        return false;
    json_t *rj = ks_vm_request_to_json(req), *pj = ks_plan_to_json(plan);
    assert_non_null(rj);
    assert_non_null(pj);
    char *rt = dump(rj), *pt = dump(pj);
    if (spelling == 1) { /* indented, insertion order: the text decoders' own path */
        free(rt);
        free(pt);
        rt = json_dumps(rj, JSON_INDENT(2));
        pt = json_dumps(pj, JSON_INDENT(3));
    } else if (spelling == 2) { /* escapes: handed to the plain decoder */
        rt = escape_first(rt, "name");
        pt = escape_first(pt, "vm");
    }
    ks_store_vm_row row;
    memset(&row, 0, sizeof(row));
    snprintf(row.name, sizeof(row.name), "%s", req->name);
    snprintf(row.host_id, sizeof(row.host_id), "%s", plan->host);
    snprintf(row.pool, sizeof(row.pool), "%s", req->pool);
    snprintf(row.anti_affinity_group, sizeof(row.anti_affinity_group), "%s",
             req->anti_affinity_group);
    row.generation = plan->generation;
    row.created_us = row.updated_us = 1;
    row.request_json = rt;
    row.plan_json = pt;
    ks_store_vcpu_alloc *al = calloc(plan->n_vcpus, sizeof(*al));
    assert_non_null(al);
    for (uint32_t v = 0; v < plan->n_vcpus; v++) {
        al[v].vcpu = plan->vcpus[v].id;
        al[v].cpu_id = plan->vcpus[v].host_cpu;
    }
    assert_int_equal(ks_store_begin(f->store, &err), KS_OK);
    assert_int_equal(ks_store_vm_insert(f->store, &row, al, plan->n_vcpus, &err), KS_OK);
    assert_int_equal(ks_store_commit(f->store, &err), KS_OK);
    assert_int_equal(ks_fleet_vm_add(f->ref, req, plan, &err), KS_OK);
    free(al);
    free(rt);
    free(pt);
    json_decref(rj);
    json_decref(pj);
    ks_plan_free(plan);
    return true;
}

static int setup(void **state)
{
    cs_fixture *f = calloc(1, sizeof(*f));
    ks_err err = {0};
    assert_non_null(f);
    ks_test_mkdtemp(f->dir, sizeof(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/ks.db", f->dir);
    ks_fleetsim_options so = KS_FLEETSIM_OPTIONS_INIT;
    so.fixtures_dir = ks_test_fixtures_dir();
    so.n_hosts = N_HOSTS;
    so.seed = 7;
    so.defect_rate = 0.6;
    so.quarantine_share = 0.3;
    so.hybrid_share = 0.5;
    so.tmp_dir = f->dir;
    assert_int_equal(ks_fleetsim_new(&f->sim, &so, &err), KS_OK);
    ks_store_options sto = KS_STORE_OPTIONS_INIT;
    assert_int_equal(ks_store_open(&f->store, f->db, &sto, &err), KS_OK);
    assert_int_equal(ks_fleetsim_load_store(f->sim, f->store, KS_FLEETSIM_KINTSUGI, 16, true, &err),
                     KS_OK);
    for (uint32_t i = 0; i < N_HOSTS; i += 3)
        store_with_pmu(f, i);
    bool mismatched = false;
    for (uint32_t i = 1; i < N_HOSTS && !mismatched; i += 3)
        mismatched = store_mismatched_kinds(f, i);
    assert_true(mismatched);
    char drained[KS_ID_MAX];
    ks_fleetsim_host_id(drained, 5);
    assert_int_equal(ks_store_begin(f->store, &err), KS_OK);
    assert_int_equal(ks_store_host_set_state(f->store, drained, KS_STORE_HOST_DRAINING, 2, &err),
                     KS_OK);
    assert_int_equal(ks_store_commit(f->store, &err), KS_OK);
    build_reference(f);

    size_t n_shapes = 0;
    ks_fleetsim_shapes(&n_shapes);
    uint32_t placed = 0;
    for (uint32_t vm = 0; vm < N_VMS; vm++) {
        ks_vm_request req;
        ks_fleetsim_make_request(&req, vm, vm % (uint32_t)n_shapes);
        if (vm % 17 == 0)
            req.pmu.enabled = true;
        placed += place_and_store(f, &req, vm % 11 == 3 ? 1 : vm % 13 == 5 ? 2 : 0);
    }
    assert_true(placed > N_VMS / 2);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    cs_fixture *f = *state;
    ks_fleet_free(f->ref);
    ks_store_close(f->store);
    ks_fleetsim_free(f->sim);
    ks_test_rmdir(f->dir);
    free(f);
    return 0;
}

static void check_rebuild(cs_fixture *f, ks_store *store)
{
    ks_err err = {0};
    ks_api_options o = KS_API_OPTIONS_INIT;
    ks_api *api = NULL;
    assert_int_equal(ks_api_new(&api, &o, store, &err), KS_OK);
    ks_err eq = {0};
    bool equal = ks_fleet_equal(api->fleet, f->ref, &eq);
    if (!equal)
        print_message("index differs: %s\n", eq.msg);
    assert_true(equal);
    assert_int_equal(ks_fleet_check(api->fleet, &err), KS_OK);

    /* What ks_fleet_equal does not look at (PMU, kind names, NUMA) shows in
     * new plans: the same requests must get the same plans from both. */
    size_t n_shapes = 0;
    ks_fleetsim_shapes(&n_shapes);
    uint32_t compared = 0, with_pmu = 0;
    for (uint32_t vm = N_VMS; vm < N_VMS + 60; vm++) {
        ks_vm_request req;
        ks_fleetsim_make_request(&req, vm, vm % (uint32_t)n_shapes);
        req.pmu.enabled = vm % 2 == 0;
        ks_plan *a = NULL, *b = NULL;
        ks_code ra = ks_sched_place(&a, api->fleet, &req, NULL, NULL);
        ks_code rb = ks_sched_place(&b, f->ref, &req, NULL, NULL);
        assert_int_equal(ra, rb);
        if (ra == KS_OK) {
            json_t *ja = ks_plan_to_json(a), *jb = ks_plan_to_json(b);
            char *sa = dump(ja), *sb = dump(jb);
            assert_string_equal(sa, sb);
            compared++;
            with_pmu += a->pmu.enabled && a->pmu.version == 5;
            free(sa);
            free(sb);
            json_decref(ja);
            json_decref(jb);
            /* keep both indexes in step so later requests see the same state */
            assert_int_equal(ks_fleet_vm_add(api->fleet, &req, a, &err), KS_OK);
            assert_int_equal(ks_fleet_vm_add(f->ref, &req, b, &err), KS_OK);
        }
        ks_plan_free(a);
        ks_plan_free(b);
    }
    assert_true(compared > 10);
    assert_true(with_pmu > 0); /* the PMU came through from the report JSON */
    assert_true(ks_fleet_equal(api->fleet, f->ref, &eq));
    ks_api_free(api);
}

typedef struct report_seen {
    ks_store *store;
    char last[KS_ID_MAX];
    uint32_t n;
} report_seen;

/* ks_store_report_scan: ids in order, each text as ks_store_host_get's. */
static int check_report(void *ctx, const char *host_id, const char *text, size_t len)
{
    report_seen *r = ctx;
    ks_store_host_row row = {0};
    assert_true(strcmp(r->last, host_id) < 0);
    snprintf(r->last, sizeof(r->last), "%s", host_id);
    assert_int_equal(ks_store_host_get(&row, r->store, host_id, true, NULL), KS_OK);
    assert_non_null(text);
    assert_non_null(row.report_json);
    assert_int_equal(len, strlen(text));
    assert_string_equal(text, row.report_json);
    ks_store_host_row_destroy(&row);
    return ++r->n == 1000; /* stops when asked: never here */
}

/* Starts from the file store: second handles, the loader and header threads. */
static void test_rebuilt_index_equals_reports(void **state)
{
    cs_fixture *f = *state;
    ks_store *rd = NULL;
    ks_err err = {0};
    /* the second handle is read-only */
    assert_int_equal(ks_store_open_reader(&rd, f->store, &err), KS_OK);
    assert_int_not_equal(ks_store_begin(rd, &err), KS_OK);
    report_seen seen = {.store = f->store};
    assert_int_equal(ks_store_report_scan(rd, check_report, &seen, &err), KS_OK);
    assert_int_equal(seen.n, N_HOSTS);
    ks_store_close(rd);
    check_rebuild(f, f->store);
}

/* An in-memory store has no second handle: everything is read on the one. */
static void test_rebuild_in_memory(void **state)
{
    cs_fixture *f = *state;
    ks_store *mem = NULL, *rd = NULL;
    ks_err err = {0};
    ks_store_options sto = KS_STORE_OPTIONS_INIT;
    uint64_t rows = 0;
    assert_int_equal(ks_store_open(&mem, ":memory:", &sto, &err), KS_OK);
    assert_int_equal(ks_store_copy(&rows, mem, f->store, &err), KS_OK);
    assert_true(rows > N_HOSTS);
    assert_int_equal(ks_store_open_reader(&rd, mem, &err), KS_EUNSUPPORTED);
    assert_null(rd);
    check_rebuild(f, mem);
    ks_store_close(mem);
}

/* A stored plan the cache path must refuse exactly as the plain decoder does. */
static void test_plan_parse_matches_from_json(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "{\"vm\":\"a\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":2},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":3,\"kind\":\"performance\"},"
        "{\"id\":1,\"host_cpu\":4,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\",\"avx\"],\"disable\":[\"aes\"]}}",
        /* same features text again: served from the cache */
        "{\"vm\":\"b\",\"generation\":2,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5,\"kind\":\"efficiency\"}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\",\"avx\"],\"disable\":[\"aes\"]}}",
        /* cached features, but a bad vcpu: the error must be the plain one */
        "{\"vm\":\"c\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":2},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":3,\"kind\":\"performance\"},"
        "{\"id\":1,\"host_cpu\":3,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\",\"avx\"],\"disable\":[\"aes\"]}}",
        /* unknown feature */
        "{\"vm\":\"d\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\",\"avx513\"]}}",
        /* a duplicate features member: jansson keeps the last */
        "{\"vm\":\"e\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\",\"avx\"],\"disable\":[\"aes\"]},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"max\",\"enable\":[\"sse2\"]}}",
        /* both enabled and disabled */
        "{\"vm\":\"f\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"],\"disable\":[\"sse2\"]}}",
        /* the vcpus text decoder's refusals, each judged by the plain decoder */
        "{\"vm\":\"g\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5,\"kind\":\"performance\",}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]}}",
        "{\"vm\":\"h\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5,\"kind\":\"performance\"},],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]}}",
        "{\"vm\":\"i\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5,\"kind\":\"performance\",\"color\":1}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]}}",
        "{\"vm\":\"j\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5,\"kind\":\"performance\",\"core\":1}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]}}",
        "{\"vm\":\"k\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5.0,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]}}",
        "{\"vm\":\"l\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5,\"kind\":\"performance\",\"kind_name\":\"P\\u00e9\"}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]}}",
        "{\"vm\":\"m\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":5,\"kind\":\"performance\",\"kind_name\":\"P\xc3\"}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]}}",
        "{\"vm\":\"n\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"id\":0,\"host_cpu\":5,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]}}",
        "{\"vm\":\"o\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[],\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]}}",
        "{\"vm\":\"p\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":2},"
        "\"vcpus\":[{\"id\":1,\"host_cpu\":5,\"kind\":\"efficiency\",\"kind_name\":\"IntelAtom\","
        "\"max_mhz\":3000,\"core\":1,\"l2_group\":1,\"l3_group\":0,\"numa_node\":0},"
        "{\"id\":0,\"host_cpu\":2,\"kind\":\"performance\",\"max_mhz\":5000000000}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]}}",
        "{\"vm\":\"q\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":2},"
        "\"vcpus\":[{\"id\":1,\"host_cpu\":5,\"kind\":\"efficiency\",\"kind_name\":\"IntelAtom\","
        "\"max_mhz\":3000,\"core\":1,\"l2_group\":1,\"l3_group\":0,\"numa_node\":0},"
        "{\"id\":0,\"host_cpu\":2,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]},"
        "\"numa\":[{\"node\":0,\"host_node\":0,\"vcpus\":[0,1],\"memory_mib\":1024}]}",
        /* a duplicate vcpus member: jansson keeps the last (finding plan-parse-dup-keys) */
        "{\"vm\":\"v\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":0,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"host\"},\"vcpus\":[{\"x\":1}]}",
        "{\"vm\":\"v\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":0,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"host\"},\"vcpus\":[{\"id\":0,\"host_cpu\":9,\"kind\":\"efficiency\"}]}",
        "not json",
    };
    ks_plan_cache *cache = NULL;
    assert_int_equal(ks_plan_cache_new(&cache, NULL), KS_OK);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        ks_err e1 = {0}, e2 = {0};
        ks_plan *a = NULL, *b = NULL;
        json_error_t je;
        json_t *doc = json_loads(texts[i], 0, &je);
        ks_code r1 = doc ? ks_plan_from_json(&a, doc, &e1) : KS_EINVAL;
        ks_code r2 = ks_plan_parse(&b, texts[i], strlen(texts[i]), cache, &e2);
        if (r1 != r2)
            print_message("text %zu: from_json %d '%s', parse %d\n", i, r1, e1.msg, r2);
        assert_int_equal(r1, r2);
        if (r1 == KS_OK) {
            json_t *ja = ks_plan_to_json(a), *jb = ks_plan_to_json(b);
            char *sa = dump(ja), *sb = dump(jb);
            assert_string_equal(sa, sb);
            free(sa);
            free(sb);
            json_decref(ja);
            json_decref(jb);
        } else if (doc) {
            assert_string_equal(e1.field, e2.field);
            assert_string_equal(e1.msg, e2.msg);
        }
        json_decref(doc);
        ks_plan_free(a);
        ks_plan_free(b);
    }
    ks_plan_cache_free(cache);
}

/* ks_report_parse_header: the small members as the full decoder reads them. */
static void test_report_header(void **state)
{
    (void)state;
    ks_err err = {0};
    char dir[512];
    ks_test_mkdtemp(dir, sizeof(dir));
    ks_fleetsim_options so = KS_FLEETSIM_OPTIONS_INIT;
    so.fixtures_dir = ks_test_fixtures_dir();
    so.n_hosts = 8;
    so.hybrid_share = 0.5;
    so.tmp_dir = dir;
    ks_fleetsim *sim = NULL;
    assert_int_equal(ks_fleetsim_new(&sim, &so, &err), KS_OK);
    for (uint32_t i = 0; i < 8; i++) {
        ks_report *r = NULL, *full = NULL, *head = NULL;
        assert_int_equal(ks_fleetsim_host_report(&r, sim, i, KS_FLEETSIM_KINTSUGI, &err), KS_OK);
        r->pmu.version = 4;
        r->pmu.gp_counters = 6;
        json_t *j = ks_report_to_json(r);
        /* indented: the skipper must cope with blanks everywhere */
        char *text = json_dumps(j, JSON_INDENT(1));
        assert_non_null(text);
        assert_int_equal(ks_report_parse(&full, text, strlen(text), &err), KS_OK);
        assert_int_equal(ks_report_parse_header(&head, text, strlen(text), &err), KS_OK);
        assert_int_equal(head->n_cpus, 0);
        assert_string_equal(head->host.id, full->host.id);
        assert_string_equal(head->host.vendor, full->host.vendor);
        assert_string_equal(head->host.model_name, full->host.model_name);
        assert_int_equal(head->host.arch, full->host.arch);
        assert_int_equal(head->n_kinds, full->n_kinds);
        for (uint32_t k = 0; k < full->n_kinds; k++) {
            assert_string_equal(head->kinds[k].name, full->kinds[k].name);
            assert_int_equal(head->kinds[k].kind_class, full->kinds[k].kind_class);
        }
        assert_int_equal(head->n_numa, full->n_numa);
        assert_int_equal(head->pmu.version, 4);
        assert_int_equal(head->pmu.gp_counters, 6);
        /* cut short anywhere: an error, never a crash */
        for (size_t cut = 0; cut < strlen(text); cut += 97) {
            ks_report *t = NULL;
            ks_code rc = ks_report_parse_header(&t, text, cut, NULL);
            assert_int_not_equal(rc, KS_OK);
            assert_null(t);
        }
        free(text);
        json_decref(j);
        ks_report_free(r);
        ks_report_free(full);
        ks_report_free(head);
    }
    ks_report *t = NULL;
    static const char escaped[] = "{\"schema\":1,\"h\\u006fst\":{\"id\":\"a\"},\"cpus\":[]}";
    assert_int_not_equal(ks_report_parse_header(&t, escaped, strlen(escaped), NULL), KS_OK);
    static const char nested[] = "{\"cpus\":[{\"x\":\"}]\\\"\"}],\"schema\":2}";
    assert_int_not_equal(ks_report_parse_header(&t, nested, strlen(nested), &err), KS_OK);
    assert_string_equal(err.field, "schema"); /* reached past the tricky string */
    ks_fleetsim_free(sim);
    ks_test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rebuilt_index_equals_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_in_memory, setup, teardown),
        cmocka_unit_test(test_plan_parse_matches_from_json),
        cmocka_unit_test(test_report_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
