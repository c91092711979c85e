/* sluice status / sluice reload: ask a running proxy's admin API.
 *
 * A tiny blocking HTTP/1.1 client over a plain socket is all this needs:
 * one request, Connection: close, timeouts on every socket call, and an
 * answer bounded in size, so a wrong --admin URL can neither hang the CLI
 * nor make it read without end. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd/cmd.h"

#define STATUS_DEFAULT_URL "http://127.0.0.1:8081"
#define STATUS_TOKEN_ENV "SLUICE_ADMIN_TOKEN_FILE"
#define STATUS_TIMEOUT_S 5
#define STATUS_MAX_RESPONSE (1024 * 1024)
#define STATUS_MAX_TOKEN 4096
#define STATUS_MAX_HOST 256
#define STATUS_MAX_REQUEST (STATUS_MAX_TOKEN + 1024)
#define STATUS_MAX_ERROR 512
#define STATUS_MAX_SNIPPET 200 /* of an error body quoted in a message */

const char cmd_status_help[] =
    "usage: sluice status [--admin URL] [--token FILE] [--json | --healthz | --readyz]\n"
    "\n"
    "Shows a running sluice's state through its admin API: version, enforcement\n"
    "mode, policy hash and load time, uptime, decisions, connections, reloads.\n"
    "\n"
    "  --admin URL    admin API address (default " STATUS_DEFAULT_URL ")\n"
    "  --token FILE   file holding the admin bearer token\n"
    "                 (default: $" STATUS_TOKEN_ENV ")\n"
    "  --json         print the raw JSON status\n"
    "  --healthz      only ask GET /healthz (no token): a container health check\n"
    "  --readyz       only ask GET /readyz (no token): 0 once sluice is ready\n"
    "\n"
    "Exit status: 0 ok, 1 the admin API cannot be reached or answered an error,\n"
    "2 bad usage.\n";

const char cmd_reload_help[] =
    "usage: sluice reload [--admin URL] [--token FILE]\n"
    "\n"
    "Makes a running sluice reload its policy file (as SIGHUP does). A policy that\n"
    "fails validation is not installed; the old one stays live.\n"
    "\n"
    "  --admin URL    admin API address (default " STATUS_DEFAULT_URL ")\n"
    "  --token FILE   file holding the admin bearer token\n"
    "                 (default: $" STATUS_TOKEN_ENV ")\n"
    "\n"
    "Prints \"reloaded: policy HASH\" and exits 0, or \"reload failed: WHY\" and\n"
    "exits 1; 2 for bad usage.\n";

struct admin_url {
    const char *text; /* as given, for messages */
    char host[STATUS_MAX_HOST];
    char port[6];
    bool bracketed; /* IPv6 literal */
};

struct options {
    const char *url;
    const char *token_file;
    bool json;
    const char *probe; /* "/healthz" or "/readyz": that path only, no token */
};

struct answer {
    int status;
    char *raw; /* the whole response, NUL-terminated; owns body */
    size_t raw_len;
    char *body;
    size_t body_len;
};

static void answer_free(struct answer *a)
{
    free(a->raw);
    memset(a, 0, sizeof *a);
}

