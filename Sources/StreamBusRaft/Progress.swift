// Per-follower replication progress as the leader sees it, with flow control.

/// Window of append messages sent to one follower and not yet acknowledged. Bounding both the
/// count and the bytes keeps a slow follower from making the leader buffer unbounded data
/// in the network, while still letting several appends be in flight (pipelining).
///
/// A ring buffer: adding and freeing never move the other elements (the buffer grows, up to
/// `messagesMax`, only while the window is full).
struct Inflights: Sendable {
  let messagesMax: Int
  let bytesMax: UInt64
  /// (last index carried by the message, payload bytes); the oldest at `start`, indices
  /// increasing from there around the ring.
  private var ring: [(index: LogIndex, bytes: UInt64)] = []
  private var start = 0
  private(set) var count = 0
  private(set) var bytes: UInt64 = 0

  init(messagesMax: Int, bytesMax: UInt64) {
    precondition(messagesMax > 0, "inflightMessagesMax must be positive")
    precondition(bytesMax > 0, "inflightBytesMax must be positive")
    self.messagesMax = messagesMax
    self.bytesMax = bytesMax
  }

  var isFull: Bool { count >= messagesMax || bytes >= bytesMax }

  mutating func add(index: LogIndex, bytes: UInt64) {
    precondition(!isFull, "adding to a full in-flight window")
    if count > 0 {
      precondition(
        index > ring[(start + count - 1) % ring.count].index, "in-flight indices must increase")
    }
    if count == ring.count {
      // Full ring (below messagesMax): unroll it into a larger one.
      var grown: [(index: LogIndex, bytes: UInt64)] = []
      let capacity = min(messagesMax, max(4, 2 * ring.count))
      grown.reserveCapacity(capacity)
      for offset in 0..<count { grown.append(ring[(start + offset) % ring.count]) }
      grown.append(contentsOf: repeatElement((index: 0, bytes: 0), count: capacity - count))
      ring = grown
      start = 0
    }
    ring[(start + count) % ring.count] = (index, bytes)
    count += 1
    self.bytes += bytes
  }

  /// Forgets every message whose entries are all acknowledged by `index`.
  mutating func freeUpTo(_ index: LogIndex) {
    while count > 0 && ring[start].index <= index {
      bytes -= ring[start].bytes
      start = (start + 1) % ring.count
      count -= 1
    }
  }

  /// Frees the oldest message: a heartbeat response proves the follower is alive, so let one
  /// more append through even if acknowledgements were lost.
  mutating func freeFirst() {
    guard count > 0 else { return }
    freeUpTo(ring[start].index)
  }

  mutating func reset() {
    start = 0
    count = 0
    bytes = 0
  }
}

/// How the leader is currently replicating to one follower.
public enum ReplicationState: Sendable, Hashable {
  /// Position unknown: send one append at a time and wait for the answer (or a heartbeat
  /// response) before sending the next, backing off with the follower's hints.
  case probe
  /// Position known: stream appends optimistically, bounded by the in-flight window.
  case replicate
  /// The entries the follower needs are compacted: a snapshot is being sent in chunks.
  case snapshot
}

/// The leader's view of one member.
///
/// Invariant: `match < next`; entries up to `match` are known to be on the follower's disk.
public struct Progress: Sendable {
  public internal(set) var match: LogIndex
  public internal(set) var next: LogIndex
  public internal(set) var state: ReplicationState = .probe
  public internal(set) var isLearner: Bool
  /// Probe state: an append is outstanding, so wait before sending another.
  var probeSent = false
  /// Snapshot state: index of the snapshot being sent.
  var pendingSnapshotIndex: LogIndex = 0
  /// Snapshot state: next byte of the snapshot data the follower expects.
  var snapshotOffset: UInt64 = 0
  /// Snapshot state: a chunk is outstanding.
  var snapshotChunkSent = false
  /// Heard from since the last CheckQuorum round.
  var recentActive = false
  /// Highest commit index sent to it (in an append or a heartbeat): a commit advance needs
  /// an extra message only for followers that have not heard it.
  var sentCommit: LogIndex = 0
  var inflights: Inflights

