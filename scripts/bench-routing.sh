#!/usr/bin/env bash
# Routing side by side: delivered msg/s and broker CPU per delivered message through fanout, topic
# and headers exchanges, warren-server vs the reference RabbitMQ 3.10 node, same machine, same
# client (warren-perf's raw client), in the same run. Broker CPU: utime+stime of the broker process
# (all threads) from /proc/PID/stat before and after each run (setup and drain included), divided
# by the messages delivered to consumers. Setup: the wall time warren-perf spent beyond --duration
# (declaring the queues and bindings, deleting them after the run).
#
# Usage: scripts/bench-routing.sh [SCENARIO...]   default: fanout topic topic-keys100k headers
#   fanout          fanout exchange bound to 10 queues, one autoack consumer each, 16 B
#   topic           topic exchange, 100,000 bindings over 10 queues (groups of three patterns
#                   k.<g>.*, k.<g>.#, *.<g>.r: 33,334 groups), 1,000 distinct routing keys, half
#                   matching the three bindings of one group (three queues), half matching none
#   topic-keys100k  the same with 100,000 distinct routing keys (beyond Warren's 10,000-entry
#                   route cache, so most publishes walk the trie in the Wasm component)
#   headers         headers exchange, 1,000 bindings over 10 queues, alternately x-match=all
#                   {a, b} and x-match=any {c, d}; 100 distinct header sets of five headers, half
#                   matching two bindings (two queues), half none
#
# Environment: DURATION (10), WARREN_PORT (5674), RMQ_URI, ONLY=warren|rabbitmq, SKIP_BUILD=1,
#   SERVER / PERF (other binaries, e.g. an A/B of two warren-server builds with ONLY=warren).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

side_by_side_env
TCK=$(getconf CLK_TCK)

scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(fanout topic topic-keys100k headers)

side_by_side_begin routing

args_of() {
  case $1 in
    fanout) echo "-x 1 -y 10 --queues 10 -s 16 -a --exchange-type fanout" ;;
    topic) echo "-x 1 -y 10 --queues 10 -s 16 -a --topic-bindings 100000 --topic-matches 3 --routing-keys 1000" ;;
    topic-keys100k) echo "-x 1 -y 10 --queues 10 -s 16 -a --topic-bindings 100000 --topic-matches 3 --routing-keys 100000" ;;
    headers) echo "-x 1 -y 10 --queues 10 -s 16 -a --header-bindings 1000 --routing-keys 100" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

echo "| scenario | broker | published msg/s | delivered msg/s | broker CPU µs/delivered | client CPU µs/delivered | latency p50/p99 µs | setup+cleanup s |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for s in "${scenarios[@]}"; do
  for b in "${brokers[@]}"; do
    pid=$(pid_of "$b")
    # shellcheck disable=SC2046
    set -- $(args_of "$s")
    log="$outdir/$s-$b.log"
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    TIMEFORMAT='%U %S'
    { time "$PERF" --uri "$(uri_of "$b")" --client raw --duration "$DURATION" --json --quiet "$@" >"$log" 2>&1 ; } 2>"$outdir/$s-$b.time" || echo "warren-perf failed on $b (see $log)" >&2
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$pid")
    recv=$(json_get "$log" received)
    sr=$(json_get "$log" sent_rate); rr=$(json_get "$log" received_rate)
    p50=$(json_get "$log" latency_us.p50); p99=$(json_get "$log" latency_us.p99)
    read -r cu cs <"$outdir/$s-$b.time" || { cu=0; cs=0; }
    bcpu=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$recv" 'BEGIN{ if (n > 0) printf "%.2f", d / t * 1e6 / n; else print "n/a" }')
    ccpu=$(awk -v u="$cu" -v s="$cs" -v n="$recv" 'BEGIN{ if (n > 0) printf "%.2f", (u + s) * 1e6 / n; else print "n/a" }')
    setup=$(awk -v a="$t0" -v z="$t1" -v d="$DURATION" 'BEGIN{ printf "%.1f", z - a - d }')
    echo "| $s | $b | $sr | $rr | $bcpu | $ccpu | $p50/$p99 | $setup |"
    wait_idle "$pid"
  done
done
echo
echo "client: warren-perf --client raw, ${DURATION}s per run, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ); logs: $outdir"
