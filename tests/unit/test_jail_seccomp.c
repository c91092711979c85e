/* sluice run's seccomp filter, tried for real: each case forks, installs
 * the filter in the child (no privileges needed: no_new_privs first), makes
 * one call and reports its errno; the parent checks it. Calls the filter
 * leaves alone (fork, threads, inet and unix sockets) must still work. */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "jail/jail.h"

static int install_filter(void)
{
    char err[256];
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || jail_child_seccomp(err, sizeof err) < 0
               ? -1
               : 0;
}

#include "seccomp_probes.h"

#define X32_SYSCALL_BIT 0x40000000L

static int probe_bluetooth(void)
{
    return sock(AF_BLUETOOTH, SOCK_SEQPACKET, 0);
}
static int probe_can(void)
{
    return sock(AF_CAN, SOCK_RAW, 1);
}
static int probe_inet_sock_packet(void)
{
    return sock(AF_INET, SOCK_PACKET, 0);
}
static int probe_socketpair_inet(void)
{
    int sv[2];
    int rc = socketpair(AF_VSOCK, SOCK_STREAM, 0, sv);
    return result(rc);
}
static int probe_allowed_sockets(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return errno;
    close(sv[0]);
    close(sv[1]);
    int r;
    if ((r = sock(AF_INET, SOCK_STREAM, 0)) || (r = sock(AF_INET6, SOCK_DGRAM, 0)) ||
        (r = sock(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0)) || (r = sock(AF_UNIX, SOCK_DGRAM, 0)))
        return r;
    return OK_CODE;
}
static int probe_unshare_user(void)
{
    return result(unshare(CLONE_NEWUSER | CLONE_NEWNET));
}
static int probe_clone_user(void)
{
    long rc = syscall(SYS_clone, (long)(CLONE_NEWUSER | SIGCHLD), NULL, NULL, NULL, NULL);
    if (rc == 0)
        _exit(0);
    if (rc > 0)
        waitpid((pid_t)rc, NULL, 0);
    return result(rc);
}
static int probe_perf(void)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    if (fd >= 0)
        close((int)fd);
    return result(fd);
}
static int probe_userfaultfd(void)
{
    return result(syscall(SYS_userfaultfd, 0));
}

#if defined(__x86_64__)
static int probe_x32(void)
{
    return result(syscall(X32_SYSCALL_BIT | SYS_getpid));
}
static int probe_i386(void)
{
    long ret;
    /* i386 getpid (20) through the 32-bit entry point. */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    return ret > 0 ? OK_CODE : (int)-ret;
}
#endif

static void test_socket_families(void **state)
{
    (void)state;
    expect_errno(probe_packet, EAFNOSUPPORT);
    expect_errno(probe_vsock, EAFNOSUPPORT);
    expect_errno(probe_bluetooth, EAFNOSUPPORT);
    expect_errno(probe_can, EAFNOSUPPORT);
    expect_errno(probe_family_high_bits, EAFNOSUPPORT);
    expect_errno(probe_socketpair_inet, EAFNOSUPPORT);
    expect_errno(probe_allowed_sockets, OK_CODE);
}

static void test_raw_sockets(void **state)
{
    (void)state;
    expect_errno(probe_raw_inet, EPERM);
    expect_errno(probe_raw_inet6, EPERM);
    expect_errno(probe_inet_sock_packet, EPERM);
}

static void test_refused_calls(void **state)
{
    (void)state;
    expect_errno(probe_io_uring, ENOSYS);
    expect_errno(probe_clone3, ENOSYS);
    expect_errno(probe_unshare_user, EPERM);
    expect_errno(probe_clone_user, EPERM);
    expect_errno(probe_setns, EPERM);
    expect_errno(probe_bpf, EPERM);
    expect_errno(probe_perf, EPERM);
    expect_errno(probe_userfaultfd, EPERM);
    expect_errno(probe_keyctl, EPERM);
}

static void test_processes_and_threads_still_work(void **state)
{
    (void)state;
    expect_errno(probe_fork_and_thread, OK_CODE);
}

static void test_foreign_abi_kills(void **state)
{
    (void)state;
#if defined(__x86_64__)
    int status = run_filtered(probe_x32);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSYS);
    status = run_filtered(probe_i386);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSYS);
#else
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socket_families),
        cmocka_unit_test(test_raw_sockets),
        cmocka_unit_test(test_refused_calls),
        cmocka_unit_test(test_processes_and_threads_still_work),
        cmocka_unit_test(test_foreign_abi_kills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
