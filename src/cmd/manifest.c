/* sluice manifest: Kubernetes and Podman objects that wire the proxy, the
 * DNS filter and the kernel rules around a workload (docs/DEPLOY.md).
 *
 * This file reads the options and the policies, refuses what would not
 * work (exit 2 with the option or file named), and hands the rest to the
 * pure generators in src/deploy/. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "cmd/cmd.h"
#include "deploy/manifest.h"
#include "deploy/yaml.h"
#include "policy/addr.h"
#include "policy/policy.h"

#define COMMENT_SIZE 4096
#define PATH_SIZE 4096
#define SANDBOX_HOST_OFFSET 10 /* sandboxes from .10 of the subnet: room for the gateway */

const char cmd_manifest_help[] =
    "usage: sluice manifest k8s --policy FILE [options]\n"
    "       sluice manifest podman --policy FILE --subnet CIDR --sandbox NAME[=IMAGE]... "
    "[options]\n"
    "\n"
    "Prints YAML that runs a workload behind sluice (docs/DEPLOY.md).\n"
    "\n"
    "k8s     a Pod with sluice as a native sidecar, the kernel rules applied by an\n"
    "        init container before it (NET_ADMIN there only), the workload with\n"
    "        every capability dropped, and the policy in a ConfigMap; or (--gateway)\n"
    "        a shared gateway: Deployment, Service and a NetworkPolicy for sandboxes\n"
    "podman  for `podman kube play`: a gateway pod on the host's network and sandbox\n"
    "        pods on an --internal network, each with a jailer init container\n"
    "\n"
    "common options:\n"
    "  --policy FILE            the policy (its \"clients\" files are shipped too)\n"
    "  --image IMG              sluice's image (default " MANIFEST_DEFAULT_IMAGE ")\n"
    "  --workload-image IMG     the workload's image\n"
    "  --workload-command ARG   the workload's command, one ARG per option (repeat)\n"
    "  --workload-uid N         run the workload as N (default 1000; 0: as root, still\n"
    "                           without capabilities; -1: the image's user)\n"
    "  --name NAME              pod or instance name (default sandbox / sluice)\n"
    "  --proxy-port N           proxy port (default 8080)\n"
    "  --admin-port N           admin port (default 8081)\n"
    "  --dns-port N             the DNS filter's port (default 5353, no privilege needed;\n"
    "                           the kernel rules send every port-53 query there)\n"
    "\n"
    "k8s options:\n"
    "  --format pod|patch|configmap  a Pod and its policy ConfigMap; or a strategic-\n"
    "                           merge patch for a workload's pod template\n"
    "                           (kubectl patch deployment NAME --patch-file FILE); or\n"
    "                           the ConfigMap alone (default pod)\n"
    "  --warm                   start with a deny-all policy; the real one is sent later\n"
    "                           with PUT /policy (admin token from Secret sluice-admin-token)\n"
    "  --runtime-class NAME     runtimeClassName (e.g. kata)\n"
    "  --executor-port N        a port the workload serves and may reach on loopback\n"
    "                           (default 8666; 0: none)\n"
    "  --gateway                the central-gateway layout instead of a sidecar\n"
    "  --replicas N             --gateway: gateway replicas (default 2)\n"
    "  --container NAME         --format patch: the workload container to patch\n"
    "                           (default workload)\n"
    "\n"
    "podman options:\n"
    "  --sandbox NAME[=IMAGE]   a sandbox pod (repeat; IMAGE default --workload-image)\n"
    "  --client-policy NAME=FILE  sandbox NAME's own policy (a \"clients\" entry)\n"
    "  --subnet CIDR            the --internal network's IPv4 subnet; to let podman\n"
    "                           choose: podman network create --internal NET, then\n"
    "                           podman network inspect -f '{{range .Subnets}}{{.Subnet}}"
    "{{end}}' NET\n"
    "  --network NAME           the network (default sluice-sandbox)\n"
    "  --gateway-addr IP        where sandboxes reach the gateway (default: the\n"
    "                           subnet's first address, podman's bridge)\n"
    "  --ca-dir DIR             the CA directory on the host, for interception\n"
    "  --only gateway|sandboxes print one part (each is played with its own command)\n"
    "\n"
    "Exit status: 0 ok; 1 a file could not be read; 2 bad usage or an invalid policy.\n";

