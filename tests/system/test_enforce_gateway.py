"""`sluice enforce apply --mode uid --proxy-addr` (docs/ENFORCE.md, DEPLOY.md):
a pod whose proxy and DNS filter are a central gateway outside it, as the
Podman jailer sets it up. The pod comes from pod_world; the gateway is a
sluice in the world's internet namespace on the far address of the pod's link.
Every escape is tried once before the rules (where it must work) and once
with them (where it must fail)."""

import json
import os
import subprocess
import time

import pytest

import world as W
from conftest import SLOW, SLUICE_BIN, base_policy
from pod_world import Pod

GW_PORT = 3128
GW_DNS_PORT = 5353
OTHER_PORT = 3129  # another service on the gateway's address


def wait_port(ns, host, port):
    deadline = time.monotonic() + 10 * SLOW
    while True:
        try:
            W.ns_connect(ns, host, port, timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def gpod(world):
    with Pod(world, 7) as pod:
        policy = os.path.join(pod.dir, "gateway.json")
        with open(policy, "w") as f:
            json.dump(base_policy(dns={"upstream": [W.DNS]}), f)
        gw = subprocess.Popen(
            ["ip", "netns", "exec", world.inet, SLUICE_BIN, "proxy", "--policy", policy,
             "--listen", "%s:%d" % (pod.inet_addr, GW_PORT),
             "--dns", "%s:%d" % (pod.inet_addr, GW_DNS_PORT), "--admin", "none",
             "--log", os.path.join(pod.dir, "gateway.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        other = subprocess.Popen(
            ["ip", "netns", "exec", world.inet, "/usr/bin/python3", "-m", "http.server",
             "--bind", pod.inet_addr, "--directory", pod.dir, str(OTHER_PORT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(pod.ns, pod.inet_addr, GW_PORT)
            wait_port(pod.ns, pod.inet_addr, OTHER_PORT)
            yield pod
        finally:
            for p in (gw, other):
                p.terminate()
                p.wait(timeout=30)


def via_gateway(pod, url, as_="uid10000"):
    r = pod.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                 "-x", "http://%s:%d" % (pod.inet_addr, GW_PORT), url], as_=as_)
    return r.stdout.decode()


def escapes(pod):
    return {
        "direct-web": {"kind": "http", "host": W.WEB, "port": 80},
        "gateway-other-port": {"kind": "http", "host": pod.inet_addr, "port": OTHER_PORT},
    }


def test_pod_reaches_only_the_gateway(gpod):
    pod = gpod
    probes = escapes(pod)
    plist = [dict(v, name=k) for k, v in probes.items()]
    before = pod.probe(plist, "uid10000")
    assert before["direct-web"] == "ok", before
    assert before["gateway-other-port"] == "ok", before
    # dnsmasq answers denied.test: the world's resolver is reachable now.
    dns_before = pod.probe([{"name": "q", "kind": "dns", "server": W.DNS,
                             "qname": "denied.test"}], "uid10000")["q"]
    assert dns_before.startswith("NOERROR:") and W.WEB in dns_before, dns_before

    r = pod.enforce("apply", "--mode", "uid", "--proxy-addr", pod.inet_addr,
                    "--proxy-port", str(GW_PORT), "--admin-port", "0",
                    "--dns", "%s:%d" % (pod.inet_addr, GW_DNS_PORT))
    assert r.returncode == 0, r.stderr
    try:
        for who in ("uid10000", "root-no-net"):
            assert via_gateway(pod, "http://allowed.test/small", who) == "200"
            assert via_gateway(pod, "http://denied.test/small", who) == "403"
            after = pod.probe(plist, who)
            assert after["direct-web"].startswith("fail"), (who, after)
            assert after["gateway-other-port"].startswith("fail"), (who, after)
            # Any resolver, any address: the gateway's filter answers (denied
            # names get NXDOMAIN there), never dnsmasq directly.
            q = pod.probe([{"name": "q", "kind": "dns", "server": W.DNS,
                            "qname": "denied.test"}], who)["q"]
            assert q.startswith("NXDOMAIN:"), (who, q)
            q = pod.probe([{"name": "q", "kind": "dns", "server": "192.0.2.99",
                            "qname": "allowed.test"}], who)["q"]
            assert q.startswith("NOERROR:") and W.WEB in q, (who, q)
        r = pod.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                     "--cacert", pod.ca_pem, "-x", "http://%s:%d" % (pod.inet_addr, GW_PORT),
                     "https://allowed.test/small"], as_="uid10000")
        assert r.stdout.decode() == "200", r.stderr
        counters = pod.enforce("show").stdout
        assert "dropped" in counters
    finally:
        assert pod.enforce("remove").returncode == 0


def test_transparent_with_gateway_refused(gpod):
    """A redirect to a gateway in another namespace would be a DNAT the
    gateway cannot see (SO_ORIGINAL_DST reads its own conntrack): it would
    take redirected flows for explicit ones and answer 400. Refused, no rules."""
    pod = gpod
    r = pod.enforce("apply", "--mode", "uid", "--proxy-addr", pod.inet_addr,
                    "--proxy-port", str(GW_PORT), "--admin-port", "0", "--transparent",
                    "--dns", "%s:%d" % (pod.inet_addr, GW_DNS_PORT))
    assert r.returncode == 2, r.stderr
    assert "--transparent cannot be used with --proxy-addr" in r.stderr
    assert "sluice" not in pod.nft("list", "tables").stdout
