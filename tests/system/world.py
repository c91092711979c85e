"""The test world: a small simulated internet in network namespaces.

Two namespaces per run, named with a prefix unique to this process so that
parallel runs and leftovers never clash:

    <prefix>-inet   the "internet": nginx (HTTP :80, HTTPS :443 with a test CA),
                    dnsmasq (the .test zone), a Python upstream (echo, sha256 of
                    uploads, a half-close service), and test hosts in special
                    ranges (169.254.169.254, 10.66.0.10) so that a leak would
                    reach a real host and show up in its access log.
    <prefix>-sbx    the "sandbox": where sluice and the clients run. Its only
                    link goes to inet (a veth pair), its resolver is dnsmasq.

Nothing is created in the root network namespace: the veth pair is created
inside inet with its peer moved straight into the sandbox, and every address
is a documentation address (or a special-range test host) that exists only
inside these namespaces.

Use it as a context manager; teardown kills every process in the two
namespaces (by pid), deletes them and their /etc/netns directories, and runs
again from atexit if the interpreter exits some other way.
"""

import atexit
import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Addresses inside the inet namespace (all on its loopback device).
WEB = "192.0.2.10"           # nginx: allowed.test, denied.test, git.test ...
WEB6 = "2001:db8:1::10"      # nginx over IPv6
PYUP = "192.0.2.20"          # upstream.py: echo.test, upload.test
DNS = "192.0.2.53"           # dnsmasq
OTHER = "198.51.100.10"      # nginx: other.test
MIXED_PUB = "198.51.100.30"  # nginx: the public half of mixed.test
MIXED_PUB6 = "2001:db8:1::30"
UNREACH = "198.51.100.97"    # nft rejects with ICMP host-unreachable
BLACKHOLE = "198.51.100.99"  # nft drops every packet: connect times out
METADATA = "169.254.169.254"  # special range: link-local cloud metadata
PRIVATE = "10.66.0.10"       # special range: RFC 1918
SPECIAL_HOSTS = (METADATA, PRIVATE)

# The veth link.
INET_LINK4, SBX_LINK4 = "203.0.113.1", "203.0.113.2"
INET_LINK6, SBX_LINK6 = "2001:db8:ffff::1", "2001:db8:ffff::2"

INET_ADDRS = [WEB, WEB6, PYUP, DNS, OTHER, MIXED_PUB, MIXED_PUB6, UNREACH,
              BLACKHOLE, METADATA, PRIVATE]
NGINX_ADDRS = [WEB, WEB6, OTHER, MIXED_PUB, MIXED_PUB6, METADATA, PRIVATE]

# The .test zone. Names not listed answer NXDOMAIN.
ZONE = {
    "allowed.test": [WEB, WEB6],
    "denied.test": [WEB, WEB6],
    "unlisted.test": [WEB],      # in DNS but in no rule: default deny
    "git.test": [WEB],
    "v4only.test": [WEB],
    "v6only.test": [WEB6],
    "other.test": [OTHER],
    "echo.test": [PYUP],
    "upload.test": [PYUP],
    "metadata.test": [METADATA],
    "private.test": [PRIVATE],
    "mixed.test": [MIXED_PUB, PRIVATE],
    "mixed6.test": [PRIVATE, MIXED_PUB6],
    "metamixed.test": [METADATA, MIXED_PUB],
    "unreachable.test": [UNREACH],
    "blackhole.test": [BLACKHOLE],
}
NXDOMAIN_NAME = "nosuch.test"
TLS_NAMES = sorted(n for n in ZONE)

# Sizes of the generated payloads.
BIG_SIZE = 64 * 1024 * 1024
UPLOAD_SIZE = 8 * 1024 * 1024
SMALL_BODY = b"hello from the sluice test world\n"
GIT_README = b"sluice test repository\n"

