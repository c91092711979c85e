/* Prometheus rendering of the process counters: the exact lines a scraper
 * and a dashboard rely on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "core/metrics.h"

#define RENDER_MAX (64 * 1024)

static char rendered[RENDER_MAX];

static int reset(void **state)
{
    (void)state;
    memset(&metrics, 0, sizeof metrics);
    return 0;
}

static const char *render(void)
{
    struct evbuffer *b = evbuffer_new();
    size_t n;

    assert_non_null(b);
    assert_int_equal(metrics_render_prometheus(b), 0);
    n = evbuffer_get_length(b);
    assert_true(n < sizeof rendered);
    evbuffer_remove(b, rendered, n);
    rendered[n] = '\0';
    evbuffer_free(b);
    return rendered;
}

/* A whole line, so "x 1" never matches "x 10". */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    }
    return false;
}

static void assert_line(const char *text, const char *line)
{
    if (!has_line(text, line))
        fail_msg("missing line '%s' in:\n%s", line, text);
}

static void test_decisions_by_kind_and_outcome(void **state)
{
    const char *out;

    (void)state;
    metrics_count_decision(METRICS_KIND_HTTP, METRICS_ALLOW, 0);
    metrics_count_decision(METRICS_KIND_HTTP, METRICS_ALLOW, 1);
    metrics_count_decision(METRICS_KIND_CONNECT, METRICS_DENY, -1);
    metrics_count_decision(METRICS_KIND_DNS, METRICS_WOULD_DENY, -1);
    out = render();
    assert_line(out, "# TYPE sluice_decisions_total counter");
    assert_line(out, "sluice_decisions_total{kind=\"http\",outcome=\"allow\"} 2");
    assert_line(out, "sluice_decisions_total{kind=\"http\",outcome=\"deny\"} 0");
    assert_line(out, "sluice_decisions_total{kind=\"connect\",outcome=\"deny\"} 1");
    assert_line(out, "sluice_decisions_total{kind=\"dns\",outcome=\"would_deny\"} 1");
    assert_line(out, "sluice_decisions_total{kind=\"tls\",outcome=\"allow\"} 0");
    assert_line(out, "sluice_decisions_total{kind=\"transparent\",outcome=\"would_deny\"} 0");
}

static void test_rule_hits_only_nonzero(void **state)
{
    const char *out;

    (void)state;
    metrics_count_decision(METRICS_KIND_HTTP, METRICS_ALLOW, -1);
    metrics_count_decision(METRICS_KIND_HTTP, METRICS_ALLOW, 0);
    metrics_count_decision(METRICS_KIND_HTTP, METRICS_DENY, 3);
    metrics_count_decision(METRICS_KIND_HTTP, METRICS_DENY, 3);
    metrics_count_decision(METRICS_KIND_CONNECT, METRICS_ALLOW, METRICS_MAX_RULES - 1);
    metrics_count_decision(METRICS_KIND_CONNECT, METRICS_ALLOW, METRICS_MAX_RULES);
    metrics_count_decision(METRICS_KIND_CONNECT, METRICS_ALLOW, 100000);
    out = render();
    assert_line(out, "# TYPE sluice_rule_hits_total counter");
    assert_line(out, "sluice_rule_hits_total{rule=\"default\"} 1");
    assert_line(out, "sluice_rule_hits_total{rule=\"0\"} 1");
    assert_line(out, "sluice_rule_hits_total{rule=\"3\"} 2");
    assert_line(out, "sluice_rule_hits_total{rule=\"255\"} 1");
    assert_line(out, "sluice_rule_hits_total{rule=\"other\"} 2");
    assert_null(strstr(out, "rule=\"1\""));
    assert_null(strstr(out, "rule=\"256\""));
}

static void test_no_rule_hits_when_nothing_decided(void **state)
{
    const char *out;

    (void)state;
    out = render();
    assert_non_null(strstr(out, "# TYPE sluice_rule_hits_total counter\n"));
    assert_null(strstr(out, "sluice_rule_hits_total{"));
}

static void test_invalid_kind_or_outcome_ignored(void **state)
{
    const char *out;

    (void)state;
    metrics_count_decision(METRICS_KIND_COUNT, METRICS_ALLOW, 0);
    metrics_count_decision(METRICS_KIND_HTTP, METRICS_OUTCOME_COUNT, 0);
    out = render();
    assert_null(strstr(out, "sluice_rule_hits_total{"));
    assert_null(strstr(out, "outcome=\"allow\"} 1"));
}

