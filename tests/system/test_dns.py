"""The DNS filter (`sluice proxy --dns`): dnspython and dig in the sandbox
ask sluice, which forwards allowed names to a dnsmasq in the test internet
(dns_helpers.DnsUpstream, with a query log) and refuses the rest without
asking anyone. Also: CNAME chains, special-range answers, ECH, TCP on
truncation, upstream failure and failover, malformed packets, rate limits,
name caps, the learned-address sink and its expiry, SO_MARK, logs, metrics,
status, and the start-up errors."""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import textwrap
import time

import dns.flags
import dns.message
import dns.rdatatype
import pytest

import world as W
from conftest import SLOW, SLUICE_BIN, Proxy, base_policy
from dns_helpers import (BIG_ADDRS, BIG_COUNT, DNS_RULES, DENIED_TXT, TXT_TEXT, UPSTREAM,
                         DnsClient, DnsUpstream, addresses, metric, rcode, truncated)


def dns_policy(upstreams=(UPSTREAM,), **fields):
    dns_conf = {"upstream": list(upstreams)}
    dns_conf.update(fields.pop("dns", {}))
    return base_policy(DNS_RULES, dns=dns_conf, **fields)


@pytest.fixture(scope="module")
def upstream(world):
    u = DnsUpstream(world).start()
    yield u
    u.stop()


@pytest.fixture
def dns_sluice(world, sluice, upstream):
    """Factory: a sluice with --dns on a free port; .dns is its DnsClient."""
    def make(policy=None, args=(), start=True):
        port = world.free_port()
        p = sluice(policy if policy is not None else dns_policy(),
                   ["--dns", "127.0.0.1:%d" % port] + list(args), start=start)
        p.dns = DnsClient(world, port)
        return p
    return make


@pytest.fixture(scope="module")
def shared(world, upstream):
    """One DNS-enabled sluice for the table-driven tests."""
    port = W.ns_free_port(world.sbx)
    p = Proxy(world, dns_policy(), ["--dns", "127.0.0.1:%d" % port], "dns-shared")
    p.start()
    p.dns = DnsClient(world, port)
    yield p
    p.stop()
    assert not p.problems(), p.problems()
    assert p.returncode == 0, p.stderr_text()[-2000:]


def dns_logs(proxy, pred=lambda x: True, count=1):
    return proxy.wait_log(lambda x: x.get("kind") == "dns" and pred(x), count=count)


def learned(proxy):
    r = proxy.admin("GET", "/dns/learned")
    assert r.status == 200, r
    return {e["address"]: e for e in json.loads(r.body)["entries"]}


def metrics_text(proxy):
    r = proxy.admin("GET", "/metrics")
    assert r.status == 200
    return r.text


# ---- answers for allowed names ------------------------------------------------------

def _txt(m):
    return [b"".join(r.strings).decode() for rr in m.answer if rr.rdtype == dns.rdatatype.TXT
            for r in rr]


def _targets(m, rdtype):
    return [str(getattr(r, "exchange", None) or getattr(r, "target", None)).rstrip(".")
            for rr in m.answer if rr.rdtype == rdtype for r in rr]


ALLOWED = [
    ("allowed.test", "A", lambda m: addresses(m) == [W.WEB]),
    ("allowed.test", "AAAA", lambda m: addresses(m) == [W.WEB6]),
    ("good-alias.test", "A", lambda m: addresses(m) == [W.WEB]
        and _targets(m, dns.rdatatype.CNAME) == ["allowed.test"]),
    ("good-alias.test", "CNAME", lambda m: _targets(m, dns.rdatatype.CNAME) == ["allowed.test"]),
    ("txt.allowed.test", "TXT", lambda m: _txt(m) == [TXT_TEXT]),
    ("allowed.test", "MX", lambda m: _targets(m, dns.rdatatype.MX) == ["mail.allowed.test"]),
    ("_http._tcp.allowed.test", "SRV", lambda m: _targets(m, dns.rdatatype.SRV) == ["allowed.test"]),
    ("10.2.0.192.in-addr.arpa", "PTR", lambda m: _targets(m, dns.rdatatype.PTR) == ["allowed.test"]),
    ("svc.test", "HTTPS", lambda m: len(m.answer) == 1 and "alpn" in m.answer[0].to_text()),
]


