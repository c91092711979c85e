/* policy/patch: edit a policy's text by rule target (PATCH and DELETE
 * /policy). The result is only text; validation and going live stay with
 * the loader and the caller, exactly as for a file. */
#include "policy/patch.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/host.h"
#include "policy/policy.h"

#define TARGET_SIZE (HOST_TEXT_SIZE + 8) /* "*." + name, or "addr/prefix" */
#define INDEX_PATH_SIZE 160

__attribute__((format(printf, 3, 4))) static enum policy_edit_status
edit_fail(struct policy_edit *out, enum policy_edit_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->error, sizeof out->error, fmt, ap);
    va_end(ap);
    return st;
}

static int push(char ***v, size_t *n, const char *s)
{
    char **grown = realloc(*v, (*n + 1) * sizeof **v);
    if (!grown)
        return -1;
    *v = grown;
    if (!(grown[*n] = strdup(s)))
        return -1;
    (*n)++;
    return 0;
}

static bool listed(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* The OpenSandbox form keeps its rules under "egress" as {action, target}. */
static bool is_sandbox(const json_t *root)
{
    return json_object_get(root, "egress") || json_object_get(root, "defaultAction") ||
           json_object_get(root, "default_action");
}

/* A rule's target as written, or NULL when it has none (or several). */
static const char *rule_target(const json_t *rule, bool sandbox)
{
    static const char *const actions[] = {"allow", "deny", "prompt"};
    const char *found = NULL;
    if (sandbox)
        return json_string_value(json_object_get(rule, "target"));
    for (size_t a = 0; a < sizeof actions / sizeof actions[0]; a++) {
        json_t *v = json_object_get(rule, actions[a]);
        if (!v)
            continue;
        if (found || !json_is_string(v))
            return NULL;
        found = json_string_value(v);
    }
    return found;
}

/* "" when the rule has no valid target: then it matches no request's. */
static void rule_key(const json_t *rule, bool sandbox, char key[TARGET_SIZE])
{
    const char *t = rule_target(rule, sandbox);
    const char *why;
    if (!t || policy_target_canonical(t, key, TARGET_SIZE, &why) < 0)
        key[0] = '\0';
}

static enum policy_edit_status load_live(const char *text, size_t len, json_t **root,
                                         json_t **rules, bool *sandbox, struct policy_edit *out)
{
    json_error_t jerr;
    *root = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(*root))
        return edit_fail(out, POLICY_EDIT_INVALID, "the live policy text is not a JSON object");
    *sandbox = is_sandbox(*root);
    const char *key = *sandbox ? "egress" : "rules";
    *rules = json_object_get(*root, key);
    if (!*rules) {
        *rules = json_array();
        if (!*rules || json_object_set_new(*root, key, *rules) < 0)
            return edit_fail(out, POLICY_EDIT_INVALID, "out of memory");
    }
    if (!json_is_array(*rules))
        return edit_fail(out, POLICY_EDIT_INVALID, "the live policy's %s is not an array", key);
    return POLICY_EDIT_OK;
}

static enum policy_edit_status finish(json_t *root, struct policy_edit *out)
{
    out->text = json_dumps(root, JSON_INDENT(2));
    if (!out->text)
        return edit_fail(out, POLICY_EDIT_INVALID, "out of memory");
    out->len = strlen(out->text);
    return POLICY_EDIT_OK;
}

/* ---- PATCH --------------------------------------------------------------- */

/* The body's rules as an array (a new reference), or NULL with a 400. */
static json_t *patch_rules(const char *body, size_t body_len, struct policy_edit *out)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    json_t *rules = NULL;

    if (!doc) {
        edit_fail(out, POLICY_EDIT_BAD_REQUEST, "body:%d:%d: %s", jerr.line, jerr.column,
                  jerr.text);
        return NULL;
    }
    if (json_is_array(doc)) {
        rules = json_incref(doc);
    } else if (json_is_object(doc) && json_object_get(doc, "rules")) {
        if (json_object_size(doc) != 1)
            edit_fail(out, POLICY_EDIT_BAD_REQUEST,
                      "body: send {\"rules\": [...]} with no other key; to change \"default\" "
                      "or other settings, PUT the whole policy");
        else if (!json_is_array(json_object_get(doc, "rules")))
            edit_fail(out, POLICY_EDIT_BAD_REQUEST, "body: rules: must be an array of rules");
        else
            rules = json_incref(json_object_get(doc, "rules"));
    } else if (json_is_object(doc)) {
        rules = json_array();
        if (rules)
            json_array_append(rules, doc);
    } else {
        edit_fail(out, POLICY_EDIT_BAD_REQUEST,
                  "body: send {\"rules\": [RULE, ...]}, [RULE, ...] or one RULE object");
    }
    json_decref(doc);
    if (rules && json_array_size(rules) == 0) {
        edit_fail(out, POLICY_EDIT_BAD_REQUEST, "body: no rules to add or replace");
        json_decref(rules);
        return NULL;
    }
    return rules;
}

