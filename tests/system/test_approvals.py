"""prompt decisions (SPEC §2, §4; issue 6 item 4): a request held until an
operator answers through the admin API, `sluice approvals|approve|deny`, the
timeout, and `sluice run --prompt` asking on a pseudo-terminal."""

import json
import signal
import os
import pty
import re
import select
import subprocess
import threading
import time

import pytest

import rawhttp
from conftest import SLOW, SLUICE_BIN, base_policy
from test_run import run  # noqa: F401 - the `sluice run` fixture
from world import DOC_RANGES

pytest_plugins = ["tls_world"]  # fixtures: isluice (interception)

PROMPT_HOST = "other.test"


def prompt_policy(extra=()):
    return base_policy([{"prompt": PROMPT_HOST, "ports": [80, 443]}] + list(extra))


class Background:
    """A client request running in a thread; result() waits for it."""

    def __init__(self, fn):
        self.value = None
        self.error = None
        self.t = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.t.start()

    def _run(self, fn):
        try:
            self.value = fn()
        except BaseException as e:  # noqa: B902 - reported by result()
            self.error = e

    def result(self, timeout=60):
        self.t.join(timeout * SLOW)
        assert not self.t.is_alive(), "the request did not end"
        if self.error:
            raise self.error
        return self.value


def pending(p):
    r = p.admin("GET", "/approvals")
    assert r.status == 200, r
    return json.loads(r.body)


