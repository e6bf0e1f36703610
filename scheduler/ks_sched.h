/*
 * ks_sched.h - libks-sched: the in-memory fleet index and the placement engine.
 *
 * Pure in-memory: no SQLite, no HTTP.  The caller (the API layer) owns
 * durability: it asks ks_sched_place() for a decision, commits that decision to
 * the store, and only then records it in the index with ks_fleet_vm_add().  At
 * start it rebuilds the index from the store with ks_fleet_host_update() for
 * every host and ks_fleet_vm_add() for every live VM.
 *
 * Threading: a ks_fleet is NOT thread-safe.  The caller serialises every call
 * on one fleet (read-only calls included, see ks_sched_place()).  Distinct
 * fleets share no state and may be used from distinct threads.
 *
 * Ownership: strings and sets passed in are copied; pointers handed back
 * through callbacks or getters are borrowed and stay valid until the next
 * mutating call on the fleet; objects returned through `**out` are the
 * caller's (ks_plan_free()).
 *
 * Vocabulary:
 *  - usable CPU: reported online or degraded, not reserved.  Only usable CPUs
 *    of schedulable hosts are ever chosen for a new vCPU.
 *  - schedulable host: not drained/lost (ks_fleet_host_set_schedulable()).
 *  - visible: the exact feature set a VM's guest sees (ks_plan.visible).
 */
#ifndef KS_SCHED_H
#define KS_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ks_bitset.h"
#include "ks_err.h"
#include "ks_report.h"
#include "ks_vm.h"

typedef struct ks_fleet ks_fleet;

/* ------------------------------------------------------------------ */
/* Side outputs: affected VMs and failure explanations                 */
/* ------------------------------------------------------------------ */

/* One vCPU whose host CPU no longer serves what its VM sees. */
typedef struct ks_sched_affected_item {
    char vm[KS_ID_MAX];
    char host[KS_ID_MAX];
    int32_t host_cpu;         /* OS id of the CPU */
    int32_t vcpu;             /* vCPU index in the VM's plan */
    char reason[KS_TEXT_MAX]; /* "cpu 12 offline", "cpu 12 lost avx512f", ... */
} ks_sched_affected_item;

/* Caller-provided list filled by ks_fleet_host_update(); one item per vCPU.
 * ks_sched_affected_init() before use, ks_sched_affected_destroy() after
 * (frees the items only).  A VM may appear several times (one per vCPU). */
typedef struct ks_sched_affected {
    uint32_t n, cap;
    ks_sched_affected_item *items;
} ks_sched_affected;

void ks_sched_affected_init(ks_sched_affected *a);
void ks_sched_affected_destroy(ks_sched_affected *a);

/* Why a placement failed: per-reason counts over hosts (each host counted once,
 * under the first reason that excluded it), plus request-level reasons with a
 * count of 0 or 1 ("required feature 'aes' is banned").
 * ks_sched_explain_init() / ks_sched_explain_destroy() like ks_sched_affected. */
typedef struct ks_sched_explain_item {
    char reason[KS_TEXT_MAX]; /* "no free cpu with avx512f", "host draining",
                                 "anti-affinity group 'db'", ... */
    uint64_t count;
} ks_sched_explain_item;

typedef struct ks_sched_explain {
    uint64_t hosts_considered; /* hosts examined by the failed decision */
    uint32_t n, cap;
    ks_sched_explain_item *items; /* sorted by count, descending, after a failure */
} ks_sched_explain;

void ks_sched_explain_init(ks_sched_explain *e);
void ks_sched_explain_destroy(ks_sched_explain *e);
/* {"no free cpu with avx512f": 812, "host draining": 3, ...} (new reference;
 * NULL only when out of memory). */
json_t *ks_sched_explain_to_json(const ks_sched_explain *e);

/* ------------------------------------------------------------------ */
/* Fleet and hosts                                                     */
/* ------------------------------------------------------------------ */

/* Empty fleet.  KS_ENOMEM. */
ks_code ks_fleet_new(ks_fleet **out, ks_err *err);
/* NULL-safe; frees the index, hosts, VMs, plans and pools. */
void ks_fleet_free(ks_fleet *fleet);

/*
 * Adds host r->host.id or replaces its CPU data with the report's.  Existing
 * allocations are kept (a VM's CPU stays allocated to it whatever its new
 * state).  Every vCPU whose CPU became unusable for its VM - offline,
 * quarantined, reserved, gone from the report, or no longer having usable a
 * feature the VM sees - is appended to *affected (may be NULL); the caller
 * re-plans those VMs with ks_sched_replan().  A new host is schedulable.
 * The report is copied (compactly: sets are interned), r stays the caller's.
 * KS_EINVAL (invalid host id, CPU count 0 or above KS_REPORT_MAX_CPUS,
 * duplicate CPU ids), KS_ENOMEM.  On error the fleet is unchanged.
 */
