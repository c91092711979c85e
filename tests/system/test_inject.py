"""Credential injection (issue 3, items 3 and 4): `inject` headers from
${env:NAME} and ${file:PATH} reach the upstream, replace whatever the
workload sent, and never show up in logs, status, /policy, explain or error
bodies; a private git repository behind Basic auth is cloned from a sandbox
that holds no credential anywhere."""

import json
import os
import secrets

import pytest

pytest.register_assert_rewrite("tls_world")  # before the import below

import rawhttp
import world as W
from tls_world import free_home, git_clone, intercept_policy, tls_rules

pytest_plugins = ["tls_world"]  # fixtures: tls_up, sluice_ca, isluice


class Secrets:
    def __init__(self, tmp_path, tls_up):
        self.env_token = "sk-env-" + secrets.token_hex(16)
        self.file_key = "key-file-" + secrets.token_hex(16)
        self.basic = "dXNlcjpzZWNyZXQtYmFzaWMt" + secrets.token_hex(8)
        self.git = tls_up.git_token
        d = tmp_path / "proxy-secrets"
        d.mkdir(mode=0o700)
        self.key_file = str(d / "apikey")
        self.basic_file = str(d / "basic")
        self.git_file = str(d / "git")
        for path, value in ((self.key_file, self.file_key), (self.basic_file, self.basic),
                            (self.git_file, self.git)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value)

    def values(self):
        return [self.env_token, self.file_key, self.basic, self.git]


@pytest.fixture
def sec(tmp_path, tls_up):
    return Secrets(tmp_path, tls_up)


def inject_policy(s, intercept=None):
    rules = [
        {"allow": "echo.test", "paths": ["/echo"],
         "inject": {"Authorization": "Bearer ${env:SLUICE_TEST_TOKEN}",
                    "X-Api-Key": "${file:%s}" % s.key_file}},
        {"allow": "hdr.test", "inject": {"Authorization": "Basic ${file:%s}" % s.basic_file}},
        {"allow": "privgit.test", "inject": {"Authorization": "Basic ${file:%s}" % s.git_file}},
        {"allow": "selfsigned.test",
         "inject": {"Authorization": "Bearer ${env:SLUICE_TEST_TOKEN}"}},
    ]
    # Not the base rules: their plain allow of echo.test would admit what the
    # paths above leave out. No intercept block by default: inject alone
    # turns interception on.
    rules.append({"allow": "upload.test"})
    return intercept_policy(rules, enabled=intercept, base=False)


@pytest.fixture
def jp(isluice, sec):
    return isluice(inject_policy(sec), env={"SLUICE_TEST_TOKEN": sec.env_token})


