/* filter: sockets, the thread and the upstream exchanges of the DNS filter.
 *
 * One thread, one event loop. A client's message is parsed and decided at
 * once; a refusal is answered without anything leaving the process. An
 * allowed question becomes a `struct query` that walks the upstream list:
 *
 *   NEW ─▶ UDP (upstream i) ─▶ answer ─▶ DONE
 *            │  timeout / unreachable / error rcode ─▶ UDP (upstream i+1) … ─▶ DONE (SERVFAIL)
 *            └─ truncated ─▶ TCP (same upstream) ─▶ answer ─▶ DONE
 *
 * UDP tries go out on a small pool of sockets per upstream, each connected
 * to it (the kernel drops datagrams from anyone else) and replaced after a
 * few thousand queries so source ports keep changing; every query gets a
 * random id, unique on its socket, and the client's id is put back on the
 * answer. A socket per query would cost a socket(), connect(), close() and
 * two epoll changes each: a third of the filter's time under load.
 * SLUICE_TRACE_DNS=1 prints every state change. */
#include "dns/filter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <jansson.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/netaddr.h"
#include "dns/ratelimit.h"
#include "policy/policy.h"

#define DNS_RECV_BATCH 64            /* datagrams read per wakeup */
#define DNS_UDP_RCVBUF (1024 * 1024) /* absorbs bursts while the loop is busy */
#define DNS_TCP_IDLE_S 10            /* a client TCP connection with nothing to do */
#define DNS_TCP_MAX_PENDING 16       /* queries in flight per client TCP connection */
#define DNS_HOUSEKEEPING_MS 100
#define DNS_ADDR_TEXT 64 /* "[v6]:port" */
#define DNS_ERR_TEXT 160
#define DNS_RANDOM_POOL 256
#define DNS_POOL_SOCKETS 4         /* UDP sockets per upstream address */
#define DNS_SOCKET_USES 4096       /* queries before a socket is replaced: a new source port */
#define DNS_SOCKET_SLOTS 1024      /* id table per socket, a power of two */
#define DNS_SOCKET_MAX_PENDING 512 /* at most half the slots, so probes stay short */
#define DNS_MAX_POOLS 16           /* distinct upstream addresses kept open */

enum query_state {
    QUERY_NEW,
    QUERY_UDP, /* waiting for upstream cur over UDP */
    QUERY_TCP, /* waiting for upstream cur over TCP (the UDP answer was truncated) */
    QUERY_DONE,
};

struct tcp_client;

/* Where an answer goes back to. */
struct client {
    struct tcp_client *tcp; /* NULL: UDP */
    struct sockaddr_storage addr;
    socklen_t len;
    char ip[INET6_ADDRSTRLEN];
};

struct tcp_client {
    struct bufferevent *bev; /* NULL once the client has gone */
    struct client who;
    int pending; /* queries not answered yet */
    bool eof;    /* the client half-closed: close once answered and flushed */
    struct tcp_client *prev, *next;
};

struct upstream {
    struct sockaddr_storage addr;
    socklen_t len;
    char ip[INET6_ADDRSTRLEN];
};

struct query;
struct pool;

/* A UDP socket connected to one upstream, shared by the queries in flight
 * to it; they are found by id in slots (linear probing). */
struct upsock {
    struct pool *pool; /* NULL once retired */
    int fd;
    struct event ev;
    uint32_t uses;
    int pending;
    bool in_callback; /* reading: freeing waits until the callback ends */
    struct query *slots[DNS_SOCKET_SLOTS];
    struct upsock *prev, *next; /* every socket, for teardown */
};

struct pool {
    struct sockaddr_storage addr;
    socklen_t len;
    struct upsock *socks[DNS_POOL_SOCKETS];
    unsigned next; /* round robin */
};

struct query {
    enum query_state state;
    struct query *prev, *next;
    struct client client;
    uint8_t *msg; /* the client's message; its id is replaced towards upstreams */
    size_t len;
    struct dns_query q;
    struct policy *policy; /* the one that decided; answers are checked with it */
    struct decision dec;
    struct upstream ups[POLICY_MAX_DNS_UPSTREAMS];
    size_t n_ups, cur;
    uint16_t up_id;
    struct upsock *sock; /* UDP socket of the current try, or NULL */
    struct event timer;
    struct bufferevent *bev; /* TCP to the current upstream */
    uint64_t start_us, try_start_us;
    const char *fail_why; /* why the last try failed */
};

struct filter {
    struct dns_filter_config cfg;
    struct event_base *base;
    pthread_t thread;
    bool thread_started;
    int udp_fd;
    struct event *udp_ev;
    struct evconnlistener *tcp;
    int stop_pipe[2];
    struct event *stop_ev;
    struct event *housekeeping;
    struct dns_ratelimit *rl;
    struct query *queries;
    struct tcp_client *tcp_clients;
    struct pool pools[DNS_MAX_POOLS];
    size_t n_pools;
    struct upsock *socks;
    _Atomic int inflight;
    _Atomic int n_tcp;
    bool mark_applied;
    char mark_error[DNS_ERR_TEXT];
    char listen_text[DNS_ADDR_TEXT];
    bool trace;
    uint8_t random[DNS_RANDOM_POOL];
    size_t random_left;
    uint8_t rbuf[DNS_MSG_MAX]; /* datagrams read */
    uint8_t wbuf[DNS_MSG_MAX]; /* replies built */
};

static struct filter *filter;
static atomic_bool filter_running;

static const char *const state_names[] = {"NEW", "UDP", "TCP", "DONE"};

