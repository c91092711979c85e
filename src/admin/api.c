/* admin: the operator's HTTP API (SPEC §4) on libevent's evhttp.
 *
 * In a pod the workload shares loopback with this port, so everything but
 * /healthz and /readyz needs the bearer token from a file only the operator
 * can read. The token is kept only as its SHA-256 digest: comparing digests
 * with CRYPTO_memcmp is constant time whatever the presented length. */
#include "admin/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/sockfd.h"
#include "policy/patch.h"
#include "policy/policy.h"
#include "proxy/approval.h"

#define ADMIN_ADDR_MAX 64             /* "[v6]:port" with room to spare */
#define ADMIN_TOKEN_MIN 16            /* guessing must be hopeless */
#define ADMIN_TOKEN_MAX 4096          /* bytes read from the token file */
#define ADMIN_DIGEST_LEN 32           /* SHA-256 */
#define ADMIN_MAX_BODY (1024 * 1024)  /* PUT /policy */
#define ADMIN_MAX_HEADERS (16 * 1024) /* request line and headers together */
#define ADMIN_IO_TIMEOUT_S 10         /* a stalled client is dropped */
#define ADMIN_BACKLOG 64
#define ADMIN_ERR_MAX 1024 /* reload and validation messages */
#define ADMIN_TIME_MAX 32  /* "2026-11-24T12:00:00Z" */

#define METHODS_READ (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD)
#define METHODS_ALL                                                                                \
    (EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |     \
     EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)

struct admin {
    struct evhttp *http;
    struct admin_hooks hooks;
    bool have_token;
    unsigned char token_digest[ADMIN_DIGEST_LEN];
    int port;
};

typedef void route_fn(struct admin *a, struct evhttp_request *req, const char *path);

struct route {
    const char *path;
    bool is_prefix; /* path + "{id}": one more segment */
    bool is_public; /* no token needed (probes) */
    uint16_t methods;
    route_fn *serve;
};

static const char *reason_phrase(int code)
{
    static const struct {
        int code;
        const char *text;
    } phrases[] = {
        {200, "OK"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {409, "Conflict"},
        {413, "Payload Too Large"},
        {422, "Unprocessable Entity"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
    };

    for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++) {
        if (phrases[i].code == code)
            return phrases[i].text;
    }
    return "Internal Server Error";
}

/* Every answer goes through here so none misses no-store: status and
 * policy must never sit in a cache between operator and proxy. */
static void reply(struct evhttp_request *req, int code, const char *ctype, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Content-Type", ctype);
    /* evhttp would send the body after a HEAD answer; it must not. */
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
        evbuffer_drain(body, evbuffer_get_length(body));
    evhttp_send_reply(req, code, reason_phrase(code), body);
}

static void reply_text(struct evhttp_request *req, int code, const char *text)
{
    struct evbuffer *body = evbuffer_new();

    if (body == NULL || evbuffer_add_printf(body, "%s\n", text) < 0) {
        evhttp_send_error(req, 500, NULL);
    } else {
        reply(req, code, "text/plain; charset=utf-8", body);
    }
    if (body)
        evbuffer_free(body);
}

/* Takes the reference to doc. */
static void reply_json(struct evhttp_request *req, int code, json_t *doc)
{
    struct evbuffer *body = evbuffer_new();
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;

    if (body == NULL || text == NULL || evbuffer_add_printf(body, "%s\n", text) < 0) {
        evhttp_send_error(req, 500, NULL);
    } else {
        reply(req, code, "application/json", body);
    }
    free(text);
    json_decref(doc);
    if (body)
        evbuffer_free(body);
}

static void format_utc(time_t t, char *buf, size_t size)
{
    struct tm tm;

    if (t <= 0 || gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        buf[0] = '\0';
}

static const char *verdict_name(enum verdict v)
{
    switch (v) {
    case VERDICT_ALLOW:
        return "allow";
    case VERDICT_DENY:
        return "deny";
    case VERDICT_PROMPT:
        return "prompt";
    }
    return "deny";
}

static struct policy *live_policy(struct admin *a)
{
    return a->hooks.current_policy ? a->hooks.current_policy(a->hooks.arg) : NULL;
}

/* Each per-client policy: which file, what it holds (hash, rule count) and
 * which addresses select it now, so an operator sees what a reload did. */
static json_t *clients_summary(const struct policy *p)
{
    json_t *out = json_array();
    for (size_t i = 0; out && i < policy_client_count(p); i++) {
        struct policy_client_info ci;
        if (policy_client_info(p, i, &ci) < 0)
            continue;
        json_t *sources = json_array(), *names = json_array(), *unresolved = json_array();
        for (size_t s = 0; sources && s < ci.n_sources; s++) {
            char text[64];
            if (cidr_format(&ci.sources[s], text, sizeof text) == 0)
                json_array_append_new(sources, json_string(text));
        }
        for (size_t n = 0; names && n < ci.n_names; n++)
            json_array_append_new(names, json_string(ci.names[n]));
        for (size_t n = 0; unresolved && n < ci.n_unresolved; n++)
            json_array_append_new(unresolved, json_string(ci.unresolved[n]));
        json_array_append_new(
            out, json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:o, s:o, s:o}", "name", ci.name, "file",
                           ci.file, "hash", policy_hash(ci.policy), "rules",
                           (json_int_t)policy_rule_count(ci.policy), "default",
                           verdict_name(policy_default(ci.policy)), "mode",
                           policy_report_mode(ci.policy) ? "report" : "enforce", "addresses",
                           sources ? sources : json_null(), "names", names ? names : json_null(),
                           "unresolved", unresolved ? unresolved : json_null()));
    }
    return out ? out : json_null();
}

