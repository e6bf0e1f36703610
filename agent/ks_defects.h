/*
 * ks_defects.h - defect detection for the host report: gathers evidence that a
 * CPU (or one of its features) is faulty and records it as ks_defect entries,
 * then lets ks_report_derive_state() turn defects into usable masks and states.
 *
 * Sources (each can be switched off; paths under a root so tests use fake trees):
 *  - selftest: the known-answer self-tests (ks_selftest.h), pinned per CPU.
 *    A failed test adds one defect per feature it proves faulty; the integer
 *    test adds a whole-CPU defect (KS_FEATURE_NONE => quarantined).
 *  - ifs: Intel In-Field Scan, /sys/devices/virtual/misc/intel_ifs_<N>/.  The
 *    driver keeps only the outcome of the *last* test, so a per-CPU verdict
 *    needs a run: write the CPU number to run_test, then read status
 *    ("pass" | "fail" | "untested") and details (SCAN_STATUS, hex).  A scan
 *    tests circuits, not instructions: "fail" adds a whole-CPU defect to every
 *    thread of the core (quarantine); "untested" (interrupted, not all chunks
 *    run) adds nothing and is noted in the state's warning.  A scan takes the
 *    whole core offline for up to ~200 ms, so cores listed in skip_cpus (they
 *    run vCPUs) are never scanned unless forced.  Another process running a scan
 *    between our write and read could swap verdicts; the driver serialises runs
 *    but not our read - acceptable for the rare IFS user, and documented.
 *  - mce: machine-check event counts per CPU.  /sys/devices/system/machinecheck/
 *    machinecheck<N>/ only holds bank controls, no counters, so the per-CPU
 *    counts come from /proc/interrupts rows MCE (exceptions), THR (threshold /
 *    CMCI: corrected errors) and DFR (AMD deferred errors).  A CPU whose sum
 *    exceeds mce_threshold gets a whole-CPU MCE defect (quarantine): MCA banks
 *    name a hardware structure (cache, memory controller, interconnect), never
 *    an instruction, so no narrower mask is justified.  Broadcast machine checks
 *    count on every CPU, so a host-wide storm quarantines every CPU - which is
 *    what such a host deserves.  Raise the threshold on hosts with noisy
 *    corrected memory errors.  (rasdaemon's database is not read: the agent does
 *    not link SQLite.)
 *  - operator: /etc/kintsugi/defects.json, a JSON array of entries
 *      {"cpu": 17, "features": ["avx512f"], "reason": "vendor RMA 1234"}
 *      {"cpu": 3, "quarantine": true, "reason": "..."}
 *    features may name groups ("avx512").  The last good file is kept: a bad
 *    file is an error naming the entry and field ("entries[2].features[0]:
 *    unknown feature 'avx513'") and leaves the previous content in force.  A
 *    *missing* file is not an error: it means the operator declares nothing, and
 *    deleting the file clears operator defects (the "cleared by operator"
 *    transition of the CPU state machine).
 *
 * Re-applying is idempotent: operator, MCE and IFS (for scanned cores) defects
 * are replaced by the current evidence; self-test defects accumulate (a fault
 * seen once stays until the agent restarts with a fresh report) and are not
 * duplicated.
 *
 * Threading: no globals; a ks_defects_state belongs to one caller at a time.
 */
#ifndef KS_DEFECTS_H
#define KS_DEFECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ks_err.h"
#include "ks_report.h"
#include "ks_selftest.h"

#define KS_DEFECTS_OPERATOR_FILE "/etc/kintsugi/defects.json"
#define KS_DEFECTS_OPERATOR_MAX_BYTES (1u << 20)
#define KS_DEFECTS_OPERATOR_MAX_ENTRIES 8192u
#define KS_DEFECTS_REASON_MAX 200
#define KS_DEFECTS_DEFAULT_MCE_THRESHOLD 16u
#define KS_DEFECTS_INJECT_ENV "KS_INJECT_FAULT"

typedef struct ks_defects_options {
    const char *root;   /* prefix for /sys and /proc; NULL or "" = the live system */
    bool run_selftests; /* run the self-test suite on every eligible CPU */
    bool use_ifs;       /* run IFS scans where the driver exists */
    bool use_mce;
    bool use_operator;
    const char *operator_file; /* NULL = KS_DEFECTS_OPERATOR_FILE (not prefixed by root) */
    uint64_t mce_threshold;    /* defect when MCE+THR+DFR events > this */
    const char *inject;        /* fault-injection spec ("cpu:feature,..."; the daemon's
                                * config key inject_fault); NULL = $KS_INJECT_FAULT */
    const int32_t *skip_cpus;  /* CPUs hosting vCPUs: no self-tests, no IFS scans */
    uint32_t n_skip_cpus;
    bool force;               /* test and scan skip_cpus too */
    uint32_t selftest_min_us; /* 0 = KS_SELFTEST_DEFAULT_MIN_TEST_US */
    bool selftest_idle;       /* self-tests at SCHED_IDLE */
    uint64_t now_us;          /* 0 = the clock (tests pin time) */
    bool selftest_isolate;    /* run each CPU's suite in a child process (crash => FAIL) */
} ks_defects_options;

#define KS_DEFECTS_OPTIONS_INIT                                                                    \
    {                                                                                              \
        NULL, true, true, true, true, NULL, KS_DEFECTS_DEFAULT_MCE_THRESHOLD, NULL, NULL, 0,       \
            false, 0, false, 0, true                                                               \
    }

