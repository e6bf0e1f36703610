/*
 * ks_report.h - the host report (agent -> scheduler): topology, core kinds,
 * per-CPU feature masks and defects, PMU, vulnerabilities, running VMs; and its
 * JSON codec (schema 1, see docs/report-schema.md).
 *
 * Plain data.  A ks_report is created with ks_report_new() and owns every array
 * it points to; ks_report_free() releases all of it.  Strings are fixed-size
 * arrays so a decoded report needs no per-string allocation and every length is
 * bounded; decoding refuses over-long values instead of truncating them.
 *
 * CPU state machine (one place, here; the transition functions are named):
 *
 *     online --(defect on a non-base feature: ks_report_derive_state)--> degraded
 *     online|degraded --(defect on the base ISA or whole-CPU defect)--> quarantined
 *     any --(OS reports the CPU offline: discovery)--> offline
 *     degraded|quarantined --(defects cleared by operator, new report)--> online
 */
#ifndef KS_REPORT_H
#define KS_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ks_bitset.h"
#include "ks_err.h"
#include "ks_feature.h"

#define KS_REPORT_SCHEMA 1
#define KS_ID_MAX 64        /* host ids, VM names: [A-Za-z0-9._-], 1..63 chars */
#define KS_NAME_MAX 128
#define KS_TEXT_MAX 256
#define KS_REPORT_MAX_CPUS 8192
#define KS_REPORT_MAX_DEFECTS 64 /* per CPU */
#define KS_FEATURE_NONE 0xffffu  /* a whole-CPU defect (no single feature) */
/* Further caps on what a decoded report may hold (checked before allocating). */
#define KS_REPORT_MAX_KINDS 64
#define KS_REPORT_MAX_CACHES (4 * KS_REPORT_MAX_CPUS)
#define KS_REPORT_MAX_NUMA 1024
#define KS_REPORT_MAX_VULNS 256
#define KS_REPORT_MAX_VMS KS_REPORT_MAX_CPUS
#define KS_REPORT_MAX_PMU_NAMES 16
#define KS_REPORT_MAX_PMU_EVENTS 1024
#define KS_REPORT_MAX_FEATURE_SETS (2 * KS_REPORT_MAX_CPUS)

typedef enum ks_cpu_state {
    KS_CPU_ONLINE,
    KS_CPU_DEGRADED,
    KS_CPU_OFFLINE,
    KS_CPU_QUARANTINED,
    KS_CPU_STATE__COUNT
} ks_cpu_state;

typedef enum ks_kind_class { KS_KIND_PERFORMANCE, KS_KIND_EFFICIENCY, KS_KIND_CLASS__COUNT } ks_kind_class;

typedef enum ks_defect_source {
    KS_DEFECT_SELFTEST,
    KS_DEFECT_IFS,      /* Intel In-Field Scan */
    KS_DEFECT_OPERATOR, /* /etc/kintsugi/defects.json */
    KS_DEFECT_MCE,      /* machine-check counts */
    KS_DEFECT_SOURCE__COUNT
} ks_defect_source;

const char *ks_cpu_state_to_str(ks_cpu_state s);      /* "online", ... */
int ks_cpu_state_from_str(const char *s);             /* -1 when unknown */
const char *ks_kind_class_to_str(ks_kind_class k);    /* "performance", "efficiency" */
int ks_kind_class_from_str(const char *s);
const char *ks_defect_source_to_str(ks_defect_source s); /* "selftest", "ifs", "operator", "mce" */
int ks_defect_source_from_str(const char *s);

typedef struct ks_defect {
    uint16_t feature;          /* catalogue id, or KS_FEATURE_NONE for the whole CPU */
    uint8_t source;            /* ks_defect_source */
    uint64_t time_us;          /* when found, microseconds since the epoch */
    char detail[KS_TEXT_MAX];
} ks_defect;