def wait_pending(p, count=1, host=PROMPT_HOST, timeout=20):
    """The pending questions for host, once there are `count` waiting
    requests on them (waiting, not asserting a time)."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        qs = [q for q in pending(p) if q["host"] == host]
        if sum(q["waiting"] for q in qs) >= count or time.monotonic() > deadline:
            return qs
        time.sleep(0.05)


def answer(p, qid, decision, scope="once"):
    body = json.dumps({"decision": decision, "scope": scope}).encode()
    return p.admin("POST", "/approvals/" + qid, body=body)


def get_small(p, host=PROMPT_HOST):
    return Background(lambda: p.http("GET", "http://%s/small" % host, timeout=60 * SLOW))


def test_request_waits_and_approve_once_lets_it_through(sluice, world):
    p = sluice(prompt_policy())
    bg = get_small(p)
    qs = wait_pending(p)
    assert len(qs) == 1, qs
    q = qs[0]
    assert re.fullmatch(r"[0-9a-f]{8}", q["id"]), q
    assert (q["port"], q["kind"], q["waiting"]) == (80, "http", 1), q
    assert q["client"] == "127.0.0.1" and 0 < q["expires_in"] <= 60, q
    r = answer(p, q["id"], "allow")
    assert r.status == 200, r
    got = bg.result()
    assert got.status == 200 and got.header("X-Sluice-Decision") is None, got
    with open(os.path.join(world.www, "small"), "rb") as f:
        assert got.body == f.read()
    assert pending(p) == []
    # Answered once: the same id cannot be answered again.
    assert answer(p, q["id"], "deny").status == 409
    line = p.wait_log(lambda x: x.get("host") == PROMPT_HOST and x.get("status") == 200)
    assert line and line[0]["decision"] == "allow", p.log_tail()
    assert line[0]["reason"] == "approved by operator via admin API", line


def test_once_asks_again_and_run_does_not(sluice):
    p = sluice(prompt_policy())
    bg = get_small(p)
    q = wait_pending(p)[0]
    assert answer(p, q["id"], "allow", "once").status == 200
    assert bg.result().status == 200
    # once: the next request is a new question.
    bg = get_small(p)
    q2 = wait_pending(p)[0]
    assert q2["id"] != q["id"]
    assert answer(p, q2["id"], "allow", "run").status == 200
    assert bg.result().status == 200
    # run: remembered, no question.
    r = p.http("GET", "http://%s/small" % PROMPT_HOST)
    assert r.status == 200, r
    assert pending(p) == []
    lines = p.wait_log(lambda x: x.get("host") == PROMPT_HOST and x.get("status") == 200, 3)
    assert lines[-1]["reason"] == "approved for this run by operator via admin API", lines
    # A reload forgets it: the next request asks again.
    assert p.reload().status == 200
    bg = get_small(p)
    q3 = wait_pending(p)[0]
    assert answer(p, q3["id"], "deny").status == 200
    assert bg.result().status == 403


def test_deny_answers_403_with_the_reason_and_is_remembered(sluice):
    p = sluice(prompt_policy())
    bg = get_small(p)
    q = wait_pending(p)[0]
    assert answer(p, q["id"], "deny").status == 200
    r = bg.result()
    assert r.status == 403 and r.header("X-Sluice-Decision") == "deny", r
    assert "denied by operator via admin API" in r.text and PROMPT_HOST in r.text, r.text
    # A retry does not ask the operator again.
    r = p.http("GET", "http://%s/small" % PROMPT_HOST)
    assert r.status == 403 and "denied by operator via admin API" in r.text, r
    assert pending(p) == []
    lines = p.wait_log(lambda x: x.get("host") == PROMPT_HOST and x.get("status") == 403, 2)
    assert all(x["decision"] == "deny" for x in lines), lines


def test_timeout_denies(sluice):
    p = sluice(prompt_policy(), args=["--prompt-timeout", "2"])
    r = p.http("GET", "http://%s/small" % PROMPT_HOST, timeout=60 * SLOW)
    assert r.status == 403, r
    assert "no answer within 2 s" in r.text, r.text
    assert pending(p) == []
    line = p.wait_log(lambda x: x.get("host") == PROMPT_HOST and x.get("status") == 403)
    assert line and line[0]["reason"] == "no answer within 2 s", line


def test_concurrent_requests_join_one_question_and_others_are_served(sluice):
    # One worker: a waiting request must not hold up anyone else.
    p = sluice(prompt_policy(), args=["--workers", "1"])
    a, b = get_small(p), get_small(p)
    qs = wait_pending(p, count=2)
    assert len(qs) == 1 and qs[0]["waiting"] == 2, qs
    r = p.http("GET", "http://allowed.test/small")
    assert r.status == 200, r
    assert answer(p, qs[0]["id"], "allow").status == 200
    assert a.result().status == 200 and b.result().status == 200


def test_an_answer_covers_only_the_client_it_names(sluice):
    # Review fix: questions and remembered answers were keyed by destination
    # only, so an approval for one client let another (with "clients",
    # another policy) through without the operator ever seeing it.
    from test_clients import LINK, LOOP, http_from
    url = "http://%s/small" % PROMPT_HOST
    p = sluice(prompt_policy())
    bg = Background(lambda: http_from(p, LINK, url))
    q = wait_pending(p)[0]
    assert q["client"] == LINK, q
    assert answer(p, q["id"], "allow", "run").status == 200
    assert bg.result().status == 200
    # The loopback client asks on its own, and its denial stays its own.
    bg = Background(lambda: http_from(p, LOOP, url))
    qs = wait_pending(p)
    assert len(qs) == 1 and qs[0]["client"] == LOOP, qs
    assert answer(p, qs[0]["id"], "deny").status == 200
    assert bg.result().status == 403
    assert http_from(p, LINK, url).status == 200
    assert http_from(p, LOOP, url).status == 403
    assert pending(p) == []


def test_connect_is_prompted(sluice, world):
    p = sluice(prompt_policy())
    bg = Background(lambda: p.https(PROMPT_HOST, timeout=60 * SLOW))
    q = wait_pending(p)[0]
    assert (q["port"], q["kind"]) == (443, "connect"), q
    assert answer(p, q["id"], "allow").status == 200
    r = bg.result()
    assert r.status == 200, r
    line = p.wait_log(lambda x: x.get("kind") == "connect" and x.get("host") == PROMPT_HOST)
    assert line and line[0]["decision"] == "allow", line
    assert line[0]["reason"] == "approved by operator via admin API", line


def test_client_gone_withdraws_the_question(sluice):
    p = sluice(prompt_policy())
    c = p.conn()
    c.send(rawhttp.request_bytes("GET", "http://%s/small" % PROMPT_HOST, PROMPT_HOST,
                                 [("Connection", "close")]))
    q = wait_pending(p)[0]
    c.close()
    deadline = time.monotonic() + 20 * SLOW
    while pending(p) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pending(p) == []
    assert answer(p, q["id"], "allow").status in (404, 409)
    # The proxy is fine afterwards.
    assert p.http("GET", "http://allowed.test/small").status == 200


def test_admin_errors(sluice):
    p = sluice(prompt_policy())
    assert answer(p, "00000000", "allow").status == 404
    assert p.admin("GET", "/approvals", token=None).status == 401
    assert p.admin("POST", "/approvals/00000000?decision=allow", token=None).status == 401
    bg = get_small(p)
    q = wait_pending(p)[0]
    for body in (b"", b"{", b'{"decision":"maybe"}', b'{"decision":"allow","scope":"ever"}',
                 b'{"decision":"allow","extra":1}'):
        r = p.admin("POST", "/approvals/" + q["id"], body=body)
        assert r.status == 400, (body, r)
        assert "error" in json.loads(r.body)
    # The query form works too.
    r = p.admin("POST", "/approvals/%s?decision=allow&scope=once" % q["id"])
    assert r.status == 200, r
    assert bg.result().status == 200


def test_no_approver_denies_at_once(sluice, world):
    # No admin API and no approver socket: nobody could answer.
    p = sluice(prompt_policy(), args=["--admin", "none"], start=False)
    p.start(wait=False)
    deadline = time.monotonic() + 10 * SLOW
    while True:
        try:
            p.conn(timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, p.stderr_text()
            time.sleep(0.05)
    r = p.http("GET", "http://%s/small" % PROMPT_HOST)
    assert r.status == 403 and "no approver is attached" in r.text, r


def test_cli_approvals_approve_deny(sluice):
    p = sluice(prompt_policy())
    common = ["--admin", p.admin_url, "--token", p.token_file]
    r = p.cli("approvals", *common)
    assert r.returncode == 0 and b"no requests waiting" in r.stdout, r
    bg = get_small(p)
    q = wait_pending(p)[0]
    r = p.cli("approvals", *common)
    assert r.returncode == 0, r
    assert q["id"].encode() in r.stdout and b"other.test:80" in r.stdout, r.stdout
    r = p.cli("approvals", "--json", *common)
    assert json.loads(r.stdout)[0]["id"] == q["id"]
    r = p.cli("approve", q["id"], "--for-run", *common)
    assert r.returncode == 0 and b"approved" in r.stdout, r
    assert bg.result().status == 200
    r = p.cli("approve", q["id"], *common)
    assert r.returncode == 1 and b"409" in r.stderr, r
    r = p.cli("deny", "ffffffff", *common)
    assert r.returncode == 1 and b"404" in r.stderr and b"no such approval" in r.stderr, r
    r = p.cli("deny", "not-an-id", *common)
    assert r.returncode == 2 and b"not a question id" in r.stderr, r
    r = p.cli("approve", *common)
    assert r.returncode == 2, r
    r = p.cli("approvals", "--admin", p.admin_url)
    assert r.returncode == 1 and b"401" in r.stderr, r
    # deny through the CLI: 403 for the waiting request (a reload first
    # forgets the answer for the run).
    assert p.reload().status == 200
    bg = get_small(p)
    q = wait_pending(p)[0]
    r = p.cli("deny", q["id"], *common)
    assert r.returncode == 0 and b"denied" in r.stdout, r
    assert bg.result().status == 403


def test_prompt_rule_with_paths_asks_per_request_inside_the_tunnel(isluice, tls_up):
    from tls_world import intercept_policy
    p = isluice(intercept_policy([{"prompt": "echo.test", "methods": ["GET"],
                                   "paths": ["/echo"]}], enabled=None, base=False))

    def inside():
        with p.itunnel("echo.test", timeout=60 * SLOW) as c:
            c.send(rawhttp.request_bytes("GET", "/echo?q=1", "echo.test"))
            first = c.read_response()
            c.send(rawhttp.request_bytes("GET", "/echo", "echo.test"))
            second = c.read_response()
            return first, second

    bg = Background(inside)
    q = wait_pending(p, host="echo.test")[0]
    assert (q["kind"], q["method"], q["path"], q["port"]) == ("tls", "GET", "/echo", 443), q
    assert answer(p, q["id"], "allow", "run").status == 200
    # The second request is remembered for the run: no new question.
    first, second = bg.result()
    assert pending(p) == []
    assert first.status == 200 and b"/echo?q=1" in first.body, first
    assert second.status == 200, second
    lines = p.tls_lines("echo.test", count=2)
    assert all(x["decision"] == "allow" for x in lines), lines
    assert lines[0]["reason"] == "approved for this run by operator via admin API", lines


# -- sluice run --prompt -------------------------------------------------------

QUESTION = b"[o]nce, [r]un, [d]eny: "


def run_prompt_command(run, url="http://allowed.test/small"):
    """`sluice run --prompt` with a policy that sets no default (so it
    becomes prompt); curl prints the status it got."""
    policy = os.path.join(run.tmp, "prompt-policy.json")
    with open(policy, "w") as f:
        json.dump({"rules": [{"deny": "denied.test"}], "reach_ranges": DOC_RANGES}, f)
    return run.command(["--quiet", "--prompt"],
                       ["curl", "-sS", "-o", "/dev/null", "-w", "status=%{http_code}\\n",
                        "--max-time", str(int(60 * SLOW)), url], policy_file=policy)


def drive_pty(cmd, env, answers):
    """Runs cmd on a pseudo-terminal; each time the question appears, types
    the next answer. Returns (exit code, everything the terminal showed)."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvpe(cmd[0], cmd, env)
        finally:
            os._exit(99)
    out = b""
    asked = 0
    status = None
    try:
        deadline = time.monotonic() + 60 * SLOW
        while status is None:
            assert time.monotonic() < deadline, "sluice run did not end: %r" % out
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    pass
            if out.count(QUESTION) > asked and asked < len(answers):
                os.write(master, answers[asked])
                asked += 1
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status = st
    finally:
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(master)
    return os.waitstatus_to_exitcode(status), out


