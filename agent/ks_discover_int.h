/*
 * ks_discover_int.h - internals shared by the ks_discover*.c files (not API).
 */
#ifndef KS_DISCOVER_INT_H
#define KS_DISCOVER_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ks_discover.h"

/* Where discovery reads from. */
typedef struct ks_discover__src {
    ks_discover_kind kind;
    char dir[PATH_MAX];     /* fixture root (dump dir or fsroot); "" when live */
    char root[PATH_MAX];    /* /sys and /proc prefix: "" live, dir for sysfs, unused for dumps */
    char name[KS_NAME_MAX]; /* fixture name (tarball/dir basename without .tar.bz2) */
    char tmp[PATH_MAX];     /* private unpack dir to remove, "" when none */
} ks_discover__src;

/* Resolves opts->fixture_path (unpacking tarballs) or live.  ks_discover__src_close()
 * removes what it unpacked, also after a failure. */
ks_code ks_discover__src_open(ks_discover__src *src, const ks_discover_options *opts, ks_err *err);
void ks_discover__src_close(ks_discover__src *src);

/* Recursively removes `dir` (no symlink following).  0 or -1. */
int ks_discover__rmtree(const char *dir);

/* ---- /proc/cpuinfo -------------------------------------------------------------------- */

typedef struct ks_discover__cpuinfo_cpu {
    int32_t id;
    const char *flags; /* borrowed from text; NULL when the block had none */
} ks_discover__cpuinfo_cpu;

typedef struct ks_discover__cpuinfo {
    char *text;                     /* owned, modified in place */
    uint32_t n;
    ks_discover__cpuinfo_cpu *cpus; /* owned */
    const char *shared_flags;       /* flags of a block without "processor" (old ARM) */
    int arch;                       /* ks_arch, -1 when unknown */
    char vendor[KS_NAME_MAX];
    char model_name[KS_NAME_MAX];
    char microcode[KS_NAME_MAX];
    int32_t family, model, stepping;
    bool has_ident;
} ks_discover__cpuinfo;

/* Parses root + "/proc/cpuinfo".  KS_ENOTFOUND when absent, KS_EIO, KS_ENOMEM. */
ks_code ks_discover__cpuinfo_load(ks_discover__cpuinfo *ci, const char *root, ks_err *err);
ks_code ks_discover__cpuinfo_parse(ks_discover__cpuinfo *ci, char *text, ks_err *err);
void ks_discover__cpuinfo_destroy(ks_discover__cpuinfo *ci);
/* Flags of processor `id` (its own, else the shared block's); NULL when none. */
const char *ks_discover__cpuinfo_flags(const ks_discover__cpuinfo *ci, int32_t id);

/* ---- small readers under a root ------------------------------------------------------- */

/* Reads the first line of root+rel into buf (trimmed).  false when unreadable or empty. */
bool ks_discover__read_line(char *buf, size_t cap, const char *root, const char *rel);
/* Reads a decimal unsigned from root+rel.  false when unreadable or not a number. */
bool ks_discover__read_u64(uint64_t *out, const char *root, const char *rel);

/* Fills the report's vulnerabilities and PMU device names from root's sysfs. */
ks_code ks_discover__vulns(ks_report *r, const char *root, ks_err *err);
ks_code ks_discover__pmu_names(ks_report *r, const char *root, ks_err *err);

#endif
