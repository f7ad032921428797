import Foundation
import StreamBusClient
import StreamBusVerification
import StreamBusWorkload

/// The verification workload of a drill: starts `Workload`, and at the end stops it, reads
/// everything back, checks the history and summarizes it (`DrillWorkloadReport`).
final class DrillWorkloadRun: Sendable {
  let workload: Workload
  let options: DrillWorkloadOptions
  let startedAtMs: Int64

  /// Acknowledgement gaps at least this long are listed in the report.
  static let ackGapMinMs: Int64 = 200

  init(config: ClientConfig, topic: String, options: DrillWorkloadOptions, durationMs: Int64?) {
    var configuration = WorkloadConfiguration(topic: topic, producers: options.producers)
    configuration.durationMs = durationMs
    configuration.recordsPerSecondMax = options.rate
    configuration.valueBytes = options.valueBytes
    configuration.tailingReaders = 1
    // A topic reused by earlier drills holds their values; only this run's are checked.
    configuration.readsFromStartOffsets = true
    // A queued value may wait out a whole fault; longer than any drill's recovery timeout.
    configuration.producerConfig.deliveryTimeoutMs = 120_000
    workload = Workload(clientConfig: config, configuration: configuration)
    self.options = options
    startedAtMs = unixNowMs()
  }

  var history: History { workload.history }

  func start() async throws {
    do {
      try await workload.start()
    } catch {
      throw DrillSetupError(
        "cannot start the workload on topic \(workload.configuration.topic): \(error)")
    }
  }

  func stopSending() {
    workload.stopSending()
  }

  /// Stops sending (or waits until `durationMs` ended it), waits for every outcome, reads
  /// every partition back and checks the history.
  func finish(name: String) async -> DrillWorkloadReport {
    await workload.waitUntilFinished()
    let progress = workload.progress
    writeStandardError("drill: producers stopped: \(progress); final read")
    var notes: [String] = []
    do {
      let summary = try await workload.finalRead()
      writeStandardError("drill: \(summary)")
      if !summary.incompletePartitions.isEmpty {
        notes.append(
          "final read did not reach the end of partitions \(summary.incompletePartitions)")
      }
    } catch {
      notes.append("final read failed: \(error)")
    }
    let report = HistoryChecker().check(history)
    var violations = report.violations.map(\.description)
    for (kind, total) in report.violationCounts.sorted(by: { $0.key < $1.key }) {
      let listed = report.violations.filter { $0.kind == kind }.count
      if total > listed { violations.append("\(kind.rawValue): \(total - listed) more") }
    }
    if report.acknowledgedCount == 0 {
      violations.append("no value was acknowledged (the topic took no writes)")
    }
    if !violations.isEmpty {
      violations += notes
    }
    var historyFile: String?
    if !violations.isEmpty || options.keepHistory {
      do {
        historyFile = try HistoryFile.keep(history, name: name, in: options.historyDirectory)
          .path
      } catch {
        writeStandardError("drill: could not keep the history file: \(error)")
      }
    }
    let partitions = history.acknowledgements(gapMinUs: Self.ackGapMinMs * 1_000).map {
      summary in
      DrillWorkloadReport.Partition(
        partition: summary.partition, acknowledged: summary.acknowledged,
        firstAckAtMs: summary.firstAckUs.map(history.unixMilliseconds(ofUs:)),
        lastAckAtMs: summary.lastAckUs.map(history.unixMilliseconds(ofUs:)),
        ackGaps: summary.gaps.map {
          (history.unixMilliseconds(ofUs: $0.fromUs), history.unixMilliseconds(ofUs: $0.toUs))
        })
    }
    return DrillWorkloadReport(
      topic: workload.configuration.topic, startedAtMs: startedAtMs, finishedAtMs: unixNowMs(),
      sent: report.sentCount, acknowledged: report.acknowledgedCount, failed: report.failedCount,
      indeterminate: report.indeterminateCount, recordsRead: report.finalRecordCount,
      violations: violations, historyFile: historyFile, partitions: partitions)
  }
}

/// What `drill workload` prints (and the `workload` field of the failover drills' JSON).
struct DrillWorkloadReport: Sendable {
  struct Partition: Sendable {
    var partition: Int32
    var acknowledged: Int
    var firstAckAtMs: Int64?
    var lastAckAtMs: Int64?
    var ackGaps: [(fromMs: Int64, toMs: Int64)]
  }

  var topic: String
  var startedAtMs: Int64
  var finishedAtMs: Int64
  var sent: Int
  var acknowledged: Int
  var failed: Int
  var indeterminate: Int
  var recordsRead: Int
  var violations: [String]
  var historyFile: String?
  var partitions: [Partition]

  var isPass: Bool { violations.isEmpty }

  func json() -> JSONValue {
    func optional(_ value: Int64?) -> JSONValue { value.map(JSONValue.integer) ?? .null }
    return .object([
      ("verdict", .string(isPass ? "PASS" : "FAIL")), ("topic", .string(topic)),
      ("startedAtMs", .integer(startedAtMs)), ("finishedAtMs", .integer(finishedAtMs)),
      ("sent", .integer(Int64(sent))), ("acknowledged", .integer(Int64(acknowledged))),
      ("failed", .integer(Int64(failed))), ("indeterminate", .integer(Int64(indeterminate))),
      ("recordsRead", .integer(Int64(recordsRead))),
      ("violations", .array(violations.map(JSONValue.string))),
      ("historyFile", historyFile.map(JSONValue.string) ?? .null),
      (
        "partitions",
        .array(
          partitions.map { partition in
            .object([
              ("partition", .integer(Int64(partition.partition))),
              ("acknowledged", .integer(Int64(partition.acknowledged))),
              ("firstAckAtMs", optional(partition.firstAckAtMs)),
              ("lastAckAtMs", optional(partition.lastAckAtMs)),
              (
                "ackGaps",
                .array(
                  partition.ackGaps.map {
                    .object([("fromMs", .integer($0.fromMs)), ("toMs", .integer($0.toMs))])
                  })
              ),
            ])
          })
      ),
    ])
  }

  /// With `+1.234s` times from `originMs` (default: the workload's start).
  func textLines(originMs: Int64? = nil) -> [String] {
    let originMs = originMs ?? startedAtMs
    var lines = [
      "workload on \(topic): \(isPass ? "PASS" : "FAIL")",
      "  sent \(sent), acknowledged \(acknowledged), failed \(failed), indeterminate "
        + "\(indeterminate), records read back \(recordsRead)",
    ]
    for partition in partitions {
      var line = "  p\(partition.partition): acknowledged \(partition.acknowledged)"
      if partition.ackGaps.isEmpty {
        line += ", no gap of \(DrillWorkloadRun.ackGapMinMs) ms or more between acks"
      } else {
        let gaps = partition.ackGaps.map { gap in
          "\(DrillTimeline.seconds(gap.toMs - gap.fromMs)) from "
            + DrillTimeline.offset(gap.fromMs - originMs)
        }
        line += ", ack gaps: " + gaps.joined(separator: ", ")
      }
      lines.append(line)
    }
    lines += violations.map { "  violation: \($0)" }
    if let historyFile { lines.append("  history: \(historyFile)") }
    return lines
  }
}
