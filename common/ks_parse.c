/*
 * ks_parse.c - strtoull/strtoll wrapped so that every caller gets the same
 * checks (empty, sign, trailing characters, errno range, bounds) and the same
 * message.
 */
#include "ks_parse.h"

#include <errno.h>
#include <stdlib.h>

ks_code ks_parse_u64(uint64_t *out, const char *s, uint64_t min, uint64_t max, const char *what,
                     ks_err *err)
{
    char *end = NULL;
    if (!s || *s < '0' || *s > '9')
        return ks_err_set(err, KS_EINVAL, "%s: '%s' is not a non-negative integer", what,
                          s ? s : "");
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE || *end != '\0' || v < min || v > max)
        return ks_err_set(err, KS_EINVAL, "%s: '%s' is not an integer in %llu..%llu", what, s,
                          (unsigned long long)min, (unsigned long long)max);
    *out = (uint64_t)v;
    return KS_OK;
}

ks_code ks_parse_i64(int64_t *out, const char *s, int64_t min, int64_t max, const char *what,
                     ks_err *err)
{
    char *end = NULL;
    if (!s || !((*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9')))
        return ks_err_set(err, KS_EINVAL, "%s: '%s' is not an integer", what, s ? s : "");
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end != '\0' || v < min || v > max)
        return ks_err_set(err, KS_EINVAL, "%s: '%s' is not an integer in %lld..%lld", what, s,
                          (long long)min, (long long)max);
    *out = (int64_t)v;
    return KS_OK;
}
