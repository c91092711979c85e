/* sluice: one multicall binary; the subcommand table below is the whole CLI,
 * and `sluice --help` is generated from it. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    const char *help;
};

static const struct subcommand subcommands[] = {
    {"proxy", cmd_proxy_main, "run the policy-enforcing forward proxy", cmd_proxy_help},
    {"policy", cmd_policy_main, "check a policy file or explain a decision", cmd_policy_help},
    {"status", cmd_status_main, "show a running proxy's status (admin API)", cmd_status_help},
    {"reload", cmd_reload_main, "make a running proxy reload its policy", cmd_reload_help},
    {"ca", cmd_ca_main, "make, show or export the internal CA for TLS interception", cmd_ca_help},
    {"enforce", cmd_enforce_main, "apply, remove or show the kernel rules (nftables)",
     cmd_enforce_help},
    {"run", cmd_run_main, "run one command jailed behind the policy", cmd_run_help},
    {"manifest", cmd_manifest_main, "print Kubernetes or Podman YAML that deploys sluice",
     cmd_manifest_help},
    {"approvals", cmd_approvals_main, "list requests waiting for an operator (prompt rules)",
     cmd_approvals_help},
    {"approve", cmd_approve_main, "let a waiting request through", cmd_approve_help},
    {"deny", cmd_deny_main, "refuse a waiting request", cmd_deny_help},
};

static void print_usage(FILE *out)
{
    fprintf(out, "usage: sluice COMMAND [OPTIONS]\n\n"
                 "Egress control for sandboxed code.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\n`sluice COMMAND --help` describes one command; "
                 "`sluice --version` prints the version.\n");
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        const struct subcommand *sc = &subcommands[i];
        if (strcmp(argv[1], sc->name) != 0)
            continue;
        if (wants_help(argc - 1, argv + 1)) {
            fputs(sc->help, stdout);
            return 0;
        }
        return sc->fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "sluice: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return EXIT_USAGE;
}
