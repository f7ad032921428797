import Testing

@testable import StreamBusRaft

@Suite struct MessageCodecTests {
  private func sample(_ kind: Message.Kind) -> Message {
    var message = Message(kind: kind, from: 3, to: 7, term: 9)
    message.logTerm = 8
    message.index = 41
    message.commit = 40
    message.reject = kind == .appendResponse
    message.rejectHint = 12
    message.isLeaderTransfer = kind == .requestVote
    message.context = [1, 2, 3]
    message.snapshotOffset = 77
    if kind == .appendEntries {
      message.entries = [
        Entry(term: 8, index: 42, data: [5]), Entry(term: 9, index: 43, kind: .confChange),
      ]
    }
    if kind == .installSnapshot {
      message.snapshot = SnapshotChunk(
        metadata: SnapshotMetadata(index: 40, term: 8, confState: ConfState(voters: [3, 7])),
        totalBytes: 100, offset: 10, data: [9, 9, 9])
    }
    return message
  }

  @Test(arguments: Message.Kind.allCases)
  func everyKindRoundTrips(kind: Message.Kind) throws {
    let message = sample(kind)
    #expect(try Message(decoding: message.encoded()) == message)
  }

  @Test func everyTruncationIsRejected() throws {
    for kind in [Message.Kind.appendEntries, .installSnapshot] {
      let bytes = sample(kind).encoded()
      for length in 0..<bytes.count {
        #expect(throws: RaftDecodeError.self) { try Message(decoding: Array(bytes[0..<length])) }
      }
    }
  }

  @Test func forgedEntryCountIsRejectedBeforeAllocating() throws {
    var bytes = sample(.heartbeat).encoded()
    // The entry count sits right before the trailing "has snapshot" byte.
    let countOffset = bytes.count - 5
    bytes.replaceSubrange(countOffset..<countOffset + 4, with: [0xFF, 0xFF, 0xFF, 0xFF])
    #expect(throws: RaftDecodeError.self) { try Message(decoding: bytes) }
  }

  @Test func chunkBeyondTotalIsRejected() throws {
    var message = sample(.installSnapshot)
    message.snapshot?.offset = 99  // 99 + 3 bytes > 100
    #expect(throws: RaftDecodeError.self) { try Message(decoding: message.encoded()) }
  }
}

@Suite struct ProgressTests {
  @Test func inflightsFreeAndBound() {
    var inflights = Inflights(messagesMax: 3, bytesMax: 100)
    inflights.add(index: 5, bytes: 10)
    inflights.add(index: 8, bytes: 10)
    #expect(!inflights.isFull)
    inflights.add(index: 9, bytes: 10)
    #expect(inflights.isFull)
    inflights.freeUpTo(8)
    #expect(inflights.count == 1 && inflights.bytes == 10)
    inflights.add(index: 12, bytes: 90)
    #expect(inflights.isFull, "byte bound reached")
    inflights.freeFirst()
    #expect(inflights.count == 1 && !inflights.isFull)
  }

  @Test func probeSendsOneAtATime() {
    var progress = Progress(
      next: 10, isLearner: false, inflightMessagesMax: 4, inflightBytesMax: 1000)
    #expect(!progress.isPaused)
    progress.sentEntries(lastIndex: 12, entryCount: 3, bytes: 30)
    #expect(progress.isPaused)
    #expect(progress.next == 10, "probe does not advance next optimistically")
    let acknowledged = progress.acknowledge(12)
    #expect(acknowledged)
    progress.becomeReplicate()
    #expect(progress.next == 13)
    progress.sentEntries(lastIndex: 15, entryCount: 3, bytes: 30)
    #expect(progress.next == 16 && !progress.isPaused, "replicate pipelines")
  }

  @Test func staleRejectionsAreIgnored() {
    var progress = Progress(
      next: 10, isLearner: false, inflightMessagesMax: 4, inflightBytesMax: 1000)
    let staleProbe = progress.rejected(5, matchHint: 3)
    #expect(!staleProbe, "answers a probe we did not send last")
    let current = progress.rejected(9, matchHint: 3)
    #expect(current)
    #expect(progress.next == 4)
    _ = progress.acknowledge(6)
    progress.becomeReplicate()
    let belowMatch = progress.rejected(5, matchHint: 0)
    #expect(!belowMatch, "below match: stale")
  }

