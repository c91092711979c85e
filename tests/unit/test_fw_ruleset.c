/* The ruleset generator: the exact scripts `sluice enforce` hands to the
 * kernel (golden text), and the checks that refuse what would be wrong. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "fw/learnset.h"
#include "fw/ruleset.h"
#include "policy/policy.h"

#define OUT_SIZE (1024 * 1024)

static char out[OUT_SIZE];
static char err[FW_ERR_SIZE];

static struct cidr ip(const char *text)
{
    struct cidr c;
    const char *why = NULL;
    assert_int_equal(cidr_parse(text, &c, &why), 0);
    return c;
}

static void pod_options(struct fw_options *o)
{
    fw_options_defaults(o);
    o->has_dns = true;
    o->dns_addr = ip("127.0.0.1");
    o->dns_port = 53;
    o->local_ports[o->n_local_ports++] = 8666;
    snprintf(o->interfaces[o->n_interfaces++], FW_IFNAME_SIZE, "veth0");
}

static const char *apply(const struct fw_options *o)
{
    struct fw_text t;
    fw_text_init(&t, out, sizeof out);
    err[0] = '\0';
    if (fw_ruleset_apply(o, &t, err, sizeof err) < 0)
        return NULL;
    return out;
}

static const char UID_HEADER[] =
    "# sluice enforce: mode uid (one transaction: the old tables go, the new ones come)\n"
    "add table inet sluice\n"
    "delete table inet sluice\n"
    "add table netdev sluice_egress\n"
    "delete table netdev sluice_egress\n";

static const char EGRESS_VETH0[] =
    "table netdev sluice_egress {\n"
    "\tcounter dropped_unmarked {\n\t}\n"
    "\tchain egress {\n"
    "\t\ttype filter hook egress devices = { \"veth0\" } priority 0; policy accept;\n"
    "\t\tmeta protocol { ip, ip6 } meta mark != 0x5c1ce counter name \"dropped_unmarked\" drop\n"
    "\t}\n"
    "}\n";

static const char REFUSE[] = "\tchain refuse {\n"
                             "\t\tmeta nfproto ipv4 counter name \"dropped_ipv4\"\n"
                             "\t\tmeta nfproto ipv6 counter name \"dropped_ipv6\"\n"
                             "\t\tlimit rate 10/second log prefix \"sluice-drop \"\n"
                             "\t\tdrop\n"
                             "\t}\n";

static void test_uid_mark_only(void **state)
{
    struct fw_options o;
    pod_options(&o);
    char want[8192];
    snprintf(want, sizeof want,
             "%s"
             "table inet sluice {\n"
             "\tcomment \"sluice mode=uid mark=0x5c1ce\"\n"
             "\tcounter dropped_ipv4 {\n\t}\n"
             "\tcounter dropped_ipv6 {\n\t}\n"
             "\tchain nat_output {\n"
             "\t\ttype nat hook output priority -100; policy accept;\n"
             "\t\tmeta mark 0x5c1ce return\n"
             "\t\tmeta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 dnat ip to "
             "127.0.0.1:53\n"
             "\t}\n"
             "\tchain output {\n"
             "\t\ttype filter hook output priority 0; policy drop;\n"
             "\t\tct state established,related meta mark set 0x5c1ce accept\n"
             "\t\tmeta mark 0x5c1ce accept\n"
             "\t\tip daddr 127.0.0.0/8 tcp dport { 8080, 8081, 8666 } accept\n"
             "\t\tip6 daddr ::1 tcp dport { 8080, 8081, 8666 } accept\n"
             "\t\tip daddr 127.0.0.1 meta l4proto { tcp, udp } th dport 53 accept\n"
             "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } "
             "meta mark set 0x5c1ce accept\n"
             "\t\tgoto refuse\n"
             "\t}\n"
             "%s"
             "}\n"
             "%s",
             UID_HEADER, REFUSE, EGRESS_VETH0);
    assert_non_null(apply(&o));
    assert_string_equal(out, want);
}

/* The UID fallback and the transparent redirect add exactly their lines. */
static void test_uid_fallback_and_transparent(void **state)
{
    struct fw_options o;
    pod_options(&o);
    o.has_uid = true;
    o.uid = 998;
    o.transparent = true;
    assert_non_null(apply(&o));
    assert_non_null(
        strstr(out, "\tcomment \"sluice mode=uid mark=0x5c1ce uid=998 transparent\"\n"));
    assert_non_null(strstr(out, "\t\tmeta mark 0x5c1ce return\n"
                                "\t\tmeta skuid 998 return\n"
                                "\t\tmeta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 "
                                "dnat ip to 127.0.0.1:53\n"
                                "\t\tip daddr != 127.0.0.0/8 tcp dport { 80, 443 } redirect to "
                                ":8080\n"
                                "\t\tip6 daddr != ::1 tcp dport { 80, 443 } redirect to :8080\n"
                                "\t}\n"));
    assert_non_null(strstr(out, "\t\tmeta mark 0x5c1ce accept\n"
                                "\t\tmeta skuid 998 meta mark set 0x5c1ce accept\n"
                                "\t\tip daddr 127.0.0.0/8"));
}

