/*
 * fuzz_report.c - the host report decoders (ks_report_parse, ks_report_from_json,
 * ks_report_parse_header).
 *
 * Input: the bytes of a PUT /v1/hosts/{id}/report body.  Properties:
 *   - a refused document yields a ks_err with a message and leaves *out alone;
 *   - an accepted report keeps the decoder's invariants (CPUs sorted by unique
 *     id, cache CPU lists ascending and existing, usable within native, cross
 *     indices in range);
 *   - round trip: encode -> text -> decode succeeds and re-encodes to the same
 *     JSON; ks_report_dup() encodes the same too;
 *   - ks_report_derive_state() on an accepted report gives a report the decoder
 *     accepts again, with usable within native minus the defects, and derive is
 *     idempotent;
 *   - ks_report_parse_header() never fails on an accepted report and agrees
 *     with it on host, kinds, numa and pmu.
 */
#include <string.h>

#include <jansson.h>

#include "ks_fuzz.h"
#include "ks_report.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Builds the catalogue index once, outside the timed inputs. */
    unsigned id;
    (void)ks_feature_lookup("sse2", &id, NULL);
    return 0;
}

static void check_invariants(const ks_report *r)
{
    KS_FUZZ_CHECK(r->schema == KS_REPORT_SCHEMA, "schema %d", r->schema);
    KS_FUZZ_CHECK(r->n_cpus == 0 || r->cpus != NULL, "n_cpus %u without an array", r->n_cpus);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *c = &r->cpus[i];
        KS_FUZZ_CHECK(i == 0 || r->cpus[i - 1].id < c->id, "cpus not sorted/unique at %u", i);
        KS_FUZZ_CHECK(ks_report_find_cpu(r, c->id) == c, "find_cpu(%d) misses", c->id);
        KS_FUZZ_CHECK(ks_featset_subset(&c->usable, &c->native), "cpu %d usable not in native",
                      c->id);
        KS_FUZZ_CHECK(c->kind < 0 || (uint32_t)c->kind < r->n_kinds, "cpu %d kind %d", c->id,
                      c->kind);
        KS_FUZZ_CHECK(c->l2_group < 0 || (uint32_t)c->l2_group < r->n_caches, "cpu %d l2 %d", c->id,
                      c->l2_group);
        KS_FUZZ_CHECK(c->l3_group < 0 || (uint32_t)c->l3_group < r->n_caches, "cpu %d l3 %d", c->id,
                      c->l3_group);
        KS_FUZZ_CHECK(c->state < KS_CPU_STATE__COUNT, "cpu %d state %u", c->id, c->state);
        KS_FUZZ_CHECK(c->n_defects <= KS_REPORT_MAX_DEFECTS, "cpu %d has %u defects", c->id,
                      c->n_defects);
    }
    for (uint32_t i = 0; i < r->n_caches; i++) {
        const ks_cache *k = &r->caches[i];
        for (uint32_t j = 0; j < k->n_cpus; j++) {
            KS_FUZZ_CHECK(j == 0 || k->cpus[j - 1] < k->cpus[j], "cache %u cpus unsorted", i);
            KS_FUZZ_CHECK(ks_report_find_cpu(r, k->cpus[j]) != NULL, "cache %u cpu %d unknown", i,
                          k->cpus[j]);
        }
    }
    for (uint32_t i = 1; i < r->n_kinds; i++)
        KS_FUZZ_CHECK(r->kinds[i - 1].efficiency_rank <= r->kinds[i].efficiency_rank,
                      "kinds out of order at %u", i);
}

/* Encodes r, decodes the text again, and checks both encodings match.  Returns
 * the first encoding (new reference). */
static json_t *round_trip(const ks_report *r, const char *what)
{
    json_t *j1 = ks_report_to_json(r);
    KS_FUZZ_CHECK(j1 != NULL, "%s: encoder failed", what);
    char *text = json_dumps(j1, JSON_COMPACT);
    KS_FUZZ_CHECK(text != NULL, "%s: json_dumps failed", what);
    ks_report *r2 = NULL;
    ks_err err = {0};
    ks_code rc = ks_report_parse(&r2, text, strlen(text), &err);
    KS_FUZZ_CHECK(rc == KS_OK, "%s: re-encoded report refused: %s: %s\n%s", what, err.field,
                  err.msg, text);
    check_invariants(r2);
    json_t *j2 = ks_report_to_json(r2);
    KS_FUZZ_CHECK(j2 != NULL && json_equal(j1, j2), "%s: second encoding differs\n%s", what, text);
    json_decref(j2);
    ks_report_free(r2);
    free(text);
    return j1;
}

