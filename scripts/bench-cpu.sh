#!/usr/bin/env bash
# Broker CPU per message, side by side: warren-server and the reference RabbitMQ 3.10 node, same
# machine, same client (warren-perf's raw client unless CLIENT=lapin). For each scenario and broker
# it prints the client's rates, the broker's CPU time (utime+stime from /proc/PID/stat, before and
# after the run) divided by the messages, and for the persistent scenario the bytes the broker
# wrote to disk (write_bytes of /proc/PID/io) per message byte. Also the client's own CPU.
#
# Usage: scripts/bench-cpu.sh [SCENARIO...]   default: discard pipelined single rate10k persistent
#   discard     1 producer, no consumer, 16 B to the default exchange with a key no queue has (dropped)
#   pipelined   1 -> 1 queue -> 1 consumer, 16 B, autoack, writes batched (256 messages per write)
#   single      the same, every message written on its own (--batch 1, as an application awaiting
#               each publish); the broker may still read several per wake-up when it falls behind
#   rate10k     the same at a fixed 10,000 msg/s: every message arrives alone
#   persistent  1 KiB persistent, durable queue, confirms (256 outstanding), prefetch 100, ack
#               every 50 with multiple=true
#
# Environment: DURATION (10), WARREN_PORT (5674), RMQ_URI, ONLY=warren|rabbitmq, CLIENT=raw|lapin,
#   PERF_STAT=1 (also count the broker's instructions with perf stat), READS=1 (also count the
#   broker's socket reads, `recvfrom` calls, with perf stat: messages per read shows how many
#   messages each wake-up carried — lapin coalesces 3-5 per write at 10,000 msg/s, and the CPU
#   per message of `rate10k` moves with that count), SKIP_BUILD=1,
#   SERVER / PERF (other binaries, e.g. two builds of warren-server compared with SKIP_BUILD=1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

side_by_side_env
CLIENT=${CLIENT:-raw}
TCK=$(getconf CLK_TCK)

scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(discard pipelined single rate10k persistent)

side_by_side_begin cpu
write_bytes() { awk '/^write_bytes:/ {print $2}' "/proc/$1/io"; }

args_of() {
  case $1 in
    discard) echo "-x 1 -y 0 --routing-keys 1 -s 16" ;;
    pipelined) echo "-x 1 -y 1 -s 16 -a" ;;
    single) echo "-x 1 -y 1 -s 16 -a --batch 1" ;;
    rate10k) echo "-x 1 -y 1 -s 16 -a --batch 1 --rate 10000" ;;
    persistent) echo "-x 1 -y 1 -s 1024 --persistent --confirm 256 -q 100 --multi-ack 50" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

echo "| scenario | broker | sent msg/s | received msg/s | broker CPU µs/msg | client CPU µs/msg | latency p50/p99 µs | extra |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
for s in "${scenarios[@]}"; do
  for b in "${brokers[@]}"; do
    pid=$(pid_of "$b")
    client_args="--client $CLIENT"
    [ "$CLIENT" = lapin ] && client_args="--client lapin"
    # shellcheck disable=SC2046
    set -- $(args_of "$s")
    if [ "$CLIENT" = lapin ]; then set -- $(sed 's/--batch [0-9]*//' <<<"$*"); fi
    log="$outdir/$s-$b.log"
    c0=$(cpu_ticks "$pid"); w0=$(write_bytes "$pid" 2>/dev/null || echo 0)
    stat_pid=
    events=()
    [ -n "${PERF_STAT:-}" ] && events+=(instructions task-clock)
    [ -n "${READS:-}" ] && events+=(syscalls:sys_enter_recvfrom)
    if [ ${#events[@]} -gt 0 ]; then
      perf stat -e "$(IFS=,; echo "${events[*]}")" -p "$pid" -o "$outdir/$s-$b.perfstat" &
      stat_pid=$!
    fi
    t0=$(date +%s.%N)
    # The client's own CPU: bash's `time` of the child.
    TIMEFORMAT='%U %S'
    { time "$PERF" --uri "$(uri_of "$b")" $client_args --duration "$DURATION" --json --quiet "$@" >"$log" 2>&1 ; } 2>"$outdir/$s-$b.time" || echo "warren-perf failed on $b (see $log)" >&2
    c1=$(cpu_ticks "$pid"); w1=$(write_bytes "$pid" 2>/dev/null || echo 0)
    [ -n "$stat_pid" ] && { kill -INT "$stat_pid"; wait "$stat_pid" || true; }
    sent=$(json_get "$log" sent); recv=$(json_get "$log" received)
    sr=$(json_get "$log" sent_rate); rr=$(json_get "$log" received_rate)
    p50=$(json_get "$log" latency_us.p50); p99=$(json_get "$log" latency_us.p99)
    # Per delivered message when there is a consumer, per published message otherwise. The
    # broker's CPU covers the whole run (setup, the run, the drain at close): a slight overestimate.
    n=$recv; [ "$s" = discard ] && n=$sent
    read -r cu cs <"$outdir/$s-$b.time" || { cu=0; cs=0; }
    bcpu=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$n" 'BEGIN{ if (n > 0) printf "%.2f", d / t * 1e6 / n; else print "n/a" }')
    ccpu=$(awk -v u="$cu" -v s="$cs" -v n="$n" 'BEGIN{ if (n > 0) printf "%.2f", (u + s) * 1e6 / n; else print "n/a" }')
    extra=
    if [ "$s" = persistent ]; then
      conf=$(json_get "$log" confirmed_rate); cp99=$(json_get "$log" confirm_latency_us.p99)
      wa=$(awk -v w=$((w1 - w0)) -v n="$(json_get "$log" confirmed)" 'BEGIN{ if (n > 0) printf "%.2f", w / (n * 1024); else print "n/a" }')
      extra="confirmed $conf msg/s, confirm p99 $cp99 µs, disk bytes written per body byte $wa"
    fi
    if [ -n "${PERF_STAT:-}" ]; then
      ins=$(awk '/instructions/ {gsub(",", "", $1); print $1}' "$outdir/$s-$b.perfstat")
      extra="$extra instructions/msg $(awk -v i="${ins:-0}" -v n="$n" 'BEGIN{ if (n > 0 && i > 0) printf "%.0f", i / n; else print "n/a" }')"
    fi
    if [ -n "${READS:-}" ]; then
      reads=$(awk '/sys_enter_recvfrom/ {gsub(",", "", $1); print $1}' "$outdir/$s-$b.perfstat")
      # Published messages per read: each message is read once, whatever the consumers get.
      extra="$extra messages per broker read $(awk -v r="${reads:-0}" -v n="$sent" 'BEGIN{ if (r > 0) printf "%.2f", n / r; else print "n/a" }')"
    fi
    echo "| $s | $b | $sr | $rr | $bcpu | $ccpu | $p50/$p99 | $extra |"
    wait_idle "$pid"
  done
done
echo
echo "client: warren-perf --client $CLIENT, ${DURATION}s per run, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ); logs: $outdir"
