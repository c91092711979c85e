/* `sluice manifest k8s`: a sandbox Pod with sluice as a native sidecar, a
 * strategic-merge patch adding the same to a workload's pod template, or
 * the central-gateway layout (docs/DEPLOY.md).
 *
 * The pod's order is the point: the enforce init container writes the
 * kernel rules (NET_ADMIN, nothing else) and exits; the CA bundle is made;
 * the sidecar starts and must answer /readyz (startupProbe) before the
 * workload starts, so the workload never runs without rules or proxy.
 *
 * sluice runs as root in its containers, with only the capability it
 * needs: Secret files are root-owned (mode 0400), and sluice refuses a key
 * or token file that group or others may read, which fsGroup would cause. */
#include <stdio.h>
#include <string.h>

#include "deploy/manifest.h"

#define CA_SECRET "sluice-ca"
#define TOKEN_SECRET "sluice-admin-token"
#define SANDBOX_LABEL "sluice.dev/sandbox"

struct k8s_names {
    char configmap[MANIFEST_NAME_MAX + 16];
    char proxy_url[64];
    char dns[32];
};

static json_t *str_array(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static void append_args(json_t *args, const char *a, const char *b)
{
    json_array_append_new(args, json_string(a));
    if (b)
        json_array_append_new(args, json_string(b));
}

static const char *port_text(unsigned port, char *buf, size_t size)
{
    snprintf(buf, size, "%u", port);
    return buf;
}

static json_t *mount(const char *name, const char *path, bool read_only)
{
    json_t *m = json_pack("{s:s, s:s}", "name", name, "mountPath", path);
    if (read_only)
        json_object_set_new(m, "readOnly", json_true());
    return m;
}

static json_t *http_probe(const char *path, unsigned port, int period, int failures)
{
    return json_pack("{s:{s:s, s:i}, s:i, s:i}", "httpGet", "path", path, "port", (int)port,
                     "periodSeconds", period, "failureThreshold", failures);
}

/* ---- the sidecar pod ----------------------------------------------------- */

static json_t *enforce_init(const struct manifest_opts *o, const struct k8s_names *n)
{
    char p[8], a[8], e[8];
    json_t *args = json_pack("[s, s, s, s, s, s, s, s, s, s]", "enforce", "apply", "--mode", "uid",
                             "--dns", n->dns, "--proxy-port", port_text(o->proxy_port, p, sizeof p),
                             "--admin-port", port_text(o->admin_port, a, sizeof a));
    if (o->executor_port)
        append_args(args, "--allow-local-port", port_text(o->executor_port, e, sizeof e));
    return json_pack("{s:s, s:s, s:o, s:o}", "name", "sluice-enforce", "image", o->image, "args",
                     args, "securityContext",
                     manifest_root_security(json_pack("[s]", "NET_ADMIN")));
}

/* System roots + sluice's CA, into the emptyDir the workload reads. Only
 * the certificate is mounted here, never the key. */
static json_t *bundle_init(const struct manifest_opts *o)
{
    json_t *args = json_pack("[s, s, s, s, s, s]", "ca", "bundle", "--dir", MANIFEST_CA_DIR,
                             "--out", MANIFEST_BUNDLE);
    json_t *mounts = json_pack("[o, o]", mount("sluice-ca-cert", MANIFEST_CA_DIR, true),
                               mount("sluice-bundle", MANIFEST_BUNDLE_DIR, false));
    return json_pack("{s:s, s:s, s:o, s:o, s:o}", "name", "sluice-ca-bundle", "image", o->image,
                     "args", args, "volumeMounts", mounts, "securityContext",
                     manifest_workload_security(o->workload_uid > 0 ? o->workload_uid : 1000));
}

static json_t *sidecar(const struct manifest_opts *o, const struct k8s_names *n)
{
    char listen[32], admin[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)o->proxy_port);
    /* The kubelet probes the pod's address, not loopback; everything but
     * /healthz and /readyz needs the token anyway. */
    snprintf(admin, sizeof admin, "0.0.0.0:%u", (unsigned)o->admin_port);
    json_t *args = json_pack("[s, s, s, s, s, s, s, s, s]", "proxy", "--policy",
                             MANIFEST_POLICY_DIR "/policy.json", "--listen", listen, "--admin",
                             admin, "--dns", n->dns);
    json_t *mounts = json_pack("[o]", mount("sluice-policy", MANIFEST_POLICY_DIR, true));
    /* A warm pod's policy comes with PUT /policy; reloading the deny-all
     * file on a ConfigMap change would take it away again. */
    if (!o->warm)
        json_array_insert_new(args, 3, json_string("--watch-policy"));
    if (o->intercept) {
        append_args(args, "--ca", MANIFEST_CA_DIR);
        json_array_append_new(mounts, mount("sluice-ca", MANIFEST_CA_DIR, true));
    }
    if (o->warm) {
        append_args(args, "--admin-token", MANIFEST_TOKEN_DIR "/token");
        json_array_append_new(mounts, mount("sluice-admin-token", MANIFEST_TOKEN_DIR, true));
    }
    /* NET_RAW lets it set SO_MARK (Linux >= 5.17), which is how the rules
     * tell sluice's own connections from the workload's. */
    return json_pack("{s:s, s:s, s:s, s:o, s:[{s:s, s:i}], s:o, s:o, s:o, s:o, s:o}", "name",
                     "sluice", "image", o->image, "restartPolicy", "Always", "args", args, "ports",
                     "name", "admin", "containerPort", (int)o->admin_port, "startupProbe",
                     http_probe("/readyz", o->admin_port, 1, 60), "readinessProbe",
                     http_probe("/readyz", o->admin_port, 5, 3), "livenessProbe",
                     http_probe("/healthz", o->admin_port, 10, 3), "volumeMounts", mounts,
                     "securityContext", manifest_root_security(json_pack("[s]", "NET_RAW")));
}

