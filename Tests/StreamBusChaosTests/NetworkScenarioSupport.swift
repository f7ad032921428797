import Foundation
import StreamBusTestSupport
import Testing

/// One network-fault scenario: a lab cluster, a topic, the verification workload running in
/// the client namespace throughout, and a timeline. `finish` stops the workload, prints the
/// timeline, the measured unavailability and the report, and checks the verdict.
final class NetworkScenario: @unchecked Sendable {
  let name: String
  let cluster: LabCluster
  let timeline: LabTimeline
  let topic: String
  let workload: LabWorkload

  private init(name: String, cluster: LabCluster, topic: String, workload: LabWorkload) {
    self.name = name
    self.cluster = cluster
    self.topic = topic
    self.workload = workload
    timeline = LabTimeline(name)
  }

  var lab: NetworkLab { cluster.lab }

  /// Workload rate for the scenarios: enough acknowledgements per partition to time a gap
  /// to a few ms, light enough for 6 debug servers on 2 cores.
  static let workloadRate = 600

  /// Starts a cluster, creates `topic` (full ISR), starts the workload and lets it write for
  /// `warmupMs`, then runs `body`.
  static func run(
    _ name: String, partitions: Int = 3, options: LabClusterOptions = LabClusterOptions(),
    workloadOptions: (inout LabWorkloadOptions) -> Void = { _ in },
    warmupMs: Int = 3_000, body: (NetworkScenario) async throws -> Void
  ) async throws {
    try await LabCluster.withCluster(name, options: options) { cluster in
      let topic = name
      try await cluster.createTopic(topic, partitions: partitions)
      var workloadConfiguration = LabWorkloadOptions(topic: topic)
      workloadConfiguration.partitions = partitions
      workloadConfiguration.rate = workloadRate
      workloadOptions(&workloadConfiguration)
      let workload = try cluster.startWorkload(workloadConfiguration)
      let scenario = NetworkScenario(
        name: name, cluster: cluster, topic: topic, workload: workload)
      scenario.timeline.mark(
        "cluster up in lab \(cluster.lab.prefix) (\(cluster.lab.subnet).0/24); topic \(topic) "
          + "(\(partitions) partitions, RF 3); workload started")
      do {
        try await Task.sleep(for: .milliseconds(warmupMs))
        try workload.checkRunning()
        try await body(scenario)
      } catch {
        try? cluster.lab.healAll()
        print("[\(name)] timeline so far:\n\(scenario.timeline.text)")
        throw error
      }
    }
  }

  // MARK: - Steps

  @discardableResult
  func mark(_ text: String, atMs: Int64? = nil) -> Int64 {
    timeline.mark(text, atMs: atMs)
  }

  func partition(_ partition: Int32) async throws -> LabPartitionState {
    try await cluster.partitionInfo(topic, partition)
  }

  func sleep(untilMs targetMs: Int64) async throws {
    let remaining = targetMs - LabTimeline.nowMs()
    if remaining > 0 { try await Task.sleep(for: .milliseconds(remaining)) }
  }

  /// Waits until `server`'s stderr contains `text`; the unix ms when it was seen, nil on
  /// timeout.
  func waitForLog(_ server: LabServer, _ text: String, afterCharacters: Int = 0, timeoutMs: Int)
    async throws -> Int64?
  {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    while ContinuousClock.now < deadline {
      if let process = cluster.process(of: server) {
        let log = process.stderrText()
        if log.count > afterCharacters, log.dropFirst(afterCharacters).contains(text) {
          return LabTimeline.nowMs()
        }
      }
      try await Task.sleep(for: .milliseconds(50))
    }
    return nil
  }

  /// How much of `server`'s stderr exists now (so later searches look only at what follows).
  func logLength(_ server: LabServer) -> Int {
    cluster.process(of: server)?.stderrText().count ?? 0
  }

  /// Waits until every partition has the full ISR and every replica's log end offset equals
  /// the high watermark (all caught up). Call after the workload stopped writing.
  func waitForAllCaughtUp(partitions: Int, timeoutMs: Int = 60_000) async throws {
    for partition in 0..<Int32(partitions) {
      _ = try await cluster.waitForPartition(
        topic, partition, timeoutMs: timeoutMs, "full ISR with every replica caught up",
        pollIntervalMs: 200
      ) { state in
        guard state.isr.count == 3, let highWatermark = state.highWatermark else { return false }
        return state.replicas.allSatisfy { state.logEndOffset(of: $0) == highWatermark }
      }
    }
  }

  /// Stops the workload, prints the timeline, the report and the unavailability of each
  /// window, and expects a PASS with acknowledged writes.
  @discardableResult
  func finish(
    windows: [(label: String, partition: Int32?, fromMs: Int64, toMs: Int64)]
  ) async throws -> DrillWorkloadReport {
    mark("stopping the workload (SIGTERM): final read and check")
    let report = try await workload.finish()
    mark("workload finished: \(report.verdict)")
    var lines: [String] = []
    for window in windows {
      let gap = report.longestGap(
        partition: window.partition, fromMs: window.fromMs, toMs: window.toMs)
      let scope = window.partition.map { "p\($0)" } ?? "any partition"
      if let gap {
        mark(
          "first successful write after \(window.label) (\(scope); gap began "
            + "\(timeline.offset(gap.fromMs)))", atMs: gap.toMs)
        lines.append(
          "\(name): unavailability \(window.label) (\(scope)): "
            + "\(ChaosSettings.seconds(gap.durationMs)) (no acknowledgement from "
            + "\(timeline.offset(gap.fromMs)) to \(timeline.offset(gap.toMs)))")
      } else {
        lines.append(
          "\(name): unavailability \(window.label) (\(scope)): < 0.200 s (no ack gap of 200 ms "
            + "or more)")
      }
    }
    print("==== \(name) timeline\n\(timeline.text)")
    for line in lines { print(line) }
    print("\(name): \(report)")
    #expect(report.passed, "\(name): \(report)")
    #expect(report.violations.isEmpty, "\(name): \(report.violations)")
    #expect(report.acknowledged > 0, "\(name): nothing acknowledged")
    #expect(report.recordsRead >= report.acknowledged, "\(name): \(report)")
    return report
  }
}

/// At most one metaserver leader per Raft term, over every sample taken while watching.
final class SplitBrainWatch: @unchecked Sendable {
  private let lock = NSLock()
  private var leadersByTerm: [Int64: Set<Int>] = [:]
  private var samples = 0
  private var task: Task<Void, Never>?

  func start(_ cluster: LabCluster) {
    task = Task {
      while !Task.isCancelled {
        let statuses = await cluster.metaserverStatuses(timeoutMs: 300)
        record(statuses)
        try? await Task.sleep(for: .milliseconds(50))
      }
    }
  }

  func record(_ statuses: [LabMetaserverStatus]) {
    lock.withLock {
      samples += 1
      for status in statuses where status.isLeader {
        leadersByTerm[status.term, default: []].insert(status.id)
      }
    }
  }

  func stop() async {
    task?.cancel()
    await task?.value
  }

  /// Terms in which more than one node said it was leader.
  var conflicts: [Int64: Set<Int>] {
    lock.withLock { leadersByTerm.filter { $0.value.count > 1 } }
  }

  var summary: String {
    lock.withLock {
      "\(samples) samples; leaders by term: "
        + leadersByTerm.sorted { $0.key < $1.key }.map { "t\($0.key)=\($0.value.sorted())" }
        .joined(separator: " ")
    }
  }
}
