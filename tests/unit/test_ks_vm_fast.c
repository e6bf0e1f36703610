/*
 * test_ks_vm_fast.c - the text decoders of common/ks_vm_fast.c (used when a
 * store is reloaded): ks_plan_parse's whole-text path and
 * ks_vm_request_parse.  They must give exactly what the plain decoders
 * (json_loadb + ks_plan_from_json / ks_vm_request_from_json) give: the same
 * values, the same refusals with the same error field and message.
 *
 * - The store's own format (compact, sorted keys), indented text and other
 *   key orders are decoded by the fast path itself (checked through the
 *   private entry points of ks_vm_int.h).
 * - Unusual but valid JSON (escapes, unknown members, duplicates, 1.0) and
 *   malformed text make the fast path give up; the result is the plain one.
 * - Every one-byte change (replace, insert, delete) of valid texts: the
 *   results agree with the plain decoder, never a crash (run under ASan).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_feature.h"
#include "ks_vm.h"
#include "ks_vm_int.h"

static char *dump_free(json_t *j, size_t flags)
{
    assert_non_null(j);
    char *s = json_dumps(j, flags);
    assert_non_null(s);
    json_decref(j);
    return s;
}

#define CANON (JSON_COMPACT | JSON_SORT_KEYS)

/* ---- documents to start from ---- */

static void add_names(char (**out)[KS_NAME_MAX], uint32_t *n, const char *const *names)
{
    uint32_t k = 0;
    while (names[k])
        k++;
    *out = calloc(k, sizeof(**out));
    assert_non_null(*out);
    for (uint32_t i = 0; i < k; i++)
        snprintf((*out)[i], KS_NAME_MAX, "%s", names[i]);
    *n = k;
}

/* A valid plan; `variant` picks sizes, PMU events, NUMA nodes. */
static ks_plan *make_plan(unsigned variant)
{
    uint32_t n = 1 + variant % 6;
    ks_plan *p = NULL;
    assert_int_equal(ks_plan_new(&p, n, NULL), KS_OK);
    snprintf(p->vm, sizeof(p->vm), "vm-%u", variant);
    snprintf(p->host, sizeof(p->host), "host.%u", variant);
    p->generation = 1 + variant * 1000003ull;
    p->memory_mib = 1024u * (variant + 1);
    p->topology.cores = n;
    p->topology.clusters = 1 + variant % 2;
    uint32_t split = n / 2;
    bool two_nodes = variant % 2 == 1;
    for (uint32_t i = 0; i < n; i++) {
        ks_plan_vcpu *v = &p->vcpus[i];
        v->host_cpu = (int32_t)(10 + i * 3 + variant);
        v->kind_class = i % 2 ? KS_KIND_EFFICIENCY : KS_KIND_PERFORMANCE;
        snprintf(v->kind_name, sizeof(v->kind_name), "%s", i % 2 ? "IntelAtom" : "IntelCore");
        v->max_mhz = 3000 + i;
        v->core = (int32_t)i;
        v->l2_group = (int32_t)(i / 2);
        v->numa_node = two_nodes && i >= split ? 1 : 0;
    }
    assert_int_equal(ks_feature_add_name(&p->visible, "sse2", NULL), KS_OK);
    assert_int_equal(ks_feature_add_name(&p->visible, "avx", NULL), KS_OK);
    if (variant % 3 == 0)
        assert_int_equal(ks_feature_add_name(&p->disable, "aes", NULL), KS_OK);
    if (variant % 4 == 0) {
        static const char *const allow[] = {"cycles", "instructions", NULL};
        static const char *const deny[] = {"branch-misses", NULL};
        p->pmu.enabled = true;
        p->pmu.version = 5;
        p->pmu.gp_counters = 8;
        p->pmu.fixed_counters = 3;
        add_names(&p->pmu.allow_events, &p->pmu.n_allow, allow);
        add_names(&p->pmu.deny_events, &p->pmu.n_deny, deny);
    }
    if (variant % 5 != 4) {
        p->n_numa = two_nodes ? 2 : 1;
        p->numa = calloc(p->n_numa, sizeof(*p->numa));
        assert_non_null(p->numa);
        for (uint32_t k = 0; k < p->n_numa; k++) {
            ks_plan_numa *nn = &p->numa[k];
            nn->node = (int32_t)k;
            nn->host_node = k == 0 ? -1 : 1;
            nn->memory_mib = 512;
            nn->vcpus = malloc(n * sizeof(int32_t));
            assert_non_null(nn->vcpus);
            for (uint32_t i = 0; i < n; i++)
                if (p->vcpus[i].numa_node == (int32_t)k)
                    nn->vcpus[nn->n_vcpus++] = (int32_t)i;
        }
    }
    return p;
}

