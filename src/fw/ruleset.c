/* ruleset: generates sluice's nftables scripts and iptables-restore text.
 * Every rule is explained in docs/ENFORCE.md; the unit tests pin the text. */
#include "fw/ruleset.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define ADDR_TEXT 64
#define CIDR_TEXT 64
#define PORTS_TEXT 512
#define CHAIN_NAME 96
#define COMMENT_TEXT 160

void fw_text_init(struct fw_text *t, char *buf, size_t size)
{
    t->buf = buf;
    t->size = size;
    t->len = 0;
    t->overflow = size == 0;
    if (size)
        buf[0] = '\0';
}

void fw_text_add(struct fw_text *t, const char *fmt, ...)
{
    if (t->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->size - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= t->size - t->len) {
        t->overflow = true;
        t->buf[t->len] = '\0';
        return;
    }
    t->len += (size_t)n;
}

void fw_options_defaults(struct fw_options *o)
{
    memset(o, 0, sizeof *o);
    o->mode = FW_MODE_UID;
    o->proxy_port = FW_DEFAULT_PROXY_PORT;
    o->admin_port = FW_DEFAULT_ADMIN_PORT;
    o->mark = FW_DEFAULT_MARK;
}

const char *fw_mode_name(enum fw_mode m)
{
    switch (m) {
    case FW_MODE_UID:
        return "uid";
    case FW_MODE_HOST:
        return "host";
    case FW_MODE_ISOLATE:
        return "isolate";
    }
    return "?";
}

int fw_mode_parse(const char *text, enum fw_mode *out)
{
    static const enum fw_mode modes[] = {FW_MODE_UID, FW_MODE_HOST, FW_MODE_ISOLATE};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        if (strcmp(text, fw_mode_name(modes[i])) == 0) {
            *out = modes[i];
            return 0;
        }
    }
    return -1;
}

int fw_options_check(const struct fw_options *o, char *err, size_t err_size)
{
    if (o->mark == 0) {
        snprintf(err, err_size, "--mark must not be 0 (0 is every unmarked packet)");
        return -1;
    }
    if (o->proxy_port == 0) {
        snprintf(err, err_size, "--proxy-port must be a port from 1 to 65535");
        return -1;
    }
    if (o->has_dns && o->dns_port == 0) {
        snprintf(err, err_size, "--dns needs a port from 1 to 65535");
        return -1;
    }
    if (o->mode == FW_MODE_HOST) {
        if (o->transparent) {
            snprintf(err, err_size, "--transparent is for the uid and isolate modes");
            return -1;
        }
        if (o->has_container && !o->has_proxy_addr) {
            snprintf(err, err_size,
                     "host mode needs --proxy-addr IP (where containers reach the "
                     "proxy)");
            return -1;
        }
        if (o->has_proxy_addr && o->has_container && o->proxy_addr.family != o->container.family) {
            snprintf(err, err_size, "--proxy-addr and --container-ip must be of one family");
            return -1;
        }
        return 0;
    }
    if (o->has_container) {
        snprintf(err, err_size, "--container-ip is for --mode host");
        return -1;
    }
    if (o->has_proxy_addr && o->transparent) {
        /* The redirect would be a DNAT in this namespace; a proxy in another
         * one reads SO_ORIGINAL_DST from its own conntrack, sees its own
         * address and takes the flow for explicit use: plain HTTP gets 400,
         * TLS fails. Refuse rather than install rules that only break. */
        snprintf(err, err_size,
                 "--transparent cannot be used with --proxy-addr: a proxy in another "
                 "network namespace cannot recover a redirected connection's original "
                 "destination; point the workload at the proxy (HTTP_PROXY/HTTPS_PROXY)");
        return -1;
    }
    if (o->n_cidr_rules && o->mode != FW_MODE_ISOLATE) {
        snprintf(err, err_size, "address rules (--policy) are applied in --mode isolate only");
        return -1;
    }
    return 0;
}

/* ---- small formatters ---------------------------------------------------- */

static void addr_text(int family, const uint8_t *bytes, char *buf, size_t size)
{
    if (!inet_ntop(family, bytes, buf, (socklen_t)size))
        snprintf(buf, size, "?");
}

static void cidr_text(const struct cidr *c, char *buf, size_t size)
{
    if (cidr_format(c, buf, size) < 0)
        snprintf(buf, size, "?");
}

