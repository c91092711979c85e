/* The internal CA: what init writes (files, modes, every certificate field,
 * name constraints), what it refuses to overwrite, what loading refuses,
 * what show and export print, and `sluice ca` on the command line. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cmd/cmd.h"
#include "tls/ca.h"

#define ERR_SIZE 512
#define PATH_SIZE 512
#define FILE_MAX (64 * 1024)
#define OUT_MAX (64 * 1024)
#define DAY 86400L
#define SLACK_S 10

/* ---- helpers -------------------------------------------------------------- */

static void make_dir(char *buf)
{
    snprintf(buf, PATH_SIZE, "/tmp/sluice-ca-XXXXXX");
    assert_non_null(mkdtemp(buf));
}

static void remove_tree(const char *dir)
{
    char path[PATH_SIZE];
    struct stat st;
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void file_path(char *buf, const char *dir, const char *name)
{
    snprintf(buf, PATH_SIZE, "%s/%s", dir, name);
}

static mode_t file_mode(const char *dir, const char *name)
{
    char path[PATH_SIZE];
    struct stat st;
    file_path(path, dir, name);
    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

static bool file_exists(const char *dir, const char *name)
{
    char path[PATH_SIZE];
    struct stat st;
    file_path(path, dir, name);
    return lstat(path, &st) == 0;
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return n;
}

static X509 *load_cert_file(const char *dir)
{
    char path[PATH_SIZE];
    file_path(path, dir, TLS_CA_CERT_FILE);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static void init_ok(const char *dir, const struct tls_ca_options *o)
{
    char err[ERR_SIZE] = "";
    if (tls_ca_init(dir, o, err, sizeof err) != 0)
        fail_msg("tls_ca_init: %s", err);
}

static void expect_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("'%s' lacks '%s'", text, part);
}

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
    return timegm(&tm);
}

static int ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    assert_true(i >= 0);
    return X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

/* Writes a hand-made "CA" into dir: a key (0600) and a self-signed
 * certificate with the given basicConstraints/keyUsage text and validity
 * offsets, for the loader's refusals. */
static void write_custom_ca(const char *dir, const char *bc, const char *ku, long nb, long na)
{
    char path[PATH_SIZE];
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    assert_non_null(key);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"custom", -1, -1,
                               0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, name);
    X509_gmtime_adj(X509_getm_notBefore(x), nb);
    X509_gmtime_adj(X509_getm_notAfter(x), na);
    X509_set_pubkey(x, key);
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, NULL, NID_basic_constraints, bc);
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    if (ku) {
        e = X509V3_EXT_nconf_nid(NULL, NULL, NID_key_usage, ku);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    file_path(path, dir, TLS_CA_CERT_FILE);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    file_path(path, dir, TLS_CA_KEY_FILE);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* ---- init ----------------------------------------------------------------- */

static void test_init_file_modes_whatever_the_umask(void **state)
{
    static const mode_t umasks[] = {0, 022, 077};
    char dir[PATH_SIZE];
    for (size_t i = 0; i < sizeof umasks / sizeof umasks[0]; i++) {
        make_dir(dir);
        mode_t old = umask(umasks[i]);
        init_ok(dir, NULL);
        umask(old);
        assert_int_equal(file_mode(dir, TLS_CA_KEY_FILE), 0600);
        assert_int_equal(file_mode(dir, TLS_CA_CERT_FILE), 0644);
        assert_false(file_exists(dir, "." TLS_CA_CERT_FILE ".tmp"));
        remove_tree(dir);
    }
}

static void test_init_makes_missing_directories(void **state)
{
    char base[PATH_SIZE], dir[PATH_SIZE];
    make_dir(base);
    snprintf(dir, sizeof dir, "%s/a/b/ca", base);
    init_ok(dir, NULL);
    assert_true(file_exists(dir, TLS_CA_KEY_FILE));
    assert_true(file_exists(dir, TLS_CA_CERT_FILE));
    remove_tree(base);
}

static void test_init_never_overwrites_a_key(void **state)
{
    char dir[PATH_SIZE], path[PATH_SIZE], err[ERR_SIZE];
    static char key_before[FILE_MAX], key_after[FILE_MAX], pem_before[FILE_MAX],
        pem_after[FILE_MAX];

    make_dir(dir);
    init_ok(dir, NULL);
    file_path(path, dir, TLS_CA_KEY_FILE);
    read_file(path, key_before, sizeof key_before);
    file_path(path, dir, TLS_CA_CERT_FILE);
    read_file(path, pem_before, sizeof pem_before);

    assert_int_equal(tls_ca_init(dir, NULL, err, sizeof err), -1);
    expect_contains(err, "exists");
    expect_contains(err, "refusing");
    file_path(path, dir, TLS_CA_KEY_FILE);
    read_file(path, key_after, sizeof key_after);
    file_path(path, dir, TLS_CA_CERT_FILE);
    read_file(path, pem_after, sizeof pem_after);
    assert_string_equal(key_before, key_after);
    assert_string_equal(pem_before, pem_after);

    /* a dangling symlink in the key's place is refused as well, and its
     * target is not created */
    char target[PATH_SIZE];
    file_path(target, dir, "elsewhere.key");
    file_path(path, dir, TLS_CA_KEY_FILE);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(symlink(target, path), 0);
    assert_int_equal(tls_ca_init(dir, NULL, err, sizeof err), -1);
    assert_false(file_exists(dir, "elsewhere.key"));
    remove_tree(dir);
}

static void test_ca_certificate_fields(void **state)
{
    char dir[PATH_SIZE], cn[128], group[64];
    time_t now = time(NULL);

    make_dir(dir);
    init_ok(dir, NULL);
    X509 *x = load_cert_file(dir);

    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) >
                0);
    assert_string_equal(cn, TLS_CA_DEFAULT_NAME);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(x)), 1); /* self-signed */
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    /* serial: 128 bits, positive */
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    assert_int_equal(BN_num_bits(serial), 128);
    assert_false(BN_is_negative(serial));
    BN_free(serial);
    /* CA:TRUE, pathlen 0, critical */
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_non_null(bc->pathlen);
    assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(ext_critical(x, NID_basic_constraints), 1);
    /* keyCertSign + cRLSign only, critical */
    assert_int_equal(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(ext_critical(x, NID_key_usage), 1);
    /* SKI is the key's id; AKI points at itself */
    ASN1_OCTET_STRING *id = tls_key_id(x);
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(x), id), 0);
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), id), 0);
    ASN1_OCTET_STRING_free(id);
    /* no name constraints unless asked for */
    assert_int_equal(X509_get_ext_by_NID(x, NID_name_constraints, -1), -1);
    /* ECDSA P-256 */
    assert_int_equal(EVP_PKEY_get_utf8_string_param(X509_get0_pubkey(x), OSSL_PKEY_PARAM_GROUP_NAME,
                                                    group, sizeof group, NULL),
                     1);
    assert_string_equal(group, "prime256v1");
    /* from an hour ago, for the default 3650 days */
    time_t nb = asn1_time(X509_get0_notBefore(x));
    time_t na = asn1_time(X509_get0_notAfter(x));
    assert_true(nb >= now - 3600 - SLACK_S && nb <= now - 3600 + SLACK_S);
    assert_true(na >= now + 3650 * DAY - SLACK_S && na <= now + 3650 * DAY + SLACK_S);

    /* the key file holds the matching private key */
    char err[ERR_SIZE];
    EVP_PKEY *key = NULL;
    assert_int_equal(tls_ca_load_key(dir, x, &key, err, sizeof err), 0);
    assert_true(EVP_PKEY_is_a(key, "EC"));
    EVP_PKEY_free(key);
    X509_free(x);
    remove_tree(dir);
}

