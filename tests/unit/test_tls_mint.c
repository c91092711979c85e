/* Leaf minting: every field of a minted certificate, the cache, real TLS
 * handshakes against the minted contexts, and the signer process that alone
 * holds the CA key (its confinement, its death, and the parent's memory). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "policy/host.h"
#include "tls/ca.h"
#include "tls/mint.h"

#define ERR_SIZE 512
#define PATH_SIZE 512
#define DAY 86400L
#define SLACK_S 10
#define SCALAR_BYTES 32
#define SCAN_CHUNK (1 << 20)
#define SCAN_MAX_REGION (1UL << 30)
#define THREADS 8
#define THREAD_CALLS 200
#define THREAD_HOSTS 40
#define THREAD_CACHE 16
#define HANDSHAKE_ROUNDS 64

/* ---- helpers -------------------------------------------------------------- */

static void make_dir(char *buf)
{
    snprintf(buf, PATH_SIZE, "/tmp/sluice-mint-XXXXXX");
    assert_non_null(mkdtemp(buf));
}

static void remove_dir(const char *dir)
{
    char path[PATH_SIZE];
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void new_ca(char *dir, const struct tls_ca_options *o)
{
    char err[ERR_SIZE];
    make_dir(dir);
    assert_int_equal(tls_ca_init(dir, o, err, sizeof err), 0);
}

static struct host host_of(const char *text)
{
    struct host h;
    const char *why = NULL;
    assert_int_equal(host_canonicalise(text, strlen(text), &h, &why), 0);
    return h;
}

static X509 *ca_cert(const char *dir)
{
    char err[ERR_SIZE];
    X509 *ca = NULL;
    assert_int_equal(tls_ca_load_cert(dir, &ca, err, sizeof err), 0);
    return ca;
}

static struct tls_minter *start(const char *dir)
{
    char err[ERR_SIZE] = "";
    struct tls_minter *m = tls_minter_start(dir, err, sizeof err);
    if (!m)
        fail_msg("tls_minter_start: %s", err);
    return m;
}

/* The leaf of a fresh context for text; *ctx_out keeps the reference. */
static X509 *mint_leaf(struct tls_minter *m, const char *text, SSL_CTX **ctx_out)
{
    char err[ERR_SIZE] = "";
    struct host h = host_of(text);
    SSL_CTX *ctx = tls_minter_ctx_for(m, &h, err, sizeof err);
    if (!ctx)
        fail_msg("tls_minter_ctx_for(%s): %s", text, err);
    *ctx_out = ctx;
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    assert_non_null(leaf);
    return leaf;
}

/* X509_V_OK or the verification error, checking name or address like a
 * client would. */
static int verify(X509 *ca, X509 *leaf, const char *name, const char *ip)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(vctx, store, leaf, NULL), 1);
    X509_STORE_CTX_set_purpose(vctx, X509_PURPOSE_SSL_SERVER);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(vctx);
    if (name)
        assert_int_equal(X509_VERIFY_PARAM_set1_host(param, name, 0), 1);
    if (ip)
        assert_int_equal(X509_VERIFY_PARAM_set1_ip_asc(param, ip), 1);
    int ok = X509_verify_cert(vctx);
    int rc = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(vctx);
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return rc;
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

/* The one SAN entry of leaf: its type and bytes. */
static void only_san(X509 *leaf, int *type, unsigned char *data, int *len)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
    const ASN1_STRING *s = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(gens, 0), type);
    *len = ASN1_STRING_length(s);
    memcpy(data, ASN1_STRING_get0_data(s), (size_t)*len);
    GENERAL_NAMES_free(gens);
}

static BIGNUM *serial_of(X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    assert_non_null(bn);
    return bn;
}

/* ---- the fields of a certificate ---------------------------------------- */

/* Everything that does not depend on the kind of host. */
static void check_common_fields(X509 *ca, X509 *leaf, const char *cn)
{
    time_t now = time(NULL);
    char text[HOST_TEXT_SIZE];

    assert_int_equal(X509_get_version(leaf), X509_VERSION_3);
    /* serial: exactly 128 bits, positive */
    BIGNUM *serial = serial_of(leaf);
    assert_int_equal(BN_num_bits(serial), 128);
    assert_false(BN_is_negative(serial));
    BN_free(serial);
    /* issuer is the CA's subject; subject CN is the host */
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(ca)), 0);
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, text,
                                          sizeof text) > 0);
    assert_string_equal(text, cn);
    /* basicConstraints CA:FALSE, critical */
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(leaf, NID_basic_constraints, NULL, NULL);
    assert_non_null(bc);
    assert_int_equal(bc->ca, 0);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(ext_critical(leaf, NID_basic_constraints), 1);
    assert_false(X509_get_extension_flags(leaf) & EXFLAG_CA);
    /* keyUsage digitalSignature only, critical */
    assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
    assert_int_equal(ext_critical(leaf, NID_key_usage), 1);
    /* EKU serverAuth only */
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(leaf, NID_ext_key_usage, NULL, NULL);
    assert_non_null(eku);
    assert_int_equal(sk_ASN1_OBJECT_num(eku), 1);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_server_auth);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    /* AKI = the CA's SKI; SKI = the leaf key's id */
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(leaf);
    assert_non_null(aki);
    assert_int_equal(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(ca)), 0);
    ASN1_OCTET_STRING *expect_ski = tls_key_id(leaf);
    assert_non_null(X509_get0_subject_key_id(leaf));
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(leaf), expect_ski), 0);
    ASN1_OCTET_STRING_free(expect_ski);
    /* valid from an hour ago, for 30 days */
    time_t nb = asn1_time(X509_get0_notBefore(leaf));
    time_t na = asn1_time(X509_get0_notAfter(leaf));
    assert_true(nb >= now - 3600 - SLACK_S && nb <= now - 3600 + SLACK_S);
    assert_true(na >= now + 30 * DAY - SLACK_S && na <= now + 30 * DAY + SLACK_S);
    /* ECDSA P-256, signed with SHA-256, signature by the CA */
    assert_int_equal(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(ca)), 1);
    char group[64];
    assert_int_equal(EVP_PKEY_get_utf8_string_param(X509_get0_pubkey(leaf),
                                                    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                                    NULL),
                     1);
    assert_string_equal(group, "prime256v1");
}

