/* cliopt: checked numeric command-line values, one message format for all
 * subcommands ("sluice proxy: --workers must be a number from 1 to 64"). */
#ifndef SLUICE_CORE_CLIOPT_H
#define SLUICE_CORE_CLIOPT_H

/* The whole text must be a decimal number within [min, max]; otherwise a
 * message naming cmd and the option goes to stderr and -1 is returned. */
int cliopt_long(const char *cmd, const char *name, const char *text, long min, long max,
                long *out);

/* A firewall mark as firewalls write it: decimal or 0x hex, 32 bits. */
int cliopt_mark(const char *cmd, const char *name, const char *text, unsigned int *out);

#endif