enum {
    OPT_POLICY = 256,
    OPT_IMAGE,
    OPT_WORKLOAD_IMAGE,
    OPT_WORKLOAD_COMMAND,
    OPT_WORKLOAD_UID,
    OPT_NAME,
    OPT_PROXY_PORT,
    OPT_ADMIN_PORT,
    OPT_FORMAT,
    OPT_WARM,
    OPT_RUNTIME_CLASS,
    OPT_EXECUTOR_PORT,
    OPT_DNS_PORT,
    OPT_GATEWAY,
    OPT_REPLICAS,
    OPT_CONTAINER,
    OPT_SANDBOX,
    OPT_CLIENT_POLICY,
    OPT_SUBNET,
    OPT_NETWORK,
    OPT_GATEWAY_ADDR,
    OPT_CA_DIR,
    OPT_ONLY,
};

struct client_policy {
    const char *name;
    const char *file;
};

struct manifest_args {
    const char *target; /* k8s, podman */
    const char *policy_file;
    struct client_policy client_policies[MANIFEST_MAX_SANDBOXES];
    size_t n_client_policies;
    char *commands[256];
    struct manifest_opts o;
    char gateway_addr[64];
};

__attribute__((format(printf, 1, 2))) static int usage(const char *fmt, ...)
{
    va_list ap;
    fputs("sluice manifest: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nusage: sluice manifest k8s|podman --policy FILE [options]\n"
          "(sluice manifest --help lists the options)\n",
          stderr);
    return EXIT_USAGE;
}

/* A DNS-1123 label: what Kubernetes and podman accept as a pod or
 * container name and what a ConfigMap key built from it needs. */
static bool dns_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MANIFEST_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static int port_opt(const char *opt, const char *text, bool zero_ok, uint16_t *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < (zero_ok ? 0 : 1) || v > 65535)
        return usage("%s must be a port from %d to 65535, not '%s'", opt, zero_ok ? 0 : 1, text);
    *out = (uint16_t)v;
    return 0;
}

static int uid_opt(const char *text, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < -1 || v > 2147483647)
        return usage("--workload-uid must be a UID (0 to 2147483647) or -1, not '%s'", text);
    *out = v;
    return 0;
}

static int sandbox_opt(struct manifest_args *a, char *text)
{
    struct manifest_opts *o = &a->o;
    if (o->n_sandboxes == MANIFEST_MAX_SANDBOXES)
        return usage("at most %d --sandbox options", MANIFEST_MAX_SANDBOXES);
    char *eq = strchr(text, '=');
    if (eq)
        *eq = '\0';
    if (!dns_label(text))
        return usage("--sandbox: '%s' is not a pod name (lower-case letters, digits and '-', "
                     "at most 63)",
                     text);
    if (eq && eq[1] == '\0')
        return usage("--sandbox %s=: the image is empty", text);
    for (size_t i = 0; i < o->n_sandboxes; i++)
        if (strcmp(o->sandboxes[i].name, text) == 0)
            return usage("--sandbox %s given twice", text);
    o->sandboxes[o->n_sandboxes].name = text;
    o->sandboxes[o->n_sandboxes].image = eq ? eq + 1 : NULL;
    o->n_sandboxes++;
    return 0;
}

static int client_policy_opt(struct manifest_args *a, char *text)
{
    char *eq = strchr(text, '=');
    if (!eq || eq == text || eq[1] == '\0')
        return usage("--client-policy wants NAME=FILE, not '%s'", text);
    if (a->n_client_policies == MANIFEST_MAX_SANDBOXES)
        return usage("at most %d --client-policy options", MANIFEST_MAX_SANDBOXES);
    *eq = '\0';
    a->client_policies[a->n_client_policies].name = text;
    a->client_policies[a->n_client_policies].file = eq + 1;
    a->n_client_policies++;
    return 0;
}

