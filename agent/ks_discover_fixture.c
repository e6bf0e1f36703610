/*
 * ks_discover_fixture.c - where discovery reads from: the live machine or a
 * recorded fixture.  A fixture tarball is unpacked with tar(1) (fork/exec, no
 * shell) into a private mkdtemp() directory that ks_discover__src_close()
 * removes; the shared fixture files are never written.
 *
 * Detection: a CPUID dump directory holds pu<N> files and hwloc-cpuid-info; a
 * sysfs tree holds sys/ and proc/.  A tarball (or directory) whose only entry
 * is one such directory is looked into.
 */
#include "ks_discover_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

const char *ks_discover_kind_to_str(ks_discover_kind k)
{
    static const char *const names[KS_DISCOVER_KIND__COUNT] = {"live", "cpuid-dump", "sysfs"};
    return (unsigned)k < KS_DISCOVER_KIND__COUNT ? names[k] : "?";
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists_in(const char *dir, const char *name, bool want_dir)
{
    char p[PATH_MAX];
    struct stat st;
    if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
        return false;
    if (stat(p, &st) != 0)
        return false;
    return want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
}

ks_code ks_discover_detect(ks_discover_kind *out, const char *dir, ks_err *err)
{
    if (!is_dir(dir))
        return ks_err_set(err, KS_ENOTFOUND, "fixture directory '%s' does not exist", dir);
    if (exists_in(dir, "sys", true) && exists_in(dir, "proc", true)) {
        *out = KS_DISCOVER_SYSFS;
        return KS_OK;
    }
    if (exists_in(dir, "hwloc-cpuid-info", false) && exists_in(dir, "pu0", false)) {
        *out = KS_DISCOVER_CPUID_DUMP;
        return KS_OK;
    }
    return ks_err_set(err, KS_EINVAL,
                      "'%s' is not a fixture (neither pu<N> + hwloc-cpuid-info nor sys/ + proc/)",
                      dir);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D || flag == FTW_DNR)
        return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
    return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

static int chmod_dirs(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    /* Archives may carry read-only directories, which would block the removal. */
    if (flag == FTW_D && (st->st_mode & S_IRWXU) != S_IRWXU)
        (void)chmod(path, st->st_mode | S_IRWXU);
    return 0;
}

int ks_discover__rmtree(const char *dir)
{
    if (!dir || !dir[0] || strcmp(dir, "/") == 0)
        return -1;
    (void)nftw(dir, chmod_dirs, 16, FTW_PHYS);
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Runs `tar -xjf tarball -C dir`; tar's own output is discarded. */
static ks_code run_tar(const char *tarball, const char *dir, ks_err *err)
{
    pid_t pid = fork();
    if (pid < 0)
        return ks_err_set(err, KS_EIO, "cannot fork tar (errno %d)", errno);
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("tar", "tar", "--no-same-owner", "--no-same-permissions", "-xjf", tarball, "-C",
               dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return ks_err_set(err, KS_EIO, "cannot wait for tar (errno %d)", errno);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        return ks_err_set(err, KS_EIO, "cannot run tar to unpack '%s'", tarball);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return ks_err_set(err, KS_EINVAL, "fixture tarball '%s' is corrupt (tar failed)", tarball);
    return KS_OK;
}

/* If `dir` holds exactly one entry and it is a directory, writes its path to out. */
static bool single_subdir(char *out, size_t cap, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    char name[256] = "";
    if (!d)
        return false;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        snprintf(name, sizeof(name), "%s", e->d_name);
    }
    closedir(d);
    if (n != 1)
        return false;
    if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap)
        return false;
    return is_dir(out);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Fixture name: the basename without a trailing '/' or .tar.bz2/.tbz2. */
static void fixture_name(char *out, size_t cap, const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    const char *base = strrchr(tmp, '/');
    base = base ? base + 1 : tmp;
    snprintf(out, cap, "%s", base);
    static const char *const suffixes[] = {".tar.bz2", ".tbz2", ".tar"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        if (ends_with(out, suffixes[i]) && strlen(out) > strlen(suffixes[i])) {
            out[strlen(out) - strlen(suffixes[i])] = '\0';
            break;
        }
    }
}

ks_code ks_discover__src_open(ks_discover__src *src, const ks_discover_options *opts, ks_err *err)
{
    ks_code rc = KS_OK;
    struct stat st;
    memset(src, 0, sizeof(*src));
    if (!opts || !opts->fixture_path) {
        src->kind = KS_DISCOVER_LIVE;
        return KS_OK;
    }
    const char *path = opts->fixture_path;
    if (!path[0] || strlen(path) >= PATH_MAX - 64)
        return ks_err_set(err, KS_EINVAL, "invalid fixture path");
    if (stat(path, &st) != 0)
        return ks_err_set(err, KS_ENOTFOUND, "fixture '%s' does not exist", path);
    fixture_name(src->name, sizeof(src->name), path);

    char root[PATH_MAX];
    if (S_ISDIR(st.st_mode)) {
        snprintf(root, sizeof(root), "%s", path);
    } else if (S_ISREG(st.st_mode)) {
        const char *base = opts->tmp_dir ? opts->tmp_dir : getenv("TMPDIR");
        if (!base || !base[0])
            base = "/tmp";
        if (snprintf(src->tmp, sizeof(src->tmp), "%s/ks-fixture-XXXXXX", base) >=
            (int)sizeof(src->tmp))
            return ks_err_set(err, KS_EINVAL, "temporary directory path too long");
        if (!mkdtemp(src->tmp)) {
            int e = errno;
            src->tmp[0] = '\0';
            return ks_err_set(err, KS_EIO, "cannot create a temporary directory under '%s' "
                              "(errno %d)", base, e);
        }
        rc = run_tar(path, src->tmp, err);
        if (rc != KS_OK)
            goto done;
        snprintf(root, sizeof(root), "%s", src->tmp);
    } else {
        return ks_err_set(err, KS_EINVAL, "fixture '%s' is neither a directory nor a file", path);
    }

    ks_discover_kind kind;
    ks_err sub;
    rc = ks_discover_detect(&kind, root, &sub);
    if (rc != KS_OK) {
        /* The usual layout is NAME/ at the top of the tarball or directory. */
        char inner[PATH_MAX];
        if (single_subdir(inner, sizeof(inner), root) &&
            ks_discover_detect(&kind, inner, NULL) == KS_OK) {
            snprintf(root, sizeof(root), "%s", inner);
            rc = KS_OK;
        } else {
            rc = ks_err_set(err, KS_EINVAL,
                            "fixture '%s' is not a cpuid dump (pu<N> + hwloc-cpuid-info) nor "
                            "a sysfs tree (sys/ + proc/)", path);
            goto done;
        }
    }
    src->kind = kind;
    snprintf(src->dir, sizeof(src->dir), "%s", root);
    if (kind == KS_DISCOVER_SYSFS)
        snprintf(src->root, sizeof(src->root), "%s", root);
done:
    if (rc != KS_OK)
        ks_discover__src_close(src);
    return rc;
}

void ks_discover__src_close(ks_discover__src *src)
{
    if (!src)
        return;
    if (src->tmp[0])
        (void)ks_discover__rmtree(src->tmp);
    src->tmp[0] = '\0';
}
