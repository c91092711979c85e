/* policy: load a JSON policy, compile it into indexes, decide.
 *
 * Loading is strict on purpose: an unknown key, a misspelt action or a
 * pattern the canonicaliser refuses is an error naming the JSON path,
 * because a typo in a security policy that is silently ignored opens a hole.
 * Once compiled, a policy is never changed; deciding reads it without locks
 * and without allocating. */
#include "policy/policy.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/match.h"

#define POLICY_MAX_RULES 65536
#define POLICY_MAX_PORTS 64
#define POLICY_MAX_METHODS 32
#define POLICY_MAX_METHOD_BYTES 32
#define POLICY_MAX_PATHS 64
#define POLICY_MAX_PATH_BYTES 2048
#define POLICY_MAX_INJECT 32
#define POLICY_MAX_HEADER_NAME_BYTES 128
#define POLICY_MAX_HEADER_VALUE_BYTES 8192
#define POLICY_MAX_REASON_BYTES 512
#define POLICY_MAX_LIST 4096 /* reach_ranges, passthrough, sources, doh */
#define POLICY_MAX_CLIENTS 256
#define POLICY_MAX_CLIENT_NAME_BYTES 64
#define POLICY_MAX_CLIENT_PATH_BYTES 1024
/* Room for a user string quoted inside an error message. */
#define SHOWN_SIZE 72
#define PATH_SIZE sizeof(((struct policy_error *)0)->path)
#define ADDR_DENY_WHY_SIZE 64
#define HASH_HEX_SIZE (2 * 32 + 1)
/* Keys longer than this get no "did you mean" suggestion. */
#define SUGGEST_MAX_KEY 32
/* "[" + the 20 digits of SIZE_MAX + "]" + NUL. */
#define INDEX_TEXT_SIZE 24

enum pattern_type {
    PAT_EXACT = MATCH_EXACT,
    PAT_BELOW = MATCH_BELOW,
    PAT_APEX = MATCH_APEX,
    PAT_ANY = MATCH_ANY,
    PAT_ADDR,
};

struct pattern {
    enum pattern_type type;
    char text[HOST_TEXT_SIZE]; /* canonical name, or "" */
    size_t len;
    struct cidr cidr; /* PAT_ADDR */
};

struct rule {
    enum verdict action;
    struct pattern pat;
    uint16_t *ports;
    size_t n_ports;
    char **methods;
    size_t n_methods;
    char **paths;
    size_t n_paths;
    struct policy_header *inject;
    size_t n_inject;
    char *reason;
    char *text;          /* compact JSON, inject values redacted */
    char *addr_deny_why; /* deny address rules: why a resolved address is refused */
    bool constrained;    /* methods or paths */
    bool needs_intercept;
};

/* One entry of "clients". Sources are the CIDRs as written plus the
 * addresses host-name sources resolved to when the policy was loaded. */
struct policy_client {
    char *name;
    struct cidr *sources;
    size_t n_sources, cap_sources;
    char **names; /* host-name sources as written (canonical) */
    size_t n_names;
    char **unresolved; /* the names that resolved to nothing */
    size_t n_unresolved;
    char *policy; /* the file as written */
    char *file;   /* the file as opened (relative to the main policy's dir) */
    struct policy *compiled;
};

struct policy {
    atomic_uint refs;
    char source[sizeof(((struct policy_error *)0)->source)];
    char hash[HASH_HEX_SIZE];
    enum verdict def;
    bool report;
    struct rule *rules;
    size_t n_rules;
    struct match_names names;
    struct match_addrs addrs;
    struct cidr *reach;
    size_t n_reach;
    bool intercept;
    bool needs_ca;
    struct pattern *passthrough;
    size_t n_passthrough;
    struct match_names pt_names;
    struct match_addrs pt_addrs;
    struct policy_client *clients;
    size_t n_clients;
    struct match_addrs client_ix; /* source address -> client index */
    bool is_client;               /* a client's policy: no clients of its own */
    struct policy_dns dns;
    char **doh;
    size_t n_doh;
    /* The text as loaded, secrets included: PATCH/DELETE /policy edit it. */
    char *text;
    size_t text_len;
};

/* ---- errors ------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static int fail(struct policy_error *err, const char *path,
                                                      const char *fmt, ...)
{
    va_list ap;
    snprintf(err->path, sizeof err->path, "%s", path);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* A user string made safe to quote in a message: control bytes become '?'
 * (they could rewrite the terminal), long text is cut with "...". */
static const char *shown(const char *s, char *buf, size_t size)
{
    size_t n = 0;
    for (; *s && n + 4 < size; s++)
        buf[n++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    if (*s) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

static bool fits(int n, size_t size)
{
    return n >= 0 && (size_t)n < size;
}

/* JSON paths are cut at PATH_SIZE; a cut path still points the way. */
static void path_join(char *out, const char *const *parts, size_t count)
{
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        for (const char *c = parts[i]; *c && n + 1 < PATH_SIZE; c++)
            out[n++] = *c;
    out[n] = '\0';
}

static void sub_index(char *out, const char *base, size_t i)
{
    char num[INDEX_TEXT_SIZE];
    snprintf(num, sizeof num, "[%zu]", i);
    path_join(out, (const char *const[]){base, num}, 2);
}

static void sub_key(char *out, const char *base, const char *key)
{
    char k[SHOWN_SIZE];
    shown(key, k, sizeof k);
    if (base[0])
        path_join(out, (const char *const[]){base, ".", k}, 3);
    else
        path_join(out, (const char *const[]){k}, 1);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[SUGGEST_MAX_KEY + 1];
    if (la > SUGGEST_MAX_KEY || lb > SUGGEST_MAX_KEY)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Every key of obj must be one of allowed (NULL-terminated). */
static int check_keys(struct policy_error *err, json_t *obj, const char *path,
                      const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        const char *suggestion = NULL;
        bool known = false;
        for (const char *const *a = allowed; *a; a++) {
            if (strcmp(key, *a) == 0)
                known = true;
            else if (!suggestion && edit_distance(key, *a) <= 2)
                suggestion = *a;
        }
        if (known)
            continue;
        char p[PATH_SIZE], k[SHOWN_SIZE];
        sub_key(p, path, key);
        if (suggestion)
            return fail(err, p, "unknown key \"%s\" (did you mean \"%s\"?)",
                        shown(key, k, sizeof k), suggestion);
        return fail(err, p, "unknown key \"%s\"", shown(key, k, sizeof k));
    }
    return 0;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static int oom(struct policy_error *err, const char *path)
{
    return fail(err, path, "out of memory");
}

/* ---- patterns ---------------------------------------------------------- */

static int pattern_name(const char *s, size_t len, struct pattern *out, const char **why)
{
    struct host h;
    if (host_canonicalise(s, len, &h, why) < 0)
        return -1;
    if (h.kind != HOST_KIND_NAME) {
        *why = "a wildcard or '.' pattern needs a name, not an IP address";
        return -1;
    }
    memcpy(out->text, h.text, h.len + 1);
    out->len = h.len;
    return 0;
}

/* Patterns are canonicalised exactly like hosts, so a rule written with
 * capitals, a trailing dot or Unicode matches the host a client sends. */
static int pattern_parse(const char *s, struct pattern *out, const char **why)
{
    size_t len = strlen(s);
    memset(out, 0, sizeof *out);
    if (len == 0) {
        *why = "empty pattern";
        return -1;
    }
    if (len == 1 && s[0] == '*') {
        out->type = PAT_ANY;
        return 0;
    }
    size_t skip = 0;
    out->type = PAT_EXACT;
    if (len >= 2 && s[0] == '*' && s[1] == '.') {
        out->type = PAT_BELOW;
        skip = 2;
    } else if (s[0] == '.') {
        out->type = PAT_APEX;
        skip = 1;
    }
    if (memchr(s + skip, '*', len - skip)) {
        *why = "'*' stands alone or as the whole first label (\"*.example.com\")";
        return -1;
    }
    if (out->type != PAT_EXACT)
        return pattern_name(s + skip, len - skip, out, why);
    if (memchr(s, '/', len)) {
        if (cidr_parse(s, &out->cidr, why) < 0)
            return -1;
        out->type = PAT_ADDR;
        return cidr_format(&out->cidr, out->text, sizeof out->text);
    }
    struct host h;
    if (host_canonicalise(s, len, &h, why) < 0) {
        uint16_t port;
        struct host ignored;
        if (host_parse_authority(s, len, 0, &ignored, &port, NULL) == 0 && port != 0)
            *why = "a pattern names a host only; put the port in \"ports\"";
        return -1;
    }
    if (h.kind == HOST_KIND_NAME) {
        memcpy(out->text, h.text, h.len + 1);
        out->len = h.len;
        return 0;
    }
    /* An address alone is a full-length prefix. */
    out->type = PAT_ADDR;
    if (h.kind == HOST_KIND_IPV4) {
        out->cidr.family = AF_INET;
        out->cidr.prefix = 32;
        memcpy(out->cidr.bytes, &h.addr.v4, sizeof h.addr.v4);
    } else {
        out->cidr.family = AF_INET6;
        out->cidr.prefix = 128;
        memcpy(out->cidr.bytes, &h.addr.v6, sizeof h.addr.v6);
    }
    return cidr_format(&out->cidr, out->text, sizeof out->text);
}

static int parse_pattern_value(struct policy_error *err, json_t *v, const char *path,
                               struct pattern *out)
{
    char k[SHOWN_SIZE];
    const char *why = "invalid";
    if (!json_is_string(v))
        return fail(err, path, "must be a host pattern string");
    if (pattern_parse(json_string_value(v), out, &why) < 0)
        return fail(err, path, "invalid host pattern \"%s\": %s",
                    shown(json_string_value(v), k, sizeof k), why);
    return 0;
}

/* ---- rule fields ------------------------------------------------------- */

static int parse_array_head(struct policy_error *err, json_t *v, const char *path, size_t max,
                            const char *what)
{
    if (!json_is_array(v))
        return fail(err, path, "must be an array of %s", what);
    if (json_array_size(v) == 0)
        return fail(err, path, "must not be empty (leave the key out instead)");
    if (json_array_size(v) > max)
        return fail(err, path, "more than %zu entries", max);
    return 0;
}

static int parse_ports(struct policy_error *err, json_t *v, const char *path, struct rule *r)
{
    size_t i;
    json_t *e;
    if (parse_array_head(err, v, path, POLICY_MAX_PORTS, "ports") < 0)
        return -1;
    r->ports = calloc(json_array_size(v), sizeof *r->ports);
    if (!r->ports)
        return oom(err, path);
    json_array_foreach(v, i, e)
    {
        char p[PATH_SIZE];
        sub_index(p, path, i);
        if (!json_is_integer(e) || json_integer_value(e) < 1 || json_integer_value(e) > 65535)
            return fail(err, p, "port must be an integer 1..65535");
        r->ports[r->n_ports++] = (uint16_t)json_integer_value(e);
    }
    return 0;
}

static bool method_token(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > POLICY_MAX_METHOD_BYTES || s[0] < 'A' || s[0] > 'Z')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '_'))
            return false;
    return true;
}