/* A valid request; `variant` picks which members are set. */
static ks_vm_request *make_request(unsigned variant)
{
    ks_vm_request *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    snprintf(r->name, sizeof(r->name), "vm-%u", variant);
    if (variant % 2) {
        r->n_performance = 2;
        r->n_efficiency = 1;
        r->n_any = variant % 4 == 3 ? 1 : 0;
    } else {
        r->n_any = 1 + variant;
    }
    r->memory_mib = 2048;
    if (variant % 3 == 0) {
        assert_int_equal(ks_feature_add_name(&r->required, "avx2", NULL), KS_OK);
        assert_int_equal(ks_feature_add_name(&r->forbidden, "aes", NULL), KS_OK);
        snprintf(r->pool, sizeof(r->pool), "pool-a");
        snprintf(r->anti_affinity_group, sizeof(r->anti_affinity_group), "grp_1");
    }
    if (variant % 4 == 1) {
        static const char *const allow[] = {"cycles", NULL};
        static const char *const deny[] = {"cache-misses", "branch-misses", NULL};
        snprintf(r->host, sizeof(r->host), "h-1");
        r->min_mhz = 2500;
        r->placement = KS_PLACE_SPREAD;
        r->numa = KS_NUMA_STRICT;
        r->smt = KS_SMT_ISOLATE;
        r->pmu.enabled = true;
        add_names(&r->pmu.allow_events, &r->pmu.n_allow, allow);
        add_names(&r->pmu.deny_events, &r->pmu.n_deny, deny);
    }
    return r;
}

/* ---- comparing with the plain decoders ---- */

typedef struct outcome {
    ks_code rc;
    ks_err err;
    char *canon; /* encoded result when rc == KS_OK */
} outcome;

static void outcome_free(outcome *o)
{
    free(o->canon);
}

static outcome plain_plan(const char *text, size_t len)
{
    outcome o = {0};
    json_error_t je;
    json_t *doc = json_loadb(text, len, 0, &je);
    ks_plan *p = NULL;
    if (!doc) {
        o.rc = ks_err_set_field(&o.err, KS_EINVAL, "", "invalid JSON at line %d column %d: %s",
                                je.line, je.column, je.text);
        return o;
    }
    o.rc = ks_plan_from_json(&p, doc, &o.err);
    json_decref(doc);
    if (o.rc == KS_OK)
        o.canon = dump_free(ks_plan_to_json(p), CANON);
    ks_plan_free(p);
    return o;
}

static outcome plain_request(const char *text, size_t len)
{
    outcome o = {0};
    json_error_t je;
    json_t *doc = json_loadb(text, len, 0, &je);
    ks_vm_request *r = NULL;
    if (!doc) {
        o.rc = ks_err_set_field(&o.err, KS_EINVAL, "", "invalid JSON at line %d column %d: %s",
                                je.line, je.column, je.text);
        return o;
    }
    o.rc = ks_vm_request_from_json(&r, doc, &o.err);
    json_decref(doc);
    if (o.rc == KS_OK)
        o.canon = dump_free(ks_vm_request_to_json(r), CANON);
    ks_vm_request_free(r);
    return o;
}

static void assert_same(const outcome *a, const outcome *b, const char *text, size_t len)
{
    if (a->rc != b->rc || (a->rc == KS_OK && strcmp(a->canon, b->canon) != 0) ||
        (a->rc != KS_OK && (strcmp(a->err.field, b->err.field) != 0 ||
                            strcmp(a->err.msg, b->err.msg) != 0))) {
        print_message("text: %.*s\nplain: %d '%s' '%s'\nfast:  %d '%s' '%s'\n", (int)len, text,
                      a->rc, a->err.field, a->err.msg, b->rc, b->err.field, b->err.msg);
        fail();
    }
}

/* ks_plan_parse (with the cache) against the plain decoder. */
static void check_plan(ks_plan_cache *cache, const char *text, size_t len)
{
    outcome a = plain_plan(text, len), b = {0};
    ks_plan *p = NULL;
    b.rc = ks_plan_parse(&p, text, len, cache, &b.err);
    if (b.rc == KS_OK)
        b.canon = dump_free(ks_plan_to_json(p), CANON);
    else
        assert_null(p);
    assert_same(&a, &b, text, len);
    ks_plan_free(p);
    outcome_free(&a);
    outcome_free(&b);
}

