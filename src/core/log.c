/* log: JSON lines with a per-thread write-behind buffer. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_BUFFER_SIZE (64 * 1024)
#define LOG_LINE_MAX (8 * 1024)
#define LOG_FIELD_MAX 1024 /* longer strings (paths) are cut */

static int log_fd = STDERR_FILENO;

struct log_buffer {
    char data[LOG_BUFFER_SIZE];
    size_t len;
};

static _Thread_local struct log_buffer *thread_buffer;

int log_open(const char *path, char *err, size_t err_size)
{
    if (path == NULL) {
        log_fd = STDERR_FILENO;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    log_fd = fd;
    return 0;
}

void log_close(void)
{
    log_flush();
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = STDERR_FILENO;
}

static void write_all(const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(log_fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* a full disk must not stop the proxy */
        data += n;
        len -= (size_t)n;
    }
}

void log_flush(void)
{
    struct log_buffer *b = thread_buffer;
    if (b == NULL || b->len == 0)
        return;
    write_all(b->data, b->len);
    b->len = 0;
}

static void emit_line(const char *line, size_t len)
{
    struct log_buffer *b = thread_buffer;
    if (b == NULL) {
        static _Thread_local struct log_buffer storage;
        thread_buffer = b = &storage;
    }
    if (b->len + len > sizeof b->data)
        log_flush();
    if (len > sizeof b->data) {
        write_all(line, len);
        return;
    }
    memcpy(b->data + b->len, line, len);
    b->len += len;
}

/* A bounded JSON line under construction; overflow truncates quietly and
 * the line is then dropped whole rather than written broken. */
struct line {
    char buf[LOG_LINE_MAX];
    size_t len;
    bool overflow;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (l->len + n >= sizeof l->buf) {
        l->overflow = true;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_escaped(struct line *l, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p && n < LOG_FIELD_MAX; p++, n++) {
        char esc[6];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(l, esc, 2);
        } else if (*p < 0x20 || *p >= 0x7f) {
            /* Non-ASCII bytes are escaped too, so a line is always valid
             * JSON whatever a client sent. */
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            put(l, esc, 6);
        } else {
            put(l, (const char *)p, 1);
        }
    }
    put(l, "\"", 1);
}

static void put_key(struct line *l, const char *key)
{
    put(l, ",\"", 2);
    put(l, key, strlen(key));
    put(l, "\":", 2);
}

/* Decision lines have a fixed set of keys (null when unknown), so log
 * pipelines see one schema. */
static void put_string_field(struct line *l, const char *key, const char *value)
{
    put_key(l, key);
    if (value == NULL)
        put(l, "null", 4);
    else
        put_escaped(l, value);
}

static void put_int_field(struct line *l, const char *key, int64_t value)
{
    char num[24];
    put_key(l, key);
    if (value < 0) {
        put(l, "null", 4);
        return;
    }
    int n = snprintf(num, sizeof num, "%lld", (long long)value);
    put(l, num, (size_t)n);
}

/* Formatting the date costs more than the rest of the line: each thread
 * keeps the text of the current second. */
static void put_timestamp(struct line *l)
{
    static _Thread_local time_t cached_second = -1;
    static _Thread_local char cached[32];
    static _Thread_local size_t cached_len;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != cached_second) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        cached_len = strftime(cached, sizeof cached, "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
        cached_second = tv.tv_sec;
    }
    int ms = (int)(tv.tv_usec / 1000);
    char frac[8] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10),
                    (char)('0' + ms % 10), 'Z', '"'};
    put(l, cached, cached_len);
    put(l, frac, 6);
}

void log_event_init(struct log_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->port = -1;
    ev->rule = LOG_RULE_NONE;
    ev->status = -1;
    ev->bytes_up = -1;
    ev->bytes_down = -1;
    ev->ms = -1;
}

void log_write_event(const struct log_event *ev)
{
    struct line l = {.len = 0};
    put_timestamp(&l);
    put_string_field(&l, "client", ev->client);
    put_string_field(&l, "kind", ev->kind);
    put_string_field(&l, "host", ev->host);
    put_int_field(&l, "port", ev->port);
    put_string_field(&l, "method", ev->method);
    put_string_field(&l, "path", ev->path);
    put_string_field(&l, "decision", ev->decision);
    if (ev->rule == LOG_RULE_DEFAULT)
        put_string_field(&l, "rule", "default");
    else
        put_int_field(&l, "rule", ev->rule);
    put_string_field(&l, "reason", ev->reason);
    put_string_field(&l, "upstream_ip", ev->upstream_ip);
    put_int_field(&l, "status", ev->status);
    put_int_field(&l, "bytes_up", ev->bytes_up);
    put_int_field(&l, "bytes_down", ev->bytes_down);
    put_int_field(&l, "ms", ev->ms);
    put_key(&l, "answers");
    if (ev->answers == NULL) {
        put(&l, "null", 4);
    } else {
        put(&l, "[", 1);
        for (size_t i = 0; i < ev->n_answers; i++) {
            if (i > 0)
                put(&l, ",", 1);
            put_escaped(&l, ev->answers[i]);
        }
        put(&l, "]", 1);
    }
    put(&l, "}\n", 2);
    if (!l.overflow)
        emit_line(l.buf, l.len);
}

void log_message(const char *level, const char *msg, const char *detail)
{
    struct line l = {.len = 0};
    put_timestamp(&l);
    put_string_field(&l, "level", level);
    put_string_field(&l, "msg", msg);
    if (detail)
        put_string_field(&l, "detail", detail);
    put(&l, "}\n", 2);
    if (!l.overflow)
        emit_line(l.buf, l.len);
    /* Daemon messages are rare and matter (start, reload, errors). */
    log_flush();
}
