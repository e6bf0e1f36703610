/*
 * ks_api_group.c - group commit of VM creates and deletes (see the comment
 * above ks_api_unit in ks_api_int.h for the rules).
 *
 * Why: with one transaction per request, kintsugid spent most of a placement
 * in SQLite's COMMIT (a WAL append of every page the request touched), while
 * the requests queued behind the fleet lock.  Units that arrive while a commit
 * runs now share the next one.
 */
#include <string.h>

#include "ks_api_util.h"
#include "ks_log.h"

/* Bounds on one group: with clients that keep arriving (not a closed loop),
 * "no announced writer left" might never come, and a group would wait and
 * grow without end. */
#define GROUP_MAX_UNITS 256
#define GROUP_MAX_WAIT_US 5000

static bool grouping(const ks_api *api)
{
    return !api->replicated;
}

void ks_api__unit_announce(ks_api *api)
{
    atomic_fetch_add(&api->group_writers, 1);
}

/* A create's CPUs leave the index again: its unit did not commit. */
static void withdraw_reservation(ks_api *api, ks_api_unit *u)
{
    ks_err e = {0};
    if (u->reserved_vm && ks_fleet_vm_remove(api->fleet, u->reserved_vm, &e) != KS_OK)
        ks_log(KS_LOG_ERROR, "index: withdrawing vm='%s' that did not commit: %s",
               u->reserved_vm, e.msg);
    u->reserved_vm = NULL;
}

/* Marks every unit of the open group done with `rc` and wakes their threads. */
static void group_finish(ks_api *api, ks_code rc, const ks_err *err)
{
    size_t n = 0;
    for (ks_api_unit *u = api->group_head; u; u = u->next) {
        u->rc = rc;
        if (rc != KS_OK) {
            u->err = *err;
            withdraw_reservation(api, u);
        }
        u->done = true;
        n++;
    }
    if (rc == KS_OK) {
        api->groups_committed++;
        api->group_units_committed += n;
    }
    api->group_head = NULL;
    api->group_units = 0;
    pthread_cond_broadcast(&api->group_cv);
}

/* Commits the open transaction for every unit in it. */
static void group_commit(ks_api *api)
{
    if (!ks_store_in_txn(api->store)) {
        /* Nothing open: the units were already finished by a failure. */
        if (api->group_head) {
            ks_err e = {0};
            ks_err_set(&e, KS_EIO, "the transaction was lost");
            group_finish(api, KS_EIO, &e);
        }
        return;
    }
    ks_err err = {0};
    ks_code rc = ks_store_commit(api->store, &err);
    if (rc != KS_OK) {
        /* Whatever the store said, for the clients it is a failed write of
         * ours, not a conflict of theirs. */
        ks_log(KS_LOG_ERROR, "group commit of %zu units failed: %s", api->group_units, err.msg);
        ks_err e = {0};
        rc = ks_err_set(&e, KS_EIO, "the change could not be committed: %s", err.msg);
        err = e;
    }
    group_finish(api, rc, &err);
}

/* One announced writer fewer; the last one commits what the others left. */
static void writer_done(ks_api *api)
{
    if (atomic_fetch_sub(&api->group_writers, 1) == 1 && api->group_head)
        group_commit(api);
}

void ks_api__unit_withdraw(ks_api *api)
{
    writer_done(api);
}

void ks_api__group_flush(ks_api *api)
{
    if (api->group_head || (ks_store_in_txn(api->store) && grouping(api)))
        group_commit(api);
}

ks_code ks_api__begin(ks_api *api, ks_err *err)
{
    ks_api__group_flush(api);
    return ks_store_begin(api->store, err);
}

ks_code ks_api__unit_begin(ks_api *api, ks_err *err)
{
    ks_code rc = KS_OK;
    if (!ks_store_in_txn(api->store))
        rc = ks_store_begin(api->store, err);
    if (rc == KS_OK && grouping(api))
        rc = ks_store_savepoint(api->store, KS_STORE_SP_MARK, err);
    if (rc != KS_OK) {
        /* The transaction may hold other units: they fail with it. */
        if (ks_store_in_txn(api->store) && !api->group_head)
            ks_store_rollback(api->store, NULL);
        writer_done(api);
    }
    return rc;
}

/* A unit failed: undo its writes; when the transaction itself is lost, every
 * unit in it fails. */
static void unit_undo(ks_api *api, ks_code rc)
{
    ks_err e = {0};
    if (grouping(api) && ks_store_savepoint(api->store, KS_STORE_SP_UNDO, &e) == KS_OK) {
        /* A lone unit leaves no transaction open behind it. */
        if (!api->group_head)
            ks_store_rollback(api->store, NULL);
        return;
    }
    ks_store_rollback(api->store, NULL);
    if (api->group_head) {
        ks_err_set(&e, KS_EIO, "the transaction was lost with another request (%s)",
                   ks_code_str(rc));
        group_finish(api, KS_EIO, &e);
    }
}

ks_code ks_api__unit_end(ks_api *api, ks_api_unit *u, ks_code rc, ks_err *err)
{
    u->done = false;
    if (rc == KS_OK && grouping(api))
        rc = ks_store_savepoint(api->store, KS_STORE_SP_KEEP, err);
    if (rc != KS_OK) {
        withdraw_reservation(api, u);
        unit_undo(api, rc);
        writer_done(api);
        return rc;
    }
    if (!grouping(api)) {
        rc = ks_store_commit(api->store, err);
        if (rc != KS_OK)
            withdraw_reservation(api, u);
        writer_done(api);
        return rc;
    }
    u->next = api->group_head;
    api->group_head = u;
    if (api->group_units++ == 0)
        api->group_opened_us = ks_api_mono_us();
    if (api->group_units >= GROUP_MAX_UNITS ||
        ks_api_mono_us() - api->group_opened_us >= GROUP_MAX_WAIT_US) {
        group_commit(api);
        atomic_fetch_sub(&api->group_writers, 1);
    } else {
        writer_done(api);
    }
    while (!u->done)
        pthread_cond_wait(&api->group_cv, &api->lock);
    if (u->rc != KS_OK)
        *err = u->err;
    return u->rc;
}