/* No DNS filter: port 53 is not redirected and not open; no interface:
 * no netdev table; admin port 0: not reachable; a listed port that is the
 * proxy's is not repeated. */
static void test_uid_minimal(void **state)
{
    struct fw_options o;
    fw_options_defaults(&o);
    o.admin_port = 0;
    o.local_ports[o.n_local_ports++] = 8080;
    o.proxy_port = 8080;
    assert_non_null(apply(&o));
    assert_null(strstr(out, "dport 53"));
    assert_null(strstr(out, "table netdev sluice_egress {"));
    assert_non_null(strstr(out, "\t\tip daddr 127.0.0.0/8 tcp dport 8080 accept\n"));
    assert_null(strstr(out, "8081"));
}

static void test_dns_ipv6(void **state)
{
    struct fw_options o;
    pod_options(&o);
    o.dns_addr = ip("::1");
    o.dns_port = 5353;
    assert_non_null(apply(&o));
    assert_non_null(strstr(out, "\t\tmeta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 "
                                "dnat ip6 to [::1]:5353\n"));
    assert_non_null(strstr(out, "\t\tip6 daddr ::1 meta l4proto { tcp, udp } th dport 5353 "
                                "accept\n"));
}

/* A sandbox of a central gateway (the podman jailer): the proxy and the DNS
 * filter are another machine's address; their packets leave through the
 * interface, so they get the mark the egress hook lets out. */
static void test_uid_gateway_proxy(void **state)
{
    struct fw_options o;
    pod_options(&o);
    o.dns_addr = ip("203.0.113.1");
    o.has_proxy_addr = true;
    o.proxy_addr = ip("203.0.113.1");
    assert_non_null(apply(&o));
    assert_non_null(strstr(out, "\t\tip daddr 203.0.113.1 tcp dport 8080 meta mark set 0x5c1ce "
                                "accept\n"));
    assert_non_null(strstr(out, "\t\tip daddr 203.0.113.1 meta l4proto { tcp, udp } th dport 53 "
                                "meta mark set 0x5c1ce accept\n"));
    assert_non_null(strstr(out, "\t\tmeta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 "
                                "dnat ip to 203.0.113.1:53\n"));
    assert_null(strstr(out, "dport { 80, 443 }"));
    /* Only the gateway's port: not every port of the gateway. */
    assert_null(strstr(out, "ip daddr 203.0.113.1 accept"));
    /* A redirect to a proxy in another namespace loses the original
     * destination (SO_ORIGINAL_DST reads the proxy's own conntrack). */
    o.transparent = true;
    assert_null(apply(&o));
    assert_non_null(strstr(err, "--transparent cannot be used with --proxy-addr"));
    o.mode = FW_MODE_ISOLATE;
    assert_null(apply(&o));
    o.mode = FW_MODE_UID;
    o.transparent = false;
    o.proxy_addr = ip("2001:db8::1");
    assert_non_null(apply(&o));
    assert_non_null(strstr(out, "\t\tip6 daddr 2001:db8::1 tcp dport 8080 meta mark set 0x5c1ce "
                                "accept\n"));
    char ipt_err[FW_ERR_SIZE];
    struct fw_text t;
    fw_text_init(&t, out, sizeof out);
    assert_int_equal(fw_ruleset_iptables(&o, AF_INET, false, false, &t, ipt_err, sizeof ipt_err),
                     -1);
    assert_non_null(strstr(ipt_err, "nftables"));
}

