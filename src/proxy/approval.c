/* approval: held requests and the operator's answers (see approval.h).
 *
 * Lifetimes: a waiter links one parked connection to its question. The
 * answer may come on any thread; it never touches the connection, it only
 * posts the waiter to the owning worker's loop (event_base_once is safe
 * across threads once libevent's locking is on). From then on the waiter
 * belongs to that callback, which frees it; a connection closing in
 * between just clears the waiter's pointer to it. */
#include "proxy/approval.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "policy/policy.h"
#include "proxy/conn.h"

#define REMEMBER_MAX 1024
#define ANSWERED_MAX 64        /* recent ids, for "already answered" */
#define QUESTIONS_MAX 1024     /* open at once; beyond that, deny */
#define APPROVER_LINE_MAX 4096 /* one answer line from the approver socket */
#define KIND_MAX 16

struct key {
    /* Per client address: an answer covers what the operator was shown,
     * never another client's request (with "clients", another policy). */
    char client[INET6_ADDRSTRLEN];
    char host[HOST_TEXT_SIZE];
    uint16_t port;
    /* Only when the deciding rule constrains methods or paths: then each
     * such request is its own question. */
    char method[CONN_METHOD_MAX];
    char path[CONN_LOG_PATH_MAX];
};

struct question;

struct approval_waiter {
    struct question *q; /* NULL once answered */
    struct conn *c;     /* NULL once the connection went away */
    struct event_base *base;
    bool posted; /* handed to the worker's loop: the callback frees it */
    bool allow;
    char reason[APPROVAL_REASON_MAX];
    struct approval_waiter *next;
};

struct question {
    char id[APPROVAL_ID_LEN + 1];
    struct key key;
    char kind[KIND_MAX];
    char client[INET6_ADDRSTRLEN];
    time_t created;
    uint64_t deadline_us;
    size_t n_waiters;
    struct approval_waiter *waiters;
    struct question *next;
};

struct remembered {
    struct key key;
    bool allow;
    char reason[APPROVAL_REASON_MAX];
};

