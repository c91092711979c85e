/* conn: accepting a client, reading request heads, the state machine and
 * the single teardown path. */
#include "proxy/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "proxy/intercept.h"
#include "proxy/transparent.h"

static const char *const state_names[] = {
    [CONN_READ_HEAD] = "read_head", [CONN_RESOLVING] = "resolving",
    [CONN_CONNECTING] = "connecting", [CONN_FORWARD] = "forward",
    [CONN_TUNNEL] = "tunnel",        [CONN_CLOSING] = "closing",
    [CONN_WAITING] = "waiting",
};

static int trace_states = -1;
static _Atomic uint64_t next_conn_id;

uint64_t conn_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Every state change goes through here, so SLUICE_TRACE_CONN=1 shows each
 * connection's path when debugging. */
void conn_set_state(struct conn *c, enum conn_state s)
{
    if (trace_states < 0)
        trace_states = getenv("SLUICE_TRACE_CONN") != NULL;
    if (trace_states)
        fprintf(stderr, "conn %llu: %s -> %s\n", (unsigned long long)c->id,
                state_names[c->state], state_names[s]);
    c->state = s;
}

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);

static void refuse_early(int fd, const char *status_line, const char *body)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "X-Sluice-Decision: error\r\nConnection: close\r\n\r\n%s",
                     status_line, strlen(body), body);
    /* Best effort on a fresh socket: its send buffer is empty. */
    if (send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* nothing more to do for a client we are refusing */
    }
    close(fd);
}

static void arm_timer(struct conn *c, int seconds)
{
    struct timeval tv = {seconds, 0};
    evtimer_add(c->timer, &tv);
}

void conn_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t len)
{
    const struct proxy_config *cfg = w->cfg;
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    memcpy(&addr, sa, len < sizeof addr ? len : sizeof addr);

    if (w->draining) {
        close(fd);
        return;
    }
    if (!limits_total_enter(cfg->max_conns)) {
        metrics_add(&metrics.errors[METRICS_ERR_LIMIT], 1);
        refuse_early(fd, "503 Service Unavailable", "sluice: too many connections\n");
        return;
    }
    if (!limits_client_enter(&addr, cfg->max_conns_per_client)) {
        limits_total_leave();
        metrics_add(&metrics.errors[METRICS_ERR_LIMIT], 1);
        refuse_early(fd, "429 Too Many Requests",
                     "sluice: too many connections from this client\n");
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        limits_client_leave(&addr);
        limits_total_leave();
        close(fd);
        return;
    }
    c->w = w;
    c->id = ++next_conn_id;
    c->client_fd = fd;
    c->upstream_fd = -1;
    c->client_addr = addr;
    c->state = CONN_READ_HEAD;
    if (addr.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, c->client_ip,
                  sizeof c->client_ip);
    else if (addr.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, c->client_ip,
                  sizeof c->client_ip);
    else
        snprintf(c->client_ip, sizeof c->client_ip, "local");

    transparent_detect(c, fd);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    evutil_make_socket_nonblocking(fd);
    c->client = bufferevent_socket_new(w->base, fd, 0);
    c->timer = evtimer_new(w->base, on_timer, c);
    if (c->client == NULL || c->timer == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    bufferevent_setcb(c->client, client_read_cb, client_write_cb, client_event_cb, c);
    conn_tune_bufferevent(c->client);
    /* Reading pauses by itself when this much waits unparsed: at least one
     * whole request head must fit. */
    bufferevent_setwatermark(c->client, EV_READ, 0, CONN_CLIENT_READ_MAX);
    bufferevent_enable(c->client, EV_READ);

    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    metrics_add(&metrics.connections_total, 1);
    metrics_gauge_add(&metrics.connections_active, 1);
    arm_timer(c, cfg->header_timeout_s);
}

/* Per-request state goes; the connection and a reusable upstream stay. */
static void reset_request(struct conn *c)
{
    if (c->policy) {
        policy_unref(c->policy);
        c->policy = NULL;
    }
    c->is_connect = false;
    c->method[0] = '\0';
    c->path[0] = '\0';
    c->request_is_head = false;
    c->upgrade_websocket = false;
    memset(&c->req_body, 0, sizeof c->req_body);
    memset(&c->resp_body, 0, sizeof c->resp_body);
    c->resp_phase = RESP_HEAD;
    c->resp_scan_from = 0;
    c->resp_status = 0;
    c->resp_keep_alive = false;
    c->bytes_up = 0;
    c->bytes_down = 0;
    c->logged = false;
    c->head_scan_from = 0;
    c->head_started = false;
    c->n_addrs = 0;
    c->next_addr = 0;
    c->last_dial_error = 0;
    c->approval_answer = APPROVAL_ANSWER_NONE;
    c->approval_reason[0] = '\0';
    if (c->upstream == NULL)
        c->upstream_ip[0] = '\0';
}

static const char *kind_name(const struct conn *c)
{
    /* Requests inside an intercepted tunnel are "tls", redirected or not;
     * the redirected connection's own line stays "transparent". */
    if (c->intercepted)
        return "tls";
    if (c->transparent)
        return "transparent";
    return c->is_connect ? "connect" : "http";
}

void conn_log(struct conn *c, const char *decision, int status, const char *reason)
{
    if (c->logged)
        return;
    c->logged = true;
    struct log_event ev;
    log_event_init(&ev);
    ev.client = c->client_ip;
    ev.kind = kind_name(c);
    if (c->dest.host.len > 0) {
        ev.host = c->dest.host.text;
        ev.port = c->dest.port;
    }
    if (c->method[0])
        ev.method = c->method;
    if (c->path[0])
        ev.path = c->path;
    ev.decision = decision;
    /* A prompted request names who answered. */
    if (reason == NULL && c->approval_reason[0])
        reason = c->approval_reason;
    if (c->policy)
        ev.rule = c->decision.rule < 0 ? LOG_RULE_DEFAULT : c->decision.rule;
    ev.reason = reason;
    if (c->upstream_ip[0])
        ev.upstream_ip = c->upstream_ip;
    ev.status = status;
    ev.bytes_up = (int64_t)c->bytes_up;
    ev.bytes_down = (int64_t)c->bytes_down;
    ev.ms = c->started_us ? (int64_t)((conn_now_us() - c->started_us) / 1000) : 0;
    log_write_event(&ev);
}

/* Frees a bufferevent while the caller keeps its socket. libevent may
 * finalize a bufferevent later (when freed inside its own callback); its
 * socket is detached now, so closing and reusing the descriptor cannot
 * collide with events libevent still holds for it. */
void conn_release_bufferevent(struct bufferevent *bev)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);
    bufferevent_setfd(under ? under : bev, -1);
    bufferevent_free(bev);
}