void dns_filter_config_defaults(struct dns_filter_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    struct sockaddr_in *sin = (struct sockaddr_in *)&cfg->listen;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(53);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cfg->listen_len = sizeof *sin;
    cfg->mark = DNS_DEFAULT_MARK;
    cfg->timeout_ms = DNS_DEFAULT_TIMEOUT_MS;
    cfg->rate = DNS_DEFAULT_RATE;
    cfg->burst = DNS_DEFAULT_BURST;
    cfg->limits.max_name_len = DNS_DEFAULT_MAX_NAME;
    cfg->limits.max_labels = DNS_DEFAULT_MAX_LABELS;
    cfg->ttl_min = DNS_DEFAULT_TTL_MIN;
    cfg->ttl_max = DNS_DEFAULT_TTL_MAX;
    cfg->max_inflight = DNS_DEFAULT_MAX_INFLIGHT;
    cfg->max_tcp_clients = DNS_DEFAULT_MAX_TCP_CLIENTS;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Query ids towards upstreams come from the kernel's CSPRNG, fetched in
 * blocks so a query costs no syscall. */
static uint16_t random_id(struct filter *f)
{
    if (f->random_left < 2) {
        ssize_t n = getrandom(f->random, sizeof f->random, 0);
        if (n != (ssize_t)sizeof f->random) {
            /* getrandom on a booted system does not fail; if it does,
             * the clock is still better than a constant. */
            uint64_t t = now_us();
            memcpy(f->random, &t, sizeof t);
        }
        f->random_left = sizeof f->random;
    }
    f->random_left -= 2;
    return (uint16_t)(f->random[f->random_left] << 8 | f->random[f->random_left + 1]);
}

static enum metrics_dns_qtype qtype_slot(const struct dns_query *q)
{
    switch (q->qtype) {
    case 1:
        return METRICS_DNS_A;
    case 28:
        return METRICS_DNS_AAAA;
    case 5:
        return METRICS_DNS_CNAME;
    case 65:
        return METRICS_DNS_HTTPS;
    case 64:
        return METRICS_DNS_SVCB;
    case 15:
        return METRICS_DNS_MX;
    case 16:
        return METRICS_DNS_TXT;
    case 33:
        return METRICS_DNS_SRV;
    case 12:
        return METRICS_DNS_PTR;
    case 255:
        return METRICS_DNS_ANY;
    default:
        return METRICS_DNS_OTHER;
    }
}

/* ---- sending and logging ------------------------------------------------------ */

static void tcp_client_release(struct filter *f, struct tcp_client *tc);

static void client_send(struct filter *f, const struct client *c, const uint8_t *msg, size_t len)
{
    if (c->tcp == NULL) {
        /* UDP: a full socket buffer drops the answer; the client retries. */
        sendto(f->udp_fd, msg, len, MSG_DONTWAIT, (const struct sockaddr *)&c->addr, c->len);
        return;
    }
    if (c->tcp->bev == NULL)
        return;
    uint8_t prefix[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    struct evbuffer *out = bufferevent_get_output(c->tcp->bev);
    evbuffer_add(out, prefix, sizeof prefix);
    evbuffer_add(out, msg, len);
}

/* What the log line says about one query. */
struct outcome {
    const char *decision; /* allow, deny, would_deny, error */
    int rule;
    const char *reason;
    const char *upstream_ip;
    int rcode;
    size_t reply_len;
    const struct learned *addrs;
    size_t n_addrs; /* with addrs == NULL: answers null */
};

static void log_query(const struct client *c, const struct dns_query *q, const struct outcome *o,
                      size_t query_len, uint64_t start_us)
{
    char texts[DNS_MAX_ADDRS][INET6_ADDRSTRLEN];
    const char *answers[DNS_MAX_ADDRS];
    struct log_event ev;
    log_event_init(&ev);
    ev.client = c->ip;
    ev.kind = "dns";
    ev.host = q && q->name_len > 0 && q->name_len < sizeof q->name
                  ? (q->host_ok ? q->host.text : q->name)
                  : NULL;
    ev.method = q && q->qtype_text[0] ? q->qtype_text : NULL;
    ev.decision = o->decision;
    ev.rule = o->rule;
    ev.reason = o->reason;
    ev.upstream_ip = o->upstream_ip;
    ev.status = o->rcode;
    ev.bytes_up = (int64_t)query_len;
    ev.bytes_down = o->reply_len ? (int64_t)o->reply_len : -1;
    ev.ms = (int64_t)((now_us() - start_us) / 1000u);
    if (o->addrs) {
        for (size_t i = 0; i < o->n_addrs && i < DNS_MAX_ADDRS; i++) {
            inet_ntop(o->addrs[i].family, o->addrs[i].addr, texts[i], sizeof texts[i]);
            answers[i] = texts[i];
        }
        ev.answers = answers;
        ev.n_answers = o->n_addrs;
    }
    log_write_event(&ev);
}

/* Answers a query with rcode and no records, logs and counts it. */
static void answer_now(struct filter *f, const struct client *c, const struct dns_query *q,
                       const uint8_t *msg, size_t len, int rcode, struct outcome *o,
                       enum metrics_dns_outcome counted, uint64_t start_us)
{
    size_t out_len = 0;
    o->rcode = rcode;
    if (dns_reply_build(q, msg, len, rcode, false, f->wbuf, sizeof f->wbuf, &out_len) == 0) {
        client_send(f, c, f->wbuf, out_len);
        o->reply_len = out_len;
    }
    metrics_count_dns_query(q ? qtype_slot(q) : METRICS_DNS_OTHER, counted);
    log_query(c, q, o, len, start_us);
}

static const char *decision_name(const struct decision *d)
{
    if (d->would_deny)
        return "would_deny";
    return d->verdict == VERDICT_DENY ? "deny" : "allow";
}

static int refusal_rcode(const struct policy *p)
{
    return policy_dns(p)->refuse_with == DNS_REFUSE_REFUSED ? DNS_RCODE_REFUSED
                                                            : DNS_RCODE_NXDOMAIN;
}

/* ---- upstream addresses ------------------------------------------------------- */

/* dns.upstream entries are "IP", "IP:port" or "[IPv6]:port" (the policy
 * checked them); a bare IPv6 address has several colons. */
static int parse_upstream(const char *text, struct upstream *u)
{
    char buf[DNS_ADDR_TEXT], err[DNS_ERR_TEXT];
    const char *colon = strchr(text, ':');
    if (text[0] != '[' && (colon == NULL || strchr(colon + 1, ':') != NULL)) {
        snprintf(buf, sizeof buf, colon ? "[%s]:53" : "%s:53", text);
        text = buf;
    }
    if (netaddr_parse(text, &u->addr, &u->len, err, sizeof err) < 0)
        return -1;
    const void *a = u->addr.ss_family == AF_INET
                        ? (const void *)&((struct sockaddr_in *)&u->addr)->sin_addr
                        : (const void *)&((struct sockaddr_in6 *)&u->addr)->sin6_addr;
    inet_ntop(u->addr.ss_family, a, u->ip, sizeof u->ip);
    return 0;
}

static size_t load_upstreams(const struct policy *p, struct upstream *ups)
{
    const struct policy_dns *d = policy_dns(p);
    size_t n = 0;
    for (size_t i = 0; i < d->n_upstream && i < POLICY_MAX_DNS_UPSTREAMS; i++)
        if (parse_upstream(d->upstream[i], &ups[n]) == 0)
            n++;
    return n;
}

/* SO_MARK lets the kernel rules tell sluice's own queries from the
 * workload's; it needs CAP_NET_ADMIN. */
static void mark_socket(struct filter *f, int fd)
{
    if (f->cfg.mark && f->mark_applied)
        setsockopt(fd, SOL_SOCKET, SO_MARK, &f->cfg.mark, sizeof f->cfg.mark);
}

static void probe_mark(struct filter *f)
{
    if (f->cfg.mark == 0) {
        f->mark_applied = false;
        snprintf(f->mark_error, sizeof f->mark_error, "disabled (--dns-mark 0)");
        return;
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &f->cfg.mark, sizeof f->cfg.mark) == 0) {
        f->mark_applied = true;
        f->mark_error[0] = '\0';
    } else {
        int e = errno;
        f->mark_applied = false;
        snprintf(f->mark_error, sizeof f->mark_error, "%s%s", strerror(e),
                 e == EPERM ? " (setting SO_MARK needs CAP_NET_ADMIN or CAP_NET_RAW)" : "");
    }
    if (fd >= 0)
        close(fd);
}

/* ---- queries ----------------------------------------------------------------- */

static void query_set_state(struct filter *f, struct query *q, enum query_state next)
{
    if (f->trace)
        fprintf(stderr, "dns query %p (%s %s): %s -> %s\n", (void *)q, q->q.qtype_text, q->q.name,
                state_names[q->state], state_names[next]);
    q->state = next;
}

static void upsock_detach(struct filter *f, struct query *q);

static void query_close_transport(struct query *q)
{
    event_del(&q->timer);
    if (q->sock)
        upsock_detach(filter, q);
    if (q->bev) {
        bufferevent_free(q->bev);
        q->bev = NULL;
    }
}

static void query_free(struct filter *f, struct query *q)
{
    query_close_transport(q);
    if (q->prev)
        q->prev->next = q->next;
    else
        f->queries = q->next;
    if (q->next)
        q->next->prev = q->prev;
    if (q->client.tcp)
        tcp_client_release(f, q->client.tcp);
    if (q->policy)
        policy_unref(q->policy);
    dns_query_clear(&q->q);
    free(q->msg);
    free(q);
    atomic_fetch_sub(&f->inflight, 1);
}

/* The end of every query that reached an upstream stage. */
static void query_finish(struct filter *f, struct query *q, const uint8_t *reply, size_t len,
                         struct outcome *o, enum metrics_dns_outcome counted)
{
    query_set_state(f, q, QUERY_DONE);
    if (reply) {
        client_send(f, &q->client, reply, len);
        o->reply_len = len;
    }
    metrics_count_dns_query(qtype_slot(&q->q), counted);
    log_query(&q->client, &q->q, o, q->len, q->start_us);
    query_free(f, q);
}

static void query_servfail(struct filter *f, struct query *q, const char *why)
{
    size_t n = 0;
    struct outcome o = {.decision = decision_name(&q->dec),
                        .rule = q->dec.rule,
                        .reason = why,
                        .upstream_ip = q->cur < q->n_ups ? q->ups[q->cur].ip : NULL,
                        .rcode = DNS_RCODE_SERVFAIL};
    if (q->cur >= q->n_ups && q->n_ups > 0)
        o.upstream_ip = q->ups[q->n_ups - 1].ip;
    bool built = dns_reply_build(&q->q, q->msg, q->len, DNS_RCODE_SERVFAIL, false, f->wbuf,
                                 sizeof f->wbuf, &n) == 0;
    query_finish(f, q, built ? f->wbuf : NULL, n, &o, METRICS_DNS_SERVFAIL);
}

static void try_udp(struct filter *f, struct query *q);

/* This upstream did not give a usable answer: on to the next. */
static void fail_try(struct filter *f, struct query *q, enum metrics_dns_upstream_error err,
                     const char *why)
{
    metrics_add(&metrics.dns.upstream_errors[err], 1);
    metrics_observe_dns_upstream(now_us() - q->try_start_us);
    query_close_transport(q);
    q->fail_why = why;
    q->cur++;
    try_udp(f, q);
}

static void on_try_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct query *q = arg;
    fail_try(filter, q, METRICS_DNS_UP_TIMEOUT, "no upstream answered within the timeout");
}

