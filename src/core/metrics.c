/* metrics: the process-wide counters and their Prometheus text rendering.
 *
 * Workers bump counters with relaxed atomics; nothing here locks. A render
 * is therefore not one consistent snapshot, only each value is; the
 * histogram is clamped so it still reads as a valid one. */
#include "core/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <time.h>

#include <event2/buffer.h>

struct metrics metrics;

/* Resolver latency from a warm cache (well under 1 ms) to a stuck upstream
 * (evdns gives up after a few seconds). */
const double metrics_latency_bounds[METRICS_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5,
};

static const char *const kind_names[METRICS_KIND_COUNT] = {
    [METRICS_KIND_HTTP] = "http",
    [METRICS_KIND_CONNECT] = "connect",
    [METRICS_KIND_DNS] = "dns",
    [METRICS_KIND_TLS] = "tls",
    [METRICS_KIND_TRANSPARENT] = "transparent",
};

static const char *const outcome_names[METRICS_OUTCOME_COUNT] = {
    [METRICS_ALLOW] = "allow",
    [METRICS_DENY] = "deny",
    [METRICS_WOULD_DENY] = "would_deny",
};

static const char *const error_names[METRICS_ERR_COUNT] = {
    [METRICS_ERR_BAD_REQUEST] = "bad_request",       [METRICS_ERR_UPSTREAM_502] = "upstream_502",
    [METRICS_ERR_UPSTREAM_504] = "upstream_504",     [METRICS_ERR_LIMIT] = "limit",
    [METRICS_ERR_HEADER_TIMEOUT] = "header_timeout",
};

static const char *const dns_qtype_names[METRICS_DNS_QTYPE_COUNT] = {
    [METRICS_DNS_A] = "A",       [METRICS_DNS_AAAA] = "AAAA", [METRICS_DNS_CNAME] = "CNAME",
    [METRICS_DNS_HTTPS] = "HTTPS", [METRICS_DNS_SVCB] = "SVCB", [METRICS_DNS_MX] = "MX",
    [METRICS_DNS_TXT] = "TXT",   [METRICS_DNS_SRV] = "SRV",   [METRICS_DNS_PTR] = "PTR",
    [METRICS_DNS_ANY] = "ANY",   [METRICS_DNS_OTHER] = "other",
};

static const char *const dns_outcome_names[METRICS_DNS_OUTCOME_COUNT] = {
    [METRICS_DNS_ALLOW] = "allow",
    [METRICS_DNS_DENY] = "deny",
    [METRICS_DNS_WOULD_DENY] = "would_deny",
    [METRICS_DNS_REFUSED] = "refused",
    [METRICS_DNS_RATE_LIMITED] = "rate_limited",
    [METRICS_DNS_MALFORMED] = "malformed",
    [METRICS_DNS_SERVFAIL] = "servfail",
};

static const char *const dns_upstream_error_names[METRICS_DNS_UP_ERROR_COUNT] = {
    [METRICS_DNS_UP_TIMEOUT] = "timeout",
    [METRICS_DNS_UP_UNREACHABLE] = "unreachable",
    [METRICS_DNS_UP_RCODE] = "error_rcode",
    [METRICS_DNS_UP_BAD_ANSWER] = "bad_answer",
};

static const char *const dns_limit_names[METRICS_DNS_LIMIT_COUNT] = {
    [METRICS_DNS_LIMIT_NAME_LENGTH] = "name_length",
    [METRICS_DNS_LIMIT_LABELS] = "labels",
};

static struct timespec metrics_started;

/* Taken before main() so uptime counts from process start without every
 * role having to remember an init call. */
__attribute__((constructor)) static void metrics_note_start(void)
{
    clock_gettime(CLOCK_MONOTONIC, &metrics_started);
}

static uint64_t load(_Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

static int64_t load_gauge(_Atomic int64_t *gauge)
{
    return atomic_load_explicit(gauge, memory_order_relaxed);
}

uint64_t metrics_uptime_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec < metrics_started.tv_sec)
        return 0;
    return (uint64_t)(now.tv_sec - metrics_started.tv_sec);
}

