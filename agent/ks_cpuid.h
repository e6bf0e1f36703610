/*
 * ks_cpuid.h - CPUID sources for discovery: the live instruction and recorded
 * per-CPU dumps (hwloc's "pu<N>" format), plus the few leaf decoders the
 * report needs besides the feature catalogue (identity, hybrid core type,
 * architectural PMU, nominal frequencies).
 *
 * Every decoder reads through a ks_cpuid_fn (ks_feature.h), so the same code
 * serves the live CPU, a dump, and tests.  None of them allocates or fails:
 * an absent leaf reads as "unknown".
 */
#ifndef KS_CPUID_H
#define KS_CPUID_H

#include <stdbool.h>
#include <stdint.h>

#include "ks_err.h"
#include "ks_feature.h"

/* ---- recorded dumps ------------------------------------------------------------------- */

/* One pu<N> file: the (leaf, subleaf) -> registers records it holds.  Opaque. */
typedef struct ks_cpuid_dump ks_cpuid_dump;

#define KS_CPUID_DUMP_MAX_BYTES (1u << 20)
#define KS_CPUID_DUMP_MAX_RECORDS 4096u

/*
 * Loads a dump file ("mask eax ebx ecx edx => eax ebx ecx edx", hex, '#'
 * comments).  Every non-comment line must be a complete record, and the dump
 * must answer leaf 0 and leaf 1.  KS_ENOTFOUND when the file is missing,
 * KS_EINVAL (message names the file and line) when truncated or garbled or
 * above the caps, KS_EIO, KS_ENOMEM.  *out is the caller's (ks_cpuid_dump_free).
 */
ks_code ks_cpuid_dump_load(ks_cpuid_dump **out, const char *path, ks_err *err);
/* Same, from text already in memory; `name` is used in error messages. */
ks_code ks_cpuid_dump_parse(ks_cpuid_dump **out, const char *name, const char *text, size_t len,
                            ks_err *err);
void ks_cpuid_dump_free(ks_cpuid_dump *d); /* NULL-safe */

/* ks_cpuid_fn over a dump (ctx = the ks_cpuid_dump).  A record recorded without
 * ECX in its mask answers every subleaf; false when the dump lacks the leaf. */
bool ks_cpuid_dump_fn(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4]);

/* ---- the live instruction ------------------------------------------------------------- */

/* True when this build can execute CPUID (x86). */
bool ks_cpuid_live_available(void);
/* ks_cpuid_fn executing CPUID on the CPU the calling thread runs on (ctx unused);
 * leaves above the maximum of their range read as absent. */
bool ks_cpuid_live_fn(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4]);

/* ---- decoders ------------------------------------------------------------------------- */

typedef struct ks_cpuid_ident {
    char vendor[13];        /* "GenuineIntel", "" when leaf 0 is absent */
    char brand[49];         /* leaves 0x80000002..4, trimmed; "" when absent */
    int32_t family, model, stepping; /* display values (extended fields folded in) */
    uint32_t max_basic, max_ext;
} ks_cpuid_ident;

void ks_cpuid_identify(ks_cpuid_ident *out, ks_cpuid_fn cpuid, void *ctx);

/*
 * Hybrid core type as the CPU itself enumerates it: Intel leaf 0x1A (only when
 * leaf 7 EDX[15] "hybrid" is set), AMD leaf 0x80000026 (only when EAX[30]
 * "heterogeneous cores" is set).  Intel Atom-type cores without an L3 in leaf 4
 * are the low-power E-cores hwloc 2.9 does not know.  `rank` orders the types
 * (higher = more performant) and is only comparable within one vendor.
 */
typedef struct ks_cpuid_core {
    const char *name;       /* "IntelCore", "IntelAtom", "IntelAtomLP", "AMDPerformance",
                               "AMDEfficiency" (static strings) */
    int32_t rank;
    uint32_t native_model;  /* leaf 0x1A EAX[23:0] / 0x80000026 EBX[27:24] */
} ks_cpuid_core;

/* False (and *out zeroed) when the CPU does not enumerate a hybrid core type. */
bool ks_cpuid_core_type(ks_cpuid_core *out, ks_cpuid_fn cpuid, void *ctx);

/* Architectural performance monitoring (Intel leaf 0xA; AMD 0x80000001/0x80000022). */
#define KS_CPUID_PMU_EVENTS 13
typedef struct ks_cpuid_pmu {
    int32_t version;        /* 0 when there is no architectural PMU */
    int32_t gp_counters, gp_width;
    int32_t fixed_counters, fixed_width;
    uint32_t events;        /* bit i set = architectural event i available */
} ks_cpuid_pmu;

void ks_cpuid_pmu_decode(ks_cpuid_pmu *out, ks_cpuid_fn cpuid, void *ctx);
/* Name of architectural event i < KS_CPUID_PMU_EVENTS ("cycles", "instructions", ...). */
const char *ks_cpuid_pmu_event_name(unsigned i);

/*
 * A key naming the physical core this CPU belongs to, equal for SMT siblings
 * and distinct for different cores of one package: AMD/Hygon family >= 0x17
 * leaf 0x8000001E (node id, core id), else leaf 0xB (x2APIC id >> SMT width).
 * False when neither leaf is usable.
 */
bool ks_cpuid_core_key(uint32_t *out, ks_cpuid_fn cpuid, void *ctx);

/* Leaf 0x16 nominal base and maximum MHz; false when the leaf is absent or zero. */
bool ks_cpuid_freq_mhz(uint32_t *base_mhz, uint32_t *max_mhz, ks_cpuid_fn cpuid, void *ctx);

#endif
