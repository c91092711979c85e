/* rootless: what `sluice run` needs to jail a command without root — the
 * choice of mode, a user namespace mapping only the caller, a loopback-only
 * network namespace, and the listeners made there and handed to sluice.
 *
 * Nothing is configured on the host: the jail's namespace has only `lo`,
 * and the proxy's and the DNS filter's sockets are created on its
 * 127.0.0.1 by the child, then passed to sluice over a unix socket
 * (SCM_RIGHTS). A socket stays in the namespace it was made in, so the
 * proxy, running in sluice's namespace, accepts the jail's connections and
 * dials upstreams from outside. */
#ifndef SLUICE_JAIL_ROOTLESS_H
#define SLUICE_JAIL_ROOTLESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JAIL_LOOP_ADDR "127.0.0.1"
#define JAIL_LOOP_PROXY_URL "http://" JAIL_LOOP_ADDR ":8080"

/* The jail's listeners, in the order they are passed. */
enum {
    JAIL_LOOP_PROXY, /* TCP 127.0.0.1:8080, listening */
    JAIL_LOOP_DNS_UDP, /* UDP 127.0.0.1:53, bound */
    JAIL_LOOP_DNS_TCP, /* TCP 127.0.0.1:53, listening */
    JAIL_LOOP_FDS,
};

enum jail_mode {
    JAIL_MODE_AUTO,
    JAIL_MODE_ROOT,
    JAIL_MODE_ROOTLESS,
};

/* "root", "rootless" (or "auto") into *mode. 0, or -1 when unknown. */
int jail_mode_parse(const char *text, enum jail_mode *mode);
const char *jail_mode_name(enum jail_mode mode);

/* Whether root mode can work here: effective UID 0, CAP_NET_ADMIN, and a
 * network namespace owned by our own user namespace (else the veth link
 * cannot be made in it, e.g. as root of an unprivileged container). *why
 * gets a short reason either way. */
bool jail_root_possible(const char **why);

/* In the child, first thing after clone(CLONE_NEWUSER): no setgroups, and
 * uid and gid mapped to themselves only (the caller's own IDs: CMD keeps
 * them and, not being root there, has no capability after exec). 0, or -1
 * with err (errno kept for jail_userns_diagnose). */
int jail_userns_map(uid_t uid, gid_t gid, char *err, size_t err_size);

/* In the child's network namespace: lo up, then the listeners of
 * JAIL_LOOP_FDS on 127.0.0.1 into fds. 0, or -1 with err. */
int jail_loop_listeners(int fds[JAIL_LOOP_FDS], char *err, size_t err_size);

/* n descriptors over a unix socket, in one message with one byte; the
 * receiver gets them close-on-exec. 0, or -1 (recv: -1 also at EOF). */
int jail_fds_send(int sock, const int *fds, size_t n);
int jail_fds_recv(int sock, int *fds, size_t n);

/* Why a user namespace could not be made or set up (err_no from the failing
 * call), and how to fix it: the sysctl to set, or to run with sudo. */
void jail_userns_diagnose(int err_no, char *out, size_t out_size);

#endif
