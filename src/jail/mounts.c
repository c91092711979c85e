/* mounts: bind mounts and /proc in the jail's own mount namespace. */
#include "jail/mounts.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

static int bind_file(const char *src, const char *dst, char *err, size_t err_size)
{
    if (mount(src, dst, NULL, MS_BIND, NULL) < 0) {
        snprintf(err, err_size, "bind-mounting %s on %s: %s", src, dst, strerror(errno));
        return -1;
    }
    return 0;
}

int jail_child_mounts(const char *resolv, const char *bundle, const char **bound, char *err,
                      size_t err_size)
{
    *bound = bundle;
    /* Private first, so the binds below never propagate to the caller. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        snprintf(err, err_size, "making mounts private: %s", strerror(errno));
        return -1;
    }
    if (resolv && bind_file(resolv, "/etc/resolv.conf", err, err_size) < 0)
        return -1;
    static const char *const bundles[] = JAIL_SYSTEM_BUNDLES;
    for (size_t i = 0; bundle && bundles[i]; i++) {
        struct stat sb;
        if (stat(bundles[i], &sb) < 0 || !S_ISREG(sb.st_mode))
            continue;
        if (bind_file(bundle, bundles[i], err, err_size) < 0)
            return -1;
        if (*bound == bundle)
            *bound = bundles[i];
    }
    return 0;
}

int jail_child_proc(char *err, size_t err_size)
{
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        snprintf(err, err_size, "mounting a fresh /proc: %s", strerror(errno));
        return -1;
    }
    return 0;
}
