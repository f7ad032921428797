import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Flags of `sbctl drill workload` (docs/sbctl.md). Defaults suit a chaos test: it runs until
/// `LabWorkload.finish()` sends SIGTERM.
public struct LabWorkloadOptions: Sendable {
  public var topic: String
  public var createTopic = false
  public var partitions = 3
  public var replicationFactor = 3
  /// An upper bound; `finish()` normally stops it earlier.
  public var durationS = 900
  /// Records per second over all producers; nil = the workload's default.
  public var rate: Int?
  public var producers = 2
  public var valueBytes = 64
  public var keepHistory = false
  /// The producers' request timeout (`--request-timeout-ms`); nil = the workload's default
  /// (5 s). Requests already sent to an isolated leader wait this long.
  public var requestTimeoutMs: Int?
  public var extraArguments: [String] = []

  public init(topic: String) {
    self.topic = topic
  }
}

/// A running `sbctl drill workload` in the client namespace: idempotent acks=all producers
/// and a tailing reader; on SIGTERM it stops sending, reads everything back and checks it.
public final class LabWorkload: @unchecked Sendable {
  public let process: ManagedProcess
  public let options: LabWorkloadOptions
  public let startedAtMs: Int64
  /// Failing runs keep their history file here (outside the lab, which is deleted).
  public let historyDirectory: URL

  private init(
    process: ManagedProcess, options: LabWorkloadOptions, startedAtMs: Int64,
    historyDirectory: URL
  ) {
    self.process = process
    self.options = options
    self.startedAtMs = startedAtMs
    self.historyDirectory = historyDirectory
  }

  /// Where histories of failing chaos runs are kept: `$STREAMBUS_HISTORY_DIR` (as for
  /// `sbctl drill`), else `<temp>/streambus-chaos-histories`.
  public static var historyDirectory: URL {
    if let path = ProcessInfo.processInfo.environment["STREAMBUS_HISTORY_DIR"],
      !path.isEmpty
    {
      return URL(fileURLWithPath: path, isDirectory: true)
    }
    return FileManager.default.temporaryDirectory.appendingPathComponent(
      "streambus-chaos-histories", isDirectory: true)
  }

  static func start(cluster: LabCluster, options: LabWorkloadOptions) throws -> LabWorkload {
    let historyDirectory = Self.historyDirectory
    try FileManager.default.createDirectory(
      at: historyDirectory, withIntermediateDirectories: true)
    var arguments = [
      "drill", "workload", "--bootstrap", cluster.bootstrapBrokers, "--topic", options.topic,
      "--partitions", "\(options.partitions)",
      "--replication-factor", "\(options.replicationFactor)",
      "--duration-s", "\(options.durationS)", "--producers", "\(options.producers)",
      "--value-bytes", "\(options.valueBytes)", "--history-dir", historyDirectory.path,
      "--output", "json",
    ]
    if options.createTopic { arguments.append("--create-topic") }
    if let rate = options.rate { arguments += ["--rate", "\(rate)"] }
    if options.keepHistory { arguments.append("--keep-history") }
    if let requestTimeoutMs = options.requestTimeoutMs {
      arguments += ["--request-timeout-ms", "\(requestTimeoutMs)"]
    }
    arguments += options.extraArguments
    let startedAtMs = LabTimeline.nowMs()
    let process = try cluster.lab.start(
      in: cluster.client, executableNamed: "sbctl", arguments: arguments,
      label: "workload-\(options.topic)",
      environment: ["SB_METASERVERS": cluster.metaserverAddresses])
    return LabWorkload(
      process: process, options: options, startedAtMs: startedAtMs,
      historyDirectory: historyDirectory)
  }

  /// Fails early when the workload process already ended (a usage or setup error).
  public func checkRunning() throws {
    if let exit = process.exit {
      throw HarnessError(
        "sbctl drill workload ended early (\(exit)); stdout: \(stdoutText)\nstderr:\n"
          + process.stderrTail(lines: 30))
    }
  }

  /// Stops the producers (SIGTERM), waits for the final read and the check, and returns the
  /// report. Throws when the workload could not run or printed no report (exit 2 or a crash),
  /// not when it found a violation: that is `report.verdict == "FAIL"`.
  public func finish(timeoutMs: Int = 180_000) async throws -> DrillWorkloadReport {
    process.signal(SIGTERM)
    return try await waitForReport(timeoutMs: timeoutMs)
  }

  /// Waits until the workload ends by itself (its `--duration-s`) and returns its report.
  public func waitForReport(timeoutMs: Int) async throws -> DrillWorkloadReport {
    let exit: ProcessExit
    do {
      exit = try await process.waitForExit(timeoutMs: timeoutMs)
    } catch {
      process.killAndReap()
      throw HarnessError(
        "sbctl drill workload did not finish within \(timeoutMs) ms; stderr:\n"
          + process.stderrTail(lines: 30))
    }
    guard exit == .exited(code: 0) || exit == .exited(code: 1) else {
      throw HarnessError(
        "sbctl drill workload ended with \(exit); stdout: \(stdoutText)\nstderr:\n"
          + process.stderrTail(lines: 30))
    }
    do {
      return try DrillWorkloadReport.decode(process.stdoutData())
    } catch {
      throw HarnessError(
        "sbctl drill workload (\(exit)) printed no readable report: \(error); stdout: "
          + "\(stdoutText)\nstderr:\n\(process.stderrTail(lines: 30))")
    }
  }