static void test_lifetime_and_name_options(void **state)
{
    struct tls_ca_options o = {.days = 10, .common_name = "ci runner CA"};
    char dir[PATH_SIZE], cn[128];
    make_dir(dir);
    init_ok(dir, &o);
    X509 *x = load_cert_file(dir);
    time_t na = asn1_time(X509_get0_notAfter(x));
    assert_true(na >= time(NULL) + 10 * DAY - SLACK_S && na <= time(NULL) + 10 * DAY + SLACK_S);
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) >
                0);
    assert_string_equal(cn, "ci runner CA");
    X509_free(x);
    remove_tree(dir);
}

static void test_name_constraints_written(void **state)
{
    static const char *const names[] = {"example.com", "B\xc3\x9c"
                                                       "CHER.example."};
    struct tls_ca_options o = {.permitted_names = names, .n_permitted = 2};
    static const unsigned char zeros[32];
    char dir[PATH_SIZE];
    int crit = -1, type;

    make_dir(dir);
    init_ok(dir, &o);
    X509 *x = load_cert_file(dir);
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(x, NID_name_constraints, &crit, NULL);
    assert_non_null(nc);
    assert_int_equal(crit, 1);
    assert_int_equal(sk_GENERAL_SUBTREE_num(nc->permittedSubtrees), 2);
    const ASN1_STRING *s =
        GENERAL_NAME_get0_value(sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, 0)->base, &type);
    assert_int_equal(type, GEN_DNS);
    assert_int_equal(ASN1_STRING_length(s), strlen("example.com"));
    assert_memory_equal(ASN1_STRING_get0_data(s), "example.com", strlen("example.com"));
    s = GENERAL_NAME_get0_value(sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, 1)->base, &type);
    assert_int_equal(type, GEN_DNS);
    assert_int_equal(ASN1_STRING_length(s), strlen("xn--bcher-kva.example"));
    assert_memory_equal(ASN1_STRING_get0_data(s), "xn--bcher-kva.example",
                        strlen("xn--bcher-kva.example"));
    /* every IPv4 and IPv6 address excluded: address and mask all zero */
    assert_int_equal(sk_GENERAL_SUBTREE_num(nc->excludedSubtrees), 2);
    for (int i = 0; i < 2; i++) {
        s = GENERAL_NAME_get0_value(sk_GENERAL_SUBTREE_value(nc->excludedSubtrees, i)->base, &type);
        assert_int_equal(type, GEN_IPADD);
        assert_int_equal(ASN1_STRING_length(s), i == 0 ? 8 : 32);
        assert_memory_equal(ASN1_STRING_get0_data(s), zeros, (size_t)ASN1_STRING_length(s));
    }
    NAME_CONSTRAINTS_free(nc);
    X509_free(x);
    remove_tree(dir);
}

