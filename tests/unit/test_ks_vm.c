/*
 * test_ks_vm.c - the VM request (POST /v1/vms body) and vCPU plan codecs
 * (docs/report-schema.md): accepted forms and defaults, round trips, and
 * tables of invalid documents with the field and message they must produce.
 */
#include "ks_test.h"

#include <jansson.h>

#include "ks_feature.h"
#include "ks_vm.h"

static unsigned fid(const char *name)
{
    unsigned id = 0;
    ks_err err;
    if (ks_feature_lookup(name, &id, &err) != KS_OK)
        fail_msg("catalogue lacks '%s': %s", name, err.msg);
    return id;
}

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        fail_msg("test JSON does not parse: %s: %s", jerr.text, text);
    return doc;
}

static ks_vm_request *decode_request(const char *text)
{
    json_t *doc = load(text);
    ks_vm_request *r = NULL;
    ks_err err;
    ks_code rc = ks_vm_request_from_json(&r, doc, &err);
    json_decref(doc);
    if (rc != KS_OK)
        fail_msg("request rejected: %s: %s (%s)", err.field, err.msg, text);
    return r;
}

static void test_vm__enum_strings(void **state)
{
    (void)state;
    for (int i = 0; i < KS_PLACE__COUNT; i++)
        assert_int_equal(ks_placement_mode_from_str(ks_placement_mode_to_str((ks_placement_mode)i)),
                         i);
    for (int i = 0; i < KS_NUMA__COUNT; i++)
        assert_int_equal(ks_numa_mode_from_str(ks_numa_mode_to_str((ks_numa_mode)i)), i);
    for (int i = 0; i < KS_SMT__COUNT; i++)
        assert_int_equal(ks_smt_mode_from_str(ks_smt_mode_to_str((ks_smt_mode)i)), i);
    assert_string_equal(ks_placement_mode_to_str(KS_PLACE_SPREAD), "spread");
    assert_string_equal(ks_numa_mode_to_str(KS_NUMA_STRICT), "strict");
    assert_string_equal(ks_smt_mode_to_str(KS_SMT_ISOLATE), "isolate");
    assert_int_equal(ks_placement_mode_from_str("PACK"), -1);
    assert_int_equal(ks_smt_mode_from_str(NULL), -1);
}

static void test_vm__request_minimal_defaults(void **state)
{
    (void)state;
    ks_vm_request *r = decode_request("{\"name\":\"web-1\",\"vcpus\":4}");
    assert_string_equal(r->name, "web-1");
    assert_int_equal(r->n_any, 4);
    assert_int_equal(r->n_performance, 0);
    assert_int_equal(r->n_efficiency, 0);
    assert_int_equal(ks_vm_request_vcpus(r), 4);
    assert_int_equal(r->memory_mib, 1024);
    assert_true(ks_featset_empty(&r->required));
    assert_true(ks_featset_empty(&r->forbidden));
    assert_string_equal(r->pool, "");
    assert_string_equal(r->host, "");
    assert_int_equal(r->placement, KS_PLACE_PACK);
    assert_int_equal(r->numa, KS_NUMA_PREFERRED);
    assert_int_equal(r->smt, KS_SMT_ALLOW);
    assert_false(r->pmu.enabled);
    assert_int_equal(r->pmu.n_allow, 0);
    ks_vm_request_free(r);
    ks_vm_request_free(NULL);
}

static void test_vm__request_full_and_round_trip(void **state)
{
    (void)state;
    ks_vm_request *r = decode_request(
        "{\"name\":\"db.7\",\"vcpus\":{\"performance\":6,\"efficiency\":2},\"memory_mib\":16384,"
        "\"required_features\":[\"avx2\",\"aes\"],\"forbidden_features\":[\"avx512\"],"
        "\"pool\":\"gen12\",\"host\":\"h-0042\",\"anti_affinity_group\":\"db\",\"min_mhz\":3000,"
        "\"placement\":\"spread\",\"numa\":\"strict\",\"smt\":\"isolate\","
        "\"pmu\":{\"enabled\":true,\"allow_events\":[\"instructions\",\"cycles\"],"
        "\"deny_events\":[\"offcore_response\"]}}");
    assert_int_equal(r->n_performance, 6);
    assert_int_equal(r->n_efficiency, 2);
    assert_int_equal(r->n_any, 0);
    assert_int_equal(ks_vm_request_vcpus(r), 8);
    assert_int_equal(r->memory_mib, 16384);
    assert_true(ks_featset_test(&r->required, fid("avx2")));
    assert_true(ks_featset_test(&r->required, fid("aes")));
    assert_int_equal(ks_featset_popcount(&r->required), 2);
    /* a group name expands to its members */
    assert_true(ks_featset_test(&r->forbidden, fid("avx512f")));
    assert_true(ks_featset_test(&r->forbidden, fid("avx512bw")));
    assert_string_equal(r->pool, "gen12");
    assert_string_equal(r->host, "h-0042");
    assert_string_equal(r->anti_affinity_group, "db");
    assert_int_equal(r->min_mhz, 3000);
    assert_int_equal(r->placement, KS_PLACE_SPREAD);
    assert_int_equal(r->numa, KS_NUMA_STRICT);
    assert_int_equal(r->smt, KS_SMT_ISOLATE);
    assert_true(r->pmu.enabled);
    assert_int_equal(r->pmu.n_allow, 2);
    assert_string_equal(r->pmu.allow_events[1], "cycles");
    assert_int_equal(r->pmu.n_deny, 1);
    assert_string_equal(r->pmu.deny_events[0], "offcore_response");

    json_t *doc = ks_vm_request_to_json(r);
    assert_non_null(doc);
    ks_vm_request *back = NULL;
    ks_err err;
    ks_code rc = ks_vm_request_from_json(&back, doc, &err);
    if (rc != KS_OK)
        fail_msg("round trip rejected: %s: %s", err.field, err.msg);
    json_t *again = ks_vm_request_to_json(back);
    assert_true(json_equal(doc, again));
    assert_true(ks_featset_equal(&r->required, &back->required));
    assert_true(ks_featset_equal(&r->forbidden, &back->forbidden));
    assert_int_equal(back->n_performance, 6);
    assert_int_equal(back->n_efficiency, 2);
    json_decref(again);
    json_decref(doc);
    ks_vm_request_free(back);
    ks_vm_request_free(r);

    /* "vcpus": N round-trips as a number, the object form with "any" as an object */
    r = decode_request("{\"name\":\"a\",\"vcpus\":{\"performance\":1,\"any\":3}}");
    assert_int_equal(r->n_any, 3);
    doc = ks_vm_request_to_json(r);
    assert_true(json_is_object(json_object_get(doc, "vcpus")));
    assert_false(json_is_true(json_object_get(json_object_get(doc, "pmu"), "enabled")));
    assert_null(json_object_get(doc, "pool"));
    json_decref(doc);
    ks_vm_request_free(r);
    r = decode_request("{\"name\":\"b\",\"vcpus\":{\"efficiency\":2}}");
    assert_int_equal(r->n_efficiency, 2);
    ks_vm_request_free(r);
    r = decode_request("{\"name\":\"c\",\"vcpus\":1024,\"required_features\":[\"x86-64-v3\"]}");
    assert_true(ks_featset_test(&r->required, fid("avx2")));
    doc = ks_vm_request_to_json(r);
    assert_int_equal(json_integer_value(json_object_get(doc, "vcpus")), 1024);
    json_decref(doc);
    ks_vm_request_free(r);
}

