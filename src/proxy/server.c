/* server: worker threads, listeners, the live policy and client limits. */
#include <errno.h>
#include <fcntl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "policy/policy.h"
#include "proxy/conn.h"
#include "proxy/proxy.h"

#define MAX_WORKERS 64
#define LIMITS_BUCKETS 4096
#define ACCEPT_RETRY_MS 100
#define HOUSEKEEPING_MS 100

static struct worker workers[MAX_WORKERS];
static int n_workers;
static struct proxy_config config;
static atomic_bool running;

static pthread_mutex_t policy_lock = PTHREAD_MUTEX_INITIALIZER;
static struct policy *live_policy;

void proxy_config_defaults(struct proxy_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    struct sockaddr_in *sin = (struct sockaddr_in *)&cfg->listen;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(8080);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cfg->listen_len = sizeof *sin;
    cfg->listen_fd = -1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = cpus > 0 && cpus < MAX_WORKERS ? (int)cpus : 1;
    cfg->header_timeout_s = 20;
    cfg->idle_timeout_s = 300;
    cfg->connect_timeout_s = 10;
    cfg->drain_timeout_s = 10;
    cfg->max_conns = 10000;
    cfg->max_conns_per_client = 512;
    cfg->max_tunnels_per_client = 256;
    cfg->mark = PROXY_DEFAULT_MARK;
}

struct policy *proxy_policy_get(void)
{
    pthread_mutex_lock(&policy_lock);
    struct policy *p = live_policy ? policy_ref(live_policy) : NULL;
    pthread_mutex_unlock(&policy_lock);
    return p;
}

struct policy *proxy_policy_for(const struct sockaddr *client)
{
    pthread_mutex_lock(&policy_lock);
    struct policy *p = live_policy ? policy_ref(policy_select(live_policy, client)) : NULL;
    pthread_mutex_unlock(&policy_lock);
    return p;
}

void proxy_policy_set(struct policy *p)
{
    pthread_mutex_lock(&policy_lock);
    struct policy *old = live_policy;
    live_policy = p;
    pthread_mutex_unlock(&policy_lock);
    /* Answers "for this run" hold until the policy changes. */
    approval_forget();
    if (old)
        policy_unref(old);
}

/* Per-client counters: a fixed hash table of address keys under one lock,
 * touched only at accept, close and CONNECT (never per byte). */
enum slot_state {
    SLOT_EMPTY,
    SLOT_USED,
    SLOT_DELETED, /* keeps probe chains intact */
};

struct client_slot {
    struct in6_addr key; /* IPv4 stored mapped */
    int conns;
    int tunnels;
    enum slot_state state;
};

static struct client_slot client_slots[LIMITS_BUCKETS];
static pthread_mutex_t limits_lock = PTHREAD_MUTEX_INITIALIZER;
static int total_conns;

static void client_key(const struct sockaddr_storage *ss, struct in6_addr *key)
{
    memset(key, 0, sizeof *key);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        key->s6_addr[10] = 0xff;
        key->s6_addr[11] = 0xff;
        memcpy(&key->s6_addr[12], &sin->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        *key = ((const struct sockaddr_in6 *)ss)->sin6_addr;
    }
}

/* Linear probing with tombstones. Returns NULL when the key is absent (and
 * create is false) or the table is full, which counts as over the limit. */
static struct client_slot *client_slot(const struct sockaddr_storage *ss, bool create)
{
    struct in6_addr key;
    client_key(ss, &key);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < 16; i++)
        h = (h ^ key.s6_addr[i]) * 16777619u;
    struct client_slot *free_slot = NULL;
    for (size_t probe = 0; probe < LIMITS_BUCKETS; probe++) {
        struct client_slot *s = &client_slots[(h + probe) % LIMITS_BUCKETS];
        if (s->state == SLOT_USED && memcmp(&s->key, &key, sizeof key) == 0)
            return s;
        if (s->state == SLOT_DELETED && free_slot == NULL)
            free_slot = s;
        if (s->state == SLOT_EMPTY) {
            if (free_slot == NULL)
                free_slot = s;
            break;
        }
    }
    if (!create || free_slot == NULL)
        return NULL;
    free_slot->state = SLOT_USED;
    free_slot->key = key;
    free_slot->conns = 0;
    free_slot->tunnels = 0;
    return free_slot;
}

static void client_slot_release(struct client_slot *s)
{
    if (s->conns == 0 && s->tunnels == 0)
        s->state = SLOT_DELETED;
}

