/* user: whom CMD runs as in root mode. Started with sudo, sluice needs root
 * for the jail but CMD should be the person who typed the command: the user
 * named by SUDO_UID/SUDO_GID, with their groups and home. */
#ifndef SLUICE_JAIL_USER_H
#define SLUICE_JAIL_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JAIL_USER_MAX_GROUPS 256
#define JAIL_USER_TEXT 256

struct jail_user {
    bool set; /* false: CMD keeps sluice's own identity */
    uid_t uid;
    gid_t gid;
    gid_t groups[JAIL_USER_MAX_GROUPS];
    int n_groups;
    char name[JAIL_USER_TEXT];
    char home[JAIL_USER_TEXT];
    char root_home[JAIL_USER_TEXT]; /* HOME as sudo leaves it */
};

/* From SUDO_UID and SUDO_GID (when both are set and sluice runs as root),
 * looked up in the user database now, before any namespace exists. 0 (with
 * u->set false when there is no sudo caller), or -1 with err. */
int jail_user_from_sudo(struct jail_user *u, char *err, size_t err_size);

/* HOME, USER and LOGNAME for u where they still name root's (sudo keeps
 * root's by default). 0, or -1 when setenv fails. */
int jail_user_env(const struct jail_user *u);

/* In the process about to exec CMD, after the jail is set up: the groups,
 * GID and UID of u, for good (no way back to root). 0, or -1 with err. */
int jail_user_become(const struct jail_user *u, char *err, size_t err_size);

#endif
