"""Plain HTTP through the proxy: absolute-form requests (issue 2, item 3).

Real clients (curl, wget, python3 requests) and a byte-exact client for what
they cannot send: keep-alive across hosts, header rewriting, framing.
"""

import hashlib
import json

import pytest

import rawhttp
import world as W
from conftest import DENY_REASON, SLOW, base_policy
from world import DOC_RANGES


# -- real clients ------------------------------------------------------------

def curl_get(proxy, url):
    r = proxy.curl("-i", "--fail-with-body", url)
    return r.returncode, r.stdout


def wget_get(proxy, url):
    r = proxy.run(["wget", "-q", "-S", "-O", "-", "--tries=1", "--timeout=30",
                   "--ca-certificate=" + proxy.world.ca_pem, url], timeout=90 * SLOW)
    return r.returncode, r.stdout + r.stderr


REQUESTS_SCRIPT = r"""
import sys, requests
url, proxy, ca = sys.argv[1:4]
try:
    r = requests.get(url, proxies={"http": proxy, "https": proxy}, verify=ca, timeout=30)
except requests.exceptions.ProxyError as e:
    sys.stdout.write("PROXYERROR %s" % e)
    sys.exit(3)
sys.stdout.write("STATUS %d\n" % r.status_code)
sys.stdout.write("DECISION %s\n" % r.headers.get("X-Sluice-Decision"))
sys.stdout.buffer.write(r.content)
sys.exit(0 if r.status_code == 200 else 4)
"""


def requests_get(proxy, url):
    r = proxy.run(["/usr/bin/python3", "-c", REQUESTS_SCRIPT, url, proxy.url,
                   proxy.world.ca_pem], timeout=90 * SLOW)
    return r.returncode, r.stdout + r.stderr


CLIENTS = {"curl": curl_get, "wget": wget_get, "requests": requests_get}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_plain_http_allowed(proxy, client):
    rc, out = CLIENTS[client](proxy, "http://allowed.test/small")
    assert rc == 0, out
    assert W.SMALL_BODY in out
    lines = proxy.wait_log(lambda x: x.get("host") == "allowed.test" and x.get("kind") == "http")
    assert lines and lines[0]["decision"] == "allow"


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_plain_http_denied(proxy, client):
    rc, out = CLIENTS[client](proxy, "http://denied.test/small")
    assert rc != 0
    assert b"403" in out
    assert W.SMALL_BODY not in out
    lines = proxy.wait_log(lambda x: x.get("host") == "denied.test")
    assert lines and lines[0]["decision"] == "deny"


# -- answers -----------------------------------------------------------------

def test_allowed_get_reaches_upstream(proxy, world):
    r = proxy.http("GET", "http://allowed.test/whoami")
    assert r.status == 200
    assert r.body in (b"192.0.2.10 allowed.test\n", b"2001:db8:1::10 allowed.test\n")


def test_denied_by_rule_names_host_and_reason(proxy, world):
    before = len(world.access_lines())
    r = proxy.http("GET", "http://denied.test/small")
    assert r.status == 403
    assert r.header("X-Sluice-Decision") == "deny"
    assert "denied.test" in r.text
    assert DENY_REASON in r.text
    assert len(world.access_lines()) == before, "a denied request reached nginx"


def test_default_deny_says_so(proxy):
    r = proxy.http("GET", "http://unlisted.test/small")
    assert r.status == 403
    assert r.header("X-Sluice-Decision") == "deny"
    assert "unlisted.test" in r.text
    assert "no rule; default deny" in r.text


def test_denied_port(proxy):
    r = proxy.http("GET", "http://other.test:8080/small")
    assert r.status == 403
    assert r.header("X-Sluice-Decision") == "deny"


def test_origin_form_is_refused(proxy, world):
    before = len(world.access_lines())
    with proxy.conn() as c:
        c.send(b"GET /small HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 400
        assert c.closed_within(10 * SLOW)
    assert len(world.access_lines()) == before


@pytest.mark.parametrize("target", ["https://allowed.test/small", "ftp://allowed.test/small",
                                    "ws://allowed.test/small", "file:///etc/passwd"])
def test_other_schemes_are_refused(proxy, target):
    r = proxy.http("GET", target, host="allowed.test")
    assert r.status == 400


def test_proxy_port_serves_no_admin_content(proxy):
    for path in ("/status", "/metrics", "/healthz"):
        with proxy.conn() as c:
            c.send(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n\r\n"
                    % (path, proxy.port, proxy.token)).encode())
            r = c.read_response()
            assert r.status == 400
            assert b"sluice_" not in r.body


