/*
 * ks_store.c - the store front end: URL dispatch to a backend, argument and
 * transaction checks done once for every backend, enum string tables and row
 * destructors, the change rows every backend writes after a covered write, and
 * ks_store_copy.  The storage work is in the backends (ks_store_sqlite.c,
 * ks_store_pg.c).
 *
 * Threading: none of its own; a ks_store is used by one thread at a time.
 */
#include "ks_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ks_store_int.h"
#include "ks_vm.h"

/* ---- enum tables ------------------------------------------------------- */

static const char *const host_state_names[KS_STORE_HOST_STATE__COUNT] = {"ready", "draining",
                                                                         "lost"};
static const char *const vm_state_names[KS_STORE_VM_STATE__COUNT] = {"running", "needs_migration",
                                                                     "failed"};
static const char *const policy_kind_names[KS_STORE_POLICY_KIND__COUNT] = {"feature_ban"};
static const char *const cpu_state_names[] = {"online", "degraded", "offline", "quarantined"};
static const char *const kind_class_names[] = {"performance", "efficiency"};
static const char *const defect_source_names[] = {"selftest", "ifs", "operator", "mce"};
static const char *const arch_names[] = {"x86_64", "aarch64"};
static const char *const change_kind_names[KS_STORE_CHANGE_KIND__COUNT] = {"host", "vm", "pool",
                                                                           "policy"};

_Static_assert(sizeof(cpu_state_names) / sizeof(cpu_state_names[0]) == KS_CPU_STATE__COUNT,
               "cpu state table");
_Static_assert(sizeof(kind_class_names) / sizeof(kind_class_names[0]) == KS_KIND_CLASS__COUNT,
               "kind class table");
_Static_assert(sizeof(defect_source_names) / sizeof(defect_source_names[0]) ==
                   KS_DEFECT_SOURCE__COUNT,
               "defect source table");
_Static_assert(sizeof(arch_names) / sizeof(arch_names[0]) == KS_ARCH__COUNT, "arch table");

static int find_name(const char *const *names, int n, const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

const char *ks_store_host_state_to_str(ks_store_host_state st)
{
    return (unsigned)st < KS_STORE_HOST_STATE__COUNT ? host_state_names[st] : "?";
}

int ks_store_host_state_from_str(const char *s)
{
    return find_name(host_state_names, KS_STORE_HOST_STATE__COUNT, s);
}

const char *ks_store_vm_state_to_str(ks_store_vm_state st)
{
    return (unsigned)st < KS_STORE_VM_STATE__COUNT ? vm_state_names[st] : "?";
}

int ks_store_vm_state_from_str(const char *s)
{
    return find_name(vm_state_names, KS_STORE_VM_STATE__COUNT, s);
}

const char *ks_store_policy_kind_to_str(ks_store_policy_kind k)
{
    return (unsigned)k < KS_STORE_POLICY_KIND__COUNT ? policy_kind_names[k] : "?";
}

int ks_store_policy_kind_from_str(const char *s)
{
    return find_name(policy_kind_names, KS_STORE_POLICY_KIND__COUNT, s);
}

const char *ks_store__cpu_state_str(unsigned st)
{
    return st < KS_CPU_STATE__COUNT ? cpu_state_names[st] : NULL;
}

int ks_store__cpu_state_parse(const char *s)
{
    return find_name(cpu_state_names, KS_CPU_STATE__COUNT, s);
}

const char *ks_store__kind_class_str(int k)
{
    return k >= 0 && k < KS_KIND_CLASS__COUNT ? kind_class_names[k] : NULL;
}

int ks_store__kind_class_parse(const char *s)
{
    return find_name(kind_class_names, KS_KIND_CLASS__COUNT, s);
}

const char *ks_store__defect_source_str(unsigned src)
{
    return src < KS_DEFECT_SOURCE__COUNT ? defect_source_names[src] : NULL;
}

int ks_store__defect_source_parse(const char *s)
{
    return find_name(defect_source_names, KS_DEFECT_SOURCE__COUNT, s);
}

const char *ks_store__arch_str(int arch)
{
    return arch >= 0 && arch < KS_ARCH__COUNT ? arch_names[arch] : "";
}

int ks_store__arch_parse(const char *s)
{
    return find_name(arch_names, KS_ARCH__COUNT, s);
}

const char *ks_store_change_kind_to_str(ks_store_change_kind k)
{
    return (unsigned)k < KS_STORE_CHANGE_KIND__COUNT ? change_kind_names[k] : "?";
}

const char *ks_store__change_kind_str(int k)
{
    return k >= 0 && k < KS_STORE_CHANGE_KIND__COUNT ? change_kind_names[k] : NULL;
}

int ks_store__change_kind_parse(const char *s)
{
    return find_name(change_kind_names, KS_STORE_CHANGE_KIND__COUNT, s);
}

uint64_t ks_store__wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

bool ks_store__copy(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    bool fits = n < cap;
    if (!fits)
        n = cap - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return fits;
}

/* ---- row destructors --------------------------------------------------- */

void ks_store_host_row_destroy(ks_store_host_row *row)
{
    if (!row)
        return;
    free(row->report_json);
    row->report_json = NULL;
}

void ks_store_vm_row_destroy(ks_store_vm_row *row)
{
    if (!row)
        return;
    free(row->request_json);
    free(row->plan_json);
    row->request_json = NULL;
    row->plan_json = NULL;
}

void ks_store_pool_row_destroy(ks_store_pool_row *row)
{
    if (!row)
        return;
    free(row->selector_json);
    row->selector_json = NULL;
}

void ks_store_idem_row_destroy(ks_store_idem_row *row)
{
    if (!row)
        return;
    free(row->response_json);
    row->response_json = NULL;
}

/* ---- checks shared by every operation ---------------------------------- */

#define CHECK_STORE(s, err)                                                                        \
    do {                                                                                           \
        if (!(s))                                                                                  \
            return ks_err_set(err, KS_EINVAL, "no store");                                         \
    } while (0)

/* Writes outside a transaction are caller bugs: they would silently commit
 * piecemeal and lose the all-or-nothing guarantee placements rely on. */
#define CHECK_WRITE(s, err)                                                                        \
    do {                                                                                           \
        CHECK_STORE(s, err);                                                                       \
        if ((s)->read_only)                                                                        \
            return ks_err_set(err, KS_EINVAL, "store is read-only");                               \
        if (!(s)->in_txn)                                                                          \
            return ks_err_set(err, KS_EINTERNAL, "store write outside a transaction");             \
    } while (0)

#define CHECK_ARG(cond, err, what)                                                                 \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return ks_err_set(err, KS_EINVAL, "%s", what);                                         \
    } while (0)

