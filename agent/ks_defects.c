/*
 * ks_defects.c - turns evidence (self-tests, IFS, MCE counts, the operator
 * file) into ks_defect entries on the report's CPUs; see ks_defects.h for the
 * sources and what each marks.
 *
 * Invariants:
 *  - the state's operator entries are always a fully validated file (the last
 *    good one): a parse writes into temporaries and swaps only on success;
 *  - after ks_defects_apply() returns - with or without an error - every CPU's
 *    defective/usable/state are re-derived (ks_report_derive_state), so the
 *    report is never half-updated;
 *  - a (feature, source) pair appears at most once per CPU.
 * Threading: none of its own; the state belongs to one caller at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ks_defects.h"
#include "ks_feature.h"

void ks_defects_state_init(ks_defects_state *st)
{
    memset(st, 0, sizeof(*st));
    st->last_selftest_cpu = -1;
}

void ks_defects_state_destroy(ks_defects_state *st)
{
    if (!st)
        return;
    free(st->operator_entries);
    st->operator_entries = NULL;
    st->n_operator = 0;
}

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ------------------------------------------------------------------------------------------ */
/* Operator file                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Sets err->field = path and err->msg = "path: message". */
static ks_code field_err(ks_err *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ks_code field_err(ks_err *err, const char *path, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ks_err_set_field(err, KS_EINVAL, path, "%s: %s", path, msg);
}

static ks_code parse_entry(ks_defects_operator_entry *e, const json_t *obj, size_t idx,
                           const ks_report *r, ks_err *err)
{
    char path[96];
    const char *key;
    const json_t *val;
    bool has_cpu = false;
    memset(e, 0, sizeof(*e));
    snprintf(path, sizeof(path), "entries[%zu]", idx);
    if (!json_is_object(obj))
        return field_err(err, path, "expected an object");
    json_object_foreach((json_t *)obj, key, val)
    {
        char sub[128];
        snprintf(sub, sizeof(sub), "%s.%s", path, key);
        if (strcmp(key, "cpu") == 0) {
            if (!json_is_integer(val) || json_integer_value(val) < 0 ||
                json_integer_value(val) >= KS_REPORT_MAX_CPUS)
                return field_err(err, sub, "expected a cpu number (0..%d)", KS_REPORT_MAX_CPUS - 1);
            e->cpu = (int32_t)json_integer_value(val);
            has_cpu = true;
        } else if (strcmp(key, "features") == 0) {
            size_t i;
            const json_t *name;
            if (!json_is_array(val))
                return field_err(err, sub, "expected an array of feature names");
            json_array_foreach(val, i, name)
            {
                char item[160];
                unsigned id;
                snprintf(item, sizeof(item), "%s[%zu]", sub, i);
                if (!json_is_string(name))
                    return field_err(err, item, "expected a feature name");
                const char *s = json_string_value(name);
                if (ks_feature_lookup(s, &id, NULL) == KS_OK) {
                    const ks_feature_info *fi = ks_feature_get(id);
                    if (r && fi && fi->arch != (ks_arch)r->host.arch)
                        return field_err(err, item, "feature '%s' is not a %s feature", s,
                                         ks_arch_to_str((ks_arch)r->host.arch));
                    ks_featset_set(&e->features, id);
                } else if (ks_feature_add_name(&e->features, s, NULL) != KS_OK) {
                    return field_err(err, item, "unknown feature '%s'", s);
                }
            }
        } else if (strcmp(key, "quarantine") == 0) {
            if (!json_is_boolean(val))
                return field_err(err, sub, "expected true or false");
            e->quarantine = json_is_true(val);
        } else if (strcmp(key, "reason") == 0) {
            if (!json_is_string(val))
                return field_err(err, sub, "expected a string");
            if (json_string_length(val) > KS_DEFECTS_REASON_MAX)
                return field_err(err, sub, "longer than %d bytes", KS_DEFECTS_REASON_MAX);
            snprintf(e->reason, sizeof(e->reason), "%s", json_string_value(val));
        } else {
            return field_err(err, sub, "unknown key '%s'", key);
        }
    }
    if (!has_cpu) {
        char sub[128];
        snprintf(sub, sizeof(sub), "%s.cpu", path);
        return field_err(err, sub, "missing");
    }
    if (!e->quarantine && ks_featset_empty(&e->features))
        return field_err(err, path, "needs a non-empty 'features' or \"quarantine\": true");
    if (r && !ks_report_find_cpu(r, e->cpu)) {
        char sub[128];
        snprintf(sub, sizeof(sub), "%s.cpu", path);
        return field_err(err, sub, "cpu %d is not on this host", (int)e->cpu);
    }
    return KS_OK;
}

ks_code ks_defects_parse_operator(ks_defects_state *st, const char *text, size_t len,
                                  uint64_t mtime_us, const ks_report *r, ks_err *err)
{
    json_error_t jerr;
    ks_defects_operator_entry *entries = NULL;
    ks_code rc = KS_OK;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return ks_err_set(err, KS_EINVAL, "line %d column %d: %s", jerr.line, jerr.column,
                          jerr.text);
    if (!json_is_array(doc)) {
        rc = ks_err_set(err, KS_EINVAL, "expected a JSON array of defect entries");
        goto done;
    }
    size_t n = json_array_size(doc);
    if (n > KS_DEFECTS_OPERATOR_MAX_ENTRIES) {
        rc = ks_err_set(err, KS_ETOOLARGE, "%zu entries, at most %u", n,
                        KS_DEFECTS_OPERATOR_MAX_ENTRIES);
        goto done;
    }
    if (n) {
        entries = calloc(n, sizeof(*entries));
        if (!entries) {
            rc = ks_err_set(err, KS_ENOMEM, "out of memory for %zu defect entries", n);
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++) {
        rc = parse_entry(&entries[i], json_array_get(doc, i), i, r, err);
        if (rc != KS_OK)
            goto done;
    }
    /* all good: the new file replaces the last good one */
    free(st->operator_entries);
    st->operator_entries = entries;
    st->n_operator = (uint32_t)n;
    st->operator_mtime_us = mtime_us;
    st->operator_loaded = true;
    entries = NULL;
done:
    free(entries);
    json_decref(doc);
    return rc;
}

ks_code ks_defects_load_operator_file(ks_defects_state *st, const char *path, const ks_report *r,
                                      ks_err *err)
{
    struct stat sb;
    char *buf = NULL;
    ks_code rc = KS_OK;
    if (!path)
        path = KS_DEFECTS_OPERATOR_FILE;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            /* no file = the operator declares nothing (and clears what was declared) */
            free(st->operator_entries);
            st->operator_entries = NULL;
            st->n_operator = 0;
            st->operator_mtime_us = 0;
            st->operator_loaded = true;
            return KS_OK;
        }
        return ks_err_set(err, KS_EIO, "cannot open '%s' (%s)", path, strerrorname_np(errno));
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = ks_err_set(err, KS_EIO, "'%s' is not a regular file", path);
        goto done;
    }
    if ((uint64_t)sb.st_size > KS_DEFECTS_OPERATOR_MAX_BYTES) {
        rc = ks_err_set(err, KS_ETOOLARGE, "'%s' is larger than %u bytes", path,
                        KS_DEFECTS_OPERATOR_MAX_BYTES);
        goto done;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory reading '%s'", path);
        goto done;
    }
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = ks_err_set(err, KS_EIO, "cannot read '%s' (%s)", path, strerrorname_np(errno));
            goto done;
        }
        if (n == 0)
            break; /* shrank while reading: parse what is there, validation decides */
        got += (size_t)n;
    }
    uint64_t mtime_us =
        (uint64_t)sb.st_mtim.tv_sec * 1000000u + (uint64_t)sb.st_mtim.tv_nsec / 1000u;
    rc = ks_defects_parse_operator(st, buf, got, mtime_us, r, err);
