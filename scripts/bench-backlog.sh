#!/usr/bin/env bash
# Backlog and recovery benchmark of Warren's store (issue 5's memory and recovery figures):
#
#   1. publish MESSAGES persistent messages of SIZE bytes (default 1,048,576 x 1 KiB = 1 GiB) with
#      confirms (256 outstanding) into one durable queue with no consumer; sample the broker's RSS;
#   2. kill -9 the broker, start it again on the same data folder: time to the listening port and
#      the recovery log line; RSS after recovery;
#   3. drain the queue with one consumer (prefetch 100, manual acks): every message must arrive.
#
# Prints a markdown table (also saved under target/bench/). With RABBITMQ=1, step 1 and 3 also run
# against the reference RabbitMQ (scripts/rabbitmq-ref.sh, RMQ_URI) for the publish/drain rates and
# its RSS (no restart there).
#
# Environment: MESSAGES (1048576), SIZE (1024), WARREN_PORT (5675), SKIP_BUILD=1, RABBITMQ=1,
#   RMQ_URI (amqp://guest:guest@127.0.0.1:5673/%2f).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
MESSAGES=${MESSAGES:-1048576}
SIZE=${SIZE:-1024}
WARREN_PORT=${WARREN_PORT:-5675}
URI="amqp://guest:guest@127.0.0.1:${WARREN_PORT}/%2f"
RMQ_URI=${RMQ_URI:-amqp://guest:guest@127.0.0.1:5673/%2f}
RMQ_PORT=$(port_of_uri "$RMQ_URI")
PERF=$root/target/release/warren-perf
SERVER=$root/target/release/warren-server

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --bin warren-perf --bin warren-server >&2
fi
rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo 0; }

outdir=$root/target/bench/backlog-$(date +%Y%m%d-%H%M%S)
mkdir -p "$outdir"
datadir=$(mktemp -d /tmp/warren-backlog.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$datadir"
}
trap cleanup EXIT

start_server() { # LOG; sets pid and boot (seconds until the port accepted connections)
  port_open "$WARREN_PORT" && { echo "port $WARREN_PORT is in use" >&2; exit 1; }
  local t0; t0=$(date +%s.%N)
  "$SERVER" --amqp-port "$WARREN_PORT" --data-dir "$datadir" >"$1" 2>&1 &
  pid=$!
  for _ in $(seq 1 6000); do port_open "$WARREN_PORT" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
  port_open "$WARREN_PORT" || { echo "warren-server did not start (see $1)" >&2; exit 1; }
  boot=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$t0" "$(date +%s.%N)")
}

# sample_rss PID FILE: writes the highest RSS (MiB) seen until the file .stop exists
sample_rss() {
  local max=0 r
  while [ ! -e "$2.stop" ]; do
    r=$(rss_mib "$1"); max=$(python3 -c "print(max($max, $r))"); echo "$max" >"$2"; sleep 0.5
  done
}

# publish_drain BROKER URI BPID: steps 1 and 3 (for RabbitMQ) or step 1 only (Warren; step 3 later)
publish() { # NAME URI BPID
  local log=$outdir/publish-$1.log
  echo "== publish $MESSAGES x $SIZE B persistent to $1" >&2
  rm -f "$outdir/rss-pub-$1.stop"; sample_rss "$3" "$outdir/rss-pub-$1" & local s=$!
  "$PERF" --uri "$2" -x 1 -y 0 --persistent -s "$SIZE" -c 256 -C "$MESSAGES" -z 7200 --quiet --json >"$log" 2>&1 \
    || echo "   warren-perf failed (see $log)" >&2
  touch "$outdir/rss-pub-$1.stop"; wait "$s"
  grep -E '^(duration|sent|confirmed)' "$log" | sed 's/^/   /' >&2 || true
}
drain() { # NAME URI BPID
  local log=$outdir/drain-$1.log
  echo "== drain $MESSAGES from $1" >&2
  rm -f "$outdir/rss-drain-$1.stop"; sample_rss "$3" "$outdir/rss-drain-$1" & local s=$!
  "$PERF" --uri "$2" -x 0 -y 1 --keep-queues --persistent -s "$SIZE" -q 100 -D "$MESSAGES" -z 7200 --quiet --json >"$log" 2>&1 \
    || echo "   warren-perf failed (see $log)" >&2
  touch "$outdir/rss-drain-$1.stop"; wait "$s"
  grep -E '^(duration|sent|received)' "$log" | sed 's/^/   /' >&2 || true
}