static void check_chain(SSL_CTX *ctx, X509 *ca)
{
    STACK_OF(X509) *chain = NULL;
    assert_int_equal(SSL_CTX_get0_chain_certs(ctx, &chain), 1);
    assert_non_null(chain);
    assert_int_equal(sk_X509_num(chain), 1);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), ca), 0);
}

static void test_leaf_for_name(void **state)
{
    char dir[PATH_SIZE];
    unsigned char san[HOST_TEXT_SIZE];
    int type, len;
    SSL_CTX *ctx;

    new_ca(dir, NULL);
    X509 *ca = ca_cert(dir);
    struct tls_minter *m = start(dir);
    X509 *leaf = mint_leaf(m, "www.example.com", &ctx);

    only_san(leaf, &type, san, &len);
    assert_int_equal(type, GEN_DNS);
    assert_int_equal(len, strlen("www.example.com"));
    assert_memory_equal(san, "www.example.com", (size_t)len);
    check_common_fields(ca, leaf, "www.example.com");
    check_chain(ctx, ca);
    assert_int_equal(verify(ca, leaf, "www.example.com", NULL), X509_V_OK);
    assert_int_equal(verify(ca, leaf, "example.com", NULL), X509_V_ERR_HOSTNAME_MISMATCH);
    assert_int_equal(verify(ca, leaf, "a.www.example.com", NULL), X509_V_ERR_HOSTNAME_MISMATCH);

    SSL_CTX_free(ctx);
    tls_minter_stop(m);
    X509_free(ca);
    remove_dir(dir);
}

static void test_leaf_for_ipv4(void **state)
{
    char dir[PATH_SIZE];
    unsigned char san[HOST_TEXT_SIZE];
    static const unsigned char want[4] = {192, 0, 2, 10};
    int type, len;
    SSL_CTX *ctx;

    new_ca(dir, NULL);
    X509 *ca = ca_cert(dir);
    struct tls_minter *m = start(dir);
    X509 *leaf = mint_leaf(m, "192.0.2.10", &ctx);

    only_san(leaf, &type, san, &len);
    assert_int_equal(type, GEN_IPADD);
    assert_int_equal(len, 4);
    assert_memory_equal(san, want, 4);
    check_common_fields(ca, leaf, "192.0.2.10");
    check_chain(ctx, ca);
    assert_int_equal(verify(ca, leaf, NULL, "192.0.2.10"), X509_V_OK);
    assert_int_equal(verify(ca, leaf, NULL, "192.0.2.11"), X509_V_ERR_IP_ADDRESS_MISMATCH);

    SSL_CTX_free(ctx);
    tls_minter_stop(m);
    X509_free(ca);
    remove_dir(dir);
}

static void test_leaf_for_ipv6(void **state)
{
    char dir[PATH_SIZE];
    unsigned char san[HOST_TEXT_SIZE];
    unsigned char want[16];
    int type, len;
    SSL_CTX *ctx;

    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", want), 1);
    new_ca(dir, NULL);
    X509 *ca = ca_cert(dir);
    struct tls_minter *m = start(dir);
    X509 *leaf = mint_leaf(m, "[2001:DB8:0::1]", &ctx);

    only_san(leaf, &type, san, &len);
    assert_int_equal(type, GEN_IPADD);
    assert_int_equal(len, 16);
    assert_memory_equal(san, want, 16);
    check_common_fields(ca, leaf, "2001:db8::1");
    assert_int_equal(verify(ca, leaf, NULL, "2001:db8::1"), X509_V_OK);
    assert_int_equal(verify(ca, leaf, NULL, "2001:db8::2"), X509_V_ERR_IP_ADDRESS_MISMATCH);

    SSL_CTX_free(ctx);
    tls_minter_stop(m);
    X509_free(ca);
    remove_dir(dir);
}

/* A 253-byte name: the SAN holds all of it, the CN the first 64 bytes. */
static void test_long_name_truncates_cn_only(void **state)
{
    char dir[PATH_SIZE], name[HOST_TEXT_SIZE], cn[TLS_CA_MAX_NAME_BYTES + 1];
    unsigned char san[HOST_TEXT_SIZE];
    int type, len;
    SSL_CTX *ctx;

    /* three 62-byte labels of 'a', then 57 'b' and ".com": 250 bytes */
    memset(name, 'a', sizeof name);
    name[62] = name[125] = name[188] = '.';
    memset(name + 189, 'b', 57);
    snprintf(name + 246, sizeof name - 246, ".com");
    assert_int_equal(strlen(name), 250);
    new_ca(dir, NULL);
    X509 *ca = ca_cert(dir);
    struct tls_minter *m = start(dir);
    X509 *leaf = mint_leaf(m, name, &ctx);

    only_san(leaf, &type, san, &len);
    assert_int_equal(len, 250);
    assert_memory_equal(san, name, 250);
    memcpy(cn, name, TLS_CA_MAX_NAME_BYTES);
    cn[TLS_CA_MAX_NAME_BYTES] = '\0';
    check_common_fields(ca, leaf, cn);
    assert_int_equal(verify(ca, leaf, name, NULL), X509_V_OK);

    SSL_CTX_free(ctx);
    tls_minter_stop(m);
    X509_free(ca);
    remove_dir(dir);
}

