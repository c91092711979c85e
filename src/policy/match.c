/* match: suffix hash for names, prefix tree for addresses.
 *
 * Both indexes are built in two steps: ids are recorded as (place, id) items
 * while the policy is compiled, then finish() lays every place's ids out as
 * one contiguous ascending run, so a lookup touches a few short arrays. */
#include "policy/match.h"

#include <stdlib.h>
#include <string.h>

#define FNV_OFFSET 2166136261u
#define FNV_PRIME 16777619u
/* Slots start here and double while more than half are used. */
#define NAMES_MIN_SLOTS 16
#define N_NAME_LISTS 3 /* exact, below, apex */

struct match_name_entry {
    char *name;
    size_t len;
    uint32_t hash;
    struct match_list lists[N_NAME_LISTS];
};

struct match_name_item {
    uint32_t entry; /* UINT32_MAX for MATCH_ANY */
    uint8_t kind;
    uint32_t id;
};

struct match_addr_node {
    uint32_t child[2]; /* 0 = none; node 0 is a root, never a child */
    struct match_list list;
};

struct match_addr_item {
    uint32_t node;
    uint32_t id;
};

/* Grows *arr (of elem bytes each) so that one more element fits. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    if (ncap > SIZE_MAX / elem)
        return -1;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* The hash runs from the last byte to the first, so a lookup can hash each
 * label-aligned suffix of a host in one right-to-left pass. */
static uint32_t hash_reverse(const char *s, size_t len)
{
    uint32_t h = FNV_OFFSET;
    for (size_t i = len; i > 0; i--)
        h = (h ^ (uint8_t)s[i - 1]) * FNV_PRIME;
    return h;
}

static const struct match_name_entry *names_find(const struct match_names *ix, uint32_t hash,
                                                 const char *name, size_t len)
{
    if (ix->n_slots == 0)
        return NULL;
    size_t mask = ix->n_slots - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        uint32_t slot = ix->slots[i];
        if (slot == 0)
            return NULL;
        const struct match_name_entry *e = &ix->entries[slot - 1];
        if (e->hash == hash && e->len == len && memcmp(e->name, name, len) == 0)
            return e;
    }
}

static void slots_insert(uint32_t *slots, size_t n_slots, uint32_t hash, uint32_t value)
{
    size_t mask = n_slots - 1;
    size_t i = hash & mask;
    while (slots[i] != 0)
        i = (i + 1) & mask;
    slots[i] = value;
}

static int names_rehash(struct match_names *ix)
{
    size_t n = ix->n_slots ? ix->n_slots * 2 : NAMES_MIN_SLOTS;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < ix->n_entries; i++)
        slots_insert(slots, n, ix->entries[i].hash, (uint32_t)i + 1);
    free(ix->slots);
    ix->slots = slots;
    ix->n_slots = n;
    return 0;
}

/* Index of the entry for name, created when missing; -1 on allocation failure. */
static int64_t names_entry(struct match_names *ix, const char *name, size_t len)
{
    uint32_t hash = hash_reverse(name, len);
    const struct match_name_entry *found = names_find(ix, hash, name, len);
    if (found)
        return found - ix->entries;
    if ((ix->n_entries + 1) * 2 > ix->n_slots && names_rehash(ix) < 0)
        return -1;
    if (grow((void **)&ix->entries, &ix->cap_entries, ix->n_entries, sizeof *ix->entries) < 0)
        return -1;
    struct match_name_entry *e = &ix->entries[ix->n_entries];
    memset(e, 0, sizeof *e);
    e->name = malloc(len + 1);
    if (!e->name)
        return -1;
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    e->len = len;
    e->hash = hash;
    slots_insert(ix->slots, ix->n_slots, hash, (uint32_t)ix->n_entries + 1);
    return (int64_t)ix->n_entries++;
}

int match_names_init(struct match_names *ix)
{
    memset(ix, 0, sizeof *ix);
    return 0;
}

