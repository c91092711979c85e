"""`sluice enforce --mode isolate`: uid mode plus (address, port) allow sets.
The policy's address rules are static set elements; the addresses of
allowed names come in with a timeout (their TTL), so ssh to an allowed
name's address works while the element lives and stops after. Port 853
(DNS over TLS) stays dropped even where the policy allows it."""

import json
import os
import time

import pytest

pytest.register_assert_rewrite("pod_world")  # before the import below

import world as W
from conftest import SLOW, base_policy
from pod_world import DNS_PORT, SLUICE_UID, Pod, PodProxy, root_tables

pytest_plugins = ["pod_world"]

POLICY = base_policy([{"allow": "allowed.test", "ports": [22, 80, 443, 853]},
                      {"allow": W.PYUP, "ports": [80]},
                      {"allow": W.OTHER, "ports": [80]},
                      {"deny": "198.51.100.0/24"}],
                     dns={"upstream": [W.DNS]})


class Env:
    pass


@pytest.fixture(scope="module")
def ipod(world, listeners):
    with Pod(world, 3) as pod:
        e = Env()
        e.pod = pod
        e.policy_file = os.path.join(pod.dir, "isolate.json")
        with open(e.policy_file, "w") as f:
            json.dump(POLICY, f)
        e.proxy = PodProxy(world, pod, POLICY,
                           ["--dns", "127.0.0.1:%d" % DNS_PORT, "--dns-learn-nft"],
                           keep_net_admin=True)
        e.proxy.start()
        r = pod.enforce("apply", "--mode", "isolate", "--policy", e.policy_file, "--uid",
                        str(SLUICE_UID), "--proxy-port", str(e.proxy.port), "--admin-port",
                        str(e.proxy.admin_port), "--dns", "127.0.0.1:%d" % DNS_PORT,
                        "--interface", "eth0")
        assert r.returncode == 0, r.stderr
        try:
            yield e
        finally:
            e.proxy.stop()
            problems = e.proxy.problems()
    assert not problems, problems
    assert "sluice" not in root_tables()


def reach(pod, host, port, kind="tcp", who="uid10000"):
    return pod.probe([{"name": "x", "kind": kind, "host": host, "port": port}], as_=who)["x"]


def test_static_address_rules(ipod):
    pod = ipod.pod
    assert reach(pod, W.PYUP, 80, "http") == "ok"
    assert reach(pod, W.PYUP, 443, "http").startswith("fail")
    # {"allow": OTHER, "ports": [80]} comes before the /24 deny in the policy;
    # in the kernel a deny wins over an allow (stricter than first match).
    assert reach(pod, W.OTHER, 80, "http").startswith("fail")
    assert reach(pod, W.WEB, 80, "http").startswith("fail")  # not learned
    r = pod.nft("list", "set", "inet", "sluice", "cidr_deny4")
    assert "198.51.100.0/24" in r.stdout
    r = pod.nft("list", "set", "inet", "sluice", "cidr_allow4")
    assert "198.51.100.10 . 80" in r.stdout


def learn(ipod, *args):
    return ipod.pod.enforce("learn", "--policy", ipod.policy_file, *args)


def test_learned_address_works_until_its_ttl(ipod):
    pod = ipod.pod
    assert reach(pod, W.WEB, 22).startswith("fail")
    r = learn(ipod, "--ttl", "4", "allowed.test", W.WEB, W.WEB6)
    assert r.returncode == 0, r.stderr
    started = time.monotonic()
    els = pod.nft("list", "set", "inet", "sluice", "allow4").stdout
    assert "192.0.2.10 . 22" in els and "192.0.2.10 . 853" in els
    assert "2001:db8:1::10 . 22" in pod.nft("list", "set", "inet", "sluice", "allow6").stdout
    assert reach(pod, W.WEB, 22) == "ok"
    assert reach(pod, W.WEB, 22, who="root-no-netadmin") == "ok"
    assert reach(pod, W.WEB, 80, "http") == "ok"
    # The policy allows allowed.test on 853 too: DoT is dropped regardless.
    assert reach(pod, W.WEB, 853).startswith("fail")
    # A port the policy does not give the name stays closed.
    assert reach(pod, W.WEB, 7, "tcp").startswith("fail")
    deadline = started + 15 * SLOW
    while time.monotonic() < deadline:
        if reach(pod, W.WEB, 22).startswith("fail"):
            break
        time.sleep(0.5)
    assert reach(pod, W.WEB, 22).startswith("fail")
    assert time.monotonic() - started >= 3.5


def test_learning_again_extends_the_timeout(ipod):
    pod = ipod.pod
    assert learn(ipod, "--ttl", "2", "allowed.test", W.WEB).returncode == 0
    assert learn(ipod, "--ttl", "600", "allowed.test", W.WEB).returncode == 0
    els = pod.nft("list", "set", "inet", "sluice", "allow4").stdout
    assert "192.0.2.10 . 22 timeout 10m" in els, els
    time.sleep(2.5)
    assert reach(pod, W.WEB, 22) == "ok"


def test_denied_names_are_not_learned(ipod):
    r = learn(ipod, "denied.test", W.MIXED_PUB)
    assert r.returncode == 2
    assert "does not allow denied.test" in r.stderr
    assert W.MIXED_PUB not in ipod.pod.nft("list", "set", "inet", "sluice", "allow4").stdout


def test_show_reports_isolate(ipod):
    r = ipod.pod.enforce("show")
    assert r.returncode == 0
    assert "enforcement: isolate (sluice mode=isolate" in r.stdout
    assert json.loads(ipod.pod.enforce("show", "--json").stdout)["mode"] == "isolate"


def test_dns_filter_feeds_the_set(ipod):
    """End to end: resolving through the filter (`--dns-learn-nft`) opens
    the name's address before the answer reaches the workload."""
    pod = ipod.pod
    pod.nft("flush", "set", "inet", "sluice", "allow4")
    assert reach(pod, W.WEB, 22).startswith("fail")
    got = pod.probe([{"name": "q", "kind": "dns", "server": W.DNS, "qname": "allowed.test"}],
                    as_="uid10000")
    assert got["q"] == "NOERROR:%s" % W.WEB, got
    assert "192.0.2.10 . 22" in pod.nft("list", "set", "inet", "sluice", "allow4").stdout
    assert reach(pod, W.WEB, 22) == "ok"


def test_status_reports_the_kernel_rules(ipod):
    """/status names the enforcement the kernel gives (SPEC 4), with the
    drop counters of sluice's table."""
    r = ipod.proxy.admin("GET", "/status")
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc["enforcement_mode"] == "isolate", doc
    drops = doc["kernel_drops"]
    assert isinstance(drops, dict) and "dropped_ipv4" in drops, doc
