/* jail: the pieces `sluice run` builds its jail from — the veth link between
 * sluice's network namespace and the child's, the child's own side of it,
 * its resolv.conf, its environment, and cleaning up after it.
 *
 * The link uses 198.18.0.0/30 (RFC 2544 benchmarking range: never routed on
 * the internet, and a special range the proxy never dials). */
#ifndef SLUICE_JAIL_JAIL_H
#define SLUICE_JAIL_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JAIL_HOST_ADDR "198.18.0.1"  /* sluice's end: proxy, DNS, admin */
#define JAIL_CHILD_ADDR "198.18.0.2" /* the child's end */
#define JAIL_NETMASK "255.255.255.252" /* /30 */
#define JAIL_PROXY_PORT 8080
#define JAIL_ADMIN_PORT 8081
#define JAIL_DNS_PORT 53
#define JAIL_CHILD_IFNAME "sluice0"
#define JAIL_IFNAME_SIZE 16 /* IFNAMSIZ */
#define JAIL_PROXY_URL "http://" JAIL_HOST_ADDR ":8080"
#define JAIL_NO_PROXY "localhost,127.0.0.1,::1"

/* Runs argv[0] (an absolute path) with argv, stdout and stderr to
 * /dev/null unless quiet is 0, and waits. 0 when it exited 0; -1 with err. */
int jail_spawn_wait(char *const argv[], int quiet, char *err, size_t err_size);

/* Path of the ip(8) program, or NULL when it is not installed. */
const char *jail_ip_path(void);

/* In sluice's namespace: a veth pair whose host end is ifname (with
 * JAIL_HOST_ADDR, up) and whose peer, JAIL_CHILD_IFNAME, is moved into the
 * network namespace of pid. 0, or -1 with err. */
int jail_veth_create(const char *ifname, pid_t pid, char *err, size_t err_size);
/* Whether JAIL_HOST_ADDR already exists in this network namespace (another
 * sluice run's link): binding to it succeeds only then. */
bool jail_link_in_use(void);
/* Removes the host end if it is still there (quietly). */
void jail_veth_delete(const char *ifname);
/* Sets IFF_UP on ifname in this network namespace. 0, or -1 with err. */
int jail_link_up(const char *ifname, char *err, size_t err_size);
/* Gives ifname the IPv4 address addr with netmask (dotted quads), as
 * `ip addr add` would with the matching prefix. 0, or -1 with err. */
int jail_link_addr(const char *ifname, const char *addr, const char *netmask, char *err,
                   size_t err_size);

/* In the child, after unshare(CLONE_NEWNET): lo and JAIL_CHILD_IFNAME up,
 * JAIL_CHILD_ADDR on it; no default route, so only sluice's end is reachable. */
int jail_child_net_setup(char *err, size_t err_size);
/* In the child's network namespace: an nftables table (inet sluice_run)
 * whose output chain lets through only loopback, the proxy and the DNS
 * filter on sluice's end, and replies; everything else is counted and
 * dropped (so the admin port and any route the child might add are shut). */
int jail_child_firewall(char *err, size_t err_size);
/* Last step before exec: no new privileges, and the capabilities that could
 * undo the jail (network configuration, raw sockets, namespaces and mounts,
 * ptrace of sluice, modules) dropped from the bounding set, so even a root
 * CMD never has them. */
int jail_child_drop_privileges(char *err, size_t err_size);
/* The very last step before exec (after the privileges are dropped): a
 * seccomp filter refusing what reaches around a network namespace — socket
 * families but unix/inet/inet6/netlink, raw sockets, io_uring, new user
 * namespaces, setns, bpf, perf_event_open, userfaultfd, keyrings — and
 * killing calls through a foreign ABI. Inherited by everything CMD starts.
 * 0, or -1 with err. See docs/SECURITY.md. */
int jail_child_seccomp(char *err, size_t err_size);

/* SPEC §3's variables: the proxy variables (both cases), NO_PROXY, and the
 * CA bundle variables naming bundle. 0, or -1 when setenv fails. */
int jail_env_apply(const char *proxy_url, const char *bundle);
/* Writes path (0644) as the concatenation of the readable files in srcs
 * (a NULL-terminated list; missing ones are skipped, but the last one must
 * exist). 0, or -1 with err. */
int jail_bundle_write(const char *path, const char *const srcs[], char *err, size_t err_size);

struct jail_policy_args {
    const char *policy_file;  /* NULL: start from {"default": "deny"} */
    const char *const *allow; /* HOST, HOST:PORT or [V6]:PORT, appended in order */
    size_t n_allow;
    const char *const *deny; /* HOST, prepended in order */
    size_t n_deny;
    bool no_intercept;       /* intercept.enabled false (else true unless set) */
    const char *resolv_conf; /* dns.upstream from here when the policy has none */
    bool prompt;             /* --prompt: "default" becomes "prompt" unless the file sets it */
};

/* The effective policy as JSON text (free() it), validated by the policy
 * module's loader; *dns tells whether it names DNS upstreams (the filter
 * can run). NULL with err (naming the file or option) when invalid. */
char *jail_policy_build(const struct jail_policy_args *a, bool *dns, char *err, size_t err_size);

/* sluice run --prompt: forks the prompter, which reads the proxy's
 * questions from sock (one end of the approver socketpair; proxy_end is the
 * other, closed in the prompter), asks on /dev/tty and writes the answers
 * back; without a terminal it says so once and answers deny. Returns its
 * pid, or -1. */
pid_t jail_prompter_start(int sock, int proxy_end);

/* A descriptor holding pid's network namespace: while it is open the
 * namespace (and its inode number) cannot be reused by another. -1 on error. */
int jail_netns_open(pid_t pid);
/* SIGKILLs every process in the network namespace held by fd; returns how
 * many it signalled. */
int jail_kill_netns(int fd);

#endif
