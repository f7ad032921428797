import StreamBusRaft
import StreamBusSQLite

extension SQLiteRaftStorage {
  /// Format version 1. STRICT tables make SQLite reject a value of the wrong type instead of
  /// storing it; unsigned 64-bit ids are stored by bit pattern, terms and indices as they are
  /// (always below 2^63).
  static let schemaVersion1 = """
    CREATE TABLE raft_identity (
      singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
      format_version INTEGER NOT NULL,
      cluster_id TEXT NOT NULL,
      node_id INTEGER NOT NULL CHECK (node_id <> 0)
    ) STRICT;
    CREATE TABLE raft_hard_state (
      singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
      term INTEGER NOT NULL CHECK (term >= 0),
      vote INTEGER CHECK (vote IS NULL OR vote <> 0),
      commit_index INTEGER NOT NULL CHECK (commit_index >= 0)
    ) STRICT;
    -- The compaction point: the position before the first stored entry, whose term stays known.
    CREATE TABLE raft_log_state (
      singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
      compacted_index INTEGER NOT NULL CHECK (compacted_index >= 0),
      compacted_term INTEGER NOT NULL CHECK (compacted_term >= 0)
    ) STRICT;
    CREATE TABLE raft_entry (
      log_index INTEGER PRIMARY KEY CHECK (log_index > 0),
      term INTEGER NOT NULL CHECK (term >= 0),
      kind INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 255),
      data BLOB NOT NULL
    ) STRICT;
    CREATE TABLE raft_snapshot (
      singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
      snapshot_index INTEGER NOT NULL CHECK (snapshot_index >= 0),
      snapshot_term INTEGER NOT NULL CHECK (snapshot_term >= 0),
      data BLOB NOT NULL
    ) STRICT;
    -- Membership as of the snapshot (the bootstrap membership before the first snapshot).
    CREATE TABLE raft_conf_member (
      node_id INTEGER PRIMARY KEY CHECK (node_id <> 0),
      role TEXT NOT NULL CHECK (role IN ('voter', 'learner'))
    ) STRICT;
    """

  /// Prepared statements of the hot paths, compiled once per open.
  final class Statements {
    let selectEntries: Statement
    let selectTerm: Statement
    let insertEntry: Statement
    let deleteEntriesFrom: Statement
    let deleteEntriesThrough: Statement
    let deleteAllEntries: Statement
    let updateHardState: Statement

    init(_ database: SQLiteDatabase) throws {
      selectEntries = try database.prepare(
        "SELECT log_index, term, kind, data FROM raft_entry"
          + " WHERE log_index >= ? AND log_index < ? ORDER BY log_index")
      selectTerm = try database.prepare("SELECT term FROM raft_entry WHERE log_index = ?")
      insertEntry = try database.prepare(
        "INSERT INTO raft_entry (log_index, term, kind, data) VALUES (?, ?, ?, ?)")
      deleteEntriesFrom = try database.prepare("DELETE FROM raft_entry WHERE log_index >= ?")
      deleteEntriesThrough = try database.prepare("DELETE FROM raft_entry WHERE log_index <= ?")
      deleteAllEntries = try database.prepare("DELETE FROM raft_entry")
      updateHardState = try database.prepare(
        "UPDATE raft_hard_state SET term = ?, vote = ?, commit_index = ? WHERE singleton = 1")
    }
  }

  struct LoadedState {
    var hardState: HardState
    var snapshotMetadata: SnapshotMetadata
    var compactedIndex: LogIndex
    var compactedTerm: Term
    var lastIndex: LogIndex
  }

  static func openError(_ error: SQLiteError, path: String) -> SQLiteRaftStorageError {
    if error.isCorrupt {
      return SQLiteRaftStorageError(
        code: .corrupt,
        message: "the file is not a readable SQLite database (damaged, or not a database at all);"
          + " it was left untouched",
        path: path, underlying: error)
    }
    return SQLiteRaftStorageError(
      code: .sqlite, message: "cannot open: \(error.message)", path: path, underlying: error)
  }

  static func checkIntegrity(
    _ database: SQLiteDatabase, _ check: IntegrityCheck, path: String
  ) throws {
    let pragma = check == .quick ? "quick_check" : "integrity_check"
    // Ten problems are enough to tell the operator what is wrong.
    let rows = try database.query("PRAGMA \(pragma)(10)")
    let problems = rows.compactMap { $0.first?.textValue }
    guard problems != ["ok"] else { return }
    throw SQLiteRaftStorageError(
      code: .corrupt,
      message: "PRAGMA \(pragma) failed; the file was left untouched: "
        + problems.joined(separator: "; "),
      path: path)
  }

