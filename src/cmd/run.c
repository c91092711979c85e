/* sluice run: run one command jailed behind the policy (root mode).
 *
 * sluice starts its own proxy and DNS filter (`sluice proxy`, a child
 * process) on 198.18.0.1, and runs CMD in a new network and mount namespace
 * whose only interface is the other end of a veth pair (198.18.0.2/30, no
 * default route): the proxy and the DNS filter are all it can reach. The
 * child gets the proxy variables, a CA bundle with the run's CA, and a
 * resolv.conf naming the filter. See docs/RUN.md. */
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

const char cmd_run_help[] =
    "usage: sluice run [options] [--] CMD [ARG...]\n"
    "\n"
    "Runs CMD in a new network namespace whose only way out is sluice's proxy and\n"
    "DNS filter, with the proxy variables and a CA bundle set. Exits with CMD's status;\n"
    "125 when sluice could not set up, 126 when CMD is not executable, 127 when not found.\n"
    "Needs root for now (root mode: a veth pair on 198.18.0.0/30).\n"
    "\n"
    "  --policy FILE       start from this policy (default: deny everything)\n"
    "  --allow HOST[:PORT] allow HOST (on PORT; default 443 and 80), after the policy's rules\n"
    "  --deny HOST         deny HOST, before the policy's rules\n"
    "  --no-intercept      tunnel TLS without interception (no per-run CA)\n"
    "  --ca DIR            intercept with this CA instead of a per-run one\n"
    "  --upstream-ca FILE  verify intercepted upstreams against FILE, not the system roots\n"
    "  --log FILE          keep the proxy's JSON lines in FILE\n"
    "  --quiet             no summary of destinations at exit\n";

