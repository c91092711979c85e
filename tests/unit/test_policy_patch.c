/* PATCH and DELETE /policy as text edits (src/policy/patch.c): which rules
 * a target names, where replaced and added rules go, and which status each
 * kind of bad request gets. Every result is loaded like a file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "policy/patch.h"
#include "policy/policy.h"

#define LIVE                                                                                       \
    "{\"default\": \"deny\", \"rules\": ["                                                         \
    "{\"deny\": \"denied.test\", \"reason\": \"old\"},"                                            \
    "{\"allow\": \"PyPI.org.\", \"ports\": [443]},"                                                \
    "{\"allow\": \"api.test\", \"methods\": [\"GET\"]},"                                           \
    "{\"deny\": \"api.test\"},"                                                                    \
    "{\"allow\": \"secret.test\", \"inject\": {\"Authorization\": \"Bearer s3cr3t\"}},"            \
    "{\"allow\": \"192.0.2.1\"}"                                                                   \
    "], \"reach_ranges\": [\"192.0.2.0/24\"]}"

/* The rules of an edit's result, which must load as a policy. */
static json_t *rules_of(const struct policy_edit *e)
{
    struct policy_error err;
    struct policy *p = policy_load_buffer(e->text, e->len, "edit", &err);
    if (!p) {
        char text[1024];
        policy_format_error(&err, text, sizeof text);
        fail_msg("edited policy does not load: %s\n%s", text, e->text);
    }
    policy_unref(p);
    json_t *root = json_loads(e->text, 0, NULL);
    assert_non_null(root);
    json_t *rules = json_incref(json_object_get(root, "rules"));
    json_decref(root);
    return rules;
}

static const char *str_at(json_t *rules, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(rules, i), key));
}

static enum policy_edit_status patch(const char *body, struct policy_edit *e)
{
    return policy_patch_text(LIVE, strlen(LIVE), body, strlen(body), e);
}

static void test_replace_in_place_by_canonical_target(void **state)
{
    struct policy_edit e;
    assert_int_equal(patch("{\"rules\": [{\"allow\": \"pypi.org\"},"
                           "{\"deny\": \"DENIED.test\", \"reason\": \"new\"}]}",
                           &e),
                     POLICY_EDIT_OK);
    json_t *rules = rules_of(&e);
    assert_int_equal(json_array_size(rules), 6);
    assert_string_equal(str_at(rules, 0, "reason"), "new");
    assert_string_equal(str_at(rules, 1, "allow"), "pypi.org");
    assert_null(json_object_get(json_array_get(rules, 1), "ports"));
    assert_int_equal(e.n_replaced, 2);
    assert_string_equal(e.replaced[0], "denied.test"); /* live order */
    assert_string_equal(e.replaced[1], "pypi.org");
    assert_int_equal(e.n_added, 0);
    assert_string_equal(e.warning, "");
    json_decref(rules);
    policy_edit_free(&e);
}

static void test_new_targets_are_appended(void **state)
{
    struct policy_edit e;
    /* a bare array and a single rule are patches too */
    assert_int_equal(patch("[{\"allow\": \"new.test\"}, {\"allow\": \"192.0.2.1/32\", "
                           "\"ports\": [80]}]",
                           &e),
                     POLICY_EDIT_OK);
    json_t *rules = rules_of(&e);
    assert_int_equal(json_array_size(rules), 7);
    assert_string_equal(str_at(rules, 5, "allow"), "192.0.2.1/32"); /* same as 192.0.2.1 */
    assert_string_equal(str_at(rules, 6, "allow"), "new.test");
    assert_int_equal(e.n_added, 1);
    assert_string_equal(e.added[0], "new.test");
    json_decref(rules);
    policy_edit_free(&e);

    assert_int_equal(patch("{\"prompt\": \"*.new.test\"}", &e), POLICY_EDIT_OK);
    rules = rules_of(&e);
    assert_string_equal(str_at(rules, 6, "prompt"), "*.new.test");
    json_decref(rules);
    policy_edit_free(&e);
}

