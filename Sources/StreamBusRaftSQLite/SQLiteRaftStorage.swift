import StreamBusRaft
import StreamBusSQLite

/// Raft log, hard state, membership and snapshot of one node in ONE SQLite database file.
///
/// Durability: the database runs in WAL mode with `synchronous=FULL`, so every write method (and
/// `persist`, which writes a whole `Ready` in one transaction) is durable when it returns — except
/// a `persist` that only advances the commit index, which Raft may lose (see `persist`). Reads
/// are served from an in-memory mirror of the small state and a bounded cache of the log tail;
/// everything else is read from the database, so reads are identical after a reopen.
///
/// Safety on open: the file must carry this storage's `PRAGMA application_id`, a known format
/// version, and the expected cluster and node ids; it must pass `quick_check` (or
/// `integrity_check`) and the log must be gap-free. Anything else fails with a
/// `SQLiteRaftStorageError` and the file is left as it is: never a silent reset.
///
/// After any failed write the storage refuses further use (code `.failed`): with an I/O error
/// mid-commit the state on disk is unknown, and the Raft driver must stop rather than guess.
///
/// Like `SQLiteDatabase`, one owner (the node's driver), not thread-safe, not `Sendable`.
public final class SQLiteRaftStorage: RaftStorage {
  /// `PRAGMA application_id` of a StreamBus Raft database: ASCII "SBRF".
  public static let applicationID: Int32 = 0x5342_5246
  /// Version of the schema below; bump it (and add a migration) on any schema change.
  public static let formatVersion: Int64 = 1
  /// Size the WAL file is truncated back to after a checkpoint.
  static let walBytesLimit = 64 << 20

  public enum IntegrityCheck: Sendable {
    /// `PRAGMA quick_check`: page and record structure, O(database size), skips index contents.
    case quick
    /// `PRAGMA integrity_check`: also verifies every index against its table.
    case full
  }

  public struct Options: Sendable {
    public var integrityCheck: IntegrityCheck
    /// Bytes (by `Entry.byteCount`) of the most recent entries kept in memory for reads.
    public var entryCacheBytesMax: UInt64
    public var busyTimeoutMs: Int32
    /// WAL pages after which a commit also checkpoints (copies the WAL into the database file,
    /// with its own fsyncs). 0 turns automatic checkpoints off: the owner then calls
    /// `checkpoint()` at a time of its choosing, keeping that cost off the commit path.
    public var walAutoCheckpointPages: Int
    /// SQLite keeps its file locks from the first transaction until `close()` instead of
    /// taking and releasing them around every transaction (`locking_mode=EXCLUSIVE`): about
    /// six `fcntl` calls less per commit. The storage has one owner anyway (the lock file);
    /// the price is that no other connection can read the database while it is open. Turn
    /// off to inspect a live database with another connection.
    public var exclusiveLocking: Bool

    public init(
      integrityCheck: IntegrityCheck = .quick, entryCacheBytesMax: UInt64 = 4 << 20,
      busyTimeoutMs: Int32 = 5_000, walAutoCheckpointPages: Int = 1_000,
      exclusiveLocking: Bool = true
    ) {
      precondition(walAutoCheckpointPages >= 0, "walAutoCheckpointPages must not be negative")
      self.integrityCheck = integrityCheck
      self.entryCacheBytesMax = entryCacheBytesMax
      self.busyTimeoutMs = busyTimeoutMs
      self.walAutoCheckpointPages = walAutoCheckpointPages
      self.exclusiveLocking = exclusiveLocking
    }
  }

  public let path: String
  public let clusterID: String
  public let nodeID: NodeID
  public let options: Options

  private let database: SQLiteDatabase
  private let lock: DatabaseLock
  /// Prepared statements; released by `close()` so the connection can close at once.
  private var openStatements: Statements?

  // Mirror of the committed state; changed only after the transaction that wrote it committed.
  private var hardStateValue: HardState
  private var snapshotMetadata: SnapshotMetadata
  /// Loaded on first use: snapshots can be large and are read rarely.
  private var snapshotData: [UInt8]?
  /// The position before the first stored entry; its term stays known.
  private var compactedIndex: LogIndex
  private var compactedTerm: Term
  private var lastIndexValue: LogIndex
  /// The newest entries: `tail[k].index == lastIndexValue - tail.count + 1 + k`.
  private var tail: [Entry] = []
  private var tailByteCount: UInt64 = 0
  /// Set by the first failed write or by `close()`; every later call throws it.
  private var unusableReason: SQLiteRaftStorageError?

