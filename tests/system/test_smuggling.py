"""Request smuggling shapes through the proxy port (issue 2, item 3,
"strict parsing"): each is answered 400/414/431/501 and the connection is
closed, and nothing of it reaches the upstream."""

import pytest

import rawhttp
from conftest import SLOW

E400 = {400}
E_TE = {400, 501}   # unknown transfer coding: 501 per RFC 9112, 400 accepted


def req(head_lines, body=b"", target=None, method="POST", version="HTTP/1.1"):
    target = target or "http://echo.test/echo?MARK"
    head = "%s %s %s\r\n" % (method, target, version)
    return head.encode() + b"".join(x + b"\r\n" for x in head_lines) + b"\r\n" + body


H = b"Host: echo.test"

SHAPES = [
    ("cl and te", req([H, b"Content-Length: 5", b"Transfer-Encoding: chunked"],
                      b"0\r\n\r\n"), E400),
    ("te and cl", req([H, b"Transfer-Encoding: chunked", b"Content-Length: 5"],
                      b"0\r\n\r\n"), E400),
    ("two differing cl", req([H, b"Content-Length: 5", b"Content-Length: 6"], b"hello!"), E400),
    ("cl list differing", req([H, b"Content-Length: 5, 6"], b"hello!"), E400),
    ("cl negative", req([H, b"Content-Length: -1"]), E400),
    ("cl plus sign", req([H, b"Content-Length: +5"], b"hello"), E400),
    ("cl hex", req([H, b"Content-Length: 0x5"], b"hello"), E400),
    ("cl inner space", req([H, b"Content-Length: 1 0"], b"helloworld"), E400),
    ("cl letters", req([H, b"Content-Length: five"], b"hello"), E400),
    ("cl empty", req([H, b"Content-Length: "]), E400),
    ("cl overflow", req([H, b"Content-Length: 99999999999999999999999"]), {400, 413}),
    ("te unknown", req([H, b"Transfer-Encoding: gzip"], b"xxxx"), E_TE),
    ("te obfuscated word", req([H, b"Transfer-Encoding: xchunked"], b"0\r\n\r\n"), E_TE),
    ("te chunked twice", req([H, b"Transfer-Encoding: chunked, chunked"], b"0\r\n\r\n"), E_TE),
    ("te chunked not last", req([H, b"Transfer-Encoding: chunked, gzip"], b"0\r\n\r\n"), E_TE),
    ("te vertical tab", req([H, b"Transfer-Encoding: \x0bchunked"], b"0\r\n\r\n"), E_TE),
    ("te two headers", req([H, b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"],
                           b"0\r\n\r\n"), E_TE),
    ("te name with space", req([H, b"Transfer-Encoding : chunked"], b"0\r\n\r\n"), E400),
    ("obs-fold", req([H, b"X-A: 1", b" folded"], method="GET"), E400),
    ("obs-fold tab", req([H, b"X-A: 1", b"\tfolded"], method="GET"), E400),
    ("bare lf", b"GET http://echo.test/echo?MARK HTTP/1.1\nHost: echo.test\n\n", E400),
    ("bare lf in headers", b"GET http://echo.test/echo?MARK HTTP/1.1\r\nHost: echo.test\n"
                           b"X-A: 1\r\n\r\n", E400),
    ("bare cr", req([H, b"X-A: 1\rX-B: 2"], method="GET"), E400),
    ("space before colon", req([b"Host : echo.test"], method="GET"), E400),
    ("tab before colon", req([H, b"X-A\t: 1"], method="GET"), E400),
    ("empty header name", req([H, b": value"], method="GET"), E400),
    ("nul in value", req([H, b"X-A: a\x00b"], method="GET"), E400),
    ("control char in value", req([H, b"X-A: a\x01b"], method="GET"), E400),
    ("control char in name", req([H, b"X-\x01A: 1"], method="GET"), E400),
    ("header without colon", req([H, b"X-A 1"], method="GET"), E400),
    ("two host headers", req([H, b"Host: denied.test"], method="GET"), E400),
    ("bad version", req([H], method="GET", version="HTTP/1.1x"), {400, 505}),
    ("lowercase version", req([H], method="GET", version="http/1.1"), {400, 505}),
    ("space in target", req([H], method="GET", target="http://echo.test/a b?MARK"), E400),
    ("two spaces", b"GET  http://echo.test/echo?MARK HTTP/1.1\r\nHost: echo.test\r\n\r\n", E400),
    ("method with ctl", b"G\x01T http://echo.test/echo?MARK HTTP/1.1\r\n"
                        b"Host: echo.test\r\n\r\n", {400, 501}),
    ("request line oversized", req([H], method="GET",
                                   target="http://echo.test/echo?MARK" + "a" * 100000), {414}),
    ("header oversized", req([H, b"X-Big: " + b"b" * 100000], method="GET"), {431}),
    ("too many headers", req([H] + [b"X-N%d: v" % i for i in range(3000)], method="GET"), {431}),
]


def ids(table):
    return [t[0].replace(" ", "-") for t in table]


@pytest.mark.parametrize("name,data,expect", SHAPES, ids=ids(SHAPES))
def test_smuggling_shape_refused_and_closed(shared_proxy, world, name, data, expect):
    mark = "smuggle-" + name.replace(" ", "-")
    data = data.replace(b"MARK", mark.encode())
    before = len(world.upstream_lines())
    with shared_proxy.conn() as c:
        c.send(data)
        r = c.read_response()
        assert r.status in expect, r
        assert c.closed_within(10 * SLOW), "connection left open after %d" % r.status
    assert not [x for x in world.upstream_lines()[before:] if mark in x]


def test_chunked_body_then_pipelined_denied_request(shared_proxy, world):
    # A request after a chunked body is a request of its own, decided again.
    data = (b"POST http://echo.test/echo HTTP/1.1\r\nHost: echo.test\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            b"GET http://denied.test/small?after-chunked HTTP/1.1\r\nHost: denied.test\r\n\r\n")
    with shared_proxy.conn() as c:
        c.send(data)
        assert c.read_response().status == 200
        assert c.read_response().status == 403
    assert not [x for x in world.access_lines() if "after-chunked" in x["request"]]


def test_body_with_embedded_request_is_only_body(shared_proxy, world):
    # Content-Length covers what looks like a request: it is body, sent
    # upstream as such, never parsed by the proxy.
    inner = b"GET http://denied.test/small?inside-body HTTP/1.1\r\nHost: denied.test\r\n\r\n"
    data = rawhttp.request_bytes("POST", "http://echo.test/echo", "echo.test",
                                 [("Content-Length", str(len(inner)))], inner)
    with shared_proxy.conn() as c:
        c.send(data)
        r = c.read_response()
        assert r.status == 200
        assert b'"body_len": %d' % len(inner) in r.body
    assert not [x for x in world.access_lines() if "inside-body" in x["request"]]


def test_valid_request_after_refusals_still_served(shared_proxy):
    r = shared_proxy.http("GET", "http://allowed.test/small")
    assert r.status == 200


INNER = (b"GET http://allowed.test/small?MARK HTTP/1.1\r\nHost: allowed.test\r\n\r\n")


@pytest.mark.parametrize("framing", ["content-length", "chunked", "expect-100"])
def test_denied_request_body_never_parsed_as_request(shared_proxy, world, framing):
    # The body of a refused request is skipped or the connection closed; it
    # is never read as the next request on a kept-alive connection.
    mark = "inside-denied-body-" + framing
    inner = INNER.replace(b"MARK", mark.encode())
    if framing == "chunked":
        hdrs = [("Transfer-Encoding", "chunked")]
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
    else:
        hdrs = [("Content-Length", str(len(inner)))]
        if framing == "expect-100":
            hdrs.append(("Expect", "100-continue"))
        body = inner
    with shared_proxy.conn() as c:
        c.send(rawhttp.request_bytes("POST", "http://denied.test/echo", "denied.test", hdrs))
        if framing != "expect-100":
            c.send(body)
        r = c.read_response()
        assert r.status == 403
        if framing == "expect-100":
            try:
                c.send(body)
            except OSError:
                pass
        # Whatever the proxy does next, our own next request gets the next
        # answer, or the connection is closed.
        try:
            c.send(rawhttp.request_bytes("GET", "http://other.test/whoami", "other.test"))
            r2 = c.read_response()
            assert r2.status == 200 and r2.body == b"198.51.100.10 other.test\n", r2
        except (rawhttp.Closed, OSError):
            pass
    assert not [x for x in world.access_lines() if mark in x["request"]]


def test_http10_request_served_and_closed(shared_proxy):
    with shared_proxy.conn() as c:
        c.send(b"GET http://allowed.test/small HTTP/1.0\r\nHost: allowed.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello from the sluice test world\n"
        assert c.closed_within(10 * SLOW)


@pytest.mark.parametrize("authority", ["allowed.test:0", "allowed.test:65536",
                                       "allowed.test:-1", "allowed.test:443abc",
                                       "allowed.test:+443", "allowed.test:4 43"])
def test_bad_ports_refused(shared_proxy, authority):
    with shared_proxy.conn() as c:
        c.send(rawhttp.request_bytes("CONNECT", authority, authority))
        assert c.read_response("CONNECT").status == 400
    r = shared_proxy.http("GET", "http://%s/small" % authority, host="allowed.test")
    assert r.status == 400
