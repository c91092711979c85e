/* mounts: the jail's mount namespace — private mounts, a /proc of its own
 * PID namespace, the run's resolv.conf, and the run's CA bundle where
 * programs look for the system's. */
#ifndef SLUICE_JAIL_MOUNTS_H
#define SLUICE_JAIL_MOUNTS_H

#include <stddef.h>

/* Where distributions keep the system CA bundle; those that exist get the
 * run's bundle bound over them, for programs that ignore the variables. */
#define JAIL_SYSTEM_BUNDLES                                                                        \
    {                                                                                              \
        "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", NULL             \
    }

/* In PID 1 of the jail, after clone(CLONE_NEWNS | CLONE_NEWPID): every
 * mount private (nothing propagates back to the caller); resolv (unless
 * NULL) over /etc/resolv.conf and bundle (unless NULL) over the system
 * bundles. *bound: the first system bundle path now showing bundle (a path
 * anyone may read, unlike the run's directory), else bundle. 0, or -1 with
 * err. */
int jail_child_mounts(const char *resolv, const char *bundle, const char **bound, char *err,
                      size_t err_size);

/* A fresh /proc showing only the jail's processes. 0, or -1 with err: a
 * user namespace may not mount one where parts of /proc are hidden (as in
 * some containers), and the caller decides whether that is fatal. */
int jail_child_proc(char *err, size_t err_size);

#endif
