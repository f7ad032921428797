import StreamBusStorage
import StreamBusTransport

/// Settings of a broker process; `databroker` fills it from flags and a config file.
public struct BrokerConfiguration: Sendable {
  /// Holds one folder per partition and the topic metadata files (see `TopicStore`).
  public var dataDirectory: String
  /// Port 0 lets the OS pick; the bound address is in `StandaloneBroker.localAddress`.
  public var listen: HostPort
  /// Host announced in Metadata; nil = the listen host, or 127.0.0.1 when that is a
  /// wildcard address.
  public var advertisedHost: String?
  public var nodeId: Int32 = 0
  public var clusterId: String = "streambus-standalone"
  /// Largest record batch data for one partition in one produce request.
  public var messageBytesMax: Int = 1 << 20
  public var partitionsPerTopicMax: Int32 = 1024
  /// Partition count for CreateTopics with numPartitions -1.
  public var defaultPartitionCount: Int32 = 1
  public var flushPolicy: FlushPolicy = .groupCommit
  /// Threads that run fdatasync (and other blocking file work) off the cooperative pool;
  /// each partition has at most one flush running, so this bounds parallel flushes.
  public var flushThreadCount: Int = 8
  public var retentionCheckIntervalMs: Int64 = 300_000
  /// How often replicas expire acks=all waits, run interval flushes and retry failed ones.
  public var maintenanceIntervalMs: Int64 = 100
  /// A full data disk counts as usable again once this many bytes can be written and
  /// fsynced (the probe of `DiskSpaceMonitor`), checked every `diskFullProbeIntervalMs`.
  public var diskFullProbeBytes: Int = DiskSpaceMonitor.probeBytesDefault
  public var diskFullProbeIntervalMs: Int64 = 1_000
  /// Upper bound on a fetch's maxWaitMs.
  public var fetchWaitMsMax: Int64 = 30_000
  /// Fetch responses send record batches straight from the segment files (`sendfile(2)`)
  /// instead of reading them into memory first; false forces the copying path.
  public var fetchSendsFileRanges = true
  public var topicDefaults = TopicDefaults()
  /// Requests per connection between their arrival and their response. Requests are always
  /// processed in arrival order (appends land in send order); this bounds how many may wait
  /// at once for their completion (acks=all commits, fetch long-polls) or for an earlier
  /// response, and so how much one connection can pipeline.
  public var inflightRequestsMax: Int = 64
  public var frameBytesMax: Int = 64 << 20
  public var shutdownGracePeriodMs: Int64 = 10_000
  /// Receives "host:port" (atomically: temp file + rename) once the broker serves.
  public var readyFile: String?
  /// The file layer for partition logs and topic files (tests inject faults here).
  public var fileSystem: any LogFileSystem = PosixFileSystem()
  /// Cluster mode (`--metaservers`); nil = standalone.
  public var cluster: ClusterSettings?

  public init(dataDirectory: String, listen: HostPort) {
    self.dataDirectory = dataDirectory
    self.listen = listen
  }

  /// The host clients are told to connect to.
  public var effectiveAdvertisedHost: String {
    if let advertisedHost { return advertisedHost }
    switch listen.host {
    case "0.0.0.0", "::", "": return "127.0.0.1"
    default: return listen.host
    }
  }

  /// The `--log-level` value as given (parsed by the executable's logging bootstrap).
  public var logLevelName: String = "info"

  /// Keys of the `databroker` config file; each is also a flag (`--` + key).
  public static let configKeys = [
    "standalone", "data-dir", "listen", "advertised-host", "node-id", "ready-file", "log-level",
    "flush-interval-ms", "flush-threads", "retention-check-interval-ms", "message-max-bytes",
    "partitions-per-topic-max", "default-partitions", "retention-ms", "retention-bytes",
    "segment-bytes", "segment-ms", "inflight-requests-max", "frame-bytes-max",
    "shutdown-grace-period-ms", "fetch-wait-max-ms", "metaservers", "broker-id", "rack",
    "replica-lag-time-max-ms", "replica-fetch-max-wait-ms", "replica-fetch-max-bytes",
    "broker-heartbeat-interval-ms", "broker-session-timeout-ms", "controlled-shutdown-timeout-ms",
  ]

