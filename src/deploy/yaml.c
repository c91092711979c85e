/* yaml: block-style YAML from jansson trees (see yaml.h). */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "deploy/yaml.h"

#define YAML_INDENT 2

static int emit_mapping(FILE *out, const json_t *obj, int indent, bool first_inline);
static int emit_sequence(FILE *out, const json_t *arr, int indent, bool first_inline);

static void spaces(FILE *out, int n)
{
    for (int i = 0; i < n; i++)
        fputc(' ', out);
}

static bool is_block(const json_t *v)
{
    return (json_is_object(v) && json_object_size(v) > 0) ||
           (json_is_array(v) && json_array_size(v) > 0);
}

/* Words YAML 1.1 readers (podman's go-yaml among them) take as booleans or
 * null when plain; a key spelled like one is quoted. */
static bool is_special_word(const char *s)
{
    static const char *const words[] = {"y",  "yes", "n",    "no", "true", "false",
                                        "on", "off", "null", "~",  NULL};
    for (size_t i = 0; words[i]; i++)
        if (strcasecmp(s, words[i]) == 0)
            return true;
    return false;
}

/* Keys such as "apiVersion", "sluice.dev/sandbox" or "policy.json" stay
 * plain; anything else (digits first, spaces, ':') is quoted. */
static bool plain_key(const char *k)
{
    if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z') || k[0] == '_'))
        return false;
    for (const char *p = k; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.' || c == '/';
        if (!ok)
            return false;
    }
    return !is_special_word(k);
}

static int emit_quoted(FILE *out, const char *s, size_t len)
{
    json_t *str = json_stringn(s, len);
    if (!str)
        return -1;
    int rc = json_dumpf(str, out, JSON_ENCODE_ANY);
    json_decref(str);
    return rc;
}

/* A literal block keeps multi-line text readable; only text whose every
 * byte means the same inside one qualifies: no control characters but
 * newlines, no leading space (it would need an indentation indicator), no
 * Unicode line or paragraph separators, which YAML 1.1 also breaks on. */
static bool literal_ok(const char *s, size_t len)
{
    if (len == 0 || !memchr(s, '\n', len) || s[0] == ' ' || s[0] == '\n')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f)
            return false;
        if (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] == 0x85)
            return false;
        if (c == 0xe2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
            ((unsigned char)s[i + 2] == 0xa8 || (unsigned char)s[i + 2] == 0xa9))
            return false;
        if (c == 0xef && i + 2 < len && (unsigned char)s[i + 1] == 0xbb &&
            (unsigned char)s[i + 2] == 0xbf)
            return false;
    }
    return true;
}

/* "|" keeps one final newline, "|-" none, "|+" all of them. */
static void emit_literal(FILE *out, const char *s, size_t len, int indent)
{
    size_t trailing = 0;
    while (trailing < len && s[len - 1 - trailing] == '\n')
        trailing++;
    fputs(trailing == 0 ? "|-" : trailing == 1 ? "|" : "|+", out);
    fputc('\n', out);
    size_t body = len - trailing, start = 0;
    while (start < body) {
        const char *nl = memchr(s + start, '\n', body - start);
        size_t end = nl ? (size_t)(nl - s) : body;
        if (end > start) {
            spaces(out, indent);
            fwrite(s + start, 1, end - start, out);
        }
        fputc('\n', out);
        start = end + 1;
    }
    /* Kept newlines beyond the first are empty lines of the block. */
    for (size_t i = 1; i < trailing; i++)
        fputc('\n', out);
}

/* A scalar, or an empty collection in flow style, then the line's end.
 * indent is where a literal block's lines go. */
static int emit_scalar(FILE *out, const json_t *v, int indent)
{
    switch (json_typeof(v)) {
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (literal_ok(s, len)) {
            emit_literal(out, s, len, indent);
            return 0;
        }
        if (emit_quoted(out, s, len) < 0)
            return -1;
        break;
    }
    case JSON_INTEGER:
        fprintf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        if (!isfinite(json_real_value(v)))
            return -1;
        fprintf(out, "%.17g", json_real_value(v));
        break;
    case JSON_TRUE:
        fputs("true", out);
        break;
    case JSON_FALSE:
        fputs("false", out);
        break;
    case JSON_NULL:
        fputs("null", out);
        break;
    case JSON_OBJECT:
        fputs("{}", out);
        break;
    case JSON_ARRAY:
        fputs("[]", out);
        break;
    }
    fputc('\n', out);
    return 0;
}

static int emit_key(FILE *out, const char *key)
{
    if (plain_key(key))
        fputs(key, out);
    else if (emit_quoted(out, key, strlen(key)) < 0)
        return -1;
    fputc(':', out);
    return 0;
}

/* The mapping's keys at indent; with first_inline, the first key follows a
 * "- " already written. */
static int emit_mapping(FILE *out, const json_t *obj, int indent, bool first_inline)
{
    const char *key;
    json_t *v;
    bool first = true;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (!(first && first_inline))
            spaces(out, indent);
        first = false;
        if (emit_key(out, key) < 0)
            return -1;
        int rc;
        if (json_is_object(v) && is_block(v)) {
            fputc('\n', out);
            rc = emit_mapping(out, v, indent + YAML_INDENT, false);
        } else if (is_block(v)) {
            fputc('\n', out);
            rc = emit_sequence(out, v, indent + YAML_INDENT, false);
        } else {
            fputc(' ', out);
            rc = emit_scalar(out, v, indent + YAML_INDENT);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int emit_sequence(FILE *out, const json_t *arr, int indent, bool first_inline)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!(i == 0 && first_inline))
            spaces(out, indent);
        fputs("- ", out);
        int rc;
        if (json_is_object(v) && is_block(v))
            rc = emit_mapping(out, v, indent + YAML_INDENT, true);
        else if (is_block(v))
            rc = emit_sequence(out, v, indent + YAML_INDENT, true);
        else
            rc = emit_scalar(out, v, indent + YAML_INDENT);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int yaml_write_doc(FILE *out, const json_t *doc)
{
    int rc;
    if (json_is_object(doc) && is_block(doc))
        rc = emit_mapping(out, doc, 0, false);
    else if (is_block(doc))
        rc = emit_sequence(out, doc, 0, false);
    else
        rc = emit_scalar(out, doc, YAML_INDENT);
    return rc < 0 || ferror(out) ? -1 : 0;
}

int yaml_write_stream(FILE *out, const char *comment, const json_t *docs)
{
    size_t i;
    json_t *doc;
    bool header = comment != NULL;
    while (comment && *comment) {
        const char *nl = strchr(comment, '\n');
        size_t n = nl ? (size_t)(nl - comment) : strlen(comment);
        fputc('#', out);
        if (n > 0)
            fputc(' ', out);
        fwrite(comment, 1, n, out);
        fputc('\n', out);
        comment += n + (nl ? 1 : 0);
    }
    json_array_foreach(docs, i, doc)
    {
        if (i > 0 || header)
            fputs("---\n", out);
        if (yaml_write_doc(out, doc) < 0)
            return -1;
    }
    return ferror(out) ? -1 : 0;
}
