/*
 * ks_sched_place.c - placement decisions, re-planning, plan building and the
 * capacity model, over the index of ks_sched.c.
 *
 * A decision never changes the index (the caller commits to the store first).
 * It only touches the fleet's scratch area: class-evaluation caches stamped per
 * request, reusable buffers, and the recent-shapes ring.
 *
 * Decision, in order:
 *  1. Validate; derive `needed` (features every chosen CPU must have usable):
 *     the request's required set, or for a pool VM the pool-visible set
 *     (cached pool baseline - forbidden - bans), which must contain `required`.
 *  2. Candidate hosts: the pinned host; or the pool's members (prefiltered
 *     from the per-host summaries; a host the summary cannot answer for is
 *     read, prefetched); or, when the
 *     eligible classes' host lists are short, their union; otherwise a walk of
 *     the free-count buckets (pack: from `need` up; spread: from the top
 *     down) in batches of BATCH hosts.
 *  3. Per candidate, a prefilter on per-class free counts gives a least-
 *     capable-fit estimate (sum of |usable \ needed| over the cheapest CPUs);
 *     candidates are tried by (estimate, pack/spread order, id), popped from
 *     a heap, and the first whose exact CPU selection succeeds wins.
 *  4. Exact selection on one host: free eligible CPUs (min_mhz, SMT
 *     isolation) per kind class, classes by score, CPUs of a class in
 *     topological order; among equal scores whole L2 groups first (best fit);
 *     the best of "all in NUMA node n" for each n and (not strict) "any
 *     node", ties to a single node.
 * Cost of a successful common decision: O(classes touched + BATCH x classes per
 * host + host CPUs of the tried hosts).  Failures scan every candidate to
 * explain themselves.
 */
#include "ks_sched_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE KS_SCHED__NONE
#define BATCH 16
#define SMALL_CANDIDATES 64
#define ANY_NODE INT32_MIN

typedef ks_sched__host khost;
typedef ks_sched__cpu kcpu;
typedef ks_sched__vm kvm;

/* scratch buffer slots (slot 7 belongs to ks_sched.c) */
enum {
    SLOT_ENTS,
    SLOT_PLIST,
    SLOT_ELIST,
    SLOT_HCS,
    SLOT_CANDS,
    SLOT_PICKS,
    SLOT_TRY,
    SLOT_TRY2 = 8
};

typedef struct rctx {
    const ks_fleet *f;
    const ks_vm_request *req;
    ks_featset needed;
    ks_featset pool_visible;
    bool pool_mode;
    uint32_t need[2], n_any, total;
    uint32_t stamp;
} rctx;

typedef struct hent {
    uint32_t hc;
    uint32_t score;
    uint32_t n_free;
    uint8_t kind;
} hent;

typedef struct cand {
    uint32_t ci;
    uint32_t score;
    int32_t numa;
    int32_t l2;
} cand;

typedef struct hcand {
    khost *h;
    uint64_t est;
    uint32_t key;
    uint32_t rank; /* pool member rank by id (NONE outside a pool walk) */
} hcand;

/* ------------------------------------------------------------------ */
/* Class evaluation                                                    */
/* ------------------------------------------------------------------ */

static bool cls_ok(const rctx *rc, uint32_t c, uint32_t *score)
{
    ks_sched__scratch *sc = rc->f->sc;
    if (sc->cls_stamp[c] != rc->stamp) {
        const ks_featset *u = &rc->f->sets[rc->f->classes[c].set];
        sc->cls_ok[c] = ks_featset_subset(&rc->needed, u);
        unsigned extra = ks_featset_count_andnot(u, &rc->needed);
        sc->cls_score[c] = (uint16_t)(extra > UINT16_MAX ? UINT16_MAX : extra);
        sc->cls_stamp[c] = rc->stamp;
    }
    if (score)
        *score = sc->cls_score[c];
    return sc->cls_ok[c];
}

static uint32_t next_stamp(const ks_fleet *f)
{
    ks_sched__scratch *sc = f->sc;
    if (++sc->stamp == 0) {
        memset(sc->cls_stamp, 0, sc->cls_cap * sizeof(uint32_t));
        memset(sc->host_stamp, 0, sc->host_cap * sizeof(uint32_t));
        sc->stamp = 1;
    }
    return sc->stamp;
}

/* ------------------------------------------------------------------ */
/* Prefilter and estimate                                              */
/* ------------------------------------------------------------------ */

static void sort_ents(hent *e, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        hent t = e[i];
        uint32_t j = i;
        while (j > 0 && e[j - 1].score > t.score) {
            e[j] = e[j - 1];
            j--;
        }
        e[j] = t;
    }
}

/* Eligible classes of h with free CPUs, sorted by score; NULL on OOM. */
static hent *host_ents(const rctx *rc, const khost *h, uint32_t *n_out, uint32_t avail[2])
{
    hent *e = ks_sched__scratch_buf(rc->f, SLOT_ENTS, (h->n_classes + 1) * sizeof(hent));
    uint32_t n = 0;
    avail[0] = avail[1] = 0;
    if (!e)
        return NULL;
    for (uint32_t i = 0; i < h->n_classes; i++) {
        const ks_sched__hclass *hc = &h->classes[i];
        uint32_t score;
        if (hc->n_free == 0 || hc->max_mhz < rc->req->min_mhz || !cls_ok(rc, hc->cls, &score))
            continue;
        uint8_t k = rc->f->classes[hc->cls].kind;
        if (rc->need[k] == 0 && rc->n_any == 0)
            continue;
        e[n].hc = i;
        e[n].score = score;
        e[n].n_free = hc->n_free;
        e[n].kind = k;
        avail[k] += hc->n_free;
        n++;
    }
    sort_ents(e, n);
    *n_out = n;
    return e;
}

static bool counts_fit(const rctx *rc, const uint32_t avail[2])
{
    return avail[0] >= rc->need[0] && avail[1] >= rc->need[1] && avail[0] + avail[1] >= rc->total;
}

/* true when h may fit the request by its counts; *est = least-capable-fit estimate. */
static bool host_prefilter(const rctx *rc, const khost *h, uint64_t *est)
{
    if (!h->schedulable || ks_sched__host_has_aa(h, rc->req->anti_affinity_group))
        return false;
    if (rc->req->smt == KS_SMT_ISOLATE) {
        if (!counts_fit(rc, h->iso_free_kind))
            return false;
    } else {
        uint32_t open_[2] = {h->free_kind[0] - h->blocked_kind[0],
                             h->free_kind[1] - h->blocked_kind[1]};
        if (!counts_fit(rc, open_))
            return false;
    }
    uint32_t n, avail[2];
    hent *e = host_ents(rc, h, &n, avail);
    if (!e || !counts_fit(rc, avail))
        return false;
    uint64_t s = 0;
    uint32_t rem[2] = {rc->need[0], rc->need[1]}, any = rc->n_any;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t left = e[i].n_free;
        uint32_t t = rem[e[i].kind] < left ? rem[e[i].kind] : left;
        rem[e[i].kind] -= t;
        left -= t;
        s += (uint64_t)t * e[i].score;
        e[i].n_free = left;
    }
    for (uint32_t i = 0; i < n && any; i++) {
        uint32_t t = any < e[i].n_free ? any : e[i].n_free;
        any -= t;
        s += (uint64_t)t * e[i].score;
    }
    *est = s;
    return true;
}