typedef struct ks_cpu {
    int32_t id;                /* OS logical CPU number */
    int32_t package, die, cluster, core; /* OS/hwloc indices; cluster = shared-L2 group id */
    int32_t thread;            /* SMT sibling index within the core, 0-based */
    int32_t numa_node;         /* -1 when unknown */
    int32_t l2_group, l3_group;/* index into ks_report.caches of its L2/L3, -1 when none */
    int32_t kind;              /* index into ks_report.kinds, -1 when the host is not hybrid-aware */
    uint32_t base_mhz, max_mhz;/* 0 when unknown */
    ks_featset native;         /* what CPUID says this CPU has */
    ks_featset defective;      /* features found faulty (union of defects[].feature) */
    ks_featset usable;         /* native - closure(defective); empty when quarantined/offline */
    uint8_t state;             /* ks_cpu_state */
    bool reserved;             /* kept for the host, never given to VMs */
    uint16_t n_defects;
    ks_defect *defects;        /* owned */
} ks_cpu;

typedef struct ks_kind {
    char name[KS_NAME_MAX];    /* raw kind name, e.g. "IntelCore", "IntelAtom", "ARM Cortex-A78" */
    int32_t efficiency_rank;   /* hwloc: higher = more performant */
    uint8_t kind_class;        /* ks_kind_class */
    uint32_t max_mhz;          /* 0 when unknown */
} ks_kind;

typedef struct ks_cache {
    uint8_t level;             /* 1, 2, 3, 4 */
    char type;                 /* 'u'nified, 'd'ata, 'i'nstruction */
    uint64_t size_bytes;
    uint32_t line_bytes;
    uint32_t n_cpus;
    int32_t *cpus;             /* owned: OS ids of the logical CPUs sharing it, ascending */
} ks_cache;

typedef struct ks_numa_node {
    int32_t id;
    uint64_t memory_mib;
} ks_numa_node;

typedef struct ks_pmu_info {
    int32_t version;           /* architectural PMU version, 0 when none */
    int32_t gp_counters, gp_width;
    int32_t fixed_counters, fixed_width;
    uint32_t n_names;
    char (*names)[KS_NAME_MAX]; /* owned: "cpu", or hybrid "cpu_core", "cpu_atom" */
    uint32_t n_events;
    char (*events)[KS_NAME_MAX]; /* owned: architectural events available */
} ks_pmu_info;

typedef struct ks_vuln {
    char name[KS_NAME_MAX];    /* file name under .../cpu/vulnerabilities */
    char status[KS_TEXT_MAX];  /* its first line */
} ks_vuln;

typedef struct ks_running_vm {
    char name[KS_ID_MAX];
    uint64_t generation;       /* plan generation applied */
} ks_running_vm;

typedef struct ks_host_info {
    char id[KS_ID_MAX];
    char hostname[KS_NAME_MAX];
    uint8_t arch;              /* ks_arch */
    char vendor[KS_NAME_MAX];  /* "GenuineIntel", "AuthenticAMD", "HygonGenuine", "ARM" */
    char model_name[KS_NAME_MAX];
    int32_t family, model, stepping;
    char microcode[KS_NAME_MAX];
    char kernel[KS_NAME_MAX];
    char agent_version[KS_NAME_MAX];
    char boot_id[KS_ID_MAX];
    uint64_t generation;       /* report generation, increases on every change in a boot */
    uint64_t memory_mib;       /* total */
    char source[KS_TEXT_MAX];  /* "live", or "fixture:<name>" */
    char agent_url[KS_TEXT_MAX]; /* where the agent serves plans ("http://10.0.0.5:7421"), "" none */
} ks_host_info;

typedef struct ks_report {
    int32_t schema;            /* KS_REPORT_SCHEMA */
    ks_host_info host;
    uint32_t n_packages, n_dies, n_clusters, n_cores; /* distinct counts */
    uint32_t n_cpus;
    ks_cpu *cpus;              /* owned, sorted by id */
    uint32_t n_kinds;
    ks_kind *kinds;            /* owned, ascending efficiency rank */
    uint32_t n_caches;
    ks_cache *caches;          /* owned */
    uint32_t n_numa;
    ks_numa_node *numa;        /* owned */
    ks_pmu_info pmu;
    uint32_t n_vulns;
    ks_vuln *vulns;            /* owned */
    uint32_t n_vms;
    ks_running_vm *vms;        /* owned */
} ks_report;

