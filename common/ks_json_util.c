/*
 * ks_json_util.c - strict typed access to jansson values for the common/
 * codecs.  The rules every decoder gets from here: a JSON integer is the only
 * number accepted (no reals, no strings), null is a wrong type (never "absent"),
 * strings are refused rather than truncated when they do not fit and when they
 * hold a NUL byte, and every error names the full JSON path.  Stateless and
 * reentrant.
 */
#include "ks_json_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Paths are built on every nested decode (the parent of a member's path), so
 * they are formatted by hand: snprintf per array element was ~9 % of decoding
 * a store's worth of plans.  Truncates like snprintf (always NUL-terminated).
 */
static size_t path_put(char *buf, size_t cap, size_t at, const char *s, size_t n)
{
    if (at + 1 >= cap)
        return at;
    if (n > cap - 1 - at)
        n = cap - 1 - at;
    memcpy(buf + at, s, n);
    return at + n;
}

const char *ks_json__path_key(char *buf, size_t cap, const char *parent, const char *key)
{
    if (!cap)
        return buf;
    size_t at = 0;
    if (parent && parent[0]) {
        at = path_put(buf, cap, at, parent, strlen(parent));
        at = path_put(buf, cap, at, ".", 1);
    }
    at = path_put(buf, cap, at, key, strlen(key));
    buf[at] = '\0';
    return buf;
}

const char *ks_json__path_idx(char *buf, size_t cap, const char *parent, size_t i)
{
    if (!cap)
        return buf;
    char num[24];
    size_t n = sizeof(num);
    num[--n] = ']';
    do {
        num[--n] = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    num[--n] = '[';
    size_t at = 0;
    if (parent)
        at = path_put(buf, cap, at, parent, strlen(parent));
    at = path_put(buf, cap, at, num + n, sizeof(num) - n);
    buf[at] = '\0';
    return buf;
}

const char *ks_json__type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

ks_code ks_json__type_error(const json_t *v, const char *path, const char *what, ks_err *err)
{
    return ks_err_set_field(err, KS_EINVAL, path, "expected %s, got %s", what,
                            v ? ks_json__type_name(v) : "nothing");
}

ks_code ks_json__check_object(const json_t *v, const char *path, const char *const *keys,
                              ks_err *err)
{
    if (!json_is_object(v))
        return ks_json__type_error(v, path, "object", err);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        bool known = false;
        for (size_t i = 0; keys[i] && !known; i++)
            known = strcmp(keys[i], key) == 0;
        if (!known) {
            char p[KS_JSON_PATH_MAX];
            /* Keys may hold anything (NUL included): quote a bounded prefix. */
            return ks_err_set_field(err, KS_EINVAL, ks_json__path_key(p, sizeof(p), path, key),
                                    "unknown key '%.64s'", key);
        }
    }
    return KS_OK;
}

ks_code ks_json__int_value(const json_t *v, const char *path, int64_t min, int64_t max,
                           int64_t *out, ks_err *err)
{
    if (!json_is_integer(v))
        return ks_json__type_error(v, path, "integer", err);
    int64_t x = (int64_t)json_integer_value(v);
    if (x < min || x > max)
        return ks_err_set_field(err, KS_EINVAL, path,
                                "value %" PRId64 " out of range (%" PRId64 "..%" PRId64 ")", x, min,
                                max);
    *out = x;
    return KS_OK;
}

ks_code ks_json__str_value(const json_t *v, const char *path, char *buf, size_t cap, ks_err *err)
{
    if (!json_is_string(v))
        return ks_json__type_error(v, path, "string", err);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (memchr(s, '\0', len))
        return ks_err_set_field(err, KS_EINVAL, path, "string contains a NUL character");
    if (len >= cap)
        return ks_err_set_field(err, KS_EINVAL, path, "string too long (%zu bytes, at most %zu)",
                                len, cap - 1);
    memcpy(buf, s, len);
    buf[len] = '\0';
    return KS_OK;
}

/*
 * Fetches obj[key]; *v = NULL when absent and optional.  The path is only
 * formatted into p when an error is reported or the caller needs it (see
 * want_path): decoding a large report calls these getters ~20 times per CPU.
 */
static ks_code member(const json_t *obj, const char *path, const char *key, bool required,
                      const json_t **v, char *p, size_t cap, ks_err *err)
{
    *v = json_object_get(obj, key);
    if (!*v && required)
        return ks_err_set_field(err, KS_EINVAL, ks_json__path_key(p, cap, path, key),
                                "missing required key '%s'", key);
    return KS_OK;
}

ks_code ks_json__get_i64(const json_t *obj, const char *path, const char *key, bool required,
                         int64_t min, int64_t max, int64_t *out, ks_err *err)
{
    char p[KS_JSON_PATH_MAX];
    const json_t *v;
    ks_code rc = member(obj, path, key, required, &v, p, sizeof(p), err);
    if (rc != KS_OK || !v)
        return rc;
    if (json_is_integer(v)) {
        int64_t x = (int64_t)json_integer_value(v);
        if (x >= min && x <= max) {
            *out = x;
            return KS_OK;
        }
    }
    return ks_json__int_value(v, ks_json__path_key(p, sizeof(p), path, key), min, max, out, err);
}

