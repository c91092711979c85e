"""Special ranges after DNS (SPEC §2): a name the policy allows that
resolves into a special range not in reach_ranges is refused with 403
naming the range, and nothing reaches the test hosts that really exist
there (169.254.169.254 and 10.66.0.10 inside the world's inet namespace).
A name with public and private addresses is dialled on the public one only.
"""

import pytest

import rawhttp
import world as W
from conftest import base_policy

# name -> words of which the 403 body must contain one (the range it hit)
PRIVATE_NAMES = [
    ("metadata.test", ("169.254", "link-local", "link local")),
    ("private.test", ("10.0.0.0/8", "private", "rfc1918", "rfc 1918")),
]


def hits_for(world, host):
    return [x for x in world.special_hits() if x["host"] == host]


@pytest.mark.parametrize("name,words", PRIVATE_NAMES)
def test_http_to_name_in_special_range(proxy, world, name, words):
    r = proxy.http("GET", "http://%s/whoami" % name)
    assert r.status == 403, r
    assert r.header("X-Sluice-Decision") == "deny"
    assert name in r.text
    assert any(w in r.text.lower() for w in words), r.text
    assert hits_for(world, name) == []


@pytest.mark.parametrize("name,words", PRIVATE_NAMES)
def test_connect_to_name_in_special_range(proxy, world, name, words):
    c, r = proxy.tunnel("%s:443" % name)
    c.close()
    assert r.status == 403, r
    assert any(w in r.text.lower() for w in words), r.text
    assert hits_for(world, name) == []


@pytest.mark.parametrize("name", ["metadata.test", "private.test"])
def test_special_range_refusal_is_logged(proxy, name):
    proxy.http("GET", "http://%s/whoami" % name)
    lines = proxy.wait_log(lambda x: x.get("host") == name)
    assert lines and lines[0]["decision"] == "deny"
    assert lines[0].get("upstream_ip") in (None, "", "-")


@pytest.mark.parametrize("name,public", [
    ("mixed.test", W.MIXED_PUB),
    ("mixed6.test", W.MIXED_PUB6),
    ("metamixed.test", W.MIXED_PUB),
])
def test_mixed_name_dials_only_public(proxy, world, name, public):
    # Several rounds, so a resolver that rotates its answers would pick the
    # private address at least once if the proxy dialled unchecked ones.
    for i in range(8):
        r = proxy.http("GET", "http://%s/whoami" % name)
        assert r.status == 200, r
        assert r.body == ("%s %s\n" % (public, name)).encode()
        c, r = proxy.tunnel("%s:443" % name)
        with c:
            assert r.status == 200
            c.start_tls(name, world.ca_pem)
            c.send(rawhttp.request_bytes("GET", "/whoami", name, [("Connection", "close")]))
            assert c.read_response().body == ("%s %s\n" % (public, name)).encode()
    lines = proxy.wait_log(lambda x: x.get("host") == name, count=16)
    assert len(lines) == 16
    assert {x["upstream_ip"] for x in lines} == {public}
    assert hits_for(world, name) == []


def test_reach_ranges_lets_a_range_in(sluice, world):
    # The same name works once the operator lists its range; this proves the
    # 403 above comes from the range check, not from something else.
    p = sluice(base_policy(reach_ranges=W.DOC_RANGES + ["10.66.0.0/16"]))
    r = p.http("GET", "http://private.test/whoami")
    assert r.status == 200 and r.body == b"10.66.0.10 private.test\n"
    # Clean the expected hit so the session-wide leak check stays meaningful.
    with open(world.access_log, "r+") as f:
        keep = [x for x in f if not x.startswith(W.PRIVATE + " ")]
        f.seek(0)
        f.writelines(keep)
        f.truncate()
    r = p.http("GET", "http://metadata.test/whoami")
    assert r.status == 403


def test_documentation_ranges_refused_without_reach_ranges(sluice, world):
    p = sluice(base_policy(reach_ranges=[]))
    before = len(world.access_lines())
    r = p.http("GET", "http://allowed.test/small")
    assert r.status == 403
    c, r = p.tunnel("allowed.test:443")
    c.close()
    assert r.status == 403
    assert len(world.access_lines()) == before


# IP literals in special ranges, under a policy that allows every name and
# the documentation ranges by CIDR: refused (403, or 400 where the form is
# malformed), never dialled.
LITERALS = [
    "169.254.169.254", "10.66.0.10", "127.0.0.1", "0.0.0.0", "100.64.0.1",
    "168.63.129.16", "224.0.0.1", "255.255.255.255",
    "[::1]", "[::]", "[fe80::1]", "[fd00:ec2::254]", "[fc00::1]", "[ff02::1]",
    "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "[::ffff:10.66.0.10]",
    "[::169.254.169.254]", "[64:ff9b::a9fe:a9fe]", "[64:ff9b::10.66.0.10]",
    "[2002:a9fe:a9fe::1]", "[2002:a42:a::1]", "[2001:0:4136:e378:8000:63bf:56bd:5601]",
]


@pytest.fixture
def allow_everything(sluice):
    return sluice(base_policy([{"allow": "*", "ports": [80, 443]},
                               {"allow": "192.0.2.0/24", "ports": [80, 443]},
                               {"allow": "2001:db8::/32", "ports": [80, 443]}]))


@pytest.mark.parametrize("literal", LITERALS)
def test_special_literal_refused(allow_everything, world, literal):
    before = len(world.special_hits())
    r = allow_everything.http("GET", "http://%s/whoami" % literal)
    assert r.status in (400, 403), r
    c, r = allow_everything.tunnel("%s:443" % literal)
    c.close()
    assert r.status in (400, 403), r
    assert len(world.special_hits()) == before
