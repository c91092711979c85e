/* The admin API over a real socket: an event loop thread serves
 * admin_start on 127.0.0.1 (port 0) with stub hooks, and the tests speak
 * HTTP to it as curl or Prometheus would, then drive `sluice status` and
 * `sluice reload` against it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>

#include "admin/admin.h"
#include "cmd/cmd.h"
#include "core/metrics.h"
#include "policy/policy.h"

#define TOKEN "s3cret-admin-token-0123456789"
#define RESP_MAX (256 * 1024)
#define PATH_MAX_LEN 256
#define ERR_MAX 512

#define POLICY_A                                                                                   \
    "{\"default\": \"deny\", \"rules\": [{\"allow\": \"pypi.org\"}, "                              \
    "{\"deny\": \"gist.github.com\", \"reason\": \"no gists\"}]}"
#define POLICY_B "{\"default\": \"allow\", \"mode\": \"report\", \"rules\": []}"
#define LOADED_AT 1700000000 /* 2023-11-14T22:13:20Z */

/* The world the stub hooks show; touched by the loop thread while it
 * serves and by the test thread between requests. */
static struct {
    atomic_bool ready;
    atomic_bool reload_fails;
    atomic_int reloads;
    atomic_int installs;
    struct policy *_Atomic live;
} world;

static struct event_base *base;
static pthread_t loop_thread;
static struct admin *admin_tok;  /* with a token */
static struct admin *admin_none; /* started without --admin-token */
static struct admin *admin_v6;   /* [::1]:0 where IPv6 loopback exists */
static char dir[64];
static char token_file[PATH_MAX_LEN];
static char wrong_token_file[PATH_MAX_LEN];
static char resp[RESP_MAX];

static struct policy *load_policy(const char *json)
{
    struct policy_error perr;
    struct policy *p = policy_load_buffer(json, strlen(json), "test", &perr);

    if (p == NULL) {
        char msg[ERR_MAX];

        policy_format_error(&perr, msg, sizeof msg);
        fail_msg("test policy rejected: %s", msg);
    }
    return p;
}

static void set_live(struct policy *p)
{
    struct policy *old = atomic_exchange(&world.live, p);

    if (old)
        policy_unref(old);
}

static int hook_reload(void *arg, char *err, size_t err_size)
{
    (void)arg;
    if (atomic_load(&world.reload_fails)) {
        metrics_add(&metrics.reloads_failed, 1);
        snprintf(err, err_size, "policy.json:3:7: rules[0].allow: not a host pattern");
        return -1;
    }
    metrics_add(&metrics.reloads_ok, 1);
    atomic_fetch_add(&world.reloads, 1);
    return 0;
}

static int hook_install(void *arg, struct policy *p, char *err, size_t err_size)
{
    (void)arg;
    (void)err;
    (void)err_size;
    atomic_fetch_add(&world.installs, 1);
    set_live(p);
    return 0;
}

static struct policy *hook_current(void *arg)
{
    struct policy *p = atomic_load(&world.live);

    (void)arg;
    return p ? policy_ref(p) : NULL;
}

static bool hook_ready(void *arg)
{
    (void)arg;
    return atomic_load(&world.ready);
}

static const char *hook_mode(void *arg)
{
    (void)arg;
    return "proxy-only";
}

static time_t hook_loaded_at(void *arg)
{
    (void)arg;
    return LOADED_AT;
}

