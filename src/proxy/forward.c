/* forward: absolute-form HTTP requests. Each request is decided on its own,
 * rewritten to origin-form with the Host the URI names, and its body and
 * the answer's body are streamed with the framing the parser found. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/metrics.h"
#include "proxy/conn.h"
#include "proxy/intercept.h"

#define VIA_HEADER "Via: 1.1 sluice\r\n"

static bool name_is(const struct http_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static bool name_has_prefix(const struct http_header *h, const char *prefix)
{
    size_t n = strlen(prefix);
    return h->name_len >= n && strncasecmp(h->name, prefix, n) == 0;
}

/* Whether the Connection header value lists this header's name. */
static bool listed_in_connection(const struct http_header *h, const char *value, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t start = i;
        while (i < len && value[i] != ',' && value[i] != ' ' && value[i] != '\t')
            i++;
        if (i - start == h->name_len && strncasecmp(value + start, h->name, h->name_len) == 0)
            return true;
    }
    return false;
}

/* Hop-by-hop headers (RFC 9110 §7.6.1) and what only the proxy hop may
 * see. Transfer-Encoding stays: chunked bodies are relayed as they are. */
static bool is_hop_header(const struct http_header *h)
{
    return name_is(h, "connection") || name_is(h, "keep-alive") || name_is(h, "te") ||
           name_is(h, "trailer") || name_is(h, "upgrade") || name_has_prefix(h, "proxy-");
}

static const struct http_header *connection_header(const struct http_header *hs, size_t n)
{
    int i = http_find_header(hs, n, "connection");
    return i < 0 ? NULL : &hs[i];
}

/* A rewritten head is assembled in one bounded buffer and handed to
 * libevent in one piece. The bound leaves room for what sluice adds to a
 * head that was itself at most HTTP_MAX_HEAD_BYTES. */
#define HEAD_OUT_MAX (HTTP_MAX_HEAD_BYTES + 1024)

struct head_out {
    char buf[HEAD_OUT_MAX];
    size_t len;
    bool overflow;
};

