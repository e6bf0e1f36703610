/*
 * ks_feature.h - the CPU feature catalogue: the single source of truth for
 * feature names, their CPUID locations (x86) or HWCAP bits (arm64), their QEMU
 * and libvirt names, their groups and what each depends on.
 *
 * A feature id is the index of its entry in the table and the bit it occupies
 * in a ks_featset.  Ids are stored in databases and sent between processes of
 * the same build: the table is append-only (never reorder or delete; mark an
 * entry obsolete instead).  All functions are thread-safe (the table is const;
 * the name index is built once, on first use, under pthread_once).
 */
#ifndef KS_FEATURE_H
#define KS_FEATURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ks_bitset.h"
#include "ks_err.h"

typedef enum ks_arch { KS_ARCH_X86_64, KS_ARCH_ARM64, KS_ARCH__COUNT } ks_arch;

const char *ks_arch_to_str(ks_arch arch); /* "x86_64", "aarch64" */
/* Accepts "x86_64"/"amd64"/"x86" and "aarch64"/"arm64"; -1 when unknown. */
int ks_arch_from_str(const char *s);

typedef enum ks_cpuid_reg { KS_CPUID_EAX, KS_CPUID_EBX, KS_CPUID_ECX, KS_CPUID_EDX } ks_cpuid_reg;

#define KS_CPUID_NO_SUBLEAF UINT32_MAX /* leaf ignores ECX */

typedef struct ks_feature_info {
    const char *name;       /* canonical: Linux /proc/cpuinfo flag (x86) or HWCAP name (arm64) */
    ks_arch arch;
    bool has_cpuid;         /* x86: enumerated by CPUID at (leaf, subleaf, reg, bit) */
    uint32_t leaf;
    uint32_t subleaf;       /* KS_CPUID_NO_SUBLEAF when the leaf has none */
    uint8_t reg;            /* ks_cpuid_reg */
    uint8_t bit;
    uint8_t hwcap_word;     /* arm64: 1 = AT_HWCAP, 2 = AT_HWCAP2, 0 = none */
    uint8_t hwcap_bit;
    const char *qemu;       /* QEMU -cpu property ("sse4.2"), NULL when QEMU has none */
    const char *libvirt;    /* libvirt <feature name=>, NULL when libvirt has none */
    const char *depends;    /* space-separated canonical names this feature needs, or NULL */
    const char *desc;       /* short human description */
} ks_feature_info;

/* Number of catalogue entries (all arches). */
size_t ks_feature_count(void);
/* Borrowed entry for id < ks_feature_count(), NULL otherwise. */
const ks_feature_info *ks_feature_get(unsigned id);
/* Canonical name of id, "?" when out of range. */
const char *ks_feature_name(unsigned id);

/*
 * Looks up a single feature by canonical name, QEMU name or libvirt name
 * (case-insensitive; '-', '_' and '.' are equivalent).  KS_EINVAL with the bad
 * name quoted in the message when unknown.
 */
ks_code ks_feature_lookup(const char *name, unsigned *out_id, ks_err *err);

/*
 * Like ks_feature_lookup() but only features of `arch` match.  Some arm64
 * /proc/cpuinfo words are also x86 flags ("aes", "sha512", "sm3", "sm4", "rng",
 * "sme"); their arm64 entries are named "arm64_<word>" to keep names unique,
 * and this function (and ks_feature_from_cpuinfo) maps the plain word to them.
 */
ks_code ks_feature_lookup_arch(ks_arch arch, const char *name, unsigned *out_id, ks_err *err);

/*
 * Adds to *set the feature `name` or, when `name` is a group ("avx512",
 * "amx", "bmi", ...), all of its members.  KS_EINVAL when neither.  When a
 * name is both a feature and a group ("aes", "sse", "sve") the feature wins;
 * "group:<name>" always means the group.
 */
#define KS_FEATURE_GROUP_PREFIX "group:"
#define KS_FEATURE_GROUP_PREFIX_LEN 6
ks_code ks_feature_add_name(ks_featset *set, const char *name, ks_err *err);
/* Arch-aware ks_feature_add_name(): "crypto" on arm64 is group "arm64_crypto". */
ks_code ks_feature_add_name_arch(ks_featset *set, ks_arch arch, const char *name, ks_err *err);

/* Group table (names are stable, lower-case). */
size_t ks_feature_group_count(void);
const char *ks_feature_group_name(size_t i);
/* Members of group i ORed into *out. */
void ks_feature_group_members(size_t i, ks_featset *out);
/* Index of a group by name, -1 when there is none. */
int ks_feature_group_find(const char *name);

/* Id of the x86 feature at a CPUID location, -1 when none.  subleaf is ignored for
 * leaves without subleaves. */
int ks_feature_by_cpuid(uint32_t leaf, uint32_t subleaf, unsigned reg, unsigned bit);
/* Id of the arm64 feature at HWCAP word (1|2) bit, -1 when none. */
int ks_feature_by_hwcap(unsigned word, unsigned bit);

/*
 * CPUID oracle used by the decoder: fills regs[0..3] = eax, ebx, ecx, edx for
 * (leaf, subleaf) and returns true, or false when that leaf is not available.
 */
typedef bool (*ks_cpuid_fn)(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4]);

/*
 * Decodes every catalogue x86 feature from CPUID through `cpuid`, honouring the
 * maximum basic/extended leaf (leaf 0 / 0x80000000) so that absent leaves read
 * as zero.  *out is cleared first.
 */
void ks_feature_decode_cpuid(ks_featset *out, ks_cpuid_fn cpuid, void *ctx);

/*
 * Parses a /proc/cpuinfo "flags" (x86) or "Features" (arm64) value: the
 * catalogue features named there are set in *out (cleared first).  Words the
 * catalogue does not know (Linux synthesises some) are skipped and counted in
 * *n_unknown (may be NULL).
 */
void ks_feature_from_cpuinfo(ks_featset *out, ks_arch arch, const char *flags, size_t *n_unknown);

/*
 * Dependency closure: *out = faulty plus every feature that depends on one of
 * them, transitively (faulty avx removes avx2, fma, avx512*, ...).
 */
void ks_feature_dependents_closure(ks_featset *out, const ks_featset *faulty);

/*
 * The base ISA of an arch: a CPU whose fault touches any of these cannot run
 * anything and is quarantined (x86-64 baseline: fpu, tsc, cx8, cmov, mmx, fxsr,
 * sse, sse2, ...; arm64: fp, asimd).
 */
void ks_feature_base_isa(ks_arch arch, ks_featset *out);

/* All catalogue features of one arch. */
void ks_feature_all_of_arch(ks_arch arch, ks_featset *out);

#endif
