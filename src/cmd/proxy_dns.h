/* proxy_dns: the DNS filter's part of `sluice proxy` — its options, start
 * and stop, the policy check it needs, and what it adds to the admin API.
 * Kept apart from proxy.c so the proxy's own wiring stays readable. */
#ifndef SLUICE_CMD_PROXY_DNS_H
#define SLUICE_CMD_PROXY_DNS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

struct policy;
struct proxy_config;

enum {
    PROXY_DNS_OPT_FIRST = 1024,
    PROXY_DNS_OPT_DNS = PROXY_DNS_OPT_FIRST,
    PROXY_DNS_OPT_MARK,
    PROXY_DNS_OPT_TIMEOUT,
    PROXY_DNS_OPT_RATE,
    PROXY_DNS_OPT_BURST,
    PROXY_DNS_OPT_MAX_NAME,
    PROXY_DNS_OPT_MAX_LABELS,
    PROXY_DNS_OPT_TTL_MIN,
    PROXY_DNS_OPT_TTL_MAX,
    PROXY_DNS_OPT_LEARN_MAX,
    PROXY_DNS_OPT_LEARN_NFT,
    PROXY_DNS_OPT_LAST = PROXY_DNS_OPT_LEARN_NFT,
};

/* Entries for proxy.c's getopt_long table. */
#define PROXY_DNS_LONG_OPTIONS                                                                     \
    {"dns", required_argument, NULL, PROXY_DNS_OPT_DNS},                                           \
        {"dns-mark", required_argument, NULL, PROXY_DNS_OPT_MARK},                                 \
        {"dns-timeout", required_argument, NULL, PROXY_DNS_OPT_TIMEOUT},                           \
        {"dns-rate", required_argument, NULL, PROXY_DNS_OPT_RATE},                                 \
        {"dns-burst", required_argument, NULL, PROXY_DNS_OPT_BURST},                               \
        {"dns-max-name", required_argument, NULL, PROXY_DNS_OPT_MAX_NAME},                         \
        {"dns-max-labels", required_argument, NULL, PROXY_DNS_OPT_MAX_LABELS},                     \
        {"dns-ttl-min", required_argument, NULL, PROXY_DNS_OPT_TTL_MIN},                           \
        {"dns-ttl-max", required_argument, NULL, PROXY_DNS_OPT_TTL_MAX},                           \
        {"dns-learn-nft", no_argument, NULL, PROXY_DNS_OPT_LEARN_NFT},                             \
    {                                                                                              \
        "dns-learn-max", required_argument, NULL, PROXY_DNS_OPT_LEARN_MAX                          \
    }

#define PROXY_DNS_HELP                                                                             \
    "\n"                                                                                           \
    "DNS filter (answers allowed names from the policy's dns.upstream resolvers):\n"               \
    "  --dns ADDR:PORT|fd:U,T   serve DNS here, UDP and TCP (e.g. 127.0.0.1:53); fd:U,T\n"    \
    "                           serves on the inherited bound UDP socket U and listening\n"   \
    "                           TCP socket T instead of binding them\n"                 \
    "  --dns-mark N             SO_MARK on upstream DNS sockets, 0 for none (default 0x5c1ce)\n"   \
    "  --dns-timeout MS         per-try upstream timeout (default 2000)\n"                         \
    "  --dns-rate N             queries per second per client, 0 for no limit (default 500)\n"     \
    "  --dns-burst N            query burst per client (default 1000)\n"                           \
    "  --dns-max-name N         longest name answered, in bytes (default 160)\n"                   \
    "  --dns-max-labels N       most labels in a name answered (default 40)\n"                     \
    "  --dns-ttl-min SEC        shortest time a learned address is kept (default 30)\n"            \
    "  --dns-ttl-max SEC        longest time a learned address is kept, and the cap on\n"          \
    "                           A/AAAA TTLs in answers (default 3600)\n"                           \
    "  --dns-learn-max N        learned addresses kept in memory (default 4096)\n"             \
    "  --dns-learn-nft          also add them to the isolate sets of `sluice enforce --mode\n"    \
    "                           isolate` (needs CAP_NET_ADMIN; a failed update is SERVFAIL)\n"

/* One of the options above; 0, or -1 after printing why. */
int proxy_dns_option(int opt, const char *arg);
/* After all options: consistency (--dns-* without --dns, TTL range). */
int proxy_dns_check_options(void);
bool proxy_dns_enabled(void);

/* A policy the running filter could not work with (no dns.upstream):
 * -1 with a message naming source in err. 0 when fine or no filter. */
int proxy_dns_check_policy(const struct policy *p, const char *source, char *err, size_t err_size);

/* Adds the DNS address to cfg's own addresses (never dialled) and starts
 * the filter with the in-memory learn sink. 0, or -1 with err. */
int proxy_dns_start(struct proxy_config *cfg, char *err, size_t err_size);
void proxy_dns_stop(void);

/* admin_hooks.dns_status and admin_hooks.dns_learned. */
char *proxy_dns_status(void *arg);
char *proxy_dns_learned(void *arg);

#endif
