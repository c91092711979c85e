/* intercept: TLS interception of allowed CONNECTs (SPEC §2 "Interception").
 *
 * Order matters: the upstream is dialled and its certificate verified
 * first; only then does the client get "200 Connection established" and a
 * minted certificate. A certificate is never minted for an upstream that
 * failed verification: the client gets a plain 502 saying why instead.
 * Inside the tunnel every request must name the CONNECT's host and is
 * decided on its own (methods, paths, inject).
 *
 * A redirected connection (src/proxy/transparent.c) takes the same path
 * without the CONNECT exchange: its ClientHello, already read, is the
 * first thing the TLS filter sees, and failures before the handshake end
 * with a TLS alert since the client speaks no HTTP yet (answer.c). */
#include "proxy/intercept.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "proxy/conn.h"
#include "tls/mint.h"

#define ERR_TEXT_MAX 256

static struct tls_minter *minter;
static SSL_CTX *upstream_ctx;

/* Whether dir holds OpenSSL's subject-hash links ("5ad8a5d6.0"), as
 * update-ca-certificates makes them. */
static bool has_hash_links(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        size_t hex = strspn(n, "0123456789abcdef");
        found = hex == 8 && n[8] == '.' && n[9] >= '0' && n[9] <= '9';
    }
    closedir(d);
    return found;
}

/* The system roots. OpenSSL's hashed directory is read lazily, only the
 * issuers actually met, where the bundle file is parsed whole at start
 * (~140 certificates: ~0.8 MiB resident and ~10 ms of every start, which
 * `sluice run` pays each time). The usual paths, file included, where the
 * directory has no hash links or SSL_CERT_FILE names a bundle (OpenSSL's
 * own variables, as before). */
static int load_system_roots(SSL_CTX *ctx)
{
    const char *dir = getenv(X509_get_default_cert_dir_env());
    if (dir == NULL)
        dir = X509_get_default_cert_dir();
    const char *file = getenv(X509_get_default_cert_file_env());
    if ((file == NULL || *file == '\0') && has_hash_links(dir))
        return SSL_CTX_set_default_verify_dir(ctx);
    return SSL_CTX_set_default_verify_paths(ctx);
}

int intercept_init(const char *ca_dir, const char *upstream_ca, char *err, size_t err_size)
{
    upstream_ctx = SSL_CTX_new(TLS_client_method());
    if (upstream_ctx == NULL) {
        snprintf(err, err_size, "TLS: cannot create the upstream context");
        return -1;
    }
    SSL_CTX_set_min_proto_version(upstream_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(upstream_ctx, SSL_VERIFY_PEER, NULL);
    int ok = upstream_ca ? SSL_CTX_load_verify_locations(upstream_ctx, upstream_ca, NULL)
                         : load_system_roots(upstream_ctx);
    if (ok != 1) {
        snprintf(err, err_size, "--upstream-ca %s: cannot load trusted certificates",
                 upstream_ca ? upstream_ca : "(system roots)");
        return -1;
    }
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(upstream_ctx, alpn, sizeof alpn);
    if (ca_dir == NULL)
        return 0;
    minter = tls_minter_start(ca_dir, err, err_size);
    return minter ? 0 : -1;
}

void intercept_shutdown(void)
{
    if (minter)
        tls_minter_stop(minter);
    minter = NULL;
    if (upstream_ctx)
        SSL_CTX_free(upstream_ctx);
    upstream_ctx = NULL;
}

bool intercept_available(void)
{
    return minter != NULL;
}

static void client_tls_event(struct bufferevent *bev, short what, void *arg);
static void upstream_tls_event(struct bufferevent *bev, short what, void *arg);

/* Why a TLS handshake failed, in words for the 502 body and the log. */
static void describe_tls_failure(struct bufferevent *bev, SSL *ssl, char *buf, size_t size)
{
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (verify != X509_V_OK) {
        snprintf(buf, size, "upstream TLS certificate verification failed: %s",
                 X509_verify_cert_error_string(verify));
        return;
    }
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, size, "upstream TLS handshake failed: %s",
             reason ? reason : "connection closed during the handshake");
}

