import ArgumentParser
import Foundation
import StreamBusClient
import StreamBusMetaClient

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

struct DrillCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "drill",
    abstract: "Failover drills: a checked workload, fault injection, timeline and PASS/FAIL.",
    discussion: """
      `drill workload` runs the verification workload alone (for harnesses that inject \
      faults themselves). The failover drills run it while they kill or pause a node of a \
      `sbctl local` cluster (--cluster-dir, before or after `drill`), or run \
      --fault-command/--recover-command against any cluster. Exit codes: 0 PASS, 1 FAIL, \
      2 the drill could not run (invalid values, cluster unreachable or unhealthy before the \
      fault). See docs/sbctl.md, "Drills".
      """,
    subcommands: [
      DrillWorkloadCommand.self, DrillBrokerFailoverCommand.self,
      DrillMetaserverFailoverCommand.self, DrillPartitionCommand.self,
    ])
}

/// Drill exit codes (documented in docs/sbctl.md).
enum DrillExit {
  static let pass: Int32 = 0
  static let fail: Int32 = 1
  /// Invalid values, or the drill could not start (cluster unreachable, topic missing).
  static let setup: Int32 = 2
}

/// Why a drill could not run; reported on stderr with exit code 2.
struct DrillSetupError: Error, CustomStringConvertible {
  let description: String

  init(_ description: String) {
    self.description = description
  }
}

/// `--output` of the drills.
enum DrillOutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
  case text
  case json
}

/// Unix time in milliseconds (the drills' timeline clock).
func unixNowMs() -> Int64 {
  Int64((Date().timeIntervalSince1970 * 1_000).rounded(.down))
}

func writeStandardError(_ text: String) {
  FileHandle.standardError.write(Data((text + "\n").utf8))
}

func writeStandardOutput(_ text: String) {
  FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

/// Runs a drill body: setup errors (and client errors escaping it) are one stderr line and
/// exit 2; otherwise the body's exit code.
func runDrill(_ body: () async throws -> Int32) async throws {
  let status: Int32
  do {
    status = try await body()
  } catch {
    guard let message = drillSetupMessage(error) else { throw error }
    writeStandardError("sbctl drill: error: \(message)")
    status = DrillExit.setup
  }
  if status != DrillExit.pass {
    throw ExitCode(status)
  }
}

/// The message of an error that means the drill could not run; nil for others.
private func drillSetupMessage(_ error: any Error) -> String? {
  switch error {
  case let error as DrillSetupError: return error.description
  case let error as ValidationError: return error.message
  case let error as LocalClusterError: return error.message
  case let error as StreamBusError: return "\(error)"
  case let error as MetaClientError: return "\(error)"
  default: return nil
  }
}

/// Workload flags shared by `drill workload` and the failover drills.
struct DrillWorkloadOptions: ParsableArguments {
  @Option(help: "Values per second across all producers.")
  var rate: Int = 2_000

  @Option(help: "Idempotent acks=all producers (each writes every partition).")
  var producers: Int = 2

  @Option(help: "Record value size in bytes (the value id padded with '.').")
  var valueBytes: Int = 64

  @Option(help: "Producer request timeout in ms (a paused leader holds requests this long).")
  var requestTimeoutMs: Int64 = 5_000

  @Option(help: "Folder for history files (default: $STREAMBUS_HISTORY_DIR or the temp dir).")
  var historyDir: String?

  @Flag(help: "Keep the history file also when the verdict is PASS.")
  var keepHistory = false

  func check() throws {
    guard (1...1_000_000).contains(rate) else {
      throw DrillSetupError("--rate must be 1...1000000, got \(rate)")
    }
    guard (1...64).contains(producers) else {
      throw DrillSetupError("--producers must be 1...64, got \(producers)")
    }
    guard (1...1_048_576).contains(valueBytes) else {
      throw DrillSetupError("--value-bytes must be 1...1048576, got \(valueBytes)")
    }
    guard requestTimeoutMs >= 100 else {
      throw DrillSetupError("--request-timeout-ms must be at least 100")
    }
  }

  var historyDirectory: URL? {
    historyDir.map { URL(fileURLWithPath: $0, isDirectory: true) }
  }
}

/// Parses a `host:port,...` list given to `flag`.
func parseDrillBrokers(_ text: String, flag: String) throws -> [HostPort] {
  do {
    return try ClientConfig.parseBrokers(text)
  } catch let error as StreamBusError {
    throw DrillSetupError("\(flag): \(error.message)")
  }
}

/// The workload's client settings: short timeouts and backoff, so a dead leader costs
/// seconds, not the client defaults' half minute.
func drillClientConfig(brokers: [HostPort], requestTimeoutMs: Int64) -> ClientConfig {
  var config = ClientConfig(bootstrapBrokers: brokers, clientId: "sbctl-drill")
  config.requestTimeoutMs = requestTimeoutMs
  config.connectTimeoutMs = min(2_000, requestTimeoutMs)
  config.retryBackoffMaxMs = 500
  return config
}

struct DrillWorkloadCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "workload",
    abstract: "Run the checked acks=all workload on a topic for a while, then verify it.",
    discussion: """
      Idempotent acks=all producers and one tailing reader write and read every partition \
      of --topic for --duration-s seconds (SIGTERM or SIGINT stops sending early), then a \
      final full read and the history checker: no acknowledged value lost, duplicated, \
      reordered or moved, no offset holding two values, nothing read that later \
      disappeared. Exit 0 when valid (PASS), 1 on a violation or when nothing was \
      acknowledged (FAIL), 2 when the workload could not start. --output json prints one \
      JSON object with per-partition acknowledgement gaps of 200 ms or more.
      """)

  @Option(help: "Comma-separated broker host:port list (default: --cluster-dir's, $SB_BROKERS).")
  var bootstrap: String?

  @Option(help: "Topic to write and read.")
  var topic: String

  @Option(help: "Folder of a `sbctl local` cluster whose brokers to use (without --bootstrap).")
  var clusterDir: String?

  @Flag(help: "Create the topic first (an existing one is used as it is).")
  var createTopic = false

  @Option(help: "With --create-topic: partition count.")
  var partitions: Int32 = 3

  @Option(help: "With --create-topic: replication factor.")
  var replicationFactor: Int16 = 3

  @Option(help: "How long to send, in seconds.")
  var durationS: Double = 20

  @OptionGroup var workloadOptions: DrillWorkloadOptions

  @Option(help: "Output format: text or json.")
  var output: DrillOutputFormat = .text

  func run() async throws {
    try await runDrill {
      try workloadOptions.check()
      guard durationS > 0, durationS <= 86_400 else {
        throw DrillSetupError("--duration-s must be more than 0 and at most 86400")
      }
      guard partitions >= 1, replicationFactor >= 1 else {
        throw DrillSetupError("--partitions and --replication-factor must be at least 1")
      }
      let brokers = try parseDrillBrokers(try bootstrapList(), flag: "--bootstrap")
      let config = drillClientConfig(
        brokers: brokers, requestTimeoutMs: workloadOptions.requestTimeoutMs)
      if createTopic {
        try await DrillTopics.createAndWait(
          topic, partitions: partitions, replicationFactor: replicationFactor, config: config,
          timeoutMs: 30_000)
      }
      let run = DrillWorkloadRun(
        config: config, topic: topic, options: workloadOptions,
        durationMs: Int64(durationS * 1_000))
      let signals = StopSignals { run.stopSending() }
      try await run.start()
      writeStandardError("drill workload: writing \(topic) for \(durationS) s")
      let report = await run.finish(name: "drill-workload-\(topic)")
      withExtendedLifetime(signals) {}
      switch output {
      case .json: writeStandardOutput(report.json().rendered())
      case .text: report.textLines().forEach(writeStandardOutput)
      }
      return report.isPass ? DrillExit.pass : DrillExit.fail
    }
  }

  private func bootstrapList() throws -> String {
    if let bootstrap { return bootstrap }
    if let cluster = try loadLocalCluster(clusterDir), !cluster.brokers.isEmpty {
      return cluster.brokerList
    }
    if let fromEnvironment = ProcessInfo.processInfo.environment["SB_BROKERS"],
      !fromEnvironment.allSatisfy(\.isWhitespace)
    {
      return fromEnvironment
    }
    throw DrillSetupError(
      "no brokers: pass --bootstrap host:port[,host:port...], --cluster-dir or set SB_BROKERS")
  }
}

