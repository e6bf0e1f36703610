/*
 * ks_zdoc.c - see ks_zdoc.h.
 */
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "ks_feature.h"
#include "ks_zdoc.h"

/* zstd's fast mode: two to three times faster than level 1 on a plan, and
 * the dictionary does most of the work (2.3 KB -> ~160 bytes either way). */
#define ZDOC_LEVEL (-1)
#define ZDOC_MAX_DICTS 256

/* A buffer reused from call to call. */
typedef struct zbuf {
    uint8_t *p;
    size_t cap;
} zbuf;

struct ks_zdoc {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    ZSTD_CDict *cdict; /* the dictionary we write with */
    int write_id;
    ZSTD_DDict *ddict[ZDOC_MAX_DICTS];
    zbuf text; /* the last decompressed document */
    zbuf out;  /* the last compressed one */
};

ks_code ks_zdoc_new(ks_zdoc **out, ks_err *err)
{
    ks_zdoc *z = calloc(1, sizeof(*z));
    if (z) {
        z->cctx = ZSTD_createCCtx();
        z->dctx = ZSTD_createDCtx();
    }
    if (!z || !z->cctx || !z->dctx) {
        ks_zdoc_free(z);
        return ks_err_set(err, KS_ENOMEM, "out of memory for document compression");
    }
    *out = z;
    return KS_OK;
}

void ks_zdoc_free(ks_zdoc *z)
{
    if (!z)
        return;
    ZSTD_freeCCtx(z->cctx);
    ZSTD_freeDCtx(z->dctx);
    ZSTD_freeCDict(z->cdict);
    for (int i = 0; i < ZDOC_MAX_DICTS; i++)
        ZSTD_freeDDict(z->ddict[i]);
    free(z->text.p);
    free(z->out.p);
    free(z);
}

typedef struct dict_buf {
    char *p;
    size_t len, cap;
} dict_buf;

