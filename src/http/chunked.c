/* chunked: finds where a chunked body ends (RFC 9112 §7.1) while the bytes
 * pass through untouched. One byte at a time outside chunk data, so any
 * split of the input gives the same answer; data is skipped in bulk.
 *
 * Strict on purpose: a proxy and its upstream that disagree on where a
 * chunked body ends (bare LF, "0x" sizes, spaces, oversized sizes) is the
 * classic way to smuggle a second request inside the first. */
#include "http/head.h"

#include <string.h>

#define HTTP_CHUNK_LINE_MAX 4096   /* bytes of one size or trailer line */
#define HTTP_CHUNK_SIZE_DIGITS 16  /* hex digits: 64 bits, never overflows */
#define HTTP_CHUNK_MAX_TRAILERS 32 /* trailer fields after the last chunk */

/* The low byte of c->state is the state; this bit says whose body it is,
 * which decides the status of a refusal. */
#define CH_RESPONSE 0x100
#define CH_STATE_MASK 0xff

enum chunk_state {
    CH_SIZE_FIRST,       /* first hex digit of chunk-size */
    CH_SIZE,             /* more digits, or what ends the size */
    CH_EXT_BWS,          /* whitespace that must lead to ';' */
    CH_EXT_NAME_START,   /* after ';' */
    CH_EXT_NAME,         /* in chunk-ext-name */
    CH_EXT_NAME_BWS,     /* whitespace after the name: '=' or ';' next */
    CH_EXT_VALUE_START,  /* after '=' */
    CH_EXT_TOKEN,        /* in a token value */
    CH_EXT_QUOTED,       /* in a quoted-string value */
    CH_EXT_QUOTED_ESC,   /* after '\' in a quoted string */
    CH_EXT_AFTER_QUOTED, /* after the closing quote */
    CH_SIZE_LF,          /* CR seen at the end of the size line */
    CH_DATA,             /* c->remaining data bytes to skip */
    CH_DATA_CR,          /* CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER_START, /* start of a trailer line, or the final CRLF */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_LAST_LF, /* CR of the final empty line seen */
    CH_FAILED,  /* refused: stays refused */
};

