/* rootless: user namespace, loopback listeners and their hand-over, and
 * the diagnosis when a user namespace is refused. */
#include "jail/rootless.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail/jail.h"

#define MAP_TEXT 64
#define SYSCTL_TEXT 32
#define LOOP_BACKLOG 4096
#define JAIL_LOOP_PROXY_PORT 8080
#define JAIL_LOOP_DNS_PORT 53

int jail_mode_parse(const char *text, enum jail_mode *mode)
{
    if (strcmp(text, "root") == 0)
        *mode = JAIL_MODE_ROOT;
    else if (strcmp(text, "rootless") == 0)
        *mode = JAIL_MODE_ROOTLESS;
    else if (strcmp(text, "auto") == 0)
        *mode = JAIL_MODE_AUTO;
    else
        return -1;
    return 0;
}

const char *jail_mode_name(enum jail_mode mode)
{
    return mode == JAIL_MODE_ROOT ? "root" : mode == JAIL_MODE_ROOTLESS ? "rootless" : "auto";
}

static bool have_net_admin(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) < 0)
        return false;
    return (data[CAP_NET_ADMIN / 32].effective & (1u << (CAP_NET_ADMIN % 32))) != 0;
}

/* Our network namespace's owner is our user namespace: NS_GET_USERNS
 * fails with EPERM when the owner is an ancestor (we are in a child user
 * namespace, as in an unprivileged container). */
static bool own_netns(void)
{
    int net = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (net < 0)
        return false;
    int owner = ioctl(net, NS_GET_USERNS);
    close(net);
    if (owner < 0)
        return false;
    struct stat a, b;
    bool same = fstat(owner, &a) == 0 && stat("/proc/self/ns/user", &b) == 0 &&
                a.st_ino == b.st_ino && a.st_dev == b.st_dev;
    close(owner);
    return same;
}

bool jail_root_possible(const char **why)
{
    if (geteuid() != 0) {
        *why = "not running as root";
        return false;
    }
    if (!have_net_admin()) {
        *why = "running as root but without CAP_NET_ADMIN";
        return false;
    }
    if (!own_netns()) {
        *why = "running as root of a user namespace that does not own this network namespace";
        return false;
    }
    *why = "running as root with CAP_NET_ADMIN";
    return true;
}

static int write_proc(const char *path, const char *text, char *err, size_t err_size)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len) {
        int e = errno;
        snprintf(err, err_size, "writing %s: %s", path, strerror(e));
        if (fd >= 0)
            close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

int jail_userns_map(uid_t uid, gid_t gid, char *err, size_t err_size)
{
    char map[MAP_TEXT];
    /* Without "deny" an unprivileged process may not write gid_map (and
     * could drop groups that deny it access). */
    if (write_proc("/proc/self/setgroups", "deny", err, err_size) < 0)
        return -1;
    snprintf(map, sizeof map, "%lu %lu 1\n", (unsigned long)uid, (unsigned long)uid);
    if (write_proc("/proc/self/uid_map", map, err, err_size) < 0)
        return -1;
    snprintf(map, sizeof map, "%lu %lu 1\n", (unsigned long)gid, (unsigned long)gid);
    return write_proc("/proc/self/gid_map", map, err, err_size);
}

static int loop_socket(int type, int port, char *err, size_t err_size)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, JAIL_LOOP_ADDR, &sa.sin_addr);
    int one = 1;
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        goto fail;
    if (type == SOCK_STREAM && listen(fd, LOOP_BACKLOG) < 0)
        goto fail;
    return fd;
