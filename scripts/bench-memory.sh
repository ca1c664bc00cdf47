#!/usr/bin/env bash
# Memory per queued message and drain speed (issue 13, goal 6):
#
#   1. start warren-server on a fresh data folder; publish MESSAGES persistent messages of SIZE
#      bytes (default 10,000,000 x 16 B) with confirms into one durable queue with no consumer;
#      wait until the broker is quiet; RSS (VmRSS of /proc/PID/status) before and after: bytes of
#      broker memory per queued message;
#   2. with RESTART=1: kill -9, start again on the same folder, RSS after recovery (the queue
#      index rebuilt from the store);
#   3. drain the queue with one consumer (autoack): msg/s, and broker CPU per message
#      (utime+stime from /proc/PID/stat before and after the drain);
#   4. the same (no restart) against the reference RabbitMQ 3.10 (scripts/rabbitmq-ref.sh) in a
#      vhost of its own, with RMQ_MESSAGES messages (default 1,000,000: RabbitMQ publishes
#      persistent messages ~10x slower). RABBITMQ=0 skips it.
#
# Prints a markdown table (also saved under target/bench/memory-*/table.md).
#
# Environment: MESSAGES (10000000), RMQ_MESSAGES (1000000), SIZE (16), CONFIRM (1000 in flight),
#   WARREN_PORT (5681), SERVER / PERF (default target/release/...), SKIP_BUILD=1, RESTART=1,
#   RABBITMQ=0, RMQ_URI (amqp://guest:guest@127.0.0.1:5673), QUIET_S (seconds of quiet before
#   reading RSS, 5).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
MESSAGES=${MESSAGES:-10000000}
RMQ_MESSAGES=${RMQ_MESSAGES:-1000000}
SIZE=${SIZE:-16}
CONFIRM=${CONFIRM:-1000}
QUIET_S=${QUIET_S:-5}
WARREN_PORT=${WARREN_PORT:-5681}
URI="amqp://guest:guest@127.0.0.1:${WARREN_PORT}/%2f"
RMQ_URI=${RMQ_URI:-amqp://guest:guest@127.0.0.1:5673}
RMQ_PORT=$(port_of_uri "$RMQ_URI")
RMQ_VHOST=warren-bench-memory
PERF=${PERF:-$root/target/release/warren-perf}
SERVER=${SERVER:-$root/target/release/warren-server}
export HOME=${RMQ_REF_BASE:-/tmp/rmq-ref}
RMQCTL=(rabbitmqctl -n ref@localhost)
TCK=$(getconf CLK_TCK)

if [ -z "${SKIP_BUILD:-}" ]; then
  nice -n 10 cargo build --release --bin warren-perf --bin warren-server >&2
fi
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

outdir=$root/target/bench/memory-$(date +%Y%m%d-%H%M%S)
mkdir -p "$outdir"
datadir=$(mktemp -d /tmp/warren-bench-memory.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$datadir"
}
trap cleanup EXIT

start_server() { # LOG: sets pid
  port_open "$WARREN_PORT" && { echo "port $WARREN_PORT is in use" >&2; exit 1; }
  "$SERVER" --amqp-port "$WARREN_PORT" --data-dir "$datadir" >"$1" 2>&1 &
  pid=$!
  for _ in $(seq 1 60000); do port_open "$WARREN_PORT" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
  port_open "$WARREN_PORT" || { echo "warren-server did not start (see $1)" >&2; exit 1; }
}

# quiet PID: waits until the process used < 2 ticks of CPU in a second, QUIET_S times in a row
quiet() {
  local calm=0 a z
  while [ "$calm" -lt "$QUIET_S" ]; do
    a=$(cpu_ticks "$1"); sleep 1; z=$(cpu_ticks "$1")
    if [ $((z - a)) -lt 2 ]; then calm=$((calm + 1)); else calm=0; fi
  done
}

# run NAME BROKER_PID URI N: publish, RSS, drain; writes $outdir/NAME.vars
run() {
  local name=$1 bpid=$2 uri=$3 n=$4
  quiet "$bpid"
  local idle; idle=$(rss_kib "$bpid")
  echo "== $name: publish $n x $SIZE B persistent, confirms ($CONFIRM in flight)" >&2
  "$PERF" --uri "$uri" -x 1 -y 0 --persistent -s "$SIZE" -c "$CONFIRM" -C "$n" -z 36000 --quiet --json \
    >"$outdir/publish-$name.log" 2>&1 || echo "   warren-perf failed (see $outdir/publish-$name.log)" >&2
  quiet "$bpid"
  local full; full=$(rss_kib "$bpid")
  if [ "$name" = warren ] && [ -n "${RESTART:-}" ]; then
    echo "== $name: kill -9 and restart" >&2
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
    local t0; t0=$(date +%s.%N)
    start_server "$outdir/warren-2.log"; bpid=$pid
    echo "boot_s=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$t0" "$(date +%s.%N)")" >>"$outdir/$name.vars"
    echo "recovered='$(grep -o 'recovered [0-9]* durable queues and [0-9]* persistent messages in [0-9.]* ms' "$outdir/warren-2.log" || echo n/a)'" >>"$outdir/$name.vars"
    quiet "$bpid"
    echo "rss_recovered=$(rss_kib "$bpid")" >>"$outdir/$name.vars"
  fi
  echo "== $name: drain $n (one consumer, autoack)" >&2
  local c0 c1; c0=$(cpu_ticks "$bpid")
  "$PERF" --uri "$uri" -x 0 -y 1 --keep-queues --persistent -a -s "$SIZE" -D "$n" -z 36000 --quiet --json \
    >"$outdir/drain-$name.log" 2>&1 || echo "   warren-perf failed (see $outdir/drain-$name.log)" >&2
  c1=$(cpu_ticks "$bpid")
  local got; got=$(json_get "$outdir/drain-$name.log" received)
  {
    echo "n=$n"
    echo "idle=$idle"
    echo "full=$full"
    echo "pub_rate=$(json_get "$outdir/publish-$name.log" confirmed_rate)"
    echo "drain_rate=$(json_get "$outdir/drain-$name.log" received_rate)"
    echo "drained=$got"
    echo "cpu_us=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$got" 'BEGIN{ if (n > 0) printf "%.2f", d / t * 1e6 / n; else print "n/a" }')"
    echo "rss_drained=$(rss_kib "$bpid")"
  } >>"$outdir/$name.vars"
}

