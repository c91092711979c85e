"""Per-client policies (SPEC §2 `clients`, issue 7's central gateway): the
proxy and the DNS filter decide each connection and query with the policy
of the client its source address belongs to, reload swaps every client
policy at once without dropping tunnels, and a broken client file keeps the
old set.

The sandbox namespace has two IPv4 addresses a client can come from:
127.0.0.1 and its link address 203.0.113.2 (W.SBX_LINK4), so two clients
with different answers need no extra namespace. Client policy files sit
next to the main policy, as an operator would put them."""

import json
import os
import signal
import time

import rawhttp
import world as W
from conftest import SLOW, base_policy

LOOP = "127.0.0.1"
LINK = W.SBX_LINK4


def allow_only(*names):
    """A client policy: default deny, these names on 80 and 443."""
    return {"default": "deny", "rules": [{"allow": n, "ports": [80, 443]} for n in names],
            "reach_ranges": list(W.DOC_RANGES)}


def gateway_policy(clients, **fields):
    """The main policy: allowed.test and other.test denied for everyone no
    client entry covers."""
    p = base_policy([{"deny": "allowed.test", "reason": "main policy"},
                     {"deny": "other.test", "reason": "main policy"}], **fields)
    p["clients"] = clients
    return p


def write_json(proxy, name, doc):
    path = os.path.join(proxy.dir, name)
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.replace(path + ".tmp", path)
    return path


def start_gateway(sluice, files, clients, args=(), **fields):
    """A proxy whose policy directory holds `files` ({name: policy})."""
    p = sluice(gateway_policy(clients, **fields), args=args, start=False)
    for name, doc in files.items():
        write_json(p, name, doc)
    return p.start()


def connect_from(proxy, source, authority):
    """CONNECT authority from a source address; returns (Conn, status)."""
    c = rawhttp.Conn(proxy.world.sbx_connect("127.0.0.1", proxy.port, 15, source), 15)
    c.send(rawhttp.request_bytes("CONNECT", authority, authority, []))
    return c, c.read_response("CONNECT")


def https_from(proxy, source, host):
    c, r = connect_from(proxy, source, host + ":443")
    with c:
        if r.status != 200:
            return r
        c.start_tls(host, proxy.world.ca_pem)
        c.send(rawhttp.request_bytes("GET", "/small", host, [("Connection", "close")]))
        return c.read_response()


def http_from(proxy, source, url):
    host = url.split("/")[2]
    c = rawhttp.Conn(proxy.world.sbx_connect("127.0.0.1", proxy.port, 15, source), 15)
    with c:
        c.send(rawhttp.request_bytes("GET", url, host, [("Connection", "close")]))
        return c.read_response()


def status(proxy):
    r = proxy.admin("GET", "/status")
    assert r.status == 200, r.body
    return json.loads(r.body)


TWO_CLIENTS = [{"name": "link", "source": [LINK + "/32"], "policy": "link.json"},
               {"name": "loop", "source": ["127.0.0.0/8"], "policy": "loop.json"}]
TWO_FILES = {"link.json": allow_only("allowed.test"), "loop.json": allow_only("other.test")}


def test_curl_answer_depends_on_source(sluice):
    # Only the link address has a client entry: loopback gets the main policy.
    p = start_gateway(sluice, {"link.json": allow_only("allowed.test")},
                      [{"name": "sbx", "source": [LINK], "policy": "link.json"}])
    r = p.curl("--interface", LINK, "-o", "-", "-w", "%{http_code}", "https://allowed.test/small")
    assert r.returncode == 0, r.stderr
    assert r.stdout == W.SMALL_BODY + b"200"
    r = p.curl("--interface", LINK, "-o", "-", "-w", "%{http_code}", "http://allowed.test/small")
    assert r.stdout == W.SMALL_BODY + b"200"
    # From loopback the main policy denies it, with its own reason.
    r = p.curl("-sS", "-o", "-", "-w", "%{http_code}", "http://allowed.test/small")
    assert r.stdout.endswith(b"403") and b"main policy" in r.stdout
    r = p.curl("https://allowed.test/small")
    assert r.returncode != 0 and b"403" in r.stderr
    # The log's client field is the address that picked the policy.
    lines = p.wait_log(lambda x: x.get("host") == "allowed.test", count=4)
    got = sorted((x["client"], x["decision"]) for x in lines)
    assert got == [(LOOP, "deny"), (LOOP, "deny"), (LINK, "allow"), (LINK, "allow")]


