/* jail policy: the effective policy of `sluice run` — --policy (or default
 * deny) with --deny rules first and --allow rules last — as JSON text that
 * the policy module's own loader has validated. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jail/jail.h"
#include "policy/policy.h"

#define HOST_ARG_SIZE 300
#define LINE_SIZE 1024
#define MAX_NAMESERVERS 3
#define PERR_SIZE 512

/* HOST[:PORT] or [V6]:PORT into {"allow": HOST, "ports": [PORT]}. */
static json_t *allow_rule(const char *arg, char *err, size_t err_size)
{
    char host[HOST_ARG_SIZE];
    const char *port = NULL;
    size_t len = strlen(arg);
    if (len >= sizeof host) {
        snprintf(err, err_size, "--allow %.40s...: too long", arg);
        return NULL;
    }
    memcpy(host, arg, len + 1);
    char *colon = strrchr(host, ':');
    if (host[0] == '[') {
        char *close = strchr(host, ']');
        if (close && close[1] == ':') {
            port = close + 2;
            close[1] = '\0';
        }
    } else if (colon && strchr(host, ':') == colon) {
        /* One colon: HOST:PORT. More: a bare IPv6 address, no port. */
        *colon = '\0';
        port = colon + 1;
    }
    json_t *rule = json_pack("{ss}", "allow", host);
    if (rule == NULL || port == NULL)
        return rule;
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (errno || end == port || *end || p < 1 || p > 65535 || port[0] == '+' || port[0] == '-') {
        snprintf(err, err_size, "--allow %s: the port must be a number from 1 to 65535", arg);
        json_decref(rule);
        return NULL;
    }
    json_object_set_new(rule, "ports", json_pack("[I]", (json_int_t)p));
    return rule;
}

/* Nameservers of a resolv.conf, as plain IP addresses (no scope ids). */
static json_t *nameservers(const char *resolv_conf)
{
    json_t *list = json_array();
    FILE *f = resolv_conf ? fopen(resolv_conf, "re") : NULL;
    if (f == NULL)
        return list;
    char line[LINE_SIZE];
    while (fgets(line, sizeof line, f) && json_array_size(list) < MAX_NAMESERVERS) {
        char addr[INET6_ADDRSTRLEN + 1];
        unsigned char buf[sizeof(struct in6_addr)];
        if (sscanf(line, " nameserver %46s", addr) != 1)
            continue;
        if (inet_pton(AF_INET, addr, buf) == 1 || inet_pton(AF_INET6, addr, buf) == 1)
            json_array_append_new(list, json_string(addr));
    }
    fclose(f);
    return list;
}

static json_t *load_base(const struct jail_policy_args *a, char *err, size_t err_size)
{
    if (a->policy_file == NULL)
        return json_pack("{ss}", "default", "deny");
    /* The file as given first: its own errors name its lines. */
    struct policy_error perr;
    struct policy *p = policy_load_file(a->policy_file, &perr);
    if (p == NULL) {
        char text[PERR_SIZE];
        policy_format_error(&perr, text, sizeof text);
        snprintf(err, err_size, "invalid policy: %s", text);
        return NULL;
    }
    policy_unref(p);
    json_error_t jerr;
    json_t *root = json_load_file(a->policy_file, 0, &jerr);
    if (!json_is_object(root)) {
        snprintf(err, err_size, "%s: %s", a->policy_file, root ? "not a JSON object" : jerr.text);
        json_decref(root);
        return NULL;
    }
    return root;
}

static int add_rules(json_t *root, const struct jail_policy_args *a, char *err, size_t err_size)
{
    json_t *rules = json_object_get(root, "rules");
    if (json_object_get(root, "egress") && !rules) {
        if (a->n_allow || a->n_deny) {
            snprintf(err, err_size,
                     "%s is an OpenSandbox policy; --allow and --deny need a sluice policy "
                     "(with \"rules\")",
                     a->policy_file);
            return -1;
        }
        return 0;
    }
    if (!json_is_array(rules)) {
        rules = json_array();
        json_object_set_new(root, "rules", rules);
    }
    for (size_t i = a->n_deny; i > 0; i--)
        json_array_insert_new(rules, 0, json_pack("{ss}", "deny", a->deny[i - 1]));
    for (size_t i = 0; i < a->n_allow; i++) {
        json_t *r = allow_rule(a->allow[i], err, err_size);
        if (r == NULL)
            return -1;
        json_array_append_new(rules, r);
    }
    return 0;
}

char *jail_policy_build(const struct jail_policy_args *a, bool *dns, char *err, size_t err_size)
{
    json_t *root = load_base(a, err, err_size);
    if (root == NULL)
        return NULL;
    if (add_rules(root, a, err, err_size) < 0) {
        json_decref(root);
        return NULL;
    }
    /* --prompt asks about what the policy does not decide, unless the
     * policy chose its own default. */
    if (a->prompt && !json_object_get(root, "egress") &&
        (a->policy_file == NULL || !json_object_get(root, "default")))
        json_object_set_new(root, "default", json_string("prompt"));
    if (!json_object_get(root, "intercept") || a->no_intercept)
        json_object_set_new(root, "intercept",
                            json_pack("{sb}", "enabled", a->no_intercept ? 0 : 1));
    json_t *dnsobj = json_object_get(root, "dns");
    *dns = true;
    if (!json_is_object(dnsobj) || !json_object_get(dnsobj, "upstream")) {
        json_t *ns = nameservers(a->resolv_conf);
        if (json_array_size(ns) == 0) {
            *dns = false; /* no resolver known: no filter; the proxy still resolves */
            json_decref(ns);
        } else {
            if (!json_is_object(dnsobj)) {
                dnsobj = json_object();
                json_object_set_new(root, "dns", dnsobj);
            }
            json_object_set_new(dnsobj, "upstream", ns);
        }
    }
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (text == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    /* The proxy's loader: the merged policy is validated like any file. */
    struct policy_error perr;
    struct policy *p = policy_load_buffer(text, strlen(text), "the effective policy", &perr);
    if (p == NULL) {
        char text_err[PERR_SIZE];
        policy_format_error(&perr, text_err, sizeof text_err);
        snprintf(err, err_size, "invalid policy: %s", text_err);
        free(text);
        return NULL;
    }
    policy_unref(p);
    return text;
}