static ks_code check_id(const char *id, const char *what, ks_err *err)
{
    if (!id || !ks_id_valid(id))
        return ks_err_set(err, KS_EINVAL, "invalid %s '%s'", what, id ? id : "(null)");
    return KS_OK;
}

static ks_code check_opt_id(const char *id, const char *what, ks_err *err)
{
    return id && id[0] ? check_id(id, what, err) : KS_OK;
}

/* Records a change in the caller's transaction once the write it follows has
 * succeeded (rc == KS_OK); returns the first failure. */
static ks_code changed(ks_code rc, ks_store *s, ks_store_change_kind kind, const char *key,
                       const char *host_id, ks_err *err)
{
    if (rc != KS_OK)
        return rc;
    return s->ops->change_append(s, kind, key, host_id ? host_id : "", err);
}

/* ---- open / close / transactions --------------------------------------- */

static ks_code store_open(ks_store **out, const char *url, const ks_store_options *opts,
                          ks_err *err);

ks_code ks_store_open(ks_store **out, const char *url, const ks_store_options *opts, ks_err *err)
{
    ks_code rc = store_open(out, url, opts, err);
    /* kept for ks_store_open_reader; without it that one just says no */
    if (rc == KS_OK)
        (*out)->url = strdup(url);
    return rc;
}

static ks_code store_open(ks_store **out, const char *url, const ks_store_options *opts,
                          ks_err *err)
{
    ks_store_options defaults = KS_STORE_OPTIONS_INIT;
    CHECK_ARG(out && url && url[0], err, "no store url");
    if (!opts)
        opts = &defaults;
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
#ifdef KS_HAVE_LIBPQ
        return ks_store__pg_open(out, url, opts, err);
#else
        return ks_err_set(err, KS_EUNSUPPORTED,
                          "this kintsugid was built without libpq: no postgresql store");
#endif
    }
    const char *path = url;
    if (strncmp(url, "sqlite:", 7) == 0)
        path = url + 7;
    else if (strstr(url, "://"))
        return ks_err_set(err, KS_EINVAL, "unknown store url scheme in '%s'", url);
    if (!path[0])
        return ks_err_set(err, KS_EINVAL, "empty sqlite path in store url '%s'", url);
    return ks_store__sqlite_open(out, path, opts, err);
}

ks_code ks_store_open_readonly(ks_store **out, const char *url, ks_err *err)
{
    ks_store_options o = KS_STORE_OPTIONS_INIT;
    o.read_only = true;
    return ks_store_open(out, url, &o, err);
}

ks_code ks_store_open_reader(ks_store **out, const ks_store *s, ks_err *err)
{
    CHECK_ARG(out && s, err, "no store");
    const char *u = s->url;
    if (!u)
        return ks_err_set(err, KS_EUNSUPPORTED, "store url unknown: no second handle");
    const char *path = strncmp(u, "sqlite:", 7) == 0 ? u + 7 : u;
    /* an in-memory or temporary SQLite database exists only in its handle */
    if (!strstr(u, "://") && (!path[0] || strcmp(path, ":memory:") == 0))
        return ks_err_set(err, KS_EUNSUPPORTED, "in-memory store: no second handle");
    return ks_store_open_readonly(out, u, err);
}

