/*
 * ks_fleetsim.h - the fleet simulator used by the benchmarks and the `fleetsim`
 * tool: a fleet of N hosts cloned from the recorded fixture machines, with
 * defects drawn at a configurable rate from a fixed seed, and a VM workload
 * trace (arrivals and departures of a mix of shapes) from a fixed seed.
 *
 * Each fixture is discovered ONCE (ks_discover_host on its tarball) into a
 * template report; host i is a deep copy of its machine's template with its
 * own host id, boot id and defects.  Reports are produced on demand
 * (ks_fleetsim_host_report) from a compact per-host descriptor, so a fleet of
 * 20,000 hosts costs a few hundred kilobytes until a report is asked for.
 * Everything is deterministic: the same options give the same fleet.
 *
 * Not thread-safe (one simulator per thread); templates are immutable after
 * ks_fleetsim_new() so ks_fleetsim_host_report() only reads them.
 */
#ifndef KS_FLEETSIM_H
#define KS_FLEETSIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ks_err.h"
#include "ks_report.h"
#include "ks_vm.h"

struct ks_store;
struct ks_fleet;

typedef struct ks_fleetsim ks_fleetsim;

/* Growable array of uint64 samples. */
typedef struct ks_fleetsim_samples {
    uint64_t *v;
    size_t n, cap;
} ks_fleetsim_samples;

typedef enum ks_fleetsim_class {
    KS_FLEETSIM_HYBRID, /* client parts with P and E cores */
    KS_FLEETSIM_SERVER,
    KS_FLEETSIM_CLASS__COUNT
} ks_fleetsim_class;

/* How degraded CPUs are presented: as Kintsugi sees them (degraded, usable
 * minus the faulty feature) or as a disable-the-core policy would (offline). */
typedef enum ks_fleetsim_policy {
    KS_FLEETSIM_KINTSUGI,
    KS_FLEETSIM_OFFLINE_DEGRADED,
    KS_FLEETSIM_POLICY__COUNT
} ks_fleetsim_policy;

typedef struct ks_fleetsim_options {
    const char *fixtures_dir; /* holds hwloc-x86/ and hwloc-linux/ */
    uint32_t n_hosts;
    uint64_t seed;
    double defect_rate;      /* share of hosts with >= 1 defective core */
    double quarantine_share; /* share of defective cores quarantined whole */
    double hybrid_share;     /* share of hybrid hosts; the rest are servers */
    const char *tmp_dir;     /* where fixture tarballs are unpacked; NULL: $TMPDIR or /tmp */
} ks_fleetsim_options;

#define KS_FLEETSIM_OPTIONS_INIT                                                                   \
    {                                                                                              \
        NULL, 10000, 1, 0.05, 0.10, 0.20, NULL                                                     \
    }

/*
 * Parses a mix "hybrid=0.2,server=0.8" into *hybrid_share (the two must sum to
 * 1 within 0.001; one alone is accepted and the other is its complement).
 * KS_EINVAL naming the bad part.
 */
ks_code ks_fleetsim_parse_mix(double *hybrid_share, const char *mix, ks_err *err);

/*
 * Loads the fixture templates (one discovery per machine type in use) and
 * draws every host's machine and defects.  KS_EINVAL (bad option), errors of
 * ks_discover_host (missing fixture: KS_ENOTFOUND), KS_ENOMEM.
 */
ks_code ks_fleetsim_new(ks_fleetsim **out, const ks_fleetsim_options *opts, ks_err *err);
/* A simulator with base's options and templates (copied, no discovery) but
 * n_hosts hosts.  Host i is the same as base's host i.  KS_EINVAL, KS_ENOMEM. */
ks_code ks_fleetsim_new_like(ks_fleetsim **out, const ks_fleetsim *base, uint32_t n_hosts,
                             ks_err *err);
/* NULL-safe. */
void ks_fleetsim_free(ks_fleetsim *sim);

uint32_t ks_fleetsim_host_count(const ks_fleetsim *sim);
/* Writes host i's id ("sim-000042") into buf. */
void ks_fleetsim_host_id(char buf[KS_ID_MAX], uint32_t i);

/*
 * The report of host i (a new report; ks_report_free()).  Same result on every
 * call.  KS_EINVAL (i out of range), KS_ENOMEM.
 */
