/*
 * ks_vm.h - what a VM asks for (ks_vm_request, the body of POST /v1/vms) and
 * what it gets (ks_plan, the vCPU plan sent to the host's agent), with their
 * JSON codecs.  Plain data; ks_*_free() are NULL-safe and free everything.
 */
#ifndef KS_VM_H
#define KS_VM_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ks_bitset.h"
#include "ks_err.h"
#include "ks_report.h"

#define KS_VM_MAX_VCPUS 1024

typedef enum ks_placement_mode { KS_PLACE_PACK, KS_PLACE_SPREAD, KS_PLACE__COUNT } ks_placement_mode;
typedef enum ks_numa_mode { KS_NUMA_PREFERRED, KS_NUMA_STRICT, KS_NUMA__COUNT } ks_numa_mode;
typedef enum ks_smt_mode { KS_SMT_ALLOW, KS_SMT_ISOLATE, KS_SMT__COUNT } ks_smt_mode;

typedef struct ks_pmu_request {
    bool enabled;              /* default false */
    uint32_t n_allow, n_deny;
    char (*allow_events)[KS_NAME_MAX]; /* owned */
    char (*deny_events)[KS_NAME_MAX];  /* owned */
} ks_pmu_request;

typedef struct ks_vm_request {
    char name[KS_ID_MAX];
    uint32_t n_performance;    /* vcpus that must be on performance-class CPUs */
    uint32_t n_efficiency;     /* vcpus that must be on efficiency-class CPUs */
    uint32_t n_any;            /* `"vcpus": N`: any kind (kind of the first fit) */
    uint64_t memory_mib;
    ks_featset required;       /* the guest needs these usable on every vCPU */
    ks_featset forbidden;      /* the guest must never see these */
    char pool[KS_ID_MAX];      /* "" = no pool */
    char host[KS_ID_MAX];      /* "" = any host */
    char anti_affinity_group[KS_ID_MAX];
    uint32_t min_mhz;          /* 0 = any */
    uint8_t placement;         /* ks_placement_mode, default pack */
    uint8_t numa;              /* ks_numa_mode, default preferred */
    uint8_t smt;               /* ks_smt_mode, default allow */
    ks_pmu_request pmu;
} ks_vm_request;

const char *ks_placement_mode_to_str(ks_placement_mode m);
const char *ks_numa_mode_to_str(ks_numa_mode m);
const char *ks_smt_mode_to_str(ks_smt_mode m);
/* Inverses of the above; -1 when unknown. */
int ks_placement_mode_from_str(const char *s);
int ks_numa_mode_from_str(const char *s);
int ks_smt_mode_from_str(const char *s);

/* Total vCPUs of a request. */
static inline uint32_t ks_vm_request_vcpus(const ks_vm_request *r)
{
    return r->n_performance + r->n_efficiency + r->n_any;
}

void ks_vm_request_free(ks_vm_request *r);
/* Decodes POST /v1/vms.  KS_EINVAL with err->field naming the bad field. */
ks_code ks_vm_request_from_json(ks_vm_request **out, const json_t *doc, ks_err *err);
json_t *ks_vm_request_to_json(const ks_vm_request *r);

typedef struct ks_plan_vcpu {
    int32_t id;                /* vCPU index 0..n-1 */
    int32_t host_cpu;          /* OS id of the host CPU it is pinned to */
    uint8_t kind_class;        /* ks_kind_class */
    char kind_name[KS_NAME_MAX];
    uint32_t max_mhz;
    int32_t socket, die, cluster, core, thread; /* guest topology coordinates */
    int32_t l2_group, l3_group;/* guest cache groups (0-based, dense) */
    int32_t numa_node;         /* guest NUMA node */
} ks_plan_vcpu;

typedef struct ks_plan_numa {
    int32_t node;              /* guest node id */
    int32_t host_node;         /* host NUMA node backing it, -1 unknown */
    uint64_t memory_mib;
    uint32_t n_vcpus;
    int32_t *vcpus;            /* owned */
} ks_plan_numa;

typedef struct ks_plan {
    char vm[KS_ID_MAX];
    char host[KS_ID_MAX];
    uint64_t generation;       /* increases on every change of the plan */
    uint64_t memory_mib;
    struct {
        uint32_t sockets, dies, clusters, cores, threads; /* per parent; product = n_vcpus slots */
    } topology;
    uint32_t n_vcpus;
    ks_plan_vcpu *vcpus;       /* owned, by id */
    char cpu_model[32];        /* "host" (KVM) - drivers map to "max" under TCG */
    ks_featset visible;        /* exactly what the guest may see */
    ks_featset disable;        /* native on the chosen CPUs but hidden from the guest */
    struct {
        bool enabled;
        int32_t version, gp_counters, fixed_counters;
        uint32_t n_allow, n_deny;
        char (*allow_events)[KS_NAME_MAX]; /* owned */
        char (*deny_events)[KS_NAME_MAX];  /* owned */
    } pmu;
    uint32_t n_numa;
    ks_plan_numa *numa;        /* owned */
} ks_plan;

ks_code ks_plan_new(ks_plan **out, uint32_t n_vcpus, ks_err *err);
void ks_plan_free(ks_plan *p);
ks_code ks_plan_dup(ks_plan **out, const ks_plan *p, ks_err *err);

/* The DESIGN.md plan document: {"vm","generation","host","topology","vcpus",
 * "features":{"model","enable":[visible],"disable":[...]},"pmu","numa","memory_mib"}. */
json_t *ks_plan_to_json(const ks_plan *p);
/* KS_EINVAL with the JSON path on malformed input (duplicate host CPUs, vcpu ids
 * not 0..n-1, topology product smaller than n_vcpus, unknown features, ...). */
ks_code ks_plan_from_json(ks_plan **out, const json_t *doc, ks_err *err);
/* The same document as canonical text: exactly json_dumps(ks_plan_to_json(p),
 * JSON_COMPACT | JSON_SORT_KEYS), built without jansson on the hot path
 * (ks_vm_text.c).  Caller frees; NULL when out of memory.  Thread-safe. */
char *ks_plan_to_text(const ks_plan *p);
/* The request document as canonical text: exactly
 * json_dumps(ks_vm_request_to_json(r), JSON_COMPACT | JSON_SORT_KEYS), what
 * the store keeps for every VM, built without jansson unless a string needs
 * escaping (ks_vm_text.c).  Caller frees; NULL when r is NULL or out of
 * memory.  Thread-safe. */
char *ks_vm_request_to_text(const ks_vm_request *r);

/*
 * Parses plan text and decodes it like ks_plan_from_json (same result, same
 * errors).  With a cache, the "features" member is decoded once per distinct
 * text and found again by its bytes: a store's plans share a few feature lists
 * of ~140 names each, which were most of the cost of reloading them.  A cache
 * is not thread-safe (one per thread); NULL = no cache.
 */
typedef struct ks_plan_cache ks_plan_cache;
ks_code ks_plan_cache_new(ks_plan_cache **out, ks_err *err);
void ks_plan_cache_free(ks_plan_cache *c); /* NULL-safe */
ks_code ks_plan_parse(ks_plan **out, const char *text, size_t len, ks_plan_cache *cache,
                      ks_err *err);

/*
 * Parses request text and decodes it like ks_vm_request_from_json (same
 * result, same errors; text that is not JSON: KS_EINVAL "invalid JSON at line
 * L column C: ...").  The plain text the store keeps is decoded without
 * building JSON values (ks_vm_fast.c).  Reentrant.
 */
ks_code ks_vm_request_parse(ks_vm_request **out, const char *text, size_t len, ks_err *err);

#endif