typedef struct bad_doc {
    const char *name;
    const char *text;
    const char *field;
    const char *msg;
} bad_doc;

static const bad_doc k_bad_requests[] = {
    {"missing name", "{\"vcpus\":2}", "name", "missing required key 'name'"},
    {"invalid name", "{\"name\":\"web 1\",\"vcpus\":2}", "name", "invalid id 'web 1'"},
    {"name too long",
     "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"vcpus\":1}",
     "name", "id too long (64 bytes, at most 63)"},
    {"missing vcpus", "{\"name\":\"a\"}", "vcpus", "missing required key 'vcpus'"},
    {"zero vcpus", "{\"name\":\"a\",\"vcpus\":0}", "vcpus", "value 0 out of range (1..1024)"},
    {"zero vcpus object", "{\"name\":\"a\",\"vcpus\":{\"performance\":0}}", "vcpus",
     "at least 1 vcpu"},
    {"too many vcpus", "{\"name\":\"a\",\"vcpus\":{\"performance\":1000,\"efficiency\":100}}",
     "vcpus", "too many vcpus (1100, at most 1024)"},
    {"vcpus wrong type", "{\"name\":\"a\",\"vcpus\":\"4\"}", "vcpus",
     "expected integer or object"},
    {"unknown vcpus key", "{\"name\":\"a\",\"vcpus\":{\"big\":2}}", "vcpus.big",
     "unknown key 'big'"},
    {"negative efficiency", "{\"name\":\"a\",\"vcpus\":{\"efficiency\":-1}}", "vcpus.efficiency",
     "out of range"},
    {"unknown field", "{\"name\":\"a\",\"vcpus\":1,\"gpu\":true}", "gpu", "unknown key 'gpu'"},
    {"memory wrong type", "{\"name\":\"a\",\"vcpus\":1,\"memory_mib\":\"8G\"}", "memory_mib",
     "expected integer, got string"},
    {"memory zero", "{\"name\":\"a\",\"vcpus\":1,\"memory_mib\":0}", "memory_mib",
     "at least 1"},
    {"unknown required feature", "{\"name\":\"a\",\"vcpus\":1,\"required_features\":[\"avx513\"]}",
     "required_features[0]", "unknown feature 'avx513'"},
    {"forbidden not an array", "{\"name\":\"a\",\"vcpus\":1,\"forbidden_features\":\"avx2\"}",
     "forbidden_features", "expected array of feature names, got string"},
    {"required and forbidden",
     "{\"name\":\"a\",\"vcpus\":1,\"required_features\":[\"avx512bw\"],"
     "\"forbidden_features\":[\"avx512\"]}",
     "forbidden_features", "feature 'avx512bw' is both required and forbidden"},
    {"bad placement", "{\"name\":\"a\",\"vcpus\":1,\"placement\":\"scatter\"}", "placement",
     "unknown value 'scatter' (expected pack or spread)"},
    {"bad numa", "{\"name\":\"a\",\"vcpus\":1,\"numa\":\"loose\"}", "numa",
     "unknown value 'loose'"},
    {"bad smt", "{\"name\":\"a\",\"vcpus\":1,\"smt\":true}", "smt", "expected string, got boolean"},
    {"invalid pool", "{\"name\":\"a\",\"vcpus\":1,\"pool\":\"\"}", "pool", "invalid id ''"},
    {"min_mhz negative", "{\"name\":\"a\",\"vcpus\":1,\"min_mhz\":-5}", "min_mhz", "out of range"},
    {"pmu unknown key", "{\"name\":\"a\",\"vcpus\":1,\"pmu\":{\"on\":true}}", "pmu.on",
     "unknown key 'on'"},
    {"pmu enabled wrong type", "{\"name\":\"a\",\"vcpus\":1,\"pmu\":{\"enabled\":1}}",
     "pmu.enabled", "expected boolean, got integer"},
    {"pmu event wrong type", "{\"name\":\"a\",\"vcpus\":1,\"pmu\":{\"allow_events\":[\"x\",2]}}",
     "pmu.allow_events[1]", "expected string, got integer"},
    {"pmu allowed and denied",
     "{\"name\":\"a\",\"vcpus\":1,\"pmu\":{\"allow_events\":[\"cycles\"],"
     "\"deny_events\":[\"cycles\"]}}",
     "pmu.deny_events", "event 'cycles' is both allowed and denied"},
    {"not an object", "[]", "", "a vm request must be a JSON object"},
};