void intercept_upstream_connected(struct conn *c)
{
    SSL *ssl = SSL_new(upstream_ctx);
    if (ssl == NULL) {
        conn_close(c, "TLS: out of memory");
        return;
    }
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (c->dest.host.kind == HOST_KIND_NAME) {
        SSL_set_tlsext_host_name(ssl, c->dest.host.text);
        X509_VERIFY_PARAM_set1_host(param, c->dest.host.text, 0);
    } else {
        X509_VERIFY_PARAM_set1_ip_asc(param, c->dest.host.text);
    }
    struct bufferevent *plain = c->upstream;
    bufferevent_setcb(plain, NULL, NULL, NULL, NULL);
    bufferevent_enable(plain, EV_READ | EV_WRITE);
    struct bufferevent *tls = bufferevent_openssl_filter_new(
        c->w->base, plain, ssl, BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE);
    if (tls == NULL) {
        SSL_free(ssl);
        conn_close(c, "TLS: out of memory");
        return;
    }
    c->upstream = tls;
    struct timeval tv = {c->w->cfg->connect_timeout_s, 0};
    bufferevent_set_timeouts(tls, &tv, &tv);
    bufferevent_setcb(tls, NULL, NULL, upstream_tls_event, c);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
}

static bool sni_matches(const struct conn *c, SSL *ssl);

/* Runs inside the client's handshake when it sends SNI: a name other than
 * the CONNECT host ends the handshake with unrecognized_name. Accepting
 * the name here also makes OpenSSL keep it with the session, so resumed
 * sessions still report it. */
static int on_client_sni(SSL *ssl, int *alert, void *arg)
{
    const struct conn *c = SSL_get_app_data(ssl);
    if (c != NULL && !sni_matches(c, ssl)) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* The client's TLS socket sent some of its backlog: resume reading the
 * upstream once it is below half the bound (deferred: this runs inside a
 * buffer operation). */
static void on_client_socket_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                                     void *arg)
{
    struct conn *c = arg;
    if (info->n_deleted == 0 || !c->upstream_paused || c->upstream == NULL ||
        evbuffer_get_length(buf) > CONN_MAX_QUEUED / 2)
        return;
    c->upstream_paused = false;
    bufferevent_enable(c->upstream, EV_READ);
    bufferevent_trigger(c->upstream, EV_READ,
                        BEV_TRIG_DEFER_CALLBACKS | BEV_TRIG_IGNORE_WATERMARKS);
}

/* The upstream is verified: answer the CONNECT and take the client's TLS
 * handshake with a certificate for exactly the CONNECT host. */
