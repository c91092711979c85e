/* sluice run: run one command jailed behind the policy.
 *
 * sluice starts its own proxy and DNS filter (`sluice proxy`, a child
 * process) and runs CMD in new network, mount and PID namespaces where they
 * are all it can reach. Root mode links the jail to sluice with a veth pair
 * (198.18.0.1 - 198.18.0.2/30, no default route). Rootless mode adds a user
 * namespace whose network has only loopback: the jail's child makes the
 * listeners on its 127.0.0.1 and hands them to sluice, whose proxy serves
 * them from sluice's own namespace (jail/rootless.h). The jail's PID 1 is a
 * small init (jail/pidns.h); CMD gets the proxy variables, a CA bundle with
 * the run's CA, and a resolv.conf naming the filter. See docs/RUN.md. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "jail/jail.h"
#include "jail/janitor.h"
#include "jail/mounts.h"
#include "jail/pidns.h"
#include "jail/rootless.h"
#include "jail/user.h"
#include "policy/policy.h"
#include "tls/ca.h"

#define EXIT_SETUP 125
#define EXIT_NOEXEC 126
#define EXIT_NOTFOUND 127

#define ERR_SIZE 512
#define PATH_SIZE 512
#define MAX_RULE_ARGS 256
#define LINE_SIZE 4096
#define SUMMARY_MAX 256
#define RUN_REASON_SIZE 120
#define RUN_HOST_SIZE 300
#define READY_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 5000
#define SYSTEM_ROOTS "/etc/ssl/certs/ca-certificates.crt"
#define FD_ARG_SIZE 32
#define READY_REPLY_SIZE 64

const char cmd_run_help[] =
    "usage: sluice run [options] [--] CMD [ARG...]\n"
    "\n"
    "Runs CMD in new network, mount and PID namespaces (and a user namespace in\n"
    "rootless mode) whose only way out is sluice's proxy and DNS filter, with the proxy\n"
    "variables and a CA bundle set. Exits with CMD's status; 125 when sluice could not\n"
    "set up, 126 when CMD is not executable, 127 when not found. Whatever CMD leaves\n"
    "running ends with it.\n"
    "\n"
    "  --mode MODE         root: a veth link on 198.18.0.0/30 (needs root and CAP_NET_ADMIN;\n"
    "                      under sudo CMD runs as the caller); rootless: a user namespace\n"
    "                      with loopback only, nothing configured on the host; auto\n"
    "                      (default): root where possible, else rootless\n"
    "  --keep-root         root mode under sudo: run CMD as root, not as SUDO_UID/SUDO_GID\n"
    "  --policy FILE       start from this policy (default: deny everything)\n"
    "  --allow HOST[:PORT] allow HOST (on PORT; default 443 and 80), after the policy's rules\n"
    "  --deny HOST         deny HOST, before the policy's rules\n"
    "  --no-intercept      tunnel TLS without interception (no per-run CA)\n"
    "  --ca DIR            intercept with this CA instead of a per-run one\n"
    "  --upstream-ca FILE  verify intercepted upstreams against FILE, not the system roots\n"
    "  --log FILE          keep the proxy's JSON lines in FILE\n"
    "  --prompt            ask on the terminal about what the policy does not decide\n"
    "                      (allow once, for the run, or deny; no terminal: deny)\n"
    "  --quiet             no summary of destinations at exit\n";

struct run_options {
    const char *policy_file;
    const char *allow[MAX_RULE_ARGS];
    size_t n_allow;
    const char *deny[MAX_RULE_ARGS];
    size_t n_deny;
    bool no_intercept;
    bool quiet;
    bool prompt;
    bool keep_root;
    enum jail_mode mode;
    const char *ca_dir;
    const char *upstream_ca;
    const char *log_file;
    char **cmd;
};

struct run_state {
    char dir[PATH_SIZE];
    char policy[PATH_SIZE];
    char token[PATH_SIZE];
    char resolv[PATH_SIZE];
    char bundle[PATH_SIZE];
    char ca_dir[PATH_SIZE];
    char log[PATH_SIZE];
    char proxy_err[PATH_SIZE];
    char ifname[JAIL_IFNAME_SIZE];
    bool own_ca;
    bool own_log;
    bool dns;
    pid_t child;
    pid_t proxy;
    bool veth;
    int netns_fd;    /* holds the child's namespace, to find what CMD left in it */
    off_t log_start; /* --log may hold earlier runs: the summary starts here */
    pid_t prompter;  /* --prompt: asks on the terminal (jail/prompt.c) */
    int approver_fd; /* --prompt: the proxy's end of the approver socket, or -1 */
    bool rootless;
    uid_t uid; /* the caller's, mapped to itself in rootless mode */
    gid_t gid;
    int loop_fds[JAIL_LOOP_FDS]; /* rootless: the jail's listeners, until the proxy has them */
    int admin_fd;                /* rootless: the admin listener, in sluice's namespace */
    int admin_port;
    struct jail_user user; /* root mode under sudo: whom CMD runs as */
};

