/* janitor: a parent-death signal wakes it, so no descriptor has to be kept
 * from the other processes sluice starts, and how sluice dies (exit,
 * SIGKILL) does not matter. */
#include "jail/janitor.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define JANITOR_FDS 64 /* descriptors nftw may hold, and a fresh sluice holds */

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void jail_remove_tree(const char *dir)
{
    if (dir && dir[0])
        nftw(dir, remove_entry, JANITOR_FDS, FTW_DEPTH | FTW_PHYS);
}

int jail_janitor_start(const char *dir, char *err, size_t err_size)
{
    pid_t parent = getpid();
    sigset_t wake, old;
    sigemptyset(&wake);
    sigaddset(&wake, SIGUSR1);
    sigprocmask(SIG_BLOCK, &wake, &old);
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (pid > 0)
            return 0;
        snprintf(err, err_size, "fork: %s", strerror(errno));
        return -1;
    }
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    /* Off the terminal (a ^C for CMD is not for us) and off the caller's
     * pipes (whoever reads sluice's output must see EOF when it exits). */
    setsid();
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < JANITOR_FDS; fd++)
        if (fd != null)
            close(fd);
    for (int fd = 0; fd <= STDERR_FILENO && null >= 0; fd++)
        dup2(null, fd);
    /* The parent may be gone already (then no signal comes); a stray
     * SIGUSR1 while it lives changes nothing. */
    while (getppid() == parent) {
        siginfo_t si;
        sigwaitinfo(&wake, &si);
    }
    jail_remove_tree(dir);
    _exit(0);
}
