/* Host canonicalisation: what every entry point turns a host into, and
 * every spelling SPEC §2 refuses. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "policy/addr.h"
#include "policy/host.h"

#define NAME 'n'
#define V4 '4'
#define V6 '6'
#define REFUSED 'x'
#define LONG_TEXT 600

struct host_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    char expect;
    const char *out; /* canonical text, or a substring of the refusal */
};

static const struct host_case host_cases[] = {
    /* names */
    {"example.com", 0, NAME, "example.com"},
    {"EXAMPLE.COM", 0, NAME, "example.com"},
    {"Example.Com.", 0, NAME, "example.com"},
    {"a", 0, NAME, "a"},
    {"localhost", 0, NAME, "localhost"},
    {"_dmarc.example.com", 0, NAME, "_dmarc.example.com"},
    {"a-b.c-d.example", 0, NAME, "a-b.c-d.example"},
    {"1.2.3.example", 0, NAME, "1.2.3.example"},
    {"0x7f.example", 0, NAME, "0x7f.example"},
    {"123abc.example", 0, NAME, "123abc.example"},
    {"example.c0m", 0, NAME, "example.c0m"},
    {"xn--bcher-kva.example", 0, NAME, "xn--bcher-kva.example"},
    {"XN--BCHER-KVA.EXAMPLE", 0, NAME, "xn--bcher-kva.example"},
    /* IDN */
    {"bücher.example", 0, NAME, "xn--bcher-kva.example"},
    {"BÜCHER.EXAMPLE.", 0, NAME, "xn--bcher-kva.example"},
    {"straße.example", 0, NAME, "xn--strae-oqa.example"},
    {"münchen.de", 0, NAME, "xn--mnchen-3ya.de"},
    {"пример.рф", 0, NAME, "xn--e1afmkfd.xn--p1ai"},
    {"例え.テスト", 0, NAME, "xn--r8jz45g.xn--zckzah"},
    {"\xcc\x81"
     "a.example",
     0, REFUSED, "IDNA"},
    {"\xff\xfe.example", 0, REFUSED, "IDNA"},
    {"\xef\xbc\x91\xef\xbc\x92\xef\xbc\x97.0.0.1", 0, REFUSED, "IP address"}, /* full-width 127 */
    {"a\xe2\x84\x80"
     "c.example",
     0, REFUSED, "URL delimiter"}, /* U+2100 maps to "a/c" */
    /* IPv4 */
    {"127.0.0.1", 0, V4, "127.0.0.1"},
    {"0.0.0.0", 0, V4, "0.0.0.0"},
    {"255.255.255.255", 0, V4, "255.255.255.255"},
    {"203.0.113.7.", 0, V4, "203.0.113.7"},
    {"2130706433", 0, REFUSED, "integer"},
    {"017700000001", 0, REFUSED, "octal"},
    {"0177.0.0.1", 0, REFUSED, "octal"},
    {"127.0.0.01", 0, REFUSED, "octal"},
    {"127.000.000.001", 0, REFUSED, "octal"},
    {"0x7f.1", 0, REFUSED, "hexadecimal"},
    {"0x7f000001", 0, REFUSED, "hexadecimal"},
    {"0X7F000001", 0, REFUSED, "hexadecimal"},
    {"0x7f.0.0.1", 0, REFUSED, "hexadecimal"},
    {"127.0.0.0x1", 0, REFUSED, "hexadecimal"},
    {"0x", 0, REFUSED, "hexadecimal"},
    {"127.1", 0, REFUSED, "short"},
    {"10.1.1", 0, REFUSED, "short"},
    {"1.2.3.4.5", 0, REFUSED, "too many"},
    {"256.1.1.1", 0, REFUSED, "over 255"},
    {"1.2.3.99999999999999999999", 0, REFUSED, "over 255"},
    {"example.123", 0, REFUSED, "numeric last label"},
    {"a.1.2.3", 0, REFUSED, "numeric last label"},
    {"4294967296", 0, REFUSED, "integer"},
    /* IPv6 */
    {"[::1]", 0, V6, "::1"},
    {"[2001:DB8::1]", 0, V6, "2001:db8::1"},
    {"[2001:0db8:0000:0000:0000:0000:0000:0001]", 0, V6, "2001:db8::1"},
    {"[::ffff:127.0.0.1]", 0, V6, "::ffff:127.0.0.1"},
    {"[::]", 0, V6, "::"},
    {"2001:db8::1", 0, V6, "2001:db8::1"},
    {"[fe80::1%eth0]", 0, REFUSED, "'%'"},
    {"[fe80::1%25eth0]", 0, REFUSED, "'%'"},
    {"[::1", 0, REFUSED, "unterminated"},
    {"[::1]x", 0, REFUSED, "junk after"},
    {"[]", 0, REFUSED, "not an IPv6"},
    {"[example.com]", 0, REFUSED, "not an IPv6"},
    {"[127.0.0.1]", 0, REFUSED, "not an IPv6"},
    {"[::ffff:127.0.0.01]", 0, REFUSED, "not an IPv6"},
    {"[1:2:3:4:5:6:7:8:9]", 0, REFUSED, "not an IPv6"},
    {"2001:db8::g", 0, REFUSED, "':'"},
    /* bytes that never belong in a host */
    {"user@example.com", 0, REFUSED, "userinfo"},
    {"user:pass@example.com", 0, REFUSED, "userinfo"},
    {"example.com%2f", 0, REFUSED, "'%'"},
    {"ex%41mple.com", 0, REFUSED, "'%'"},
    {"example.com\\@evil.com", 0, REFUSED, "backslash"},
    {"exa\\mple.com", 0, REFUSED, "backslash"},
    {"example.com\0.evil.com", 16, REFUSED, "NUL"},
    {"exa\nmple.com", 0, REFUSED, "control"},
    {"exa\tmple.com", 0, REFUSED, "control"},
    {"example.com\x7f", 0, REFUSED, "control"},
    {"exa mple.com", 0, REFUSED, "space"},
    {" example.com", 0, REFUSED, "space"},
    {"example.com:443", 0, REFUSED, "':'"},
    {"example.com/path", 0, REFUSED, "URL delimiter"},
    {"example.com?q", 0, REFUSED, "URL delimiter"},
    {"example.com#f", 0, REFUSED, "URL delimiter"},
    {"*.example.com", 0, REFUSED, "'*'"},
    {"exa[mple.com", 0, REFUSED, "brackets"},
    {"exa!mple.com", 0, REFUSED, "invalid character"},
    {"exa,mple.com", 0, REFUSED, "invalid character"},
    /* empty and over-long */
    {"", 0, REFUSED, "empty"},
    {".", 0, REFUSED, "empty host"},
    {"..", 0, REFUSED, "empty label"},
    {"a..b", 0, REFUSED, "empty label"},
    {".example.com", 0, REFUSED, "empty label"},
    {"example.com..", 0, REFUSED, "empty label"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", 0, NAME,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", 0, REFUSED,
     "label longer than 63"},
};