static int option(struct manifest_args *a, int opt, char *arg)
{
    struct manifest_opts *o = &a->o;
    switch (opt) {
    case OPT_POLICY:
        a->policy_file = arg;
        return 0;
    case OPT_IMAGE:
        o->image = arg;
        return 0;
    case OPT_WORKLOAD_IMAGE:
        o->workload_image = arg;
        return 0;
    case OPT_WORKLOAD_COMMAND:
        if (o->n_command == sizeof a->commands / sizeof a->commands[0])
            return usage("too many --workload-command arguments");
        a->commands[o->n_command++] = arg;
        return 0;
    case OPT_WORKLOAD_UID:
        return uid_opt(arg, &o->workload_uid);
    case OPT_NAME:
        if (!dns_label(arg))
            return usage("--name: '%s' is not a DNS label (lower-case letters, digits and "
                         "'-', at most 63)",
                         arg);
        o->name = arg;
        return 0;
    case OPT_PROXY_PORT:
        return port_opt("--proxy-port", arg, false, &o->proxy_port);
    case OPT_ADMIN_PORT:
        return port_opt("--admin-port", arg, false, &o->admin_port);
    case OPT_FORMAT:
        if (strcmp(arg, "pod") && strcmp(arg, "patch") && strcmp(arg, "configmap"))
            return usage("--format must be pod, patch or configmap, not '%s'", arg);
        o->format = arg;
        return 0;
    case OPT_WARM:
        o->warm = true;
        return 0;
    case OPT_RUNTIME_CLASS:
        if (!dns_label(arg))
            return usage("--runtime-class: '%s' is not a RuntimeClass name", arg);
        o->runtime_class = arg;
        return 0;
    case OPT_EXECUTOR_PORT:
        return port_opt("--executor-port", arg, true, &o->executor_port);
    case OPT_DNS_PORT:
        return port_opt("--dns-port", arg, false, &o->dns_port);
    case OPT_GATEWAY:
        o->gateway = true;
        return 0;
    case OPT_REPLICAS: {
        uint16_t n;
        if (port_opt("--replicas", arg, false, &n) != 0)
            return EXIT_USAGE;
        if (n > 100)
            return usage("--replicas must be from 1 to 100, not '%s'", arg);
        o->replicas = n;
        return 0;
    }
    case OPT_CONTAINER:
        if (!dns_label(arg))
            return usage("--container: '%s' is not a container name", arg);
        o->container = arg;
        return 0;
    case OPT_SANDBOX:
        return sandbox_opt(a, arg);
    case OPT_CLIENT_POLICY:
        return client_policy_opt(a, arg);
    case OPT_SUBNET:
        o->subnet = arg;
        return 0;
    case OPT_NETWORK:
        if (!dns_label(arg))
            return usage("--network: '%s' is not a network name this tool writes", arg);
        o->network = arg;
        return 0;
    case OPT_GATEWAY_ADDR:
        o->gateway_addr = arg;
        return 0;
    case OPT_CA_DIR:
        o->ca_host_dir = arg;
        return 0;
    case OPT_ONLY:
        if (strcmp(arg, "gateway") && strcmp(arg, "sandboxes"))
            return usage("--only must be gateway or sandboxes, not '%s'", arg);
        o->only = arg;
        return 0;
    }
    return usage("unknown option");
}

/* Options of the other target are refused, not ignored: a user who wrote
 * --subnet for k8s expects it to matter. */
