import Foundation
import Logging
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusTestSupport
import StreamBusTransport

#if canImport(Glibc)
  import Glibc
#endif

/// A metaserver quorum of real processes for one test: free ports, data directories under
/// the harness root, every process killed when the harness shuts down.
final class MetaCluster: @unchecked Sendable {
  struct Node {
    let id: Int
    let raftPort: Int
    let apiPort: Int
    let httpPort: Int
    let dataDirectory: URL
    var process: ManagedProcess?

    var raftAddress: String { "127.0.0.1:\(raftPort)" }
    var apiAddress: String { "127.0.0.1:\(apiPort)" }
    var httpAddress: String { "127.0.0.1:\(httpPort)" }
  }

  let harness: ProcessHarness
  /// Flags every node gets (timing, snapshot threshold, test faults).
  let extraArguments: [String]
  private let lock = NSLock()
  private var nodesByID: [Int: Node] = [:]
  let founders: [Int]

  /// Fast Raft timing for tests: failover well under a second, and fake brokers that are
  /// not heartbeating stay unfenced for the whole test.
  static let defaultArguments = [
    "--tick-interval-ms", "20", "--raft-heartbeat-interval-ms", "40",
    "--raft-election-timeout-ms", "300", "--broker-session-timeout-ms", "600000",
    "--request-timeout-ms", "4000", "--enable-test-faults", "--log-level", "info",
  ]

  private init(harness: ProcessHarness, founders: [Int], extraArguments: [String]) {
    self.harness = harness
    self.founders = founders
    self.extraArguments = extraArguments
  }

  /// Starts `count` founding members and waits until every one is ready.
  static func start(
    _ harness: ProcessHarness, count: Int, extraArguments: [String] = [],
    readyTimeoutMs: Int = 30_000
  ) async throws -> MetaCluster {
    let cluster = MetaCluster(
      harness: harness, founders: Array(1...count),
      extraArguments: defaultArguments + extraArguments)
    for id in 1...count {
      try cluster.allocate(id: id)
    }
    for id in 1...count {
      try cluster.launch(id: id, join: false)
    }
    try await cluster.waitUntilReady(Array(1...count), timeoutMs: readyTimeoutMs)
    return cluster
  }

  private func allocate(id: Int) throws {
    let ports = try FreePorts.take(3)
    let directory = try harness.makeDirectory("metaserver-\(id)")
    lock.withLock {
      nodesByID[id] = Node(
        id: id, raftPort: ports[0], apiPort: ports[1], httpPort: ports[2],
        dataDirectory: directory, process: nil)
    }
  }

  func node(_ id: Int) -> Node {
    lock.withLock {
      guard let node = nodesByID[id] else { preconditionFailure("no node \(id)") }
      return node
    }
  }

  var allIDs: [Int] { lock.withLock { nodesByID.keys.sorted() } }

  var initialClusterFlag: String {
    founders.map { "\($0)=\(node($0).raftAddress)" }.joined(separator: ",")
  }

  private func launch(id: Int, join: Bool) throws {
    let node = node(id)
    var arguments = [
      "--node-id", "\(id)", "--data-dir", node.dataDirectory.path,
      "--raft-listen", node.raftAddress, "--api-listen", node.apiAddress,
      "--http-listen", node.httpAddress,
    ]
    if join {
      arguments += ["--join", founders.map { self.node($0).apiAddress }.joined(separator: ",")]
    } else {
      arguments += ["--initial-cluster", initialClusterFlag]
    }
    let process = try harness.start(
      executableNamed: "metaserver", arguments: arguments + extraArguments,
      label: "metaserver-\(id)")
    lock.withLock { nodesByID[id]?.process = process }
  }

  /// (Re)starts a node that is not running, with its data directory as it is.
  func restart(_ id: Int) throws {
    try launch(id: id, join: !founders.contains(id))
  }

  /// Adds a new process that joins (it still has to be added with AddLearner).
  func startJoiner(id: Int) throws {
    try allocate(id: id)
    try launch(id: id, join: true)
  }