/* ---- options ---------------------------------------------------------- */

enum {
    OPT_POLICY = 256,
    OPT_ALLOW,
    OPT_DENY,
    OPT_NO_INTERCEPT,
    OPT_LOG,
    OPT_QUIET,
    OPT_CA,
    OPT_UPSTREAM_CA,
    OPT_PROMPT,
    OPT_MODE,
    OPT_KEEP_ROOT,
};

static const struct option long_options[] = {
    {"policy", required_argument, NULL, OPT_POLICY},
    {"allow", required_argument, NULL, OPT_ALLOW},
    {"deny", required_argument, NULL, OPT_DENY},
    {"no-intercept", no_argument, NULL, OPT_NO_INTERCEPT},
    {"log", required_argument, NULL, OPT_LOG},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"ca", required_argument, NULL, OPT_CA},
    {"upstream-ca", required_argument, NULL, OPT_UPSTREAM_CA},
    {"prompt", no_argument, NULL, OPT_PROMPT},
    {"mode", required_argument, NULL, OPT_MODE},
    {"keep-root", no_argument, NULL, OPT_KEEP_ROOT},
    {NULL, 0, NULL, 0},
};

static int parse_options(int argc, char **argv, struct run_options *o)
{
    optind = 1;
    opterr = 0;
    int opt;
    /* "+": options end at CMD, so CMD's own options stay its own. */
    while ((opt = getopt_long(argc, argv, "+", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_POLICY:
            o->policy_file = optarg;
            break;
        case OPT_ALLOW:
        case OPT_DENY: {
            size_t *n = opt == OPT_ALLOW ? &o->n_allow : &o->n_deny;
            if (*n >= MAX_RULE_ARGS) {
                fprintf(stderr, "sluice run: at most %d --allow and %d --deny\n", MAX_RULE_ARGS,
                        MAX_RULE_ARGS);
                return -1;
            }
            (opt == OPT_ALLOW ? o->allow : o->deny)[(*n)++] = optarg;
            break;
        }
        case OPT_NO_INTERCEPT:
            o->no_intercept = true;
            break;
        case OPT_LOG:
            o->log_file = optarg;
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_CA:
            o->ca_dir = optarg;
            break;
        case OPT_UPSTREAM_CA:
            o->upstream_ca = optarg;
            break;
        case OPT_PROMPT:
            o->prompt = true;
            break;
        case OPT_MODE:
            if (jail_mode_parse(optarg, &o->mode) < 0) {
                fprintf(stderr, "sluice run: --mode %s: use root, rootless or auto\n", optarg);
                return -1;
            }
            break;
        case OPT_KEEP_ROOT:
            o->keep_root = true;
            break;
        default:
            fprintf(stderr, "sluice run: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "sluice run: no command given (sluice run [options] -- CMD [ARG...])\n");
        return -1;
    }
    if (o->no_intercept && o->ca_dir) {
        fprintf(stderr, "sluice run: --ca and --no-intercept contradict each other\n");
        return -1;
    }
    o->cmd = argv + optind;
    return 0;
}

/* ---- files ------------------------------------------------------------ */

static int write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int rc = (n == (ssize_t)len) ? 0 : -1;
    if (close(fd) < 0)
        rc = -1;
    return rc;
}

static int make_token(const char *path)
{
    unsigned char raw[24];
    char hex[2 * sizeof raw + 2];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, raw, sizeof raw) != (ssize_t)sizeof raw) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    hex[2 * sizeof raw] = '\n';
    hex[2 * sizeof raw + 1] = '\0';
    return write_file(path, hex, 0600);
}

static void path_in(char *out, const char *dir, const char *name)
{
    snprintf(out, PATH_SIZE, "%s/%s", dir, name);
}

