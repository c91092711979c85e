/* The DNS filter's message path (src/dns/wire.c), driven by wire bytes:
 * which queries are served, refused or FORMERR; the refusals' exact
 * headers; and what an upstream answer may carry to the client (question
 * match, CNAME chain, special-range addresses, ECH, TTL cap). Messages are
 * assembled byte by byte here (not with ldns), so the parser sees what a
 * client or a hostile upstream could send; ldns only reads the results. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ldns/ldns.h>

#include "dns/wire.h"
#include "policy/policy.h"

#define MSG_MAX 2048
#define F_QR 0x8000
#define F_RD 0x0100
#define F_TC 0x0200
#define T_A 1
#define T_CNAME 5
#define T_NULL 10
#define T_TXT 16
#define T_AAAA 28
#define T_OPT 41
#define T_SVCB 64
#define T_HTTPS 65
#define T_AXFR 252
#define T_ANY 255

static const struct dns_limits limits = {.max_name_len = 160, .max_labels = 40};

/* ---- a byte-level message builder ------------------------------------------ */

struct msg {
    uint8_t b[MSG_MAX];
    size_t n;
};

static void put8(struct msg *m, uint8_t v)
{
    assert_true(m->n < MSG_MAX);
    m->b[m->n++] = v;
}

static void put16(struct msg *m, uint16_t v)
{
    put8(m, (uint8_t)(v >> 8));
    put8(m, (uint8_t)v);
}

static void put32(struct msg *m, uint32_t v)
{
    put16(m, (uint16_t)(v >> 16));
    put16(m, (uint16_t)v);
}

static void put_bytes(struct msg *m, const void *p, size_t n)
{
    assert_true(m->n + n <= MSG_MAX);
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void header(struct msg *m, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
                   uint16_t ns, uint16_t ar)
{
    m->n = 0;
    put16(m, id);
    put16(m, flags);
    put16(m, qd);
    put16(m, an);
    put16(m, ns);
    put16(m, ar);
}

/* "allowed.test" as labels; "" is the root. */
static void name(struct msg *m, const char *dotted)
{
    while (*dotted) {
        const char *dot = strchr(dotted, '.');
        size_t len = dot ? (size_t)(dot - dotted) : strlen(dotted);
        put8(m, (uint8_t)len);
        put_bytes(m, dotted, len);
        dotted += len + (dot ? 1 : 0);
    }
    put8(m, 0);
}

static void question(struct msg *m, const char *qname, uint16_t type)
{
    name(m, qname);
    put16(m, type);
    put16(m, 1); /* IN */
}

static void rr(struct msg *m, const char *owner, uint16_t type, uint32_t ttl, const void *rdata,
               uint16_t rdlen)
{
    name(m, owner);
    put16(m, type);
    put16(m, 1);
    put32(m, ttl);
    put16(m, rdlen);
    put_bytes(m, rdata, rdlen);
}

static void rr_a(struct msg *m, const char *owner, const char *ip, uint32_t ttl)
{
    uint8_t a[16];
    int v6 = strchr(ip, ':') != NULL;
    assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, ip, a), 1);
    rr(m, owner, v6 ? T_AAAA : T_A, ttl, a, v6 ? 16 : 4);
}

static void rr_cname(struct msg *m, const char *owner, const char *target)
{
    struct msg t = {.n = 0};
    name(&t, target);
    rr(m, owner, T_CNAME, 300, t.b, (uint16_t)t.n);
}

static void opt(struct msg *m, uint16_t udp_size)
{
    put8(m, 0); /* root owner */
    put16(m, T_OPT);
    put16(m, udp_size);
    put32(m, 0);
    put16(m, 0);
}

static void query(struct msg *m, uint16_t id, const char *qname, uint16_t type)
{
    header(m, id, F_RD, 1, 0, 0, 0);
    question(m, qname, type);
}

/* ---- fixtures ---------------------------------------------------------------- */

static struct policy *policy;
static struct policy *report_policy;

static struct policy *load(const char *json)
{
    struct policy_error err;
    struct policy *p = policy_load_buffer(json, strlen(json), "test", &err);
    if (p == NULL) {
        char text[512];
        policy_format_error(&err, text, sizeof text);
        fail_msg("policy: %s", text);
    }
    return p;
}