/* What GET /status and GET /policy both say about a policy; p may be NULL
 * (nothing loaded yet), then JSON null. */
static json_t *policy_summary(struct admin *a, const struct policy *p)
{
    char loaded[ADMIN_TIME_MAX];
    time_t at = a->hooks.policy_loaded_at ? a->hooks.policy_loaded_at(a->hooks.arg) : 0;

    if (p == NULL)
        return json_null();
    format_utc(at, loaded, sizeof loaded);
    return json_pack("{s:s?, s:s?, s:s?, s:I, s:s, s:s, s:o}", "source", policy_source(p), "hash",
                     policy_hash(p), "loaded_at", loaded[0] ? loaded : NULL, "rules",
                     (json_int_t)policy_rule_count(p), "default", verdict_name(policy_default(p)),
                     "mode", policy_report_mode(p) ? "report" : "enforce", "clients",
                     clients_summary(p));
}

static json_int_t counter_value(_Atomic uint64_t *c)
{
    return (json_int_t)atomic_load_explicit(c, memory_order_relaxed);
}

static json_int_t gauge_value(_Atomic int64_t *g)
{
    return (json_int_t)atomic_load_explicit(g, memory_order_relaxed);
}

static json_t *decision_counters(void)
{
    json_t *all = json_object();

    for (int k = 0; all && k < METRICS_KIND_COUNT; k++) {
        json_t *kind = json_object();

        for (int o = 0; kind && o < METRICS_OUTCOME_COUNT; o++)
            json_object_set_new(kind, metrics_outcome_name(o),
                                json_integer(counter_value(&metrics.decisions[k][o])));
        json_object_set_new(all, metrics_kind_name(k), kind);
    }
    return all;
}

static json_t *error_counters(void)
{
    json_t *all = json_object();

    for (int e = 0; all && e < METRICS_ERR_COUNT; e++)
        json_object_set_new(all, metrics_error_name(e),
                            json_integer(counter_value(&metrics.errors[e])));
    return all;
}

static json_t *counters(void)
{
    return json_pack(
        "{s:o, s:{s:I, s:I}, s:{s:I, s:I}, s:{s:I}, s:I, s:o, s:{s:I, s:I}, s:{s:I}, s:I}",
        "decisions", decision_counters(), "bytes", "up", counter_value(&metrics.bytes_up), "down",
        counter_value(&metrics.bytes_down), "connections", "active",
        gauge_value(&metrics.connections_active), "total",
        counter_value(&metrics.connections_total), "tunnels", "active",
        gauge_value(&metrics.tunnels_active), "requests", counter_value(&metrics.requests_total),
        "errors", error_counters(), "reloads", "ok", counter_value(&metrics.reloads_ok), "failed",
        counter_value(&metrics.reloads_failed), "resolver", "failures",
        counter_value(&metrics.resolver_failures), "accept_paused",
        counter_value(&metrics.accept_paused));
}

static void serve_healthz(struct admin *a, struct evhttp_request *req, const char *path)
{
    reply_text(req, 200, "ok");
}

static void serve_readyz(struct admin *a, struct evhttp_request *req, const char *path)
{
    bool ready = a->hooks.ready && a->hooks.ready(a->hooks.arg);

    reply_text(req, ready ? 200 : 503, ready ? "ready" : "not ready");
}

/* Kernel drop counters belong to the kernel enforcement roles; until one
 * runs they are null, and the CLI says "not enforced by kernel". */
