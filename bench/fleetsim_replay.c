/*
 * fleetsim_replay.c - replays a workload trace against an in-process fleet
 * index, optionally storing every decision the way kintsugid's POST /v1/vms
 * handler does (api/ks_api_vms.c): decide -> encode request and plan ->
 * BEGIN; vm row + vCPU allocations; "vm.placed" event; COMMIT -> index add.
 *
 * With one transaction per placement the index learns a placement after its
 * commit; in group_commit mode (kintsugid's group commit) it reserves the
 * CPUs before the commit, and departures free theirs after it.  Single
 * threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ks_fleetsim.h"
#include "ks_sched.h"
#include "ks_store.h"

ks_code ks_fleetsim_replay_init(ks_fleetsim_replay *r, const ks_fleetsim_trace *t, ks_err *err)
{
    memset(r, 0, sizeof(*r));
    r->trace = t;
    r->placed = calloc(t->n_vms ? t->n_vms : 1, 1);
    if (!r->placed)
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    return KS_OK;
}

void ks_fleetsim_replay_destroy(ks_fleetsim_replay *r)
{
    if (!r)
        return;
    free(r->placed);
    r->placed = NULL;
    ks_fleetsim_samples_destroy(&r->decide_lat);
    ks_fleetsim_samples_destroy(&r->decide_ok_lat);
    ks_fleetsim_samples_destroy(&r->decide_fail_lat);
    for (size_t i = 0; i < KS_FLEETSIM_MAX_SHAPES; i++)
        ks_fleetsim_samples_destroy(&r->shape_lat[i]);
    ks_fleetsim_samples_destroy(&r->place_lat);
    ks_fleetsim_samples_destroy(&r->commit_lat);
}

/* Stores a placement inside the open transaction. */
static ks_code store_vm(ks_store *store, const ks_vm_request *req, const ks_plan *plan, ks_err *err)
{
    ks_code rc = KS_OK;
    char *request_text = ks_vm_request_to_text(req);
    char *plan_text = ks_plan_to_text(plan);
    ks_store_vcpu_alloc *allocs = calloc(plan->n_vcpus ? plan->n_vcpus : 1, sizeof(*allocs));
    if (!request_text || !plan_text || !allocs) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < plan->n_vcpus; i++)
        allocs[i] = (ks_store_vcpu_alloc){plan->vcpus[i].id, plan->vcpus[i].host_cpu};
    uint64_t now = (uint64_t)time(NULL) * 1000000u;
    ks_store_vm_row row = {.state = KS_STORE_VM_RUNNING,
                           .generation = plan->generation,
                           .n_vcpus = plan->n_vcpus,
                           .created_us = now,
                           .updated_us = now,
                           .request_json = request_text,
                           .plan_json = plan_text};
    snprintf(row.name, sizeof(row.name), "%s", req->name);
    snprintf(row.host_id, sizeof(row.host_id), "%s", plan->host);
    snprintf(row.pool, sizeof(row.pool), "%s", req->pool);
    snprintf(row.anti_affinity_group, sizeof(row.anti_affinity_group), "%s",
             req->anti_affinity_group);
    rc = ks_store_vm_insert(store, &row, allocs, plan->n_vcpus, err);
    if (rc == KS_OK) {
        char detail[96];
        snprintf(detail, sizeof(detail), "{\"generation\":%llu,\"vcpus\":%u}",
                 (unsigned long long)plan->generation, plan->n_vcpus);
        rc = ks_store_event_append(NULL, store, now, "vm.placed", plan->host, req->name, detail,
                                   err);
    }
done:
    free(request_text);
    free(plan_text);
    free(allocs);
    return rc;
}

/* Units of the open group (group_commit mode). */
typedef struct group {
    uint32_t n_placed;            /* arrivals */
    uint64_t *t0;                 /* per arrival: decision start */
    uint32_t *departed;           /* per departure: VM number, freed after the commit */
    uint32_t n_departed;
} group;

