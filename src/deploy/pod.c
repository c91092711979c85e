/* Pieces every generated layout shares: the workload's variables and
 * security context, labels, the policy ConfigMap (see manifest.h). */
#include <stdio.h>

#include "deploy/manifest.h"

/* SPEC §3: what `sluice run` sets in the child, so a workload behaves the
 * same in a pod as on a laptop. */
static const char *const proxy_vars[] = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                         "http_proxy", "https_proxy", "all_proxy"};
static const char *const ca_vars[] = {"SSL_CERT_FILE",       "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE",
                                      "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "PIP_CERT",
                                      "AWS_CA_BUNDLE"};

static void add_env(json_t *env, const char *name, const char *value)
{
    json_array_append_new(env, json_pack("{s:s, s:s}", "name", name, "value", value));
}

json_t *manifest_workload_env(const char *proxy_url, const char *bundle)
{
    json_t *env = json_array();
    for (size_t i = 0; i < sizeof proxy_vars / sizeof proxy_vars[0]; i++)
        add_env(env, proxy_vars[i], proxy_url);
    add_env(env, "NO_PROXY", "localhost,127.0.0.1,::1");
    add_env(env, "no_proxy", "localhost,127.0.0.1,::1");
    for (size_t i = 0; bundle && i < sizeof ca_vars / sizeof ca_vars[0]; i++)
        add_env(env, ca_vars[i], bundle);
    return env;
}

json_t *manifest_workload_security(long uid)
{
    json_t *sc =
        json_pack("{s:b, s:{s:[s]}}", "allowPrivilegeEscalation", 0, "capabilities", "drop", "ALL");
    if (uid > 0) {
        json_object_set_new(sc, "runAsNonRoot", json_true());
        json_object_set_new(sc, "runAsUser", json_integer(uid));
    } else if (uid == 0) {
        json_object_set_new(sc, "runAsUser", json_integer(0));
    }
    return sc;
}

json_t *manifest_root_security(json_t *caps)
{
    return json_pack("{s:i, s:b, s:b, s:b, s:{s:[s], s:o}}", "runAsUser", 0, "runAsNonRoot", 0,
                     "allowPrivilegeEscalation", 0, "readOnlyRootFilesystem", 1, "capabilities",
                     "drop", "ALL", "add", caps);
}

json_t *manifest_labels(const char *name, const char *component)
{
    return json_pack("{s:s, s:s, s:s}", "app.kubernetes.io/name", "sluice",
                     "app.kubernetes.io/instance", name, "app.kubernetes.io/component", component);
}

const char *manifest_policy_key(void)
{
    return "policy.json";
}

json_t *manifest_configmap(const struct manifest_opts *o, const char *name)
{
    json_t *data = json_object();
    for (size_t i = 0; i < o->n_files; i++)
        json_object_set_new(data, o->files[i].key, json_string(o->files[i].text));
    return json_pack("{s:s, s:s, s:{s:s, s:o}, s:o}", "apiVersion", "v1", "kind", "ConfigMap",
                     "metadata", "name", name, "labels", manifest_labels(o->name, "policy"), "data",
                     data);
}
