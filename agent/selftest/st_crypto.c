/*
 * st_crypto.c - self-test workloads for AES-NI, VAES, PCLMULQDQ, VPCLMULQDQ
 * and SHA-NI (SHA-256).
 *
 * References are scalar implementations of each instruction's definition
 * (FIPS-197 round steps, carry-less multiplication, FIPS 180-4 compression).
 * Constant tables (S-boxes, SHA-256 round constants) are derived at run time
 * from their mathematical definition rather than typed in, so a typo cannot
 * make the reference agree with a faulty unit.  Stateless and thread-safe.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ks_selftest_int.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------------------------------ */
/* Scalar AES round primitives (state byte i = row i % 4, column i / 4, as in AES-NI)        */
/* ------------------------------------------------------------------------------------------ */

/* MixColumns coefficients, forward (2 3 1 1) and inverse (14 11 13 9). */
static const uint8_t mix_coef[2][4] = {{2, 3, 1, 1}, {14, 11, 13, 9}};

typedef struct aes_tables {
    uint8_t sbox[256], inv[256];
    uint8_t mul[2][4][256]; /* mul[inverse][j][x] = x * mix_coef[inverse][j] in GF(2^8) */
} aes_tables;

static uint8_t gmul(uint8_t a, uint8_t b);

static uint8_t rotl8(uint8_t v, unsigned r)
{
    return (uint8_t)((v << r) | (v >> (8 - r)));
}

/* S-box from the definition: multiplicative inverse in GF(2^8) then the affine
 * map; walks the field with generator 3 (p) and its inverse (q). */
static void aes_tables_build(aes_tables *t)
{
    uint8_t p = 1, q = 1;
    do {
        p = (uint8_t)(p ^ (p << 1) ^ ((p & 0x80) ? 0x1b : 0));
        q = (uint8_t)(q ^ (q << 1));
        q = (uint8_t)(q ^ (q << 2));
        q = (uint8_t)(q ^ (q << 4));
        if (q & 0x80)
            q ^= 0x09;
        uint8_t x = (uint8_t)(q ^ rotl8(q, 1) ^ rotl8(q, 2) ^ rotl8(q, 3) ^ rotl8(q, 4));
        t->sbox[p] = (uint8_t)(x ^ 0x63);
    } while (p != 1);
    t->sbox[0] = 0x63;
    for (int i = 0; i < 256; i++)
        t->inv[t->sbox[i]] = (uint8_t)i;
    for (int d = 0; d < 2; d++)
        for (int j = 0; j < 4; j++)
            for (int x = 0; x < 256; x++)
                t->mul[d][j][x] = gmul((uint8_t)x, mix_coef[d][j]);
}

static const aes_tables *aes_get_tables(void)
{
    /* Built once per thread (a few thousand steps): no initialisation races
     * between CPUs tested in parallel, and a fresh copy in every forked child. */
    static _Thread_local aes_tables t;
    static _Thread_local bool built;
    if (!built) {
        aes_tables_build(&t);
        built = true;
    }
    return &t;
}

static uint8_t gmul(uint8_t a, uint8_t b)
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

/* The MixColumns matrix is circulant: row r, column j holds coefficient (j - r) mod 4. */
static void mix_column(uint8_t *c, bool inverse)
{
    const aes_tables *t = aes_get_tables();
    const uint8_t(*m)[256] = t->mul[inverse ? 1 : 0];
    uint8_t a[4] = {c[0], c[1], c[2], c[3]};
    for (int r = 0; r < 4; r++)
        c[r] = (uint8_t)(m[(4 - r) & 3][a[0]] ^ m[(5 - r) & 3][a[1]] ^ m[(6 - r) & 3][a[2]] ^
                         m[(7 - r) & 3][a[3]]);
}

void ks_st__aes_ref_enc(uint8_t s[16], const uint8_t k[16], bool last)
{
    const aes_tables *t = aes_get_tables();
    uint8_t o[16];
    for (int c = 0; c < 4; c++) /* ShiftRows + SubBytes */
        for (int r = 0; r < 4; r++)
            o[r + 4 * c] = t->sbox[s[r + 4 * ((c + r) & 3)]];
    if (!last)
        for (int c = 0; c < 4; c++)
            mix_column(o + 4 * c, false);
    for (int i = 0; i < 16; i++)
        s[i] = o[i] ^ k[i];
}

