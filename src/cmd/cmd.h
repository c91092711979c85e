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

extern const char cmd_proxy_help[];
extern const char cmd_policy_help[];
extern const char cmd_status_help[];
extern const char cmd_reload_help[];
extern const char cmd_ca_help[];
extern const char cmd_enforce_help[];
extern const char cmd_run_help[];

#endif