static int setup(void **state)
{
    (void)state;
    policy = load("{\"default\": \"deny\", \"rules\": ["
                  "{\"deny\": \"denied.test\", \"reason\": \"off limits\"},"
                  "{\"allow\": \".allowed.test\"}, {\"allow\": \"alias.test\"},"
                  "{\"allow\": \"mixed.test\"}, {\"allow\": \"cdn.example\"},"
                  "{\"allow\": \"svc.test\"}],"
                  "\"reach_ranges\": [\"192.0.2.0/24\", \"2001:db8::/32\"],"
                  "\"dns\": {\"upstream\": [\"192.0.2.53\"]}}");
    report_policy = load("{\"default\": \"deny\", \"mode\": \"report\", \"rules\": ["
                         "{\"deny\": \"denied.test\"}, {\"allow\": \"alias.test\"}],"
                         "\"reach_ranges\": [\"192.0.2.0/24\"],"
                         "\"dns\": {\"upstream\": [\"192.0.2.53\"]}}");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    policy_unref(policy);
    policy_unref(report_policy);
    return 0;
}

static enum dns_query_status parse(const struct msg *m, struct dns_query *q)
{
    return dns_query_parse(m->b, m->n, &limits, q);
}

/* Parses an answer the way the filter does (allowed by p) and returns
 * the status; res must be cleared by the caller. */
static enum dns_answer_status process(struct policy *p, const struct msg *qm, const struct msg *am,
                                      uint32_t ttl_cap, struct dns_answer *res)
{
    struct dns_query q;
    struct decision dec;
    struct dest d;
    struct dns_answer_opts opts = {.ttl_cap = ttl_cap};
    assert_int_equal(parse(qm, &q), DNS_QUERY_OK);
    assert_true(q.host_ok);
    dns_query_dest(&q, &d);
    policy_decide(p, &d, &dec);
    assert_int_equal(dec.verdict, VERDICT_ALLOW);
    dns_answer_process(p, &q, &dec, am->b, am->n, &opts, res);
    dns_query_clear(&q);
    return res->status;
}

static ldns_pkt *read_back(const struct dns_answer *res)
{
    ldns_pkt *pkt = NULL;
    assert_non_null(res->msg);
    assert_int_equal(ldns_wire2pkt(&pkt, res->msg, res->len), LDNS_STATUS_OK);
    return pkt;
}

static size_t count_type(const ldns_rr_list *l, ldns_rr_type t)
{
    size_t n = 0;
    for (size_t i = 0; l && i < ldns_rr_list_rr_count(l); i++)
        n += ldns_rr_get_type(ldns_rr_list_rr(l, i)) == t;
    return n;
}

/* An upstream answer to `query(…, qname, type)` with id 0x4242. */
static void answer_header(struct msg *m, const char *qname, uint16_t type, uint16_t rcode,
                          uint16_t an, uint16_t ar)
{
    header(m, 0x4242, (uint16_t)(F_QR | F_RD | 0x0080 | rcode), 1, an, 0, ar);
    question(m, qname, type);
}

/* ---- queries ------------------------------------------------------------------ */

static void test_query_a(void **state)
{
    struct msg m;
    struct dns_query q;
    query(&m, 0xbeef, "www.allowed.test", T_A);
    assert_int_equal(parse(&m, &q), DNS_QUERY_OK);
    assert_int_equal(q.id, 0xbeef);
    assert_int_equal(q.qtype, T_A);
    assert_string_equal(q.qtype_text, "A");
    assert_string_equal(q.name, "www.allowed.test");
    assert_true(q.host_ok);
    assert_string_equal(q.host.text, "www.allowed.test");
    assert_int_equal(q.labels, 3);
    assert_false(q.edns);
    assert_int_equal(q.udp_size, 512);
    dns_query_clear(&q);
}

static void test_query_case_is_folded_for_the_policy(void **state)
{
    struct msg m;
    struct dns_query q;
    query(&m, 1, "WwW.AlLoWeD.TeSt", T_AAAA);
    assert_int_equal(parse(&m, &q), DNS_QUERY_OK);
    assert_string_equal(q.host.text, "www.allowed.test");
    assert_string_equal(q.qtype_text, "AAAA");
    dns_query_clear(&q);
}

static void test_query_edns_sizes(void **state)
{
    static const struct {
        uint16_t advertised, used;
    } cases[] = {{1232, 1232}, {100, 512}, {512, 512}, {65000, DNS_UDP_MAX}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct msg m;
        struct dns_query q;
        header(&m, 7, F_RD, 1, 0, 0, 1);
        question(&m, "allowed.test", T_A);
        opt(&m, cases[i].advertised);
        assert_int_equal(parse(&m, &q), DNS_QUERY_OK);
        assert_true(q.edns);
        assert_int_equal(q.udp_size, cases[i].used);
        dns_query_clear(&q);
    }
}

