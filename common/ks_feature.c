/*
 * ks_feature.c - lookups over the CPU feature catalogue (the table itself is
 * in ks_feature_table.c).
 *
 * Owns: the name index (canonical, QEMU, libvirt and alias names of every
 * entry, normalised), the CPUID/HWCAP location lookups, the dependency
 * closure and the group helpers.
 *
 * Invariants:
 * - A feature id is its index in ks_feature__table[]; the table is
 *   APPEND-ONLY (ids are stored in databases).  tests/unit/test_ks_feature.c
 *   pins the order with a golden list and checksum.
 * - Names are unique across all arches after normalisation (lower case,
 *   '-', '_' and '.' the same).  Where an arm64 /proc/cpuinfo word equals an
 *   x86 flag ("aes", "sha512", "sme", ...), the arm64 entry is named
 *   "arm64_<word>", and the arch-aware entry points (from_cpuinfo,
 *   lookup_arch, add_name_arch) try that form first.
 *
 * Threading: the table is const; the index is built once, under
 * pthread_once, on first use, and is read-only after that.
 */
#include "ks_feature.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Defined in ks_feature_table.c (one library, so no header of its own). */
extern const ks_feature_info ks_feature__table[];
extern const size_t ks_feature__table_len;

typedef struct ks_feature__group {
    const char *name;
    ks_arch arch;
    const char *members; /* space-separated canonical names or "prefix*" */
} ks_feature__group;

typedef struct ks_feature__alias {
    const char *alias;
    const char *name;
} ks_feature__alias;

/*
 * Groups: names are stable API (requests name them).  Members are canonical
 * names or "prefix*" (every canonical name of the group's arch that starts so).
 * A group never has the name of a feature of another arch than its own unless
 * it is spelled "arm64_<name>" (found by the arch-aware calls).
 */
static const ks_feature__group ks_feature__groups[] = {
    {"sse", KS_ARCH_X86_64, "sse sse2 pni ssse3 sse4_1 sse4_2"},
    {"avx-family", KS_ARCH_X86_64, "avx avx2 fma f16c"},
    {"avx512", KS_ARCH_X86_64, "avx512*"},
    {"aes", KS_ARCH_X86_64, "aes vaes"},
    {"sha", KS_ARCH_X86_64, "sha_ni sha512"},
    {"amx", KS_ARCH_X86_64, "amx_*"},
    {"bmi", KS_ARCH_X86_64, "bmi1 bmi2"},
    {"vnni", KS_ARCH_X86_64, "avx512_vnni avx_vnni avx_vnni_int8 avx_vnni_int16"},
    {"crypto", KS_ARCH_X86_64, "aes pclmulqdq sha_ni vaes vpclmulqdq gfni sha512 sm3 sm4"},
    {"avx10-family", KS_ARCH_X86_64, "avx10 avx10_128 avx10_256 avx10_512"},
    {"x86-64-v2", KS_ARCH_X86_64, "cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3"},
    {"x86-64-v3", KS_ARCH_X86_64, "avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"},
    {"x86-64-v4", KS_ARCH_X86_64, "avx512f avx512bw avx512cd avx512dq avx512vl"},
    {"sve", KS_ARCH_ARM64, "sve*"},
    {"arm64_crypto", KS_ARCH_ARM64,
     "arm64_aes pmull sha1 sha2 sha3 arm64_sha512 arm64_sm3 arm64_sm4"},
    {"arm64_sha", KS_ARCH_ARM64, "sha1 sha2 sha3 arm64_sha512 svesha3"},
    {"sme-family", KS_ARCH_ARM64, "arm64_sme sme*"},
    {"mte-family", KS_ARCH_ARM64, "mte mte3"},
    {"pauth", KS_ARCH_ARM64, "paca pacg"},
};

static const size_t ks_feature__groups_len =
    sizeof ks_feature__groups / sizeof ks_feature__groups[0];