void ks_store_close(ks_store *s)
{
    if (s) {
        char *url = s->url;
        s->ops->close(s);
        free(url);
    }
}

const char *ks_store_backend(const ks_store *s)
{
    return s ? s->ops->name : "?";
}

ks_code ks_store_begin(ks_store *s, ks_err *err)
{
    CHECK_STORE(s, err);
    if (s->read_only)
        return ks_err_set(err, KS_EINVAL, "store is read-only");
    if (s->in_txn)
        return ks_err_set(err, KS_EINTERNAL, "store transaction already open");
    return s->ops->begin(s, err);
}

ks_code ks_store_commit(ks_store *s, ks_err *err)
{
    CHECK_STORE(s, err);
    if (!s->in_txn)
        return ks_err_set(err, KS_EINTERNAL, "store commit without a transaction");
    return s->ops->commit(s, err);
}

ks_code ks_store_rollback(ks_store *s, ks_err *err)
{
    CHECK_STORE(s, err);
    if (!s->in_txn)
        return KS_OK;
    return s->ops->rollback(s, err);
}

bool ks_store_in_txn(const ks_store *s)
{
    return s && s->in_txn;
}

ks_code ks_store_set_commit_veto(ks_store *s, bool (*veto)(void *ctx), void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    if (!s->ops->set_commit_veto)
        return ks_err_set(err, KS_EUNSUPPORTED, "%s: no commit fault injection", s->ops->name);
    return s->ops->set_commit_veto(s, veto, ctx, err);
}

ks_code ks_store_savepoint(ks_store *s, ks_store_sp_action action, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(action == KS_STORE_SP_MARK || action == KS_STORE_SP_KEEP ||
                  action == KS_STORE_SP_UNDO,
              err, "unknown savepoint action");
    return s->ops->savepoint(s, action, err);
}

ks_code ks_store_backup(ks_store *s, const char *path, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(path && path[0], err, "no backup path");
    if (s->in_txn)
        return ks_err_set(err, KS_EINTERNAL, "store backup inside a transaction");
    return s->ops->backup(s, path, err);
}

ks_code ks_store_integrity_check(ks_store *s, ks_err *err)
{
    CHECK_STORE(s, err);
    return s->ops->integrity_check(s, err);
}

ks_code ks_store_query_int(int64_t *out, ks_store *s, const char *sql, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out && sql && sql[0], err, "no query");
    return s->ops->query_int(out, s, sql, err);
}

/* ---- hosts ------------------------------------------------------------- */

ks_code ks_store_host_put_report(ks_store *s, const ks_report *r, const char *report_json,
                                 uint64_t now_us, ks_store_put_result *res, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(r, err, "no report");
    ks_code rc = check_id(r->host.id, "host id", err);
    if (rc != KS_OK)
        return rc;
    if (r->n_cpus > KS_REPORT_MAX_CPUS || (r->n_cpus && !r->cpus))
        return ks_err_set(err, KS_EINVAL, "bad cpu array in report of host '%s'", r->host.id);
    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *c = &r->cpus[i];
        if (i > 0 && c->id <= r->cpus[i - 1].id)
            return ks_err_set(err, KS_EINVAL, "cpus of host '%s' not sorted by unique id at %u",
                              r->host.id, i);
        if (c->state >= KS_CPU_STATE__COUNT)
            return ks_err_set(err, KS_EINVAL, "cpu %d of host '%s' has a bad state", c->id,
                              r->host.id);
        if (c->kind >= 0 && ((uint32_t)c->kind >= r->n_kinds || !r->kinds ||
                             r->kinds[c->kind].kind_class >= KS_KIND_CLASS__COUNT))
            return ks_err_set(err, KS_EINVAL, "cpu %d of host '%s' has a bad kind index %d", c->id,
                              r->host.id, c->kind);
        if (c->n_defects && !c->defects)
            return ks_err_set(err, KS_EINVAL, "cpu %d of host '%s' has a bad defect array", c->id,
                              r->host.id);
        for (uint16_t d = 0; d < c->n_defects; d++)
            if (c->defects[d].source >= KS_DEFECT_SOURCE__COUNT ||
                (c->defects[d].feature != KS_FEATURE_NONE &&
                 c->defects[d].feature >= ks_feature_count()))
                return ks_err_set(err, KS_EINVAL,
                                  "cpu %d of host '%s' has a defect with a bad source or feature",
                                  c->id, r->host.id);
    }
    ks_store_put_result local;
    memset(&local, 0, sizeof(local));
    rc = s->ops->host_put_report(s, r, report_json, now_us, &local, err);
    if (rc == KS_OK && !local.unchanged)
        rc = changed(rc, s, KS_STORE_CHANGE_HOST, r->host.id, r->host.id, err);
    if (rc == KS_OK && res)
        *res = local;
    return rc;
}

