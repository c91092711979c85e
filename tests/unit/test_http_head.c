/* Unit tests for the strict HTTP/1.1 head parser and the absolute-URI
 * splitter: every request-smuggling shape of issue 2 item 3 as a table row
 * (bytes in, status out), plus valid edge cases and the limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/head.h"

#define OK 0   /* accepted: the whole input is the head */
#define MORE 1 /* incomplete: parser asks for more bytes */
/* Optional expectations are stored plus one, so 0 means "not checked". */
#define FR(framing) ((framing) + 1)
#define CLEN(n) ((n) + 1)
#define KA(b) ((b) + 1)

#define RL "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n"

/* One request case: bytes and what the parser must answer. */
struct req_case {
    const char *name;
    const char *in;
    size_t len;
    int want;                 /* OK, MORE or the refusal status */
    int framing;              /* FR(HTTP_BODY_*) */
    long long content_length; /* CLEN(n) */
};

#define R(name_, in_, want_, ...)                                                                  \
    {                                                                                              \
        .name = name_, .in = in_, .len = sizeof(in_) - 1, .want = want_, __VA_ARGS__               \
    }

static const struct req_case req_cases[] = {
    /* valid shapes */
    R("req/minimal absolute-form", RL "\r\n", OK, .framing = FR(HTTP_BODY_NONE)),
    R("req/http10 without host", "GET http://a.test/ HTTP/1.0\r\n\r\n", OK),
    R("req/connect authority-form", "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", OK),
    R("req/options asterisk", "OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
    R("req/lowercase method is a token", "get http://a.test/ HTTP/1.1\r\nHost: a\r\n\r\n", OK),
    R("req/extension method", "PROPFIND http://a.test/ HTTP/1.1\r\nHost: a\r\n\r\n", OK),
    R("req/one leading CRLF", "\r\n" RL "\r\n", OK),
    R("req/four leading CRLF", "\r\n\r\n\r\n\r\n" RL "\r\n", OK),
    R("req/content-length 0", RL "Content-Length: 0\r\n\r\n", OK, .framing = FR(HTTP_BODY_LENGTH),
      .content_length = CLEN(0)),
    R("req/content-length 5", RL "Content-Length: 5\r\n\r\n", OK, .framing = FR(HTTP_BODY_LENGTH),
      .content_length = CLEN(5)),
    R("req/content-length with OWS", RL "Content-Length: \t 42 \t\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_LENGTH), .content_length = CLEN(42)),
    R("req/content-length no space", RL "content-length:7\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_LENGTH), .content_length = CLEN(7)),
    R("req/content-length 2^62", RL "Content-Length: 4611686018427387904\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_LENGTH), .content_length = CLEN(4611686018427387904LL)),
    R("req/te chunked", RL "Transfer-Encoding: chunked\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_CHUNKED)),
    R("req/te chunked mixed case", RL "transfer-encoding: ChUnKeD\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_CHUNKED)),
    R("req/te chunked with OWS", RL "Transfer-Encoding: \t chunked \t\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_CHUNKED)),
    R("req/empty header value", RL "X-Empty:\r\n\r\n", OK),
    R("req/whitespace-only header value", RL "X-Empty:   \r\n\r\n", OK),
    R("req/HT inside header value", RL "X-Tab: a\tb\r\n\r\n", OK),
    R("req/obs-text in header value", RL "X-Utf8: caf\xc3\xa9\r\n\r\n", OK),
    R("req/empty Host value", "GET http://a.test/ HTTP/1.1\r\nHost:\r\n\r\n", OK),
    R("req/underscore in other header name", RL "X_Custom: 1\r\n\r\n", OK),
    R("req/all tchar header name", RL "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", OK),

    /* need more bytes */
    R("more/empty", "", MORE),
    R("more/lone CR", "\r", MORE),
    R("more/partial request line", "GET http://a.test/ HT", MORE),
    R("more/request line only", "GET http://a.test/ HTTP/1.1\r\n", MORE),
    R("more/no final CRLF", RL, MORE),
    R("more/final CR without LF yet", RL "\r", MORE),
    R("more/header CR without LF yet", RL "X: y\r", MORE),

    /* CL.TE / TE.CL */
    R("smuggle/CL then TE", RL "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    R("smuggle/TE then CL", RL "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    R("smuggle/TE chunked with CL 0", RL "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
      400),
    R("smuggle/CL with unknown TE", RL "Content-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n", 400),

    /* Content-Length shapes */
    R("cl/two equal headers", RL "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
    R("cl/two differing headers", RL "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    R("cl/equal comma list", RL "Content-Length: 5, 5\r\n\r\n", 400),
    R("cl/differing comma list", RL "Content-Length: 5, 6\r\n\r\n", 400),
    R("cl/plus sign", RL "Content-Length: +5\r\n\r\n", 400),
    R("cl/negative", RL "Content-Length: -1\r\n\r\n", 400),
    R("cl/hex", RL "Content-Length: 0x10\r\n\r\n", 400),
    R("cl/space inside", RL "Content-Length: 1 0\r\n\r\n", 400),
    R("cl/trailing letter", RL "Content-Length: 5a\r\n\r\n", 400),
    R("cl/exponent", RL "Content-Length: 1e3\r\n\r\n", 400),
    R("cl/decimal point", RL "Content-Length: 5.0\r\n\r\n", 400),
    R("cl/empty", RL "Content-Length:\r\n\r\n", 400),
    R("cl/leading zero", RL "Content-Length: 010\r\n\r\n", 400),
    R("cl/double zero", RL "Content-Length: 00\r\n\r\n", 400),
    R("cl/above 2^62", RL "Content-Length: 4611686018427387905\r\n\r\n", 400),
    R("cl/2^64 overflow", RL "Content-Length: 18446744073709551616\r\n\r\n", 400),
    R("cl/huge", RL "Content-Length: 99999999999999999999999999999\r\n\r\n", 400),
    R("cl/quoted", RL "Content-Length: \"5\"\r\n\r\n", 400),
    R("cl/underscore name", RL "Content_Length: 5\r\n\r\n", 400),
    R("cl/underscore name beside CL", RL "Content-Length: 0\r\nContent_Length: 5\r\n\r\n", 400),
    R("cl/vertical tab after value", RL "Content-Length: 5\x0b\r\n\r\n", 400),

    /* Transfer-Encoding shapes */
    R("te/gzip", RL "Transfer-Encoding: gzip\r\n\r\n", 501),
    R("te/identity", RL "Transfer-Encoding: identity\r\n\r\n", 501),
    R("te/chunked then gzip", RL "Transfer-Encoding: chunked, gzip\r\n\r\n", 501),
    R("te/gzip then chunked", RL "Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    R("te/xchunked", RL "Transfer-Encoding: xchunked\r\n\r\n", 501),
    R("te/chunkedx", RL "Transfer-Encoding: chunkedx\r\n\r\n", 501),
    R("te/chunked twice in list", RL "Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    R("te/two headers", RL "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    R("te/two headers identity first",
      RL "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    R("te/semicolon", RL "Transfer-Encoding: chunked;\r\n\r\n", 400),
    R("te/parameter", RL "Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    R("te/quoted", RL "Transfer-Encoding: \"chunked\"\r\n\r\n", 400),
    R("te/vertical tab", RL "Transfer-Encoding: chunked\x0b\r\n\r\n", 400),
    R("te/form feed before", RL "Transfer-Encoding: \014chunked\r\n\r\n", 400),
    R("te/NUL after", RL "Transfer-Encoding: chunked\x00\r\n\r\n", 400),
    R("te/empty", RL "Transfer-Encoding:\r\n\r\n", 400),
    R("te/trailing comma", RL "Transfer-Encoding: chunked,\r\n\r\n", 400),
    R("te/leading comma", RL "Transfer-Encoding: , chunked\r\n\r\n", 400),
    R("te/space inside", RL "Transfer-Encoding: chun ked\r\n\r\n", 400),
    R("te/obs-text", RL "Transfer-Encoding: chunked\xff\r\n\r\n", 400),
    R("te/underscore name", RL "Transfer_Encoding: chunked\r\n\r\n", 400),
    R("te/in HTTP/1.0", "POST http://a.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    R("te/obs-folded value", RL "Transfer-Encoding:\r\n chunked\r\n\r\n", 400),

    /* line structure */
    R("line/obs-fold", RL "X-A: one\r\n two\r\n\r\n", 400),
    R("line/obs-fold with HT", RL "X-A: one\r\n\ttwo\r\n\r\n", 400),
    R("line/space before first header", "GET http://a.test/ HTTP/1.1\r\n Host: a.test\r\n\r\n",
      400),
    R("line/bare LF request line", "GET http://a.test/ HTTP/1.1\nHost: a\r\n\r\n", 400),
    R("line/bare LF header", RL "X-A: b\nX-B: c\r\n\r\n", 400),
    R("line/bare LF end", RL "\n", 400),
    R("line/bare LF only head", "GET http://a.test/ HTTP/1.1\nHost: a\n\n", 400),
    R("line/bare LF refused before the end", "GET http://a.test/ HTTP/1.1\n", 400),
    R("line/bare CR in header", RL "X-A: b\rX-B: c\r\n\r\n", 400),
    R("line/bare CR request line", "GET http://a.test/\r HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    R("line/CR CR LF", RL "X-A: b\r\r\n\r\n", 400),
    R("line/leading bare LF", "\n" RL "\r\n", 400),
    R("line/five leading CRLF", "\r\n\r\n\r\n\r\n\r\n" RL "\r\n", 400),
    R("header/space before colon", RL "Host : a.test\r\n\r\n", 400),
    R("header/tab before colon", RL "X-A\t: b\r\n\r\n", 400),
    R("header/space before colon on TE", RL "Transfer-Encoding : chunked\r\n\r\n", 400),
    R("header/empty name", RL ": value\r\n\r\n", 400),
    R("header/no colon", RL "X-A value\r\n\r\n", 400),
    R("header/space in name", RL "X A: b\r\n\r\n", 400),
    R("header/bad char in name", RL "X(A): b\r\n\r\n", 400),
    R("header/non-ASCII name", RL "H\xc3\xb4st: a\r\n\r\n", 400),
    R("header/NUL in value", RL "X-A: b\000c\r\n\r\n", 400),
    R("header/NUL in name", RL "X\000A: b\r\n\r\n", 400),
    R("header/NUL refused before the end", RL "X-A: \x00", 400),
    R("header/SOH in value", RL "X-A: b\x01\r\n\r\n", 400),
    R("header/DEL in value", RL "X-A: b\x7f\r\n\r\n", 400),
    R("header/ESC in value", RL "X-A: \x1b[31m\r\n\r\n", 400),

    /* request line */
    R("rl/double space", "GET  http://a.test/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    R("rl/trailing space", "GET http://a.test/ HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    R("rl/leading space", " GET http://a.test/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    R("rl/tab separator", "GET\thttp://a.test/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    R("rl/HTTP/0.9 no version", "GET http://a.test/\r\n\r\n", 400),
    R("rl/method only", "GET\r\n\r\n", 400),
    R("rl/lowercase version", "GET http://a.test/ http/1.1\r\nHost: a\r\n\r\n", 400),
    R("rl/version 1.10", "GET http://a.test/ HTTP/1.10\r\nHost: a\r\n\r\n", 400),
    R("rl/version 01.1", "GET http://a.test/ HTTP/01.1\r\nHost: a\r\n\r\n", 400),
    R("rl/version garbage", "GET http://a.test/ HTTP/x.y\r\nHost: a\r\n\r\n", 400),
    R("rl/version 1.2", "GET http://a.test/ HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    R("rl/version 2.0", "GET http://a.test/ HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    R("rl/version 0.9", "GET http://a.test/ HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    R("rl/bad method char", "G@T http://a.test/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    R("rl/empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    R("rl/non-ASCII target", "GET http://a.test/\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    R("rl/DEL in target", "GET http://a.test/\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    R("rl/NUL in target", "GET http://a.test/\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    R("rl/extra token", "GET http://a.test/ x HTTP/1.1\r\nHost: a\r\n\r\n", 400),

    /* Host */
    R("host/missing in 1.1", "GET http://a.test/ HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    R("host/two headers", RL "Host: b.test\r\n\r\n", 400),
    R("host/two equal headers", RL "host: a.test\r\n\r\n", 400),
};

static void run_req_case(void **state)
{
    const struct req_case *c = *state;
    static struct http_request req;
    struct http_error err = {0, NULL};
    ssize_t n = http_parse_request(c->in, c->len, &req, &err);
    if (c->want == MORE) {
        assert_int_equal(n, 0);
        return;
    }
    if (c->want != OK) {
        assert_int_equal(n, -1);
        assert_int_equal(err.status, c->want);
        assert_non_null(err.reason);
        assert_true(strlen(err.reason) > 0);
        return;
    }
    assert_int_equal(n, (ssize_t)c->len);
    if (c->framing)
        assert_int_equal(FR(req.framing), c->framing);
    if (c->content_length)
        assert_true(CLEN(req.content_length) == (uint64_t)c->content_length);
    /* Re-parsing from the start on a longer buffer is how callers use it:
     * every shorter prefix of an accepted head must ask for more. */
    for (size_t k = 0; k < c->len; k++)
        assert_int_equal(http_parse_request(c->in, k, &req, &err), 0);
}

/* One response case. */
struct resp_case {
    const char *name;
    const char *in;
    size_t len;
    bool head;
    int want;
    int framing;              /* FR(HTTP_BODY_*) */
    long long content_length; /* CLEN(n) */
    int keep_alive;           /* KA(bool) */
};

#define S(name_, in_, want_, ...)                                                                  \
    {                                                                                              \
        .name = name_, .in = in_, .len = sizeof(in_) - 1, .want = want_, __VA_ARGS__               \
    }

static const struct resp_case resp_cases[] = {
    S("resp/content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_LENGTH), .content_length = CLEN(5), .keep_alive = KA(1)),
    S("resp/chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_CHUNKED), .keep_alive = KA(1)),
    S("resp/gzip then chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_CHUNKED)),
    S("resp/close-delimited", "HTTP/1.1 200 OK\r\n\r\n", OK, .framing = FR(HTTP_BODY_CLOSE),
      .keep_alive = KA(0)),
    S("resp/no reason, no space", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_LENGTH), .content_length = CLEN(0)),
    S("resp/empty reason", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", OK),
    S("resp/reason with spaces", "HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n", OK),
    S("resp/http10 closes", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_LENGTH), .keep_alive = KA(0)),
    S("resp/http10 keep-alive",
      "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", OK,
      .keep_alive = KA(1)),
    S("resp/connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
      OK, .keep_alive = KA(0)),
    S("resp/HEAD has no body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", OK, .head = true,
      .framing = FR(HTTP_BODY_NONE), .content_length = CLEN(0), .keep_alive = KA(1)),
    S("resp/HEAD chunked has no body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", OK,
      .head = true, .framing = FR(HTTP_BODY_NONE)),
    S("resp/204", "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_NONE)),
    S("resp/304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_NONE)),
    S("resp/100 continue", "HTTP/1.1 100 Continue\r\n\r\n", OK, .framing = FR(HTTP_BODY_NONE)),
    S("resp/101 switching", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", OK,
      .framing = FR(HTTP_BODY_NONE)),
    S("resp/two Host headers are not refused", "HTTP/1.1 200 OK\r\nHost: a\r\nHost: b\r\n\r\n", OK),
    S("resp/599", "HTTP/1.1 599 x\r\n\r\n", OK),
    S("resp/more", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", MORE),
    S("resp/CL and TE",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 502),
    S("resp/two CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 502),
    S("resp/CL list", "HTTP/1.1 200 OK\r\nContent-Length: 5,5\r\n\r\n", 502),
    S("resp/bad CL", "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", 502),
    S("resp/TE gzip only", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 502),
    S("resp/TE chunked then gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      502),
    S("resp/TE malformed", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;\r\n\r\n", 502),
    S("resp/two digit status", "HTTP/1.1 20 OK\r\n\r\n", 502),
    S("resp/four digit status", "HTTP/1.1 2000 OK\r\n\r\n", 502),
    S("resp/status 099", "HTTP/1.1 099 x\r\n\r\n", 502),
    S("resp/status 600", "HTTP/1.1 600 x\r\n\r\n", 502),
    S("resp/letters in status", "HTTP/1.1 2x0 OK\r\n\r\n", 502),
    S("resp/HTTP/2", "HTTP/2 200 OK\r\n\r\n", 502),
    S("resp/HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", 502),
    S("resp/lowercase version", "http/1.1 200 OK\r\n\r\n", 502),
    S("resp/leading CRLF", "\r\nHTTP/1.1 200 OK\r\n\r\n", 502),
    S("resp/bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", 502),
    S("resp/obs-fold", "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n", 502),
    S("resp/space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", 502),
    S("resp/NUL", "HTTP/1.1 200 OK\r\nX-A: \x00\r\n\r\n", 502),
    S("resp/tab separator", "HTTP/1.1\t200 OK\r\n\r\n", 502),
};

static void run_resp_case(void **state)
{
    const struct resp_case *c = *state;
    static struct http_response resp;
    struct http_error err = {0, NULL};
    ssize_t n = http_parse_response(c->in, c->len, c->head, &resp, &err);
    if (c->want == MORE) {
        assert_int_equal(n, 0);
        return;
    }
    if (c->want != OK) {
        assert_int_equal(n, -1);
        assert_int_equal(err.status, c->want);
        assert_non_null(err.reason);
        return;
    }
    assert_int_equal(n, (ssize_t)c->len);
    if (c->framing)
        assert_int_equal(FR(resp.framing), c->framing);
    if (c->content_length)
        assert_true(CLEN(resp.content_length) == (uint64_t)c->content_length);
    if (c->keep_alive)
        assert_int_equal(KA(resp.keep_alive), c->keep_alive);
    for (size_t k = 0; k < c->len; k++)
        assert_int_equal(http_parse_response(c->in, k, c->head, &resp, &err), 0);
}

/* One absolute-URI case. */
struct uri_case {
    const char *name;
    const char *in;
    int want; /* 0 or 400 */
    const char *authority;
    const char *path;
    size_t path_only_len;
    const char *reason; /* checked when set */
};

#define HTTPS_REASON "only http:// URIs on the proxy port; use CONNECT for https"

static const struct uri_case uri_cases[] = {
    {"uri/path and query", "http://a.test/x/y?q=1", 0, "a.test", "/x/y?q=1", 4, NULL},
    {"uri/no path", "http://a.test", 0, "a.test", "/", 1, NULL},
    {"uri/root", "http://a.test/", 0, "a.test", "/", 1, NULL},
    {"uri/uppercase scheme and port", "HTTP://a.test:8080/p", 0, "a.test:8080", "/p", 2, NULL},
    {"uri/IPv6 literal", "http://[2001:db8::1]:80/p?", 0, "[2001:db8::1]:80", "/p?", 2, NULL},
    {"uri/@ in path is not userinfo", "http://a.test/@x", 0, "a.test", "/@x", 3, NULL},
    {"uri/empty query", "http://a.test/p?", 0, "a.test", "/p?", 2, NULL},
    {"uri/https", "https://a.test/", 400, NULL, NULL, 0, HTTPS_REASON},
    {"uri/ftp", "ftp://a.test/", 400, NULL, NULL, 0, HTTPS_REASON},
    {"uri/ws", "ws://a.test/", 400, NULL, NULL, 0, HTTPS_REASON},
    {"uri/httpx", "httpx://a.test/", 400, NULL, NULL, 0, HTTPS_REASON},
    {"uri/origin-form", "/index.html", 400, NULL, NULL, 0, NULL},
    {"uri/asterisk", "*", 400, NULL, NULL, 0, NULL},
    {"uri/empty", "", 400, NULL, NULL, 0, NULL},
    {"uri/one slash", "http:/a.test/", 400, NULL, NULL, 0, NULL},
    {"uri/no slashes", "http:a.test", 400, NULL, NULL, 0, NULL},
    {"uri/scheme only", "http:", 400, NULL, NULL, 0, NULL},
    {"uri/empty authority", "http:///x", 400, NULL, NULL, 0, NULL},
    {"uri/nothing after //", "http://", 400, NULL, NULL, 0, NULL},
    {"uri/userinfo", "http://user@a.test/", 400, NULL, NULL, 0, "userinfo in URI"},
    {"uri/userinfo with password", "http://u:p@a.test/", 400, NULL, NULL, 0, NULL},
    {"uri/userinfo hides host", "http://a.test@b.test/", 400, NULL, NULL, 0, NULL},
    {"uri/fragment", "http://a.test/p#f", 400, NULL, NULL, 0, "fragment in request target"},
    {"uri/fragment in authority", "http://a.test#@b.test/", 400, NULL, NULL, 0, NULL},
    {"uri/query without path", "http://a.test?x=1", 400, NULL, NULL, 0, NULL},
    {"uri/space", "http://a.test/a b", 400, NULL, NULL, 0, NULL},
    {"uri/non-ASCII", "http://a.test/\xc3\xa9", 400, NULL, NULL, 0, NULL},
    {"uri/control char", "http://a.test/\x01", 400, NULL, NULL, 0, NULL},
};

static void run_uri_case(void **state)
{
    const struct uri_case *c = *state;
    struct http_uri uri;
    struct http_error err = {0, NULL};
    int rc = http_parse_absolute_uri(c->in, strlen(c->in), &uri, &err);
    if (c->want != 0) {
        assert_int_equal(rc, -1);
        assert_int_equal(err.status, c->want);
        assert_non_null(err.reason);
        if (c->reason)
            assert_string_equal(err.reason, c->reason);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(uri.authority_len, strlen(c->authority));
    assert_memory_equal(uri.authority, c->authority, uri.authority_len);
    assert_int_equal(uri.path_len, strlen(c->path));
    assert_memory_equal(uri.path, c->path, uri.path_len);
    assert_int_equal(uri.path_only_len, c->path_only_len);
}

/* Request fields a caller reads. */
static void test_request_fields(void **state)
{
    static const char in[] = "POST http://a.test/up?x HTTP/1.1\r\n"
                             "X-A:  padded value \t\r\n"
                             "Host: a.test:8080\r\n"
                             "Content-Length: 3\r\n"
                             "\r\n"
                             "abc";
    struct http_request req;
    struct http_error err;
    ssize_t n = http_parse_request(in, sizeof(in) - 1, &req, &err);
    assert_int_equal(n, sizeof(in) - 1 - 3);
    assert_true(http_method_is(req.method, req.method_len, "POST"));
    assert_int_equal(req.target_len, strlen("http://a.test/up?x"));
    assert_memory_equal(req.target, "http://a.test/up?x", req.target_len);
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.n_headers, 3);
    assert_int_equal(req.headers[0].value_len, strlen("padded value"));
    assert_memory_equal(req.headers[0].value, "padded value", req.headers[0].value_len);
    assert_int_equal(req.host_header, 1);
    assert_memory_equal(req.headers[1].value, "a.test:8080", req.headers[1].value_len);
    assert_int_equal(req.framing, HTTP_BODY_LENGTH);
    assert_true(req.content_length == 3);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    assert_false(req.upgrade);
    assert_memory_equal(in + n, "abc", 3);
}

static void test_request_no_host_http10(void **state)
{
    static const char in[] = "GET http://a.test/ HTTP/1.0\r\n\r\n";
    struct http_request req;
    struct http_error err;
    assert_int_equal(http_parse_request(in, sizeof(in) - 1, &req, &err), sizeof(in) - 1);
    assert_int_equal(req.version_minor, 0);
    assert_int_equal(req.host_header, -1);
    assert_false(req.keep_alive);
}

static bool parse_flags(const char *version, const char *extra, struct http_request *req)
{
    static char buf[512];
    struct http_error err;
    int n =
        snprintf(buf, sizeof(buf), "GET http://a.test/ %s\r\nHost: a\r\n%s\r\n", version, extra);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    return http_parse_request(buf, (size_t)n, req, &err) == n;
}

static void test_keep_alive(void **state)
{
    struct http_request req;
    assert_true(parse_flags("HTTP/1.1", "", &req) && req.keep_alive);
    assert_true(parse_flags("HTTP/1.1", "Connection: close\r\n", &req) && !req.keep_alive);
    assert_true(parse_flags("HTTP/1.1", "Connection: CLOSE\r\n", &req) && !req.keep_alive);
    assert_true(parse_flags("HTTP/1.1", "Connection: foo, close\r\n", &req) && !req.keep_alive);
    assert_true(parse_flags("HTTP/1.1", "Connection: foo\r\nConnection: close\r\n", &req) &&
                !req.keep_alive);
    assert_true(parse_flags("HTTP/1.1", "Connection: closed\r\n", &req) && req.keep_alive);
    assert_true(parse_flags("HTTP/1.0", "", &req) && !req.keep_alive);
    assert_true(parse_flags("HTTP/1.0", "Connection: keep-alive\r\n", &req) && req.keep_alive);
    assert_true(parse_flags("HTTP/1.0", "Connection: Keep-Alive\r\n", &req) && req.keep_alive);
    assert_true(parse_flags("HTTP/1.0", "Connection: keep-alive, close\r\n", &req) &&
                !req.keep_alive);
}

static void test_expect_and_upgrade(void **state)
{
    struct http_request req;
    assert_true(parse_flags("HTTP/1.1", "Expect: 100-continue\r\n", &req) && req.expect_continue);
    assert_true(parse_flags("HTTP/1.1", "Expect: 100-Continue\r\n", &req) && req.expect_continue);
    assert_true(parse_flags("HTTP/1.1", "Expect: something\r\n", &req) && !req.expect_continue);
    assert_true(parse_flags("HTTP/1.1", "", &req) && !req.expect_continue);
    assert_true(parse_flags("HTTP/1.1", "Connection: Upgrade\r\nUpgrade: h2c\r\n", &req) &&
                req.upgrade);
    assert_true(
        parse_flags("HTTP/1.1", "Upgrade: h2c\r\nConnection: keep-alive, upgrade\r\n", &req) &&
        req.upgrade);
    assert_true(parse_flags("HTTP/1.1", "Connection: upgrade\r\n", &req) && !req.upgrade);
    assert_true(parse_flags("HTTP/1.1", "Upgrade: websocket\r\n", &req) && !req.upgrade);
}

/* Builds "GET <target of target_len> HTTP/1.1\r\nHost: a\r\n\r\n". */
static size_t build_long_line(char *buf, size_t cap, size_t line_len, bool complete)
{
    static const char pre[] = "GET http://a.test/", post[] = " HTTP/1.1";
    size_t fill = line_len - (sizeof(pre) - 1) - (sizeof(post) - 1);
    assert_true(line_len + 64 < cap);
    size_t n = 0;
    memcpy(buf, pre, sizeof(pre) - 1);
    n += sizeof(pre) - 1;
    if (!complete) {
        memset(buf + n, 'x', line_len - n);
        return line_len;
    }
    memset(buf + n, 'x', fill);
    n += fill;
    memcpy(buf + n, post, sizeof(post) - 1);
    n += sizeof(post) - 1;
    memcpy(buf + n, "\r\nHost: a\r\n\r\n", 13);
    return n + 13;
}

static void test_request_line_limit(void **state)
{
    static char buf[HTTP_MAX_REQUEST_LINE + 128];
    struct http_request req;
    struct http_error err;
    size_t n = build_long_line(buf, sizeof(buf), HTTP_MAX_REQUEST_LINE, true);
    assert_int_equal(http_parse_request(buf, n, &req, &err), (ssize_t)n);
    n = build_long_line(buf, sizeof(buf), HTTP_MAX_REQUEST_LINE + 1, true);
    assert_int_equal(http_parse_request(buf, n, &req, &err), -1);
    assert_int_equal(err.status, 414);
    /* Refused as soon as the line is too long, before its end arrives. */
    n = build_long_line(buf, sizeof(buf), HTTP_MAX_REQUEST_LINE + 1, false);
    assert_int_equal(http_parse_request(buf, n, &req, &err), -1);
    assert_int_equal(err.status, 414);
    assert_int_equal(http_parse_request(buf, n - 1, &req, &err), 0);
}

/* A start line, Host and more fields up to n_headers in all. */
static size_t build_headers(char *buf, size_t cap, const char *start, size_t n_headers)
{
    size_t n = (size_t)snprintf(buf, cap, "%sHost: a\r\n", start);
    for (size_t i = 1; i < n_headers; i++)
        n += (size_t)snprintf(buf + n, cap - n, "X-%zu: v\r\n", i);
    n += (size_t)snprintf(buf + n, cap - n, "\r\n");
    assert_true(n < cap);
    return n;
}

static void test_header_count_limit(void **state)
{
    static char buf[4096];
    struct http_request req;
    struct http_error err;
    static const char req_line[] = "GET http://a.test/ HTTP/1.1\r\n";
    static const char status_line[] = "HTTP/1.1 200 OK\r\n";
    size_t n = build_headers(buf, sizeof(buf), req_line, HTTP_MAX_HEADERS);
    assert_int_equal(http_parse_request(buf, n, &req, &err), (ssize_t)n);
    assert_int_equal(req.n_headers, HTTP_MAX_HEADERS);
    n = build_headers(buf, sizeof(buf), req_line, HTTP_MAX_HEADERS + 1);
    assert_int_equal(http_parse_request(buf, n, &req, &err), -1);
    assert_int_equal(err.status, 431);

    static struct http_response resp;
    n = build_headers(buf, sizeof(buf), status_line, HTTP_MAX_HEADERS);
    assert_int_equal(http_parse_response(buf, n, false, &resp, &err), (ssize_t)n);
    assert_int_equal(resp.n_headers, HTTP_MAX_HEADERS);
    n = build_headers(buf, sizeof(buf), status_line, HTTP_MAX_HEADERS + 1);
    assert_int_equal(http_parse_response(buf, n, false, &resp, &err), -1);
    assert_int_equal(err.status, 502);
}

/* A head of exactly total bytes: RL, one big X-Big header, CRLF. */
static size_t build_big_head(char *buf, size_t total)
{
    size_t rl = strlen(RL), n = rl;
    memcpy(buf, RL, rl);
    memcpy(buf + n, "X-Big: ", 7);
    n += 7;
    size_t fill = total - n - 4;
    memset(buf + n, 'b', fill);
    n += fill;
    memcpy(buf + n, "\r\n\r\n", 4);
    return n + 4;
}

static void test_head_size_limit(void **state)
{
    static char buf[HTTP_MAX_HEAD_BYTES + 64];
    struct http_request req;
    struct http_error err;
    size_t n = build_big_head(buf, HTTP_MAX_HEAD_BYTES);
    assert_int_equal(n, HTTP_MAX_HEAD_BYTES);
    assert_int_equal(http_parse_request(buf, n, &req, &err), (ssize_t)n);
    n = build_big_head(buf, HTTP_MAX_HEAD_BYTES + 1);
    assert_int_equal(http_parse_request(buf, n, &req, &err), -1);
    assert_int_equal(err.status, 431);
    /* No end yet: waits while "\r\n\r\n" could still end the head within
     * the limit, refused once len is past it. */
    memset(buf + 64, 'b', sizeof(buf) - 64);
    assert_int_equal(http_parse_request(buf, HTTP_MAX_HEAD_BYTES - 4, &req, &err), 0);
    assert_int_equal(http_parse_request(buf, HTTP_MAX_HEAD_BYTES + 1, &req, &err), -1);
    assert_int_equal(err.status, 431);
    /* Many short complete lines past the limit, too. */
    size_t m = strlen(RL);
    memcpy(buf, RL, m);
    while (m + 4 < sizeof(buf)) {
        memcpy(buf + m, "A: b\r\n", 6);
        m += 6;
    }
    assert_int_equal(http_parse_request(buf, m, &req, &err), -1);
    assert_true(err.status == 431);
}

/* Every byte value, at every offset of two 8-byte words of a header value,
 * next to fillers that could hide it from a word-at-a-time check. */
static void test_every_byte_value(void **state)
{
    static const unsigned char fillers[] = {'a', ' ', '\t', 0x7e, 0x80, 0xff};
    static const char pre[] = RL "X-A: <";
    char buf[128];
    struct http_request req;
    struct http_error err;
    for (int b = 0; b < 256; b++) {
        bool allowed = b == '\t' || (b >= 0x20 && b != 0x7f);
        for (size_t f = 0; f < sizeof(fillers); f++) {
            for (size_t off = 0; off < 16; off++) {
                size_t n = sizeof(pre) - 1;
                memcpy(buf, pre, n);
                memset(buf + n, fillers[f], 16);
                buf[n + off] = (char)b;
                n += 16;
                memcpy(buf + n, ">\r\n\r\n", 5);
                n += 5;
                ssize_t got = http_parse_request(buf, n, &req, &err);
                if (allowed) {
                    assert_int_equal(got, (ssize_t)n);
                } else {
                    assert_int_equal(got, -1);
                    assert_int_equal(err.status, 400);
                }
            }
        }
    }
}

static void test_find_header(void **state)
{
    static const char in[] = RL "X-One: 1\r\nx-two: 2\r\nX-TWO: 3\r\n\r\n";
    struct http_request req;
    struct http_error err;
    assert_int_equal(http_parse_request(in, sizeof(in) - 1, &req, &err), sizeof(in) - 1);
    assert_int_equal(http_find_header(req.headers, req.n_headers, "host"), 0);
    assert_int_equal(http_find_header(req.headers, req.n_headers, "X-ONE"), 1);
    assert_int_equal(http_find_header(req.headers, req.n_headers, "X-Two"), 2);
    assert_int_equal(http_find_header(req.headers, req.n_headers, "X-On"), -1);
    assert_int_equal(http_find_header(req.headers, req.n_headers, "X-One-More"), -1);
    assert_int_equal(http_find_header(req.headers, 0, "host"), -1);
}

static bool has(const char *v, const char *token)
{
    return http_value_has_token(v, strlen(v), token);
}

static void test_value_has_token(void **state)
{
    assert_true(has("close", "close"));
    assert_true(has("Close", "close"));
    assert_true(has("keep-alive, Upgrade", "upgrade"));
    assert_true(has(" a ,\tb\t, c ", "b"));
    assert_true(has(",,close,,", "close"));
    assert_true(has("a,c", "c"));
    assert_false(has("closed", "close"));
    assert_false(has("clos", "close"));
    assert_false(has("x-close", "close"));
    assert_false(has("", "close"));
    assert_false(has(" , ", "close"));
    assert_false(has("cl ose", "close"));
}

static void test_method_is(void **state)
{
    assert_true(http_method_is("GET", 3, "GET"));
    assert_false(http_method_is("get", 3, "GET"));
    assert_false(http_method_is("GETX", 4, "GET"));
    assert_false(http_method_is("GE", 2, "GET"));
    assert_true(http_method_is("CONNECTxyz", 7, "CONNECT"));
}

#define N_REQ (sizeof(req_cases) / sizeof(req_cases[0]))
#define N_RESP (sizeof(resp_cases) / sizeof(resp_cases[0]))
#define N_URI (sizeof(uri_cases) / sizeof(uri_cases[0]))

static const struct CMUnitTest fixed_tests[] = {
    cmocka_unit_test(test_request_fields),     cmocka_unit_test(test_request_no_host_http10),
    cmocka_unit_test(test_keep_alive),         cmocka_unit_test(test_expect_and_upgrade),
    cmocka_unit_test(test_request_line_limit), cmocka_unit_test(test_header_count_limit),
    cmocka_unit_test(test_head_size_limit),    cmocka_unit_test(test_every_byte_value),
    cmocka_unit_test(test_find_header),        cmocka_unit_test(test_value_has_token),
    cmocka_unit_test(test_method_is),
};

#define N_FIXED (sizeof(fixed_tests) / sizeof(fixed_tests[0]))

int main(void)
{
    /* Each table row is its own cmocka test, so a failure names the row. */
    static struct CMUnitTest tests[N_REQ + N_RESP + N_URI + N_FIXED];
    size_t n = 0;
    for (size_t i = 0; i < N_REQ; i++)
        tests[n++] =
            (struct CMUnitTest){req_cases[i].name, run_req_case, NULL, NULL, (void *)&req_cases[i]};
    for (size_t i = 0; i < N_RESP; i++)
        tests[n++] = (struct CMUnitTest){resp_cases[i].name, run_resp_case, NULL, NULL,
                                         (void *)&resp_cases[i]};
    for (size_t i = 0; i < N_URI; i++)
        tests[n++] =
            (struct CMUnitTest){uri_cases[i].name, run_uri_case, NULL, NULL, (void *)&uri_cases[i]};
    for (size_t i = 0; i < N_FIXED; i++)
        tests[n++] = fixed_tests[i];
    return _cmocka_run_group_tests("http_head", tests, n, NULL, NULL);
}