static void test_query_not_answered(void **state)
{
    struct msg m;
    struct dns_query q;
    query(&m, 1, "allowed.test", T_A);
    assert_int_equal(dns_query_parse(m.b, 11, &limits, &q), DNS_QUERY_IGNORE);
    dns_query_clear(&q);
    header(&m, 1, F_QR, 1, 0, 0, 0); /* a response sent to the filter */
    question(&m, "allowed.test", T_A);
    assert_int_equal(parse(&m, &q), DNS_QUERY_IGNORE);
    dns_query_clear(&q);
}

static void test_query_opcodes_not_implemented(void **state)
{
    for (uint16_t opcode = 1; opcode < 16; opcode++) {
        struct msg m;
        struct dns_query q;
        header(&m, 9, (uint16_t)(opcode << 11), 1, 0, 0, 0);
        question(&m, "allowed.test", T_A);
        assert_int_equal(parse(&m, &q), DNS_QUERY_NOTIMP);
        dns_query_clear(&q);
    }
}

/* Malformed shapes, each a message a client could send. */
static void test_query_malformed(void **state)
{
    struct msg m;
    struct dns_query q;
    const char *cases[] = {"no question",
                           "two questions",
                           "an answer record",
                           "an authority record",
                           "two additional records",
                           "an additional record that is not OPT",
                           "name runs past the end",
                           "compression loop",
                           "label type 0x40",
                           "truncated type/class"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        switch (i) {
        case 0:
            header(&m, 1, F_RD, 0, 0, 0, 0);
            break;
        case 1:
            header(&m, 1, F_RD, 2, 0, 0, 0);
            question(&m, "allowed.test", T_A);
            question(&m, "denied.test", T_A);
            break;
        case 2:
            header(&m, 1, F_RD, 1, 1, 0, 0);
            question(&m, "allowed.test", T_A);
            rr_a(&m, "allowed.test", "192.0.2.10", 60);
            break;
        case 3:
            header(&m, 1, F_RD, 1, 0, 1, 0);
            question(&m, "allowed.test", T_A);
            rr_a(&m, "allowed.test", "192.0.2.10", 60);
            break;
        case 4:
            header(&m, 1, F_RD, 1, 0, 0, 2);
            question(&m, "allowed.test", T_A);
            opt(&m, 1232);
            opt(&m, 1232);
            break;
        case 5:
            header(&m, 1, F_RD, 1, 0, 0, 1);
            question(&m, "allowed.test", T_A);
            rr_a(&m, "allowed.test", "192.0.2.10", 60);
            break;
        case 6:
            header(&m, 1, F_RD, 1, 0, 0, 0);
            put8(&m, 20);
            put_bytes(&m, "short", 5);
            break;
        case 7:
            header(&m, 1, F_RD, 1, 0, 0, 0);
            put16(&m, 0xc00c); /* points at itself */
            put16(&m, T_A);
            put16(&m, 1);
            break;
        case 8:
            header(&m, 1, F_RD, 1, 0, 0, 0);
            put8(&m, 0x41);
            put_bytes(&m, "a", 1);
            put8(&m, 0);
            put16(&m, T_A);
            put16(&m, 1);
            break;
        case 9:
            header(&m, 1, F_RD, 1, 0, 0, 0);
            name(&m, "allowed.test");
            put8(&m, 0);
            break;
        }
        enum dns_query_status st = parse(&m, &q);
        if (st != DNS_QUERY_MALFORMED)
            fail_msg("%s: status %d, want MALFORMED", cases[i], (int)st);
        assert_non_null(q.why);
        dns_query_clear(&q);
    }
}

