"""The test world itself, checked on the direct path (no proxy).

If these fail, every other result is meaningless: the names must resolve, the
servers must answer, the failure hosts must fail the way the proxy tests
expect, and the special-range hosts must be reachable directly, so that a
proxy that leaked would really reach them (and show in their logs).
"""

import os
import subprocess

import pytest

import world as W


@pytest.mark.parametrize("name,addrs", sorted(W.ZONE.items()))
def test_zone_answers(world, name, addrs):
    got = set()
    for rtype in ("A", "AAAA"):
        r = world.sbx_run(["dig", "+short", "+time=2", "+tries=2", name, rtype], timeout=20)
        got |= set(r.stdout.decode().split())
    assert got == set(addrs)


def test_unknown_name_is_nxdomain(world):
    r = world.sbx_run(["dig", "+time=2", "+tries=2", W.NXDOMAIN_NAME], timeout=20)
    assert b"status: NXDOMAIN" in r.stdout


def test_sandbox_resolver_is_dnsmasq(world):
    r = world.sbx_run(["getent", "ahostsv4", "allowed.test"], timeout=20)
    assert r.returncode == 0 and W.WEB.encode() in r.stdout


@pytest.mark.parametrize("url,expect", [
    ("http://allowed.test/small", W.SMALL_BODY),
    ("https://allowed.test/small", W.SMALL_BODY),
    ("https://v6only.test/whoami", b"2001:db8:1::10 v6only.test\n"),
    ("http://other.test/whoami", b"198.51.100.10 other.test\n"),
    # Reachable directly: a proxy that leaks would reach them too.
    ("http://metadata.test/whoami", b"169.254.169.254 metadata.test\n"),
    ("http://private.test/whoami", b"10.66.0.10 private.test\n"),
])
def test_direct_fetch(world, url, expect):
    r = world.sbx_run(["curl", "-sS", "--max-time", "20", url], timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == expect


def test_direct_special_hosts_are_logged(world):
    before = len(world.special_hits())
    world.sbx_run(["curl", "-sS", "--max-time", "20", "http://private.test/whoami"], timeout=30)
    # The leak detector sees a hit: clear it again so the session check
    # only counts what the proxy did.
    hits = world.special_hits()
    assert len(hits) == before + 1 and hits[-1]["server"] == W.PRIVATE
    with open(world.access_log, "r+") as f:
        lines = [x for x in f if not x.startswith(W.PRIVATE + " ") and
                 not x.startswith(W.METADATA + " ")]
        f.seek(0)
        f.writelines(lines)
        f.truncate()


def test_direct_upload_sha256(world):
    r = world.sbx_run(["curl", "-sS", "--max-time", "60", "-H", "Transfer-Encoding: chunked",
                       "-T", world.upload_path, "http://upload.test/sha256"], timeout=90)
    assert r.stdout.decode().strip() == world.upload_sha256


def test_direct_git_clone(world, tmp_path):
    r = world.sbx_run(["git", "clone", "-q", "https://git.test/repo.git", str(tmp_path / "c")],
                      timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c" / "README").read_bytes() == W.GIT_README


@pytest.mark.parametrize("url,curl_exit", [
    ("http://allowed.test:81/", 7),       # refused
    ("http://unreachable.test/", 7),      # ICMP host unreachable
    ("http://blackhole.test/", 28),       # SYN dropped: timeout
])
def test_direct_failure_hosts(world, url, curl_exit):
    r = world.sbx_run(["curl", "-sS", "--connect-timeout", "2", url], timeout=30)
    assert r.returncode == curl_exit, r.stderr


def test_root_namespace_cannot_see_the_world(world):
    # Nothing of the world exists in the root namespace.
    r = subprocess.run(["ip", "-o", "addr"], capture_output=True, timeout=10, text=True)
    for a in [W.WEB, W.DNS, W.SBX_LINK4, W.INET_LINK4, W.PRIVATE, W.METADATA]:
        assert " %s/" % a not in r.stdout


def _gone(w):
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    names = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    return (w.inet not in names and w.sbx not in names
            and not os.path.exists("/etc/netns/" + w.sbx) and not os.path.exists(w.dir))


def test_teardown_leaves_nothing():
    w = W.World(prefix="sl%dt" % os.getpid())
    with w:
        pids = [p.pid for p in w.procs.values()]
        assert pids
    assert _gone(w)
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or \
            open("/proc/%d/stat" % pid).read().split()[2] == "Z"


def test_teardown_after_a_failed_start(monkeypatch):
    w = W.World(prefix="sl%df" % os.getpid())

    def fail():
        raise RuntimeError("injected failure")

    monkeypatch.setattr(w, "_start_upstream", fail)
    with pytest.raises(RuntimeError, match="injected"):
        w.start()
    assert _gone(w)