static void arm_timer(struct filter *f, struct query *q)
{
    struct timeval tv = {f->cfg.timeout_ms / 1000, (f->cfg.timeout_ms % 1000) * 1000};
    evtimer_add(&q->timer, &tv);
}

/* Clamps TTLs into the configured range and hands the addresses to the
 * sink. Returns -1 when the sink refused them. */
static int publish_learned(struct filter *f, struct learned *addrs, size_t n)
{
    if (n == 0 || f->cfg.sink.publish == NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (addrs[i].ttl < f->cfg.ttl_min)
            addrs[i].ttl = f->cfg.ttl_min;
        if (addrs[i].ttl > f->cfg.ttl_max)
            addrs[i].ttl = f->cfg.ttl_max;
    }
    if (f->cfg.sink.publish(f->cfg.sink.arg, addrs, n) < 0) {
        metrics_add(&metrics.dns.learn_failures, 1);
        return -1;
    }
    metrics_add(&metrics.dns.learned, n);
    return 0;
}

/* A refused answer: the query is answered like a denied name. */
static void finish_refused(struct filter *f, struct query *q, const struct dns_answer *res,
                           const char *why)
{
    size_t n = 0;
    int rcode = refusal_rcode(q->policy);
    struct outcome o = {.decision = "deny",
                        .rule = q->dec.rule,
                        .reason = why,
                        .upstream_ip = q->ups[q->cur].ip,
                        .rcode = rcode};
    if (res->status == DNS_ANSWER_DENY)
        o.rule = res->cname_decision.rule;
    bool built =
        dns_reply_build(&q->q, q->msg, q->len, rcode, false, f->wbuf, sizeof f->wbuf, &n) == 0;
    metrics_count_decision(METRICS_KIND_DNS, METRICS_DENY, o.rule);
    query_finish(f, q, built ? f->wbuf : NULL, n, &o, METRICS_DNS_DENY);
}

static void finish_pass(struct filter *f, struct query *q, struct dns_answer *res)
{
    char reason[DNS_ERR_TEXT];
    const uint8_t *reply = res->msg;
    size_t len = res->len;
    if (publish_learned(f, res->addrs, res->n_addrs) < 0) {
        query_servfail(f, q, "the learned-address sink failed; answer withheld");
        return;
    }
    res->msg[0] = (uint8_t)(q->q.id >> 8); /* the client's id back */
    res->msg[1] = (uint8_t)q->q.id;
    if (q->client.tcp == NULL && len > q->q.udp_size &&
        dns_reply_build(&q->q, q->msg, q->len, res->rcode, true, f->wbuf, sizeof f->wbuf, &len) ==
            0)
        reply = f->wbuf; /* too big for the client's UDP: TC, it asks again over TCP */
    bool would_deny = q->dec.would_deny || res->would_deny;
    struct outcome o = {.decision = would_deny ? "would_deny" : "allow",
                        .rule = q->dec.rule,
                        .reason = q->dec.reason,
                        .upstream_ip = q->ups[q->cur].ip,
                        .rcode = res->rcode,
                        .addrs = res->addrs,
                        .n_addrs = res->n_addrs};
    if (res->would_deny && !q->dec.would_deny) {
        snprintf(reason, sizeof reason, "CNAME target %s would be denied", res->cname_target);
        o.reason = reason;
        o.rule = res->cname_decision.rule;
    }
    query_finish(f, q, reply, len, &o, would_deny ? METRICS_DNS_WOULD_DENY : METRICS_DNS_ALLOW);
}

