/*
 * ks_cpuid.c - CPUID dumps, the live CPUID instruction, and the leaf decoders
 * discovery needs beyond the feature catalogue.
 *
 * A dump is an immutable array of records once loaded; lookups are linear
 * (a dump holds ~70 records and a report decodes ~100 leaves per CPU, which is
 * cheaper than sorting).  Live CPUID answers for whatever CPU the calling
 * thread runs on: pinning is the caller's job (ks_discover).  No state, no
 * locks: everything here is thread-safe.
 */
#include "ks_cpuid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KS_CPUID_HAVE_INSN 1
#else
#define KS_CPUID_HAVE_INSN 0
#endif

#define MASK_ECX 4u /* hwloc dump mask bit: the record depends on the input ECX */

typedef struct ks_cpuid_record {
    uint32_t mask;
    uint32_t in[4];
    uint32_t out[4];
} ks_cpuid_record;

struct ks_cpuid_dump {
    uint32_t n;
    ks_cpuid_record *rec;
};

/* ---- dump parsing --------------------------------------------------------------------- */

static const char *skip_blanks(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    return p;
}

/* Parses 1..8 hex digits at *pp (no sign, no 0x); false when none or too many. */
static bool parse_hex32(const char **pp, const char *end, uint32_t *out)
{
    const char *p = *pp;
    uint32_t v = 0;
    int n = 0;
    for (; p < end; p++, n++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            break;
        if (n == 8)
            return false;
        v = (v << 4) | (uint32_t)d;
    }
    if (n == 0)
        return false;
    /* A number must end at a blank or the end of the line, not run into junk. */
    if (p < end && *p != ' ' && *p != '\t' && *p != '\r')
        return false;
    *pp = p;
    *out = v;
    return true;
}

static bool parse_record(const char *p, const char *end, ks_cpuid_record *r)
{
    uint32_t v[9];
    for (int i = 0; i < 9; i++) {
        p = skip_blanks(p, end);
        if (i == 5) {
            if (end - p < 2 || p[0] != '=' || p[1] != '>')
                return false;
            p = skip_blanks(p + 2, end);
        }
        if (!parse_hex32(&p, end, &v[i]))
            return false;
    }
    if (skip_blanks(p, end) != end)
        return false;
    /* Masks only ever name the four input registers. */
    if (v[0] == 0 || v[0] > 0xf)
        return false;
    r->mask = v[0];
    for (int i = 0; i < 4; i++) {
        r->in[i] = v[1 + i];
        r->out[i] = v[5 + i];
    }
    return true;
}

static const ks_cpuid_record *dump_find(const ks_cpuid_dump *d, uint32_t leaf, uint32_t subleaf)
{
    for (uint32_t i = 0; i < d->n; i++) {
        const ks_cpuid_record *r = &d->rec[i];
        if (r->in[0] != leaf)
            continue;
        if ((r->mask & MASK_ECX) && subleaf != KS_CPUID_NO_SUBLEAF && r->in[2] != subleaf)
            continue;
        return r;
    }
    return NULL;
}

ks_code ks_cpuid_dump_parse(ks_cpuid_dump **out, const char *name, const char *text, size_t len,
                            ks_err *err)
{
    ks_code rc = KS_OK;
    ks_cpuid_dump *d = calloc(1, sizeof(*d));
    uint32_t cap = 0;
    if (!d)
        return ks_err_set(err, KS_ENOMEM, "out of memory loading cpuid dump '%s'", name);
    if (len > KS_CPUID_DUMP_MAX_BYTES) {
        rc = ks_err_set(err, KS_EINVAL, "cpuid dump '%s' is larger than %u bytes", name,
                        KS_CPUID_DUMP_MAX_BYTES);
        goto done;
    }
    if (memchr(text, '\0', len)) {
        rc = ks_err_set(err, KS_EINVAL, "cpuid dump '%s' is binary, not text", name);
        goto done;
    }
    const char *p = text, *end = text + len;
    unsigned line = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *lend = eol ? eol : end;
        line++;
        const char *s = skip_blanks(p, lend);
        if (s < lend && *s != '#') {
            if (!eol) {
                /* hwloc writes a newline after every record: a last line without
                 * one means the file was cut. */
                rc = ks_err_set(err, KS_EINVAL, "cpuid dump '%s' line %u: truncated record",
                                name, line);
                goto done;
            }
            if (d->n == KS_CPUID_DUMP_MAX_RECORDS) {
                rc = ks_err_set(err, KS_EINVAL, "cpuid dump '%s' has more than %u records", name,
                                KS_CPUID_DUMP_MAX_RECORDS);
                goto done;
            }
            if (d->n == cap) {
                uint32_t ncap = cap ? cap * 2 : 64;
                ks_cpuid_record *nr = realloc(d->rec, ncap * sizeof(*nr));
                if (!nr) {
                    rc = ks_err_set(err, KS_ENOMEM, "out of memory loading cpuid dump '%s'", name);
                    goto done;
                }
                d->rec = nr;
                cap = ncap;
            }
            if (!parse_record(s, lend, &d->rec[d->n])) {
                rc = ks_err_set(err, KS_EINVAL, "cpuid dump '%s' line %u: malformed cpuid record",
                                name, line);
                goto done;
            }
            d->n++;
        }
        p = eol ? eol + 1 : end;
    }
    if (!dump_find(d, 0, 0) || !dump_find(d, 1, 0)) {
        rc = ks_err_set(err, KS_EINVAL, "cpuid dump '%s' lacks leaf %s", name,
                        dump_find(d, 0, 0) ? "1" : "0");
        goto done;
    }
    *out = d;
    d = NULL;