static void test_isolate_sets(void **state)
{
    struct fw_options o;
    struct fw_cidr_rule r[6];
    memset(r, 0, sizeof r);
    r[0].net = ip("203.0.113.0/24"); /* allow on 5432 */
    r[0].ports[r[0].n_ports++] = 5432;
    r[1].net = ip("203.0.113.7"); /* inside r[0], same port: merged away */
    r[1].ports[r[1].n_ports++] = 5432;
    r[2].net = ip("203.0.113.7"); /* same address, another port: kept */
    r[2].ports[r[2].n_ports++] = 22;
    r[3].deny = true;
    r[3].net = ip("198.51.100.0/24"); /* every port */
    r[4].deny = true;
    r[4].net = ip("192.0.2.99");
    r[4].ports[r[4].n_ports++] = 22;
    r[5].net = ip("2001:db8::/32"); /* no ports: the web ports */
    pod_options(&o);
    o.mode = FW_MODE_ISOLATE;
    o.cidr_rules = r;
    o.n_cidr_rules = 6;
    assert_non_null(apply(&o));
    assert_non_null(strstr(out, "\tset allow4 {\n\t\ttype ipv4_addr . inet_service\n"
                                "\t\tflags timeout\n\t}\n"));
    assert_non_null(strstr(out, "\tset cidr_allow4 {\n\t\ttype ipv4_addr . inet_service\n"
                                "\t\tflags interval\n"
                                "\t\telements = { 203.0.113.7/32 . 22,\n"
                                "\t\t\t     203.0.113.0/24 . 5432 }\n\t}\n"));
    assert_non_null(strstr(out, "\tset cidr_deny_port4 {\n\t\ttype ipv4_addr . inet_service\n"
                                "\t\tflags interval\n"
                                "\t\telements = { 192.0.2.99/32 . 22 }\n\t}\n"));
    assert_non_null(strstr(out, "\tset cidr_deny4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
                                "\t\telements = { 198.51.100.0/24 }\n\t}\n"));
    assert_non_null(strstr(out, "\t\telements = { 2001:db8::/32 . 80,\n"
                                "\t\t\t     2001:db8::/32 . 443 }\n"));
    /* DoT and denials before any allow; the allow sets mark what they let out. */
    assert_null(strstr(out, "dnat ip6")); /* the filter is on IPv4 */
    const char *dot = strstr(out, "\t\tmeta l4proto { tcp, udp } th dport 853 goto refuse\n");
    const char *deny = strstr(out, "\t\tip daddr @cidr_deny4 goto refuse\n");
    const char *learned = strstr(out, "\t\tmeta l4proto { tcp, udp } ip daddr . th dport @allow4 "
                                      "meta mark set 0x5c1ce accept\n");
    const char *stat = strstr(out, "\t\tmeta l4proto { tcp, udp } ip6 daddr . th dport "
                                   "@cidr_allow6 meta mark set 0x5c1ce accept\n"
                                   "\t\tgoto refuse\n");
    assert_non_null(dot);
    assert_non_null(deny);
    assert_non_null(learned);
    assert_non_null(stat);
    assert_true(dot < deny && deny < learned && learned < stat);
    assert_non_null(strstr(out, "\tcomment \"sluice mode=isolate mark=0x5c1ce\"\n"));
}

