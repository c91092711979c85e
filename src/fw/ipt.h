/* ipt: the iptables fallback, for kernels without nftables. The text comes
 * from fw_ruleset_iptables(); iptables-restore --noflush applies each
 * table of it as one commit, and touches nothing but our chains and the
 * jumps to them. */
#ifndef SLUICE_FW_IPT_H
#define SLUICE_FW_IPT_H

#include <stddef.h>

#include "fw/probe.h"
#include "fw/ruleset.h"

/* Applies the uid-mode rules for IPv4 and IPv6. 0, or -1 with err. */
int fw_ipt_apply(const struct fw_probe *p, const struct fw_options *o, char *err, size_t err_size);
/* Removes our chains (and jumps) for both families; fine when absent. */
int fw_ipt_remove(const struct fw_probe *p, char *err, size_t err_size);
/* Whether our filter chain is in place (IPv4). */
int fw_ipt_present(const struct fw_probe *p);
/* Prints `iptables -L -v` of our chains for both families to stdout. */
int fw_ipt_show(const struct fw_probe *p);

#endif
