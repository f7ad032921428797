#!/usr/bin/env bash
# Peer baseline for sbbench: Redis Streams XADD with appendfsync always, on this machine,
# with the same record size as the StreamBus run. Prints one JSON object per run.
#
#   Benchmarks/peers/redis-xadd.sh [--records N] [--record-bytes B] [--clients C] [--pipeline P]
#                                   [--runs K] [--dir DIR]
#
# Needs redis-server and redis-benchmark (Debian package redis-server; .ci/run does not
# install it because the tests do not need it: `apt-get install -y redis-server`).
set -euo pipefail

records=200000
record_bytes=1024
clients=50
pipeline=32
runs=3
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --record-bytes) record_bytes=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --pipeline) pipeline=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y redis-server" >&2; exit 3; }
done

if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/sb-redis-peer.XXXXXX); fi
mkdir -p "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" \
  --appendonly yes --appendfsync always --daemonize no --logfile "$dir/redis.log" &
redis_pid=$!
cleanup() { kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

for _ in $(seq 1 50); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done

value=$(head -c "$record_bytes" /dev/zero | tr '\0' 'x')
for run in $(seq 1 "$runs"); do
  redis-cli -p "$port" del sbstream >/dev/null
  # --csv prints "test","rps",...; the custom command's row carries the requests per second.
  out=$(redis-benchmark -p "$port" -c "$clients" -P "$pipeline" -n "$records" --csv \
    XADD sbstream '*' v "$value" 2>/dev/null | tail -n 1)
  rps=$(echo "$out" | cut -d, -f2 | tr -d '"')
  printf '{"peer":"redis-xadd","appendfsync":"always","run":%d,"records":%d,"recordBytes":%d,"clients":%d,"pipeline":%d,"recordsPerSecond":%s,"mbPerSecond":%s}\n' \
    "$run" "$records" "$record_bytes" "$clients" "$pipeline" "$rps" \
    "$(python3 -c "print(round($rps*$record_bytes/1e6,1))")"
done