  /// Keys that only mean something in cluster mode.
  static let clusterOnlyKeys = [
    "broker-id", "rack", "replica-lag-time-max-ms", "replica-fetch-max-wait-ms",
    "replica-fetch-max-bytes", "broker-heartbeat-interval-ms", "broker-session-timeout-ms",
    "controlled-shutdown-timeout-ms",
  ]

  /// Builds the configuration from `databroker` flags and config-file values (keys in
  /// `configKeys`); errors name the key and where its value came from.
  public init(values: ConfigValues) throws {
    let standalone = try values.bool("standalone", default: false)
    if standalone && values.string("metaservers") != nil {
      throw TransportError(
        .invalidConfiguration,
        "--standalone and --metaservers are mutually exclusive: pass one of them")
    }
    let cluster = try ClusterSettings(values: values)
    switch (standalone, cluster) {
    case (true, .some):
      throw TransportError(
        .invalidConfiguration,
        "--standalone and --metaservers are mutually exclusive: pass one of them")
    case (false, nil):
      throw TransportError(
        .invalidConfiguration,
        "pass --metaservers HOST:PORT,... (cluster mode) or --standalone (single broker)")
    case (true, nil):
      for key in Self.clusterOnlyKeys where values.string(key) != nil {
        throw TransportError(
          .invalidConfiguration,
          "--\(key) is a cluster-mode setting; it needs --metaservers, not --standalone")
      }
    case (false, .some):
      if values.string("node-id") != nil {
        throw TransportError(
          .invalidConfiguration, "--node-id is for --standalone; in cluster mode use --broker-id")
      }
    }
    guard let dataDirectory = values.string("data-dir") else {
      throw TransportError(.invalidConfiguration, "--data-dir is required")
    }
    var configuration = BrokerConfiguration(
      dataDirectory: dataDirectory,
      listen: try values.hostPort("listen", default: HostPort(host: "0.0.0.0", port: 9092)))
    configuration.logLevelName = values.string("log-level", default: "info")
    configuration.advertisedHost = values.string("advertised-host")
    configuration.nodeId = Int32(
      try values.int("node-id", default: 0, range: 0...Int(Int32.max)))
    configuration.readyFile = values.string("ready-file")
    if values.string("flush-interval-ms") != nil {
      configuration.flushPolicy = .interval(
        ms: Int64(try values.int("flush-interval-ms", default: 1000, range: 1...86_400_000)))
      configuration.maintenanceIntervalMs = 10
    }
    configuration.flushThreadCount = try values.int("flush-threads", default: 8, range: 1...256)
    configuration.retentionCheckIntervalMs = Int64(
      try values.int("retention-check-interval-ms", default: 300_000, range: 10...86_400_000))
    configuration.messageBytesMax = try values.int(
      "message-max-bytes", default: 1 << 20, range: 61...Int(Int32.max))
    configuration.partitionsPerTopicMax = Int32(
      try values.int("partitions-per-topic-max", default: 1024, range: 1...100_000))
    configuration.defaultPartitionCount = Int32(
      try values.int(
        "default-partitions", default: 1,
        range: 1...Int(configuration.partitionsPerTopicMax)))
    let retentionMs = try values.int("retention-ms", default: 604_800_000, range: -1...Int.max)
    configuration.topicDefaults.retentionMs = retentionMs == -1 ? nil : Int64(retentionMs)
    let retentionBytes = try values.int("retention-bytes", default: -1, range: -1...Int.max)
    configuration.topicDefaults.retentionBytes =
      retentionBytes == -1 ? nil : Int64(retentionBytes)
    configuration.topicDefaults.segmentBytes = try values.int(
      "segment-bytes", default: 1 << 30, range: 61...LogConfig.segmentBytesMax)
    configuration.topicDefaults.segmentMs = Int64(
      try values.int("segment-ms", default: 604_800_000, range: 1...Int.max))
    configuration.inflightRequestsMax = try values.int(
      "inflight-requests-max", default: 64, range: 1...4096)
    configuration.frameBytesMax = try values.int(
      "frame-bytes-max", default: 64 << 20, range: 1024...Int(Int32.max))
    configuration.shutdownGracePeriodMs = Int64(
      try values.int("shutdown-grace-period-ms", default: 10_000, range: 0...3_600_000))
    configuration.fetchWaitMsMax = Int64(
      try values.int("fetch-wait-max-ms", default: 30_000, range: 0...3_600_000))
    if let cluster {
      configuration.cluster = cluster
      configuration.nodeId = cluster.brokerID
      configuration.clusterId = "streambus"
    }
    self = configuration
  }
}