/* "8080" or "{ 8080, 8081 }": nft's own way of writing one value or a set. */
static void ports_text(const uint16_t *ports, size_t n, char *buf, size_t size)
{
    struct fw_text t;
    fw_text_init(&t, buf, size);
    if (n == 1) {
        fw_text_add(&t, "%u", (unsigned)ports[0]);
        return;
    }
    fw_text_add(&t, "{ ");
    for (size_t i = 0; i < n; i++)
        fw_text_add(&t, "%s%u", i ? ", " : "", (unsigned)ports[i]);
    fw_text_add(&t, " }");
}

/* The loopback ports the workload may reach: proxy, admin, listed ones. */
static size_t local_ports(const struct fw_options *o, uint16_t *out)
{
    size_t n = 0;
    out[n++] = o->proxy_port;
    if (o->admin_port)
        out[n++] = o->admin_port;
    for (size_t i = 0; i < o->n_local_ports; i++) {
        bool dup = false;
        for (size_t j = 0; j < n; j++)
            dup = dup || out[j] == o->local_ports[i];
        if (!dup)
            out[n++] = o->local_ports[i];
    }
    return n;
}

/* The DNS filter on loopback needs no mark: its packets never reach an
 * interface's egress hook. */
static bool is_loopback(const struct cidr *c)
{
    static const uint8_t v6_lo[16] = {[15] = 1};
    if (c->family == AF_INET)
        return c->bytes[0] == 127;
    return memcmp(c->bytes, v6_lo, 16) == 0;
}

static const char *l3(int family)
{
    return family == AF_INET6 ? "ip6" : "ip";
}

/* ---- uid and isolate ----------------------------------------------------- */

static void table_comment(const struct fw_options *o, char *buf, size_t size)
{
    struct fw_text t;
    fw_text_init(&t, buf, size);
    fw_text_add(&t, "sluice mode=%s mark=0x%x", fw_mode_name(o->mode), (unsigned)o->mark);
    if (o->has_uid)
        fw_text_add(&t, " uid=%u", (unsigned)o->uid);
    if (o->transparent)
        fw_text_add(&t, " transparent");
}

static void emit_nat_chain(const struct fw_options *o, struct fw_text *t)
{
    char a[ADDR_TEXT];
    fw_text_add(t,
                "\tchain nat_output {\n"
                "\t\ttype nat hook output priority -100; policy accept;\n"
                "\t\tmeta mark 0x%x return\n",
                (unsigned)o->mark);
    if (o->has_uid)
        fw_text_add(t, "\t\tmeta skuid %u return\n", (unsigned)o->uid);
    if (o->has_dns) {
        addr_text(o->dns_addr.family, o->dns_addr.bytes, a, sizeof a);
        if (o->dns_addr.family == AF_INET)
            fw_text_add(t,
                        "\t\tmeta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 "
                        "dnat ip to %s:%u\n",
                        a, (unsigned)o->dns_port);
        else
            fw_text_add(t,
                        "\t\tmeta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 "
                        "dnat ip6 to [%s]:%u\n",
                        a, (unsigned)o->dns_port);
    }
    if (o->transparent) /* never with --proxy-addr: fw_options_check */
        fw_text_add(t,
                    "\t\tip daddr != 127.0.0.0/8 tcp dport { 80, 443 } redirect to :%u\n"
                    "\t\tip6 daddr != ::1 tcp dport { 80, 443 } redirect to :%u\n",
                    (unsigned)o->proxy_port, (unsigned)o->proxy_port);
    fw_text_add(t, "\t}\n");
}

/* Everything the workload may send: loopback services, the DNS filter,
 * replies. Packets that may leave through an interface get sluice's mark,
 * which the netdev egress chain checks. */
