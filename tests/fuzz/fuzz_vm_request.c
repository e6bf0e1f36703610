/*
 * fuzz_vm_request.c - the VM request decoder (ks_vm_request_from_json), the
 * body of POST /v1/vms.
 *
 * Input: the bytes of a request body (parsed with jansson as the API does).
 * Properties:
 *   - a refused request yields a ks_err with a message and leaves *out alone;
 *   - an accepted one keeps the documented invariants (1..KS_VM_MAX_VCPUS vCPUs,
 *     valid ids or "", disjoint required/forbidden, disjoint PMU lists, enums in
 *     range);
 *   - round trip: encode -> text -> decode succeeds, gives the same fields and
 *     re-encodes to the same JSON.
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

static void check_id_or_empty(const char *s, const char *what)
{
    KS_FUZZ_CHECK(s[0] == '\0' || ks_id_valid(s), "%s '%s' is not a valid id", what, s);
}

static void check_invariants(const ks_vm_request *r)
{
    uint32_t n = ks_vm_request_vcpus(r);
    KS_FUZZ_CHECK(n >= 1 && n <= KS_VM_MAX_VCPUS, "vcpus total %u", n);
    KS_FUZZ_CHECK(ks_id_valid(r->name), "name '%s'", r->name);
    check_id_or_empty(r->pool, "pool");
    check_id_or_empty(r->host, "host");
    check_id_or_empty(r->anti_affinity_group, "anti_affinity_group");
    KS_FUZZ_CHECK(r->memory_mib >= 1, "memory_mib 0 accepted");
    KS_FUZZ_CHECK(!ks_featset_intersects(&r->required, &r->forbidden),
                  "required and forbidden overlap");
    KS_FUZZ_CHECK(r->placement < KS_PLACE__COUNT && r->numa < KS_NUMA__COUNT &&
                      r->smt < KS_SMT__COUNT,
                  "enum out of range");
    KS_FUZZ_CHECK(r->pmu.n_allow == 0 || r->pmu.allow_events, "allow count without array");
    KS_FUZZ_CHECK(r->pmu.n_deny == 0 || r->pmu.deny_events, "deny count without array");
    for (uint32_t i = 0; i < r->pmu.n_allow; i++)
        for (uint32_t j = 0; j < r->pmu.n_deny; j++)
            KS_FUZZ_CHECK(strcmp(r->pmu.allow_events[i], r->pmu.deny_events[j]) != 0,
                          "event '%s' allowed and denied", r->pmu.allow_events[i]);
}

static void check_same(const ks_vm_request *a, const ks_vm_request *b)
{
    KS_FUZZ_CHECK(strcmp(a->name, b->name) == 0, "name changed");
    KS_FUZZ_CHECK(a->n_performance == b->n_performance && a->n_efficiency == b->n_efficiency &&
                      a->n_any == b->n_any,
                  "vcpus changed (%u/%u/%u -> %u/%u/%u)", a->n_performance, a->n_efficiency,
                  a->n_any, b->n_performance, b->n_efficiency, b->n_any);
    KS_FUZZ_CHECK(a->memory_mib == b->memory_mib, "memory changed");
    KS_FUZZ_CHECK(ks_featset_equal(&a->required, &b->required), "required changed");
    KS_FUZZ_CHECK(ks_featset_equal(&a->forbidden, &b->forbidden), "forbidden changed");
    KS_FUZZ_CHECK(strcmp(a->pool, b->pool) == 0 && strcmp(a->host, b->host) == 0 &&
                      strcmp(a->anti_affinity_group, b->anti_affinity_group) == 0,
                  "pool/host/group changed");
    KS_FUZZ_CHECK(a->min_mhz == b->min_mhz && a->placement == b->placement && a->numa == b->numa &&
                      a->smt == b->smt,
                  "scalars changed");
    KS_FUZZ_CHECK(a->pmu.enabled == b->pmu.enabled && a->pmu.n_allow == b->pmu.n_allow &&
                      a->pmu.n_deny == b->pmu.n_deny,
                  "pmu changed");
    for (uint32_t i = 0; i < a->pmu.n_allow; i++)
        KS_FUZZ_CHECK(strcmp(a->pmu.allow_events[i], b->pmu.allow_events[i]) == 0,
                      "allow_events[%u] changed", i);
    for (uint32_t i = 0; i < a->pmu.n_deny; i++)
        KS_FUZZ_CHECK(strcmp(a->pmu.deny_events[i], b->pmu.deny_events[i]) == 0,
                      "deny_events[%u] changed", i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > KS_FUZZ_MAX_INPUT)
        return 0;
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return 0;
    ks_vm_request *r = NULL;
    ks_err err = {0};
    ks_code rc = ks_vm_request_from_json(&r, doc, &err);
    json_decref(doc);
    if (rc != KS_OK) {
        KS_FUZZ_CHECK(r == NULL, "*out written on failure");
        KS_FUZZ_CHECK(err.code == rc && err.msg[0] != '\0', "error without a message (%d)", rc);
        KS_FUZZ_CHECK(rc == KS_EINVAL || rc == KS_ENOMEM, "unexpected code %s", ks_code_slug(rc));
        return 0;
    }
    check_invariants(r);

    json_t *j1 = ks_vm_request_to_json(r);
    KS_FUZZ_CHECK(j1 != NULL, "encoder failed");
    char *text = json_dumps(j1, JSON_COMPACT);
    KS_FUZZ_CHECK(text != NULL, "json_dumps failed");
    json_t *doc2 = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    KS_FUZZ_CHECK(doc2 != NULL, "encoder wrote invalid JSON: %s", jerr.text);
    ks_vm_request *r2 = NULL;
    rc = ks_vm_request_from_json(&r2, doc2, &err);
    KS_FUZZ_CHECK(rc == KS_OK, "re-encoded request refused: %s: %s\n%s", err.field, err.msg, text);
    check_invariants(r2);
    check_same(r, r2);
    json_t *j2 = ks_vm_request_to_json(r2);
    KS_FUZZ_CHECK(j2 != NULL && json_equal(j1, j2), "second encoding differs\n%s", text);

    json_decref(j2);
    ks_vm_request_free(r2);
    json_decref(doc2);
    free(text);
    json_decref(j1);
    ks_vm_request_free(r);
    return 0;
}