static void head_put(struct head_out *o, const char *s, size_t n)
{
    if (o->len + n > sizeof o->buf) {
        o->overflow = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void head_puts(struct head_out *o, const char *s)
{
    head_put(o, s, strlen(s));
}

static void add_header(struct head_out *out, const struct http_header *h)
{
    head_put(out, h->name, h->name_len);
    head_put(out, ": ", 2);
    head_put(out, h->value, h->value_len);
    head_put(out, "\r\n", 2);
}

/* Forwarding headers from the workload are dropped rather than passed on:
 * they can be forged and would leak sandbox addresses (Squid's
 * "forwarded_for delete"); Via says a proxy was on the path. */
static bool is_forwarding_header(const struct http_header *h)
{
    return name_is(h, "forwarded") || name_has_prefix(h, "x-forwarded-") ||
           name_is(h, "http2-settings");
}

/* Injected headers, resolved for one request. The values are secrets:
 * wiped as soon as the head is built. */
#define INJECT_MAX 16
#define INJECT_VALUE_MAX 4096

struct injected {
    const char *name[INJECT_MAX];
    char value[INJECT_MAX][INJECT_VALUE_MAX];
    size_t n;
};

static bool is_injected(const struct injected *inj, const struct http_header *h)
{
    for (size_t i = 0; inj && i < inj->n; i++)
        if (name_is(h, inj->name[i]))
            return true;
    return false;
}

static void build_request_head(struct conn *c, const struct http_request *req,
                               const struct http_uri *uri, const struct injected *inj,
                               struct head_out *out)
{
    char authority[HOST_TEXT_SIZE + 16];
    if (c->dest.port == (c->intercepted ? 443 : 80)) {
        const struct host *h = &c->dest.host;
        if (h->kind == HOST_KIND_IPV6)
            snprintf(authority, sizeof authority, "[%s]", h->text);
        else
            snprintf(authority, sizeof authority, "%s", h->text);
    } else {
        host_format_authority(&c->dest.host, c->dest.port, authority, sizeof authority);
    }
    head_put(out, req->method, req->method_len);
    head_put(out, " ", 1);
    head_put(out, uri->path, uri->path_len);
    /* An HTTP/1.0 client cannot read chunked answers: ask as HTTP/1.0 so
     * the upstream never sends one. */
    head_puts(out, req->version_minor == 0 ? " HTTP/1.0\r\nHost: " : " HTTP/1.1\r\nHost: ");
    head_puts(out, authority);
    head_put(out, "\r\n", 2);

    const struct http_header *conn_hdr = connection_header(req->headers, req->n_headers);
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (name_is(h, "host") || is_hop_header(h) || is_forwarding_header(h) ||
            is_injected(inj, h))
            continue;
        if (conn_hdr && listed_in_connection(h, conn_hdr->value, conn_hdr->value_len))
            continue;
        add_header(out, h);
    }
    if (c->upgrade_websocket) {
        int u = http_find_header(req->headers, req->n_headers, "upgrade");
        head_puts(out, "Connection: Upgrade\r\n");
        add_header(out, &req->headers[u]);
    }
    for (size_t i = 0; inj && i < inj->n; i++) {
        head_puts(out, inj->name[i]);
        head_put(out, ": ", 2);
        head_puts(out, inj->value[i]);
        head_put(out, "\r\n", 2);
    }
    head_puts(out, VIA_HEADER "\r\n");
}

static void count_decision(struct conn *c, enum metrics_outcome outcome)
{
    metrics_count_decision(METRICS_KIND_HTTP, outcome, c->decision.rule);
}

static void copy_path_for_log(struct conn *c, const struct http_uri *uri)
{
    /* The query can carry tokens: logs get the path only. */
    size_t n = uri->path_only_len;
    if (n >= sizeof c->path)
        n = sizeof c->path - 1;
    memcpy(c->path, uri->path, n);
    c->path[n] = '\0';
}

static void upstream_read_cb(struct bufferevent *bev, void *arg);
static void upstream_write_cb(struct bufferevent *bev, void *arg);
static void upstream_event_cb(struct bufferevent *bev, short what, void *arg);

static void release_upstream(struct conn *c)
{
    conn_free_upstream(c);
}

static bool can_reuse_upstream(struct conn *c)
{
    if (c->upstream == NULL || !c->upstream_reusable || c->upstream_port != c->dest.port ||
        strcmp(c->upstream_host, c->dest.host.text) != 0)
        return false;
    /* The policy may have changed since the address was checked. */
    const char *why = NULL;
    return policy_address_permitted(c->policy, &c->dest, &c->decision,
                                    (struct sockaddr *)&c->upstream_addr, &why);
}

/* Expands ${env:NAME} and ${file:PATH} in an inject template into dst.
 * Files are read on each use, so a rotated secret takes effect at once. */
static int expand_template(const char *tpl, char *dst, size_t size)
{
    size_t len = 0;
    while (*tpl) {
        const char *ref = strstr(tpl, "${");
        size_t lit = ref ? (size_t)(ref - tpl) : strlen(tpl);
        if (len + lit >= size)
            return -1;
        memcpy(dst + len, tpl, lit);
        len += lit;
        if (ref == NULL)
            break;
        const char *end = strchr(ref, '}');
        if (end == NULL)
            return -1;
        char key[512];
        size_t klen = (size_t)(end - ref - 2);
        if (klen >= sizeof key)
            return -1;
        memcpy(key, ref + 2, klen);
        key[klen] = '\0';
        if (strncmp(key, "env:", 4) == 0) {
            const char *v = getenv(key + 4);
            size_t vlen = v ? strlen(v) : 0;
            if (v == NULL || len + vlen >= size)
                return -1;
            memcpy(dst + len, v, vlen);
            len += vlen;
        } else if (strncmp(key, "file:", 5) == 0) {
            FILE *f = fopen(key + 5, "re");
            if (f == NULL)
                return -1;
            size_t n = fread(dst + len, 1, size - len - 1, f);
            fclose(f);
            while (n > 0 && (dst[len + n - 1] == '\n' || dst[len + n - 1] == '\r'))
                n--;
            len += n;
        } else {
            return -1;
        }
        tpl = end + 1;
    }
    dst[len] = '\0';
    /* A secret must not smuggle a header break into the request. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)dst[i] < 0x20 && dst[i] != '\t')
            return -1;
    return 0;
}

static void wipe_injected(struct injected *inj)
{
    for (size_t i = 0; i < inj->n; i++)
        explicit_bzero(inj->value[i], sizeof inj->value[i]);
    inj->n = 0;
}

static int resolve_injected(struct conn *c, struct injected *inj)
{
    inj->n = 0;
    if (c->decision.rule < 0)
        return 0;
    const struct policy_header *hs = NULL;
    size_t n = policy_rule_inject(c->policy, (size_t)c->decision.rule, &hs);
    for (size_t i = 0; i < n && i < INJECT_MAX; i++) {
        inj->name[i] = hs[i].name;
        inj->n = i + 1;
        if (expand_template(hs[i].value, inj->value[i], sizeof inj->value[i]) < 0) {
            wipe_injected(inj);
            return -1;
        }
    }
    return 0;
}

void forward_begin(struct conn *c, const char *head, size_t head_len,
                   const struct http_request *req, const struct http_uri *uri)
{
    const char *why = NULL;
    struct evbuffer *in = bufferevent_get_input(c->client);
    if (!c->transparent)
        c->dest.kind = DEST_HTTP;
    c->client_keep_alive = req->keep_alive;
    c->client_http10 = req->version_minor == 0;
    c->request_is_head = http_method_is(req->method, req->method_len, "HEAD");
    c->req_body.framing = req->framing;
    c->req_body.remaining = req->content_length;
    c->req_body.done = req->framing == HTTP_BODY_NONE ||
                       (req->framing == HTTP_BODY_LENGTH && req->content_length == 0);
    http_chunked_init(&c->req_body.chunked);
    copy_path_for_log(c, uri);
    if (c->intercepted) {
        /* Inside a tunnel the destination is the CONNECT's (or the
         * redirected ClientHello's), and the Host header was already
         * checked against it. */
        c->dest.kind = c->transparent ? DEST_TRANSPARENT : DEST_CONNECT;
        c->dest.host = c->tunnel_host;
        c->dest.port = c->tunnel_port;
    } else if (c->transparent) {
        /* transparent_check_host() set host and port from Host and the
         * connection's original destination. */
    } else if (host_parse_authority(uri->authority, uri->authority_len, 80, &c->dest.host,
                                    &c->dest.port, &why) < 0) {
        metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
        conn_log(c, "error", 400, why);
        answer_error(c, 400, why, true);
        return;
    }
    c->dest.method = c->method;
    c->dest.method_len = strlen(c->method);
    c->dest.path = uri->path;
    c->dest.path_len = uri->path_only_len;
    c->policy = proxy_policy_for((const struct sockaddr *)&c->client_addr);
    policy_decide(c->policy, &c->dest, &c->decision);
    c->dest.path = NULL; /* points into the input buffer, about to go */
    c->dest.path_len = 0;
    /* A prompt parks the request with its head unread; it comes back
     * through here with the answer. */
    if (c->decision.verdict == VERDICT_PROMPT && approval_wait(c))
        return;
    if (c->decision.verdict != VERDICT_ALLOW) {
        count_decision(c, METRICS_DENY);
        evbuffer_drain(in, head_len);
        answer_denied(c, NULL);
        return;
    }
    count_decision(c, c->decision.would_deny ? METRICS_WOULD_DENY : METRICS_ALLOW);

    if (req->upgrade) {
        int u = http_find_header(req->headers, req->n_headers, "upgrade");
        c->upgrade_websocket = u >= 0 && http_value_has_token(req->headers[u].value,
                                                              req->headers[u].value_len,
                                                              "websocket");
    }
    static _Thread_local struct head_out out;
    static _Thread_local struct injected inj;
    out.len = 0;
    out.overflow = false;
    if (resolve_injected(c, &inj) < 0) {
        evbuffer_drain(in, head_len);
        conn_log(c, "error", 502, "a credential this rule injects is unavailable");
        answer_error(c, 502, "a credential this rule injects is unavailable", true);
        return;
    }
    build_request_head(c, req, uri, &inj, &out);
    wipe_injected(&inj);
    (void)head;
    if (out.overflow || (c->pending_head == NULL && (c->pending_head = evbuffer_new()) == NULL)) {
        explicit_bzero(out.buf, out.len);
        evbuffer_drain(in, head_len);
        conn_log(c, "error", 431, "request head too large after rewriting");
        answer_error(c, 431, "request head too large after rewriting", true);
        return;
    }
    evbuffer_add(c->pending_head, out.buf, out.len);
    explicit_bzero(out.buf, out.len);
    evbuffer_drain(in, head_len);
    c->bytes_up += head_len;

    if (can_reuse_upstream(c)) {
        forward_upstream_ready(c);
        return;
    }
    release_upstream(c);
    dial_start(c);
}

