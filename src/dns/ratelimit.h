/* ratelimit: a token bucket per client address for the DNS filter.
 *
 * Used from the filter's one thread only, so it takes no lock. The table is
 * fixed: a client that cannot get a slot within a short probe takes over
 * the least recently seen one, whose bucket had the longest time to refill
 * anyway. */
#ifndef SLUICE_DNS_RATELIMIT_H
#define SLUICE_DNS_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DNS_RATELIMIT_SLOTS 4096

struct dns_ratelimit;

/* rate: queries per second refilled; burst: bucket size (>= 1). */
struct dns_ratelimit *dns_ratelimit_new(uint32_t rate, uint32_t burst);
void dns_ratelimit_free(struct dns_ratelimit *rl);
/* Takes one token for the client at now_us (any monotonic microsecond
 * clock); false when its bucket is empty. */
bool dns_ratelimit_take(struct dns_ratelimit *rl, const struct sockaddr *client, uint64_t now_us);

#endif
