import StreamBusTransport

/// Settings of one metaserver process; `metaserver` fills it from flags and a config file.
public struct MetaServerConfiguration: Sendable {
  /// This node's Raft id (positive; ids of one quorum are distinct).
  public var nodeID: UInt64
  /// Holds the Raft log and snapshots (SQLite) of this node.
  public var dataDirectory: String
  /// Where Raft peers connect; port 0 lets the OS pick (only useful for a one-node quorum).
  public var raftListen: HostPort
  /// Where brokers, sbctl and the metadata client connect.
  public var apiListen: HostPort
  /// `/healthz`, `/readyz`, `/metrics`.
  public var httpListen: HostPort
  /// Host announced to peers and clients for this node's API (NOT_LEADER hints); nil = the
  /// API listen host, or 127.0.0.1 when that is a wildcard address.
  public var advertisedHost: String?
  /// Bootstrap voters with their Raft addresses; empty when the node joins as a learner.
  public var initialCluster: [UInt64: HostPort]
  /// API addresses of running members; non-empty means "do not bootstrap, wait to be added".
  public var join: [HostPort]
  /// Receives the bound addresses (`raft=`, `api=`, `http=` lines; temp file + rename) once
  /// every listener is up.
  public var readyFile: String?
  /// The `--log-level` value as given (parsed by the executable's logging bootstrap).
  public var logLevelName: String = "info"

  /// Raft timing: one tick every `tickIntervalMs`; heartbeats and elections count ticks.
  public var tickIntervalMs: Int64 = 50
  /// Leader heartbeat period (rounded to whole ticks).
  public var raftHeartbeatIntervalMs: Int64 = 100
  /// Base election timeout (rounded to whole ticks; the core randomizes in [base, 2*base)).
  public var raftElectionTimeoutMs: Int64 = 500
  /// Take a snapshot and compact the log after this many applied entries beyond the last.
  public var snapshotThresholdEntries: Int = 10_000

  /// A broker that has not heartbeated for this long is fenced.
  public var brokerSessionTimeoutMs: Int64 = 1_500
  /// Heartbeat period the brokers are expected to use (documentation and hints only).
  public var brokerHeartbeatIntervalMs: Int64 = 250
  /// How often the leader's controller looks for expired broker sessions.
  public var fenceCheckIntervalMs: Int64 = 100
  /// Longest time an API call waits for its records to commit before REQUEST_TIMED_OUT.
  public var requestTimeoutMs: Int64 = 10_000
  /// Upper bound on a FetchMetadata long-poll's maxWaitMs.
  public var fetchWaitMaxMs: Int64 = 30_000
  /// Committed record batches kept in memory for FetchMetadata; an older offset gets the
  /// snapshot of the current image.
  public var metadataTailBatchesMax: Int = 4_096
  /// Largest request frame in bytes.
  public var frameBytesMax: Int = 16 << 20
  /// How long shutdown waits for in-flight requests.
  public var shutdownGracePeriodMs: Int64 = 5_000
  /// Cluster id announced in DescribeCluster.
  public var clusterID: String = "streambus"
  /// Accept `/admin/faults` on the HTTP listener (integration tests inject message loss).
  public var enableTestFaults: Bool = false

  public init(
    nodeID: UInt64, dataDirectory: String, raftListen: HostPort, apiListen: HostPort,
    httpListen: HostPort, initialCluster: [UInt64: HostPort], join: [HostPort] = []
  ) {
    self.nodeID = nodeID
    self.dataDirectory = dataDirectory
    self.raftListen = raftListen
    self.apiListen = apiListen
    self.httpListen = httpListen
    self.initialCluster = initialCluster
    self.join = join
  }

  /// The host announced for this node's API.
  public var effectiveAdvertisedHost: String {
    if let advertisedHost { return advertisedHost }
    return Self.reachableHost(apiListen.host)
  }

  /// A wildcard bind address is reachable on loopback.
  static func reachableHost(_ host: String) -> String {
    switch host {
    case "0.0.0.0", "": return "127.0.0.1"
    case "::": return "::1"
    default: return host
    }
  }

  /// Keys of the `metaserver` config file; each is also a flag (`--` + key).
  public static let configKeys = [
    "node-id", "data-dir", "raft-listen", "api-listen", "http-listen", "advertised-host",
    "initial-cluster", "join", "ready-file", "log-level", "tick-interval-ms",
    "raft-heartbeat-interval-ms", "raft-election-timeout-ms", "snapshot-threshold-entries",
    "broker-session-timeout-ms", "broker-heartbeat-interval-ms", "fence-check-interval-ms",
    "request-timeout-ms", "fetch-wait-max-ms", "metadata-tail-batches-max", "frame-bytes-max",
    "shutdown-grace-period-ms", "cluster-id", "enable-test-faults",
  ]