/*
 * Extra spellings accepted by ks_feature_lookup() beyond each row's canonical,
 * QEMU and libvirt names (QEMU's own aliases, common marketing names).
 */
static const ks_feature__alias ks_feature__aliases[] = {
    {"sse3", "pni"},
    {"lzcnt", "abm"},
    {"xd", "nx"},
    {"i64", "lm"},
    {"ffxsr", "fxsr_opt"},
    {"pclmul", "pclmulqdq"},
    /* spellings of QEMU and libvirt releases newer than the ones we target */
    {"stibp-always-on", "amd_stibp_always_on"},
    {"lfence-always-serializing", "lfence_rdtsc"},
    {"auto-ibrs", "autoibrs"},
};

static const size_t ks_feature__aliases_len =
    sizeof ks_feature__aliases / sizeof ks_feature__aliases[0];

/* ------------------------------------------------------------------ */
/* Name index                                                          */
/* ------------------------------------------------------------------ */

#define KS_FEAT_NAME_MAX 48     /* longest normalised name we index */
#define KS_FEAT_HASH_SLOTS 4096 /* power of two, > 4 x names (canonical+qemu+libvirt+alias) */
#define KS_FEAT_GROUP_MAX 64

typedef struct ks_feat_slot {
    char key[KS_FEAT_NAME_MAX];
    int id;            /* -1 when the slot is empty */
    bool is_canonical; /* key is the canonical name of id (not a QEMU/libvirt/alias name) */
} ks_feat_slot;

static ks_feat_slot g_slots[KS_FEAT_HASH_SLOTS];
static ks_featset g_group_sets[KS_FEAT_GROUP_MAX];
static ks_featset g_dependents[KS_FEATSET_BITS]; /* direct dependents of each id */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Normalises `in` into out (lower case, '-' and '.' become '_'); false when too long/empty. */
static bool norm_name(char out[KS_FEAT_NAME_MAX], const char *in, size_t len)
{
    if (len == 0 || len >= KS_FEAT_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (c == '-' || c == '.')
            c = '_';
        out[i] = c;
    }
    out[len] = '\0';
    return true;
}

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static const ks_feat_slot *index_slot(const char *key)
{
    uint32_t i = hash_str(key) & (KS_FEAT_HASH_SLOTS - 1);
    for (;;) {
        if (g_slots[i].id < 0)
            return NULL;
        if (strcmp(g_slots[i].key, key) == 0)
            return &g_slots[i];
        i = (i + 1) & (KS_FEAT_HASH_SLOTS - 1);
    }
}

static int index_find(const char *key)
{
    const ks_feat_slot *sl = index_slot(key);
    return sl ? sl->id : -1;
}

/* First writer wins: duplicates are a table bug the unit test catches. */
static void index_add(const char *name, int id, bool is_canonical)
{
    char key[KS_FEAT_NAME_MAX];
    if (name == NULL || !norm_name(key, name, strlen(name)))
        return;
    uint32_t i = hash_str(key) & (KS_FEAT_HASH_SLOTS - 1);
    for (;;) {
        if (g_slots[i].id < 0) {
            memcpy(g_slots[i].key, key, sizeof key);
            g_slots[i].id = id;
            g_slots[i].is_canonical = is_canonical;
            return;
        }
        if (strcmp(g_slots[i].key, key) == 0)
            return;
        i = (i + 1) & (KS_FEAT_HASH_SLOTS - 1);
    }
}

