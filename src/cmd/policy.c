/* sluice policy: check a policy file, or explain the decision for one target.
 *
 * explain builds the same canonical destination the proxy and the DNS filter
 * build and calls the same decision function, so what it prints is what the
 * running proxy would do with that policy. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cmd/cmd.h"
#include "policy/policy.h"

#define ERROR_TEXT_SIZE 1024
#define AUTHORITY_SIZE (HOST_TEXT_SIZE + 8)

const char cmd_policy_help[] =
    "usage: sluice policy check FILE\n"
    "       sluice policy explain [--method METHOD] [--client ADDR] FILE TARGET\n"
    "\n"
    "check    validate FILE and the policy file of each of its clients; prints\n"
    "         \"FILE: ok (...)\" and a line per client, or the error (exit 2).\n"
    "explain  print the decision FILE makes for TARGET: the verdict, the rule\n"
    "         (index and text, injected values redacted) and its reason.\n"
    "         --client ADDR decides as a connection from that address would be\n"
    "         (the policy of the first client whose source covers it).\n"
    "\n"
    "TARGET is one of:\n"
    "  http://HOST[:PORT]/PATH    a plain HTTP request (method GET, or --method)\n"
    "  https://HOST[:PORT]/PATH   a CONNECT tunnel; when the rule needs interception,\n"
    "                             also the request inside it\n"
    "  HOST:PORT                  a CONNECT tunnel\n"
    "  dns:NAME                   a DNS question\n"
    "\n"
    "Exit status: 0 explained (whatever the decision), 1 the host is refused\n"
    "(numeric shorthand, userinfo, ...), 2 bad usage or invalid policy.\n";

static int usage(const char *msg)
{
    fprintf(stderr,
            "sluice policy: %s\n"
            "usage: sluice policy check FILE\n"
            "       sluice policy explain [--method METHOD] [--client ADDR] FILE "
            "(URL | HOST:PORT | dns:NAME)\n"
            "(sluice policy --help says more)\n",
            msg);
    return EXIT_USAGE;
}

static struct policy *load(const char *file)
{
    struct policy_error err;
    char text[ERROR_TEXT_SIZE];
    struct policy *p = policy_load_file(file, &err);
    if (!p) {
        policy_format_error(&err, text, sizeof text);
        fprintf(stderr, "%s\n", text);
    }
    return p;
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
    return "?";
}

static int cmd_check(int argc, char **argv)
{
    if (argc != 1)
        return usage("check takes exactly one FILE");
    struct policy *p = load(argv[0]);
    if (!p)
        return EXIT_USAGE;
    size_t n = policy_rule_count(p);
    printf("%s: ok (%zu rule%s, default %s, mode %s)\n", argv[0], n, n == 1 ? "" : "s",
           verdict_name(policy_default(p)), policy_report_mode(p) ? "report" : "enforce");
    for (size_t i = 0; i < policy_client_count(p); i++) {
        struct policy_client_info ci;
        if (policy_client_info(p, i, &ci) < 0)
            continue;
        size_t cn = policy_rule_count(ci.policy);
        printf("client %s: %s: ok (%zu rule%s, default %s, mode %s, %zu source address%s)\n",
               ci.name, ci.file, cn, cn == 1 ? "" : "s", verdict_name(policy_default(ci.policy)),
               policy_report_mode(ci.policy) ? "report" : "enforce", ci.n_sources,
               ci.n_sources == 1 ? "" : "es");
        for (size_t u = 0; u < ci.n_unresolved; u++)
            fprintf(stderr,
                    "warning: client %s: source \"%s\" does not resolve here; it matches "
                    "nothing until it does and the policy is reloaded\n",
                    ci.name, ci.unresolved[u]);
    }
    policy_unref(p);
    return 0;
}

/* The client ADDR would be: the policy deciding for it, and its name. */
static struct policy *as_client(struct policy *p, const char *addr, const char **name)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    *name = NULL;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1)
        sin->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1)
        sin6->sin6_family = AF_INET6;
    else
        return NULL;
    struct policy *sel = policy_select(p, (struct sockaddr *)&ss);
    for (size_t i = 0; sel != p && i < policy_client_count(p); i++) {
        struct policy_client_info ci;
        if (policy_client_info(p, i, &ci) == 0 && ci.policy == sel)
            *name = ci.name;
    }
    return sel;
}

