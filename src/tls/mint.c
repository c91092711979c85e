/* mint: SSL_CTX per intercepted host, with a bounded LRU cache.
 *
 * Minting costs a round trip to the signer plus an SSL_CTX; a cache hit costs
 * a hash lookup under a mutex. Signing happens outside the cache lock, so
 * hits never wait behind a mint; two threads missing the same host both sign
 * and the later one replaces the earlier entry, which is harmless. Each host
 * has its own SSL_CTX, so session ids and tickets issued for one host cannot
 * resume a session for another. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "policy/host.h"
#include "tls/ca.h"
#include "tls/mint.h"
#include "tls/signer.h"

#define MINT_MIN_BUCKETS 16
#define MINT_ALPN "http/1.1"
#define MINT_ALPN_LEN 8
#define MINT_FNV_OFFSET 14695981039346656037ULL
#define MINT_FNV_PRIME 1099511628211ULL

struct mint_entry {
    struct mint_entry *prev, *next; /* LRU list, most recent first */
    struct mint_entry *chain;       /* hash bucket */
    uint64_t hash;
    enum host_kind kind;
    size_t len;
    char text[HOST_TEXT_SIZE];
    SSL_CTX *ctx;
    time_t refresh_at; /* mint again from here on, before the leaf expires */
};

struct tls_minter {
    struct tls_signer *signer;
    X509 *ca;
    EVP_PKEY *leaf_key;
    char *ca_pem;
    pthread_mutex_t lock;  /* everything below */
    struct mint_entry lru; /* sentinel */
    struct mint_entry **buckets;
    size_t n_buckets; /* power of two */
    size_t n, max;
    struct tls_minter_stats stats;
};

/* ---- the cache ------------------------------------------------------------ */

static uint64_t host_hash(const struct host *h)
{
    uint64_t x = MINT_FNV_OFFSET;
    x = (x ^ (uint64_t)h->kind) * MINT_FNV_PRIME;
    for (size_t i = 0; i < h->len; i++)
        x = (x ^ (unsigned char)h->text[i]) * MINT_FNV_PRIME;
    return x;
}

static struct mint_entry **bucket(struct tls_minter *m, uint64_t hash)
{
    return &m->buckets[hash & (m->n_buckets - 1)];
}

static struct mint_entry *lookup(struct tls_minter *m, const struct host *h, uint64_t hash)
{
    for (struct mint_entry *e = *bucket(m, hash); e; e = e->chain)
        if (e->hash == hash && e->kind == h->kind && e->len == h->len &&
            memcmp(e->text, h->text, h->len) == 0)
            return e;
    return NULL;
}