static void test_canonicalise_table(void **state)
{
    int failures = 0;
    for (size_t i = 0; i < sizeof host_cases / sizeof host_cases[0]; i++) {
        const struct host_case *c = &host_cases[i];
        struct host h;
        const char *why = NULL;
        size_t len = c->len ? c->len : strlen(c->in);
        int rc = host_canonicalise(c->in, len, &h, &why);
        bool ok;
        if (c->expect == REFUSED) {
            ok = rc < 0 && why && strstr(why, c->out);
        } else {
            char kind = h.kind == HOST_KIND_NAME ? NAME : h.kind == HOST_KIND_IPV4 ? V4 : V6;
            ok = rc == 0 && kind == c->expect && strcmp(h.text, c->out) == 0 &&
                 h.len == strlen(h.text);
        }
        if (!ok) {
            print_error("case %zu \"%s\": expected %c %s, got %s %s\n", i, c->in, c->expect, c->out,
                        rc == 0 ? "accepted" : "refused", rc == 0 ? h.text : why);
            failures++;
        }
    }
    assert_true(sizeof host_cases / sizeof host_cases[0] >= 60);
    assert_int_equal(failures, 0);
}

/* Whatever the canonicaliser accepts, it accepts again unchanged: there is
 * exactly one canonical spelling. */
static void test_canonical_is_fixed_point(void **state)
{
    for (size_t i = 0; i < sizeof host_cases / sizeof host_cases[0]; i++) {
        const struct host_case *c = &host_cases[i];
        struct host a, b;
        const char *why;
        size_t len = c->len ? c->len : strlen(c->in);
        if (host_canonicalise(c->in, len, &a, &why) < 0)
            continue;
        assert_int_equal(host_canonicalise(a.text, a.len, &b, &why), 0);
        assert_string_equal(a.text, b.text);
        assert_int_equal(a.kind, b.kind);
    }
}

static void test_addresses_filled(void **state)
{
    struct host h;
    const char *why;
    assert_int_equal(host_canonicalise("192.0.2.1", 9, &h, &why), 0);
    assert_int_equal(h.kind, HOST_KIND_IPV4);
    const uint8_t *b = (const uint8_t *)&h.addr.v4;
    assert_int_equal(b[0], 192);
    assert_int_equal(b[3], 1);
    assert_int_equal(host_canonicalise("[2001:db8::2]", 13, &h, &why), 0);
    assert_int_equal(h.addr.v6.s6_addr[0], 0x20);
    assert_int_equal(h.addr.v6.s6_addr[15], 2);
}