  /// Opens the database of node `nodeID` in cluster `clusterID` at `path`, creating it when the
  /// file does not exist or is an empty database. Both bootstrap arguments only matter when the
  /// database is created (an existing database ignores them):
  ///
  /// - `bootstrap`: the membership recorded in the new database, with an empty log. Only this
  ///   node knows it: a node that later replicates this log from index 1 never learns it.
  /// - `initialSnapshot`: the new database starts from this snapshot instead: its data and
  ///   membership, the log compacted through its index, hard state term = its term and
  ///   commit = its index. Founders of a cluster that all start from the same snapshot share
  ///   their initial membership through the log itself: a node that needs the position of the
  ///   snapshot receives it (membership included) by InstallSnapshot.
  public init(
    path: String, clusterID: String, nodeID: NodeID, bootstrap: ConfState = ConfState(),
    initialSnapshot: Snapshot? = nil, options: Options = Options()
  ) throws {
    precondition(nodeID != 0, "node 0 is reserved")
    if let initialSnapshot {
      precondition(!initialSnapshot.isEmpty, "an initial snapshot needs an index above 0")
      precondition(
        initialSnapshot.metadata.term > 0, "an initial snapshot needs a term above 0")
      precondition(
        bootstrap.isEmpty || bootstrap == initialSnapshot.metadata.confState,
        "bootstrap membership \(bootstrap) contradicts the initial snapshot's")
    }
    self.path = path
    self.clusterID = clusterID
    self.nodeID = nodeID
    self.options = options
    lock = try DatabaseLock(databasePath: path)
    do {
      database = try SQLiteDatabase(
        path: path, flags: [.readWrite, .create],
        configuration: .init(
          journalMode: .wal, synchronous: .full, foreignKeys: true,
          busyTimeoutMs: options.busyTimeoutMs))
    } catch let error as SQLiteError {
      throw Self.openError(error, path: path)
    }
    do {
      try Self.checkIntegrity(database, options.integrityCheck, path: path)
      // A log much larger than a checkpoint interval would otherwise leave a WAL file of its
      // largest transaction's size behind for good.
      try database.setPragma("journal_size_limit", String(Self.walBytesLimit))
      try database.setPragma("wal_autocheckpoint", String(options.walAutoCheckpointPages))
      // One owner (the lock file above), so SQLite may keep its file locks for good instead
      // of taking and releasing them around every transaction (`Options.exclusiveLocking`).
      let lockingMode = options.exclusiveLocking ? "EXCLUSIVE" : "NORMAL"
      guard
        try database.setPragma("locking_mode", lockingMode)?.textValue?.uppercased()
          == lockingMode
      else {
        throw SQLiteRaftStorageError(
          code: .sqlite, message: "SQLite refused locking_mode \(lockingMode)", path: path)
      }
      let created = try Self.checkIdentityOrCreate(
        database, clusterID: clusterID, nodeID: nodeID, bootstrap: bootstrap,
        initialSnapshot: initialSnapshot, path: path)
      if created {
        try syncParentDirectory(of: path)
      }
      let statements = try Statements(database)
      let loaded = try Self.load(database, statements, path: path)
      openStatements = statements
      hardStateValue = loaded.hardState
      snapshotMetadata = loaded.snapshotMetadata
      compactedIndex = loaded.compactedIndex
      compactedTerm = loaded.compactedTerm
      lastIndexValue = loaded.lastIndex
    } catch let error as SQLiteError {
      database.close()
      throw Self.openError(error, path: path)
    } catch {
      database.close()
      throw error
    }
  }

  /// Closes the database; later calls throw `.closed`. Idempotent.
  public func close() {
    if unusableReason == nil {
      unusableReason = SQLiteRaftStorageError(
        code: .closed, message: "storage is closed", path: path)
    }
    openStatements = nil
    database.close()
    lock.release()
  }

  deinit {
    database.close()
  }

  // MARK: RaftLogStorage

