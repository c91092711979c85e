/* cliopt: checked numeric command-line values. */
#include "core/cliopt.h"

#include <errno.h>
#include <stdio.h>
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