static void test_init_refuses_bad_options(void **state)
{
    static const char *const wildcard[] = {"*.example.com"};
    static const char *const address[] = {"192.0.2.1"};
    static const char *const spaced[] = {"bad name.example"};
    static const char *const fine[] = {"example.com"};
    char long_name[TLS_CA_MAX_NAME_BYTES + 2];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const struct {
        struct tls_ca_options o;
        const char *part;
    } cases[] = {
        {{.days = -1}, "lifetime"},
        {{.days = TLS_CA_MAX_DAYS + 1}, "lifetime"},
        {{.common_name = ""}, "CA name"},
        {{.common_name = long_name}, "CA name"},
        {{.permitted_names = fine, .n_permitted = 0}, "name constraints"},
        {{.permitted_names = wildcard, .n_permitted = 1}, "*.example.com"},
        {{.permitted_names = address, .n_permitted = 1}, "192.0.2.1"},
        {{.permitted_names = spaced, .n_permitted = 1}, "bad name.example"},
    };
    char dir[PATH_SIZE], err[ERR_SIZE];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_dir(dir);
        err[0] = '\0';
        assert_int_equal(tls_ca_init(dir, &cases[i].o, err, sizeof err), -1);
        expect_contains(err, cases[i].part);
        /* nothing written */
        assert_false(file_exists(dir, TLS_CA_KEY_FILE));
        assert_false(file_exists(dir, TLS_CA_CERT_FILE));
        remove_tree(dir);
    }
}

/* ---- loading -------------------------------------------------------------- */

static void expect_load_cert_error(const char *dir, const char *part)
{
    char err[ERR_SIZE] = "";
    X509 *x = NULL;
    assert_int_equal(tls_ca_load_cert(dir, &x, err, sizeof err), -1);
    assert_null(x);
    expect_contains(err, part);
}