fail:
    snprintf(err, err_size, "%s listener on %s:%d in the jail: %s",
             type == SOCK_STREAM ? "TCP" : "UDP", JAIL_LOOP_ADDR, port, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

int jail_loop_listeners(int fds[JAIL_LOOP_FDS], char *err, size_t err_size)
{
    for (int i = 0; i < JAIL_LOOP_FDS; i++)
        fds[i] = -1;
    /* ip(8) would lose our capabilities at exec (we are not root in the
     * user namespace): set the flag ourselves. */
    if (jail_link_up("lo", err, err_size) < 0)
        return -1;
    fds[JAIL_LOOP_PROXY] = loop_socket(SOCK_STREAM, JAIL_LOOP_PROXY_PORT, err, err_size);
    if (fds[JAIL_LOOP_PROXY] >= 0)
        fds[JAIL_LOOP_DNS_UDP] = loop_socket(SOCK_DGRAM, JAIL_LOOP_DNS_PORT, err, err_size);
    if (fds[JAIL_LOOP_DNS_UDP] >= 0)
        fds[JAIL_LOOP_DNS_TCP] = loop_socket(SOCK_STREAM, JAIL_LOOP_DNS_PORT, err, err_size);
    if (fds[JAIL_LOOP_DNS_TCP] >= 0)
        return 0;
    for (int i = 0; i < JAIL_LOOP_FDS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return -1;
}

int jail_fds_send(int sock, const int *fds, size_t n)
{
    char byte = 'f';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int) * JAIL_LOOP_FDS)];
        struct cmsghdr align;
    } u;
    if (n > JAIL_LOOP_FDS) {
        errno = EINVAL;
        return -1;
    }
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = u.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    ssize_t r;
    do
        r = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r == 1 ? 0 : -1;
}

int jail_fds_recv(int sock, int *fds, size_t n)
{
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int) * JAIL_LOOP_FDS)];
        struct cmsghdr align;
    } u;
    if (n > JAIL_LOOP_FDS) {
        errno = EINVAL;
        return -1;
    }
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    ssize_t r;
    do
        r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r != 1)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(sizeof(int) * n) || (msg.msg_flags & MSG_CTRUNC)) {
        errno = EPROTO;
        return -1;
    }
    memcpy(fds, CMSG_DATA(c), sizeof(int) * n);
    return 0;
}

/* A sysctl's value, or -1 when it does not exist on this kernel. */
static long sysctl_value(const char *path)
{
    char text[SYSCTL_TEXT];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    return errno || end == text ? -1 : v;
}

#define OR_SUDO "or run sluice run with sudo (root mode)"

void jail_userns_diagnose(int err_no, char *out, size_t out_size)
{
    long max = sysctl_value("/proc/sys/user/max_user_namespaces");
    if (max == 0) {
        snprintf(out, out_size,
                 "user namespaces are disabled here (user.max_user_namespaces = 0): enable them "
                 "with `sudo sysctl -w user.max_user_namespaces=15000`, " OR_SUDO);
    } else if (sysctl_value("/proc/sys/kernel/unprivileged_userns_clone") == 0 &&
               geteuid() != 0) {
        snprintf(out, out_size,
                 "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = "
                 "0): enable them with `sudo sysctl -w kernel.unprivileged_userns_clone=1`, " OR_SUDO);
    } else if (sysctl_value("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1 &&
               geteuid() != 0) {
        snprintf(out, out_size,
                 "AppArmor restricts unprivileged user namespaces "
                 "(kernel.apparmor_restrict_unprivileged_userns = 1): allow them with `sudo sysctl "
                 "-w kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile "
                 "granting `userns` to sluice, " OR_SUDO);
    } else if (err_no == ENOSPC || err_no == EUSERS) {
        snprintf(out, out_size,
                 "no more user namespaces may be made here (user.max_user_namespaces = %ld, or "
                 "32 levels of nesting reached): raise the limit with `sudo sysctl -w "
                 "user.max_user_namespaces=15000`, " OR_SUDO,
                 max);
    } else if (err_no == EPERM || err_no == EACCES) {
        snprintf(out, out_size,
                 "making a user namespace was refused (%s), as inside a container whose seccomp "
                 "profile or missing capabilities forbid it: run on the host, allow user "
                 "namespaces in the container, " OR_SUDO,
                 strerror(err_no));
    } else {
        snprintf(out, out_size, "cannot make a user namespace: %s; " OR_SUDO, strerror(err_no));
    }
}