/* Whole prefixes inside other prefixes go, however they are ordered. */
static void test_isolate_nested_prefixes(void **state)
{
    static const char *const nets[] = {"10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16", "11.0.0.1",
                                       "10.200.0.0/16"};
    struct fw_cidr_rule r[5];
    struct fw_options o;
    memset(r, 0, sizeof r);
    for (size_t i = 0; i < 5; i++) {
        r[i].net = ip(nets[i]);
        r[i].ports[r[i].n_ports++] = 443;
    }
    pod_options(&o);
    o.mode = FW_MODE_ISOLATE;
    o.cidr_rules = r;
    o.n_cidr_rules = 5;
    assert_non_null(apply(&o));
    assert_non_null(strstr(out, "\t\telements = { 10.0.0.0/8 . 443,\n"
                                "\t\t\t     11.0.0.1/32 . 443 }\n"));
}

static void test_address_rules_need_isolate(void **state)
{
    struct fw_cidr_rule r;
    struct fw_options o;
    memset(&r, 0, sizeof r);
    r.net = ip("203.0.113.0/24");
    pod_options(&o);
    o.cidr_rules = &r;
    o.n_cidr_rules = 1;
    assert_null(apply(&o));
    assert_non_null(strstr(err, "isolate"));
}

static void host_options(struct fw_options *o)
{
    fw_options_defaults(o);
    o->mode = FW_MODE_HOST;
    o->has_container = true;
    o->container = ip("198.51.100.130");
    o->has_proxy_addr = true;
    o->proxy_addr = ip("198.51.100.129");
    o->has_dns = true;
    o->dns_addr = ip("198.51.100.129");
    o->dns_port = 53;
}

static void test_host_apply(void **state)
{
    struct fw_options o;
    host_options(&o);
    assert_non_null(apply(&o));
    assert_string_equal(
        out,
        "# sluice enforce: mode host, container 198.51.100.130 (its chain is replaced; other "
        "containers keep theirs)\n"
        "add table inet sluice { comment \"sluice mode=host\"; }\n"
        "add counter inet sluice dropped_host\n"
        "add map inet sluice containers4 { type ipv4_addr : verdict; }\n"
        "add map inet sluice containers6 { type ipv6_addr : verdict; }\n"
        "add chain inet sluice host_forward { type filter hook forward priority -1; policy "
        "accept; }\n"
        "flush chain inet sluice host_forward\n"
        "add rule inet sluice host_forward ip saddr vmap @containers4\n"
        "add rule inet sluice host_forward ip6 saddr vmap @containers6\n"
        "add chain inet sluice host_input { type filter hook input priority -1; policy accept; "
        "}\n"
        "flush chain inet sluice host_input\n"
        "add rule inet sluice host_input ip saddr vmap @containers4\n"
        "add rule inet sluice host_input ip6 saddr vmap @containers6\n"
        "add chain inet sluice ctr4_198_51_100_130\n"
        "flush chain inet sluice ctr4_198_51_100_130\n"
        "add rule inet sluice ctr4_198_51_100_130 ct state established,related accept\n"
        "add rule inet sluice ctr4_198_51_100_130 ip daddr 198.51.100.129 tcp dport 8080 "
        "accept\n"
        "add rule inet sluice ctr4_198_51_100_130 ip daddr 198.51.100.129 meta l4proto { tcp, "
        "udp } th dport 53 accept\n"
        "add rule inet sluice ctr4_198_51_100_130 counter name \"dropped_host\"\n"
        "add rule inet sluice ctr4_198_51_100_130 limit rate 10/second log prefix "
        "\"sluice-drop \"\n"
        "add rule inet sluice ctr4_198_51_100_130 drop\n"
        "add element inet sluice containers4 { 198.51.100.130 : goto ctr4_198_51_100_130 }\n");
}

static void test_host_remove_one_container(void **state)
{
    struct fw_options o;
    struct fw_text t;
    host_options(&o);
    o.container = ip("2001:db8:c::5");
    fw_text_init(&t, out, sizeof out);
    assert_int_equal(fw_ruleset_remove(&o, &t, err, sizeof err), 0);
    assert_string_equal(out, "# sluice enforce: remove the rules of container 2001:db8:c::5 only\n"
                             "add table inet sluice\n"
                             "add map inet sluice containers6 { type ipv6_addr : verdict; }\n"
                             "add chain inet sluice ctr6_2001_db8_c__5\n"
                             "flush chain inet sluice ctr6_2001_db8_c__5\n"
                             "add element inet sluice containers6 { 2001:db8:c::5 : goto "
                             "ctr6_2001_db8_c__5 }\n"
                             "delete element inet sluice containers6 { 2001:db8:c::5 }\n"
                             "delete chain inet sluice ctr6_2001_db8_c__5\n");
}