static void test_vm__request_invalid(void **state)
{
    (void)state;
    size_t n = sizeof(k_bad_requests) / sizeof(k_bad_requests[0]);
    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++) {
        const bad_doc *b = &k_bad_requests[i];
        json_t *doc = load(b->text);
        ks_vm_request *r = NULL;
        ks_err err;
        memset(&err, 0, sizeof(err));
        ks_code rc = ks_vm_request_from_json(&r, doc, &err);
        json_decref(doc);
        if (rc == KS_OK) {
            ks_vm_request_free(r);
            fail_msg("case '%s' was accepted", b->name);
        }
        assert_null(r);
        if (rc != KS_EINVAL || strcmp(err.field, b->field) != 0 || !strstr(err.msg, b->msg))
            fail_msg("case '%s': got code %d field '%s' msg '%s', want field '%s' msg ~'%s'",
                     b->name, rc, err.field, err.msg, b->field, b->msg);
    }
}

/* A 4-vCPU plan: 2 P + 2 E vCPUs, 2 clusters, 2 guest NUMA nodes. */
static ks_plan *build_plan(void)
{
    ks_plan *p = NULL;
    ks_err err;
    assert_int_equal(ks_plan_new(&p, 4, &err), KS_OK);
    assert_int_equal(p->n_vcpus, 4);
    assert_int_equal(p->vcpus[3].id, 3);
    assert_int_equal(p->vcpus[3].host_cpu, -1);
    assert_string_equal(p->cpu_model, "host");
    snprintf(p->vm, sizeof(p->vm), "web-1");
    snprintf(p->host, sizeof(p->host), "h-0042");
    p->generation = 3;
    p->memory_mib = 8192;
    p->topology.sockets = 1;
    p->topology.dies = 1;
    p->topology.clusters = 2;
    p->topology.cores = 2;
    p->topology.threads = 1;
    static const int32_t host_cpus[] = {12, 14, 20, 21};
    for (int i = 0; i < 4; i++) {
        ks_plan_vcpu *v = &p->vcpus[i];
        bool perf = i < 2;
        v->host_cpu = host_cpus[i];
        v->kind_class = perf ? KS_KIND_PERFORMANCE : KS_KIND_EFFICIENCY;
        snprintf(v->kind_name, sizeof(v->kind_name), "%s", perf ? "IntelCore" : "IntelAtom");
        v->max_mhz = perf ? 5200 : 3900;
        v->cluster = i / 2;
        v->core = i % 2;
        v->l2_group = i / 2;
        v->l3_group = 0;
        v->numa_node = i / 2;
    }
    assert_int_equal(ks_feature_add_name(&p->visible, "x86-64-v3", NULL), KS_OK);
    assert_int_equal(ks_feature_add_name(&p->disable, "avx512", NULL), KS_OK);
    p->pmu.enabled = true;
    p->pmu.version = 5;
    p->pmu.gp_counters = 4;
    p->pmu.fixed_counters = 3;
    p->pmu.n_allow = 1;
    p->pmu.allow_events = calloc(1, KS_NAME_MAX);
    assert_non_null(p->pmu.allow_events);
    snprintf(p->pmu.allow_events[0], KS_NAME_MAX, "instructions");
    p->n_numa = 2;
    p->numa = calloc(2, sizeof(*p->numa));
    assert_non_null(p->numa);
    for (int n = 0; n < 2; n++) {
        p->numa[n].node = n;
        p->numa[n].host_node = n;
        p->numa[n].memory_mib = 4096;
        p->numa[n].n_vcpus = 2;
        p->numa[n].vcpus = malloc(2 * sizeof(int32_t));
        assert_non_null(p->numa[n].vcpus);
        p->numa[n].vcpus[0] = 2 * n;
        p->numa[n].vcpus[1] = 2 * n + 1;
    }
    return p;
}

static void assert_plans_equal(const ks_plan *a, const ks_plan *b)
{
    assert_string_equal(a->vm, b->vm);
    assert_string_equal(a->host, b->host);
    assert_int_equal(a->generation, b->generation);
    assert_int_equal(a->memory_mib, b->memory_mib);
    assert_memory_equal(&a->topology, &b->topology, sizeof(a->topology));
    assert_int_equal(a->n_vcpus, b->n_vcpus);
    for (uint32_t i = 0; i < a->n_vcpus; i++)
        assert_memory_equal(&a->vcpus[i], &b->vcpus[i], sizeof(a->vcpus[i]));
    assert_string_equal(a->cpu_model, b->cpu_model);
    assert_true(ks_featset_equal(&a->visible, &b->visible));
    assert_true(ks_featset_equal(&a->disable, &b->disable));
    assert_int_equal(a->pmu.enabled, b->pmu.enabled);
    assert_int_equal(a->pmu.version, b->pmu.version);
    assert_int_equal(a->pmu.gp_counters, b->pmu.gp_counters);
    assert_int_equal(a->pmu.fixed_counters, b->pmu.fixed_counters);
    assert_int_equal(a->pmu.n_allow, b->pmu.n_allow);
    for (uint32_t i = 0; i < a->pmu.n_allow; i++)
        assert_string_equal(a->pmu.allow_events[i], b->pmu.allow_events[i]);
    assert_int_equal(a->pmu.n_deny, b->pmu.n_deny);
    assert_int_equal(a->n_numa, b->n_numa);
    for (uint32_t i = 0; i < a->n_numa; i++) {
        assert_int_equal(a->numa[i].node, b->numa[i].node);
        assert_int_equal(a->numa[i].host_node, b->numa[i].host_node);
        assert_int_equal(a->numa[i].memory_mib, b->numa[i].memory_mib);
        assert_int_equal(a->numa[i].n_vcpus, b->numa[i].n_vcpus);
        assert_memory_equal(a->numa[i].vcpus, b->numa[i].vcpus,
                            a->numa[i].n_vcpus * sizeof(int32_t));
    }
}