ks_code ks_fleetsim_host_report(ks_report **out, const ks_fleetsim *sim, uint32_t i,
                                ks_fleetsim_policy policy, ks_err *err);

/* What the simulator drew. */
typedef struct ks_fleetsim_stats {
    uint64_t n_hosts, n_cpus;
    uint64_t n_hosts_by_class[KS_FLEETSIM_CLASS__COUNT];
    uint64_t n_defective_hosts;
    uint64_t n_degraded_cpus;    /* logical CPUs with a feature fault (Kintsugi keeps them) */
    uint64_t n_quarantined_cpus; /* logical CPUs lost whole (both policies) */
    uint32_t n_machines;
} ks_fleetsim_stats;

void ks_fleetsim_get_stats(const ks_fleetsim *sim, ks_fleetsim_stats *out);

/* Machine type m in [0, stats.n_machines): fixture name, class, CPUs, hosts drawn. */
typedef struct ks_fleetsim_machine_view {
    const char *name;
    ks_fleetsim_class klass;
    uint32_t n_cpus;
    uint64_t n_hosts;
} ks_fleetsim_machine_view;
bool ks_fleetsim_machine_at(const ks_fleetsim *sim, uint32_t m, ks_fleetsim_machine_view *out);

/* Faults drawn per feature (name, number of logical CPUs hit), most first. */
typedef void (*ks_fleetsim_fault_fn)(void *ctx, const char *feature, uint64_t n_cpus);
void ks_fleetsim_faults_foreach(const ks_fleetsim *sim, ks_fleetsim_fault_fn cb, void *ctx);

/* Adds every host to `fleet` (ks_fleet_host_update) and sets up the simulator's
 * pools (ks_fleetsim_pool_hosts).  Errors of the scheduler. */
ks_code ks_fleetsim_load_fleet(const ks_fleetsim *sim, struct ks_fleet *fleet,
                               ks_fleetsim_policy policy, ks_err *err);

/*
 * Writes every host's report (with its JSON document, as the API stores it,
 * when with_json) to the store, `batch` hosts per transaction, then the pools.
 * The store must be empty of these hosts or hold older generations.
 */
ks_code ks_fleetsim_load_store(const ks_fleetsim *sim, struct ks_store *store,
                               ks_fleetsim_policy policy, uint32_t batch, bool with_json,
                               ks_err *err);

/* The simulated pool: name and whether host i is a member. */
#define KS_FLEETSIM_POOL "pool-a"
bool ks_fleetsim_pool_member(const ks_fleetsim *sim, uint32_t i);

/* ------------------------------------------------------------------ */
/* Workload trace                                                      */
/* ------------------------------------------------------------------ */

#define KS_FLEETSIM_MAX_SHAPES 32

typedef struct ks_fleetsim_shape {
    const char *name;
    uint32_t n_performance, n_efficiency, n_any;
    const char *required; /* space-separated feature names, "" none */
    uint8_t placement;    /* ks_placement_mode */
    uint8_t smt;          /* ks_smt_mode */
    bool in_pool;         /* a member of KS_FLEETSIM_POOL */
    bool anti_affinity;   /* anti-affinity group of 64 */
    uint32_t weight;
} ks_fleetsim_shape;

/* The shape table (borrowed, static). */
const ks_fleetsim_shape *ks_fleetsim_shapes(size_t *n);

typedef enum ks_fleetsim_event_type {
    KS_FLEETSIM_ARRIVE,
    KS_FLEETSIM_DEPART
} ks_fleetsim_event_type;

typedef struct ks_fleetsim_event {
    uint8_t type;  /* ks_fleetsim_event_type */
    uint8_t shape; /* index into ks_fleetsim_shapes() */
    uint32_t vm;   /* VM number: arrivals number VMs 0, 1, 2, ... */
} ks_fleetsim_event;

typedef struct ks_fleetsim_trace {
    uint32_t n_events, n_vms;
    uint32_t n_fill_events;    /* events[0 .. n_fill_events) are the fill phase */
    ks_fleetsim_event *events; /* owned */
} ks_fleetsim_trace;

