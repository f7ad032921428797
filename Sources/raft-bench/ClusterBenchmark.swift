import ArgumentParser
import Foundation
import Histogram
import StreamBusRaft

/// Commit throughput and latency of the Raft core alone: 3 or 5 `RaftNode`s in one process on
/// `MemoryRaftStorage`, messages handed from node to node in memory, no codec, no disk, no
/// network. What is left is the core's CPU cost per proposal (plus the driver's loop), an
/// upper bound for any real deployment.
struct ClusterBenchmarkCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cluster",
    abstract: "In-process Raft cluster on in-memory storage: commit throughput and latency.")

  @Option(help: "Cluster size: 3 or 5.")
  var nodes: Int = 3

  @Option(help: "Proposals per measured case.")
  var proposals: Int = 200_000

  @Option(help: "Comma-separated proposals submitted to the leader per driver round.")
  var batch: String = "1,16,256"

  @Option(help: "Payload bytes per proposal.")
  var payloadBytes: Int = 256

  @Option(help: "Driver rounds per tick (heartbeats go out every tick).")
  var roundsPerTick: Int = 10

  @Option(help: "Repetitions of every case; the summary reports medians across runs.")
  var runs: Int = 3

  @Option(help: "Output format: text, or json (one JSON object per result).")
  var output: OutputFormat = .text

  func validate() throws {
    guard nodes == 3 || nodes == 5 else { throw ValidationError("--nodes must be 3 or 5") }
    guard proposals > 0, proposals <= 100_000_000 else {
      throw ValidationError("--proposals must be in 1...100000000")
    }
    guard !parsedBatchSizes.isEmpty, parsedBatchSizes.allSatisfy({ $0 > 0 && $0 <= 100_000 })
    else {
      throw ValidationError("--batch needs positive sizes up to 100000, got \(batch)")
    }
    guard payloadBytes >= 8, payloadBytes <= 1 << 20 else {
      throw ValidationError("--payload-bytes must be in 8...1048576")
    }
    guard roundsPerTick > 0, runs > 0 else {
      throw ValidationError("--rounds-per-tick and --runs must be positive")
    }
  }

  private var parsedBatchSizes: [Int] {
    batch.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
  }

  func run() throws {
    for batchSize in parsedBatchSizes {
      var results: [ClusterRunResult] = []
      for run in 1...runs {
        var cluster = try BenchmarkCluster(
          nodeCount: nodes, payloadBytes: payloadBytes, roundsPerTick: roundsPerTick)
        let result = try cluster.measure(proposals: proposals, batchSize: batchSize, run: run)
        if output == .text { print(result.text) }
        results.append(result)
      }
      let summary = ClusterCaseSummary(
        nodes: nodes, proposals: proposals, batchSize: batchSize, payloadBytes: payloadBytes,
        runs: results)
      switch output {
      case .json:
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(summary), as: UTF8.self))
      case .text:
        print(summary.text)
      }
    }
  }
}

/// The driver of the in-process cluster. One round: every node steps the messages sent to it
/// in the previous round, then every node's Ready is handled (persist, send, apply, advance),
/// so messages from a round are delivered in the next one and each round drains all work.
struct BenchmarkCluster {
  private var nodes: [RaftNode]
  private let storages: [MemoryRaftStorage]
  private var inboxes: [[Message]]
  private let roundsPerTick: Int
  private let payloadBytes: Int
  private var round = 0
  /// Messages handed from one node to another since the cluster started.
  private var messagesSent = 0
  /// The state machine: a running checksum of applied payloads, so applying is not free.
  private var appliedChecksum: UInt64 = 0

  /// Keeps the in-memory logs bounded on long runs, as a real driver's snapshots do.
  private static let compactionEntriesMin: LogIndex = 50_000
  /// Entries kept behind the slowest node's applied index when compacting.
  private static let compactionMargin: LogIndex = 1_000
  private static let compactionIntervalRounds = 64
  private static let setupRoundsMax = 100_000

  init(nodeCount: Int, payloadBytes: Int, roundsPerTick: Int) throws {
    let members = (1...UInt64(nodeCount)).map { $0 }
    let storages = members.map { _ in MemoryRaftStorage(confState: ConfState(voters: members)) }
    nodes = try zip(members, storages).map { id, storage in
      var config = RaftConfig(id: id, randomSeed: 0x5241_4654 &+ id)
      config.electionTimeoutTicks = 10
      config.heartbeatTicks = 1
      return try RaftNode(config: config, storage: storage)
    }
    self.storages = storages
    inboxes = Array(repeating: [], count: nodeCount)
    self.roundsPerTick = roundsPerTick
    self.payloadBytes = payloadBytes
  }

