/* signer: a child process that holds the CA key and signs leaf certificates.
 *
 * The proxy's workers face the network; if one is compromised it must not be
 * able to read the CA key or get anything but an end-entity server
 * certificate for the shared leaf key out of it (relayd's ca.c is the
 * model). So the key is read only after the fork, by the child, and the
 * child can then do little besides arithmetic: it has no other fds, no new
 * privileges, cannot be ptraced by its sibling workers, dies with its
 * parent, and a seccomp filter kills it on any syscall beyond memory, time,
 * randomness and its one socket.
 *
 * Wire format (SOCK_SEQPACKET, one message per send, every length checked):
 *   request  hdr{SIGNER_SIGN, seq, host kind, len} + canonical host text
 *   reply    hdr{SIGNER_CERT, seq, 0, len} + DER certificate
 *            hdr{SIGNER_ERROR, seq, 0, len} + error text
 *   start    hdr{SIGNER_READY} or hdr{SIGNER_ERROR} once confined. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/ca.h"
#include "tls/signer.h"

#define SIGNER_FD 3 /* the socket's number in the child */
#define SIGNER_NAME "sluice-signer"
#define SIGNER_DAY_S 86400L
#define SIGNER_STOP_GRACE_MS 1000
#define SIGNER_STOP_POLL_MS 1 /* it exits within a millisecond of SIGTERM */
#define SIGNER_REAP_WAIT_MS 100
#define SIGNER_WARMUP_HOST "signer-warm-up.invalid"

enum signer_type {
    SIGNER_SIGN = 1,
    SIGNER_READY,
    SIGNER_CERT,
    SIGNER_ERROR,
};

struct signer_hdr {
    uint32_t type;
    uint32_t seq;
    uint32_t kind; /* enum host_kind, requests only */
    uint32_t len;  /* of the body */
};

struct signer_msg {
    struct signer_hdr h;
    unsigned char body[TLS_SIGNER_MAX_DER];
};

struct tls_signer {
    pid_t pid;
    int fd;
    pthread_mutex_t lock; /* one round trip at a time */
    uint32_t seq;
    bool dead;
    bool reaped;
    char why_dead[TLS_SIGNER_ERROR_SIZE];
    struct signer_msg reply; /* under lock */
};

/* What the child signs with, prepared once before it confines itself. */
struct signer_child {
    int fd;
    X509 *ca;
    EVP_PKEY *ca_key;
    const EVP_MD *md;
    time_t ca_not_after;
    /* Every leaf is this certificate with its own serial, subject,
     * validity and SAN written in: setting the public key of a new
     * certificate costs OpenSSL 3 an encode and a decode (~150 us), and so
     * does copying one; rewriting the fields costs nothing like it. */
    X509 *tmpl;
};

/* ---- wire ----------------------------------------------------------------- */

static int send_msg(int fd, uint32_t type, uint32_t seq, uint32_t kind, const void *body,
                    size_t len)
{
    struct signer_msg m;
    if (len > sizeof m.body)
        return -1;
    m.h = (struct signer_hdr){.type = type, .seq = seq, .kind = kind, .len = (uint32_t)len};
    if (len)
        memcpy(m.body, body, len);
    size_t total = sizeof m.h + len;
    for (;;) {
        ssize_t n = send(fd, &m, total, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        return n == (ssize_t)total ? 0 : -1;
    }
}

/* 1 with a well-formed message, 0 at end of stream, -1 on a socket error,
 * -2 for a malformed message (truncated, short, length mismatch). */
static int recv_msg(int fd, struct signer_msg *m)
{
    struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;
    do
        n = recvmsg(fd, &mh, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    if ((mh.msg_flags & MSG_TRUNC) || (size_t)n < sizeof m->h ||
        m->h.len != (size_t)n - sizeof m->h)
        return -2;
    return 1;
}

/* ---- the child: building and signing -------------------------------------- */

static int add_aki(X509 *x, X509 *ca)
{
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(ca);
    int rc = -1;
    if (!aki)
        return -1;
    aki->keyid = ca_ski ? ASN1_OCTET_STRING_dup(ca_ski) : tls_key_id(ca);
    if (aki->keyid &&
        X509_add1_ext_i2d(x, NID_authority_key_identifier, aki, 0, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
    AUTHORITY_KEYID_free(aki);
    return rc;
}

static int add_ski(X509 *x)
{
    ASN1_OCTET_STRING *ski = tls_key_id(x);
    int rc =
        ski && X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT) == 1
            ? 0
            : -1;
    ASN1_OCTET_STRING_free(ski);
    return rc;
}

/* The extensions every leaf carries; only the SAN varies. */
static int add_fixed_extensions(X509 *x, X509 *ca)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new(); /* ca = 0: CA:FALSE */
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    int rc = -1;

    if (bc && ku && eku && ASN1_BIT_STRING_set_bit(ku, 0, 1) == 1 && /* digitalSignature */
        sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) &&
        X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) == 1 &&
        X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT) == 1 &&
        X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_DEFAULT) == 1 &&
        add_ski(x) == 0 && add_aki(x, ca) == 0)
        rc = 0;
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(ku);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    return rc;
}

