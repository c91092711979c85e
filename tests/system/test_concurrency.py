"""Many clients at once, clients that give up half way, and what the proxy
keeps afterwards: every connection served, nothing leaked (file
descriptors, active-connection gauges), the process alive."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import rawhttp
import world as W
from conftest import SLOW
from test_admin import metrics

CLIENTS = 200
PARALLEL = 50


def fd_count(proxy):
    return len(os.listdir("/proc/%d/fd" % proxy.proc.pid))


def settle(proxy, baseline, slack=4, timeout=10.0):
    """Wait until the proxy's fd count is back near baseline; returns it."""
    deadline = time.monotonic() + timeout * SLOW
    n = fd_count(proxy)
    while n > baseline + slack and time.monotonic() < deadline:
        time.sleep(0.1)
        n = fd_count(proxy)
    return n


def active_gauges(proxy):
    return {(name, tuple(sorted(labels.items()))): v for name, labels, v in metrics(proxy)
            if "active" in name}


def one_client(proxy, i):
    try:
        if i % 2:
            r = proxy.https("allowed.test", "/small", timeout=60 * SLOW)
        else:
            r = proxy.http("GET", "http://allowed.test/small?c=%d" % i, timeout=60 * SLOW)
        return r.status == 200 and r.body == W.SMALL_BODY, r.status
    except Exception as e:
        return False, repr(e)


def test_many_clients_at_once(proxy):
    baseline = fd_count(proxy)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = list(pool.map(lambda i: one_client(proxy, i), range(CLIENTS)))
    bad = [(i, why) for i, (ok, why) in enumerate(results) if not ok]
    assert bad == []
    assert settle(proxy, baseline) <= baseline + 4


def test_many_open_tunnels_then_closed(proxy):
    baseline = fd_count(proxy)
    before = active_gauges(proxy)
    held = []
    try:
        for _ in range(100):
            c, r = proxy.tunnel("allowed.test:443")
            held.append(c)
            assert r.status == 200
        assert proxy.http("GET", "http://allowed.test/small").status == 200
    finally:
        for c in held:
            c.close()
    assert settle(proxy, baseline) <= baseline + 4
    deadline = time.monotonic() + 10 * SLOW
    while active_gauges(proxy) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert active_gauges(proxy) == before


def test_clients_giving_up_mid_download(proxy):
    baseline = fd_count(proxy)
    for i in range(5):
        with proxy.conn() as c:
            c.send(rawhttp.request_bytes("GET", "http://allowed.test/big", "allowed.test"))
            c.read_until(b"\r\n\r\n")
            c.read_exact(1 << 20)
        c, r = proxy.tunnel("allowed.test:443")
        with c:
            assert r.status == 200
            c.start_tls("allowed.test", proxy.world.ca_pem)
            c.send(rawhttp.request_bytes("GET", "/big", "allowed.test"))
            c.read_until(b"\r\n\r\n")
            c.read_exact(1 << 20)
    assert proxy.http("GET", "http://allowed.test/small").status == 200
    assert settle(proxy, baseline) <= baseline + 4
    lines = proxy.wait_log(lambda x: x.get("path") == "/big", count=5)
    assert len(lines) == 5
    assert all(x["bytes_down"] < W.BIG_SIZE for x in lines)
    lines = proxy.wait_log(lambda x: x.get("kind") == "connect", count=5)
    assert len(lines) == 5
    assert all(x["bytes_down"] < W.BIG_SIZE for x in lines)
    assert proxy.proc.poll() is None


def test_upstream_giving_up_mid_request(proxy):
    # The client stops sending its body half way and goes away.
    for i in range(5):
        with proxy.conn() as c:
            c.send(rawhttp.request_bytes("POST", "http://echo.test/sha256", "echo.test",
                                         [("Content-Length", "1000000")]))
            c.send(b"x" * 300000)
    assert proxy.http("GET", "http://allowed.test/small").status == 200
    assert proxy.proc.poll() is None
