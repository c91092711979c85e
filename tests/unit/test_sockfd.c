/* sockfd: "fd:N" arguments are checked before anything serves on them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "core/sockfd.h"

#define ERR_SIZE 256
#define ARG_SIZE 32

/* A socket of type on 127.0.0.1, any port; listening when asked. */
static int loop_socket(int type, int do_listen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, type, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    if (do_listen)
        assert_int_equal(listen(fd, 4), 0);
    return fd;
}

static int parse(int fd_number, int type, int *fd, struct sockaddr_storage *ss, char *err)
{
    char arg[ARG_SIZE];
    socklen_t len;
    snprintf(arg, sizeof arg, "fd:%d", fd_number);
    return sockfd_parse(arg, type, fd, ss, &len, err, ERR_SIZE);
}

static void test_listening_tcp_and_bound_udp(void **state)
{
    (void)state;
    char err[ERR_SIZE];
    struct sockaddr_storage ss;
    int fd = -1;
    int tcp = loop_socket(SOCK_STREAM, 1), udp = loop_socket(SOCK_DGRAM, 0);
    assert_int_equal(parse(tcp, SOCK_STREAM, &fd, &ss, err), 0);
    assert_int_equal(fd, tcp);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_true(fcntl(tcp, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(tcp, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(parse(udp, SOCK_DGRAM, &fd, &ss, err), 0);
    assert_int_equal(fd, udp);
    close(tcp);
    close(udp);
}

static void test_refusals_name_the_cause(void **state)
{
    (void)state;
    char err[ERR_SIZE];
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;
    int unlistened = loop_socket(SOCK_STREAM, 0), udp = loop_socket(SOCK_DGRAM, 0);
    assert_int_equal(parse(unlistened, SOCK_STREAM, &fd, &ss, err), -1);
    assert_non_null(strstr(err, "not a listening TCP socket"));
    assert_int_equal(parse(udp, SOCK_STREAM, &fd, &ss, err), -1);
    assert_non_null(strstr(err, "not a listening TCP socket"));
    assert_int_equal(parse(STDERR_FILENO + 900, SOCK_STREAM, &fd, &ss, err), -1);
    assert_non_null(strstr(err, "not open"));
    const char *bad[] = {"fd:", "fd:x", "fd:-1", "fd:3x", "fd: 3", "fd:99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sockfd_parse(bad[i], SOCK_STREAM, &fd, &ss, &len, err, sizeof err), -1);
        assert_non_null(strstr(err, "fd:N"));
    }
    assert_true(sockfd_given("fd:3"));
    assert_false(sockfd_given("127.0.0.1:8080"));
    close(unlistened);
    close(udp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listening_tcp_and_bound_udp),
        cmocka_unit_test(test_refusals_name_the_cause),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
