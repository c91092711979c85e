/* wire: parse queries, build refusals, check and rewrite upstream answers.
 *
 * ldns does the wire format (compression, record layouts, EDNS); this file
 * holds sluice's rules about which messages are served and what an answer
 * may carry to the workload. */
#include "dns/wire.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#define SVC_KEY_MANDATORY 0
#define SVC_KEY_IPV4HINT 4
#define SVC_KEY_ECH 5
#define SVC_KEY_IPV6HINT 6
#define SVCB_PARAMS_RDF 2 /* SvcPriority, TargetName, SvcParams */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void dns_type_name(uint16_t qtype, char *buf, size_t size)
{
    static const struct {
        uint16_t type;
        const char *name;
    } names[] = {
        {LDNS_RR_TYPE_A, "A"},         {LDNS_RR_TYPE_NS, "NS"},
        {LDNS_RR_TYPE_CNAME, "CNAME"}, {LDNS_RR_TYPE_SOA, "SOA"},
        {LDNS_RR_TYPE_NULL, "NULL"},   {LDNS_RR_TYPE_PTR, "PTR"},
        {LDNS_RR_TYPE_MX, "MX"},       {LDNS_RR_TYPE_TXT, "TXT"},
        {LDNS_RR_TYPE_AAAA, "AAAA"},   {LDNS_RR_TYPE_SRV, "SRV"},
        {LDNS_RR_TYPE_NAPTR, "NAPTR"}, {LDNS_RR_TYPE_DS, "DS"},
        {LDNS_RR_TYPE_SSHFP, "SSHFP"}, {LDNS_RR_TYPE_DNSKEY, "DNSKEY"},
        {LDNS_RR_TYPE_TLSA, "TLSA"},   {LDNS_RR_TYPE_SVCB, "SVCB"},
        {LDNS_RR_TYPE_HTTPS, "HTTPS"}, {LDNS_RR_TYPE_IXFR, "IXFR"},
        {LDNS_RR_TYPE_AXFR, "AXFR"},   {LDNS_RR_TYPE_ANY, "ANY"},
        {LDNS_RR_TYPE_CAA, "CAA"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].type == qtype) {
            snprintf(buf, size, "%s", names[i].name);
            return;
        }
    }
    snprintf(buf, size, "TYPE%u", (unsigned)qtype);
}

/* Ordinary data types are forwarded for allowed names; meta types (ANY,
 * zone transfers) and the types tunnelling tools favour (NULL, private
 * use) are not. */
static bool qtype_served(uint16_t t)
{
    switch (t) {
    case LDNS_RR_TYPE_A:
    case LDNS_RR_TYPE_NS:
    case LDNS_RR_TYPE_CNAME:
    case LDNS_RR_TYPE_SOA:
    case LDNS_RR_TYPE_PTR:
    case LDNS_RR_TYPE_MX:
    case LDNS_RR_TYPE_TXT:
    case LDNS_RR_TYPE_AAAA:
    case LDNS_RR_TYPE_SRV:
    case LDNS_RR_TYPE_NAPTR:
    case LDNS_RR_TYPE_DS:
    case LDNS_RR_TYPE_SSHFP:
    case LDNS_RR_TYPE_DNSKEY:
    case LDNS_RR_TYPE_TLSA:
    case LDNS_RR_TYPE_SVCB:
    case LDNS_RR_TYPE_HTTPS:
    case LDNS_RR_TYPE_CAA:
        return true;
    default:
        return false;
    }
}

/* ldns prints "Example.COM." (escaping odd bytes); the policy wants the
 * name lower case without the trailing dot. */
