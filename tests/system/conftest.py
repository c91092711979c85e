"""Fixtures for the sluice system tests.

`world`      (session) the namespaces and servers of world.py.
`sluice`     (function) a factory: sluice(policy=..., args=[...]) starts
             build/sluice (or $SLUICE_BIN) in the sandbox and returns a Proxy.
`proxy`      (function) one proxy with the base policy.
`shared_proxy` (module) the same, shared by a module's table-driven tests.

Every proxy is stopped at teardown; a sanitizer report or a crash in its
stderr fails the test that owned it. When a test fails, the stderr and log of
every running proxy are attached to the report.
"""

import copy
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import rawhttp  # noqa: E402
import world as worldmod  # noqa: E402
from world import DOC_RANGES  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
SLUICE_BIN = os.path.abspath(os.environ.get("SLUICE_BIN", os.path.join(REPO, "build", "sluice")))
ASAN = os.environ.get("SLUICE_ASAN") == "1"
# Sanitizer builds start and run slower; waits (never assertions) scale.
SLOW = 4.0 if ASAN else 1.0
DENY_REASON = "denied.test is off limits in the test world"

_ACTIVE = []


def base_rules():
    rules = [{"deny": "denied.test", "reason": DENY_REASON},
             {"allow": "allowed.test", "ports": [80, 81, 443]},
             {"allow": "echo.test", "ports": [80, 443, 7]}]
    for name in ("git.test", "v4only.test", "v6only.test", "other.test", "upload.test",
                 "metadata.test", "private.test", "mixed.test", "mixed6.test",
                 "metamixed.test", "unreachable.test", "blackhole.test",
                 worldmod.NXDOMAIN_NAME):
        rules.append({"allow": name, "ports": [80, 443]})
    return rules


def base_policy(extra_rules=(), **fields):
    """The policy most tests run with: explicit names, default deny, and
    the documentation ranges reachable (they are special ranges in sluice)."""
    p = {"default": "deny", "rules": list(extra_rules) + base_rules(),
         "reach_ranges": list(DOC_RANGES)}
    p.update(fields)
    return p


def pytest_configure(config):
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        raise pytest.UsageError("the system tests need root (network namespaces)")


@pytest.fixture(scope="session")
def world():
    with worldmod.World() as w:
        yield w
        leaks = w.special_hits()
    assert not leaks, "requests reached special-range test hosts: %r" % leaks


