/*
 * ks_zdoc.h - stored documents compressed with a shared dictionary (internal
 * to the SQLite store).
 *
 * A placement's plan is ~2.3 KB of JSON, most of it the feature-name list and
 * the same keys for every vCPU: stored as text it filled a database page per
 * VM, and page writes are what a durable placement costs.  zstd with a
 * dictionary made of those names and keys stores it in ~200 bytes for ~2 us.
 * A stored blob is one byte naming its dictionary, then a zstd frame that
 * records the document's size.  Dictionaries are kept in the database itself
 * (ks_store_sqlite.c, table zdicts), never rebuilt for old rows: a later build
 * may add better ones under new ids.
 *
 * A ks_zdoc belongs to one store handle (one thread at a time).
 */
#ifndef KS_ZDOC_H
#define KS_ZDOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ks_err.h"

#define KS_ZDOC_MAX_TEXT (16u << 20) /* refuse to inflate a damaged size past this */

typedef struct ks_zdoc ks_zdoc;

ks_code ks_zdoc_new(ks_zdoc **out, ks_err *err);
void ks_zdoc_free(ks_zdoc *z); /* NULL-safe */

/* The dictionary a database gets when it stores its first compressed plan:
 * plan keys and the catalogue's feature names (malloc'd, *len bytes). */
char *ks_zdoc_plan_dict(size_t *len);

/* Dictionary `id` (1..255) with its content, for reading; and for writing
 * when `write` (the newest one a handle compresses with).  KS_ENOMEM. */
ks_code ks_zdoc_add_dict(ks_zdoc *z, int id, const void *dict, size_t len, bool write,
                         ks_err *err);
bool ks_zdoc_has_dict(const ks_zdoc *z, int id);
bool ks_zdoc_can_write(const ks_zdoc *z);

/* The dictionary id a blob needs (0 for a blob too short to have one). */
int ks_zdoc_blob_dict(const void *blob, size_t len);

/* *out = the compressed blob of text[0..n), *out_len bytes in z's buffer:
 * valid until the next compression on z. */
ks_code ks_zdoc_compress(const uint8_t **out, size_t *out_len, ks_zdoc *z, const char *text,
                         size_t n, ks_err *err);

/* *text = the document, NUL-terminated, in z's buffer: valid until the next
 * call on z.  KS_EIO for a blob that does not decompress to its recorded
 * size, or whose dictionary is not loaded. */
ks_code ks_zdoc_decompress(const char **text, ks_zdoc *z, const void *blob, size_t len,
                           ks_err *err);

#endif