ks_code ks_fleet_host_update(ks_fleet *fleet, const ks_report *r, ks_sched_affected *affected,
                             ks_err *err);

/* Drain (false) or re-admit (true) a host: unschedulable hosts keep their VMs
 * but get no new vCPUs.  KS_ENOTFOUND. */
ks_code ks_fleet_host_set_schedulable(ks_fleet *fleet, const char *host, bool schedulable,
                                      ks_err *err);

/* Removes a host.  KS_ENOTFOUND; KS_ECONFLICT while VMs live on it. */
ks_code ks_fleet_host_remove(ks_fleet *fleet, const char *host, ks_err *err);

size_t ks_fleet_host_count(const ks_fleet *fleet);

/* A host as the index holds it (borrowed, valid until the next mutating call). */
typedef struct ks_fleet_host_view {
    const char *id;
    const char *vendor;
    const char *model_name;
    bool schedulable;
    uint32_t n_cpus;
    uint32_t n_allocated; /* CPUs held by VMs (any state) */
    uint32_t n_free;      /* usable, not allocated (whether or not schedulable) */
    uint32_t n_vms;
} ks_fleet_host_view;

/* A CPU as the index holds it (borrowed). */
typedef struct ks_fleet_cpu_view {
    int32_t id;
    int32_t package, core, thread, numa_node, l2_group, l3_group;
    uint8_t kind_class;    /* ks_kind_class (performance when the host has no kinds) */
    const char *kind_name; /* "" when the host has no kinds */
    uint32_t max_mhz;
    uint8_t state; /* ks_cpu_state */
    bool reserved;
    const ks_featset *native;
    const ks_featset *usable;
    const char *vm; /* VM holding it, NULL when free */
} ks_fleet_cpu_view;

/* Host number i in [0, ks_fleet_host_count()) (order is stable until a host is
 * added or removed).  KS_ENOTFOUND when out of range. */
ks_code ks_fleet_host_at(const ks_fleet *fleet, size_t i, ks_fleet_host_view *out, ks_err *err);
/* Host by id.  KS_ENOTFOUND. */
ks_code ks_fleet_host_get(const ks_fleet *fleet, const char *host, ks_fleet_host_view *out,
                          ks_err *err);

/* Calls cb for each CPU of `host` in OS id order; stops early when cb returns
 * false.  KS_ENOTFOUND. */
typedef bool (*ks_fleet_cpu_fn)(void *ctx, const ks_fleet_cpu_view *cpu);
ks_code ks_fleet_host_cpus(const ks_fleet *fleet, const char *host, ks_fleet_cpu_fn cb, void *ctx,
                           ks_err *err);

/*
 * Hosts matching a selector, for selector-based pool membership: vendor equal
 * (case-insensitive; NULL or "" = any), model name containing `model_substr`
 * (case-insensitive; NULL or "" = any), and every feature of `required` (NULL
 * = none) usable on every usable CPU of the host.  cb gets each host id.
 */
typedef void (*ks_fleet_host_fn)(void *ctx, const char *host);
void ks_fleet_hosts_matching(const ks_fleet *fleet, const char *vendor, const char *model_substr,
                             const ks_featset *required, ks_fleet_host_fn cb, void *ctx);

/* ------------------------------------------------------------------ */
/* VMs                                                                 */
/* ------------------------------------------------------------------ */

/*
 * Records a VM placed by `plan` (a committed decision, or a row reloaded from
 * the store) and marks its CPUs allocated.  The request's constraints
 * (required/forbidden, pool, anti-affinity group, smt, ...) are kept for
 * re-planning; the plan is copied.  CPUs in any state are accepted (a VM may
 * outlive its CPU's health), the host may be unschedulable.
 * KS_EEXIST (name taken), KS_ENOTFOUND (plan->host unknown), KS_EINVAL (plan
 * names a CPU the host does not have, twice the same CPU, or no vCPU),
 * KS_ECONFLICT (a CPU is already allocated to another VM), KS_ENOMEM.
 * On error the fleet is unchanged.
 */
ks_code ks_fleet_vm_add(ks_fleet *fleet, const ks_vm_request *req, const ks_plan *plan,
                        ks_err *err);

/* Frees the VM's CPUs and forgets it.  KS_ENOTFOUND. */
ks_code ks_fleet_vm_remove(ks_fleet *fleet, const char *name, ks_err *err);

