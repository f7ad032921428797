import Foundation
import Logging
import StreamBusClient
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusTestSupport
import StreamBusVerification
import StreamBusWorkload

#if canImport(Glibc)
  import Glibc
#endif

/// 3 metaservers + N cluster-mode databrokers as real processes of one test harness (free
/// ports, temp directories; everything killed when the harness shuts down, also on failure).
/// Brokers keep their port and data directory across restarts.
final class ReplicationCluster: @unchecked Sendable {
  struct Broker {
    let id: Int32
    let port: Int
    let dataDirectory: URL
    var process: ManagedProcess?
    var address: String { "127.0.0.1:\(port)" }
  }

  let harness: ProcessHarness
  let meta: MetaCluster
  let brokerArguments: [String]
  private let lock = NSLock()
  private var brokersByID: [Int32: Broker] = [:]
  let metaClient: MetaClient

  /// Metaservers with the default broker session timeout (1,500 ms) so that a killed broker is
  /// fenced as in production; `MetaCluster`'s own default keeps fake brokers alive forever.
  static let metaserverArguments = [
    "--broker-session-timeout-ms", "1500", "--broker-heartbeat-interval-ms", "250",
  ]

  private init(harness: ProcessHarness, meta: MetaCluster, brokerArguments: [String]) {
    self.harness = harness
    self.meta = meta
    self.brokerArguments = brokerArguments
    metaClient = meta.client(requestTimeoutMs: 10_000)
  }

  static func start(
    _ harness: ProcessHarness, brokers brokerCount: Int = 3, brokerArguments: [String] = [],
    metaserverArguments: [String] = []
  ) async throws -> ReplicationCluster {
    let meta = try await MetaCluster.start(
      harness, count: 3, extraArguments: Self.metaserverArguments + metaserverArguments)
    let cluster = ReplicationCluster(
      harness: harness, meta: meta, brokerArguments: brokerArguments)
    let ports = try FreePorts.take(brokerCount)
    for (index, port) in ports.enumerated() {
      let id = Int32(index + 1)
      let directory = try harness.makeDirectory("broker-\(id)")
      cluster.lock.withLock {
        cluster.brokersByID[id] = Broker(
          id: id, port: port, dataDirectory: directory, process: nil)
      }
    }
    try await withThrowingTaskGroup(of: Void.self) { group in
      for id in cluster.brokerIDs {
        group.addTask { try await cluster.startBroker(id) }
      }
      try await group.waitForAll()
    }
    return cluster
  }

  var brokerIDs: [Int32] { lock.withLock { brokersByID.keys.sorted() } }

  func broker(_ id: Int32) -> Broker {
    lock.withLock {
      guard let broker = brokersByID[id] else { preconditionFailure("no broker \(id)") }
      return broker
    }
  }

  var metaserverAddresses: String {
    meta.allIDs.map { meta.node($0).apiAddress }.joined(separator: ",")
  }

  /// (Re)starts a broker that is not running and waits for its ready file (written once it is
  /// registered and unfenced).
  func startBroker(_ id: Int32, readyTimeoutMs: Int = 30_000) async throws {
    let broker = broker(id)
    let readyFile = harness.rootDirectory.appendingPathComponent(
      "broker-\(id)-ready-\(UUID().uuidString)")
    let process = try harness.start(
      executableNamed: "databroker",
      arguments: [
        "--metaservers", metaserverAddresses, "--broker-id", "\(id)",
        "--data-dir", broker.dataDirectory.path, "--listen", broker.address,
        "--ready-file", readyFile.path,
      ] + brokerArguments,
      label: "databroker-\(id)")
    lock.withLock { brokersByID[id]?.process = process }
    let deadline = ContinuousClock.now + .milliseconds(readyTimeoutMs)
    while !FileManager.default.fileExists(atPath: readyFile.path) {
      if let exit = process.exit {
        throw HarnessError(
          "databroker-\(id) exited (\(exit)) before it was ready; stderr:\n"
            + process.stderrTail())
      }
      guard ContinuousClock.now < deadline else {
        throw HarnessError(
          "databroker-\(id) not ready within \(readyTimeoutMs) ms; stderr:\n"
            + process.stderrTail())
      }
      try await Task.sleep(for: .milliseconds(20))
    }
  }

  func killBroker(_ id: Int32) async throws {
    guard let process = broker(id).process else { return }
    process.signal(SIGKILL)
    try await process.waitForExit(timeoutMs: 10_000)
  }

  func signalBroker(_ id: Int32, _ signal: Int32) {
    broker(id).process?.signal(signal)
  }

  func isRunning(_ id: Int32) -> Bool {
    guard let process = broker(id).process else { return false }
    return process.exit == nil
  }

