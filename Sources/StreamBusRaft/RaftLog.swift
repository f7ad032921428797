// The node's view of its log: the persisted part (read through RaftLogStorage) followed by
// an unstable tail (entries and possibly a snapshot) that the next Ready hands to the driver
// for persisting.

struct RaftLog {
  let storage: any RaftLogStorage
  /// A snapshot received from the leader and not yet persisted; replaces the whole log.
  private(set) var unstableSnapshot: Snapshot?
  /// Entries not yet persisted; `unstableEntries[k].index == unstableOffset + k`.
  private(set) var unstableEntries: [Entry] = []
  private(set) var unstableOffset: LogIndex
  /// Highest index known to be committed (on a quorum's disks).
  private(set) var committed: LogIndex
  /// Highest index handed to the application and acknowledged by `advance()`.
  var applied: LogIndex

  init(storage: any RaftLogStorage, committed: LogIndex, applied: LogIndex) throws {
    self.storage = storage
    let first = try storage.firstIndex()
    let last = try storage.lastIndex()
    guard first >= 1, last + 1 >= first else {
      throw RaftError.corruptStorage("first index \(first) after last index \(last) + 1")
    }
    guard committed >= first - 1, committed <= last else {
      throw RaftError.corruptStorage("commit \(committed) outside \(first - 1)...\(last)")
    }
    guard applied >= first - 1, applied <= committed else {
      throw RaftError.corruptStorage("applied \(applied) outside \(first - 1)...\(committed)")
    }
    self.unstableOffset = last + 1
    self.committed = committed
    self.applied = applied
  }

  func firstIndex() throws -> LogIndex {
    if let snapshot = unstableSnapshot { return snapshot.metadata.index + 1 }
    return try storage.firstIndex()
  }

  func lastIndex() throws -> LogIndex {
    if !unstableEntries.isEmpty { return unstableOffset + LogIndex(unstableEntries.count) - 1 }
    if let snapshot = unstableSnapshot { return snapshot.metadata.index }
    return try storage.lastIndex()
  }

  func term(at index: LogIndex) throws -> Term {
    let first = try firstIndex()
    if first > 0 && index < first - 1 { throw RaftStorageError.compacted }
    if index > (try lastIndex()) { throw RaftStorageError.unavailable }
    if let snapshot = unstableSnapshot, index == snapshot.metadata.index {
      return snapshot.metadata.term
    }
    if index >= unstableOffset && !unstableEntries.isEmpty {
      return unstableEntries[Int(index - unstableOffset)].term
    }
    return try storage.term(at: index)
  }

  func lastTerm() throws -> Term { try term(at: try lastIndex()) }

  /// Term at `index` or nil when compacted or beyond the log; other storage errors propagate.
  func termIfKnown(at index: LogIndex) throws -> Term? {
    do {
      return try term(at: index)
    } catch is RaftStorageError {
      return nil
    }
  }

  func matchTerm(_ index: LogIndex, _ term: Term) throws -> Bool {
    try termIfKnown(at: index) == term
  }

  /// Raft's "at least as up-to-date" comparison of a candidate's last entry with ours.
  func isUpToDate(lastIndex candidateIndex: LogIndex, lastTerm candidateTerm: Term) throws -> Bool {
    let ourTerm = try lastTerm()
    let ourIndex = try lastIndex()
    return candidateTerm > ourTerm || (candidateTerm == ourTerm && candidateIndex >= ourIndex)
  }

  /// Entries in `from..<to`, bounded by `maxBytes` (at least one entry when non-empty).
  func entries(from: LogIndex, to: LogIndex, maxBytes: UInt64) throws -> [Entry] {
    precondition(from <= to, "entries(from: \(from), to: \(to))")
    if from < (try firstIndex()) { throw RaftStorageError.compacted }
    let last = try lastIndex()
    precondition(to <= last + 1, "entries beyond the log end")
    var result: [Entry] = []
    var byteCount: UInt64 = 0
    if from < unstableOffset {
      let storedTo = min(to, unstableOffset)
      result = try storage.entries(from: from, to: storedTo, maxBytes: maxBytes)
      guard !result.isEmpty, result[0].index == from else {
        throw RaftError.corruptStorage("storage returned wrong entries for \(from)..<\(storedTo)")
      }
      if result.count < Int(storedTo - from) { return result }
      byteCount = result.reduce(0) { $0 + $1.byteCount }
    }
    var index = max(from, unstableOffset)
    while index < to {
      let entry = unstableEntries[Int(index - unstableOffset)]
      byteCount += entry.byteCount
      if !result.isEmpty && byteCount > maxBytes { break }
      result.append(entry)
      index += 1
    }
    return result
  }

