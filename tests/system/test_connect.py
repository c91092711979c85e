"""CONNECT tunnels (issue 2, item 3): real clients over HTTPS, and exact
checks of the tunnel's edges with a byte-exact client."""

import hashlib
import socket

import pytest

import rawhttp
import world as W
from conftest import DENY_REASON, SLOW, base_policy
from test_forward_proxy import REQUESTS_SCRIPT


# -- real clients ------------------------------------------------------------

def curl_https(proxy, url, dest):
    r = proxy.curl(url)
    return r.returncode, r.stdout, r.stderr


def wget_https(proxy, url, dest):
    r = proxy.run(["wget", "-q", "-O", "-", "--tries=1", "--timeout=30",
                   "--ca-certificate=" + proxy.world.ca_pem, url], timeout=90 * SLOW)
    return r.returncode, r.stdout, r.stderr


def requests_https(proxy, url, dest):
    r = proxy.run(["/usr/bin/python3", "-c", REQUESTS_SCRIPT, url, proxy.url,
                   proxy.world.ca_pem], timeout=90 * SLOW)
    return r.returncode, r.stdout, r.stderr


def git_clone(proxy, url, dest):
    repo_url = url.rsplit("/", 1)[0] + "/repo.git"
    r = proxy.run(["git", "-c", "http.proxy=" + proxy.url, "clone", "-q", repo_url, str(dest)],
                  timeout=120 * SLOW)
    out = b""
    readme = dest / "README"
    if r.returncode == 0 and readme.exists():
        out = readme.read_bytes()
    return r.returncode, out, r.stderr


CLIENTS = {"curl": (curl_https, W.SMALL_BODY), "wget": (wget_https, W.SMALL_BODY),
           "requests": (requests_https, W.SMALL_BODY), "git": (git_clone, W.GIT_README)}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_connect_allowed(proxy, client, tmp_path):
    fn, expect = CLIENTS[client]
    host = "git.test" if client == "git" else "allowed.test"
    rc, out, err = fn(proxy, "https://%s/small" % host, tmp_path / "clone")
    assert rc == 0, err
    assert expect in out
    lines = proxy.wait_log(lambda x: x.get("kind") == "connect" and x.get("host") == host)
    assert lines and lines[0]["decision"] == "allow" and lines[0]["port"] == 443


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_connect_denied(proxy, world, client, tmp_path):
    fn, expect = CLIENTS[client]
    before = len(world.access_lines())
    rc, out, err = fn(proxy, "https://denied.test/small", tmp_path / "clone")
    assert rc != 0
    assert expect not in out
    if client in ("curl", "git", "requests"):
        assert b"403" in out + err
    lines = proxy.wait_log(lambda x: x.get("kind") == "connect" and x.get("host") == "denied.test")
    assert lines and lines[0]["decision"] == "deny"
    assert not [x for x in world.access_lines()[before:] if x["host"] == "denied.test"]


# -- the tunnel, exactly -----------------------------------------------------

def test_connect_answer_and_tls_through(proxy):
    c, r = proxy.tunnel("allowed.test:443")
    with c:
        assert r.raw_head.startswith(b"HTTP/1.1 200")
        assert r.status == 200
        c.start_tls("allowed.test", proxy.world.ca_pem)
        c.send(rawhttp.request_bytes("GET", "/small", "allowed.test"))
        assert c.read_response().body == W.SMALL_BODY
        # The tunnel stays open for more requests on the same TLS session.
        c.send(rawhttp.request_bytes("GET", "/whoami", "allowed.test"))
        assert c.read_response().status == 200


