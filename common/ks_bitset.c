/*
 * ks_bitset.c - the out-of-line parts of ks_featset (iteration, hashing).
 */
#include "ks_bitset.h"

int ks_featset_next(const ks_featset *s, unsigned from)
{
    if (from >= KS_FEATSET_BITS)
        return -1;
    unsigned word = from >> 6;
    uint64_t bits = s->w[word] & (~UINT64_C(0) << (from & 63));
    for (;;) {
        if (bits)
            return (int)(word * 64 + (unsigned)__builtin_ctzll(bits));
        if (++word >= KS_FEATSET_WORDS)
            return -1;
        bits = s->w[word];
    }
}

uint64_t ks_featset_hash(const ks_featset *s)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (int i = 0; i < KS_FEATSET_WORDS; i++) {
        uint64_t w = s->w[i];
        for (int b = 0; b < 8; b++) {
            h ^= (w >> (b * 8)) & 0xff;
            h *= UINT64_C(1099511628211);
        }
    }
    return h;
}
