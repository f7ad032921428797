#!/usr/bin/env python3
"""Peer baseline for the metaserver benchmark: an etcd 3.4 cluster on this machine.

Starts N etcd members on loopback (free ports, a fresh data directory each), then measures
  * write latency: sequential puts of a small value (the analogue of create-topic: one
    replicated, fsynced write that the client waits for), median/p99 over --writes;
  * leader failover: kill -9 the leader, time until the next write succeeds (attempts are
    rotated over the surviving members with a short per-attempt timeout), then restart the
    killed member and wait until the cluster is healthy again; over --trials.
Prints one JSON object per measurement on stdout.

    Benchmarks/peers/etcd-meta.py [--members 3] [--writes 2000] [--trials 10]
        [--heartbeat-ms 100] [--election-ms 1000] [--dir DIR]

Needs etcd (Debian package etcd-server, 3.4): `apt-get install -y etcd-server`.
The client speaks etcd's JSON gateway over keep-alive HTTP/1.1 from Python; its own cost
(about 0.1 ms per request, measured against a no-op request) is small next to a replicated
fsync, and the StreamBus side is measured the same way: sequential requests, one at a time.
"""

import argparse
import base64
import http.client
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


def b64(text):
    return base64.b64encode(text.encode()).decode()


class Member:
    def __init__(self, index, work_dir, heartbeat_ms, election_ms):
        self.name = f"m{index}"
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = os.path.join(work_dir, self.name)
        self.log_path = os.path.join(work_dir, self.name + ".log")
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.process = None
        self.connection = None

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster, state):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                "etcd",
                "--name", self.name,
                "--data-dir", self.data_dir,
                "--listen-client-urls", f"http://127.0.0.1:{self.client_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.client_port}",
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", initial_cluster,
                "--initial-cluster-state", state,
                "--initial-cluster-token", "sb-bench",
                "--heartbeat-interval", str(self.heartbeat_ms),
                "--election-timeout", str(self.election_ms),
            ],
            stdout=log,
            stderr=log,
        )
        self.connection = None

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.connection = None

    def post(self, path, body, timeout):
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=timeout)
        self.connection.timeout = timeout
        if self.connection.sock is not None:
            self.connection.sock.settimeout(timeout)
        try:
            self.connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            payload = response.read()
        except Exception:
            self.connection.close()
            self.connection = None
            raise
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}: {payload[:200]!r}")
        return json.loads(payload)

    def put(self, key, value, timeout=5.0):
        return self.post("/v3/kv/put", {"key": b64(key), "value": b64(value)}, timeout)

    def status(self, timeout=1.0):
        return self.post("/v3/maintenance/status", {}, timeout)


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * (len(sorted_values) - 1)))))
    return sorted_values[index]


def find_leader(members, deadline_s=30.0):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for member in members:
            if member.process is None or member.process.poll() is not None:
                continue
            try:
                status = member.status()
            except Exception:
                continue
            leader_id = status.get("leader")
            if leader_id and leader_id != "0" and status["header"]["member_id"] == leader_id:
                return member
        time.sleep(0.05)
    raise RuntimeError("no etcd leader within 30 s")


def wait_healthy(members, deadline_s=60.0):
    """Every member answers a write, so the restarted one has rejoined."""
    deadline = time.monotonic() + deadline_s
    for member in members:
        while True:
            try:
                member.put("health", "ok", timeout=1.0)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{member.name} not healthy within {deadline_s} s")
                time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--heartbeat-ms", type=int, default=100)
    parser.add_argument("--election-ms", type=int, default=1000)
    parser.add_argument("--value-bytes", type=int, default=200)
    parser.add_argument("--attempt-timeout-ms", type=int, default=250)
    parser.add_argument("--dir")
    args = parser.parse_args()

    if shutil.which("etcd") is None:
        print("missing etcd: apt-get install -y etcd-server", file=sys.stderr)
        return 3
    work_dir = args.dir or tempfile.mkdtemp(prefix="sb-etcd-peer.")
    os.makedirs(work_dir, exist_ok=True)
    members = [Member(i + 1, work_dir, args.heartbeat_ms, args.election_ms) for i in range(args.members)]
    initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    try:
        for member in members:
            member.start(initial_cluster, "new")
        find_leader(members)
        wait_healthy(members)

        value = "v" * args.value_bytes
        leader = find_leader(members)
        for i in range(50):  # warm the connection and the leader's caches
            leader.put(f"warm/{i}", value)
        latencies = []
        for i in range(args.writes):
            started = time.perf_counter()
            leader.put(f"topic/{i}", value)
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        print(json.dumps({
            "system": "etcd", "version": version, "measure": "write_latency_ms",
            "members": args.members, "writes": args.writes,
            "p50": round(statistics.median(latencies), 3),
            "p99": round(percentile(latencies, 0.99), 3),
            "max": round(latencies[-1], 3),
        }), flush=True)

        failovers = []
        attempt_timeout = args.attempt_timeout_ms / 1000
        for trial in range(args.trials):
            leader = find_leader(members)
            survivors = [m for m in members if m is not leader]
            killed_at = time.perf_counter()
            leader.kill()
            attempt = 0
            while True:
                member = survivors[attempt % len(survivors)]
                attempt += 1
                try:
                    member.put(f"failover/{trial}", value, timeout=attempt_timeout)
                    break
                except Exception:
                    pass
                if time.perf_counter() - killed_at > 30:
                    raise RuntimeError("no successful write within 30 s of the kill")
            failovers.append(time.perf_counter() - killed_at)
            leader.start(initial_cluster, "existing")
            wait_healthy(members)
        failovers.sort()
        print(json.dumps({
            "system": "etcd", "version": version, "measure": "failover_s",
            "members": args.members, "trials": args.trials,
            "heartbeat_ms": args.heartbeat_ms, "election_ms": args.election_ms,
            "median": round(statistics.median(failovers), 3),
            "max": round(failovers[-1], 3),
            "all": [round(x, 3) for x in failovers],
        }), flush=True)
    finally:
        for member in members:
            member.kill()
        if not args.dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
