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
    "shutdown-grace-period-ms", "fetch-wait-max-ms",
  ]

  /// Builds the configuration from `databroker` flags and config-file values (keys in
  /// `configKeys`); errors name the key and where its value came from.
  public init(values: ConfigValues) throws {
    guard try values.bool("standalone", default: false) else {
      throw TransportError(
        .invalidConfiguration,
        "pass --standalone (or \"standalone = true\"): this build runs single-broker only; "
          + "cluster mode (--metaservers) comes with the metaserver")
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
    self = configuration
  }
}
