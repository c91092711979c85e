/* ca: make, show and load the internal CA.
 *
 * init never overwrites a key (O_EXCL), because replacing a CA silently
 * breaks every client that trusts the old one. Loading refuses what would
 * make interception unsafe or fail obscurely later: a key others can read, a
 * key of another CA, a certificate that cannot sign certificates, one that
 * has expired. Certificates are built from structures, not config strings,
 * so no name ever passes through a parser. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "policy/host.h"
#include "tls/ca.h"

#define CA_MAX_FILE_BYTES (64 * 1024)
#define CA_SERIAL_BYTES 16
#define CA_DAY_S 86400L
#define CA_TIME_TEXT_SIZE 48
#define CA_LINE_SIZE 1024
#define CA_CERT_MODE 0644
#define CA_KEY_MODE 0600
#define CA_DIR_MODE 0755
#define CA_IP_TEXT_SIZE 64

/* ---- shared helpers ------------------------------------------------------ */

int tls_error(char *err, size_t err_size, const char *fmt, ...)
{
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int tls_error_ssl(char *err, size_t err_size, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    char code[CA_LINE_SIZE];

    if (e && !reason) {
        ERR_error_string_n(e, code, sizeof code);
        reason = code;
    }
    ERR_clear_error();
    return tls_error(err, err_size, "%s: %s", what, reason ? reason : "unknown OpenSSL error");
}

int tls_set_random_serial(X509 *x)
{
    unsigned char bytes[CA_SERIAL_BYTES];
    int rc = -1;

    if (RAND_bytes(bytes, sizeof bytes) != 1)
        return -1;
    bytes[0] |= 0x80; /* exactly 128 bits; BN_bin2bn reads it as positive */
    BIGNUM *bn = BN_bin2bn(bytes, sizeof bytes, NULL);
    if (bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        rc = 0;
    BN_free(bn);
    return rc;
}

ASN1_OCTET_STRING *tls_key_id(const X509 *x)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (X509_pubkey_digest(x, EVP_sha1(), md, &n) != 1)
        return NULL;
    ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
    if (id && ASN1_OCTET_STRING_set(id, md, (int)n) != 1) {
        ASN1_OCTET_STRING_free(id);
        return NULL;
    }
    return id;
}

int tls_not_after(const X509 *x, time_t *out)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
        return -1;
    *out = timegm(&tm);
    return 0;
}

/* ---- files ---------------------------------------------------------------- */

