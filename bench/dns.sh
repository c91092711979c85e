#!/usr/bin/env bash
# DNS filter benchmark: dnsperf against `sluice proxy --dns` and against
# dnsmasq forwarding the same zone, in the same run, in a network namespace
# of its own (loopback only; removed on exit).
#
#   bench/dns.sh                 # 3 rounds of 10 s per server (~2 min)
#   DNS_BENCH_SECONDS=5 DNS_BENCH_ROUNDS=1 bench/dns.sh   # a quick look
#   bench/dns.sh --append        # also append the table to bench/RESULTS.md
#
# Topology (all on the namespace's lo):
#   127.0.0.53  dnsmasq "upstream": answers bench.test from a hosts file
#   127.0.0.2   dnsmasq forwarder to 127.0.0.53, cache off  (the peer)
#   127.0.0.3   sluice --dns, upstream 127.0.0.53, logging on (the subject)
# Neither forwarder caches, so both do the same work per query: receive,
# forward, wait, answer. dnsperf keeps 100 queries outstanding; -v gives
# each query's latency, from which p50/p99 are computed. Rounds alternate
# sluice and dnsmasq; the table shows the median round of each.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${SLUICE_BIN:-$repo/build/sluice}
seconds=${DNS_BENCH_SECONDS:-10}
rounds=${DNS_BENCH_ROUNDS:-3}
names=${DNS_BENCH_NAMES:-1000}
append=false
[ "${1:-}" = "--append" ] && append=true

[ "$(id -u)" -eq 0 ] || { echo "bench/dns.sh: needs root (network namespace)" >&2; exit 2; }
[ -x "$bin" ] || { echo "bench/dns.sh: build sluice first (make build)" >&2; exit 1; }
for p in dnsperf dnsmasq-base; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    echo "bench/dns.sh: installing $p"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p"
  fi
done

