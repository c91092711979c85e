/* netaddr: "IP:PORT" listen addresses as users write them on the command
 * line ("127.0.0.1:8080", "[::1]:8081", "0.0.0.0:53"). */
#ifndef SLUICE_CORE_NETADDR_H
#define SLUICE_CORE_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Parses text into ss. Returns 0, or -1 with a message in err. */
int netaddr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len, char *err,
                  size_t err_size);
/* Formats ss as "IP:PORT" / "[IP]:PORT". */
void netaddr_format(const struct sockaddr_storage *ss, char *buf, size_t size);

#endif
