/* head: strict HTTP/1.1 request and response heads (RFC 9112).
 *
 * Every byte of the head is checked once, left to right, with no allocation.
 * Where RFC 9112 lets a recipient choose between refusing and repairing
 * (bare LF, obs-fold, duplicate Content-Length, CL with TE) we refuse: a
 * proxy that repairs what its upstream reads differently is how requests get
 * smuggled. docs/HTTP.md lists every refusal and its status. */
#include "http/head.h"

#include <string.h>

/* Empty lines tolerated before a request line (RFC 9112 §2.2 asks for at
 * least one); more is not a client, it is noise. */
#define HTTP_MAX_LEADING_CRLF 4
/* Content-Length above this is refused: no body is that large, and it keeps
 * every later sum far from overflow. */
#define HTTP_MAX_CONTENT_LENGTH (UINT64_C(1) << 62)

/* Which header fields the framing checks care about, found in one pass. */
struct head_fields {
    int content_length; /* index, -1 when absent */
    int transfer_encoding;
    int host;
    bool conn_close;
    bool conn_keep_alive;
    bool conn_upgrade;
    bool has_upgrade;
    bool expect_continue;
};

static bool set_err(struct http_error *err, int status, const char *reason)
{
    err->status = status;
    err->reason = reason;
    return false;
}

static ssize_t refuse(struct http_error *err, int status, const char *reason)
{
    set_err(err, status, reason);
    return -1;
}

/* tchar (RFC 9110 §5.6.2): the characters of methods, field names and
 * transfer codings. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    }
    return false;
}

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static bool equal_nocase(const char *a, size_t a_len, const char *b, size_t b_len)
{
    if (a_len != b_len)
        return false;
    for (size_t i = 0; i < a_len; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

/* Like equal_nocase, but '_' in a matches '-' in b: CGI-style backends fold
 * "Content_Length" into CONTENT_LENGTH, so such a name is framing too. */
static bool equal_folded(const char *a, size_t a_len, const char *b, size_t b_len)
{
    if (a_len != b_len)
        return false;
    for (size_t i = 0; i < a_len; i++) {
        unsigned char ca = lower((unsigned char)a[i]), cb = lower((unsigned char)b[i]);
        if (ca != cb && !(ca == '_' && cb == '-'))
            return false;
    }
    return true;
}

/* Comparisons with a string literal, its length known at compile time. */
#define EQUAL_NOCASE(a, a_len, lit) equal_nocase(a, a_len, lit, sizeof(lit) - 1)
#define EQUAL_FOLDED(a, a_len, lit) equal_folded(a, a_len, lit, sizeof(lit) - 1)

enum eol_result { EOL_FOUND, EOL_MORE, EOL_TOO_LONG, EOL_BAD };

static bool bytes_clean(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Whether p[0..n) holds no control character but HT, and no DEL. Every
 * head byte goes through here, so it looks at 8 bytes at a time and only
 * checks bytes one by one in words that may hold a control byte (HT, or
 * a real one). */
static bool span_is_clean(const char *p, size_t n)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = ones * 0x80;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w, del;
        memcpy(&w, p + i, 8);
        del = w ^ (ones * 0x7f);
        /* High bit set in a byte below 0x20, or equal to 0x7f (exact for
         * "any", which is all we ask). */
        if ((((w - ones * 0x20) & ~w) | ((del - ones) & ~del)) & highs)
            if (!bytes_clean(p + i, 8))
                return false;
    }
    return bytes_clean(p + i, n - i);
}

/* Names the first bad byte of a span span_is_clean refused. */
static enum eol_result bad_byte(const char *p, size_t n, struct http_error *err, int bad)
{
    size_t i = 0;
    while (i + 1 < n && bytes_clean(p + i, 1))
        i++;
    unsigned char c = (unsigned char)p[i];
    set_err(err, bad,
            c == '\n' ? "bare LF in head"
            : c == 0  ? "NUL in head"
                      : "control character in head");
    return EOL_BAD;
}

/* Finds the CRLF ending the line that starts at start, with at most max
 * bytes before it. Control characters other than HT, DEL, a CR without LF
 * and an LF without CR never appear in a head, so they are refused even
 * before the line is complete. */
