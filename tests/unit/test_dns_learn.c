/* The in-memory learned-address sink: what the enforcement layer would be
 * told, for how long, and what happens when it is full. Time is passed in,
 * so expiry is tested without sleeping. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <jansson.h>

#include "dns/learn.h"

static struct learned entry(const char *ip, const char *name, uint32_t ttl)
{
    struct learned e;
    memset(&e, 0, sizeof e);
    e.family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    assert_int_equal(inet_pton(e.family, ip, e.addr), 1);
    e.ttl = ttl;
    snprintf(e.name, sizeof e.name, "%s", name);
    return e;
}

static bool known(struct learn_memory *m, const char *ip, uint64_t now, uint32_t *left)
{
    struct learned e = entry(ip, "", 0);
    return learn_memory_lookup(m, e.family, e.addr, now, left, NULL);
}

static void test_publish_and_expire(void **state)
{
    struct learn_memory *m = learn_memory_new(16);
    struct learned e[2] = {entry("192.0.2.10", "allowed.test", 30),
                           entry("2001:db8:1::10", "allowed.test", 5)};
    uint32_t left = 0;
    char name[HOST_TEXT_SIZE];
    assert_int_equal(learn_memory_publish_at(m, e, 2, 1000), 0);
    assert_int_equal(learn_memory_count(m, 1000), 2);
    assert_true(learn_memory_lookup(m, AF_INET, e[0].addr, 1000, &left, name));
    assert_int_equal(left, 30);
    assert_string_equal(name, "allowed.test");
    assert_true(known(m, "2001:db8:1::10", 1004, &left));
    assert_int_equal(left, 1);
    assert_false(known(m, "2001:db8:1::10", 1005, &left)); /* expired at 1005 */
    assert_true(known(m, "192.0.2.10", 1029, &left));
    assert_false(known(m, "192.0.2.10", 1030, &left));
    assert_int_equal(learn_memory_count(m, 1030), 0);
    assert_false(known(m, "192.0.2.11", 1000, &left));
    learn_memory_free(m);
}

/* An address seen again keeps the later expiry, never a shorter one. */
static void test_later_expiry_wins(void **state)
{
    struct learn_memory *m = learn_memory_new(16);
    struct learned a = entry("192.0.2.10", "a.test", 100);
    struct learned b = entry("192.0.2.10", "b.test", 10);
    uint32_t left = 0;
    char name[HOST_TEXT_SIZE];
    learn_memory_publish_at(m, &a, 1, 0);
    learn_memory_publish_at(m, &b, 1, 50);
    assert_true(learn_memory_lookup(m, AF_INET, a.addr, 50, &left, name));
    assert_int_equal(left, 50);
    assert_string_equal(name, "a.test");
    learn_memory_publish_at(m, &b, 1, 95); /* 105 > 100: extends */
    assert_true(learn_memory_lookup(m, AF_INET, a.addr, 101, &left, name));
    assert_string_equal(name, "b.test");
    assert_int_equal(learn_memory_count(m, 101), 1);
    learn_memory_free(m);
}

static void test_full_table_drops_expired_then_soonest(void **state)
{
    struct learn_memory *m = learn_memory_new(3);
    struct learned e[3] = {entry("192.0.2.1", "x.test", 10), entry("192.0.2.2", "x.test", 100),
                           entry("192.0.2.3", "x.test", 50)};
    learn_memory_publish_at(m, e, 3, 0);
    /* at 20 the first has expired: it makes room, nothing live is evicted */
    struct learned d = entry("192.0.2.4", "x.test", 100);
    learn_memory_publish_at(m, &d, 1, 20);
    assert_int_equal(learn_memory_evictions(m), 0);
    assert_true(known(m, "192.0.2.2", 20, NULL));
    assert_true(known(m, "192.0.2.3", 20, NULL));
    assert_true(known(m, "192.0.2.4", 20, NULL));
    /* all live: the one expiring soonest (192.0.2.3 at 50) goes */
    struct learned f = entry("2001:db8::5", "y.test", 100);
    learn_memory_publish_at(m, &f, 1, 21);
    assert_int_equal(learn_memory_evictions(m), 1);
    assert_false(known(m, "192.0.2.3", 21, NULL));
    assert_true(known(m, "2001:db8::5", 21, NULL));
    assert_int_equal(learn_memory_count(m, 21), 3);
    learn_memory_free(m);
}

/* Many inserts and expiries through one small table: every live entry
 * stays findable (the deletion keeps probe chains whole). */
static void test_churn_keeps_entries_findable(void **state)
{
    struct learn_memory *m = learn_memory_new(64);
    for (uint32_t round = 0; round < 50; round++) {
        for (uint32_t i = 0; i < 64; i++) {
            struct learned e;
            memset(&e, 0, sizeof e);
            e.family = AF_INET;
            e.addr[0] = 198;
            e.addr[1] = 51;
            e.addr[2] = (uint8_t)round;
            e.addr[3] = (uint8_t)i;
            e.ttl = 1 + (i % 7);
            snprintf(e.name, sizeof e.name, "n%u.test", i);
            learn_memory_publish_at(m, &e, 1, round * 10);
        }
        for (uint32_t i = 0; i < 64; i++) {
            uint8_t a[4] = {198, 51, (uint8_t)round, (uint8_t)i};
            assert_true(learn_memory_lookup(m, AF_INET, a, round * 10, NULL, NULL));
        }
    }
    assert_int_equal(learn_memory_count(m, 490), 64);
    learn_memory_free(m);
}

static void test_json(void **state)
{
    struct learn_memory *m = learn_memory_new(8);
    struct learned e[2] = {entry("2001:db8:1::10", "allowed.test", 60),
                           entry("192.0.2.10", "allowed.test", 30)};
    learn_memory_publish_at(m, e, 2, 100);
    char *text = learn_memory_json(m, 110);
    json_error_t err;
    json_t *doc = json_loads(text, 0, &err);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 2);
    assert_int_equal(json_integer_value(json_object_get(doc, "capacity")), 8);
    json_t *first = json_array_get(json_object_get(doc, "entries"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "address")), "192.0.2.10");
    assert_string_equal(json_string_value(json_object_get(first, "family")), "ipv4");
    assert_string_equal(json_string_value(json_object_get(first, "name")), "allowed.test");
    assert_int_equal(json_integer_value(json_object_get(first, "ttl")), 30);
    assert_int_equal(json_integer_value(json_object_get(first, "expires_in")), 20);
    json_decref(doc);
    free(text);
    text = learn_memory_json(m, 130); /* the IPv4 entry has expired */
    doc = json_loads(text, 0, &err);
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 1);
    json_decref(doc);
    free(text);
    learn_memory_free(m);
}

static void test_sink_interface(void **state)
{
    struct learn_memory *m = learn_memory_new(4);
    struct learn_sink sink = learn_memory_sink(m);
    struct learned e = entry("192.0.2.10", "allowed.test", 30);
    assert_int_equal(sink.publish(sink.arg, &e, 1), 0);
    assert_true(known(m, "192.0.2.10", learn_now(), NULL));
    assert_null(learn_memory_new(0));
    learn_memory_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_and_expire),
        cmocka_unit_test(test_later_expiry_wins),
        cmocka_unit_test(test_full_table_drops_expired_then_soonest),
        cmocka_unit_test(test_churn_keeps_entries_findable),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_sink_interface),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
