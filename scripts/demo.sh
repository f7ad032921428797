#!/usr/bin/env bash
# StreamBus in one command on a fresh machine: builds (debug), starts a local cluster of
# 3 metaservers (the Raft metadata quorum) and 3 data brokers with `sbctl local up`, which
# also creates the topic `demo` (3 partitions, replication factor 3); then shows the cluster
# and the topic, produces a few records with acks=all and consumes them back.
#
#   scripts/demo.sh          start (removes an earlier demo cluster first)
#   scripts/demo.sh stop     stop the demo cluster and delete its files
#   scripts/demo.sh status   which processes run, and where
#
# Everything lives in ./.streambus-demo/cluster/ (cluster.json, each process's data and log),
# relative to the repository root; the directory is git-ignored.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
demo_dir="$repo_root/.streambus-demo"
cluster_dir="$demo_dir/cluster"
topic=demo

sbctl_path() {
  echo "$(swift build --show-bin-path)/sbctl"
}

# Stops whatever an earlier demo left: this layout's cluster, and the standalone broker and
# metaserver-only quorum of earlier versions of this script.
stop_demo() {
  local sbctl_bin
  sbctl_bin=$(sbctl_path)
  for dir in "$cluster_dir" "$demo_dir/quorum"; do
    if [ -f "$dir/cluster.json" ] && [ -x "$sbctl_bin" ]; then
      "$sbctl_bin" local down --dir "$dir" --purge || true
    fi
  done
  if [ -f "$demo_dir/broker.pid" ]; then
    local pid
    pid=$(cat "$demo_dir/broker.pid")
    if [ -n "$pid" ] && grep -q databroker "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$demo_dir/broker.pid" "$demo_dir/broker.address"
  fi
}

case "${1:-start}" in
  stop)
    stop_demo
    exit 0
    ;;
  status)
    if [ -f "$cluster_dir/cluster.json" ]; then
      "$(sbctl_path)" local status --dir "$cluster_dir"
    else
      echo "no demo cluster in $cluster_dir"
    fi
    exit 0
    ;;
  start) ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac

echo "building metaserver, databroker and sbctl (debug)..."
swift build --product metaserver >/dev/null
swift build --product databroker >/dev/null
swift build --product sbctl >/dev/null
sbctl=$(sbctl_path)
stop_demo
mkdir -p "$demo_dir"

run() {
  echo
  echo "\$ sbctl $*"
  "$sbctl" "$@"
}

run local up --dir "$cluster_dir"
eval "$("$sbctl" local env --dir "$cluster_dir")"
export SB_METASERVERS SB_BROKERS

run cluster status
run topic describe "$topic"

run_id=$(date +%H:%M:%S)
echo
echo "\$ printf 'hello\\nstreambus\\n...' | sbctl produce $topic --acks all --output jsonl"
printf '%s\n' "hello ($run_id)" "streambus ($run_id)" "acknowledged once every in-sync replica has it on disk" |
  "$sbctl" produce "$topic" --acks all --output jsonl

run consume "$topic" --from beginning --timeout-ms 1000
# The followers fetch within milliseconds; the table shows each replica's log end offset.
sleep 0.5
run topic describe "$topic"

cat <<EOF

The cluster keeps running in the background (logs and data in $cluster_dir). To use it from
this shell:

  eval "\$($sbctl local env --dir $cluster_dir)"
  $sbctl cluster status
  $sbctl topic describe $topic
  echo hi | $sbctl produce $topic --acks all
  $sbctl consume $topic --from beginning --timeout-ms 1000
  $sbctl local status --dir $cluster_dir
  $sbctl local stop --dir $cluster_dir --node broker-2     # then: topic describe, local start

Stop it and delete its files with:  scripts/demo.sh stop
EOF
