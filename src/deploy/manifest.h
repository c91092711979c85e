/* manifest: the Kubernetes and Podman objects `sluice manifest` prints
 * (docs/DEPLOY.md).
 *
 * Pure code: options and the policies' text in, jansson trees out (one per
 * YAML document), which deploy/yaml.c prints. No files are read here;
 * src/cmd/manifest.c reads and validates the policies first. */
#ifndef SLUICE_DEPLOY_MANIFEST_H
#define SLUICE_DEPLOY_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define MANIFEST_MAX_SANDBOXES 64
#define MANIFEST_MAX_FILES (MANIFEST_MAX_SANDBOXES + 256)
#define MANIFEST_NAME_MAX 63 /* a DNS-1123 label: pod, container, ConfigMap key */
#define MANIFEST_ERR_SIZE 512
#define MANIFEST_DEFAULT_IMAGE "localhost/sluice:latest"
#define MANIFEST_POLICY_DIR "/etc/sluice/policy"
#define MANIFEST_CA_DIR "/etc/sluice/ca"
#define MANIFEST_BUNDLE_DIR "/etc/sluice/bundle"
#define MANIFEST_BUNDLE MANIFEST_BUNDLE_DIR "/ca-bundle.pem"
#define MANIFEST_TOKEN_DIR "/etc/sluice/admin"
#define MANIFEST_MARK "0x5c1ce"

/* One file of the policy ConfigMap: its key (a file name) and text. */
struct manifest_file {
    char key[MANIFEST_NAME_MAX + 8];
    char *text;
};

struct manifest_sandbox {
    const char *name;
    const char *image; /* NULL: the --workload-image */
    char address[64];  /* podman: its static address on the network */
};

struct manifest_opts {
    const char *name;           /* pod / gateway name */
    const char *image;          /* sluice's image */
    const char *workload_image; /* k8s pod, and podman sandboxes without one */
    char *const *command;       /* workload command (NULL: the image's) */
    size_t n_command;
    long workload_uid;         /* -1: the image's user */
    bool warm;                 /* k8s: start deny-all, PUT /policy later */
    const char *format;        /* k8s: NULL (pod), "pod", "patch", "configmap" */
    const char *container;     /* k8s patch: the workload container (NULL: workload) */
    unsigned replicas;         /* k8s gateway: 0 for the default */
    bool gateway;              /* k8s: the central-gateway layout */
    bool intercept;            /* a CA is mounted: interception and the bundle */
    const char *runtime_class; /* NULL: none */
    uint16_t executor_port;    /* 0: none */
    uint16_t proxy_port;       /* 8080 */
    uint16_t admin_port;       /* 8081 */
    uint16_t dns_port;         /* k8s sidecar: loopback port of the DNS filter */
    const char *sandbox_label; /* k8s gateway: "sluice.dev/sandbox" */
    /* podman */
    const char *network;
    const char *subnet;       /* CIDR text */
    const char *gateway_addr; /* where sandboxes reach the gateway */
    const char *only;         /* NULL, "gateway" or "sandboxes" */
    const char *ca_host_dir;  /* with intercept: the CA directory on the host */
    struct manifest_sandbox sandboxes[MANIFEST_MAX_SANDBOXES];
    size_t n_sandboxes;
    /* The policy ConfigMap: files[0] is policy.json (clients already
     * pointing at the other keys). */
    struct manifest_file files[MANIFEST_MAX_FILES];
    size_t n_files;
};

/* The documents, in order, and the comment printed above them (static
 * text owned by the callee's buffer). 0, or -1 with err set. */
int manifest_podman(const struct manifest_opts *o, json_t **docs, char *comment,
                    size_t comment_size, char *err, size_t err_size);
int manifest_k8s(const struct manifest_opts *o, json_t **docs, char *comment, size_t comment_size,
                 char *err, size_t err_size);

/* Pieces shared by both layouts (deploy/pod.c). */

/* SPEC §3's variables: the proxy ones for proxy_url, NO_PROXY, and with
 * bundle (NULL: none) every CA variable pointing at it. */
json_t *manifest_workload_env(const char *proxy_url, const char *bundle);
/* The workload's securityContext: every capability dropped (NET_RAW too:
 * it can set SO_MARK), no privilege escalation; uid -1: the image's user. */
json_t *manifest_workload_security(long uid);
/* A container's securityContext running as root with exactly caps (a JSON
 * array of names; stolen), read-only root, no privilege escalation. */
json_t *manifest_root_security(json_t *caps);
json_t *manifest_labels(const char *name, const char *component);
/* The policy ConfigMap named name: every file of o. */
json_t *manifest_configmap(const struct manifest_opts *o, const char *name);
/* "policy.json": the key the proxy is started with. */
const char *manifest_policy_key(void);

#endif
