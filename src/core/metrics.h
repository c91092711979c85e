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

/* Label values used in the exposition ("http", "would_deny",
 * "upstream_502"), shared with the admin's JSON status; NULL when out of
 * range. */
const char *metrics_kind_name(enum metrics_kind kind);
const char *metrics_outcome_name(enum metrics_outcome outcome);
const char *metrics_error_name(enum metrics_error error);

/* Seconds since the process started (monotonic clock). */
uint64_t metrics_uptime_seconds(void);

struct evbuffer;
/* Appends the Prometheus text exposition (every name prefixed sluice_). */
int metrics_render_prometheus(struct evbuffer *out);

#endif