/* The DNS filter's own object (listener, SO_MARK state, limits), or null
 * when no filter runs. */
static json_t *dns_status(struct admin *a)
{
    char *text = a->hooks.dns_status ? a->hooks.dns_status(a->hooks.arg) : NULL;
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;

    free(text);
    return doc ? doc : json_null();
}

/* Kernel rules, when sluice enforce put them in this network namespace:
 * their mode replaces the proxy's own, and their drop counters are shown. */
static json_t *kernel_status(struct admin *a, const char **mode)
{
    char *text = a->hooks.kernel_status ? a->hooks.kernel_status(a->hooks.arg) : NULL;
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (doc == NULL)
        return json_null();
    const char *kmode = json_string_value(json_object_get(doc, "mode"));
    static char kept[16];
    if (kmode && (strcmp(kmode, "nftables") == 0 || strcmp(kmode, "isolate") == 0)) {
        snprintf(kept, sizeof kept, "%s", kmode);
        *mode = kept;
    }
    json_t *drops = json_object_get(doc, "drops");
    json_t *out = drops ? json_incref(drops) : json_null();
    json_decref(doc);
    return out;
}

static void serve_status(struct admin *a, struct evhttp_request *req, const char *path)
{
    struct policy *p = live_policy(a);
    const char *mode = a->hooks.enforcement_mode ? a->hooks.enforcement_mode(a->hooks.arg) : NULL;
    json_t *drops = kernel_status(a, &mode);
    const char *sandbox = a->hooks.sandbox ? a->hooks.sandbox(a->hooks.arg) : NULL;
    json_t *doc = json_pack("{s:s, s:s, s:s, s:o, s:I, s:o, s:o, s:o}", "version",
                            SLUICE_VERSION, "enforcement_mode", mode ? mode : "proxy-only",
                            "sandbox", sandbox ? sandbox : "off", "policy",
                            policy_summary(a, p), "uptime_seconds",
                            (json_int_t)metrics_uptime_seconds(), "counters", counters(),
                            "kernel_drops", drops, "dns", dns_status(a));

    if (p)
        policy_unref(p);
    reply_json(req, 200, doc);
}

/* What the DNS filter learned from allowed answers (the in-memory sink):
 * what the enforcement layer would let the workload reach by address. */
static void serve_dns_learned(struct admin *a, struct evhttp_request *req, const char *path)
{
    char *text = a->hooks.dns_learned ? a->hooks.dns_learned(a->hooks.arg) : NULL;
    struct evbuffer *body;

    if (text == NULL) {
        reply_text(req, 404, "the DNS filter is not running (start sluice proxy with --dns)");
        return;
    }
    body = evbuffer_new();
    if (body == NULL || evbuffer_add_printf(body, "%s\n", text) < 0)
        evhttp_send_error(req, 500, NULL);
    else
        reply(req, 200, "application/json", body);
    if (body)
        evbuffer_free(body);
    free(text);
}

/* sha256 hex only: anything else would need label escaping and is a bug. */
static bool is_hex(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++) {
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    }
    return true;
}

static void serve_metrics(struct admin *a, struct evhttp_request *req, const char *path)
{
    struct evbuffer *body = evbuffer_new();
    struct policy *p = live_policy(a);
    int rc = body ? metrics_render_prometheus(body) : -1;

    if (rc == 0 && p && is_hex(policy_hash(p)))
        rc = evbuffer_add_printf(body,
                                 "# HELP sluice_policy_info The live policy, by content hash.\n"
                                 "# TYPE sluice_policy_info gauge\n"
                                 "sluice_policy_info{hash=\"%s\"} 1\n",
                                 policy_hash(p)) < 0
                 ? -1
                 : 0;
    if (p)
        policy_unref(p);
    if (rc < 0)
        evhttp_send_error(req, 500, NULL);
    else
        reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", body);
    if (body)
        evbuffer_free(body);
}

static json_t *result_ok(struct admin *a)
{
    struct policy *p = live_policy(a);
    json_t *doc = json_pack("{s:s, s:s?}", "result", "ok", "hash", p ? policy_hash(p) : NULL);

    if (p)
        policy_unref(p);
    return doc;
}

static json_t *result_failed(const char *error)
{
    return json_pack("{s:s, s:s}", "result", "failed", "error", error);
}

/* The hook counts the reload (ok or failed), as SIGHUP's path does, so one
 * reload is never counted twice. */
