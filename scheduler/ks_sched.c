/*
 * ks_sched.c - the in-memory fleet index: hosts and their CPUs, VMs and the
 * CPUs they hold, pools, bans, and the structures placement searches.
 *
 * Index design (what ks_sched_place() relies on):
 *  - Feature sets are interned fleet-wide (a CPU stores two uint32 ids, not
 *    two 64-byte sets): a host's 256 CPUs typically share 1-4 sets.
 *  - A *class* is an interned (usable set, kind class) pair.  A request's
 *    feature test (required or pool-visible set within usable) and its least-
 *    capable-fit score (|usable \ needed|) run once per class per request,
 *    cached by a stamp, never per CPU.
 *  - Per host, per class (ks_sched__hclass): the usable CPUs of that class in
 *    topological order (NUMA node, L3, L2, core, thread) and a free count.
 *    Usable = online/degraded and not reserved.
 *  - Per class, the list of schedulable hosts that have a free CPU of it
 *    (O(1) insert/remove by stored position).  A request whose eligible
 *    classes are rare (a feature only 5% of hosts have) enumerates just those
 *    hosts: O(sum of the eligible classes' host lists).
 *  - Per kind class and for all kinds, hosts are bucketed by free CPU count
 *    (doubly-linked list per count, O(1) move).  A common request walks the
 *    buckets from `need` upward (pack: fullest host that can still fit) or
 *    from the top down (spread) and stops after the first batch of hosts that
 *    pass the count prefilter: O(batch x classes per host + empty buckets).
 *  - Pools: per pool the member hosts by pointer (kept current by every host
 *    add/replace/remove) and a lazily recomputed baseline, invalidated only
 *    when a member's contribution can change (a report changing its usable
 *    CPUs, drain/undrain, removal, appearance, membership); a pool request
 *    walks the pointers without a lookup per member and reuses the baseline.
 *  - Per host index, a one-cache-line summary of what a prefilter reads
 *    (ks_sched__hsum, refreshed in host_link); pools keep their members' host
 *    indices and id ranks, so a pool request's member walk reads a compact
 *    array instead of every member host: O(members) cheap reads + the hosts
 *    it tries.
 *  - Anti-affinity: per host a short list of (group, VM count).
 *  - SMT isolation: per CPU the number of siblings held by isolate VMs
 *    (iso_block) and by any VM (busy_sibs); a non-isolate VM never takes a
 *    blocked CPU, an isolate VM never takes a CPU whose sibling another VM
 *    holds.  Per host, per kind: blocked free CPUs (left out of the buckets:
 *    nobody new can use them) and isolation-free CPUs (a prefilter bound for
 *    isolate requests), so neither kind of request wades through hosts whose
 *    free CPUs it cannot take.
 * Every mutation of a host's allocation goes host_unlink -> change ->
 * host_link, so the buckets and class lists always reflect the free counts
 * (ks_fleet_check() verifies this).
 *
 * Memory: each allocation carries a 16-byte size header so the fleet can
 * report its own footprint (ks_fleet_memory_bytes); plans, allocated by
 * libks-common, are estimated.
 *
 * Threading: none.  The caller serialises every call on a fleet; there is
 * no global state (sorts use qsort_r), so distinct fleets are independent.
 */
#include "ks_sched_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NONE KS_SCHED__NONE

typedef ks_sched__host khost;
typedef ks_sched__cpu kcpu;
typedef ks_sched__vm kvm;
typedef ks_sched__pool kpool;

/* ------------------------------------------------------------------ */
/* Accounted allocation                                                */
/* ------------------------------------------------------------------ */

typedef struct fa_hdr {
    size_t size;
    size_t pad; /* keeps the payload 16-byte aligned */
} fa_hdr;

static void *fa_alloc(ks_fleet *f, size_t n)
{
    if (n > SIZE_MAX - sizeof(fa_hdr))
        return NULL;
    fa_hdr *h = calloc(1, sizeof(fa_hdr) + n);
    if (!h)
        return NULL;
    h->size = n;
    f->mem += n + sizeof(fa_hdr);
    return h + 1;
}

static void *fa_array(ks_fleet *f, size_t n, size_t each)
{
    if (each && n > SIZE_MAX / each)
        return NULL;
    return fa_alloc(f, (n * each) != 0 ? n * each : 1);
}

static void fa_free(ks_fleet *f, void *p)
{
    if (!p)
        return;
    fa_hdr *h = (fa_hdr *)p - 1;
    f->mem -= h->size + sizeof(fa_hdr);
    free(h);
}

/* Grows *p (n_have used elements) to hold at least `need` elements of `each`. */
static bool fa_grow(ks_fleet *f, void **p, uint32_t *cap, uint32_t need, size_t each)
{
    if (need <= *cap)
        return true;
    uint32_t nc = *cap ? *cap : 4;
    while (nc < need) {
        if (nc > UINT32_MAX / 2)
            return false;
        nc *= 2;
    }
    void *np = fa_array(f, nc, each);
    if (!np)
        return false;
    if (*p) {
        memcpy(np, *p, (size_t)*cap * each);
        fa_free(f, *p);
    }
    *p = np;
    *cap = nc;
    return true;
}

void *ks_sched__scratch_buf(const ks_fleet *f, unsigned slot, size_t bytes)
{
    ks_sched__scratch *sc = f->sc;
    if (slot >= KS_SCHED__N_SCRATCH)
        return NULL;
    if (sc->buf_cap[slot] >= bytes)
        return sc->buf[slot];
    size_t nc = sc->buf_cap[slot] ? sc->buf_cap[slot] : 1024;
    while (nc < bytes)
        nc *= 2;
    void *np = realloc(sc->buf[slot], nc);
    if (!np)
        return NULL;
    sc->mem += nc - sc->buf_cap[slot];
    sc->buf[slot] = np;
    sc->buf_cap[slot] = nc;
    return np;
}

/* ------------------------------------------------------------------ */
/* String map                                                          */
/* ------------------------------------------------------------------ */

static uint64_t str_hash(const char *s)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static void *smap_get(const ks_sched__smap *m, const char *key)
{
    if (!m->cap || !key)
        return NULL;
    uint64_t h = str_hash(key);
    uint32_t mask = m->cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        const ks_sched__smap_slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->hash == h && strcmp(s->key, key) == 0)
            return s->val;
    }
}

static void smap_insert_raw(ks_sched__smap *m, const char *key, void *val, uint64_t h)
{
    uint32_t mask = m->cap - 1;
    uint32_t i = (uint32_t)h & mask;
    while (m->slots[i].key) {
        if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0) {
            m->slots[i].key = key;
            m->slots[i].val = val;
            return;
        }
        i = (i + 1) & mask;
    }
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->slots[i].hash = h;
    m->n++;
}

/* Inserts or replaces key -> val.  false when out of memory (map unchanged). */
static bool smap_put(ks_fleet *f, ks_sched__smap *m, const char *key, void *val)
{
    if ((m->n + 1) * 4 > m->cap * 3) {
        uint32_t nc = m->cap ? m->cap * 2 : 16;
        ks_sched__smap_slot *ns = fa_array(f, nc, sizeof(*ns));
        if (!ns)
            return false;
        ks_sched__smap old = *m;
        m->slots = ns;
        m->cap = nc;
        m->n = 0;
        for (uint32_t i = 0; i < old.cap; i++)
            if (old.slots[i].key)
                smap_insert_raw(m, old.slots[i].key, old.slots[i].val, old.slots[i].hash);
        fa_free(f, old.slots);
    }
    smap_insert_raw(m, key, val, str_hash(key));
    return true;
}

/* Re-points an existing key (never grows, so cannot fail). */
static void smap_replace(ks_sched__smap *m, const char *key, void *val)
{
    smap_insert_raw(m, key, val, str_hash(key));
}

static void smap_del(ks_sched__smap *m, const char *key)
{
    if (!m->cap)
        return;
    uint64_t h = str_hash(key);
    uint32_t mask = m->cap - 1;
    uint32_t i = (uint32_t)h & mask;
    for (;; i = (i + 1) & mask) {
        if (!m->slots[i].key)
            return;
        if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0)
            break;
    }
    m->slots[i].key = NULL;
    m->n--;
    /* Backward-shift: pull later entries of the probe run into the hole. */
    for (uint32_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        uint32_t k = (uint32_t)m->slots[j].hash & mask;
        bool movable = (j > i) ? (k <= i || k > j) : (k <= i && k > j);
        if (movable) {
            m->slots[i] = m->slots[j];
            m->slots[j].key = NULL;
            i = j;
        }
    }
}