static int prepare_files(struct run_state *st, const struct run_options *o, const char *policy)
{
    char err[ERR_SIZE];
    const char *tmp = getenv("TMPDIR");
    snprintf(st->dir, sizeof st->dir, "%s/sluice-run-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(st->dir) == NULL) {
        fprintf(stderr, "sluice run: temporary directory: %s\n", strerror(errno));
        st->dir[0] = '\0';
        return -1;
    }
    /* It holds the run's CA key: gone with sluice, even after SIGKILL. */
    if (jail_janitor_start(st->dir, err, sizeof err) < 0) {
        fprintf(stderr, "sluice run: %s\n", err);
        return -1;
    }
    /* CMD running as the sudo caller reads the bundle by name where no
     * system bundle path exists to bind it over; the directory stays
     * unlistable, and the secrets in it are 0600. */
    if (st->user.set && chmod(st->dir, 0711) < 0) {
        fprintf(stderr, "sluice run: %s: %s\n", st->dir, strerror(errno));
        return -1;
    }
    path_in(st->policy, st->dir, "policy.json");
    path_in(st->token, st->dir, "admin-token");
    path_in(st->resolv, st->dir, "resolv.conf");
    path_in(st->bundle, st->dir, "ca-bundle.pem");
    path_in(st->proxy_err, st->dir, "proxy.stderr");
    if (o->log_file) {
        snprintf(st->log, sizeof st->log, "%s", o->log_file);
        struct stat sb;
        if (stat(st->log, &sb) == 0)
            st->log_start = sb.st_size;
    } else {
        path_in(st->log, st->dir, "log.jsonl");
        st->own_log = true;
    }
    const char *resolv = st->rootless
                             ? "nameserver " JAIL_LOOP_ADDR "\noptions timeout:2 attempts:2\n"
                             : "nameserver " JAIL_HOST_ADDR "\noptions timeout:2 attempts:2\n";
    if (write_file(st->policy, policy, 0600) < 0 || make_token(st->token) < 0 ||
        write_file(st->resolv, resolv, 0644) < 0) {
        fprintf(stderr, "sluice run: writing %s: %s\n", st->dir, strerror(errno));
        return -1;
    }
    if (o->no_intercept)
        return 0;
    if (o->ca_dir) {
        snprintf(st->ca_dir, sizeof st->ca_dir, "%s", o->ca_dir);
    } else {
        path_in(st->ca_dir, st->dir, "ca");
        if (tls_ca_init(st->ca_dir, NULL, err, sizeof err) < 0) {
            fprintf(stderr, "sluice run: making the run's CA: %s\n", err);
            return -1;
        }
        st->own_ca = true;
    }
    char ca_pem[PATH_SIZE];
    path_in(ca_pem, st->ca_dir, TLS_CA_CERT_FILE);
    const char *const srcs[] = {SYSTEM_ROOTS, ca_pem, NULL};
    if (jail_bundle_write(st->bundle, srcs, err, sizeof err) < 0) {
        fprintf(stderr, "sluice run: CA bundle: %s\n", err);
        return -1;
    }
    return 0;
}

/* Everything in it is the run's own (--ca and --log name files elsewhere). */
static void remove_files(struct run_state *st)
{
    jail_remove_tree(st->dir);
}

/* ---- processes -------------------------------------------------------- */

