#!/usr/bin/env bash
# Side-by-side benchmark: warren-server vs the reference RabbitMQ 3.10 node, same machine, same client
# (warren-perf). Prints a markdown table (also saved under target/bench/).
#
# Usage: scripts/bench.sh [SCENARIO...]      default: all of them, in this order
#   throughput  1 producer -> 1 queue -> 1 consumer, 16 B, autoack, unlimited rate: msgs/s
#   rate        the same at a fixed 5,000 msg/s: p99 latency
#   basic       throughput + rate
#   idle        1,000 idle connections (one channel each): broker RSS growth per 1,000 connections
#   topic       topic exchange, 10,000 bindings over 2 queues, 1,000 routing keys (half match)
#   persistent  1 KiB persistent messages, durable queue, --confirm 256, --prefetch 100, manual ack
#   persistent10  the same with 10 producers: confirm latency p50/p99 and, for Warren, the group
#               commit's batch sizes (warrenctl store_status before/after)
#
# Environment: DURATION (seconds per run, 10), WARREN_PORT (5674), RMQ_URI (the ref node on 5673),
#   IDLE_CONNS (1000), SKIP_BUILD=1 (use existing release binaries), ONLY=warren|rabbitmq,
#   SERVER / PERF (other binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

side_by_side_env
IDLE_CONNS=${IDLE_CONNS:-1000}

scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(basic idle topic persistent)
expanded=()
for s in "${scenarios[@]}"; do
  case $s in
    basic) expanded+=(throughput rate) ;;
    all) expanded+=(throughput rate idle topic persistent) ;;
    throughput|rate|idle|topic|persistent|persistent10) expanded+=("$s") ;;
    *) echo "unknown scenario: $s (throughput rate basic idle topic persistent persistent10)" >&2; exit 2 ;;
  esac
done

# 1,000+ connections need file descriptors on both ends. (A RabbitMQ node started elsewhere keeps its
# own limit: check `grep "open files" /proc/<beam pid>/limits`; Debian's default 1024 is too low.)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

if [ -z "${SKIP_BUILD:-}" ]; then
  echo "building release binaries..." >&2
  cargo build --release --bin warren-perf >&2
  cargo build --release --bin warren-server --bin warrenctl >&2 || echo "warning: warren-server did not build" >&2
fi

outdir=$root/target/bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$outdir"
datadir=$(mktemp -d /tmp/warren-bench.XXXXXX)
trap bench_cleanup EXIT

# --- brokers ------------------------------------------------------------------------------------
brokers=()
if [ "$ONLY" != rabbitmq ]; then
  [ -x "$SERVER" ] || echo "warning: $SERVER missing" >&2
  if warren_start "$outdir/warren-server.log"; then
    brokers+=(warren)
  else
    echo "warning: warren-server did not come up on $WARREN_PORT (log: $outdir/warren-server.log); its column shows n/a" >&2
  fi
fi
if [ "$ONLY" != warren ]; then
  if rabbitmq_up; then brokers+=(rabbitmq); else echo "warning: RabbitMQ ref node unreachable" >&2; fi
fi

has_broker() { local b; for b in "${brokers[@]}"; do [ "$b" = "$1" ] && return 0; done; return 1; }

# results[scenario.metric.broker]=value
declare -A results


# perf SCENARIO BROKER ARGS...: runs warren-perf, stores its output in $outdir/SCENARIO-BROKER.log
perf() {
  local scenario=$1 broker=$2; shift 2
  local log="$outdir/$scenario-$broker.log"
  echo "== $scenario on $broker: warren-perf $*" >&2
  if ! "$PERF" --uri "$(uri_of "$broker")" --duration "$DURATION" --json "$@" >"$log" 2>&1; then
    echo "   warren-perf failed (see $log)" >&2
  fi
  grep -E '^(---|duration|sent|confirmed|latency)' "$log" | sed 's/^/   /' >&2 || true
}

