/*
 * ks_fuzz.h - what every fuzz harness under tests/fuzz/ shares.
 *
 * A harness is one .c file defining LLVMFuzzerTestOneInput() (and, when it
 * needs one-time set-up, LLVMFuzzerInitialize()).  The same file is linked
 * two ways (docs/reliability.md#fuzzing):
 *   - with clang's libFuzzer (-fsanitize=fuzzer) in the KS_FUZZ build, run by
 *     scripts/fuzz.sh;
 *   - with ks_fuzz_replay.c, a small main() that replays the seed corpus and a
 *     fixed number of deterministic mutations of it, in the normal ASan+UBSan
 *     build of scripts/test.sh (ctest label "fuzz").
 *
 * Harnesses check properties, not only "did not crash": a decoder that
 * accepts a document must re-encode it into something it accepts again and
 * that re-encodes identically.  A broken property prints what failed and
 * aborts, which both drivers report as a finding.
 */
#ifndef KS_FUZZ_H
#define KS_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property failed: say which and where, then abort (libFuzzer saves the input). */
#define KS_FUZZ_CHECK(cond, ...)                                                                   \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/*
 * A property broken by a known, reported bug of code outside tests/fuzz/
 * (docs/reliability.md lists them with their reproducers, seeds/<h>/crash-*).
 * While `id` is in the comma-separated KS_FUZZ_ALLOW environment variable the
 * failure is counted and reported once instead of aborting, so that fuzzing
 * can look past it for other bugs; without it, it aborts like KS_FUZZ_CHECK.
 */
#define KS_FUZZ_CHECK_KNOWN(id, cond, ...)                                                         \
    do {                                                                                           \
        if (!(cond) && !ks_fuzz_known(id)) {                                                       \
            fprintf(stderr, "%s:%d: property failed (%s): %s: ", __FILE__, __LINE__, id, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* True (and a one-time note on stderr) when finding `id` is allowed by KS_FUZZ_ALLOW. */
static inline bool ks_fuzz_known(const char *id)
{
    static char noted[512];
    const char *allow = getenv("KS_FUZZ_ALLOW");
    size_t n = strlen(id);
    for (const char *p = allow; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, id, n) == 0) {
            size_t used = strlen(noted);
            if (!strstr(noted, id) && used + n + 2 < sizeof(noted)) {
                snprintf(noted + used, sizeof(noted) - used, "%s,", id);
                fprintf(stderr, "ks_fuzz: known finding '%s' tolerated (KS_FUZZ_ALLOW)\n", id);
            }
            return true;
        }
        p = e ? e + 1 : p + len;
    }
    return false;
}

/* Inputs above this many bytes are skipped: the decoders' own caps are tested
 * by the unit tests, and huge inputs only slow the search down. */
#define KS_FUZZ_MAX_INPUT (256u * 1024u)

#endif
