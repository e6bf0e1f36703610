/*
 * ks_qmp.h - a small QEMU Machine Protocol client: one unix-socket connection,
 * line-delimited JSON (jansson), every read bounded by a timeout.
 *
 * QEMU serves one QMP client per -qmp socket at a time, so connections are short:
 * connect, run a few commands, close.  Not thread-safe (one user at a time).
 */
#ifndef KS_QMP_H
#define KS_QMP_H

#include <stdint.h>

#include <jansson.h>

#include "ks_err.h"

typedef struct ks_qmp ks_qmp;

/* Largest QMP line accepted (query-cpu-model-expansion of "max" is ~20 KiB). */
#define KS_QMP_MAX_LINE (4u << 20)

/*
 * Connects to the socket at `path`, reads the greeting and negotiates
 * (qmp_capabilities).  KS_EUNAVAIL: nothing listening / timed out / not QMP.
 */
ks_code ks_qmp_connect(ks_qmp **out, const char *path, uint64_t timeout_us, ks_err *err);
/* Borrowed greeting object {"QMP":{"version":{...},"capabilities":[...]}}. */
const json_t *ks_qmp_greeting(const ks_qmp *q);
/* QEMU version from the greeting (0s when absent). */
void ks_qmp_version(const ks_qmp *q, int *major, int *minor, int *micro);

/*
 * Runs `cmd` with `args` (borrowed, may be NULL) and waits for its reply, skipping
 * asynchronous events.  On success *out (may be NULL) is a new reference to the
 * "return" value.  QMP errors: KS_EUNSUPPORTED for CommandNotFound, KS_EINVAL for
 * the others, with "class: desc" in the message; KS_EUNAVAIL on I/O failure or
 * timeout (the connection is then unusable).
 */
ks_code ks_qmp_execute(json_t **out, ks_qmp *q, const char *cmd, const json_t *args,
                       uint64_t timeout_us, ks_err *err);

/* Closes the connection and frees q.  NULL-safe. */
void ks_qmp_close(ks_qmp *q);

#endif
