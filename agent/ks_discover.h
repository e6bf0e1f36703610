/*
 * ks_discover.h - host discovery: builds the ks_report of this machine (live)
 * or of a recorded fixture (a CPUID dump directory or a Linux sysfs/procfs
 * tree, either as a directory or as a .tar.bz2 tarball).
 *
 * Topology (packages, dies, clusters, cores, PUs, NUMA nodes, caches, core
 * kinds, offline CPUs) comes from hwloc; per-CPU native features come from
 * CPUID executed on each CPU (live, pinned) or from the CPU's dump file, with
 * /proc/cpuinfo as the fallback.  Defects are not detected here: every CPU
 * starts online (or offline) with no defects, and ks_report_derive_state() has
 * been applied.
 *
 * Thread safety: hwloc is pointed at a fixture through environment variables
 * (HWLOC_CPUID_PATH, HWLOC_FSROOT, HWLOC_COMPONENTS, HWLOC_THISSYSTEM; hwloc 2.9
 * has no API for them).  ks_discover_host() serialises its own calls with a
 * mutex and restores the variables, but other threads must not read or write
 * the environment while it runs.  Live discovery pins the calling thread to
 * each CPU in turn and restores its affinity before returning.
 */
#ifndef KS_DISCOVER_H
#define KS_DISCOVER_H

#include <stdint.h>

#include "ks_err.h"
#include "ks_report.h"

typedef struct ks_discover_options {
    const char *fixture_path; /* NULL: this machine.  A directory or a .tar.bz2 */
    const char *host_id;      /* NULL: /etc/machine-id (live) or "fx-<fixture name>" */
    const char *hostname;     /* NULL: gethostname() / the fixture's host name */
    const char *boot_id;      /* NULL: /proc/sys/kernel/random/boot_id, or one derived
                                 from the fixture name */
    uint64_t generation;      /* report generation (>= 1) */
    const char *tmp_dir;      /* where tarballs are unpacked; NULL: $TMPDIR or /tmp */
} ks_discover_options;

#define KS_DISCOVER_OPTIONS_INIT {NULL, NULL, NULL, NULL, 1, NULL}

/*
 * Discovers the host.  On success *out is a new report (ks_report_free()).
 * Errors: KS_ENOTFOUND (fixture path missing), KS_EINVAL (not a fixture,
 * corrupt tarball, garbled or truncated CPUID dump, invalid host id, no CPU
 * found), KS_EIO (OS or hwloc failure), KS_ENOMEM.  opts may be NULL (live,
 * defaults).
 */
ks_code ks_discover_host(ks_report **out, const ks_discover_options *opts, ks_err *err);

typedef enum ks_discover_kind {
    KS_DISCOVER_LIVE,
    KS_DISCOVER_CPUID_DUMP, /* pu<N> files + hwloc-cpuid-info */
    KS_DISCOVER_SYSFS,      /* sys/ and proc/ */
    KS_DISCOVER_KIND__COUNT
} ks_discover_kind;

const char *ks_discover_kind_to_str(ks_discover_kind k); /* "live", "cpuid-dump", "sysfs" */

/*
 * What a fixture directory is: KS_DISCOVER_CPUID_DUMP or KS_DISCOVER_SYSFS in
 * *out.  KS_ENOTFOUND when `dir` does not exist, KS_EINVAL when it is neither.
 */
ks_code ks_discover_detect(ks_discover_kind *out, const char *dir, ks_err *err);

#endif
