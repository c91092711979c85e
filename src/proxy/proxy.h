/* proxy: the forward proxy's listeners and workers.
 *
 * Each worker is a thread with its own event loop, resolver and listener
 * socket (SO_REUSEPORT), so the kernel spreads connections and no lock sits
 * on the data path. The live policy is shared, immutable and swapped whole. */
#ifndef SLUICE_PROXY_PROXY_H
#define SLUICE_PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct policy;

#define PROXY_MAX_OWN_ADDRS 8
/* SO_MARK on upstream sockets, the same default as the DNS filter's, so the
 * kernel rules of `sluice enforce` can tell sluice's traffic apart. */
#define PROXY_DEFAULT_MARK 0x5c1ce

struct proxy_config {
    struct sockaddr_storage listen;
    socklen_t listen_len;
    /* -1: bind listen. Else an inherited listening socket (--listen fd:N)
     * that every worker watches: accept hands each connection to one. */
    int listen_fd;
    int workers;
    int header_timeout_s;  /* whole request head must arrive within this */
    int idle_timeout_s;    /* keep-alive, tunnels and upstream responses */
    int connect_timeout_s; /* upstream dial, per address */
    int drain_timeout_s;   /* SIGTERM: how long open connections may finish */
    int max_conns;
    int max_conns_per_client;
    int max_tunnels_per_client;
    unsigned int mark; /* 0: upstream sockets are not marked */
    /* sluice's own listeners (proxy, admin, DNS): never dialled (no loops). */
    struct sockaddr_storage own[PROXY_MAX_OWN_ADDRS];
    size_t n_own;
};

void proxy_config_defaults(struct proxy_config *cfg);

/* The live policy: get returns a reference the caller must unref. */
struct policy *proxy_policy_get(void);
/* Installs p (takes the reference) and releases the old one. */
void proxy_policy_set(struct policy *p);
/* The policy deciding for a client address (policy_select over the live
 * one), referenced: a connection keeps what decided it across reloads. */
struct policy *proxy_policy_for(const struct sockaddr *client);

/* Starts cfg->workers threads, each listening on cfg->listen. */
int proxy_start(const struct proxy_config *cfg, char *err, size_t err_size);
/* Stops accepting; open connections get drain_timeout_s, then are closed.
 * Returns when every worker has exited. */
void proxy_stop(void);
bool proxy_running(void);

#endif