void forward_upstream_ready(struct conn *c)
{
    conn_set_state(c, CONN_FORWARD);
    c->upstream_reusable = false;
    snprintf(c->upstream_host, sizeof c->upstream_host, "%s", c->dest.host.text);
    c->upstream_port = c->dest.port;
    bufferevent_setcb(c->upstream, upstream_read_cb, upstream_write_cb, upstream_event_cb, c);
    bufferevent_setwatermark(c->upstream, EV_WRITE, CONN_MAX_QUEUED / 2, 0);
    bufferevent_setwatermark(c->client, EV_WRITE, CONN_MAX_QUEUED / 2, 0);
    struct timeval idle = {c->w->cfg->idle_timeout_s, 0};
    bufferevent_set_timeouts(c->upstream, &idle, &idle);
    bufferevent_enable(c->upstream, EV_READ);
    bufferevent_write_buffer(c->upstream, c->pending_head);
    conn_write_now(c->upstream);
    forward_client_readable(c);
}

/* What a side has yet to send: below a TLS filter the ciphertext waits in
 * the socket bufferevent, and that must count for backpressure too. */
static size_t pending_output(struct bufferevent *bev)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);
    return evbuffer_get_length(bufferevent_get_output(bev)) +
           (under ? evbuffer_get_length(bufferevent_get_output(under)) : 0);
}

