#!/usr/bin/env python3
"""Medians of a Benchmarks/run.sh results file (JSON lines from sbbench and redis-xadd.sh).

Prints one JSON object per benchmark group (medians over runs), then a markdown table with
the issue targets:
  - 1 KiB acks=all producer records/s >= 1.5 x Redis XADD (appendfsync always) records/s
  - producer p99 <= 5 ms at 1,000 records/s (1 KiB, acks=all)
  - consumer throughput from the page cache >= 1 GB/s
"""
import json
import statistics
import sys
from collections import defaultdict


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def load(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip().startswith("{")]


def group_key(result):
    name = result["benchmark"]
    parameters = result.get("parameters", {})
    if name.startswith("produce."):
        return (name, parameters.get("driver"), parameters.get("recordBytes"), parameters.get("acks"))
    if name == "consume.throughput":
        return (name, parameters.get("driver"), parameters.get("recordBytes"), None)
    if name == "redis.xadd":
        return (name, "redis", str(result.get("recordBytes")), "appendfsync=always")
    return (name, None, None, None)


def summarize(results):
    groups = defaultdict(list)
    for result in results:
        if result["benchmark"] == "consume.fill":
            continue
        # The first consume pass may still warm caches; the later passes are the measurement.
        if result["benchmark"] == "consume.throughput" and result["parameters"].get("pass") == "1":
            continue
        groups[group_key(result)].append(result)
    summaries = []
    for (name, driver, record_bytes, acks), members in sorted(groups.items(), key=lambda item: str(item[0])):
        latency = [m.get("latency") or {} for m in members]
        summaries.append({
            "benchmark": name,
            "driver": driver,
            "recordBytes": int(record_bytes) if record_bytes else None,
            "acks": acks,
            "samples": len(members),
            "recordsPerSecond": median([m.get("recordsPerSecond") for m in members]),
            "mbPerSecond": median([m.get("mbPerSecond") for m in members]),
            "opsPerSecond": median([m.get("opsPerSecond") for m in members]),
            "p50Ms": median([l.get("p50Ms") for l in latency]),
            "p99Ms": median([l.get("p99Ms") for l in latency]),
            "p999Ms": median([l.get("p999Ms") for l in latency]),
            "errors": sum(m.get("errors") or 0 for m in members),
        })
    return summaries


def find(summaries, name, driver=None, record_bytes=None, acks=None):
    for summary in summaries:
        if summary["benchmark"] != name:
            continue
        if driver is not None and summary["driver"] != driver:
            continue
        if record_bytes is not None and summary["recordBytes"] != record_bytes:
            continue
        if acks is not None and summary["acks"] != acks:
            continue
        return summary
    return None


def targets(summaries):
    checks = []
    redis = find(summaries, "redis.xadd", record_bytes=1024)
    for driver in ("client", "raw"):
        produce = find(summaries, "produce.throughput", driver, 1024, "all")
        if produce and redis and redis["recordsPerSecond"]:
            ratio = produce["recordsPerSecond"] / redis["recordsPerSecond"]
            checks.append({
                "target": "1 KiB acks=all records/s >= 1.5 x Redis XADD always",
                "driver": driver, "value": round(ratio, 2), "unit": "x Redis",
                "streambusRecordsPerSecond": produce["recordsPerSecond"],
                "redisRecordsPerSecond": redis["recordsPerSecond"], "met": ratio >= 1.5,
            })
        latency = find(summaries, "produce.latency", driver, 1024, "all")
        if latency and latency["p99Ms"] is not None:
            checks.append({
                "target": "produce p99 <= 5 ms at 1,000 records/s", "driver": driver,
                "value": round(latency["p99Ms"], 2), "unit": "ms", "met": latency["p99Ms"] <= 5.0,
            })
        consume = find(summaries, "consume.throughput", driver)
        if consume and consume["mbPerSecond"] is not None:
            checks.append({
                "target": "consume from page cache >= 1 GB/s", "driver": driver,
                "value": round(consume["mbPerSecond"], 1), "unit": "MB/s", "met": consume["mbPerSecond"] >= 1000,
            })
    return checks


def cell(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def main():
    if len(sys.argv) != 2:
        print("usage: summarize.py RESULTS.jsonl", file=sys.stderr)
        return 2
    summaries = summarize(load(sys.argv[1]))
    checks = targets(summaries)
    for summary in summaries:
        print(json.dumps({"summary": summary}, sort_keys=True))
    for check in checks:
        print(json.dumps({"target": check}, sort_keys=True))

    print()
    print("| benchmark | driver | record bytes | acks | runs | records/s | MB/s | ops/s | p50 ms | p99 ms | p99.9 ms |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        print(
            f"| {s['benchmark']} | {s['driver'] or '-'} | {s['recordBytes'] or '-'} | {s['acks'] or '-'} "
            f"| {s['samples']} | {cell(s['recordsPerSecond'], 0)} | {cell(s['mbPerSecond'])} "
            f"| {cell(s['opsPerSecond'], 0)} | {cell(s['p50Ms'], 2)} | {cell(s['p99Ms'], 2)} "
            f"| {cell(s['p999Ms'], 2)} |")
    print()
    print("| target | driver | measured | met |")
    print("|---|---|---:|---|")
    for check in checks:
        print(f"| {check['target']} | {check['driver']} | {check['value']} {check['unit']} | "
              f"{'yes' if check['met'] else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
