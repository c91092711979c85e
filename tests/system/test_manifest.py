"""`sluice manifest k8s|podman` (docs/DEPLOY.md): the output byte for byte
(golden files), every object valid against the Kubernetes API schemas
(kubernetes-models, run by node), the commands inside it accepted by sluice
itself, and bad options or policies refused with exit 2 and a precise message.

Regenerate the golden files after an intended change with
SLUICE_REGEN_GOLDEN=1 (docs/TESTING.md) and review the diff."""

import os
import subprocess
import time

import pytest
import yaml

from conftest import SLOW, SLUICE_BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "tests", "deploy")
POLICIES = os.path.join(DEPLOY, "policies")
GOLDEN = os.path.join(DEPLOY, "golden")
REGEN = os.environ.get("SLUICE_REGEN_GOLDEN") == "1"


def pol(name):
    return os.path.join(POLICIES, name)


PODMAN = ["podman", "--policy", pol("podman.json"), "--subnet", "203.0.113.0/26",
          "--sandbox", "cli", "--sandbox", "web=localhost/sluice:test",
          "--workload-image", "localhost/sluice:test",
          "--client-policy", "cli=" + pol("podman-cli.json"),
          "--workload-command", "sleep", "--workload-command", "infinity"]

CASES = {
    "k8s-pod": ["k8s", "--policy", pol("sandbox.json"), "--workload-image", "python:3.12-slim",
                "--workload-command", "python3", "--workload-command", "/app/executor.py"],
    "k8s-intercept-kata": ["k8s", "--policy", pol("intercept.json"), "--name", "agent",
                           "--workload-image", "python:3.12-slim", "--runtime-class", "kata",
                           "--executor-port", "0", "--workload-uid", "-1"],
    "k8s-warm": ["k8s", "--policy", pol("sandbox.json"), "--name", "warm-0",
                 "--workload-image", "python:3.12-slim", "--warm"],
    "k8s-patch": ["k8s", "--policy", pol("intercept.json"), "--format", "patch",
                  "--container", "agent"],
    "k8s-configmap": ["k8s", "--policy", pol("sandbox.json"), "--format", "configmap"],
    "k8s-gateway": ["k8s", "--policy", pol("gateway.json"), "--gateway"],
    "podman": PODMAN,
    "podman-sandboxes": PODMAN + ["--only", "sandboxes"],
    "podman-intercept": ["podman", "--policy", pol("intercept.json"), "--subnet", "10.89.0.0/24",
                         "--sandbox", "agent", "--workload-image", "python:3.12-slim",
                         "--ca-dir", "/var/lib/sluice/ca", "--only", "sandboxes"],
}


def manifest(args):
    return subprocess.run([SLUICE_BIN, "manifest"] + args, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def outputs():
    out = {}
    for name, args in CASES.items():
        r = manifest(args)
        assert r.returncode == 0, (name, r.stderr.decode())
        assert r.stderr == b"", (name, r.stderr.decode())
        out[name] = r.stdout
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(outputs, name):
    path = os.path.join(GOLDEN, name + ".yaml")
    if REGEN:
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "wb") as f:
            f.write(outputs[name])
    with open(path, "rb") as f:
        want = f.read()
    assert outputs[name] == want, "%s differs from %s (SLUICE_REGEN_GOLDEN=1 regenerates)" % (
        name, path)


@pytest.fixture(scope="module")
def checker():
    """node + kubernetes-models, installed from the lock file once."""
    for tool in ("node", "npm"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
            pytest.fail("%s is missing: make deps installs it (the manifest check needs it)" %
                        tool)
    if not os.path.isdir(os.path.join(DEPLOY, "node_modules", "kubernetes-models")):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=DEPLOY,
                           capture_output=True, timeout=600)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()

    def check(*files):
        r = subprocess.run(["node", os.path.join(DEPLOY, "check.mjs")] + list(files),
                           capture_output=True, timeout=120)
        return r.returncode, r.stdout.decode() + r.stderr.decode()
    return check