static void db_put(dict_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (!b->p)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap * 2 + n;
        char *p = realloc(b->p, cap);
        if (!p) {
            free(b->p);
            b->p = NULL;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* zstd finds matches nearest the end of a dictionary cheapest: the keys every
 * plan repeats per vCPU go last. */
char *ks_zdoc_plan_dict(size_t *len)
{
    dict_buf b = {malloc(8192), 0, 8192};
    if (b.p)
        b.p[0] = '\0';
    db_put(&b, "{\"features\":{\"disable\":[],\"enable\":[");
    for (size_t i = 0; i < ks_feature_count(); i++) {
        db_put(&b, i ? ",\"" : "\"");
        db_put(&b, ks_feature_name((unsigned)i));
        db_put(&b, "\"");
    }
    db_put(&b, "],\"model\":\"host\"},\"generation\":1,\"host\":\"\",\"memory_mib\":4096,"
               "\"numa\":[{\"host_node\":0,\"memory_mib\":4096,\"node\":0,\"vcpus\":[0,1,2,3]}],"
               "\"pmu\":{\"allow_events\":[],\"deny_events\":[],\"enabled\":false,"
               "\"fixed_counters\":0,\"gp_counters\":0,\"version\":0},\"topology\":{\"clusters\":1,"
               "\"cores\":1,\"dies\":1,\"sockets\":1,\"threads\":2},\"vcpus\":[");
    db_put(&b, "{\"cluster\":0,\"core\":0,\"die\":0,\"host_cpu\":16,\"id\":1,\"kind\":\"efficiency\","
               "\"kind_name\":\"efficiency\",\"l2_group\":4,\"l3_group\":0,\"max_mhz\":2400,"
               "\"numa_node\":0,\"socket\":0,\"thread\":0},");
    db_put(&b, "{\"cluster\":0,\"core\":0,\"die\":0,\"host_cpu\":0,\"id\":0,\"kind\":\"performance\","
               "\"kind_name\":\"performance\",\"l2_group\":0,\"l3_group\":0,\"max_mhz\":3700,"
               "\"numa_node\":0,\"socket\":0,\"thread\":0}],\"vm\":\"vm-1\"}");
    *len = b.p ? b.len : 0;
    return b.p;
}

ks_code ks_zdoc_add_dict(ks_zdoc *z, int id, const void *dict, size_t len, bool write,
                         ks_err *err)
{
    if (id <= 0 || id >= ZDOC_MAX_DICTS)
        return ks_err_set(err, KS_EINVAL, "bad dictionary id %d", id);
    /* A dictionary not starting with zstd's magic number is raw content
     * (ZSTD_dct_auto): ours starts with '{'. */
    if (!z->ddict[id] && !(z->ddict[id] = ZSTD_createDDict(dict, len)))
        return ks_err_set(err, KS_ENOMEM, "out of memory loading dictionary %d", id);
    if (write && z->write_id != id) {
        ZSTD_CDict *cd = ZSTD_createCDict(dict, len, ZDOC_LEVEL);
        if (!cd)
            return ks_err_set(err, KS_ENOMEM, "out of memory loading dictionary %d", id);
        ZSTD_freeCDict(z->cdict);
        z->cdict = cd;
        z->write_id = id;
    }
    return KS_OK;
}

bool ks_zdoc_has_dict(const ks_zdoc *z, int id)
{
    return id > 0 && id < ZDOC_MAX_DICTS && z->ddict[id];
}

bool ks_zdoc_can_write(const ks_zdoc *z)
{
    return z->cdict != NULL;
}

int ks_zdoc_blob_dict(const void *blob, size_t len)
{
    return blob && len > 1 ? ((const uint8_t *)blob)[0] : 0;
}

/* Grows b to hold `need` bytes. */
static bool zbuf_reserve(zbuf *b, size_t need)
{
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

ks_code ks_zdoc_compress(const uint8_t **out, size_t *out_len, ks_zdoc *z, const char *text,
                         size_t n, ks_err *err)
{
    *out = NULL;
    if (!z->cdict)
        return ks_err_set(err, KS_EINTERNAL, "no compression dictionary loaded");
    if (!zbuf_reserve(&z->out, 1 + ZSTD_compressBound(n)))
        return ks_err_set(err, KS_ENOMEM, "out of memory compressing %zu bytes", n);
    z->out.p[0] = (uint8_t)z->write_id;
    size_t r =
        ZSTD_compress_usingCDict(z->cctx, z->out.p + 1, z->out.cap - 1, text, n, z->cdict);
    if (ZSTD_isError(r))
        return ks_err_set(err, KS_EINTERNAL, "compress: %s", ZSTD_getErrorName(r));
    *out = z->out.p;
    *out_len = 1 + r;
    return KS_OK;
}

ks_code ks_zdoc_decompress(const char **text, ks_zdoc *z, const void *blob, size_t len,
                           ks_err *err)
{
    int id = ks_zdoc_blob_dict(blob, len);
    if (!ks_zdoc_has_dict(z, id))
        return ks_err_set(err, KS_EIO, "stored document needs dictionary %d, not in the database",
                          id);
    const uint8_t *frame = (const uint8_t *)blob + 1;
    unsigned long long size = ZSTD_getFrameContentSize(frame, len - 1);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
        size > KS_ZDOC_MAX_TEXT)
        return ks_err_set(err, KS_EIO, "stored document is damaged (no size)");
    if (!zbuf_reserve(&z->text, size + 1))
        return ks_err_set(err, KS_ENOMEM, "out of memory for a %llu-byte document", size);
    size_t r =
        ZSTD_decompress_usingDDict(z->dctx, z->text.p, size, frame, len - 1, z->ddict[id]);
    if (ZSTD_isError(r) || r != size)
        return ks_err_set(err, KS_EIO, "stored document is damaged (%s)",
                          ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short");
    z->text.p[size] = '\0';
    *text = (const char *)z->text.p;
    return KS_OK;
}