static void check_request(const char *text, size_t len)
{
    outcome a = plain_request(text, len), b = {0};
    ks_vm_request *r = NULL;
    b.rc = ks_vm_request_parse(&r, text, len, &b.err);
    if (b.rc == KS_OK)
        b.canon = dump_free(ks_vm_request_to_json(r), CANON);
    else
        assert_null(r);
    assert_same(&a, &b, text, len);
    ks_vm_request_free(r);
    outcome_free(&a);
    outcome_free(&b);
}

/* The fast path alone: true and the plain result, or false and nothing. */
static bool plan_fast_agrees(ks_plan_cache *cache, const char *text)
{
    ks_plan *p = NULL;
    size_t len = strlen(text);
    bool fast = ks_vm__plan_fast(&p, text, len, cache);
    outcome a = plain_plan(text, len);
    if (fast) {
        assert_int_equal(a.rc, KS_OK);
        char *s = dump_free(ks_plan_to_json(p), CANON);
        assert_string_equal(s, a.canon);
        free(s);
    } else {
        assert_null(p);
    }
    ks_plan_free(p);
    outcome_free(&a);
    check_plan(cache, text, len);
    return fast;
}

static bool request_fast_agrees(const char *text)
{
    ks_vm_request *r = NULL;
    size_t len = strlen(text);
    bool fast = ks_vm__request_fast(&r, text, len);
    outcome a = plain_request(text, len);
    if (fast) {
        assert_int_equal(a.rc, KS_OK);
        char *s = dump_free(ks_vm_request_to_json(r), CANON);
        assert_string_equal(s, a.canon);
        free(s);
    } else {
        assert_null(r);
    }
    ks_vm_request_free(r);
    outcome_free(&a);
    check_request(text, len);
    return fast;
}

/* ---- tests ---- */

/* What the store holds, and other spellings of the same plain JSON. */
static void test_fast__takes_plain_text(void **state)
{
    (void)state;
    ks_plan_cache *cache = NULL;
    assert_int_equal(ks_plan_cache_new(&cache, NULL), KS_OK);
    static const size_t flags[] = {CANON, JSON_COMPACT, JSON_INDENT(2) | JSON_SORT_KEYS,
                                   JSON_INDENT(1)};
    for (unsigned v = 0; v < 24; v++) {
        ks_plan *p = make_plan(v);
        ks_vm_request *r = make_request(v);
        for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
            char *pt = dump_free(ks_plan_to_json(p), flags[f]);
            char *rt = dump_free(ks_vm_request_to_json(r), flags[f]);
            assert_true(plan_fast_agrees(cache, pt));
            assert_true(request_fast_agrees(rt));
            free(pt);
            free(rt);
        }
        ks_plan_free(p);
        ks_vm_request_free(r);
    }
    /* members in another order, blanks everywhere, optional members absent */
    assert_true(plan_fast_agrees(
        cache, " {\"vcpus\" : [ {\"kind\":\"performance\",\"host_cpu\":7,\"id\":0} ] ,\r\n"
               "\t\"vm\":\"x\",\"topology\":{\"cores\":1,\"sockets\":1},\"generation\":3,"
               "\"features\":{\"model\":\"host\"},\"host\":\"h\",\"numa\":[],"
               "\"pmu\":{}} \n"));
    assert_true(request_fast_agrees("{\"vcpus\":{\"efficiency\":2},\"name\":\"a\"}"));
    assert_true(request_fast_agrees("{ \"name\" : \"a\" , \"vcpus\" : 1 , \"pmu\" : { } , "
                                    "\"required_features\" : [ ] }"));
    ks_plan_cache_free(cache);
}

static const char plan_head[] = "{\"vm\":\"a\",\"generation\":1,\"host\":\"h\","
                                "\"topology\":{\"sockets\":1,\"cores\":2},"
                                "\"features\":{\"model\":\"host\",\"enable\":[\"sse2\"]},";
static const char plan_vcpus[] = "\"vcpus\":[{\"id\":0,\"host_cpu\":3,\"kind\":\"performance\","
                                 "\"numa_node\":0},{\"id\":1,\"host_cpu\":4,\"kind\":"
                                 "\"efficiency\",\"numa_node\":0}]";