static void test_vm__plan_round_trip(void **state)
{
    (void)state;
    ks_plan *p = build_plan();
    ks_err err;
    json_t *doc = ks_plan_to_json(p);
    assert_non_null(doc);
    /* DESIGN.md shape */
    json_t *v0 = json_array_get(json_object_get(doc, "vcpus"), 0);
    assert_string_equal(json_string_value(json_object_get(v0, "kind")), "performance");
    assert_int_equal(json_integer_value(json_object_get(v0, "host_cpu")), 12);
    json_t *features = json_object_get(doc, "features");
    assert_string_equal(json_string_value(json_object_get(features, "model")), "host");
    assert_true(json_array_size(json_object_get(features, "disable")) > 10);

    ks_plan *back = NULL;
    ks_code rc = ks_plan_from_json(&back, doc, &err);
    if (rc != KS_OK)
        fail_msg("plan rejected: %s: %s", err.field, err.msg);
    assert_plans_equal(p, back);
    json_t *again = ks_plan_to_json(back);
    assert_true(json_equal(doc, again));

    ks_plan *copy = NULL;
    assert_int_equal(ks_plan_dup(&copy, back, &err), KS_OK);
    ks_plan_free(back);
    assert_plans_equal(p, copy);
    ks_plan_free(copy);

    /* vcpus may come in any order; they are stored by id */
    json_t *vcpus = json_object_get(doc, "vcpus");
    json_t *first = json_incref(json_array_get(vcpus, 0));
    assert_int_equal(json_array_remove(vcpus, 0), 0);
    assert_int_equal(json_array_append_new(vcpus, first), 0);
    assert_int_equal(ks_plan_from_json(&back, doc, &err), KS_OK);
    assert_plans_equal(p, back);
    ks_plan_free(back);

    assert_int_equal(ks_plan_new(&back, KS_VM_MAX_VCPUS + 1, &err), KS_EINVAL);
    json_decref(again);
    json_decref(doc);
    ks_plan_free(p);
    ks_plan_free(NULL);
}

#define PV(id, cpu, extra) \
    "{\"id\":" #id ",\"host_cpu\":" #cpu ",\"kind\":\"performance\"" extra "}"
#define PLAN_HEAD "\"vm\":\"v\",\"host\":\"h\",\"generation\":1,"
#define TOPO2 "\"topology\":{\"sockets\":1,\"cores\":2},"
#define FEAT "\"features\":{\"enable\":[\"sse2\"]}"

static const char k_valid_plan[] =
    "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "," PV(1, 2, ",\"core\":1") "]," FEAT "}";

static const bad_doc k_bad_plans[] = {
    {"vcpu id gap", "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "," PV(2, 2, "") "]," FEAT "}",
     "vcpus[1].id", "value 2 out of range (0..1)"},
    {"duplicate vcpu id",
     "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(1, 1, "") "," PV(1, 2, "") "]," FEAT "}",
     "vcpus[1].id", "duplicate vcpu id 1"},
    {"host cpu twice", "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 5, "") "," PV(1, 5, "") "]," FEAT
                       "}",
     "vcpus[1].host_cpu", "host cpu 5 is already used by vcpus[0]"},
    {"topology too small",
     "{" PLAN_HEAD "\"topology\":{\"sockets\":1,\"cores\":1},\"vcpus\":[" PV(0, 1, "") "," PV(
         1, 2, "") "]," FEAT "}",
     "topology", "topology has 1 vcpu slots but the plan has 2 vcpus"},
    {"topology zero", "{" PLAN_HEAD "\"topology\":{\"sockets\":0,\"cores\":2},\"vcpus\":[" PV(
                          0, 1, "") "]," FEAT "}",
     "topology.sockets", "sockets must be at least 1"},
    {"coordinate outside topology",
     "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "," PV(1, 2, ",\"core\":2") "]," FEAT "}",
     "vcpus[1].core", "core 2 out of range (topology has 2 cores)"},
    {"unknown enable feature",
     "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "],\"features\":{\"enable\":[\"sse2\","
     "\"avx513\"]}}",
     "features.enable[1]", "unknown feature 'avx513'"},
    {"enabled and disabled",
     "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "],\"features\":{\"enable\":[\"avx2\"],"
     "\"disable\":[\"avx2\"]}}",
     "features.disable", "feature 'avx2' is both enabled and disabled"},
    {"generation zero",
     "{\"vm\":\"v\",\"host\":\"h\",\"generation\":0," TOPO2 "\"vcpus\":[" PV(0, 1, "") "]," FEAT
     "}",
     "generation", "generation must be at least 1"},
    {"missing generation",
     "{\"vm\":\"v\",\"host\":\"h\"," TOPO2 "\"vcpus\":[" PV(0, 1, "") "]," FEAT "}",
     "generation", "missing required key 'generation'"},
    {"vcpu in no numa node",
     "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "," PV(1, 2, ",\"core\":1") "]," FEAT
     ",\"numa\":[{\"node\":0,\"vcpus\":[0]}]}",
     "numa", "vcpu 1 is in no numa node"},
    {"vcpu in two numa nodes",
     "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "," PV(1, 2, ",\"numa_node\":1") "]," FEAT
     ",\"numa\":[{\"node\":0,\"vcpus\":[0,1]},{\"node\":1,\"vcpus\":[1]}]}",
     "numa[1].vcpus[0]", "vcpu 1 is already in numa[0]"},
    {"numa_node disagrees",
     "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "," PV(1, 2, "") "]," FEAT
     ",\"numa\":[{\"node\":0,\"vcpus\":[0]},{\"node\":1,\"vcpus\":[1]}]}",
     "vcpus[1]", "vcpu 1 has numa_node 0 but numa[1] (node 1) lists it"},
    {"unknown vcpu key", "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, ",\"pin\":3") "]," FEAT "}",
     "vcpus[0].pin", "unknown key 'pin'"},
    {"bad kind", "{" PLAN_HEAD TOPO2 "\"vcpus\":[{\"id\":0,\"host_cpu\":1,\"kind\":\"turbo\"}],"
                 FEAT "}",
     "vcpus[0].kind", "unknown value 'turbo'"},
    {"no vcpus", "{" PLAN_HEAD TOPO2 "\"vcpus\":[]," FEAT "}", "vcpus",
     "a plan needs at least 1 vcpu"},
    {"invalid vm name", "{\"vm\":\"../x\",\"host\":\"h\",\"generation\":1," TOPO2
                        "\"vcpus\":[" PV(0, 1, "") "]," FEAT "}",
     "vm", "invalid id '../x'"},
    {"missing features", "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "]}", "features",
     "missing required key 'features'"},
    {"pmu counters wrong type",
     "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "]," FEAT ",\"pmu\":{\"gp_counters\":\"4\"}}",
     "pmu.gp_counters", "expected integer, got string"},
    {"unknown top-level key", "{" PLAN_HEAD TOPO2 "\"vcpus\":[" PV(0, 1, "") "]," FEAT
                              ",\"cpu\":\"max\"}",
     "cpu", "unknown key 'cpu'"},
};