/* A certificate for the leaf key with everything every leaf shares;
 * build_leaf fills in serial, subject, validity and SAN. */
static X509 *make_template(struct signer_child *c, EVP_PKEY *leaf_pub)
{
    X509 *x = X509_new();
    if (x && X509_set_version(x, X509_VERSION_3) == 1 &&
        X509_set_issuer_name(x, X509_get_subject_name(c->ca)) == 1 &&
        X509_set_pubkey(x, leaf_pub) == 1 && add_fixed_extensions(x, c->ca) == 0)
        return x;
    X509_free(x);
    return NULL;
}

static int set_san(X509 *x, const struct host *h)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gn;
    int rc = -1;

    if (h->kind == HOST_KIND_NAME)
        gn = tls_general_name(GEN_DNS, (const unsigned char *)h->text, h->len);
    else if (h->kind == HOST_KIND_IPV4)
        gn = tls_general_name(GEN_IPADD, (const unsigned char *)&h->addr.v4, 4);
    else
        gn = tls_general_name(GEN_IPADD, (const unsigned char *)&h->addr.v6, 16);
    if (gens && gn && sk_GENERAL_NAME_push(gens, gn)) {
        gn = NULL;
        if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_REPLACE) == 1)
            rc = 0;
    }
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(gens);
    return rc;
}

static int set_subject(X509 *x, const struct host *h)
{
    X509_NAME *name = X509_NAME_new();
    /* The SAN is what clients check; the CN is for people and must fit
     * the X.509 upper bound. */
    size_t cn_len = h->len > TLS_CA_MAX_NAME_BYTES ? TLS_CA_MAX_NAME_BYTES : h->len;
    int rc = name &&
                     X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                (const unsigned char *)h->text, (int)cn_len, -1,
                                                0) == 1 &&
                     X509_set_subject_name(x, name) == 1
                 ? 0
                 : -1;
    X509_NAME_free(name);
    return rc;
}

/* Turns the template into the leaf for h and signs it. The child is single
 * threaded and sends the DER before the next request, so one object is
 * rewritten each time: copying it would cost OpenSSL 3 a key decode. */
static X509 *build_leaf(struct signer_child *c, const struct host *h, const char **why)
{
    time_t now = time(NULL);
    time_t not_after = now + TLS_LEAF_MAX_DAYS * SIGNER_DAY_S;
    X509 *x = c->tmpl;

    if (not_after > c->ca_not_after)
        not_after = c->ca_not_after; /* never outlive the CA */
    if (not_after <= now) {
        *why = "the CA has expired";
        return NULL;
    }
    *why = "building the certificate failed";
    if (tls_set_random_serial(x) < 0 || set_subject(x, h) < 0 ||
        !ASN1_TIME_set(X509_getm_notBefore(x), now - TLS_BACKDATE_S) ||
        !ASN1_TIME_set(X509_getm_notAfter(x), not_after) || set_san(x, h) < 0)
        goto fail;
    *why = "signing failed";
    if (X509_sign(x, c->ca_key, c->md) <= 0)
        goto fail;
    return x;
fail:
    ERR_clear_error();
    return NULL;
}

