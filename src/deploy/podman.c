/* `sluice manifest podman`: the seeds' Podman topology for `podman kube
 * play` (docs/DEPLOY.md).
 *
 * A central gateway pod on the host's network serves the proxy and the DNS
 * filter on the --internal network's gateway address; each sandbox pod has
 * a jailer init container that writes the kernel rules (uid mode, the
 * gateway as the only proxy and DNS) before its workload starts. Sandboxes
 * get static addresses (kube play --ip, in document order), which the
 * gateway's `clients` match: no address is guessed at start-up. */
#include <stdio.h>
#include <string.h>

#include "deploy/manifest.h"

#define GATEWAY_UID 65532 /* the image's user */

static json_t *policy_volume(const char *configmap)
{
    return json_pack("{s:s, s:{s:s}}", "name", "policy", "configMap", "name", configmap);
}

/* The gateway pod is NAME-gateway (sluice-gateway by default), its
 * ConfigMap NAME-gateway-policy, its container NAME-gateway-sluice. */
static void gateway_name(const struct manifest_opts *o, char *buf, size_t size)
{
    snprintf(buf, size, "%s-gateway", o->name);
}

static json_t *gateway_pod(const struct manifest_opts *o, const char *configmap)
{
    char name[MANIFEST_NAME_MAX + 16];
    gateway_name(o, name, sizeof name);
    char listen[96], dns[96], admin[32];
    snprintf(listen, sizeof listen, "%s:%u", o->gateway_addr, (unsigned)o->proxy_port);
    snprintf(dns, sizeof dns, "%s:%u", o->gateway_addr, (unsigned)o->dns_port);
    snprintf(admin, sizeof admin, "127.0.0.1:%u", (unsigned)o->admin_port);
    json_t *args = json_pack("[s, s, s, s, s, s, s, s, s]", "proxy", "--policy",
                             MANIFEST_POLICY_DIR "/policy.json", "--listen", listen, "--dns", dns,
                             "--admin", admin);
    json_t *mounts = json_pack("[{s:s, s:s, s:b}]", "name", "policy", "mountPath",
                               MANIFEST_POLICY_DIR, "readOnly", 1);
    json_t *volumes = json_pack("[o]", policy_volume(configmap));
    if (o->intercept) {
        json_array_append_new(args, json_string("--ca"));
        json_array_append_new(args, json_string(MANIFEST_CA_DIR));
        json_array_append_new(mounts, json_pack("{s:s, s:s, s:b}", "name", "ca", "mountPath",
                                                MANIFEST_CA_DIR, "readOnly", 1));
        json_array_append_new(volumes, json_pack("{s:s, s:{s:s, s:s}}", "name", "ca", "hostPath",
                                                 "path", o->ca_host_dir, "type", "Directory"));
    }
    /* No capability at all: the DNS filter is on an unprivileged port (the
     * jailers send every port-53 query there) and nothing in the gateway's
     * namespace needs its marks. */
    json_t *security = manifest_workload_security(GATEWAY_UID);
    json_object_set_new(security, "readOnlyRootFilesystem", json_true());
    json_t *container =
        json_pack("{s:s, s:s, s:o, s:o, s:o}", "name", "sluice", "image", o->image, "args", args,
                  "volumeMounts", mounts, "securityContext", security);
    return json_pack("{s:s, s:s, s:{s:s, s:o}, s:{s:b, s:[o], s:o}}", "apiVersion", "v1", "kind",
                     "Pod", "metadata", "name", name, "labels", manifest_labels(o->name, "gateway"),
                     "spec", "hostNetwork", 1, "containers", container, "volumes", volumes);
}

static json_t *jailer(const struct manifest_opts *o)
{
    char port[8], dns[96];
    snprintf(port, sizeof port, "%u", (unsigned)o->proxy_port);
    snprintf(dns, sizeof dns, "%s:%u", o->gateway_addr, (unsigned)o->dns_port);
    json_t *args = json_pack("[s, s, s, s, s, s, s, s, s, s, s, s]", "enforce", "apply", "--mode",
                             "uid", "--proxy-addr", o->gateway_addr, "--proxy-port", port,
                             "--admin-port", "0", "--dns", dns);
    return json_pack("{s:s, s:s, s:o, s:o}", "name", "jailer", "image", o->image, "args", args,
                     "securityContext", manifest_root_security(json_pack("[s]", "NET_ADMIN")));
}

/* The trust bundle (system roots + sluice's CA) for the workload, made
 * before it starts; only ca.pem is mounted, never the key. */
static json_t *bundle_init(const struct manifest_opts *o)
{
    json_t *args = json_pack("[s, s, s, s, s, s]", "ca", "bundle", "--dir", MANIFEST_CA_DIR,
                             "--out", MANIFEST_BUNDLE);
    json_t *mounts = json_pack("[{s:s, s:s, s:b}, {s:s, s:s}]", "name", "ca-cert", "mountPath",
                               MANIFEST_CA_DIR "/ca.pem", "readOnly", 1, "name", "bundle",
                               "mountPath", MANIFEST_BUNDLE_DIR);
    return json_pack("{s:s, s:s, s:o, s:o, s:o}", "name", "ca-bundle", "image", o->image, "args",
                     args, "volumeMounts", mounts, "securityContext",
                     manifest_workload_security(-1));
}