ks_code ks_json__get_i32(const json_t *obj, const char *path, const char *key, bool required,
                         int32_t min, int32_t max, int32_t *out, ks_err *err)
{
    int64_t x = 0;
    bool present = json_object_get(obj, key) != NULL;
    ks_code rc = ks_json__get_i64(obj, path, key, required, min, max, &x, err);
    if (rc == KS_OK && present)
        *out = (int32_t)x;
    return rc;
}

ks_code ks_json__get_u32(const json_t *obj, const char *path, const char *key, bool required,
                         uint32_t max, uint32_t *out, ks_err *err)
{
    int64_t x = 0;
    bool present = json_object_get(obj, key) != NULL;
    ks_code rc = ks_json__get_i64(obj, path, key, required, 0, (int64_t)max, &x, err);
    if (rc == KS_OK && present)
        *out = (uint32_t)x;
    return rc;
}

ks_code ks_json__get_u64(const json_t *obj, const char *path, const char *key, bool required,
                         uint64_t max, uint64_t *out, ks_err *err)
{
    int64_t x = 0;
    bool present = json_object_get(obj, key) != NULL;
    if (max > (uint64_t)INT64_MAX)
        max = (uint64_t)INT64_MAX;
    ks_code rc = ks_json__get_i64(obj, path, key, required, 0, (int64_t)max, &x, err);
    if (rc == KS_OK && present)
        *out = (uint64_t)x;
    return rc;
}

ks_code ks_json__get_bool(const json_t *obj, const char *path, const char *key, bool required,
                          bool *out, ks_err *err)
{
    char p[KS_JSON_PATH_MAX];
    const json_t *v;
    ks_code rc = member(obj, path, key, required, &v, p, sizeof(p), err);
    if (rc != KS_OK || !v)
        return rc;
    if (!json_is_boolean(v))
        return ks_json__type_error(v, ks_json__path_key(p, sizeof(p), path, key), "boolean", err);
    *out = json_is_true(v);
    return KS_OK;
}

ks_code ks_json__get_str(const json_t *obj, const char *path, const char *key, bool required,
                         char *buf, size_t cap, ks_err *err)
{
    char p[KS_JSON_PATH_MAX];
    const json_t *v;
    ks_code rc = member(obj, path, key, required, &v, p, sizeof(p), err);
    if (rc != KS_OK || !v)
        return rc;
    if (json_is_string(v) && json_string_length(v) < cap &&
        !memchr(json_string_value(v), '\0', json_string_length(v))) {
        memcpy(buf, json_string_value(v), json_string_length(v) + 1);
        return KS_OK;
    }
    return ks_json__str_value(v, ks_json__path_key(p, sizeof(p), path, key), buf, cap, err);
}

ks_code ks_json__get_id(const json_t *obj, const char *path, const char *key, bool required,
                        char *buf, size_t cap, ks_err *err)
{
    char p[KS_JSON_PATH_MAX];
    const json_t *v;
    ks_code rc = member(obj, path, key, required, &v, p, sizeof(p), err);
    if (rc != KS_OK || !v)
        return rc;
    ks_json__path_key(p, sizeof(p), path, key);
    char tmp[KS_ID_MAX];
    if (!json_is_string(v))
        return ks_json__type_error(v, p, "string", err);
    if (json_string_length(v) >= sizeof(tmp) || json_string_length(v) >= cap)
        return ks_err_set_field(err, KS_EINVAL, p, "id too long (%zu bytes, at most %d)",
                                json_string_length(v), KS_ID_MAX - 1);
    rc = ks_json__str_value(v, p, tmp, sizeof(tmp), err);
    if (rc != KS_OK)
        return rc;
    if (!ks_id_valid(tmp))
        return ks_err_set_field(err, KS_EINVAL, p,
                                "invalid id '%s' (1..63 of A-Z a-z 0-9 . _ -, not '.' or '..')",
                                tmp);
    memcpy(buf, tmp, strlen(tmp) + 1);
    return KS_OK;
}

ks_code ks_json__get_array(const json_t *obj, const char *path, const char *key, bool required,
                           size_t max, const json_t **out, ks_err *err)
{
    char p[KS_JSON_PATH_MAX];
    const json_t *v;
    ks_code rc = member(obj, path, key, required, &v, p, sizeof(p), err);
    *out = NULL;
    if (rc != KS_OK || !v)
        return rc;
    ks_json__path_key(p, sizeof(p), path, key);
    if (!json_is_array(v))
        return ks_json__type_error(v, p, "array", err);
    if (json_array_size(v) > max)
        return ks_err_set_field(err, KS_EINVAL, p, "too many elements (%zu, at most %zu)",
                                json_array_size(v), max);
    *out = v;
    return KS_OK;
}