int match_names_add(struct match_names *ix, enum match_kind kind, const char *name, size_t len,
                    uint32_t id)
{
    uint32_t entry = UINT32_MAX;
    if (kind != MATCH_ANY) {
        int64_t e = names_entry(ix, name, len);
        if (e < 0)
            return -1;
        entry = (uint32_t)e;
    }
    if (grow((void **)&ix->items, &ix->cap_items, ix->n_items, sizeof *ix->items) < 0)
        return -1;
    ix->items[ix->n_items++] = (struct match_name_item){entry, (uint8_t)kind, id};
    return 0;
}

static struct match_list *names_list(struct match_names *ix, const struct match_name_item *it)
{
    if (it->kind == MATCH_ANY)
        return &ix->any;
    return &ix->entries[it->entry].lists[it->kind];
}

int match_names_finish(struct match_names *ix)
{
    uint32_t off = 0;

    for (size_t i = 0; i < ix->n_items; i++)
        names_list(ix, &ix->items[i])->n++;
    for (size_t i = 0; i < ix->n_entries; i++) {
        for (int k = 0; k < N_NAME_LISTS; k++) {
            ix->entries[i].lists[k].off = off;
            off += ix->entries[i].lists[k].n;
            ix->entries[i].lists[k].n = 0;
        }
    }
    ix->any.off = off;
    off += ix->any.n;
    ix->any.n = 0;
    ix->ids = malloc((off ? off : 1) * sizeof *ix->ids);
    if (!ix->ids)
        return -1;
    ix->n_ids = off;
    /* Items were added in ascending id order, so each run stays sorted. */
    for (size_t i = 0; i < ix->n_items; i++) {
        struct match_list *l = names_list(ix, &ix->items[i]);
        ix->ids[l->off + l->n++] = ix->items[i].id;
    }
    free(ix->items);
    ix->items = NULL;
    ix->n_items = ix->cap_items = 0;
    return 0;
}

/* Lowers *best to the first id of l that the predicate accepts; ids at or
 * above *best cannot win any more, which ends the walk early. */
static void scan(const uint32_t *ids, struct match_list l, match_accept_fn accept, const void *ctx,
                 int64_t *best)
{
    for (uint32_t k = 0; k < l.n; k++) {
        uint32_t id = ids[l.off + k];
        if (id >= *best)
            return;
        if (accept(ctx, id)) {
            *best = id;
            return;
        }
    }
}

int64_t match_names_lookup(const struct match_names *ix, const char *name, size_t len,
                           match_accept_fn accept, const void *ctx)
{
    int64_t best = INT64_MAX;
    uint32_t h = FNV_OFFSET;

    for (size_t i = len; i > 0 && ix->n_entries > 0; i--) {
        h = (h ^ (uint8_t)name[i - 1]) * FNV_PRIME;
        size_t start = i - 1;
        if (start > 0 && name[start - 1] != '.')
            continue;
        const struct match_name_entry *e = names_find(ix, h, name + start, len - start);
        if (!e)
            continue;
        if (start == 0)
            scan(ix->ids, e->lists[MATCH_EXACT], accept, ctx, &best);
        else
            scan(ix->ids, e->lists[MATCH_BELOW], accept, ctx, &best);
        scan(ix->ids, e->lists[MATCH_APEX], accept, ctx, &best);
    }
    scan(ix->ids, ix->any, accept, ctx, &best);
    return best == INT64_MAX ? -1 : best;
}

void match_names_free(struct match_names *ix)
{
    for (size_t i = 0; i < ix->n_entries; i++)
        free(ix->entries[i].name);
    free(ix->entries);
    free(ix->slots);
    free(ix->ids);
    free(ix->items);
    memset(ix, 0, sizeof *ix);
}

static int addrs_new_node(struct match_addrs *ix, uint32_t *out)
{
    if (ix->n_nodes >= UINT32_MAX ||
        grow((void **)&ix->nodes, &ix->cap_nodes, ix->n_nodes, sizeof *ix->nodes) < 0)
        return -1;
    memset(&ix->nodes[ix->n_nodes], 0, sizeof ix->nodes[0]);
    *out = (uint32_t)ix->n_nodes++;
    return 0;
}