static void test_remove_all(void **state)
{
    struct fw_options o;
    struct fw_text t;
    pod_options(&o);
    fw_text_init(&t, out, sizeof out);
    assert_int_equal(fw_ruleset_remove(&o, &t, err, sizeof err), 0);
    assert_string_equal(out, "# sluice enforce: remove sluice's tables (and nothing else)\n"
                             "add table inet sluice\n"
                             "delete table inet sluice\n"
                             "add table netdev sluice_egress\n"
                             "delete table netdev sluice_egress\n");
}

static void test_host_checks(void **state)
{
    struct fw_options o;
    host_options(&o);
    o.has_container = false;
    assert_null(apply(&o));
    assert_non_null(strstr(err, "--container-ip"));
    host_options(&o);
    o.has_proxy_addr = false;
    assert_null(apply(&o));
    assert_non_null(strstr(err, "--proxy-addr"));
    host_options(&o);
    o.container = ip("2001:db8::5");
    assert_null(apply(&o));
    assert_non_null(strstr(err, "one family"));
    host_options(&o);
    o.transparent = true;
    assert_null(apply(&o));
    pod_options(&o);
    o.has_container = true;
    o.container = ip("198.51.100.5");
    assert_null(apply(&o));
    assert_non_null(strstr(err, "--mode host"));
}

static void test_option_checks(void **state)
{
    struct fw_options o;
    pod_options(&o);
    o.mark = 0;
    assert_null(apply(&o));
    assert_non_null(strstr(err, "--mark"));
    pod_options(&o);
    snprintf(o.interfaces[0], FW_IFNAME_SIZE, "eth0\"; flush");
    assert_null(apply(&o));
    assert_non_null(strstr(err, "not an interface name"));
}

/* A buffer too small fails instead of handing half a script to the kernel. */
static void test_overflow_fails(void **state)
{
    struct fw_options o;
    struct fw_text t;
    char small[200];
    pod_options(&o);
    fw_text_init(&t, small, sizeof small);
    assert_int_equal(fw_ruleset_apply(&o, &t, err, sizeof err), -1);
    assert_true(t.overflow);
    assert_non_null(strstr(err, "larger than"));
}

static void test_learn_elements(void **state)
{
    struct fw_learned e[3];
    struct fw_text t;
    memset(e, 0, sizeof e);
    e[0].family = AF_INET;
    inet_pton(AF_INET, "192.0.2.10", e[0].addr);
    e[0].port = 22;
    e[0].timeout = 60;
    e[1] = e[0];
    e[1].port = 443;
    e[2].family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8:1::10", e[2].addr);
    e[2].port = 22;
    e[2].timeout = 0; /* at least one second */
    fw_text_init(&t, out, sizeof out);
    assert_int_equal(fw_ruleset_learn(e, 3, &t), 0);
    assert_string_equal(out,
                        "add element inet sluice allow4 { 192.0.2.10 . 22 timeout 60s, 192.0.2.10 "
                        ". 443 timeout 60s }\n"
                        "delete element inet sluice allow4 { 192.0.2.10 . 22, 192.0.2.10 . 443 }\n"
                        "add element inet sluice allow4 { 192.0.2.10 . 22 timeout 60s, 192.0.2.10 "
                        ". 443 timeout 60s }\n"
                        "add element inet sluice allow6 { 2001:db8:1::10 . 22 timeout 1s }\n"
                        "delete element inet sluice allow6 { 2001:db8:1::10 . 22 }\n"
                        "add element inet sluice allow6 { 2001:db8:1::10 . 22 timeout 1s }\n");
    fw_text_init(&t, out, sizeof out);
    assert_int_equal(fw_ruleset_learn(e, 0, &t), -1);
    e[0].family = 99;
    assert_int_equal(fw_ruleset_learn(e, 1, &t), -1);
}

