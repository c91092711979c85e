/* proxy_dns: options and lifecycle of the DNS filter inside `sluice proxy`. */
#include "core/cliopt.h"
#include "cmd/proxy_dns.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/netaddr.h"
#include "core/sockfd.h"
#include "dns/filter.h"
#include "dns/learn.h"
#include "fw/learnset.h"
#include "policy/policy.h"
#include "proxy/proxy.h"

#define PROXY_DNS_ERR 256
#define PROXY_DNS_FD_TEXT 32

static struct {
    bool configured; /* defaults applied */
    bool enabled;    /* --dns given */
    bool tuned;      /* some --dns-* option given */
    struct dns_filter_config cfg;
    int learn_max;
    struct learn_memory *learned;
    bool learn_nft;          /* --dns-learn-nft */
    struct fw_learnset *nft; /* the isolate sets' sink, behind the memory one */
} dns;

static void defaults(void)
{
    if (dns.configured)
        return;
    dns_filter_config_defaults(&dns.cfg);
    dns.learn_max = LEARN_MEMORY_DEFAULT_CAPACITY;
    dns.configured = true;
}

static int number(const char *name, const char *text, long min, long max, long *out)
{
    return cliopt_long("sluice proxy", name, text, min, max, out);
}

static int mark(const char *text, uint32_t *out)
{
    unsigned int v;
    if (cliopt_mark("sluice proxy", "--dns-mark", text, &v) < 0)
        return -1;
    *out = v;
    return 0;
}

/* "fd:U,T": the bound UDP socket U and the listening TCP socket T, both on
 * the same address (the one the clients are told). */
static int inherited_sockets(const char *arg, char *err, size_t err_size)
{
    char udp[PROXY_DNS_FD_TEXT], tcp[PROXY_DNS_FD_TEXT];
    const char *comma = strchr(arg, ',');
    struct sockaddr_storage tcp_ss;
    socklen_t tcp_len;
    if (comma == NULL || (size_t)(comma - arg) >= sizeof udp ||
        strlen(comma + 1) + strlen(SOCKFD_PREFIX) >= sizeof tcp) {
        snprintf(err, err_size, "'%s': write inherited sockets as fd:UDP,TCP (two numbers)", arg);
        return -1;
    }
    snprintf(udp, sizeof udp, "%.*s", (int)(comma - arg), arg);
    snprintf(tcp, sizeof tcp, "%s%s", SOCKFD_PREFIX, comma + 1);
    struct dns_filter_config *c = &dns.cfg;
    if (sockfd_parse(udp, SOCK_DGRAM, &c->udp_fd, &c->listen, &c->listen_len, err, err_size) < 0 ||
        sockfd_parse(tcp, SOCK_STREAM, &c->tcp_fd, &tcp_ss, &tcp_len, err, err_size) < 0)
        return -1;
    c->inherited = true;
    return 0;
}

int proxy_dns_option(int opt, const char *arg)
{
    char err[PROXY_DNS_ERR];
    struct dns_filter_config *c = &dns.cfg;
    long v = 0;
    defaults();
    if (opt == PROXY_DNS_OPT_DNS) {
        dns.enabled = true;
        if (sockfd_given(arg) ? inherited_sockets(arg, err, sizeof err) == 0
                              : netaddr_parse(arg, &c->listen, &c->listen_len, err, sizeof err) == 0)
            return 0;
        fprintf(stderr, "sluice proxy: --dns: %s\n", err);
        return -1;
    }
    dns.tuned = true;
    switch (opt) {
    case PROXY_DNS_OPT_MARK:
        return mark(arg, &c->mark);
    case PROXY_DNS_OPT_TIMEOUT:
        if (number("--dns-timeout", arg, 50, 60000, &v) < 0)
            return -1;
        c->timeout_ms = (int)v;
        return 0;
    case PROXY_DNS_OPT_RATE:
        if (number("--dns-rate", arg, 0, 10000000, &v) < 0)
            return -1;
        c->rate = (uint32_t)v;
        return 0;
    case PROXY_DNS_OPT_BURST:
        if (number("--dns-burst", arg, 1, 10000000, &v) < 0)
            return -1;
        c->burst = (uint32_t)v;
        return 0;
    case PROXY_DNS_OPT_MAX_NAME:
        if (number("--dns-max-name", arg, 1, HOST_NAME_MAX_BYTES, &v) < 0)
            return -1;
        c->limits.max_name_len = (size_t)v;
        return 0;
    case PROXY_DNS_OPT_MAX_LABELS:
        if (number("--dns-max-labels", arg, 1, 127, &v) < 0)
            return -1;
        c->limits.max_labels = (size_t)v;
        return 0;
    case PROXY_DNS_OPT_TTL_MIN:
        if (number("--dns-ttl-min", arg, 0, 604800, &v) < 0)
            return -1;
        c->ttl_min = (uint32_t)v;
        return 0;
    case PROXY_DNS_OPT_TTL_MAX:
        if (number("--dns-ttl-max", arg, 1, 604800, &v) < 0)
            return -1;
        c->ttl_max = (uint32_t)v;
        return 0;
    case PROXY_DNS_OPT_LEARN_NFT:
        dns.learn_nft = true;
        return 0;
    case PROXY_DNS_OPT_LEARN_MAX:
        if (number("--dns-learn-max", arg, 1, LEARN_MEMORY_MAX_CAPACITY, &v) < 0)
            return -1;
        dns.learn_max = (int)v;
        return 0;
    }
    fprintf(stderr, "sluice proxy: unknown DNS option\n");
    return -1;
}