static int parse_methods(struct policy_error *err, json_t *v, const char *path, struct rule *r)
{
    size_t i;
    json_t *e;
    if (parse_array_head(err, v, path, POLICY_MAX_METHODS, "methods") < 0)
        return -1;
    r->methods = calloc(json_array_size(v), sizeof *r->methods);
    if (!r->methods)
        return oom(err, path);
    json_array_foreach(v, i, e)
    {
        char p[PATH_SIZE], k[SHOWN_SIZE];
        sub_index(p, path, i);
        if (!json_is_string(e))
            return fail(err, p, "method must be a string");
        if (!method_token(json_string_value(e)))
            return fail(err, p, "method \"%s\" must be an upper-case token like \"GET\"",
                        shown(json_string_value(e), k, sizeof k));
        if (!(r->methods[r->n_methods++] = dup_str(json_string_value(e))))
            return oom(err, p);
    }
    return 0;
}

static const char *path_glob_problem(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] != '/')
        return "must start with '/'";
    if (n > POLICY_MAX_PATH_BYTES)
        return "longer than 2048 bytes";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return "contains a space or control character";
        if (c == '#')
            return "contains '#' (fragments never reach the server)";
    }
    return NULL;
}

static int parse_paths(struct policy_error *err, json_t *v, const char *path, struct rule *r)
{
    size_t i;
    json_t *e;
    if (parse_array_head(err, v, path, POLICY_MAX_PATHS, "path globs") < 0)
        return -1;
    r->paths = calloc(json_array_size(v), sizeof *r->paths);
    if (!r->paths)
        return oom(err, path);
    json_array_foreach(v, i, e)
    {
        char p[PATH_SIZE], k[SHOWN_SIZE];
        sub_index(p, path, i);
        if (!json_is_string(e))
            return fail(err, p, "path must be a string");
        const char *problem = path_glob_problem(json_string_value(e));
        if (problem)
            return fail(err, p, "path \"%s\" %s", shown(json_string_value(e), k, sizeof k),
                        problem);
        if (!(r->paths[r->n_paths++] = dup_str(json_string_value(e))))
            return oom(err, p);
    }
    return 0;
}

static bool tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Injecting these would change framing, routing or the hop to the proxy:
 * a request-smuggling tool, not a credential. */
static bool header_forbidden(const char *name)
{
    static const char *const forbidden[] = {
        "host", "content-length", "transfer-encoding", "connection", "keep-alive",
        "te",   "trailer",        "upgrade",           "expect",     NULL,
    };
    for (const char *const *f = forbidden; *f; f++)
        if (strcasecmp(name, *f) == 0)
            return true;
    return strncasecmp(name, "proxy-", 6) == 0;
}

static const char *header_name_problem(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > POLICY_MAX_HEADER_NAME_BYTES)
        return "header name must be 1..128 bytes";
    for (size_t i = 0; i < n; i++)
        if (!tchar((unsigned char)name[i]))
            return "header name has a character HTTP does not allow";
    if (header_forbidden(name))
        return "this header controls framing or routing and cannot be injected";
    return NULL;
}

/* Values are stored unresolved; here only their shape is checked, so a
 * misspelt "${enf:TOKEN}" fails at load rather than leaking a literal. */
static const char *header_value_problem(const char *v)
{
    size_t n = strlen(v);
    if (n > POLICY_MAX_HEADER_VALUE_BYTES)
        return "header value longer than 8192 bytes";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return "header value contains a control character (CR/LF would split the header)";
    }
    for (const char *ref = strstr(v, "${"); ref; ref = strstr(ref + 2, "${")) {
        const char *end = strchr(ref, '}');
        if (!end)
            return "unterminated \"${\"; use ${env:NAME} or ${file:/PATH}";
        if (strncmp(ref, "${env:", 6) == 0) {
            const char *name = ref + 6;
            if (name == end ||
                !((*name >= 'A' && *name <= 'Z') || (*name >= 'a' && *name <= 'z') || *name == '_'))
                return "${env:NAME} needs a variable name";
            for (const char *c = name; c < end; c++)
                if (!tchar((unsigned char)*c) || *c == '$' || *c == '.')
                    return "${env:NAME} needs a variable name";
        } else if (strncmp(ref, "${file:", 7) == 0) {
            if (ref[7] != '/')
                return "${file:PATH} needs an absolute path";
        } else {
            return "unknown reference; use ${env:NAME} or ${file:/PATH}";
        }
    }
    return NULL;
}

