/* Per-client policies ("clients"): which policy a source address selects,
 * how client files load with the main one, and the errors that name the
 * client and its file. Each test writes its policy files into a fresh
 * temporary directory. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/policy.h"

#define PATH_BYTES 512
#define ERROR_TEXT 2048

static char dir[PATH_BYTES];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sluice-clients-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[PATH_BYTES + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text)
{
    char path[PATH_BYTES + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static struct policy *load(const char *name, char *errtext)
{
    char path[PATH_BYTES + 64];
    struct policy_error err;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct policy *p = policy_load_file(path, &err);
    if (!p && errtext)
        policy_format_error(&err, errtext, ERROR_TEXT);
    return p;
}

static struct policy *must_load(const char *name)
{
    char text[ERROR_TEXT] = "";
    struct policy *p = load(name, text);
    if (!p)
        fail_msg("cannot load %s: %s", name, text);
    return p;
}

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
    }
    return ss;
}

static struct policy *select_for(struct policy *p, const char *text)
{
    struct sockaddr_storage ss = addr(text);
    return policy_select(p, (struct sockaddr *)&ss);
}

/* The verdict for CONNECT name:443 from a client address. */
static enum verdict connect_verdict(struct policy *p, const char *client, const char *name)
{
    struct dest d;
    struct decision dec;
    const char *why;
    memset(&d, 0, sizeof d);
    d.kind = DEST_CONNECT;
    d.port = 443;
    assert_int_equal(host_canonicalise(name, strlen(name), &d.host, &why), 0);
    policy_decide(select_for(p, client), &d, &dec);
    return dec.verdict;
}

static const char *client_name_of(struct policy *p, const struct policy *sel)
{
    for (size_t i = 0; i < policy_client_count(p); i++) {
        struct policy_client_info ci;
        assert_int_equal(policy_client_info(p, i, &ci), 0);
        if (ci.policy == sel)
            return ci.name;
    }
    return NULL;
}

static void write_gateway(void)
{
    write_file("a.json", "{\"rules\": [{\"allow\": \"allowed.test\"}]}");
    write_file("b.json", "{\"rules\": [{\"allow\": \"other.test\"}]}");
    write_file("main.json",
               "{\"default\": \"deny\", \"rules\": [{\"allow\": \"main.test\"}],\n"
               " \"dns\": {\"upstream\": [\"192.0.2.53\"]},\n"
               " \"clients\": [\n"
               "  {\"name\": \"a\", \"source\": [\"203.0.113.2\", \"2001:db8:a::/64\"],"
               " \"policy\": \"a.json\"},\n"
               "  {\"name\": \"b\", \"source\": [\"203.0.113.0/24\", \"::ffff:198.51.100.0/120\"],"
               " \"policy\": \"b.json\"}\n"
               " ]}\n");
}

static void test_first_client_wins(void **state)
{
    (void)state;
    write_gateway();
    struct policy *p = must_load("main.json");
    assert_int_equal(policy_client_count(p), 2);
    /* 203.0.113.2 is in both: the first listed client decides. */
    assert_string_equal(client_name_of(p, select_for(p, "203.0.113.2")), "a");
    assert_string_equal(client_name_of(p, select_for(p, "203.0.113.3")), "b");
    assert_string_equal(client_name_of(p, select_for(p, "2001:db8:a::9")), "a");
    /* No client covers it: the main policy itself. */
    assert_ptr_equal(select_for(p, "192.0.2.7"), p);
    assert_ptr_equal(select_for(p, "2001:db8:b::1"), p);
    assert_ptr_equal(policy_select(p, NULL), p);
    policy_unref(p);
}

