/*
 * ks_log.c - one line per event on stderr: "ts=... level=... <message>".
 * Threading: the level and format are atomics; each line is written with one
 * fprintf so lines from different threads do not interleave.
 */
#include "ks_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static atomic_int log_level = KS_LOG_INFO;
static atomic_int log_json;
static atomic_int log_journald;

static const char *const level_names[KS_LOG_LEVEL__COUNT] = {"debug", "info", "warn", "error"};
static const int journald_prio[KS_LOG_LEVEL__COUNT] = {7, 6, 4, 3};

void ks_log_set_level(ks_log_level level) { atomic_store(&log_level, (int)level); }
ks_log_level ks_log_get_level(void) { return (ks_log_level)atomic_load(&log_level); }
void ks_log_set_json(int on) { atomic_store(&log_json, on); }
void ks_log_set_journald(int on) { atomic_store(&log_journald, on); }

int ks_log_level_from_str(const char *s)
{
    for (int i = 0; s && i < KS_LOG_LEVEL__COUNT; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

static void json_escape_into(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    for (; *in && o + 7 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

void ks_log(ks_log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

    if (atomic_load(&log_json)) {
        char esc[4096];
        json_escape_into(esc, sizeof(esc), msg);
        fprintf(stderr, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":\"%s\"}\n", when,
                ts.tv_nsec / 1000000, level_names[level], esc);
    } else if (atomic_load(&log_journald)) {
        fprintf(stderr, "<%d>level=%s %s\n", journald_prio[level], level_names[level], msg);
    } else {
        fprintf(stderr, "ts=%s.%03ldZ level=%s %s\n", when, ts.tv_nsec / 1000000,
                level_names[level], msg);
    }
}