static size_t dname_text(const ldns_rdf *rdf, char *out, size_t size)
{
    char *s = ldns_rdf2str(rdf);
    size_t n = 0;
    out[0] = '\0';
    if (s == NULL)
        return 0;
    n = strlen(s);
    if (n > 0 && s[n - 1] == '.')
        n--;
    for (size_t i = 0; i < n && i + 1 < size; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[n < size ? n : size - 1] = '\0';
    free(s);
    return n;
}

static const ldns_rr *question_of(const ldns_pkt *pkt)
{
    const ldns_rr_list *qs = ldns_pkt_question(pkt);
    return qs && ldns_rr_list_rr_count(qs) == 1 ? ldns_rr_list_rr(qs, 0) : NULL;
}

static enum dns_query_status refuse(struct dns_query *q, enum dns_refusal_cause cause,
                                    const char *why)
{
    q->cause = cause;
    q->why = why;
    return DNS_QUERY_REFUSED;
}

static enum dns_query_status malformed(struct dns_query *q, const char *why)
{
    q->why = why;
    return DNS_QUERY_MALFORMED;
}

/* The header alone says whether a message is a query we could answer and
 * has the shape of one; ldns then parses the rest. */
static enum dns_query_status check_header(const uint8_t *msg, size_t len, struct dns_query *q)
{
    if (len < DNS_HEADER_LEN)
        return DNS_QUERY_IGNORE;
    q->id = get16(msg);
    if (msg[2] & 0x80) /* a response: answering it could start a loop */
        return DNS_QUERY_IGNORE;
    if ((msg[2] >> 3 & 0x0f) != LDNS_PACKET_QUERY) {
        q->why = "only standard queries (opcode QUERY) are served";
        return DNS_QUERY_NOTIMP;
    }
    if (get16(msg + 4) != 1)
        return malformed(q, "a query must have exactly one question");
    if (get16(msg + 6) != 0 || get16(msg + 8) != 0)
        return malformed(q, "a query must not carry answer or authority records");
    if (get16(msg + 10) > 1)
        return malformed(q, "a query may carry one additional record (OPT) at most");
    return DNS_QUERY_OK;
}

static enum dns_query_status check_question(struct dns_query *q, const ldns_rr *question,
                                            const struct dns_limits *limits)
{
    const ldns_rdf *owner = ldns_rr_owner(question);
    q->qtype = (uint16_t)ldns_rr_get_type(question);
    q->qclass = (uint16_t)ldns_rr_get_class(question);
    dns_type_name(q->qtype, q->qtype_text, sizeof q->qtype_text);
    q->name_len = dname_text(owner, q->name, sizeof q->name);
    q->labels = ldns_dname_label_count(owner);
    if (q->qclass != LDNS_RR_CLASS_IN)
        return refuse(q, DNS_CAUSE_QCLASS, "only class IN is served");
    if (q->qtype == LDNS_RR_TYPE_ANY)
        return refuse(q, DNS_CAUSE_QTYPE, "ANY queries are refused");
    if (!qtype_served(q->qtype))
        return refuse(q, DNS_CAUSE_QTYPE, "this query type is not served");
    if (q->name_len > limits->max_name_len)
        return refuse(q, DNS_CAUSE_NAME_LENGTH, "the name is longer than the filter allows");
    if (q->labels > limits->max_labels)
        return refuse(q, DNS_CAUSE_LABELS, "the name has more labels than the filter allows");
    const char *why = NULL;
    if (q->name_len == 0) {
        q->host_why = "the root is not a host name";
    } else if (q->name_len >= sizeof q->name ||
               host_canonicalise(q->name, q->name_len, &q->host, &why) < 0) {
        q->host_why = why ? why : "not a host name";
    } else if (q->host.kind != HOST_KIND_NAME) {
        q->host_why = "an IP address is not a name to look up";
    } else {
        q->host_ok = true;
    }
    return DNS_QUERY_OK;
}

enum dns_query_status dns_query_parse(const uint8_t *msg, size_t len,
                                      const struct dns_limits *limits, struct dns_query *q)
{
    memset(q, 0, sizeof *q);
    q->udp_size = DNS_UDP_DEFAULT;
    enum dns_query_status st = check_header(msg, len, q);
    if (st != DNS_QUERY_OK)
        return st;
    ldns_pkt *pkt = NULL;
    if (ldns_wire2pkt(&pkt, msg, len) != LDNS_STATUS_OK || pkt == NULL)
        return malformed(q, "the message cannot be parsed");
    q->pkt = pkt;
    /* ldns takes the OPT out of the additional section; any other record
     * there is still counted. */
    if (get16(msg + 10) == 1 && (!ldns_pkt_edns(pkt) || ldns_pkt_arcount(pkt) != 0))
        return malformed(q, "the additional record of a query must be an OPT");
    const ldns_rr *question = question_of(pkt);
    if (question == NULL)
        return malformed(q, "a query must have exactly one question");
    if (ldns_pkt_edns(pkt)) {
        uint16_t size = ldns_pkt_edns_udp_size(pkt);
        q->edns = true;
        q->udp_size = size < DNS_UDP_DEFAULT ? DNS_UDP_DEFAULT
                      : size > DNS_UDP_MAX   ? DNS_UDP_MAX
                                             : size;
    }
    return check_question(q, question, limits);
}

void dns_query_clear(struct dns_query *q)
{
    if (q->pkt)
        ldns_pkt_free(q->pkt);
    q->pkt = NULL;
}

void dns_query_dest(const struct dns_query *q, struct dest *d)
{
    memset(d, 0, sizeof *d);
    d->kind = DEST_DNS;
    d->host = q->host;
}

/* Without a parsed question: the header, turned into a reply. */
static int bare_reply(const uint8_t *msg, size_t len, int rcode, uint8_t *out, size_t out_size,
                      size_t *out_len)
{
    if (len < DNS_HEADER_LEN || out_size < DNS_HEADER_LEN)
        return -1;
    memset(out, 0, DNS_HEADER_LEN);
    out[0] = msg[0];
    out[1] = msg[1];
    out[2] = (uint8_t)(0x80 | (msg[2] & 0x79)); /* QR, the opcode, RD */
    out[3] = (uint8_t)(0x80 | (rcode & 0x0f));  /* RA */
    *out_len = DNS_HEADER_LEN;
    return 0;
}

static int copy_wire(ldns_pkt *r, uint8_t *out, size_t out_size, size_t *out_len)
{
    uint8_t *wire = NULL;
    size_t n = 0;
    int rc = -1;
    if (ldns_pkt2wire(&wire, r, &n) == LDNS_STATUS_OK && n <= out_size) {
        memcpy(out, wire, n);
        *out_len = n;
        rc = 0;
    }
    free(wire);
    return rc;
}

int dns_reply_build(const struct dns_query *q, const uint8_t *msg, size_t len, int rcode, bool tc,
                    uint8_t *out, size_t out_size, size_t *out_len)
{
    const ldns_pkt *qp = q ? q->pkt : NULL;
    const ldns_rr *question = qp ? question_of(qp) : NULL;
    if (question == NULL)
        return bare_reply(msg, len, rcode, out, out_size, out_len);
    ldns_pkt *r = ldns_pkt_new();
    ldns_rr *copy = ldns_rr_clone(question);
    if (r == NULL || copy == NULL) {
        ldns_rr_free(copy);
        ldns_pkt_free(r);
        return -1;
    }
    ldns_pkt_set_id(r, q->id);
    ldns_pkt_set_qr(r, true);
    ldns_pkt_set_opcode(r, LDNS_PACKET_QUERY);
    ldns_pkt_set_rd(r, ldns_pkt_rd(qp));
    ldns_pkt_set_cd(r, ldns_pkt_cd(qp));
    ldns_pkt_set_ra(r, true);
    ldns_pkt_set_tc(r, tc);
    ldns_pkt_set_rcode(r, (uint8_t)rcode);
    ldns_pkt_push_rr(r, LDNS_SECTION_QUESTION, copy);
    if (q->edns) {
        ldns_pkt_set_edns_udp_size(r, DNS_EDNS_OWN_SIZE);
        ldns_pkt_set_edns_do(r, ldns_pkt_edns_do(qp));
    }
    int rc = copy_wire(r, out, out_size, out_len);
    ldns_pkt_free(r);
    return rc;
}

/* ---- answers ---------------------------------------------------------------- */

struct answer_ctx {
    const struct policy *p;
    const struct dns_query *q;
    const struct decision *qdec;
    struct dest dest;
    const struct dns_answer_opts *opts;
    struct dns_answer *res;
    ldns_rdf *chain[DNS_MAX_CHAIN + 1]; /* qname, then each CNAME target */
    size_t n_chain;
    size_t addrs_seen; /* address records on the chain, before the range check */
};

static bool on_chain(const struct answer_ctx *c, const ldns_rdf *name)
{
    for (size_t i = 0; i < c->n_chain; i++)
        if (ldns_dname_compare(c->chain[i], name) == 0)
            return true;
    return false;
}

static const ldns_rr *find_cname(const ldns_rr_list *answers, const ldns_rdf *owner)
{
    for (size_t i = 0; i < ldns_rr_list_rr_count(answers); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(answers, i);
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME && ldns_rr_rd_count(rr) == 1 &&
            ldns_dname_compare(ldns_rr_owner(rr), owner) == 0)
            return rr;
    }
    return NULL;
}

