/* pidns: the jail's PID namespace. The child sluice forks is PID 1 there:
 * a small init that starts CMD, passes on the signals sent to sluice, reaps
 * what CMD orphans, and exits with CMD's status. When it exits the kernel
 * kills every process left in the namespace, so nothing CMD started in the
 * background outlives the run. */
#ifndef SLUICE_JAIL_PIDNS_H
#define SLUICE_JAIL_PIDNS_H

#include <signal.h>
#include <stdnoreturn.h>
#include <sys/types.h>

/* fork() into new namespaces (CLONE_NEW* flags): the child is PID 1 of its
 * PID namespace when flags has CLONE_NEWPID. Returns as fork() does. Only
 * while sluice is single-threaded (it bypasses glibc's fork handlers). */
pid_t jail_clone(unsigned long flags);

/* The signals init passes on to CMD (and sluice to init). */
void jail_forwarded_signals(sigset_t *set);

/* PID 1's loop, with jail_forwarded_signals and SIGCHLD blocked since
 * before cmd was forked: forwards signals sent by a process (not the
 * terminal's, which reached CMD already), reaps every child, and exits
 * with cmd's status (128+N when signal N killed it). */
noreturn void jail_init_run(pid_t cmd);

#endif
