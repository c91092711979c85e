/* sluice ca: make, show and export the internal CA (docs/TLS.md).
 *
 * --name-constraints turns the policy's allowed names into X.509 permitted
 * subtrees, so even a stolen CA key could only vouch for names the sandbox
 * was allowed to reach anyway. A dNSName subtree always covers the name and
 * everything below it, so "example.com", ".example.com" and "*.example.com"
 * all become "example.com"; what cannot be expressed ("*", addresses, a
 * default of allow) is refused rather than silently widened. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/x509.h>

#include "cmd/cmd.h"
#include "jail/jail.h"
#include "policy/policy.h"
#include "tls/ca.h"

#define CA_ERROR_SIZE 1024
#define CA_MAX_POLICIES 16
#define CA_SYSTEM_ROOTS "/etc/ssl/certs/ca-certificates.crt"

const char cmd_ca_help[] =
    "usage: sluice ca init [--dir DIR] [--days N] [--name-constraints --policy FILE]\n"
    "       sluice ca show [--dir DIR]\n"
    "       sluice ca export [--dir DIR]\n"
    "       sluice ca bundle [--dir DIR] [--roots FILE] --out FILE\n"
    "\n"
    "The internal CA that intercepted TLS is signed with (see docs/TLS.md).\n"
    "\n"
    "init    make DIR/ca.key (ECDSA P-256, mode 0600) and DIR/ca.pem (CA:TRUE,\n"
    "        pathlen 0, keyCertSign). Never replaces an existing ca.key.\n"
    "show    print subject, SHA-256 fingerprint, validity, key and constraints.\n"
    "export  print the certificate in PEM, for trust stores:\n"
    "          sluice ca export > /usr/local/share/ca-certificates/sluice.crt\n"
    "          update-ca-certificates\n"
    "bundle  write FILE: the system roots, then the CA certificate (never the key),\n"
    "        for the CA variables of a workload (a pod's init step)\n"
    "\n"
    "  --dir DIR            the CA directory (default $" TLS_CA_DIR_ENV ", else\n"
    "                       " TLS_CA_DEFAULT_DIR ")\n"
    "  --days N             init: CA lifetime in days (default 3650)\n"
    "  --name-constraints   init: limit the CA to the names the policy allows or\n"
    "                       prompts for (critical X.509 name constraints).\n"
    "                       example.com, .example.com and *.example.com each permit\n"
    "                       example.com and every name below it; IP addresses are\n"
    "                       excluded. Refused when the policy has \"*\", address rules\n"
    "                       or a default of allow.\n"
    "  --policy FILE        the policy to take the names from; repeat it to add each\n"
    "                       client's policy\n"
    "  --roots FILE         bundle: the system roots (default " CA_SYSTEM_ROOTS ")\n"
    "  --out FILE           bundle: where to write it (mode 0644)\n"
    "\n"
    "Exit status: 0 ok; 1 the CA cannot be made, read or written (or exists\n"
    "already, for init); 2 bad usage, or a policy unusable for name constraints.\n";

enum {
    OPT_DIR = 256,
    OPT_DAYS,
    OPT_NAME_CONSTRAINTS,
    OPT_POLICY,
    OPT_ROOTS,
    OPT_OUT,
};

struct ca_options {
    const char *dir;
    int days;
    bool name_constraints;
    const char *policies[CA_MAX_POLICIES];
    size_t n_policies;
    const char *roots; /* bundle */
    const char *out;   /* bundle */
};

/* The permitted names, canonical and without duplicates. */
struct ca_names {
    char (*v)[HOST_TEXT_SIZE];
    size_t n;
};

static int usage(const char *msg)
{
    fprintf(stderr,
            "sluice ca: %s\n"
            "usage: sluice ca init [--dir DIR] [--days N] [--name-constraints --policy FILE]\n"
            "       sluice ca show|export [--dir DIR]\n"
            "(sluice ca --help says more)\n",
            msg);
    return EXIT_USAGE;
}