static void test_vm__plan_invalid(void **state)
{
    (void)state;
    ks_err err;
    ks_plan *p = NULL;
    json_t *ok = load(k_valid_plan);
    ks_code rc = ks_plan_from_json(&p, ok, &err);
    if (rc != KS_OK)
        fail_msg("base plan rejected: %s: %s", err.field, err.msg);
    assert_int_equal(p->vcpus[1].core, 1);
    assert_int_equal(p->topology.dies, 1);
    assert_int_equal(p->topology.threads, 1);
    ks_plan_free(p);
    json_decref(ok);

    size_t n = sizeof(k_bad_plans) / sizeof(k_bad_plans[0]);
    assert_true(n >= 8);
    for (size_t i = 0; i < n; i++) {
        const bad_doc *b = &k_bad_plans[i];
        json_t *doc = load(b->text);
        p = NULL;
        memset(&err, 0, sizeof(err));
        rc = ks_plan_from_json(&p, doc, &err);
        json_decref(doc);
        if (rc == KS_OK) {
            ks_plan_free(p);
            fail_msg("case '%s' was accepted", b->name);
        }
        assert_null(p);
        if (rc != KS_EINVAL || strcmp(err.field, b->field) != 0 || !strstr(err.msg, b->msg))
            fail_msg("case '%s': got code %d field '%s' msg '%s', want field '%s' msg ~'%s'",
                     b->name, rc, err.field, err.msg, b->field, b->msg);
    }
}

/* Byte mutations of valid documents: errors or valid values, never crashes or leaks. */
static void assert_text_is_canonical(const ks_plan *p)
{
    json_t *doc = ks_plan_to_json(p);
    assert_non_null(doc);
    char *want = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    char *got = ks_plan_to_text(p);
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    free(want);
}

/* ks_plan_to_text writes exactly what jansson writes: over random plans,
 * empty and NULL arrays, extreme numbers, and strings that only jansson
 * handles (escapes, non-ASCII, invalid UTF-8), twice each (cache hit). */
static void test_vm__plan_text_is_canonical(void **state)
{
    (void)state;
    srand(7);
    for (int round = 0; round < 400; round++) {
        ks_plan *p = build_plan();
        ks_featset_clear(&p->visible);
        ks_featset_clear(&p->disable);
        for (unsigned f = 0; f < (unsigned)ks_feature_count(); f++) {
            if (rand() % 3 == 0)
                ks_featset_set(&p->visible, f);
            else if (rand() % 9 == 0)
                ks_featset_set(&p->disable, f);
        }
        switch (round % 8) {
        case 1:
            p->generation = UINT64_MAX; /* clamped to INT64_MAX by both */
            p->memory_mib = (uint64_t)INT64_MAX + 5;
            p->vcpus[0].max_mhz = UINT32_MAX;
            p->vcpus[1].host_cpu = INT32_MIN;
            break;
        case 2:
            free(p->numa[0].vcpus);
            free(p->numa[1].vcpus);
            free(p->numa);
            p->numa = NULL;
            p->n_numa = 3; /* no array: written as [] by both */
            free(p->pmu.allow_events);
            p->pmu.allow_events = NULL;
            break;
        case 3:
            snprintf(p->vcpus[2].kind_name, KS_NAME_MAX, "say \"hi\"\\\n");
            break;
        case 4:
            snprintf(p->cpu_model, sizeof(p->cpu_model), "caf\xc3\xa9");
            break;
        case 5:
            snprintf(p->pmu.allow_events[0], KS_NAME_MAX, "bad\xff\xfeutf8");
            break;
        case 6:
            memset(p->vcpus[3].kind_name, 'k', KS_NAME_MAX); /* no NUL: bounded read */
            break;
        default:
            break;
        }
        assert_text_is_canonical(p);
        assert_text_is_canonical(p);
        ks_plan_free(p);
    }
}