static void test_iptables_v4(void **state)
{
    struct fw_options o;
    struct fw_text t;
    pod_options(&o);
    o.has_uid = true;
    o.uid = 998;
    o.transparent = true;
    fw_text_init(&t, out, sizeof out);
    assert_int_equal(fw_ruleset_iptables(&o, AF_INET, false, false, &t, err, sizeof err), 0);
    assert_string_equal(
        out, "*filter\n"
             ":SLUICE_OUT - [0:0]\n"
             ":SLUICE_DROP - [0:0]\n"
             "-A SLUICE_OUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
             "-A SLUICE_OUT -m mark --mark 0x5c1ce -j ACCEPT\n"
             "-A SLUICE_OUT -m owner --uid-owner 998 -j ACCEPT\n"
             "-A SLUICE_OUT -d 127.0.0.0/8 -p tcp --dport 8080 -j ACCEPT\n"
             "-A SLUICE_OUT -d 127.0.0.0/8 -p tcp --dport 8081 -j ACCEPT\n"
             "-A SLUICE_OUT -d 127.0.0.0/8 -p tcp --dport 8666 -j ACCEPT\n"
             "-A SLUICE_OUT -d 127.0.0.1 -p udp --dport 53 -j ACCEPT\n"
             "-A SLUICE_OUT -d 127.0.0.1 -p tcp --dport 53 -j ACCEPT\n"
             "-A SLUICE_OUT -j SLUICE_DROP\n"
             "-A SLUICE_DROP -m limit --limit 10/sec -j LOG --log-prefix \"sluice-drop \"\n"
             "-A SLUICE_DROP -j DROP\n"
             "-I OUTPUT 1 -j SLUICE_OUT\n"
             "COMMIT\n"
             "*nat\n"
             ":SLUICE_NAT - [0:0]\n"
             "-A SLUICE_NAT -m mark --mark 0x5c1ce -j RETURN\n"
             "-A SLUICE_NAT -m owner --uid-owner 998 -j RETURN\n"
             "-A SLUICE_NAT -p udp --dport 53 -j DNAT --to-destination 127.0.0.1:53\n"
             "-A SLUICE_NAT -p tcp --dport 53 -j DNAT --to-destination 127.0.0.1:53\n"
             "-A SLUICE_NAT ! -d 127.0.0.0/8 -p tcp --dport 80 -j REDIRECT --to-ports 8080\n"
             "-A SLUICE_NAT ! -d 127.0.0.0/8 -p tcp --dport 443 -j REDIRECT --to-ports 8080\n"
             "-I OUTPUT 1 -j SLUICE_NAT\n"
             "COMMIT\n");
}

/* IPv6: loopback ::1, neighbour discovery kept, no IPv4 DNS redirect, and no
 * second jump when OUTPUT already has one. */
static void test_iptables_v6_reapply(void **state)
{
    struct fw_options o;
    struct fw_text t;
    pod_options(&o);
    fw_text_init(&t, out, sizeof out);
    assert_int_equal(fw_ruleset_iptables(&o, AF_INET6, true, true, &t, err, sizeof err), 0);
    assert_non_null(strstr(out, "-A SLUICE_OUT -d ::1/128 -p tcp --dport 8080 -j ACCEPT\n"));
    assert_non_null(strstr(out, "--icmpv6-type neighbour-solicitation -j ACCEPT\n"));
    assert_null(strstr(out, "--dport 53"));
    assert_null(strstr(out, "-I OUTPUT"));
    o.mode = FW_MODE_ISOLATE;
    fw_text_init(&t, out, sizeof out);
    assert_int_equal(fw_ruleset_iptables(&o, AF_INET, false, false, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "nftables"));
}