void conn_free_upstream(struct conn *c)
{
    if (c->upstream) {
        conn_release_bufferevent(c->upstream);
        c->upstream = NULL;
    }
    if (c->upstream_fd >= 0) {
        close(c->upstream_fd);
        c->upstream_fd = -1;
    }
    c->upstream_reusable = false;
    c->upstream_lowat = 0;
    c->upstream_host[0] = '\0';
}

void conn_close(struct conn *c, const char *why)
{
    struct worker *w = c->w;
    if (!c->logged && c->policy != NULL) {
        if (c->state == CONN_TUNNEL)
            conn_log(c, c->decision.would_deny ? "would_deny" : "allow",
                     c->resp_status ? c->resp_status : 200, NULL);
        else if (c->state == CONN_FORWARD)
            conn_log(c, c->decision.would_deny ? "would_deny" : "allow", c->resp_status, why);
        else if (c->state == CONN_RESOLVING || c->state == CONN_CONNECTING)
            conn_log(c, "error", 0, why);
    }
    if (c->approval) {
        conn_log(c, "error", 0, "closed while waiting for an operator's answer");
        approval_conn_closed(c);
    }
    if (c->counted_tunnel) {
        limits_tunnel_leave(&c->client_addr);
        metrics_gauge_add(&metrics.tunnels_active, -1);
        c->counted_tunnel = false;
    }
    if (c->tunnel) {
        tunnel_free(c->tunnel);
        c->tunnel = NULL;
    }
    if (c->timer) {
        event_free(c->timer);
        c->timer = NULL;
    }
    if (c->client) {
        struct bufferevent *under = bufferevent_get_underlying(c->client);
        if (c->client_drain_cb && under)
            evbuffer_remove_cb_entry(bufferevent_get_output(under), c->client_drain_cb);
        c->client_drain_cb = NULL;
        conn_release_bufferevent(c->client);
        c->client = NULL;
    }
    if (c->client_fd >= 0) {
        close(c->client_fd);
        c->client_fd = -1;
    }
    conn_free_upstream(c);
    if (c->pending_head) {
        evbuffer_free(c->pending_head);
        c->pending_head = NULL;
    }
    if (c->policy) {
        policy_unref(c->policy);
        c->policy = NULL;
    }
    if (c->prev)
        c->prev->next = c->next;
    else if (w->conns == c)
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    limits_client_leave(&c->client_addr);
    limits_total_leave();
    metrics_gauge_add(&metrics.connections_active, -1);
    /* A pending lookup still holds c as its callback argument: the resolver
     * callback frees it once the cancellation is delivered. */
    if (c->resolve_pending) {
        dial_cancel(c);
        return;
    }
    free(c);
}

