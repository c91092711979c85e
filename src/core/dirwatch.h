/* dirwatch: call back when the files beside a file change, for
 * `sluice proxy --watch-policy`.
 *
 * Kubernetes updates a mounted ConfigMap by writing a new hidden directory
 * and renaming a `..data` symlink over the old one; the visible names are
 * symlinks through `..data`, so the file itself is never written. Watching
 * the directory (inotify) sees that swap as well as an editor's in-place
 * write or rename. Events are debounced (one callback after a burst), and
 * the callback runs only when what the visible names resolve to (device,
 * inode, size, mtime) has changed since the last one, so a touch of an
 * unrelated hidden file does not reload anything. */
#ifndef SLUICE_CORE_DIRWATCH_H
#define SLUICE_CORE_DIRWATCH_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#define DIRWATCH_DEBOUNCE_MS 300

struct dirwatch;

/* Watches the directory of file; cb(arg) runs on base's loop. NULL with
 * err set when inotify cannot watch it. */
struct dirwatch *dirwatch_start(struct event_base *base, const char *file, void (*cb)(void *arg),
                                void *arg, char *err, size_t err_size);
void dirwatch_free(struct dirwatch *w);

/* The signature of dir's visible entries (names not starting with '.',
 * followed through symlinks); exposed for the unit test. */
uint64_t dirwatch_signature(const char *dir);

#endif
