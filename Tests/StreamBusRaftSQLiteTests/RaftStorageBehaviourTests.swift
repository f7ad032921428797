import StreamBusRaft
import StreamBusRaftSQLite
import Testing

/// The storage contract, run against every implementation: the core must not be able to tell
/// them apart. Every test also reopens the storage, which for SQLite means reading from the file.
@Suite struct RaftStorageBehaviourTests {
  @Test(arguments: StorageKind.allCases)
  func emptyStorageHasSentinelOnly(kind: StorageKind) throws {
    let harness = try StorageHarness(kind)
    defer { harness.close() }
    for _ in 0..<2 {
      let storage = harness.storage
      let (hardState, confState) = try storage.initialState()
      #expect(hardState == .empty)
      #expect(confState == ConfState(voters: [1, 2, 3]))
      #expect(try storage.firstIndex() == 1)
      #expect(try storage.lastIndex() == 0)
      #expect(try storage.term(at: 0) == 0)
      #expect(throws: RaftStorageError.unavailable) { try storage.term(at: 1) }
      #expect(try storage.entries(from: 1, to: 1, maxBytes: .max).isEmpty)
      #expect(throws: RaftStorageError.unavailable) {
        try storage.entries(from: 1, to: 2, maxBytes: .max)
      }
      #expect(throws: RaftStorageError.compacted) {
        try storage.entries(from: 0, to: 1, maxBytes: .max)
      }
      #expect(try storage.snapshot().isEmpty)
      try harness.reopen()
    }
  }

  @Test(arguments: StorageKind.allCases)
  func appendedEntriesReadBackWithTerms(kind: StorageKind) throws {
    let harness = try StorageHarness(kind)
    defer { harness.close() }
    let first = makeEntries(1...5, term: 1)
    let second = makeEntries(6...9, term: 2)
    try harness.storage.append(first)
    try harness.storage.append(second)
    try harness.storage.append([])
    for _ in 0..<2 {
      let storage = harness.storage
      #expect(try storage.firstIndex() == 1)
      #expect(try storage.lastIndex() == 9)
      #expect(try storage.entries(from: 1, to: 10, maxBytes: .max) == first + second)
      #expect(try storage.entries(from: 4, to: 7, maxBytes: .max) == Array((first + second)[3..<6]))
      #expect(try (0...9).map { try storage.term(at: $0) } == [0, 1, 1, 1, 1, 1, 2, 2, 2, 2])
      #expect(throws: RaftStorageError.unavailable) { try storage.term(at: 10) }
      #expect(throws: RaftStorageError.unavailable) {
        try storage.entries(from: 5, to: 11, maxBytes: .max)
      }
      try harness.reopen()
    }
  }

  @Test(arguments: StorageKind.allCases)
  func byteLimitStopsEarlyButReturnsAtLeastOneEntry(kind: StorageKind) throws {
    let harness = try StorageHarness(kind)
    defer { harness.close() }
    let entries = makeEntries(1...10, term: 1, payloadBytes: 100)
    try harness.storage.append(entries)
    for _ in 0..<2 {
      let storage = harness.storage
      let oneEntryBytes = entries[0].byteCount
      #expect(try storage.entries(from: 1, to: 11, maxBytes: 0) == [entries[0]])
      #expect(try storage.entries(from: 3, to: 11, maxBytes: oneEntryBytes) == [entries[2]])
      #expect(
        try storage.entries(from: 2, to: 11, maxBytes: oneEntryBytes * 3 + 1)
          == Array(entries[1..<4]))
      #expect(
        try storage.entries(from: 1, to: 3, maxBytes: oneEntryBytes * 5) == Array(entries[0..<2]))
      try harness.reopen()
    }
  }

  @Test(arguments: StorageKind.allCases)
  func conflictingAppendReplacesTheSuffix(kind: StorageKind) throws {
    let harness = try StorageHarness(kind)
    defer { harness.close() }
    try harness.storage.append(makeEntries(1...10, term: 1))
    // A new leader of term 3 overwrites everything from index 6 on, with a shorter log.
    let replacement = makeEntries(6...7, term: 3, payloadBytes: 3)
    try harness.storage.append(replacement)
    for _ in 0..<2 {
      let storage = harness.storage
      #expect(try storage.lastIndex() == 7)
      #expect(try storage.term(at: 7) == 3)
      #expect(try storage.term(at: 5) == 1)
      #expect(throws: RaftStorageError.unavailable) { try storage.term(at: 8) }
      #expect(
        try storage.entries(from: 1, to: 8, maxBytes: .max)
          == makeEntries(1...5, term: 1) + replacement)
      try harness.reopen()
    }
    // Appending right after the end, and overwriting the very first entry, both work.
    try harness.storage.append(makeEntries(8...8, term: 3))
    try harness.storage.append(makeEntries(1...2, term: 4))
    try harness.reopen()
    #expect(try harness.storage.lastIndex() == 2)
    #expect(
      try harness.storage.entries(from: 1, to: 3, maxBytes: .max) == makeEntries(1...2, term: 4))
  }

  @Test(arguments: StorageKind.allCases)
  func compactionMakesThePrefixUnavailable(kind: StorageKind) throws {
    let harness = try StorageHarness(kind)
    defer { harness.close() }
    let entries = makeEntries(1...10, term: 1) + makeEntries(11...12, term: 2)
    try harness.storage.append(entries)
    let snapshot = try harness.storage.createSnapshot(
      at: 8, confState: ConfState(voters: [1, 2], learners: [4]), data: [7, 7, 7])
    #expect(
      snapshot.metadata
        == SnapshotMetadata(index: 8, term: 1, confState: ConfState(voters: [1, 2], learners: [4])))
    try harness.storage.compact(upTo: 6)
    for _ in 0..<2 {
      let storage = harness.storage
      #expect(try storage.firstIndex() == 7)
      #expect(try storage.lastIndex() == 12)
      #expect(try storage.term(at: 6) == 1)
      #expect(throws: RaftStorageError.compacted) { try storage.term(at: 5) }
      #expect(throws: RaftStorageError.compacted) {
        try storage.entries(from: 6, to: 8, maxBytes: .max)
      }
      #expect(try storage.entries(from: 7, to: 13, maxBytes: .max) == Array(entries[6...]))
      #expect(try storage.snapshot() == snapshot)
      #expect(try storage.initialState().1 == ConfState(voters: [1, 2], learners: [4]))
      try harness.reopen()
    }
    // Compacting to an earlier point is a no-op; compacting up to the snapshot works.
    try harness.storage.compact(upTo: 3)
    try harness.storage.compact(upTo: 8)
    try harness.reopen()
    #expect(try harness.storage.firstIndex() == 9)
    #expect(try harness.storage.term(at: 8) == 1)
    #expect(try harness.storage.entries(from: 9, to: 13, maxBytes: .max) == Array(entries[8...]))
    // A snapshot at or before the stored one returns the stored one.
    #expect(try harness.storage.createSnapshot(at: 8, confState: ConfState(), data: []) == snapshot)
  }

  @Test(arguments: StorageKind.allCases)
  func appliedSnapshotReplacesTheLog(kind: StorageKind) throws {
    let harness = try StorageHarness(kind)
    defer { harness.close() }
    try harness.storage.append(makeEntries(1...5, term: 1))
    let snapshot = Snapshot(
      metadata: SnapshotMetadata(index: 20, term: 4, confState: ConfState(voters: [2, 5])),
      data: Array(repeating: 0xab, count: 1_000))
    try harness.storage.applySnapshot(snapshot)
    // An older snapshot arriving late changes nothing.
    try harness.storage.applySnapshot(
      Snapshot(metadata: SnapshotMetadata(index: 10, term: 2), data: [1]))
    for _ in 0..<2 {
      let storage = harness.storage
      #expect(try storage.snapshot() == snapshot)
      #expect(try storage.firstIndex() == 21)
      #expect(try storage.lastIndex() == 20)
      #expect(try storage.term(at: 20) == 4)
      #expect(throws: RaftStorageError.compacted) { try storage.term(at: 19) }
      #expect(throws: RaftStorageError.compacted) {
        try storage.entries(from: 5, to: 6, maxBytes: .max)
      }
      #expect(try storage.entries(from: 21, to: 21, maxBytes: .max).isEmpty)
      #expect(try storage.initialState().1 == ConfState(voters: [2, 5]))
      try harness.reopen()
    }
    try harness.storage.append(makeEntries(21...23, term: 5))
    try harness.reopen()
    #expect(
      try harness.storage.entries(from: 21, to: 24, maxBytes: .max) == makeEntries(21...23, term: 5)
    )
  }

  @Test(arguments: StorageKind.allCases)
  func hardStateRoundTrips(kind: StorageKind) throws {
    let harness = try StorageHarness(kind)
    defer { harness.close() }
    let voted = HardState(term: 7, vote: 3, commit: 0)
    try harness.storage.setHardState(voted)
    try harness.reopen()
    #expect(try harness.storage.initialState().0 == voted)
    let unvoted = HardState(term: 8, vote: nil, commit: 0)
    try harness.storage.setHardState(unvoted)
    try harness.reopen()
    #expect(try harness.storage.initialState().0 == unvoted)
    let large = HardState(term: 9, vote: NodeID.max, commit: 5)
    try harness.storage.setHardState(large)
    try harness.reopen()
    #expect(try harness.storage.initialState().0 == large)
  }

  @Test(arguments: StorageKind.allCases)
  func persistWritesAWholeReady(kind: StorageKind) throws {
    let harness = try StorageHarness(kind)
    defer { harness.close() }
    try harness.storage.persist(
      hardState: HardState(term: 2, vote: 1, commit: 3), entries: makeEntries(1...4, term: 2),
      snapshot: nil)
    // A follower far behind: snapshot, then the entries after it, then the new hard state.
    let snapshot = Snapshot(
      metadata: SnapshotMetadata(index: 50, term: 3, confState: ConfState(voters: [1, 2, 3])),
      data: [1, 2, 3])
    try harness.storage.persist(
      hardState: HardState(term: 3, vote: nil, commit: 52),
      entries: makeEntries(51...53, term: 3), snapshot: snapshot)
    try harness.reopen()
    let storage = harness.storage
    #expect(try storage.initialState().0 == HardState(term: 3, vote: nil, commit: 52))
    #expect(try storage.snapshot() == snapshot)
    #expect(try storage.firstIndex() == 51)
    #expect(try storage.lastIndex() == 53)
    #expect(try storage.entries(from: 51, to: 54, maxBytes: .max) == makeEntries(51...53, term: 3))
    // Nothing to persist is fine.
    try storage.persist(hardState: nil, entries: [], snapshot: nil)
    #expect(try storage.lastIndex() == 53)
  }

  @Test(arguments: StorageKind.allCases)
  func emptyAndLargePayloadsRoundTrip(kind: StorageKind) throws {
    let harness = try StorageHarness(kind)
    defer { harness.close() }
    let entries = [
      Entry(term: 1, index: 1, kind: .normal, data: []),
      Entry(term: 1, index: 2, kind: .confChange, data: [0]),
      Entry(
        term: 1, index: 3, kind: .normal,
        data: (0..<70_000).map { UInt8(truncatingIfNeeded: $0 * 31) }),
    ]
    try harness.storage.append(entries)
    try harness.reopen()
    #expect(try harness.storage.entries(from: 1, to: 4, maxBytes: .max) == entries)
  }
}