/*
 * host_prefilter from a host's summary alone (same answer, same estimate);
 * false with *exact = false when the summary cannot answer (the caller then
 * asks host_prefilter).
 */
static bool sum_prefilter(const rctx *rc, const ks_sched__hsum *s, uint64_t *est, bool *exact)
{
    *exact = s->exact && !(s->has_aa && rc->req->anti_affinity_group[0]);
    if (!*exact || !s->schedulable)
        return false;
    uint32_t fk[2] = {s->free_kind[0], s->free_kind[1]};
    if (rc->req->smt == KS_SMT_ISOLATE) {
        uint32_t iso[2] = {s->iso_free_kind[0], s->iso_free_kind[1]};
        if (!counts_fit(rc, iso))
            return false;
    } else {
        uint32_t open_[2] = {fk[0] - s->blocked_kind[0], fk[1] - s->blocked_kind[1]};
        if (!counts_fit(rc, open_))
            return false;
    }
    hent e[KS_SCHED__SUM_CLASSES];
    uint32_t n = 0, avail[2] = {0, 0};
    for (uint32_t i = 0; i < s->n_classes; i++) {
        uint32_t score;
        if (s->c[i].n_free == 0 || s->c[i].max_mhz < rc->req->min_mhz ||
            !cls_ok(rc, s->c[i].cls, &score))
            continue;
        uint8_t k = rc->f->classes[s->c[i].cls].kind;
        if (rc->need[k] == 0 && rc->n_any == 0)
            continue;
        e[n].hc = i;
        e[n].score = score;
        e[n].n_free = s->c[i].n_free;
        e[n].kind = k;
        avail[k] += s->c[i].n_free;
        n++;
    }
    if (!counts_fit(rc, avail))
        return false;
    sort_ents(e, n);
    uint64_t sc = 0;
    uint32_t rem[2] = {rc->need[0], rc->need[1]}, any = rc->n_any;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t left = e[i].n_free;
        uint32_t t = rem[e[i].kind] < left ? rem[e[i].kind] : left;
        rem[e[i].kind] -= t;
        left -= t;
        sc += (uint64_t)t * e[i].score;
        e[i].n_free = left;
    }
    for (uint32_t i = 0; i < n && any; i++) {
        uint32_t t = any < e[i].n_free ? any : e[i].n_free;
        any -= t;
        sc += (uint64_t)t * e[i].score;
    }
    *est = sc;
    return true;
}

/* ------------------------------------------------------------------ */
/* Exact selection on one host                                         */
/* ------------------------------------------------------------------ */

/* Whether a free CPU may be given to a VM with smt mode `smt` (`self` = the VM
 * itself when re-planning, whose own CPUs never block it). */
static bool smt_allows(const khost *h, uint32_t ci, uint8_t smt, const kvm *self)
{
    const kcpu *c = &h->cpus[ci];
    if (smt == KS_SMT_ISOLATE) {
        for (uint32_t s = c->sib_next; s != ci; s = h->cpus[s].sib_next)
            if (h->cpus[s].vm && h->cpus[s].vm != self)
                return false;
        return true;
    }
    uint16_t own = 0;
    if (self && self->smt == KS_SMT_ISOLATE)
        for (uint32_t s = c->sib_next; s != ci; s = h->cpus[s].sib_next)
            own += h->cpus[s].vm == self;
    return c->iso_block == own;
}

static bool cand_ok(const cand *c, const uint8_t *used, size_t i, int32_t node)
{
    return !used[i] && (node == ANY_NODE || c->numa == node);
}

/* Eligible entries of the L2 segment starting at i (entries up to *end). */
static uint32_t segment(const cand *list, uint32_t i, uint32_t b, const uint8_t *used, int32_t node,
                        uint32_t *end)
{
    uint32_t j = i, m = 0;
    while (j < b && list[j].l2 == list[i].l2) {
        m += cand_ok(&list[j], used, j, node);
        j++;
    }
    *end = j;
    return m;
}

static void take_range(const cand *list, uint32_t i, uint32_t j, uint8_t *used, int32_t node,
                       uint32_t k, uint32_t *out, uint32_t *got, uint64_t *score)
{
    for (; i < j && k; i++) {
        if (!cand_ok(&list[i], used, i, node))
            continue;
        used[i] = 1;
        out[(*got)++] = list[i].ci;
        *score += list[i].score;
        k--;
    }
}

/*
 * Takes k entries of `list` (sorted by score, then topological order) in
 * `node` (or ANY_NODE), marking them in `used`; returns how many it got.
 * Least capable fit first: a cheaper score is always taken before a dearer
 * one.  Among entries of equal score, whole L2 groups (clusters, sibling
 * threads) are preferred: the smallest group that holds what is still
 * needed, else the largest groups first.
 */
static uint32_t take(const cand *list, uint32_t n, uint8_t *used, int32_t node, uint32_t k,
                     uint32_t *out, uint64_t *score)
{
    uint32_t got = 0;
    for (uint32_t a = 0; a < n && got < k;) {
        uint32_t b = a, m = 0;
        while (b < n && list[b].score == list[a].score) {
            m += cand_ok(&list[b], used, b, node);
            b++;
        }
        if (m <= k - got) {
            take_range(list, a, b, used, node, k - got, out, &got, score);
            a = b;
            continue;
        }
        while (got < k) {
            uint32_t r = k - got, fit = 0, fit_sz = UINT32_MAX, big = 0, big_sz = 0;
            for (uint32_t i = a, end; i < b; i = end) {
                uint32_t sz = segment(list, i, b, used, node, &end);
                if (sz >= r && sz < fit_sz) {
                    fit = i;
                    fit_sz = sz;
                }
                if (sz > big_sz) {
                    big = i;
                    big_sz = sz;
                }
            }
            if (big_sz == 0)
                break; /* impossible: m > r eligible entries remain */
            uint32_t from = fit_sz != UINT32_MAX ? fit : big, end;
            segment(list, from, b, used, node, &end);
            take_range(list, from, end, used, node, r, out, &got, score);
        }
        a = b;
    }
    return got;
}

