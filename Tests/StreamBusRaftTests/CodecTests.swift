import Testing

@testable import StreamBusRaft

@Suite struct CodecTests {
  @Test func entryRoundTrip() throws {
    for entry in [
      Entry(term: 3, index: 7, kind: .normal, data: [1, 2, 3]),
      Entry(term: 0, index: 1),
      Entry(
        term: .max, index: .max, kind: .confChange,
        data: ConfChange(kind: .addLearner, node: 9).encoded()),
    ] {
      let bytes = entry.encoded()
      #expect(bytes.count == Int(entry.byteCount))
      #expect(try Entry(decoding: bytes) == entry)
    }
  }

  @Test func hardStateConfStateSnapshotRoundTrip() throws {
    let hardStates = [HardState(), HardState(term: 5, vote: 2, commit: 9)]
    for hardState in hardStates {
      #expect(try HardState(decoding: hardState.encoded()) == hardState)
    }
    let conf = ConfState(voters: [3, 1, 2], learners: [7])
    #expect(try ConfState(decoding: conf.encoded()) == conf)
    let snapshot = Snapshot(
      metadata: SnapshotMetadata(index: 10, term: 4, confState: conf), data: [9, 9])
    #expect(try Snapshot(decoding: snapshot.encoded()) == snapshot)
    #expect(try SnapshotMetadata(decoding: snapshot.metadata.encoded()) == snapshot.metadata)
    let change = ConfChange(kind: .removeNode, node: 4)
    #expect(try ConfChange(decoding: change.encoded()) == change)
  }

  @Test func confChangeContextRoundTrips() throws {
    let plain = ConfChange(kind: .addVoter, node: 3)
    // Without context the encoding is the original kind + node, 9 bytes.
    #expect(plain.encoded().count == 9)
    #expect(try ConfChange(decoding: plain.encoded()).context.isEmpty)
    let withContext = ConfChange(kind: .addLearner, node: 4, context: [7, 0, 9])
    let bytes = withContext.encoded()
    #expect(bytes.count == 9 + 4 + 3)
    #expect(try ConfChange(decoding: bytes) == withContext)
    for length in 10..<bytes.count {
      #expect(throws: RaftDecodeError.self) { try ConfChange(decoding: Array(bytes[0..<length])) }
    }
    #expect(throws: RaftDecodeError.self) { try ConfChange(decoding: bytes + [0]) }
    var forged = Array(bytes[0..<9])
    forged += [0xFF, 0xFF, 0xFF, 0xFF, 1]
    #expect(throws: RaftDecodeError.self) { try ConfChange(decoding: forged) }
  }

  @Test func everyTruncationIsRejected() throws {
    let bytes = Snapshot(
      metadata: SnapshotMetadata(index: 10, term: 4, confState: ConfState(voters: [1, 2])),
      data: [1, 2, 3]
    ).encoded()
    for length in 0..<bytes.count {
      #expect(throws: RaftDecodeError.self) { try Snapshot(decoding: Array(bytes[0..<length])) }
    }
    #expect(throws: RaftDecodeError.self) { try Snapshot(decoding: bytes + [0]) }
  }

  @Test func forgedCountsAndInvalidValuesAreRejected() throws {
    var encoder = RaftEncoder()
    encoder.write(UInt32.max)  // voters count far beyond the input
    #expect(throws: RaftDecodeError.self) { try ConfState(decoding: encoder.bytes) }
    #expect(throws: RaftDecodeError.self) {
      try ConfState(decoding: ConfStateBytes.duplicateVoter)
    }
    var entry = Entry(term: 1, index: 1).encoded()
    entry[16] = 9  // unknown kind
    #expect(throws: RaftDecodeError.self) { try Entry(decoding: entry) }
    var zeroIndex = Entry(term: 1, index: 1).encoded()
    zeroIndex[15] = 0
    #expect(throws: RaftDecodeError.self) { try Entry(decoding: zeroIndex) }
  }

  private enum ConfStateBytes {
    static var duplicateVoter: [UInt8] {
      var encoder = RaftEncoder()
      encoder.writeIDs([1, 1])
      encoder.writeIDs([])
      return encoder.bytes
    }
  }
}

@Suite struct MemoryStorageTests {
  private func entries(_ range: ClosedRange<LogIndex>, term: Term) -> [Entry] {
    range.map { Entry(term: term, index: $0, data: [UInt8($0 % 256)]) }
  }

  @Test func appendTruncatesConflictingSuffix() throws {
    let storage = MemoryRaftStorage(confState: ConfState(voters: [1]))
    #expect(try storage.firstIndex() == 1)
    #expect(try storage.lastIndex() == 0)
    #expect(try storage.term(at: 0) == 0)
    try storage.append(entries(1...5, term: 1))
    try storage.append(entries(3...4, term: 2))
    #expect(try storage.lastIndex() == 4)
    #expect(try storage.term(at: 2) == 1)
    #expect(try storage.term(at: 3) == 2)
    #expect(throws: RaftStorageError.unavailable) { try storage.term(at: 5) }
    #expect(throws: RaftStorageError.unavailable) {
      try storage.entries(from: 1, to: 6, maxBytes: .max)
    }
  }

  @Test func entriesRespectByteBudgetButReturnOne() throws {
    let storage = MemoryRaftStorage()
    try storage.append(entries(1...5, term: 1))
    let one = try storage.entries(from: 1, to: 6, maxBytes: 0)
    #expect(one.map(\.index) == [1])
    let budget = entries(1...1, term: 1)[0].byteCount * 3
    #expect(try storage.entries(from: 2, to: 6, maxBytes: budget).map(\.index) == [2, 3, 4])
  }

  @Test func snapshotAndCompaction() throws {
    let storage = MemoryRaftStorage(confState: ConfState(voters: [1, 2, 3]))
    try storage.append(entries(1...3, term: 1) + entries(4...6, term: 2))
    let snapshot = try storage.createSnapshot(
      at: 4, confState: ConfState(voters: [1, 2]), data: [7])
    #expect(snapshot.metadata.term == 2)
    try storage.compact(upTo: 4)
    #expect(try storage.firstIndex() == 5)
    #expect(try storage.term(at: 4) == 2)
    #expect(throws: RaftStorageError.compacted) { try storage.term(at: 3) }
    #expect(throws: RaftStorageError.compacted) {
      try storage.entries(from: 4, to: 6, maxBytes: .max)
    }
    #expect(try storage.entries(from: 5, to: 7, maxBytes: .max).map(\.index) == [5, 6])
    #expect(try storage.initialState().1 == ConfState(voters: [1, 2]))

    let newer = Snapshot(
      metadata: SnapshotMetadata(index: 10, term: 3, confState: ConfState(voters: [1])))
    try storage.applySnapshot(newer)
    #expect(try storage.firstIndex() == 11)
    #expect(try storage.lastIndex() == 10)
    #expect(try storage.term(at: 10) == 3)
    try storage.applySnapshot(snapshot)  // older: ignored
    #expect(try storage.snapshot() == newer)
  }
}
