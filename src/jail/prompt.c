/* prompt: the terminal side of `sluice run --prompt`.
 *
 * A small process of its own, so the proxy (off the terminal, in its own
 * session) never touches the tty and sluice run's supervision loop stays a
 * sigwaitinfo loop. It reads the proxy's questions (one JSON line each) from
 * the approver socket, asks one at a time on /dev/tty, and writes one JSON
 * line per answer. The terminal is read only while a question is open, so
 * an idle prompter takes no keystrokes from the command; if the command
 * left the terminal without line editing or echo, both are turned on for
 * the question and the old mode is put back after it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>

#include "jail/jail.h"

#define QUEUE_MAX 64
#define LINE_MAX_BYTES 4096
#define ID_SIZE 16
#define WHAT_SIZE 600

struct question {
    char id[ID_SIZE];
    char what[WHAT_SIZE]; /* "example.com:443 (CONNECT from the command)" */
};

struct prompter {
    int sock;
    int tty; /* -1: no terminal */
    struct question queue[QUEUE_MAX];
    size_t n_queued;
    bool asking; /* queue[0] is on the terminal */
    bool restore_mode;
    struct termios saved;
    char in[LINE_MAX_BYTES];
    size_t in_len;
};

static void tty_print(struct prompter *p, const char *text)
{
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = write(p->tty, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        text += n;
        len -= (size_t)n;
    }
}

static void send_answer(struct prompter *p, const char *id, const char *decision,
                        const char *scope, const char *reason)
{
    json_t *o = json_pack("{ss ss ss}", "id", id, "decision", decision, "scope", scope);
    if (reason)
        json_object_set_new(o, "reason", json_string(reason));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    text[len] = '\n';
    if (send(p->sock, text, len + 1, MSG_NOSIGNAL) < 0) {
        /* the proxy is gone; the loop sees EOF next */
    }
    free(text);
}

