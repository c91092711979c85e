/* Per-client token buckets of the DNS filter: the burst, the refill rate,
 * clients kept apart, and a full table. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dns/ratelimit.h"

static struct sockaddr_storage client(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
        s->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
    } else {
        struct sockaddr_in *s = (struct sockaddr_in *)&ss;
        s->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
    }
    return ss;
}

static int taken(struct dns_ratelimit *rl, const struct sockaddr_storage *c, int tries,
                 uint64_t now)
{
    int n = 0;
    for (int i = 0; i < tries; i++)
        n += dns_ratelimit_take(rl, (const struct sockaddr *)c, now);
    return n;
}

static void test_burst_then_rate(void **state)
{
    struct dns_ratelimit *rl = dns_ratelimit_new(10, 20);
    struct sockaddr_storage a = client("127.0.0.1");
    assert_int_equal(taken(rl, &a, 50, 1000000), 20); /* the burst */
    assert_int_equal(taken(rl, &a, 50, 1500000), 5);  /* half a second at 10/s */
    assert_int_equal(taken(rl, &a, 50, 1500000), 0);
    assert_int_equal(taken(rl, &a, 50, 100000000), 20); /* refilled, never above the burst */
    dns_ratelimit_free(rl);
}

static void test_clients_apart(void **state)
{
    struct dns_ratelimit *rl = dns_ratelimit_new(1, 3);
    struct sockaddr_storage a = client("203.0.113.2"), b = client("2001:db8::2"),
                            mapped = client("::ffff:203.0.113.2");
    assert_int_equal(taken(rl, &a, 10, 0), 3);
    assert_int_equal(taken(rl, &b, 10, 0), 3);
    /* the IPv4-mapped form is the same client as the IPv4 address */
    assert_int_equal(taken(rl, &mapped, 10, 0), 0);
    dns_ratelimit_free(rl);
}

static void test_unlimited(void **state)
{
    struct sockaddr_storage a = client("127.0.0.1");
    assert_null(dns_ratelimit_new(0, 10));
    assert_true(dns_ratelimit_take(NULL, (const struct sockaddr *)&a, 0));
}

/* More clients than slots: each still gets its burst, nothing crashes. */
static void test_many_clients(void **state)
{
    struct dns_ratelimit *rl = dns_ratelimit_new(1, 2);
    for (uint32_t i = 0; i < 3 * DNS_RATELIMIT_SLOTS; i++) {
        struct sockaddr_storage ss;
        struct sockaddr_in *s = (struct sockaddr_in *)&ss;
        memset(&ss, 0, sizeof ss);
        s->sin_family = AF_INET;
        s->sin_addr.s_addr = htonl(0xc6120000u + i); /* 198.18.0.0/15 */
        assert_int_equal(taken(rl, &ss, 3, i), 2);
    }
    dns_ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_clients_apart),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_many_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