  func process(_ id: Int) -> ManagedProcess? { node(id).process }

  func kill(_ id: Int) async throws {
    guard let process = process(id) else { return }
    process.signal(SIGKILL)
    try await process.waitForExit(timeoutMs: 10_000)
  }

  /// SIGTERM, then waits for the exit status.
  @discardableResult
  func terminate(_ id: Int, timeoutMs: Int = 20_000) async throws -> ProcessExit? {
    guard let process = process(id) else { return nil }
    process.signal(SIGTERM)
    return try await process.waitForExit(timeoutMs: timeoutMs)
  }

  func signal(_ id: Int, _ signal: Int32) {
    process(id)?.signal(signal)
  }

  // MARK: - Observing

  /// Polls `/readyz` of each node until it answers 200.
  func waitUntilReady(_ ids: [Int], timeoutMs: Int = 30_000) async throws {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    for id in ids {
      while true {
        if let exit = process(id)?.exit {
          throw HarnessError(
            "metaserver-\(id) exited (\(exit)) before it was ready; stderr:\n"
              + (process(id)?.stderrTail() ?? ""))
        }
        if let response = HTTPProbe.get(node(id).httpAddress, "/readyz"), response.status == 200 {
          break
        }
        guard ContinuousClock.now < deadline else {
          let last = HTTPProbe.get(node(id).httpAddress, "/readyz")
          throw HarnessError(
            "metaserver-\(id) not ready within \(timeoutMs) ms (last /readyz: "
              + "\(last.map { "\($0.status) \($0.body)" } ?? "no answer"))")
        }
        try await Task.sleep(for: .milliseconds(20))
      }
    }
  }

  /// `streambus_metaserver_NAME` from a node's `/metrics`, nil when it does not answer.
  func metric(_ id: Int, _ name: String) -> Double? {
    guard let response = HTTPProbe.get(node(id).httpAddress, "/metrics"),
      response.status == 200
    else { return nil }
    for line in response.body.split(separator: "\n") where !line.hasPrefix("#") {
      let parts = line.split(separator: " ")
      if parts.count == 2 && parts[0] == "streambus_metaserver_\(name)" {
        return Double(parts[1])
      }
    }
    return nil
  }

  /// The nodes among `ids` that report being leader, with their terms.
  func leaders(among ids: [Int]) -> [(id: Int, term: Double)] {
    ids.compactMap { id in
      guard metric(id, "is_leader") == 1, let term = metric(id, "raft_term") else { return nil }
      return (id, term)
    }
  }

  /// Waits until exactly one of `ids` (other than `excluding`) leads and returns it.
  func waitForLeader(among ids: [Int]? = nil, excluding: Set<Int> = [], timeoutMs: Int = 10_000)
    async throws -> Int
  {
    let candidates = (ids ?? allIDs).filter { !excluding.contains($0) }
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    while ContinuousClock.now < deadline {
      let found = leaders(among: candidates)
      if found.count == 1, metric(found[0].id, "raft_applied_index") != nil {
        return found[0].id
      }
      try await Task.sleep(for: .milliseconds(20))
    }
    throw HarnessError("no single leader among \(candidates) within \(timeoutMs) ms")
  }

  func client(_ ids: [Int]? = nil, requestTimeoutMs: Int64 = 15_000) -> MetaClient {
    let bootstrap = (ids ?? allIDs).compactMap { try? HostPort(parsing: node($0).apiAddress) }
    var configuration = MetaClientConfiguration(
      bootstrap: bootstrap, requestTimeoutMs: requestTimeoutMs)
    configuration.attemptTimeoutMs = 2_000
    configuration.clientID = "integration-test"
    return MetaClient(configuration: configuration, logger: Logger(label: "test.meta-client"))
  }