  /// Verifies that the database is this node's, or initializes an empty one, in one IMMEDIATE
  /// transaction so a crash mid-creation leaves an empty database that is created again.
  /// Returns true when it created the database.
  static func checkIdentityOrCreate(
    _ database: SQLiteDatabase, clusterID: String, nodeID: NodeID, bootstrap: ConfState,
    initialSnapshot: Snapshot?, path: String
  ) throws -> Bool {
    try database.transaction(.immediate) {
      let applicationID = try database.pragmaInteger("application_id") ?? 0
      if applicationID == 0 {
        let objectCount = try database.query("SELECT count(*) FROM sqlite_schema").first?.first
        guard objectCount == .integer(0) else {
          throw SQLiteRaftStorageError(
            code: .foreignDatabase,
            message: "the database has tables but no StreamBus application id: it belongs to"
              + " another application; refusing to use it",
            path: path)
        }
        try create(
          database, clusterID: clusterID, nodeID: nodeID, bootstrap: bootstrap,
          initialSnapshot: initialSnapshot)
        return true
      }
      guard applicationID == Int64(Self.applicationID) else {
        throw SQLiteRaftStorageError(
          code: .foreignDatabase,
          message: "application_id is \(hex(applicationID)), not StreamBus Raft's "
            + "\(hex(Int64(Self.applicationID))): the file belongs to another application",
          path: path)
      }
      try verifyIdentity(database, clusterID: clusterID, nodeID: nodeID, path: path)
      return false
    }
  }

  private static func create(
    _ database: SQLiteDatabase, clusterID: String, nodeID: NodeID, bootstrap: ConfState,
    initialSnapshot: Snapshot?
  ) throws {
    try database.setPragma("application_id", String(Self.applicationID))
    try database.execute(schemaVersion1)
    try database.run(
      "INSERT INTO raft_identity (singleton, format_version, cluster_id, node_id)"
        + " VALUES (1, ?, ?, ?)",
      [.integer(formatVersion), .text(clusterID), .integer(Int64(bitPattern: nodeID))])
    // Without an initial snapshot everything starts at the empty-log sentinel (0, 0).
    let snapshot = initialSnapshot ?? Snapshot(metadata: SnapshotMetadata(confState: bootstrap))
    let index = SQLiteValue.integer(storedInteger(snapshot.metadata.index))
    let term = SQLiteValue.integer(storedInteger(snapshot.metadata.term))
    // The term is the snapshot's, so the node's term is never below its last entry's term;
    // the snapshot is committed by definition.
    try database.run(
      "INSERT INTO raft_hard_state (singleton, term, vote, commit_index) VALUES (1, ?, NULL, ?)",
      [term, index])
    try database.run(
      "INSERT INTO raft_log_state (singleton, compacted_index, compacted_term) VALUES (1, ?, ?)",
      [index, term])
    try database.run(
      "INSERT INTO raft_snapshot (singleton, snapshot_index, snapshot_term, data)"
        + " VALUES (1, ?, ?, ?)",
      [index, term, .blob(snapshot.data)])
    try writeMembers(database, snapshot.metadata.confState)
  }

  private static func verifyIdentity(
    _ database: SQLiteDatabase, clusterID: String, nodeID: NodeID, path: String
  ) throws {
    let rows: [[SQLiteValue]]
    do {
      rows = try database.query(
        "SELECT format_version, cluster_id, node_id FROM raft_identity WHERE singleton = 1")
    } catch let error as SQLiteError {
      throw SQLiteRaftStorageError(
        code: .corrupt,
        message: "the database has StreamBus's application id but its identity table cannot be"
          + " read",
        path: path, underlying: error)
    }
    guard let row = rows.first, row.count == 3, let version = row[0].integerValue,
      let storedClusterID = row[1].textValue, let storedNodeBits = row[2].integerValue
    else {
      throw SQLiteRaftStorageError(
        code: .corrupt, message: "the identity row is missing or malformed", path: path)
    }
    guard version == formatVersion else {
      throw SQLiteRaftStorageError(
        code: .unsupportedFormatVersion,
        message: version > formatVersion
          ? "format version \(version) was written by a newer StreamBus (this one reads"
            + " \(formatVersion))"
          : "format version \(version) is older than \(formatVersion) and has no migration",
        path: path)
    }
    guard storedClusterID == clusterID else {
      throw SQLiteRaftStorageError(
        code: .wrongCluster,
        message: "the database belongs to cluster \"\(storedClusterID)\", not \"\(clusterID)\"",
        path: path)
    }
    let storedNodeID = NodeID(bitPattern: storedNodeBits)
    guard storedNodeID == nodeID else {
      throw SQLiteRaftStorageError(
        code: .wrongNode,
        message: "the database belongs to node \(storedNodeID), not node \(nodeID)",
        path: path)
    }
  }

