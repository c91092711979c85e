/* sandbox: the seccomp filter `sluice proxy` puts on itself once it has
 * started, so that a memory-safety bug in a parser (HTTP, TLS ClientHello,
 * DNS, the admin API) cannot become a shell, another process's memory, or a
 * way around the kernel's network rules. A denylist: the proxy reads policy
 * and secret files, writes logs, resolves names and talks netlink at run
 * time, so everything not named in src/proxy/sandbox.c stays allowed. */
#ifndef SLUICE_PROXY_SANDBOX_H
#define SLUICE_PROXY_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

/* Sanitizer builds (ASan, LSan, TSan, MSan, UBSan) leave exec and ptrace
 * allowed: LeakSanitizer stops the threads with ptrace at exit, and the
 * report symbolizer is a program the runtime starts. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLUICE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer) ||                           \
    __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer) ||                          \
    __has_feature(undefined_behavior_sanitizer)
#define SLUICE_SANITIZED 1
#endif
#endif
#ifndef SLUICE_SANITIZED
#define SLUICE_SANITIZED 0
#endif

/* Installs the filter on every thread of the process (TSYNC) and sets
 * no_new_privs. Call once start-up is done: listeners bound, signer forked,
 * threads started. 0, or -1 with a message in err. */
int proxy_sandbox_install(char *err, size_t err_size);

/* Whether proxy_sandbox_install succeeded in this process. */
bool proxy_sandbox_active(void);

#endif
