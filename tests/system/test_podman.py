"""Podman end to end: the image, a central gateway and jailed sandbox pods.

The seeds' topology exactly as `sluice manifest podman` prints it, played
with the commands its comment gives (network, sandboxes, then gateway), from
the image that scripts/build-image makes (FROM scratch, nothing pulled):

    world inet ── eth0 (pod_world.Pod 7) ── namespace H
                                             ├ gateway pod, hostNetwork: sluice proxy
                                             │   203.0.113.65:8080, DNS filter :5353
                                             └ podman bridge 203.0.113.65/26 (--internal)
                                                 ├ sandbox pod sbx1 203.0.113.74
                                                 └ sandbox pod sbx2 203.0.113.75 (a client
                                                   with a policy of its own)

Each sandbox pod has a jailer init container (`sluice enforce apply --mode
uid --proxy-addr GATEWAY`, NET_ADMIN only there) and a workload container
(every capability dropped, uid 1000) that runs curl.

Every podman command runs under `nsenter --net=H`, so netavark's bridge,
veths and sysctls land in H, never in the root namespace (checked below).
`ip netns exec` cannot be used: it remounts /sys, which hides the cgroup
mounts runc needs. Pods, the network and the ConfigMap volume carry the
world's prefix; the fixture removes them even on failure, and objects of a
killed run are removed by the next one.
"""

import contextlib
import ctypes
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time

import pytest

import rawhttp
import world as W
from conftest import ASAN, REPO, SLOW, SLUICE_BIN
from pod_world import Pod

pytestmark = [
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
    pytest.mark.skipif(ASAN, reason="the image holds the normal build, not the ASan one"),
]

IMAGE = "localhost/sluice:test"
SUBNET, GATEWAY = "203.0.113.64/26", "203.0.113.65"
SANDBOXES = ("sbx1", "sbx2")  # pods PREFIX-sbx1, PREFIX-sbx2; sbx2 has a policy of its own
CONTROL_IP = "203.0.113.80"
PROXY_PORT, ADMIN_PORT, DNS_PORT, GREET_PORT = 8080, 8081, 5353, 9999
HOST_POD_INDEX = 7
DENY_REASON = "denied.test is off limits"
SBX2_REASON = "not for sbx2"

_NAME_RE = re.compile(r"^sl(\d+)-")


def containers_conf(path):
    """runc, cgroupfs, file events and rlimits this VM lets runc set.

    `--ulimit host` does not help here: podman 4.3 still asks runc for
    nofile=1048576, above the hard limit, and runc fails (EPERM). Explicit
    limits at or below the caller's work, and containers.conf is the only
    place `kube play` takes them from."""
    nofile = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    with open(path, "w") as f:
        f.write(textwrap.dedent("""\
            [containers]
            default_ulimits = ["nofile=%d:%d", "nproc=4096:4096"]
            [engine]
            runtime = "runc"
            cgroup_manager = "cgroupfs"
            events_logger = "file"
            """ % (nofile, nofile)))


def main_policy():
    return {
        "default": "deny",
        "rules": [{"deny": "denied.test", "reason": DENY_REASON},
                  {"allow": "allowed.test", "ports": [80, 443]},
                  {"allow": "other.test", "ports": [80]}],
        "reach_ranges": list(W.DOC_RANGES),
        "dns": {"upstream": [W.DNS]},
    }


def sbx2_policy():
    return {
        "default": "deny",
        "rules": [{"deny": "allowed.test", "reason": SBX2_REASON},
                  {"allow": "other.test", "ports": [80]}],
        "reach_ranges": list(W.DOC_RANGES),
    }


def manifest(prefix, policy, client_policy, only):
    """`sluice manifest podman` for this topology: (comment lines, YAML)."""
    r = subprocess.run([SLUICE_BIN, "manifest", "podman", "--policy", policy,
                        "--subnet", SUBNET, "--name", prefix, "--network", prefix + "-net",
                        "--image", IMAGE, "--workload-image", IMAGE,
                        "--workload-command", "sleep", "--workload-command", "infinity",
                        "--proxy-port", str(PROXY_PORT), "--admin-port", str(ADMIN_PORT),
                        "--dns-port", str(DNS_PORT)] +
                       [a for n in SANDBOXES for a in ("--sandbox", "%s-%s" % (prefix, n))] +
                       ["--client-policy", "%s-sbx2=%s" % (prefix, client_policy),
                        "--only", only],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def printed_commands(text):
    """The podman commands of the output's comment, continuation lines joined."""
    cmds, cur = [], ""
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line[1:].strip()
        if cur or body.startswith("podman "):
            cur += body
            if cur.endswith("\\"):
                cur = cur[:-1]
            else:
                cmds.append(cur.split())
                cur = ""
    return cmds


def root_netns_state():
    """What podman could have changed in the root namespace (read only)."""
    out = []
    for cmd in (["ip", "-o", "link"], ["ip", "-o", "addr"], ["ip", "route"], ["ip", "-6", "route"],
                ["nft", "list", "ruleset"], ["sysctl", "-n", "net.ipv4.ip_forward"]):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10,
                           text=True)
        # Counters and link statistics move on their own.
        out.append(re.sub(r"packets \d+ bytes \d+", "", r.stdout))
    return out


