/* The YAML emitter behind `sluice manifest`: exact bytes for each shape a
 * manifest uses, and the quoting that keeps strings strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "deploy/yaml.h"

/* The YAML for a JSON text (one document, or a stream with comment). */
static char *render(const char *json_text, bool stream, const char *comment)
{
    json_error_t jerr;
    json_t *v = json_loads(json_text, JSON_DECODE_ANY, &jerr);
    char *buf = NULL;
    size_t len = 0;
    if (!v)
        fail_msg("bad test JSON: %s", jerr.text);
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    int rc = stream ? yaml_write_stream(out, comment, v) : yaml_write_doc(out, v);
    fclose(out);
    json_decref(v);
    assert_int_equal(rc, 0);
    return buf;
}

static void expect(const char *json_text, const char *yaml)
{
    char *got = render(json_text, false, NULL);
    if (strcmp(got, yaml) != 0)
        fail_msg("for %s\nwant:\n%s\ngot:\n%s", json_text, yaml, got);
    free(got);
}

static void test_nested_blocks(void **state)
{
    (void)state;
    expect(
        "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"a\", "
        "\"labels\": {\"sluice.dev/sandbox\": \"true\"}}, \"spec\": {\"containers\": "
        "[{\"name\": \"w\", \"args\": [\"--x\", \"y\"], \"ports\": [{\"containerPort\": 8666}]}]}}",
        "apiVersion: \"v1\"\n"
        "kind: \"Pod\"\n"
        "metadata:\n"
        "  name: \"a\"\n"
        "  labels:\n"
        "    sluice.dev/sandbox: \"true\"\n"
        "spec:\n"
        "  containers:\n"
        "    - name: \"w\"\n"
        "      args:\n"
        "        - \"--x\"\n"
        "        - \"y\"\n"
        "      ports:\n"
        "        - containerPort: 8666\n");
}

/* Key order is the tree's insertion order, not sorted. */
static void test_insertion_order(void **state)
{
    (void)state;
    expect("{\"z\": 1, \"a\": 2, \"m\": 3}", "z: 1\na: 2\nm: 3\n");
}

/* Strings that a plain scalar would turn into something else stay strings. */
static void test_scalars_quoted(void **state)
{
    (void)state;
    expect("{\"a\": \"true\", \"b\": \"8080\", \"c\": \"null\", \"d\": \"no\", \"e\": \"\", "
           "\"f\": \"x: y # z\", \"g\": \"tab\\there\", \"h\": \"caf\\u00e9\"}",
           "a: \"true\"\nb: \"8080\"\nc: \"null\"\nd: \"no\"\ne: \"\"\n"
           "f: \"x: y # z\"\ng: \"tab\\there\"\nh: \"caf\xc3\xa9\"\n");
    expect("{\"n\": 42, \"neg\": -1, \"t\": true, \"f\": false, \"z\": null, \"r\": 0.5}",
           "\"n\": 42\nneg: -1\nt: true\nf: false\nz: null\nr: 0.5\n");
}

static void test_keys_quoted_when_needed(void **state)
{
    (void)state;
    expect("{\"8080\": 1, \"yes\": 2, \"a b\": 3, \"-x\": 4, \"ok_key-1.json\": 5}",
           "\"8080\": 1\n\"yes\": 2\n\"a b\": 3\n\"-x\": 4\nok_key-1.json: 5\n");
}

static void test_empty_collections(void **state)
{
    (void)state;
    expect("{\"emptyDir\": {}, \"args\": [], \"x\": [{}, []]}",
           "emptyDir: {}\nargs: []\nx:\n  - {}\n  - []\n");
}

/* Multi-line text as a literal block, with the chomping that keeps it exact. */
static void test_literal_blocks(void **state)
{
    (void)state;
    expect("{\"data\": {\"policy.json\": \"{\\n  \\\"default\\\": \\\"deny\\\"\\n}\\n\"}}",
           "data:\n"
           "  policy.json: |\n"
           "    {\n"
           "      \"default\": \"deny\"\n"
           "    }\n");
    expect("{\"a\": \"x\\ny\"}", "a: |-\n  x\n  y\n");
    expect("{\"a\": \"x\\n\\ny\\n\\n\"}", "a: |+\n  x\n\n  y\n\n");
    expect("[\"one\\ntwo\\n\"]", "- |\n  one\n  two\n");
}

/* Text a literal block could not carry exactly falls back to quoting. */
static void test_literal_fallbacks(void **state)
{
    (void)state;
    expect("{\"a\": \" lead\\nx\"}", "a: \" lead\\nx\"\n");
    expect("{\"a\": \"x\\r\\ny\"}", "a: \"x\\r\\ny\"\n");
    expect("{\"a\": \"x\\u2028\\ny\"}", "a: \"x\xe2\x80\xa8\\ny\"\n");
    expect("{\"a\": \"\\nx\"}", "a: \"\\nx\"\n");
}

static void test_sequence_of_sequences(void **state)
{
    (void)state;
    expect("[[1, 2], [\"a\"]]", "- - 1\n  - 2\n- - \"a\"\n");
}

static void test_stream(void **state)
{
    (void)state;
    char *got = render("[{\"kind\": \"ConfigMap\"}, {\"kind\": \"Pod\"}]", true,
                       "run:\n\n  podman kube play x.yaml");
    assert_string_equal(got, "# run:\n#\n#   podman kube play x.yaml\n---\n"
                             "kind: \"ConfigMap\"\n---\nkind: \"Pod\"\n");
    free(got);
    got = render("[{\"a\": 1}, {\"b\": 2}]", true, NULL);
    assert_string_equal(got, "a: 1\n---\nb: 2\n");
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested_blocks),
        cmocka_unit_test(test_insertion_order),
        cmocka_unit_test(test_scalars_quoted),
        cmocka_unit_test(test_keys_quoted_when_needed),
        cmocka_unit_test(test_empty_collections),
        cmocka_unit_test(test_literal_blocks),
        cmocka_unit_test(test_literal_fallbacks),
        cmocka_unit_test(test_sequence_of_sequences),
        cmocka_unit_test(test_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