struct run_options {
    const char *policy_file;
    const char *allow[MAX_RULE_ARGS];
    size_t n_allow;
    const char *deny[MAX_RULE_ARGS];
    size_t n_deny;
    bool no_intercept;
    bool quiet;
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
    if (write_file(st->policy, policy, 0600) < 0 || make_token(st->token) < 0 ||
        write_file(st->resolv, "nameserver " JAIL_HOST_ADDR "\noptions timeout:2 attempts:2\n",
                   0644) < 0) {
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

static void remove_files(struct run_state *st)
{
    if (st->dir[0] == '\0')
        return;
    char p[PATH_SIZE];
    if (st->own_ca) {
        path_in(p, st->ca_dir, TLS_CA_KEY_FILE);
        unlink(p);
        path_in(p, st->ca_dir, TLS_CA_CERT_FILE);
        unlink(p);
        rmdir(st->ca_dir);
    }
    if (st->own_log)
        unlink(st->log);
    unlink(st->policy);
    unlink(st->token);
    unlink(st->resolv);
    unlink(st->bundle);
    unlink(st->proxy_err);
    rmdir(st->dir);
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
    argv[n++] = "--listen";
    argv[n++] = JAIL_HOST_ADDR ":8080";
    argv[n++] = "--admin";
    argv[n++] = JAIL_HOST_ADDR ":8081";
    argv[n++] = "--admin-token";
    argv[n++] = st->token;
    argv[n++] = "--log";
    argv[n++] = st->log;
    if (st->dns) {
        argv[n++] = "--dns";
        argv[n++] = JAIL_HOST_ADDR ":53";
    }
    if (!o->no_intercept) {
        argv[n++] = "--ca";
        argv[n++] = st->ca_dir;
    }
    if (o->upstream_ca) {
        argv[n++] = "--upstream-ca";
        argv[n++] = (char *)o->upstream_ca;
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

/* The proxy accepts on its port once the DNS filter is up too. */
static int wait_proxy_ready(struct run_state *st)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(JAIL_PROXY_PORT)};
    inet_pton(AF_INET, JAIL_HOST_ADDR, &sa.sin_addr);
    for (int waited = 0; waited < READY_TIMEOUT_MS; waited += 20) {
        int status;
        if (waitpid(st->proxy, &status, WNOHANG) == st->proxy) {
            st->proxy = 0;
            fprintf(stderr, "sluice run: the proxy exited during start-up\n");
            show_proxy_stderr(st);
            return -1;
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
            close(fd);
            if (rc == 0)
                return 0;
        }
        sleep_ms(20);
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
    for (int waited = 0; waited < STOP_TIMEOUT_MS; waited += 20) {
        if (waitpid(st->proxy, &status, WNOHANG) == st->proxy) {
            st->proxy = 0;
            /* SIGTERM drains and exits 0; anything else is worth showing. */
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "sluice run: the proxy ended with status %d\n", status);
                show_proxy_stderr(st);
            }
            return;
        }
        sleep_ms(20);
    }
    fprintf(stderr, "sluice run: the proxy did not stop on SIGTERM; killing it\n");
    kill(st->proxy, SIGKILL);
    waitpid(st->proxy, &status, 0);
    st->proxy = 0;
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

/* The child: new namespaces, wait for the link, configure, exec CMD. */
static void child_main(const struct run_state *st, const struct run_options *o, int ready_w,
                       int go_r, pid_t parent)
{
    char err[ERR_SIZE];
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(EXIT_SETUP);
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
        fprintf(stderr, "sluice run: unshare (network, mount): %s\n", strerror(errno));
        _exit(EXIT_SETUP);
    }
    if (write(ready_w, "r", 1) != 1)
        _exit(EXIT_SETUP);
    close(ready_w);
    if (!read_byte(go_r))
        _exit(EXIT_SETUP); /* sluice gave up; it said why */
    close(go_r);
    if (jail_child_net_setup(err, sizeof err) < 0 || jail_child_firewall(err, sizeof err) < 0 ||
        (st->dns && jail_child_resolv(st->resolv, err, sizeof err) < 0)) {
        fprintf(stderr, "sluice run: setting up the jail: %s\n", err);
        _exit(EXIT_SETUP);
    }
    if (jail_env_apply(JAIL_PROXY_URL, o->no_intercept ? NULL : st->bundle) < 0) {
        fprintf(stderr, "sluice run: environment: %s\n", strerror(errno));
        _exit(EXIT_SETUP);
    }
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    if (jail_child_drop_privileges(err, sizeof err) < 0) {
        fprintf(stderr, "sluice run: %s\n", err);
        _exit(EXIT_SETUP);
    }
    unblock_all();
    execvp(o->cmd[0], o->cmd);
    int e = errno;
    fprintf(stderr, "sluice run: %s: %s\n", o->cmd[0], strerror(e));
    _exit(e == ENOENT || e == ENOTDIR ? EXIT_NOTFOUND : EXIT_NOEXEC);
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

/* Fork the child into its namespaces, link it to sluice, start the proxy,
 * then let the child exec CMD. 0, or -1 after saying why. */
static int start_jail(struct run_state *st, const struct run_options *o)
{
    char err[ERR_SIZE];
    int ready[2] = {-1, -1}, go[2] = {-1, -1};
    int rc = -1;
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) {
        fprintf(stderr, "sluice run: pipe: %s\n", strerror(errno));
        goto out;
    }
    fflush(NULL);
    pid_t parent = getpid();
    st->child = fork();
    if (st->child < 0) {
        fprintf(stderr, "sluice run: fork: %s\n", strerror(errno));
        st->child = 0;
        goto out;
    }
    if (st->child == 0) {
        close(ready[0]);
        close(go[1]);
        child_main(st, o, ready[1], go[0], parent);
    }
    close(ready[1]);
    close(go[0]);
    ready[1] = go[0] = -1;
    if (!read_byte(ready[0]))
        goto out; /* the child said why */
    st->netns_fd = jail_netns_open(st->child);
    if (jail_link_in_use()) {
        fprintf(stderr,
                "sluice run: %s is already in use in this network namespace (another sluice run "
                "here?); one run at a time per namespace for now\n",
                JAIL_HOST_ADDR);
        goto out;
    }
    if (jail_veth_create(st->ifname, st->child, err, sizeof err) < 0) {
        fprintf(stderr,
                "sluice run: creating the veth link: %s (is another sluice run using %s in this "
                "network namespace?)\n",
                err, JAIL_HOST_ADDR);
        goto out;
    }
    st->veth = true;
    if (start_proxy(st, o) < 0) {
        fprintf(stderr, "sluice run: starting the proxy: %s\n", strerror(errno));
        goto out;
    }
    if (wait_proxy_ready(st) < 0)
        goto out;
    if (write(go[1], "g", 1) != 1)
        goto out;
    rc = 0;
out:
    for (int i = 0; i < 2; i++) {
        if (ready[i] >= 0)
            close(ready[i]);
        if (go[i] >= 0)
            close(go[i]);
    }
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
    if (st->veth)
        jail_veth_delete(st->ifname);
}

int cmd_run_main(int argc, char **argv)
{
    struct run_options o;
    memset(&o, 0, sizeof o);
    if (parse_options(argc, argv, &o) < 0)
        return EXIT_SETUP;
    if (geteuid() != 0) {
        fprintf(stderr, "sluice run: root mode needs root; rootless mode is not built yet "
                        "(run it with sudo)\n");
        return EXIT_SETUP;
    }
    static struct run_state st;
    memset(&st, 0, sizeof st);
    st.netns_fd = -1;
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
    };
    char *policy = jail_policy_build(&pa, &st.dns, perr, sizeof perr);
    if (policy == NULL) {
        fprintf(stderr, "sluice run: %s\n", perr);
        return EXIT_SETUP;
    }
    /* Every signal we care about is taken by sigwaitinfo, never a handler. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
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
