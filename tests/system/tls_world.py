"""The TLS part of the test world (issue 3): upstreams with bad certificates,
a header echo, a private git repository behind Basic auth, a WebSocket echo,
the sluice CA, and proxies that intercept.

Added to the session's world without touching it: extra documentation
addresses on the inet namespace's loopback, extra .test names served by the
world's dnsmasq, a second nginx and a WebSocket server inside inet.

    192.0.2.141  selfsigned.test  nginx, a self-signed certificate
    192.0.2.142  expired.test     nginx, signed by the world CA, expired in 2020
    192.0.2.143  wrongname.test   nginx, signed by the world CA for someone-else.test
    192.0.2.144  hdr.test         nginx, /auth-echo answers the Authorization and
                                  X-Api-Key headers it received
                 privgit.test     nginx, auth_basic in front of the world's /repo.git
    192.0.2.145  tls12.test       nginx, TLS 1.2 only
    192.0.2.146  ws.test          ws_echo.py (python3-websockets), wss:// and ws://

Everything good is signed by the world CA (world.ca_pem), which the proxies
get as --upstream-ca. Clients trust only the sluice CA (`ca export`).

Fixtures (a test module names this file in `pytest_plugins`, so that they
are registered once and shared by the session):
  tls_up     (session) the upstreams above
  sluice_ca  (session) a CA made by `sluice ca init`, and its exported PEM
  isluice    (function) factory: isluice(policy, args=(), env={}, with_ca=True,
             upstream_ca=True) -> IProxy, a conftest.Proxy with --ca and
             --upstream-ca and clients that trust only the sluice CA
"""

import base64
import contextlib
import datetime
import os
import re
import secrets
import subprocess
import textwrap
import time

import pytest

import world as W
from conftest import SLOW, SLUICE_BIN, Proxy, _stop_all, base_rules

HERE = os.path.dirname(os.path.abspath(__file__))

SELF = "192.0.2.141"
EXPIRED = "192.0.2.142"
WRONG = "192.0.2.143"
SECURE = "192.0.2.144"
TLS12 = "192.0.2.145"
WS = "192.0.2.146"
TLS_ADDRS = [SELF, EXPIRED, WRONG, SECURE, TLS12, WS]

TLS_ZONE = {
    "selfsigned.test": [SELF],
    "expired.test": [EXPIRED],
    "wrongname.test": [WRONG],
    "hdr.test": [SECURE],
    "privgit.test": [SECURE],
    "tls12.test": [TLS12],
    "ws.test": [WS],
}
GOOD_NAMES = ["hdr.test", "privgit.test", "tls12.test", "ws.test"]

GIT_USER = "sluice-git"


def _run(cmd, cwd=None, timeout=60, input=None):
    r = subprocess.run(cmd, cwd=cwd, timeout=timeout, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                   r.stderr.decode("utf-8", "replace")))
    return r


# -- the upstreams ------------------------------------------------------------