static void unblock_all(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static int start_proxy(struct run_state *st, const struct run_options *o)
{
    char *argv[32];
    size_t n = 0;
    argv[n++] = "sluice";
    argv[n++] = "proxy";
    argv[n++] = "--policy";
    argv[n++] = st->policy;
    /* Rootless: the jail's own listeners and the admin one, inherited. */
    char listen_fd[FD_ARG_SIZE], admin_fd[FD_ARG_SIZE], dns_fds[FD_ARG_SIZE];
    snprintf(listen_fd, sizeof listen_fd, "fd:%d", st->loop_fds[JAIL_LOOP_PROXY]);
    snprintf(admin_fd, sizeof admin_fd, "fd:%d", st->admin_fd);
    snprintf(dns_fds, sizeof dns_fds, "fd:%d,%d", st->loop_fds[JAIL_LOOP_DNS_UDP],
             st->loop_fds[JAIL_LOOP_DNS_TCP]);
    argv[n++] = "--listen";
    argv[n++] = st->rootless ? listen_fd : JAIL_HOST_ADDR ":8080";
    argv[n++] = "--admin";
    argv[n++] = st->rootless ? admin_fd : JAIL_HOST_ADDR ":8081";
    argv[n++] = "--admin-token";
    argv[n++] = st->token;
    argv[n++] = "--log";
    argv[n++] = st->log;
    if (st->dns) {
        argv[n++] = "--dns";
        argv[n++] = st->rootless ? dns_fds : JAIL_HOST_ADDR ":53";
    }
    if (!o->no_intercept) {
        argv[n++] = "--ca";
        argv[n++] = st->ca_dir;
    }
    if (o->upstream_ca) {
        argv[n++] = "--upstream-ca";
        argv[n++] = (char *)o->upstream_ca;
    }
    char approver[16];
    if (st->approver_fd >= 0) {
        snprintf(approver, sizeof approver, "%d", st->approver_fd);
        argv[n++] = "--approver-fd";
        argv[n++] = approver;
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* The proxy must not outlive sluice run, even after SIGKILL. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        /* Off the terminal: a ^C meant for CMD must not stop the proxy. */
        setsid();
        int fd = open(st->proxy_err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            close(null);
        }
        unblock_all();
        if (st->approver_fd >= 0)
            fcntl(st->approver_fd, F_SETFD, 0); /* the one descriptor it inherits */
        for (int i = 0; st->rootless && i < JAIL_LOOP_FDS; i++)
            fcntl(st->loop_fds[i], F_SETFD, 0);
        if (st->rootless)
            fcntl(st->admin_fd, F_SETFD, 0);
        execv("/proc/self/exe", argv);
        _exit(EXIT_SETUP);
    }
    st->proxy = pid;
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits for the next poll and returns how long it slept: 1 ms, doubling up
 * to 20 ms, so a proxy that starts or stops quickly is seen at once (start-up
 * overhead of `sluice run` is measured in bench/RESULTS.md). */
static long poll_pause(long *interval_ms)
{
    long ms = *interval_ms;
    sleep_ms(ms);
    *interval_ms = ms * 2 > 20 ? 20 : ms * 2;
    return ms;
}

static void show_proxy_stderr(const struct run_state *st)
{
    FILE *f = fopen(st->proxy_err, "re");
    if (f == NULL)
        return;
    char line[LINE_SIZE];
    while (fgets(line, sizeof line, f))
        fprintf(stderr, "sluice run: proxy: %s", line);
    fclose(f);
}

/* Root mode: the proxy accepts on its port once the DNS filter is up too.
 * Rootless: the listeners existed before the proxy (connecting proves
 * nothing), so ask the admin API's /readyz, which needs no token. */
static bool proxy_answers(const struct run_state *st)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(st->rootless ? st->admin_port : JAIL_PROXY_PORT)};
    inet_pton(AF_INET, st->rootless ? JAIL_LOOP_ADDR : JAIL_HOST_ADDR, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (ok && st->rootless) {
        static const char req[] = "GET /readyz HTTP/1.0\r\n\r\n";
        struct timeval tv = {1, 0}; /* a proxy still starting answers later */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char reply[READY_REPLY_SIZE] = "";
        ok = send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1) &&
             recv(fd, reply, sizeof reply - 1, MSG_WAITALL) >= 12 &&
             strncmp(reply + 8, " 200", 4) == 0;
    }
    close(fd);
    return ok;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int wait_proxy_ready(struct run_state *st)
{
    /* A clock, not a count: one probe may wait for a reply up to a second. */
    long interval = 1;
    for (long deadline = now_ms() + READY_TIMEOUT_MS; now_ms() < deadline;) {
        int status;
        if (waitpid(st->proxy, &status, WNOHANG) == st->proxy) {
            st->proxy = 0;
            fprintf(stderr, "sluice run: the proxy exited during start-up\n");
            show_proxy_stderr(st);
            return -1;
        }
        if (proxy_answers(st))
            return 0;
        poll_pause(&interval);
    }
    fprintf(stderr, "sluice run: the proxy did not start within %d s\n", READY_TIMEOUT_MS / 1000);
    show_proxy_stderr(st);
    return -1;
}

static void stop_proxy(struct run_state *st)
{
    if (st->proxy <= 0)
        return;
    kill(st->proxy, SIGTERM);
    int status;
    /* SIGCHLD is blocked (cmd_run_main): waiting for it wakes us the moment
     * the proxy exits; the timeout keeps polling should it be lost. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    const struct timespec tick = {0, 20 * 1000000L};
    for (long deadline = now_ms() + STOP_TIMEOUT_MS; now_ms() < deadline;
         sigtimedwait(&chld, NULL, &tick)) {
        if (waitpid(st->proxy, &status, WNOHANG) == st->proxy) {
            st->proxy = 0;
            /* SIGTERM drains and exits 0; anything else is worth showing. */
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "sluice run: the proxy ended with status %d\n", status);
                show_proxy_stderr(st);
            }
            return;
        }
    }
    fprintf(stderr, "sluice run: the proxy did not stop on SIGTERM; killing it\n");
    kill(st->proxy, SIGKILL);
    waitpid(st->proxy, &status, 0);
    st->proxy = 0;
}

/* --prompt: the prompter gets one end of a socketpair, the proxy the
 * other (--approver-fd). */
