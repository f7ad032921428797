import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A server process of a `LabCluster`.
public enum LabServer: Sendable, Hashable, CustomStringConvertible {
  case metaserver(Int)
  case broker(Int32)

  public var description: String {
    switch self {
    case .metaserver(let id): return "metaserver \(id)"
    case .broker(let id): return "broker \(id)"
    }
  }
}

/// How a `LabCluster` is started.
public struct LabClusterOptions: Sendable {
  public var metaserverCount = 3
  public var brokerCount = 3
  /// Flags every metaserver gets after the addresses (timing; see `defaultMetaserverArguments`).
  public var metaserverArguments = LabCluster.defaultMetaserverArguments
  /// Flags every broker gets after the addresses and its data directory.
  public var brokerArguments: [String] = []
  /// Brokers whose data directory is a tmpfs of this many MiB (disk-full scenarios).
  public var brokerDataTmpfsMiB: [Int32: Int] = [:]

  public init() {}
}

/// Raft and broker-session timing of a metaserver, in one place (`LabCluster` reads it back
/// for the timelines).
public enum LabTiming {
  public static let raftElectionTimeoutMs = 300
  public static let brokerSessionTimeoutMs = 1_500
}

/// 3 metaservers + 3 cluster-mode brokers, each in its own namespace of a `NetworkLab`, and a
/// `client` namespace where `sbctl` runs (topic commands, the `sbctl drill workload`
/// verification workload). Every node listens on its own lab address with fixed ports
/// (metaserver raft 7001, api 7002, http 7003; broker 9092): the namespaces are private, so
/// two labs never collide. Brokers and metaservers keep their data directories across
/// restarts.
public final class LabCluster: @unchecked Sendable {
  public static let metaserverRaftPort = 7001
  public static let metaserverAPIPort = 7002
  public static let metaserverHTTPPort = 7003
  public static let brokerPort = 9092

  /// Fast Raft timing (failover well under a second) and production broker sessions
  /// (a silent broker is fenced after 1.5 s).
  public static let defaultMetaserverArguments = [
    "--tick-interval-ms", "20", "--raft-heartbeat-interval-ms", "40",
    "--raft-election-timeout-ms", "\(LabTiming.raftElectionTimeoutMs)",
    "--broker-session-timeout-ms", "\(LabTiming.brokerSessionTimeoutMs)",
    "--broker-heartbeat-interval-ms", "250", "--request-timeout-ms", "4000",
    "--log-level", "info",
  ]

  public let lab: NetworkLab
  public let options: LabClusterOptions
  /// Where `sbctl` and the workload run; not partitioned unless a test does so.
  public let client: LabNode
  public let metaserverIDs: [Int]
  public let brokerIDs: [Int32]

  private let lock = NSLock()
  private var metaserverNodes: [Int: LabNode] = [:]
  private var brokerNodes: [Int32: LabNode] = [:]
  private var dataDirectories: [LabServer: URL] = [:]
  private var processes: [LabServer: ManagedProcess] = [:]

  private init(lab: NetworkLab, options: LabClusterOptions, client: LabNode) {
    self.lab = lab
    self.options = options
    self.client = client
    metaserverIDs = Array(1...options.metaserverCount)
    brokerIDs = (1...options.brokerCount).map { Int32($0) }
  }

