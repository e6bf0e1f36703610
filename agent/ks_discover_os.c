/*
 * ks_discover_os.c - what discovery reads from procfs and sysfs besides hwloc:
 * /proc/cpuinfo (feature fallback and CPU identity), the CPU vulnerability
 * files and the perf event-source (PMU) device names.  Every path is taken
 * relative to a root ("" for the live machine, the fixture tree otherwise).
 *
 * Inputs are bounded: cpuinfo is read up to KS_CPUINFO_MAX_BYTES, directory
 * listings are capped, and values longer than the report's fixed strings are
 * cut (these are informational strings, not identifiers).
 */
#include "ks_discover_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KS_CPUINFO_MAX_BYTES (64u << 20)
#define KS_MAX_VULNS KS_REPORT_MAX_VULNS
#define KS_MAX_PMU_NAMES 256u /* listed; at most KS_REPORT_MAX_PMU_NAMES kept */

static int join(char *out, size_t cap, const char *root, const char *rel)
{
    int n = snprintf(out, cap, "%s%s", root ? root : "", rel);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

bool ks_discover__read_line(char *buf, size_t cap, const char *root, const char *rel)
{
    char path[PATH_MAX];
    char line[1024];
    if (cap == 0 || join(path, sizeof(path), root, rel) != 0)
        return false;
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    if (!ok)
        return false;
    size_t n = strcspn(line, "\r\n");
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    line[n] = '\0';
    const char *s = line;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!*s)
        return false;
    snprintf(buf, cap, "%s", s);
    return true;
}

/* Decimal, or hex with 0x; false on junk or overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = (unsigned)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            d = (unsigned)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            d = (unsigned)(*s - 'A' + 10);
        else
            return false;
        if (v > (UINT64_MAX - d) / base)
            return false;
        v = v * base + d;
    }
    *out = v;
    return true;
}

bool ks_discover__read_u64(uint64_t *out, const char *root, const char *rel)
{
    char buf[64];
    return ks_discover__read_line(buf, sizeof(buf), root, rel) && parse_u64(buf, out);
}

/* ---- /proc/cpuinfo -------------------------------------------------------------------- */

static const struct {
    unsigned code;
    const char *name;
} arm_implementers[] = {
    {0x41, "ARM"},     {0x42, "Broadcom"}, {0x43, "Cavium"}, {0x46, "Fujitsu"},
    {0x48, "HiSilicon"}, {0x4e, "NVIDIA"}, {0x50, "APM"},    {0x51, "Qualcomm"},
    {0x61, "Apple"},   {0x63, "Arm China"}, {0x6d, "Microsoft"}, {0xc0, "Ampere"},
};

static int32_t num_or(const char *v, int32_t dflt)
{
    uint64_t x;
    return parse_u64(v, &x) && x <= INT32_MAX ? (int32_t)x : dflt;
}

