/* transparent: connections nftables redirected to the proxy port (SPEC §7).
 *
 * The workload believes it talks to the real server, so the first bytes
 * tell what it speaks: a TLS ClientHello is decided on its SNI, plain HTTP
 * on its Host header. Either name must resolve to the address the workload
 * actually dialled (the original destination), and only that address is
 * dialled: a client cannot name an allowed host while connecting elsewhere.
 * An allowed ClientHello is tunnelled, or intercepted like a CONNECT when
 * the policy intercepts (src/proxy/intercept.c, without the "200"). */
#include "proxy/transparent.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/metrics.h"
#include "proxy/conn.h"
#include "proxy/intercept.h"
#include "tls/clienthello.h"

/* From linux/netfilter_ipv6/ip6_tables.h, which does not build as C17. */
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

#define TLS_RECORD_HANDSHAKE 0x16

static bool same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

void transparent_detect(struct conn *c, int fd)
{
    struct sockaddr_storage orig, local;
    socklen_t olen = sizeof orig, llen = sizeof local;
    memset(&orig, 0, sizeof orig);
    int level = c->client_addr.ss_family == AF_INET6 ? SOL_IPV6 : SOL_IP;
    int opt = c->client_addr.ss_family == AF_INET6 ? IP6T_SO_ORIGINAL_DST : SO_ORIGINAL_DST;
    /* Without conntrack (no redirect) this fails at once: explicit use. */
    if (getsockopt(fd, level, opt, &orig, &olen) < 0)
        return;
    if (getsockname(fd, (struct sockaddr *)&local, &llen) < 0 || same_endpoint(&orig, &local))
        return;
    c->transparent = true;
    c->orig_dst = orig;
}

bool transparent_address_matches(const struct conn *c, const struct sockaddr_storage *ss)
{
    const struct sockaddr_storage *o = &c->orig_dst;
    if (o->ss_family != ss->ss_family)
        return false;
    if (o->ss_family == AF_INET)
        return ((const struct sockaddr_in *)o)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)ss)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)o)->sin6_addr,
                  &((const struct sockaddr_in6 *)ss)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

static uint16_t orig_port(const struct conn *c)
{
    if (c->orig_dst.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&c->orig_dst)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&c->orig_dst)->sin6_port);
}

/* The original destination as a host, for ClientHellos without SNI. */
static void orig_as_host(const struct conn *c, struct host *h)
{
    memset(h, 0, sizeof *h);
    if (c->orig_dst.ss_family == AF_INET) {
        h->kind = HOST_KIND_IPV4;
        h->addr.v4 = ((const struct sockaddr_in *)&c->orig_dst)->sin_addr;
        inet_ntop(AF_INET, &h->addr.v4, h->text, sizeof h->text);
    } else {
        h->kind = HOST_KIND_IPV6;
        h->addr.v6 = ((const struct sockaddr_in6 *)&c->orig_dst)->sin6_addr;
        inet_ntop(AF_INET6, &h->addr.v6, h->text, sizeof h->text);
    }
    h->len = strlen(h->text);
}

/* A refused TLS connection cannot be told why in HTTP: it is closed, and
 * the log says why. */
static void refuse_tls(struct conn *c, const char *decision, const char *why)
{
    conn_log(c, decision, 0, why);
    conn_close(c, why);
}