static void start_tcp(struct filter *f, struct query *q);

/* An answer from the current upstream (over UDP or TCP). Returns false
 * when the query is still waiting (the answer was not for it). */
static bool handle_answer(struct filter *f, struct query *q, const uint8_t *msg, size_t len,
                          bool over_tcp)
{
    struct dns_answer res;
    struct dns_answer_opts opts = {.ttl_cap = f->cfg.ttl_max};
    char reason[DNS_ERR_TEXT];
    dns_answer_process(q->policy, &q->q, &q->dec, msg, len, &opts, &res);
    metrics_add(&metrics.dns.addresses_removed, res.n_removed);
    metrics_add(&metrics.dns.ech_removed, res.n_ech);
    if (res.status != DNS_ANSWER_MISMATCH)
        metrics_observe_dns_upstream(now_us() - q->try_start_us);
    switch (res.status) {
    case DNS_ANSWER_MISMATCH:
        dns_answer_clear(&res);
        if (over_tcp) {
            fail_try(f, q, METRICS_DNS_UP_BAD_ANSWER, res.why);
            return true;
        }
        return false;
    case DNS_ANSWER_TRUNCATED:
        if (over_tcp) {
            fail_try(f, q, METRICS_DNS_UP_BAD_ANSWER, "the upstream's TCP answer was truncated");
        } else {
            metrics_add(&metrics.dns.tcp_fallbacks, 1);
            start_tcp(f, q);
        }
        break;
    case DNS_ANSWER_FAILED:
        fail_try(f, q, res.rcode ? METRICS_DNS_UP_RCODE : METRICS_DNS_UP_BAD_ANSWER, res.why);
        break;
    case DNS_ANSWER_DENY:
        snprintf(reason, sizeof reason, "CNAME target %s is denied%s%s", res.cname_target,
                 res.cname_decision.reason ? ": " : "",
                 res.cname_decision.reason ? res.cname_decision.reason : "");
        finish_refused(f, q, &res, reason);
        break;
    case DNS_ANSWER_NO_ADDRESS:
        snprintf(reason, sizeof reason, "every answer address is refused: %s",
                 res.why ? res.why : "special range");
        finish_refused(f, q, &res, reason);
        break;
    case DNS_ANSWER_PASS:
        finish_pass(f, q, &res);
        break;
    }
    dns_answer_clear(&res);
    return true;
}

/* ---- the upstream socket pool ------------------------------------------------ */

static void upsock_free(struct filter *f, struct upsock *us)
{
    event_del(&us->ev);
    close(us->fd);
    if (us->prev)
        us->prev->next = us->next;
    else
        f->socks = us->next;
    if (us->next)
        us->next->prev = us->prev;
    free(us);
}

/* Taken out of its pool: no new queries; closed once the last is done. */
static void upsock_retire(struct filter *f, struct upsock *us)
{
    if (us->pool) {
        for (size_t i = 0; i < DNS_POOL_SOCKETS; i++)
            if (us->pool->socks[i] == us)
                us->pool->socks[i] = NULL;
        us->pool = NULL;
    }
    if (us->pending == 0 && !us->in_callback)
        upsock_free(f, us);
}

static struct query **slot_find(struct upsock *us, uint16_t id)
{
    for (size_t i = id & (DNS_SOCKET_SLOTS - 1);; i = (i + 1) & (DNS_SOCKET_SLOTS - 1)) {
        if (us->slots[i] == NULL || us->slots[i]->up_id == id)
            return &us->slots[i];
    }
}

/* Backward-shift deletion keeps every probe run unbroken. */
static void slot_remove(struct upsock *us, struct query **slot)
{
    size_t mask = DNS_SOCKET_SLOTS - 1;
    size_t hole = (size_t)(slot - us->slots);
    us->slots[hole] = NULL;
    for (size_t j = (hole + 1) & mask; us->slots[j]; j = (j + 1) & mask) {
        size_t home = us->slots[j]->up_id & mask;
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays)
            continue;
        us->slots[hole] = us->slots[j];
        us->slots[j] = NULL;
        hole = j;
    }
}

static void upsock_detach(struct filter *f, struct query *q)
{
    struct upsock *us = q->sock;
    struct query **slot = slot_find(us, q->up_id);
    if (*slot == q) {
        slot_remove(us, slot);
        us->pending--;
    }
    q->sock = NULL;
    if (us->pool == NULL && us->pending == 0 && !us->in_callback)
        upsock_free(f, us);
}

static void on_upsock_readable(evutil_socket_t fd, short what, void *arg);