static void test_load_cert_refusals(void **state)
{
    char dir[PATH_SIZE], err[ERR_SIZE];
    X509 *x = NULL;

    make_dir(dir);
    write_custom_ca(dir, "critical,CA:TRUE", "critical,keyCertSign", -60, DAY);
    assert_int_equal(tls_ca_load_cert(dir, &x, err, sizeof err), 0); /* the control */
    X509_free(x);
    write_custom_ca(dir, "critical,CA:FALSE", "critical,keyCertSign", -60, DAY);
    expect_load_cert_error(dir, "not a CA");
    write_custom_ca(dir, "critical,CA:TRUE", "critical,digitalSignature", -60, DAY);
    expect_load_cert_error(dir, "keyCertSign");
    write_custom_ca(dir, "critical,CA:TRUE", NULL, -60, DAY);
    expect_load_cert_error(dir, "keyCertSign");
    write_custom_ca(dir, "critical,CA:TRUE", "critical,keyCertSign", -2 * DAY, -DAY);
    expect_load_cert_error(dir, "expired");
    write_custom_ca(dir, "critical,CA:TRUE", "critical,keyCertSign", DAY, 2 * DAY);
    expect_load_cert_error(dir, "not valid before");
    remove_tree(dir);
    expect_load_cert_error("/nonexistent/ca", "sluice ca init");
}

static void expect_load_key_error(const char *dir, X509 *cert, const char *part)
{
    char err[ERR_SIZE] = "";
    EVP_PKEY *key = NULL;
    assert_int_equal(tls_ca_load_key(dir, cert, &key, err, sizeof err), -1);
    assert_null(key);
    expect_contains(err, part);
}

static void test_load_key_refusals(void **state)
{
    static const mode_t bad_modes[] = {0644, 0640, 0604, 0660, 0602, 0610};
    char dir[PATH_SIZE], other[PATH_SIZE], key[PATH_SIZE], other_key[PATH_SIZE], mode_text[16],
        err[ERR_SIZE];
    EVP_PKEY *k = NULL;

    make_dir(dir);
    init_ok(dir, NULL);
    X509 *cert = load_cert_file(dir);
    file_path(key, dir, TLS_CA_KEY_FILE);
    for (size_t i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
        assert_int_equal(chmod(key, bad_modes[i]), 0);
        snprintf(mode_text, sizeof mode_text, "%04o", (unsigned)bad_modes[i]);
        expect_load_key_error(dir, cert, mode_text);
    }
    assert_int_equal(chmod(key, 0400), 0);
    assert_int_equal(tls_ca_load_key(dir, cert, &k, err, sizeof err), 0);
    EVP_PKEY_free(k);
    assert_int_equal(chmod(key, 0600), 0);

    /* an encrypted key is refused without prompting for a passphrase */
    EVP_PKEY *plain = NULL;
    assert_int_equal(tls_ca_load_key(dir, cert, &plain, err, sizeof err), 0);
    FILE *f = fopen(key, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, plain, EVP_aes_128_cbc(), (unsigned char *)"secret", 6, NULL, NULL);
    fclose(f);
    EVP_PKEY_free(plain);
    expect_load_key_error(dir, cert, "unencrypted");

    /* garbage */
    f = fopen(key, "w");
    fputs("not a key\n", f);
    fclose(f);
    expect_load_key_error(dir, cert, "unencrypted PEM private key");

    /* another CA's key */
    make_dir(other);
    init_ok(other, NULL);
    file_path(other_key, other, TLS_CA_KEY_FILE);
    assert_int_equal(rename(other_key, key), 0);
    expect_load_key_error(dir, cert, "does not belong");

    /* a symlink */
    assert_int_equal(rename(key, other_key), 0);
    assert_int_equal(symlink(other_key, key), 0);
    expect_load_key_error(dir, cert, "symbolic link");

    X509_free(cert);
    remove_tree(dir);
    remove_tree(other);
}

/* ---- show and export ------------------------------------------------------ */

static char *capture_show(const char *dir, int *rc, char *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    *rc = tls_ca_show(dir, f, err, ERR_SIZE);
    fclose(f);
    return text;
}

