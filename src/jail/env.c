/* jail env: what the child sees in its environment (SPEC §3) and the CA
 * bundle those variables name. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jail/jail.h"

#define COPY_BUF_SIZE 16384

static const char *const proxy_vars[] = {"HTTP_PROXY",  "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                                         "https_proxy", "all_proxy",   NULL};
static const char *const bundle_vars[] = {
    "SSL_CERT_FILE",  "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO", "PIP_CERT",       "AWS_CA_BUNDLE",      NULL};

int jail_env_apply(const char *proxy_url, const char *bundle)
{
    for (size_t i = 0; proxy_vars[i]; i++)
        if (setenv(proxy_vars[i], proxy_url, 1) < 0)
            return -1;
    if (setenv("NO_PROXY", JAIL_NO_PROXY, 1) < 0 || setenv("no_proxy", JAIL_NO_PROXY, 1) < 0)
        return -1;
    for (size_t i = 0; bundle && bundle_vars[i]; i++)
        if (setenv(bundle_vars[i], bundle, 1) < 0)
            return -1;
    return 0;
}

static int append_file(int out, const char *src, char *err, size_t err_size)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        snprintf(err, err_size, "%s: %s", src, strerror(errno));
        return -1;
    }
    char buf[COPY_BUF_SIZE];
    ssize_t n;
    char last = '\n';
    while ((n = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            snprintf(err, err_size, "writing the CA bundle: %s", strerror(errno));
            close(in);
            return -1;
        }
        last = buf[n - 1];
    }
    close(in);
    if (n < 0) {
        snprintf(err, err_size, "%s: %s", src, strerror(errno));
        return -1;
    }
    /* PEM blocks must start on their own line. */
    if (last != '\n' && write(out, "\n", 1) != 1) {
        snprintf(err, err_size, "writing the CA bundle: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int jail_bundle_write(const char *path, const char *const srcs[], char *err, size_t err_size)
{
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; srcs[i]; i++) {
        bool last = srcs[i + 1] == NULL;
        if (!last && access(srcs[i], R_OK) < 0)
            continue;
        if (append_file(out, srcs[i], err, err_size) < 0) {
            close(out);
            return -1;
        }
    }
    if (close(out) < 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}
