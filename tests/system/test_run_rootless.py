"""`sluice run` modes: rootless (a user namespace, no root), the PID
namespace of both modes, the CA bundle at the system's path, clean-up after
SIGKILL, the choice of mode, and root mode under sudo (issue 6).

Every run happens inside the world's sandbox namespace (`ip netns exec
<sbx> ...`). The unprivileged runs are a throwaway user made for this module
(`useradd`, removed afterwards even on failure) whose UID and GID
`setpriv` takes on before exec'ing sluice, so the process under test is
sluice itself with no capability at all. Its files (policy, the world's CA,
TMPDIR) are in a directory it owns.
"""

import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import DENY_REASON, SLOW, SLUICE_BIN
from world import DOC_RANGES, SMALL_BODY

SANITIZER_MARKERS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:",
                     b"the proxy ended with status", b"did not stop on SIGTERM")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CURL = ["curl", "-sS", "--max-time", "20"]

# user: an unprivileged user, the mode chosen automatically (rootless).
# root-rootless: root with --mode rootless. root: root mode (a veth link).
HOWS = ["user", "root-rootless", "root"]
ROOTLESS = ["user", "root-rootless"]


def check_clean(stderr):
    for m in SANITIZER_MARKERS:
        assert m not in stderr, stderr.decode("utf-8", "replace")[-4000:]