/* Decides a CNAME target as if it were asked for: the recursive upstream
 * resolved it for the client, who will use its addresses without asking. */
static bool cname_allowed(struct answer_ctx *c, const ldns_rdf *target)
{
    struct dns_answer *res = c->res;
    struct dest d = {.kind = DEST_DNS};
    const char *why = NULL;
    size_t n = dname_text(target, res->cname_target, sizeof res->cname_target);
    if (n == 0 || n >= sizeof res->cname_target ||
        host_canonicalise(res->cname_target, n, &d.host, &why) < 0 ||
        d.host.kind != HOST_KIND_NAME) {
        res->why = "a CNAME in the answer is not a host name";
        return false;
    }
    memcpy(res->cname_target, d.host.text, d.host.len + 1);
    policy_decide(c->p, &d, &res->cname_decision);
    if (res->cname_decision.verdict == VERDICT_DENY) {
        res->why = res->cname_decision.reason ? res->cname_decision.reason
                                              : "a CNAME in the answer names a denied host";
        return false;
    }
    if (res->cname_decision.would_deny)
        res->would_deny = true;
    return true;
}

/* Follows the CNAME links from the question name, deciding every target.
 * Returns 0, -1 when a target is denied, -2 when out of memory. */
static int follow_chain(struct answer_ctx *c, const ldns_rr_list *answers)
{
    ldns_rdf *qname = ldns_rdf_clone(ldns_rr_owner(question_of(c->q->pkt)));
    if (qname == NULL)
        return -2;
    c->chain[c->n_chain++] = qname;
    while (c->n_chain <= DNS_MAX_CHAIN) {
        const ldns_rr *cname = find_cname(answers, c->chain[c->n_chain - 1]);
        if (cname == NULL)
            break;
        const ldns_rdf *target = ldns_rr_rdf(cname, 0);
        if (on_chain(c, target)) /* a loop: nothing new to decide */
            break;
        if (!cname_allowed(c, target))
            return -1;
        ldns_rdf *copy = ldns_rdf_clone(target);
        if (copy == NULL)
            return -2;
        c->chain[c->n_chain++] = copy;
    }
    return 0;
}