static void test_query_refused_types_and_classes(void **state)
{
    static const struct {
        uint16_t type, klass;
        enum dns_refusal_cause cause;
    } cases[] = {
        {T_ANY, 1, DNS_CAUSE_QTYPE},    {T_AXFR, 1, DNS_CAUSE_QTYPE}, {251, 1, DNS_CAUSE_QTYPE},
        {T_NULL, 1, DNS_CAUSE_QTYPE},   {65280, 1, DNS_CAUSE_QTYPE},  {T_A, 3, DNS_CAUSE_QCLASS},
        {T_TXT, 255, DNS_CAUSE_QCLASS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct msg m;
        struct dns_query q;
        header(&m, 1, F_RD, 1, 0, 0, 0);
        name(&m, "allowed.test");
        put16(&m, cases[i].type);
        put16(&m, cases[i].klass);
        assert_int_equal(parse(&m, &q), DNS_QUERY_REFUSED);
        assert_int_equal(q.cause, cases[i].cause);
        dns_query_clear(&q);
    }
}

static void test_query_served_types(void **state)
{
    static const uint16_t types[] = {T_A, T_AAAA, T_CNAME, T_HTTPS, T_SVCB, 15, T_TXT, 33, 12};
    static const char *const names[] = {"A",  "AAAA", "CNAME", "HTTPS", "SVCB",
                                        "MX", "TXT",  "SRV",   "PTR"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct msg m;
        struct dns_query q;
        query(&m, 1, "allowed.test", types[i]);
        assert_int_equal(parse(&m, &q), DNS_QUERY_OK);
        assert_string_equal(q.qtype_text, names[i]);
        dns_query_clear(&q);
    }
}

static void test_query_name_caps(void **state)
{
    struct dns_limits tight = {.max_name_len = 20, .max_labels = 3};
    struct msg m;
    struct dns_query q;
    query(&m, 1, "a.b.c.allowed.test", T_A); /* 5 labels, 18 bytes */
    assert_int_equal(dns_query_parse(m.b, m.n, &tight, &q), DNS_QUERY_REFUSED);
    assert_int_equal(q.cause, DNS_CAUSE_LABELS);
    dns_query_clear(&q);
    query(&m, 1, "exfiltrated-data-0123456789.allowed.test", T_TXT);
    assert_int_equal(dns_query_parse(m.b, m.n, &tight, &q), DNS_QUERY_REFUSED);
    assert_int_equal(q.cause, DNS_CAUSE_NAME_LENGTH);
    dns_query_clear(&q);
    query(&m, 1, "ok.allowed.test", T_A); /* 3 labels, 15 bytes: within both */
    assert_int_equal(dns_query_parse(m.b, m.n, &tight, &q), DNS_QUERY_OK);
    dns_query_clear(&q);
}

/* Names the canonicaliser refuses are answered like denied names. */
static void test_query_names_that_are_not_hosts(void **state)
{
    const char *cases[] = {"", "192.0.2.10", "127.1", "a b.test", "x\\.y.test"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct msg m;
        struct dns_query q;
        if (i == 4) {
            /* one label "x.y" holding a dot byte */
            header(&m, 1, F_RD, 1, 0, 0, 0);
            put8(&m, 3);
            put_bytes(&m, "x.y", 3);
            put8(&m, 4);
            put_bytes(&m, "test", 4);
            put8(&m, 0);
            put16(&m, T_A);
            put16(&m, 1);
        } else {
            query(&m, 1, cases[i], T_A);
        }
        assert_int_equal(parse(&m, &q), DNS_QUERY_OK);
        if (q.host_ok)
            fail_msg("'%s' should not be a host name", cases[i]);
        assert_non_null(q.host_why);
        dns_query_clear(&q);
    }
}

/* ---- replies ------------------------------------------------------------------ */

static void test_reply_nxdomain_echoes_the_question(void **state)
{
    struct msg m;
    struct dns_query q;
    uint8_t out[512];
    size_t n = 0;
    query(&m, 0x1234, "DeNiEd.test", T_TXT);
    assert_int_equal(parse(&m, &q), DNS_QUERY_OK);
    assert_int_equal(dns_reply_build(&q, m.b, m.n, DNS_RCODE_NXDOMAIN, false, out, sizeof out, &n),
                     0);
    /* header: same id; QR, RD, RA; NXDOMAIN; one question, nothing else */
    static const uint8_t want[12] = {0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0};
    assert_int_equal(n, m.n);
    assert_memory_equal(out, want, sizeof want);
    /* the question as the client wrote it, case included (0x20 clients) */
    assert_memory_equal(out + 12, m.b + 12, m.n - 12);
    dns_query_clear(&q);
}

static void test_reply_with_edns_carries_an_opt(void **state)
{
    struct msg m;
    struct dns_query q;
    uint8_t out[512];
    size_t n = 0;
    header(&m, 5, F_RD, 1, 0, 0, 1);
    question(&m, "denied.test", T_A);
    opt(&m, 4096);
    assert_int_equal(parse(&m, &q), DNS_QUERY_OK);
    assert_int_equal(dns_reply_build(&q, m.b, m.n, DNS_RCODE_REFUSED, false, out, sizeof out, &n),
                     0);
    assert_int_equal(out[3] & 0x0f, DNS_RCODE_REFUSED);
    assert_int_equal(out[11], 1); /* arcount: the OPT */
    ldns_pkt *pkt = NULL;
    assert_int_equal(ldns_wire2pkt(&pkt, out, n), LDNS_STATUS_OK);
    assert_true(ldns_pkt_edns(pkt));
    assert_int_equal(ldns_pkt_edns_udp_size(pkt), DNS_EDNS_OWN_SIZE);
    ldns_pkt_free(pkt);
    dns_query_clear(&q);
}

static void test_reply_truncated(void **state)
{
    struct msg m;
    struct dns_query q;
    uint8_t out[512];
    size_t n = 0;
    query(&m, 77, "allowed.test", T_TXT);
    assert_int_equal(parse(&m, &q), DNS_QUERY_OK);
    assert_int_equal(dns_reply_build(&q, m.b, m.n, DNS_RCODE_NOERROR, true, out, sizeof out, &n),
                     0);
    assert_true(out[2] & 0x02); /* TC */
    assert_int_equal(out[3] & 0x0f, 0);
    assert_int_equal(out[7], 0); /* no answers: the client asks again over TCP */
    dns_query_clear(&q);
}

static void test_reply_formerr_without_question(void **state)
{
    struct msg m;
    struct dns_query q;
    uint8_t out[64];
    size_t n = 0;
    header(&m, 0xabcd, F_RD, 2, 0, 0, 0);
    assert_int_equal(parse(&m, &q), DNS_QUERY_MALFORMED);
    assert_int_equal(dns_reply_build(&q, m.b, m.n, DNS_RCODE_FORMERR, false, out, sizeof out, &n),
                     0);
    static const uint8_t want[12] = {0xab, 0xcd, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(n, 12);
    assert_memory_equal(out, want, 12);
    dns_query_clear(&q);
    /* shorter than a header: nothing to answer with */
    assert_int_equal(dns_reply_build(NULL, m.b, 5, DNS_RCODE_FORMERR, false, out, sizeof out, &n),
                     -1);
}

/* ---- answers ------------------------------------------------------------------ */

static void test_answer_passes_and_reports_addresses(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "www.allowed.test", T_A);
    answer_header(&am, "www.allowed.test", T_A, 0, 2, 0);
    rr_a(&am, "www.allowed.test", "192.0.2.10", 60);
    rr_a(&am, "www.allowed.test", "192.0.2.11", 7200);
    assert_int_equal(process(policy, &qm, &am, 3600, &res), DNS_ANSWER_PASS);
    assert_int_equal(res.n_addrs, 2);
    assert_int_equal(res.addrs[0].family, AF_INET);
    assert_int_equal(res.addrs[0].ttl, 60);
    assert_int_equal(res.addrs[1].ttl, 3600); /* capped */
    assert_string_equal(res.addrs[0].name, "www.allowed.test");
    ldns_pkt *pkt = read_back(&res);
    assert_int_equal(ldns_pkt_id(pkt), 0x4242);
    assert_int_equal(ldns_pkt_ancount(pkt), 2);
    assert_int_equal(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(pkt), 1)), 3600);
    ldns_pkt_free(pkt);
    dns_answer_clear(&res);
}

