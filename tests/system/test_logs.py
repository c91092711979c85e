"""The JSON log (SPEC §5): one object per line, the fields, the file mode,
no secrets; report mode logs would_deny and lets the request through."""

import os
import stat

import world as W
from conftest import base_policy

FIELDS = ["ts", "client", "kind", "host", "port", "decision", "rule", "reason",
          "upstream_ip", "status", "bytes_up", "bytes_down", "ms"]
SECRETS = ["Basic c2VjcmV0LXByb3h5LXBhc3N3b3Jk", "secret-proxy-password",
           "Bearer upstream-secret-token", "session=secret-cookie-value"]


def traffic(proxy):
    hdrs = [("Proxy-Authorization", "Basic c2VjcmV0LXByb3h5LXBhc3N3b3Jk"),
            ("Authorization", "Bearer upstream-secret-token"),
            ("Cookie", "session=secret-cookie-value")]
    assert proxy.http("GET", "http://allowed.test/small", headers=hdrs).status == 200
    assert proxy.http("POST", "http://echo.test/echo", headers=hdrs, body=b"abc").status == 200
    assert proxy.http("GET", "http://denied.test/small", headers=hdrs).status == 403
    assert proxy.http("GET", "http://unlisted.test/x", headers=hdrs).status == 403
    c, r = proxy.tunnel("allowed.test:443",
                        headers=[("Proxy-Authorization", "Basic c2VjcmV0LXByb3h5LXBhc3N3b3Jk")])
    c.close()
    assert r.status == 200
    c, r = proxy.tunnel("denied.test:443")
    c.close()
    assert r.status == 403


def test_log_file_mode(proxy):
    traffic(proxy)
    st = os.stat(proxy.log_file)
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_every_line_is_a_json_object(proxy):
    traffic(proxy)
    proxy.wait_log(lambda x: True, count=6)
    lines = proxy.logs()
    assert lines
    assert [x for x in lines if "_bad" in x] == []


def test_fields_of_request_lines(proxy):
    traffic(proxy)
    lines = proxy.wait_log(lambda x: x.get("kind") in ("http", "connect"), count=6)
    assert len(lines) >= 6
    for x in lines:
        missing = [f for f in FIELDS if f not in x]
        assert not missing, (missing, x)
        assert x["client"].startswith("127.0.0.1")
        assert isinstance(x["port"], int) and isinstance(x["ms"], (int, float))
        assert x["decision"] in ("allow", "deny", "would_deny", "error")
        assert x["rule"] == "default" or isinstance(x["rule"], int)


def test_http_line_has_method_and_path(proxy):
    traffic(proxy)
    lines = proxy.wait_log(lambda x: x.get("kind") == "http" and x.get("host") == "echo.test")
    assert lines
    x = lines[0]
    assert x["method"] == "POST" and x["path"].startswith("/echo")
    assert x["port"] == 80 and x["status"] == 200 and x["decision"] == "allow"
    assert x["upstream_ip"] == W.PYUP
    assert x["bytes_up"] >= 3 and x["bytes_down"] > 0


def test_deny_line_names_rule(proxy):
    traffic(proxy)
    lines = proxy.wait_log(lambda x: x.get("host") == "denied.test", count=2)
    assert len(lines) == 2
    for x in lines:
        assert x["decision"] == "deny" and x["rule"] == 0 and x["status"] == 403
    lines = proxy.wait_log(lambda x: x.get("host") == "unlisted.test")
    assert lines[0]["rule"] == "default" and lines[0]["decision"] == "deny"


def test_no_secrets_in_logs(proxy):
    traffic(proxy)
    proxy.wait_log(lambda x: True, count=6)
    with open(proxy.log_file) as f:
        text = f.read()
    text += proxy.stderr_text()
    for s in SECRETS + [proxy.token]:
        assert s not in text, s


def test_report_mode_logs_would_deny(sluice, world):
    p = sluice(base_policy(mode="report"))
    r = p.http("GET", "http://unlisted.test/small")
    assert r.status == 200 and r.body == W.SMALL_BODY
    lines = p.wait_log(lambda x: x.get("host") == "unlisted.test")
    assert lines and lines[0]["decision"] == "would_deny"


def test_report_mode_keeps_range_check(sluice, world):
    # Report mode relaxes the rules, never the special-range check.
    p = sluice(base_policy(mode="report"))
    r = p.http("GET", "http://private.test/whoami")
    assert r.status == 403