static void emit_output_accepts(const struct fw_options *o, struct fw_text *t)
{
    uint16_t lp[FW_MAX_LOCAL_PORTS + 2];
    char ports[PORTS_TEXT], a[ADDR_TEXT];
    unsigned m = (unsigned)o->mark;

    ports_text(lp, local_ports(o, lp), ports, sizeof ports);
    fw_text_add(t,
                "\tchain output {\n"
                "\t\ttype filter hook output priority 0; policy drop;\n"
                "\t\tct state established,related meta mark set 0x%x accept\n"
                "\t\tmeta mark 0x%x accept\n",
                m, m);
    if (o->has_uid)
        fw_text_add(t, "\t\tmeta skuid %u meta mark set 0x%x accept\n", (unsigned)o->uid, m);
    fw_text_add(t,
                "\t\tip daddr 127.0.0.0/8 tcp dport %s accept\n"
                "\t\tip6 daddr ::1 tcp dport %s accept\n",
                ports, ports);
    if (o->has_proxy_addr) {
        /* A proxy outside the pod (a central gateway): its packets leave
         * through an interface, so they carry the mark the egress hook wants. */
        addr_text(o->proxy_addr.family, o->proxy_addr.bytes, a, sizeof a);
        fw_text_add(t, "\t\t%s daddr %s tcp dport %u meta mark set 0x%x accept\n",
                    l3(o->proxy_addr.family), a, (unsigned)o->proxy_port, m);
    }
    if (o->has_dns) {
        addr_text(o->dns_addr.family, o->dns_addr.bytes, a, sizeof a);
        if (is_loopback(&o->dns_addr))
            fw_text_add(t, "\t\t%s daddr %s meta l4proto { tcp, udp } th dport %u accept\n",
                        l3(o->dns_addr.family), a, (unsigned)o->dns_port);
        else
            fw_text_add(t,
                        "\t\t%s daddr %s meta l4proto { tcp, udp } th dport %u "
                        "meta mark set 0x%x accept\n",
                        l3(o->dns_addr.family), a, (unsigned)o->dns_port, m);
    }
    fw_text_add(t,
                "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, "
                "nd-router-solicit } meta mark set 0x%x accept\n",
                m);
}

static void emit_refuse_chain(struct fw_text *t)
{
    fw_text_add(t, "\tchain refuse {\n"
                   "\t\tmeta nfproto ipv4 counter name \"dropped_ipv4\"\n"
                   "\t\tmeta nfproto ipv6 counter name \"dropped_ipv6\"\n"
                   "\t\tlimit rate " FW_LOG_RATE " log prefix \"" FW_LOG_PREFIX "\"\n"
                   "\t\tdrop\n"
                   "\t}\n");
}

/* One element of an isolate address set. */
struct elem {
    int family;
    uint8_t bytes[16];
    uint8_t prefix;
    uint16_t port;
};

static int elem_cmp(const void *a, const void *b)
{
    const struct elem *x = a, *y = b;
    if (x->family != y->family)
        return x->family < y->family ? -1 : 1;
    if (x->port != y->port)
        return x->port < y->port ? -1 : 1;
    int c = memcmp(x->bytes, y->bytes, 16);
    if (c)
        return c;
    return x->prefix < y->prefix ? -1 : x->prefix > y->prefix;
}

static bool elem_contains(const struct elem *outer, const struct elem *inner)
{
    if (outer->family != inner->family || outer->port != inner->port)
        return false;
    struct cidr o = {.family = outer->family, .prefix = outer->prefix};
    struct cidr i = {.family = inner->family, .prefix = inner->prefix};
    memcpy(o.bytes, outer->bytes, 16);
    memcpy(i.bytes, inner->bytes, 16);
    return cidr_within(&i, &o);
}

/* Sorted by (family, port, address, prefix), a prefix that lies inside
 * another comes right after it (or after something also inside it), so
 * keeping only elements not inside the last kept one removes every overlap:
 * nftables refuses overlapping elements in a concatenated interval set. */
static size_t elems_normalise(struct elem *e, size_t n)
{
    size_t kept = 0;
    qsort(e, n, sizeof *e, elem_cmp);
    for (size_t i = 0; i < n; i++) {
        if (kept && elem_contains(&e[kept - 1], &e[i]))
            continue;
        e[kept++] = e[i];
    }
    return kept;
}

static void emit_elems(struct fw_text *t, const struct elem *e, size_t n, int family,
                       bool with_port)
{
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        char c[CIDR_TEXT];
        struct cidr x = {.family = e[i].family, .prefix = e[i].prefix};
        if (e[i].family != family)
            continue;
        memcpy(x.bytes, e[i].bytes, 16);
        cidr_text(&x, c, sizeof c);
        fw_text_add(t, "%s%s", first ? "\t\telements = { " : ",\n\t\t\t     ", c);
        if (with_port)
            fw_text_add(t, " . %u", (unsigned)e[i].port);
        first = false;
    }
    if (!first)
        fw_text_add(t, " }\n");
}

/* The static address rules of the policy as three kinds of element:
 * allowed (address . port), denied on some ports, denied on every port. */
