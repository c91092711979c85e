/* addr: CIDR prefixes and the special-range table.
 *
 * The table lists every range a sandbox must not reach by default: the
 * machine itself, the networks around it, the cloud metadata services, and
 * every IPv6 spelling that embeds an IPv4 address (a mapped or translated
 * address is special in itself; we never unwrap one to judge the inner
 * address, because what the kernel or a NAT64 gateway does with it is not
 * ours to predict). */
#include "policy/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "policy/host.h"
#include "policy/match.h"

/* Longest CIDR text we parse: a full IPv6 with embedded IPv4, "/128". */
#define CIDR_TEXT_MAX 128

struct special_range {
    struct cidr cidr;
    const char *name; /* what addr_special_range() returns */
    const char *why;  /* name with the range, for refusals */
};

#define V4(a, b, c, d, p, nm)                                                                      \
    {                                                                                              \
        {AF_INET, {a, b, c, d}, p}, nm, nm " (" #a "." #b "." #c "." #d "/" #p ")"                 \
    }
#define V6(text, p, nm, ...)                                                                       \
    {                                                                                              \
        {AF_INET6, {__VA_ARGS__}, p}, nm, nm " (" text ")"                                         \
    }

static const struct special_range special_ranges[] = {
    V4(0, 0, 0, 0, 8, "this network"),
    V4(10, 0, 0, 0, 8, "private (RFC 1918)"),
    V4(100, 64, 0, 0, 10, "carrier-grade NAT"),
    V4(127, 0, 0, 0, 8, "loopback"),
    V4(169, 254, 0, 0, 16, "link-local / cloud metadata"),
    V4(172, 16, 0, 0, 12, "private (RFC 1918)"),
    V4(192, 0, 0, 0, 24, "IETF protocol assignments"),
    V4(192, 0, 2, 0, 24, "documentation"),
    V4(192, 88, 99, 0, 24, "6to4 relay anycast"),
    V4(192, 168, 0, 0, 16, "private (RFC 1918)"),
    V4(198, 18, 0, 0, 15, "benchmarking"),
    V4(198, 51, 100, 0, 24, "documentation"),
    V4(203, 0, 113, 0, 24, "documentation"),
    V4(224, 0, 0, 0, 4, "multicast"),
    V4(240, 0, 0, 0, 4, "reserved"),
    V4(255, 255, 255, 255, 32, "broadcast"),
    V4(168, 63, 129, 16, 32, "cloud platform wire server"),
    V6("::/128", 128, "unspecified", 0),
    V6("::1/128", 128, "loopback", [15] = 1),
    V6("::ffff:0:0/96", 96, "IPv4-mapped IPv6", [10] = 0xff, [11] = 0xff),
    V6("::/96", 96, "IPv4-compatible IPv6", 0),
    V6("64:ff9b::/96", 96, "NAT64 (IPv4-embedded)", 0x00, 0x64, 0xff, 0x9b),
    V6("64:ff9b:1::/48", 48, "NAT64 local-use (IPv4-embedded)", 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01),
    V6("100::/64", 64, "discard-only", 0x01, 0x00),
    V6("2001::/32", 32, "Teredo (IPv4-embedded)", 0x20, 0x01),
    V6("2001:2::/48", 48, "benchmarking", 0x20, 0x01, 0x00, 0x02),
    V6("2001:10::/28", 28, "ORCHID", 0x20, 0x01, 0x00, 0x10),
    V6("2001:20::/28", 28, "ORCHIDv2", 0x20, 0x01, 0x00, 0x20),
    V6("2001:db8::/32", 32, "documentation", 0x20, 0x01, 0x0d, 0xb8),
    V6("2002::/16", 16, "6to4 (IPv4-embedded)", 0x20, 0x02),
    V6("3fff::/20", 20, "documentation", 0x3f, 0xff),
    V6("fc00::/7", 7, "unique local / cloud metadata", 0xfc),
    V6("fe80::/10", 10, "link-local", 0xfe, 0x80),
    V6("fec0::/10", 10, "site-local (deprecated)", 0xfe, 0xc0),
    V6("ff00::/8", 8, "multicast", 0xff),
};

#define N_SPECIAL (sizeof special_ranges / sizeof special_ranges[0])

static size_t family_bits(int family)
{
    return family == AF_INET ? 32 : 128;
}

/* Whether the first bits of a and b are equal. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* Copies the address of sa into bytes; 0, or -1 for other families. */
static int sockaddr_bytes(const struct sockaddr *sa, int *family, uint8_t bytes[16])
{
    if (!sa)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        memcpy(bytes, &sin->sin_addr, 4);
        *family = AF_INET;
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        memcpy(bytes, &sin6->sin6_addr, 16);
        *family = AF_INET6;
        return 0;
    }
    return -1;
}

