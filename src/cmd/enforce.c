/* sluice enforce: kernel rules so the workload cannot go around the proxy
 * (SPEC §6, docs/ENFORCE.md). The rules come from the pure generator in
 * src/fw/ruleset.c; this file reads options, probes, and hands the text to
 * libnftables (or iptables-restore). */
#include <errno.h>
#include <getopt.h>
#include <net/if.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "cmd/cmd.h"
#include "core/netaddr.h"
#include "fw/ipt.h"
#include "fw/learnset.h"
#include "fw/nft.h"
#include "fw/probe.h"
#include "fw/ruleset.h"
#include "policy/policy.h"

#define ENFORCE_ERR_SIZE 1024
#define ENFORCE_MAX_LEARN_ADDRS 64

const char cmd_enforce_help[] =
    "usage: sluice enforce apply|remove|show [--mode uid|host|isolate] [--dry-run] [options]\n"
    "       sluice enforce learn --policy FILE [--ttl SEC] NAME ADDR...\n"
    "\n"
    "Kernel rules (nftables; iptables where nftables is missing) so the workload\n"
    "cannot go around the proxy. See docs/ENFORCE.md.\n"
    "\n"
    "apply   probe, then replace sluice's tables in one transaction\n"
    "remove  delete sluice's tables (only them); host mode with --container-ip:\n"
    "        only that container's rules\n"
    "show    enforcement mode, drop counters and the live rules of sluice's tables\n"
    "learn   add NAME's addresses to the isolate allow sets, on the ports the\n"
    "        policy allows NAME on, for --ttl seconds (what the DNS filter does)\n"
    "\n"
    "modes:\n"
    "  uid      (default) in the pod's network namespace, every process but sluice's\n"
    "           own may reach only loopback (proxy, admin, --allow-local-port), the\n"
    "           DNS filter (port 53 to any address is sent there) and replies\n"
    "  isolate  uid, plus the policy's address rules and the addresses the DNS\n"
    "           filter learned (with their TTL); port 853 (DoT) dropped\n"
    "  host     on a container host: per --container-ip, allow only the proxy at\n"
    "           --proxy-addr and the DNS filter, in a chain on the forward hook\n"
    "\n"
    "options:\n"
    "  --dry-run               print the exact script and change nothing\n"
    "  --proxy-port N          the proxy's port (default 8080)\n"
    "  --admin-port N          the admin port (default 8081; 0: not reachable)\n"
    "  --allow-local-port N    another loopback port the workload may reach (repeat)\n"
    "  --dns ADDR:PORT         the DNS filter; every query to port 53 goes there\n"
    "  --mark N                sluice's socket mark (default 0x5c1ce, as the DNS filter)\n"
    "  --uid USER|N            also let this UID's sockets out: for a sluice without\n"
    "                          CAP_NET_ADMIN (weaker: a root workload can take a UID)\n"
    "  --transparent           redirect the workload's TCP 80/443 to the proxy port\n"
    "                          (a local proxy: not with --proxy-addr)\n"
    "  --policy FILE           isolate: the address rules; learn: the ports per name\n"
    "  --interface IF          drop unmarked frames leaving IF (AF_PACKET senders);\n"
    "                          repeat; default: every interface but lo\n"
    "  --container-ip IP       host: the container the rules are for\n"
    "  --proxy-addr IP         host: where containers reach the proxy; uid, isolate:\n"
    "                          a proxy outside the pod (a central gateway) at\n"
    "                          IP:--proxy-port, reachable besides loopback\n"
    "  --backend auto|nftables|iptables   (default auto: nftables, else iptables)\n"
    "  --ttl SEC               learn: seconds the elements live (default 60)\n"
    "  --json                  show: mode and drop counters as the admin API's JSON\n"
    "\n"
    "Exit status: 0 ok; 1 the rules could not be read or written (no CAP_NET_ADMIN,\n"
    "no backend, refused by the kernel); 2 bad usage, an invalid policy, or a pod\n"
    "mode in the host's network namespace.\n";