@pytest.mark.parametrize("typed,status", [(b"o\n", b"200"), (b"d\n", b"403")],
                         ids=["once", "deny"])
def test_run_prompt_asks_on_the_terminal(run, typed, status):
    code, out = drive_pty(run_prompt_command(run), run.env, [typed])
    assert b"sluice: allow allowed.test:80 (HTTP from the command)? " + QUESTION in out, out
    assert b"status=" + status in out, out
    assert code == 0, out


def test_run_prompt_for_the_run_asks_once(run):
    cmd = run_prompt_command(run)
    cmd[cmd.index("curl"):] = ["sh", "-c", "for i in 1 2; do curl -sS -o /dev/null "
                               "-w 'status=%{http_code}\\n' http://allowed.test/small; done"]
    code, out = drive_pty(cmd, run.env, [b"r\n"])
    assert out.count(QUESTION) == 1, out
    assert out.count(b"status=200") == 2, out
    assert code == 0, out


def test_run_prompt_cannot_be_answered_by_the_command(run):
    """The command shares the terminal the prompter reads: typing into it
    with TIOCSTI before its request would answer its own question."""
    cmd = run_prompt_command(run)
    i = cmd.index("curl")
    curl = cmd[i:]
    cmd[i:] = ["python3", "-c",
               "import fcntl, subprocess, sys, termios\n"
               "try:\n"
               "    for ch in b'o\\n':\n"
               "        fcntl.ioctl(0, termios.TIOCSTI, bytes([ch]))\n"
               "    print('typed', flush=True)\n"
               "except OSError as e:\n"
               "    print('refused', e.errno, flush=True)\n"
               "sys.exit(subprocess.call(sys.argv[1:]))\n"] + curl
    code, out = drive_pty(cmd, run.env, [b"d\n"])
    assert b"refused" in out and b"typed" not in out, out
    assert b"status=403" in out and b"status=200" not in out, out
    assert code == 0, out