class TLSUpstreams:
    def __init__(self, world):
        self.world = world
        self.dir = os.path.join(world.dir, "tls")
        self.procs = {}
        self.access_log = os.path.join(self.dir, "nginx-access.log")
        self.ws_log = os.path.join(self.dir, "ws.log")
        self.git_password = "pw-" + secrets.token_hex(12)
        self.git_token = base64.b64encode(
            ("%s:%s" % (GIT_USER, self.git_password)).encode()).decode()

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        try:
            self._make_certs()
            self._make_htpasswd()
            for a in TLS_ADDRS:
                _run(["ip", "-n", self.world.inet, "addr", "add", a + "/32", "dev", "lo"])
            self.world.add_names(TLS_ZONE)
            self._start_nginx()
            self._start_ws()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs = {}

    def _openssl(self, *args):
        _run(["openssl"] + list(args), cwd=self.dir)

    def _leaf_ext(self, name, sans):
        path = os.path.join(self.dir, name + ".ext")
        with open(path, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=%s\n" % ",".join("DNS:" + s for s in sans))
        return path

    def _csr(self, name, cn):
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)

    def _make_certs(self):
        wca, wkey = self.world.ca_pem, os.path.join(self.world.dir, "ca.key")
        # Good: every name that should verify, signed by the world CA.
        self._csr("good", "hdr.test")
        self._openssl("x509", "-req", "-in", "good.csr", "-CA", wca, "-CAkey", wkey,
                      "-CAcreateserial", "-CAserial", "tls.srl", "-out", "good.pem",
                      "-days", "30", "-extfile", self._leaf_ext("good", GOOD_NAMES))
        # Wrong name: a valid certificate, for another name.
        self._csr("wrong", "someone-else.test")
        self._openssl("x509", "-req", "-in", "wrong.csr", "-CA", wca, "-CAkey", wkey,
                      "-CAcreateserial", "-CAserial", "tls.srl", "-out", "wrong.pem",
                      "-days", "30", "-extfile", self._leaf_ext("wrong", ["someone-else.test"]))
        # Self-signed, for its own name: only the issuer is wrong.
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", "self.key", "-out", "self.pem", "-days", "30",
                      "-subj", "/CN=selfsigned.test",
                      "-addext", "subjectAltName=DNS:selfsigned.test")
        # Expired: right name, right issuer, validity over in 2020. `openssl x509`
        # cannot backdate; `openssl ca` takes explicit dates.
        self._csr("expired", "expired.test")
        for sub in ("newcerts",):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write(secrets.token_hex(8) + "\n")
        with open(os.path.join(self.dir, "ca.cnf"), "w") as f:
            f.write(textwrap.dedent("""\
                [ ca ]
                default_ca = world_ca
                [ world_ca ]
                dir = .
                database = index.txt
                new_certs_dir = newcerts
                serial = serial
                default_md = sha256
                policy = any_name
                unique_subject = no
                [ any_name ]
                commonName = supplied
                """))
        self._openssl("ca", "-batch", "-config", "ca.cnf", "-cert", wca, "-keyfile", wkey,
                      "-in", "expired.csr", "-out", "expired.pem", "-notext",
                      "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                      "-extfile", self._leaf_ext("expired", ["expired.test"]))

    def _make_htpasswd(self):
        r = _run(["openssl", "passwd", "-apr1", self.git_password])
        with open(os.path.join(self.dir, "htpasswd"), "w") as f:
            f.write("%s:%s\n" % (GIT_USER, r.stdout.decode().strip()))

    def _spawn(self, name, cmd):
        log = open(os.path.join(self.dir, name + ".out"), "wb")
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", self.world.inet] + cmd,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def _start_nginx(self):
        d, www = self.dir, self.world.www

        def server(addr, cert, extra="", names="_"):
            return textwrap.dedent("""\
                server {{
                  listen {addr}:443 ssl;
                  server_name {names};
                  ssl_certificate {d}/{cert}.pem;
                  ssl_certificate_key {d}/{cert}.key;
                  root {www};
                  {extra}
                  location / {{ }}
                }}
                """).format(addr=addr, names=names, d=d, cert=cert, www=www, extra=extra)

        servers = [
            server(SELF, "self"),
            server(EXPIRED, "expired"),
            server(WRONG, "wrong"),
            server(SECURE, "good", names="hdr.test", extra=(
                'location = /auth-echo { return 200 "authorization=$http_authorization\\n'
                'x-api-key=$http_x_api_key\\n"; }')),
            server(SECURE, "good", names="privgit.test", extra=(
                'auth_basic "sluice test private git";\n'
                '  auth_basic_user_file %s/htpasswd;' % d)),
            server(TLS12, "good", extra="ssl_protocols TLSv1.2;"),
        ]
        conf = textwrap.dedent("""\
            user root root;
            worker_processes 1;
            daemon off;
            pid {d}/nginx.pid;
            error_log {d}/nginx-error.log info;
            events {{ worker_connections 512; }}
            http {{
              client_body_temp_path {d}/nginx-body;
              proxy_temp_path {d}/nginx-proxy;
              fastcgi_temp_path {d}/nginx-fastcgi;
              uwsgi_temp_path {d}/nginx-uwsgi;
              scgi_temp_path {d}/nginx-scgi;
              types {{ text/plain txt; }}
              default_type application/octet-stream;
              log_format tls '$server_addr $remote_addr $host "$request" $status $body_bytes_sent';
              access_log {d}/nginx-access.log tls;
              sendfile on;
            """).format(d=d) + "".join(servers) + "}\n"
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self._spawn("nginx", ["nginx", "-p", d, "-c", path])

    def _start_ws(self):
        self._spawn("ws", ["/usr/bin/python3", os.path.join(HERE, "ws_echo.py"), "--addr", WS,
                           "--cert", os.path.join(self.dir, "good.pem"),
                           "--key", os.path.join(self.dir, "good.key"), "--log", self.ws_log])

    def _wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        waiting = [(a, 443) for a in TLS_ADDRS] + [(WS, 80)]
        while waiting:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError("%s exited (%s): %s" % (
                        name, proc.returncode, self.world.file_tail(
                            os.path.join(self.dir, name + ".out"))))
            host, port = waiting[0]
            try:
                self.world.sbx_connect(host, port, timeout=1.0).close()
                waiting.pop(0)
                continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("tls world: %s:%d not reachable" % (host, port))
            time.sleep(0.05)

    # -- for tests --

    def access_lines(self):
        out = []
        try:
            with open(self.access_log, errors="replace") as f:
                for line in f:
                    m = re.match(r'^(\S+) (\S+) (\S+) "(.*)" (\d+) (\d+)$', line.rstrip("\n"))
                    if m:
                        out.append({"server": m.group(1), "host": m.group(3),
                                    "request": m.group(4), "status": int(m.group(5))})
        except FileNotFoundError:
            pass
        return out

    def ws_lines(self):
        try:
            with open(self.ws_log, errors="replace") as f:
                return [x.rstrip("\n") for x in f]
        except FileNotFoundError:
            return []


class SluiceCA:
    """`sluice ca init --dir` in the world's directory, and `ca export`."""

    def __init__(self, world):
        self.world = world
        self.dir = os.path.join(world.dir, "sluice-ca")
        self.pem = os.path.join(world.dir, "sluice-ca-export.pem")

    def start(self):
        r = subprocess.run([SLUICE_BIN, "ca", "init", "--dir", self.dir], timeout=60 * SLOW,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError("sluice ca init --dir %s: exit %d: %s" % (
                self.dir, r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")))
        r = subprocess.run([SLUICE_BIN, "ca", "export", "--dir", self.dir], timeout=60 * SLOW,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0 or b"BEGIN CERTIFICATE" not in r.stdout:
            raise RuntimeError("sluice ca export --dir %s: exit %d: %r" % (
                self.dir, r.returncode, r.stdout + r.stderr))
        with open(self.pem, "wb") as f:
            f.write(r.stdout)
        self.subject = cert_field(self.pem, "-subject")
        self.pubkey = _run(["openssl", "x509", "-in", self.pem, "-noout", "-pubkey"]).stdout
        return self


@pytest.fixture(scope="session")
def tls_up(world):
    try:
        up = TLSUpstreams(world).start()
    except RuntimeError as e:
        pytest.fail("the TLS upstreams did not start: %s" % e)
    yield up
    up.stop()


@pytest.fixture(scope="session")
def sluice_ca(world):
    try:
        ca = SluiceCA(world).start()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield ca


# -- certificates, read with openssl ------------------------------------------

def cert_field(pem_path_or_bytes, *opts):
    """`openssl x509 -noout OPTS` on a file path or PEM bytes, as text."""
    if isinstance(pem_path_or_bytes, bytes):
        r = _run(["openssl", "x509", "-noout"] + list(opts), input=pem_path_or_bytes)
    else:
        r = _run(["openssl", "x509", "-in", pem_path_or_bytes, "-noout"] + list(opts))
    return r.stdout.decode().strip()


def cert_dates(pem):
    """(notBefore, notAfter) as aware datetimes."""
    text = cert_field(pem, "-dates")
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition("=")
        out[k] = datetime.datetime.strptime(v.strip(), "%b %d %H:%M:%S %Y %Z").replace(
            tzinfo=datetime.timezone.utc)
    return out["notBefore"], out["notAfter"]


def cert_sans(pem):
    """The subjectAltName entries, e.g. ["DNS:allowed.test"]."""
    text = cert_field(pem, "-ext", "subjectAltName")
    lines = [x.strip() for x in text.splitlines()[1:] if x.strip()]
    out = []
    for line in lines:
        out += [x.strip().replace("IP Address:", "IP:") for x in line.split(",")]
    return out


def first_pem(text):
    m = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", text, re.S)
    return m.group(0) if m else None


# -- policies -----------------------------------------------------------------

def intercept_policy(rules=(), passthrough=None, enabled=True, base=True, **fields):
    """base_policy's rules (after `rules`) with interception on."""
    p = {"default": "deny", "rules": list(rules) + (base_rules() if base else []),
         "reach_ranges": list(W.DOC_RANGES)}
    if enabled is not None:
        p["intercept"] = {"enabled": enabled}
        if passthrough is not None:
            p["intercept"]["passthrough"] = list(passthrough)
    p.update(fields)
    return p


def tls_rules():
    """Allow every name of the TLS world on 443 (and ws.test on 80)."""
    return [{"allow": n, "ports": [80, 443]} for n in sorted(TLS_ZONE)]


# -- an intercepting proxy and clients that trust only the sluice CA ----------

class IProxy(Proxy):
    def __init__(self, world, ca, policy, args=(), name="iproxy", env=None, with_ca=True,
                 upstream_ca=True):
        pre = []
        if with_ca:
            pre += ["--ca", ca.dir]
        if upstream_ca is True:
            pre += ["--upstream-ca", world.ca_pem]
        elif upstream_ca:
            pre += ["--upstream-ca", upstream_ca]
        super().__init__(world, policy, pre + list(args), name)
        self.ca = ca
        self.extra_env = dict(env or {})

    def command(self):
        cmd = super().command()
        if self.extra_env:
            cmd = ["env"] + ["%s=%s" % kv for kv in sorted(self.extra_env.items())] + cmd
        return cmd

    def cenv(self, extra=None, home=None):
        """Client environment: the proxy variables, and only the sluice CA."""
        e = self.env({"GIT_SSL_CAINFO": self.ca.pem, "CURL_CA_BUNDLE": self.ca.pem,
                      "REQUESTS_CA_BUNDLE": self.ca.pem, "SSL_CERT_FILE": self.ca.pem})
        if home:
            e["HOME"] = home
        if extra:
            e.update(extra)
        return e

    def crun(self, cmd, timeout=90, env=None, **kw):
        return self.world.sbx_run(cmd, timeout=timeout * SLOW, env=env or self.cenv(), **kw)

    def icurl(self, *args, timeout=90):
        return self.crun(["curl", "-sS", "--max-time", str(int(60 * SLOW)), "--proxy", self.url,
                          "--cacert", self.ca.pem] + list(args), timeout=timeout)

    def itunnel(self, host, port=443, sni=None, cafile=None, timeout=15.0):
        """CONNECT host:port, then TLS with SNI `sni` (default host) verified
        against the sluice CA. Returns the Conn; fails the test on a non-200."""
        c, r = self.tunnel("%s:%d" % (host, port), timeout=timeout)
        if r.status != 200:
            c.close()
            pytest.fail("CONNECT %s:%d answered %r" % (host, port, r))
        try:
            c.start_tls(sni or host, cafile or self.ca.pem)
        except BaseException:
            c.close()
            raise
        return c

    def s_client(self, host, port=443, servername=None, args=(), cafile=None, stdin=b""):
        """openssl s_client through the proxy (-proxy); returns the result."""
        cmd = ["openssl", "s_client", "-proxy", "127.0.0.1:%d" % self.port,
               "-connect", "%s:%d" % (host, port), "-CAfile", cafile or self.ca.pem,
               "-showcerts"]
        if servername is not None:
            cmd += ["-servername", servername]
        cmd += list(args)
        return self.world.sbx_run(cmd, timeout=30 * SLOW, input=stdin, env=self.cenv())

    def tls_lines(self, host=None, count=1, pred=None):
        return self.wait_log(lambda x: x.get("kind") == "tls" and
                             (host is None or x.get("host") == host) and
                             (pred is None or pred(x)), count=count)


@pytest.fixture
def isluice(world, sluice_ca):
    """Factory: isluice(policy, args=(), env=None, with_ca=True, upstream_ca=True)."""
    started = []

    def make(policy=None, args=(), env=None, with_ca=True, upstream_ca=True, start=True,
             name=None):
        p = IProxy(world, sluice_ca, policy if policy is not None else intercept_policy(),
                   args, name or "iproxy%d" % len(started), env, with_ca, upstream_ca)
        started.append(p)
        if start:
            p.start()
        return p

    yield make
    _stop_all(started)


def git_clone(proxy, url, dest, env=None, timeout=120):
    r = proxy.crun(["git", "-c", "http.proxy=" + proxy.url, "clone", "-q", url, str(dest)],
                   timeout=timeout, env=env)
    readme = os.path.join(str(dest), "README")
    out = b""
    if r.returncode == 0 and os.path.exists(readme):
        with open(readme, "rb") as f:
            out = f.read()
    return r, out


def free_home(tmp_path):
    """An empty HOME for a client (no git config, no netrc)."""
    home = tmp_path / "home"
    home.mkdir()
    return str(home)


def ws_roundtrip(sock, host, cafile, messages, path="/echo", timeout=20.0):
    """A WebSocket client (python3-websockets) on an already connected socket:
    wss://host/path verified against cafile; sends each message and returns
    the echoes, in order."""
    import asyncio
    import ssl

    import websockets

    ctx = ssl.create_default_context(cafile=cafile)

    async def run():
        async with websockets.connect("wss://%s%s" % (host, path), sock=sock, ssl=ctx,
                                      server_hostname=host, open_timeout=timeout,
                                      close_timeout=5, max_size=4 * 1024 * 1024) as ws:
            got = []
            for m in messages:
                await ws.send(m)
                got.append(await asyncio.wait_for(ws.recv(), timeout))
            return got

    return asyncio.run(asyncio.wait_for(run(), timeout * 2))