static void serve_reload(struct admin *a, struct evhttp_request *req, const char *path)
{
    char err[ADMIN_ERR_MAX] = "";

    if (a->hooks.reload == NULL) {
        reply_text(req, 501, "this process has no policy file to reload");
        return;
    }
    if (a->hooks.reload(a->hooks.arg, err, sizeof err) < 0) {
        reply_json(req, 422, result_failed(err[0] ? err : "reload failed"));
        return;
    }
    reply_json(req, 200, result_ok(a));
}

/* Each rule as the object it was written as (inject values already
 * redacted by the policy module), so the answer reads like the file. */
static json_t *policy_rules(const struct policy *p)
{
    json_t *rules = json_array();
    size_t n = policy_rule_count(p);

    for (size_t i = 0; rules && i < n; i++) {
        const char *text = policy_rule_text(p, i);
        json_t *rule = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;

        json_array_append_new(rules, rule ? rule : json_string(text ? text : ""));
    }
    return rules;
}

static void get_policy(struct admin *a, struct evhttp_request *req)
{
    struct policy *p = live_policy(a);
    json_t *doc;

    if (p == NULL) {
        reply_text(req, 503, "no policy loaded");
        return;
    }
    doc = policy_summary(a, p);
    if (doc)
        json_object_set_new(doc, "rules", policy_rules(p));
    policy_unref(p);
    reply_json(req, 200, doc);
}

/* Validated exactly as a file is; the live policy changes only when the
 * whole new one compiled. what names the request in errors and logs ("PUT
 * /policy"); extra (taken, may be NULL) adds to the 200 answer. All of
 * this runs on the admin's event loop, as do reloads, so a PATCH read the
 * policy it replaces: two PATCHes never lose one another's change. */
static void install_text(struct admin *a, struct evhttp_request *req, const char *what,
                         const char *text, size_t len, json_t *extra)
{
    char msg[ADMIN_ERR_MAX], rejected[ADMIN_ERR_MAX];
    struct policy_error perr;
    struct policy *p;
    json_t *doc;

    snprintf(rejected, sizeof rejected, "admin: %s rejected", what);
    memset(&perr, 0, sizeof perr);
    p = policy_load_buffer_at(text, len, what, a->hooks.policy_dir, &perr);
    if (p == NULL) {
        policy_format_error(&perr, msg, sizeof msg);
        log_message("warning", rejected, NULL); /* the error may quote the body */
        reply_json(req, 422, result_failed(msg));
        json_decref(extra);
        return;
    }
    doc = json_pack("{s:s, s:s?, s:I}", "result", "ok", "hash", policy_hash(p), "rules",
                    (json_int_t)policy_rule_count(p));
    if (doc && extra)
        json_object_update(doc, extra);
    json_decref(extra);
    /* the hook logs the change: it knows whether the policy went live */
    if (a->hooks.install_policy(a->hooks.arg, p, msg, sizeof msg) < 0) {
        json_decref(doc);
        log_message("warning", rejected, NULL);
        reply_json(req, 422, result_failed(msg));
        return;
    }
    reply_json(req, 200, doc);
}

static void put_policy(struct admin *a, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);

    if (len == 0) {
        reply_text(req, 400, "empty body: send the policy JSON");
        return;
    }
    install_text(a, req, "PUT /policy", (const char *)evbuffer_pullup(in, -1), len, NULL);
}

static int edit_status(enum policy_edit_status st)
{
    switch (st) {
    case POLICY_EDIT_OK:
        return 200;
    case POLICY_EDIT_BAD_REQUEST:
        return 400;
    case POLICY_EDIT_NOT_FOUND:
        return 404;
    case POLICY_EDIT_INVALID:
        break;
    }
    return 422;
}

static json_t *target_list(char *const *v, size_t n)
{
    json_t *out = json_array();
    for (size_t i = 0; out && i < n; i++)
        json_array_append_new(out, json_string(v[i]));
    return out ? out : json_null();
}

/* PATCH and DELETE share the end: the edited text goes the way of PUT. */
static void finish_edit(struct admin *a, struct evhttp_request *req, const char *what,
                        enum policy_edit_status st, struct policy_edit *e)
{
    json_t *extra;

    if (st != POLICY_EDIT_OK) {
        char rejected[ADMIN_ERR_MAX];
        snprintf(rejected, sizeof rejected, "admin: %s rejected", what);
        log_message("warning", rejected, NULL);
        reply_json(req, edit_status(st), result_failed(e->error));
        return;
    }
    if (evhttp_request_get_command(req) == EVHTTP_REQ_DELETE)
        extra = json_pack("{s:o, s:I}", "removed", target_list(e->removed, e->n_removed),
                          "rules_removed", (json_int_t)e->rules_removed);
    else
        extra = json_pack("{s:o, s:o}", "replaced", target_list(e->replaced, e->n_replaced),
                          "added", target_list(e->added, e->n_added));
    if (extra && e->warning[0])
        json_object_set_new(extra, "warning", json_string(e->warning));
    install_text(a, req, what, e->text, e->len, extra);
}

