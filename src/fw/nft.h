/* nft: sluice's tables through libnftables (the library behind `nft`).
 *
 * A script goes to the kernel as one batch: either every command in it
 * takes effect or none does, so `apply` never leaves half a ruleset. */
#ifndef SLUICE_FW_NFT_H
#define SLUICE_FW_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FW_NFT_ERR_SIZE 1024
#define FW_NFT_COMMENT_SIZE 160
#define FW_NFT_MAX_COUNTERS 8

struct fw_nft;

/* A context kept for repeated transactions (the learned-address sink).
 * NULL when libnftables cannot make one. */
struct fw_nft *fw_nft_new(void);
void fw_nft_free(struct fw_nft *n);
/* Runs script as one transaction. 0, or -1 with nft's message in err. */
int fw_nft_run(struct fw_nft *n, const char *script, char *err, size_t err_size);

/* One-shot versions of the above. */
int fw_nft_run_script(const char *script, char *err, size_t err_size);
/* Runs a listing command; *out is malloc'd text (caller frees). */
int fw_nft_list(const char *cmd, bool json, char **out, char *err, size_t err_size);

/* What `show` and status report about sluice's tables. */
struct fw_nft_counter {
    char name[64];
    char table[32];
    uint64_t packets;
    uint64_t bytes;
};

struct fw_nft_state {
    bool table;                        /* table inet sluice exists */
    bool egress;                       /* table netdev sluice_egress exists */
    char comment[FW_NFT_COMMENT_SIZE]; /* "sluice mode=uid mark=0x5c1ce ..." */
    struct fw_nft_counter counters[FW_NFT_MAX_COUNTERS];
    size_t n_counters;
};

/* Reads the state of sluice's tables. 0, or -1 with err. */
int fw_nft_state(struct fw_nft_state *st, char *err, size_t err_size);

/* The enforcement object for the admin API's GET /status, as malloc'd
 * JSON (caller frees; NULL when out of memory):
 *   {"mode": "nftables"|"isolate"|"none"|"unknown",
 *    "rules": "sluice mode=uid mark=0x5c1ce ...",   (the table's comment)
 *    "drops": {"dropped_ipv4": N, "dropped_ipv6": N, "dropped_unmarked": N}}
 * "unknown" (with "error") when the tables cannot be read, e.g. without
 * CAP_NET_ADMIN. SPEC §4 calls nftables enforcement "nftables" and the
 * isolate mode "isolate". */
char *fw_nft_status_json(void);

/* Whether nftables answers here: an empty transaction that adds and
 * deletes a probe table. 0, or -1 with the reason. */
int fw_nft_probe(char *err, size_t err_size);

#endif
