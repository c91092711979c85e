#!/usr/bin/env bash
# Start-up overhead of `sluice run -- true` (issue 6 item 8) against plain
# `true` and `bwrap --unshare-net --dev-bind / / true`, in the same run, with
# hyperfine. Everything runs inside one network namespace this script makes
# (sluice run's veth pair lives there) and always deletes; its resolv.conf
# names a documentation address, so nothing can leave even by mistake.
#
#   bench/run-startup.sh              # ~1 min
#   RUNS=20 bench/run-startup.sh
#   bench/run-startup.sh --append     # also append the table to bench/RESULTS.md
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${SLUICE_BIN:-$repo/build/sluice}")
runs=${RUNS:-30}
append=false
[ "${1:-}" = "--append" ] && append=true

[ "$(id -u)" -eq 0 ] || { echo "bench/run-startup.sh: needs root (network namespaces)" >&2; exit 2; }
[ -x "$bin" ] || { echo "bench/run-startup.sh: build sluice first (make build)" >&2; exit 1; }
# Bench-only dependencies: not needed by make test.
for p in hyperfine bubblewrap; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    echo "bench/run-startup.sh: installing $p"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  fi
done

# A machine's default environment: no bundle forced on OpenSSL (sluice then
# reads the hashed root directory lazily, docs/TLS.md).
unset SSL_CERT_FILE

ns="slbench$$"
work=$(mktemp -d)
cleanup() {
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "/etc/netns/$ns" "$work"
}
trap cleanup EXIT INT TERM
ip netns add "$ns"
ip -n "$ns" link set lo up
mkdir -p "/etc/netns/$ns"
echo "nameserver 192.0.2.53" > "/etc/netns/$ns/resolv.conf"

cmds=(-n true true
      -n "bwrap --unshare-net" "bwrap --unshare-net --dev-bind / / true"
      -n "sluice run --no-intercept" "$bin run --quiet --no-intercept -- true"
      -n "sluice run" "$bin run --quiet -- true")
if "$bin" run --help 2>&1 | grep -q -- '--mode'; then
  cmds+=(-n "sluice run --mode rootless" "$bin run --quiet --mode rootless -- true")
fi

# -N: no intermediate shell, so `true` is measured as itself.
ip netns exec "$ns" env TMPDIR="$work" hyperfine -N --warmup 3 --runs "$runs" \
  --export-json "$work/startup.json" "${cmds[@]}" >&2

table=$(/usr/bin/python3 - "$work/startup.json" "$runs" <<'PY'
import json, sys, time
res = json.load(open(sys.argv[1]))["results"]
by = {r["command"]: r for r in res}
base = by["true"]["median"]
bw = by["bwrap --unshare-net"]["median"]
print("bench/run-startup.sh, %s, hyperfine %s runs each (3 warm-up), one network namespace, "
      "2 vCPUs shared.\n" % (time.strftime("%Y-%m-%d %H:%M"), sys.argv[2]))
print("| command | median ms | mean ± sd ms | min ms | vs `true` | vs bwrap |")
print("|---|---:|---:|---:|---:|---:|")
for r in res:
    m = r["median"]
    print("| `%s` | %.1f | %.1f ± %.1f | %.1f | %.0f× | %.1f× |" % (
        r["command"], m * 1e3, r["mean"] * 1e3, r["stddev"] * 1e3, r["min"] * 1e3,
        m / base, m / bw))
PY
)
echo "$table"
if $append; then
  printf '\n%s\n' "$table" >> "$repo/bench/RESULTS.md"
  echo "(appended to bench/RESULTS.md)"
fi
