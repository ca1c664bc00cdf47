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
    ulimit -n 65536 2>/dev/null || true
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do
      if rabbitmqctl -q await_startup >/dev/null 2>&1; then echo "ref node up on 127.0.0.1:5673"; exit 0; fi
      sleep 1
    done
    echo "ref node did not start; see $base/log" >&2; exit 1 ;;
  stop) rabbitmqctl -q stop >/dev/null 2>&1 || true ;;
  status) rabbitmqctl status ;;
esac