static int parse_port(const char *text, size_t len, char out[6])
{
    unsigned long v = 0;

    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(text[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    snprintf(out, 6, "%lu", v);
    return 0;
}

/* http://HOST[:PORT][/], HOST:PORT, [IPv6]:PORT; no userinfo, no path: the
 * admin API lives at the root. */
static int parse_url(const char *text, struct admin_url *u, char *err, size_t err_size)
{
    const char *auth = text, *end, *host_end, *port = NULL;
    size_t host_len;

    u->text = text;
    if (strncasecmp(text, "https://", 8) == 0) {
        snprintf(err, err_size, "--admin %s: the admin API speaks plain HTTP (use http://)", text);
        return -1;
    }
    if (strncasecmp(text, "http://", 7) == 0)
        auth = text + 7;
    else if (strstr(text, "://")) {
        snprintf(err, err_size, "--admin %s: only http:// URLs are supported", text);
        return -1;
    }
    end = auth + strcspn(auth, "/?#");
    if (*end != '\0' && strcmp(end, "/") != 0)
        goto bad;
    if (memchr(auth, '@', (size_t)(end - auth)))
        goto bad;
    if (*auth == '[') {
        host_end = memchr(auth, ']', (size_t)(end - auth));
        if (host_end == NULL)
            goto bad;
        auth++;
        if (host_end[1] == ':')
            port = host_end + 2;
        else if (host_end + 1 != end)
            goto bad;
        u->bracketed = true;
    } else {
        host_end = memchr(auth, ':', (size_t)(end - auth));
        if (host_end)
            port = host_end + 1;
        else
            host_end = end;
        u->bracketed = false;
    }
    host_len = (size_t)(host_end - auth);
    if (host_len == 0 || host_len >= sizeof u->host)
        goto bad;
    memcpy(u->host, auth, host_len);
    u->host[host_len] = '\0';
    if (port == NULL)
        snprintf(u->port, sizeof u->port, "80");
    else if (parse_port(port, (size_t)(end - port), u->port) < 0)
        goto bad;
    return 0;
bad:
    snprintf(err, err_size, "--admin %s: not an admin URL like " STATUS_DEFAULT_URL, text);
    return -1;
}

/* The token becomes a header line, so anything but visible ASCII would let
 * a file inject headers. */
static int read_token(const char *file, char *buf, size_t size, char *err, size_t err_size)
{
    FILE *f = fopen(file, "re");
    size_t len;

    if (f == NULL) {
        snprintf(err, err_size, "token file %s: %s", file, strerror(errno));
        return -1;
    }
    len = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[len] = '\0';
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        buf[--len] = '\0';
    if (len == 0 || len >= size - 1) {
        snprintf(err, err_size, "token file %s: %s", file, len ? "too large" : "empty");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (buf[i] <= 0x20 || buf[i] >= 0x7f) {
            snprintf(err, err_size, "token file %s: not one line of printable ASCII", file);
            return -1;
        }
    }
    return 0;
}

static int dial_one(const struct addrinfo *ai)
{
    struct timeval tv = {.tv_sec = STATUS_TIMEOUT_S};
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);

    if (fd < 0)
        return -1;
    /* Linux applies SO_SNDTIMEO to connect() as well. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        int saved = errno;

        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static const char *io_error(int e)
{
    if (e == EAGAIN || e == EWOULDBLOCK || e == EINPROGRESS)
        return "timed out";
    return strerror(e);
}

static int dial(const struct admin_url *u, char *err, size_t err_size)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int fd = -1, e = ECONNREFUSED;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);

    if (rc != 0) {
        snprintf(err, err_size, "cannot reach the admin API at %s: %s", u->text, gai_strerror(rc));
        return -1;
    }
    for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = dial_one(ai);
        if (fd < 0)
            e = errno;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, err_size, "cannot reach the admin API at %s: %s", u->text, io_error(e));
    return fd;
}

static int send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Finds a header's value in the head (NUL-terminated, CRLF lines). */
static const char *find_header(const char *head, const char *name, size_t *value_len)
{
    size_t n = strlen(name);

    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            const char *e = strstr(v, "\r\n");

            while (*v == ' ' || *v == '\t')
                v++;
            *value_len = e ? (size_t)(e - v) : strlen(v);
            return v;
        }
    }
    return NULL;
}

static int content_length(const char *head, long long *out)
{
    size_t len = 0;
    const char *v = find_header(head, "Content-Length", &len);
    long long n = 0;

    *out = -1;
    if (v == NULL)
        return 0;
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len == 0 || len > 12)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    *out = n;
    return 0;
}

static bool is_chunked(const char *head)
{
    size_t len = 0;
    const char *v = find_header(head, "Transfer-Encoding", &len);

    return v && len >= 7 && strncasecmp(v + len - 7, "chunked", 7) == 0;
}