static void test_serials_differ_and_leaf_key_is_shared(void **state)
{
    static const char *const hosts[] = {"a.example", "b.example", "c.example", "192.0.2.1"};
    char dir[PATH_SIZE];
    SSL_CTX *ctx[4];
    X509 *leaf[4];
    BIGNUM *serial[4];

    new_ca(dir, NULL);
    X509 *ca = ca_cert(dir);
    struct tls_minter *m = start(dir);
    for (int i = 0; i < 4; i++) {
        unsigned char san[HOST_TEXT_SIZE];
        int type, len;
        leaf[i] = mint_leaf(m, hosts[i], &ctx[i]);
        serial[i] = serial_of(leaf[i]);
        /* the signer reuses one template: nothing of the previous host stays */
        only_san(leaf[i], &type, san, &len);
        assert_int_equal(type, i < 3 ? GEN_DNS : GEN_IPADD);
        assert_int_equal(verify(ca, leaf[i], i < 3 ? hosts[i] : NULL, i < 3 ? NULL : hosts[i]),
                         X509_V_OK);
    }
    for (int i = 0; i < 4; i++) {
        for (int j = i + 1; j < 4; j++)
            assert_int_not_equal(BN_cmp(serial[i], serial[j]), 0);
        /* one leaf key for every host, and it is not the CA's key */
        assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf[i]), X509_get0_pubkey(leaf[0])), 1);
        assert_int_not_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf[i]), X509_get0_pubkey(ca)), 1);
    }
    for (int i = 0; i < 4; i++) {
        BN_free(serial[i]);
        SSL_CTX_free(ctx[i]);
    }
    tls_minter_stop(m);
    X509_free(ca);
    remove_dir(dir);
}

/* A CA that ends in 10 days: the leaf ends with it, not 30 days out. */
static void test_validity_capped_at_ca_end(void **state)
{
    struct tls_ca_options o = {.days = 10};
    char dir[PATH_SIZE];
    SSL_CTX *ctx;

    new_ca(dir, &o);
    X509 *ca = ca_cert(dir);
    struct tls_minter *m = start(dir);
    X509 *leaf = mint_leaf(m, "short.example", &ctx);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(ca)), 0);
    time_t na = asn1_time(X509_get0_notAfter(leaf));
    assert_true(na <= time(NULL) + 10 * DAY + SLACK_S);
    assert_true(na >= time(NULL) + 10 * DAY - SLACK_S);
    assert_int_equal(verify(ca, leaf, "short.example", NULL), X509_V_OK);
    SSL_CTX_free(ctx);
    tls_minter_stop(m);
    X509_free(ca);
    remove_dir(dir);
}

/* ---- name constraints ----------------------------------------------------- */

static void test_name_constraints_bind_leaves(void **state)
{
    static const char *const permitted[] = {"example.com"};
    struct tls_ca_options o = {.permitted_names = permitted, .n_permitted = 1};
    char dir[PATH_SIZE];
    SSL_CTX *c1, *c2, *c3, *c4;

    new_ca(dir, &o);
    X509 *ca = ca_cert(dir);
    struct tls_minter *m = start(dir);
    X509 *inside = mint_leaf(m, "api.example.com", &c1);
    X509 *apex = mint_leaf(m, "example.com", &c2);
    X509 *outside = mint_leaf(m, "evil-example.com", &c3);
    X509 *address = mint_leaf(m, "192.0.2.7", &c4);
    assert_int_equal(verify(ca, inside, "api.example.com", NULL), X509_V_OK);
    assert_int_equal(verify(ca, apex, "example.com", NULL), X509_V_OK);
    assert_int_equal(verify(ca, outside, "evil-example.com", NULL), X509_V_ERR_PERMITTED_VIOLATION);
    /* addresses are excluded outright */
    assert_int_equal(verify(ca, address, NULL, "192.0.2.7"), X509_V_ERR_EXCLUDED_VIOLATION);
    SSL_CTX_free(c1);
    SSL_CTX_free(c2);
    SSL_CTX_free(c3);
    SSL_CTX_free(c4);
    tls_minter_stop(m);
    X509_free(ca);
    remove_dir(dir);
}

/* ---- the cache ------------------------------------------------------------ */

static void test_cache_hit_returns_same_certificate(void **state)
{
    char dir[PATH_SIZE];
    SSL_CTX *c1, *c2, *c3;
    struct tls_minter_stats st;

    new_ca(dir, NULL);
    struct tls_minter *m = start(dir);
    X509 *first = mint_leaf(m, "cached.example", &c1);
    X509 *again = mint_leaf(m, "CACHED.example.", &c2); /* same canonical host */
    X509 *other = mint_leaf(m, "other.example", &c3);
    assert_int_equal(X509_cmp(first, again), 0);
    assert_int_not_equal(X509_cmp(first, other), 0);
    tls_minter_get_stats(m, &st);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.minted, 2);
    assert_int_equal(st.cached, 2);
    assert_int_equal(st.failures, 0);
    SSL_CTX_free(c1);
    SSL_CTX_free(c2);
    SSL_CTX_free(c3);
    tls_minter_stop(m);
    remove_dir(dir);
}