static bool address_permitted(struct answer_ctx *c, int family, const uint8_t *bytes,
                              const char **why)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, bytes, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, bytes, 16);
    }
    return policy_address_permitted(c->p, &c->dest, c->qdec, (const struct sockaddr *)&ss, why);
}

/* An A/AAAA record on the chain: kept (and reported) when its address may
 * be reached, removed otherwise. */
static bool keep_address(struct answer_ctx *c, ldns_rr *rr)
{
    struct dns_answer *res = c->res;
    const ldns_rdf *rd = ldns_rr_rd_count(rr) == 1 ? ldns_rr_rdf(rr, 0) : NULL;
    int family = ldns_rr_get_type(rr) == LDNS_RR_TYPE_A ? AF_INET : AF_INET6;
    size_t want = family == AF_INET ? 4 : 16;
    const char *why = NULL;
    if (rd == NULL || ldns_rdf_size(rd) != want)
        return false;
    c->addrs_seen++;
    if (!address_permitted(c, family, ldns_rdf_data(rd), &why)) {
        res->n_removed++;
        if (res->why == NULL)
            res->why = why;
        return false;
    }
    if (res->n_addrs >= DNS_MAX_ADDRS)
        return false;
    if (c->opts && c->opts->ttl_cap && ldns_rr_ttl(rr) > c->opts->ttl_cap)
        ldns_rr_set_ttl(rr, c->opts->ttl_cap);
    struct learned *l = &res->addrs[res->n_addrs++];
    memset(l, 0, sizeof *l);
    l->family = family;
    memcpy(l->addr, ldns_rdf_data(rd), want);
    l->ttl = ldns_rr_ttl(rr);
    memcpy(l->name, c->q->host.text, c->q->host.len + 1);
    return true;
}

