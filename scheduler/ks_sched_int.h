/*
 * ks_sched_int.h - libks-sched internals shared by ks_sched.c (the index) and
 * ks_sched_place.c (placement, re-planning, capacity).  Not installed, not
 * included outside scheduler/.  See ks_sched.c for the index design.
 */
#ifndef KS_SCHED_INT_H
#define KS_SCHED_INT_H

#include "ks_sched.h"

#define KS_SCHED__NONE UINT32_MAX
#define KS_SCHED__N_BUCKETS 3 /* per kind class (performance, efficiency) + all kinds */
#define KS_SCHED__ALL 2
#define KS_SCHED__N_SCRATCH 10

struct ks_sched__host;
struct ks_sched__vm;

/* String -> pointer map, open addressing with linear probing and backward-shift
 * deletion.  Keys are borrowed from the values (a host's or VM's own name). */
typedef struct ks_sched__smap_slot {
    const char *key;
    void *val;
    uint64_t hash;
} ks_sched__smap_slot;

typedef struct ks_sched__smap {
    ks_sched__smap_slot *slots;
    uint32_t cap, n; /* cap is 0 or a power of two */
} ks_sched__smap;

/* A host's entry in a class's list of hosts with free CPUs of that class. */
typedef struct ks_sched__hostref {
    struct ks_sched__host *h;
    uint32_t hc; /* index into h->classes */
} ks_sched__hostref;

/* Fleet-wide interned CPU class: (usable feature set, kind class). */
typedef struct ks_sched__class {
    uint32_t set; /* interned usable set */
    uint8_t kind; /* ks_kind_class */
    uint32_t n_hosts, cap_hosts;
    ks_sched__hostref *hosts; /* schedulable hosts with >= 1 free CPU of this class */
    uint32_t n_members;       /* indexed hosts having this class (bounds n_hosts) */
} ks_sched__class;

/* Per host, per class: its usable CPUs of that class in topological order. */
typedef struct ks_sched__hclass {
    uint32_t cls;
    uint32_t n_cpus, n_free; /* n_free: not allocated (isolation-blocked included) */
    uint32_t max_mhz;        /* highest max_mhz among them */
    uint32_t min_mhz;        /* lowest: at or above a request's min_mhz, all qualify */
    uint32_t pos;            /* position in the class's host list, NONE when absent */
    uint32_t *cpus;          /* indices into host->cpus */
} ks_sched__hclass;

typedef struct ks_sched__cpu {
    int32_t id, package, die, cluster, core, thread, numa, l2, l3;
    uint32_t max_mhz;
    uint32_t native, usable; /* interned sets */
    uint32_t hc;             /* index into host->classes, NONE when not usable */
    uint32_t sib_next;       /* next SMT sibling (circular; itself when none) */
    uint32_t topo_pos;       /* rank in the host's topological order */
    int16_t kind;            /* index into host->kinds, -1 */
    uint8_t kind_class, state;
    bool reserved, ghost;    /* ghost: vanished from the report while allocated */
    uint16_t iso_block;      /* siblings held by smt-isolate VMs other than the owner */
    uint16_t busy_sibs;      /* siblings held by any VM */
    struct ks_sched__vm *vm; /* owner, NULL when free */
} ks_sched__cpu;

typedef struct ks_sched__kind {
    char name[KS_NAME_MAX];
    uint8_t kind_class;
} ks_sched__kind;

typedef struct ks_sched__aa {
    char name[KS_ID_MAX];
    uint32_t count;
} ks_sched__aa;

typedef struct ks_sched__host {
    /* Hot: what a candidate walk (prefilter, order key, id tie-break) reads of
     * every host it considers comes first, so a pool's members cost one or two
     * cache lines each rather than four or five. */
    bool schedulable;
    bool linked; /* in the buckets and class lists */
    uint8_t arch;
    uint32_t index; /* in fleet->hosts */
    uint32_t n_classes;
    uint32_t n_aa;
    uint32_t free_kind[2];     /* usable, unallocated CPUs per kind class */
    uint32_t iso_free_kind[2]; /* of those, the ones with no sibling held (an smt-isolate
                                  VM can take them): a prefilter bound */
    uint32_t blocked_kind[2];  /* of those, the ones beside an smt-isolate VM's CPU: no
                                  new VM can take them, so the buckets leave them out */
    struct ks_sched__hclass *classes;
    ks_sched__aa *aa;
    char id[KS_ID_MAX];
    /* cold */
    char vendor[KS_NAME_MAX];
    char model[KS_NAME_MAX];
    uint32_t n_cpus;
    ks_sched__cpu *cpus; /* by OS id */
    uint32_t *topo;      /* cpu indices in topological order */
    uint32_t n_kinds;
    ks_sched__kind *kinds;
    uint32_t n_numa;
    ks_numa_node *numa;
    int32_t pmu_version, pmu_gp, pmu_fixed;
    uint32_t n_alloc, n_vms;
    uint32_t n_usable;
    ks_featset baseline;                /* intersection of usable sets of usable CPUs */
    uint32_t bval[KS_SCHED__N_BUCKETS]; /* bucket it is linked in (free count) */
    struct ks_sched__host *bprev[KS_SCHED__N_BUCKETS], *bnext[KS_SCHED__N_BUCKETS];
    uint32_t cap_aa;
} ks_sched__host;