# Documentation ranges are special ranges in sluice; tests list them.
DOC_RANGES = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(ns, fn):
    """Run fn() on a thread that has joined network namespace ns.

    Sockets keep the namespace they were created in, so a socket made here
    can be used from any thread afterwards."""
    out = {}

    def run():
        try:
            fd = os.open("/run/netns/" + ns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, "setns %s: %s" % (ns, os.strerror(err)))
            finally:
                os.close(fd)
            out["value"] = fn()
        except BaseException as e:  # handed to the caller
            out["error"] = e

    t = threading.Thread(target=run, name="netns-" + ns)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def ns_connect(ns, host, port, timeout=10.0, source=None):
    """A TCP socket created in namespace ns and connected to host:port,
    from the local address `source` if given."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def make():
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            if source:
                s.bind((source, 0))
            s.connect((host, port))
        except BaseException:
            s.close()
            raise
        return s

    return in_netns(ns, make)


def ns_free_port(ns, host="127.0.0.1"):
    def pick():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            return s.getsockname()[1]
    return in_netns(ns, pick)


def _run(cmd, timeout=30, check=True, **kw):
    return subprocess.run(cmd, timeout=timeout, check=check,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_pids(ns):
    r = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=10)
    return [int(p) for p in r.stdout.split() if p.isdigit() and int(p) != os.getpid()]


def _kill_netns_processes(ns, grace=3.0):
    """Every process whose network namespace is ns was started by us."""
    pids = _netns_pids(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [p for p in _netns_pids(ns) if p in pids]
    for pid in _netns_pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _delete_netns(ns):
    _kill_netns_processes(ns)
    subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=10)
    shutil.rmtree("/etc/netns/" + ns, ignore_errors=True)


def cleanup_stale():
    """Remove namespaces left by runs whose process is gone (killed -9)."""
    r = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=10, text=True)
    for line in r.stdout.splitlines():
        m = re.match(r"^(sl(\d+)-(inet|sbx))\b", line)
        if m and not _pid_alive(int(m.group(2))):
            _delete_netns(m.group(1))
    if os.path.isdir("/etc/netns"):
        for name in os.listdir("/etc/netns"):
            m = re.match(r"^sl(\d+)-(inet|sbx)$", name)
            if m and not _pid_alive(int(m.group(1))):
                shutil.rmtree("/etc/netns/" + name, ignore_errors=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class World:
    """The namespaces, servers and files of one test run."""

    def __init__(self, prefix=None, workdir=None, verbose=False):
        self.prefix = prefix or "sl%d" % os.getpid()
        self.inet = self.prefix + "-inet"
        self.sbx = self.prefix + "-sbx"
        self.verbose = verbose
        self._own_workdir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="sluice-world-")
        self.procs = {}
        self._created = []
        self._stopped = False
        self.ca_pem = os.path.join(self.dir, "ca.pem")
        self.www = os.path.join(self.dir, "www")
        self.big_path = os.path.join(self.www, "big")
        self.upload_path = os.path.join(self.dir, "upload.bin")
        self.access_log = os.path.join(self.dir, "nginx-access.log")
        self.upstream_log = os.path.join(self.dir, "upstream.log")
        self.dns_log = os.path.join(self.dir, "dnsmasq.log")
        self.home = os.path.join(self.dir, "home")
        self.big_sha256 = None
        self.upload_sha256 = None

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _say(self, msg):
        if self.verbose:
            print("world: " + msg, flush=True)

    def start(self):
        atexit.register(self.stop)
        try:
            cleanup_stale()
            self._make_files()
            self._make_ca()
            self._make_git_repo()
            self._make_namespaces()
            self._start_dnsmasq()
            self._start_nginx()
            self._start_upstream()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for ns in (self.sbx, self.inet):
            if ns in self._created:
                _delete_netns(ns)
        for proc in self.procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        if self._own_workdir and not os.environ.get("SLUICE_KEEP_WORLD"):
            shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    # -- building ----------------------------------------------------------

    def _make_files(self):
        os.makedirs(self.www, exist_ok=True)
        os.makedirs(self.home, exist_ok=True)
        with open(os.path.join(self.www, "small"), "wb") as f:
            f.write(SMALL_BODY)
        h = hashlib.sha256()
        with open(self.big_path, "wb") as f:
            for _ in range(BIG_SIZE // (1 << 20)):
                block = os.urandom(1 << 20)
                h.update(block)
                f.write(block)
        self.big_sha256 = h.hexdigest()
        data = os.urandom(UPLOAD_SIZE)
        with open(self.upload_path, "wb") as f:
            f.write(data)
        self.upload_sha256 = hashlib.sha256(data).hexdigest()

    def _openssl(self, *args):
        _run(["openssl"] + list(args), cwd=self.dir)

    def _make_ca(self):
        self._say("minting the test CA")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
                      "-subj", "/CN=sluice test world CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        sans = ",".join(["DNS:" + n for n in TLS_NAMES] +
                        ["IP:" + a for a in (WEB, WEB6, OTHER, PYUP, MIXED_PUB, MIXED_PUB6)])
        with open(os.path.join(self.dir, "leaf.ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=%s\n" % sans)
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=allowed.test")
        self._openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                      "-CAcreateserial", "-out", "leaf.pem", "-days", "30",
                      "-extfile", "leaf.ext")

    def client_env(self, extra=None):
        """Environment for clients: trust the test CA, no user config."""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": self.home,
            "LANG": "C.UTF-8",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSL_CAINFO": self.ca_pem,
            "CURL_CA_BUNDLE": self.ca_pem,
            "REQUESTS_CA_BUNDLE": self.ca_pem,
            "SSL_CERT_FILE": self.ca_pem,
        }
        if extra:
            env.update(extra)
        return env

    def _make_git_repo(self):
        self._say("creating the git repository")
        bare = os.path.join(self.www, "repo.git")
        work = os.path.join(self.dir, "repo-src")
        env = self.client_env({"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.test",
                               "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@example.test"})
        _run(["git", "init", "-q", "--bare", "--initial-branch=main", bare], env=env)
        _run(["git", "init", "-q", "--initial-branch=main", work], env=env)
        with open(os.path.join(work, "README"), "wb") as f:
            f.write(GIT_README)
        _run(["git", "-C", work, "add", "README"], env=env)
        _run(["git", "-C", work, "commit", "-q", "-m", "first"], env=env)
        _run(["git", "-C", work, "push", "-q", bare, "main"], env=env)
        _run(["git", "-C", bare, "update-server-info"], env=env)

    def _ip(self, *args):
        _run(["ip"] + list(args))

    def _make_namespaces(self):
        self._say("creating namespaces %s and %s" % (self.inet, self.sbx))
        for ns in (self.inet, self.sbx):
            self._ip("netns", "add", ns)
            self._created.append(ns)
        inet, sbx = self.inet, self.sbx
        # Created inside inet, peer moved straight into sbx: never in root.
        self._ip("-n", inet, "link", "add", "veth0", "type", "veth",
                 "peer", "name", "veth0", "netns", sbx)
        for ns in (inet, sbx):
            self._ip("-n", ns, "link", "set", "lo", "up")
        self._ip("-n", inet, "addr", "add", INET_LINK4 + "/24", "dev", "veth0")
        self._ip("-n", inet, "addr", "add", INET_LINK6 + "/64", "dev", "veth0", "nodad")
        self._ip("-n", sbx, "addr", "add", SBX_LINK4 + "/24", "dev", "veth0")
        self._ip("-n", sbx, "addr", "add", SBX_LINK6 + "/64", "dev", "veth0", "nodad")
        for ns in (inet, sbx):
            self._ip("-n", ns, "link", "set", "veth0", "up")
        for a in INET_ADDRS:
            plen = "/128" if ":" in a else "/32"
            self._ip("-n", inet, "addr", "add", a + plen, "dev", "lo")
        self._ip("-n", sbx, "route", "add", "default", "via", INET_LINK4)
        self._ip("-n", sbx, "-6", "route", "add", "default", "via", INET_LINK6)
        # Failure hosts, inside inet only.
        rules = textwrap.dedent("""\
            table inet sluice_world {
              chain input {
                type filter hook input priority 0; policy accept;
                ip daddr %s drop
                ip daddr %s reject with icmp type host-unreachable
              }
            }
            """) % (BLACKHOLE, UNREACH)
        subprocess.run(["ip", "netns", "exec", inet, "nft", "-f", "-"], input=rules.encode(),
                       check=True, timeout=10, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        etc = "/etc/netns/" + sbx
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write("nameserver %s\noptions timeout:2 attempts:2\n" % DNS)
        with open(os.path.join(etc, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")

    def _spawn(self, name, ns, cmd, **kw):
        log = open(os.path.join(self.dir, name + ".out"), "wb")
        proc = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)
        log.close()
        self.procs[name] = proc
        return proc

    def _start_dnsmasq(self):
        hosts = os.path.join(self.dir, "zone.hosts")
        with open(hosts, "w") as f:
            for name, addrs in ZONE.items():
                for a in addrs:
                    f.write("%s %s\n" % (a, name))
        self._spawn("dnsmasq", self.inet, [
            "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
            "--addn-hosts=" + hosts, "--local=/test/", "--listen-address=" + DNS,
            "--bind-interfaces", "--port=53", "--user=root", "--group=root",
            "--pid-file=" + os.path.join(self.dir, "dnsmasq.pid"), "--log-queries",
            "--log-facility=" + self.dns_log, "--cache-size=0", "--local-ttl=1"])

    def _start_nginx(self):
        listens = []
        for a in NGINX_ADDRS:
            host = "[%s]" % a if ":" in a else a
            listens.append("listen %s:80;" % host)
            listens.append("listen %s:443 ssl;" % host)
        d = self.dir
        conf = textwrap.dedent("""\
            user root root;
            worker_processes 1;
            daemon off;
            pid {d}/nginx.pid;
            error_log {d}/nginx-error.log info;
            events {{ worker_connections 1024; }}
            http {{
              client_body_temp_path {d}/nginx-body;
              proxy_temp_path {d}/nginx-proxy;
              fastcgi_temp_path {d}/nginx-fastcgi;
              uwsgi_temp_path {d}/nginx-uwsgi;
              scgi_temp_path {d}/nginx-scgi;
              types {{ text/plain txt; }}
              default_type application/octet-stream;
              log_format world '$server_addr $remote_addr $host "$request" $status $body_bytes_sent';
              access_log {d}/nginx-access.log world;
              sendfile on;
              keepalive_requests 10000;
              server {{
                {listens}
                server_name _;
                ssl_certificate {d}/leaf.pem;
                ssl_certificate_key {d}/leaf.key;
                root {www};
                location = /whoami {{ return 200 "$server_addr $host\\n"; }}
                location = /headers {{ return 200 "host=$http_host uri=$request_uri\\n"; }}
                location = /nocontent {{ return 204; }}
                # PEP 503 simple-index pages (test_run_clients.py): pip wants text/html.
                location /simple/ {{ default_type text/html; }}
                location / {{ }}
              }}
            }}
            """).format(d=d, www=self.www, listens="\n    ".join(listens))
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self._spawn("nginx", self.inet, ["nginx", "-p", d, "-c", path])

    def _start_upstream(self):
        self._spawn("upstream", self.inet, [
            "/usr/bin/python3", os.path.join(HERE, "upstream.py"), "--addr", PYUP,
            "--cert", os.path.join(self.dir, "leaf.pem"),
            "--key", os.path.join(self.dir, "leaf.key"), "--log", self.upstream_log])

    def _wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        waiting = [(WEB, 80), (WEB, 443), (WEB6, 443), (PYUP, 80), (PYUP, 443), (PYUP, 7)]
        while waiting:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError("%s exited early (%s); see %s" % (
                        name, proc.returncode, self.file_tail(name + ".out")))
            host, port = waiting[0]
            try:
                ns_connect(self.sbx, host, port, timeout=1.0).close()
                waiting.pop(0)
                continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("world: %s:%d not reachable from the sandbox" % (host, port))
            time.sleep(0.05)
        while True:
            r = self.sbx_run(["dig", "+short", "+time=1", "+tries=1", "allowed.test", "A"],
                             timeout=5, check=False)
            if r.stdout.strip() == WEB.encode():
                break
            if time.monotonic() > deadline:
                raise RuntimeError("world: dnsmasq does not answer: %r %r" % (r.stdout, r.stderr))
            time.sleep(0.1)

    # -- helpers for tests -------------------------------------------------

    def file_tail(self, name, n=4000):
        path = name if os.path.isabs(name) else os.path.join(self.dir, name)
        try:
            with open(path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError as e:
            return "(%s)" % e

    def sbx_run(self, cmd, timeout=60, check=False, env=None, **kw):
        """Run a command in the sandbox namespace (bounded)."""
        return subprocess.run(["ip", "netns", "exec", self.sbx] + list(cmd), timeout=timeout,
                              check=check, stdout=kw.pop("stdout", subprocess.PIPE),
                              stderr=kw.pop("stderr", subprocess.PIPE),
                              env=env if env is not None else self.client_env(), **kw)

    def inet_run(self, cmd, timeout=60, check=False, **kw):
        return subprocess.run(["ip", "netns", "exec", self.inet] + list(cmd), timeout=timeout,
                              check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    def sbx_connect(self, host, port, timeout=10.0, source=None):
        return ns_connect(self.sbx, host, port, timeout, source)

    def free_port(self):
        return ns_free_port(self.sbx)

    def add_names(self, zone, timeout=15.0):
        """Serve more .test names ({name: [addresses]}) from dnsmasq, for
        fixtures that add servers (tls_world.py). dnsmasq re-reads
        --addn-hosts on SIGHUP; it runs without a cache."""
        with open(os.path.join(self.dir, "zone.hosts"), "a") as f:
            for name, addrs in zone.items():
                for a in addrs:
                    f.write("%s %s\n" % (a, name))
        with open(os.path.join(self.dir, "dnsmasq.pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGHUP)
        deadline = time.monotonic() + timeout
        for name, addrs in zone.items():
            want = sorted(a for a in addrs if ":" not in a)
            while True:
                r = self.sbx_run(["dig", "+short", "+time=1", "+tries=1", name, "A"],
                                 timeout=5, check=False)
                if sorted(r.stdout.decode().split()) == want:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("world: dnsmasq does not serve %s: %r" % (name, r.stdout))
                time.sleep(0.1)

    def access_lines(self):
        """nginx access log: dicts with server, client, host, request, status."""
        out = []
        try:
            with open(self.access_log, "r", errors="replace") as f:
                for line in f:
                    m = re.match(r'^(\S+) (\S+) (\S+) "(.*)" (\d+) (\d+)$', line.rstrip("\n"))
                    if m:
                        out.append({"server": m.group(1), "client": m.group(2),
                                    "host": m.group(3), "request": m.group(4),
                                    "status": int(m.group(5)), "bytes": int(m.group(6))})
        except FileNotFoundError:
            pass
        return out

    def upstream_lines(self):
        """upstream.py log: one line per request or connection it accepted."""
        try:
            with open(self.upstream_log, "r", errors="replace") as f:
                return [line.rstrip("\n") for line in f]
        except FileNotFoundError:
            return []

    def special_hits(self):
        """Requests that reached a special-range test host (must stay empty)."""
        return [r for r in self.access_lines() if r["server"] in SPECIAL_HOSTS]


def main():
    """`python3 world.py` builds the world, prints it, and waits for Ctrl-C."""
    with World(verbose=True) as w:
        print("inet=%s sbx=%s dir=%s" % (w.inet, w.sbx, w.dir))
        print("try: ip netns exec %s curl --cacert %s https://allowed.test/small" % (w.sbx, w.ca_pem))
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    main()
