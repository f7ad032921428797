import ArgumentParser
import Logging
import ServiceLifecycle
import StreamBusMetaServer
import StreamBusTransport

#if canImport(Glibc)
  import Glibc
#endif

@main
struct MetaServerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "metaserver",
    abstract: "StreamBus metaserver: one member of the Raft quorum that holds cluster metadata.",
    discussion: """
      A quorum starts with --initial-cluster on every founding member (same list everywhere, \
      Raft addresses). A node added later starts with --join (API addresses of running \
      members) and waits until an operator adds it as a learner (sbctl quorum add-learner) \
      and promotes it. A restarted node finds its state in --data-dir and ignores both.

      Every option can also be set in the --config file as "key = value" with the option's \
      name as key (without "--"); options on the command line win over the file. A bad \
      config file or flag exits with code 64 and a message naming the key and where its \
      value came from.

      Once every listener is bound it prints "listening on raft=HOST:PORT api=HOST:PORT \
      http=HOST:PORT" to stderr and, with --ready-file, writes those three as key=value \
      lines to that file (atomically). SIGTERM or SIGINT stops it gracefully; a leader \
      first hands leadership to a caught-up voter.
      """)

  @Option(help: "Config file of \"key = value\" lines; command-line options override it.")
  var config: String?

  @Option(help: "This node's Raft id, a positive integer (required).")
  var nodeId: String?

  @Option(help: "Directory for the Raft log and snapshots (required).")
  var dataDir: String?

  @Option(help: "Address for Raft peer traffic, HOST:PORT (required).")
  var raftListen: String?

  @Option(help: "Address for the metaserver API (brokers, sbctl), HOST:PORT (required).")
  var apiListen: String?

  @Option(help: "Address for /healthz, /readyz and /metrics, HOST:PORT (required).")
  var httpListen: String?

  @Option(
    help:
      "Host announced for this node's API. (default: the API listen host, 127.0.0.1 for a wildcard)"
  )
  var advertisedHost: String?

  @Option(help: "Founding voters: ID=HOST:RAFTPORT,... (same list on every founding member).")
  var initialCluster: String?

  @Option(help: "API addresses of running members, HOST:PORT,...: start without bootstrapping.")
  var join: String?

  @Option(help: "Write the bound addresses to this file once listening (temp file + rename).")
  var readyFile: String?

  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. (default: info)")
  var logLevel: String?

  @Option(help: "Raft tick period in ms. (default: 50)")
  var tickIntervalMs: String?

  @Option(help: "Raft leader heartbeat period in ms. (default: 100)")
  var raftHeartbeatIntervalMs: String?

  @Option(help: "Raft base election timeout in ms; randomized up to twice that. (default: 500)")
  var raftElectionTimeoutMs: String?

  @Option(help: "Snapshot and compact the Raft log after this many new entries. (default: 10000)")
  var snapshotThresholdEntries: String?

  @Option(help: "Fence a broker without a heartbeat for this long, in ms. (default: 1500)")
  var brokerSessionTimeoutMs: String?

  @Option(help: "Heartbeat period expected from brokers, in ms. (default: 250)")
  var brokerHeartbeatIntervalMs: String?

  @Option(help: "How often the leader looks for expired broker sessions, in ms. (default: 100)")
  var fenceCheckIntervalMs: String?

  @Option(
    help: "How long a write waits for its commit before REQUEST_TIMED_OUT, in ms. (default: 10000)")
  var requestTimeoutMs: String?

  @Option(help: "Upper bound on a FetchMetadata long-poll, in ms. (default: 30000)")
  var fetchWaitMaxMs: String?

  @Option(help: "Committed batches kept in memory for FetchMetadata. (default: 4096)")
  var metadataTailBatchesMax: String?

  @Option(help: "Largest API request frame in bytes. (default: 16777216)")
  var frameBytesMax: String?

  @Option(help: "How long shutdown waits for in-flight requests, in ms. (default: 5000)")
  var shutdownGracePeriodMs: String?

  @Option(help: "Cluster id reported by DescribeCluster. (default: streambus)")
  var clusterId: String?

  @Flag(help: .hidden)
  var enableTestFaults = false

  func run() async throws {
    let configuration: MetaServerConfiguration
    let level: Logger.Level
    do {
      let values = try ConfigValues.load(
        file: config, validKeys: MetaServerConfiguration.configKeys,
        flags: [
          "node-id": nodeId, "data-dir": dataDir, "raft-listen": raftListen,
          "api-listen": apiListen, "http-listen": httpListen, "advertised-host": advertisedHost,
          "initial-cluster": initialCluster, "join": join, "ready-file": readyFile,
          "log-level": logLevel, "tick-interval-ms": tickIntervalMs,
          "raft-heartbeat-interval-ms": raftHeartbeatIntervalMs,
          "raft-election-timeout-ms": raftElectionTimeoutMs,
          "snapshot-threshold-entries": snapshotThresholdEntries,
          "broker-session-timeout-ms": brokerSessionTimeoutMs,
          "broker-heartbeat-interval-ms": brokerHeartbeatIntervalMs,
          "fence-check-interval-ms": fenceCheckIntervalMs, "request-timeout-ms": requestTimeoutMs,
          "fetch-wait-max-ms": fetchWaitMaxMs, "metadata-tail-batches-max": metadataTailBatchesMax,
          "frame-bytes-max": frameBytesMax, "shutdown-grace-period-ms": shutdownGracePeriodMs,
          "cluster-id": clusterId, "enable-test-faults": enableTestFaults ? "true" : nil,
        ])
      level = try ProcessLogging.parseLevel(values.string("log-level", default: "info"))
      configuration = try MetaServerConfiguration(values: values)
    } catch let error as TransportError {
      throw ValidationError(error.message)
    }
    ProcessLogging.bootstrap(processName: "metaserver-\(configuration.nodeID)", level: level)
    let logger = Logger(label: "streambus.metaserver")

    let server: MetaServer
    do {
      server = try await MetaServer.start(configuration: configuration, logger: logger)
    } catch {
      logger.critical("cannot start: \(error)")
      writeToStandardError("metaserver: cannot start: \(error)\n")
      throw ExitCode.failure
    }
    writeToStandardError(
      "listening on raft=\(server.raftAddress) api=\(server.apiAddress) http=\(server.httpAddress)\n"
    )
    let group = ServiceGroup(
      services: [server], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [],
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
