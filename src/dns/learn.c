/* learn: the in-memory learned-address table.
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), sized to twice the capacity so probes stay short. One mutex:
 * the filter's thread writes, the admin thread reads rarely. */
#include "dns/learn.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>

struct learn_slot {
    bool used;
    int family;
    uint8_t addr[16];
    uint32_t ttl;
    uint64_t expires; /* learn_now() seconds */
    char name[HOST_TEXT_SIZE];
};

struct learn_memory {
    pthread_mutex_t lock;
    struct learn_slot *slots;
    size_t n_slots; /* power of two, >= 2 * capacity */
    size_t capacity;
    size_t count; /* used slots, expired or not */
    uint64_t evictions;
};

uint64_t learn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

struct learn_memory *learn_memory_new(size_t capacity)
{
    if (capacity == 0 || capacity > LEARN_MEMORY_MAX_CAPACITY)
        return NULL;
    struct learn_memory *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->n_slots = 16;
    while (m->n_slots < 2 * capacity)
        m->n_slots *= 2;
    m->slots = calloc(m->n_slots, sizeof *m->slots);
    if (m->slots == NULL) {
        free(m);
        return NULL;
    }
    m->capacity = capacity;
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void learn_memory_free(struct learn_memory *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m->slots);
    free(m);
}

static size_t addr_len(int family)
{
    return family == AF_INET6 ? 16 : 4;
}

static size_t slot_hash(const struct learn_memory *m, int family, const uint8_t *addr)
{
    uint32_t h = 2166136261u ^ (uint32_t)family;
    for (size_t i = 0; i < addr_len(family); i++)
        h = (h ^ addr[i]) * 16777619u;
    return h & (m->n_slots - 1);
}

static bool slot_is(const struct learn_slot *s, int family, const uint8_t *addr)
{
    return s->used && s->family == family && memcmp(s->addr, addr, addr_len(family)) == 0;
}

static struct learn_slot *find(struct learn_memory *m, int family, const uint8_t *addr)
{
    for (size_t i = slot_hash(m, family, addr), n = 0; n < m->n_slots;
         i = (i + 1) & (m->n_slots - 1), n++) {
        struct learn_slot *s = &m->slots[i];
        if (!s->used)
            return NULL;
        if (slot_is(s, family, addr))
            return s;
    }
    return NULL;
}

/* Backward-shift deletion: later members of the probe run move up so that
 * lookups never stop early at the hole. */