  public func initialState() throws -> (HardState, ConfState) {
    try checkUsable()
    return (hardStateValue, snapshotMetadata.confState)
  }

  public func entries(from: LogIndex, to: LogIndex, maxBytes: UInt64) throws -> [Entry] {
    precondition(from <= to, "entries(from: \(from), to: \(to)) has from > to")
    let statements = try checkUsable()
    if from <= compactedIndex { throw RaftStorageError.compacted }
    if to > lastIndexValue + 1 { throw RaftStorageError.unavailable }
    var result: [Entry] = []
    var byteCount: UInt64 = 0
    var index = from
    let tailFirstIndex = lastIndexValue + 1 - LogIndex(tail.count)
    if index < tailFirstIndex {
      let databaseEnd = min(to, tailFirstIndex)
      let statement = statements.selectEntries
      defer { statement.reset() }
      try sqlite {
        try statement.bind(Self.storedInteger(index), at: 1)
        try statement.bind(Self.storedInteger(databaseEnd), at: 2)
        while try statement.step() {
          let entry = try decodeEntry(statement, expectedIndex: index)
          byteCount += entry.byteCount
          if !result.isEmpty && byteCount > maxBytes { return }
          result.append(entry)
          index += 1
        }
      }
      if index < databaseEnd && (result.isEmpty || byteCount <= maxBytes) {
        throw corrupt("entry \(index) is missing although the log ends at \(lastIndexValue)")
      }
      if byteCount > maxBytes { return result }
    }
    while index < to {
      let entry = tail[Int(index - tailFirstIndex)]
      byteCount += entry.byteCount
      if !result.isEmpty && byteCount > maxBytes { break }
      result.append(entry)
      index += 1
    }
    return result
  }

  public func term(at index: LogIndex) throws -> Term {
    let statements = try checkUsable()
    if index < compactedIndex { throw RaftStorageError.compacted }
    if index == compactedIndex { return compactedTerm }
    if index > lastIndexValue { throw RaftStorageError.unavailable }
    let tailFirstIndex = lastIndexValue + 1 - LogIndex(tail.count)
    if index >= tailFirstIndex {
      return tail[Int(index - tailFirstIndex)].term
    }
    let statement = statements.selectTerm
    defer { statement.reset() }
    return try sqlite {
      try statement.bind(Self.storedInteger(index), at: 1)
      guard try statement.step() else {
        throw corrupt("entry \(index) is missing although the log ends at \(lastIndexValue)")
      }
      return try storedUnsigned(statement.columnInt64(0), "term of entry \(index)")
    }
  }

  public func firstIndex() throws -> LogIndex {
    try checkUsable()
    return compactedIndex + 1
  }

  public func lastIndex() throws -> LogIndex {
    try checkUsable()
    return lastIndexValue
  }

  public func snapshot() throws -> Snapshot {
    try checkUsable()
    if let snapshotData {
      return Snapshot(metadata: snapshotMetadata, data: snapshotData)
    }
    let data = try sqlite {
      guard
        let row = try database.query("SELECT data FROM raft_snapshot WHERE singleton = 1").first,
        let data = row.first?.blobValue
      else {
        throw corrupt("the snapshot row is missing")
      }
      return data
    }
    snapshotData = data
    return Snapshot(metadata: snapshotMetadata, data: data)
  }

  // MARK: RaftStorage

  public func append(_ entries: [Entry]) throws {
    try persist(hardState: nil, entries: entries, snapshot: nil)
  }

  public func setHardState(_ hardState: HardState) throws {
    try persist(hardState: hardState, entries: [], snapshot: nil)
  }

  public func applySnapshot(_ snapshot: Snapshot) throws {
    try persist(hardState: nil, entries: [], snapshot: snapshot)
  }

