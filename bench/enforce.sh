#!/usr/bin/env bash
# Enforcement benchmark: time to apply sluice's isolate ruleset with 10k
# address rules plus 10k learned addresses, and packets/s through the
# output path with 10, 1k and 10k elements against an iptables chain with
# the same rules. Everything runs in two network namespaces of its own
# (removed on exit); see bench/enforce_bench.py.
#
#   bench/enforce.sh              # ~1.5 min
#   ENFORCE_BENCH_SECONDS=2 ENFORCE_BENCH_SIZES=10,10000 bench/enforce.sh
#   bench/enforce.sh --append     # also append the tables to bench/RESULTS.md
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export SLUICE_BIN=${SLUICE_BIN:-$repo/build/sluice}
append=false
[ "${1:-}" = "--append" ] && append=true

[ "$(id -u)" -eq 0 ] || { echo "bench/enforce.sh: needs root (network namespaces)" >&2; exit 2; }
[ -x "$SLUICE_BIN" ] || { echo "bench/enforce.sh: build sluice first (make build)" >&2; exit 1; }
for p in iperf3 iptables; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    echo "bench/enforce.sh: installing $p"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  fi
done

json=$(/usr/bin/python3 "$repo/bench/enforce_bench.py")
table=$(/usr/bin/python3 - "$json" <<'PY'
import json, subprocess, sys, time
r = json.loads(sys.argv[1])
nft = subprocess.run(["nft", "--version"], stdout=subprocess.PIPE, text=True).stdout.split()
print("Run of %s, kernel %s, %s." % (time.strftime("%Y-%m-%d %H:%M"),
      open("/proc/sys/kernel/osrelease").read().strip(), " ".join(nft[:2])))
print()
print("| apply | seconds |")
print("|---|---|")
for k, v in r["apply"].items():
    print("| %s | %.2f |" % (k, v))
print()
base = r["pps"][0][2]
print("| ruleset | elements | one flow: pkt/s | vs no rules | untracked: pkt/s | vs no rules |")
print("|---|---|---|---|---|---|")
for name, n, (flow, untracked) in r["pps"]:
    print("| %s | %s | %s | %.2f× | %s | %.2f× |" % (
        name, "{:,}".format(n) if n else "—", "{:,.0f}".format(flow[0]), flow[0] / base[0][0],
        "{:,.0f}".format(untracked[0]), untracked[0] / base[1][0]))
PY
)
echo "$table"
if $append; then
  { echo; echo "## Enforcement"; echo
    echo "\`bench/enforce.sh\`: 64-byte UDP datagrams from iperf3 through the sender's output"
    echo "hook, the allowed destination being one element among N (two namespaces, one veth)."
    echo "\"One flow\": conntrack accepts the flow's packets before any set lookup; \"untracked\":"
    echo "a notrack rule makes every datagram walk the chain to its element (a new flow's cost)."
    echo; echo "$table"; } >> "$repo/bench/RESULTS.md"
fi