static int ca_path(char *buf, size_t size, const char *dir, const char *file, char *err,
                   size_t err_size)
{
    int n = snprintf(buf, size, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= size)
        return tls_error(err, err_size, "%s: path too long", dir);
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads all of fd into buf (at most cap bytes). */
static int read_all(int fd, unsigned char *buf, size_t cap, size_t *len)
{
    size_t have = 0;
    for (;;) {
        if (have == cap)
            return -1; /* larger than any certificate or key we accept */
        ssize_t n = read(fd, buf + have, cap - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        have += (size_t)n;
    }
    *len = have;
    return 0;
}

/* DIR/ca.pem parsed, without judging it (show needs to see expired CAs). */
static X509 *read_cert(const char *dir, char *err, size_t err_size)
{
    char path[TLS_CA_PATH_SIZE];
    X509 *cert = NULL;

    if (ca_path(path, sizeof path, dir, TLS_CA_CERT_FILE, err, err_size) < 0)
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            tls_error(err, err_size, "%s: no CA here (make one with `sluice ca init --dir %s`)",
                      path, dir);
        else
            tls_error(err, err_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = malloc(CA_MAX_FILE_BYTES);
    size_t len = 0;
    if (!buf) {
        tls_error(err, err_size, "%s: out of memory", path);
    } else if (read_all(fd, buf, CA_MAX_FILE_BYTES, &len) < 0) {
        tls_error(err, err_size, "%s: unreadable or larger than %d bytes", path, CA_MAX_FILE_BYTES);
    } else {
        BIO *bio = BIO_new_mem_buf(buf, (int)len);
        cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (!cert)
            tls_error_ssl(err, err_size, path);
    }
    free(buf);
    close(fd);
    return cert;
}

static int format_time(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0) {
        snprintf(buf, size, "(unreadable time)");
        return -1;
    }
    return 0;
}

int tls_ca_load_cert(const char *dir, X509 **out, char *err, size_t err_size)
{
    char when[CA_TIME_TEXT_SIZE];
    X509 *cert = read_cert(dir, err, err_size);
    if (!cert)
        return -1;

    uint32_t flags = X509_get_extension_flags(cert);
    const char *why = NULL;
    if (!(flags & EXFLAG_CA))
        why = "is not a CA certificate (basicConstraints CA:TRUE missing)";
    else if (!(flags & EXFLAG_KUSAGE) || !(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN))
        why = "may not sign certificates (keyUsage keyCertSign missing)";
    if (why) {
        X509_free(cert);
        return tls_error(err, err_size, "%s/%s %s", dir, TLS_CA_CERT_FILE, why);
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
        format_time(X509_get0_notAfter(cert), when, sizeof when);
        X509_free(cert);
        return tls_error(err, err_size,
                         "%s/%s expired on %s; make a new CA (sluice ca init) and trust it", dir,
                         TLS_CA_CERT_FILE, when);
    }
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
        format_time(X509_get0_notBefore(cert), when, sizeof when);
        X509_free(cert);
        return tls_error(err, err_size, "%s/%s is not valid before %s (check the clock)", dir,
                         TLS_CA_CERT_FILE, when);
    }
    *out = cert;
    return 0;
}

/* An encrypted key would make OpenSSL prompt on the terminal; refuse instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

static EVP_PKEY *parse_key(const unsigned char *buf, size_t len)
{
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    return key;
}

int tls_ca_load_key(const char *dir, const X509 *cert, EVP_PKEY **out, char *err, size_t err_size)
{
    char path[TLS_CA_PATH_SIZE];
    struct stat st;
    EVP_PKEY *key = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = -1;

    if (ca_path(path, sizeof path, dir, TLS_CA_KEY_FILE, err, err_size) < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return tls_error(err, err_size, "%s: %s", path,
                         errno == ELOOP ? "is a symbolic link; refusing it" : strerror(errno));
    if (fstat(fd, &st) < 0) {
        tls_error(err, err_size, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        tls_error(err, err_size, "%s: not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        tls_error(err, err_size,
                  "%s: mode %04o lets group or others at the CA key; "
                  "refusing it (chmod 600 %s)",
                  path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    buf = malloc(CA_MAX_FILE_BYTES);
    if (!buf) {
        tls_error(err, err_size, "%s: out of memory", path);
        goto out;
    }
    if (read_all(fd, buf, CA_MAX_FILE_BYTES, &len) < 0) {
        tls_error(err, err_size, "%s: unreadable or larger than %d bytes", path, CA_MAX_FILE_BYTES);
        goto out;
    }
    key = parse_key(buf, len);
    if (!key) {
        ERR_clear_error();
        tls_error(err, err_size, "%s: not an unencrypted PEM private key", path);
        goto out;
    }
    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        tls_error(err, err_size, "%s does not belong to %s/%s (another CA's key?)", path, dir,
                  TLS_CA_CERT_FILE);
        goto out;
    }
    *out = key;
    key = NULL;
    rc = 0;
out:
    if (buf) {
        OPENSSL_cleanse(buf, CA_MAX_FILE_BYTES);
        free(buf);
    }
    EVP_PKEY_free(key);
    close(fd);
    return rc;
}

/* ---- making a CA ---------------------------------------------------------- */

/* mkdir -p: the CA may live in a directory nobody made yet. */
static int make_dirs(const char *dir, char *err, size_t err_size)
{
    char buf[TLS_CA_PATH_SIZE];
    size_t len = strlen(dir);
    struct stat st;

    if (len == 0 || len >= sizeof buf)
        return tls_error(err, err_size, "CA directory: empty or too long");
    memcpy(buf, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, CA_DIR_MODE) < 0 && errno != EEXIST)
            return tls_error(err, err_size, "%s: %s", buf, strerror(errno));
        buf[i] = saved;
    }
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return tls_error(err, err_size, "%s: not a directory", dir);
    return 0;
}

static int add_ext(X509 *x, int nid, void *value, int critical)
{
    return X509_add1_ext_i2d(x, nid, value, critical, X509V3_ADD_REPLACE) == 1 ? 0 : -1;
}

