import Foundation
import Logging
import NIOConcurrencyHelpers
import StreamBusRaft
import StreamBusRaftHost
import StreamBusTransport

/// A fresh directory per test, removed by `remove()`.
final class TemporaryDirectory: Sendable {
  let url: URL

  init() throws {
    url = FileManager.default.temporaryDirectory
      .appendingPathComponent("streambus-raft-host-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  }

  func path(_ name: String) -> String { url.appendingPathComponent(name).path }

  func remove() { try? FileManager.default.removeItem(at: url) }
}

/// The state machine of the tests: a string map fed with "key=value" entries.
final class KeyValueStateMachine: RaftStateMachine {
  private struct State {
    var values: [String: String] = [:]
    var lastApplied: LogIndex = 0
    var restoredFrom: [LogIndex] = []
  }

  private let state = NIOLockedValueBox(State())

  static func command(_ key: String, _ value: String) -> [UInt8] { Array("\(key)=\(value)".utf8) }

  func apply(entries: [CommittedEntry]) throws {
    try state.withLockedValue { state in
      for entry in entries {
        // Entries arrive in log order, each once.
        guard entry.index > state.lastApplied else {
          throw TestFailure("entry \(entry.index) applied after \(state.lastApplied)")
        }
        let text = String(decoding: entry.data, as: UTF8.self)
        guard let equals = text.firstIndex(of: "=") else { throw TestFailure("bad entry \(text)") }
        state.values[String(text[..<equals])] = String(text[text.index(after: equals)...])
        state.lastApplied = entry.index
      }
    }
  }

  func snapshot() throws -> [UInt8] {
    state.withLockedValue { state in
      Array(
        state.values.keys.sorted().map { "\($0)=\(state.values[$0] ?? "")" }.joined(separator: "\n")
          .utf8)
    }
  }

  func restore(from data: [UInt8], index: LogIndex) throws {
    var values: [String: String] = [:]
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
      guard let equals = line.firstIndex(of: "=") else { throw TestFailure("bad snapshot line") }
      values[String(line[..<equals])] = String(line[line.index(after: equals)...])
    }
    state.withLockedValue { state in
      state.values = values
      state.lastApplied = index
      state.restoredFrom.append(index)
    }
  }

  var values: [String: String] { state.withLockedValue { $0.values } }
  var restoredFrom: [LogIndex] { state.withLockedValue { $0.restoredFrom } }
}

struct TestFailure: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// Waits until `condition` holds, polling; throws with `what` after `timeoutMs`.
func eventually(
  _ what: String, timeoutMs: Int = 10_000, _ condition: () async throws -> Bool
) async throws {
  let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
  while ContinuousClock.now < deadline {
    if try await condition() { return }
    try await Task.sleep(for: .milliseconds(10))
  }
  throw TestFailure("timed out after \(timeoutMs) ms waiting for \(what)")
}

private struct IgnoringHandler: FrameRequestHandler {
  func handle(frame: [UInt8], connection: ConnectionInfo) async -> FrameReply { .noResponse }
}

/// Ports the OS reports free right now (bound on port 0, then released), for members that
/// must know each other's addresses before any of them starts.
func freePorts(_ count: Int) async throws -> [Int] {
  var servers: [FrameServer] = []
  for _ in 0..<count {
    servers.append(
      try await FrameServer.bind(
        configuration: FrameServerConfiguration(host: "127.0.0.1", port: 0),
        handler: IgnoringHandler(), logger: testLogger("port-probe")))
  }
  let ports = servers.map(\.localAddress.port)
  for server in servers { await server.shutdownGracefully() }
  return ports
}

func testLogger(_ label: String) -> Logger {
  var logger = Logger(label: label)
  logger.logLevel =
    ProcessInfo.processInfo.environment["RAFT_HOST_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) }
    ?? .critical
  return logger
}

/// Several hosts on loopback, each with its own database in one temporary directory.
final class TestCluster: @unchecked Sendable {
  let directory: TemporaryDirectory
  let clusterID = "test-cluster"
  private(set) var addresses: [NodeID: PeerAddresses] = [:]
  private(set) var hosts: [NodeID: RaftHost] = [:]
  private(set) var machines: [NodeID: KeyValueStateMachine] = [:]
  let tune: @Sendable (inout RaftHostConfiguration) -> Void

  init(tune: @escaping @Sendable (inout RaftHostConfiguration) -> Void = { _ in }) throws {
    directory = try TemporaryDirectory()
    self.tune = tune
  }

  /// Starts voters `1...count` as a new cluster.
  static func start(
    voters count: Int, tune: @escaping @Sendable (inout RaftHostConfiguration) -> Void = { _ in }
  ) async throws -> TestCluster {
    let cluster = try TestCluster(tune: tune)
    let ports = try await freePorts(count)
    for (offset, port) in ports.enumerated() {
      let id = NodeID(offset + 1)
      cluster.addresses[id] = PeerAddresses(
        raftAddress: HostPort(host: "127.0.0.1", port: port),
        apiAddress: HostPort(host: "127.0.0.1", port: 20_000 + offset + 1))
    }
    for id in cluster.addresses.keys.sorted() { try await cluster.startNode(id) }
    return cluster
  }

  func configuration(_ id: NodeID, join: Bool = false) -> RaftHostConfiguration {
    let own = addresses[id]
    var configuration = RaftHostConfiguration(
      nodeID: id, clusterID: clusterID, databasePath: directory.path("node-\(id).sqlite"),
      raftListen: own?.raftAddress ?? HostPort(host: "127.0.0.1", port: 0))
    configuration.apiAddress = own?.apiAddress
    configuration.join = join
    if !join {
      configuration.initialCluster = addresses.filter { $0.key <= NodeID(initialVoterCount) }
    }
    configuration.proposalTimeoutMs = 3_000
    configuration.readTimeoutMs = 3_000
    tune(&configuration)
    return configuration
  }

  private var initialVoterCount: Int { addresses.keys.filter { !joined.contains($0) }.count }
  private var joined: Set<NodeID> = []

  /// Starts (or restarts, from its database) node `id`.
  @discardableResult
  func startNode(_ id: NodeID) async throws -> RaftHost {
    let machine = KeyValueStateMachine()
    let host = try await RaftHost.start(
      configuration: configuration(id, join: joined.contains(id)), stateMachine: machine,
      logger: testLogger("raft-\(id)"))
    hosts[id] = host
    machines[id] = machine
    return host
  }

  /// Starts a new node with `join`, on a port of its own choosing.
  func startJoiningNode(_ id: NodeID) async throws -> RaftHost {
    joined.insert(id)
    let port = try await freePorts(1)[0]
    addresses[id] = PeerAddresses(
      raftAddress: HostPort(host: "127.0.0.1", port: port),
      apiAddress: HostPort(host: "127.0.0.1", port: 20_000 + Int(id)))
    return try await startNode(id)
  }

  func stopNode(_ id: NodeID, graceful: Bool = true) async {
    await hosts.removeValue(forKey: id)?.shutdown(graceful: graceful)
  }

  /// The one leader every running node agrees on.
  func awaitLeader(timeoutMs: Int = 10_000, excluding: Set<NodeID> = []) async throws -> NodeID {
    var found: NodeID?
    try await eventually("a leader all running nodes agree on", timeoutMs: timeoutMs) {
      let statuses = hosts.values.map { $0.status() }
      let leaders = statuses.filter(\.isLeader)
      guard leaders.count == 1, let leader = leaders.first, !excluding.contains(leader.nodeID),
        leader.isLeaderReady,
        statuses.allSatisfy({ $0.leaderID == leader.nodeID && $0.term == leader.term })
      else { return false }
      found = leader.nodeID
      return true
    }
    guard let found else { throw TestFailure("no leader") }
    return found
  }

  func host(_ id: NodeID) throws -> RaftHost {
    guard let host = hosts[id] else { throw TestFailure("node \(id) is not running") }
    return host
  }

  func machine(_ id: NodeID) throws -> KeyValueStateMachine {
    guard let machine = machines[id] else { throw TestFailure("node \(id) never started") }
    return machine
  }

  /// Writes `key=value` at the current leader, following leader changes and retrying.
  @discardableResult
  func write(_ key: String, _ value: String, timeoutMs: Int = 10_000) async throws -> LogIndex {
    var index: LogIndex?
    try await eventually("write of \(key)", timeoutMs: timeoutMs) {
      guard let leader = hosts.values.first(where: { $0.status().isLeader }) else { return false }
      do {
        index = try await leader.propose(KeyValueStateMachine.command(key, value))
        return true
      } catch let error as RaftHostError
        where [.notLeader, .proposalDropped, .timedOut, .proposalOverwritten].contains(error.code)
      {
        return false
      }
    }
    guard let index else { throw TestFailure("write \(key) lost") }
    return index
  }

  /// Waits until every running node (or the given ones) holds `expected`.
  func awaitValues(
    _ expected: [String: String], on nodes: [NodeID]? = nil, timeoutMs: Int = 10_000
  ) async throws {
    let targets = nodes ?? hosts.keys.sorted()
    try await eventually("nodes \(targets) to apply \(expected.count) keys", timeoutMs: timeoutMs) {
      try targets.allSatisfy { id in
        let values = try machine(id).values
        return expected.allSatisfy { values[$0.key] == $0.value }
      }
    }
  }

  func shutdown() async {
    for host in hosts.values { await host.shutdown() }
    hosts = [:]
    directory.remove()
  }
}
