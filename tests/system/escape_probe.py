"""Escape attempts, run as the workload inside a pod namespace.

    python3 escape_probe.py '<json list of probes>'

prints one JSON object {name: result}. Every probe runs at once on its own
thread with a short timeout, so a run costs a few seconds whatever the
count. A result is "ok" (the attempt got through and got an answer),
"sent" (a datagram or frame left the socket without an error; whether it
arrived is for the receiver to say), or "fail: <why>".

Probe kinds:
  http    {"host", "port", "mark"?}  GET / on a raw socket; ok on any HTTP answer
  tcp     {"host", "port"}           connect, ok when the server's greeting arrives
  udp     {"host", "port", "payload"}
  icmp    {"host"}                   ICMP (or ICMPv6) datagram-socket echo
  dns     {"server", "qname"}         one UDP query; "rcode:ADDRS" or fail
  packet  {"ifname", "dst_mac", "src", "dst", "port", "payload", "mark"?}
          an Ethernet frame carrying IPv4/UDP, sent with AF_PACKET
"""

import json
import os
import socket
import struct
import sys
import threading

TIMEOUT = 2.5


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def probe_http(p):
    with socket.socket(family(p["host"]), socket.SOCK_STREAM) as s:
        if p.get("mark"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, p["mark"])
        s.settimeout(TIMEOUT)
        s.connect((p["host"], p["port"]))
        s.sendall(b"GET /small HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        data = s.recv(64)
    return "ok" if data.startswith(b"HTTP/1.") else "fail: answer %r" % data[:20]


def probe_tcp(p):
    with socket.socket(family(p["host"]), socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect((p["host"], p["port"]))
        data = s.recv(64)
    return "ok" if data else "fail: no greeting"


def probe_udp(p):
    with socket.socket(family(p["host"]), socket.SOCK_DGRAM) as s:
        s.sendto(p["payload"].encode(), (p["host"], p["port"]))
    return "sent"


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def probe_icmp(p):
    v6 = ":" in p["host"]
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    with socket.socket(family(p["host"]), socket.SOCK_DGRAM, proto) as s:
        s.settimeout(TIMEOUT)
        kind = 128 if v6 else 8
        body = b"sluice-probe"
        msg = struct.pack("!BBHHH", kind, 0, 0, 0, 1) + body
        if not v6:
            msg = struct.pack("!BBHHH", kind, 0, checksum(msg), 0, 1) + body
        s.sendto(msg, (p["host"], 0))
        data = s.recv(256)
    return "ok" if data[:1] in (b"\x00", b"\x81") else "fail: %r" % data[:4]


def probe_dns(p):
    import dns.message
    import dns.query
    import dns.rcode

    q = dns.message.make_query(p["qname"], "A")
    r = dns.query.udp(q, p["server"], timeout=TIMEOUT)
    addrs = sorted(str(rr) for rrset in r.answer for rr in rrset)
    return "%s:%s" % (dns.rcode.to_text(r.rcode()), ",".join(addrs))


def probe_packet(p):
    payload = p["payload"].encode()
    src = socket.inet_aton(p["src"])
    dst = socket.inet_aton(p["dst"])
    udp = struct.pack("!HHHH", 40000, p["port"], 8 + len(payload), 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        if p.get("mark"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, p["mark"])
        s.bind((p["ifname"], 0))
        mac = bytes.fromhex(p["dst_mac"].replace(":", ""))
        s.send(mac + s.getsockname()[4] + b"\x08\x00" + hdr + udp)
    return "sent"


KINDS = {"http": probe_http, "tcp": probe_tcp, "udp": probe_udp, "icmp": probe_icmp,
         "dns": probe_dns, "packet": probe_packet}


def main():
    probes = json.loads(sys.argv[1])
    results = {}

    def run(p):
        try:
            results[p["name"]] = KINDS[p["kind"]](p)
        except Exception as e:  # the result is the error
            results[p["name"]] = "fail: %s" % (e.__class__.__name__ + ": " + str(e))

    threads = [threading.Thread(target=run, args=(p,)) for p in probes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 3)
    for p in probes:
        results.setdefault(p["name"], "fail: hung")
    print(json.dumps(results, sort_keys=True))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