static void smap_destroy(ks_fleet *f, ks_sched__smap *m)
{
    fa_free(f, m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

/* ------------------------------------------------------------------ */
/* Interning                                                           */
/* ------------------------------------------------------------------ */

static bool set_intern(ks_fleet *f, const ks_featset *s, uint32_t *out)
{
    uint64_t h = ks_featset_hash(s);
    if (f->set_scap) {
        uint32_t mask = f->set_scap - 1;
        for (uint32_t i = (uint32_t)h & mask; f->set_slots[i]; i = (i + 1) & mask) {
            uint32_t ix = f->set_slots[i] - 1;
            if (ks_featset_equal(&f->sets[ix], s)) {
                *out = ix;
                return true;
            }
        }
    }
    if (!fa_grow(f, (void **)&f->sets, &f->cap_sets, f->n_sets + 1, sizeof(ks_featset)))
        return false;
    if ((f->n_sets + 1) * 2 > f->set_scap) {
        uint32_t nc = f->set_scap ? f->set_scap * 2 : 64;
        uint32_t *ns = fa_array(f, nc, sizeof(uint32_t));
        if (!ns)
            return false;
        for (uint32_t ix = 0; ix < f->n_sets; ix++) {
            uint32_t j = (uint32_t)ks_featset_hash(&f->sets[ix]) & (nc - 1);
            while (ns[j])
                j = (j + 1) & (nc - 1);
            ns[j] = ix + 1;
        }
        fa_free(f, f->set_slots);
        f->set_slots = ns;
        f->set_scap = nc;
    }
    uint32_t ix = f->n_sets++;
    f->sets[ix] = *s;
    uint32_t j = (uint32_t)h & (f->set_scap - 1);
    while (f->set_slots[j])
        j = (j + 1) & (f->set_scap - 1);
    f->set_slots[j] = ix + 1;
    *out = ix;
    return true;
}

static uint32_t cls_key_hash(uint32_t set, uint8_t kind)
{
    uint64_t k = ((uint64_t)set << 1 | kind) * UINT64_C(0x9E3779B97F4A7C15);
    return (uint32_t)(k >> 32);
}

static bool cls_intern(ks_fleet *f, uint32_t set, uint8_t kind, uint32_t *out)
{
    if (f->cls_scap) {
        uint32_t mask = f->cls_scap - 1;
        for (uint32_t i = cls_key_hash(set, kind) & mask; f->cls_slots[i]; i = (i + 1) & mask) {
            ks_sched__class *c = &f->classes[f->cls_slots[i] - 1];
            if (c->set == set && c->kind == kind) {
                *out = f->cls_slots[i] - 1;
                return true;
            }
        }
    }
    if (!fa_grow(f, (void **)&f->classes, &f->cap_classes, f->n_classes + 1,
                 sizeof(ks_sched__class)))
        return false;
    if ((f->n_classes + 1) * 2 > f->cls_scap) {
        uint32_t nc = f->cls_scap ? f->cls_scap * 2 : 64;
        uint32_t *ns = fa_array(f, nc, sizeof(uint32_t));
        if (!ns)
            return false;
        for (uint32_t ix = 0; ix < f->n_classes; ix++) {
            uint32_t j = cls_key_hash(f->classes[ix].set, f->classes[ix].kind) & (nc - 1);
            while (ns[j])
                j = (j + 1) & (nc - 1);
            ns[j] = ix + 1;
        }
        fa_free(f, f->cls_slots);
        f->cls_slots = ns;
        f->cls_scap = nc;
    }
    /* the per-class scratch arrays must cover every class id */
    ks_sched__scratch *sc = f->sc;
    if (f->n_classes + 1 > sc->cls_cap) {
        uint32_t nc = sc->cls_cap ? sc->cls_cap * 2 : 64;
        uint32_t *st = calloc(nc, sizeof(uint32_t));
        uint8_t *ok = calloc(nc, 1);
        uint16_t *score = calloc(nc, sizeof(uint16_t));
        if (!st || !ok || !score) {
            free(st);
            free(ok);
            free(score);
            return false;
        }
        if (sc->cls_cap) {
            memcpy(st, sc->cls_stamp, sc->cls_cap * sizeof(uint32_t));
            memcpy(ok, sc->cls_ok, sc->cls_cap);
            memcpy(score, sc->cls_score, sc->cls_cap * sizeof(uint16_t));
        }
        free(sc->cls_stamp);
        free(sc->cls_ok);
        free(sc->cls_score);
        sc->mem += (size_t)(nc - sc->cls_cap) * 7;
        sc->cls_stamp = st;
        sc->cls_ok = ok;
        sc->cls_score = score;
        sc->cls_cap = nc;
    }
    uint32_t ix = f->n_classes++;
    ks_sched__class *c = &f->classes[ix];
    memset(c, 0, sizeof(*c));
    c->set = set;
    c->kind = kind;
    uint32_t j = cls_key_hash(set, kind) & (f->cls_scap - 1);
    while (f->cls_slots[j])
        j = (j + 1) & (f->cls_scap - 1);
    f->cls_slots[j] = ix + 1;
    *out = ix;
    return true;
}

/* ------------------------------------------------------------------ */
/* Linking hosts into the search structures                            */
/* ------------------------------------------------------------------ */

bool ks_sched__cpu_usable(const kcpu *c)
{
    return !c->ghost && !c->reserved && (c->state == KS_CPU_ONLINE || c->state == KS_CPU_DEGRADED);
}

/* Free CPUs a new VM could take (isolation-blocked ones excluded). */
static uint32_t host_bucket_value(const khost *h, unsigned k)
{
    if (k == KS_SCHED__ALL)
        return h->free_kind[0] + h->free_kind[1] - h->blocked_kind[0] - h->blocked_kind[1];
    return h->free_kind[k] - h->blocked_kind[k];
}

static bool buckets_ensure(ks_fleet *f, uint32_t n_cpus)
{
    if (n_cpus + 1 <= f->n_buckets)
        return true;
    uint32_t nb = f->n_buckets ? f->n_buckets : 64;
    while (nb < n_cpus + 1)
        nb *= 2;
    khost **nbk[KS_SCHED__N_BUCKETS] = {0};
    for (unsigned k = 0; k < KS_SCHED__N_BUCKETS; k++) {
        nbk[k] = fa_array(f, nb, sizeof(khost *));
        if (!nbk[k]) {
            for (unsigned j = 0; j < k; j++)
                fa_free(f, nbk[j]);
            return false;
        }
    }
    for (unsigned k = 0; k < KS_SCHED__N_BUCKETS; k++) {
        if (f->buckets[k])
            memcpy(nbk[k], f->buckets[k], f->n_buckets * sizeof(khost *));
        fa_free(f, f->buckets[k]);
        f->buckets[k] = nbk[k];
    }
    f->n_buckets = nb;
    return true;
}

/* Removes h from the buckets and class lists (no-op when not linked). */
static void host_unlink(ks_fleet *f, khost *h)
{
    if (!h->linked)
        return;
    for (unsigned k = 0; k < KS_SCHED__N_BUCKETS; k++) {
        if (h->bval[k] == 0)
            continue;
        if (h->bprev[k])
            h->bprev[k]->bnext[k] = h->bnext[k];
        else
            f->buckets[k][h->bval[k]] = h->bnext[k];
        if (h->bnext[k])
            h->bnext[k]->bprev[k] = h->bprev[k];
        h->bprev[k] = h->bnext[k] = NULL;
        f->bucket_pop[k]--;
    }
    for (uint32_t i = 0; i < h->n_classes; i++) {
        ks_sched__hclass *hc = &h->classes[i];
        if (hc->pos == NONE)
            continue;
        ks_sched__class *c = &f->classes[hc->cls];
        ks_sched__hostref last = c->hosts[--c->n_hosts];
        if (hc->pos != c->n_hosts) {
            c->hosts[hc->pos] = last;
            last.h->classes[last.hc].pos = hc->pos;
        }
        hc->pos = NONE;
    }
    h->linked = false;
}

/* h's summary (see ks_sched__hsum) as of now. */
static void hsum_of(const khost *h, ks_sched__hsum *s)
{
    memset(s, 0, sizeof(*s));
    s->schedulable = h->schedulable;
    s->has_aa = h->n_aa > 0;
    s->exact = h->n_classes <= KS_SCHED__SUM_CLASSES && h->n_cpus <= UINT16_MAX;
    if (!s->exact)
        return;
    s->n_classes = (uint8_t)h->n_classes;
    for (unsigned k = 0; k < 2; k++) {
        s->free_kind[k] = (uint16_t)h->free_kind[k];
        s->iso_free_kind[k] = (uint16_t)h->iso_free_kind[k];
        s->blocked_kind[k] = (uint16_t)h->blocked_kind[k];
    }
    for (uint32_t i = 0; i < h->n_classes; i++) {
        s->c[i].cls = h->classes[i].cls;
        s->c[i].n_free = (uint16_t)h->classes[i].n_free;
        /* a clamped max_mhz only errs towards reading the host itself */
        s->c[i].max_mhz =
            (uint16_t)(h->classes[i].max_mhz > UINT16_MAX ? UINT16_MAX : h->classes[i].max_mhz);
        if (h->classes[i].max_mhz >= UINT16_MAX)
            s->exact = false;
    }
}

/* Inserts h by its current free counts; capacity of the class lists was
 * reserved by host_reserve_links(), so this cannot fail.  Also refreshes h's
 * summary, linked or not (every change to its counts ends here). */
static void host_link(ks_fleet *f, khost *h)
{
    if (h->index < f->cap_hsum)
        hsum_of(h, &f->hsum[h->index]);
    if (h->linked || !h->schedulable)
        return;
    for (unsigned k = 0; k < KS_SCHED__N_BUCKETS; k++) {
        uint32_t v = host_bucket_value(h, k);
        h->bval[k] = v;
        h->bprev[k] = h->bnext[k] = NULL;
        if (v == 0)
            continue;
        h->bnext[k] = f->buckets[k][v];
        if (h->bnext[k])
            h->bnext[k]->bprev[k] = h;
        f->buckets[k][v] = h;
        f->bucket_pop[k]++;
    }
    for (uint32_t i = 0; i < h->n_classes; i++) {
        ks_sched__hclass *hc = &h->classes[i];
        if (hc->n_free == 0)
            continue;
        ks_sched__class *c = &f->classes[hc->cls];
        hc->pos = c->n_hosts;
        c->hosts[c->n_hosts].h = h;
        c->hosts[c->n_hosts].hc = i;
        c->n_hosts++;
    }
    h->linked = true;
}

/* Makes room in the class lists for h, which becomes a member of its classes
 * (so host_link never fails).  Undone by host_release_links(). */
static bool host_reserve_links(ks_fleet *f, const khost *h)
{
    if (!buckets_ensure(f, h->n_cpus))
        return false;
    for (uint32_t i = 0; i < h->n_classes; i++) {
        ks_sched__class *c = &f->classes[h->classes[i].cls];
        if (!fa_grow(f, (void **)&c->hosts, &c->cap_hosts, c->n_members + 1,
                     sizeof(ks_sched__hostref)))
            return false;
    }
    for (uint32_t i = 0; i < h->n_classes; i++)
        f->classes[h->classes[i].cls].n_members++;
    return true;
}

static void host_release_links(ks_fleet *f, const khost *h)
{
    for (uint32_t i = 0; i < h->n_classes; i++)
        f->classes[h->classes[i].cls].n_members--;
}

/* ------------------------------------------------------------------ */
/* CPU ownership                                                       */
/* ------------------------------------------------------------------ */

/* Sets cpu ci's owner (vm may be NULL), keeping counts and isolation blocks. */
static void cpu_set_owner(khost *h, uint32_t ci, kvm *vm)
{
    kcpu *c = &h->cpus[ci];
    kvm *old = c->vm;
    if (old == vm)
        return;
    bool usable = c->hc != NONE;
    if (usable && !old && c->iso_block)
        h->blocked_kind[c->kind_class]--; /* a blocked free CPU gets an owner */
    if (old) {
        h->n_alloc--;
        if (usable) {
            h->classes[c->hc].n_free++;
            h->free_kind[c->kind_class]++;
        }
        if (old->smt == KS_SMT_ISOLATE)
            for (uint32_t s = c->sib_next; s != ci; s = h->cpus[s].sib_next) {
                kcpu *sc = &h->cpus[s];
                if (--sc->iso_block == 0 && !sc->vm && sc->hc != NONE)
                    h->blocked_kind[sc->kind_class]--;
            }
    }
    c->vm = vm;
    if (vm) {
        h->n_alloc++;
        if (usable) {
            h->classes[c->hc].n_free--;
            h->free_kind[c->kind_class]--;
        }
        if (vm->smt == KS_SMT_ISOLATE)
            for (uint32_t s = c->sib_next; s != ci; s = h->cpus[s].sib_next) {
                kcpu *sc = &h->cpus[s];
                if (sc->iso_block++ == 0 && !sc->vm && sc->hc != NONE)
                    h->blocked_kind[sc->kind_class]++;
            }
    }
    if (usable && !vm && c->iso_block)
        h->blocked_kind[c->kind_class]++; /* freed next to an isolate VM's CPU */
    if ((old == NULL) == (vm == NULL))
        return; /* held -> held: sibling business unchanged */
    /* isolation-available bookkeeping: free, usable, no sibling held */
    if (vm) {
        if (usable && c->busy_sibs == 0)
            h->iso_free_kind[c->kind_class]--;
        for (uint32_t s = c->sib_next; s != ci; s = h->cpus[s].sib_next) {
            kcpu *sc = &h->cpus[s];
            if (sc->busy_sibs++ == 0 && !sc->vm && sc->hc != NONE)
                h->iso_free_kind[sc->kind_class]--;
        }
    } else {
        for (uint32_t s = c->sib_next; s != ci; s = h->cpus[s].sib_next) {
            kcpu *sc = &h->cpus[s];
            if (--sc->busy_sibs == 0 && !sc->vm && sc->hc != NONE)
                h->iso_free_kind[sc->kind_class]++;
        }
        if (usable && c->busy_sibs == 0)
            h->iso_free_kind[c->kind_class]++;
    }
}

static int32_t cpu_find(const khost *h, int32_t id)
{
    uint32_t lo = 0, hi = h->n_cpus;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (h->cpus[mid].id < id)
            lo = mid + 1;
        else if (h->cpus[mid].id > id)
            hi = mid;
        else
            return (int32_t)mid;
    }
    return -1;
}

static bool aa_add(ks_fleet *f, khost *h, const char *group)
{
    if (!group[0])
        return true;
    for (uint32_t i = 0; i < h->n_aa; i++)
        if (strcmp(h->aa[i].name, group) == 0) {
            h->aa[i].count++;
            return true;
        }
    if (!fa_grow(f, (void **)&h->aa, &h->cap_aa, h->n_aa + 1, sizeof(ks_sched__aa)))
        return false;
    snprintf(h->aa[h->n_aa].name, sizeof(h->aa[0].name), "%s", group);
    h->aa[h->n_aa].count = 1;
    h->n_aa++;
    return true;
}

static void aa_del(khost *h, const char *group)
{
    if (!group[0])
        return;
    for (uint32_t i = 0; i < h->n_aa; i++)
        if (strcmp(h->aa[i].name, group) == 0) {
            if (--h->aa[i].count == 0)
                h->aa[i] = h->aa[--h->n_aa];
            return;
        }
}

bool ks_sched__host_has_aa(const khost *h, const char *group)
{
    if (!group[0])
        return false;
    for (uint32_t i = 0; i < h->n_aa; i++)
        if (strcmp(h->aa[i].name, group) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------ */
/* Side outputs                                                        */
/* ------------------------------------------------------------------ */

void ks_sched_affected_init(ks_sched_affected *a)
{
    memset(a, 0, sizeof(*a));
}

void ks_sched_affected_destroy(ks_sched_affected *a)
{
    if (!a)
        return;
    free(a->items);
    memset(a, 0, sizeof(*a));
}

static bool affected_add(ks_sched_affected *a, const kvm *vm, const kcpu *c, int32_t vcpu,
                         const char *what)
{
    if (!a)
        return true;
    if (a->n == a->cap) {
        uint32_t nc = a->cap ? a->cap * 2 : 8;
        ks_sched_affected_item *ni = realloc(a->items, nc * sizeof(*ni));
        if (!ni)
            return false;
        a->items = ni;
        a->cap = nc;
    }
    ks_sched_affected_item *it = &a->items[a->n++];
    memset(it, 0, sizeof(*it));
    snprintf(it->vm, sizeof(it->vm), "%s", vm->name);
    snprintf(it->host, sizeof(it->host), "%s", vm->host->id);
    it->host_cpu = c->id;
    it->vcpu = vcpu;
    snprintf(it->reason, sizeof(it->reason), "cpu %d %s", c->id, what);
    return true;
}

void ks_sched_explain_init(ks_sched_explain *e)
{
    memset(e, 0, sizeof(*e));
}

void ks_sched_explain_destroy(ks_sched_explain *e)
{
    if (!e)
        return;
    free(e->items);
    memset(e, 0, sizeof(*e));
}

ks_code ks_sched__explain_add(ks_sched_explain *e, const char *reason, uint64_t count)
{
    if (!e)
        return KS_OK;
    for (uint32_t i = 0; i < e->n; i++)
        if (strcmp(e->items[i].reason, reason) == 0) {
            e->items[i].count += count;
            return KS_OK;
        }
    if (e->n == e->cap) {
        uint32_t nc = e->cap ? e->cap * 2 : 8;
        ks_sched_explain_item *ni = realloc(e->items, nc * sizeof(*ni));
        if (!ni)
            return KS_ENOMEM;
        e->items = ni;
        e->cap = nc;
    }
    snprintf(e->items[e->n].reason, sizeof(e->items[0].reason), "%s", reason);
    e->items[e->n].count = count;
    e->n++;
    return KS_OK;
}

json_t *ks_sched_explain_to_json(const ks_sched_explain *e)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    for (uint32_t i = 0; e && i < e->n; i++) {
        if (json_object_set_new(o, e->items[i].reason,
                                json_integer((json_int_t)e->items[i].count))) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* ------------------------------------------------------------------ */
/* Fleet                                                               */
/* ------------------------------------------------------------------ */

ks_code ks_fleet_new(ks_fleet **out, ks_err *err)
{
    ks_fleet *f = calloc(1, sizeof(*f));
    ks_sched__scratch *sc = calloc(1, sizeof(*sc));
    if (!f || !sc) {
        free(f);
        free(sc);
        return ks_err_set(err, KS_ENOMEM, "out of memory allocating a fleet");
    }
    f->sc = sc;
    sc->ring_window = 1000;
    f->mem = sizeof(*f) + sizeof(*sc);
    *out = f;
    return KS_OK;
}

static void host_free(ks_fleet *f, khost *h)
{
    if (!h)
        return;
    for (uint32_t i = 0; i < h->n_classes; i++)
        fa_free(f, h->classes[i].cpus);
    fa_free(f, h->classes);
    fa_free(f, h->cpus);
    fa_free(f, h->topo);
    fa_free(f, h->kinds);
    fa_free(f, h->numa);
    fa_free(f, h->aa);
    fa_free(f, h);
}

static void vm_free(ks_fleet *f, kvm *vm)
{
    if (!vm)
        return;
    f->mem -= vm->plan_bytes;
    ks_plan_free(vm->plan);
    fa_free(f, vm->cpu_ix);
    fa_free(f, vm);
}

static void pool_free(ks_fleet *f, kpool *p)
{
    if (!p)
        return;
    smap_destroy(f, &p->set);
    fa_free(f, p->members);
    fa_free(f, p->ptrs);
    fa_free(f, p->hosts);
    fa_free(f, p->hix);
    fa_free(f, p->rank);
    fa_free(f, p);
}

/*
 * Host `id` is now `h` (NULL: removed) in every pool naming it; when `dirty`,
 * the baselines of those pools are invalidated.  O(pools) hash lookups: pools
 * are few, and a host change must not cost O(members).
 */
static void pools_host_changed(ks_fleet *f, const char *id, khost *h, bool dirty)
{
    for (uint32_t i = 0; i < f->n_pools; i++) {
        kpool *p = f->pools[i];
        char(*m)[KS_ID_MAX] = smap_get(&p->set, id);
        if (!m)
            continue;
        p->hosts[m - p->members] = h;
        p->hix[m - p->members] = h ? h->index : NONE;
        if (dirty)
            p->base_valid = false;
    }
}

/* Whether h's contribution to a pool baseline differs from old's. */
static bool host_pool_contribution_differs(const khost *old, const khost *h)
{
    return old->schedulable != h->schedulable || old->n_usable != h->n_usable ||
           !ks_featset_equal(&old->baseline, &h->baseline);
}

void ks_fleet_free(ks_fleet *f)
{
    if (!f)
        return;
    for (uint32_t i = 0; i < f->vm_map.cap; i++)
        if (f->vm_map.slots[i].key)
            vm_free(f, f->vm_map.slots[i].val);
    for (uint32_t i = 0; i < f->n_hosts; i++)
        host_free(f, f->hosts[i]);
    for (uint32_t i = 0; i < f->n_pools; i++)
        pool_free(f, f->pools[i]);
    for (uint32_t i = 0; i < f->n_classes; i++)
        fa_free(f, f->classes[i].hosts);
    for (unsigned k = 0; k < KS_SCHED__N_BUCKETS; k++)
        fa_free(f, f->buckets[k]);
    fa_free(f, f->pools);
    fa_free(f, f->classes);
    fa_free(f, f->cls_slots);
    fa_free(f, f->sets);
    fa_free(f, f->set_slots);
    fa_free(f, f->hosts);
    fa_free(f, f->hsum);
    smap_destroy(f, &f->host_map);
    smap_destroy(f, &f->vm_map);
    ks_sched__scratch *sc = f->sc;
    free(sc->cls_stamp);
    free(sc->cls_ok);
    free(sc->cls_score);
    free(sc->host_stamp);
    free(sc->ring);
    for (unsigned i = 0; i < KS_SCHED__N_SCRATCH; i++)
        free(sc->buf[i]);
    free(sc);
    free(f);
}

size_t ks_fleet_memory_bytes(const ks_fleet *f)
{
    return f ? f->mem + f->sc->mem : 0;
}

ks_sched__host *ks_sched__host_find(const ks_fleet *f, const char *id)
{
    return smap_get(&f->host_map, id);
}

ks_sched__vm *ks_sched__vm_find(const ks_fleet *f, const char *name)
{
    return smap_get(&f->vm_map, name);
}

size_t ks_fleet_host_count(const ks_fleet *f)
{
    return f ? f->n_hosts : 0;
}

size_t ks_fleet_vm_count(const ks_fleet *f)
{
    return f ? f->vm_map.n : 0;
}

/* ------------------------------------------------------------------ */
/* Building a host from a report                                       */
/* ------------------------------------------------------------------ */

static int topo_cmp(const void *a, const void *b, void *ctx)
{
    const khost *h = ctx;
    const kcpu *x = &h->cpus[*(const uint32_t *)a];
    const kcpu *y = &h->cpus[*(const uint32_t *)b];
#define KS_CMP(fld)                                                                                \
    if (x->fld != y->fld)                                                                          \
        return x->fld < y->fld ? -1 : 1;
    KS_CMP(numa)
    KS_CMP(package)
    KS_CMP(l3)
    KS_CMP(l2)
    KS_CMP(core)
    KS_CMP(thread)
    KS_CMP(id)
#undef KS_CMP
    return 0;
}

static int cpu_id_cmp(const void *a, const void *b)
{
    const kcpu *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * Builds a detached host from r.  When `old` is given, CPUs it allocated that
 * the report no longer lists are kept as offline ghosts so that allocations
 * survive (their VMs are then reported affected).
 */
static ks_code host_build(ks_fleet *f, const ks_report *r, const khost *old, khost **out,
                          ks_err *err)
{
    ks_code rc = KS_ENOMEM;
    khost *h = fa_alloc(f, sizeof(*h));
    uint32_t n_ghosts = 0;
    if (!h)
        goto oom;
    snprintf(h->id, sizeof(h->id), "%s", r->host.id);
    snprintf(h->vendor, sizeof(h->vendor), "%s", r->host.vendor);
    snprintf(h->model, sizeof(h->model), "%s", r->host.model_name);
    h->arch = r->host.arch;
    h->schedulable = old ? old->schedulable : true;
    h->pmu_version = r->pmu.version;
    h->pmu_gp = r->pmu.gp_counters;
    h->pmu_fixed = r->pmu.fixed_counters;
    if (old)
        for (uint32_t i = 0; i < old->n_cpus; i++)
            if (old->cpus[i].vm && !ks_report_find_cpu(r, old->cpus[i].id))
                n_ghosts++;
    h->n_cpus = r->n_cpus + n_ghosts;
    h->cpus = fa_array(f, h->n_cpus, sizeof(kcpu));
    h->topo = fa_array(f, h->n_cpus, sizeof(uint32_t));
    h->n_kinds = r->n_kinds;
    h->kinds = fa_array(f, r->n_kinds, sizeof(ks_sched__kind));
    h->n_numa = r->n_numa;
    h->numa = fa_array(f, r->n_numa, sizeof(ks_numa_node));
    if (!h->cpus || !h->topo || !h->kinds || !h->numa)
        goto oom;
    for (uint32_t i = 0; i < r->n_kinds; i++) {
        snprintf(h->kinds[i].name, sizeof(h->kinds[i].name), "%s", r->kinds[i].name);
        h->kinds[i].kind_class = r->kinds[i].kind_class < KS_KIND_CLASS__COUNT
                                     ? r->kinds[i].kind_class
                                     : KS_KIND_PERFORMANCE;
    }
    if (r->n_numa)
        memcpy(h->numa, r->numa, r->n_numa * sizeof(ks_numa_node));

    for (uint32_t i = 0; i < r->n_cpus; i++) {
        const ks_cpu *rc_ = &r->cpus[i];
        kcpu *c = &h->cpus[i];
        c->id = rc_->id;
        c->package = rc_->package;
        c->die = rc_->die;
        c->cluster = rc_->cluster;
        c->core = rc_->core;
        c->thread = rc_->thread;
        c->numa = rc_->numa_node;
        c->l2 = rc_->l2_group;
        c->l3 = rc_->l3_group;
        c->max_mhz = rc_->max_mhz;
        c->state = rc_->state < KS_CPU_STATE__COUNT ? rc_->state : KS_CPU_OFFLINE;
        c->reserved = rc_->reserved;
        c->kind = (rc_->kind >= 0 && (uint32_t)rc_->kind < r->n_kinds) ? (int16_t)rc_->kind : -1;
        c->kind_class = c->kind >= 0 ? h->kinds[c->kind].kind_class : KS_KIND_PERFORMANCE;
        /* the usable set the scheduler trusts never exceeds native */
        ks_featset usable;
        ks_featset_and(&usable, &rc_->usable, &rc_->native);
        if (c->state == KS_CPU_OFFLINE || c->state == KS_CPU_QUARANTINED)
            ks_featset_clear(&usable);
        if (!set_intern(f, &rc_->native, &c->native) || !set_intern(f, &usable, &c->usable))
            goto oom;
    }
    uint32_t g = r->n_cpus;
    if (old)
        for (uint32_t i = 0; i < old->n_cpus; i++) {
            const kcpu *oc = &old->cpus[i];
            if (!oc->vm || ks_report_find_cpu(r, oc->id))
                continue;
            kcpu *c = &h->cpus[g++];
            *c = *oc;
            c->vm = NULL;
            c->iso_block = c->busy_sibs = 0;
            c->ghost = true;
            c->state = KS_CPU_OFFLINE;
            c->kind = -1;
        }
    if (n_ghosts)
        qsort(h->cpus, h->n_cpus, sizeof(kcpu), cpu_id_cmp);
    for (uint32_t i = 1; i < h->n_cpus; i++)
        if (h->cpus[i].id <= h->cpus[i - 1].id) {
            rc = ks_err_set_field(err, KS_EINVAL, "cpus", "cpu ids not unique and ascending at %d",
                                  h->cpus[i].id);
            goto fail;
        }

    /* SMT siblings: same (package, core); a circular list through sib_next. */
    for (uint32_t i = 0; i < h->n_cpus; i++) {
        h->cpus[i].sib_next = i;
        h->cpus[i].hc = NONE;
        h->topo[i] = i;
    }
    qsort_r(h->topo, h->n_cpus, sizeof(uint32_t), topo_cmp, h);
    for (uint32_t p = 0; p < h->n_cpus; p++)
        h->cpus[h->topo[p]].topo_pos = p;
    /* in topological order, siblings are adjacent (same numa/package/l3/l2/core) */
    for (uint32_t p = 0; p < h->n_cpus;) {
        uint32_t q = p + 1;
        const kcpu *a = &h->cpus[h->topo[p]];
        while (q < h->n_cpus && h->cpus[h->topo[q]].package == a->package &&
               h->cpus[h->topo[q]].core == a->core && a->core >= 0)
            q++;
        for (uint32_t k = p; k < q; k++)
            h->cpus[h->topo[k]].sib_next = h->topo[k + 1 < q ? k + 1 : p];
        p = q;
    }

    /* classes of usable CPUs */
    uint32_t *cls_of = fa_array(f, h->n_cpus, sizeof(uint32_t));
    if (!cls_of)
        goto oom;
    ks_featset_clear(&h->baseline);
    bool first = true;
    for (uint32_t i = 0; i < h->n_cpus; i++) {
        kcpu *c = &h->cpus[i];
        cls_of[i] = NONE;
        if (!ks_sched__cpu_usable(c))
            continue;
        if (!cls_intern(f, c->usable, c->kind_class, &cls_of[i])) {
            fa_free(f, cls_of);
            goto oom;
        }
        if (first)
            h->baseline = f->sets[c->usable];
        else
            ks_featset_and(&h->baseline, &h->baseline, &f->sets[c->usable]);
        first = false;
        h->n_usable++;
    }
    /* distinct classes, in first-seen topological order */
    uint32_t n_hc = 0;
    h->classes = fa_array(f, h->n_usable ? h->n_usable : 1, sizeof(ks_sched__hclass));
    if (!h->classes) {
        fa_free(f, cls_of);
        goto oom;
    }
    for (uint32_t p = 0; p < h->n_cpus; p++) {
        uint32_t i = h->topo[p];
        if (cls_of[i] == NONE)
            continue;
        uint32_t k = 0;
        while (k < n_hc && h->classes[k].cls != cls_of[i])
            k++;
        if (k == n_hc) {
            h->classes[n_hc].cls = cls_of[i];
            h->classes[n_hc].pos = NONE;
            h->classes[n_hc].min_mhz = h->cpus[i].max_mhz;
            n_hc++;
        }
        h->classes[k].n_cpus++;
        h->cpus[i].hc = k;
        if (h->cpus[i].max_mhz > h->classes[k].max_mhz)
            h->classes[k].max_mhz = h->cpus[i].max_mhz;
        if (h->cpus[i].max_mhz < h->classes[k].min_mhz)
            h->classes[k].min_mhz = h->cpus[i].max_mhz;
    }
    h->n_classes = n_hc;
    fa_free(f, cls_of);
    for (uint32_t k = 0; k < n_hc; k++) {
        h->classes[k].cpus = fa_array(f, h->classes[k].n_cpus, sizeof(uint32_t));
        if (!h->classes[k].cpus)
            goto oom;
        h->classes[k].n_free = 0;
    }
    for (uint32_t p = 0; p < h->n_cpus; p++) {
        uint32_t i = h->topo[p];
        if (h->cpus[i].hc == NONE)
            continue;
        ks_sched__hclass *hc = &h->classes[h->cpus[i].hc];
        hc->cpus[hc->n_free++] = i;
        h->free_kind[h->cpus[i].kind_class]++;
        h->iso_free_kind[h->cpus[i].kind_class]++;
    }
    *out = h;
    return KS_OK;
oom:
    rc = ks_err_set(err, KS_ENOMEM, "out of memory indexing host '%s'", r->host.id);
fail:
    host_free(f, h);
    return rc;
}

/* The VMs holding CPUs of h, each once, through the scratch buffer. */
static uint32_t host_vms(const ks_fleet *f, const khost *h, kvm ***out)
{
    kvm **list = ks_sched__scratch_buf(f, 7, (h->n_vms + 1) * sizeof(kvm *));
    uint32_t n = 0;
    if (!list) {
        *out = NULL;
        return 0;
    }
    for (uint32_t i = 0; i < h->n_cpus && n < h->n_vms; i++) {
        kvm *vm = h->cpus[i].vm;
        if (!vm)
            continue;
        bool seen = false;
        for (uint32_t j = 0; j < n && !seen; j++)
            seen = list[j] == vm;
        /* vCPU 0's CPU identifies the VM's first sighting cheaply in most cases */
        if (!seen)
            list[n++] = vm;
    }
    *out = list;
    return n;
}

ks_code ks_fleet_host_update(ks_fleet *f, const ks_report *r, ks_sched_affected *affected,
                             ks_err *err)
{
    if (!f || !r)
        return ks_err_set(err, KS_EINVAL, "no fleet or report");
    if (!ks_id_valid(r->host.id))
        return ks_err_set_field(err, KS_EINVAL, "host.id", "invalid host id '%s'", r->host.id);
    if (r->n_cpus == 0 || r->n_cpus > KS_REPORT_MAX_CPUS)
        return ks_err_set_field(err, KS_EINVAL, "cpus", "host '%s' reports %u cpus", r->host.id,
                                r->n_cpus);
    if (!r->cpus || (r->n_kinds && !r->kinds) || (r->n_numa && !r->numa))
        return ks_err_set(err, KS_EINVAL, "report of '%s' lacks an array it counts", r->host.id);
    khost *old = smap_get(&f->host_map, r->host.id);
    khost *h = NULL;
    ks_code rc = host_build(f, r, old, &h, err);
    if (rc != KS_OK)
        return rc;
    if (!host_reserve_links(f, h))
        goto oom;
    if (!old) {
        if (!fa_grow(f, (void **)&f->hosts, &f->cap_hosts, f->n_hosts + 1, sizeof(khost *)))
            goto oom_reserved;
        ks_sched__scratch *sc = f->sc;
        if (f->n_hosts + 1 > sc->host_cap) {
            uint32_t nc = sc->host_cap ? sc->host_cap * 2 : 64;
            uint32_t *ns = calloc(nc, sizeof(uint32_t));
            if (!ns)
                goto oom_reserved;
            if (sc->host_cap)
                memcpy(ns, sc->host_stamp, sc->host_cap * sizeof(uint32_t));
            free(sc->host_stamp);
            sc->mem += (size_t)(nc - sc->host_cap) * sizeof(uint32_t);
            sc->host_stamp = ns;
            sc->host_cap = nc;
        }
        if (!fa_grow(f, (void **)&f->hsum, &f->cap_hsum, f->n_hosts + 1, sizeof(ks_sched__hsum)))
            goto oom_reserved;
        if (!smap_put(f, &f->host_map, h->id, h))
            goto oom_reserved;
        h->index = f->n_hosts;
        f->hosts[f->n_hosts++] = h;
        host_link(f, h);
        pools_host_changed(f, h->id, h, true);
        return KS_OK;
    }

    /* Replace: move every allocation of old onto h (nothing below can fail
     * except the affected list, which only the caller reads). */
    kvm **vms = NULL;
    uint32_t n_vms = host_vms(f, old, &vms);
    if (old->n_vms && !vms)
        goto oom_reserved;
    host_unlink(f, old);
    h->index = old->index;
    h->n_aa = 0;
    if (old->n_aa) {
        h->aa = old->aa;
        h->n_aa = old->n_aa;
        h->cap_aa = old->cap_aa;
        old->aa = NULL;
        old->n_aa = old->cap_aa = 0;
    }
    h->n_vms = old->n_vms;
    for (uint32_t v = 0; v < n_vms; v++) {
        kvm *vm = vms[v];
        vm->host = h;
        for (uint32_t i = 0; i < vm->plan->n_vcpus; i++) {
            int32_t ci = cpu_find(h, vm->plan->vcpus[i].host_cpu);
            if (ci < 0)
                continue; /* impossible: ghosts were added for every held CPU */
            vm->cpu_ix[i] = (uint32_t)ci;
            cpu_set_owner(h, (uint32_t)ci, vm);
        }
    }
    for (uint32_t v = 0; v < n_vms; v++) {
        kvm *vm = vms[v];
        for (uint32_t i = 0; i < vm->plan->n_vcpus; i++) {
            const kcpu *c = &h->cpus[vm->cpu_ix[i]];
            bool ok = true;
            if (c->ghost)
                ok = affected_add(affected, vm, c, (int32_t)i, "vanished");
            else if (c->state == KS_CPU_OFFLINE || c->state == KS_CPU_QUARANTINED)
                ok = affected_add(affected, vm, c, (int32_t)i, ks_cpu_state_to_str(c->state));
            else if (c->reserved)
                ok = affected_add(affected, vm, c, (int32_t)i, "reserved");
            else if (!ks_featset_subset(&vm->plan->visible, &f->sets[c->usable])) {
                ks_featset lost;
                char what[KS_NAME_MAX + 8];
                ks_featset_andnot(&lost, &vm->plan->visible, &f->sets[c->usable]);
                snprintf(what, sizeof(what), "lost %s",
                         ks_feature_name((unsigned)ks_featset_next(&lost, 0)));
                ok = affected_add(affected, vm, c, (int32_t)i, what);
            }
            if (!ok)
                rc = ks_err_set(err, KS_ENOMEM, "out of memory listing affected vms");
        }
    }
    smap_replace(&f->host_map, h->id, h);
    f->hosts[h->index] = h;
    pools_host_changed(f, h->id, h, host_pool_contribution_differs(old, h));
    host_release_links(f, old);
    host_free(f, (khost *)old);
    host_link(f, h);
    return rc;
oom_reserved:
    host_release_links(f, h);
oom:
    host_free(f, h);
    return ks_err_set(err, KS_ENOMEM, "out of memory indexing host '%s'", r->host.id);
}

ks_code ks_fleet_host_set_schedulable(ks_fleet *f, const char *host, bool schedulable, ks_err *err)
{
    khost *h = smap_get(&f->host_map, host);
    if (!h)
        return ks_err_set(err, KS_ENOTFOUND, "no host '%s'", host);
    if (h->schedulable == schedulable)
        return KS_OK;
    host_unlink(f, h);
    h->schedulable = schedulable;
    host_link(f, h);
    pools_host_changed(f, h->id, h, true);
    return KS_OK;
}

ks_code ks_fleet_host_remove(ks_fleet *f, const char *host, ks_err *err)
{
    khost *h = smap_get(&f->host_map, host);
    if (!h)
        return ks_err_set(err, KS_ENOTFOUND, "no host '%s'", host);
    if (h->n_vms)
        return ks_err_set(err, KS_ECONFLICT, "host '%s' still runs %u vm(s)", host, h->n_vms);
    host_unlink(f, h);
    pools_host_changed(f, h->id, NULL, true);
    smap_del(&f->host_map, h->id);
    uint32_t ix = h->index;
    f->hosts[ix] = f->hosts[--f->n_hosts];
    f->hosts[ix]->index = ix;
    if (ix != f->n_hosts) {
        f->hsum[ix] = f->hsum[f->n_hosts];
        pools_host_changed(f, f->hosts[ix]->id, f->hosts[ix], false);
    }
    host_release_links(f, h);
    host_free(f, h);
    return KS_OK;
}

static void host_view(const khost *h, ks_fleet_host_view *out)
{
    memset(out, 0, sizeof(*out));
    out->id = h->id;
    out->vendor = h->vendor;
    out->model_name = h->model;
    out->schedulable = h->schedulable;
    out->n_cpus = h->n_cpus;
    out->n_allocated = h->n_alloc;
    out->n_free = h->free_kind[0] + h->free_kind[1];
    out->n_vms = h->n_vms;
}

ks_code ks_fleet_host_at(const ks_fleet *f, size_t i, ks_fleet_host_view *out, ks_err *err)
{
    if (!f || i >= f->n_hosts)
        return ks_err_set(err, KS_ENOTFOUND, "no host number %zu", i);
    host_view(f->hosts[i], out);
    return KS_OK;
}

ks_code ks_fleet_host_get(const ks_fleet *f, const char *host, ks_fleet_host_view *out, ks_err *err)
{
    const khost *h = smap_get(&f->host_map, host);
    if (!h)
        return ks_err_set(err, KS_ENOTFOUND, "no host '%s'", host);
    host_view(h, out);
    return KS_OK;
}

static void cpu_view(const ks_fleet *f, const khost *h, const kcpu *c, ks_fleet_cpu_view *v)
{
    memset(v, 0, sizeof(*v));
    v->id = c->id;
    v->package = c->package;
    v->core = c->core;
    v->thread = c->thread;
    v->numa_node = c->numa;
    v->l2_group = c->l2;
    v->l3_group = c->l3;
    v->kind_class = c->kind_class;
    v->kind_name = c->kind >= 0 ? h->kinds[c->kind].name : "";
    v->max_mhz = c->max_mhz;
    v->state = c->state;
    v->reserved = c->reserved;
    v->native = &f->sets[c->native];
    v->usable = &f->sets[c->usable];
    v->vm = c->vm ? c->vm->name : NULL;
}

ks_code ks_fleet_host_cpus(const ks_fleet *f, const char *host, ks_fleet_cpu_fn cb, void *ctx,
                           ks_err *err)
{
    const khost *h = smap_get(&f->host_map, host);
    if (!h)
        return ks_err_set(err, KS_ENOTFOUND, "no host '%s'", host);
    for (uint32_t i = 0; i < h->n_cpus; i++) {
        ks_fleet_cpu_view v;
        cpu_view(f, h, &h->cpus[i], &v);
        if (!cb(ctx, &v))
            break;
    }
    return KS_OK;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return n == 0;
}

void ks_fleet_hosts_matching(const ks_fleet *f, const char *vendor, const char *model_substr,
                             const ks_featset *required, ks_fleet_host_fn cb, void *ctx)
{
    for (uint32_t i = 0; f && i < f->n_hosts; i++) {
        const khost *h = f->hosts[i];
        if (vendor && vendor[0] && strcasecmp(h->vendor, vendor) != 0)
            continue;
        if (model_substr && model_substr[0] && !contains_ci(h->model, model_substr))
            continue;
        if (required && (h->n_usable == 0 || !ks_featset_subset(required, &h->baseline)))
            continue;
        cb(ctx, h->id);
    }
}

/* ------------------------------------------------------------------ */
/* VMs                                                                 */
/* ------------------------------------------------------------------ */

size_t ks_sched__plan_bytes(const ks_plan *p)
{
    size_t n = sizeof(*p) + (size_t)p->n_vcpus * sizeof(ks_plan_vcpu) +
               (size_t)p->n_numa * sizeof(ks_plan_numa) +
               ((size_t)p->pmu.n_allow + p->pmu.n_deny) * KS_NAME_MAX;
    for (uint32_t i = 0; i < p->n_numa; i++)
        n += (size_t)p->numa[i].n_vcpus * sizeof(int32_t);
    return n;
}

/* Maps plan vCPUs to host CPU indices; KS_EINVAL / KS_ECONFLICT. */
static ks_code plan_resolve(const khost *h, const ks_plan *plan, const kvm *self, uint32_t *ix,
                            ks_err *err)
{
    for (uint32_t i = 0; i < plan->n_vcpus; i++) {
        int32_t ci = cpu_find(h, plan->vcpus[i].host_cpu);
        if (ci < 0)
            return ks_err_set_field(err, KS_EINVAL, "vcpus", "host '%s' has no cpu %d", h->id,
                                    plan->vcpus[i].host_cpu);
        for (uint32_t j = 0; j < i; j++)
            if (ix[j] == (uint32_t)ci)
                return ks_err_set_field(err, KS_EINVAL, "vcpus", "cpu %d used twice",
                                        plan->vcpus[i].host_cpu);
        const kvm *owner = h->cpus[ci].vm;
        if (owner && owner != self)
            return ks_err_set(err, KS_ECONFLICT, "cpu %d of host '%s' is allocated to '%s'",
                              plan->vcpus[i].host_cpu, h->id, owner->name);
        ix[i] = (uint32_t)ci;
    }
    return KS_OK;
}

ks_code ks_fleet_vm_add(ks_fleet *f, const ks_vm_request *req, const ks_plan *plan, ks_err *err)
{
    ks_code rc = KS_OK;
    kvm *vm = NULL;
    ks_plan *copy = NULL;
    if (!f || !req || !plan)
        return ks_err_set(err, KS_EINVAL, "no fleet, request or plan");
    if (!ks_id_valid(plan->vm))
        return ks_err_set_field(err, KS_EINVAL, "vm", "invalid vm name '%s'", plan->vm);
    if (plan->n_vcpus == 0 || plan->n_vcpus > KS_VM_MAX_VCPUS || !plan->vcpus)
        return ks_err_set_field(err, KS_EINVAL, "vcpus", "plan of '%s' has %u vcpus", plan->vm,
                                plan->n_vcpus);
    if (smap_get(&f->vm_map, plan->vm))
        return ks_err_set(err, KS_EEXIST, "vm '%s' already exists", plan->vm);
    khost *h = smap_get(&f->host_map, plan->host);
    if (!h)
        return ks_err_set(err, KS_ENOTFOUND, "no host '%s'", plan->host);
    vm = fa_alloc(f, sizeof(*vm));
    if (!vm)
        goto oom;
    vm->cpu_ix = fa_array(f, plan->n_vcpus, sizeof(uint32_t));
    if (!vm->cpu_ix)
        goto oom;
    rc = plan_resolve(h, plan, NULL, vm->cpu_ix, err);
    if (rc != KS_OK)
        goto done;
    rc = ks_plan_dup(&copy, plan, err);
    if (rc != KS_OK)
        goto done;
    snprintf(vm->name, sizeof(vm->name), "%s", plan->vm);
    vm->host = h;
    vm->required = req->required;
    vm->forbidden = req->forbidden;
    snprintf(vm->pool, sizeof(vm->pool), "%s", req->pool);
    snprintf(vm->aa, sizeof(vm->aa), "%s", req->anti_affinity_group);
    vm->smt = req->smt;
    vm->numa = req->numa;
    vm->placement = req->placement;
    vm->min_mhz = req->min_mhz;
    vm->n_performance = req->n_performance;
    vm->n_efficiency = req->n_efficiency;
    vm->n_any = req->n_any;
    if (!smap_put(f, &f->vm_map, vm->name, vm))
        goto oom;
    if (!aa_add(f, h, vm->aa)) {
        smap_del(&f->vm_map, vm->name);
        goto oom;
    }
    vm->plan = copy;
    vm->plan_bytes = ks_sched__plan_bytes(copy);
    f->mem += vm->plan_bytes;
    copy = NULL;
    host_unlink(f, h);
    for (uint32_t i = 0; i < plan->n_vcpus; i++)
        cpu_set_owner(h, vm->cpu_ix[i], vm);
    h->n_vms++;
    host_link(f, h);
    return KS_OK;
oom:
    rc = ks_err_set(err, KS_ENOMEM, "out of memory recording vm '%s'", plan->vm);
done:
    ks_plan_free(copy);
    if (vm) {
        fa_free(f, vm->cpu_ix);
        fa_free(f, vm);
    }
    return rc;
}

ks_code ks_fleet_vm_remove(ks_fleet *f, const char *name, ks_err *err)
{
    kvm *vm = smap_get(&f->vm_map, name);
    if (!vm)
        return ks_err_set(err, KS_ENOTFOUND, "no vm '%s'", name);
    khost *h = vm->host;
    host_unlink(f, h);
    for (uint32_t i = 0; i < vm->plan->n_vcpus; i++)
        cpu_set_owner(h, vm->cpu_ix[i], NULL);
    h->n_vms--;
    aa_del(h, vm->aa);
    host_link(f, h);
    smap_del(&f->vm_map, vm->name);
    vm_free(f, vm);
    return KS_OK;
}

ks_code ks_fleet_vm_update_plan(ks_fleet *f, const ks_plan *plan, ks_err *err)
{
    ks_code rc;
    kvm *vm = smap_get(&f->vm_map, plan->vm);
    ks_plan *copy = NULL;
    uint32_t *ix = NULL;
    if (!vm)
        return ks_err_set(err, KS_ENOTFOUND, "no vm '%s'", plan->vm);
    if (strcmp(plan->host, vm->host->id) != 0)
        return ks_err_set_field(err, KS_EINVAL, "host", "plan moves '%s' to another host",
                                plan->vm);
    if (plan->generation <= vm->plan->generation)
        return ks_err_set_field(err, KS_EINVAL, "generation",
                                "generation %llu of '%s' is not above %llu",
                                (unsigned long long)plan->generation, plan->vm,
                                (unsigned long long)vm->plan->generation);
    if (plan->n_vcpus == 0 || plan->n_vcpus > KS_VM_MAX_VCPUS)
        return ks_err_set_field(err, KS_EINVAL, "vcpus", "plan has %u vcpus", plan->n_vcpus);
    ix = fa_array(f, plan->n_vcpus, sizeof(uint32_t));
    if (!ix)
        return ks_err_set(err, KS_ENOMEM, "out of memory updating '%s'", plan->vm);
    rc = plan_resolve(vm->host, plan, vm, ix, err);
    if (rc != KS_OK)
        goto done;
    rc = ks_plan_dup(&copy, plan, err);
    if (rc != KS_OK)
        goto done;
    khost *h = vm->host;
    host_unlink(f, h);
    for (uint32_t i = 0; i < vm->plan->n_vcpus; i++)
        cpu_set_owner(h, vm->cpu_ix[i], NULL);
    for (uint32_t i = 0; i < plan->n_vcpus; i++)
        cpu_set_owner(h, ix[i], vm);
    host_link(f, h);
    f->mem -= vm->plan_bytes;
    ks_plan_free(vm->plan);
    vm->plan = copy;
    vm->plan_bytes = ks_sched__plan_bytes(copy);
    f->mem += vm->plan_bytes;
    fa_free(f, vm->cpu_ix);
    vm->cpu_ix = ix;
    return KS_OK;
done:
    fa_free(f, ix);
    return rc;
}

const ks_plan *ks_fleet_vm_get_plan(const ks_fleet *f, const char *name)
{
    const kvm *vm = f ? smap_get(&f->vm_map, name) : NULL;
    return vm ? vm->plan : NULL;
}

void ks_fleet_vms_foreach(const ks_fleet *f, ks_fleet_plan_fn cb, void *ctx)
{
    for (uint32_t i = 0; f && i < f->vm_map.cap; i++)
        if (f->vm_map.slots[i].key) {
            const kvm *vm = f->vm_map.slots[i].val;
            if (!cb(ctx, vm->plan))
                return;
        }
}

/* ------------------------------------------------------------------ */
/* Pools                                                               */
/* ------------------------------------------------------------------ */

const ks_sched__pool *ks_sched__pool_find(const ks_fleet *f, const char *name)
{
    for (uint32_t i = 0; i < f->n_pools; i++)
        if (strcmp(f->pools[i]->name, name) == 0)
            return f->pools[i];
    return NULL;
}

bool ks_sched__pool_has(const kpool *p, const char *host)
{
    return smap_get(&p->set, host) != NULL;
}

static int member_cmp(const void *a, const void *b, void *ctx)
{
    const kpool *p = ctx;
    return strcmp(p->members[*(const uint32_t *)a], p->members[*(const uint32_t *)b]);
}

ks_code ks_fleet_pool_set(ks_fleet *f, const char *name, const char *const *hosts, size_t n,
                          ks_err *err)
{
    if (!ks_id_valid(name))
        return ks_err_set_field(err, KS_EINVAL, "name", "invalid pool name '%s'", name);
    if (n > UINT32_MAX / 2)
        return ks_err_set(err, KS_EINVAL, "pool '%s' has too many members", name);
    for (size_t i = 0; i < n; i++)
        if (!hosts[i] || !ks_id_valid(hosts[i]))
            return ks_err_set_field(err, KS_EINVAL, "hosts", "invalid host id '%s'",
                                    hosts[i] ? hosts[i] : "(null)");
    kpool *p = fa_alloc(f, sizeof(*p));
    if (!p)
        goto oom;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->members = fa_array(f, n, KS_ID_MAX);
    p->ptrs = fa_array(f, n, sizeof(char *));
    p->hosts = fa_array(f, n, sizeof(khost *));
    p->hix = fa_array(f, n, sizeof(uint32_t));
    p->rank = fa_array(f, n, sizeof(uint32_t));
    if (!p->members || !p->ptrs || !p->hosts || !p->hix || !p->rank)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        if (smap_get(&p->set, hosts[i]))
            continue;
        snprintf(p->members[p->n], KS_ID_MAX, "%s", hosts[i]);
        p->ptrs[p->n] = p->members[p->n];
        p->hosts[p->n] = smap_get(&f->host_map, hosts[i]);
        p->hix[p->n] = p->hosts[p->n] ? p->hosts[p->n]->index : NONE;
        if (!smap_put(f, &p->set, p->members[p->n], p->members[p->n]))
            goto oom;
        p->n++;
    }
    /* ranks by id, so candidate ties break in id order without reading ids */
    uint32_t *order = fa_array(f, p->n, sizeof(uint32_t));
    if (!order)
        goto oom;
    for (uint32_t i = 0; i < p->n; i++)
        order[i] = i;
    qsort_r(order, p->n, sizeof(uint32_t), member_cmp, p);
    for (uint32_t i = 0; i < p->n; i++)
        p->rank[order[i]] = i;
    fa_free(f, order);
    for (uint32_t i = 0; i < f->n_pools; i++)
        if (strcmp(f->pools[i]->name, name) == 0) {
            pool_free(f, f->pools[i]);
            f->pools[i] = p;
            return KS_OK;
        }
    if (!fa_grow(f, (void **)&f->pools, &f->cap_pools, f->n_pools + 1, sizeof(kpool *)))
        goto oom;
    f->pools[f->n_pools++] = p;
    return KS_OK;
oom:
    pool_free(f, p);
    return ks_err_set(err, KS_ENOMEM, "out of memory setting pool '%s'", name);
}

ks_code ks_fleet_pool_remove(ks_fleet *f, const char *name, ks_err *err)
{
    for (uint32_t i = 0; i < f->n_pools; i++) {
        if (strcmp(f->pools[i]->name, name) != 0)
            continue;
        for (uint32_t s = 0; s < f->vm_map.cap; s++) {
            const kvm *vm = f->vm_map.slots[s].val;
            if (f->vm_map.slots[s].key && strcmp(vm->pool, name) == 0)
                return ks_err_set(err, KS_ECONFLICT, "pool '%s' still has vm '%s'", name, vm->name);
        }
        pool_free(f, f->pools[i]);
        f->pools[i] = f->pools[--f->n_pools];
        return KS_OK;
    }
    return ks_err_set(err, KS_ENOTFOUND, "no pool '%s'", name);
}

/* The intersection over the members' current hosts (by id when `by_id`, else
 * by the cached hosts[] pointers). */
static void pool_baseline_compute(const ks_fleet *f, const kpool *p, bool by_id, ks_featset *out,
                                  uint32_t *n_cpus)
{
    uint32_t n = 0;
    ks_featset_clear(out);
    for (uint32_t i = 0; i < p->n; i++) {
        const khost *h = by_id ? smap_get(&f->host_map, p->members[i]) : p->hosts[i];
        if (!h || !h->schedulable || h->n_usable == 0)
            continue;
        if (n == 0)
            *out = h->baseline;
        else
            ks_featset_and(out, out, &h->baseline);
        n += h->n_usable;
    }
    *n_cpus = n;
}

void ks_sched__pool_baseline_uncached(const ks_fleet *f, const kpool *p, ks_featset *out,
                                      uint32_t *n_cpus)
{
    uint32_t n;
    pool_baseline_compute(f, p, true, out, &n);
    if (n_cpus)
        *n_cpus = n;
}

void ks_sched__pool_baseline(const ks_fleet *f, const kpool *p, ks_featset *out, uint32_t *n_cpus)
{
    if (!p->base_valid) {
        /* the cache is the only state a const reader changes here; every pool is
         * allocated mutable (ks_fleet_pool_set), and calls are serialised */
        kpool *mp = (kpool *)p;
        pool_baseline_compute(f, p, false, &mp->base, &mp->base_cpus);
        mp->base_valid = true;
    }
    *out = p->base;
    if (n_cpus)
        *n_cpus = p->base_cpus;
}

ks_code ks_fleet_pool_baseline(const ks_fleet *f, const char *name, ks_featset *out,
                               uint32_t *n_cpus, ks_err *err)
{
    const kpool *p = ks_sched__pool_find(f, name);
    if (!p)
        return ks_err_set(err, KS_ENOTFOUND, "no pool '%s'", name);
    ks_sched__pool_baseline(f, p, out, n_cpus);
    return KS_OK;
}

typedef struct narrow_item {
    const char *host;
    ks_featset gained;
    unsigned n;
} narrow_item;

static int narrow_cmp(const void *a, const void *b)
{
    const narrow_item *x = a, *y = b;
    if (x->n != y->n)
        return x->n > y->n ? -1 : 1;
    return strcmp(x->host, y->host);
}

ks_code ks_fleet_pool_narrowing(const ks_fleet *f, const char *name, ks_fleet_narrowing_fn cb,
                                void *ctx, ks_err *err)
{
    const kpool *p = ks_sched__pool_find(f, name);
    if (!p)
        return ks_err_set(err, KS_ENOTFOUND, "no pool '%s'", name);
    /* prefix/suffix intersections: baseline without member i in O(members) */
    uint32_t m = 0;
    const khost **hs = calloc(p->n ? p->n : 1, sizeof(*hs));
    ks_featset *pre = calloc((size_t)p->n + 1, sizeof(*pre));
    ks_featset *suf = calloc((size_t)p->n + 1, sizeof(*suf));
    narrow_item *items = calloc(p->n ? p->n : 1, sizeof(*items));
    ks_code rc = KS_OK;
    if (!hs || !pre || !suf || !items) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory computing pool '%s'", name);
        goto done;
    }
    for (uint32_t i = 0; i < p->n; i++)
        if (p->hosts[i])
            hs[m++] = p->hosts[i];
    /* a host that contributes no CPU (drained, all unusable) narrows nothing */
    ks_featset all;
    memset(&all, 0xff, sizeof(all));
    pre[0] = all;
    for (uint32_t i = 0; i < m; i++) {
        bool counts = hs[i]->schedulable && hs[i]->n_usable;
        if (counts)
            ks_featset_and(&pre[i + 1], &pre[i], &hs[i]->baseline);
        else
            pre[i + 1] = pre[i];
    }
    suf[m] = all;
    for (uint32_t i = m; i-- > 0;) {
        bool counts = hs[i]->schedulable && hs[i]->n_usable;
        if (counts)
            ks_featset_and(&suf[i], &suf[i + 1], &hs[i]->baseline);
        else
            suf[i] = suf[i + 1];
    }
    ks_featset base = pre[m];
    for (uint32_t i = 0; i < m; i++) {
        ks_featset without;
        ks_featset_and(&without, &pre[i], &suf[i + 1]);
        items[i].host = hs[i]->id;
        if (ks_featset_equal(&without, &all)) /* it was the only contributor */
            ks_featset_clear(&items[i].gained);
        else
            ks_featset_andnot(&items[i].gained, &without, &base);
        items[i].n = ks_featset_popcount(&items[i].gained);
    }
    qsort(items, m, sizeof(*items), narrow_cmp);
    for (uint32_t i = 0; i < m; i++)
        cb(ctx, items[i].host, &items[i].gained, items[i].n);
done:
    free(hs);
    free(pre);
    free(suf);
    free(items);
    return rc;
}

void ks_fleet_pools_foreach(const ks_fleet *f, ks_fleet_pool_fn cb, void *ctx)
{
    for (uint32_t i = 0; f && i < f->n_pools; i++)
        cb(ctx, f->pools[i]->name, f->pools[i]->ptrs, f->pools[i]->n);
}

/* ------------------------------------------------------------------ */
/* Bans                                                                */
/* ------------------------------------------------------------------ */

void ks_fleet_set_bans(ks_fleet *f, const ks_featset *banned)
{
    if (banned)
        f->bans = *banned;
    else
        ks_featset_clear(&f->bans);
}

void ks_fleet_get_bans(const ks_fleet *f, ks_featset *out)
{
    *out = f->bans;
}

void ks_fleet_vms_seeing(const ks_fleet *f, const ks_featset *features, ks_fleet_vm_fn cb,
                         void *ctx)
{
    for (uint32_t i = 0; f && i < f->vm_map.cap; i++) {
        if (!f->vm_map.slots[i].key)
            continue;
        const kvm *vm = f->vm_map.slots[i].val;
        if (ks_featset_intersects(&vm->plan->visible, features))
            cb(ctx, vm->name, vm->host->id);
    }
}

/* ------------------------------------------------------------------ */
/* Comparison and self-check                                           */
/* ------------------------------------------------------------------ */

#define differ(err, ...) (ks_err_set((err), KS_ECONFLICT, __VA_ARGS__), false)

static bool cpus_equal(const ks_fleet *fa, const kcpu *x, const ks_fleet *fb, const kcpu *y)
{
    const char *vx = x->vm ? x->vm->name : "", *vy = y->vm ? y->vm->name : "";
    return x->id == y->id && x->package == y->package && x->core == y->core &&
           x->thread == y->thread && x->numa == y->numa && x->l2 == y->l2 && x->l3 == y->l3 &&
           x->kind_class == y->kind_class && x->max_mhz == y->max_mhz && x->state == y->state &&
           x->reserved == y->reserved && x->ghost == y->ghost && x->iso_block == y->iso_block &&
           ks_featset_equal(&fa->sets[x->native], &fb->sets[y->native]) &&
           ks_featset_equal(&fa->sets[x->usable], &fb->sets[y->usable]) && strcmp(vx, vy) == 0;
}

static bool plans_equal(const ks_plan *a, const ks_plan *b)
{
    if (a->generation != b->generation || a->n_vcpus != b->n_vcpus ||
        strcmp(a->host, b->host) != 0 || !ks_featset_equal(&a->visible, &b->visible) ||
        !ks_featset_equal(&a->disable, &b->disable) || a->memory_mib != b->memory_mib)
        return false;
    for (uint32_t i = 0; i < a->n_vcpus; i++)
        if (a->vcpus[i].host_cpu != b->vcpus[i].host_cpu ||
            a->vcpus[i].kind_class != b->vcpus[i].kind_class)
            return false;
    return true;
}

bool ks_fleet_equal(const ks_fleet *a, const ks_fleet *b, ks_err *err)
{
    char na[32], nb[32];
    if (a->n_hosts != b->n_hosts) {
        snprintf(na, sizeof(na), "%u", a->n_hosts);
        snprintf(nb, sizeof(nb), "%u", b->n_hosts);
        return differ(err, "host counts differ: %s vs %s", na, nb);
    }
    for (uint32_t i = 0; i < a->n_hosts; i++) {
        const khost *x = a->hosts[i];
        const khost *y = smap_get(&b->host_map, x->id);
        if (!y)
            return differ(err, "host '%s' missing from the second fleet", x->id);
        if (x->schedulable != y->schedulable || x->n_cpus != y->n_cpus || x->n_vms != y->n_vms ||
            x->n_alloc != y->n_alloc || strcmp(x->vendor, y->vendor) != 0 ||
            strcmp(x->model, y->model) != 0 || x->free_kind[0] != y->free_kind[0] ||
            x->free_kind[1] != y->free_kind[1] || x->n_aa != y->n_aa)
            return differ(err, "host '%s' differs in its counts or flags", x->id);
        for (uint32_t c = 0; c < x->n_cpus; c++)
            if (!cpus_equal(a, &x->cpus[c], b, &y->cpus[c])) {
                snprintf(na, sizeof(na), "%d", x->cpus[c].id);
                return differ(err, "host '%s' cpu %s differs", x->id, na);
            }
    }
    if (a->vm_map.n != b->vm_map.n)
        return differ(err, "vm counts differ%s", "");
    for (uint32_t s = 0; s < a->vm_map.cap; s++) {
        if (!a->vm_map.slots[s].key)
            continue;
        const kvm *x = a->vm_map.slots[s].val;
        const kvm *y = smap_get(&b->vm_map, x->name);
        if (!y)
            return differ(err, "vm '%s' missing from the second fleet", x->name);
        if (!plans_equal(x->plan, y->plan) || strcmp(x->pool, y->pool) != 0 ||
            strcmp(x->aa, y->aa) != 0 || x->smt != y->smt)
            return differ(err, "vm '%s' differs", x->name);
    }
    if (a->n_pools != b->n_pools)
        return differ(err, "pool counts differ%s", "");
    for (uint32_t i = 0; i < a->n_pools; i++) {
        const kpool *x = a->pools[i];
        const kpool *y = ks_sched__pool_find(b, x->name);
        if (!y || x->n != y->n)
            return differ(err, "pool '%s' differs", x->name);
        for (uint32_t m = 0; m < x->n; m++)
            if (!ks_sched__pool_has(y, x->members[m]))
                return differ(err, "pool '%s' member '%s' differs", x->name, x->members[m]);
    }
    if (!ks_featset_equal(&a->bans, &b->bans))
        return differ(err, "bans differ%s", "");
    ks_err_clear(err);
    return true;
}

ks_code ks_fleet_check(const ks_fleet *f, ks_err *err)
{
    uint32_t in_bucket[KS_SCHED__N_BUCKETS] = {0};
    for (unsigned k = 0; k < KS_SCHED__N_BUCKETS; k++)
        for (uint32_t v = 0; v < f->n_buckets; v++)
            for (const khost *h = f->buckets[k][v]; h; h = h->bnext[k]) {
                if (!h->linked || h->bval[k] != v || host_bucket_value(h, k) != v)
                    return ks_err_set(err, KS_EINTERNAL, "host '%s' in the wrong bucket", h->id);
                in_bucket[k]++;
            }
    for (unsigned k = 0; k < KS_SCHED__N_BUCKETS; k++)
        if (in_bucket[k] != f->bucket_pop[k])
            return ks_err_set(err, KS_EINTERNAL, "bucket population %u != %u", in_bucket[k],
                              f->bucket_pop[k]);
    for (uint32_t i = 0; i < f->n_hosts; i++) {
        const khost *h = f->hosts[i];
        if (h->index != i || smap_get(&f->host_map, h->id) != h)
            return ks_err_set(err, KS_EINTERNAL, "host '%s' misindexed", h->id);
        ks_sched__hsum hs;
        hsum_of(h, &hs);
        if (i >= f->cap_hsum || memcmp(&hs, &f->hsum[i], sizeof(hs)) != 0)
            return ks_err_set(err, KS_EINTERNAL, "host '%s' summary stale", h->id);
        if (h->linked != h->schedulable)
            return ks_err_set(err, KS_EINTERNAL, "host '%s' link state wrong", h->id);
        uint32_t fk[2] = {0, 0}, isof[2] = {0, 0}, blk[2] = {0, 0}, alloc = 0;
        for (uint32_t c = 0; c < h->n_cpus; c++) {
            const kcpu *cp = &h->cpus[c];
            if (cp->vm) {
                alloc++;
                if (cp->vm->host != h)
                    return ks_err_set(err, KS_EINTERNAL, "cpu %d of '%s' held by a vm elsewhere",
                                      cp->id, h->id);
                bool listed = false;
                for (uint32_t v = 0; v < cp->vm->plan->n_vcpus; v++)
                    listed |= cp->vm->cpu_ix[v] == c;
                if (!listed)
                    return ks_err_set(err, KS_EINTERNAL, "cpu %d of '%s' held by '%s' unlisted",
                                      cp->id, h->id, cp->vm->name);
            } else if (cp->hc != NONE) {
                fk[cp->kind_class]++;
            }
            uint16_t blocks = 0, busy = 0;
            for (uint32_t s = cp->sib_next; s != c; s = h->cpus[s].sib_next) {
                if (h->cpus[s].vm && h->cpus[s].vm->smt == KS_SMT_ISOLATE)
                    blocks++;
                busy += h->cpus[s].vm != NULL;
            }
            if (blocks != cp->iso_block || busy != cp->busy_sibs)
                return ks_err_set(err, KS_EINTERNAL, "cpu %d of '%s' isolation count wrong", cp->id,
                                  h->id);
            if (!cp->vm && cp->hc != NONE && busy == 0)
                isof[cp->kind_class]++;
            if (!cp->vm && cp->hc != NONE && blocks)
                blk[cp->kind_class]++;
        }
        if (blk[0] != h->blocked_kind[0] || blk[1] != h->blocked_kind[1])
            return ks_err_set(err, KS_EINTERNAL, "host '%s' blocked counts wrong", h->id);
        if (isof[0] != h->iso_free_kind[0] || isof[1] != h->iso_free_kind[1])
            return ks_err_set(err, KS_EINTERNAL, "host '%s' isolation-free counts wrong", h->id);
        if (fk[0] != h->free_kind[0] || fk[1] != h->free_kind[1] || alloc != h->n_alloc)
            return ks_err_set(err, KS_EINTERNAL, "host '%s' free/alloc counts wrong", h->id);
        for (uint32_t k = 0; k < h->n_classes; k++) {
            const ks_sched__hclass *hc = &h->classes[k];
            uint32_t fr = 0;
            for (uint32_t j = 0; j < hc->n_cpus; j++)
                fr += h->cpus[hc->cpus[j]].vm == NULL;
            if (fr != hc->n_free)
                return ks_err_set(err, KS_EINTERNAL, "host '%s' class free count wrong", h->id);
            bool should = h->linked && hc->n_free > 0;
            if (should != (hc->pos != NONE))
                return ks_err_set(err, KS_EINTERNAL, "host '%s' class list membership wrong",
                                  h->id);
            if (hc->pos != NONE) {
                const ks_sched__class *cl = &f->classes[hc->cls];
                if (hc->pos >= cl->n_hosts || cl->hosts[hc->pos].h != h ||
                    cl->hosts[hc->pos].hc != k)
                    return ks_err_set(err, KS_EINTERNAL, "host '%s' class list position wrong",
                                      h->id);
            }
        }
    }
    for (uint32_t i = 0; i < f->n_pools; i++) {
        const kpool *p = f->pools[i];
        for (uint32_t m = 0; m < p->n; m++)
            if (p->hosts[m] != smap_get(&f->host_map, p->members[m]) ||
                p->hix[m] != (p->hosts[m] ? p->hosts[m]->index : NONE))
                return ks_err_set(err, KS_EINTERNAL, "pool '%s' member '%s' stale", p->name,
                                  p->members[m]);
        uint32_t *inv = malloc(((size_t)p->n + 1) * sizeof(uint32_t));
        if (!inv)
            return ks_err_set(err, KS_ENOMEM, "out of memory checking pool '%s'", p->name);
        memset(inv, 0xff, ((size_t)p->n + 1) * sizeof(uint32_t));
        bool ranks_ok = true;
        for (uint32_t m = 0; m < p->n && ranks_ok; m++) {
            ranks_ok = p->rank[m] < p->n && inv[p->rank[m]] == NONE;
            if (ranks_ok)
                inv[p->rank[m]] = m;
        }
        for (uint32_t r = 1; r < p->n && ranks_ok; r++)
            ranks_ok = strcmp(p->members[inv[r - 1]], p->members[inv[r]]) < 0;
        free(inv);
        if (!ranks_ok)
            return ks_err_set(err, KS_EINTERNAL, "pool '%s' ranks wrong", p->name);
        if (p->base_valid) {
            ks_featset base;
            uint32_t n;
            ks_sched__pool_baseline_uncached(f, p, &base, &n);
            if (n != p->base_cpus || !ks_featset_equal(&base, &p->base))
                return ks_err_set(err, KS_EINTERNAL, "pool '%s' cached baseline stale", p->name);
        }
    }
    for (uint32_t s = 0; s < f->vm_map.cap; s++) {
        if (!f->vm_map.slots[s].key)
            continue;
        const kvm *vm = f->vm_map.slots[s].val;
        for (uint32_t v = 0; v < vm->plan->n_vcpus; v++) {
            const kcpu *cp = &vm->host->cpus[vm->cpu_ix[v]];
            if (cp->vm != vm || cp->id != vm->plan->vcpus[v].host_cpu)
                return ks_err_set(err, KS_EINTERNAL, "vm '%s' vcpu %u not on its cpu", vm->name, v);
        }
    }
    return KS_OK;
}
