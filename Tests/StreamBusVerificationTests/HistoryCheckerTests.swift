import Foundation
import StreamBusVerification
import Testing

/// Crafted histories: a clean one passes, and each kind of violation is caught (alone, so a
/// checker that reports everything as everything would fail these too).
struct HistoryCheckerTests {
  /// Two producers on two partitions; every value acknowledged and in the final log.
  static func cleanEvents() -> [HistoryEvent] {
    var events: [HistoryEvent] = []
    // w0 on p0: offsets 0, 1, 2; w1 on p0: offsets 3, 4; w0 on p1: offsets 0, 1.
    for (value, partition) in [
      ("w0-0", 0), ("w0-1", 0), ("w0-2", 0), ("w1-0", 0), ("w1-1", 0), ("w0-3", 1), ("w0-4", 1),
    ] {
      events.append(
        .send(value, process: String(value.prefix(2)), partition: Int32(partition)))
    }
    let placement: [(String, Int32, Int64)] = [
      ("w0-0", 0, 0), ("w0-1", 0, 1), ("w0-2", 0, 2), ("w1-0", 0, 3), ("w1-1", 0, 4),
      ("w0-3", 1, 0), ("w0-4", 1, 1),
    ]
    for (value, partition, offset) in placement {
      events.append(
        .ack(value, offset: offset, process: String(value.prefix(2)), partition: partition))
    }
    // A tailing reader saw a prefix of p0.
    events.append(.read("w0-0", offset: 0, partition: 0, process: "tail-0", isFinal: false))
    events.append(.read("w0-1", offset: 1, partition: 0, process: "tail-0", isFinal: false))
    for (value, partition, offset) in placement {
      events.append(
        .read(value, offset: offset, partition: partition, process: "final", isFinal: true))
    }
    return events
  }

  static func kinds(_ report: CheckReport) -> Set<Violation.Kind> {
    Set(report.violationCounts.keys)
  }

  @Test func cleanHistoryPasses() {
    let report = HistoryChecker().check(Self.cleanEvents())
    #expect(report.isValid, "\(report)")
    #expect(report.sentCount == 7)
    #expect(report.acknowledgedCount == 7)
    #expect(report.finalRecordCount == 7)
    #expect(report.concurrentReadCount == 2)
    #expect(report.finalRanges[0] == 0..<5)
    #expect(report.finalRanges[1] == 0..<2)
    #expect(report.description.hasPrefix("VALID"))
  }

  @Test func failedAndUnansweredValuesMayBeInTheLogOrNot() {
    var events = Self.cleanEvents()
    // Failed but written (a retry that succeeded after the producer gave up), failed and not
    // written, and sent without any outcome but written: all allowed.
    events.append(.send("w1-2", process: "w1", partition: 0))
    events.append(
      .error("w1-2", errorCode: 7, message: "REQUEST_TIMED_OUT", process: "w1", partition: 0))
    events.append(.send("w1-3", process: "w1", partition: 0))
    events.append(
      .error("w1-3", errorCode: 19, message: "NOT_ENOUGH_REPLICAS", process: "w1", partition: 0))
    events.append(.send("w1-4", process: "w1", partition: 0))
    events.append(.read("w1-2", offset: 5, partition: 0, process: "final", isFinal: true))
    events.append(.read("w1-4", offset: 6, partition: 0, process: "final", isFinal: true))
    let report = HistoryChecker().check(events)
    #expect(report.isValid, "\(report)")
    #expect(report.failedCount == 2)
    #expect(report.indeterminateCount == 1)
    #expect(report.unacknowledgedButPresentCount == 2)
  }

  @Test func lostAcknowledgedRecordIsCaught() throws {
    // The final read of p0 lacks offset 2 (w0-2, acknowledged).
    let events = Self.cleanEvents().filter {
      !($0.kind == .read && $0.isFinal == true && $0.value == "w0-2")
    }
    let report = HistoryChecker().check(events)
    #expect(Self.kinds(report) == [.lostAcknowledged], "\(report)")
    #expect(report.count(of: .lostAcknowledged) == 1)
    let violation = try #require(report.violations.first)
    #expect(violation.value == "w0-2")
    #expect(violation.partition == 0)
    #expect(violation.offset == 2)
    #expect(!report.isValid)
  }

  @Test func lostWhenTheWholePartitionIsGone() {
    let events = Self.cleanEvents().filter {
      !($0.kind == .read && $0.isFinal == true && $0.partition == 1)
    }
    let report = HistoryChecker().check(events)
    #expect(Self.kinds(report) == [.lostAcknowledged])
    #expect(report.count(of: .lostAcknowledged) == 2)
  }

  @Test func duplicateIsCaught() {
    var events = Self.cleanEvents()
    // w0-1 appended twice (a retry the broker did not recognize), the second copy at 5.
    events.append(.read("w0-1", offset: 5, partition: 0, process: "final", isFinal: true))
    let report = HistoryChecker().check(events)
    #expect(Self.kinds(report) == [.duplicate], "\(report)")
    #expect(report.violations.first?.value == "w0-1")
    #expect(report.violations.first?.detail.contains("p0@1, p0@5") == true)
  }

