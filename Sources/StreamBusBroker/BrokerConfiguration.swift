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
  public var retentionCheckIntervalMs: Int64 = 300_000
  /// How often replicas expire acks=all waits, run interval flushes and retry failed ones.
  public var maintenanceIntervalMs: Int64 = 100
  /// Upper bound on a fetch's maxWaitMs.
  public var fetchWaitMsMax: Int64 = 30_000
  public var topicDefaults = TopicDefaults()
  /// Requests processed at once per connection. 1 (the default) processes a connection's
  /// requests one after another in arrival order, as Kafka does, so pipelined produce
  /// requests append in the order they were sent; larger values let requests of one
  /// connection overlap and may reorder their appends.
  public var inflightRequestsMax: Int = 1
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
}