static void test_show(void **state)
{
    static const char *const names[] = {"example.com"};
    struct tls_ca_options o = {.permitted_names = names, .n_permitted = 1};
    char dir[PATH_SIZE], err[ERR_SIZE], fp[EVP_MAX_MD_SIZE * 3 + 1];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n;
    int rc;

    make_dir(dir);
    init_ok(dir, NULL);
    X509 *x = load_cert_file(dir);
    assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
    for (unsigned int i = 0; i < n; i++)
        snprintf(fp + 3 * i, sizeof fp - 3 * i, "%02X%s", md[i], i + 1 < n ? ":" : "");
    char *text = capture_show(dir, &rc, err);
    assert_int_equal(rc, 0);
    expect_contains(text, "subject:     CN=sluice internal CA");
    expect_contains(text, fp);
    expect_contains(text, "not before:  ");
    expect_contains(text, "(3650 days left)"); /* rounded down from 3650 days + a moment */
    expect_contains(text, "ECDSA prime256v1");
    expect_contains(text, "CA:TRUE, pathlen:0; keyCertSign yes");
    expect_contains(text, "name constraints: none");
    free(text);
    X509_free(x);
    remove_tree(dir);

    make_dir(dir);
    init_ok(dir, &o);
    text = capture_show(dir, &rc, err);
    assert_int_equal(rc, 0);
    expect_contains(text, "name constraints: (critical)");
    expect_contains(text, "permitted: DNS:example.com");
    expect_contains(text, "excluded: IP:0.0.0.0/0 IP:::/0");
    free(text);
    remove_tree(dir);

    /* an expired CA can still be shown, and says so */
    make_dir(dir);
    write_custom_ca(dir, "critical,CA:TRUE", "critical,keyCertSign", -2 * DAY, -DAY);
    text = capture_show(dir, &rc, err);
    assert_int_equal(rc, 0);
    expect_contains(text, "(EXPIRED)");
    free(text);
    remove_tree(dir);

    text = capture_show("/nonexistent/ca", &rc, err);
    assert_int_equal(rc, -1);
    expect_contains(err, "sluice ca init --dir /nonexistent/ca");
    free(text);
}

static void test_export_is_the_certificate(void **state)
{
    char dir[PATH_SIZE], err[ERR_SIZE];
    char *text = NULL;
    size_t len = 0;

    make_dir(dir);
    init_ok(dir, NULL);
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(tls_ca_export(dir, f, err, sizeof err), 0);
    fclose(f);
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    X509 *exported = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    assert_non_null(exported);
    X509 *x = load_cert_file(dir);
    assert_int_equal(X509_cmp(exported, x), 0);
    assert_null(strstr(text, "PRIVATE KEY"));
    X509_free(x);
    X509_free(exported);
    BIO_free(bio);
    free(text);
    remove_tree(dir);
}

/* ---- `sluice ca` ---------------------------------------------------------- */

struct cli_result {
    int rc;
    char out[OUT_MAX];
    char err[OUT_MAX];
};

/* Runs cmd_ca_main with stdout and stderr captured. argv[0] is "ca". */
static void run_cli(struct cli_result *r, int argc, const char **argv)
{
    char out_path[] = "/tmp/sluice-ca-out-XXXXXX", err_path[] = "/tmp/sluice-ca-err-XXXXXX";
    int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
    assert_true(out_fd >= 0 && err_fd >= 0);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    r->rc = cmd_ca_main(argc, (char **)argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    close(out_fd);
    close(err_fd);
    read_file(out_path, r->out, sizeof r->out);
    read_file(err_path, r->err, sizeof r->err);
    unlink(out_path);
    unlink(err_path);
}

#define CLI(r, ...)                                                                                \
    do {                                                                                           \
        const char *argv_[] = {"ca", __VA_ARGS__};                                                 \
        run_cli((r), (int)(sizeof argv_ / sizeof argv_[0]), argv_);                                \
    } while (0)

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_cli_init_show_export(void **state)
{
    static struct cli_result r;
    char dir[PATH_SIZE], pem[FILE_MAX], path[PATH_SIZE];

    make_dir(dir);
    CLI(&r, "init", "--dir", dir, "--days", "20");
    assert_int_equal(r.rc, 0);
    expect_contains(r.out, "made a CA in");
    expect_contains(r.out, "(20 days left)");
    assert_int_equal(file_mode(dir, TLS_CA_KEY_FILE), 0600);

    CLI(&r, "init", "--dir", dir);
    assert_int_equal(r.rc, EXIT_RUNTIME);
    expect_contains(r.err, "exists");

    CLI(&r, "show", "--dir", dir);
    assert_int_equal(r.rc, 0);
    expect_contains(r.out, "sha256:");

    CLI(&r, "export", "--dir", dir);
    assert_int_equal(r.rc, 0);
    file_path(path, dir, TLS_CA_CERT_FILE);
    read_file(path, pem, sizeof pem);
    assert_string_equal(r.out, pem);

    /* $SLUICE_CA_DIR is the default directory */
    setenv(TLS_CA_DIR_ENV, dir, 1);
    CLI(&r, "export");
    unsetenv(TLS_CA_DIR_ENV);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, pem);

    CLI(&r, "show", "--dir", "/nonexistent/ca");
    assert_int_equal(r.rc, EXIT_RUNTIME);
    expect_contains(r.err, "no CA here");
    remove_tree(dir);
}