struct cidr_sets {
    struct elem *allow, *deny_port, *deny_all;
    size_t n_allow, n_deny_port, n_deny_all;
};

static void cidr_sets_free(struct cidr_sets *s)
{
    free(s->allow);
    free(s->deny_port);
    free(s->deny_all);
}

static void elem_push(struct elem *arr, size_t *n, const struct cidr *c, uint16_t port)
{
    struct elem *e = &arr[(*n)++];
    memset(e, 0, sizeof *e);
    e->family = c->family;
    memcpy(e->bytes, c->bytes, 16);
    e->prefix = c->prefix;
    e->port = port;
}

static int cidr_sets_build(const struct fw_options *o, struct cidr_sets *s)
{
    static const uint16_t web_ports[] = {80, 443};
    size_t cap = 0;
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < o->n_cidr_rules; i++)
        cap += o->cidr_rules[i].n_ports ? o->cidr_rules[i].n_ports : 2;
    cap = cap ? cap : 1;
    s->allow = calloc(cap, sizeof *s->allow);
    s->deny_port = calloc(cap, sizeof *s->deny_port);
    s->deny_all = calloc(cap, sizeof *s->deny_all);
    if (!s->allow || !s->deny_port || !s->deny_all) {
        cidr_sets_free(s);
        return -1;
    }
    for (size_t i = 0; i < o->n_cidr_rules; i++) {
        const struct fw_cidr_rule *r = &o->cidr_rules[i];
        if (r->deny && r->n_ports == 0) {
            elem_push(s->deny_all, &s->n_deny_all, &r->net, 0);
            continue;
        }
        const uint16_t *ports = r->n_ports ? r->ports : web_ports;
        size_t np = r->n_ports ? r->n_ports : 2;
        for (size_t p = 0; p < np; p++) {
            if (r->deny)
                elem_push(s->deny_port, &s->n_deny_port, &r->net, ports[p]);
            else
                elem_push(s->allow, &s->n_allow, &r->net, ports[p]);
        }
    }
    s->n_allow = elems_normalise(s->allow, s->n_allow);
    s->n_deny_port = elems_normalise(s->deny_port, s->n_deny_port);
    s->n_deny_all = elems_normalise(s->deny_all, s->n_deny_all);
    return 0;
}

static void emit_set(struct fw_text *t, const char *name, int family, const char *flags,
                     bool with_port, const struct elem *e, size_t n)
{
    fw_text_add(t, "\tset %s {\n\t\ttype %s%s\n\t\tflags %s\n", name,
                family == AF_INET6 ? "ipv6_addr" : "ipv4_addr", with_port ? " . inet_service" : "",
                flags);
    if (e)
        emit_elems(t, e, n, family, with_port);
    fw_text_add(t, "\t}\n");
}

static void emit_isolate_sets(const struct cidr_sets *s, struct fw_text *t)
{
    static const int fams[] = {AF_INET, AF_INET6};
    for (size_t f = 0; f < 2; f++) {
        int fam = fams[f];
        const char *v = fam == AF_INET6 ? "6" : "4";
        char name[CHAIN_NAME];
        snprintf(name, sizeof name, "allow%s", v);
        emit_set(t, name, fam, "timeout", true, NULL, 0);
        snprintf(name, sizeof name, "cidr_allow%s", v);
        emit_set(t, name, fam, "interval", true, s->allow, s->n_allow);
        snprintf(name, sizeof name, "cidr_deny_port%s", v);
        emit_set(t, name, fam, "interval", true, s->deny_port, s->n_deny_port);
        snprintf(name, sizeof name, "cidr_deny%s", v);
        emit_set(t, name, fam, "interval", false, s->deny_all, s->n_deny_all);
    }
}

/* Isolate: DoT and denied addresses first (deny wins over allow in the
 * kernel, stricter than the policy's first match), then the learned and
 * static allow sets. */