typedef struct ks_sched__vm {
    char name[KS_ID_MAX];
    ks_sched__host *host;
    ks_plan *plan;
    size_t plan_bytes;
    uint32_t *cpu_ix; /* per vCPU: index into host->cpus */
    ks_featset required, forbidden;
    char pool[KS_ID_MAX];
    char aa[KS_ID_MAX];
    uint8_t smt, numa, placement;
    uint32_t min_mhz;
    uint32_t n_performance, n_efficiency, n_any;
} ks_sched__vm;

/* A pool.  hosts[] and the baseline cache spare a pool request the member walk
 * by id (a hash lookup and a few cache misses per member) and the intersection
 * over all members: at 10,000 hosts those dominated pool decisions.  hosts[i]
 * is kept current by every host add/replace/remove (pools_host_changed in
 * ks_sched.c); base_valid is cleared whenever a member's contribution to the
 * baseline (schedulable, n_usable, baseline) may have changed, and the baseline
 * is recomputed from hosts[] on the next use.  The baseline does not depend on
 * the bans or on allocations (callers subtract the bans themselves). */
typedef struct ks_sched__pool {
    char name[KS_ID_MAX];
    uint32_t n;
    char (*members)[KS_ID_MAX];
    const char **ptrs;
    ks_sched__smap set;            /* member id -> members[i] */
    struct ks_sched__host **hosts; /* per member: the indexed host, NULL when not reported */
    uint32_t *hix;                 /* per member: its host's index, KS_SCHED__NONE when none */
    uint32_t *rank;                /* per member: rank of its id among the members' (strcmp) */
    bool base_valid;               /* base/base_cpus reflect the members' current state */
    uint32_t base_cpus;
    ks_featset base;
} ks_sched__pool;

/*
 * Per host (by index), one cache line of what a pool member's prefilter
 * reads, kept by host_link (every allocation change ends there): a pool
 * request then walks a compact array instead of touching each member host
 * and its class array (two cache misses per member).  `exact` is false when
 * the host has more classes than fit or counts beyond 16 bits: the walk then
 * reads the host itself.
 */
#define KS_SCHED__SUM_CLASSES 4
typedef struct ks_sched__hsum {
    bool exact, schedulable, has_aa;
    uint8_t n_classes;
    uint16_t free_kind[2], iso_free_kind[2], blocked_kind[2];
    struct {
        uint32_t cls;
        uint16_t n_free, max_mhz;
    } c[KS_SCHED__SUM_CLASSES];
} ks_sched__hsum;

typedef struct ks_sched__shape {
    uint32_t n_performance, n_efficiency, n_any, min_mhz;
    ks_featset needed;
} ks_sched__shape;

/* Mutable per-decision scratch, reachable from a const fleet: the decision
 * functions do not change the index, only these caches and buffers. */
typedef struct ks_sched__scratch {
    size_t mem;
    uint32_t stamp;
    uint32_t cls_cap;
    uint32_t *cls_stamp;
    uint8_t *cls_ok;
    uint16_t *cls_score;
    uint32_t host_cap;
    uint32_t *host_stamp;
    uint32_t ring_window, ring_n, ring_head;
    ks_sched__shape *ring;
    void *buf[KS_SCHED__N_SCRATCH];
    size_t buf_cap[KS_SCHED__N_SCRATCH];
} ks_sched__scratch;

struct ks_fleet {
    size_t mem;
    ks_sched__smap host_map;
    ks_sched__host **hosts;
    uint32_t n_hosts, cap_hosts;
    ks_sched__hsum *hsum; /* by host index, cap_hosts entries */
    uint32_t cap_hsum;
    ks_sched__smap vm_map;
    /* interned feature sets */
    ks_featset *sets;
    uint32_t n_sets, cap_sets;
    uint32_t *set_slots; /* set index + 1, 0 = empty */
    uint32_t set_scap;
    /* interned classes */
    ks_sched__class *classes;
    uint32_t n_classes, cap_classes;
    uint32_t *cls_slots;
    uint32_t cls_scap;
    /* buckets[k][free] = doubly-linked list of hosts */
    ks_sched__host **buckets[KS_SCHED__N_BUCKETS];
    uint32_t n_buckets;
    uint32_t bucket_pop[KS_SCHED__N_BUCKETS];
    ks_sched__pool **pools;
    uint32_t n_pools, cap_pools;
    ks_featset bans;
    ks_sched__scratch *sc;
};

/* Helpers shared between the two .c files. */
void *ks_sched__scratch_buf(const ks_fleet *f, unsigned slot, size_t bytes);
ks_sched__host *ks_sched__host_find(const ks_fleet *f, const char *id);
ks_sched__vm *ks_sched__vm_find(const ks_fleet *f, const char *name);
const ks_sched__pool *ks_sched__pool_find(const ks_fleet *f, const char *name);
bool ks_sched__pool_has(const ks_sched__pool *p, const char *host);
bool ks_sched__cpu_usable(const ks_sched__cpu *c);
bool ks_sched__host_has_aa(const ks_sched__host *h, const char *group);
void ks_sched__pool_baseline(const ks_fleet *f, const ks_sched__pool *p, ks_featset *out,
                             uint32_t *n_cpus);
void ks_sched__pool_baseline_uncached(const ks_fleet *f, const ks_sched__pool *p,
                                      ks_featset *out, uint32_t *n_cpus);
void ks_sched__record_shape(const ks_fleet *f, const ks_sched__shape *s);
ks_code ks_sched__explain_add(ks_sched_explain *e, const char *reason, uint64_t count);
size_t ks_sched__plan_bytes(const ks_plan *p);

#endif