/* Moves body bytes from src to dst as far as the framing allows, at most
 * CONN_MAX_QUEUED per call. Returns bytes moved, or -1 on bad framing. */
static ssize_t move_body(struct evbuffer *src, struct evbuffer *dst, struct body_progress *p,
                         struct http_error *err)
{
    size_t moved = 0;
    while (!p->done && moved < CONN_MAX_QUEUED) {
        size_t avail = evbuffer_get_length(src);
        if (avail == 0)
            break;
        size_t n;
        switch (p->framing) {
        case HTTP_BODY_LENGTH:
            n = avail < p->remaining ? avail : (size_t)p->remaining;
            p->remaining -= n;
            p->done = p->remaining == 0;
            break;
        case HTTP_BODY_CHUNKED: {
            struct evbuffer_iovec v;
            if (evbuffer_peek(src, -1, NULL, &v, 1) < 1)
                return (ssize_t)moved;
            ssize_t s = http_chunked_scan(&p->chunked, v.iov_base, v.iov_len, err);
            if (s < 0)
                return -1;
            n = (size_t)s;
            p->done = p->chunked.done;
            break;
        }
        case HTTP_BODY_CLOSE:
            n = avail;
            break;
        default:
            p->done = true;
            n = 0;
            break;
        }
        if (n > 0)
            evbuffer_remove_buffer(src, dst, n);
        moved += n;
    }
    return (ssize_t)moved;
}