  /// Builds the lab's nodes, starts every metaserver and broker and waits until all are
  /// ready (metaservers' /readyz, brokers' ready files: registered and unfenced).
  public static func start(in lab: NetworkLab, options: LabClusterOptions = LabClusterOptions())
    async throws -> LabCluster
  {
    precondition(options.metaserverCount >= 1 && options.brokerCount >= 1)
    let client = try lab.addNode("client")
    let cluster = LabCluster(lab: lab, options: options, client: client)
    for id in cluster.metaserverIDs {
      let node = try lab.addNode("metaserver-\(id)")
      let directory = try lab.harness.makeDirectory("metaserver-\(id)")
      cluster.lock.withLock {
        cluster.metaserverNodes[id] = node
        cluster.dataDirectories[.metaserver(id)] = directory
      }
    }
    for id in cluster.brokerIDs {
      let node = try lab.addNode("broker-\(id)")
      let directory: URL
      if let sizeMiB = options.brokerDataTmpfsMiB[id] {
        directory = try lab.mountTmpfs(named: "broker-\(id)", sizeMiB: sizeMiB)
      } else {
        directory = try lab.harness.makeDirectory("broker-\(id)")
      }
      cluster.lock.withLock {
        cluster.brokerNodes[id] = node
        cluster.dataDirectories[.broker(id)] = directory
      }
    }
    for id in cluster.metaserverIDs {
      try cluster.launch(.metaserver(id))
    }
    for id in cluster.metaserverIDs {
      try await cluster.waitUntilReady(.metaserver(id), timeoutMs: 60_000)
    }
    for id in cluster.brokerIDs {
      try cluster.launch(.broker(id))
    }
    for id in cluster.brokerIDs {
      try await cluster.waitUntilReady(.broker(id), timeoutMs: 60_000)
    }
    return cluster
  }

  /// Runs `body` with a new lab and a started cluster; everything is torn down after, also
  /// when `body` throws (then the servers' stderr tails are printed first).
  public static func withCluster<Result>(
    _ name: String, options: LabClusterOptions = LabClusterOptions(),
    body: (LabCluster) async throws -> Result
  ) async throws -> Result {
    try await NetworkLab.withLab(name) { lab in
      let cluster = try await LabCluster.start(in: lab, options: options)
      return try await body(cluster)
    }
  }

  // MARK: - Nodes and addresses

  public func metaserverNode(_ id: Int) -> LabNode {
    lock.withLock {
      guard let node = metaserverNodes[id] else { preconditionFailure("no metaserver \(id)") }
      return node
    }
  }

  public func brokerNode(_ id: Int32) -> LabNode {
    lock.withLock {
      guard let node = brokerNodes[id] else { preconditionFailure("no broker \(id)") }
      return node
    }
  }

  public func node(of server: LabServer) -> LabNode {
    switch server {
    case .metaserver(let id): return metaserverNode(id)
    case .broker(let id): return brokerNode(id)
    }
  }

  public var metaserverNodeList: [LabNode] { metaserverIDs.map(metaserverNode) }
  public var brokerNodeList: [LabNode] { brokerIDs.map(brokerNode) }
  /// Every metaserver and broker (not the client).
  public var serverNodes: [LabNode] { metaserverNodeList + brokerNodeList }

  public func metaserverAPIAddress(_ id: Int) -> String {
    metaserverNode(id).endpoint(Self.metaserverAPIPort)
  }

  public func metaserverHTTPAddress(_ id: Int) -> String {
    metaserverNode(id).endpoint(Self.metaserverHTTPPort)
  }

  public func brokerAddress(_ id: Int32) -> String { brokerNode(id).endpoint(Self.brokerPort) }

  /// `H:P,H:P,...` of every metaserver's API (for `--metaservers`).
  public var metaserverAddresses: String {
    metaserverIDs.map(metaserverAPIAddress).joined(separator: ",")
  }

  /// `H:P,H:P,...` of every broker (for `--brokers` / `--bootstrap`).
  public var bootstrapBrokers: String {
    brokerIDs.map(brokerAddress).joined(separator: ",")
  }

  public func dataDirectory(of server: LabServer) -> URL {
    lock.withLock {
      guard let directory = dataDirectories[server] else { preconditionFailure("no \(server)") }
      return directory
    }
  }

  // MARK: - Processes

  /// The running (or last) process of a server.
  public func process(of server: LabServer) -> ManagedProcess? {
    lock.withLock { processes[server] }
  }

  public func isRunning(_ server: LabServer) -> Bool {
    process(of: server)?.isRunning ?? false
  }

  /// kill -9, then waits until the process is gone.
  public func kill(_ server: LabServer) async throws {
    guard let process = process(of: server) else { return }
    process.signal(SIGKILL)
    try await process.waitForExit(timeoutMs: 10_000)
  }