static int check_target_options(const struct manifest_args *a)
{
    const struct manifest_opts *o = &a->o;
    bool k8s = strcmp(a->target, "k8s") == 0;
    const char *wrong = NULL;
    if (k8s) {
        if (o->n_sandboxes)
            wrong = "--sandbox";
        else if (a->n_client_policies)
            wrong = "--client-policy";
        else if (o->subnet)
            wrong = "--subnet";
        else if (o->network)
            wrong = "--network";
        else if (o->gateway_addr)
            wrong = "--gateway-addr";
        else if (o->ca_host_dir)
            wrong = "--ca-dir";
        else if (o->only)
            wrong = "--only";
    } else {
        if (o->warm)
            wrong = "--warm";
        else if (o->runtime_class)
            wrong = "--runtime-class";
        else if (o->gateway)
            wrong = "--gateway";
        else if (o->replicas)
            wrong = "--replicas";
        else if (o->container)
            wrong = "--container";
        else if (o->format)
            wrong = "--format";
    }
    if (wrong)
        return usage("%s is not an option of 'manifest %s'", wrong, a->target);
    return 0;
}

static int parse_args(int argc, char **argv, struct manifest_args *a)
{
    static const struct option longopts[] = {
        {"policy", required_argument, NULL, OPT_POLICY},
        {"image", required_argument, NULL, OPT_IMAGE},
        {"workload-image", required_argument, NULL, OPT_WORKLOAD_IMAGE},
        {"workload-command", required_argument, NULL, OPT_WORKLOAD_COMMAND},
        {"workload-uid", required_argument, NULL, OPT_WORKLOAD_UID},
        {"name", required_argument, NULL, OPT_NAME},
        {"proxy-port", required_argument, NULL, OPT_PROXY_PORT},
        {"admin-port", required_argument, NULL, OPT_ADMIN_PORT},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"warm", no_argument, NULL, OPT_WARM},
        {"runtime-class", required_argument, NULL, OPT_RUNTIME_CLASS},
        {"executor-port", required_argument, NULL, OPT_EXECUTOR_PORT},
        {"dns-port", required_argument, NULL, OPT_DNS_PORT},
        {"gateway", no_argument, NULL, OPT_GATEWAY},
        {"replicas", required_argument, NULL, OPT_REPLICAS},
        {"container", required_argument, NULL, OPT_CONTAINER},
        {"sandbox", required_argument, NULL, OPT_SANDBOX},
        {"client-policy", required_argument, NULL, OPT_CLIENT_POLICY},
        {"subnet", required_argument, NULL, OPT_SUBNET},
        {"network", required_argument, NULL, OPT_NETWORK},
        {"gateway-addr", required_argument, NULL, OPT_GATEWAY_ADDR},
        {"ca-dir", required_argument, NULL, OPT_CA_DIR},
        {"only", required_argument, NULL, OPT_ONLY},
        {NULL, 0, NULL, 0},
    };
    struct manifest_opts *o = &a->o;
    memset(a, 0, sizeof *a);
    o->image = MANIFEST_DEFAULT_IMAGE;
    o->workload_uid = 1000;
    o->proxy_port = 8080;
    o->admin_port = 8081;
    o->executor_port = 8666;
    o->dns_port = 5353;
    o->sandbox_label = "sluice.dev/sandbox";
    if (argc < 2 || argv[1][0] == '-')
        return usage("say k8s or podman");
    a->target = argv[1];
    if (strcmp(a->target, "k8s") && strcmp(a->target, "podman"))
        return usage("unknown target '%s' (k8s, podman)", a->target);
    optind = 2;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (opt == '?')
            return usage("unknown option '%s'", argv[optind - 1]);
        if (opt == ':')
            return usage("%s needs a value", argv[optind - 1]);
        if (option(a, opt, optarg) != 0)
            return EXIT_USAGE;
    }
    if (optind < argc)
        return usage("unexpected argument '%s'", argv[optind]);
    if (!a->policy_file)
        return usage("--policy FILE is required");
    o->command = a->commands;
    if (!o->network && strcmp(a->target, "podman") == 0)
        o->network = "sluice-sandbox";
    if (!o->name)
        o->name =
            strcmp(a->target, "k8s") == 0 ? (o->gateway ? "sluice-gateway" : "sandbox") : "sluice";
    return check_target_options(a);
}

/* ---- policies ------------------------------------------------------------ */

