/*
 * st_base.c - self-test workloads for the base integer ISA, x87, SSE2,
 * SSE4.2 (CRC32C, PCMPGTQ), POPCNT, LZCNT, BMI1, BMI2, ADX and the hardware
 * random number generators.
 *
 * Each run/expect pair follows ks_selftest_int.h: `run` uses the unit under
 * test, `expect` computes the same bytes with plain scalar code that does not
 * (or returns stored constants for the integer test, whose only possible
 * reference would run on the very ALU it checks).  Stateless and thread-safe.
 */
#include <stdint.h>
#include <string.h>

#include "ks_selftest_int.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <x86intrin.h>
#endif

/* ------------------------------------------------------------------------------------------ */
/* Integer ALU, multiplier and divider                                                       */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_INT_ITERS 20000u

/*
 * Chained add/mul/128-bit mul/div/idiv/rotate/compare so that one wrong bit
 * anywhere propagates to the final state.  Signed divisors are at least 2 in
 * magnitude so INT64_MIN / -1 cannot happen.
 */
size_t ks_st__int_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed;
    uint64_t v[4];
    uint64_t a = ks_st__next(&s), b = ks_st__next(&s), c = ks_st__next(&s), d = ks_st__next(&s);
    for (uint32_t i = 0; i < KS_ST_INT_ITERS; i++) {
        a = a * UINT64_C(0x9e3779b97f4a7c15) + b;
        unsigned __int128 p = (unsigned __int128)a * (c | 1);
        b ^= (uint64_t)(p >> 64) + (a >> 29);
        uint64_t div = (b >> 40) | 1;
        c += a / div + a % div;
        int64_t sn = (int64_t)(c ^ b);
        int64_t sd = (int64_t)((a >> 48) | 2);
        if (i & 1)
            sd = -sd;
        d = ks_st__rotl(d, 7) ^ (uint64_t)(sn / sd) ^ (uint64_t)(sn % sd);
        c = ks_st__rotl(c, 13) - d;
        if (a > b)
            d += i;
        else
            d -= (uint64_t)i * 3;
        b = (b & ~c) | (a & c);
    }
    v[0] = a;
    v[1] = b;
    v[2] = c;
    v[3] = d;
    return ks_st__out(out, v, sizeof(v));
}

/*
 * Stored answer for the seed in ks_selftest.c and KS_ST_INT_ITERS, computed
 * independently with Python's arbitrary-precision integers (C truncating
 * division emulated), not by running the code above.
 */
size_t ks_st__int_expect(uint8_t out[KS_ST_OUT_MAX])
{
    static const uint64_t v[4] = {
        UINT64_C(0xae8072c08e5cc7cc),
        UINT64_C(0xac8056c08c4d07dc),
        UINT64_C(0xf5fe40edd9c208eb),
        UINT64_C(0xdf12e557f69bc49e),
    };
    return ks_st__out(out, v, sizeof(v));
}

#if defined(__x86_64__)

/* ------------------------------------------------------------------------------------------ */
/* x87: products, quotients and square roots that are exact in the 64-bit mantissa,         */
/* checked against integer arithmetic                                                        */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_X87_ITERS 20000u

static inline long double x87_sqrt(long double v)
{
    __asm__("fsqrt" : "+t"(v));
    return v;
}

size_t ks_st__x87_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h = 0;
    for (uint32_t i = 0; i < KS_ST_X87_ITERS; i++) {
        uint64_t r = ks_st__next(&s);
        uint32_t a = (uint32_t)(r & 0x7fffffff) | 1, b = (uint32_t)((r >> 32) & 0x7fffffff) | 1;
        long double la = a, lb = b;
        long double p = la * lb;
        long double q = p / lb;
        long double sq = x87_sqrt(la * la);
        long double sum = p + la;
        h = ks_st__rotl(h, 5) ^ (uint64_t)p ^ ((uint64_t)q << 1) ^ ((uint64_t)sq << 3) ^
            (uint64_t)sum;
    }
    return ks_st__out(out, &h, sizeof(h));
}

size_t ks_st__x87_expect(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h = 0;
    for (uint32_t i = 0; i < KS_ST_X87_ITERS; i++) {
        uint64_t r = ks_st__next(&s);
        uint64_t a = (r & 0x7fffffff) | 1, b = ((r >> 32) & 0x7fffffff) | 1;
        uint64_t p = a * b;
        h = ks_st__rotl(h, 5) ^ p ^ (a << 1) ^ (a << 3) ^ (p + a);
    }
    return ks_st__out(out, &h, sizeof(h));
}