static void lru_unlink(struct mint_entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_push_front(struct tls_minter *m, struct mint_entry *e)
{
    e->next = m->lru.next;
    e->prev = &m->lru;
    m->lru.next->prev = e;
    m->lru.next = e;
}

static void chain_unlink(struct tls_minter *m, struct mint_entry *e)
{
    struct mint_entry **pp = bucket(m, e->hash);
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
}

/* Removes least recently used entries beyond max onto *dead (linked by
 * chain), to be freed after the lock is released. */
static void evict(struct tls_minter *m, struct mint_entry **dead)
{
    while (m->n > m->max) {
        struct mint_entry *e = m->lru.prev;
        lru_unlink(e);
        chain_unlink(m, e);
        m->n--;
        m->stats.evicted++;
        e->chain = *dead;
        *dead = e;
    }
}

static void free_entries(struct mint_entry *e)
{
    while (e) {
        struct mint_entry *next = e->chain;
        SSL_CTX_free(e->ctx);
        free(e);
        e = next;
    }
}

static size_t buckets_for(size_t max)
{
    size_t n = MINT_MIN_BUCKETS;
    while (n < max)
        n <<= 1;
    return n;
}

/* Rebuilds the bucket array for max entries (load factor at most 1). */
static int rehash(struct tls_minter *m, size_t max)
{
    size_t n = buckets_for(max);
    struct mint_entry **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
    for (struct mint_entry *e = m->lru.next; e != &m->lru; e = e->next) {
        e->chain = *bucket(m, e->hash);
        *bucket(m, e->hash) = e;
    }
    return 0;
}

int tls_minter_set_cache_max(struct tls_minter *m, size_t max)
{
    struct mint_entry *dead = NULL;
    int rc = -1;
    if (max < 1 || max > TLS_MINTER_CACHE_LIMIT)
        return -1;
    pthread_mutex_lock(&m->lock);
    m->max = max;
    evict(m, &dead);
    if (rehash(m, max) == 0)
        rc = 0; /* on failure the old, larger array still works */
    pthread_mutex_unlock(&m->lock);
    free_entries(dead);
    return rc;
}

/* ---- building a context ---------------------------------------------------- */

/* Only http/1.1 is spoken inside the tunnel; a client offering only h2 gets
 * no ALPN answer and may fall back to HTTP/1.1 or give up. */
static int select_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                         const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int n = in[i];
        if (n > inlen - i - 1)
            break;
        if (n == MINT_ALPN_LEN && memcmp(in + i + 1, MINT_ALPN, MINT_ALPN_LEN) == 0) {
            *out = in + i + 1;
            *outlen = MINT_ALPN_LEN;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *make_ctx(struct tls_minter *m, const struct host *h, X509 *leaf, char *err,
                         size_t err_size)
{
    unsigned char sid_ctx[SSL_MAX_SID_CTX_LENGTH];
    unsigned int sid_len = 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    /* A session id context per host: a session is resumed only by the host
     * it was made for. SHA-256 is exactly SSL_MAX_SID_CTX_LENGTH bytes. */
    if (!ctx || EVP_Digest(h->text, h->len, sid_ctx, &sid_len, EVP_sha256(), NULL) != 1 ||
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, m->leaf_key) != 1 ||
        SSL_CTX_add1_chain_cert(ctx, m->ca) != 1 ||
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sid_len) != 1) {
        SSL_CTX_free(ctx);
        tls_error_ssl(err, err_size, "server TLS context");
        return NULL;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, TLS_MINTER_SESSIONS_PER_HOST);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_alpn_select_cb(ctx, select_http11, NULL);
    return ctx;
}

/* The signer is trusted to build the certificate right, but a mix-up (or a
 * bug) must not put another host's certificate in front of a client. */
static int leaf_matches(const struct host *h, X509 *leaf)
{
    if (h->kind == HOST_KIND_NAME)
        return X509_check_host(leaf, h->text, h->len, X509_CHECK_FLAG_NO_WILDCARDS, NULL) == 1;
    return X509_check_ip_asc(leaf, h->text, 0) == 1;
}

/* Mints outside the lock; returns the new context and its refresh time. */
static SSL_CTX *mint(struct tls_minter *m, const struct host *h, time_t *refresh_at, char *err,
                     size_t err_size)
{
    X509 *leaf = NULL;
    time_t now = time(NULL), not_after = now;

    if (tls_signer_sign(m->signer, h, &leaf, err, err_size) < 0)
        return NULL;
    SSL_CTX *ctx = NULL;
    if (!leaf_matches(h, leaf) || tls_not_after(leaf, &not_after) < 0)
        tls_error(err, err_size, "the signer's certificate does not match %s", h->text);
    else
        ctx = make_ctx(m, h, leaf, err, err_size);
    X509_free(leaf);
    /* Refreshed at half its remaining life: 15 days for a normal leaf,
     * sooner (and again and again) as the CA nears its end. */
    *refresh_at = now + (not_after - now) / 2;
    return ctx;
}

/* Puts ctx in the cache for h (replacing a concurrent mint for the same
 * host); frees what was displaced after the lock is released. */
static void cache_put(struct tls_minter *m, const struct host *h, uint64_t hash, SSL_CTX *ctx,
                      time_t refresh_at)
{
    struct mint_entry *fresh = malloc(sizeof *fresh);
    struct mint_entry *dead = NULL;
    SSL_CTX *old = NULL;

    if (fresh && SSL_CTX_up_ref(ctx) != 1) {
        free(fresh);
        fresh = NULL;
    }
    pthread_mutex_lock(&m->lock);
    m->stats.minted++;
    struct mint_entry *e = lookup(m, h, hash);
    if (e && fresh) {
        old = e->ctx;
        e->ctx = ctx;
        e->refresh_at = refresh_at;
        lru_unlink(e);
        lru_push_front(m, e);
        free(fresh);
    } else if (fresh) {
        fresh->hash = hash;
        fresh->kind = h->kind;
        fresh->len = h->len;
        memcpy(fresh->text, h->text, h->len);
        fresh->ctx = ctx;
        fresh->refresh_at = refresh_at;
        fresh->chain = *bucket(m, hash);
        *bucket(m, hash) = fresh;
        lru_push_front(m, fresh);
        m->n++;
        evict(m, &dead);
    }
    pthread_mutex_unlock(&m->lock);
    SSL_CTX_free(old);
    free_entries(dead);
}

