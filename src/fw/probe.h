/* probe: can `sluice enforce` enforce here, and how?
 *
 * Three questions, asked before any rule is written: does this process
 * hold CAP_NET_ADMIN, does nftables (or else iptables) answer, and is this
 * the host's network namespace (where the pod modes must refuse: their
 * rules would cut off the whole machine). */
#ifndef SLUICE_FW_PROBE_H
#define SLUICE_FW_PROBE_H

#include <stdbool.h>
#include <stddef.h>

#define FW_PROBE_WHY_SIZE 512
#define FW_PROBE_PATH_SIZE 256
/* The inode numbers Linux gives its initial namespaces (include/linux/
 * proc_ns.h). The network one is fixed only on recent kernels; older ones
 * number init_net dynamically (from 0xF0000000 up). */
#define FW_INIT_NETNS_INO 0xEFFFFFF9u
#define FW_INIT_PIDNS_INO 0xEFFFFFFCu
/* Tests: a namespace file (/run/netns/NAME) to treat as the host's. It can
 * only add a refusal, never remove one. */
#define FW_PROBE_HOST_NETNS_ENV "SLUICE_TEST_HOST_NETNS"

enum fw_netns {
    FW_NETNS_POD,     /* not the host's */
    FW_NETNS_HOST,    /* the host's network namespace */
    FW_NETNS_UNKNOWN, /* cannot tell (older kernel, other PID namespace) */
};

enum fw_backend {
    FW_BACKEND_NONE,
    FW_BACKEND_NFTABLES,
    FW_BACKEND_IPTABLES,
};

struct fw_probe {
    bool cap_net_admin;
    enum fw_netns netns;
    bool nftables;
    char nft_why[FW_PROBE_WHY_SIZE]; /* why not, when !nftables */
    bool has_iptables;               /* an iptables-restore was found */
    char iptables_restore[FW_PROBE_PATH_SIZE];
    char ip6tables_restore[FW_PROBE_PATH_SIZE];
    char iptables[FW_PROBE_PATH_SIZE]; /* the matching iptables, for -C checks */
    char ip6tables[FW_PROBE_PATH_SIZE];
};

/* Fills p; check_nft runs the no-op transaction (needs CAP_NET_ADMIN). */
void fw_probe_run(struct fw_probe *p, bool check_nft);

/* Only the namespace question (no privilege needed). */
enum fw_netns fw_probe_netns(void);
const char *fw_netns_name(enum fw_netns n);
const char *fw_backend_name(enum fw_backend b);

#endif