/// SIGTERM and SIGINT call `onSignal` (once each) instead of ending the process, while this
/// object lives.
final class StopSignals: @unchecked Sendable {
  private let sources: [any DispatchSourceSignal]

  init(_ onSignal: @escaping @Sendable () -> Void) {
    sources = [SIGTERM, SIGINT].map { number in
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
      source.setEventHandler {
        writeStandardError("drill: signal \(number): stopping early")
        onSignal()
      }
      source.resume()
      return source
    }
  }

  deinit {
    for source in sources { source.cancel() }
  }
}

/// Creating a drill topic and waiting until it takes writes.
enum DrillTopics {
  /// Creates `topic` through the brokers (an existing topic is fine) and waits until every
  /// partition has a leader and its full ISR.
  static func createAndWait(
    _ topic: String, partitions: Int32, replicationFactor: Int16, config: ClientConfig,
    timeoutMs: Int
  ) async throws {
    try await withAdmin(config) { admin in
      try await create(
        topic, partitions: partitions, replicationFactor: replicationFactor, admin: admin)
      try await waitUntilLed(topic, admin: admin, timeoutMs: timeoutMs)
    }
  }

  private static func create(
    _ topic: String, partitions: Int32, replicationFactor: Int16, admin: Admin
  ) async throws {
    do {
      try await admin.createTopic(
        topic, partitions: partitions, replicationFactor: replicationFactor)
      writeStandardError(
        "drill: created topic \(topic) (\(partitions) partitions, replication factor "
          + "\(replicationFactor))")
    } catch let error as StreamBusError where error.errorCode == .topicAlreadyExists {
      writeStandardError("drill: topic \(topic) exists; using it")
    } catch let error as StreamBusError {
      throw DrillSetupError("cannot create topic \(topic): \(error)")
    }
  }

  private static func waitUntilLed(_ topic: String, admin: Admin, timeoutMs: Int) async throws {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var lastSeen = "no answer"
    while ContinuousClock.now < deadline {
      do {
        let description = try await admin.describeTopic(topic)
        let waiting = description.partitions.filter {
          $0.leaderId < 0 || Set($0.isr) != Set($0.replicas)
        }
        if waiting.isEmpty && !description.partitions.isEmpty { return }
        lastSeen = waiting.map { "p\($0.partition) leader \($0.leaderId) isr \($0.isr)" }
          .joined(separator: ", ")
      } catch {
        lastSeen = "\(error)"
      }
      try await Task.sleep(for: .milliseconds(100))
    }
    throw DrillSetupError(
      "topic \(topic) has no leader and full ISR on every partition within \(timeoutMs) ms "
        + "(last seen: \(lastSeen))")
  }
}
