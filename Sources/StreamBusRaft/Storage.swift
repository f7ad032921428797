// Storage contract between the Raft core and whoever persists its state.
//
// The core only *reads* stable storage (RaftLogStorage). Writing is the driver's job: it
// persists what `Ready` hands out (RaftStorage), and only then sends messages or tells the
// core `advance()`. That split keeps the core free of I/O and lets the simulator decide
// exactly what survives a crash.

/// Errors the core knows how to react to. Any other error thrown by storage stops the node:
/// guessing about the log after an I/O failure could break safety.
public enum RaftStorageError: Error, Sendable, Hashable {
  /// The requested index is at or before the compaction point: only a snapshot covers it.
  case compacted
  /// The requested index is after the last stored entry.
  case unavailable
}

/// Read-only view of the persisted log, modelled on etcd's `Storage`.
///
/// The stored log is the range `firstIndex()...lastIndex()` preceded by one compacted
/// position `firstIndex() - 1` whose term is still known (it is the last index of the latest
/// snapshot or compaction). An empty, never-compacted log has firstIndex 1 and lastIndex 0.
///
/// Implementations are classes (state shared between the driver that writes and the core
/// that reads) and need not be thread-safe: one driver owns both.
public protocol RaftLogStorage: AnyObject {
  /// Hard state and membership at start-up. The membership is the one of the latest
  /// snapshot (or the bootstrap membership when there is none): the core replays the
  /// configuration entries that follow it in the log itself.
  func initialState() throws -> (HardState, ConfState)

  /// Entries with indices in `from..<to`, stopping once their `byteCount`s sum past `maxBytes`
  /// but always returning at least one entry when the range is non-empty.
  /// Throws `.compacted` if `from < firstIndex()`, `.unavailable` if `to > lastIndex() + 1`.
  func entries(from: LogIndex, to: LogIndex, maxBytes: UInt64) throws -> [Entry]

  /// Term of the entry at `index`, for any index in `firstIndex() - 1 ... lastIndex()`.
  /// Throws `.compacted` before that range and `.unavailable` after it.
  func term(at index: LogIndex) throws -> Term

  /// Index of the first entry still available (the compaction point plus one).
  func firstIndex() throws -> LogIndex

  /// Index of the last stored entry (the compaction point if no entries follow it).
  func lastIndex() throws -> LogIndex

  /// The most recent snapshot; an empty snapshot (index 0) if there is none yet.
  func snapshot() throws -> Snapshot
}

/// Write side, used by the driver (and the simulator) to persist a `Ready` before acting on
/// it. Every method is durable when it returns: a crash afterwards must not lose the write.
public protocol RaftStorage: RaftLogStorage {
  /// Appends `entries` (consecutive indices). An existing entry at or after
  /// `entries[0].index` is replaced together with everything after it, because a
  /// conflicting suffix is exactly what the leader told us to overwrite.
  /// Precondition: `entries[0].index` is in `firstIndex() ... lastIndex() + 1`.
  func append(_ entries: [Entry]) throws

  /// Replaces the persisted hard state.
  func setHardState(_ hardState: HardState) throws

  /// Replaces the whole log by `snapshot`: afterwards firstIndex is `metadata.index + 1`,
  /// the log holds no entries, and the membership is `metadata.confState`.
  /// Snapshots older than the stored one are ignored (an InstallSnapshot may arrive late).
  func applySnapshot(_ snapshot: Snapshot) throws

  /// Records a snapshot the application took at `index` (which must be stored and applied)
  /// without discarding entries; call `compact(upTo:)` afterwards to reclaim space.
  func createSnapshot(at index: LogIndex, confState: ConfState, data: [UInt8]) throws -> Snapshot

  /// Discards entries before `index`, making `index` the new compaction point (its term
  /// stays known). Precondition: `index <= lastIndex()` and a snapshot covers `index`.
  func compact(upTo index: LogIndex) throws

  /// Persists one `Ready` atomically: snapshot, then entries, then hard state. The default
  /// applies them one by one; transactional stores override it to write one transaction
  /// (group commit).
  func persist(hardState: HardState?, entries: [Entry], snapshot: Snapshot?) throws
}

extension RaftStorage {
  public func persist(hardState: HardState?, entries: [Entry], snapshot: Snapshot?) throws {
    if let snapshot { try applySnapshot(snapshot) }
    if !entries.isEmpty { try append(entries) }
    if let hardState { try setHardState(hardState) }
  }
}

/// Storage held in memory, used by tests and by the simulator (where the object outlives a
/// simulated crash of its node, so it plays the role of the disk).
public final class MemoryRaftStorage: RaftStorage {
  public private(set) var hardState: HardState
  /// Latest snapshot; its membership is the one reported by `initialState()`, because
  /// configuration entries in the log are replayed by the node on start-up.
  private var snapshotValue: Snapshot
  /// Index and term of the compaction point (the position before the first stored entry).
  private var compactedIndex: LogIndex
  private var compactedTerm: Term
  /// Stored entries; `storedEntries[k].index == compactedIndex + 1 + k`.
  private var storedEntries: [Entry]