static const struct admin_hooks hooks = {
    .arg = NULL,
    .reload = hook_reload,
    .install_policy = hook_install,
    .current_policy = hook_current,
    .ready = hook_ready,
    .enforcement_mode = hook_mode,
    .policy_loaded_at = hook_loaded_at,
};

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void *serve(void *arg)
{
    (void)arg;
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static int setup(void **state)
{
    char err[ERR_MAX];
    (void)state;

    snprintf(dir, sizeof dir, "/tmp/sluice-test-admin-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(token_file, sizeof token_file, "%s/token", dir);
    snprintf(wrong_token_file, sizeof wrong_token_file, "%s/wrong", dir);
    write_file(token_file, TOKEN "\n", 0600);
    write_file(wrong_token_file, "not-the-admin-token-at-all\n", 0600);
    evthread_use_pthreads();
    base = event_base_new();
    if (base == NULL)
        return -1;
    set_live(load_policy(POLICY_A));
    if (admin_start(base, "127.0.0.1:0", token_file, &hooks, &admin_tok, err, sizeof err) < 0 ||
        admin_start(base, "127.0.0.1:0", NULL, &hooks, &admin_none, err, sizeof err) < 0) {
        fprintf(stderr, "admin_start: %s\n", err);
        return -1;
    }
    if (admin_start(base, "[::1]:0", token_file, &hooks, &admin_v6, err, sizeof err) < 0)
        admin_v6 = NULL; /* no IPv6 loopback here; that test skips */
    return pthread_create(&loop_thread, NULL, serve, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX_LEN + 16];
    (void)state;

    event_base_loopbreak(base);
    pthread_join(loop_thread, NULL);
    admin_stop(admin_tok);
    admin_stop(admin_none);
    admin_stop(admin_v6);
    event_base_free(base);
    set_live(NULL);
    unlink(token_file);
    unlink(wrong_token_file);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int connect_to(int family, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct timeval tv = {.tv_sec = 5};
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        s6->sin6_addr = in6addr_loopback;
        len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *s4;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
    return fd;
}

/* Sends raw bytes, reads until the server closes; the answer lands in
 * resp and its status code is returned (0 when there was none). */
static int exchange(int family, int port, const char *raw, size_t raw_len)
{
    int fd = connect_to(family, port);
    size_t len = 0;
    int status = 0;

    assert_int_equal(send(fd, raw, raw_len, MSG_NOSIGNAL), (ssize_t)raw_len);
    for (;;) {
        ssize_t n = recv(fd, resp + len, sizeof resp - 1 - len, 0);

        if (n <= 0)
            break;
        len += (size_t)n;
        assert_true(len < sizeof resp - 1);
    }
    resp[len] = '\0';
    close(fd);
    if (sscanf(resp, "HTTP/1.1 %d", &status) != 1)
        status = 0;
    return status;
}

static int request_on(struct admin *a, const char *method, const char *path, const char *token,
                      const char *body)
{
    char raw[4096];
    int n = snprintf(raw, sizeof raw,
                     "%s %s HTTP/1.1\r\nHost: localhost\r\n%s%s%sContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     method, path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "", body ? strlen(body) : 0, body ? body : "");

    assert_true(n > 0 && (size_t)n < sizeof raw);
    return exchange(AF_INET, admin_port(a), raw, (size_t)n);
}

static int request(const char *method, const char *path, const char *token, const char *body)
{
    return request_on(admin_tok, method, path, token, body);
}

static const char *body_of(const char *r)
{
    const char *b = strstr(r, "\r\n\r\n");

    assert_non_null(b);
    return b + 4;
}

/* The value of a response header, copied out; "" when absent. */
static const char *header_of(const char *r, const char *name)
{
    static char value[512];
    size_t n = strlen(name);
    const char *end = strstr(r, "\r\n\r\n");

    value[0] = '\0';
    for (const char *l = strstr(r, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':') {
            const char *v = l + 3 + n;

            while (*v == ' ')
                v++;
            snprintf(value, sizeof value, "%.*s", (int)strcspn(v, "\r"), v);
            break;
        }
    }
    return value;
}

static json_t *json_body(void)
{
    json_error_t jerr;
    json_t *doc = json_loads(body_of(resp), 0, &jerr);

    if (doc == NULL)
        fail_msg("not JSON (%s): %s", jerr.text, body_of(resp));
    return doc;
}

static const char *live_hash(void)
{
    static char hash[128];

    snprintf(hash, sizeof hash, "%s", policy_hash(atomic_load(&world.live)));
    return hash;
}

static void test_healthz_needs_no_token(void **state)
{
    (void)state;
    assert_int_equal(request("GET", "/healthz", NULL, NULL), 200);
    assert_string_equal(body_of(resp), "ok\n");
    assert_string_equal(header_of(resp, "Cache-Control"), "no-store");
    assert_int_equal(request_on(admin_none, "GET", "/healthz", NULL, NULL), 200);
}

static void test_head_healthz_has_no_body(void **state)
{
    (void)state;
    assert_int_equal(request("HEAD", "/healthz", NULL, NULL), 200);
    assert_string_equal(body_of(resp), "");
}

static void test_readyz_follows_hook(void **state)
{
    (void)state;
    atomic_store(&world.ready, false);
    assert_int_equal(request("GET", "/readyz", NULL, NULL), 503);
    assert_string_equal(body_of(resp), "not ready\n");
    atomic_store(&world.ready, true);
    assert_int_equal(request("GET", "/readyz", NULL, NULL), 200);
    assert_string_equal(body_of(resp), "ready\n");
}

static void test_missing_token_is_401(void **state)
{
    static const char *const paths[] = {"/status", "/metrics", "/policy", "/approvals",
                                        "/no-such-path"};
    (void)state;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        assert_int_equal(request("GET", paths[i], NULL, NULL), 401);
        assert_non_null(strstr(header_of(resp, "WWW-Authenticate"), "Bearer"));
        assert_string_equal(header_of(resp, "Cache-Control"), "no-store");
        assert_null(strstr(body_of(resp), "pypi.org"));
    }
    assert_int_equal(request("POST", "/reload", NULL, NULL), 401);
    assert_int_equal(atomic_load(&world.reloads), 0);
}

static void test_wrong_token_is_401(void **state)
{
    char raw[512];
    int n;

    (void)state;
    assert_int_equal(request("GET", "/status", "wrong", NULL), 401);
    assert_int_equal(request("GET", "/status", TOKEN "x", NULL), 401);
    assert_int_equal(request("GET", "/status", "s3cret-admin-token-012345678", NULL), 401);
    /* another scheme with the right secret is still no bearer token */
    n = snprintf(raw, sizeof raw,
                 "GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n"
                 "Connection: close\r\n\r\n",
                 TOKEN);
    assert_int_equal(exchange(AF_INET, admin_port(admin_tok), raw, (size_t)n), 401);
    /* the scheme is case-insensitive (RFC 7235) */
    n = snprintf(raw, sizeof raw,
                 "GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: bearer  %s\r\n"
                 "Connection: close\r\n\r\n",
                 TOKEN);
    assert_int_equal(exchange(AF_INET, admin_port(admin_tok), raw, (size_t)n), 200);
}

static void test_no_token_configured_is_403(void **state)
{
    (void)state;
    assert_int_equal(request_on(admin_none, "GET", "/status", TOKEN, NULL), 403);
    assert_non_null(strstr(body_of(resp), "--admin-token FILE"));
    assert_int_equal(request_on(admin_none, "POST", "/reload", NULL, NULL), 403);
    assert_int_equal(request_on(admin_none, "GET", "/metrics", NULL, NULL), 403);
}

static void test_status_json(void **state)
{
    json_t *doc, *p, *c;

    (void)state;
    metrics_add(&metrics.connections_total, 3);
    assert_int_equal(request("GET", "/status", TOKEN, NULL), 200);
    assert_string_equal(header_of(resp, "Content-Type"), "application/json");
    assert_string_equal(header_of(resp, "Cache-Control"), "no-store");
    doc = json_body();
    assert_string_equal(json_string_value(json_object_get(doc, "version")), SLUICE_VERSION);
    assert_string_equal(json_string_value(json_object_get(doc, "enforcement_mode")), "proxy-only");
    /* no sandbox hook: the proxy's filter is not known to be on */
    assert_string_equal(json_string_value(json_object_get(doc, "sandbox")), "off");
    p = json_object_get(doc, "policy");
    assert_string_equal(json_string_value(json_object_get(p, "hash")), live_hash());
    assert_string_equal(json_string_value(json_object_get(p, "loaded_at")), "2023-11-14T22:13:20Z");
    assert_int_equal(json_integer_value(json_object_get(p, "rules")), 2);
    assert_string_equal(json_string_value(json_object_get(p, "default")), "deny");
    assert_string_equal(json_string_value(json_object_get(p, "mode")), "enforce");
    assert_true(json_is_integer(json_object_get(doc, "uptime_seconds")));
    c = json_object_get(doc, "counters");
    assert_true(json_integer_value(json_object_get(json_object_get(c, "connections"), "total")) >=
                3);
    assert_true(json_is_integer(
        json_object_get(json_object_get(json_object_get(c, "decisions"), "connect"), "deny")));
    assert_true(json_is_integer(json_object_get(json_object_get(c, "bytes"), "up")));
    assert_true(json_is_integer(json_object_get(json_object_get(c, "reloads"), "failed")));
    assert_true(json_is_integer(json_object_get(json_object_get(c, "errors"), "upstream_504")));
    assert_true(json_is_null(json_object_get(doc, "kernel_drops")));
    json_decref(doc);
}

static void test_metrics_prometheus(void **state)
{
    char line[256];

    (void)state;
    metrics_count_decision(METRICS_KIND_CONNECT, METRICS_DENY, 1);
    assert_int_equal(request("GET", "/metrics", TOKEN, NULL), 200);
    assert_string_equal(header_of(resp, "Content-Type"),
                        "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(resp, "\nsluice_rule_hits_total{rule=\"1\"} "));
    assert_non_null(strstr(resp, "\n# TYPE sluice_resolver_latency_seconds histogram\n"));
    snprintf(line, sizeof line, "\nsluice_policy_info{hash=\"%s\"} 1\n", live_hash());
    assert_non_null(strstr(resp, line));
}

static void test_reload_ok_and_failed(void **state)
{
    json_t *doc;

    (void)state;
    atomic_store(&world.reload_fails, false);
    assert_int_equal(request("POST", "/reload", TOKEN, NULL), 200);
    doc = json_body();
    assert_string_equal(json_string_value(json_object_get(doc, "result")), "ok");
    assert_string_equal(json_string_value(json_object_get(doc, "hash")), live_hash());
    json_decref(doc);

    atomic_store(&world.reload_fails, true);
    assert_int_equal(request("POST", "/reload", TOKEN, NULL), 422);
    doc = json_body();
    assert_string_equal(json_string_value(json_object_get(doc, "result")), "failed");
    assert_string_equal(json_string_value(json_object_get(doc, "error")),
                        "policy.json:3:7: rules[0].allow: not a host pattern");
    json_decref(doc);
    atomic_store(&world.reload_fails, false);
}

static void test_get_policy(void **state)
{
    json_t *doc, *rules;

    (void)state;
    assert_int_equal(request("GET", "/policy", TOKEN, NULL), 200);
    doc = json_body();
    assert_string_equal(json_string_value(json_object_get(doc, "hash")), live_hash());
    rules = json_object_get(doc, "rules");
    assert_int_equal(json_array_size(rules), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rules, 0), "allow")),
                        "pypi.org");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rules, 1), "reason")),
                        "no gists");
    json_decref(doc);
}

