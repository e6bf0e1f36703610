/*
 * ks_test.h - small helpers shared by the cmocka tests: where the fixtures and
 * build outputs are, and a private temporary directory per test binary.
 * Header-only on purpose: each test binary is one translation unit plus this.
 */
#ifndef KS_TEST_H
#define KS_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ../shared/fixtures, from the environment ctest sets (KS_FIXTURES_DIR). */
static inline const char *ks_test_fixtures_dir(void)
{
    const char *d = getenv("KS_FIXTURES_DIR");
    return d ? d : "../shared/fixtures";
}

/* The CMake build directory (binaries are under it), from ctest's environment. */
static inline const char *ks_test_build_dir(void)
{
    const char *d = getenv("KS_BUILD_DIR");
    return d ? d : ".";
}

/* snprintf into a caller buffer, failing the test on truncation. */
static inline const char *ks_test_path(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline const char *ks_test_path(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < cap);
    return buf;
}

/* Creates a fresh directory under $TMPDIR (or /tmp); the caller removes it with
 * ks_test_rmdir(). */
static inline void ks_test_mkdtemp(char *buf, size_t cap)
{
    const char *base = getenv("TMPDIR");
    ks_test_path(buf, cap, "%s/ks-test-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(buf));
}

static inline void ks_test_rmdir(const char *dir)
{
    char cmd[4200];
    if (!dir || !dir[0] || strcmp(dir, "/") == 0)
        return;
    ks_test_path(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* Reads a whole file into a NUL-terminated heap buffer (caller frees); NULL on error. */
static inline char *ks_test_read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (size_t n; buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0;) {
        len += n;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

#endif
