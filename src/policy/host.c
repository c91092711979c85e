/* host: one canonical form per destination host.
 *
 * Every refusal here closes a way to make the proxy and the upstream resolver
 * disagree about which host is meant: numeric shorthands that inet_aton()
 * would turn into 127.0.0.1, userinfo that a lenient URL parser would strip,
 * zone ids, NULs that C strings would cut at, and so on. */
#include "policy/host.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdio.h>
#include <string.h>

/* Raw input accepted before IDNA mapping; a mapped name is at most 253
 * bytes, and UTF-8 takes at most four bytes per code point. */
#define HOST_INPUT_MAX 1024
/* Bracketed IPv6 text including an embedded dotted quad. */
#define HOST_V6_TEXT_MAX 64

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Bytes that are never part of a host in any form we accept; checked first so
 * the message names the real problem rather than a later symptom. */
static const char *forbidden_byte(const char *in, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == 0)
            return "NUL byte in host";
        if (c < 0x20 || c == 0x7f)
            return "control character in host";
        if (c == ' ')
            return "space in host";
        if (c == '@')
            return "userinfo ('@') in host";
        if (c == '%')
            return "'%' in host (percent-encoding or IPv6 zone id)";
        if (c == '\\')
            return "backslash in host";
    }
    return NULL;
}

static int set_ipv6(const char *text, size_t len, struct host *out, const char **why)
{
    char buf[HOST_V6_TEXT_MAX];

    if (len == 0 || len >= sizeof buf) {
        *why = "invalid IPv6 address";
        return -1;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET6, buf, &out->addr.v6) != 1) {
        *why = "invalid IPv6 address";
        return -1;
    }
    if (!inet_ntop(AF_INET6, &out->addr.v6, out->text, sizeof out->text)) {
        *why = "invalid IPv6 address";
        return -1;
    }
    out->kind = HOST_KIND_IPV6;
    out->len = strlen(out->text);
    return 0;
}

static bool all_digits(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_digit((unsigned char)s[i]))
            return false;
    return true;
}

/* "0x", "0x7f": the hex parts inet_aton() and URL parsers accept. */
static bool hex_label(const char *s, size_t len)
{
    if (len < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
        return false;
    for (size_t i = 2; i < len; i++)
        if (!is_hex((unsigned char)s[i]))
            return false;
    return true;
}

/* A name whose last label is numeric is an IPv4 address to every resolver
 * library; only the strict dotted quad is accepted, everything else is a
 * shorthand that would be converted silently somewhere downstream. */
static int parse_numeric(const char *s, size_t len, struct host *out, const char **why)
{
    size_t nparts = 0, start = 0;
    bool hex = false, leading_zero = false, non_numeric = false, too_big = false;
    uint8_t quad[sizeof(struct in_addr)] = {0};

    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.')
            continue;
        const char *part = s + start;
        size_t plen = i - start;
        if (hex_label(part, plen)) {
            hex = true;
        } else if (!all_digits(part, plen)) {
            non_numeric = true;
        } else {
            if (plen > 1 && part[0] == '0')
                leading_zero = true;
            unsigned v = 0;
            for (size_t k = 0; k < plen && v <= 255; k++)
                v = v * 10 + (unsigned)(part[k] - '0');
            if (v > 255)
                too_big = true;
            else if (nparts < sizeof quad)
                quad[nparts] = (uint8_t)v;
        }
        nparts++;
        start = i + 1;
    }
    if (non_numeric) {
        *why = "numeric last label: neither a name nor a dotted-quad IPv4 address";
        return -1;
    }
    if (hex) {
        *why = "hexadecimal IPv4 form";
        return -1;
    }
    if (leading_zero) {
        *why = "leading zero in IPv4 address (octal form)";
        return -1;
    }
    if (nparts == 1) {
        *why = "integer IPv4 form";
        return -1;
    }
    if (nparts < 4) {
        *why = "short IPv4 form";
        return -1;
    }
    if (nparts > 4) {
        *why = "too many parts for an IPv4 address";
        return -1;
    }
    if (too_big) {
        *why = "IPv4 address part over 255";
        return -1;
    }
    memcpy(&out->addr.v4.s_addr, quad, sizeof quad);
    if (!inet_ntop(AF_INET, &out->addr.v4, out->text, sizeof out->text)) {
        *why = "invalid IPv4 address";
        return -1;
    }
    out->kind = HOST_KIND_IPV4;
    out->len = strlen(out->text);
    return 0;
}

static const char *ascii_char_problem(unsigned char c)
{
    if (c == '[' || c == ']')
        return "brackets around a name";
    if (c == ':')
        return "':' in host (IPv6 needs brackets; a port belongs to the authority)";
    if (c == '*')
        return "'*' in host";
    if (c == '/' || c == '?' || c == '#')
        return "URL delimiter in host";
    return "invalid character in host";
}

/* s is ASCII without trailing dot. Validates labels, lower-cases, and hands
 * numeric-looking names to the strict IPv4 parser. */