/* Whether every address in an ipv4hint/ipv6hint value may be reached. */
static bool hints_permitted(struct answer_ctx *c, uint16_t key, const uint8_t *v, size_t n)
{
    int family = key == SVC_KEY_IPV4HINT ? AF_INET : AF_INET6;
    size_t step = family == AF_INET ? 4 : 16;
    if (n == 0 || n % step != 0)
        return false;
    for (size_t off = 0; off < n; off += step)
        if (!address_permitted(c, family, v + off, NULL))
            return false;
    return true;
}

/* Which keys of a SvcParams blob to drop: ech always, so the TLS server
 * name stays visible to the proxy; address hints that point where the
 * workload may not go. Returns -1 when the blob is not well formed. */
static int svc_keys_to_drop(struct answer_ctx *c, const uint8_t *d, size_t n, bool *drop_v4,
                            bool *drop_v6, bool *drop_ech)
{
    for (size_t off = 0; off < n;) {
        if (n - off < 4 || n - off - 4 < get16(d + off + 2))
            return -1;
        uint16_t key = get16(d + off), vlen = get16(d + off + 2);
        const uint8_t *v = d + off + 4;
        if (key == SVC_KEY_ECH)
            *drop_ech = true;
        else if (key == SVC_KEY_IPV4HINT && !hints_permitted(c, key, v, vlen))
            *drop_v4 = true;
        else if (key == SVC_KEY_IPV6HINT && !hints_permitted(c, key, v, vlen))
            *drop_v6 = true;
        off += 4u + vlen;
    }
    return 0;
}

static bool dropped(uint16_t key, bool v4, bool v6, bool ech)
{
    return (key == SVC_KEY_IPV4HINT && v4) || (key == SVC_KEY_IPV6HINT && v6) ||
           (key == SVC_KEY_ECH && ech);
}

/* Copies the params without the dropped keys; a "mandatory" list loses
 * them too, else clients would have to discard the record. */
static size_t svc_rewrite(const uint8_t *d, size_t n, uint8_t *out, bool v4, bool v6, bool ech)
{
    size_t w = 0;
    for (size_t off = 0; off < n;) {
        uint16_t key = get16(d + off), vlen = get16(d + off + 2);
        const uint8_t *v = d + off + 4;
        off += 4u + vlen;
        if (dropped(key, v4, v6, ech))
            continue;
        if (key != SVC_KEY_MANDATORY) {
            memcpy(out + w, d + off - 4 - vlen, 4u + vlen);
            w += 4u + vlen;
            continue;
        }
        size_t start = w, kept = 0;
        w += 4;
        for (size_t i = 0; i + 1 < vlen; i += 2) {
            if (dropped(get16(v + i), v4, v6, ech))
                continue;
            memcpy(out + w, v + i, 2);
            w += 2;
            kept += 2;
        }
        if (kept == 0) {
            w = start;
            continue;
        }
        put16(out + start, SVC_KEY_MANDATORY);
        put16(out + start + 2, (uint16_t)kept);
    }
    return w;
}

