/* jail seccomp: the last thing the child does before exec. Everything is
 * allowed except the few kernel interfaces that reach around a network
 * namespace or that the jail's capability drop does not already shut:
 * socket families other than unix/inet/inet6/netlink (AF_VSOCK is not
 * namespaced and talks to the hypervisor; AF_PACKET, AF_BLUETOOTH, AF_CAN
 * and the rest have no business in a jailed command), raw sockets, io_uring
 * (its own socket/connect operations never pass through this filter), new
 * user namespaces (where capabilities come back), setns, bpf,
 * perf_event_open, userfaultfd, the keyrings (not namespaced) and TIOCSTI
 * (typing into the terminal a --prompt question is asked on). Foreign
 * system-call ABIs (i386 `int 0x80`, x32) are not in the filter at all, so
 * they could not be checked: they kill the process.
 *
 * Each refusal carries the errno a program sees on a kernel without the
 * feature, so well-behaved programs fall back instead of failing oddly. */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "core/seccomp_net.h"
#include "jail/jail.h"

struct refusal {
    int nr;
    int err;
};

/* Refused outright, whatever the arguments. */
static const struct refusal refused[] = {
    /* io_uring's own socket and connect operations bypass this filter. */
    {SCMP_SYS(io_uring_setup), ENOSYS},
    {SCMP_SYS(io_uring_enter), ENOSYS},
    {SCMP_SYS(io_uring_register), ENOSYS},
    /* Its flags live in a structure seccomp cannot read: ENOSYS makes libc
     * fall back to clone(), whose flags it can. */
    {SCMP_SYS(clone3), ENOSYS},
    /* Joining another process's namespaces (its network namespace, or a
     * user namespace of the same user where capabilities come back). */
    {SCMP_SYS(setns), EPERM},
    /* Kernel attack surface a jailed command does not need. */
    {SCMP_SYS(bpf), EPERM},
    {SCMP_SYS(perf_event_open), EPERM},
    {SCMP_SYS(userfaultfd), EPERM},
    /* Keyrings are not namespaced: the caller's session keys are there. */
    {SCMP_SYS(keyctl), EPERM},
    {SCMP_SYS(add_key), EPERM},
    {SCMP_SYS(request_key), EPERM},
};

/* A new user namespace gives back every capability inside it (and with
 * them, new network namespaces and raw sockets there): EPERM, as where
 * user namespaces are switched off. The flags are clone's and unshare's
 * first argument on x86_64 and arm64. */
static int refuse_new_userns(scmp_filter_ctx sc)
{
    const int nrs[] = {SCMP_SYS(clone), SCMP_SYS(unshare)};
    for (size_t i = 0; i < sizeof nrs / sizeof nrs[0]; i++)
        if (seccomp_rule_add(sc, SCMP_ACT_ERRNO(EPERM), nrs[i], 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)) < 0)
            return -1;
    return 0;
}

/* TIOCSTI types into a terminal's input: CMD shares the one the --prompt
 * prompter reads its answers from, so it could answer its own question.
 * The request is an int in the kernel, whatever the register's upper half. */
static int refuse_tiocsti(scmp_filter_ctx sc)
{
    return seccomp_rule_add(sc, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
}

int jail_child_seccomp(char *err, size_t err_size)
{
    int rc = -1;
    scmp_filter_ctx sc = seccomp_init(SCMP_ACT_ALLOW);
    if (sc == NULL) {
        snprintf(err, err_size, "seccomp: seccomp_init failed");
        return -1;
    }
    /* Only the native ABI is in the filter; a call through another one
     * (int 0x80, x32 numbers) would go unchecked, so it kills. */
    if (seccomp_attr_set(sc, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0)
        goto build_failed;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (seccomp_rule_add(sc, SCMP_ACT_ERRNO(refused[i].err), refused[i].nr, 0) < 0)
            goto build_failed;
    if (seccomp_net_only_ip_sockets(sc) < 0 || refuse_new_userns(sc) < 0 ||
        refuse_tiocsti(sc) < 0)
        goto build_failed;
    int r = seccomp_load(sc);
    if (r < 0) {
        snprintf(err, err_size, "seccomp: loading the filter: %s", strerror(-r));
        goto out;
    }
    rc = 0;
    goto out;
build_failed:
    snprintf(err, err_size, "seccomp: building the filter failed");
out:
    seccomp_release(sc);
    return rc;
}
