/* sluice run's jail pieces that need no privileges: the effective policy
 * built from --policy/--allow/--deny, the child's environment, the CA
 * bundle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "jail/jail.h"

#define ERR_SIZE 512
#define PATH_SIZE 256

static char tmpdir[PATH_SIZE];

static int make_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sluice-test-jail-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[PATH_SIZE + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_tmp(const char *name, const char *text)
{
    static char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Builds and parses the effective policy; NULL (and err) when refused. */
static json_t *build(const struct jail_policy_args *a, bool *dns, char *err)
{
    char *text = jail_policy_build(a, dns, err, ERR_SIZE);
    if (text == NULL)
        return NULL;
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(j);
    return j;
}

static const char *rule_str(json_t *root, size_t i, const char *key)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(root, "rules"), i), key));
}

static void test_default_deny_with_allows(void **state)
{
    const char *allow[] = {"allowed.test", "db.example.com:5432", "[2001:db8::1]:8443"};
    struct jail_policy_args a = {.allow = allow, .n_allow = 3};
    bool dns;
    char err[ERR_SIZE];
    json_t *p = build(&a, &dns, err);
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "default")), "deny");
    assert_string_equal(rule_str(p, 0, "allow"), "allowed.test");
    assert_null(json_object_get(json_array_get(json_object_get(p, "rules"), 0), "ports"));
    assert_string_equal(rule_str(p, 1, "allow"), "db.example.com");
    json_t *ports = json_object_get(json_array_get(json_object_get(p, "rules"), 1), "ports");
    assert_int_equal(json_integer_value(json_array_get(ports, 0)), 5432);
    assert_string_equal(rule_str(p, 2, "allow"), "[2001:db8::1]");
    /* Interception on by default; no resolv.conf, no DNS filter. */
    assert_true(json_is_true(json_object_get(json_object_get(p, "intercept"), "enabled")));
    assert_false(dns);
    json_decref(p);
}

static void test_denies_first_allows_last(void **state)
{
    const char *file = write_tmp("p.json", "{\"default\": \"deny\", \"rules\": "
                                           "[{\"allow\": \"mid.test\"}]}");
    const char *allow[] = {"last.test"};
    const char *deny[] = {"first.test", "second.test"};
    struct jail_policy_args a = {
        .policy_file = file, .allow = allow, .n_allow = 1, .deny = deny, .n_deny = 2};
    bool dns;
    char err[ERR_SIZE];
    json_t *p = build(&a, &dns, err);
    assert_non_null(p);
    assert_string_equal(rule_str(p, 0, "deny"), "first.test");
    assert_string_equal(rule_str(p, 1, "deny"), "second.test");
    assert_string_equal(rule_str(p, 2, "allow"), "mid.test");
    assert_string_equal(rule_str(p, 3, "allow"), "last.test");
    json_decref(p);
}

static void test_no_intercept_and_dns_upstream(void **state)
{
    const char *resolv = write_tmp("resolv.conf", "# comment\nsearch example\n"
                                                  "nameserver 192.0.2.53\n"
                                                  "nameserver fe80::1%eth0\n"
                                                  "nameserver 2001:db8::53\n");
    struct jail_policy_args a = {.no_intercept = true, .resolv_conf = resolv};
    bool dns;
    char err[ERR_SIZE];
    json_t *p = build(&a, &dns, err);
    assert_non_null(p);
    assert_true(dns);
    assert_true(json_is_false(json_object_get(json_object_get(p, "intercept"), "enabled")));
    json_t *up = json_object_get(json_object_get(p, "dns"), "upstream");
    assert_int_equal(json_array_size(up), 2); /* the scoped address is skipped */
    assert_string_equal(json_string_value(json_array_get(up, 0)), "192.0.2.53");
    assert_string_equal(json_string_value(json_array_get(up, 1)), "2001:db8::53");
    json_decref(p);
}

