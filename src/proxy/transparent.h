/* transparent: connections redirected to the proxy port by nftables. */
#ifndef SLUICE_PROXY_TRANSPARENT_H
#define SLUICE_PROXY_TRANSPARENT_H

#include <stdbool.h>
#include <sys/socket.h>

#include "http/head.h"

struct conn;

/* Marks c transparent when the kernel redirected it (SO_ORIGINAL_DST
 * differs from the listener's own address) and keeps that destination. */
void transparent_detect(struct conn *c, int fd);
/* Looks at the first bytes: 1 = plain HTTP (read it as a request head),
 * 0 = wait for more, -1 = handled (a ClientHello was decided or refused). */
int transparent_read_first(struct conn *c);
/* For a redirected plain-HTTP request: origin-form target and a Host whose
 * port is the connection's; sets c->dest's host and port and fills uri. */
int transparent_check_host(struct conn *c, const struct http_request *req, struct http_uri *uri,
                           const char **why);
/* Whether ss is the address the workload connected to. */
bool transparent_address_matches(const struct conn *c, const struct sockaddr_storage *ss);

#endif