static void emit_isolate_rules(const struct fw_options *o, struct fw_text *t)
{
    unsigned m = (unsigned)o->mark;
    fw_text_add(t, "\t\tmeta l4proto { tcp, udp } th dport %d goto refuse\n", FW_DOT_PORT);
    fw_text_add(t,
                "\t\tip daddr @cidr_deny4 goto refuse\n"
                "\t\tip6 daddr @cidr_deny6 goto refuse\n"
                "\t\tmeta l4proto { tcp, udp } ip daddr . th dport @cidr_deny_port4 goto refuse\n"
                "\t\tmeta l4proto { tcp, udp } ip6 daddr . th dport @cidr_deny_port6 goto "
                "refuse\n");
    static const char *const sets[] = {"allow", "cidr_allow"};
    for (size_t i = 0; i < 2; i++)
        fw_text_add(t,
                    "\t\tmeta l4proto { tcp, udp } ip daddr . th dport @%s4 meta mark set 0x%x "
                    "accept\n"
                    "\t\tmeta l4proto { tcp, udp } ip6 daddr . th dport @%s6 meta mark set 0x%x "
                    "accept\n",
                    sets[i], m, sets[i], m);
}

static void emit_egress_table(const struct fw_options *o, struct fw_text *t)
{
    if (o->n_interfaces == 0)
        return;
    fw_text_add(t, "table netdev " FW_EGRESS_TABLE " {\n"
                   "\tcounter dropped_unmarked {\n\t}\n"
                   "\tchain egress {\n"
                   "\t\ttype filter hook egress devices = { ");
    for (size_t i = 0; i < o->n_interfaces; i++)
        fw_text_add(t, "%s\"%s\"", i ? ", " : "", o->interfaces[i]);
    fw_text_add(t,
                " } priority 0; policy accept;\n"
                "\t\tmeta protocol { ip, ip6 } meta mark != 0x%x counter name "
                "\"dropped_unmarked\" drop\n"
                "\t}\n"
                "}\n",
                (unsigned)o->mark);
}

static bool ifname_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= FW_IFNAME_SIZE)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == '@';
        if (!ok)
            return false;
    }
    return true;
}

static int apply_pod(const struct fw_options *o, struct fw_text *t, char *err, size_t err_size)
{
    char comment[COMMENT_TEXT];
    struct cidr_sets sets;

    for (size_t i = 0; i < o->n_interfaces; i++) {
        if (!ifname_ok(o->interfaces[i])) {
            snprintf(err, err_size, "--interface '%s' is not an interface name", o->interfaces[i]);
            return -1;
        }
    }
    if (o->mode == FW_MODE_ISOLATE && cidr_sets_build(o, &sets) < 0) {
        snprintf(err, err_size, "out of memory building the address sets");
        return -1;
    }
    table_comment(o, comment, sizeof comment);
    fw_text_add(t,
                "# sluice enforce: mode %s (one transaction: the old tables go, the new "
                "ones come)\n",
                fw_mode_name(o->mode));
    fw_text_add(t,
                "add table inet " FW_TABLE "\ndelete table inet " FW_TABLE "\n"
                "add table netdev " FW_EGRESS_TABLE "\ndelete table netdev " FW_EGRESS_TABLE "\n");
    fw_text_add(t, "table inet " FW_TABLE " {\n\tcomment \"%s\"\n", comment);
    fw_text_add(t, "\tcounter dropped_ipv4 {\n\t}\n\tcounter dropped_ipv6 {\n\t}\n");
    if (o->mode == FW_MODE_ISOLATE)
        emit_isolate_sets(&sets, t);
    emit_nat_chain(o, t);
    emit_output_accepts(o, t);
    if (o->mode == FW_MODE_ISOLATE)
        emit_isolate_rules(o, t);
    fw_text_add(t, "\t\tgoto refuse\n\t}\n");
    emit_refuse_chain(t);
    fw_text_add(t, "}\n");
    emit_egress_table(o, t);
    if (o->mode == FW_MODE_ISOLATE)
        cidr_sets_free(&sets);
    return 0;
}

/* ---- host ---------------------------------------------------------------- */

/* ctr4_198_51_100_130, ctr6_2001_db8__5: one chain per container address;
 * the mapping from address text is one to one. */
static void container_chain(const struct cidr *c, char *buf, size_t size)
{
    char a[ADDR_TEXT];
    addr_text(c->family, c->bytes, a, sizeof a);
    for (char *p = a; *p; p++)
        if (*p == '.' || *p == ':')
            *p = '_';
    snprintf(buf, size, "ctr%s_%s", c->family == AF_INET6 ? "6" : "4", a);
}