def test_valid_against_kubernetes_schemas(outputs, checker, tmp_path):
    files = []
    for name, text in sorted(outputs.items()):
        p = tmp_path / (name + ".yaml")
        p.write_bytes(text)
        files.append(str(p))
    rc, text = checker(*files)
    assert rc == 0, text
    # Every document was looked at: the ConfigMap, pods, Deployment, ...
    assert text.count(": valid") == sum(t.count(b"\n---\n") + (0 if t.startswith(b"#") else 1)
                                        for t in outputs.values()), text


BROKEN = [
    # what is changed in the pod, and what the check must say
    ("containerPort: 8666", 'containerPort: "8666"', "must be integer"),
    ('restartPolicy: "Always"', "restartPolicy: [1]", "must be string"),
    ('kind: "Pod"', 'kind: "Pd"', "no kind Pd"),
    ("  name: \"sandbox\"\n", "  name: no\n", "reads differently as YAML 1.1 and 1.2"),
    ('apiVersion: "v1"\nkind: "Pod"', 'apiVersion: "v1"\nkind: "Pod"\nkind: "Pod"', "YAML"),
]


@pytest.mark.parametrize("old,new,why", BROKEN)
def test_check_catches_a_broken_manifest(outputs, checker, tmp_path, old, new, why):
    text = outputs["k8s-pod"].decode()
    assert old in text
    p = tmp_path / "broken.yaml"
    p.write_text(text.replace(old, new, 1))
    rc, out = checker(str(p))
    assert rc == 1, out
    assert why in out, out