static void test_answer_special_ranges_removed(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "mixed.test", T_A);
    answer_header(&am, "mixed.test", T_A, 0, 3, 0);
    rr_a(&am, "mixed.test", "10.66.0.10", 60);
    rr_a(&am, "mixed.test", "192.0.2.30", 60);
    rr_a(&am, "mixed.test", "169.254.169.254", 60);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_PASS);
    assert_int_equal(res.n_addrs, 1);
    assert_int_equal(res.n_removed, 2);
    ldns_pkt *pkt = read_back(&res);
    assert_int_equal(ldns_pkt_ancount(pkt), 1);
    char *text = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(pkt), 0), 0));
    assert_string_equal(text, "192.0.2.30");
    free(text);
    ldns_pkt_free(pkt);
    dns_answer_clear(&res);
}

static void test_answer_only_special_addresses(void **state)
{
    static const char *const addrs[] = {"169.254.169.254",  "10.66.0.10",    "127.0.0.1",
                                        "::ffff:192.0.2.1", "fd00:ec2::254", "100.64.0.1"};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        struct msg qm, am;
        struct dns_answer res;
        int v6 = strchr(addrs[i], ':') != NULL;
        query(&qm, 0x4242, "mixed.test", v6 ? T_AAAA : T_A);
        answer_header(&am, "mixed.test", v6 ? T_AAAA : T_A, 0, 1, 0);
        rr_a(&am, "mixed.test", addrs[i], 60);
        if (process(policy, &qm, &am, 0, &res) != DNS_ANSWER_NO_ADDRESS)
            fail_msg("%s: status %d, want NO_ADDRESS", addrs[i], (int)res.status);
        assert_non_null(res.why);
        assert_int_equal(res.n_addrs, 0);
        dns_answer_clear(&res);
    }
}