static enum eol_result find_eol(const char *buf, size_t len, size_t start, size_t max, size_t *eol,
                                struct http_error *err, int bad)
{
    /* A CR may sit right after the max-th byte of the line, nothing else. */
    size_t scan_end = len - start > max ? start + max + 1 : len;
    const char *cr = memchr(buf + start, '\r', scan_end - start);
    size_t end = cr ? (size_t)(cr - buf) : scan_end;
    if (!span_is_clean(buf + start, end - start))
        return bad_byte(buf + start, end - start, err, bad);
    if (cr == NULL)
        return len - start > max ? EOL_TOO_LONG : EOL_MORE;
    if (end + 1 == len)
        return EOL_MORE;
    if (buf[end + 1] != '\n') {
        set_err(err, bad, "bare CR in head");
        return EOL_BAD;
    }
    *eol = end;
    return EOL_FOUND;
}

/* "HTTP/1.0" or "HTTP/1.1": sets *minor. Another well-formed HTTP/x.y sets
 * *other so the caller can answer 505 rather than 400. */
static bool parse_version(const char *p, size_t len, int *minor, bool *other)
{
    *other = false;
    if (len != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.')
        return false;
    if (p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9')
        return false;
    if (p[5] == '1' && (p[7] == '0' || p[7] == '1')) {
        *minor = p[7] - '0';
        return true;
    }
    *other = true;
    return false;
}

/* request-line = method SP request-target SP HTTP-version, single spaces. */
static bool parse_request_line(const char *p, size_t len, struct http_request *req,
                               struct http_error *err)
{
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i == len || p[i] != ' ')
        return set_err(err, 400, "malformed method in request line");
    req->method = p;
    req->method_len = i;

    size_t t = ++i;
    while (i < len && p[i] != ' ') {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f)
            return set_err(err, 400, "invalid character in request target");
        i++;
    }
    if (i == t)
        return set_err(err, 400, "empty request target");
    if (i == len)
        return set_err(err, 400, "missing HTTP version in request line");
    req->target = p + t;
    req->target_len = i - t;

    bool other;
    if (!parse_version(p + i + 1, len - i - 1, &req->version_minor, &other))
        return other ? set_err(err, 505, "HTTP version not supported")
                     : set_err(err, 400, "malformed HTTP version in request line");
    return true;
}

/* status-line = HTTP-version SP 3DIGIT SP [reason]; "HTTP/1.1 200" without
 * the second space is accepted, it is harmless. */
static bool parse_status_line(const char *p, size_t len, struct http_response *resp,
                              struct http_error *err)
{
    bool other;
    if (len < 12 || !parse_version(p, 8, &resp->version_minor, &other) || p[8] != ' ')
        return set_err(err, 502, "malformed status line from upstream");
    int status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return set_err(err, 502, "malformed status code from upstream");
        status = status * 10 + (p[i] - '0');
    }
    if (status < 100 || status > 599)
        return set_err(err, 502, "status code out of range from upstream");
    if (len > 12 && p[12] != ' ')
        return set_err(err, 502, "malformed status line from upstream");
    resp->status = status;
    resp->reason = len > 12 ? p + 13 : p + 12;
    resp->reason_len = len > 12 ? len - 13 : 0;
    return true;
}

/* field-line = field-name ":" OWS field-value OWS. The line holds no CTL
 * but HT (find_eol saw to that); obs-text is allowed in values only. */
static bool parse_field_line(const char *p, size_t len, struct http_header *h, int bad,
                             struct http_error *err)
{
    if (is_ows((unsigned char)p[0]))
        return set_err(err, bad, "obs-fold or whitespace at start of header line");
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)p[i]))
        i++;
    if (i == len)
        return set_err(err, bad, "header line without colon");
    if (p[i] == ':' && i == 0)
        return set_err(err, bad, "empty header name");
    if (p[i] != ':')
        return set_err(err, bad,
                       i > 0 && is_ows((unsigned char)p[i]) ? "whitespace before colon in header"
                                                            : "invalid character in header name");
    h->name = p;
    h->name_len = i;

    size_t v = i + 1, end = len;
    while (v < end && is_ows((unsigned char)p[v]))
        v++;
    while (end > v && is_ows((unsigned char)p[end - 1]))
        end--;
    h->value = p + v;
    h->value_len = end - v;
    return true;
}

