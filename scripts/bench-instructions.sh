#!/usr/bin/env bash
# User-space instructions the broker executes per message, counted by valgrind's callgrind: a
# measure of the broker's own work that does not move with the machine's state (CPU time per
# message moves ±10 % between minutes on a VM; instruction counts repeat to within 2 %, most within 0.2 %, except
# for the window in which a periodic task — stats sampling, alarms — happens to run).
#
# One warren-server binary under callgrind; warren-perf's raw client, one message per write (so
# one wake-up per message: lapin's batching varies and moves the count ±12 %), 1 -> 1 -> 1, 16 B,
# autoack, RATE msg/s (default 1,000: the broker runs ~50x slower under valgrind). A 3 s
# warm-up, then ROUNDS windows of WINDOW seconds each (counters zeroed before, dumped after); prints the
# instructions per delivered message of each window and their median.
#
# Usage: scripts/bench-instructions.sh [SERVER_BINARY]      (needs valgrind: apt-get install valgrind)
# Environment: PERF (warren-perf), PORT (5895), RATE (1000), WINDOW (4), ROUNDS (3), KEEP (a path:
#   the last window's callgrind file is kept there, for callgrind_annotate), BATCH (1: messages per
#   client write; above 1 every write carries exactly that many, `--paced-batch`: 4 is lapin's
#   shape at 10,000 msg/s)
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-target/release/warren-server}
PERF=${PERF:-target/release/warren-perf}
PORT=${PORT:-5895}; RATE=${RATE:-1000}; WINDOW=${WINDOW:-4}; ROUNDS=${ROUNDS:-3}; BATCH=${BATCH:-1}
paced=(); [ "$BATCH" -gt 1 ] && paced=(--paced-batch)
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
d=$(mktemp -d /tmp/warren-instr.XXXXXX)
valgrind --tool=callgrind --callgrind-out-file="$d/cg.%p" --dump-instr=no "$S" --amqp-port "$PORT" --data-dir "$d/data" >/dev/null 2>"$d/valgrind.log" &
V=$!
trap 'kill $V 2>/dev/null; wait $V 2>/dev/null; rm -rf "$d"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.3; done
uri="amqp://guest:guest@127.0.0.1:$PORT/%2f"
run() { "$PERF" --uri "$uri" --client raw --batch "$BATCH" "${paced[@]}" -x 1 -y 1 -s 16 -a --rate "$RATE" -z "$1" --quiet --json | tail -1; }
run 3 >/dev/null
per=()
for r in $(seq "$ROUNDS"); do
  callgrind_control -z "$V" >/dev/null
  out=$(run "$WINDOW")
  callgrind_control -d "$V" >/dev/null
  n=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['received'])" "$out")
  f=$(ls -t "$d"/cg.*.* | head -1)
  ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  per+=("$((ir / n))")
  echo "window $r: $n messages, $ir instructions, $((ir / n)) per message"
  if [ -n "${KEEP:-}" ]; then mv "$f" "$KEEP"; else rm -f "$f"; fi
done
printf '%s\n' "${per[@]}" | sort -n | awk -v s="$S" '{a[NR]=$1} END {print s ": median " a[int((NR+1)/2)] " instructions per message"}'