struct target {
    struct dest dest;
    const char *method; /* for an https:// target's inner request */
    char path[ERROR_TEXT_SIZE];
    bool inner;          /* https:// : explain the request inside too */
    const char *refused; /* canonicaliser's refusal */
};

/* Splits "http(s)://authority/path?query#frag"; the path excludes the query
 * because rules never see it. */
static int parse_url(const char *rest, uint16_t default_port, struct target *t)
{
    size_t alen = strcspn(rest, "/?#");
    const char *path = rest + alen;
    size_t plen = *path == '/' ? strcspn(path, "?#") : 0;

    if (plen == 0) {
        snprintf(t->path, sizeof t->path, "/");
    } else if (plen >= sizeof t->path) {
        return -1;
    } else {
        memcpy(t->path, path, plen);
        t->path[plen] = '\0';
    }
    if (host_parse_authority(rest, alen, default_port, &t->dest.host, &t->dest.port, &t->refused) <
        0)
        return 0;
    t->refused = NULL;
    return 0;
}

/* 0 with t filled (t->refused set when the host itself is refused), or -1
 * for a target that is not one of the accepted forms. */
static int parse_target(const char *s, const char *method, struct target *t)
{
    memset(t, 0, sizeof *t);
    t->method = method ? method : "GET";
    if (strncasecmp(s, "http://", 7) == 0) {
        t->dest.kind = DEST_HTTP;
        if (parse_url(s + 7, 80, t) < 0)
            return -1;
        t->dest.method = t->method;
        t->dest.method_len = strlen(t->method);
        t->dest.path = t->path;
        t->dest.path_len = strlen(t->path);
        return 0;
    }
    if (strncasecmp(s, "https://", 8) == 0) {
        t->dest.kind = DEST_CONNECT;
        t->inner = true;
        return parse_url(s + 8, 443, t);
    }
    if (strncasecmp(s, "dns:", 4) == 0) {
        t->dest.kind = DEST_DNS;
        if (host_canonicalise(s + 4, strlen(s + 4), &t->dest.host, &t->refused) == 0)
            t->refused = NULL;
        return 0;
    }
    if (strstr(s, "://"))
        return -1;
    t->dest.kind = DEST_CONNECT;
    if (host_parse_authority(s, strlen(s), 443, &t->dest.host, &t->dest.port, &t->refused) == 0)
        t->refused = NULL;
    return 0;
}

static void print_decision(const struct policy *p, const struct decision *d, const char *indent)
{
    printf("%sdecision: %s%s\n", indent, verdict_name(d->verdict),
           d->would_deny ? " (report mode: would deny)" : "");
    if (d->rule >= 0)
        printf("%srule: %d %s\n", indent, d->rule, policy_rule_text(p, (size_t)d->rule));
    else
        printf("%srule: default (%s)\n", indent, verdict_name(policy_default(p)));
    if (d->reason)
        printf("%sreason: %s\n", indent, d->reason);
}

static void print_address(const struct policy *p, const struct target *t,
                          const struct decision *dec)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (t->dest.host.kind == HOST_KIND_IPV4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_addr = t->dest.host.addr.v4;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = t->dest.host.addr.v6;
    }
    const char *why = NULL;
    if (policy_address_permitted(p, &t->dest, dec, (const struct sockaddr *)&ss, &why))
        printf("address: %s permitted\n", t->dest.host.text);
    else
        printf("address: %s refused: %s (the proxy will not connect)\n", t->dest.host.text, why);
}

