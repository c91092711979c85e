/* dirwatch: inotify on a file's directory, debounced (see dirwatch.h). */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dirwatch.h"

#define DIRWATCH_EVENTS                                                                            \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB)
#define DIRWATCH_READ_SIZE 4096

struct dirwatch {
    int fd;
    char dir[PATH_MAX];
    uint64_t signature;
    struct event *readable;
    struct event *settle;
    void (*cb)(void *arg);
    void *arg;
};

/* FNV-1a, enough to notice a change; not a security boundary. */
static uint64_t mix(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int visible(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

uint64_t dirwatch_signature(const char *dir)
{
    struct dirent **names = NULL;
    uint64_t h = 0xcbf29ce484222325ull;
    int n = scandir(dir, &names, visible, by_name);
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        h = mix(h, names[i]->d_name, strlen(names[i]->d_name) + 1);
        if (stat(path, &st) == 0) {
            uint64_t v[] = {(uint64_t)st.st_dev, (uint64_t)st.st_ino, (uint64_t)st.st_size,
                            (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
            h = mix(h, v, sizeof v);
        }
        free(names[i]);
    }
    free(names);
    return h;
}

static void on_settled(evutil_socket_t fd, short what, void *arg)
{
    struct dirwatch *w = arg;
    uint64_t now = dirwatch_signature(w->dir);
    if (now == w->signature)
        return;
    w->signature = now;
    w->cb(w->arg);
}

/* Drain the events; each burst (re)starts the settle timer, so a swap
 * made of several renames gives one callback. */
static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct dirwatch *w = arg;
    char buf[DIRWATCH_READ_SIZE] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(w->fd, buf, sizeof buf)) > 0)
        ;
    struct timeval settle = {0, DIRWATCH_DEBOUNCE_MS * 1000};
    evtimer_add(w->settle, &settle);
}

struct dirwatch *dirwatch_start(struct event_base *base, const char *file, void (*cb)(void *arg),
                                void *arg, char *err, size_t err_size)
{
    struct dirwatch *w = calloc(1, sizeof *w);
    char copy[PATH_MAX];
    if (!w) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    snprintf(copy, sizeof copy, "%s", file);
    snprintf(w->dir, sizeof w->dir, "%s", dirname(copy));
    w->cb = cb;
    w->arg = arg;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0 || inotify_add_watch(w->fd, w->dir, DIRWATCH_EVENTS) < 0) {
        snprintf(err, err_size, "watching %s: %s", w->dir, strerror(errno));
        if (w->fd >= 0)
            close(w->fd);
        free(w);
        return NULL;
    }
    w->signature = dirwatch_signature(w->dir);
    w->readable = event_new(base, w->fd, EV_READ | EV_PERSIST, on_readable, w);
    w->settle = evtimer_new(base, on_settled, w);
    if (!w->readable || !w->settle || event_add(w->readable, NULL) < 0) {
        snprintf(err, err_size, "watching %s: cannot add the event", w->dir);
        dirwatch_free(w);
        return NULL;
    }
    return w;
}

void dirwatch_free(struct dirwatch *w)
{
    if (!w)
        return;
    if (w->readable)
        event_free(w->readable);
    if (w->settle)
        event_free(w->settle);
    close(w->fd);
    free(w);
}