  static func writeMembers(_ database: SQLiteDatabase, _ confState: ConfState) throws {
    try database.run("DELETE FROM raft_conf_member")
    let insert = try database.prepare("INSERT INTO raft_conf_member (node_id, role) VALUES (?, ?)")
    for (members, role) in [(confState.voters, "voter"), (confState.learners, "learner")] {
      for member in members {
        try insert.bind(Int64(bitPattern: member), at: 1)
        try insert.bind(role, at: 2)
        try insert.run()
      }
    }
  }

  /// Reads the small state in one read transaction and checks the invariants that later reads
  /// rely on, so damage is reported at open rather than as a wrong answer later.
  static func load(
    _ database: SQLiteDatabase, _ statements: Statements, path: String
  ) throws -> LoadedState {
    func corrupt(_ message: String) -> SQLiteRaftStorageError {
      SQLiteRaftStorageError(code: .corrupt, message: message, path: path)
    }
    func unsigned(_ value: SQLiteValue, _ what: String) throws -> UInt64 {
      guard let integer = value.integerValue, let unsigned = UInt64(exactly: integer) else {
        throw corrupt("\(what) is not a non-negative integer: \(value)")
      }
      return unsigned
    }
    func singleRow(_ sql: String, columns: Int, _ table: String) throws -> [SQLiteValue] {
      let rows = try database.query(sql)
      guard rows.count == 1, rows[0].count == columns else {
        throw corrupt("table \(table) must hold exactly one row, holds \(rows.count)")
      }
      return rows[0]
    }

    return try database.transaction(.deferred) {
      let hardRow = try singleRow(
        "SELECT term, vote, commit_index FROM raft_hard_state", columns: 3, "raft_hard_state")
      let vote: NodeID?
      switch hardRow[1] {
      case .null: vote = nil
      case .integer(let bits) where bits != 0: vote = NodeID(bitPattern: bits)
      default: throw corrupt("hard state vote is not a node id: \(hardRow[1])")
      }
      let hardState = HardState(
        term: try unsigned(hardRow[0], "hard state term"), vote: vote,
        commit: try unsigned(hardRow[2], "hard state commit"))

      let logRow = try singleRow(
        "SELECT compacted_index, compacted_term FROM raft_log_state", columns: 2,
        "raft_log_state")
      let compactedIndex = try unsigned(logRow[0], "compacted index")
      let compactedTerm = try unsigned(logRow[1], "compacted term")

      let snapshotRow = try singleRow(
        "SELECT snapshot_index, snapshot_term FROM raft_snapshot", columns: 2, "raft_snapshot")
      let snapshotIndex = try unsigned(snapshotRow[0], "snapshot index")
      let snapshotTerm = try unsigned(snapshotRow[1], "snapshot term")

      var voters: [NodeID] = []
      var learners: [NodeID] = []
      var seen: Set<NodeID> = []
      for row in try database.query("SELECT node_id, role FROM raft_conf_member") {
        guard row.count == 2, let bits = row[0].integerValue, bits != 0,
          seen.insert(NodeID(bitPattern: bits)).inserted
        else {
          throw corrupt("membership row is not a distinct non-zero node id: \(row)")
        }
        switch row[1].textValue {
        case "voter": voters.append(NodeID(bitPattern: bits))
        case "learner": learners.append(NodeID(bitPattern: bits))
        default: throw corrupt("membership role is neither voter nor learner: \(row[1])")
        }
      }

      guard compactedIndex <= snapshotIndex else {
        throw corrupt(
          "compaction point \(compactedIndex) is after the snapshot at \(snapshotIndex)")
      }

      let span = try singleRow(
        "SELECT count(*), min(log_index), max(log_index) FROM raft_entry", columns: 3,
        "raft_entry")
      let entryCount = try unsigned(span[0], "entry count")
      var lastIndex = compactedIndex
      if entryCount > 0 {
        let first = try unsigned(span[1], "first entry index")
        let last = try unsigned(span[2], "last entry index")
        guard first == compactedIndex + 1, last >= first, last - first + 1 == entryCount else {
          throw corrupt(
            "the log is not contiguous after compaction point \(compactedIndex): \(entryCount)"
              + " entries span \(first)...\(last)")
        }
        lastIndex = last
      }
      return LoadedState(
        hardState: hardState,
        snapshotMetadata: SnapshotMetadata(
          index: snapshotIndex, term: snapshotTerm,
          confState: ConfState(voters: voters, learners: learners)),
        compactedIndex: compactedIndex, compactedTerm: compactedTerm, lastIndex: lastIndex)
    }
  }

  private static func hex(_ value: Int64) -> String {
    "0x" + String(UInt32(truncatingIfNeeded: value), radix: 16)
  }
}