GENERAL_NAME *tls_general_name(int type, const unsigned char *data, size_t len)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_STRING *s = ASN1_STRING_type_new(type == GEN_DNS ? V_ASN1_IA5STRING : V_ASN1_OCTET_STRING);
    if (!gn || !s || ASN1_STRING_set(s, data, (int)len) != 1) {
        GENERAL_NAME_free(gn);
        ASN1_STRING_free(s);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, type, s);
    return gn;
}

static int push_subtree(STACK_OF(GENERAL_SUBTREE) * sk, GENERAL_NAME *gn)
{
    GENERAL_SUBTREE *st = gn ? GENERAL_SUBTREE_new() : NULL;
    if (!st) {
        GENERAL_NAME_free(gn);
        return -1;
    }
    GENERAL_NAME_free(st->base);
    st->base = gn;
    if (!sk_GENERAL_SUBTREE_push(sk, st)) {
        GENERAL_SUBTREE_free(st);
        return -1;
    }
    return 0;
}

/* Permitted dNSName subtrees for the names; every IPv4 and IPv6 address
 * excluded, because a dNSName-only constraint leaves addresses unconstrained
 * (RFC 5280 §4.2.1.10) and the policy had no address rules to permit. */
static NAME_CONSTRAINTS *make_name_constraints(const struct tls_ca_options *o, char *err,
                                               size_t err_size)
{
    static const unsigned char any_v4[8], any_v6[32]; /* address and mask, all zero */
    NAME_CONSTRAINTS *nc = NAME_CONSTRAINTS_new();

    if (!nc || !(nc->permittedSubtrees = sk_GENERAL_SUBTREE_new_null()) ||
        !(nc->excludedSubtrees = sk_GENERAL_SUBTREE_new_null()))
        goto oom;
    for (size_t i = 0; i < o->n_permitted; i++) {
        struct host h;
        const char *why = NULL;
        const char *name = o->permitted_names[i];
        if (!name || host_canonicalise(name, strlen(name), &h, &why) < 0 ||
            h.kind != HOST_KIND_NAME) {
            NAME_CONSTRAINTS_free(nc);
            tls_error(err, err_size, "name constraint '%s': %s", name ? name : "(null)",
                      why ? why : "not a DNS name");
            return NULL;
        }
        if (push_subtree(nc->permittedSubtrees,
                         tls_general_name(GEN_DNS, (const unsigned char *)h.text, h.len)) < 0)
            goto oom;
    }
    GENERAL_NAME *v4 = tls_general_name(GEN_IPADD, any_v4, sizeof any_v4);
    GENERAL_NAME *v6 = tls_general_name(GEN_IPADD, any_v6, sizeof any_v6);
    if (push_subtree(nc->excludedSubtrees, v4) < 0) {
        GENERAL_NAME_free(v6);
        goto oom;
    }
    if (push_subtree(nc->excludedSubtrees, v6) < 0)
        goto oom;
    return nc;
oom:
    NAME_CONSTRAINTS_free(nc);
    tls_error(err, err_size, "name constraints: out of memory");
    return NULL;
}

static int ca_extensions(X509 *x, const struct tls_ca_options *o, char *err, size_t err_size)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    ASN1_OCTET_STRING *ski = tls_key_id(x);
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    NAME_CONSTRAINTS *nc = NULL;
    int rc = -1;

    if (!bc || !ku || !ski || !aki || !(bc->pathlen = ASN1_INTEGER_new()))
        goto out;
    bc->ca = 0xFF;
    /* pathlen 0: the CA signs leaves only, never another CA. */
    if (ASN1_INTEGER_set(bc->pathlen, 0) != 1)
        goto out;
    if (ASN1_BIT_STRING_set_bit(ku, 5, 1) != 1 || ASN1_BIT_STRING_set_bit(ku, 6, 1) != 1)
        goto out; /* keyCertSign, cRLSign */
    aki->keyid = ASN1_OCTET_STRING_dup(ski);
    if (!aki->keyid)
        goto out;
    if (add_ext(x, NID_basic_constraints, bc, 1) < 0 || add_ext(x, NID_key_usage, ku, 1) < 0 ||
        add_ext(x, NID_subject_key_identifier, ski, 0) < 0 ||
        add_ext(x, NID_authority_key_identifier, aki, 0) < 0)
        goto out;
    if (o->permitted_names) {
        nc = make_name_constraints(o, err, err_size);
        if (!nc)
            goto fail;
        if (add_ext(x, NID_name_constraints, nc, 1) < 0)
            goto out;
    }
    rc = 0;
    goto done;