static struct upsock *upsock_open(struct filter *f, struct pool *pool)
{
    struct upsock *us = calloc(1, sizeof *us);
    if (us == NULL)
        return NULL;
    us->fd = socket(pool->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (us->fd < 0) {
        free(us);
        return NULL;
    }
    mark_socket(f, us->fd);
    if (connect(us->fd, (const struct sockaddr *)&pool->addr, pool->len) < 0) {
        close(us->fd);
        free(us);
        return NULL;
    }
    us->pool = pool;
    event_assign(&us->ev, f->base, us->fd, EV_READ | EV_PERSIST, on_upsock_readable, us);
    event_add(&us->ev, NULL);
    us->next = f->socks;
    if (f->socks)
        f->socks->prev = us;
    f->socks = us;
    return us;
}

static bool same_addr(const struct sockaddr_storage *a, socklen_t alen,
                      const struct sockaddr_storage *b, socklen_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

static bool pool_idle(const struct pool *pool)
{
    for (size_t i = 0; i < DNS_POOL_SOCKETS; i++)
        if (pool->socks[i] && pool->socks[i]->pending > 0)
            return false;
    return true;
}

/* The pool for an upstream address; when all are taken, an idle one is
 * given to the new address (the policy's upstreams changed). */
static struct pool *pool_for(struct filter *f, const struct upstream *u)
{
    struct pool *pool = NULL;
    for (size_t i = 0; i < f->n_pools; i++)
        if (same_addr(&f->pools[i].addr, f->pools[i].len, &u->addr, u->len))
            return &f->pools[i];
    if (f->n_pools < DNS_MAX_POOLS) {
        pool = &f->pools[f->n_pools++];
    } else {
        for (size_t i = 0; i < DNS_MAX_POOLS && pool == NULL; i++)
            if (pool_idle(&f->pools[i]))
                pool = &f->pools[i];
        if (pool == NULL)
            return NULL;
        for (size_t i = 0; i < DNS_POOL_SOCKETS; i++)
            if (pool->socks[i])
                upsock_retire(f, pool->socks[i]);
    }
    memset(pool, 0, sizeof *pool);
    pool->addr = u->addr;
    pool->len = u->len;
    return pool;
}

/* A socket of the pool with room, opened when missing. */
static struct upsock *pool_pick(struct filter *f, struct pool *pool)
{
    for (size_t n = 0; n < DNS_POOL_SOCKETS; n++) {
        size_t i = pool->next++ % DNS_POOL_SOCKETS;
        if (pool->socks[i] == NULL)
            pool->socks[i] = upsock_open(f, pool);
        if (pool->socks[i] && pool->socks[i]->pending < DNS_SOCKET_MAX_PENDING)
            return pool->socks[i];
    }
    return NULL;
}

/* Sends q on a pooled socket under a fresh random id. 0, or -1. */
static int upsock_send(struct filter *f, struct query *q, const struct upstream *u)
{
    struct pool *pool = pool_for(f, u);
    struct upsock *us = pool ? pool_pick(f, pool) : NULL;
    struct query **slot;
    if (us == NULL)
        return -1;
    do {
        q->up_id = random_id(f);
        slot = slot_find(us, q->up_id);
    } while (*slot != NULL);
    q->msg[0] = (uint8_t)(q->up_id >> 8);
    q->msg[1] = (uint8_t)q->up_id;
    if (send(us->fd, q->msg, q->len, 0) < 0) {
        /* A refused earlier query shows up here too: start afresh. */
        upsock_retire(f, us);
        return -1;
    }
    *slot = q;
    us->pending++;
    q->sock = us;
    if (++us->uses >= DNS_SOCKET_USES)
        upsock_retire(f, us);
    return 0;
}

/* ICMP unreachable on a connected socket names no query: every query on
 * it was sent to that upstream, so every one moves on. */
static void upsock_unreachable(struct filter *f, struct upsock *us)
{
    struct query *failed[DNS_SOCKET_MAX_PENDING];
    size_t n = 0;
    for (size_t i = 0; i < DNS_SOCKET_SLOTS && n < DNS_SOCKET_MAX_PENDING; i++)
        if (us->slots[i])
            failed[n++] = us->slots[i];
    upsock_retire(f, us);
    for (size_t i = 0; i < n; i++)
        fail_try(f, failed[i], METRICS_DNS_UP_UNREACHABLE, "the upstream is unreachable");
}

static void on_upsock_readable(evutil_socket_t fd, short what, void *arg)
{
    struct upsock *us = arg;
    struct filter *f = filter;
    us->in_callback = true;
    for (int i = 0; i < DNS_RECV_BATCH; i++) {
        ssize_t n = recv(fd, f->rbuf, sizeof f->rbuf, 0);
        if (n < 0) {
            if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)
                upsock_unreachable(f, us);
            break;
        }
        /* A datagram with an id nobody waits for is late, or forged. */
        if (n < DNS_HEADER_LEN)
            continue;
        struct query *q = *slot_find(us, (uint16_t)(f->rbuf[0] << 8 | f->rbuf[1]));
        if (q != NULL)
            handle_answer(f, q, f->rbuf, (size_t)n, false);
    }
    us->in_callback = false;
    if (us->pool == NULL && us->pending == 0)
        upsock_free(f, us);
}

/* Opens the next UDP try, skipping upstreams that cannot even be sent to;
 * after the last one the client gets SERVFAIL. */
static void try_udp(struct filter *f, struct query *q)
{
    for (; q->cur < q->n_ups; q->cur++) {
        q->try_start_us = now_us();
        if (upsock_send(f, q, &q->ups[q->cur]) < 0) {
            metrics_add(&metrics.dns.upstream_errors[METRICS_DNS_UP_UNREACHABLE], 1);
            q->fail_why = "the upstream is unreachable";
            continue;
        }
        arm_timer(f, q);
        query_set_state(f, q, QUERY_UDP);
        return;
    }
    query_servfail(f, q, q->fail_why ? q->fail_why : "no upstream resolver");
}

static void on_tcp_answer(struct bufferevent *bev, void *arg)
{
    struct query *q = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    uint8_t prefix[2];
    if (evbuffer_copyout(in, prefix, 2) < 2)
        return;
    size_t need = (size_t)(prefix[0] << 8 | prefix[1]);
    if (evbuffer_get_length(in) < 2 + need)
        return;
    const uint8_t *msg = evbuffer_pullup(in, (ssize_t)(2 + need));
    if (msg == NULL || need < DNS_HEADER_LEN || (uint16_t)(msg[2] << 8 | msg[3]) != q->up_id) {
        fail_try(filter, q, METRICS_DNS_UP_BAD_ANSWER, "the upstream's TCP answer is not ours");
        return;
    }
    /* The buffer belongs to q->bev, which handle_answer may free: copy. */
    memcpy(filter->rbuf, msg + 2, need);
    handle_answer(filter, q, filter->rbuf, need, true);
}

static void on_tcp_event(struct bufferevent *bev, short what, void *arg)
{
    struct query *q = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    fail_try(filter, q, METRICS_DNS_UP_UNREACHABLE,
             what & BEV_EVENT_EOF ? "the upstream closed the TCP connection"
                                  : "the upstream is unreachable over TCP");
}

/* The UDP answer was truncated: the same question to the same upstream
 * over TCP, with a fresh per-try timeout. */
static void start_tcp(struct filter *f, struct query *q)
{
    const struct upstream *u = &q->ups[q->cur];
    query_close_transport(q);
    q->try_start_us = now_us();
    int fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail_try(f, q, METRICS_DNS_UP_UNREACHABLE, "cannot open a TCP socket to the upstream");
        return;
    }
    mark_socket(f, fd);
    q->bev = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (q->bev == NULL) {
        close(fd);
        fail_try(f, q, METRICS_DNS_UP_UNREACHABLE, "out of memory");
        return;
    }
    uint8_t prefix[2] = {(uint8_t)(q->len >> 8), (uint8_t)q->len};
    bufferevent_setcb(q->bev, on_tcp_answer, NULL, on_tcp_event, q);
    bufferevent_setwatermark(q->bev, EV_READ, 0, 2 + DNS_MSG_MAX);
    bufferevent_write(q->bev, prefix, sizeof prefix);
    bufferevent_write(q->bev, q->msg, q->len);
    bufferevent_enable(q->bev, EV_READ | EV_WRITE);
    query_set_state(f, q, QUERY_TCP);
    arm_timer(f, q);
    if (bufferevent_socket_connect(q->bev, (const struct sockaddr *)&u->addr, (int)u->len) < 0)
        fail_try(f, q, METRICS_DNS_UP_UNREACHABLE, "the upstream is unreachable over TCP");
}

