/* head: strict HTTP/1.1 message-head parser (RFC 9112), hand-written on
 * purpose: a lenient parser is how request smuggling gets through proxies.
 *
 * It takes bytes, never sockets. Pointers in the results point into the
 * caller's buffer, which must stay unchanged while they are used. */
#ifndef SLUICE_HTTP_HEAD_H
#define SLUICE_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_REQUEST_LINE 8192     /* longer: 414 */
#define HTTP_MAX_HEAD_BYTES (64 * 1024) /* whole head longer: 431 */

struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing OWS removed */
    size_t value_len;
};

enum http_framing {
    HTTP_BODY_NONE,    /* no body (or HEAD/1xx/204/304 response) */
    HTTP_BODY_LENGTH,  /* Content-Length bytes follow */
    HTTP_BODY_CHUNKED, /* chunked transfer coding */
    HTTP_BODY_CLOSE,   /* response body runs until the server closes */
};

struct http_request {
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    int version_minor; /* HTTP/1.<minor>: 0 or 1 */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t n_headers;
    enum http_framing framing;
    uint64_t content_length;
    bool keep_alive;      /* from version and Connection */
    bool expect_continue; /* Expect: 100-continue */
    bool upgrade;         /* Connection: upgrade with an Upgrade header */
    int host_header;      /* index into headers, -1 when absent */
};

struct http_response {
    int status;
    const char *reason;
    size_t reason_len;
    int version_minor;
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t n_headers;
    enum http_framing framing;
    uint64_t content_length;
    bool keep_alive;
};

/* A refusal: the status to answer (400, 414, 431, 501, or 502 for a bad
 * response) and a short reason for the log and body. */
struct http_error {
    int status;
    const char *reason;
};

/* Parse a request head from buf[0..len). Returns the head length (> 0, the
 * body starts there), 0 when more bytes are needed, -1 on a refusal. */
ssize_t http_parse_request(const char *buf, size_t len, struct http_request *req,
                           struct http_error *err);

/* Parse a response head. request_was_head and the status decide whether a
 * body follows. */
ssize_t http_parse_response(const char *buf, size_t len, bool request_was_head,
                            struct http_response *resp, struct http_error *err);

/* Case-insensitive header lookup: index of the first match, or -1. */
int http_find_header(const struct http_header *headers, size_t n, const char *name);
/* Whether a comma-separated header value lists token (case-insensitive). */
bool http_value_has_token(const char *value, size_t len, const char *token);
bool http_method_is(const char *method, size_t len, const char *name);

/* Absolute-form request target "http://authority/path?query". */
struct http_uri {
    const char *authority;
    size_t authority_len;
    const char *path; /* origin-form: path and query; "/" when the URI has none */
    size_t path_len;
    size_t path_only_len; /* path without the query, for policy matching */
};

/* Only the http scheme is accepted on the proxy port (https goes through
 * CONNECT). Returns 0, or -1 with err->status 400. */
int http_parse_absolute_uri(const char *target, size_t len, struct http_uri *uri,
                            struct http_error *err);

/* Incremental scanner of a chunked body: forwards the bytes untouched and
 * only finds where the body ends, refusing malformed framing. */
struct http_chunked {
    int state;
    uint64_t remaining; /* data bytes left in the current chunk */
    size_t line_bytes;  /* bytes of the current size/trailer line */
    bool done;
};

void http_chunked_init(struct http_chunked *c);
/* Same for a response body: refusals then carry 502 instead of 400. */
void http_chunked_init_response(struct http_chunked *c);
/* Scans up to len bytes; returns how many belong to the body (== len unless
 * the body ends inside buf; c->done is then set), or -1 on malformed
 * framing with err set (400 for a request body, 502 for a response). */
ssize_t http_chunked_scan(struct http_chunked *c, const char *buf, size_t len,
                          struct http_error *err);

#endif