class PodmanHost:
    """Namespace H, the podman objects in it, and helpers to reach them."""

    def __init__(self, world, host):
        self.world = world
        self.host = host
        self.prefix = world.prefix
        self.network = self.prefix + "-net"
        self.dir = tempfile.mkdtemp(prefix="sluice-podman-")
        self.conf = os.path.join(self.dir, "containers.conf")
        containers_conf(self.conf)
        self.gw_yaml = os.path.join(self.dir, "gateway.yaml")
        self.sbx_yaml = os.path.join(self.dir, "sandboxes.yaml")
        self.gw = self.prefix + "-gateway"  # the manifest's --name NAME: NAME-gateway
        self.addresses = {}  # sandbox -> the address the manifest gave it
        self.socks = []
        self.stopping = False
        self.kube_net_made = False

    def podman(self, *args, timeout=120, check=True):
        env = dict(os.environ, CONTAINERS_CONF=self.conf)
        r = subprocess.run(["nsenter", "--net=/run/netns/" + self.host.ns, "podman"] +
                           list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout * SLOW, env=env, text=True)
        if check and r.returncode != 0:
            raise AssertionError("podman %s: exit %d\n%s%s" % (" ".join(args), r.returncode,
                                                               r.stdout, r.stderr))
        return r

    # -- lifecycle -----------------------------------------------------------

    def remove_objects(self, match):
        """Pods, networks and volumes whose name `match` accepts."""
        for kind, rm in (("pod", ["pod", "rm", "-f", "-t", "0"]), ("network", ["network", "rm", "-f"]),
                         ("volume", ["volume", "rm", "-f"])):
            r = self.podman(kind, "ls", "--format", "{{.Name}}", check=False)
            for name in r.stdout.split():
                if match(name):
                    self.podman(*(rm + [name]), check=False)

    def remove_stale(self):
        def dead(name):
            m = _NAME_RE.match(name)
            return bool(m) and not W._pid_alive(int(m.group(1)))
        self.remove_objects(dead)

    def start(self):
        self.remove_stale()
        # kube play makes this network (a file, no bridge) on first use.
        r = self.podman("network", "exists", "podman-default-kube-network", check=False)
        self.kube_net_made = r.returncode != 0
        self.listen("0.0.0.0", GREET_PORT)
        policy, client = (os.path.join(self.dir, n) for n in ("policy.json", "sbx2.json"))
        for path, pol in ((policy, main_policy()), (client, sbx2_policy())):
            with open(path, "w") as f:
                json.dump(pol, f)
        sbx = manifest(self.prefix, policy, client, "sandboxes")
        with open(self.sbx_yaml, "w") as f:
            f.write(sbx)
        with open(self.gw_yaml, "w") as f:
            f.write(manifest(self.prefix, policy, client, "gateway"))
        # The commands the comment prints, in its order, as printed (only the
        # file names are ours); the last one is the reload, used below.
        cmds = printed_commands(sbx)
        assert [c[:3] for c in cmds] == [["podman", "network", "create"],
                                         ["podman", "kube", "play"], ["podman", "kube", "play"],
                                         ["podman", "kill", "--signal"]]
        assert cmds.pop() == ["podman", "kill", "--signal", "HUP", self.gw + "-sluice"]
        assert cmds[0] == ["podman", "network", "create", "--internal", "--disable-dns",
                           "--subnet", SUBNET, "--gateway", GATEWAY, self.network]
        ips = [cmds[1][i + 1] for i, a in enumerate(cmds[1]) if a == "--ip"]
        self.addresses = dict(zip(SANDBOXES, ips))
        assert len(ips) == len(SANDBOXES) and CONTROL_IP not in ips
        files = {"sandboxes.yaml": self.sbx_yaml, "gateway.yaml": self.gw_yaml}
        for cmd in cmds:
            self.podman(*[files.get(a, a) for a in cmd[1:]])
            if cmd[-1] == "sandboxes.yaml":
                # Each jailer has finished: its rules are in the pod.
                for name in SANDBOXES:
                    assert "table inet sluice" in self.pod_nft(name, "list", "tables").stdout
        self.wait_gateway()

    def stop(self):
        self.stopping = True
        for s in self.socks:
            s.close()
        with contextlib.suppress(Exception):
            self.remove_objects(lambda n: n.startswith(self.prefix + "-"))
            if self.kube_net_made:
                self.podman("network", "rm", "podman-default-kube-network", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def listen(self, addr, port):
        """A TCP greeter in H: what a direct connection from a pod would reach."""
        def make():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(16)
            s.settimeout(0.2)
            return s

        s = W.in_netns(self.host.ns, make)
        self.socks.append(s)

        def loop():
            while not self.stopping:
                try:
                    c, _ = s.accept()
                except (socket.timeout, OSError):
                    continue
                with c:
                    with contextlib.suppress(OSError):
                        c.sendall(b"hi\n")

        threading.Thread(target=loop, daemon=True).start()

    def wait_gateway(self, timeout=30.0):
        deadline = time.monotonic() + timeout * SLOW
        while True:
            try:
                r = self.admin("GET", "/readyz")
                if r.status == 200:
                    return
            except (OSError, rawhttp.Closed, ValueError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("gateway not ready:\n" + self.gateway_logs())
            time.sleep(0.1)

    # -- helpers -------------------------------------------------------------

    def gateway_logs(self):
        r = self.podman("logs", self.gw + "-sluice", check=False)
        return (r.stdout + r.stderr)[-4000:]

    def admin(self, method, path):
        c = rawhttp.Conn(W.ns_connect(self.host.ns, "127.0.0.1", ADMIN_PORT, timeout=5), 5)
        with c:
            c.send(rawhttp.request_bytes(method, path, "127.0.0.1", [("Connection", "close")]))
            return c.read_response(method)

    def work(self, sbx):
        return "%s-%s-workload" % (self.prefix, sbx)

    def curl(self, sbx, *args):
        """curl in a sandbox's workload container: (exit status, stdout, stderr)."""
        r = self.podman("exec", self.work(sbx), "curl", "-sS", "--max-time", "5", *args,
                        check=False, timeout=60)
        return r.returncode, r.stdout, r.stderr

    def pid(self, container):
        return int(self.podman("inspect", "-f", "{{.State.Pid}}", container).stdout.strip())

    def in_pod(self, sbx, fn):
        """fn() on a thread inside the sandbox pod's network namespace."""
        out = {}
        path = "/proc/%d/ns/net" % self.pid(self.work(sbx))

        def run():
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    if W._libc.setns(fd, W.CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns " + path)
                finally:
                    os.close(fd)
                out["value"] = fn()
            except BaseException as e:  # handed to the caller
                out["error"] = e

        t = threading.Thread(target=run)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out["value"]

    def pod_nft(self, sbx, *args):
        return subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % self.pid(self.work(sbx)),
                               "nft"] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30, text=True)

    def policy_dir(self):
        r = self.podman("volume", "inspect", "-f", "{{.Mountpoint}}", self.gw + "-policy")
        return r.stdout.strip()


@pytest.fixture(scope="module")
def image():
    r = subprocess.run([os.path.join(REPO, "scripts", "build-image"), SLUICE_BIN, IMAGE],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300, text=True)
    assert r.returncode == 0, r.stdout
    return IMAGE


@pytest.fixture(scope="module")
def root_before():
    return root_netns_state()


@pytest.fixture(scope="module")
def pm(world, image, root_before):
    with Pod(world, HOST_POD_INDEX) as host:
        p = PodmanHost(world, host)
        try:
            p.start()
            yield p
        finally:
            p.stop()


# -- the image on its own --------------------------------------------------


def test_image_user_entrypoint_healthcheck(image, tmp_path):
    conf = str(tmp_path / "containers.conf")
    containers_conf(conf)
    env = dict(os.environ, CONTAINERS_CONF=conf)

    def podman(*args, check=True):
        r = subprocess.run(["podman"] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120 * SLOW, env=env, text=True)
        assert not check or r.returncode == 0, r.stderr
        return r

    cfg = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert cfg["User"] == "65532:65532"
    assert cfg["Entrypoint"] == ["sluice"]
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "8081/tcp", "53/udp"}
    # --network none: a namespace with loopback only, nothing to configure.
    r = podman("run", "--rm", "--network", "none", image, "--version")
    assert r.stdout.strip() == "sluice 0.1.0"

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": "deny", "rules": [], "dns": {"upstream": [W.DNS]}}))
    policy.chmod(0o644)
    name = "sl%d-health" % os.getpid()
    try:
        podman("run", "-d", "--name", name, "--network", "none", "--read-only",
               "-v", "%s:/etc/sluice/policy.json:ro" % policy, image,
               "proxy", "--policy", "/etc/sluice/policy.json")
        # The image's HEALTHCHECK (`sluice status --healthz`), run once by hand.
        deadline = time.monotonic() + 20 * SLOW
        while True:
            r = podman("healthcheck", "run", name, check=False)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.returncode == 0, r.stdout + r.stderr + podman("logs", name, check=False).stderr
        health = podman("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
        assert health == "healthy"
        # Read-only root, non-root user: sluice may write nowhere but /tmp and /run.
        ps = podman("top", name, "user").stdout.split()
        assert "sluice" in ps or "65532" in ps
        podman("kill", name)
        r = podman("healthcheck", "run", name, check=False)
        assert r.returncode != 0
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


# -- the gateway and its sandboxes -------------------------------------------


def test_root_namespace_untouched(pm, root_before):
    """With the bridge, veths and pods up, the root namespace is as before."""
    links = subprocess.run(["ip", "-n", pm.host.ns, "-o", "link"], stdout=subprocess.PIPE,
                           timeout=10, text=True).stdout
    assert "podman" in links  # the bridge exists, in H
    assert root_netns_state() == root_before


def test_allowed_via_proxy(pm, world):
    rc, out, err = pm.curl("sbx1", "http://allowed.test/small")
    assert rc == 0, err
    assert out == W.SMALL_BODY.decode()
    rc, out, err = pm.curl("sbx1", "-o", "/dev/null", "-w", "%{http_code}",
                           "https://allowed.test/small", "-k")
    assert (rc, out) == (0, "200"), err


def test_denied_via_proxy(pm):
    rc, out, err = pm.curl("sbx1", "-i", "http://denied.test/small")
    assert rc == 0, err
    assert out.startswith("HTTP/1.1 403")
    assert DENY_REASON in out
    rc, out, err = pm.curl("sbx1", "https://denied.test/small", "-k")
    assert rc != 0 and "403" in err


def test_direct_fails(pm):
    # The name resolves (the gateway's DNS filter) but the connection is not let out.
    rc, out, err = pm.curl("sbx1", "--noproxy", "*", "http://allowed.test/small")
    assert rc in (7, 28), (rc, out, err)
    before = pm.pod_nft("sbx1", "list", "counter", "inet", "sluice", "dropped_ipv4").stdout
    # H's greeter: reachable from a container on the network without a jailer ...
    r = pm.podman("run", "--rm", "--network", pm.network, "--ip", CONTROL_IP, "--no-healthcheck",
                  "--entrypoint", "curl", IMAGE, "-sS", "--max-time", "5", "--http0.9",
                  "http://%s:%d/" % (GATEWAY, GREET_PORT), check=False)
    assert r.stdout == "hi\n", r.stderr
    # ... and dropped by the jailer's rules in the sandbox.
    rc, out, err = pm.curl("sbx1", "--noproxy", "*", "--http0.9",
                           "http://%s:%d/" % (GATEWAY, GREET_PORT))
    assert rc == 28 and out == "", (rc, out, err)
    after = pm.pod_nft("sbx1", "list", "counter", "inet", "sluice", "dropped_ipv4").stdout
    n = lambda t: int(re.search(r"packets (\d+)", t).group(1))  # noqa: E731
    assert n(after) > n(before)


def test_workload_cannot_remove_rules(pm):
    r = pm.podman("exec", pm.work("sbx1"), "sluice", "enforce", "remove", check=False)
    assert r.returncode == 1
    assert "table inet sluice" in pm.pod_nft("sbx1", "list", "tables").stdout


def test_clients_get_their_own_policy(pm):
    rc, out, _ = pm.curl("sbx1", "-o", "/dev/null", "-w", "%{http_code}",
                         "http://allowed.test/small")
    assert out == "200"
    rc, out, err = pm.curl("sbx2", "-i", "http://allowed.test/small")
    assert out.startswith("HTTP/1.1 403") and SBX2_REASON in out, (rc, out, err)
    rc, out, _ = pm.curl("sbx2", "http://other.test/small")
    assert out == W.SMALL_BODY.decode()


def test_reload_keeps_open_tunnel(pm):
    """SIGHUP with a new policy: new tunnels get it, an open one lives on."""
    def connect():
        s = socket.create_connection((GATEWAY, PROXY_PORT), timeout=10)
        c = rawhttp.Conn(s, 10)
        c.send(rawhttp.request_bytes("CONNECT", "other.test:80", "other.test:80"))
        return c, c.read_response("CONNECT")

    def get(c):
        c.send(rawhttp.request_bytes("GET", "/small", "other.test"))
        return c.read_response("GET")

    c, r = pm.in_pod("sbx1", connect)
    with c:
        assert r.status == 200
        assert get(c).body == W.SMALL_BODY
        path = os.path.join(pm.policy_dir(), "policy.json")
        with open(path) as f:
            old = f.read()
        pol = json.loads(old)
        pol["rules"] = [x for x in pol["rules"] if x.get("allow") != "other.test"]
        try:
            with open(path + ".tmp", "w") as f:
                json.dump(pol, f)
            os.chmod(path + ".tmp", 0o644)
            os.replace(path + ".tmp", path)
            pm.podman("kill", "--signal", "HUP", pm.gw + "-sluice")
            deadline = time.monotonic() + 20 * SLOW
            while True:
                c2, r2 = pm.in_pod("sbx1", connect)
                c2.close()
                if r2.status == 403 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r2.status == 403, pm.gateway_logs()
            # The tunnel opened before the reload still carries requests.
            assert get(c).body == W.SMALL_BODY
        finally:
            with open(path + ".tmp", "w") as f:
                f.write(old)
            os.replace(path + ".tmp", path)
            pm.podman("kill", "--signal", "HUP", pm.gw + "-sluice", check=False)


def test_gateway_read_only_and_unprivileged(pm):
    info = json.loads(pm.podman("inspect", pm.gw + "-sluice").stdout)[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["Config"]["User"] in ("65532", "65532:65532")
    assert pm.admin("GET", "/healthz").status == 200


# -- host mode: the OCI hook ---------------------------------------------------


def hooks_dir(path, state):
    """deploy/hooks' two hook files, pointing at this checkout and binary."""
    os.makedirs(path, exist_ok=True)
    script = os.path.join(REPO, "deploy", "hooks", "sluice-oci-hook")
    for name in ("sluice-host.json", "sluice-host-poststop.json"):
        with open(os.path.join(REPO, "deploy", "hooks", name)) as f:
            hook = json.load(f)
        hook["hook"]["path"] = script
        hook["hook"]["env"] = hook["hook"]["env"] + ["SLUICE=" + SLUICE_BIN,
                                                     "SLUICE_HOOK_STATE=" + state]
        with open(os.path.join(path, name), "w") as f:
            json.dump(hook, f)


def test_oci_hook_host_mode(pm, tmp_path):
    """A container annotated io.sluice.proxy-addr gets host-mode rules in the
    bridge's namespace while it lives, and loses them when it stops."""
    hooks, state = str(tmp_path / "hooks.d"), str(tmp_path / "state")
    hooks_dir(hooks, state)
    name = pm.prefix + "-hooked"
    chain = "ctr4_" + CONTROL_IP.replace(".", "_")

    def tables():
        return subprocess.run(["ip", "netns", "exec", pm.host.ns, "nft", "list", "ruleset"],
                              stdout=subprocess.PIPE, timeout=10, text=True).stdout

    try:
        pm.podman("--hooks-dir", hooks, "run", "-d", "--name", name, "--network", pm.network,
                  "--ip", CONTROL_IP, "--no-healthcheck",
                  "--annotation", "io.sluice.proxy-addr=" + GATEWAY,
                  "--annotation", "io.sluice.dns=%s:%d" % (GATEWAY, DNS_PORT),
                  "--entrypoint", "sleep", IMAGE, "600")
        assert chain in tables()
        with open(os.path.join(state, pm.podman("inspect", "-f", "{{.Id}}", name).stdout.strip())) as f:
            assert f.read().strip() == CONTROL_IP

        def curl(*args):
            return pm.podman("exec", name, "curl", "-sS", "--max-time", "5", *args, check=False)

        # The proxy is reachable, the greeter beside it in H is not.
        r = curl("-x", "http://%s:%d" % (GATEWAY, PROXY_PORT), "http://allowed.test/small")
        assert r.stdout == W.SMALL_BODY.decode(), r.stderr
        r = curl("--http0.9", "http://%s:%d/" % (GATEWAY, GREET_PORT))
        assert r.returncode == 28 and r.stdout == "", r.stderr
        pm.podman("--hooks-dir", hooks, "stop", "-t", "0", name)
        assert chain not in tables()
        assert not os.listdir(state)
    finally:
        pm.podman("--hooks-dir", hooks, "rm", "-f", "-t", "0", name, check=False)
    assert chain not in tables()