static int parse_inject(struct policy_error *err, json_t *v, const char *path, struct rule *r)
{
    const char *key;
    json_t *e;
    if (!json_is_object(v))
        return fail(err, path, "must be an object of header name to value");
    if (json_object_size(v) == 0)
        return fail(err, path, "must not be empty (leave the key out instead)");
    if (json_object_size(v) > POLICY_MAX_INJECT)
        return fail(err, path, "more than %d headers", POLICY_MAX_INJECT);
    r->inject = calloc(json_object_size(v), sizeof *r->inject);
    if (!r->inject)
        return oom(err, path);
    json_object_foreach(v, key, e)
    {
        char p[PATH_SIZE];
        sub_key(p, path, key);
        const char *problem = header_name_problem(key);
        if (problem)
            return fail(err, p, "%s", problem);
        for (size_t k = 0; k < r->n_inject; k++)
            if (strcasecmp(r->inject[k].name, key) == 0)
                return fail(err, p, "header given twice (names are case-insensitive)");
        if (!json_is_string(e))
            return fail(err, p, "header value must be a string");
        if ((problem = header_value_problem(json_string_value(e))))
            return fail(err, p, "%s", problem);
        struct policy_header *h = &r->inject[r->n_inject++];
        h->name = dup_str(key);
        h->value = dup_str(json_string_value(e));
        if (!h->name || !h->value)
            return oom(err, p);
    }
    return 0;
}

static int parse_reason(struct policy_error *err, json_t *v, const char *path, struct rule *r)
{
    if (!json_is_string(v))
        return fail(err, path, "must be a string");
    const char *s = json_string_value(v);
    if (strlen(s) > POLICY_MAX_REASON_BYTES)
        return fail(err, path, "longer than %d bytes", POLICY_MAX_REASON_BYTES);
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return fail(err, path, "contains a control character (it is shown in 403 bodies)");
    r->reason = dup_str(s);
    return r->reason ? 0 : oom(err, path);
}

static int parse_choice(struct policy_error *err, json_t *v, const char *path, const char *a,
                        const char *b, bool *is_b)
{
    char k[SHOWN_SIZE];
    if (!json_is_string(v))
        return fail(err, path, "must be \"%s\" or \"%s\"", a, b);
    if (strcmp(json_string_value(v), a) == 0)
        *is_b = false;
    else if (strcmp(json_string_value(v), b) == 0)
        *is_b = true;
    else
        return fail(err, path, "must be \"%s\" or \"%s\", not \"%s\"", a, b,
                    shown(json_string_value(v), k, sizeof k));
    return 0;
}

/* ---- rules ------------------------------------------------------------- */

static int parse_action(const char *s, enum verdict *out)
{
    if (strcmp(s, "allow") == 0)
        *out = VERDICT_ALLOW;
    else if (strcmp(s, "deny") == 0)
        *out = VERDICT_DENY;
    else if (strcmp(s, "prompt") == 0)
        *out = VERDICT_PROMPT;
    else
        return -1;
    return 0;
}

/* The text shown by explain and status: the rule as written, compact, with
 * every injected value replaced so secrets and their locations stay out. */
static int rule_text(struct policy_error *err, json_t *obj, const char *path, struct rule *r)
{
    json_t *copy = json_deep_copy(obj);
    if (!copy)
        return oom(err, path);
    json_t *inject = json_object_get(copy, "inject");
    if (json_is_object(inject)) {
        const char *key;
        json_t *v;
        json_object_foreach(inject, key, v) json_string_set(v, "<redacted>");
    }
    r->text = json_dumps(copy, JSON_COMPACT);
    json_decref(copy);
    return r->text ? 0 : oom(err, path);
}

static int rule_fields(struct policy_error *err, json_t *obj, const char *path, struct rule *r)
{
    static const struct {
        const char *key;
        int (*parse)(struct policy_error *, json_t *, const char *, struct rule *);
    } fields[] = {
        {"ports", parse_ports},   {"methods", parse_methods}, {"paths", parse_paths},
        {"inject", parse_inject}, {"reason", parse_reason},
    };
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        json_t *v = json_object_get(obj, fields[f].key);
        char p[PATH_SIZE];
        sub_key(p, path, fields[f].key);
        if (v && fields[f].parse(err, v, p, r) < 0)
            return -1;
    }
    return 0;
}

static int parse_rule(struct policy_error *err, json_t *obj, const char *path, struct rule *r)
{
    static const char *const keys[] = {"allow", "deny",   "prompt", "ports", "methods",
                                       "paths", "inject", "reason", NULL};
    static const char *const actions[] = {"allow", "deny", "prompt"};
    const char *action = NULL;

    if (!json_is_object(obj))
        return fail(err, path, "a rule must be an object like {\"allow\": \"example.com\"}");
    if (check_keys(err, obj, path, keys) < 0)
        return -1;
    for (size_t a = 0; a < 3; a++) {
        if (!json_object_get(obj, actions[a]))
            continue;
        if (action)
            return fail(err, path, "a rule has exactly one of \"allow\", \"deny\", \"prompt\"");
        action = actions[a];
    }
    if (!action)
        return fail(err, path, "a rule needs one of \"allow\", \"deny\", \"prompt\"");
    parse_action(action, &r->action);
    char p[PATH_SIZE];
    sub_key(p, path, action);
    if (parse_pattern_value(err, json_object_get(obj, action), p, &r->pat) < 0)
        return -1;
    if (rule_fields(err, obj, path, r) < 0)
        return -1;
    if (r->n_inject && r->action == VERDICT_DENY) {
        sub_key(p, path, "inject");
        return fail(err, p, "inject has no effect on a deny rule");
    }
    return rule_text(err, obj, path, r);
}

static int parse_sandbox_rule(struct policy_error *err, json_t *obj, const char *path,
                              struct rule *r)
{
    static const char *const keys[] = {"action", "target", NULL};
    char p[PATH_SIZE];

    if (!json_is_object(obj))
        return fail(err, path,
                    "an egress rule must be an object like "
                    "{\"action\": \"allow\", \"target\": \"example.com\"}");
    if (check_keys(err, obj, path, keys) < 0)
        return -1;
    json_t *action = json_object_get(obj, "action");
    json_t *target = json_object_get(obj, "target");
    sub_key(p, path, "action");
    if (!action)
        return fail(err, path, "missing \"action\"");
    bool deny;
    if (parse_choice(err, action, p, "allow", "deny", &deny) < 0)
        return -1;
    r->action = deny ? VERDICT_DENY : VERDICT_ALLOW;
    if (!target)
        return fail(err, path, "missing \"target\"");
    sub_key(p, path, "target");
    if (parse_pattern_value(err, target, p, &r->pat) < 0)
        return -1;
    return rule_text(err, obj, path, r);
}

/* ---- top-level sections -------------------------------------------------- */

static int parse_default(struct policy_error *err, json_t *v, const char *path, struct policy *p)
{
    bool deny;
    /* "prompt": what no rule decides waits for an operator (sluice run
     * --prompt writes this). */
    if (json_is_string(v) && strcmp(json_string_value(v), "prompt") == 0) {
        p->def = VERDICT_PROMPT;
        return 0;
    }
    char k[SHOWN_SIZE];
    if (parse_choice(err, v, path, "allow", "deny", &deny) < 0)
        return json_is_string(v)
                   ? fail(err, path, "must be \"allow\", \"deny\" or \"prompt\", not \"%s\"",
                          shown(json_string_value(v), k, sizeof k))
                   : fail(err, path, "must be \"allow\", \"deny\" or \"prompt\"");
    p->def = deny ? VERDICT_DENY : VERDICT_ALLOW;
    return 0;
}

static int parse_rules(struct policy_error *err, json_t *v, const char *path, struct policy *p,
                       bool sandbox)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v))
        return fail(err, path, "must be an array of rules");
    if (json_array_size(v) > POLICY_MAX_RULES)
        return fail(err, path, "more than %d rules", POLICY_MAX_RULES);
    p->rules = calloc(json_array_size(v) ? json_array_size(v) : 1, sizeof *p->rules);
    if (!p->rules)
        return oom(err, path);
    json_array_foreach(v, i, e)
    {
        char rp[PATH_SIZE];
        sub_index(rp, path, i);
        struct rule *r = &p->rules[p->n_rules++];
        if ((sandbox ? parse_sandbox_rule(err, e, rp, r) : parse_rule(err, e, rp, r)) < 0)
            return -1;
        r->constrained = r->n_methods || r->n_paths;
        r->needs_intercept = r->constrained || r->n_inject;
        p->needs_ca |= r->needs_intercept;
    }
    return 0;
}