/* An allowed question: keep it and ask the first upstream. */
static void forward(struct filter *f, const struct client *c, const uint8_t *msg, size_t len,
                    struct dns_query *dq, struct policy *p, const struct decision *dec,
                    uint64_t start_us)
{
    struct outcome o = {.decision = decision_name(dec), .rule = dec->rule, .reason = dec->reason};
    struct query *q = NULL;
    if (atomic_load(&f->inflight) >= f->cfg.max_inflight) {
        o.reason = "too many queries waiting for upstreams";
        answer_now(f, c, dq, msg, len, DNS_RCODE_SERVFAIL, &o, METRICS_DNS_SERVFAIL, start_us);
        goto fail;
    }
    q = calloc(1, sizeof *q);
    if (q == NULL || (q->msg = malloc(len)) == NULL ||
        (q->n_ups = load_upstreams(p, q->ups)) == 0) {
        o.reason = q && q->msg ? "the policy has no dns.upstream" : "out of memory";
        answer_now(f, c, dq, msg, len, DNS_RCODE_SERVFAIL, &o, METRICS_DNS_SERVFAIL, start_us);
        if (q)
            free(q->msg);
        free(q);
        goto fail;
    }
    memcpy(q->msg, msg, len);
    q->len = len;
    q->client = *c;
    q->q = *dq; /* takes the parsed packet */
    dq->pkt = NULL;
    q->policy = p;
    q->dec = *dec;
    q->start_us = start_us;
    evtimer_assign(&q->timer, f->base, on_try_timeout, q);
    if (c->tcp)
        c->tcp->pending++;
    q->next = f->queries;
    if (f->queries)
        f->queries->prev = q;
    f->queries = q;
    atomic_fetch_add(&f->inflight, 1);
    try_udp(f, q);
    return;
fail:
    policy_unref(p);
}

/* Refusals of well-formed questions, before the policy is asked. */
static void refuse_query(struct filter *f, const struct client *c, struct dns_query *q,
                         const uint8_t *msg, size_t len, uint64_t start_us)
{
    struct outcome o = {.decision = "deny", .rule = LOG_RULE_NONE, .reason = q->why};
    if (q->cause == DNS_CAUSE_NAME_LENGTH)
        metrics_add(&metrics.dns.limit_refused[METRICS_DNS_LIMIT_NAME_LENGTH], 1);
    else if (q->cause == DNS_CAUSE_LABELS)
        metrics_add(&metrics.dns.limit_refused[METRICS_DNS_LIMIT_LABELS], 1);
    answer_now(f, c, q, msg, len, DNS_RCODE_REFUSED, &o, METRICS_DNS_REFUSED, start_us);
}

/* A question the parser accepted: the policy decides. */
static void decide_query(struct filter *f, const struct client *c, struct dns_query *q,
                         const uint8_t *msg, size_t len, uint64_t start_us)
{
    struct policy *live = f->cfg.policy_get ? f->cfg.policy_get() : NULL;
    /* A per-client policy ("clients") answers for its source address; the
     * query keeps it until its answer has been checked. */
    struct policy *p =
        live ? policy_ref(policy_select(live, (const struct sockaddr *)&c->addr)) : NULL;
    struct outcome o = {.decision = "deny", .rule = LOG_RULE_NONE};
    struct decision dec;
    struct dest d;
    policy_unref(live);
    if (p == NULL) {
        o.decision = "error";
        o.reason = "no policy loaded";
        answer_now(f, c, q, msg, len, DNS_RCODE_SERVFAIL, &o, METRICS_DNS_SERVFAIL, start_us);
        return;
    }
    if (!q->host_ok) {
        o.reason = q->host_why;
        answer_now(f, c, q, msg, len, refusal_rcode(p), &o, METRICS_DNS_DENY, start_us);
        policy_unref(p);
        return;
    }
    dns_query_dest(q, &d);
    policy_decide(p, &d, &dec);
    /* A prompt rule cannot hold a DNS answer for minutes: the name
     * resolves, and the connection to it is what prompts. */
    enum metrics_outcome m = dec.would_deny                ? METRICS_WOULD_DENY
                             : dec.verdict == VERDICT_DENY ? METRICS_DENY
                                                           : METRICS_ALLOW;
    metrics_count_decision(METRICS_KIND_DNS, m, dec.rule);
    if (dec.verdict == VERDICT_DENY) {
        o.rule = dec.rule;
        o.reason = dec.reason ? dec.reason : (dec.rule < 0 ? "no rule; default deny" : NULL);
        answer_now(f, c, q, msg, len, refusal_rcode(p), &o, METRICS_DNS_DENY, start_us);
        policy_unref(p);
        return;
    }
    forward(f, c, msg, len, q, p, &dec, start_us);
}

/* Every message from a client, UDP or TCP. */
static void handle_message(struct filter *f, const struct client *c, const uint8_t *msg, size_t len)
{
    uint64_t start = now_us();
    struct dns_query q;
    struct outcome o = {.decision = "error", .rule = LOG_RULE_NONE};
    enum dns_query_status st = dns_query_parse(msg, len, &f->cfg.limits, &q);
    if (st != DNS_QUERY_IGNORE &&
        !dns_ratelimit_take(f->rl, (const struct sockaddr *)&c->addr, start)) {
        metrics_add(&metrics.dns.rate_limited, 1);
        o.decision = "deny";
        o.reason = "over the client's DNS query rate";
        answer_now(f, c, st == DNS_QUERY_OK || st == DNS_QUERY_REFUSED ? &q : NULL, msg, len,
                   DNS_RCODE_REFUSED, &o, METRICS_DNS_RATE_LIMITED, start);
        goto out;
    }
    switch (st) {
    case DNS_QUERY_IGNORE:
        metrics_add(&metrics.dns.malformed, 1);
        metrics_count_dns_query(METRICS_DNS_OTHER, METRICS_DNS_MALFORMED);
        o.reason = "not a query (shorter than a header, or a response); dropped";
        log_query(c, NULL, &o, len, start);
        break;
    case DNS_QUERY_MALFORMED:
        metrics_add(&metrics.dns.malformed, 1);
        o.reason = q.why;
        answer_now(f, c, &q, msg, len, DNS_RCODE_FORMERR, &o, METRICS_DNS_MALFORMED, start);
        break;
    case DNS_QUERY_NOTIMP:
        o.decision = "deny";
        o.reason = q.why;
        answer_now(f, c, &q, msg, len, DNS_RCODE_NOTIMP, &o, METRICS_DNS_REFUSED, start);
        break;
    case DNS_QUERY_REFUSED:
        refuse_query(f, c, &q, msg, len, start);
        break;
    case DNS_QUERY_OK:
        decide_query(f, c, &q, msg, len, start);
        break;
    }
out:
    dns_query_clear(&q);
}

/* ---- client sockets ------------------------------------------------------------ */

static void client_from(struct client *c, const struct sockaddr_storage *ss, socklen_t len)
{
    c->addr = *ss;
    c->len = len;
    c->ip[0] = '\0';
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, c->ip, sizeof c->ip);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, c->ip, sizeof c->ip);
}