/*
 * Commits a new generation of a VM's plan (from ks_sched_replan(), after the
 * caller stored it): releases the CPUs the old plan held and allocates the new
 * plan's.  KS_ENOTFOUND, KS_EINVAL (host differs, generation not greater,
 * unknown CPU), KS_ECONFLICT (a new CPU belongs to another VM).  Unchanged on
 * error.
 */
ks_code ks_fleet_vm_update_plan(ks_fleet *fleet, const ks_plan *plan, ks_err *err);

/* Borrowed current plan of a VM, NULL when unknown. */
const ks_plan *ks_fleet_vm_get_plan(const ks_fleet *fleet, const char *name);

size_t ks_fleet_vm_count(const ks_fleet *fleet);
/* Calls cb with each VM's plan (unspecified order); stops when cb returns false. */
typedef bool (*ks_fleet_plan_fn)(void *ctx, const ks_plan *plan);
void ks_fleet_vms_foreach(const ks_fleet *fleet, ks_fleet_plan_fn cb, void *ctx);

/* ------------------------------------------------------------------ */
/* Placement                                                           */
/* ------------------------------------------------------------------ */

/*
 * Decides where `req` goes and builds its plan (generation 1) WITHOUT changing
 * the index: the caller commits it, then calls ks_fleet_vm_add().  The only
 * side effect is recording the request's shape in the fleet's recent-shapes
 * window used by the `stranded` capacity figure.
 *
 * Policy: (1) hosts that can take the whole shape (kind counts, pool, host pin,
 * schedulable, anti-affinity group, min_mhz, smt isolate, numa strict);
 * (2) CPUs by least capable fit: the fewest usable features beyond what the VM
 * needs, so degraded cores go first; same NUMA node and cache groups
 * preferred; (3) pack (fullest host first) or spread (emptiest first).
 *
 * `why` (may be NULL) is reset and, on KS_ENOCAPACITY, filled with per-reason
 * host counts.  KS_EINVAL (no vCPU, more than KS_VM_MAX_VCPUS, invalid name),
 * KS_EEXIST (a VM of that name is already in the index), KS_ENOTFOUND (unknown
 * pool or pinned host), KS_ENOCAPACITY, KS_ENOMEM.
 */
ks_code ks_sched_place(ks_plan **out, const ks_fleet *fleet, const ks_vm_request *req,
                       ks_sched_explain *why, ks_err *err);

/*
 * A new generation (current + 1) of VM `name`'s plan under the current bans
 * and CPU health, without changing the index: visible = current visible minus
 * banned/forbidden features; vCPUs whose CPU still has every visible feature
 * usable stay; the others move to free usable CPUs of the same kind on the same
 * host (least capable fit, same NUMA node preferred).  Guest topology is
 * unchanged.  The caller stores it, then calls ks_fleet_vm_update_plan().
 * KS_ENOTFOUND; KS_ENOCAPACITY when some vCPU has nowhere to go on its host
 * (the caller marks the VM needs_migration); KS_ENOMEM.
 */
ks_code ks_sched_replan(ks_plan **out, const ks_fleet *fleet, const char *name, ks_err *err);

/* ------------------------------------------------------------------ */
/* Pools                                                               */
/* ------------------------------------------------------------------ */

/*
 * Creates or replaces pool `name` with these member host ids (copied; hosts
 * not yet reported are allowed and count once they appear; duplicates are
 * ignored).  A VM in a pool sees the pool baseline (minus its forbidden set and
 * the bans) so that it can move anywhere in the pool.  KS_EINVAL (bad id),
 * KS_ENOMEM.
 */
ks_code ks_fleet_pool_set(ks_fleet *fleet, const char *name, const char *const *hosts, size_t n,
                          ks_err *err);
/* KS_ENOTFOUND; KS_ECONFLICT while VMs placed in the pool live. */
ks_code ks_fleet_pool_remove(ks_fleet *fleet, const char *name, ks_err *err);

/*
 * Baseline of a pool: the intersection of the usable sets of every usable CPU
 * of its schedulable member hosts.  *n_cpus (may be NULL) gets how many CPUs
 * were intersected; when 0 the baseline is empty.  KS_ENOTFOUND.
 */
ks_code ks_fleet_pool_baseline(const ks_fleet *fleet, const char *name, ks_featset *out,
                               uint32_t *n_cpus, ks_err *err);

/*
 * For each member host present in the fleet: the features the baseline would
 * gain if that host left the pool, calls ordered by how many it would gain
 * (most first; ties by host id).  KS_ENOTFOUND, KS_ENOMEM.
 */
