/* log: JSON lines (SPEC §5), one object per event, to stderr or a file.
 *
 * Lines are collected in a per-thread buffer and written whole, so the hot
 * path costs a memcpy, not a syscall; log_flush() runs from a timer and at
 * exit. Secrets never reach this module: callers pass only what may be seen. */
#ifndef SLUICE_CORE_LOG_H
#define SLUICE_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One decision or connection event. NULL strings and negative numbers are
 * written as null: every line has the same keys. */
struct log_event {
    const char *client;
    const char *kind; /* http, connect, dns, tls, transparent */
    const char *host;
    int port;
    const char *method;
    const char *path;
    const char *decision; /* allow, deny, would_deny, error */
    int rule;             /* -1 = default, -2 = none (not decided) */
    const char *reason;
    const char *upstream_ip;
    int status;
    int64_t bytes_up;
    int64_t bytes_down;
    int64_t ms;
    /* DNS: the answer's addresses as text; NULL writes null, n_answers 0
     * writes []. */
    const char *const *answers;
    size_t n_answers;
};

#define LOG_RULE_DEFAULT (-1)
#define LOG_RULE_NONE (-2)

/* Opens FILE (created 0600, appended) or uses stderr when path is NULL. */
int log_open(const char *path, char *err, size_t err_size);
void log_close(void);
void log_event_init(struct log_event *ev);
void log_write_event(const struct log_event *ev);
/* A daemon message: {"ts":...,"level":"info","msg":...} plus an optional
 * detail string. */
void log_message(const char *level, const char *msg, const char *detail);
/* Writes this thread's buffered lines. */
void log_flush(void);

#endif
