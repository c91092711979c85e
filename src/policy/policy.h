/* policy: load, compile and decide.
 *
 * A compiled policy is immutable and reference counted: workers keep the one
 * they started a decision with while a reload swaps in a new one. Deciding is
 * pure (no I/O, no allocation) so fuzzers and unit tests drive it directly. */
#ifndef SLUICE_POLICY_POLICY_H
#define SLUICE_POLICY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policy/addr.h"
#include "policy/host.h"

#define POLICY_MAX_DNS_UPSTREAMS 8
#define POLICY_MAX_FILE_BYTES (4 * 1024 * 1024)

/* Which entry point asks; it sets the default ports of rules without
 * "ports" (CONNECT 443, HTTP 80, transparent both, DNS ignores ports). */
enum dest_kind {
    DEST_CONNECT,
    DEST_HTTP,
    DEST_TRANSPARENT,
    DEST_DNS,
};

/* The canonical destination every entry point builds before deciding. */
struct dest {
    enum dest_kind kind;
    struct host host;
    uint16_t port;      /* ignored for DEST_DNS */
    const char *method; /* NULL when not known (CONNECT before interception) */
    size_t method_len;
    const char *path; /* origin path without query; NULL when not known */
    size_t path_len;
};

enum verdict {
    VERDICT_ALLOW,
    VERDICT_DENY,
    VERDICT_PROMPT,
};

struct decision {
    enum verdict verdict; /* what to do; report mode turns deny into allow */
    bool would_deny;      /* report mode: the policy said deny */
    int rule;             /* index into rules, or -1 for the default */
    const char *reason;   /* the rule's "reason", or NULL; lives with the policy */
    /* The matching rule constrains methods/paths or injects headers, so the
     * tunnel must be intercepted and each inner request decided again. */
    bool needs_intercept;
};

enum dns_refusal {
    DNS_REFUSE_NXDOMAIN,
    DNS_REFUSE_REFUSED,
};

struct policy_dns {
    char upstream[POLICY_MAX_DNS_UPSTREAMS][64]; /* literal "IP" or "IP:port" */
    size_t n_upstream;
    enum dns_refusal refuse_with;
};

/* Where and why loading failed: "file:line:col: json.path: message". */
struct policy_error {
    char source[256];
    int line;   /* 0 when not applicable */
    int column; /* 0 when not applicable */
    char path[128];
    char message[512]; /* room for a client policy's own error inside */
};

struct policy;

struct policy *policy_load_file(const char *file, struct policy_error *err);
/* source names the text in error messages (a file name, "PUT /policy"). */
struct policy *policy_load_buffer(const char *json, size_t len, const char *source,
                                  struct policy_error *err);
/* As policy_load_buffer; dir is where the relative file names of
 * "clients" are found (NULL: only absolute ones are accepted). */
struct policy *policy_load_buffer_at(const char *json, size_t len, const char *source,
                                     const char *dir, struct policy_error *err);
/* A policy that denies everything; what a warm pod starts with. */
struct policy *policy_deny_all(void);
void policy_format_error(const struct policy_error *err, char *buf, size_t size);

struct policy *policy_ref(struct policy *p);
void policy_unref(struct policy *p);

/* First matching rule decides; the default when none matches. A rule that
 * constrains methods/paths matches a dest with method/path NULL only as an
 * allow-with-interception (deny rules with such constraints are skipped then;
 * they apply to each inner request). IP destinations match only address
 * rules; "*" matches any name, not addresses. */
void policy_decide(const struct policy *p, const struct dest *d, struct decision *out);

/* After DNS: may the proxy connect to this address for dest d, allowed by
 * decision dec? Special ranges are refused unless reach_ranges lists them or
 * (for an IP destination) the deciding CIDR rule lies within that range. */
bool policy_address_permitted(const struct policy *p, const struct dest *d,
                              const struct decision *dec, const struct sockaddr *sa,
                              const char **why);

/* Introspection for status, explain and logs. */
const char *policy_source(const struct policy *p); /* file name */
const char *policy_hash(const struct policy *p);   /* sha256 hex of the text */
bool policy_report_mode(const struct policy *p);
enum verdict policy_default(const struct policy *p);
size_t policy_rule_count(const struct policy *p);
/* Compact JSON of rule i with inject values redacted; lives with the policy. */
const char *policy_rule_text(const struct policy *p, size_t i);
const struct policy_dns *policy_dns(const struct policy *p);
bool policy_intercept_enabled(const struct policy *p);
/* Whether some rule needs interception (methods, paths, inject), so the
 * proxy must refuse to start without a CA. */
bool policy_needs_ca(const struct policy *p);

/* Added by the policy engine (not in the first draft of this header): */

/* Whether intercept.passthrough lists this (CONNECT) host: tunnel it
 * without interception. */
bool policy_passthrough(const struct policy *p, const struct host *h);

/* One "inject" header of a rule. value is the raw text as written, with
 * ${env:NAME} / ${file:PATH} unresolved; it is a secret template: never log
 * it. */
struct policy_header {
    const char *name;
    const char *value;
};

/* The inject headers of rule i (count returned, *headers set; 0 and NULL
 * when none). They live with the policy. */
size_t policy_rule_inject(const struct policy *p, size_t i, const struct policy_header **headers);

/* Whether rule i constrains methods or paths (a prompt for it asks about
 * each such request, not the whole host). */
bool policy_rule_constrained(const struct policy *p, size_t i);

/* Per-client policies ("clients"). */

/* The policy that decides for a connection or query from client: the
 * policy of the first client whose source covers the address (IPv4-mapped
 * IPv6 counts as IPv4), else p itself. Borrowed: it lives as long as p;
 * take a reference to keep it longer. No allocation, no lock. */
struct policy *policy_select(struct policy *p, const struct sockaddr *client);

struct policy_client_info {
    const char *name;
    const char *file;            /* as opened */
    const struct policy *policy; /* lives with the main policy */
    const struct cidr *sources;  /* CIDRs written and addresses names resolved to */
    size_t n_sources;
    const char *const *names; /* host-name sources as written */
    size_t n_names;
    const char *const *unresolved; /* names that resolved to nothing at load */
    size_t n_unresolved;
};

/* The text p was loaded from (NUL-terminated; *len set), secrets included:
 * only for building a changed policy (PATCH/DELETE /policy); never log or
 * serve it. Lives with the policy. */
const char *policy_text(const struct policy *p, size_t *len);

/* The canonical form of a rule target (host pattern or address), written to
 * out: "*", "*.name", ".name", "name" or "addr/prefix". 0, or -1 with why. */
int policy_target_canonical(const char *target, char *out, size_t size, const char **why);

size_t policy_client_count(const struct policy *p);
/* 0, or -1 when i is out of range. */
int policy_client_info(const struct policy *p, size_t i, struct policy_client_info *out);

#endif
