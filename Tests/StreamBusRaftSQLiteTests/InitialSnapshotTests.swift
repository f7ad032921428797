import StreamBusRaft
import StreamBusRaftSQLite
import Testing

/// A database created from an initial snapshot (how a RaftHost founder bootstraps): the
/// membership lives in a snapshot at index 1, the log starts at 2.
@Suite struct InitialSnapshotTests {
  static let founders = ConfState(voters: [1, 2, 3])

  static func initialSnapshot(voters: ConfState = founders, data: [UInt8] = [7, 7, 7])
    -> Snapshot
  {
    Snapshot(metadata: SnapshotMetadata(index: 1, term: 1, confState: voters), data: data)
  }

  @Test func newDatabaseStartsFromTheInitialSnapshot() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("node.sqlite")
    let initial = Self.initialSnapshot()
    var storage = try SQLiteRaftStorage(
      path: path, clusterID: "c", nodeID: 2, initialSnapshot: initial)
    func expectBootstrapped(_ storage: SQLiteRaftStorage, lastIndex: LogIndex) throws {
      let (hardState, confState) = try storage.initialState()
      #expect(hardState == HardState(term: 1, vote: nil, commit: 1))
      #expect(confState == Self.founders)
      #expect(try storage.snapshot() == initial)
      #expect(try storage.firstIndex() == 2)
      #expect(try storage.lastIndex() == lastIndex)
      #expect(try storage.term(at: 1) == 1)
      #expect(throws: RaftStorageError.compacted) { try storage.term(at: 0) }
      #expect(throws: RaftStorageError.compacted) {
        try storage.entries(from: 1, to: 2, maxBytes: .max)
      }
    }
    try expectBootstrapped(storage, lastIndex: 1)

    // The log continues right after the snapshot; a reopen ignores other bootstrap values.
    let entry = Entry(term: 2, index: 2, data: [1])
    try storage.persist(
      hardState: HardState(term: 2, vote: 2, commit: 2), entries: [entry], snapshot: nil)
    storage.close()
    storage = try SQLiteRaftStorage(
      path: path, clusterID: "c", nodeID: 2, bootstrap: ConfState(voters: [9]))
    #expect(try storage.snapshot() == initial)
    #expect(try storage.entries(from: 2, to: 3, maxBytes: .max) == [entry])
    storage.close()
    storage = try SQLiteRaftStorage(
      path: path, clusterID: "c", nodeID: 2,
      initialSnapshot: Self.initialSnapshot(voters: ConfState(voters: [9]), data: [1]))
    #expect(try storage.snapshot() == initial)
    #expect(try storage.initialState().1 == Self.founders)
    #expect(try storage.initialState().0 == HardState(term: 2, vote: 2, commit: 2))
    storage.close()
  }

  @Test func foundersOfOneSnapshotHoldIdenticalBytes() throws {
    let directory = try TemporaryDirectory()
    var encodings: [[UInt8]] = []
    for id: NodeID in [1, 2, 3] {
      let storage = try SQLiteRaftStorage(
        path: directory.path("node-\(id).sqlite"), clusterID: "c", nodeID: id,
        initialSnapshot: Self.initialSnapshot())
      encodings.append(try storage.snapshot().encoded())
      storage.close()
    }
    #expect(Set(encodings).count == 1)
    #expect(encodings.first == Self.initialSnapshot().encoded())
  }
}
