/*
 * ks_bitset.h - fixed-width CPU feature sets.
 *
 * A ks_featset is KS_FEATSET_BITS bits, bit i = catalogue feature id i
 * (ks_feature.h).  Plain data: copy by assignment, compare with
 * ks_featset_equal().  Every operation is a loop over KS_FEATSET_WORDS 64-bit
 * words that the compiler unrolls/vectorises; none allocates.
 */
#ifndef KS_BITSET_H
#define KS_BITSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KS_FEATSET_BITS 512
#define KS_FEATSET_WORDS (KS_FEATSET_BITS / 64)

typedef struct ks_featset {
    uint64_t w[KS_FEATSET_WORDS];
} ks_featset;

static inline void ks_featset_clear(ks_featset *s)
{
    for (int i = 0; i < KS_FEATSET_WORDS; i++)
        s->w[i] = 0;
}

static inline void ks_featset_set(ks_featset *s, unsigned bit)
{
    if (bit < KS_FEATSET_BITS)
        s->w[bit >> 6] |= UINT64_C(1) << (bit & 63);
}

static inline void ks_featset_unset(ks_featset *s, unsigned bit)
{
    if (bit < KS_FEATSET_BITS)
        s->w[bit >> 6] &= ~(UINT64_C(1) << (bit & 63));
}

static inline bool ks_featset_test(const ks_featset *s, unsigned bit)
{
    return bit < KS_FEATSET_BITS && (s->w[bit >> 6] >> (bit & 63)) & 1;
}

/* out = a & b (out may alias a or b) */
static inline void ks_featset_and(ks_featset *out, const ks_featset *a, const ks_featset *b)
{
    for (int i = 0; i < KS_FEATSET_WORDS; i++)
        out->w[i] = a->w[i] & b->w[i];
}

static inline void ks_featset_or(ks_featset *out, const ks_featset *a, const ks_featset *b)
{
    for (int i = 0; i < KS_FEATSET_WORDS; i++)
        out->w[i] = a->w[i] | b->w[i];
}

/* out = a & ~b */
static inline void ks_featset_andnot(ks_featset *out, const ks_featset *a, const ks_featset *b)
{
    for (int i = 0; i < KS_FEATSET_WORDS; i++)
        out->w[i] = a->w[i] & ~b->w[i];
}

/* true when every bit of a is in b */
static inline bool ks_featset_subset(const ks_featset *a, const ks_featset *b)
{
    uint64_t extra = 0;
    for (int i = 0; i < KS_FEATSET_WORDS; i++)
        extra |= a->w[i] & ~b->w[i];
    return extra == 0;
}

static inline bool ks_featset_intersects(const ks_featset *a, const ks_featset *b)
{
    uint64_t common = 0;
    for (int i = 0; i < KS_FEATSET_WORDS; i++)
        common |= a->w[i] & b->w[i];
    return common != 0;
}

static inline bool ks_featset_equal(const ks_featset *a, const ks_featset *b)
{
    uint64_t diff = 0;
    for (int i = 0; i < KS_FEATSET_WORDS; i++)
        diff |= a->w[i] ^ b->w[i];
    return diff == 0;
}

static inline bool ks_featset_empty(const ks_featset *s)
{
    uint64_t any = 0;
    for (int i = 0; i < KS_FEATSET_WORDS; i++)
        any |= s->w[i];
    return any == 0;
}

static inline unsigned ks_featset_popcount(const ks_featset *s)
{
    unsigned n = 0;
    for (int i = 0; i < KS_FEATSET_WORDS; i++)
        n += (unsigned)__builtin_popcountll(s->w[i]);
    return n;
}

/* Number of bits in a but not in b (|a \ b|) without a temporary. */
static inline unsigned ks_featset_count_andnot(const ks_featset *a, const ks_featset *b)
{
    unsigned n = 0;
    for (int i = 0; i < KS_FEATSET_WORDS; i++)
        n += (unsigned)__builtin_popcountll(a->w[i] & ~b->w[i]);
    return n;
}

/*
 * Iteration: returns the lowest set bit >= from, or -1 when none.
 *   for (int b = ks_featset_next(&s, 0); b >= 0; b = ks_featset_next(&s, b + 1))
 */
int ks_featset_next(const ks_featset *s, unsigned from);

/* 64-bit FNV-1a over the words: equal sets hash equal. */
uint64_t ks_featset_hash(const ks_featset *s);

#endif
