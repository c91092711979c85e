/* host: canonical form of a destination host, shared by every entry point.
 *
 * One canonicaliser decides what a host *is* before any rule looks at it, so
 * the CONNECT authority, an absolute-form URI, a Host header, a TLS SNI and a
 * DNS question name all become the same value for the same destination. */
#ifndef SLUICE_POLICY_HOST_H
#define SLUICE_POLICY_HOST_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOST_NAME_MAX_BYTES 253
#define HOST_LABEL_MAX_BYTES 63
/* Long enough for a 253-byte name or a compressed IPv6 text, plus NUL. */
#define HOST_TEXT_SIZE 256

enum host_kind {
    HOST_KIND_NAME,
    HOST_KIND_IPV4,
    HOST_KIND_IPV6,
};

struct host {
    enum host_kind kind;
    /* Canonical text: lower-case A-label name without trailing dot; dotted
     * quad; RFC 5952 IPv6 without brackets. */
    char text[HOST_TEXT_SIZE];
    size_t len;
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } addr; /* valid for the IP kinds */
};

/* Canonicalises a bare host (no port): lower case, trailing dot dropped,
 * IDN mapped to punycode, "[v6]" unwrapped. Refuses numeric shorthands of
 * IPv4 (integers, octal, hex, short forms), userinfo, '%', '\\', NUL and
 * control characters, brackets around names, empty/over-long labels and
 * names. Returns 0, or -1 with *why set to a static message. */
int host_canonicalise(const char *in, size_t len, struct host *out, const char **why);

/* Splits an authority "host", "host:port", "[v6]" or "[v6]:port" and
 * canonicalises the host. default_port applies when no port is written;
 * an explicit port must be 1..65535 in plain decimal. */
int host_parse_authority(const char *in, size_t len, uint16_t default_port, struct host *out,
                         uint16_t *port, const char **why);

/* Formats host and port as an authority ("[v6]:port" for IPv6). */
int host_format_authority(const struct host *h, uint16_t port, char *buf, size_t size);

#endif
