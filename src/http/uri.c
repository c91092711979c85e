/* uri: the absolute-form request target of a forward-proxy request
 * (RFC 9112 §3.2.2), split into authority and origin-form path.
 *
 * Only the shape is checked here; the authority goes to the host
 * canonicaliser, which owns every rule about names and addresses. */
#include "http/head.h"

#include <string.h>
#include <strings.h>

static int uri_refuse(struct http_error *err, const char *reason)
{
    err->status = 400;
    err->reason = reason;
    return -1;
}

static bool is_scheme_char(unsigned char c, bool first)
{
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (first)
        return alpha;
    return alpha || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

/* Length of the scheme before ':', or 0 when the target has none. */
static size_t scheme_len(const char *t, size_t len)
{
    size_t i = 0;
    while (i < len && is_scheme_char((unsigned char)t[i], i == 0))
        i++;
    return (i > 0 && i < len && t[i] == ':') ? i : 0;
}

int http_parse_absolute_uri(const char *target, size_t len, struct http_uri *uri,
                            struct http_error *err)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c <= 0x20 || c >= 0x7f)
            return uri_refuse(err, "invalid character in request target");
        /* A fragment is never sent (RFC 9110 §4.2.5); one that is hides
         * part of the target from one parser but not another. */
        if (c == '#')
            return uri_refuse(err, "fragment in request target");
    }
    size_t s = scheme_len(target, len);
    if (s == 0)
        return uri_refuse(err, "request target is not an absolute http:// URI");
    if (s != 4 || strncasecmp(target, "http", 4) != 0)
        return uri_refuse(err, "only http:// URIs on the proxy port; use CONNECT for https");
    if (len < 7 || target[5] != '/' || target[6] != '/')
        return uri_refuse(err, "absolute URI without //authority");

    size_t a = 7, i = a;
    while (i < len && target[i] != '/' && target[i] != '?')
        i++;
    if (i == a)
        return uri_refuse(err, "empty authority in URI");
    if (memchr(target + a, '@', i - a) != NULL)
        return uri_refuse(err, "userinfo in URI");
    /* "http://host?q" would need a path made up in front of the query; no
     * client sends it, so refuse instead of rewriting the target. */
    if (i < len && target[i] == '?')
        return uri_refuse(err, "query without path in URI");
    uri->authority = target + a;
    uri->authority_len = i - a;

    if (i == len) {
        uri->path = "/";
        uri->path_len = 1;
        uri->path_only_len = 1;
        return 0;
    }
    uri->path = target + i;
    uri->path_len = len - i;
    const char *q = memchr(uri->path, '?', uri->path_len);
    uri->path_only_len = q ? (size_t)(q - uri->path) : uri->path_len;
    return 0;
}