static int parse_cidr_list(struct policy_error *err, json_t *v, const char *path, struct cidr **out,
                           size_t *n)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v))
        return fail(err, path, "must be an array of CIDR strings");
    if (json_array_size(v) > POLICY_MAX_LIST)
        return fail(err, path, "more than %d entries", POLICY_MAX_LIST);
    *out = calloc(json_array_size(v) ? json_array_size(v) : 1, sizeof **out);
    if (!*out)
        return oom(err, path);
    json_array_foreach(v, i, e)
    {
        char p[PATH_SIZE], k[SHOWN_SIZE];
        const char *why = "invalid";
        sub_index(p, path, i);
        if (!json_is_string(e))
            return fail(err, p, "must be a CIDR string like \"10.0.0.0/8\"");
        if (cidr_parse(json_string_value(e), &(*out)[*n], &why) < 0)
            return fail(err, p, "invalid CIDR \"%s\": %s", shown(json_string_value(e), k, sizeof k),
                        why);
        (*n)++;
    }
    return 0;
}

static int parse_reach(struct policy_error *err, json_t *v, const char *path, struct policy *p)
{
    return parse_cidr_list(err, v, path, &p->reach, &p->n_reach);
}

static int parse_passthrough(struct policy_error *err, json_t *v, const char *path,
                             struct policy *p)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v))
        return fail(err, path, "must be an array of host patterns");
    if (json_array_size(v) > POLICY_MAX_LIST)
        return fail(err, path, "more than %d entries", POLICY_MAX_LIST);
    p->passthrough = calloc(json_array_size(v) ? json_array_size(v) : 1, sizeof *p->passthrough);
    if (!p->passthrough)
        return oom(err, path);
    json_array_foreach(v, i, e)
    {
        char ep[PATH_SIZE];
        sub_index(ep, path, i);
        if (parse_pattern_value(err, e, ep, &p->passthrough[p->n_passthrough]) < 0)
            return -1;
        p->n_passthrough++;
    }
    return 0;
}

static int parse_intercept(struct policy_error *err, json_t *v, const char *path, struct policy *p)
{
    static const char *const keys[] = {"enabled", "passthrough", NULL};
    char ep[PATH_SIZE];
    if (!json_is_object(v))
        return fail(err, path, "must be an object like {\"enabled\": true}");
    if (check_keys(err, v, path, keys) < 0)
        return -1;
    json_t *enabled = json_object_get(v, "enabled");
    json_t *pass = json_object_get(v, "passthrough");
    sub_key(ep, path, "enabled");
    if (enabled && !json_is_boolean(enabled))
        return fail(err, ep, "must be true or false");
    if (enabled && json_is_false(enabled) && p->needs_ca) {
        for (size_t i = 0; i < p->n_rules; i++) {
            if (p->rules[i].needs_intercept)
                return fail(err, ep,
                            "rules[%zu] needs interception (methods, paths or inject) "
                            "but interception is disabled",
                            i);
        }
    }
    if (enabled)
        p->intercept = json_is_true(enabled);
    sub_key(ep, path, "passthrough");
    return pass ? parse_passthrough(err, pass, ep, p) : 0;
}

/* An IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/96+) is the IPv4 prefix it
 * maps: a dual-stack listener sees IPv4 clients in that form, and a client
 * must match however the listener was bound. */
static void cidr_unmap(struct cidr *c)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (c->family != AF_INET6 || c->prefix < 96 || memcmp(c->bytes, mapped, 12) != 0)
        return;
    c->family = AF_INET;
    memmove(c->bytes, c->bytes + 12, 4);
    memset(c->bytes + 4, 0, 12);
    c->prefix = (uint8_t)(c->prefix - 96);
}

static int client_add_source(struct policy_client *c, const struct cidr *src)
{
    if (c->n_sources == c->cap_sources) {
        size_t cap = c->cap_sources ? 2 * c->cap_sources : 4;
        struct cidr *n = realloc(c->sources, cap * sizeof *n);
        if (!n)
            return -1;
        c->sources = n;
        c->cap_sources = cap;
    }
    c->sources[c->n_sources] = *src;
    cidr_unmap(&c->sources[c->n_sources]);
    c->n_sources++;
    return 0;
}

/* "source": CIDRs or addresses, and host names resolved at load (never
 * guessed: a name is matched by the addresses the resolver gives). */
static int parse_client_sources(struct policy_error *err, json_t *v, const char *path,
                                struct policy_client *c)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v))
        return fail(err, path, "must be an array of CIDRs or host names");
    if (json_array_size(v) == 0)
        return fail(err, path, "must list at least one CIDR or host name");
    if (json_array_size(v) > POLICY_MAX_LIST)
        return fail(err, path, "more than %d entries", POLICY_MAX_LIST);
    c->names = calloc(json_array_size(v), sizeof *c->names);
    if (!c->names)
        return oom(err, path);
    json_array_foreach(v, i, e)
    {
        char p[PATH_SIZE], k[SHOWN_SIZE];
        const char *why = "invalid", *name_why = NULL;
        struct cidr cidr;
        struct host h;
        sub_index(p, path, i);
        if (!json_is_string(e))
            return fail(err, p, "must be a CIDR like \"10.89.0.10/32\" or a host name");
        const char *s = json_string_value(e);
        if (cidr_parse(s, &cidr, &why) == 0) {
            if (client_add_source(c, &cidr) < 0)
                return oom(err, p);
            continue;
        }
        /* Not an address: a host name, or a broken CIDR (say why). */
        if (!strchr(s, '/') && host_canonicalise(s, json_string_length(e), &h, &name_why) == 0 &&
            h.kind == HOST_KIND_NAME) {
            if (!(c->names[c->n_names++] = dup_str(h.text)))
                return oom(err, p);
            continue;
        }
        if (strchr(s, '/'))
            return fail(err, p, "invalid CIDR \"%s\": %s", shown(s, k, sizeof k), why);
        return fail(err, p, "\"%s\" is neither an address nor a host name: %s",
                    shown(s, k, sizeof k), name_why ? name_why : why);
    }
    return 0;
}

static int parse_client(struct policy_error *err, json_t *v, const char *path, struct policy *p)
{
    static const char *const keys[] = {"name", "source", "policy", NULL};
    static const char *const required[] = {"name", "source", "policy"};
    char ep[PATH_SIZE];
    if (!json_is_object(v))
        return fail(err, path, "a client must be an object with name, source and policy");
    if (check_keys(err, v, path, keys) < 0)
        return -1;
    for (size_t k = 0; k < 3; k++)
        if (!json_object_get(v, required[k]))
            return fail(err, path, "missing \"%s\"", required[k]);
    struct policy_client *c = &p->clients[p->n_clients++];
    json_t *name = json_object_get(v, "name"), *pol = json_object_get(v, "policy");
    sub_key(ep, path, "name");
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        json_string_length(name) > POLICY_MAX_CLIENT_NAME_BYTES)
        return fail(err, ep, "must be a string of 1..%d bytes", POLICY_MAX_CLIENT_NAME_BYTES);
    for (size_t k = 0; k + 1 < p->n_clients; k++)
        if (strcmp(p->clients[k].name, json_string_value(name)) == 0)
            return fail(err, ep, "client name used twice");
    if (!(c->name = dup_str(json_string_value(name))))
        return oom(err, ep);
    sub_key(ep, path, "policy");
    if (!json_is_string(pol) || json_string_length(pol) == 0 ||
        json_string_length(pol) > POLICY_MAX_CLIENT_PATH_BYTES)
        return fail(err, ep, "must be a policy file name");
    if (!(c->policy = dup_str(json_string_value(pol))))
        return oom(err, ep);
    sub_key(ep, path, "source");
    return parse_client_sources(err, json_object_get(v, "source"), ep, c);
}

