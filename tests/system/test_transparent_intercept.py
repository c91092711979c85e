"""Redirected TLS intercepted like a CONNECT (SPEC §7, docs/POLICY.md §8): a
pod whose workload ignores the proxy variables, `sluice enforce apply --mode
uid --transparent`, and a proxy with --ca. The workload's `curl
https://host/path` goes straight to the name's address, nftables hands it to
the proxy, and the proxy decides the ClientHello's SNI, verifies the real
upstream, mints a certificate for the name and decides every request inside
on its method and path, injecting headers as for a CONNECT. Passthrough names
stay tunnelled; a bad upstream certificate gets no minted certificate at all;
an SNI that does not resolve to the address dialled is still refused."""

import json
import os
import re
import secrets
import shutil

import pytest

pytest.register_assert_rewrite("pod_world", "tls_world")  # before the imports below

import world as W
from pod_world import DNS_PORT, LOCAL_PORT, SLUICE_UID, Pod, PodProxy, root_tables
from tls_world import SELF, cert_field, first_pem

pytest_plugins = ["pod_world", "tls_world"]  # fixtures: world, tls_up, sluice_ca

POD_INDEX = 5


def policy(key_file):
    return {
        "default": "deny",
        "reach_ranges": list(W.DOC_RANGES),
        "dns": {"upstream": [W.DNS]},
        "intercept": {"enabled": True, "passthrough": ["hdr.test", "tls12.test"]},
        "rules": [
            {"allow": "allowed.test", "methods": ["GET"], "paths": ["/small"]},
            {"allow": "echo.test", "paths": ["/echo"],
             "inject": {"X-Api-Key": "${file:%s}" % key_file}},
            # Decided by the plain allow at the SNI, yet the POST deny must
            # still see each request: interception is on for every name.
            {"deny": "upload.test", "methods": ["POST"]},
            {"allow": "upload.test"},
            {"allow": "selfsigned.test"},
            {"allow": "hdr.test"},
            # Needs interception, but the name is passthrough: refused.
            {"allow": "tls12.test", "paths": ["/small"]},
        ],
    }


class Env:
    pass