static bool ch_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool ch_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* qdtext and quoted-pair characters (RFC 9110 §5.6.4), obs-text included. */
static bool is_qdtext(unsigned char c)
{
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
           (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

static bool is_field_vchar(unsigned char c)
{
    return c == '\t' || c == ' ' || (c >= 0x21 && c <= 0x7e) || c >= 0x80;
}

/* What may end a name, token or quoted string in a chunk extension. */
static const char *ext_next(unsigned char ch, int *st)
{
    if (ch == ';')
        *st = CH_EXT_NAME_START;
    else if (ch_is_ws(ch))
        *st = CH_EXT_BWS;
    else if (ch == '\r')
        *st = CH_SIZE_LF;
    else
        return "malformed chunk extension";
    return NULL;
}

/* The chunk-size line: 1*HEXDIG *chunk-ext CRLF. */
static const char *step_size_line(struct http_chunked *c, unsigned char ch, int *st)
{
    int h = hex_value(ch);
    switch (*st) {
    case CH_SIZE_FIRST:
        if (h < 0)
            return "malformed chunk size";
        c->remaining = (uint64_t)h;
        *st = CH_SIZE;
        return NULL;
    case CH_SIZE:
        if (h >= 0) {
            if (c->line_bytes > HTTP_CHUNK_SIZE_DIGITS)
                return "chunk size too long";
            c->remaining = c->remaining * 16 + (uint64_t)h;
            return NULL;
        }
        if (ch == ';' || ch_is_ws(ch) || ch == '\r')
            return ext_next(ch, st);
        return "malformed chunk size";
    case CH_EXT_BWS:
        if (ch == ';')
            *st = CH_EXT_NAME_START;
        else if (!ch_is_ws(ch))
            return "malformed chunk extension";
        return NULL;
    case CH_EXT_NAME_START:
        if (ch_is_tchar(ch))
            *st = CH_EXT_NAME;
        else if (!ch_is_ws(ch))
            return "malformed chunk extension";
        return NULL;
    case CH_EXT_NAME:
        if (ch_is_tchar(ch))
            return NULL;
        if (ch == '=')
            *st = CH_EXT_VALUE_START;
        else if (ch_is_ws(ch))
            *st = CH_EXT_NAME_BWS;
        else
            return ext_next(ch, st);
        return NULL;
    case CH_EXT_NAME_BWS:
        if (ch == '=')
            *st = CH_EXT_VALUE_START;
        else if (ch == ';')
            *st = CH_EXT_NAME_START;
        else if (!ch_is_ws(ch))
            return "malformed chunk extension";
        return NULL;
    case CH_EXT_VALUE_START:
        if (ch == '"')
            *st = CH_EXT_QUOTED;
        else if (ch_is_tchar(ch))
            *st = CH_EXT_TOKEN;
        else if (!ch_is_ws(ch))
            return "malformed chunk extension";
        return NULL;
    case CH_EXT_TOKEN:
        return ch_is_tchar(ch) ? NULL : ext_next(ch, st);
    case CH_EXT_QUOTED:
        if (ch == '"')
            *st = CH_EXT_AFTER_QUOTED;
        else if (ch == '\\')
            *st = CH_EXT_QUOTED_ESC;
        else if (!is_qdtext(ch))
            return "malformed chunk extension";
        return NULL;
    case CH_EXT_QUOTED_ESC:
        if (!is_field_vchar(ch))
            return "malformed chunk extension";
        *st = CH_EXT_QUOTED;
        return NULL;
    case CH_EXT_AFTER_QUOTED:
        return ext_next(ch, st);
    case CH_SIZE_LF:
        if (ch != '\n')
            return "bare CR in chunk size line";
        c->line_bytes = 0;
        /* In the trailer section remaining counts the trailer fields. */
        *st = c->remaining == 0 ? CH_TRAILER_START : CH_DATA;
        return NULL;
    }
    return "chunked scanner in a bad state";
}

/* After the last chunk: *(field-line CRLF) CRLF. */
static const char *step_trailer(struct http_chunked *c, unsigned char ch, int *st)
{
    switch (*st) {
    case CH_TRAILER_START:
        if (ch == '\r') {
            *st = CH_LAST_LF;
            return NULL;
        }
        if (!ch_is_tchar(ch))
            return "malformed trailer field";
        if (c->remaining == HTTP_CHUNK_MAX_TRAILERS)
            return "too many trailer fields";
        c->remaining++;
        *st = CH_TRAILER_NAME;
        return NULL;
    case CH_TRAILER_NAME:
        if (ch == ':')
            *st = CH_TRAILER_VALUE;
        else if (!ch_is_tchar(ch))
            return "malformed trailer field name";
        return NULL;
    case CH_TRAILER_VALUE:
        if (ch == '\r')
            *st = CH_TRAILER_LF;
        else if (!is_field_vchar(ch))
            return "malformed trailer field value";
        return NULL;
    case CH_TRAILER_LF:
        if (ch != '\n')
            return "bare CR in trailer";
        c->line_bytes = 0;
        *st = CH_TRAILER_START;
        return NULL;
    case CH_LAST_LF:
        if (ch != '\n')
            return "bare CR after last chunk";
        c->done = true;
        return NULL;
    }
    return "chunked scanner in a bad state";
}

static const char *step(struct http_chunked *c, unsigned char ch, int *st)
{
    switch (*st) {
    case CH_FAILED:
        return "chunked body already refused";
    case CH_DATA_CR:
        if (ch != '\r')
            return "missing CRLF after chunk data";
        *st = CH_DATA_LF;
        return NULL;
    case CH_DATA_LF:
        if (ch != '\n')
            return "missing CRLF after chunk data";
        c->line_bytes = 0;
        *st = CH_SIZE_FIRST;
        return NULL;
    }
    if (++c->line_bytes > HTTP_CHUNK_LINE_MAX)
        return "chunk line too long";
    if (*st >= CH_TRAILER_START && *st <= CH_LAST_LF)
        return step_trailer(c, ch, st);
    return step_size_line(c, ch, st);
}

void http_chunked_init(struct http_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CH_SIZE_FIRST;
}

void http_chunked_init_response(struct http_chunked *c)
{
    http_chunked_init(c);
    c->state |= CH_RESPONSE;
}

ssize_t http_chunked_scan(struct http_chunked *c, const char *buf, size_t len,
                          struct http_error *err)
{
    if (c->done)
        return 0;
    int flags = c->state & ~CH_STATE_MASK;
    int st = c->state & CH_STATE_MASK;
    size_t i = 0;
    while (i < len) {
        if (st == CH_DATA) {
            size_t take = len - i;
            if ((uint64_t)take > c->remaining)
                take = (size_t)c->remaining;
            i += take;
            c->remaining -= take;
            if (c->remaining == 0)
                st = CH_DATA_CR;
            continue;
        }
        const char *reason = step(c, (unsigned char)buf[i++], &st);
        if (reason != NULL) {
            c->state = flags | CH_FAILED;
            err->status = (flags & CH_RESPONSE) ? 502 : 400;
            err->reason = reason;
            return -1;
        }
        if (c->done)
            break;
    }
    c->state = flags | st;
    return (ssize_t)i;
}
