/* wire: the DNS filter's message path, pure (no sockets, no clock).
 *
 * Questions and answers are parsed with ldns, which handles name
 * compression and every record type; this module adds what sluice needs on
 * top: the shape a query must have, the question as a canonical host for
 * the policy, refusals, and the checks on an upstream answer (question
 * match, CNAME chain, special-range addresses, ECH removal, TTL cap). Every
 * answer that passes is re-serialised from what was checked, so a client
 * never sees bytes sluice did not parse. Unit tests and the fuzzer drive
 * these functions directly. */
#ifndef SLUICE_DNS_WIRE_H
#define SLUICE_DNS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/learn.h"
#include "policy/host.h"
#include "policy/policy.h"

#define DNS_HEADER_LEN 12
#define DNS_UDP_DEFAULT 512    /* largest UDP answer for a client without EDNS */
#define DNS_UDP_MAX 4096       /* largest UDP answer sluice sends, whatever EDNS says */
#define DNS_EDNS_OWN_SIZE 1232 /* EDNS size sluice advertises in its own replies */
#define DNS_MSG_MAX 65535      /* a TCP message */
#define DNS_MAX_ADDRS 64       /* address records kept (and learned) per answer */
#define DNS_MAX_CHAIN 16       /* CNAME links followed */

enum dns_rcode {
    DNS_RCODE_NOERROR = 0,
    DNS_RCODE_FORMERR = 1,
    DNS_RCODE_SERVFAIL = 2,
    DNS_RCODE_NXDOMAIN = 3,
    DNS_RCODE_NOTIMP = 4,
    DNS_RCODE_REFUSED = 5,
};

/* Caps on question names (exfiltration shapes: long names, many labels). */
struct dns_limits {
    size_t max_name_len; /* bytes of the name as text, without the trailing dot */
    size_t max_labels;
};

enum dns_query_status {
    DNS_QUERY_OK,        /* one question to decide */
    DNS_QUERY_IGNORE,    /* shorter than a header, or a response: not answered */
    DNS_QUERY_MALFORMED, /* answered FORMERR */
    DNS_QUERY_NOTIMP,    /* an opcode other than QUERY: NOTIMP */
    DNS_QUERY_REFUSED,   /* well formed but not served: REFUSED */
};

/* Why a well-formed query was refused before the policy was asked. */
enum dns_refusal_cause {
    DNS_CAUSE_NONE,
    DNS_CAUSE_QTYPE,       /* ANY, zone transfers, NULL, types not served */
    DNS_CAUSE_QCLASS,      /* not IN */
    DNS_CAUSE_NAME_LENGTH, /* over max_name_len */
    DNS_CAUSE_LABELS,      /* over max_labels */
};

struct dns_query {
    uint16_t id;
    uint16_t qtype;
    uint16_t qclass;
    bool edns;
    uint16_t udp_size; /* largest UDP answer the client takes: 512..DNS_UDP_MAX */
    size_t labels;
    size_t name_len;
    /* The name as text, lower case, no trailing dot ("" for the root);
     * escaped the way ldns prints it when it holds odd bytes. */
    char name[HOST_TEXT_SIZE];
    char qtype_text[16]; /* "A", "HTTPS", "TYPE65280" */
    /* name canonicalised into a host name the policy can decide on; when
     * false the name is refused like a denied one (host_why says why). */
    bool host_ok;
    struct host host;
    const char *host_why;
    const char *why; /* MALFORMED / NOTIMP / REFUSED: what is wrong */
    enum dns_refusal_cause cause;
    void *pkt; /* the parsed ldns_pkt (question kept for replies); owned */
};

/* Parses a client's query. Returns the status; q is filled as far as the
 * message allowed and must be released with dns_query_clear() whatever the
 * status. A query must be: QR clear, one question, no answer or authority
 * records, at most one additional record and that one an OPT. */
enum dns_query_status dns_query_parse(const uint8_t *msg, size_t len,
                                      const struct dns_limits *limits, struct dns_query *q);
void dns_query_clear(struct dns_query *q);

/* The question as a policy destination (DEST_DNS). Only when q->host_ok. */
void dns_query_dest(const struct dns_query *q, struct dest *d);

/* A reply with rcode and no records (a refusal, FORMERR, SERVFAIL, or with
 * tc the truncated form of an answer too big for UDP): the query's id, RD
 * and CD, QR and RA set, the question echoed when it was parsed (else a
 * bare header built from msg), an OPT when the query had one. Writes into
 * out; returns 0, or -1 when nothing could be built (msg shorter than a
 * header) or out is too small. */
int dns_reply_build(const struct dns_query *q, const uint8_t *msg, size_t len, int rcode, bool tc,
                    uint8_t *out, size_t out_size, size_t *out_len);

enum dns_answer_status {
    DNS_ANSWER_PASS,       /* send msg/len to the client */
    DNS_ANSWER_TRUNCATED,  /* TC set: ask again over TCP */
    DNS_ANSWER_DENY,       /* a CNAME in the chain names a denied host */
    DNS_ANSWER_NO_ADDRESS, /* every address was in a refused range */
    DNS_ANSWER_MISMATCH,   /* not an answer to this question: ignore it */
    DNS_ANSWER_FAILED,     /* unparseable, or SERVFAIL/REFUSED/...: next upstream */
};

struct dns_answer_opts {
    uint32_t ttl_cap; /* A/AAAA TTLs above it are lowered to it (0: unchanged) */
};

struct dns_answer {
    enum dns_answer_status status;
    int rcode;       /* the upstream's */
    const char *why; /* static text, or a rule's reason (lives with the policy) */
    /* DENY, or a report-mode would-deny: the CNAME target and its decision. */
    char cname_target[HOST_TEXT_SIZE];
    struct decision cname_decision;
    bool would_deny;
    /* Addresses kept in the answer, in answer order (ttl as sent). */
    struct learned addrs[DNS_MAX_ADDRS];
    size_t n_addrs;
    size_t n_removed; /* address records (and SVCB hints) removed by the range check */
    size_t n_ech;     /* ECH parameters removed */
    uint8_t *msg;     /* PASS: the answer to send (id as upstream sent it) */
    size_t len;
};

/* Checks and rewrites an upstream answer to q, which p allowed with qdec.
 * res->msg must be released with dns_answer_clear(). */
void dns_answer_process(const struct policy *p, const struct dns_query *q,
                        const struct decision *qdec, const uint8_t *msg, size_t len,
                        const struct dns_answer_opts *opts, struct dns_answer *res);
void dns_answer_clear(struct dns_answer *res);

/* "A", "AAAA", ... or "TYPE%u". */
void dns_type_name(uint16_t qtype, char *buf, size_t size);

#endif