  public init(
    confState: ConfState = ConfState(), hardState: HardState = HardState(),
    entries: [Entry] = []
  ) {
    self.hardState = hardState
    self.snapshotValue = Snapshot(metadata: SnapshotMetadata(confState: confState))
    self.compactedIndex = 0
    self.compactedTerm = 0
    self.storedEntries = []
    if !entries.isEmpty {
      precondition(entries[0].index == 1, "initial entries must start at index 1")
      appendChecked(entries)
    }
  }

  public func initialState() throws -> (HardState, ConfState) {
    (hardState, snapshotValue.metadata.confState)
  }

  public func entries(from: LogIndex, to: LogIndex, maxBytes: UInt64) throws -> [Entry] {
    precondition(from <= to, "entries(from: \(from), to: \(to)) has from > to")
    if from <= compactedIndex { throw RaftStorageError.compacted }
    if to > lastIndexValue + 1 { throw RaftStorageError.unavailable }
    var result: [Entry] = []
    var byteCount: UInt64 = 0
    var index = from
    while index < to {
      let entry = storedEntries[Int(index - compactedIndex - 1)]
      byteCount += entry.byteCount
      if !result.isEmpty && byteCount > maxBytes { break }
      result.append(entry)
      index += 1
    }
    return result
  }

  public func term(at index: LogIndex) throws -> Term {
    if index < compactedIndex { throw RaftStorageError.compacted }
    if index == compactedIndex { return compactedTerm }
    if index > lastIndexValue { throw RaftStorageError.unavailable }
    return storedEntries[Int(index - compactedIndex - 1)].term
  }

  public func firstIndex() throws -> LogIndex { compactedIndex + 1 }
  public func lastIndex() throws -> LogIndex { lastIndexValue }
  public func snapshot() throws -> Snapshot { snapshotValue }

  private var lastIndexValue: LogIndex { compactedIndex + LogIndex(storedEntries.count) }

  public func append(_ entries: [Entry]) throws {
    appendChecked(entries)
  }

  private func appendChecked(_ entries: [Entry]) {
    guard let first = entries.first else { return }
    for (offset, entry) in entries.enumerated() {
      precondition(entry.index == first.index + LogIndex(offset), "appended entries have gaps")
    }
    precondition(
      first.index > compactedIndex && first.index <= lastIndexValue + 1,
      "append at \(first.index) outside \(compactedIndex + 1)...\(lastIndexValue + 1)")
    storedEntries.removeSubrange(Int(first.index - compactedIndex - 1)...)
    storedEntries.append(contentsOf: entries)
    precondition(lastIndexValue == entries[entries.count - 1].index)
  }

  /// Plays a disk that acknowledged writes it never made durable (write caching, fsync
  /// turned off): forgets every entry after `index` and lowers the commit index with them.
  /// For tests of how the cluster copes; a real storage must never do this.
  public func loseEntries(after index: LogIndex) {
    guard index < lastIndexValue else { return }
    precondition(index >= compactedIndex, "losing entries below the compaction point")
    storedEntries.removeSubrange(Int(index - compactedIndex)...)
    hardState.commit = min(hardState.commit, index)
  }

  public func setHardState(_ hardState: HardState) throws {
    precondition(hardState.term >= self.hardState.term, "persisted term went backwards")
    self.hardState = hardState
  }

  public func applySnapshot(_ snapshot: Snapshot) throws {
    guard snapshot.metadata.index > snapshotValue.metadata.index else { return }
    snapshotValue = snapshot
    compactedIndex = snapshot.metadata.index
    compactedTerm = snapshot.metadata.term
    storedEntries = []
  }

  public func createSnapshot(at index: LogIndex, confState: ConfState, data: [UInt8]) throws
    -> Snapshot
  {
    precondition(index <= lastIndexValue, "snapshot at \(index) beyond last \(lastIndexValue)")
    if index <= snapshotValue.metadata.index { return snapshotValue }
    let snapshot = Snapshot(
      metadata: SnapshotMetadata(index: index, term: try term(at: index), confState: confState),
      data: data)
    snapshotValue = snapshot
    return snapshot
  }

  public func compact(upTo index: LogIndex) throws {
    if index <= compactedIndex { return }
    precondition(index <= lastIndexValue, "compact(upTo: \(index)) beyond \(lastIndexValue)")
    precondition(index <= snapshotValue.metadata.index, "compacting entries no snapshot covers")
    let newTerm = try term(at: index)
    storedEntries.removeFirst(Int(index - compactedIndex))
    compactedIndex = index
    compactedTerm = newTerm
  }
}