  /// Writes snapshot, entries and hard state of one `Ready` in ONE transaction (one fsync of the
  /// WAL): after a crash either all of it is on disk or none of it.
  public func persist(hardState: HardState?, entries: [Entry], snapshot: Snapshot?) throws {
    let statements = try checkUsable()
    // A snapshot not newer than the stored one is ignored (a late InstallSnapshot).
    let newSnapshot = snapshot.flatMap { $0.metadata.index > snapshotMetadata.index ? $0 : nil }
    let lastIndexBeforeEntries = newSnapshot?.metadata.index ?? lastIndexValue
    let compactedIndexBeforeEntries = newSnapshot?.metadata.index ?? compactedIndex
    if let first = entries.first {
      for (offset, entry) in entries.enumerated() {
        precondition(entry.index == first.index + LogIndex(offset), "appended entries have gaps")
      }
      precondition(
        first.index > compactedIndexBeforeEntries && first.index <= lastIndexBeforeEntries + 1,
        "append at \(first.index) outside "
          + "\(compactedIndexBeforeEntries + 1)...\(lastIndexBeforeEntries + 1)")
    }
    if let hardState {
      precondition(hardState.term >= hardStateValue.term, "persisted term went backwards")
    }
    if newSnapshot == nil && entries.isEmpty && hardState == nil {
      return
    }
    // Raft needs term, vote, entries and snapshots durable before anything is sent; the commit
    // index is volatile state (Figure 2) that a restarted node learns again from the leader.
    // A Ready that only advances the commit index is therefore written without an fsync: on
    // the leader it sits between "a quorum has the entry" and "apply", and syncing it there
    // costs a whole disk flush per write. The next synced transaction flushes it anyway (the
    // WAL is synced as a whole), so every snapshot, which is taken at an applied and so
    // committed index, is preceded on disk by a commit index at least as high.
    let commitOnly =
      newSnapshot == nil && entries.isEmpty
      && hardState.map { $0.term == hardStateValue.term && $0.vote == hardStateValue.vote } == true
    if commitOnly {
      try writeWithoutSync {
        try updateHardStateRow(statements, hardState)
      }
    } else {
      try write {
        try writeReady(
          statements, newSnapshot: newSnapshot, entries: entries,
          lastIndexBeforeEntries: lastIndexBeforeEntries, hardState: hardState)
      }
    }

    // Committed: mirror it in memory, in the same order.
    if let newSnapshot {
      snapshotMetadata = newSnapshot.metadata
      snapshotData = newSnapshot.data
      compactedIndex = newSnapshot.metadata.index
      compactedTerm = newSnapshot.metadata.term
      lastIndexValue = newSnapshot.metadata.index
      tail = []
      tailByteCount = 0
    }
    if !entries.isEmpty {
      rememberAppended(entries)
    }
    if let hardState {
      hardStateValue = hardState
    }
  }

  public func createSnapshot(at index: LogIndex, confState: ConfState, data: [UInt8]) throws
    -> Snapshot
  {
    try checkUsable()
    precondition(index <= lastIndexValue, "snapshot at \(index) beyond last \(lastIndexValue)")
    if index <= snapshotMetadata.index { return try snapshot() }
    let metadata = SnapshotMetadata(index: index, term: try term(at: index), confState: confState)
    try write {
      try writeSnapshotRows(metadata, data: data)
    }
    snapshotMetadata = metadata
    snapshotData = data
    return Snapshot(metadata: metadata, data: data)
  }

  public func compact(upTo index: LogIndex) throws {
    let statements = try checkUsable()
    if index <= compactedIndex { return }
    precondition(index <= lastIndexValue, "compact(upTo: \(index)) beyond \(lastIndexValue)")
    precondition(index <= snapshotMetadata.index, "compacting entries no snapshot covers")
    let newTerm = try term(at: index)
    try write {
      try statements.deleteEntriesThrough.bind(Self.storedInteger(index), at: 1)
      try statements.deleteEntriesThrough.run()
      try writeCompactionPoint(index: index, term: newTerm)
    }
    compactedIndex = index
    compactedTerm = newTerm
    let tailFirstIndex = lastIndexValue + 1 - LogIndex(tail.count)
    if index >= tailFirstIndex {
      let dropped = tail.prefix(Int(index - tailFirstIndex + 1))
      tailByteCount -= dropped.reduce(0) { $0 + $1.byteCount }
      tail.removeFirst(dropped.count)
    }
  }

  /// Copies the WAL into the database file and truncates the WAL. Needed only with
  /// `walAutoCheckpointPages = 0`; safe at any time (committed data is durable either way).
  public func checkpoint() throws {
    try checkUsable()
    do {
      try database.checkpoint()
    } catch let error as SQLiteError {
      throw storageError(error, context: "checkpoint failed")
    }
  }