ks_code ks_store_host_get(ks_store_host_row *out, ks_store *s, const char *id, bool with_report,
                          ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out && id, err, "no host id");
    return s->ops->host_get(out, s, id, with_report, err);
}

ks_code ks_store_host_heartbeat(ks_store *s, const char *id, uint64_t now_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(id, err, "no host id");
    return s->ops->host_heartbeat(s, id, now_us, err);
}

ks_code ks_store_host_set_state(ks_store *s, const char *id, ks_store_host_state state,
                                uint64_t now_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(id, err, "no host id");
    if ((unsigned)state >= KS_STORE_HOST_STATE__COUNT)
        return ks_err_set(err, KS_EINVAL, "bad host state %d", (int)state);
    return changed(s->ops->host_set_state(s, id, state, now_us, err), s, KS_STORE_CHANGE_HOST, id,
                   id, err);
}

ks_code ks_store_host_delete(ks_store *s, const char *id, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(id, err, "no host id");
    return changed(s->ops->host_delete(s, id, err), s, KS_STORE_CHANGE_HOST, id, id, err);
}

static ks_code check_host_filter(const ks_store_host_filter *f, ks_err *err)
{
    if (!f)
        return KS_OK;
    if (f->state < -1 || f->state >= KS_STORE_HOST_STATE__COUNT)
        return ks_err_set(err, KS_EINVAL, "bad host state filter %d", f->state);
    if (f->arch < -1 || f->arch >= KS_ARCH__COUNT)
        return ks_err_set(err, KS_EINVAL, "bad arch filter %d", f->arch);
    return KS_OK;
}

ks_code ks_store_host_list(ks_store *s, const ks_store_host_filter *f, ks_store_host_cb cb,
                           void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    ks_code rc = check_host_filter(f, err);
    if (rc != KS_OK)
        return rc;
    ks_store_host_filter all = KS_STORE_HOST_FILTER_INIT;
    return s->ops->host_list(s, f ? f : &all, cb, ctx, err);
}

ks_code ks_store_host_count(uint64_t *out, ks_store *s, const ks_store_host_filter *f, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out, err, "no output");
    ks_code rc = check_host_filter(f, err);
    if (rc != KS_OK)
        return rc;
    ks_store_host_filter all = KS_STORE_HOST_FILTER_INIT;
    return s->ops->host_count(out, s, f ? f : &all, err);
}

/* ---- cpus -------------------------------------------------------------- */

ks_code ks_store_cpu_scan(ks_store *s, const char *host_id, ks_store_cpu_cb cb, void *ctx,
                          ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    return s->ops->cpu_scan(s, host_id, cb, ctx, err);
}

void ks_store_cpu_row_to_cpu(ks_cpu *out, const ks_store_cpu_row *w)
{
    out->id = w->cpu_id;
    out->package = w->package;
    out->die = w->die;
    out->cluster = w->cluster;
    out->core = w->core;
    out->thread = w->thread;
    out->numa_node = w->numa_node;
    out->l2_group = w->l2_group;
    out->l3_group = w->l3_group;
    out->base_mhz = w->base_mhz;
    out->max_mhz = w->max_mhz;
    out->native = w->native;
    out->usable = w->usable;
    out->defective = w->defective;
    out->state = w->state;
    out->reserved = w->reserved;
    out->kind = -1;
}

ks_code ks_store_cpu_get(ks_store_cpu_row *out, ks_store *s, const char *host_id, int32_t cpu_id,
                         ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out && host_id, err, "no host id");
    return s->ops->cpu_get(out, s, host_id, cpu_id, err);
}

ks_code ks_store_defect_list(ks_store *s, const char *host_id, int32_t cpu_id,
                             ks_store_defect_cb cb, void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    return s->ops->defect_list(s, host_id, cpu_id, cb, ctx, err);
}

/* ---- vms --------------------------------------------------------------- */

static ks_code check_vcpus(const ks_store_vcpu_alloc *vcpus, uint32_t n, ks_err *err)
{
    if (n > KS_VM_MAX_VCPUS)
        return ks_err_set(err, KS_EINVAL, "%u vcpus is above the limit", n);
    if (n && !vcpus)
        return ks_err_set(err, KS_EINVAL, "no vcpu array");
    for (uint32_t i = 0; i < n; i++)
        if (vcpus[i].vcpu < 0 || vcpus[i].cpu_id < 0)
            return ks_err_set(err, KS_EINVAL, "negative vcpu or cpu id at %u", i);
    return KS_OK;
}