static void decide_tls(struct conn *c, const char *sni, bool have_sni)
{
    const char *why = NULL;
    c->is_connect = true;
    c->started_us = conn_now_us();
    snprintf(c->method, sizeof c->method, "TLS");
    c->dest.kind = DEST_TRANSPARENT;
    c->dest.port = orig_port(c);
    if (have_sni) {
        if (host_canonicalise(sni, strlen(sni), &c->dest.host, &why) < 0) {
            refuse_tls(c, "error", why);
            return;
        }
    } else {
        orig_as_host(c, &c->dest.host);
    }
    c->policy = proxy_policy_for((const struct sockaddr *)&c->client_addr);
    policy_decide(c->policy, &c->dest, &c->decision);
    /* A prompt parks the connection; the ClientHello is read again when
     * the answer comes. */
    if (c->decision.verdict == VERDICT_PROMPT && approval_wait(c))
        return;
    if (c->decision.verdict != VERDICT_ALLOW) {
        metrics_count_decision(METRICS_KIND_TRANSPARENT, METRICS_DENY, c->decision.rule);
        refuse_tls(c, "deny",
                   c->approval_reason[0] ? c->approval_reason
                   : c->decision.verdict == VERDICT_PROMPT
                       ? "the rule asks for an operator's approval, and no approver is attached"
                   : c->decision.reason ? c->decision.reason
                   : c->decision.rule < 0 ? "no rule; default deny" : "denied by rule");
        return;
    }
    /* The same rule as for a CONNECT (docs/POLICY.md §8): with interception
     * on, every allowed name but passthrough ones is intercepted, so a
     * client cannot skip a method or path rule by ignoring HTTPS_PROXY. */
    bool passthrough = policy_passthrough(c->policy, &c->dest.host);
    if (c->decision.needs_intercept && (!intercept_available() || passthrough)) {
        metrics_count_decision(METRICS_KIND_TRANSPARENT, METRICS_DENY, c->decision.rule);
        refuse_tls(c, "deny", "the rule needs TLS interception, which is not available here");
        return;
    }
    metrics_count_decision(METRICS_KIND_TRANSPARENT,
                           c->decision.would_deny ? METRICS_WOULD_DENY : METRICS_ALLOW,
                           c->decision.rule);
    if (!limits_tunnel_enter(&c->client_addr, c->w->cfg->max_tunnels_per_client)) {
        refuse_tls(c, "error", "too many tunnels from this client");
        return;
    }
    c->counted_tunnel = true;
    metrics_gauge_add(&metrics.tunnels_active, 1);
    c->tunnel_host = c->dest.host;
    c->tunnel_port = c->dest.port;
    c->intercept_wanted =
        intercept_available() && policy_intercept_enabled(c->policy) && !passthrough;
    /* The ClientHello stays in the client's input: the tunnel relays it,
     * or the TLS filter reads it first when intercepting. */
    evtimer_del(c->timer);
    bufferevent_disable(c->client, EV_READ);
    dial_start(c);
}

int transparent_read_first(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->client);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return 0;
    const uint8_t *first = evbuffer_pullup(in, 1);
    if (first[0] != TLS_RECORD_HANDSHAKE)
        return 1; /* plain HTTP: the ordinary head reader takes it */
    size_t n = len < TLS_HELLO_MAX_BYTES ? len : TLS_HELLO_MAX_BYTES;
    const uint8_t *buf = evbuffer_pullup(in, (ssize_t)n);
    char sni[HOST_TEXT_SIZE];
    switch (tls_clienthello_sni(buf, n, sni, sizeof sni)) {
    case TLS_HELLO_NEED_MORE:
        return 0;
    case TLS_HELLO_SNI:
        decide_tls(c, sni, true);
        return -1;
    case TLS_HELLO_NO_SNI:
        decide_tls(c, NULL, false);
        return -1;
    default:
        c->started_us = conn_now_us();
        metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
        refuse_tls(c, "error", "malformed TLS ClientHello");
        return -1;
    }
}

int transparent_check_host(struct conn *c, const struct http_request *req, struct http_uri *uri,
                           const char **why)
{
    if (req->target_len == 0 || req->target[0] != '/') {
        *why = "a redirected request must be origin-form";
        return -1;
    }
    if (req->host_header < 0) {
        *why = "a redirected request needs a Host header";
        return -1;
    }
    const struct http_header *h = &req->headers[req->host_header];
    struct host host;
    uint16_t port;
    if (host_parse_authority(h->value, h->value_len, orig_port(c), &host, &port, why) < 0)
        return -1;
    if (port != orig_port(c)) {
        *why = "the Host header's port differs from the connection's";
        return -1;
    }
    c->dest.kind = DEST_TRANSPARENT;
    c->dest.host = host;
    c->dest.port = port;
    memset(uri, 0, sizeof *uri);
    uri->authority = h->value;
    uri->authority_len = h->value_len;
    uri->path = req->target;
    uri->path_len = req->target_len;
    const char *q = memchr(req->target, '?', req->target_len);
    uri->path_only_len = q ? (size_t)(q - req->target) : req->target_len;
    return 0;
}
