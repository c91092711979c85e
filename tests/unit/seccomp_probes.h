/* Shared by the unit tests of sluice's two seccomp filters (the jailed
 * command's, test_jail_seccomp.c, and the proxy's, test_proxy_sandbox.c):
 * each case forks, installs the filter in the child, makes one call and
 * exits with its errno (or is killed); the parent checks. A test file
 * defines install_filter() before including this. */
#ifndef SLUICE_TESTS_SECCOMP_PROBES_H
#define SLUICE_TESTS_SECCOMP_PROBES_H

#include <errno.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define OK_CODE 0
#define SETUP_FAILED 255

/* One probe: returns 0 when the call succeeded, else its errno. */
typedef int (*probe_fn)(void);

/* Installs the filter under test in this (child) process: 0, or -1. */
static int install_filter(void);

/* Runs probe in a filtered child; the wait status of that child. The
 * child exits with the probe's result (errno values fit in 8 bits). */
static inline int run_filtered(probe_fn probe)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A SIGSYS kill would otherwise leave a core file behind. */
        setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0});
        if (install_filter() < 0)
            _exit(SETUP_FAILED);
        _exit(probe());
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static inline void expect_errno(probe_fn probe, int want)
{
    int status = run_filtered(probe);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), want);
}

static inline int result(long rc)
{
    return rc < 0 ? errno : OK_CODE;
}

static inline int sock(int family, int type, int proto)
{
    int fd = socket(family, type, proto);
    if (fd >= 0)
        close(fd);
    return result(fd);
}

static inline int probe_packet(void)
{
    return sock(AF_PACKET, SOCK_RAW, 0);
}

static inline int probe_vsock(void)
{
    return sock(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

/* The family is an int: high bits must not smuggle AF_INET past a check. */
static inline int probe_family_high_bits(void)
{
    return result(syscall(SYS_socket, 0x100000000L | AF_PACKET, SOCK_RAW, 0));
}

static inline int probe_raw_inet(void)
{
    return sock(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 1);
}

static inline int probe_raw_inet6(void)
{
    return sock(AF_INET6, SOCK_RAW, 58);
}

static inline int probe_io_uring(void)
{
    char params[120] = {0}; /* struct io_uring_params */
    return result(syscall(SYS_io_uring_setup, 4, params));
}

static inline int probe_clone3(void)
{
    return result(syscall(SYS_clone3, NULL, 0));
}

static inline int probe_setns(void)
{
    return result(setns(-1, CLONE_NEWNET)); /* EBADF without the filter */
}

static inline int probe_bpf(void)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    return result(syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr));
}

static inline int probe_keyctl(void)
{
    return result(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
}

static inline void *thread_body(void *arg)
{
    return arg;
}

/* fork() and pthread_create() still work: clone3's ENOSYS makes glibc use
 * clone, and plain clone flags pass. */
static inline int probe_fork_and_thread(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return errno;
    if (pid == 0)
        _exit(0);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 100;
    pthread_t t;
    int rc = pthread_create(&t, NULL, thread_body, NULL);
    if (rc)
        return rc;
    pthread_join(t, NULL);
    return OK_CODE;
}

#endif