static char *read_text(const char *file)
{
    FILE *f = fopen(file, "rb");
    char *buf = NULL;
    size_t len = 0;
    if (!f) {
        fprintf(stderr, "sluice manifest: %s: %s\n", file, strerror(errno));
        return NULL;
    }
    FILE *out = open_memstream(&buf, &len);
    char chunk[8192];
    size_t n;
    while (out && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, out);
    bool bad = ferror(f);
    fclose(f);
    if (out)
        fclose(out);
    if (bad || !out) {
        fprintf(stderr, "sluice manifest: %s: cannot read it\n", file);
        free(buf);
        return NULL;
    }
    return buf;
}

/* The policy as sluice would load it: any error is the user's, exit 2. */
static struct policy *validate(const char *file)
{
    struct policy_error perr;
    char msg[1024];
    struct policy *p = policy_load_file(file, &perr);
    if (!p) {
        policy_format_error(&perr, msg, sizeof msg);
        fprintf(stderr, "sluice manifest: %s\n", msg);
    }
    return p;
}

static bool wants_ca(const struct policy *p)
{
    return policy_intercept_enabled(p) || policy_needs_ca(p);
}

static int add_file(struct manifest_opts *o, const char *key, char *text)
{
    if (o->n_files == MANIFEST_MAX_FILES) {
        free(text);
        return usage("too many policy files");
    }
    snprintf(o->files[o->n_files].key, sizeof o->files[o->n_files].key, "%s", key);
    o->files[o->n_files++].text = text;
    return 0;
}

static char *dump_policy(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return NULL;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    return t;
}

/* A client policy file into the ConfigMap as client-NAME.json; the entry
 * is rewritten to point at that key. */
static int ship_client(struct manifest_args *a, const char *name, const char *file,
                       const char *base_dir, json_t *entry)
{
    char path[PATH_SIZE], key[MANIFEST_NAME_MAX + 16];
    if (!dns_label(name))
        return usage("client '%s': the name must be a DNS label (lower-case letters, digits "
                     "and '-') to become a ConfigMap key",
                     name);
    if (file[0] == '/' || !base_dir)
        snprintf(path, sizeof path, "%s", file);
    else
        snprintf(path, sizeof path, "%s/%s", base_dir, file);
    struct policy *p = validate(path);
    if (!p)
        return EXIT_USAGE;
    bool ca = wants_ca(p), nested = policy_client_count(p) > 0;
    policy_unref(p);
    if (nested)
        return usage("%s: a client's policy cannot have \"clients\" itself", path);
    a->o.intercept = a->o.intercept || ca;
    char *text = read_text(path);
    if (!text)
        return EXIT_RUNTIME;
    snprintf(key, sizeof key, "client-%s.json", name);
    for (size_t i = 0; i < a->o.n_files; i++)
        if (strcmp(a->o.files[i].key, key) == 0) {
            free(text);
            return usage("client '%s' appears twice", name);
        }
    json_object_set_new(entry, "policy", json_string(key));
    return add_file(&a->o, key, text);
}

/* The IPv4 subnet, the gateway's address and one static address per
 * sandbox, from SANDBOX_HOST_OFFSET up. */
