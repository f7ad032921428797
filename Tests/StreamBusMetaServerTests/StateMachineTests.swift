import Logging
import StreamBusMetaServer
import StreamBusMetadata
import StreamBusRaftHost
import Testing

struct StateMachineTests {
  static func topicBatch(_ name: String, id: TopicID) -> [UInt8] {
    MetadataRecord.encodeBatch([.topicCreated(name: name, topicID: id)])
  }

  static func entry(_ index: UInt64, _ data: [UInt8]) -> CommittedEntry {
    CommittedEntry(index: index, term: 1, data: data)
  }

  static func machine(tail: Int = 100) -> MetadataStateMachine {
    MetadataStateMachine(tailBatchesMax: tail, logger: Logger(label: "test"))
  }

  @Test func appliesBatchesAndServesThemAfterAnOffset() throws {
    let machine = Self.machine()
    try machine.apply(entries: [
      Self.entry(2, Self.topicBatch("a", id: 1)), Self.entry(3, Self.topicBatch("b", id: 2)),
      Self.entry(5, Self.topicBatch("c", id: 3)),
    ])
    #expect(machine.appliedOffset == 5)
    #expect(machine.image.topicIDsByName.keys.sorted() == ["a", "b", "c"])
    guard case .batches(let all, let applied) = machine.fetch(after: -1, maxBytes: 1 << 20) else {
      Issue.record("expected batches")
      return
    }
    #expect(all.map(\.offset) == [2, 3, 5])
    #expect(applied == 5)
    guard case .batches(let later, _) = machine.fetch(after: 3, maxBytes: 1 << 20) else {
      Issue.record("expected batches")
      return
    }
    #expect(later.map(\.offset) == [5])
    // At least one batch even when it alone exceeds maxBytes; then the byte bound holds.
    guard case .batches(let bounded, _) = machine.fetch(after: 0, maxBytes: 1) else {
      Issue.record("expected batches")
      return
    }
    #expect(bounded.map(\.offset) == [2])
  }

  @Test func fetchBehindTheTailGetsTheSnapshot() throws {
    let machine = Self.machine(tail: 2)
    for index in 1...5 {
      try machine.apply(entries: [
        Self.entry(UInt64(index), Self.topicBatch("t\(index)", id: Int64(index)))
      ])
    }
    guard case .batches(let kept, _) = machine.fetch(after: 3, maxBytes: 1 << 20) else {
      Issue.record("offset 3 is inside the tail")
      return
    }
    #expect(kept.map(\.offset) == [4, 5])
    guard case .snapshot(let offset, let data) = machine.fetch(after: 2, maxBytes: 1 << 20) else {
      Issue.record("offset 2 is older than the tail")
      return
    }
    #expect(offset == 5)
    let image = try MetadataImage(snapshot: data)
    #expect(image.topics.count == 5)
    #expect(image == machine.image)
  }

  @Test func aBatchThatDoesNotApplyIsSkippedAndRemembered() throws {
    let machine = Self.machine()
    try machine.apply(entries: [
      Self.entry(1, Self.topicBatch("a", id: 1)),
      // Deleting a topic that does not exist does not replay.
      Self.entry(2, MetadataRecord.encodeBatch([.topicDeleted(topicID: 99)])),
      Self.entry(3, [0xff, 0x00, 0x13]),
      Self.entry(4, Self.topicBatch("b", id: 2)),
    ])
    #expect(machine.appliedOffset == 4)
    #expect(machine.image.topics.count == 2)
    #expect(machine.rejection(at: 2) != nil)
    #expect(machine.rejection(at: 3) != nil)
    #expect(machine.rejection(at: 4) == nil)
    guard case .batches(let batches, _) = machine.fetch(after: 0, maxBytes: 1 << 20) else {
      Issue.record("expected batches")
      return
    }
    #expect(batches.map(\.offset) == [1, 4])
  }

  @Test func snapshotRestoresAtTheRaftIndex() throws {
    let source = Self.machine()
    try source.apply(entries: [Self.entry(3, Self.topicBatch("a", id: 1))])
    let snapshot = try source.snapshot()
    let restored = Self.machine()
    // Raft index 7: entries 4...7 were no-ops and membership changes.
    try restored.restore(from: snapshot, index: 7)
    #expect(restored.appliedOffset == 7)
    #expect(restored.image.topic(named: "a") != nil)
    // A fetch from before the snapshot gets the snapshot; from its index, what follows.
    #expect(
      {
        if case .snapshot = restored.fetch(after: 3, maxBytes: 100) { return true }
        return false
      }())
    try restored.apply(entries: [Self.entry(8, Self.topicBatch("b", id: 2))])
    guard case .batches(let batches, _) = restored.fetch(after: 7, maxBytes: 1 << 20) else {
      Issue.record("expected batches")
      return
    }
    #expect(batches.map(\.offset) == [8])
    #expect(throws: MetadataError.self) { try restored.restore(from: [1, 2, 3], index: 9) }
  }

  @Test func longPollWakesOnApplyAndTimesOut() async throws {
    let machine = Self.machine()
    let start = ContinuousClock.now
    await machine.waitForOffset(above: 0, deadline: .now + .milliseconds(50))
    #expect(ContinuousClock.now - start >= .milliseconds(45))

    let waiter = Task {
      await machine.waitForOffset(above: 0, deadline: .now + .seconds(20))
      return ContinuousClock.now
    }
    try await Task.sleep(for: .milliseconds(50))
    try machine.apply(entries: [Self.entry(1, Self.topicBatch("a", id: 1))])
    let woke = await waiter.value
    #expect(woke - start < .seconds(5))

    let closing = Task { await machine.waitForOffset(above: 10, deadline: .now + .seconds(20)) }
    try await Task.sleep(for: .milliseconds(20))
    machine.close()
    await closing.value
  }
}