out:
    tls_error_ssl(err, err_size, "CA certificate extensions");
fail:
    rc = -1;
done:
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(ku);
    ASN1_OCTET_STRING_free(ski);
    AUTHORITY_KEYID_free(aki);
    NAME_CONSTRAINTS_free(nc);
    return rc;
}

static X509 *make_ca_cert(EVP_PKEY *key, const struct tls_ca_options *o, char *err, size_t err_size)
{
    const char *cn = o->common_name ? o->common_name : TLS_CA_DEFAULT_NAME;
    int days = o->days ? o->days : TLS_CA_DEFAULT_DAYS;
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();

    if (!x || !name || X509_set_version(x, X509_VERSION_3) != 1 || tls_set_random_serial(x) < 0 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -TLS_BACKDATE_S) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) || X509_set_pubkey(x, key) != 1) {
        tls_error_ssl(err, err_size, "CA certificate");
        goto fail;
    }
    if (ca_extensions(x, o, err, err_size) < 0)
        goto fail;
    if (X509_sign(x, key, EVP_sha256()) <= 0) {
        tls_error_ssl(err, err_size, "signing the CA certificate");
        goto fail;
    }
    X509_NAME_free(name);
    return x;
fail:
    X509_NAME_free(name);
    X509_free(x);
    return NULL;
}

/* Writes the key through a secure-memory BIO, so the PEM text is wiped when
 * the BIO is freed. O_EXCL: an existing key is never replaced. */
static int write_key(const char *path, EVP_PKEY *key, char *err, size_t err_size)
{
    BUF_MEM *bm = NULL;
    BIO *mem = BIO_new(BIO_s_secmem());
    int rc = -1;

    if (!mem || PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        BIO_get_mem_ptr(mem, &bm) != 1) {
        BIO_free(mem);
        return tls_error_ssl(err, err_size, "encoding the CA key");
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, CA_KEY_MODE);
    if (fd < 0) {
        if (errno == EEXIST)
            tls_error(err, err_size, "%s exists; refusing to replace a CA key", path);
        else
            tls_error(err, err_size, "%s: %s", path, strerror(errno));
        BIO_free(mem);
        return -1;
    }
    /* The umask may only take bits away; set exactly 0600 whatever it is. */
    if (fchmod(fd, CA_KEY_MODE) < 0 || write_all(fd, bm->data, bm->length) < 0 || fsync(fd) < 0)
        tls_error(err, err_size, "%s: %s", path, strerror(errno));
    else
        rc = 0;
    if (close(fd) < 0 && rc == 0)
        rc = tls_error(err, err_size, "%s: %s", path, strerror(errno));
    BIO_free(mem);
    if (rc < 0)
        unlink(path);
    return rc;
}