/* The context outlives its cache entry: the caller's reference stays good. */
static void test_lru_evicts_least_recently_used(void **state)
{
    char dir[PATH_SIZE];
    SSL_CTX *a, *b, *c, *d, *a2, *b2;
    struct tls_minter_stats st;

    new_ca(dir, NULL);
    struct tls_minter *m = start(dir);
    assert_int_equal(tls_minter_set_cache_max(m, 3), 0);
    X509 *la = mint_leaf(m, "a.example", &a);
    X509 *lb = mint_leaf(m, "b.example", &b);
    mint_leaf(m, "c.example", &c);
    mint_leaf(m, "a.example", &a2); /* a is now the most recently used */
    SSL_CTX_free(a2);
    mint_leaf(m, "d.example", &d); /* evicts b, the least recently used */
    tls_minter_get_stats(m, &st);
    assert_int_equal(st.cached, 3);
    assert_int_equal(st.evicted, 1);
    X509 *la2 = mint_leaf(m, "a.example", &a2);
    assert_int_equal(X509_cmp(la, la2), 0); /* a stayed */
    X509 *lb2 = mint_leaf(m, "b.example", &b2);
    assert_int_not_equal(X509_cmp(lb, lb2), 0);   /* b was minted again */
    assert_non_null(SSL_CTX_get0_certificate(b)); /* still usable */
    tls_minter_get_stats(m, &st);
    assert_int_equal(st.minted, 5);
    assert_int_equal(st.cached, 3);
    SSL_CTX_free(a);
    SSL_CTX_free(b);
    SSL_CTX_free(c);
    SSL_CTX_free(d);
    SSL_CTX_free(a2);
    SSL_CTX_free(b2);
    tls_minter_stop(m);
    remove_dir(dir);
}

static void test_default_cache_bound(void **state)
{
    char dir[PATH_SIZE], name[64];
    struct tls_minter_stats st;
    SSL_CTX *ctx;

    new_ca(dir, NULL);
    struct tls_minter *m = start(dir);
    for (int i = 0; i < TLS_MINTER_CACHE_DEFAULT + 5; i++) {
        snprintf(name, sizeof name, "h%d.example", i);
        mint_leaf(m, name, &ctx);
        SSL_CTX_free(ctx);
    }
    tls_minter_get_stats(m, &st);
    assert_int_equal(st.cached, TLS_MINTER_CACHE_DEFAULT);
    assert_int_equal(st.evicted, 5);
    assert_int_equal(st.minted, TLS_MINTER_CACHE_DEFAULT + 5);
    /* shrinking evicts at once */
    assert_int_equal(tls_minter_set_cache_max(m, 10), 0);
    tls_minter_get_stats(m, &st);
    assert_int_equal(st.cached, 10);
    assert_int_equal(tls_minter_set_cache_max(m, 0), -1);
    tls_minter_stop(m);
    remove_dir(dir);
}

struct thread_arg {
    struct tls_minter *m;
    unsigned seed;
    int bad;
};

static void *hammer(void *p)
{
    struct thread_arg *a = p;
    char name[64], err[ERR_SIZE];
    for (int i = 0; i < THREAD_CALLS; i++) {
        snprintf(name, sizeof name, "t%d.example", (int)(rand_r(&a->seed) % THREAD_HOSTS));
        struct host h;
        const char *why;
        if (host_canonicalise(name, strlen(name), &h, &why) < 0) {
            a->bad++;
            continue;
        }
        SSL_CTX *ctx = tls_minter_ctx_for(a->m, &h, err, sizeof err);
        if (!ctx) {
            a->bad++;
            continue;
        }
        X509 *leaf = SSL_CTX_get0_certificate(ctx);
        if (!leaf || X509_check_host(leaf, name, 0, 0, NULL) != 1)
            a->bad++;
        SSL_CTX_free(ctx);
    }
    return NULL;
}

static void test_threads_share_the_cache(void **state)
{
    char dir[PATH_SIZE];
    pthread_t t[THREADS];
    struct thread_arg args[THREADS];
    struct tls_minter_stats st;

    new_ca(dir, NULL);
    struct tls_minter *m = start(dir);
    assert_int_equal(tls_minter_set_cache_max(m, THREAD_CACHE), 0);
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct thread_arg){.m = m, .seed = (unsigned)i + 1};
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].bad, 0);
    }
    tls_minter_get_stats(m, &st);
    assert_int_equal(st.hits + st.minted, THREADS * THREAD_CALLS);
    assert_true(st.cached <= THREAD_CACHE);
    assert_true(st.hits > 0);
    assert_int_equal(st.failures, 0);
    tls_minter_stop(m);
    remove_dir(dir);
}

/* ---- real handshakes against a minted context ----------------------------- */

/* Drives a client and a server SSL over a BIO pair until both finish;
 * 1 when the handshake completed. */
static int handshake(SSL *client, SSL *server)
{
    int c = 0, s = 0;
    for (int i = 0; i < HANDSHAKE_ROUNDS && (c != 1 || s != 1); i++) {
        if (c != 1) {
            c = SSL_do_handshake(client);
            if (c != 1 && SSL_get_error(client, c) != SSL_ERROR_WANT_READ)
                return 0;
        }
        if (s != 1) {
            s = SSL_do_handshake(server);
            if (s != 1 && SSL_get_error(server, s) != SSL_ERROR_WANT_READ)
                return 0;
        }
    }
    return c == 1 && s == 1;
}

