/* pidns: clone into namespaces, and the init of the jail's PID namespace. */
#include "jail/pidns.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_INIT_FAILED 125

pid_t jail_clone(unsigned long flags)
{
    /* fork() cannot make the child PID 1 of a new namespace; clone() with
     * no new stack behaves like fork() otherwise. */
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

void jail_forwarded_signals(sigset_t *set)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    sigemptyset(set);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(set, sigs[i]);
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return EXIT_INIT_FAILED;
}

noreturn void jail_init_run(pid_t cmd)
{
    sigset_t set;
    jail_forwarded_signals(&set);
    sigaddset(&set, SIGCHLD);
    /* Blocked signals are queued even for a PID 1, which the kernel would
     * otherwise spare every signal it has no handler for. */
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0) {
            if (errno == EINTR)
                continue;
            _exit(EXIT_INIT_FAILED);
        }
        if (sig != SIGCHLD) {
            /* A terminal's ^C (si_code SI_KERNEL) reached CMD itself. */
            if (si.si_code <= 0)
                kill(cmd, sig);
            continue;
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            if (pid == cmd)
                _exit(exit_code(status));
    }
}