/* Each rule loaded as a one-rule policy of the live form, so it is checked
 * by the same code as a file; the error then names the body's index. */
static enum policy_edit_status validate_rule(json_t *rule, size_t i, bool sandbox,
                                             struct policy_edit *out)
{
    const char *key = sandbox ? "egress" : "rules";
    json_t *wrap = json_pack("{s:[O]}", key, rule);
    char *text = wrap ? json_dumps(wrap, JSON_COMPACT) : NULL;
    struct policy_error err;
    struct policy *p = text ? policy_load_buffer(text, strlen(text), "PATCH /policy", &err) : NULL;

    json_decref(wrap);
    if (text) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
    if (p) {
        policy_unref(p);
        return POLICY_EDIT_OK;
    }
    if (!wrap || !text)
        return edit_fail(out, POLICY_EDIT_INVALID, "out of memory");
    /* "rules[0].allow" -> "rules[i].allow": the body's numbering. */
    char prefix[INDEX_PATH_SIZE], path[INDEX_PATH_SIZE];
    snprintf(prefix, sizeof prefix, "%s[0]", key);
    const char *rest =
        strncmp(err.path, prefix, strlen(prefix)) == 0 ? err.path + strlen(prefix) : "";
    snprintf(path, sizeof path, "rules[%zu]%s", i, rest);
    return edit_fail(out, POLICY_EDIT_INVALID, "PATCH /policy: %s: %s", path, err.message);
}

/* Where the first rule for "*" stands, or -1: rules after it decide only
 * what it does not match. */
static long catch_all_at(const json_t *rules, bool sandbox)
{
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r)
    {
        char key[TARGET_SIZE];
        rule_key(r, sandbox, key);
        if (strcmp(key, "*") == 0)
            return (long)i;
    }
    return -1;
}

static enum policy_edit_status merge(json_t *live, json_t *patch, const char (*keys)[TARGET_SIZE],
                                     bool sandbox, json_t *merged, size_t *appended,
                                     struct policy_edit *out)
{
    size_t i, j;
    json_t *r, *q;
    /* Live rules in order; the first rule of a patched target is where all
     * the patch's rules for it go, the others of that target are dropped. */
    json_array_foreach(live, i, r)
    {
        char key[TARGET_SIZE];
        bool patched = false;
        rule_key(r, sandbox, key);
        json_array_foreach(patch, j, q) patched |= key[0] && strcmp(keys[j], key) == 0;
        if (!patched) {
            json_array_append(merged, r);
            continue;
        }
        if (listed(out->replaced, out->n_replaced, key))
            continue;
        if (push(&out->replaced, &out->n_replaced, key) < 0)
            return edit_fail(out, POLICY_EDIT_INVALID, "out of memory");
        json_array_foreach(patch, j, q) if (strcmp(keys[j], key) == 0) json_array_append(merged, q);
    }
    /* New targets go last: first match wins, so they never shadow a rule. */
    json_array_foreach(patch, j, q)
    {
        if (listed(out->replaced, out->n_replaced, keys[j]))
            continue;
        if (!listed(out->added, out->n_added, keys[j]) &&
            push(&out->added, &out->n_added, keys[j]) < 0)
            return edit_fail(out, POLICY_EDIT_INVALID, "out of memory");
        json_array_append(merged, q);
        (*appended)++;
    }
    return POLICY_EDIT_OK;
}

/* Appending after a "*" rule is allowed (it may have ports, and "*" never
 * matches addresses), but the operator should hear that it may be dead. */
static void warn_catch_all(const json_t *merged, bool sandbox, size_t appended,
                           struct policy_edit *out)
{
    long at = catch_all_at(merged, sandbox);
    if (at < 0 || appended == 0 || (size_t)at >= json_array_size(merged) - appended)
        return;
    snprintf(out->warning, sizeof out->warning,
             "the added rules come after rules[%ld], a \"*\" rule that matches every name "
             "first (on its ports): for names they decide only what it does not match",
             at);
}

