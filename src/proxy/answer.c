/* answer: the proxy's own answers (403, 4xx, 5xx), short text bodies that
 * say what happened, and X-Sluice-Decision so scripts can tell sluice's
 * refusals from an upstream's. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <string.h>

#include "proxy/conn.h"

#define ANSWER_BODY_MAX 1024

static const char *status_text(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* A redirected TLS client (transparent, not intercepted) has sent a
 * ClientHello and speaks no HTTP: it gets a plaintext handshake_failure
 * alert (valid before any ServerHello), then FIN, instead of HTTP bytes it
 * would misread as a broken record. */
static bool answered_with_tls_alert(struct conn *c, const char *reason)
{
    if (!c->transparent || !c->is_connect || c->intercepted)
        return false;
    static const unsigned char alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40};
    struct evbuffer *hello = bufferevent_get_input(c->client);
    evbuffer_drain(hello, evbuffer_get_length(hello));
    evbuffer_add(bufferevent_get_output(c->client), alert, sizeof alert);
    conn_write_now(c->client);
    conn_close_after_flush(c, reason);
    return true;
}

static void send_answer(struct conn *c, int status, const char *decision, const char *body,
                        bool close_after)
{
    if (c->client == NULL) {
        conn_close(c, "client gone");
        return;
    }
    if (answered_with_tls_alert(c, body))
        return;
    struct evbuffer *out = bufferevent_get_output(c->client);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\n"
                        "Content-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %zu\r\n"
                        "X-Sluice-Decision: %s\r\n"
                        "Cache-Control: no-store\r\n"
                        "%s"
                        "Connection: %s\r\n\r\n",
                        status, status_text(status), strlen(body), decision,
                        status == 405 ? "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, "
                                        "CONNECT\r\n"
                                      : "",
                        close_after ? "close" : "keep-alive");
    if (!c->request_is_head)
        evbuffer_add(out, body, strlen(body));
    c->bytes_down += strlen(body);
    conn_write_now(c->client);
    if (close_after)
        conn_close_after_flush(c, "answered");
    else
        conn_next_request(c);
}

void answer_error(struct conn *c, int status, const char *reason, bool close_after)
{
    char body[ANSWER_BODY_MAX];
    snprintf(body, sizeof body, "sluice: %s\n", reason);
    send_answer(c, status, "error", body, close_after);
}

/* A denied request's body must go before the next request can be read.
 * When all of it has already arrived (the usual case for small bodies) it
 * is dropped and the connection stays usable; otherwise it is closed. */
static bool discard_request_body(struct conn *c)
{
    struct body_progress *b = &c->req_body;
    if (c->client == NULL)
        return false;
    if (b->framing == HTTP_BODY_NONE || b->done)
        return true;
    struct evbuffer *in = bufferevent_get_input(c->client);
    size_t avail = evbuffer_get_length(in);
    if (b->framing == HTTP_BODY_LENGTH) {
        if (avail < b->remaining)
            return false;
        evbuffer_drain(in, (size_t)b->remaining);
        b->remaining = 0;
        b->done = true;
        return true;
    }
    if (b->framing != HTTP_BODY_CHUNKED || avail > CONN_CLIENT_READ_MAX)
        return false;
    struct http_error err;
    const char *data = (const char *)evbuffer_pullup(in, (ssize_t)avail);
    ssize_t n = http_chunked_scan(&b->chunked, data, avail, &err);
    if (n < 0 || !b->chunked.done)
        return false;
    evbuffer_drain(in, (size_t)n);
    b->done = true;
    return true;
}

/* The body names host and rule so the workload (or its human) learns what
 * to ask for; why overrides the rule text for refusals after the decision,
 * such as an address in a special range. */
void answer_denied(struct conn *c, const char *why)
{
    char body[ANSWER_BODY_MAX];
    char target[HOST_TEXT_SIZE + 16];
    host_format_authority(&c->dest.host, c->dest.port, target, sizeof target);
    const char *what = c->is_connect ? "CONNECT" : c->method;
    char rule[64];
    const char *reason = why;
    if (reason == NULL && c->approval_reason[0])
        reason = c->approval_reason;
    if (reason == NULL && c->decision.verdict == VERDICT_PROMPT)
        reason = "the rule asks for an operator's approval, and no approver is attached";
    if (c->decision.rule < 0)
        snprintf(rule, sizeof rule, "no rule; default %s",
                 c->policy && policy_default(c->policy) == VERDICT_PROMPT ? "prompt" : "deny");
    else
        snprintf(rule, sizeof rule, "rule %d", c->decision.rule);
    if (reason == NULL)
        reason = c->decision.reason;
    if (reason)
        snprintf(body, sizeof body, "sluice: %s %s denied by policy (%s): %s\n", what, target, rule,
                 reason);
    else
        snprintf(body, sizeof body, "sluice: %s %s denied by policy (%s)\n", what, target, rule);
    conn_log(c, "deny", 403, reason ? reason : (c->decision.rule < 0 ? "no rule; default deny" : NULL));
    /* After a denied CONNECT the client's next bytes belong to a tunnel that
     * never opened, and after a request with a body we cannot find the next
     * request: close in both cases. */
    bool close_after = c->is_connect || !c->client_keep_alive || !discard_request_body(c);
    send_answer(c, 403, "deny", body, close_after);
}