/* Through a temporary file and rename, so ca.pem is never half written. */
static int write_cert(const char *dir, X509 *cert, char *err, size_t err_size)
{
    char path[TLS_CA_PATH_SIZE], tmp[TLS_CA_PATH_SIZE];
    BUF_MEM *bm = NULL;
    BIO *mem = BIO_new(BIO_s_mem());
    int rc = -1;

    if (ca_path(path, sizeof path, dir, TLS_CA_CERT_FILE, err, err_size) < 0 ||
        ca_path(tmp, sizeof tmp, dir, "." TLS_CA_CERT_FILE ".tmp", err, err_size) < 0) {
        BIO_free(mem);
        return -1;
    }
    if (!mem || PEM_write_bio_X509(mem, cert) != 1 || BIO_get_mem_ptr(mem, &bm) != 1) {
        BIO_free(mem);
        return tls_error_ssl(err, err_size, "encoding the CA certificate");
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, CA_CERT_MODE);
    if (fd < 0) {
        BIO_free(mem);
        return tls_error(err, err_size, "%s: %s", tmp, strerror(errno));
    }
    if (fchmod(fd, CA_CERT_MODE) < 0 || write_all(fd, bm->data, bm->length) < 0 || fsync(fd) < 0)
        tls_error(err, err_size, "%s: %s", tmp, strerror(errno));
    else
        rc = 0;
    if (close(fd) < 0 && rc == 0)
        rc = tls_error(err, err_size, "%s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) < 0)
        rc = tls_error(err, err_size, "%s: %s", path, strerror(errno));
    if (rc < 0)
        unlink(tmp);
    BIO_free(mem);
    return rc;
}

static int check_options(const struct tls_ca_options *o, char *err, size_t err_size)
{
    if (o->days < 0 || o->days > TLS_CA_MAX_DAYS)
        return tls_error(err, err_size, "CA lifetime: %d days is not within 1..%d", o->days,
                         TLS_CA_MAX_DAYS);
    if (o->common_name &&
        (o->common_name[0] == '\0' || strlen(o->common_name) > TLS_CA_MAX_NAME_BYTES))
        return tls_error(err, err_size, "CA name: must be 1..%d bytes", TLS_CA_MAX_NAME_BYTES);
    if (o->permitted_names && (o->n_permitted == 0 || o->n_permitted > TLS_CA_MAX_PERMITTED))
        return tls_error(err, err_size, "name constraints: need 1..%d names, got %zu",
                         TLS_CA_MAX_PERMITTED, o->n_permitted);
    return 0;
}

int tls_ca_init(const char *dir, const struct tls_ca_options *o, char *err, size_t err_size)
{
    static const struct tls_ca_options defaults = {0};
    char key_path[TLS_CA_PATH_SIZE];
    struct stat st;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    int rc = -1;

    if (!o)
        o = &defaults;
    if (check_options(o, err, err_size) < 0 ||
        ca_path(key_path, sizeof key_path, dir, TLS_CA_KEY_FILE, err, err_size) < 0)
        return -1;
    /* Checked before any work for a clear message; O_EXCL still decides. */
    if (lstat(key_path, &st) == 0)
        return tls_error(err, err_size,
                         "%s exists; refusing to replace a CA key (clients trust that CA). "
                         "To make a new CA, remove %s and %s/%s first",
                         key_path, key_path, dir, TLS_CA_CERT_FILE);
    if (make_dirs(dir, err, err_size) < 0)
        return -1;
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!key)
        return tls_error_ssl(err, err_size, "generating the CA key");
    cert = make_ca_cert(key, o, err, err_size);
    if (!cert)
        goto out;
    if (write_key(key_path, key, err, err_size) < 0)
        goto out;
    if (write_cert(dir, cert, err, err_size) < 0) {
        unlink(key_path); /* no key without its certificate: init can be retried */
        goto out;
    }
    rc = 0;
out:
    X509_free(cert);
    EVP_PKEY_free(key); /* OpenSSL clears the private scalar on free */
    return rc;
}

/* ---- show and export ------------------------------------------------------ */

static void print_general_name(FILE *out, const GENERAL_NAME *gn)
{
    char text[CA_IP_TEXT_SIZE];
    int type;
    const ASN1_STRING *s = GENERAL_NAME_get0_value(gn, &type);
    const unsigned char *d = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);

    if (type == GEN_DNS) {
        fprintf(out, " DNS:%.*s", len, (const char *)d);
        return;
    }
    if (type == GEN_IPADD && (len == 8 || len == 32)) {
        int family = len == 8 ? AF_INET : AF_INET6;
        int half = len / 2, prefix = 0;
        for (int i = 0; i < half; i++)
            prefix += __builtin_popcount(d[half + i]);
        if (inet_ntop(family, d, text, sizeof text)) {
            fprintf(out, " IP:%s/%d", text, prefix);
            return;
        }
    }
    fprintf(out, " (other name type %d)", type);
}

static void print_subtrees(FILE *out, const char *label, const STACK_OF(GENERAL_SUBTREE) * sk)
{
    if (sk_GENERAL_SUBTREE_num(sk) <= 0)
        return;
    fprintf(out, "  %s:", label);
    for (int i = 0; i < sk_GENERAL_SUBTREE_num(sk); i++)
        print_general_name(out, sk_GENERAL_SUBTREE_value(sk, i)->base);
    fputc('\n', out);
}