/* A request names a host already in canonical form; anything else (a
 * wildcard, a non-canonical spelling, stray bytes) is refused, so a
 * compromised worker cannot widen what a certificate covers. */
static int check_request(const struct signer_msg *m, struct host *h, const char **why)
{
    const char *text = (const char *)m->body;
    size_t len = m->h.len;
    const char *w = NULL;

    if (m->h.type != SIGNER_SIGN) {
        *why = "unknown request";
        return -1;
    }
    if (len == 0 || len >= HOST_TEXT_SIZE) {
        *why = "host length out of range";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
              ch == '_' || ch == ':')) {
            *why = "not a canonical host";
            return -1;
        }
    }
    if (host_canonicalise(text, len, h, &w) < 0 || (uint32_t)h->kind != m->h.kind ||
        h->len != len || memcmp(h->text, text, len) != 0) {
        *why = "not a canonical host";
        return -1;
    }
    return 0;
}

static void serve_request(struct signer_child *c, const struct signer_msg *req)
{
    struct host h;
    const char *why = NULL;
    unsigned char *der = NULL;
    X509 *x = NULL;

    if (check_request(req, &h, &why) == 0 && (x = build_leaf(c, &h, &why))) {
        int n = i2d_X509(x, &der);
        if (n > 0 && (size_t)n <= TLS_SIGNER_MAX_DER) {
            send_msg(c->fd, SIGNER_CERT, req->h.seq, 0, der, (size_t)n);
            why = NULL;
        } else {
            why = "certificate too large";
        }
    }
    if (why)
        send_msg(c->fd, SIGNER_ERROR, req->h.seq, 0, why, strlen(why));
    OPENSSL_free(der);
}

static void serve(struct signer_child *c) __attribute__((noreturn));
static void serve(struct signer_child *c)
{
    static struct signer_msg m; /* static: not on the stack, 4 KiB */
    static const char malformed[] = "malformed request";
    for (;;) {
        int r = recv_msg(c->fd, &m);
        if (r == 0)
            _exit(0); /* the parent closed its end: stop */
        if (r == -1)
            _exit(1);
        if (r == -2)
            send_msg(c->fd, SIGNER_ERROR, 0, 0, malformed, sizeof malformed - 1);
        else
            serve_request(c, &m);
    }
}

/* ---- the child: setting up and confining ---------------------------------- */

static int prepare(struct signer_child *c, const char *ca_dir, X509 *ca, EVP_PKEY *leaf_key,
                   char *err, size_t err_size)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    const char *why = NULL;
    struct host h;

    c->ca = ca;
    if (tls_ca_load_key(ca_dir, ca, &c->ca_key, err, err_size) < 0)
        return -1;
    /* EdDSA signs the message itself; everything else hashes with SHA-256. */
    bool eddsa = EVP_PKEY_is_a(c->ca_key, "ED25519") || EVP_PKEY_is_a(c->ca_key, "ED448");
    c->md = eddsa ? NULL : EVP_sha256();
    if (tls_not_after(ca, &c->ca_not_after) < 0)
        return tls_error(err, err_size, "the CA's notAfter is unreadable");
    /* A public-only copy: the child certifies this key and nothing else. */
    int n = i2d_PUBKEY(leaf_key, &der);
    p = der;
    EVP_PKEY *leaf_pub = n > 0 ? d2i_PUBKEY(NULL, &p, n) : NULL;
    OPENSSL_free(der);
    c->tmpl = leaf_pub ? make_template(c, leaf_pub) : NULL;
    EVP_PKEY_free(leaf_pub);
    if (!c->tmpl)
        return tls_error_ssl(err, err_size, "preparing the leaf template");
    /* One signature before confinement, so OpenSSL loads its algorithms
     * and seeds its generator while files and all syscalls are still there. */
    if (host_canonicalise(SIGNER_WARMUP_HOST, strlen(SIGNER_WARMUP_HOST), &h, &why) < 0)
        return tls_error(err, err_size, "warm-up host: %s", why);
    if (!build_leaf(c, &h, &why))
        return tls_error(err, err_size, "test signature: %s", why);
    return 0;
}

