/* mint-bench: what minting a certificate for a new host costs.
 *
 * Three figures, each over N hosts never seen before (after a warm-up):
 *   sign   one signer round trip (request, sign in the signer process,
 *          DER back, parsed) — tls_signer_sign alone;
 *   miss   tls_minter_ctx_for for a new host: the round trip plus the
 *          SSL_CTX; what the first intercepted connection to a host waits;
 *   hit    tls_minter_ctx_for for a cached host.
 * Target (issue 3): miss < 1 ms. Usage: mint-bench [N] (default 2000). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "policy/host.h"
#include "tls/ca.h"
#include "tls/mint.h"
#include "tls/signer.h"

#define BENCH_DEFAULT_N 2000
#define BENCH_MAX_N 1000000
#define BENCH_WARMUP 100
#define BENCH_ERR_SIZE 512
#define BENCH_DIR_SIZE 64
#define BENCH_NAME_SIZE 64

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *us, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += us[i];
    qsort(us, n, sizeof *us, cmp_double);
    printf("%-5s n=%zu  mean %7.1f us  p50 %7.1f us  p99 %7.1f us  max %7.1f us\n", what, n,
           sum / (double)n, us[n / 2], us[(n * 99) / 100], us[n - 1]);
}

static int host_n(const char *prefix, size_t i, struct host *h)
{
    char name[BENCH_NAME_SIZE];
    const char *why;
    snprintf(name, sizeof name, "%s-%zu.bench.example", prefix, i);
    return host_canonicalise(name, strlen(name), h, &why);
}

static int bench_sign(const char *dir, double *us, size_t n)
{
    char err[BENCH_ERR_SIZE];
    X509 *ca = NULL;
    EVP_PKEY *leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!leaf_key || tls_ca_load_cert(dir, &ca, err, sizeof err) < 0)
        return -1;
    struct tls_signer *s = tls_signer_start(dir, ca, leaf_key, err, sizeof err);
    if (!s) {
        fprintf(stderr, "mint-bench: %s\n", err);
        return -1;
    }
    for (size_t i = 0; i < BENCH_WARMUP + n; i++) {
        struct host h;
        X509 *x = NULL;
        if (host_n("sign", i, &h) < 0)
            return -1;
        double t0 = now_us();
        if (tls_signer_sign(s, &h, &x, err, sizeof err) < 0) {
            fprintf(stderr, "mint-bench: %s\n", err);
            return -1;
        }
        if (i >= BENCH_WARMUP)
            us[i - BENCH_WARMUP] = now_us() - t0;
        X509_free(x);
    }
    tls_signer_stop(s);
    X509_free(ca);
    EVP_PKEY_free(leaf_key);
    return 0;
}

static int bench_minter(const char *dir, double *miss, double *hit, size_t n)
{
    char err[BENCH_ERR_SIZE];
    struct tls_minter *m = tls_minter_start(dir, err, sizeof err);
    if (!m) {
        fprintf(stderr, "mint-bench: %s\n", err);
        return -1;
    }
    for (size_t i = 0; i < BENCH_WARMUP + n; i++) {
        struct host h;
        if (host_n("miss", i, &h) < 0)
            return -1;
        double t0 = now_us();
        SSL_CTX *ctx = tls_minter_ctx_for(m, &h, err, sizeof err);
        double t1 = now_us();
        if (!ctx) {
            fprintf(stderr, "mint-bench: %s\n", err);
            return -1;
        }
        SSL_CTX_free(ctx);
        if (i >= BENCH_WARMUP)
            miss[i - BENCH_WARMUP] = t1 - t0;
    }
    /* hits: the most recent hosts, all still cached */
    size_t cached = n < TLS_MINTER_CACHE_DEFAULT ? n : TLS_MINTER_CACHE_DEFAULT;
    for (size_t i = 0; i < n; i++) {
        struct host h;
        if (host_n("miss", BENCH_WARMUP + n - 1 - (i % cached), &h) < 0)
            return -1;
        double t0 = now_us();
        SSL_CTX *ctx = tls_minter_ctx_for(m, &h, err, sizeof err);
        hit[i] = now_us() - t0;
        SSL_CTX_free(ctx);
    }
    struct tls_minter_stats st;
    tls_minter_get_stats(m, &st);
    printf("minter: %llu minted, %llu hits, %llu evicted, %zu cached\n",
           (unsigned long long)st.minted, (unsigned long long)st.hits,
           (unsigned long long)st.evicted, st.cached);
    tls_minter_stop(m);
    return 0;
}

int main(int argc, char **argv)
{
    char dir[BENCH_DIR_SIZE] = "/tmp/sluice-mint-bench-XXXXXX";
    char err[BENCH_ERR_SIZE], path[BENCH_DIR_SIZE + 16];
    size_t n = BENCH_DEFAULT_N;
    int rc = 1;

    if (argc > 1) {
        char *end;
        long v = strtol(argv[1], &end, 10);
        if (*end != '\0' || v < 1 || v > BENCH_MAX_N) {
            fprintf(stderr, "usage: mint-bench [N]  (1..%d hosts)\n", BENCH_MAX_N);
            return 2;
        }
        n = (size_t)v;
    }
    double *sign = calloc(n, sizeof *sign), *miss = calloc(n, sizeof *miss),
           *hit = calloc(n, sizeof *hit);
    if (!sign || !miss || !hit || !mkdtemp(dir) || tls_ca_init(dir, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "mint-bench: setting up a CA failed\n");
        goto out;
    }
    printf("mint-bench: %zu new hosts each, ECDSA P-256 CA and leaf key\n", n);
    if (bench_sign(dir, sign, n) < 0 || bench_minter(dir, miss, hit, n) < 0)
        goto out;
    report("sign", sign, n);
    report("miss", miss, n);
    report("hit", hit, n);
    rc = 0;
out:
    snprintf(path, sizeof path, "%s/ca.key", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/ca.pem", dir);
    unlink(path);
    rmdir(dir);
    free(sign);
    free(miss);
    free(hit);
    return rc;
}
