"""`sluice proxy --watch-policy` (docs/DEPLOY.md): the policy reloads when its
directory changes, including the way the kubelet updates a mounted ConfigMap
(a new hidden directory, then the `..data` symlink renamed over the old one);
a bad update keeps the old policy, as SIGHUP does."""

import json
import os
import shutil
import signal
import time

from conftest import SLOW
from test_reload import policy_variant


class ConfigMapDir:
    """A directory laid out as the kubelet lays out a ConfigMap volume."""

    def __init__(self, root):
        self.root = root
        self.n = 0
        os.makedirs(root)

    def publish(self, files):
        """One atomic update, step by step as the kubelet's AtomicWriter."""
        self.n += 1
        ts = os.path.join(self.root, "..2026_11_24_%02d" % self.n)
        os.mkdir(ts)
        for name, text in files.items():
            with open(os.path.join(ts, name), "w") as f:
                f.write(text)
        data = os.path.join(self.root, "..data")
        old = os.path.realpath(data) if os.path.islink(data) else None
        tmp = os.path.join(self.root, "..data_tmp")
        os.symlink(os.path.basename(ts), tmp)
        os.rename(tmp, data)
        for name in files:
            link = os.path.join(self.root, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)
        if old:
            shutil.rmtree(old)


def status_until(proxy, url, want):
    deadline = time.monotonic() + 10 * SLOW
    status = None
    while time.monotonic() < deadline:
        status = proxy.http("GET", url).status
        if status == want:
            break
        time.sleep(0.05)
    return status


def test_configmap_swap_reloads(sluice):
    p = sluice(start=False, args=["--watch-policy"])
    cm = ConfigMapDir(os.path.join(p.dir, "cm"))
    cm.publish({"policy.json": json.dumps(policy_variant(0))})
    p.policy_file = os.path.join(cm.root, "policy.json")
    p.start()
    assert p.http("GET", "http://other.test/small").status == 200

    cm.publish({"policy.json": json.dumps(policy_variant(1))})
    assert status_until(p, "http://other.test/small", 403) == 403
    assert p.http("GET", "http://allowed.test/small").status == 200

    # A broken update: logged, the policy in force stays.
    cm.publish({"policy.json": '{"default": "deny", "rules": [ {"allow": } ]}'})
    deadline = time.monotonic() + 10 * SLOW
    while time.monotonic() < deadline and "reload failed" not in p.log_tail(100000) + \
            p.stderr_text():
        time.sleep(0.05)
    assert "reload failed" in p.log_tail(100000) + p.stderr_text()
    assert p.proc.poll() is None
    assert p.http("GET", "http://other.test/small").status == 403
    assert p.http("GET", "http://allowed.test/small").status == 200

    cm.publish({"policy.json": json.dumps(policy_variant(0))})
    assert status_until(p, "http://other.test/small", 200) == 200


def test_in_place_edit_reloads(sluice):
    p = sluice(args=["--watch-policy"])
    assert p.http("GET", "http://other.test/small").status == 200
    with open(p.policy_file, "w") as f:  # an editor writing in place
        f.write(json.dumps(policy_variant(1)))
    assert status_until(p, "http://other.test/small", 403) == 403


def test_without_watch_no_reload_needed_signal(sluice):
    """The same swap without --watch-policy changes nothing until SIGHUP:
    the reload above comes from the watch."""
    p = sluice(start=False)
    cm = ConfigMapDir(os.path.join(p.dir, "cm"))
    cm.publish({"policy.json": json.dumps(policy_variant(0))})
    p.policy_file = os.path.join(cm.root, "policy.json")
    p.start()
    cm.publish({"policy.json": json.dumps(policy_variant(1))})
    assert p.http("GET", "http://other.test/small").status == 200
    p.send_signal(signal.SIGHUP)
    assert status_until(p, "http://other.test/small", 403) == 403