  /// SIGSTOP: the process keeps its sockets but does nothing.
  public func pause(_ server: LabServer) {
    process(of: server)?.signal(SIGSTOP)
  }

  /// SIGCONT after `pause`.
  public func resume(_ server: LabServer) {
    process(of: server)?.signal(SIGCONT)
  }

  /// SIGTERM (graceful stop), then waits for the exit.
  @discardableResult
  public func terminate(_ server: LabServer, timeoutMs: Int = 40_000) async throws -> ProcessExit? {
    guard let process = process(of: server), process.isRunning else { return nil }
    process.signal(SIGTERM)
    return try await process.waitForExit(timeoutMs: timeoutMs)
  }

  /// Starts a server that is not running (its data directory as it is) and waits until it is
  /// ready; a running one is killed with -9 first.
  public func restart(_ server: LabServer, readyTimeoutMs: Int = 60_000) async throws {
    if isRunning(server) { try await kill(server) }
    try launch(server)
    try await waitUntilReady(server, timeoutMs: readyTimeoutMs)
  }

  private func readyFile(of server: LabServer) -> URL {
    let name: String
    switch server {
    case .metaserver(let id): name = "metaserver-\(id)"
    case .broker(let id): name = "broker-\(id)"
    }
    return lab.harness.rootDirectory.appendingPathComponent("\(name).ready")
  }

  private func launch(_ server: LabServer) throws {
    let node = node(of: server)
    let directory = dataDirectory(of: server)
    let readyFile = readyFile(of: server)
    try? FileManager.default.removeItem(at: readyFile)
    let process: ManagedProcess
    switch server {
    case .metaserver(let id):
      let initialCluster = metaserverIDs.map {
        "\($0)=\(metaserverNode($0).endpoint(Self.metaserverRaftPort))"
      }.joined(separator: ",")
      process = try lab.start(
        in: node, executableNamed: "metaserver",
        arguments: [
          "--node-id", "\(id)", "--data-dir", directory.path,
          "--raft-listen", node.endpoint(Self.metaserverRaftPort),
          "--api-listen", node.endpoint(Self.metaserverAPIPort),
          "--http-listen", node.endpoint(Self.metaserverHTTPPort),
          "--initial-cluster", initialCluster,
        ] + options.metaserverArguments,
        label: "metaserver-\(id)")
    case .broker(let id):
      process = try lab.start(
        in: node, executableNamed: "databroker",
        arguments: [
          "--metaservers", metaserverAddresses, "--broker-id", "\(id)",
          "--data-dir", directory.path, "--listen", node.endpoint(Self.brokerPort),
          "--ready-file", readyFile.path,
        ] + options.brokerArguments,
        label: "databroker-\(id)")
    }
    lock.withLock { processes[server] = process }
  }

  /// Waits until a server is ready: a metaserver's /readyz answers 200 (asked from the client
  /// node), a broker wrote its ready file.
  public func waitUntilReady(_ server: LabServer, timeoutMs: Int) async throws {
    guard let process = process(of: server) else {
      throw HarnessError("\(server) was never started")
    }
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    while true {
      if let exit = process.exit {
        throw HarnessError(
          "\(server) exited (\(exit)) before it was ready; stderr:\n\(process.stderrTail())")
      }
      switch server {
      case .metaserver(let id):
        if let response = try await lab.httpGet(
          from: client, address: metaserverHTTPAddress(id), path: "/readyz"),
          response.status == 200
        {
          return
        }
      case .broker:
        if FileManager.default.fileExists(atPath: readyFile(of: server).path) { return }
      }
      guard ContinuousClock.now < deadline else {
        throw HarnessError(
          "\(server) not ready within \(timeoutMs) ms; stderr:\n\(process.stderrTail())")
      }
      try await Task.sleep(for: .milliseconds(50))
    }
  }

  // MARK: - sbctl from the client node