static void reset_signals(void)
{
    struct sigaction sa;
    sigset_t all;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL); /* fails harmlessly for KILL, STOP, libc's own */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

/* The socket becomes fd 3, 0-2 are /dev/null, everything else is closed:
 * listeners, log files and client sockets inherited from the parent. */
static int close_fds(int *fd, char *err, size_t err_size)
{
    if (*fd != SIGNER_FD) {
        if (dup2(*fd, SIGNER_FD) < 0)
            return tls_error(err, err_size, "dup2: %s", strerror(errno));
        *fd = SIGNER_FD;
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        return tls_error(err, err_size, "/dev/null: %s", strerror(errno));
    for (int i = 0; i < SIGNER_FD; i++)
        if (null != i && dup2(null, i) < 0)
            return tls_error(err, err_size, "dup2: %s", strerror(errno));
    if (close_range(SIGNER_FD + 1, ~0U, 0) < 0)
        return tls_error(err, err_size, "close_range: %s", strerror(errno));
    return 0;
}

static int allow(scmp_filter_ctx sc, int nr)
{
    return seccomp_rule_add(sc, SCMP_ACT_ALLOW, nr, 0);
}

/* Memory, time, randomness, and I/O on the one socket; mapping or
 * re-protecting memory as executable is refused too. */
static int install_seccomp(int fd, char *err, size_t err_size)
{
    static const int plain[] = {
        SCMP_SYS(exit),          SCMP_SYS(exit_group),
        SCMP_SYS(brk),           SCMP_SYS(munmap),
        SCMP_SYS(mremap),        SCMP_SYS(madvise),
        SCMP_SYS(getrandom),     SCMP_SYS(futex),
        SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday),
        SCMP_SYS(time),          SCMP_SYS(rt_sigreturn),
        SCMP_SYS(getpid),        SCMP_SYS(gettid),
        SCMP_SYS(sigaltstack), /* sanitizer runtimes; harmless */
    };
    static const int on_socket[] = {
        SCMP_SYS(read),    SCMP_SYS(write),  SCMP_SYS(recvmsg),
        SCMP_SYS(sendmsg), SCMP_SYS(sendto), SCMP_SYS(recvfrom),
    };
    int rc = -1;
    scmp_filter_ctx sc = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!sc)
        return tls_error(err, err_size, "seccomp_init failed");
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (allow(sc, plain[i]) < 0)
            goto out;
    for (size_t i = 0; i < sizeof on_socket / sizeof on_socket[0]; i++)
        if (seccomp_rule_add(sc, SCMP_ACT_ALLOW, on_socket[i], 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)fd, 0)) < 0)
            goto out;
    if (seccomp_rule_add(sc, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                         SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) < 0 ||
        seccomp_rule_add(sc, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                         SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) < 0)
        goto out;
    int r = seccomp_load(sc);
    if (r < 0) {
        tls_error(err, err_size, "seccomp_load: %s", strerror(-r));
        goto done;
    }
    rc = 0;
    goto done;
out:
    tls_error(err, err_size, "building the seccomp filter failed");
done:
    seccomp_release(sc);
    return rc;
}

