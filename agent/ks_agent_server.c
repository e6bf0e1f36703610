/*
 * ks_agent_server.c - the agent's REST endpoint (see ks_agent_server.h for the
 * resources and their rules).
 *
 * Owns: the libmicrohttpd daemon, the VMM driver and the table of VMs (name ->
 * ks_vmm_vm, last result).  Invariant: a VM is in the table only while its driver
 * handle is live (a failed create never enters it).  Threading: MHD's internal
 * thread calls handle(); every access to the driver and the table holds srv->lock
 * (so ks_agent_server_running_vms can run from any thread).  Per-request state
 * (the body being received) lives in a struct freed by the completion callback.
 */
#include "ks_agent_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ks_vm.h"

typedef struct vm_entry {
    char name[KS_ID_MAX];
    ks_vmm_vm *vm;
    ks_vmm_result last;   /* result of the last create/apply */
} vm_entry;

struct ks_agent_server {
    struct MHD_Daemon *mhd;
    ks_vmm_driver *driver;
    pthread_mutex_t lock;
    char *token;
    char host_id[KS_ID_MAX];  /* "" = plans for any host accepted */
    size_t max_body;
    uint16_t port;
    size_t n_vms;
    vm_entry *vms[KS_AGENT_MAX_VMS];
};

typedef struct request {
    char *body;
    size_t len, cap;
    bool too_large;
} request;

/* ---------------------------------------------------------------- responses */

