/* probe: capability, backend and network-namespace checks for enforce. */
#include "fw/probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "fw/nft.h"

static bool has_cap_net_admin(void)
{
    cap_t caps = cap_get_proc();
    cap_flag_value_t v = CAP_CLEAR;
    if (!caps)
        return false;
    if (cap_get_flag(caps, CAP_NET_ADMIN, CAP_EFFECTIVE, &v) < 0)
        v = CAP_CLEAR;
    cap_free(caps);
    return v == CAP_SET;
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) < 0 || stat(b, &sb) < 0)
        return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Linux 6.18 gave init_net the fixed inode number FW_INIT_NETNS_INO; from
 * then on any other number proves "not the host's". */
static bool kernel_fixes_init_netns(void)
{
    struct utsname u;
    unsigned long major, minor;
    char *end = NULL;
    if (uname(&u) < 0)
        return false;
    major = strtoul(u.release, &end, 10);
    if (end == u.release || *end != '.')
        return false;
    minor = strtoul(end + 1, NULL, 10);
    return major > 6 || (major == 6 && minor >= 18);
}

/* The host's namespace is the kernel's initial one. Recent kernels give it
 * a fixed inode number; on older ones, compare with PID 1's, which is the
 * host's init only when we share the initial PID namespace (in a container
 * PID 1 is the container's own first process). */
enum fw_netns fw_probe_netns(void)
{
    struct stat self, pid;
    const char *test = getenv(FW_PROBE_HOST_NETNS_ENV);

    if (stat("/proc/self/ns/net", &self) < 0)
        return FW_NETNS_UNKNOWN;
    if (test && *test && same_file("/proc/self/ns/net", test))
        return FW_NETNS_HOST;
    if (self.st_ino == FW_INIT_NETNS_INO)
        return FW_NETNS_HOST;
    if (self.st_ino < 0xF0000000u)
        return FW_NETNS_POD; /* a fixed number that is not init_net's */
    if (stat("/proc/self/ns/pid", &pid) == 0 && pid.st_ino == FW_INIT_PIDNS_INO) {
        struct stat init;
        if (stat("/proc/1/ns/net", &init) == 0)
            return init.st_dev == self.st_dev && init.st_ino == self.st_ino ? FW_NETNS_HOST
                                                                            : FW_NETNS_POD;
    }
    /* A dynamic number: on kernels with a fixed init_net number that alone
     * proves this is not the host's; otherwise we cannot tell. */
    return kernel_fixes_init_netns() ? FW_NETNS_POD : FW_NETNS_UNKNOWN;
}

const char *fw_netns_name(enum fw_netns n)
{
    switch (n) {
    case FW_NETNS_POD:
        return "own network namespace";
    case FW_NETNS_HOST:
        return "host network namespace";
    case FW_NETNS_UNKNOWN:
        return "network namespace not known";
    }
    return "?";
}

const char *fw_backend_name(enum fw_backend b)
{
    switch (b) {
    case FW_BACKEND_NONE:
        return "none";
    case FW_BACKEND_NFTABLES:
        return "nftables";
    case FW_BACKEND_IPTABLES:
        return "iptables";
    }
    return "?";
}

static bool find_tool(const char *name, char *out, size_t size)
{
    static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(out, size, "%s/%s", dirs[i], name);
        if (access(out, X_OK) == 0)
            return true;
    }
    out[0] = '\0';
    return false;
}

/* Without nftables in the kernel, Debian's default iptables (the nft
 * flavour) fails too, so the legacy tools come first then. */
static void find_iptables(struct fw_probe *p)
{
    const char *flavours[2] = {"", "-legacy"};
    if (!p->nftables) {
        flavours[0] = "-legacy";
        flavours[1] = "";
    }
    for (size_t i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "iptables%s-restore", flavours[i]);
        if (!find_tool(name, p->iptables_restore, sizeof p->iptables_restore))
            continue;
        snprintf(name, sizeof name, "ip6tables%s-restore", flavours[i]);
        find_tool(name, p->ip6tables_restore, sizeof p->ip6tables_restore);
        snprintf(name, sizeof name, "iptables%s", flavours[i]);
        find_tool(name, p->iptables, sizeof p->iptables);
        snprintf(name, sizeof name, "ip6tables%s", flavours[i]);
        find_tool(name, p->ip6tables, sizeof p->ip6tables);
        p->has_iptables = p->ip6tables_restore[0] && p->iptables[0] && p->ip6tables[0];
        if (p->has_iptables)
            return;
    }
}

void fw_probe_run(struct fw_probe *p, bool check_nft)
{
    memset(p, 0, sizeof *p);
    p->cap_net_admin = has_cap_net_admin();
    p->netns = fw_probe_netns();
    if (check_nft) {
        if (!p->cap_net_admin)
            snprintf(p->nft_why, sizeof p->nft_why, "no CAP_NET_ADMIN");
        else
            p->nftables = fw_nft_probe(p->nft_why, sizeof p->nft_why) == 0;
    }
    find_iptables(p);
}
