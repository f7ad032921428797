#!/usr/bin/env bash
# StreamBus in one command on a fresh machine: builds (debug), starts a standalone broker in
# the background, creates a topic, produces a few records and reads them back; then starts a
# 3-node metaserver quorum (`sbctl local up`) and shows its Raft status.
#
#   scripts/demo.sh          start (stops an earlier demo broker first)
#   scripts/demo.sh stop     stop the demo broker and the demo quorum
#   scripts/demo.sh status   is it running, and where
#
# Everything lives in ./.streambus-demo/ (data, broker.log, broker.pid, broker.address, and the
# quorum in quorum/ with its cluster.json), relative to the repository root; the directory is
# git-ignored.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
demo_dir="$repo_root/.streambus-demo"
pid_file="$demo_dir/broker.pid"
address_file="$demo_dir/broker.address"
log_file="$demo_dir/broker.log"
quorum_dir="$demo_dir/quorum"
topic=demo

# The pid file's process, only if it is still a databroker (a reused pid is left alone).
demo_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid=$(cat "$pid_file")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  grep -q databroker "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

stop_broker() {
  local pid
  if pid=$(demo_pid); then
    echo "stopping demo broker (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "broker did not stop within 10 s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pid_file" "$address_file"
}

stop_quorum() {
  if [ -f "$quorum_dir/cluster.json" ]; then
    local sbctl_bin
    sbctl_bin="$(swift build --show-bin-path)/sbctl"
    [ -x "$sbctl_bin" ] && "$sbctl_bin" local down --dir "$quorum_dir" --purge || true
  fi
}

case "${1:-start}" in
  stop)
    stop_broker
    stop_quorum
    exit 0
    ;;
  status)
    if pid=$(demo_pid); then
      echo "demo broker running: pid $pid, address $(cat "$address_file" 2>/dev/null || echo '?')"
    else
      echo "demo broker not running"
    fi
    if [ -f "$quorum_dir/cluster.json" ]; then
      "$(swift build --show-bin-path)/sbctl" local status --dir "$quorum_dir" || true
    fi
    exit 0
    ;;
  start) ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac

stop_broker
stop_quorum
mkdir -p "$demo_dir/data"

echo "building databroker, metaserver and sbctl (debug)..."
swift build --product databroker >/dev/null
swift build --product metaserver >/dev/null
swift build --product sbctl >/dev/null
bin_dir=$(swift build --show-bin-path)

# Port 0: the OS picks a free port; the broker writes the bound address to the ready file.
nohup "$bin_dir/databroker" --standalone --data-dir "$demo_dir/data" \
  --listen 127.0.0.1:0 --ready-file "$address_file" >"$log_file" 2>&1 &
echo $! >"$pid_file"

for _ in $(seq 1 300); do
  [ -s "$address_file" ] && break
  if ! demo_pid >/dev/null; then
    echo "databroker exited; its log ($log_file):" >&2
    tail -n 20 "$log_file" >&2
    exit 1
  fi
  sleep 0.1
done
if [ ! -s "$address_file" ]; then
  echo "databroker not ready after 30 s; log: $log_file" >&2
  exit 1
fi
address=$(cat "$address_file")
export SB_BROKERS="$address"
sbctl="$bin_dir/sbctl"
echo "databroker listening on $address (pid $(cat "$pid_file"), log $log_file)"

echo
echo "\$ sbctl topic create $topic --partitions 1"
if ! "$sbctl" topic create "$topic" --partitions 1 2>"$demo_dir/topic-create.err"; then
  if grep -qi "exist" "$demo_dir/topic-create.err"; then
    echo "(topic $topic already exists from an earlier demo run)"
  else
    cat "$demo_dir/topic-create.err" >&2
    exit 1
  fi
fi

run_id=$(date +%H:%M:%S)
echo
echo "\$ printf 'hello\\nstreambus\\n...' | sbctl produce $topic --output jsonl"
printf '%s\n' "hello ($run_id)" "streambus ($run_id)" "records are durable once acknowledged" |
  "$sbctl" produce "$topic" --output jsonl

echo
echo "\$ sbctl consume $topic --from beginning --timeout-ms 1000"
"$sbctl" consume "$topic" --from beginning --timeout-ms 1000

echo
echo "\$ sbctl local up --dir $quorum_dir --metaservers 3"
"$sbctl" local up --dir "$quorum_dir" --metaservers 3
eval "$("$sbctl" local env --dir "$quorum_dir")"
echo
echo "\$ sbctl quorum status"
"$sbctl" quorum status

cat <<EOF

The demo broker and the metaserver quorum keep running in the background. To use them from
this shell:

  export SB_BROKERS=$address
  $sbctl topic list
  echo hi | $sbctl produce $topic
  $sbctl consume $topic --from beginning

  eval "\$($sbctl local env --dir $quorum_dir)"
  $sbctl quorum status
  $sbctl local status --dir $quorum_dir

(Cluster-mode brokers that register with the quorum come in a later step; until then the
standalone broker serves data and the quorum holds metadata only.)

Stop both with:  scripts/demo.sh stop
EOF
