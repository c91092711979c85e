/* addr: CIDR prefixes and the table of special address ranges.
 *
 * The special-range check runs on the address actually connected to, after
 * DNS, which is why it works on sockaddrs rather than on names. */
#ifndef SLUICE_POLICY_ADDR_H
#define SLUICE_POLICY_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct cidr {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t bytes[16]; /* network address, host bits zero (4 used for IPv4) */
    uint8_t prefix;    /* 0..32 or 0..128 */
};

/* Parses "203.0.113.0/24", "2001:db8::/32" or a bare address (full-length
 * prefix). Strict dotted-quad only; host bits set is an error. */
int cidr_parse(const char *text, struct cidr *out, const char **why);
bool cidr_contains(const struct cidr *c, const struct sockaddr *sa);
/* Whether every address of inner lies within outer. */
bool cidr_within(const struct cidr *inner, const struct cidr *outer);
int cidr_format(const struct cidr *c, char *buf, size_t size);

/* NULL when sa is an ordinary public address; otherwise the name of the
 * special range it falls in ("loopback", "private (RFC 1918)",
 * "link-local / cloud metadata", "IPv4-mapped IPv6", ...). IPv6 forms that
 * embed IPv4 (mapped, compatible, NAT64, 6to4, Teredo) are special. */
const char *addr_special_range(const struct sockaddr *sa);
/* Same, and when special, the range itself. */
const char *addr_special_range_cidr(const struct sockaddr *sa, struct cidr *range);

#endif
