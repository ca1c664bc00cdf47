#!/usr/bin/env bash
# Every performance goal of docs/PERFORMANCE.md in one run, Warren and the reference RabbitMQ node
# (scripts/rabbitmq-ref.sh, started if it is not up) side by side in the same minutes, so that one
# machine state holds the whole picture. Prints the tables of the scripts it calls; about 15
# minutes with every part.
#
# Usage: scripts/bench-goals.sh [PART...]     default: cpu lone floor latency persistent routing slow scale memory
#   cpu         goals 1-3: bench-cpu.sh discard pipelined single rate10k (raw client)
#   lone        goal 3, each message alone: bench-cpu.sh rate10k with the lapin client, 3 times
#   floor       the same minutes' floor for it: cargo bench --bench relay_floor (a relay that does
#               nothing, per wake-up; compiled first if needed, even with SKIP_BUILD)
#   latency     goal 4: 5,000 msg/s one message per write (3 runs each broker), then an unlimited
#               producer (5 runs Warren, 2 RabbitMQ) with the kernel's socket queues sampled by
#               scripts/socket-queues.py in Warren's runs
#   persistent  goal 5: bench-cpu.sh persistent, 2 times
#   routing     goal 7: bench-routing.sh fanout topic headers
#   slow        goal 7: 10,000 queues at 1 msg/s, consumers on 10 then 100 connections (both),
#               then the floor for it: cargo bench --bench fanout_floor (a server that does nothing
#               but spread the same messages over the same connections)
#   scale       goal 8: 10,000 idle connections (both brokers), 100,000 queues (Warren)
#   memory      goal 6: bench-memory.sh (10M messages in Warren, 1M in RabbitMQ)
#
# Environment: SKIP_BUILD=1, SERVER / PERF (other binaries), PORT_BASE (5841: this script uses
#   PORT_BASE .. PORT_BASE+4). RabbitMQ is the reference node on 127.0.0.1:5673 (guest/guest), the
#   default of every script called here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

PORT_BASE=${PORT_BASE:-5841}
unset RMQ_URI  # each script called here defaults to the reference node
RMQ_PORT=5673
rmq_uri="amqp://guest:guest@127.0.0.1:$RMQ_PORT/%2f"
if [ -z "${SKIP_BUILD:-}" ]; then
  nice -n 10 cargo build --release --bin warren-perf --bin warren-server >&2
fi
export SKIP_BUILD=1
export SERVER=${SERVER:-$root/target/release/warren-server}
export PERF=${PERF:-$root/target/release/warren-perf}
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(cpu lone floor latency persistent routing slow scale memory)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
rabbitmq_up >/dev/null || { echo "the reference RabbitMQ node does not answer on $RMQ_PORT" >&2; exit 1; }

stamp() { echo; echo "### $* ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"; }

# A Warren of this script's own (for the parts that do not go through bench-cpu.sh): port
# $WARREN_PORT, data in $datadir, stopped and removed on exit.
datadir=$(mktemp -d /tmp/warren-bench-goals.XXXXXX)
trap 'bench_cleanup; rm -f "$datadir.log"' EXIT
own_warren() {
  WARREN_PORT=$1
  warren_stop; rm -rf "$datadir"; mkdir -p "$datadir"
  warren_start "$datadir.log" || { echo "warren-server did not start on $WARREN_PORT" >&2; exit 1; }
}

# perf_line URI NAME ARGS...: one warren-perf run, one line: NAME, delivered msg/s, latency percentiles.
perf_line() {
  local uri=$1 name=$2 out; shift 2
  out=$(mktemp)
  "$PERF" --uri "$uri" --client raw --json --quiet "$@" >"$out" 2>&1 || true
  printf '| %s | %s | %s / %s / %s / %s |\n' "$name" "$(json_get "$out" received_rate)" \
    "$(json_get "$out" latency_us.p50)" "$(json_get "$out" latency_us.p95)" \
    "$(json_get "$out" latency_us.p99)" "$(json_get "$out" latency_us.max)"
  rm -f "$out"
}