static void test_decisions_follow_the_client(void **state)
{
    (void)state;
    write_gateway();
    struct policy *p = must_load("main.json");
    assert_int_equal(connect_verdict(p, "203.0.113.2", "allowed.test"), VERDICT_ALLOW);
    assert_int_equal(connect_verdict(p, "203.0.113.2", "other.test"), VERDICT_DENY);
    assert_int_equal(connect_verdict(p, "203.0.113.2", "main.test"), VERDICT_DENY);
    assert_int_equal(connect_verdict(p, "203.0.113.9", "other.test"), VERDICT_ALLOW);
    assert_int_equal(connect_verdict(p, "203.0.113.9", "allowed.test"), VERDICT_DENY);
    assert_int_equal(connect_verdict(p, "192.0.2.7", "main.test"), VERDICT_ALLOW);
    assert_int_equal(connect_verdict(p, "192.0.2.7", "allowed.test"), VERDICT_DENY);
    policy_unref(p);
}

/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; a client
 * written in either form matches both. */
static void test_v4_mapped(void **state)
{
    (void)state;
    write_gateway();
    struct policy *p = must_load("main.json");
    assert_string_equal(client_name_of(p, select_for(p, "::ffff:203.0.113.2")), "a");
    assert_string_equal(client_name_of(p, select_for(p, "::ffff:203.0.113.77")), "b");
    assert_string_equal(client_name_of(p, select_for(p, "198.51.100.7")), "b");
    assert_string_equal(client_name_of(p, select_for(p, "::ffff:198.51.100.7")), "b");
    assert_ptr_equal(select_for(p, "198.51.101.7"), p);
    policy_unref(p);
}

static void test_names_resolve_at_load(void **state)
{
    (void)state;
    /* localhost comes from /etc/hosts: no packet leaves for it. */
    write_file("a.json", "{\"rules\": [{\"allow\": \"allowed.test\"}]}");
    write_file("main.json", "{\"clients\": [{\"name\": \"local\", \"source\": [\"LocalHost\"],"
                            " \"policy\": \"a.json\"}]}");
    struct policy *p = must_load("main.json");
    struct policy_client_info ci;
    assert_int_equal(policy_client_info(p, 0, &ci), 0);
    assert_int_equal(ci.n_names, 1);
    assert_string_equal(ci.names[0], "localhost");
    assert_int_equal(ci.n_unresolved, 0);
    assert_true(ci.n_sources >= 1);
    assert_string_equal(client_name_of(p, select_for(p, "127.0.0.1")), "local");
    assert_ptr_equal(select_for(p, "127.0.0.2"), p);
    assert_int_equal(policy_client_info(p, 1, &ci), -1);
    policy_unref(p);
}

/* Client policies share the main policy's resolvers, and a rule of theirs
 * that needs interception makes the whole policy need the CA. */
static void test_client_inherits(void **state)
{
    (void)state;
    write_file("a.json", "{\"rules\": [{\"allow\": \"api.test\", \"methods\": [\"GET\"]}],"
                         " \"dns\": {\"refuse_with\": \"refused\"}}");
    write_file("main.json", "{\"dns\": {\"upstream\": [\"192.0.2.53\", \"192.0.2.54:5353\"]},"
                            " \"clients\": [{\"name\": \"a\", \"source\": [\"10.0.0.0/8\"],"
                            " \"policy\": \"a.json\"}]}");
    struct policy *p = must_load("main.json");
    assert_true(policy_needs_ca(p));
    struct policy *a = select_for(p, "10.1.2.3");
    assert_ptr_not_equal(a, p);
    assert_int_equal(policy_dns(a)->n_upstream, 2);
    assert_string_equal(policy_dns(a)->upstream[1], "192.0.2.54:5353");
    assert_int_equal(policy_dns(a)->refuse_with, DNS_REFUSE_REFUSED);
    assert_int_equal(policy_dns(p)->refuse_with, DNS_REFUSE_NXDOMAIN);
    /* A connection's reference outlives a reload that drops the main. */
    struct policy *held = policy_ref(a);
    policy_unref(p);
    assert_true(policy_needs_ca(held));
    assert_int_equal(policy_rule_count(held), 1);
    policy_unref(held);
}

static void expect_error(const char *main_text, const char *want1, const char *want2)
{
    char text[ERROR_TEXT] = "";
    write_file("main.json", main_text);
    struct policy *p = load("main.json", text);
    if (p) {
        policy_unref(p);
        fail_msg("loaded, expected an error with \"%s\"", want1);
    }
    if (!strstr(text, want1) || (want2 && !strstr(text, want2)))
        fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", text, want1, want2 ? want2 : "");
}

