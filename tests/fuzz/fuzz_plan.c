/*
 * fuzz_plan.c - the vCPU plan decoders (ks_plan_from_json, ks_plan_parse): the
 * body of the agent's PUT /v1/vms/{name}/plan.
 *
 * Input: the bytes of a plan document.  Properties:
 *   - a refused plan yields a ks_err with a message and leaves *out alone;
 *   - an accepted plan keeps the invariants of ks_vm.c (vCPU i at index i, no
 *     host CPU twice, coordinates inside the topology whose product covers
 *     every vCPU, enable/disable disjoint, every vCPU in exactly the NUMA node
 *     its numa_node names when there are nodes);
 *   - round trip: encode -> text -> decode succeeds and re-encodes to the same
 *     JSON; ks_plan_dup() encodes the same too;
 *   - ks_plan_parse() (a text lexer plus a cache) agrees with ks_plan_from_json().
 */
#include <string.h>

#include <jansson.h>

#include "ks_fuzz.h"
#include "ks_vm.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    unsigned id;
    (void)ks_feature_lookup("sse2", &id, NULL);
    return 0;
}

static void check_invariants(const ks_plan *p)
{
    KS_FUZZ_CHECK(p->n_vcpus >= 1 && p->n_vcpus <= KS_VM_MAX_VCPUS && p->vcpus, "n_vcpus %u",
                  p->n_vcpus);
    KS_FUZZ_CHECK(ks_id_valid(p->vm) && ks_id_valid(p->host), "vm/host ids");
    KS_FUZZ_CHECK(p->generation >= 1, "generation 0 accepted");
    uint64_t slots = (uint64_t)p->topology.sockets * p->topology.dies * p->topology.clusters *
                     p->topology.cores * p->topology.threads;
    KS_FUZZ_CHECK(slots >= p->n_vcpus, "topology has %llu slots for %u vcpus",
                  (unsigned long long)slots, p->n_vcpus);
    KS_FUZZ_CHECK(!ks_featset_intersects(&p->visible, &p->disable), "enable/disable overlap");
    KS_FUZZ_CHECK(p->cpu_model[0] != '\0', "empty cpu model");
    for (uint32_t i = 0; i < p->n_vcpus; i++) {
        const ks_plan_vcpu *v = &p->vcpus[i];
        KS_FUZZ_CHECK(v->id == (int32_t)i, "vcpus[%u].id = %d", i, v->id);
        KS_FUZZ_CHECK(v->host_cpu >= 0 && v->host_cpu < KS_REPORT_MAX_CPUS, "host_cpu %d",
                      v->host_cpu);
        for (uint32_t j = 0; j < i; j++)
            KS_FUZZ_CHECK(p->vcpus[j].host_cpu != v->host_cpu, "host cpu %d twice", v->host_cpu);
        KS_FUZZ_CHECK(
            (uint32_t)v->socket < p->topology.sockets && (uint32_t)v->die < p->topology.dies &&
                (uint32_t)v->cluster < p->topology.clusters &&
                (uint32_t)v->core < p->topology.cores && (uint32_t)v->thread < p->topology.threads,
            "vcpu %u outside the topology", i);
        KS_FUZZ_CHECK(v->kind_class < KS_KIND_CLASS__COUNT, "kind %u", v->kind_class);
    }
    for (uint32_t i = 0; i < p->n_numa; i++) {
        const ks_plan_numa *n = &p->numa[i];
        for (uint32_t j = 0; j < n->n_vcpus; j++) {
            int32_t v = n->vcpus[j];
            KS_FUZZ_CHECK(v >= 0 && (uint32_t)v < p->n_vcpus, "numa[%u] vcpu %d", i, v);
            KS_FUZZ_CHECK(p->vcpus[v].numa_node == n->node, "vcpu %d numa_node %d vs node %d", v,
                          p->vcpus[v].numa_node, n->node);
        }
    }
}

static json_t *round_trip(const ks_plan *p)
{
    json_t *j1 = ks_plan_to_json(p);
    KS_FUZZ_CHECK(j1 != NULL, "encoder failed");
    char *text = json_dumps(j1, JSON_COMPACT);
    KS_FUZZ_CHECK(text != NULL, "json_dumps failed");
    json_error_t jerr;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    KS_FUZZ_CHECK(doc != NULL, "encoder wrote invalid JSON: %s", jerr.text);
    ks_plan *p2 = NULL;
    ks_err err = {0};
    ks_code rc = ks_plan_from_json(&p2, doc, &err);
    KS_FUZZ_CHECK(rc == KS_OK, "re-encoded plan refused: %s: %s\n%s", err.field, err.msg, text);
    check_invariants(p2);
    json_t *j2 = ks_plan_to_json(p2);
    KS_FUZZ_CHECK(j2 != NULL && json_equal(j1, j2), "second encoding differs\n%s", text);
    json_decref(j2);
    ks_plan_free(p2);
    json_decref(doc);
    free(text);
    return j1;
}