static void patch_policy(struct admin *a, struct evhttp_request *req, struct policy *live)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in), text_len;
    const char *text = policy_text(live, &text_len);
    struct policy_edit e;

    if (len == 0) {
        reply_json(req, 400, result_failed("empty body: send {\"rules\": [RULE, ...]}"));
        return;
    }
    enum policy_edit_status st =
        policy_patch_text(text, text_len, (const char *)evbuffer_pullup(in, -1), len, &e);
    finish_edit(a, req, "PATCH /policy", st, &e);
    policy_edit_free(&e);
}

/* The targets come as {"targets": [...]} or as ?target=...&target=... */
static int delete_targets(struct evhttp_request *req, json_t **out, char *err, size_t err_size)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    json_error_t jerr;

    *out = NULL;
    if (len > 0 && query && *query) {
        snprintf(err, err_size, "give the targets as a JSON body or as a query, not both");
        return -1;
    }
    if (len > 0) {
        json_t *doc =
            json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
        json_t *t = json_object_get(doc, "targets");
        if (!doc)
            snprintf(err, err_size, "body:%d:%d: %s", jerr.line, jerr.column, jerr.text);
        else if (!json_is_array(t) || json_object_size(doc) != 1)
            snprintf(err, err_size, "body: send {\"targets\": [\"example.com\", ...]}");
        else
            *out = json_incref(t);
        json_decref(doc);
        return *out ? 0 : -1;
    }
    struct evkeyvalq q;
    q.tqh_first = NULL;
    q.tqh_last = &q.tqh_first;
    *out = json_array();
    if (query && evhttp_parse_query_str(query, &q) < 0) {
        snprintf(err, err_size, "the query is not key=value&...");
        json_decref(*out);
        *out = NULL;
    }
    for (struct evkeyval *kv = q.tqh_first; kv && *out; kv = kv->next.tqe_next) {
        if (strcmp(kv->key, "target") != 0) {
            snprintf(err, err_size, "unknown query parameter \"%.64s\"; use target=HOST", kv->key);
            json_decref(*out);
            *out = NULL;
        } else {
            json_array_append_new(*out, json_string(kv->value));
        }
    }
    evhttp_clear_headers(&q);
    return *out ? 0 : -1;
}

static void delete_policy(struct admin *a, struct evhttp_request *req, struct policy *live)
{
    char err[ADMIN_ERR_MAX] = "no targets";
    json_t *targets;
    size_t text_len, i;
    const char *text = policy_text(live, &text_len);
    struct policy_edit e;

    if (delete_targets(req, &targets, err, sizeof err) < 0) {
        reply_json(req, 400, result_failed(err));
        return;
    }
    size_t n = json_array_size(targets);
    const char **names = calloc(n ? n : 1, sizeof *names);
    json_t *v;
    json_array_foreach(targets, i, v)
    {
        if (names && !json_is_string(v)) {
            snprintf(err, sizeof err, "body: targets[%zu]: must be a host pattern string", i);
            free(names);
            names = NULL;
        } else if (names) {
            names[i] = json_string_value(v);
        }
    }
    if (names == NULL) {
        reply_json(req, 400, result_failed(err));
    } else {
        enum policy_edit_status st = policy_delete_text(text, text_len, names, n, &e);
        finish_edit(a, req, "DELETE /policy", st, &e);
        policy_edit_free(&e);
    }
    free(names);
    json_decref(targets);
}

/* PATCH and DELETE edit the text of the live policy (secrets included,
 * never shown), so what they keep is exactly what was live. */
static void edit_policy(struct admin *a, struct evhttp_request *req)
{
    struct policy *live = live_policy(a);

    if (live == NULL) {
        reply_text(req, 503, "no policy loaded");
        return;
    }
    if (evhttp_request_get_command(req) == EVHTTP_REQ_PATCH)
        patch_policy(a, req, live);
    else
        delete_policy(a, req, live);
    policy_unref(live);
}

static void serve_policy(struct admin *a, struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD && a->hooks.install_policy == NULL) {
        reply_text(req, 501, "this process cannot replace its policy");
    } else if (cmd == EVHTTP_REQ_PUT) {
        put_policy(a, req);
    } else if (cmd == EVHTTP_REQ_PATCH || cmd == EVHTTP_REQ_DELETE) {
        edit_policy(a, req);
    } else {
        get_policy(a, req);
    }
    log_flush();
}

