/* dial: resolve once, check every address, connect only to a checked one,
 * trying the next checked address when a dial fails (SPEC §2). */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/metrics.h"
#include "proxy/conn.h"
#include "proxy/transparent.h"

static void dial_next(struct conn *c);

static socklen_t sockaddr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* Whether sa is one of sluice's own listeners: dialling it would loop. */
static bool is_own_listener(const struct proxy_config *cfg, const struct sockaddr_storage *sa)
{
    for (size_t i = 0; i < cfg->n_own; i++) {
        const struct sockaddr_storage *own = &cfg->own[i];
        if (own->ss_family != sa->ss_family)
            continue;
        if (sa->ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)own;
            const struct sockaddr_in *b = (const struct sockaddr_in *)sa;
            if (a->sin_port == b->sin_port &&
                (a->sin_addr.s_addr == htonl(INADDR_ANY) ||
                 a->sin_addr.s_addr == b->sin_addr.s_addr))
                return true;
        } else {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)own;
            const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)sa;
            if (a->sin6_port == b->sin6_port &&
                (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr) ||
                 memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0))
                return true;
        }
    }
    return false;
}

/* Keeps the addresses the policy permits; remembers why the first refused
 * one was refused, for the 403 when none is left. */
static const char *add_checked_address(struct conn *c, const struct sockaddr *sa, const char *why)
{
    if (c->n_addrs >= CONN_MAX_ADDRS)
        return why;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                             : sizeof(struct sockaddr_in6));
    set_port(&ss, c->dest.port);
    const char *refusal = NULL;
    if (!policy_address_permitted(c->policy, &c->dest, &c->decision, (struct sockaddr *)&ss,
                                  &refusal))
        return why ? why : (refusal ? refusal : "address refused by policy");
    if (is_own_listener(c->w->cfg, &ss))
        return why ? why : "the destination is sluice itself";
    if (c->transparent && !transparent_address_matches(c, &ss))
        return why ? why : "the connection was made to another address than the name's";
    for (size_t i = 0; i < c->n_addrs; i++)
        if (memcmp(&c->addrs[i], &ss, sizeof ss) == 0)
            return why;
    c->addrs[c->n_addrs++] = ss;
    return why;
}

static void refuse_all_addresses(struct conn *c, const char *why)
{
    metrics_count_decision(c->is_connect ? METRICS_KIND_CONNECT : METRICS_KIND_HTTP, METRICS_DENY,
                           c->decision.rule);
    char reason[256];
    snprintf(reason, sizeof reason, "%s resolves only to refused addresses: %s",
             c->dest.host.text, why ? why : "none usable");
    answer_denied(c, reason);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct conn *c = arg;
    c->resolve_pending = false;
    c->resolve = NULL;
    if (c->close_after_resolve) {
        if (res)
            evutil_freeaddrinfo(res);
        free(c);
        return;
    }
    uint64_t took = conn_now_us() - c->resolve_started_us;
    metrics_observe_resolver(took, result != 0);
    if (result != 0) {
        char reason[HOST_TEXT_SIZE + 64];
        bool missing = result == EVUTIL_EAI_NONAME || result == EVUTIL_EAI_NODATA;
        snprintf(reason, sizeof reason, "DNS: %s: %s", c->dest.host.text,
                 missing ? "name not found" : evutil_gai_strerror(result));
        metrics_add(&metrics.errors[METRICS_ERR_UPSTREAM_502], 1);
        conn_log(c, "error", 502, reason);
        answer_error(c, 502, reason, true);
        return;
    }
    const char *why = NULL;
    for (struct evutil_addrinfo *ai = res; ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
            why = add_checked_address(c, ai->ai_addr, why);
    evutil_freeaddrinfo(res);
    if (c->n_addrs == 0) {
        refuse_all_addresses(c, why);
        return;
    }
    dial_next(c);
}

void dial_start(struct conn *c)
{
    c->n_addrs = 0;
    c->next_addr = 0;
    if (c->dest.host.kind != HOST_KIND_NAME) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (c->dest.host.kind == HOST_KIND_IPV4) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            sin->sin_family = AF_INET;
            sin->sin_addr = c->dest.host.addr.v4;
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            sin6->sin6_family = AF_INET6;
            sin6->sin6_addr = c->dest.host.addr.v6;
        }
        const char *why = add_checked_address(c, (struct sockaddr *)&ss, NULL);
        if (c->n_addrs == 0) {
            char reason[256];
            snprintf(reason, sizeof reason, "address refused: %s", why ? why : "not permitted");
            metrics_count_decision(c->is_connect ? METRICS_KIND_CONNECT : METRICS_KIND_HTTP,
                                   METRICS_DENY, c->decision.rule);
            answer_denied(c, reason);
            return;
        }
        dial_next(c);
        return;
    }
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    conn_set_state(c, CONN_RESOLVING);
    c->resolve_started_us = conn_now_us();
    c->resolve_pending = true;
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(c->w->dns, c->dest.host.text, NULL, &hints, on_resolved, c);
    /* The callback may already have run (and may have freed c when the
     * answer came from a cache or hosts file); only keep req otherwise. */
    if (req != NULL)
        c->resolve = req;
}