static void test_refusals_name_the_cause(void **state)
{
    bool dns;
    char err[ERR_SIZE];
    const char *bad_port[] = {"allowed.test:99999"};
    struct jail_policy_args a = {.allow = bad_port, .n_allow = 1};
    assert_null(build(&a, &dns, err));
    assert_non_null(strstr(err, "allowed.test:99999"));

    /* A numeric host trick is refused by the policy loader itself. */
    const char *numeric[] = {"2130706433"};
    struct jail_policy_args b = {.deny = numeric, .n_deny = 1};
    assert_null(build(&b, &dns, err));
    assert_non_null(strstr(err, "invalid policy"));

    const char *file = write_tmp("bad.json", "{\"default\": \"deny\",\n \"rules\": 7}\n");
    struct jail_policy_args c = {.policy_file = file};
    assert_null(build(&c, &dns, err));
    assert_non_null(strstr(err, "bad.json"));

    /* Interception needed by the file, switched off on the command line. */
    const char *needs = write_tmp("needs.json", "{\"default\": \"deny\", \"rules\": "
                                                "[{\"allow\": \"a.test\", \"methods\": "
                                                "[\"GET\"]}]}");
    struct jail_policy_args d = {.policy_file = needs, .no_intercept = true};
    assert_null(build(&d, &dns, err));

    const char *osb = write_tmp("osb.json", "{\"defaultAction\": \"deny\", \"egress\": "
                                            "[{\"action\": \"allow\", \"target\": \"a.test\"}]}");
    const char *allow[] = {"b.test"};
    struct jail_policy_args e = {.policy_file = osb, .allow = allow, .n_allow = 1};
    assert_null(build(&e, &dns, err));
    assert_non_null(strstr(err, "OpenSandbox"));
}

static void test_env_variables(void **state)
{
    unsetenv("SSL_CERT_FILE");
    assert_int_equal(jail_env_apply(JAIL_PROXY_URL, "/tmp/bundle.pem"), 0);
    const char *proxies[] = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                             "http_proxy", "https_proxy", "all_proxy"};
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(getenv(proxies[i]), "http://198.18.0.1:8080");
    assert_string_equal(getenv("NO_PROXY"), "localhost,127.0.0.1,::1");
    assert_string_equal(getenv("no_proxy"), "localhost,127.0.0.1,::1");
    const char *bundles[] = {"SSL_CERT_FILE",       "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE",
                             "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "PIP_CERT",
                             "AWS_CA_BUNDLE"};
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(getenv(bundles[i]), "/tmp/bundle.pem");
}

static void test_bundle_concatenates(void **state)
{
    char a[PATH_SIZE], b[PATH_SIZE], out[PATH_SIZE], missing[PATH_SIZE];
    snprintf(a, sizeof a, "%s", write_tmp("a.pem", "AAA")); /* no final newline */
    snprintf(b, sizeof b, "%s", write_tmp("b.pem", "BBB\n"));
    snprintf(out, sizeof out, "%s/bundle.pem", tmpdir);
    snprintf(missing, sizeof missing, "%s/none.pem", tmpdir);
    char err[ERR_SIZE];
    const char *srcs[] = {missing, a, b, NULL};
    assert_int_equal(jail_bundle_write(out, srcs, err, sizeof err), 0);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char buf[64] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    assert_int_equal(n, 8);
    assert_string_equal(buf, "AAA\nBBB\n");
    /* The last source (the run's CA) must exist. */
    const char *need[] = {a, missing, NULL};
    assert_int_equal(jail_bundle_write(out, need, err, sizeof err), -1);
    assert_non_null(strstr(err, "none.pem"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_deny_with_allows),
        cmocka_unit_test(test_denies_first_allows_last),
        cmocka_unit_test(test_no_intercept_and_dns_upstream),
        cmocka_unit_test(test_refusals_name_the_cause),
        cmocka_unit_test(test_env_variables),
        cmocka_unit_test(test_bundle_concatenates),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