static void test_vm__never_crashes(void **state)
{
    (void)state;
    ks_plan *p = build_plan();
    json_t *pdoc = ks_plan_to_json(p);
    char *texts[2];
    texts[0] = json_dumps(pdoc, JSON_COMPACT);
    texts[1] = strdup("{\"name\":\"db.7\",\"vcpus\":{\"performance\":6,\"efficiency\":2},"
                      "\"memory_mib\":16384,\"required_features\":[\"avx2\"],"
                      "\"placement\":\"spread\",\"pmu\":{\"enabled\":true,"
                      "\"allow_events\":[\"cycles\"]}}");
    assert_non_null(texts[0]);
    assert_non_null(texts[1]);
    static const char junk[] = "{}[]\",:0123456789-tfnul ";
    uint32_t seed = 777;
    for (int t = 0; t < 2; t++) {
        size_t len = strlen(texts[t]);
        char *buf = malloc(len + 1);
        assert_non_null(buf);
        for (int iter = 0; iter < 1500; iter++) {
            memcpy(buf, texts[t], len + 1);
            for (int k = 0; k < 1 + iter % 3; k++) {
                seed = seed * 1103515245u + 12345u;
                size_t pos = (seed >> 8) % len;
                seed = seed * 1103515245u + 12345u;
                buf[pos] = junk[(seed >> 8) % (sizeof(junk) - 1)];
            }
            json_t *doc = json_loads(buf, JSON_REJECT_DUPLICATES, NULL);
            if (!doc)
                continue;
            ks_err err;
            if (t == 0) {
                ks_plan *x = NULL;
                if (ks_plan_from_json(&x, doc, &err) == KS_OK) {
                    json_t *again = ks_plan_to_json(x);
                    assert_non_null(again);
                    json_decref(again);
                }
                ks_plan_free(x);
            } else {
                ks_vm_request *x = NULL;
                if (ks_vm_request_from_json(&x, doc, &err) == KS_OK) {
                    json_t *again = ks_vm_request_to_json(x);
                    assert_non_null(again);
                    json_decref(again);
                }
                ks_vm_request_free(x);
            }
            json_decref(doc);
        }
        free(buf);
    }
    free(texts[0]);
    free(texts[1]);
    json_decref(pdoc);
    ks_plan_free(p);
}

/* The source tree: from ctest's environment, else from this file's path. */
static void source_dir(char *buf, size_t cap)
{
    const char *env = getenv("KS_SOURCE_DIR");
    if (env) {
        ks_test_path(buf, cap, "%s", env);
        return;
    }
    ks_test_path(buf, cap, "%s", __FILE__);
    char *cut = strstr(buf, "/tests/unit/");
    assert_non_null(cut);
    *cut = '\0';
}

/* SPEC: docs/report-schema.md - its three examples decode and re-encode unchanged. */
static void test_vm__schema_doc_examples(void **state)
{
    (void)state;
    char dir[4096], path[4200];
    source_dir(dir, sizeof(dir));
    char *md = ks_test_read_file(ks_test_path(path, sizeof(path), "%s/docs/report-schema.md", dir),
                                 NULL);
    assert_non_null(md);
    const char *at = md;
    for (int which = 0; which < 3; which++) {
        const char *start = strstr(at, "```json\n");
        assert_non_null(start);
        start += strlen("```json\n");
        const char *end = strstr(start, "\n```");
        assert_non_null(end);
        at = end + 4;
        json_error_t jerr;
        json_t *doc = json_loadb(start, (size_t)(end - start), JSON_REJECT_DUPLICATES, &jerr);
        if (!doc)
            fail_msg("example %d is not JSON: %s (line %d)", which, jerr.text, jerr.line);
        ks_err err;
        ks_code rc;
        json_t *again = NULL;
        if (which == 0) {
            ks_report *r = NULL;
            rc = ks_report_from_json(&r, doc, &err);
            if (rc == KS_OK) {
                again = ks_report_to_json(r);
                assert_int_equal(r->cpus[1].state, KS_CPU_DEGRADED);
                assert_false(ks_featset_test(&r->cpus[1].usable, fid("avx512bw")));
            }
            ks_report_free(r);
        } else if (which == 1) {
            ks_vm_request *r = NULL;
            rc = ks_vm_request_from_json(&r, doc, &err);
            if (rc == KS_OK)
                again = ks_vm_request_to_json(r);
            ks_vm_request_free(r);
        } else {
            ks_plan *p = NULL;
            rc = ks_plan_from_json(&p, doc, &err);
            if (rc == KS_OK)
                again = ks_plan_to_json(p);
            ks_plan_free(p);
        }
        if (rc != KS_OK)
            fail_msg("example %d rejected: %s: %s", which, err.field, err.msg);
        /* The request example names a group, which the encoder writes expanded. */
        if (which != 1 && !json_equal(doc, again))
            fail_msg("example %d does not re-encode unchanged", which);
        json_decref(again);
        json_decref(doc);
    }
    free(md);
}

/* ---- request text (ks_vm_request_to_text) ---------------------------------- */

static char *request_dump(const ks_vm_request *r)
{
    json_t *doc = ks_vm_request_to_json(r);
    assert_non_null(doc);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    assert_non_null(text);
    return text;
}

/* Twice: the second write of a feature set comes from the text cache. */
static void assert_request_text_is_canonical(const ks_vm_request *r)
{
    char *want = request_dump(r);
    for (int i = 0; i < 2; i++) {
        char *got = ks_vm_request_to_text(r);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(got);
    }
    free(want);
}

static void assert_names_equal(const char (*a)[KS_NAME_MAX], uint32_t na,
                               const char (*b)[KS_NAME_MAX], uint32_t nb)
{
    assert_int_equal(na, nb);
    for (uint32_t i = 0; i < na; i++)
        assert_string_equal(a[i], b[i]);
}

static void assert_requests_equal(const ks_vm_request *a, const ks_vm_request *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->n_performance, b->n_performance);
    assert_int_equal(a->n_efficiency, b->n_efficiency);
    assert_int_equal(a->n_any, b->n_any);
    assert_int_equal(a->memory_mib, b->memory_mib);
    assert_true(ks_featset_equal(&a->required, &b->required));
    assert_true(ks_featset_equal(&a->forbidden, &b->forbidden));
    assert_string_equal(a->pool, b->pool);
    assert_string_equal(a->host, b->host);
    assert_string_equal(a->anti_affinity_group, b->anti_affinity_group);
    assert_int_equal(a->min_mhz, b->min_mhz);
    assert_int_equal(a->placement, b->placement);
    assert_int_equal(a->numa, b->numa);
    assert_int_equal(a->smt, b->smt);
    assert_int_equal(a->pmu.enabled, b->pmu.enabled);
    assert_names_equal((const char(*)[KS_NAME_MAX])a->pmu.allow_events, a->pmu.n_allow,
                       (const char(*)[KS_NAME_MAX])b->pmu.allow_events, b->pmu.n_allow);
    assert_names_equal((const char(*)[KS_NAME_MAX])a->pmu.deny_events, a->pmu.n_deny,
                       (const char(*)[KS_NAME_MAX])b->pmu.deny_events, b->pmu.n_deny);
}