static void test_answer_cname_to_denied_name(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "alias.test", T_A);
    answer_header(&am, "alias.test", T_A, 0, 2, 0);
    rr_cname(&am, "alias.test", "denied.test");
    rr_a(&am, "denied.test", "192.0.2.10", 60);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_DENY);
    assert_string_equal(res.cname_target, "denied.test");
    assert_int_equal(res.cname_decision.rule, 0);
    assert_string_equal(res.why, "off limits");
    assert_null(res.msg);
    dns_answer_clear(&res);
}

static void test_answer_cname_deep_chain_checked(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    /* alias.test -> www.allowed.test -> unlisted.test (default deny) */
    query(&qm, 0x4242, "alias.test", T_A);
    answer_header(&am, "alias.test", T_A, 0, 3, 0);
    rr_cname(&am, "alias.test", "www.allowed.test");
    rr_cname(&am, "www.allowed.test", "unlisted.test");
    rr_a(&am, "unlisted.test", "192.0.2.10", 60);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_DENY);
    assert_string_equal(res.cname_target, "unlisted.test");
    assert_int_equal(res.cname_decision.rule, -1);
    dns_answer_clear(&res);
}

static void test_answer_cname_to_allowed_name(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "alias.test", T_A);
    answer_header(&am, "alias.test", T_A, 0, 4, 0);
    rr_cname(&am, "alias.test", "cdn.example");
    rr_a(&am, "cdn.example", "192.0.2.44", 60);
    rr_cname(&am, "stray.test", "denied.test"); /* not on the chain: dropped */
    rr_a(&am, "denied.test", "192.0.2.99", 60); /* not on the chain: dropped */
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_PASS);
    assert_int_equal(res.n_addrs, 1);
    assert_string_equal(res.addrs[0].name, "alias.test");
    ldns_pkt *pkt = read_back(&res);
    assert_int_equal(ldns_pkt_ancount(pkt), 2);
    assert_int_equal(count_type(ldns_pkt_answer(pkt), LDNS_RR_TYPE_CNAME), 1);
    assert_int_equal(count_type(ldns_pkt_answer(pkt), LDNS_RR_TYPE_A), 1);
    ldns_pkt_free(pkt);
    dns_answer_clear(&res);
}

static void test_answer_cname_loop_ends(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "alias.test", T_A);
    answer_header(&am, "alias.test", T_A, 0, 2, 0);
    rr_cname(&am, "alias.test", "cdn.example");
    rr_cname(&am, "cdn.example", "alias.test");
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_PASS);
    assert_int_equal(res.n_addrs, 0);
    dns_answer_clear(&res);
}

static void test_answer_report_mode_cname(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "alias.test", T_A);
    answer_header(&am, "alias.test", T_A, 0, 2, 0);
    rr_cname(&am, "alias.test", "denied.test");
    rr_a(&am, "denied.test", "192.0.2.10", 60);
    assert_int_equal(process(report_policy, &qm, &am, 0, &res), DNS_ANSWER_PASS);
    assert_true(res.would_deny);
    assert_string_equal(res.cname_target, "denied.test");
    assert_int_equal(res.n_addrs, 1);
    dns_answer_clear(&res);
}

static void test_answer_for_another_question(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "www.allowed.test", T_A);
    answer_header(&am, "other.allowed.test", T_A, 0, 1, 0);
    rr_a(&am, "other.allowed.test", "192.0.2.10", 60);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_MISMATCH);
    dns_answer_clear(&res);
    answer_header(&am, "www.allowed.test", T_AAAA, 0, 0, 0); /* another type */
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_MISMATCH);
    dns_answer_clear(&res);
    header(&am, 0x4242, F_RD, 1, 0, 0, 0); /* QR clear: a query, not an answer */
    question(&am, "www.allowed.test", T_A);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_MISMATCH);
    dns_answer_clear(&res);
    /* the same name in other case is the same question */
    answer_header(&am, "WWW.ALLOWED.TEST", T_A, 0, 1, 0);
    rr_a(&am, "WWW.ALLOWED.TEST", "192.0.2.10", 60);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_PASS);
    dns_answer_clear(&res);
}