ks_code ks_store_vm_insert(ks_store *s, const ks_store_vm_row *vm, const ks_store_vcpu_alloc *vcpus,
                           uint32_t n_vcpus, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(vm, err, "no vm");
    ks_code rc = check_id(vm->name, "vm name", err);
    if (rc == KS_OK)
        rc = check_id(vm->host_id, "host id", err);
    if (rc == KS_OK)
        rc = check_opt_id(vm->pool, "pool name", err);
    if (rc == KS_OK)
        rc = check_vcpus(vcpus, n_vcpus, err);
    if (rc != KS_OK)
        return rc;
    if (vm->state >= KS_STORE_VM_STATE__COUNT)
        return ks_err_set(err, KS_EINVAL, "bad vm state %d", vm->state);
    /* Fixed-size strings are bound with strlen: they must be terminated. */
    if (!memchr(vm->anti_affinity_group, '\0', sizeof(vm->anti_affinity_group)) ||
        !memchr(vm->apply_error, '\0', sizeof(vm->apply_error)))
        return ks_err_set(err, KS_EINVAL, "unterminated string in vm '%s'", vm->name);
    return changed(s->ops->vm_insert(s, vm, vcpus, n_vcpus, err), s, KS_STORE_CHANGE_VM, vm->name,
                   vm->host_id, err);
}

ks_code ks_store_vm_get(ks_store_vm_row *out, ks_store *s, const char *name, bool with_json,
                        ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out && name, err, "no vm name");
    return s->ops->vm_get(out, s, name, with_json, err);
}

static ks_code check_vm_filter(const ks_store_vm_filter *f, ks_err *err)
{
    if (f && (f->state < -1 || f->state >= KS_STORE_VM_STATE__COUNT))
        return ks_err_set(err, KS_EINVAL, "bad vm state filter %d", f->state);
    return KS_OK;
}

ks_code ks_store_vm_list(ks_store *s, const ks_store_vm_filter *f, ks_store_vm_cb cb, void *ctx,
                         ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    ks_code rc = check_vm_filter(f, err);
    if (rc != KS_OK)
        return rc;
    ks_store_vm_filter all = KS_STORE_VM_FILTER_INIT;
    return s->ops->vm_list(s, f ? f : &all, cb, ctx, err);
}

ks_code ks_store_vm_count(uint64_t *out, ks_store *s, const ks_store_vm_filter *f, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out, err, "no output");
    ks_code rc = check_vm_filter(f, err);
    if (rc != KS_OK)
        return rc;
    ks_store_vm_filter all = KS_STORE_VM_FILTER_INIT;
    return s->ops->vm_count(out, s, f ? f : &all, err);
}

ks_code ks_store_vm_delete(ks_store *s, const char *name, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(name, err, "no vm name");
    return changed(s->ops->vm_delete(s, name, err), s, KS_STORE_CHANGE_VM, name, "", err);
}

ks_code ks_store_vm_update_plan(ks_store *s, const char *name, const char *host_id,
                                uint64_t generation, const char *plan_json,
                                const ks_store_vcpu_alloc *vcpus, uint32_t n_vcpus, uint64_t now_us,
                                ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(name, err, "no vm name");
    ks_code rc = check_id(host_id, "host id", err);
    if (rc == KS_OK)
        rc = check_vcpus(vcpus, n_vcpus, err);
    if (rc != KS_OK)
        return rc;
    return changed(s->ops->vm_update_plan(s, name, host_id, generation, plan_json, vcpus, n_vcpus,
                                          now_us, err),
                   s, KS_STORE_CHANGE_VM, name, host_id, err);
}

ks_code ks_store_vm_set_state(ks_store *s, const char *name, ks_store_vm_state state,
                              uint64_t now_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(name, err, "no vm name");
    if ((unsigned)state >= KS_STORE_VM_STATE__COUNT)
        return ks_err_set(err, KS_EINVAL, "bad vm state %d", (int)state);
    return changed(s->ops->vm_set_state(s, name, state, now_us, err), s, KS_STORE_CHANGE_VM, name,
                   "", err);
}

ks_code ks_store_vm_set_applied(ks_store *s, const char *name, uint64_t applied_generation,
                                const char *apply_error, uint64_t now_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(name, err, "no vm name");
    if (apply_error && strlen(apply_error) >= KS_TEXT_MAX)
        return ks_err_set(err, KS_EINVAL, "apply error longer than %d bytes", KS_TEXT_MAX - 1);
    return s->ops->vm_set_applied(s, name, applied_generation, apply_error, now_us, err);
}

ks_code ks_store_vcpu_scan(ks_store *s, const char *host_id, const char *vm_name,
                           ks_store_vcpu_cb cb, void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    return s->ops->vcpu_scan(s, host_id, vm_name, cb, ctx, err);
}

/* ---- pools ------------------------------------------------------------- */

ks_code ks_store_pool_create(ks_store *s, const char *name, const char *selector_json,
                             uint64_t now_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    ks_code rc = check_id(name, "pool name", err);
    if (rc != KS_OK)
        return rc;
    return changed(s->ops->pool_create(s, name, selector_json, now_us, err), s,
                   KS_STORE_CHANGE_POOL, name, "", err);
}

ks_code ks_store_pool_get(ks_store_pool_row *out, ks_store *s, const char *name, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out && name, err, "no pool name");
    return s->ops->pool_get(out, s, name, err);
}

