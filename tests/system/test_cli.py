"""`sluice policy check|explain`, `--version`, `--help`, and the proxy's
refusal to start on a bad policy (SPEC §1: exit 2 naming the file)."""

import json
import os

import pytest

from conftest import SLUICE_BIN, SLOW, base_policy


def run(world, *args):
    return world.sbx_run([SLUICE_BIN] + list(args), timeout=30 * SLOW)


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(base_policy(), indent=2))
    return str(path)


def test_version_and_help(world):
    r = run(world, "--version")
    assert r.returncode == 0 and r.stdout.strip()
    r = run(world, "--help")
    assert r.returncode == 0 and b"proxy" in r.stdout + r.stderr
    r = run(world, "proxy", "--help")
    assert r.returncode == 0 and b"--policy" in r.stdout + r.stderr


def test_unknown_command_is_usage_error(world):
    r = run(world, "no-such-command")
    assert r.returncode == 2


def test_policy_check_valid(world, policy_file):
    r = run(world, "policy", "check", policy_file)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("text,words", [
    ('{"default": "deny",\n "rules": [\n  {"allow": }\n]}', [b"3"]),     # line 3
    ('{"default": "perhaps", "rules": []}', [b"default"]),
    ('{"default": "deny", "rules": [{"allow": "x.test", "ports": [0]}]}', [b"port"]),
])
def test_policy_check_invalid(world, tmp_path, text, words):
    path = tmp_path / "bad.json"
    path.write_text(text)
    r = run(world, "policy", "check", str(path))
    assert r.returncode == 2
    msg = r.stdout + r.stderr
    assert b"bad.json" in msg
    for w in words:
        assert w in msg.lower(), msg


@pytest.mark.parametrize("target,decision,rule", [
    ("https://allowed.test/", b"allow", b"1"),
    ("allowed.test:443", b"allow", b"1"),
    ("denied.test:443", b"deny", b"0"),
    ("http://unlisted.test/", b"deny", b"default"),
])
def test_policy_explain(world, policy_file, target, decision, rule):
    r = run(world, "policy", "explain", policy_file, target)
    assert r.returncode == 0, r.stderr
    out = r.stdout.lower()
    assert decision in out and rule in out, out


def test_proxy_refuses_invalid_policy(world, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{oops")
    r = run(world, "proxy", "--policy", str(path), "--listen", "127.0.0.1:%d" % world.free_port(),
            "--admin", "127.0.0.1:%d" % world.free_port())
    assert r.returncode == 2
    assert b"bad.json" in r.stdout + r.stderr


def test_proxy_refuses_missing_policy(world, tmp_path):
    r = run(world, "proxy", "--policy", str(tmp_path / "absent.json"),
            "--listen", "127.0.0.1:%d" % world.free_port(),
            "--admin", "127.0.0.1:%d" % world.free_port())
    assert r.returncode in (1, 2)
    assert b"absent.json" in r.stdout + r.stderr
    assert not os.path.exists(tmp_path / "absent.json")