static int confine(int *fd, char *err, size_t err_size)
{
    if (close_fds(fd, err, err_size) < 0)
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return tls_error(err, err_size, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    return install_seccomp(*fd, err, err_size);
}

static void signer_main(int fd, pid_t parent, const char *ca_dir, X509 *ca, EVP_PKEY *leaf_key)
    __attribute__((noreturn));
static void signer_main(int fd, pid_t parent, const char *ca_dir, X509 *ca, EVP_PKEY *leaf_key)
{
    static struct signer_child c;
    char err[TLS_SIGNER_ERROR_SIZE];

    /* Die with the parent; and if it is already gone, do not start. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(1);
    prctl(PR_SET_NAME, SIGNER_NAME, 0, 0, 0);
    /* Not dumpable: processes of the same user (the workers) cannot ptrace
     * it or read its memory through /proc. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    reset_signals();
    c.fd = fd;
    if (prepare(&c, ca_dir, ca, leaf_key, err, sizeof err) < 0 ||
        confine(&c.fd, err, sizeof err) < 0) {
        send_msg(c.fd, SIGNER_ERROR, 0, 0, err, strlen(err));
        _exit(1);
    }
    send_msg(c.fd, SIGNER_READY, 0, 0, NULL, 0);
    serve(&c);
}

/* ---- the parent ----------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reaps the child if it has ended and describes how. */
static void reap(struct tls_signer *s, int options, char *why, size_t size)
{
    int status;
    if (s->reaped) {
        return;
    }
    pid_t r;
    do
        r = waitpid(s->pid, &status, options);
    while (r < 0 && errno == EINTR);
    if (r == s->pid) {
        s->reaped = true;
        if (WIFSIGNALED(status))
            snprintf(why, size, "signer process was killed by signal %d%s", WTERMSIG(status),
                     WTERMSIG(status) == SIGSYS ? " (seccomp)" : "");
        else if (WIFEXITED(status))
            snprintf(why, size, "signer process exited with status %d", WEXITSTATUS(status));
    } else if (r < 0 && errno == ECHILD) {
        s->reaped = true; /* someone else reaped it (SIGCHLD ignored) */
    }
}

/* The socket ends a moment before the child can be reaped; a short wait
 * gets its exit status (a seccomp kill, say) into the message. */
static void mark_dead(struct tls_signer *s, const char *why)
{
    if (s->dead)
        return;
    s->dead = true;
    snprintf(s->why_dead, sizeof s->why_dead, "%s", why);
    for (int waited = 0; !s->reaped && waited < SIGNER_REAP_WAIT_MS; waited++) {
        reap(s, WNOHANG, s->why_dead, sizeof s->why_dead);
        if (!s->reaped)
            nanosleep(&(struct timespec){.tv_nsec = 1000000L}, NULL);
    }
}

/* Waits for the reply with sequence number seq; -1 with err otherwise. */
static int await_reply(struct tls_signer *s, uint32_t seq, int timeout_ms, struct signer_msg *m,
                       char *err, size_t err_size)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        int r = left > 0 ? poll(&pfd, 1, (int)left) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            /* A signer that stops answering is of no further use; kill it so
             * no late answer can be taken for a later request. */
            kill(s->pid, SIGKILL);
            mark_dead(s, "signer process did not answer in time");
            break;
        }
        r = r < 0 ? -1 : recv_msg(s->fd, m);
        if (r == 0 || r == -1) {
            mark_dead(s, "signer process went away");
            break;
        }
        if (r == -2) {
            mark_dead(s, "signer process sent a malformed message");
            break;
        }
        if (m->h.seq == seq)
            return 0;
        /* an answer to an earlier request: skip it */
    }
    return tls_error(err, err_size, "certificate signer unavailable: %s", s->why_dead);
}

struct tls_signer *tls_signer_start(const char *ca_dir, X509 *ca_cert, EVP_PKEY *leaf_key,
                                    char *err, size_t err_size)
{
    int sv[2];
    pid_t parent = getpid();

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        tls_error(err, err_size, "socketpair: %s", strerror(errno));
        return NULL;
    }
    struct tls_signer *s = calloc(1, sizeof *s);
    if (!s || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        close(sv[0]);
        close(sv[1]);
        tls_error(err, err_size, "out of memory");
        return NULL;
    }
    s->fd = sv[0];
    s->pid = fork();
    if (s->pid == 0) {
        close(sv[0]);
        signer_main(sv[1], parent, ca_dir, ca_cert, leaf_key);
    }
    close(sv[1]);
    if (s->pid < 0) {
        tls_error(err, err_size, "fork: %s", strerror(errno));
        s->reaped = true;
        tls_signer_stop(s);
        return NULL;
    }
    struct signer_msg *m = &s->reply;
    if (await_reply(s, 0, TLS_SIGNER_START_TIMEOUT_MS, m, err, err_size) < 0 ||
        m->h.type != SIGNER_READY) {
        if (!s->dead && m->h.type == SIGNER_ERROR)
            tls_error(err, err_size, "%.*s", (int)m->h.len, (const char *)m->body);
        else if (!s->dead)
            tls_error(err, err_size, "certificate signer: unexpected start message");
        tls_signer_stop(s);
        return NULL;
    }
    return s;
}

