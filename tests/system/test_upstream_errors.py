"""Upstream failures (SPEC §3): refused, unreachable and DNS failure are
502 with a body saying which; a connect timeout is 504. The failure hosts
live in the inet namespace (nft rules there, never in the root namespace)."""

import pytest

import rawhttp
from conftest import SLOW

CASES = [
    # (name, http url, connect authority, status, words: one must be in the body)
    ("refused", "http://allowed.test:81/", "allowed.test:81", 502, ("refused",)),
    ("unreachable", "http://unreachable.test/", "unreachable.test:443", 502,
     ("unreachable",)),
    ("nxdomain", "http://nosuch.test/", "nosuch.test:443", 502,
     ("nxdomain", "dns", "resolve", "not found", "no such")),
    ("timeout", "http://blackhole.test/", "blackhole.test:443", 504,
     ("timeout", "timed out")),
]


@pytest.fixture
def short_timeouts(sluice):
    return sluice(args=["--connect-timeout", str(int(2 * SLOW))])


def ids(table):
    return [t[0] for t in table]


@pytest.mark.parametrize("name,url,authority,status,words", CASES, ids=ids(CASES))
def test_http_upstream_failure(short_timeouts, name, url, authority, status, words):
    r = short_timeouts.http("GET", url, timeout=30 * SLOW)
    assert r.status == status, r
    assert any(w in r.text.lower() for w in words), r.text
    assert r.header("X-Sluice-Decision") != "deny"


@pytest.mark.parametrize("name,url,authority,status,words", CASES, ids=ids(CASES))
def test_connect_upstream_failure(short_timeouts, name, url, authority, status, words):
    c, r = short_timeouts.tunnel(authority, timeout=30 * SLOW)
    c.close()
    assert r.status == status, r
    assert any(w in r.text.lower() for w in words), r.text


@pytest.mark.parametrize("name,url,authority,status,words", CASES, ids=ids(CASES))
def test_upstream_failure_logged_as_error(short_timeouts, name, url, authority, status, words):
    short_timeouts.http("GET", url, timeout=30 * SLOW)
    host = url.split("/")[2].split(":")[0]
    lines = short_timeouts.wait_log(lambda x: x.get("host") == host)
    assert lines, short_timeouts.logs()
    assert lines[0]["decision"] in ("allow", "error")
    assert lines[0]["status"] == status


def test_failures_do_not_stop_service(short_timeouts):
    short_timeouts.http("GET", "http://blackhole.test/", timeout=30 * SLOW)
    assert short_timeouts.http("GET", "http://allowed.test/small").status == 200


def test_client_served_while_another_waits_on_a_blackhole(short_timeouts):
    # A slow dial must not block the event loop for other clients.
    c = short_timeouts.conn(timeout=30 * SLOW)
    with c:
        c.send(b"GET http://blackhole.test/ HTTP/1.1\r\nHost: blackhole.test\r\n\r\n")
        for _ in range(5):
            assert short_timeouts.http("GET", "http://allowed.test/small").status == 200
        assert c.read_response().status == 504


# -- malformed upstream answers ----------------------------------------------

@pytest.mark.parametrize("path", ["two-cl", "garbage"])
def test_malformed_upstream_head_is_502(proxy, path):
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("GET", "http://echo.test/broken/" + path, "echo.test"))
        r = c.read_response()
        assert r.status == 502, r
        assert b"hello!!" not in r.body and b"not HTTP" not in r.body


def test_upstream_cl_and_te_not_passed_on_together(proxy):
    # RFC 9112 §6.3: an intermediary either refuses such a response or drops
    # the Content-Length and forwards it chunked.
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("GET", "http://echo.test/broken/cl-te", "echo.test"))
        r = c.read_response()
        if r.status != 502:
            assert r.status == 200
            assert not (r.header("Content-Length") and r.header("Transfer-Encoding")), r
            assert r.body == b"hello"


@pytest.mark.parametrize("path", ["truncated", "bad-chunk"])
def test_broken_upstream_body_closes_client(proxy, path):
    # A broken body can only end in a 502 (if the head has not gone out yet)
    # or a close: a kept-alive client must never read a later response as
    # the rest of this one.
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("GET", "http://echo.test/broken/" + path, "echo.test"))
        assert c.closed_within(10 * SLOW), "connection kept open after a broken body"
        got = c.buf
    if not got.startswith(b"HTTP/1.1 502"):
        assert got == b"" or got.startswith(b"HTTP/1.1 200"), got[:300]
        if path == "truncated":
            assert len(got.partition(b"\r\n\r\n")[2]) < 1000
    # The attempt is in the log, and the proxy goes on serving.
    lines = proxy.wait_log(lambda x: x.get("path") == "/broken/" + path)
    assert lines, proxy.logs()
    assert proxy.http("GET", "http://allowed.test/small").status == 200
