/* metrics: process-wide counters, written by every worker with relaxed
 * atomics and rendered by the admin API as Prometheus text. */
#ifndef SLUICE_CORE_METRICS_H
#define SLUICE_CORE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#define METRICS_MAX_RULES 256 /* per-rule counters beyond this go to "other" */
#define METRICS_LATENCY_BUCKETS 12

enum metrics_kind {
    METRICS_KIND_HTTP,
    METRICS_KIND_CONNECT,
    METRICS_KIND_DNS,
    METRICS_KIND_TLS,
    METRICS_KIND_TRANSPARENT,
    METRICS_KIND_COUNT,
};

enum metrics_outcome {
    METRICS_ALLOW,
    METRICS_DENY,
    METRICS_WOULD_DENY, /* report mode */
    METRICS_OUTCOME_COUNT,
};

enum metrics_error {
    METRICS_ERR_BAD_REQUEST,  /* 400/414/431 answered */
    METRICS_ERR_UPSTREAM_502, /* refused, unreachable, DNS failure */
    METRICS_ERR_UPSTREAM_504, /* timeout */
    METRICS_ERR_LIMIT,        /* 429 / 503 for connection limits */
    METRICS_ERR_HEADER_TIMEOUT,
    METRICS_ERR_COUNT,
};

/* DNS filter (src/dns): queries by type and by what became of them. */
enum metrics_dns_qtype {
    METRICS_DNS_A,
    METRICS_DNS_AAAA,
    METRICS_DNS_CNAME,
    METRICS_DNS_HTTPS,
    METRICS_DNS_SVCB,
    METRICS_DNS_MX,
    METRICS_DNS_TXT,
    METRICS_DNS_SRV,
    METRICS_DNS_PTR,
    METRICS_DNS_ANY,
    METRICS_DNS_OTHER, /* every other type, and queries too broken to have one */
    METRICS_DNS_QTYPE_COUNT,
};

enum metrics_dns_outcome {
    METRICS_DNS_ALLOW,        /* answered from an upstream */
    METRICS_DNS_DENY,         /* the policy, a CNAME target or the address check refused it */
    METRICS_DNS_WOULD_DENY,   /* report mode: answered, but the policy said deny */
    METRICS_DNS_REFUSED,      /* not served: ANY, other types/classes/opcodes, name caps */
    METRICS_DNS_RATE_LIMITED, /* over the client's query rate */
    METRICS_DNS_MALFORMED,    /* FORMERR, or not a query at all */
    METRICS_DNS_SERVFAIL,     /* no usable upstream answer */
    METRICS_DNS_OUTCOME_COUNT,
};

enum metrics_dns_upstream_error {
    METRICS_DNS_UP_TIMEOUT,     /* no answer within the per-try timeout */
    METRICS_DNS_UP_UNREACHABLE, /* ICMP unreachable, TCP refused or reset */
    METRICS_DNS_UP_RCODE,       /* SERVFAIL, REFUSED, NOTIMP, FORMERR from the upstream */
    METRICS_DNS_UP_BAD_ANSWER,  /* unparseable, or truncated over TCP */
    METRICS_DNS_UP_ERROR_COUNT,
};

enum metrics_dns_limit {
    METRICS_DNS_LIMIT_NAME_LENGTH,
    METRICS_DNS_LIMIT_LABELS,
    METRICS_DNS_LIMIT_COUNT,
};

struct metrics_dns {
    _Atomic uint64_t queries[METRICS_DNS_QTYPE_COUNT][METRICS_DNS_OUTCOME_COUNT];
    _Atomic uint64_t upstream_latency_bucket[METRICS_LATENCY_BUCKETS]; /* cumulative le */
    _Atomic uint64_t upstream_latency_count;
    _Atomic uint64_t upstream_latency_sum_us;
    _Atomic uint64_t upstream_errors[METRICS_DNS_UP_ERROR_COUNT];
    _Atomic uint64_t tcp_fallbacks;   /* truncated UDP answers asked again over TCP */
    _Atomic uint64_t rate_limited;    /* queries refused for the client's rate */
    _Atomic uint64_t malformed;       /* queries answered FORMERR or dropped as not queries */
    _Atomic uint64_t limit_refused[METRICS_DNS_LIMIT_COUNT];
    _Atomic uint64_t addresses_removed; /* answer addresses in refused ranges */
    _Atomic uint64_t ech_removed;       /* ECH parameters taken out of HTTPS/SVCB */
    _Atomic uint64_t learned;           /* addresses published to the learn sink */
    _Atomic uint64_t learn_failures;    /* answers withheld because the sink failed */
};

struct metrics {
    _Atomic uint64_t decisions[METRICS_KIND_COUNT][METRICS_OUTCOME_COUNT];
    /* [0] is the default, [i + 1] rule i, [METRICS_MAX_RULES + 1] the rest. */
    _Atomic uint64_t rule_hits[METRICS_MAX_RULES + 2];
    _Atomic uint64_t errors[METRICS_ERR_COUNT];
    _Atomic uint64_t bytes_up;   /* client to upstream */
    _Atomic uint64_t bytes_down; /* upstream to client */
    _Atomic uint64_t connections_total;
    _Atomic int64_t connections_active;
    _Atomic int64_t tunnels_active;
    _Atomic uint64_t requests_total;
    _Atomic uint64_t resolver_latency_bucket[METRICS_LATENCY_BUCKETS]; /* cumulative le */
    _Atomic uint64_t resolver_latency_count;
    _Atomic uint64_t resolver_latency_sum_us;
    _Atomic uint64_t resolver_failures;
    _Atomic uint64_t reloads_ok;
    _Atomic uint64_t reloads_failed;
    _Atomic uint64_t accept_paused; /* times accepting paused for lack of fds */
    struct metrics_dns dns;
};

extern struct metrics metrics;

/* Upper bounds (seconds) of the resolver latency histogram buckets. */
extern const double metrics_latency_bounds[METRICS_LATENCY_BUCKETS];

static inline void metrics_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static inline void metrics_gauge_add(_Atomic int64_t *gauge, int64_t n)
{
    atomic_fetch_add_explicit(gauge, n, memory_order_relaxed);
}

void metrics_count_decision(enum metrics_kind kind, enum metrics_outcome outcome, int rule);
void metrics_observe_resolver(uint64_t microseconds, int failed);
void metrics_count_dns_query(enum metrics_dns_qtype qtype, enum metrics_dns_outcome outcome);
/* One exchange with an upstream resolver, answered or timed out. */
void metrics_observe_dns_upstream(uint64_t microseconds);

/* Label values used in the exposition ("http", "would_deny",
 * "upstream_502"), shared with the admin's JSON status; NULL when out of
 * range. */
const char *metrics_kind_name(enum metrics_kind kind);
const char *metrics_outcome_name(enum metrics_outcome outcome);
const char *metrics_error_name(enum metrics_error error);
const char *metrics_dns_qtype_name(enum metrics_dns_qtype qtype);
const char *metrics_dns_outcome_name(enum metrics_dns_outcome outcome);

/* Seconds since the process started (monotonic clock). */
uint64_t metrics_uptime_seconds(void);

struct evbuffer;
/* Appends the Prometheus text exposition (every name prefixed sluice_). */
int metrics_render_prometheus(struct evbuffer *out);

#endif