def test_two_clients_get_different_answers(sluice):
    p = start_gateway(sluice, TWO_FILES, TWO_CLIENTS)
    assert https_from(p, LINK, "allowed.test").body == W.SMALL_BODY
    assert https_from(p, LINK, "other.test").status == 403
    assert https_from(p, LOOP, "other.test").body == W.SMALL_BODY
    assert https_from(p, LOOP, "allowed.test").status == 403
    # echo.test: neither client allows it, and the main policy (which does)
    # is not consulted for a client's address.
    assert http_from(p, LINK, "http://echo.test/").status == 403


def test_first_client_listed_wins(sluice):
    clients = [{"name": "loop", "source": ["127.0.0.1"], "policy": "loop.json"},
               {"name": "everyone", "source": ["0.0.0.0/0"], "policy": "link.json"}]
    p = start_gateway(sluice, TWO_FILES, clients)
    assert https_from(p, LOOP, "other.test").status == 200
    assert https_from(p, LOOP, "allowed.test").status == 403
    assert https_from(p, LINK, "allowed.test").status == 200


def test_dual_stack_listener_matches_ipv4_client(sluice):
    # On [::] the kernel hands IPv4 clients over as ::ffff:127.0.0.1.
    p = sluice(gateway_policy(TWO_CLIENTS), start=False)
    p.args = ["--listen", "[::]:%d" % p.port]  # the later --listen wins
    for name, doc in TWO_FILES.items():
        write_json(p, name, doc)
    p.start()
    assert https_from(p, LOOP, "other.test").status == 200
    assert https_from(p, LINK, "allowed.test").status == 200
    assert https_from(p, LINK, "other.test").status == 403
    clients = {x["client"] for x in p.wait_log(lambda x: x.get("kind") == "connect", count=3)}
    assert clients == {"::ffff:" + LOOP, "::ffff:" + LINK} or clients == {LOOP, LINK}


def test_dns_filter_answers_per_client(sluice, world):
    dns_port = world.free_port()
    files = {"link.json": allow_only("allowed.test")}
    p = start_gateway(sluice, files, [{"name": "sbx", "source": [LINK], "policy": "link.json"}],
                      args=["--dns", "127.0.0.1:%d" % dns_port], dns={"upstream": [W.DNS]})

    def dig(source, name):
        r = world.sbx_run(["dig", "-b", source, "-p", str(dns_port), "@127.0.0.1", "+time=5",
                           "+tries=1", name, "A"], timeout=30 * SLOW)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        rcode = out.split("status: ")[1].split(",")[0]
        answers = [ln.split()[-1] for ln in out.splitlines()
                   if ln and not ln.startswith(";") and "\tA\t" in ln]
        return rcode, answers

    assert dig(LINK, "allowed.test") == ("NOERROR", [W.WEB])
    assert dig(LOOP, "allowed.test") == ("NXDOMAIN", [])
    # The client's policy inherits the main one's upstreams, and denies
    # what it does not list even where the main policy allows it.
    assert dig(LINK, "echo.test")[0] == "NXDOMAIN"
    assert dig(LOOP, "echo.test") == ("NOERROR", [W.PYUP])
    logs = p.wait_log(lambda x: x.get("kind") == "dns" and x.get("host") == "allowed.test",
                      count=2)
    assert sorted((x["client"], x["decision"]) for x in logs) == [(LOOP, "deny"), (LINK, "allow")]


