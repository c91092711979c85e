/* clienthello: the server name of a TLS ClientHello, for connections the
 * kernel redirected to the proxy. Bytes in, a name out; nothing is trusted:
 * every length is checked against what encloses it. */
#include "tls/clienthello.h"

#include <string.h>

#define TLS_RECORD_HANDSHAKE 22
#define TLS_HANDSHAKE_CLIENT_HELLO 1
#define TLS_EXT_SERVER_NAME 0
#define TLS_SNI_HOST_NAME 0

/* A bounded reader over the bytes of one structure. */
struct reader {
    const uint8_t *p;
    size_t left;
};

static int take(struct reader *r, size_t n, struct reader *sub)
{
    if (r->left < n)
        return -1;
    if (sub) {
        sub->p = r->p;
        sub->left = n;
    }
    r->p += n;
    r->left -= n;
    return 0;
}

static int u8(struct reader *r, size_t *v)
{
    if (r->left < 1)
        return -1;
    *v = r->p[0];
    return take(r, 1, NULL);
}

static int u16(struct reader *r, size_t *v)
{
    if (r->left < 2)
        return -1;
    *v = (size_t)r->p[0] << 8 | r->p[1];
    return take(r, 2, NULL);
}

static int u24(struct reader *r, size_t *v)
{
    if (r->left < 3)
        return -1;
    *v = (size_t)r->p[0] << 16 | (size_t)r->p[1] << 8 | r->p[2];
    return take(r, 3, NULL);
}

/* Skips a vector whose length prefix has width bytes. */
static int skip_vector(struct reader *r, int width)
{
    size_t n;
    if ((width == 1 ? u8(r, &n) : u16(r, &n)) < 0)
        return -1;
    return take(r, n, NULL);
}

static int find_sni(struct reader *ext, char *out, size_t out_size)
{
    while (ext->left > 0) {
        size_t type, len;
        struct reader body;
        if (u16(ext, &type) < 0 || u16(ext, &len) < 0 || take(ext, len, &body) < 0)
            return TLS_HELLO_MALFORMED;
        if (type != TLS_EXT_SERVER_NAME)
            continue;
        size_t list_len;
        struct reader list;
        if (u16(&body, &list_len) < 0 || take(&body, list_len, &list) < 0)
            return TLS_HELLO_MALFORMED;
        while (list.left > 0) {
            size_t name_type, name_len;
            struct reader name;
            if (u8(&list, &name_type) < 0 || u16(&list, &name_len) < 0 ||
                take(&list, name_len, &name) < 0)
                return TLS_HELLO_MALFORMED;
            if (name_type != TLS_SNI_HOST_NAME)
                continue;
            if (name_len == 0 || name_len >= out_size)
                return TLS_HELLO_MALFORMED;
            /* The canonicaliser judges the name itself; only NUL would cut
             * it short here, so refuse that. */
            if (memchr(name.p, '\0', name_len) != NULL)
                return TLS_HELLO_MALFORMED;
            memcpy(out, name.p, name_len);
            out[name_len] = '\0';
            return TLS_HELLO_SNI;
        }
        return TLS_HELLO_MALFORMED;
    }
    return TLS_HELLO_NO_SNI;
}

int tls_clienthello_sni(const uint8_t *buf, size_t len, char *out, size_t out_size)
{
    struct reader r = {buf, len};
    size_t type, version, record_len;
    if (len < 5)
        return len > 0 && buf[0] != TLS_RECORD_HANDSHAKE ? TLS_HELLO_MALFORMED
                                                        : TLS_HELLO_NEED_MORE;
    if (u8(&r, &type) < 0 || type != TLS_RECORD_HANDSHAKE || u16(&r, &version) < 0 ||
        (version >> 8) != 3 || u16(&r, &record_len) < 0)
        return TLS_HELLO_MALFORMED;
    /* A ClientHello split over several records is legal but rare; sluice
     * reads only the first record, which must hold the whole hello. */
    if (record_len == 0 || record_len > TLS_HELLO_MAX_RECORD)
        return TLS_HELLO_MALFORMED;
    struct reader rec;
    if (take(&r, record_len, &rec) < 0)
        return TLS_HELLO_NEED_MORE;
    size_t hs_type, hs_len;
    struct reader hello;
    if (u8(&rec, &hs_type) < 0 || hs_type != TLS_HANDSHAKE_CLIENT_HELLO ||
        u24(&rec, &hs_len) < 0 || take(&rec, hs_len, &hello) < 0)
        return TLS_HELLO_MALFORMED;
    size_t ext_len;
    struct reader ext;
    if (take(&hello, 2 + 32, NULL) < 0 || /* legacy_version, random */
        skip_vector(&hello, 1) < 0 ||     /* session id */
        skip_vector(&hello, 2) < 0 ||     /* cipher suites */
        skip_vector(&hello, 1) < 0)       /* compression methods */
        return TLS_HELLO_MALFORMED;
    if (hello.left == 0)
        return TLS_HELLO_NO_SNI; /* no extensions at all */
    if (u16(&hello, &ext_len) < 0 || take(&hello, ext_len, &ext) < 0)
        return TLS_HELLO_MALFORMED;
    return find_sni(&ext, out, out_size);
}