done:
    free(buf);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Recording defects                                                                           */
/* ------------------------------------------------------------------------------------------ */

static bool has_defect(const ks_cpu *c, uint16_t feature, ks_defect_source src)
{
    for (uint16_t i = 0; i < c->n_defects; i++)
        if (c->defects[i].feature == feature && c->defects[i].source == src)
            return true;
    return false;
}

/* Adds (feature, src) unless present; *added tells whether it was. */
static ks_code add_defect(ks_cpu *c, uint16_t feature, ks_defect_source src, uint64_t time_us,
                          const char *detail, bool *added, ks_err *err)
{
    ks_defect d;
    if (added)
        *added = false;
    if (has_defect(c, feature, src))
        return KS_OK;
    memset(&d, 0, sizeof(d));
    d.feature = feature;
    d.source = (uint8_t)src;
    d.time_us = time_us;
    snprintf(d.detail, sizeof(d.detail), "%s", detail);
    ks_code rc = ks_cpu_add_defect(c, &d, err);
    if (rc == KS_OK && added)
        *added = true;
    return rc;
}

/* Drops every defect of `src` from c (evidence that is re-read each time). */
static void drop_source(ks_cpu *c, ks_defect_source src)
{
    uint16_t w = 0;
    for (uint16_t i = 0; i < c->n_defects; i++)
        if (c->defects[i].source != src)
            c->defects[w++] = c->defects[i];
    c->n_defects = w;
}