static void begin_client_tls(struct conn *c)
{
    char err[ERR_TEXT_MAX];
    static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    SSL_CTX *ctx = tls_minter_ctx_for(minter, &c->tunnel_host, err, sizeof err);
    if (ctx == NULL) {
        conn_log(c, "error", c->transparent ? 0 : 502, err);
        answer_error(c, 502, "cannot make a certificate for this host", true);
        return;
    }
    /* Same callback on every minted context: setting it again is harmless. */
    SSL_CTX_set_tlsext_servername_callback(ctx, on_client_sni);
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx);
    if (ssl == NULL) {
        conn_close(c, "TLS: out of memory");
        return;
    }
    SSL_set_app_data(ssl, c);
    /* A redirected client never asked for a tunnel: no 200 for it. */
    if (!c->transparent) {
        evbuffer_add(bufferevent_get_output(c->client), established, sizeof established - 1);
        conn_write_now(c->client);
        c->bytes_down += sizeof established - 1;
    }
    struct bufferevent *plain = c->client;
    bufferevent_setcb(plain, NULL, NULL, NULL, NULL);
    bufferevent_enable(plain, EV_READ | EV_WRITE);
    struct bufferevent *tls = bufferevent_openssl_filter_new(
        c->w->base, plain, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (tls == NULL) {
        SSL_free(ssl);
        conn_close(c, "TLS: out of memory");
        return;
    }
    c->client = tls;
    c->client_drain_cb = evbuffer_add_cb(bufferevent_get_output(plain), on_client_socket_drained, c);
    bufferevent_setwatermark(tls, EV_READ, 0, CONN_CLIENT_READ_MAX);
    struct timeval tv = {c->w->cfg->header_timeout_s, 0};
    bufferevent_set_timeouts(tls, &tv, NULL);
    bufferevent_setcb(tls, NULL, NULL, client_tls_event, c);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
    /* The filter only reacts to new input on the socket below it; a
     * redirected client's ClientHello is there already and nothing more
     * comes until we answer it. */
    if (evbuffer_get_length(bufferevent_get_input(plain)) > 0)
        bufferevent_trigger(plain, EV_READ,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void upstream_tls_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        bufferevent_set_timeouts(bev, NULL, NULL);
        c->upstream_reusable = true;
        snprintf(c->upstream_host, sizeof c->upstream_host, "%s", c->dest.host.text);
        c->upstream_port = c->dest.port;
        if (c->intercepted)
            forward_upstream_ready(c); /* a re-dial inside the tunnel */
        else
            begin_client_tls(c);
        return;
    }
    char reason[ERR_TEXT_MAX];
    int status = 502;
    if (what & BEV_EVENT_TIMEOUT) {
        status = 504;
        snprintf(reason, sizeof reason, "upstream TLS handshake timed out");
    } else {
        describe_tls_failure(bev, bufferevent_openssl_get_ssl(bev), reason, sizeof reason);
    }
    metrics_add(&metrics.errors[status == 504 ? METRICS_ERR_UPSTREAM_504
                                              : METRICS_ERR_UPSTREAM_502],
                1);
    /* A redirected client is told nothing in HTTP (status 0 in the log). */
    conn_log(c, "error", c->transparent && !c->intercepted ? 0 : status, reason);
    conn_free_upstream(c);
    /* A redirected client that has not started TLS gets an alert instead
     * (answer.c). */
    answer_error(c, status, reason, true);
}

/* SNI, when the client sends one, must name the CONNECT host: a client
 * that says one name in CONNECT and another in TLS is refused. */
static bool sni_matches(const struct conn *c, SSL *ssl)
{
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    /* A resumed TLS 1.2 session carries the name it was made for. */
    if (sni == NULL && SSL_session_reused(ssl))
        sni = SSL_SESSION_get0_hostname(SSL_get_session(ssl));
    if (c->tunnel_host.kind != HOST_KIND_NAME)
        return sni == NULL || strcasecmp(sni, c->tunnel_host.text) == 0;
    if (sni == NULL)
        return false;
    struct host h;
    const char *why = NULL;
    if (host_canonicalise(sni, strlen(sni), &h, &why) < 0)
        return false;
    return h.kind == HOST_KIND_NAME && strcmp(h.text, c->tunnel_host.text) == 0;
}

static void client_tls_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        if (!sni_matches(c, ssl)) {
            metrics_count_decision(METRICS_KIND_TLS, METRICS_DENY, c->decision.rule);
            conn_log(c, "deny", 421, "TLS server name differs from the CONNECT host");
            conn_close(c, "SNI mismatch");
            return;
        }
        bufferevent_set_timeouts(bev, NULL, NULL);
        conn_log(c, c->decision.would_deny ? "would_deny" : "allow", 200, "intercepted");
        c->intercepted = true;
        conn_intercepted_ready(c);
        return;
    }
    char reason[ERR_TEXT_MAX];
    unsigned long e = bufferevent_get_openssl_error(bev);
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(reason, sizeof reason, "client TLS handshake failed: %s",
             r ? r : ((what & BEV_EVENT_TIMEOUT) ? "timed out" : "connection closed"));
    conn_log(c, "error", 0, reason);
    conn_close(c, reason);
}

