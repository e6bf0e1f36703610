/*
 * ks_api_push.h - delivery of vCPU plans from kintsugid to the hosts' agents.
 *
 * Every committed change of a VM's plan (placement, re-plan after a defect or a
 * ban) and every deletion is queued here; one worker thread delivers them with
 * libcurl to the agent URL the host advertised in its report (host.agent_url):
 *
 *   PUT    {agent_url}/v1/vms/{name}/plan   body = plan JSON
 *   DELETE {agent_url}/v1/vms/{name}
 *
 * with "Authorization: Bearer <agent plan token>".  A 2xx answer records the
 * applied generation in the store (ks_store_vm_set_applied) and clears the
 * VM's apply_error.  A 4xx answer (the agent refused the plan) records the
 * agent's message as apply_error and is not retried: the VM is flagged for an
 * operator.  An unreachable agent or a 5xx is retried with exponential backoff
 * (full jitter, capped), and after KS_PUSH_FLAG_AFTER attempts the error is also
 * recorded so the VM shows it.  Nothing is lost across restarts: at start every
 * VM whose applied generation is behind its plan is queued again.
 *
 * Threading: the enqueue functions are called with the API's fleet lock held
 * and never block on I/O; the worker takes the fleet lock only for its short
 * store reads and writes, never during HTTP.
 */
#ifndef KS_API_PUSH_H
#define KS_API_PUSH_H

#include <stddef.h>
#include <stdint.h>

#include "ks_err.h"

struct ks_api;
typedef struct ks_api_pusher ks_api_pusher;

#define KS_PUSH_FLAG_AFTER 5

/*
 * Starts the worker.  token: the bearer token agents expect (NULL: none).
 * Queues every VM whose plan is not yet applied (reads the store; the caller
 * holds the fleet lock).  KS_ENOMEM, KS_EIO.
 */
ks_code ks_api_pusher_start(ks_api_pusher **out, struct ks_api *api, const char *token,
                            ks_err *err);
/* Stops the worker (in-flight request finishes or times out) and frees.  NULL-safe. */
void ks_api_pusher_stop(ks_api_pusher *p);

/* Queues delivery of VM `vm`'s current plan to `host`'s agent (deduplicated; a
 * host known to advertise no agent costs nothing).  NULL-safe on p. */
void ks_api_pusher_apply(ks_api_pusher *p, const char *vm, const char *host);
/* Queues the removal of `vm` from `host`'s agent; the agent URL is resolved now,
 * because the VM (and perhaps the host) is gone from the store afterwards. */
void ks_api_pusher_delete(ks_api_pusher *p, const char *vm, const char *host);
/* A host sent a new report: forget its cached agent URL (it may have moved). */
void ks_api_pusher_host_changed(ks_api_pusher *p, const char *host);

/*
 * The agent URL `host` advertised in its last report ("" when none or unknown
 * host), from the pusher's cache when there is one (p may be NULL: plan push
 * off).  The caller holds the fleet lock.
 */
void ks_api_agent_url(ks_api_pusher *p, struct ks_api *api, const char *host, char *out,
                      size_t cap);

/*
 * Replicas (several kintsugid on one PostgreSQL): each replica pushes the plans
 * it commits, and the leader sweeps for plans nobody delivered - their replica
 * died before pushing, or runs with plan push off.  Queues every VM whose plan
 * is not applied, not flagged with an apply error, and unchanged since before
 * `older_than_us` (wall clock), so fresh placements are left to their replica.
 * A plan sent twice is harmless: the agent answers an equal plan of the same
 * generation with 200.  The caller holds the fleet lock.  NULL-safe on p.
 */
void ks_api_pusher_sweep(ks_api_pusher *p, uint64_t older_than_us);

/* Items waiting or being delivered (for /metrics and tests). */
size_t ks_api_pusher_pending(ks_api_pusher *p);

#endif