SSL_CTX *tls_minter_ctx_for(struct tls_minter *m, const struct host *h, char *err, size_t err_size)
{
    uint64_t hash = host_hash(h);
    time_t refresh_at = 0;

    pthread_mutex_lock(&m->lock);
    struct mint_entry *e = lookup(m, h, hash);
    if (e && time(NULL) < e->refresh_at) {
        SSL_CTX *ctx = e->ctx;
        SSL_CTX_up_ref(ctx);
        lru_unlink(e);
        lru_push_front(m, e);
        m->stats.hits++;
        pthread_mutex_unlock(&m->lock);
        return ctx;
    }
    pthread_mutex_unlock(&m->lock);

    SSL_CTX *ctx = mint(m, h, &refresh_at, err, err_size);
    if (!ctx) {
        pthread_mutex_lock(&m->lock);
        m->stats.failures++;
        pthread_mutex_unlock(&m->lock);
        return NULL;
    }
    cache_put(m, h, hash, ctx, refresh_at);
    return ctx; /* the caller's reference; the cache holds its own */
}

/* ---- start and stop -------------------------------------------------------- */

static char *cert_pem(X509 *cert)
{
    BUF_MEM *bm = NULL;
    BIO *mem = BIO_new(BIO_s_mem());
    char *pem = NULL;
    if (mem && PEM_write_bio_X509(mem, cert) == 1 && BIO_get_mem_ptr(mem, &bm) == 1 &&
        (pem = malloc(bm->length + 1))) {
        memcpy(pem, bm->data, bm->length);
        pem[bm->length] = '\0';
    }
    BIO_free(mem);
    return pem;
}

struct tls_minter *tls_minter_start(const char *ca_dir, char *err, size_t err_size)
{
    struct tls_minter *m = calloc(1, sizeof *m);
    if (!m || pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        tls_error(err, err_size, "out of memory");
        return NULL;
    }
    m->lru.next = m->lru.prev = &m->lru;
    m->max = TLS_MINTER_CACHE_DEFAULT;
    if (rehash(m, m->max) < 0) {
        tls_error(err, err_size, "out of memory");
        goto fail;
    }
    if (tls_ca_load_cert(ca_dir, &m->ca, err, err_size) < 0)
        goto fail;
    if (!(m->ca_pem = cert_pem(m->ca))) {
        tls_error_ssl(err, err_size, "encoding the CA certificate");
        goto fail;
    }
    m->leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!m->leaf_key) {
        tls_error_ssl(err, err_size, "generating the leaf key");
        goto fail;
    }
    m->signer = tls_signer_start(ca_dir, m->ca, m->leaf_key, err, err_size);
    if (!m->signer)
        goto fail;
    return m;
fail:
    tls_minter_stop(m);
    return NULL;
}

const char *tls_minter_ca_pem(const struct tls_minter *m)
{
    return m->ca_pem;
}

void tls_minter_get_stats(struct tls_minter *m, struct tls_minter_stats *out)
{
    pthread_mutex_lock(&m->lock);
    *out = m->stats;
    out->cached = m->n;
    pthread_mutex_unlock(&m->lock);
}

bool tls_minter_signer_alive(struct tls_minter *m)
{
    return tls_signer_alive(m->signer);
}

pid_t tls_minter_signer_pid(const struct tls_minter *m)
{
    return tls_signer_pid(m->signer);
}

void tls_minter_stop(struct tls_minter *m)
{
    if (!m)
        return;
    tls_signer_stop(m->signer);
    struct mint_entry *e = m->lru.next;
    while (e && e != &m->lru) {
        struct mint_entry *next = e->next;
        SSL_CTX_free(e->ctx);
        free(e);
        e = next;
    }
    free(m->buckets);
    X509_free(m->ca);
    EVP_PKEY_free(m->leaf_key);
    free(m->ca_pem);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