static int parse_clients(struct policy_error *err, json_t *v, const char *path, struct policy *p)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v))
        return fail(err, path, "must be an array of clients");
    if (json_array_size(v) > POLICY_MAX_CLIENTS)
        return fail(err, path, "more than %d clients", POLICY_MAX_CLIENTS);
    p->clients = calloc(json_array_size(v) ? json_array_size(v) : 1, sizeof *p->clients);
    if (!p->clients)
        return oom(err, path);
    json_array_foreach(v, i, e)
    {
        char ep[PATH_SIZE];
        sub_index(ep, path, i);
        if (parse_client(err, e, ep, p) < 0)
            return -1;
    }
    return 0;
}

/* An upstream resolver must be a literal address: a name would need the very
 * DNS service it configures. */
static int parse_upstream(struct policy_error *err, json_t *v, const char *path, char *out,
                          size_t size)
{
    struct host h;
    uint16_t port;
    char k[SHOWN_SIZE];
    const char *why = NULL;
    if (!json_is_string(v))
        return fail(err, path, "must be a string \"IP\" or \"IP:port\"");
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (host_canonicalise(s, len, &h, &why) == 0) {
        if (h.kind != HOST_KIND_NAME && fits(snprintf(out, size, "%s", h.text), size))
            return 0;
        why = "a name cannot be used (resolving it would need DNS)";
    } else if (host_parse_authority(s, len, 53, &h, &port, &why) == 0) {
        if (h.kind != HOST_KIND_NAME && host_format_authority(&h, port, out, size) == 0)
            return 0;
        why = "a name cannot be used (resolving it would need DNS)";
    }
    return fail(err, path, "\"%s\" is not \"IP\" or \"IP:port\": %s", shown(s, k, sizeof k), why);
}

static int parse_dns(struct policy_error *err, json_t *v, const char *path, struct policy *p)
{
    static const char *const keys[] = {"upstream", "refuse_with", NULL};
    char ep[PATH_SIZE];
    size_t i;
    json_t *e;
    if (!json_is_object(v))
        return fail(err, path, "must be an object like {\"upstream\": [\"192.0.2.53\"]}");
    if (check_keys(err, v, path, keys) < 0)
        return -1;
    json_t *up = json_object_get(v, "upstream");
    json_t *refuse = json_object_get(v, "refuse_with");
    sub_key(ep, path, "refuse_with");
    bool refused = false;
    if (refuse && parse_choice(err, refuse, ep, "nxdomain", "refused", &refused) < 0)
        return -1;
    p->dns.refuse_with = refused ? DNS_REFUSE_REFUSED : DNS_REFUSE_NXDOMAIN;
    if (!up)
        return 0;
    sub_key(ep, path, "upstream");
    /* One resolver serves the whole gateway; clients share the main one's. */
    if (p->is_client)
        return fail(err, ep, "belongs to the main policy (a client's policy uses its upstreams)");
    if (!json_is_array(up))
        return fail(err, ep, "must be an array of \"IP\" or \"IP:port\" strings");
    if (json_array_size(up) > POLICY_MAX_DNS_UPSTREAMS)
        return fail(err, ep, "more than %d upstreams", POLICY_MAX_DNS_UPSTREAMS);
    json_array_foreach(up, i, e)
    {
        char upath[PATH_SIZE];
        sub_index(upath, ep, i);
        if (parse_upstream(err, e, upath, p->dns.upstream[i], sizeof p->dns.upstream[i]) < 0)
            return -1;
        p->dns.n_upstream++;
    }
    return 0;
}

static int parse_doh(struct policy_error *err, json_t *v, const char *path, struct policy *p)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v))
        return fail(err, path, "must be an array of host names");
    if (json_array_size(v) > POLICY_MAX_LIST)
        return fail(err, path, "more than %d entries", POLICY_MAX_LIST);
    p->doh = calloc(json_array_size(v) ? json_array_size(v) : 1, sizeof *p->doh);
    if (!p->doh)
        return oom(err, path);
    json_array_foreach(v, i, e)
    {
        char ep[PATH_SIZE], k[SHOWN_SIZE];
        struct host h;
        const char *why = "not a host name";
        sub_index(ep, path, i);
        if (!json_is_string(e))
            return fail(err, ep, "must be a host name string");
        if (host_canonicalise(json_string_value(e), json_string_length(e), &h, &why) < 0 ||
            h.kind != HOST_KIND_NAME)
            return fail(err, ep, "invalid host name \"%s\": %s",
                        shown(json_string_value(e), k, sizeof k),
                        h.kind != HOST_KIND_NAME ? "an IP address, not a name" : why);
        if (!(p->doh[p->n_doh++] = dup_str(h.text)))
            return oom(err, ep);
    }
    return 0;
}

static int parse_native(struct policy_error *err, json_t *root, struct policy *p)
{
    static const char *const keys[] = {
        "default", "mode", "rules", "reach_ranges", "intercept", "clients", "dns", "doh", NULL};
    if (check_keys(err, root, "", keys) < 0)
        return -1;
    json_t *v;
    if ((v = json_object_get(root, "default")) && parse_default(err, v, "default", p) < 0)
        return -1;
    if ((v = json_object_get(root, "mode")) &&
        parse_choice(err, v, "mode", "enforce", "report", &p->report) < 0)
        return -1;
    if ((v = json_object_get(root, "rules")) && parse_rules(err, v, "rules", p, false) < 0)
        return -1;
    /* Interception is on when some rule needs it, unless turned off (which
     * parse_intercept refuses for such policies). */
    p->intercept = p->needs_ca;
    if ((v = json_object_get(root, "intercept")) && parse_intercept(err, v, "intercept", p) < 0)
        return -1;
    if ((v = json_object_get(root, "reach_ranges")) && parse_reach(err, v, "reach_ranges", p) < 0)
        return -1;
    if ((v = json_object_get(root, "clients")) && p->is_client)
        return fail(err, "clients", "a client's policy cannot have clients of its own");
    if ((v = json_object_get(root, "clients")) && parse_clients(err, v, "clients", p) < 0)
        return -1;
    if ((v = json_object_get(root, "dns")) && parse_dns(err, v, "dns", p) < 0)
        return -1;
    if ((v = json_object_get(root, "doh")) && parse_doh(err, v, "doh", p) < 0)
        return -1;
    return 0;
}

/* OpenSandbox's egress policy: {"defaultAction": ..., "egress": [...]}. Its
 * README spells the first key default_action; both are read. */
static int parse_sandbox(struct policy_error *err, json_t *root, struct policy *p)
{
    static const char *const keys[] = {"defaultAction", "default_action", "egress", NULL};
    static const char *const native[] = {"default",   "mode",    "rules", "reach_ranges",
                                         "intercept", "clients", "dns",   "doh"};
    for (size_t i = 0; i < sizeof native / sizeof native[0]; i++)
        if (json_object_get(root, native[i]))
            return fail(err, native[i],
                        "sluice keys cannot be mixed with the OpenSandbox form "
                        "(defaultAction/egress)");
    if (check_keys(err, root, "", keys) < 0)
        return -1;
    json_t *camel = json_object_get(root, "defaultAction");
    json_t *snake = json_object_get(root, "default_action");
    if (camel && snake)
        return fail(err, "default_action", "give defaultAction or default_action, not both");
    if (camel && parse_default(err, camel, "defaultAction", p) < 0)
        return -1;
    if (snake && parse_default(err, snake, "default_action", p) < 0)
        return -1;
    json_t *egress = json_object_get(root, "egress");
    return egress ? parse_rules(err, egress, "egress", p, true) : 0;
}

/* ---- compile ------------------------------------------------------------ */