  /// Runs `sbctl ARGUMENTS` in the client namespace with `SB_METASERVERS` and `SB_BROKERS`
  /// naming this cluster (flags given in `arguments` take precedence).
  public func sbctl(
    _ arguments: [String], from node: LabNode? = nil, timeoutMs: Int = 30_000
  ) async throws -> ProcessResult {
    try await lab.run(
      in: node ?? client, executableNamed: "sbctl", arguments: arguments, timeoutMs: timeoutMs,
      environment: ["SB_METASERVERS": metaserverAddresses, "SB_BROKERS": bootstrapBrokers])
  }

  /// `sbctl topic create` through the metaservers, then waits until every partition has a
  /// leader and the full ISR.
  public func createTopic(
    _ topic: String, partitions: Int, replicationFactor: Int = 3, timeoutMs: Int = 60_000
  ) async throws {
    try await sbctl([
      "topic", "create", topic, "--partitions", "\(partitions)",
      "--replicas", "\(replicationFactor)",
    ]).checkSuccess()
    for partition in 0..<Int32(partitions) {
      _ = try await waitForPartition(
        topic, partition, timeoutMs: timeoutMs, "leader and full ISR"
      ) { $0.leader >= 0 && $0.isr.count == replicationFactor }
    }
  }

  /// `sbctl topic describe TOPIC --output json` (metaservers for the assignment, each replica
  /// for its offsets).
  public func describeTopic(_ topic: String, requestTimeoutMs: Int = 1_500) async throws
    -> LabTopicDescription
  {
    let result = try await sbctl(
      [
        "topic", "describe", topic, "--output", "json",
        "--request-timeout-ms", "\(requestTimeoutMs)",
      ], timeoutMs: requestTimeoutMs + 15_000)
    try result.checkSuccess()
    do {
      return try JSONDecoder().decode(LabTopicDescription.self, from: result.stdout)
    } catch {
      throw HarnessError(
        "sbctl topic describe \(topic): unreadable JSON (\(error)): \(result.stdoutText)")
    }
  }

  public func partitionInfo(_ topic: String, _ partition: Int32) async throws -> LabPartitionState {
    let description = try await describeTopic(topic)
    guard let found = description.partitions.first(where: { $0.partition == partition }) else {
      throw HarnessError("\(topic) has no partition \(partition)")
    }
    return found
  }

  /// Polls `describeTopic` until `condition` holds for the partition. Returns the state seen
  /// and the unix-ms time of the last poll that did NOT see it (the condition did not hold yet
  /// then), so "fault detected between X and Y" can be stated.
  public func waitForPartition(
    _ topic: String, _ partition: Int32, timeoutMs: Int, _ what: String,
    pollIntervalMs: Int = 100, until condition: (LabPartitionState) -> Bool
  ) async throws -> (state: LabPartitionState, notYetAtMs: Int64) {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var last: LabPartitionState?
    var lastError: Error?
    var notYetAtMs = LabTimeline.nowMs()
    while true {
      let sentAtMs = LabTimeline.nowMs()
      do {
        let current = try await partitionInfo(topic, partition)
        last = current
        if condition(current) { return (current, notYetAtMs) }
        notYetAtMs = sentAtMs
      } catch {
        lastError = error
      }
      guard ContinuousClock.now < deadline else {
        throw HarnessError(
          "\(topic)-\(partition): no \(what) within \(timeoutMs) ms; last seen: "
            + (last.map(\.description) ?? "nothing")
            + (lastError.map { "; last error: \($0)" } ?? ""))
      }
      try await Task.sleep(for: .milliseconds(pollIntervalMs))
    }
  }

  // MARK: - Metaserver state (its /metrics, asked from inside the lab)

  /// A metaserver's Raft view from its /metrics; nil when it does not answer in time.
  public func metaserverStatus(_ id: Int, from node: LabNode? = nil, timeoutMs: Int = 1_000)
    async throws -> LabMetaserverStatus?
  {
    guard
      let response = try await lab.httpGet(
        from: node ?? client, address: metaserverHTTPAddress(id), path: "/metrics",
        timeoutMs: timeoutMs),
      response.status == 200
    else { return nil }
    var values: [String: Double] = [:]
    for line in response.body.split(separator: "\n") where !line.hasPrefix("#") {
      let parts = line.split(separator: " ")
      if parts.count == 2, parts[0].hasPrefix("streambus_metaserver_"), let value = Double(parts[1])
      {
        values[String(parts[0].dropFirst("streambus_metaserver_".count))] = value
      }
    }
    guard let isLeader = values["is_leader"], let term = values["raft_term"] else { return nil }
    return LabMetaserverStatus(
      id: id, isLeader: isLeader == 1, term: Int64(term),
      commitIndex: Int64(values["raft_commit_index"] ?? -1),
      appliedIndex: Int64(values["raft_applied_index"] ?? -1))
  }