static void on_udp_query(evutil_socket_t fd, short what, void *arg)
{
    struct filter *f = arg;
    for (int i = 0; i < DNS_RECV_BATCH; i++) {
        struct client c = {.tcp = NULL};
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        ssize_t n = recvfrom(fd, f->rbuf, sizeof f->rbuf, 0, (struct sockaddr *)&ss, &len);
        if (n < 0)
            return;
        client_from(&c, &ss, len);
        /* rbuf is reused by upstream reads later; the query copies what it keeps. */
        handle_message(f, &c, f->rbuf, (size_t)n);
    }
}

static void tcp_client_free(struct filter *f, struct tcp_client *tc)
{
    if (tc->prev)
        tc->prev->next = tc->next;
    else
        f->tcp_clients = tc->next;
    if (tc->next)
        tc->next->prev = tc->prev;
    atomic_fetch_sub(&f->n_tcp, 1);
    free(tc);
}

/* The client went away (or timed out): its socket closes now; the struct
 * stays until the last of its queries has finished. */
static void tcp_client_close(struct filter *f, struct tcp_client *tc)
{
    if (tc->bev) {
        bufferevent_free(tc->bev);
        tc->bev = NULL;
    }
    if (tc->pending == 0)
        tcp_client_free(f, tc);
}

/* Whether a whole length-prefixed message waits in the input. */
static bool tcp_has_message(struct tcp_client *tc)
{
    struct evbuffer *in = bufferevent_get_input(tc->bev);
    uint8_t prefix[2];
    return evbuffer_copyout(in, prefix, 2) == 2 &&
           evbuffer_get_length(in) >= 2 + (size_t)(prefix[0] << 8 | prefix[1]);
}

static void tcp_client_maybe_close(struct filter *f, struct tcp_client *tc)
{
    if (tc->bev && tc->eof && tc->pending == 0 && !tcp_has_message(tc) &&
        evbuffer_get_length(bufferevent_get_output(tc->bev)) == 0)
        tcp_client_close(f, tc);
}

/* Messages already read but held back (too many in flight, or the client
 * half-closed) are handled on a later turn of the loop: no new bytes will
 * arrive to call the read callback for them, and handling them here, deep
 * in another query's teardown, would reuse the read buffer. */
static void tcp_client_resume(struct tcp_client *tc)
{
    if (tc->pending < DNS_TCP_MAX_PENDING && tcp_has_message(tc))
        bufferevent_trigger(tc->bev, EV_READ,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void tcp_client_release(struct filter *f, struct tcp_client *tc)
{
    tc->pending--;
    if (tc->bev == NULL) {
        if (tc->pending == 0)
            tcp_client_free(f, tc);
        return;
    }
    if (!tc->eof && tc->pending < DNS_TCP_MAX_PENDING)
        bufferevent_enable(tc->bev, EV_READ);
    tcp_client_resume(tc);
    tcp_client_maybe_close(f, tc);
}

static void on_tcp_query(struct bufferevent *bev, void *arg)
{
    struct tcp_client *tc = arg;
    struct filter *f = filter;
    struct evbuffer *in = bufferevent_get_input(bev);
    uint8_t prefix[2];
    while (tc->bev && tc->pending < DNS_TCP_MAX_PENDING && evbuffer_copyout(in, prefix, 2) == 2) {
        size_t need = (size_t)(prefix[0] << 8 | prefix[1]);
        if (evbuffer_get_length(in) < 2 + need)
            return;
        evbuffer_drain(in, 2);
        evbuffer_remove(in, f->rbuf, need);
        struct client c = tc->who;
        c.tcp = tc;
        handle_message(f, &c, f->rbuf, need);
    }
    /* Enough in flight: stop reading until some are answered. */
    if (tc->bev && tc->pending >= DNS_TCP_MAX_PENDING)
        bufferevent_disable(tc->bev, EV_READ);
}

static void on_tcp_client_event(struct bufferevent *bev, short what, void *arg)
{
    struct tcp_client *tc = arg;
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && tc->pending > 0) {
        bufferevent_enable(bev, EV_READ); /* waiting on upstreams is not idling */
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        /* Half-closed after its questions: answer them first. */
        tc->eof = true;
        bufferevent_disable(bev, EV_READ);
        tcp_client_resume(tc);
        tcp_client_maybe_close(filter, tc);
        return;
    }
    tcp_client_close(filter, tc);
}

/* Once a client half-closed and everything it asked is answered and
 * written, the connection ends. */
static void on_tcp_client_written(struct bufferevent *bev, void *arg)
{
    tcp_client_maybe_close(filter, arg);
}

static void on_tcp_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int len, void *arg)
{
    struct filter *f = arg;
    if (atomic_load(&f->n_tcp) >= f->cfg.max_tcp_clients) {
        close(fd);
        return;
    }
    struct tcp_client *tc = calloc(1, sizeof *tc);
    if (tc == NULL) {
        close(fd);
        return;
    }
    client_from(&tc->who, (const struct sockaddr_storage *)sa, (socklen_t)len);
    tc->bev = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (tc->bev == NULL) {
        close(fd);
        free(tc);
        return;
    }
    struct timeval idle = {DNS_TCP_IDLE_S, 0};
    bufferevent_setcb(tc->bev, on_tcp_query, on_tcp_client_written, on_tcp_client_event, tc);
    bufferevent_setwatermark(tc->bev, EV_READ, 0, 2 * (2 + DNS_MSG_MAX));
    bufferevent_set_timeouts(tc->bev, &idle, &idle);
    bufferevent_enable(tc->bev, EV_READ | EV_WRITE);
    tc->next = f->tcp_clients;
    if (f->tcp_clients)
        f->tcp_clients->prev = tc;
    f->tcp_clients = tc;
    atomic_fetch_add(&f->n_tcp, 1);
}

/* ---- thread, start and stop ----------------------------------------------------- */

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct filter *f = arg;
    event_base_loopbreak(f->base);
}

static void on_housekeeping(evutil_socket_t fd, short what, void *arg)
{
    log_flush();
}

static void *filter_main(void *arg)
{
    struct filter *f = arg;
    event_base_dispatch(f->base);
    while (f->queries)
        query_free(f, f->queries);
    while (f->socks)
        upsock_free(f, f->socks);
    while (f->tcp_clients) {
        struct tcp_client *tc = f->tcp_clients;
        if (tc->bev)
            bufferevent_free(tc->bev);
        tcp_client_free(f, tc);
    }
    log_flush();
    return NULL;
}