enum {
    OPT_MODE = 256,
    OPT_DRY_RUN,
    OPT_PROXY_PORT,
    OPT_ADMIN_PORT,
    OPT_DNS,
    OPT_LOCAL_PORT,
    OPT_MARK,
    OPT_UID,
    OPT_TRANSPARENT,
    OPT_POLICY,
    OPT_INTERFACE,
    OPT_CONTAINER_IP,
    OPT_PROXY_ADDR,
    OPT_BACKEND,
    OPT_TTL,
    OPT_JSON,
};

struct enforce_args {
    const char *action;
    struct fw_options fw;
    bool dry_run;
    bool interfaces_given;
    const char *policy_file;
    const char *backend; /* auto, nftables, iptables */
    uint32_t ttl;
    bool json;         /* show: the admin API's enforcement object */
    char *const *rest; /* learn: NAME ADDR... */
    int n_rest;
    struct policy *policy;
    struct fw_cidr_rule *cidr_rules;
};

__attribute__((format(printf, 1, 2))) static int usage(const char *fmt, ...)
{
    va_list ap;
    fputs("sluice enforce: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nusage: sluice enforce apply|remove|show [--mode uid|host|isolate] [--dry-run] "
          "[options]\n(sluice enforce --help lists the options)\n",
          stderr);
    return EXIT_USAGE;
}

static int number(const char *text, unsigned long long max, unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v > max)
        return -1;
    *out = v;
    return 0;
}

static int port_arg(const char *opt, const char *text, bool zero_ok, uint16_t *out)
{
    unsigned long long v;
    if (number(text, 65535, &v) < 0 || (v == 0 && !zero_ok)) {
        fprintf(stderr, "sluice enforce: %s must be a port from %d to 65535, not '%s'\n", opt,
                zero_ok ? 0 : 1, text);
        return -1;
    }
    *out = (uint16_t)v;
    return 0;
}

static int ip_arg(const char *opt, const char *text, struct cidr *out)
{
    const char *why = "not an IP address";
    if (cidr_parse(text, out, &why) < 0 || out->prefix != (out->family == AF_INET6 ? 128 : 32)) {
        fprintf(stderr, "sluice enforce: %s: '%s' is %s\n", opt, text,
                strchr(text, '/') ? "a range, not one address" : why);
        return -1;
    }
    return 0;
}

static int uid_arg(const char *text, uint32_t *out)
{
    unsigned long long v;
    if (number(text, UINT32_MAX - 1, &v) == 0) {
        *out = (uint32_t)v;
        return 0;
    }
    struct passwd *pw = getpwnam(text);
    if (!pw) {
        fprintf(stderr, "sluice enforce: --uid: no user '%s'\n", text);
        return -1;
    }
    *out = (uint32_t)pw->pw_uid;
    return 0;
}

static int dns_arg(const char *text, struct fw_options *o)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char err[256];
    if (netaddr_parse(text, &ss, &len, err, sizeof err) < 0) {
        fprintf(stderr, "sluice enforce: --dns: %s\n", err);
        return -1;
    }
    memset(&o->dns_addr, 0, sizeof o->dns_addr);
    o->dns_addr.family = ss.ss_family;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        memcpy(o->dns_addr.bytes, &sin->sin_addr, 4);
        o->dns_addr.prefix = 32;
        o->dns_port = ntohs(sin->sin_port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        memcpy(o->dns_addr.bytes, &sin6->sin6_addr, 16);
        o->dns_addr.prefix = 128;
        o->dns_port = ntohs(sin6->sin6_port);
    }
    o->has_dns = true;
    return 0;
}