static void host_skeleton(struct fw_text *t)
{
    fw_text_add(t, "add table inet " FW_TABLE " { comment \"sluice mode=host\"; }\n"
                   "add counter inet " FW_TABLE " dropped_host\n"
                   "add map inet " FW_TABLE " containers4 { type ipv4_addr : verdict; }\n"
                   "add map inet " FW_TABLE " containers6 { type ipv6_addr : verdict; }\n");
    static const char *const hooks[] = {"forward", "input"};
    for (size_t i = 0; i < 2; i++)
        fw_text_add(t,
                    "add chain inet " FW_TABLE " host_%s { type filter hook %s priority -1; "
                    "policy accept; }\n"
                    "flush chain inet " FW_TABLE " host_%s\n"
                    "add rule inet " FW_TABLE " host_%s ip saddr vmap @containers4\n"
                    "add rule inet " FW_TABLE " host_%s ip6 saddr vmap @containers6\n",
                    hooks[i], hooks[i], hooks[i], hooks[i], hooks[i]);
}

static int apply_host(const struct fw_options *o, struct fw_text *t, char *err, size_t err_size)
{
    char chain[CHAIN_NAME], ca[ADDR_TEXT], pa[ADDR_TEXT], da[ADDR_TEXT];
    if (!o->has_container) {
        snprintf(err, err_size, "host mode applies rules per container: give --container-ip IP");
        return -1;
    }
    const char *fam = l3(o->container.family);
    const char *v = o->container.family == AF_INET6 ? "6" : "4";
    container_chain(&o->container, chain, sizeof chain);
    addr_text(o->container.family, o->container.bytes, ca, sizeof ca);
    addr_text(o->proxy_addr.family, o->proxy_addr.bytes, pa, sizeof pa);
    fw_text_add(t,
                "# sluice enforce: mode host, container %s (its chain is replaced; other "
                "containers keep theirs)\n",
                ca);
    host_skeleton(t);
    fw_text_add(t,
                "add chain inet " FW_TABLE " %s\n"
                "flush chain inet " FW_TABLE " %s\n"
                "add rule inet " FW_TABLE " %s ct state established,related accept\n"
                "add rule inet " FW_TABLE " %s %s daddr %s tcp dport %u accept\n",
                chain, chain, chain, chain, fam, pa, (unsigned)o->proxy_port);
    if (o->has_dns && o->dns_addr.family == o->container.family) {
        addr_text(o->dns_addr.family, o->dns_addr.bytes, da, sizeof da);
        fw_text_add(t,
                    "add rule inet " FW_TABLE " %s %s daddr %s meta l4proto { tcp, udp } th "
                    "dport %u accept\n",
                    chain, fam, da, (unsigned)o->dns_port);
    }
    fw_text_add(t,
                "add rule inet " FW_TABLE " %s counter name \"dropped_host\"\n"
                "add rule inet " FW_TABLE " %s limit rate " FW_LOG_RATE
                " log prefix \"" FW_LOG_PREFIX "\"\n"
                "add rule inet " FW_TABLE " %s drop\n"
                "add element inet " FW_TABLE " containers%s { %s : goto %s }\n",
                chain, chain, chain, v, ca, chain);
    return 0;
}

static int remove_host_container(const struct fw_options *o, struct fw_text *t)
{
    char chain[CHAIN_NAME], ca[ADDR_TEXT];
    const char *v = o->container.family == AF_INET6 ? "6" : "4";
    container_chain(&o->container, chain, sizeof chain);
    addr_text(o->container.family, o->container.bytes, ca, sizeof ca);
    /* Made to exist first, so the deletes succeed whether or not the
     * container had rules: one transaction, nothing left behind. */
    fw_text_add(t,
                "# sluice enforce: remove the rules of container %s only\n"
                "add table inet " FW_TABLE "\n"
                "add map inet " FW_TABLE " containers%s { type ipv%s_addr : verdict; }\n"
                "add chain inet " FW_TABLE " %s\n"
                "flush chain inet " FW_TABLE " %s\n"
                "add element inet " FW_TABLE " containers%s { %s : goto %s }\n"
                "delete element inet " FW_TABLE " containers%s { %s }\n"
                "delete chain inet " FW_TABLE " %s\n",
                ca, v, v, chain, chain, v, ca, chain, v, ca, chain);
    return 0;
}

/* ---- entry points -------------------------------------------------------- */

int fw_ruleset_apply(const struct fw_options *o, struct fw_text *out, char *err, size_t err_size)
{
    int rc;
    if (fw_options_check(o, err, err_size) < 0)
        return -1;
    rc = o->mode == FW_MODE_HOST ? apply_host(o, out, err, err_size)
                                 : apply_pod(o, out, err, err_size);
    if (rc == 0 && out->overflow) {
        snprintf(err, err_size, "the ruleset is larger than %zu bytes", out->size);
        return -1;
    }
    return rc;
}