/* One option: every vCPU in `node` (or ANY_NODE). */
static bool try_node(const rctx *rc, const cand *pl, uint32_t np, const cand *el, uint32_t ne,
                     int32_t node, uint32_t *picks, uint64_t *score)
{
    uint8_t *up = ks_sched__scratch_buf(rc->f, SLOT_TRY, (size_t)np + ne + 2);
    if (!up)
        return false;
    uint8_t *ue = up + np + 1;
    memset(up, 0, (size_t)np + ne + 2);
    uint64_t s = 0;
    uint32_t n = 0;
    n += take(pl, np, up, node, rc->need[0], picks + n, &s);
    if (n != rc->need[0])
        return false;
    uint32_t m = take(el, ne, ue, node, rc->need[1], picks + n, &s);
    if (m != rc->need[1])
        return false;
    n += m;
    if (rc->n_any) {
        /* one kind if possible: the cheaper of all-performance and
         * all-efficiency, performance on ties; else mixed by score */
        uint8_t *cp = ks_sched__scratch_buf(rc->f, SLOT_TRY2, (size_t)np + ne + 2);
        if (!cp)
            return false;
        uint32_t *tmp = picks + n;
        uint64_t sp = 0, se = 0;
        memcpy(cp, up, (size_t)np + ne + 2);
        uint32_t gp = take(pl, np, cp, node, rc->n_any, tmp, &sp);
        memcpy(cp, up, (size_t)np + ne + 2);
        uint32_t ge = take(el, ne, cp + np + 1, node, rc->n_any, tmp, &se);
        if (gp == rc->n_any && (ge != rc->n_any || sp <= se)) {
            take(pl, np, up, node, rc->n_any, tmp, &s);
        } else if (ge == rc->n_any) {
            take(el, ne, ue, node, rc->n_any, tmp, &s);
        } else {
            /* mixed: merge the two lists by score */
            uint32_t got = 0, i = 0, j = 0;
            while (got < rc->n_any) {
                while (i < np && (up[i] || (node != ANY_NODE && pl[i].numa != node)))
                    i++;
                while (j < ne && (ue[j] || (node != ANY_NODE && el[j].numa != node)))
                    j++;
                if (i >= np && j >= ne)
                    break;
                if (j >= ne || (i < np && pl[i].score <= el[j].score)) {
                    up[i] = 1;
                    tmp[got++] = pl[i].ci;
                    s += pl[i].score;
                } else {
                    ue[j] = 1;
                    tmp[got++] = el[j].ci;
                    s += el[j].score;
                }
            }
            if (got != rc->n_any)
                return false;
        }
        n += rc->n_any;
    }
    *score = s;
    return true;
}

/* Failure stages of select, for explanations. */
typedef enum sel_fail { SEL_OK, SEL_NOMEM, SEL_SMT, SEL_NUMA } sel_fail;

/*
 * Exact CPU choice on h for rc: fills out[0..total) with CPU indices and
 * returns SEL_OK, or the stage that failed.
 */
static sel_fail host_select(const rctx *rc, const khost *h, uint32_t *out, uint64_t *score_out)
{
    const ks_fleet *f = rc->f;
    uint32_t n_e, avail[2];
    hent *e = host_ents(rc, h, &n_e, avail);
    if (!e)
        return SEL_NOMEM;
    cand *pl = ks_sched__scratch_buf(f, SLOT_PLIST, (size_t)(h->n_cpus + 1) * sizeof(cand));
    cand *el = ks_sched__scratch_buf(f, SLOT_ELIST, (size_t)(h->n_cpus + 1) * sizeof(cand));
    uint32_t *best =
        ks_sched__scratch_buf(f, SLOT_PICKS, (size_t)(rc->total * 2 + 2) * sizeof(uint32_t));
    int32_t *nodes =
        ks_sched__scratch_buf(f, SLOT_HCS, (size_t)(h->n_numa + h->n_cpus + 2) * sizeof(int32_t));
    if (!pl || !el || !best || !nodes)
        return SEL_NOMEM;
    uint32_t np = 0, ne = 0, n_nodes = 0;
    for (uint32_t i = 0; i < n_e; i++) {
        const ks_sched__hclass *hc = &h->classes[e[i].hc];
        for (uint32_t j = 0; j < hc->n_cpus; j++) {
            uint32_t ci = hc->cpus[j];
            const kcpu *c = &h->cpus[ci];
            if (c->vm || c->max_mhz < rc->req->min_mhz || !smt_allows(h, ci, rc->req->smt, NULL))
                continue;
            cand cd = {ci, e[i].score, c->numa, c->l2};
            if (e[i].kind == KS_KIND_PERFORMANCE)
                pl[np++] = cd;
            else
                el[ne++] = cd;
            bool seen = false;
            for (uint32_t k = 0; k < n_nodes && !seen; k++)
                seen = nodes[k] == c->numa;
            if (!seen)
                nodes[n_nodes++] = c->numa;
        }
    }
    uint32_t av2[2] = {np, ne};
    if (!counts_fit(rc, av2))
        return SEL_SMT;
    uint32_t *cur = best + rc->total + 1;
    bool found = false;
    uint64_t best_score = 0;
    for (uint32_t k = 0; k <= n_nodes; k++) {
        int32_t node;
        if (k == n_nodes) {
            if (rc->req->numa == KS_NUMA_STRICT || n_nodes <= 1)
                break;
            node = ANY_NODE;
        } else {
            node = nodes[k];
        }
        uint64_t s;
        if (!try_node(rc, pl, np, el, ne, node, cur, &s))
            continue;
        /* ties go to a single node (tried first) */
        if (!found || s < best_score) {
            memcpy(best, cur, rc->total * sizeof(uint32_t));
            best_score = s;
            found = true;
        }
    }
    if (!found)
        return SEL_NUMA;
    memcpy(out, best, rc->total * sizeof(uint32_t));
    *score_out = best_score;
    return SEL_OK;
}

/* ------------------------------------------------------------------ */
/* Plan building                                                       */
/* ------------------------------------------------------------------ */

static int pick_cmp(const void *a, const void *b, void *ctx)
{
    const khost *h = ctx;
    uint32_t x = h->cpus[*(const uint32_t *)a].topo_pos;
    uint32_t y = h->cpus[*(const uint32_t *)b].topo_pos;
    return x < y ? -1 : x > y;
}

static uint32_t dense_index(int32_t *vals, uint32_t *n, int32_t v)
{
    for (uint32_t i = 0; i < *n; i++)
        if (vals[i] == v)
            return i;
    vals[*n] = v;
    return (*n)++;
}

static ks_code copy_events(char (**out)[KS_NAME_MAX], uint32_t *n_out, char (*src)[KS_NAME_MAX],
                           uint32_t n, ks_err *err)
{
    *n_out = 0;
    *out = NULL;
    if (!n)
        return KS_OK;
    *out = calloc(n, KS_NAME_MAX);
    if (!*out)
        return ks_err_set(err, KS_ENOMEM, "out of memory copying pmu events");
    memcpy(*out, src, (size_t)n * KS_NAME_MAX);
    *n_out = n;
    return KS_OK;
}

