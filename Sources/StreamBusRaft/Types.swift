// Value types shared by the Raft core, its storage implementations, the transport and the
// simulator. They are plain values (Sendable, Hashable) so they can cross actor boundaries
// and be compared in tests; all persistence formats live in Codec.swift.

/// Identifies one member of a Raft group. Zero is reserved for "no node" on the wire and on
/// disk (see `HardState.vote`), so real members always have a non-zero identifier.
public typealias NodeID = UInt64

/// A Raft term: a logical clock that only ever grows on a node. Term 0 means "before any
/// election" and is the term of the empty log's sentinel position 0.
public typealias Term = UInt64

/// Position of an entry in the replicated log. Index 0 is the empty-log sentinel; real entries
/// start at 1 and indices are dense (no gaps) on every node.
public typealias LogIndex = UInt64

/// What an entry's payload means to the layer above the log.
public enum EntryKind: UInt8, Sendable, Hashable, CaseIterable {
  /// Application data (an empty payload is the leader's no-op of a new term).
  case normal = 0
  /// An encoded `ConfChange`; the group's membership changes when this entry is applied.
  case confChange = 1
}

/// One slot of the replicated log.
///
/// Invariant (log matching): two logs that hold an entry with the same `index` and `term`
/// are identical up to and including that entry, so `(index, term)` names a whole prefix.
public struct Entry: Sendable, Hashable {
  public var term: Term
  public var index: LogIndex
  public var kind: EntryKind
  public var data: [UInt8]

  public init(term: Term, index: LogIndex, kind: EntryKind = .normal, data: [UInt8] = []) {
    precondition(index > 0, "entry index 0 is the empty-log sentinel")
    self.term = term
    self.index = index
    self.kind = kind
    self.data = data
  }

  /// Size used for byte budgets (append batches, in-flight windows, apply batches): the
  /// payload plus the fixed header of the binary encoding, so empty entries still cost.
  public var byteCount: UInt64 { UInt64(Entry.headerByteCount + data.count) }

  /// term(8) + index(8) + kind(1) + payload length(4).
  static let headerByteCount = 21
}

/// The part of a node's state that must be on stable storage before it answers any message:
/// otherwise a crash and restart could let it vote twice in a term or forget a commit.
public struct HardState: Sendable, Hashable {
  /// Latest term this node has seen.
  public var term: Term
  /// Candidate this node voted for in `term`, or nil if it has not voted in `term`.
  public var vote: NodeID?
  /// Highest log index known to be committed. Persisting it is an optimization (restarted
  /// nodes re-apply less), never needed for safety; it never decreases.
  public var commit: LogIndex

  public init(term: Term = 0, vote: NodeID? = nil, commit: LogIndex = 0) {
    precondition(vote != 0, "node 0 is reserved for 'no vote'")
    self.term = term
    self.vote = vote
    self.commit = commit
  }

  public static let empty = HardState()
  public var isEmpty: Bool { self == .empty }
}

/// Membership of the group as of some log position. Changes happen one member at a time
/// (see `ConfChange`), so no joint configuration is ever stored.
///
/// Invariants: both lists are sorted and duplicate-free, and no node is in both (a learner
/// receives the log but neither votes nor counts toward commit quorums).
public struct ConfState: Sendable, Hashable {
  public private(set) var voters: [NodeID]
  public private(set) var learners: [NodeID]

  public init(voters: [NodeID] = [], learners: [NodeID] = []) {
    let voterSet = Set(voters)
    let learnerSet = Set(learners)
    precondition(voterSet.count == voters.count, "duplicate voter in \(voters)")
    precondition(learnerSet.count == learners.count, "duplicate learner in \(learners)")
    precondition(voterSet.isDisjoint(with: learnerSet), "node is both voter and learner")
    precondition(!voterSet.contains(0) && !learnerSet.contains(0), "node 0 is reserved")
    self.voters = voters.sorted()
    self.learners = learners.sorted()
  }

  public var isEmpty: Bool { voters.isEmpty && learners.isEmpty }
  public func isVoter(_ node: NodeID) -> Bool { voters.contains(node) }
  public func isLearner(_ node: NodeID) -> Bool { learners.contains(node) }
  public func isMember(_ node: NodeID) -> Bool { isVoter(node) || isLearner(node) }
  /// Every member, voters first, each list sorted.
  public var members: [NodeID] { voters + learners }
}

/// A single membership change, carried in the data of a `.confChange` entry.
public struct ConfChange: Sendable, Hashable {
  public enum Kind: UInt8, Sendable, Hashable, CaseIterable {
    /// Adds a voter, or promotes an existing learner to voter.
    case addVoter = 0
    /// Adds a non-voting member that replicates the log (to catch up before promotion).
    case addLearner = 1
    /// Removes a voter or learner.
    case removeNode = 2
  }

  public var kind: Kind
  public var node: NodeID
  /// Opaque bytes for the layer above the core, replicated with the change (the host puts the
  /// new member's network addresses here so every node learns them from the log). Ignored by
  /// the core.
  public var context: [UInt8]

  public init(kind: Kind, node: NodeID, context: [UInt8] = []) {
    precondition(node != 0, "node 0 is reserved")
    self.kind = kind
    self.node = node
    self.context = context
  }

  /// The membership that results from applying this change to `conf`. Changes that do not
  /// change anything (adding an existing voter, removing a non-member) return `conf` as is,
  /// so every node applying the same committed entry reaches the same result.
  public func applied(to conf: ConfState) -> ConfState {
    var voters = conf.voters.filter { $0 != node }
    var learners = conf.learners.filter { $0 != node }
    switch kind {
    case .addVoter:
      voters.append(node)
    case .addLearner:
      // Demoting a voter to learner in one step is not supported: it would shrink the voter
      // set and grow the learner set at once; keep the voter as is.
      if conf.isVoter(node) { return conf }
      learners.append(node)
    case .removeNode:
      break
    }
    return ConfState(voters: voters, learners: learners)
  }
}

/// Describes the state a snapshot captures: everything up to and including `index`, which
/// had `term`, with membership `confState` as of that index.
public struct SnapshotMetadata: Sendable, Hashable {
  public var index: LogIndex
  public var term: Term
  public var confState: ConfState

  public init(index: LogIndex = 0, term: Term = 0, confState: ConfState = ConfState()) {
    self.index = index
    self.term = term
    self.confState = confState
  }
}

/// A state-machine image up to `metadata.index`. The core treats `data` as opaque bytes
/// produced by the application; index 0 means "no snapshot".
public struct Snapshot: Sendable, Hashable {
  public var metadata: SnapshotMetadata
  public var data: [UInt8]

  public init(metadata: SnapshotMetadata = SnapshotMetadata(), data: [UInt8] = []) {
    self.metadata = metadata
    self.data = data
  }

  public var isEmpty: Bool { metadata.index == 0 }
}