static int start_prompter(struct run_state *st)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        fprintf(stderr, "sluice run: --prompt: socketpair: %s\n", strerror(errno));
        return -1;
    }
    st->prompter = jail_prompter_start(sv[0], sv[1]);
    close(sv[0]);
    if (st->prompter < 0) {
        fprintf(stderr, "sluice run: --prompt: fork: %s\n", strerror(errno));
        st->prompter = 0;
        close(sv[1]);
        return -1;
    }
    st->approver_fd = sv[1];
    return 0;
}

static void stop_prompter(struct run_state *st)
{
    if (st->approver_fd >= 0) {
        close(st->approver_fd);
        st->approver_fd = -1;
    }
    if (st->prompter > 0) {
        /* It ends by itself once the proxy's end is closed; SIGTERM makes
         * sure, and it restores the terminal either way. A prompter
         * stopped by job control (SIGTTIN/SIGTTOU in a background run)
         * needs SIGCONT to see it, and one that still does not end must
         * never hold up the run's exit: SIGKILL. */
        kill(st->prompter, SIGTERM);
        kill(st->prompter, SIGCONT);
        int waited = 0;
        while (waitpid(st->prompter, NULL, WNOHANG) == 0) {
            if (waited >= STOP_TIMEOUT_MS) {
                kill(st->prompter, SIGKILL);
                waitpid(st->prompter, NULL, 0);
                break;
            }
            sleep_ms(20);
            waited += 20;
        }
        st->prompter = 0;
    }
}

static bool read_byte(int fd)
{
    char c;
    ssize_t n;
    do
        n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    return n == 1;
}

/* In the process that becomes CMD: the last steps, in this order — the
 * seccomp filter must be the very last before exec. */
static void exec_cmd(const struct run_state *st, const struct run_options *o)
{
    char err[ERR_SIZE];
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    if (jail_child_drop_privileges(err, sizeof err) < 0 ||
        jail_user_become(&st->user, err, sizeof err) < 0 ||
        jail_child_seccomp(err, sizeof err) < 0) {
        fprintf(stderr, "sluice run: %s\n", err);
        _exit(EXIT_SETUP);
    }
    unblock_all();
    execvp(o->cmd[0], o->cmd);
    int e = errno;
    fprintf(stderr, "sluice run: %s: %s\n", o->cmd[0], strerror(e));
    _exit(e == ENOENT || e == ENOTDIR ? EXIT_NOTFOUND : EXIT_NOEXEC);
}

/* Rootless: map the caller's IDs, then make the listeners on the jail's
 * loopback and pass them to sluice. 0, or -1 after saying why. */
static int child_rootless_setup(const struct run_state *st)
{
    char err[ERR_SIZE], why[2 * ERR_SIZE];
    if (jail_userns_map(st->uid, st->gid, err, sizeof err) < 0) {
        jail_userns_diagnose(errno, why, sizeof why);
        fprintf(stderr, "sluice run: rootless mode: %s (%s)\n", why, err);
        return -1;
    }
    return 0;
}

static int child_send_listeners(int sock)
{
    char err[ERR_SIZE];
    int fds[JAIL_LOOP_FDS];
    if (jail_loop_listeners(fds, err, sizeof err) < 0) {
        fprintf(stderr, "sluice run: rootless mode: %s\n", err);
        return -1;
    }
    int rc = jail_fds_send(sock, fds, JAIL_LOOP_FDS);
    for (int i = 0; i < JAIL_LOOP_FDS; i++)
        close(fds[i]);
    return rc;
}

/* The child, PID 1 of the jail's new namespaces (see start_jail): set up
 * what is inside, tell sluice, wait for its go, then start CMD and stay
 * its init. Never returns. */