/*
 * ks_plan_parse() promises the result and errors of ks_plan_from_json() on the
 * same text, with or without a cache (the cache lives across inputs, as in
 * kintsugid, so cached feature lists are hit by later inputs).  `p`/`rc`/`err`
 * are the reference decode; rc = -1 when jansson does not accept the text.
 */
static void check_parse(const uint8_t *data, size_t size, const ks_plan *p, int rc,
                        const ks_err *err)
{
    /* Finding plan-parse-dup-keys (docs/reliability.md): with a cache, a
     * duplicate top-level "vcpus" is decoded from its first occurrence while
     * the reference takes the last.  Tolerated, when allowed, only for texts
     * with duplicate keys. */
    bool dup_known = false;
    if (rc >= 0) {
        json_t *strict = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
        dup_known = !strict && ks_fuzz_known("plan-parse-dup-keys");
        json_decref(strict);
    }
    static ks_plan_cache *cache;
    if (!cache)
        KS_FUZZ_CHECK(ks_plan_cache_new(&cache, NULL) == KS_OK, "cache");
    for (int with_cache = 0; with_cache < 2; with_cache++) {
        ks_plan *q = NULL;
        ks_err qerr = {0};
        ks_code qrc = ks_plan_parse(&q, (const char *)data, size, with_cache ? cache : NULL, &qerr);
        if (qrc != KS_OK)
            KS_FUZZ_CHECK(q == NULL && qerr.msg[0] != '\0', "plan_parse: bad failure");
        if (rc < 0) {
            KS_FUZZ_CHECK(qrc != KS_OK, "plan_parse (cache %d) accepts text jansson refuses",
                          with_cache);
        } else {
            if (dup_known && qrc != (ks_code)rc) {
                ks_plan_free(q);
                continue;
            }
            KS_FUZZ_CHECK(qrc == (ks_code)rc,
                          "plan_parse (cache %d) says %s (%s: %s), plan_from_json says %s (%s: %s)",
                          with_cache, ks_code_slug(qrc), qerr.field, qerr.msg,
                          ks_code_slug((ks_code)rc), err->field, err->msg);
            if (qrc == KS_OK) {
                json_t *a = ks_plan_to_json(p), *b = ks_plan_to_json(q);
                KS_FUZZ_CHECK(a && b && (json_equal(a, b) || dup_known),
                              "plan_parse (cache %d) decodes differently", with_cache);
                json_decref(a);
                json_decref(b);
            } else {
                KS_FUZZ_CHECK(dup_known || (strcmp(qerr.field, err->field) == 0 &&
                                            strcmp(qerr.msg, err->msg) == 0),
                              "plan_parse (cache %d) error '%s: %s' vs '%s: %s'", with_cache,
                              qerr.field, qerr.msg, err->field, err->msg);
            }
        }
        ks_plan_free(q);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > KS_FUZZ_MAX_INPUT)
        return 0;
    json_error_t jerr;
    /* Duplicate keys allowed (the last wins), as ks_plan_parse() parses. */
    json_t *doc = json_loadb((const char *)data, size, 0, &jerr);
    if (!doc) {
        check_parse(data, size, NULL, -1, NULL);
        return 0;
    }
    ks_plan *p = NULL;
    ks_err err = {0};
    ks_code rc = ks_plan_from_json(&p, doc, &err);
    json_decref(doc);
    check_parse(data, size, p, (int)rc, &err);
    if (rc != KS_OK) {
        KS_FUZZ_CHECK(p == NULL, "*out written on failure");
        KS_FUZZ_CHECK(err.code == rc && err.msg[0] != '\0', "error without a message (%d)", rc);
        KS_FUZZ_CHECK(rc == KS_EINVAL || rc == KS_ENOMEM, "unexpected code %s", ks_code_slug(rc));
        return 0;
    }
    check_invariants(p);
    json_t *j = round_trip(p);
    ks_plan *copy = NULL;
    KS_FUZZ_CHECK(ks_plan_dup(&copy, p, NULL) == KS_OK, "dup failed");
    json_t *jc = ks_plan_to_json(copy);
    KS_FUZZ_CHECK(jc != NULL && json_equal(j, jc), "dup encodes differently");
    json_decref(jc);
    ks_plan_free(copy);
    json_decref(j);
    ks_plan_free(p);
    return 0;
}