def test_reload_swaps_clients_and_keeps_tunnels(sluice):
    p = start_gateway(sluice, TWO_FILES, TWO_CLIENTS)
    before = status(p)["policy"]
    c, r = connect_from(p, LINK, "allowed.test:443")
    with c:
        assert r.status == 200
        c.start_tls("allowed.test", p.world.ca_pem)
        c.send(b"GET /small HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        assert c.read_response().body == W.SMALL_BODY
        # Swap the clients' files only: the main policy text is unchanged.
        write_json(p, "link.json", allow_only("other.test"))
        write_json(p, "loop.json", allow_only("allowed.test"))
        assert p.reload().status == 200
        after = status(p)["policy"]
        assert after["hash"] == before["hash"]
        assert [x["hash"] for x in after["clients"]] != [x["hash"] for x in before["clients"]]
        # New connections get the new policies...
        assert https_from(p, LINK, "allowed.test").status == 403
        assert https_from(p, LINK, "other.test").status == 200
        assert https_from(p, LOOP, "allowed.test").status == 200
        # ...and SIGHUP does the same without disturbing the open tunnel,
        # which keeps the policy that admitted it.
        p.send_signal(signal.SIGHUP)
        p.wait_log(lambda x: x.get("msg") == "policy reloaded", count=2)
        c.send(b"GET /small HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        assert c.read_response().body == W.SMALL_BODY


def test_invalid_client_file_fails_reload_and_keeps_old(sluice):
    p = start_gateway(sluice, TWO_FILES, TWO_CLIENTS)
    before = status(p)["policy"]
    with open(os.path.join(p.dir, "loop.json"), "w") as f:
        f.write('{"rules": [{"allow": "0x7f.1"}]}')
    write_json(p, "link.json", allow_only("other.test"))  # valid, but must not go live alone
    r = p.reload()
    assert r.status == 422
    doc = json.loads(r.body)
    assert doc["result"] == "failed"
    assert 'client "loop"' in doc["error"]
    assert os.path.join(p.dir, "loop.json") in doc["error"]
    assert "rules[0].allow" in doc["error"]
    assert status(p)["policy"]["clients"] == before["clients"]
    assert https_from(p, LINK, "allowed.test").status == 200
    assert https_from(p, LINK, "other.test").status == 403
    # A missing file too.
    os.unlink(os.path.join(p.dir, "loop.json"))
    r = p.reload()
    assert r.status == 422 and "No such file" in json.loads(r.body)["error"]
    assert https_from(p, LOOP, "other.test").status == 200


def test_status_lists_clients(sluice):
    p = start_gateway(sluice, TWO_FILES, TWO_CLIENTS)
    clients = status(p)["policy"]["clients"]
    assert [c["name"] for c in clients] == ["link", "loop"]
    assert clients[0]["file"] == os.path.join(p.dir, "link.json")
    assert clients[0]["addresses"] == [LINK + "/32"]
    assert clients[1]["addresses"] == ["127.0.0.0/8"]
    assert clients[0]["rules"] == 1 and clients[0]["default"] == "deny"
    assert len(clients[0]["hash"]) == 64 and clients[0]["hash"] != clients[1]["hash"]
    assert clients[0]["unresolved"] == []
    r = p.admin("GET", "/policy")
    assert [c["name"] for c in json.loads(r.body)["clients"]] == ["link", "loop"]


def test_put_policy_finds_client_files_next_to_the_policy_file(sluice):
    p = start_gateway(sluice, TWO_FILES, [])
    assert https_from(p, LINK, "allowed.test").status == 403
    body = json.dumps(gateway_policy(TWO_CLIENTS)).encode()
    r = p.admin("PUT", "/policy", body=body)
    assert r.status == 200, r.body
    assert https_from(p, LINK, "allowed.test").status == 200
    bad = gateway_policy([{"name": "x", "source": [LINK], "policy": "nosuch.json"}])
    r = p.admin("PUT", "/policy", body=json.dumps(bad).encode())
    assert r.status == 422 and 'client "x"' in json.loads(r.body)["error"]
    assert https_from(p, LINK, "allowed.test").status == 200


def test_name_sources_resolve_at_load_and_reload(sluice, world):
    name = "client-%d.test" % os.getpid()
    p = start_gateway(sluice, {"link.json": allow_only("allowed.test")},
                      [{"name": "named", "source": [name], "policy": "link.json"}],
                      args=["--clients-refresh", "0"])
    # Not in DNS yet: a warning, no match, the main policy decides.
    warned = p.wait_log(lambda x: x.get("level") == "warning" and name in (x.get("detail") or ""))
    assert warned
    assert status(p)["policy"]["clients"][0]["unresolved"] == [name]
    assert https_from(p, LINK, "allowed.test").status == 403
    # Once the network's DNS knows the name, a reload picks its address up.
    world.add_names({name: [LINK]})
    assert p.reload().status == 200
    c = status(p)["policy"]["clients"][0]
    assert c["unresolved"] == [] and c["names"] == [name] and c["addresses"] == [LINK + "/32"]
    assert https_from(p, LINK, "allowed.test").status == 200
    assert https_from(p, LOOP, "allowed.test").status == 403


def test_names_resolved_again_while_running(sluice, world):
    # A gateway starts before its sandboxes: --clients-refresh picks their
    # names up without a reload.
    name = "later-%d.test" % os.getpid()
    p = start_gateway(sluice, {"link.json": allow_only("allowed.test")},
                      [{"name": "later", "source": [name], "policy": "link.json"}],
                      args=["--clients-refresh", "1"])
    assert https_from(p, LINK, "allowed.test").status == 403
    before = status(p)["policy"]
    world.add_names({name: [LINK]})
    found = p.wait_log(lambda x: x.get("msg") == "client source names resolved to new addresses",
                       timeout=30)
    assert found
    after = status(p)["policy"]
    assert after["clients"][0]["addresses"] == [LINK + "/32"]
    assert after["clients"][0]["unresolved"] == []
    # Same texts: only the addresses changed.
    assert after["hash"] == before["hash"]
    assert after["clients"][0]["hash"] == before["clients"][0]["hash"]
    assert https_from(p, LINK, "allowed.test").status == 200
    assert https_from(p, LOOP, "allowed.test").status == 403


def test_policy_check_and_explain_client(sluice, world):
    p = sluice(gateway_policy(TWO_CLIENTS), start=False)
    for n, doc in TWO_FILES.items():
        write_json(p, n, doc)
    r = p.cli("policy", "check", p.policy_file)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "client link: %s: ok (1 rule, default deny" % os.path.join(p.dir, "link.json") in out
    assert "client loop:" in out
    r = p.cli("policy", "explain", "--client", LINK, p.policy_file, "allowed.test:443")
    assert r.returncode == 0, r.stderr
    assert "client: link" in r.stdout.decode() and "decision: allow" in r.stdout.decode()
    r = p.cli("policy", "explain", "--client", "::ffff:" + LOOP, p.policy_file, "allowed.test:443")
    assert "client: loop" in r.stdout.decode() and "decision: deny" in r.stdout.decode()
    r = p.cli("policy", "explain", "--client", "192.0.2.99", p.policy_file, "allowed.test:443")
    assert "the main policy decides" in r.stdout.decode()
    assert "decision: deny" in r.stdout.decode()
    r = p.cli("policy", "explain", "--client", "not-an-ip", p.policy_file, "allowed.test:443")
    assert r.returncode == 2 and b"--client needs an IP address" in r.stderr
    with open(os.path.join(p.dir, "loop.json"), "w") as f:
        f.write('{"clients": []}')
    r = p.cli("policy", "check", p.policy_file)
    assert r.returncode == 2
    assert b'client "loop"' in r.stderr and b"cannot have clients of its own" in r.stderr