static void remove_slot(struct learn_memory *m, size_t hole)
{
    size_t mask = m->n_slots - 1;
    m->slots[hole].used = false;
    m->count--;
    for (size_t j = (hole + 1) & mask; m->slots[j].used; j = (j + 1) & mask) {
        size_t home = slot_hash(m, m->slots[j].family, m->slots[j].addr);
        /* j's entry may fill the hole when its home is not in (hole, j]. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays)
            continue;
        m->slots[hole] = m->slots[j];
        m->slots[j].used = false;
        hole = j;
    }
}

/* Drops every expired entry; a pass over the table, done only when full. */
static void purge_expired(struct learn_memory *m, uint64_t now)
{
    for (size_t i = 0; i < m->n_slots;) {
        if (m->slots[i].used && m->slots[i].expires <= now) {
            remove_slot(m, i); /* i now holds a shifted entry: look again */
            continue;
        }
        i++;
    }
}

static void evict_soonest(struct learn_memory *m)
{
    size_t victim = m->n_slots;
    for (size_t i = 0; i < m->n_slots; i++) {
        if (m->slots[i].used &&
            (victim == m->n_slots || m->slots[i].expires < m->slots[victim].expires))
            victim = i;
    }
    if (victim < m->n_slots) {
        remove_slot(m, victim);
        m->evictions++;
    }
}

static void insert_one(struct learn_memory *m, const struct learned *e, uint64_t now)
{
    uint64_t expires = now + e->ttl;
    struct learn_slot *s = find(m, e->family, e->addr);
    if (s) {
        if (expires >= s->expires) {
            s->expires = expires;
            s->ttl = e->ttl;
            memcpy(s->name, e->name, sizeof s->name);
            s->name[sizeof s->name - 1] = '\0';
        }
        return;
    }
    if (m->count >= m->capacity) {
        purge_expired(m, now);
        if (m->count >= m->capacity)
            evict_soonest(m);
    }
    size_t i = slot_hash(m, e->family, e->addr);
    while (m->slots[i].used)
        i = (i + 1) & (m->n_slots - 1);
    s = &m->slots[i];
    memset(s, 0, sizeof *s);
    s->used = true;
    s->family = e->family;
    memcpy(s->addr, e->addr, addr_len(e->family));
    s->ttl = e->ttl;
    s->expires = expires;
    memcpy(s->name, e->name, sizeof s->name);
    s->name[sizeof s->name - 1] = '\0';
    m->count++;
}

int learn_memory_publish_at(struct learn_memory *m, const struct learned *entries, size_t n,
                            uint64_t now)
{
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < n; i++) {
        if (entries[i].family == AF_INET || entries[i].family == AF_INET6)
            insert_one(m, &entries[i], now);
    }
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int memory_publish(void *arg, const struct learned *entries, size_t n)
{
    return learn_memory_publish_at(arg, entries, n, learn_now());
}

struct learn_sink learn_memory_sink(struct learn_memory *m)
{
    struct learn_sink sink = {.publish = memory_publish, .arg = m};
    return sink;
}

size_t learn_memory_count(struct learn_memory *m, uint64_t now)
{
    size_t live = 0;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n_slots; i++)
        if (m->slots[i].used && m->slots[i].expires > now)
            live++;
    pthread_mutex_unlock(&m->lock);
    return live;
}

bool learn_memory_lookup(struct learn_memory *m, int family, const uint8_t *addr, uint64_t now,
                         uint32_t *remaining, char *name)
{
    bool found = false;
    pthread_mutex_lock(&m->lock);
    const struct learn_slot *s = find(m, family, addr);
    if (s && s->expires > now) {
        found = true;
        if (remaining)
            *remaining = (uint32_t)(s->expires - now);
        if (name)
            memcpy(name, s->name, HOST_TEXT_SIZE);
    }
    pthread_mutex_unlock(&m->lock);
    return found;
}

uint64_t learn_memory_evictions(struct learn_memory *m)
{
    pthread_mutex_lock(&m->lock);
    uint64_t n = m->evictions;
    pthread_mutex_unlock(&m->lock);
    return n;
}

static int compare_slots(const void *a, const void *b)
{
    const struct learn_slot *x = a, *y = b;
    if (x->family != y->family)
        return x->family == AF_INET ? -1 : 1;
    return memcmp(x->addr, y->addr, addr_len(x->family));
}

static json_t *entry_json(const struct learn_slot *s, uint64_t now)
{
    char text[INET6_ADDRSTRLEN] = "";
    inet_ntop(s->family, s->addr, text, sizeof text);
    return json_pack("{s:s, s:s, s:s, s:I, s:I}", "address", text, "family",
                     s->family == AF_INET ? "ipv4" : "ipv6", "name", s->name, "ttl",
                     (json_int_t)s->ttl, "expires_in", (json_int_t)(s->expires - now));
}

/* Copies the live entries out under the lock, then builds JSON without it
 * so the filter never waits on the admin thread's formatting. */
char *learn_memory_json(struct learn_memory *m, uint64_t now)
{
    pthread_mutex_lock(&m->lock);
    struct learn_slot *copy = malloc((m->count ? m->count : 1) * sizeof *copy);
    size_t n = 0;
    size_t capacity = m->capacity;
    uint64_t evictions = m->evictions;
    for (size_t i = 0; copy && i < m->n_slots; i++)
        if (m->slots[i].used && m->slots[i].expires > now)
            copy[n++] = m->slots[i];
    pthread_mutex_unlock(&m->lock);
    if (copy == NULL)
        return NULL;
    qsort(copy, n, sizeof *copy, compare_slots);
    json_t *entries = json_array();
    for (size_t i = 0; entries && i < n; i++)
        json_array_append_new(entries, entry_json(&copy[i], now));
    free(copy);
    json_t *doc = json_pack("{s:I, s:I, s:I, s:o}", "capacity", (json_int_t)capacity, "count",
                            (json_int_t)n, "evictions", (json_int_t)evictions, "entries", entries);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    return text;
}