/*
 * A trace: arrivals until the requested vCPUs reach fill_vcpus, then `steps`
 * churn steps (one departure of a random live VM, one arrival).  Departures
 * only name VMs that arrived earlier (whether or not they were placed).
 * KS_ENOMEM.
 */
ks_code ks_fleetsim_trace_new(ks_fleetsim_trace **out, uint64_t seed, uint64_t fill_vcpus,
                              uint32_t steps, ks_err *err);
void ks_fleetsim_trace_free(ks_fleetsim_trace *t);

/* "vm-42" for VM number 42. */
void ks_fleetsim_vm_name(char buf[KS_ID_MAX], uint32_t vm);
/* Fills *req (cleared first) for VM `vm` of shape `shape`. */
void ks_fleetsim_make_request(ks_vm_request *req, uint32_t vm, uint32_t shape);

/*
 * Checks a plan against the fleet: every vCPU's host CPU exists, and has every
 * feature of plan->visible usable (walked CPU by CPU, not assumed).  Returns
 * the number of vCPUs that violate it (0 = clean); *first gets a description
 * of the first violation (may be NULL).
 */
uint32_t ks_fleetsim_check_plan(const struct ks_fleet *fleet, const ks_plan *plan,
                                char first[KS_TEXT_MAX]);

/* ------------------------------------------------------------------ */
/* Replaying a trace in process                                        */
/* ------------------------------------------------------------------ */

/*
 * Replay state: which VMs of the trace are placed, counters, optional
 * latency samples.  With a store, every placement is stored the way kintsugid
 * stores it (request and plan JSON, vm row + vCPU allocations + a
 * "vm.placed" event in one transaction, then ks_fleet_vm_add after commit)
 * and every departure deletes the VM row; `store_batch` events share one
 * transaction (1 = one transaction per placement, as kintsugid does).
 */
typedef struct ks_fleetsim_replay {
    const ks_fleetsim_trace *trace;
    uint8_t *placed; /* per VM number */
    uint32_t pos;    /* next event */
    uint64_t arrivals, placed_ok, no_capacity, departures;
    uint64_t placed_vcpus; /* vCPUs of successful placements */
    uint64_t decide_ns;    /* sum of ks_sched_place() time (all arrivals) */
    uint64_t place_ns;     /* sum of place+store+index time of successful placements */
    uint64_t commit_ns;    /* sum of ks_store_commit() time */
    uint64_t n_commits;
    ks_fleetsim_samples decide_lat;                        /* per arrival, when record_latency */
    ks_fleetsim_samples decide_ok_lat;                     /* per arrival that was placed */
    ks_fleetsim_samples decide_fail_lat;                   /* per arrival refused (no capacity) */
    ks_fleetsim_samples shape_lat[KS_FLEETSIM_MAX_SHAPES]; /* per arrival, by shape */
    ks_fleetsim_samples place_lat;                         /* per successful durable placement */
    ks_fleetsim_samples commit_lat;                        /* per commit, when record_latency */
    bool record_latency;
    /* Group commit as kintsugid does it (api/ks_api_group.c): store_batch
     * units (arrivals and departures) share one commit, each in a savepoint;
     * an arrival reserves its CPUs in the index before the commit, a
     * departure frees them after it; a placement's latency runs from its
     * decision to its group's commit, and each unit is charged its share of
     * the commit time in place_ns.  Without it, store_batch > 1 is the
     * loader's mode (no savepoints, latency without the commit). */
    bool group_commit;
    uint64_t n_units; /* units committed in group_commit mode */
} ks_fleetsim_replay;

ks_code ks_fleetsim_replay_init(ks_fleetsim_replay *r, const ks_fleetsim_trace *t, ks_err *err);
void ks_fleetsim_replay_destroy(ks_fleetsim_replay *r);

/*
 * Runs the next n events (fewer at the end of the trace) against `fleet` and,
 * when store is not NULL, the store.  KS_ENOCAPACITY is counted, not returned;
 * other errors of the scheduler or the store are returned.
 */
ks_code ks_fleetsim_replay_run(ks_fleetsim_replay *r, struct ks_fleet *fleet, uint32_t n,
                               struct ks_store *store, uint32_t store_batch, ks_err *err);

/* Walks every live VM's plan through ks_fleetsim_check_plan(): *out_vms gets
 * the VMs checked, the return value the violating vCPUs (0 = clean). */
