"""Pods for the enforcement tests: network namespaces where sluice and the
workload share one network namespace, as containers of a Kubernetes pod do.

A pod is its own namespace `<world prefix>-pod<N>`, linked to the world's
internet namespace by a veth pair created inside inet (its peer moved
straight into the pod as eth0), with a /30 of 198.51.100.64/27 and a /64 of
2001:db8:fff0::/48; its resolver is the world's dnsmasq. Rules are only
ever applied inside such a pod (or the host-mode namespaces of
test_enforce_host.py); nothing touches the root namespace or the world's
shared sandbox. Teardown kills the pod's processes, deletes the namespace
(the veth pair goes with it) and its /etc/netns directory, even on failure;
pods left by a killed run are removed by the next one.

Also here:
  * `Listeners`: test servers in inet that the escape attempts aim at (UDP
    sinks that record what arrives, TCP greeters on ports 22 and 853).
  * `PodProxy`: conftest's Proxy, run in a pod as a dedicated UID.
  * `WORKLOADS`: how a workload process is started (uid 10000 without
    capabilities; root without CAP_NET_ADMIN).
"""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

import world as W
from conftest import SLOW, SLUICE_BIN, Proxy

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "escape_probe.py")

SLUICE_UID = 4242      # the proxy's own UID (the --uid fallback)
WORKLOAD_UID = 10000
DNS_PORT = 5353        # the DNS filter in the pod (unprivileged port)
LOCAL_PORT = 8666      # an executor's port the workload must keep reaching
OTHER_LOCAL_PORT = 8667  # a loopback port nobody allowed
UDP_PORT = 9999
GREET_PORTS = (22, 853)

WORKLOADS = {
    "uid10000": ["setpriv", "--reuid=%d" % WORKLOAD_UID, "--regid=%d" % WORKLOAD_UID,
                 "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"],
    # Root keeps every capability but CAP_NET_ADMIN, CAP_NET_RAW included.
    "root-no-netadmin": ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"],
    # Root as a hardened pod runs it: neither CAP_NET_ADMIN nor CAP_NET_RAW.
    "root-no-net": ["setpriv", "--inh-caps=-net_admin,-net_raw",
                    "--bounding-set=-net_admin,-net_raw", "--"],
    # Root with every capability: what sluice itself may be.
    "root": [],
}

_POD_RE = re.compile(r"^(sl(\d+)-(pod\d+|hst|ctr\d+|out))\b")


def cleanup_stale():
    """Namespaces of this module left by a run whose process is gone."""
    r = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=10, text=True)
    for line in r.stdout.splitlines():
        m = _POD_RE.match(line)
        if m and not W._pid_alive(int(m.group(2))):
            W._delete_netns(m.group(1))


def root_tables():
    """`nft list tables` of the root namespace (read only)."""
    r = subprocess.run(["nft", "list", "tables"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10, text=True)
    return r.stdout


def make_ns(name):
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)


