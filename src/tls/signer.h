/* signer: the process that holds the CA private key (internal to src/tls).
 *
 * tls_signer_start forks a child that reads DIR/ca.key itself, so the key is
 * never in the caller's memory. The child confines itself (parent-death
 * signal, no new privileges, not dumpable, every other fd closed, a seccomp
 * allow-list) and then answers one kind of request over a SOCK_SEQPACKET
 * socketpair: "sign a leaf for this canonical host". It certifies only the
 * leaf public key it was started with, only for a host that is already in
 * canonical form, only as an end-entity server certificate. */
#ifndef SLUICE_TLS_SIGNER_H
#define SLUICE_TLS_SIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "policy/host.h"

#define TLS_SIGNER_TIMEOUT_MS 5000
#define TLS_SIGNER_START_TIMEOUT_MS 10000
#define TLS_LEAF_MAX_DAYS 30
#define TLS_SIGNER_MAX_DER 4096
#define TLS_SIGNER_ERROR_SIZE 256

struct tls_signer;

/* Forks the signer for the CA in ca_dir whose certificate is ca_cert,
 * certifying leaf_key's public key. Waits until the child has loaded and
 * checked the key and confined itself. The fork must happen before the
 * caller starts threads, and from a thread that lives as long as the
 * process: the parent-death signal fires when the forking thread exits. */
struct tls_signer *tls_signer_start(const char *ca_dir, X509 *ca_cert, EVP_PKEY *leaf_key,
                                    char *err, size_t err_size);
/* One round trip: a certificate for h, or -1 with err. Thread-safe (round
 * trips are serialised). After the signer died or stopped answering every
 * call fails at once. */
int tls_signer_sign(struct tls_signer *s, const struct host *h, X509 **out, char *err,
                    size_t err_size);
bool tls_signer_alive(struct tls_signer *s);
pid_t tls_signer_pid(const struct tls_signer *s);
/* Closes the socket, SIGTERM, waits (SIGKILL after a second). */
void tls_signer_stop(struct tls_signer *s);

#endif
