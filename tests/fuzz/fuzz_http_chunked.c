/* libFuzzer harness for the chunked-body scanner. The first two bytes pick
 * split points; the rest is the body. Where the body ends, or whether it is
 * refused, must not depend on how it was split, and each call must say how
 * much was body without reading past what it was given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REFUSED -1
#define INCOMPLETE -2

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* Scans buf in pieces of at most step bytes (0: in one piece). */
static long scan(const char *buf, size_t len, size_t step, bool response)
{
    struct http_chunked c;
    struct http_error err = {0, NULL};
    if (response)
        http_chunked_init_response(&c);
    else
        http_chunked_init(&c);
    size_t pos = 0;
    do {
        size_t piece = len - pos;
        if (step > 0 && piece > step)
            piece = step;
        ssize_t n = http_chunked_scan(&c, buf + pos, piece, &err);
        if (n < 0) {
            check(err.reason != NULL && err.status == (response ? 502 : 400));
            check(!c.done);
            check(http_chunked_scan(&c, buf, len, &err) == -1);
            return REFUSED;
        }
        check((size_t)n <= piece);
        if (c.done) {
            check(http_chunked_scan(&c, buf, len, &err) == 0);
            return (long)(pos + (size_t)n);
        }
        check((size_t)n == piece);
        pos += piece;
    } while (pos < len);
    return INCOMPLETE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step_a = data[0] % 17 + 1, step_b = data[1];
    size -= 2;
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 2, size);

    long whole = scan(buf, size, 0, false);
    check(scan(buf, size, step_a, false) == whole);
    check(scan(buf, size, step_b, false) == whole);
    check(scan(buf, size, 1, true) == whole);
    /* A body that ended is a body on its own, whatever follows it. */
    if (whole >= 0)
        check(scan(buf, (size_t)whole, 0, false) == whole);
    free(buf);
    return 0;
}