bool limits_client_enter(const struct sockaddr_storage *addr, int max_per_client)
{
    pthread_mutex_lock(&limits_lock);
    struct client_slot *s = client_slot(addr, true);
    bool ok = s != NULL && s->conns < max_per_client;
    if (ok)
        s->conns++;
    pthread_mutex_unlock(&limits_lock);
    return ok;
}

void limits_client_leave(const struct sockaddr_storage *addr)
{
    pthread_mutex_lock(&limits_lock);
    struct client_slot *s = client_slot(addr, false);
    if (s && s->conns > 0) {
        s->conns--;
        client_slot_release(s);
    }
    pthread_mutex_unlock(&limits_lock);
}

bool limits_tunnel_enter(const struct sockaddr_storage *addr, int max_per_client)
{
    pthread_mutex_lock(&limits_lock);
    struct client_slot *s = client_slot(addr, true);
    bool ok = s != NULL && s->tunnels < max_per_client;
    if (ok)
        s->tunnels++;
    pthread_mutex_unlock(&limits_lock);
    return ok;
}

void limits_tunnel_leave(const struct sockaddr_storage *addr)
{
    pthread_mutex_lock(&limits_lock);
    struct client_slot *s = client_slot(addr, false);
    if (s && s->tunnels > 0) {
        s->tunnels--;
        client_slot_release(s);
    }
    pthread_mutex_unlock(&limits_lock);
}

bool limits_total_enter(int max_total)
{
    pthread_mutex_lock(&limits_lock);
    bool ok = total_conns < max_total;
    if (ok)
        total_conns++;
    pthread_mutex_unlock(&limits_lock);
    return ok;
}

void limits_total_leave(void)
{
    pthread_mutex_lock(&limits_lock);
    if (total_conns > 0)
        total_conns--;
    pthread_mutex_unlock(&limits_lock);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct worker *w = arg;
    conn_accept(w, fd, sa, (socklen_t)len);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (!w->draining)
        evconnlistener_enable(w->listener);
}

/* Out of descriptors: stop accepting for a moment instead of spinning on
 * a listener that stays readable, and serve the connections we have. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct worker *w = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        evconnlistener_disable(l);
        metrics_add(&metrics.accept_paused, 1);
        struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};
        evtimer_add(w->accept_retry, &tv);
    }
}

static void on_housekeeping(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    log_flush();
    if (w->draining && w->conns == NULL)
        event_base_loopbreak(w->base);
}

/* SO_REUSEPORT would let a second sluice (or anything of ours) share the
 * port silently and take half the traffic: probe with a plain bind first. */
static int check_port_free(const struct proxy_config *cfg, char *err, size_t err_size)
{
    int fd = socket(cfg->listen.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_size, "proxy listener: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc = bind(fd, (const struct sockaddr *)&cfg->listen, cfg->listen_len);
    int saved = errno;
    close(fd);
    if (rc < 0) {
        snprintf(err, err_size, "proxy listener: cannot listen there: %s", strerror(saved));
        return -1;
    }
    return 0;
}

/* Setting SO_MARK needs CAP_NET_ADMIN (or CAP_NET_RAW on recent kernels).
 * Without it sluice still works, unmarked, and says so: the kernel rules
 * must then recognise it by its UID, which is weaker (docs/ENFORCE.md). */
static void check_mark(struct proxy_config *cfg)
{
    if (cfg->mark == 0)
        return;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (setsockopt(fd, SOL_SOCKET, SO_MARK, &cfg->mark, sizeof cfg->mark) < 0) {
        log_message("warning", "upstream connections are not marked (SO_MARK)", strerror(errno));
        cfg->mark = 0;
    }
    close(fd);
}

static int open_listener(const struct proxy_config *cfg, char *err, size_t err_size)
{
    if (cfg->listen_fd >= 0) {
        /* Each worker's listener closes its own copy when freed. */
        int dup = fcntl(cfg->listen_fd, F_DUPFD_CLOEXEC, 0);
        if (dup < 0)
            snprintf(err, err_size, "proxy listener: %s", strerror(errno));
        return dup;
    }
    int fd = socket(cfg->listen.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)&cfg->listen, cfg->listen_len) < 0)
        goto fail;
    if (listen(fd, 4096) < 0)
        goto fail;
    return fd;