/* Builds the generation-1 plan for picks (CPU indices on h; reordered here). */
static ks_code build_plan(ks_plan **out, const rctx *rc, const khost *h, uint32_t *picks,
                          ks_err *err)
{
    const ks_fleet *f = rc->f;
    const ks_vm_request *req = rc->req;
    uint32_t n = rc->total;
    ks_plan *p = NULL;
    ks_code code = ks_plan_new(&p, n, err);
    int32_t *tmp = NULL;
    if (code != KS_OK)
        return code;
    qsort_r(picks, n, sizeof(uint32_t), pick_cmp, (void *)h);
    tmp = calloc((size_t)n * 6 + 6, sizeof(int32_t));
    if (!tmp) {
        code = ks_err_set(err, KS_ENOMEM, "out of memory building a plan");
        goto done;
    }
    int32_t *nodes = tmp, *l2s = tmp + n + 1, *l3s = tmp + 2 * n + 2;
    int32_t *cl_sock = tmp + 3 * n + 3;  /* l2 group -> socket */
    int32_t *cl_cores = tmp + 4 * n + 4; /* per dense l2 group: cores used */
    int32_t *sock_cl = tmp + 5 * n + 5;  /* per socket: clusters used */
    uint32_t n_nodes = 0, n_l2 = 0, n_l3 = 0;

    snprintf(p->vm, sizeof(p->vm), "%s", req->name);
    snprintf(p->host, sizeof(p->host), "%s", h->id);
    snprintf(p->cpu_model, sizeof(p->cpu_model), "host");
    p->generation = 1;
    p->memory_mib = req->memory_mib;

    bool smt_pairs = false;
    for (uint32_t i = 1; i < n; i++) {
        const kcpu *a = &h->cpus[picks[i - 1]], *b = &h->cpus[picks[i]];
        if (a->core >= 0 && a->package == b->package && a->core == b->core)
            smt_pairs = true;
    }
    uint32_t threads = smt_pairs ? 2 : 1;
    ks_featset inter, natives;
    ks_featset_clear(&natives);
    for (uint32_t i = 0; i < n; i++) {
        const kcpu *c = &h->cpus[picks[i]];
        ks_plan_vcpu *v = &p->vcpus[i];
        uint32_t sock = dense_index(nodes, &n_nodes, c->numa);
        uint32_t before = n_l2;
        uint32_t l2 = dense_index(l2s, &n_l2, c->l2);
        if (n_l2 != before) {
            cl_sock[l2] = (int32_t)sock;
            cl_cores[l2] = 0;
        }
        bool same_core = false;
        if (i > 0 && threads == 2) {
            const kcpu *a = &h->cpus[picks[i - 1]];
            same_core = a->core >= 0 && a->package == c->package && a->core == c->core &&
                        p->vcpus[i - 1].thread == 0 && (int32_t)l2 == p->vcpus[i - 1].l2_group;
        }
        v->id = (int32_t)i;
        v->host_cpu = c->id;
        v->kind_class = c->kind_class;
        snprintf(v->kind_name, sizeof(v->kind_name), "%s",
                 c->kind >= 0 ? h->kinds[c->kind].name
                              : ks_kind_class_to_str((ks_kind_class)c->kind_class));
        v->max_mhz = c->max_mhz;
        v->socket = (int32_t)sock;
        v->die = 0;
        v->l2_group = (int32_t)l2;
        v->l3_group = (int32_t)dense_index(l3s, &n_l3, c->l3);
        v->numa_node = (int32_t)sock;
        if (same_core) {
            v->core = p->vcpus[i - 1].core;
            v->thread = 1;
        } else {
            v->core = cl_cores[l2]++;
            v->thread = 0;
        }
        if (i == 0)
            inter = f->sets[c->usable];
        else
            ks_featset_and(&inter, &inter, &f->sets[c->usable]);
        ks_featset_or(&natives, &natives, &f->sets[c->native]);
    }
    /* guest cluster index within its socket, in order of appearance */
    for (uint32_t s = 0; s < n_nodes; s++)
        sock_cl[s] = 0;
    int32_t *cl_index = l2s; /* reuse: dense l2 -> cluster index in socket */
    for (uint32_t g = 0; g < n_l2; g++)
        cl_index[g] = sock_cl[cl_sock[g]]++;
    uint32_t max_cl = 0, max_cores = 0;
    for (uint32_t s = 0; s < n_nodes; s++)
        if ((uint32_t)sock_cl[s] > max_cl)
            max_cl = (uint32_t)sock_cl[s];
    for (uint32_t g = 0; g < n_l2; g++)
        if ((uint32_t)cl_cores[g] > max_cores)
            max_cores = (uint32_t)cl_cores[g];
    for (uint32_t i = 0; i < n; i++)
        p->vcpus[i].cluster = cl_index[p->vcpus[i].l2_group];
    p->topology.sockets = n_nodes;
    p->topology.dies = 1;
    p->topology.clusters = max_cl;
    p->topology.cores = max_cores;
    p->topology.threads = threads;

    if (rc->pool_mode) {
        p->visible = rc->pool_visible;
    } else {
        ks_featset_or(&p->visible, &req->required, &inter);
        ks_featset_andnot(&p->visible, &p->visible, &req->forbidden);
        ks_featset_andnot(&p->visible, &p->visible, &f->bans);
    }
    ks_featset_andnot(&p->disable, &natives, &p->visible);

    p->pmu.enabled = req->pmu.enabled;
    if (req->pmu.enabled) {
        p->pmu.version = h->pmu_version;
        p->pmu.gp_counters = h->pmu_gp;
        p->pmu.fixed_counters = h->pmu_fixed;
        code = copy_events(&p->pmu.allow_events, &p->pmu.n_allow, req->pmu.allow_events,
                           req->pmu.n_allow, err);
        if (code == KS_OK)
            code = copy_events(&p->pmu.deny_events, &p->pmu.n_deny, req->pmu.deny_events,
                               req->pmu.n_deny, err);
        if (code != KS_OK)
            goto done;
    }

    p->numa = calloc(n_nodes, sizeof(ks_plan_numa));
    if (!p->numa) {
        code = ks_err_set(err, KS_ENOMEM, "out of memory building a plan");
        goto done;
    }
    p->n_numa = n_nodes;
    uint64_t mem_left = req->memory_mib;
    for (uint32_t s = 0; s < n_nodes; s++) {
        ks_plan_numa *pn = &p->numa[s];
        pn->node = (int32_t)s;
        pn->host_node = nodes[s];
        for (uint32_t i = 0; i < n; i++)
            pn->n_vcpus += p->vcpus[i].socket == (int32_t)s;
        pn->vcpus = calloc(pn->n_vcpus ? pn->n_vcpus : 1, sizeof(int32_t));
        if (!pn->vcpus) {
            code = ks_err_set(err, KS_ENOMEM, "out of memory building a plan");
            goto done;
        }
        uint32_t k = 0;
        for (uint32_t i = 0; i < n; i++)
            if (p->vcpus[i].socket == (int32_t)s)
                pn->vcpus[k++] = (int32_t)i;
        uint64_t share = s + 1 == n_nodes ? mem_left : req->memory_mib * pn->n_vcpus / n;
        pn->memory_mib = share;
        mem_left -= share;
    }
    *out = p;
    p = NULL;
done:
    free(tmp);
    ks_plan_free(p);
    return code;
}

/* ------------------------------------------------------------------ */
/* Explanations                                                        */
/* ------------------------------------------------------------------ */