static void tls_socket_drained(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_close(arg, "answered");
}

static void tls_socket_event(struct bufferevent *bev, short what, void *arg)
{
    conn_close(arg, "client gone while answering");
}

/* The last step of closing: once the client's plain output is empty. With
 * TLS the encrypted bytes still sit in the socket bufferevent below the
 * filter; the filter is done, so that one's callbacks become ours. */
static void close_when_sent(struct conn *c, const char *why)
{
    struct bufferevent *under = bufferevent_get_underlying(c->client);
    if (under != NULL) {
        /* close_notify, so TLS clients see a clean end, not a truncation. */
        SSL *ssl = bufferevent_openssl_get_ssl(c->client);
        if (ssl && SSL_is_init_finished(ssl))
            SSL_shutdown(ssl);
    }
    if (under == NULL || evbuffer_get_length(bufferevent_get_output(under)) == 0) {
        conn_close(c, why);
        return;
    }
    bufferevent_setcb(under, NULL, tls_socket_drained, tls_socket_event, c);
    bufferevent_setwatermark(under, EV_WRITE, 0, 0);
    bufferevent_enable(under, EV_WRITE);
}

void conn_close_after_flush(struct conn *c, const char *why)
{
    conn_set_state(c, CONN_CLOSING);
    conn_free_upstream(c);
    if (c->client == NULL) {
        conn_close(c, why);
        return;
    }
    bufferevent_disable(c->client, EV_READ);
    /* Don't wait forever on a client that stopped reading. */
    arm_timer(c, c->w->cfg->header_timeout_s);
    conn_write_now(c->client);
    if (evbuffer_get_length(bufferevent_get_output(c->client)) == 0)
        close_when_sent(c, why);
}