done:
    ks_cpuid_dump_free(d);
    return rc;
}

ks_code ks_cpuid_dump_load(ks_cpuid_dump **out, const char *path, ks_err *err)
{
    ks_code rc = KS_OK;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rbe");
    if (!f) {
        if (errno == ENOENT)
            return ks_err_set(err, KS_ENOTFOUND, "cpuid dump '%s' does not exist", path);
        return ks_err_set(err, KS_EIO, "cannot open cpuid dump '%s' (errno %d)", path, errno);
    }
    /* One byte more than the cap so that an oversized file is detected, not cut. */
    buf = malloc(KS_CPUID_DUMP_MAX_BYTES + 1);
    if (!buf) {
        rc = ks_err_set(err, KS_ENOMEM, "out of memory reading '%s'", path);
        goto done;
    }
    len = fread(buf, 1, KS_CPUID_DUMP_MAX_BYTES + 1, f);
    if (ferror(f)) {
        rc = ks_err_set(err, KS_EIO, "cannot read cpuid dump '%s'", path);
        goto done;
    }
    rc = ks_cpuid_dump_parse(out, path, buf, len, err);
done:
    free(buf);
    fclose(f);
    return rc;
}

void ks_cpuid_dump_free(ks_cpuid_dump *d)
{
    if (!d)
        return;
    free(d->rec);
    free(d);
}

bool ks_cpuid_dump_fn(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4])
{
    const ks_cpuid_record *r = dump_find(ctx, leaf, subleaf);
    if (!r)
        return false;
    memcpy(regs, r->out, sizeof(r->out));
    return true;
}

/* ---- live ----------------------------------------------------------------------------- */

bool ks_cpuid_live_available(void)
{
    return KS_CPUID_HAVE_INSN;
}

bool ks_cpuid_live_fn(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4])
{
    (void)ctx;
#if KS_CPUID_HAVE_INSN
    unsigned a, b, c, d;
    unsigned max = __get_cpuid_max(leaf & 0x80000000u, NULL);
    if (max == 0 || leaf > max)
        return false;
    __cpuid_count(leaf, subleaf == KS_CPUID_NO_SUBLEAF ? 0 : subleaf, a, b, c, d);
    regs[0] = a;
    regs[1] = b;
    regs[2] = c;
    regs[3] = d;
    return true;
#else
    (void)leaf;
    (void)subleaf;
    (void)regs;
    return false;
#endif
}

/* ---- decoders ------------------------------------------------------------------------- */

static bool leaf(ks_cpuid_fn cpuid, void *ctx, uint32_t l, uint32_t sub, uint32_t r[4])
{
    memset(r, 0, 4 * sizeof(uint32_t));
    return cpuid(ctx, l, sub, r);
}

static void put_reg(char *dst, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        dst[i] = (char)((v >> (8 * i)) & 0xff);
}