static void filter_free(struct filter *f)
{
    if (f == NULL)
        return;
    if (f->udp_ev)
        event_free(f->udp_ev);
    if (f->udp_fd >= 0)
        close(f->udp_fd);
    if (f->tcp)
        evconnlistener_free(f->tcp);
    if (f->stop_ev)
        event_free(f->stop_ev);
    if (f->housekeeping)
        event_free(f->housekeeping);
    for (int i = 0; i < 2; i++)
        if (f->stop_pipe[i] >= 0)
            close(f->stop_pipe[i]);
    if (f->base)
        event_base_free(f->base);
    dns_ratelimit_free(f->rl);
    free(f);
}

static int bind_udp(struct filter *f, char *err, size_t err_size)
{
    int one = 1, rcvbuf = DNS_UDP_RCVBUF;
    if (f->cfg.inherited) {
        f->udp_fd = f->cfg.udp_fd;
        setsockopt(f->udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        netaddr_format(&f->cfg.listen, f->listen_text, sizeof f->listen_text);
        return 0;
    }
    f->udp_fd = socket(f->cfg.listen.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->udp_fd < 0)
        goto fail;
    if (f->cfg.listen.ss_family == AF_INET6)
        setsockopt(f->udp_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    setsockopt(f->udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (bind(f->udp_fd, (const struct sockaddr *)&f->cfg.listen, f->cfg.listen_len) < 0)
        goto fail;
    /* Port 0 asks for any port: TCP takes the one UDP got. */
    socklen_t len = f->cfg.listen_len;
    getsockname(f->udp_fd, (struct sockaddr *)&f->cfg.listen, &len);
    netaddr_format(&f->cfg.listen, f->listen_text, sizeof f->listen_text);
    return 0;
fail:
    netaddr_format(&f->cfg.listen, f->listen_text, sizeof f->listen_text);
    snprintf(err, err_size, "DNS filter: cannot listen on %s (UDP): %s", f->listen_text,
             strerror(errno));
    return -1;
}

static int bind_tcp(struct filter *f, char *err, size_t err_size)
{
    int one = 1;
    int fd = f->cfg.inherited
                 ? f->cfg.tcp_fd
                 : socket(f->cfg.listen.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (!f->cfg.inherited && f->cfg.listen.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (!f->cfg.inherited &&
        (bind(fd, (const struct sockaddr *)&f->cfg.listen, f->cfg.listen_len) < 0 ||
         listen(fd, 128) < 0))
        goto fail;
    f->tcp = evconnlistener_new(f->base, on_tcp_accept, f, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (f->tcp == NULL)
        goto fail;
    return 0;
fail:
    snprintf(err, err_size, "DNS filter: cannot listen on %s (TCP): %s", f->listen_text,
             strerror(errno));
    if (fd >= 0 && f->tcp == NULL)
        close(fd);
    return -1;
}

static int setup_events(struct filter *f, char *err, size_t err_size)
{
    struct timeval tick = {0, DNS_HOUSEKEEPING_MS * 1000};
    if (pipe2(f->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        snprintf(err, err_size, "DNS filter: %s", strerror(errno));
        return -1;
    }
    f->udp_ev = event_new(f->base, f->udp_fd, EV_READ | EV_PERSIST, on_udp_query, f);
    f->stop_ev = event_new(f->base, f->stop_pipe[0], EV_READ, on_stop, f);
    f->housekeeping = event_new(f->base, -1, EV_PERSIST, on_housekeeping, f);
    if (f->udp_ev == NULL || f->stop_ev == NULL || f->housekeeping == NULL) {
        snprintf(err, err_size, "DNS filter: out of memory");
        return -1;
    }
    event_add(f->udp_ev, NULL);
    event_add(f->stop_ev, NULL);
    event_add(f->housekeeping, &tick);
    return 0;
}

int dns_filter_start(const struct dns_filter_config *cfg, char *err, size_t err_size)
{
    if (filter != NULL) {
        snprintf(err, err_size, "DNS filter: already running");
        return -1;
    }
    struct filter *f = calloc(1, sizeof *f);
    if (f == NULL) {
        snprintf(err, err_size, "DNS filter: out of memory");
        return -1;
    }
    f->cfg = *cfg;
    f->udp_fd = -1;
    f->stop_pipe[0] = f->stop_pipe[1] = -1;
    f->trace = getenv("SLUICE_TRACE_DNS") && strcmp(getenv("SLUICE_TRACE_DNS"), "1") == 0;
    f->rl = dns_ratelimit_new(cfg->rate, cfg->burst ? cfg->burst : cfg->rate);
    f->base = event_base_new();
    if (f->base == NULL || (cfg->rate && f->rl == NULL)) {
        snprintf(err, err_size, "DNS filter: out of memory");
        goto fail;
    }
    if (bind_udp(f, err, err_size) < 0 || bind_tcp(f, err, err_size) < 0 ||
        setup_events(f, err, err_size) < 0)
        goto fail;
    probe_mark(f);
    filter = f;
    if (pthread_create(&f->thread, NULL, filter_main, f) != 0) {
        snprintf(err, err_size, "DNS filter: cannot start its thread");
        filter = NULL;
        goto fail;
    }
    f->thread_started = true;
    atomic_store(&filter_running, true);
    return 0;
fail:
    filter_free(f);
    return -1;
}

void dns_filter_stop(void)
{
    struct filter *f = filter;
    if (f == NULL)
        return;
    atomic_store(&filter_running, false);
    if (f->thread_started) {
        char byte = 1;
        while (write(f->stop_pipe[1], &byte, 1) < 0 && errno == EINTR)
            ;
        pthread_join(f->thread, NULL);
    }
    filter = NULL;
    filter_free(f);
}

bool dns_filter_running(void)
{
    return atomic_load(&filter_running);
}

bool dns_filter_mark_applied(const char **why)
{
    struct filter *f = filter;
    if (why)
        *why = f && !f->mark_applied ? f->mark_error : NULL;
    return f && f->mark_applied;
}

char *dns_filter_status_json(void)
{
    struct filter *f = filter;
    char mark[16];
    if (f == NULL || !dns_filter_running())
        return NULL;
    snprintf(mark, sizeof mark, "0x%x", (unsigned)f->cfg.mark);
    json_t *doc = json_pack(
        "{s:s, s:{s:s, s:b, s:s?}, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "listen",
        f->listen_text, "upstream_mark", "mark", mark, "applied", f->mark_applied, "error",
        f->mark_applied ? NULL : f->mark_error, "inflight", (json_int_t)atomic_load(&f->inflight),
        "tcp_clients", (json_int_t)atomic_load(&f->n_tcp), "limits", "timeout_ms",
        (json_int_t)f->cfg.timeout_ms, "rate", (json_int_t)f->cfg.rate, "burst",
        (json_int_t)f->cfg.burst, "max_name_length", (json_int_t)f->cfg.limits.max_name_len,
        "max_labels", (json_int_t)f->cfg.limits.max_labels, "ttl_min", (json_int_t)f->cfg.ttl_min,
        "ttl_max", (json_int_t)f->cfg.ttl_max);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return text;
}
