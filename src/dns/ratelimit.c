/* ratelimit: per-client token buckets in a fixed open-addressed table. */
#include "dns/ratelimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_MAX 8 /* slots looked at per client before one is taken over */

struct bucket {
    bool used;
    uint8_t key[16]; /* IPv4 stored mapped */
    double tokens;
    uint64_t last_us;
};

struct dns_ratelimit {
    double rate;
    double burst;
    struct bucket slots[DNS_RATELIMIT_SLOTS];
};

struct dns_ratelimit *dns_ratelimit_new(uint32_t rate, uint32_t burst)
{
    if (rate == 0 || burst == 0)
        return NULL;
    struct dns_ratelimit *rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        return NULL;
    rl->rate = rate;
    rl->burst = burst;
    return rl;
}

void dns_ratelimit_free(struct dns_ratelimit *rl)
{
    free(rl);
}

static void client_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = 0xff;
        key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static struct bucket *find_bucket(struct dns_ratelimit *rl, const uint8_t key[16], uint64_t now)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    struct bucket *oldest = NULL;
    for (size_t probe = 0; probe < PROBE_MAX; probe++) {
        struct bucket *b = &rl->slots[(h + probe) % DNS_RATELIMIT_SLOTS];
        if (b->used && memcmp(b->key, key, 16) == 0)
            return b;
        if (!b->used) {
            oldest = b;
            break;
        }
        if (oldest == NULL || b->last_us < oldest->last_us)
            oldest = b;
    }
    oldest->used = true;
    memcpy(oldest->key, key, 16);
    oldest->tokens = rl->burst;
    oldest->last_us = now;
    return oldest;
}

bool dns_ratelimit_take(struct dns_ratelimit *rl, const struct sockaddr *client, uint64_t now_us)
{
    uint8_t key[16];
    if (rl == NULL)
        return true;
    client_key(client, key);
    struct bucket *b = find_bucket(rl, key, now_us);
    if (now_us > b->last_us) {
        b->tokens += (double)(now_us - b->last_us) * rl->rate / 1e6;
        if (b->tokens > rl->burst)
            b->tokens = rl->burst;
        b->last_us = now_us;
    }
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}