static int parse_days(const char *s, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < 1 || v > TLS_CA_MAX_DAYS)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_options(int argc, char **argv, struct ca_options *o)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, OPT_DIR},
        {"days", required_argument, NULL, OPT_DAYS},
        {"name-constraints", no_argument, NULL, OPT_NAME_CONSTRAINTS},
        {"policy", required_argument, NULL, OPT_POLICY},
        {"roots", required_argument, NULL, OPT_ROOTS},
        {"out", required_argument, NULL, OPT_OUT},
        {NULL, 0, NULL, 0},
    };
    char msg[CA_ERROR_SIZE];
    int c;

    optind = 0; /* glibc: full re-initialisation, for callers that parse twice */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_DIR:
            o->dir = optarg;
            break;
        case OPT_DAYS:
            if (parse_days(optarg, &o->days) < 0) {
                snprintf(msg, sizeof msg, "--days: '%s' is not a number of days in 1..%d", optarg,
                         TLS_CA_MAX_DAYS);
                return usage(msg);
            }
            break;
        case OPT_NAME_CONSTRAINTS:
            o->name_constraints = true;
            break;
        case OPT_POLICY:
            if (o->n_policies == CA_MAX_POLICIES)
                return usage("too many --policy files");
            o->policies[o->n_policies++] = optarg;
            break;
        case OPT_ROOTS:
            o->roots = optarg;
            break;
        case OPT_OUT:
            o->out = optarg;
            break;
        case ':':
            snprintf(msg, sizeof msg, "%s needs an argument", argv[optind - 1]);
            return usage(msg);
        default:
            snprintf(msg, sizeof msg, "unknown option '%s'", argv[optind - 1]);
            return usage(msg);
        }
    }
    if (optind < argc) {
        snprintf(msg, sizeof msg, "unexpected argument '%s'", argv[optind]);
        return usage(msg);
    }
    return 0;
}

/* ---- name constraints from a policy --------------------------------------- */

/* Whether the subtree of name covers sub: equal, or sub ends in ".name". */
static bool covers(const char *name, const char *sub)
{
    size_t n = strlen(name), s = strlen(sub);
    return s == n ? strcmp(name, sub) == 0
                  : s > n && sub[s - n - 1] == '.' && strcmp(sub + s - n, name) == 0;
}

/* Adds h unless a subtree already covers it; drops subtrees h covers. */
static int add_name(struct ca_names *names, const struct host *h)
{
    for (size_t i = 0; i < names->n; i++)
        if (covers(names->v[i], h->text))
            return 0;
    for (size_t i = 0; i < names->n;) {
        if (covers(h->text, names->v[i]))
            memcpy(names->v[i], names->v[--names->n], sizeof names->v[i]);
        else
            i++;
    }
    if (names->n == TLS_CA_MAX_PERMITTED)
        return -1;
    memcpy(names->v[names->n], h->text, h->len + 1);
    names->n++;
    return 0;
}

/* The subtree a name pattern needs, or -1 with a message for patterns a
 * dNSName constraint cannot express. */
static int pattern_name(const char *pattern, struct host *h, const char **why)
{
    const char *name = pattern;
    if (strcmp(pattern, "*") == 0) {
        *why = "allows every name (\"*\")";
        return -1;
    }
    if (strchr(pattern, '/')) {
        *why = "is an address rule (IP constraints are not supported)";
        return -1;
    }
    if (strncmp(name, "*.", 2) == 0)
        name += 2;
    else if (name[0] == '.')
        name++;
    if (host_canonicalise(name, strlen(name), h, why) < 0)
        return -1;
    if (h->kind != HOST_KIND_NAME) {
        *why = "is an address rule (IP constraints are not supported)";
        return -1;
    }
    return 0;
}

/* The action and pattern of a rule, from its JSON text (either form). */
static int rule_target(json_t *rule, const char **action, const char **pattern)
{
    static const char *const actions[] = {"allow", "prompt", "deny"};
    for (size_t a = 0; a < sizeof actions / sizeof actions[0]; a++) {
        json_t *v = json_object_get(rule, actions[a]);
        if (json_is_string(v)) {
            *action = actions[a];
            *pattern = json_string_value(v);
            return 0;
        }
    }
    json_t *action_v = json_object_get(rule, "action"); /* OpenSandbox form */
    json_t *target = json_object_get(rule, "target");
    if (json_is_string(action_v) && json_is_string(target)) {
        *action = json_string_value(action_v);
        *pattern = json_string_value(target);
        return 0;
    }
    return -1;
}

