/*
 * ks_api_replica.c - kintsugid as one of several replicas sharing a store
 * (PostgreSQL): follow the other replicas' writes through the store's change
 * feed, and run the singleton jobs only on the leader.
 *
 * Each replica keeps its own fleet index.  Every write that changes the index
 * also records a change row (ks_store.h, "change feed"); the background thread
 * polls the feed and reloads exactly the hosts, VMs, pools and bans named.  A
 * placement that lost a race for a CPU (KS_ECONFLICT from the store's UNIQUE
 * constraint) syncs the same way before choosing again.  Re-applying our own
 * changes is harmless (each reload replaces the entry), so the feed is not
 * filtered by origin.
 *
 * On SQLite one process owns the file: there is nobody to follow, the feed is
 * not polled and this replica is always the leader.
 *
 * Every function here expects the fleet lock (api->lock) held.
 */
#include <stdlib.h>
#include <string.h>

#include "ks_api_int.h"
#include "ks_log.h"
#include "ks_report.h"
#include "ks_sched.h"
#include "ks_store.h"
#include "ks_vm.h"

typedef struct change_key {
  uint8_t kind;
  char key[KS_ID_MAX];
} change_key;

typedef struct change_set {
  change_key *items;
  size_t n, cap;
  bool oom;
} change_set;

/* Collects (deduplicated) changes: the callback may not call into the store. */
static int collect_change(void *ctx, const ks_store_change_row *row) {
  change_set *c = ctx;
  for (size_t i = 0; i < c->n; i++)
    if (c->items[i].kind == row->kind && strcmp(c->items[i].key, row->key) == 0)
      return 0;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    change_key *n = realloc(c->items, cap * sizeof(*n));
    if (!n) {
      c->oom = true;
      return 1;
    }
    c->items = n;
    c->cap = cap;
  }
  c->items[c->n].kind = row->kind;
  snprintf(c->items[c->n].key, sizeof(c->items[c->n].key), "%s", row->key);
  c->n++;
  return 0;
}

static void reload_host(ks_api *api, const char *id) {
  ks_store_host_row row = {0};
  ks_report *r = NULL;
  ks_err e = {0};
  ks_code rc = ks_store_host_get(&row, api->store, id, true, &e);
  if (rc == KS_ENOTFOUND) {
    ks_fleet_host_remove(api->fleet, id, NULL);
    return;
  }
  if (rc == KS_OK && row.report_json &&
      ks_report_parse(&r, row.report_json, strlen(row.report_json), &e) ==
          KS_OK &&
      ks_fleet_host_update(api->fleet, r, NULL, &e) == KS_OK)
    ks_fleet_host_set_schedulable(api->fleet, id,
                                  row.state == KS_STORE_HOST_READY, NULL);
  else
    ks_log(KS_LOG_WARN, "replica sync host='%s' error='%s'", id,
           e.msg[0] ? e.msg : "no report");
  ks_report_free(r);
  ks_store_host_row_destroy(&row);
}

static void reload_vm(ks_api *api, const char *name) {
  ks_store_vm_row row = {0};
  ks_vm_request *req = NULL;
  ks_plan *plan = NULL;
  ks_err e = {0};
  ks_fleet_vm_remove(api->fleet, name, NULL); /* absent: fine */
  ks_code rc = ks_store_vm_get(&row, api->store, name, true, &e);
  if (rc == KS_ENOTFOUND)
    return;
  json_error_t je;
  json_t *rj = rc == KS_OK && row.request_json
                   ? json_loads(row.request_json, 0, &je)
                   : NULL;
  json_t *pj =
      rc == KS_OK && row.plan_json ? json_loads(row.plan_json, 0, &je) : NULL;
  if (!rj || !pj || ks_vm_request_from_json(&req, rj, &e) != KS_OK ||
      ks_plan_from_json(&plan, pj, &e) != KS_OK ||
      ks_fleet_vm_add(api->fleet, req, plan, &e) != KS_OK)
    /* Its CPUs stay allocated in the store: no other placement can take them.
     */
    ks_log(KS_LOG_ERROR, "replica sync vm='%s' error='%s'", name,
           e.msg[0] ? e.msg : "bad json");
  json_decref(rj);
  json_decref(pj);
  ks_vm_request_free(req);
  ks_plan_free(plan);
  ks_store_vm_row_destroy(&row);
}