@pytest.mark.parametrize("name,qtype,check", ALLOWED, ids=["%s-%s" % (n, t) for n, t, _ in ALLOWED])
def test_allowed_name_answered(shared, name, qtype, check):
    for tcp in (False, True):
        m = shared.dns.query(name, qtype, tcp=tcp)
        assert rcode(m) == "NOERROR", m
        assert check(m), m.to_text()


def test_tcp_pipelined_queries_all_answered(shared):
    """40 queries written at once on one TCP connection (more than the 16 a
    connection may have in flight), then a half-close: every one answered."""
    names = ["allowed.test", "denied.test", "good-alias.test", "mixed.test"]
    queries = {}
    data = b""
    for i in range(40):
        q = dns.message.make_query(names[i % len(names)], "A")
        q.id = 1000 + i
        queries[q.id] = names[i % len(names)]
        wire = q.to_wire()
        data += len(wire).to_bytes(2, "big") + wire

    def exchange():
        s = socket.create_connection(("127.0.0.1", shared.dns.port), timeout=15)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return got
                got += chunk
        finally:
            s.close()
    got = W.in_netns(shared.world.sbx, exchange)
    answers = {}
    while got:
        n = int.from_bytes(got[:2], "big")
        m = dns.message.from_wire(got[2:2 + n])
        answers[m.id] = m
        got = got[2 + n:]
    assert sorted(answers) == sorted(queries)
    for qid, name in queries.items():
        want = "NXDOMAIN" if name == "denied.test" else "NOERROR"
        assert rcode(answers[qid]) == want, (name, answers[qid])


def test_answer_keeps_query_id_and_edns(shared):
    q = dns.message.make_query("allowed.test", "A", want_dnssec=True, payload=1400)
    q.id = 0xabcd
    raw = shared.dns.raw_udp(q.to_wire())
    assert raw is not None
    a = dns.message.from_wire(raw)
    assert a.id == 0xabcd
    assert a.edns == 0 and addresses(a) == [W.WEB]


def test_dig_from_the_sandbox(shared):
    r = shared.dns.dig("+short", "allowed.test", "A")
    assert r.stdout.decode().split() == [W.WEB], r
    r = shared.dns.dig("denied.test", "A")
    assert b"status: NXDOMAIN" in r.stdout, r


# ---- denied names --------------------------------------------------------------------

@pytest.mark.parametrize("name,qtype", [("denied.test", "A"), ("denied.test", "AAAA"),
                                        ("unlisted.test", "A"), ("nosuch.example", "A"),
                                        ("denied.test", "HTTPS")])
def test_denied_name_nxdomain(shared, name, qtype):
    m = shared.dns.query(name, qtype)
    assert rcode(m) == "NXDOMAIN" and not m.answer


def test_denied_txt_query_never_reaches_upstream(shared, upstream):
    before = len(upstream.queries("denied.test"))
    for tcp in (False, True):
        m = shared.dns.query("denied.test", "TXT", tcp=tcp)
        assert rcode(m) == "NXDOMAIN" and not m.answer
        assert DENIED_TXT not in m.to_text()
    # A marker query that does go upstream: once dnsmasq logged it, it
    # would have logged the denied one too.
    marker = "marker-%d.allowed.test" % os.getpid()
    shared.dns.query(marker, "TXT")
    assert upstream.wait_query(marker, "TXT")
    assert len(upstream.queries("denied.test")) == before == 0
    line = dns_logs(shared, lambda x: x["host"] == "denied.test" and x["method"] == "TXT")[-1]
    assert line["decision"] == "deny" and line["rule"] == len(DNS_RULES)  # base rule 0
    assert line["upstream_ip"] is None
    assert line["status"] == 3 and line["answers"] is None


def test_refuse_with_refused(dns_sluice):
    p = dns_sluice(dns_policy(dns={"refuse_with": "refused"}))
    assert rcode(p.dns.query("denied.test")) == "REFUSED"
    assert rcode(p.dns.query("allowed.test")) == "NOERROR"


def test_any_refused(shared, upstream):
    m = shared.dns.query("allowed.test", "ANY")
    assert rcode(m) == "REFUSED" and not m.answer
    assert not upstream.queries("allowed.test", "ANY")


