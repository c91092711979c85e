/* clienthello: find the server name (SNI) in a TLS ClientHello. */
#ifndef SLUICE_TLS_CLIENTHELLO_H
#define SLUICE_TLS_CLIENTHELLO_H

#include <stddef.h>
#include <stdint.h>

/* A TLS record carries at most 2^14 bytes of plaintext (RFC 8446 §5.1). */
#define TLS_HELLO_MAX_RECORD 16384
#define TLS_HELLO_MAX_BYTES (TLS_HELLO_MAX_RECORD + 5)

enum tls_hello_result {
    TLS_HELLO_SNI = 1,        /* out holds the server name (not yet canonical) */
    TLS_HELLO_NO_SNI = 2,     /* a well-formed ClientHello without a server name */
    TLS_HELLO_NEED_MORE = 0,  /* the first record is not complete yet */
    TLS_HELLO_MALFORMED = -1, /* not a ClientHello, or a malformed one */
};

/* Parses the first TLS record in buf. Returns an enum tls_hello_result. */
int tls_clienthello_sni(const uint8_t *buf, size_t len, char *out, size_t out_size);

#endif