static void test_answer_truncated_and_failed(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "www.allowed.test", T_TXT);
    header(&am, 0x4242, F_QR | F_RD | F_TC | 0x0080, 1, 0, 0, 0);
    question(&am, "www.allowed.test", T_TXT);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_TRUNCATED);
    dns_answer_clear(&res);
    answer_header(&am, "www.allowed.test", T_TXT, DNS_RCODE_SERVFAIL, 0, 0);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_FAILED);
    assert_int_equal(res.rcode, DNS_RCODE_SERVFAIL);
    dns_answer_clear(&res);
    answer_header(&am, "www.allowed.test", T_TXT, DNS_RCODE_REFUSED, 0, 0);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_FAILED);
    dns_answer_clear(&res);
    answer_header(&am, "www.allowed.test", T_TXT, 0, 1, 0);
    put8(&am, 9); /* an answer record cut short */
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_FAILED);
    dns_answer_clear(&res);
}

static void test_answer_nxdomain_passes(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "nosuch.allowed.test", T_A);
    answer_header(&am, "nosuch.allowed.test", T_A, DNS_RCODE_NXDOMAIN, 0, 0);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_PASS);
    assert_int_equal(res.rcode, DNS_RCODE_NXDOMAIN);
    ldns_pkt *pkt = read_back(&res);
    assert_int_equal(ldns_pkt_get_rcode(pkt), LDNS_RCODE_NXDOMAIN);
    ldns_pkt_free(pkt);
    dns_answer_clear(&res);
}

static void test_answer_glue_removed_edns_kept(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "www.allowed.test", T_A);
    answer_header(&am, "www.allowed.test", T_A, 0, 1, 2);
    rr_a(&am, "www.allowed.test", "192.0.2.10", 60);
    rr_a(&am, "ns.elsewhere.test", "198.51.100.1", 60); /* glue for another name */
    opt(&am, 1232);
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_PASS);
    ldns_pkt *pkt = read_back(&res);
    assert_int_equal(ldns_pkt_arcount(pkt), 0); /* ldns counts the OPT apart */
    assert_true(ldns_pkt_edns(pkt));
    assert_int_equal(ldns_pkt_edns_udp_size(pkt), 1232);
    ldns_pkt_free(pkt);
    dns_answer_clear(&res);
}

/* SvcParams wire bytes: key, length, value. */
static void svc_param(struct msg *m, uint16_t key, const void *v, uint16_t n)
{
    put16(m, key);
    put16(m, n);
    put_bytes(m, v, n);
}

static void https_answer(struct msg *am, uint16_t type, bool mandatory_ech, const char *hint)
{
    struct msg rd = {.n = 0};
    uint8_t v4[4];
    static const uint8_t alpn[] = {2, 'h', '2'};
    static const uint8_t ech[] = {0x00, 0x08, 0xfe, 0x0d, 0x00, 0x04, 1, 2, 3, 4};
    put16(&rd, 1); /* SvcPriority: service mode */
    put8(&rd, 0);  /* TargetName "." */
    if (mandatory_ech) {
        static const uint8_t keys[] = {0, 1, 0, 5}; /* alpn, ech */
        svc_param(&rd, 0, keys, sizeof keys);
    }
    svc_param(&rd, 1, alpn, sizeof alpn);
    assert_int_equal(inet_pton(AF_INET, hint, v4), 1);
    svc_param(&rd, 4, v4, 4);
    svc_param(&rd, 5, ech, sizeof ech);
    answer_header(am, "svc.test", type, 0, 1, 0);
    rr(am, "svc.test", type, 300, rd.b, (uint16_t)rd.n);
}

/* The SvcParams of the first answer record, as presentation text. */
static char *params_text(const struct dns_answer *res)
{
    ldns_pkt *pkt = read_back(res);
    ldns_rr *r = ldns_rr_list_rr(ldns_pkt_answer(pkt), 0);
    assert_non_null(r);
    char *text = ldns_rr_rd_count(r) > 2 ? ldns_rdf2str(ldns_rr_rdf(r, 2)) : strdup("");
    ldns_pkt_free(pkt);
    return text;
}