ks_code ks_discover__cpuinfo_parse(ks_discover__cpuinfo *ci, char *text, ks_err *err)
{
    ks_code rc = KS_OK;
    uint32_t cap = 0;
    bool in_block = false, block_has_cpu = false, ident_block = false;
    const char *block_flags = NULL;
    unsigned arm_impl = 0, arm_part = 0;
    bool have_impl = false;
    char arm_proc_name[KS_NAME_MAX] = "";

    memset(ci, 0, sizeof(*ci));
    ci->text = text;
    ci->arch = -1;
    char *p = text;
    for (;;) {
        char *eol = p ? strchr(p, '\n') : NULL;
        if (eol)
            *eol = '\0';
        bool blank = !p || p[strspn(p, " \t\r")] == '\0';
        if (blank) {
            if (in_block) {
                if (block_has_cpu)
                    ci->cpus[ci->n - 1].flags = block_flags;
                else if (block_flags)
                    ci->shared_flags = block_flags;
                if (ident_block)
                    ci->has_ident = ci->has_ident || ci->vendor[0] || have_impl;
            }
            in_block = block_has_cpu = ident_block = false;
            block_flags = NULL;
            if (!p)
                break;
        } else {
            char *colon = strchr(p, ':');
            if (colon) {
                char *k = p, *ke = colon;
                while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
                    ke--;
                *ke = '\0';
                char *v = colon + 1;
                v += strspn(v, " \t");
                size_t vl = strcspn(v, "\r");
                while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                    vl--;
                v[vl] = '\0';
                in_block = true;
                if (strcmp(k, "processor") == 0) {
                    uint64_t id;
                    if (parse_u64(v, &id) && id < INT32_MAX) {
                        if (ci->n == cap) {
                            uint32_t ncap = cap ? cap * 2 : 64;
                            void *nc = realloc(ci->cpus, ncap * sizeof(*ci->cpus));
                            if (!nc) {
                                rc = ks_err_set(err, KS_ENOMEM, "out of memory parsing cpuinfo");
                                goto done;
                            }
                            ci->cpus = nc;
                            cap = ncap;
                        }
                        ci->cpus[ci->n].id = (int32_t)id;
                        ci->cpus[ci->n].flags = NULL;
                        ci->n++;
                        block_has_cpu = true;
                    }
                } else if (strcmp(k, "flags") == 0) {
                    block_flags = v;
                    ci->arch = KS_ARCH_X86_64;
                } else if (strcmp(k, "Features") == 0) {
                    block_flags = v;
                    if (ci->arch < 0)
                        ci->arch = KS_ARCH_ARM64;
                } else if (strcmp(k, "vendor_id") == 0 && !ci->vendor[0]) {
                    snprintf(ci->vendor, sizeof(ci->vendor), "%s", v);
                    ident_block = true;
                } else if (strcmp(k, "model name") == 0 && !ci->model_name[0]) {
                    snprintf(ci->model_name, sizeof(ci->model_name), "%s", v);
                } else if (strcmp(k, "Processor") == 0 && !arm_proc_name[0]) {
                    snprintf(arm_proc_name, sizeof(arm_proc_name), "%s", v);
                } else if (strcmp(k, "cpu family") == 0 && ci->family == 0) {
                    ci->family = num_or(v, 0);
                } else if (strcmp(k, "model") == 0 && ci->model == 0) {
                    ci->model = num_or(v, 0);
                } else if (strcmp(k, "stepping") == 0 && ci->stepping == 0) {
                    ci->stepping = num_or(v, 0);
                } else if (strcmp(k, "microcode") == 0 && !ci->microcode[0]) {
                    snprintf(ci->microcode, sizeof(ci->microcode), "%s", v);
                } else if (strcmp(k, "CPU implementer") == 0 && !have_impl) {
                    uint64_t x;
                    if (parse_u64(v, &x)) {
                        arm_impl = (unsigned)x;
                        have_impl = true;
                        ident_block = true;
                    }
                } else if (strcmp(k, "CPU architecture") == 0 && ci->family == 0) {
                    ci->family = num_or(v, 0);
                } else if (strcmp(k, "CPU part") == 0 && arm_part == 0) {
                    uint64_t x;
                    if (parse_u64(v, &x))
                        arm_part = (unsigned)x;
                    ci->model = (int32_t)arm_part;
                } else if (strcmp(k, "CPU revision") == 0 && ci->stepping == 0) {
                    ci->stepping = num_or(v, 0);
                }
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    if (have_impl && !ci->vendor[0]) {
        snprintf(ci->vendor, sizeof(ci->vendor), "ARM implementer 0x%02x", arm_impl);
        for (size_t i = 0; i < sizeof(arm_implementers) / sizeof(arm_implementers[0]); i++)
            if (arm_implementers[i].code == arm_impl)
                snprintf(ci->vendor, sizeof(ci->vendor), "%s", arm_implementers[i].name);
        if (!ci->model_name[0]) {
            if (arm_proc_name[0])
                snprintf(ci->model_name, sizeof(ci->model_name), "%s", arm_proc_name);
            else
            {
                /* The vendor name is short; a cut model name is only cosmetic. */
                int w = snprintf(ci->model_name, sizeof(ci->model_name), "%.64s part 0x%03x",
                                 ci->vendor, arm_part);
                (void)w;
            }
        }
        ci->has_ident = true;
    }
    if (ci->vendor[0])
        ci->has_ident = true;
done:
    if (rc != KS_OK) {
        free(ci->cpus);
        ci->cpus = NULL;
        ci->n = 0;
        ci->text = NULL; /* the caller still owns text on failure */
    }
    return rc;
}

ks_code ks_discover__cpuinfo_load(ks_discover__cpuinfo *ci, const char *root, ks_err *err)
{
    char path[PATH_MAX];
    ks_code rc = KS_OK;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    memset(ci, 0, sizeof(*ci));
    ci->arch = -1;
    if (join(path, sizeof(path), root, "/proc/cpuinfo") != 0)
        return ks_err_set(err, KS_EINVAL, "cpuinfo path too long");
    FILE *f = fopen(path, "re");
    if (!f)
        return ks_err_set(err, errno == ENOENT ? KS_ENOTFOUND : KS_EIO, "cannot open '%s'", path);
    /* procfs reports size 0, so read in chunks up to the cap. */
    for (;;) {
        if (cap - len < 4097) {
            size_t ncap = cap ? cap * 2 : 65536;
            if (ncap > KS_CPUINFO_MAX_BYTES + 1) {
                rc = ks_err_set(err, KS_EINVAL, "'%s' is larger than %u bytes", path,
                                KS_CPUINFO_MAX_BYTES);
                goto done;
            }
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = ks_err_set(err, KS_ENOMEM, "out of memory reading '%s'", path);
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        rc = ks_err_set(err, KS_EIO, "cannot read '%s'", path);
        goto done;
    }
    buf[len] = '\0';
    /* Embedded NULs would hide the rest of the file from the parser: refuse them. */
    if (memchr(buf, '\0', len)) {
        rc = ks_err_set(err, KS_EINVAL, "'%s' is not text", path);
        goto done;
    }
    rc = ks_discover__cpuinfo_parse(ci, buf, err);
    if (rc == KS_OK)
        buf = NULL;
done:
    free(buf);
    fclose(f);
    return rc;
}

void ks_discover__cpuinfo_destroy(ks_discover__cpuinfo *ci)
{
    if (!ci)
        return;
    free(ci->cpus);
    free(ci->text);
    memset(ci, 0, sizeof(*ci));
    ci->arch = -1;
}

const char *ks_discover__cpuinfo_flags(const ks_discover__cpuinfo *ci, int32_t id)
{
    for (uint32_t i = 0; i < ci->n; i++)
        if (ci->cpus[i].id == id)
            return ci->cpus[i].flags ? ci->cpus[i].flags : ci->shared_flags;
    return NULL;
}

/* ---- sysfs listings ------------------------------------------------------------------- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Lists the entry names of root+rel (no dot entries), sorted, at most max; *out owned. */
static ks_code list_dir(char (**out)[KS_NAME_MAX], uint32_t *n_out, const char *root,
                        const char *rel, uint32_t max, ks_err *err)
{
    char path[PATH_MAX];
    char(*names)[KS_NAME_MAX] = NULL;
    uint32_t n = 0;
    *out = NULL;
    *n_out = 0;
    if (join(path, sizeof(path), root, rel) != 0)
        return KS_OK;
    DIR *d = opendir(path);
    if (!d)
        return KS_OK; /* absent on this kernel or in this fixture: nothing to report */
    names = calloc(max, sizeof(*names));
    if (!names) {
        closedir(d);
        return ks_err_set(err, KS_ENOMEM, "out of memory listing '%s'", path);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= KS_NAME_MAX)
            continue;
        memcpy(names[n++], e->d_name, strlen(e->d_name) + 1);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_name);
    if (n == 0) {
        free(names);
        names = NULL;
    }
    *out = names;
    *n_out = n;
    return KS_OK;
}

ks_code ks_discover__vulns(ks_report *r, const char *root, ks_err *err)
{
    static const char dir[] = "/sys/devices/system/cpu/vulnerabilities";
    char(*names)[KS_NAME_MAX] = NULL;
    uint32_t n = 0;
    ks_code rc = list_dir(&names, &n, root, dir, KS_MAX_VULNS, err);
    if (rc != KS_OK || n == 0)
        return rc;
    ks_vuln *v = calloc(n, sizeof(*v));
    if (!v) {
        free(names);
        return ks_err_set(err, KS_ENOMEM, "out of memory reading vulnerabilities");
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        char rel[PATH_MAX];
        snprintf(rel, sizeof(rel), "%s/%s", dir, names[i]);
        snprintf(v[k].name, sizeof(v[k].name), "%s", names[i]);
        if (!ks_discover__read_line(v[k].status, sizeof(v[k].status), root, rel))
            snprintf(v[k].status, sizeof(v[k].status), "unknown");
        k++;
    }
    free(names);
    free(r->vulns);
    r->vulns = v;
    r->n_vulns = k;
    return KS_OK;
}

/* A CPU PMU: the core PMU ("cpu"), hybrid core PMUs ("cpu_core", "cpu_atom"), and
 * the Arm core PMUs ("armv8_pmuv3_0", "armv8_cortex_a72", ...). */
static bool is_cpu_pmu(const char *name)
{
    return strcmp(name, "cpu") == 0 || strncmp(name, "cpu_", 4) == 0 ||
           strncmp(name, "armv8_", 6) == 0 || strncmp(name, "armv9_", 6) == 0;
}

ks_code ks_discover__pmu_names(ks_report *r, const char *root, ks_err *err)
{
    char(*names)[KS_NAME_MAX] = NULL;
    uint32_t n = 0, k = 0;
    ks_code rc = list_dir(&names, &n, root, "/sys/bus/event_source/devices", KS_MAX_PMU_NAMES,
                          err);
    if (rc != KS_OK || n == 0)
        return rc;
    for (uint32_t i = 0; i < n && k < KS_REPORT_MAX_PMU_NAMES; i++)
        if (is_cpu_pmu(names[i]))
            memmove(names[k++], names[i], KS_NAME_MAX);
    if (k == 0) {
        free(names);
        return KS_OK;
    }
    free(r->pmu.names);
    r->pmu.names = names;
    r->pmu.n_names = k;
    return KS_OK;
}