int fw_ruleset_remove(const struct fw_options *o, struct fw_text *out, char *err, size_t err_size)
{
    if (o->mode == FW_MODE_HOST && o->has_container)
        remove_host_container(o, out);
    else
        fw_text_add(out, "# sluice enforce: remove sluice's tables (and nothing else)\n"
                         "add table inet " FW_TABLE "\ndelete table inet " FW_TABLE "\n"
                         "add table netdev " FW_EGRESS_TABLE
                         "\ndelete table netdev " FW_EGRESS_TABLE "\n");
    if (out->overflow) {
        snprintf(err, err_size, "the script is larger than %zu bytes", out->size);
        return -1;
    }
    return 0;
}

static void learn_line(struct fw_text *t, const char *verb, const struct fw_learned *e, size_t n,
                       int family, bool with_timeout)
{
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        char a[ADDR_TEXT];
        if (e[i].family != family)
            continue;
        addr_text(family, e[i].addr, a, sizeof a);
        if (first)
            fw_text_add(t, "%s element inet " FW_TABLE " allow%s { ", verb,
                        family == AF_INET6 ? "6" : "4");
        fw_text_add(t, "%s%s . %u", first ? "" : ", ", a, (unsigned)e[i].port);
        if (with_timeout)
            fw_text_add(t, " timeout %us", (unsigned)(e[i].timeout ? e[i].timeout : 1));
        first = false;
    }
    if (!first)
        fw_text_add(t, " }\n");
}

int fw_ruleset_learn(const struct fw_learned *e, size_t n, struct fw_text *out)
{
    static const int fams[] = {AF_INET, AF_INET6};
    if (n == 0 || n > FW_MAX_LEARN_BATCH)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (e[i].family != AF_INET && e[i].family != AF_INET6)
            return -1;
    for (size_t f = 0; f < 2; f++) {
        learn_line(out, "add", e, n, fams[f], true);
        learn_line(out, "delete", e, n, fams[f], false);
        learn_line(out, "add", e, n, fams[f], true);
    }
    return out->overflow ? -1 : 0;
}

/* ---- iptables fallback (uid mode) ---------------------------------------- */

int fw_ruleset_iptables(const struct fw_options *o, int family, bool jump_filter, bool jump_nat,
                        struct fw_text *t, char *err, size_t err_size)
{
    uint16_t lp[FW_MAX_LOCAL_PORTS + 2];
    size_t nlp;
    bool v6 = family == AF_INET6;
    const char *lo = v6 ? "::1/128" : "127.0.0.0/8";
    char a[ADDR_TEXT];