class Pod:
    """One pod namespace linked to the world's internet."""

    def __init__(self, world, index):
        assert 1 <= index <= 7
        self.world = world
        self.index = index
        self.ns = "%s-pod%d" % (world.prefix, index)
        base = 64 + 4 * (index - 1)
        self.inet_addr = "198.51.100.%d" % (base + 1)
        self.addr = "198.51.100.%d" % (base + 2)
        self.inet_addr6 = "2001:db8:fff0:%d::1" % index
        self.addr6 = "2001:db8:fff0:%d::2" % index
        self.inet_if = "vpod%d" % index
        self.dir = None
        self.ca_pem = None
        self.created = False
        self.procs = []

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _ip(self, *args):
        subprocess.run(["ip"] + list(args), check=True, timeout=10,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def start(self):
        cleanup_stale()
        self.dir = tempfile.mkdtemp(prefix="sluice-pod-")
        os.chmod(self.dir, 0o755)  # the proxy and the workload run as other UIDs
        self.ca_pem = os.path.join(self.dir, "ca.pem")
        shutil.copy(self.world.ca_pem, self.ca_pem)
        os.chmod(self.ca_pem, 0o644)
        make_ns(self.ns)
        self.created = True
        inet = self.world.inet
        # Created inside inet, peer moved straight into the pod: never in root.
        self._ip("-n", inet, "link", "add", self.inet_if, "type", "veth", "peer", "name", "eth0",
                 "netns", self.ns)
        self._ip("-n", inet, "addr", "add", self.inet_addr + "/30", "dev", self.inet_if)
        self._ip("-n", inet, "addr", "add", self.inet_addr6 + "/64", "dev", self.inet_if, "nodad")
        self._ip("-n", self.ns, "addr", "add", self.addr + "/30", "dev", "eth0")
        self._ip("-n", self.ns, "addr", "add", self.addr6 + "/64", "dev", "eth0", "nodad")
        self._ip("-n", inet, "link", "set", self.inet_if, "up")
        self._ip("-n", self.ns, "link", "set", "eth0", "up")
        self._ip("-n", self.ns, "route", "add", "default", "via", self.inet_addr)
        self._ip("-n", self.ns, "-6", "route", "add", "default", "via", self.inet_addr6)
        # ICMP datagram sockets for every group (DESIGN §6): ping without
        # a setuid binary, so the workload's ICMP attempt is a real one.
        self.run(["sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647"], check=True)
        etc = "/etc/netns/" + self.ns
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write("nameserver %s\noptions timeout:2 attempts:1\n" % W.DNS)
        with open(os.path.join(etc, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
        self.wait_link()

    def wait_link(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                W.ns_connect(self.ns, W.WEB, 80, timeout=1.0).close()
                W.ns_connect(self.ns, W.WEB6, 80, timeout=1.0).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def inet_mac(self):
        r = subprocess.run(["ip", "-n", self.world.inet, "-j", "link", "show", self.inet_if],
                           stdout=subprocess.PIPE, check=True, timeout=10, text=True)
        return json.loads(r.stdout)[0]["address"]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        if self.created:
            W._delete_netns(self.ns)  # kills what is left in it; the veth goes too
            self.created = False
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=5)
        if self.dir and not os.environ.get("SLUICE_KEEP_WORLD"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- running things in the pod ------------------------------------------

    def env(self, extra=None):
        e = self.world.client_env({"CURL_CA_BUNDLE": self.ca_pem, "SSL_CERT_FILE": self.ca_pem,
                                   "REQUESTS_CA_BUNDLE": self.ca_pem,
                                   "GIT_SSL_CAINFO": self.ca_pem, "HOME": self.dir})
        if extra:
            e.update(extra)
        return e

    def run(self, cmd, as_=None, timeout=60, check=False, env=None):
        prefix = WORKLOADS[as_] if as_ else []
        return subprocess.run(["ip", "netns", "exec", self.ns] + prefix + list(cmd),
                              timeout=timeout * SLOW, check=check, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env or self.env())

    def spawn(self, cmd, as_=None):
        prefix = WORKLOADS[as_] if as_ else []
        p = subprocess.Popen(["ip", "netns", "exec", self.ns] + prefix + list(cmd),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, start_new_session=True, env=self.env())
        self.procs.append(p)
        return p

    def enforce(self, *args, env=None, timeout=60):
        """`sluice enforce ARGS` as root in the pod."""
        e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        if env:
            e.update(env)
        return subprocess.run(["ip", "netns", "exec", self.ns, SLUICE_BIN, "enforce"] +
                              list(args), timeout=timeout * SLOW, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=e, text=True)

    def nft(self, *args):
        return subprocess.run(["ip", "netns", "exec", self.ns, "nft"] + list(args),
                              timeout=30, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)

    def probe(self, probes, as_):
        """Runs escape_probe.py as the workload; {name: result}."""
        r = self.run(["/usr/bin/python3", PROBE, json.dumps(probes)], as_=as_, timeout=60)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        return json.loads(r.stdout)

    def serve_local(self, port, as_=None):
        """A tiny HTTP server on 127.0.0.1:port in the pod (an executor)."""
        p = self.spawn(["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1",
                        "--directory", self.dir, str(port)], as_=as_)
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            try:
                W.ns_connect(self.ns, "127.0.0.1", port, timeout=1.0).close()
                return p
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("local server on %d did not start" % port)


class Listeners:
    """Servers in inet: UDP sinks on WEB/WEB6:9999 remember each datagram's
    payload; TCP greeters on WEB:22 and WEB:853 greet and close."""

    def __init__(self, world):
        self.world = world
        self.received = []
        self.socks = []
        self.stopping = False
        self.threads = []

    def start(self):
        def make_udp(host):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                              socket.SOCK_DGRAM)
            s.bind((host, UDP_PORT))
            s.settimeout(0.2)
            return s

        def make_tcp(port):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((W.WEB, port))
            s.listen(64)
            s.settimeout(0.2)
            return s

        for host in (W.WEB, W.WEB6):
            s = W.in_netns(self.world.inet, lambda h=host: make_udp(h))
            self.socks.append(s)
            self._thread(self._udp_loop, s)
        for port in GREET_PORTS:
            s = W.in_netns(self.world.inet, lambda p=port: make_tcp(p))
            self.socks.append(s)
            self._thread(self._tcp_loop, s, port)
        return self

    def _thread(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def _udp_loop(self, s):
        while not self.stopping:
            try:
                data, _ = s.recvfrom(2048)
                self.received.append(data.decode(errors="replace"))
            except (socket.timeout, OSError):
                continue

    def _tcp_loop(self, s, port):
        while not self.stopping:
            try:
                c, _ = s.accept()
            except (socket.timeout, OSError):
                continue
            with c:
                with contextlib.suppress(OSError):
                    c.sendall(b"hello from port %d\n" % port)

    def got(self, payload, wait=1.0):
        deadline = time.monotonic() + wait * SLOW
        while time.monotonic() < deadline:
            if payload in self.received:
                return True
            time.sleep(0.05)
        return payload in self.received

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(2)
        for s in self.socks:
            s.close()


@pytest.fixture(scope="session")
def listeners(world):
    ls = Listeners(world).start()
    yield ls
    ls.stop()


class _PodView:
    """What conftest's Proxy needs of a world, pointed at a pod."""

    def __init__(self, world, pod):
        self._world = world
        self._pod = pod
        self.sbx = pod.ns
        self.dir = pod.dir
        self.ca_pem = pod.ca_pem

    def __getattr__(self, name):
        return getattr(self._world, name)

    def free_port(self):
        return W.ns_free_port(self.sbx)

    def sbx_connect(self, host, port, timeout=10.0, source=None):
        return W.ns_connect(self.sbx, host, port, timeout, source)

    def sbx_run(self, cmd, timeout=60, check=False, env=None, **kw):
        return subprocess.run(["ip", "netns", "exec", self.sbx] + list(cmd), timeout=timeout,
                              check=check, stdout=kw.pop("stdout", subprocess.PIPE),
                              stderr=kw.pop("stderr", subprocess.PIPE),
                              env=env if env is not None else self._pod.env(), **kw)

    def client_env(self, extra=None):
        return self._pod.env(extra)


class PodProxy(Proxy):
    """`sluice proxy` in a pod, as SLUICE_UID without capabilities (it
    cannot set SO_MARK, so enforce runs with --uid SLUICE_UID)."""

    def __init__(self, world, pod, policy, args=(), name="pod-proxy", keep_net_admin=False):
        super().__init__(_PodView(world, pod), policy, args, name)
        self.keep_net_admin = keep_net_admin
        for path in (self.dir, self.policy_file, self.token_file):
            os.chown(path, SLUICE_UID, SLUICE_UID)

    def command(self):
        # keep_net_admin: the one capability a sidecar that updates the
        # isolate sets needs (an ambient capability survives the uid change).
        caps = (["--inh-caps=-all,+net_admin", "--ambient-caps=+net_admin",
                 "--bounding-set=-all,+net_admin"] if self.keep_net_admin
                else ["--inh-caps=-all", "--bounding-set=-all"])
        return (["setpriv", "--reuid=%d" % SLUICE_UID, "--regid=%d" % SLUICE_UID,
                 "--clear-groups"] + caps + ["--"] + super().command())

    def write_policy(self, policy):
        super().write_policy(policy)
        with contextlib.suppress(FileNotFoundError):
            os.chown(self.policy_file, SLUICE_UID, SLUICE_UID)
