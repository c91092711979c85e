/* Unit tests for the chunked-body scanner: where a body ends must not
 * depend on how the bytes were split, and every malformed framing that could
 * make two parsers disagree is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/head.h"

#define NEXT "GET http://a.test/ HTTP/1.1\r\n" /* the next message after a body */

struct chunk_case {
    const char *name;
    const char *in;
    size_t len;
    long end; /* body length, -1: refused, -2: incomplete (needs more) */
};

#define REFUSED -1
#define INCOMPLETE -2
#define C(name_, in_, end_)                                                                        \
    {                                                                                              \
        name_, in_, sizeof(in_) - 1, end_                                                          \
    }
/* A valid body followed by the next request: the scanner stops at its end. */
#define BODY(name_, body_)                                                                         \
    {                                                                                              \
        name_, body_ NEXT, sizeof(body_ NEXT) - 1, sizeof(body_) - 1                               \
    }

static const struct chunk_case cases[] = {
    BODY("ok/empty body", "0\r\n\r\n"),
    BODY("ok/one chunk", "5\r\nhello\r\n0\r\n\r\n"),
    BODY("ok/two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    BODY("ok/uppercase hex", "A\r\n0123456789\r\n0\r\n\r\n"),
    BODY("ok/lowercase hex", "a\r\n0123456789\r\n0\r\n\r\n"),
    BODY("ok/leading zeros", "0005\r\nhello\r\n000\r\n\r\n"),
    BODY("ok/sixteen digits", "0000000000000005\r\nhello\r\n0\r\n\r\n"),
    BODY("ok/data that looks like framing", "5\r\n0\r\n\r\n\r\n0\r\n\r\n"),
    BODY("ok/data with CR and LF", "4\r\n\n\r\r\n\r\n0\r\n\r\n"),
    BODY("ok/binary data", "3\r\n\x00\xff\x80\r\n0\r\n\r\n"),
    BODY("ok/extension name", "5;foo\r\nhello\r\n0\r\n\r\n"),
    BODY("ok/extension token value", "5;foo=bar\r\nhello\r\n0\r\n\r\n"),
    BODY("ok/extension quoted value", "5;foo=\"b a;r\"\r\nhello\r\n0\r\n\r\n"),
    BODY("ok/extension quoted escape", "5;a=\"x\\\"y\"\r\nhello\r\n0\r\n\r\n"),
    BODY("ok/several extensions", "5;a=1;b;c=\"\"\r\nhello\r\n0\r\n\r\n"),
    BODY("ok/extension with BWS", "5 ; a = 1 ;b\r\nhello\r\n0\r\n\r\n"),
    BODY("ok/extension on last chunk", "0;final=yes\r\n\r\n"),
    BODY("ok/one trailer", "0\r\nX-Sum: abc\r\n\r\n"),
    BODY("ok/two trailers", "0\r\nX-A: 1\r\nX-B:\t2 3\r\n\r\n"),
    BODY("ok/empty trailer value", "0\r\nX-A:\r\n\r\n"),
    BODY("ok/large chunk", "10\r\n0123456789abcdef\r\n0\r\n\r\n"),

    C("more/size only", "5", INCOMPLETE),
    C("more/inside data", "5\r\nhel", INCOMPLETE),
    C("more/before last CRLF", "5\r\nhello\r\n0\r\n", INCOMPLETE),
    C("more/huge chunk partly sent", "ffffffffffffffff\r\nabc", INCOMPLETE),

    C("bad/bare LF after size", "5\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/bare LF after data", "5\r\nhello\n0\r\n\r\n", REFUSED),
    C("bad/LF LF after data", "5\r\nhello\n\n0\r\n\r\n", REFUSED),
    C("bad/LF CR after data", "5\r\nhello\n\r0\r\n\r\n", REFUSED),
    C("bad/bare LF at end", "0\r\n\n", REFUSED),
    C("bad/bare LF after trailer", "0\r\nX-A: 1\n\r\n", REFUSED),
    C("bad/bare CR after size", "5\rhello\r\n0\r\n\r\n", REFUSED),
    C("bad/CR CR LF", "5\r\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/CR then junk at end", "0\r\n\rX", REFUSED),
    C("bad/0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/space before size", " 5\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/tab before size", "\t5\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/negative", "-5\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/plus", "+5\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/empty size", "\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/whitespace after size", "5 \r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/non-hex digit", "g\r\n", REFUSED),
    C("bad/seventeen digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/64-bit overflow", "10000000000000000\r\n", REFUSED),
    C("bad/NUL in size", "5\x00\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/data longer than size", "5\r\nhelloX\r\n0\r\n\r\n", REFUSED),
    C("bad/data shorter than size", "5\r\nhell\r\n0\r\n\r\n", REFUSED),
    C("bad/no CRLF after data", "5\r\nhello0\r\n\r\n", REFUSED),
    C("bad/empty extension name", "5;\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/extension without semicolon", "5 a\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/control char in extension", "5;a\x01\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/empty extension value", "5;a=\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/unterminated quote", "5;a=\"x\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/LF inside quote", "5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/junk after quote", "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n", REFUSED),
    C("bad/trailer obs-fold", "0\r\nX-A: 1\r\n 2\r\n\r\n", REFUSED),
    C("bad/trailer space before colon", "0\r\nX-A : 1\r\n\r\n", REFUSED),
    C("bad/trailer without colon", "0\r\nX-A\r\n\r\n", REFUSED),
    C("bad/trailer empty name", "0\r\n: 1\r\n\r\n", REFUSED),
    C("bad/trailer NUL", "0\r\nX-A: \x00\r\n\r\n", REFUSED),
    C("bad/trailer DEL", "0\r\nX-A: \x7f\r\n\r\n", REFUSED),
};

#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* Feeds in[0..len) in pieces cut at the given points, the way reads arrive.
 * Returns the body length, REFUSED or INCOMPLETE. */
static long scan_split(const char *in, size_t len, const size_t *cuts, size_t n_cuts, int *status)
{
    struct http_chunked c;
    struct http_error err = {0, NULL};
    http_chunked_init(&c);
    size_t pos = 0;
    for (size_t k = 0; k <= n_cuts; k++) {
        size_t end = k < n_cuts ? cuts[k] : len;
        ssize_t n = http_chunked_scan(&c, in + pos, end - pos, &err);
        if (n < 0) {
            assert_non_null(err.reason);
            *status = err.status;
            return REFUSED;
        }
        assert_true(pos + (size_t)n <= end);
        if (c.done)
            return (long)(pos + (size_t)n);
        assert_int_equal((size_t)n, end - pos); /* all of it is body */
        pos = end;
    }
    return INCOMPLETE;
}

static void run_case(void **state)
{
    const struct chunk_case *t = *state;
    int status = 0;
    assert_int_equal(scan_split(t->in, t->len, NULL, 0, &status), t->end);
    if (t->end == REFUSED)
        assert_int_equal(status, 400);

    /* Every two-way split gives the same answer. */
    for (size_t cut = 0; cut <= t->len; cut++)
        assert_int_equal(scan_split(t->in, t->len, &cut, 1, &status), t->end);

    /* So does one byte at a time. */
    size_t cuts[256];
    assert_true(t->len <= sizeof(cuts) / sizeof(cuts[0]));
    for (size_t i = 0; i < t->len; i++)
        cuts[i] = i + 1;
    assert_int_equal(scan_split(t->in, t->len, cuts, t->len, &status), t->end);
}

/* The body ends inside the buffer: the next message is left untouched, and
 * the scanner gives nothing more once done. */
static void test_done_is_final(void **state)
{
    static const char in[] = "3\r\nabc\r\n0\r\n\r\n" NEXT;
    struct http_chunked c;
    struct http_error err;
    http_chunked_init(&c);
    assert_false(c.done);
    ssize_t n = http_chunked_scan(&c, in, sizeof(in) - 1, &err);
    assert_int_equal(n, sizeof("3\r\nabc\r\n0\r\n\r\n") - 1);
    assert_true(c.done);
    assert_memory_equal(in + n, NEXT, sizeof(NEXT) - 1);
    assert_int_equal(http_chunked_scan(&c, in + n, sizeof(in) - 1 - (size_t)n, &err), 0);
}

static void test_response_status(void **state)
{
    struct http_chunked c;
    struct http_error err = {0, NULL};
    http_chunked_init_response(&c);
    assert_int_equal(http_chunked_scan(&c, "3\r\nabc\r\n", 8, &err), 8);
    assert_int_equal(http_chunked_scan(&c, "zz\r\n", 4, &err), -1);
    assert_int_equal(err.status, 502);

    http_chunked_init_response(&c);
    assert_int_equal(http_chunked_scan(&c, "0\r\n\r\n", 5, &err), 5);
    assert_true(c.done);
}

/* A refusal is sticky: later bytes cannot bring the scanner back. */
static void test_refusal_is_sticky(void **state)
{
    struct http_chunked c;
    struct http_error err = {0, NULL};
    http_chunked_init(&c);
    assert_int_equal(http_chunked_scan(&c, "5\n", 2, &err), -1);
    err.status = 0;
    assert_int_equal(http_chunked_scan(&c, "\r\nhello\r\n0\r\n\r\n", 15, &err), -1);
    assert_int_equal(err.status, 400);
    assert_false(c.done);
}

/* Data is skipped in bulk across many calls: a big chunk counts exactly. */
static void test_big_chunk(void **state)
{
    static char data[65536];
    struct http_chunked c;
    struct http_error err;
    http_chunked_init(&c);
    assert_int_equal(http_chunked_scan(&c, "100000\r\n", 8, &err), 8); /* 1 MiB */
    for (int i = 0; i < 16; i++) {
        assert_int_equal(http_chunked_scan(&c, data, sizeof(data), &err), sizeof(data));
        assert_false(c.done);
    }
    assert_int_equal(http_chunked_scan(&c, "\r\n0\r\n\r\nX", 8, &err), 7);
    assert_true(c.done);

    /* One byte more than the chunk size is refused. */
    http_chunked_init(&c);
    assert_int_equal(http_chunked_scan(&c, "2\r\n", 3, &err), 3);
    assert_int_equal(http_chunked_scan(&c, "abc", 3, &err), -1);
}

/* A size line or a trailer longer than the line bound is refused. */
static void test_line_limits(void **state)
{
    static char buf[8192];
    struct http_chunked c;
    struct http_error err;
    size_t n = 0;
    buf[n++] = '1';
    buf[n++] = ';';
    while (n < 4094)
        buf[n++] = 'a';
    memcpy(buf + n, "\r\nx\r\n0\r\n\r\n", 10);
    http_chunked_init(&c);
    assert_int_equal(http_chunked_scan(&c, buf, n + 10, &err), (ssize_t)(n + 10)); /* 4096 */
    memmove(buf + 3, buf + 2, n + 10 - 2);
    buf[2] = 'a';
    http_chunked_init(&c);
    assert_int_equal(http_chunked_scan(&c, buf, n + 11, &err), -1); /* 4097 */

    n = 0;
    memcpy(buf, "0\r\nX-A: ", 8);
    n = 8;
    while (n < 5000)
        buf[n++] = 'v';
    memcpy(buf + n, "\r\n\r\n", 4);
    http_chunked_init(&c);
    assert_int_equal(http_chunked_scan(&c, buf, n + 4, &err), -1);
}

static void test_trailer_count(void **state)
{
    static char buf[2048];
    struct http_chunked c;
    struct http_error err;
    for (int count = 32; count <= 33; count++) {
        size_t n = 3;
        memcpy(buf, "0\r\n", 3);
        for (int i = 0; i < count; i++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "T%d: v\r\n", i);
        memcpy(buf + n, "\r\n", 2);
        n += 2;
        http_chunked_init(&c);
        assert_int_equal(http_chunked_scan(&c, buf, n, &err), count == 32 ? (ssize_t)n : -1);
    }
}

static const struct CMUnitTest fixed_tests[] = {
    cmocka_unit_test(test_done_is_final),     cmocka_unit_test(test_response_status),
    cmocka_unit_test(test_refusal_is_sticky), cmocka_unit_test(test_big_chunk),
    cmocka_unit_test(test_line_limits),       cmocka_unit_test(test_trailer_count),
};

#define N_FIXED (sizeof(fixed_tests) / sizeof(fixed_tests[0]))

int main(void)
{
    static struct CMUnitTest tests[N_CASES + N_FIXED];
    size_t n = 0;
    for (size_t i = 0; i < N_CASES; i++)
        tests[n++] = (struct CMUnitTest){cases[i].name, run_case, NULL, NULL, (void *)&cases[i]};
    for (size_t i = 0; i < N_FIXED; i++)
        tests[n++] = fixed_tests[i];
    return _cmocka_run_group_tests("http_chunked", tests, n, NULL, NULL);
}
