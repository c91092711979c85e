"""Helpers for the DNS filter's system tests (test_dns.py).

`DnsUpstream` is a second dnsmasq in the world's internet namespace, on
192.0.2.54, serving the records the DNS tests need (TXT, MX, SRV, PTR, an
HTTPS record with ECH, CNAMEs to allowed and denied names, a record set too
big for 512 bytes) and logging every query it receives, so a test can count
what reached the upstream. It lives here rather than in world.py so the
world stays as it is for everyone else; the address is added to the inet
namespace's loopback and removed again at teardown.

`DnsClient` asks sluice's DNS port from the sandbox namespace with dnspython
(raw sockets made in the namespace) and with dig.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

import world as W

UPSTREAM = "192.0.2.54"
BIG_COUNT = 60  # A records of big.test: 60 * 16 bytes, far over 512
BIG_ADDRS = ["198.51.100.%d" % (100 + i) for i in range(BIG_COUNT)]
TXT_TEXT = "hello from the sluice dns test"
DENIED_TXT = "secret that must not leave"
# HTTPS svc.test: priority 1, target ".", alpn=h2, ipv4hint=192.0.2.10,
# ech=<10 bytes>, ipv6hint=2001:db8:1::10
ECH_VALUE = bytes.fromhex("0008fe0d000401020304")
HTTPS_RDATA = (bytes.fromhex("0001") + b"\x00"
               + bytes.fromhex("0001 0003 026832".replace(" ", ""))
               + bytes.fromhex("0004 0004".replace(" ", "")) + socket.inet_aton("192.0.2.10")
               + bytes.fromhex("0005") + len(ECH_VALUE).to_bytes(2, "big") + ECH_VALUE
               + bytes.fromhex("0006 0010".replace(" ", ""))
               + socket.inet_pton(socket.AF_INET6, "2001:db8:1::10"))

HOSTS = {
    "allowed.test": [W.WEB, W.WEB6],
    "denied.test": [W.WEB],
    "unlisted.test": [W.WEB],
    "mixed.test": [W.MIXED_PUB, W.PRIVATE],
    "metadata.test": [W.METADATA],
    "big.test": BIG_ADDRS,
}

# Rules DNS tests add in front of conftest.base_policy()'s.
DNS_RULES = [
    {"allow": "*.allowed.test"},
    {"allow": "alias.test"},
    {"allow": "good-alias.test"},
    {"allow": "big.test"},
    {"allow": "svc.test"},
    {"allow": "10.2.0.192.in-addr.arpa"},
]


class DnsUpstream:
    """dnsmasq on UPSTREAM in the internet namespace, query log on."""

    def __init__(self, world):
        self.world = world
        self.dir = os.path.join(world.dir, "dns-upstream")
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "queries.log")
        self.proc = None

    def start(self):
        hosts = os.path.join(self.dir, "hosts")
        with open(hosts, "w") as f:
            for name, addrs in HOSTS.items():
                for a in addrs:
                    f.write("%s %s\n" % (a, name))
        subprocess.run(["ip", "-n", self.world.inet, "addr", "add", UPSTREAM + "/32", "dev", "lo"],
                       check=True, timeout=10, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cmd = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
               "--addn-hosts=" + hosts, "--local=/test/", "--local=/in-addr.arpa/",
               "--listen-address=" + UPSTREAM, "--bind-interfaces", "--port=53",
               "--user=root", "--group=root", "--cache-size=0", "--local-ttl=1",
               "--pid-file=" + os.path.join(self.dir, "dnsmasq.pid"),
               "--log-queries", "--log-facility=" + self.log,
               "--cname=alias.test,denied.test", "--cname=good-alias.test,allowed.test",
               '--txt-record=txt.allowed.test,%s' % TXT_TEXT,
               '--txt-record=denied.test,%s' % DENIED_TXT,
               "--mx-host=allowed.test,mail.allowed.test,10",
               "--srv-host=_http._tcp.allowed.test,allowed.test,80",
               "--ptr-record=10.2.0.192.in-addr.arpa,allowed.test",
               "--dns-rr=svc.test,65," + HTTPS_RDATA.hex()]
        out = open(os.path.join(self.dir, "dnsmasq.out"), "wb")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.world.inet] + cmd, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        out.close()
        deadline = time.monotonic() + 15
        while True:
            r = self.world.sbx_run(["dig", "+short", "+time=1", "+tries=1", "@" + UPSTREAM,
                                    "allowed.test", "A"], timeout=5)
            if r.stdout.strip() == W.WEB.encode():
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dns upstream did not start: %r %r" % (
                    r.stdout, self.world.file_tail(os.path.join(self.dir, "dnsmasq.out"))))
            time.sleep(0.1)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
        subprocess.run(["ip", "-n", self.world.inet, "addr", "del", UPSTREAM + "/32", "dev", "lo"],
                       timeout=10, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def queries(self, name=None, qtype=None):
        """Queries dnsmasq logged: list of (qtype, name)."""
        try:
            with open(self.log, "r", errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            return []
        out = []
        for m in re.finditer(r"query\[(\w+)\] (\S+) from", text):
            if (name is None or m.group(2).lower() == name) and (qtype is None or m.group(1) == qtype):
                out.append((m.group(1), m.group(2).lower()))
        return out

    def wait_query(self, name, qtype, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queries(name, qtype):
                return True
            time.sleep(0.05)
        return False


class DnsClient:
    """Queries to sluice's DNS listener, from inside the sandbox."""

    def __init__(self, world, port, host="127.0.0.1"):
        self.world = world
        self.port = port
        self.host = host

    def query(self, name, qtype="A", tcp=False, edns=True, payload=1232, timeout=10.0):
        q = dns.message.make_query(name, qtype, use_edns=0 if edns else False, payload=payload)
        fn = dns.query.tcp if tcp else dns.query.udp
        return W.in_netns(self.world.sbx,
                          lambda: fn(q, self.host, port=self.port, timeout=timeout))

    def raw_udp(self, data, timeout=3.0):
        """Sends bytes; returns the reply bytes, or None when none came."""
        def send():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(timeout)
            try:
                s.sendto(data, (self.host, self.port))
                return s.recv(65535)
            except socket.timeout:
                return None
            finally:
                s.close()
        return W.in_netns(self.world.sbx, send)

    def raw_tcp(self, data, timeout=3.0):
        """Sends one length-prefixed message; returns the reply, or None."""
        def send():
            s = socket.create_connection((self.host, self.port), timeout=timeout)
            try:
                s.sendall(len(data).to_bytes(2, "big") + data)
                head = b""
                while len(head) < 2:
                    chunk = s.recv(2 - len(head))
                    if not chunk:
                        return None
                    head += chunk
                n = int.from_bytes(head, "big")
                body = b""
                while len(body) < n:
                    chunk = s.recv(n - len(body))
                    if not chunk:
                        return None
                    body += chunk
                return body
            except socket.timeout:
                return None
            finally:
                s.close()
        return W.in_netns(self.world.sbx, send)

    def dig(self, *args, timeout=30):
        return self.world.sbx_run(["dig", "@" + self.host, "-p", str(self.port), "+time=5",
                                   "+tries=1"] + list(args), timeout=timeout)


def addresses(msg):
    """A/AAAA addresses in a dnspython answer."""
    out = []
    for rrset in msg.answer:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            out.extend(r.address for r in rrset)
    return out


def rcode(msg):
    return dns.rcode.to_text(msg.rcode())


def truncated(msg):
    return bool(msg.flags & dns.flags.TC)


def metric(text, line_prefix):
    """The value of the first metrics line starting with line_prefix."""
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.split()[-1])
    return None