static int option(struct enforce_args *a, int opt, const char *arg)
{
    struct fw_options *o = &a->fw;
    unsigned long long v;
    switch (opt) {
    case OPT_MODE:
        if (fw_mode_parse(arg, &o->mode) < 0)
            return usage("--mode must be uid, host or isolate, not '%s'", arg);
        return 0;
    case OPT_DRY_RUN:
        a->dry_run = true;
        return 0;
    case OPT_PROXY_PORT:
        return port_arg("--proxy-port", arg, false, &o->proxy_port);
    case OPT_ADMIN_PORT:
        return port_arg("--admin-port", arg, true, &o->admin_port);
    case OPT_LOCAL_PORT:
        if (o->n_local_ports == FW_MAX_LOCAL_PORTS)
            return usage("at most %d --allow-local-port options", FW_MAX_LOCAL_PORTS);
        return port_arg("--allow-local-port", arg, false, &o->local_ports[o->n_local_ports++]);
    case OPT_DNS:
        return dns_arg(arg, o);
    case OPT_MARK:
        if (number(arg, UINT32_MAX, &v) < 0 || v == 0)
            return usage("--mark must be a 32-bit number other than 0 (e.g. 0x5c1ce), not '%s'",
                         arg);
        o->mark = (uint32_t)v;
        return 0;
    case OPT_UID:
        o->has_uid = true;
        return uid_arg(arg, &o->uid);
    case OPT_TRANSPARENT:
        o->transparent = true;
        return 0;
    case OPT_POLICY:
        a->policy_file = arg;
        return 0;
    case OPT_INTERFACE:
        if (o->n_interfaces == FW_MAX_INTERFACES)
            return usage("at most %d --interface options", FW_MAX_INTERFACES);
        if (strlen(arg) == 0 || strlen(arg) >= FW_IFNAME_SIZE)
            return usage("--interface '%s' is not an interface name", arg);
        snprintf(o->interfaces[o->n_interfaces++], FW_IFNAME_SIZE, "%s", arg);
        a->interfaces_given = true;
        return 0;
    case OPT_CONTAINER_IP:
        o->has_container = true;
        return ip_arg("--container-ip", arg, &o->container);
    case OPT_PROXY_ADDR:
        o->has_proxy_addr = true;
        return ip_arg("--proxy-addr", arg, &o->proxy_addr);
    case OPT_BACKEND:
        if (strcmp(arg, "auto") && strcmp(arg, "nftables") && strcmp(arg, "iptables"))
            return usage("--backend must be auto, nftables or iptables, not '%s'", arg);
        a->backend = arg;
        return 0;
    case OPT_JSON:
        a->json = true;
        return 0;
    case OPT_TTL:
        if (number(arg, 604800, &v) < 0 || v == 0)
            return usage("--ttl must be seconds from 1 to 604800, not '%s'", arg);
        a->ttl = (uint32_t)v;
        return 0;
    }
    return usage("unknown option");
}

static int parse_args(int argc, char **argv, struct enforce_args *a)
{
    static const struct option longopts[] = {
        {"mode", required_argument, NULL, OPT_MODE},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"proxy-port", required_argument, NULL, OPT_PROXY_PORT},
        {"admin-port", required_argument, NULL, OPT_ADMIN_PORT},
        {"dns", required_argument, NULL, OPT_DNS},
        {"allow-local-port", required_argument, NULL, OPT_LOCAL_PORT},
        {"mark", required_argument, NULL, OPT_MARK},
        {"uid", required_argument, NULL, OPT_UID},
        {"transparent", no_argument, NULL, OPT_TRANSPARENT},
        {"policy", required_argument, NULL, OPT_POLICY},
        {"interface", required_argument, NULL, OPT_INTERFACE},
        {"container-ip", required_argument, NULL, OPT_CONTAINER_IP},
        {"proxy-addr", required_argument, NULL, OPT_PROXY_ADDR},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"json", no_argument, NULL, OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    int opt;
    memset(a, 0, sizeof *a);
    fw_options_defaults(&a->fw);
    a->backend = "auto";
    a->ttl = 60;
    if (argc < 2 || argv[1][0] == '-')
        return usage("say apply, remove, show or learn");
    a->action = argv[1];
    if (strcmp(a->action, "apply") && strcmp(a->action, "remove") && strcmp(a->action, "show") &&
        strcmp(a->action, "learn"))
        return usage("unknown action '%s' (apply, remove, show, learn)", a->action);
    optind = 2;
    opterr = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == '?')
            return usage("bad option");
        if (option(a, opt, optarg) != 0)
            return EXIT_USAGE;
    }
    a->rest = argv + optind;
    a->n_rest = argc - optind;
    if (strcmp(a->action, "learn") != 0 && a->n_rest > 0)
        return usage("unexpected argument '%s'", a->rest[0]);
    return 0;
}

/* ---- policy address rules ------------------------------------------------ */

