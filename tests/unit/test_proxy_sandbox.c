/* The proxy's own seccomp filter, tried for real: each case forks, installs
 * the filter in the child (libseccomp sets no_new_privs, so no privileges
 * are needed), makes one call and reports its errno or dies; the parent
 * checks. What the running proxy does (TCP with SO_MARK, netlink, unix
 * socket pairs, files, threads) must still work, and a thread started
 * before the filter must be under it too (TSYNC). */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/sandbox.h"

static int install_filter(void)
{
    char err[256];
    return proxy_sandbox_install(err, sizeof err) < 0 || !proxy_sandbox_active() ? -1 : 0;
}

#include "seccomp_probes.h"

#define ERR_SIZE 256

static void expect_killed(probe_fn probe)
{
    int status = run_filtered(probe);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSYS);
}

static int probe_execve(void)
{
    char *const argv[] = {"/bin/true", NULL};
    execve("/bin/true", argv, (char *const[]){NULL});
    return errno; /* reached only if /bin/true could not be run */
}
static int probe_execveat(void)
{
    char *const argv[] = {"true", NULL};
    return result(syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, (char *const[]){NULL}, 0));
}
/* A pid that is not there: ESRCH where ptrace is allowed (nothing stops). */
static int probe_ptrace(void)
{
    return result(ptrace(PTRACE_ATTACH, -1, NULL, NULL));
}
static int probe_process_vm_readv(void)
{
    char buf[8];
    struct iovec local = {buf, sizeof buf}, remote = {buf, sizeof buf};
    return result(process_vm_readv(getppid(), &local, 1, &remote, 1, 0));
}
static int probe_socketpair_vsock(void)
{
    int sv[2];
    return result(socketpair(AF_VSOCK, SOCK_STREAM, 0, sv));
}
static int probe_unshare_net(void)
{
    return result(unshare(CLONE_NEWNET));
}
static int probe_clone_net(void)
{
    long rc = syscall(SYS_clone, (long)(CLONE_NEWNET | SIGCHLD), NULL, NULL, NULL, NULL);
    if (rc == 0)
        _exit(0);
    if (rc > 0)
        waitpid((pid_t)rc, NULL, 0);
    return result(rc);
}
static int probe_mount(void)
{
    return result(mount("none", "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL));
}
static int probe_chroot(void)
{
    return result(chroot("/"));
}
static int probe_personality(void)
{
    return result(syscall(SYS_personality, 0x0400000 /* READ_IMPLIES_EXEC */));
}

/* What the proxy does at run time. SO_MARK needs CAP_NET_ADMIN: checked
 * only when the test runs as root, as the proxy marks upstreams there. */
static int probe_proxy_calls(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    unsigned int mark = 0x5c1ce;
    if (geteuid() == 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0)
        return errno;
    close(fd);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return errno;
    close(sv[0]);
    close(sv[1]);
    int r;
    if ((r = sock(AF_INET6, SOCK_DGRAM, 0)) || (r = sock(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0)))
        return r;
    int f = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return errno;
    close(f);
    return OK_CODE;
}

/* A thread started before the filter (as the workers are) waits, then
 * tries a packet socket after it: TSYNC must have put it under the filter. */
static int go[2];
static void *early_thread(void *arg)
{
    char c;
    if (read(go[0], &c, 1) != 1)
        return (void *)(intptr_t)100;
    return (void *)(intptr_t)sock(AF_PACKET, SOCK_RAW, 0);
}
static void test_threads_started_before_are_filtered(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[ERR_SIZE];
        pthread_t t;
        if (pipe(go) < 0 || pthread_create(&t, NULL, early_thread, NULL) != 0 ||
            proxy_sandbox_install(err, sizeof err) < 0 || write(go[1], "x", 1) != 1)
            _exit(SETUP_FAILED);
        void *ret;
        pthread_join(t, &ret);
        _exit((int)(intptr_t)ret);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), EAFNOSUPPORT);
}

static void test_code_execution_kills(void **state)
{
    (void)state;
    expect_killed(probe_process_vm_readv);
#if SLUICE_SANITIZED
    /* exec and ptrace stay allowed for the sanitizer runtime (sandbox.h). */
    expect_errno(probe_execve, OK_CODE); /* /bin/true's exit status */
    expect_errno(probe_execveat, OK_CODE);
    expect_errno(probe_ptrace, ESRCH);
#else
    expect_killed(probe_execve);
    expect_killed(probe_execveat);
    expect_killed(probe_ptrace);
#endif
}

static void test_socket_families(void **state)
{
    (void)state;
    expect_errno(probe_packet, EAFNOSUPPORT);
    expect_errno(probe_vsock, EAFNOSUPPORT);
    expect_errno(probe_family_high_bits, EAFNOSUPPORT);
    expect_errno(probe_socketpair_vsock, EAFNOSUPPORT);
    expect_errno(probe_raw_inet, EPERM);
    expect_errno(probe_raw_inet6, EPERM);
}

static void test_refused_calls(void **state)
{
    (void)state;
    expect_errno(probe_unshare_net, EPERM);
    expect_errno(probe_clone_net, EPERM);
    expect_errno(probe_clone3, ENOSYS);
    expect_errno(probe_setns, EPERM);
    expect_errno(probe_mount, EPERM);
    expect_errno(probe_chroot, EPERM);
    expect_errno(probe_io_uring, ENOSYS);
    expect_errno(probe_bpf, EPERM);
    expect_errno(probe_keyctl, EPERM);
    expect_errno(probe_personality, EPERM);
}

static void test_proxy_calls_still_work(void **state)
{
    (void)state;
    expect_errno(probe_proxy_calls, OK_CODE);
    expect_errno(probe_fork_and_thread, OK_CODE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_execution_kills),
        cmocka_unit_test(test_socket_families),
        cmocka_unit_test(test_refused_calls),
        cmocka_unit_test(test_proxy_calls_still_work),
        cmocka_unit_test(test_threads_started_before_are_filtered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
