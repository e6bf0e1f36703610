/*
 * st_avx512x.c - self-test workloads for the narrower AVX-512 extensions and
 * GFNI: CD (VPLZCNTQ, VPCONFLICTD), VPOPCNTDQ, BITALG (VPOPCNTB/W), VBMI
 * (VPERMB, VPMULTISHIFTQB), IFMA (VPMADD52LUQ/HUQ) and GFNI (GF2P8MULB,
 * GF2P8AFFINEQB).  Same contract as st_avx.c: `run` on the unit, `expect` in
 * scalar C from each instruction's definition.  Stateless.
 */
#include <stdint.h>
#include <string.h>

#include "ks_selftest_int.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define KS_ST_X_ITERS 4000u

typedef struct x_init {
    ks_st_vec a, b, c;
} x_init;

static void x_seed(x_init *in, uint64_t salt)
{
    uint64_t s = ks_selftest__seed ^ salt;
    for (int i = 0; i < 8; i++) {
        in->a.q[i] = ks_st__next(&s);
        in->b.q[i] = ks_st__next(&s);
        in->c.q[i] = ks_st__next(&s);
    }
}

static unsigned popcount8(uint64_t v)
{
    unsigned n = 0;
    for (; v; v &= v - 1)
        n++;
    return n;
}

static unsigned lzcnt64(uint64_t v)
{
    unsigned n = 0;
    for (uint64_t bit = UINT64_C(1) << 63; bit && !(v & bit); bit >>= 1)
        n++;
    return n;
}

/* ---- AVX-512CD ------------------------------------------------------------------------- */

__attribute__((target("avx512f,avx512cd"))) size_t ks_st__avx512cd_run(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    uint8_t buf[128];
    x_seed(&in, 0x4344);
    __m512i a = _mm512_loadu_si512(in.a.b), b = _mm512_loadu_si512(in.b.b);
    const __m512i m15 = _mm512_set1_epi32(15);
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        /* small values so that equal lanes (conflicts) actually occur */
        __m512i conf = _mm512_conflict_epi32(_mm512_and_si512(a, m15));
        __m512i lz =
            _mm512_lzcnt_epi64(_mm512_srlv_epi64(b, _mm512_and_si512(a, _mm512_set1_epi64(63))));
        a = _mm512_add_epi32(_mm512_xor_si512(a, conf), _mm512_rol_epi32(b, 5));
        b = _mm512_add_epi64(b, _mm512_add_epi64(lz, _mm512_slli_epi64(a, 1)));
    }
    _mm512_storeu_si512(buf, a);
    _mm512_storeu_si512(buf + 64, b);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__avx512cd_expect(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    uint8_t buf[128];
    x_seed(&in, 0x4344);
    ks_st_vec a = in.a, b = in.b, conf, lz;
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        for (int l = 0; l < 16; l++) {
            conf.w[l] = 0;
            for (int j = 0; j < l; j++)
                if ((a.w[j] & 15) == (a.w[l] & 15))
                    conf.w[l] |= 1u << j;
        }
        for (int l = 0; l < 8; l++)
            lz.q[l] = lzcnt64(b.q[l] >> (a.q[l] & 63));
        for (int l = 0; l < 16; l++)
            a.w[l] = (a.w[l] ^ conf.w[l]) + ((b.w[l] << 5) | (b.w[l] >> 27));
        for (int l = 0; l < 8; l++)
            b.q[l] += lz.q[l] + (a.q[l] << 1);
    }
    memcpy(buf, a.b, 64);
    memcpy(buf + 64, b.b, 64);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ---- AVX-512 VPOPCNTDQ and BITALG -------------------------------------------------------- */