static bool method_is_forwardable(const char *m, size_t len)
{
    static const char *const methods[] = {"GET",   "HEAD",    "POST",   "PUT",
                                          "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (http_method_is(m, len, methods[i]))
            return true;
    return false;
}

static void copy_bounded(char *dst, size_t size, const char *src, size_t len)
{
    if (len >= size)
        len = size - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void handle_connect(struct conn *c, const struct http_request *req, size_t head_len)
{
    const char *why = NULL;
    c->is_connect = true;
    copy_bounded(c->method, sizeof c->method, "CONNECT", 7);
    struct evbuffer *in = bufferevent_get_input(c->client);
    if (req->framing != HTTP_BODY_NONE) {
        conn_log(c, "error", 400, "CONNECT with a body");
        answer_error(c, 400, "a CONNECT request must not have a body", true);
        return;
    }
    c->dest.kind = DEST_CONNECT;
    if (host_parse_authority(req->target, req->target_len, 443, &c->dest.host, &c->dest.port,
                             &why) < 0) {
        metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
        conn_log(c, "error", 400, why);
        answer_error(c, 400, why, true);
        return;
    }
    c->policy = proxy_policy_for((const struct sockaddr *)&c->client_addr);
    policy_decide(c->policy, &c->dest, &c->decision);
    /* A prompt parks the request whole; it is read again when answered. */
    if (c->decision.verdict == VERDICT_PROMPT && approval_wait(c))
        return;
    /* The tunnel's bytes stay in the buffer until they can be relayed: they
     * are never parsed as another request. */
    evbuffer_drain(in, head_len);
    bufferevent_disable(c->client, EV_READ);

    if (c->decision.verdict != VERDICT_ALLOW) {
        metrics_count_decision(METRICS_KIND_CONNECT, METRICS_DENY, c->decision.rule);
        answer_denied(c, NULL);
        return;
    }
    if (c->decision.needs_intercept &&
        (!intercept_available() || policy_passthrough(c->policy, &c->dest.host))) {
        metrics_count_decision(METRICS_KIND_CONNECT, METRICS_DENY, c->decision.rule);
        answer_denied(c, "the rule needs TLS interception, which is not available here");
        return;
    }
    metrics_count_decision(METRICS_KIND_CONNECT,
                           c->decision.would_deny ? METRICS_WOULD_DENY : METRICS_ALLOW,
                           c->decision.rule);
    if (!limits_tunnel_enter(&c->client_addr, c->w->cfg->max_tunnels_per_client)) {
        metrics_add(&metrics.errors[METRICS_ERR_LIMIT], 1);
        conn_log(c, "error", 429, "too many tunnels from this client");
        answer_error(c, 429, "too many tunnels from this client", true);
        return;
    }
    c->counted_tunnel = true;
    metrics_gauge_add(&metrics.tunnels_active, 1);
    c->tunnel_host = c->dest.host;
    c->tunnel_port = c->dest.port;
    c->intercept_wanted = intercept_available() && policy_intercept_enabled(c->policy) &&
                          !policy_passthrough(c->policy, &c->dest.host);
    dial_start(c);
}

static void handle_request(struct conn *c, const char *head, size_t head_len,
                           const struct http_request *req)
{
    struct http_error err = {0, NULL};
    /* A request resumed after a prompt was counted and timed already. */
    if (c->approval_answer == APPROVAL_ANSWER_NONE) {
        c->started_us = conn_now_us();
        metrics_add(&metrics.requests_total, 1);
    }
    evtimer_del(c->timer);
    copy_bounded(c->method, sizeof c->method, req->method, req->method_len);
    /* First: a redirected connection may be an intercepted TLS one. */
    if (c->intercepted) {
        if (!method_is_forwardable(req->method, req->method_len)) {
            bufferevent_disable(c->client, EV_READ);
            conn_log(c, "error", 405, "method not allowed through the proxy");
            answer_error(c, 405, "method not allowed through the proxy", true);
            return;
        }
        intercept_handle_request(c, head, head_len, req);
        return;
    }
    if (c->transparent) {
        const char *why = NULL;
        struct http_uri uri;
        if (!method_is_forwardable(req->method, req->method_len)) {
            conn_log(c, "error", 405, "method not allowed through the proxy");
            answer_error(c, 405, "method not allowed through the proxy", true);
            return;
        }
        if (transparent_check_host(c, req, &uri, &why) < 0) {
            metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
            conn_log(c, "error", 400, why);
            answer_error(c, 400, why, true);
            return;
        }
        forward_begin(c, head, head_len, req, &uri);
        return;
    }
    if (http_method_is(req->method, req->method_len, "CONNECT")) {
        handle_connect(c, req, head_len);
        return;
    }
    bool close_after = req->framing != HTTP_BODY_NONE || !req->keep_alive;
    if (!method_is_forwardable(req->method, req->method_len)) {
        metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
        conn_log(c, "error", 405, "method not allowed through the proxy");
        answer_error(c, 405, "method not allowed through the proxy", true);
        return;
    }
    if (req->target_len > 0 && (req->target[0] == '/' || req->target[0] == '*')) {
        metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
        conn_log(c, "error", 400, "origin-form request on the proxy port");
        answer_error(c, 400,
                     "origin-form request: sluice is a forward proxy, send absolute URIs "
                     "(set HTTP_PROXY)",
                     true);
        return;
    }
    struct http_uri uri;
    if (http_parse_absolute_uri(req->target, req->target_len, &uri, &err) < 0) {
        metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
        conn_log(c, "error", err.status, err.reason);
        answer_error(c, err.status, err.reason, true);
        return;
    }
    (void)close_after;
    forward_begin(c, head, head_len, req, &uri);
}

/* Looks for a complete request head in the client's input. Only rescans
 * when a new line has arrived, so a slow client costs no quadratic work. */
static void read_request_head(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->client);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    if (!c->head_started) {
        c->head_started = true;
        arm_timer(c, c->w->cfg->header_timeout_s);
    }
    if (c->transparent && !c->first_bytes_seen) {
        int kind = transparent_read_first(c);
        if (kind <= 0)
            return;
        c->first_bytes_seen = true;
    }
    struct evbuffer_ptr from;
    evbuffer_ptr_set(in, &from, c->head_scan_from, EVBUFFER_PTR_SET);
    struct evbuffer_ptr nl = evbuffer_search(in, "\n", 1, &from);
    /* Without a line end the parser can still judge an over-long request
     * line (414); shorter ones just wait. */
    if (nl.pos < 0 && len <= HTTP_MAX_REQUEST_LINE) {
        c->head_scan_from = len;
        if (len > HTTP_MAX_HEAD_BYTES) {
            metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
            conn_log(c, "error", 431, "request head too large");
            answer_error(c, 431, "request head too large", true);
        }
        return;
    }
    size_t n = len > HTTP_MAX_HEAD_BYTES + 1 ? HTTP_MAX_HEAD_BYTES + 1 : len;
    const char *buf = (const char *)evbuffer_pullup(in, (ssize_t)n);
    struct http_request req;
    struct http_error err = {0, NULL};
    ssize_t r = http_parse_request(buf, n, &req, &err);
    if (r == 0) {
        c->head_scan_from = len;
        if (len > HTTP_MAX_HEAD_BYTES) {
            metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
            conn_log(c, "error", 431, "request head too large");
            answer_error(c, 431, "request head too large", true);
        }
        return;
    }
    if (r < 0) {
        metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
        c->started_us = conn_now_us();
        conn_log(c, "error", err.status, err.reason);
        answer_error(c, err.status, err.reason, true);
        return;
    }
    handle_request(c, buf, (size_t)r, &req);
}

/* libevent reads 4 KiB at a time unless told otherwise: bulk bodies want
 * much larger reads and writes. */
void conn_tune_bufferevent(struct bufferevent *bev)
{
    bufferevent_set_max_single_read(bev, CONN_MAX_SINGLE_IO);
    bufferevent_set_max_single_write(bev, CONN_MAX_SINGLE_IO);
}

/* Writes what a bufferevent holds straight away. Most answers fit the
 * socket buffer, so the write event is never armed and the request costs no
 * epoll_ctl; only a partial write leaves the rest to libevent. */
void conn_write_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0)
        return;
    /* A TLS filter encrypts on its own schedule: never write its plain
     * bytes to the socket. */
    if (bufferevent_get_underlying(bev) != NULL) {
        bufferevent_enable(bev, EV_WRITE);
        return;
    }
    /* libevent freezes the front of a bufferevent's output so callers
     * cannot drain it under its feet; its own write callback thaws it the
     * same way for the duration of the write. */
    evbuffer_unfreeze(out, 1);
    evbuffer_write(out, bufferevent_getfd(bev));
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) == 0)
        bufferevent_disable(bev, EV_WRITE);
    else
        bufferevent_enable(bev, EV_WRITE);
}

