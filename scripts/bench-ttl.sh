#!/usr/bin/env bash
# Mass-expiry benchmark, Warren vs the reference RabbitMQ 3.10 node (same machine, same client):
# an unrelated flow (1 producer at $FLOW_RATE msg/s, 1 consumer with acks, 16-byte transient
# messages, vhost ttlbench-flow) runs for the whole test while, in another vhost (ttlbench-big),
# $FILL messages are published into one queue that has a message TTL ($TTL_MS, set by a policy)
# and no consumer; they all expire TTL_MS after they were published.
# Printed per broker: the flow's publish->deliver p99 (per-second p99s: median and worst) before
# the fill, during the fill, during the expiry and after; how long the expiry took (from the
# first expiry until the queue is empty, polled once a second) and the broker's CPU time (from
# /proc/PID/stat) during it, with the flow's own share (its rate measured before the fill)
# subtracted per expired message.
# Usage: scripts/bench-ttl.sh [warren|rabbitmq]...   (default: both). SKIP_BUILD=1 uses the
# existing release binaries. Logs under target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

FILL=${FILL:-1000000}
TTL_MS=${TTL_MS:-90000}
FLOW_RATE=${FLOW_RATE:-5000}
WARREN_PORT=${WARREN_PORT:-5674}
RMQ_PORT=${RMQ_PORT:-5673}
export HOME=${RMQ_REF_BASE:-/tmp/rmq-ref}
RMQCTL=(rabbitmqctl -n ref@localhost)
PERF=${PERF:-$root/target/release/warren-perf}
SERVER=${SERVER:-$root/target/release/warren-server}
CTL=${CTL:-$root/target/release/warrenctl}
brokers=("$@")
[ ${#brokers[@]} -eq 0 ] && brokers=(warren rabbitmq)

if [ -z "${SKIP_BUILD:-}" ]; then
  nice -n 10 cargo build --release --bin warren-server --bin warrenctl --bin warren-perf >&2
fi
outdir=$root/target/bench/ttl-$(date +%Y%m%d-%H%M%S)
mkdir -p "$outdir"
datadir=$(mktemp -d /tmp/warren-bench-ttl.XXXXXX)
warren_pid=
flow_pid=
cleanup() {
  [ -n "$flow_pid" ] && kill "$flow_pid" 2>/dev/null || true
  [ -n "$warren_pid" ] && kill "$warren_pid" 2>/dev/null && wait "$warren_pid" 2>/dev/null || true
  rm -rf "$datadir"
  "${RMQCTL[@]}" -q delete_vhost ttlbench-big >/dev/null 2>&1 || true
  "${RMQCTL[@]}" -q delete_vhost ttlbench-flow >/dev/null 2>&1 || true
}
trap cleanup EXIT

now() { date +%s.%N; }

run_one() { # $1: warren|rabbitmq
  local broker=$1 port ctl pid
  if [ "$broker" = warren ]; then
    port=$WARREN_PORT
    rm -rf "${datadir:?}"/*
    "$SERVER" --amqp-port "$port" --bind 127.0.0.1 --data-dir "$datadir" >>"$outdir/warren-server.log" 2>&1 &
    warren_pid=$!
    for _ in $(seq 1 100); do port_open "$port" && break; sleep 0.1; done
    ctl=("$CTL" --data-dir "$datadir")
    pid=$warren_pid
  else
    port=$RMQ_PORT
    port_open "$port" || "$root/scripts/rabbitmq-ref.sh" start >&2
    ctl=("${RMQCTL[@]}")
    pid=$(pid_on_port "$port")
  fi
  for vh in ttlbench-big ttlbench-flow; do
    "${ctl[@]}" -q delete_vhost "$vh" >/dev/null 2>&1 || true
    "${ctl[@]}" -q add_vhost "$vh" >/dev/null
    "${ctl[@]}" -q set_permissions -p "$vh" guest '.*' '.*' '.*' >/dev/null
  done
  "${ctl[@]}" -q set_policy -p ttlbench-big --apply-to queues ttl '^perf-q-0$' "{\"message-ttl\":$TTL_MS}" >/dev/null
  local base="amqp://guest:guest@127.0.0.1:$port"
  local log=$outdir/$broker
  # Whole test: 10 s baseline, the fill, the TTL, the expiry (about as long as the fill), 20 s after.
  local t0; t0=$(now)
  "$PERF" --uri "$base/ttlbench-flow" -x 1 -y 1 -r "$FLOW_RATE" -q 100 -z 100000 >"$log-flow.log" 2>&1 &
  flow_pid=$!
  sleep 2
  # The broker's CPU for the flow alone (subtracted from the CPU during the expiry).
  local b0 b1 bt0 bt1; b0=$(cpu_ticks "$pid"); bt0=$(now)
  sleep 8
  b1=$(cpu_ticks "$pid"); bt1=$(now)
  local fill_start; fill_start=$(now)
  "$PERF" --uri "$base/ttlbench-big" -x 1 -y 0 -c 1000 -C "$FILL" -z 100000 --keep-queues --quiet >"$log-fill.log" 2>&1
  local fill_end; fill_end=$(now)
  # Wait for the first expiry, then watch the queue drain (its length once a second).
  sleep "$(python3 -c "print(max(0, $fill_start + $TTL_MS / 1000 - $(now)))")"
  local exp_start; exp_start=$(now)
  local cpu0; cpu0=$(cpu_ticks "$pid")
  local left=1
  while [ "${left:-1}" != 0 ]; do
    sleep 1
    left=$("${ctl[@]}" -q list_queues -p ttlbench-big name messages 2>/dev/null | awk '$1 == "perf-q-0" {print $2}')
    echo "$(now) ${left:-?}" >>"$log-drain.log"
    [ "$(python3 -c "print(int($(now) - $exp_start > 600))")" = 1 ] && { echo "$broker: queue not empty after 600 s" >&2; break; }
  done
  local exp_end; exp_end=$(now)
  local cpu1; cpu1=$(cpu_ticks "$pid")
  sleep 20
  kill "$flow_pid" 2>/dev/null; wait "$flow_pid" 2>/dev/null || true
  flow_pid=
  python3 - "$broker" "$log-flow.log" "$t0" "$fill_start" "$fill_end" "$exp_start" "$exp_end" "$cpu0" "$cpu1" "$(getconf CLK_TCK)" "$FILL" "$b0" "$b1" "$bt0" "$bt1" <<'PY'
import re, statistics, sys
broker, flow, t0, fs, fe, es, ee, c0, c1, hz, fill, b0, b1, bt0, bt1 = sys.argv[1:]
t0, fs, fe, es, ee, bt0, bt1 = map(float, (t0, fs, fe, es, ee, bt0, bt1))
rows = []
for line in open(flow):
    m = re.match(r"time: ([\d.]+)s, sent: (\d+) msg/s, received: (\d+) msg/s.*latency p50/p99: (\d+)/(\d+)", line)
    if m:
        rows.append((float(m[1]) + t0, int(m[3]), int(m[5])))
def window(a, b):
    p = [r[2] for r in rows if a <= r[0] < b and r[1] > 0]
    return f"{statistics.median(p) / 1000:.1f} / {max(p) / 1000:.1f}" if p else "n/a"
cpu = (int(c1) - int(c0)) / int(hz)
flow_cpu = (int(b1) - int(b0)) / int(hz) / (bt1 - bt0) * (ee - es)
net = max(0.0, cpu - flow_cpu)
print(f"| {broker} | {fe - fs:.1f} | {window(t0 + 2, fs)} | {window(fs, fe)} | {window(es - 1, ee)} | {window(ee + 2, ee + 20)} "
      f"| {ee - es:.1f} | {cpu:.1f} ({flow_cpu:.1f}) | {net / int(fill) * 1e6:.2f} |")
PY
  for vh in ttlbench-big ttlbench-flow; do "${ctl[@]}" -q delete_vhost "$vh" >/dev/null 2>&1 || true; done
  if [ "$broker" = warren ]; then kill "$warren_pid"; wait "$warren_pid" 2>/dev/null || true; warren_pid=; fi
}

echo "Flow: 1 producer at $FLOW_RATE msg/s + 1 consumer (acks, prefetch 100), 16 B; $FILL messages with message-ttl $TTL_MS ms (policy) in another vhost."
echo "p99 columns: median / worst of the per-second p99s, in ms. Load average at start: $(cut -d" " -f1-3 /proc/loadavg)."
echo
echo "| broker | fill s | p99 before | p99 during fill | p99 during expiry | p99 after | expiry s | broker CPU s during expiry (of which the flow's) | CPU µs per expired msg (flow's CPU subtracted) |"
echo "|---|---|---|---|---|---|---|---|---|"
for b in "${brokers[@]}"; do run_one "$b"; done
echo
echo "logs: $outdir"