ks_code ks_json__get_enum(const json_t *obj, const char *path, const char *key, bool required,
                          int (*from_str)(const char *), const char *choices, int *out,
                          ks_err *err)
{
    char p[KS_JSON_PATH_MAX];
    const json_t *v;
    ks_code rc = member(obj, path, key, required, &v, p, sizeof(p), err);
    if (rc != KS_OK || !v)
        return rc;
    ks_json__path_key(p, sizeof(p), path, key);
    char buf[KS_NAME_MAX];
    if (!json_is_string(v))
        return ks_json__type_error(v, p, "string", err);
    int x = -1;
    if (ks_json__str_value(v, p, buf, sizeof(buf), NULL) == KS_OK)
        x = from_str(buf);
    if (x < 0)
        return ks_err_set_field(err, KS_EINVAL, p, "unknown value '%.64s' (expected %s)",
                                json_string_value(v), choices);
    *out = x;
    return KS_OK;
}

ks_code ks_json__names_from_json(char (**out)[KS_NAME_MAX], uint32_t *n_out, const json_t *arr,
                                 const char *path, size_t max, ks_err *err)
{
    char (*names)[KS_NAME_MAX] = NULL;
    size_t n = json_array_size(arr);
    ks_code rc = KS_OK;
    if (!json_is_array(arr))
        return ks_json__type_error(arr, path, "array", err);
    if (n > max)
        return ks_err_set_field(err, KS_EINVAL, path, "too many elements (%zu, at most %zu)", n,
                                max);
    if (n > 0) {
        names = calloc(n, sizeof(*names));
        if (!names)
            return ks_err_set_field(err, KS_ENOMEM, path, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        size_t len = json_string_length(v);
        /* the path is only formatted when the element is refused */
        if (json_is_string(v) && len > 0 && len < sizeof(names[i]) &&
            !memchr(json_string_value(v), '\0', len)) {
            memcpy(names[i], json_string_value(v), len + 1);
            continue;
        }
        char p[KS_JSON_PATH_MAX];
        ks_json__path_idx(p, sizeof(p), path, i);
        rc = ks_json__str_value(v, p, names[i], sizeof(names[i]), err);
        if (rc == KS_OK)
            rc = ks_err_set_field(err, KS_EINVAL, p, "empty name");
        goto done;
    }
    *out = names;
    *n_out = (uint32_t)n;
    names = NULL;
done:
    free(names);
    return rc;
}

json_t *ks_json__names_to_json(const char (*names)[KS_NAME_MAX], uint32_t n)
{
    json_t *arr = json_array();
    bool bad = arr == NULL;
    for (uint32_t i = 0; !bad && i < n; i++)
        bad |= ks_json__append(arr, ks_json__string(names[i], KS_NAME_MAX));
    if (bad) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

bool ks_json__names_dup(char (**out)[KS_NAME_MAX], const char (*names)[KS_NAME_MAX], uint32_t n)
{
    *out = NULL;
    if (n == 0 || !names)
        return true;
    *out = malloc((size_t)n * KS_NAME_MAX);
    if (!*out)
        return false;
    memcpy(*out, names, (size_t)n * KS_NAME_MAX);
    return true;
}

/* Length of the valid UTF-8 sequence at s (at most len bytes), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n > len)
        return 0;
    unsigned cp = c & (0xffu >> (n + 1));
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

json_t *ks_json__string(const char *buf, size_t cap)
{
    size_t len = strnlen(buf, cap);
    const unsigned char *s = (const unsigned char *)buf;
    bool valid = true;
    for (size_t i = 0; i < len && valid;) {
        size_t n = utf8_seq(s + i, len - i);
        valid = n > 0;
        i += n;
    }
    if (valid)
        return json_stringn_nocheck(buf, len);
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(s + i, len - i);
        if (n == 0) {
            copy[i++] = '?';
        } else {
            memcpy(copy + i, s + i, n);
            i += n;
        }
    }
    json_t *v = json_stringn_nocheck(copy, len);
    free(copy);
    return v;
}

bool ks_json__plain(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return false;
    }
    return true;
}

json_t *ks_json__uint(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v);
}

bool ks_json__set(json_t *obj, const char *key, json_t *v)
{
    if (!v)
        return true;
    return json_object_set_new_nocheck(obj, key, v) != 0;
}

bool ks_json__append(json_t *arr, json_t *v)
{
    if (!v)
        return true;
    return json_array_append_new(arr, v) != 0;
}

/* ---- lexical skipping (partial decoders) ---- */

const char *ks_json__skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Past the string starting at *p == '"'; NULL when unterminated. */
const char *ks_json__skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Past one JSON value (lexically: brackets balanced, strings skipped); NULL
 * when the text ends first.  Its contents are not validated. */
const char *ks_json__skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return ks_json__skip_string(p, end);
    if (*p != '{' && *p != '[') {
        while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
               *p != '\n' && *p != '\r')
            p++;
        return p;
    }
    size_t depth = 0;
    while (p < end) {
        if (*p == '"') {
            p = ks_json__skip_string(p, end);
            if (!p)
                return NULL;
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return NULL;
}