ns=sldnsb$$
dir=$(mktemp -d /tmp/sluice-dnsbench-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
run() { ip netns exec "$ns" "$@"; }

# The zone: NAMES names, each with one A and one AAAA (documentation ranges,
# which the bench policy lists in reach_ranges). Queries: every name, A and AAAA.
for ((i = 0; i < names; i++)); do
  printf '192.0.2.%d h%d.bench.test\n2001:db8::%x h%d.bench.test\n' $((i % 250 + 1)) "$i" "$i" "$i"
done >"$dir/hosts"
for ((i = 0; i < names; i++)); do printf 'h%d.bench.test A\nh%d.bench.test AAAA\n' "$i" "$i"; done \
  >"$dir/queries"

common=(--keep-in-foreground --no-resolv --no-hosts --bind-interfaces --port=53 --user=root
        --group=root --cache-size=0)
run dnsmasq "${common[@]}" --listen-address=127.0.0.53 --addn-hosts="$dir/hosts" \
  --local=/bench.test/ --pid-file="$dir/up.pid" >"$dir/up.log" 2>&1 &
pids+=($!)
run dnsmasq "${common[@]}" --listen-address=127.0.0.2 --server=127.0.0.53 \
  --pid-file="$dir/fwd.pid" >"$dir/fwd.log" 2>&1 &
pids+=($!)
cat >"$dir/policy.json" <<'EOF'
{"default": "deny", "rules": [{"allow": "*.bench.test"}],
 "reach_ranges": ["192.0.2.0/24", "2001:db8::/32"],
 "dns": {"upstream": ["127.0.0.53"]}}
EOF
run "$bin" proxy --policy "$dir/policy.json" --listen 127.0.0.3:8080 --admin none \
  --dns 127.0.0.3:53 --dns-rate 0 --log "$dir/sluice.log" >"$dir/sluice.err" 2>&1 &
pids+=($!)

# Wait until all three answer.
for addr in 127.0.0.53 127.0.0.2 127.0.0.3; do
  for _ in $(seq 50); do
    run dig +short +time=1 +tries=1 "@$addr" h1.bench.test A 2>/dev/null | grep -q 192.0.2.2 && break
    sleep 0.1
  done
  run dig +short +time=1 +tries=1 "@$addr" h1.bench.test A | grep -q 192.0.2.2 ||
    { echo "bench/dns.sh: $addr does not answer" >&2; cat "$dir"/*.log "$dir/sluice.err" >&2; exit 1; }
done

# One dnsperf run: prints "qps p50_ms p99_ms lost".
measure() {
  local out="$dir/perf.out"
  run dnsperf -s "$1" -d "$dir/queries" -l "$seconds" -q 100 -v >"$out" 2>&1
  local qps lost
  qps=$(sed -n 's/^ *Queries per second: *\([0-9.]*\).*/\1/p' "$out")
  lost=$(sed -n 's/^ *Queries lost: *\([0-9]*\).*/\1/p' "$out")
  awk '/^> /{print $NF}' "$out" | sort -g >"$dir/lat"
  local n p50 p99
  n=$(wc -l <"$dir/lat")
  p50=$(sed -n "$(( (n * 50 + 99) / 100 ))p" "$dir/lat")
  p99=$(sed -n "$(( (n * 99 + 99) / 100 ))p" "$dir/lat")
  awk -v q="$qps" -v a="$p50" -v b="$p99" -v l="$lost" \
    'BEGIN { printf "%.0f %.3f %.3f %d\n", q, a * 1000, b * 1000, l }'
}

: >"$dir/results"
echo "dnsperf: $seconds s per run, $rounds rounds, $((2 * names)) distinct queries, 100 outstanding"
for ((r = 1; r <= rounds; r++)); do
  for who in direct:127.0.0.53 dnsmasq:127.0.0.2 sluice:127.0.0.3; do
    res=$(measure "${who#*:}")
    echo "round $r ${who%%:*}: qps p50_ms p99_ms lost = $res"
    echo "${who%%:*} $res" >>"$dir/results"
  done
done

# The median round (by qps) of each server.
median() { grep "^$1 " "$dir/results" | sort -k2 -g | awk '{a[NR]=$0} END {print a[int((NR + 1) / 2)]}'; }
read -r _ d_qps d_p50 d_p99 d_lost < <(median direct)
read -r _ m_qps m_p50 m_p99 m_lost < <(median dnsmasq)
read -r _ s_qps s_p50 s_p99 s_lost < <(median sluice)
ratio=$(awk -v s="$s_qps" -v m="$m_qps" 'BEGIN { printf "%.2f", s / m }')
added=$(awk -v s="$s_p99" -v m="$m_p99" 'BEGIN { printf "%+.3f", s - m }')
added_direct=$(awk -v s="$s_p99" -v d="$d_p99" 'BEGIN { printf "%+.3f", s - d }')

table=$(cat <<EOF
| server | queries/s | p50 ms | p99 ms | lost |
|---|---:|---:|---:|---:|
| upstream dnsmasq, asked directly (reference) | $d_qps | $d_p50 | $d_p99 | $d_lost |
| dnsmasq forwarding, cache off (peer) | $m_qps | $m_p50 | $m_p99 | $m_lost |
| sluice --dns (policy, checks, learning, log) | $s_qps | $s_p50 | $s_p99 | $s_lost |

sluice / dnsmasq queries/s: **${ratio}×**; added p99 latency: **${added} ms** against
dnsmasq, ${added_direct} ms against the upstream asked directly.
EOF
)
echo
echo "$table"

if $append; then
  results="$repo/bench/RESULTS.md"
  [ -f "$results" ] || printf '# Benchmark results\n' >"$results"
  {
    printf '\n## DNS filter\n\n'
    printf 'bench/dns.sh, %s, %s s x %s rounds (median round), %s queries over %s names (A and AAAA),\n' \
      "$(date -u +%Y-%m-%d)" "$seconds" "$rounds" "$((2 * names))" "$names"
    printf 'dnsperf 100 outstanding, all in one network namespace on loopback, %s CPUs.\n\n' "$(nproc)"
    echo "$table"
  } >>"$results"
  echo "appended to $results"
fi
