"""Upstream verification before interception (issue 3, item 2): the proxy
verifies the upstream's certificate against --upstream-ca (or the system
roots) and the CONNECT host before it answers the CONNECT; on failure the
client gets a plain 502 naming the error, and no certificate is minted."""

import re
import shutil
import subprocess

import pytest

pytest.register_assert_rewrite("tls_world")  # before the import below

import world as W
from tls_world import cert_field, first_pem, intercept_policy, tls_rules

pytest_plugins = ["tls_world"]  # fixtures: tls_up, sluice_ca, isluice


BAD = [
    ("selfsigned.test", r"self[- ]signed"),
    ("expired.test", r"expired"),
    ("wrongname.test", r"hostname mismatch|name mismatch|does not match"),
]


@pytest.fixture
def ip(isluice, tls_up):
    return isluice(intercept_policy(tls_rules()))


@pytest.mark.parametrize("host,error", BAD, ids=[h for h, _ in BAD])
def test_bad_upstream_certificate_502(ip, tls_up, host, error):
    before = len(tls_up.access_lines())
    c, r = ip.tunnel(host + ":443")
    c.close()
    # A plain HTTP answer to the CONNECT: no 200, no TLS handshake, no
    # minted certificate.
    assert r.raw_head.startswith(b"HTTP/1.1 502"), r
    assert re.search(error, r.text, re.I), r.text
    assert r.header("X-Sluice-Decision") != "deny"
    # The handshake failed, so not a single request reached the upstream.
    assert not [x for x in tls_up.access_lines()[before:] if x["host"] == host]
    lines = ip.wait_log(lambda x: x.get("host") == host and x.get("status") == 502)
    assert lines, ip.logs()
    assert re.search(error, lines[0].get("reason") or "", re.I), lines[0]


@pytest.mark.parametrize("host,error", BAD, ids=[h for h, _ in BAD])
def test_bad_upstream_certificate_real_clients(ip, host, error):
    r = ip.icurl("https://%s/small" % host)
    assert r.returncode != 0
    assert b"502" in r.stderr, r.stderr
    assert W.SMALL_BODY not in r.stdout
    # openssl s_client is never shown a certificate.
    r = ip.s_client(host, servername=host, stdin=b"")
    assert b"BEGIN CERTIFICATE" not in r.stdout, r.stdout[-2000:]
    # Still refused the second time: nothing was minted and cached.
    c, r = ip.tunnel(host + ":443")
    c.close()
    assert r.status == 502 and re.search(error, r.text, re.I), r


def test_bad_upstream_denied_before_dialling(isluice, tls_up):
    # The decision comes first: a denied name is never dialled at all.
    p = isluice(intercept_policy())
    before = len(tls_up.access_lines())
    c, r = p.tunnel("selfsigned.test:443")
    c.close()
    assert r.status == 403 and r.header("X-Sluice-Decision") == "deny", r
    lines = p.wait_log(lambda x: x.get("host") == "selfsigned.test")
    assert lines and lines[0]["decision"] == "deny" and not lines[0].get("upstream_ip")
    assert len(tls_up.access_lines()) == before


def test_system_roots_without_upstream_ca(isluice):
    # The world CA is not among the system roots, so without --upstream-ca
    # every world upstream fails verification.
    p = isluice(intercept_policy(tls_rules()), upstream_ca=False)
    c, r = p.tunnel("allowed.test:443")
    c.close()
    assert r.status == 502, r
    assert re.search(r"issuer", r.text, re.I), r.text


def test_upstream_ca_is_what_is_trusted(isluice, sluice_ca):
    # A bundle that does not hold the world CA (the sluice CA itself) does
    # not verify the world's upstreams.
    p = isluice(intercept_policy(tls_rules()), upstream_ca=sluice_ca.pem)
    c, r = p.tunnel("allowed.test:443")
    c.close()
    assert r.status == 502, r


def test_good_upstreams_with_upstream_ca(ip):
    for host in ("allowed.test", "hdr.test", "tls12.test", "v6only.test"):
        r = ip.icurl("-o", "/dev/null", "-w", "%{http_code}", "https://%s/small" % host)
        assert r.returncode == 0 and r.stdout == b"200", (host, r.stderr)


def test_passthrough_does_not_verify_upstream(isluice, tls_up):
    # Passthrough is untouched: sluice does not speak TLS there, so the
    # client sees the self-signed certificate itself.
    p = isluice(intercept_policy(tls_rules(), passthrough=["selfsigned.test"]))
    r = p.s_client("selfsigned.test", servername="selfsigned.test")
    pem = first_pem(r.stdout)
    assert pem, r.stdout[-2000:]
    assert cert_field(pem, "-issuer") == "issuer=CN = selfsigned.test"
    r = p.icurl("https://selfsigned.test/small")
    assert r.returncode == 60, r.stderr


@pytest.mark.parametrize("trusted", [True, False], ids=["world-ca-in-dir", "empty-dir"])
def test_system_roots_read_from_the_hashed_directory(isluice, tls_up, world, tmp_path, trusted):
    """Without --upstream-ca the system roots are OpenSSL's hashed
    directory, read lazily (SSL_CERT_DIR names it; an empty SSL_CERT_FILE
    names no bundle). The world's CA linked there is trusted; an empty
    directory trusts nothing, so the same upstream gets a 502."""
    d = tmp_path / "certs"
    d.mkdir()
    if trusted:
        shutil.copy(world.ca_pem, d / "world.pem")
    subprocess.run(["openssl", "rehash", str(d)], check=True, timeout=30)
    p = isluice(intercept_policy(tls_rules()), upstream_ca=False,
                env={"SSL_CERT_FILE": "", "SSL_CERT_DIR": str(d)})
    r = p.icurl("-o", "/dev/null", "-w", "%{http_code}", "https://allowed.test/small")
    if trusted:
        assert r.returncode == 0 and r.stdout == b"200", r.stderr
    else:
        assert r.returncode != 0 and b"502" in r.stderr, (r.stdout, r.stderr)