void forward_client_readable(struct conn *c)
{
    if (c->state != CONN_FORWARD || c->upstream == NULL)
        return;
    struct http_error err = {400, "malformed chunked request body"};
    struct evbuffer *in = bufferevent_get_input(c->client);
    struct evbuffer *out = bufferevent_get_output(c->upstream);
    size_t queued = evbuffer_get_length(out) + evbuffer_get_length(in);
    if (!c->req_body.done && queued < CONN_MAX_QUEUED)
        conn_fill(c->client, CONN_MAX_QUEUED - queued);
    ssize_t n = move_body(in, out, &c->req_body, &err);
    if (n < 0) {
        metrics_add(&metrics.errors[METRICS_ERR_BAD_REQUEST], 1);
        conn_log(c, "error", 400, err.reason);
        release_upstream(c);
        answer_error(c, 400, err.reason, true);
        return;
    }
    c->bytes_up += (uint64_t)n;
    metrics_add(&metrics.bytes_up, (uint64_t)n);
    if (n > 0)
        conn_write_now(c->upstream);
    /* The client stays readable (its read watermark bounds what piles up):
     * toggling it per request would cost two epoll_ctl calls each. Only a
     * slow upstream pauses it. */
    if (!c->req_body.done && evbuffer_get_length(out) >= CONN_MAX_QUEUED) {
        bufferevent_disable(c->client, EV_READ);
        c->client_paused = true;
    } else if (c->client_paused) {
        bufferevent_enable(c->client, EV_READ);
        c->client_paused = false;
    }
}

static void write_response_head(struct conn *c, const struct http_response *resp, bool keep)
{
    struct head_out o;
    struct head_out *out = &o;
    char status[24];
    o.len = 0;
    o.overflow = false;
    snprintf(status, sizeof status, "HTTP/1.1 %03d ", resp->status);
    head_puts(out, status);
    head_put(out, resp->reason, resp->reason_len);
    head_put(out, "\r\n", 2);
    const struct http_header *conn_hdr = connection_header(resp->headers, resp->n_headers);
    bool switching = resp->status == 101;
    for (size_t i = 0; i < resp->n_headers; i++) {
        const struct http_header *h = &resp->headers[i];
        if (switching && (name_is(h, "upgrade") || name_is(h, "connection"))) {
            add_header(out, h);
            continue;
        }
        if (is_hop_header(h))
            continue;
        if (conn_hdr && listed_in_connection(h, conn_hdr->value, conn_hdr->value_len))
            continue;
        add_header(out, h);
    }
    if (!switching && resp->status >= 200) {
        if (!keep)
            head_puts(out, "Connection: close\r\n");
        else if (c->client_http10)
            head_puts(out, "Connection: keep-alive\r\n");
    }
    head_put(out, "\r\n", 2);
    /* A response head cannot outgrow the bound: it was parsed within
     * HTTP_MAX_HEAD_BYTES and only lost headers here. */
    evbuffer_add(bufferevent_get_output(c->client), o.buf, o.len);
}

/* While a long Content-Length body streams, wake up only when a good slice
 * of it is waiting (SO_RCVLOWAT): reading each few-KiB segment as it lands
 * costs a read, a write and a wake-up of the client per segment. The mark
 * never exceeds what is still to come, so the end of the body is never
 * held back. Plain sockets only: a TLS filter's records do not map to it. */
#define UPSTREAM_LOWAT_MAX (64 * 1024)