/* All live rules of a target give way to all the patch's rules for it,
 * where the first of them stood. */
static void test_target_with_several_rules(void **state)
{
    struct policy_edit e;
    assert_int_equal(patch("{\"rules\": [{\"allow\": \"api.test\", \"methods\": [\"GET\", "
                           "\"HEAD\"]}, {\"allow\": \"x.test\"}, {\"prompt\": \"api.test\"}]}",
                           &e),
                     POLICY_EDIT_OK);
    json_t *rules = rules_of(&e);
    assert_int_equal(json_array_size(rules), 7);
    assert_int_equal(json_array_size(json_object_get(json_array_get(rules, 2), "methods")), 2);
    assert_string_equal(str_at(rules, 3, "prompt"), "api.test");
    assert_string_equal(str_at(rules, 4, "allow"), "secret.test");
    assert_string_equal(str_at(rules, 6, "allow"), "x.test");
    json_decref(rules);
    policy_edit_free(&e);
}

/* Secrets the live text holds survive an edit (GET /policy shows them
 * redacted, so they could not be sent back). */
static void test_inject_values_kept(void **state)
{
    struct policy_edit e;
    assert_int_equal(patch("{\"allow\": \"new.test\"}", &e), POLICY_EDIT_OK);
    assert_non_null(strstr(e.text, "Bearer s3cr3t"));
    policy_edit_free(&e);
}