/* The text decodes, by both request decoders, to the request it came from. */
static void assert_request_text_round_trips(const ks_vm_request *r)
{
    char *text = ks_vm_request_to_text(r);
    assert_non_null(text);
    ks_vm_request *back = NULL;
    ks_err err;
    if (ks_vm_request_parse(&back, text, strlen(text), &err) != KS_OK)
        fail_msg("request text rejected: %s: %s (%s)", err.field, err.msg, text);
    assert_requests_equal(r, back);
    ks_vm_request_free(back);
    back = decode_request(text);
    assert_requests_equal(r, back);
    ks_vm_request_free(back);
    free(text);
}

static uint32_t rnd_below(uint32_t n)
{
    return (uint32_t)rand() % n;
}

static void random_id(char *buf, size_t cap)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    size_t len = 1 + rnd_below((uint32_t)(cap - 1));
    for (size_t i = 0; i < len; i++)
        buf[i] = chars[rnd_below(sizeof(chars) - 1)];
    buf[len] = '\0';
    if (strcmp(buf, ".") == 0 || strcmp(buf, "..") == 0)
        buf[0] = 'x'; /* the only ids made of valid characters that are refused */
}

/* An event name the decoder accepts: printable ASCII (quotes and backslashes
 * included, which need escapes) or UTF-8, never empty. */
static void random_event(char *buf, char first)
{
    static const char *const extras[] = {"", "\"q\"", "back\\slash", "caf\xc3\xa9", "/", "~"};
    snprintf(buf, KS_NAME_MAX, "%c%u%s", first, rnd_below(1000),
             extras[rnd_below(sizeof(extras) / sizeof(extras[0]))]);
}

static char (*random_events(uint32_t n, char first))[KS_NAME_MAX]
{
    if (n == 0)
        return NULL;
    char(*names)[KS_NAME_MAX] = calloc(n, KS_NAME_MAX);
    assert_non_null(names);
    for (uint32_t i = 0; i < n; i++)
        random_event(names[i], first);
    return names;
}

/* A request the decoder accepts, every optional member drawn at random. */
static ks_vm_request *random_valid_request(void)
{
    ks_vm_request *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    random_id(r->name, sizeof(r->name));
    if (rand() % 2) {
        r->n_any = 1 + rnd_below(KS_VM_MAX_VCPUS);
    } else {
        r->n_performance = rnd_below(300);
        r->n_efficiency = rnd_below(300);
        r->n_any = rand() % 2 ? rnd_below(300) : 0;
        if (ks_vm_request_vcpus(r) == 0)
            r->n_efficiency = 1;
    }
    r->memory_mib = rand() % 4 ? 1 + rnd_below(1u << 20) : (UINT64_C(1) << 32);
    unsigned nf = (unsigned)ks_feature_count();
    int density = 1 + rand() % 40;
    for (unsigned f = 0; rand() % 3 && f < nf; f++) {
        if (rand() % density == 0)
            ks_featset_set(&r->required, f);
        else if (rand() % (2 * density) == 0)
            ks_featset_set(&r->forbidden, f);
    }
    if (rand() % 2)
        random_id(r->pool, sizeof(r->pool));
    if (rand() % 2)
        random_id(r->host, sizeof(r->host));
    if (rand() % 2)
        random_id(r->anti_affinity_group, sizeof(r->anti_affinity_group));
    r->min_mhz = rand() % 3 ? rnd_below(1000001) : (rand() % 2 ? 0 : 1000000);
    r->placement = (uint8_t)rnd_below(KS_PLACE__COUNT);
    r->numa = (uint8_t)rnd_below(KS_NUMA__COUNT);
    r->smt = (uint8_t)rnd_below(KS_SMT__COUNT);
    r->pmu.enabled = rand() % 2;
    /* distinct first letters: no event both allowed and denied */
    r->pmu.n_allow = rand() % 2 ? rnd_below(5) : 0;
    r->pmu.allow_events = random_events(r->pmu.n_allow, 'a');
    r->pmu.n_deny = rand() % 2 ? rnd_below(5) : 0;
    r->pmu.deny_events = random_events(r->pmu.n_deny, 'd');
    return r;
}

/* Values no decoder produces but a caller's struct may hold: both writers
 * must still agree (the text writer by falling back where needed). */
