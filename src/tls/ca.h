/* ca: the internal certificate authority that intercepted TLS is signed by.
 *
 * A CA is a directory holding two files: ca.pem (the certificate, public) and
 * ca.key (its ECDSA P-256 private key, PKCS#8 PEM, mode 0600). `sluice ca`
 * makes and shows it; the proxy loads it through tls_minter_start (mint.h),
 * whose signer process is the only one that ever reads ca.key. */
#ifndef SLUICE_TLS_CA_H
#define SLUICE_TLS_CA_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TLS_CA_DEFAULT_DAYS 3650
#define TLS_CA_MAX_DAYS 36500
#define TLS_CA_DEFAULT_NAME "sluice internal CA"
#define TLS_CA_CERT_FILE "ca.pem"
#define TLS_CA_KEY_FILE "ca.key"
#define TLS_CA_DIR_ENV "SLUICE_CA_DIR"
#define TLS_CA_DEFAULT_DIR "/var/lib/sluice/ca"
#define TLS_CA_PATH_SIZE 4096
#define TLS_CA_MAX_PERMITTED 1024
#define TLS_CA_MAX_NAME_BYTES 64 /* X.509 upper bound of a common name */
/* Both sides of every validity period start this far back, for clock skew. */
#define TLS_BACKDATE_S 3600

struct tls_ca_options {
    int days;                /* CA lifetime; 0 means TLS_CA_DEFAULT_DAYS */
    const char *common_name; /* NULL means TLS_CA_DEFAULT_NAME */
    /* X.509 nameConstraints: permitted dNSName subtrees, canonical names
     * ("example.com" permits it and every name below). NULL = none. With
     * constraints, every IP address is also excluded, so the CA can never
     * vouch for an address. */
    const char *const *permitted_names;
    size_t n_permitted;
};

/* Makes DIR (and missing parents, 0755) and writes DIR/ca.key (ECDSA P-256,
 * 0600, created with O_EXCL) and DIR/ca.pem (0644). Refuses, changing
 * nothing, when DIR/ca.key exists. o may be NULL for the defaults. */
int tls_ca_init(const char *dir, const struct tls_ca_options *o, char *err, size_t err_size);
/* Subject, SHA-256 fingerprint, validity, key and constraints. Works on an
 * expired CA too (that is what one wants to look at then). */
int tls_ca_show(const char *dir, FILE *out, char *err, size_t err_size);
/* The certificate in PEM, for trust stores. */
int tls_ca_export(const char *dir, FILE *out, char *err, size_t err_size);

/* Added by the CA module (not in the first draft of this header): */

/* Loads DIR/ca.pem for signing: refuses a certificate that is not CA:TRUE
 * with keyUsage keyCertSign, and one that has expired or is not yet valid. */
int tls_ca_load_cert(const char *dir, X509 **out, char *err, size_t err_size);
/* Loads DIR/ca.key: refuses a file group or others may access (any bit of
 * 077), a symlink, an encrypted key and a key that does not match cert.
 * The file's bytes are wiped after parsing. */
int tls_ca_load_key(const char *dir, const X509 *cert, EVP_PKEY **out, char *err, size_t err_size);

/* Shared by src/tls: */

/* Formats into err (when given) and returns -1. */
int tls_error(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "what: <OpenSSL's reason>", clearing OpenSSL's error queue; returns -1. */
int tls_error_ssl(char *err, size_t err_size, const char *what);
/* A random positive serial of exactly 128 bits (top bit set). */
int tls_set_random_serial(X509 *x);
/* The RFC 5280 key identifier (SHA-1 of the public key bits) of x. */
ASN1_OCTET_STRING *tls_key_id(const X509 *x);
/* A dNSName (GEN_DNS, IA5String) or iPAddress (GEN_IPADD, octets). */
GENERAL_NAME *tls_general_name(int type, const unsigned char *data, size_t len);
/* notAfter of x as seconds since the epoch; -1 when unreadable. */
int tls_not_after(const X509 *x, time_t *out);

#endif
