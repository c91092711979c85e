/* cliopt: checked numeric command-line values. */
#include "core/cliopt.h"

#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

int cliopt_long(const char *cmd, const char *name, const char *text, long min, long max,
                long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "%s: %s must be a number from %ld to %ld, not '%s'\n", cmd, name, min, max,
                text);
        return -1;
    }
    *out = v;
    return 0;
}

int cliopt_mark(const char *cmd, const char *name, const char *text, unsigned int *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v > UINT32_MAX) {
        fprintf(stderr, "%s: %s must be a 32-bit number (e.g. 0x5c1ce), not '%s'\n", cmd, name,
                text);
        return -1;
    }
    *out = (unsigned int)v;
    return 0;
}