__attribute__((target("avx512f,avx512vpopcntdq"))) size_t
ks_st__vpopcntdq_run(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    uint8_t buf[64];
    x_seed(&in, 0x5043);
    __m512i a = _mm512_loadu_si512(in.a.b), h = _mm512_setzero_si512();
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        h = _mm512_add_epi64(h, _mm512_popcnt_epi64(a));
        h = _mm512_xor_si512(h, _mm512_popcnt_epi32(_mm512_rol_epi64(a, 13)));
        a = _mm512_add_epi64(_mm512_rol_epi64(a, 7), h);
    }
    _mm512_storeu_si512(buf, _mm512_xor_si512(a, h));
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__vpopcntdq_expect(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    x_seed(&in, 0x5043);
    ks_st_vec a = in.a, h, t;
    memset(&h, 0, sizeof(h));
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        for (int l = 0; l < 8; l++) {
            h.q[l] += popcount8(a.q[l]);
            t.q[l] = ks_st__rotl(a.q[l], 13);
        }
        for (int l = 0; l < 16; l++)
            h.w[l] ^= popcount8(t.w[l]);
        for (int l = 0; l < 8; l++)
            a.q[l] = ks_st__rotl(a.q[l], 7) + h.q[l];
    }
    for (int l = 0; l < 8; l++)
        a.q[l] ^= h.q[l];
    return ks_st__out(out, a.b, 64);
}

__attribute__((target("avx512f,avx512bw,avx512bitalg"))) size_t
ks_st__bitalg_run(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    uint8_t buf[64];
    x_seed(&in, 0x4241);
    __m512i a = _mm512_loadu_si512(in.a.b), h = _mm512_loadu_si512(in.b.b);
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        h = _mm512_add_epi8(h, _mm512_popcnt_epi8(a));
        h = _mm512_xor_si512(h, _mm512_popcnt_epi16(_mm512_add_epi16(a, h)));
        a = _mm512_add_epi64(_mm512_rol_epi64(a, 11), h);
    }
    _mm512_storeu_si512(buf, _mm512_xor_si512(a, h));
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__bitalg_expect(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    x_seed(&in, 0x4241);
    ks_st_vec a = in.a, h = in.b;
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        for (int l = 0; l < 64; l++)
            h.b[l] = (uint8_t)(h.b[l] + popcount8(a.b[l]));
        for (int l = 0; l < 32; l++)
            h.h[l] ^= (uint16_t)popcount8((uint16_t)(a.h[l] + h.h[l]));
        for (int l = 0; l < 8; l++)
            a.q[l] = ks_st__rotl(a.q[l], 11) + h.q[l];
    }
    for (int l = 0; l < 8; l++)
        a.q[l] ^= h.q[l];
    return ks_st__out(out, a.b, 64);
}

/* ---- AVX-512 VBMI -------------------------------------------------------------------------- */

__attribute__((target("avx512f,avx512bw,avx512vbmi"))) size_t
ks_st__vbmi_run(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    uint8_t buf[128];
    x_seed(&in, 0x5642);
    __m512i a = _mm512_loadu_si512(in.a.b), b = _mm512_loadu_si512(in.b.b);
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        a = _mm512_permutexvar_epi8(b, a);
        b = _mm512_add_epi8(b, _mm512_multishift_epi64_epi8(a, b));
        a = _mm512_xor_si512(a, _mm512_set1_epi64((long long)i));
    }
    _mm512_storeu_si512(buf, a);
    _mm512_storeu_si512(buf + 64, b);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__vbmi_expect(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    uint8_t buf[128];
    x_seed(&in, 0x5642);
    ks_st_vec a = in.a, b = in.b, t;
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        for (int l = 0; l < 64; l++) /* vpermb: full-width byte permutation */
            t.b[l] = a.b[b.b[l] & 63];
        a = t;
        for (int q = 0; q < 8; q++) /* vpmultishiftqb: byte j = data rotated by ctrl byte j */
            for (int j = 0; j < 8; j++) {
                unsigned sh = a.b[8 * q + j] & 63;
                uint64_t rot = sh ? (b.q[q] >> sh) | (b.q[q] << (64 - sh)) : b.q[q];
                t.b[8 * q + j] = (uint8_t)rot;
            }
        for (int l = 0; l < 64; l++)
            b.b[l] = (uint8_t)(b.b[l] + t.b[l]);
        for (int l = 0; l < 8; l++)
            a.q[l] ^= i;
    }
    memcpy(buf, a.b, 64);
    memcpy(buf + 64, b.b, 64);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ---- AVX-512 IFMA (52-bit multiply-add) -------------------------------------------------- */

#define KS_ST_M52 ((UINT64_C(1) << 52) - 1)