static void child_main(const struct run_state *st, const struct run_options *o, int sock)
{
    char err[ERR_SIZE];
    const char *bundle;
    /* The socket to sluice is also the life line until now: if sluice died
     * before this, reading it below gives EOF. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (st->rootless && child_rootless_setup(st) < 0)
        _exit(EXIT_SETUP);
    if (jail_child_mounts(st->dns ? st->resolv : NULL, o->no_intercept ? NULL : st->bundle,
                          &bundle, err, sizeof err) < 0) {
        fprintf(stderr, "sluice run: setting up the jail: %s\n", err);
        _exit(EXIT_SETUP);
    }
    /* Some containers hide parts of /proc, and then a user namespace may
     * not mount another: CMD sees sluice's processes, nothing more. */
    if (jail_child_proc(err, sizeof err) < 0)
        fprintf(stderr, "sluice run: warning: %s; the command sees the processes outside\n", err);
    if (st->rootless ? child_send_listeners(sock) < 0 : write(sock, "r", 1) != 1)
        _exit(EXIT_SETUP);
    /* Root mode: the link is there ("l"); configure this end while the
     * proxy starts, rather than after it. */
    if (!st->rootless) {
        if (!read_byte(sock))
            _exit(EXIT_SETUP); /* sluice gave up; it said why */
        if (jail_child_net_setup(err, sizeof err) < 0 ||
            jail_child_firewall(err, sizeof err) < 0) {
            fprintf(stderr, "sluice run: setting up the jail: %s\n", err);
            _exit(EXIT_SETUP);
        }
    }
    if (!read_byte(sock))
        _exit(EXIT_SETUP); /* sluice gave up; it said why */
    close(sock);
    if (jail_env_apply(st->rootless ? JAIL_LOOP_PROXY_URL : JAIL_PROXY_URL, bundle) < 0 ||
        jail_user_env(&st->user) < 0) {
        fprintf(stderr, "sluice run: environment: %s\n", strerror(errno));
        _exit(EXIT_SETUP);
    }
    fflush(NULL);
    pid_t cmd = fork();
    if (cmd < 0) {
        fprintf(stderr, "sluice run: fork: %s\n", strerror(errno));
        _exit(EXIT_SETUP);
    }
    if (cmd == 0)
        exec_cmd(st, o);
    jail_init_run(cmd);
}

/* ---- summary ---------------------------------------------------------- */

struct summary_row {
    char key[RUN_HOST_SIZE];
    char decision[16];
    char reason[RUN_REASON_SIZE];
    unsigned long count;
};

static void print_summary(const char *log_path, off_t start)
{
    static struct summary_row rows[SUMMARY_MAX];
    size_t n = 0;
    unsigned long dropped = 0;
    FILE *f = fopen(log_path, "re");
    if (f == NULL)
        return;
    if (start > 0 && fseeko(f, start, SEEK_SET) < 0) {
        fclose(f);
        return;
    }
    char line[LINE_SIZE];
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        const char *host = json_string_value(json_object_get(o, "host"));
        const char *dec = json_string_value(json_object_get(o, "decision"));
        const char *kind = json_string_value(json_object_get(o, "kind"));
        json_int_t port = json_integer_value(json_object_get(o, "port"));
        const char *reason = json_string_value(json_object_get(o, "reason"));
        /* An allowed request inside an intercepted tunnel was counted with
         * its CONNECT; a denied one is a destination of its own. */
        bool inner_allow = kind && strcmp(kind, "tls") == 0 && dec && strcmp(dec, "deny") != 0;
        if (host && dec && !inner_allow) {
            char key[RUN_HOST_SIZE];
            if (kind && strcmp(kind, "dns") == 0)
                snprintf(key, sizeof key, "dns:%s", host);
            else
                snprintf(key, sizeof key, "%s:%lld", host, (long long)port);
            size_t i;
            for (i = 0; i < n; i++)
                if (strcmp(rows[i].key, key) == 0 && strcmp(rows[i].decision, dec) == 0)
                    break;
            if (i == n && n < SUMMARY_MAX) {
                snprintf(rows[n].key, sizeof rows[n].key, "%s", key);
                snprintf(rows[n].decision, sizeof rows[n].decision, "%s", dec);
                snprintf(rows[n].reason, sizeof rows[n].reason, "%s",
                         reason && strcmp(dec, "allow") != 0 ? reason : "");
                rows[n].count = 0;
                n++;
            }
            if (i < n)
                rows[i].count++;
            else
                dropped++;
        }
        json_decref(o);
    }
    fclose(f);
    unsigned long allowed = 0, denied = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].decision, "allow") == 0)
            allowed += rows[i].count;
        else
            denied += rows[i].count;
    }
    fprintf(stderr, "sluice run: %lu allowed, %lu denied\n", allowed, denied);
    /* Allowed destinations first, then the rest. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++) {
            bool is_allow = strcmp(rows[i].decision, "allow") == 0;
            if (is_allow != (pass == 0))
                continue;
            fprintf(stderr, "  %-9s %6lu  %s", rows[i].decision, rows[i].count, rows[i].key);
            if (rows[i].reason[0])
                fprintf(stderr, "  (%s)", rows[i].reason);
            fputc('\n', stderr);
        }
    if (dropped)
        fprintf(stderr, "  (%lu more not shown)\n", dropped);
}

/* ---- main ------------------------------------------------------------- */

static int status_to_exit(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return EXIT_SETUP;
}

