#!/usr/bin/env bash
# Connection setup rate (open + close per second, full handshake with SASL PLAIN) and broker CPU
# per connection, side by side in one run:
#   warren internal      guest/guest against the internal users
#   warren oauth2 HS256  a JWT (HS256) as the password, [auth] backends = ["internal",
#                        "warren_auth_backend_oauth2"]: internal refuses, then the Wasm plugin
#   warren oauth2 RS256  the same with an RS256 token (2048-bit key from a PEM file)
#   rabbitmq internal    guest/guest against the reference RabbitMQ 3.10 node (127.0.0.1:5673)
# Client: scripts/bench_connections.py (raw sockets, THREADS threads, SECONDS each).
# Usage: scripts/bench-auth.sh; SKIP_BUILD=1 uses the existing release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
THREADS=${THREADS:-4}
SECONDS_EACH=${SECONDS_EACH:-10}
WARREN_PORT=${WARREN_PORT:-5675}
RMQ_PORT=${RMQ_PORT:-5673}
SERVER=${SERVER:-$root/target/release/warren-server}
PY=${PY:-python3}

if [ -z "${SKIP_BUILD:-}" ]; then
  nice -n 10 cargo build --release --bin warren-server >&2
fi
work=$(mktemp -d /tmp/warren-bench-auth.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

openssl genrsa -out "$work/key.pem" 2048 2>/dev/null
openssl rsa -in "$work/key.pem" -pubout -out "$work/public.pem" 2>/dev/null
secret=bench-secret-0123456789abcdef0123
k=$(printf %s "$secret" | base64 -w0 | tr '+/' '-_' | tr -d '=')
cat > "$work/warren.toml" <<TOML
[auth]
backends = ["internal", "warren_auth_backend_oauth2"]
[auth_oauth2]
resource_server_id = "rabbitmq"
default_key = "hs"
[auth_oauth2.signing_keys]
hs = { kty = "oct", k = "$k" }
rs = { pem_file = "$work/public.pem" }
[log]
level = "warn"
TOML
# tokens: HS256 with the shared secret, RS256 signed by openssl
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
claims=$(printf '{"sub":"bench","aud":"rabbitmq","scope":"rabbitmq.read:*/* rabbitmq.write:*/* rabbitmq.configure:*/*","exp":%d}' $(( $(date +%s) + 3600 )))
hs_signed="$(printf '{"alg":"HS256","kid":"hs"}' | b64url).$(printf %s "$claims" | b64url)"
hs_token="$hs_signed.$(printf %s "$hs_signed" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)"
rs_signed="$(printf '{"alg":"RS256","kid":"rs"}' | b64url).$(printf %s "$claims" | b64url)"
rs_token="$rs_signed.$(printf %s "$rs_signed" | openssl dgst -sha256 -sign "$work/key.pem" -binary | b64url)"

start_warren() {
  "$SERVER" --config "$1" --amqp-port "$WARREN_PORT" --bind 127.0.0.1 --data-dir "$work/data-$2" >"$work/$2.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$WARREN_PORT) 2>/dev/null && return; sleep 0.05; done
  echo "warren-server did not start: $(cat "$work/$2.log")" >&2; exit 1
}
stop_warren() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
bench() { "$PY" "$root/scripts/bench_connections.py" --threads "$THREADS" --seconds "$SECONDS_EACH" "$@"; }

echo "| broker, auth | connections/s | connections | errors | broker CPU µs/connection |"
echo "|---|---:|---:|---:|---:|"
printf '[log]\nlevel = "warn"\n' > "$work/internal.toml"
start_warren "$work/internal.toml" internal
IFS=$'\t' read -r rate n err cpu < <(bench --port "$WARREN_PORT" --pid "$pid")
echo "| Warren, internal | $rate | $n | $err | $cpu |"
stop_warren
start_warren "$work/warren.toml" oauth2
IFS=$'\t' read -r rate n err cpu < <(bench --port "$WARREN_PORT" --pid "$pid" --user "" --password "$hs_token")
echo "| Warren, oauth2 plugin HS256 | $rate | $n | $err | $cpu |"
IFS=$'\t' read -r rate n err cpu < <(bench --port "$WARREN_PORT" --pid "$pid" --user "" --password "$rs_token")
echo "| Warren, oauth2 plugin RS256 | $rate | $n | $err | $cpu |"
stop_warren
# the reference node's beam.smp (the one listening on RMQ_PORT)
rmq_pid=$(ss -ltnpH "sport = :$RMQ_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
IFS=$'\t' read -r rate n err cpu < <(bench --port "$RMQ_PORT" ${rmq_pid:+--pid "$rmq_pid"})
echo "| RabbitMQ 3.10, internal | $rate | $n | $err | $cpu |"