def test_connect_without_port_means_443(proxy):
    c = proxy.conn()
    with c:
        c.send(b"CONNECT allowed.test HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        r = c.read_response("CONNECT")
        assert r.status == 200
    # The tunnel's line is written when it closes.
    lines = proxy.wait_log(lambda x: x.get("kind") == "connect")
    assert lines and lines[0]["port"] == 443


def test_connect_denied_by_rule(proxy):
    c, r = proxy.tunnel("denied.test:443")
    c.close()
    assert r.status == 403
    assert r.header("X-Sluice-Decision") == "deny"
    assert "denied.test" in r.text and DENY_REASON in r.text


def test_connect_default_deny(proxy):
    c, r = proxy.tunnel("unlisted.test:443")
    c.close()
    assert r.status == 403
    assert r.header("X-Sluice-Decision") == "deny"
    assert "unlisted.test" in r.text and "no rule; default deny" in r.text


def test_connect_decided_on_authority_not_host_header(proxy, world):
    c = proxy.conn()
    with c:
        c.send(b"CONNECT denied.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
        assert c.read_response("CONNECT").status == 403
    c = proxy.conn()
    with c:
        c.send(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n")
        assert c.read_response("CONNECT").status == 200


@pytest.mark.parametrize("authority", ["allowed.test:22", "allowed.test:8443", "other.test:81"])
def test_connect_port_not_in_rule(proxy, authority):
    c, r = proxy.tunnel(authority)
    c.close()
    assert r.status == 403
    assert r.header("X-Sluice-Decision") == "deny"


def test_bytes_after_connect_head_are_tunnelled_not_parsed(proxy, world):
    # A request pipelined behind the CONNECT head belongs to the tunnel: it
    # must reach the upstream verbatim, not be decided (and refused) by sluice.
    c = proxy.conn()
    with c:
        c.send(b"CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n"
               b"GET /headers?pipelined-after-connect HTTP/1.1\r\nHost: denied.test\r\n"
               b"Connection: close\r\n\r\n")
        r = c.read_response("CONNECT")
        assert r.status == 200
        inner = c.read_response()
        assert inner.header("X-Sluice-Decision") is None
        assert inner.header("Server", "").startswith("nginx")
        assert inner.body == b"host=denied.test uri=/headers?pipelined-after-connect\n"


def test_bytes_after_denied_connect_go_nowhere(proxy, world):
    c = proxy.conn()
    with c:
        c.send(b"CONNECT denied.test:80 HTTP/1.1\r\nHost: denied.test:80\r\n\r\n"
               b"GET /small?smuggled-after-denied-connect HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        r = c.read_response("CONNECT")
        assert r.status == 403
        # Whatever follows, it must never be a response from upstream.
        c.closed_within(3 * SLOW)
        assert W.SMALL_BODY not in c.buf
    assert not [x for x in world.access_lines() if "smuggled-after-denied-connect" in x["request"]]


def test_half_close_through_tunnel(proxy):
    payload = b"half-close payload " * 5000
    c, r = proxy.tunnel("echo.test:7")
    with c:
        assert r.status == 200
        c.send(payload)
        c.sock.shutdown(socket.SHUT_WR)
        got = c.read_to_close()
    assert got == (hashlib.sha256(payload).hexdigest() + "\n").encode()


def test_connect_ipv6_only_name(proxy):
    r = proxy.https("v6only.test", "/whoami")
    assert r.status == 200 and r.body == b"2001:db8:1::10 v6only.test\n"
    lines = proxy.wait_log(lambda x: x.get("host") == "v6only.test")
    assert lines and lines[0]["upstream_ip"] == W.WEB6


@pytest.mark.parametrize("authority,tls_name", [
    ("192.0.2.10:443", "192.0.2.10"),
    ("[2001:db8:1::10]:443", "2001:db8:1::10"),
])
def test_connect_address_rules(sluice, authority, tls_name):
    p = sluice(base_policy([{"allow": "192.0.2.0/24"}, {"allow": "2001:db8::/32"}]))
    c, r = p.tunnel(authority)
    with c:
        assert r.status == 200
        c.start_tls(tls_name, p.world.ca_pem)
        c.send(rawhttp.request_bytes("GET", "/small", "allowed.test"))
        assert c.read_response().body == W.SMALL_BODY


def test_connect_log_line(proxy):
    r = proxy.https("allowed.test", "/small")
    assert r.body == W.SMALL_BODY
    lines = proxy.wait_log(lambda x: x.get("kind") == "connect" and x.get("bytes_down", 0) > 0)
    assert lines, proxy.logs()
    x = lines[0]
    assert x["host"] == "allowed.test" and x["port"] == 443
    assert x["decision"] == "allow"
    assert x["upstream_ip"] in (W.WEB, W.WEB6)
    assert x["bytes_up"] > 0 and x["bytes_down"] > len(W.SMALL_BODY)


# -- big transfers -----------------------------------------------------------

def test_64mib_download_through_connect(proxy, world, tmp_path):
    out = tmp_path / "big"
    r = proxy.curl("-o", str(out), "https://allowed.test/big", timeout=180)
    assert r.returncode == 0, r.stderr
    assert W.sha256_file(out) == world.big_sha256


def test_8mib_chunked_upload_through_connect(proxy, world):
    r = proxy.curl("-H", "Transfer-Encoding: chunked", "-H", "Expect:", "-T", world.upload_path,
                   "https://upload.test/sha256", timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == world.upload_sha256


def test_doh_names_denied_whatever_the_rules(sluice):
    """A DNS-over-HTTPS endpoint would go around the DNS filter: names in the
    policy's doh list are refused even under an allow-everything rule and in
    report mode, while other names stay allowed."""
    policy = base_policy([{"allow": "*"}])
    policy["mode"] = "report"
    policy["doh"] = ["allowed.test"]
    p = sluice(policy)
    c, r = p.tunnel("allowed.test:443")
    c.close()
    assert r.status == 403 and r.header("X-Sluice-Decision") == "deny", r
    assert b"DNS-over-HTTPS" in r.body, r
    r = p.https("echo.test", "/echo")
    assert r.status == 200, r