/* Reads field lines from pos to the empty line. Returns the head length,
 * 0 for more bytes, -1 on a refusal. too_big is 431 for requests, 502 for
 * responses. */
static ssize_t parse_fields(const char *buf, size_t len, size_t pos, struct http_header *headers,
                            size_t *n_headers, int bad, int too_big, struct http_error *err)
{
    *n_headers = 0;
    for (;;) {
        /* Every line, and the empty line after it, must fit the head limit. */
        if (pos + 2 > HTTP_MAX_HEAD_BYTES)
            return refuse(err, too_big, "head too large");
        size_t max = HTTP_MAX_HEAD_BYTES - pos - 2, eol = 0;
        switch (find_eol(buf, len, pos, max, &eol, err, bad)) {
        case EOL_MORE:
            return 0;
        case EOL_TOO_LONG:
            return refuse(err, too_big, "head too large");
        case EOL_BAD:
            return -1;
        case EOL_FOUND:
            break;
        }
        if (eol == pos)
            return (ssize_t)(pos + 2);
        if (eol + 4 > HTTP_MAX_HEAD_BYTES)
            return refuse(err, too_big, "head too large");
        if (*n_headers == HTTP_MAX_HEADERS)
            return refuse(err, too_big, "too many header fields");
        if (!parse_field_line(buf + pos, eol - pos, &headers[*n_headers], bad, err))
            return -1;
        (*n_headers)++;
        pos = eol + 2;
    }
}

/* Content-Length = 1*DIGIT, one value, no leading zeros: "010" is 8 to a
 * backend that reads octal, and a list "5, 5" is refused even when equal. */
static bool parse_content_length(const char *v, size_t len, uint64_t *out, int bad,
                                 struct http_error *err)
{
    if (len == 0)
        return set_err(err, bad, "empty Content-Length");
    if (len > 1 && v[0] == '0')
        return set_err(err, bad, "Content-Length with leading zero");
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return set_err(err, bad, "malformed Content-Length");
        uint64_t d = (uint64_t)(v[i] - '0');
        if (n > (HTTP_MAX_CONTENT_LENGTH - d) / 10)
            return set_err(err, bad, "Content-Length too large");
        n = n * 10 + d;
    }
    *out = n;
    return true;
}

enum te_kind { TE_CHUNKED, TE_CHUNKED_LAST, TE_OTHER, TE_BAD };

/* Classifies a Transfer-Encoding value: exactly "chunked"; a well-formed
 * list ending in a single chunked (acceptable in a response); a well-formed
 * list without a usable chunked (501); anything malformed, with parameters,
 * quotes or chunked twice (400). */
static enum te_kind classify_te(const char *v, size_t len)
{
    if (EQUAL_NOCASE(v, len, "chunked"))
        return TE_CHUNKED;
    size_t i = 0, n_chunked = 0;
    bool last_chunked = false;
    for (;;) {
        size_t s = i;
        while (i < len && is_tchar((unsigned char)v[i]))
            i++;
        if (i == s)
            return TE_BAD;
        last_chunked = EQUAL_NOCASE(v + s, i - s, "chunked");
        n_chunked += last_chunked;
        while (i < len && is_ows((unsigned char)v[i]))
            i++;
        if (i == len)
            break;
        if (v[i] != ',')
            return TE_BAD;
        i++;
        while (i < len && is_ows((unsigned char)v[i]))
            i++;
    }
    if (n_chunked > 1)
        return TE_BAD;
    return last_chunked ? TE_CHUNKED_LAST : TE_OTHER;
}

/* One pass over the fields: notes framing, connection and host fields and
 * refuses duplicates of those that must be single. */