/// The cluster-mode part of a broker's settings (`--metaservers` and the replication knobs).
public struct ClusterSettings: Sendable, Equatable {
  /// The metadata quorum's API addresses (any subset that reaches the leader works).
  public var metaservers: [HostPort]
  public var brokerID: Int32
  public var rack: String?
  /// A follower that has not caught up with the leader's log end for this long leaves the ISR.
  public var replicaLagTimeMaxMs: Int64 = 2_000
  /// Long-poll bound of a follower's fetch.
  public var replicaFetchMaxWaitMs: Int64 = 500
  /// Record bytes one follower fetch may carry (all its partitions together).
  public var replicaFetchMaxBytes: Int = 8 << 20
  public var brokerHeartbeatIntervalMs: Int64 = 250
  /// Without a successful heartbeat for this long the broker stops acting as leader (the
  /// controller fences it after its own session timeout, which this mirrors).
  public var brokerSessionTimeoutMs: Int64 = 1_500
  /// How long SIGTERM waits for the controller to move leadership away before exiting anyway.
  public var controlledShutdownTimeoutMs: Int64 = 30_000

  public init(metaservers: [HostPort], brokerID: Int32) {
    self.metaservers = metaservers
    self.brokerID = brokerID
  }

  /// nil when `metaservers` is not set (standalone); errors name the key.
  init?(values: ConfigValues) throws {
    guard values.string("metaservers") != nil else { return nil }
    let metaservers = try values.hostPorts("metaservers", default: [])
    guard !metaservers.isEmpty else {
      throw TransportError(
        .invalidConfiguration, "--metaservers needs at least one HOST:PORT (comma-separated)")
    }
    guard values.string("broker-id") != nil else {
      throw TransportError(
        .invalidConfiguration, "--broker-id is required in cluster mode (--metaservers)")
    }
    self.init(
      metaservers: metaservers,
      brokerID: Int32(try values.int("broker-id", default: 0, range: 0...Int(Int32.max))))
    if let rack = values.string("rack") {
      guard !rack.isEmpty else {
        throw TransportError(.invalidConfiguration, "bad value for --rack: empty")
      }
      self.rack = rack
    }
    replicaLagTimeMaxMs = Int64(
      try values.int("replica-lag-time-max-ms", default: 2_000, range: 10...3_600_000))
    replicaFetchMaxWaitMs = Int64(
      try values.int("replica-fetch-max-wait-ms", default: 500, range: 0...60_000))
    replicaFetchMaxBytes = try values.int(
      "replica-fetch-max-bytes", default: 8 << 20, range: 1024...(1 << 30))
    brokerHeartbeatIntervalMs = Int64(
      try values.int("broker-heartbeat-interval-ms", default: 250, range: 10...60_000))
    brokerSessionTimeoutMs = Int64(
      try values.int("broker-session-timeout-ms", default: 1_500, range: 50...3_600_000))
    guard brokerSessionTimeoutMs > brokerHeartbeatIntervalMs else {
      throw TransportError(
        .invalidConfiguration,
        "--broker-session-timeout-ms (\(brokerSessionTimeoutMs)) must be larger than "
          + "--broker-heartbeat-interval-ms (\(brokerHeartbeatIntervalMs))")
    }
    controlledShutdownTimeoutMs = Int64(
      try values.int("controlled-shutdown-timeout-ms", default: 30_000, range: 0...3_600_000))
  }
}
