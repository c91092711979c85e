/* libFuzzer harness: the DNS filter's message path (src/dns/wire.c).
 *
 * The whole input is parsed as a client query, and every reply the filter
 * could build for it must be a well-formed message with the query's id.
 * Then input[1..] is processed as an upstream answer to one of a few fixed
 * questions (chosen by input[0]); an answer that passes must parse back,
 * carry no ECH parameter, no address the policy refuses, and no more
 * addresses than reported. The seed corpus (tests/fuzz/corpus/dns/) holds
 * real queries and answers to those questions. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "dns/wire.h"
#include "policy/addr.h"
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char policy_json[] =
    "{\"default\": \"deny\", \"rules\": [{\"deny\": \"denied.test\"},"
    "{\"allow\": \"allowed.test\"}, {\"allow\": \"alias.test\"}, {\"allow\": \"svc.test\"},"
    "{\"allow\": \"*.cdn.test\"}], \"reach_ranges\": [\"192.0.2.0/24\"],"
    "\"dns\": {\"upstream\": [\"192.0.2.53\"]}}";

/* The questions answers are fuzzed against: id 0x4242, RD. */
static const struct {
    const char *name;
    uint16_t type;
} questions[] = {
    {"allowed.test", LDNS_RR_TYPE_A},
    {"allowed.test", LDNS_RR_TYPE_AAAA},
    {"alias.test", LDNS_RR_TYPE_A},
    {"svc.test", LDNS_RR_TYPE_HTTPS},
};

static struct policy *policy;
static const struct dns_limits limits = {.max_name_len = 160, .max_labels = 40};

static size_t build_query(const char *name, uint16_t type, uint8_t *out)
{
    size_t n = 12;
    memset(out, 0, 12);
    out[0] = 0x42;
    out[1] = 0x42;
    out[2] = 0x01;
    out[5] = 1;
    for (const char *p = name; *p;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        out[n++] = (uint8_t)len;
        memcpy(out + n, p, len);
        n += len;
        p += len + (dot ? 1 : 0);
    }
    out[n++] = 0;
    out[n++] = (uint8_t)(type >> 8);
    out[n++] = (uint8_t)type;
    out[n++] = 0;
    out[n++] = 1;
    return n;
}

static void check_reply(const struct dns_query *q, const uint8_t *msg, size_t size, int rcode,
                        bool tc)
{
    uint8_t out[DNS_MSG_MAX];
    size_t n = 0;
    if (dns_reply_build(q, msg, size, rcode, tc, out, sizeof out, &n) < 0) {
        if (size >= DNS_HEADER_LEN)
            __builtin_trap();
        return;
    }
    ldns_pkt *pkt = NULL;
    if (n < DNS_HEADER_LEN || memcmp(out, msg, 2) != 0 || (out[3] & 0x0f) != rcode ||
        !(out[2] & 0x80) || ldns_wire2pkt(&pkt, out, n) != LDNS_STATUS_OK)
        __builtin_trap();
    ldns_pkt_free(pkt);
}

static void fuzz_query(const uint8_t *data, size_t size)
{
    struct dns_query q;
    enum dns_query_status st = dns_query_parse(data, size, &limits, &q);
    if (st != DNS_QUERY_IGNORE) {
        check_reply(&q, data, size, DNS_RCODE_FORMERR, false);
        check_reply(&q, data, size, DNS_RCODE_NXDOMAIN, false);
        check_reply(&q, data, size, DNS_RCODE_NOERROR, true);
    }
    if (st == DNS_QUERY_OK && q.host_ok) {
        struct dest d;
        struct decision dec;
        dns_query_dest(&q, &d);
        policy_decide(policy, &d, &dec);
        if (q.host.len == 0 || q.name_len > limits.max_name_len)
            __builtin_trap();
    }
    dns_query_clear(&q);
}

static bool has_ech(const ldns_rr *rr)
{
    if (ldns_rr_rd_count(rr) < 3)
        return false;
    const ldns_rdf *p = ldns_rr_rdf(rr, 2);
    const uint8_t *d = ldns_rdf_data(p);
    size_t n = ldns_rdf_size(p);
    for (size_t off = 0; off + 4 <= n;) {
        uint16_t key = (uint16_t)(d[off] << 8 | d[off + 1]);
        uint16_t len = (uint16_t)(d[off + 2] << 8 | d[off + 3]);
        if (key == 5)
            return true;
        off += 4u + len;
    }
    return false;
}

static void check_passed(const struct dns_answer *res)
{
    ldns_pkt *pkt = NULL;
    size_t addrs = 0;
    if (res->msg == NULL || ldns_wire2pkt(&pkt, res->msg, res->len) != LDNS_STATUS_OK)
        __builtin_trap();
    const ldns_rr_list *an = ldns_pkt_answer(pkt);
    for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(an, i);
        ldns_rr_type t = ldns_rr_get_type(rr);
        if ((t == LDNS_RR_TYPE_HTTPS || t == LDNS_RR_TYPE_SVCB) && has_ech(rr))
            __builtin_trap();
        if (t == LDNS_RR_TYPE_A && ldns_rr_rd_count(rr) == 1) {
            struct sockaddr_in sin = {.sin_family = AF_INET};
            const uint8_t *a = ldns_rdf_data(ldns_rr_rdf(rr, 0));
            if (ldns_rdf_size(ldns_rr_rdf(rr, 0)) != 4)
                __builtin_trap();
            memcpy(&sin.sin_addr, a, 4);
            /* a special address may remain only in the reach range 192.0.2.0/24 */
            if (addr_special_range((const struct sockaddr *)&sin) &&
                (a[0] != 192 || a[1] != 0 || a[2] != 2))
                __builtin_trap();
        }
        addrs += t == LDNS_RR_TYPE_A || t == LDNS_RR_TYPE_AAAA;
    }
    if (addrs != res->n_addrs || ldns_pkt_arcount(pkt) != 0)
        __builtin_trap();
    ldns_pkt_free(pkt);
}

static void fuzz_answer(const uint8_t *data, size_t size)
{
    uint8_t qbuf[512];
    struct dns_query q;
    struct decision dec;
    struct dest d;
    struct dns_answer res;
    struct dns_answer_opts opts = {.ttl_cap = 3600};
    size_t which = data[0] % (sizeof questions / sizeof questions[0]);
    size_t qlen = build_query(questions[which].name, questions[which].type, qbuf);
    if (dns_query_parse(qbuf, qlen, &limits, &q) != DNS_QUERY_OK || !q.host_ok)
        __builtin_trap();
    dns_query_dest(&q, &d);
    policy_decide(policy, &d, &dec);
    dns_answer_process(policy, &q, &dec, data + 1, size - 1, &opts, &res);
    if (res.status == DNS_ANSWER_PASS)
        check_passed(&res);
    else if (res.msg != NULL)
        __builtin_trap();
    for (size_t i = 0; i < res.n_addrs; i++)
        if (res.addrs[i].ttl > opts.ttl_cap)
            __builtin_trap();
    dns_answer_clear(&res);
    dns_query_clear(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (policy == NULL) {
        struct policy_error err;
        policy = policy_load_buffer(policy_json, strlen(policy_json), "fuzz", &err);
        if (policy == NULL)
            __builtin_trap();
    }
    fuzz_query(data, size);
    if (size >= 1)
        fuzz_answer(data, size);
    return 0;
}