void ks_cpuid_identify(ks_cpuid_ident *out, ks_cpuid_fn cpuid, void *ctx)
{
    uint32_t r[4];
    memset(out, 0, sizeof(*out));
    if (leaf(cpuid, ctx, 0, 0, r)) {
        out->max_basic = r[0];
        put_reg(out->vendor, r[1]);
        put_reg(out->vendor + 4, r[3]);
        put_reg(out->vendor + 8, r[2]);
        out->vendor[12] = '\0';
        /* A garbled dump must not put control bytes into the report. */
        for (int i = 0; i < 12; i++)
            if ((unsigned char)out->vendor[i] < 0x20 || (unsigned char)out->vendor[i] > 0x7e)
                out->vendor[i] = '?';
    }
    if (leaf(cpuid, ctx, 1, 0, r)) {
        uint32_t fam = (r[0] >> 8) & 0xf, model = (r[0] >> 4) & 0xf;
        if (fam == 0xf)
            fam += (r[0] >> 20) & 0xff;
        if (fam == 0x6 || fam >= 0xf)
            model |= ((r[0] >> 16) & 0xf) << 4;
        out->family = (int32_t)fam;
        out->model = (int32_t)model;
        out->stepping = (int32_t)(r[0] & 0xf);
    }
    if (leaf(cpuid, ctx, 0x80000000u, 0, r) && r[0] >= 0x80000000u && r[0] < 0x8000ffffu)
        out->max_ext = r[0];
    if (out->max_ext >= 0x80000004u) {
        char raw[49] = {0};
        for (uint32_t i = 0; i < 3; i++) {
            leaf(cpuid, ctx, 0x80000002u + i, 0, r);
            for (int j = 0; j < 4; j++)
                put_reg(raw + 16 * i + 4 * j, r[j]);
        }
        /* Brand strings are padded with leading blanks and NULs; keep printable text. */
        size_t o = 0;
        bool blank = true;
        for (size_t i = 0; i < 48 && raw[i]; i++) {
            unsigned char c = (unsigned char)raw[i];
            if (c < 0x20 || c > 0x7e)
                c = ' ';
            if (c == ' ' && blank)
                continue;
            blank = c == ' ';
            out->brand[o++] = (char)c;
        }
        while (o > 0 && out->brand[o - 1] == ' ')
            o--;
        out->brand[o] = '\0';
    }
}

/* True when leaf 4 (deterministic cache parameters) lists a level-3 cache. */
static bool intel_has_l3(ks_cpuid_fn cpuid, void *ctx)
{
    uint32_t r[4];
    for (uint32_t sub = 0; sub < 16; sub++) {
        if (!leaf(cpuid, ctx, 4, sub, r) || (r[0] & 0x1f) == 0)
            break;
        if (((r[0] >> 5) & 7) == 3)
            return true;
    }
    return false;
}

bool ks_cpuid_core_type(ks_cpuid_core *out, ks_cpuid_fn cpuid, void *ctx)
{
    uint32_t r[4];
    ks_cpuid_ident id;
    memset(out, 0, sizeof(*out));
    ks_cpuid_identify(&id, cpuid, ctx);
    if (strcmp(id.vendor, "GenuineIntel") == 0 && id.max_basic >= 0x1a) {
        if (!leaf(cpuid, ctx, 7, 0, r) || !(r[3] & (1u << 15)))
            return false;
        if (!leaf(cpuid, ctx, 0x1a, 0, r))
            return false;
        uint32_t type = r[0] >> 24;
        out->native_model = r[0] & 0xffffff;
        if (type == 0x40) {
            out->name = "IntelCore";
            out->rank = 2;
        } else if (type == 0x20) {
            bool l3 = intel_has_l3(cpuid, ctx);
            out->name = l3 ? "IntelAtom" : "IntelAtomLP";
            out->rank = l3 ? 1 : 0;
        } else {
            return false;
        }
        return true;
    }
    if ((strcmp(id.vendor, "AuthenticAMD") == 0 || strcmp(id.vendor, "HygonGenuine") == 0) &&
        id.max_ext >= 0x80000026u) {
        if (!leaf(cpuid, ctx, 0x80000026u, 0, r) || !(r[0] & (1u << 30)))
            return false;
        if (((r[2] >> 8) & 0xff) != 1) /* subleaf 0 must be the core level */
            return false;
        uint32_t type = r[1] >> 28;
        out->native_model = (r[1] >> 24) & 0xf;
        if (type == 0) {
            out->name = "AMDPerformance";
            out->rank = 1;
        } else if (type == 1) {
            out->name = "AMDEfficiency";
            out->rank = 0;
        } else {
            return false;
        }
        return true;
    }
    return false;
}

