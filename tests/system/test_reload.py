"""Policy reload (SPEC §1, §4): SIGHUP and POST /reload under traffic lose no
request; an invalid policy keeps the old one, is logged, and is counted."""

import json
import signal
import threading
import time

import world as W
from conftest import SLOW, base_policy
from test_admin import metrics, policy_hash, status_doc

REQUESTS = 1000
MAX_RELOADS = 60


def policy_variant(i):
    # Both variants allow allowed.test; they differ elsewhere so that each
    # reload really installs a different policy.
    p = base_policy()
    if i % 2:
        p["rules"].insert(0, {"deny": "other.test", "reason": "variant %d" % i})
    return p


def test_reload_under_traffic_loses_nothing(proxy):
    failures = []
    done = []

    def traffic():
        for i in range(REQUESTS):
            try:
                if i % 3 == 2:
                    r = proxy.https("allowed.test", "/small", timeout=20 * SLOW)
                else:
                    r = proxy.http("GET", "http://allowed.test/small?n=%d" % i,
                                   timeout=20 * SLOW)
                if r.status != 200 or r.body != W.SMALL_BODY:
                    failures.append((i, r.status, r.body[:200]))
            except Exception as e:  # any exception is a lost request
                failures.append((i, repr(e)))
            done.append(i)

    t = threading.Thread(target=traffic)
    t.start()
    reloads = []
    while t.is_alive() and len(reloads) < MAX_RELOADS:
        proxy.write_policy(policy_variant(len(reloads)))
        if len(reloads) % 2:
            proxy.send_signal(signal.SIGHUP)
            reloads.append("hup")
        else:
            r = proxy.reload()
            reloads.append(r.status)
        time.sleep(0.03)
    t.join(300 * SLOW)
    assert not t.is_alive()
    assert len(done) == REQUESTS
    assert failures == []
    assert [x for x in reloads if x not in ("hup", 200)] == []
    assert len(reloads) >= 4, "traffic ended before the reloads could overlap it"
    assert proxy.proc.poll() is None


def test_tunnel_survives_reload(proxy):
    c, r = proxy.tunnel("allowed.test:443")
    with c:
        assert r.status == 200
        c.start_tls("allowed.test", proxy.world.ca_pem)
        c.send(b"GET /small HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        assert c.read_response().body == W.SMALL_BODY
        proxy.write_policy(policy_variant(1))
        assert proxy.reload().status == 200
        proxy.send_signal(signal.SIGHUP)
        time.sleep(0.2)
        c.send(b"GET /small HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        assert c.read_response().body == W.SMALL_BODY


def test_sighup_applies_valid_policy(proxy):
    assert proxy.http("GET", "http://other.test/small").status == 200
    proxy.write_policy(policy_variant(1))
    proxy.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10 * SLOW
    status = None
    while time.monotonic() < deadline:
        status = proxy.http("GET", "http://other.test/small").status
        if status == 403:
            break
        time.sleep(0.05)
    assert status == 403


INVALID = [
    "{not json",
    '{"default": "maybe", "rules": []}',
    '{"default": "deny", "rules": [{"allow": "a..b"}]}',
    '{"default": "deny", "rules": [{"allow": "x.test", "ports": [70000]}]}',
    "",
]


def reload_failures(proxy):
    return sum(v for name, labels, v in metrics(proxy)
               if "reload" in name and not name.endswith(("_bucket", "_sum", "_count"))
               and ("fail" in name or any("fail" in x or "error" in x for x in labels.values())))


def test_invalid_reload_keeps_old_policy(proxy):
    before_hash = policy_hash(status_doc(proxy))
    before_fail = reload_failures(proxy)
    for text in INVALID:
        proxy.write_policy(text)
        r = proxy.reload()
        assert r.status == 422, (text, r)
        assert r.body.strip()
        proxy.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert proxy.proc.poll() is None, "an invalid reload killed the proxy"
    assert proxy.http("GET", "http://allowed.test/small").status == 200
    assert proxy.http("GET", "http://denied.test/small").status == 403
    assert proxy.https("allowed.test").body == W.SMALL_BODY
    assert policy_hash(status_doc(proxy)) == before_hash
    deadline = time.monotonic() + 10 * SLOW
    while reload_failures(proxy) - before_fail < 2 * len(INVALID) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert reload_failures(proxy) - before_fail == 2 * len(INVALID)


def test_invalid_sighup_is_logged(proxy):
    proxy.write_policy('{"default": "deny", "rules": [ {"allow": } ]}')
    proxy.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10 * SLOW
    found = False
    while time.monotonic() < deadline and not found:
        text = proxy.stderr_text() + proxy.log_tail(100000)
        found = "policy.json" in text and "reload" in text.lower()
        time.sleep(0.05)
    assert found, "no log line names the failed reload and the file"
    assert proxy.http("GET", "http://allowed.test/small").status == 200


def test_valid_after_invalid(proxy):
    proxy.write_policy("{broken")
    assert proxy.reload().status == 422
    pol = base_policy()
    pol["rules"].insert(0, {"deny": "allowed.test"})
    proxy.write_policy(json.dumps(pol))
    assert proxy.reload().status == 200
    assert proxy.http("GET", "http://allowed.test/small").status == 403