uint64_t ks_fleetsim_check_all(const struct ks_fleet *fleet, uint64_t *out_vms,
                               char first[KS_TEXT_MAX]);

/* ------------------------------------------------------------------ */
/* Small measurement helpers shared by the benchmarks                  */
/* ------------------------------------------------------------------ */

/* Checked number parsers for the command lines: whole string, in range.  false
 * when s is not a number in [min, max]. */
bool ks_fleetsim_parse_u64(uint64_t *out, const char *s, uint64_t min, uint64_t max);
bool ks_fleetsim_parse_double(double *out, const char *s, double min, double max);

uint64_t ks_fleetsim_now_ns(void);
size_t ks_fleetsim_rss_bytes(void);
/* Sorts v and returns the q-quantile (0 <= q <= 1), 0 when n == 0. */
uint64_t ks_fleetsim_quantile(uint64_t *v, size_t n, double q);

bool ks_fleetsim_samples_push(ks_fleetsim_samples *s, uint64_t x);
void ks_fleetsim_samples_destroy(ks_fleetsim_samples *s);

/* Deterministic PRNG (xorshift64*), seeded through splitmix64. */
typedef struct ks_fleetsim_rng {
    uint64_t s;
} ks_fleetsim_rng;
void ks_fleetsim_rng_seed(ks_fleetsim_rng *r, uint64_t seed);
uint64_t ks_fleetsim_rng_next(ks_fleetsim_rng *r);
/* Uniform in [0, n) (0 when n == 0) and in [0, 1). */
uint32_t ks_fleetsim_rng_below(ks_fleetsim_rng *r, uint32_t n);
double ks_fleetsim_rng_unit(ks_fleetsim_rng *r);

/* ------------------------------------------------------------------ */
/* HTTP load driver (libcurl multi, keep-alive)                        */
/* ------------------------------------------------------------------ */

/* One request to issue.  Strings are copied by the driver. */
typedef struct ks_fleetsim_http_req {
    const char *method; /* "GET", "PUT", "POST", "DELETE" */
    char path[256];     /* "/v1/vms" */
    const char *body;   /* NULL = none */
    size_t body_len;
    int tag; /* caller's label, handed back on completion */
} ks_fleetsim_http_req;

/* Fill *req for connection `slot`; return false when this slot has no more work. */
typedef bool (*ks_fleetsim_http_next_fn)(void *ctx, uint32_t slot, ks_fleetsim_http_req *req);
/* A response: HTTP status (0 on transport failure), latency, the request's tag. */
typedef void (*ks_fleetsim_http_done_fn)(void *ctx, uint32_t slot, int tag, long status,
                                         uint64_t latency_ns, const char *body, size_t body_len);

/*
 * Runs `concurrency` keep-alive connections against base_url ("http://127.0.0.1:
 * 7420"), each issuing one request at a time from next() until every slot is
 * done.  token may be NULL (no Authorization header).  KS_EIO (curl setup),
 * KS_ENOMEM.  Transport failures are reported to done() with status 0.
 */
ks_code ks_fleetsim_http_run(const char *base_url, const char *token, uint32_t concurrency,
                             ks_fleetsim_http_next_fn next, ks_fleetsim_http_done_fn done,
                             void *ctx, ks_err *err);

/*
 * Sends every host's report (PUT /v1/hosts/{id}/report) with `concurrency`
 * connections.  *out_failed gets the number of non-2xx answers, *out_ns the
 * wall time, lat (may be NULL) each latency.
 */
ks_code ks_fleetsim_send_reports(const ks_fleetsim *sim, const char *base_url, const char *token,
                                 uint32_t concurrency, ks_fleetsim_policy policy,
                                 uint64_t *out_failed, uint64_t *out_ns, ks_fleetsim_samples *lat,
                                 ks_err *err);

/*
 * Creates the simulator's pool (POST /v1/pools {"name": KS_FLEETSIM_POOL,
 * "hosts": [...]}) on the API.  A 409 (already there) is accepted.  KS_EUNAVAIL
 * with the answer's status and body on another failure.
 */
ks_code ks_fleetsim_create_pool_api(const ks_fleetsim *sim, const char *base_url, const char *token,
                                    ks_err *err);

#endif
