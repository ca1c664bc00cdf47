# Shell helpers shared by the benchmark scripts (sourced, not run).

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_on_port PORT: the pid listening on PORT (empty if none)
pid_on_port() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }

# json_get FILE KEY.PATH -> value from the last JSON line of FILE (warren-perf --json), "n/a" if absent
json_get() {
  python3 - "$1" "$2" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
if not lines: print("n/a"); sys.exit()
v = json.loads(lines[-1])
for k in sys.argv[2].split("."): v = v.get(k, "n/a") if isinstance(v, dict) else "n/a"
print(int(v) if isinstance(v, float) and v.is_integer() else v)
PY
}

# cpu_ticks PID: the CPU time PID has used (utime + stime of /proc/PID/stat, in clock ticks)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wait_idle PID: waits (up to 60 s) until PID uses less than 5 % of a core, so that a broker still
# working through what the last run left in its sockets does not feed the next run.
wait_idle() {
  local tck a z
  tck=$(getconf CLK_TCK)
  for _ in $(seq 1 60); do
    a=$(cpu_ticks "$1"); sleep 1; z=$(cpu_ticks "$1")
    [ $(( (z - a) * 100 / tck )) -lt 5 ] && break
  done
}

# The warren-server of a side-by-side benchmark: "$SERVER" on 127.0.0.1:$WARREN_PORT with data
# directory $datadir, its pid in $warren_pid; the reference RabbitMQ node on $RMQ_PORT.
warren_pid=

# warren_start LOG: starts the server (its output to LOG) and waits up to 10 s for its port; false
# if it did not come up. A port already in use ends the script: it would measure an unknown process.
warren_start() {
  if port_open "$WARREN_PORT"; then echo "port $WARREN_PORT is in use; refusing to measure an unknown process" >&2; exit 1; fi
  "$SERVER" --amqp-port "$WARREN_PORT" --data-dir "$datadir" >"$1" 2>&1 &
  warren_pid=$!
  for _ in $(seq 1 100); do port_open "$WARREN_PORT" && break; kill -0 "$warren_pid" 2>/dev/null || break; sleep 0.1; done
  port_open "$WARREN_PORT"
}

# warren_stop: stops the server (TERM, then KILL after 5 s).
warren_stop() {
  if [ -n "$warren_pid" ] && kill -0 "$warren_pid" 2>/dev/null; then
    kill "$warren_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$warren_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$warren_pid" 2>/dev/null || true
  fi
}

# bench_cleanup: the EXIT trap of a benchmark: stops the server, removes $datadir.
bench_cleanup() { warren_stop; rm -rf "$datadir"; }

# rabbitmq_up: starts the reference node (scripts/rabbitmq-ref.sh) unless $RMQ_PORT answers; true
# if it answers.
rabbitmq_up() {
  port_open "$RMQ_PORT" || "$(dirname "${BASH_SOURCE[0]}")/rabbitmq-ref.sh" start >&2
  port_open "$RMQ_PORT"
}

# uri_of BROKER / pid_of BROKER (warren or rabbitmq): its AMQP URI ($WARREN_URI, $RMQ_URI), its pid.
uri_of() { if [ "$1" = warren ]; then echo "$WARREN_URI"; else echo "$RMQ_URI"; fi; }
pid_of() { if [ "$1" = warren ]; then echo "$warren_pid"; else pid_on_port "$RMQ_PORT"; fi; }

# port_of_uri URI: the port of an amqp:// URI
port_of_uri() { sed -E 's#.*@[^:/]+:([0-9]+).*#\1#' <<<"$1"; }

# side_by_side_env: the settings of a benchmark run against warren-server and the reference node,
# from the environment, else their defaults: DURATION (10 s a run), WARREN_PORT (5674) and its
# WARREN_URI, RMQ_URI (the reference node on 5673) and its RMQ_PORT, ONLY (empty: both brokers),
# PERF and SERVER (the release binaries of the checkout at $root).
side_by_side_env() {
  DURATION=${DURATION:-10}
  WARREN_PORT=${WARREN_PORT:-5674}
  WARREN_URI="amqp://guest:guest@127.0.0.1:${WARREN_PORT}/%2f"
  RMQ_URI=${RMQ_URI:-amqp://guest:guest@127.0.0.1:5673/%2f}
  RMQ_PORT=$(port_of_uri "$RMQ_URI")
  ONLY=${ONLY:-}
  PERF=${PERF:-$root/target/release/warren-perf}
  SERVER=${SERVER:-$root/target/release/warren-server}
}

# side_by_side_begin NAME: the start of a side-by-side benchmark (after side_by_side_env): builds
# the release binaries unless SKIP_BUILD is set, makes $outdir (target/bench/NAME-<time>) and
# $datadir, sets the EXIT trap, and starts the brokers that ONLY allows; $brokers lists those up.
side_by_side_begin() {
  if [ -z "${SKIP_BUILD:-}" ]; then
    nice -n 10 cargo build --release --bin warren-perf --bin warren-server >&2
  fi
  outdir=$root/target/bench/$1-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$outdir"
  datadir=$(mktemp -d "/tmp/warren-bench-$1.XXXXXX")
  trap bench_cleanup EXIT
  brokers=()
  if [ "$ONLY" != rabbitmq ] && warren_start "$outdir/warren-server.log"; then brokers+=(warren); fi
  if [ "$ONLY" != warren ] && rabbitmq_up; then brokers+=(rabbitmq); fi
}
