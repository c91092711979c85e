/* filter: the DNS filter and forwarder (`sluice proxy --dns ADDR:PORT`).
 *
 * It runs in the proxy's process on a thread of its own, with its own
 * libevent loop, serving UDP and TCP on one address. Each question is
 * decided by the same policy function as every other destination: denied
 * names are refused without any upstream query; allowed ones are forwarded
 * to the policy's dns.upstream resolvers (in order, per-try timeout, TCP on
 * truncation) and the checked answer is returned. Addresses of allowed
 * answers are published to a learn sink before the client sees them. */
#ifndef SLUICE_DNS_FILTER_H
#define SLUICE_DNS_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dns/learn.h"
#include "dns/wire.h"

struct policy;

#define DNS_DEFAULT_MARK 0x5c1ce
#define DNS_DEFAULT_TIMEOUT_MS 2000
#define DNS_DEFAULT_RATE 500 /* queries per second per client */
#define DNS_DEFAULT_BURST 1000
#define DNS_DEFAULT_MAX_NAME 160
#define DNS_DEFAULT_MAX_LABELS 40 /* an ip6.arpa PTR name has 34 */
#define DNS_DEFAULT_TTL_MIN 30
#define DNS_DEFAULT_TTL_MAX 3600
#define DNS_DEFAULT_MAX_INFLIGHT 4096
#define DNS_DEFAULT_MAX_TCP_CLIENTS 256

struct dns_filter_config {
    struct sockaddr_storage listen; /* UDP and TCP */
    socklen_t listen_len;
    /* Inherited sockets (--dns fd:U,T), served as they are instead of
     * binding listen: a bound UDP one and a listening TCP one. */
    bool inherited;
    int udp_fd;
    int tcp_fd;
    uint32_t mark;  /* SO_MARK on upstream sockets; 0: none */
    int timeout_ms; /* per upstream try */
    uint32_t rate;  /* per client, queries/s; 0: unlimited */
    uint32_t burst;
    struct dns_limits limits;
    uint32_t ttl_min;    /* learned TTLs are clamped to [ttl_min, ttl_max] */
    uint32_t ttl_max;    /* and answer A/AAAA TTLs capped at ttl_max */
    int max_inflight;    /* queries waiting on an upstream */
    int max_tcp_clients; /* open client TCP connections */
    struct learn_sink sink;
    /* The live policy, referenced (the caller's proxy_policy_get). */
    struct policy *(*policy_get)(void);
};

void dns_filter_config_defaults(struct dns_filter_config *cfg);

/* Binds UDP and TCP on cfg->listen and starts the thread. Returns 0, or -1
 * with a message in err (cannot bind, no memory). */
int dns_filter_start(const struct dns_filter_config *cfg, char *err, size_t err_size);
/* Stops the thread: queries in flight are dropped. Returns when it has
 * exited. Safe to call when not started. */
void dns_filter_stop(void);
bool dns_filter_running(void);

/* Whether upstream sockets carry the mark (false without CAP_NET_ADMIN);
 * why (when not NULL) gets the reason. Known once started. */
bool dns_filter_mark_applied(const char **why);

/* The "dns" object of GET /status as malloc'd JSON text (caller frees), or
 * NULL when the filter is not running. */
char *dns_filter_status_json(void);

#endif