static bool is_skipped(const ks_defects_options *o, int32_t cpu)
{
    if (o->force)
        return false;
    for (uint32_t i = 0; i < o->n_skip_cpus; i++)
        if (o->skip_cpus[i] == cpu)
            return true;
    return false;
}

ks_code ks_defects_add_selftest(ks_report *r, const ks_selftest_cpu_result *res, bool *changed,
                                ks_err *err)
{
    ks_code rc = KS_OK;
    bool any = false;
    ks_cpu *c = ks_report_find_cpu(r, res->cpu);
    if (!c)
        return ks_err_set(err, KS_ENOTFOUND, "cpu %d is not in the report", (int)res->cpu);
    for (uint32_t i = 0; i < res->n_results && rc == KS_OK; i++) {
        const ks_selftest_result *t = &res->results[i];
        char detail[KS_TEXT_MAX];
        bool added;
        if (t->status != KS_SELFTEST_FAIL)
            continue;
        snprintf(detail, sizeof(detail), "self-test '%s': %.200s", t->test, t->detail);
        if (t->whole_cpu) {
            rc =
                add_defect(c, KS_FEATURE_NONE, KS_DEFECT_SELFTEST, t->time_us, detail, &added, err);
            any |= added;
            continue;
        }
        for (int b = ks_featset_next(&t->faulty, 0); b >= 0 && rc == KS_OK;
             b = ks_featset_next(&t->faulty, (unsigned)b + 1)) {
            rc = add_defect(c, (uint16_t)b, KS_DEFECT_SELFTEST, t->time_us, detail, &added, err);
            any |= added;
        }
    }
    ks_report_derive_state(r);
    if (changed)
        *changed = any;
    return rc;
}

