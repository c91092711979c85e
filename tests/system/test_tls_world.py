"""The TLS world on the direct path (no proxy): each upstream of tls_world.py
fails or works for a client exactly the way the interception tests rely on,
so that a 502 or a 401 through sluice means what the tests say it means."""

import os

import pytest

pytest.register_assert_rewrite("tls_world")  # before the import below

import world as W
from tls_world import TLS_ZONE, WS, ws_roundtrip

pytest_plugins = ["tls_world"]  # fixtures: tls_up, sluice_ca, isluice


def direct_curl(world, *args):
    return world.sbx_run(["curl", "-sS", "--max-time", "20", "--cacert", world.ca_pem] +
                         list(args), timeout=60)


def test_names_resolve(world, tls_up):
    for name, addrs in sorted(TLS_ZONE.items()):
        r = world.sbx_run(["dig", "+short", "+time=2", "+tries=2", name, "A"], timeout=15)
        assert r.stdout.decode().split() == addrs, name
    # The world's own names still answer.
    r = world.sbx_run(["dig", "+short", "+time=2", "+tries=2", "allowed.test", "A"], timeout=15)
    assert r.stdout.decode().split() == [W.WEB]


@pytest.mark.parametrize("name,curl_error", [
    ("selfsigned.test", "self-signed certificate"),
    ("expired.test", "certificate has expired"),
    ("wrongname.test", "no alternative certificate subject name matches"),
])
def test_bad_upstreams_fail_verification(world, tls_up, name, curl_error):
    r = direct_curl(world, "https://%s/small" % name)
    assert r.returncode == 60, r.stderr
    assert curl_error in r.stderr.decode()
    # Only the certificate is wrong: without verification the page is there.
    r = direct_curl(world, "-k", "https://%s/small" % name)
    assert r.returncode == 0 and r.stdout == W.SMALL_BODY, r.stderr


def test_good_upstreams_verify_against_world_ca(world, tls_up):
    r = direct_curl(world, "https://tls12.test/small")
    assert r.returncode == 0 and r.stdout == W.SMALL_BODY, r.stderr
    r = direct_curl(world, "-H", "Authorization: Bearer direct-check",
                    "https://hdr.test/auth-echo")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"authorization=Bearer direct-check\nx-api-key=\n"


def test_tls12_only_upstream(world, tls_up):
    r = direct_curl(world, "--tlsv1.3", "https://tls12.test/small")
    assert r.returncode != 0
    r = direct_curl(world, "--tls-max", "1.2", "https://tls12.test/small")
    assert r.returncode == 0 and r.stdout == W.SMALL_BODY


def test_private_git_needs_basic_auth(world, tls_up, tmp_path):
    r = direct_curl(world, "-o", "/dev/null", "-w", "%{http_code}",
                    "https://privgit.test/repo.git/info/refs")
    assert r.stdout == b"401"
    r = direct_curl(world, "-o", "/dev/null", "-w", "%{http_code}", "-H",
                    "Authorization: Basic " + tls_up.git_token,
                    "https://privgit.test/repo.git/info/refs")
    assert r.stdout == b"200"
    env = world.client_env({"HOME": str(tmp_path)})
    r = world.sbx_run(["git", "clone", "-q", "https://privgit.test/repo.git",
                       str(tmp_path / "no")], env=env, timeout=60)
    # git met the 401 and wanted a username, which nobody can give it here.
    assert r.returncode != 0 and b"could not read Username" in r.stderr, r.stderr
    r = world.sbx_run(["git", "-c", "http.extraHeader=Authorization: Basic " + tls_up.git_token,
                       "clone", "-q", "https://privgit.test/repo.git", str(tmp_path / "yes")],
                      env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "yes" / "README").read_bytes() == W.GIT_README


def test_websocket_echo_direct(world, tls_up):
    sock = world.sbx_connect(WS, 443)
    msgs = ["hello", os.urandom(100000)]
    assert ws_roundtrip(sock, "ws.test", world.ca_pem, msgs) == msgs
    assert any(x.startswith("/echo ws.test") for x in tls_up.ws_lines())