def test_cname_to_denied_name_is_denied(shared, upstream):
    # dnsmasq answers alias.test with a CNAME to denied.test and its address
    direct = DnsClient(shared.world, 53, UPSTREAM).query("alias.test", "A")
    assert "denied.test" in direct.to_text() and addresses(direct)
    m = shared.dns.query("alias.test", "A")
    assert rcode(m) == "NXDOMAIN" and not m.answer
    line = dns_logs(shared, lambda x: x["host"] == "alias.test")[-1]
    assert line["decision"] == "deny" and "denied.test" in line["reason"]
    assert line["upstream_ip"] == UPSTREAM


def test_report_mode_answers_denied_names(dns_sluice):
    p = dns_sluice(dns_policy(mode="report"))
    m = p.dns.query("denied.test", "A")
    assert rcode(m) == "NOERROR" and addresses(m) == [W.WEB]
    line = dns_logs(p, lambda x: x["host"] == "denied.test")[-1]
    assert line["decision"] == "would_deny"


# ---- answer checks ---------------------------------------------------------------------

def test_special_range_addresses_removed(shared):
    m = shared.dns.query("mixed.test", "A")
    assert rcode(m) == "NOERROR" and addresses(m) == [W.MIXED_PUB]


def test_only_special_addresses_refused(shared):
    m = shared.dns.query("metadata.test", "A")
    assert rcode(m) == "NXDOMAIN" and not m.answer
    line = dns_logs(shared, lambda x: x["host"] == "metadata.test")[-1]
    assert line["decision"] == "deny" and "link-local" in line["reason"]
    assert W.METADATA not in learned(shared) and W.PRIVATE not in learned(shared)


def test_ech_removed_from_https(shared):
    direct = DnsClient(shared.world, 53, UPSTREAM).query("svc.test", "HTTPS")
    assert "ech=" in direct.answer[0].to_text()  # the upstream does send ECH
    m = shared.dns.query("svc.test", "HTTPS")
    text = m.answer[0].to_text().replace('"', "")
    assert "ech=" not in text
    assert "alpn=h2" in text and "ipv4hint=192.0.2.10" in text and "ipv6hint=2001:db8:1::10" in text


# ---- TCP, truncation, upstream failure ------------------------------------------------------

def test_tcp_fallback_on_truncated_answer(shared, upstream):
    direct = DnsClient(shared.world, 53, UPSTREAM).query("big.test", "A", edns=False)
    assert truncated(direct)  # the premise: too big for 512 bytes
    before = metric(metrics_text(shared), "sluice_dns_tcp_fallbacks_total")
    # Over TCP the client gets every record: sluice asked again over TCP.
    m = shared.dns.query("big.test", "A", tcp=True, edns=False)
    assert rcode(m) == "NOERROR" and sorted(addresses(m)) == sorted(BIG_ADDRS)
    assert metric(metrics_text(shared), "sluice_dns_tcp_fallbacks_total") > before
    # Over UDP without EDNS the full answer does not fit: TC, nothing else.
    m = shared.dns.query("big.test", "A", edns=False)
    assert truncated(m) and not m.answer
    # dig retries over TCP by itself, as resolvers do.
    r = shared.dns.dig("+noedns", "big.test", "A")
    assert r.stdout.decode().count("\tA\t") == BIG_COUNT, r
    # With a large EDNS buffer the answer comes over UDP at once.
    m = shared.dns.query("big.test", "A", payload=4096)
    assert not truncated(m) and len(addresses(m)) == BIG_COUNT


def test_upstream_down_servfail_within_timeout(dns_sluice):
    p = dns_sluice(dns_policy(upstreams=[W.BLACKHOLE]), ["--dns-timeout", "500"])
    start = time.monotonic()
    m = p.dns.query("allowed.test", "A", timeout=20)
    elapsed = time.monotonic() - start
    assert rcode(m) == "SERVFAIL"
    assert elapsed < 10 * SLOW  # the per-try timeout, not the client's
    line = dns_logs(p, lambda x: x["host"] == "allowed.test")[-1]
    assert line["status"] == 2 and line["upstream_ip"] == W.BLACKHOLE
    assert "timeout" in line["reason"]
    assert metric(metrics_text(p), 'sluice_dns_upstream_errors_total{error="timeout"}') >= 1