static ks_code explain_host(const rctx *rc, const khost *h, ks_sched_explain *why)
{
    const ks_vm_request *req = rc->req;
    char reason[KS_TEXT_MAX];
    if (!h->schedulable)
        return ks_sched__explain_add(why, "host draining", 1);
    if (ks_sched__host_has_aa(h, req->anti_affinity_group)) {
        snprintf(reason, sizeof(reason), "anti-affinity group '%s'", req->anti_affinity_group);
        return ks_sched__explain_add(why, reason, 1);
    }
    if (h->free_kind[0] < rc->need[0])
        return ks_sched__explain_add(why, "not enough free performance cpus", 1);
    if (h->free_kind[1] < rc->need[1])
        return ks_sched__explain_add(why, "not enough free efficiency cpus", 1);
    if (h->free_kind[0] + h->free_kind[1] < rc->total)
        return ks_sched__explain_add(why, "not enough free cpus", 1);
    /* features: eligible classes, ignoring frequency */
    uint32_t feat[2] = {0, 0}, mhz[2] = {0, 0};
    for (uint32_t i = 0; i < h->n_classes; i++) {
        const ks_sched__hclass *hc = &h->classes[i];
        if (!cls_ok(rc, hc->cls, NULL))
            continue;
        uint8_t k = rc->f->classes[hc->cls].kind;
        feat[k] += hc->n_free;
        /* per CPU only when the class straddles min_mhz: explaining a pool's
         * refusal stays O(members x classes), not O(members x CPUs) */
        if (hc->min_mhz >= req->min_mhz) {
            mhz[k] += hc->n_free;
            continue;
        }
        if (hc->max_mhz < req->min_mhz)
            continue;
        for (uint32_t j = 0; j < hc->n_cpus; j++) {
            const kcpu *c = &h->cpus[hc->cpus[j]];
            mhz[k] += !c->vm && c->max_mhz >= req->min_mhz;
        }
    }
    if (!counts_fit(rc, feat)) {
        /* name the first needed feature too few free CPUs have */
        for (int b = ks_featset_next(&rc->needed, 0); b >= 0;
             b = ks_featset_next(&rc->needed, (unsigned)b + 1)) {
            uint32_t have = 0;
            for (uint32_t i = 0; i < h->n_classes; i++) {
                const ks_sched__hclass *hc = &h->classes[i];
                if (ks_featset_test(&rc->f->sets[rc->f->classes[hc->cls].set], (unsigned)b))
                    have += hc->n_free;
            }
            if (have < rc->total) {
                snprintf(reason, sizeof(reason), "%s %s",
                         have ? "too few free cpus with" : "no free cpu with",
                         ks_feature_name((unsigned)b));
                return ks_sched__explain_add(why, reason, 1);
            }
        }
        return ks_sched__explain_add(why, "too few free cpus with the required features", 1);
    }
    if (!counts_fit(rc, mhz)) {
        snprintf(reason, sizeof(reason), "no free cpu at min_mhz %u", req->min_mhz);
        return ks_sched__explain_add(why, reason, 1);
    }
    uint32_t *tmp = malloc((size_t)rc->total * sizeof(uint32_t));
    uint64_t s;
    if (!tmp)
        return KS_ENOMEM;
    sel_fail sf = host_select(rc, h, tmp, &s);
    free(tmp);
    switch (sf) {
    case SEL_SMT:
        return ks_sched__explain_add(why,
                                     req->smt == KS_SMT_ISOLATE
                                         ? "smt isolate: sibling threads busy"
                                         : "free cpus blocked by smt-isolated vms",
                                     1);
    case SEL_NUMA:
        return ks_sched__explain_add(why, "numa strict: no single node fits", 1);
    case SEL_NOMEM:
        return KS_ENOMEM;
    case SEL_OK:
        break;
    }
    return ks_sched__explain_add(why, "fits now", 1);
}

/* ------------------------------------------------------------------ */
/* Placement                                                           */
/* ------------------------------------------------------------------ */

void ks_sched__record_shape(const ks_fleet *f, const ks_sched__shape *s)
{
    ks_sched__scratch *sc = f->sc;
    if (!sc->ring_window)
        return;
    if (!sc->ring) {
        sc->ring = calloc(sc->ring_window, sizeof(*sc->ring));
        if (!sc->ring)
            return; /* the window is advisory: run without it */
        sc->mem += (size_t)sc->ring_window * sizeof(*sc->ring);
    }
    sc->ring[sc->ring_head] = *s;
    sc->ring_head = (sc->ring_head + 1) % sc->ring_window;
    if (sc->ring_n < sc->ring_window)
        sc->ring_n++;
}

void ks_fleet_set_shape_window(ks_fleet *f, uint32_t n)
{
    ks_sched__scratch *sc = f->sc;
    if (sc->ring)
        sc->mem -= (size_t)sc->ring_window * sizeof(*sc->ring);
    free(sc->ring);
    sc->ring = NULL;
    sc->ring_n = sc->ring_head = 0;
    sc->ring_window = n > 1000000 ? 1000000 : n;
}

static int hcand_cmp(const void *a, const void *b)
{
    const hcand *x = a, *y = b;
    if (x->est != y->est)
        return x->est < y->est ? -1 : 1;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->rank != NONE && y->rank != NONE) /* same order as the ids' */
        return x->rank < y->rank ? -1 : x->rank > y->rank;
    return strcmp(x->h->id, y->h->id);
}

static uint32_t order_key(const rctx *rc, const khost *h)
{
    uint32_t fr = h->free_kind[0] + h->free_kind[1];
    return rc->req->placement == KS_PLACE_SPREAD ? UINT32_MAX - fr : fr;
}

/* Restores the min-heap (by hcand_cmp) below position i of cands[0..n). */
static void heap_down(hcand *cands, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, m = i;
        if (l < n && hcand_cmp(&cands[l], &cands[m]) < 0)
            m = l;
        if (l + 1 < n && hcand_cmp(&cands[l + 1], &cands[m]) < 0)
            m = l + 1;
        if (m == i)
            return;
        hcand t = cands[i];
        cands[i] = cands[m];
        cands[m] = t;
        i = m;
    }
}

/*
 * Tries candidates[0..n) (already prefiltered) in hcand_cmp order; true on
 * success.  The order is total (ids are unique), so popping a heap visits them
 * exactly as a full sort would, but the first host usually fits: O(n) to
 * build plus O(log n) per host tried instead of sorting a whole pool's members.
 */
static ks_code try_candidates(const rctx *rc, hcand *cands, uint32_t n, uint32_t *picks,
                              const khost **chosen)
{
    for (uint32_t i = n / 2; i-- > 0;)
        heap_down(cands, n, i);
    while (n) {
        uint64_t s;
        const khost *h = cands[0].h;
        sel_fail sf = host_select(rc, h, picks, &s);
        if (sf == SEL_NOMEM)
            return KS_ENOMEM;
        if (sf == SEL_OK) {
            *chosen = h;
            return KS_OK;
        }
        cands[0] = cands[--n];
        heap_down(cands, n, 0);
    }
    return KS_ENOCAPACITY;
}

/*
 * A pool request prefilters every member: at thousands of members the walk is
 * bound by memory latency (a host's hot fields, then its classes), so it asks
 * for member i + 16's host and member i + 8's classes ahead of use (reading
 * the classes pointer is a load: the host line must have arrived by then).
 */
static void prefetch_member(const ks_sched__pool *pool, uint32_t i)
{
#if defined(__GNUC__) || defined(__clang__)
    if (i + 16 < pool->n && pool->hosts[i + 16])
        __builtin_prefetch(pool->hosts[i + 16]);
    if (i + 8 < pool->n && pool->hosts[i + 8])
        __builtin_prefetch(pool->hosts[i + 8]->classes);
#else
    (void)pool;
    (void)i;
#endif
}

static hcand *cands_buf(const ks_fleet *f, uint32_t n)
{
    return ks_sched__scratch_buf(f, SLOT_CANDS, ((size_t)n + 1) * sizeof(hcand));
}

