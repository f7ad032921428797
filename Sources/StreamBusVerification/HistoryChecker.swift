import Foundation

/// One way a history broke the log's guarantees.
public struct Violation: Sendable, Hashable, CustomStringConvertible {
  public enum Kind: String, Sendable, Hashable, CaseIterable, Comparable {
    /// Acknowledged, but not in the final read of its partition.
    case lostAcknowledged
    /// Acknowledged at one offset, found in the final read at another. (An acknowledgement
    /// without an offset, -1 — a duplicate the leader recognized without knowing its offset —
    /// is only checked for presence.)
    case acknowledgedOffsetMismatch
    /// One value at two or more (partition, offset) positions.
    case duplicate
    /// Two acknowledged values of one producer and partition in the log in the opposite order
    /// from how they were sent.
    case reordered
    /// One (partition, offset) seen holding two different values.
    case conflictingOffset
    /// A read at (partition, offset) whose value the final read does not have there.
    case disappearedRead
    /// A value read that no producer sent (or a null value).
    case unknownValue

    public static func < (left: Kind, right: Kind) -> Bool {
      (allCases.firstIndex(of: left) ?? 0) < (allCases.firstIndex(of: right) ?? 0)
    }
  }

  public var kind: Kind
  public var partition: Int32
  public var offset: Int64?
  public var value: String?
  public var detail: String

  public init(kind: Kind, partition: Int32, offset: Int64?, value: String?, detail: String) {
    self.kind = kind
    self.partition = partition
    self.offset = offset
    self.value = value
    self.detail = detail
  }

  public var description: String { "\(kind.rawValue) p\(partition): \(detail)" }
}

/// What the checker found: counts, and the violations (the first `examplesPerKindMax` of each
/// kind; `violationCounts` has the totals).
public struct CheckReport: Sendable, CustomStringConvertible {
  public var sentCount = 0
  public var acknowledgedCount = 0
  /// Values whose producer reported an error (they may still be in the log).
  public var failedCount = 0
  /// Values sent with neither an acknowledgement nor an error.
  public var indeterminateCount = 0
  /// Failed or indeterminate values found in the final read (allowed: a write may succeed
  /// after its producer gave up on it).
  public var unacknowledgedButPresentCount = 0
  public var finalRecordCount = 0
  /// Reads other than the final read.
  public var concurrentReadCount = 0
  /// Per partition: offsets covered by the final read (lowest, highest + 1).
  public var finalRanges: [Int32: Range<Int64>] = [:]
  public var violationCounts: [Violation.Kind: Int] = [:]
  public var violations: [Violation] = []
  /// Set when the history was written to a file because the check failed.
  public var historyFile: URL?

  public init() {}

  public var isValid: Bool { violationCounts.isEmpty }

  public func count(of kind: Violation.Kind) -> Int { violationCounts[kind] ?? 0 }

  public var description: String {
    var text =
      "\(isValid ? "VALID" : "INVALID"): sent \(sentCount), acknowledged \(acknowledgedCount), "
      + "failed \(failedCount), indeterminate \(indeterminateCount) "
      + "(\(unacknowledgedButPresentCount) of those in the log), final read \(finalRecordCount) "
      + "records, concurrent reads \(concurrentReadCount)"
    for kind in Violation.Kind.allCases {
      guard let total = violationCounts[kind] else { continue }
      text += "\n  \(kind.rawValue): \(total)"
      for violation in violations where violation.kind == kind {
        text += "\n    p\(violation.partition): \(violation.detail)"
      }
    }
    if let historyFile {
      text += "\n  history: \(historyFile.path)"
    }
    return text
  }
}

/// Checks a history against what a replicated log promises to an acks=all idempotent producer:
/// every acknowledged value is in the final log exactly once, at the offset it was acknowledged
/// at, in the order its producer sent it; no offset ever holds two values; nothing a reader saw
/// disappears.
///
/// The final read (reads with `isFinal`) is taken as the log at the end: the workload reads
/// every partition from the log start to its end after all producers have finished.
public struct HistoryChecker: Sendable {
  public var examplesPerKindMax: Int

  public init(examplesPerKindMax: Int = 20) {
    self.examplesPerKindMax = examplesPerKindMax
  }

  struct Position: Hashable, Comparable {
    var partition: Int32
    var offset: Int64