def test_own_addresses_refused_even_when_a_rule_names_them(sluice):
    # The proxy's own addresses are refused on every port (no loops), even
    # with an address rule and reach_ranges naming loopback.
    p = sluice(start=False)
    pol = base_policy([{"allow": "127.0.0.0/8", "ports": [p.port, p.admin_port]}],
                      reach_ranges=DOC_RANGES + ["127.0.0.0/8"])
    p.write_policy(pol)
    p.start()
    for port in (p.admin_port, p.port):
        r = p.http("GET", "http://127.0.0.1:%d/metrics" % port,
                   headers=[("Authorization", "Bearer " + p.token)])
        assert r.status == 403, r
        assert b"sluice_" not in r.body
        c, r = p.tunnel("127.0.0.1:%d" % port)
        c.close()
        assert r.status == 403, r


# -- keep-alive: every request decided again ---------------------------------

def test_keepalive_switch_to_denied_host(proxy, world):
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test"))
        r1 = c.read_response()
        assert r1.status == 200 and r1.body == W.SMALL_BODY
        before = len(world.access_lines())
        c.send(rawhttp.request_bytes("GET", "http://denied.test/whoami", "denied.test"))
        r2 = c.read_response()
        assert r2.status == 403
        assert r2.header("X-Sluice-Decision") == "deny"
        assert "denied.test" in r2.text
    assert not [x for x in world.access_lines()[before:] if x["host"] == "denied.test"]


def test_keepalive_after_denied_request(proxy):
    # A 403 that keeps the connection open must leave it usable.
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("GET", "http://denied.test/small", "denied.test"))
        r = c.read_response()
        assert r.status == 403
        if (r.header("Connection") or "").lower() == "close":
            assert c.closed_within(10 * SLOW)
            return
        c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test"))
        r = c.read_response()
        assert r.status == 200 and r.body == W.SMALL_BODY


def test_keepalive_pipelined_allowed_then_denied(proxy, world):
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test") +
               rawhttp.request_bytes("GET", "http://denied.test/whoami", "denied.test"))
        assert c.read_response().status == 200
        assert c.read_response().status == 403


def test_keepalive_denied_host_in_host_header_only(proxy):
    # The decision is on the URI's host; a Host header naming another host is
    # replaced, never used to pick the upstream.
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("GET", "http://echo.test/echo", "denied.test"))
        r = c.read_response()
        assert r.status == 200
        hosts = [v for k, v in json.loads(r.body)["headers"] if k.lower() == "host"]
        assert hosts == ["echo.test"]


def test_upstream_connection_not_shared_across_hosts(proxy):
    with proxy.conn() as c:
        for host, addr in [("other.test", W.OTHER), ("v4only.test", W.WEB),
                           ("other.test", W.OTHER), ("mixed.test", W.MIXED_PUB)]:
            c.send(rawhttp.request_bytes("GET", "http://%s/whoami" % host, host))
            r = c.read_response()
            assert r.status == 200
            assert r.body == ("%s %s\n" % (addr, host)).encode()


# -- rewriting ---------------------------------------------------------------

def echo(proxy, method="GET", path="/echo", headers=(), body=b""):
    r = proxy.http(method, "http://echo.test" + path, headers=headers, body=body)
    assert r.status == 200, r
    return json.loads(r.body)


def header_values(doc, name):
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


def test_sent_in_origin_form(proxy):
    doc = echo(proxy, path="/echo?a=1&b=%2F")
    assert doc["path"] == "/echo?a=1&b=%2F"
    assert header_values(doc, "Host") == ["echo.test"]


