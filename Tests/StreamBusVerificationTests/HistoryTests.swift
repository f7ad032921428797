import Foundation
import StreamBusVerification
import Testing

struct HistoryTests {
  @Test func concurrentRecordingKeepsEveryEventInTimeOrder() async {
    let history = History(topic: "t")
    await withTaskGroup(of: Void.self) { group in
      for worker in 0..<8 {
        group.addTask {
          for sequence in 0..<500 {
            let value = ValueID.make(worker: worker, sequence: sequence)
            history.recordSend(value, process: "w\(worker)", partition: Int32(worker % 3))
            history.recordAck(
              value, offset: Int64(sequence), process: "w\(worker)", partition: Int32(worker % 3))
          }
        }
      }
    }
    let events = history.events
    #expect(events.count == 8 * 500 * 2)
    #expect(Set(events.compactMap(\.value)).count == 8 * 500)
    // Recording order and timestamps agree.
    #expect(zip(events, events.dropFirst()).allSatisfy { $0.timeUs <= $1.timeUs })
  }

  @Test func jsonLinesRoundTripAndKeptFile() throws {
    let history = History(topic: "orders")
    history.recordNote("fault: kill -9 broker 2", process: "nemesis", partition: 1)
    history.recordSend("w0-0", process: "w0", partition: 1)
    history.recordAck("w0-0", offset: 41, process: "w0", partition: 1)
    history.recordSend("w0-1", process: "w0", partition: 1)
    history.recordError(
      "w0-1", errorCode: 19, message: "NOT_ENOUGH_REPLICAS", process: "w0", partition: 1)
    history.record(
      contentsOf: [
        .read("w0-0", offset: 41, partition: 1, process: "final", isFinal: true),
        .read(nil, offset: 42, partition: 1, process: "final", isFinal: true),
      ])

    let data = try HistoryFile.jsonLines(history)
    let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
    #expect(lines.count == 1 + 7)
    #expect(lines[0].contains("\"topic\":\"orders\""))
    #expect(lines[3].contains("\"offset\":41"))
    // Absent fields are left out, so a line stays short.
    #expect(!lines[2].contains("errorCode"))

    let parsed = try HistoryFile.parse(data)
    #expect(parsed.topic == "orders")
    #expect(parsed.events == history.events)
    #expect(
      abs(parsed.startedAt.timeIntervalSince(history.startedAt)) < 1,
      "ISO 8601 keeps whole seconds")

    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "history-test-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    let file = try HistoryFile.keep(history, name: "round trip/1", in: directory)
    #expect(file.lastPathComponent.hasPrefix("round_trip_1-"))
    #expect(try HistoryFile.load(from: file).events == history.events)
  }

  @Test func failingCheckKeepsTheHistory() throws {
    let history = History(topic: "t")
    history.recordSend("w0-0", process: "w0", partition: 0)
    history.recordAck("w0-0", offset: 0, process: "w0", partition: 0)
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "history-test-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }

    let report = HistoryChecker().checkKeepingFailure(history, name: "lost", directory: directory)
    #expect(report.count(of: .lostAcknowledged) == 1)
    let file = try #require(report.historyFile)
    #expect(FileManager.default.fileExists(atPath: file.path))
    #expect(report.description.contains(file.path))

    // A passing check writes nothing.
    history.record(.read("w0-0", offset: 0, partition: 0, process: "final", isFinal: true))
    let passing = HistoryChecker().checkKeepingFailure(history, name: "ok", directory: directory)
    #expect(passing.isValid)
    #expect(passing.historyFile == nil)
    let kept = try FileManager.default.contentsOfDirectory(atPath: directory.path)
    #expect(kept.count == 1)
  }

  @Test func malformedFilesAreRejectedWithTheLine() {
    let header = #"{"history":1,"startedAt":"2026-11-27T13:00:00Z","topic":"t"}"#
    #expect(throws: HistoryFile.FormatError.self) { try HistoryFile.parse(Data()) }
    #expect(throws: HistoryFile.FormatError.self) {
      try HistoryFile.parse(
        Data(#"{"history":2,"startedAt":"2026-11-27T13:00:00Z","topic":"t"}"#.utf8))
    }
    do {
      _ = try HistoryFile.parse(Data((header + "\n{\"kind\":\"send\"}\n").utf8))
      Issue.record("an event without its fields parsed")
    } catch let error as HistoryFile.FormatError {
      #expect(error.description.contains("line 2"))
    } catch {
      Issue.record("unexpected error \(error)")
    }
  }

  @Test func valueIDsSurviveEncodingAndPadding() {
    let id = ValueID.make(worker: 3, sequence: 1_041)
    #expect(id == "w3-1041")
    let padded = ValueID.encode(id, paddedTo: 32)
    #expect(padded.count == 32)
    #expect(ValueID.decode(padded) == id)
    #expect(ValueID.encode(id, paddedTo: 2).count == id.utf8.count)
    #expect(ValueID.decode(nil) == nil)
    #expect(ValueID.decode([0xff, 0x00, 0x2e, 0x41]) == "hex:ff00")
  }

  @Test func ackGapsMeasureUnavailability() {
    let events: [HistoryEvent] = [
      .ack("a", offset: 0, process: "w0", partition: 0, timeUs: 1_000),
      .ack("b", offset: 1, process: "w0", partition: 0, timeUs: 2_000),
      .ack("x", offset: 0, process: "w0", partition: 1, timeUs: 3_000),
      .ack("c", offset: 2, process: "w0", partition: 0, timeUs: 9_000),
      .ack("d", offset: 3, process: "w0", partition: 0, timeUs: 9_500),
    ]
    let history = History(topic: "t", events: events)
    let gap = history.longestAckGap(partition: 0, fromUs: 0, toUs: 10_000)
    #expect(gap.startUs == 2_000 && gap.endUs == 9_000)
    #expect(history.firstAck(partition: 0, atOrAfterUs: 2_500)?.value == "c")
    #expect(history.firstAck(partition: 1, atOrAfterUs: 3_001) == nil)
  }
}
