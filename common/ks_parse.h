/*
 * ks_parse.h - checked number parsers: the only place that calls strto*.
 * A value parses only when the whole string is a decimal number inside
 * [min, max]: no sign where none is allowed, no trailing text, no overflow.
 */
#ifndef KS_PARSE_H
#define KS_PARSE_H

#include <stdint.h>

#include "ks_err.h"

/* Unsigned decimal in [min, max].  KS_EINVAL naming `what` ("--heartbeat"). */
ks_code ks_parse_u64(uint64_t *out, const char *s, uint64_t min, uint64_t max, const char *what,
                     ks_err *err);
/* Signed decimal in [min, max].  KS_EINVAL naming `what`. */
ks_code ks_parse_i64(int64_t *out, const char *s, int64_t min, int64_t max, const char *what,
                     ks_err *err);

#endif
