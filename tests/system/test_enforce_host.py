"""`sluice enforce --mode host`: a container host (a namespace with a
bridge, as Docker's docker0) and two "containers" (namespaces on the
bridge). Rules per container address allow only the proxy and the DNS
filter on the host; `remove --container-ip` takes exactly that container's
rules away and leaves the other's.

Topology (all namespaces of this test; none linked to the world):

    ctr1 192.0.2.130 ─┐                    ┌ out 203.0.113.130 (a web server :80)
                      ├ br0 192.0.2.129 ── hst ── 203.0.113.129
    ctr2 192.0.2.131 ─┘   (proxy :8080, dns :53, other :9999 on the host)
"""

import contextlib
import socket
import subprocess
import threading

import pytest

import world as W
from conftest import SLOW, SLUICE_BIN
from pod_world import cleanup_stale, make_ns, root_tables

BR, C1, C2 = "192.0.2.129", "192.0.2.130", "192.0.2.131"
HST_OUT, OUT = "203.0.113.129", "203.0.113.130"
PROXY_PORT, DNS_PORT, OTHER_PORT = 8080, 53, 9999


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, timeout=10, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)


class Host:
    def __init__(self, prefix):
        self.hst, self.out = prefix + "-hst", prefix + "-out"
        self.ctrs = [prefix + "-ctr1", prefix + "-ctr2"]
        self.made = []
        self.socks = []
        self.stopping = False
        self.threads = []

    def build(self):
        cleanup_stale()
        for ns in [self.hst, self.out] + self.ctrs:
            make_ns(ns)
            self.made.append(ns)
        ip("-n", self.hst, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hst, "addr", "add", BR + "/26", "dev", "br0")
        ip("-n", self.hst, "link", "set", "br0", "up")
        for i, (ns, addr) in enumerate(zip(self.ctrs, (C1, C2))):
            port = "vctr%d" % (i + 1)
            ip("-n", self.hst, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", self.hst, "link", "set", port, "master", "br0")
            ip("-n", self.hst, "link", "set", port, "up")
            ip("-n", ns, "addr", "add", addr + "/26", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "route", "add", "default", "via", BR)
        ip("-n", self.hst, "link", "add", "vout", "type", "veth", "peer", "name", "eth0",
           "netns", self.out)
        ip("-n", self.hst, "addr", "add", HST_OUT + "/30", "dev", "vout")
        ip("-n", self.hst, "link", "set", "vout", "up")
        ip("-n", self.out, "addr", "add", OUT + "/30", "dev", "eth0")
        ip("-n", self.out, "link", "set", "eth0", "up")
        ip("-n", self.out, "route", "add", "default", "via", HST_OUT)
        subprocess.run(["ip", "netns", "exec", self.hst, "sysctl", "-q", "-w",
                        "net.ipv4.ip_forward=1"], check=True, timeout=10)
        for ns, addr, port in ((self.hst, BR, PROXY_PORT), (self.hst, BR, OTHER_PORT),
                               (self.out, OUT, 80)):
            self.listen(ns, addr, port)

    def listen(self, ns, addr, port):
        def make():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(64)
            s.settimeout(0.2)
            return s

        s = W.in_netns(ns, make)
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

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self.threads.append(t)

    def destroy(self):
        self.stopping = True
        for t in self.threads:
            t.join(2)
        for s in self.socks:
            s.close()
        for ns in self.made:
            W._delete_netns(ns)

    def reach(self, ctr, addr, port):
        try:
            s = W.ns_connect(ctr, addr, port, timeout=1.5)
        except OSError:
            return False
        with s:
            try:
                return s.recv(8) == b"hi\n"
            except OSError:
                return False

    def can(self, ctr):
        """What container ctr reaches: (proxy, other host port, outside)."""
        return (self.reach(ctr, BR, PROXY_PORT), self.reach(ctr, BR, OTHER_PORT),
                self.reach(ctr, OUT, 80))

    def enforce(self, *args):
        return subprocess.run(["ip", "netns", "exec", self.hst, SLUICE_BIN, "enforce"] +
                              list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=30 * SLOW,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})

    def ruleset(self):
        return subprocess.run(["ip", "netns", "exec", self.hst, "nft", "list", "ruleset"],
                              stdout=subprocess.PIPE, text=True, timeout=10).stdout


@pytest.fixture(scope="module")
def host(world):
    h = Host(world.prefix)
    try:
        h.build()
        yield h
    finally:
        h.destroy()
    assert "sluice" not in root_tables()


def container_args(addr):
    return ["--mode", "host", "--container-ip", addr, "--proxy-addr", BR, "--proxy-port",
            str(PROXY_PORT), "--dns", "%s:%d" % (BR, DNS_PORT)]


def test_per_container_rules_and_removal(host):
    c1, c2 = host.ctrs
    # Without rules both containers reach everything: the checks can fail.
    assert host.can(c1) == (True, True, True)
    assert host.can(c2) == (True, True, True)

    r = host.enforce("apply", *container_args(C1))
    assert r.returncode == 0, r.stderr
    assert host.can(c1) == (True, False, False)
    assert host.can(c2) == (True, True, True)

    r = host.enforce("apply", *container_args(C2))
    assert r.returncode == 0, r.stderr
    r = host.enforce("apply", *container_args(C2))  # again: replaced, not doubled
    assert r.returncode == 0, r.stderr
    assert host.can(c1) == (True, False, False)
    assert host.can(c2) == (True, False, False)
    rules = host.ruleset()
    assert rules.count("chain ctr4_192_0_2_131 {") == 1
    assert rules.count("ip daddr 192.0.2.129 tcp dport 8080 accept") == 2

    r = host.enforce("remove", "--mode", "host", "--container-ip", C1)
    assert r.returncode == 0, r.stderr
    assert host.can(c1) == (True, True, True)
    assert host.can(c2) == (True, False, False)
    rules = host.ruleset()
    assert "192_0_2_130" not in rules and "192.0.2.130" not in rules
    assert "chain ctr4_192_0_2_131 {" in rules

    r = host.enforce("remove", "--mode", "host", "--container-ip", C1)  # nothing left to remove
    assert r.returncode == 0, r.stderr

    r = host.enforce("show")
    assert "enforcement: nftables (sluice mode=host)" in r.stdout
    assert "dropped_host=" in r.stdout and "dropped_host=0" not in r.stdout

    r = host.enforce("remove")
    assert r.returncode == 0, r.stderr
    assert host.ruleset() == ""
    assert host.can(c2) == (True, True, True)


def test_host_mode_keeps_other_tables(host):
    other = "table inet docker_like {\n\tchain forward {\n\t\ttype filter hook forward " \
            "priority 0; policy accept;\n\t\tcounter\n\t}\n}\n"
    subprocess.run(["ip", "netns", "exec", host.hst, "nft", "-f", "-"], input=other.encode(),
                   check=True, timeout=10)
    try:
        r = host.enforce("apply", *container_args(C1))
        assert r.returncode == 0, r.stderr
        assert host.can(host.ctrs[0]) == (True, False, False)
        r = host.enforce("remove")
        assert r.returncode == 0, r.stderr
        assert "table inet docker_like" in host.ruleset()
        assert "sluice" not in host.ruleset()
    finally:
        subprocess.run(["ip", "netns", "exec", host.hst, "nft", "delete", "table", "inet",
                        "docker_like"], timeout=10)