__attribute__((target("avx512f,avx512ifma"))) size_t ks_st__ifma_run(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    uint8_t buf[128];
    x_seed(&in, 0x4946);
    __m512i lo = _mm512_loadu_si512(in.a.b), hi = _mm512_setzero_si512();
    __m512i b = _mm512_loadu_si512(in.b.b), c = _mm512_loadu_si512(in.c.b);
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        lo = _mm512_madd52lo_epu64(lo, b, c);
        hi = _mm512_madd52hi_epu64(hi, b, c);
        b = _mm512_xor_si512(b, _mm512_rol_epi64(lo, 23));
        c = _mm512_add_epi64(c, hi);
    }
    _mm512_storeu_si512(buf, lo);
    _mm512_storeu_si512(buf + 64, hi);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__ifma_expect(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    uint8_t buf[128];
    x_seed(&in, 0x4946);
    ks_st_vec lo = in.a, hi, b = in.b, c = in.c;
    memset(&hi, 0, sizeof(hi));
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        for (int l = 0; l < 8; l++) {
            unsigned __int128 p = (unsigned __int128)(b.q[l] & KS_ST_M52) * (c.q[l] & KS_ST_M52);
            lo.q[l] += (uint64_t)p & KS_ST_M52;
            hi.q[l] += (uint64_t)(p >> 52) & KS_ST_M52;
        }
        for (int l = 0; l < 8; l++) {
            b.q[l] ^= ks_st__rotl(lo.q[l], 23);
            c.q[l] += hi.q[l];
        }
    }
    memcpy(buf, lo.b, 64);
    memcpy(buf + 64, hi.b, 64);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ---- GFNI ------------------------------------------------------------------------------------ */

/* GF(2^8) product modulo the AES polynomial x^8 + x^4 + x^3 + x + 1. */
static uint8_t gf_mul(uint8_t a, uint8_t b)
{
    uint8_t r = 0;
    while (b) {
        if (b & 1)
            r ^= a;
        a = (uint8_t)((a << 1) ^ ((a & 0x80) ? 0x1b : 0));
        b >>= 1;
    }
    return r;
}

/* GF2P8AFFINEQB on one byte: bit i = parity(matrix byte 7-i AND x) XOR imm bit i. */
static uint8_t gf_affine(uint64_t matrix, uint8_t x, uint8_t imm)
{
    uint8_t r = 0;
    for (int i = 0; i < 8; i++) {
        uint8_t row = (uint8_t)(matrix >> (8 * (7 - i)));
        r |= (uint8_t)((popcount8((uint8_t)(row & x)) & 1) << i);
    }
    return r ^ imm;
}

#define KS_ST_GFNI_IMM 0x5b

__attribute__((target("gfni,sse2"))) size_t ks_st__gfni_run(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    uint8_t buf[32];
    x_seed(&in, 0x4746);
    __m128i a = _mm_loadu_si128((const __m128i *)in.a.b);
    __m128i b = _mm_loadu_si128((const __m128i *)in.b.b);
    __m128i m = _mm_loadu_si128((const __m128i *)in.c.b);
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        a = _mm_gf2p8mul_epi8(a, b);
        b = _mm_gf2p8affine_epi64_epi8(_mm_xor_si128(b, a), m, KS_ST_GFNI_IMM);
        a = _mm_add_epi8(a, _mm_set1_epi8((char)(i | 1)));
    }
    _mm_storeu_si128((__m128i *)buf, a);
    _mm_storeu_si128((__m128i *)(buf + 16), b);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__gfni_expect(uint8_t out[KS_ST_OUT_MAX])
{
    x_init in;
    uint8_t buf[32];
    x_seed(&in, 0x4746);
    ks_st_vec a = in.a, b = in.b, m = in.c;
    for (uint32_t i = 0; i < KS_ST_X_ITERS; i++) {
        for (int l = 0; l < 16; l++)
            a.b[l] = gf_mul(a.b[l], b.b[l]);
        for (int l = 0; l < 16; l++)
            b.b[l] = gf_affine(m.q[l / 8], (uint8_t)(b.b[l] ^ a.b[l]), KS_ST_GFNI_IMM);
        for (int l = 0; l < 16; l++)
            a.b[l] = (uint8_t)(a.b[l] + (uint8_t)(i | 1));
    }
    memcpy(buf, a.b, 16);
    memcpy(buf + 16, b.b, 16);
    return ks_st__out(out, buf, sizeof(buf));
}

#endif /* __x86_64__ */