/* prompt decisions: the questions waiting for an operator. */
static void serve_approvals(struct admin *a, struct evhttp_request *req, const char *path)
{
    char *text = a->hooks.approvals_list ? a->hooks.approvals_list(a->hooks.arg) : NULL;
    json_t *doc = text ? json_loads(text, 0, NULL) : json_array();

    free(text);
    reply_json(req, 200, doc);
}

/* The answer comes as a JSON body or as ?decision=...&scope=... */
static int approval_request(struct evhttp_request *req, bool *allow, bool *for_run, char *err,
                            size_t err_size)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));

    if (len > 0) {
        if (query && *query) {
            snprintf(err, err_size, "give the answer as a JSON body or as a query, not both");
            return -1;
        }
        return approval_parse_answer((const char *)evbuffer_pullup(in, -1), len, allow,
                                     for_run, err, err_size);
    }
    struct evkeyvalq q;
    json_t *doc = json_object();
    int rc = -1;

    q.tqh_first = NULL;
    q.tqh_last = &q.tqh_first;
    if (query == NULL || evhttp_parse_query_str(query, &q) < 0) {
        snprintf(err, err_size,
                 "no answer: send {\"decision\": \"allow\"|\"deny\", \"scope\": "
                 "\"once\"|\"run\"} or ?decision=allow|deny&scope=once|run");
        goto out;
    }
    for (struct evkeyval *kv = q.tqh_first; kv; kv = kv->next.tqe_next)
        json_object_set_new(doc, kv->key, json_string(kv->value));
    char *text = json_dumps(doc, JSON_COMPACT);
    rc = text ? approval_parse_answer(text, strlen(text), allow, for_run, err, err_size) : -1;
    free(text);
out:
    evhttp_clear_headers(&q);
    json_decref(doc);
    return rc;
}

static void serve_approval(struct admin *a, struct evhttp_request *req, const char *path)
{
    const char *id = path + strlen("/approvals/");
    char err[ADMIN_ERR_MAX];
    bool allow = false, for_run = false;

    if (a->hooks.approval_answer == NULL) {
        reply_text(req, 404, "no such approval");
        return;
    }
    if (approval_request(req, &allow, &for_run, err, sizeof err) < 0) {
        reply_json(req, 400, json_pack("{ss}", "error", err));
        return;
    }
    switch (a->hooks.approval_answer(a->hooks.arg, id, allow, for_run)) {
    case 0:
        reply_json(req, 200, json_pack("{ss ss ss}", "id", id, "decision",
                                       allow ? "allow" : "deny", "scope",
                                       for_run || !allow ? "run" : "once"));
        break;
    case 2:
        reply_json(req, 409, json_pack("{ss}", "error", "already answered or expired"));
        break;
    default:
        reply_json(req, 404, json_pack("{ss}", "error", "no such approval"));
        break;
    }
    log_flush();
}

static const struct route routes[] = {
    {"/healthz", false, true, METHODS_READ, serve_healthz},
    {"/readyz", false, true, METHODS_READ, serve_readyz},
    {"/status", false, false, METHODS_READ, serve_status},
    {"/metrics", false, false, METHODS_READ, serve_metrics},
    {"/reload", false, false, EVHTTP_REQ_POST, serve_reload},
    {"/policy", false, false, METHODS_READ | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE,
     serve_policy},
    {"/approvals", false, false, METHODS_READ, serve_approvals},
    {"/dns/learned", false, false, METHODS_READ, serve_dns_learned},
    {"/approvals/", true, false, EVHTTP_REQ_POST, serve_approval},
};

static const struct route *find_route(const char *path)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *r = &routes[i];
        size_t n = strlen(r->path);

        if (!r->is_prefix && strcmp(path, r->path) == 0)
            return r;
        if (r->is_prefix && strncmp(path, r->path, n) == 0 && path[n] != '\0' &&
            strchr(path + n, '/') == NULL)
            return r;
    }
    return NULL;
}

static void reply_method_not_allowed(struct evhttp_request *req, uint16_t methods)
{
    static const struct {
        uint16_t bit;
        const char *name;
    } names[] = {
        {EVHTTP_REQ_GET, "GET"}, {EVHTTP_REQ_HEAD, "HEAD"},   {EVHTTP_REQ_POST, "POST"},
        {EVHTTP_REQ_PUT, "PUT"}, {EVHTTP_REQ_PATCH, "PATCH"}, {EVHTTP_REQ_DELETE, "DELETE"},
    };
    char allow[64] = "";
    size_t len = 0;

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (methods & names[i].bit)
            len += (size_t)snprintf(allow + len, sizeof allow - len, "%s%s", len ? ", " : "",
                                    names[i].name);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    reply_text(req, 405, "method not allowed");
}

