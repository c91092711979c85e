/* proxy_clients: a gateway usually starts before the sandboxes whose names
 * its "clients" list, so a name that did not resolve at load is tried again
 * on a timer rather than waiting for an operator's reload. Only the
 * addresses may change this way: a policy whose files were edited waits
 * for SIGHUP or POST /reload, which report errors where an operator looks. */
#include "cmd/proxy_clients.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "policy/policy.h"
#include "proxy/proxy.h"

static struct event *timer;
static const char *file;

static bool has_names(const struct policy *p)
{
    for (size_t i = 0; i < policy_client_count(p); i++) {
        struct policy_client_info ci;
        if (policy_client_info(p, i, &ci) == 0 && ci.n_names > 0)
            return true;
    }
    return false;
}

/* Same texts (main and every client file, by hash), so only what names
 * resolved to may differ. */
static bool same_texts(const struct policy *a, const struct policy *b)
{
    if (strcmp(policy_hash(a), policy_hash(b)) != 0 ||
        policy_client_count(a) != policy_client_count(b))
        return false;
    for (size_t i = 0; i < policy_client_count(a); i++) {
        struct policy_client_info x, y;
        if (policy_client_info(a, i, &x) < 0 || policy_client_info(b, i, &y) < 0 ||
            strcmp(policy_hash(x.policy), policy_hash(y.policy)) != 0)
            return false;
    }
    return true;
}

static bool cidr_equal(const struct cidr *a, const struct cidr *b)
{
    return a->family == b->family && a->prefix == b->prefix &&
           memcmp(a->bytes, b->bytes, sizeof a->bytes) == 0;
}

/* In any order: resolvers rotate their answers. */
static bool same_addresses(const struct policy *a, const struct policy *b)
{
    for (size_t i = 0; i < policy_client_count(a); i++) {
        struct policy_client_info x, y;
        if (policy_client_info(a, i, &x) < 0 || policy_client_info(b, i, &y) < 0 ||
            x.n_sources != y.n_sources)
            return false;
        for (size_t s = 0; s < x.n_sources; s++) {
            bool found = false;
            for (size_t t = 0; t < y.n_sources && !found; t++)
                found = cidr_equal(&x.sources[s], &y.sources[t]);
            if (!found)
                return false;
        }
    }
    return true;
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    struct policy *live = proxy_policy_get();
    struct policy *fresh = NULL;
    /* A policy installed by PUT /policy is not the file's: leave it. */
    if (!live || !has_names(live) || strcmp(policy_source(live), file) != 0)
        goto out;
    if (!(fresh = policy_load_file(file, NULL)))
        goto out; /* the next reload says what is wrong */
    if (same_texts(live, fresh) && !same_addresses(live, fresh)) {
        proxy_policy_set(fresh);
        fresh = NULL;
        log_message("info", "client source names resolved to new addresses", file);
    }
out:
    policy_unref(fresh);
    policy_unref(live);
}

int proxy_clients_start(struct event_base *base, const char *policy_file, int refresh_s)
{
    if (refresh_s <= 0)
        return 0;
    file = policy_file;
    timer = event_new(base, -1, EV_PERSIST, on_refresh, NULL);
    if (!timer)
        return -1;
    struct timeval tv = {.tv_sec = refresh_s};
    return event_add(timer, &tv) == 0 ? 0 : -1;
}

void proxy_clients_stop(void)
{
    if (timer)
        event_free(timer);
    timer = NULL;
}