const char *metrics_kind_name(enum metrics_kind kind)
{
    return (unsigned)kind < METRICS_KIND_COUNT ? kind_names[kind] : NULL;
}

const char *metrics_outcome_name(enum metrics_outcome outcome)
{
    return (unsigned)outcome < METRICS_OUTCOME_COUNT ? outcome_names[outcome] : NULL;
}

const char *metrics_error_name(enum metrics_error error)
{
    return (unsigned)error < METRICS_ERR_COUNT ? error_names[error] : NULL;
}

const char *metrics_dns_qtype_name(enum metrics_dns_qtype qtype)
{
    return (unsigned)qtype < METRICS_DNS_QTYPE_COUNT ? dns_qtype_names[qtype] : NULL;
}

const char *metrics_dns_outcome_name(enum metrics_dns_outcome outcome)
{
    return (unsigned)outcome < METRICS_DNS_OUTCOME_COUNT ? dns_outcome_names[outcome] : NULL;
}

void metrics_count_dns_query(enum metrics_dns_qtype qtype, enum metrics_dns_outcome outcome)
{
    if ((unsigned)qtype >= METRICS_DNS_QTYPE_COUNT ||
        (unsigned)outcome >= METRICS_DNS_OUTCOME_COUNT)
        return;
    metrics_add(&metrics.dns.queries[qtype][outcome], 1);
}

void metrics_observe_dns_upstream(uint64_t microseconds)
{
    double seconds = (double)microseconds / 1e6;

    for (size_t i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        if (seconds <= metrics_latency_bounds[i])
            metrics_add(&metrics.dns.upstream_latency_bucket[i], 1);
    }
    metrics_add(&metrics.dns.upstream_latency_sum_us, microseconds);
    metrics_add(&metrics.dns.upstream_latency_count, 1);
}

void metrics_count_decision(enum metrics_kind kind, enum metrics_outcome outcome, int rule)
{
    size_t slot;

    if ((unsigned)kind >= METRICS_KIND_COUNT || (unsigned)outcome >= METRICS_OUTCOME_COUNT)
        return;
    metrics_add(&metrics.decisions[kind][outcome], 1);
    if (rule < 0)
        slot = 0;
    else if (rule < METRICS_MAX_RULES)
        slot = (size_t)rule + 1;
    else
        slot = METRICS_MAX_RULES + 1;
    metrics_add(&metrics.rule_hits[slot], 1);
}

/* Every lookup, failed or not, is a latency sample: a resolver that fails
 * slowly is exactly what the histogram should show. */
void metrics_observe_resolver(uint64_t microseconds, int failed)
{
    double seconds = (double)microseconds / 1e6;

    for (size_t i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        if (seconds <= metrics_latency_bounds[i])
            metrics_add(&metrics.resolver_latency_bucket[i], 1);
    }
    metrics_add(&metrics.resolver_latency_sum_us, microseconds);
    metrics_add(&metrics.resolver_latency_count, 1);
    if (failed)
        metrics_add(&metrics.resolver_failures, 1);
}

/* evbuffer_add_printf returns -1 on allocation failure; one flag collects
 * them so the renderers read as a plain list of lines. */
struct render {
    struct evbuffer *out;
    bool failed;
};

__attribute__((format(printf, 2, 3))) static void emit(struct render *r, const char *fmt, ...);

static void emit(struct render *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (evbuffer_add_vprintf(r->out, fmt, ap) < 0)
        r->failed = true;
    va_end(ap);
}

static void header(struct render *r, const char *name, const char *type, const char *help)
{
    emit(r, "# HELP sluice_%s %s\n# TYPE sluice_%s %s\n", name, help, name, type);
}

static void counter(struct render *r, const char *name, const char *help, _Atomic uint64_t *c)
{
    header(r, name, "counter", help);
    emit(r, "sluice_%s %" PRIu64 "\n", name, load(c));
}

static void gauge(struct render *r, const char *name, const char *help, int64_t value)
{
    header(r, name, "gauge", help);
    emit(r, "sluice_%s %" PRId64 "\n", name, value);
}

