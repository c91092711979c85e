/* tunnel: relays an established CONNECT (or an upgraded WebSocket) both
 * ways with splice(2) through a pipe, so payload bytes never enter user
 * space (the HAProxy way). Pipes come from a per-worker pool and go back
 * when empty, so an idle tunnel holds two sockets and no buffers. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/metrics.h"
#include "proxy/conn.h"

/* Bigger pipes mean fewer wake-ups per megabyte on a bulk tunnel; the
 * pages are only held while data is in flight. */
#define TUNNEL_PIPE_SIZE (256 * 1024)
#define TUNNEL_SPLICE_MAX TUNNEL_PIPE_SIZE
/* Per wake-up, so one fast tunnel cannot starve the others. */
#define TUNNEL_BURST_MAX (1024 * 1024)

struct half {
    struct tunnel *t;
    int from, to;
    int pipe[2];
    size_t in_pipe;
    struct evbuffer *pending; /* bytes buffered before the relay began */
    bool eof;
    bool shut;
    struct event *read_ev;  /* from readable */
    struct event *write_ev; /* to writable again */
    uint64_t *bytes;
    _Atomic uint64_t *total;
};

struct tunnel {
    struct conn *c;
    struct half up;   /* client to upstream */
    struct half down; /* upstream to client */
    uint64_t last_activity_us;
};

static bool pipe_get(struct worker *w, int p[2])
{
    if (w->n_pipes > 0) {
        w->n_pipes--;
        p[0] = w->pipe_pool[w->n_pipes][0];
        p[1] = w->pipe_pool[w->n_pipes][1];
        return true;
    }
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        return false;
    /* Best effort: an unprivileged process may be capped lower. */
    fcntl(p[1], F_SETPIPE_SZ, TUNNEL_PIPE_SIZE);
    return true;
}

/* Only empty pipes go back to the pool; others are closed. */
static void pipe_put(struct worker *w, int p[2], bool empty)
{
    if (p[0] < 0)
        return;
    if (empty && w->n_pipes < WORKER_PIPE_POOL) {
        w->pipe_pool[w->n_pipes][0] = p[0];
        w->pipe_pool[w->n_pipes][1] = p[1];
        w->n_pipes++;
    } else {
        close(p[0]);
        close(p[1]);
    }
    p[0] = p[1] = -1;
}

static bool half_finished(const struct half *h)
{
    return h->eof && h->shut && h->in_pipe == 0;
}

/* Both events carry the idle timeout, so a tunnel whose peer stopped
 * reading is closed as surely as one where nobody writes. */
static void arm(struct event *ev, const struct half *h)
{
    struct timeval idle = {h->t->c->w->cfg->idle_timeout_s, 0};
    event_add(ev, &idle);
}

static void half_wait_writable(struct half *h)
{
    event_del(h->read_ev);
    arm(h->write_ev, h);
}

/* Moves bytes from h->from to h->to. Returns -1 when the tunnel must close. */
static int half_pump(struct half *h)
{
    struct tunnel *t = h->t;
    struct worker *w = t->c->w;
    size_t burst = 0;
    while (h->pending && evbuffer_get_length(h->pending) > 0) {
        int n = evbuffer_write(h->pending, h->to);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            half_wait_writable(h);
            return 0;
        }
        if (n <= 0)
            return -1;
        *h->bytes += (uint64_t)n;
        metrics_add(h->total, (uint64_t)n);
    }
    for (;;) {
        while (h->in_pipe > 0) {
            ssize_t n = splice(h->pipe[0], NULL, h->to, NULL, h->in_pipe,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0 && errno == EAGAIN) {
                half_wait_writable(h);
                return 0;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return -1;
            h->in_pipe -= (size_t)n;
            *h->bytes += (uint64_t)n;
            metrics_add(h->total, (uint64_t)n);
        }
        if (h->eof) {
            pipe_put(w, h->pipe, true);
            if (!h->shut) {
                shutdown(h->to, SHUT_WR);
                h->shut = true;
            }
            return 0;
        }
        /* The pipe is empty here; leave the rest for the next wake-up
         * (the read event is level-triggered). */
        if (burst >= TUNNEL_BURST_MAX) {
            arm(h->read_ev, h);
            return 0;
        }
        if (h->pipe[0] < 0 && !pipe_get(w, h->pipe))
            return -1;
        ssize_t n = splice(h->from, NULL, h->pipe[1], NULL, TUNNEL_SPLICE_MAX,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            /* Nothing to read now: give the empty pipe back. */
            pipe_put(w, h->pipe, true);
            arm(h->read_ev, h);
            return 0;
        }
        if (n < 0)
            return -1;
        if (n == 0) {
            h->eof = true;
            event_del(h->read_ev);
            continue;
        }
        h->in_pipe += (size_t)n;
        burst += (size_t)n;
        t->last_activity_us = conn_now_us();
    }
}

