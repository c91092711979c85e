/* ruleset: the kernel rules of `sluice enforce`, as text.
 *
 * Pure code: a struct of options in, an nftables script (or iptables-restore
 * text) out, into a bounded buffer. No sockets, no files, no netlink; nft.c
 * and ipt.c hand the text to the kernel, the unit tests compare it with
 * golden strings. docs/ENFORCE.md explains every rule. */
#ifndef SLUICE_FW_RULESET_H
#define SLUICE_FW_RULESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/addr.h"

#define FW_TABLE "sluice"               /* table inet sluice */
#define FW_EGRESS_TABLE "sluice_egress" /* table netdev sluice_egress */
#define FW_DEFAULT_MARK 0x5c1ceu        /* same default as the DNS filter's SO_MARK */
#define FW_DEFAULT_PROXY_PORT 8080
#define FW_DEFAULT_ADMIN_PORT 8081
#define FW_LOG_PREFIX "sluice-drop "
#define FW_LOG_RATE "10/second"
#define FW_DOT_PORT 853
#define FW_MAX_LOCAL_PORTS 32
#define FW_MAX_INTERFACES 16
#define FW_IFNAME_SIZE 16 /* IFNAMSIZ */
#define FW_MAX_RULE_PORTS 64
#define FW_MAX_CIDR_RULES (256 * 1024)
#define FW_MAX_LEARN_BATCH 1024 /* (address, port) pairs per learn transaction */
#define FW_SCRIPT_MAX (32 * 1024 * 1024)
#define FW_ERR_SIZE 256
/* iptables chains (fallback): ours, jumped to from OUTPUT. */
#define FW_IPT_CHAIN "SLUICE_OUT"
#define FW_IPT_DROP_CHAIN "SLUICE_DROP"
#define FW_IPT_NAT_CHAIN "SLUICE_NAT"

enum fw_mode {
    FW_MODE_UID,
    FW_MODE_HOST,
    FW_MODE_ISOLATE,
};

/* A policy address rule, as the kernel applies it (isolate mode). */
struct fw_cidr_rule {
    bool deny;
    struct cidr net;
    uint16_t ports[FW_MAX_RULE_PORTS]; /* none: 80 and 443 for allow, every port for deny */
    size_t n_ports;
};

struct fw_options {
    enum fw_mode mode;
    uint16_t proxy_port; /* loopback (uid, isolate) or proxy_addr (host) */
    uint16_t admin_port; /* 0: not reachable */
    uint16_t local_ports[FW_MAX_LOCAL_PORTS];
    size_t n_local_ports;
    bool has_dns; /* the DNS filter: every port-53 query is sent there */
    struct cidr dns_addr;
    uint16_t dns_port;
    uint32_t mark; /* sluice's own sockets; never 0 */
    bool has_uid;  /* fallback: sluice's own sockets by UID (weaker) */
    uint32_t uid;
    bool transparent; /* TCP 80/443 redirected to the proxy port */
    /* Interfaces whose egress drops every unmarked IPv4/IPv6 frame
     * (AF_PACKET senders); none: no netdev table. */
    char interfaces[FW_MAX_INTERFACES][FW_IFNAME_SIZE];
    size_t n_interfaces;
    const struct fw_cidr_rule *cidr_rules; /* isolate; the caller owns them */
    size_t n_cidr_rules;
    bool has_container; /* host mode: the container the rules are for */
    struct cidr container;
    bool has_proxy_addr; /* host mode: where the proxy listens */
    struct cidr proxy_addr;
};

/* A bounded output buffer; overflow is sticky and fails the generator. */
struct fw_text {
    char *buf;
    size_t size;
    size_t len;
    bool overflow;
};

void fw_text_init(struct fw_text *t, char *buf, size_t size);
void fw_text_add(struct fw_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void fw_options_defaults(struct fw_options *o);
/* Consistency: host mode needs a container and the proxy's address, and
 * so on. 0, or -1 with a message naming the option. */
int fw_options_check(const struct fw_options *o, char *err, size_t err_size);

const char *fw_mode_name(enum fw_mode m);
int fw_mode_parse(const char *text, enum fw_mode *out);

/* The nftables script `apply` runs as one transaction. uid/isolate: it
 * replaces sluice's tables whole (add + delete + the new table, so it works
 * whether or not they exist). host: it adds or replaces one container's
 * rules and leaves the other containers' alone. */
int fw_ruleset_apply(const struct fw_options *o, struct fw_text *out, char *err, size_t err_size);
/* The script `remove` runs: every sluice table (and nothing else), or in
 * host mode with a container only that container's chain and map entry.
 * It succeeds whether or not the rules exist. */
int fw_ruleset_remove(const struct fw_options *o, struct fw_text *out, char *err, size_t err_size);

/* One learned destination for the isolate sets. */
struct fw_learned {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint16_t port;
    uint32_t timeout; /* seconds; at least 1 */
};

/* Adds (or refreshes the timeout of) each element: add, delete, add in one
 * transaction, since a plain add of an existing element keeps its old
 * timeout. At most FW_MAX_LEARN_BATCH entries. */
int fw_ruleset_learn(const struct fw_learned *e, size_t n, struct fw_text *out);

/* iptables-restore text (run with --noflush) for the uid mode, family
 * AF_INET or AF_INET6. jump_* say whether OUTPUT already jumps to our
 * chains (then no second jump is inserted). */
int fw_ruleset_iptables(const struct fw_options *o, int family, bool jump_filter, bool jump_nat,
                        struct fw_text *out, char *err, size_t err_size);
/* iptables-restore --noflush text removing our chains and the jumps that
 * exist. */
int fw_ruleset_iptables_remove(int family, bool jump_filter, bool jump_nat, struct fw_text *out);

#endif