typedef void (*ks_fleet_narrowing_fn)(void *ctx, const char *host, const ks_featset *gained,
                                      unsigned n_gained);
ks_code ks_fleet_pool_narrowing(const ks_fleet *fleet, const char *name, ks_fleet_narrowing_fn cb,
                                void *ctx, ks_err *err);

/* Calls cb with each pool name and its member host ids (borrowed). */
typedef void (*ks_fleet_pool_fn)(void *ctx, const char *name, const char *const *hosts, size_t n);
void ks_fleet_pools_foreach(const ks_fleet *fleet, ks_fleet_pool_fn cb, void *ctx);

/* ------------------------------------------------------------------ */
/* Fleet-wide feature bans                                             */
/* ------------------------------------------------------------------ */

/* Replaces the banned set (NULL = none).  New plans never show a banned
 * feature; existing VMs keep theirs until re-planned. */
void ks_fleet_set_bans(ks_fleet *fleet, const ks_featset *banned);
void ks_fleet_get_bans(const ks_fleet *fleet, ks_featset *out);

/* Calls cb for each VM whose plan.visible intersects `features` (name, host). */
typedef void (*ks_fleet_vm_fn)(void *ctx, const char *vm, const char *host);
void ks_fleet_vms_seeing(const ks_fleet *fleet, const ks_featset *features, ks_fleet_vm_fn cb,
                         void *ctx);

/* ------------------------------------------------------------------ */
/* Capacity                                                            */
/* ------------------------------------------------------------------ */

typedef enum ks_capacity_by {
    KS_CAPACITY_FLEET, /* one call, scope "fleet" */
    KS_CAPACITY_POOL,  /* one call per pool, scope = pool name */
    KS_CAPACITY_HOST,  /* one call per host, scope = host id */
    KS_CAPACITY_KIND,  /* one call per kind class, scope "performance"/"efficiency" */
    KS_CAPACITY_BY__COUNT
} ks_capacity_by;

const char *ks_capacity_by_to_str(ks_capacity_by by); /* "fleet", "pool", "host", "kind" */
int ks_capacity_by_from_str(const char *s);           /* -1 when unknown */

/* Logical CPU counts.  total = every CPU reported; the others partition or
 * annotate it as commented. */
typedef struct ks_capacity {
    uint64_t total;
    uint64_t allocated;       /* held by VMs, whatever the CPU's state */
    uint64_t free;            /* usable, not allocated, host schedulable */
    uint64_t unschedulable;   /* usable, not allocated, host drained/lost */
    uint64_t reserved;        /* kept for the host (and not allocated) */
    uint64_t quarantined;     /* state quarantined (and not allocated) */
    uint64_t offline;         /* state offline (and not allocated) */
    uint64_t degraded_usable; /* state degraded, not reserved (allocated or free) */
    uint64_t reclaimed;       /* allocated AND degraded: capacity a disable-the-core
                                 policy would have lost */
    uint64_t stranded;        /* free CPUs that no shape of the recent-request window
                                 can use on their host (0 while the window is empty) */
} ks_capacity;

/* Calls cb once per scope of `by`.  Cost: O(CPUs) plus, for stranded, O(hosts x
 * distinct recent shapes x classes per host). */
typedef void (*ks_capacity_fn)(void *ctx, const char *scope, const ks_capacity *c);
void ks_fleet_capacity(const ks_fleet *fleet, ks_capacity_by by, ks_capacity_fn cb, void *ctx);

/* Size of the recent-request-shape window (default 1000, the last N requests
 * given to ks_sched_place()); 0 empties and disables it. */
void ks_fleet_set_shape_window(ks_fleet *fleet, uint32_t n);

/* ------------------------------------------------------------------ */
/* Introspection                                                       */
/* ------------------------------------------------------------------ */

/* Bytes the index currently holds on the heap (its own accounting). */
size_t ks_fleet_memory_bytes(const ks_fleet *fleet);

/*
 * true when a and b hold the same hosts (CPU data, schedulable flag), VMs
 * (plans, CPUs held), pools and bans.  On false, err (may be NULL) gets
 * KS_ECONFLICT and a message naming the first difference.
 */
bool ks_fleet_equal(const ks_fleet *a, const ks_fleet *b, ks_err *err);

/*
 * Checks the index's internal invariants (no CPU held twice, free counts and
 * host buckets consistent with the CPUs, every VM's vCPUs on CPUs it holds).
 * KS_EINTERNAL naming the first violation.  O(CPUs); for tests and debugging.
 */
ks_code ks_fleet_check(const ks_fleet *fleet, ks_err *err);

#endif