static unsigned status_of(ks_code code)
{
    switch (code) {
    case KS_OK: return MHD_HTTP_OK;
    case KS_EINVAL: return MHD_HTTP_BAD_REQUEST;
    case KS_ENOTFOUND: return MHD_HTTP_NOT_FOUND;
    case KS_EEXIST:
    case KS_ECONFLICT:
    case KS_ENOCAPACITY: return MHD_HTTP_CONFLICT;
    case KS_EAUTH: return MHD_HTTP_UNAUTHORIZED;
    case KS_EFORBIDDEN: return MHD_HTTP_FORBIDDEN;
    case KS_ETOOLARGE: return MHD_HTTP_CONTENT_TOO_LARGE;
    case KS_EPRECOND: return MHD_HTTP_PRECONDITION_FAILED;
    case KS_EUNSUPPORTED: return MHD_HTTP_UNPROCESSABLE_CONTENT;
    case KS_EUNAVAIL: return MHD_HTTP_SERVICE_UNAVAILABLE;
    default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

/* Sends `doc` (stolen) with `status`. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        static const char oom[] = "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of "
                                  "memory\"}}";
        text = strdup(oom);
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        if (!text)
            return MHD_NO;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, const ks_err *e,
                                  const ks_vmm_result *details)
{
    json_t *body = json_pack("{s:s, s:s}", "code", ks_code_slug(e->code), "message",
                             e->msg[0] ? e->msg : ks_code_str(e->code));
    if (body && e->field[0])
        json_object_set_new(body, "field", json_string(e->field));
    if (body && details && details->n_notes)
        json_object_set_new(body, "details", ks_vmm_result_to_json(details));
    return send_json(c, status_of(e->code), body ? json_pack("{s:o}", "error", body) : NULL);
}

static enum MHD_Result send_code(struct MHD_Connection *c, ks_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum MHD_Result send_code(struct MHD_Connection *c, ks_code code, const char *fmt, ...)
{
    ks_err e = {0};
    va_list ap;
    va_start(ap, fmt);
    ks_err_setv(&e, code, fmt, ap);
    va_end(ap);
    return send_error(c, &e, NULL);
}

/* ---------------------------------------------------------------- VM table */

static vm_entry *find_vm(ks_agent_server *srv, const char *name, size_t *idx)
{
    for (size_t i = 0; i < srv->n_vms; i++)
        if (strcmp(srv->vms[i]->name, name) == 0) {
            if (idx)
                *idx = i;
            return srv->vms[i];
        }
    return NULL;
}

static void remove_vm(ks_agent_server *srv, size_t idx)
{
    vm_entry *e = srv->vms[idx];
    srv->vms[idx] = srv->vms[--srv->n_vms];
    ks_vmm_result_destroy(&e->last);
    free(e);
}

/* The VM object of GET /v1/vms/{name}: driver state + standing notes. */
static json_t *vm_json(ks_agent_server *srv, vm_entry *e, ks_err *err)
{
    ks_vmm_state st;
    ks_vmm_state_init(&st);
    if (ks_vmm_query(&st, srv->driver, e->vm, err) != KS_OK)
        return NULL;
    json_t *doc = ks_vmm_state_to_json(&st);
    json_t *standing = ks_vmm_result_to_json(ks_vmm_vm_standing(e->vm));
    ks_vmm_state_destroy(&st);
    if (!doc || !standing) {
        json_decref(doc);
        json_decref(standing);
        ks_err_set(err, KS_ENOMEM, "out of memory");
        return NULL;
    }
    json_object_set(doc, "dropped", json_object_get(standing, "dropped"));
    json_object_set(doc, "needs_restart", json_object_get(standing, "needs_restart"));
    json_decref(standing);
    return doc;
}

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n >= KS_ID_MAX || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- handlers */

/*
 * The plan was accepted but parts of it need the VM restarted, and the caller
 * allowed that: stop the VM and start it again from the plan.  On success *res is
 * replaced by a "restart" note plus the create notes; on failure the VM is gone
 * (removed from the table) and *res lists the old notes, the restart and the
 * failed create.
 */
static ks_code restart_vm(ks_agent_server *srv, vm_entry *e, const ks_plan *plan,
                          ks_vmm_result *res, ks_err *err)
{
    ks_vmm_result created;
    ks_vmm_result_init(&created);
    uint32_t n = ks_vmm_result_count(res, KS_VMM_NEEDS_RESTART);
    ks_vmm_destroy(srv->driver, e->vm, NULL);
    e->vm = NULL;
    ks_code rc = ks_vmm_create(&e->vm, srv->driver, plan, &created, err);
    if (rc != KS_OK) {
        ks_vmm_result_add(res, KS_VMM_FAILED, "restart", "stopped for %u item(s), restart failed",
                          n);
        ks_vmm_result_append(res, &created);
        size_t idx = 0;
        if (find_vm(srv, e->name, &idx))
            remove_vm(srv, idx);
        ks_vmm_result_destroy(&created);
        return rc;
    }
    ks_vmm_result_reset(res);
    res->generation = plan->generation;
    ks_vmm_result_add(res, KS_VMM_APPLIED, "restart",
                      "restarted with generation %llu: %u item(s) could not change online",
                      (unsigned long long)plan->generation, n);
    ks_vmm_result_append(res, &created);
    ks_vmm_result_reset(&e->last);
    ks_vmm_result_append(&e->last, res);
    e->last.generation = res->generation;
    ks_vmm_result_destroy(&created);
    return KS_OK;
}

static enum MHD_Result put_plan(ks_agent_server *srv, struct MHD_Connection *c, const char *name,
                                const request *rq)
{
    const char *restart = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "restart");
    bool restart_allowed = restart && strcmp(restart, "allowed") == 0;
    ks_err err = {0};
    json_error_t je;
    ks_plan *plan = NULL;
    ks_vmm_result res;
    enum MHD_Result ret;
    bool created = false;
    ks_vmm_result_init(&res);
    json_t *doc = rq->len ? json_loadb(rq->body, rq->len, 0, &je) : NULL;
    if (!doc) {
        ret = send_code(c, KS_EINVAL, "body is not JSON: %s", rq->len ? je.text : "empty");
        goto done;
    }
    if (ks_plan_from_json(&plan, doc, &err) != KS_OK) {
        ret = send_error(c, &err, NULL);
        goto done;
    }
    if (strcmp(plan->vm, name) != 0) {
        ks_err_set_field(&err, KS_EINVAL, "vm", "plan is for vm '%s', path names '%s'", plan->vm,
                         name);
        ret = send_error(c, &err, NULL);
        goto done;
    }
    if (srv->host_id[0] && strcmp(plan->host, srv->host_id) != 0) {
        ks_err_set_field(&err, KS_EINVAL, "host", "plan is for host '%s', this agent is '%s'",
                         plan->host, srv->host_id);
        ret = send_error(c, &err, NULL);
        goto done;
    }
    vm_entry *e = find_vm(srv, name, NULL);
    if (!e) {
        if (srv->n_vms == KS_AGENT_MAX_VMS) {
            ret = send_code(c, KS_ENOCAPACITY, "agent already runs %d vms", KS_AGENT_MAX_VMS);
            goto done;
        }
        e = calloc(1, sizeof(*e));
        if (!e) {
            ret = send_code(c, KS_ENOMEM, "out of memory");
            goto done;
        }
        snprintf(e->name, sizeof(e->name), "%s", name);
        ks_vmm_result_init(&e->last);
        if (ks_vmm_create(&e->vm, srv->driver, plan, &res, &err) != KS_OK) {
            free(e);
            ret = send_error(c, &err, &res);
            goto done;
        }
        srv->vms[srv->n_vms++] = e;
        created = true;
        ks_vmm_result_reset(&e->last);
        ks_vmm_result_append(&e->last, &res);
        e->last.generation = res.generation;
    } else {
        const ks_plan *cur = ks_vmm_vm_plan(e->vm);
        if (plan->generation == cur->generation) {
            /* Idempotent retry only when it is the very same plan. */
            json_t *a = ks_plan_to_json(cur), *b = ks_plan_to_json(plan);
            bool same = a && b && json_equal(a, b);
            json_decref(a);
            json_decref(b);
            if (!same) {
                ret = send_code(c, KS_ECONFLICT,
                                "generation %llu is already applied with a different plan",
                                (unsigned long long)plan->generation);
                goto done;
            }
            ks_vmm_result_append(&res, &e->last);
            res.generation = e->last.generation;
        } else if (ks_vmm_apply(srv->driver, e->vm, plan, &res, &err) != KS_OK) {
            ret = send_error(c, &err, &res);
            goto done;
        } else if (restart_allowed && ks_vmm_result_count(&res, KS_VMM_NEEDS_RESTART) > 0) {
            if (restart_vm(srv, e, plan, &res, &err) != KS_OK) {
                ret = send_error(c, &err, &res);
                goto done;
            }
        } else {
            ks_vmm_result_reset(&e->last);
            ks_vmm_result_append(&e->last, &res);
            e->last.generation = res.generation;
        }
    }
    json_t *out = vm_json(srv, e, &err);
    if (!out) {
        ret = send_error(c, &err, &res);
        goto done;
    }
    json_object_set_new(out, "result", ks_vmm_result_to_json(&res));
    ret = send_json(c, created ? MHD_HTTP_CREATED : MHD_HTTP_OK, out);
done:
    ks_vmm_result_destroy(&res);
    ks_plan_free(plan);
    json_decref(doc);
    return ret;
}

static enum MHD_Result route(ks_agent_server *srv, struct MHD_Connection *c, const char *url,
                             const char *method, const request *rq)
{
    ks_err err = {0};
    if (strcmp(url, "/healthz") == 0)
        return send_json(c, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));

    if (srv->token) {
        const char *auth =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        size_t tl = strlen(srv->token);
        bool ok = auth && strncmp(auth, "Bearer ", 7) == 0 && strlen(auth + 7) == tl;
        /* Constant-time over the token length: no early exit on the first mismatch. */
        unsigned char diff = ok ? 0 : 1;
        for (size_t i = 0; ok && i < tl; i++)
            diff |= (unsigned char)(auth[7 + i] ^ srv->token[i]);
        if (diff)
            return send_code(c, KS_EAUTH, "missing or invalid bearer token");
    }
    if (strcmp(url, "/v1/vms") == 0) {
        if (strcmp(method, "GET") != 0)
            return send_code(c, KS_EINVAL, "method %s not allowed on /v1/vms", method);
        json_t *list = json_array();
        for (size_t i = 0; list && i < srv->n_vms; i++) {
            json_t *v = vm_json(srv, srv->vms[i], &err);
            if (v)
                json_array_append_new(list, v);
            else
                json_array_append_new(list, json_pack("{s:s, s:s}", "vm", srv->vms[i]->name,
                                                      "error", err.msg));
        }
        return send_json(c, MHD_HTTP_OK, list ? json_pack("{s:o}", "vms", list) : NULL);
    }
    if (strncmp(url, "/v1/vms/", 8) != 0)
        return send_code(c, KS_ENOTFOUND, "no resource '%.200s'", url);
    const char *name = url + 8;
    const char *slash = strchr(name, '/');
    size_t nl = slash ? (size_t)(slash - name) : strlen(name);
    if (!name_ok(name, nl))
        return send_code(c, KS_EINVAL, "bad vm name in '%.200s'", url);
    char vm[KS_ID_MAX];
    memcpy(vm, name, nl);
    vm[nl] = '\0';
    if (slash && strcmp(slash, "/plan") == 0) {
        if (strcmp(method, "PUT") != 0)
            return send_code(c, KS_EINVAL, "method %s not allowed on plans (use PUT)", method);
        return put_plan(srv, c, vm, rq);
    }
    if (slash)
        return send_code(c, KS_ENOTFOUND, "no resource '%.200s'", url);
    size_t idx = 0;
    vm_entry *e = find_vm(srv, vm, &idx);
    if (!e)
        return send_code(c, KS_ENOTFOUND, "no vm '%s' on this agent", vm);
    if (strcmp(method, "GET") == 0) {
        json_t *doc = vm_json(srv, e, &err);
        if (!doc)
            return send_error(c, &err, NULL);
        json_object_set_new(doc, "result", ks_vmm_result_to_json(&e->last));
        return send_json(c, MHD_HTTP_OK, doc);
    }
    if (strcmp(method, "DELETE") == 0) {
        ks_code rc = ks_vmm_destroy(srv->driver, e->vm, &err);
        remove_vm(srv, idx); /* the handle is gone whatever destroy said */
        if (rc != KS_OK)
            return send_error(c, &err, NULL);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, r);
        MHD_destroy_response(r);
        return ret;
    }
    return send_code(c, KS_EINVAL, "method %s not allowed on vms", method);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    ks_agent_server *srv = cls;
    request *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof(*rq));
        if (!rq)
            return MHD_NO;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rq->too_large || rq->len + n > srv->max_body) {
            rq->too_large = true;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t ncap = rq->cap ? rq->cap : 4096;
            while (ncap < rq->len + n + 1)
                ncap *= 2;
            char *nb = realloc(rq->body, ncap);
            if (!nb)
                return MHD_NO;
            rq->body = nb;
            rq->cap = ncap;
        }
        memcpy(rq->body + rq->len, upload, n);
        rq->len += n;
        return MHD_YES;
    }
    if (rq->too_large)
        return send_code(c, KS_ETOOLARGE, "body above %zu bytes", srv->max_body);
    pthread_mutex_lock(&srv->lock);
    enum MHD_Result ret = route(srv, c, url, method, rq);
    pthread_mutex_unlock(&srv->lock);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    request *rq = *con_cls;
    if (rq) {
        free(rq->body);
        free(rq);
    }
    *con_cls = NULL;
}