/* Calls fn(ctx, word, len) for each space-separated word of s. */
static void for_each_word(const char *s, void (*fn)(void *, const char *, size_t), void *ctx)
{
    if (s == NULL)
        return;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v')
            s++;
        const char *w = s;
        while (*s &&
               !(*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v'))
            s++;
        if (s > w)
            fn(ctx, w, (size_t)(s - w));
    }
}

static int find_len(const char *w, size_t len)
{
    char key[KS_FEAT_NAME_MAX];
    if (!norm_name(key, w, len))
        return -1;
    return index_find(key);
}

typedef struct dep_ctx {
    unsigned id;
} dep_ctx;

static void add_dependent(void *vctx, const char *w, size_t len)
{
    dep_ctx *ctx = vctx;
    int need = find_len(w, len);
    if (need >= 0)
        ks_featset_set(&g_dependents[need], ctx->id);
}

typedef struct group_ctx {
    ks_featset *set;
    ks_arch arch;
} group_ctx;

static void add_group_member(void *vctx, const char *w, size_t len)
{
    group_ctx *ctx = vctx;
    if (len > 1 && w[len - 1] == '*') {
        /* prefix pattern over canonical names of the group's arch */
        char pre[KS_FEAT_NAME_MAX];
        if (!norm_name(pre, w, len - 1))
            return;
        for (size_t i = 0; i < ks_feature__table_len; i++) {
            const ks_feature_info *f = &ks_feature__table[i];
            char key[KS_FEAT_NAME_MAX];
            if (f->arch != ctx->arch || !norm_name(key, f->name, strlen(f->name)))
                continue;
            if (strncmp(key, pre, len - 1) == 0)
                ks_featset_set(ctx->set, (unsigned)i);
        }
        return;
    }
    int id = find_len(w, len);
    if (id >= 0)
        ks_featset_set(ctx->set, (unsigned)id);
}

static void build_index(void)
{
    for (size_t i = 0; i < KS_FEAT_HASH_SLOTS; i++)
        g_slots[i].id = -1;
    /* canonical names first so that they win over any clashing alias */
    for (size_t i = 0; i < ks_feature__table_len; i++)
        index_add(ks_feature__table[i].name, (int)i, true);
    for (size_t i = 0; i < ks_feature__table_len; i++) {
        index_add(ks_feature__table[i].qemu, (int)i, false);
        index_add(ks_feature__table[i].libvirt, (int)i, false);
    }
    for (size_t i = 0; i < ks_feature__aliases_len; i++) {
        char key[KS_FEAT_NAME_MAX];
        const char *target = ks_feature__aliases[i].name;
        if (!norm_name(key, target, strlen(target)))
            continue;
        int id = index_find(key);
        if (id >= 0)
            index_add(ks_feature__aliases[i].alias, id, false);
    }
    for (size_t i = 0; i < ks_feature__table_len; i++) {
        dep_ctx ctx = {(unsigned)i};
        for_each_word(ks_feature__table[i].depends, add_dependent, &ctx);
    }
    for (size_t g = 0; g < ks_feature__groups_len && g < KS_FEAT_GROUP_MAX; g++) {
        group_ctx ctx = {&g_group_sets[g], ks_feature__groups[g].arch};
        ks_featset_clear(&g_group_sets[g]);
        for_each_word(ks_feature__groups[g].members, add_group_member, &ctx);
    }
}

static void ensure_index(void)
{
    pthread_once(&g_once, build_index);
}

/* ------------------------------------------------------------------ */
/* Arches                                                              */
/* ------------------------------------------------------------------ */

const char *ks_arch_to_str(ks_arch arch)
{
    switch (arch) {
    case KS_ARCH_X86_64:
        return "x86_64";
    case KS_ARCH_ARM64:
        return "aarch64";
    default:
        return "?";
    }
}

static bool str_ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char ca = *a, cb = *b;
        if (ca >= 'A' && ca <= 'Z')
            ca = (char)(ca - 'A' + 'a');
        if (cb >= 'A' && cb <= 'Z')
            cb = (char)(cb - 'A' + 'a');
        if (ca != cb)
            return false;
    }
    return *a == *b;
}