void ks_st__aes_ref_dec(uint8_t s[16], const uint8_t k[16], bool last)
{
    const aes_tables *t = aes_get_tables();
    uint8_t o[16];
    for (int c = 0; c < 4; c++) /* InvShiftRows + InvSubBytes */
        for (int r = 0; r < 4; r++)
            o[r + 4 * c] = t->inv[s[r + 4 * ((c - r + 4) & 3)]];
    if (!last)
        for (int c = 0; c < 4; c++)
            mix_column(o + 4 * c, true);
    for (int i = 0; i < 16; i++)
        s[i] = o[i] ^ k[i];
}

void ks_st__aes_ref_imc(uint8_t s[16])
{
    for (int c = 0; c < 4; c++)
        mix_column(s + 4 * c, true);
}

/* AESKEYGENASSIST: SubWord/RotWord of dwords 1 and 3, xor rcon. */
static void aes_ref_keygen(uint8_t out[16], const uint8_t in[16], uint8_t rcon)
{
    const aes_tables *t = aes_get_tables();
    for (int half = 0; half < 2; half++) {
        const uint8_t *x = in + 4 + 8 * half;
        uint8_t sub[4] = {t->sbox[x[0]], t->sbox[x[1]], t->sbox[x[2]], t->sbox[x[3]]};
        uint8_t *o = out + 8 * half;
        memcpy(o, sub, 4);
        o[4] = sub[1] ^ rcon;
        o[5] = sub[2];
        o[6] = sub[3];
        o[7] = sub[0];
    }
}

void ks_st__clmul_ref(uint64_t a, uint64_t b, uint64_t out[2])
{
    uint64_t lo = 0, hi = 0;
    for (unsigned i = 0; i < 64; i++) {
        if (b >> i & 1) {
            lo ^= a << i;
            hi ^= i ? a >> (64 - i) : 0;
        }
    }
    out[0] = lo;
    out[1] = hi;
}

#if defined(__x86_64__)

/* ------------------------------------------------------------------------------------------ */
/* AES-NI                                                                                      */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_AES_ITERS 4000u

typedef struct aes_init {
    uint8_t s[16], t[16], u[16], v[16], k[16];
} aes_init;

static void aes_seed(aes_init *in)
{
    uint64_t s = ks_selftest__seed;
    uint8_t *p[5] = {in->s, in->t, in->u, in->v, in->k};
    for (int i = 0; i < 5; i++) {
        uint64_t a = ks_st__next(&s), b = ks_st__next(&s);
        memcpy(p[i], &a, 8);
        memcpy(p[i] + 8, &b, 8);
    }
}