def test_failover_in_order(dns_sluice):
    # a dropped upstream, one whose port 53 is closed (ICMP), then dnsmasq
    p = dns_sluice(dns_policy(upstreams=[W.BLACKHOLE, W.WEB + ":53", UPSTREAM]),
                   ["--dns-timeout", "500"])
    m = p.dns.query("allowed.test", "A", timeout=20)
    assert rcode(m) == "NOERROR" and addresses(m) == [W.WEB]
    line = dns_logs(p, lambda x: x["host"] == "allowed.test")[-1]
    assert line["upstream_ip"] == UPSTREAM
    text = metrics_text(p)
    # the closed port fails fast through ICMP, or (if the kernel rate-limits
    # ICMP) by the timeout: either way two failed tries before the answer
    failed = metric(text, 'sluice_dns_upstream_errors_total{error="timeout"}') + \
        metric(text, 'sluice_dns_upstream_errors_total{error="unreachable"}')
    assert metric(text, 'sluice_dns_upstream_errors_total{error="timeout"}') >= 1 and failed >= 2


# ---- malformed input -----------------------------------------------------------------------

def _hdr(id_=0x1111, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)


_Q = b"\x07allowed\x04test\x00\x00\x01\x00\x01"

# (bytes, expected rcode or None for no answer)
MALFORMED = [
    (b"", None),
    (b"\x12\x34\x01", None),                                   # shorter than a header
    (_hdr(flags=0x8100) + _Q, None),                           # a response
    (_hdr(qd=0), 1),                                           # no question
    (_hdr(qd=2) + _Q + _Q, 1),                                 # two questions
    (_hdr() + b"\x07allowed\x04te", 1),                        # cut in the name
    (_hdr() + b"\xc0\x0c\x00\x01\x00\x01", 1),                 # compression loop
    (_hdr() + b"\x41a\x00\x00\x01\x00\x01", 1),                # label type 0x40
    (_hdr() + b"\x07allowed\x04test\x00\x00", 1),              # no class
    (_hdr(an=1) + _Q + _Q + b"\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01", 1),
    (_hdr(ar=1) + _Q + _Q + b"\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01", 1),  # non-OPT extra
    (_hdr(ar=3) + _Q, 1),
    (_hdr(flags=0x2800) + _Q, 4),                              # opcode UPDATE
    (_hdr() + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63
     + b"\x3f" + b"d" * 63 + b"\x00\x00\x01\x00\x01", 1),      # name over 255 bytes
]


def test_malformed_packets_formerr_and_still_serving(shared):
    for data, want in MALFORMED:
        raw = shared.dns.raw_udp(data, timeout=1.0 if want is None else 5.0)
        if want is None:
            assert raw is None, data
            continue
        assert raw is not None and len(raw) >= 12, data
        assert raw[:2] == data[:2] and raw[2] & 0x80, raw
        assert raw[3] & 0x0f == want, (data, raw)
        # over TCP too
        raw = shared.dns.raw_tcp(data)
        assert raw is not None and raw[3] & 0x0f == want, (data, raw)
    # and it keeps answering
    assert addresses(shared.dns.query("allowed.test", "A")) == [W.WEB]
    assert metric(metrics_text(shared), "sluice_dns_malformed_total") >= len(MALFORMED) - 1
    assert shared.proc.poll() is None


def test_fuzz_corpus_packets_do_not_stop_the_filter(shared):
    corpus = os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus", "dns")
    for name in sorted(os.listdir(corpus)):
        with open(os.path.join(corpus, name), "rb") as f:
            data = f.read()
        shared.dns.raw_udp(data, timeout=0.5)
        shared.dns.raw_udp(data[1:], timeout=0.5)  # the answers, minus the selector byte
    assert addresses(shared.dns.query("allowed.test", "A")) == [W.WEB]


# ---- limits -------------------------------------------------------------------------------

def test_rate_limit(dns_sluice):
    p = dns_sluice(args=["--dns-rate", "5", "--dns-burst", "5"])
    results = [rcode(p.dns.query("allowed.test", "A")) for _ in range(30)]
    assert results.count("REFUSED") > 0 and results.count("NOERROR") >= 5
    assert metric(metrics_text(p), "sluice_dns_rate_limited_total") == results.count("REFUSED")
    line = dns_logs(p, lambda x: x["status"] == 5)[-1]
    assert "rate" in line["reason"]


