/* Policy engine tests. Most cases are data: tests/data/policy/cases.txt
 * (decisions), addresses.txt (the special-range check after DNS) and
 * invalid.txt (load errors), so a reader sees the semantics as a table. The
 * data directory is $SLUICE_TEST_DATA, default tests/data (run from the repo
 * root). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy/policy.h"

#define LINE_MAX_BYTES 1024
#define MAX_TOKENS 64
#define PATH_BYTES 512
#define CACHE_SIZE 32
#define ERROR_TEXT 1024

static const char *data_dir(void)
{
    const char *d = getenv("SLUICE_TEST_DATA");
    return d && *d ? d : "tests/data";
}

static void data_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/policy/%s", data_dir(), name);
}

static struct {
    char name[64];
    struct policy *p;
} cache[CACHE_SIZE];

/* Policies named in the tables, loaded once per run. */
static struct policy *named_policy(const char *name)
{
    char path[PATH_BYTES];
    struct policy_error err;
    size_t i;
    for (i = 0; i < CACHE_SIZE && cache[i].p; i++)
        if (strcmp(cache[i].name, name) == 0)
            return cache[i].p;
    assert_true(i < CACHE_SIZE);
    data_path(path, sizeof path, name);
    struct policy *p = policy_load_file(path, &err);
    if (!p) {
        char text[ERROR_TEXT];
        policy_format_error(&err, text, sizeof text);
        fail_msg("cannot load %s: %s", path, text);
    }
    snprintf(cache[i].name, sizeof cache[i].name, "%s", name);
    cache[i].p = p;
    return p;
}

static void drop_cache(void)
{
    for (size_t i = 0; i < CACHE_SIZE; i++) {
        policy_unref(cache[i].p);
        cache[i].p = NULL;
    }
}

static int split(char *line, char **tok, int max)
{
    int n = 0;
    char *s = line;
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        if (n == max)
            return -1;
        tok[n++] = s;
        while (*s && *s != ' ' && *s != '\t')
            s++;
        if (*s)
            *s++ = '\0';
    }
    return n;
}

static FILE *open_table(const char *name)
{
    char path[PATH_BYTES];
    data_path(path, sizeof path, name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    return f;
}

/* Reads the next table line that is not blank or a comment; strips the
 * newline. Returns the line number, or 0 at the end. */
static int next_line(FILE *f, char *buf, size_t size, int *lineno)
{
    while (fgets(buf, (int)size, f)) {
        (*lineno)++;
        buf[strcspn(buf, "\r\n")] = '\0';
        const char *s = buf + strspn(buf, " \t");
        if (*s && *s != '#')
            return *lineno;
    }
    return 0;
}

static int parse_kind(const char *s, enum dest_kind *k)
{
    static const char *const names[] = {"connect", "http", "transparent", "dns"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *k = (enum dest_kind)i;
            return 0;
        }
    }
    return -1;
}

static uint16_t parse_port(const char *s)
{
    char *end;
    if (strcmp(s, "-") == 0)
        return 0;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v == 0 || v > 65535)
        fail_msg("bad port in table: %s", s);
    return (uint16_t)v;
}

static int table_int(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 100000)
        fail_msg("bad number in table: %s", s);
    return (int)v;
}

static const char *verdict_text(enum verdict v)
{
    return v == VERDICT_ALLOW ? "allow" : v == VERDICT_DENY ? "deny" : "prompt";
}

/* Fills d from table tokens KIND HOST PORT [METHOD PATH]; -1 when the host
 * canonicaliser refuses HOST. */
static int build_dest(struct dest *d, char **tok, bool with_request)
{
    const char *why;
    memset(d, 0, sizeof *d);
    if (parse_kind(tok[0], &d->kind) < 0)
        fail_msg("bad kind in table: %s", tok[0]);
    if (host_canonicalise(tok[1], strlen(tok[1]), &d->host, &why) < 0)
        return -1;
    d->port = parse_port(tok[2]);
    if (with_request && strcmp(tok[3], "-") != 0) {
        d->method = tok[3];
        d->method_len = strlen(tok[3]);
    }
    if (with_request && strcmp(tok[4], "-") != 0) {
        d->path = tok[4];
        d->path_len = strlen(tok[4]);
    }
    return 0;
}

