import Foundation
import StreamBusRaft
import StreamBusSQLite
import Testing

@testable import StreamBusRaftSQLite

@Suite struct SQLiteRaftStorageTests {
  private func open(
    _ path: String, clusterID: String = StorageHarness.clusterID,
    nodeID: NodeID = StorageHarness.nodeID
  ) throws -> SQLiteRaftStorage {
    try SQLiteRaftStorage(
      path: path, clusterID: clusterID, nodeID: nodeID, bootstrap: ConfState(voters: [1, 2, 3]))
  }

  private func expectOpenFails(
    _ path: String, code: SQLiteRaftStorageError.Code, messageContains text: String,
    nodeID: NodeID = StorageHarness.nodeID, clusterID: String = StorageHarness.clusterID,
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    let error = #expect(throws: SQLiteRaftStorageError.self, sourceLocation: sourceLocation) {
      _ = try open(path, clusterID: clusterID, nodeID: nodeID)
    }
    #expect(error?.code == code, "\(String(describing: error))", sourceLocation: sourceLocation)
    #expect(
      error?.description.contains(text) == true, "\(String(describing: error))",
      sourceLocation: sourceLocation)
    #expect(error?.description.contains(path) == true, sourceLocation: sourceLocation)
  }

  /// A database with a few hundred entries, closed (so the WAL is checkpointed into the file).
  private func populatedDatabase(_ directory: borrowing TemporaryDirectory) throws -> String {
    let path = directory.path("node.sqlite")
    let storage = try open(path)
    try storage.persist(
      hardState: HardState(term: 3, vote: 2, commit: 300),
      entries: makeEntries(1...400, term: 3, payloadBytes: 200), snapshot: nil)
    storage.close()
    return path
  }

  // MARK: Identity

  @Test func databaseRecordsIdentityAndApplicationID() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("node.sqlite")
    do {
      let storage = try open(path)
      storage.close()
    }
    let raw = try SQLiteDatabase(path: path)
    #expect(try raw.pragmaInteger("application_id") == Int64(SQLiteRaftStorage.applicationID))
    #expect(
      try raw.query("SELECT format_version, cluster_id, node_id FROM raft_identity")
        == [[.integer(1), .text(StorageHarness.clusterID), .integer(1)]])
    #expect(try raw.pragmaText("journal_mode") == "wal")
  }

  @Test func wrongNodeOrClusterFailsOpen() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    expectOpenFails(
      path, code: .wrongNode, messageContains: "belongs to node 1, not node 2", nodeID: 2)
    expectOpenFails(
      path, code: .wrongCluster, messageContains: "cluster \"test-cluster\", not \"other\"",
      clusterID: "other")
    // The refusals changed nothing.
    let storage = try open(path)
    defer { storage.close() }
    #expect(try storage.lastIndex() == 400)
  }

  @Test func otherApplicationIDFailsOpen() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("other.sqlite")
    do {
      let other = try SQLiteDatabase(path: path)
      try other.setPragma("application_id", "1179602764")
      try other.execute("CREATE TABLE raft_entry (x)")
    }
    expectOpenFails(path, code: .foreignDatabase, messageContains: "application_id is 0x464f4f4c")
  }

  @Test func plainDatabaseWithOtherTablesFailsOpenAndIsNotTouched() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("plain.sqlite")
    do {
      let other = try SQLiteDatabase(path: path)
      try other.execute("CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('x')")
    }
    expectOpenFails(path, code: .foreignDatabase, messageContains: "belongs to another application")
    let other = try SQLiteDatabase(path: path)
    #expect(try other.query("SELECT name FROM sqlite_schema") == [[.text("customers")]])
    #expect(try other.pragmaInteger("application_id") == 0)
  }

  @Test func newerFormatVersionFailsOpen() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    do {
      let raw = try SQLiteDatabase(path: path)
      try raw.run("UPDATE raft_identity SET format_version = 2")
    }
    expectOpenFails(path, code: .unsupportedFormatVersion, messageContains: "newer StreamBus")
  }

  @Test func missingIdentityTableFailsOpen() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    do {
      let raw = try SQLiteDatabase(path: path)
      try raw.run("DROP TABLE raft_identity")
    }
    expectOpenFails(path, code: .corrupt, messageContains: "identity table cannot be read")
  }

  // MARK: Corruption

  @Test func nonDatabaseFileFailsOpenAndIsNotTouched() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("text.sqlite")
    let content = Data(String(repeating: "not a database\n", count: 1_000).utf8)
    try content.write(to: URL(fileURLWithPath: path))
    expectOpenFails(path, code: .corrupt, messageContains: "not a readable SQLite database")
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == content)
  }

  @Test func damagedHeaderFailsOpen() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    try overwrite(path, at: 0, count: 16, with: 0x00)
    expectOpenFails(path, code: .corrupt, messageContains: "not a readable SQLite database")
  }

  @Test func damagedPagesFailOpenWithIntegrityCheckDetails() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
    #expect(size > 16 * 4_096)
    // Garbage over interior pages of the entry table, leaving the header intact.
    for page in stride(from: 3, to: size / 4_096, by: 4) {
      try overwrite(path, at: page * 4_096, count: 64, with: 0xee)
    }
    let error = #expect(throws: SQLiteRaftStorageError.self) { _ = try open(path) }
    #expect(error?.code == .corrupt)
    #expect(error?.description.contains(path) == true)
    #expect(error?.message.contains("left untouched") == true, "\(String(describing: error))")
  }

  @Test func gapInTheLogFailsOpen() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    do {
      let raw = try SQLiteDatabase(path: path)
      try raw.run("DELETE FROM raft_entry WHERE log_index = 200")
    }
    expectOpenFails(path, code: .corrupt, messageContains: "not contiguous")
  }

  @Test func impossibleStoredValuesAreErrorsNotTraps() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    do {
      let raw = try SQLiteDatabase(path: path)
      try raw.run("UPDATE raft_entry SET kind = 9 WHERE log_index = 5")
    }
    do {
      let storage = try open(path)
      defer { storage.close() }
      let error = #expect(throws: SQLiteRaftStorageError.self) {
        _ = try storage.entries(from: 1, to: 10, maxBytes: .max)
      }
      #expect(error?.code == .corrupt)
      #expect(error?.message.contains("entry 5 has unknown kind 9") == true)
    }

    do {
      let raw = try SQLiteDatabase(path: path)
      try raw.execute("PRAGMA ignore_check_constraints = 1; UPDATE raft_hard_state SET vote = 0")
    }
    // quick_check verifies CHECK constraints too, so the bad vote is caught at open.
    expectOpenFails(
      path, code: .corrupt, messageContains: "CHECK constraint failed in raft_hard_state")
  }

  // MARK: Crashes

  @Test func uncommittedTransactionOnDiskLeavesThePreviousState() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    let before = try StorageObservation(try open(path))

    // Another writer starts a large transaction; with a tiny page cache SQLite spills its dirty
    // pages into the WAL before COMMIT. Copying the files at that moment is what the disk holds
    // if the process dies right there.
    let crashedPath = directory.path("crashed.sqlite")
    do {
      let writer = try SQLiteDatabase(path: path)
      try writer.setPragma("cache_size", "10")
      #expect(throws: CrashSimulated.self) {
        try writer.transaction {
          try writer.execute(
            """
            DELETE FROM raft_entry WHERE log_index > 100;
            WITH RECURSIVE next(i) AS (SELECT 101 UNION ALL SELECT i + 1 FROM next WHERE i < 3000)
            INSERT INTO raft_entry SELECT i, 9, 0, randomblob(500) FROM next;
            UPDATE raft_hard_state SET term = 9, vote = 3;
            UPDATE raft_log_state SET compacted_index = 50, compacted_term = 3;
            """)
          let walSize = try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size]
          #expect((walSize as? Int ?? 0) > 100 * 4_096, "the transaction must reach the WAL")
          try FileManager.default.copyItem(atPath: path, toPath: crashedPath)
          try FileManager.default.copyItem(atPath: path + "-wal", toPath: crashedPath + "-wal")
          throw CrashSimulated()
        }
      }
    }

    let recovered = try open(crashedPath)
    defer { recovered.close() }
    let after = try StorageObservation(recovered)
    #expect(after == before)
    #expect(after.hardState == HardState(term: 3, vote: 2, commit: 300))
    #expect(after.lastIndex == 400)
  }

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3")))
  func processKilledMidTransactionLeavesThePreviousState() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    let before = try StorageObservation(try open(path))

    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    process.arguments = [path]
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let script = """
      PRAGMA cache_size = 10;
      BEGIN IMMEDIATE;
      WITH RECURSIVE next(i) AS (SELECT 401 UNION ALL SELECT i + 1 FROM next WHERE i < 3000)
      INSERT INTO raft_entry SELECT i, 9, 0, randomblob(500) FROM next;
      UPDATE raft_hard_state SET term = 9, vote = 3;
      SELECT 'inside-transaction';

      """
    input.fileHandleForWriting.write(Data(script.utf8))
    var seen = Data()
    while !String(decoding: seen, as: UTF8.self).contains("inside-transaction") {
      let chunk = output.fileHandleForReading.availableData
      if chunk.isEmpty { break }
      seen.append(chunk)
    }
    #expect(String(decoding: seen, as: UTF8.self).contains("inside-transaction"))
    let walSize = try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size]
    #expect((walSize as? Int ?? 0) > 100 * 4_096, "the transaction must reach the WAL")
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    #expect(process.terminationReason == .uncaughtSignal)

    let recovered = try open(path)
    defer { recovered.close() }
    #expect(try StorageObservation(recovered) == before)
  }

  @Test func failedWriteRollsBackTheWholeReadyAndStopsTheStorage() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    // A second connection injects the failure, so SQLite must not keep its locks.
    let storage = try SQLiteRaftStorage(
      path: path, clusterID: StorageHarness.clusterID, nodeID: StorageHarness.nodeID,
      bootstrap: ConfState(voters: [1, 2, 3]), options: .init(exclusiveLocking: false))
    defer { storage.close() }
    let before = try StorageObservation(storage)

    // Make the last statement of the Ready fail, after the entries were written.
    let saboteur = try SQLiteDatabase(path: path)
    try saboteur.execute(
      """
      CREATE TRIGGER refuse_hard_state BEFORE UPDATE ON raft_hard_state
      BEGIN SELECT RAISE(ABORT, 'injected failure'); END;
      """)
    let error = #expect(throws: SQLiteRaftStorageError.self) {
      try storage.persist(
        hardState: HardState(term: 4, vote: 1, commit: 300),
        entries: makeEntries(350...420, term: 4), snapshot: nil)
    }
    #expect(error?.code == .sqlite)
    #expect(error?.message.contains("injected failure") == true)
    let refused = #expect(throws: SQLiteRaftStorageError.self) { _ = try storage.lastIndex() }
    #expect(refused?.code == .failed)

    try saboteur.execute("DROP TRIGGER refuse_hard_state")
    saboteur.close()
    storage.close()
    let reopened = try open(path)
    defer { reopened.close() }
    #expect(try StorageObservation(reopened) == before)
  }

  /// With exclusive locking (the default) another connection cannot even read the live
  /// database; without it, it can.
  @Test(arguments: [true, false])
  func exclusiveLockingKeepsOtherConnectionsOut(exclusive: Bool) throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    let storage = try SQLiteRaftStorage(
      path: path, clusterID: StorageHarness.clusterID, nodeID: StorageHarness.nodeID,
      bootstrap: ConfState(voters: [1, 2, 3]),
      options: .init(busyTimeoutMs: 50, exclusiveLocking: exclusive))
    defer { storage.close() }
    try storage.append(
      makeEntries((try storage.lastIndex() + 1)...(try storage.lastIndex() + 3), term: 4))
    let readCount = Result {
      let other = try SQLiteDatabase(path: path, configuration: .init(busyTimeoutMs: 50))
      defer { other.close() }
      return try other.query("SELECT count(*) FROM raft_entry").first?.first
    }
    if exclusive {
      #expect(throws: SQLiteError.self) { try readCount.get() }
    } else {
      #expect(
        try readCount.get()?.integerValue
          == Int64(try storage.lastIndex() - (try storage.firstIndex()) + 1))
    }
  }

  // MARK: Lifecycle and cache

  /// The commit index is volatile in Raft (Figure 2), so a Ready that only advances it is
  /// written without an fsync; everything else keeps synchronous=FULL.
  @Test func commitOnlyReadyIsWrittenAndFullSyncIsRestored() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("node.sqlite")
    do {
      let storage = try open(path)
      #expect(storage.synchronousSetting == 2)
      try storage.persist(
        hardState: HardState(term: 2, vote: 1, commit: 0),
        entries: makeEntries(1...5, term: 2, payloadBytes: 16), snapshot: nil)
      #expect(storage.synchronousSetting == 2)
      try storage.persist(
        hardState: HardState(term: 2, vote: 1, commit: 4), entries: [], snapshot: nil)
      #expect(storage.synchronousSetting == 2)
      #expect(try storage.initialState().0 == HardState(term: 2, vote: 1, commit: 4))
      // A vote or term change is never commit-only.
      try storage.persist(
        hardState: HardState(term: 3, vote: nil, commit: 4), entries: [], snapshot: nil)
      #expect(storage.synchronousSetting == 2)
      storage.close()
    }
    let reopened = try open(path)
    #expect(try reopened.initialState().0 == HardState(term: 3, vote: nil, commit: 4))
    #expect(try reopened.lastIndex() == 5)
    reopened.close()
  }

  @Test func closedStorageRefusesCalls() throws {
    let directory = try TemporaryDirectory()
    let storage = try open(directory.path("node.sqlite"))
    storage.close()
    storage.close()
    let error = #expect(throws: SQLiteRaftStorageError.self) { _ = try storage.initialState() }
    #expect(error?.code == .closed)
  }

  @Test func secondOpenOfTheSameDatabaseIsRefusedUntilClose() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("node.sqlite")
    let first = try open(path)
    expectOpenFails(path, code: .alreadyOpen, messageContains: "already open")
    try first.append(makeEntries(1...3, term: 1))
    first.close()
    let second = try open(path)
    defer { second.close() }
    #expect(try second.lastIndex() == 3)
  }

  @Test func manualCheckpointsWhenAutomaticOnesAreOff() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("node.sqlite")
    let storage = try SQLiteRaftStorage(
      path: path, clusterID: StorageHarness.clusterID, nodeID: StorageHarness.nodeID,
      options: .init(walAutoCheckpointPages: 0))
    defer { storage.close() }
    func walBytes() throws -> Int {
      try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int ?? 0
    }
    for batch in 0..<30 {
      let first = LogIndex(batch * 100 + 1)
      try storage.append(makeEntries(first...(first + 99), term: 1, payloadBytes: 2_000))
    }
    // 3000 entries of 2000 B fill ~1500 pages, past the default checkpoint at 1000 pages: with
    // automatic checkpoints off, the WAL still holds all of them.
    #expect(try walBytes() > 1_400 * 4_096)
    try storage.checkpoint()
    #expect(try walBytes() == 0)
    try storage.append(makeEntries(3_001...3_001, term: 1))
    #expect(
      try storage.entries(from: 2_990, to: 3_002, maxBytes: .max)
        == makeEntries(2_990...3_000, term: 1, payloadBytes: 2_000)
        + makeEntries(3_001...3_001, term: 1))
  }

  @Test func closeCheckpointsTheWal() throws {
    let directory = try TemporaryDirectory()
    let path = try populatedDatabase(directory)
    #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
  }

  @Test func sqliteMatchesMemoryUnderRandomOperations() throws {
    var random = SplitMix64(seed: 0x5eed_0001)
    let memory = MemoryRaftStorage(confState: ConfState(voters: [1, 2, 3]))
    let harness = try StorageHarness(.sqlite, options: .init(entryCacheBytesMax: 600))
    defer { harness.close() }
    var term: Term = 1
    for step in 0..<400 {
      let last = try memory.lastIndex()
      let first = try memory.firstIndex()
      switch random.next() % 10 {
      case 0...4:
        // Append, sometimes overwriting a suffix with a newer term.
        let start = last + 1 - min(random.next() % 4, last + 1 - first)
        if start <= last { term += 1 }
        let count = 1 + random.next() % 6
        let entries = makeEntries(
          start...(start + count - 1), term: term, payloadBytes: Int(random.next() % 80))
        try memory.append(entries)
        try harness.storage.append(entries)
      case 5:
        let hardState = HardState(term: term, vote: random.next() % 2 == 0 ? nil : 2, commit: last)
        try memory.setHardState(hardState)
        try harness.storage.setHardState(hardState)
      case 6 where last >= first:
        let index = first + random.next() % (last - first + 1)
        let conf = ConfState(voters: [1, 2, 3 + random.next() % 3])
        _ = try memory.createSnapshot(at: index, confState: conf, data: [UInt8(step % 256)])
        _ = try harness.storage.createSnapshot(
          at: index, confState: conf, data: [UInt8(step % 256)])
      case 7:
        let snapshotIndex = try memory.snapshot().metadata.index
        if snapshotIndex >= first, snapshotIndex <= last {
          try memory.compact(upTo: snapshotIndex)
          try harness.storage.compact(upTo: snapshotIndex)
        }
      case 8 where random.next() % 4 == 0:
        term += 1
        let snapshot = Snapshot(
          metadata: SnapshotMetadata(
            index: last + random.next() % 5, term: term, confState: ConfState(voters: [1])),
          data: [1, 2])
        try memory.persist(
          hardState: HardState(term: term, vote: nil, commit: 0),
          entries: makeEntries(
            (snapshot.metadata.index + 1)...(snapshot.metadata.index + 2), term: term),
          snapshot: snapshot)
        try harness.storage.persist(
          hardState: HardState(term: term, vote: nil, commit: 0),
          entries: makeEntries(
            (snapshot.metadata.index + 1)...(snapshot.metadata.index + 2), term: term),
          snapshot: snapshot)
      default:
        try harness.reopen()
      }
      let expected = try StorageObservation(memory)
      let actual = try StorageObservation(harness.storage)
      try #require(actual == expected, "diverged at step \(step)")
    }
  }
}

private struct CrashSimulated: Error {}

/// Small deterministic generator so a failing sequence replays exactly.
struct SplitMix64: RandomNumberGenerator {
  private var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    var value = state
    value = (value ^ (value >> 30)) &* 0xbf58_476d_1ce4_e5b9
    value = (value ^ (value >> 27)) &* 0x94d0_49bb_1331_11eb
    return value ^ (value >> 31)
  }
}

private func overwrite(_ path: String, at offset: Int, count: Int, with byte: UInt8) throws {
  let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
  defer { try? handle.close() }
  try handle.seek(toOffset: UInt64(offset))
  try handle.write(contentsOf: Data(repeating: byte, count: count))
}