/* GET /policy shows what a rule injects, never the value. */
static void test_get_policy_redacts_inject(void **state)
{
    (void)state;
    set_live(load_policy("{\"default\": \"deny\", \"rules\": [{\"allow\": \"api.example.com\", "
                         "\"inject\": {\"Authorization\": \"Bearer sk-live-abcdef\"}}]}"));
    assert_int_equal(request("GET", "/policy", TOKEN, NULL), 200);
    assert_non_null(strstr(body_of(resp), "Authorization"));
    assert_null(strstr(body_of(resp), "sk-live-abcdef"));
    assert_int_equal(request("GET", "/status", TOKEN, NULL), 200);
    assert_null(strstr(body_of(resp), "sk-live-abcdef"));
    set_live(load_policy(POLICY_A));
}

static void test_put_policy_invalid_keeps_old(void **state)
{
    char before[128];
    json_t *doc;
    const char *error;

    (void)state;
    snprintf(before, sizeof before, "%s", live_hash());
    assert_int_equal(request("PUT", "/policy", TOKEN, "{\"default\": \"maybe\"}"), 422);
    doc = json_body();
    assert_string_equal(json_string_value(json_object_get(doc, "result")), "failed");
    error = json_string_value(json_object_get(doc, "error"));
    assert_non_null(error);
    assert_non_null(strstr(error, "PUT /policy"));
    json_decref(doc);
    assert_int_equal(request("PUT", "/policy", TOKEN, "not json"), 422);
    assert_int_equal(request("PUT", "/policy", TOKEN, ""), 400);
    assert_int_equal(atomic_load(&world.installs), 0);
    assert_string_equal(live_hash(), before);
}