  /// Every answering metaserver's status (asked concurrently).
  public func metaserverStatuses(timeoutMs: Int = 1_000) async -> [LabMetaserverStatus] {
    await withTaskGroup(of: LabMetaserverStatus?.self) { group in
      for id in metaserverIDs {
        group.addTask { try? await self.metaserverStatus(id, timeoutMs: timeoutMs) }
      }
      var statuses: [LabMetaserverStatus] = []
      for await status in group {
        if let status { statuses.append(status) }
      }
      return statuses.sorted { $0.id < $1.id }
    }
  }

  /// Waits until exactly one metaserver among `ids` (default all, minus `excluding`) says it
  /// leads and returns it.
  public func waitForMetadataLeader(
    among ids: [Int]? = nil, excluding: Set<Int> = [], timeoutMs: Int = 15_000
  ) async throws -> LabMetaserverStatus {
    let candidates = Set((ids ?? metaserverIDs).filter { !excluding.contains($0) })
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var seen: [LabMetaserverStatus] = []
    while true {
      seen = await metaserverStatuses().filter { candidates.contains($0.id) }
      let leaders = seen.filter(\.isLeader)
      if leaders.count == 1 { return leaders[0] }
      guard ContinuousClock.now < deadline else {
        throw HarnessError(
          "no single metadata leader among \(candidates.sorted()) within \(timeoutMs) ms; "
            + "seen: \(seen)")
      }
      try await Task.sleep(for: .milliseconds(50))
    }
  }

  // MARK: - Verification workload

  /// Starts `sbctl drill workload` in the client namespace against this cluster's brokers.
  public func startWorkload(_ options: LabWorkloadOptions) throws -> LabWorkload {
    try LabWorkload.start(cluster: self, options: options)
  }
}

/// One metaserver's Raft view.
public struct LabMetaserverStatus: Sendable, Equatable, CustomStringConvertible {
  public let id: Int
  public let isLeader: Bool
  public let term: Int64
  public let commitIndex: Int64
  public let appliedIndex: Int64

  public var description: String {
    "ms\(id){\(isLeader ? "leader" : "follower") term \(term) commit \(commitIndex) "
      + "applied \(appliedIndex)}"
  }
}

/// `sbctl topic describe --output json` (the fields the chaos suite reads).
public struct LabTopicDescription: Decodable, Sendable {
  public let name: String
  public let partitions: [LabPartitionState]
}

public struct LabPartitionState: Decodable, Sendable, CustomStringConvertible {
  public let partition: Int32
  /// -1 when the partition has no leader.
  public let leader: Int32
  public let leaderEpoch: Int32
  public let replicas: [Int32]
  public let isr: [Int32]
  public let highWatermark: Int64?
  public let replicaStates: [LabReplicaState]?

  public var description: String {
    "p\(partition){leader \(leader) epoch \(leaderEpoch) isr \(isr) hw "
      + "\(highWatermark.map(String.init) ?? "-") leo "
      + (replicaStates ?? []).map { "\($0.broker)=\($0.logEndOffset.map(String.init) ?? "-")" }
      .joined(separator: ",") + "}"
  }

  /// The log end offset a replica reports about itself, nil when it did not answer.
  public func logEndOffset(of broker: Int32) -> Int64? {
    replicaStates?.first { $0.broker == broker }?.logEndOffset
  }
}

public struct LabReplicaState: Decodable, Sendable {
  public let broker: Int32
  public let role: String?
  public let inIsr: Bool?
  public let logEndOffset: Int64?
  public let highWatermark: Int64?
  public let error: String?
}