/* The workload's additions; a patch names the container and leaves its
 * image and command alone. */
static json_t *workload(const struct manifest_opts *o, const struct k8s_names *n, bool patch)
{
    json_t *c = json_pack("{s:s}", "name", o->container ? o->container : "workload");
    if (!patch) {
        json_object_set_new(c, "image", json_string(o->workload_image));
        if (o->n_command)
            json_object_set_new(c, "command",
                                str_array((const char *const *)o->command, o->n_command));
    }
    if (o->executor_port)
        json_object_set_new(
            c, "ports",
            json_pack("[{s:s, s:i}]", "name", "executor", "containerPort", (int)o->executor_port));
    json_object_set_new(c, "env",
                        manifest_workload_env(n->proxy_url, o->intercept ? MANIFEST_BUNDLE : NULL));
    if (o->intercept)
        json_object_set_new(c, "volumeMounts",
                            json_pack("[o]", mount("sluice-bundle", MANIFEST_BUNDLE_DIR, true)));
    json_object_set_new(c, "securityContext", manifest_workload_security(o->workload_uid));
    return c;
}

static json_t *volumes(const struct manifest_opts *o, const struct k8s_names *n)
{
    json_t *v =
        json_pack("[{s:s, s:{s:s}}]", "name", "sluice-policy", "configMap", "name", n->configmap);
    if (o->intercept) {
        json_array_append_new(v, json_pack("{s:s, s:{s:s, s:i}}", "name", "sluice-ca", "secret",
                                           "secretName", CA_SECRET, "defaultMode", 0400));
        json_array_append_new(v, json_pack("{s:s, s:{s:s, s:[{s:s, s:s}]}}", "name",
                                           "sluice-ca-cert", "secret", "secretName", CA_SECRET,
                                           "items", "key", "ca.pem", "path", "ca.pem"));
        json_array_append_new(v, json_pack("{s:s, s:{}}", "name", "sluice-bundle", "emptyDir"));
    }
    if (o->warm)
        json_array_append_new(v,
                              json_pack("{s:s, s:{s:s, s:i}}", "name", "sluice-admin-token",
                                        "secret", "secretName", TOKEN_SECRET, "defaultMode", 0400));
    return v;
}