run_throughput() {
  for b in "${brokers[@]}"; do
    perf throughput "$b" --producers 1 --consumers 1 --queues 1 --size 16 --autoack
    results[throughput.recv.$b]=$(json_get "$outdir/throughput-$b.log" received_rate)
    results[throughput.sent.$b]=$(json_get "$outdir/throughput-$b.log" sent_rate)
    results[throughput.p50.$b]=$(json_get "$outdir/throughput-$b.log" latency_us.p50)
  done
}

run_rate() {
  for b in "${brokers[@]}"; do
    perf rate "$b" --producers 1 --consumers 1 --queues 1 --size 16 --autoack --rate 5000
    results[rate.recv.$b]=$(json_get "$outdir/rate-$b.log" received_rate)
    results[rate.p50.$b]=$(json_get "$outdir/rate-$b.log" latency_us.p50)
    results[rate.p99.$b]=$(json_get "$outdir/rate-$b.log" latency_us.p99)
  done
}

run_idle() {
  local hold=$(( DURATION > 5 ? DURATION : 5 ))
  for b in "${brokers[@]}"; do
    local pid; pid=$(pid_of "$b")
    if [ -z "$pid" ]; then echo "   no pid for $b" >&2; continue; fi
    local log="$outdir/idle-$b.log"
    sleep 1
    local before; before=$(rss_kib "$pid")
    echo "== idle on $b (pid $pid): warren-perf --idle-connections $IDLE_CONNS; RSS before ${before} KiB" >&2
    "$PERF" --uri "$(uri_of "$b")" --idle-connections "$IDLE_CONNS" --duration "$hold" --json >"$log" 2>&1 &
    local tool=$!
    local opened=
    for _ in $(seq 1 1200); do
      if grep -q '^opened ' "$log"; then opened=$(awk '/^opened /{print $2; exit}' "$log"); break; fi
      kill -0 "$tool" 2>/dev/null || break
      sleep 0.1
    done
    if [ -z "$opened" ]; then
      echo "   could not open the connections (see $log)" >&2; wait "$tool" || true; continue
    fi
    sleep 2   # let the broker settle with every connection open
    local during; during=$(rss_kib "$pid")
    wait "$tool" || echo "   warren-perf exited with an error (see $log)" >&2
    local delta=$(( (during - before) * 1000 / opened ))
    echo "   opened $opened; RSS during ${during} KiB; delta per 1000 connections ${delta} KiB" >&2
    results[idle.before.$b]=$(( before / 1024 ))
    results[idle.during.$b]=$(( during / 1024 ))
    results[idle.delta.$b]=$(awk -v d="$delta" 'BEGIN{printf "%.1f", d/1024}')
  done
}

run_topic() {
  for b in "${brokers[@]}"; do
    perf topic "$b" --producers 1 --consumers 2 --queues 2 --size 16 --autoack \
      --exchange-type topic --topic-bindings 10000 --routing-keys 1000
    results[topic.sent.$b]=$(json_get "$outdir/topic-$b.log" sent_rate)
    results[topic.recv.$b]=$(json_get "$outdir/topic-$b.log" received_rate)
    results[topic.p99.$b]=$(json_get "$outdir/topic-$b.log" latency_us.p99)
  done
}

run_persistent() {
  for b in "${brokers[@]}"; do
    perf persistent "$b" --producers 1 --consumers 1 --queues 1 --size 1024 --persistent \
      --confirm 256 --prefetch 100 --multi-ack 1
    results[persistent.conf.$b]=$(json_get "$outdir/persistent-$b.log" confirmed_rate)
    results[persistent.recv.$b]=$(json_get "$outdir/persistent-$b.log" received_rate)
    results[persistent.p99.$b]=$(json_get "$outdir/persistent-$b.log" latency_us.p99)
  done
}

# store_stat KEY: a counter of Warren's store writer (warrenctl store_status)
store_stat() {
  "$root/target/release/warrenctl" --data-dir "$datadir" -q store_status 2>/dev/null | awk -F'\t' -v k="$1" '$1 == k {print $2}'
}

