/* sockfd: listening sockets handed over as open descriptors ("fd:N").
 *
 * `sluice run` in rootless mode makes the proxy's and the DNS filter's
 * sockets inside the jail's network namespace and starts `sluice proxy` in
 * its own with those descriptors: a socket keeps the namespace it was made
 * in, so the proxy accepts the jail's connections and dials from outside. */
#ifndef SLUICE_CORE_SOCKFD_H
#define SLUICE_CORE_SOCKFD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define SOCKFD_PREFIX "fd:"

/* Whether text is written as an inherited descriptor ("fd:..."). */
bool sockfd_given(const char *text);

/* "fd:N" naming an open AF_INET/AF_INET6 socket of type (SOCK_STREAM: also
 * listening; SOCK_DGRAM: also bound). Sets it non-blocking and close-on-exec
 * and fills *fd and the address it is bound to. 0, or -1 with err. */
int sockfd_parse(const char *text, int type, int *fd, struct sockaddr_storage *ss, socklen_t *len,
                 char *err, size_t err_size);

#endif