static void test_name_limits(void **state)
{
    char name[LONG_TEXT];
    struct host h;
    const char *why;
    /* 4 x 63-byte labels + 3 dots = 255 bytes: over 253. */
    size_t n = 0;
    for (int l = 0; l < 4; l++) {
        if (l)
            name[n++] = '.';
        memset(name + n, 'a', 63);
        n += 63;
    }
    assert_int_equal(host_canonicalise(name, n, &h, &why), -1);
    assert_non_null(strstr(why, "253"));
    /* 253 bytes exactly is fine; with the root dot it is still fine. */
    n = 253;
    name[n - 2] = 'a';
    name[250] = '.';
    assert_int_equal(host_canonicalise(name, n, &h, &why), 0);
    assert_int_equal(h.len, 253);
    name[n] = '.';
    assert_int_equal(host_canonicalise(name, n + 1, &h, &why), 0);
    assert_int_equal(h.len, 253);
    /* Raw input far over the limit is refused before any work. */
    memset(name, 'a', sizeof name);
    assert_int_equal(host_canonicalise(name, sizeof name, &h, &why), -1);
    /* Only len bytes are read: no NUL terminator needed. */
    assert_int_equal(host_canonicalise("example.comXXX", 11, &h, &why), 0);
    assert_string_equal(h.text, "example.com");
}

struct authority_case {
    const char *in;
    uint16_t default_port;
    bool ok;
    const char *host; /* or refusal substring */
    uint16_t port;
};

static const struct authority_case authority_cases[] = {
    {"example.com", 443, true, "example.com", 443},
    {"example.com:8443", 443, true, "example.com", 8443},
    {"EXAMPLE.com.:80", 443, true, "example.com", 80},
    {"[::1]", 80, true, "::1", 80},
    {"[::1]:8080", 80, true, "::1", 8080},
    {"[2001:DB8::1]:443", 80, true, "2001:db8::1", 443},
    {"127.0.0.1:65535", 80, true, "127.0.0.1", 65535},
    {"bücher.example:1", 80, true, "xn--bcher-kva.example", 1},
    {"example.com:", 443, false, "empty port", 0},
    {"example.com:0", 443, false, "1..65535", 0},
    {"example.com:65536", 443, false, "1..65535", 0},
    {"example.com:99999999", 443, false, "1..65535", 0},
    {"example.com:+443", 443, false, "1..65535", 0},
    {"example.com:-1", 443, false, "1..65535", 0},
    {"example.com:0443", 443, false, "leading zeros", 0},
    {"example.com:44 3", 443, false, "1..65535", 0},
    {"example.com:443:443", 443, false, "brackets", 0},
    {"::1", 443, false, "brackets", 0},
    {"2001:db8::1:443", 443, false, "brackets", 0},
    {"[::1]443", 443, false, "junk after", 0},
    {"[::1", 443, false, "unterminated", 0},
    {"[example.com]:443", 443, false, "not an IPv6", 0},
    {":443", 443, false, "empty host", 0},
    {"", 443, false, "empty", 0},
    {"user@example.com:443", 443, false, "userinfo", 0},
    {"example.com@evil.com:443", 443, false, "userinfo", 0},
    {"0x7f.1:80", 443, false, "hexadecimal", 0},
    {"127.1:80", 443, false, "short", 0},
    {"[fe80::1%25eth0]:80", 443, false, "'%'", 0},
};

