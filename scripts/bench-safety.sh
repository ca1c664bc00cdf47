#!/usr/bin/env bash
# Resource-safety benchmark, Warren vs the reference RabbitMQ 3.10 node (same machine, same client):
#   alarm  1 producer, unlimited rate, 1 KiB transient, NO consumer, $ALARM_SECS s (60) with the
#          memory high watermark at 512MiB: peak RSS, whether publishers were blocked (state
#          blocked in list_connections), messages published vs in the queue afterwards.
#   flow   1 producer, unlimited rate, 1 KiB transient, 1 autoack consumer, $FLOW_SECS s (30):
#          msgs/s, publish->deliver p50/p99, peak RSS, RSS after the queue is deleted.
#   backlog 1 producer, 1 KiB transient, NO consumer, default watermark: $BACKLOG_STEPS steps of
#          $BACKLOG_STEP messages (confirmed) into one non-durable queue; broker RSS after each
#          step (RSS vs backlog size), then the backlog drained and the queue deleted.
# Usage: scripts/bench-safety.sh [alarm|flow|backlog]...   (default: alarm flow). SKIP_BUILD=1 uses the existing
# release binaries. Output: a markdown table on stdout; logs under target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

ALARM_SECS=${ALARM_SECS:-60}
FLOW_SECS=${FLOW_SECS:-30}
BACKLOG_STEP=${BACKLOG_STEP:-250000}
BACKLOG_STEPS=${BACKLOG_STEPS:-8}
RMQ_VHOST=warren-bench-safety
WARREN_PORT=${WARREN_PORT:-5674}
RMQ_URI=${RMQ_URI:-amqp://guest:guest@127.0.0.1:5673/%2f}
RMQ_PORT=$(port_of_uri "$RMQ_URI")
export HOME=${RMQ_REF_BASE:-/tmp/rmq-ref}
RMQCTL=(rabbitmqctl -n ref@localhost)
PERF=${PERF:-$root/target/release/warren-perf}
SERVER=${SERVER:-$root/target/release/warren-server}
CTL=${CTL:-$root/target/release/warrenctl}
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(alarm flow)
WARREN_CONFIG=${WARREN_CONFIG:-}  # extra config lines for Warren's flow run (e.g. tcp_recbuf)

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --bin warren-server --bin warrenctl --bin warren-perf >&2
fi
outdir=$root/target/bench/safety-$(date +%Y%m%d-%H%M%S)
mkdir -p "$outdir"
datadir=$(mktemp -d /tmp/warren-bench-safety.XXXXXX)
warren_pid=
cleanup() {
  [ -n "$warren_pid" ] && kill "$warren_pid" 2>/dev/null && wait "$warren_pid" 2>/dev/null || true
  rm -rf "$datadir"
  "${RMQCTL[@]}" set_vm_memory_high_watermark 0.4 >/dev/null 2>&1 || true
}
trap cleanup EXIT
port_open "$RMQ_PORT" || "$root/scripts/rabbitmq-ref.sh" start >&2

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

start_warren() { # $1: extra config lines
  [ -n "$warren_pid" ] && { kill "$warren_pid"; wait "$warren_pid" 2>/dev/null || true; }
  rm -rf "$datadir"/*
  printf '%s\n' "$1" >"$outdir/warren.toml"
  "$SERVER" --config "$outdir/warren.toml" --amqp-port "$WARREN_PORT" --data-dir "$datadir" >>"$outdir/warren-server.log" 2>&1 &
  warren_pid=$!
  for _ in $(seq 1 100); do port_open "$WARREN_PORT" && return 0; sleep 0.1; done
  echo "warren-server did not start" >&2; exit 1
}

# sample PID SECONDS STATEFILE BROKER: peak RSS (KiB) on stdout; connection states seen appended to STATEFILE
sample() {
  local pid=$1 secs=$2 states=$3 broker=$4 peak=0 end=$((SECONDS + $2 + 2))
  while [ $SECONDS -lt $end ]; do
    local r; r=$(rss_kib "$pid"); [ "${r:-0}" -gt "$peak" ] && peak=$r
    if [ "$broker" = warren ]; then
      "$CTL" --data-dir "$datadir" -q list_connections state 2>/dev/null | tail -n +2 >>"$states" || true
    else
      "${RMQCTL[@]}" -q list_connections state 2>/dev/null | tail -n +2 >>"$states" || true
    fi
    sleep 0.5
  done
  echo "$peak"
}

queue_depth() { # broker queue
  if [ "$1" = warren ]; then "$CTL" --data-dir "$datadir" -q list_queues name messages | awk -v q="$2" '$1==q {print $2}'
  else "${RMQCTL[@]}" -q list_queues -p "${QDEPTH_VHOST:-/}" name messages | awk -v q="$2" '$1==q {print $2}'; fi
}

declare -A res
# backlog BROKER PID URI: fills res[backlog.*.BROKER]
backlog() {
  local b=$1 pid=$2 uri=$3 log
  res[backlog.before.$b]=$(( $(rss_kib "$pid") / 1024 ))
  for i in $(seq 1 "$BACKLOG_STEPS"); do
    log=$outdir/backlog-$b-$i.log
    "$PERF" --uri "$uri" -x 1 -y 0 -s 1024 -c 1000 -C "$BACKLOG_STEP" -z 3600 --keep-queues --quiet --json >"$log" 2>&1 || true
    sleep 2
    res[backlog.rss$i.$b]=$(( $(rss_kib "$pid") / 1024 ))
    res[backlog.rate$i.$b]=$(json_get "$log" sent_rate 2>/dev/null || echo n/a)
    res[backlog.depth$i.$b]=$(queue_depth "$b" perf-q-0)
    if [ "$b" = warren ]; then res[backlog.disk$i.$b]=$(( $(du -sk "$datadir/transient" 2>/dev/null | cut -f1 || echo 0) / 1024 )); fi
  done
  local n=${res[backlog.depth$BACKLOG_STEPS.$b]:-0}
  "$PERF" --uri "$uri" -x 0 -y 1 --autoack --keep-queues -D "$n" -z 1800 --quiet --json >"$outdir/backlog-$b-drain.log" 2>&1 || true
  res[backlog.drained.$b]=$(json_get "$outdir/backlog-$b-drain.log" received 2>/dev/null || echo n/a)
  res[backlog.drainrate.$b]=$(json_get "$outdir/backlog-$b-drain.log" received_rate 2>/dev/null || echo n/a)
  if [ "$b" = warren ]; then "$CTL" --data-dir "$datadir" delete_queue perf-q-0 >/dev/null 2>&1 || true
  else "${RMQCTL[@]}" -q delete_queue -p "${QDEPTH_VHOST:-/}" perf-q-0 >/dev/null 2>&1 || true; fi
  sleep 3
  res[backlog.after.$b]=$(( $(rss_kib "$pid") / 1024 ))
}

for s in "${scenarios[@]}"; do
  if [ "$s" = backlog ]; then
    start_warren ""
    backlog warren "$warren_pid" "amqp://guest:guest@127.0.0.1:${WARREN_PORT}/%2f"
    "${RMQCTL[@]}" set_vm_memory_high_watermark 0.4 >/dev/null
    # A vhost of its own: the reference node is shared, and other runs use perf-q-0 in "/".
    "${RMQCTL[@]}" -q delete_vhost "$RMQ_VHOST" >/dev/null 2>&1 || true
    "${RMQCTL[@]}" -q add_vhost "$RMQ_VHOST" >/dev/null
    "${RMQCTL[@]}" -q set_permissions -p "$RMQ_VHOST" guest '.*' '.*' '.*' >/dev/null
    QDEPTH_VHOST=$RMQ_VHOST backlog rabbitmq "$(pid_on_port "$RMQ_PORT")" "${RMQ_URI%/*}/$RMQ_VHOST"
    "${RMQCTL[@]}" -q delete_vhost "$RMQ_VHOST" >/dev/null 2>&1 || true
    continue
  fi
  for b in warren rabbitmq; do
    if [ "$b" = warren ]; then
      if [ "$s" = alarm ]; then start_warren $'[memory]\nhigh_watermark = "512MiB"'; else start_warren "$WARREN_CONFIG"; fi
      pid=$warren_pid; uri="amqp://guest:guest@127.0.0.1:${WARREN_PORT}/%2f"
    else
      pid=$(pid_on_port "$RMQ_PORT"); uri=$RMQ_URI
      if [ "$s" = alarm ]; then "${RMQCTL[@]}" set_vm_memory_high_watermark absolute 512MiB >/dev/null; else "${RMQCTL[@]}" set_vm_memory_high_watermark 0.4 >/dev/null; fi
      "${RMQCTL[@]}" -q delete_queue perf-q-0 >/dev/null 2>&1 || true
    fi
    log=$outdir/$s-$b.log states=$outdir/$s-$b.states
    : >"$states"
    secs=$([ "$s" = alarm ] && echo "$ALARM_SECS" || echo "$FLOW_SECS")
    before=$(rss_kib "$pid")
    sample "$pid" "$secs" "$states" "$b" >"$outdir/$s-$b.peak" &
    sampler=$!
    if [ "$s" = alarm ]; then
      "$PERF" --uri "$uri" -x 1 -y 0 -s 1024 --duration "$secs" --keep-queues --json >"$log" 2>&1 || true
    else
      # Where the in-flight bytes wait (kernel socket queues), sampled in the middle of the run.
      port=$([ "$b" = warren ] && echo "$WARREN_PORT" || echo "$RMQ_PORT")
      (sleep 3; python3 "$root/scripts/socket-queues.py" "$port" "$((secs - 6))" >"$outdir/$s-$b.queues" 2>&1) &
      qsampler=$!
      "$PERF" --uri "$uri" -x 1 -y 1 -s 1024 --autoack --duration "$secs" --json >"$log" 2>&1 || true
      wait "$qsampler" || true
    fi
    wait "$sampler" || true
    res[$s.peak.$b]=$(( $(cat "$outdir/$s-$b.peak") / 1024 ))
    res[$s.before.$b]=$(( before / 1024 ))
    res[$s.blocked.$b]=$(grep -cE '^(blocked|flow)$' "$states" || true)
    res[$s.sent.$b]=$(json_get "$log" sent 2>/dev/null || echo n/a)
    res[$s.rate.$b]=$(json_get "$log" received_rate 2>/dev/null || echo n/a)
    res[$s.p50.$b]=$(json_get "$log" latency_us.p50 2>/dev/null || echo n/a)
    res[$s.p99.$b]=$(json_get "$log" latency_us.p99 2>/dev/null || echo n/a)
    if [ "$s" = alarm ]; then
      res[$s.depth.$b]=$(queue_depth "$b" perf-q-0)
      # Everything published is still there: drain it (the queue must give exactly that many).
      "$PERF" --uri "$uri" -x 0 -y 1 --autoack --keep-queues -D "${res[$s.depth.$b]:-0}" -z 300 --json >"$outdir/$s-$b.drain.log" 2>&1 || true
      res[$s.drained.$b]=$(json_get "$outdir/$s-$b.drain.log" received 2>/dev/null || echo n/a)
      if [ "$b" = warren ]; then "$CTL" --data-dir "$datadir" delete_queue perf-q-0 >/dev/null 2>&1 || true
      else "${RMQCTL[@]}" -q delete_queue perf-q-0 >/dev/null 2>&1 || true; fi
    fi
    sleep 2
    res[$s.after.$b]=$(( $(rss_kib "$pid") / 1024 ))
  done
done

echo
echo "| scenario | metric | Warren | RabbitMQ 3.10 |"
echo "|---|---|---|---|"
for s in "${scenarios[@]}"; do
  if [ "$s" = backlog ]; then
    echo "| backlog: messages in the queue | RSS MiB Warren | RSS MiB RabbitMQ 3.10 | Warren page files MiB | publish msg/s Warren | publish msg/s RabbitMQ |"
    echo "|---|---|---|---|---|---|"
    echo "| 0 | ${res[backlog.before.warren]} | ${res[backlog.before.rabbitmq]} | 0 | | |"
    for i in $(seq 1 "$BACKLOG_STEPS"); do
      echo "| ${res[backlog.depth$i.warren]:-n/a} / ${res[backlog.depth$i.rabbitmq]:-n/a} | ${res[backlog.rss$i.warren]} | ${res[backlog.rss$i.rabbitmq]} | ${res[backlog.disk$i.warren]:-n/a} | ${res[backlog.rate$i.warren]} | ${res[backlog.rate$i.rabbitmq]} |"
    done
    echo "| drained (msg, msg/s) | ${res[backlog.drained.warren]} at ${res[backlog.drainrate.warren]} | ${res[backlog.drained.rabbitmq]} at ${res[backlog.drainrate.rabbitmq]} | | | |"
    echo "| RSS 3 s after the queue was deleted | ${res[backlog.after.warren]} | ${res[backlog.after.rabbitmq]} | | | |"
    continue
  fi
  if [ "$s" = alarm ]; then
    for m in before peak after sent depth drained blocked; do
      echo "| alarm (no consumer, watermark 512MiB, ${ALARM_SECS}s) | $m | ${res[$s.$m.warren]:-n/a} | ${res[$s.$m.rabbitmq]:-n/a} |"
    done
  else
    for m in before peak after rate p50 p99 blocked; do
      echo "| flow (1 producer, 1 autoack consumer, ${FLOW_SECS}s) | $m | ${res[$s.$m.warren]:-n/a} | ${res[$s.$m.rabbitmq]:-n/a} |"
    done
  fi
done
for b in warren rabbitmq; do
  [ -s "$outdir/flow-$b.queues" ] && { echo; echo "flow, $b: bytes waiting in kernel socket queues"; cat "$outdir/flow-$b.queues"; }
done
echo "(before/peak/after: broker RSS in MiB before the run, highest sample, 2 s after the queue was drained and deleted; sent: published by warren-perf; depth: in the queue after the run; drained: delivered afterwards; blocked: list_connections samples in state blocked or flow; rates msg/s; latency µs)"