static bool scan_fields(const struct http_header *h, size_t n, bool is_request,
                        struct head_fields *f, int bad, struct http_error *err)
{
    memset(f, 0, sizeof(*f));
    f->content_length = f->transfer_encoding = f->host = -1;
    for (size_t i = 0; i < n; i++) {
        const char *name = h[i].name, *v = h[i].value;
        size_t nl = h[i].name_len, vl = h[i].value_len;
        if (EQUAL_FOLDED(name, nl, "content-length")) {
            if (!EQUAL_NOCASE(name, nl, "content-length"))
                return set_err(err, bad, "underscore in Content-Length name");
            if (f->content_length >= 0)
                return set_err(err, bad, "multiple Content-Length headers");
            f->content_length = (int)i;
        } else if (EQUAL_FOLDED(name, nl, "transfer-encoding")) {
            if (!EQUAL_NOCASE(name, nl, "transfer-encoding"))
                return set_err(err, bad, "underscore in Transfer-Encoding name");
            if (f->transfer_encoding >= 0)
                return set_err(err, bad, "multiple Transfer-Encoding headers");
            f->transfer_encoding = (int)i;
        } else if (EQUAL_NOCASE(name, nl, "host")) {
            if (is_request && f->host >= 0)
                return set_err(err, bad, "multiple Host headers");
            f->host = (int)i;
        } else if (EQUAL_NOCASE(name, nl, "connection")) {
            f->conn_close |= http_value_has_token(v, vl, "close");
            f->conn_keep_alive |= http_value_has_token(v, vl, "keep-alive");
            f->conn_upgrade |= http_value_has_token(v, vl, "upgrade");
        } else if (EQUAL_NOCASE(name, nl, "upgrade")) {
            f->has_upgrade = true;
        } else if (EQUAL_NOCASE(name, nl, "expect")) {
            f->expect_continue |= EQUAL_NOCASE(v, vl, "100-continue");
        }
    }
    return true;
}

static bool keep_alive(int minor, const struct head_fields *f)
{
    if (f->conn_close)
        return false;
    return minor == 1 || f->conn_keep_alive;
}

/* Request framing, RFC 9112 §6.1-6.3, strictest reading. */
static bool request_framing(struct http_request *req, const struct head_fields *f,
                            struct http_error *err)
{
    req->framing = HTTP_BODY_NONE;
    req->content_length = 0;
    if (f->transfer_encoding >= 0) {
        const struct http_header *te = &req->headers[f->transfer_encoding];
        if (f->content_length >= 0)
            return set_err(err, 400, "both Content-Length and Transfer-Encoding");
        if (req->version_minor == 0)
            return set_err(err, 400, "Transfer-Encoding in an HTTP/1.0 request");
        switch (classify_te(te->value, te->value_len)) {
        case TE_CHUNKED:
            req->framing = HTTP_BODY_CHUNKED;
            return true;
        case TE_CHUNKED_LAST:
        case TE_OTHER:
            return set_err(err, 501, "unsupported Transfer-Encoding");
        case TE_BAD:
            return set_err(err, 400, "malformed Transfer-Encoding");
        }
    }
    if (f->content_length >= 0) {
        const struct http_header *cl = &req->headers[f->content_length];
        if (!parse_content_length(cl->value, cl->value_len, &req->content_length, 400, err))
            return false;
        req->framing = HTTP_BODY_LENGTH;
    }
    return true;
}

ssize_t http_parse_request(const char *buf, size_t len, struct http_request *req,
                           struct http_error *err)
{
    size_t pos = 0, eol = 0;
    for (int empty = 0;; empty++) {
        switch (find_eol(buf, len, pos, HTTP_MAX_REQUEST_LINE, &eol, err, 400)) {
        case EOL_MORE:
            return 0;
        case EOL_TOO_LONG:
            return refuse(err, 414, "request line too long");
        case EOL_BAD:
            return -1;
        case EOL_FOUND:
            break;
        }
        if (eol != pos)
            break;
        if (empty == HTTP_MAX_LEADING_CRLF)
            return refuse(err, 400, "too many empty lines before request line");
        pos = eol + 2;
    }
    if (!parse_request_line(buf + pos, eol - pos, req, err))
        return -1;