static ks_code commit(ks_fleetsim_replay *r, ks_store *store, ks_fleet *fleet, group *g,
                      ks_err *err)
{
    uint64_t t0 = ks_fleetsim_now_ns();
    ks_code rc = ks_store_commit(store, err);
    uint64_t t1 = ks_fleetsim_now_ns();
    r->commit_ns += t1 - t0;
    r->n_commits++;
    if (r->record_latency && !ks_fleetsim_samples_push(&r->commit_lat, t1 - t0))
        return ks_err_set(err, KS_ENOMEM, "out of memory");
    if (!g || rc != KS_OK)
        return rc;
    uint32_t units = g->n_placed + g->n_departed;
    r->n_units += units;
    r->place_ns += units ? (t1 - t0) * g->n_placed / units : 0;
    for (uint32_t i = 0; i < g->n_placed; i++)
        if (r->record_latency && !ks_fleetsim_samples_push(&r->place_lat, t1 - g->t0[i]))
            rc = ks_err_set(err, KS_ENOMEM, "out of memory");
    for (uint32_t i = 0; rc == KS_OK && i < g->n_departed; i++) {
        char name[KS_ID_MAX];
        ks_fleetsim_vm_name(name, g->departed[i]);
        rc = ks_fleet_vm_remove(fleet, name, err);
    }
    g->n_placed = g->n_departed = 0;
    return rc;
}

/* Opens a unit: the transaction when none is open, and in group mode a savepoint. */
static ks_code unit_begin(ks_store *store, bool savepoint, ks_err *err)
{
    ks_code rc = ks_store_in_txn(store) ? KS_OK : ks_store_begin(store, err);
    if (rc == KS_OK && savepoint)
        rc = ks_store_savepoint(store, KS_STORE_SP_MARK, err);
    return rc;
}

