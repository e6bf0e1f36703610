/*
 * ks_err.h - the one error type of Kintsugi.
 *
 * A fallible function returns ks_code (KS_OK == 0) and takes `ks_err *err` as its
 * last parameter (may be NULL).  The message buffer is fixed so that running out
 * of memory can still be reported.  Codes are API (HTTP slugs and CLI exit codes
 * derive from them): only ever append, never renumber.
 */
#ifndef KS_ERR_H
#define KS_ERR_H

#include <stdarg.h>
#include <stddef.h>

typedef enum ks_code {
    KS_OK = 0,
    KS_EINVAL,      /* malformed or out-of-range input */
    KS_ENOTFOUND,   /* no such object */
    KS_EEXIST,      /* object already exists */
    KS_ECONFLICT,   /* stale generation, ETag mismatch, concurrent change */
    KS_ENOCAPACITY, /* no host/CPU can take the request */
    KS_EUNAVAIL,    /* agent, peer or server unreachable */
    KS_EIO,         /* storage or OS I/O failure */
    KS_ENOMEM,      /* allocation failed or a hard size cap was hit */
    KS_EINTERNAL,   /* a bug or an impossible state */
    KS_EAUTH,       /* missing or invalid credentials */
    KS_EFORBIDDEN,  /* credentials valid but not allowed */
    KS_ETOOLARGE,   /* request or document above a configured limit */
    KS_EPRECOND,    /* If-Match precondition failed */
    KS_EUNSUPPORTED,/* valid request the target cannot do (e.g. VMM lacks a feature) */
    KS_CODE__COUNT
} ks_code;

typedef struct ks_err {
    ks_code code;
    char field[128]; /* JSON path or option name the error is about, "" if none */
    char msg[256];
} ks_err;

/* A fixed sentence for each code ("invalid argument"). Never NULL. */
const char *ks_code_str(ks_code code);
/* A stable lower-case slug for each code ("invalid_argument"), used by the API. */
const char *ks_code_slug(ks_code code);
/* Inverse of ks_code_slug(); returns KS_EINTERNAL for an unknown slug. */
ks_code ks_code_from_slug(const char *slug);

/* Fills *err (if not NULL) and returns `code`, so callers can `return ks_err_set(...)`. */
ks_code ks_err_set(ks_err *err, ks_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
ks_code ks_err_setv(ks_err *err, ks_code code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Like ks_err_set() and also records the JSON path/option the error is about. */
ks_code ks_err_set_field(ks_err *err, ks_code code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prefixes the message with "prefix: " keeping the code (context added by a top layer). */
void ks_err_prefix(ks_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ks_err_clear(ks_err *err);

#endif