static void test_errors_bytes_connections(void **state)
{
    const char *out;

    (void)state;
    metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 3);
    metrics_add(&metrics.errors[METRICS_ERR_UPSTREAM_504], 1);
    metrics_add(&metrics.bytes_up, 1234);
    metrics_add(&metrics.bytes_down, 18446744073709551615u);
    metrics_add(&metrics.connections_total, 7);
    metrics_gauge_add(&metrics.connections_active, 5);
    metrics_gauge_add(&metrics.connections_active, -2);
    metrics_gauge_add(&metrics.tunnels_active, 2);
    metrics_add(&metrics.requests_total, 9);
    metrics_add(&metrics.reloads_ok, 4);
    metrics_add(&metrics.reloads_failed, 1);
    metrics_add(&metrics.accept_paused, 6);
    out = render();
    assert_line(out, "sluice_errors_total{error=\"bad_request\"} 3");
    assert_line(out, "sluice_errors_total{error=\"upstream_502\"} 0");
    assert_line(out, "sluice_errors_total{error=\"upstream_504\"} 1");
    assert_line(out, "sluice_errors_total{error=\"limit\"} 0");
    assert_line(out, "sluice_errors_total{error=\"header_timeout\"} 0");
    assert_line(out, "sluice_bytes_total{direction=\"up\"} 1234");
    assert_line(out, "sluice_bytes_total{direction=\"down\"} 18446744073709551615");
    assert_line(out, "sluice_connections_total 7");
    assert_line(out, "# TYPE sluice_connections_active gauge");
    assert_line(out, "sluice_connections_active 3");
    assert_line(out, "sluice_tunnels_active 2");
    assert_line(out, "sluice_requests_total 9");
    assert_line(out, "sluice_reloads_total{result=\"ok\"} 4");
    assert_line(out, "sluice_reloads_total{result=\"failed\"} 1");
    assert_line(out, "sluice_accept_paused_total 6");
}

static void test_resolver_histogram_cumulative(void **state)
{
    const char *out;

    (void)state;
    metrics_observe_resolver(300, 0);      /* 0.0003 s */
    metrics_observe_resolver(1000, 0);     /* exactly on the 0.001 bound */
    metrics_observe_resolver(30000, 0);    /* 0.03 s */
    metrics_observe_resolver(2000000, 1);  /* 2 s, failed */
    metrics_observe_resolver(10000000, 1); /* beyond the last bound */
    out = render();
    assert_line(out, "# TYPE sluice_resolver_latency_seconds histogram");
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"0.0005\"} 1");
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"0.001\"} 2");
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"0.025\"} 2");
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"0.05\"} 3");
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"1\"} 3");
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"5\"} 4");
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"+Inf\"} 5");
    assert_line(out, "sluice_resolver_latency_seconds_sum 12.031300");
    assert_line(out, "sluice_resolver_latency_seconds_count 5");
    assert_line(out, "sluice_resolver_failures_total 2");
}

/* Buckets must not decrease and must end at _count, even when a render
 * races lookups that have bumped some counters and not others yet. */
static void test_histogram_clamped_consistent(void **state)
{
    const char *out;

    (void)state;
    metrics_add(&metrics.resolver_latency_bucket[0], 5); /* bucket ahead of count */
    metrics_add(&metrics.resolver_latency_count, 3);
    metrics_add(&metrics.resolver_latency_bucket[METRICS_LATENCY_BUCKETS - 1], 1);
    out = render();
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"0.0005\"} 3");
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"0.001\"} 3");
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"5\"} 3");
    assert_line(out, "sluice_resolver_latency_seconds_bucket{le=\"+Inf\"} 3");
}

static void test_bounds_increase(void **state)
{
    (void)state;
    for (size_t i = 1; i < METRICS_LATENCY_BUCKETS; i++)
        assert_true(metrics_latency_bounds[i] > metrics_latency_bounds[i - 1]);
}

/* Each metric family announced once with HELP and TYPE, before its samples,
 * and every sample named sluice_* with a plain number: what a Prometheus
 * text parser insists on. */
