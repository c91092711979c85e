/* sluice proxy: load the policy, start the workers and the admin API, and
 * serve until SIGTERM/SIGINT; SIGHUP and POST /reload reload the policy. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "admin/admin.h"
#include "cmd/cmd.h"
#include "cmd/proxy_clients.h"
#include "cmd/proxy_dns.h"
#include "core/cliopt.h"
#include "core/dirwatch.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/netaddr.h"
#include "core/sockfd.h"
#include "fw/nft.h"
#include "dns/filter.h"
#include "policy/policy.h"
#include "proxy/approval.h"
#include "proxy/intercept.h"
#include "proxy/proxy.h"
#include "proxy/sandbox.h"

#define ERR_SIZE 512

const char cmd_proxy_help[] =
    "usage: sluice proxy --policy FILE [options]\n"
    "\n"
    "Runs the policy-enforcing HTTP/CONNECT forward proxy.\n"
    "\n"
    "  --policy FILE            policy (JSON) to enforce; SIGHUP or POST /reload re-reads it\n"
    "  --watch-policy           also reload when the files in the policy's directory change\n"
    "                           (inotify; a Kubernetes ConfigMap update too)\n"
    "  --listen ADDR:PORT|fd:N  proxy listener (default 127.0.0.1:8080); fd:N serves on the\n"
    "                           inherited listening TCP socket N instead of binding one\n"
    "  --admin ADDR:PORT|fd:N|none  admin API (default 127.0.0.1:8081)\n"
    "  --admin-token FILE       bearer token for the admin API (file mode 0600)\n"
    "  --ca DIR                 internal CA (sluice ca init) for TLS interception\n"
    "  --upstream-ca FILE       verify intercepted upstreams against FILE, not the system roots\n"
    "  --mark N                 SO_MARK on upstream connections (default 0x5c1ce; 0: none)\n"
    "  --log FILE               JSON lines log (default stderr; created 0600)\n"
    "  --workers N              event-loop threads (default: one per CPU)\n"
    "  --header-timeout SEC     time for a client to send a request head (default 20)\n"
    "  --idle-timeout SEC       keep-alive, tunnel and upstream idle limit (default 300)\n"
    "  --connect-timeout SEC    upstream dial timeout per address (default 10)\n"
    "  --drain-timeout SEC      on SIGTERM, time for open connections to finish (default 10)\n"
    "  --max-conns N            client connections in total (default 10000)\n"
    "  --max-conns-per-client N client connections per source address (default 512)\n"
    "  --max-tunnels-per-client N  open CONNECT tunnels per source address (default 256)\n"
    "  --clients-refresh SEC    resolve the policy's client source names again every SEC\n"
    "                           seconds (default 30; 0: only at load and reload)\n"
    "  --prompt-timeout SEC     how long a prompt rule's request waits for an answer (default 60)\n"
    "  --approver-fd N          a unix stream socket that answers prompts (sluice run --prompt)\n"
    "  --no-seccomp             do not confine the running proxy with its seccomp filter\n"
    "                           (for debugging only; see docs/SECURITY.md)\n"
    PROXY_DNS_HELP;

struct proxy_state {
    const char *policy_file;
    char policy_dir[PATH_MAX]; /* where PUT /policy finds client files */
    bool have_ca;
    time_t policy_loaded_at;
    bool ready;
    struct event_base *base;
};

static struct proxy_state state;

/* A client source name that resolved to nothing matches no one until the
 * next reload; say so at every load, where the operator looks. */
static void warn_unresolved(const struct policy *p)
{
    for (size_t i = 0; i < policy_client_count(p); i++) {
        struct policy_client_info ci;
        if (policy_client_info(p, i, &ci) < 0)
            continue;
        for (size_t n = 0; n < ci.n_unresolved; n++) {
            char detail[256];
            snprintf(detail, sizeof detail, "client \"%s\": source \"%s\"", ci.name,
                     ci.unresolved[n]);
            log_message("warning",
                        "client source name did not resolve; it matches nothing until a reload",
                        detail);
        }
    }
}