static int podman_addresses(struct manifest_args *a)
{
    struct manifest_opts *o = &a->o;
    struct cidr net;
    const char *why = "not a CIDR";
    if (!o->subnet)
        return usage("podman: --subnet CIDR is required (the --internal network's subnet; "
                     "let podman choose one with `podman network create --internal NET` and "
                     "read it with `podman network inspect NET`)");
    if (cidr_parse(o->subnet, &net, &why) < 0 || net.family != AF_INET || !strchr(o->subnet, '/'))
        return usage("--subnet: '%s' is not an IPv4 CIDR (%s)", o->subnet,
                     net.family == AF_INET6 ? "IPv6" : why);
    if (net.prefix > 28)
        return usage("--subnet %s is too small: sandboxes start at host %d", o->subnet,
                     SANDBOX_HOST_OFFSET);
    uint32_t base, hosts = (uint32_t)1 << (32 - net.prefix);
    memcpy(&base, net.bytes, 4);
    base = ntohl(base);
    if (o->n_sandboxes == 0)
        return usage("podman: give at least one --sandbox NAME[=IMAGE]");
    if (SANDBOX_HOST_OFFSET + o->n_sandboxes >= hosts - 1)
        return usage("--subnet %s has no room for %zu sandboxes from host %d", o->subnet,
                     o->n_sandboxes, SANDBOX_HOST_OFFSET);
    if (!o->gateway_addr) {
        struct in_addr g = {htonl(base + 1)};
        inet_ntop(AF_INET, &g, a->gateway_addr, sizeof a->gateway_addr);
        o->gateway_addr = a->gateway_addr;
    } else {
        struct cidr g;
        if (cidr_parse(o->gateway_addr, &g, &why) < 0 || g.family != AF_INET || g.prefix != 32 ||
            !cidr_within(&g, &net))
            return usage("--gateway-addr: '%s' is not an IPv4 address inside %s", o->gateway_addr,
                         o->subnet);
    }
    for (size_t i = 0; i < o->n_sandboxes; i++) {
        struct in_addr s = {htonl(base + SANDBOX_HOST_OFFSET + (uint32_t)i)};
        inet_ntop(AF_INET, &s, o->sandboxes[i].address, sizeof o->sandboxes[i].address);
        if (strcmp(o->sandboxes[i].address, o->gateway_addr) == 0)
            return usage("--gateway-addr %s is the address of sandbox %s", o->gateway_addr,
                         o->sandboxes[i].name);
        if (!o->sandboxes[i].image && !o->workload_image)
            return usage("sandbox %s has no image: --sandbox %s=IMAGE or --workload-image IMG",
                         o->sandboxes[i].name, o->sandboxes[i].name);
    }
    return 0;
}

/* podman: one "clients" entry per --client-policy, by the sandbox's static
 * address, before the policy's own entries (the first match wins). */
static int podman_clients(struct manifest_args *a, json_t *clients)
{
    json_t *generated = json_array();
    for (size_t i = 0; i < a->n_client_policies; i++) {
        const struct client_policy *cp = &a->client_policies[i];
        const struct manifest_sandbox *s = NULL;
        for (size_t j = 0; j < a->o.n_sandboxes; j++)
            if (strcmp(a->o.sandboxes[j].name, cp->name) == 0)
                s = &a->o.sandboxes[j];
        if (!s) {
            json_decref(generated);
            return usage("--client-policy %s: no --sandbox %s", cp->name, cp->name);
        }
        char source[80];
        snprintf(source, sizeof source, "%s/32", s->address);
        json_t *entry =
            json_pack("{s:s, s:[s], s:s}", "name", cp->name, "source", source, "policy", "");
        json_array_append_new(generated, entry);
        int rc = ship_client(a, cp->name, cp->file, NULL, entry);
        if (rc != 0) {
            json_decref(generated);
            return rc;
        }
    }
    json_array_extend(generated, clients);
    json_array_clear(clients);
    json_array_extend(clients, generated);
    json_decref(generated);
    return 0;
}

/* The warm pod's starting policy: deny everything, keep the DNS upstream
 * (the filter needs it). The real rules come with PUT /policy. */
static json_t *warm_policy(const json_t *real)
{
    json_t *p = json_pack("{s:s, s:[]}", "default", "deny", "rules");
    json_t *dns = json_object_get(real, "dns");
    if (dns)
        json_object_set(p, "dns", dns);
    return p;
}

