/* prompt decisions: the answers an operator can give (admin API body and
 * approver lines), the reasons logged for them, question ids, and what an
 * empty registry says. The waiting itself is covered by the system tests
 * (tests/system/test_approvals.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy/policy.h"
#include "proxy/approval.h"

static int parse(const char *json, bool *allow, bool *for_run, char *err, size_t size)
{
    return approval_parse_answer(json, strlen(json), allow, for_run, err, size);
}

static void test_answers_accepted(void **state)
{
    (void)state;
    bool allow = false, run = true;
    char err[256];
    assert_int_equal(parse("{\"decision\":\"allow\"}", &allow, &run, err, sizeof err), 0);
    assert_true(allow);
    assert_false(run); /* scope defaults to once */
    assert_int_equal(parse("{\"decision\":\"allow\",\"scope\":\"run\"}", &allow, &run, err,
                           sizeof err), 0);
    assert_true(allow && run);
    assert_int_equal(parse("{\"scope\":\"once\",\"decision\":\"deny\"}", &allow, &run, err,
                           sizeof err), 0);
    assert_false(allow);
    assert_false(run);
}

static void test_answers_refused_with_a_reason(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *says;
    } bad[] = {
        {"", "JSON object"},
        {"[]", "JSON object"},
        {"{\"decision\":\"yes\"}", "\"decision\" must be"},
        {"{\"decision\":\"ALLOW\"}", "\"decision\" must be"},
        {"{\"scope\":\"run\"}", "\"decision\" must be"},
        {"{\"decision\":\"allow\",\"scope\":\"forever\"}", "\"scope\" must be"},
        {"{\"decision\":\"allow\",\"scope\":1}", "\"scope\" must be"},
        {"{\"decision\":\"allow\",\"id\":\"x\"}", "unknown member \"id\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool allow, run;
        char err[256] = "";
        assert_int_equal(parse(bad[i].json, &allow, &run, err, sizeof err), -1);
        if (strstr(err, bad[i].says) == NULL)
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].json, err, bad[i].says);
    }
}

static void test_reasons_name_who_answered(void **state)
{
    (void)state;
    char r[APPROVAL_REASON_MAX];
    approval_reason_text(true, false, APPROVAL_VIA_ADMIN, r, sizeof r);
    assert_string_equal(r, "approved by operator via admin API");
    approval_reason_text(true, true, APPROVAL_VIA_ADMIN, r, sizeof r);
    assert_string_equal(r, "approved for this run by operator via admin API");
    approval_reason_text(false, true, APPROVAL_VIA_ADMIN, r, sizeof r);
    assert_string_equal(r, "denied by operator via admin API");
    approval_reason_text(true, false, APPROVAL_VIA_TERMINAL, r, sizeof r);
    assert_string_equal(r, "approved on the terminal");
    approval_reason_text(false, false, APPROVAL_VIA_TERMINAL, r, sizeof r);
    assert_string_equal(r, "denied on the terminal");
}

static void test_ids(void **state)
{
    (void)state;
    assert_true(approval_id_valid("0123abcd"));
    assert_false(approval_id_valid("0123ABCD"));
    assert_false(approval_id_valid("0123abc"));
    assert_false(approval_id_valid("0123abcde"));
    assert_false(approval_id_valid("../../x1"));
    assert_false(approval_id_valid(""));
    assert_false(approval_id_valid(NULL));
}

static void test_empty_registry(void **state)
{
    (void)state;
    char *list = approval_list_json();
    assert_non_null(list);
    assert_string_equal(list, "[]");
    free(list);
    assert_int_equal(approval_answer("0123abcd", true, false, APPROVAL_VIA_ADMIN, NULL),
                     APPROVAL_UNKNOWN);
    assert_int_equal(approval_answer("nonsense", true, false, APPROVAL_VIA_ADMIN, NULL),
                     APPROVAL_UNKNOWN);
}

static void test_policy_default_prompt(void **state)
{
    (void)state;
    static const char text[] = "{\"default\": \"prompt\", \"rules\": [{\"prompt\": "
                               "\"api.example.com\", \"paths\": [\"/v1/*\"]}, {\"allow\": "
                               "\"example.com\"}]}";
    struct policy_error perr;
    struct policy *p = policy_load_buffer(text, strlen(text), "test", &perr);
    assert_non_null(p);
    assert_int_equal(policy_default(p), VERDICT_PROMPT);
    assert_true(policy_rule_constrained(p, 0));
    assert_false(policy_rule_constrained(p, 1));
    assert_false(policy_rule_constrained(p, 99));
    struct dest d = {.kind = DEST_CONNECT, .port = 443};
    const char *why = NULL;
    assert_int_equal(host_canonicalise("other.example", 13, &d.host, &why), 0);
    struct decision dec;
    policy_decide(p, &d, &dec);
    assert_int_equal(dec.verdict, VERDICT_PROMPT);
    assert_int_equal(dec.rule, -1);
    policy_unref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_accepted),
        cmocka_unit_test(test_answers_refused_with_a_reason),
        cmocka_unit_test(test_reasons_name_who_answered),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_empty_registry),
        cmocka_unit_test(test_policy_default_prompt),
    };
    return cmocka_run_group_tests_name("approval", tests, NULL, NULL);
}