static int compile(struct policy_error *err, struct policy *p)
{
    if (match_names_init(&p->names) < 0 || match_addrs_init(&p->addrs) < 0 ||
        match_names_init(&p->pt_names) < 0 || match_addrs_init(&p->pt_addrs) < 0 ||
        match_addrs_init(&p->client_ix) < 0)
        return oom(err, "");
    for (size_t i = 0; i < p->n_rules; i++) {
        struct rule *r = &p->rules[i];
        int rc;
        if (r->pat.type == PAT_ADDR) {
            rc = match_addrs_add(&p->addrs, &r->pat.cidr, (uint32_t)i);
            if (rc == 0 && r->action == VERDICT_DENY) {
                r->addr_deny_why = malloc(ADDR_DENY_WHY_SIZE);
                if (!r->addr_deny_why)
                    rc = -1;
                else
                    snprintf(r->addr_deny_why, ADDR_DENY_WHY_SIZE, "address denied by rule %zu", i);
            }
        } else {
            rc = match_names_add(&p->names, (enum match_kind)r->pat.type, r->pat.text, r->pat.len,
                                 (uint32_t)i);
        }
        if (rc < 0)
            return oom(err, "rules");
    }
    for (size_t i = 0; i < p->n_passthrough; i++) {
        const struct pattern *pt = &p->passthrough[i];
        int rc = pt->type == PAT_ADDR ? match_addrs_add(&p->pt_addrs, &pt->cidr, (uint32_t)i)
                                      : match_names_add(&p->pt_names, (enum match_kind)pt->type,
                                                        pt->text, pt->len, (uint32_t)i);
        if (rc < 0)
            return oom(err, "intercept.passthrough");
    }
    if (match_names_finish(&p->names) < 0 || match_addrs_finish(&p->addrs) < 0 ||
        match_names_finish(&p->pt_names) < 0 || match_addrs_finish(&p->pt_addrs) < 0)
        return oom(err, "");
    return 0;
}

/* ---- load, free ----------------------------------------------------------- */

static void rule_free(struct rule *r)
{
    free(r->ports);
    for (size_t i = 0; i < r->n_methods; i++)
        free(r->methods[i]);
    free(r->methods);
    for (size_t i = 0; i < r->n_paths; i++)
        free(r->paths[i]);
    free(r->paths);
    for (size_t i = 0; i < r->n_inject; i++) {
        if (r->inject[i].value)
            explicit_bzero((char *)r->inject[i].value, strlen(r->inject[i].value));
        free((char *)r->inject[i].name);
        free((char *)r->inject[i].value);
    }
    free(r->inject);
    free(r->reason);
    free(r->text);
    free(r->addr_deny_why);
}

static void policy_free(struct policy *p)
{
    for (size_t i = 0; i < p->n_rules; i++)
        rule_free(&p->rules[i]);
    free(p->rules);
    match_names_free(&p->names);
    match_addrs_free(&p->addrs);
    match_names_free(&p->pt_names);
    match_addrs_free(&p->pt_addrs);
    free(p->reach);
    free(p->passthrough);
    for (size_t i = 0; i < p->n_clients; i++) {
        struct policy_client *c = &p->clients[i];
        free(c->name);
        free(c->sources);
        for (size_t k = 0; k < c->n_names; k++)
            free(c->names[k]);
        free(c->names);
        free(c->unresolved); /* points into names */
        free(c->policy);
        free(c->file);
        policy_unref(c->compiled);
    }
    free(p->clients);
    match_addrs_free(&p->client_ix);
    for (size_t i = 0; i < p->n_doh; i++)
        free(p->doh[i]);
    free(p->doh);
    if (p->text) /* may hold literal credentials in inject values */
        explicit_bzero(p->text, p->text_len);
    free(p->text);
    free(p);
}

/* ---- clients ------------------------------------------------------------ */

static struct policy *load_file(const char *file, bool is_client, struct policy_error *err);

/* A host-name source: every address the system resolver gives now (A and
 * AAAA; podman's aardvark-dns knows the containers of its network). None is
 * not an error: the client then matches nothing until a reload resolves it,
 * and the main policy decides for whoever has that address. */
static int resolve_source(struct policy_client *c, const char *name)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    size_t before = c->n_sources;
    if (getaddrinfo(name, NULL, &hints, &res) == 0) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            struct cidr one = {0};
            if (ai->ai_family == AF_INET) {
                one.family = AF_INET;
                one.prefix = 32;
                memcpy(one.bytes, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
            } else if (ai->ai_family == AF_INET6) {
                one.family = AF_INET6;
                one.prefix = 128;
                memcpy(one.bytes, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
            } else {
                continue;
            }
            if (client_add_source(c, &one) < 0) {
                freeaddrinfo(res);
                return -1;
            }
        }
        freeaddrinfo(res);
    }
    if (c->n_sources == before)
        c->unresolved[c->n_unresolved++] = (char *)name;
    return 0;
}

static char *client_file(const char *dir, const char *file)
{
    if (file[0] == '/' || !dir)
        return dup_str(file);
    size_t n = strlen(dir) + 1 + strlen(file) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%s", dir, file);
    return out;
}

/* Each client's policy file, loaded and checked with the main one, so a
 * reload swaps all of them or none. dir is the main policy's directory;
 * NULL (a policy given as text) allows absolute file names only. */
static int load_clients(struct policy_error *err, struct policy *p, const char *dir)
{
    for (size_t i = 0; i < p->n_clients; i++) {
        struct policy_client *c = &p->clients[i];
        char cp[PATH_SIZE], ep[PATH_SIZE], k[SHOWN_SIZE];
        sub_index(cp, "clients", i);
        sub_key(ep, cp, "policy");
        shown(c->name, k, sizeof k);
        if (c->policy[0] != '/' && !dir)
            return fail(err, ep,
                        "client \"%s\": a relative file name needs the main policy's "
                        "directory, which a policy sent as text has not; give an absolute path",
                        k);
        if (!(c->file = client_file(dir, c->policy)))
            return oom(err, ep);
        struct policy_error cerr;
        c->compiled = load_file(c->file, true, &cerr);
        if (!c->compiled) {
            char text[sizeof err->message];
            policy_format_error(&cerr, text, sizeof text);
            return fail(err, ep, "client \"%s\": %s", k, text);
        }
        memcpy(c->compiled->dns.upstream, p->dns.upstream, sizeof p->dns.upstream);
        c->compiled->dns.n_upstream = p->dns.n_upstream;
        p->needs_ca |= c->compiled->needs_ca;
        if (c->n_names && !(c->unresolved = calloc(c->n_names, sizeof *c->unresolved)))
            return oom(err, cp);
        for (size_t n = 0; n < c->n_names; n++)
            if (resolve_source(c, c->names[n]) < 0)
                return oom(err, cp);
        /* Ascending ids: the first client listed wins an address. */
        for (size_t s = 0; s < c->n_sources; s++)
            if (match_addrs_add(&p->client_ix, &c->sources[s], (uint32_t)i) < 0)
                return oom(err, cp);
    }
    if (match_addrs_finish(&p->client_ix) < 0)
        return oom(err, "clients");
    return 0;
}