static void set_upstream_lowat(struct conn *c)
{
    int lowat = 1;
    if (c->upstream && bufferevent_get_underlying(c->upstream) == NULL &&
        c->resp_body.framing == HTTP_BODY_LENGTH && !c->resp_body.done) {
        size_t buffered = evbuffer_get_length(bufferevent_get_input(c->upstream));
        uint64_t to_come = c->resp_body.remaining > buffered ? c->resp_body.remaining - buffered : 0;
        lowat = to_come > UPSTREAM_LOWAT_MAX ? UPSTREAM_LOWAT_MAX : (int)to_come;
        if (lowat < 1)
            lowat = 1;
    }
    int current = c->upstream_lowat ? c->upstream_lowat : 1; /* 1: the kernel's default */
    if (c->upstream_fd >= 0 && lowat != current) {
        setsockopt(c->upstream_fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
        c->upstream_lowat = lowat;
    }
}

static void finish_exchange(struct conn *c)
{
    c->resp_phase = RESP_DONE;
    set_upstream_lowat(c); /* back to 1 for the next answer's head */
    conn_log(c, c->decision.would_deny ? "would_deny" : "allow", c->resp_status, NULL);
    bool keep_client = c->client_keep_alive && c->req_body.done &&
                       c->resp_body.framing != HTTP_BODY_CLOSE && !c->w->draining;
    if (c->resp_keep_alive && c->req_body.done && c->upstream) {
        /* Park the upstream for the next request to the same host. */
        c->upstream_reusable = true;
        bufferevent_disable(c->upstream, EV_WRITE);
        bufferevent_enable(c->upstream, EV_READ);
    } else {
        release_upstream(c);
    }
    if (keep_client)
        conn_next_request(c);
    else
        conn_close_after_flush(c, "exchange done");
}

/* Parses the response head when it is complete; 0 = wait, -1 = closed. */
static int read_response_head(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->upstream);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        struct evbuffer_ptr from;
        evbuffer_ptr_set(in, &from, c->resp_scan_from, EVBUFFER_PTR_SET);
        struct evbuffer_ptr nl = evbuffer_search(in, "\n", 1, &from);
        size_t n = len > HTTP_MAX_HEAD_BYTES + 1 ? HTTP_MAX_HEAD_BYTES + 1 : len;
        struct http_response resp;
        struct http_error err = {502, "upstream sent a malformed response"};
        ssize_t r = 0;
        if (nl.pos >= 0) {
            const char *buf = (const char *)evbuffer_pullup(in, (ssize_t)n);
            r = http_parse_response(buf, n, c->request_is_head, &resp, &err);
        }
        if (r == 0) {
            c->resp_scan_from = len;
            if (len <= HTTP_MAX_HEAD_BYTES)
                return 0;
            err.reason = "upstream response head too large";
            r = -1;
        }
        if (r < 0) {
            char reason[160];
            snprintf(reason, sizeof reason, "upstream sent a malformed response: %s", err.reason);
            metrics_add(&metrics.errors[METRICS_ERR_UPSTREAM_502], 1);
            conn_log(c, "error", 502, reason);
            release_upstream(c);
            answer_error(c, 502, reason, true);
            return -1;
        }
        c->resp_scan_from = 0;
        if (resp.status == 101) {
            if (!c->upgrade_websocket) {
                conn_log(c, "error", 502, "upstream switched protocols unasked");
                release_upstream(c);
                answer_error(c, 502, "upstream switched protocols without being asked", true);
                return -1;
            }
            write_response_head(c, &resp, true);
            evbuffer_drain(in, (size_t)r);
            c->resp_status = 101;
            c->bytes_down += (uint64_t)r;
            if (c->intercepted)
                intercept_relay_start(c);
            else if (tunnel_start(c, NULL, 0) < 0)
                conn_close(c, "websocket relay setup failed");
            return -1;
        }
        if (resp.status < 200) {
            /* Interim answers (100 Continue, 103) pass through; the final
             * one follows. */
            write_response_head(c, &resp, true);
            evbuffer_drain(in, (size_t)r);
            conn_write_now(c->client);
            continue;
        }
        c->resp_status = resp.status;
        c->resp_keep_alive = resp.keep_alive;
        c->resp_body.framing = resp.framing;
        c->resp_body.remaining = resp.content_length;
        c->resp_body.done = resp.framing == HTTP_BODY_NONE ||
                            (resp.framing == HTTP_BODY_LENGTH && resp.content_length == 0);
        http_chunked_init_response(&c->resp_body.chunked);
        bool keep = c->client_keep_alive && resp.framing != HTTP_BODY_CLOSE && !c->w->draining;
        write_response_head(c, &resp, keep);
        evbuffer_drain(in, (size_t)r);
        c->bytes_down += (uint64_t)r;
        c->resp_phase = RESP_BODY;
        return 0;
    }
}