static void tunnel_step(struct half *h)
{
    struct tunnel *t = h->t;
    if (half_pump(h) < 0) {
        conn_close(t->c, "tunnel connection reset");
        return;
    }
    if (half_finished(&t->up) && half_finished(&t->down))
        conn_close(t->c, "tunnel closed");
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct half *h = arg;
    struct tunnel *t = h->t;
    if (what & EV_TIMEOUT) {
        uint64_t idle_us = (uint64_t)t->c->w->cfg->idle_timeout_s * 1000000u;
        if (conn_now_us() - t->last_activity_us >= idle_us)
            conn_close(t->c, "tunnel idle timeout");
        return;
    }
    tunnel_step(h);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct half *h = arg;
    if (what & EV_TIMEOUT) {
        conn_close(h->t->c, "tunnel peer stopped reading");
        return;
    }
    tunnel_step(h);
}

static int half_init(struct tunnel *t, struct half *h, int from, int to, uint64_t *bytes,
                     _Atomic uint64_t *total)
{
    struct event_base *base = t->c->w->base;
    h->t = t;
    h->from = from;
    h->to = to;
    h->pipe[0] = h->pipe[1] = -1;
    h->bytes = bytes;
    h->total = total;
    h->read_ev = event_new(base, from, EV_READ | EV_PERSIST, on_readable, h);
    h->write_ev = event_new(base, to, EV_WRITE, on_writable, h);
    return h->read_ev && h->write_ev ? 0 : -1;
}

/* Bytes already read into a bufferevent (or queued on it) must go out
 * before the spliced ones. */
static void take_buffered(struct evbuffer **pending, struct evbuffer *a, struct evbuffer *b)
{
    if (evbuffer_get_length(a) == 0 && evbuffer_get_length(b) == 0)
        return;
    *pending = evbuffer_new();
    if (*pending == NULL)
        return;
    evbuffer_add_buffer(*pending, a);
    evbuffer_add_buffer(*pending, b);
}

int tunnel_start(struct conn *c, const char *first, size_t first_len)
{
    struct tunnel *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    t->c = c;
    c->tunnel = t;
    t->last_activity_us = conn_now_us();
    if (half_init(t, &t->up, c->client_fd, c->upstream_fd, &c->bytes_up, &metrics.bytes_up) < 0 ||
        half_init(t, &t->down, c->upstream_fd, c->client_fd, &c->bytes_down,
                  &metrics.bytes_down) < 0)
        return -1;
    if (first_len > 0) {
        t->down.pending = evbuffer_new();
        if (t->down.pending == NULL)
            return -1;
        evbuffer_add(t->down.pending, first, first_len);
    }
    struct evbuffer *to_client = bufferevent_get_output(c->client);
    struct evbuffer *from_upstream = bufferevent_get_input(c->upstream);
    if (t->down.pending) {
        evbuffer_add_buffer(t->down.pending, to_client);
        evbuffer_add_buffer(t->down.pending, from_upstream);
    } else {
        take_buffered(&t->down.pending, to_client, from_upstream);
    }
    take_buffered(&t->up.pending, bufferevent_get_output(c->upstream),
                  bufferevent_get_input(c->client));
    conn_release_bufferevent(c->client);
    c->client = NULL;
    conn_release_bufferevent(c->upstream);
    c->upstream = NULL;
    evtimer_del(c->timer);
    conn_set_state(c, CONN_TUNNEL);

    arm(t->up.read_ev, &t->up);
    arm(t->down.read_ev, &t->down);
    /* Send what was buffered; reading continues from the events. */
    if (half_pump(&t->down) < 0 || half_pump(&t->up) < 0)
        return -1;
    return 0;
}

void tunnel_free(struct tunnel *t)
{
    struct worker *w = t->c->w;
    struct half *halves[2] = {&t->up, &t->down};
    for (int i = 0; i < 2; i++) {
        struct half *h = halves[i];
        if (h->read_ev)
            event_free(h->read_ev);
        if (h->write_ev)
            event_free(h->write_ev);
        if (h->pending)
            evbuffer_free(h->pending);
        pipe_put(w, h->pipe, h->in_pipe == 0);
    }
    free(t);
}