/* Searches the whole fleet (no pin, no pool). */
static ks_code search_fleet(const rctx *rc, uint32_t *picks, const khost **chosen)
{
    const ks_fleet *f = rc->f;
    ks_sched__scratch *sc = f->sc;
    uint64_t listed = 0;
    for (uint32_t c = 0; c < f->n_classes; c++) {
        const ks_sched__class *cl = &f->classes[c];
        if (cl->n_hosts && (rc->need[cl->kind] || rc->n_any) && cls_ok(rc, c, NULL))
            listed += cl->n_hosts;
    }
    if (listed == 0)
        return KS_ENOCAPACITY;
    /* walk the most selective bucket: a kind the request needs, the one with
     * fewer hosts when it needs both; all kinds only for `vcpus: N` alone */
    unsigned bk;
    uint32_t need_v;
    if (rc->need[0] && rc->need[1])
        bk = f->bucket_pop[0] <= f->bucket_pop[1] ? KS_KIND_PERFORMANCE : KS_KIND_EFFICIENCY;
    else if (rc->need[0] || rc->need[1])
        bk = rc->need[0] ? KS_KIND_PERFORMANCE : KS_KIND_EFFICIENCY;
    else
        bk = KS_SCHED__ALL;
    need_v = bk == KS_SCHED__ALL ? rc->total : rc->need[bk];
    if (need_v >= f->n_buckets)
        return KS_ENOCAPACITY;

    if (listed <= SMALL_CANDIDATES || listed * 4 <= f->bucket_pop[bk]) {
        hcand *cands = cands_buf(f, (uint32_t)listed);
        uint32_t n = 0;
        if (!cands)
            return KS_ENOMEM;
        for (uint32_t c = 0; c < f->n_classes; c++) {
            const ks_sched__class *cl = &f->classes[c];
            if (!cl->n_hosts || !(rc->need[cl->kind] || rc->n_any) || !cls_ok(rc, c, NULL))
                continue;
            for (uint32_t j = 0; j < cl->n_hosts; j++) {
                khost *h = cl->hosts[j].h;
                if (sc->host_stamp[h->index] == rc->stamp)
                    continue;
                sc->host_stamp[h->index] = rc->stamp;
                uint64_t est;
                if (!host_prefilter(rc, h, &est))
                    continue;
                cands[n].h = h;
                cands[n].est = est;
                cands[n].key = order_key(rc, h);
                cands[n].rank = NONE;
                n++;
            }
        }
        return try_candidates(rc, cands, n, picks, chosen);
    }

    hcand *cands = cands_buf(f, BATCH);
    if (!cands)
        return KS_ENOMEM;
    uint32_t n = 0;
    bool spread = rc->req->placement == KS_PLACE_SPREAD;
    for (uint32_t step = 0; step + need_v < f->n_buckets; step++) {
        uint32_t v = spread ? f->n_buckets - 1 - step : need_v + step;
        for (khost *h = f->buckets[bk][v]; h; h = h->bnext[bk]) {
            uint64_t est;
            if (!host_prefilter(rc, h, &est))
                continue;
            cands[n].h = h;
            cands[n].est = est;
            cands[n].key = order_key(rc, h);
            cands[n].rank = NONE;
            if (++n == BATCH) {
                ks_code code = try_candidates(rc, cands, n, picks, chosen);
                if (code != KS_ENOCAPACITY)
                    return code;
                n = 0;
            }
        }
    }
    return n ? try_candidates(rc, cands, n, picks, chosen) : KS_ENOCAPACITY;
}

static int explain_cmp(const void *a, const void *b)
{
    const ks_sched_explain_item *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->reason, y->reason);
}

ks_code ks_sched_place(ks_plan **out, const ks_fleet *f, const ks_vm_request *req,
                       ks_sched_explain *why, ks_err *err)
{
    ks_code code = KS_OK;
    uint32_t *picks = NULL;
    const ks_sched__pool *pool = NULL;
    const khost *pin = NULL, *chosen = NULL;
    char reason[KS_TEXT_MAX];
    rctx rc;

    if (why) {
        ks_sched_explain_destroy(why);
        ks_sched_explain_init(why);
    }
    if (!f || !req || !out)
        return ks_err_set(err, KS_EINVAL, "no fleet or request");
    memset(&rc, 0, sizeof(rc));
    rc.f = f;
    rc.req = req;
    rc.need[KS_KIND_PERFORMANCE] = req->n_performance;
    rc.need[KS_KIND_EFFICIENCY] = req->n_efficiency;
    rc.n_any = req->n_any;
    uint64_t total = (uint64_t)req->n_performance + req->n_efficiency + req->n_any;
    if (!ks_id_valid(req->name))
        return ks_err_set_field(err, KS_EINVAL, "name", "invalid vm name '%s'", req->name);
    if (total == 0 || total > KS_VM_MAX_VCPUS)
        return ks_err_set_field(err, KS_EINVAL, "vcpus", "%llu vcpus requested (1..%d)",
                                (unsigned long long)total, KS_VM_MAX_VCPUS);
    rc.total = (uint32_t)total;
    if (ks_featset_intersects(&req->required, &req->forbidden))
        return ks_err_set_field(err, KS_EINVAL, "forbidden_features",
                                "a feature is both required and forbidden");
    if (ks_sched__vm_find(f, req->name))
        return ks_err_set(err, KS_EEXIST, "vm '%s' already exists", req->name);
    if (req->host[0] && !(pin = ks_sched__host_find(f, req->host)))
        return ks_err_set_field(err, KS_ENOTFOUND, "host", "no host '%s'", req->host);
    if (req->pool[0] && !(pool = ks_sched__pool_find(f, req->pool)))
        return ks_err_set_field(err, KS_ENOTFOUND, "pool", "no pool '%s'", req->pool);

    rc.needed = req->required;
    if (pool) {
        ks_featset base;
        ks_sched__pool_baseline(f, pool, &base, NULL);
        ks_featset_andnot(&rc.pool_visible, &base, &req->forbidden);
        ks_featset_andnot(&rc.pool_visible, &rc.pool_visible, &f->bans);
        rc.pool_mode = true;
        rc.needed = rc.pool_visible;
    }
    rc.stamp = next_stamp(f);
    ks_sched__shape shape = {req->n_performance, req->n_efficiency, req->n_any, req->min_mhz,
                             rc.needed};
    if (!pool)
        ks_sched__record_shape(f, &shape);

    /* request-level impossibilities */
    if (ks_featset_intersects(&req->required, &f->bans)) {
        ks_featset b;
        ks_featset_and(&b, &req->required, &f->bans);
        snprintf(reason, sizeof(reason), "required feature '%s' is banned",
                 ks_feature_name((unsigned)ks_featset_next(&b, 0)));
        ks_sched__explain_add(why, reason, 1);
        return ks_err_set(err, KS_ENOCAPACITY, "no capacity for '%s': %s", req->name, reason);
    }
    if (pool && !ks_featset_subset(&req->required, &rc.pool_visible)) {
        ks_featset b;
        ks_featset_andnot(&b, &req->required, &rc.pool_visible);
        snprintf(reason, sizeof(reason), "pool '%s' baseline lacks '%s'", pool->name,
                 ks_feature_name((unsigned)ks_featset_next(&b, 0)));
        ks_sched__explain_add(why, reason, 1);
        return ks_err_set(err, KS_ENOCAPACITY, "no capacity for '%s': %s", req->name, reason);
    }
    if (pool)
        ks_sched__record_shape(f, &shape);

    picks = malloc((size_t)rc.total * sizeof(uint32_t));
    if (!picks)
        return ks_err_set(err, KS_ENOMEM, "out of memory placing '%s'", req->name);

    if (pin || pool) {
        uint32_t n_c = pin ? 1 : pool->n;
        hcand *cands = cands_buf(f, n_c);
        uint32_t n = 0;
        if (!cands) {
            code = KS_ENOMEM;
        } else {
            for (uint32_t i = 0; i < n_c; i++) {
                khost *h = pin ? (khost *)pin : pool->hosts[i];
                uint64_t est;
                if (!h || (pin && pool && !ks_sched__pool_has(pool, h->id)))
                    continue;
                if (!pin) {
                    /* the member's summary answers without reading the host */
                    const ks_sched__hsum *s = &f->hsum[pool->hix[i]];
                    bool exact;
                    if (sum_prefilter(&rc, s, &est, &exact)) {
                        uint32_t fr = (uint32_t)s->free_kind[0] + s->free_kind[1];
                        cands[n].h = h;
                        cands[n].est = est;
                        cands[n].key = req->placement == KS_PLACE_SPREAD ? UINT32_MAX - fr : fr;
                        cands[n].rank = pool->rank[i];
                        n++;
                        continue;
                    }
                    if (exact)
                        continue;
                    prefetch_member(pool, i);
                }
                if (!host_prefilter(&rc, h, &est))
                    continue;
                cands[n].h = h;
                cands[n].est = est;
                cands[n].key = order_key(&rc, h);
                cands[n].rank = pin ? NONE : pool->rank[i];
                n++;
            }
            code = try_candidates(&rc, cands, n, picks, &chosen);
        }
    } else {
        code = search_fleet(&rc, picks, &chosen);
    }
    if (code == KS_ENOMEM) {
        code = ks_err_set(err, KS_ENOMEM, "out of memory placing '%s'", req->name);
        goto done;
    }
    if (code == KS_OK) {
        code = build_plan(out, &rc, chosen, picks, err);
        goto done;
    }

    /* explain the failure over every host the request could have used */
    if (why) {
        if (pin) {
            if (pool && !ks_sched__pool_has(pool, pin->id)) {
                snprintf(reason, sizeof(reason), "host not in pool '%s'", pool->name);
                ks_sched__explain_add(why, reason, 1);
            } else {
                explain_host(&rc, pin, why);
            }
            why->hosts_considered = 1;
        } else if (pool) {
            for (uint32_t i = 0; i < pool->n; i++) {
                const khost *h = pool->hosts[i];
                if (h) {
                    explain_host(&rc, h, why);
                    why->hosts_considered++;
                }
            }
        } else {
            for (uint32_t i = 0; i < f->n_hosts; i++)
                explain_host(&rc, f->hosts[i], why);
            why->hosts_considered = f->n_hosts;
        }
        if (why->hosts_considered == 0)
            ks_sched__explain_add(why, "no hosts", 1);
        qsort(why->items, why->n, sizeof(why->items[0]), explain_cmp);
    }
    if (why && why->n)
        code = ks_err_set(err, KS_ENOCAPACITY, "no capacity for '%s' (%s: %llu host(s))", req->name,
                          why->items[0].reason, (unsigned long long)why->items[0].count);
    else
        code = ks_err_set(err, KS_ENOCAPACITY, "no capacity for '%s'", req->name);
done:
    free(picks);
    return code;
}