def test_name_caps(dns_sluice, upstream):
    p = dns_sluice(args=["--dns-max-name", "40", "--dns-max-labels", "5"])
    long_name = "x" * 30 + ".data.allowed.test"
    deep_name = "a.b.c.d.e.allowed.test"
    assert rcode(p.dns.query(long_name, "TXT")) == "REFUSED"
    assert rcode(p.dns.query(deep_name, "TXT")) == "REFUSED"
    assert rcode(p.dns.query("ok.allowed.test", "TXT")) in ("NOERROR", "NXDOMAIN")
    assert not upstream.queries(long_name) and not upstream.queries(deep_name)
    text = metrics_text(p)
    assert metric(text, 'sluice_dns_limit_refused_total{limit="name_length"}') == 1
    assert metric(text, 'sluice_dns_limit_refused_total{limit="labels"}') == 1


# ---- learned addresses ----------------------------------------------------------------------

def test_learned_addresses_before_the_answer_and_expiry(dns_sluice):
    p = dns_sluice(args=["--dns-ttl-min", "1", "--dns-ttl-max", "2"])
    assert learned(p) == {}
    assert addresses(p.dns.query("allowed.test", "A")) == [W.WEB]
    # no wait: published before the answer was sent
    got = learned(p)
    assert set(got) == {W.WEB}
    assert got[W.WEB]["name"] == "allowed.test" and got[W.WEB]["family"] == "ipv4"
    assert 1 <= got[W.WEB]["ttl"] <= 2
    p.dns.query("allowed.test", "AAAA")
    assert W.WEB6 in learned(p)
    deadline = time.monotonic() + 10 * SLOW
    while learned(p) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert learned(p) == {}, "learned addresses did not expire"


def test_learned_ttl_clamped_and_denied_not_learned(shared):
    shared.dns.query("allowed.test", "A")        # dnsmasq's TTL is 1 s
    shared.dns.query("denied.test", "A")
    shared.dns.query("mixed.test", "A")
    got = learned(shared)
    assert got[W.WEB]["ttl"] == 30               # --dns-ttl-min default
    assert W.MIXED_PUB in got and got[W.MIXED_PUB]["name"] == "mixed.test"
    assert W.PRIVATE not in got
    for e in got.values():
        assert e["name"] != "denied.test"


def test_learned_endpoint_needs_token_and_dns(shared, sluice):
    assert shared.admin("GET", "/dns/learned", token=None).status == 401
    plain = sluice()
    r = plain.admin("GET", "/dns/learned")
    assert r.status == 404 and b"--dns" in r.body


# ---- logs, metrics, status ---------------------------------------------------------------------

def test_log_line_fields(shared):
    shared.dns.query("allowed.test", "AAAA")
    x = dns_logs(shared, lambda x: x["host"] == "allowed.test" and x["method"] == "AAAA")[-1]
    assert x["client"] == "127.0.0.1" and x["decision"] == "allow" and x["rule"] == 1 + len(DNS_RULES)
    assert x["answers"] == [W.WEB6] and x["upstream_ip"] == UPSTREAM and x["status"] == 0
    assert isinstance(x["ms"], int) and x["bytes_up"] > 12 and x["bytes_down"] > 12
    assert x["port"] is None and x["path"] is None


def test_metrics(shared):
    shared.dns.query("allowed.test", "A")
    shared.dns.query("denied.test", "TXT")
    text = metrics_text(shared)
    assert metric(text, 'sluice_dns_queries_total{qtype="A",outcome="allow"}') >= 1
    assert metric(text, 'sluice_dns_queries_total{qtype="TXT",outcome="deny"}') >= 1
    assert metric(text, 'sluice_decisions_total{kind="dns",outcome="deny"}') >= 1
    assert metric(text, "sluice_dns_upstream_latency_seconds_count") >= 1
    assert metric(text, "sluice_dns_learned_total") >= 1
    assert metric(text, "sluice_dns_ech_removed_total") is not None


def test_status(shared):
    s = json.loads(shared.admin("GET", "/status").body)
    assert s["enforcement_mode"] == "dns+proxy"
    assert s["dns"]["listen"] == "127.0.0.1:%d" % shared.dns.port
    assert s["dns"]["upstream_mark"] == {"mark": "0x5c1ce", "applied": True, "error": None}


def test_status_without_dns(proxy):
    s = json.loads(proxy.admin("GET", "/status").body)
    assert s["enforcement_mode"] == "proxy-only" and s["dns"] is None