def echo_headers(body):
    doc = json.loads(body)
    out = {}
    for k, v in doc["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def test_injected_headers_reach_upstream(jp, sec):
    r = jp.icurl("https://echo.test/echo")
    assert r.returncode == 0, r.stderr
    h = echo_headers(r.stdout)
    assert h.get("authorization") == ["Bearer " + sec.env_token]
    assert h.get("x-api-key") == [sec.file_key]


def test_injected_header_replaces_the_workloads(jp, sec):
    with jp.itunnel("echo.test") as c:
        c.send(rawhttp.request_bytes("GET", "/echo", "echo.test", [
            ("Authorization", "Bearer workload-fake-1"),
            ("authorization", "Bearer workload-fake-2"),
            ("X-API-KEY", "workload-key")]))
        r = c.read_response()
    assert r.status == 200, r
    h = echo_headers(r.body)
    assert h.get("authorization") == ["Bearer " + sec.env_token]
    assert h.get("x-api-key") == [sec.file_key]
    assert b"workload-fake" not in r.body and b"workload-key" not in r.body


def test_injected_authorization_seen_by_nginx(jp, sec):
    r = jp.icurl("-H", "Authorization: Basic d29ya2xvYWQ6Zm9yZ2Vk", "https://hdr.test/auth-echo")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("authorization=Basic %s\nx-api-key=\n" % sec.basic).encode()


def test_inject_only_for_its_rule(isluice, sec):
    # upload.test (the same upstream as echo.test) is intercepted too, but
    # its rule injects nothing: the workload's own header arrives as sent.
    p = isluice(inject_policy(sec, intercept=True), env={"SLUICE_TEST_TOKEN": sec.env_token})
    r = p.icurl("-H", "Authorization: Bearer workload-own", "https://upload.test/echo")
    assert r.returncode == 0, r.stderr
    h = echo_headers(r.stdout)
    assert h.get("authorization") == ["Bearer workload-own"]
    assert "x-api-key" not in h


def test_inject_on_every_request_of_a_tunnel(jp, sec):
    with jp.itunnel("echo.test") as c:
        for i in range(3):
            c.send(rawhttp.request_bytes("GET", "/echo?n=%d" % i, "echo.test"))
            r = c.read_response()
            assert r.status == 200, r
            assert echo_headers(r.body).get("authorization") == ["Bearer " + sec.env_token]


def admin_texts(p):
    out = []
    for path in ("/status", "/policy", "/metrics"):
        r = p.admin("GET", path)
        assert r.status == 200, (path, r)
        out.append(r.text)
    return out


def test_secrets_never_shown(jp, sec, world):
    bodies = []
    # Allowed, denied by path inside the tunnel, Host switch, upstream failure.
    assert jp.icurl("https://echo.test/echo").returncode == 0
    with jp.itunnel("echo.test") as c:
        c.send(rawhttp.request_bytes("GET", "/sha256", "echo.test"))
        r = c.read_response()
        assert r.status == 403, r
        bodies.append(r.raw_head + r.body)
        c.send(rawhttp.request_bytes("GET", "/echo", "other.test"))
        r = c.read_response()
        assert r.status == 421, r
        bodies.append(r.raw_head + r.body)
    c, r = jp.tunnel("selfsigned.test:443")
    c.close()
    assert r.status == 502, r
    bodies.append(r.raw_head + r.body)
    assert jp.icurl("https://hdr.test/auth-echo").returncode == 0
    jp.wait_log(lambda x: x.get("kind") == "tls", count=4)
    texts = [b.decode("utf-8", "replace") for b in bodies]
    texts += admin_texts(jp)
    r = jp.cli("status", "--admin", jp.admin_url, "--token", jp.token_file)
    texts.append((r.stdout + r.stderr).decode("utf-8", "replace"))
    for url in ("https://echo.test/echo", "https://hdr.test/auth-echo"):
        r = jp.cli("policy", "explain", jp.policy_file, url)
        texts.append((r.stdout + r.stderr).decode("utf-8", "replace"))
    with open(jp.log_file) as f:
        texts.append(f.read())
    texts.append(jp.stderr_text())
    for t in texts:
        for s in sec.values():
            assert s not in t, (s, t[:3000])


def test_constant_header_inject_needs_no_secret_source(isluice):
    # A literal value (no ${...}) is injected as written.
    p = isluice(intercept_policy([{"allow": "echo.test",
                                   "inject": {"X-Tenant": "tenant-42"}}], enabled=None))
    r = p.icurl("-H", "X-Tenant: workload-says-otherwise", "https://echo.test/echo")
    assert r.returncode == 0, r.stderr
    assert echo_headers(r.stdout).get("x-tenant") == ["tenant-42"]


# -- private git, no credential in the sandbox ---------------------------------------

def walk_text(root):
    for d, _, files in os.walk(root):
        for name in files:
            path = os.path.join(d, name)
            try:
                with open(path, "rb") as f:
                    yield path, f.read()
            except OSError:
                pass


def test_git_clone_private_repo_through_inject(jp, sec, tls_up, tmp_path):
    home = free_home(tmp_path)
    env = jp.cenv(home=home)
    # The sandbox holds no credential: not in the environment, not in HOME,
    # no credential helper, no git config with a header.
    for k, v in env.items():
        for s in sec.values():
            assert s not in v, k
    before = len(tls_up.access_lines())
    dest = tmp_path / "clone"
    r, readme = git_clone(jp, "https://privgit.test/repo.git", dest, env=env)
    assert r.returncode == 0, r.stderr
    assert readme == W.GIT_README
    hits = [x for x in tls_up.access_lines()[before:] if x["host"] == "privgit.test"]
    assert hits and all(x["status"] == 200 for x in hits), hits
    for root in (home, str(dest)):
        for path, data in walk_text(root):
            for s in sec.values() + [tls_up.git_password]:
                assert s.encode() not in data, path
    r = jp.crun(["git", "-C", str(dest), "config", "--list", "--show-origin"], env=env)
    assert sec.git.encode() not in r.stdout and b"extraheader" not in r.stdout.lower()
    lines = jp.tls_lines("privgit.test")
    assert lines and lines[0]["path"].startswith("/repo.git/")


def test_git_clone_private_repo_without_inject_fails(isluice, tmp_path):
    # The control: the same clone through an intercepting proxy without the
    # inject rule meets the 401 (git then wants a username nobody gives it).
    p = isluice(intercept_policy(tls_rules()))
    r, readme = git_clone(p, "https://privgit.test/repo.git", tmp_path / "clone",
                          env=p.cenv(home=free_home(tmp_path)))
    assert r.returncode != 0 and readme == b""
    assert b"could not read Username" in r.stderr or b"401" in r.stderr, r.stderr