static void test_decision_table(void **state)
{
    char line[LINE_MAX_BYTES], *tok[MAX_TOKENS];
    int lineno = 0, cases = 0, failures = 0;
    FILE *f = open_table("cases.txt");

    while (next_line(f, line, sizeof line, &lineno)) {
        char got[64], got_rule[16];
        struct dest d;
        struct decision dec;
        if (split(line, tok, MAX_TOKENS) != 9 || strcmp(tok[6], "=>") != 0)
            fail_msg("cases.txt:%d: malformed line", lineno);
        cases++;
        struct policy *p = named_policy(tok[0]);
        if (build_dest(&d, tok + 1, true) < 0) {
            snprintf(got, sizeof got, "refused");
            snprintf(got_rule, sizeof got_rule, "-");
        } else {
            policy_decide(p, &d, &dec);
            snprintf(got, sizeof got, "%s%s%s", verdict_text(dec.verdict),
                     dec.needs_intercept ? "+intercept" : "", dec.would_deny ? "+would_deny" : "");
            if (dec.rule >= 0)
                snprintf(got_rule, sizeof got_rule, "%d", dec.rule);
            else
                snprintf(got_rule, sizeof got_rule, "default");
        }
        if (strcmp(got, tok[7]) != 0 || strcmp(got_rule, tok[8]) != 0) {
            print_error("cases.txt:%d: %s %s %s %s %s %s: expected %s %s, got %s %s\n", lineno,
                        tok[0], tok[1], tok[2], tok[3], tok[4], tok[5], tok[7], tok[8], got,
                        got_rule);
            failures++;
        }
    }
    fclose(f);
    assert_true(cases >= 150);
    assert_int_equal(failures, 0);
}

static socklen_t make_sockaddr(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        return sizeof *sin;
    }
    if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        return sizeof *sin6;
    }
    fail_msg("bad address in table: %s", text);
    return 0;
}

static void test_address_table(void **state)
{
    char line[LINE_MAX_BYTES], raw[LINE_MAX_BYTES], *tok[MAX_TOKENS];
    int lineno = 0, cases = 0, failures = 0;
    FILE *f = open_table("addresses.txt");

    while (next_line(f, line, sizeof line, &lineno)) {
        struct dest d;
        struct decision dec;
        struct sockaddr_storage ss;
        const char *why = NULL;
        snprintf(raw, sizeof raw, "%s", line);
        const char *arrow = strstr(raw, "=> ");
        int n = split(line, tok, MAX_TOKENS);
        if (n < 7 || strcmp(tok[5], "=>") != 0 || !arrow)
            fail_msg("addresses.txt:%d: malformed line", lineno);
        const char *expect = tok[6];
        const char *expect_why = arrow + 3 + strlen(expect);
        expect_why += strspn(expect_why, " ");
        cases++;
        struct policy *p = named_policy(tok[0]);
        if (build_dest(&d, tok + 1, false) < 0)
            fail_msg("addresses.txt:%d: host refused", lineno);
        make_sockaddr(tok[4], &ss);
        policy_decide(p, &d, &dec);
        bool ok = policy_address_permitted(p, &d, &dec, (struct sockaddr *)&ss, &why);
        bool match;
        if (strcmp(expect, "permitted") == 0)
            match = ok;
        else
            match = !ok && why && strstr(why, expect_why);
        if (!match) {
            print_error("addresses.txt:%d: %s %s %s -> %s: expected %s %s, got %s %s\n", lineno,
                        tok[0], tok[2], tok[3], tok[4], expect, expect_why,
                        ok ? "permitted" : "refused",
                        ok    ? ""
                        : why ? why
                              : "(no reason)");
            failures++;
        }
    }
    fclose(f);
    assert_true(cases >= 60);
    assert_int_equal(failures, 0);
}

