/* policy/patch: PATCH and DELETE /policy as edits of a policy's text.
 *
 * Both take the live policy's text and give a new text, which the caller
 * then loads exactly like a file (or PUT /policy) before anything goes
 * live. Rules are found by target: the value of "allow", "deny" or "prompt"
 * (or "target" in the OpenSandbox form), compared in canonical form, so
 * "PyPI.org." and "pypi.org" name the same rules. Bytes in, bytes out: no
 * I/O, so unit tests drive them directly. */
#ifndef SLUICE_POLICY_PATCH_H
#define SLUICE_POLICY_PATCH_H

#include <stddef.h>

#define POLICY_EDIT_ERROR_SIZE 1024
#define POLICY_EDIT_WARNING_SIZE 512

enum policy_edit_status {
    POLICY_EDIT_OK = 0,
    POLICY_EDIT_BAD_REQUEST, /* not a patch or a target list at all */
    POLICY_EDIT_INVALID,     /* a rule in the patch fails validation */
    POLICY_EDIT_NOT_FOUND,   /* delete: a target that no rule has */
};

struct policy_edit {
    char *text; /* the new policy text (secrets included), NUL-terminated */
    size_t len;
    /* Canonical targets, in request order: replaced in place, appended at
     * the end, removed. */
    char **replaced, **added, **removed;
    size_t n_replaced, n_added, n_removed;
    size_t rules_removed;                   /* delete: rules dropped (a target may have several) */
    char warning[POLICY_EDIT_WARNING_SIZE]; /* "" or why an added rule may never decide */
    char error[POLICY_EDIT_ERROR_SIZE];     /* on failure: what is wrong, for the client */
};

/* body: {"rules": [RULE, ...]}, a bare [RULE, ...] or a single RULE. For
 * each target named in the body, every live rule with that target is
 * replaced, where the first of them stood, by the body's rules for it (in
 * body order); targets the policy lacks are appended after all its rules.
 * Each rule is validated on its own first, so errors name the body's index. */
enum policy_edit_status policy_patch_text(const char *text, size_t len, const char *body,
                                          size_t body_len, struct policy_edit *out);

/* Removes every rule whose target is one of targets. Nothing is removed
 * when one of them matches no rule (POLICY_EDIT_NOT_FOUND names them). */
enum policy_edit_status policy_delete_text(const char *text, size_t len, const char *const *targets,
                                           size_t n_targets, struct policy_edit *out);

/* Wipes and frees what an edit holds; out may then be reused. */
void policy_edit_free(struct policy_edit *e);

#endif
