/* cmd: one entry point per subcommand, each in its own file under src/cmd.
 * Every entry returns the process exit status (SPEC §1: 0 ok, 1 runtime
 * failure, 2 bad usage or invalid policy). */
#ifndef SLUICE_CMD_CMD_H
#define SLUICE_CMD_CMD_H

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

int cmd_proxy_main(int argc, char **argv);
int cmd_policy_main(int argc, char **argv);
int cmd_status_main(int argc, char **argv);
int cmd_reload_main(int argc, char **argv);
int cmd_ca_main(int argc, char **argv);
int cmd_enforce_main(int argc, char **argv);
int cmd_run_main(int argc, char **argv);
int cmd_manifest_main(int argc, char **argv);
int cmd_approvals_main(int argc, char **argv);
int cmd_approve_main(int argc, char **argv);
int cmd_deny_main(int argc, char **argv);

/* status.c's admin client, for approvals.c: 0 with the answer's status and
 * body (malloc'd), or the exit status after saying why. */
int cmd_admin_request(const char *cmd, const char *url, const char *token_file,
                      const char *method, const char *path, int *status, char **body);

extern const char cmd_proxy_help[];
extern const char cmd_policy_help[];
extern const char cmd_status_help[];
extern const char cmd_reload_help[];
extern const char cmd_ca_help[];
extern const char cmd_enforce_help[];
extern const char cmd_run_help[];
extern const char cmd_manifest_help[];
extern const char cmd_approvals_help[];
extern const char cmd_approve_help[];
extern const char cmd_deny_help[];

#endif
