"""Enforcement benchmark (bench/enforce.sh runs it; needs root).

1. Apply time: `sluice enforce apply --mode isolate --policy P` with 10,000
   address rules (one transaction), then 10,000 learned addresses added the
   way the DNS sink adds them (transactions of FW_MAX_LEARN_BATCH = 1,024
   elements, each add + delete + add so the timeout is refreshed).
2. Packets per second through the output path of a namespace whose rules
   hold 10, 1,000 or 10,000 elements, the allowed destination being one of
   them: sluice's isolate ruleset (static interval set; learned timeout set)
   against an iptables chain (legacy backend) with the same rules, one
   ACCEPT per (address, port), the allowed one last. iperf3 sends 64-byte
   UDP datagrams as fast as it can for a few seconds; the figure is what
   the sender got out. Twice: as one conntrack flow (after the first
   packet, "ct state established" accepts before any set is looked at: the
   cost a long flow pays) and untracked (a raw-priority `notrack` rule, so
   every datagram walks the whole chain to its element: the cost a new
   flow pays).

Everything happens in two namespaces of its own (sender, receiver, a veth
between them, documentation addresses), removed on exit. Set elements are
(198.51.100.X . port) pairs that no packet is sent to.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SLUICE_BIN", os.path.join(REPO, "build", "sluice"))
SECONDS = int(os.environ.get("ENFORCE_BENCH_SECONDS", "4"))
SIZES = [int(x) for x in os.environ.get("ENFORCE_BENCH_SIZES", "10,1000,10000").split(",")]
SND, RCV = "slbench%d-snd" % os.getpid(), "slbench%d-rcv" % os.getpid()
SND_ADDR, RCV_ADDR, PORT = "192.0.2.1", "192.0.2.2", 5201
BATCH = 1024


def sh(*cmd, ns=None, check=True, input=None, timeout=300):
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    r = subprocess.run(full, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(full), r.stderr.strip()))
    return r


def decoys(n):
    """n distinct (address, port) pairs that are not the receiver's."""
    return [("198.51.100.%d" % (i % 256), 1000 + i // 256) for i in range(n)]


def setup():
    for ns in (SND, RCV):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", SND, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
       "netns", RCV)
    for ns, addr in ((SND, SND_ADDR), (RCV, RCV_ADDR)):
        sh("ip", "-n", ns, "addr", "add", addr + "/30", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")


def teardown():
    for ns in (SND, RCV):
        pids = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE,
                              text=True).stdout.split()
        for p in pids:
            subprocess.run(["kill", "-9", p])
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def policy_file(pairs, d):
    rules = [{"allow": a, "ports": [p]} for a, p in pairs]
    path = os.path.join(d, "policy-%d.json" % len(pairs))
    with open(path, "w") as f:
        json.dump({"default": "deny", "rules": rules}, f)
    return path


def learn_script(pairs, timeout=3600):
    """The sink's transactions for these pairs (see fw_ruleset_learn)."""
    out = []
    for i in range(0, len(pairs), BATCH):
        part = pairs[i:i + BATCH]
        add = ", ".join("%s . %d timeout %ds" % (a, p, timeout) for a, p in part)
        dele = ", ".join("%s . %d" % (a, p) for a, p in part)
        out.append("add element inet sluice allow4 { %s }\n"
                   "delete element inet sluice allow4 { %s }\n"
                   "add element inet sluice allow4 { %s }\n" % (add, dele, add))
    return out


def sluice_enforce(*args):
    return sh(BIN, "enforce", *args, ns=SND)


NOTRACK = ("table inet bench_raw {\n chain out {\n  type filter hook output priority -300;\n"
           "  udp dport %d notrack\n }\n}\n" % PORT)


def iperf_both():
    """(established flow, untracked) send rates."""
    flow = iperf()
    sh("nft", "-f", "-", ns=SND, input=NOTRACK)
    try:
        untracked = iperf()
    finally:
        sh("nft", "delete", "table", "inet", "bench_raw", ns=SND)
    return flow, untracked


def iperf():
    """Datagrams per second the sender got out, and received."""
    r = sh("iperf3", "-c", RCV_ADDR, "-u", "-b", "0", "-l", "64", "-t", str(SECONDS), "-J",
           ns=SND, timeout=SECONDS + 60)
    j = json.loads(r.stdout)
    s = j["end"]["sum"]
    return s["packets"] / s["seconds"], (s["packets"] - s["lost_packets"]) / s["seconds"]


def iptables_rules(pairs):
    lines = ["*filter", ":SLUICE_BENCH - [0:0]", "-A OUTPUT -j SLUICE_BENCH",
             "-A SLUICE_BENCH -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    for a, p in pairs:
        lines.append("-A SLUICE_BENCH -d %s/32 -p udp --dport %d -j ACCEPT" % (a, p))
        lines.append("-A SLUICE_BENCH -d %s/32 -p tcp --dport %d -j ACCEPT" % (a, p))
    lines += ["-A SLUICE_BENCH -j DROP", "COMMIT", ""]
    return "\n".join(lines)


def main():
    results = {"apply": {}, "pps": []}
    d = tempfile.mkdtemp(prefix="sluice-enforce-bench-")
    teardown()
    setup()
    try:
        srv = subprocess.Popen(["ip", "netns", "exec", RCV, "iperf3", "-s", "-B", RCV_ADDR],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        target = [(RCV_ADDR, PORT)]

        # 1. apply times
        pol = policy_file(decoys(9999) + target, d)
        t0 = time.monotonic()
        sluice_enforce("apply", "--mode", "isolate", "--policy", pol, "--interface", "eth0")
        results["apply"]["10k address rules (one transaction)"] = time.monotonic() - t0
        scripts = learn_script([("203.0.113.%d" % (i % 256), 2000 + i // 256)
                                for i in range(10000)])
        t0 = time.monotonic()
        for s in scripts:
            sh("nft", "-f", "-", ns=SND, input=s)
        results["apply"]["10k learned addresses (%d transactions)" % len(scripts)] = \
            time.monotonic() - t0
        t0 = time.monotonic()
        sluice_enforce("apply", "--mode", "isolate", "--policy", pol, "--interface", "eth0")
        results["apply"]["re-apply over 20k elements"] = time.monotonic() - t0
        sluice_enforce("remove")

        # 2. packets per second
        results["pps"].append(("no rules", 0, iperf_both()))
        for n in SIZES:
            pairs = decoys(n - 1) + target
            pol = policy_file(pairs, d)
            sluice_enforce("apply", "--mode", "isolate", "--policy", pol, "--interface", "eth0")
            results["pps"].append(("sluice isolate, static set", n, iperf_both()))
            sluice_enforce("apply", "--mode", "isolate", "--interface", "eth0")
            for s in learn_script(pairs):
                sh("nft", "-f", "-", ns=SND, input=s)
            results["pps"].append(("sluice isolate, learned set", n, iperf_both()))
            sluice_enforce("remove")
            sh("iptables-legacy-restore", "--noflush", ns=SND, input=iptables_rules(decoys(n - 1)
                                                                                     + target))
            results["pps"].append(("iptables chain (legacy)", n, iperf_both()))
            sh("iptables-legacy", "-D", "OUTPUT", "-j", "SLUICE_BENCH", ns=SND)
            sh("iptables-legacy", "-F", "SLUICE_BENCH", ns=SND)
            sh("iptables-legacy", "-X", "SLUICE_BENCH", ns=SND)
        srv.kill()
    finally:
        teardown()
    print(json.dumps(results))


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/enforce.sh: needs root (network namespaces)")
    main()
