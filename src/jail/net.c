/* jail net: the veth link, the child's side of it, resolv.conf, and finding
 * processes left in the child's network namespace. The veth pair is made
 * with ip(8) (iproute2, always present where network namespaces are used)
 * rather than hand-written netlink; addresses and link state are set with
 * the classic interface ioctls, which saves a process each (start-up time
 * of `sluice run`, bench/RESULTS.md). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fw/nft.h"
#include "jail/jail.h"

#define PATH_SIZE 64
#define ARG_SIZE 32

const char *jail_ip_path(void)
{
    static const char *const candidates[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip",
                                             NULL};
    for (size_t i = 0; candidates[i]; i++)
        if (access(candidates[i], X_OK) == 0)
            return candidates[i];
    return NULL;
}

int jail_spawn_wait(char *const argv[], int quiet, char *err, size_t err_size)
{
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, err_size, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (quiet) {
            int fd = open("/dev/null", O_WRONLY);
            if (fd >= 0) {
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                close(fd);
            }
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf(err, err_size, "waitpid: %s", strerror(errno));
            return -1;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    snprintf(err, err_size, "'%s %s %s' failed (status %d)", argv[0], argv[1] ? argv[1] : "",
             argv[1] && argv[2] ? argv[2] : "", status);
    return -1;
}

#define IP_MAX_ARGS 16

/* ip ARGS (NULL-terminated), with the program's path filled in. */
static int ip_run(int quiet, char *err, size_t err_size, const char *const args[])
{
    const char *path = jail_ip_path();
    if (path == NULL) {
        snprintf(err, err_size, "ip(8) not found: install iproute2");
        return -1;
    }
    char *argv[IP_MAX_ARGS + 2];
    size_t n = 0;
    argv[n++] = (char *)path;
    for (size_t i = 0; args[i] && n <= IP_MAX_ARGS; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return jail_spawn_wait(argv, quiet, err, err_size);
}

int jail_veth_create(const char *ifname, pid_t pid, char *err, size_t err_size)
{
    char pidtext[ARG_SIZE];
    snprintf(pidtext, sizeof pidtext, "%ld", (long)pid);
    if (ip_run(0, err, err_size,
               (const char *[]){"link", "add", ifname, "type", "veth", "peer", "name",
                                JAIL_CHILD_IFNAME, "netns", pidtext, NULL}) < 0)
        return -1;
    if (jail_link_addr(ifname, JAIL_HOST_ADDR, JAIL_NETMASK, err, err_size) < 0 ||
        jail_link_up(ifname, err, err_size) < 0) {
        jail_veth_delete(ifname);
        return -1;
    }
    return 0;
}

/* One interface ioctl on a throwaway socket of this network namespace. */
static int link_ioctl(unsigned long request, struct ifreq *ifr)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rc = ioctl(fd, request, ifr);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int jail_link_up(const char *ifname, char *err, size_t err_size)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (link_ioctl(SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        if (link_ioctl(SIOCSIFFLAGS, &ifr) == 0)
            return 0;
    }
    snprintf(err, err_size, "bringing %s up: %s", ifname, strerror(errno));
    return -1;
}

static int set_ipv4(const char *ifname, unsigned long request, const char *addr)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    struct sockaddr_in *sa = (struct sockaddr_in *)&ifr.ifr_addr;
    sa->sin_family = AF_INET;
    if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    return link_ioctl(request, &ifr);
}

int jail_link_addr(const char *ifname, const char *addr, const char *netmask, char *err,
                   size_t err_size)
{
    if (set_ipv4(ifname, SIOCSIFADDR, addr) == 0 && set_ipv4(ifname, SIOCSIFNETMASK, netmask) == 0)
        return 0;
    snprintf(err, err_size, "setting %s on %s: %s", addr, ifname, strerror(errno));
    return -1;
}

bool jail_link_in_use(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, JAIL_HOST_ADDR, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool used = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return used;
}

void jail_veth_delete(const char *ifname)
{
    /* Usually gone already: a veth pair dies with the child's namespace. */
    if (if_nametoindex(ifname) == 0)
        return;
    char err[ARG_SIZE];
    ip_run(1, err, sizeof err, (const char *[]){"link", "del", ifname, NULL});
}

int jail_child_net_setup(char *err, size_t err_size)
{
    if (jail_link_up("lo", err, err_size) < 0 ||
        jail_link_addr(JAIL_CHILD_IFNAME, JAIL_CHILD_ADDR, JAIL_NETMASK, err, err_size) < 0)
        return -1;
    return jail_link_up(JAIL_CHILD_IFNAME, err, err_size);
}

int jail_child_firewall(char *err, size_t err_size)
{
    static const char script[] =
        "table inet sluice_run {\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy drop;\n"
        "    oif lo accept\n"
        "    ct state established,related accept\n"
        "    ip daddr " JAIL_HOST_ADDR " tcp dport 8080 accept\n"
        "    ip daddr " JAIL_HOST_ADDR " meta l4proto { tcp, udp } th dport 53 accept\n"
        "    counter drop\n"
        "  }\n"
        "}\n";
    return fw_nft_run_script(script, err, err_size);
}

int jail_child_drop_privileges(char *err, size_t err_size)
{
    static const int caps[] = {CAP_NET_ADMIN,  CAP_NET_RAW, CAP_SYS_ADMIN, CAP_SYS_PTRACE,
                               CAP_SYS_MODULE, CAP_BPF,     CAP_SYS_RAWIO, CAP_SYS_BOOT,
                               CAP_MKNOD,      CAP_SETPCAP};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        if (prctl(PR_CAPBSET_DROP, caps[i], 0, 0, 0) < 0 && errno != EINVAL) {
            snprintf(err, err_size, "dropping capability %d: %s", caps[i], strerror(errno));
            return -1;
        }
    }
    /* A root exec gains the inheritable and ambient sets on top of the
     * bounding set (a container or service may hand them in): empty both,
     * or CAP_NET_ADMIN could come back through them. */
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) < 0) {
        snprintf(err, err_size, "reading capabilities: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
        data[i].inheritable = 0;
    if (syscall(SYS_capset, &hdr, data) < 0 ||
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) {
        snprintf(err, err_size, "clearing inheritable capabilities: %s", strerror(errno));
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        snprintf(err, err_size, "no_new_privs: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int jail_netns_open(pid_t pid)
{
    char path[PATH_SIZE];
    snprintf(path, sizeof path, "/proc/%ld/ns/net", (long)pid);
    return open(path, O_RDONLY | O_CLOEXEC);
}

static bool same_netns(long pid, const struct stat *ns)
{
    char path[PATH_SIZE];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%ld/ns/net", pid);
    return stat(path, &st) == 0 && st.st_ino == ns->st_ino && st.st_dev == ns->st_dev;
}

int jail_kill_netns(int fd)
{
    struct stat ns;
    if (fstat(fd, &ns) < 0)
        return 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        errno = 0;
        long pid = strtol(e->d_name, &end, 10);
        if (errno || *end || pid <= 1 || pid == (long)getpid())
            continue;
        if (same_netns(pid, &ns) && kill((pid_t)pid, SIGKILL) == 0)
            n++;
    }
    closedir(d);
    return n;
}