/* One rule's JSON as `policy explain` shows it: {"allow": TARGET, ...} or
 * the OpenSandbox form {"action": ..., "target": ...}. Address rules (an
 * IP or CIDR target) become kernel rules; names are the proxy's and the
 * DNS filter's business. Returns 1 when r was filled. */
static int address_rule(const char *text, struct fw_cidr_rule *r)
{
    json_t *rule = json_loads(text, 0, NULL);
    const char *target = NULL, *action = NULL;
    int found = 0;
    if (!rule)
        return 0;
    if (json_is_string(json_object_get(rule, "allow"))) {
        action = "allow";
        target = json_string_value(json_object_get(rule, "allow"));
    } else if (json_is_string(json_object_get(rule, "deny"))) {
        action = "deny";
        target = json_string_value(json_object_get(rule, "deny"));
    } else if (json_is_string(json_object_get(rule, "target"))) {
        action = json_string_value(json_object_get(rule, "action"));
        target = json_string_value(json_object_get(rule, "target"));
    }
    const char *why = NULL;
    memset(r, 0, sizeof *r);
    if (action && target && (strcmp(action, "allow") == 0 || strcmp(action, "deny") == 0) &&
        cidr_parse(target, &r->net, &why) == 0) {
        size_t i;
        json_t *v;
        r->deny = strcmp(action, "deny") == 0;
        json_array_foreach(json_object_get(rule, "ports"), i, v)
        {
            json_int_t p = json_integer_value(v);
            if (p >= 1 && p <= 65535 && r->n_ports < FW_MAX_RULE_PORTS)
                r->ports[r->n_ports++] = (uint16_t)p;
        }
        found = 1;
    }
    json_decref(rule);
    return found;
}