static void test_bad_requests(void **state)
{
    static const struct {
        const char *body;
        enum policy_edit_status st;
        const char *error;
    } cases[] = {
        {"{\"rules\": [", POLICY_EDIT_BAD_REQUEST, "body:1:"},
        {"\"pypi.org\"", POLICY_EDIT_BAD_REQUEST, "send {\"rules\""},
        {"{\"rules\": []}", POLICY_EDIT_BAD_REQUEST, "no rules"},
        {"[]", POLICY_EDIT_BAD_REQUEST, "no rules"},
        {"{\"rules\": {}}", POLICY_EDIT_BAD_REQUEST, "must be an array"},
        {"{\"rules\": [], \"default\": \"allow\"}", POLICY_EDIT_BAD_REQUEST, "no other key"},
        {"[{\"allow\": \"a.test\"}, \"b.test\"]", POLICY_EDIT_BAD_REQUEST,
         "rules[1]: a rule must be an object"},
        {"[{\"allow\": \"a.test\"}, {\"allow\": \"b.test\", \"reason\": 5}]", POLICY_EDIT_INVALID,
         "PATCH /policy: rules[1].reason: "},
        {"[{\"allow\": \"a.test:443\"}]", POLICY_EDIT_INVALID,
         "rules[0].allow: invalid host pattern"},
        {"[{\"allow\": \"a.test\", \"deny\": \"a.test\"}]", POLICY_EDIT_INVALID, "exactly one of"},
        {"[{\"alow\": \"a.test\"}]", POLICY_EDIT_INVALID, "rules[0]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct policy_edit e;
        enum policy_edit_status st = patch(cases[i].body, &e);
        if (st != cases[i].st || !strstr(e.error, cases[i].error))
            fail_msg("%s: status %d, error \"%s\"", cases[i].body, st, e.error);
        assert_null(e.text);
        policy_edit_free(&e);
    }
}

static void test_added_after_catch_all_warns(void **state)
{
    static const char live[] = "{\"rules\": [{\"allow\": \"a.test\"}, {\"deny\": \"*\"}]}";
    static const char body[] = "{\"allow\": \"b.test\"}";
    struct policy_edit e;
    assert_int_equal(policy_patch_text(live, strlen(live), body, strlen(body), &e), POLICY_EDIT_OK);
    assert_non_null(strstr(e.warning, "after rules[1]"));
    policy_edit_free(&e);
    /* replacing in front of it is fine */
    static const char body2[] = "{\"deny\": \"a.test\"}";
    assert_int_equal(policy_patch_text(live, strlen(live), body2, strlen(body2), &e),
                     POLICY_EDIT_OK);
    assert_string_equal(e.warning, "");
    policy_edit_free(&e);
}

static void test_sandbox_form(void **state)
{
    static const char live[] = "{\"defaultAction\": \"deny\", \"egress\": ["
                               "{\"action\": \"allow\", \"target\": \"a.test\"}]}";
    static const char body[] = "[{\"action\": \"deny\", \"target\": \"A.test\"},"
                               "{\"action\": \"allow\", \"target\": \"b.test\"}]";
    struct policy_edit e;
    assert_int_equal(policy_patch_text(live, strlen(live), body, strlen(body), &e), POLICY_EDIT_OK);
    json_t *root = json_loads(e.text, 0, NULL);
    json_t *egress = json_object_get(root, "egress");
    assert_int_equal(json_array_size(egress), 2);
    assert_string_equal(str_at(egress, 0, "action"), "deny");
    json_decref(root);
    policy_edit_free(&e);
    static const char native[] = "[{\"allow\": \"b.test\"}]";
    assert_int_equal(policy_patch_text(live, strlen(live), native, strlen(native), &e),
                     POLICY_EDIT_INVALID);
    policy_edit_free(&e);
}

static void test_delete(void **state)
{
    const char *targets[] = {"API.test", "192.0.2.1/32"};
    struct policy_edit e;
    assert_int_equal(policy_delete_text(LIVE, strlen(LIVE), targets, 2, &e), POLICY_EDIT_OK);
    json_t *rules = rules_of(&e);
    assert_int_equal(json_array_size(rules), 3);
    assert_int_equal(e.rules_removed, 3);
    assert_int_equal(e.n_removed, 2);
    assert_string_equal(e.removed[0], "api.test");
    assert_string_equal(e.removed[1], "192.0.2.1/32");
    json_decref(rules);
    policy_edit_free(&e);
}

static void test_delete_errors(void **state)
{
    const char *missing[] = {"api.test", "nope.test", "*.api.test"};
    const char *bad[] = {"a.test:80"};
    struct policy_edit e;
    assert_int_equal(policy_delete_text(LIVE, strlen(LIVE), missing, 3, &e), POLICY_EDIT_NOT_FOUND);
    assert_string_equal(e.error,
                        "no rule has the targets \"nope.test\", \"*.api.test\"; nothing removed");
    policy_edit_free(&e);
    assert_int_equal(policy_delete_text(LIVE, strlen(LIVE), bad, 1, &e), POLICY_EDIT_BAD_REQUEST);
    assert_non_null(strstr(e.error, "targets[0]"));
    policy_edit_free(&e);
    assert_int_equal(policy_delete_text(LIVE, strlen(LIVE), NULL, 0, &e), POLICY_EDIT_BAD_REQUEST);
    policy_edit_free(&e);
}

/* A policy without "rules" gets one. */
static void test_patch_policy_without_rules(void **state)
{
    static const char live[] = "{\"default\": \"allow\"}";
    static const char body[] = "{\"deny\": \"a.test\"}";
    struct policy_edit e;
    assert_int_equal(policy_patch_text(live, strlen(live), body, strlen(body), &e), POLICY_EDIT_OK);
    json_t *rules = rules_of(&e);
    assert_int_equal(json_array_size(rules), 1);
    json_decref(rules);
    policy_edit_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replace_in_place_by_canonical_target),
        cmocka_unit_test(test_new_targets_are_appended),
        cmocka_unit_test(test_target_with_several_rules),
        cmocka_unit_test(test_inject_values_kept),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_added_after_catch_all_warns),
        cmocka_unit_test(test_sandbox_form),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_delete_errors),
        cmocka_unit_test(test_patch_policy_without_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