static void test_iptables_remove(void **state)
{
    struct fw_text t;
    fw_text_init(&t, out, sizeof out);
    assert_int_equal(fw_ruleset_iptables_remove(AF_INET, true, false, &t), 0);
    assert_string_equal(out, "*filter\n"
                             "-D OUTPUT -j SLUICE_OUT\n"
                             ":SLUICE_OUT - [0:0]\n"
                             ":SLUICE_DROP - [0:0]\n"
                             "-X SLUICE_OUT\n"
                             "-X SLUICE_DROP\n"
                             "COMMIT\n"
                             "*nat\n"
                             ":SLUICE_NAT - [0:0]\n"
                             "-X SLUICE_NAT\n"
                             "COMMIT\n");
}

static void test_mode_names(void **state)
{
    enum fw_mode m;
    assert_int_equal(fw_mode_parse("isolate", &m), 0);
    assert_int_equal(m, FW_MODE_ISOLATE);
    assert_int_equal(fw_mode_parse("host", &m), 0);
    assert_int_equal(m, FW_MODE_HOST);
    assert_int_equal(fw_mode_parse("UID", &m), -1);
    assert_string_equal(fw_mode_name(FW_MODE_UID), "uid");
}

/* Which ports a learned name opens: those its allowing rule names, the web
 * ports for rules without "ports", none for denied names or rules that
 * need interception. */
static void test_learn_ports(void **state)
{
    static const char json[] = "{\"default\": \"deny\", \"rules\": ["
                               "{\"deny\": \"gist.example.com\"},"
                               "{\"allow\": \".example.com\", \"ports\": [22, 443]},"
                               "{\"allow\": \"db.test\", \"ports\": [5432]},"
                               "{\"allow\": \"web.test\"},"
                               "{\"allow\": \"api.test\", \"methods\": [\"POST\"]}],"
                               "\"intercept\": {\"enabled\": true}}";
    struct policy_error perr;
    struct policy *p = policy_load_buffer(json, strlen(json), "test", &perr);
    uint16_t ports[FW_LEARNSET_MAX_PORTS];
    assert_non_null(p);
    assert_int_equal(fw_learnset_ports(p, "git.example.com", ports, FW_LEARNSET_MAX_PORTS), 2);
    assert_int_equal(ports[0], 443);
    assert_int_equal(ports[1], 22);
    assert_int_equal(fw_learnset_ports(p, "gist.example.com", ports, FW_LEARNSET_MAX_PORTS), 0);
    assert_int_equal(fw_learnset_ports(p, "db.test", ports, FW_LEARNSET_MAX_PORTS), 1);
    assert_int_equal(ports[0], 5432);
    assert_int_equal(fw_learnset_ports(p, "web.test", ports, FW_LEARNSET_MAX_PORTS), 2);
    assert_int_equal(ports[0], 80);
    assert_int_equal(ports[1], 443);
    assert_int_equal(fw_learnset_ports(p, "api.test", ports, FW_LEARNSET_MAX_PORTS), 0);
    assert_int_equal(fw_learnset_ports(p, "other.test", ports, FW_LEARNSET_MAX_PORTS), 0);
    assert_int_equal(fw_learnset_ports(p, "EXAMPLE.com.", ports, FW_LEARNSET_MAX_PORTS), 2);
    policy_unref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uid_mark_only),
        cmocka_unit_test(test_uid_fallback_and_transparent),
        cmocka_unit_test(test_uid_minimal),
        cmocka_unit_test(test_dns_ipv6),
        cmocka_unit_test(test_uid_gateway_proxy),
        cmocka_unit_test(test_isolate_sets),
        cmocka_unit_test(test_isolate_nested_prefixes),
        cmocka_unit_test(test_address_rules_need_isolate),
        cmocka_unit_test(test_host_apply),
        cmocka_unit_test(test_host_remove_one_container),
        cmocka_unit_test(test_remove_all),
        cmocka_unit_test(test_host_checks),
        cmocka_unit_test(test_option_checks),
        cmocka_unit_test(test_overflow_fails),
        cmocka_unit_test(test_learn_elements),
        cmocka_unit_test(test_iptables_v4),
        cmocka_unit_test(test_iptables_v6_reapply),
        cmocka_unit_test(test_iptables_remove),
        cmocka_unit_test(test_mode_names),
        cmocka_unit_test(test_learn_ports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