struct tls_pair {
    SSL *client, *server;
};

static int connect_pair(SSL_CTX *cctx, SSL_CTX *sctx, const char *name, const unsigned char *alpn,
                        unsigned alpn_len, SSL_SESSION *resume, struct tls_pair *p)
{
    BIO *cb, *sb;
    assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
    p->client = SSL_new(cctx);
    p->server = SSL_new(sctx);
    SSL_set_bio(p->client, cb, cb);
    SSL_set_bio(p->server, sb, sb);
    SSL_set_connect_state(p->client);
    SSL_set_accept_state(p->server);
    SSL_set_tlsext_host_name(p->client, name);
    assert_int_equal(SSL_set1_host(p->client, name), 1);
    if (alpn)
        assert_int_equal(SSL_set_alpn_protos(p->client, alpn, alpn_len), 0);
    if (resume)
        assert_int_equal(SSL_set_session(p->client, resume), 1);
    return handshake(p->client, p->server);
}

/* Moves one application byte server -> client so TLS 1.3 tickets arrive. */
static void exchange_byte(struct tls_pair *p)
{
    char b = 'x';
    assert_int_equal(SSL_write(p->server, &b, 1), 1);
    assert_int_equal(SSL_read(p->client, &b, 1), 1);
}

/* A clean close_notify both ways: OpenSSL drops a session from the server's
 * cache when its connection ends without one. */
static void free_pair(struct tls_pair *p)
{
    SSL_shutdown(p->client);
    SSL_shutdown(p->server);
    SSL_shutdown(p->client);
    ERR_clear_error();
    SSL_free(p->client);
    SSL_free(p->server);
}

static SSL_CTX *client_ctx(X509 *ca, int version)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    assert_non_null(c);
    assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca), 1);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    if (version) {
        SSL_CTX_set_min_proto_version(c, version);
        SSL_CTX_set_max_proto_version(c, version);
    }
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT);
    return c;
}

static void test_handshake_alpn_and_chain(void **state)
{
    static const unsigned char h2_and_h11[] = "\x02h2\x08http/1.1";
    static const unsigned char h2_only[] = "\x02h2";
    char dir[PATH_SIZE];
    struct tls_pair p;
    const unsigned char *sel;
    unsigned sel_len;
    SSL_CTX *sctx;

    new_ca(dir, NULL);
    X509 *ca = ca_cert(dir);
    struct tls_minter *m = start(dir);
    mint_leaf(m, "shake.example", &sctx);
    assert_int_equal(SSL_CTX_get_min_proto_version(sctx), TLS1_2_VERSION);
    SSL_CTX *cctx = client_ctx(ca, 0);

    /* h2 and http/1.1 offered: http/1.1 chosen; verified by name through the CA */
    assert_int_equal(
        connect_pair(cctx, sctx, "shake.example", h2_and_h11, sizeof h2_and_h11 - 1, NULL, &p), 1);
    assert_int_equal(SSL_get_verify_result(p.client), X509_V_OK);
    SSL_get0_alpn_selected(p.client, &sel, &sel_len);
    assert_int_equal(sel_len, 8);
    assert_memory_equal(sel, "http/1.1", 8);
    assert_int_equal(SSL_version(p.client), TLS1_3_VERSION);
    /* the peer sent leaf + CA */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(p.client);
    assert_int_equal(sk_X509_num(chain), 2);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 1), ca), 0);
    free_pair(&p);

    /* only h2 offered: no ALPN answer, the handshake still completes */
    assert_int_equal(
        connect_pair(cctx, sctx, "shake.example", h2_only, sizeof h2_only - 1, NULL, &p), 1);
    SSL_get0_alpn_selected(p.client, &sel, &sel_len);
    assert_int_equal(sel_len, 0);
    free_pair(&p);

    /* a client expecting another name fails verification */
    assert_int_equal(connect_pair(cctx, sctx, "other.example", NULL, 0, NULL, &p), 0);
    assert_int_equal(SSL_get_verify_result(p.client), X509_V_ERR_HOSTNAME_MISMATCH);
    free_pair(&p);

    /* TLS 1.1 is refused */
    SSL_CTX *old = client_ctx(ca, TLS1_1_VERSION);
    SSL_CTX_set_security_level(old, 0);
    assert_int_equal(connect_pair(old, sctx, "shake.example", NULL, 0, NULL, &p), 0);
    free_pair(&p);
    SSL_CTX_free(old);

    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    tls_minter_stop(m);
    X509_free(ca);
    remove_dir(dir);
    ERR_clear_error();
}

/* Resumption by session id (TLS 1.2) and by ticket (TLS 1.3), through the
 * cached context; a session from one host does not resume on another. */
