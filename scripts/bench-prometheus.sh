#!/usr/bin/env bash
# Scrape cost of the prometheus endpoints with QUEUES queues (default 10,000), side by side in one
# run: Warren (release build, warren_prometheus enabled) and the reference RabbitMQ 3.10 node
# (127.0.0.1:5673, rabbitmq_prometheus on 127.0.0.1:15693; its queues go to a vhost of their own,
# deleted afterwards). Per endpoint: median / p90 wall time of a GET, the broker's CPU time per
# scrape (/proc/PID/stat), body size. Client: scripts/bench_prometheus.py (pika, urllib).
# Usage: scripts/bench-prometheus.sh; SKIP_BUILD=1 uses the existing release binary;
# SKIP_RABBITMQ=1 measures Warren only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. scripts/lib.sh
QUEUES=${QUEUES:-10000}
SCRAPES=${SCRAPES:-20}
WARREN_PORT=${WARREN_PORT:-5676}
WARREN_PROM=${WARREN_PROM:-15696}
RMQ_PORT=${RMQ_PORT:-5673}
RMQ_PROM=${RMQ_PROM:-15693}
BIN=${BIN:-$root/target/release}
PY=${PY:-$root/.venv/bin/python}
RMQCTL=(env HOME=/tmp/rmq-ref RABBITMQ_NODENAME=ref@localhost rabbitmqctl -q -n ref@localhost)

if [ -z "${SKIP_BUILD:-}" ]; then
  nice -n 10 cargo build --release --bin warren-server --bin warren-plugins >&2
fi
work=$(mktemp -d /tmp/warren-bench-prom.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

printf '[prometheus]\nbind = "127.0.0.1"\nport = %s\n[log]\nlevel = "warn"\n' "$WARREN_PROM" > "$work/warren.toml"
"$BIN/warren-server" --config "$work/warren.toml" --amqp-port "$WARREN_PORT" --bind 127.0.0.1 \
  --data-dir "$work/data" >"$work/warren.log" 2>&1 &
pid=$!
for _ in $(seq 200); do port_open "$WARREN_PORT" && break; sleep 0.05; done
"$BIN/warren-plugins" --data-dir "$work/data" enable rabbitmq_prometheus >/dev/null

echo "== prometheus scrape cost, $QUEUES queues, $SCRAPES scrapes per endpoint ($(nproc) cores, $(date -u +%FT%TZ))"
"$PY" scripts/bench_prometheus.py --label warren --amqp "amqp://guest:guest@127.0.0.1:$WARREN_PORT/" \
  --metrics "http://127.0.0.1:$WARREN_PROM" --pid "$pid" --queues "$QUEUES" --scrapes "$SCRAPES" | tee "$work/warren.out"

if [ -z "${SKIP_RABBITMQ:-}" ] && port_open "$RMQ_PORT"; then
  rpid=$(pid_on_port "$RMQ_PORT")
  "${RMQCTL[@]}" add_vhost bench-prom >/dev/null
  "${RMQCTL[@]}" set_permissions -p bench-prom guest '.*' '.*' '.*' >/dev/null
  "$PY" scripts/bench_prometheus.py --label rabbitmq --amqp "amqp://guest:guest@127.0.0.1:$RMQ_PORT/" \
    --metrics "http://127.0.0.1:$RMQ_PROM" --pid "$rpid" --vhost bench-prom --queues "$QUEUES" \
    --scrapes "$SCRAPES" | tee "$work/rabbitmq.out" || true
  "${RMQCTL[@]}" delete_vhost bench-prom >/dev/null || true
fi

echo
printf '%-32s %-9s %10s %10s %14s %10s\n' endpoint broker median_ms p90_ms cpu_ms/scrape bytes
cat "$work"/*.out | grep '^{' | "$PY" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
for r in sorted(rows, key=lambda r: (r["endpoint"], r["broker"])):
    print("%-32s %-9s %10s %10s %14s %10s" % (r["endpoint"], r["broker"], r["median_ms"], r["p90_ms"], r["cpu_ms_per_scrape"], r["bytes"]))
'