/* Waits for the child, forwarding SIGINT/SIGTERM/SIGHUP to it. */
static int supervise(struct run_state *st, const sigset_t *set)
{
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(set, &si);
        if (sig < 0) {
            if (errno == EINTR)
                continue;
            return EXIT_SETUP;
        }
        if (sig != SIGCHLD) {
            /* A terminal's ^C reaches CMD itself (same process group, and
             * si_code SI_KERNEL); forward only what was sent to sluice. */
            if (si.si_code <= 0)
                kill(st->child, sig);
            continue;
        }
        int status;
        if (st->proxy > 0 && waitpid(st->proxy, &status, WNOHANG) == st->proxy) {
            st->proxy = 0;
            fprintf(stderr, "sluice run: the proxy exited unexpectedly; stopping the command\n");
            show_proxy_stderr(st);
            kill(st->child, SIGKILL);
        }
        pid_t r = waitpid(st->child, &status, WNOHANG);
        if (r == st->child) {
            st->child = 0;
            return status_to_exit(status);
        }
    }
}

/* Root mode: the veth link from sluice's namespace into the jail's. */
static int make_link(struct run_state *st)
{
    char err[ERR_SIZE];
    if (jail_link_in_use()) {
        fprintf(stderr,
                "sluice run: %s is already in use in this network namespace (another sluice run "
                "here?); one run at a time per namespace in root mode (--mode rootless has no "
                "such limit)\n",
                JAIL_HOST_ADDR);
        return -1;
    }
    if (jail_veth_create(st->ifname, st->child, err, sizeof err) < 0) {
        fprintf(stderr,
                "sluice run: creating the veth link: %s (is another sluice run using %s in this "
                "network namespace?)\n",
                err, JAIL_HOST_ADDR);
        return -1;
    }
    st->veth = true;
    return 0;
}

/* Rootless: the admin listener, in sluice's namespace where the jail
 * cannot reach it, on a port the kernel picks. */
static int make_admin_listener(struct run_state *st)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    inet_pton(AF_INET, JAIL_LOOP_ADDR, &sa.sin_addr);
    st->admin_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (st->admin_fd < 0 || bind(st->admin_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(st->admin_fd, 16) < 0 || getsockname(st->admin_fd, (struct sockaddr *)&sa, &len) < 0) {
        fprintf(stderr, "sluice run: the admin listener on %s: %s\n", JAIL_LOOP_ADDR,
                strerror(errno));
        return -1;
    }
    st->admin_port = ntohs(sa.sin_port);
    return 0;
}

/* The proxy has them now; the jail's copies went with its setup. */
static void close_passed_fds(struct run_state *st)
{
    for (int i = 0; i < JAIL_LOOP_FDS; i++) {
        if (st->loop_fds[i] >= 0)
            close(st->loop_fds[i]);
        st->loop_fds[i] = -1;
    }
    if (st->admin_fd >= 0)
        close(st->admin_fd);
    st->admin_fd = -1;
}

/* Clone the child into its namespaces (PID 1 of a new PID namespace; in
 * rootless mode in a new user namespace too), link it to sluice or take its
 * listeners, start the proxy, then let the child start CMD. 0, or -1 after
 * saying why. */
static int start_jail(struct run_state *st, const struct run_options *o)
{
    int sp[2] = {-1, -1};
    int rc = -1;
    /* Both directions on one socket: "ready" (or the listeners) up, then
     * "link" (root mode) and "go" down; EOF either way means the other side
     * is gone. */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        fprintf(stderr, "sluice run: socketpair: %s\n", strerror(errno));
        goto out;
    }
    fflush(NULL);
    unsigned long flags =
        CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | (st->rootless ? CLONE_NEWUSER : 0);
    st->child = jail_clone(flags);
    if (st->child < 0) {
        int e = errno;
        char why[2 * ERR_SIZE];
        st->child = 0;
        if (st->rootless) {
            jail_userns_diagnose(e, why, sizeof why);
            fprintf(stderr, "sluice run: rootless mode: %s\n", why);
        } else {
            fprintf(stderr, "sluice run: making the jail's namespaces: %s\n", strerror(e));
        }
        goto out;
    }
    if (st->child == 0) {
        close(sp[0]);
        child_main(st, o, sp[1]);
    }
    close(sp[1]);
    sp[1] = -1;
    if (st->rootless ? jail_fds_recv(sp[0], st->loop_fds, JAIL_LOOP_FDS) < 0 : !read_byte(sp[0]))
        goto out; /* the child said why */
    st->netns_fd = jail_netns_open(st->child);
    if (st->rootless ? make_admin_listener(st) < 0 : make_link(st) < 0)
        goto out;
    if (!st->rootless && write(sp[0], "l", 1) != 1)
        goto out;
    if (o->prompt && start_prompter(st) < 0)
        goto out;
    if (start_proxy(st, o) < 0) {
        fprintf(stderr, "sluice run: starting the proxy: %s\n", strerror(errno));
        goto out;
    }
    close_passed_fds(st);
    if (wait_proxy_ready(st) < 0)
        goto out;
    if (write(sp[0], "g", 1) != 1)
        goto out;
    rc = 0;
