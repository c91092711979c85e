"""`sluice enforce` in uid mode: a pod where sluice and the workload share a
network namespace, as in Kubernetes. The workload runs once as uid 10000
and once as root without CAP_NET_ADMIN (it keeps CAP_NET_RAW, as
Kubernetes grants by default). Through the proxy it reaches what the policy
allows; every way around the proxy fails; loopback services it was given
stay reachable; killing sluice lets nothing out.

The proxy runs as its own UID without capabilities, so it cannot mark its
sockets: the rules recognise it by --uid (the weaker fallback). Mark mode
is tested with a marked client socket."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

pytest.register_assert_rewrite("pod_world")  # before the import below

import world as W
from conftest import SLOW, SLUICE_BIN, base_policy
from pod_world import (DNS_PORT, LOCAL_PORT, OTHER_LOCAL_PORT, SLUICE_UID, UDP_PORT, Pod,
                       PodProxy, make_ns, root_tables)

pytest_plugins = ["pod_world"]

POLICY = base_policy(dns={"upstream": [W.DNS]})
WORKLOAD_KINDS = ["uid10000", "root-no-netadmin"]
MARK = 0x5C1CE


def escapes(pod, tag):
    """Every way around the proxy we try, as escape_probe.py probes."""
    return [
        {"name": "tcp4", "kind": "http", "host": W.WEB, "port": 80},
        {"name": "tcp6", "kind": "http", "host": W.WEB6, "port": 80},
        {"name": "udp4", "kind": "udp", "host": W.WEB, "port": UDP_PORT, "payload": "udp4-" + tag},
        {"name": "udp6", "kind": "udp", "host": W.WEB6, "port": UDP_PORT,
         "payload": "udp6-" + tag},
        {"name": "icmp4", "kind": "icmp", "host": W.WEB},
        {"name": "icmp6", "kind": "icmp", "host": W.WEB6},
        {"name": "dot", "kind": "tcp", "host": W.WEB, "port": 853},
        {"name": "ssh", "kind": "tcp", "host": W.WEB, "port": 22},
        {"name": "dns_world", "kind": "dns", "server": W.DNS, "qname": "denied.test"},
        {"name": "dns_other", "kind": "dns", "server": W.OTHER, "qname": "allowed.test"},
        {"name": "lo_exec", "kind": "http", "host": "127.0.0.1", "port": LOCAL_PORT},
        {"name": "lo_other", "kind": "http", "host": "127.0.0.1", "port": OTHER_LOCAL_PORT},
        {"name": "packet", "kind": "packet", "ifname": "eth0", "dst_mac": pod.inet_mac(),
         "src": pod.addr, "dst": W.WEB, "port": UDP_PORT, "payload": "pkt-" + tag},
    ]


def enforce_args(proxy, *extra):
    return ["apply", "--mode", "uid", "--uid", str(SLUICE_UID), "--proxy-port", str(proxy.port),
            "--admin-port", str(proxy.admin_port), "--dns", "127.0.0.1:%d" % DNS_PORT,
            "--allow-local-port", str(LOCAL_PORT), "--interface", "eth0"] + list(extra)


class Env:
    pass


@pytest.fixture(scope="module")
def upod(world, listeners):
    assert "sluice" not in root_tables()
    with Pod(world, 1) as pod:
        e = Env()
        e.pod = pod
        pod.serve_local(LOCAL_PORT)
        pod.serve_local(OTHER_LOCAL_PORT)
        # Without rules every escape works: the tests below could fail.
        e.baseline = pod.probe(escapes(pod, "base"), as_="root-no-netadmin")
        e.listeners = listeners
        e.proxy = PodProxy(world, pod, POLICY, ["--dns", "127.0.0.1:%d" % DNS_PORT])
        e.proxy.start()
        r = pod.enforce(*enforce_args(e.proxy))
        assert r.returncode == 0, r.stderr
        assert "weaker" in r.stderr  # the UID fallback is reported as such
        try:
            yield e
        finally:
            e.proxy.stop()
            problems = e.proxy.problems()
    assert not problems, problems
    assert "sluice" not in root_tables()


def test_root_namespace_untouched(upod):
    assert "sluice" not in root_tables()


def test_escapes_work_without_rules(upod):
    b = upod.baseline
    for name in ("tcp4", "tcp6", "icmp4", "icmp6", "dot", "ssh", "lo_exec", "lo_other"):
        assert b[name] == "ok", (name, b)
    assert b["dns_world"] == "NOERROR:%s" % W.WEB
    assert b["dns_other"].startswith("fail"), b  # nobody serves DNS there
    for name in ("udp4", "udp6", "packet"):
        assert b[name] == "sent", (name, b)
        assert upod.listeners.got(name.replace("packet", "pkt") + "-base")


@pytest.mark.parametrize("who", WORKLOAD_KINDS)
def test_via_proxy(upod, who):
    pod, proxy = upod.pod, upod.proxy

    def curl(url):
        r = pod.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
                     "--proxy", proxy.url, "--cacert", pod.ca_pem, url], as_=who)
        return r.stdout.decode()

    assert curl("http://allowed.test/small") == "200"
    assert curl("https://allowed.test/small") == "200"
    assert curl("http://denied.test/small") == "403"


@pytest.mark.parametrize("who", WORKLOAD_KINDS)
def test_direct_curl_fails(upod, who):
    r = upod.pod.run(["curl", "-sS", "--noproxy", "*", "--connect-timeout", "2", "--max-time",
                      "5", "http://allowed.test/small"], as_=who)
    assert r.returncode != 0
    assert b"hello from the sluice test world" not in r.stdout


@pytest.mark.parametrize("who", WORKLOAD_KINDS)
def test_escapes_blocked(upod, who):
    got = upod.pod.probe(escapes(upod.pod, who), as_=who)
    for name in ("tcp4", "tcp6", "icmp4", "icmp6", "dot", "ssh", "lo_other"):
        assert got[name].startswith("fail"), (name, got)
    for name in ("udp4", "udp6", "packet"):
        assert not upod.listeners.got(name.replace("packet", "pkt") + "-" + who), (name, got)
    # DNS to any resolver lands on sluice's filter, which refuses denied names
    # and answers allowed ones even where no resolver is.
    assert got["dns_world"] == "NXDOMAIN:", got
    assert got["dns_other"] == "NOERROR:%s" % W.WEB, got
    assert got["lo_exec"] == "ok", got
    if who == "root-no-netadmin":
        # CAP_NET_RAW opens the packet socket; the egress hook drops the frame.
        assert "PermissionError" not in got["packet"], got
    else:
        assert "PermissionError" in got["packet"], got


def drops(pod):
    r = pod.enforce("show")
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("drops:")][0]
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def test_show_counts_drops(upod):
    before = drops(upod.pod)
    upod.pod.probe(escapes(upod.pod, "count")[:2] + escapes(upod.pod, "count")[-1:],
                   as_="root-no-netadmin")
    after = drops(upod.pod)
    assert after["dropped_ipv4"] > before["dropped_ipv4"]
    assert after["dropped_ipv6"] > before["dropped_ipv6"]
    assert after["dropped_unmarked"] > before["dropped_unmarked"]
    r = upod.pod.enforce("show", "--json")
    j = json.loads(r.stdout)
    assert j["mode"] == "nftables" and j["rules"] == "sluice mode=uid mark=0x5c1ce uid=%d" % \
        SLUICE_UID, j
    assert j["drops"]["dropped_ipv4"] >= after["dropped_ipv4"], j
    r = upod.pod.enforce("show")
    assert "enforcement: nftables (sluice mode=uid mark=0x5c1ce uid=%d)" % SLUICE_UID in r.stdout
    assert "namespace: own network namespace" in r.stdout
    assert "table inet sluice {" in r.stdout and "table netdev sluice_egress {" in r.stdout


@pytest.mark.parametrize("who", WORKLOAD_KINDS)
def test_workload_cannot_change_rules(upod, who):
    pod = upod.pod
    for cmd in (["nft", "flush", "ruleset"], ["nft", "delete", "table", "inet", "sluice"],
                ["iptables", "-F"], ["iptables", "-P", "OUTPUT", "ACCEPT"],
                [SLUICE_BIN, "enforce", "remove"]):
        r = pod.run(cmd, as_=who)
        assert r.returncode != 0, (cmd, r.stdout, r.stderr)
    r = pod.nft("list", "table", "inet", "sluice")
    assert r.returncode == 0 and "policy drop" in r.stdout
    got = pod.probe(escapes(pod, "after-flush-" + who)[:1], as_=who)
    assert got["tcp4"].startswith("fail")


def test_marked_sockets_pass(upod):
    """Mark mode: sluice's own sockets carry the mark; only a process with
    CAP_NET_ADMIN (or CAP_NET_RAW, see docs/ENFORCE.md) can set it."""
    pod = upod.pod
    marked = [{"name": "marked", "kind": "http", "host": W.WEB, "port": 80, "mark": MARK},
              {"name": "plain", "kind": "http", "host": W.WEB, "port": 80}]
    got = pod.probe(marked, as_="root")
    assert got == {"marked": "ok", "plain": got["plain"]} and got["plain"].startswith("fail")
    got = pod.probe(marked, as_="root-no-net")
    assert "PermissionError" in got["marked"], got
    assert got["plain"].startswith("fail")


def test_uid_switch_gains_nothing_in_mark_mode(upod):
    """Without the UID fallback, a root workload taking sluice's UID is
    still dropped: only the mark lets a socket out."""
    pod, proxy = upod.pod, upod.proxy
    args = enforce_args(proxy)
    i = args.index("--uid")
    del args[i:i + 2]
    try:
        r = pod.enforce(*args)
        assert r.returncode == 0, r.stderr
        assert "weaker" not in r.stderr
        got = pod.probe(escapes(pod, "uidswitch")[:1], as_="root-no-net")
        assert got["tcp4"].startswith("fail")
        r = pod.run(["setpriv", "--reuid=%d" % SLUICE_UID, "--regid=%d" % SLUICE_UID,
                     "--clear-groups", "--", "curl", "-sS", "--noproxy", "*", "--connect-timeout",
                     "2", "--max-time", "4", "http://%s/small" % W.WEB], as_="root-no-net")
        assert r.returncode != 0, r.stdout
    finally:
        r = pod.enforce(*enforce_args(proxy))
        assert r.returncode == 0, r.stderr
    # Under the fallback the same switch gets out: that is why it is "weaker".
    r = pod.run(["setpriv", "--reuid=%d" % SLUICE_UID, "--regid=%d" % SLUICE_UID,
                 "--clear-groups", "--", "curl", "-sS", "-o", "/dev/null", "--noproxy", "*",
                 "--max-time", "10", "http://%s/small" % W.WEB], as_="root-no-net")
    assert r.returncode == 0, r.stderr


def test_reapply_is_idempotent_without_a_window(upod):
    """Re-applying replaces the tables in one transaction: the same rules
    come back, and a workload hammering the network meanwhile gets nothing
    out."""
    pod, proxy = upod.pod, upod.proxy
    before = pod.nft("-s", "list", "ruleset").stdout
    leaks = []
    stop = threading.Event()

    def hammer():
        n = 0
        while not stop.is_set() and n < 2000:
            n += 1
            try:
                W.ns_connect(pod.ns, W.WEB, 80, timeout=0.2).close()
                leaks.append(n)
            except OSError:
                pass

    t = threading.Thread(target=hammer)
    t.start()
    try:
        for _ in range(5):
            r = pod.enforce(*enforce_args(proxy))
            assert r.returncode == 0, r.stderr
    finally:
        stop.set()
        t.join(30)
    assert not leaks
    assert pod.nft("-s", "list", "ruleset").stdout == before


def test_transparent_polices_clients_without_proxy_variables(upod):
    pod, proxy = upod.pod, upod.proxy
    r = pod.enforce(*enforce_args(proxy, "--transparent"))
    assert r.returncode == 0, r.stderr
    try:
        def curl(url, *extra):
            r = pod.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                         "15", "--noproxy", "*", "--cacert", pod.ca_pem] + list(extra) + [url],
                        as_="uid10000")
            return r.stdout.decode()

        def web(name, port):
            return "--resolve", "%s:%d:%s" % (name, port, W.WEB)

        results = {
            "http allowed": curl("http://allowed.test/small"),
            "https allowed": curl("https://allowed.test/small"),
            # The filter refuses the name: the client never gets an address.
            "http denied by dns": curl("http://denied.test/small"),
            # The client has the address anyway: the proxy decides by Host/SNI.
            "http denied": curl("http://denied.test/small", *web("denied.test", 80)),
            "https denied": curl("https://denied.test/small", *web("denied.test", 443)),
            # An allowed Host sent to an address that is not the name's.
            "http mismatch": curl("http://allowed.test/small",
                                  "--resolve", "allowed.test:80:%s" % W.OTHER),
        }
        if results["http allowed"] != "200" and not proxy.wait_log(
                lambda x: x.get("kind") == "transparent", timeout=1):
            pytest.xfail("the proxy's transparent listener does not answer yet: %r" % results)
        assert results["http allowed"] == "200", results
        assert results["https allowed"] == "200", results
        assert results["http denied by dns"] == "000", results
        assert results["http denied"] == "403", results
        assert results["https denied"] == "000", results
        assert results["http mismatch"] != "200", results
        assert proxy.wait_log(lambda x: x.get("kind") == "transparent" and
                              x.get("host") == "denied.test" and x.get("decision") == "deny")
    finally:
        r = pod.enforce(*enforce_args(proxy))
        assert r.returncode == 0, r.stderr


def test_killing_sluice_lets_nothing_out(upod):
    """Fail closed: the rules are kernel state and outlive sluice."""
    pod, proxy = upod.pod, upod.proxy
    proxy.stop(sig=signal.SIGKILL)
    got = pod.probe(escapes(pod, "killed"), as_="root-no-netadmin")
    for name in ("tcp4", "tcp6", "icmp4", "dot", "ssh"):
        assert got[name].startswith("fail"), (name, got)
    assert not upod.listeners.got("udp4-killed") and not upod.listeners.got("pkt-killed")
    assert got["dns_world"].startswith("fail")  # the filter is gone: no answer at all
    r = pod.run(["curl", "-sS", "--max-time", "5", "--proxy", proxy.url,
                 "http://allowed.test/small"], as_="uid10000")
    assert r.returncode != 0
    assert "table inet sluice" in pod.nft("list", "tables").stdout


# ---- apply, remove, probing: in namespaces of their own ---------------------


@pytest.fixture
def scratch(world):
    """A bare namespace (loopback only), deleted afterwards."""
    name = "%s-pod7" % world.prefix
    make_ns(name)
    try:
        yield name
    finally:
        W._delete_netns(name)


def enforce_in(ns, *args, env=None):
    e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    e.update(env or {})
    return subprocess.run(["ip", "netns", "exec", ns, SLUICE_BIN, "enforce"] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=30 * SLOW, env=e)


def nft_in(ns, *args):
    return subprocess.run(["ip", "netns", "exec", ns, "nft"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=30).stdout


def test_refuses_the_host_namespace(scratch):
    """A pod mode in the host's network namespace would cut off the machine:
    refused with exit 2 before anything changes. (The scratch namespace
    stands in for the host's; nothing here runs in the real one.)"""
    env = {"SLUICE_TEST_HOST_NETNS": "/run/netns/" + scratch}
    for mode in ("uid", "isolate"):
        r = enforce_in(scratch, "apply", "--mode", mode, env=env)
        assert r.returncode == 2, r.stderr
        assert "host's network namespace" in r.stderr
    assert nft_in(scratch, "list", "tables") == ""
    # host mode is made for the host's namespace.
    r = enforce_in(scratch, "apply", "--mode", "host", "--container-ip", "192.0.2.130",
                   "--proxy-addr", "192.0.2.129", env=env)
    assert r.returncode == 0, r.stderr
    r = enforce_in(scratch, "remove", env=env)
    assert r.returncode == 0, r.stderr
    assert nft_in(scratch, "list", "tables") == ""


def test_dry_run_changes_nothing(scratch):
    r = enforce_in(scratch, "apply", "--dry-run", "--uid", "4242", "--interface", "eth0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# sluice enforce: mode uid")
    assert "meta skuid 4242 meta mark set 0x5c1ce accept" in r.stdout
    assert nft_in(scratch, "list", "tables") == ""


def test_remove_leaves_no_trace_and_other_tables_alone(scratch):
    other = "table inet other {\n\tchain output {\n\t\ttype filter hook output priority 10; " \
            "policy accept;\n\t\tcounter\n\t}\n}\n"
    subprocess.run(["ip", "netns", "exec", scratch, "nft", "-f", "-"], input=other.encode(),
                   check=True, timeout=10)
    before = nft_in(scratch, "-s", "list", "ruleset")
    r = enforce_in(scratch, "apply", "--mode", "isolate")
    assert r.returncode == 0, r.stderr
    assert "table inet sluice" in nft_in(scratch, "list", "tables")
    for _ in range(2):  # a second remove finds nothing to do and still succeeds
        r = enforce_in(scratch, "remove")
        assert r.returncode == 0, r.stderr
    assert nft_in(scratch, "-s", "list", "ruleset") == before
    r = enforce_in(scratch, "show")
    assert "enforcement: none" in r.stdout
    assert json.loads(enforce_in(scratch, "show", "--json").stdout) == {"mode": "none",
                                                                        "drops": {}}


def test_usage_errors(scratch):
    for args in (["apply", "--mode", "jail"], ["apply", "--mark", "0"], ["apply", "--proxy-port",
                 "70000"], ["apply", "--mode", "host"], ["frobnicate"],
                 ["apply", "--container-ip", "192.0.2.5", "--proxy-addr", "192.0.2.1"],
                 ["apply", "--mode", "isolate", "--policy", "/nonexistent.json"]):
        r = enforce_in(scratch, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("sluice enforce:"), (args, r.stderr)
    assert nft_in(scratch, "list", "tables") == ""


def test_iptables_fallback(world, listeners):
    """--backend iptables: the same uid-mode rules through iptables-restore."""
    with Pod(world, 2) as pod:
        pod.serve_local(LOCAL_PORT)
        r = pod.enforce("apply", "--backend", "iptables", "--uid", str(SLUICE_UID),
                        "--allow-local-port", str(LOCAL_PORT), "--dns", "127.0.0.1:%d" % DNS_PORT)
        assert r.returncode == 0, r.stderr
        assert "with iptables" in r.stderr
        probes = escapes(pod, "ipt")
        got = pod.probe([p for p in probes if p["name"] in ("tcp4", "tcp6", "lo_exec", "udp4")],
                        as_="root-no-netadmin")
        assert got["tcp4"].startswith("fail") and got["tcp6"].startswith("fail"), got
        assert got["lo_exec"] == "ok", got
        assert not listeners.got("udp4-ipt")
        r = pod.enforce("show", "--backend", "iptables")
        assert "enforcement: iptables" in r.stdout and "SLUICE_DROP" in r.stdout
        r = pod.enforce("remove", "--backend", "iptables")
        assert r.returncode == 0, r.stderr
        got = pod.probe([p for p in probes if p["name"] == "tcp4"], as_="root-no-netadmin")
        assert got["tcp4"] == "ok", got
        r = pod.enforce("show", "--backend", "iptables")
        assert "enforcement: none" in r.stdout, r.stdout