static void test_session_resumption(void **state)
{
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    char dir[PATH_SIZE];
    struct tls_pair p;
    SSL_CTX *s1, *s1_again, *s2;

    new_ca(dir, NULL);
    X509 *ca = ca_cert(dir);
    struct tls_minter *m = start(dir);
    mint_leaf(m, "resume.example", &s1);
    mint_leaf(m, "resume.example", &s1_again);
    mint_leaf(m, "elsewhere.example", &s2);
    for (size_t v = 0; v < 2; v++) {
        SSL_CTX *cctx = client_ctx(ca, versions[v]);
        if (versions[v] == TLS1_2_VERSION)
            SSL_CTX_set_options(cctx, SSL_OP_NO_TICKET); /* the server's session cache */
        assert_int_equal(connect_pair(cctx, s1, "resume.example", NULL, 0, NULL, &p), 1);
        exchange_byte(&p);
        assert_int_equal(SSL_session_reused(p.client), 0);
        SSL_SESSION *sess = SSL_get1_session(p.client);
        assert_non_null(sess);
        free_pair(&p);

        assert_int_equal(connect_pair(cctx, s1_again, "resume.example", NULL, 0, sess, &p), 1);
        assert_int_equal(SSL_session_reused(p.client), 1);
        free_pair(&p);

        /* offered to another host's context: not resumed, a full handshake */
        assert_int_equal(connect_pair(cctx, s2, "elsewhere.example", NULL, 0, sess, &p), 1);
        assert_int_equal(SSL_session_reused(p.client), 0);
        free_pair(&p);
        SSL_SESSION_free(sess);
        SSL_CTX_free(cctx);
    }
    SSL_CTX_free(s1);
    SSL_CTX_free(s1_again);
    SSL_CTX_free(s2);
    tls_minter_stop(m);
    X509_free(ca);
    remove_dir(dir);
}

/* ---- loading -------------------------------------------------------------- */

static void expect_start_error(const char *dir, const char *part)
{
    char err[ERR_SIZE] = "";
    struct tls_minter *m = tls_minter_start(dir, err, sizeof err);
    assert_null(m);
    if (!strstr(err, part))
        fail_msg("error '%s' lacks '%s'", err, part);
}

static void test_start_refuses_unsafe_key(void **state)
{
    char dir[PATH_SIZE], other[PATH_SIZE], key[PATH_SIZE], other_key[PATH_SIZE],
        link_path[PATH_SIZE];

    new_ca(dir, NULL);
    snprintf(key, sizeof key, "%s/ca.key", dir);
    assert_int_equal(chmod(key, 0644), 0);
    expect_start_error(dir, "0644");
    assert_int_equal(chmod(key, 0640), 0);
    expect_start_error(dir, "0640");
    assert_int_equal(chmod(key, 0400), 0);
    tls_minter_stop(start(dir)); /* read-only for the owner is fine */

    /* another CA's key */
    new_ca(other, NULL);
    snprintf(other_key, sizeof other_key, "%s/ca.key", other);
    assert_int_equal(unlink(key), 0);
    assert_int_equal(rename(other_key, key), 0);
    expect_start_error(dir, "does not belong");

    /* a symlink to a key */
    snprintf(link_path, sizeof link_path, "%s/real.key", dir);
    assert_int_equal(rename(key, link_path), 0);
    assert_int_equal(symlink(link_path, key), 0);
    expect_start_error(dir, "symbolic link");

    /* no key at all */
    assert_int_equal(unlink(key), 0);
    expect_start_error(dir, "ca.key");
    remove_dir(dir);
    remove_dir(other);
}

static void test_start_refuses_missing_ca(void **state)
{
    expect_start_error("/nonexistent/sluice-ca", "sluice ca init");
}

/* ---- the signer process --------------------------------------------------- */

static int proc_status_field(pid_t pid, const char *field, char *value, size_t size)
{
    char path[PATH_SIZE], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int rc = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(value, size, "%.*s", (int)strcspn(v, "\n"), v);
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

static void test_signer_is_confined_process(void **state)
{
    char dir[PATH_SIZE], v[64], path[PATH_SIZE];

    new_ca(dir, NULL);
    struct tls_minter *m = start(dir);
    pid_t pid = tls_minter_signer_pid(m);
    assert_true(pid > 0);
    assert_int_not_equal(pid, getpid());
    char me[32];
    snprintf(me, sizeof me, "%d", (int)getpid());
    assert_int_equal(proc_status_field(pid, "PPid", v, sizeof v), 0);
    assert_string_equal(v, me);
    assert_int_equal(proc_status_field(pid, "Name", v, sizeof v), 0);
    assert_string_equal(v, "sluice-signer");
    assert_int_equal(proc_status_field(pid, "NoNewPrivs", v, sizeof v), 0);
    assert_string_equal(v, "1");
    assert_int_equal(proc_status_field(pid, "Seccomp", v, sizeof v), 0);
    assert_string_equal(v, "2"); /* filter mode */
    /* fds: 0-2 on /dev/null and the socket; nothing inherited. Needs the
     * right to look into a non-dumpable process (root has it). */
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        int n = 0;
        while ((e = readdir(d))) {
            char link[PATH_SIZE], target[PATH_SIZE];
            if (e->d_name[0] == '.')
                continue;
            n++;
            snprintf(link, sizeof link, "%s/%s", path, e->d_name);
            ssize_t len = readlink(link, target, sizeof target - 1);
            assert_true(len > 0);
            target[len] = '\0';
            if (strcmp(e->d_name, "3") == 0)
                assert_int_equal(strncmp(target, "socket:", 7), 0);
            else if (strcmp(e->d_name, "0") == 0 || strcmp(e->d_name, "1") == 0 ||
                     strcmp(e->d_name, "2") == 0)
                assert_string_equal(target, "/dev/null");
            else
                fail_msg("the signer holds fd %s (%s)", e->d_name, target);
        }
        closedir(d);
        assert_int_equal(n, 4);
    } else {
        assert_int_equal(errno, EACCES);
    }
    assert_true(tls_minter_signer_alive(m));
    tls_minter_stop(m);
    /* stopped and reaped */
    assert_int_equal(kill(pid, 0), -1);
    remove_dir(dir);
}