ks_code ks_store_pool_list(ks_store *s, ks_store_pool_cb cb, void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    return s->ops->pool_list(s, cb, ctx, err);
}

ks_code ks_store_pool_delete(ks_store *s, const char *name, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(name, err, "no pool name");
    return changed(s->ops->pool_delete(s, name, err), s, KS_STORE_CHANGE_POOL, name, "", err);
}

ks_code ks_store_pool_members_set(ks_store *s, const char *name, const char *const *host_ids,
                                  uint32_t n, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(name, err, "no pool name");
    CHECK_ARG(n == 0 || host_ids, err, "no host array");
    for (uint32_t i = 0; i < n; i++) {
        ks_code rc = check_id(host_ids[i], "host id", err);
        if (rc != KS_OK)
            return rc;
    }
    return changed(s->ops->pool_members_set(s, name, host_ids, n, err), s, KS_STORE_CHANGE_POOL,
                   name, "", err);
}

ks_code ks_store_pool_members_list(ks_store *s, const char *pool, ks_store_member_cb cb, void *ctx,
                                   ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    return s->ops->pool_members_list(s, pool, cb, ctx, err);
}

/* ---- policies ---------------------------------------------------------- */

ks_code ks_store_policy_add(int64_t *out_id, ks_store *s, ks_store_policy_kind kind,
                            const char *features_json, const char *reason, uint64_t now_us,
                            ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(features_json, err, "no policy features");
    if ((unsigned)kind >= KS_STORE_POLICY_KIND__COUNT)
        return ks_err_set(err, KS_EINVAL, "bad policy kind %d", (int)kind);
    if (reason && strlen(reason) >= KS_TEXT_MAX)
        return ks_err_set(err, KS_EINVAL, "policy reason longer than %d bytes", KS_TEXT_MAX - 1);
    int64_t id = 0;
    char key[24];
    ks_code rc = s->ops->policy_add(&id, s, kind, features_json, reason, now_us, err);
    snprintf(key, sizeof(key), "%" PRId64, id);
    rc = changed(rc, s, KS_STORE_CHANGE_POLICY, key, "", err);
    if (rc == KS_OK && out_id)
        *out_id = id;
    return rc;
}

ks_code ks_store_policy_list(ks_store *s, ks_store_policy_cb cb, void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    return s->ops->policy_list(s, cb, ctx, err);
}

ks_code ks_store_policy_delete(ks_store *s, int64_t id, ks_err *err)
{
    CHECK_WRITE(s, err);
    char key[24];
    snprintf(key, sizeof(key), "%" PRId64, id);
    return changed(s->ops->policy_delete(s, id, err), s, KS_STORE_CHANGE_POLICY, key, "", err);
}

/* ---- events ------------------------------------------------------------ */

ks_code ks_store_event_append(int64_t *out_id, ks_store *s, uint64_t time_us, const char *type,
                              const char *host_id, const char *vm, const char *detail_json,
                              ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(type && type[0] && strlen(type) < KS_NAME_MAX, err, "bad event type");
    CHECK_ARG(!host_id || strlen(host_id) < KS_ID_MAX, err, "event host id too long");
    CHECK_ARG(!vm || strlen(vm) < KS_ID_MAX, err, "event vm name too long");
    return s->ops->event_append(out_id, s, time_us, type, host_id, vm, detail_json, err);
}

ks_code ks_store_event_list(ks_store *s, int64_t since_id, uint32_t limit, ks_store_event_cb cb,
                            void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    return s->ops->event_list(s, since_id, limit, cb, ctx, err);
}

ks_code ks_store_event_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    return s->ops->event_prune(out_n, s, before_us, err);
}

/* ---- capacity ---------------------------------------------------------- */

ks_code ks_store_capacity_insert(int64_t *out_id, ks_store *s, const ks_store_capacity_row *row,
                                 ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(row && row->scope[0], err, "no capacity scope");
    CHECK_ARG(memchr(row->scope, '\0', sizeof(row->scope)), err, "capacity scope not terminated");
    return s->ops->capacity_insert(out_id, s, row, err);
}

ks_code ks_store_capacity_list(ks_store *s, const char *scope, uint64_t since_us, uint32_t limit,
                               ks_store_capacity_cb cb, void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    return s->ops->capacity_list(s, scope, since_us, limit, cb, ctx, err);
}

ks_code ks_store_capacity_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    return s->ops->capacity_prune(out_n, s, before_us, err);
}

/* ---- idempotency ------------------------------------------------------- */

ks_code ks_store_idem_get(ks_store_idem_row *out, ks_store *s, const char *key, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out && key, err, "no idempotency key");
    return s->ops->idem_get(out, s, key, err);
}