static void test_put_policy_installs(void **state)
{
    char before[128];
    json_t *doc;

    (void)state;
    snprintf(before, sizeof before, "%s", live_hash());
    assert_int_equal(request("PUT", "/policy", TOKEN, POLICY_B), 200);
    doc = json_body();
    assert_string_equal(json_string_value(json_object_get(doc, "result")), "ok");
    assert_int_equal(atomic_load(&world.installs), 1);
    assert_string_equal(json_string_value(json_object_get(doc, "hash")), live_hash());
    assert_string_not_equal(live_hash(), before);
    json_decref(doc);
    assert_int_equal(request("GET", "/status", TOKEN, NULL), 200);
    doc = json_body();
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "policy"), "mode")),
                        "report");
    json_decref(doc);
    set_live(load_policy(POLICY_A));
}

/* PATCH and DELETE edit the live policy by target and install it as PUT
 * does; src/policy/patch.c's own tests cover the merge itself. */
static void test_policy_patch_and_delete(void **state)
{
    json_t *doc;
    int installs = atomic_load(&world.installs);

    (void)state;
    assert_int_equal(request("PATCH", "/policy", NULL, "{\"allow\": \"a.test\"}"), 401);
    assert_int_equal(request("PATCH", "/policy", TOKEN,
                             "{\"rules\": [{\"deny\": \"PyPI.org\"}, {\"allow\": \"a.test\"}]}"),
                     200);
    doc = json_body();
    assert_string_equal(json_string_value(json_object_get(doc, "hash")), live_hash());
    assert_int_equal(json_integer_value(json_object_get(doc, "rules")), 3);
    assert_string_equal(json_string_value(json_array_get(json_object_get(doc, "replaced"), 0)),
                        "pypi.org");
    assert_string_equal(json_string_value(json_array_get(json_object_get(doc, "added"), 0)),
                        "a.test");
    json_decref(doc);
    assert_int_equal(atomic_load(&world.installs), installs + 1);
    assert_int_equal(request("PATCH", "/policy", TOKEN, "{}"), 422);
    assert_int_equal(request("PATCH", "/policy", TOKEN, "[1"), 400);
    assert_int_equal(request("DELETE", "/policy", TOKEN, NULL), 400);
    assert_int_equal(request("DELETE", "/policy?target=nope.test", TOKEN, NULL), 404);
    assert_int_equal(request("DELETE", "/policy?target=a.test", TOKEN, "{}"), 400);
    assert_int_equal(request("DELETE", "/policy", TOKEN, "{\"targets\": [\"a.test\"]}"), 200);
    doc = json_body();
    assert_int_equal(json_integer_value(json_object_get(doc, "rules")), 2);
    assert_int_equal(json_integer_value(json_object_get(doc, "rules_removed")), 1);
    json_decref(doc);
    assert_int_equal(atomic_load(&world.installs), installs + 2);
    set_live(load_policy(POLICY_A));
}