/* Reads the CA's private scalar in a child and hands it over bit-inverted,
 * so this process never holds the scalar itself. */
static void masked_ca_scalar(const char *dir, unsigned char *masked)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[ERR_SIZE];
        unsigned char s[SCALAR_BYTES];
        X509 *ca = NULL;
        EVP_PKEY *key = NULL;
        BIGNUM *bn = NULL;
        if (tls_ca_load_cert(dir, &ca, err, sizeof err) < 0 ||
            tls_ca_load_key(dir, ca, &key, err, sizeof err) < 0 ||
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &bn) != 1 ||
            BN_bn2binpad(bn, s, SCALAR_BYTES) != SCALAR_BYTES)
            _exit(1);
        for (int i = 0; i < SCALAR_BYTES; i++)
            s[i] = (unsigned char)~s[i];
        _exit(write(fds[1], s, SCALAR_BYTES) == SCALAR_BYTES ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], masked, SCALAR_BYTES), SCALAR_BYTES);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static bool window_matches(const unsigned char *w, const unsigned char *masked)
{
    bool fwd = true, rev = true;
    for (int j = 0; j < SCALAR_BYTES && (fwd || rev); j++) {
        fwd = fwd && (unsigned char)(w[j] ^ masked[j]) == 0xff;
        rev = rev && (unsigned char)(w[j] ^ masked[SCALAR_BYTES - 1 - j]) == 0xff;
    }
    return fwd || rev;
}

/* Whether this process's readable memory holds the scalar, big-endian (as
 * in DER) or little-endian (as in BIGNUM limbs). Reads through
 * /proc/self/mem so sanitizers see no wild reads. */
static bool memory_holds_scalar(const unsigned char *masked)
{
    static unsigned char buf[SCAN_CHUNK + SCALAR_BYTES];
    char line[512], perms[8];
    unsigned long lo, hi;
    bool found = false;
    FILE *maps = fopen("/proc/self/maps", "r");
    int mem = open("/proc/self/mem", O_RDONLY);
    assert_non_null(maps);
    assert_true(mem >= 0);
    while (!found && fgets(line, sizeof line, maps)) {
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r' ||
            hi - lo > SCAN_MAX_REGION || strstr(line, "[vvar") || strstr(line, "[vsyscall]"))
            continue;
        for (unsigned long off = lo; off < hi && !found; off += SCAN_CHUNK) {
            size_t want = hi - off < sizeof buf ? hi - off : sizeof buf;
            ssize_t n = pread(mem, buf, want, (off_t)off);
            if (n < SCALAR_BYTES)
                break;
            for (ssize_t i = 0; i + SCALAR_BYTES <= n; i++)
                if (window_matches(buf + i, masked)) {
                    found = true;
                    break;
                }
        }
    }
    fclose(maps);
    close(mem);
    return found;
}