/* ------------------------------------------------------------------ */
/* Re-planning                                                         */
/* ------------------------------------------------------------------ */

ks_code ks_sched_replan(ks_plan **out, const ks_fleet *f, const char *name, ks_err *err)
{
    const kvm *vm = ks_sched__vm_find(f, name);
    if (!vm)
        return ks_err_set(err, KS_ENOTFOUND, "no vm '%s'", name);
    const khost *h = vm->host;
    const ks_plan *old = vm->plan;
    ks_plan *p = NULL;
    uint32_t *ix = NULL;
    uint8_t *taken = NULL;
    ks_code code = ks_plan_dup(&p, old, err);
    if (code != KS_OK)
        return code;
    ix = malloc((size_t)old->n_vcpus * sizeof(uint32_t));
    taken = calloc(h->n_cpus, 1);
    if (!ix || !taken) {
        code = ks_err_set(err, KS_ENOMEM, "out of memory re-planning '%s'", name);
        goto done;
    }
    p->generation = old->generation + 1;
    ks_featset_andnot(&p->visible, &old->visible, &f->bans);
    ks_featset_andnot(&p->visible, &p->visible, &vm->forbidden);

    uint32_t moved = 0;
    for (uint32_t i = 0; i < old->n_vcpus; i++) {
        ix[i] = vm->cpu_ix[i];
        const kcpu *c = &h->cpus[ix[i]];
        bool ok = ks_sched__cpu_usable(c) && ks_featset_subset(&p->visible, &f->sets[c->usable]);
        if (ok) {
            taken[ix[i]] = 1;
        } else {
            ix[i] = NONE;
            moved++;
        }
    }
    for (uint32_t i = 0; i < old->n_vcpus && moved; i++) {
        if (ix[i] != NONE)
            continue;
        const kcpu *oc = &h->cpus[vm->cpu_ix[i]];
        uint32_t best = NONE;
        uint64_t best_key = UINT64_MAX;
        for (uint32_t k = 0; k < h->n_classes; k++) {
            const ks_sched__hclass *hc = &h->classes[k];
            const ks_sched__class *cl = &f->classes[hc->cls];
            const ks_featset *u = &f->sets[cl->set];
            if (cl->kind != old->vcpus[i].kind_class || hc->n_free == 0 ||
                !ks_featset_subset(&p->visible, u))
                continue;
            uint64_t score = ks_featset_count_andnot(u, &p->visible);
            for (uint32_t j = 0; j < hc->n_cpus; j++) {
                uint32_t ci = hc->cpus[j];
                const kcpu *c = &h->cpus[ci];
                if (c->vm || taken[ci] || c->max_mhz < vm->min_mhz ||
                    !smt_allows(h, ci, vm->smt, vm))
                    continue;
                uint64_t key = score << 40 | (uint64_t)(c->numa != oc->numa) << 32 | c->topo_pos;
                if (key < best_key) {
                    best_key = key;
                    best = ci;
                }
            }
        }
        if (best == NONE) {
            code =
                ks_err_set(err, KS_ENOCAPACITY,
                           "no free suitable cpu on host '%s' for vcpu %u of '%s'", h->id, i, name);
            goto done;
        }
        taken[best] = 1;
        ix[i] = best;
    }
    ks_featset natives;
    ks_featset_clear(&natives);
    for (uint32_t i = 0; i < old->n_vcpus; i++) {
        const kcpu *c = &h->cpus[ix[i]];
        ks_plan_vcpu *v = &p->vcpus[i];
        v->host_cpu = c->id;
        v->max_mhz = c->max_mhz;
        if (c->kind >= 0)
            snprintf(v->kind_name, sizeof(v->kind_name), "%s", h->kinds[c->kind].name);
        ks_featset_or(&natives, &natives, &f->sets[c->native]);
    }
    ks_featset_andnot(&p->disable, &natives, &p->visible);
    *out = p;
    p = NULL;
done:
    ks_plan_free(p);
    free(ix);
    free(taken);
    return code;
}

