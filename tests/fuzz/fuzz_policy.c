/* libFuzzer harness: policy loading and deciding.
 *
 * Loads the input as a policy; when it loads, every introspection call and
 * a spread of destinations (every kind, names, addresses, methods, paths)
 * are decided, and the special-range check is run on the answers, so the
 * compiled indexes are exercised by whatever rules the fuzzer invents. */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "policy/policy.h"

#define FUZZ_ERROR_TEXT 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const hosts[] = {
    "example.com",       "a.example.com",         "a.b.example.com",   "com",   "pypi.org",
    "bücher.example",    "xn--bcher-kva.example", "_dmarc.example.io", "co",    "203.0.113.7",
    "10.0.0.1",          "169.254.169.254",       "0.0.0.0",           "[::1]", "[2001:db8::1]",
    "[::ffff:10.0.0.1]", "[fd00:ec2::254]",
};

static const char *const paths[] = {"/", "/v1/x", "/admin", "/v1/../admin", "/a?b=c"};

static void decide_all(const struct policy *p)
{
    static const enum dest_kind kinds[] = {DEST_CONNECT, DEST_HTTP, DEST_TRANSPARENT, DEST_DNS};
    static const uint16_t ports[] = {443, 80, 8080};
    for (size_t hi = 0; hi < sizeof hosts / sizeof hosts[0]; hi++) {
        struct dest d;
        memset(&d, 0, sizeof d);
        if (host_canonicalise(hosts[hi], strlen(hosts[hi]), &d.host, NULL) != 0)
            __builtin_trap();
        for (size_t k = 0; k < 4; k++) {
            struct decision dec;
            d.kind = kinds[k];
            d.port = ports[(hi + k) % 3];
            d.method = NULL;
            d.path = NULL;
            policy_decide(p, &d, &dec);
            if (dec.rule >= (int)policy_rule_count(p) || dec.rule < -1)
                __builtin_trap();
            if (dec.rule >= 0 && !policy_rule_text(p, (size_t)dec.rule))
                __builtin_trap();
            if (dec.would_deny && !policy_report_mode(p))
                __builtin_trap();
            d.method = (k & 1) ? "GET" : "POST";
            d.method_len = strlen(d.method);
            d.path = paths[(hi + k) % 5];
            d.path_len = strlen(d.path);
            policy_decide(p, &d, &dec);

            struct sockaddr_in sin = {.sin_family = AF_INET};
            inet_pton(AF_INET, (k & 1) ? "10.96.0.1" : "8.8.8.8", &sin.sin_addr);
            const char *why = NULL;
            if (!policy_address_permitted(p, &d, &dec, (struct sockaddr *)&sin, &why) && !why)
                __builtin_trap();
        }
        policy_passthrough(p, &d.host);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy_error err;
    struct policy *p = policy_load_buffer((const char *)data, size, "fuzz", &err);
    if (!p) {
        char text[FUZZ_ERROR_TEXT];
        policy_format_error(&err, text, sizeof text);
        if (text[0] == '\0' || strlen(text) >= sizeof text)
            __builtin_trap();
        return 0;
    }
    decide_all(p);
    for (size_t i = 0; i < policy_rule_count(p); i++) {
        const struct policy_header *h;
        const char *text = policy_rule_text(p, i);
        size_t n = policy_rule_inject(p, i, &h);
        if (!text)
            __builtin_trap();
        /* Injected values are redacted in the rule text. */
        if (n > 0 && !strstr(text, "\"<redacted>\""))
            __builtin_trap();
    }
    if (strlen(policy_hash(p)) != 64 || policy_dns(p)->n_upstream > POLICY_MAX_DNS_UPSTREAMS)
        __builtin_trap();
    policy_unref(policy_ref(p));
    policy_unref(p);
    return 0;
}
