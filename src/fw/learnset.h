/* learnset: the DNS filter's learned addresses, into the isolate sets.
 *
 * An implementation of the learn sink (src/dns/learn.h): every address of
 * an allowed answer becomes, for each port the policy allows the name on
 * without interception, an element (address . port) of `inet sluice
 * allow4`/`allow6` with the answer's (clamped) TTL as its timeout. One
 * answer is one nftables transaction, run before the workload gets the
 * answer; when it fails the sink returns -1 and the filter answers
 * SERVFAIL (fail closed). */
#ifndef SLUICE_FW_LEARNSET_H
#define SLUICE_FW_LEARNSET_H

#include <stddef.h>
#include <stdint.h>

#include "dns/learn.h"

struct policy;

#define FW_LEARNSET_MAX_PORTS 64 /* ports tried per name */

struct fw_learnset_config {
    /* The live policy, referenced (proxy_policy_get); it says which ports
     * each name may be reached on. */
    struct policy *(*policy_get)(void);
    /* Called first with the same entries (the in-memory sink behind GET
     * /dns/learned); publish NULL for none. */
    struct learn_sink next;
};

struct fw_learnset;

/* NULL with err when libnftables cannot be used. */
struct fw_learnset *fw_learnset_new(const struct fw_learnset_config *cfg, char *err,
                                    size_t err_size);
void fw_learnset_free(struct fw_learnset *s);
struct learn_sink fw_learnset_sink(struct fw_learnset *s);
/* Elements added since start, and transactions that failed. */
uint64_t fw_learnset_added(const struct fw_learnset *s);
uint64_t fw_learnset_failures(const struct fw_learnset *s);

/* The ports policy p allows `name` on directly: every port named by some
 * rule, plus 80 and 443, decided as the transparent listener would
 * (rules without "ports" mean 80 and 443), less those whose rule needs
 * interception (methods, paths, inject: a direct connection would skip
 * those checks). Returns the count written to ports (at most max). */
size_t fw_learnset_ports(const struct policy *p, const char *name, uint16_t *ports, size_t max);

#endif