static void digest(const void *data, size_t len, unsigned char out[ADMIN_DIGEST_LEN])
{
    unsigned int n = 0;

    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != ADMIN_DIGEST_LEN)
        memset(out, 0, ADMIN_DIGEST_LEN); /* never equals a real token's digest by chance */
}

/* "Authorization: Bearer TOKEN", scheme case-insensitive (RFC 7235). */
static bool authorized(const struct admin *a, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    unsigned char got[ADMIN_DIGEST_LEN];
    size_t len;

    if (h == NULL || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return false;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    len = strlen(h);
    while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    if (len == 0 || len > ADMIN_TOKEN_MAX)
        return false;
    digest(h, len, got);
    return CRYPTO_memcmp(got, a->token_digest, sizeof got) == 0;
}

/* Probes answer without a token; for everything else the token comes
 * before routing, so an unauthenticated caller learns nothing, not even
 * which paths exist. */
static void admin_handle(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const struct route *r;

    if (path == NULL || *path == '\0')
        path = "/";
    r = find_route(path);
    if (r == NULL || !r->is_public) {
        if (!a->have_token) {
            reply_text(req, 403,
                       "admin token not configured (start sluice with --admin-token FILE)");
            return;
        }
        if (!authorized(a, req)) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                              "Bearer realm=\"sluice admin\"");
            reply_text(req, 401, "missing or wrong bearer token");
            return;
        }
    }
    if (r == NULL) {
        reply_text(req, 404, "not found");
        return;
    }
    if ((evhttp_request_get_command(req) & r->methods) == 0) {
        reply_method_not_allowed(req, r->methods);
        return;
    }
    r->serve(a, req, path);
}

/* "IP:PORT" or "[IPv6]:PORT", literal addresses only: the admin must bind
 * exactly where the operator said, never where a resolver points. */
static int parse_listen_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len,
                             char *err, size_t err_size)
{
    char host[ADMIN_ADDR_MAX];
    const char *colon, *port_text;
    size_t host_len;
    char *end;
    long port;

    if (addr == NULL || strlen(addr) >= sizeof host)
        goto bad;
    colon = strrchr(addr, ':');
    if (colon == NULL)
        goto bad;
    host_len = (size_t)(colon - addr);
    port_text = colon + 1;
    if (addr[0] == '[') {
        if (host_len < 3 || addr[host_len - 1] != ']')
            goto bad;
        memcpy(host, addr + 1, host_len - 2);
        host[host_len - 2] = '\0';
    } else {
        memcpy(host, addr, host_len);
        host[host_len] = '\0';
        if (strchr(host, ':')) {
            snprintf(err, err_size,
                     "admin address '%s': write IPv6 addresses in brackets, "
                     "e.g. [::1]:8081",
                     addr);
            return -1;
        }
    }
    if (*port_text < '0' || *port_text > '9' || strlen(port_text) > 5)
        goto bad;
    errno = 0;
    port = strtol(port_text, &end, 10);
    if (errno != 0 || *end != '\0' || port < 0 || port > 65535)
        goto bad;

    memset(ss, 0, sizeof *ss);
    if (addr[0] == '[') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            goto bad;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof *sin6;
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            goto bad;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *len = sizeof *sin;
    }
    return 0;
bad:
    snprintf(err, err_size,
             "admin address '%s' is not IP:PORT or [IPv6]:PORT "
             "(e.g. 127.0.0.1:8081)",
             addr ? addr : "(null)");
    return -1;
}

static void trim_token(char *buf, size_t *len)
{
    while (*len > 0 && (buf[*len - 1] == '\n' || buf[*len - 1] == '\r' || buf[*len - 1] == ' ' ||
                        buf[*len - 1] == '\t'))
        buf[--*len] = '\0';
}

static int check_token_text(const char *file, const char *buf, size_t len, char *err,
                            size_t err_size)
{
    if (len == 0) {
        snprintf(err, err_size, "admin token file %s is empty", file);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (buf[i] <= 0x20 || buf[i] >= 0x7f) {
            snprintf(err, err_size,
                     "admin token file %s: the token must be one line of "
                     "printable ASCII without spaces",
                     file);
            return -1;
        }
    }
    if (len < ADMIN_TOKEN_MIN) {
        snprintf(err, err_size, "admin token in %s is too short (%zu bytes; at least %d)", file,
                 len, ADMIN_TOKEN_MIN);
        return -1;
    }
    return 0;
}