  // MARK: Writing

  /// Runs `body` in one IMMEDIATE transaction; any failure rolls it back and makes the storage
  /// unusable (the mirror in memory is only updated by callers after this returns).
  private func writeReady(
    _ statements: Statements, newSnapshot: Snapshot?, entries: [Entry],
    lastIndexBeforeEntries: LogIndex, hardState: HardState?
  ) throws {
    if let newSnapshot {
      try writeSnapshotRows(newSnapshot.metadata, data: newSnapshot.data)
      try statements.deleteAllEntries.run()
      try writeCompactionPoint(index: newSnapshot.metadata.index, term: newSnapshot.metadata.term)
    }
    if let first = entries.first {
      if first.index <= lastIndexBeforeEntries {
        // The conflicting suffix the leader told us to overwrite.
        try statements.deleteEntriesFrom.bind(Self.storedInteger(first.index), at: 1)
        try statements.deleteEntriesFrom.run()
      }
      let insert = statements.insertEntry
      for entry in entries {
        try insert.bind(Self.storedInteger(entry.index), at: 1)
        try insert.bind(Self.storedInteger(entry.term), at: 2)
        try insert.bind(Int64(entry.kind.rawValue), at: 3)
        try insert.bind(blob: entry.data, at: 4)
        try insert.run()
      }
    }
    try updateHardStateRow(statements, hardState)
  }

  private func updateHardStateRow(_ statements: Statements, _ hardState: HardState?) throws {
    guard let hardState else { return }
    let update = statements.updateHardState
    try update.bind(Self.storedInteger(hardState.term), at: 1)
    if let vote = hardState.vote {
      try update.bind(Int64(bitPattern: vote), at: 2)
    } else {
      try update.bindNull(at: 2)
    }
    try update.bind(Self.storedInteger(hardState.commit), at: 3)
    try update.run()
    try expectOneRowChanged("raft_hard_state")
  }

  /// A transaction committed with `synchronous=NORMAL`: in WAL mode it is appended to the WAL
  /// without an fsync, and becomes durable with the next synced commit or checkpoint. Only for
  /// state Raft may lose in a crash (see `persist`).
  /// SQLite's `synchronous` setting now (2 = FULL); tests check it is restored after a
  /// commit-only write.
  var synchronousSetting: Int64? {
    try? database.pragmaInteger("synchronous")
  }

  private func writeWithoutSync(_ body: () throws -> Void) throws {
    do {
      _ = try database.setPragma("synchronous", "NORMAL")
    } catch let error as SQLiteError {
      throw storageError(error, context: "cannot relax synchronous for a commit-index update")
    }
    defer {
      // Restoring FULL cannot be skipped silently: every later write relies on it.
      do {
        _ = try database.setPragma("synchronous", "FULL")
      } catch {
        unusableReason = SQLiteRaftStorageError(
          code: .failed, message: "cannot restore synchronous=FULL: \(error)", path: path)
      }
    }
    try write(body)
  }

  private func write(_ body: () throws -> Void) throws {
    do {
      try database.transaction(.immediate, body)
    } catch let error as SQLiteError {
      let wrapped = storageError(error, context: "write failed")
      unusableReason = SQLiteRaftStorageError(
        code: .failed, message: "an earlier write failed; reopen the storage: \(wrapped.message)",
        path: path, underlying: error)
      throw wrapped
    } catch {
      unusableReason = SQLiteRaftStorageError(
        code: .failed, message: "an earlier write failed; reopen the storage: \(error)",
        path: path)
      throw error
    }
  }

  private func writeSnapshotRows(_ metadata: SnapshotMetadata, data: [UInt8]) throws {
    try database.run(
      "UPDATE raft_snapshot SET snapshot_index = ?, snapshot_term = ?, data = ? WHERE singleton = 1",
      [
        .integer(Self.storedInteger(metadata.index)), .integer(Self.storedInteger(metadata.term)),
        .blob(data),
      ])
    try expectOneRowChanged("raft_snapshot")
    try Self.writeMembers(database, metadata.confState)
  }

  private func writeCompactionPoint(index: LogIndex, term: Term) throws {
    try database.run(
      "UPDATE raft_log_state SET compacted_index = ?, compacted_term = ? WHERE singleton = 1",
      [.integer(Self.storedInteger(index)), .integer(Self.storedInteger(term))])
    try expectOneRowChanged("raft_log_state")
  }

