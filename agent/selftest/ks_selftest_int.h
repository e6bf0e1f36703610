/*
 * ks_selftest_int.h - private to agent/selftest/: the test definition table and
 * the helpers every workload file shares (input generator, scalar vector
 * lanes, little-endian output).
 *
 * A workload is a pair of functions with the same signature:
 *   run    - computes the result on the unit under test (intrinsics compiled with
 *            __attribute__((target(...))) so the binary builds for any x86-64);
 *   expect - computes the same result with portable scalar code (or returns
 *            stored constants where the scalar code would use the unit under test).
 * Both write at most KS_ST_OUT_MAX bytes and return how many.  The framework
 * (ks_selftest.c) compares them; workloads never compare themselves, so fault
 * injection always goes through the one real comparison.
 *
 * Inputs derive from ks_selftest__seed, a volatile the compiler cannot see
 * through: without it the optimiser would fold the whole workload into a
 * constant at build time and the test would exercise nothing.
 *
 * Build for the x86-64 baseline (no -march=native): the references must not
 * be auto-vectorised onto the very unit they check.  Instructions that GCC's
 * intrinsics express as plain C (ANDN, BLS*) are written as inline assembly so
 * that unoptimised builds execute them too.
 */
#ifndef KS_SELFTEST_INT_H
#define KS_SELFTEST_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KS_ST_OUT_MAX 128

typedef size_t (*ks_st_fn)(uint8_t out[KS_ST_OUT_MAX]);
/* Optional per-test preparation (AMX permission): false = skip, `why` says why. */
typedef bool (*ks_st_prepare_fn)(char *why, size_t cap);

/* XCR0 state components the OS must enable for a test's registers. */
#define KS_ST_XCR0_AVX UINT64_C(0x6)     /* x87/SSE + YMM upper halves */
#define KS_ST_XCR0_AVX512 UINT64_C(0xe6) /* + opmask, ZMM_Hi256, Hi16_ZMM */
#define KS_ST_XCR0_AMX UINT64_C(0x60000) /* XTILECFG, XTILEDATA */

typedef struct ks_selftest__def {
    const char *name;     /* test name, stable (CLI, JSON, injection) */
    const char *required; /* space-separated catalogue names that must all be present */
    const char *faulty;   /* space-separated names proven faulty on mismatch; NULL = whole CPU */
    uint64_t xcr0;        /* state the OS must have enabled, 0 = none */
    ks_st_prepare_fn prepare;
    ks_st_fn expect;
    ks_st_fn run;
} ks_selftest__def;

extern volatile uint64_t ks_selftest__seed;

/* Tests only: called before each selected test (in the child when isolated), so a
 * test can simulate a crash or hang inside a workload.  NULL in production. */
extern void (*ks_selftest__hook)(size_t test_index);

/* splitmix64: cheap, full-period, and trivially the same in run and expect. */
static inline uint64_t ks_st__next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline uint64_t ks_st__rotl(uint64_t v, unsigned r)
{
    r &= 63;
    return r ? (v << r) | (v >> (64 - r)) : v;
}

/* Scalar view of a vector register, lane 0 at the lowest address (x86 layout). */
typedef union ks_st_vec {
    uint8_t b[64];
    int8_t sb[64];
    uint16_t h[32];
    uint32_t w[16];
    int32_t sw[16];
    uint64_t q[8];
    int64_t sq[8];
    double d[8];
} ks_st_vec;

static inline size_t ks_st__out(uint8_t out[KS_ST_OUT_MAX], const void *src, size_t len)
{
    if (len > KS_ST_OUT_MAX)
        len = KS_ST_OUT_MAX;
    memcpy(out, src, len);
    return len;
}

/* Workloads, by file.  Each pair is declared once here and listed in the table. */
#define KS_ST_DECL(n)                                                                              \
    size_t ks_st__##n##_run(uint8_t out[KS_ST_OUT_MAX]);                                           \
    size_t ks_st__##n##_expect(uint8_t out[KS_ST_OUT_MAX])

/* st_base.c */
KS_ST_DECL(int);
KS_ST_DECL(x87);
KS_ST_DECL(sse2);
KS_ST_DECL(sse42);
KS_ST_DECL(popcnt);
KS_ST_DECL(lzcnt);
KS_ST_DECL(bmi1);
KS_ST_DECL(bmi2);
KS_ST_DECL(adx);
KS_ST_DECL(rdrand);
KS_ST_DECL(rdseed);
/* st_avx.c */
KS_ST_DECL(avx);
KS_ST_DECL(avx2);
KS_ST_DECL(fma);
KS_ST_DECL(avx512f);
KS_ST_DECL(avx512bw);
KS_ST_DECL(avx512vl);
KS_ST_DECL(avx512dq);
KS_ST_DECL(vnni);
/* st_avx512x.c */
KS_ST_DECL(avx512cd);
KS_ST_DECL(vpopcntdq);
KS_ST_DECL(bitalg);
KS_ST_DECL(vbmi);
KS_ST_DECL(ifma);
KS_ST_DECL(gfni);
/* st_crypto.c */
KS_ST_DECL(aes);
KS_ST_DECL(vaes);
KS_ST_DECL(pclmul);
KS_ST_DECL(vpclmul);
KS_ST_DECL(sha);
/* st_amx.c */
KS_ST_DECL(amx);
bool ks_st__amx_prepare(char *why, size_t cap);

/* Scalar AES round primitives shared by the aes and vaes references (st_crypto.c). */
void ks_st__aes_ref_enc(uint8_t s[16], const uint8_t k[16], bool last);
void ks_st__aes_ref_dec(uint8_t s[16], const uint8_t k[16], bool last);
void ks_st__aes_ref_imc(uint8_t s[16]);
/* Scalar SHA-256 of a whole message (st_crypto.c); the tests check it on FIPS vectors. */
void ks_st__sha256_ref(const uint8_t *msg, size_t len, uint8_t digest[32]);
/* 64x64 -> 128 carry-less multiply (st_crypto.c). */
void ks_st__clmul_ref(uint64_t a, uint64_t b, uint64_t out[2]);

#endif