/* Allocates an empty report (schema set).  KS_ENOMEM. */
ks_code ks_report_new(ks_report **out, ks_err *err);
/* NULL-safe; frees everything the report owns. */
void ks_report_free(ks_report *r);
/* Deep copy.  KS_ENOMEM. */
ks_code ks_report_dup(ks_report **out, const ks_report *r, ks_err *err);

/* Resizes the arrays (new entries zeroed, ids -1 where it matters).  KS_ENOMEM, KS_EINVAL above caps. */
ks_code ks_report_alloc_cpus(ks_report *r, uint32_t n, ks_err *err);
ks_code ks_report_alloc_caches(ks_report *r, uint32_t n, ks_err *err);
ks_code ks_report_alloc_kinds(ks_report *r, uint32_t n, ks_err *err);
ks_code ks_report_alloc_numa(ks_report *r, uint32_t n, ks_err *err);
ks_code ks_cpu_add_defect(ks_cpu *cpu, const ks_defect *d, ks_err *err);

/* CPU by OS id (binary search on the sorted array); NULL when absent.  Borrowed. */
ks_cpu *ks_report_find_cpu(const ks_report *r, int32_t id);

/*
 * Recomputes, for every CPU, defective (from defects[]), usable
 * (native - dependents_closure(defective)) and state (quarantined when a
 * defect hits the base ISA or the whole CPU, degraded when any other defect,
 * online otherwise; offline stays offline and gets an empty usable set).
 */
void ks_report_derive_state(ks_report *r);

/*
 * JSON codec.  ks_report_to_json() returns a new reference (NULL only on
 * allocation failure).  Feature sets are encoded as arrays of canonical names
 * in a report-level "feature_sets" table referenced by index from each CPU
 * (hosts have few distinct sets); the decoder also accepts an inline array of
 * names (or group names) in place of an index.
 */
json_t *ks_report_to_json(const ks_report *r);

/*
 * Decodes and validates a report.  On error returns KS_EINVAL with err->field
 * set to the JSON path ("cpus[17].native[3]") and err->msg naming the problem
 * ("unknown feature 'avx513'").  Unknown keys are errors.  Cross-references are
 * checked (cache cpus exist, kind/cache indices in range, CPU ids unique).
 * derive_state is NOT applied: usable/state are taken as sent and checked for
 * consistency (usable must be a subset of native).
 */
ks_code ks_report_from_json(ks_report **out, const json_t *doc, ks_err *err);

/* Convenience: parse text then decode.  KS_EINVAL for bad JSON with line/column. */
ks_code ks_report_parse(ks_report **out, const char *text, size_t len, ks_err *err);

/*
 * Partial decode of a report text already accepted once (a stored report):
 * schema, host, kinds, numa and pmu are decoded and checked as by
 * ks_report_from_json; every other member (cpus, caches, feature_sets, ...)
 * is only skipped over lexically, not built nor validated, and the result has
 * no CPUs.  For rebuilding the scheduler index from the store's cpus rows
 * without paying for the per-CPU JSON.  KS_EINVAL, KS_ENOMEM.
 */
ks_code ks_report_parse_header(ks_report **out, const char *text, size_t len, ks_err *err);

/* Feature set <-> JSON array of canonical names (new reference). */
json_t *ks_featset_to_json(const ks_featset *s);
/* Accepts names and group names; `path` prefixes error fields.  KS_EINVAL. */
ks_code ks_featset_from_json(ks_featset *out, const json_t *arr, const char *path, ks_err *err);

/* Validates an id (host id, VM name, pool name): 1..63 of [A-Za-z0-9._-], not "." or "..". */
bool ks_id_valid(const char *s);

#endif