__attribute__((target("aes,sse2"))) size_t ks_st__aes_run(uint8_t out[KS_ST_OUT_MAX])
{
    aes_init in;
    uint8_t buf[80];
    aes_seed(&in);
    __m128i s = _mm_loadu_si128((const __m128i *)in.s), t = _mm_loadu_si128((const __m128i *)in.t);
    __m128i u = _mm_loadu_si128((const __m128i *)in.u), v = _mm_loadu_si128((const __m128i *)in.v);
    __m128i k = _mm_loadu_si128((const __m128i *)in.k);
    for (uint32_t i = 0; i < KS_ST_AES_ITERS; i++) {
        s = _mm_aesenc_si128(s, k);
        t = _mm_aesdec_si128(t, s);
        u = _mm_aesenclast_si128(u, t);
        v = _mm_aesdeclast_si128(v, u);
        k = _mm_xor_si128(k, _mm_aesimc_si128(v));
        k = _mm_xor_si128(k, _mm_aeskeygenassist_si128(s, 0x1b));
    }
    _mm_storeu_si128((__m128i *)buf, s);
    _mm_storeu_si128((__m128i *)(buf + 16), t);
    _mm_storeu_si128((__m128i *)(buf + 32), u);
    _mm_storeu_si128((__m128i *)(buf + 48), v);
    _mm_storeu_si128((__m128i *)(buf + 64), k);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__aes_expect(uint8_t out[KS_ST_OUT_MAX])
{
    aes_init in;
    uint8_t buf[80], tmp[16], kg[16];
    aes_seed(&in);
    for (uint32_t i = 0; i < KS_ST_AES_ITERS; i++) {
        ks_st__aes_ref_enc(in.s, in.k, false);
        ks_st__aes_ref_dec(in.t, in.s, false);
        ks_st__aes_ref_enc(in.u, in.t, true);
        ks_st__aes_ref_dec(in.v, in.u, true);
        memcpy(tmp, in.v, 16);
        ks_st__aes_ref_imc(tmp);
        aes_ref_keygen(kg, in.s, 0x1b);
        for (int j = 0; j < 16; j++)
            in.k[j] ^= (uint8_t)(tmp[j] ^ kg[j]);
    }
    memcpy(buf, in.s, 16);
    memcpy(buf + 16, in.t, 16);
    memcpy(buf + 32, in.u, 16);
    memcpy(buf + 48, in.v, 16);
    memcpy(buf + 64, in.k, 16);
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* VAES (two AES lanes per 256-bit register)                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct vaes_init {
    uint8_t s[32], t[32], u[32], v[32], k[32];
} vaes_init;

static void vaes_seed(vaes_init *in)
{
    uint64_t s = ks_selftest__seed ^ UINT64_C(0x5641455300000000);
    uint8_t *p[5] = {in->s, in->t, in->u, in->v, in->k};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) {
            uint64_t a = ks_st__next(&s);
            memcpy(p[i] + 8 * j, &a, 8);
        }
}

__attribute__((target("vaes,avx2"))) size_t ks_st__vaes_run(uint8_t out[KS_ST_OUT_MAX])
{
    vaes_init in;
    uint8_t buf[128];
    vaes_seed(&in);
    __m256i s = _mm256_loadu_si256((const __m256i *)in.s);
    __m256i t = _mm256_loadu_si256((const __m256i *)in.t);
    __m256i u = _mm256_loadu_si256((const __m256i *)in.u);
    __m256i v = _mm256_loadu_si256((const __m256i *)in.v);
    __m256i k = _mm256_loadu_si256((const __m256i *)in.k);
    for (uint32_t i = 0; i < KS_ST_AES_ITERS; i++) {
        s = _mm256_aesenc_epi128(s, k);
        t = _mm256_aesdec_epi128(t, s);
        u = _mm256_aesenclast_epi128(u, t);
        v = _mm256_aesdeclast_epi128(v, u);
        k = _mm256_add_epi64(k, v);
    }
    _mm256_storeu_si256((__m256i *)buf, s);
    _mm256_storeu_si256((__m256i *)(buf + 32), t);
    _mm256_storeu_si256((__m256i *)(buf + 64), u);
    _mm256_storeu_si256((__m256i *)(buf + 96), _mm256_xor_si256(v, k));
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__vaes_expect(uint8_t out[KS_ST_OUT_MAX])
{
    vaes_init in;
    uint8_t buf[128];
    vaes_seed(&in);
    for (uint32_t i = 0; i < KS_ST_AES_ITERS; i++) {
        for (int lane = 0; lane < 2; lane++) {
            int o = 16 * lane;
            ks_st__aes_ref_enc(in.s + o, in.k + o, false);
            ks_st__aes_ref_dec(in.t + o, in.s + o, false);
            ks_st__aes_ref_enc(in.u + o, in.t + o, true);
            ks_st__aes_ref_dec(in.v + o, in.u + o, true);
        }
        for (int j = 0; j < 4; j++) {
            uint64_t kq, vq;
            memcpy(&kq, in.k + 8 * j, 8);
            memcpy(&vq, in.v + 8 * j, 8);
            kq += vq;
            memcpy(in.k + 8 * j, &kq, 8);
        }
    }
    memcpy(buf, in.s, 32);
    memcpy(buf + 32, in.t, 32);
    memcpy(buf + 64, in.u, 32);
    for (int j = 0; j < 32; j++)
        buf[96 + j] = in.v[j] ^ in.k[j];
    return ks_st__out(out, buf, sizeof(buf));
}

/* ------------------------------------------------------------------------------------------ */
/* PCLMULQDQ, VPCLMULQDQ                                                                       */
/* ------------------------------------------------------------------------------------------ */

#define KS_ST_CLMUL_ITERS 8000u

static void clmul_seed(uint64_t a[4], uint64_t b[4])
{
    uint64_t s = ks_selftest__seed ^ UINT64_C(0x434c4d554c000000);
    for (int i = 0; i < 4; i++) {
        a[i] = ks_st__next(&s);
        b[i] = ks_st__next(&s);
    }
}

/* One step on one 128-bit lane: a = clmul(a.lo,b.lo) ^ swap(clmul(a.hi,b.hi)),
 * b += clmul(a.hi, b.lo) (64-bit lanes). */
static void clmul_step_ref(uint64_t a[2], uint64_t b[2])
{
    uint64_t r0[2], r1[2], r2[2];
    ks_st__clmul_ref(a[0], b[0], r0);
    ks_st__clmul_ref(a[1], b[1], r1);
    ks_st__clmul_ref(a[1], b[0], r2);
    a[0] = r0[0] ^ r1[1];
    a[1] = r0[1] ^ r1[0];
    b[0] += r2[0];
    b[1] += r2[1];
}

__attribute__((target("pclmul,sse2"))) size_t ks_st__pclmul_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t ai[4], bi[4];
    uint8_t buf[32];
    clmul_seed(ai, bi);
    __m128i a = _mm_loadu_si128((const __m128i *)ai), b = _mm_loadu_si128((const __m128i *)bi);
    for (uint32_t i = 0; i < KS_ST_CLMUL_ITERS; i++) {
        __m128i r0 = _mm_clmulepi64_si128(a, b, 0x00);
        __m128i r1 = _mm_clmulepi64_si128(a, b, 0x11);
        __m128i r2 = _mm_clmulepi64_si128(a, b, 0x01);
        a = _mm_xor_si128(r0, _mm_shuffle_epi32(r1, 0x4e));
        b = _mm_add_epi64(b, r2);
    }
    _mm_storeu_si128((__m128i *)buf, a);
    _mm_storeu_si128((__m128i *)(buf + 16), b);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__pclmul_expect(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t a[4], b[4];
    uint8_t buf[32];
    clmul_seed(a, b);
    for (uint32_t i = 0; i < KS_ST_CLMUL_ITERS; i++)
        clmul_step_ref(a, b);
    memcpy(buf, a, 16);
    memcpy(buf + 16, b, 16);
    return ks_st__out(out, buf, sizeof(buf));
}

__attribute__((target("vpclmulqdq,avx2"))) size_t ks_st__vpclmul_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t ai[4], bi[4];
    uint8_t buf[64];
    clmul_seed(ai, bi);
    __m256i a = _mm256_loadu_si256((const __m256i *)ai),
            b = _mm256_loadu_si256((const __m256i *)bi);
    for (uint32_t i = 0; i < KS_ST_CLMUL_ITERS; i++) {
        __m256i r0 = _mm256_clmulepi64_epi128(a, b, 0x00);
        __m256i r1 = _mm256_clmulepi64_epi128(a, b, 0x11);
        __m256i r2 = _mm256_clmulepi64_epi128(a, b, 0x01);
        a = _mm256_xor_si256(r0, _mm256_shuffle_epi32(r1, 0x4e));
        b = _mm256_add_epi64(b, r2);
    }
    _mm256_storeu_si256((__m256i *)buf, a);
    _mm256_storeu_si256((__m256i *)(buf + 32), b);
    return ks_st__out(out, buf, sizeof(buf));
}

size_t ks_st__vpclmul_expect(uint8_t out[KS_ST_OUT_MAX])
{
    uint64_t a[4], b[4];
    uint8_t buf[64];
    clmul_seed(a, b);
    for (uint32_t i = 0; i < KS_ST_CLMUL_ITERS; i++) {
        clmul_step_ref(a, b);
        clmul_step_ref(a + 2, b + 2);
    }
    memcpy(buf, a, 32);
    memcpy(buf + 32, b, 32);
    return ks_st__out(out, buf, sizeof(buf));
}

#endif /* __x86_64__ */

/* ------------------------------------------------------------------------------------------ */
/* SHA-256: constants from their definition, scalar compression (FIPS 180-4)                  */
/* ------------------------------------------------------------------------------------------ */

static uint64_t icbrt(unsigned __int128 n)
{
    uint64_t lo = 0, hi = UINT64_C(1) << 36;
    while (lo < hi) { /* largest x with x^3 <= n */
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if ((unsigned __int128)mid * mid * mid <= n)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static uint64_t isqrt(unsigned __int128 n)
{
    uint64_t lo = 0, hi = UINT64_C(1) << 36;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if ((unsigned __int128)mid * mid <= n)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* K[i] = first 32 bits of the fractional part of cbrt(prime i); H0[i] likewise of sqrt. */
static void sha256_constants(uint32_t k[64], uint32_t h0[8])
{
    unsigned n = 0;
    for (unsigned p = 2; n < 64; p++) {
        bool prime = true;
        for (unsigned d = 2; d * d <= p; d++)
            if (p % d == 0)
                prime = false;
        if (!prime)
            continue;
        k[n] = (uint32_t)icbrt((unsigned __int128)p << 96);
        if (n < 8)
            h0[n] = (uint32_t)isqrt((unsigned __int128)p << 64);
        n++;
    }
}

static uint32_t ror32(uint32_t v, unsigned r)
{
    return (v >> r) | (v << (32 - r));
}

static void sha256_compress_ref(uint32_t h[8], const uint8_t blk[64], const uint32_t k[64])
{
    uint32_t w[64], a[8];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)blk[4 * t] << 24 | (uint32_t)blk[4 * t + 1] << 16 |
               (uint32_t)blk[4 * t + 2] << 8 | blk[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = ror32(w[t - 15], 7) ^ ror32(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = ror32(w[t - 2], 17) ^ ror32(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    memcpy(a, h, sizeof(a));
    for (int t = 0; t < 64; t++) {
        uint32_t S1 = ror32(a[4], 6) ^ ror32(a[4], 11) ^ ror32(a[4], 25);
        uint32_t ch = (a[4] & a[5]) ^ (~a[4] & a[6]);
        uint32_t t1 = a[7] + S1 + ch + k[t] + w[t];
        uint32_t S0 = ror32(a[0], 2) ^ ror32(a[0], 13) ^ ror32(a[0], 22);
        uint32_t maj = (a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]);
        memmove(a + 1, a, 7 * sizeof(uint32_t));
        a[4] += t1;
        a[0] = t1 + S0 + maj;
    }
    for (int i = 0; i < 8; i++)
        h[i] += a[i];
}

void ks_st__sha256_ref(const uint8_t *msg, size_t len, uint8_t digest[32])
{
    uint32_t k[64], h[8];
    uint8_t blk[64];
    sha256_constants(k, h);
    size_t off = 0;
    for (; len - off >= 64; off += 64)
        sha256_compress_ref(h, msg + off, k);
    size_t rest = len - off;
    memset(blk, 0, sizeof(blk));
    memcpy(blk, msg + off, rest);
    blk[rest] = 0x80;
    if (rest >= 56) {
        sha256_compress_ref(h, blk, k);
        memset(blk, 0, sizeof(blk));
    }
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        blk[63 - i] = (uint8_t)(bits >> (8 * i));
    sha256_compress_ref(h, blk, k);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            digest[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

#define KS_ST_SHA_BLOCKS 32u

static void sha_seed(uint8_t data[KS_ST_SHA_BLOCKS * 64])
{
    uint64_t s = ks_selftest__seed ^ UINT64_C(0x5348410000000000);
    for (unsigned i = 0; i < KS_ST_SHA_BLOCKS * 8; i++) {
        uint64_t v = ks_st__next(&s);
        memcpy(data + 8 * i, &v, 8);
    }
}

size_t ks_st__sha_expect(uint8_t out[KS_ST_OUT_MAX])
{
    uint8_t data[KS_ST_SHA_BLOCKS * 64];
    uint32_t k[64], h[8];
    sha_seed(data);
    sha256_constants(k, h);
    for (unsigned b = 0; b < KS_ST_SHA_BLOCKS; b++)
        sha256_compress_ref(h, data + 64 * b, k);
    return ks_st__out(out, h, sizeof(h));
}

#if defined(__x86_64__)

/* SHA-256 compression with SHA256RNDS2/MSG1/MSG2.  The state lives as ABEF and
 * CDGH (the register layout SHA256RNDS2 wants), message words four at a time. */
__attribute__((target("sha,sse4.1,ssse3"))) size_t ks_st__sha_run(uint8_t out[KS_ST_OUT_MAX])
{
    uint8_t data[KS_ST_SHA_BLOCKS * 64];
    uint32_t k[64], h[8];
    sha_seed(data);
    sha256_constants(k, h);
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0xb1);
    __m128i st1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(h + 4)), 0x1b);
    __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);
    st1 = _mm_blend_epi16(st1, tmp, 0xf0);
    for (unsigned b = 0; b < KS_ST_SHA_BLOCKS; b++) {
        const uint8_t *blk = data + 64 * b;
        __m128i abef = st0, cdgh = st1, w[16];
        for (int g = 0; g < 16; g++) {
            if (g < 4)
                w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(blk + 16 * g)), bswap);
            else
                w[g] = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(w[g - 4], w[g - 3]),
                                                          _mm_alignr_epi8(w[g - 1], w[g - 2], 4)),
                                            w[g - 1]);
            __m128i wk = _mm_add_epi32(w[g], _mm_loadu_si128((const __m128i *)(k + 4 * g)));
            st1 = _mm_sha256rnds2_epu32(st1, st0, wk);
            wk = _mm_shuffle_epi32(wk, 0x0e);
            st0 = _mm_sha256rnds2_epu32(st0, st1, wk);
        }
        st0 = _mm_add_epi32(st0, abef);
        st1 = _mm_add_epi32(st1, cdgh);
    }
    tmp = _mm_shuffle_epi32(st0, 0x1b);
    st1 = _mm_shuffle_epi32(st1, 0xb1);
    _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(tmp, st1, 0xf0));
    _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(st1, tmp, 8));
    return ks_st__out(out, h, sizeof(h));
}

#endif /* __x86_64__ */
