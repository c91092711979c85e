/* proxy_clients: resolve the host-name sources of "clients" again while the
 * proxy runs (sluice proxy --clients-refresh). */
#ifndef SLUICE_CMD_PROXY_CLIENTS_H
#define SLUICE_CMD_PROXY_CLIENTS_H

struct event_base;

#define PROXY_CLIENTS_DEFAULT_REFRESH_S 30

/* Every refresh_s seconds (0: never), while the live policy is the one read
 * from policy_file and has name sources: load policy_file again and, when
 * its text and its clients' files are unchanged but the names now resolve
 * to other addresses, install it. 0, or -1 when the timer cannot be made. */
int proxy_clients_start(struct event_base *base, const char *policy_file, int refresh_s);
void proxy_clients_stop(void);

#endif
