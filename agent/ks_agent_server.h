/*
 * ks_agent_server.h - the agent's REST endpoint: receives vCPU plans from the
 * scheduler and applies them through a VMM driver (agent/vmm/ks_vmm.h).
 *
 * Listens on 127.0.0.1:7421 by default (libmicrohttpd, one internal thread).
 * Every request except GET /healthz needs "Authorization: Bearer <token>".
 * Errors are {"error":{"code":slug,"message":...,"field":...,"details":result}}
 * with 400 invalid (also a method the resource does not take), 401 no/bad token,
 * 404 unknown VM, 409 stale generation, 413 body over the limit, 422 the VMM cannot
 * do it, 503 the VMM does not answer, 500 else.
 *
 *   PUT /v1/vms/{name}/plan   body: the plan JSON (ks_plan_to_json; "vm" must equal
 *       {name}, and "host" this agent's host id when one is configured).
 *       Unknown VM: created (201).  Known VM: generation G newer than the
 *       applied one is applied online where possible (200); G equal to the applied
 *       one with the same plan is a no-op (200, idempotent: kintsugid may retry
 *       freely); G equal with a different plan, or G older: 409 "conflict".
 *       Reply: the VM object below plus "result" (ks_vmm_result_to_json of this call).
 *       A failed create/apply replies with the error and "details" = the result,
 *       which lists what had been applied before the failure.
 *       PUT .../plan?restart=allowed: when parts of a newer plan cannot change on the
 *       running VM (result "needs_restart"), the agent stops the VM and starts it
 *       from the plan (result: an applied "restart" item + the create notes; the VM
 *       gets a new pid).  Without it they are only reported.
 *   GET /v1/vms/{name}        the VM object: {"vm","driver","generation","running",
 *       "pid","control","vcpus":[{"id","thread_id","host_cpu","affinity"}],
 *       "dropped":[{"item","detail"}],"needs_restart":[...]}.
 *   DELETE /v1/vms/{name}     stops the VM (204).
 *   GET /v1/vms               {"vms":[VM object, ...]} - the running VMs, reported to
 *       the scheduler for reconciliation after restarts.
 *   GET /healthz              {"status":"ok"} without authentication.
 *
 * kintsugid's push side (not here): PUT the plan with libcurl, Content-Type
 * application/json, the agent token as bearer; retry on connection failure and on
 * 503 with backoff (the same plan is safe to resend); 409 means the agent has a
 * newer generation (stop retrying, re-read GET /v1/vms/{name}); 400 is a bug in the
 * plan (do not retry).
 *
 * Threading: the HTTP thread runs every handler under one lock, so driver calls are
 * serialised; ks_agent_server_running_vms() takes the same lock.
 */
#ifndef KS_AGENT_SERVER_H
#define KS_AGENT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ks_err.h"
#include "ks_vmm.h"

#define KS_AGENT_DEFAULT_PORT 7421
#define KS_AGENT_MAX_VMS 4096

typedef struct ks_agent_server_options {
    const char *listen_addr;   /* IPv4 or IPv6 literal; default "127.0.0.1" */
    uint16_t port;             /* 0: any free port (see ks_agent_server_port) */
    const char *token;         /* bearer token; required unless insecure_no_auth */
    bool insecure_no_auth;     /* tests and local demos only */
    const char *host_id;       /* when set, a plan whose "host" differs is refused (400):
                                * a misrouted plan must not start a VM here */
    size_t max_body_bytes;     /* plan body limit, default 1 MiB */
    ks_vmm_options vmm;        /* driver name ("qemu"|"libvirt"|"cloud-hypervisor"|
                                * "firecracker"|"dry-run"), state dir, VMM settings */
} ks_agent_server_options;

#define KS_AGENT_SERVER_OPTIONS_INIT                                                          \
    {                                                                                         \
        .listen_addr = "127.0.0.1", .port = KS_AGENT_DEFAULT_PORT, .max_body_bytes = 1u << 20, \
        .vmm = KS_VMM_OPTIONS_INIT                                                            \
    }

typedef struct ks_agent_server ks_agent_server;

/*
 * Creates the driver and starts listening.  KS_EINVAL bad option (no token, bad
 * address, unknown driver); KS_EUNAVAIL the VMM is missing; KS_EIO cannot listen.
 */
ks_code ks_agent_server_start(ks_agent_server **out, const ks_agent_server_options *opts,
                              ks_err *err);
/* The port actually bound (useful with port 0). */
uint16_t ks_agent_server_port(const ks_agent_server *srv);

/* Called once per VM with its current state (borrowed for the call). */
typedef void (*ks_agent_vm_cb)(void *ctx, const ks_vmm_state *vm);
/* Reports every VM the agent runs; returns how many. */
size_t ks_agent_server_running_vms(ks_agent_server *srv, ks_agent_vm_cb cb, void *ctx);

/* Stops listening, destroys every VM it started (their VMM processes are children of
 * this process) and frees srv.  NULL-safe. */
void ks_agent_server_stop(ks_agent_server *srv);

#endif