static void print_target(const struct target *t)
{
    char auth[AUTHORITY_SIZE];
    if (host_format_authority(&t->dest.host, t->dest.port, auth, sizeof auth) < 0)
        snprintf(auth, sizeof auth, "%s", t->dest.host.text);
    switch (t->dest.kind) {
    case DEST_HTTP:
        printf("request: %s http://%s%s\n", t->method, auth, t->path);
        break;
    case DEST_CONNECT:
    case DEST_TRANSPARENT:
        printf("request: CONNECT %s\n", auth);
        break;
    case DEST_DNS:
        printf("request: DNS %s\n", t->dest.host.text);
        break;
    }
}

static int explain(const struct policy *p, struct target *t)
{
    struct decision dec;
    print_target(t);
    policy_decide(p, &t->dest, &dec);
    print_decision(p, &dec, "");
    if (dec.needs_intercept) {
        printf("interception: required (the rule constrains methods or paths, or injects "
               "headers)\n");
        if (t->inner) {
            struct dest inner = t->dest;
            struct decision idec;
            inner.method = t->method;
            inner.method_len = strlen(t->method);
            inner.path = t->path;
            inner.path_len = strlen(t->path);
            printf("inner request: %s %s\n", t->method, t->path);
            policy_decide(p, &inner, &idec);
            print_decision(p, &idec, "  ");
        } else if (t->dest.kind == DEST_CONNECT) {
            printf("inner requests: each is decided again by method and path\n");
        }
    }
    if (t->dest.host.kind != HOST_KIND_NAME && dec.verdict != VERDICT_DENY)
        print_address(p, t, &dec);
    return 0;
}

static int cmd_explain(int argc, char **argv)
{
    const char *method = NULL, *client = NULL;
    const char *pos[2];
    int npos = 0;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--method") == 0) {
            if (++i >= argc)
                return usage("--method needs a METHOD");
            method = argv[i];
        } else if (strncmp(argv[i], "--method=", 9) == 0) {
            method = argv[i] + 9;
        } else if (strcmp(argv[i], "--client") == 0) {
            if (++i >= argc)
                return usage("--client needs an IP address");
            client = argv[i];
        } else if (strncmp(argv[i], "--client=", 9) == 0) {
            client = argv[i] + 9;
        } else if (argv[i][0] == '-' && argv[i][1] == '-' && argv[i][2] != '\0') {
            return usage("unknown option");
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            return usage("explain takes FILE and one TARGET");
        }
    }
    if (npos != 2)
        return usage("explain takes FILE and one TARGET");
    if (method && (method[0] == '\0' || strcspn(method, " \t\r\n/") != strlen(method)))
        return usage("--method needs an HTTP method token like GET");

    struct target t;
    if (parse_target(pos[1], method, &t) < 0)
        return usage("TARGET must be http://..., https://..., HOST:PORT or dns:NAME");
    struct policy *p = load(pos[0]);
    if (!p)
        return EXIT_USAGE;
    struct policy *decider = p;
    if (client) {
        const char *name;
        if (!(decider = as_client(p, client, &name))) {
            policy_unref(p);
            return usage("--client needs an IP address like 10.89.0.10 or 2001:db8::7");
        }
        if (name)
            printf("client: %s (%s)\n", name, policy_source(decider));
        else
            printf("client: no client's source covers %s; the main policy decides\n", client);
    }
    int rc = 0;
    if (t.refused) {
        printf("refused: %s\n", t.refused);
        rc = EXIT_RUNTIME;
    } else {
        rc = explain(decider, &t);
    }
    policy_unref(p);
    return rc;
}

int cmd_policy_main(int argc, char **argv)
{
    if (argc < 2)
        return usage("missing check or explain");
    if (strcmp(argv[1], "check") == 0)
        return cmd_check(argc - 2, argv + 2);
    if (strcmp(argv[1], "explain") == 0)
        return cmd_explain(argc - 2, argv + 2);
    return usage("unknown subcommand (check or explain)");
}