static void describe(json_t *q, char *out, size_t size)
{
    const char *host = json_string_value(json_object_get(q, "host"));
    const char *kind = json_string_value(json_object_get(q, "kind"));
    const char *method = json_string_value(json_object_get(q, "method"));
    const char *path = json_string_value(json_object_get(q, "path"));
    long long port = (long long)json_integer_value(json_object_get(q, "port"));
    const char *how = "HTTP";
    if (kind && strcmp(kind, "connect") == 0)
        how = "CONNECT";
    else if (kind && strcmp(kind, "transparent") == 0)
        how = "redirected";
    char req[300] = "";
    if (method && path)
        snprintf(req, sizeof req, "%s %s, ", method, path);
    snprintf(out, size, "%s:%lld (%s%s from the command)", host ? host : "?", port, req, how);
    /* Names come from the workload: no terminal escapes. */
    for (char *c = out; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

/* Line editing and echo for the answer, whatever the command set. */
static void tty_cooked(struct prompter *p)
{
    struct termios t;
    p->restore_mode = false;
    if (tcgetattr(p->tty, &t) < 0)
        return;
    if ((t.c_lflag & (ICANON | ECHO)) == (ICANON | ECHO))
        return;
    p->saved = t;
    t.c_lflag |= ICANON | ECHO;
    if (tcsetattr(p->tty, TCSADRAIN, &t) == 0)
        p->restore_mode = true;
}

static void tty_restore(struct prompter *p)
{
    if (p->restore_mode)
        tcsetattr(p->tty, TCSADRAIN, &p->saved);
    p->restore_mode = false;
}

static void print_question(struct prompter *p)
{
    char text[WHAT_SIZE + 80];
    snprintf(text, sizeof text, "\nsluice: allow %s? [o]nce, [r]un, [d]eny: ", p->queue[0].what);
    tty_print(p, text);
}

static void ask_next(struct prompter *p)
{
    if (p->asking || p->n_queued == 0)
        return;
    tty_cooked(p);
    print_question(p);
    p->asking = true;
}

static void drop(struct prompter *p, size_t i)
{
    memmove(&p->queue[i], &p->queue[i + 1], (p->n_queued - i - 1) * sizeof p->queue[0]);
    p->n_queued--;
}

static void finish_current(struct prompter *p)
{
    tty_restore(p);
    p->asking = false;
    drop(p, 0);
    ask_next(p);
}

static void on_proxy_line(struct prompter *p, const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    const char *type = json_string_value(json_object_get(o, "type"));
    const char *id = json_string_value(json_object_get(o, "id"));
    if (type == NULL || id == NULL || strlen(id) >= ID_SIZE) {
        json_decref(o);
        return;
    }
    if (strcmp(type, "question") == 0) {
        if (p->tty < 0 || p->n_queued == QUEUE_MAX) {
            send_answer(p, id, "deny", "once",
                        p->tty < 0 ? "no terminal to ask on" : "too many questions open");
        } else {
            struct question *q = &p->queue[p->n_queued++];
            snprintf(q->id, sizeof q->id, "%s", id);
            describe(o, q->what, sizeof q->what);
            ask_next(p);
        }
    } else if (strcmp(type, "closed") == 0) {
        /* Answered elsewhere (admin API), expired, or every client left. */
        for (size_t i = 0; i < p->n_queued; i++) {
            if (strcmp(p->queue[i].id, id) != 0)
                continue;
            if (i == 0 && p->asking) {
                const char *reason = json_string_value(json_object_get(o, "reason"));
                char text[200];
                snprintf(text, sizeof text, "\nsluice: no longer waiting (%s)\n",
                         reason ? reason : "closed");
                tty_print(p, text);
                finish_current(p);
            } else {
                drop(p, i);
            }
            break;
        }
    }
    json_decref(o);
}

static void on_tty_line(struct prompter *p, const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    const char *decision = NULL, *scope = "once";
    switch (*line) {
    case 'o': case 'O': case 'y': case 'Y': decision = "allow"; break;
    case 'r': case 'R': decision = "allow"; scope = "run"; break;
    case 'd': case 'D': case 'n': case 'N': decision = "deny"; scope = "run"; break;
    default: break;
    }
    if (decision == NULL) {
        /* Asked again as is: the mode saved when the question opened is
         * the command's, and is what goes back afterwards. */
        tty_print(p, "sluice: answer o (allow once), r (allow for this run) or d (deny)");
        print_question(p);
        return;
    }
    send_answer(p, p->queue[0].id, decision, scope, NULL);
    finish_current(p);
}

static void read_tty(struct prompter *p)
{
    char buf[256];
    ssize_t n = read(p->tty, buf, sizeof buf - 1);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        /* ^D or the terminal went away: this and every later question is
         * denied. */
        send_answer(p, p->queue[0].id, "deny", "once", "the terminal closed");
        tty_restore(p);
        close(p->tty);
        p->tty = -1;
        p->asking = false;
        drop(p, 0);
        while (p->n_queued > 0) {
            send_answer(p, p->queue[0].id, "deny", "once", "no terminal to ask on");
            drop(p, 0);
        }
        return;
    }
    buf[n] = '\0';
    on_tty_line(p, buf);
}

static int read_sock(struct prompter *p)
{
    ssize_t n = recv(p->sock, p->in + p->in_len, sizeof p->in - p->in_len, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0)
        return -1; /* the proxy is gone: so is the run */
    p->in_len += (size_t)n;
    char *start = p->in, *nl;
    while ((nl = memchr(start, '\n', p->in_len - (size_t)(start - p->in))) != NULL) {
        on_proxy_line(p, start, (size_t)(nl - start));
        start = nl + 1;
    }
    p->in_len -= (size_t)(start - p->in);
    memmove(p->in, start, p->in_len);
    if (p->in_len == sizeof p->in)
        p->in_len = 0; /* an over-long line: dropped */
    return 0;
}

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
    stopping = 1;
}

static void prompter_main(int sock)
{
    static struct prompter p;
    memset(&p, 0, sizeof p);
    p.sock = sock;
    /* ^C and ^Z on the terminal are for the command. */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGTSTP, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    /* SIGTERM (also sent when sluice run dies) ends the loop, so the
     * terminal mode is put back. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    p.tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (p.tty < 0)
        fprintf(stderr, "sluice run: --prompt: no terminal to ask on; every prompt is "
                        "answered deny\n");
    while (!stopping) {
        struct pollfd fds[2] = {{.fd = sock, .events = POLLIN},
                                {.fd = p.asking ? p.tty : -1, .events = POLLIN}};
        if (poll(fds, 2, 500) < 0) { /* a tick, so a SIGTERM between checks is seen */
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR))
            read_tty(&p);
        if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) && read_sock(&p) < 0)
            break;
    }
    if (p.tty >= 0) {
        /* Even from a background job (sluice run ... &): put the mode back
         * rather than stop on SIGTTOU with sluice run waiting for us. */
        signal(SIGTTOU, SIG_IGN);
        tty_restore(&p);
        if (p.asking)
            tty_print(&p, "\n");
    }
    _exit(0);
}

pid_t jail_prompter_start(int sock, int proxy_end)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Never outlive sluice run. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(0);
    /* Only the proxy may hold the other end, so its exit is our EOF. */
    close(proxy_end);
    prompter_main(sock);
    return -1;
}
