/* learn: where the DNS filter publishes the addresses it let through.
 *
 * Every A/AAAA record of an allowed answer becomes a `struct learned`
 * (address, the name asked for, TTL clamped by the filter) handed to a sink
 * synchronously, before the answer is sent: a workload can never connect to
 * an address before the enforcement layer knows it. The filter knows only
 * the sink interface, so the kernel-enforcement role plugs in an nftables-set
 * sink without touching the filter. The in-memory sink below is the default;
 * the admin API shows its contents (GET /dns/learned). */
#ifndef SLUICE_DNS_LEARN_H
#define SLUICE_DNS_LEARN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/host.h"

struct learned {
    int family;                /* AF_INET or AF_INET6 */
    uint8_t addr[16];          /* network order; 4 bytes used for AF_INET */
    uint32_t ttl;              /* seconds, already clamped to the filter's range */
    char name[HOST_TEXT_SIZE]; /* canonical name the client asked for */
};

/* publish() is called on the filter's thread with the entries of one
 * answer (n >= 1). It returns 0, or -1 when it could not record them: the
 * filter then answers SERVFAIL instead of handing out an address the
 * enforcement layer does not know (fail closed). It must not block for
 * long: the filter's thread waits for it. */
struct learn_sink {
    int (*publish)(void *arg, const struct learned *entries, size_t n);
    void *arg;
};

/* ---- the in-memory sink ----------------------------------------------------
 * A bounded table of (address -> name, expiry), thread safe: the filter
 * publishes on its thread, the admin API reads on the main thread. An
 * address seen again keeps the later of its two expiries. When the table is
 * full, expired entries go first, then the one expiring soonest. */

#define LEARN_MEMORY_DEFAULT_CAPACITY 4096
#define LEARN_MEMORY_MAX_CAPACITY (1024 * 1024)

struct learn_memory;

struct learn_memory *learn_memory_new(size_t capacity);
void learn_memory_free(struct learn_memory *m);
/* A sink that records into m. */
struct learn_sink learn_memory_sink(struct learn_memory *m);

/* Same as the sink's publish, with the time given (monotonic seconds), so
 * tests can drive expiry without sleeping. */
int learn_memory_publish_at(struct learn_memory *m, const struct learned *entries, size_t n,
                            uint64_t now);
/* Live entries (not expired at now). */
size_t learn_memory_count(struct learn_memory *m, uint64_t now);
/* Whether addr is learned and live at now; *remaining gets the seconds
 * left, name (when not NULL, HOST_TEXT_SIZE bytes) the name. */
bool learn_memory_lookup(struct learn_memory *m, int family, const uint8_t *addr, uint64_t now,
                         uint32_t *remaining, char *name);
/* Times an entry was dropped to make room for another. */
uint64_t learn_memory_evictions(struct learn_memory *m);

/* JSON for GET /dns/learned, malloc'd (caller frees), or NULL when out of
 * memory: {"capacity":N,"count":N,"evictions":N,"entries":[{"address":
 * "192.0.2.10","family":"ipv4","name":"allowed.test","ttl":60,
 * "expires_in":59}, ...]} sorted by address. */
char *learn_memory_json(struct learn_memory *m, uint64_t now);

/* Monotonic seconds, the clock every expiry above is measured on. */
uint64_t learn_now(void);

#endif