int32_t ks_defects_selftest_next_cpu(ks_defects_state *st, const ks_report *r,
                                     const ks_defects_options *opts)
{
    static const ks_defects_options defaults = KS_DEFECTS_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    if (!r || r->n_cpus == 0)
        return -1;
    /* first CPU with an id above the last one, wrapping once */
    uint32_t start = 0;
    while (start < r->n_cpus && r->cpus[start].id <= st->last_selftest_cpu)
        start++;
    for (uint32_t k = 0; k < r->n_cpus; k++) {
        const ks_cpu *c = &r->cpus[(start + k) % r->n_cpus];
        if (c->state == KS_CPU_OFFLINE || is_skipped(opts, c->id))
            continue;
        st->last_selftest_cpu = c->id;
        return c->id;
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Sources                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void warn(ks_defects_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(ks_defects_state *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->warning, sizeof(st->warning), fmt, ap);
    va_end(ap);
}

/* Keeps the first error of a multi-source run. */
static void keep_first(ks_code *first, ks_err *first_err, ks_code rc, const ks_err *e)
{
    if (rc != KS_OK && *first == KS_OK) {
        *first = rc;
        *first_err = *e;
    }
}

static ks_code apply_operator(ks_report *r, const ks_defects_options *o, ks_defects_state *st,
                              ks_err *err)
{
    ks_code load_rc = ks_defects_load_operator_file(st, o->operator_file, r, err);
    ks_code rc = KS_OK;
    /* On a load error the last good entries (possibly none) stay in force. */
    for (uint32_t i = 0; i < r->n_cpus; i++)
        drop_source(&r->cpus[i], KS_DEFECT_OPERATOR);
    st->n_operator_defects = 0;
    for (uint32_t i = 0; i < st->n_operator && rc == KS_OK; i++) {
        const ks_defects_operator_entry *e = &st->operator_entries[i];
        ks_cpu *c = ks_report_find_cpu(r, e->cpu);
        char detail[KS_TEXT_MAX];
        bool added;
        if (!c)
            continue; /* validated against an earlier report; the CPU has gone since */
        snprintf(detail, sizeof(detail), "operator: %s", e->reason[0] ? e->reason : "(no reason)");
        if (e->quarantine) {
            rc = add_defect(c, KS_FEATURE_NONE, KS_DEFECT_OPERATOR, st->operator_mtime_us, detail,
                            &added, err);
            st->n_operator_defects += added;
        }
        for (int b = ks_featset_next(&e->features, 0); b >= 0 && rc == KS_OK;
             b = ks_featset_next(&e->features, (unsigned)b + 1)) {
            rc = add_defect(c, (uint16_t)b, KS_DEFECT_OPERATOR, st->operator_mtime_us, detail,
                            &added, err);
            st->n_operator_defects += added;
        }
    }
    return load_rc != KS_OK ? load_rc : rc;
}

static ks_code apply_selftests(ks_report *r, const ks_defects_options *o, ks_defects_state *st,
                               const ks_selftest_inject *inj, ks_err *err)
{
    ks_selftest_options so = KS_SELFTEST_OPTIONS_INIT;
    ks_selftest_cpu_result *res = malloc(sizeof(*res));
    ks_code rc = KS_OK;
    if (!res)
        return ks_err_set(err, KS_ENOMEM, "out of memory for self-test results");
    if (o->selftest_min_us)
        so.min_test_us = o->selftest_min_us;
    so.idle_priority = o->selftest_idle;
    so.isolate = o->selftest_isolate;
    so.inject = inj;
    for (uint32_t i = 0; i < r->n_cpus && rc == KS_OK; i++) {
        const ks_cpu *c = &r->cpus[i];
        ks_err e;
        if (c->state == KS_CPU_OFFLINE || is_skipped(o, c->id))
            continue;
        if (ks_selftest_run_cpu(res, c->id, &so, &e) != KS_OK) {
            /* e.g. a CPU outside our cpuset: not evidence of a fault */
            warn(st, "self-tests skipped on cpu %d: %s", (int)c->id, e.msg);
            continue;
        }
        st->n_selftest_cpus++;
        st->n_selftest_failures += ks_selftest_n_failed(res);
        rc = ks_defects_add_selftest(r, res, NULL, err);
    }
    free(res);
    return rc;
}

/* Same physical core: same package and core index (when discovery knows them). */
static bool same_core(const ks_cpu *a, const ks_cpu *b)
{
    if (a->core < 0 || b->core < 0)
        return a->id == b->id;
    return a->package == b->package && a->core == b->core;
}

static ks_code apply_ifs(ks_report *r, const ks_defects_options *o, ks_defects_state *st,
                         uint64_t now, ks_err *err)
{
    ks_ifs_result res[16];
    ks_code rc = KS_OK;
    bool *done = calloc(r->n_cpus ? r->n_cpus : 1, sizeof(bool));
    if (!done)
        return ks_err_set(err, KS_ENOMEM, "out of memory for the ifs scan");
    for (uint32_t i = 0; i < r->n_cpus && rc == KS_OK; i++) {
        ks_cpu *c = &r->cpus[i];
        size_t n = 0;
        ks_err e;
        if (done[i] || c->state == KS_CPU_OFFLINE)
            continue;
        /* a scan takes the whole core: every thread must be free to scan it */
        bool busy = false;
        for (uint32_t j = 0; j < r->n_cpus; j++)
            if (same_core(c, &r->cpus[j]) && is_skipped(o, r->cpus[j].id))
                busy = true;
        if (busy)
            continue;
        ks_code src = ks_defects_ifs_run_cpu(res, 16, &n, o->root, c->id, &e);
        if (src == KS_ENOTFOUND)
            break; /* no driver on this host: the source is simply absent */
        if (src != KS_OK) {
            warn(st, "ifs: %s", e.msg);
            if (n == 0)
                continue;
        }
        st->n_ifs_cores++;
        bool failed = false;
        char detail[KS_TEXT_MAX] = "";
        for (size_t k = 0; k < n; k++) {
            if (strcmp(res[k].status, "fail") == 0 && !failed) {
                failed = true;
                snprintf(detail, sizeof(detail),
                         "ifs: %.31s failed on the core of cpu %d "
                         "(details %.31s)",
                         res[k].test, (int)c->id, res[k].details);
            } else if (strcmp(res[k].status, "untested") == 0) {
                warn(st, "ifs: %.31s did not complete on the core of cpu %d (details %.31s)",
                     res[k].test, (int)c->id, res[k].details);
            }
        }
        st->n_ifs_failures += failed;
        for (uint32_t j = 0; j < r->n_cpus && rc == KS_OK; j++) {
            ks_cpu *t = &r->cpus[j];
            if (!same_core(c, t))
                continue;
            done[j] = true;
            drop_source(t, KS_DEFECT_IFS); /* the new scan supersedes the old verdict */
            if (failed)
                rc = add_defect(t, KS_FEATURE_NONE, KS_DEFECT_IFS, now, detail, NULL, err);
        }
    }
    free(done);
    return rc;
}

static ks_code apply_mce(ks_report *r, const ks_defects_options *o, ks_defects_state *st,
                         uint64_t now, ks_err *err)
{
    ks_mce_count *counts = NULL;
    uint32_t n = 0;
    ks_err e;
    ks_code rc = ks_defects_mce_read(&counts, &n, o->root, &e);
    if (rc == KS_ENOTFOUND)
        return KS_OK; /* no /proc/interrupts: nothing to count */
    if (rc != KS_OK) {
        if (err)
            *err = e;
        return rc;
    }
    for (uint32_t i = 0; i < r->n_cpus; i++)
        drop_source(&r->cpus[i], KS_DEFECT_MCE);
    char ras[4200];
    snprintf(ras, sizeof(ras), "%s/var/lib/rasdaemon/ras-mc_event.db",
             (o->root && strcmp(o->root, "/") != 0) ? o->root : "");
    if (access(ras, F_OK) == 0)
        warn(st,
             "mce: rasdaemon database '%.200s' present but not read (counts come from "
             "/proc/interrupts)",
             ras);
    for (uint32_t i = 0; i < n && rc == KS_OK; i++) {
        uint64_t total = counts[i].mce + counts[i].thr + counts[i].dfr;
        ks_cpu *c = ks_report_find_cpu(r, counts[i].cpu);
        char detail[KS_TEXT_MAX];
        if (!c || total <= o->mce_threshold)
            continue;
        snprintf(detail, sizeof(detail),
                 "machine checks: mce=%llu thr=%llu dfr=%llu, above the threshold %llu",
                 (unsigned long long)counts[i].mce, (unsigned long long)counts[i].thr,
                 (unsigned long long)counts[i].dfr, (unsigned long long)o->mce_threshold);
        rc = add_defect(c, KS_FEATURE_NONE, KS_DEFECT_MCE, now, detail, NULL, err);
        st->n_mce_cpus++;
    }
    free(counts);
    return rc;
}

ks_code ks_defects_apply(ks_report *r, const ks_defects_options *opts, ks_defects_state *st,
                         ks_err *err)
{
    static const ks_defects_options defaults = KS_DEFECTS_OPTIONS_INIT;
    const ks_defects_options *o = opts ? opts : &defaults;
    ks_selftest_inject *inj = NULL;
    ks_code first = KS_OK, rc;
    ks_err first_err, e;
    uint64_t now = o->now_us ? o->now_us : wall_us();
    memset(&first_err, 0, sizeof(first_err));

    inj = calloc(1, sizeof(*inj));
    if (!inj)
        return ks_err_set(err, KS_ENOMEM, "out of memory for the injection spec");
    const char *spec = o->inject ? o->inject : getenv(KS_DEFECTS_INJECT_ENV);
    rc = ks_selftest_inject_parse(inj, spec, err);
    if (rc != KS_OK)
        goto done;
    for (uint32_t i = 0; i < inj->n; i++) {
        if (!ks_report_find_cpu(r, inj->e[i].cpu)) {
            rc = ks_err_set(err, KS_EINVAL, "inject entry %u: cpu %d is not on this host", i + 1,
                            (int)inj->e[i].cpu);
            goto done;
        }
    }
    st->n_selftest_cpus = st->n_selftest_failures = 0;
    st->n_ifs_cores = st->n_ifs_failures = st->n_mce_cpus = st->n_operator_defects = 0;
    st->warning[0] = '\0';

    if (o->use_operator) {
        rc = apply_operator(r, o, st, &e);
        if (rc != KS_OK)
            ks_err_prefix(&e, "defects file '%s'",
                          o->operator_file ? o->operator_file : KS_DEFECTS_OPERATOR_FILE);
        keep_first(&first, &first_err, rc, &e);
    }
    if (o->run_selftests && strncmp(r->host.source, "fixture", 7) == 0) {
        /* a recorded machine: its CPU ids are not this machine's CPUs */
        warn(st, "self-tests skipped: the report describes '%.200s', not this machine",
             r->host.source);
    } else if (o->run_selftests) {
        rc = apply_selftests(r, o, st, inj, &e);
        keep_first(&first, &first_err, rc, &e);
    }
    if (o->use_ifs) {
        rc = apply_ifs(r, o, st, now, &e);
        keep_first(&first, &first_err, rc, &e);
    }
    if (o->use_mce) {
        rc = apply_mce(r, o, st, now, &e);
        keep_first(&first, &first_err, rc, &e);
    }
    ks_report_derive_state(r);
    rc = first;
    if (rc != KS_OK && err)
        *err = first_err;
done:
    free(inj);
    return rc;
}