start_server "$outdir/warren-1.log"
run warren "$pid" "$URI" "$MESSAGES"
db_mib=n/a

if [ "${RABBITMQ:-1}" != 0 ]; then
  port_open "$RMQ_PORT" || "$root/scripts/rabbitmq-ref.sh" start >&2
  rpid=$(pid_on_port "$RMQ_PORT")
  # A vhost of its own: the reference node is shared, and other runs use perf-q-0 in "/".
  "${RMQCTL[@]}" -q delete_vhost "$RMQ_VHOST" >/dev/null 2>&1 || true
  "${RMQCTL[@]}" -q add_vhost "$RMQ_VHOST" >/dev/null
  "${RMQCTL[@]}" -q set_permissions -p "$RMQ_VHOST" guest '.*' '.*' '.*' >/dev/null
  run rabbitmq "$rpid" "$RMQ_URI/$RMQ_VHOST" "$RMQ_MESSAGES"
  "${RMQCTL[@]}" -q delete_vhost "$RMQ_VHOST" >/dev/null 2>&1 || true
fi

col() { # NAME EXPR: evaluates EXPR with NAME's vars
  [ -f "$outdir/$1.vars" ] || { echo "-"; return; }
  ( set +u; . "$outdir/$1.vars"; eval "$2" )
}
per_msg='awk -v a="$idle" -v b="$full" -v n="$n" '"'"'BEGIN{printf "%.1f", (b - a) * 1024 / n}'"'"
{
  echo "### Memory per queued message: $SIZE B persistent, one durable queue, no consumer ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "| measure | Warren | RabbitMQ 3.10 |"
  echo "|---|---:|---:|"
  r() { echo "| $1 | $(col warren "$2") | $(col rabbitmq "$2") |"; }
  r "messages" 'echo $n'
  r "publish, confirmed msg/s" 'echo $pub_rate'
  r "RSS idle before publishing, MiB" 'mib $idle'
  r "RSS with the backlog (quiet), MiB" 'mib $full'
  r "**RSS growth per queued message, bytes**" "$per_msg"
  [ -n "${RESTART:-}" ] && r "after kill -9: port open after (s); recovery line; RSS MiB" '[ -n "$boot_s" ] && echo "$boot_s; $recovered; $(mib $rss_recovered)" || echo -'
  r "**drain, one consumer, autoack, msg/s**" 'echo $drain_rate'
  r "messages drained" 'echo $drained'
  r "**broker CPU per drained message, µs**" 'echo $cpu_us'
  r "RSS after the drain, MiB" 'mib $rss_drained'
} | tee "$outdir/table.md"
w=$(col warren 'echo $drained')
[ "$w" = "$MESSAGES" ] || { echo "LOST MESSAGES: drained $w of $MESSAGES" >&2; exit 1; }
