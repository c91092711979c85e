/* match: the compiled indexes behind policy_decide (internal to src/policy).
 *
 * A decision must not scan every rule, yet the first matching rule must win.
 * Each index maps a destination to a few short lists of rule ids, each list
 * in ascending order; the lookup walks those lists and returns the lowest id
 * the caller's predicate accepts (ports, methods, paths). Indexes are built
 * once, then only read, so lookups need no locks and no allocation. */
#ifndef SLUICE_POLICY_MATCH_H
#define SLUICE_POLICY_MATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policy/addr.h"

enum match_kind {
    MATCH_EXACT, /* "example.com": the name only */
    MATCH_BELOW, /* "*.example.com": strictly below the name */
    MATCH_APEX,  /* ".example.com": the name and everything below */
    MATCH_ANY,   /* "*": every name */
};

/* A run of rule ids inside an index's id array. */
struct match_list {
    uint32_t off;
    uint32_t n;
};

struct match_name_entry;
struct match_name_item;

/* Names by label-aligned suffix: one hash lookup per suffix of the host. */
struct match_names {
    struct match_name_entry *entries;
    size_t n_entries, cap_entries;
    uint32_t *slots; /* open addressing: entry index + 1, 0 when free */
    size_t n_slots;  /* power of two */
    uint32_t *ids;
    size_t n_ids;
    struct match_list any;
    struct match_name_item *items; /* build phase only */
    size_t n_items, cap_items;
};

struct match_addr_node;
struct match_addr_item;

/* Addresses in a binary prefix tree; node 0 is the IPv4 root, 1 the IPv6. */
struct match_addrs {
    struct match_addr_node *nodes;
    size_t n_nodes, cap_nodes;
    uint32_t *ids;
    size_t n_ids;
    struct match_addr_item *items; /* build phase only */
    size_t n_items, cap_items;
};

/* Whether rule id passes the checks the index cannot make. */
typedef bool (*match_accept_fn)(const void *ctx, uint32_t id);

int match_names_init(struct match_names *ix);
/* name is canonical (lower case, no trailing dot); ignored for MATCH_ANY.
 * Ids must be added in ascending order. */
int match_names_add(struct match_names *ix, enum match_kind kind, const char *name, size_t len,
                    uint32_t id);
int match_names_finish(struct match_names *ix);
/* Lowest accepted id among the rules whose pattern covers name, or -1. */
int64_t match_names_lookup(const struct match_names *ix, const char *name, size_t len,
                           match_accept_fn accept, const void *ctx);
void match_names_free(struct match_names *ix);

int match_addrs_init(struct match_addrs *ix);
int match_addrs_add(struct match_addrs *ix, const struct cidr *c, uint32_t id);
int match_addrs_finish(struct match_addrs *ix);
int64_t match_addrs_lookup(const struct match_addrs *ix, int family, const uint8_t *bytes,
                           match_accept_fn accept, const void *ctx);
void match_addrs_free(struct match_addrs *ix);

/* Shell-style glob: '*' any run (including '/'), '?' one byte. */
bool match_glob(const char *pattern, const char *text, size_t len);

/* addr.c: the special range of sa with the range written out
 * ("link-local / cloud metadata (169.254.0.0/16)"), or NULL. */
const char *addr_special_range_why(const struct sockaddr *sa, struct cidr *range);

#endif
