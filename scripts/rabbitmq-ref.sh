#!/usr/bin/env bash
# Starts (or stops) a private RabbitMQ node from Debian's package beside Warren, for comparisons and
# benchmarks: AMQP on 127.0.0.1:5673, data under ${RMQ_REF_BASE:-/tmp/rmq-ref}.
# Usage: scripts/rabbitmq-ref.sh start|stop|status
set -euo pipefail
base=${RMQ_REF_BASE:-/tmp/rmq-ref}
export RABBITMQ_NODENAME=ref@localhost RABBITMQ_NODE_PORT=5673 RABBITMQ_DIST_PORT=25673 \
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
  RABBITMQ_MNESIA_BASE=$base/mnesia RABBITMQ_LOG_BASE=$base/log \
  RABBITMQ_ENABLED_PLUGINS_FILE=$base/enabled_plugins RABBITMQ_CONFIG_FILE=$base/rabbitmq \
  HOME=$base
case "${1:-start}" in
  start)
    mkdir -p "$base"; id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq: "$base"
    [ -f "$base/enabled_plugins" ] || echo '[].' > "$base/enabled_plugins"
    [ -f "$base/rabbitmq.conf" ] || printf 'listeners.tcp.default = 127.0.0.1:5673\n' > "$base/rabbitmq.conf"; id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq: "$base"
    if rabbitmqctl -q status >/dev/null 2>&1; then echo "ref node already running"; exit 0; fi
    # 1,000+ connections need file descriptors (the default soft limit of 1024 trips its fd alarm).
    # Debian's wrapper switches to the rabbitmq user through su, whose PAM session resets the
    # limit to 1024; setpriv switches without PAM and keeps the raised limit.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1 && command -v setpriv >/dev/null; then
      # The node then reads the rabbitmq user's cookie; let our CLI calls use the same one.
      if [ -f /var/lib/rabbitmq/.erlang.cookie ]; then
        install -m 400 -o rabbitmq -g rabbitmq /var/lib/rabbitmq/.erlang.cookie "$base/.erlang.cookie"
      fi
      setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups rabbitmq-server -detached >/dev/null 2>&1 || true
    else
      rabbitmq-server -detached >/dev/null 2>&1 || true
    fi
    for _ in $(seq 1 60); do
      if rabbitmqctl -q await_startup >/dev/null 2>&1; then echo "ref node up on 127.0.0.1:5673"; exit 0; fi
      sleep 1
    done
    echo "ref node did not start; see $base/log" >&2; exit 1 ;;
  stop) rabbitmqctl -q stop >/dev/null 2>&1 || true ;;
  status) rabbitmqctl status ;;
esac