static json_t *pod_spec(const struct manifest_opts *o, const struct k8s_names *n, bool patch)
{
    json_t *spec = json_object();
    if (o->runtime_class)
        json_object_set_new(spec, "runtimeClassName", json_string(o->runtime_class));
    json_t *inits = json_pack("[o]", enforce_init(o, n));
    if (o->intercept)
        json_array_append_new(inits, bundle_init(o));
    json_array_append_new(inits, sidecar(o, n));
    json_object_set_new(spec, "initContainers", inits);
    json_object_set_new(spec, "containers", json_pack("[o]", workload(o, n, patch)));
    json_object_set_new(spec, "volumes", volumes(o, n));
    return spec;
}

static json_t *pod(const struct manifest_opts *o, const struct k8s_names *n)
{
    return json_pack("{s:s, s:s, s:{s:s, s:o}, s:o}", "apiVersion", "v1", "kind", "Pod", "metadata",
                     "name", o->name, "labels", manifest_labels(o->name, "sandbox"), "spec",
                     pod_spec(o, n, false));
}

/* ---- the central gateway ------------------------------------------------- */

static json_t *gateway_labels(const struct manifest_opts *o)
{
    return manifest_labels(o->name, "gateway");
}

static json_t *gateway_deployment(const struct manifest_opts *o, const struct k8s_names *n)
{
    char listen[32], admin[32], dns[32];
    snprintf(listen, sizeof listen, "0.0.0.0:%u", (unsigned)o->proxy_port);
    snprintf(admin, sizeof admin, "0.0.0.0:%u", (unsigned)o->admin_port);
    snprintf(dns, sizeof dns, "0.0.0.0:53");
    json_t *args = json_pack("[s, s, s, s, s, s, s, s, s, s]", "proxy", "--policy",
                             MANIFEST_POLICY_DIR "/policy.json", "--watch-policy", "--listen",
                             listen, "--admin", admin, "--dns", dns);
    json_t *mounts = json_pack("[o]", mount("sluice-policy", MANIFEST_POLICY_DIR, true));
    if (o->intercept) {
        append_args(args, "--ca", MANIFEST_CA_DIR);
        json_array_append_new(mounts, mount("sluice-ca", MANIFEST_CA_DIR, true));
    }
    json_t *ports =
        json_pack("[{s:s, s:i}, {s:s, s:i, s:s}, {s:s, s:i, s:s}, {s:s, s:i}]", "name", "proxy",
                  "containerPort", (int)o->proxy_port, "name", "dns", "containerPort", 53,
                  "protocol", "UDP", "name", "dns-tcp", "containerPort", 53, "protocol", "TCP",
                  "name", "admin", "containerPort", (int)o->admin_port);
    json_t *container = json_pack(
        "{s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "name", "sluice", "image", o->image, "args",
        args, "ports", ports, "readinessProbe", http_probe("/readyz", o->admin_port, 5, 3),
        "livenessProbe", http_probe("/healthz", o->admin_port, 10, 3), "volumeMounts", mounts,
        "securityContext", manifest_root_security(json_pack("[s]", "NET_BIND_SERVICE")));
    json_t *vols =
        json_pack("[{s:s, s:{s:s}}]", "name", "sluice-policy", "configMap", "name", n->configmap);
    if (o->intercept)
        json_array_append_new(vols, json_pack("{s:s, s:{s:s, s:i}}", "name", "sluice-ca", "secret",
                                              "secretName", CA_SECRET, "defaultMode", 0400));
    json_t *pod_spec_obj = json_pack("{s:[o], s:o}", "containers", container, "volumes", vols);
    if (o->runtime_class)
        json_object_set_new(pod_spec_obj, "runtimeClassName", json_string(o->runtime_class));
    /* A rolling update that keeps every old replica until its successor is
     * ready: a changed Deployment drops no connection it need not. */
    return json_pack("{s:s, s:s, s:{s:s, s:o}, s:{s:i, s:{s:o}, s:{s:s, s:{s:i, s:i}}, "
                     "s:{s:{s:o}, s:o}}}",
                     "apiVersion", "apps/v1", "kind", "Deployment", "metadata", "name", o->name,
                     "labels", gateway_labels(o), "spec", "replicas",
                     o->replicas ? (int)o->replicas : 2, "selector", "matchLabels",
                     gateway_labels(o), "strategy", "type", "RollingUpdate", "rollingUpdate",
                     "maxUnavailable", 0, "maxSurge", 1, "template", "metadata", "labels",
                     gateway_labels(o), "spec", pod_spec_obj);
}