for part in "${parts[@]}"; do
  case $part in
    cpu)
      stamp "goals 1-3: raw client"
      WARREN_PORT=$PORT_BASE DURATION=6 scripts/bench-cpu.sh discard pipelined single rate10k ;;
    lone)
      for i in 1 2 3; do
        stamp "goal 3, each message alone: lapin at 10,000 msg/s, run $i"
        CLIENT=lapin WARREN_PORT=$PORT_BASE DURATION=6 scripts/bench-cpu.sh rate10k
      done ;;
    floor)
      stamp "goal 3's floor: a relay doing nothing, one message per write"
      nice -n 10 cargo bench --bench relay_floor --no-run >&2
      cargo bench --bench relay_floor 2>/dev/null | grep '^relay floor' ;;
    latency)
      stamp "goal 4: publish->deliver latency, 1 -> 1 -> 1, 16 B, autoack, raw client"
      own_warren $((PORT_BASE + 1))
      echo "| run | delivered msg/s | p50 / p95 / p99 / max µs |"
      echo "|---|---:|---:|"
      for i in 1 2 3; do
        perf_line "amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f" "5,000 msg/s, Warren" \
          --duration 8 -x 1 -y 1 -s 16 -a --batch 1 --rate 5000
        perf_line "$rmq_uri" "5,000 msg/s, RabbitMQ" --duration 8 -x 1 -y 1 -s 16 -a --batch 1 --rate 5000
      done
      for i in 1 2 3 4 5; do
        q=$(mktemp)
        (sleep 3; python3 scripts/socket-queues.py "$WARREN_PORT" 6 >"$q") &
        sampler=$!
        perf_line "amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f" "unlimited producer, Warren" \
          --duration 10 -x 1 -y 1 -s 16 --autoack
        wait "$sampler"
        sed 's/^/  socket queues: /' "$q"; rm -f "$q"
      done
      for i in 1 2; do
        perf_line "$rmq_uri" "unlimited producer, RabbitMQ" --duration 10 -x 1 -y 1 -s 16 --autoack
      done
      warren_stop ;;
    persistent)
      for i in 1 2; do
        stamp "goal 5: persistent, run $i"
        WARREN_PORT=$PORT_BASE DURATION=8 scripts/bench-cpu.sh persistent
      done ;;
    routing)
      stamp "goal 7: routing"
      WARREN_PORT=$PORT_BASE DURATION=6 scripts/bench-routing.sh fanout topic headers ;;
    slow)
      stamp "goal 7: 10,000 queues at 1 msg/s each (Warren, then RabbitMQ)"
      own_warren $((PORT_BASE + 2))
      for c in 10 100; do
        python3 scripts/bench_scale.py --port "$WARREN_PORT" --pid "$warren_pid" slow-queues \
          --queues 10000 --conns "$c" --seconds 12 --warmup 3
        python3 scripts/bench_scale.py --port "$RMQ_PORT" --pid "$(pid_on_port "$RMQ_PORT")" slow-queues \
          --queues 10000 --conns "$c" --seconds 12 --warmup 3
      done
      warren_stop
      stamp "goal 7's floor: a server doing nothing but spread the same messages over C connections"
      nice -n 10 cargo bench --bench fanout_floor --no-run >&2
      cargo bench --bench fanout_floor 2>/dev/null | grep '^fan-out floor' ;;
    scale)
      stamp "goal 8: 10,000 idle connections (Warren, then RabbitMQ), 100,000 queues (Warren)"
      own_warren $((PORT_BASE + 3))
      python3 scripts/bench_scale.py --port "$WARREN_PORT" --pid "$warren_pid" idle --connections 10000 --heartbeat 60 --hold 60 | grep '^{' || true
      python3 scripts/bench_scale.py --port "$RMQ_PORT" --pid "$(pid_on_port "$RMQ_PORT")" idle --connections 10000 --heartbeat 60 --hold 60 | grep '^{' || true
      python3 scripts/bench_scale.py --port "$WARREN_PORT" --pid "$warren_pid" queues --queues 100000
      warren_stop ;;
    memory)
      stamp "goal 6: memory per queued message"
      WARREN_PORT=$((PORT_BASE + 4)) RABBITMQ=1 RMQ_MESSAGES=1000000 scripts/bench-memory.sh ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
stamp done
