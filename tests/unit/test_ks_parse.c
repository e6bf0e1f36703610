/* test_ks_parse.c - the checked number parsers (common/ks_parse.h). */
#include "ks_test.h"

#include "ks_parse.h"

static void test_parse__u64_accepts_bounds(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(ks_parse_u64(&v, "0", 0, 10, "n", NULL), KS_OK);
    assert_int_equal(v, 0);
    assert_int_equal(ks_parse_u64(&v, "10", 0, 10, "n", NULL), KS_OK);
    assert_int_equal(v, 10);
    assert_int_equal(ks_parse_u64(&v, "18446744073709551615", 0, UINT64_MAX, "n", NULL), KS_OK);
    assert_true(v == UINT64_MAX);
}

static void test_parse__u64_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "-1", "+1", " 1", "1 ", "1x", "0x10", "11",
                                      "18446744073709551616", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 42;
        ks_err err = {0};
        assert_int_equal(ks_parse_u64(&v, bad[i], 0, 10, "--limit", &err), KS_EINVAL);
        assert_int_equal(v, 42); /* untouched on failure */
        assert_non_null(strstr(err.msg, "--limit"));
    }
    uint64_t v;
    assert_int_equal(ks_parse_u64(&v, NULL, 0, 10, "x", NULL), KS_EINVAL);
    assert_int_equal(ks_parse_u64(&v, "3", 5, 10, "x", NULL), KS_EINVAL);
}

static void test_parse__i64(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(ks_parse_i64(&v, "-5", -10, 10, "n", NULL), KS_OK);
    assert_int_equal(v, -5);
    assert_int_equal(ks_parse_i64(&v, "-9223372036854775808", INT64_MIN, 0, "n", NULL), KS_OK);
    assert_true(v == INT64_MIN);
    assert_int_equal(ks_parse_i64(&v, "-", -10, 10, "n", NULL), KS_EINVAL);
    assert_int_equal(ks_parse_i64(&v, "--1", -10, 10, "n", NULL), KS_EINVAL);
    assert_int_equal(ks_parse_i64(&v, "-11", -10, 10, "n", NULL), KS_EINVAL);
    assert_int_equal(ks_parse_i64(&v, "9223372036854775808", INT64_MIN, INT64_MAX, "n", NULL),
                     KS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse__u64_accepts_bounds),
        cmocka_unit_test(test_parse__u64_rejects),
        cmocka_unit_test(test_parse__i64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