static void test_invalid_table(void **state)
{
    char line[LINE_MAX_BYTES], raw[LINE_MAX_BYTES], *tok[MAX_TOKENS];
    int lineno = 0, cases = 0, failures = 0;
    FILE *f = open_table("invalid.txt");

    while (next_line(f, line, sizeof line, &lineno)) {
        char path[PATH_BYTES], text[ERROR_TEXT];
        struct policy_error err;
        snprintf(raw, sizeof raw, "%s", line);
        const char *arrow = strstr(raw, "=> ");
        int n = split(line, tok, MAX_TOKENS);
        if (n < 6 || strcmp(tok[4], "=>") != 0 || !arrow)
            fail_msg("invalid.txt:%d: malformed line", lineno);
        const char *msg = arrow + 3;
        const char *want_path = strcmp(tok[3], "-") == 0 ? "" : tok[3];
        cases++;
        snprintf(path, sizeof path, "%s/policy/invalid/%s", data_dir(), tok[0]);
        struct policy *p = policy_load_file(path, &err);
        policy_format_error(&err, text, sizeof text);
        if (p || err.line != table_int(tok[1]) || err.column != table_int(tok[2]) ||
            strcmp(err.path, want_path) != 0 || !strstr(err.message, msg) ||
            strcmp(err.source, path) != 0 || strncmp(text, path, strlen(path)) != 0) {
            print_error("invalid.txt:%d: %s: expected %s:%s %s: %s\n  got %s\n", lineno, tok[0],
                        tok[1], tok[2], want_path, msg, p ? "a loaded policy" : text);
            failures++;
        }
        policy_unref(p);
    }
    fclose(f);
    assert_true(cases >= 40);
    assert_int_equal(failures, 0);
}

/* Every sample policy next to the tables is valid. */
static void test_samples_load(void **state)
{
    char dir[PATH_BYTES];
    int loaded = 0;
    snprintf(dir, sizeof dir, "%s/policy", data_dir());
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        named_policy(e->d_name);
        loaded++;
    }
    closedir(d);
    assert_true(loaded >= 10);
}

static struct policy *from_text(const char *text)
{
    struct policy_error err;
    struct policy *p = policy_load_buffer(text, strlen(text), "test", &err);
    if (!p) {
        char buf[ERROR_TEXT];
        policy_format_error(&err, buf, sizeof buf);
        fail_msg("%s", buf);
    }
    return p;
}

static struct dest name_dest(enum dest_kind kind, const char *host, uint16_t port)
{
    struct dest d;
    const char *why;
    memset(&d, 0, sizeof d);
    d.kind = kind;
    d.port = port;
    assert_int_equal(host_canonicalise(host, strlen(host), &d.host, &why), 0);
    return d;
}

static void test_full_policy_accessors(void **state)
{
    struct policy *p = named_policy("full.json");
    const struct policy_header *h;

    assert_int_equal(policy_rule_count(p), 3);
    assert_int_equal(policy_default(p), VERDICT_DENY);
    assert_false(policy_report_mode(p));
    assert_true(policy_needs_ca(p));
    assert_true(policy_intercept_enabled(p));

    const char *text = policy_rule_text(p, 0);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"Authorization\":\"<redacted>\""));
    assert_non_null(strstr(text, "\"X-Org\":\"<redacted>\""));
    assert_null(strstr(text, "/run/secrets"));
    assert_null(strstr(text, "${env:ORG}"));
    assert_non_null(strstr(text, "\"reason\":\"model calls only\""));
    assert_string_equal(policy_rule_text(p, 1), "{\"allow\":\"*.apple.com\"}");
    assert_null(policy_rule_text(p, 3));

    /* The proxy gets the raw templates; only the text is redacted. */
    assert_int_equal(policy_rule_inject(p, 0, &h), 2);
    assert_string_equal(h[0].name, "Authorization");
    assert_string_equal(h[0].value, "Bearer ${file:/run/secrets/openai}");
    assert_string_equal(h[1].value, "${env:ORG}");
    assert_int_equal(policy_rule_inject(p, 1, &h), 0);

    const struct policy_dns *dns = policy_dns(p);
    assert_int_equal(dns->n_upstream, 4);
    assert_string_equal(dns->upstream[0], "192.0.2.53");
    assert_string_equal(dns->upstream[1], "192.0.2.54:5353");
    assert_string_equal(dns->upstream[2], "2001:db8::53");
    assert_string_equal(dns->upstream[3], "[2001:db8::54]:53");
    assert_int_equal(dns->refuse_with, DNS_REFUSE_REFUSED);

    struct dest d = name_dest(DEST_CONNECT, "x.apple.com", 443);
    assert_true(policy_passthrough(p, &d.host));
    d = name_dest(DEST_CONNECT, "apple.com", 443);
    assert_false(policy_passthrough(p, &d.host));
    d = name_dest(DEST_CONNECT, "pinned.example", 443);
    assert_true(policy_passthrough(p, &d.host));
    d = name_dest(DEST_CONNECT, "a.b.PINNED.example.", 443);
    assert_true(policy_passthrough(p, &d.host));
    d = name_dest(DEST_CONNECT, "unpinned.example", 443);
    assert_false(policy_passthrough(p, &d.host));
    d = name_dest(DEST_CONNECT, "192.0.2.9", 443);
    assert_true(policy_passthrough(p, &d.host));
    d = name_dest(DEST_CONNECT, "198.51.100.9", 443);
    assert_false(policy_passthrough(p, &d.host));

    /* A decision's reason lives with the policy. */
    struct decision dec;
    d = name_dest(DEST_CONNECT, "api.openai.com", 443);
    policy_decide(p, &d, &dec);
    assert_int_equal(dec.rule, 0);
    assert_string_equal(dec.reason, "model calls only");
}