struct answered {
    char id[APPROVAL_ID_LEN + 1];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct question *questions;
static size_t n_questions;
static struct remembered remembered[REMEMBER_MAX];
static size_t n_remembered, remember_next;
static struct answered answered[ANSWERED_MAX];
static size_t answered_next;
static int timeout_s = APPROVAL_DEFAULT_TIMEOUT_S;
static bool admin_can_answer;
static int approver_fd = -1; /* written under lock, read on the admin loop */

/* The admin loop's side of the approver socket. */
static struct event *approver_ev;
static char approver_buf[APPROVER_LINE_MAX];
static size_t approver_len;

/* ---- pure helpers ---------------------------------------------------------- */

bool approval_id_valid(const char *id)
{
    if (id == NULL || strlen(id) != APPROVAL_ID_LEN)
        return false;
    for (size_t i = 0; i < APPROVAL_ID_LEN; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

void approval_reason_text(bool allow, bool for_run, enum approval_via via, char *out, size_t size)
{
    const char *who = via == APPROVAL_VIA_ADMIN ? "by operator via admin API" : "on the terminal";
    if (!allow)
        snprintf(out, size, "denied %s", who);
    else
        snprintf(out, size, "approved %s%s", for_run ? "for this run " : "", who);
}

int approval_parse_answer(const char *json, size_t len, bool *allow, bool *for_run, char *err,
                          size_t err_size)
{
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, 0, &jerr);
    int rc = -1;
    if (!json_is_object(doc)) {
        snprintf(err, err_size,
                 "expected a JSON object {\"decision\": \"allow\"|\"deny\", \"scope\": "
                 "\"once\"|\"run\"}%s%s",
                 doc ? "" : ": ", doc ? "" : jerr.text);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v)
    {
        if (strcmp(key, "decision") != 0 && strcmp(key, "scope") != 0) {
            snprintf(err, err_size, "unknown member \"%s\" (decision, scope)", key);
            goto out;
        }
    }
    const char *d = json_string_value(json_object_get(doc, "decision"));
    json_t *sv = json_object_get(doc, "scope");
    const char *s = sv ? json_string_value(sv) : "once";
    if (d == NULL || (strcmp(d, "allow") != 0 && strcmp(d, "deny") != 0)) {
        snprintf(err, err_size, "\"decision\" must be \"allow\" or \"deny\"");
        goto out;
    }
    if (s == NULL || (strcmp(s, "once") != 0 && strcmp(s, "run") != 0)) {
        snprintf(err, err_size, "\"scope\" must be \"once\" or \"run\"");
        goto out;
    }
    *allow = strcmp(d, "allow") == 0;
    *for_run = strcmp(s, "run") == 0;
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

/* ---- the registry (callers hold lock) ----------------------------------- */

static bool key_equal(const struct key *a, const struct key *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0 &&
           strcmp(a->client, b->client) == 0 && strcmp(a->method, b->method) == 0 &&
           strcmp(a->path, b->path) == 0;
}

static void key_of(const struct conn *c, struct key *k)
{
    memset(k, 0, sizeof *k);
    snprintf(k->client, sizeof k->client, "%s", c->client_ip);
    snprintf(k->host, sizeof k->host, "%s", c->dest.host.text);
    k->port = c->dest.port;
    if (c->policy && c->decision.rule >= 0 &&
        policy_rule_constrained(c->policy, (size_t)c->decision.rule)) {
        snprintf(k->method, sizeof k->method, "%s", c->method);
        snprintf(k->path, sizeof k->path, "%s", c->path);
    }
}

static const char *kind_of(const struct conn *c)
{
    if (c->intercepted)
        return "tls";
    if (c->transparent)
        return "transparent";
    return c->is_connect ? "connect" : "http";
}

static struct remembered *remembered_find(const struct key *k)
{
    for (size_t i = 0; i < n_remembered; i++)
        if (key_equal(&remembered[i].key, k))
            return &remembered[i];
    return NULL;
}

static void remember(const struct key *k, bool allow, const char *reason)
{
    struct remembered *r = remembered_find(k);
    if (r == NULL) {
        /* Full: the oldest answer goes. */
        r = &remembered[remember_next];
        remember_next = (remember_next + 1) % REMEMBER_MAX;
        if (n_remembered < REMEMBER_MAX)
            n_remembered++;
    }
    r->key = *k;
    r->allow = allow;
    snprintf(r->reason, sizeof r->reason, "%s", reason);
}

static struct question *question_by_id(const char *id)
{
    for (struct question *q = questions; q; q = q->next)
        if (strcmp(q->id, id) == 0)
            return q;
    return NULL;
}

static bool was_answered(const char *id)
{
    for (size_t i = 0; i < ANSWERED_MAX; i++)
        if (strcmp(answered[i].id, id) == 0)
            return true;
    return false;
}

static void new_id(char out[APPROVAL_ID_LEN + 1])
{
    for (;;) {
        uint32_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
            /* Never happens on Linux for 4 bytes; uniqueness still holds. */
            static uint32_t fallback;
            r = (uint32_t)time(NULL) ^ ++fallback * 2654435761u;
        }
        snprintf(out, APPROVAL_ID_LEN + 1, "%08x", r);
        if (question_by_id(out) == NULL && !was_answered(out))
            return;
    }
}

/* One JSON line to the approver; never blocks a worker (a stuck approver
 * just misses lines, and the question still times out). */
static void approver_send(json_t *doc)
{
    if (approver_fd < 0) {
        json_decref(doc);
        return;
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    text[len] = '\n';
    if (send(approver_fd, text, len + 1, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)(len + 1))
        log_message("warning", "prompt: the approver socket did not take a line", strerror(errno));
    free(text);
}

static json_t *question_json(const struct question *q)
{
    char created[32];
    struct tm tm;
    gmtime_r(&q->created, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    uint64_t now = conn_now_us();
    json_int_t left = q->deadline_us > now ? (json_int_t)((q->deadline_us - now) / 1000000u) : 0;
    json_t *o = json_pack("{ss ss si ss ss ss sI sI}", "id", q->id, "host", q->key.host, "port",
                          (int)q->key.port, "kind", q->kind, "client", q->client, "created",
                          created, "waiting", (json_int_t)q->n_waiters, "expires_in", left);
    if (o && q->key.method[0]) {
        json_object_set_new(o, "method", json_string(q->key.method));
        json_object_set_new(o, "path", json_string(q->key.path));
    }
    return o;
}

static void question_unlink(struct question *q)
{
    for (struct question **p = &questions; *p; p = &(*p)->next)
        if (*p == q) {
            *p = q->next;
            n_questions--;
            return;
        }
}

static void resume_posted(evutil_socket_t fd, short what, void *arg);

/* Every waiter resumes with the answer on its own worker; the question
 * ends. */
static void answer_locked(struct question *q, bool allow, const char *reason)
{
    for (struct approval_waiter *w = q->waiters, *next; w; w = next) {
        next = w->next;
        w->q = NULL;
        w->next = NULL;
        w->allow = allow;
        snprintf(w->reason, sizeof w->reason, "%s", reason);
        w->posted = event_base_once(w->base, -1, EV_TIMEOUT, resume_posted, w, NULL) == 0;
        /* Not posted (out of memory): the connection's timer resumes it. */
    }
    q->waiters = NULL;
    question_unlink(q);
    snprintf(answered[answered_next].id, sizeof answered[answered_next].id, "%s", q->id);
    answered_next = (answered_next + 1) % ANSWERED_MAX;
    approver_send(json_pack("{ss ss ss ss}", "type", "closed", "id", q->id, "decision",
                            allow ? "allow" : "deny", "reason", reason));
    free(q);
}

/* ---- configuration --------------------------------------------------------- */

void approval_configure(int seconds, bool admin_api)
{
    pthread_mutex_lock(&lock);
    timeout_s = seconds > 0 ? seconds : APPROVAL_DEFAULT_TIMEOUT_S;
    admin_can_answer = admin_api;
    pthread_mutex_unlock(&lock);
}

void approval_forget(void)
{
    pthread_mutex_lock(&lock);
    n_remembered = 0;
    remember_next = 0;
    pthread_mutex_unlock(&lock);
}

/* ---- worker side ------------------------------------------------------------ */

static void arm_deadline(struct conn *c, uint64_t deadline_us)
{
    uint64_t now = conn_now_us();
    uint64_t left = deadline_us > now ? deadline_us - now : 0;
    struct timeval tv = {(time_t)(left / 1000000u), (suseconds_t)(left % 1000000u)};
    evtimer_add(c->timer, &tv);
}

static void settle(struct conn *c, bool allow, const char *reason)
{
    c->decision.verdict = allow ? VERDICT_ALLOW : VERDICT_DENY;
    snprintf(c->approval_reason, sizeof c->approval_reason, "%s", reason);
}

bool approval_wait(struct conn *c)
{
    if (c->approval_answer != APPROVAL_ANSWER_NONE) {
        /* Resumed: the answer is for this very request. */
        c->decision.verdict =
            c->approval_answer == APPROVAL_ANSWER_ALLOW ? VERDICT_ALLOW : VERDICT_DENY;
        c->approval_answer = APPROVAL_ANSWER_NONE;
        return false;
    }
    struct key k;
    key_of(c, &k);
    pthread_mutex_lock(&lock);
    const struct remembered *r = remembered_find(&k);
    if (r) {
        settle(c, r->allow, r->reason);
        pthread_mutex_unlock(&lock);
        return false;
    }
    if (!admin_can_answer && approver_fd < 0) {
        pthread_mutex_unlock(&lock);
        return false; /* nobody could answer: the caller denies at once */
    }
    struct question *q = NULL;
    for (q = questions; q; q = q->next)
        if (key_equal(&q->key, &k))
            break;
    struct approval_waiter *w = calloc(1, sizeof *w);
    if (q == NULL && w != NULL && n_questions < QUESTIONS_MAX) {
        q = calloc(1, sizeof *q);
        if (q) {
            new_id(q->id);
            q->key = k;
            snprintf(q->kind, sizeof q->kind, "%s", kind_of(c));
            snprintf(q->client, sizeof q->client, "%s", c->client_ip);
            q->created = time(NULL);
            q->deadline_us = conn_now_us() + (uint64_t)timeout_s * 1000000u;
            q->next = questions;
            questions = q;
            n_questions++;
            json_t *line = question_json(q);
            json_object_set_new(line, "type", json_string("question"));
            approver_send(line);
            log_message("info", "prompt: waiting for an operator", q->id);
        }
    }
    if (q == NULL || w == NULL) {
        pthread_mutex_unlock(&lock);
        free(w);
        settle(c, false, "too many questions waiting for an operator");
        return false;
    }
    w->q = q;
    w->c = c;
    w->base = c->w->base;
    w->next = q->waiters;
    q->waiters = w;
    q->n_waiters++;
    uint64_t deadline = q->deadline_us;
    pthread_mutex_unlock(&lock);

    /* Parked: the request is read again on resume, with whatever policy is
     * live then. Reading stays on so a client that gives up is noticed;
     * what it sends meanwhile waits in the buffer (bounded). */
    c->approval = w;
    policy_unref(c->policy);
    c->policy = NULL;
    conn_set_state(c, CONN_WAITING);
    bufferevent_enable(c->client, EV_READ);
    arm_deadline(c, deadline);
    return true;
}

static void resume(struct conn *c, bool allow, const char *reason)
{
    c->approval = NULL;
    c->approval_answer = allow ? APPROVAL_ANSWER_ALLOW : APPROVAL_ANSWER_DENY;
    snprintf(c->approval_reason, sizeof c->approval_reason, "%s", reason);
    conn_resume_request(c);
}

static void resume_posted(evutil_socket_t fd, short what, void *arg)
{
    struct approval_waiter *w = arg;
    pthread_mutex_lock(&lock);
    struct conn *c = w->c;
    pthread_mutex_unlock(&lock);
    if (c)
        resume(c, w->allow, w->reason);
    free(w);
}

void approval_conn_closed(struct conn *c)
{
    struct approval_waiter *w = c->approval;
    if (w == NULL)
        return;
    c->approval = NULL;
    pthread_mutex_lock(&lock);
    if (w->posted) {
        w->c = NULL; /* the posted callback frees it */
        pthread_mutex_unlock(&lock);
        return;
    }
    struct question *q = w->q;
    if (q) {
        for (struct approval_waiter **p = &q->waiters; *p; p = &(*p)->next)
            if (*p == w) {
                *p = w->next;
                q->n_waiters--;
                break;
            }
        /* Nobody waits any more: the question is withdrawn. */
        if (q->n_waiters == 0) {
            question_unlink(q);
            approver_send(json_pack("{ss ss ss}", "type", "closed", "id", q->id, "reason",
                                    "every waiting client went away"));
            free(q);
        }
    }
    pthread_mutex_unlock(&lock);
    free(w);
}

void approval_timer(struct conn *c)
{
    struct approval_waiter *w = c->approval;
    if (w == NULL)
        return;
    pthread_mutex_lock(&lock);
    if (w->posted) {
        pthread_mutex_unlock(&lock);
        return; /* the answer is on its way */
    }
    if (w->q == NULL) {
        /* Answered, but posting failed: resume here. */
        bool allow = w->allow;
        char reason[APPROVAL_REASON_MAX];
        snprintf(reason, sizeof reason, "%s", w->reason);
        pthread_mutex_unlock(&lock);
        free(w);
        resume(c, allow, reason);
        return;
    }
    struct question *q = w->q;
    if (conn_now_us() + 1000 < q->deadline_us) {
        uint64_t deadline = q->deadline_us;
        pthread_mutex_unlock(&lock);
        arm_deadline(c, deadline);
        return;
    }
    char reason[APPROVAL_REASON_MAX];
    snprintf(reason, sizeof reason, "no answer within %d s", timeout_s);
    log_message("info", "prompt: no answer in time; denied", q->id);
    answer_locked(q, false, reason);
    pthread_mutex_unlock(&lock);
}

/* ---- admin side ------------------------------------------------------------- */

char *approval_list_json(void)
{
    json_t *list = json_array();
    pthread_mutex_lock(&lock);
    for (const struct question *q = questions; q; q = q->next)
        json_array_append_new(list, question_json(q));
    pthread_mutex_unlock(&lock);
    char *text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    return text;
}

enum approval_result approval_answer(const char *id, bool allow, bool for_run,
                                     enum approval_via via, const char *note)
{
    char reason[APPROVAL_REASON_MAX];
    if (note && *note)
        snprintf(reason, sizeof reason, "%s", note);
    else
        approval_reason_text(allow, for_run, via, reason, sizeof reason);
    pthread_mutex_lock(&lock);
    struct question *q = approval_id_valid(id) ? question_by_id(id) : NULL;
    if (q == NULL) {
        bool seen = approval_id_valid(id) && was_answered(id);
        pthread_mutex_unlock(&lock);
        return seen ? APPROVAL_ANSWERED : APPROVAL_UNKNOWN;
    }
    /* A denial is remembered whatever its scope: a client retrying in a
     * loop must not ask the operator again and again. */
    if (for_run || !allow)
        remember(&q->key, allow, reason);
    char detail[APPROVAL_REASON_MAX + 32];
    snprintf(detail, sizeof detail, "%s: %s", q->id, reason);
    answer_locked(q, allow, reason);
    pthread_mutex_unlock(&lock);
    log_message("info", "prompt answered", detail);
    return APPROVAL_OK;
}

/* ---- the approver socket ---------------------------------------------------- */

/* Strips control characters from an approver's note: it ends up in logs
 * and in answers to clients. */
static void clean_note(const char *in, char *out, size_t size)
{
    size_t n = 0;
    for (; in && *in && n + 1 < size; in++)
        if ((unsigned char)*in >= 0x20 && *in != 0x7f)
            out[n++] = *in;
    out[n] = '\0';
}

static void approver_line(const char *line, size_t len)
{
    json_t *doc = json_loadb(line, len, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *d = json_string_value(json_object_get(doc, "decision"));
    const char *s = json_string_value(json_object_get(doc, "scope"));
    const char *note = json_string_value(json_object_get(doc, "reason"));
    if (id == NULL || d == NULL || (strcmp(d, "allow") != 0 && strcmp(d, "deny") != 0)) {
        log_message("warning", "prompt: malformed line from the approver", NULL);
        json_decref(doc);
        return;
    }
    char clean[APPROVAL_REASON_MAX];
    clean_note(note, clean, sizeof clean);
    approval_answer(id, strcmp(d, "allow") == 0, s && strcmp(s, "run") == 0,
                    APPROVAL_VIA_TERMINAL, clean);
    json_decref(doc);
}

/* The approver is gone: without the admin API nobody can answer any more,
 * so what waits is denied now rather than at the timeout. */
static void approver_gone(void)
{
    event_free(approver_ev);
    approver_ev = NULL;
    pthread_mutex_lock(&lock);
    close(approver_fd);
    approver_fd = -1;
    if (!admin_can_answer)
        while (questions)
            answer_locked(questions, false, "the approver went away");
    pthread_mutex_unlock(&lock);
    log_message("warning", "prompt: the approver closed its socket", NULL);
}

static void on_approver(evutil_socket_t fd, short what, void *arg)
{
    ssize_t n = recv(fd, approver_buf + approver_len, sizeof approver_buf - approver_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        approver_gone();
        return;
    }
    approver_len += (size_t)n;
    char *start = approver_buf;
    char *nl;
    while ((nl = memchr(start, '\n', approver_len - (size_t)(start - approver_buf))) != NULL) {
        approver_line(start, (size_t)(nl - start));
        start = nl + 1;
    }
    approver_len -= (size_t)(start - approver_buf);
    memmove(approver_buf, start, approver_len);
    if (approver_len == sizeof approver_buf) {
        log_message("warning", "prompt: over-long line from the approver; dropped", NULL);
        approver_len = 0;
    }
}

int approval_attach_fd(struct event_base *base, int fd, char *err, size_t err_size)
{
    int type = 0;
    socklen_t len = sizeof type;
    errno = 0;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
        snprintf(err, err_size, "--approver-fd %d: not a stream socket%s%s", fd,
                 errno ? ": " : "", errno ? strerror(errno) : "");
        return -1;
    }
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    approver_ev = event_new(base, fd, EV_READ | EV_PERSIST, on_approver, NULL);
    if (approver_ev == NULL || event_add(approver_ev, NULL) < 0) {
        snprintf(err, err_size, "--approver-fd: cannot watch the socket");
        return -1;
    }
    pthread_mutex_lock(&lock);
    approver_fd = fd;
    pthread_mutex_unlock(&lock);
    return 0;
}

void approval_shutdown(void)
{
    if (approver_ev) {
        event_free(approver_ev);
        approver_ev = NULL;
    }
    pthread_mutex_lock(&lock);
    if (approver_fd >= 0)
        close(approver_fd);
    approver_fd = -1;
    /* The workers are gone, and their connections with them: what is left
     * has no waiters. */
    while (questions) {
        struct question *q = questions;
        questions = q->next;
        free(q);
    }
    n_questions = 0;
    pthread_mutex_unlock(&lock);
}
