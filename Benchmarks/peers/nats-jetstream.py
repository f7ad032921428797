#!/usr/bin/env python3
"""Peer baseline for the replication benchmark: a NATS JetStream R3 cluster on this machine.

Starts N nats-server members with JetStream on loopback (free ports, a fresh store directory
each), creates a file-backed stream with N replicas, then measures
  * paced latency: publishes of --record-bytes at --rate per second for --seconds, each
    waiting for its JetStream ack (the analogue of acks=all); p50/p99 of send → ack;
  * throughput: --throughput-messages publishes with --window acks outstanding at once;
    MB/s of payload;
  * failover: kill -9 the stream's leader, time until the next publish is acknowledged
    (attempts with a short timeout), then restart the killed member and wait until the
    stream has all replicas current again; over --trials.
Prints one JSON object per measurement on stdout.

Durability class: JetStream acknowledges once a quorum of replicas has the message in its
write path; it does not fsync per message (sync_interval defaults to 2 minutes). StreamBus
acks=all waits for fdatasync on every in-sync replica. The comparison is stated this way in
docs/benchmarks.md.

    Benchmarks/peers/nats-jetstream.py [--members 3] [--record-bytes 1024] [--rate 1000]
        [--seconds 10] [--throughput-messages 100000] [--window 256] [--trials 5] [--dir DIR]

Needs nats-server (Debian package nats-server) and the Python client (`pip install nats-py`).
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


class Member:
    def __init__(self, index, work_dir):
        self.name = f"n{index}"
        self.client_port = free_port()
        self.cluster_port = free_port()
        self.store_dir = os.path.join(work_dir, self.name)
        self.log_path = os.path.join(work_dir, self.name + ".log")
        self.process = None

    def start(self, routes):
        os.makedirs(self.store_dir, exist_ok=True)
        arguments = [
            "nats-server",
            "--name", self.name,
            "--server_name", self.name,
            "--addr", "127.0.0.1",
            "--port", str(self.client_port),
            "--jetstream",
            "--store_dir", self.store_dir,
            "--cluster_name", "bench",
            "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
            "--routes", ",".join(routes),
        ]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(arguments, stdout=log, stderr=log)

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.client_port}"


async def connect(members):
    import nats

    async def ignore(*_):
        # Reconnects during the failover trials are expected; the client would log each one.
        return None

    return await nats.connect(
        servers=[member.url for member in members],
        error_cb=ignore,
        disconnected_cb=ignore,
        reconnected_cb=ignore,
        connect_timeout=2,
        reconnect_time_wait=0.05,
        max_reconnect_attempts=-1,
    )


async def wait_for_stream(js, name, replicas, deadline_s):
    from nats.js.api import StreamConfig, StorageType

    end = time.monotonic() + deadline_s
    last_error = None
    while time.monotonic() < end:
        try:
            await js.add_stream(
                StreamConfig(
                    name=name, subjects=[f"{name}.>"], num_replicas=replicas,
                    storage=StorageType.FILE,
                )
            )
            return
        except Exception as error:  # the meta leader may not be elected yet
            last_error = error
            await asyncio.sleep(0.2)
    raise RuntimeError(f"stream {name} not created: {last_error}")


async def stream_leader(js, name):
    info = await js.stream_info(name)
    return info.cluster.leader if info.cluster else None


async def paced_latency(js, subject, payload, rate, seconds):
    latencies = []
    interval = 1.0 / rate
    start = time.monotonic()
    count = int(rate * seconds)
    for index in range(count):
        scheduled = start + index * interval
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.monotonic()
        await js.publish(subject, payload, timeout=5)
        latencies.append((time.monotonic() - sent) * 1000.0)
    return latencies


async def throughput(js, subject, payload, messages, window):
    semaphore = asyncio.Semaphore(window)
    failures = 0

    async def one():
        nonlocal failures
        try:
            await js.publish(subject, payload, timeout=10)
        except Exception:
            failures += 1
        finally:
            semaphore.release()

    tasks = []
    start = time.monotonic()
    for _ in range(messages):
        await semaphore.acquire()
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    return elapsed, failures


async def failover_trial(members, js, stream, subject, payload):
    leader_name = await stream_leader(js, stream)
    leader = next(member for member in members if member.name == leader_name)
    killed_at = time.monotonic()
    leader.kill()
    attempts = 0
    while True:
        attempts += 1
        try:
            await js.publish(subject, payload, timeout=0.5)
            break
        except Exception:
            await asyncio.sleep(0.01)
        if time.monotonic() - killed_at > 120:
            raise RuntimeError("no successful publish within 120 s of the kill")
    recovered_s = time.monotonic() - killed_at
    new_leader = None
    try:
        new_leader = await stream_leader(js, stream)
    except Exception:
        pass
    routes = [f"nats://127.0.0.1:{m.cluster_port}" for m in members if m is not leader]
    leader.start(routes)
    # Wait until every replica is current again before the next trial.
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            info = await js.stream_info(stream)
            replicas = info.cluster.replicas or []
            if len(replicas) == len(members) - 1 and all(r.current for r in replicas):
                break
        except Exception:
            pass
        await asyncio.sleep(0.2)
    return {
        "killed": leader_name, "new_leader": new_leader,
        "failover_s": round(recovered_s, 3), "attempts": attempts,
    }


async def main_async(arguments):
    work_dir = arguments.dir or tempfile.mkdtemp(prefix="nats-bench-")
    members = [Member(index, work_dir) for index in range(arguments.members)]
    routes = [f"nats://127.0.0.1:{member.cluster_port}" for member in members]
    connection = None
    try:
        for member in members:
            member.start([route for route in routes if not route.endswith(f":{member.cluster_port}")])
        connection = await connect(members)
        js = connection.jetstream(timeout=5)
        stream = "bench"
        await wait_for_stream(js, stream, arguments.members, 60)
        subject = f"{stream}.records"
        payload = os.urandom(arguments.record_bytes)

        # Warm up: a few hundred publishes so the first measurements are not connection setup.
        for _ in range(200):
            await js.publish(subject, payload, timeout=5)

        latencies = await paced_latency(js, subject, payload, arguments.rate, arguments.seconds)
        print(json.dumps({
            "system": "nats-jetstream", "measure": "paced_latency_ms",
            "rate": arguments.rate, "record_bytes": arguments.record_bytes,
            "count": len(latencies),
            "p50": round(statistics.median(latencies), 3),
            "p99": round(percentile(latencies, 0.99), 3),
            "max": round(max(latencies), 3),
            "durability": "quorum in memory/page cache, no per-message fsync",
        }), flush=True)

        elapsed, failures = await throughput(
            js, subject, payload, arguments.throughput_messages, arguments.window)
        print(json.dumps({
            "system": "nats-jetstream", "measure": "throughput",
            "messages": arguments.throughput_messages, "failures": failures,
            "record_bytes": arguments.record_bytes, "window": arguments.window,
            "seconds": round(elapsed, 3),
            "records_per_s": round(arguments.throughput_messages / elapsed, 1),
            "mb_per_s": round(arguments.throughput_messages * arguments.record_bytes / elapsed / 1e6, 2),
        }), flush=True)

        trials = []
        for _ in range(arguments.trials):
            trial = await failover_trial(members, js, stream, subject, payload)
            trials.append(trial["failover_s"])
            print(json.dumps({"system": "nats-jetstream", "measure": "failover_trial", **trial}),
                  flush=True)
        if trials:
            print(json.dumps({
                "system": "nats-jetstream", "measure": "failover_s",
                "trials": len(trials), "median": round(statistics.median(trials), 3),
                "max": round(max(trials), 3),
            }), flush=True)
    finally:
        if connection is not None:
            try:
                await connection.close()
            except Exception:
                pass
        for member in members:
            member.kill()
        if not arguments.dir:
            shutil.rmtree(work_dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--record-bytes", type=int, default=1024)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--throughput-messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--dir")
    arguments = parser.parse_args()
    if shutil.which("nats-server") is None:
        print("nats-server not found: apt-get install -y nats-server", file=sys.stderr)
        sys.exit(2)
    asyncio.run(main_async(arguments))


if __name__ == "__main__":
    main()
