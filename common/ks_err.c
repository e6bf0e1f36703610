/*
 * ks_err.c - code sentences and slugs, and the setters of ks_err.
 * The two tables below are API: append only.
 */
#include "ks_err.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *slug;
    const char *sentence;
} code_table[KS_CODE__COUNT] = {
    [KS_OK] = {"ok", "no error"},
    [KS_EINVAL] = {"invalid_argument", "invalid argument"},
    [KS_ENOTFOUND] = {"not_found", "not found"},
    [KS_EEXIST] = {"already_exists", "already exists"},
    [KS_ECONFLICT] = {"conflict", "conflicting change"},
    [KS_ENOCAPACITY] = {"no_capacity", "no capacity for the request"},
    [KS_EUNAVAIL] = {"unavailable", "service unavailable"},
    [KS_EIO] = {"io_error", "input/output error"},
    [KS_ENOMEM] = {"out_of_memory", "out of memory"},
    [KS_EINTERNAL] = {"internal", "internal error"},
    [KS_EAUTH] = {"unauthenticated", "authentication required"},
    [KS_EFORBIDDEN] = {"forbidden", "permission denied"},
    [KS_ETOOLARGE] = {"too_large", "input too large"},
    [KS_EPRECOND] = {"precondition_failed", "precondition failed"},
    [KS_EUNSUPPORTED] = {"unsupported", "operation not supported"},
};

const char *ks_code_str(ks_code code)
{
    if ((unsigned)code >= KS_CODE__COUNT)
        return "unknown error";
    return code_table[code].sentence;
}

const char *ks_code_slug(ks_code code)
{
    if ((unsigned)code >= KS_CODE__COUNT)
        return "internal";
    return code_table[code].slug;
}

ks_code ks_code_from_slug(const char *slug)
{
    for (int i = 0; slug && i < KS_CODE__COUNT; i++)
        if (strcmp(code_table[i].slug, slug) == 0)
            return (ks_code)i;
    return KS_EINTERNAL;
}

ks_code ks_err_setv(ks_err *err, ks_code code, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    err->field[0] = '\0';
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    return code;
}

ks_code ks_err_set(ks_err *err, ks_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ks_err_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

ks_code ks_err_set_field(ks_err *err, ks_code code, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ks_err_setv(err, code, fmt, ap);
    va_end(ap);
    if (err && field)
        snprintf(err->field, sizeof(err->field), "%s", field);
    return code;
}

void ks_err_prefix(ks_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char out[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, sizeof(out), fmt, ap);
    va_end(ap);
    /* Keep as much of the original message as fits after "prefix: ". */
    size_t used = n < 0 ? 0 : (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1;
    if (used + 2 < sizeof(out)) {
        memcpy(out + used, ": ", 2);
        used += 2;
        size_t room = sizeof(out) - 1 - used;
        size_t len = strnlen(err->msg, sizeof(err->msg));
        if (len > room)
            len = room;
        memcpy(out + used, err->msg, len);
        used += len;
    }
    out[used] = '\0';
    memcpy(err->msg, out, sizeof(out));
}

void ks_err_clear(ks_err *err)
{
    if (!err)
        return;
    err->code = KS_OK;
    err->field[0] = '\0';
    err->msg[0] = '\0';
}