    static func < (left: Position, right: Position) -> Bool {
      (left.partition, left.offset) < (right.partition, right.offset)
    }

    var text: String { "p\(partition)@\(offset)" }
  }

  struct Send {
    var process: String
    var partition: Int32
    var order: Int
    var timeUs: Int64
  }

  public func check(_ history: History) -> CheckReport {
    check(history.events)
  }

  public func check(_ events: [HistoryEvent]) -> CheckReport {
    var report = CheckReport()
    var collector = ViolationCollector(examplesPerKindMax: examplesPerKindMax)

    var sends: [String: Send] = [:]
    var acks: [String: HistoryEvent] = [:]
    var failed: Set<String> = []
    // The final log, and every position each value and each offset was seen at (all reads).
    var finalLog: [Position: String?] = [:]
    var finalPositionsByValue: [String: Set<Position>] = [:]
    var positionsByValue: [String: Set<Position>] = [:]
    var valuesByPosition: [Position: Set<String?>] = [:]
    var concurrentReads: Set<ReadKey> = []

    for (order, event) in events.enumerated() {
      switch event.kind {
      case .send:
        guard let value = event.value, sends[value] == nil else { continue }
        sends[value] = Send(
          process: event.process, partition: event.partition, order: order,
          timeUs: event.timeUs)
      case .ack:
        guard let value = event.value, event.offset != nil else { continue }
        acks[value] = event
      case .error:
        if let value = event.value { failed.insert(value) }
      case .read:
        guard let offset = event.offset else { continue }
        let position = Position(partition: event.partition, offset: offset)
        valuesByPosition[position, default: []].insert(event.value)
        if let value = event.value {
          positionsByValue[value, default: []].insert(position)
        }
        if event.isFinal == true {
          if finalLog[position] == nil {
            finalLog[position] = .some(event.value)
          }
          if let value = event.value {
            finalPositionsByValue[value, default: []].insert(position)
          }
        } else {
          concurrentReads.insert(ReadKey(position: position, value: event.value))
          report.concurrentReadCount += 1
        }
      case .note:
        continue
      }
    }

    report.sentCount = sends.count
    report.acknowledgedCount = acks.count
    report.failedCount = failed.subtracting(acks.keys).count
    report.finalRecordCount = finalLog.count
    for position in finalLog.keys {
      let range = report.finalRanges[position.partition]
      report.finalRanges[position.partition] =
        min(
          range?.lowerBound ?? position.offset, position.offset)..<max(
          range?.upperBound ?? position.offset + 1, position.offset + 1)
    }
    for value in sends.keys where acks[value] == nil {
      if !failed.contains(value) { report.indeterminateCount += 1 }
      if finalPositionsByValue[value] != nil { report.unacknowledgedButPresentCount += 1 }
    }

    // Acknowledged values: present once, where acknowledged.
    for (value, ack) in acks.sorted(by: { $0.value.timeUs < $1.value.timeUs }) {
      let ackOffset = ack.offset ?? -1
      let found = (finalPositionsByValue[value] ?? []).filter { $0.partition == ack.partition }
      if found.isEmpty {
        let elsewhere = (finalPositionsByValue[value] ?? []).sorted().map(\.text)
        let range = report.finalRanges[ack.partition].map { "\($0.lowerBound)..<\($0.upperBound)" }
        collector.add(
          .lostAcknowledged, partition: ack.partition, offset: ackOffset, value: value,
          "\(value) acknowledged to \(ack.process) at offset \(ackOffset) (t=\(ack.timeUs) us) "
            + "is not in the final read of partition \(ack.partition) (covering "
            + "\(range ?? "nothing"))"
            + (elsewhere.isEmpty ? "" : "; found at \(elsewhere.joined(separator: ", "))"))
      } else if ackOffset >= 0,
        !found.contains(Position(partition: ack.partition, offset: ackOffset))
      {
        collector.add(
          .acknowledgedOffsetMismatch, partition: ack.partition, offset: ackOffset, value: value,
          "\(value) acknowledged at offset \(ackOffset) but the final read has it at "
            + found.sorted().map(\.text).joined(separator: ", "))
      }
    }

    for (value, positions) in positionsByValue where positions.count > 1 {
      let sorted = positions.sorted()
      collector.add(
        .duplicate, partition: sorted[0].partition, offset: sorted[0].offset, value: value,
        "\(value) seen at \(sorted.map(\.text).joined(separator: ", "))")
    }

    for (position, values) in valuesByPosition where values.count > 1 {
      let names = values.map { $0 ?? "null" }.sorted()
      collector.add(
        .conflictingOffset, partition: position.partition, offset: position.offset, value: nil,
        "offset \(position.offset) seen holding \(names.joined(separator: " and "))")
    }

    for read in concurrentReads {
      let final = finalLog[read.position]
      if let final, final == read.value { continue }
      let now: String
      if let final {
        now = "the final read has \(final ?? "null") there"
      } else {
        now = "the final read has nothing there"
      }
      collector.add(
        .disappearedRead, partition: read.position.partition, offset: read.position.offset,
        value: read.value,
        "\(read.value ?? "null") was read at offset \(read.position.offset); \(now)")
    }

    for (position, values) in valuesByPosition {
      for value in values {
        guard let value else {
          collector.add(
            .unknownValue, partition: position.partition, offset: position.offset, value: nil,
            "a null value was read at offset \(position.offset)")
          continue
        }
        if sends[value] == nil {
          collector.add(
            .unknownValue, partition: position.partition, offset: position.offset, value: value,
            "\(value) was read at offset \(position.offset) but never sent")
        }
      }
    }

    checkOrder(
      sends: sends, acks: acks, finalPositionsByValue: finalPositionsByValue,
      collector: &collector)

    report.violationCounts = collector.counts
    report.violations = collector.examples.sorted {
      ($0.kind, $0.partition, $0.offset ?? -1, $0.value ?? "")
        < ($1.kind, $1.partition, $1.offset ?? -1, $1.value ?? "")
    }
    return report
  }