/* HTTPS/SVCB: strip ECH and unreachable hints. Returns false when the
 * record is not well formed and must go. */
static bool clean_svcb(struct answer_ctx *c, ldns_rr *rr)
{
    if (ldns_rr_rd_count(rr) <= SVCB_PARAMS_RDF)
        return true; /* no params */
    ldns_rdf *params = ldns_rr_rdf(rr, SVCB_PARAMS_RDF);
    const uint8_t *d = ldns_rdf_data(params);
    size_t n = ldns_rdf_size(params);
    bool v4 = false, v6 = false, ech = false;
    if (svc_keys_to_drop(c, d, n, &v4, &v6, &ech) < 0)
        return false;
    if (!v4 && !v6 && !ech)
        return true;
    c->res->n_ech += ech;
    c->res->n_removed += (size_t)v4 + (size_t)v6;
    uint8_t *out = malloc(n);
    if (out == NULL)
        return false;
    size_t w = svc_rewrite(d, n, out, v4, v6, ech);
    if (w == 0) {
        ldns_rdf_deep_free(ldns_rr_pop_rdf(rr));
    } else {
        ldns_rdf *fresh = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_SVCPARAMS, w, out);
        if (fresh == NULL) {
            free(out);
            return false;
        }
        ldns_rdf_deep_free(ldns_rr_set_rdf(rr, fresh, SVCB_PARAMS_RDF));
    }
    free(out);
    return true;
}

/* One record of the answer section: whether it stays. */
static bool keep_answer_rr(struct answer_ctx *c, ldns_rr *rr)
{
    ldns_rr_type t = ldns_rr_get_type(rr);
    if (t == LDNS_RR_TYPE_DNAME)
        return true; /* the CNAME it synthesises is what is checked */
    if (!on_chain(c, ldns_rr_owner(rr)))
        return false; /* about some other name: not the client's business */
    if (t == LDNS_RR_TYPE_A || t == LDNS_RR_TYPE_AAAA)
        return keep_address(c, rr);
    if (t == LDNS_RR_TYPE_HTTPS || t == LDNS_RR_TYPE_SVCB)
        return clean_svcb(c, rr);
    return true;
}

/* Filters a section in place; returns the records kept. */
static size_t filter_section(struct answer_ctx *c, ldns_pkt *pkt, ldns_pkt_section section)
{
    ldns_rr_list *old = section == LDNS_SECTION_ANSWER      ? ldns_pkt_answer(pkt)
                        : section == LDNS_SECTION_AUTHORITY ? ldns_pkt_authority(pkt)
                                                            : ldns_pkt_additional(pkt);
    ldns_rr_list *kept = ldns_rr_list_new();
    if (kept == NULL)
        return (size_t)-1;
    for (size_t i = 0; old && i < ldns_rr_list_rr_count(old); i++) {
        ldns_rr *rr = ldns_rr_list_rr(old, i);
        ldns_rr_type t = ldns_rr_get_type(rr);
        bool keep;
        if (section == LDNS_SECTION_ANSWER)
            keep = keep_answer_rr(c, rr);
        else if (section == LDNS_SECTION_AUTHORITY)
            keep = t != LDNS_RR_TYPE_A && t != LDNS_RR_TYPE_AAAA;
        else
            keep = false; /* glue addresses of other names: never needed by a stub */
        if (keep)
            ldns_rr_list_push_rr(kept, rr);
        else
            ldns_rr_free(rr);
    }
    ldns_rr_list_free(old);
    size_t n = ldns_rr_list_rr_count(kept);
    if (section == LDNS_SECTION_ANSWER) {
        ldns_pkt_set_answer(pkt, kept);
        ldns_pkt_set_ancount(pkt, (uint16_t)n);
    } else if (section == LDNS_SECTION_AUTHORITY) {
        ldns_pkt_set_authority(pkt, kept);
        ldns_pkt_set_nscount(pkt, (uint16_t)n);
    } else {
        ldns_pkt_set_additional(pkt, kept);
        ldns_pkt_set_arcount(pkt, (uint16_t)n);
    }
    return n;
}

