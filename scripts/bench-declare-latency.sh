#!/usr/bin/env bash
# Latency of a message flow beside durable definition changes, side by side: a 1 -> 1 -> 1 flow
# at a fixed rate (warren-perf's raw client, 16 B, one message per write, autoack) is measured
# alone, then beside a pika client that declares a durable queue and a durable exchange, binds
# them, and deletes both, in a loop, on another connection. Prints the flow's publish->deliver
# p50/p95/p99 for both runs and the declarer's definition changes per second, per broker.
#
# Usage: scripts/bench-declare-latency.sh
# Environment: DURATION (8), RATE (5000), ONLY=warren|rabbitmq, WARREN_PORT (5674), RMQ_URI,
#   SKIP_BUILD=1, SERVER / PERF (other binaries), PYTHON (a python with pika; default: a venv
#   made once under target/bench/venv with pip's pika).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

DURATION=${DURATION:-8}
side_by_side_env
RATE=${RATE:-5000}
if [ -z "${PYTHON:-}" ]; then
  PYTHON=$root/target/bench/venv/bin/python
  if ! "$PYTHON" -c 'import pika' 2>/dev/null; then
    python3 -m venv "$root/target/bench/venv" >&2
    "$root/target/bench/venv/bin/pip" install -q pika >&2
  fi
fi
side_by_side_begin declare-latency

declarer() { # URI SECONDS
  "$PYTHON" - "$1" "$2" <<'PY'
import sys, time, pika
uri, seconds = sys.argv[1], float(sys.argv[2])
ch = pika.BlockingConnection(pika.URLParameters(uri)).channel()
n, t0 = 0, time.time()
while time.time() < t0 + seconds:
    q = x = f"bench-durable-{n % 50}"
    ch.queue_declare(q, durable=True)
    ch.exchange_declare(x, "direct", durable=True)
    ch.queue_bind(q, x, "k")
    ch.queue_delete(q)
    ch.exchange_delete(x)
    n += 1
print(round(5 * n / (time.time() - t0)))
PY
}

echo "| broker | run | definition changes/s | p50 µs | p95 µs | p99 µs |"
echo "|---|---|---:|---:|---:|---:|"
for b in "${brokers[@]}"; do
  for run in alone beside-declarer; do
    log="$outdir/$b-$run.log"
    changes=-
    dpid=
    if [ "$run" = beside-declarer ]; then
      declarer "$(uri_of "$b")" "$((DURATION + 1))" >"$outdir/$b-declarer.out" 2>&1 &
      dpid=$!
      sleep 0.5
    fi
    "$PERF" --uri "$(uri_of "$b")" --client raw --duration "$DURATION" --json --quiet \
      -x 1 -y 1 -s 16 -a --batch 1 --rate "$RATE" >"$log" 2>&1 || echo "warren-perf failed on $b (see $log)" >&2
    if [ -n "$dpid" ]; then
      wait "$dpid" || echo "the declarer failed on $b (see $outdir/$b-declarer.out)" >&2
      changes=$(tail -n 1 "$outdir/$b-declarer.out")
    fi
    echo "| $b | $run | $changes | $(json_get "$log" latency_us.p50) | $(json_get "$log" latency_us.p95) | $(json_get "$log" latency_us.p99) |"
  done
done
echo
echo "client: warren-perf --client raw at $RATE msg/s, ${DURATION}s per run, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ); logs: $outdir"
