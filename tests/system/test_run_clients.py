"""Real clients inside `sluice run` (issue 6, item 6): wget and `pip
download` from a PEP 503 simple index served by the world's nginx. curl,
python3 requests and git are in test_run.py.

Each client runs unmodified: it finds the proxy and the run's CA through the
variables sluice sets, nothing else.
"""

import base64
import hashlib
import os
import shutil
import zipfile

import pytest

from conftest import DENY_REASON
from test_run import run  # noqa: F401  (the fixture)
from world import SMALL_BODY

PKG = "sluicedemo"
VERSION = "1.0"
WHEEL = "%s-%s-py3-none-any.whl" % (PKG, VERSION)


def test_wget_through_the_runs_ca(run):
    """wget (GnuTLS) reads no CA variable: it trusts the system store, where
    the run puts its bundle (bind-mounted over ca-certificates.crt)."""
    r = run(["--allow", "allowed.test"],
            ["wget", "-q", "-O", "-", "https://allowed.test/small"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == SMALL_BODY


def test_wget_denied_host_shows_403(run):
    # Plain HTTP: wget shows the status line, and with --content-on-error
    # the proxy's reason.
    r = run(["--allow", "allowed.test"],
            ["wget", "-O", "-", "--content-on-error", "http://denied.test/small"])
    assert r.returncode == 8, r.stderr.decode()  # 8: the server answered with an error
    assert b"403 Forbidden" in r.stderr, r.stderr.decode()
    assert DENY_REASON.encode() in r.stdout, r.stdout
    # HTTPS: the CONNECT itself is refused.
    r = run(["--allow", "allowed.test"], ["wget", "-O", "-", "https://unlisted.test/small"])
    assert r.returncode == 4, r.stderr.decode()  # 4: network failure (the tunnel)
    assert b"Proxy tunneling failed: Forbidden" in r.stderr, r.stderr.decode()


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def make_wheel(path):
    """A minimal pure-Python wheel: a module, METADATA, WHEEL and RECORD."""
    dist = "%s-%s.dist-info" % (PKG, VERSION)
    files = {
        "%s.py" % PKG: b"GREETING = 'installed through sluice'\n",
        dist + "/METADATA": ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
                             "Summary: sluice test package\n" % (PKG, VERSION)).encode(),
        dist + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: sluice-tests\n"
                         b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [record_line(n, d) for n, d in files.items()] + [dist + "/RECORD,,"]
    files[dist + "/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def simple_index(world):
    """/simple/sluicedemo/ and the wheel under the world's web root (every
    nginx host serves it; nginx gives /simple/ pages as text/html)."""
    root = os.path.join(world.www, "simple")
    page_dir = os.path.join(root, PKG)
    files_dir = os.path.join(world.www, "packages")
    os.makedirs(page_dir, exist_ok=True)
    os.makedirs(files_dir, exist_ok=True)
    wheel = os.path.join(files_dir, WHEEL)
    sha = make_wheel(wheel)
    with open(os.path.join(page_dir, "index.html"), "w") as f:
        f.write('<!DOCTYPE html>\n<html><body>\n<a href="/packages/%s#sha256=%s">%s</a>\n'
                '</body></html>\n' % (WHEEL, sha, WHEEL))
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write('<!DOCTYPE html>\n<html><body><a href="/simple/%s/">%s</a></body></html>\n'
                % (PKG, PKG))
    yield wheel
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(files_dir, ignore_errors=True)


def pip_download(run, allow, index_host, dest):
    return run(["--allow", allow],
               ["/usr/bin/python3", "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                "--disable-pip-version-check", "--retries", "0", "--timeout", "20",
                "--index-url", "https://%s/simple/" % index_host, PKG, "-d", dest],
               timeout=120)


def test_pip_download_from_a_simple_index(run, simple_index):
    dest = os.path.join(run.tmp, "wheels")
    r = pip_download(run, "allowed.test", "allowed.test", dest)
    assert r.returncode == 0, (r.stdout.decode(), r.stderr.decode())
    with open(os.path.join(dest, WHEEL), "rb") as got, open(simple_index, "rb") as want:
        assert got.read() == want.read()
    assert b"allowed.test:443" in r.stderr  # the summary names the index


def test_pip_download_from_a_denied_index_fails(run, simple_index):
    dest = os.path.join(run.tmp, "wheels")
    r = pip_download(run, "allowed.test", "unlisted.test", dest)
    assert r.returncode != 0
    assert not os.path.exists(os.path.join(dest, WHEEL))
    # pip keeps the proxy's 403 to its debug log; the run's summary names
    # the refused index and the reason.
    assert b"deny           1  unlisted.test:443  (no rule; default deny)" in r.stderr, \
        r.stderr.decode()