void forward_upstream_readable(struct conn *c)
{
    if (c->state != CONN_FORWARD) {
        /* A parked upstream spoke out of turn: it is not reusable. */
        release_upstream(c);
        return;
    }
    if (c->resp_phase == RESP_HEAD && read_response_head(c) < 0)
        return;
    if (c->resp_phase != RESP_BODY)
        return;
    struct http_error err = {502, "malformed chunked response body"};
    struct evbuffer *in = bufferevent_get_input(c->upstream);
    struct evbuffer *out = bufferevent_get_output(c->client);
    /* Everything not yet sent counts against the bound: what the client
     * has queued, and below a TLS filter also the plaintext and ciphertext
     * still waiting in it. */
    struct bufferevent *under = bufferevent_get_underlying(c->upstream);
    size_t queued = pending_output(c->client) + evbuffer_get_length(in) +
                    (under ? evbuffer_get_length(bufferevent_get_input(under)) : 0);
    if (!c->resp_body.done && queued < CONN_MAX_QUEUED) {
        if (under == NULL)
            conn_fill(c->upstream, CONN_MAX_QUEUED - queued);
        else if (conn_fill(under, CONN_MAX_QUEUED - queued) > 0)
            /* Ciphertext read below the TLS filter: let it decrypt that too
             * (deferred, so this callback is not re-entered). */
            bufferevent_trigger(under, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
    }
    ssize_t n = move_body(in, out, &c->resp_body, &err);
    if (n < 0) {
        conn_log(c, "error", c->resp_status, err.reason);
        conn_close(c, err.reason);
        return;
    }
    c->bytes_down += (uint64_t)n;
    metrics_add(&metrics.bytes_down, (uint64_t)n);
    conn_write_now(c->client);
    set_upstream_lowat(c);
    if (c->resp_body.done) {
        finish_exchange(c);
        return;
    }
    if (pending_output(c->client) >= CONN_MAX_QUEUED) {
        bufferevent_disable(c->upstream, EV_READ);
        c->upstream_paused = true;
    }
}

void forward_upstream_eof(struct conn *c)
{
    if (c->state != CONN_FORWARD || c->resp_phase == RESP_DONE) {
        release_upstream(c);
        return;
    }
    /* Whatever is still buffered belongs to the answer. */
    forward_upstream_readable(c);
    if (c->state != CONN_FORWARD || c->resp_phase == RESP_DONE)
        return;
    if (c->resp_phase == RESP_HEAD) {
        metrics_add(&metrics.errors[METRICS_ERR_UPSTREAM_502], 1);
        conn_log(c, "error", 502, "upstream closed the connection without answering");
        release_upstream(c);
        answer_error(c, 502, "upstream closed the connection without answering", true);
        return;
    }
    if (c->resp_body.framing == HTTP_BODY_CLOSE) {
        c->resp_body.done = true;
        c->resp_keep_alive = false;
        finish_exchange(c);
        return;
    }
    /* Truncated body: the client must see the connection end early. */
    conn_log(c, "error", c->resp_status, "upstream closed in the middle of the body");
    conn_close_after_flush(c, "upstream truncated the body");
}

static void upstream_read_cb(struct bufferevent *bev, void *arg)
{
    forward_upstream_readable(arg);
}

static void upstream_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_FORWARD && !c->req_body.done)
        forward_client_readable(c);
}

static void upstream_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_EOF) {
        forward_upstream_eof(c);
        return;
    }
    if (c->state != CONN_FORWARD || c->resp_phase == RESP_DONE) {
        release_upstream(c);
        return;
    }
    if (c->resp_phase == RESP_HEAD) {
        bool timeout = (what & BEV_EVENT_TIMEOUT) != 0;
        int status = timeout ? 504 : 502;
        const char *reason = timeout ? "upstream did not answer in time"
                                     : "upstream connection failed before answering";
        metrics_add(&metrics.errors[timeout ? METRICS_ERR_UPSTREAM_504
                                            : METRICS_ERR_UPSTREAM_502],
                    1);
        conn_log(c, "error", status, reason);
        release_upstream(c);
        answer_error(c, status, reason, true);
        return;
    }
    conn_log(c, "error", c->resp_status, "upstream connection failed in the middle of the body");
    conn_close(c, "upstream error");
}