ks_code ks_fleetsim_replay_run(ks_fleetsim_replay *r, ks_fleet *fleet, uint32_t n, ks_store *store,
                               uint32_t store_batch, ks_err *err)
{
    ks_code rc = KS_OK;
    const ks_fleetsim_trace *t = r->trace;
    uint32_t in_txn = 0;
    ks_vm_request req;
    if (store_batch == 0)
        store_batch = 1;
    bool grouped = r->group_commit && store;
    group g = {0};
    if (grouped) {
        g.t0 = calloc(store_batch, sizeof(*g.t0));
        g.departed = calloc(store_batch, sizeof(*g.departed));
        if (!g.t0 || !g.departed)
            rc = ks_err_set(err, KS_ENOMEM, "out of memory");
    }
    group *gp = grouped ? &g : NULL;
    uint32_t end = r->pos + n > t->n_events || r->pos + n < r->pos ? t->n_events : r->pos + n;
    for (; rc == KS_OK && r->pos < end; r->pos++) {
        const ks_fleetsim_event *ev = &t->events[r->pos];
        if (ev->type == KS_FLEETSIM_DEPART) {
            if (!r->placed[ev->vm])
                continue;
            char name[KS_ID_MAX];
            ks_fleetsim_vm_name(name, ev->vm);
            bool freed_later = false;
            if (store) {
                rc = unit_begin(store, grouped, err);
                if (rc == KS_OK)
                    rc = ks_store_vm_delete(store, name, err);
                if (rc == KS_OK && grouped)
                    rc = ks_store_savepoint(store, KS_STORE_SP_KEEP, err);
                if (rc == KS_OK && grouped) {
                    g.departed[g.n_departed++] = ev->vm;
                    freed_later = true;
                }
                if (rc == KS_OK && ++in_txn >= store_batch) {
                    rc = commit(r, store, fleet, gp, err);
                    in_txn = 0;
                }
            }
            if (rc == KS_OK && !freed_later)
                rc = ks_fleet_vm_remove(fleet, name, err);
            r->placed[ev->vm] = 0;
            r->departures++;
            continue;
        }
        r->arrivals++;
        ks_fleetsim_make_request(&req, ev->vm, ev->shape);
        ks_plan *plan = NULL;
        ks_err e = {0};
        uint64_t t0 = ks_fleetsim_now_ns();
        ks_code prc = ks_sched_place(&plan, fleet, &req, NULL, &e);
        uint64_t dt = ks_fleetsim_now_ns() - t0;
        r->decide_ns += dt;
        if (r->record_latency &&
            (!ks_fleetsim_samples_push(&r->decide_lat, dt) ||
             !ks_fleetsim_samples_push(prc == KS_OK ? &r->decide_ok_lat : &r->decide_fail_lat,
                                       dt) ||
             !ks_fleetsim_samples_push(&r->shape_lat[ev->shape % KS_FLEETSIM_MAX_SHAPES], dt)))
            rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        if (prc == KS_ENOCAPACITY) {
            r->no_capacity++;
            continue;
        }
        if (prc != KS_OK) {
            if (err)
                *err = e;
            rc = prc;
            break;
        }
        if (rc == KS_OK && grouped) {
            /* kintsugid: store the unit, reserve in the index, commit with
             * the group; its latency runs to the group's commit. */
            rc = unit_begin(store, true, err);
            if (rc == KS_OK)
                rc = store_vm(store, &req, plan, err);
            if (rc == KS_OK)
                rc = ks_store_savepoint(store, KS_STORE_SP_KEEP, err);
            if (rc == KS_OK)
                rc = ks_fleet_vm_add(fleet, &req, plan, err);
            if (rc == KS_OK) {
                r->placed[ev->vm] = 1;
                r->placed_ok++;
                r->placed_vcpus += plan->n_vcpus;
                r->place_ns += ks_fleetsim_now_ns() - t0;
                g.t0[g.n_placed++] = t0;
                if (++in_txn >= store_batch) {
                    rc = commit(r, store, fleet, gp, err);
                    in_txn = 0;
                }
            }
            ks_plan_free(plan);
            continue;
        }
        if (rc == KS_OK && store) {
            rc = ks_store_in_txn(store) ? KS_OK : ks_store_begin(store, err);
            if (rc == KS_OK)
                rc = store_vm(store, &req, plan, err);
            /* One transaction per placement (kintsugid without concurrency):
             * the index learns the VM only after its commit.  Larger batches
             * are the loader's mode: the index is updated before the batch
             * commits. */
            if (rc == KS_OK && ++in_txn >= store_batch) {
                rc = commit(r, store, fleet, NULL, err);
                in_txn = 0;
            }
        }
        if (rc == KS_OK)
            rc = ks_fleet_vm_add(fleet, &req, plan, err);
        if (rc == KS_OK) {
            uint64_t total = ks_fleetsim_now_ns() - t0;
            r->placed[ev->vm] = 1;
            r->placed_ok++;
            r->placed_vcpus += plan->n_vcpus;
            r->place_ns += total;
            if (r->record_latency && !ks_fleetsim_samples_push(&r->place_lat, total))
                rc = ks_err_set(err, KS_ENOMEM, "out of memory");
        }
        ks_plan_free(plan);
    }
    if (rc == KS_OK && store && ks_store_in_txn(store))
        rc = commit(r, store, fleet, gp, err);
    if (rc != KS_OK && store)
        ks_store_rollback(store, NULL);
    free(g.t0);
    free(g.departed);
    return rc;
}

typedef struct check_all_ctx {
    const ks_fleet *fleet;
    uint64_t n_vms, n_bad;
    char *first;
} check_all_ctx;

static bool check_one(void *ctx, const ks_plan *plan)
{
    check_all_ctx *c = ctx;
    char msg[KS_TEXT_MAX];
    uint32_t bad = ks_fleetsim_check_plan(c->fleet, plan, msg);
    if (bad && c->n_bad == 0 && c->first)
        snprintf(c->first, KS_TEXT_MAX, "%s", msg);
    c->n_bad += bad;
    c->n_vms++;
    return true;
}

uint64_t ks_fleetsim_check_all(const ks_fleet *fleet, uint64_t *out_vms, char first[KS_TEXT_MAX])
{
    check_all_ctx c = {.fleet = fleet, .first = first};
    if (first)
        first[0] = '\0';
    ks_fleet_vms_foreach(fleet, check_one, &c);
    if (out_vms)
        *out_vms = c.n_vms;
    return c.n_bad;
}