static void print_constraints(FILE *out, X509 *cert)
{
    int crit = 0;
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(cert, NID_name_constraints, &crit, NULL);
    if (!nc) {
        fprintf(out, "name constraints: none (the CA can sign for any name)\n");
        return;
    }
    fprintf(out, "name constraints:%s\n", crit ? " (critical)" : " (NOT critical)");
    print_subtrees(out, "permitted", nc->permittedSubtrees);
    print_subtrees(out, "excluded", nc->excludedSubtrees);
    NAME_CONSTRAINTS_free(nc);
}

static void print_key(FILE *out, X509 *cert)
{
    char group[CA_IP_TEXT_SIZE];
    const EVP_PKEY *k = X509_get0_pubkey(cert);
    if (!k) {
        fprintf(out, "key:         (unreadable)\n");
        return;
    }
    if (EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME,
                                                                 group, sizeof group, NULL) == 1)
        fprintf(out, "key:         ECDSA %s (%d bits)\n", group, EVP_PKEY_get_bits(k));
    else
        fprintf(out, "key:         %s (%d bits)\n", EVP_PKEY_get0_type_name(k),
                EVP_PKEY_get_bits(k));
}

static void print_validity(FILE *out, X509 *cert)
{
    char nb[CA_TIME_TEXT_SIZE], na[CA_TIME_TEXT_SIZE];
    time_t end;
    format_time(X509_get0_notBefore(cert), nb, sizeof nb);
    format_time(X509_get0_notAfter(cert), na, sizeof na);
    fprintf(out, "not before:  %s\n", nb);
    if (tls_not_after(cert, &end) == 0 && end > time(NULL))
        fprintf(out, "not after:   %s (%ld days left)\n", na,
                (long)((end - time(NULL)) / CA_DAY_S));
    else
        fprintf(out, "not after:   %s (EXPIRED)\n", na);
}

static void print_basics(FILE *out, X509 *cert)
{
    uint32_t flags = X509_get_extension_flags(cert);
    long pathlen = X509_get_pathlen(cert);
    fprintf(out, "basic:       CA:%s", flags & EXFLAG_CA ? "TRUE" : "FALSE");
    if (pathlen >= 0)
        fprintf(out, ", pathlen:%ld", pathlen);
    fprintf(out, "; keyCertSign %s\n",
            (flags & EXFLAG_KUSAGE) && (X509_get_key_usage(cert) & KU_KEY_CERT_SIGN) ? "yes"
                                                                                     : "NO");
}

int tls_ca_show(const char *dir, FILE *out, char *err, size_t err_size)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    X509 *cert = read_cert(dir, err, err_size);
    if (!cert)
        return -1;
    if (X509_digest(cert, EVP_sha256(), md, &n) != 1) {
        X509_free(cert);
        return tls_error_ssl(err, err_size, "fingerprint");
    }
    BIO *bio = BIO_new_fp(out, BIO_NOCLOSE);
    fprintf(out, "certificate: %s/%s\nsubject:     ", dir, TLS_CA_CERT_FILE);
    fflush(out);
    X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    BIO_flush(bio);
    BIO_free(bio);
    fprintf(out, "\nsha256:      ");
    for (unsigned int i = 0; i < n; i++)
        fprintf(out, "%02X%s", md[i], i + 1 < n ? ":" : "\n");
    print_validity(out, cert);
    print_key(out, cert);
    print_basics(out, cert);
    print_constraints(out, cert);
    X509_free(cert);
    if (fflush(out) != 0 || ferror(out))
        return tls_error(err, err_size, "writing: %s", strerror(errno));
    return 0;
}

int tls_ca_export(const char *dir, FILE *out, char *err, size_t err_size)
{
    X509 *cert = read_cert(dir, err, err_size);
    if (!cert)
        return -1;
    int ok = PEM_write_X509(out, cert);
    X509_free(cert);
    if (ok != 1)
        return tls_error_ssl(err, err_size, "writing the certificate");
    if (fflush(out) != 0 || ferror(out))
        return tls_error(err, err_size, "writing: %s", strerror(errno));
    return 0;
}