static int load_policies(struct manifest_args *a)
{
    struct manifest_opts *o = &a->o;
    struct policy *p = validate(a->policy_file);
    if (!p)
        return EXIT_USAGE;
    const struct policy_dns *dns = policy_dns(p);
    bool no_dns = !dns || dns->n_upstream == 0;
    o->intercept = wants_ca(p);
    policy_unref(p);
    if (no_dns)
        return usage("%s: dns.upstream is needed: the DNS filter forwards the names the policy "
                     "allows there (in Kubernetes the cluster DNS Service, e.g. 10.96.0.10)",
                     a->policy_file);
    json_error_t jerr;
    json_t *root = json_load_file(a->policy_file, 0, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return usage("%s: not a JSON object", a->policy_file);
    }
    char dir_buf[PATH_SIZE];
    snprintf(dir_buf, sizeof dir_buf, "%s", a->policy_file);
    const char *dir = dirname(dir_buf);
    json_t *clients = json_object_get(root, "clients");
    size_t i;
    json_t *c;
    int rc = add_file(o, manifest_policy_key(), NULL);
    json_array_foreach(clients, i, c)
    {
        if (rc == 0)
            rc = ship_client(a, json_string_value(json_object_get(c, "name")),
                             json_string_value(json_object_get(c, "policy")), dir, c);
    }
    if (rc == 0 && strcmp(a->target, "podman") == 0) {
        if (!clients) {
            clients = json_array();
            json_object_set_new(root, "clients", clients);
        }
        rc = podman_clients(a, clients);
        if (rc == 0 && json_array_size(clients) == 0)
            json_object_del(root, "clients");
    }
    if (rc == 0 && o->warm) {
        json_t *w = warm_policy(root);
        json_decref(root);
        root = w;
    }
    if (rc == 0 && !(o->files[0].text = dump_policy(root)))
        rc = usage("%s: cannot write it back as JSON", a->policy_file);
    json_decref(root);
    return rc;
}

/* ---- main ---------------------------------------------------------------- */

static int check_k8s(const struct manifest_opts *o)
{
    const char *format = o->format ? o->format : "pod";
    if (o->gateway && o->format)
        return usage("--gateway prints its own objects; --format is for the sidecar pod");
    if (o->gateway && o->warm)
        return usage("--warm is for sidecar pods: a gateway's clients get their policies from "
                     "\"clients\"");
    if (o->container && strcmp(format, "patch") != 0)
        return usage("--container names the container a patch changes (--format patch)");
    if (o->replicas && !o->gateway)
        return usage("--replicas is for --gateway");
    if (!o->gateway && strcmp(format, "pod") == 0 && !o->workload_image)
        return usage("k8s: --workload-image IMG is required (the sandbox's image)");
    if ((o->gateway || strcmp(format, "patch") == 0) && o->workload_image)
        return usage("--workload-image is for --format pod (a patch keeps the container's "
                     "image)");
    if (o->executor_port && (o->executor_port == o->proxy_port ||
                             o->executor_port == o->admin_port || o->executor_port == o->dns_port))
        return usage("--executor-port %u is taken by sluice", (unsigned)o->executor_port);
    return 0;
}

static void free_files(struct manifest_opts *o)
{
    for (size_t i = 0; i < o->n_files; i++)
        free(o->files[i].text);
}

int cmd_manifest_main(int argc, char **argv)
{
    static struct manifest_args a;
    char comment[COMMENT_SIZE], err[MANIFEST_ERR_SIZE];
    json_t *docs = NULL;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    struct manifest_opts *o = &a.o;
    bool podman = strcmp(a.target, "podman") == 0;
    if (podman && (rc = podman_addresses(&a)) != 0)
        return rc;
    if (!podman && (rc = check_k8s(o)) != 0)
        return rc;
    rc = load_policies(&a);
    if (rc == 0 && podman && o->intercept && !o->ca_host_dir)
        rc = usage("%s: the policy intercepts TLS: give the CA directory with --ca-dir DIR "
                   "(sluice ca init --dir DIR)",
                   a.policy_file);
    if (rc == 0) {
        int g = podman ? manifest_podman(o, &docs, comment, sizeof comment, err, sizeof err)
                       : manifest_k8s(o, &docs, comment, sizeof comment, err, sizeof err);
        if (g < 0)
            rc = usage("%s", err);
    }
    if (rc == 0 && (yaml_write_stream(stdout, comment, docs) < 0 || fflush(stdout) != 0)) {
        fprintf(stderr, "sluice manifest: cannot write the output\n");
        rc = EXIT_RUNTIME;
    }
    json_decref(docs);
    free_files(o);
    return rc;
}