static int canonical_ascii(const char *s, size_t len, struct host *out, const char **why)
{
    if (len == 0) {
        *why = "empty host";
        return -1;
    }
    if (len > HOST_NAME_MAX_BYTES) {
        *why = "name longer than 253 bytes";
        return -1;
    }
    size_t label_start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (i == label_start) {
                *why = "empty label in host";
                return -1;
            }
            if (i - label_start > HOST_LABEL_MAX_BYTES) {
                *why = "label longer than 63 bytes";
                return -1;
            }
            label_start = i + 1;
            continue;
        }
        unsigned char c = lower((unsigned char)s[i]);
        if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_')) {
            *why = ascii_char_problem(c);
            return -1;
        }
    }
    size_t last = 0; /* start of the last label */
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == '.') {
            last = i;
            break;
        }
    }
    if (all_digits(s + last, len - last) || hex_label(s + last, len - last))
        return parse_numeric(s, len, out, why);

    for (size_t i = 0; i < len; i++)
        out->text[i] = (char)lower((unsigned char)s[i]);
    out->text[len] = '\0';
    out->len = len;
    out->kind = HOST_KIND_NAME;
    return 0;
}

static int canonical_idn(const char *s, size_t len, struct host *out, const char **why)
{
    char in[HOST_INPUT_MAX + 1];
    uint8_t *mapped = NULL;
    int rc = -1;

    memcpy(in, s, len);
    in[len] = '\0';
    if (idn2_lookup_u8((const uint8_t *)in, &mapped, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) !=
        IDN2_OK) {
        *why = "non-ASCII name that IDNA cannot map";
        goto out;
    }
    size_t mlen = strlen((const char *)mapped);
    for (size_t i = 0; i < mlen; i++) {
        if (mapped[i] >= 0x80) {
            *why = "non-ASCII name that IDNA cannot map";
            goto out;
        }
    }
    if (mlen > 0 && mapped[mlen - 1] == '.')
        mlen--;
    if (canonical_ascii((const char *)mapped, mlen, out, why) < 0)
        goto out;
    /* Full-width digits map to ASCII digits; an address spelt that way is a
     * disguise, not a name. */
    if (out->kind != HOST_KIND_NAME) {
        *why = "non-ASCII spelling of an IP address";
        goto out;
    }
    rc = 0;
out:
    idn2_free(mapped);
    return rc;
}

int host_canonicalise(const char *in, size_t len, struct host *out, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    memset(out, 0, sizeof *out);

    if (len == 0) {
        *why = "empty host";
        return -1;
    }
    if (len > HOST_INPUT_MAX) {
        *why = "host too long";
        return -1;
    }
    const char *bad = forbidden_byte(in, len);
    if (bad) {
        *why = bad;
        return -1;
    }
    if (in[0] == '[') {
        const char *close = memchr(in, ']', len);
        if (!close) {
            *why = "unterminated '[' in host";
            return -1;
        }
        if (close != in + len - 1) {
            *why = "junk after ']' in host";
            return -1;
        }
        if (set_ipv6(in + 1, len - 2, out, why) < 0) {
            *why = "brackets around something that is not an IPv6 address";
            return -1;
        }
        return 0;
    }
    if (memchr(in, ':', len)) {
        if (set_ipv6(in, len, out, why) == 0)
            return 0;
        *why = ascii_char_problem(':');
        return -1;
    }
    /* One trailing dot is the DNS root; two are an empty label. */
    if (in[len - 1] == '.')
        len--;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)in[i] >= 0x80)
            return canonical_idn(in, len, out, why);
    return canonical_ascii(in, len, out, why);
}

static int parse_port(const char *s, size_t len, uint16_t *port, const char **why)
{
    if (len == 0) {
        *why = "empty port";
        return -1;
    }
    if (len > 5 || !all_digits(s, len)) {
        *why = "port must be a decimal number 1..65535";
        return -1;
    }
    if (len > 1 && s[0] == '0') {
        *why = "port must be a decimal number 1..65535 without leading zeros";
        return -1;
    }
    unsigned v = 0;
    for (size_t i = 0; i < len; i++)
        v = v * 10 + (unsigned)(s[i] - '0');
    if (v == 0 || v > 65535) {
        *why = "port must be a decimal number 1..65535";
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

int host_parse_authority(const char *in, size_t len, uint16_t default_port, struct host *out,
                         uint16_t *port, const char **why)
{
    const char *dummy;
    size_t host_len;
    const char *port_text = NULL;
    size_t port_len = 0;

    if (!why)
        why = &dummy;
    memset(out, 0, sizeof *out);
    if (len == 0) {
        *why = "empty authority";
        return -1;
    }
    if (in[0] == '[') {
        const char *close = memchr(in, ']', len);
        if (!close) {
            *why = "unterminated '[' in authority";
            return -1;
        }
        host_len = (size_t)(close - in) + 1;
        if (host_len < len) {
            if (in[host_len] != ':') {
                *why = "junk after ']' in authority";
                return -1;
            }
            port_text = in + host_len + 1;
            port_len = len - host_len - 1;
        }
    } else {
        const char *colon = memchr(in, ':', len);
        host_len = colon ? (size_t)(colon - in) : len;
        if (colon) {
            if (memchr(colon + 1, ':', len - host_len - 1)) {
                *why = "IPv6 address must be in brackets in an authority";
                return -1;
            }
            port_text = colon + 1;
            port_len = len - host_len - 1;
        }
    }
    if (host_len == 0) {
        *why = "empty host in authority";
        return -1;
    }
    if (host_canonicalise(in, host_len, out, why) < 0)
        return -1;
    if (!port_text) {
        *port = default_port;
        return 0;
    }
    return parse_port(port_text, port_len, port, why);
}

int host_format_authority(const struct host *h, uint16_t port, char *buf, size_t size)
{
    int n;
    if (h->kind == HOST_KIND_IPV6)
        n = snprintf(buf, size, "[%s]:%u", h->text, (unsigned)port);
    else
        n = snprintf(buf, size, "%s:%u", h->text, (unsigned)port);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}