  func clientConfig(requestTimeoutMs: Int64 = 5_000) throws -> ClientConfig {
    var config = ClientConfig(
      bootstrapBrokers: try brokerIDs.map { try HostPort(parsing: broker($0).address) },
      clientId: "replication-test")
    config.requestTimeoutMs = requestTimeoutMs
    config.connectTimeoutMs = 2_000
    config.retryBackoffMaxMs = 500
    return config
  }

  /// Creates a topic through the metaservers and waits until every partition has a leader and
  /// the full ISR.
  func createTopic(
    _ name: String, partitions: Int32, replicationFactor: Int16 = 3,
    configs: [String: String] = [:]
  ) async throws {
    _ = try await metaClient.createTopic(
      name, partitions: partitions, replicationFactor: replicationFactor, configs: configs)
    for partition in 0..<partitions {
      _ = try await waitForPartition(name, partition, timeoutMs: 20_000, "leader and full ISR") {
        $0.leader >= 0 && $0.isr.count == Int(replicationFactor)
      }
    }
  }

  /// The partition as the metaservers know it.
  func partition(_ topic: String, _ partition: Int32) async throws -> MetaPartition {
    let description = try await metaClient.describeTopic(topic)
    guard let found = description.partitions.first(where: { $0.partition == partition }) else {
      throw HarnessError("\(topic) has no partition \(partition)")
    }
    return found
  }

  /// Polls the metaservers every 20 ms until `condition` holds for the partition.
  func waitForPartition(
    _ topic: String, _ partition: Int32, timeoutMs: Int, _ what: String,
    until condition: (MetaPartition) -> Bool
  ) async throws -> MetaPartition {
    try await waitForPartitionChange(topic, partition, timeoutMs: timeoutMs, what, until: condition)
      .partition
  }

  /// As `waitForPartition`, also returning when the last poll that did NOT see the condition
  /// was sent: the condition did not hold yet at that instant (e.g. no new leader existed).
  func waitForPartitionChange(
    _ topic: String, _ partition: Int32, timeoutMs: Int, _ what: String,
    until condition: (MetaPartition) -> Bool
  ) async throws -> (partition: MetaPartition, notYetAt: ContinuousClock.Instant) {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var last: MetaPartition?
    var notYetAt = ContinuousClock.now
    while true {
      let sentAt = ContinuousClock.now
      if let current = try? await self.partition(topic, partition) {
        last = current
        if condition(current) { return (current, notYetAt) }
        notYetAt = sentAt
      }
      guard ContinuousClock.now < deadline else {
        throw HarnessError(
          "\(topic)-\(partition): no \(what) within \(timeoutMs) ms; last seen: "
            + (last.map { "leader \($0.leader) epoch \($0.leaderEpoch) isr \($0.isr)" }
              ?? "nothing"))
      }
      try await Task.sleep(for: .milliseconds(20))
    }
  }

  func close() async {
    await metaClient.close()
  }
}

/// Runs `body` with a started cluster and closes its client after.
func withReplicationCluster<Result>(
  _ name: String = #function, brokers: Int = 3, brokerArguments: [String] = [],
  metaserverArguments: [String] = [], body: (ReplicationCluster) async throws -> Result
) async throws -> Result {
  try await ProcessHarness.withHarness(name) { harness in
    let cluster = try await ReplicationCluster.start(
      harness, brokers: brokers, brokerArguments: brokerArguments,
      metaserverArguments: metaserverArguments)
    do {
      let result = try await body(cluster)
      await cluster.close()
      return result
    } catch {
      await cluster.close()
      throw error
    }
  }
}

/// A test's timeline: each step printed with its time since the start and kept as a note in
/// the workload's history (so a kept history file shows the faults among the events).
final class Timeline: @unchecked Sendable {
  let name: String
  let history: History
  private let lock = NSLock()
  private var lines: [String] = []

  init(_ name: String, history: History) {
    self.name = name
    self.history = history
  }

  /// Records `text` now; returns the history time (µs).
  @discardableResult
  func mark(_ text: String, partition: Int32 = -1) -> Int64 {
    let time = history.recordNote(text, process: "test", partition: partition)
    let line = "[\(name) +\(String(format: "%8.3f", Double(time) / 1e6)) s] \(text)"
    lock.withLock { lines.append(line) }
    print(line)
    return time
  }

  var text: String { lock.withLock { lines.joined(separator: "\n") } }
}

enum ReplicationTestSettings {
  /// `REPLICATION_LONG=1`: bigger counts and more fault rounds.
  static var isLong: Bool { ProcessInfo.processInfo.environment["REPLICATION_LONG"] == "1" }

  static func seconds(_ microseconds: Int64) -> String {
    String(format: "%.3f s", Double(microseconds) / 1e6)
  }
}
