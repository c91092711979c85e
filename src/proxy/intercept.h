/* intercept: TLS interception of allowed CONNECTs with minted certificates. */
#ifndef SLUICE_PROXY_INTERCEPT_H
#define SLUICE_PROXY_INTERCEPT_H

#include <stdbool.h>
#include <stddef.h>

#include "http/head.h"

struct conn;

/* ca_dir NULL: no minting (interception unavailable); upstream_ca NULL: the
 * system roots verify upstreams. */
int intercept_init(const char *ca_dir, const char *upstream_ca, char *err, size_t err_size);
void intercept_shutdown(void);
bool intercept_available(void);

/* The upstream TCP connection is up: verify it with TLS, then the client. */
void intercept_upstream_connected(struct conn *c);
/* A request read inside an intercepted tunnel. */
void intercept_handle_request(struct conn *c, const char *head, size_t head_len,
                              const struct http_request *req);
/* After a genuine 101 inside the tunnel: relay both TLS streams. */
void intercept_relay_start(struct conn *c);

#endif
