/*
 * st_avx.c - self-test workloads for AVX, AVX2, FMA, AVX-512 F/BW/VL/DQ and
 * AVX-512 VNNI.
 *
 * Every `run` is compiled with __attribute__((target(...))) for its extension
 * only and is called by the framework only where CPUID and XCR0 say the
 * extension is usable.  Every `expect` is plain C on scalar lanes (ks_st_vec).
 * Floating-point references repeat the same IEEE operations in the same order
 * (the build is ISO C, so the compiler never contracts a*b+c into an FMA);
 * the FMA reference is exact integer arithmetic rounded once.  Stateless.
 */
#include <stdint.h>
#include <string.h>

#include "ks_selftest_int.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* Draws n 64-bit words from the seed stream into dst (run and expect share it). */
static void draw(uint64_t *s, void *dst, size_t n_words)
{
    for (size_t i = 0; i < n_words; i++) {
        uint64_t v = ks_st__next(s);
        memcpy((uint8_t *)dst + 8 * i, &v, 8);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* AVX (256-bit floating point)                                                              */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_AVX_ITERS 8000u
#define KS_ST_AVX_K 0.9990234375

static void avx_seed(double d[4], double c[4])
{
    uint64_t s = ks_selftest__seed;
    for (int l = 0; l < 4; l++) {
        d[l] = (double)(int32_t)(uint32_t)ks_st__next(&s);
        c[l] = (double)(int16_t)(uint16_t)ks_st__next(&s) + 0.5;
    }
}

__attribute__((target("avx"))) size_t ks_st__avx_run(uint8_t out[KS_ST_OUT_MAX])
{
    double di[4], ci[4], res[8];
    avx_seed(di, ci);
    __m256d d = _mm256_loadu_pd(di), c = _mm256_loadu_pd(ci);
    const __m256d k = _mm256_set1_pd(KS_ST_AVX_K), one = _mm256_set1_pd(1.0);
    for (uint32_t i = 0; i < KS_ST_AVX_ITERS; i++) {
        __m256d e = _mm256_div_pd(c, _mm256_add_pd(_mm256_mul_pd(d, d), one));
        d = _mm256_add_pd(_mm256_mul_pd(d, k), e);
        d = _mm256_permute2f128_pd(d, d, 0x01);
        c = _mm256_shuffle_pd(c, c, 0x5);
    }
    _mm256_storeu_pd(res, d);
    _mm256_storeu_pd(res + 4, c);
    return ks_st__out(out, res, sizeof(res));
}

size_t ks_st__avx_expect(uint8_t out[KS_ST_OUT_MAX])
{
    double d[4], c[4], t[4], res[8];
    avx_seed(d, c);
    for (uint32_t i = 0; i < KS_ST_AVX_ITERS; i++) {
        for (int l = 0; l < 4; l++) {
            double e = c[l] / (d[l] * d[l] + 1.0);
            t[l] = d[l] * KS_ST_AVX_K + e;
        }
        d[0] = t[2]; /* vperm2f128 0x01: swap the 128-bit halves */
        d[1] = t[3];
        d[2] = t[0];
        d[3] = t[1];
        memcpy(t, c, sizeof(t)); /* vshufpd 0x5: swap within each half */
        c[0] = t[1];
        c[1] = t[0];
        c[2] = t[3];
        c[3] = t[2];
    }
    memcpy(res, d, 32);
    memcpy(res + 4, c, 32);
    return ks_st__out(out, res, sizeof(res));
}

/* ------------------------------------------------------------------------------------------ */
/* AVX2 (256-bit integer)                                                                     */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_AVX2_ITERS 8000u

typedef struct vec_init {
    ks_st_vec x, y, z, ctrl;
} vec_init;

static void vec_seed(vec_init *in)
{
    uint64_t s = ks_selftest__seed;
    draw(&s, in->x.b, 8);
    draw(&s, in->y.b, 8);
    draw(&s, in->z.b, 8);
    draw(&s, in->ctrl.b, 8);
    for (int i = 0; i < 64; i++)
        in->ctrl.b[i] &= 0x8f; /* some zeroing lanes, index within the 16-byte lane */
}

/* vpshufb over n_bytes: in-lane byte shuffle with zeroing (bit 7 of the control). */
static void pshufb_ref(ks_st_vec *dst, const ks_st_vec *src, const ks_st_vec *ctrl, int n_bytes)
{
    ks_st_vec t;
    for (int i = 0; i < n_bytes; i++) {
        uint8_t c = ctrl->b[i];
        t.b[i] = (c & 0x80) ? 0 : src->b[(i & ~15) + (c & 15)];
    }
    memcpy(dst->b, t.b, (size_t)n_bytes);
}

__attribute__((target("avx2"))) size_t ks_st__avx2_run(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    uint8_t buf[96];
    vec_seed(&in);
    __m256i x = _mm256_loadu_si256((const __m256i *)in.x.b);
    __m256i y = _mm256_loadu_si256((const __m256i *)in.y.b);
    __m256i z = _mm256_loadu_si256((const __m256i *)in.z.b);
    const __m256i ctrl = _mm256_loadu_si256((const __m256i *)in.ctrl.b);
    const __m256i m31 = _mm256_set1_epi32(31);
    for (uint32_t i = 0; i < KS_ST_AVX2_ITERS; i++) {
        x = _mm256_add_epi32(_mm256_mullo_epi32(x, y), z);
        y = _mm256_xor_si256(y, _mm256_srlv_epi32(x, _mm256_and_si256(y, m31)));
        x = _mm256_permutevar8x32_epi32(x, y);
        z = _mm256_add_epi64(z, _mm256_shuffle_epi8(x, ctrl));
    }
    _mm256_storeu_si256((__m256i *)buf, x);
    _mm256_storeu_si256((__m256i *)(buf + 32), y);
    _mm256_storeu_si256((__m256i *)(buf + 64), z);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__avx2_expect(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    ks_st_vec t;
    uint8_t buf[96];
    vec_seed(&in);
    ks_st_vec x = in.x, y = in.y, z = in.z;
    for (uint32_t i = 0; i < KS_ST_AVX2_ITERS; i++) {
        for (int l = 0; l < 8; l++)
            x.w[l] = x.w[l] * y.w[l] + z.w[l];
        for (int l = 0; l < 8; l++)
            y.w[l] ^= x.w[l] >> (y.w[l] & 31);
        for (int l = 0; l < 8; l++)
            t.w[l] = x.w[y.w[l] & 7];
        memcpy(x.w, t.w, 32);
        pshufb_ref(&t, &x, &in.ctrl, 32);
        for (int l = 0; l < 4; l++)
            z.q[l] += t.q[l];
    }
    memcpy(buf, x.b, 32);
    memcpy(buf + 32, y.b, 32);
    memcpy(buf + 64, z.b, 32);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* FMA: fused multiply-add rounds once; the reference computes a*b+c exactly in 128-bit       */
/* integers and rounds once when converting to double                                         */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_FMA_ELEMS 4096u

/* Operands: a, b < 2^35 (exact in a double), c = +-m * 2^17 with m < 2^53 (exact); so
 * a*b is up to 70 bits and the unfused a*b+c would round twice. */
static void fma_operands(uint64_t *s, int64_t a[4], int64_t b[4], __int128 c[4])
{
    for (int l = 0; l < 4; l++) {
        uint64_t r = ks_st__next(s), q = ks_st__next(s);
        a[l] = (int64_t)(r & ((UINT64_C(1) << 35) - 1));
        b[l] = (int64_t)(r >> 29);
        __int128 m = (__int128)(q >> 11) << 17;
        c[l] = (q & 1) ? -m : m;
    }
}

static uint64_t dbits(double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    return u;
}

__attribute__((target("avx,fma"))) size_t ks_st__fma_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h[3] = {0, 0, 0};
    for (uint32_t i = 0; i < KS_ST_FMA_ELEMS / 4; i++) {
        int64_t a[4], b[4];
        __int128 c[4];
        double da[4], db[4], dc[4], r[3][4];
        fma_operands(&s, a, b, c);
        for (int l = 0; l < 4; l++) {
            da[l] = (double)a[l];
            db[l] = (double)b[l];
            dc[l] = (double)c[l];
        }
        __m256d va = _mm256_loadu_pd(da), vb = _mm256_loadu_pd(db), vc = _mm256_loadu_pd(dc);
        _mm256_storeu_pd(r[0], _mm256_fmadd_pd(va, vb, vc));
        _mm256_storeu_pd(r[1], _mm256_fnmadd_pd(va, vb, vc));
        _mm256_storeu_pd(r[2], _mm256_fmsub_pd(va, vb, vc));
        for (int k = 0; k < 3; k++)
            for (int l = 0; l < 4; l++)
                h[k] = ks_st__rotl(h[k], 13) ^ dbits(r[k][l]);
    }
    return ks_st__out(out, h, sizeof(h));
}

size_t ks_st__fma_expect(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t s = ks_selftest__seed, h[3] = {0, 0, 0};
    for (uint32_t i = 0; i < KS_ST_FMA_ELEMS / 4; i++) {
        int64_t a[4], b[4];
        __int128 c[4];
        double r[3][4];
        fma_operands(&s, a, b, c);
        for (int l = 0; l < 4; l++) {
            __int128 p = (__int128)a[l] * b[l];
            r[0][l] = (double)(p + c[l]);
            r[1][l] = (double)(c[l] - p);
            r[2][l] = (double)(p - c[l]);
        }
        for (int k = 0; k < 3; k++)
            for (int l = 0; l < 4; l++)
                h[k] = ks_st__rotl(h[k], 13) ^ dbits(r[k][l]);
    }
    return ks_st__out(out, h, sizeof(h));
}

/* ------------------------------------------------------------------------------------------ */
/* AVX-512F                                                                                   */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_AVX512_ITERS 4000u
#define KS_ST_AVX512_K 0.99993896484375

__attribute__((target("avx512f"))) size_t ks_st__avx512f_run(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    uint8_t buf[128];
    vec_seed(&in);
    __m512i x = _mm512_loadu_si512(in.x.b), y = _mm512_loadu_si512(in.y.b);
    __m512i z = _mm512_loadu_si512(in.z.b);
    __m512d d = _mm512_setzero_pd();
    const __m512i one = _mm512_set1_epi32(1);
    const __m512d k = _mm512_set1_pd(KS_ST_AVX512_K);
    for (uint32_t i = 0; i < KS_ST_AVX512_ITERS; i++) {
        x = _mm512_add_epi64(x, y);
        y = _mm512_ternarylogic_epi64(y, x, z, 0x96);
        z = _mm512_mullo_epi32(z, _mm512_or_si512(x, one));
        x = _mm512_permutexvar_epi32(y, x);
        __mmask16 m = _mm512_cmplt_epu32_mask(x, y);
        z = _mm512_mask_add_epi32(z, m, z, y);
        x = _mm512_rol_epi64(x, 17);
        d = _mm512_add_pd(_mm512_mul_pd(d, k), _mm512_cvtepi32_pd(_mm512_castsi512_si256(x)));
    }
    /* 4 x 64 bytes do not fit: fold z into x and keep d whole */
    x = _mm512_xor_si512(x, z);
    _mm512_storeu_si512(buf, x);
    _mm512_storeu_pd(buf + 64, d);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__avx512f_expect(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    ks_st_vec t;
    double d[8] = {0};
    uint8_t buf[128];
    vec_seed(&in);
    ks_st_vec x = in.x, y = in.y, z = in.z;
    for (uint32_t i = 0; i < KS_ST_AVX512_ITERS; i++) {
        for (int l = 0; l < 8; l++)
            x.q[l] += y.q[l];
        for (int l = 0; l < 8; l++)
            y.q[l] = y.q[l] ^ x.q[l] ^ z.q[l];
        for (int l = 0; l < 16; l++)
            z.w[l] *= x.w[l] | 1;
        for (int l = 0; l < 16; l++)
            t.w[l] = x.w[y.w[l] & 15];
        x = t;
        for (int l = 0; l < 16; l++)
            if (x.w[l] < y.w[l])
                z.w[l] += y.w[l];
        for (int l = 0; l < 8; l++)
            x.q[l] = ks_st__rotl(x.q[l], 17);
        for (int l = 0; l < 8; l++)
            d[l] = d[l] * KS_ST_AVX512_K + (double)x.sw[l];
    }
    for (int l = 0; l < 8; l++)
        x.q[l] ^= z.q[l];
    memcpy(buf, x.b, 64);
    memcpy(buf + 64, d, 64);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* AVX-512BW (byte and word lanes, 64-bit masks)                                              */
/* ------------------------------------------------------------------------------------------ */

__attribute__((target("avx512f,avx512bw"))) size_t ks_st__avx512bw_run(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    uint8_t buf[128];
    vec_seed(&in);
    __m512i x = _mm512_loadu_si512(in.x.b), y = _mm512_loadu_si512(in.y.b);
    __m512i z = _mm512_loadu_si512(in.z.b);
    const __m512i one16 = _mm512_set1_epi16(1), m8f = _mm512_set1_epi8((char)0x8f);
    for (uint32_t i = 0; i < KS_ST_AVX512_ITERS; i++) {
        x = _mm512_add_epi8(x, y);
        y = _mm512_mullo_epi16(y, _mm512_or_si512(x, one16));
        z = _mm512_shuffle_epi8(z, _mm512_and_si512(x, m8f));
        __mmask64 m = _mm512_cmplt_epu8_mask(x, y);
        x = _mm512_mask_sub_epi8(x, m, x, z);
        z = _mm512_xor_si512(z, _mm512_srli_epi16(y, 3));
    }
    _mm512_storeu_si512(buf, x);
    _mm512_storeu_si512(buf + 64, _mm512_xor_si512(y, z));
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__avx512bw_expect(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    ks_st_vec ctrl;
    uint8_t buf[128];
    vec_seed(&in);
    ks_st_vec x = in.x, y = in.y, z = in.z;
    for (uint32_t i = 0; i < KS_ST_AVX512_ITERS; i++) {
        for (int l = 0; l < 64; l++)
            x.b[l] = (uint8_t)(x.b[l] + y.b[l]);
        for (int l = 0; l < 32; l++)
            y.h[l] = (uint16_t)((uint32_t)y.h[l] * (x.h[l] | 1u));
        for (int l = 0; l < 64; l++)
            ctrl.b[l] = x.b[l] & 0x8f;
        pshufb_ref(&z, &z, &ctrl, 64);
        for (int l = 0; l < 64; l++)
            if (x.b[l] < y.b[l])
                x.b[l] = (uint8_t)(x.b[l] - z.b[l]);
        for (int l = 0; l < 32; l++)
            z.h[l] ^= (uint16_t)(y.h[l] >> 3);
    }
    memcpy(buf, x.b, 64);
    for (int l = 0; l < 8; l++)
        y.q[l] ^= z.q[l];
    memcpy(buf + 64, y.b, 64);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* AVX-512VL (EVEX-encoded 256- and 128-bit operations)                                      */
/* ------------------------------------------------------------------------------------------ */

__attribute__((target("avx512f,avx512vl"))) size_t ks_st__avx512vl_run(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    uint8_t buf[64];
    vec_seed(&in);
    __m256i x = _mm256_loadu_si256((const __m256i *)in.x.b);
    __m256i y = _mm256_loadu_si256((const __m256i *)in.y.b);
    for (uint32_t i = 0; i < KS_ST_AVX512_ITERS; i++) {
        x = _mm256_ternarylogic_epi32(x, y, _mm256_rol_epi32(x, 7), 0xe8);
        __mmask8 m = _mm256_cmplt_epu32_mask(x, y);
        y = _mm256_mask_add_epi32(y, m, y, x);
        y = _mm256_permutexvar_epi32(x, y);
        __m128i lo = _mm_ror_epi64(_mm256_castsi256_si128(y), 11);
        y = _mm256_mask_blend_epi32(0x0f, y, _mm256_zextsi128_si256(lo));
        x = _mm256_add_epi32(x, _mm256_set1_epi32((int)i));
    }
    _mm256_storeu_si256((__m256i *)buf, x);
    _mm256_storeu_si256((__m256i *)(buf + 32), y);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__avx512vl_expect(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    ks_st_vec t;
    uint8_t buf[64];
    vec_seed(&in);
    ks_st_vec x = in.x, y = in.y;
    for (uint32_t i = 0; i < KS_ST_AVX512_ITERS; i++) {
        for (int l = 0; l < 8; l++) {
            uint32_t a = x.w[l], b = y.w[l], c = (a << 7) | (a >> 25);
            x.w[l] = (a & b) | (a & c) | (b & c); /* vpternlogd 0xe8: majority */
        }
        for (int l = 0; l < 8; l++)
            if (x.w[l] < y.w[l])
                y.w[l] += x.w[l];
        for (int l = 0; l < 8; l++)
            t.w[l] = y.w[x.w[l] & 7];
        memcpy(y.w, t.w, 32);
        for (int l = 0; l < 2; l++)
            y.q[l] = ks_st__rotl(y.q[l], 64 - 11);
        for (int l = 0; l < 8; l++)
            x.w[l] += i;
    }
    memcpy(buf, x.b, 32);
    memcpy(buf + 32, y.b, 32);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* AVX-512DQ (64-bit multiply, int64 <-> double conversions, FP logic, mask moves)           */
/* ------------------------------------------------------------------------------------------ */

__attribute__((target("avx512f,avx512dq"))) size_t ks_st__avx512dq_run(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    uint8_t buf[128];
    vec_seed(&in);
    __m512i x = _mm512_loadu_si512(in.x.b), y = _mm512_loadu_si512(in.y.b);
    __m512d d = _mm512_castsi512_pd(_mm512_loadu_si512(in.z.b));
    const __m512i one = _mm512_set1_epi64(1);
    for (uint32_t i = 0; i < KS_ST_AVX512_ITERS; i++) {
        x = _mm512_mullo_epi64(x, _mm512_or_si512(y, one));
        y = _mm512_add_epi64(y, _mm512_srai_epi64(x, 5));
        __m512d c = _mm512_cvtepi64_pd(_mm512_srli_epi64(x, 2));
        d = _mm512_xor_pd(d, c);
        y = _mm512_xor_si512(y, _mm512_cvttpd_epi64(c));
        __mmask8 m = _mm512_movepi64_mask(x);
        y = _mm512_mask_add_epi64(y, m, y, x);
    }
    _mm512_storeu_si512(buf, _mm512_xor_si512(x, y));
    _mm512_storeu_pd(buf + 64, d);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__avx512dq_expect(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    uint8_t buf[128];
    vec_seed(&in);
    ks_st_vec x = in.x, y = in.y, d = in.z;
    for (uint32_t i = 0; i < KS_ST_AVX512_ITERS; i++) {
        for (int l = 0; l < 8; l++) {
            x.q[l] *= y.q[l] | 1;
            y.q[l] += (uint64_t)(x.sq[l] >> 5);
            double c = (double)(int64_t)(x.q[l] >> 2);
            d.q[l] ^= dbits(c);
            y.q[l] ^= (uint64_t)(int64_t)c;
            if (x.q[l] >> 63)
                y.q[l] += x.q[l];
        }
    }
    for (int l = 0; l < 8; l++)
        x.q[l] ^= y.q[l];
    memcpy(buf, x.b, 64);
    memcpy(buf + 64, d.b, 64);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* AVX-512 VNNI (VPDPBUSD, VPDPWSSD)                                                          */
/* ------------------------------------------------------------------------------------------ */

__attribute__((target("avx512f,avx512vnni"))) size_t ks_st__vnni_run(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    uint8_t buf[128];
    vec_seed(&in);
    __m512i a = _mm512_loadu_si512(in.x.b), b = _mm512_loadu_si512(in.y.b);
    __m512i acc = _mm512_loadu_si512(in.z.b), acc2 = _mm512_setzero_si512();
    for (uint32_t i = 0; i < KS_ST_AVX512_ITERS; i++) {
        acc = _mm512_dpbusd_epi32(acc, a, b);
        acc2 = _mm512_dpwssd_epi32(acc2, a, b);
        a = _mm512_xor_si512(a, _mm512_slli_epi32(acc, 3));
        b = _mm512_add_epi32(b, _mm512_srli_epi32(acc2, 7));
    }
    _mm512_storeu_si512(buf, acc);
    _mm512_storeu_si512(buf + 64, acc2);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__vnni_expect(uint8_t out[KS_ST_OUT_MAX])
{
    vec_init in;
    uint8_t buf[128];
    vec_seed(&in);
    ks_st_vec a = in.x, b = in.y, acc = in.z, acc2;
    memset(&acc2, 0, sizeof(acc2));
    for (uint32_t i = 0; i < KS_ST_AVX512_ITERS; i++) {
        for (int l = 0; l < 16; l++) {
            int32_t sum = 0;
            for (int j = 0; j < 4; j++)
                sum += (int32_t)a.b[4 * l + j] * (int32_t)b.sb[4 * l + j];
            acc.w[l] += (uint32_t)sum;
            uint32_t p0 = (uint32_t)((int32_t)(int16_t)a.h[2 * l] * (int16_t)b.h[2 * l]);
            uint32_t p1 = (uint32_t)((int32_t)(int16_t)a.h[2 * l + 1] * (int16_t)b.h[2 * l + 1]);
            acc2.w[l] += p0 + p1;
        }
        for (int l = 0; l < 16; l++) {
            a.w[l] ^= acc.w[l] << 3;
            b.w[l] += acc2.w[l] >> 7;
        }
    }
    memcpy(buf, acc.b, 64);
    memcpy(buf + 64, acc2.b, 64);
    return ks_st__out(out, buf, sizeof(buf));
}

#endif /* __x86_64__ */
