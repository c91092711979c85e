/* janitor: the run's temporary directory must not outlive `sluice run`,
 * even when it is SIGKILLed and cannot clean up itself (the per-run CA key
 * is in there). A tiny process waits for sluice to go and removes it. */
#ifndef SLUICE_JAIL_JANITOR_H
#define SLUICE_JAIL_JANITOR_H

#include <stddef.h>

/* Forks the janitor for dir, off the terminal: when sluice exits, however
 * it ends, the janitor removes dir and exits. 0, or -1 with err. */
int jail_janitor_start(const char *dir, char *err, size_t err_size);

/* Removes dir and everything in it, never following symlinks. */
void jail_remove_tree(const char *dir);

#endif