static json_t *gateway_service(const struct manifest_opts *o)
{
    json_t *ports =
        json_pack("[{s:s, s:i, s:s, s:s}, {s:s, s:i, s:s, s:s}, {s:s, s:i, s:s, s:s}]", "name",
                  "proxy", "port", (int)o->proxy_port, "protocol", "TCP", "targetPort", "proxy",
                  "name", "dns", "port", 53, "protocol", "UDP", "targetPort", "dns", "name",
                  "dns-tcp", "port", 53, "protocol", "TCP", "targetPort", "dns-tcp");
    return json_pack("{s:s, s:s, s:{s:s, s:o}, s:{s:s, s:o, s:o}}", "apiVersion", "v1", "kind",
                     "Service", "metadata", "name", o->name, "labels", gateway_labels(o), "spec",
                     "type", "ClusterIP", "selector", gateway_labels(o), "ports", ports);
}

/* Sandboxes may send to the gateway's proxy and DNS ports and nowhere
 * else; NetworkPolicy sees pod addresses and target ports, after the
 * Service's translation. */
static json_t *sandbox_network_policy(const struct manifest_opts *o)
{
    char name[MANIFEST_NAME_MAX + 16];
    snprintf(name, sizeof name, "%s-sandboxes", o->name);
    json_t *ports =
        json_pack("[{s:s, s:i}, {s:s, s:i}, {s:s, s:i}]", "protocol", "TCP", "port",
                  (int)o->proxy_port, "protocol", "UDP", "port", 53, "protocol", "TCP", "port", 53);
    return json_pack("{s:s, s:s, s:{s:s, s:o}, s:{s:{s:{s:s}}, s:[s], s:[{s:[{s:{s:o}}], s:o}]}}",
                     "apiVersion", "networking.k8s.io/v1", "kind", "NetworkPolicy", "metadata",
                     "name", name, "labels", manifest_labels(o->name, "policy"), "spec",
                     "podSelector", "matchLabels", SANDBOX_LABEL, "true", "policyTypes", "Egress",
                     "egress", "to", "podSelector", "matchLabels", gateway_labels(o), "ports",
                     ports);
}

/* ---- documents and the comment ------------------------------------------- */