ks_code ks_store_idem_put(ks_store *s, const char *key, const char *request_hash, int32_t status,
                          const char *response_json, uint64_t now_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(key && key[0] && strlen(key) < KS_TEXT_MAX, err, "bad idempotency key");
    CHECK_ARG(request_hash && strlen(request_hash) < KS_NAME_MAX, err, "bad request hash");
    return s->ops->idem_put(s, key, request_hash, status, response_json, now_us, err);
}

ks_code ks_store_idem_expire(uint64_t *out_n, ks_store *s, uint64_t older_than_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    return s->ops->idem_expire(out_n, s, older_than_us, err);
}

/* ---- tokens ------------------------------------------------------------ */

ks_code ks_store_token_add(int64_t *out_id, ks_store *s, const uint8_t *hash, size_t hash_len,
                           const char *role, const char *host_id, const char *description,
                           uint64_t now_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    CHECK_ARG(hash && hash_len > 0 && hash_len <= KS_STORE_TOKEN_HASH_MAX, err, "bad token hash");
    CHECK_ARG(role && role[0] && strlen(role) < sizeof(((ks_store_token_row *)0)->role), err,
              "bad token role");
    ks_code rc = check_opt_id(host_id, "host id", err);
    if (rc != KS_OK)
        return rc;
    CHECK_ARG(!description || strlen(description) < KS_TEXT_MAX, err, "token description too long");
    return s->ops->token_add(out_id, s, hash, hash_len, role, host_id, description, now_us, err);
}

ks_code ks_store_token_find(ks_store_token_row *out, ks_store *s, const uint8_t *hash,
                            size_t hash_len, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out && hash && hash_len > 0 && hash_len <= KS_STORE_TOKEN_HASH_MAX, err,
              "bad token hash");
    return s->ops->token_find(out, s, hash, hash_len, err);
}

ks_code ks_store_token_list(ks_store *s, ks_store_token_cb cb, void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    return s->ops->token_list(s, cb, ctx, err);
}

ks_code ks_store_token_delete(ks_store *s, int64_t id, ks_err *err)
{
    CHECK_WRITE(s, err);
    return s->ops->token_delete(s, id, err);
}

/* ---- change feed and leadership ---------------------------------------- */

ks_code ks_store_changes_cursor(int64_t *out, ks_store *s, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out, err, "no output");
    if (s->in_txn)
        return ks_err_set(err, KS_EINTERNAL, "change cursor inside a transaction");
    return s->ops->changes_cursor(out, s, err);
}

ks_code ks_store_changes_since(int64_t *next, ks_store *s, int64_t cursor, ks_store_change_cb cb,
                               void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(next && cb, err, "no output or callback");
    CHECK_ARG(cursor >= 0, err, "negative change cursor");
    if (s->in_txn)
        return ks_err_set(err, KS_EINTERNAL, "change feed read inside a transaction");
    return s->ops->changes_since(next, s, cursor, cb, ctx, err);
}

ks_code ks_store_changes_prune(uint64_t *out_n, ks_store *s, uint64_t before_us, ks_err *err)
{
    CHECK_WRITE(s, err);
    return s->ops->changes_prune(out_n, s, before_us, err);
}

ks_code ks_store_try_leader(bool *out, ks_store *s, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(out, err, "no output");
    if (s->in_txn)
        return ks_err_set(err, KS_EINTERNAL, "leader election inside a transaction");
    return s->ops->try_leader(out, s, err);
}

ks_code ks_store_leader_release(ks_store *s, ks_err *err)
{
    CHECK_STORE(s, err);
    if (s->in_txn)
        return ks_err_set(err, KS_EINTERNAL, "leader release inside a transaction");
    return s->ops->leader_release(s, err);
}

/* ---- copying a fleet ----------------------------------------------------- */

/* Column lists are those of both schemas (ks_store_schema.sql.h and
 * ks_store_schema_pg.sql.h); parents come before children for the foreign keys. */
const ks_store__table ks_store__tables[KS_STORE__N_TABLES] = {
    {"hosts",
     "id, hostname, arch, vendor, model_name, state, boot_id, generation, n_cpus, registered_us, "
     "updated_us, last_heartbeat_us",
     "TTTTTTTIIIII", "id", ""},
    {"host_reports", "host_id, report_json", "TT", "host_id", ""},
    {"cpus",
     "host_id, cpu_id, package, die, cluster, core, thread, numa_node, l2_group, l3_group, "
     "kind_class, kind_name, base_mhz, max_mhz, state, reserved, native, usable, defective",
     "TIIIIIIIIITTIITIBBB", "host_id, cpu_id", ""},
    {"cpu_defects", "id, host_id, cpu_id, feature, source, time_us, detail", "ITITTIT", "id", "id"},
    {"pools", "name, selector_json, created_us", "TTI", "name", ""},
    {"pool_members", "pool, host_id", "TT", "pool, host_id", ""},
    {"vms",
     "name, host_id, state, generation, applied_generation, pool, anti_affinity_group, "
     "apply_error, n_vcpus, created_us, updated_us, request_json, plan_json",
     "TTTIITTTIIITT", "name", ""},
    {"vm_vcpus", "vm_name, vcpu, host_id, cpu_id", "TITI", "vm_name, vcpu", ""},
    {"policies", "id, kind, features_json, reason, created_us", "ITTTI", "id", "id"},
    {"events", "id, time_us, type, host_id, vm, detail_json", "IITTTT", "id", "id"},
    {"capacity_snapshots",
     "id, time_us, scope, total, allocated, free, degraded_usable, reclaimed, stranded, "
     "quarantined",
     "IITIIIIIII", "id", "id"},
    {"idempotency_keys", "key, request_hash, status, response_json, created_us", "TTITI", "key",
     ""},
    {"tokens", "id, hash, role, host_id, description, created_us", "IBTTTI", "id", "id"},
};