int proxy_dns_check_options(void)
{
    defaults();
    if (!dns.enabled && dns.tuned) {
        fprintf(stderr, "sluice proxy: the --dns-* options need --dns ADDR:PORT\n");
        return -1;
    }
    if (dns.cfg.ttl_min > dns.cfg.ttl_max) {
        fprintf(stderr, "sluice proxy: --dns-ttl-min (%u) is above --dns-ttl-max (%u)\n",
                (unsigned)dns.cfg.ttl_min, (unsigned)dns.cfg.ttl_max);
        return -1;
    }
    return 0;
}

bool proxy_dns_enabled(void)
{
    return dns.enabled;
}

/* The filter forwards only to the policy's resolvers: without them it
 * could answer nothing. */
int proxy_dns_check_policy(const struct policy *p, const char *source, char *err, size_t err_size)
{
    if (!dns.enabled || (p && policy_dns(p)->n_upstream > 0))
        return 0;
    snprintf(err, err_size,
             "%s: the policy has no dns.upstream, and --dns needs resolvers to forward allowed "
             "names to: add \"dns\": {\"upstream\": [\"IP\"]}",
             source);
    return -1;
}

int proxy_dns_start(struct proxy_config *cfg, char *err, size_t err_size)
{
    const char *why = NULL;
    char where[80];
    if (!dns.enabled)
        return 0;
    if (cfg->n_own < PROXY_MAX_OWN_ADDRS)
        cfg->own[cfg->n_own++] = dns.cfg.listen;
    dns.learned = learn_memory_new((size_t)dns.learn_max);
    if (dns.learned == NULL) {
        snprintf(err, err_size, "DNS filter: out of memory");
        return -1;
    }
    dns.cfg.sink = learn_memory_sink(dns.learned);
    if (dns.learn_nft) {
        struct fw_learnset_config lc = {.policy_get = proxy_policy_get, .next = dns.cfg.sink};
        dns.nft = fw_learnset_new(&lc, err, err_size);
        if (dns.nft == NULL)
            return -1;
        dns.cfg.sink = fw_learnset_sink(dns.nft);
    }
    dns.cfg.policy_get = proxy_policy_get;
    if (dns_filter_start(&dns.cfg, err, err_size) < 0)
        return -1;
    netaddr_format(&dns.cfg.listen, where, sizeof where);
    log_message("info", "DNS filter listening (UDP and TCP)", where);
    if (!dns_filter_mark_applied(&why))
        log_message("warning", "DNS filter: upstream queries are not marked (SO_MARK)", why);
    return 0;
}

void proxy_dns_stop(void)
{
    dns_filter_stop();
    if (dns.nft)
        fw_learnset_free(dns.nft);
    dns.nft = NULL;
    learn_memory_free(dns.learned);
    dns.learned = NULL;
}

char *proxy_dns_status(void *arg)
{
    return dns_filter_status_json();
}

char *proxy_dns_learned(void *arg)
{
    if (!dns_filter_running() || dns.learned == NULL)
        return NULL;
    return learn_memory_json(dns.learned, learn_now());
}
