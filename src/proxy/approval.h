/* approval: `prompt` decisions. A request whose verdict is prompt waits,
 * parked on its worker, until an operator answers the question it joined
 * (admin API, or the approver socket of `sluice run --prompt`), or until the
 * question times out (then deny).
 *
 * Questions are shared by all workers under one lock; concurrent requests
 * from one client address for the same destination join one question.
 * Answers for the run (allow or deny) are remembered per client address
 * and destination until the policy changes. */
#ifndef SLUICE_PROXY_APPROVAL_H
#define SLUICE_PROXY_APPROVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct event_base;

#define APPROVAL_ID_LEN 8 /* hex digits */
#define APPROVAL_DEFAULT_TIMEOUT_S 60
#define APPROVAL_REASON_MAX 96

/* Before the workers start. timeout_s: how long a question stays open;
 * admin_api: whether the admin API can answer (enabled, with a token). */
void approval_configure(int timeout_s, bool admin_api);
/* The approver socket (SOCK_STREAM): one JSON line out per question, one
 * JSON line in per answer, read on base (the admin's loop). */
int approval_attach_fd(struct event_base *base, int fd, char *err, size_t err_size);
/* At shutdown, after the workers stopped. */
void approval_shutdown(void);
/* The live policy changed: remembered answers are forgotten. */
void approval_forget(void);

/* Worker side. Call when c->decision.verdict is VERDICT_PROMPT, before
 * anything of the request is consumed. Returns true when the request is
 * parked (the caller returns at once; the whole request head is read again
 * when the answer comes). Otherwise the verdict is now ALLOW or DENY with
 * c->approval_reason saying who decided, or still PROMPT when nobody could
 * ever answer (the caller denies). */
bool approval_wait(struct conn *c);
/* A parked connection goes away (client closed, shutdown). */
void approval_conn_closed(struct conn *c);
/* The parked connection's timer fired: the question may have expired. */
void approval_timer(struct conn *c);

/* Admin side: pending questions as a JSON array text (malloc'd). */
char *approval_list_json(void);

enum approval_result {
    APPROVAL_OK,
    APPROVAL_UNKNOWN,  /* no such question */
    APPROVAL_ANSWERED, /* answered (or expired) already */
};

enum approval_via {
    APPROVAL_VIA_ADMIN,
    APPROVAL_VIA_TERMINAL,
};

/* Answers question id; note (may be NULL) replaces the reason text. */
enum approval_result approval_answer(const char *id, bool allow, bool for_run,
                                     enum approval_via via, const char *note);

/* Pure helpers, for the unit tests too. */
/* Parses {"decision":"allow"|"deny","scope":"once"|"run"} (scope optional,
 * "once" by default). 0, or -1 with a message in err. */
int approval_parse_answer(const char *json, size_t len, bool *allow, bool *for_run, char *err,
                          size_t err_size);
/* The reason text of an answer. */
void approval_reason_text(bool allow, bool for_run, enum approval_via via, char *out,
                          size_t size);
bool approval_id_valid(const char *id);

#endif