static void reload_pool(ks_api *api, const char *name) {
  ks_store_pool_row row = {0};
  ks_err e = {0};
  ks_code rc = ks_store_pool_get(&row, api->store, name, &e);
  if (rc == KS_ENOTFOUND)
    ks_fleet_pool_remove(api->fleet, name, NULL);
  else if (rc != KS_OK || ks_api__sync_pool(api, name, &e) != KS_OK)
    ks_log(KS_LOG_WARN, "replica sync pool='%s' error='%s'", name, e.msg);
  ks_store_pool_row_destroy(&row);
}

ks_code ks_api__changes_start(ks_api *api, ks_err *err) {
  api->replicated = strcmp(ks_store_backend(api->store), "sqlite") != 0;
  api->change_cursor = 0;
  if (!api->replicated)
    return KS_OK;
  return ks_store_changes_cursor(&api->change_cursor, api->store, err);
}

ks_code ks_api__sync_changes(ks_api *api, ks_err *err) {
  if (!api->replicated)
    return KS_OK;
  change_set c = {0};
  int64_t next = api->change_cursor;
  ks_code rc = ks_store_changes_since(&next, api->store, api->change_cursor,
                                      collect_change, &c, err);
  if (rc == KS_OK && c.oom)
    rc = ks_err_set(err, KS_ENOMEM, "out of memory reading the change feed");
  if (rc != KS_OK) {
    free(c.items);
    return rc;
  }
  /* Hosts and pools before VMs: a VM needs its host in the index. */
  bool bans = false;
  for (size_t i = 0; i < c.n; i++) {
    if (c.items[i].kind == KS_STORE_CHANGE_HOST)
      reload_host(api, c.items[i].key);
    else if (c.items[i].kind == KS_STORE_CHANGE_POOL)
      reload_pool(api, c.items[i].key);
    else if (c.items[i].kind == KS_STORE_CHANGE_POLICY)
      bans = true;
  }
  if (bans && ks_api__sync_bans(api, err) != KS_OK)
    ks_log(KS_LOG_WARN, "replica sync bans error='%s'", err ? err->msg : "");
  for (size_t i = 0; i < c.n; i++)
    if (c.items[i].kind == KS_STORE_CHANGE_VM)
      reload_vm(api, c.items[i].key);
  api->change_cursor = next;
  free(c.items);
  return KS_OK;
}

static int collect_vm_name(void *ctx, const ks_store_vm_row *row) {
  change_set *c = ctx;
  ks_store_change_row fake = {.kind = KS_STORE_CHANGE_VM};
  snprintf(fake.key, sizeof(fake.key), "%s", row->name);
  return collect_change(c, &fake);
}

/*
 * Loads the VMs of `host` that the index does not know yet, straight from the
 * store: after losing a CPU to another replica, its VM may not be in the feed
 * yet (the feed shows a change once every older transaction has ended).
 */
ks_code ks_api__sync_host(ks_api *api, const char *host, ks_err *err) {
  if (!api->replicated)
    return KS_OK;
  change_set c = {0};
  ks_store_vm_filter f = KS_STORE_VM_FILTER_INIT;
  f.host_id = host;
  ks_code rc = ks_store_vm_list(api->store, &f, collect_vm_name, &c, err);
  if (rc == KS_OK && c.oom)
    rc = ks_err_set(err, KS_ENOMEM, "out of memory listing vms");
  for (size_t i = 0; rc == KS_OK && i < c.n; i++)
    if (!ks_fleet_vm_get_plan(api->fleet, c.items[i].key))
      reload_vm(api, c.items[i].key);
  free(c.items);
  return rc;
}

void ks_api__prune_changes(ks_api *api, uint64_t older_than_us) {
  ks_err err = {0};
  uint64_t n = 0;
  ks_code rc = ks_api__begin(api, &err);
  if (rc == KS_OK)
    rc = ks_store_changes_prune(&n, api->store, older_than_us, &err);
  if (rc == KS_OK)
    rc = ks_store_commit(api->store, &err);
  else
    ks_store_rollback(api->store, NULL);
  if (rc != KS_OK)
    ks_log(KS_LOG_WARN, "change feed pruning failed error='%s', ignoring",
           err.msg);
  else if (n)
    ks_log(KS_LOG_INFO, "change feed rows pruned n=%llu",
           (unsigned long long)n);
}

bool ks_api__is_leader(ks_api *api) {
  if (!api->replicated)
    return true;
  bool lead = false;
  ks_err err = {0};
  if (ks_store_try_leader(&lead, api->store, &err) != KS_OK) {
    ks_log(KS_LOG_WARN, "leader election error='%s'", err.msg);
    lead = false;
  }
  if (lead != api->leader)
    ks_log(KS_LOG_INFO,
           "replica %s the leader (lost-host sweep, snapshots, expiry)",
           lead ? "is now" : "is no longer");
  api->leader = lead;
  return lead;
}
