import StreamBusRaft
import StreamBusRaftSQLite
import Testing

/// The storage implementations that must behave identically.
enum StorageKind: String, CaseIterable, CustomTestStringConvertible {
  case memory
  case sqlite
  /// SQLite with a log-tail cache of a few entries, so reads mix cache and database.
  case sqliteTinyCache

  var testDescription: String { rawValue }
}

/// One storage under test plus what it needs to be closed and opened again. For the memory
/// storage "reopen" keeps the same object: it plays the role of the disk.
final class StorageHarness {
  static let clusterID = "test-cluster"
  static let nodeID: NodeID = 1

  let kind: StorageKind
  let directory: TemporaryDirectory
  let bootstrap: ConfState
  let options: SQLiteRaftStorage.Options
  private(set) var storage: any RaftStorage

  var databasePath: String { directory.path("raft.sqlite") }

  init(
    _ kind: StorageKind, bootstrap: ConfState = ConfState(voters: [1, 2, 3]),
    options: SQLiteRaftStorage.Options = .init()
  ) throws {
    self.kind = kind
    self.directory = try TemporaryDirectory()
    self.bootstrap = bootstrap
    var options = options
    if kind == .sqliteTinyCache {
      options.entryCacheBytesMax = 100
    }
    self.options = options
    switch kind {
    case .memory:
      storage = MemoryRaftStorage(confState: bootstrap)
    case .sqlite, .sqliteTinyCache:
      storage = try SQLiteRaftStorage(
        path: directory.path("raft.sqlite"), clusterID: Self.clusterID, nodeID: Self.nodeID,
        bootstrap: bootstrap, options: options)
    }
  }

  /// Closes and opens the storage again (SQLite), so reads must come from the file.
  func reopen() throws {
    guard let sqlite = storage as? SQLiteRaftStorage else { return }
    sqlite.close()
    storage = try SQLiteRaftStorage(
      path: databasePath, clusterID: Self.clusterID, nodeID: Self.nodeID,
      bootstrap: ConfState(voters: [99]), options: options)
  }

  func close() {
    (storage as? SQLiteRaftStorage)?.close()
  }
}

/// Entries `range` all in `term`, each carrying its index as payload.
func makeEntries(_ range: ClosedRange<LogIndex>, term: Term, payloadBytes: Int = 8) -> [Entry] {
  range.map { index in
    let payload = (0..<payloadBytes).map {
      UInt8(truncatingIfNeeded: index >> (8 * UInt64($0 % 8)))
    }
    return Entry(
      term: term, index: index, kind: index % 5 == 0 ? .confChange : .normal, data: payload)
  }
}

/// Everything a `RaftLogStorage` lets a reader observe, to compare two storages.
struct StorageObservation: Equatable, CustomStringConvertible {
  var hardState: HardState
  var confState: ConfState
  var firstIndex: LogIndex
  var lastIndex: LogIndex
  var terms: [LogIndex: Term]
  var entries: [Entry]
  var snapshot: Snapshot

  init(_ storage: any RaftLogStorage) throws {
    (hardState, confState) = try storage.initialState()
    firstIndex = try storage.firstIndex()
    lastIndex = try storage.lastIndex()
    terms = [:]
    for index in (firstIndex - 1)...max(lastIndex, firstIndex - 1) {
      terms[index] = try storage.term(at: index)
    }
    entries = try storage.entries(from: firstIndex, to: lastIndex + 1, maxBytes: .max)
    snapshot = try storage.snapshot()
  }

  var description: String {
    "hard=\(hardState) conf=\(confState) first=\(firstIndex) last=\(lastIndex)"
      + " snapshot=\(snapshot.metadata) entries=\(entries.map { "\($0.index)@\($0.term)" })"
  }
}
