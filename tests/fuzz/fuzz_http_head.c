/* libFuzzer harness for the HTTP head parser and the absolute-URI splitter.
 *
 * Besides memory safety it checks what callers rely on: results stay inside
 * the buffer, a refusal carries a status and reason, re-parsing a longer
 * buffer never changes an earlier answer, and framing fields agree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *buf_start, *buf_end;

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void check_inside(const char *p, size_t len)
{
    check(p >= buf_start && p + len <= buf_end);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void check_headers(const struct http_header *h, size_t n, size_t head_len)
{
    check(n <= HTTP_MAX_HEADERS);
    for (size_t i = 0; i < n; i++) {
        check(h[i].name_len > 0);
        check_inside(h[i].name, h[i].name_len);
        check(h[i].name + h[i].name_len <= buf_start + head_len);
        check_inside(h[i].value, h[i].value_len);
        check(h[i].value + h[i].value_len <= buf_start + head_len);
        for (size_t k = 0; k < h[i].name_len; k++)
            check(h[i].name[k] != ':' && !is_ows(h[i].name[k]));
        if (h[i].value_len > 0)
            check(!is_ows(h[i].value[0]) && !is_ows(h[i].value[h[i].value_len - 1]));
        for (size_t k = 0; k < h[i].value_len; k++)
            check(h[i].value[k] != '\r' && h[i].value[k] != '\n' && h[i].value[k] != '\0');
    }
}

/* An accepted head holds no control byte but HT, and CR and LF only as
 * CRLF pairs: checked byte by byte against the parser's fast scan. */
static void check_head_bytes(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r')
            check(i + 1 < n && p[i + 1] == '\n');
        else if (c == '\n')
            check(i > 0 && p[i - 1] == '\r');
        else
            check(c == '\t' || (c >= 0x20 && c != 0x7f));
    }
}

static void check_uri(const char *target, size_t len)
{
    struct http_uri uri;
    struct http_error err = {0, NULL};
    if (http_parse_absolute_uri(target, len, &uri, &err) != 0) {
        check(err.status == 400 && err.reason != NULL);
        return;
    }
    check(len >= 8 && uri.authority_len > 0);
    check(uri.authority >= target && uri.authority + uri.authority_len <= target + len);
    check(memchr(uri.authority, '@', uri.authority_len) == NULL);
    check(uri.path_len > 0 && uri.path[0] == '/' && uri.path_only_len <= uri.path_len);
    check(memchr(uri.path, '?', uri.path_only_len) == NULL);
    check(memchr(uri.path, '#', uri.path_len) == NULL);
}

static void check_error(const struct http_error *err, bool response)
{
    check(err->reason != NULL && err->reason[0] != '\0');
    if (response)
        check(err->status == 502);
    else
        check(err->status == 400 || err->status == 414 || err->status == 431 ||
              err->status == 501 || err->status == 505);
}

static void fuzz_request(const char *buf, size_t size)
{
    static struct http_request req, again;
    struct http_error err = {0, NULL};
    ssize_t n = http_parse_request(buf, size, &req, &err);
    check(n >= -1 && n <= (ssize_t)size);
    if (n < 0) {
        check_error(&err, false);
        return;
    }
    /* A refusal or a head found in a prefix must stay so on the whole. */
    size_t half = size / 2;
    ssize_t h = http_parse_request(buf, half, &again, &err);
    check(h == 0 || h == n);
    if (n == 0)
        return;
    check(http_parse_request(buf, (size_t)n, &again, &err) == n);
    check_head_bytes(buf, (size_t)n);
    check(http_parse_request(buf, (size_t)n - 1, &again, &err) == 0);

    check_inside(req.method, req.method_len);
    check_inside(req.target, req.target_len);
    check(req.method_len > 0 && req.target_len > 0);
    check(req.version_minor == 0 || req.version_minor == 1);
    check_headers(req.headers, req.n_headers, (size_t)n);
    check(req.host_header < (int)req.n_headers);
    check(req.version_minor == 0 || req.host_header >= 0);
    check(req.framing != HTTP_BODY_CLOSE);
    check(req.framing == HTTP_BODY_LENGTH || req.content_length == 0);
    check(req.content_length <= (UINT64_C(1) << 62));
    if (req.framing == HTTP_BODY_CHUNKED)
        check(req.version_minor == 1 &&
              http_find_header(req.headers, req.n_headers, "content-length") < 0);
    check_uri(req.target, req.target_len);
}

static void fuzz_response(const char *buf, size_t size)
{
    static struct http_response resp, head_resp;
    struct http_error err = {0, NULL}, head_err = {0, NULL};
    ssize_t n = http_parse_response(buf, size, false, &resp, &err);
    ssize_t hn = http_parse_response(buf, size, true, &head_resp, &head_err);
    check(n >= -1 && n <= (ssize_t)size);
    /* Whether the request was HEAD changes the framing, never the head. */
    check(n == hn);
    if (n < 0) {
        check_error(&err, true);
        return;
    }
    if (n == 0)
        return;
    check(http_parse_response(buf, (size_t)n - 1, false, &head_resp, &err) == 0);
    check(resp.status >= 100 && resp.status <= 599);
    check_inside(resp.reason, resp.reason_len);
    check_headers(resp.headers, resp.n_headers, (size_t)n);
    check(resp.framing == HTTP_BODY_LENGTH || resp.content_length == 0);
    check(resp.framing != HTTP_BODY_CLOSE || !resp.keep_alive);
    bool bodiless = resp.status < 200 || resp.status == 204 || resp.status == 304;
    check(!bodiless || resp.framing == HTTP_BODY_NONE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so any read past the end is caught by ASan. */
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf_start = buf;
    buf_end = buf + size;

    fuzz_request(buf, size);
    fuzz_response(buf, size);
    check_uri(buf, size);
    (void)http_value_has_token(buf, size, "close");
    free(buf);
    return 0;
}