static void test_oversized_body_refused(void **state)
{
    char head[256];
    int n;

    (void)state;
    /* evhttp refuses on the announced length, before reading the body */
    n = snprintf(head, sizeof head,
                 "PUT /policy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n\r\n",
                 TOKEN, 2 * 1024 * 1024);
    int installs = atomic_load(&world.installs);
    assert_int_equal(exchange(AF_INET, admin_port(admin_tok), head, (size_t)n), 413);
    assert_int_equal(atomic_load(&world.installs), installs);
}

static void test_approvals_empty(void **state)
{
    (void)state;
    assert_int_equal(request("GET", "/approvals", TOKEN, NULL), 200);
    assert_string_equal(body_of(resp), "[]\n");
    assert_int_equal(request("POST", "/approvals/42", TOKEN, NULL), 404);
    assert_string_equal(body_of(resp), "no such approval\n");
    assert_int_equal(request("POST", "/approvals/42/x", TOKEN, NULL), 404);
}

static void test_unknown_path_and_wrong_method(void **state)
{
    (void)state;
    assert_int_equal(request("GET", "/nope", TOKEN, NULL), 404);
    assert_int_equal(request("GET", "/status/", TOKEN, NULL), 404);
    assert_int_equal(request("POST", "/status", TOKEN, NULL), 405);
    assert_string_equal(header_of(resp, "Allow"), "GET, HEAD");
    assert_int_equal(request("GET", "/reload", TOKEN, NULL), 405);
    assert_string_equal(header_of(resp, "Allow"), "POST");
    assert_int_equal(request("DELETE", "/healthz", NULL, NULL), 405);
    assert_int_equal(request("GET", "/approvals/1", TOKEN, NULL), 405);
    /* a query string does not change the route */
    assert_int_equal(request("GET", "/healthz?x=1", NULL, NULL), 200);
}