static int rule_names(const char *file, const struct policy *p, size_t i, struct ca_names *names)
{
    const char *text = policy_rule_text(p, i);
    const char *action = NULL, *pattern = NULL, *why = NULL;
    struct host h;
    int rc = 0;

    json_t *rule = json_loads(text, 0, NULL);
    if (!rule || rule_target(rule, &action, &pattern) < 0) {
        fprintf(stderr, "sluice ca: %s: rules[%zu]: cannot read the rule\n", file, i);
        rc = -1;
    } else if (strcmp(action, "deny") != 0) {
        if (pattern_name(pattern, &h, &why) < 0) {
            fprintf(stderr,
                    "sluice ca: %s: rules[%zu] %s %s; name constraints cannot express "
                    "that: drop --name-constraints or narrow the rule\n",
                    file, i, text, why);
            rc = -1;
        } else if (add_name(names, &h) < 0) {
            fprintf(stderr, "sluice ca: %s: more than %d names for name constraints\n", file,
                    TLS_CA_MAX_PERMITTED);
            rc = -1;
        }
    }
    json_decref(rule);
    return rc;
}

/* Per-client policies are separate files; their names are needed too. */
static int refuse_clients(const char *file)
{
    json_t *root = json_load_file(file, 0, NULL);
    json_t *clients = root ? json_object_get(root, "clients") : NULL;
    int rc = 0;
    if (json_is_array(clients) && json_array_size(clients) > 0) {
        fprintf(stderr,
                "sluice ca: %s: has per-client policies (\"clients\"); give each "
                "client's policy file with another --policy\n",
                file);
        rc = -1;
    }
    json_decref(root);
    return rc;
}

static int policy_names(const char *file, struct ca_names *names, bool has_clients_ok)
{
    struct policy_error perr;
    char text[CA_ERROR_SIZE];
    struct policy *p = policy_load_file(file, &perr);
    int rc = 0;

    if (!p) {
        policy_format_error(&perr, text, sizeof text);
        fprintf(stderr, "sluice ca: %s\n", text);
        return -1;
    }
    if (!has_clients_ok && refuse_clients(file) < 0)
        rc = -1;
    if (rc == 0 && policy_default(p) == VERDICT_ALLOW) {
        fprintf(stderr,
                "sluice ca: %s: the default is allow, so every name is allowed; name "
                "constraints cannot express that\n",
                file);
        rc = -1;
    }
    if (rc == 0 && policy_report_mode(p))
        fprintf(stderr,
                "sluice ca: warning: %s is in report mode: hosts it would deny but lets "
                "through will fail certificate checks under these constraints\n",
                file);
    for (size_t i = 0; rc == 0 && i < policy_rule_count(p); i++)
        rc = rule_names(file, p, i, names);
    policy_unref(p);
    return rc;
}

/* ---- subcommands ---------------------------------------------------------- */

static int ca_init(const struct ca_options *o)
{
    char err[CA_ERROR_SIZE];
    struct ca_names names = {0};
    const char **ptrs = NULL;
    struct tls_ca_options co = {.days = o->days};
    int rc = EXIT_USAGE;

    if (o->name_constraints) {
        names.v = calloc(TLS_CA_MAX_PERMITTED, sizeof *names.v);
        ptrs = calloc(TLS_CA_MAX_PERMITTED, sizeof *ptrs);
        if (!names.v || !ptrs) {
            fprintf(stderr, "sluice ca: out of memory\n");
            rc = EXIT_RUNTIME;
            goto out;
        }
        for (size_t i = 0; i < o->n_policies; i++)
            if (policy_names(o->policies[i], &names, o->n_policies > 1) < 0)
                goto out;
        if (names.n == 0) {
            fprintf(stderr, "sluice ca: the policy allows no names to constrain the CA to\n");
            goto out;
        }
        for (size_t i = 0; i < names.n; i++)
            ptrs[i] = names.v[i];
        co.permitted_names = ptrs;
        co.n_permitted = names.n;
    }
    rc = EXIT_RUNTIME;
    if (tls_ca_init(o->dir, &co, err, sizeof err) < 0) {
        fprintf(stderr, "sluice ca: %s\n", err);
        goto out;
    }
    printf("made a CA in %s (key %s/%s, mode 0600)\n", o->dir, o->dir, TLS_CA_KEY_FILE);
    if (tls_ca_show(o->dir, stdout, err, sizeof err) < 0) {
        fprintf(stderr, "sluice ca: %s\n", err);
        goto out;
    }
    rc = 0;
out:
    free(names.v);
    free(ptrs);
    return rc;
}