static int parse_prefix(const char *s, unsigned max, uint8_t *out, const char **why)
{
    size_t len = strlen(s);
    unsigned v = 0;

    if (len == 0 || len > 3) {
        *why = "CIDR prefix length must be a number";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            *why = "CIDR prefix length must be a number";
            return -1;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (len > 1 && s[0] == '0') {
        *why = "leading zero in CIDR prefix length";
        return -1;
    }
    if (v > max) {
        *why = "CIDR prefix length too long for the address family";
        return -1;
    }
    *out = (uint8_t)v;
    return 0;
}

int cidr_parse(const char *text, struct cidr *out, const char **why)
{
    const char *dummy;
    struct host h;
    size_t len = strnlen(text, CIDR_TEXT_MAX + 1);

    if (!why)
        why = &dummy;
    memset(out, 0, sizeof *out);
    if (len > CIDR_TEXT_MAX) {
        *why = "CIDR too long";
        return -1;
    }
    const char *slash = memchr(text, '/', len);
    size_t addr_len = slash ? (size_t)(slash - text) : len;
    if (host_canonicalise(text, addr_len, &h, why) < 0)
        return -1;
    if (h.kind == HOST_KIND_NAME) {
        *why = "not an IP address";
        return -1;
    }
    out->family = h.kind == HOST_KIND_IPV4 ? AF_INET : AF_INET6;
    if (out->family == AF_INET)
        memcpy(out->bytes, &h.addr.v4, 4);
    else
        memcpy(out->bytes, &h.addr.v6, 16);
    unsigned max = (unsigned)family_bits(out->family);
    out->prefix = (uint8_t)max;
    if (slash && parse_prefix(slash + 1, max, &out->prefix, why) < 0)
        return -1;
    struct cidr masked = *out;
    /* Compare with the masked copy: host bits set usually means a typo in
     * the prefix length, which would otherwise widen or narrow the rule. */
    for (unsigned bit = out->prefix; bit < max; bit++)
        masked.bytes[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    if (memcmp(masked.bytes, out->bytes, sizeof out->bytes) != 0) {
        *why = "host bits set after the CIDR prefix";
        return -1;
    }
    return 0;
}

bool cidr_contains(const struct cidr *c, const struct sockaddr *sa)
{
    int family;
    uint8_t bytes[16];
    if (sockaddr_bytes(sa, &family, bytes) < 0 || family != c->family)
        return false;
    return prefix_equal(c->bytes, bytes, c->prefix);
}

bool cidr_within(const struct cidr *inner, const struct cidr *outer)
{
    if (inner->family != outer->family || inner->prefix < outer->prefix)
        return false;
    return prefix_equal(inner->bytes, outer->bytes, outer->prefix);
}

int cidr_format(const struct cidr *c, char *buf, size_t size)
{
    char text[INET6_ADDRSTRLEN];
    if (!inet_ntop(c->family, c->bytes, text, sizeof text))
        return -1;
    int n = snprintf(buf, size, "%s/%u", text, (unsigned)c->prefix);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* The most specific range wins, so a name or CIDR rule that unlocks a
 * wide range (::/96) does not unlock a narrower one inside it (::1). */
static const struct special_range *special_lookup(const struct sockaddr *sa)
{
    int family;
    uint8_t bytes[16];
    const struct special_range *best = NULL;

    if (sockaddr_bytes(sa, &family, bytes) < 0)
        return NULL;
    for (size_t i = 0; i < N_SPECIAL; i++) {
        const struct special_range *r = &special_ranges[i];
        if (r->cidr.family != family || !prefix_equal(r->cidr.bytes, bytes, r->cidr.prefix))
            continue;
        if (!best || r->cidr.prefix > best->cidr.prefix)
            best = r;
    }
    return best;
}

const char *addr_special_range(const struct sockaddr *sa)
{
    const struct special_range *r = special_lookup(sa);
    return r ? r->name : NULL;
}

const char *addr_special_range_cidr(const struct sockaddr *sa, struct cidr *range)
{
    const struct special_range *r = special_lookup(sa);
    if (!r)
        return NULL;
    if (range)
        *range = r->cidr;
    return r->name;
}

const char *addr_special_range_why(const struct sockaddr *sa, struct cidr *range)
{
    const struct special_range *r = special_lookup(sa);
    if (!r)
        return NULL;
    if (range)
        *range = r->cidr;
    return r->why;
}