static void make_edge(ks_vm_request *r, int which)
{
    switch (which) {
    case 0:
        r->n_performance = r->n_efficiency = 0;
        r->n_any = UINT32_MAX;
        r->memory_mib = UINT64_MAX; /* clamped to INT64_MAX by both */
        r->min_mhz = UINT32_MAX;
        break;
    case 1:
        r->n_performance = UINT32_MAX;
        r->n_efficiency = 0;
        r->n_any = 0;
        r->memory_mib = (uint64_t)INT64_MAX;
        break;
    case 2:
        r->n_performance = r->n_efficiency = r->n_any = 0; /* "vcpus":0 */
        r->memory_mib = 0;
        r->min_mhz = 0;
        break;
    case 3:
        r->name[0] = '\0'; /* the name is always written, even empty */
        break;
    case 4:
        snprintf(r->name, sizeof(r->name), "say \"hi\"\\\n\t\x01");
        break;
    case 5:
        snprintf(r->pool, sizeof(r->pool), "caf\xc3\xa9");
        break;
    case 6:
        snprintf(r->host, sizeof(r->host), "bad\xff\xfeutf8");
        break;
    case 7:
        snprintf(r->anti_affinity_group, sizeof(r->anti_affinity_group), "del\x7f");
        break;
    case 8:
        memset(r->name, 'n', sizeof(r->name)); /* no NUL: bounded read */
        memset(r->pool, 'p', sizeof(r->pool));
        break;
    case 9:
        r->placement = 200; /* "unknown" */
        r->numa = KS_NUMA__COUNT;
        r->smt = 255;
        break;
    case 10:
        free(r->pmu.allow_events);
        r->pmu.allow_events = NULL;
        r->pmu.n_allow = 7; /* no array: written as [] by both */
        free(r->pmu.deny_events);
        r->pmu.deny_events = random_events(2, 'd');
        r->pmu.n_deny = 2;
        r->pmu.deny_events[1][0] = '\0'; /* empty event name */
        break;
    case 11:
        free(r->pmu.allow_events);
        r->pmu.allow_events = random_events(1, 'a');
        r->pmu.n_allow = 1;
        memset(r->pmu.allow_events[0], 'e', KS_NAME_MAX); /* no NUL */
        break;
    case 12:
        free(r->pmu.deny_events);
        r->pmu.deny_events = random_events(1, 'd');
        r->pmu.n_deny = 1;
        snprintf(r->pmu.deny_events[0], KS_NAME_MAX, "ctl\x1f\xe2\x82\xac");
        break;
    default:
        /* every feature bit, also the ones past the catalogue ("?") */
        for (unsigned f = 0; f < KS_FEATSET_BITS; f++)
            ks_featset_set(which % 2 ? &r->required : &r->forbidden, f);
        break;
    }
}

/* ks_vm_request_to_text writes exactly what jansson writes, and what it
 * writes for a valid request decodes back to that request. */
static void test_vm__request_text_is_canonical(void **state)
{
    (void)state;
    srand(11);
    for (int round = 0; round < 600; round++) {
        ks_vm_request *r = random_valid_request();
        assert_request_text_is_canonical(r);
        assert_request_text_round_trips(r);
        if (round % 2) {
            make_edge(r, (round / 2) % 16);
            assert_request_text_is_canonical(r);
        }
        ks_vm_request_free(r);
    }
}

static void assert_request_text(const ks_vm_request *r, const char *want)
{
    char *got = ks_vm_request_to_text(r);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    assert_request_text_is_canonical(r);
}

/* The exact bytes, spelled out: member order, omitted members, both forms of
 * "vcpus", and the escapes of the jansson fallback. */
static void test_vm__request_text_examples(void **state)
{
    (void)state;
    assert_null(ks_vm_request_to_text(NULL));

    ks_vm_request *r = decode_request("{\"name\":\"web-1\",\"vcpus\":4}");
    assert_request_text(r, "{\"forbidden_features\":[],\"memory_mib\":1024,\"min_mhz\":0,"
                           "\"name\":\"web-1\",\"numa\":\"preferred\",\"placement\":\"pack\","
                           "\"pmu\":{\"allow_events\":[],\"deny_events\":[],\"enabled\":false},"
                           "\"required_features\":[],\"smt\":\"allow\",\"vcpus\":4}");
    ks_vm_request_free(r);

    r = decode_request(
        "{\"name\":\"db.7\",\"vcpus\":{\"performance\":6,\"efficiency\":2,\"any\":1},"
        "\"memory_mib\":16384,\"required_features\":[\"avx2\"],\"forbidden_features\":[\"aes\"],"
        "\"pool\":\"gen12\",\"host\":\"h-0042\",\"anti_affinity_group\":\"db\",\"min_mhz\":3000,"
        "\"placement\":\"spread\",\"numa\":\"strict\",\"smt\":\"isolate\","
        "\"pmu\":{\"enabled\":true,\"allow_events\":[\"instructions\",\"cycles\"],"
        "\"deny_events\":[\"offcore_response\"]}}");
    const char *full = "{\"anti_affinity_group\":\"db\",\"forbidden_features\":[\"aes\"],"
                       "\"host\":\"h-0042\",\"memory_mib\":16384,\"min_mhz\":3000,"
                       "\"name\":\"db.7\",\"numa\":\"strict\",\"placement\":\"spread\","
                       "\"pmu\":{\"allow_events\":[\"instructions\",\"cycles\"],"
                       "\"deny_events\":[\"offcore_response\"],\"enabled\":true},"
                       "\"pool\":\"gen12\",\"required_features\":[\"avx2\"],\"smt\":\"isolate\","
                       "\"vcpus\":{\"any\":1,\"efficiency\":2,\"performance\":6}}";
    assert_request_text(r, full);
    assert_request_text_round_trips(r);

    /* no "any" in the object form when it is 0 */
    r->n_any = 0;
    r->n_efficiency = 0;
    char *text = ks_vm_request_to_text(r);
    assert_non_null(strstr(text, ",\"vcpus\":{\"efficiency\":0,\"performance\":6}}"));
    free(text);
    assert_request_text_is_canonical(r);

    /* an event name needing escapes goes through jansson */
    snprintf(r->pmu.allow_events[1], KS_NAME_MAX, "a\"b\\c\n\xc3\xa9");
    text = ks_vm_request_to_text(r);
    assert_non_null(strstr(text, "[\"instructions\",\"a\\\"b\\\\c\\n\xc3\xa9\"]"));
    free(text);
    assert_request_text_is_canonical(r);
    assert_request_text_round_trips(r);
    ks_vm_request_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vm__enum_strings),
        cmocka_unit_test(test_vm__request_minimal_defaults),
        cmocka_unit_test(test_vm__request_full_and_round_trip),
        cmocka_unit_test(test_vm__request_invalid),
        cmocka_unit_test(test_vm__plan_round_trip),
        cmocka_unit_test(test_vm__plan_invalid),
        cmocka_unit_test(test_vm__plan_text_is_canonical),
        cmocka_unit_test(test_vm__never_crashes),
        cmocka_unit_test(test_vm__schema_doc_examples),
        cmocka_unit_test(test_vm__request_text_is_canonical),
        cmocka_unit_test(test_vm__request_text_examples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