/* Decodes a chunked body in place; the result is never longer. */
static int dechunk(char *body, size_t len, size_t *out_len)
{
    size_t in = 0, out = 0;

    for (;;) {
        size_t size = 0, digits = 0;

        while (in < len) {
            char c = body[in];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                break;
            if (++digits > 8)
                return -1;
            size = size * 16 + (size_t)d;
            in++;
        }
        if (digits == 0)
            return -1;
        while (in < len && body[in] != '\n') /* chunk extensions */
            in++;
        if (in++ >= len)
            return -1;
        if (size == 0)
            break;
        if (size > len - in || len - in - size < 2)
            return -1;
        memmove(body + out, body + in, size);
        out += size;
        in += size + 2;
    }
    *out_len = out;
    return 0;
}

/* Whether the answer read so far is complete, so the CLI need not wait
 * for the server to close. */
static bool answer_complete(const char *buf, size_t len)
{
    const char *head_end = strstr(buf, "\r\n\r\n");
    long long cl;

    if (head_end == NULL)
        return false;
    if (content_length(buf, &cl) < 0 || cl < 0 || is_chunked(buf))
        return false;
    return (size_t)(head_end + 4 - buf) + (size_t)cl <= len;
}

static int read_answer(int fd, const struct admin_url *u, struct answer *a, char *err,
                       size_t err_size)
{
    size_t len = 0;
    char *buf = malloc(STATUS_MAX_RESPONSE + 1);

    if (buf == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    for (;;) {
        ssize_t n = recv(fd, buf + len, STATUS_MAX_RESPONSE - len, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, err_size, "the admin API at %s: reading the answer: %s", u->text,
                     io_error(errno));
            goto fail;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (n == 0 || answer_complete(buf, len))
            break;
        if (len == STATUS_MAX_RESPONSE) {
            snprintf(err, err_size, "the admin API at %s: answer larger than %d bytes", u->text,
                     STATUS_MAX_RESPONSE);
            goto fail;
        }
    }
    a->raw = buf;
    a->raw_len = len;
    return 0;
fail:
    free(buf);
    return -1;
}

static int parse_answer(const struct admin_url *u, struct answer *a, char *err, size_t err_size)
{
    char *raw = a->raw;
    size_t len = a->raw_len;
    char *head_end = strstr(raw, "\r\n\r\n");
    long long cl;
    int status;

    if (head_end == NULL || strncmp(raw, "HTTP/1.", 7) != 0 || raw[8] != ' ' ||
        sscanf(raw + 9, "%3d", &status) != 1 || status < 100 || status > 599)
        goto bad;
    *head_end = '\0'; /* headers searched as one string */
    a->status = status;
    a->body = head_end + 4;
    a->body_len = len - (size_t)(a->body - raw);
    if (content_length(raw, &cl) < 0)
        goto bad;
    if (is_chunked(raw)) {
        if (dechunk(a->body, a->body_len, &a->body_len) < 0)
            goto bad;
    } else if (cl >= 0) {
        if ((size_t)cl > a->body_len)
            goto bad;
        a->body_len = (size_t)cl;
    }
    a->body[a->body_len] = '\0';
    return 0;
bad:
    snprintf(err, err_size, "the admin API at %s: malformed or truncated HTTP answer", u->text);
    return -1;
}

/* One request, one answer; err names the URL and what failed. */
static int admin_request(const struct admin_url *u, const char *method, const char *path,
                         const char *token, struct answer *a, char *err, size_t err_size)
{
    char req[STATUS_MAX_REQUEST];
    int len, fd, rc = -1;

    memset(a, 0, sizeof *a);
    len = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: sluice/%s\r\n"
                   "Accept: application/json\r\n%s%s%sContent-Length: 0\r\n"
                   "Connection: close\r\n\r\n",
                   method, path, u->bracketed ? "[" : "", u->host, u->bracketed ? "]" : "", u->port,
                   SLUICE_VERSION, token ? "Authorization: Bearer " : "", token ? token : "",
                   token ? "\r\n" : "");
    if (len < 0 || (size_t)len >= sizeof req) {
        snprintf(err, err_size, "request too large");
        goto out;
    }
    fd = dial(u, err, err_size);
    if (fd < 0)
        goto out;
    if (send_all(fd, req, (size_t)len) < 0) {
        snprintf(err, err_size, "the admin API at %s: sending the request: %s", u->text,
                 io_error(errno));
        close(fd);
        goto out;
    }
    rc = read_answer(fd, u, a, err, err_size);
    close(fd);
    if (rc == 0 && (rc = parse_answer(u, a, err, err_size)) < 0)
        answer_free(a);
out:
    explicit_bzero(req, sizeof req);
    return rc;
}