static void render_decisions(struct render *r)
{
    header(r, "decisions_total", "counter", "Policy decisions by entry point and outcome.");
    for (int k = 0; k < METRICS_KIND_COUNT; k++) {
        for (int o = 0; o < METRICS_OUTCOME_COUNT; o++)
            emit(r, "sluice_decisions_total{kind=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                 kind_names[k], outcome_names[o], load(&metrics.decisions[k][o]));
    }
}

/* Only rules that decided something: a policy may have hundreds. */
static void render_rule_hits(struct render *r)
{
    header(r, "rule_hits_total", "counter",
           "Decisions by deciding rule (index in the live policy, \"default\", or \"other\" "
           "beyond the counted rules).");
    for (size_t i = 0; i < METRICS_MAX_RULES + 2; i++) {
        uint64_t v = load(&metrics.rule_hits[i]);

        if (v == 0)
            continue;
        if (i == 0)
            emit(r, "sluice_rule_hits_total{rule=\"default\"} %" PRIu64 "\n", v);
        else if (i == METRICS_MAX_RULES + 1)
            emit(r, "sluice_rule_hits_total{rule=\"other\"} %" PRIu64 "\n", v);
        else
            emit(r, "sluice_rule_hits_total{rule=\"%zu\"} %" PRIu64 "\n", i - 1, v);
    }
}

static void render_errors(struct render *r)
{
    header(r, "errors_total", "counter", "Error answers and cut connections by cause.");
    for (int e = 0; e < METRICS_ERR_COUNT; e++)
        emit(r, "sluice_errors_total{error=\"%s\"} %" PRIu64 "\n", error_names[e],
             load(&metrics.errors[e]));
}

static void render_traffic(struct render *r)
{
    header(r, "bytes_total", "counter",
           "Payload bytes relayed: up is client to upstream, down is upstream to client.");
    emit(r, "sluice_bytes_total{direction=\"up\"} %" PRIu64 "\n", load(&metrics.bytes_up));
    emit(r, "sluice_bytes_total{direction=\"down\"} %" PRIu64 "\n", load(&metrics.bytes_down));
    counter(r, "connections_total", "Client connections accepted.", &metrics.connections_total);
    gauge(r, "connections_active", "Client connections open now.",
          load_gauge(&metrics.connections_active));
    gauge(r, "tunnels_active", "CONNECT tunnels open now.", load_gauge(&metrics.tunnels_active));
    counter(r, "requests_total", "HTTP requests and CONNECTs read from clients.",
            &metrics.requests_total);
}

/* Buckets are stored cumulatively but read one by one while lookups go on,
 * so each is clamped between its predecessor and the count read first:
 * Prometheus needs non-decreasing buckets ending at _count. */
static void render_resolver(struct render *r)
{
    uint64_t count = load(&metrics.resolver_latency_count);
    uint64_t sum_us = load(&metrics.resolver_latency_sum_us);
    uint64_t prev = 0;

    header(r, "resolver_latency_seconds", "histogram", "Time to resolve upstream names.");
    for (size_t i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        uint64_t v = load(&metrics.resolver_latency_bucket[i]);

        if (v > count)
            v = count;
        if (v < prev)
            v = prev;
        prev = v;
        emit(r, "sluice_resolver_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
             metrics_latency_bounds[i], v);
    }
    emit(r, "sluice_resolver_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", count);
    emit(r, "sluice_resolver_latency_seconds_sum %" PRIu64 ".%06" PRIu64 "\n", sum_us / 1000000,
         sum_us % 1000000);
    emit(r, "sluice_resolver_latency_seconds_count %" PRIu64 "\n", count);
    counter(r, "resolver_failures_total", "Name lookups that failed.", &metrics.resolver_failures);
}

static void render_process(struct render *r)
{
    header(r, "reloads_total", "counter", "Policy reloads (SIGHUP, POST /reload) by result.");
    emit(r, "sluice_reloads_total{result=\"ok\"} %" PRIu64 "\n", load(&metrics.reloads_ok));
    emit(r, "sluice_reloads_total{result=\"failed\"} %" PRIu64 "\n", load(&metrics.reloads_failed));
    counter(r, "accept_paused_total", "Times accepting paused for lack of file descriptors.",
            &metrics.accept_paused);
    header(r, "uptime_seconds", "gauge", "Seconds since the process started.");
    emit(r, "sluice_uptime_seconds %" PRIu64 "\n", metrics_uptime_seconds());
}

/* Same clamping as the resolver histogram: buckets read while queries go on
 * must still be non-decreasing and end at _count. */
static void render_dns_latency(struct render *r)
{
    struct metrics_dns *d = &metrics.dns;
    uint64_t count = load(&d->upstream_latency_count);
    uint64_t sum_us = load(&d->upstream_latency_sum_us);
    uint64_t prev = 0;

    header(r, "dns_upstream_latency_seconds", "histogram",
           "Time for an upstream resolver to answer one DNS exchange (timeouts included).");
    for (size_t i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        uint64_t v = load(&d->upstream_latency_bucket[i]);

        if (v > count)
            v = count;
        if (v < prev)
            v = prev;
        prev = v;
        emit(r, "sluice_dns_upstream_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
             metrics_latency_bounds[i], v);
    }
    emit(r, "sluice_dns_upstream_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", count);
    emit(r, "sluice_dns_upstream_latency_seconds_sum %" PRIu64 ".%06" PRIu64 "\n",
         sum_us / 1000000, sum_us % 1000000);
    emit(r, "sluice_dns_upstream_latency_seconds_count %" PRIu64 "\n", count);
}

static void render_dns(struct render *r)
{
    struct metrics_dns *d = &metrics.dns;

    header(r, "dns_queries_total", "counter", "DNS queries by query type and outcome.");
    for (int t = 0; t < METRICS_DNS_QTYPE_COUNT; t++) {
        for (int o = 0; o < METRICS_DNS_OUTCOME_COUNT; o++)
            emit(r, "sluice_dns_queries_total{qtype=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                 dns_qtype_names[t], dns_outcome_names[o], load(&d->queries[t][o]));
    }
    render_dns_latency(r);
    header(r, "dns_upstream_errors_total", "counter",
           "Failed exchanges with upstream resolvers, by cause.");
    for (int e = 0; e < METRICS_DNS_UP_ERROR_COUNT; e++)
        emit(r, "sluice_dns_upstream_errors_total{error=\"%s\"} %" PRIu64 "\n",
             dns_upstream_error_names[e], load(&d->upstream_errors[e]));
    counter(r, "dns_tcp_fallbacks_total", "Truncated UDP answers asked again over TCP.",
            &d->tcp_fallbacks);
    counter(r, "dns_rate_limited_total", "DNS queries refused for the client's query rate.",
            &d->rate_limited);
    counter(r, "dns_malformed_total", "DNS messages answered FORMERR or dropped as not queries.",
            &d->malformed);
    header(r, "dns_limit_refused_total", "counter",
           "DNS queries refused for the name caps (exfiltration shapes).");
    for (int l = 0; l < METRICS_DNS_LIMIT_COUNT; l++)
        emit(r, "sluice_dns_limit_refused_total{limit=\"%s\"} %" PRIu64 "\n", dns_limit_names[l],
             load(&d->limit_refused[l]));
    counter(r, "dns_addresses_removed_total",
            "Answer addresses removed because they lie in refused ranges.", &d->addresses_removed);
    counter(r, "dns_ech_removed_total", "ECH parameters removed from HTTPS/SVCB answers.",
            &d->ech_removed);
    counter(r, "dns_learned_total", "Answer addresses published to the learned-address sink.",
            &d->learned);
    counter(r, "dns_learn_failures_total",
            "Answers withheld (SERVFAIL) because the learned-address sink failed.",
            &d->learn_failures);
}

int metrics_render_prometheus(struct evbuffer *out)
{
    struct render r = {.out = out, .failed = false};

    render_decisions(&r);
    render_rule_hits(&r);
    render_errors(&r);
    render_traffic(&r);
    render_resolver(&r);
    render_process(&r);
    render_dns(&r);
    return r.failed ? -1 : 0;
}