static void make_ca_in_child(char *dir)
{
    make_dir(dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[ERR_SIZE];
        _exit(tls_ca_init(dir, NULL, err, sizeof err) == 0 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The CA key is read by the signer only: after start and a mint, the
 * scalar is nowhere in this process. The same scan finds it once this
 * process loads the key itself, so the scan can see what it looks for. */
static void test_parent_never_holds_ca_key(void **state)
{
    char dir[PATH_SIZE], err[ERR_SIZE];
    unsigned char masked[SCALAR_BYTES];
    SSL_CTX *ctx;

    make_ca_in_child(dir);
    masked_ca_scalar(dir, masked);
    struct tls_minter *m = start(dir);
    mint_leaf(m, "scan.example", &ctx);
    assert_false(memory_holds_scalar(masked));

    X509 *ca = ca_cert(dir);
    EVP_PKEY *key = NULL;
    assert_int_equal(tls_ca_load_key(dir, ca, &key, err, sizeof err), 0);
    assert_true(memory_holds_scalar(masked));
    EVP_PKEY_free(key);
    X509_free(ca);
    SSL_CTX_free(ctx);
    tls_minter_stop(m);
    remove_dir(dir);
}

static void test_killed_signer_fails_cleanly(void **state)
{
    char dir[PATH_SIZE], err[ERR_SIZE] = "";
    SSL_CTX *cached, *again;
    struct tls_minter_stats st;

    new_ca(dir, NULL);
    struct tls_minter *m = start(dir);
    X509 *leaf = mint_leaf(m, "before.example", &cached);
    assert_int_equal(kill(tls_minter_signer_pid(m), SIGKILL), 0);

    struct host h = host_of("after.example");
    time_t t0 = time(NULL);
    assert_null(tls_minter_ctx_for(m, &h, err, sizeof err));
    assert_true(time(NULL) - t0 <= 2); /* no hang */
    assert_non_null(strstr(err, "signer"));
    assert_non_null(strstr(err, "signal 9"));
    assert_false(tls_minter_signer_alive(m));
    /* later calls fail at once too */
    assert_null(tls_minter_ctx_for(m, &h, err, sizeof err));
    /* what is cached is still served */
    X509 *leaf2 = mint_leaf(m, "before.example", &again);
    assert_int_equal(X509_cmp(leaf, leaf2), 0);
    tls_minter_get_stats(m, &st);
    assert_int_equal(st.failures, 2);
    SSL_CTX_free(cached);
    SSL_CTX_free(again);
    tls_minter_stop(m);
    remove_dir(dir);
}

/* The signer dies with its parent (PR_SET_PDEATHSIG): a helper process
 * starts a minter and is killed; the signer, reparented to this process
 * (a subreaper for the test), is seen to die by SIGKILL. A second child of
 * the helper keeps the signer's socket open, so the signer cannot simply
 * see end of stream and exit by itself. */
static void test_signer_dies_with_parent(void **state)
{
    char dir[PATH_SIZE];
    int fds[2];
    pid_t pids[2] = {0, 0}; /* signer, socket holder */

    new_ca(dir, NULL);
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    assert_int_equal(pipe(fds), 0);
    pid_t helper = fork();
    assert_true(helper >= 0);
    if (helper == 0) {
        char err[ERR_SIZE];
        struct tls_minter *m = tls_minter_start(dir, err, sizeof err);
        pids[0] = m ? tls_minter_signer_pid(m) : 0;
        pids[1] = fork();
        if (pids[1] == 0)
            for (;;)
                pause();
        if (write(fds[1], pids, sizeof pids) != sizeof pids)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], pids, sizeof pids), sizeof pids);
    close(fds[0]);
    assert_true(pids[0] > 0 && pids[1] > 0);
    assert_int_equal(kill(helper, SIGKILL), 0);
    assert_int_equal(waitpid(helper, NULL, 0), helper);

    int status = 0;
    pid_t r = 0;
    for (int i = 0; i < 300 && r == 0; i++) {
        r = waitpid(pids[0], &status, WNOHANG);
        if (r == 0)
            usleep(10000);
    }
    assert_int_equal(kill(pids[1], SIGKILL), 0);
    assert_int_equal(waitpid(pids[1], NULL, 0), pids[1]);
    assert_int_equal(r, pids[0]);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
    remove_dir(dir);
}

/* A worker that is not the proxy's own code (a compromised one) could ask
 * for anything; the signer signs canonical hosts only. */
static void test_signer_refuses_non_canonical_hosts(void **state)
{
    static const struct {
        enum host_kind kind;
        const char *text;
    } bad[] = {
        {HOST_KIND_NAME, "*.example.com"},
        {HOST_KIND_NAME, "Example.com"},
        {HOST_KIND_NAME, "example.com."},
        {HOST_KIND_NAME, "a b.example"},
        {HOST_KIND_NAME, "192.0.2.1"},
        {HOST_KIND_IPV4, "example.com"},
        {HOST_KIND_IPV6, "192.0.2.1"},
        {HOST_KIND_IPV4, "0x7f.1"},
        {HOST_KIND_NAME, ""},
    };
    char dir[PATH_SIZE], err[ERR_SIZE];
    new_ca(dir, NULL);
    struct tls_minter *m = start(dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct host h;
        memset(&h, 0, sizeof h);
        h.kind = bad[i].kind;
        h.len = strlen(bad[i].text);
        memcpy(h.text, bad[i].text, h.len);
        err[0] = '\0';
        assert_null(tls_minter_ctx_for(m, &h, err, sizeof err));
        if (!strstr(err, "not a canonical host") && !strstr(err, "length"))
            fail_msg("%s: %s", bad[i].text, err);
    }
    /* and it keeps serving */
    SSL_CTX *ctx;
    mint_leaf(m, "fine.example", &ctx);
    SSL_CTX_free(ctx);
    assert_true(tls_minter_signer_alive(m));
    tls_minter_stop(m);
    remove_dir(dir);
}

static void test_ca_pem_is_the_ca(void **state)
{
    char dir[PATH_SIZE];
    new_ca(dir, NULL);
    X509 *ca = ca_cert(dir);
    struct tls_minter *m = start(dir);
    const char *pem = tls_minter_ca_pem(m);
    assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----"));
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    assert_non_null(x);
    assert_int_equal(X509_cmp(x, ca), 0);
    X509_free(x);
    BIO_free(bio);
    tls_minter_stop(m);
    X509_free(ca);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leaf_for_name),
        cmocka_unit_test(test_leaf_for_ipv4),
        cmocka_unit_test(test_leaf_for_ipv6),
        cmocka_unit_test(test_long_name_truncates_cn_only),
        cmocka_unit_test(test_serials_differ_and_leaf_key_is_shared),
        cmocka_unit_test(test_validity_capped_at_ca_end),
        cmocka_unit_test(test_name_constraints_bind_leaves),
        cmocka_unit_test(test_cache_hit_returns_same_certificate),
        cmocka_unit_test(test_lru_evicts_least_recently_used),
        cmocka_unit_test(test_default_cache_bound),
        cmocka_unit_test(test_threads_share_the_cache),
        cmocka_unit_test(test_handshake_alpn_and_chain),
        cmocka_unit_test(test_session_resumption),
        cmocka_unit_test(test_start_refuses_unsafe_key),
        cmocka_unit_test(test_start_refuses_missing_ca),
        cmocka_unit_test(test_signer_is_confined_process),
        cmocka_unit_test(test_parent_never_holds_ca_key),
        cmocka_unit_test(test_killed_signer_fails_cleanly),
        cmocka_unit_test(test_signer_dies_with_parent),
        cmocka_unit_test(test_signer_refuses_non_canonical_hosts),
        cmocka_unit_test(test_ca_pem_is_the_ca),
    };
    return cmocka_run_group_tests_name("tls_mint", tests, NULL, NULL);
}
