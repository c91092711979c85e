/* sockfd: checking descriptors named on the command line before serving on
 * them, so a wrong number is an error at start rather than a silent hang. */
#include "core/sockfd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool sockfd_given(const char *text)
{
    return text && strncmp(text, SOCKFD_PREFIX, strlen(SOCKFD_PREFIX)) == 0;
}

static int int_opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, name, &v, &len) < 0)
        return -1;
    return v;
}

static int port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

int sockfd_parse(const char *text, int type, int *fd, struct sockaddr_storage *ss, socklen_t *len,
                 char *err, size_t err_size)
{
    const char *num = text + strlen(SOCKFD_PREFIX);
    const char *what = type == SOCK_STREAM ? "a listening TCP socket" : "a bound UDP socket";
    char *end;
    errno = 0;
    long n = strtol(num, &end, 10);
    if (!sockfd_given(text) || errno || end == num || *end || num[0] < '0' || num[0] > '9' ||
        n > INT_MAX) {
        snprintf(err, err_size, "'%s': write an inherited descriptor as fd:N (N a number)", text);
        return -1;
    }
    if (fcntl((int)n, F_GETFD) < 0) {
        snprintf(err, err_size, "%s: descriptor %ld is not open", text, n);
        return -1;
    }
    int got = int_opt((int)n, SOL_SOCKET, SO_TYPE);
    bool listening = type != SOCK_STREAM || int_opt((int)n, SOL_SOCKET, SO_ACCEPTCONN) == 1;
    memset(ss, 0, sizeof *ss);
    *len = sizeof *ss;
    if (got != type || !listening || getsockname((int)n, (struct sockaddr *)ss, len) < 0 ||
        (ss->ss_family != AF_INET && ss->ss_family != AF_INET6) || port_of(ss) == 0) {
        snprintf(err, err_size, "%s: descriptor %ld is not %s (IPv4 or IPv6)", text, n, what);
        return -1;
    }
    /* Ours from here: no child process gets it, and event loops need it
     * non-blocking (a blocking accept would stall a worker). */
    int fl = fcntl((int)n, F_GETFL);
    if (fl < 0 || fcntl((int)n, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl((int)n, F_SETFD, FD_CLOEXEC) < 0) {
        snprintf(err, err_size, "%s: %s", text, strerror(errno));
        return -1;
    }
    *fd = (int)n;
    return 0;
}
