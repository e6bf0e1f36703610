/*
 * test_ks_bitset.c - ks_featset: set operations, word edges (bits 0, 63, 64,
 * 511), iteration and hashing.
 */
#include "ks_test.h"

#include "ks_bitset.h"

static const unsigned k_edges[] = {0, 1, 63, 64, 65, 127, 128, 255, 256, 383, 448, 510, 511};
#define N_EDGES (sizeof k_edges / sizeof k_edges[0])

static ks_featset of_bits(const unsigned *bits, size_t n)
{
    ks_featset s;
    ks_featset_clear(&s);
    for (size_t i = 0; i < n; i++)
        ks_featset_set(&s, bits[i]);
    return s;
}

static void test_bitset__set_test_unset_edges(void **state)
{
    (void)state;
    assert_int_equal(KS_FEATSET_BITS, 512);
    assert_int_equal(KS_FEATSET_WORDS * 64, KS_FEATSET_BITS);
    for (size_t i = 0; i < N_EDGES; i++) {
        unsigned b = k_edges[i];
        ks_featset s;
        ks_featset_clear(&s);
        assert_true(ks_featset_empty(&s));
        ks_featset_set(&s, b);
        assert_true(ks_featset_test(&s, b));
        assert_int_equal(ks_featset_popcount(&s), 1);
        /* exactly one word holds exactly that bit */
        for (unsigned w = 0; w < KS_FEATSET_WORDS; w++)
            assert_true(s.w[w] == (w == b / 64 ? UINT64_C(1) << (b % 64) : 0));
        if (b > 0)
            assert_false(ks_featset_test(&s, b - 1));
        if (b < KS_FEATSET_BITS - 1)
            assert_false(ks_featset_test(&s, b + 1));
        ks_featset_set(&s, b); /* idempotent */
        assert_int_equal(ks_featset_popcount(&s), 1);
        ks_featset_unset(&s, b);
        assert_false(ks_featset_test(&s, b));
        assert_true(ks_featset_empty(&s));
    }
}

static void test_bitset__out_of_range_is_ignored(void **state)
{
    (void)state;
    ks_featset s;
    ks_featset_clear(&s);
    ks_featset_set(&s, KS_FEATSET_BITS);
    ks_featset_set(&s, 100000);
    ks_featset_set(&s, UINT32_MAX);
    assert_true(ks_featset_empty(&s));
    assert_false(ks_featset_test(&s, KS_FEATSET_BITS));
    assert_false(ks_featset_test(&s, UINT32_MAX));
    ks_featset_set(&s, 511);
    ks_featset_unset(&s, KS_FEATSET_BITS);
    assert_true(ks_featset_test(&s, 511));
}

static void test_bitset__set_operations(void **state)
{
    (void)state;
    const unsigned abits[] = {0, 63, 64, 200, 511};
    const unsigned bbits[] = {63, 65, 200, 510};
    ks_featset a = of_bits(abits, 5), b = of_bits(bbits, 4), out;

    ks_featset_and(&out, &a, &b);
    const unsigned and_bits[] = {63, 200};
    ks_featset want = of_bits(and_bits, 2);
    assert_true(ks_featset_equal(&out, &want));

    ks_featset_or(&out, &a, &b);
    const unsigned or_bits[] = {0, 63, 64, 65, 200, 510, 511};
    want = of_bits(or_bits, 7);
    assert_true(ks_featset_equal(&out, &want));
    assert_int_equal(ks_featset_popcount(&out), 7);

    ks_featset_andnot(&out, &a, &b);
    const unsigned andnot_bits[] = {0, 64, 511};
    want = of_bits(andnot_bits, 3);
    assert_true(ks_featset_equal(&out, &want));
    assert_int_equal(ks_featset_count_andnot(&a, &b), 3);
    assert_int_equal(ks_featset_count_andnot(&b, &a), 2);

    /* aliasing: out == a */
    ks_featset c = a;
    ks_featset_and(&c, &c, &b);
    want = of_bits(and_bits, 2);
    assert_true(ks_featset_equal(&c, &want));
    c = a;
    ks_featset_or(&c, &c, &b);
    assert_int_equal(ks_featset_popcount(&c), 7);
    c = a;
    ks_featset_andnot(&c, &c, &c);
    assert_true(ks_featset_empty(&c));

    assert_true(ks_featset_intersects(&a, &b));
    const unsigned far[] = {1, 511 - 128};
    ks_featset d = of_bits(far, 2);
    assert_false(ks_featset_intersects(&a, &d));
    ks_featset empty;
    ks_featset_clear(&empty);
    assert_false(ks_featset_intersects(&a, &empty));
}