static void test_defaults_and_deny_all(void **state)
{
    struct policy *p = policy_deny_all();
    struct decision dec;
    struct dest d = name_dest(DEST_CONNECT, "example.com", 443);
    assert_non_null(p);
    assert_int_equal(policy_rule_count(p), 0);
    policy_decide(p, &d, &dec);
    assert_int_equal(dec.verdict, VERDICT_DENY);
    assert_int_equal(dec.rule, -1);
    assert_null(dec.reason);
    assert_false(dec.needs_intercept);
    assert_false(policy_needs_ca(p));
    assert_false(policy_intercept_enabled(p));
    assert_int_equal(strlen(policy_hash(p)), 64);
    policy_unref(p);

    /* "{}" is a valid policy: deny everything, enforce. */
    p = from_text("{}");
    assert_int_equal(policy_default(p), VERDICT_DENY);
    assert_false(policy_report_mode(p));
    assert_string_equal(policy_source(p), "test");
    assert_int_equal(policy_dns(p)->n_upstream, 0);
    assert_int_equal(policy_dns(p)->refuse_with, DNS_REFUSE_NXDOMAIN);
    assert_string_equal(policy_hash(p),
                        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    policy_unref(p);
}

static void test_intercept_defaults(void **state)
{
    struct policy *p = from_text("{\"rules\": [{\"allow\": \"a.example\", \"paths\": [\"/x\"]}]}");
    assert_true(policy_needs_ca(p));
    assert_true(policy_intercept_enabled(p));
    policy_unref(p);
    p = from_text("{\"rules\": [{\"allow\": \"a.example\"}]}");
    assert_false(policy_needs_ca(p));
    assert_false(policy_intercept_enabled(p));
    policy_unref(p);
    p = from_text("{\"rules\": [{\"deny\": \"a.example\", \"methods\": [\"POST\"]}]}");
    assert_true(policy_needs_ca(p));
    policy_unref(p);
    p = from_text("{\"intercept\": {\"enabled\": true}}");
    assert_true(policy_intercept_enabled(p));
    assert_false(policy_needs_ca(p));
    policy_unref(p);
}

static void test_format_error(void **state)
{
    struct policy_error e;
    char buf[ERROR_TEXT];
    memset(&e, 0, sizeof e);
    snprintf(e.source, sizeof e.source, "p.json");
    snprintf(e.message, sizeof e.message, "boom");
    e.line = 3;
    e.column = 7;
    policy_format_error(&e, buf, sizeof buf);
    assert_string_equal(buf, "p.json:3:7: boom");
    e.line = e.column = 0;
    snprintf(e.path, sizeof e.path, "rules[3].ports[0]");
    policy_format_error(&e, buf, sizeof buf);
    assert_string_equal(buf, "p.json: rules[3].ports[0]: boom");
    e.source[0] = '\0';
    policy_format_error(&e, buf, sizeof buf);
    assert_string_equal(buf, "rules[3].ports[0]: boom");
    /* A short buffer is cut, never overrun. */
    char small[8];
    policy_format_error(&e, small, sizeof small);
    assert_true(strlen(small) < sizeof small);
}

static void test_load_errors(void **state)
{
    struct policy_error err;
    char path[PATH_BYTES];
    data_path(path, sizeof path, "does-not-exist.json");
    assert_null(policy_load_file(path, &err));
    assert_string_equal(err.source, path);
    assert_string_equal(err.message, strerror(ENOENT));

    data_path(path, sizeof path, "");
    assert_null(policy_load_file(path, &err)); /* a directory */

    size_t big = POLICY_MAX_FILE_BYTES + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, ' ', big);
    text[0] = '{';
    text[big - 1] = '}';
    assert_null(policy_load_buffer(text, big, "big", &err));
    assert_non_null(strstr(err.message, "larger"));
    free(text);

    /* NUL inside the text is a syntax error, not a truncated policy. */
    static const char nul[] = "{\"rules\": []}\0{\"default\": \"allow\"}";
    assert_null(policy_load_buffer(nul, sizeof nul - 1, "nul", &err));
    assert_true(err.line > 0);

    /* A NULL error pointer is allowed. */
    assert_null(policy_load_buffer("[", 1, "x", NULL));
}

