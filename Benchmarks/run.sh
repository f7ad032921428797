#!/usr/bin/env bash
# The StreamBus benchmark suite: builds release, measures the disk, the producer (100 B and
# 1 KiB records, acks=1 and acks=all), producer latency at a fixed 1,000 records/s, consumer
# throughput from the page cache, and the Redis Streams XADD peer on the same disk; prints
# medians as JSON lines and a markdown table with the issue targets.
#
#   Benchmarks/run.sh [--runs K] [--quick] [--drivers "client raw"] [--skip-build]
#                     [--work-dir DIR] [--results FILE] [--no-redis]
#
# Each sbbench run spawns its own release databroker in a fresh directory under --work-dir
# (default ./.bench-work, on the same disk as the repository) and kills it afterwards.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

runs=3
quick=0
drivers="client raw"
skip_build=0
work_dir="$repo_root/.bench-work"
results=""
with_redis=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --drivers) drivers=$2; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    --no-redis) with_redis=0; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ "$quick" = 1 ]; then
  produce_records=50000; latency_seconds=5; consume_records=200000
  disk_bytes=$((256 << 20)); sync_ops=500; redis_records=100000
else
  produce_records=200000; latency_seconds=10; consume_records=1000000
  disk_bytes=$((1 << 30)); sync_ops=2000; redis_records=200000
fi

mkdir -p "$work_dir"
if [ -z "$results" ]; then
  results="$work_dir/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
fi
: >"$results"

if [ "$skip_build" = 0 ]; then
  echo "building release: databroker, sbbench" >&2
  swift build -c release --product databroker >&2
  swift build -c release --product sbbench >&2
fi
bin_dir=$(swift build -c release --show-bin-path)
sbbench="$bin_dir/sbbench"
[ -x "$sbbench" ] && [ -x "$bin_dir/databroker" ] || {
  echo "release binaries missing in $bin_dir (run without --skip-build)" >&2
  exit 1
}

# Runs one benchmark command, tagging each JSON line with the run number.
record() {
  local run=$1
  shift
  echo "+ $*" >&2
  "$@" --output json | python3 -c '
import json, sys
run = int(sys.argv[1])
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    result = json.loads(line)
    result["run"] = run
    print(json.dumps(result, sort_keys=True))
' "$run" | tee -a "$results" >&2
}

spawn=(--spawn --spawn-configuration release --work-dir "$work_dir")

for run in $(seq 1 "$runs"); do
  echo "=== run $run of $runs" >&2
  record "$run" "$sbbench" disk --dir "$work_dir" --sequential-bytes "$disk_bytes" \
    --sync-ops "$sync_ops"
  for driver in $drivers; do
    for bytes in 100 1024; do
      for acks in 1 all; do
        record "$run" "$sbbench" produce "${spawn[@]}" --driver "$driver" \
          --record-bytes "$bytes" --acks "$acks" --records "$produce_records"
      done
    done
    # Latency: one record per request, nothing waits for a batch to fill.
    if [ "$driver" = client ]; then
      latency_knobs=(--linger-ms 0)
    else
      # One record per request, as a latency-sensitive client sends them; spread over 8
      # connections like the client library's connections to several brokers would be.
      latency_knobs=(--connections 8 --batch-records 1)
    fi
    record "$run" "$sbbench" produce "${spawn[@]}" --driver "$driver" --record-bytes 1024 \
      --acks all --rate 1000 --duration-s "$latency_seconds" "${latency_knobs[@]}"
    record "$run" "$sbbench" consume "${spawn[@]}" --driver "$driver" --record-bytes 1024 \
      --records "$consume_records" --passes 3
  done
  if [ "$with_redis" = 1 ]; then
    for bytes in 100 1024; do
      echo "+ Benchmarks/peers/redis-xadd.sh --record-bytes $bytes" >&2
      Benchmarks/peers/redis-xadd.sh --records "$redis_records" --record-bytes "$bytes" \
        --runs 1 --dir "$work_dir/redis-$run-$bytes" | python3 -c '
import json, sys
for line in sys.stdin:
    result = json.loads(line)
    result["benchmark"] = "redis.xadd"
    result["run"] = int(sys.argv[1])
    print(json.dumps(result, sort_keys=True))
' "$run" | tee -a "$results" >&2
    done
  fi
done

echo "results: $results" >&2
python3 "$repo_root/Benchmarks/summarize.py" "$results"
