/* conn: one proxied client connection, as two half-connections (client and
 * upstream) with one state, one state-change function and one teardown
 * function taking a reason (the relayd model). Internal to src/proxy. */
#ifndef SLUICE_PROXY_CONN_H
#define SLUICE_PROXY_CONN_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "http/head.h"
#include "policy/policy.h"
#include "proxy/approval.h"
#include "proxy/proxy.h"

#define CONN_MAX_ADDRS 16
#define CONN_LOG_PATH_MAX 512
#define CONN_METHOD_MAX 16
/* Reading from one side pauses while the other side has this much queued. */
#define CONN_MAX_QUEUED (256 * 1024)
#define CONN_BODY_SLICE (64 * 1024)
#define CONN_MAX_SINGLE_IO (256 * 1024)
#define CONN_FILL_SLICE (128 * 1024)
#define CONN_CLIENT_READ_MAX (HTTP_MAX_HEAD_BYTES + 64 * 1024)
/* Empty pipes kept per worker for splice relays. */
#define WORKER_PIPE_POOL 256

struct worker {
    int id;
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener *listener;
    const struct proxy_config *cfg;
    struct event *accept_retry;
    struct event *housekeeping;
    pthread_t thread;
    int listen_fd;
    bool draining;
    struct conn *conns; /* every open connection, for draining */
    int pipe_pool[WORKER_PIPE_POOL][2];
    int n_pipes;
};

enum conn_state {
    CONN_READ_HEAD,  /* waiting for a request head from the client */
    CONN_RESOLVING,  /* asking DNS for the destination */
    CONN_CONNECTING, /* dialling a checked upstream address */
    CONN_FORWARD,    /* an HTTP request/response exchange in flight */
    CONN_TUNNEL,     /* CONNECT established: bytes relayed both ways */
    CONN_CLOSING,    /* last answer being flushed, then close */
    CONN_WAITING,    /* a prompt: parked until an operator answers */
};

/* A prompt's answer, carried from the resume to the re-read request. */
enum approval_answer {
    APPROVAL_ANSWER_NONE,
    APPROVAL_ANSWER_ALLOW,
    APPROVAL_ANSWER_DENY,
};

enum conn_response_phase {
    RESP_HEAD,
    RESP_BODY,
    RESP_DONE,
};

/* Framing progress of one message body in one direction. */
struct body_progress {
    enum http_framing framing;
    uint64_t remaining; /* HTTP_BODY_LENGTH */
    struct http_chunked chunked;
    bool done;
};

struct tunnel;
struct bufferevent;

struct conn {
    struct worker *w;
    struct conn *prev, *next;
    enum conn_state state;
    uint64_t id;
    /* Header deadline, or the keep-alive idle wait between requests. */
    struct event *timer;
    bool head_started;

    int client_fd;
    struct bufferevent *client;
    struct sockaddr_storage client_addr;
    char client_ip[INET6_ADDRSTRLEN];
    size_t head_scan_from; /* where to look for the next '\n' in client input */

    int upstream_fd;
    struct bufferevent *upstream;
    struct sockaddr_storage upstream_addr;
    char upstream_ip[INET6_ADDRSTRLEN];
    /* Kept-alive upstream: reused only for the same host and port. */
    char upstream_host[HOST_TEXT_SIZE];
    uint16_t upstream_port;
    bool upstream_reusable;
    int upstream_lowat; /* SO_RCVLOWAT now set on the upstream socket */

    struct evdns_getaddrinfo_request *resolve;
    bool resolve_pending;
    bool close_after_resolve;
    struct sockaddr_storage addrs[CONN_MAX_ADDRS];
    size_t n_addrs, next_addr;
    int last_dial_error; /* errno of the last failed dial, ETIMEDOUT for timeouts */
    uint64_t resolve_started_us;

