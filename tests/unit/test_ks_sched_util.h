/*
 * test_ks_sched_util.h - synthetic host reports and requests for the
 * scheduler tests and the placement benchmark (header-only, one TU each).
 */
#ifndef TEST_KS_SCHED_UTIL_H
#define TEST_KS_SCHED_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks_feature.h"
#include "ks_report.h"
#include "ks_sched.h"
#include "ks_vm.h"

/* Feature set from space-separated catalogue names; aborts on an unknown one
 * (a typo in a test table is a bug of the test). */
static inline ks_featset tks_fs(const char *names)
{
    ks_featset s;
    char buf[1024];
    ks_featset_clear(&s);
    snprintf(buf, sizeof(buf), "%s", names ? names : "");
    for (char *t = buf; *t;) {
        char *end = strchr(t, ' ');
        if (end)
            *end = '\0';
        if (*t && ks_feature_add_name(&s, t, NULL) != KS_OK) {
            fprintf(stderr, "unknown feature '%s' in test\n", t);
            abort();
        }
        if (!end)
            break;
        t = end + 1;
    }
    return s;
}

#define TKS_BASE "fpu tsc cx8 cmov mmx fxsr sse sse2"
#define TKS_CLIENT_P TKS_BASE " pni ssse3 sse4_1 sse4_2 popcnt aes avx avx2 fma bmi1 bmi2"
#define TKS_CLIENT_E TKS_BASE " pni ssse3 sse4_1 sse4_2 popcnt aes avx avx2 fma bmi1"
#define TKS_SERVER TKS_CLIENT_P " avx512f avx512dq avx512bw avx512vl"

typedef struct tks_hspec {
    const char *id;
    uint32_t n_p, n_e; /* performance / efficiency logical CPUs */
    bool smt;          /* performance cores have 2 threads */
    uint32_t n_numa;   /* CPUs split evenly by id, >= 1 */
    const char *p_feats, *e_feats;
    uint32_t p_mhz, e_mhz;
} tks_hspec;

/* A report for spec; caller frees with ks_report_free(). */
static inline ks_report *tks_report(const tks_hspec *s)
{
    ks_report *r = NULL;
    uint32_t n = s->n_p + s->n_e;
    uint32_t n_numa = s->n_numa ? s->n_numa : 1;
    if (ks_report_new(&r, NULL) != KS_OK || ks_report_alloc_cpus(r, n, NULL) != KS_OK ||
        ks_report_alloc_numa(r, n_numa, NULL) != KS_OK)
        abort();
    snprintf(r->host.id, sizeof(r->host.id), "%s", s->id);
    snprintf(r->host.vendor, sizeof(r->host.vendor), "GenuineIntel");
    snprintf(r->host.model_name, sizeof(r->host.model_name), "%s",
             s->n_e ? "12th Gen Intel(R) Core(TM) i7-12700" : "Intel(R) Xeon(R) Platinum 8480");
    r->host.arch = KS_ARCH_X86_64;
    r->pmu.version = 5;
    r->pmu.gp_counters = 8;
    r->pmu.fixed_counters = 4;
    if (s->n_e) {
        if (ks_report_alloc_kinds(r, 2, NULL) != KS_OK)
            abort();
        snprintf(r->kinds[0].name, sizeof(r->kinds[0].name), "IntelAtom");
        r->kinds[0].kind_class = KS_KIND_EFFICIENCY;
        r->kinds[0].efficiency_rank = 0;
        snprintf(r->kinds[1].name, sizeof(r->kinds[1].name), "IntelCore");
        r->kinds[1].kind_class = KS_KIND_PERFORMANCE;
        r->kinds[1].efficiency_rank = 1;
    }
    for (uint32_t i = 0; i < n_numa; i++) {
        r->numa[i].id = (int32_t)i;
        r->numa[i].memory_mib = 65536;
    }
    ks_featset pf = tks_fs(s->p_feats ? s->p_feats : TKS_SERVER);
    ks_featset ef = tks_fs(s->e_feats ? s->e_feats : TKS_CLIENT_E);
    uint32_t p_cores = s->smt ? (s->n_p + 1) / 2 : s->n_p;
    for (uint32_t i = 0; i < n; i++) {
        ks_cpu *c = &r->cpus[i];
        bool perf = i < s->n_p;
        c->id = (int32_t)i;
        c->package = 0;
        c->die = 0;
        c->numa_node = (int32_t)((uint64_t)i * n_numa / n);
        if (perf) {
            c->core = (int32_t)(s->smt ? i / 2 : i);
            c->thread = (int32_t)(s->smt ? i % 2 : 0);
            c->l2_group = c->core;
        } else {
            uint32_t j = i - s->n_p;
            c->core = (int32_t)(p_cores + j);
            c->thread = 0;
            c->l2_group = (int32_t)(p_cores + j / 4); /* 4 E cores share an L2 */
        }
        c->cluster = c->l2_group;
        c->l3_group = 100000 + c->numa_node;
        c->kind = s->n_e ? (perf ? 1 : 0) : -1;
        c->max_mhz = perf ? (s->p_mhz ? s->p_mhz : 4900) : (s->e_mhz ? s->e_mhz : 3600);
        c->base_mhz = c->max_mhz / 2;
        c->native = perf ? pf : ef;
        c->usable = c->native;
        c->state = KS_CPU_ONLINE;
    }
    return r;
}

/* Marks `names` faulty on cpu (usable shrinks by their dependents closure). */
static inline void tks_degrade(ks_report *r, int32_t cpu, const char *names)
{
    ks_cpu *c = ks_report_find_cpu(r, cpu);
    ks_featset bad = tks_fs(names), closure;
    ks_feature_dependents_closure(&closure, &bad);
    ks_featset_or(&c->defective, &c->defective, &bad);
    ks_featset_andnot(&c->usable, &c->usable, &closure);
    c->state = KS_CPU_DEGRADED;
}

static inline void tks_set_state(ks_report *r, int32_t cpu, ks_cpu_state st)
{
    ks_cpu *c = ks_report_find_cpu(r, cpu);
    c->state = (uint8_t)st;
    if (st == KS_CPU_OFFLINE || st == KS_CPU_QUARANTINED)
        ks_featset_clear(&c->usable);
}

static inline ks_vm_request tks_req(const char *name, uint32_t n_p, uint32_t n_e, uint32_t n_any,
                                    const char *required)
{
    ks_vm_request q;
    memset(&q, 0, sizeof(q));
    snprintf(q.name, sizeof(q.name), "%s", name);
    q.n_performance = n_p;
    q.n_efficiency = n_e;
    q.n_any = n_any;
    q.memory_mib = 1024 * (n_p + n_e + n_any);
    q.required = tks_fs(required);
    return q;
}

#endif