static void test_errors_name_client_and_file(void **state)
{
    (void)state;
    char want[PATH_BYTES + 64];
    write_file("bad.json", "{\"rules\": [{\"allow\": \"0x7f.1\"}]}");
    write_file("nested.json", "{\"clients\": []}");
    write_file("dns.json", "{\"dns\": {\"upstream\": [\"192.0.2.53\"]}}");
    snprintf(want, sizeof want, "%s/bad.json", dir);
    expect_error("{\"clients\": [{\"name\": \"cli\", \"source\": [\"10.0.0.1\"], \"policy\": "
                 "\"bad.json\"}]}",
                 "clients[0].policy: client \"cli\": ", want);
    expect_error("{\"clients\": [{\"name\": \"cli\", \"source\": [\"10.0.0.1\"], \"policy\": "
                 "\"bad.json\"}]}",
                 "rules[0].allow: invalid host pattern", NULL);
    snprintf(want, sizeof want, "%s/missing.json", dir);
    expect_error("{\"clients\": [{\"name\": \"x\", \"source\": [\"10.0.0.1\"], \"policy\": "
                 "\"missing.json\"}]}",
                 want, "No such file");
    expect_error("{\"clients\": [{\"name\": \"n\", \"source\": [\"10.0.0.1\"], \"policy\": "
                 "\"nested.json\"}]}",
                 "client \"n\"", "cannot have clients of its own");
    expect_error("{\"clients\": [{\"name\": \"d\", \"source\": [\"10.0.0.1\"], \"policy\": "
                 "\"dns.json\"}]}",
                 "dns.upstream: belongs to the main policy", NULL);
    expect_error("{\"clients\": [{\"name\": \"s\", \"source\": [\"10.0.0.1/8\"], \"policy\": "
                 "\"dns.json\"}]}",
                 "clients[0].source[0]", "invalid CIDR \"10.0.0.1/8\"");
    expect_error("{\"clients\": [{\"name\": \"s\", \"source\": [\"2130706433\"], \"policy\": "
                 "\"dns.json\"}]}",
                 "clients[0].source[0]", "neither an address nor a host name");
    expect_error("{\"clients\": [{\"name\": \"s\", \"source\": [], \"policy\": \"a.json\"}]}",
                 "clients[0].source", "at least one");
}

/* A policy sent as text (PUT /policy) finds client files in the directory
 * it is given, or takes absolute names only. */
static void test_buffer_needs_dir(void **state)
{
    (void)state;
    char text[ERROR_TEXT], abs_main[PATH_BYTES * 2];
    struct policy_error err;
    const char *rel = "{\"clients\": [{\"name\": \"a\", \"source\": [\"10.0.0.1\"], \"policy\": "
                      "\"a.json\"}]}";
    write_file("a.json", "{\"rules\": [{\"allow\": \"allowed.test\"}]}");
    struct policy *p = policy_load_buffer(rel, strlen(rel), "PUT /policy", &err);
    assert_null(p);
    policy_format_error(&err, text, sizeof text);
    assert_non_null(strstr(text, "PUT /policy: clients[0].policy: client \"a\": a relative"));
    p = policy_load_buffer_at(rel, strlen(rel), "PUT /policy", dir, &err);
    assert_non_null(p);
    assert_int_equal(policy_client_count(p), 1);
    policy_unref(p);
    snprintf(abs_main, sizeof abs_main,
             "{\"clients\": [{\"name\": \"a\", \"source\": [\"10.0.0.1\"], \"policy\": "
             "\"%s/a.json\"}]}",
             dir);
    p = policy_load_buffer(abs_main, strlen(abs_main), "PUT /policy", &err);
    assert_non_null(p);
    policy_unref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_client_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decisions_follow_the_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v4_mapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_resolve_at_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_inherits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_name_client_and_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_needs_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