class Proxy:
    """One running sluice proxy in the sandbox namespace."""

    def __init__(self, world, policy, args=(), name="proxy"):
        self.world = world
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="sluice-proxy-", dir=world.dir)
        self.policy_file = os.path.join(self.dir, "policy.json")
        self.log_file = os.path.join(self.dir, "sluice.log")
        self.stderr_file = os.path.join(self.dir, "stderr")
        self.token_file = os.path.join(self.dir, "admin-token")
        self.token = "tok-" + secrets.token_hex(16)
        self.port = world.free_port()
        self.admin_port = world.free_port()
        while self.admin_port == self.port:
            self.admin_port = world.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.admin_url = "http://127.0.0.1:%d" % self.admin_port
        self.args = list(args)
        self.proc = None
        self.returncode = None
        self.killed = False
        self.write_policy(policy)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")

    # -- process -----------------------------------------------------------

    def command(self):
        return [SLUICE_BIN, "proxy", "--policy", self.policy_file,
                "--listen", "127.0.0.1:%d" % self.port,
                "--admin", "127.0.0.1:%d" % self.admin_port,
                "--admin-token", self.token_file, "--log", self.log_file] + self.args

    def start(self, wait=True):
        if not os.access(SLUICE_BIN, os.X_OK):
            pytest.fail("sluice binary not found: %s (build it, or set SLUICE_BIN)" % SLUICE_BIN)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:strict_string_checks=1",
               "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
        err = open(self.stderr_file, "wb")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.world.sbx] + self.command(),
                                     stdout=err, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        err.close()
        _ACTIVE.append(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout * SLOW
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("sluice exited with %s before it was ready:\n%s" % (
                    self.proc.returncode, self.stderr_text()[-3000:]))
            try:
                r = self.admin("GET", "/readyz", token=None, timeout=2)
                if r.status == 200:
                    return
                last = r
            except (OSError, rawhttp.Closed, ValueError) as e:
                last = e
            time.sleep(0.05)
        pytest.fail("sluice not ready within %ss (last: %r):\n%s" % (
            timeout * SLOW, last, self.stderr_text()[-3000:]))

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Stop the proxy; returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.returncode = self.proc.returncode
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        return self.returncode

    def problems(self):
        """Crash or sanitizer findings, as text (empty when clean)."""
        out = []
        text = self.stderr_text()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "SUMMARY: UndefinedBehaviorSanitizer"):
            if marker in text:
                out.append("sanitizer report (%s)" % marker)
        if self.returncode is not None and self.returncode < 0 and not self.killed \
                and -self.returncode != signal.SIGKILL:
            out.append("sluice died of signal %d" % -self.returncode)
        if self.killed:
            out.append("sluice did not exit on SIGTERM and was killed")
        return out

    def stderr_text(self):
        try:
            with open(self.stderr_file, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- policy and reload -------------------------------------------------

    def write_policy(self, policy):
        text = policy if isinstance(policy, str) else json.dumps(policy, indent=2)
        tmp = self.policy_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.policy_file)

    def reload(self):
        """POST /reload with the token; returns the Response."""
        return self.admin("POST", "/reload")

    # -- clients -----------------------------------------------------------

    def conn(self, timeout=15.0, source=None):
        """A connection to the proxy port; source picks the client address
        (the sandbox's 203.0.113.2 makes a second client)."""
        return rawhttp.Conn(self.world.sbx_connect("127.0.0.1", self.port, timeout, source),
                            timeout)

    def http(self, method, url, headers=(), body=b"", host=None, timeout=15.0):
        """One absolute-form request on a fresh connection."""
        if host is None:
            host = url.split("/")[2]
        hdrs = list(headers)
        if body and not any(k.lower() in ("content-length", "transfer-encoding")
                            for k, _ in hdrs):
            hdrs.append(("Content-Length", str(len(body))))
        hdrs.append(("Connection", "close"))
        with self.conn(timeout) as c:
            c.send(rawhttp.request_bytes(method, url, host, hdrs, body))
            return c.read_response(method)

    def tunnel(self, authority, headers=(), timeout=15.0):
        """Send CONNECT authority; returns (Conn, Response). On 2xx the Conn
        is the open tunnel."""
        c = self.conn(timeout)
        try:
            c.send(rawhttp.request_bytes("CONNECT", authority, authority, headers))
            r = c.read_response("CONNECT")
        except BaseException:
            c.close()
            raise
        return c, r

    def https(self, host, path="/small", port=443, method="GET", timeout=15.0):
        """GET https://host/path through a CONNECT tunnel."""
        c, r = self.tunnel("%s:%d" % (host, port), timeout=timeout)
        with c:
            if r.status != 200:
                return r
            c.start_tls(host, self.world.ca_pem)
            c.send(rawhttp.request_bytes(method, path, host, [("Connection", "close")]))
            return c.read_response(method)

    def admin(self, method, path, token="default", body=b"", timeout=10.0):
        """Admin API request; token=None sends no Authorization header."""
        if token == "default":
            token = self.token
        hdrs = [("Connection", "close")]
        if token is not None:
            hdrs.append(("Authorization", "Bearer " + token))
        if body or method in ("POST", "PUT", "PATCH"):
            hdrs.append(("Content-Length", str(len(body))))
        c = rawhttp.Conn(self.world.sbx_connect("127.0.0.1", self.admin_port, timeout), timeout)
        with c:
            c.send(rawhttp.request_bytes(method, path, "127.0.0.1:%d" % self.admin_port,
                                         hdrs, body))
            return c.read_response(method)

    def env(self, extra=None):
        """Client environment: the test CA trusted, proxy variables set."""
        e = self.world.client_env({"http_proxy": self.url, "https_proxy": self.url,
                                   "HTTP_PROXY": self.url, "HTTPS_PROXY": self.url,
                                   "no_proxy": "", "NO_PROXY": ""})
        if extra:
            e.update(extra)
        return e

    def run(self, cmd, timeout=60, env=None, **kw):
        """Run a command in the sandbox with the proxy variables set."""
        return self.world.sbx_run(cmd, timeout=timeout, env=env or self.env(), **kw)

    def curl(self, *args, timeout=90):
        return self.run(["curl", "-sS", "--max-time", str(int(60 * SLOW)), "--proxy", self.url,
                         "--cacert", self.world.ca_pem] + list(args), timeout=timeout * SLOW)

    def cli(self, *args, timeout=30):
        """Run `sluice ARGS` in the sandbox."""
        return self.world.sbx_run([SLUICE_BIN] + list(args), timeout=timeout * SLOW)

    # -- logs --------------------------------------------------------------

    def logs(self):
        """The --log file, one dict per complete line; a line that is not a
        JSON object becomes {"_bad": line}."""
        out = []
        try:
            with open(self.log_file, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return out
        for line in data.split(b"\n")[:-1]:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                out.append(obj if isinstance(obj, dict) else {"_bad": line.decode("utf-8", "replace")})
            except ValueError:
                out.append({"_bad": line.decode("utf-8", "replace")})
        return out

    def wait_log(self, pred, count=1, timeout=10.0):
        """Lines matching pred, once at least `count` exist (or the timeout)."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            found = [x for x in self.logs() if "_bad" not in x and pred(x)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def log_tail(self, n=6000):
        try:
            with open(self.log_file, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError as e:
            return "(%s)" % e


def _stop_all(proxies):
    problems = []
    for p in proxies:
        p.stop()
        problems += ["%s: %s\n%s" % (p.name, x, p.stderr_text()[-4000:]) for x in p.problems()]
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def sluice(world, request):
    """Factory: sluice(policy=None, args=(), start=True) -> Proxy."""
    started = []

    def make(policy=None, args=(), start=True, name=None):
        p = Proxy(world, copy.deepcopy(policy) if policy is not None else base_policy(),
                  args, name or "proxy%d" % len(started))
        started.append(p)
        if start:
            p.start()
        return p

    yield make
    _stop_all(started)


@pytest.fixture
def proxy(sluice):
    return sluice()


@pytest.fixture(scope="module")
def shared_proxy(world):
    p = Proxy(world, base_policy(), (), "shared")
    p.start()
    yield p
    _stop_all([p])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("setup", "call"):
        for p in list(_ACTIVE):
            rep.sections.append(("sluice %s stderr" % p.name, p.stderr_text()[-4000:]))
            rep.sections.append(("sluice %s log" % p.name, p.log_tail()))