static const char *const pmu_event_names[KS_CPUID_PMU_EVENTS] = {
    "cycles",           "instructions",     "ref-cycles",       "llc-references",
    "llc-misses",       "branches",         "branch-misses",    "topdown-slots",
    "topdown-be-bound", "topdown-bad-spec", "topdown-fe-bound", "topdown-retiring",
    "lbr-inserts",
};

const char *ks_cpuid_pmu_event_name(unsigned i)
{
    return i < KS_CPUID_PMU_EVENTS ? pmu_event_names[i] : "?";
}

void ks_cpuid_pmu_decode(ks_cpuid_pmu *out, ks_cpuid_fn cpuid, void *ctx)
{
    uint32_t r[4];
    ks_cpuid_ident id;
    memset(out, 0, sizeof(*out));
    ks_cpuid_identify(&id, cpuid, ctx);
    if (strcmp(id.vendor, "GenuineIntel") == 0) {
        if (id.max_basic < 0xa || !leaf(cpuid, ctx, 0xa, 0, r))
            return;
        out->version = (int32_t)(r[0] & 0xff);
        if (out->version == 0)
            return;
        out->gp_counters = (int32_t)((r[0] >> 8) & 0xff);
        out->gp_width = (int32_t)((r[0] >> 16) & 0xff);
        /* EBX is a "not available" vector over the first EAX[31:24] events. */
        uint32_t len = r[0] >> 24;
        for (uint32_t i = 0; i < KS_CPUID_PMU_EVENTS && i < len; i++)
            if (!(r[1] & (1u << i)))
                out->events |= 1u << i;
        if (out->version > 1) {
            out->fixed_counters = (int32_t)(r[3] & 0x1f);
            out->fixed_width = (int32_t)((r[3] >> 5) & 0xff);
        }
        return;
    }
    if (strcmp(id.vendor, "AuthenticAMD") == 0 || strcmp(id.vendor, "HygonGenuine") == 0) {
        /* AMD has no leaf 0xA: PerfCtrExtCore (0x80000001 ECX[23]) means six 48-bit
         * core counters, PerfMonV2 (0x80000022 EAX[0]) enumerates the count. */
        bool ext = id.max_ext >= 0x80000001u && leaf(cpuid, ctx, 0x80000001u, 0, r) &&
                   (r[2] & (1u << 23));
        if (id.max_ext >= 0x80000022u && leaf(cpuid, ctx, 0x80000022u, 0, r) && (r[0] & 1)) {
            out->version = 2;
            out->gp_counters = (int32_t)(r[1] & 0xf);
        } else if (ext) {
            out->version = 1;
            out->gp_counters = 6;
        } else {
            return;
        }
        out->gp_width = 48;
        /* The generic events every AMD core PMU can count (no reference cycles). */
        out->events = (1u << 0) | (1u << 1) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6);
    }
}

bool ks_cpuid_core_key(uint32_t *out, ks_cpuid_fn cpuid, void *ctx)
{
    uint32_t r[4];
    ks_cpuid_ident id;
    *out = 0;
    ks_cpuid_identify(&id, cpuid, ctx);
    bool amd = strcmp(id.vendor, "AuthenticAMD") == 0 || strcmp(id.vendor, "HygonGenuine") == 0;
    if (amd && id.family >= 0x17 && id.max_ext >= 0x8000001eu &&
        leaf(cpuid, ctx, 0x8000001eu, 0, r)) {
        *out = ((r[2] & 0xff) << 8) | (r[1] & 0xff);
        return true;
    }
    if (id.max_basic >= 0xb && leaf(cpuid, ctx, 0xb, 0, r) && r[1] != 0) {
        /* Subleaf 0 is the SMT level: EAX[4:0] bits of the x2APIC id (EDX) name the thread. */
        *out = r[3] >> (r[0] & 0x1f);
        return true;
    }
    return false;
}

bool ks_cpuid_freq_mhz(uint32_t *base_mhz, uint32_t *max_mhz, ks_cpuid_fn cpuid, void *ctx)
{
    uint32_t r[4];
    *base_mhz = *max_mhz = 0;
    if (!leaf(cpuid, ctx, 0, 0, r) || r[0] < 0x16 || !leaf(cpuid, ctx, 0x16, 0, r))
        return false;
    *base_mhz = r[0] & 0xffff;
    *max_mhz = r[1] & 0xffff;
    return *base_mhz != 0 || *max_mhz != 0;
}