@pytest.fixture(scope="module")
def tpod(world, tls_up, sluice_ca):
    assert "sluice" not in root_tables()
    with Pod(world, POD_INDEX) as pod:
        e = Env()
        e.pod = pod
        e.tls_up = tls_up
        # The proxy runs as SLUICE_UID: its own copy of the CA, key 0600.
        ca_dir = os.path.join(pod.dir, "sluice-ca")
        shutil.copytree(sluice_ca.dir, ca_dir)
        for root, dirs, files in os.walk(ca_dir):
            for n in dirs + files:
                os.chown(os.path.join(root, n), SLUICE_UID, SLUICE_UID)
        os.chown(ca_dir, SLUICE_UID, SLUICE_UID)
        # The workload trusts only the sluice CA.
        e.client_ca = os.path.join(pod.dir, "sluice-ca.pem")
        shutil.copy(sluice_ca.pem, e.client_ca)
        os.chmod(e.client_ca, 0o644)
        e.secret = "key-" + secrets.token_hex(16)
        e.key_file = os.path.join(pod.dir, "apikey")
        fd = os.open(e.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(e.secret)
        os.chown(e.key_file, SLUICE_UID, SLUICE_UID)
        pod.serve_local(LOCAL_PORT)
        e.proxy = PodProxy(world, pod, policy(e.key_file),
                           ["--dns", "127.0.0.1:%d" % DNS_PORT, "--ca", ca_dir,
                            "--upstream-ca", pod.ca_pem])
        e.proxy.start()
        r = pod.enforce("apply", "--mode", "uid", "--uid", str(SLUICE_UID), "--proxy-port",
                        str(e.proxy.port), "--admin-port", str(e.proxy.admin_port), "--dns",
                        "127.0.0.1:%d" % DNS_PORT, "--allow-local-port", str(LOCAL_PORT),
                        "--interface", "eth0", "--transparent")
        assert r.returncode == 0, r.stderr
        try:
            yield e
        finally:
            e.proxy.stop()
            problems = e.proxy.problems()
    assert not problems, problems
    assert "sluice" not in root_tables()


class Result:
    pass


def curl(e, url, *extra, cacert=None):
    """curl as the workload, no proxy variables, trusting cacert (default:
    the sluice CA alone)."""
    tmp = os.path.join(e.pod.dir, "curl-" + secrets.token_hex(4))
    os.mkdir(tmp)
    os.chmod(tmp, 0o777)
    r = e.pod.run(["curl", "-sS", "-o", tmp + "/body", "-D", tmp + "/head", "-w", "%{http_code}",
                   "--max-time", "20", "--noproxy", "*", "--cacert", cacert or e.client_ca] +
                  list(extra) + [url], as_="uid10000")
    out = Result()
    out.rc, out.status = r.returncode, r.stdout.decode()
    out.err = r.stderr.decode(errors="replace")
    for name in ("body", "head"):
        try:
            with open(os.path.join(tmp, name), "rb") as f:
                setattr(out, name, f.read())
        except FileNotFoundError:
            setattr(out, name, b"")
    shutil.rmtree(tmp)
    return out


def s_client(e, host, cafile):
    r = e.pod.run(["openssl", "s_client", "-connect", "%s:443" % host, "-servername", host,
                   "-CAfile", cafile, "-showcerts"], as_="uid10000", timeout=30)
    return r.stdout + r.stderr


def test_allowed_method_and_path_intercepted(tpod):
    r = curl(tpod, "https://allowed.test/small")
    assert (r.rc, r.status) == (0, "200"), r.err
    with open(os.path.join(tpod.proxy.world.www, "small"), "rb") as f:
        assert r.body == f.read()
    p = tpod.proxy
    # The redirected connection's own line, then the request inside it.
    assert p.wait_log(lambda x: x.get("kind") == "transparent" and
                      x.get("host") == "allowed.test" and x.get("decision") == "allow" and
                      x.get("reason") == "intercepted")
    assert p.wait_log(lambda x: x.get("kind") == "tls" and x.get("host") == "allowed.test" and
                      x.get("method") == "GET" and x.get("path") == "/small" and
                      x.get("status") == 200)


def test_minted_certificate_for_the_sni_name(tpod):
    text = s_client(tpod, "allowed.test", tpod.client_ca)
    pem = first_pem(text)
    assert pem, text[-2000:]
    assert cert_field(pem, "-issuer") == cert_field(tpod.client_ca, "-subject").replace(
        "subject=", "issuer=")
    assert "DNS:allowed.test" in cert_field(pem, "-ext", "subjectAltName")
    assert b"Verify return code: 0 (ok)" in text


@pytest.mark.parametrize("method,path", [("POST", "/small"), ("GET", "/index.html")],
                         ids=["post", "other-path"])
def test_other_method_or_path_403(tpod, method, path):
    extra = ["-X", "POST", "-d", "x"] if method == "POST" else []
    r = curl(tpod, "https://allowed.test" + path, *extra)
    assert (r.rc, r.status) == (0, "403"), r.err
    assert re.search(rb"(?im)^x-sluice-decision: deny\r?$", r.head), r.head
    assert tpod.proxy.wait_log(lambda x: x.get("kind") == "tls" and
                               x.get("host") == "allowed.test" and
                               x.get("method") == method and x.get("path") == path and
                               x.get("decision") == "deny" and x.get("status") == 403)


def test_host_header_must_name_the_sni_host(tpod):
    r = curl(tpod, "https://allowed.test/small", "-H", "Host: other.test")
    assert (r.rc, r.status) == (0, "421"), r.err


def test_deny_with_methods_before_plain_allow(tpod):
    r = curl(tpod, "https://upload.test/echo")
    assert (r.rc, r.status) == (0, "200"), r.err
    assert json.loads(r.body)["method"] == "GET"
    r = curl(tpod, "https://upload.test/echo", "-X", "POST", "-d", "x")
    assert (r.rc, r.status) == (0, "403"), r.err


def test_inject_reaches_the_upstream(tpod):
    r = curl(tpod, "https://echo.test/echo", "-H", "X-Api-Key: workload")
    assert (r.rc, r.status) == (0, "200"), r.err
    headers = [(k.lower(), v) for k, v in json.loads(r.body)["headers"]]
    assert headers.count(("x-api-key", tpod.secret)) == 1, headers
    assert ("x-api-key", "workload") not in headers
    with open(tpod.proxy.log_file, errors="replace") as f:
        assert tpod.secret not in f.read()


def test_bad_upstream_certificate_mints_nothing(tpod):
    before = len(tpod.tls_up.access_lines())
    r = curl(tpod, "https://selfsigned.test/small")
    # A TLS alert (35), not a certificate the client rejects (60).
    assert (r.rc, r.status) == (35, "000"), r.err
    assert re.search(r"alert", r.err, re.I), r.err
    text = s_client(tpod, "selfsigned.test", tpod.client_ca)
    assert first_pem(text) is None, text[-2000:]
    assert b"no peer certificate available" in text, text[-2000:]
    lines = tpod.proxy.wait_log(lambda x: x.get("kind") == "transparent" and
                                x.get("host") == "selfsigned.test" and
                                x.get("decision") == "error")
    assert lines and re.search(r"self[- ]signed", lines[0]["reason"]), lines
    assert lines[0].get("upstream_ip") == SELF
    assert len(tpod.tls_up.access_lines()) == before


def test_passthrough_still_tunnelled(tpod):
    # The client sees hdr.test's own certificate, issued by the world CA.
    text = s_client(tpod, "hdr.test", tpod.pod.ca_pem)
    pem = first_pem(text)
    assert pem, text[-2000:]
    assert cert_field(pem, "-issuer") == cert_field(tpod.pod.ca_pem, "-subject").replace(
        "subject=", "issuer=")
    r = curl(tpod, "https://hdr.test/auth-echo", cacert=tpod.pod.ca_pem)
    assert (r.rc, r.status) == (0, "200"), r.err
    assert r.body == b"authorization=\nx-api-key=\n"
    # With the sluice CA alone it does not verify: nothing was minted.
    r = curl(tpod, "https://hdr.test/auth-echo")
    assert r.rc == 60, r.err


def test_passthrough_rule_needing_interception_refused(tpod):
    r = curl(tpod, "https://tls12.test/small", cacert=tpod.pod.ca_pem)
    assert r.status == "000", r.err
    assert tpod.proxy.wait_log(lambda x: x.get("kind") == "transparent" and
                               x.get("host") == "tls12.test" and x.get("decision") == "deny" and
                               "interception" in (x.get("reason") or ""))


def test_sni_not_resolving_to_the_destination_refused(tpod):
    # allowed.test sent to other.test's address: the name does not resolve there.
    r = curl(tpod, "https://allowed.test/small", "--resolve", "allowed.test:443:%s" % W.OTHER)
    # The refusal is a TLS alert, not HTTP bytes the client would misread
    # as a broken record ("wrong version number").
    assert (r.rc, r.status) == (35, "000"), r.err
    assert re.search(r"alert", r.err, re.I), r.err
    assert tpod.proxy.wait_log(lambda x: x.get("kind") == "transparent" and
                               x.get("host") == "allowed.test" and
                               x.get("decision") == "deny" and
                               "another address" in (x.get("reason") or ""))
