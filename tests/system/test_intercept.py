"""TLS interception (issue 3, items 1, 2, 3 and 5): real clients that trust
only the sluice CA, the certificate they are shown, SNI and Host binding,
methods and paths decided per inner request, WebSocket, big transfers, and
passthrough.

A client that trusts only the sluice CA can talk to an upstream whose
certificate comes from the world CA only if sluice intercepted: every
successful client run below is also the proof of interception."""

import datetime
import json
import os
import re
import secrets
import shutil
import stat
import subprocess

import pytest

pytest.register_assert_rewrite("tls_world")  # before the import below

import rawhttp
import world as W
from conftest import DENY_REASON, SLOW, SLUICE_BIN
from test_forward_proxy import REQUESTS_SCRIPT
from tls_world import (cert_dates, cert_field, cert_sans, first_pem, free_home, git_clone,
                       intercept_policy, tls_rules, ws_roundtrip)

pytest_plugins = ["tls_world"]  # fixtures: tls_up, sluice_ca, isluice


FIELDS = ["ts", "client", "kind", "host", "port", "decision", "rule", "reason",
          "upstream_ip", "status", "bytes_up", "bytes_down", "ms"]


@pytest.fixture
def ip(isluice, tls_up):
    """Interception on for every allowed CONNECT: the base rules and the
    TLS world's names."""
    return isluice(intercept_policy(tls_rules()))


def token():
    return secrets.token_hex(8)


def nginx_saw(world, marker):
    return [x for x in world.access_lines() if marker in x["request"]]


# -- the CA --------------------------------------------------------------------