static int load_policy(struct enforce_args *a)
{
    struct policy_error perr;
    char msg[ENFORCE_ERR_SIZE];
    a->policy = policy_load_file(a->policy_file, &perr);
    if (!a->policy) {
        policy_format_error(&perr, msg, sizeof msg);
        fprintf(stderr, "sluice enforce: %s\n", msg);
        return -1;
    }
    if (a->fw.mode != FW_MODE_ISOLATE)
        return 0;
    size_t n = policy_rule_count(a->policy), k = 0;
    if (n > FW_MAX_CIDR_RULES) {
        fprintf(stderr, "sluice enforce: %s: more than %d rules\n", a->policy_file,
                FW_MAX_CIDR_RULES);
        return -1;
    }
    a->cidr_rules = calloc(n ? n : 1, sizeof *a->cidr_rules);
    if (!a->cidr_rules) {
        fprintf(stderr, "sluice enforce: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        k += (size_t)address_rule(policy_rule_text(a->policy, i), &a->cidr_rules[k]);
    a->fw.cidr_rules = a->cidr_rules;
    a->fw.n_cidr_rules = k;
    return 0;
}

/* ---- apply, remove, show ------------------------------------------------- */

/* Every interface but loopback: what leaves the pod leaves through them. */
static void default_interfaces(struct fw_options *o)
{
    struct if_nameindex *ifs = if_nameindex();
    if (!ifs)
        return;
    for (struct if_nameindex *i = ifs; i->if_name && o->n_interfaces < FW_MAX_INTERFACES; i++)
        if (strcmp(i->if_name, "lo") != 0 && strlen(i->if_name) < FW_IFNAME_SIZE)
            snprintf(o->interfaces[o->n_interfaces++], FW_IFNAME_SIZE, "%s", i->if_name);
    if_freenameindex(ifs);
}

static void describe(const struct fw_options *o, enum fw_backend b, FILE *out)
{
    fprintf(out, "mode %s with %s; sluice's own sockets: mark 0x%x", fw_mode_name(o->mode),
            fw_backend_name(b), (unsigned)o->mark);
    if (o->has_uid)
        fprintf(out, " or uid %u (weaker: a root workload could take that UID)", (unsigned)o->uid);
    if (o->transparent)
        fprintf(out, "; TCP 80/443 redirected to port %u", (unsigned)o->proxy_port);
    if (o->mode != FW_MODE_HOST) {
        fprintf(out, "; unmarked frames dropped on ");
        if (o->n_interfaces == 0)
            fprintf(out, "no interface");
        for (size_t i = 0; i < o->n_interfaces; i++)
            fprintf(out, "%s%s", i ? ", " : "", o->interfaces[i]);
    }
    fputc('\n', out);
}

static char *generate(const struct enforce_args *a, bool remove)
{
    char err[ENFORCE_ERR_SIZE];
    char *buf = malloc(FW_SCRIPT_MAX);
    struct fw_text t;
    if (!buf) {
        fprintf(stderr, "sluice enforce: out of memory\n");
        return NULL;
    }
    fw_text_init(&t, buf, FW_SCRIPT_MAX);
    int rc = remove ? fw_ruleset_remove(&a->fw, &t, err, sizeof err)
                    : fw_ruleset_apply(&a->fw, &t, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "sluice enforce: %s\n", err);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Which backend to use, after the probe; prints why not when none. */
static enum fw_backend pick_backend(const struct enforce_args *a, const struct fw_probe *p)
{
    bool want_nft = strcmp(a->backend, "iptables") != 0;
    bool want_ipt = strcmp(a->backend, "nftables") != 0;
    if (want_nft && p->nftables)
        return FW_BACKEND_NFTABLES;
    if (want_ipt && p->has_iptables && a->fw.mode == FW_MODE_UID)
        return FW_BACKEND_IPTABLES;
    if (want_nft)
        fprintf(stderr, "sluice enforce: nftables does not answer here: %s\n", p->nft_why);
    if (want_ipt && !p->has_iptables)
        fprintf(stderr, "sluice enforce: no iptables-restore/ip6tables-restore found\n");
    else if (want_ipt)
        fprintf(stderr, "sluice enforce: the iptables fallback does --mode uid only\n");
    return FW_BACKEND_NONE;
}

static bool use_iptables(const struct enforce_args *a, const struct fw_probe *p)
{
    return p->has_iptables && (strcmp(a->backend, "iptables") == 0 ||
                               (strcmp(a->backend, "auto") == 0 && !p->nftables));
}

static int probe_for_change(const struct enforce_args *a, struct fw_probe *p, bool apply)
{
    fw_probe_run(p, strcmp(a->backend, "iptables") != 0);
    if (apply && p->netns == FW_NETNS_HOST && a->fw.mode != FW_MODE_HOST) {
        fprintf(stderr,
                "sluice enforce: refusing --mode %s in the host's network namespace: its rules "
                "would cut off every process on this machine. Run it in the pod's (or "
                "sandbox's) network namespace, or use --mode host on a container host.\n",
                fw_mode_name(a->fw.mode));
        return EXIT_USAGE;
    }
    if (apply && p->netns == FW_NETNS_UNKNOWN && a->fw.mode != FW_MODE_HOST)
        fprintf(stderr, "sluice enforce: warning: cannot tell whether this is the host's "
                        "network namespace (older kernel, other PID namespace); going on\n");
    if (!p->cap_net_admin) {
        fprintf(stderr, "sluice enforce: CAP_NET_ADMIN is needed to change the kernel's rules "
                        "(run as root, or grant NET_ADMIN to this container)\n");
        return EXIT_RUNTIME;
    }
    return 0;
}

#define PREPARED (-1)

/* The first steps of apply and remove: the script, printed and done for
 * --dry-run, else the probe that may refuse the change. Returns PREPARED
 * with *script set (the caller frees it), or the exit status. */
static int prepare_change(struct enforce_args *a, bool removing, struct fw_probe *p,
                          char **script)
{
    *script = generate(a, removing);
    if (*script == NULL)
        return EXIT_USAGE;
    int rc = a->dry_run ? 0 : probe_for_change(a, p, !removing);
    if (a->dry_run)
        fputs(*script, stdout);
    if (a->dry_run || rc != 0) {
        free(*script);
        *script = NULL;
        return rc;
    }
    return PREPARED;
}

static int do_apply(struct enforce_args *a)
{
    char err[ENFORCE_ERR_SIZE];
    struct fw_probe p;
    int rc;

    if (!a->interfaces_given && a->fw.mode != FW_MODE_HOST)
        default_interfaces(&a->fw);
    if (a->dry_run && strcmp(a->backend, "iptables") == 0) {
        static const int fams[] = {AF_INET, AF_INET6};
        char *buf = malloc(FW_SCRIPT_MAX);
        for (size_t f = 0; buf && f < 2; f++) {
            struct fw_text t;
            fw_text_init(&t, buf, FW_SCRIPT_MAX);
            if (fw_ruleset_iptables(&a->fw, fams[f], false, false, &t, err, sizeof err) < 0) {
                fprintf(stderr, "sluice enforce: %s\n", err);
                free(buf);
                return EXIT_USAGE;
            }
            printf("# %s\n%s",
                   fams[f] == AF_INET ? "iptables-restore --noflush"
                                      : "ip6tables-restore --noflush",
                   buf);
        }
        free(buf);
        return buf ? 0 : EXIT_RUNTIME;
    }
    char *script = NULL;
    if ((rc = prepare_change(a, false, &p, &script)) != PREPARED)
        return rc;
    enum fw_backend b = pick_backend(a, &p);
    if (b == FW_BACKEND_NONE)
        rc = EXIT_RUNTIME;
    else if (b == FW_BACKEND_NFTABLES)
        rc = fw_nft_run_script(script, err, sizeof err) == 0 ? 0 : EXIT_RUNTIME;
    else
        rc = fw_ipt_apply(&p, &a->fw, err, sizeof err) == 0 ? 0 : EXIT_RUNTIME;
    free(script);
    if (rc == EXIT_RUNTIME && b != FW_BACKEND_NONE)
        fprintf(stderr, "sluice enforce: the rules were not applied (nothing changed): %s\n", err);
    if (rc == 0) {
        fprintf(stderr, "sluice enforce: applied ");
        describe(&a->fw, b, stderr);
    }
    return rc;
}

static int do_remove(struct enforce_args *a)
{
    char err[ENFORCE_ERR_SIZE];
    struct fw_probe p;
    int rc;
    char *script = NULL;
    if ((rc = prepare_change(a, true, &p, &script)) != PREPARED)
        return rc;
    rc = 0;
    if (p.nftables && fw_nft_run_script(script, err, sizeof err) < 0) {
        fprintf(stderr, "sluice enforce: removing sluice's tables failed: %s\n", err);
        rc = EXIT_RUNTIME;
    }
    free(script);
    /* The fallback's chains, where the fallback was (or would be) used;
     * asking iptables elsewhere could itself leave tables behind. */
    if (use_iptables(a, &p) && a->fw.mode != FW_MODE_HOST && fw_ipt_present(&p) &&
        fw_ipt_remove(&p, err, sizeof err) < 0) {
        fprintf(stderr, "sluice enforce: %s\n", err);
        rc = EXIT_RUNTIME;
    }
    if (!p.nftables && !p.has_iptables) {
        fprintf(stderr, "sluice enforce: neither nftables nor iptables answers here: %s\n",
                p.nft_why);
        rc = EXIT_RUNTIME;
    }
    if (rc == 0)
        fprintf(stderr, "sluice enforce: removed\n");
    return rc;
}

static void print_counters(const struct fw_nft_state *st)
{
    printf("drops:");
    for (size_t i = 0; i < st->n_counters; i++)
        printf(" %s=%llu", st->counters[i].name, (unsigned long long)st->counters[i].packets);
    printf("%s\n", st->n_counters ? "" : " (no counters)");
}

static int do_show(struct enforce_args *a)
{
    char err[ENFORCE_ERR_SIZE];
    struct fw_probe p;
    struct fw_nft_state st;
    char *text = NULL;

    fw_probe_run(&p, strcmp(a->backend, "iptables") != 0);
    if (!p.cap_net_admin) {
        fprintf(stderr, "sluice enforce: CAP_NET_ADMIN is needed to read the kernel's rules\n");
        return EXIT_RUNTIME;
    }
    if (a->json) {
        char *j = fw_nft_status_json();
        if (!j)
            return EXIT_RUNTIME;
        printf("%s\n", j);
        free(j);
        return 0;
    }
    printf("namespace: %s\n", fw_netns_name(p.netns));
    if (p.nftables && fw_nft_state(&st, err, sizeof err) == 0 && (st.table || st.egress)) {
        const char *mode = strstr(st.comment, "mode=isolate") ? "isolate" : "nftables";
        printf("enforcement: %s (%s)\n", mode, st.comment[0] ? st.comment : "no comment");
        print_counters(&st);
        if (st.table &&
            fw_nft_list("list table inet " FW_TABLE, false, &text, err, sizeof err) == 0) {
            fputs(text, stdout);
            free(text);
        }
        if (st.egress &&
            fw_nft_list("list table netdev " FW_EGRESS_TABLE, false, &text, err, sizeof err) == 0) {
            fputs(text, stdout);
            free(text);
        }
        return 0;
    }
    if (use_iptables(a, &p) && fw_ipt_present(&p)) {
        printf("enforcement: iptables (%s)\n", p.iptables_restore);
        fflush(stdout);
        return fw_ipt_show(&p);
    }
    printf("enforcement: none (no sluice rules in this network namespace)\n");
    return 0;
}

/* ---- learn --------------------------------------------------------------- */

static struct policy *learn_policy;

static struct policy *learn_policy_get(void)
{
    return policy_ref(learn_policy);
}

static int do_learn(struct enforce_args *a)
{
    struct learned e[ENFORCE_MAX_LEARN_ADDRS];
    char err[ENFORCE_ERR_SIZE];
    size_t n = 0;
    if (!a->policy)
        return usage("learn needs --policy FILE (it says which ports a name may use)");
    if (a->n_rest < 2)
        return usage("learn needs a NAME and at least one ADDR");
    if (a->n_rest - 1 > ENFORCE_MAX_LEARN_ADDRS)
        return usage("learn takes at most %d addresses", ENFORCE_MAX_LEARN_ADDRS);
    for (int i = 1; i < a->n_rest; i++) {
        struct cidr c;
        if (ip_arg("learn", a->rest[i], &c) < 0)
            return EXIT_USAGE;
        memset(&e[n], 0, sizeof e[n]);
        e[n].family = c.family;
        memcpy(e[n].addr, c.bytes, sizeof e[n].addr);
        e[n].ttl = a->ttl;
        snprintf(e[n].name, sizeof e[n].name, "%s", a->rest[0]);
        n++;
    }
    uint16_t ports[FW_LEARNSET_MAX_PORTS];
    size_t np = fw_learnset_ports(a->policy, a->rest[0], ports, FW_LEARNSET_MAX_PORTS);
    if (np == 0) {
        fprintf(stderr, "sluice enforce: the policy does not allow %s on any port\n", a->rest[0]);
        return EXIT_USAGE;
    }
    learn_policy = a->policy;
    struct fw_learnset_config cfg = {.policy_get = learn_policy_get};
    struct fw_learnset *s = fw_learnset_new(&cfg, err, sizeof err);
    if (!s) {
        fprintf(stderr, "sluice enforce: %s\n", err);
        return EXIT_RUNTIME;
    }
    struct learn_sink sink = fw_learnset_sink(s);
    int rc = sink.publish(sink.arg, e, n) == 0 ? 0 : EXIT_RUNTIME;
    if (rc)
        fprintf(stderr, "sluice enforce: could not add the elements (is --mode isolate "
                        "applied here?)\n");
    else
        fprintf(stderr, "sluice enforce: learned %zu address(es) of %s on %zu port(s) for %us\n", n,
                a->rest[0], np, (unsigned)a->ttl);
    fw_learnset_free(s);
    return rc;
}

int cmd_enforce_main(int argc, char **argv)
{
    struct enforce_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    if (a.policy_file && load_policy(&a) < 0) {
        rc = EXIT_USAGE;
        goto out;
    }
    if (a.policy_file && a.fw.mode != FW_MODE_ISOLATE && strcmp(a.action, "learn") != 0) {
        rc = usage("--policy is read by --mode isolate (its address rules) and learn");
        goto out;
    }
    if (strcmp(a.action, "apply") == 0)
        rc = do_apply(&a);
    else if (strcmp(a.action, "remove") == 0)
        rc = do_remove(&a);
    else if (strcmp(a.action, "show") == 0)
        rc = do_show(&a);
    else
        rc = do_learn(&a);
out:
    free(a.cidr_rules);
    if (a.policy)
        policy_unref(a.policy);
    return rc;
}