  private var stdoutText: String { String(decoding: process.stdoutData(), as: UTF8.self) }
}

/// The JSON report of `sbctl drill workload --output json` (docs/sbctl.md).
public struct DrillWorkloadReport: Decodable, Sendable, CustomStringConvertible {
  public struct AckGap: Decodable, Sendable, Equatable {
    /// Unix ms of the last acknowledgement before the gap.
    public let fromMs: Int64
    /// Unix ms of the first acknowledgement after it.
    public let toMs: Int64
    public var durationMs: Int64 { toMs - fromMs }
  }

  public struct Partition: Decodable, Sendable {
    public let partition: Int32
    public let acknowledged: Int
    public let firstAckAtMs: Int64?
    public let lastAckAtMs: Int64?
    public let ackGaps: [AckGap]
  }

  public let verdict: String
  public let topic: String
  public let startedAtMs: Int64
  public let finishedAtMs: Int64
  public let sent: Int
  public let acknowledged: Int
  public let failed: Int
  public let indeterminate: Int
  public let recordsRead: Int
  public let violations: [String]
  public let historyFile: String?
  public let partitions: [Partition]

  public var passed: Bool { verdict == "PASS" }

  /// Decodes the one JSON object the workload prints (skipping anything before its `{`).
  public static func decode(_ data: Data) throws -> DrillWorkloadReport {
    guard let start = data.firstIndex(of: UInt8(ascii: "{")) else {
      throw HarnessError("no JSON object in the workload's output")
    }
    return try JSONDecoder().decode(DrillWorkloadReport.self, from: data[start...])
  }

  /// The longest acknowledgement gap of `partition` (every partition when nil) that overlaps
  /// `[fromMs, toMs]`: the unavailability a fault in that window caused, as clients saw it.
  /// nil when no gap of 200 ms or more overlaps it.
  public func longestGap(partition: Int32? = nil, fromMs: Int64, toMs: Int64) -> AckGap? {
    partitions
      .filter { partition == nil || $0.partition == partition }
      .flatMap(\.ackGaps)
      .filter { $0.toMs >= fromMs && $0.fromMs <= toMs }
      .max { $0.durationMs < $1.durationMs }
  }

  /// The first acknowledgement of `partition` at or after `atMs`: the end of the gap that
  /// contains `atMs`, else `atMs` itself when acknowledgements went on (gaps under 200 ms are
  /// not listed); nil when the partition had no acknowledgement after `atMs`.
  public func firstAck(partition: Int32, atOrAfterMs atMs: Int64) -> Int64? {
    guard let found = partitions.first(where: { $0.partition == partition }),
      let last = found.lastAckAtMs, last >= atMs
    else { return nil }
    if let gap = found.ackGaps.first(where: { $0.fromMs <= atMs && $0.toMs >= atMs }) {
      return gap.toMs
    }
    return atMs
  }

  public var description: String {
    "workload \(verdict): sent \(sent), acknowledged \(acknowledged), failed \(failed), "
      + "indeterminate \(indeterminate), read \(recordsRead)"
      + (violations.isEmpty ? "" : "; violations: \(violations.prefix(10))")
      + (historyFile.map { "; history \($0)" } ?? "")
  }
}

/// A scenario's timeline: each event printed with the time since the start and kept (unix ms,
/// the workload's clock, so events can be matched with its ack gaps).
public final class LabTimeline: @unchecked Sendable {
  public struct Event: Sendable {
    public let atMs: Int64
    public let text: String
  }

  public let name: String
  public let startMs: Int64
  private let lock = NSLock()
  private var recorded: [Event] = []

  public init(_ name: String) {
    self.name = name
    startMs = Self.nowMs()
  }

  public static func nowMs() -> Int64 {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return Int64(time.tv_sec) * 1_000 + Int64(time.tv_nsec) / 1_000_000
  }

  /// Records `text` now (or at `atMs`); returns the time.
  @discardableResult
  public func mark(_ text: String, atMs: Int64? = nil) -> Int64 {
    let time = atMs ?? Self.nowMs()
    let line = "[\(name) \(offset(time))] \(text)"
    lock.withLock { recorded.append(Event(atMs: time, text: text)) }
    print(line)
    return time
  }

  /// `+1.234s` relative to the start.
  public func offset(_ atMs: Int64) -> String {
    String(format: "+%7.3fs", Double(atMs - startMs) / 1_000)
  }

  public var events: [Event] { lock.withLock { recorded } }

  /// Every event sorted by time (events marked after the fact with `atMs` land in place).
  public var text: String {
    events.sorted { $0.atMs < $1.atMs }.map { "\(offset($0.atMs)) \($0.text)" }
      .joined(separator: "\n")
  }
}