def containers(outputs, case, kind="Pod"):
    """(pod name, container) for every container of every object of kind."""
    found = []
    for doc in yaml.safe_load_all(outputs[case].decode()):
        if doc.get("kind") != kind:
            continue
        spec = doc["spec"]["template"]["spec"] if kind == "Deployment" else doc["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            found.append((doc["metadata"]["name"], c))
    return found


@pytest.mark.parametrize("case,marker", [
    ("k8s-pod", "th dport 53 dnat ip to 127.0.0.1:5353"),
    ("podman", "ip daddr 203.0.113.1 tcp dport 8080 meta mark set 0x5c1ce accept"),
])
def test_enforce_args_accepted(outputs, case, marker):
    """The rules container's arguments are ones `sluice enforce` takes: a dry
    run prints the script it would apply."""
    args = [c["args"] for _, c in containers(outputs, case)
            if c.get("args", [])[:2] == ["enforce", "apply"]]
    assert args
    for a in args:
        r = subprocess.run([SLUICE_BIN] + a + ["--dry-run", "--interface", "eth0"],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr.decode()
        assert marker in r.stdout.decode()


def test_workload_has_no_capabilities(outputs):
    for case in CASES:
        for kind in ("Pod", "Deployment"):
            for pod, c in containers(outputs, case, kind) if case != "k8s-patch" else []:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, (case, pod, c["name"])
                assert sc["capabilities"]["drop"] == ["ALL"], (case, pod, c["name"])
                added = sc["capabilities"].get("add", [])
                if c["name"] in ("workload", "sluice-ca-bundle", "ca-bundle"):
                    assert added == [], (case, c["name"])
                elif c.get("args", [])[:1] == ["enforce"]:
                    assert added == ["NET_ADMIN"], (case, c["name"])
                else:
                    assert "NET_ADMIN" not in added, (case, c["name"])


ERRORS = [
    ([], "say k8s or podman"),
    (["helm"], "unknown target 'helm'"),
    (["k8s"], "--policy FILE is required"),
    (["k8s", "--policy", pol("sandbox.json")], "--workload-image IMG is required"),
    (["k8s", "--policy", pol("sandbox.json"), "--workload-image", "x", "--format", "json"],
     "--format must be pod, patch or configmap, not 'json'"),
    (["k8s", "--policy", pol("sandbox.json"), "--workload-image", "x", "--subnet", "10.0.0.0/8"],
     "--subnet is not an option of 'manifest k8s'"),
    (["k8s", "--policy", pol("sandbox.json"), "--workload-image", "x", "--executor-port", "8080"],
     "--executor-port 8080 is taken by sluice"),
    (["k8s", "--policy", pol("sandbox.json"), "--workload-image", "x", "--name", "Bad_Name"],
     "--name: 'Bad_Name' is not a DNS label"),
    (["k8s", "--policy", pol("sandbox.json"), "--workload-image", "x", "--proxy-port", "0"],
     "--proxy-port must be a port from 1 to 65535, not '0'"),
    (["k8s", "--policy", pol("gateway.json"), "--gateway", "--warm"], "--warm is for sidecar"),
    (["k8s", "--policy", pol("sandbox.json"), "--workload-image", "x", "--bogus"],
     "unknown option '--bogus'"),
    (["podman", "--policy", pol("podman.json"), "--sandbox", "a", "--workload-image", "x"],
     "--subnet CIDR is required"),
    (["podman", "--policy", pol("podman.json"), "--subnet", "2001:db8::/64", "--sandbox", "a",
      "--workload-image", "x"], "not an IPv4 CIDR"),
    (["podman", "--policy", pol("podman.json"), "--subnet", "203.0.113.0/29", "--sandbox", "a",
      "--workload-image", "x"], "too small"),
    (["podman", "--policy", pol("podman.json"), "--subnet", "203.0.113.0/26", "--sandbox", "A b"],
     "--sandbox: 'A b' is not a pod name"),
    (["podman", "--policy", pol("podman.json"), "--subnet", "203.0.113.0/26", "--sandbox", "a"],
     "sandbox a has no image"),
    (["podman", "--policy", pol("podman.json"), "--subnet", "203.0.113.0/26", "--sandbox", "a",
      "--workload-image", "x", "--client-policy", "b=" + pol("podman-cli.json")],
     "--client-policy b: no --sandbox b"),
    (["podman", "--policy", pol("podman.json"), "--subnet", "203.0.113.0/26", "--sandbox", "a",
      "--workload-image", "x", "--gateway-addr", "198.51.100.1"],
     "--gateway-addr: '198.51.100.1' is not an IPv4 address inside 203.0.113.0/26"),
    (["podman", "--policy", pol("intercept.json"), "--subnet", "203.0.113.0/26", "--sandbox",
      "a", "--workload-image", "x"], "give the CA directory with --ca-dir"),
    (["podman", "--policy", pol("podman.json"), "--subnet", "203.0.113.0/26", "--sandbox", "a",
      "--workload-image", "x", "--warm"], "--warm is not an option of 'manifest podman'"),
]


@pytest.mark.parametrize("args,message", ERRORS)
def test_bad_usage_exit_2(args, message):
    r = manifest(args)
    assert r.returncode == 2, r
    assert r.stdout == b""
    assert message in r.stderr.decode(), r.stderr.decode()


def test_bad_policies_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"default": "deny", "rules": [{"allow": "a..b"}]}')
    nodns = tmp_path / "nodns.json"
    nodns.write_text('{"default": "deny", "rules": []}')
    nested = tmp_path / "nested.json"
    nested.write_text('{"default": "deny", "rules": [], "clients": [{"name": "x", "source": '
                      '["10.0.0.1/32"], "policy": "%s"}]}' % pol("ci.json"))
    for path, message in [(bad, str(bad) + ":"), (nodns, "dns.upstream is needed"),
                          (tmp_path / "missing.json", "missing.json")]:
        r = manifest(["k8s", "--policy", str(path), "--workload-image", "x"])
        assert r.returncode == 2, (path, r)
        assert message in r.stderr.decode(), r.stderr.decode()
    r = manifest(["podman", "--policy", pol("podman.json"), "--subnet", "203.0.113.0/26",
                  "--sandbox", "a", "--workload-image", "x", "--client-policy",
                  "a=" + str(nested)])
    assert r.returncode == 2
    assert "cannot have \"clients\" itself" in r.stderr.decode(), r.stderr.decode()


@pytest.fixture
def netns():
    """A network namespace of our own with loopback up, deleted afterwards."""
    name = "sl%d-mf" % os.getpid()
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def sluice_container(outputs, case):
    for _, c in containers(outputs, case, "Deployment" if case == "k8s-gateway" else "Pod"):
        if c.get("args", [])[:1] == ["proxy"]:
            return c
    raise AssertionError("no proxy container in " + case)


@pytest.mark.parametrize("case", ["k8s-pod", "k8s-warm", "k8s-intercept-kata", "k8s-gateway"])
def test_sidecar_args_start_a_ready_proxy(outputs, netns, tmp_path, case):
    """The proxy container's exact arguments, with the mounted files put in
    place, start a sluice that answers /readyz on the probed port."""
    docs = list(yaml.safe_load_all(outputs[case].decode()))
    configmap = [d for d in docs if d and d.get("kind") == "ConfigMap"][0]
    (tmp_path / "policy").mkdir()
    for key, text in configmap["data"].items():
        (tmp_path / "policy" / key).write_text(text)
    token = tmp_path / "admin" / "token"
    token.parent.mkdir()
    token.write_text("tok-" + "x" * 32 + "\n")
    token.chmod(0o600)
    subprocess.run([SLUICE_BIN, "ca", "init", "--dir", str(tmp_path / "ca")], check=True,
                   capture_output=True)
    c = sluice_container(outputs, case)
    args = [a.replace("/etc/sluice/policy", str(tmp_path / "policy"))
             .replace("/etc/sluice/ca", str(tmp_path / "ca"))
             .replace("/etc/sluice/admin", str(tmp_path / "admin")) for a in c["args"]]
    probe = c["readinessProbe"]["httpGet"]
    log = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen(["ip", "netns", "exec", netns, SLUICE_BIN] + args, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 10 * SLOW
        code = ""
        while time.monotonic() < deadline and proc.poll() is None and code != "200":
            code = subprocess.run(
                ["ip", "netns", "exec", netns, "curl", "-s", "-o", "/dev/null", "-w",
                 "%{http_code}", "http://127.0.0.1:%d%s" % (probe["port"], probe["path"])],
                capture_output=True, timeout=30).stdout.decode()
            time.sleep(0.05)
        assert code == "200", (tmp_path / "stderr").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "stderr").read_text()


def test_ca_bundle(tmp_path):
    """`sluice ca bundle`, the sidecar pod's init step: the system roots, then
    the CA certificate; never the key."""
    ca = tmp_path / "ca"
    subprocess.run([SLUICE_BIN, "ca", "init", "--dir", str(ca)], check=True, capture_output=True)
    roots = tmp_path / "roots.pem"
    roots.write_text(open("/etc/ssl/certs/ca-certificates.crt").read())
    out = tmp_path / "bundle.pem"
    r = subprocess.run([SLUICE_BIN, "ca", "bundle", "--dir", str(ca), "--roots", str(roots),
                        "--out", str(out)], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    text = out.read_text()
    assert text.startswith(roots.read_text())
    assert text.endswith((ca / "ca.pem").read_text())
    assert "PRIVATE KEY" not in text
    r = subprocess.run([SLUICE_BIN, "ca", "bundle", "--dir", str(ca)], capture_output=True)
    assert r.returncode == 2 and b"bundle needs --out FILE" in r.stderr
    r = subprocess.run([SLUICE_BIN, "ca", "bundle", "--dir", str(tmp_path / "none"), "--out",
                        str(tmp_path / "x.pem")], capture_output=True)
    assert r.returncode == 1 and b"no CA here" in r.stderr