  @Test func reorderingWithinAProducersPartitionIsCaught() {
    // w0-1 and w0-2 swapped in the log; the acks claim the swapped offsets, so only the order
    // is wrong.
    let events = Self.cleanEvents().map { event -> HistoryEvent in
      var event = event
      guard event.kind == .ack || event.kind == .read, event.partition == 0 else { return event }
      if event.value == "w0-1" {
        event.offset = 2
      } else if event.value == "w0-2" {
        event.offset = 1
      }
      return event
    }.filter { !($0.kind == .read && $0.isFinal != true) }
    let report = HistoryChecker().check(events)
    #expect(Self.kinds(report) == [.reordered], "\(report)")
    #expect(report.count(of: .reordered) == 1)
    #expect(report.violations.first?.value == "w0-2")
  }

  @Test func interleavingOfDifferentProducersIsNotReordering() {
    var events = Self.cleanEvents()
    // w1's values landed between w0's: fine, order is per producer.
    events = events.map { event in
      var event = event
      guard event.partition == 0, event.kind != .send else { return event }
      switch event.value {
      case "w1-0": event.offset = 1
      case "w0-1": event.offset = 2
      case "w1-1": event.offset = 3
      case "w0-2": event.offset = 4
      default: break
      }
      return event
    }.filter { !($0.kind == .read && $0.isFinal != true) }
    let report = HistoryChecker().check(events)
    #expect(report.isValid, "\(report)")
  }

  @Test func offsetHoldingTwoValuesIsCaught() {
    var events = Self.cleanEvents()
    // An unacknowledged value was read at offset 5, and later the final log holds another
    // value there (the read one came from a tail that was truncated).
    events.append(.send("w1-2", process: "w1", partition: 0))
    events.append(.send("w1-3", process: "w1", partition: 0))
    events.append(.read("w1-2", offset: 5, partition: 0, process: "tail-0", isFinal: false))
    events.append(.read("w1-3", offset: 5, partition: 0, process: "final", isFinal: true))
    let report = HistoryChecker().check(events)
    #expect(report.count(of: .conflictingOffset) == 1, "\(report)")
    // The same observation is also a read that disappeared; nothing else is wrong.
    #expect(Self.kinds(report) == [.conflictingOffset, .disappearedRead])
    let conflict = report.violations.first { $0.kind == .conflictingOffset }
    #expect(conflict?.offset == 5)
    #expect(conflict?.detail.contains("w1-2 and w1-3") == true)
  }

  @Test func readThatIsGoneFromTheFinalLogIsCaught() {
    var events = Self.cleanEvents()
    events.append(.send("w1-2", process: "w1", partition: 0))
    // Read at 5 by a tailing reader, but the final log ends at 5.
    events.append(.read("w1-2", offset: 5, partition: 0, process: "tail-0", isFinal: false))
    let report = HistoryChecker().check(events)
    #expect(Self.kinds(report) == [.disappearedRead], "\(report)")
    #expect(report.violations.first?.detail.contains("nothing there") == true)
  }

  @Test func acknowledgedAtADifferentOffsetIsCaught() {
    let events = Self.cleanEvents().map { event -> HistoryEvent in
      var event = event
      if event.kind == .ack && event.value == "w0-4" { event.offset = 7 }
      return event
    }
    let report = HistoryChecker().check(events)
    #expect(Self.kinds(report) == [.acknowledgedOffsetMismatch], "\(report)")
    #expect(report.violations.first?.partition == 1)
  }

  @Test func acknowledgementWithoutOffsetIsOnlyCheckedForPresence() {
    var events = Self.cleanEvents().map { event -> HistoryEvent in
      var event = event
      if event.kind == .ack && event.value == "w0-4" { event.offset = -1 }
      return event
    }
    #expect(HistoryChecker().check(events).isValid)
    events.removeAll { $0.kind == .read && $0.value == "w0-4" }
    let report = HistoryChecker().check(events)
    #expect(Self.kinds(report) == [.lostAcknowledged], "\(report)")
  }

  @Test func valueNobodySentIsCaught() {
    var events = Self.cleanEvents()
    events.append(.read("w9-9", offset: 2, partition: 1, process: "final", isFinal: true))
    events.append(.read(nil, offset: 3, partition: 1, process: "final", isFinal: true))
    let report = HistoryChecker().check(events)
    #expect(Self.kinds(report) == [.unknownValue], "\(report)")
    #expect(report.count(of: .unknownValue) == 2)
  }

  @Test func examplesAreBoundedButCountsAreNot() {
    var events: [HistoryEvent] = []
    for index in 0..<50 {
      events.append(.send("w0-\(index)", process: "w0", partition: 0))
      events.append(.ack("w0-\(index)", offset: Int64(index), process: "w0", partition: 0))
    }
    let report = HistoryChecker(examplesPerKindMax: 5).check(events)
    #expect(report.count(of: .lostAcknowledged) == 50)
    #expect(report.violations.count == 5)
    #expect(report.description.contains("lostAcknowledged: 50"))
  }
}