static void describe(const struct manifest_opts *o, const struct k8s_names *n, const char *format,
                     char *out, size_t size)
{
    size_t len = 0;
#define SAY(...)                                                                                   \
    do {                                                                                           \
        if (len < size)                                                                            \
            len += (size_t)snprintf(out + len, size - len, __VA_ARGS__);                           \
    } while (0)
    if (o->gateway) {
        SAY("sluice manifest k8s --gateway: a shared sluice (Deployment + Service %s)\n"
            "and a NetworkPolicy that lets pods labelled %s: \"true\" reach only its\n"
            "proxy (%u) and DNS (53). In each sandbox pod set, with\n"
            "IP=$(kubectl get service %s -o jsonpath='{.spec.clusterIP}'):\n"
            "  HTTPS_PROXY=http://IP:%u (and the other proxy variables),\n"
            "  dnsPolicy: None, dnsConfig.nameservers: [IP]\n"
            "Per-sandbox policies: the policy's \"clients\" (by source address or name).\n"
            "The policy reloads when the ConfigMap changes (--watch-policy).\n",
            o->name, SANDBOX_LABEL, (unsigned)o->proxy_port, o->name, (unsigned)o->proxy_port);
    } else if (strcmp(format, "patch") == 0) {
        SAY("sluice manifest k8s --format patch: adds sluice to a workload's pod\n"
            "template (strategic merge; containers merge by name):\n"
            "  sluice manifest k8s ... --format configmap | kubectl apply -f -\n"
            "  kubectl patch deployment NAME --patch-file this.yaml\n");
    } else if (strcmp(format, "configmap") == 0) {
        SAY("sluice manifest k8s --format configmap: the policy ConfigMap %s\n", n->configmap);
    } else {
        SAY("sluice manifest k8s: pod %s with sluice as a native sidecar (Kubernetes\n"
            ">= 1.29) and its policy ConfigMap %s. kubectl apply -f this.yaml\n",
            o->name, n->configmap);
    }
    if (o->intercept && strcmp(format, "configmap") != 0)
        SAY("TLS interception: create the CA Secret first (the key stays in sluice's\n"
            "containers; the workload gets only the certificate, in a bundle):\n"
            "  sluice ca init --dir ca && kubectl create secret generic " CA_SECRET
            " \\\n    --from-file=ca.pem=ca/ca.pem --from-file=ca.key=ca/ca.key\n");
    if (o->warm)
        SAY("Warm pool: the pod starts denying everything. Create the token Secret:\n"
            "  head -c 32 /dev/urandom | base64 > token\n"
            "  kubectl create secret generic " TOKEN_SECRET " --from-file=token=token\n"
            "and when a sandbox is assigned, send its policy:\n"
            "  curl -X PUT -H \"Authorization: Bearer $(cat token)\" \\\n"
            "    --data-binary @policy.json http://POD_IP:%u/policy\n",
            (unsigned)o->admin_port);
    if (!o->gateway && !o->warm && strcmp(format, "configmap") != 0)
        SAY("The policy reloads when the ConfigMap changes (--watch-policy).");
    if (o->warm)
        SAY("A restarted sidecar starts from the deny-all file again: send the policy again.");
#undef SAY
}

int manifest_k8s(const struct manifest_opts *o, json_t **docs, char *comment, size_t comment_size,
                 char *err, size_t err_size)
{
    struct k8s_names n;
    const char *format = o->format ? o->format : "pod";
    snprintf(n.configmap, sizeof n.configmap, "%s-policy", o->name);
    snprintf(n.proxy_url, sizeof n.proxy_url, "http://127.0.0.1:%u", (unsigned)o->proxy_port);
    snprintf(n.dns, sizeof n.dns, "127.0.0.1:%u", (unsigned)o->dns_port);
    *docs = json_array();
    if (o->gateway) {
        json_array_append_new(*docs, manifest_configmap(o, n.configmap));
        json_array_append_new(*docs, gateway_deployment(o, &n));
        json_array_append_new(*docs, gateway_service(o));
        json_array_append_new(*docs, sandbox_network_policy(o));
    } else if (strcmp(format, "patch") == 0) {
        json_array_append_new(
            *docs, json_pack("{s:{s:{s:o}}}", "spec", "template", "spec", pod_spec(o, &n, true)));
    } else {
        json_array_append_new(*docs, manifest_configmap(o, n.configmap));
        if (strcmp(format, "pod") == 0)
            json_array_append_new(*docs, pod(o, &n));
    }
    describe(o, &n, format, comment, comment_size);
    (void)err;
    (void)err_size;
    return 0;
}