static bool same_question(const ldns_pkt *pkt, const struct dns_query *q)
{
    const ldns_rr *a = question_of(pkt), *b = question_of(q->pkt);
    return a && b && ldns_rr_get_type(a) == ldns_rr_get_type(b) &&
           ldns_rr_get_class(a) == ldns_rr_get_class(b) &&
           ldns_dname_compare(ldns_rr_owner(a), ldns_rr_owner(b)) == 0;
}

static enum dns_answer_status settle(struct dns_answer *res, enum dns_answer_status st,
                                     const char *why)
{
    res->status = st;
    if (why)
        res->why = why;
    return st;
}

/* The checks in order; pkt is rewritten in place when they pass. */
static enum dns_answer_status check_answer(struct answer_ctx *c, ldns_pkt *pkt)
{
    struct dns_answer *res = c->res;
    if (!ldns_pkt_qr(pkt) || ldns_pkt_get_opcode(pkt) != LDNS_PACKET_QUERY ||
        !same_question(pkt, c->q))
        return settle(res, DNS_ANSWER_MISMATCH, "the answer is for another question");
    res->rcode = ldns_pkt_get_rcode(pkt);
    if (ldns_pkt_tc(pkt))
        return settle(res, DNS_ANSWER_TRUNCATED, "the answer was truncated");
    if (res->rcode != LDNS_RCODE_NOERROR && res->rcode != LDNS_RCODE_NXDOMAIN)
        return settle(res, DNS_ANSWER_FAILED, "the upstream answered with an error");
    int chain = follow_chain(c, ldns_pkt_answer(pkt));
    if (chain == -1)
        return settle(res, DNS_ANSWER_DENY, NULL);
    if (chain < 0)
        return settle(res, DNS_ANSWER_FAILED, "out of memory");
    if (filter_section(c, pkt, LDNS_SECTION_ANSWER) == (size_t)-1 ||
        filter_section(c, pkt, LDNS_SECTION_AUTHORITY) == (size_t)-1 ||
        filter_section(c, pkt, LDNS_SECTION_ADDITIONAL) == (size_t)-1)
        return settle(res, DNS_ANSWER_FAILED, "out of memory");
    if (c->addrs_seen > 0 && res->n_addrs == 0)
        return settle(res, DNS_ANSWER_NO_ADDRESS, NULL);
    if (ldns_pkt2wire(&res->msg, pkt, &res->len) != LDNS_STATUS_OK || res->len > DNS_MSG_MAX) {
        free(res->msg);
        res->msg = NULL;
        return settle(res, DNS_ANSWER_FAILED, "the answer could not be rebuilt");
    }
    return settle(res, DNS_ANSWER_PASS, NULL);
}

void dns_answer_process(const struct policy *p, const struct dns_query *q,
                        const struct decision *qdec, const uint8_t *msg, size_t len,
                        const struct dns_answer_opts *opts, struct dns_answer *res)
{
    memset(res, 0, sizeof *res);
    struct answer_ctx c = {.p = p, .q = q, .qdec = qdec, .opts = opts, .res = res};
    dns_query_dest(q, &c.dest);
    ldns_pkt *pkt = NULL;
    if (q->pkt == NULL || !q->host_ok) {
        settle(res, DNS_ANSWER_MISMATCH, "no question to answer");
        return;
    }
    if (ldns_wire2pkt(&pkt, msg, len) != LDNS_STATUS_OK || pkt == NULL) {
        settle(res, DNS_ANSWER_FAILED, "the upstream answer cannot be parsed");
        return;
    }
    check_answer(&c, pkt);
    for (size_t i = 0; i < c.n_chain; i++)
        ldns_rdf_deep_free(c.chain[i]);
    ldns_pkt_free(pkt);
}

void dns_answer_clear(struct dns_answer *res)
{
    free(res->msg);
    res->msg = NULL;
    res->len = 0;
}