  /// Builds the configuration from flags and config-file values (keys in `configKeys`);
  /// errors name the key and where its value came from.
  public init(values: ConfigValues) throws {
    func missing(_ key: String, _ hint: String) -> TransportError {
      TransportError(.invalidConfiguration, "--\(key) is required (\(hint))")
    }
    guard values.string("node-id") != nil else {
      throw missing("node-id", "this node's Raft id, a positive integer")
    }
    let nodeID = try values.int("node-id", default: 0, range: 1...Int(Int32.max))
    guard let dataDirectory = values.string("data-dir") else {
      throw missing("data-dir", "directory for the Raft log and snapshots")
    }
    let defaultHost = HostPort(host: "0.0.0.0", port: 0)
    let raftListen = try values.hostPort("raft-listen", default: defaultHost)
    let apiListen = try values.hostPort("api-listen", default: defaultHost)
    let httpListen = try values.hostPort("http-listen", default: defaultHost)
    for key in ["raft-listen", "api-listen", "http-listen"] where values.string(key) == nil {
      throw missing(key, "HOST:PORT to listen on; port 0 picks a free port")
    }
    let initialCluster = try Self.parseInitialCluster(values)
    let join = try values.hostPorts("join", default: [])
    if initialCluster.isEmpty && join.isEmpty {
      throw TransportError(
        .invalidConfiguration,
        "pass --initial-cluster 1=host:raftport,2=... to bootstrap a quorum, or --join "
          + "host:apiport,... to start as a learner that an operator adds")
    }
    if !initialCluster.isEmpty && !join.isEmpty {
      throw TransportError(
        .invalidConfiguration,
        "--initial-cluster and --join exclude each other: a node either bootstraps or joins")
    }
    if !initialCluster.isEmpty && initialCluster[UInt64(nodeID)] == nil {
      throw TransportError(
        .invalidConfiguration,
        "--initial-cluster does not list this node (--node-id \(nodeID)); listed: "
          + initialCluster.keys.sorted().map(String.init).joined(separator: ", "))
    }
    self.init(
      nodeID: UInt64(nodeID), dataDirectory: dataDirectory, raftListen: raftListen,
      apiListen: apiListen, httpListen: httpListen, initialCluster: initialCluster, join: join)
    advertisedHost = values.string("advertised-host")
    readyFile = values.string("ready-file")
    logLevelName = values.string("log-level", default: "info")
    tickIntervalMs = Int64(try values.int("tick-interval-ms", default: 50, range: 1...10_000))
    raftHeartbeatIntervalMs = Int64(
      try values.int("raft-heartbeat-interval-ms", default: 100, range: 1...60_000))
    raftElectionTimeoutMs = Int64(
      try values.int("raft-election-timeout-ms", default: 500, range: 1...600_000))
    if raftElectionTimeoutMs < 2 * raftHeartbeatIntervalMs {
      throw TransportError(
        .invalidConfiguration,
        "raft-election-timeout-ms (\(raftElectionTimeoutMs)) must be at least twice "
          + "raft-heartbeat-interval-ms (\(raftHeartbeatIntervalMs))")
    }
    if raftHeartbeatIntervalMs < tickIntervalMs {
      throw TransportError(
        .invalidConfiguration,
        "raft-heartbeat-interval-ms (\(raftHeartbeatIntervalMs)) must be at least "
          + "tick-interval-ms (\(tickIntervalMs))")
    }
    snapshotThresholdEntries = try values.int(
      "snapshot-threshold-entries", default: 10_000, range: 1...100_000_000)
    brokerSessionTimeoutMs = Int64(
      try values.int("broker-session-timeout-ms", default: 1_500, range: 10...3_600_000))
    brokerHeartbeatIntervalMs = Int64(
      try values.int("broker-heartbeat-interval-ms", default: 250, range: 1...3_600_000))
    fenceCheckIntervalMs = Int64(
      try values.int("fence-check-interval-ms", default: 100, range: 1...60_000))
    requestTimeoutMs = Int64(
      try values.int("request-timeout-ms", default: 10_000, range: 1...3_600_000))
    fetchWaitMaxMs = Int64(
      try values.int("fetch-wait-max-ms", default: 30_000, range: 0...3_600_000))
    metadataTailBatchesMax = try values.int(
      "metadata-tail-batches-max", default: 4_096, range: 1...10_000_000)
    frameBytesMax = try values.int(
      "frame-bytes-max", default: 16 << 20, range: 1024...(1 << 30))
    shutdownGracePeriodMs = Int64(
      try values.int("shutdown-grace-period-ms", default: 5_000, range: 0...600_000))
    clusterID = values.string("cluster-id", default: "streambus")
    enableTestFaults = try values.bool("enable-test-faults", default: false)
  }

  /// Parses `1=host:port,2=host:port`.
  static func parseInitialCluster(_ values: ConfigValues) throws -> [UInt64: HostPort] {
    guard let text = values.string("initial-cluster") else { return [:] }
    let origin = values.origin(of: "initial-cluster").map { " (\($0))" } ?? ""
    func invalid(_ reason: String) -> TransportError {
      TransportError(.invalidConfiguration, "bad value for initial-cluster\(origin): \(reason)")
    }
    var members: [UInt64: HostPort] = [:]
    var addresses: Set<HostPort> = []
    for item in text.split(separator: ",", omittingEmptySubsequences: false) {
      let member = item.trimmingCharacters(in: " \t")
      guard let equals = member.firstIndex(of: "=") else {
        throw invalid("expected ID=HOST:PORT, found \"\(member)\"")
      }
      let idText = member[..<equals]
      guard let id = UInt64(idText), id >= 1, id <= UInt64(Int32.max) else {
        throw invalid("node id \"\(idText)\" is not a positive integer")
      }
      let address: HostPort
      do {
        address = try HostPort(parsing: String(member[member.index(after: equals)...]))
      } catch let error as TransportError {
        throw invalid(error.message)
      }
      guard address.port != 0 else {
        throw invalid("node \(id) has port 0; peers need a fixed Raft port")
      }
      guard members[id] == nil else {
        throw invalid("node id \(id) is listed twice")
      }
      guard addresses.insert(address).inserted else {
        throw invalid("address \(address) is listed twice")
      }
      members[id] = address
    }
    return members
  }
}

extension StringProtocol {
  fileprivate func trimmingCharacters(in set: String) -> Substring {
    var text = self[...]
    while let first = text.first, set.contains(first) { text = text.dropFirst() }
    while let last = text.last, set.contains(last) { text = text.dropLast() }
    return Substring(text)
  }
}