start_server "$outdir/warren-1.log"; boot1=$boot
rss_idle=$(rss_mib "$pid")
publish warren "$URI" "$pid"
rss_after_pub=$(rss_mib "$pid")
echo "== kill -9 and restart" >&2
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
db_mib=$(du -m "$datadir/warren.redb" | cut -f1)
start_server "$outdir/warren-2.log"; boot2=$boot
recovered=$(grep -o 'recovered [0-9]* durable queues and [0-9]* persistent messages in [0-9.]* ms' "$outdir/warren-2.log" || echo "n/a")
rss_recovered=$(rss_mib "$pid")
drain warren "$URI" "$pid"
rss_after_drain=$(rss_mib "$pid")

if [ -n "${RABBITMQ:-}" ]; then
  rpid=$(pid_on_port "$RMQ_PORT")
  if [ -z "$rpid" ]; then echo "no RabbitMQ on port $RMQ_PORT (scripts/rabbitmq-ref.sh start)" >&2; RABBITMQ=; fi
fi
if [ -n "${RABBITMQ:-}" ]; then
  publish rabbitmq "$RMQ_URI" "$rpid"
  drain rabbitmq "$RMQ_URI" "$rpid"
fi

w_pub=$(json_get "$outdir/publish-warren.log" confirmed_rate)
w_recv=$(json_get "$outdir/drain-warren.log" received)
{
  echo "### Backlog: $MESSAGES x $SIZE B persistent messages, one durable queue ($(date -u +%Y-%m-%d))"
  echo
  echo "| measure | Warren |$( [ -n "${RABBITMQ:-}" ] && echo ' RabbitMQ 3.10 |')"
  echo "|---|---|$( [ -n "${RABBITMQ:-}" ] && echo '---|')"
  r() { echo "| $1 | $2 |$( [ -n "${RABBITMQ:-}" ] && echo " $3 |")"; }
  r "publish, confirmed msg/s" "$w_pub" "$( [ -n "${RABBITMQ:-}" ] && json_get "$outdir/publish-rabbitmq.log" confirmed_rate)"
  r "peak RSS while publishing, MiB" "$(cat "$outdir/rss-pub-warren")" "$( [ -n "${RABBITMQ:-}" ] && cat "$outdir/rss-pub-rabbitmq")"
  r "RSS idle before / after publishing, MiB" "$rss_idle / $rss_after_pub" "-"
  r "database file, MiB" "$db_mib" "-"
  r "restart after kill -9: port open after, s" "$boot2 (first start $boot1)" "-"
  r "recovery log line" "$recovered" "-"
  r "RSS after recovery, MiB" "$rss_recovered" "-"
  r "drain (prefetch 100, manual ack), msg/s" "$(json_get "$outdir/drain-warren.log" received_rate)" "$( [ -n "${RABBITMQ:-}" ] && json_get "$outdir/drain-rabbitmq.log" received_rate)"
  r "messages drained" "$w_recv of $MESSAGES" "$( [ -n "${RABBITMQ:-}" ] && json_get "$outdir/drain-rabbitmq.log" received)"
  r "peak RSS while draining / after, MiB" "$(cat "$outdir/rss-drain-warren") / $rss_after_drain" "$( [ -n "${RABBITMQ:-}" ] && cat "$outdir/rss-drain-rabbitmq")"
} | tee "$outdir/table.md"
[ "$w_recv" = "$MESSAGES" ] || { echo "LOST MESSAGES: drained $w_recv of $MESSAGES" >&2; exit 1; }