/* One request and its answer, under the lock; the DER is copied out so the
 * parse (slow in OpenSSL 3) runs after the lock is released. Returns the
 * DER length, or -1 with err. */
static int round_trip(struct tls_signer *s, const struct host *h, unsigned char *der, char *err,
                      size_t err_size)
{
    struct signer_msg *m = &s->reply;
    int rc = -1;

    pthread_mutex_lock(&s->lock);
    if (s->dead) {
        tls_error(err, err_size, "certificate signer unavailable: %s", s->why_dead);
        goto out;
    }
    uint32_t seq = ++s->seq;
    if (seq == 0)
        seq = ++s->seq; /* 0 is the start message's */
    if (send_msg(s->fd, SIGNER_SIGN, seq, (uint32_t)h->kind, h->text, h->len) < 0) {
        mark_dead(s, "signer process went away");
        tls_error(err, err_size, "certificate signer unavailable: %s", s->why_dead);
        goto out;
    }
    if (await_reply(s, seq, TLS_SIGNER_TIMEOUT_MS, m, err, err_size) < 0)
        goto out;
    if (m->h.type == SIGNER_CERT) {
        memcpy(der, m->body, m->h.len);
        rc = (int)m->h.len;
    } else if (m->h.type == SIGNER_ERROR) {
        tls_error(err, err_size, "certificate signer refused %s: %.*s", h->text, (int)m->h.len,
                  (const char *)m->body);
    } else {
        tls_error(err, err_size, "certificate signer: unexpected answer");
    }
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int tls_signer_sign(struct tls_signer *s, const struct host *h, X509 **out, char *err,
                    size_t err_size)
{
    unsigned char der[TLS_SIGNER_MAX_DER];
    int n = round_trip(s, h, der, err, err_size);
    if (n < 0)
        return -1;
    const unsigned char *p = der;
    *out = d2i_X509(NULL, &p, n);
    if (!*out)
        return tls_error_ssl(err, err_size, "certificate from the signer");
    return 0;
}

bool tls_signer_alive(struct tls_signer *s)
{
    pthread_mutex_lock(&s->lock);
    if (!s->dead) {
        char why[TLS_SIGNER_ERROR_SIZE] = "signer process ended";
        reap(s, WNOHANG, why, sizeof why);
        if (s->reaped)
            mark_dead(s, why);
    }
    bool alive = !s->dead;
    pthread_mutex_unlock(&s->lock);
    return alive;
}

pid_t tls_signer_pid(const struct tls_signer *s)
{
    return s->pid;
}

void tls_signer_stop(struct tls_signer *s)
{
    char why[TLS_SIGNER_ERROR_SIZE];
    if (!s)
        return;
    close(s->fd); /* the child sees end of stream and exits by itself */
    if (!s->reaped) {
        kill(s->pid, SIGTERM);
        for (int waited = 0; !s->reaped && waited < SIGNER_STOP_GRACE_MS;
             waited += SIGNER_STOP_POLL_MS) {
            reap(s, WNOHANG, why, sizeof why);
            if (!s->reaped)
                nanosleep(&(struct timespec){.tv_nsec = SIGNER_STOP_POLL_MS * 1000000L}, NULL);
        }
        if (!s->reaped) {
            kill(s->pid, SIGKILL);
            reap(s, 0, why, sizeof why);
        }
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}
