"""`sluice run` in root mode (issue 6, first slice).

Every run happens inside the world's sandbox namespace (`ip netns exec
<sbx> sluice run ...`): sluice's veth pair and the child's network namespace
are made there, never in the root namespace. The proxy resolves names through
the world's dnsmasq (the sandbox's resolv.conf) and verifies the world's
servers with --upstream-ca.
"""

import json
import os
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import DENY_REASON, SLOW, SLUICE_BIN
from world import DOC_RANGES, GIT_README, SMALL_BODY


SANITIZER_MARKERS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:",
                     b"the proxy ended with status", b"did not stop on SIGTERM")


def check_clean(stderr):
    """sluice run shows the proxy's stderr when the proxy did not end
    cleanly; sanitizer reports of either process land here."""
    for m in SANITIZER_MARKERS:
        assert m not in stderr, stderr.decode("utf-8", "replace")[-4000:]


@pytest.fixture
def run(world):
    """run(args, cmd) -> CompletedProcess of `sluice run ARGS -- CMD` in the
    sandbox, with the base run policy and the world's CA for upstreams.
    After the test: no process left in the sandbox, no sluice link, no
    temporary directory."""
    tmp = tempfile.mkdtemp(prefix="run-", dir=world.dir)
    policy = os.path.join(tmp, "policy.json")
    with open(policy, "w") as f:
        json.dump({"default": "deny",
                   "rules": [{"deny": "denied.test", "reason": DENY_REASON}],
                   "reach_ranges": DOC_RANGES}, f)
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": world.home, "LANG": "C.UTF-8", "TMPDIR": tmp,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}

    def command(args, cmd, policy_file=policy):
        pol = ["--policy", policy_file] if policy_file else []
        return ["ip", "netns", "exec", world.sbx, SLUICE_BIN, "run"] + pol + \
            ["--upstream-ca", world.ca_pem] + list(args) + ["--"] + list(cmd)

    def go(args, cmd, timeout=60, policy_file=policy, cwd=None):
        r = subprocess.run(command(args, cmd, policy_file), env=env, timeout=timeout * SLOW,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
        check_clean(r.stderr)
        return r

    def sbx_pids():
        return set(subprocess.run(["ip", "netns", "pids", world.sbx], stdout=subprocess.PIPE,
                                  timeout=10).stdout.split())

    before = sbx_pids()
    go.command = command
    go.env = env
    go.world_sbx = world.sbx
    go.tmp = tmp
    yield go
    # Nothing may be left behind.
    deadline = time.monotonic() + 5 * SLOW
    while True:
        pids = sbx_pids() - before
        links = subprocess.run(["ip", "-n", world.sbx, "-o", "link"], stdout=subprocess.PIPE,
                               timeout=10).stdout.decode()
        left = [n for n in os.listdir(tmp) if n.startswith("sluice-run-")]
        if not pids and "slr" not in links and not left:
            break
        assert time.monotonic() < deadline, \
            "left behind: pids %r, links %r, dirs %r" % (pids, links, left)
        time.sleep(0.1)


def test_allowed_https_through_the_runs_ca(run):
    r = run(["--allow", "allowed.test"], ["curl", "-sS", "--max-time", "20",
                                          "https://allowed.test/small"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == SMALL_BODY
    # The summary names the destination it allowed.
    assert b"allowed.test:443" in r.stderr and b"allow" in r.stderr


def test_child_environment(run):
    r = run(["--quiet"], ["sh", "-c", "env; cat /etc/resolv.conf; ip -o addr; ip route"])
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and
               not line.startswith(" "))
    for v in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
              "all_proxy"):
        assert env.get(v) == "http://198.18.0.1:8080", v
    assert env.get("NO_PROXY") == "localhost,127.0.0.1,::1"
    bundle = env.get("SSL_CERT_FILE")
    assert bundle
    for v in ("CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO",
              "PIP_CERT", "AWS_CA_BUNDLE"):
        assert env.get(v) == bundle, v
    assert "nameserver 198.18.0.1" in out
    assert "198.18.0.2/30" in out
    assert "default" not in out  # no route out but the link
    assert b"allowed" not in r.stderr  # --quiet: no summary


def test_working_directory_and_stdin(run, world):
    r = subprocess.run(run.command(["--quiet"], ["sh", "-c", "pwd; cat"]), env=run.env,
                       input=b"from stdin\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       cwd=world.www, timeout=60 * SLOW)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == (world.www + "\nfrom stdin\n").encode()


def test_denied_host_shows_reason(run):
    r = run(["--allow", "allowed.test"], ["curl", "-sS", "--max-time", "20",
                                          "http://denied.test/small"])
    assert DENY_REASON.encode() in r.stdout
    assert b"deny" in r.stderr and b"denied.test:80" in r.stderr
    # An unlisted host is denied by default, over CONNECT too.
    r = run(["--allow", "allowed.test"], ["curl", "-sS", "--max-time", "20",
                                          "https://unlisted.test/small"])
    assert r.returncode != 0
    assert b"403" in r.stderr


def test_deny_flag_overrides_policy_allow(run):
    r = run(["--deny", "allowed.test", "--allow", "allowed.test"],
            ["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}",
             "http://allowed.test/small"])
    assert r.stdout == b"403"


def test_python_requests_and_git(run, world):
    r = run(["--allow", "allowed.test"],
            ["/usr/bin/python3", "-c",
             "import requests,sys; sys.stdout.write(requests.get("
             "'https://allowed.test/small', timeout=20).text)"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == SMALL_BODY
    dest = os.path.join(run.tmp, "clone")
    r = run(["--allow", "git.test"], ["git", "clone", "-q", "https://git.test/repo.git", dest])
    assert r.returncode == 0, r.stderr.decode()
    with open(os.path.join(dest, "README"), "rb") as f:
        assert f.read() == GIT_README


def test_going_around_the_proxy_fails(run, world):
    r = run(["--allow", "allowed.test"],
            ["curl", "-sS", "--max-time", "5", "--noproxy", "*", "http://allowed.test/small"])
    assert r.returncode != 0
    assert SMALL_BODY not in r.stdout
    r = run(["--allow", "allowed.test"],
            ["curl", "-sS", "--max-time", "5", "--noproxy", "*", "http://192.0.2.10/small"])
    assert r.returncode != 0
    assert not [x for x in world.access_lines() if x["client"].startswith("198.18.")]


@pytest.mark.parametrize("cmd,code", [
    (["true"], 0),
    (["sh", "-c", "exit 7"], 7),
    (["sh", "-c", "kill -TERM $$"], 128 + 15),
    (["@noexec"], 126),
    (["no-such-command-here"], 127),
])
def test_exit_status(run, cmd, code):
    if cmd == ["@noexec"]:
        cmd = [os.path.join(run.tmp, "not-executable")]
        with open(cmd[0], "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(cmd[0], 0o644)
    r = run(["--quiet"], cmd)
    assert r.returncode == code, r.stderr.decode()


def test_bad_policy_is_125(run, world):
    bad = os.path.join(run.tmp, "bad.json")
    with open(bad, "w") as f:
        f.write('{"default": "deny", "rules": [{"allow": "2130706433"}]}')
    r = run([], ["true"], policy_file=bad)
    assert r.returncode == 125
    assert b"bad.json" in r.stderr
    r = run(["--allow", "allowed.test:99999"], ["true"])
    assert r.returncode == 125


def start_sleeper(run):
    """sluice run -- sleep 60, once the child is running."""
    marker = os.path.join(run.tmp, "started")
    p = subprocess.Popen(run.command(["--quiet"], ["sh", "-c", "touch %s; exec sleep 60" % marker]),
                         env=run.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15 * SLOW
    while not os.path.exists(marker):
        if time.monotonic() > deadline or p.poll() is not None:
            p.kill()
            p.wait()
            pytest.fail("the child did not start: %r" % p.stderr.read())
        time.sleep(0.05)
    return p


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_is_forwarded_to_the_child(run, sig):
    p = start_sleeper(run)
    try:
        # `ip netns exec` execs sluice: p.pid is sluice itself.
        p.send_signal(sig)
        assert p.wait(timeout=10 * SLOW) == 128 + sig
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigkill_of_sluice_takes_everything_down(run):
    """The child and the proxy die with sluice (parent-death signals), and
    the janitor removes the temporary directory; the fixture checks that no
    process, link or directory is left."""
    p = start_sleeper(run)
    p.kill()
    p.wait()


@pytest.mark.parametrize("escape", [
    "ip route add default via 198.18.0.1",           # a route out: needs CAP_NET_ADMIN
    "ip addr add 192.0.2.99/32 dev sluice0",
    "nft flush ruleset",                             # the child's own rules stay
    "unshare -n true",                               # a new namespace: CAP_SYS_ADMIN
    "nsenter --net=/proc/1/ns/net true",             # back into sluice's namespace
    "curl -sS --max-time 3 --noproxy '*' http://198.18.0.1:8081/healthz",  # admin port
    "dig +time=2 +tries=1 @192.0.2.53 allowed.test",  # another resolver
])
def test_escapes_from_inside_fail(run, escape):
    r = run(["--quiet", "--allow", "allowed.test"], ["sh", "-c", escape])
    assert r.returncode not in (0, 125), (escape, r.stdout, r.stderr)
    assert b"ok" not in r.stdout


def test_inherited_capabilities_do_not_come_back(run):
    """A root CMD gains the inheritable and ambient sets at exec, on top of
    the bounding set: a sluice started with CAP_NET_ADMIN there (as some
    containers and services start it) must still leave CMD without it."""
    caps = "+net_admin,+net_raw"
    cmd = ["setpriv", "--inh-caps", caps, "--ambient-caps", caps] + run.command(
        ["--quiet"], ["sh", "-c", "grep CapEff /proc/self/status; nft flush ruleset && echo ok"])
    r = subprocess.run(cmd, env=run.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60 * SLOW)
    check_clean(r.stderr)
    eff = int(r.stdout.split()[1], 16)
    assert not eff & (1 << 12 | 1 << 13), r.stdout  # CAP_NET_ADMIN, CAP_NET_RAW
    assert b"ok" not in r.stdout and r.returncode not in (0, 125), (r.stdout, r.stderr)


def test_dns_filter_answers_allowed_names_only(run):
    r = run(["--quiet", "--allow", "allowed.test"],
            ["sh", "-c", "dig +short +time=2 allowed.test; echo --; "
                         "dig +time=2 unlisted.test | grep -o NXDOMAIN"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().split() == ["192.0.2.10", "--", "NXDOMAIN"]


def test_terminal_ctrl_c_reaches_the_command_once_and_not_the_proxy(run):
    """^C on a terminal reaches CMD directly (same process group): sluice
    must not deliver it a second time, and the proxy (in its own session)
    must not see it, so CMD can catch it and go on using the network."""
    import pty
    marker = os.path.join(run.tmp, "started")
    script = ('n=0; trap "n=\\$((n+1))" INT; touch %s; sleep 5 & wait; sleep 0.5; echo ints=$n; '
              'curl -sS --max-time 5 -o /dev/null -w "%%{http_code}" http://allowed.test/small'
              % marker)
    cmd = run.command(["--quiet", "--allow", "allowed.test"], ["sh", "-c", script])
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvpe(cmd[0], cmd, run.env)
        finally:
            os._exit(99)
    out = b""
    status = None
    try:
        deadline = time.monotonic() + 15 * SLOW
        while not os.path.exists(marker):
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        time.sleep(0.2)
        os.write(master, b"\x03")
        deadline = time.monotonic() + 20 * SLOW
        while status is None:
            assert time.monotonic() < deadline, "sluice run did not end: %r" % out
            try:
                out += os.read(master, 4096)
            except OSError:
                pass
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status = st
            else:
                time.sleep(0.05)
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert b"ints=1" in out and out.rstrip().endswith(b"200"), out


def test_log_file_kept_and_summary_counts_this_run_only(run):
    log = os.path.join(run.tmp, "run.log")
    for _ in range(2):
        r = run(["--log", log, "--allow", "allowed.test"],
                ["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "http://allowed.test/small"])
        assert r.returncode == 0, r.stderr.decode()
        assert b"sluice run: 1 allowed, 0 denied" in r.stderr, r.stderr.decode()
    with open(log) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    hits = [x for x in lines if x.get("host") == "allowed.test" and x.get("kind") == "http"]
    assert len(hits) == 2 and all(x["decision"] == "allow" for x in hits)
    assert oct(os.stat(log).st_mode & 0o777) == "0o600"


def test_second_run_in_the_same_namespace_is_refused_cleanly(run):
    """The link address is fixed (198.18.0.1/30): a second concurrent run
    in one namespace exits 125 with the cause, and the first is unharmed."""
    p = start_sleeper(run)
    try:
        r = run(["--quiet"], ["true"])
        assert r.returncode == 125
        assert b"another sluice run" in r.stderr, r.stderr.decode()
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10 * SLOW) == 128 + signal.SIGTERM