void intercept_handle_request(struct conn *c, const char *head, size_t head_len,
                              const struct http_request *req)
{
    struct evbuffer *in = bufferevent_get_input(c->client);
    if (req->target_len == 0 || req->target[0] != '/') {
        evbuffer_drain(in, head_len);
        conn_log(c, "error", 400, "inside an intercepted tunnel requests must be origin-form");
        answer_error(c, 400, "inside an intercepted tunnel requests must be origin-form (/path)",
                     true);
        return;
    }
    if (req->host_header >= 0) {
        const struct http_header *h = &req->headers[req->host_header];
        struct host host;
        uint16_t port = 0;
        const char *why = NULL;
        if (host_parse_authority(h->value, h->value_len, 443, &host, &port, &why) < 0 ||
            port != c->tunnel_port || host.kind != c->tunnel_host.kind ||
            strcmp(host.text, c->tunnel_host.text) != 0) {
            evbuffer_drain(in, head_len);
            metrics_count_decision(METRICS_KIND_TLS, METRICS_DENY, c->decision.rule);
            conn_log(c, "deny", 421, "Host header differs from the CONNECT host");
            answer_error(c, 421, "the Host header must name the host of the CONNECT", true);
            return;
        }
    }
    struct http_uri uri;
    memset(&uri, 0, sizeof uri);
    uri.path = req->target;
    uri.path_len = req->target_len;
    const char *q = memchr(req->target, '?', req->target_len);
    uri.path_only_len = q ? (size_t)(q - req->target) : req->target_len;
    forward_begin(c, head, head_len, req, &uri);
}

/* WebSocket inside an intercepted tunnel: both sides are TLS, so bytes are
 * relayed through the buffers (splice needs plain sockets). */
static void relay_move(struct bufferevent *from, struct bufferevent *to)
{
    struct evbuffer *out = bufferevent_get_output(to);
    evbuffer_add_buffer(out, bufferevent_get_input(from));
    if (evbuffer_get_length(out) >= CONN_MAX_QUEUED)
        bufferevent_disable(from, EV_READ);
}

static void relay_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (bev == c->client) {
        c->bytes_up += evbuffer_get_length(bufferevent_get_input(bev));
        relay_move(bev, c->upstream);
    } else {
        c->bytes_down += evbuffer_get_length(bufferevent_get_input(bev));
        relay_move(bev, c->client);
    }
}

static void relay_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct bufferevent *other = bev == c->client ? c->upstream : c->client;
    bufferevent_enable(other, EV_READ);
}

static void relay_event(struct bufferevent *bev, short what, void *arg)
{
    conn_close(arg, (what & BEV_EVENT_EOF) ? "websocket closed" : "websocket error");
}

void intercept_relay_start(struct conn *c)
{
    conn_set_state(c, CONN_TUNNEL);
    bufferevent_setcb(c->client, relay_read, relay_write, relay_event, c);
    bufferevent_setcb(c->upstream, relay_read, relay_write, relay_event, c);
    bufferevent_setwatermark(c->client, EV_WRITE, CONN_MAX_QUEUED / 2, 0);
    bufferevent_setwatermark(c->upstream, EV_WRITE, CONN_MAX_QUEUED / 2, 0);
    struct timeval idle = {c->w->cfg->idle_timeout_s, 0};
    bufferevent_set_timeouts(c->client, &idle, NULL);
    bufferevent_set_timeouts(c->upstream, &idle, NULL);
    bufferevent_enable(c->client, EV_READ | EV_WRITE);
    bufferevent_enable(c->upstream, EV_READ | EV_WRITE);
    relay_read(c->upstream, c);
    relay_read(c->client, c);
}