/* "401 missing or wrong bearer token": the first line of a text body, or
 * the "error" member of a JSON one. */
static void describe_failure(const struct admin_url *u, const struct answer *a, char *err,
                             size_t err_size)
{
    char snippet[STATUS_MAX_SNIPPET + 1];
    json_t *doc = json_loadb(a->body, a->body_len, 0, NULL);
    const char *msg = doc ? json_string_value(json_object_get(doc, "error")) : NULL;
    const char *hint = "";

    snprintf(snippet, sizeof snippet, "%s", msg ? msg : a->body);
    snippet[strcspn(snippet, "\r\n")] = '\0';
    if (a->status == 401)
        hint = " (give --token FILE or set " STATUS_TOKEN_ENV ")";
    snprintf(err, err_size, "the admin API at %s answered %d%s%s%s", u->text, a->status,
             snippet[0] ? ": " : "", snippet, hint);
    json_decref(doc);
}

static int parse_options(int argc, char **argv, bool allow_json, struct options *o)
{
    static const struct option longopts[] = {
        {"admin", required_argument, NULL, 'a'},
        {"token", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"healthz", no_argument, NULL, 'h'},
        {"readyz", no_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    int c;

    o->url = STATUS_DEFAULT_URL;
    o->token_file = getenv(STATUS_TOKEN_ENV);
    if (o->token_file && *o->token_file == '\0')
        o->token_file = NULL;
    o->json = false;
    o->probe = NULL;
    optind = 0; /* glibc: full re-initialisation, for callers that parse twice */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (c == 'a') {
            o->url = optarg;
        } else if (c == 't') {
            o->token_file = optarg;
        } else if (c == 'j' && allow_json) {
            o->json = true;
        } else if ((c == 'h' || c == 'r') && allow_json) {
            o->probe = c == 'h' ? "/healthz" : "/readyz";
        } else if (c == ':') {
            fprintf(stderr, "sluice %s: %s needs an argument\n", argv[0], argv[optind - 1]);
            return -1;
        } else {
            fprintf(stderr, "sluice %s: unknown option '%s'\n", argv[0], argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice %s: unexpected argument '%s'\n", argv[0], argv[optind]);
        return -1;
    }
    if (o->probe && o->json) {
        fprintf(stderr, "sluice %s: --json and --%s exclude each other\n", argv[0],
                o->probe + 1);
        return -1;
    }
    return 0;
}

/* Shared by both commands: options, URL, token, request. Returns 0 with
 * the answer, or the exit status after printing why. */
static int call_admin(int argc, char **argv, bool allow_json, const char *method, const char *path,
                      struct options *o, struct answer *a)
{
    char err[STATUS_MAX_ERROR];
    char token[STATUS_MAX_TOKEN + 2];
    struct admin_url u;
    int rc;

    if (parse_options(argc, argv, allow_json, o) < 0) {
        fprintf(stderr, "%s", allow_json ? cmd_status_help : cmd_reload_help);
        return EXIT_USAGE;
    }
    /* The probes need no token: a health check carries no secret. */
    if (o->probe) {
        path = o->probe;
        o->token_file = NULL;
    }
    if (parse_url(o->url, &u, err, sizeof err) < 0) {
        fprintf(stderr, "sluice %s: %s\n", argv[0], err);
        return EXIT_USAGE;
    }
    if (o->token_file && read_token(o->token_file, token, sizeof token, err, sizeof err) < 0) {
        fprintf(stderr, "sluice %s: %s\n", argv[0], err);
        explicit_bzero(token, sizeof token);
        return EXIT_RUNTIME;
    }
    rc = admin_request(&u, method, path, o->token_file ? token : NULL, a, err, sizeof err);
    explicit_bzero(token, sizeof token);
    if (rc < 0) {
        fprintf(stderr, "sluice %s: %s\n", argv[0], err);
        return EXIT_RUNTIME;
    }
    if (a->status != 200 && !(a->status == 422 && strcmp(path, "/reload") == 0)) {
        describe_failure(&u, a, err, sizeof err);
        fprintf(stderr, "sluice %s: %s\n", argv[0], err);
        answer_free(a);
        return EXIT_RUNTIME;
    }
    return 0;
}

static json_int_t get_int(json_t *obj, const char *a, const char *b, const char *c)
{
    json_t *v = json_object_get(obj, a);

    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

static const char *get_str(json_t *obj, const char *a, const char *b, const char *fallback)
{
    json_t *v = json_object_get(obj, a);
    const char *s;

    if (b)
        v = json_object_get(v, b);
    s = json_string_value(v);
    return s ? s : fallback;
}

/* Sum over entry points (http, connect, dns...) of one outcome. */
static json_int_t sum_outcome(json_t *status, const char *outcome)
{
    json_t *decisions = json_object_get(json_object_get(status, "counters"), "decisions");
    const char *kind;
    json_t *counts;
    json_int_t total = 0;

    json_object_foreach(decisions, kind, counts)
    {
        json_t *v = json_object_get(counts, outcome);

        if (json_is_integer(v))
            total += json_integer_value(v);
    }
    return total;
}

static void print_uptime(json_int_t s)
{
    if (s >= 86400)
        printf("%lldd %lldh %lldm %llds\n", s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    else if (s >= 3600)
        printf("%lldh %lldm %llds\n", s / 3600, s % 3600 / 60, s % 60);
    else if (s >= 60)
        printf("%lldm %llds\n", s / 60, s % 60);
    else
        printf("%llds\n", s);
}

static void print_policy(json_t *st)
{
    json_t *p = json_object_get(st, "policy");

    if (!json_is_object(p)) {
        printf("policy        none loaded\n");
        return;
    }
    printf("policy        %s: %lld rules, default %s, %s mode\n", get_str(p, "source", NULL, "?"),
           get_int(p, "rules", NULL, NULL), get_str(p, "default", NULL, "?"),
           get_str(p, "mode", NULL, "?"));
    printf("policy hash   %s\n", get_str(p, "hash", NULL, "?"));
    printf("loaded at     %s\n", get_str(p, "loaded_at", NULL, "unknown"));
}

static void print_kernel_drops(json_t *st)
{
    json_t *k = json_object_get(st, "kernel_drops");
    char *text;

    if (k == NULL || json_is_null(k)) {
        printf("kernel drops  not enforced by kernel\n");
        return;
    }
    text = json_dumps(k, JSON_COMPACT | JSON_ENCODE_ANY);
    printf("kernel drops  %s\n", text ? text : "?");
    free(text);
}

static int print_status(const char *url, const struct answer *a)
{
    json_error_t jerr;
    json_t *st = json_loadb(a->body, a->body_len, 0, &jerr);

    if (!json_is_object(st)) {
        fprintf(stderr, "sluice status: the admin API at %s answered with invalid JSON: %s\n", url,
                jerr.text);
        json_decref(st);
        return EXIT_RUNTIME;
    }
    printf("sluice %s (admin %s)\n", get_str(st, "version", NULL, "?"), url);
    printf("enforcement   %s\n", get_str(st, "enforcement_mode", NULL, "?"));
    print_policy(st);
    printf("uptime        ");
    print_uptime(get_int(st, "uptime_seconds", NULL, NULL));
    printf("decisions     %lld allowed, %lld denied, %lld would be denied (report mode)\n",
           sum_outcome(st, "allow"), sum_outcome(st, "deny"), sum_outcome(st, "would_deny"));
    printf("connections   %lld active, %lld total; %lld tunnels active\n",
           get_int(st, "counters", "connections", "active"),
           get_int(st, "counters", "connections", "total"),
           get_int(st, "counters", "tunnels", "active"));
    printf("requests      %lld\n", get_int(st, "counters", "requests", NULL));
    printf("reloads       %lld ok, %lld failed\n", get_int(st, "counters", "reloads", "ok"),
           get_int(st, "counters", "reloads", "failed"));
    print_kernel_drops(st);
    json_decref(st);
    return 0;
}

int cmd_status_main(int argc, char **argv)
{
    struct options o;
    struct answer a;
    int rc = call_admin(argc, argv, true, "GET", "/status", &o, &a);

    if (rc != 0)
        return rc;
    if (o.probe) {
        printf("%.*s\n", (int)strcspn(a.body, "\r\n"), a.body);
    } else if (o.json) {
        fwrite(a.body, 1, a.body_len, stdout);
        if (a.body_len == 0 || a.body[a.body_len - 1] != '\n')
            putchar('\n');
    } else {
        rc = print_status(o.url, &a);
    }
    answer_free(&a);
    return fflush(stdout) == 0 ? rc : EXIT_RUNTIME;
}

int cmd_reload_main(int argc, char **argv)
{
    struct options o;
    struct answer a;
    json_t *doc;
    int rc = call_admin(argc, argv, false, "POST", "/reload", &o, &a);

    if (rc != 0)
        return rc;
    doc = json_loadb(a.body, a.body_len, 0, NULL);
    if (a.status == 200 && get_str(doc, "hash", NULL, NULL)) {
        printf("reloaded: policy %s\n", get_str(doc, "hash", NULL, NULL));
    } else if (a.status == 422) {
        fprintf(stderr, "reload failed: %s\n", get_str(doc, "error", NULL, "(no reason given)"));
        rc = EXIT_RUNTIME;
    } else {
        fprintf(stderr, "sluice reload: the admin API at %s answered %d without a policy hash\n",
                o.url, a.status);
        rc = EXIT_RUNTIME;
    }
    json_decref(doc);
    answer_free(&a);
    return fflush(stdout) == 0 ? rc : EXIT_RUNTIME;
}

/* One request for the approvals commands (approvals.c), with this file's
 * client. 0 with *status and *body (malloc'd, NUL-terminated); otherwise
 * the exit status after saying why on stderr. */
int cmd_admin_request(const char *cmd, const char *url, const char *token_file,
                      const char *method, const char *path, int *status, char **body)
{
    char err[STATUS_MAX_ERROR];
    char token[STATUS_MAX_TOKEN + 2];
    struct admin_url u;
    struct answer a;
    int rc;

    if (parse_url(url, &u, err, sizeof err) < 0) {
        fprintf(stderr, "sluice %s: %s\n", cmd, err);
        return EXIT_USAGE;
    }
    if (token_file && read_token(token_file, token, sizeof token, err, sizeof err) < 0) {
        fprintf(stderr, "sluice %s: %s\n", cmd, err);
        explicit_bzero(token, sizeof token);
        return EXIT_RUNTIME;
    }
    rc = admin_request(&u, method, path, token_file ? token : NULL, &a, err, sizeof err);
    explicit_bzero(token, sizeof token);
    if (rc < 0) {
        fprintf(stderr, "sluice %s: %s\n", cmd, err);
        return EXIT_RUNTIME;
    }
    *status = a.status;
    *body = strdup(a.body ? a.body : "");
    answer_free(&a);
    return *body ? 0 : EXIT_RUNTIME;
}
