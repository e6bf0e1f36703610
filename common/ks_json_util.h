/*
 * ks_json_util.h - private helpers shared by the common/ JSON codecs
 * (ks_report.c, ks_vm.c): JSON paths for error fields, strict typed getters
 * that reject unknown keys, wrong types, out-of-range numbers and over-long
 * strings, and small encoders for fixed-size string buffers.
 *
 * Library-private (double underscore); not part of any public contract.
 * Every getter leaves *out untouched when an optional key is absent, so the
 * caller presets the default.  Errors are KS_EINVAL with err->field set to the
 * full JSON path of the offending value.
 */
#ifndef KS_JSON_UTIL_H
#define KS_JSON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ks_err.h"
#include "ks_report.h"

/* Room for a JSON path; err->field keeps the first 127 bytes of it. */
#define KS_JSON_PATH_MAX 192

/* "parent.key", or "key" when parent is empty.  Returns buf. */
const char *ks_json__path_key(char *buf, size_t cap, const char *parent, const char *key);
/* "parent[i]".  Returns buf. */
const char *ks_json__path_idx(char *buf, size_t cap, const char *parent, size_t i);

/* "object", "array", "string", "integer", "real", "boolean" or "null". */
const char *ks_json__type_name(const json_t *v);

/* Sets a wrong-type error: "expected <what>, got <type>". */
ks_code ks_json__type_error(const json_t *v, const char *path, const char *what, ks_err *err);

/*
 * Checks that v is an object whose keys are all in the NULL-terminated list
 * `keys`; names the first unknown key in the error ("unknown key 'x'").
 */
ks_code ks_json__check_object(const json_t *v, const char *path, const char *const *keys,
                              ks_err *err);

/* Element conversions (v is the value itself; path names it). */
ks_code ks_json__int_value(const json_t *v, const char *path, int64_t min, int64_t max,
                           int64_t *out, ks_err *err);
/* Copies a string into buf[cap]; refuses NUL bytes and strings of cap bytes or more. */
ks_code ks_json__str_value(const json_t *v, const char *path, char *buf, size_t cap, ks_err *err);

/* Object member getters.  A missing required key is an error naming the key. */
ks_code ks_json__get_i64(const json_t *obj, const char *path, const char *key, bool required,
                         int64_t min, int64_t max, int64_t *out, ks_err *err);
ks_code ks_json__get_i32(const json_t *obj, const char *path, const char *key, bool required,
                         int32_t min, int32_t max, int32_t *out, ks_err *err);
ks_code ks_json__get_u32(const json_t *obj, const char *path, const char *key, bool required,
                         uint32_t max, uint32_t *out, ks_err *err);
/* 0..max where max <= INT64_MAX (JSON integers are signed 64-bit here). */
ks_code ks_json__get_u64(const json_t *obj, const char *path, const char *key, bool required,
                         uint64_t max, uint64_t *out, ks_err *err);
ks_code ks_json__get_bool(const json_t *obj, const char *path, const char *key, bool required,
                          bool *out, ks_err *err);
ks_code ks_json__get_str(const json_t *obj, const char *path, const char *key, bool required,
                         char *buf, size_t cap, ks_err *err);
/* A string that must pass ks_id_valid(). */
ks_code ks_json__get_id(const json_t *obj, const char *path, const char *key, bool required,
                        char *buf, size_t cap, ks_err *err);
/* *out = the array (borrowed) or NULL when absent; more than max elements is an error. */
ks_code ks_json__get_array(const json_t *obj, const char *path, const char *key, bool required,
                           size_t max, const json_t **out, ks_err *err);
/* A string mapped through from_str (returns -1 when unknown); `choices` is for the message. */
ks_code ks_json__get_enum(const json_t *obj, const char *path, const char *key, bool required,
                          int (*from_str)(const char *), const char *choices, int *out,
                          ks_err *err);

/*
 * Decodes an array of names (event names, PMU names) into a new array of
 * KS_NAME_MAX buffers; *out stays NULL for an empty array.  Caller frees.
 */
ks_code ks_json__names_from_json(char (**out)[KS_NAME_MAX], uint32_t *n_out, const json_t *arr,
                                 const char *path, size_t max, ks_err *err);
json_t *ks_json__names_to_json(const char (*names)[KS_NAME_MAX], uint32_t n);
/* Deep copy of a names array (NULL when n == 0).  false on allocation failure. */
bool ks_json__names_dup(char (**out)[KS_NAME_MAX], const char (*names)[KS_NAME_MAX], uint32_t n);

/*
 * A JSON string from a fixed buffer: stops at the first NUL or at cap, and
 * replaces bytes that are not valid UTF-8 with '?' so that text read from the
 * OS can always be encoded.  NULL only on allocation failure.
 */
json_t *ks_json__string(const char *buf, size_t cap);
/* True when s[0..n) is printable ASCII with no '"' or '\\': written between
 * quotes it is already the JSON string jansson would write. */
bool ks_json__plain(const char *s, size_t n);
/* json_integer() of an unsigned value, clamped to INT64_MAX. */
json_t *ks_json__uint(uint64_t v);

/*
 * obj[key] = v, taking over v.  Returns true on failure (also when v is
 * NULL) so encoders can accumulate `bad |= ks_json__set(...)`.
 */
bool ks_json__set(json_t *obj, const char *key, json_t *v);
/* Appends v to arr, taking over v; true on failure. */
bool ks_json__append(json_t *arr, json_t *v);

/*
 * Lexical skipping over JSON text, for partial decoders that only build some
 * members of a large document (text already accepted once, e.g. from the
 * store).  skip_ws: past blanks.  skip_string: *p is '"', returns past the
 * closing quote.  skip_value: past one value (brackets balanced, strings
 * skipped, scalars up to the next delimiter; contents not validated).  Both
 * return NULL when the text ends first.
 */
const char *ks_json__skip_ws(const char *p, const char *end);
const char *ks_json__skip_string(const char *p, const char *end);
const char *ks_json__skip_value(const char *p, const char *end);

#endif