static void test_cli_usage_errors(void **state)
{
    static struct cli_result r;
    static const char *const cases[][4] = {
        {"bogus", NULL},
        {"init", "--days", "0", NULL},
        {"init", "--days", "12x", NULL},
        {"init", "--days", NULL},
        {"init", "--frobnicate", NULL},
        {"init", "extra", NULL},
        {"show", "--days", "3", NULL},
        {"export", "--name-constraints", NULL},
        {"init", "--name-constraints", NULL},
        {"init", "--policy", "p.json", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[6] = {"ca"};
        int argc = 1;
        for (int j = 0; j < 4 && cases[i][j]; j++)
            argv[argc++] = cases[i][j];
        run_cli(&r, argc, argv);
        if (r.rc != EXIT_USAGE)
            fail_msg("case %zu (%s): exit %d, stderr %s", i, cases[i][0], r.rc, r.err);
        expect_contains(r.err, "usage:");
    }
    run_cli(&r, 1, (const char *[]){"ca"});
    assert_int_equal(r.rc, EXIT_USAGE);
}

/* The permitted names a CA made by the CLI carries, space-separated. */
static void permitted_names(const char *dir, char *buf, size_t size)
{
    X509 *x = load_cert_file(dir);
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(x, NID_name_constraints, NULL, NULL);
    assert_non_null(nc);
    buf[0] = '\0';
    for (int i = 0; i < sk_GENERAL_SUBTREE_num(nc->permittedSubtrees); i++) {
        int type;
        const ASN1_STRING *s = GENERAL_NAME_get0_value(
            sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, i)->base, &type);
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%.*s", used ? " " : "", ASN1_STRING_length(s),
                 (const char *)ASN1_STRING_get0_data(s));
    }
    NAME_CONSTRAINTS_free(nc);
    X509_free(x);
}

static void test_cli_name_constraints_from_policy(void **state)
{
    static struct cli_result r;
    char base[PATH_SIZE], dir[PATH_SIZE], policy[PATH_SIZE], names[1024];

    make_dir(base);
    snprintf(dir, sizeof dir, "%s/ca", base);
    snprintf(policy, sizeof policy, "%s/policy.json", base);
    write_text(policy, "{\"default\": \"deny\", \"rules\": ["
                       "{\"allow\": \"pypi.org\"},"
                       "{\"allow\": \"*.pythonhosted.org\"},"
                       "{\"allow\": \".github.com\", \"ports\": [443, 22]},"
                       "{\"deny\": \"gist.github.com\"},"
                       "{\"deny\": \"evil.example\"},"
                       "{\"allow\": \"api.github.com\", \"methods\": [\"GET\"]},"
                       "{\"prompt\": \"B\xc3\x9c"
                       "CHER.example.\"}]}");
    CLI(&r, "init", "--dir", dir, "--name-constraints", "--policy", policy);
    if (r.rc != 0)
        fail_msg("exit %d: %s", r.rc, r.err);
    permitted_names(dir, names, sizeof names);
    /* deny rules add nothing; api.github.com is inside github.com */
    assert_string_equal(names, "pypi.org pythonhosted.org github.com xn--bcher-kva.example");
    expect_contains(r.out, "permitted: DNS:pypi.org");
    remove_tree(dir);

    /* the OpenSandbox form */
    write_text(policy, "{\"defaultAction\": \"deny\", \"egress\": ["
                       "{\"action\": \"allow\", \"target\": \"*.pypi.org\"},"
                       "{\"action\": \"deny\", \"target\": \"bad.example\"}]}");
    CLI(&r, "init", "--dir", dir, "--name-constraints", "--policy", policy);
    assert_int_equal(r.rc, 0);
    permitted_names(dir, names, sizeof names);
    assert_string_equal(names, "pypi.org");
    remove_tree(dir);

    /* a narrower name given first is folded into a wider one given later */
    write_text(policy, "{\"default\": \"deny\", \"rules\": ["
                       "{\"allow\": \"a.b.example\"}, {\"allow\": \".b.example\"}]}");
    CLI(&r, "init", "--dir", dir, "--name-constraints", "--policy", policy);
    assert_int_equal(r.rc, 0);
    permitted_names(dir, names, sizeof names);
    assert_string_equal(names, "b.example");
    remove_tree(base);
}

