/*
 * st_amx.c - AMX self-test: one TDPBSSD (signed int8 dot products into int32
 * tiles) on full 16x64-byte tiles, checked against scalar arithmetic.
 *
 * Linux keeps the 8 KiB tile data state off by default: a process must ask for
 * it with arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) before the first
 * tile instruction, or that instruction faults.  ks_st__amx_prepare() makes the
 * request and turns a refusal into a clean "skipped".  The permission is
 * process-wide and permanent, which is what we want for a daemon that re-runs
 * the test.  Tile configuration is per thread and released after use.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ks_selftest_int.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define KS_ARCH_REQ_XCOMP_PERM 0x1023
#define KS_XFEATURE_XTILEDATA 18

bool ks_st__amx_prepare(char *why, size_t cap)
{
    if (syscall(SYS_arch_prctl, KS_ARCH_REQ_XCOMP_PERM, KS_XFEATURE_XTILEDATA) != 0) {
        snprintf(why, cap, "kernel refused AMX tile data permission (%s)", strerrorname_np(errno));
        return false;
    }
    return true;
}

typedef struct amx_init {
    int8_t a[16][64];
    int8_t b[16][64];
    int32_t c[16][16];
} amx_init;

static void amx_seed(amx_init *in)
{
    uint64_t s = ks_selftest__seed ^ UINT64_C(0x414d580000000000);
    for (int r = 0; r < 16; r++)
        for (int j = 0; j < 64; j += 8) {
            uint64_t v = ks_st__next(&s), w = ks_st__next(&s);
            memcpy(&in->a[r][j], &v, 8);
            memcpy(&in->b[r][j], &w, 8);
        }
    for (int r = 0; r < 16; r++)
        for (int n = 0; n < 16; n++)
            in->c[r][n] = (int32_t)(uint32_t)ks_st__next(&s);
}

/* Palette 1 tile configuration: 64 bytes, laid out by the architecture. */
typedef struct __attribute__((aligned(64))) amx_cfg {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

#define KS_ST_AMX_ROUNDS 64u

__attribute__((target("amx-tile,amx-int8"))) size_t ks_st__amx_run(uint8_t out[KS_ST_OUT_MAX])
{
    amx_init in;
    amx_cfg cfg;
    int32_t c[16][16];
    uint64_t h = 0;
    amx_seed(&in);
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int t = 0; t < 3; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    _tile_loadd(0, in.c, 64);
    _tile_loadd(1, in.a, 64);
    _tile_loadd(2, in.b, 64);
    for (uint32_t i = 0; i < KS_ST_AMX_ROUNDS; i++)
        _tile_dpbssd(0, 1, 2);
    _tile_stored(0, c, 64);
    _tile_release();
    for (int r = 0; r < 16; r++)
        for (int n = 0; n < 16; n++)
            h = ks_st__rotl(h, 7) ^ (uint32_t)c[r][n];
    memcpy(out, c, 64); /* the first rows verbatim, then a hash of the whole tile */
    memcpy(out + 64, &h, 8);
    return 72;
}

size_t ks_st__amx_expect(uint8_t out[KS_ST_OUT_MAX])
{
    amx_init in;
    uint64_t h = 0;
    amx_seed(&in);
    /* C[m][n] += sum over k of A[m][4k+j] * B[k][4n+j], j = 0..3, repeated. */
    for (uint32_t i = 0; i < KS_ST_AMX_ROUNDS; i++)
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 16; n++) {
                uint32_t acc = (uint32_t)in.c[m][n];
                for (int k = 0; k < 16; k++)
                    for (int j = 0; j < 4; j++)
                        acc += (uint32_t)((int32_t)in.a[m][4 * k + j] * in.b[k][4 * n + j]);
                in.c[m][n] = (int32_t)acc;
            }
    for (int r = 0; r < 16; r++)
        for (int n = 0; n < 16; n++)
            h = ks_st__rotl(h, 7) ^ (uint32_t)in.c[r][n];
    memcpy(out, in.c, 64);
    memcpy(out + 64, &h, 8);
    return 72;
}

#endif /* __x86_64__ */