/* ---------------------------------------------------------------- lifecycle */

ks_code ks_agent_server_start(ks_agent_server **out, const ks_agent_server_options *opts,
                              ks_err *err)
{
    ks_code rc = KS_OK;
    ks_agent_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    pthread_mutex_init(&srv->lock, NULL);
    srv->max_body = opts->max_body_bytes ? opts->max_body_bytes : (1u << 20);
    if (opts->token && opts->token[0]) {
        if (!(srv->token = strdup(opts->token))) {
            rc = ks_err_set(err, KS_ENOMEM, "out of memory");
            goto done;
        }
    } else if (!opts->insecure_no_auth) {
        rc = ks_err_set_field(err, KS_EINVAL, "token", "the agent API needs a bearer token");
        goto done;
    }
    if (opts->host_id && snprintf(srv->host_id, sizeof(srv->host_id), "%s", opts->host_id) >=
                             (int)sizeof(srv->host_id)) {
        rc = ks_err_set_field(err, KS_EINVAL, "host_id", "host id '%.64s...' is too long",
                              opts->host_id);
        goto done;
    }
    struct sockaddr_storage ss = {0};
    const char *addr = opts->listen_addr ? opts->listen_addr : "127.0.0.1";
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(opts->port);
    } else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(opts->port);
        flags |= MHD_USE_IPv6;
    } else {
        rc = ks_err_set_field(err, KS_EINVAL, "listen_addr", "'%s' is not an IP address", addr);
        goto done;
    }
    if ((rc = ks_vmm_driver_new(&srv->driver, &opts->vmm, err)) != KS_OK)
        goto done;
    srv->mhd = MHD_start_daemon(flags, opts->port, NULL, NULL, handle, srv, MHD_OPTION_SOCK_ADDR,
                                (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, completed,
                                srv, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
    if (!srv->mhd) {
        rc = ks_err_set(err, KS_EIO, "cannot listen on %s port %u", addr, (unsigned)opts->port);
        goto done;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : opts->port;
    *out = srv;
    srv = NULL;
done:
    ks_agent_server_stop(srv);
    return rc;
}

uint16_t ks_agent_server_port(const ks_agent_server *srv)
{
    return srv->port;
}

size_t ks_agent_server_running_vms(ks_agent_server *srv, ks_agent_vm_cb cb, void *ctx)
{
    size_t n = 0;
    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < srv->n_vms; i++) {
        ks_vmm_state st;
        ks_vmm_state_init(&st);
        if (ks_vmm_query(&st, srv->driver, srv->vms[i]->vm, NULL) == KS_OK && st.running) {
            n++;
            if (cb)
                cb(ctx, &st);
        }
        ks_vmm_state_destroy(&st);
    }
    pthread_mutex_unlock(&srv->lock);
    return n;
}

void ks_agent_server_stop(ks_agent_server *srv)
{
    if (!srv)
        return;
    if (srv->mhd)
        MHD_stop_daemon(srv->mhd);
    while (srv->n_vms > 0) {
        ks_vmm_destroy(srv->driver, srv->vms[srv->n_vms - 1]->vm, NULL);
        remove_vm(srv, srv->n_vms - 1);
    }
    ks_vmm_driver_free(srv->driver);
    pthread_mutex_destroy(&srv->lock);
    free(srv->token);
    free(srv);
}
