/*
 * ks_selftest.h - known-answer self-tests of CPU features, run pinned on one
 * logical CPU at a time.
 *
 * Each test runs a deterministic workload on one feature group (integer ALU,
 * x87, SSE2, SSE4.2/CRC32, AVX, AVX2, FMA, AVX-512 F/BW/VL/DQ/CD/VPOPCNTDQ/
 * BITALG/VBMI/IFMA, VNNI, GFNI, AES-NI, VAES, PCLMULQDQ, VPCLMULQDQ, SHA-NI,
 * BMI1/2, ADX, POPCNT, LZCNT, RDRAND, RDSEED, AMX) and compares its result with an answer computed
 * by portable scalar code (or stored).  A mismatch proves the test's features faulty on that CPU;
 * the integer test proves the whole CPU faulty (quarantine).
 *
 * A test runs only when CPUID - executed on the CPU under test - enumerates
 * every feature it needs and the OS has enabled the register state (XCR0);
 * otherwise it reports "not-present", never "pass".  Each test repeats its
 * workload until it has run for at least min_test_us (default 2 ms), so the
 * unit is exercised for a bounded, measurable time; a whole suite takes
 * 0.1-0.3 s per CPU (measured on a 2-vCPU AMD EPYC guest, ASan build).
 *
 * Threading: ks_selftest_run_cpu() runs the suite on a private worker thread
 * that it pins to the CPU (and, when asked, puts at SCHED_IDLE), then joins.
 * The caller's own affinity and scheduling policy are never touched, so there
 * is nothing to restore - and nothing that an unprivileged process could fail
 * to restore (leaving SCHED_IDLE needs CAP_SYS_NICE or RLIMIT_NICE).  Calls for
 * different CPUs may run concurrently.  Everything else here is pure.
 *
 * A test whose instruction is enumerated by CPUID but does not exist (a lying
 * hypervisor) raises SIGILL.  In-thread runs end the process then (the library
 * installs no signal handlers); isolated runs (options.isolate) turn it into a
 * FAIL of that test.
 *
 * Periodic use by the daemon: every KS_SELFTEST_DEFAULT_PERIOD_US, pick the
 * next CPU (ks_defects_selftest_next_cpu() in ks_defects.h), call
 * ks_selftest_run_cpu() with idle_priority = true, and feed the result to
 * ks_defects_add_selftest() - one CPU per tick keeps the agent's footprint to
 * ~0.1 s of one otherwise idle CPU.
 */
#ifndef KS_SELFTEST_H
#define KS_SELFTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ks_bitset.h"
#include "ks_err.h"
#include "ks_report.h"

#define KS_SELFTEST_MAX_TESTS 64
#define KS_SELFTEST_INJECT_MAX 64
#define KS_SELFTEST_DEFAULT_MIN_TEST_US 2000u
#define KS_SELFTEST_DEFAULT_PERIOD_US (UINT64_C(6) * 3600 * 1000000) /* 6 h */

typedef enum ks_selftest_status {
    KS_SELFTEST_PASS,
    KS_SELFTEST_FAIL,        /* computed result differs from the known answer */
    KS_SELFTEST_NOT_PRESENT, /* CPUID or XCR0 says the feature is not there */
    KS_SELFTEST_SKIPPED,     /* present but not runnable (kernel refused AMX permission) */
    KS_SELFTEST_STATUS__COUNT
} ks_selftest_status;

/* "pass", "FAIL", "not-present", "skipped". */
const char *ks_selftest_status_to_str(ks_selftest_status s);

/* The test table (names are stable: CLI, JSON, injection). */
size_t ks_selftest_count(void);
const char *ks_selftest_name(size_t i); /* NULL when out of range */
/* Features test i proves faulty on mismatch (empty for the whole-CPU integer test). */
void ks_selftest_faulty_features(size_t i, ks_featset *out);
/* Features test i needs.  KS_EINTERNAL when the catalogue lacks a name (a bug). */
ks_code ks_selftest_required_features(size_t i, ks_featset *out, ks_err *err);
/* True when a failure of test i is a whole-CPU defect (the base integer ISA). */
bool ks_selftest_is_whole_cpu(size_t i);

/*
 * Resolves a name to the set of tests it designates, as a bit mask over test
 * indices: a test name ("integer", "sse4_2", "crc32" is an alias of sse4_2), or
 * a catalogue feature (any spelling ks_feature_lookup accepts) - then every
 * test that proves that feature faulty.  KS_EINVAL naming the value when it is
 * neither, or a feature no test checks.
 */