run_persistent10() {
  for b in "${brokers[@]}"; do
    local c0=0 o0=0
    if [ "$b" = warren ]; then c0=$(store_stat batches); o0=$(store_stat ops); fi
    perf persistent10 "$b" --producers 10 --consumers 1 --queues 1 --size 1024 --persistent \
      --confirm 256 --prefetch 100 --multi-ack 1
    results[persistent10.conf.$b]=$(json_get "$outdir/persistent10-$b.log" confirmed_rate)
    results[persistent10.recv.$b]=$(json_get "$outdir/persistent10-$b.log" received_rate)
    results[persistent10.cp50.$b]=$(json_get "$outdir/persistent10-$b.log" confirm_latency_us.p50)
    results[persistent10.cp99.$b]=$(json_get "$outdir/persistent10-$b.log" confirm_latency_us.p99)
    if [ "$b" = warren ]; then
      local c1 o1; c1=$(store_stat batches); o1=$(store_stat ops)
      results[persistent10.batch.$b]=$(awk -v c=$((c1 - c0)) -v o=$((o1 - o0)) 'BEGIN{ if (c > 0) printf "%.0f", o/c; else print "n/a" }')
      "$root/target/release/warrenctl" --data-dir "$datadir" store_status >"$outdir/persistent10-warren-store.txt" 2>&1 || true
    fi
  done
}

for s in "${expanded[@]}"; do "run_$s"; done

# --- table ---------------------------------------------------------------------------------------
ratio() { # warren rabbitmq
  awk -v w="$1" -v r="$2" 'BEGIN{ if (w ~ /^[0-9.]+$/ && r ~ /^[0-9.]+$/ && r+0 > 0) printf "%.2f", w/r; else print "n/a" }'
}
row() { # scenario key label better
  local w=${results[$1.$2.warren]:-n/a} r=${results[$1.$2.rabbitmq]:-n/a}
  echo "| $1 | $3 | $w | $r | $(ratio "$w" "$r") | $4 |"
}
table() {
  echo "Warren vs RabbitMQ 3.10 — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${DURATION}s per run, client warren-perf"
  echo
  echo "| scenario | metric | warren | RabbitMQ | warren/RabbitMQ | better |"
  echo "|---|---|---:|---:|---:|---|"
  for s in "${expanded[@]}"; do
    case $s in
      throughput)
        row throughput recv "received msg/s (1→1→1, 16 B, autoack)" higher
        row throughput sent "sent msg/s" higher
        row throughput p50 "p50 latency µs" lower ;;
      rate)
        row rate p99 "p99 latency µs at 5,000 msg/s" lower
        row rate p50 "p50 latency µs at 5,000 msg/s" lower
        row rate recv "received msg/s (target 5,000)" "= 5000" ;;
      idle)
        row idle delta "RSS MiB per 1,000 idle connections" lower
        row idle before "RSS MiB before" lower
        row idle during "RSS MiB with $IDLE_CONNS connections" lower ;;
      topic)
        row topic sent "sent msg/s (10k bindings, 1k keys)" higher
        row topic recv "received msg/s" higher
        row topic p99 "p99 latency µs" lower ;;
      persistent)
        row persistent conf "confirmed msg/s (1 KiB, confirm 256)" higher
        row persistent recv "received msg/s (prefetch 100, manual ack)" higher
        row persistent p99 "p99 latency µs" lower ;;
      persistent10)
        row persistent10 conf "confirmed msg/s (10 producers, 1 KiB, confirm 256 each)" higher
        row persistent10 recv "delivered msg/s" higher
        row persistent10 cp50 "confirm latency p50 µs" lower
        row persistent10 cp99 "confirm latency p99 µs" lower
        row persistent10 batch "store ops per group commit (Warren)" info ;;
    esac
  done
  echo
  echo "Logs and exact commands: $outdir"
}
table | tee "$outdir/results.md"