/* ------------------------------------------------------------------------------------------ */
/* SSE2                                                                                      */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_SSE2_ITERS 20000u
#define KS_ST_SSE2_K 0.99951171875

/* Inputs drawn into named temporaries: argument evaluation order is unspecified. */
typedef struct sse2_init {
    uint64_t x[2], y[2];
    double d[2];
} sse2_init;

static void sse2_seed(sse2_init *in)
{
    uint64_t s = ks_selftest__seed;
    for (int i = 0; i < 2; i++) {
        in->x[i] = ks_st__next(&s);
        in->y[i] = ks_st__next(&s);
        in->d[i] = (double)(int32_t)(uint32_t)ks_st__next(&s);
    }
}

size_t ks_st__sse2_run(uint8_t out[KS_ST_OUT_MAX])
{
    sse2_init in;
    uint8_t buf[48];
    sse2_seed(&in);
    __m128i x = _mm_loadu_si128((const __m128i *)in.x);
    __m128i y = _mm_loadu_si128((const __m128i *)in.y);
    __m128d d = _mm_loadu_pd(in.d);
    const __m128d k = _mm_set1_pd(KS_ST_SSE2_K);
    for (uint32_t i = 0; i < KS_ST_SSE2_ITERS; i++) {
        x = _mm_add_epi32(x, _mm_mul_epu32(x, y));
        y = _mm_xor_si128(y, _mm_slli_epi64(x, 13));
        y = _mm_shuffle_epi32(y, 0x4e);
        x = _mm_sub_epi16(x, _mm_srli_epi32(y, 7));
        y = _mm_add_epi64(y, _mm_unpackhi_epi32(x, y));
        d = _mm_add_pd(_mm_mul_pd(d, k), _mm_cvtepi32_pd(x));
    }
    _mm_storeu_si128((__m128i *)buf, x);
    _mm_storeu_si128((__m128i *)(buf + 16), y);
    _mm_storeu_pd((double *)(void *)(buf + 32), d);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__sse2_expect(uint8_t out[KS_ST_OUT_MAX])
{
    sse2_init in;
    ks_st_vec x, y, m, t;
    double d[2];
    uint8_t buf[48];
    sse2_seed(&in);
    memset(&x, 0, sizeof(x));
    memset(&y, 0, sizeof(y));
    memcpy(x.q, in.x, 16);
    memcpy(y.q, in.y, 16);
    memcpy(d, in.d, 16);
    for (uint32_t i = 0; i < KS_ST_SSE2_ITERS; i++) {
        for (int l = 0; l < 2; l++) /* pmuludq */
            m.q[l] = (uint64_t)x.w[2 * l] * y.w[2 * l];
        for (int l = 0; l < 4; l++)
            x.w[l] += m.w[l];
        for (int l = 0; l < 2; l++)
            y.q[l] ^= x.q[l] << 13;
        t = y; /* pshufd 0x4e: swap the 64-bit halves */
        y.w[0] = t.w[2];
        y.w[1] = t.w[3];
        y.w[2] = t.w[0];
        y.w[3] = t.w[1];
        for (int l = 0; l < 8; l++)
            x.h[l] = (uint16_t)(x.h[l] - (uint16_t)(y.w[l / 2] >> 7 >> (16 * (l & 1))));
        t.w[0] = x.w[2]; /* punpckhdq x, y */
        t.w[1] = y.w[2];
        t.w[2] = x.w[3];
        t.w[3] = y.w[3];
        for (int l = 0; l < 2; l++)
            y.q[l] += t.q[l];
        for (int l = 0; l < 2; l++)
            d[l] = d[l] * KS_ST_SSE2_K + (double)x.sw[l];
    }
    memcpy(buf, x.b, 16);
    memcpy(buf + 16, y.b, 16);
    memcpy(buf + 32, d, 16);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* SSE4.2: CRC32C and PCMPGTQ                                                                 */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_SSE42_ITERS 8192u

__attribute__((target("sse4.2"))) size_t ks_st__sse42_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, crc = 0xffffffffu;
    uint8_t buf[24];
    __m128i acc = _mm_setzero_si128();
    for (uint32_t i = 0; i < KS_ST_SSE42_ITERS; i++) {
        uint64_t v = ks_st__next(&s);
        crc = _mm_crc32_u64(crc, v);
        crc = _mm_crc32_u8((uint32_t)crc, (uint8_t)(v >> 56));
        __m128i a = _mm_set_epi64x((long long)v, (long long)crc);
        __m128i b = _mm_set_epi64x((long long)ks_st__rotl(v, 17), (long long)v);
        acc = _mm_add_epi64(acc, _mm_and_si128(_mm_cmpgt_epi64(a, b), a));
    }
    memcpy(buf, &crc, 8);
    _mm_storeu_si128((__m128i *)(buf + 8), acc);
    return ks_st__out(out, buf, sizeof(buf));
}

static uint32_t crc32c_byte(uint32_t crc, uint8_t byte)
{
    crc ^= byte;
    for (int k = 0; k < 8; k++)
        crc = (crc >> 1) ^ (UINT32_C(0x82f63b78) & (0u - (crc & 1u)));
    return crc;
}

size_t ks_st__sse42_expect(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, acc[2] = {0, 0};
    uint32_t crc = 0xffffffffu;
    uint8_t buf[24];
    for (uint32_t i = 0; i < KS_ST_SSE42_ITERS; i++) {
        uint64_t v = ks_st__next(&s);
        for (int k = 0; k < 8; k++)
            crc = crc32c_byte(crc, (uint8_t)(v >> (8 * k)));
        crc = crc32c_byte(crc, (uint8_t)(v >> 56));
        int64_t a[2] = {(int64_t)(uint64_t)crc, (int64_t)v};
        int64_t b[2] = {(int64_t)v, (int64_t)ks_st__rotl(v, 17)};
        for (int l = 0; l < 2; l++)
            acc[l] += a[l] > b[l] ? (uint64_t)a[l] : 0;
    }
    uint64_t crc64 = crc;
    memcpy(buf, &crc64, 8);
    memcpy(buf + 8, acc, 16);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* POPCNT and LZCNT                                                                           */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_BITS_ITERS 20000u

static unsigned popcount_ref(uint64_t v)
{
    v = v - ((v >> 1) & UINT64_C(0x5555555555555555));
    v = (v & UINT64_C(0x3333333333333333)) + ((v >> 2) & UINT64_C(0x3333333333333333));
    v = (v + (v >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
    return (unsigned)((v * UINT64_C(0x0101010101010101)) >> 56);
}

static unsigned lzcnt_ref(uint64_t v)
{
    unsigned n = 0;
    for (uint64_t bit = UINT64_C(1) << 63; bit && !(v & bit); bit >>= 1)
        n++;
    return n;
}

__attribute__((target("popcnt"))) size_t ks_st__popcnt_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h = 0;
    for (uint32_t i = 0; i < KS_ST_BITS_ITERS; i++) {
        uint64_t v = ks_st__next(&s) ^ h;
        h = ks_st__rotl(h, 9) + (uint64_t)_mm_popcnt_u64(v) * (i | 1) +
            (uint64_t)_mm_popcnt_u32((uint32_t)(v >> (i & 31)));
    }
    return ks_st__out(out, &h, sizeof(h));
}

size_t ks_st__popcnt_expect(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h = 0;
    for (uint32_t i = 0; i < KS_ST_BITS_ITERS; i++) {
        uint64_t v = ks_st__next(&s) ^ h;
        h = ks_st__rotl(h, 9) + (uint64_t)popcount_ref(v) * (i | 1) +
            popcount_ref((uint32_t)(v >> (i & 31)));
    }
    return ks_st__out(out, &h, sizeof(h));
}

__attribute__((target("lzcnt"))) size_t ks_st__lzcnt_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h = 0;
    for (uint32_t i = 0; i < KS_ST_BITS_ITERS; i++) {
        uint64_t v = ks_st__next(&s) >> (i & 63);
        h = ks_st__rotl(h, 7) ^ (uint64_t)_lzcnt_u64(v ^ (h & 1)) ^ ((uint64_t)_lzcnt_u64(v) << 8);
    }
    return ks_st__out(out, &h, sizeof(h));
}

size_t ks_st__lzcnt_expect(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h = 0;
    for (uint32_t i = 0; i < KS_ST_BITS_ITERS; i++) {
        uint64_t v = ks_st__next(&s) >> (i & 63);
        h = ks_st__rotl(h, 7) ^ (uint64_t)lzcnt_ref(v ^ (h & 1)) ^ ((uint64_t)lzcnt_ref(v) << 8);
    }
    return ks_st__out(out, &h, sizeof(h));
}

/* ------------------------------------------------------------------------------------------ */
/* BMI1, BMI2                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static unsigned tzcnt_ref(uint64_t v)
{
    unsigned n = 0;
    for (uint64_t bit = 1; bit && !(v & bit); bit <<= 1)
        n++;
    return n;
}

static uint64_t bextr_ref(uint64_t v, unsigned start, unsigned len)
{
    uint64_t x = start >= 64 ? 0 : v >> start;
    return len >= 64 ? x : x & ((UINT64_C(1) << len) - 1);
}

/*
 * GCC implements _andn/_blsi/_blsmsk/_blsr as plain C (~x & y, x & -x, ...) and
 * only an optimising build turns them into BMI1 instructions; inline assembly
 * makes every build execute the instructions under test.
 */
static inline uint64_t asm_andn(uint64_t x, uint64_t y)
{
    uint64_t r;
    __asm__("andnq %2, %1, %0" : "=r"(r) : "r"(x), "rm"(y) : "cc");
    return r;
}

#define KS_ST_BMI_UNARY(name)                                                                      \
    static inline uint64_t asm_##name(uint64_t x)                                                  \
    {                                                                                              \
        uint64_t r;                                                                                \
        __asm__(#name "q %1, %0" : "=r"(r) : "rm"(x) : "cc");                                      \
        return r;                                                                                  \
    }
KS_ST_BMI_UNARY(blsi)
KS_ST_BMI_UNARY(blsmsk)
KS_ST_BMI_UNARY(blsr)

__attribute__((target("bmi"))) size_t ks_st__bmi1_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h = 0;
    for (uint32_t i = 0; i < KS_ST_BITS_ITERS; i++) {
        uint64_t v = ks_st__next(&s), w = ks_st__next(&s) ^ h;
        h ^= asm_andn(v, w);
        h = ks_st__rotl(h, 3) + _bextr_u64(v, i & 31, (unsigned)(w & 31) + 1);
        h += asm_blsi(v) ^ asm_blsmsk(w) ^ asm_blsr(v ^ h);
        h += _tzcnt_u64(v & w) + ((uint64_t)_tzcnt_u32((uint32_t)(v >> 32)) << 7);
    }
    return ks_st__out(out, &h, sizeof(h));
}

size_t ks_st__bmi1_expect(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h = 0;
    for (uint32_t i = 0; i < KS_ST_BITS_ITERS; i++) {
        uint64_t v = ks_st__next(&s), w = ks_st__next(&s) ^ h;
        h ^= ~v & w;
        h = ks_st__rotl(h, 3) + bextr_ref(v, i & 31, (unsigned)(w & 31) + 1);
        uint64_t x = v ^ h;
        h += (v & (0 - v)) ^ (w ^ (w - 1)) ^ (x & (x - 1));
        uint32_t hi = (uint32_t)(v >> 32);
        h += tzcnt_ref(v & w) + ((uint64_t)(hi ? tzcnt_ref(hi) : 32) << 7);
    }
    return ks_st__out(out, &h, sizeof(h));
}

static uint64_t pdep_ref(uint64_t src, uint64_t mask)
{
    uint64_t r = 0;
    for (uint64_t bit = 1; bit; bit <<= 1) {
        if (mask & bit) {
            if (src & 1)
                r |= bit;
            src >>= 1;
        }
    }
    return r;
}

static uint64_t pext_ref(uint64_t src, uint64_t mask)
{
    uint64_t r = 0;
    unsigned k = 0;
    for (unsigned b = 0; b < 64; b++) {
        if (mask >> b & 1) {
            r |= (src >> b & 1) << k;
            k++;
        }
    }
    return r;
}

#define KS_ST_BMI2_ITERS 8000u

__attribute__((target("bmi2"))) size_t ks_st__bmi2_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h = 0, g = 0;
    uint64_t buf[2];
    for (uint32_t i = 0; i < KS_ST_BMI2_ITERS; i++) {
        uint64_t v = ks_st__next(&s), w = ks_st__next(&s) ^ h;
        unsigned long long hi;
        uint64_t sh, sa, ro;
        h ^= _bzhi_u64(v, i & 63);
        h = ks_st__rotl(h, 11) + _pdep_u64(v, w);
        g ^= _pext_u64(w, v ^ g);
        h += _mulx_u64(v, w, &hi);
        g += hi;
        /* SHLX/SARX/RORX have no intrinsics the compiler is bound to use */
        __asm__("shlxq %2, %1, %0" : "=r"(sh) : "r"(v), "r"(w));
        __asm__("sarxq %2, %1, %0" : "=r"(sa) : "r"(w), "r"(v >> 3));
        __asm__("rorxq $19, %1, %0" : "=r"(ro) : "r"(h));
        g += sh ^ sa ^ ro;
    }
    buf[0] = h;
    buf[1] = g;
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__bmi2_expect(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h = 0, g = 0;
    uint64_t buf[2];
    for (uint32_t i = 0; i < KS_ST_BMI2_ITERS; i++) {
        uint64_t v = ks_st__next(&s), w = ks_st__next(&s) ^ h;
        unsigned n = i & 63;
        h ^= n ? v & ((UINT64_C(1) << n) - 1) : 0;
        h = ks_st__rotl(h, 11) + pdep_ref(v, w);
        g ^= pext_ref(w, v ^ g);
        unsigned __int128 p = (unsigned __int128)v * w;
        h += (uint64_t)p;
        g += (uint64_t)(p >> 64);
        uint64_t sh = v << (w & 63);
        uint64_t sa = (uint64_t)((int64_t)w >> ((v >> 3) & 63));
        uint64_t ro = (h >> 19) | (h << 45);
        g += sh ^ sa ^ ro;
    }
    buf[0] = h;
    buf[1] = g;
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* ADX: two interleaved 256-bit additions, one on the CF chain (ADCX), one on OF (ADOX)      */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_ADX_ITERS 20000u

typedef struct adx_state {
    uint64_t a[4], b[4], c[4], d[4];
    uint64_t carries;
} adx_state;

static void adx_seed(adx_state *st)
{
    uint64_t s = ks_selftest__seed;
    for (int i = 0; i < 4; i++) {
        st->a[i] = ks_st__next(&s);
        st->b[i] = ks_st__next(&s);
        st->c[i] = ks_st__next(&s);
        st->d[i] = ks_st__next(&s);
    }
    st->carries = 0;
}

/* Mixing between additions, identical in run and expect (plain C). */
static void adx_mix(adx_state *st, uint32_t i)
{
    for (int l = 0; l < 4; l++) {
        st->b[l] = ks_st__rotl(st->b[l] ^ st->a[(l + 1) & 3], 5 + l) + i;
        st->d[l] = ks_st__rotl(st->d[l] ^ st->c[(l + 3) & 3], 9 + l) - i;
    }
}

size_t ks_st__adx_run(uint8_t out[KS_ST_OUT_MAX])
{
    adx_state st;
    adx_seed(&st);
    for (uint32_t i = 0; i < KS_ST_ADX_ITERS; i++) {
        uint64_t a0 = st.a[0], a1 = st.a[1], a2 = st.a[2], a3 = st.a[3];
        uint64_t c0 = st.c[0], c1 = st.c[1], c2 = st.c[2], c3 = st.c[3];
        uint8_t cf, of;
        __asm__("xorl %%eax, %%eax\n\t" /* clears CF and OF */
                "adcxq %[b0], %[a0]\n\t"
                "adoxq %[d0], %[c0]\n\t"
                "adcxq %[b1], %[a1]\n\t"
                "adoxq %[d1], %[c1]\n\t"
                "adcxq %[b2], %[a2]\n\t"
                "adoxq %[d2], %[c2]\n\t"
                "adcxq %[b3], %[a3]\n\t"
                "adoxq %[d3], %[c3]\n\t"
                "setc %[cf]\n\t"
                "seto %[of]"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [c0] "+r"(c0),
                  [c1] "+r"(c1), [c2] "+r"(c2), [c3] "+r"(c3), [cf] "=qm"(cf), [of] "=qm"(of)
                : [b0] "m"(st.b[0]), [b1] "m"(st.b[1]), [b2] "m"(st.b[2]), [b3] "m"(st.b[3]),
                  [d0] "m"(st.d[0]), [d1] "m"(st.d[1]), [d2] "m"(st.d[2]), [d3] "m"(st.d[3])
                : "rax", "cc");
        st.a[0] = a0;
        st.a[1] = a1;
        st.a[2] = a2;
        st.a[3] = a3;
        st.c[0] = c0;
        st.c[1] = c1;
        st.c[2] = c2;
        st.c[3] = c3;
        st.carries = st.carries * 3 + cf + 2u * of;
        adx_mix(&st, i);
    }
    uint64_t buf[9];
    memcpy(buf, st.a, 32);
    memcpy(buf + 4, st.c, 32);
    buf[8] = st.carries;
    return ks_st__out(out, buf, sizeof(buf));
}

static unsigned add256_ref(uint64_t x[4], const uint64_t y[4])
{
    unsigned carry = 0;
    for (int l = 0; l < 4; l++) {
        unsigned __int128 t = (unsigned __int128)x[l] + y[l] + carry;
        x[l] = (uint64_t)t;
        carry = (unsigned)(t >> 64);
    }
    return carry;
}

size_t ks_st__adx_expect(uint8_t out[KS_ST_OUT_MAX])
{
    adx_state st;
    adx_seed(&st);
    for (uint32_t i = 0; i < KS_ST_ADX_ITERS; i++) {
        unsigned cf = add256_ref(st.a, st.b);
        unsigned of = add256_ref(st.c, st.d);
        st.carries = st.carries * 3 + cf + 2u * of;
        adx_mix(&st, i);
    }
    uint64_t buf[9];
    memcpy(buf, st.a, 32);
    memcpy(buf + 4, st.c, 32);
    buf[8] = st.carries;
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* RDRAND / RDSEED sanity                                                                      */
/* ------------------------------------------------------------------------------------------ */

/*
 * There is no known answer for a random number generator, so the workload
 * computes a verdict byte (0 = sane) and the expected answer is 0.  Bits:
 * no value after all retries, every value identical (stuck), an all-ones or
 * all-zero value (the AMD family 17h/19h firmware bug returned all-ones with
 * CF=1), two equal consecutive values, or a bit balance more than ~20 sigma
 * off 50% over all draws.
 */
#define KS_ST_RNG_DRAWS 256
#define KS_ST_RNG_NO_VALUE 0x01
#define KS_ST_RNG_STUCK 0x02
#define KS_ST_RNG_EXTREME 0x04
#define KS_ST_RNG_REPEAT 0x08
#define KS_ST_RNG_BIAS 0x10

static uint8_t rng_verdict(const uint64_t *v, int n, bool got_all)
{
    uint8_t flags = got_all ? 0 : KS_ST_RNG_NO_VALUE;
    bool all_same = true;
    unsigned ones = 0;
    for (int i = 0; i < n; i++) {
        if (v[i] == UINT64_MAX || v[i] == 0)
            flags |= KS_ST_RNG_EXTREME;
        if (i > 0 && v[i] == v[i - 1])
            flags |= KS_ST_RNG_REPEAT;
        if (v[i] != v[0])
            all_same = false;
        ones += popcount_ref(v[i]);
    }
    if (n > 1 && all_same)
        flags |= KS_ST_RNG_STUCK;
    /* 256 draws x 64 bits: mean 8192, sigma 64 */
    if (n == KS_ST_RNG_DRAWS && (ones < 8192 - 1280 || ones > 8192 + 1280))
        flags |= KS_ST_RNG_BIAS;
    return flags;
}

__attribute__((target("rdrnd"))) size_t ks_st__rdrand_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t v[KS_ST_RNG_DRAWS];
    int n = 0;
    bool got_all = true;
    for (int i = 0; i < KS_ST_RNG_DRAWS; i++) {
        unsigned long long x;
        int ok = 0;
        /* Intel's guidance: 10 retries make a failure practically impossible on a
         * healthy DRNG, so running out of them is itself a fault. */
        for (int r = 0; r < 10 && !ok; r++)
            ok = _rdrand64_step(&x);
        if (!ok) {
            got_all = false;
            continue;
        }
        v[n++] = x;
    }
    uint8_t verdict = rng_verdict(v, n, got_all);
    return ks_st__out(out, &verdict, 1);
}

__attribute__((target("rdseed"))) size_t ks_st__rdseed_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t v[KS_ST_RNG_DRAWS];
    int n = 0;
    bool got_all = true;
    for (int i = 0; i < KS_ST_RNG_DRAWS; i++) {
        unsigned long long x;
        int ok = 0;
        /* RDSEED legitimately runs dry under contention (other cores draining the
         * entropy source), so it gets many more retries, with a pause between. */
        for (int r = 0; r < 2000 && !ok; r++) {
            ok = _rdseed64_step(&x);
            if (!ok)
                _mm_pause();
        }
        if (!ok) {
            got_all = false;
            continue;
        }
        v[n++] = x;
    }
    uint8_t verdict = rng_verdict(v, n, got_all);
    return ks_st__out(out, &verdict, 1);
}

size_t ks_st__rdrand_expect(uint8_t out[KS_ST_OUT_MAX])
{
    out[0] = 0;
    return 1;
}

size_t ks_st__rdseed_expect(uint8_t out[KS_ST_OUT_MAX])
{
    out[0] = 0;
    return 1;
}

#endif /* __x86_64__ */