out:
    for (int i = 0; i < 2; i++)
        if (sp[i] >= 0)
            close(sp[i]);
    return rc;
}

/* Everything the run made goes: CMD's leftovers, the proxy, the link. */
static void stop_jail(struct run_state *st)
{
    if (st->child > 0) {
        /* Set-up failed after the fork: the child is waiting; end it. */
        kill(st->child, SIGKILL);
        waitpid(st->child, NULL, 0);
        st->child = 0;
    }
    if (st->netns_fd >= 0) {
        jail_kill_netns(st->netns_fd);
        close(st->netns_fd);
        st->netns_fd = -1;
    }
    stop_proxy(st);
    stop_prompter(st);
    close_passed_fds(st);
    if (st->veth)
        jail_veth_delete(st->ifname);
}

/* Root mode where it can work, else rootless; says which and why. */
static int choose_mode(struct run_state *st, const struct run_options *o)
{
    const char *why;
    bool root_ok = jail_root_possible(&why);
    enum jail_mode mode = o->mode;
    if (mode == JAIL_MODE_ROOT && !root_ok) {
        fprintf(stderr,
                "sluice run: root mode is not possible here (%s): run it with sudo, or use "
                "--mode rootless\n",
                why);
        return -1;
    }
    if (mode == JAIL_MODE_AUTO)
        mode = root_ok ? JAIL_MODE_ROOT : JAIL_MODE_ROOTLESS;
    else
        why = "--mode";
    st->rootless = mode == JAIL_MODE_ROOTLESS;
    if (!o->quiet)
        fprintf(stderr, "sluice run: %s mode (%s)\n", jail_mode_name(mode), why);
    return 0;
}

/* Descriptors 0-2 open, so none the run makes or receives can be taken
 * for stdin/stdout/stderr by a later dup2 in a child. */
static void keep_std_fds(void)
{
    int fd;
    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= STDERR_FILENO)
        ;
    if (fd > STDERR_FILENO)
        close(fd);
}

int cmd_run_main(int argc, char **argv)
{
    struct run_options o;
    memset(&o, 0, sizeof o);
    if (parse_options(argc, argv, &o) < 0)
        return EXIT_SETUP;
    keep_std_fds();
    static struct run_state st;
    memset(&st, 0, sizeof st);
    st.netns_fd = -1;
    st.approver_fd = -1;
    st.admin_fd = -1;
    for (int i = 0; i < JAIL_LOOP_FDS; i++)
        st.loop_fds[i] = -1;
    st.uid = geteuid();
    st.gid = getegid();
    if (choose_mode(&st, &o) < 0)
        return EXIT_SETUP;
    char uerr[ERR_SIZE];
    if (!st.rootless && !o.keep_root && jail_user_from_sudo(&st.user, uerr, sizeof uerr) < 0) {
        fprintf(stderr, "sluice run: %s\n", uerr);
        return EXIT_SETUP;
    }
    snprintf(st.ifname, sizeof st.ifname, "slr%ld", (long)getpid() % 100000000L);
    char perr[ERR_SIZE];
    struct jail_policy_args pa = {
        .policy_file = o.policy_file,
        .allow = o.allow,
        .n_allow = o.n_allow,
        .deny = o.deny,
        .n_deny = o.n_deny,
        .no_intercept = o.no_intercept,
        .resolv_conf = "/etc/resolv.conf",
        .prompt = o.prompt,
    };
    char *policy = jail_policy_build(&pa, &st.dns, perr, sizeof perr);
    if (policy == NULL) {
        fprintf(stderr, "sluice run: %s\n", perr);
        return EXIT_SETUP;
    }
    /* Every signal we care about is taken by sigwaitinfo, never a handler. */
    sigset_t set, old;
    jail_forwarded_signals(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);
    signal(SIGPIPE, SIG_IGN);

    int rc = EXIT_SETUP;
    bool ran = false;
    if (prepare_files(&st, &o, policy) == 0 && start_jail(&st, &o) == 0) {
        ran = true;
        rc = supervise(&st, &set);
    }
    stop_jail(&st);
    if (!o.quiet && ran)
        print_summary(st.log, st.log_start);
    remove_files(&st);
    free(policy);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
}
