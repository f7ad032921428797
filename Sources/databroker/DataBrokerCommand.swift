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
      Two modes, exactly one of which must be chosen. --standalone: one process that hosts \
      every partition, leads all of them and keeps topics in its data directory. \
      --metaservers HOST:PORT,... with --broker-id N: a member of a cluster; it registers with \
      the metaserver quorum, hosts the replicas the metadata assigns to it, leads or follows \
      them and replicates from the leaders. Every option can also be set in the --config \
      file as "key = value" with the option's name as key (without "--"); options on the \
      command line win over the file.

      Once serving (in cluster mode: also registered and unfenced), it prints "listening on \
      HOST:PORT" to stderr and, with --ready-file, writes HOST:PORT to that file \
      (atomically). SIGTERM or SIGINT stops it gracefully: in cluster mode leadership is \
      moved away first (controlled shutdown), then no new connections, in-flight requests \
      finish, every log is flushed and closed.
      """)

  @Flag(help: "Run as a single self-contained broker (excludes --metaservers).")
  var standalone = false

  @Option(help: "Cluster mode: the metaservers' API addresses, HOST:PORT,HOST:PORT,...")
  var metaservers: String?

  @Option(help: "Cluster mode: this broker's id (required with --metaservers).")
  var brokerId: String?

  @Option(help: "Cluster mode: rack name used for replica placement.")
  var rack: String?

  @Option(help: "Cluster mode: a follower behind for this long leaves the ISR. (default: 2000)")
  var replicaLagTimeMaxMs: String?

  @Option(help: "Cluster mode: long-poll bound of follower fetches, in ms. (default: 500)")
  var replicaFetchMaxWaitMs: String?

  @Option(help: "Cluster mode: record bytes per follower fetch. (default: 8388608)")
  var replicaFetchMaxBytes: String?

  @Option(help: "Cluster mode: heartbeat interval to the metaservers, in ms. (default: 250)")
  var brokerHeartbeatIntervalMs: String?

  @Option(
    help:
      "Cluster mode: without a successful heartbeat for this long, stop leading. (default: 1500)")
  var brokerSessionTimeoutMs: String?

  @Option(
    help:
      "Cluster mode: how long SIGTERM waits for leadership to move away, in ms. (default: 30000)")
  var controlledShutdownTimeoutMs: String?

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

  @Option(help: "Threads running fdatasync, i.e. partitions flushing at once. (default: 8)")
  var flushThreads: String?

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
      "Pipelined requests per connection awaiting a response; processed in order. (default: 64)"
  )
  var inflightRequestsMax: String?

  @Option(help: "Largest request frame in bytes. (default: 67108864)")
  var frameBytesMax: String?

  @Option(help: "How long shutdown waits for in-flight requests, in ms. (default: 10000)")
  var shutdownGracePeriodMs: String?

  @Option(help: "Upper bound on a fetch's maxWaitMs. (default: 30000)")
  var fetchWaitMaxMs: String?

  func run() async throws {
    let values: ConfigValues
    let brokerConfiguration: BrokerConfiguration
    let level: Logger.Level
    do {
      values = try ConfigValues.load(
        file: config, validKeys: BrokerConfiguration.configKeys,
        flags: [
          "standalone": standalone ? "true" : nil, "data-dir": dataDir, "listen": listen,
          "advertised-host": advertisedHost, "node-id": nodeId, "ready-file": readyFile,
          "log-level": logLevel, "flush-interval-ms": flushIntervalMs,
          "flush-threads": flushThreads,
          "retention-check-interval-ms": retentionCheckIntervalMs,
          "message-max-bytes": messageMaxBytes, "partitions-per-topic-max": partitionsPerTopicMax,
          "default-partitions": defaultPartitions, "retention-ms": retentionMs,
          "retention-bytes": retentionBytes, "segment-bytes": segmentBytes,
          "segment-ms": segmentMs, "inflight-requests-max": inflightRequestsMax,
          "frame-bytes-max": frameBytesMax, "shutdown-grace-period-ms": shutdownGracePeriodMs,
          "fetch-wait-max-ms": fetchWaitMaxMs, "metaservers": metaservers,
          "broker-id": brokerId, "rack": rack, "replica-lag-time-max-ms": replicaLagTimeMaxMs,
          "replica-fetch-max-wait-ms": replicaFetchMaxWaitMs,
          "replica-fetch-max-bytes": replicaFetchMaxBytes,
          "broker-heartbeat-interval-ms": brokerHeartbeatIntervalMs,
          "broker-session-timeout-ms": brokerSessionTimeoutMs,
          "controlled-shutdown-timeout-ms": controlledShutdownTimeoutMs,
        ])
      level = try ProcessLogging.parseLevel(values.string("log-level", default: "info"))
      brokerConfiguration = try BrokerConfiguration(values: values)
    } catch let error as TransportError {
      throw ValidationError(error.message)
    }
    ProcessLogging.bootstrap(processName: "databroker", level: level)
    let logger = Logger(label: "streambus.databroker")

    let broker: any Service
    do {
      if brokerConfiguration.cluster != nil {
        // Registration and catching up happen in run(); the line comes once unfenced.
        broker = try await ClusterBroker.start(
          configuration: brokerConfiguration, logger: logger,
          onReady: { address in writeToStandardError("listening on \(address)\n") })
      } else {
        let standaloneBroker = try await StandaloneBroker.start(
          configuration: brokerConfiguration, logger: logger)
        writeToStandardError("listening on \(standaloneBroker.localAddress)\n")
        broker = standaloneBroker
      }
    } catch {
      logger.critical("cannot start: \(error)")
      writeToStandardError("databroker: cannot start: \(error)\n")
      throw ExitCode.failure
    }
    let group = ServiceGroup(
      services: [broker], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [],
      logger: logger)
    try await group.run()
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