  /// POST /admin/faults on a node (needs --enable-test-faults).
  func setFaults(_ id: Int, query: String) throws {
    guard let response = HTTPProbe.request("POST", node(id).httpAddress, "/admin/faults?\(query)"),
      response.status == 200
    else { throw HarnessError("setting faults on metaserver-\(id) failed") }
  }

  /// Registers `count` fake brokers and unfences them (heartbeat with a current offset), so
  /// topics can be created; the long session timeout keeps them unfenced.
  func registerBrokers(_ client: MetaClient, count: Int) async throws {
    for brokerID in 1...Int32(count) {
      let epoch = try await client.brokerRegister(
        BrokerRegisterRequest(
          brokerID: brokerID, incarnationID: Int64(brokerID) * 7_919,
          endpoints: [MetaEndpoint(name: "client", host: "127.0.0.1", port: 9_000 + brokerID)],
          rack: "rack-\(brokerID % 2)", capacity: MetaBrokerCapacity(diskBytes: 1 << 30))
      ).brokerEpoch
      var fenced = true
      var attempts = 0
      while fenced && attempts < 50 {
        attempts += 1
        let offset = try await client.describeCluster().metadataOffset
        fenced = try await client.brokerHeartbeat(
          BrokerHeartbeatRequest(
            brokerID: brokerID, brokerEpoch: epoch, appliedMetadataOffset: offset,
            wantShutdown: false)
        ).isFenced
      }
      if fenced { throw HarnessError("broker \(brokerID) still fenced after heartbeats") }
    }
  }
}

/// Distinct free TCP ports on 127.0.0.1, picked at random below the kernel's ephemeral
/// range (all bound at once, then released). Ports in the ephemeral range can be taken by
/// outgoing connections, of this test or a parallel one, while a node is down for a
/// restart; it then could not listen on its port again.
///
/// A port is handed out once per test run: a cluster takes its nodes' ports one node at a
/// time and starts them afterwards, so a port released by one `take` but not yet listened
/// on could otherwise be picked again for the next node (a CI run failed that way with
/// "Address already in use").
enum FreePorts {
  private final class HandedOut: @unchecked Sendable {
    private let lock = NSLock()
    private var ports: Set<Int> = []
    func contains(_ port: Int) -> Bool { lock.withLock { ports.contains(port) } }
    func insert(_ new: [Int]) { lock.withLock { ports.formUnion(new) } }
  }
  private static let handedOut = HandedOut()

  static func take(_ count: Int) throws -> [Int] {
    var ephemeralLow = 32_768
    if let text = try? String(
      contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
      let low = text.split(whereSeparator: \.isWhitespace).first.flatMap({ Int($0) })
    {
      ephemeralLow = low
    }
    let candidates = 10_000...max(10_001, ephemeralLow - 1)
    var descriptors: [Int32] = []
    defer { for descriptor in descriptors { close(descriptor) } }
    var ports: [Int] = []
    var attempts = 0
    while ports.count < count {
      attempts += 1
      guard attempts < 10_000 else { throw HarnessError("no free ports in \(candidates)") }
      let port = Int.random(in: candidates)
      if ports.contains(port) || handedOut.contains(port) { continue }
      let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      guard descriptor >= 0 else { throw HarnessError("socket(): errno \(errno)") }
      var address = sockaddr_in()
      address.sin_family = sa_family_t(AF_INET)
      address.sin_port = UInt16(port).bigEndian
      address.sin_addr.s_addr = inet_addr("127.0.0.1")
      let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
      }
      if bound {
        descriptors.append(descriptor)
        ports.append(port)
      } else {
        close(descriptor)
      }
    }
    handedOut.insert(ports)
    return ports
  }
}

/// Probes of a node's /readyz, /metrics and the test-only fault endpoint.
enum HTTPProbe {
  static func get(_ address: String, _ path: String) -> BlockingHTTP.Response? {
    request("GET", address, path)
  }

  static func request(_ method: String, _ address: String, _ path: String)
    -> BlockingHTTP.Response?
  {
    BlockingHTTP.request(method, address: address, path: path, timeoutMs: 2_000)
  }
}