typedef struct ks_defects_operator_entry {
    int32_t cpu;
    bool quarantine;
    ks_featset features;
    char reason[KS_DEFECTS_REASON_MAX + 1];
} ks_defects_operator_entry;

/* Caller-provided storage: ks_defects_state_init() / ks_defects_state_destroy(). */
typedef struct ks_defects_state {
    /* the last good operator file */
    bool operator_loaded;
    uint64_t operator_mtime_us; /* time_us of operator defects (stable across reloads) */
    uint32_t n_operator;
    ks_defects_operator_entry *operator_entries; /* owned */
    /* round-robin cursor of ks_defects_selftest_next_cpu() */
    int32_t last_selftest_cpu;
    /* what the last ks_defects_apply() did */
    uint32_t n_selftest_cpus, n_selftest_failures;
    uint32_t n_ifs_cores, n_ifs_failures;
    uint32_t n_mce_cpus;
    uint32_t n_operator_defects;
    char warning[KS_TEXT_MAX]; /* last non-fatal problem, "" when none */
} ks_defects_state;

void ks_defects_state_init(ks_defects_state *st);
void ks_defects_state_destroy(ks_defects_state *st); /* NULL-safe; frees the contents */

/*
 * Loads and validates the operator file.  On success the state holds the new
 * entries; on any error the previous (last good) entries stay.  `r` (may be
 * NULL) is the report the entries must refer to: a CPU not in it is an error
 * ("entries[3].cpu: cpu 99 is not on this host").  A missing file is success
 * with no entries.  KS_EINVAL (err->field = the JSON path), KS_EIO, KS_ETOOLARGE,
 * KS_ENOMEM.
 */
ks_code ks_defects_load_operator_file(ks_defects_state *st, const char *path, const ks_report *r,
                                      ks_err *err);
/* Same from text already in memory (mtime_us becomes the defects' time). */
ks_code ks_defects_parse_operator(ks_defects_state *st, const char *text, size_t len,
                                  uint64_t mtime_us, const ks_report *r, ks_err *err);

/* One IFS outcome. */
typedef struct ks_ifs_result {
    char test[32]; /* "intel_ifs_0" */
    int32_t cpu;
    char status[16];  /* "pass", "fail", "untested" */
    char details[32]; /* SCAN_STATUS as the driver prints it */
} ks_ifs_result;

/*
 * Runs every IFS test type present under root on the core of `cpu` and reads
 * each outcome into out[0..*n_out).  KS_ENOTFOUND when there is no IFS driver,
 * KS_EIO when run_test refuses (no image loaded, not root, core offline) - the
 * message names the file and errno.
 */
ks_code ks_defects_ifs_run_cpu(ks_ifs_result *out, size_t cap, size_t *n_out, const char *root,
                               int32_t cpu, ks_err *err);

/* Machine-check events of one CPU. */
typedef struct ks_mce_count {
    int32_t cpu;
    uint64_t mce, thr, dfr;
} ks_mce_count;

/*
 * Reads per-CPU machine-check counts from <root>/proc/interrupts.  *out is a
 * new array of *n_out entries (free()), one per CPU column.  KS_ENOTFOUND when
 * the file is missing, KS_EINVAL when malformed, KS_ENOMEM.
 */
ks_code ks_defects_mce_read(ks_mce_count **out, uint32_t *n_out, const char *root, ks_err *err);

/*
 * Runs the enabled sources and records their defects in `r`, then calls
 * ks_report_derive_state().  Self-tests run on every CPU that is not offline
 * and not in skip_cpus (unless force), and never for a report whose
 * host.source is "fixture:..." (its CPUs are not this machine's).  The injection spec is checked
 * first (KS_EINVAL, nothing changed, when it is malformed or names a CPU not in the report).  A
 * failing source does not stop the others: the first error is returned after everything else was
 * applied, and `r` is always consistent. Per-CPU problems that are not defects (a CPU outside our
 * cpuset, IFS not runnable) go to st->warning.
 */
ks_code ks_defects_apply(ks_report *r, const ks_defects_options *opts, ks_defects_state *st,
                         ks_err *err);

/*
 * Daemon helpers for periodic self-tests (default period
 * KS_SELFTEST_DEFAULT_PERIOD_US, one CPU per tick, at SCHED_IDLE):
 *   int32_t cpu = ks_defects_selftest_next_cpu(st, r, &opts);
 *   if (cpu >= 0 && ks_selftest_run_cpu(&res, cpu, &sopts, &err) == KS_OK)
 *       ks_defects_add_selftest(r, &res, &changed, &err);   // then re-report if changed
 * next_cpu returns the next eligible CPU after the previous one (round robin,
 * skipping offline CPUs and skip_cpus unless force), -1 when none.
 */
int32_t ks_defects_selftest_next_cpu(ks_defects_state *st, const ks_report *r,
                                     const ks_defects_options *opts);

/*
 * Adds a defect for every FAIL in `res` to its CPU in `r` (source selftest,
 * no duplicates) and re-derives states.  *changed (may be NULL) tells whether a
 * defect was added.  KS_ENOTFOUND when the CPU is not in the report, KS_EINVAL
 * when the per-CPU defect cap is hit.
 */
ks_code ks_defects_add_selftest(ks_report *r, const ks_selftest_cpu_result *res, bool *changed,
                                ks_err *err);

#endif