static void *hammer(void *arg)
{
    struct policy *p = arg;
    struct dest d = name_dest(DEST_CONNECT, "example.com", 443);
    struct decision dec;
    for (int i = 0; i < 20000; i++) {
        struct policy *mine = policy_ref(p);
        policy_decide(mine, &d, &dec);
        policy_unref(mine);
    }
    return NULL;
}

static void test_refcount_threads(void **state)
{
    pthread_t t[4];
    struct policy *p = from_text("{\"rules\": [{\"allow\": \"example.com\"}]}");
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, p), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    struct dest d = name_dest(DEST_CONNECT, "example.com", 443);
    struct decision dec;
    policy_decide(p, &d, &dec);
    assert_int_equal(dec.verdict, VERDICT_ALLOW);
    policy_unref(p);
    policy_unref(NULL);
    assert_null(policy_ref(NULL));
}

/* ---- the compiled index against a plain first-match scan ------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

#define REF_RULES 600
#define REF_NAME 64

struct ref_rule {
    int action; /* 0 allow, 1 deny, 2 prompt */
    int type;   /* 0 exact, 1 below, 2 apex, 3 any, 4 cidr */
    char name[REF_NAME];
    uint8_t addr[4];
    int prefix;
    int port; /* 0: none */
};

static const char *const vocab[] = {"a", "b", "ex", "com", "xn--bcher-kva"};

static void random_name(char *out, size_t size)
{
    int labels = 1 + (int)rnd(3);
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < labels; i++)
        n += (size_t)snprintf(out + n, size - n, "%s%s", i ? "." : "",
                              vocab[rnd(sizeof vocab / sizeof vocab[0])]);
}

static bool ref_suffix(const char *host, const char *name)
{
    size_t h = strlen(host), n = strlen(name);
    return h > n && host[h - n - 1] == '.' && strcmp(host + h - n, name) == 0;
}

static bool ref_port_ok(const struct ref_rule *r, enum dest_kind kind, int port)
{
    if (kind == DEST_DNS)
        return true;
    if (r->port)
        return r->port == port;
    if (r->action == 1)
        return true;
    if (kind == DEST_CONNECT)
        return port == 443;
    if (kind == DEST_HTTP)
        return port == 80;
    return port == 80 || port == 443;
}

static bool ref_addr_in(const struct ref_rule *r, const uint8_t *a)
{
    for (int bit = 0; bit < r->prefix; bit++) {
        int mask = 0x80 >> (bit % 8);
        if ((r->addr[bit / 8] & mask) != (a[bit / 8] & mask))
            return false;
    }
    return true;
}

static int ref_decide(const struct ref_rule *rules, int n, const struct dest *d)
{
    for (int i = 0; i < n; i++) {
        const struct ref_rule *r = &rules[i];
        if (!ref_port_ok(r, d->kind, d->port))
            continue;
        bool m = false;
        if (d->host.kind == HOST_KIND_IPV4)
            m = r->type == 4 && ref_addr_in(r, (const uint8_t *)&d->host.addr.v4);
        else if (r->type == 0)
            m = strcmp(d->host.text, r->name) == 0;
        else if (r->type == 1)
            m = ref_suffix(d->host.text, r->name);
        else if (r->type == 2)
            m = strcmp(d->host.text, r->name) == 0 || ref_suffix(d->host.text, r->name);
        else if (r->type == 3)
            m = true;
        if (m)
            return i;
    }
    return -1;
}