static void test_answer_ech_removed(void **state)
{
    for (uint16_t type = T_SVCB; type <= T_HTTPS; type++) {
        struct msg qm, am;
        struct dns_answer res;
        query(&qm, 0x4242, "svc.test", type);
        https_answer(&am, type, false, "192.0.2.1");
        assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_PASS);
        assert_int_equal(res.n_ech, 1);
        char *text = params_text(&res);
        assert_null(strstr(text, "ech"));
        assert_non_null(strstr(text, "alpn=h2"));
        assert_non_null(strstr(text, "ipv4hint=192.0.2.1"));
        free(text);
        dns_answer_clear(&res);
    }
}

static void test_answer_ech_removed_from_mandatory(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "svc.test", T_HTTPS);
    https_answer(&am, T_HTTPS, true, "192.0.2.1");
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_PASS);
    char *text = params_text(&res);
    /* mandatory=alpn stays, ech gone from it and from the params */
    assert_non_null(strstr(text, "mandatory=alpn"));
    assert_null(strstr(text, "ech"));
    free(text);
    dns_answer_clear(&res);
}

static void test_answer_special_hint_removed(void **state)
{
    struct msg qm, am;
    struct dns_answer res;
    query(&qm, 0x4242, "svc.test", T_HTTPS);
    https_answer(&am, T_HTTPS, false, "169.254.169.254");
    assert_int_equal(process(policy, &qm, &am, 0, &res), DNS_ANSWER_PASS);
    assert_int_equal(res.n_removed, 1);
    char *text = params_text(&res);
    assert_null(strstr(text, "ipv4hint"));
    assert_non_null(strstr(text, "alpn=h2"));
    free(text);
    dns_answer_clear(&res);
}

static void test_answer_bad_svc_params_dropped(void **state)
{
    struct msg qm, am, rd = {.n = 0};
    struct dns_answer res;
    query(&qm, 0x4242, "svc.test", T_HTTPS);
    put16(&rd, 1);
    put8(&rd, 0);
    put16(&rd, 5);
    put16(&rd, 200); /* a value longer than the record */
    put8(&rd, 1);
    answer_header(&am, "svc.test", T_HTTPS, 0, 1, 0);
    rr(&am, "svc.test", T_HTTPS, 300, rd.b, (uint16_t)rd.n);
    process(policy, &qm, &am, 0, &res);
    /* ldns may refuse the record outright; either way no ECH reaches the client */
    if (res.status == DNS_ANSWER_PASS) {
        ldns_pkt *pkt = read_back(&res);
        assert_int_equal(ldns_pkt_ancount(pkt), 0);
        ldns_pkt_free(pkt);
    } else {
        assert_int_equal(res.status, DNS_ANSWER_FAILED);
    }
    dns_answer_clear(&res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_a),
        cmocka_unit_test(test_query_case_is_folded_for_the_policy),
        cmocka_unit_test(test_query_edns_sizes),
        cmocka_unit_test(test_query_not_answered),
        cmocka_unit_test(test_query_opcodes_not_implemented),
        cmocka_unit_test(test_query_malformed),
        cmocka_unit_test(test_query_refused_types_and_classes),
        cmocka_unit_test(test_query_served_types),
        cmocka_unit_test(test_query_name_caps),
        cmocka_unit_test(test_query_names_that_are_not_hosts),
        cmocka_unit_test(test_reply_nxdomain_echoes_the_question),
        cmocka_unit_test(test_reply_with_edns_carries_an_opt),
        cmocka_unit_test(test_reply_truncated),
        cmocka_unit_test(test_reply_formerr_without_question),
        cmocka_unit_test(test_answer_passes_and_reports_addresses),
        cmocka_unit_test(test_answer_special_ranges_removed),
        cmocka_unit_test(test_answer_only_special_addresses),
        cmocka_unit_test(test_answer_cname_to_denied_name),
        cmocka_unit_test(test_answer_cname_deep_chain_checked),
        cmocka_unit_test(test_answer_cname_to_allowed_name),
        cmocka_unit_test(test_answer_cname_loop_ends),
        cmocka_unit_test(test_answer_report_mode_cname),
        cmocka_unit_test(test_answer_for_another_question),
        cmocka_unit_test(test_answer_truncated_and_failed),
        cmocka_unit_test(test_answer_nxdomain_passes),
        cmocka_unit_test(test_answer_glue_removed_edns_kept),
        cmocka_unit_test(test_answer_ech_removed),
        cmocka_unit_test(test_answer_ech_removed_from_mandatory),
        cmocka_unit_test(test_answer_special_hint_removed),
        cmocka_unit_test(test_answer_bad_svc_params_dropped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
