/* learnset: a learn sink that adds (address . port) elements with a
 * timeout to the isolate sets through libnftables. */
#include "fw/learnset.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "fw/nft.h"
#include "fw/ruleset.h"
#include "policy/policy.h"

/* Script for one batch: three lines per family of at most
 * FW_MAX_LEARN_BATCH elements of ~70 bytes. */
#define LEARN_SCRIPT_MAX (FW_MAX_LEARN_BATCH * 3 * 80 + 1024)

struct fw_learnset {
    struct fw_learnset_config cfg;
    struct fw_nft *nft;
    pthread_mutex_t lock;
    char *script;
    struct fw_learned *batch;
    atomic_uint_fast64_t added;
    atomic_uint_fast64_t failures;
};

static void add_port(uint16_t *ports, size_t *n, size_t max, long v)
{
    if (v < 1 || v > 65535 || *n >= max)
        return;
    for (size_t i = 0; i < *n; i++)
        if (ports[i] == (uint16_t)v)
            return;
    ports[(*n)++] = (uint16_t)v;
}

/* Every port some rule names, read back from the rules' text (the policy
 * keeps no other public list of them), plus the web ports. */
static size_t candidate_ports(const struct policy *p, uint16_t *ports, size_t max)
{
    size_t n = 0;
    add_port(ports, &n, max, 80);
    add_port(ports, &n, max, 443);
    for (size_t i = 0; i < policy_rule_count(p); i++) {
        const char *text = policy_rule_text(p, i);
        json_t *rule = text ? json_loads(text, 0, NULL) : NULL;
        json_t *list = json_object_get(rule, "ports");
        size_t k;
        json_t *v;
        json_array_foreach(list, k, v) add_port(ports, &n, max, (long)json_integer_value(v));
        json_decref(rule);
    }
    return n;
}

size_t fw_learnset_ports(const struct policy *p, const char *name, uint16_t *ports, size_t max)
{
    uint16_t cand[FW_LEARNSET_MAX_PORTS];
    size_t nc = candidate_ports(p, cand, FW_LEARNSET_MAX_PORTS), n = 0;
    struct dest d;
    const char *why = NULL;

    memset(&d, 0, sizeof d);
    if (host_canonicalise(name, strlen(name), &d.host, &why) < 0)
        return 0;
    d.kind = DEST_TRANSPARENT;
    for (size_t i = 0; i < nc && n < max; i++) {
        struct decision dec;
        d.port = cand[i];
        policy_decide(p, &d, &dec);
        if (dec.verdict == VERDICT_ALLOW && !dec.needs_intercept)
            ports[n++] = cand[i];
    }
    return n;
}

static int flush_batch(struct fw_learnset *s, size_t n)
{
    struct fw_text t;
    char err[FW_NFT_ERR_SIZE];
    if (n == 0)
        return 0;
    fw_text_init(&t, s->script, LEARN_SCRIPT_MAX);
    if (fw_ruleset_learn(s->batch, n, &t) < 0 ||
        fw_nft_run(s->nft, s->script, err, sizeof err) < 0) {
        atomic_fetch_add(&s->failures, 1);
        return -1;
    }
    atomic_fetch_add(&s->added, n);
    return 0;
}

static int publish_locked(struct fw_learnset *s, const struct policy *p,
                          const struct learned *entries, size_t n)
{
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t ports[FW_LEARNSET_MAX_PORTS];
        size_t np = fw_learnset_ports(p, entries[i].name, ports, FW_LEARNSET_MAX_PORTS);
        if (entries[i].family != AF_INET && entries[i].family != AF_INET6)
            continue;
        for (size_t k = 0; k < np; k++) {
            struct fw_learned *e = &s->batch[nb++];
            e->family = entries[i].family;
            memcpy(e->addr, entries[i].addr, sizeof e->addr);
            e->port = ports[k];
            e->timeout = entries[i].ttl ? entries[i].ttl : 1;
            if (nb == FW_MAX_LEARN_BATCH) {
                if (flush_batch(s, nb) < 0)
                    return -1;
                nb = 0;
            }
        }
    }
    return flush_batch(s, nb);
}

static int publish(void *arg, const struct learned *entries, size_t n)
{
    struct fw_learnset *s = arg;
    int rc;
    if (s->cfg.next.publish && s->cfg.next.publish(s->cfg.next.arg, entries, n) < 0)
        return -1;
    struct policy *p = s->cfg.policy_get ? s->cfg.policy_get() : NULL;
    if (!p) {
        atomic_fetch_add(&s->failures, 1);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    rc = publish_locked(s, p, entries, n);
    pthread_mutex_unlock(&s->lock);
    policy_unref(p);
    return rc;
}

struct fw_learnset *fw_learnset_new(const struct fw_learnset_config *cfg, char *err,
                                    size_t err_size)
{
    struct fw_learnset *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->cfg = *cfg;
    s->script = malloc(LEARN_SCRIPT_MAX);
    s->batch = calloc(FW_MAX_LEARN_BATCH, sizeof *s->batch);
    if (!s->script || !s->batch)
        goto oom;
    if (!(s->nft = fw_nft_new())) {
        snprintf(err, err_size, "libnftables: cannot make a context");
        fw_learnset_free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    return s;
oom:
    snprintf(err, err_size, "out of memory");
    fw_learnset_free(s);
    return NULL;
}

void fw_learnset_free(struct fw_learnset *s)
{
    if (!s)
        return;
    if (s->nft) {
        fw_nft_free(s->nft);
        pthread_mutex_destroy(&s->lock);
    }
    free(s->script);
    free(s->batch);
    free(s);
}

struct learn_sink fw_learnset_sink(struct fw_learnset *s)
{
    struct learn_sink sink = {publish, s};
    return sink;
}

uint64_t fw_learnset_added(const struct fw_learnset *s)
{
    return atomic_load(&((struct fw_learnset *)s)->added);
}

uint64_t fw_learnset_failures(const struct fw_learnset *s)
{
    return atomic_load(&((struct fw_learnset *)s)->failures);
}