/* Unusual but valid, or invalid: the fast path gives up, the result is plain. */
static void test_fast__gives_up_on_unusual_text(void **state)
{
    (void)state;
    ks_plan_cache *cache = NULL;
    assert_int_equal(ks_plan_cache_new(&cache, NULL), KS_OK);
    static const char *const plan_tails[] = {
        /* valid JSON, valid plans, but not the plain subset */
        "\"vm\":\"a\"}",                                  /* duplicate vm (last wins) */
        "\"numa\":[{\"node\":0,\"vcpus\":[0,1],\"memory_mib\":1.0}]}", /* a real */
        "\"pmu\":{\"allow_events\":[\"c\\u0079cles\"]}}", /* an escape */
        "\"pmu\":{\"allow_events\":[\"caf\xc3\xa9\"]}}",  /* UTF-8 */
        "\"pmu\":{\"enabled\":true,\"enabled\":false}}",  /* duplicate, nested */
        /* refused by both */
        "\"color\":1}",
        "\"numa\":[{\"node\":0,\"vcpus\":[0]}]}",           /* vcpu 1 in no node */
        "\"numa\":[{\"node\":0,\"vcpus\":[0,1]},{\"node\":0,\"vcpus\":[]}]}",
        "\"numa\":[{\"node\":0,\"vcpus\":[0,0]}]}",
        "\"numa\":[{\"node\":1,\"vcpus\":[0,1]}]}",         /* numa_node says 0 */
        "\"numa\":[{\"node\":0,\"vcpus\":[0,1,1]}]}",       /* more than n_vcpus */
        "\"numa\":[{\"vcpus\":[0,1]}]}",
        "\"numa\":[{\"node\":0,\"host_node\":-2,\"vcpus\":[0,1]}]}",
        "\"numa\":{}}",
        "\"pmu\":{\"version\":256}}",
        "\"pmu\":{\"allow_events\":[\"x\"],\"deny_events\":[\"x\"]}}",
        "\"pmu\":{\"allow_events\":[\"\"]}}",
        "\"pmu\":{\"enabled\":1}}",
        "\"pmu\":{\"enabled\":tru}}",
        "\"pmu\":{\"enabled\":truex}}",
        "\"memory_mib\":-1}",
        "\"memory_mib\":4294967297}",
        "\"memory_mib\":01}",
        "\"memory_mib\":1e3}",
        "\"memory_mib\":99999999999999999999}",
        "\"numa\":[],}",
        "\"numa\":[]} x",
        "\"numa\":[]",
        "\"numa\":[]}\0",
    };
    char text[1024];
    for (size_t i = 0; i < sizeof(plan_tails) / sizeof(plan_tails[0]); i++) {
        int n = snprintf(text, sizeof(text), "%s%s,%s", plan_head, plan_vcpus, plan_tails[i]);
        assert_true(n > 0 && (size_t)n < sizeof(text));
        size_t len = (size_t)n + (strcmp(plan_tails[i], "\"numa\":[]}\0") == 0);
        ks_plan *p = NULL;
        assert_false(ks_vm__plan_fast(&p, text, len, cache));
        assert_null(p);
        check_plan(cache, text, len);
    }
    /* generation 0, topology too small, vm id invalid, vcpus missing */
    static const char *const whole[] = {
        "{\"vm\":\"a\",\"generation\":0,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":3,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"m\"}}",
        "{\"vm\":\"a\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":3,\"kind\":\"performance\"},"
        "{\"id\":1,\"host_cpu\":4,\"kind\":\"performance\"}],\"features\":{\"model\":\"m\"}}",
        "{\"vm\":\"..\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":3,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"m\"}}",
        "{\"vm\":\"a\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"features\":{\"model\":\"m\"}}",
        "{\"vm\":\"a\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":0},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":3,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"m\"}}",
        "{\"vm\":\"a\",\"generation\":1,\"host\":\"h\",\"topology\":{\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":3,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"m\"}}",
        "{\"vm\":\"a\",\"generation\":1,\"host\":\"h\",\"topology\":{\"sockets\":1,\"cores\":1},"
        "\"vcpus\":[{\"id\":0,\"host_cpu\":3,\"kind\":\"performance\"}],"
        "\"features\":{\"model\":\"\"}}",
        "[]",
        "",
        "{}",
    };
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
        ks_plan *p = NULL;
        assert_false(ks_vm__plan_fast(&p, whole[i], strlen(whole[i]), cache));
        check_plan(cache, whole[i], strlen(whole[i]));
    }

    static const char *const requests[] = {
        "{\"name\":\"a\",\"vcpus\":1,\"name\":\"b\"}",
        "{\"name\":\"\\u0061\",\"vcpus\":1}",
        "{\"name\":\"a\",\"vcpus\":1,\"color\":\"red\"}",
        "{\"name\":\"a\",\"vcpus\":0}",
        "{\"name\":\"a\",\"vcpus\":1025}",
        "{\"name\":\"a\",\"vcpus\":{}}",
        "{\"name\":\"a\",\"vcpus\":{\"performance\":1024,\"efficiency\":1}}",
        "{\"name\":\"a\",\"vcpus\":{\"performance\":1,\"other\":1}}",
        "{\"name\":\"a\",\"vcpus\":1.0}",
        "{\"name\":\"a\"}",
        "{\"vcpus\":1}",
        "{\"name\":\"a\",\"vcpus\":1,\"memory_mib\":0}",
        "{\"name\":\"a\",\"vcpus\":1,\"required_features\":[\"avx2\"],"
        "\"forbidden_features\":[\"avx2\"]}",
        "{\"name\":\"a\",\"vcpus\":1,\"required_features\":[\"avx513\"]}",
        "{\"name\":\"a\",\"vcpus\":1,\"required_features\":[\"\"]}",
        "{\"name\":\"a\",\"vcpus\":1,\"required_features\":\"avx2\"}",
        "{\"name\":\"a\",\"vcpus\":1,\"placement\":\"tight\"}",
        "{\"name\":\"a\",\"vcpus\":1,\"smt\":null}",
        "{\"name\":\"a\",\"vcpus\":1,\"min_mhz\":1000001}",
        "{\"name\":\"a\",\"vcpus\":1,\"pool\":\"a b\"}",
        "{\"name\":\"a\",\"vcpus\":1,\"pmu\":{\"allow_events\":[\"x\"],\"deny_events\":[\"x\"]}}",
        "{\"name\":\"a\",\"vcpus\":1,\"pmu\":{\"enabled\":\"yes\"}}",
        "{\"name\":\"a\",\"vcpus\":1}}",
        "{\"name\":\"a\",\"vcpus\":1,}",
        "{\"name\":\"a\" \"vcpus\":1}",
        "{\"name\":\"a\",\"vcpus\":1",
        "nul",
        "",
    };
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        ks_vm_request *r = NULL;
        assert_false(ks_vm__request_fast(&r, requests[i], strlen(requests[i])));
        assert_null(r);
        check_request(requests[i], strlen(requests[i]));
    }
    ks_plan_cache_free(cache);
}