typedef struct copy_ctx {
    ks_store *dst;
    int table;
    uint64_t rows;
    ks_code rc;
    ks_err *err;
} copy_ctx;

static int copy_row(void *ctx, const ks_store__val *v)
{
    copy_ctx *c = ctx;
    c->rc = c->dst->ops->raw_insert(c->dst, c->table, v, c->err);
    if (c->rc != KS_OK)
        return 1;
    c->rows++;
    return 0;
}

ks_code ks_store_copy(uint64_t *out_rows, ks_store *dst, ks_store *src, ks_err *err)
{
    CHECK_ARG(dst && src && dst != src, err, "copy needs two different stores");
    if (dst->in_txn || src->in_txn)
        return ks_err_set(err, KS_EINTERNAL, "store copy inside a transaction");
    if (dst->read_only)
        return ks_err_set(err, KS_EINVAL, "copy destination is read-only");
    static const char *const must_be_empty[] = {"hosts",    "vms",    "pools",
                                                "policies", "events", "tokens"};
    for (size_t i = 0; i < sizeof(must_be_empty) / sizeof(must_be_empty[0]); i++) {
        char sql[96];
        int64_t n = 0;
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", must_be_empty[i]);
        ks_code rc = dst->ops->query_int(&n, dst, sql, err);
        if (rc != KS_OK)
            return rc;
        if (n > 0)
            return ks_err_set(err, KS_ECONFLICT, "copy destination is not empty: %lld rows in %s",
                              (long long)n, must_be_empty[i]);
    }
    copy_ctx c = {dst, 0, 0, KS_OK, err};
    ks_code rc = src->ops->begin_snapshot(src, err);
    if (rc != KS_OK)
        return rc;
    rc = dst->ops->begin(dst, err);
    for (int t = 0; rc == KS_OK && t < KS_STORE__N_TABLES; t++) {
        c.table = t;
        c.rc = KS_OK;
        rc = src->ops->raw_scan(src, t, copy_row, &c, err);
        if (rc == KS_OK)
            rc = c.rc;
        if (rc != KS_OK)
            ks_err_prefix(err, "copy table %s", ks_store__tables[t].name);
    }
    if (rc == KS_OK)
        rc = dst->ops->raw_fixup(dst, err);
    if (rc == KS_OK)
        rc = dst->ops->commit(dst, err);
    if (dst->in_txn)
        dst->ops->rollback(dst, NULL);
    src->ops->rollback(src, NULL);
    if (rc == KS_OK && out_rows)
        *out_rows = c.rows;
    return rc;
}

/* ---- every stored report in one scan (ks_store_report_scan) ---- */

typedef struct report_scan {
    ks_store_report_cb cb;
    void *ctx;
} report_scan;

static int report_scan_row(void *ctx, const ks_store__val *v)
{
    report_scan *r = ctx;
    if (v[0].type != KS_STORE__V_TEXT)
        return 0; /* a host id is never NULL (primary key) */
    bool has = v[1].type == KS_STORE__V_TEXT;
    return r->cb(r->ctx, v[0].p, has ? v[1].p : NULL, has ? v[1].len : 0);
}

ks_code ks_store_report_scan(ks_store *s, ks_store_report_cb cb, void *ctx, ks_err *err)
{
    CHECK_STORE(s, err);
    CHECK_ARG(cb, err, "no callback");
    /* the copy table of host_reports: (host_id, report_json) by host_id */
    int t = 0;
    while (t < KS_STORE__N_TABLES && strcmp(ks_store__tables[t].name, "host_reports") != 0)
        t++;
    if (t == KS_STORE__N_TABLES)
        return ks_err_set(err, KS_EINTERNAL, "no host_reports table");
    /* outside a transaction, in a read-only one of its own (a PostgreSQL
     * cursor needs one) */
    bool own = !s->in_txn;
    ks_code rc = own ? s->ops->begin_snapshot(s, err) : KS_OK;
    report_scan r = {cb, ctx};
    if (rc == KS_OK)
        rc = s->ops->raw_scan(s, t, report_scan_row, &r, err);
    if (own && s->in_txn)
        s->ops->rollback(s, NULL);
    return rc;
}