fail:
    snprintf(err, err_size, "proxy listener: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

static int worker_init(struct worker *w, int id, char *err, size_t err_size)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->cfg = &config;
    /* No EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST: it loses events when a
     * closed descriptor's number is reused within one loop iteration, which
     * a busy proxy does all the time. */
    w->base = event_base_new();
    if (w->base == NULL) {
        snprintf(err, err_size, "event loop: out of memory");
        return -1;
    }
    w->dns = evdns_base_new(w->base, 0);
    const struct policy_dns *pd = NULL;
    struct policy *p = proxy_policy_get();
    if (p)
        pd = policy_dns(p);
    int rc = 0;
    if (pd && pd->n_upstream > 0) {
        for (size_t i = 0; i < pd->n_upstream && rc == 0; i++)
            rc = evdns_base_nameserver_ip_add(w->dns, pd->upstream[i]);
    } else {
        rc = evdns_base_resolv_conf_parse(w->dns, DNS_OPTIONS_ALL, "/etc/resolv.conf");
    }
    if (p)
        policy_unref(p);
    if (rc != 0 || evdns_base_count_nameservers(w->dns) == 0) {
        snprintf(err, err_size, "resolver: no usable nameserver (policy dns.upstream or /etc/resolv.conf)");
        return -1;
    }
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", config.connect_timeout_s > 5 ? 5 : config.connect_timeout_s);
    evdns_base_set_option(w->dns, "timeout:", timeout);
    evdns_base_set_option(w->dns, "attempts:", "2");
    evdns_base_set_option(w->dns, "randomize-case:", "0");

    w->listen_fd = open_listener(&config, err, err_size);
    if (w->listen_fd < 0)
        return -1;
    w->listener = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, -1,
                                     w->listen_fd);
    if (w->listener == NULL) {
        snprintf(err, err_size, "proxy listener: cannot watch socket");
        return -1;
    }
    evconnlistener_set_error_cb(w->listener, on_accept_error);
    w->accept_retry = evtimer_new(w->base, on_accept_retry, w);
    w->housekeeping = event_new(w->base, -1, EV_PERSIST, on_housekeeping, w);
    struct timeval tv = {0, HOUSEKEEPING_MS * 1000};
    evtimer_add(w->housekeeping, &tv);
    return 0;
}

static void worker_free(struct worker *w)
{
    while (w->conns)
        conn_close(w->conns, "shutdown");
    if (w->listener)
        evconnlistener_free(w->listener);
    if (w->accept_retry)
        event_free(w->accept_retry);
    if (w->housekeeping)
        event_free(w->housekeeping);
    if (w->dns)
        evdns_base_free(w->dns, 1);
    log_flush();
    if (w->base)
        event_base_free(w->base);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    worker_free(w);
    return NULL;
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    while (w->conns)
        conn_close(w->conns, "shutdown: drain timeout");
    event_base_loopbreak(w->base);
}

/* Runs on the worker's own loop: stop accepting, close idle keep-alive
 * connections, let the rest finish until the deadline. */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    w->draining = true;
    evconnlistener_disable(w->listener);
    for (struct conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_READ_HEAD || c->state == CONN_WAITING)
            conn_close(c, "shutdown");
    }
    /* Nothing left to finish: stop now, not at the next housekeeping tick
     * (sluice run waits for this exit). */
    if (w->conns == NULL) {
        event_base_loopbreak(w->base);
        return;
    }
    struct timeval tv = {config.drain_timeout_s, 0};
    event_base_once(w->base, -1, EV_TIMEOUT, on_drain_deadline, w, &tv);
}

int proxy_start(const struct proxy_config *cfg, char *err, size_t err_size)
{
    config = *cfg;
    if (config.workers < 1 || config.workers > MAX_WORKERS) {
        snprintf(err, err_size, "--workers must be 1..%d", MAX_WORKERS);
        return -1;
    }
    if (evthread_use_pthreads() != 0) {
        snprintf(err, err_size, "libevent: no thread support");
        return -1;
    }
    if (config.listen_fd < 0 && check_port_free(&config, err, err_size) < 0)
        return -1;
    check_mark(&config);
    for (int i = 0; i < config.workers; i++) {
        if (worker_init(&workers[i], i, err, err_size) < 0) {
            for (int j = 0; j <= i; j++)
                worker_free(&workers[j]);
            return -1;
        }
        n_workers = i + 1;
    }
    for (int i = 0; i < n_workers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            snprintf(err, err_size, "cannot start worker thread");
            return -1;
        }
    }
    atomic_store(&running, true);
    return 0;
}

void proxy_stop(void)
{
    if (!atomic_exchange(&running, false))
        return;
    for (int i = 0; i < n_workers; i++)
        event_base_once(workers[i].base, -1, EV_TIMEOUT, on_drain, &workers[i], NULL);
    for (int i = 0; i < n_workers; i++)
        pthread_join(workers[i].thread, NULL);
    n_workers = 0;
}

bool proxy_running(void)
{
    return atomic_load(&running);
}