ks_code ks_selftest_resolve(uint64_t *out_mask, const char *name, ks_err *err);

/* Parsed fault-injection spec: "cpu:feature[,cpu:feature...]". */
typedef struct ks_selftest_inject {
    uint32_t n;
    struct {
        int32_t cpu;
        uint64_t tests; /* ks_selftest_resolve() mask */
        char name[64];  /* as written, for messages */
    } e[KS_SELFTEST_INJECT_MAX];
} ks_selftest_inject;

/*
 * Parses `spec` (NULL or "" = no injection).  Entries are "CPU:NAME" with CPU a
 * decimal number and NAME as ks_selftest_resolve() takes.  KS_EINVAL with a
 * message naming the entry ("inject entry 2 '3:avx513': unknown feature
 * 'avx513'").  Whether CPU exists is the caller's check (it knows the CPUs).
 * An injected test on a CPU that lacks its feature stays "not-present": there
 * is no unit to corrupt, and reporting a fault for it would be a lie.
 */
ks_code ks_selftest_inject_parse(ks_selftest_inject *out, const char *spec, ks_err *err);
/* Tests injected on `cpu` (mask), 0 when none. */
uint64_t ks_selftest_inject_mask(const ks_selftest_inject *inj, int32_t cpu);

typedef struct ks_selftest_options {
    uint32_t min_test_us;             /* each test repeats its workload this long, >= 1000 */
    bool idle_priority;               /* run at SCHED_IDLE (the daemon's periodic runs) */
    uint64_t tests;                   /* mask of tests to run, 0 = all */
    const ks_selftest_inject *inject; /* NULL = none */
    /*
     * Run the suite in a forked child process instead of a thread.  A faulty
     * core can crash its workload (a corrupted pointer, SIGILL from a CPUID that
     * lies) or hang it; isolated, that becomes a FAIL of the test that was
     * running ("the workload crashed the test process with SIGILL") and the
     * tests after it are skipped, instead of taking the caller down.  The CLI
     * and ks_defects use it; costs one fork per CPU.
     */
    bool isolate;
    uint32_t timeout_ms; /* isolate: whole-suite deadline, 0 = 30 s */
} ks_selftest_options;

#define KS_SELFTEST_OPTIONS_INIT                                                                   \
    {                                                                                              \
        KS_SELFTEST_DEFAULT_MIN_TEST_US, false, 0, NULL, false, 0                                  \
    }

typedef struct ks_selftest_result {
    const char *test;    /* static name */
    uint8_t status;      /* ks_selftest_status */
    bool whole_cpu;      /* FAIL means the whole CPU (integer test) */
    bool injected;       /* FAIL caused by fault injection */
    uint32_t reps;       /* workload repetitions compared */
    uint64_t elapsed_us; /* reference + repetitions */
    uint64_t time_us;    /* wall clock when the test finished, us since the epoch */
    ks_featset faulty;   /* on FAIL: features proven faulty (empty when whole_cpu) */
    char detail[KS_TEXT_MAX];
} ks_selftest_result;

typedef struct ks_selftest_cpu_result {
    int32_t cpu;
    uint64_t start_us;   /* wall clock */
    uint64_t elapsed_us; /* whole suite on this CPU */
    ks_featset native;   /* what CPUID said on this CPU */
    uint32_t n_results;
    ks_selftest_result results[KS_SELFTEST_MAX_TESTS];
} ks_selftest_cpu_result;

/*
 * Runs the selected tests on logical CPU `cpu` (see Threading above) and
 * fills *out (written on success only).  Test failures are results, not
 * errors.  KS_EINVAL when the CPU cannot be used (offline, outside the
 * process's cpuset, negative), KS_EUNSUPPORTED on a non-x86 build,
 * KS_EINTERNAL when a thread cannot be created.
 */
ks_code ks_selftest_run_cpu(ks_selftest_cpu_result *out, int32_t cpu,
                            const ks_selftest_options *opts, ks_err *err);

/* Number of FAIL results. */
uint32_t ks_selftest_n_failed(const ks_selftest_cpu_result *r);

/* {"cpu":0,"elapsed_ms":..,"results":[{"test","status","ms","reps","faulty":[..],
 *  "whole_cpu","injected","detail"}]}.  New reference, NULL on allocation failure. */
json_t *ks_selftest_cpu_result_to_json(const ks_selftest_cpu_result *r);

#endif
