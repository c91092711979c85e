/* ipt: runs iptables-restore / ip6tables-restore with generated text. */
#include "fw/ipt.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define IPT_TEXT_MAX (256 * 1024)

/* Runs argv with input on stdin (NULL: /dev/null) and stdout/stderr
 * silenced unless show_output; returns the exit status, or -1. */
static int run_tool(char *const argv[], const char *input, bool show_output)
{
    int in[2] = {-1, -1};
    if (input && pipe2(in, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        if (input) {
            close(in[0]);
            close(in[1]);
        }
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(input ? in[0] : null, 0);
        if (!show_output) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (input) {
        close(in[0]);
        /* The tools read all of stdin before acting: a short write only
         * happens if the child died, and then its status says so. */
        void (*old)(int) = signal(SIGPIPE, SIG_IGN);
        size_t len = strlen(input), off = 0;
        while (off < len) {
            ssize_t w = write(in[1], input + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        close(in[1]);
        signal(SIGPIPE, old);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool jump_exists(const char *tool, const char *table, const char *chain)
{
    char *argv[] = {(char *)tool, "-w", "-t",          (char *)table, "-C",
                    "OUTPUT",     "-j", (char *)chain, NULL};
    return run_tool(argv, NULL, false) == 0;
}

static int restore(const char *tool, const char *text, char *err, size_t err_size)
{
    char *argv[] = {(char *)tool, "-w", "--noflush", NULL};
    int rc = run_tool(argv, text, false);
    if (rc != 0) {
        snprintf(err, err_size, "%s refused the rules (exit %d)", tool, rc);
        return -1;
    }
    return 0;
}

int fw_ipt_apply(const struct fw_probe *p, const struct fw_options *o, char *err, size_t err_size)
{
    static const int fams[] = {AF_INET, AF_INET6};
    char *buf = malloc(IPT_TEXT_MAX);
    int rc = -1;
    if (!buf) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    for (size_t f = 0; f < 2; f++) {
        const char *tool = fams[f] == AF_INET ? p->iptables : p->ip6tables;
        const char *rest = fams[f] == AF_INET ? p->iptables_restore : p->ip6tables_restore;
        struct fw_text t;
        fw_text_init(&t, buf, IPT_TEXT_MAX);
        if (fw_ruleset_iptables(o, fams[f], jump_exists(tool, "filter", FW_IPT_CHAIN),
                                jump_exists(tool, "nat", FW_IPT_NAT_CHAIN), &t, err, err_size) < 0)
            goto out;
        if (restore(rest, buf, err, err_size) < 0)
            goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

int fw_ipt_remove(const struct fw_probe *p, char *err, size_t err_size)
{
    static const int fams[] = {AF_INET, AF_INET6};
    char buf[1024];
    for (size_t f = 0; f < 2; f++) {
        const char *tool = fams[f] == AF_INET ? p->iptables : p->ip6tables;
        const char *rest = fams[f] == AF_INET ? p->iptables_restore : p->ip6tables_restore;
        struct fw_text t;
        fw_text_init(&t, buf, sizeof buf);
        fw_ruleset_iptables_remove(fams[f], jump_exists(tool, "filter", FW_IPT_CHAIN),
                                   jump_exists(tool, "nat", FW_IPT_NAT_CHAIN), &t);
        if (restore(rest, buf, err, err_size) < 0)
            return -1;
    }
    return 0;
}

int fw_ipt_present(const struct fw_probe *p)
{
    if (!p->has_iptables)
        return 0;
    return jump_exists(p->iptables, "filter", FW_IPT_CHAIN);
}

int fw_ipt_show(const struct fw_probe *p)
{
    static const char *const chains[][2] = {
        {"filter", FW_IPT_CHAIN}, {"filter", FW_IPT_DROP_CHAIN}, {"nat", FW_IPT_NAT_CHAIN}};
    for (size_t f = 0; f < 2; f++) {
        const char *tool = f == 0 ? p->iptables : p->ip6tables;
        for (size_t i = 0; i < 3; i++) {
            char *argv[] = {(char *)tool, "-w", "-t", (char *)chains[i][0],
                            "-n",         "-v", "-L", (char *)chains[i][1],
                            NULL};
            fflush(stdout);
            run_tool(argv, NULL, true);
        }
    }
    return 0;
}