static void test_authority_table(void **state)
{
    int failures = 0;
    for (size_t i = 0; i < sizeof authority_cases / sizeof authority_cases[0]; i++) {
        const struct authority_case *c = &authority_cases[i];
        struct host h;
        uint16_t port = 0;
        const char *why = NULL;
        int rc = host_parse_authority(c->in, strlen(c->in), c->default_port, &h, &port, &why);
        bool ok = c->ok ? rc == 0 && strcmp(h.text, c->host) == 0 && port == c->port
                        : rc < 0 && why && strstr(why, c->host);
        if (!ok) {
            print_error("authority \"%s\": expected %s %s %u, got %s %s %u\n", c->in,
                        c->ok ? "ok" : "refused", c->host, c->port, rc == 0 ? "ok" : "refused",
                        rc == 0 ? h.text : why, port);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void test_format_authority(void **state)
{
    struct host h;
    uint16_t port;
    char buf[HOST_TEXT_SIZE + 8];
    const char *why;
    assert_int_equal(host_parse_authority("[2001:db8::1]:8443", 18, 443, &h, &port, &why), 0);
    assert_int_equal(host_format_authority(&h, port, buf, sizeof buf), 0);
    assert_string_equal(buf, "[2001:db8::1]:8443");
    assert_int_equal(host_parse_authority("Example.COM.", 12, 443, &h, &port, &why), 0);
    assert_int_equal(host_format_authority(&h, port, buf, sizeof buf), 0);
    assert_string_equal(buf, "example.com:443");
    char small[8];
    assert_int_equal(host_format_authority(&h, port, small, sizeof small), -1);
}

static void test_cidr(void **state)
{
    struct cidr c, outer;
    const char *why;
    char buf[64];
    assert_int_equal(cidr_parse("203.0.113.0/24", &c, &why), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 24);
    assert_int_equal(cidr_format(&c, buf, sizeof buf), 0);
    assert_string_equal(buf, "203.0.113.0/24");
    assert_int_equal(cidr_parse("2001:DB8::/32", &c, &why), 0);
    assert_int_equal(cidr_format(&c, buf, sizeof buf), 0);
    assert_string_equal(buf, "2001:db8::/32");
    assert_int_equal(cidr_parse("192.0.2.7", &c, &why), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(cidr_parse("0.0.0.0/0", &c, &why), 0);
    assert_int_equal(cidr_parse("10.0.0.1/8", &c, &why), -1);
    assert_non_null(strstr(why, "host bits"));
    assert_int_equal(cidr_parse("10.0.0.0/33", &c, &why), -1);
    assert_int_equal(cidr_parse("::/129", &c, &why), -1);
    assert_int_equal(cidr_parse("10.0.0.0/", &c, &why), -1);
    assert_int_equal(cidr_parse("10.0.0.0/08", &c, &why), -1);
    assert_int_equal(cidr_parse("10.0.0.0/-8", &c, &why), -1);
    assert_int_equal(cidr_parse("10.0.0.0/8/8", &c, &why), -1);
    assert_int_equal(cidr_parse("10/8", &c, &why), -1);
    assert_int_equal(cidr_parse("012.0.0.0/8", &c, &why), -1);
    assert_int_equal(cidr_parse("example.com/8", &c, &why), -1);

    assert_int_equal(cidr_parse("203.0.113.0/24", &outer, &why), 0);
    assert_int_equal(cidr_parse("203.0.113.128/25", &c, &why), 0);
    assert_true(cidr_within(&c, &outer));
    assert_false(cidr_within(&outer, &c));
    assert_true(cidr_within(&outer, &outer));
    assert_int_equal(cidr_parse("0.0.0.0/0", &c, &why), 0);
    assert_false(cidr_within(&c, &outer));
    assert_int_equal(cidr_parse("::/0", &c, &why), 0);
    assert_false(cidr_within(&c, &outer));

    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET, "203.0.113.200", &sin.sin_addr);
    assert_true(cidr_contains(&outer, (struct sockaddr *)&sin));
    inet_pton(AF_INET, "203.0.114.1", &sin.sin_addr);
    assert_false(cidr_contains(&outer, (struct sockaddr *)&sin));
    /* A mapped address is IPv6: never inside an IPv4 prefix. */
    inet_pton(AF_INET6, "::ffff:203.0.113.200", &sin6.sin6_addr);
    assert_false(cidr_contains(&outer, (struct sockaddr *)&sin6));
}

static void test_special_range_names(void **state)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    struct cidr range;
    char buf[64];
    inet_pton(AF_INET, "169.254.169.254", &sin.sin_addr);
    assert_string_equal(addr_special_range((struct sockaddr *)&sin), "link-local / cloud metadata");
    assert_non_null(addr_special_range_cidr((struct sockaddr *)&sin, &range));
    assert_int_equal(cidr_format(&range, buf, sizeof buf), 0);
    assert_string_equal(buf, "169.254.0.0/16");
    inet_pton(AF_INET, "8.8.8.8", &sin.sin_addr);
    assert_null(addr_special_range((struct sockaddr *)&sin));
    inet_pton(AF_INET6, "::ffff:8.8.8.8", &sin6.sin6_addr);
    assert_string_equal(addr_special_range((struct sockaddr *)&sin6), "IPv4-mapped IPv6");
    /* The most specific range names the address. */
    inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
    assert_string_equal(addr_special_range((struct sockaddr *)&sin6), "loopback");
    inet_pton(AF_INET, "255.255.255.255", &sin.sin_addr);
    assert_string_equal(addr_special_range((struct sockaddr *)&sin), "broadcast");
    inet_pton(AF_INET6, "2606:4700::1111", &sin6.sin6_addr);
    assert_null(addr_special_range((struct sockaddr *)&sin6));
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_null(addr_special_range(&other));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonicalise_table),
        cmocka_unit_test(test_canonical_is_fixed_point),
        cmocka_unit_test(test_addresses_filled),
        cmocka_unit_test(test_name_limits),
        cmocka_unit_test(test_authority_table),
        cmocka_unit_test(test_format_authority),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_special_range_names),
    };
    return cmocka_run_group_tests_name("host", tests, NULL, NULL);
}
