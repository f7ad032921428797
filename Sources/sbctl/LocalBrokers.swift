import Foundation
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol

/// The data brokers of a local cluster: their command lines, readiness, and the demo topic.
enum LocalBrokers {
  /// Name of the topic `local up` creates unless told not to.
  static let demoTopic = "demo"
  static let demoPartitions: Int32 = 3

  /// Replication factor of the demo topic: 3, or every broker when there are fewer.
  static func demoReplicationFactor(brokerCount: Int) -> Int16 {
    Int16(min(3, brokerCount))
  }

  static func arguments(_ node: LocalNode, in cluster: LocalCluster) -> [String] {
    var arguments = [
      "--metaservers", cluster.metaserverAPIList, "--broker-id", "\(node.id)", "--data-dir",
      node.dataDir, "--listen", node.clientAddress ?? "",
    ]
    if let readyFile = node.readyFile {
      arguments += ["--ready-file", readyFile]
    }
    return arguments + passthroughFlags(cluster.brokerOptions)
  }

  /// `key=value` options as `--key value` flags.
  static func passthroughFlags(_ options: [String]) -> [String] {
    var flags: [String] = []
    for option in options {
      guard let equals = option.firstIndex(of: "=") else { continue }
      flags.append("--" + option[..<equals])
      flags.append(String(option[option.index(after: equals)...]))
    }
    return flags
  }

  /// Starts a broker (its old ready file removed first, so readiness means this start).
  static func start(_ node: LocalNode, in cluster: LocalCluster, executable: String) throws
    -> Int32
  {
    if let readyFile = node.readyFile {
      try? FileManager.default.removeItem(atPath: readyFile)
    }
    LocalStarter.appendToLog(
      node.logFile, "==== sbctl local: starting \(node.name) at \(Date())\n")
    return try LocalProcesses.spawnDaemon(
      executable: executable, arguments: arguments(node, in: cluster), logFile: node.logFile)
  }

  /// Whether the broker wrote its ready file (it listens, is registered and unfenced).
  static func isReady(_ node: LocalNode) -> Bool {
    guard let readyFile = node.readyFile,
      let text = try? String(contentsOfFile: readyFile, encoding: .utf8)
    else { return false }
    return !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
  }

  /// Waits until every broker wrote its ready file; fails early when one exits, and at the
  /// timeout, naming the broker and showing its log.
  static func waitUntilReady(_ nodes: [LocalNode], timeoutMs: Int) async throws {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var pending = nodes
    while true {
      for node in pending where !LocalProcesses.isRunning(node) && !isReady(node) {
        throw LocalClusterError(
          "\(node.name) (pid \(node.pid)) exited during start; its log \(node.logFile) ends "
            + "with:\n\(LocalProcesses.logTail(node.logFile))")
      }
      pending.removeAll(where: isReady)
      if pending.isEmpty { return }
      guard ContinuousClock.now < deadline else {
        throw LocalClusterError(
          "not registered and unfenced within \(timeoutMs) ms (no ready file): "
            + pending.map(\.name).joined(separator: ", ") + "\n\(pending[0].name)'s log "
            + "\(pending[0].logFile) ends with:\n" + LocalProcesses.logTail(pending[0].logFile))
      }
      try await Task.sleep(for: .milliseconds(50))
    }
  }

  /// Creates the demo topic and waits until every partition's leader serves it.
  static func createDemoTopic(in cluster: LocalCluster, timeoutMs: Int) async throws -> Int16 {
    let replicationFactor = demoReplicationFactor(brokerCount: cluster.brokers.count)
    let configuration = try makeMetaClientConfiguration(
      list: cluster.metaserverAPIList, requestTimeoutMs: Int64(timeoutMs))
    do {
      try await withMetaClient(configuration) { client in
        _ = try await client.createTopic(
          demoTopic, partitions: demoPartitions, replicationFactor: replicationFactor)
        try await waitUntilServed(demoTopic, client: client, timeoutMs: timeoutMs)
      }
    } catch let error as MetaClientError {
      throw LocalClusterError("cannot create the demo topic \(demoTopic): \(error)")
    }
    return replicationFactor
  }

  /// Polls until every partition of `topic` has a leader whose broker reports itself leader
  /// of it and every replica's broker hosts it, so a produce right after `up` succeeds.
  static func waitUntilServed(_ topic: String, client: MetaClient, timeoutMs: Int) async throws {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var lastProblem = "no answer yet"
    while ContinuousClock.now < deadline {
      let description = try await client.describeTopic(topic)
      var addresses: [Int32: String] = [:]
      for broker in try await client.describeCluster().brokers {
        addresses[broker.brokerID] = ReplicaStatusClient.clientAddress(of: broker)
      }
      let answers = await ReplicaStatusClient.ask(
        addresses, topics: [.init(name: topic)], timeoutMs: 1_000)
      let reports = PartitionReport.build(topic: description, answers: answers)
      if let problem = unservedReason(reports, topic: topic) {
        lastProblem = problem
      } else {
        return
      }
      try await Task.sleep(for: .milliseconds(100))
    }
    throw LocalClusterError(
      "topic \(topic) was created but is not served within \(timeoutMs) ms: \(lastProblem)")
  }

  /// Why a partition is not ready for produce and consume yet, or nil when all are.
  static func unservedReason(_ reports: [PartitionReport], topic: String) -> String? {
    for report in reports {
      let name = "\(topic)-\(report.assignment.partition)"
      guard report.assignment.leader >= 0 else { return "\(name) has no leader" }
      guard report.replicas[report.assignment.leader]?.status?.role == .leader else {
        return "\(name)'s leader \(report.assignment.leader) does not act as leader yet"
      }
      for brokerID in report.assignment.replicas {
        if let error = report.replicas[brokerID]?.errorText {
          return "\(name) on broker \(brokerID): \(error)"
        }
      }
    }
    return nil
  }
}