static void hash_text(const char *text, size_t len, char out[HASH_HEX_SIZE])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (EVP_Digest(text, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return;
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static struct policy *load_text(const char *json, size_t len, const char *source, const char *dir,
                                bool is_client, struct policy_error *err)
{
    struct policy_error dummy;
    json_error_t jerr;
    json_t *root = NULL;
    struct policy *p = NULL;

    if (!err)
        err = &dummy;
    memset(err, 0, sizeof *err);
    snprintf(err->source, sizeof err->source, "%s", source ? source : "<policy>");
    if (len > POLICY_MAX_FILE_BYTES) {
        fail(err, "", "policy larger than %d bytes", POLICY_MAX_FILE_BYTES);
        goto fail;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        err->line = jerr.line > 0 ? jerr.line : 0;
        err->column = jerr.column > 0 ? jerr.column : 0;
        fail(err, "", "%s", jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        fail(err, "", "a policy must be a JSON object");
        goto fail;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        oom(err, "");
        goto fail;
    }
    atomic_init(&p->refs, 1);
    snprintf(p->source, sizeof p->source, "%s", err->source);
    p->def = VERDICT_DENY;
    p->is_client = is_client;
    bool sandbox = json_object_get(root, "egress") || json_object_get(root, "defaultAction") ||
                   json_object_get(root, "default_action");
    if ((sandbox ? parse_sandbox(err, root, p) : parse_native(err, root, p)) < 0)
        goto fail;
    if (compile(err, p) < 0)
        goto fail;
    if (p->n_clients && load_clients(err, p, dir) < 0)
        goto fail;
    hash_text(json, len, p->hash);
    if (!(p->text = malloc(len + 1))) {
        oom(err, "");
        goto fail;
    }
    memcpy(p->text, json, len);
    p->text[len] = '\0';
    p->text_len = len;
    json_decref(root);
    return p;
fail:
    json_decref(root);
    if (p)
        policy_free(p);
    return NULL;
}

static char *read_file(const char *file, size_t *len, struct policy_error *err)
{
    char *buf = NULL;
    size_t n = 0;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail(err, "", "%s", strerror(errno));
        return NULL;
    }
    /* Room for one byte over the limit tells "too large" from "exactly at". */
    buf = malloc(POLICY_MAX_FILE_BYTES + 1);
    if (!buf) {
        oom(err, "");
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, POLICY_MAX_FILE_BYTES + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(err, "", "%s", strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > POLICY_MAX_FILE_BYTES) {
            fail(err, "", "file larger than %d bytes", POLICY_MAX_FILE_BYTES);
            goto fail;
        }
    }
    *len = n;
    goto out;
fail:
    free(buf);
    buf = NULL;
out:
    close(fd);
    return buf;
}

struct policy *policy_load_buffer(const char *json, size_t len, const char *source,
                                  struct policy_error *err)
{
    return load_text(json, len, source, NULL, false, err);
}

struct policy *policy_load_buffer_at(const char *json, size_t len, const char *source,
                                     const char *dir, struct policy_error *err)
{
    return load_text(json, len, source, dir, false, err);
}

/* The directory part of file ("." when it has none), malloc'd. */
static char *dir_of(const char *file)
{
    const char *slash = strrchr(file, '/');
    if (!slash)
        return dup_str(".");
    size_t n = slash == file ? 1 : (size_t)(slash - file);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, file, n);
        d[n] = '\0';
    }
    return d;
}

static struct policy *load_file(const char *file, bool is_client, struct policy_error *err)
{
    struct policy_error dummy;
    size_t len = 0;
    if (!err)
        err = &dummy;
    memset(err, 0, sizeof *err);
    snprintf(err->source, sizeof err->source, "%s", file);
    char *dir = dir_of(file);
    if (!dir) {
        oom(err, "");
        return NULL;
    }
    char *text = read_file(file, &len, err);
    if (!text) {
        free(dir);
        return NULL;
    }
    struct policy *p = load_text(text, len, file, dir, is_client, err);
    free(dir);
    /* The file may hold literal credentials in inject values. */
    explicit_bzero(text, len);
    free(text);
    return p;
}

struct policy *policy_load_file(const char *file, struct policy_error *err)
{
    return load_file(file, false, err);
}

struct policy *policy_deny_all(void)
{
    static const char text[] = "{\"default\":\"deny\"}";
    return policy_load_buffer(text, sizeof text - 1, "(deny all)", NULL);
}

void policy_format_error(const struct policy_error *err, char *buf, size_t size)
{
    size_t n = 0;
    int w;
    if (size == 0)
        return;
    buf[0] = '\0';
#define APPEND(...)                                                                                \
    do {                                                                                           \
        w = snprintf(buf + n, size - n, __VA_ARGS__);                                              \
        if (w < 0 || (size_t)w >= size - n)                                                        \
            return;                                                                                \
        n += (size_t)w;                                                                            \
    } while (0)
    if (err->source[0])
        APPEND("%s", err->source);
    if (err->line > 0)
        APPEND("%s%d:%d", n ? ":" : "", err->line, err->column);
    if (err->path[0])
        APPEND("%s%s", n ? ": " : "", err->path);
    APPEND("%s%s", n ? ": " : "", err->message);
#undef APPEND
}

struct policy *policy_ref(struct policy *p)
{
    if (p)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void policy_unref(struct policy *p)
{
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        policy_free(p);
}

/* ---- decide ---------------------------------------------------------------- */

struct decide_ctx {
    const struct policy *p;
    const struct dest *d;
    size_t path_len;     /* path without query */
    bool path_ambiguous; /* dot-segments or encoded separators */
};

static bool port_ok(const struct rule *r, const struct dest *d)
{
    if (d->kind == DEST_DNS)
        return true;
    if (r->n_ports) {
        for (size_t i = 0; i < r->n_ports; i++)
            if (r->ports[i] == d->port)
                return true;
        return false;
    }
    /* A deny without ports denies every port: with "default": "allow",
     * {"deny": "evil.example"} must not leave evil.example:8443 open. */
    if (r->action == VERDICT_DENY)
        return true;
    switch (d->kind) {
    case DEST_CONNECT:
        return d->port == 443;
    case DEST_HTTP:
        return d->port == 80;
    case DEST_TRANSPARENT:
        return d->port == 80 || d->port == 443;
    case DEST_DNS:
        break;
    }
    return true;
}

static bool method_ok(const struct rule *r, const struct dest *d)
{
    if (r->n_methods == 0)
        return true;
    if (!d->method)
        return false;
    for (size_t i = 0; i < r->n_methods; i++)
        if (strlen(r->methods[i]) == d->method_len &&
            memcmp(r->methods[i], d->method, d->method_len) == 0)
            return true;
    return false;
}

static bool path_ok(const struct rule *r, const struct decide_ctx *c)
{
    if (r->n_paths == 0)
        return true;
    if (!c->d->path)
        return false;
    /* A path an upstream may read differently ("/v1/../admin", "%2f") never
     * matches an allow, and always matches a deny: fail closed both ways. */
    if (c->path_ambiguous)
        return r->action == VERDICT_DENY;
    for (size_t i = 0; i < r->n_paths; i++)
        if (match_glob(r->paths[i], c->d->path, c->path_len))
            return true;
    return false;
}

static bool rule_accepts(const void *ctx, uint32_t id)
{
    const struct decide_ctx *c = ctx;
    const struct rule *r = &c->p->rules[id];
    if (!port_ok(r, c->d))
        return false;
    if (!r->constrained)
        return true;
    /* Before interception (CONNECT, SNI, DNS) the request is unknown: an
     * allow may still apply to some request, so it admits the tunnel for
     * interception; a deny may not apply to all, so it waits for them. */
    if (!c->d->method && !c->d->path)
        return r->action != VERDICT_DENY;
    return method_ok(r, c->d) && path_ok(r, c);
}

static bool path_is_ambiguous(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            return true;
        if (s[i] == '%' && i + 2 < n) {
            char a = s[i + 1], b = (char)(s[i + 2] | 0x20);
            if ((a == '2' && (b == 'e' || b == 'f')) || (a == '5' && b == 'c'))
                return true;
        }
        if (s[i] != '/')
            continue;
        /* "//" is merged by many servers; "/." and "/.." are dot-segments. */
        size_t rest = n - i - 1;
        const char *t = s + i + 1;
        if (rest >= 1 && t[0] == '/')
            return true;
        if (rest >= 1 && t[0] == '.' && (rest == 1 || t[1] == '/'))
            return true;
        if (rest >= 2 && t[0] == '.' && t[1] == '.' && (rest == 2 || t[2] == '/'))
            return true;
    }
    return false;
}

static int64_t lookup(const struct policy *p, const struct host *h, match_accept_fn accept,
                      const void *ctx)
{
    if (h->kind == HOST_KIND_NAME)
        return match_names_lookup(&p->names, h->text, h->len, accept, ctx);
    if (h->kind == HOST_KIND_IPV4)
        return match_addrs_lookup(&p->addrs, AF_INET, (const uint8_t *)&h->addr.v4, accept, ctx);
    return match_addrs_lookup(&p->addrs, AF_INET6, h->addr.v6.s6_addr, accept, ctx);
}

/* The policy's "doh" names: DNS-over-HTTPS endpoints are refused whatever
 * the rules say (a resolver reached over HTTPS would bypass the DNS
 * filter), in report mode too. The list is short; a scan is fine. */
static bool is_doh_endpoint(const struct policy *p, const struct host *h)
{
    if (h->kind != HOST_KIND_NAME)
        return false;
    for (size_t i = 0; i < p->n_doh; i++)
        if (strcmp(p->doh[i], h->text) == 0)
            return true;
    return false;
}