static void test_index_matches_first_match_scan(void **state)
{
    static struct ref_rule rules[REF_RULES];
    static const char *const actions[] = {"allow", "deny", "prompt"};
    static const char *const prefixes[] = {"", "*.", "."};
    size_t cap = REF_RULES * 96 + 64, n = 0;
    char *json = malloc(cap);
    assert_non_null(json);

    n += (size_t)snprintf(json + n, cap - n, "{\"rules\": [");
    for (int i = 0; i < REF_RULES; i++) {
        struct ref_rule *r = &rules[i];
        char pat[REF_NAME + 8], ports[32] = "";
        r->action = (int)rnd(3);
        /* "*" only near the end, or it would decide nearly everything. */
        r->type = i > REF_RULES - 8 && rnd(4) == 0 ? 3 : (int)(rnd(4) == 0 ? 4 : rnd(3));
        if (r->type == 4) {
            r->prefix = (int)rnd(33);
            uint32_t v = (rnd(2) ? 0x0a007100u : 0xcb007100u) | rnd(256);
            if (r->prefix < 32)
                v &= r->prefix ? ~0u << (32 - r->prefix) : 0;
            for (int b = 0; b < 4; b++)
                r->addr[b] = (uint8_t)(v >> (24 - 8 * b));
            snprintf(pat, sizeof pat, "%u.%u.%u.%u/%d", r->addr[0], r->addr[1], r->addr[2],
                     r->addr[3], r->prefix);
        } else if (r->type == 3) {
            snprintf(pat, sizeof pat, "*");
        } else {
            random_name(r->name, sizeof r->name);
            snprintf(pat, sizeof pat, "%s%s", prefixes[r->type], r->name);
        }
        if (rnd(3) == 0) {
            r->port = rnd(2) ? 443 : 8080;
            snprintf(ports, sizeof ports, ", \"ports\": [%d]", r->port);
        }
        n += (size_t)snprintf(json + n, cap - n, "%s{\"%s\": \"%s\"%s}", i ? ", " : "",
                              actions[r->action], pat, ports);
        assert_true(n < cap);
    }
    n += (size_t)snprintf(json + n, cap - n, "]}");
    struct policy *p = from_text(json);
    free(json);

    static const enum dest_kind kinds[] = {DEST_CONNECT, DEST_HTTP, DEST_TRANSPARENT, DEST_DNS};
    static const uint16_t ports[] = {80, 443, 8080};
    for (int i = 0; i < 20000; i++) {
        char host[REF_NAME];
        struct dest d;
        struct decision dec;
        if (rnd(3) == 0)
            snprintf(host, sizeof host, "%s.0.113.%u", rnd(2) ? "10" : "203", rnd(256));
        else
            random_name(host, sizeof host);
        d = name_dest(kinds[rnd(4)], host, ports[rnd(3)]);
        policy_decide(p, &d, &dec);
        int want = ref_decide(rules, REF_RULES, &d);
        if (dec.rule != want)
            fail_msg("%s kind %d port %u: index says rule %d, scan says %d", host, d.kind, d.port,
                     dec.rule, want);
        if (want >= 0)
            assert_int_equal(dec.verdict, (enum verdict)rules[want].action);
    }
    policy_unref(p);
}

static void test_reload_samples_repeatedly(void **state)
{
    /* Loading and freeing every sample repeatedly must not leak or crash
     * (run under ASan to make this bite). */
    for (int round = 0; round < 3; round++) {
        drop_cache();
        named_policy("spec.json");
        named_policy("full.json");
        named_policy("http.json");
    }
}

static int teardown_all(void **state)
{
    drop_cache();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decision_table),
        cmocka_unit_test(test_address_table),
        cmocka_unit_test(test_invalid_table),
        cmocka_unit_test(test_samples_load),
        cmocka_unit_test(test_full_policy_accessors),
        cmocka_unit_test(test_defaults_and_deny_all),
        cmocka_unit_test(test_intercept_defaults),
        cmocka_unit_test(test_format_error),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_refcount_threads),
        cmocka_unit_test(test_index_matches_first_match_scan),
        cmocka_unit_test(test_reload_samples_repeatedly),
    };
    return cmocka_run_group_tests_name("policy", tests, NULL, teardown_all);
}