    /* The request being handled. */
    struct policy *policy;
    struct dest dest;
    struct decision decision;
    bool is_connect;
    bool counted_tunnel;
    char method[CONN_METHOD_MAX];
    char path[CONN_LOG_PATH_MAX];
    bool request_is_head;
    bool client_keep_alive;
    bool client_http10;
    bool client_paused; /* reading paused for backpressure */
    bool upgrade_websocket;
    struct body_progress req_body;
    struct body_progress resp_body;
    enum conn_response_phase resp_phase;
    size_t resp_scan_from;
    int resp_status;
    bool resp_keep_alive;
    uint64_t started_us;
    uint64_t bytes_up, bytes_down;
    bool logged;

    /* Rewritten request head waiting for the upstream dial to finish. */
    struct evbuffer *pending_head;

    struct tunnel *tunnel;

    /* TLS interception: the CONNECT's destination, fixed for every request
     * inside the tunnel. */
    bool transparent;        /* redirected here by the kernel */
    bool first_bytes_seen;   /* transparent: TLS or HTTP told apart */
    struct sockaddr_storage orig_dst;
    bool intercept_wanted;
    bool upstream_paused; /* reading the upstream waits for the client */
    /* Intercepted client: watches the TLS socket's output drain, since the
     * filter above it reports no progress of its own. */
    struct evbuffer_cb_entry *client_drain_cb;
    bool intercepted;
    struct host tunnel_host;
    uint16_t tunnel_port;

    /* prompt (approval.c): the question this request waits on, the answer
     * it resumed with, and who gave it (for the log and the 403). */
    struct approval_waiter *approval;
    enum approval_answer approval_answer;
    char approval_reason[APPROVAL_REASON_MAX];
};

/* conn.c */
void conn_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t len);
void conn_close(struct conn *c, const char *why);
/* A prompt was answered: read the parked request's head again. */
void conn_resume_request(struct conn *c);
void conn_set_state(struct conn *c, enum conn_state s);
/* dial.c reports a connected upstream here. */
void conn_upstream_connected(struct conn *c);
/* Back to waiting for the next request on a kept-alive connection. */
void conn_next_request(struct conn *c);
void conn_tune_bufferevent(struct bufferevent *bev);
void conn_write_now(struct bufferevent *bev);
size_t conn_fill(struct bufferevent *bev, size_t max);
void conn_free_upstream(struct conn *c);
void conn_release_bufferevent(struct bufferevent *bev);
void conn_intercepted_ready(struct conn *c);
/* Flush what was written to the client, then close. */
void conn_close_after_flush(struct conn *c, const char *why);
void conn_log(struct conn *c, const char *decision, int status, const char *reason);
uint64_t conn_now_us(void);

/* answer.c: canned answers; close_after decides the connection's fate. */
void answer_error(struct conn *c, int status, const char *reason, bool close_after);
void answer_denied(struct conn *c, const char *why);

/* dial.c: resolve, check every address, connect to a checked one. */
void dial_start(struct conn *c);
void dial_cancel(struct conn *c);

/* forward.c: absolute-form HTTP requests. */
void forward_begin(struct conn *c, const char *head, size_t head_len,
                   const struct http_request *req, const struct http_uri *uri);
void forward_upstream_ready(struct conn *c);
void forward_client_readable(struct conn *c);
void forward_upstream_readable(struct conn *c);
void forward_upstream_eof(struct conn *c);

/* tunnel.c: CONNECT relay with splice(2). */
int tunnel_start(struct conn *c, const char *first, size_t first_len);
void tunnel_free(struct tunnel *t);

/* limits (server.c): per-client counters shared by all workers. */
bool limits_client_enter(const struct sockaddr_storage *addr, int max_per_client);
void limits_client_leave(const struct sockaddr_storage *addr);
bool limits_tunnel_enter(const struct sockaddr_storage *addr, int max_per_client);
void limits_tunnel_leave(const struct sockaddr_storage *addr);
bool limits_total_enter(int max_total);
void limits_total_leave(void);

#endif