enum policy_edit_status policy_patch_text(const char *text, size_t len, const char *body,
                                          size_t body_len, struct policy_edit *out)
{
    json_t *root = NULL, *live = NULL, *patch = NULL, *merged = NULL;
    char(*keys)[TARGET_SIZE] = NULL;
    bool sandbox = false;
    enum policy_edit_status st;
    size_t i, appended = 0;
    json_t *q;

    memset(out, 0, sizeof *out);
    if (!(patch = patch_rules(body, body_len, out))) {
        st = out->error[0] ? POLICY_EDIT_BAD_REQUEST : POLICY_EDIT_INVALID;
        goto out;
    }
    if ((st = load_live(text, len, &root, &live, &sandbox, out)) != POLICY_EDIT_OK)
        goto out;
    json_array_foreach(patch, i, q)
    {
        if (!json_is_object(q)) {
            st = edit_fail(out, POLICY_EDIT_BAD_REQUEST,
                           "body: rules[%zu]: a rule must be an object like "
                           "{\"allow\": \"example.com\"}",
                           i);
            goto out;
        }
    }
    keys = calloc(json_array_size(patch), sizeof *keys);
    merged = json_array();
    if (!keys || !merged) {
        st = edit_fail(out, POLICY_EDIT_INVALID, "out of memory");
        goto out;
    }
    json_array_foreach(patch, i, q)
    {
        if ((st = validate_rule(q, i, sandbox, out)) != POLICY_EDIT_OK)
            goto out;
        rule_key(q, sandbox, keys[i]);
    }
    if ((st = merge(live, patch, (const char(*)[TARGET_SIZE])keys, sandbox, merged, &appended,
                    out)) != POLICY_EDIT_OK)
        goto out;
    json_array_clear(live);
    json_array_extend(live, merged);
    warn_catch_all(live, sandbox, appended, out);
    st = finish(root, out);
out:
    free(keys);
    json_decref(merged);
    json_decref(patch);
    json_decref(root);
    if (st != POLICY_EDIT_OK) {
        char error[sizeof out->error];
        memcpy(error, out->error, sizeof error);
        policy_edit_free(out);
        memcpy(out->error, error, sizeof error);
    }
    return st;
}

/* ---- DELETE -------------------------------------------------------------- */

enum policy_edit_status policy_delete_text(const char *text, size_t len, const char *const *targets,
                                           size_t n_targets, struct policy_edit *out)
{
    json_t *root = NULL, *live = NULL, *kept = NULL;
    bool sandbox = false;
    enum policy_edit_status st = POLICY_EDIT_OK;
    char missing[POLICY_EDIT_ERROR_SIZE] = "";
    size_t i, n_missing = 0;
    json_t *r;

    memset(out, 0, sizeof *out);
    if (n_targets == 0) {
        st = edit_fail(out, POLICY_EDIT_BAD_REQUEST,
                       "no targets: send {\"targets\": [\"example.com\", ...]} or "
                       "?target=example.com");
        goto out;
    }
    for (size_t t = 0; t < n_targets; t++) {
        char key[TARGET_SIZE];
        const char *why = "invalid";
        if (policy_target_canonical(targets[t], key, sizeof key, &why) < 0) {
            st = edit_fail(out, POLICY_EDIT_BAD_REQUEST,
                           "targets[%zu]: \"%.128s\" is not a host "
                           "pattern or address: %s",
                           t, targets[t], why);
            goto out;
        }
        if (!listed(out->removed, out->n_removed, key) &&
            push(&out->removed, &out->n_removed, key) < 0) {
            st = edit_fail(out, POLICY_EDIT_INVALID, "out of memory");
            goto out;
        }
    }
    if ((st = load_live(text, len, &root, &live, &sandbox, out)) != POLICY_EDIT_OK)
        goto out;
    for (size_t t = 0; t < out->n_removed; t++) {
        bool found = false;
        json_array_foreach(live, i, r)
        {
            char key[TARGET_SIZE];
            rule_key(r, sandbox, key);
            found |= strcmp(key, out->removed[t]) == 0;
        }
        if (!found) {
            size_t used = strlen(missing);
            snprintf(missing + used, sizeof missing - used, "%s\"%.128s\"", n_missing ? ", " : "",
                     out->removed[t]);
            n_missing++;
        }
    }
    if (n_missing) {
        st = edit_fail(out, POLICY_EDIT_NOT_FOUND, "no rule has the target%s %s; nothing removed",
                       n_missing > 1 ? "s" : "", missing);
        goto out;
    }
    if (!(kept = json_array())) {
        st = edit_fail(out, POLICY_EDIT_INVALID, "out of memory");
        goto out;
    }
    json_array_foreach(live, i, r)
    {
        char key[TARGET_SIZE];
        rule_key(r, sandbox, key);
        if (listed(out->removed, out->n_removed, key))
            out->rules_removed++;
        else
            json_array_append(kept, r);
    }
    json_array_clear(live);
    json_array_extend(live, kept);
    st = finish(root, out);
out:
    json_decref(kept);
    json_decref(root);
    if (st != POLICY_EDIT_OK) {
        char error[sizeof out->error];
        memcpy(error, out->error, sizeof error);
        policy_edit_free(out);
        memcpy(out->error, error, sizeof error);
    }
    return st;
}

static void free_list(char ***v, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*v)[i]);
    free(*v);
    *v = NULL;
    *n = 0;
}

void policy_edit_free(struct policy_edit *e)
{
    if (e->text) /* inject values may be literal credentials */
        explicit_bzero(e->text, e->len);
    free(e->text);
    free_list(&e->replaced, &e->n_replaced);
    free_list(&e->added, &e->n_added);
    free_list(&e->removed, &e->n_removed);
    memset(e, 0, sizeof *e);
}
