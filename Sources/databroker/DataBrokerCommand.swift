import ArgumentParser
import Logging
import ServiceLifecycle
import StreamBusBroker
import StreamBusStorage
import StreamBusTransport

#if canImport(Glibc)
  import Glibc
#endif

@main
struct DataBrokerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "databroker",
    abstract: "StreamBus data broker: hosts partition logs and serves produce and fetch.",
    discussion: """
      Only the standalone mode exists so far: one process that hosts every partition, leads \
      all of them and keeps topics in its data directory. Every option can also be set in \
      the --config file as "key = value" with the option's name as key (without "--"); \
      options on the command line win over the file.

      Once serving, it prints "listening on HOST:PORT" to stderr and, with --ready-file, \
      writes HOST:PORT to that file (atomically). SIGTERM or SIGINT stops it gracefully: \
      no new connections, in-flight requests finish, every log is flushed and closed.
      """)

  @Flag(help: "Run as a single self-contained broker (required: cluster mode is not built yet).")
  var standalone = false

  @Option(help: "Config file of \"key = value\" lines; command-line options override it.")
  var config: String?

  @Option(help: "Directory for partition logs and topic metadata (required).")
  var dataDir: String?

  @Option(
    help: "Address to listen on, HOST:PORT; port 0 picks a free port. (default: 0.0.0.0:9092)")
  var listen: String?

  @Option(
    help:
      "Host announced to clients in Metadata. (default: the listen host, 127.0.0.1 for a wildcard)")
  var advertisedHost: String?

  @Option(help: "This broker's id in Metadata. (default: 0)")
  var nodeId: String?

  @Option(help: "Write the bound HOST:PORT to this file once serving (temp file + rename).")
  var readyFile: String?

  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. (default: info)")
  var logLevel: String?

  @Option(
    help:
      "Flush every N ms instead of group commit (acks=all then waits only for the append). (default: unset = group commit)"
  )
  var flushIntervalMs: String?

  @Option(help: "How often retention runs, in ms. (default: 300000)")
  var retentionCheckIntervalMs: String?

  @Option(help: "Largest records size for one partition in one produce request. (default: 1048576)")
  var messageMaxBytes: String?

  @Option(help: "Largest partition count of one topic. (default: 1024)")
  var partitionsPerTopicMax: String?

  @Option(help: "Partitions of a topic created with numPartitions -1. (default: 1)")
  var defaultPartitions: String?

  @Option(help: "Default topic retention.ms; -1 keeps data forever. (default: 604800000)")
  var retentionMs: String?

  @Option(help: "Default topic retention.bytes per partition; -1 = no limit. (default: -1)")
  var retentionBytes: String?

  @Option(help: "Default topic segment.bytes. (default: 1073741824)")
  var segmentBytes: String?

  @Option(help: "Default topic segment.ms. (default: 604800000)")
  var segmentMs: String?

  @Option(
    help:
      "Requests processed at once per connection; 1 keeps pipelined produces in order. (default: 1)"
  )
  var inflightRequestsMax: String?

  @Option(help: "Largest request frame in bytes. (default: 67108864)")
  var frameBytesMax: String?

  @Option(help: "How long shutdown waits for in-flight requests, in ms. (default: 10000)")
  var shutdownGracePeriodMs: String?

  @Option(help: "Upper bound on a fetch's maxWaitMs. (default: 30000)")
  var fetchWaitMaxMs: String?

  static let keys = [
    "standalone", "data-dir", "listen", "advertised-host", "node-id", "ready-file", "log-level",
    "flush-interval-ms", "retention-check-interval-ms", "message-max-bytes",
    "partitions-per-topic-max", "default-partitions", "retention-ms", "retention-bytes",
    "segment-bytes", "segment-ms", "inflight-requests-max", "frame-bytes-max",
    "shutdown-grace-period-ms", "fetch-wait-max-ms",
  ]

  func run() async throws {
    let values: ConfigValues
    let brokerConfiguration: BrokerConfiguration
    let level: Logger.Level
    do {
      let file =
        try config.map { try ConfigValues(contentsOfFile: $0, validKeys: Self.keys) }
        ?? ConfigValues(validKeys: Self.keys)
      values = file.merging(flags: [
        "standalone": standalone ? "true" : nil, "data-dir": dataDir, "listen": listen,
        "advertised-host": advertisedHost, "node-id": nodeId, "ready-file": readyFile,
        "log-level": logLevel, "flush-interval-ms": flushIntervalMs,
        "retention-check-interval-ms": retentionCheckIntervalMs,
        "message-max-bytes": messageMaxBytes, "partitions-per-topic-max": partitionsPerTopicMax,
        "default-partitions": defaultPartitions, "retention-ms": retentionMs,
        "retention-bytes": retentionBytes, "segment-bytes": segmentBytes,
        "segment-ms": segmentMs, "inflight-requests-max": inflightRequestsMax,
        "frame-bytes-max": frameBytesMax, "shutdown-grace-period-ms": shutdownGracePeriodMs,
        "fetch-wait-max-ms": fetchWaitMaxMs,
      ])
      level = try ProcessLogging.parseLevel(values.string("log-level", default: "info"))
      brokerConfiguration = try Self.brokerConfiguration(values)
    } catch let error as TransportError {
      throw ValidationError(error.message)
    }
    ProcessLogging.bootstrap(processName: "databroker", level: level)
    let logger = Logger(label: "streambus.databroker")

    let broker: StandaloneBroker
    do {
      broker = try await StandaloneBroker.start(configuration: brokerConfiguration, logger: logger)
    } catch {
      logger.critical("cannot start: \(error)")
      writeToStandardError("databroker: cannot start: \(error)\n")
      throw ExitCode.failure
    }
    writeToStandardError("listening on \(broker.localAddress)\n")
    let group = ServiceGroup(
      services: [broker], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [],
      logger: logger)
    try await group.run()
  }

  static func brokerConfiguration(_ values: ConfigValues) throws -> BrokerConfiguration {
    guard try values.bool("standalone", default: false) else {
      throw TransportError(
        .invalidConfiguration,
        "pass --standalone (or \"standalone = true\"): cluster mode is not implemented yet")
    }
    guard let dataDirectory = values.string("data-dir") else {
      throw TransportError(.invalidConfiguration, "--data-dir is required")
    }
    var configuration = BrokerConfiguration(
      dataDirectory: dataDirectory,
      listen: try values.hostPort("listen", default: HostPort(host: "0.0.0.0", port: 9092)))
    configuration.advertisedHost = values.string("advertised-host")
    configuration.nodeId = Int32(
      try values.int("node-id", default: 0, range: 0...Int(Int32.max)))
    configuration.readyFile = values.string("ready-file")
    if values.string("flush-interval-ms") != nil {
      configuration.flushPolicy = .interval(
        ms: Int64(try values.int("flush-interval-ms", default: 1000, range: 1...86_400_000)))
      configuration.maintenanceIntervalMs = 10
    }
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
      "inflight-requests-max", default: 1, range: 1...4096)
    configuration.frameBytesMax = try values.int(
      "frame-bytes-max", default: 64 << 20, range: 1024...Int(Int32.max))
    configuration.shutdownGracePeriodMs = Int64(
      try values.int("shutdown-grace-period-ms", default: 10_000, range: 0...3_600_000))
    configuration.fetchWaitMsMax = Int64(
      try values.int("fetch-wait-max-ms", default: 30_000, range: 0...3_600_000))
    return configuration
  }
}

/// One unbuffered write, so the line is out before anything else happens.
func writeToStandardError(_ text: String) {
  let bytes = Array(text.utf8)
  var written = 0
  while written < bytes.count {
    let result = bytes.withUnsafeBytes { buffer -> Int in
      guard let base = buffer.baseAddress else { return 0 }
      return write(STDERR_FILENO, base + written, buffer.count - written)
    }
    if result < 0 && errno == EINTR { continue }
    guard result > 0 else { return }
    written += result
  }
}