static void test_ipv6_listener(void **state)
{
    const char raw[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    (void)state;
    if (admin_v6 == NULL)
        skip();
    assert_int_equal(exchange(AF_INET6, admin_port(admin_v6), raw, sizeof raw - 1), 200);
}

static void expect_start_fails(const char *addr, const char *token, const char *needle)
{
    char err[ERR_MAX] = "";
    struct admin *a = (struct admin *)1;

    assert_int_equal(admin_start(base, addr, token, &hooks, &a, err, sizeof err), -1);
    assert_null(a);
    if (strstr(err, needle) == NULL)
        fail_msg("admin_start(%s, %s): error '%s' lacks '%s'", addr, token ? token : "-", err,
                 needle);
}

static void test_bad_addresses_refused(void **state)
{
    static const char *const bad[] = {
        "127.0.0.1",       "localhost:8081",  "127.1:8081", "127.0.0.1:",    "127.0.0.1:-1",
        "127.0.0.1:65536", "127.0.0.1:80x",   "[::1:8081",  "[]:8081",       "[127.0.0.1]:8081",
        ":8081",           "0x7f.0.0.1:8081", "[::1]8081",  "127.0.0.1:+80", "127.0.0.1: 8081",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_start_fails(bad[i], NULL, "is not IP:PORT or [IPv6]:PORT");
    expect_start_fails("::1:8081", NULL, "brackets");
}

static void test_port_in_use_refused(void **state)
{
    char addr[64];

    (void)state;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", admin_port(admin_tok));
    expect_start_fails(addr, NULL, "Address already in use");
}

static void test_bad_token_files_refused(void **state)
{
    char path[PATH_MAX_LEN + 16];
    char big[5000];

    (void)state;
    snprintf(path, sizeof path, "%s/t", dir);
    write_file(path, TOKEN "\n", 0644);
    expect_start_fails("127.0.0.1:0", path, "accessible by group or others (mode 0644)");
    write_file(path, TOKEN "\n", 0640);
    expect_start_fails("127.0.0.1:0", path, "chmod 600");
    write_file(path, "\n\n", 0600);
    expect_start_fails("127.0.0.1:0", path, "is empty");
    write_file(path, "short-token\n", 0600);
    expect_start_fails("127.0.0.1:0", path, "too short");
    write_file(path, "two words in the admin token\n", 0600);
    expect_start_fails("127.0.0.1:0", path, "printable ASCII");
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    write_file(path, big, 0600);
    expect_start_fails("127.0.0.1:0", path, "larger than");
    unlink(path);
    expect_start_fails("127.0.0.1:0", path, "No such file");
    expect_start_fails("127.0.0.1:0", dir, "not a regular file");
}

/* Runs a command entry with stdout and stderr captured into out/err. */
static int run_cmd(int (*fn)(int, char **), char **argv, char *out, size_t out_size, char *err,
                   size_t err_size)
{
    char out_path[PATH_MAX_LEN + 8], err_path[PATH_MAX_LEN + 8];
    int argc = 0, rc, saved_out, saved_err, fd_out, fd_err;
    ssize_t n;

    while (argv[argc])
        argc++;
    snprintf(out_path, sizeof out_path, "%s/out", dir);
    snprintf(err_path, sizeof err_path, "%s/err", dir);
    fflush(stdout);
    fflush(stderr);
    saved_out = dup(STDOUT_FILENO);
    saved_err = dup(STDERR_FILENO);
    fd_out = open(out_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    fd_err = open(err_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd_out >= 0 && fd_err >= 0);
    dup2(fd_out, STDOUT_FILENO);
    dup2(fd_err, STDERR_FILENO);
    rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    n = pread(fd_out, out, out_size - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    n = pread(fd_err, err, err_size - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(fd_out);
    close(fd_err);
    return rc;
}

static char cli_out[8192], cli_err[8192];

#define RUN(fn, ...)                                                                               \
    run_cmd(fn, (char *[]){__VA_ARGS__, NULL}, cli_out, sizeof cli_out, cli_err, sizeof cli_err)

static void admin_url(struct admin *a, char *buf, size_t size)
{
    snprintf(buf, size, "http://127.0.0.1:%d", admin_port(a));
}

static void test_cli_status_human(void **state)
{
    char url[64], line[160];

    (void)state;
    admin_url(admin_tok, url, sizeof url);
    assert_int_equal(RUN(cmd_status_main, "status", "--admin", url, "--token", token_file), 0);
    assert_non_null(strstr(cli_out, "sluice " SLUICE_VERSION));
    assert_non_null(strstr(cli_out, "enforcement   proxy-only\n"));
    snprintf(line, sizeof line, "policy hash   %s\n", live_hash());
    assert_non_null(strstr(cli_out, line));
    assert_non_null(strstr(cli_out, "loaded at     2023-11-14T22:13:20Z\n"));
    assert_non_null(strstr(cli_out, "2 rules, default deny, enforce mode"));
    assert_non_null(strstr(cli_out, "kernel drops  not enforced by kernel\n"));
    assert_non_null(strstr(cli_out, "decisions     "));
    assert_string_equal(cli_err, "");
}

static void test_cli_status_json_token_from_env(void **state)
{
    char url[64];
    json_t *doc;

    (void)state;
    admin_url(admin_tok, url, sizeof url);
    setenv("SLUICE_ADMIN_TOKEN_FILE", token_file, 1);
    assert_int_equal(RUN(cmd_status_main, "status", "--json", "--admin", url), 0);
    unsetenv("SLUICE_ADMIN_TOKEN_FILE");
    doc = json_loads(cli_out, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "version")), SLUICE_VERSION);
    json_decref(doc);
}

static void test_cli_status_errors(void **state)
{
    char url[64];
    int fd, port;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof sin;

    (void)state;
    admin_url(admin_tok, url, sizeof url);
    /* wrong token: 401, the URL and a hint */
    assert_int_equal(RUN(cmd_status_main, "status", "--admin", url, "--token", wrong_token_file),
                     1);
    assert_non_null(strstr(cli_err, url));
    assert_non_null(strstr(cli_err, "answered 401"));
    assert_non_null(strstr(cli_err, "--token FILE"));
    assert_string_equal(cli_out, "");
    /* nothing listening: a port just bound and closed */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    port = ntohs(sin.sin_port);
    close(fd);
    snprintf(url, sizeof url, "127.0.0.1:%d", port);
    assert_int_equal(RUN(cmd_status_main, "status", "--admin", url, "--token", token_file), 1);
    assert_non_null(strstr(cli_err, "cannot reach the admin API at 127.0.0.1:"));
    assert_non_null(strstr(cli_err, "refused"));
    /* bad usage */
    assert_int_equal(RUN(cmd_status_main, "status", "--bogus"), 2);
    assert_int_equal(RUN(cmd_status_main, "status", "extra"), 2);
    assert_int_equal(RUN(cmd_status_main, "status", "--admin"), 2);
    assert_int_equal(RUN(cmd_status_main, "status", "--admin", "ftp://127.0.0.1:1"), 2);
    assert_int_equal(RUN(cmd_status_main, "status", "--admin", "http://127.0.0.1:99999"), 2);
    assert_int_equal(RUN(cmd_status_main, "status", "--admin", "http://127.0.0.1:1/x"), 2);
    assert_int_equal(RUN(cmd_reload_main, "reload", "--json"), 2);
}

static void test_cli_no_token_configured(void **state)
{
    char url[64];

    (void)state;
    admin_url(admin_none, url, sizeof url);
    assert_int_equal(RUN(cmd_status_main, "status", "--admin", url), 1);
    assert_non_null(strstr(cli_err, "answered 403"));
    assert_non_null(strstr(cli_err, "--admin-token FILE"));
}

static void test_cli_reload(void **state)
{
    char url[64], line[160];

    (void)state;
    admin_url(admin_tok, url, sizeof url);
    atomic_store(&world.reload_fails, false);
    assert_int_equal(RUN(cmd_reload_main, "reload", "--admin", url, "--token", token_file), 0);
    snprintf(line, sizeof line, "reloaded: policy %s\n", live_hash());
    assert_string_equal(cli_out, line);
    atomic_store(&world.reload_fails, true);
    assert_int_equal(RUN(cmd_reload_main, "reload", "--admin", url, "--token", token_file), 1);
    assert_string_equal(cli_err,
                        "reload failed: policy.json:3:7: rules[0].allow: not a host pattern\n");
    atomic_store(&world.reload_fails, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_needs_no_token),
        cmocka_unit_test(test_head_healthz_has_no_body),
        cmocka_unit_test(test_readyz_follows_hook),
        cmocka_unit_test(test_missing_token_is_401),
        cmocka_unit_test(test_wrong_token_is_401),
        cmocka_unit_test(test_no_token_configured_is_403),
        cmocka_unit_test(test_status_json),
        cmocka_unit_test(test_metrics_prometheus),
        cmocka_unit_test(test_reload_ok_and_failed),
        cmocka_unit_test(test_get_policy),
        cmocka_unit_test(test_get_policy_redacts_inject),
        cmocka_unit_test(test_put_policy_invalid_keeps_old),
        cmocka_unit_test(test_put_policy_installs),
        cmocka_unit_test(test_policy_patch_and_delete),
        cmocka_unit_test(test_oversized_body_refused),
        cmocka_unit_test(test_approvals_empty),
        cmocka_unit_test(test_unknown_path_and_wrong_method),
        cmocka_unit_test(test_ipv6_listener),
        cmocka_unit_test(test_bad_addresses_refused),
        cmocka_unit_test(test_port_in_use_refused),
        cmocka_unit_test(test_bad_token_files_refused),
        cmocka_unit_test(test_cli_status_human),
        cmocka_unit_test(test_cli_status_json_token_from_env),
        cmocka_unit_test(test_cli_status_errors),
        cmocka_unit_test(test_cli_no_token_configured),
        cmocka_unit_test(test_cli_reload),
    };

    return cmocka_run_group_tests_name("admin", tests, setup, teardown);
}