/*
 * ks_report_parse_header() skips the per-CPU members lexically; it is meant for
 * texts accepted before, but it reads stored bytes, so on any text it must
 * fail cleanly or succeed, and on a text the full decoder accepts it must
 * succeed with the same host, kinds, numa and pmu and no CPUs.  `full` is the
 * full decode (NULL when refused).
 */
static void check_header(const uint8_t *data, size_t size, const ks_report *full)
{
    ks_report *h = NULL;
    ks_err err = {0};
    ks_code rc = ks_report_parse_header(&h, (const char *)data, size, &err);
    if (rc != KS_OK) {
        KS_FUZZ_CHECK(h == NULL && err.msg[0] != '\0', "parse_header: bad failure");
        KS_FUZZ_CHECK(full == NULL, "parse_header refuses an accepted report: %s: %s", err.field,
                      err.msg);
        return;
    }
    KS_FUZZ_CHECK(h != NULL && h->n_cpus == 0, "parse_header returned cpus");
    if (full) {
        json_t *a = ks_report_to_json(full), *b = ks_report_to_json(h);
        KS_FUZZ_CHECK(a && b, "encoder failed");
        static const char *const keys[] = {"schema", "host", "kinds", "numa", "pmu"};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            KS_FUZZ_CHECK(json_equal(json_object_get(a, keys[i]), json_object_get(b, keys[i])),
                          "parse_header decodes '%s' differently", keys[i]);
        json_decref(a);
        json_decref(b);
    } else {
        json_t *b = ks_report_to_json(h); /* whatever it accepted must encode */
        KS_FUZZ_CHECK(b != NULL, "encoder failed on a parse_header result");
        json_decref(b);
    }
    ks_report_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > KS_FUZZ_MAX_INPUT)
        return 0;
    ks_report *r = NULL;
    ks_err err = {0};
    ks_code rc = ks_report_parse(&r, (const char *)data, size, &err);
    check_header(data, size, rc == KS_OK ? r : NULL);
    if (rc != KS_OK) {
        KS_FUZZ_CHECK(r == NULL, "*out written on failure");
        KS_FUZZ_CHECK(err.code == rc && err.msg[0] != '\0', "error without a message (%d)", rc);
        KS_FUZZ_CHECK(rc == KS_EINVAL || rc == KS_ENOMEM, "unexpected code %s", ks_code_slug(rc));
        return 0;
    }
    KS_FUZZ_CHECK(r != NULL, "KS_OK without a report");
    check_invariants(r);
    json_t *j = round_trip(r, "decoded");

    ks_report *copy = NULL;
    KS_FUZZ_CHECK(ks_report_dup(&copy, r, NULL) == KS_OK, "dup failed");
    json_t *jc = ks_report_to_json(copy);
    KS_FUZZ_CHECK(jc != NULL && json_equal(j, jc), "dup encodes differently");
    json_decref(jc);

    /* Derived state: what the agent would send after applying its defects. */
    ks_report_derive_state(copy);
    for (uint32_t i = 0; i < copy->n_cpus; i++) {
        const ks_cpu *c = &copy->cpus[i];
        KS_FUZZ_CHECK(ks_featset_subset(&c->usable, &c->native), "derived usable not native");
        KS_FUZZ_CHECK(!ks_featset_intersects(&c->usable, &c->defective),
                      "derived usable holds a defective feature (cpu %d)", c->id);
        if (c->state == KS_CPU_OFFLINE || c->state == KS_CPU_QUARANTINED)
            KS_FUZZ_CHECK(ks_featset_empty(&c->usable), "cpu %d %s but usable", c->id,
                          ks_cpu_state_to_str((ks_cpu_state)c->state));
    }
    json_t *jd = round_trip(copy, "derived");
    ks_report_derive_state(copy);
    json_t *jd2 = ks_report_to_json(copy);
    KS_FUZZ_CHECK(jd2 != NULL && json_equal(jd, jd2), "derive_state is not idempotent");
    json_decref(jd2);
    json_decref(jd);
    ks_report_free(copy);
    json_decref(j);
    ks_report_free(r);
    return 0;
}