  init(next: LogIndex, isLearner: Bool, inflightMessagesMax: Int, inflightBytesMax: UInt64) {
    precondition(next > 0)
    self.match = 0
    self.next = next
    self.isLearner = isLearner
    self.inflights = Inflights(messagesMax: inflightMessagesMax, bytesMax: inflightBytesMax)
  }

  /// No more appends should go out until something is acknowledged.
  var isPaused: Bool {
    switch state {
    case .probe: return probeSent
    case .replicate: return inflights.isFull
    case .snapshot: return true
    }
  }

  private mutating func resetState(_ newState: ReplicationState) {
    probeSent = false
    pendingSnapshotIndex = 0
    snapshotOffset = 0
    snapshotChunkSent = false
    state = newState
    inflights.reset()
  }

  mutating func becomeProbe() {
    if state == .snapshot {
      // After a snapshot the follower has at least the snapshot's entries.
      let snapshotIndex = pendingSnapshotIndex
      resetState(.probe)
      next = max(match + 1, snapshotIndex + 1)
    } else {
      resetState(.probe)
      next = match + 1
    }
  }

  mutating func becomeReplicate() {
    resetState(.replicate)
    next = match + 1
  }

  mutating func becomeSnapshot(index: LogIndex) {
    resetState(.snapshot)
    pendingSnapshotIndex = index
  }

  /// Records that entries up to `lastIndex` were sent (`entryCount` of them, `bytes` total).
  mutating func sentEntries(lastIndex: LogIndex, entryCount: Int, bytes: UInt64) {
    switch state {
    case .replicate:
      if entryCount > 0 {
        precondition(lastIndex >= next, "replicate progress moved backwards")
        next = lastIndex + 1
        inflights.add(index: lastIndex, bytes: bytes)
      }
    case .probe:
      probeSent = true
    case .snapshot:
      preconditionFailure("appends are never sent in snapshot state")
    }
  }

  /// Applies an acknowledgement of everything up to `index`; returns false if it was stale.
  mutating func acknowledge(_ index: LogIndex) -> Bool {
    var updated = false
    if index > match {
      match = index
      updated = true
      probeSent = false
    }
    next = max(next, index + 1)
    return updated
  }

  mutating func recordSentCommit(_ commit: LogIndex) {
    sentCommit = max(sentCommit, commit)
  }

  /// A heartbeat response proves the follower is alive: let the next probe, one more
  /// pipelined append (even if acknowledgements were lost) or the next snapshot chunk go.
  mutating func heartbeatAnswered() {
    probeSent = false
    if state == .replicate && inflights.isFull { inflights.freeFirst() }
    if state == .snapshot { snapshotChunkSent = false }
  }

  /// The follower says it holds entries only up to `followerLastIndex`, below `match`: it lost
  /// entries it had acknowledged (its storage broke its durability promise). Nothing proves
  /// that what it still holds is ours, so forget the match and probe from its last index; a
  /// successful append (whose consistency check is the proof) sets the match again.
  mutating func lostEntries(followerLastIndex: LogIndex) {
    guard followerLastIndex < match, state != .snapshot else { return }
    resetState(.probe)
    match = 0
    next = followerLastIndex + 1
  }

  /// Handles a rejected append of `rejected` (the previous index the leader sent), given the
  /// follower's hint that its log may match up to `matchHint`. Returns false if the
  /// rejection is stale (answers an older message) and must be ignored.
  mutating func rejected(_ rejected: LogIndex, matchHint: LogIndex) -> Bool {
    if state == .replicate {
      if rejected <= match { return false }
      next = match + 1
      return true
    }
    if next - 1 != rejected { return false }
    // min(rejected, matchHint + 1) without overflowing on a peer's hint.
    next = max(matchHint < rejected ? matchHint + 1 : rejected, match + 1)
    probeSent = false
    return true
  }
}