void policy_decide(const struct policy *p, const struct dest *d, struct decision *out)
{
    struct decide_ctx c = {.p = p, .d = d};
    memset(out, 0, sizeof *out);
    out->rule = -1;
    if (is_doh_endpoint(p, &d->host)) {
        out->verdict = VERDICT_DENY;
        out->reason = "DNS-over-HTTPS endpoint (the policy's doh list)";
        return;
    }
    if (d->path) {
        const char *q = memchr(d->path, '?', d->path_len);
        c.path_len = q ? (size_t)(q - d->path) : d->path_len;
        c.path_ambiguous = path_is_ambiguous(d->path, c.path_len);
    }
    int64_t id = lookup(p, &d->host, rule_accepts, &c);
    if (id >= 0) {
        const struct rule *r = &p->rules[id];
        out->verdict = r->action;
        /* A prompt about some requests cannot be answered for a whole
         * tunnel: admit it for interception, ask for each request inside. */
        if (r->action == VERDICT_PROMPT && r->constrained && !d->method && !d->path)
            out->verdict = VERDICT_ALLOW;
        out->rule = (int)id;
        out->reason = r->reason;
        out->needs_intercept = r->needs_intercept && r->action != VERDICT_DENY;
    } else {
        out->verdict = p->def;
    }
    if (p->report && out->verdict == VERDICT_DENY) {
        out->verdict = VERDICT_ALLOW;
        out->would_deny = true;
    }
}

static bool addr_deny_accepts(const void *ctx, uint32_t id)
{
    const struct decide_ctx *c = ctx;
    const struct rule *r = &c->p->rules[id];
    return r->action == VERDICT_DENY && !r->constrained && port_ok(r, c->d);
}

bool policy_address_permitted(const struct policy *p, const struct dest *d,
                              const struct decision *dec, const struct sockaddr *sa,
                              const char **why)
{
    const char *dummy;
    struct cidr range;
    struct decide_ctx c = {.p = p, .d = d};
    struct host h = {0};

    if (!why)
        why = &dummy;
    if (dec && dec->verdict == VERDICT_DENY) {
        *why = "denied by policy";
        return false;
    }
    if (sa->sa_family == AF_INET) {
        h.kind = HOST_KIND_IPV4;
        h.addr.v4 = ((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        h.kind = HOST_KIND_IPV6;
        h.addr.v6 = ((const struct sockaddr_in6 *)sa)->sin6_addr;
    } else {
        *why = "unsupported address family";
        return false;
    }
    /* Address denies bind names too: {"deny": "203.0.113.0/24"} holds
     * for every name resolving there. IP destinations were already decided
     * by those rules in order. Report mode only logs rule denies. */
    if (d->host.kind == HOST_KIND_NAME && !p->report) {
        int64_t id = lookup(p, &h, addr_deny_accepts, &c);
        if (id >= 0) {
            *why = p->rules[id].addr_deny_why;
            return false;
        }
    }
    const char *special = addr_special_range_why(sa, &range);
    if (!special)
        return true;
    for (size_t i = 0; i < p->n_reach; i++)
        if (cidr_contains(&p->reach[i], sa))
            return true;
    /* An address rule inside the special range is the operator naming that
     * range on purpose; 0.0.0.0/0 is not within any range, so it never is. */
    if (d->host.kind != HOST_KIND_NAME && dec && dec->rule >= 0 && (size_t)dec->rule < p->n_rules) {
        const struct rule *r = &p->rules[dec->rule];
        if (r->pat.type == PAT_ADDR && r->action != VERDICT_DENY &&
            cidr_within(&r->pat.cidr, &range))
            return true;
    }
    *why = special;
    return false;
}

/* ---- introspection --------------------------------------------------------- */

const char *policy_source(const struct policy *p)
{
    return p->source;
}

const char *policy_hash(const struct policy *p)
{
    return p->hash;
}

bool policy_report_mode(const struct policy *p)
{
    return p->report;
}

enum verdict policy_default(const struct policy *p)
{
    return p->def;
}

size_t policy_rule_count(const struct policy *p)
{
    return p->n_rules;
}

const char *policy_rule_text(const struct policy *p, size_t i)
{
    return i < p->n_rules ? p->rules[i].text : NULL;
}

const struct policy_dns *policy_dns(const struct policy *p)
{
    return &p->dns;
}

bool policy_intercept_enabled(const struct policy *p)
{
    return p->intercept;
}

bool policy_needs_ca(const struct policy *p)
{
    return p->needs_ca;
}

static bool accept_any(const void *ctx, uint32_t id)
{
    (void)ctx;
    (void)id;
    return true;
}

bool policy_passthrough(const struct policy *p, const struct host *h)
{
    if (p->n_passthrough == 0)
        return false;
    if (h->kind == HOST_KIND_NAME)
        return match_names_lookup(&p->pt_names, h->text, h->len, accept_any, NULL) >= 0;
    if (h->kind == HOST_KIND_IPV4)
        return match_addrs_lookup(&p->pt_addrs, AF_INET, (const uint8_t *)&h->addr.v4, accept_any,
                                  NULL) >= 0;
    return match_addrs_lookup(&p->pt_addrs, AF_INET6, h->addr.v6.s6_addr, accept_any, NULL) >= 0;
}

size_t policy_rule_inject(const struct policy *p, size_t i, const struct policy_header **headers)
{
    if (i >= p->n_rules) {
        *headers = NULL;
        return 0;
    }
    *headers = p->rules[i].inject;
    return p->rules[i].n_inject;
}

bool policy_rule_constrained(const struct policy *p, size_t i)
{
    return i < p->n_rules && p->rules[i].constrained;
}

/* ---- clients --------------------------------------------------------------- */

struct policy *policy_select(struct policy *p, const struct sockaddr *client)
{
    const uint8_t *bytes;
    int family;
    if (!p || p->n_clients == 0 || !client)
        return p;
    if (client->sa_family == AF_INET) {
        family = AF_INET;
        bytes = (const uint8_t *)&((const struct sockaddr_in *)client)->sin_addr;
    } else if (client->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)client)->sin6_addr;
        /* A dual-stack listener shows IPv4 clients as ::ffff:a.b.c.d. */
        family = IN6_IS_ADDR_V4MAPPED(a) ? AF_INET : AF_INET6;
        bytes = family == AF_INET ? a->s6_addr + 12 : a->s6_addr;
    } else {
        return p;
    }
    int64_t id = match_addrs_lookup(&p->client_ix, family, bytes, accept_any, NULL);
    return id >= 0 ? p->clients[id].compiled : p;
}

size_t policy_client_count(const struct policy *p)
{
    return p->n_clients;
}

int policy_client_info(const struct policy *p, size_t i, struct policy_client_info *out)
{
    if (i >= p->n_clients)
        return -1;
    const struct policy_client *c = &p->clients[i];
    out->name = c->name;
    out->file = c->file;
    out->policy = c->compiled;
    out->sources = c->sources;
    out->n_sources = c->n_sources;
    out->names = (const char *const *)c->names;
    out->n_names = c->n_names;
    out->unresolved = (const char *const *)c->unresolved;
    out->n_unresolved = c->n_unresolved;
    return 0;
}

const char *policy_text(const struct policy *p, size_t *len)
{
    *len = p->text_len;
    return p->text;
}

/* The canonical spelling of a rule target, so "PyPI.org." and "pypi.org",
 * or "192.0.2.1" and "192.0.2.1/32", name the same rule. */
int policy_target_canonical(const char *target, char *out, size_t size, const char **why)
{
    struct pattern pat;
    int n;
    if (pattern_parse(target, &pat, why) < 0)
        return -1;
    switch (pat.type) {
    case PAT_ANY:
        n = snprintf(out, size, "*");
        break;
    case PAT_BELOW:
        n = snprintf(out, size, "*.%s", pat.text);
        break;
    case PAT_APEX:
        n = snprintf(out, size, ".%s", pat.text);
        break;
    default:
        n = snprintf(out, size, "%s", pat.text);
        break;
    }
    if (!fits(n, size)) {
        *why = "too long";
        return -1;
    }
    return 0;
}