/* Every one-byte replacement, insertion and deletion of some valid texts. */
static void test_fast__one_byte_changes_agree(void **state)
{
    (void)state;
    static const char bytes[] = {'"', '\\', '{', '}', '[', ']', ',', ':', '0', '9', '-',
                                 '.', 'e', ' ', 'x', '\0', (char)0xc3, 't', '1'};
    ks_plan_cache *cache = NULL;
    assert_int_equal(ks_plan_cache_new(&cache, NULL), KS_OK);
    for (unsigned v = 0; v < 2; v++) {
        /* 0: plan with PMU events; 9: two NUMA nodes, request with every member */
        ks_plan *p = make_plan(v ? 9 : 0);
        ks_vm_request *r = make_request(v ? 9 : 0);
        char *texts[2] = {dump_free(ks_plan_to_json(p), CANON),
                          dump_free(ks_vm_request_to_json(r), CANON)};
        for (int t = 0; t < 2; t++) {
            size_t len = strlen(texts[t]);
            char *buf = malloc(len + 2);
            assert_non_null(buf);
            for (size_t i = 0; i <= len; i++) {
                for (size_t b = 0; b < sizeof(bytes); b++) {
                    /* replace byte i, then insert before it */
                    if (i < len) {
                        memcpy(buf, texts[t], len);
                        buf[i] = bytes[b];
                        if (t == 0)
                            check_plan(cache, buf, len);
                        else
                            check_request(buf, len);
                    }
                    memcpy(buf, texts[t], i);
                    buf[i] = bytes[b];
                    memcpy(buf + i + 1, texts[t] + i, len - i);
                    if (t == 0)
                        check_plan(cache, buf, len + 1);
                    else
                        check_request(buf, len + 1);
                }
                if (i < len) { /* delete byte i; cut at i */
                    memcpy(buf, texts[t], i);
                    memcpy(buf + i, texts[t] + i + 1, len - i - 1);
                    if (t == 0) {
                        check_plan(cache, buf, len - 1);
                        check_plan(cache, texts[t], i);
                    } else {
                        check_request(buf, len - 1);
                        check_request(texts[t], i);
                    }
                }
            }
            free(buf);
            free(texts[t]);
        }
        ks_plan_free(p);
        ks_vm_request_free(r);
    }
    ks_plan_cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast__takes_plain_text),
        cmocka_unit_test(test_fast__gives_up_on_unusual_text),
        cmocka_unit_test(test_fast__one_byte_changes_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