static int reload_policy(void *arg, char *err, size_t err_size)
{
    struct policy_error perr;
    struct policy *p = policy_load_file(state.policy_file, &perr);
    if (p == NULL) {
        policy_format_error(&perr, err, err_size);
        metrics_add(&metrics.reloads_failed, 1);
        log_message("error", "reload failed; keeping the previous policy", err);
        return -1;
    }
    if (policy_needs_ca(p) && !state.have_ca) {
        snprintf(err, err_size,
                 "%s: a rule uses methods, paths or inject, which need TLS interception "
                 "(--ca); keeping the previous policy",
                 state.policy_file);
        policy_unref(p);
        metrics_add(&metrics.reloads_failed, 1);
        log_message("error", "reload failed; keeping the previous policy", err);
        return -1;
    }
    if (proxy_dns_check_policy(p, state.policy_file, err, err_size) < 0) {
        policy_unref(p);
        metrics_add(&metrics.reloads_failed, 1);
        log_message("error", "reload failed; keeping the previous policy", err);
        return -1;
    }
    warn_unresolved(p);
    proxy_policy_set(p);
    state.policy_loaded_at = time(NULL);
    metrics_add(&metrics.reloads_ok, 1);
    struct policy *now = proxy_policy_get();
    log_message("info", "policy reloaded", policy_hash(now));
    policy_unref(now);
    return 0;
}

static int install_policy(void *arg, struct policy *p, char *err, size_t err_size)
{
    if (policy_needs_ca(p) && !state.have_ca) {
        snprintf(err, err_size,
                 "a rule uses methods, paths or inject, which need TLS interception (--ca)");
        policy_unref(p);
        return -1;
    }
    if (proxy_dns_check_policy(p, "the new policy", err, err_size) < 0) {
        policy_unref(p);
        return -1;
    }
    warn_unresolved(p);
    proxy_policy_set(p);
    state.policy_loaded_at = time(NULL);
    log_message("info", "policy replaced through the admin API", policy_hash(p));
    return 0;
}

static struct policy *current_policy(void *arg)
{
    return proxy_policy_get();
}

static bool is_ready(void *arg)
{
    return state.ready && proxy_running() && (!proxy_dns_enabled() || dns_filter_running());
}

static const char *enforcement_mode(void *arg)
{
    return dns_filter_running() ? "dns+proxy" : "proxy-only";
}

static char *kernel_status(void *arg)
{
    return fw_nft_status_json();
}

static const char *sandbox_mode(void *arg)
{
    return proxy_sandbox_active() ? "seccomp" : "off";
}

static time_t policy_loaded_at(void *arg)
{
    return state.policy_loaded_at;
}

static char *approvals_list(void *arg)
{
    return approval_list_json();
}

static int approval_answer_hook(void *arg, const char *id, bool allow, bool for_run)
{
    switch (approval_answer(id, allow, for_run, APPROVAL_VIA_ADMIN, NULL)) {
    case APPROVAL_OK: return 0;
    case APPROVAL_ANSWERED: return 2;
    default: return 1;
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    if (sig == SIGHUP) {
        char err[ERR_SIZE];
        reload_policy(NULL, err, sizeof err);
        return;
    }
    log_message("info", "stopping: draining connections", NULL);
    state.ready = false;
    event_base_loopbreak(state.base);
}

/* --watch-policy: the files changed (a ConfigMap swap, an edit); reload as
 * SIGHUP does, so a bad file keeps the old policy and is logged. */
static void on_policy_change(void *arg)
{
    char err[ERR_SIZE];
    log_message("info", "policy files changed; reloading", state.policy_file);
    reload_policy(NULL, err, sizeof err);
}

/* Checked integer options: the whole text a decimal number within range. */
static int parse_int_option(const char *name, const char *text, long min, long max, int *out)
{
    long v;
    if (cliopt_long("sluice proxy", name, text, min, max, &v) < 0)
        return -1;
    *out = (int)v;
    return 0;
}

/* Tunnels hold two sockets each: use every descriptor we may. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

enum {
    OPT_POLICY = 256,
    OPT_LISTEN,
    OPT_ADMIN,
    OPT_ADMIN_TOKEN,
    OPT_LOG,
    OPT_WORKERS,
    OPT_HEADER_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_CONNECT_TIMEOUT,
    OPT_DRAIN_TIMEOUT,
    OPT_MAX_CONNS,
    OPT_MAX_CONNS_CLIENT,
    OPT_MAX_TUNNELS_CLIENT,
    OPT_CLIENTS_REFRESH,
    OPT_CA,
    OPT_UPSTREAM_CA,
    OPT_MARK,
    OPT_PROMPT_TIMEOUT,
    OPT_APPROVER_FD,
    OPT_WATCH_POLICY,
    OPT_NO_SECCOMP,
};

static const struct option long_options[] = {
    {"policy", required_argument, NULL, OPT_POLICY},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"admin", required_argument, NULL, OPT_ADMIN},
    {"admin-token", required_argument, NULL, OPT_ADMIN_TOKEN},
    {"log", required_argument, NULL, OPT_LOG},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"max-conns-per-client", required_argument, NULL, OPT_MAX_CONNS_CLIENT},
    {"max-tunnels-per-client", required_argument, NULL, OPT_MAX_TUNNELS_CLIENT},
    {"clients-refresh", required_argument, NULL, OPT_CLIENTS_REFRESH},
    {"ca", required_argument, NULL, OPT_CA},
    {"upstream-ca", required_argument, NULL, OPT_UPSTREAM_CA},
    {"mark", required_argument, NULL, OPT_MARK},
    {"prompt-timeout", required_argument, NULL, OPT_PROMPT_TIMEOUT},
    {"approver-fd", required_argument, NULL, OPT_APPROVER_FD},
    {"watch-policy", no_argument, NULL, OPT_WATCH_POLICY},
    {"no-seccomp", no_argument, NULL, OPT_NO_SECCOMP},
    PROXY_DNS_LONG_OPTIONS,
    {NULL, 0, NULL, 0},
};

struct proxy_options {
    struct proxy_config cfg;
    const char *policy_file;
    const char *admin_addr;
    const char *admin_token;
    const char *log_file;
    const char *ca_dir;
    const char *upstream_ca;
    int prompt_timeout_s;
    int approver_fd; /* -1: none */
    int clients_refresh_s;
    bool watch_policy;
    bool no_seccomp;
};