def test_run_prompt_without_a_terminal_denies(run):
    # No controlling terminal (a new session) and no tty on stdin/stdout.
    r = subprocess.run(run_prompt_command(run), env=run.env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       start_new_session=True, timeout=120 * SLOW)
    assert b"no terminal to ask on" in r.stderr, r.stderr
    assert r.stderr.count(b"no terminal to ask on; every prompt") == 1, r.stderr
    assert b"status=403" in r.stdout, (r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr


def test_run_prompt_puts_the_commands_terminal_mode_back_after_a_bad_answer(run):
    # Review fix: an unrecognised answer re-opened the question and saved
    # the prompter's own (line) mode over the command's, so the command got
    # its terminal back in line mode.
    cmd = run_prompt_command(run)
    cmd[cmd.index("curl"):] = [
        "sh", "-c", "stty -icanon -echo; a=$(stty -g); curl -sS -o /dev/null "
        "-w 'status=%{http_code}\\n' http://allowed.test/small; "
        "if [ \"$a\" = \"$(stty -g)\" ]; then echo tty=kept; else echo tty=changed; fi"]
    code, out = drive_pty(cmd, run.env, [b"x\n", b"o\n"])
    assert out.count(QUESTION) == 2 and b"sluice: answer o (allow once)" in out, out
    assert b"status=200" in out and b"tty=kept" in out, out
    assert code == 0, out


def prompter_of(pid):
    """The prompter: the child of sluice run that holds /dev/tty open."""
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        kids = [int(x) for x in f.read().split()]
    found = []
    for c in kids:
        try:
            fds = os.listdir("/proc/%d/fd" % c)
            links = [os.readlink("/proc/%d/fd/%s" % (c, fd)) for fd in fds]
        except OSError:
            continue
        if "/dev/tty" in links:
            found.append(c)
    assert len(found) == 1, (kids, found)
    return found[0]


def test_run_prompt_exits_even_when_the_prompter_is_stopped(run):
    # Review fix: sluice run waited for its prompter without bound; one
    # stopped by job control (SIGTTOU/SIGTTIN in a background run) never
    # saw the SIGTERM, and the run never exited.
    cmd = run_prompt_command(run)
    cmd[cmd.index("--max-time") + 1] = "3"
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvpe(cmd[0], cmd, run.env)
        finally:
            os._exit(99)
    out, status, stopped = b"", None, None
    try:
        deadline = time.monotonic() + 60 * SLOW
        while status is None:
            assert time.monotonic() < deadline, "sluice run did not end: %r" % out
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    pass
            if stopped is None and QUESTION in out:
                stopped = prompter_of(pid)
                os.kill(stopped, signal.SIGSTOP)
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status = st
    finally:
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        if stopped:
            try:
                os.kill(stopped, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.close(master)
    # curl gave up (28) while nobody answered; the run ended with it.
    assert os.waitstatus_to_exitcode(status) == 28, out