static void test_exposition_well_formed(void **state)
{
    char copy[RENDER_MAX];
    char families[64][64];
    size_t n_families = 0;
    const char *out;

    (void)state;
    metrics_count_decision(METRICS_KIND_TLS, METRICS_DENY, 2);
    metrics_observe_resolver(1500, 0);
    out = render();
    assert_true(strlen(out) > 0 && out[strlen(out) - 1] == '\n');
    snprintf(copy, sizeof copy, "%s", out);
    for (char *line = copy, *nl; *line; line = nl + 1) {
        char name[64];
        const char *sp;
        char *end;

        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';

        if (strncmp(line, "# HELP sluice_", 14) == 0)
            continue;
        if (strncmp(line, "# TYPE sluice_", 14) == 0) {
            assert_int_equal(sscanf(line + 7, "%63s", name), 1);
            for (size_t i = 0; i < n_families; i++)
                assert_string_not_equal(families[i], name);
            assert_true(n_families < 64);
            snprintf(families[n_families++], sizeof families[0], "%s", name);
            continue;
        }
        assert_int_equal(strncmp(line, "sluice_", 7), 0);
        assert_true(n_families > 0);
        /* the sample belongs to the family announced last */
        assert_int_equal(strncmp(line, families[n_families - 1], strlen(families[n_families - 1])),
                         0);
        sp = strrchr(line, ' ');
        assert_non_null(sp);
        strtod(sp + 1, &end);
        assert_true(end != sp + 1 && *end == '\0');
    }
    assert_int_equal(n_families, 24); /* 13 of the proxy, 11 of the DNS filter */
    assert_non_null(strstr(out, "# HELP sluice_uptime_seconds "));
}

/* The DNS filter's families: queries by type and outcome, its own upstream
 * histogram and the counters named in docs/ADMIN.md. */
static void test_dns_counters(void **state)
{
    const char *out;

    (void)state;
    metrics_count_dns_query(METRICS_DNS_TXT, METRICS_DNS_DENY);
    metrics_count_dns_query(METRICS_DNS_TXT, METRICS_DNS_DENY);
    metrics_count_dns_query(METRICS_DNS_A, METRICS_DNS_RATE_LIMITED);
    metrics_count_dns_query(METRICS_DNS_QTYPE_COUNT, METRICS_DNS_ALLOW); /* ignored */
    metrics_observe_dns_upstream(3000);
    metrics_add(&metrics.dns.limit_refused[METRICS_DNS_LIMIT_LABELS], 1);
    metrics_add(&metrics.dns.upstream_errors[METRICS_DNS_UP_TIMEOUT], 2);
    out = render();
    assert_line(out, "sluice_dns_queries_total{qtype=\"TXT\",outcome=\"deny\"} 2");
    assert_line(out, "sluice_dns_queries_total{qtype=\"A\",outcome=\"rate_limited\"} 1");
    assert_line(out, "sluice_dns_queries_total{qtype=\"other\",outcome=\"allow\"} 0");
    assert_line(out, "sluice_dns_upstream_latency_seconds_bucket{le=\"0.0025\"} 0");
    assert_line(out, "sluice_dns_upstream_latency_seconds_bucket{le=\"0.005\"} 1");
    assert_line(out, "sluice_dns_upstream_latency_seconds_count 1");
    assert_line(out, "sluice_dns_limit_refused_total{limit=\"labels\"} 1");
    assert_line(out, "sluice_dns_upstream_errors_total{error=\"timeout\"} 2");
    assert_line(out, "sluice_dns_rate_limited_total 0");
}

static void test_uptime_counts_from_start(void **state)
{
    char line[64];

    (void)state;
    snprintf(line, sizeof line, "sluice_uptime_seconds %llu",
             (unsigned long long)metrics_uptime_seconds());
    assert_true(metrics_uptime_seconds() < 600);
    assert_line(render(), line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_decisions_by_kind_and_outcome, reset),
        cmocka_unit_test_setup(test_rule_hits_only_nonzero, reset),
        cmocka_unit_test_setup(test_no_rule_hits_when_nothing_decided, reset),
        cmocka_unit_test_setup(test_invalid_kind_or_outcome_ignored, reset),
        cmocka_unit_test_setup(test_errors_bytes_connections, reset),
        cmocka_unit_test_setup(test_resolver_histogram_cumulative, reset),
        cmocka_unit_test_setup(test_histogram_clamped_consistent, reset),
        cmocka_unit_test(test_bounds_increase),
        cmocka_unit_test_setup(test_exposition_well_formed, reset),
        cmocka_unit_test_setup(test_dns_counters, reset),
        cmocka_unit_test_setup(test_uptime_counts_from_start, reset),
    };

    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