static void test_cli_name_constraints_refusals(void **state)
{
    static struct cli_result r;
    static const struct {
        const char *policy;
        const char *part;
    } cases[] = {
        {"{\"default\": \"deny\", \"rules\": [{\"allow\": \"*\"}]}", "every name"},
        {"{\"default\": \"deny\", \"rules\": [{\"allow\": \"203.0.113.0/24\"}]}", "address rule"},
        {"{\"default\": \"deny\", \"rules\": [{\"prompt\": \"203.0.113.7\"}]}", "address rule"},
        {"{\"default\": \"deny\", \"rules\": [{\"allow\": \"2001:db8::/32\"}]}", "address rule"},
        {"{\"default\": \"allow\", \"rules\": [{\"deny\": \"x.example\"}]}", "default is allow"},
        {"{\"default\": \"deny\", \"rules\": [{\"deny\": \"x.example\"}]}", "no names"},
        {"{\"default\": \"deny\", \"rules\": [{\"allow\": \"x.example\"}], \"clients\": "
         "[{\"name\": \"c\", \"source\": [\"10.0.0.1/32\"], \"policy\": \"c.json\"}]}",
         "per-client"},
        {"{\"default\": \"deny\", \"rules\": [{\"allow\": \"0x7f.1\"}]}", "policy.json"},
        {"{not json", "policy.json"},
    };
    char base[PATH_SIZE], dir[PATH_SIZE], policy[PATH_SIZE];

    make_dir(base);
    snprintf(dir, sizeof dir, "%s/ca", base);
    snprintf(policy, sizeof policy, "%s/policy.json", base);
    /* The client's file must exist: the policy loads its clients' files. */
    char client_file[PATH_SIZE + 16];
    snprintf(client_file, sizeof client_file, "%s/c.json", base);
    write_text(client_file, "{\"rules\": [{\"allow\": \"y.example\"}]}");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(policy, cases[i].policy);
        CLI(&r, "init", "--dir", dir, "--name-constraints", "--policy", policy);
        if (r.rc != EXIT_USAGE || !strstr(r.err, cases[i].part))
            fail_msg("case %zu: exit %d, stderr '%s' (want '%s')", i, r.rc, r.err, cases[i].part);
        assert_false(file_exists(dir, TLS_CA_KEY_FILE)); /* nothing made */
    }
    /* report mode is accepted, with a warning */
    write_text(policy, "{\"default\": \"deny\", \"mode\": \"report\", "
                       "\"rules\": [{\"allow\": \"x.example\"}]}");
    CLI(&r, "init", "--dir", dir, "--name-constraints", "--policy", policy);
    assert_int_equal(r.rc, 0);
    expect_contains(r.err, "report mode");
    remove_tree(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_file_modes_whatever_the_umask),
        cmocka_unit_test(test_init_makes_missing_directories),
        cmocka_unit_test(test_init_never_overwrites_a_key),
        cmocka_unit_test(test_ca_certificate_fields),
        cmocka_unit_test(test_lifetime_and_name_options),
        cmocka_unit_test(test_name_constraints_written),
        cmocka_unit_test(test_init_refuses_bad_options),
        cmocka_unit_test(test_load_cert_refusals),
        cmocka_unit_test(test_load_key_refusals),
        cmocka_unit_test(test_show),
        cmocka_unit_test(test_export_is_the_certificate),
        cmocka_unit_test(test_cli_init_show_export),
        cmocka_unit_test(test_cli_usage_errors),
        cmocka_unit_test(test_cli_name_constraints_from_policy),
        cmocka_unit_test(test_cli_name_constraints_refusals),
    };
    return cmocka_run_group_tests_name("tls_ca", tests, NULL, NULL);
}