int match_addrs_init(struct match_addrs *ix)
{
    uint32_t root;
    memset(ix, 0, sizeof *ix);
    if (addrs_new_node(ix, &root) < 0 || addrs_new_node(ix, &root) < 0) {
        match_addrs_free(ix);
        return -1;
    }
    return 0;
}

static unsigned bit_at(const uint8_t *bytes, unsigned i)
{
    return (bytes[i / 8] >> (7 - i % 8)) & 1u;
}

int match_addrs_add(struct match_addrs *ix, const struct cidr *c, uint32_t id)
{
    uint32_t node = c->family == AF_INET ? 0 : 1;
    for (unsigned i = 0; i < c->prefix; i++) {
        unsigned b = bit_at(c->bytes, i);
        if (ix->nodes[node].child[b] == 0) {
            uint32_t n;
            if (addrs_new_node(ix, &n) < 0)
                return -1;
            ix->nodes[node].child[b] = n;
        }
        node = ix->nodes[node].child[b];
    }
    if (grow((void **)&ix->items, &ix->cap_items, ix->n_items, sizeof *ix->items) < 0)
        return -1;
    ix->items[ix->n_items++] = (struct match_addr_item){node, id};
    return 0;
}

int match_addrs_finish(struct match_addrs *ix)
{
    uint32_t off = 0;
    for (size_t i = 0; i < ix->n_items; i++)
        ix->nodes[ix->items[i].node].list.n++;
    for (size_t i = 0; i < ix->n_nodes; i++) {
        ix->nodes[i].list.off = off;
        off += ix->nodes[i].list.n;
        ix->nodes[i].list.n = 0;
    }
    ix->ids = malloc((off ? off : 1) * sizeof *ix->ids);
    if (!ix->ids)
        return -1;
    ix->n_ids = off;
    for (size_t i = 0; i < ix->n_items; i++) {
        struct match_list *l = &ix->nodes[ix->items[i].node].list;
        ix->ids[l->off + l->n++] = ix->items[i].id;
    }
    free(ix->items);
    ix->items = NULL;
    ix->n_items = ix->cap_items = 0;
    return 0;
}

int64_t match_addrs_lookup(const struct match_addrs *ix, int family, const uint8_t *bytes,
                           match_accept_fn accept, const void *ctx)
{
    int64_t best = INT64_MAX;
    unsigned bits = family == AF_INET ? 32 : 128;
    uint32_t node = family == AF_INET ? 0 : 1;

    if (ix->n_nodes == 0 || (family != AF_INET && family != AF_INET6))
        return -1;
    /* Every node on the path is a prefix containing the address. */
    for (unsigned depth = 0;; depth++) {
        scan(ix->ids, ix->nodes[node].list, accept, ctx, &best);
        if (depth == bits)
            break;
        node = ix->nodes[node].child[bit_at(bytes, depth)];
        if (node == 0)
            break;
    }
    return best == INT64_MAX ? -1 : best;
}

void match_addrs_free(struct match_addrs *ix)
{
    free(ix->nodes);
    free(ix->ids);
    free(ix->items);
    memset(ix, 0, sizeof *ix);
}

bool match_glob(const char *pattern, const char *text, size_t len)
{
    size_t plen = strlen(pattern);
    size_t p = 0, t = 0;
    size_t star = SIZE_MAX, resume = 0;

    /* Greedy with one backtrack point: the last '*' seen. Linear space and
     * no recursion, so a hostile path cannot blow the stack. */
    while (t < len) {
        if (p < plen && pattern[p] == '*') {
            star = p++;
            resume = t;
        } else if (p < plen && (pattern[p] == '?' || pattern[p] == text[t])) {
            p++;
            t++;
        } else if (star != SIZE_MAX) {
            p = star + 1;
            t = ++resume;
        } else {
            return false;
        }
    }
    while (p < plen && pattern[p] == '*')
        p++;
    return p == plen;
}
