"""Limits (issue 2, item 3): header timeout against slowloris, idle
timeout, tunnels per client (429), connections per client and in total.

No timing assertions: a limit must cut a client within a generous bound
(several times the configured value), only so a broken limit cannot hang
the suite.
"""

import threading
import time

import rawhttp
import world as W
from conftest import SLOW

HEADER_TIMEOUT = 2
SECOND_CLIENT = W.SBX_LINK4    # a second client address inside the sandbox


def trickle(conn, first, piece, interval, max_pieces):
    """Send `first`, then `piece` every `interval` s; returns how the
    connection ended: ("closed", pieces sent, bytes received) or ("open", ...)."""
    try:
        conn.send(first)
    except OSError:
        return ("closed", 0, conn.buf)
    for i in range(max_pieces):
        if conn.closed_within(interval):
            return ("closed", i, conn.buf)
        try:
            conn.send(piece)
        except OSError:
            return ("closed", i, conn.buf)
    return ("open", max_pieces, conn.buf)


def test_slowloris_cut_while_others_served(sluice):
    p = sluice(args=["--header-timeout", str(HEADER_TIMEOUT)])
    result = {}
    bound = int(HEADER_TIMEOUT * 8 * SLOW / 0.25)    # pieces before we give up

    def slow_client():
        with p.conn(timeout=60 * SLOW) as c:
            result["end"] = trickle(c, b"GET http://allowed.test/small HTTP/1.1\r\n",
                                    b"X-Slow: a\r\n", 0.25, bound)

    t = threading.Thread(target=slow_client)
    t.start()
    served = 0
    while t.is_alive() and served < 200:
        r = p.http("GET", "http://allowed.test/small")
        assert r.status == 200 and r.body == W.SMALL_BODY
        served += 1
        time.sleep(0.05)
    t.join(120 * SLOW)
    assert not t.is_alive()
    how, pieces, got = result["end"]
    assert how == "closed", "slowloris client still open after %d header lines" % pieces
    assert got == b"" or got.startswith(b"HTTP/1.1 408"), got[:200]
    assert served >= 3, "other clients were not served while the slow one trickled"
    assert p.proc.poll() is None


def test_silent_client_cut(sluice):
    p = sluice(args=["--header-timeout", str(HEADER_TIMEOUT)])
    with p.conn(timeout=60 * SLOW) as c:
        assert c.closed_within(HEADER_TIMEOUT * 8 * SLOW)
    assert p.http("GET", "http://allowed.test/small").status == 200


def test_slow_connect_head_cut(sluice):
    p = sluice(args=["--header-timeout", str(HEADER_TIMEOUT)])
    with p.conn(timeout=60 * SLOW) as c:
        how, pieces, got = trickle(c, b"CONNECT allowed.test:443 HTTP/1.1\r\n", b"X: y\r\n",
                                   0.25, int(HEADER_TIMEOUT * 8 * SLOW / 0.25))
    assert how == "closed"
    assert b"200" not in got


def test_idle_keepalive_client_closed(sluice):
    p = sluice(args=["--idle-timeout", "2"])
    with p.conn(timeout=60 * SLOW) as c:
        c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test"))
        assert c.read_response().status == 200
        assert c.closed_within(16 * SLOW)


def open_tunnel(p, source=None):
    c = p.conn(source=source)
    c.send(rawhttp.request_bytes("CONNECT", "allowed.test:443", "allowed.test:443"))
    return c, c.read_response("CONNECT")


def test_max_tunnels_per_client(sluice):
    p = sluice(args=["--max-tunnels-per-client", "2"])
    held = []
    try:
        for _ in range(2):
            c, r = open_tunnel(p)
            held.append(c)
            assert r.status == 200
        c, r = open_tunnel(p)
        c.close()
        assert r.status == 429, r
        # Another client is not limited by the first one's tunnels.
        c, r = open_tunnel(p, source=SECOND_CLIENT)
        held.append(c)
        assert r.status == 200
        # Plain requests from the limited client still work.
        assert p.http("GET", "http://allowed.test/small").status == 200
        # Closing a tunnel frees a slot.
        held.pop(0).close()
        deadline = time.monotonic() + 10 * SLOW
        status = None
        while time.monotonic() < deadline:
            c, r = open_tunnel(p)
            status = r.status
            if status == 200:
                held.append(c)
                break
            c.close()
            time.sleep(0.1)
        assert status == 200
    finally:
        for c in held:
            c.close()
    lines = p.wait_log(lambda x: x.get("status") == 429)
    assert lines


def kept_alive(p, source=None):
    c = p.conn(source=source, timeout=5 * SLOW)
    c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test"))
    return c, c.read_response()


def test_max_conns_per_client(sluice):
    p = sluice(args=["--max-conns-per-client", "3"])
    held = []
    try:
        for _ in range(3):
            c, r = kept_alive(p)
            held.append(c)
            assert r.status == 200
        # The fourth from the same client is not served: 429/503 or closed.
        c = p.conn(timeout=5 * SLOW)
        try:
            c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test"))
            r = c.read_response()
            assert r.status in (429, 503), r
        except (rawhttp.Closed, OSError):
            pass
        finally:
            c.close()
        # Another client is served.
        c, r = kept_alive(p, source=SECOND_CLIENT)
        held.append(c)
        assert r.status == 200
    finally:
        for c in held:
            c.close()
    # Once the client's connections are gone it is served again.
    deadline = time.monotonic() + 10 * SLOW
    ok = False
    while time.monotonic() < deadline and not ok:
        try:
            ok = p.http("GET", "http://allowed.test/small", timeout=5 * SLOW).status == 200
        except (rawhttp.Closed, OSError):
            time.sleep(0.1)
    assert ok


def test_max_conns_total_recovers(sluice):
    p = sluice(args=["--max-conns", "2"])
    held = []
    try:
        for _ in range(2):
            c, r = kept_alive(p)
            held.append(c)
            assert r.status == 200
        # A third is not served while two are held (refused or paused).
        c = p.conn(timeout=2 * SLOW)
        try:
            c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test",
                                         [("Connection", "close")]))
            r = c.read_response()
            assert r.status in (429, 503), r
        except (rawhttp.Closed, OSError):
            pass
        finally:
            c.close()
    finally:
        for c in held:
            c.close()
    deadline = time.monotonic() + 10 * SLOW
    ok = False
    while time.monotonic() < deadline and not ok:
        try:
            ok = p.http("GET", "http://allowed.test/small", timeout=3 * SLOW).status == 200
        except (rawhttp.Closed, OSError):
            time.sleep(0.1)
    assert ok
    assert p.proc.poll() is None