  /// The hint arithmetic itself saturates too (defence in depth behind the leader's
  /// check of the hint).
  @Test func progressRejectionWithMaxHintDoesNotOverflow() {
    var progress = Progress(
      next: 4, isLearner: false, inflightMessagesMax: 4, inflightBytesMax: 1 << 20)
    let accepted = progress.rejected(3, matchHint: .max)
    #expect(accepted)
    #expect(progress.next == 3)
  }
}

/// Storage that can be told to fail, to check that the node stops instead of guessing.
private final class FailingStorage: RaftLogStorage {
  struct DiskError: Error {}
  let inner: MemoryRaftStorage
  var failing = false

  init(_ inner: MemoryRaftStorage) { self.inner = inner }

  func initialState() throws -> (HardState, ConfState) { try inner.initialState() }
  func entries(from: LogIndex, to: LogIndex, maxBytes: UInt64) throws -> [Entry] {
    if failing { throw DiskError() }
    return try inner.entries(from: from, to: to, maxBytes: maxBytes)
  }
  func term(at index: LogIndex) throws -> Term {
    if failing { throw DiskError() }
    return try inner.term(at: index)
  }
  func firstIndex() throws -> LogIndex { try inner.firstIndex() }
  func lastIndex() throws -> LogIndex { try inner.lastIndex() }
  func snapshot() throws -> Snapshot { try inner.snapshot() }
}

@Suite struct NodeErrorTests {
  @Test func storageFailureStopsTheNode() throws {
    let memory = MemoryRaftStorage(
      confState: ConfState(voters: [1, 2, 3]), hardState: HardState(term: 1),
      entries: [Entry(term: 1, index: 1)])
    let storage = FailingStorage(memory)
    var node = try RaftNode(config: RaftConfig(id: 1, randomSeed: 1), storage: storage)
    storage.failing = true
    var append = Message(kind: .appendEntries, from: 2, to: 1, term: 1)
    append.index = 1
    append.logTerm = 1
    #expect(throws: FailingStorage.DiskError.self) { try node.step(append) }
    #expect(node.stopReason != nil)
    storage.failing = false
    #expect(throws: RaftError.self) { try node.tick() }
    #expect(!node.hasReady)
  }

  @Test func requestErrorsLeaveTheNodeRunning() throws {
    let storage = MemoryRaftStorage(confState: ConfState(voters: [1, 2, 3]))
    var node = try RaftNode(config: RaftConfig(id: 1, randomSeed: 1), storage: storage)
    #expect(throws: RaftError.notLeader(leaderHint: nil)) { try node.propose([1]) }
    #expect(throws: RaftError.self) { try node.readIndex(context: []) }
    #expect(node.stopReason == nil)
    try node.tick()
  }

  @Test func malformedPeerMessageIsRefusedNotFatal() throws {
    let storage = MemoryRaftStorage(confState: ConfState(voters: [1, 2, 3]))
    var node = try RaftNode(config: RaftConfig(id: 1, randomSeed: 1), storage: storage)
    var append = Message(kind: .appendEntries, from: 2, to: 1, term: 1)
    append.entries = [Entry(term: 1, index: 5)]  // does not follow index 0
    #expect(throws: RaftError.self) { try node.step(append) }
    #expect(node.stopReason == nil)
  }

  /// Only a leader that counted an acknowledgement of entries we no longer hold can say
  /// this: we lost acknowledged entries. The node keeps running and keeps its commit index
  /// (nothing proves entries 1...2 are the leader's), and tells the leader what it has.
  @Test func commitBeyondOurLogIsRefusedWithoutStopping() throws {
    let storage = MemoryRaftStorage(
      confState: ConfState(voters: [1, 2, 3]), hardState: HardState(term: 2, commit: 1),
      entries: [Entry(term: 1, index: 1), Entry(term: 2, index: 2)])
    var node = try RaftNode(config: RaftConfig(id: 1, randomSeed: 1), storage: storage)
    var heartbeat = Message(kind: .heartbeat, from: 2, to: 1, term: 2)
    heartbeat.commit = 5
    heartbeat.context = [7]
    try node.step(heartbeat)
    #expect(node.stopReason == nil)
    #expect(node.committedIndex == 1)
    let response = try #require(try node.ready().messages.first)
    #expect(response.kind == .heartbeatResponse && response.to == 2)
    #expect(response.reject && response.rejectHint == 2)
    #expect(response.context == [7], "it still acknowledges the leader (ReadIndex)")
    try node.advance()
    heartbeat.commit = 2
    try node.step(heartbeat)
    #expect(node.committedIndex == 2, "a commit within our log is taken as before")
  }
}
