/* admin: the operator's HTTP API (SPEC §4) on its own listener, never on
 * the proxy port. Everything but /healthz and /readyz needs the bearer token. */
#ifndef SLUICE_ADMIN_ADMIN_H
#define SLUICE_ADMIN_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct event_base;
struct policy;

/* How the admin API reaches the running proxy; all called on the admin's
 * event loop thread. */
struct admin_hooks {
    void *arg;
    /* Reload the policy file: 0, or -1 with a message in err. */
    int (*reload)(void *arg, char *err, size_t err_size);
    /* Replace the live policy with one the API validated (PUT/PATCH/DELETE
     * /policy); takes the reference either way. 0, or -1 with a message in
     * err when this process cannot enforce it (e.g. it needs a CA). */
    int (*install_policy)(void *arg, struct policy *p, char *err, size_t err_size);
    /* The live policy, referenced; the caller unrefs. */
    struct policy *(*current_policy)(void *arg);
    /* Whether policy, listeners and (where asked for) kernel rules are in
     * place. */
    bool (*ready)(void *arg);
    /* "proxy-only", "dns+proxy", "nftables", "isolate". */
    const char *(*enforcement_mode)(void *arg);
    /* The proxy's own confinement: "seccomp" or "off" (NULL hook: "off"). */
    const char *(*sandbox)(void *arg);
    time_t (*policy_loaded_at)(void *arg);
    /* The kernel enforcement around this process as malloc'd JSON
     * ({"mode": "nftables"|"isolate"|"none"|"unknown", "drops": {...}}), or
     * NULL; it overrides enforcement_mode when rules are in place. */
    char *(*kernel_status)(void *arg);
    /* The DNS filter (may be NULL when there is none). dns_status: the
     * "dns" object of GET /status as malloc'd JSON text, or NULL (then
     * "dns": null). dns_learned: GET /dns/learned as malloc'd JSON text,
     * or NULL (then 404, the filter is not running). The caller frees. */
    char *(*dns_status)(void *arg);
    char *(*dns_learned)(void *arg);
    /* prompt decisions (NULL when none can be pending). approvals_list:
     * the pending questions as malloc'd JSON array text. approval_answer:
     * 0 answered, 1 no such question, 2 answered already. */
    char *(*approvals_list)(void *arg);
    int (*approval_answer)(void *arg, const char *id, bool allow, bool for_run);
    /* Where PUT /policy finds the relative file names of "clients" (the
     * directory of the --policy file); NULL: absolute names only. */
    const char *policy_dir;
};

struct admin;

/* Listens on addr ("127.0.0.1:8081"). token_file may be NULL: then every
 * protected endpoint answers 403 naming the missing --admin-token option. */
int admin_start(struct event_base *base, const char *addr, const char *token_file,
                const struct admin_hooks *hooks, struct admin **out, char *err,
                size_t err_size);
void admin_stop(struct admin *a);
/* The port actually bound (addr may ask for port 0, as tests do). */
int admin_port(const struct admin *a);

#endif
