/*
 * ks_sdnotify.h - the systemd service notification protocol (sd_notify(3)),
 * client side, without libsystemd.
 *
 * Why our own: the protocol is one datagram of "KEY=VALUE\n" lines sent to the
 * AF_UNIX socket named by $NOTIFY_SOCKET (a path, or '@' for the abstract
 * namespace), which is ~60 lines of C.  Linking libsystemd would add a runtime
 * dependency (and its own dependencies) to every binary for that, and would
 * not build on non-systemd systems; without $NOTIFY_SOCKET everything here is
 * a silent no-op, so the daemons behave the same outside systemd.
 *
 * Thread-safe: no state is kept between calls (each send opens, sends and
 * closes its own socket), so the watchdog thread and the main thread may both
 * notify.
 */
#ifndef KS_SDNOTIFY_H
#define KS_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "ks_err.h"

/* Well-known states (sd_notify(3)).  RELOADING is followed by READY once the
 * reload is complete; systemd >= 253 wants MONOTONIC_USEC with RELOADING, which
 * ks_sdnotify_reloading() adds. */
#define KS_SDNOTIFY_READY "READY=1"
#define KS_SDNOTIFY_STOPPING "STOPPING=1"
#define KS_SDNOTIFY_WATCHDOG "WATCHDOG=1"

/*
 * Sends `state` (one or more "KEY=VALUE" lines) to $NOTIFY_SOCKET.
 * *sent_out (may be NULL) says whether a datagram was sent: false, with KS_OK,
 * when $NOTIFY_SOCKET is unset or empty (not running under systemd).
 * Errors: KS_EINVAL for an unusable $NOTIFY_SOCKET (not absolute, not '@',
 * too long) or an empty state; KS_EIO when the send fails.
 */
ks_code ks_sdnotify_send(bool *sent_out, const char *state, ks_err *err);

/* printf-style convenience, e.g. ks_sdnotifyf(NULL, &err, "STATUS=%u hosts", n). */
ks_code ks_sdnotifyf(bool *sent_out, ks_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "RELOADING=1\nMONOTONIC_USEC=<now>". */
ks_code ks_sdnotify_reloading(bool *sent_out, ks_err *err);

/*
 * The watchdog period systemd expects pings within, in microseconds, from
 * $WATCHDOG_USEC; 0 when the watchdog is not enabled for this process
 * (unset, unparsable, zero, or $WATCHDOG_PID names another process).
 * Ping every half of it.
 */
uint64_t ks_sdnotify_watchdog_usec(void);

/*
 * True when stderr is the journal stream systemd connected (StandardError=
 * journal, the default for services): $JOURNAL_STREAM holds "DEVICE:INODE" of
 * that stream, and it must match fstat(2) of stderr (a child whose stderr was
 * redirected elsewhere inherits the variable but not the stream).  Then log
 * lines may carry "<N>" priority prefixes (ks_log_set_journald).
 */
bool ks_sdnotify_stderr_is_journal(void);

#endif
