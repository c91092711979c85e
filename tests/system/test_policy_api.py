"""PATCH and DELETE /policy (SPEC §4, docs/ADMIN.md): edit the live policy
by rule target, validated like a file, and checked with curl through the
proxy in the sandbox."""

import json
import threading

import world as W
from conftest import DENY_REASON


def get_policy(proxy):
    r = proxy.admin("GET", "/policy")
    assert r.status == 200, r
    return json.loads(r.body)


def send(proxy, method, path, doc=None, raw=None, token="default"):
    body = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else b"")
    r = proxy.admin(method, path, token=token, body=body)
    return r, (json.loads(r.body) if r.body.strip().startswith(b"{") else None)


def curl_status(proxy, url):
    """(HTTP status, body) of curl through the proxy in the sandbox."""
    out = proxy.curl("-s", "-w", "\n%{http_code}", url)
    body, _, code = out.stdout.rpartition(b"\n")
    return int(code), body


def test_patch_adds_rule_and_host_becomes_reachable(proxy):
    assert curl_status(proxy, "http://unlisted.test/small")[0] == 403
    before = get_policy(proxy)
    r, doc = send(proxy, "PATCH", "/policy", {"rules": [{"allow": "unlisted.test", "ports": [80]}]})
    assert r.status == 200, r
    assert doc["result"] == "ok" and doc["added"] == ["unlisted.test"] and doc["replaced"] == []
    assert doc["rules"] == len(before["rules"]) + 1
    status, body = curl_status(proxy, "http://unlisted.test/small")
    assert status == 200 and body == W.SMALL_BODY
    after = get_policy(proxy)
    assert after["hash"] == doc["hash"] != before["hash"]
    assert after["rules"][-1] == {"allow": "unlisted.test", "ports": [80]}
    assert after["rules"][:-1] == before["rules"]
    assert proxy.wait_log(lambda x: x.get("msg") == "policy replaced through the admin API"
                          and x.get("detail") == doc["hash"])


def test_patch_replaces_rule_by_target_in_place(proxy):
    status, body = curl_status(proxy, "http://denied.test/small")
    assert status == 403 and DENY_REASON.encode() in body
    before = get_policy(proxy)
    # written differently, the same target after canonicalisation
    r, doc = send(proxy, "PATCH", "/policy",
                  {"deny": "Denied.TEST.", "reason": "patched: ask the platform team"})
    assert r.status == 200, r
    assert doc["replaced"] == ["denied.test"] and doc["added"] == []
    status, body = curl_status(proxy, "http://denied.test/small")
    assert status == 403
    assert b"patched: ask the platform team" in body and DENY_REASON.encode() not in body
    after = get_policy(proxy)
    assert len(after["rules"]) == len(before["rules"])
    assert after["rules"][0]["reason"] == "patched: ask the platform team"
    assert after["rules"][1:] == before["rules"][1:]


def test_delete_removes_target(proxy):
    assert curl_status(proxy, "http://allowed.test/small")[0] == 200
    r, doc = send(proxy, "DELETE", "/policy?target=ALLOWED.test")
    assert r.status == 200, r
    assert doc["removed"] == ["allowed.test"] and doc["rules_removed"] == 1
    status, body = curl_status(proxy, "http://allowed.test/small")
    assert status == 403 and b"no rule; default deny" in body
    assert all(x.get("allow") != "allowed.test" for x in get_policy(proxy)["rules"])
    # and with a JSON body
    r, doc = send(proxy, "DELETE", "/policy", {"targets": ["other.test", "git.test"]})
    assert r.status == 200, r
    assert doc["removed"] == ["other.test", "git.test"]
    assert curl_status(proxy, "http://other.test/small")[0] == 403


def test_delete_unknown_target_is_404_and_changes_nothing(proxy):
    before = get_policy(proxy)
    r, doc = send(proxy, "DELETE", "/policy", {"targets": ["allowed.test", "nope.test"]})
    assert r.status == 404, r
    assert doc["result"] == "failed" and '"nope.test"' in doc["error"]
    assert get_policy(proxy)["hash"] == before["hash"]
    assert curl_status(proxy, "http://allowed.test/small")[0] == 200


def test_bad_requests_are_400(proxy):
    before = get_policy(proxy)["hash"]
    for method, path, raw in [
            ("PATCH", "/policy", b"{\"rules\": ["),
            ("PATCH", "/policy", b"{\"rules\": {\"allow\": \"x.test\"}}"),
            ("PATCH", "/policy", b"{\"rules\": [], \"default\": \"allow\"}"),
            ("PATCH", "/policy", b""),
            ("DELETE", "/policy", b""),
            ("DELETE", "/policy", b"{\"targets\": \"x.test\"}"),
            ("DELETE", "/policy?target=x.test:80", b""),
            ("DELETE", "/policy?host=x.test", b"")]:
        r, doc = send(proxy, method, path, raw=raw)
        assert r.status == 400, (method, path, raw, r)
        assert doc and doc["result"] == "failed" and doc["error"], r
    assert get_policy(proxy)["hash"] == before


def test_invalid_result_is_422_and_old_policy_serves(proxy):
    before = get_policy(proxy)["hash"]
    r, doc = send(proxy, "PATCH", "/policy",
                  [{"allow": "unlisted.test"}, {"allow": "x.test", "reason": 5}])
    assert r.status == 422, r
    assert doc["error"].startswith("PATCH /policy: rules[1].reason: "), doc
    # valid alone, but this proxy has no CA for a rule that needs interception
    r, doc = send(proxy, "PATCH", "/policy", {"allow": "unlisted.test", "methods": ["GET"]})
    assert r.status == 422, r
    assert "interception" in doc["error"]
    assert get_policy(proxy)["hash"] == before
    assert curl_status(proxy, "http://unlisted.test/small")[0] == 403
    assert curl_status(proxy, "http://allowed.test/small")[0] == 200
    assert proxy.wait_log(lambda x: x.get("msg") == "admin: PATCH /policy rejected", count=2)


def test_token_required(proxy):
    before = get_policy(proxy)["hash"]
    for method, path, doc in [("PATCH", "/policy", {"allow": "unlisted.test"}),
                              ("DELETE", "/policy?target=allowed.test", None)]:
        for token in (None, proxy.token[:-1] + ("0" if proxy.token[-1] != "0" else "1")):
            r, _ = send(proxy, method, path, doc, token=token)
            assert r.status == 401, r
    assert get_policy(proxy)["hash"] == before


def test_concurrent_patches_keep_both(proxy):
    names = ["v4only.test", "v6only.test", "unlisted.test", "new%d.test"]
    bodies = [{"deny": n % i if "%" in n else n, "reason": "c%d" % i}
              for i, n in enumerate(names * 3)]
    results = []

    def go(body):
        results.append(send(proxy, "PATCH", "/policy", body)[0].status)

    threads = [threading.Thread(target=go, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * len(bodies)
    rules = get_policy(proxy)["rules"]
    targets = [x.get("deny") for x in rules if "deny" in x]
    for b in bodies:
        assert b["deny"] in targets, (b, targets)
    # each target once: replaced in place, never duplicated
    assert len(targets) == len(set(targets))
