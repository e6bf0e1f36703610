/*
 * ks_log.h - leveled key=value logging to stderr (journald picks it up).
 *
 * Process state: one log level and one output format, set at start-up by main()
 * and read by every thread (atomic).  Library code logs at DEBUG at most; the
 * layer that handles an error logs it, once.
 */
#ifndef KS_LOG_H
#define KS_LOG_H

typedef enum ks_log_level {
    KS_LOG_DEBUG,
    KS_LOG_INFO,
    KS_LOG_WARN,
    KS_LOG_ERROR,
    KS_LOG_LEVEL__COUNT
} ks_log_level;

void ks_log_set_level(ks_log_level level);
ks_log_level ks_log_get_level(void);
/* Parses "debug|info|warn|error"; returns -1 when unknown. */
int ks_log_level_from_str(const char *s);
/* Lines as JSON objects instead of key=value text. */
void ks_log_set_json(int on);
/* Prefix journald priority markers ("<3>") for systemd's stderr capture. */
void ks_log_set_journald(int on);

/* Format checked; the level is tested before formatting.  `fmt` should be
 * "event key=value ..." style, e.g. ks_log(KS_LOG_INFO, "placed vm='%s' host='%s'", ...). */
void ks_log(ks_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
