/*
 * ks_api_util.h - helpers shared by the handler files (lock held by the caller).
 */
#ifndef KS_API_UTIL_H
#define KS_API_UTIL_H

#include "ks_api_int.h"
#include "ks_sched.h"
#include "ks_store.h"

/* Appends an event inside the open transaction; `detail` is stolen (may be NULL). */
ks_code ks_api__event(ks_api *api, const char *type, const char *host, const char *vm,
                      json_t *detail, ks_err *err);
/* Rolls back the open transaction (if any) and returns rc. */
ks_code ks_api__rollback(ks_api *api, ks_code rc);
/*
 * Re-plans VM `name` (ks_sched_replan), stores the new generation in its own
 * transaction, then updates the index; when the VM cannot stay on its host it is
 * marked needs_migration.  Appends {"vm","result",...} to `results` (may be NULL).
 */
ks_code ks_api__replan_vm(ks_api *api, const char *name, const char *why, json_t *results,
                          ks_err *err);
/* The API shapes (new references, NULL on ENOMEM). */
json_t *ks_api__vm_json(const ks_store_vm_row *row);
/* The same document as canonical text (json_dumps COMPACT | SORT_KEYS of
 * ks_api__vm_json), for a row whose request_json and plan_json are themselves
 * canonical, as the create handler writes them.  Caller frees; NULL on OOM. */
char *ks_api__vm_text(const ks_store_vm_row *row);
json_t *ks_api__host_json(ks_api *api, const ks_store_host_row *row);
/* Sends 400 and returns false when `value` is not a valid id. */
bool ks_api__valid_param(ks_api_req *req, const char *value, const char *what);

#endif