    ssize_t head = parse_fields(buf, len, eol + 2, req->headers, &req->n_headers, 400, 431, err);
    if (head <= 0)
        return head;

    struct head_fields f;
    if (!scan_fields(req->headers, req->n_headers, true, &f, 400, err))
        return -1;
    if (req->version_minor == 1 && f.host < 0)
        return refuse(err, 400, "HTTP/1.1 request without Host");
    if (!request_framing(req, &f, err))
        return -1;
    req->host_header = f.host;
    req->keep_alive = keep_alive(req->version_minor, &f);
    req->expect_continue = f.expect_continue;
    req->upgrade = f.conn_upgrade && f.has_upgrade;
    return head;
}

/* Response framing, RFC 9112 §6.3. A response carrying both framings is
 * refused rather than read as chunked: the client may read it the other way. */
static bool response_framing(struct http_response *resp, bool request_was_head,
                             const struct head_fields *f, struct http_error *err)
{
    uint64_t length = 0;
    enum http_framing framing = HTTP_BODY_CLOSE;
    if (f->transfer_encoding >= 0 && f->content_length >= 0)
        return set_err(err, 502, "both Content-Length and Transfer-Encoding from upstream");
    if (f->transfer_encoding >= 0) {
        const struct http_header *te = &resp->headers[f->transfer_encoding];
        enum te_kind kind = classify_te(te->value, te->value_len);
        if (kind == TE_BAD)
            return set_err(err, 502, "malformed Transfer-Encoding from upstream");
        if (kind == TE_OTHER)
            return set_err(err, 502, "Transfer-Encoding without final chunked from upstream");
        framing = HTTP_BODY_CHUNKED;
    } else if (f->content_length >= 0) {
        const struct http_header *cl = &resp->headers[f->content_length];
        if (!parse_content_length(cl->value, cl->value_len, &length, 502, err))
            return false;
        framing = HTTP_BODY_LENGTH;
    }
    int s = resp->status;
    if (request_was_head || (s >= 100 && s < 200) || s == 204 || s == 304) {
        framing = HTTP_BODY_NONE;
        length = 0;
    }
    resp->framing = framing;
    resp->content_length = length;
    return true;
}

ssize_t http_parse_response(const char *buf, size_t len, bool request_was_head,
                            struct http_response *resp, struct http_error *err)
{
    size_t eol = 0;
    switch (find_eol(buf, len, 0, HTTP_MAX_REQUEST_LINE, &eol, err, 502)) {
    case EOL_MORE:
        return 0;
    case EOL_TOO_LONG:
        return refuse(err, 502, "status line too long from upstream");
    case EOL_BAD:
        return -1;
    case EOL_FOUND:
        break;
    }
    if (!parse_status_line(buf, eol, resp, err))
        return -1;

    ssize_t head = parse_fields(buf, len, eol + 2, resp->headers, &resp->n_headers, 502, 502, err);
    if (head <= 0)
        return head;

    struct head_fields f;
    if (!scan_fields(resp->headers, resp->n_headers, false, &f, 502, err))
        return -1;
    if (!response_framing(resp, request_was_head, &f, err))
        return -1;
    resp->keep_alive = resp->framing != HTTP_BODY_CLOSE && keep_alive(resp->version_minor, &f);
    return head;
}

int http_find_header(const struct http_header *headers, size_t n, const char *name)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (equal_nocase(headers[i].name, headers[i].name_len, name, name_len))
            return (int)i;
    return -1;
}

bool http_value_has_token(const char *value, size_t len, const char *token)
{
    size_t i = 0, token_len = strlen(token);
    while (i < len) {
        while (i < len && (is_ows((unsigned char)value[i]) || value[i] == ','))
            i++;
        size_t s = i;
        while (i < len && value[i] != ',')
            i++;
        size_t e = i;
        while (e > s && is_ows((unsigned char)value[e - 1]))
            e--;
        if (e > s && equal_nocase(value + s, e - s, token, token_len))
            return true;
    }
    return false;
}

/* Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET. */
bool http_method_is(const char *method, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(method, name, len) == 0;
}