  /// Elects node 1, waits until it applied its no-op, then submits `proposals` proposals to
  /// it, `batchSize` per round, until it applied all of them.
  mutating func measure(proposals: Int, batchSize: Int, run: Int) throws -> ClusterRunResult {
    try nodes[0].campaign()
    var setupRounds = 0
    while !(nodes[0].role == .leader && nodes[0].appliedIndex >= nodes[0].committedIndex
      && nodes[0].committedIndex > 0 && !nodes[0].hasReady)
    {
      try runRound(onApply: { _, _ in })
      setupRounds += 1
      guard setupRounds < Self.setupRoundsMax else {
        throw BenchmarkError("no leader after \(setupRounds) rounds")
      }
    }
    let firstIndex = try nodes[0].lastIndex() + 1
    let clock = ContinuousClock()
    var proposeTimes: [ContinuousClock.Instant] = []
    proposeTimes.reserveCapacity(proposals)
    var latency = Histogram<UInt64>(
      lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000,
      numberOfSignificantValueDigits: .three)
    var appliedOnLeader = 0
    var rounds = 0
    let startMessages = messagesSent
    let startCPUSeconds = threadCPUSeconds()
    let start = clock.now
    while appliedOnLeader < proposals {
      let count = min(batchSize, proposals - proposeTimes.count)
      for _ in 0..<count {
        let sequence = proposeTimes.count
        var payload = [UInt8](repeating: 0x5a, count: payloadBytes)
        withUnsafeBytes(of: UInt64(sequence).littleEndian) { bytes in
          payload.replaceSubrange(0..<8, with: bytes)
        }
        proposeTimes.append(clock.now)
        let index = try nodes[0].propose(payload)
        guard index == firstIndex + LogIndex(sequence) else {
          throw BenchmarkError("proposal \(sequence) landed at \(index): leadership changed")
        }
      }
      try runRound { position, entry in
        guard position == 0, entry.index >= firstIndex else { return }
        let nanoseconds = (clock.now - proposeTimes[Int(entry.index - firstIndex)]).nanoseconds
        _ = latency.record(UInt64(max(1, min(nanoseconds, 60_000_000_000))))
        appliedOnLeader += 1
      }
      rounds += 1
    }
    let elapsed = clock.now - start
    let cpuSeconds = threadCPUSeconds() - startCPUSeconds
    return ClusterRunResult(
      run: run, rounds: rounds,
      messagesPerProposal: Double(messagesSent - startMessages) / Double(proposals),
      elapsedSeconds: elapsed.seconds, cpuSeconds: cpuSeconds,
      proposalsPerSecond: Double(proposals) / elapsed.seconds,
      proposalsPerCPUSecond: Double(proposals) / cpuSeconds,
      latency: ClusterLatencySummary(latency), appliedChecksum: appliedChecksum)
  }

  private mutating func runRound(onApply: (Int, Entry) -> Void) throws {
    round += 1
    if round % roundsPerTick == 0 {
      for position in nodes.indices { try nodes[position].tick() }
    }
    for position in nodes.indices {
      let messages = inboxes[position]
      inboxes[position] = []
      for message in messages { try nodes[position].step(message) }
    }
    for position in nodes.indices {
      while nodes[position].hasReady {
        try handleReady(position, onApply: onApply)
      }
    }
    try compactIfNeeded()
  }

  /// The Ready contract: persist, then send, then apply, then advance.
  private mutating func handleReady(_ position: Int, onApply: (Int, Entry) -> Void) throws {
    let ready = try nodes[position].ready()
    if ready.mustPersist {
      try storages[position].persist(
        hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot)
    }
    messagesSent += ready.messages.count
    for message in ready.messages {
      inboxes[Int(message.to - 1)].append(message)
    }
    for entry in ready.committedEntries where entry.kind == .normal && !entry.data.isEmpty {
      entry.data.withUnsafeBytes { bytes in
        appliedChecksum &+= bytes.loadUnaligned(as: UInt64.self)
      }
      onApply(position, entry)
    }
    try nodes[position].advance()
  }

