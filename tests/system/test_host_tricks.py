"""Every host trick of SPEC §2 is refused with 400, for CONNECT and for
absolute-form requests, even under a policy that allows every name.

Sent byte-exact: curl and friends would normalise these before sending.
A trick that slipped through would show as 200 (converted and allowed) or
403 (converted to loopback and refused later) instead of 400.
"""

import pytest

from conftest import SLOW, Proxy, _stop_all, base_policy

ALLOW_ALL = base_policy([{"allow": "*", "ports": [80, 443]},
                         {"allow": "192.0.2.0/24", "ports": [80, 443]},
                         {"allow": "2001:db8::/32", "ports": [80, 443]}])
ALLOW_ALL["rules"] = [r for r in ALLOW_ALL["rules"] if "deny" not in r]

TRICKS = [
    # numeric, octal, hex and short IPv4 forms
    ("integer loopback", b"2130706433"),
    ("integer doc address", b"3221225994"),
    ("hex integer", b"0x7f000001"),
    ("hex short", b"0x7f.1"),
    ("hex octet", b"0xc0.0.2.10"),
    ("octal octet", b"0300.0.2.10"),
    ("octal loopback", b"0177.0.0.1"),
    ("leading zero octet", b"192.0.2.010"),
    ("short two parts", b"127.1"),
    ("short three parts", b"192.0.2"),
    ("hex in third octet", b"192.0.0x2.10"),
    # userinfo
    ("userinfo", b"user@allowed.test"),
    ("userinfo with password", b"user:pass@allowed.test"),
    ("userinfo naming another host", b"allowed.test@denied.test"),
    # percent-encoding
    ("percent in name", b"allowed%2etest"),
    ("percent first letter", b"%61llowed.test"),
    ("percent nul", b"allowed.test%00.evil.test"),
    # backslash
    ("backslash", b"allowed.test\\@denied.test"),
    ("backslash in label", b"allowed\\.test"),
    # NUL and control characters
    ("nul", b"allowed.test\x00.evil.test"),
    ("control char", b"allowed\x01.test"),
    ("vertical tab", b"allowed.test\x0b"),
    ("delete char", b"allowed\x7f.test"),
    # brackets around a name
    ("bracketed name", b"[allowed.test]"),
    ("bracketed ipv4", b"[192.0.2.10]"),
    # over-long labels and names
    ("label of 64", b"a" * 64 + b".test"),
    ("name of 254+", b".".join([b"a" * 63] * 4) + b".test"),
    # non-ASCII that is not valid IDNA input
    ("invalid utf-8", b"\xff\xfe.test"),
    ("empty label", b"allowed..test"),
]

# Forms that look odd but are valid: the control group (must not be 400).
VALID = [
    ("upper case", b"ALLOWED.TEST", 200),
    ("trailing dot", b"allowed.test.", 200),
    ("plain doc address", b"192.0.2.10", 200),
    ("bracketed ipv6", b"[2001:db8:1::10]", 200),
]


@pytest.fixture(scope="module")
def allow_all(world):
    p = Proxy(world, ALLOW_ALL, (), "allow-all")
    p.start()
    yield p
    _stop_all([p])


def connect_raw(proxy, host, port=443):
    with proxy.conn() as c:
        c.send(b"CONNECT " + host + b":%d HTTP/1.1\r\nHost: " % port + host +
               b":%d\r\n\r\n" % port)
        return c.read_response("CONNECT"), c


def get_raw(proxy, host, marker):
    with proxy.conn() as c:
        c.send(b"GET http://" + host + b"/small?" + marker + b" HTTP/1.1\r\nHost: allowed.test\r\n"
               b"Connection: close\r\n\r\n")
        return c.read_response(), c


def ids(table):
    return [t[0].replace(" ", "-") for t in table]


@pytest.mark.parametrize("name,host", TRICKS, ids=ids(TRICKS))
def test_connect_host_trick_refused(allow_all, name, host):
    r, c = connect_raw(allow_all, host)
    assert r.status == 400, r


@pytest.mark.parametrize("name,host", TRICKS, ids=ids(TRICKS))
def test_absolute_form_host_trick_refused(allow_all, world, name, host):
    marker = b"trick-" + name.replace(" ", "-").encode()
    r, c = get_raw(allow_all, host, marker)
    assert r.status == 400, r
    assert not [x for x in world.access_lines() if marker.decode() in x["request"]]


@pytest.mark.parametrize("name,host,status", VALID, ids=ids(VALID))
def test_valid_host_forms(allow_all, name, host, status):
    r, c = get_raw(allow_all, host, b"valid")
    assert r.status == status, r
    r, c = connect_raw(allow_all, host)
    assert r.status == status, r


def test_trick_connection_is_closed(allow_all):
    with allow_all.conn() as c:
        c.send(b"CONNECT 2130706433:443 HTTP/1.1\r\nHost: 2130706433:443\r\n\r\n")
        assert c.read_response("CONNECT").status == 400
        assert c.closed_within(10 * SLOW)


def test_trick_logged_as_refusal(allow_all):
    r, c = get_raw(allow_all, b"0x7f.1", b"logged")
    assert r.status == 400
    assert not [x for x in allow_all.logs() if x.get("decision") == "allow"
                and "0x7f" in str(x.get("host"))]


def test_tricks_never_resolved(allow_all, world):
    # Numeric forms are refused as text: they never reach the resolver.
    for host in (b"2130706433", b"0x7f.1", b"127.1", b"0300.0.2.10"):
        get_raw(allow_all, host, b"resolve-check")
        connect_raw(allow_all, host)
    with open(world.dns_log, errors="replace") as f:
        queries = [x for x in f if "query[" in x]
    for name in ("2130706433", "0x7f.1", "127.1", "0300.0.2.10"):
        assert not [q for q in queries if " %s " % name in q], name
