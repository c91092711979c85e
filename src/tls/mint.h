/* mint: per-host server certificates for intercepted TLS, cached.
 *
 * Every intercepted host gets a leaf certificate for the one shared ECDSA
 * P-256 leaf key, signed by the internal CA in a separate signer process
 * (signer.h) that alone holds the CA key. The proxy asks for an SSL_CTX per
 * canonical host; a bounded LRU cache keeps the most recent ones. */
#ifndef SLUICE_TLS_MINT_H
#define SLUICE_TLS_MINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#define TLS_MINTER_CACHE_DEFAULT 1000
#define TLS_MINTER_CACHE_LIMIT 1000000
/* Sessions kept per host for resumption by session id (TLS 1.2). */
#define TLS_MINTER_SESSIONS_PER_HOST 256

struct host; /* policy/host.h */
struct tls_minter;

/* Loads DIR/ca.pem, generates the shared leaf key, and forks the signer,
 * which reads DIR/ca.key itself (the calling process never holds the CA key
 * at all), checks its mode and that it matches the certificate, confines
 * itself and reports ready. Call it before starting threads, from the
 * main thread: the signer dies when the thread that forked it exits. */
struct tls_minter *tls_minter_start(const char *ca_dir, char *err, size_t err_size);
/* A server SSL_CTX for this canonical host whose leaf is freshly minted or
 * cached: SAN exactly that host, random 128-bit serial, EKU serverAuth,
 * CA:FALSE, keyUsage digitalSignature, AKI/SKI, valid from an hour ago until
 * min(now + 30 days, the CA's notAfter). TLS 1.2 minimum, ALPN "http/1.1"
 * only, session cache and tickets, chain leaf + CA. Thread-safe. Returns a
 * new reference (SSL_CTX_free it), or NULL with err. */
SSL_CTX *tls_minter_ctx_for(struct tls_minter *m, const struct host *h, char *err, size_t err_size);
/* The CA certificate in PEM, for logs / status / building trust bundles. */
const char *tls_minter_ca_pem(const struct tls_minter *m);
/* Stops the signer (SIGTERM + waitpid) and frees the cache. */
void tls_minter_stop(struct tls_minter *m);

/* Added by the TLS module (not in the first draft of this header): */

/* Changes the cache bound (1..TLS_MINTER_CACHE_LIMIT), evicting the least
 * recently used hosts beyond it. */
int tls_minter_set_cache_max(struct tls_minter *m, size_t max);

struct tls_minter_stats {
    uint64_t hits;     /* served from the cache */
    uint64_t minted;   /* certificates signed */
    uint64_t failures; /* tls_minter_ctx_for calls that returned NULL */
    uint64_t evicted;
    size_t cached;
};
void tls_minter_get_stats(struct tls_minter *m, struct tls_minter_stats *out);

/* Whether the signer is still running; once it is gone, only cached hosts
 * can be intercepted (for /readyz and status). */
bool tls_minter_signer_alive(struct tls_minter *m);
pid_t tls_minter_signer_pid(const struct tls_minter *m);

#endif