def test_upstream_packets_carry_the_mark(dns_sluice, world):
    table = textwrap.dedent("""\
        table inet sluice_dns_test {
          chain out {
            type filter hook output priority 0; policy accept;
            meta mark 0x0005c1ce udp dport 53 counter
            meta mark != 0x0005c1ce ip daddr %s udp dport 53 counter
          }
        }
        """) % UPSTREAM
    subprocess.run(["ip", "netns", "exec", world.sbx, "nft", "-f", "-"], input=table.encode(),
                   check=True, timeout=10)
    try:
        p = dns_sluice()
        for _ in range(3):
            assert rcode(p.dns.query("allowed.test", "A")) == "NOERROR"
        out = subprocess.run(["ip", "netns", "exec", world.sbx, "nft", "list", "table", "inet",
                              "sluice_dns_test"], stdout=subprocess.PIPE, timeout=10,
                             check=True).stdout.decode()
        counts = [int(n) for n in re.findall(r"counter packets (\d+)", out)]
        assert counts[0] >= 3 and counts[1] == 0, out
    finally:
        subprocess.run(["ip", "netns", "exec", world.sbx, "nft", "delete", "table", "inet",
                        "sluice_dns_test"], timeout=10)


class UnprivilegedProxy(Proxy):
    """sluice without CAP_NET_ADMIN and CAP_NET_RAW (since Linux 5.17
    either lets a process set SO_MARK), dropped from the bounding set."""

    def command(self):
        return ["setpriv", "--bounding-set=-net_admin,-net_raw",
                "--inh-caps=-net_admin,-net_raw", "--"] + super().command()


def test_mark_without_cap_net_admin(world, upstream):
    port = world.free_port()
    p = UnprivilegedProxy(world, dns_policy(), ["--dns", "127.0.0.1:%d" % port], "dns-nocap")
    p.start()
    try:
        p.dns = DnsClient(world, port)
        assert addresses(p.dns.query("allowed.test", "A")) == [W.WEB]  # keeps working
        mark = json.loads(p.admin("GET", "/status").body)["dns"]["upstream_mark"]
        assert mark["applied"] is False and "CAP_NET_ADMIN" in mark["error"]
        warn = p.wait_log(lambda x: x.get("level") == "warning" and "SO_MARK" in x.get("msg", ""))
        assert warn and "CAP_NET_ADMIN" in warn[0]["detail"]
    finally:
        p.stop()
    assert not p.problems() and p.returncode == 0


# ---- start-up and lifecycle ----------------------------------------------------------------------

def test_dns_needs_upstream_in_policy(dns_sluice):
    p = dns_sluice(base_policy(), start=False)
    r = subprocess.run(["ip", "netns", "exec", p.world.sbx] + p.command(), timeout=30 * SLOW,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 2
    assert b"dns" in r.stderr and b"upstream" in r.stderr and p.policy_file.encode() in r.stderr


def test_dns_port_in_use_is_exit_1(dns_sluice, world):
    p = dns_sluice(start=False)

    def hold():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", p.dns.port))
        return s
    s = W.in_netns(world.sbx, hold)
    try:
        r = subprocess.run(["ip", "netns", "exec", world.sbx] + p.command(), timeout=30 * SLOW,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        s.close()
    assert r.returncode == 1
    assert b"cannot listen" in r.stderr and str(p.dns.port).encode() in r.stderr


def test_dns_options_need_dns(sluice):
    p = sluice(start=False, args=["--dns-rate", "10"])
    r = subprocess.run(["ip", "netns", "exec", p.world.sbx] + p.command(), timeout=30 * SLOW,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 2 and b"--dns" in r.stderr


def test_reload_without_upstream_keeps_policy(dns_sluice):
    p = dns_sluice()
    p.write_policy(base_policy())
    r = p.reload()
    assert r.status == 422 and b"dns.upstream" in r.body
    assert addresses(p.dns.query("allowed.test", "A")) == [W.WEB]


def test_reload_changes_dns_decisions(dns_sluice):
    p = dns_sluice()
    assert rcode(p.dns.query("unlisted.test")) == "NXDOMAIN"
    pol = dns_policy()
    pol["rules"].insert(0, {"allow": "unlisted.test"})
    p.write_policy(pol)
    assert p.reload().status == 200
    assert addresses(p.dns.query("unlisted.test")) == [W.WEB]


def test_sigterm_stops_the_filter(dns_sluice):
    p = dns_sluice()
    assert rcode(p.dns.query("allowed.test")) == "NOERROR"
    assert p.stop(signal.SIGTERM) == 0
    assert not p.problems()
