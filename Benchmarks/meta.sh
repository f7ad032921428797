#!/usr/bin/env bash
# Metadata quorum benchmark next to etcd 3.4 on the same machine, same cluster size:
#   * create-topic latency (sequential, one at a time) vs etcd put latency;
#   * leader failover after kill -9, measured as time until the next write succeeds.
# Prints JSON lines (results file) and a markdown table with the issue targets.
#
#   Benchmarks/meta.sh [--metaservers 3] [--writes 2000] [--trials 10] [--skip-build]
#                      [--work-dir DIR] [--no-etcd]
#
# The StreamBus cluster is started with the release `sbctl local up` in a fresh directory
# under --work-dir (default ./.bench-work, on the same disk as the repository) and torn down
# afterwards. etcd (Debian package etcd-server) runs with heartbeat 100 ms and election
# timeout 1 s, as in the issue's reference figures.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

metaservers=3
writes=2000
trials=10
skip_build=0
work_dir="$repo_root/.bench-work"
with_etcd=1
while [ $# -gt 0 ]; do
  case "$1" in
    --metaservers) metaservers=$2; shift 2 ;;
    --writes) writes=$2; shift 2 ;;
    --trials) trials=$2; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --no-etcd) with_etcd=0; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

mkdir -p "$work_dir"
results="$work_dir/meta-results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: >"$results"

if [ "$skip_build" = 0 ]; then
  echo "building release: metaserver, sbctl, sbbench" >&2
  for product in metaserver sbctl sbbench; do
    swift build -c release --product "$product" >&2
  done
fi
bin_dir=$(swift build -c release --show-bin-path)
for tool in metaserver sbctl sbbench; do
  [ -x "$bin_dir/$tool" ] || { echo "missing $bin_dir/$tool (run without --skip-build)" >&2; exit 1; }
done

cluster_dir=$(mktemp -d "$work_dir/meta-cluster.XXXXXX")
cleanup() { "$bin_dir/sbctl" local down --dir "$cluster_dir" --purge >/dev/null 2>&1 || true; }
trap cleanup EXIT

"$bin_dir/sbctl" local up --dir "$cluster_dir" --metaservers "$metaservers" --brokers 0 >&2
"$bin_dir/sbbench" meta latency --cluster "$cluster_dir" --count "$writes" --output json \
  | tee -a "$results"
"$bin_dir/sbbench" meta failover --cluster "$cluster_dir" --trials "$trials" --output json \
  | tee -a "$results"
cleanup

if [ "$with_etcd" = 1 ]; then
  etcd_dir=$(mktemp -d "$work_dir/etcd.XXXXXX")
  Benchmarks/peers/etcd-meta.py --members "$metaservers" --writes "$writes" --trials "$trials" \
    --dir "$etcd_dir" | tee -a "$results"
  rm -rf "$etcd_dir"
fi

python3 - "$results" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
def find(pred):
    return next((r for r in rows if pred(r)), None)
sb_lat = find(lambda r: r.get("benchmark") == "meta-create-topic")
sb_fail = find(lambda r: r.get("benchmark") == "meta-failover")
etcd_lat = find(lambda r: r.get("system") == "etcd" and r.get("measure") == "write_latency_ms")
etcd_fail = find(lambda r: r.get("system") == "etcd" and r.get("measure") == "failover_s")
def fmt(value, unit):
    return "-" if value is None else f"{value:.3f} {unit}"
print()
print("| measure | StreamBus | etcd 3.4 | target | met |")
print("|---|---|---|---|---|")
if sb_lat:
    p50, p99 = sb_lat["latency"]["p50Ms"], sb_lat["latency"]["p99Ms"]
    print(f"| create-topic p50 | {fmt(p50,'ms')} | {fmt(etcd_lat and etcd_lat['p50'],'ms')} | ≤ 3 ms | {'yes' if p50 <= 3 else 'no'} |")
    print(f"| create-topic p99 | {fmt(p99,'ms')} | {fmt(etcd_lat and etcd_lat['p99'],'ms')} | ≤ 10 ms | {'yes' if p99 <= 10 else 'no'} |")
if sb_fail:
    median, worst = sb_fail["latency"]["p50Ms"] / 1000, sb_fail["latency"]["maxMs"] / 1000
    print(f"| failover median | {fmt(median,'s')} | {fmt(etcd_fail and etcd_fail['median'],'s')} | ≤ 0.8 s | {'yes' if median <= 0.8 else 'no'} |")
    print(f"| failover max | {fmt(worst,'s')} | {fmt(etcd_fail and etcd_fail['max'],'s')} | ≤ 1.5 s | {'yes' if worst <= 1.5 else 'no'} |")
print(f"\nresults: {sys.argv[1]}")
EOF
