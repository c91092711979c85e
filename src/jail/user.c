/* user: the sudo caller's identity, looked up before the jail exists and
 * taken on just before exec. */
#include "jail/user.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int id_from_env(const char *name, unsigned long *out, char *err, size_t err_size)
{
    const char *text = getenv(name);
    char *end;
    errno = 0;
    unsigned long v = text ? strtoul(text, &end, 10) : 0;
    if (text == NULL || errno || end == text || *end || text[0] < '0' || text[0] > '9' ||
        v >= (unsigned long)UINT_MAX) {
        snprintf(err, err_size, "%s='%s' is not a user or group ID (use --keep-root to run the "
                 "command as root)", name, text ? text : "");
        return -1;
    }
    *out = v;
    return 0;
}

int jail_user_from_sudo(struct jail_user *u, char *err, size_t err_size)
{
    memset(u, 0, sizeof *u);
    if (geteuid() != 0 || getenv("SUDO_UID") == NULL || getenv("SUDO_GID") == NULL)
        return 0;
    unsigned long uid, gid;
    if (id_from_env("SUDO_UID", &uid, err, err_size) < 0 ||
        id_from_env("SUDO_GID", &gid, err, err_size) < 0)
        return -1;
    if (uid == 0)
        return 0; /* sudo from root: nothing to give up */
    struct passwd *pw = getpwuid((uid_t)uid);
    if (pw == NULL) {
        snprintf(err, err_size, "SUDO_UID=%lu: no such user (use --keep-root to run the command "
                 "as root)", uid);
        return -1;
    }
    u->uid = (uid_t)uid;
    u->gid = (gid_t)gid;
    snprintf(u->name, sizeof u->name, "%s", pw->pw_name);
    snprintf(u->home, sizeof u->home, "%s", pw->pw_dir);
    /* After the copies: getpwuid reuses one buffer. */
    struct passwd *root = getpwuid(0);
    snprintf(u->root_home, sizeof u->root_home, "%s", root ? root->pw_dir : "/root");
    u->n_groups = JAIL_USER_MAX_GROUPS;
    if (getgrouplist(u->name, u->gid, u->groups, &u->n_groups) < 0) {
        snprintf(err, err_size, "user %s is in more than %d groups", u->name,
                 JAIL_USER_MAX_GROUPS);
        return -1;
    }
    u->set = true;
    return 0;
}

/* Whether an environment variable names root, as sudo leaves it. */
static bool says_root(const char *name, const char *root_value)
{
    const char *v = getenv(name);
    return v == NULL || strcmp(v, root_value) == 0;
}

int jail_user_env(const struct jail_user *u)
{
    if (!u->set)
        return 0;
    if (says_root("HOME", u->root_home) && setenv("HOME", u->home, 1) < 0)
        return -1;
    if (says_root("USER", "root") && setenv("USER", u->name, 1) < 0)
        return -1;
    if (says_root("LOGNAME", "root") && setenv("LOGNAME", u->name, 1) < 0)
        return -1;
    return 0;
}

int jail_user_become(const struct jail_user *u, char *err, size_t err_size)
{
    if (!u->set)
        return 0;
    if (setgroups((size_t)u->n_groups, u->groups) < 0 || setresgid(u->gid, u->gid, u->gid) < 0 ||
        setresuid(u->uid, u->uid, u->uid) < 0) {
        snprintf(err, err_size, "becoming user %s (%lu:%lu): %s", u->name, (unsigned long)u->uid,
                 (unsigned long)u->gid, strerror(errno));
        return -1;
    }
    return 0;
}