/* A token others can read is no secret: refuse it as ssh refuses an
 * open private key. */
static int check_token_file(const char *file, int fd, char *err, size_t err_size)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        snprintf(err, err_size, "admin token file %s: %s", file, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "admin token file %s is not a regular file", file);
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, err_size,
                 "admin token file %s is accessible by group or others "
                 "(mode %04o); chmod 600 %s",
                 file, (unsigned)(st.st_mode & 07777), file);
        return -1;
    }
    return 0;
}

static int load_token(const char *file, unsigned char out[ADMIN_DIGEST_LEN], char *err,
                      size_t err_size)
{
    char buf[ADMIN_TOKEN_MAX + 2];
    size_t len = 0;
    int rc = -1;
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        snprintf(err, err_size, "admin token file %s: %s", file, strerror(errno));
        return -1;
    }
    if (check_token_file(file, fd, err, err_size) < 0)
        goto out;
    while (len < sizeof buf - 1) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, err_size, "admin token file %s: %s", file, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    trim_token(buf, &len);
    if (len > ADMIN_TOKEN_MAX) {
        snprintf(err, err_size, "admin token file %s is larger than %d bytes", file,
                 ADMIN_TOKEN_MAX);
        goto out;
    }
    if (check_token_text(file, buf, len, err, err_size) < 0)
        goto out;
    digest(buf, len, out);
    rc = 0;
out:
    explicit_bzero(buf, sizeof buf);
    close(fd);
    return rc;
}

static int listen_on(const struct sockaddr_storage *ss, socklen_t len, const char *addr, char *err,
                     size_t err_size)
{
    int one = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        goto fail;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        goto fail;
    /* [::]:8081 means IPv6 only; IPv4 needs its own address. */
    if (ss->ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, ADMIN_BACKLOG) < 0)
        goto fail;
    return fd;
fail:
    snprintf(err, err_size, "admin: cannot listen on %s: %s", addr, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int admin_serve(struct admin *a, struct event_base *base, int fd, const char *addr,
                       char *err, size_t err_size)
{
    a->http = evhttp_new(base);
    if (a->http == NULL) {
        snprintf(err, err_size, "admin: out of memory");
        close(fd);
        return -1;
    }
    evhttp_set_allowed_methods(a->http, METHODS_ALL);
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
    evhttp_set_timeout(a->http, ADMIN_IO_TIMEOUT_S);
    evhttp_set_default_content_type(a->http, "text/plain; charset=utf-8");
    evhttp_set_gencb(a->http, admin_handle, a);
    /* evhttp owns fd from here: it closes it on success and on free. */
    if (evhttp_accept_socket_with_handle(a->http, fd) == NULL) {
        snprintf(err, err_size, "admin: cannot serve on %s", addr);
        close(fd);
        return -1;
    }
    a->port = bound_port(fd);
    return 0;
}

int admin_start(struct event_base *base, const char *addr, const char *token_file,
                const struct admin_hooks *hooks, struct admin **out, char *err, size_t err_size)
{
    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    struct admin *a;
    int fd;

    *out = NULL;
    /* "fd:N": an inherited listening socket (sluice run passes one). */
    bool inherited = sockfd_given(addr);
    if (inherited ? sockfd_parse(addr, SOCK_STREAM, &fd, &ss, &ss_len, err, err_size) < 0
                  : parse_listen_addr(addr, &ss, &ss_len, err, err_size) < 0)
        return -1;
    a = calloc(1, sizeof *a);
    if (a == NULL) {
        snprintf(err, err_size, "admin: out of memory");
        return -1;
    }
    if (hooks)
        a->hooks = *hooks;
    if (token_file) {
        if (load_token(token_file, a->token_digest, err, err_size) < 0)
            goto fail;
        a->have_token = true;
    }
    if (!inherited)
        fd = listen_on(&ss, ss_len, addr, err, err_size);
    if (fd < 0 || admin_serve(a, base, fd, addr, err, err_size) < 0)
        goto fail;
    *out = a;
    return 0;
fail:
    admin_stop(a);
    return -1;
}

int admin_port(const struct admin *a)
{
    return a ? a->port : -1;
}

void admin_stop(struct admin *a)
{
    if (a == NULL)
        return;
    if (a->http)
        evhttp_free(a->http);
    explicit_bzero(a->token_digest, sizeof a->token_digest);
    free(a);
}
