// Configuration, public result types and errors of the Raft core.

/// Settings of one node. Times are in ticks: the driver decides how long a tick is.
public struct RaftConfig: Sendable {
  public var id: NodeID
  /// A follower that hears nothing from a leader for a random time in
  /// `electionTimeoutTicks ..< 2 * electionTimeoutTicks` starts an election.
  public var electionTimeoutTicks = 10
  /// Interval between leader heartbeats; must be well below the election timeout.
  public var heartbeatTicks = 1
  /// Run a pre-election that changes no term first, so a node rejoining after a partition
  /// cannot depose a healthy leader by bumping the term.
  public var preVote = true
  /// A leader steps down when it has not heard from a quorum within an election timeout,
  /// and followers that hear from a leader ignore vote requests for that long (leases).
  public var checkQuorum = true
  /// Payload bytes per append message (at least one entry is always sent).
  public var appendBytesMax: UInt64 = 1 << 20
  /// Append messages in flight to one follower before waiting for acknowledgements.
  public var inflightMessagesMax = 256
  /// Payload bytes in flight to one follower before waiting for acknowledgements.
  public var inflightBytesMax: UInt64 = 32 << 20
  /// Leader: bytes of its own not-yet-committed proposals beyond which new proposals are
  /// refused, so a leader cut off from its quorum cannot grow its log without bound.
  public var uncommittedBytesMax: UInt64 = 1 << 30
  /// Committed entry bytes handed out per Ready (at least one entry).
  public var applyBytesMax: UInt64 = 64 << 20
  /// Snapshot data bytes per InstallSnapshot message.
  public var snapshotChunkBytesMax = 1 << 20
  /// Largest snapshot a follower accepts from a leader.
  public var snapshotBytesMax: UInt64 = 1 << 34
  /// Seed of the generator that randomizes election timeouts; give every node its own.
  public var randomSeed: UInt64
  /// Index the application has already applied (a persistent state machine); nil means
  /// the state machine restarts from the latest snapshot.
  public var applied: LogIndex?
  /// Deliberate bugs, only for proving that the simulator's checkers detect them.
  public var testFaults = RaftTestFaults()

  public init(id: NodeID, randomSeed: UInt64) {
    self.id = id
    self.randomSeed = randomSeed
  }
}

/// Deliberate violations of the protocol. Never enable outside tests: each one breaks
/// safety, and the simulator's tests assert that it notices.
public struct RaftTestFaults: Sendable, Hashable {
  /// Grant a vote to a second candidate in a term we already voted in.
  public var grantSecondVote = false
  /// Commit by counting replicas for entries of earlier terms (Raft paper, Figure 8).
  public var skipCurrentTermCommitRule = false
  /// Hand entries to the application as soon as they are in the log, not when committed.
  public var applyBeforeCommit = false
  /// Honoured by drivers: send a Ready's messages before persisting it.
  public var ackBeforePersist = false
  /// Answer ReadIndex requests at once, without the heartbeat round that proves the
  /// leader was not deposed (Raft §8).
  public var readWithoutQuorum = false

  public init(
    grantSecondVote: Bool = false, skipCurrentTermCommitRule: Bool = false,
    applyBeforeCommit: Bool = false, ackBeforePersist: Bool = false,
    readWithoutQuorum: Bool = false
  ) {
    self.grantSecondVote = grantSecondVote
    self.skipCurrentTermCommitRule = skipCurrentTermCommitRule
    self.applyBeforeCommit = applyBeforeCommit
    self.ackBeforePersist = ackBeforePersist
    self.readWithoutQuorum = readWithoutQuorum
  }

  public var isEmpty: Bool { self == RaftTestFaults() }
}

public enum RaftRole: String, Sendable, Hashable {
  case follower
  case preCandidate
  case candidate
  case leader
}

/// Volatile state worth reporting to the driver when it changes (not persisted).
public struct SoftState: Sendable, Hashable {
  public var leader: NodeID?
  public var role: RaftRole
}

/// A confirmed linearizable read: once the application has applied `index`, reading its
/// state reflects every write committed before the read was requested.
public struct ReadState: Sendable, Hashable {
  public var index: LogIndex
  public var context: [UInt8]
}

/// Work for the driver, to be done in this order:
/// 1. persist `snapshot`, `entries` and `hardState` (one atomic write is best);
/// 2. only then send `messages` (they may acknowledge what was just persisted);
/// 3. install `snapshot` into the state machine, then apply `committedEntries` in order;
/// 4. serve `readStates` once applied reaches their index;
/// 5. call `advance()`. The node accepts no other call between `ready()` and `advance()`.
public struct Ready: Sendable {
  public var softState: SoftState?
  public var hardState: HardState?
  public var entries: [Entry] = []
  public var snapshot: Snapshot?
  public var committedEntries: [Entry] = []
  public var messages: [Message] = []
  public var readStates: [ReadState] = []

  public init() {}

  /// Whether anything must reach stable storage before the messages are sent.
  public var mustPersist: Bool { hardState != nil || !entries.isEmpty || snapshot != nil }
}

public enum RaftError: Error, Sendable, Hashable, CustomStringConvertible {
  /// Only the leader accepts this operation; `leaderHint` is the leader we know of.
  case notLeader(leaderHint: NodeID?)
  /// The proposal was not appended (for example during a leadership transfer).
  case proposalDropped(String)
  /// Another membership change is not yet applied; one at a time is the safety rule.
  case confChangePending
  case invalidConfChange(String)
  case invalidRequest(String)
  /// A peer sent a message that cannot be valid; it was ignored.
  case invalidMessage(String)
  /// Storage content contradicts itself; the node stopped.
  case corruptStorage(String)
  /// A peer's messages contradict Raft's guarantees (e.g. overwrite a committed entry);
  /// the node stopped rather than diverge.
  case safetyViolation(String)
  /// An earlier error stopped the node; it must be restarted from storage.
  case stopped(String)

  public var description: String {
    switch self {
    case .notLeader(let hint): return "not leader (leader hint \(hint.map(String.init) ?? "none"))"
    case .proposalDropped(let why): return "proposal dropped: \(why)"
    case .confChangePending: return "a membership change is already pending"
    case .invalidConfChange(let why): return "invalid membership change: \(why)"
    case .invalidRequest(let why): return "invalid request: \(why)"
    case .invalidMessage(let why): return "invalid message: \(why)"
    case .corruptStorage(let why): return "corrupt storage: \(why)"
    case .safetyViolation(let why): return "safety violation: \(why)"
    case .stopped(let why): return "node stopped: \(why)"
    }
  }

  /// Errors that reject one request but leave the node running.
  var isRequestError: Bool {
    switch self {
    case .notLeader, .proposalDropped, .confChangePending, .invalidConfChange, .invalidRequest,
      .invalidMessage:
      return true
    case .corruptStorage, .safetyViolation, .stopped:
      return false
    }
  }
}

/// Small, fast, seedable generator (SplitMix64). Deterministic across platforms, so a seed
/// reproduces the same election timings everywhere.
public struct SplitMix64: RandomNumberGenerator, Sendable {
  private var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var value = state
    value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
    value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
    return value ^ (value >> 31)
  }

  /// Uniform in `0..<bound` (bound > 0), without modulo bias worth caring about for jitter.
  public mutating func next(below bound: UInt64) -> UInt64 {
    precondition(bound > 0)
    return next() % bound
  }
}
