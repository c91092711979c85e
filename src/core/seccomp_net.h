/* seccomp_net: the socket rules shared by every seccomp filter sluice
 * installs on a networked process (the proxy's own, src/proxy/sandbox.c,
 * and `sluice run`'s jailed command, src/jail/seccomp.c). */
#ifndef SLUICE_CORE_SECCOMP_NET_H
#define SLUICE_CORE_SECCOMP_NET_H

#include <seccomp.h>

/* Adds to sc: socket() and socketpair() on any family but unix, IPv4, IPv6
 * and netlink (netlink is per network namespace; getaddrinfo, ip(8) and
 * libnftables use it) answer EAFNOSUPPORT, as from a kernel built without
 * the family: AF_PACKET, AF_VSOCK (no network namespace confines it) and
 * any family a later kernel adds. Raw IPv4/IPv6 sockets and the obsolete
 * (AF_INET, SOCK_PACKET) answer EPERM, as without CAP_NET_RAW; netlink's
 * SOCK_RAW stays, as that is how netlink sockets are opened. 0, or -1 when
 * a rule could not be added. */
int seccomp_net_only_ip_sockets(scmp_filter_ctx sc);

#endif