  struct ReadKey: Hashable {
    var position: Position
    var value: String?
  }

  /// Per producer and partition, acknowledged values must sit in the final log in send order.
  private func checkOrder(
    sends: [String: Send], acks: [String: HistoryEvent],
    finalPositionsByValue: [String: Set<Position>], collector: inout ViolationCollector
  ) {
    struct Stream: Hashable {
      var process: String
      var partition: Int32
    }
    var streams: [Stream: [(order: Int, value: String, offset: Int64)]] = [:]
    for (value, ack) in acks {
      guard let send = sends[value] else { continue }
      let offsets = (finalPositionsByValue[value] ?? []).filter { $0.partition == ack.partition }
      guard let offset = offsets.map(\.offset).min() else { continue }
      streams[Stream(process: send.process, partition: ack.partition), default: []].append(
        (send.order, value, offset))
    }
    for (stream, entries) in streams {
      var highest: (value: String, offset: Int64)?
      for entry in entries.sorted(by: { $0.order < $1.order }) {
        if let previous = highest, entry.offset < previous.offset {
          collector.add(
            .reordered, partition: stream.partition, offset: entry.offset, value: entry.value,
            "\(stream.process) sent \(entry.value) after \(previous.value), but it is at offset "
              + "\(entry.offset), before \(previous.value) at \(previous.offset)")
        }
        if entry.offset > highest?.offset ?? Int64.min {
          highest = (entry.value, entry.offset)
        }
      }
    }
  }

  /// Runs the check; when it fails, keeps the history as a JSON-lines file (see
  /// `HistoryFile.keep`), prints where, and records the path in the report.
  public func checkKeepingFailure(
    _ history: History, name: String, directory: URL? = nil
  ) -> CheckReport {
    var report = check(history)
    guard !report.isValid else { return report }
    do {
      let file = try HistoryFile.keep(history, name: name, in: directory)
      report.historyFile = file
      print("history of failing check \(name) kept at \(file.path)")
    } catch {
      print("could not keep the history of failing check \(name): \(error)")
    }
    return report
  }
}

struct ViolationCollector {
  let examplesPerKindMax: Int
  var counts: [Violation.Kind: Int] = [:]
  var examples: [Violation] = []

  mutating func add(
    _ kind: Violation.Kind, partition: Int32, offset: Int64?, value: String?, _ detail: String
  ) {
    let count = counts[kind, default: 0]
    counts[kind] = count + 1
    if count < examplesPerKindMax {
      examples.append(
        Violation(kind: kind, partition: partition, offset: offset, value: value, detail: detail))
    }
  }
}