int ks_arch_from_str(const char *s)
{
    if (s == NULL)
        return -1;
    if (str_ieq(s, "x86_64") || str_ieq(s, "amd64") || str_ieq(s, "x86") || str_ieq(s, "x86-64"))
        return KS_ARCH_X86_64;
    if (str_ieq(s, "aarch64") || str_ieq(s, "arm64"))
        return KS_ARCH_ARM64;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Entries and names                                                   */
/* ------------------------------------------------------------------ */

size_t ks_feature_count(void)
{
    return ks_feature__table_len;
}

const ks_feature_info *ks_feature_get(unsigned id)
{
    return id < ks_feature__table_len ? &ks_feature__table[id] : NULL;
}

const char *ks_feature_name(unsigned id)
{
    return id < ks_feature__table_len ? ks_feature__table[id].name : "?";
}

/* Copies a user-supplied name for an error message, cut to fit and with
 * control characters replaced, so a hostile name cannot break a log line. */
static void quote_name(char *buf, size_t cap, const char *name)
{
    size_t n = 0;
    for (; name[n] && n + 1 < cap; n++)
        buf[n] = (name[n] < 0x20 || name[n] == 0x7f) ? '?' : name[n];
    buf[n] = '\0';
}

ks_code ks_feature_lookup(const char *name, unsigned *out_id, ks_err *err)
{
    if (name == NULL)
        return ks_err_set(err, KS_EINVAL, "missing feature name");
    ensure_index();
    int id = find_len(name, strlen(name));
    if (id < 0) {
        char q[64];
        quote_name(q, sizeof q, name);
        return ks_err_set(err, KS_EINVAL, "unknown feature '%s'", q);
    }
    *out_id = (unsigned)id;
    return KS_OK;
}

/* Arch-aware form: tries the "arm64_" spelling first on arm64. */
static int find_arch_len(ks_arch arch, const char *w, size_t len)
{
    if (arch == KS_ARCH_ARM64 && len + 6 < KS_FEAT_NAME_MAX) {
        char buf[KS_FEAT_NAME_MAX];
        memcpy(buf, "arm64_", 6);
        memcpy(buf + 6, w, len);
        int id = find_len(buf, len + 6);
        if (id >= 0)
            return id;
    }
    int id = find_len(w, len);
    if (id >= 0 && ks_feature__table[id].arch != arch)
        return -1;
    return id;
}

ks_code ks_feature_lookup_arch(ks_arch arch, const char *name, unsigned *out_id, ks_err *err)
{
    if (name == NULL)
        return ks_err_set(err, KS_EINVAL, "missing feature name");
    ensure_index();
    int id = find_arch_len(arch, name, strlen(name));
    if (id < 0) {
        char q[64];
        quote_name(q, sizeof q, name);
        return ks_err_set(err, KS_EINVAL, "unknown %s feature '%s'", ks_arch_to_str(arch), q);
    }
    *out_id = (unsigned)id;
    return KS_OK;
}

/* ------------------------------------------------------------------ */
/* Groups                                                              */
/* ------------------------------------------------------------------ */

size_t ks_feature_group_count(void)
{
    return ks_feature__groups_len;
}

const char *ks_feature_group_name(size_t i)
{
    return i < ks_feature__groups_len ? ks_feature__groups[i].name : "?";
}

void ks_feature_group_members(size_t i, ks_featset *out)
{
    if (i >= ks_feature__groups_len)
        return;
    ensure_index();
    ks_featset_or(out, out, &g_group_sets[i]);
}

static int group_find_len(const char *name, size_t len)
{
    char key[KS_FEAT_NAME_MAX];
    if (!norm_name(key, name, len))
        return -1;
    for (size_t g = 0; g < ks_feature__groups_len; g++) {
        char gk[KS_FEAT_NAME_MAX];
        const char *gn = ks_feature__groups[g].name;
        if (norm_name(gk, gn, strlen(gn)) && strcmp(gk, key) == 0)
            return (int)g;
    }
    return -1;
}

int ks_feature_group_find(const char *name)
{
    if (name == NULL)
        return -1;
    return group_find_len(name, strlen(name));
}

ks_code ks_feature_add_name(ks_featset *set, const char *name, ks_err *err)
{
    if (name == NULL)
        return ks_err_set(err, KS_EINVAL, "missing feature name");
    ensure_index();
    size_t len = strlen(name);
    if (strncmp(name, KS_FEATURE_GROUP_PREFIX, KS_FEATURE_GROUP_PREFIX_LEN) == 0) {
        int g =
            group_find_len(name + KS_FEATURE_GROUP_PREFIX_LEN, len - KS_FEATURE_GROUP_PREFIX_LEN);
        if (g >= 0) {
            ks_featset_or(set, set, &g_group_sets[g]);
            return KS_OK;
        }
        char q[64];
        quote_name(q, sizeof q, name);
        return ks_err_set(err, KS_EINVAL, "unknown feature group '%s'", q);
    }
    /* a feature wins over a group of the same name ("aes", "sse", "sve") */
    int id = find_len(name, len);
    if (id >= 0) {
        ks_featset_set(set, (unsigned)id);
        return KS_OK;
    }
    int g = group_find_len(name, len);
    if (g >= 0) {
        ks_featset_or(set, set, &g_group_sets[g]);
        return KS_OK;
    }
    char q[64];
    quote_name(q, sizeof q, name);
    return ks_err_set(err, KS_EINVAL, "unknown feature or group '%s'", q);
}

ks_code ks_feature_add_name_arch(ks_featset *set, ks_arch arch, const char *name, ks_err *err)
{
    if (name == NULL)
        return ks_err_set(err, KS_EINVAL, "missing feature name");
    ensure_index();
    size_t len = strlen(name);
    bool group_only = false;
    if (strncmp(name, KS_FEATURE_GROUP_PREFIX, KS_FEATURE_GROUP_PREFIX_LEN) == 0) {
        group_only = true;
        name += KS_FEATURE_GROUP_PREFIX_LEN;
        len -= KS_FEATURE_GROUP_PREFIX_LEN;
    }
    int id = group_only ? -1 : find_arch_len(arch, name, len);
    if (id >= 0) {
        ks_featset_set(set, (unsigned)id);
        return KS_OK;
    }
    int g = -1;
    if (arch == KS_ARCH_ARM64 && len + 6 < KS_FEAT_NAME_MAX) {
        char buf[KS_FEAT_NAME_MAX];
        memcpy(buf, "arm64_", 6);
        memcpy(buf + 6, name, len);
        g = group_find_len(buf, len + 6);
    }
    if (g < 0)
        g = group_find_len(name, len);
    if (g >= 0 && ks_feature__groups[g].arch == arch) {
        ks_featset_or(set, set, &g_group_sets[g]);
        return KS_OK;
    }
    char q[64];
    quote_name(q, sizeof q, name);
    return ks_err_set(err, KS_EINVAL, "unknown %s feature or group '%s'", ks_arch_to_str(arch), q);
}

/* ------------------------------------------------------------------ */
/* CPUID and HWCAP                                                     */
/* ------------------------------------------------------------------ */

int ks_feature_by_cpuid(uint32_t leaf, uint32_t subleaf, unsigned reg, unsigned bit)
{
    for (size_t i = 0; i < ks_feature__table_len; i++) {
        const ks_feature_info *f = &ks_feature__table[i];
        if (!f->has_cpuid || f->leaf != leaf || f->reg != reg || f->bit != bit)
            continue;
        if (f->subleaf != KS_CPUID_NO_SUBLEAF && f->subleaf != subleaf)
            continue;
        return (int)i;
    }
    return -1;
}

int ks_feature_by_hwcap(unsigned word, unsigned bit)
{
    if (word == 0)
        return -1;
    for (size_t i = 0; i < ks_feature__table_len; i++) {
        const ks_feature_info *f = &ks_feature__table[i];
        if (f->arch == KS_ARCH_ARM64 && f->hwcap_word == word && f->hwcap_bit == bit)
            return (int)i;
    }
    return -1;
}

/* A small cache of the leaves already read, so each (leaf, subleaf) is asked once. */
typedef struct cpuid_cache_ent {
    uint32_t leaf, subleaf;
    bool ok;
    uint32_t regs[4];
} cpuid_cache_ent;

void ks_feature_decode_cpuid(ks_featset *out, ks_cpuid_fn cpuid, void *ctx)
{
    ks_featset_clear(out);
    if (cpuid == NULL)
        return;
    uint32_t r[4] = {0, 0, 0, 0};
    uint32_t max_basic = cpuid(ctx, 0, 0, r) ? r[0] : 0;
    uint32_t r2[4] = {0, 0, 0, 0};
    uint32_t max_ext = cpuid(ctx, 0x80000000u, 0, r2) ? r2[0] : 0;
    /* Intel leaf 0xc0000000 gives the Centaur/Zhaoxin range the same way. */
    uint32_t r3[4] = {0, 0, 0, 0};
    uint32_t max_centaur = 0;
    bool has_centaur = false;

    cpuid_cache_ent cache[48];
    size_t n_cache = 0;

    for (size_t i = 0; i < ks_feature__table_len; i++) {
        const ks_feature_info *f = &ks_feature__table[i];
        if (f->arch != KS_ARCH_X86_64 || !f->has_cpuid)
            continue;
        uint32_t leaf = f->leaf;
        if (leaf < 0x80000000u) {
            if (leaf > max_basic)
                continue;
        } else if (leaf < 0xc0000000u) {
            if (max_ext < 0x80000000u || leaf > max_ext || max_ext > 0x8fffffffu)
                continue;
        } else {
            if (!has_centaur) {
                has_centaur = true;
                max_centaur = cpuid(ctx, 0xc0000000u, 0, r3) ? r3[0] : 0;
            }
            if (max_centaur < 0xc0000000u || leaf > max_centaur || max_centaur > 0xcfffffffu)
                continue;
        }
        /* A subleaf must be in range too: leaves 7, 0x14 and 0x24 give their
         * highest subleaf in eax of subleaf 0 (0xd.1 exists whenever 0xd does). */
        uint32_t sub = f->subleaf == KS_CPUID_NO_SUBLEAF ? 0 : f->subleaf;
        const cpuid_cache_ent *e = NULL;
        for (size_t c = 0; c < n_cache; c++)
            if (cache[c].leaf == leaf && cache[c].subleaf == sub)
                e = &cache[c];
        if (e == NULL) {
            cpuid_cache_ent tmp = {leaf, sub, false, {0, 0, 0, 0}};
            tmp.ok = cpuid(ctx, leaf, sub, tmp.regs);
            if (tmp.ok && sub > 0 && (leaf == 7 || leaf == 0x14 || leaf == 0x24)) {
                uint32_t s0[4] = {0, 0, 0, 0};
                if (!cpuid(ctx, leaf, 0, s0) || sub > s0[0])
                    tmp.ok = false;
            }
            if (n_cache < sizeof cache / sizeof cache[0]) {
                cache[n_cache] = tmp;
                e = &cache[n_cache++];
            } else {
                if (tmp.ok && ((tmp.regs[f->reg & 3] >> (f->bit & 31)) & 1))
                    ks_featset_set(out, (unsigned)i);
                continue;
            }
        }
        if (e->ok && ((e->regs[f->reg & 3] >> (f->bit & 31)) & 1))
            ks_featset_set(out, (unsigned)i);
    }
}

typedef struct cpuinfo_ctx {
    ks_featset *out;
    ks_arch arch;
    size_t n_unknown;
} cpuinfo_ctx;

/* Canonical name of a feature of `arch` only: /proc/cpuinfo prints canonical
 * names, and some Linux synthetic flags ("ibpb", "ssbd") equal the QEMU name
 * of a different CPUID bit, so QEMU/libvirt spellings must not match here. */
static int find_canonical_arch(ks_arch arch, const char *w, size_t len)
{
    char key[KS_FEAT_NAME_MAX];
    if (arch == KS_ARCH_ARM64 && len + 6 < KS_FEAT_NAME_MAX) {
        char buf[KS_FEAT_NAME_MAX];
        memcpy(buf, "arm64_", 6);
        memcpy(buf + 6, w, len);
        if (norm_name(key, buf, len + 6)) {
            const ks_feat_slot *sl = index_slot(key);
            if (sl && sl->is_canonical && ks_feature__table[sl->id].arch == arch)
                return sl->id;
        }
    }
    if (!norm_name(key, w, len))
        return -1;
    const ks_feat_slot *sl = index_slot(key);
    if (sl && sl->is_canonical && ks_feature__table[sl->id].arch == arch)
        return sl->id;
    return -1;
}

static void cpuinfo_word(void *vctx, const char *w, size_t len)
{
    cpuinfo_ctx *ctx = vctx;
    int id = find_canonical_arch(ctx->arch, w, len);
    if (id >= 0)
        ks_featset_set(ctx->out, (unsigned)id);
    else
        ctx->n_unknown++;
}

void ks_feature_from_cpuinfo(ks_featset *out, ks_arch arch, const char *flags, size_t *n_unknown)
{
    ks_featset_clear(out);
    ensure_index();
    cpuinfo_ctx ctx = {out, arch, 0};
    for_each_word(flags, cpuinfo_word, &ctx);
    if (n_unknown)
        *n_unknown = ctx.n_unknown;
}

/* ------------------------------------------------------------------ */
/* Dependencies, base ISA, arch sets                                   */
/* ------------------------------------------------------------------ */

void ks_feature_dependents_closure(ks_featset *out, const ks_featset *faulty)
{
    ensure_index();
    ks_featset result = *faulty;
    /* worklist: every bit newly added is expanded once */
    ks_featset todo = *faulty;
    for (int b = ks_featset_next(&todo, 0); b >= 0; b = ks_featset_next(&todo, 0)) {
        ks_featset_unset(&todo, (unsigned)b);
        ks_featset fresh;
        ks_featset_andnot(&fresh, &g_dependents[b], &result);
        ks_featset_or(&result, &result, &fresh);
        ks_featset_or(&todo, &todo, &fresh);
    }
    *out = result;
}

static const char *const k_base_x86[] = {
    "fpu",  "vme",  "de",   "pse",  "tsc",     "msr",  "pae", "mce",   "cx8",
    "apic", "sep",  "mtrr", "pge",  "mca",     "cmov", "pat", "pse36", "clflush",
    "mmx",  "fxsr", "sse",  "sse2", "syscall", "nx",   "lm",
};
static const char *const k_base_arm64[] = {"fp", "asimd"};

void ks_feature_base_isa(ks_arch arch, ks_featset *out)
{
    ks_featset_clear(out);
    ensure_index();
    const char *const *names = arch == KS_ARCH_ARM64 ? k_base_arm64 : k_base_x86;
    size_t n = arch == KS_ARCH_ARM64 ? sizeof k_base_arm64 / sizeof k_base_arm64[0]
                                     : sizeof k_base_x86 / sizeof k_base_x86[0];
    if (arch != KS_ARCH_X86_64 && arch != KS_ARCH_ARM64)
        return;
    for (size_t i = 0; i < n; i++) {
        int id = find_len(names[i], strlen(names[i]));
        if (id >= 0)
            ks_featset_set(out, (unsigned)id);
    }
}

void ks_feature_all_of_arch(ks_arch arch, ks_featset *out)
{
    ks_featset_clear(out);
    for (size_t i = 0; i < ks_feature__table_len; i++)
        if (ks_feature__table[i].arch == arch)
            ks_featset_set(out, (unsigned)i);
}