  private func expectOneRowChanged(_ table: String) throws {
    guard database.changes == 1 else {
      throw corrupt("the single row of \(table) is missing")
    }
  }

  private func rememberAppended(_ entries: [Entry]) {
    guard let first = entries.first else { return }
    let tailFirstIndex = lastIndexValue + 1 - LogIndex(tail.count)
    if first.index <= lastIndexValue {
      if first.index <= tailFirstIndex {
        tail = []
        tailByteCount = 0
      } else {
        let kept = Int(first.index - tailFirstIndex)
        tailByteCount -= tail[kept...].reduce(0) { $0 + $1.byteCount }
        tail.removeSubrange(kept...)
      }
    }
    tail.append(contentsOf: entries)
    tailByteCount += entries.reduce(0) { $0 + $1.byteCount }
    lastIndexValue = entries[entries.count - 1].index
    if tailByteCount > options.entryCacheBytesMax {
      // Trim to three quarters of the budget so trimming (O(cache)) happens rarely.
      let target = options.entryCacheBytesMax / 4 * 3
      var dropCount = 0
      while dropCount < tail.count && tailByteCount > target {
        tailByteCount -= tail[dropCount].byteCount
        dropCount += 1
      }
      tail.removeFirst(dropCount)
    }
    precondition(tail.isEmpty || tail[tail.count - 1].index == lastIndexValue)
  }

  // MARK: Reading helpers

  private func decodeEntry(_ statement: Statement, expectedIndex: LogIndex) throws -> Entry {
    let index = try storedUnsigned(statement.columnInt64(0), "entry index")
    guard index == expectedIndex else {
      throw corrupt("expected entry \(expectedIndex), found \(index): the log has a gap")
    }
    let term = try storedUnsigned(statement.columnInt64(1), "term of entry \(index)")
    let kindValue = statement.columnInt64(2)
    guard let kindByte = UInt8(exactly: kindValue), let kind = EntryKind(rawValue: kindByte) else {
      throw corrupt("entry \(index) has unknown kind \(kindValue)")
    }
    guard statement.columnType(3) == .blob else {
      throw corrupt("entry \(index) has no data blob")
    }
    return Entry(term: term, index: index, kind: kind, data: statement.columnBlob(3))
  }

  private func storedUnsigned(_ value: Int64, _ what: String) throws -> UInt64 {
    guard let unsigned = UInt64(exactly: value) else {
      throw corrupt("\(what) is negative (\(value))")
    }
    return unsigned
  }

  /// Throws once the storage is closed or failed; otherwise returns the prepared statements.
  @discardableResult
  private func checkUsable() throws -> Statements {
    if let unusableReason { throw unusableReason }
    guard let openStatements else {
      preconditionFailure("an open storage always has its statements")
    }
    return openStatements
  }

  private func corrupt(_ message: String) -> SQLiteRaftStorageError {
    SQLiteRaftStorageError(code: .corrupt, message: message, path: path)
  }

  /// Runs SQLite calls, turning `SQLiteError` into `SQLiteRaftStorageError`.
  private func sqlite<Result>(_ body: () throws -> Result) throws -> Result {
    do {
      return try body()
    } catch let error as SQLiteError {
      throw storageError(error, context: "read failed")
    }
  }

  private func storageError(_ error: SQLiteError, context: String) -> SQLiteRaftStorageError {
    if error.isCorrupt {
      return SQLiteRaftStorageError(
        code: .corrupt, message: "\(context): the database file is damaged", path: path,
        underlying: error)
    }
    return SQLiteRaftStorageError(
      code: .sqlite, message: "\(context): \(error.message)", path: path, underlying: error)
  }

  /// Terms and indices are UInt64 in the core but SQLite integers are signed; no real log gets
  /// anywhere near 2^63, so a larger value is a caller bug.
  static func storedInteger(_ value: UInt64) -> Int64 {
    guard let stored = Int64(exactly: value) else {
      preconditionFailure("\(value) does not fit a signed 64-bit SQLite integer")
    }
    return stored
  }
}

@available(*, unavailable)
extension SQLiteRaftStorage: Sendable {}