/* ------------------------------------------------------------------ */
/* Capacity                                                            */
/* ------------------------------------------------------------------ */

static const char *const capacity_by_names[KS_CAPACITY_BY__COUNT] = {"fleet", "pool", "host",
                                                                     "kind"};

const char *ks_capacity_by_to_str(ks_capacity_by by)
{
    return (unsigned)by < KS_CAPACITY_BY__COUNT ? capacity_by_names[by] : "?";
}

int ks_capacity_by_from_str(const char *s)
{
    for (int i = 0; s && i < KS_CAPACITY_BY__COUNT; i++)
        if (strcmp(s, capacity_by_names[i]) == 0)
            return i;
    return -1;
}

static void cap_add(ks_capacity *a, const ks_capacity *b)
{
    a->total += b->total;
    a->allocated += b->allocated;
    a->free += b->free;
    a->unschedulable += b->unschedulable;
    a->reserved += b->reserved;
    a->quarantined += b->quarantined;
    a->offline += b->offline;
    a->degraded_usable += b->degraded_usable;
    a->reclaimed += b->reclaimed;
    a->stranded += b->stranded;
}

/* Per-kind capacity of one host. */
static void host_capacity(const ks_fleet *f, const khost *h, const ks_sched__shape *shapes,
                          uint32_t n_shapes, ks_capacity out[2])
{
    memset(out, 0, 2 * sizeof(ks_capacity));
    for (uint32_t i = 0; i < h->n_cpus; i++) {
        const kcpu *c = &h->cpus[i];
        ks_capacity *k = &out[c->kind_class];
        k->total++;
        if (c->state == KS_CPU_DEGRADED && !c->reserved && !c->ghost)
            k->degraded_usable++;
        if (c->vm) {
            k->allocated++;
            k->reclaimed += c->state == KS_CPU_DEGRADED;
        } else if (c->reserved) {
            k->reserved++;
        } else if (c->ghost || c->state == KS_CPU_OFFLINE) {
            k->offline++;
        } else if (c->state == KS_CPU_QUARANTINED) {
            k->quarantined++;
        } else if (h->schedulable) {
            k->free++;
        } else {
            k->unschedulable++;
        }
    }
    if (!h->schedulable || n_shapes == 0 || h->n_classes == 0)
        return;
    /* a free CPU is useful if some recent shape fits this host and accepts
     * its class; the rest is stranded */
    uint8_t *covered = calloc(h->n_classes, 1);
    if (!covered)
        return;
    for (uint32_t s = 0; s < n_shapes; s++) {
        const ks_sched__shape *sh = &shapes[s];
        uint32_t avail[2] = {0, 0};
        for (uint32_t k = 0; k < h->n_classes; k++) {
            const ks_sched__hclass *hc = &h->classes[k];
            const ks_sched__class *cl = &f->classes[hc->cls];
            if (hc->max_mhz >= sh->min_mhz && ks_featset_subset(&sh->needed, &f->sets[cl->set]))
                avail[cl->kind] += hc->n_free;
        }
        uint32_t total = sh->n_performance + sh->n_efficiency + sh->n_any;
        bool fits = avail[0] >= sh->n_performance && avail[1] >= sh->n_efficiency &&
                    avail[0] + avail[1] >= total;
        if (!fits)
            continue;
        for (uint32_t k = 0; k < h->n_classes; k++) {
            const ks_sched__hclass *hc = &h->classes[k];
            const ks_sched__class *cl = &f->classes[hc->cls];
            bool kind_wanted = sh->n_any || (cl->kind == KS_KIND_PERFORMANCE ? sh->n_performance
                                                                             : sh->n_efficiency);
            if (kind_wanted && hc->max_mhz >= sh->min_mhz &&
                ks_featset_subset(&sh->needed, &f->sets[cl->set]))
                covered[k] = 1;
        }
    }
    for (uint32_t k = 0; k < h->n_classes; k++)
        if (!covered[k])
            out[f->classes[h->classes[k].cls].kind].stranded += h->classes[k].n_free;
    free(covered);
}

void ks_fleet_capacity(const ks_fleet *f, ks_capacity_by by, ks_capacity_fn cb, void *ctx)
{
    if (!f || !cb)
        return;
    const ks_sched__scratch *sc = f->sc;
    /* distinct shapes of the window */
    ks_sched__shape *shapes = NULL;
    uint32_t n_shapes = 0;
    if (sc->ring_n) {
        shapes = malloc(sc->ring_n * sizeof(*shapes));
        if (shapes)
            for (uint32_t i = 0; i < sc->ring_n; i++) {
                const ks_sched__shape *s = &sc->ring[i];
                bool dup = false;
                for (uint32_t j = 0; j < n_shapes && !dup; j++)
                    dup = shapes[j].n_performance == s->n_performance &&
                          shapes[j].n_efficiency == s->n_efficiency &&
                          shapes[j].n_any == s->n_any && shapes[j].min_mhz == s->min_mhz &&
                          ks_featset_equal(&shapes[j].needed, &s->needed);
                if (!dup)
                    shapes[n_shapes++] = *s;
            }
    }
    ks_capacity sum[2], hc[2];
    memset(sum, 0, sizeof(sum));
    switch (by) {
    case KS_CAPACITY_HOST:
        for (uint32_t i = 0; i < f->n_hosts; i++) {
            host_capacity(f, f->hosts[i], shapes, n_shapes, hc);
            cap_add(&hc[0], &hc[1]);
            cb(ctx, f->hosts[i]->id, &hc[0]);
        }
        break;
    case KS_CAPACITY_POOL:
        for (uint32_t p = 0; p < f->n_pools; p++) {
            const ks_sched__pool *pool = f->pools[p];
            ks_capacity c;
            memset(&c, 0, sizeof(c));
            for (uint32_t m = 0; m < pool->n; m++) {
                const khost *h = pool->hosts[m];
                if (!h)
                    continue;
                host_capacity(f, h, shapes, n_shapes, hc);
                cap_add(&c, &hc[0]);
                cap_add(&c, &hc[1]);
            }
            cb(ctx, pool->name, &c);
        }
        break;
    case KS_CAPACITY_FLEET:
    case KS_CAPACITY_KIND:
    default:
        for (uint32_t i = 0; i < f->n_hosts; i++) {
            host_capacity(f, f->hosts[i], shapes, n_shapes, hc);
            cap_add(&sum[0], &hc[0]);
            cap_add(&sum[1], &hc[1]);
        }
        if (by == KS_CAPACITY_KIND) {
            cb(ctx, ks_kind_class_to_str(KS_KIND_PERFORMANCE), &sum[0]);
            cb(ctx, ks_kind_class_to_str(KS_KIND_EFFICIENCY), &sum[1]);
        } else {
            cap_add(&sum[0], &sum[1]);
            cb(ctx, "fleet", &sum[0]);
        }
        break;
    }
    free(shapes);
}
