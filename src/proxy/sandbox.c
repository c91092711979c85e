/* sandbox: the proxy's own seccomp filter (see sandbox.h). Everything is
 * allowed but what the running proxy never does, whatever its input:
 *
 * - killed at once (SIGSYS): running other code or reaching into another
 *   process. After start-up the proxy never execs, ptraces, touches another
 *   process's memory, loads kernel modules, kexecs or reboots; the only
 *   caller can be code an attacker injected, and a kill stops it at the
 *   first attempt and leaves a record (exit by SIGSYS, the audit log)
 *   instead of an errno to try the next trick with;
 * - refused with the errno a kernel without the feature gives: what a
 *   library may probe for (namespaces, mounts, bpf, io_uring, keyrings,
 *   unusual socket families), so a probe fails quietly, not the proxy.
 *
 * Threads created after the filter (none today) still work: clone3 gets
 * ENOSYS and glibc falls back to clone, whose flags the filter reads. */
#include "proxy/sandbox.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/seccomp_net.h"

struct refusal {
    int nr;
    int err; /* 0: kill the process */
};

static const struct refusal refused[] = {
#if !SLUICE_SANITIZED
    /* A shell, or any program: the proxy's own never runs another. */
    {SCMP_SYS(execve), 0},
    {SCMP_SYS(execveat), 0},
    /* Another process's memory (the signer's CA key, a workload's). */
    {SCMP_SYS(ptrace), 0},
#endif
    {SCMP_SYS(process_vm_readv), 0},
    {SCMP_SYS(process_vm_writev), 0},
    /* Code into or instead of the kernel. */
    {SCMP_SYS(init_module), 0},
    {SCMP_SYS(finit_module), 0},
    {SCMP_SYS(delete_module), 0},
    {SCMP_SYS(kexec_load), 0},
    {SCMP_SYS(kexec_file_load), 0},
    {SCMP_SYS(reboot), 0},
    /* Another process's descriptors; a file by handle, past every path
     * check (the classic container escape). */
    {SCMP_SYS(pidfd_getfd), EPERM},
    {SCMP_SYS(open_by_handle_at), EPERM},
    /* Mounts: a new root or a mount over /etc/resolv.conf, say. */
    {SCMP_SYS(mount), EPERM},
    {SCMP_SYS(umount2), EPERM},
    {SCMP_SYS(pivot_root), EPERM},
    {SCMP_SYS(chroot), EPERM},
    {SCMP_SYS(move_mount), EPERM},
    {SCMP_SYS(open_tree), EPERM},
    {SCMP_SYS(fsopen), EPERM},
    {SCMP_SYS(fsconfig), EPERM},
    {SCMP_SYS(fsmount), EPERM},
    {SCMP_SYS(fspick), EPERM},
    {SCMP_SYS(mount_setattr), EPERM},
    /* Namespaces: another network namespace is a way around its rules;
     * clone's namespace flags are refused below. */
    {SCMP_SYS(unshare), EPERM},
    {SCMP_SYS(setns), EPERM},
    /* Its flags live in a structure seccomp cannot read: ENOSYS makes libc
     * fall back to clone(), whose flags it can. */
    {SCMP_SYS(clone3), ENOSYS},
    /* io_uring's own socket and connect operations bypass this filter. */
    {SCMP_SYS(io_uring_setup), ENOSYS},
    {SCMP_SYS(io_uring_enter), ENOSYS},
    {SCMP_SYS(io_uring_register), ENOSYS},
    /* Kernel attack surface the proxy does not use (exploit helpers). */
    {SCMP_SYS(bpf), EPERM},
    {SCMP_SYS(perf_event_open), EPERM},
    {SCMP_SYS(userfaultfd), EPERM},
    {SCMP_SYS(keyctl), EPERM},
    {SCMP_SYS(add_key), EPERM},
    {SCMP_SYS(request_key), EPERM},
    {SCMP_SYS(swapon), EPERM},
    {SCMP_SYS(swapoff), EPERM},
    /* READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE: weaker exploit mitigations. */
    {SCMP_SYS(personality), EPERM},
};

/* The namespace flags clone() takes in its first argument (x86_64, arm64).
 * CLONE_NEWTIME is not among them: clone() reads that bit as part of the
 * exit signal; only clone3 and unshare take it, both refused whole. */
static const unsigned long clone_ns_flags[] = {
    CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET,
};

static atomic_bool active;

static uint32_t action(int err)
{
    return err ? SCMP_ACT_ERRNO((uint32_t)err) : SCMP_ACT_KILL_PROCESS;
}

/* clone() with any namespace flag: EPERM. Threads and fork pass. */
static int refuse_clone_namespaces(scmp_filter_ctx sc)
{
    for (size_t i = 0; i < sizeof clone_ns_flags / sizeof clone_ns_flags[0]; i++)
        if (seccomp_rule_add(sc, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i])) < 0)
            return -1;
    return 0;
}

int proxy_sandbox_install(char *err, size_t err_size)
{
    int rc = -1;
    scmp_filter_ctx sc = seccomp_init(SCMP_ACT_ALLOW);
    if (sc == NULL) {
        snprintf(err, err_size, "seccomp: seccomp_init failed");
        return -1;
    }
    /* Only the native ABI is in the filter; a call through another one
     * (int 0x80, x32 numbers) would go unchecked, so it kills. TSYNC puts
     * the filter on the workers and the DNS thread too, all at once, and
     * fails if one cannot take it. libseccomp sets no_new_privs. */
    if (seccomp_attr_set(sc, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0 ||
        seccomp_attr_set(sc, SCMP_FLTATR_CTL_TSYNC, 1) < 0)
        goto build_failed;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (seccomp_rule_add(sc, action(refused[i].err), refused[i].nr, 0) < 0)
            goto build_failed;
    if (seccomp_net_only_ip_sockets(sc) < 0 || refuse_clone_namespaces(sc) < 0)
        goto build_failed;
    int r = seccomp_load(sc);
    if (r < 0) {
        snprintf(err, err_size, "seccomp: loading the filter on every thread: %s", strerror(-r));
        goto out;
    }
    atomic_store(&active, true);
    rc = 0;
    goto out;
build_failed:
    snprintf(err, err_size, "seccomp: building the filter failed");
out:
    seccomp_release(sc);
    return rc;
}

bool proxy_sandbox_active(void)
{
    return atomic_load(&active);
}