  /// Follower side of AppendEntries: if our log holds (`index`, `term`), appends `entries`
  /// after it (overwriting a conflicting suffix) and returns the last index the leader's
  /// message proves we share; nil if the consistency check fails.
  mutating func maybeAppend(
    index: LogIndex, term: Term, commit leaderCommit: LogIndex, entries: [Entry]
  ) throws -> LogIndex? {
    guard try matchTerm(index, term) else { return nil }
    let lastNew = index + LogIndex(entries.count)
    if let conflict = try firstConflict(entries) {
      precondition(
        conflict > committed, "entry \(conflict) conflicts with committed \(committed)")
      append(Array(entries[Int(conflict - index - 1)...]))
    }
    commit(to: min(leaderCommit, lastNew))
    return lastNew
  }

  /// Index of the first entry that is not already in our log with the same term, or nil if
  /// all of them are (a duplicate or reordered message must not truncate anything). Terms
  /// are compared only where the entries overlap our log: past our last index every entry
  /// is new (the common case, with no lookup at all).
  private func firstConflict(_ entries: [Entry]) throws -> LogIndex? {
    let last = try lastIndex()
    for entry in entries {
      if entry.index > last { return entry.index }
      if try !matchTerm(entry.index, entry.term) { return entry.index }
    }
    return nil
  }

  /// Appends entries at or after position `committed + 1`, truncating what follows.
  mutating func append(_ entries: [Entry]) {
    guard let first = entries.first else { return }
    precondition(first.index > committed, "append at \(first.index) overwrites committed")
    if first.index == unstableOffset + LogIndex(unstableEntries.count) {
      unstableEntries.append(contentsOf: entries)
    } else if first.index <= unstableOffset {
      // Replaces persisted entries too: the driver's append truncates them when persisting.
      unstableOffset = first.index
      unstableEntries = entries
    } else {
      unstableEntries.removeSubrange(Int(first.index - unstableOffset)...)
      unstableEntries.append(contentsOf: entries)
    }
  }

  /// Index of the largest entry at or before `index` whose term is at most `term`
  /// (and that term), used by fast backtracking on both sides.
  func findConflict(byTerm term: Term, atOrBefore index: LogIndex) throws -> (LogIndex, Term) {
    var candidate = index
    while true {
      guard let candidateTerm = try termIfKnown(at: candidate) else { return (candidate, 0) }
      if candidateTerm <= term || candidate == 0 { return (candidate, candidateTerm) }
      candidate -= 1
    }
  }

  mutating func commit(to index: LogIndex) {
    guard index > committed else { return }
    committed = index
  }

  /// Commit raised past entries we may not hold, used only by the apply-before-commit fault.
  mutating func forceCommitForFault(to index: LogIndex) { committed = max(committed, index) }

  /// Replaces the log by a snapshot from the leader; the snapshot and later entries the
  /// leader sends become the new unstable tail.
  mutating func restore(_ snapshot: Snapshot) {
    precondition(snapshot.metadata.index > committed, "restoring an old snapshot")
    unstableSnapshot = snapshot
    unstableEntries = []
    unstableOffset = snapshot.metadata.index + 1
    committed = snapshot.metadata.index
  }

  /// Committed entries not yet handed to the application, at most `maxBytes` of them; none
  /// while an unstable snapshot waits (the application must install it first).
  func nextCommittedEntries(maxBytes: UInt64, upTo limit: LogIndex) throws -> [Entry] {
    guard unstableSnapshot == nil, limit > applied else { return [] }
    return try entries(from: applied + 1, to: limit + 1, maxBytes: maxBytes)
  }

  /// Marks the unstable tail as persisted (called from `advance()`).
  mutating func markPersisted() throws {
    let expectedLast = try lastIndex()
    unstableSnapshot = nil
    unstableEntries = []
    unstableOffset = expectedLast + 1
    let storedLast = try storage.lastIndex()
    guard storedLast == expectedLast else {
      throw RaftError.corruptStorage("persisted last index \(storedLast), expected \(expectedLast)")
    }
  }
}