static void test_bitset__subset_and_equal(void **state)
{
    (void)state;
    const unsigned big[] = {0, 63, 64, 300, 511};
    const unsigned small[] = {63, 511};
    const unsigned other[] = {63, 510};
    ks_featset a = of_bits(big, 5), s = of_bits(small, 2), o = of_bits(other, 2), empty;
    ks_featset_clear(&empty);
    assert_true(ks_featset_subset(&s, &a));
    assert_false(ks_featset_subset(&a, &s));
    assert_false(ks_featset_subset(&o, &a));
    assert_true(ks_featset_subset(&empty, &a));
    assert_true(ks_featset_subset(&empty, &empty));
    assert_true(ks_featset_subset(&a, &a));
    assert_false(ks_featset_subset(&a, &empty));
    ks_featset copy = a;
    assert_true(ks_featset_equal(&copy, &a));
    ks_featset_unset(&copy, 511);
    assert_false(ks_featset_equal(&copy, &a));
    assert_false(ks_featset_equal(&s, &o));
    assert_true(ks_featset_equal(&empty, &empty));
}

static void test_bitset__iteration(void **state)
{
    (void)state;
    ks_featset s = of_bits(k_edges, N_EDGES);
    size_t i = 0;
    for (int b = ks_featset_next(&s, 0); b >= 0; b = ks_featset_next(&s, (unsigned)b + 1)) {
        assert_true(i < N_EDGES);
        assert_int_equal(b, (int)k_edges[i]);
        i++;
    }
    assert_int_equal(i, N_EDGES);
    /* starting points inside words and at the edges */
    assert_int_equal(ks_featset_next(&s, 2), 63);
    assert_int_equal(ks_featset_next(&s, 63), 63);
    assert_int_equal(ks_featset_next(&s, 66), 127);
    assert_int_equal(ks_featset_next(&s, 449), 510);
    assert_int_equal(ks_featset_next(&s, 511), 511);
    assert_int_equal(ks_featset_next(&s, 512), -1);
    assert_int_equal(ks_featset_next(&s, UINT32_MAX), -1);
    ks_featset empty;
    ks_featset_clear(&empty);
    assert_int_equal(ks_featset_next(&empty, 0), -1);
    ks_featset only_last;
    ks_featset_clear(&only_last);
    ks_featset_set(&only_last, 511);
    assert_int_equal(ks_featset_next(&only_last, 0), 511);
    ks_featset full;
    for (int w = 0; w < KS_FEATSET_WORDS; w++)
        full.w[w] = ~UINT64_C(0);
    assert_int_equal(ks_featset_popcount(&full), KS_FEATSET_BITS);
    unsigned n = 0;
    for (int b = ks_featset_next(&full, 0); b >= 0; b = ks_featset_next(&full, (unsigned)b + 1))
        n++;
    assert_int_equal(n, KS_FEATSET_BITS);
}

static void test_bitset__hash(void **state)
{
    (void)state;
    ks_featset a = of_bits(k_edges, N_EDGES), b;
    /* same bits set in another order */
    ks_featset_clear(&b);
    for (size_t i = N_EDGES; i-- > 0;)
        ks_featset_set(&b, k_edges[i]);
    assert_true(ks_featset_equal(&a, &b));
    assert_true(ks_featset_hash(&a) == ks_featset_hash(&b));
    /* flipping any single bit changes the hash (FNV over every byte) */
    uint64_t h = ks_featset_hash(&a);
    for (unsigned bit = 0; bit < KS_FEATSET_BITS; bit++) {
        ks_featset c = a;
        if (ks_featset_test(&c, bit))
            ks_featset_unset(&c, bit);
        else
            ks_featset_set(&c, bit);
        if (ks_featset_hash(&c) == h)
            fail_msg("flipping bit %u left the hash unchanged", bit);
    }
    /* empty set: FNV-1a of 64 zero bytes, stable across builds */
    ks_featset empty;
    ks_featset_clear(&empty);
    uint64_t e = UINT64_C(14695981039346656037);
    for (int i = 0; i < KS_FEATSET_WORDS * 8; i++)
        e *= UINT64_C(1099511628211);
    assert_true(ks_featset_hash(&empty) == e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bitset__set_test_unset_edges),
        cmocka_unit_test(test_bitset__out_of_range_is_ignored),
        cmocka_unit_test(test_bitset__set_operations),
        cmocka_unit_test(test_bitset__subset_and_equal),
        cmocka_unit_test(test_bitset__iteration),
        cmocka_unit_test(test_bitset__hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