static int parse_options(int argc, char **argv, struct proxy_options *o)
{
    char err[ERR_SIZE];
    proxy_config_defaults(&o->cfg);
    o->admin_addr = "127.0.0.1:8081";
    o->prompt_timeout_s = APPROVAL_DEFAULT_TIMEOUT_S;
    o->approver_fd = -1;
    o->clients_refresh_s = PROXY_CLIENTS_DEFAULT_REFRESH_S;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        int rc = 0;
        struct proxy_config *cfg = &o->cfg;
        switch (opt) {
        case OPT_POLICY: o->policy_file = optarg; break;
        case OPT_WATCH_POLICY: o->watch_policy = true; break;
        case OPT_NO_SECCOMP: o->no_seccomp = true; break;
        case OPT_ADMIN: o->admin_addr = optarg; break;
        case OPT_ADMIN_TOKEN: o->admin_token = optarg; break;
        case OPT_LOG: o->log_file = optarg; break;
        case OPT_CA: o->ca_dir = optarg; break;
        case OPT_UPSTREAM_CA: o->upstream_ca = optarg; break;
        case OPT_MARK: rc = cliopt_mark("sluice proxy", "--mark", optarg, &o->cfg.mark); break;
        case OPT_LISTEN:
            if (sockfd_given(optarg))
                rc = sockfd_parse(optarg, SOCK_STREAM, &cfg->listen_fd, &cfg->listen,
                                  &cfg->listen_len, err, sizeof err);
            else
                rc = netaddr_parse(optarg, &cfg->listen, &cfg->listen_len, err, sizeof err);
            if (rc < 0)
                fprintf(stderr, "sluice proxy: --listen: %s\n", err);
            break;
        case OPT_PROMPT_TIMEOUT:
            rc = parse_int_option("--prompt-timeout", optarg, 1, 86400, &o->prompt_timeout_s);
            break;
        case OPT_APPROVER_FD:
            rc = parse_int_option("--approver-fd", optarg, 3, 65535, &o->approver_fd);
            break;
        case OPT_WORKERS: rc = parse_int_option("--workers", optarg, 1, 64, &cfg->workers); break;
        case OPT_HEADER_TIMEOUT:
            rc = parse_int_option("--header-timeout", optarg, 1, 3600, &cfg->header_timeout_s);
            break;
        case OPT_IDLE_TIMEOUT:
            rc = parse_int_option("--idle-timeout", optarg, 1, 86400, &cfg->idle_timeout_s);
            break;
        case OPT_CONNECT_TIMEOUT:
            rc = parse_int_option("--connect-timeout", optarg, 1, 600, &cfg->connect_timeout_s);
            break;
        case OPT_DRAIN_TIMEOUT:
            rc = parse_int_option("--drain-timeout", optarg, 0, 3600, &cfg->drain_timeout_s);
            break;
        case OPT_MAX_CONNS:
            rc = parse_int_option("--max-conns", optarg, 1, 1000000, &cfg->max_conns);
            break;
        case OPT_MAX_CONNS_CLIENT:
            rc = parse_int_option("--max-conns-per-client", optarg, 1, 1000000,
                                  &cfg->max_conns_per_client);
            break;
        case OPT_MAX_TUNNELS_CLIENT:
            rc = parse_int_option("--max-tunnels-per-client", optarg, 1, 1000000,
                                  &cfg->max_tunnels_per_client);
            break;
        case OPT_CLIENTS_REFRESH:
            rc = parse_int_option("--clients-refresh", optarg, 0, 86400, &o->clients_refresh_s);
            break;
        default:
            if (opt >= PROXY_DNS_OPT_FIRST && opt <= PROXY_DNS_OPT_LAST) {
                rc = proxy_dns_option(opt, optarg);
                break;
            }
            fprintf(stderr, "sluice proxy: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return -1;
        }
        if (rc < 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "sluice proxy: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->policy_file == NULL) {
        fprintf(stderr, "sluice proxy: --policy FILE is required (see --help)\n");
        return -1;
    }
    return proxy_dns_check_options();
}

static int load_initial_policy(const char *file)
{
    struct policy_error perr;
    char err[ERR_SIZE];
    struct policy *p = policy_load_file(file, &perr);
    if (p == NULL) {
        policy_format_error(&perr, err, sizeof err);
        fprintf(stderr, "sluice proxy: invalid policy: %s\n", err);
        return -1;
    }
    if (policy_needs_ca(p) && !state.have_ca) {
        fprintf(stderr,
                "sluice proxy: %s: a rule uses methods, paths or inject, which need TLS "
                "interception: give the CA with --ca DIR (make one with `sluice ca init`)\n",
                file);
        policy_unref(p);
        return -1;
    }
    proxy_policy_set(p); /* its warnings wait for the log (cmd_proxy_main) */
    state.policy_loaded_at = time(NULL);
    return 0;
}

static void add_own_address(struct proxy_config *cfg, const struct sockaddr_storage *ss)
{
    if (cfg->n_own < PROXY_MAX_OWN_ADDRS)
        cfg->own[cfg->n_own++] = *ss;
}

static int serve(struct proxy_options *o)
{
    char err[ERR_SIZE];
    struct admin *admin = NULL;
    struct event *signals[3] = {NULL, NULL, NULL};
    struct dirwatch *watch = NULL;
    int rc = EXIT_RUNTIME;

    state.base = event_base_new();
    if (state.base == NULL)
        return EXIT_RUNTIME;
    add_own_address(&o->cfg, &o->cfg.listen);
    if (strcmp(o->admin_addr, "none") != 0) {
        struct sockaddr_storage ss;
        socklen_t len;
        int fd;
        if (sockfd_given(o->admin_addr)
                ? sockfd_parse(o->admin_addr, SOCK_STREAM, &fd, &ss, &len, err, sizeof err) < 0
                : netaddr_parse(o->admin_addr, &ss, &len, err, sizeof err) < 0) {
            fprintf(stderr, "sluice proxy: --admin: %s\n", err);
            rc = EXIT_USAGE;
            goto out;
        }
        add_own_address(&o->cfg, &ss);
        struct admin_hooks hooks = {
            .arg = NULL,
            .reload = reload_policy,
            .install_policy = install_policy,
            .current_policy = current_policy,
            .ready = is_ready,
            .enforcement_mode = enforcement_mode,
            .sandbox = sandbox_mode,
            .policy_loaded_at = policy_loaded_at,
            .kernel_status = kernel_status,
            .dns_status = proxy_dns_status,
            .dns_learned = proxy_dns_learned,
            .approvals_list = approvals_list,
            .approval_answer = approval_answer_hook,
            .policy_dir = state.policy_dir,
        };
        if (admin_start(state.base, o->admin_addr, o->admin_token, &hooks, &admin, err,
                        sizeof err) < 0) {
            fprintf(stderr, "sluice proxy: admin API: %s\n", err);
            goto out;
        }
    }
    /* Nobody can answer a prompt without a token for the admin API or an
     * approver socket: then prompt rules deny at once. */
    approval_configure(o->prompt_timeout_s, admin != NULL && o->admin_token != NULL);
    if (o->approver_fd >= 0 && approval_attach_fd(state.base, o->approver_fd, err, sizeof err) < 0) {
        fprintf(stderr, "sluice proxy: %s\n", err);
        rc = EXIT_USAGE;
        goto out;
    }
    if (proxy_dns_start(&o->cfg, err, sizeof err) < 0) {
        fprintf(stderr, "sluice proxy: %s\n", err);
        goto out;
    }
    if (proxy_start(&o->cfg, err, sizeof err) < 0) {
        fprintf(stderr, "sluice proxy: %s\n", err);
        goto out;
    }
    const int sigs[3] = {SIGHUP, SIGTERM, SIGINT};
    for (int i = 0; i < 3; i++) {
        signals[i] = evsignal_new(state.base, sigs[i], on_signal, NULL);
        evsignal_add(signals[i], NULL);
    }
    if (proxy_clients_start(state.base, o->policy_file, o->clients_refresh_s) < 0) {
        fprintf(stderr, "sluice proxy: --clients-refresh: cannot make the timer\n");
        goto out;
    }
    if (o->watch_policy &&
        !(watch = dirwatch_start(state.base, o->policy_file, on_policy_change, NULL, err,
                                 sizeof err))) {
        fprintf(stderr, "sluice proxy: --watch-policy: %s\n", err);
        goto out;
    }
    /* Everything that needs more than the running proxy does (binding,
     * forking the signer, starting threads) is done: confine the process. */
    if (!o->no_seccomp && proxy_sandbox_install(err, sizeof err) < 0) {
        fprintf(stderr, "sluice proxy: %s (--no-seccomp runs without the filter)\n", err);
        goto out;
    }
    char where[80];
    netaddr_format(&o->cfg.listen, where, sizeof where);
    state.ready = true;
    log_message("info", "sluice proxy listening", where);
    /* Which kernel enforcement surrounds this process, for the record. */
    char *kernel = fw_nft_status_json();
    log_message("info", "enforcement", kernel ? kernel : "unknown");
    free(kernel);
    log_message(o->no_seccomp ? "warning" : "info", "sandbox",
                o->no_seccomp ? "seccomp filter off (--no-seccomp)" : "seccomp filter on");
    event_base_dispatch(state.base);
    proxy_dns_stop();
    proxy_stop();
    approval_shutdown();
    log_message("info", "stopped", NULL);
    rc = 0;
out:
    proxy_clients_stop();
    proxy_dns_stop();
    dirwatch_free(watch);
    for (int i = 0; i < 3; i++)
        if (signals[i])
            event_free(signals[i]);
    if (admin)
        admin_stop(admin);
    event_base_free(state.base);
    return rc;
}

int cmd_proxy_main(int argc, char **argv)
{
    struct proxy_options o;
    memset(&o, 0, sizeof o);
    char err[ERR_SIZE];
    if (parse_options(argc, argv, &o) < 0)
        return EXIT_USAGE;
    state.policy_file = o.policy_file;
    /* The directory as the file names it, like the loader (relative is
     * fine: the proxy never changes its working directory). */
    const char *slash = strrchr(o.policy_file, '/');
    snprintf(state.policy_dir, sizeof state.policy_dir, "%.*s",
             slash ? (slash == o.policy_file ? 1 : (int)(slash - o.policy_file)) : 1,
             slash ? o.policy_file : ".");
    state.have_ca = o.ca_dir != NULL;
    if (load_initial_policy(o.policy_file) < 0)
        return EXIT_USAGE;
    struct policy *initial = proxy_policy_get();
    int dns_ok = proxy_dns_check_policy(initial, o.policy_file, err, sizeof err);
    policy_unref(initial);
    if (dns_ok < 0) {
        fprintf(stderr, "sluice proxy: %s\n", err);
        proxy_policy_set(NULL);
        return EXIT_USAGE;
    }
    /* The signer process is forked here, before any thread exists. */
    if (intercept_init(o.ca_dir, o.upstream_ca, err, sizeof err) < 0) {
        fprintf(stderr, "sluice proxy: %s\n", err);
        proxy_policy_set(NULL);
        return EXIT_RUNTIME;
    }
    if (log_open(o.log_file, err, sizeof err) < 0) {
        fprintf(stderr, "sluice proxy: --log: %s\n", err);
        return EXIT_USAGE;
    }
    struct policy *loaded = proxy_policy_get();
    warn_unresolved(loaded);
    policy_unref(loaded);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    int rc = serve(&o);
    intercept_shutdown();
    proxy_policy_set(NULL);
    log_close();
    return rc;
}
