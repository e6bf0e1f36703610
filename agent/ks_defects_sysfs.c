/*
 * ks_defects_sysfs.c - the kernel-provided evidence sources of ks_defects:
 * Intel In-Field Scan (run_test / status / details under
 * /sys/devices/virtual/misc/intel_ifs_<N>/) and machine-check counts per CPU
 * (/proc/interrupts rows MCE, THR, DFR).  See ks_defects.h for what each
 * verdict means.  Every path is under a caller-given root so tests use fake
 * trees.  No global state; thread-safe.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ks_defects.h"

#define KS_IFS_DIR "/sys/devices/virtual/misc"
#define KS_INTERRUPTS_MAX_LINE (8u << 20) /* 8192 CPUs x 11 columns, with room */

static const char *root_or_empty(const char *root)
{
    /* "/" and "" both mean the live system; avoid "//sys" in messages */
    return (!root || !root[0] || strcmp(root, "/") == 0) ? "" : root;
}

/* Reads the first line of a small sysfs file, without the newline. */
static ks_code read_line(char *buf, size_t cap, const char *path, ks_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ks_err_set(err, errno == ENOENT ? KS_ENOTFOUND : KS_EIO, "cannot open '%s' (%s)",
                          path, strerrorname_np(errno));
    ssize_t n = read(fd, buf, cap - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return ks_err_set(err, KS_EIO, "cannot read '%s' (%s)", path, strerrorname_np(e));
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return KS_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

ks_code ks_defects_ifs_run_cpu(ks_ifs_result *out, size_t cap, size_t *n_out, const char *root,
                               int32_t cpu, ks_err *err)
{
    char dir[4096], path[4200], names[16][32];
    size_t n_names = 0, n = 0;
    ks_code rc = KS_OK;
    snprintf(dir, sizeof(dir), "%s%s", root_or_empty(root), KS_IFS_DIR);
    DIR *d = opendir(dir);
    if (!d)
        return ks_err_set(err, KS_ENOTFOUND, "no intel in-field scan driver ('%s')", dir);
    for (struct dirent *de; (de = readdir(d)) != NULL && n_names < 16;) {
        size_t len = strlen(de->d_name);
        if (strncmp(de->d_name, "intel_ifs_", 10) == 0 && len < sizeof(names[0]))
            memcpy(names[n_names++], de->d_name, len + 1);
    }
    closedir(d);
    if (n_names == 0)
        return ks_err_set(err, KS_ENOTFOUND, "no intel in-field scan driver under '%s'", dir);
    /* readdir order is arbitrary; test types run in a stable order */
    qsort(names, n_names, sizeof(names[0]), cmp_str);
    for (size_t i = 0; i < n_names && n < cap; i++) {
        ks_ifs_result *res = &out[n];
        char num[16];
        memset(res, 0, sizeof(*res));
        snprintf(res->test, sizeof(res->test), "%s", names[i]);
        res->cpu = cpu;
        snprintf(path, sizeof(path), "%s/%s/run_test", dir, names[i]);
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0) {
            rc = ks_err_set(err, KS_EIO, "cannot open '%s' (%s)", path, strerrorname_np(errno));
            goto done;
        }
        int len = snprintf(num, sizeof(num), "%d\n", (int)cpu);
        /* The write blocks while the core is scanned; its error is the driver's verdict
         * that the scan could not run (no image, core offline). */
        ssize_t w = write(fd, num, (size_t)len);
        int e = errno;
        close(fd);
        if (w != len) {
            rc = ks_err_set(err, KS_EIO, "cannot run '%s' on cpu %d (%s)", path, (int)cpu,
                            w < 0 ? strerrorname_np(e) : "short write");
            goto done;
        }
        snprintf(path, sizeof(path), "%s/%s/status", dir, names[i]);
        rc = read_line(res->status, sizeof(res->status), path, err);
        if (rc != KS_OK)
            goto done;
        snprintf(path, sizeof(path), "%s/%s/details", dir, names[i]);
        if (read_line(res->details, sizeof(res->details), path, NULL) != KS_OK)
            res->details[0] = '\0'; /* details are informative only */
        if (strcmp(res->status, "pass") != 0 && strcmp(res->status, "fail") != 0 &&
            strcmp(res->status, "untested") != 0) {
            rc = ks_err_set(err, KS_EINVAL, "'%s/%s/status': unexpected value '%s'", dir, names[i],
                            res->status);
            goto done;
        }
        n++;
    }
done:
    *n_out = n;
    return rc;
}

/* Parses a decimal count at *p, advancing; false when there is none. */
static bool parse_count(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *p = s;
    *out = v;
    return true;
}

ks_code ks_defects_mce_read(ks_mce_count **out, uint32_t *n_out, const char *root, ks_err *err)
{
    char path[4200];
    char *line = NULL;
    size_t line_cap = 0;
    ks_mce_count *c = NULL;
    uint32_t n = 0;
    ks_code rc = KS_OK;
    snprintf(path, sizeof(path), "%s/proc/interrupts", root_or_empty(root));
    FILE *f = fopen(path, "re");
    if (!f)
        return ks_err_set(err, errno == ENOENT ? KS_ENOTFOUND : KS_EIO, "cannot open '%s' (%s)",
                          path, strerrorname_np(errno));
    ssize_t len = getline(&line, &line_cap, f);
    if (len <= 0 || (size_t)len > KS_INTERRUPTS_MAX_LINE) {
        rc = ks_err_set(err, KS_EINVAL, "'%s': missing or over-long header line", path);
        goto done;
    }
    /* Header: "CPU0 CPU1 ..." - the columns are the online CPUs, ids may have gaps. */
    for (const char *p = line; *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        uint64_t id;
        if (strncmp(p, "CPU", 3) != 0 || (p += 3, !parse_count(&p, &id)) ||
            id >= KS_REPORT_MAX_CPUS) {
            rc = ks_err_set(err, KS_EINVAL, "'%s': header column %u is not 'CPU<n>'", path,
                            (unsigned)n);
            goto done;
        }
        ks_mce_count *nc = realloc(c, ((size_t)n + 1) * sizeof(*nc));
        if (!nc) {
            rc = ks_err_set(err, KS_ENOMEM, "out of memory reading '%s'", path);
            goto done;
        }
        c = nc;
        memset(&c[n], 0, sizeof(c[n]));
        c[n++].cpu = (int32_t)id;
    }
    if (n == 0) {
        rc = ks_err_set(err, KS_EINVAL, "'%s': no CPU columns", path);
        goto done;
    }
    while ((len = getline(&line, &line_cap, f)) > 0) {
        if ((size_t)len > KS_INTERRUPTS_MAX_LINE) {
            rc = ks_err_set(err, KS_EINVAL, "'%s': over-long line", path);
            goto done;
        }
        const char *p = line;
        while (*p == ' ')
            p++;
        int which = strncmp(p, "MCE:", 4) == 0   ? 0
                    : strncmp(p, "THR:", 4) == 0 ? 1
                    : strncmp(p, "DFR:", 4) == 0 ? 2
                                                 : -1;
        if (which < 0)
            continue;
        p += 4;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t v;
            if (!parse_count(&p, &v)) {
                static const char *const labels[3] = {"MCE", "THR", "DFR"};
                rc = ks_err_set(err, KS_EINVAL, "'%s': row '%s' has fewer counts than CPUs", path,
                                labels[which]);
                goto done;
            }
            uint64_t *dst = which == 0 ? &c[i].mce : which == 1 ? &c[i].thr : &c[i].dfr;
            *dst = v;
        }
    }
    *out = c;
    *n_out = n;
    c = NULL;
done:
    free(c);
    free(line);
    fclose(f);
    return rc;
}