void dial_cancel(struct conn *c)
{
    c->close_after_resolve = true;
    if (c->resolve)
        evdns_getaddrinfo_cancel(c->resolve);
}

static void upstream_connect_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(c->upstream_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        bufferevent_set_timeouts(bev, NULL, NULL);
        conn_upstream_connected(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT)
        c->last_dial_error = ETIMEDOUT;
    else
        c->last_dial_error = EVUTIL_SOCKET_ERROR() ? EVUTIL_SOCKET_ERROR() : ECONNREFUSED;
    conn_release_bufferevent(c->upstream);
    c->upstream = NULL;
    close(c->upstream_fd);
    c->upstream_fd = -1;
    dial_next(c);
}

static void dial_failed(struct conn *c)
{
    int err = c->last_dial_error;
    int status = err == ETIMEDOUT ? 504 : 502;
    char reason[HOST_TEXT_SIZE + 96];
    const char *what = err == ETIMEDOUT       ? "connection timed out"
                       : err == ECONNREFUSED  ? "connection refused"
                       : err == ENETUNREACH   ? "network unreachable"
                       : err == EHOSTUNREACH  ? "host unreachable"
                                              : strerror(err);
    snprintf(reason, sizeof reason, "upstream %s port %u: %s", c->dest.host.text,
             (unsigned)c->dest.port, what);
    metrics_add(&metrics.errors[status == 504 ? METRICS_ERR_UPSTREAM_504
                                              : METRICS_ERR_UPSTREAM_502],
                1);
    conn_log(c, "error", status, reason);
    answer_error(c, status, reason, true);
}

static void dial_next(struct conn *c)
{
    while (c->next_addr < c->n_addrs) {
        struct sockaddr_storage *ss = &c->addrs[c->next_addr++];
        int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            c->last_dial_error = errno;
            continue;
        }
        unsigned int mark = c->w->cfg->mark;
        if (mark != 0)
            setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
        c->upstream_fd = fd;
        c->upstream = bufferevent_socket_new(c->w->base, fd, 0);
        if (c->upstream == NULL) {
            close(fd);
            c->upstream_fd = -1;
            c->last_dial_error = ENOMEM;
            continue;
        }
        c->upstream_addr = *ss;
        if (ss->ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr, c->upstream_ip,
                      sizeof c->upstream_ip);
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr, c->upstream_ip,
                      sizeof c->upstream_ip);
        bufferevent_setcb(c->upstream, NULL, NULL, upstream_connect_event, c);
        conn_tune_bufferevent(c->upstream);
        struct timeval tv = {c->w->cfg->connect_timeout_s, 0};
        bufferevent_set_timeouts(c->upstream, NULL, &tv);
        conn_set_state(c, CONN_CONNECTING);
        if (bufferevent_socket_connect(c->upstream, (struct sockaddr *)ss,
                                       (int)sockaddr_len(ss)) < 0) {
            c->last_dial_error = errno ? errno : ECONNREFUSED;
            conn_release_bufferevent(c->upstream);
            c->upstream = NULL;
            close(fd);
            c->upstream_fd = -1;
            continue;
        }
        return;
    }
    dial_failed(c);
}