static json_t *sandbox_pod(const struct manifest_opts *o, const struct manifest_sandbox *s)
{
    char proxy_url[128];
    snprintf(proxy_url, sizeof proxy_url, "http://%s:%u", o->gateway_addr, (unsigned)o->proxy_port);
    json_t *workload = json_pack("{s:s, s:s}", "name", "workload", "image",
                                 s->image ? s->image : o->workload_image);
    if (o->n_command > 0) {
        json_t *cmd = json_array();
        for (size_t i = 0; i < o->n_command; i++)
            json_array_append_new(cmd, json_string(o->command[i]));
        json_object_set_new(workload, "command", cmd);
    }
    json_object_set_new(workload, "env",
                        manifest_workload_env(proxy_url, o->intercept ? MANIFEST_BUNDLE : NULL));
    json_object_set_new(workload, "securityContext", manifest_workload_security(o->workload_uid));
    json_t *inits = json_pack("[o]", jailer(o));
    /* Always would make podman 4.3 run the finished jailer again and again.
     * The resolver must be an address the pod can route to: the gateway. */
    json_t *spec =
        json_pack("{s:s, s:s, s:{s:[s]}, s:o}", "restartPolicy", "OnFailure", "dnsPolicy", "None",
                  "dnsConfig", "nameservers", o->gateway_addr, "initContainers", inits);
    if (o->intercept) {
        json_array_append_new(inits, bundle_init(o));
        json_object_set_new(workload, "volumeMounts",
                            json_pack("[{s:s, s:s, s:b}]", "name", "bundle", "mountPath",
                                      MANIFEST_BUNDLE_DIR, "readOnly", 1));
    }
    json_object_set_new(spec, "containers", json_pack("[o]", workload));
    if (o->intercept) {
        char ca_pem[4200];
        snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", o->ca_host_dir);
        json_object_set_new(spec, "volumes",
                            json_pack("[{s:s, s:{s:s, s:s}}, {s:s, s:{}}]", "name", "ca-cert",
                                      "hostPath", "path", ca_pem, "type", "File", "name", "bundle",
                                      "emptyDir"));
    }
    json_t *labels = manifest_labels(o->name, "sandbox");
    json_object_set_new(labels, "sluice.dev/sandbox", json_string("true"));
    return json_pack("{s:s, s:s, s:{s:s, s:o, s:{s:s}}, s:o}", "apiVersion", "v1", "kind", "Pod",
                     "metadata", "name", s->name, "labels", labels, "annotations",
                     "sluice.dev/address", s->address, "spec", spec);
}

static void describe(const struct manifest_opts *o, char *out, size_t size)
{
    char gw[MANIFEST_NAME_MAX + 16];
    gateway_name(o, gw, sizeof gw);
    size_t n = 0;
    n += (size_t)snprintf(out + n, size - n,
                          "sluice manifest podman: a central gateway and %zu sandbox pod%s on the\n"
                          "--internal network %s (docs/DEPLOY.md).\n\n"
                          "1. The network, once (podman's DNS off: the sandboxes ask the\n"
                          "   gateway's; --gateway puts that address on the bridge):\n"
                          "     podman network create --internal --disable-dns --subnet %s \\\n"
                          "       --gateway %s %s\n"
                          "2. The sandboxes (jailed before their workload starts), with the\n"
                          "   addresses the gateway's policy knows them by, in this order:\n"
                          "     sluice manifest podman ... --only sandboxes > sandboxes.yaml\n"
                          "     podman kube play --network %s",
                          o->n_sandboxes, o->n_sandboxes == 1 ? "" : "s", o->network, o->subnet,
                          o->gateway_addr, o->network, o->network);
    for (size_t i = 0; i < o->n_sandboxes && n < size; i++)
        n += (size_t)snprintf(out + n, size - n, " --ip %s", o->sandboxes[i].address);
    if (n < size)
        snprintf(out + n, size - n,
                 " sandboxes.yaml\n"
                 "3. The gateway, on the host's network, serving the proxy on %s:%u\n"
                 "   and DNS on %s:%u (the network's bridge address, there once a\n"
                 "   sandbox is up):\n"
                 "     sluice manifest podman ... --only gateway > gateway.yaml\n"
                 "     podman kube play gateway.yaml\n"
                 "Reload (open connections stay): change the files of the policy volume\n"
                 "(podman volume inspect %s-policy), then\n"
                 "     podman kill --signal HUP %s-sluice%s",
                 o->gateway_addr, (unsigned)o->proxy_port, o->gateway_addr, (unsigned)o->dns_port,
                 gw, gw,
                 o->intercept ? "\nThe gateway runs as uid 65532: make the CA directory its own\n"
                                "(chown -R 65532:65532 DIR); sandboxes get only ca.pem."
                              : "");
}

int manifest_podman(const struct manifest_opts *o, json_t **docs, char *comment,
                    size_t comment_size, char *err, size_t err_size)
{
    char configmap[MANIFEST_NAME_MAX + 16];
    bool gateway = !o->only || strcmp(o->only, "gateway") == 0;
    bool sandboxes = !o->only || strcmp(o->only, "sandboxes") == 0;
    char name[MANIFEST_NAME_MAX + 16];
    gateway_name(o, name, sizeof name);
    snprintf(configmap, sizeof configmap, "%s-policy", name);
    *docs = json_array();
    if (gateway) {
        json_array_append_new(*docs, manifest_configmap(o, configmap));
        json_array_append_new(*docs, gateway_pod(o, configmap));
    }
    for (size_t i = 0; sandboxes && i < o->n_sandboxes; i++)
        json_array_append_new(*docs, sandbox_pod(o, &o->sandboxes[i]));
    describe(o, comment, comment_size);
    (void)err;
    (void)err_size;
    return 0;
}