    if (fw_options_check(o, err, err_size) < 0)
        return -1;
    if (o->mode != FW_MODE_UID) {
        snprintf(err, err_size, "the iptables fallback does --mode uid only; %s needs nftables",
                 fw_mode_name(o->mode));
        return -1;
    }
    if (o->has_proxy_addr) {
        /* iptables has no egress hook to mark for; keep the gateway layout
         * on nftables rather than half of it. */
        snprintf(err, err_size, "--proxy-addr (a proxy outside the pod) needs nftables");
        return -1;
    }
    nlp = local_ports(o, lp);
    fw_text_add(t, "*filter\n:" FW_IPT_CHAIN " - [0:0]\n:" FW_IPT_DROP_CHAIN " - [0:0]\n");
    fw_text_add(t,
                "-A " FW_IPT_CHAIN " -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
                "-A " FW_IPT_CHAIN " -m mark --mark 0x%x -j ACCEPT\n",
                (unsigned)o->mark);
    if (o->has_uid)
        fw_text_add(t, "-A " FW_IPT_CHAIN " -m owner --uid-owner %u -j ACCEPT\n", (unsigned)o->uid);
    for (size_t i = 0; i < nlp; i++)
        fw_text_add(t, "-A " FW_IPT_CHAIN " -d %s -p tcp --dport %u -j ACCEPT\n", lo,
                    (unsigned)lp[i]);
    if (o->has_dns && (o->dns_addr.family == AF_INET6) == v6) {
        addr_text(o->dns_addr.family, o->dns_addr.bytes, a, sizeof a);
        fw_text_add(t,
                    "-A " FW_IPT_CHAIN " -d %s -p udp --dport %u -j ACCEPT\n"
                    "-A " FW_IPT_CHAIN " -d %s -p tcp --dport %u -j ACCEPT\n",
                    a, (unsigned)o->dns_port, a, (unsigned)o->dns_port);
    }
    if (v6)
        fw_text_add(t, "-A " FW_IPT_CHAIN " -p ipv6-icmp --icmpv6-type neighbour-solicitation "
                       "-j ACCEPT\n"
                       "-A " FW_IPT_CHAIN " -p ipv6-icmp --icmpv6-type neighbour-advertisement "
                       "-j ACCEPT\n"
                       "-A " FW_IPT_CHAIN " -p ipv6-icmp --icmpv6-type router-solicitation "
                       "-j ACCEPT\n");
    fw_text_add(t, "-A " FW_IPT_CHAIN " -j " FW_IPT_DROP_CHAIN "\n"
                   "-A " FW_IPT_DROP_CHAIN
                   " -m limit --limit 10/sec -j LOG --log-prefix \"" FW_LOG_PREFIX "\"\n"
                   "-A " FW_IPT_DROP_CHAIN " -j DROP\n");
    if (!jump_filter)
        fw_text_add(t, "-I OUTPUT 1 -j " FW_IPT_CHAIN "\n");
    fw_text_add(t,
                "COMMIT\n*nat\n:" FW_IPT_NAT_CHAIN " - [0:0]\n"
                "-A " FW_IPT_NAT_CHAIN " -m mark --mark 0x%x -j RETURN\n",
                (unsigned)o->mark);
    if (o->has_uid)
        fw_text_add(t, "-A " FW_IPT_NAT_CHAIN " -m owner --uid-owner %u -j RETURN\n",
                    (unsigned)o->uid);
    if (o->has_dns && (o->dns_addr.family == AF_INET6) == v6) {
        char to[ADDR_TEXT + 8];
        if (v6)
            snprintf(to, sizeof to, "[%s]:%u", a, (unsigned)o->dns_port);
        else
            snprintf(to, sizeof to, "%s:%u", a, (unsigned)o->dns_port);
        fw_text_add(t,
                    "-A " FW_IPT_NAT_CHAIN " -p udp --dport 53 -j DNAT --to-destination %s\n"
                    "-A " FW_IPT_NAT_CHAIN " -p tcp --dport 53 -j DNAT --to-destination %s\n",
                    to, to);
    }
    if (o->transparent)
        fw_text_add(t,
                    "-A " FW_IPT_NAT_CHAIN " ! -d %s -p tcp --dport 80 -j REDIRECT --to-ports %u\n"
                    "-A " FW_IPT_NAT_CHAIN
                    " ! -d %s -p tcp --dport 443 -j REDIRECT --to-ports %u\n",
                    lo, (unsigned)o->proxy_port, lo, (unsigned)o->proxy_port);
    if (!jump_nat)
        fw_text_add(t, "-I OUTPUT 1 -j " FW_IPT_NAT_CHAIN "\n");
    fw_text_add(t, "COMMIT\n");
    if (t->overflow) {
        snprintf(err, err_size, "the iptables rules are larger than %zu bytes", t->size);
        return -1;
    }
    return 0;
}

int fw_ruleset_iptables_remove(int family, bool jump_filter, bool jump_nat, struct fw_text *t)
{
    (void)family;
    /* Declaring a chain flushes it under --noflush, so -X always finds an
     * empty, unreferenced chain, whether or not it existed. */
    fw_text_add(t, "*filter\n");
    if (jump_filter)
        fw_text_add(t, "-D OUTPUT -j " FW_IPT_CHAIN "\n");
    fw_text_add(t, ":" FW_IPT_CHAIN " - [0:0]\n:" FW_IPT_DROP_CHAIN " - [0:0]\n"
                   "-X " FW_IPT_CHAIN "\n-X " FW_IPT_DROP_CHAIN "\nCOMMIT\n*nat\n");
    if (jump_nat)
        fw_text_add(t, "-D OUTPUT -j " FW_IPT_NAT_CHAIN "\n");
    fw_text_add(t, ":" FW_IPT_NAT_CHAIN " - [0:0]\n-X " FW_IPT_NAT_CHAIN "\nCOMMIT\n");
    return t->overflow ? -1 : 0;
}
