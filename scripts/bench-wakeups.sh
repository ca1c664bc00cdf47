#!/usr/bin/env bash
# Context switches and CPU per message of one warren-server binary, one message at a time
# (warren-perf --batch 1, at --rate 2000 and unlimited), 5 s each, autoack 1->1->1, 16 B.
# Context switches: voluntary_ctxt_switches summed over the server's threads (/proc/PID/task/*/status).
# Usage: scripts/bench-wakeups.sh SERVER_BINARY PORT LABEL     (PERF=path of warren-perf)
set -euo pipefail
S=$1; P=$2; L=$3
PERF=${PERF:-$(dirname "$0")/../target/release/warren-perf}
d=$(mktemp -d /tmp/warren-wakeups.XXXXXX)
"$S" --amqp-port "$P" --data-dir "$d" >/dev/null 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null; wait $SP 2>/dev/null; rm -rf "$d"' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$P") 2>/dev/null && break; sleep 0.2; done
cs() { cat /proc/$SP/task/*/status | awk '/^voluntary_ctxt_switches/ {s+=$2} END {print s}'; }
ticks() { awk '{print $14+$15}' "/proc/$SP/stat"; }
for mode in "--rate 2000 --batch 1" "--batch 1"; do
  c0=$(cs); t0=$(ticks)
  # shellcheck disable=SC2086
  out=$("$PERF" --uri "amqp://guest:guest@127.0.0.1:$P/%2f" -a -z 5 --quiet --json $mode | tail -1)
  c1=$(cs); t1=$(ticks)
  n=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['received'])" "$out")
  p=$(python3 -c "import json,sys; v=json.loads(sys.argv[1]); print(v['latency_us']['p50'], v['latency_us']['p99'])" "$out")
  echo "$L [$mode] received $n, context switches/msg $(awk -v a=$((c1-c0)) -v n="$n" 'BEGIN{printf "%.2f", a/n}'), CPU µs/msg $(awk -v a=$((t1-t0)) -v n="$n" -v t="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", a/t*1e6/n}'), latency p50/p99 µs $p"
done
