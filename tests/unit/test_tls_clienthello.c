/* Unit tests: the ClientHello server-name parser, on hellos captured from
 * openssl s_client and on damaged copies of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls/clienthello.h"

static size_t load(const char *name, uint8_t *buf, size_t size)
{
    char path[512];
    const char *root = getenv("SLUICE_TEST_ROOT");
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/clienthello/%s", root ? root : ".", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, size, f);
    fclose(f);
    assert_true(n > 5);
    return n;
}

static void test_hello_with_sni(void **state)
{
    uint8_t buf[TLS_HELLO_MAX_BYTES];
    char name[256];
    size_t n = load("hello0.bin", buf, sizeof buf);
    assert_int_equal(tls_clienthello_sni(buf, n, name, sizeof name), TLS_HELLO_SNI);
    assert_string_equal(name, "allowed.test");
    n = load("hello2.bin", buf, sizeof buf);
    assert_int_equal(tls_clienthello_sni(buf, n, name, sizeof name), TLS_HELLO_SNI);
    assert_string_equal(name, "example.com");
}

static void test_hello_without_sni(void **state)
{
    uint8_t buf[TLS_HELLO_MAX_BYTES];
    char name[256];
    size_t n = load("hello1.bin", buf, sizeof buf);
    assert_int_equal(tls_clienthello_sni(buf, n, name, sizeof name), TLS_HELLO_NO_SNI);
}

/* Every proper prefix of a hello asks for more bytes: the proxy waits
 * instead of deciding on half a message. */
static void test_every_prefix_needs_more(void **state)
{
    uint8_t buf[TLS_HELLO_MAX_BYTES];
    char name[256];
    size_t n = load("hello0.bin", buf, sizeof buf);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(tls_clienthello_sni(buf, i, name, sizeof name), TLS_HELLO_NEED_MORE);
}

static void test_plain_http_is_not_a_hello(void **state)
{
    const char *get = "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
    char name[256];
    assert_int_equal(tls_clienthello_sni((const uint8_t *)get, strlen(get), name, sizeof name),
                     TLS_HELLO_MALFORMED);
    assert_int_equal(tls_clienthello_sni((const uint8_t *)"G", 1, name, sizeof name),
                     TLS_HELLO_MALFORMED);
}

/* Damage each length field in turn: the parser refuses rather than reading
 * past what encloses it (ASan would catch an overread). */
static void test_damaged_lengths_refused(void **state)
{
    uint8_t orig[TLS_HELLO_MAX_BYTES], buf[TLS_HELLO_MAX_BYTES];
    char name[256];
    size_t n = load("hello0.bin", orig, sizeof orig);
    int refused = 0;
    for (size_t i = 5; i < n; i++) {
        memcpy(buf, orig, n);
        buf[i] ^= 0xff;
        int r = tls_clienthello_sni(buf, n, name, sizeof name);
        assert_true(r >= TLS_HELLO_MALFORMED && r <= TLS_HELLO_NO_SNI);
        if (r == TLS_HELLO_SNI)
            assert_true(strlen(name) < sizeof name);
        refused += r == TLS_HELLO_MALFORMED;
    }
    assert_true(refused > 0);
}

static void test_name_longer_than_output_refused(void **state)
{
    uint8_t buf[TLS_HELLO_MAX_BYTES];
    char small[8];
    size_t n = load("hello0.bin", buf, sizeof buf);
    assert_int_equal(tls_clienthello_sni(buf, n, small, sizeof small), TLS_HELLO_MALFORMED);
}

static void test_oversized_record_refused(void **state)
{
    uint8_t hdr[5] = {22, 3, 1, 0x40, 0x01}; /* 16385 bytes: over the limit */
    char name[256];
    assert_int_equal(tls_clienthello_sni(hdr, sizeof hdr, name, sizeof name),
                     TLS_HELLO_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_with_sni),
        cmocka_unit_test(test_hello_without_sni),
        cmocka_unit_test(test_every_prefix_needs_more),
        cmocka_unit_test(test_plain_http_is_not_a_hello),
        cmocka_unit_test(test_damaged_lengths_refused),
        cmocka_unit_test(test_name_longer_than_output_refused),
        cmocka_unit_test(test_oversized_record_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