def test_ca_init_files(sluice_ca):
    key = os.path.join(sluice_ca.dir, "ca.key")
    cert = os.path.join(sluice_ca.dir, "ca.pem")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert "CA:TRUE" in cert_field(cert, "-ext", "basicConstraints")
    assert "Certificate Sign" in cert_field(cert, "-ext", "keyUsage")
    # `ca export` prints the same certificate, and never the key.
    with open(sluice_ca.pem, "rb") as f:
        exported = f.read()
    assert b"PRIVATE KEY" not in exported
    assert cert_field(exported, "-fingerprint", "-sha256") == \
        cert_field(cert, "-fingerprint", "-sha256")
    r = subprocess.run(["openssl", "pkey", "-in", key, "-noout", "-text"], timeout=30,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert b"prime256v1" in r.stdout or b"P-256" in r.stdout
    # `ca show` names the certificate by the fingerprint openssl computes.
    r = subprocess.run([SLUICE_BIN, "ca", "show", "--dir", sluice_ca.dir], timeout=30,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    fp = cert_field(cert, "-fingerprint", "-sha256").split("=", 1)[1].replace(":", "").upper()
    assert fp in r.stdout.decode().replace(":", "").upper(), r.stdout


def test_ca_init_keeps_an_existing_key(sluice_ca, tmp_path):
    d = tmp_path / "ca"
    shutil.copytree(sluice_ca.dir, d)
    key = (d / "ca.key").read_bytes()
    cert = (d / "ca.pem").read_bytes()
    subprocess.run([SLUICE_BIN, "ca", "init", "--dir", str(d)], timeout=30,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert (d / "ca.key").read_bytes() == key
    assert (d / "ca.pem").read_bytes() == cert


def test_proxy_refuses_ca_key_readable_by_others(isluice, sluice_ca, tmp_path):
    d = tmp_path / "ca"
    shutil.copytree(sluice_ca.dir, d)
    os.chmod(d / "ca.key", 0o644)
    p = isluice(intercept_policy(), with_ca=False, args=["--ca", str(d)], start=False)
    p.start(wait=False)
    try:
        rc = p.proc.wait(timeout=15 * SLOW)
    except subprocess.TimeoutExpired:
        pytest.fail("sluice started with a world-readable CA key")
    assert rc != 0
    assert "ca.key" in p.stderr_text(), p.stderr_text()


def test_constrained_rule_without_ca_is_refused(isluice):
    p = isluice(intercept_policy([{"allow": "echo.test", "methods": ["GET"]}], enabled=None),
                with_ca=False, start=False)
    p.start(wait=False)
    try:
        rc = p.proc.wait(timeout=15 * SLOW)
    except subprocess.TimeoutExpired:
        pytest.fail("sluice started a policy with a methods rule but no CA")
    assert rc == 2, p.stderr_text()
    assert re.search(r"--ca|\bCA\b|intercept", p.stderr_text()), p.stderr_text()


# -- real clients ------------------------------------------------------------------

def c_curl(p, host, tmp_path):
    r = p.icurl("https://%s/small" % host)
    return r.returncode, r.stdout, r.stderr


def c_wget(p, host, tmp_path):
    r = p.crun(["wget", "-q", "-O", "-", "--tries=1", "--timeout=30",
                "--ca-certificate=" + p.ca.pem, "https://%s/small" % host])
    return r.returncode, r.stdout, r.stderr


def c_requests(p, host, tmp_path):
    r = p.crun(["/usr/bin/python3", "-c", REQUESTS_SCRIPT, "https://%s/small" % host, p.url,
                p.ca.pem])
    return r.returncode, r.stdout, r.stderr


def c_git(p, host, tmp_path):
    r, out = git_clone(p, "https://%s/repo.git" % host, tmp_path / "clone",
                       env=p.cenv(home=free_home(tmp_path)))
    return r.returncode, out, r.stderr


def c_s_client(p, host, tmp_path):
    req = ("GET /small HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode()
    r = p.s_client(host, servername=host, args=["-verify_return_error", "-quiet"], stdin=req)
    return r.returncode, r.stdout, r.stderr


CLIENTS = {"curl": (c_curl, W.SMALL_BODY, "/small"), "wget": (c_wget, W.SMALL_BODY, "/small"),
           "requests": (c_requests, W.SMALL_BODY, "/small"),
           "git": (c_git, W.GIT_README, "/repo.git/"),
           "openssl": (c_s_client, W.SMALL_BODY, "/small")}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_intercepted(ip, client, tmp_path):
    fn, expect, path = CLIENTS[client]
    host = "git.test" if client == "git" else "allowed.test"
    rc, out, err = fn(ip, host, tmp_path)
    assert rc == 0, err
    assert expect in out
    lines = ip.wait_log(lambda x: x.get("kind") == "connect" and x.get("host") == host)
    assert lines, ip.logs()
    assert lines[0]["decision"] == "allow" and lines[0]["reason"] == "intercepted"
    inner = ip.tls_lines(host)
    assert inner, ip.logs()
    assert inner[0]["method"] == "GET" and inner[0]["path"].startswith(path)
    assert inner[0]["status"] == 200 and inner[0]["decision"] == "allow"


@pytest.mark.parametrize("client", ["curl", "requests", "git"])
def test_client_denied_host(ip, world, client, tmp_path):
    fn, expect, _ = CLIENTS[client]
    before = len(world.access_lines())
    rc, out, err = fn(ip, "denied.test", tmp_path)
    assert rc != 0
    assert expect not in out
    assert b"403" in out + err
    assert not [x for x in world.access_lines()[before:] if x["host"] == "denied.test"]


def test_denied_connect_answer(ip):
    c, r = ip.tunnel("denied.test:443")
    c.close()
    assert r.status == 403
    assert r.header("X-Sluice-Decision") == "deny"
    assert "denied.test" in r.text and DENY_REASON in r.text
    c, r = ip.tunnel("unlisted.test:443")
    c.close()
    assert r.status == 403 and "no rule; default deny" in r.text


# -- the minted certificate ----------------------------------------------------------

def presented_cert(p, host, args=()):
    r = p.s_client(host, servername=host, args=list(args))
    out = r.stdout
    assert b"Verify return code: 0 (ok)" in out, out.decode("utf-8", "replace")[-3000:]
    pem = first_pem(out)
    assert pem, out
    return pem


def test_minted_certificate_fields(ip, sluice_ca, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    pem = presented_cert(ip, "allowed.test")
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pem)
    assert cert_field(pem, "-issuer").split("=", 1)[1].strip() == \
        sluice_ca.subject.split("=", 1)[1].strip()
    assert cert_sans(pem) == ["DNS:allowed.test"]
    assert "CA:FALSE" in cert_field(pem, "-ext", "basicConstraints")
    assert "TLS Web Server Authentication" in cert_field(pem, "-ext", "extendedKeyUsage")
    not_before, not_after = cert_dates(pem)
    slack = datetime.timedelta(minutes=2)
    assert not_before <= now + slack
    assert now < not_after <= now + datetime.timedelta(days=30) + slack
    _, ca_not_after = cert_dates(sluice_ca.pem)
    assert not_after <= ca_not_after
    r = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver",
                        "-CAfile", sluice_ca.pem, str(leaf)], timeout=30,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout
    text = cert_field(pem, "-text")
    assert "prime256v1" in text or "P-256" in text
    assert cert_field(pem, "-pubkey").encode() != sluice_ca.pubkey.strip()


def test_minted_certificates_per_host_share_one_leaf_key(ip, sluice_ca):
    a = presented_cert(ip, "allowed.test")
    b = presented_cert(ip, "echo.test")
    assert cert_sans(a) == ["DNS:allowed.test"]
    assert cert_sans(b) == ["DNS:echo.test"]
    assert cert_field(a, "-pubkey") == cert_field(b, "-pubkey")
    assert cert_field(a, "-pubkey").encode() != sluice_ca.pubkey.strip()
    assert cert_field(a, "-serial") != cert_field(b, "-serial")


def test_alpn_offers_http11_only(ip):
    r = ip.s_client("allowed.test", servername="allowed.test", args=["-alpn", "h2,http/1.1"])
    assert b"ALPN protocol: http/1.1" in r.stdout, r.stdout.decode("utf-8", "replace")[-2000:]
    r = ip.icurl("--http2", "https://allowed.test/small")
    assert r.returncode == 0 and r.stdout == W.SMALL_BODY, r.stderr


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_client_tls_versions(ip, version):
    req = b"GET /small HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"
    r = ip.s_client("allowed.test", servername="allowed.test",
                    args=["-tls" + version.replace(".", "_"), "-ign_eof"], stdin=req)
    out = r.stdout.decode("utf-8", "replace")
    assert re.search(r"New, TLSv%s" % re.escape(version), out), out[-2000:]
    assert W.SMALL_BODY.decode() in out


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_client_session_resumption(ip, version, tmp_path):
    sess = str(tmp_path / "sess")
    req = b"GET /small HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"
    flag = "-tls" + version.replace(".", "_")
    r = ip.s_client("allowed.test", servername="allowed.test",
                    args=[flag, "-ign_eof", "-sess_out", sess], stdin=req)
    assert W.SMALL_BODY in r.stdout and os.path.exists(sess), r.stdout[-2000:]
    r = ip.s_client("allowed.test", servername="allowed.test",
                    args=[flag, "-ign_eof", "-sess_in", sess], stdin=req)
    out = r.stdout.decode("utf-8", "replace")
    assert "Reused, TLSv" + version in out, out[-2000:]
    assert W.SMALL_BODY.decode() in out


# -- SNI and Host binding -------------------------------------------------------------

@pytest.mark.parametrize("sni", ["other.test", None])
def test_sni_must_name_the_connect_host(ip, world, sni):
    marker = token()
    req = ("GET /small?sni-%s HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"
           % marker).encode()
    args = ["-ign_eof"] + (["-noservername"] if sni is None else [])
    r = ip.s_client("allowed.test", servername=sni, args=args, stdin=req)
    assert W.SMALL_BODY not in r.stdout, r.stdout[-2000:]
    assert not nginx_saw(world, marker)
    # The same client with the right SNI is served.
    r = ip.s_client("allowed.test", servername="allowed.test", args=["-ign_eof"], stdin=req)
    assert W.SMALL_BODY in r.stdout, r.stdout[-2000:]


def test_host_switch_inside_tunnel_421(ip, world):
    marker = token()
    with ip.itunnel("allowed.test") as c:
        c.send(rawhttp.request_bytes("GET", "/small", "allowed.test"))
        r = c.read_response()
        assert r.status == 200 and r.body == W.SMALL_BODY
        c.send(rawhttp.request_bytes("GET", "/whoami?switch-" + marker, "other.test"))
        r = c.read_response()
        assert r.status == 421, r
        assert c.closed_within(5 * SLOW)
    assert not nginx_saw(world, marker)
    lines = ip.tls_lines("allowed.test", pred=lambda x: x.get("status") == 421)
    assert lines and lines[0]["decision"] == "deny", ip.logs()


def test_absolute_form_to_other_host_inside_tunnel_refused(ip, world):
    marker = token()
    with ip.itunnel("allowed.test") as c:
        c.send(rawhttp.request_bytes("GET", "https://other.test/whoami?abs-" + marker,
                                     "allowed.test"))
        r = c.read_response()
        assert r.status in (400, 403, 421), r
        assert c.closed_within(5 * SLOW)
    assert not nginx_saw(world, marker)


@pytest.mark.parametrize("host", ["allowed.test:443", "ALLOWED.Test"])
def test_same_host_other_spelling_accepted(ip, host):
    with ip.itunnel("allowed.test") as c:
        c.send(rawhttp.request_bytes("GET", "/whoami", host))
        r = c.read_response()
        assert r.status == 200, r
        assert r.body.endswith(b" allowed.test\n"), r


# -- methods and paths -----------------------------------------------------------------

def echo_rule():
    return {"allow": "echo.test", "methods": ["GET", "HEAD"], "paths": ["/echo", "/chunked"]}


def test_methods_and_paths_on_one_tunnel(isluice, world):
    # No intercept block: the methods/paths rule alone turns interception on.
    p = isluice(intercept_policy([echo_rule()], enabled=None, base=False))
    post_m, path_m = token(), token()
    with p.itunnel("echo.test") as c:
        c.send(rawhttp.request_bytes("GET", "/echo?first", "echo.test"))
        r = c.read_response()
        assert r.status == 200 and b'"method": "GET"' in r.body, r
        c.send(rawhttp.request_bytes("GET", "/sha256?path-" + path_m, "echo.test"))
        r = c.read_response()
        assert r.status == 403 and r.header("X-Sluice-Decision") == "deny", r
        assert "echo.test" in r.text
        c.send(rawhttp.request_bytes("HEAD", "/chunked", "echo.test"))
        r = c.read_response("HEAD")
        assert r.status == 200, r
        # A denied request with a body: the body is not a request, and the
        # tunnel stays usable after it.
        c.send(rawhttp.request_bytes("POST", "/echo?post-" + post_m, "echo.test",
                                     [("Content-Length", "11")], b"hello world"))
        denied = c.read_response()
        assert denied.status == 403 and denied.header("X-Sluice-Decision") == "deny", denied
        assert (denied.header("Connection") or "").lower() != "close", denied
        c.send(rawhttp.request_bytes("GET", "/echo?last", "echo.test"))
        r = c.read_response()
        assert r.status == 200 and b"/echo?last" in r.body, r
    seen = "\n".join(world.upstream_lines())
    assert post_m not in seen and path_m not in seen
    lines = p.tls_lines("echo.test", count=5)
    got = [(x["method"], x["path"].split("?")[0], x["decision"], x["status"]) for x in lines]
    assert ("GET", "/echo", "allow", 200) in got
    assert ("POST", "/echo", "deny", 403) in got
    assert ("GET", "/sha256", "deny", 403) in got
    assert ("HEAD", "/chunked", "allow", 200) in got
    connect = p.wait_log(lambda x: x.get("kind") == "connect" and x.get("host") == "echo.test")
    assert connect and connect[0]["reason"] == "intercepted"


def test_method_rule_with_curl(isluice):
    p = isluice(intercept_policy([echo_rule()], enabled=None, base=False))
    r = p.icurl("https://echo.test/echo")
    assert r.returncode == 0 and b'"method": "GET"' in r.stdout, r.stderr
    r = p.icurl("-i", "--suppress-connect-headers", "-X", "DELETE", "https://echo.test/echo")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"HTTP/1.1 403"), r.stdout
    assert b"X-Sluice-Decision: deny" in r.stdout


@pytest.mark.parametrize("intercept", [True, None], ids=["intercept-on", "no-intercept-block"])
def test_deny_rule_with_methods(isluice, world, intercept):
    # A deny rule narrowed by method can only be enforced by intercepting;
    # the broader allow after it must not let DELETE through.
    p = isluice(intercept_policy([{"deny": "echo.test", "methods": ["DELETE"],
                                   "reason": "no deletes here"}, {"allow": "echo.test"}],
                                 enabled=intercept, base=False))
    marker = token()
    c, r = p.tunnel("echo.test:443")
    with c:
        assert r.status == 200
        c.start_tls("echo.test", p.ca.pem)
        c.send(rawhttp.request_bytes("DELETE", "/echo?del-" + marker, "echo.test"))
        r = c.read_response()
        assert r.status == 403 and "no deletes here" in r.text, r
        c.send(rawhttp.request_bytes("GET", "/echo", "echo.test"))
        assert c.read_response().status == 200
    assert marker not in "\n".join(world.upstream_lines())


def test_intercept_disabled_splices(isluice, world):
    p = isluice(intercept_policy(enabled=False))
    # Spliced: the client sees the upstream's own certificate, so one that
    # trusts only the sluice CA fails and one that trusts the world CA works.
    r = p.icurl("https://allowed.test/small")
    assert r.returncode == 60, r.stderr
    r = p.curl("https://allowed.test/small")
    assert r.returncode == 0 and r.stdout == W.SMALL_BODY, r.stderr
    lines = p.wait_log(lambda x: x.get("kind") == "connect" and x.get("host") == "allowed.test",
                       count=2)
    assert len(lines) == 2 and all(x["reason"] != "intercepted" for x in lines), lines


def test_intercept_disabled_with_constrained_rule_is_refused(isluice):
    p = isluice(intercept_policy([echo_rule()], enabled=False), start=False)
    p.start(wait=False)
    try:
        rc = p.proc.wait(timeout=15 * SLOW)
    except subprocess.TimeoutExpired:
        pytest.fail("sluice started a methods rule with interception disabled")
    assert rc == 2, p.stderr_text()
    assert "rules[0]" in p.stderr_text(), p.stderr_text()


# -- passthrough -------------------------------------------------------------------------

def test_passthrough_is_not_intercepted(isluice, world, sluice_ca):
    p = isluice(intercept_policy(tls_rules(), passthrough=["other.test"]))
    r = p.s_client("other.test", servername="other.test", cafile=world.ca_pem)
    assert b"Verify return code: 0 (ok)" in r.stdout, r.stdout[-2000:]
    pem = first_pem(r.stdout)
    assert cert_field(pem, "-issuer") == "issuer=CN = sluice test world CA"
    assert "DNS:other.test" in cert_sans(pem) and len(cert_sans(pem)) > 1
    r = p.icurl("https://other.test/small")
    assert r.returncode == 60, r.stderr
    # Everything else allowed is still intercepted.
    r = p.icurl("https://allowed.test/small")
    assert r.returncode == 0 and r.stdout == W.SMALL_BODY, r.stderr
    lines = p.wait_log(lambda x: x.get("kind") == "connect" and x.get("host") == "other.test",
                       count=2)
    assert lines and all(x["reason"] != "intercepted" and x["decision"] == "allow"
                         for x in lines)


def test_passthrough_never_allows(isluice, world):
    p = isluice(intercept_policy(passthrough=["*.test"]))
    for host in ("denied.test", "unlisted.test"):
        c, r = p.tunnel(host + ":443")
        c.close()
        assert r.status == 403 and r.header("X-Sluice-Decision") == "deny", (host, r)
    r = p.curl("https://allowed.test/small")
    assert r.returncode == 0 and r.stdout == W.SMALL_BODY, r.stderr


# -- upgrades --------------------------------------------------------------------------

def test_websocket_echo_through_tunnel(ip, tls_up):
    c, r = ip.tunnel("ws.test:443")
    with c:
        assert r.status == 200, r
        msgs = ["hello through sluice", os.urandom(200000), "x" * 70000]
        assert ws_roundtrip(c.sock, "ws.test", ip.ca.pem, msgs) == msgs
    assert any(x.startswith("/echo ws.test") for x in tls_up.ws_lines())
    lines = ip.tls_lines("ws.test")
    assert lines and lines[0]["method"] == "GET" and lines[0]["path"] == "/echo"
    assert lines[0]["status"] == 101


def test_upgrade_without_101_keeps_deciding(isluice, world):
    p = isluice(intercept_policy([{"allow": "allowed.test", "paths": ["/small"]}], base=False))
    marker = token()
    ws_headers = [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                  ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                  ("Sec-WebSocket-Version", "13")]
    with p.itunnel("allowed.test") as c:
        c.send(rawhttp.request_bytes("GET", "/small", "allowed.test", ws_headers))
        r = c.read_response()
        # nginx serves the file and ignores the upgrade: no 101, no relay.
        assert r.status == 200 and r.body == W.SMALL_BODY, r
        c.send(rawhttp.request_bytes("GET", "/big?after-upgrade-" + marker, "allowed.test"))
        r = c.read_response()
        assert r.status == 403 and r.header("X-Sluice-Decision") == "deny", r
    assert not nginx_saw(world, marker)


def test_h2c_upgrade_stripped(ip):
    with ip.itunnel("echo.test") as c:
        c.send(rawhttp.request_bytes("GET", "/echo", "echo.test", [
            ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]))
        r = c.read_response()
    assert r.status == 200, r
    names = [k.lower() for k, _ in json.loads(r.body)["headers"]]
    assert "upgrade" not in names and "http2-settings" not in names


# -- transfers and upstream TLS versions --------------------------------------------------

def test_64mib_download_intercepted(ip, world, tmp_path):
    out = tmp_path / "big"
    r = ip.icurl("-o", str(out), "https://allowed.test/big", timeout=180)
    assert r.returncode == 0, r.stderr
    assert W.sha256_file(out) == world.big_sha256
    lines = ip.tls_lines("allowed.test", pred=lambda x: x.get("path") == "/big")
    assert lines and lines[0]["status"] == 200


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_8mib_upload_intercepted(ip, world, framing):
    if framing == "chunked":
        args = ["-H", "Transfer-Encoding: chunked", "-H", "Expect:", "-T", world.upload_path]
    else:
        args = ["-H", "Expect:", "--data-binary", "@" + world.upload_path]
    r = ip.icurl(*(args + ["https://upload.test/sha256"]), timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == world.upload_sha256


def test_tls12_only_upstream_intercepted(ip):
    r = ip.icurl("https://tls12.test/small")
    assert r.returncode == 0 and r.stdout == W.SMALL_BODY, r.stderr


# -- logs ------------------------------------------------------------------------------

def test_intercept_log_lines(ip):
    with ip.itunnel("allowed.test") as c:
        for path in ("/small", "/whoami", "/nocontent"):
            c.send(rawhttp.request_bytes("GET", path, "allowed.test"))
            assert c.read_response().status in (200, 204)
    connect = ip.wait_log(lambda x: x.get("kind") == "connect" and x.get("host") == "allowed.test")
    assert connect, ip.logs()
    x = connect[0]
    assert x["decision"] == "allow" and x["reason"] == "intercepted" and x["port"] == 443
    inner = ip.tls_lines("allowed.test", count=3)
    assert [(y["method"], y["path"], y["status"]) for y in inner] == [
        ("GET", "/small", 200), ("GET", "/whoami", 200), ("GET", "/nocontent", 204)]
    for y in inner:
        missing = [f for f in FIELDS if f not in y]
        assert not missing, (missing, y)
        assert y["host"] == "allowed.test" and y["port"] == 443 and y["decision"] == "allow"
        assert y["upstream_ip"] in (W.WEB, W.WEB6)