def processes():
    """{pid: (uid, argv)} of every process on the host."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = f.read().split(b"\0")
            uid = os.stat("/proc/" + name).st_uid
        except OSError:
            continue
        out[int(name)] = (uid, argv)
    return out


def marked(marker):
    """PIDs of processes whose argv holds marker (a unique sleep length)."""
    return [pid for pid, (_, argv) in processes().items() if marker.encode() in argv]


@pytest.fixture(scope="module")
def account():
    """A throwaway unprivileged user with a home it owns; gone afterwards."""
    name = "slrl%d" % (os.getpid() % 100000)
    home = tempfile.mkdtemp(prefix="sluice-rootless-")
    subprocess.run(["useradd", "-M", "-d", home, "-s", "/bin/sh", name], check=True, timeout=30)
    try:
        pw = pwd.getpwnam(name)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        yield pw
    finally:
        # Nothing of it may be left; kill by PID what would block userdel.
        uid = pwd.getpwnam(name).pw_uid
        for pid, (puid, _) in processes().items():
            if puid == uid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        subprocess.run(["userdel", name], timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def sbx_pids(world):
    return set(subprocess.run(["ip", "netns", "pids", world.sbx], stdout=subprocess.PIPE,
                              timeout=10).stdout.split())


@pytest.fixture(params=HOWS)
def jail(request, world, account):
    """jail(args, cmd) -> CompletedProcess of `sluice run ARGS -- CMD` in the
    sandbox, as request.param says. After the test: no process left in the
    sandbox or of the user, no sluice link, no temporary directory."""
    how = request.param
    tmp = tempfile.mkdtemp(prefix="run-", dir=account.pw_dir)
    ca = os.path.join(tmp, "world-ca.pem")
    shutil.copy(world.ca_pem, ca)
    policy = os.path.join(tmp, "policy.json")
    with open(policy, "w") as f:
        json.dump({"default": "deny",
                   "rules": [{"deny": "denied.test", "reason": DENY_REASON}],
                   "reach_ranges": DOC_RANGES}, f)
    if how == "user":
        for p in (tmp, ca, policy):
            os.chown(p, account.pw_uid, account.pw_gid)
    else:
        # Root of a user namespace mapping only root has no power over other
        # users' files: the caller's own files are root's.
        os.chmod(account.pw_dir, 0o755)
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
           "PATH": PATH, "HOME": tmp, "LANG": "C.UTF-8", "TMPDIR": tmp,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    uid = account.pw_uid if how == "user" else 0

    def command(args, cmd, mode=True):
        pre = ["ip", "netns", "exec", world.sbx]
        if how == "user":
            # setpriv execs: the process under test is sluice, capability-free.
            pre += ["setpriv", "--reuid=%d" % account.pw_uid, "--regid=%d" % account.pw_gid,
                    "--clear-groups", "--"]
        pick = ["--mode", "rootless"] if how == "root-rootless" and mode else []
        return pre + [SLUICE_BIN, "run"] + pick + ["--policy", policy, "--upstream-ca", ca] + \
            list(args) + ["--"] + list(cmd)

    def go(args, cmd, timeout=60, mode=True, extra_env=None):
        r = subprocess.run(command(args, cmd, mode), env=dict(env, **(extra_env or {})),
                           timeout=timeout * SLOW, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, cwd=tmp)
        check_clean(r.stderr)
        return r

    before = sbx_pids(world)
    go.how = how
    go.uid = uid
    go.gid = account.pw_gid if how == "user" else 0
    go.tmp = tmp
    go.env = env
    go.command = command
    go.proxy_url = "http://198.18.0.1:8080" if how == "root" else "http://127.0.0.1:8080"
    go.resolver = "198.18.0.1" if how == "root" else "127.0.0.1"
    yield go
    deadline = time.monotonic() + 5 * SLOW
    while True:
        pids = sbx_pids(world) - before
        users = [p for p, (u, _) in processes().items() if u == account.pw_uid]
        links = subprocess.run(["ip", "-n", world.sbx, "-o", "link"], stdout=subprocess.PIPE,
                               timeout=10).stdout.decode()
        left = [n for n in os.listdir(tmp) if n.startswith("sluice-run-")]
        if not pids and not users and "slr" not in links and not left:
            break
        assert time.monotonic() < deadline, \
            "left behind: pids %r, user's %r, links %r, dirs %r" % (pids, users, links, left)
        time.sleep(0.1)


def start_sleeper(jail, script="exec sleep 60"):
    """sluice run -- sh -c 'touch started; SCRIPT', once the child runs."""
    marker = os.path.join(jail.tmp, "started")
    p = subprocess.Popen(jail.command(["--quiet"], ["sh", "-c", "touch %s; %s" % (marker, script)]),
                         env=jail.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=jail.tmp)
    deadline = time.monotonic() + 15 * SLOW
    while not os.path.exists(marker):
        if time.monotonic() > deadline or p.poll() is not None:
            p.kill()
            p.wait()
            pytest.fail("the child did not start: %r" % p.stderr.read())
        time.sleep(0.05)
    return p


# ---- what a user checks first ------------------------------------------------


def test_allowed_https_through_the_runs_ca(jail):
    r = jail(["--allow", "allowed.test"], CURL + ["https://allowed.test/small"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == SMALL_BODY
    assert b"allowed.test:443" in r.stderr


def test_denied_host_shows_reason(jail):
    r = jail(["--allow", "allowed.test"], CURL + ["http://denied.test/small"])
    assert DENY_REASON.encode() in r.stdout
    assert b"denied.test:80" in r.stderr
    r = jail(["--allow", "allowed.test"], CURL + ["https://unlisted.test/small"])
    assert r.returncode != 0
    assert b"403" in r.stderr


@pytest.mark.parametrize("jail", ROOTLESS, indirect=True)
def test_python_requests(jail):
    r = jail(["--quiet", "--allow", "allowed.test"],
             ["/usr/bin/python3", "-c",
              "import requests,sys; sys.stdout.write(requests.get("
              "'https://allowed.test/small', timeout=20).text)"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == SMALL_BODY


@pytest.mark.parametrize("jail", ROOTLESS, indirect=True)
def test_rootless_environment(jail):
    r = jail(["--quiet"], ["sh", "-c", "echo $HTTPS_PROXY; cat /etc/resolv.conf; ip -o link"])
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert out.splitlines()[0] == jail.proxy_url
    assert "nameserver 127.0.0.1" in out
    links = [line.split(":")[1].strip() for line in out.splitlines() if ": " in line]
    assert links == ["lo"], out  # nothing but loopback: nothing made on the host


def test_dns_over_udp_and_tcp(jail):
    r = jail(["--quiet", "--allow", "allowed.test"],
             ["sh", "-c", "dig +short +time=2 allowed.test; dig +short +tcp +time=2 allowed.test; "
                          "echo --; dig +time=2 unlisted.test | grep -o NXDOMAIN"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().split() == ["192.0.2.10", "192.0.2.10", "--", "NXDOMAIN"]


# ---- identity and the PID namespace --------------------------------------------


def test_caller_ids_and_only_the_jails_processes(jail):
    r = jail(["--quiet"], ["sh", "-c", "id -u; id -g; ps -e -o pid=,comm="])
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().split("\n")
    assert int(lines[0]) == jail.uid and int(lines[1]) == jail.gid
    procs = [line.split() for line in lines[2:] if line.strip()]
    # sluice's init is PID 1; the rest is the command itself.
    assert procs[0] == ["1", "sluice"], procs
    assert {p[1] for p in procs} == {"sluice", "sh", "ps"}, procs


def test_background_child_is_killed_at_exit(jail):
    marker = str(3000 + os.getpid() % 1000)
    r = jail(["--quiet"], ["sh", "-c", "setsid sleep %s >/dev/null 2>&1 & echo started" % marker])
    assert r.returncode == 0 and r.stdout == b"started\n", r.stderr.decode()
    assert marked(marker) == []


def test_sigterm_to_sluice_ends_the_command(jail):
    p = start_sleeper(jail)
    try:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10 * SLOW) == 128 + signal.SIGTERM
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP])
def test_other_signals_are_forwarded(jail, sig):
    script = 'trap "echo got; exit 3" %s; while :; do sleep 0.1; done' % sig.name[3:]
    p = start_sleeper(jail, script)
    try:
        p.send_signal(sig)
        out, _ = p.communicate(timeout=10 * SLOW)
        assert p.returncode == 3 and out == b"got\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigkill_of_sluice_leaves_nothing(jail):
    """No process (the jail, the proxy, a detached background child) and no
    temporary directory survive SIGKILL; the fixture checks the sandbox,
    the user's processes and the directory."""
    marker = str(4000 + os.getpid() % 1000)
    p = start_sleeper(jail, "setsid sleep %s >/dev/null 2>&1 & exec sleep 60" % marker)
    p.kill()
    p.wait()
    deadline = time.monotonic() + 10 * SLOW
    while marked(marker) or [n for n in os.listdir(jail.tmp) if n.startswith("sluice-run-")]:
        assert time.monotonic() < deadline, "left: %r" % marked(marker)
        time.sleep(0.1)