def test_hop_by_hop_and_proxy_headers_removed(proxy):
    doc = echo(proxy, headers=[
        ("Proxy-Authorization", "Basic dXNlcjpzZWNyZXQ="),
        ("Proxy-Connection", "keep-alive"),
        ("Connection", "X-Drop-Me, keep-alive"),
        ("X-Drop-Me", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("X-Keep-Me", "2"),
    ])
    for name in ("Proxy-Authorization", "Proxy-Connection", "X-Drop-Me", "Keep-Alive", "TE"):
        assert header_values(doc, name) == [], name
    assert header_values(doc, "X-Keep-Me") == ["2"]


def test_upgrade_h2c_stripped(proxy):
    doc = echo(proxy, headers=[("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                               ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])
    assert header_values(doc, "Upgrade") == []
    assert header_values(doc, "HTTP2-Settings") == []


def test_end_to_end_headers_kept(proxy):
    doc = echo(proxy, headers=[("Accept", "text/plain"), ("User-Agent", "sluice-test"),
                               ("Cookie", "a=b"), ("Authorization", "Bearer upstream-token")])
    assert header_values(doc, "User-Agent") == ["sluice-test"]
    assert header_values(doc, "Authorization") == ["Bearer upstream-token"]
    assert header_values(doc, "Cookie") == ["a=b"]


# -- methods and framing -----------------------------------------------------

@pytest.mark.parametrize("method,body", [
    ("GET", b""), ("HEAD", b""), ("POST", b"posted body"), ("PUT", b"x" * 100000),
    ("PATCH", b"{\"a\": 1}"), ("DELETE", b""), ("OPTIONS", b""),
], ids=["GET", "HEAD", "POST", "PUT-100k", "PATCH", "DELETE", "OPTIONS"])
def test_methods_forwarded(proxy, method, body):
    hdrs = [("Content-Length", str(len(body)))] if body else []
    r = proxy.http(method, "http://echo.test/echo", headers=hdrs, body=body)
    assert r.status == 200
    if method == "HEAD":
        assert r.body == b""
        return
    doc = json.loads(r.body)
    assert doc["method"] == method
    assert doc["body_len"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_bodyless_responses_keep_framing(proxy):
    # HEAD, 204 and 304 carry no body: the next response on the same
    # connection must still parse.
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("HEAD", "http://allowed.test/big", "allowed.test"))
        r = c.read_response("HEAD")
        assert r.status == 200 and r.header("Content-Length") == str(W.BIG_SIZE)
        c.send(rawhttp.request_bytes("GET", "http://allowed.test/nocontent", "allowed.test"))
        assert c.read_response().status == 204
        c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test"))
        r = c.read_response()
        etag = r.header("ETag")
        assert r.body == W.SMALL_BODY and etag
        c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test",
                                     [("If-None-Match", etag)]))
        assert c.read_response().status == 304
        c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test"))
        r = c.read_response()
        assert r.status == 200 and r.body == W.SMALL_BODY


def test_chunked_response_relayed(proxy):
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("GET", "http://echo.test/chunked?n=500", "echo.test"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"".join(b"chunk %d\n" % i for i in range(500))
        c.send(rawhttp.request_bytes("GET", "http://echo.test/echo", "echo.test"))
        assert c.read_response().status == 200


def test_close_delimited_response_relayed(proxy):
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("GET", "http://echo.test/close?n=2000", "echo.test"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"".join(b"line %d\n" % i for i in range(2000))


def test_post_with_expect_100_continue(proxy):
    body = b"z" * 300000
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("POST", "http://echo.test/sha256", "echo.test",
                                     [("Content-Length", str(len(body))),
                                      ("Expect", "100-continue")]))
        c.send(body)
        r = c.read_response()
        assert r.status == 200
        assert r.body.strip() == hashlib.sha256(body).hexdigest().encode()


def test_chunked_request_body_forwarded(proxy):
    chunks = [b"a" * 10, b"b" * 70000, b"c"]
    body = b"".join(b"%x\r\n%s\r\n" % (len(x), x) for x in chunks) + b"0\r\n\r\n"
    with proxy.conn() as c:
        c.send(rawhttp.request_bytes("POST", "http://echo.test/echo", "echo.test",
                                     [("Transfer-Encoding", "chunked")], body))
        r = c.read_response()
        assert r.status == 200
        doc = json.loads(r.body)
        assert doc["body_sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()
        # The next request on the connection is framed correctly.
        c.send(rawhttp.request_bytes("GET", "http://allowed.test/small", "allowed.test"))
        assert c.read_response().body == W.SMALL_BODY


# -- big transfers -----------------------------------------------------------

def test_64mib_download_plain_http(proxy, world, tmp_path):
    out = tmp_path / "big"
    r = proxy.curl("-o", str(out), "http://allowed.test/big", timeout=180)
    assert r.returncode == 0, r.stderr
    assert W.sha256_file(out) == world.big_sha256


def test_8mib_chunked_upload_plain_http(proxy, world):
    r = proxy.curl("-H", "Transfer-Encoding: chunked", "-H", "Expect:", "-T", world.upload_path,
                   "http://upload.test/sha256", timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == world.upload_sha256


def test_8mib_content_length_upload_plain_http(proxy, world):
    r = proxy.curl("--data-binary", "@" + world.upload_path, "-H", "Expect:",
                   "http://upload.test/sha256", timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == world.upload_sha256