/* The trust bundle a workload's CA variables name: the system roots, then
 * the CA certificate, so the workload trusts both the public internet (in
 * passthrough) and sluice's minted leaves. Used by the pod's init step,
 * where the image has no shell to `cat` them. */
static int ca_bundle(const struct ca_options *o)
{
    char err[CA_ERROR_SIZE], ca_pem[TLS_CA_PATH_SIZE];
    const char *roots = o->roots ? o->roots : CA_SYSTEM_ROOTS;
    X509 *cert = NULL;
    snprintf(ca_pem, sizeof ca_pem, "%s/" TLS_CA_CERT_FILE, o->dir);
    /* Refuse to write a bundle around something that is not a certificate. */
    if (tls_ca_load_cert(o->dir, &cert, err, sizeof err) < 0) {
        fprintf(stderr, "sluice ca: %s\n", err);
        return EXIT_RUNTIME;
    }
    X509_free(cert);
    if (access(roots, R_OK) < 0) {
        fprintf(stderr, "sluice ca: the system roots %s: %s\n", roots, strerror(errno));
        return EXIT_RUNTIME;
    }
    const char *const srcs[] = {roots, ca_pem, NULL};
    if (jail_bundle_write(o->out, srcs, err, sizeof err) < 0) {
        fprintf(stderr, "sluice ca: %s\n", err);
        return EXIT_RUNTIME;
    }
    return 0;
}

int cmd_ca_main(int argc, char **argv)
{
    struct ca_options o = {0};
    char err[CA_ERROR_SIZE];

    if (argc < 2)
        return usage("say init, show or export");
    const char *sub = argv[1];
    bool init = strcmp(sub, "init") == 0, bundle = strcmp(sub, "bundle") == 0;
    if (!init && !bundle && strcmp(sub, "show") != 0 && strcmp(sub, "export") != 0) {
        snprintf(err, sizeof err, "unknown subcommand '%s' (init, show, export or bundle)", sub);
        return usage(err);
    }
    int rc = parse_options(argc - 1, argv + 1, &o);
    if (rc != 0)
        return rc;
    if (!init && (o.days || o.name_constraints || o.n_policies))
        return usage("--days, --name-constraints and --policy belong to init");
    if (o.name_constraints && o.n_policies == 0)
        return usage("--name-constraints needs --policy FILE");
    if (o.n_policies && !o.name_constraints)
        return usage("--policy is only read with --name-constraints");
    if (!bundle && (o.roots || o.out))
        return usage("--roots and --out belong to bundle");
    if (bundle && !o.out)
        return usage("bundle needs --out FILE");
    if (!o.dir) {
        const char *env = getenv(TLS_CA_DIR_ENV);
        o.dir = env && env[0] ? env : TLS_CA_DEFAULT_DIR;
    }
    if (init)
        return ca_init(&o);
    if (bundle)
        return ca_bundle(&o);
    if ((strcmp(sub, "show") == 0 ? tls_ca_show(o.dir, stdout, err, sizeof err)
                                  : tls_ca_export(o.dir, stdout, err, sizeof err)) < 0) {
        fprintf(stderr, "sluice ca: %s\n", err);
        return EXIT_RUNTIME;
    }
    return 0;
}