/* libevent 2.1 reads at most 4 KiB per wake-up (EVBUFFER_MAX_READ), which
 * turns a bulk body into a read, a write and a client wake-up per 4 KiB.
 * Bodies are read here in large slices instead, from the socket straight
 * into the bufferevent's input (its end is thawed just for that). Plain
 * sockets only: a TLS filter reads its own records. EOF and errors are left
 * for libevent's next read to report. Returns the bytes read. */
size_t conn_fill(struct bufferevent *bev, size_t max)
{
    if (bev == NULL || bufferevent_get_underlying(bev) != NULL)
        return 0;
    int fd = bufferevent_getfd(bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t total = 0;
    evbuffer_unfreeze(in, 0);
    while (total < max) {
        size_t want = max - total < CONN_FILL_SLICE ? max - total : CONN_FILL_SLICE;
        struct evbuffer_iovec v[2];
        int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
        if (nv <= 0)
            break;
        struct iovec iov[2];
        size_t room = 0;
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
            room += v[i].iov_len;
        }
        ssize_t r = readv(fd, iov, nv);
        if (r <= 0) {
            evbuffer_commit_space(in, v, 0);
            break;
        }
        size_t left = (size_t)r;
        for (int i = 0; i < nv; i++) {
            if (v[i].iov_len > left)
                v[i].iov_len = left;
            left -= v[i].iov_len;
        }
        evbuffer_commit_space(in, v, nv);
        total += (size_t)r;
        if ((size_t)r < room)
            break; /* the socket is drained */
    }
    evbuffer_freeze(in, 0);
    return total;
}

