#!/usr/bin/env bash
# A/B of warren-server builds on the persistent scenario of scripts/bench-cpu.sh (1 KiB
# persistent, durable queue, confirms with 256 outstanding, prefetch 100, manual ack every 50
# with multiple=true): the builds are run in turn, PAIRS times, each on a fresh data directory, so
# that every pair sees the same machine state. Per run it prints confirmed msg/s, the broker's CPU
# per confirmed message (utime+stime of /proc/PID/stat), confirm latency p50/p99, disk bytes
# written per body byte (write_bytes of /proc/PID/io) and the store writer's mean batch (ops) and
# commit time (`warrenctl store_status`).
#
# Usage: scripts/bench-persistent-ab.sh NAME=SERVER_BINARY... 
# Environment: PAIRS (3), DURATION (8), PORT (5796), PERF (target/release/warren-perf),
#   WARRENCTL (target/release/warrenctl), RATE (fixed publish rate, msg/s; default unlimited).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
PAIRS=${PAIRS:-3}
DURATION=${DURATION:-8}
PORT=${PORT:-5796}
PERF=${PERF:-$root/target/release/warren-perf}
WARRENCTL=${WARRENCTL:-$root/target/release/warrenctl}
TCK=$(getconf CLK_TCK)
rate_args=()
[ -n "${RATE:-}" ] && rate_args=(--rate "$RATE")
outdir=$root/target/bench/pers-ab-$(date +%Y%m%d-%H%M%S)
mkdir -p "$outdir"
pid=
datadir=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
  [ -n "$datadir" ] && rm -rf "$datadir"
  return 0
}
trap cleanup EXIT
stat_of() { "$WARRENCTL" --data-dir "$datadir" store_status 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }

echo "| run | build | confirmed msg/s | broker CPU µs/msg | confirm p50/p99 µs | disk bytes per body byte | avg batch ops | avg commit µs |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for i in $(seq 1 "$PAIRS"); do
  for spec in "$@"; do
    name=${spec%%=*}; server=${spec#*=}
    if port_open "$PORT"; then echo "port $PORT is in use" >&2; exit 1; fi
    datadir=$(mktemp -d /tmp/warren-pers-ab.XXXXXX)
    "$server" --amqp-port "$PORT" --data-dir "$datadir" >"$outdir/$name-$i.server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do port_open "$PORT" && break; sleep 0.1; done
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); w0=$(awk '/^write_bytes:/ {print $2}' "/proc/$pid/io")
    log=$outdir/$name-$i.log
    "$PERF" --uri "amqp://guest:guest@127.0.0.1:$PORT/%2f" --client raw --duration "$DURATION" --json --quiet \
      -x 1 -y 1 -s 1024 --persistent --confirm 256 -q 100 --multi-ack 50 "${rate_args[@]}" >"$log" 2>&1 || echo "warren-perf failed ($log)" >&2
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat"); w1=$(awk '/^write_bytes:/ {print $2}' "/proc/$pid/io")
    n=$(json_get "$log" confirmed)
    cpu=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$n" 'BEGIN{ if (n > 0) printf "%.2f", d / t * 1e6 / n; else print "n/a" }')
    wa=$(awk -v w=$((w1 - w0)) -v n="$n" 'BEGIN{ if (n > 0) printf "%.2f", w / (n * 1024); else print "n/a" }')
    echo "| $i | $name | $(json_get "$log" confirmed_rate) | $cpu | $(json_get "$log" confirm_latency_us.p50)/$(json_get "$log" confirm_latency_us.p99) | $wa | $(stat_of avg_batch_ops) | $(stat_of avg_commit_us) |"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    rm -rf "$datadir"; datadir=
  done
done
echo
echo "${DURATION}s per run, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ); logs: $outdir"
