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

  public func check(_ history: History) -> CheckReport {
    check(history.events)
  }

  /// Histories have a million events; values and processes are interned to integers so the
  /// check is a few integer-keyed lookups per event (it runs in debug builds in tests).
  public func check(_ events: [HistoryEvent]) -> CheckReport {
    var report = CheckReport()
    var collector = ViolationCollector(examplesPerKindMax: examplesPerKindMax)
    var state = CheckState()

    for (order, event) in events.enumerated() {
      switch event.kind {
      case .send:
        guard let value = event.value else { continue }
        let id = Int(state.intern(value))
        guard state.values[id].sendOrder < 0 else { continue }
        state.values[id].sendOrder = order
        state.values[id].sendProcess = state.internProcess(event.process)
      case .ack:
        guard let value = event.value, let offset = event.offset else { continue }
        let id = Int(state.intern(value))
        state.values[id].ackOffset = offset
        state.values[id].ackPartition = event.partition
        state.values[id].ackTimeUs = event.timeUs
        state.values[id].ackProcess = state.internProcess(event.process)
      case .error:
        guard let value = event.value else { continue }
        state.values[Int(state.intern(value))].failed = true
      case .read:
        guard let offset = event.offset else { continue }
        let id = event.value.map { state.intern($0) } ?? CheckState.nullValue
        state.read(
          id, at: Position(partition: event.partition, offset: offset),
          isFinal: event.isFinal == true)
      case .note:
        continue
      }
    }

    report.finalRecordCount = state.finalLog.count
    report.concurrentReadCount = state.concurrentReads.count
    for position in state.finalLog.keys {
      let range = report.finalRanges[position.partition]
      report.finalRanges[position.partition] =
        min(
          range?.lowerBound ?? position.offset, position.offset)..<max(
          range?.upperBound ?? position.offset + 1, position.offset + 1)
    }

    for id in state.values.indices {
      let entry = state.values[id]
      let name = state.names[id]
      if entry.sendOrder >= 0 { report.sentCount += 1 }
      if entry.ackPartition >= 0 {
        report.acknowledgedCount += 1
        checkAcknowledged(id, state: state, report: report, collector: &collector)
      } else {
        if entry.failed { report.failedCount += 1 }
        if entry.sendOrder >= 0 && !entry.failed { report.indeterminateCount += 1 }
        if entry.sendOrder >= 0 && entry.firstFinal != nil {
          report.unacknowledgedButPresentCount += 1
        }
      }
      if let positions = state.extraPositions[Int32(id)] {
        let sorted = Set(positions).sorted()
        collector.add(
          .duplicate, partition: sorted[0].partition, offset: sorted[0].offset, value: name,
          "\(name) seen at \(sorted.map(\.text).joined(separator: ", "))")
      }
      if entry.sendOrder < 0, let position = entry.firstSeen {
        collector.add(
          .unknownValue, partition: position.partition, offset: position.offset, value: name,
          "\(name) was read at offset \(position.offset) but never sent")
      }
    }
    for position in state.nullReads.sorted() {
      collector.add(
        .unknownValue, partition: position.partition, offset: position.offset, value: nil,
        "a null value was read at offset \(position.offset)")
    }

    for (position, ids) in state.conflicts.sorted(by: { $0.key < $1.key }) {
      let names = ids.map { state.name($0) }.sorted()
      collector.add(
        .conflictingOffset, partition: position.partition, offset: position.offset, value: nil,
        "offset \(position.offset) seen holding \(names.joined(separator: " and "))")
    }

    var reportedReads: Set<ReadKey> = []
    for read in state.concurrentReads {
      let final = state.finalLog[read.position]
      if final == read.value { continue }
      guard reportedReads.insert(read).inserted else { continue }
      let now =
        final.map { "the final read has \(state.name($0)) there" }
        ?? "the final read has nothing there"
      let readName = state.name(read.value)
      collector.add(
        .disappearedRead, partition: read.position.partition, offset: read.position.offset,
        value: read.value == CheckState.nullValue ? nil : readName,
        "\(readName) was read at offset \(read.position.offset); \(now)")
    }

    checkOrder(state: state, collector: &collector)

    report.violationCounts = collector.counts
    report.violations = collector.examples.sorted {
      ($0.kind, $0.partition, $0.offset ?? -1, $0.value ?? "")
        < ($1.kind, $1.partition, $1.offset ?? -1, $1.value ?? "")
    }
    return report
  }

  struct ReadKey: Hashable {
    var position: Position
    var value: Int32
  }

  /// An acknowledged value is in the final log of its partition, at its acknowledged offset.
  private func checkAcknowledged(
    _ id: Int, state: CheckState, report: CheckReport, collector: inout ViolationCollector
  ) {
    let entry = state.values[id]
    let name = state.names[id]
    let found = state.finalPositions(of: id).filter { $0.partition == entry.ackPartition }
    let process = state.processNames[Int(max(entry.ackProcess, 0))]
    if found.isEmpty {
      let elsewhere = state.finalPositions(of: id).sorted().map(\.text)
      let range = report.finalRanges[entry.ackPartition].map {
        "\($0.lowerBound)..<\($0.upperBound)"
      }
      collector.add(
        .lostAcknowledged, partition: entry.ackPartition, offset: entry.ackOffset, value: name,
        "\(name) acknowledged to \(process) at offset \(entry.ackOffset) (t=\(entry.ackTimeUs) us) "
          + "is not in the final read of partition \(entry.ackPartition) (covering "
          + "\(range ?? "nothing"))"
          + (elsewhere.isEmpty ? "" : "; found at \(elsewhere.joined(separator: ", "))"))
    } else if entry.ackOffset >= 0,
      !found.contains(Position(partition: entry.ackPartition, offset: entry.ackOffset))
    {
      collector.add(
        .acknowledgedOffsetMismatch, partition: entry.ackPartition, offset: entry.ackOffset,
        value: name,
        "\(name) acknowledged at offset \(entry.ackOffset) but the final read has it at "
          + found.sorted().map(\.text).joined(separator: ", "))
    }
  }

  /// Per producer and partition, acknowledged values must sit in the final log in send order.
  private func checkOrder(state: CheckState, collector: inout ViolationCollector) {
    struct Stream: Hashable {
      var process: Int32
      var partition: Int32
    }
    var streams: [Stream: [(order: Int, id: Int, offset: Int64)]] = [:]
    for id in state.values.indices {
      let entry = state.values[id]
      guard entry.ackPartition >= 0, entry.sendOrder >= 0 else { continue }
      let offsets = state.finalPositions(of: id).filter { $0.partition == entry.ackPartition }
      guard let offset = offsets.map(\.offset).min() else { continue }
      streams[Stream(process: entry.sendProcess, partition: entry.ackPartition), default: []]
        .append((entry.sendOrder, id, offset))
    }
    for (stream, entries) in streams {
      var highest: (id: Int, offset: Int64)?
      for entry in entries.sorted(by: { $0.order < $1.order }) {
        if let previous = highest, entry.offset < previous.offset {
          let name = state.names[entry.id]
          let previousName = state.names[previous.id]
          collector.add(
            .reordered, partition: stream.partition, offset: entry.offset, value: name,
            "\(state.processNames[Int(stream.process)]) sent \(name) after \(previousName), but "
              + "it is at offset \(entry.offset), before \(previousName) at \(previous.offset)")
        }
        if entry.offset > highest?.offset ?? Int64.min {
          highest = (entry.id, entry.offset)
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

/// The checker's working state: every value interned to an index into `values`.
struct CheckState {
  static let nullValue: Int32 = -1

  struct ValueEntry {
    var sendOrder = -1
    var sendProcess: Int32 = -1
    var ackOffset: Int64 = -1
    /// -1: not acknowledged.
    var ackPartition: Int32 = -1
    var ackTimeUs: Int64 = 0
    var ackProcess: Int32 = -1
    var failed = false
    /// Where any read (final or not) first saw the value, and where the final read did.
    var firstSeen: HistoryChecker.Position?
    var firstFinal: HistoryChecker.Position?
  }

  var ids: [String: Int32] = [:]
  var names: [String] = []
  var values: [ValueEntry] = []
  var processIDs: [String: Int32] = [:]
  var processNames: [String] = []
  /// Offset -> value of the final read (first read of each offset).
  var finalLog: [HistoryChecker.Position: Int32] = [:]
  /// Offset -> the first value any read saw there; later different values go to `conflicts`.
  var seenAt: [HistoryChecker.Position: Int32] = [:]
  var conflicts: [HistoryChecker.Position: Set<Int32>] = [:]
  /// Values seen at more than one position: all their positions (rare, so kept aside).
  var extraPositions: [Int32: [HistoryChecker.Position]] = [:]
  var extraFinalPositions: [Int32: [HistoryChecker.Position]] = [:]
  var concurrentReads: [HistoryChecker.ReadKey] = []
  var nullReads: Set<HistoryChecker.Position> = []

  mutating func intern(_ value: String) -> Int32 {
    if let id = ids[value] { return id }
    let id = Int32(names.count)
    ids[value] = id
    names.append(value)
    values.append(ValueEntry())
    return id
  }

  mutating func internProcess(_ process: String) -> Int32 {
    if let id = processIDs[process] { return id }
    let id = Int32(processNames.count)
    processIDs[process] = id
    processNames.append(process)
    return id
  }

  func name(_ id: Int32) -> String {
    id == Self.nullValue ? "null" : names[Int(id)]
  }

  mutating func read(_ id: Int32, at position: HistoryChecker.Position, isFinal: Bool) {
    if let seen = seenAt[position] {
      if seen != id {
        conflicts[position, default: [seen]].insert(id)
      }
    } else {
      seenAt[position] = id
    }
    if id == Self.nullValue {
      nullReads.insert(position)
    } else {
      let index = Int(id)
      if let first = values[index].firstSeen {
        if first != position {
          var positions = extraPositions[id] ?? [first]
          if !positions.contains(position) { positions.append(position) }
          extraPositions[id] = positions
        }
      } else {
        values[index].firstSeen = position
      }
      if isFinal {
        if let first = values[index].firstFinal {
          if first != position {
            var positions = extraFinalPositions[id] ?? [first]
            if !positions.contains(position) { positions.append(position) }
            extraFinalPositions[id] = positions
          }
        } else {
          values[index].firstFinal = position
        }
      }
    }
    if isFinal {
      if finalLog[position] == nil { finalLog[position] = id }
    } else {
      concurrentReads.append(HistoryChecker.ReadKey(position: position, value: id))
    }
  }

  /// Every position the final read had the value at.
  func finalPositions(of id: Int) -> [HistoryChecker.Position] {
    if let extra = extraFinalPositions[Int32(id)] { return extra }
    return values[id].firstFinal.map { [$0] } ?? []
  }
}