void conn_next_request(struct conn *c)
{
    reset_request(c);
    conn_set_state(c, CONN_READ_HEAD);
    if (c->w->draining) {
        conn_close_after_flush(c, "shutdown");
        return;
    }
    arm_timer(c, c->w->cfg->idle_timeout_s);
    if (c->client_paused) {
        bufferevent_enable(c->client, EV_READ);
        c->client_paused = false;
    }
    /* A pipelined request may already be waiting. */
    if (evbuffer_get_length(bufferevent_get_input(c->client)) > 0)
        read_request_head(c);
}

void conn_resume_request(struct conn *c)
{
    conn_set_state(c, CONN_READ_HEAD);
    c->head_scan_from = 0;
    arm_timer(c, c->w->cfg->header_timeout_s);
    read_request_head(c);
}

void conn_upstream_connected(struct conn *c)
{
    if (c->intercepted || (c->is_connect && c->intercept_wanted)) {
        intercept_upstream_connected(c);
        return;
    }
    if (c->is_connect && c->transparent) {
        /* The workload never asked for a tunnel: no 200, its ClientHello
         * goes straight on. */
        if (tunnel_start(c, NULL, 0) < 0)
            conn_close(c, "tunnel setup failed");
        return;
    }
    if (c->is_connect) {
        static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        if (tunnel_start(c, established, sizeof established - 1) < 0)
            conn_close(c, "tunnel setup failed");
        return;
    }
    forward_upstream_ready(c);
}

static void client_read_cb(struct bufferevent *bev, void *arg);

/* The client's TLS session is up: requests inside it are read like any
 * other, on the TLS bufferevent. */
void conn_intercepted_ready(struct conn *c)
{
    c->is_connect = false;
    c->logged = false;
    bufferevent_setcb(c->client, client_read_cb, client_write_cb, client_event_cb, c);
    conn_next_request(c);
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    switch (c->state) {
    case CONN_READ_HEAD:
        read_request_head(c);
        break;
    case CONN_FORWARD:
        forward_client_readable(c);
        break;
    default:
        /* Bytes wait in the buffer (bounded by the read watermark) until
         * the state wants them. */
        break;
    }
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            close_when_sent(c, "answered");
        return;
    }
    /* The client drained what we queued: resume reading the upstream. */
    if (c->state == CONN_FORWARD && c->upstream && c->resp_phase != RESP_DONE) {
        bufferevent_enable(c->upstream, EV_READ);
        forward_upstream_readable(c);
    }
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_EOF) {
        /* A half-closed client may still wait for its answer, e.g. a body
         * sent with close-delimited intent; only the states that have no
         * answer pending close at once. */
        if (c->state == CONN_READ_HEAD || c->state == CONN_CLOSING ||
            c->state == CONN_WAITING) {
            conn_close(c, "client closed");
            return;
        }
        bufferevent_disable(bev, EV_READ);
        if (c->state != CONN_FORWARD || !c->req_body.done) {
            conn_close(c, "client closed before sending the whole body");
            return;
        }
        return;
    }
    conn_close(c, (what & BEV_EVENT_ERROR) ? "client connection error" : "client timeout");
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_WAITING) {
        approval_timer(c);
        return;
    }
    if (c->state == CONN_READ_HEAD && c->head_started) {
        metrics_add(&metrics.errors[METRICS_ERR_HEADER_TIMEOUT], 1);
        conn_log(c, "error", 408, "request head not received in time");
        answer_error(c, 408, "request head not received in time", true);
        return;
    }
    conn_close(c, c->state == CONN_CLOSING ? "client did not read the answer" : "idle timeout");
}
