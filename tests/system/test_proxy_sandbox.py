"""The proxy's own seccomp filter (docs/SECURITY.md, "The proxy's own
confinement"): once started, every thread of `sluice proxy` (main, workers,
DNS filter) is under the filter, as the kernel reports it in
/proc/PID/task/TID/status and the admin API in /status; --no-seccomp leaves
it off. That nothing legitimate is refused is shown by the proxy suites
(test_connect, test_forward_proxy, test_intercept, test_dns, test_reload,
...), which all run with the filter on."""

import json
import os
import signal
import subprocess

import world as W
from conftest import SLUICE_BIN, base_policy
from dns_helpers import DnsClient, addresses


def thread_status(pid):
    """{tid: {field: value}} of /proc/PID/task/*/status."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        fields = {}
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        out[int(tid)] = fields
    return out


def status_json(p):
    r = p.admin("GET", "/status")
    assert r.status == 200
    return json.loads(r.body)


def dns_proxy(sluice, world, args=()):
    """A proxy with three workers and the DNS filter (forwarding to the
    world's dnsmasq); .dns queries it."""
    port = world.free_port()
    p = sluice(base_policy(dns={"upstream": [W.DNS]}),
               ["--dns", "127.0.0.1:%d" % port, "--workers", "3"] + list(args))
    p.dns = DnsClient(world, port)
    return p


def test_every_thread_filtered(sluice, world):
    p = dns_proxy(sluice, world)
    # Traffic first: the threads must still be filtered (and alive) after it.
    r = p.http("GET", "http://allowed.test/small")
    assert r.status == 200 and r.body == W.SMALL_BODY
    assert W.WEB in addresses(p.dns.query("allowed.test", "A"))
    threads = thread_status(p.proc.pid)
    # main, three workers, the DNS filter
    assert len(threads) >= 5, threads.keys()
    for tid, st in threads.items():
        assert st["Seccomp"] == "2", (tid, st["Name"], st["Seccomp"])
        assert int(st["Seccomp_filters"]) >= 1, (tid, st["Seccomp_filters"])
        assert st["NoNewPrivs"] == "1", tid
    # TSYNC: one filter stack shared by all, not one thread's alone.
    assert len({st["Seccomp_filters"] for st in threads.values()}) == 1
    assert status_json(p)["sandbox"] == "seccomp"
    assert any(x.get("msg") == "sandbox" and x.get("detail") == "seccomp filter on"
               for x in p.logs())


def test_no_seccomp_leaves_it_off(sluice, world):
    p = dns_proxy(sluice, world, ["--no-seccomp"])
    r = p.http("GET", "http://allowed.test/small")
    assert r.status == 200
    threads = thread_status(p.proc.pid)
    assert len(threads) >= 5
    for tid, st in threads.items():
        assert st["Seccomp"] == "0", (tid, st["Seccomp"])
        assert st["Seccomp_filters"] == "0", tid
    assert status_json(p)["sandbox"] == "off"
    assert any(x.get("msg") == "sandbox" and x.get("level") == "warning" for x in p.logs())


def test_reload_and_sighup_under_the_filter(sluice):
    """POST /reload and SIGHUP read the policy file again after the filter
    is on; both take effect."""
    p = sluice()
    original = json.loads(open(p.policy_file).read())
    narrowed = dict(original, rules=[r for r in original["rules"]
                                     if r.get("allow") != "allowed.test"])
    p.write_policy(narrowed)
    assert p.reload().status == 200
    assert p.http("GET", "http://allowed.test/small").status == 403
    p.write_policy(original)
    p.send_signal(signal.SIGHUP)
    assert len(p.wait_log(lambda x: x.get("msg") == "policy reloaded", count=2)) == 2
    assert p.http("GET", "http://allowed.test/small").status == 200
    assert thread_status(p.proc.pid)[p.proc.pid]["Seccomp"] == "2"


def test_help_names_the_option():
    out = subprocess.run([SLUICE_BIN, "proxy", "--help"], capture_output=True, text=True)
    assert "--no-seccomp" in out.stdout + out.stderr