  private func compactIfNeeded() throws {
    guard round % Self.compactionIntervalRounds == 0 else { return }
    // Indices rather than `for node in nodes`: iterating would copy every RaftNode.
    var slowestApplied = LogIndex.max
    for position in nodes.indices {
      slowestApplied = min(slowestApplied, nodes[position].appliedIndex)
    }
    guard slowestApplied > Self.compactionMargin else { return }
    let target = slowestApplied - Self.compactionMargin
    for position in nodes.indices {
      let storage = storages[position]
      guard target >= (try storage.firstIndex()) + Self.compactionEntriesMin else { continue }
      _ = try storage.createSnapshot(at: target, confState: nodes[position].confState, data: [])
      try storage.compact(upTo: target)
    }
  }

}

// MARK: Results

struct ClusterLatencySummary: Codable {
  var samples: UInt64
  var p50Microseconds: Double
  var p99Microseconds: Double
  var p999Microseconds: Double
  var maxMicroseconds: Double
  var meanMicroseconds: Double

  init(_ histogram: Histogram<UInt64>) {
    samples = histogram.totalCount
    p50Microseconds = Double(histogram.valueAtPercentile(50)) / 1_000
    p99Microseconds = Double(histogram.valueAtPercentile(99)) / 1_000
    p999Microseconds = Double(histogram.valueAtPercentile(99.9)) / 1_000
    maxMicroseconds = Double(histogram.max) / 1_000
    meanMicroseconds = histogram.mean / 1_000
  }
}

struct ClusterRunResult: Codable {
  var run: Int
  var rounds: Int
  /// Messages between nodes (appends, acknowledgements, heartbeats) per proposal.
  var messagesPerProposal: Double
  var elapsedSeconds: Double
  /// CPU time of the (single) benchmark thread over the same interval: on a shared machine
  /// wall time includes waiting for a core, CPU time does not.
  var cpuSeconds: Double
  /// Proposals over the time from the first proposal to the last one applied on the leader.
  var proposalsPerSecond: Double
  var proposalsPerCPUSecond: Double
  /// Propose call → entry handed to the leader's state machine.
  var latency: ClusterLatencySummary
  var appliedChecksum: UInt64

  var text: String {
    String(
      format:
        "run %d: %10.0f proposals/s (%10.0f per CPU second)  %7d rounds  %.2f msgs/proposal  p50 %8.1f us"
        + "  p99 %8.1f us  p99.9 %8.1f us  max %8.1f us",
      run, proposalsPerSecond, proposalsPerCPUSecond, rounds, messagesPerProposal,
      latency.p50Microseconds, latency.p99Microseconds,
      latency.p999Microseconds, latency.maxMicroseconds)
  }
}

/// One case (cluster size, batch) over all runs, with medians of the headline numbers.
struct ClusterCaseSummary: Codable {
  var benchmark = "raft-cluster"
  var nodes: Int
  var proposals: Int
  var batchSize: Int
  var payloadBytes: Int
  var medianProposalsPerSecond: Double
  var medianProposalsPerCPUSecond: Double
  var medianP50Microseconds: Double
  var medianP99Microseconds: Double
  var medianP999Microseconds: Double
  var runs: [ClusterRunResult]

  init(nodes: Int, proposals: Int, batchSize: Int, payloadBytes: Int, runs: [ClusterRunResult]) {
    self.nodes = nodes
    self.proposals = proposals
    self.batchSize = batchSize
    self.payloadBytes = payloadBytes
    self.runs = runs
    medianProposalsPerSecond = median(runs.map(\.proposalsPerSecond))
    medianProposalsPerCPUSecond = median(runs.map(\.proposalsPerCPUSecond))
    medianP50Microseconds = median(runs.map(\.latency.p50Microseconds))
    medianP99Microseconds = median(runs.map(\.latency.p99Microseconds))
    medianP999Microseconds = median(runs.map(\.latency.p999Microseconds))
  }

  var text: String {
    String(
      format: "median of %d runs, %d nodes, batch %d, %d B: %10.0f proposals/s"
        + " (%10.0f per CPU second)  p50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us\n",
      runs.count, nodes, batchSize, payloadBytes, medianProposalsPerSecond,
      medianProposalsPerCPUSecond,
      medianP50Microseconds, medianP99Microseconds, medianP999Microseconds)
  }
}

/// CPU time consumed by the calling thread.
func threadCPUSeconds() -> Double {
  var time = timespec()
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
  return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func median(_ values: [Double]) -> Double {
  let sorted = values.sorted()
  guard !sorted.isEmpty else { return 0 }
  let middle = sorted.count / 2
  return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

extension Duration {
  fileprivate var seconds: Double {
    let parts = components
    return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
  }

  fileprivate var nanoseconds: Int64 {
    let parts = components
    return parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000
  }
}
