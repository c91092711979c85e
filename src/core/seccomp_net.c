/* seccomp_net: see seccomp_net.h. */
#include "core/seccomp_net.h"

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>

/* The socket type's low bits; the rest are SOCK_NONBLOCK/SOCK_CLOEXEC. */
#define SOCK_TYPE_MASK 0xf
/* Families above this (and any value with high bits set) are refused. */
#define FAMILY_LIMIT 64

static int family_allowed(int family)
{
    return family == AF_UNIX || family == AF_INET || family == AF_INET6 || family == AF_NETLINK;
}

/* One rule per refused family (rules are alternatives; the comparisons
 * inside one rule must all hold), and one for everything above, which also
 * catches a family with high bits set. */
static int refuse_families(scmp_filter_ctx sc, int nr)
{
    for (int f = 0; f < FAMILY_LIMIT; f++) {
        if (family_allowed(f))
            continue;
        if (seccomp_rule_add(sc, SCMP_ACT_ERRNO(EAFNOSUPPORT), nr, 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)f, 0)) < 0)
            return -1;
    }
    return seccomp_rule_add(sc, SCMP_ACT_ERRNO(EAFNOSUPPORT), nr, 1,
                            SCMP_A0(SCMP_CMP_GE, (scmp_datum_t)FAMILY_LIMIT, 0));
}

static int refuse_raw(scmp_filter_ctx sc)
{
    static const int families[] = {AF_INET, AF_INET6};
    static const int types[] = {SOCK_RAW, SOCK_PACKET};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        for (size_t j = 0; j < sizeof types / sizeof types[0]; j++)
            if (seccomp_rule_add(
                    sc, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 2,
                    SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i], 0),
                    SCMP_A1(SCMP_CMP_MASKED_EQ, SOCK_TYPE_MASK, (scmp_datum_t)types[j])) < 0)
                return -1;
    return 0;
}

int seccomp_net_only_ip_sockets(scmp_filter_ctx sc)
{
    if (refuse_families(sc, SCMP_SYS(socket)) < 0 || refuse_families(sc, SCMP_SYS(socketpair)) < 0)
        return -1;
    return refuse_raw(sc);
}
