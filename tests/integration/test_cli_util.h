/*
 * test_cli_util.h - runs a program as a subprocess for the kintsugictl tests:
 * fork/exec (no shell), stdin from a string or /dev/null, stdout and stderr
 * captured into files of the test's temp dir (no pipe can fill up and block the
 * child), exit status, and a deadline after which the child is killed and the
 * test fails.  Header-only like ks_test.h.
 */
#ifndef TEST_CLI_UTIL_H
#define TEST_CLI_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

#include "ks_test.h"

typedef struct cli_run {
    int status; /* exit code; 128 + signal when killed */
    char *out;  /* stdout, NUL-terminated (never NULL after cli_exec) */
    char *err;  /* stderr */
    size_t out_len;
} cli_run;

static inline void cli_run_free(cli_run *r)
{
    if (!r)
        return;
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

static inline uint64_t cli_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void cli_nap_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Writes `len` bytes to a new file (mode 0600). */
static inline void cli_write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    assert_int_equal(close(fd), 0);
}

/* In the child: "K=V" sets K, "K" unsets it. */
static inline void cli_apply_env(const char *const *env)
{
    for (size_t i = 0; env && env[i]; i++) {
        const char *eq = strchr(env[i], '=');
        if (!eq) {
            unsetenv(env[i]);
            continue;
        }
        char key[256];
        size_t n = (size_t)(eq - env[i]);
        if (n >= sizeof(key))
            continue;
        memcpy(key, env[i], n);
        key[n] = '\0';
        setenv(key, eq + 1, 1);
    }
}

/*
 * Starts argv[0] with argv, env changes applied (see cli_apply_env), stdin from
 * `stdin_path` (NULL = /dev/null) and stdout/stderr into out_path/err_path
 * (NULL = /dev/null).  Returns the pid.
 */
static inline pid_t cli_spawn(const char *const *argv, const char *const *env,
                              const char *stdin_path, const char *out_path, const char *err_path)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open(stdin_path ? stdin_path : "/dev/null", O_RDONLY);
        int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || err < 0)
            _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        cli_apply_env(env);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits for pid until the deadline; kills it (and fails the test) when it is late. */
static inline int cli_wait(pid_t pid, unsigned timeout_ms, const char *what)
{
    uint64_t deadline = cli_mono_ms() + timeout_ms;
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            fail_msg("waitpid(%s): %s", what, strerror(errno));
        if (cli_mono_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("%s did not finish within %u ms", what, timeout_ms);
        }
        cli_nap_ms(5);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/*
 * Runs argv to completion inside `dir` scratch files (dir/run.out, run.err,
 * run.in) and fills r.  stdin_data NULL = /dev/null.  Returns the exit status.
 */
static inline int cli_exec(cli_run *r, const char *dir, const char *const *argv,
                           const char *const *env, const char *stdin_data, unsigned timeout_ms)
{
    char in_path[600], out_path[600], err_path[600];
    memset(r, 0, sizeof(*r));
    ks_test_path(in_path, sizeof(in_path), "%s/run.in", dir);
    ks_test_path(out_path, sizeof(out_path), "%s/run.out", dir);
    ks_test_path(err_path, sizeof(err_path), "%s/run.err", dir);
    if (stdin_data)
        cli_write_file(in_path, stdin_data, strlen(stdin_data));
    pid_t pid = cli_spawn(argv, env, stdin_data ? in_path : NULL, out_path, err_path);
    r->status = cli_wait(pid, timeout_ms, argv[0]);
    r->out = ks_test_read_file(out_path, &r->out_len);
    r->err = ks_test_read_file(err_path, NULL);
    assert_non_null(r->out);
    assert_non_null(r->err);
    return r->status;
}

/* Number of lines (newline-terminated) in s. */
static inline size_t cli_count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* True when s contains a whole line equal to `line` (ignoring trailing blanks). */
static inline bool cli_has_line(const char *s, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = s; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\r'))
            len--;
        if (len == n && strncmp(p, line, n) == 0)
            return true;
        p = nl ? nl + 1 : NULL;
    }
    return false;
}

/* True when some line of s starts with `prefix`. */
static inline bool cli_has_line_prefix(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = s; p && *p;) {
        if (strncmp(p, prefix, n) == 0)
            return true;
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    return false;
}

#endif