@pytest.mark.parametrize("cmd,code", [
    (["true"], 0),
    (["sh", "-c", "exit 7"], 7),
    (["sh", "-c", "kill -TERM $$"], 128 + 15),
    (["no-such-command-here"], 127),
])
@pytest.mark.parametrize("jail", ROOTLESS, indirect=True)
def test_exit_status(jail, cmd, code):
    r = jail(["--quiet"], cmd)
    assert r.returncode == code, r.stderr.decode()


# ---- the CA bundle where programs look without the variables -----------------------


def test_bundle_at_the_system_path(jail):
    system = "/etc/ssl/certs/ca-certificates.crt"
    with open(system, "rb") as f:
        host_bundle = f.read()
    unset = ["env", "-u", "SSL_CERT_FILE", "-u", "CURL_CA_BUNDLE", "-u", "REQUESTS_CA_BUNDLE"]
    r = jail(["--quiet", "--allow", "allowed.test"],
             unset + CURL + ["https://allowed.test/small"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == SMALL_BODY
    # Only the jail sees the run's bundle there; the host's is untouched.
    with open(system, "rb") as f:
        assert f.read() == host_bundle
    r = jail(["--quiet", "--no-intercept"], ["cat", system])
    assert r.returncode == 0
    assert r.stdout == host_bundle  # no interception: the system's own


# ---- rootless specifics --------------------------------------------------------


@pytest.mark.parametrize("jail", ROOTLESS, indirect=True)
def test_escapes_from_the_rootless_jail_fail(jail, world):
    for escape in ["curl -sS --max-time 3 --noproxy '*' http://192.0.2.10/small",
                   "dig +time=2 +tries=1 @192.0.2.53 allowed.test",
                   "ip link add dummy0 type dummy",
                   "unshare -n true"]:
        r = jail(["--quiet", "--allow", "allowed.test"], ["sh", "-c", escape])
        assert r.returncode not in (0, 125), (escape, r.stdout, r.stderr)
        assert SMALL_BODY not in r.stdout


@pytest.mark.parametrize("jail", ROOTLESS, indirect=True)
def test_two_rootless_runs_at_once(jail):
    """No shared address: a second run in the same namespace works while
    the first one is still running."""
    p = start_sleeper(jail)
    try:
        r = jail(["--quiet", "--allow", "allowed.test"], CURL + ["https://allowed.test/small"])
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == SMALL_BODY
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10 * SLOW)


# ---- the choice of mode --------------------------------------------------------


@pytest.mark.parametrize("jail", ["user", "root"], indirect=True)
def test_auto_mode_says_which_and_why(jail):
    r = jail([], ["true"], mode=False)
    assert r.returncode == 0, r.stderr.decode()
    if jail.how == "user":
        assert b"sluice run: rootless mode (not running as root)" in r.stderr
    else:
        assert b"sluice run: root mode (running as root with CAP_NET_ADMIN)" in r.stderr
    r = jail(["--quiet"], ["true"], mode=False)
    assert b"mode" not in r.stderr


@pytest.mark.parametrize("jail", ["user"], indirect=True)
def test_root_mode_without_root_is_125(jail):
    r = jail(["--mode", "root"], ["true"])
    assert r.returncode == 125
    assert b"root mode is not possible here (not running as root)" in r.stderr
    assert b"sudo" in r.stderr


@pytest.mark.parametrize("jail", ["root"], indirect=True)
def test_no_user_namespaces_is_125_with_the_fix(jail, world):
    """user.max_user_namespaces is per user namespace: set to 0 inside a
    user namespace of the test's own, it forbids new ones there only. As
    root of that namespace sluice cannot use root mode (the network
    namespace is not its own), so it picks rootless and must explain."""
    inner = " ".join(shlex.quote(a) for a in jail.command([], ["true"], mode=False)[4:])
    cmd = ["ip", "netns", "exec", world.sbx, "unshare", "--user", "--map-root-user",
           "sh", "-c", "echo 0 > /proc/sys/user/max_user_namespaces && exec " + inner]
    r = subprocess.run(cmd, env=jail.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60 * SLOW, cwd=jail.tmp)
    assert r.returncode == 125, r.stderr.decode()
    err = r.stderr.decode()
    assert "rootless mode (running as root of a user namespace" in err
    assert "user.max_user_namespaces = 0" in err
    assert "sysctl -w user.max_user_namespaces=" in err and "sudo" in err


# ---- root mode under sudo ------------------------------------------------------


@pytest.mark.parametrize("jail", ["root"], indirect=True)
def test_sudo_runs_the_command_as_the_caller(jail, account):
    sudo = {"SUDO_UID": str(account.pw_uid), "SUDO_GID": str(account.pw_gid),
            "SUDO_USER": account.pw_name, "HOME": "/root", "USER": "root"}
    script = "id -u; id -g; echo $HOME $USER; curl -sS --max-time 20 https://allowed.test/small"
    r = jail(["--quiet", "--allow", "allowed.test"], ["sh", "-c", script], extra_env=sudo)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.split(b"\n", 3)
    assert int(lines[0]) == account.pw_uid and int(lines[1]) == account.pw_gid
    assert lines[2].decode() == "%s %s" % (account.pw_dir, account.pw_name)
    assert lines[3] == SMALL_BODY  # the bundle is readable as the caller
    r = jail(["--quiet", "--keep-root"], ["id", "-u"], extra_env=sudo)
    assert r.returncode == 0 and r.stdout == b"0\n", r.stderr.decode()


# The seccomp and namespace escapes of test_run_escape.py, for a caller with
# no privilege at all (its controls, outside the jail, are there).
USER_PROBES = [
    ("raw-socket", ["raw"], "errno EPERM"),
    ("af-packet", ["packet"], "errno EAFNOSUPPORT"),
    ("af-vsock", ["vsock"], "errno EAFNOSUPPORT"),
    ("udp-dns", ["dns", "192.0.2.53", "allowed.test"], "errno ENETUNREACH"),
    ("io_uring", ["io_uring"], "errno ENOSYS"),
]


@pytest.mark.parametrize("jail", ["user"], indirect=True)
@pytest.mark.parametrize("name,args,inside", USER_PROBES, ids=[p[0] for p in USER_PROBES])
def test_socket_escapes_fail_for_an_unprivileged_caller(jail, name, args, inside):
    # The probe goes where the user can read it, whatever the checkout's modes.
    probe = os.path.join(jail.tmp, "jail_probe.py")
    if not os.path.exists(probe):
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "jail_probe.py"),
                    probe)
        os.chmod(probe, 0o644)
    r = jail(["--quiet", "--allow", "allowed.test"], ["/usr/bin/python3", probe] + args)
    assert r.returncode == 0, (name, r.stderr)
    assert r.stdout.decode().strip() == inside, (name, r.stdout, r.stderr)


@pytest.mark.parametrize("jail", ["user"], indirect=True)
def test_new_user_namespace_is_refused_for_an_unprivileged_caller(jail):
    """Already in a user namespace, CMD could nest another and hold every
    capability there; seccomp refuses it."""
    r = jail(["--quiet"], ["unshare", "-U", "-r", "-n", "sh", "-c", "echo inside"])
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert b"Operation not permitted" in r.stderr, r.stderr
    assert b"inside" not in r.stdout
