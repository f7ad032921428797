// The Raft algorithm as a pure value: no I/O, no clock, no threads, no global randomness.
// Time is `tick()`, input is `step(message)` and the client calls, output is `ready()`.
// Terms are reconciled in one place (`stepChecked`) before dispatching to the role's
// handler (stepLeader / stepCandidate / stepFollower).

/// One Raft node. A driver owns it together with its storage and runs the loop
/// `tick`/`step`/`propose` → `ready()` → persist, send, apply → `advance()`.
public struct RaftNode {
  public let id: NodeID
  let config: RaftConfig
  var log: RaftLog

  public private(set) var term: Term = 0
  public private(set) var vote: NodeID?
  public private(set) var role: RaftRole = .follower
  public private(set) var leader: NodeID?
  /// Membership as of the applied index (changes take effect when applied).
  public private(set) var confState: ConfState
  /// Leader only: replication progress per member, including itself.
  public private(set) var progress: [NodeID: Progress] = [:]
  /// Leader only: the member leadership is being transferred to.
  public private(set) var leadTransferee: NodeID?

  private var votes: [NodeID: Bool] = [:]
  private var electionElapsed = 0
  private var heartbeatElapsed = 0
  private var randomizedElectionTimeout = 0
  private var random: SplitMix64
  /// Index of the latest membership change appended by this leader (or of its no-op):
  /// no other change may be proposed until it is applied.
  private var pendingConfIndex: LogIndex = 0
  /// Leader: payload bytes of this term's proposals not yet applied (it drops as `advance()`
  /// hands committed entries to the application, a little after they commit).
  private var uncommittedBytes: UInt64 = 0
  /// Leader: followers may need appends (new entries, a new commit index, a freed window);
  /// the next `ready()` sends them (`sendPendingAppends`).
  private var appendsPending = false

  private var outbox: [Message] = []
  private var readStates: [ReadState] = []
  /// Leader: ReadIndex requests waiting for a heartbeat quorum, oldest first.
  private var pendingReads: [PendingRead] = []
  /// Leader: ReadIndex requests that arrived before the leader committed an entry of its
  /// term (its commit index may be stale until then).
  private var readsAwaitingCommit: [PendingRead] = []
  /// Follower: the snapshot being received in chunks.
  private var snapshotReceipt: SnapshotReceipt?

  private var previousHardState: HardState
  private var previousSoftState: SoftState
  private var readyInProgress: ReadyMark?
  private var stoppedReason: String?

  private struct PendingRead {
    var index: LogIndex
    var context: [UInt8]
    var requester: NodeID
    var acks: Set<NodeID>
  }

  private struct SnapshotReceipt {
    var metadata: SnapshotMetadata
    var totalBytes: UInt64
    var data: [UInt8]
  }

  /// What a Ready handed out, so `advance()` knows what is now persisted and applied.
  private struct ReadyMark {
    var hardState: HardState
    var snapshotIndex: LogIndex?
    var committedEntries: [Entry]
  }

  private enum CampaignKind {
    case preElection
    case election
    /// Leadership transfer, or a campaign forced by the operator: skips PreVote and
    /// overrides the voters' leases.
    case transfer
  }

  // MARK: - Start-up

  /// Restores a node from `storage` (a new node starts from the bootstrap membership in it).
  public init(config: RaftConfig, storage: any RaftLogStorage) throws {
    precondition(config.id != 0, "node 0 is reserved")
    precondition(config.heartbeatTicks > 0, "heartbeatTicks must be positive")
    precondition(
      config.electionTimeoutTicks > config.heartbeatTicks,
      "electionTimeoutTicks must exceed heartbeatTicks")
    precondition(config.snapshotChunkBytesMax > 0, "snapshotChunkBytesMax must be positive")
    self.id = config.id
    self.config = config
    self.random = SplitMix64(seed: config.randomSeed)
    let (hardState, storedConf) = try storage.initialState()
    // The state machine restarts from the latest snapshot, which may lie ahead of the
    // compaction point when the application kept some entries behind it.
    let snapshotIndex = try storage.snapshot().metadata.index
    let applied = config.applied ?? snapshotIndex
    // A persisted snapshot is committed by definition, even if the hard state lags.
    let committed = max(hardState.commit, snapshotIndex)
    self.log = try RaftLog(storage: storage, committed: committed, applied: applied)
    self.confState = storedConf
    self.term = hardState.term
    self.vote = hardState.vote
    self.previousHardState = hardState
    self.previousSoftState = SoftState(leader: nil, role: .follower)
    // Membership changes take effect when applied: replay those the application applied.
    if applied > snapshotIndex {
      for entry in try log.entries(from: snapshotIndex + 1, to: applied + 1, maxBytes: .max)
      where entry.kind == .confChange {
        confState = try ConfChange(decoding: entry.data).applied(to: confState)
      }
    }
    try becomeFollower(term: hardState.term, leader: nil)
  }

  // MARK: - Public state

  public var committedIndex: LogIndex { log.committed }
  public var appliedIndex: LogIndex { log.applied }
  public func lastIndex() throws -> LogIndex { try log.lastIndex() }
  public func lastTerm() throws -> Term { try log.lastTerm() }
  /// Whether this node may become leader (learners and removed nodes may not).
  public var isPromotable: Bool { confState.isVoter(id) }
  public var softState: SoftState { SoftState(leader: leader, role: role) }
  public var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
  /// The reason the node stopped after a storage or safety error, if it did.
  public var stopReason: String? { stoppedReason }
  /// Highest term a peer's message may carry. Real terms never come near it; the margin
  /// keeps `term + 1` from overflowing however often we campaign after adopting it.
  public static let termMax: Term = Term.max / 2

  // MARK: - Inputs

  /// Advances logical time by one tick (elections, heartbeats, CheckQuorum).
  public mutating func tick() throws {
    try guarded { node in
      if node.role == .leader { try node.tickLeader() } else { try node.tickElection() }
    }
  }

  /// Processes a message from a peer.
  public mutating func step(_ message: Message) throws {
    try guarded { try $0.stepChecked(message) }
  }

  /// Proposes application data; returns the index it was appended at (commit not implied).
  @discardableResult
  public mutating func propose(_ data: [UInt8]) throws -> LogIndex {
    try guarded { node in
      try node.requireLeaderAcceptingProposals()
      return try node.appendAsLeader(kind: .normal, data: data)
    }
  }

  /// Proposes one membership change. Rejected while another is unapplied, and until the
  /// leader has applied an entry of its own term.
  @discardableResult
  public mutating func proposeConfChange(_ change: ConfChange) throws -> LogIndex {
    try guarded { node in
      try node.requireLeaderAcceptingProposals()
      guard node.pendingConfIndex <= node.log.applied else { throw RaftError.confChangePending }
      let result = change.applied(to: node.confState)
      guard !result.voters.isEmpty else {
        throw RaftError.invalidConfChange("removing \(change.node) leaves no voter")
      }
      let index = try node.appendAsLeader(kind: .confChange, data: change.encoded())
      node.pendingConfIndex = index
      return index
    }
  }

  /// Requests a linearizable read. The answer arrives as a `ReadState` with the same
  /// `context` (which should be unique) in a later Ready, on this node.
  public mutating func readIndex(context: [UInt8]) throws {
    try guarded { node in
      guard !context.isEmpty else { throw RaftError.invalidRequest("empty read context") }
      if node.role == .leader {
        try node.handleReadRequest(context: context, requester: node.id)
      } else if let leader = node.leader {
        var message = node.message(.readIndex, to: leader)
        message.context = context
        node.send(message)
      } else {
        throw RaftError.notLeader(leaderHint: nil)
      }
    }
  }

  /// Hands leadership to `target` once its log is complete (it then campaigns at once).
  /// Proposals are refused until the transfer completes or an election timeout passes.
  public mutating func transferLeadership(to target: NodeID) throws {
    try guarded { node in
      guard node.role == .leader else { throw RaftError.notLeader(leaderHint: node.leader) }
      guard target != node.id, node.confState.isVoter(target) else {
        throw RaftError.invalidRequest("cannot transfer leadership to \(target)")
      }
      if node.leadTransferee == target { return }
      node.leadTransferee = target
      node.electionElapsed = 0
      if node.progress[target]?.match == (try node.log.lastIndex()) {
        node.sendTimeoutNow(to: target)
      } else {
        node.appendsPending = true
      }
    }
  }

  /// Starts an election now (tests and operator tooling; normally ticks do this). Voters
  /// that heard from a leader within the election timeout ignore it, unless
  /// `overridingLeases` is set: then it runs like the target's side of a leadership
  /// transfer (no PreVote, leases overridden), which can depose a healthy leader.
  public mutating func campaign(overridingLeases: Bool = false) throws {
    try guarded { node in
      let kind: CampaignKind =
        overridingLeases ? .transfer : node.config.preVote ? .preElection : .election
      try node.hup(kind: kind)
    }
  }

  // MARK: - Ready / advance

  public var hasReady: Bool {
    if stoppedReason != nil || readyInProgress != nil { return false }
    if softState != previousSoftState || hardState != previousHardState { return true }
    if !log.unstableEntries.isEmpty || log.unstableSnapshot != nil { return true }
    if !outbox.isEmpty || !readStates.isEmpty { return true }
    if appendsPending && role == .leader { return true }
    guard let limit = try? applyLimit() else { return true }
    return log.unstableSnapshot == nil && limit > log.applied
  }

  /// Whether the next Ready has something to persist (entries, snapshot or hard state).
  public var hasPersistentWork: Bool {
    hardState != previousHardState || !log.unstableEntries.isEmpty
      || log.unstableSnapshot != nil
  }

  /// Collects the work accumulated since the last `advance()`; see `Ready` for the contract.
  public mutating func ready() throws -> Ready {
    try guarded { node in
      try node.sendPendingAppends()
      var ready = Ready()
      let soft = node.softState
      if soft != node.previousSoftState {
        ready.softState = soft
        node.previousSoftState = soft
      }
      let hard = node.hardState
      if hard != node.previousHardState { ready.hardState = hard }
      ready.entries = node.log.unstableEntries
      ready.snapshot = node.log.unstableSnapshot
      ready.committedEntries = try node.log.nextCommittedEntries(
        maxBytes: node.config.applyBytesMax, upTo: try node.applyLimit())
      ready.messages = node.outbox
      node.outbox = []
      ready.readStates = node.readStates
      node.readStates = []
      if let first = ready.committedEntries.first {
        precondition(first.index == node.log.applied + 1, "committed entries skip an index")
      }
      node.readyInProgress = ReadyMark(
        hardState: hard, snapshotIndex: ready.snapshot?.metadata.index,
        committedEntries: ready.committedEntries)
      return ready
    }
  }

  /// Tells the node the last Ready was fully handled: persisted, sent and applied.
  public mutating func advance() throws {
    precondition(readyInProgress != nil, "advance() without ready()")
    try guarded(duringReady: true) { node in
      guard let mark = node.readyInProgress else { return }
      node.readyInProgress = nil
      if let snapshotIndex = mark.snapshotIndex {
        node.log.applied = max(node.log.applied, snapshotIndex)
      }
      try node.log.markPersisted()
      node.previousHardState = mark.hardState
      for entry in mark.committedEntries {
        precondition(entry.index == node.log.applied + 1, "applying out of order")
        node.log.applied = entry.index
        if node.role == .leader && entry.term == node.term {
          node.uncommittedBytes -= min(node.uncommittedBytes, entry.byteCount)
        }
        if entry.kind == .confChange {
          try node.applyConfChange(try ConfChange(decoding: entry.data))
        }
      }
    }
  }

  // MARK: - Error boundary

  /// Runs one public operation. Request errors leave the node running; anything else
  /// (storage failure, corrupt state, a peer breaking Raft's guarantees) stops it for good.
  private mutating func guarded<Result>(
    duringReady: Bool = false, _ body: (inout RaftNode) throws -> Result
  ) throws -> Result {
    if let stoppedReason { throw RaftError.stopped(stoppedReason) }
    precondition(duringReady || readyInProgress == nil, "called between ready() and advance()")
    do {
      return try body(&self)
    } catch let error as RaftError where error.isRequestError {
      throw error
    } catch {
      stoppedReason = "\(error)"
      throw error
    }
  }

  private func applyLimit() throws -> LogIndex {
    config.testFaults.applyBeforeCommit ? try log.lastIndex() : log.committed
  }

  // MARK: - Role changes

  private mutating func reset(term newTerm: Term) throws {
    if newTerm != term {
      precondition(newTerm > term, "term went backwards from \(term) to \(newTerm)")
      term = newTerm
      vote = nil
    }
    leader = nil
    electionElapsed = 0
    heartbeatElapsed = 0
    randomizedElectionTimeout =
      config.electionTimeoutTicks
      + Int(random.next(below: UInt64(config.electionTimeoutTicks)))
    leadTransferee = nil
    votes = [:]
    pendingConfIndex = 0
    uncommittedBytes = 0
    appendsPending = false
    pendingReads = []
    readsAwaitingCommit = []
    let last = try log.lastIndex()
    progress = [:]
    for member in confState.members {
      var memberProgress = newProgress(member)
      if member == id { _ = memberProgress.acknowledge(last) }
      progress[member] = memberProgress
    }
  }

  private func newProgress(_ member: NodeID) -> Progress {
    Progress(
      next: (try? log.lastIndex()).map { $0 + 1 } ?? 1,
      isLearner: confState.isLearner(member),
      inflightMessagesMax: config.inflightMessagesMax,
      inflightBytesMax: config.inflightBytesMax)
  }

  private mutating func becomeFollower(term newTerm: Term, leader newLeader: NodeID?) throws {
    try reset(term: newTerm)
    role = .follower
    leader = newLeader
  }

  private mutating func becomePreCandidate() {
    precondition(role != .leader, "a leader cannot become pre-candidate")
    // PreVote changes neither term nor vote: a failed pre-election leaves no trace.
    role = .preCandidate
    votes = [:]
    leader = nil
  }

  private mutating func becomeCandidate() throws {
    precondition(role != .leader, "a leader cannot become candidate")
    try reset(term: term + 1)
    vote = id
    role = .candidate
  }

  private mutating func becomeLeader() throws {
    precondition(role == .candidate, "only a candidate can become leader")
    try reset(term: term)
    role = .leader
    leader = id
    progress[id]?.becomeReplicate()
    // The no-op of the new term: committing it commits everything before it (entries of
    // earlier terms are never committed by counting replicas), and no membership change may
    // be proposed before it is applied.
    pendingConfIndex = try appendEntries([
      Entry(term: term, index: try log.lastIndex() + 1, kind: .normal, data: [])
    ])
  }

  // MARK: - Ticks

  private mutating func tickElection() throws {
    electionElapsed += 1
    if isPromotable && electionElapsed >= randomizedElectionTimeout {
      electionElapsed = 0
      try hup(kind: config.preVote ? .preElection : .election)
    }
  }

  private mutating func tickLeader() throws {
    heartbeatElapsed += 1
    electionElapsed += 1
    if electionElapsed >= config.electionTimeoutTicks {
      electionElapsed = 0
      if config.checkQuorum && !quorumRecentlyActive() {
        try becomeFollower(term: term, leader: nil)
        return
      }
      // A transfer that did not finish within an election timeout is abandoned.
      leadTransferee = nil
    }
    if heartbeatElapsed >= config.heartbeatTicks {
      heartbeatElapsed = 0
      broadcastHeartbeat(context: pendingReads.last?.context ?? [])
    }
  }

  /// CheckQuorum: true if a quorum of voters (counting ourselves) answered since the last
  /// check; clears the marks for the next round.
  private mutating func quorumRecentlyActive() -> Bool {
    var active = 0
    for voter in confState.voters {
      if voter == id || progress[voter]?.recentActive == true { active += 1 }
    }
    for member in progress.keys where member != id { progress[member]?.recentActive = false }
    return active >= quorumSize
  }

  private var quorumSize: Int { confState.voters.count / 2 + 1 }

  // MARK: - Elections

  private mutating func hup(kind: CampaignKind) throws {
    guard role != .leader, isPromotable else { return }
    // A committed but unapplied membership change means our view of the voters may be
    // stale; campaigning with it could split the cluster.
    // A restored snapshot not yet handed to the application counts as applied here: its
    // membership is already in effect, and the entries it covers are no longer in the log.
    let firstUnapplied = max(log.applied + 1, try log.firstIndex())
    if log.committed >= firstUnapplied {
      let pending = try log.entries(
        from: firstUnapplied, to: log.committed + 1, maxBytes: .max)
      if pending.contains(where: { $0.kind == .confChange }) { return }
    }
    try campaign(kind)
  }

  private mutating func campaign(_ kind: CampaignKind) throws {
    let voteTerm: Term
    let requestKind: Message.Kind
    if kind == .preElection {
      becomePreCandidate()
      voteTerm = term + 1
      requestKind = .requestPreVote
    } else {
      try becomeCandidate()
      voteTerm = term
      requestKind = .requestVote
    }
    votes[id] = true
    if try resolveElection(kind: kind) { return }
    let lastIndex = try log.lastIndex()
    let lastTerm = try log.lastTerm()
    for voter in confState.voters where voter != id {
      var request = message(requestKind, to: voter, term: voteTerm)
      request.index = lastIndex
      request.logTerm = lastTerm
      request.isLeaderTransfer = kind == .transfer
      send(request)
    }
  }

  /// Counts votes; wins or loses the election if the outcome is decided. Returns true then.
  private mutating func resolveElection(kind: CampaignKind) throws -> Bool {
    var granted = 0
    var rejected = 0
    for voter in confState.voters {
      switch votes[voter] {
      case true?: granted += 1
      case false?: rejected += 1
      case nil: break
      }
    }
    if granted >= quorumSize {
      if role == .preCandidate {
        try campaign(.election)
      } else {
        try becomeLeader()
      }
      return true
    }
    if confState.voters.count - rejected < quorumSize {
      try becomeFollower(term: term, leader: nil)
      return true
    }
    return false
  }

  private mutating func handleVoteRequest(_ request: Message) throws {
    let isPreVote = request.kind == .requestPreVote
    // Raft §5.2: "each server will vote for at most one candidate in a given term, on a
    // first-come-first-served basis". A pre-vote for a future term binds nothing.
    var canVote =
      vote == request.from || (vote == nil && leader == nil)
      || (isPreVote && request.term > term)
    if config.testFaults.grantSecondVote && !isPreVote { canVote = true }
    let responseKind: Message.Kind = isPreVote ? .preVoteResponse : .voteResponse
    if canVote, try log.isUpToDate(lastIndex: request.index, lastTerm: request.logTerm) {
      // The response carries the request's term so the candidate can match it.
      send(message(responseKind, to: request.from, term: request.term))
      if !isPreVote {
        electionElapsed = 0
        vote = request.from
      }
    } else {
      var response = message(responseKind, to: request.from)
      response.reject = true
      send(response)
    }
  }

  // MARK: - Step

  private func validate(_ message: Message) throws {
    guard message.to == id else {
      throw RaftError.invalidMessage("message for \(message.to) delivered to \(id)")
    }
    guard message.from != 0, message.from != id else {
      throw RaftError.invalidMessage("message from \(message.from) to \(id)")
    }
    // Bounds that keep our own arithmetic on these fields (term + 1, index + count) exact.
    guard message.term <= RaftNode.termMax else {
      throw RaftError.invalidMessage("term \(message.term) above \(RaftNode.termMax)")
    }
    guard message.index <= LogIndex.max - LogIndex(message.entries.count) - 1 else {
      throw RaftError.invalidMessage(
        "\(message.entries.count) entries after index \(message.index) overflow")
    }
    for (offset, entry) in message.entries.enumerated() {
      guard entry.index == message.index + 1 + LogIndex(offset), entry.term <= message.term
      else {
        throw RaftError.invalidMessage("entries not contiguous after \(message.index)")
      }
      if offset > 0 && entry.term < message.entries[offset - 1].term {
        throw RaftError.invalidMessage("entry terms decrease")
      }
    }
    if message.kind == .installSnapshot {
      guard let chunk = message.snapshot, chunk.totalBytes <= config.snapshotBytesMax,
        chunk.offset <= chunk.totalBytes,
        UInt64(chunk.data.count) <= chunk.totalBytes - chunk.offset,
        chunk.metadata.index < LogIndex.max, chunk.metadata.term <= RaftNode.termMax
      else {
        throw RaftError.invalidMessage("bad snapshot chunk")
      }
    }
  }

  private mutating func stepChecked(_ message: Message) throws {
    try validate(message)
    if message.term > term {
      if message.kind == .requestVote || message.kind == .requestPreVote {
        // Thesis §4.2.3 and §9.6: within the minimum election timeout of hearing from a
        // current leader, neither grant a (pre-)vote nor take the candidate's term, unless
        // the leader itself asked for the election (transfer). This holds with or without
        // CheckQuorum: otherwise a removed server, or one cut off from the leader alone,
        // deposes a leader the rest of the cluster still hears.
        let inLease = leader != nil && electionElapsed < config.electionTimeoutTicks
        if inLease && !message.isLeaderTransfer { return }
      }
      switch message.kind {
      case .requestPreVote:
        break  // a pre-vote request never changes our term
      case .preVoteResponse where !message.reject:
        break  // granted pre-votes carry the future term; we take it when we campaign
      case .appendEntries, .heartbeat, .installSnapshot:
        // Raft §5.1: "If a server receives a request with a stale term number, it rejects
        // the request"; conversely a higher term makes us follow its sender at once.
        try becomeFollower(term: message.term, leader: message.from)
      default:
        try becomeFollower(term: message.term, leader: nil)
      }
    } else if message.term < term {
      if message.kind == .appendEntries || message.kind == .heartbeat {
        // Tell a stale leader about the new term (Figure 2: the response carries our term).
        // Our vote requests cannot do it: the leader's followers, and the leader itself,
        // ignore them while the leader is heard (see above).
        send(self.message(.appendResponse, to: message.from))
      } else if message.kind == .requestPreVote {
        var response = self.message(.preVoteResponse, to: message.from)
        response.reject = true
        send(response)
      }
      return
    }

    switch message.kind {
    case .requestVote, .requestPreVote:
      try handleVoteRequest(message)
    default:
      switch role {
      case .leader: try stepLeader(message)
      case .candidate, .preCandidate: try stepCandidate(message)
      case .follower: try stepFollower(message)
      }
    }
  }

  private mutating func stepFollower(_ message: Message) throws {
    switch message.kind {
    case .appendEntries:
      electionElapsed = 0
      leader = message.from
      try handleAppend(message)
    case .heartbeat:
      electionElapsed = 0
      leader = message.from
      try handleHeartbeat(message)
    case .installSnapshot:
      electionElapsed = 0
      leader = message.from
      try handleSnapshotChunk(message)
    case .timeoutNow:
      // Leadership transfer: campaign at once, skipping PreVote (the leader asked for it).
      try hup(kind: .transfer)
    case .readIndexResponse:
      readStates.append(ReadState(index: message.index, context: message.context))
    default:
      break
    }
  }

  private mutating func stepCandidate(_ message: Message) throws {
    switch message.kind {
    case .appendEntries:
      // Raft §5.2: "If the AppendEntries RPC is from another server claiming to be leader
      // and the leader's term is at least as large as the candidate's current term, then
      // the candidate recognizes the leader as legitimate and returns to follower state."
      try becomeFollower(term: message.term, leader: message.from)
      try handleAppend(message)
    case .heartbeat:
      try becomeFollower(term: message.term, leader: message.from)
      try handleHeartbeat(message)
    case .installSnapshot:
      try becomeFollower(term: message.term, leader: message.from)
      try handleSnapshotChunk(message)
    case .voteResponse where role == .candidate,
      .preVoteResponse where role == .preCandidate:
      guard confState.isVoter(message.from), votes[message.from] == nil else { return }
      votes[message.from] = !message.reject
      _ = try resolveElection(kind: role == .preCandidate ? .preElection : .election)
    default:
      break
    }
  }

  private mutating func stepLeader(_ message: Message) throws {
    let from = message.from
    // Progress is updated in place (`progress[from]?...`): a copy taken out and written back
    // would make every change to its in-flight window copy the whole window.
    guard progress[from] != nil else { return }
    switch message.kind {
    case .appendResponse:
      // Every index a follower reports in our term came from our log (a rejection's hint
      // lies at or below the rejected index).
      let last = try log.lastIndex()
      guard message.index <= last, !message.reject || message.rejectHint <= message.index else {
        throw RaftError.invalidMessage(
          "append response for index \(message.index) (hint \(message.rejectHint)), "
            + "our last index is \(last)")
      }
      progress[from]?.recentActive = true
      if message.reject {
        try handleAppendRejection(message)
      } else {
        try handleAppendSuccess(message)
      }
    case .heartbeatResponse:
      progress[from]?.recentActive = true
      if message.reject {
        // It lacks entries up to the commit index we sent, below its match: it lost
        // acknowledged entries. Probe again from its last index.
        progress[from]?.lostEntries(followerLastIndex: message.rejectHint)
      }
      progress[from]?.heartbeatAnswered()
      if progress[from]?.state == .snapshot {
        try sendSnapshotChunk(to: from)
      } else if (progress[from]?.match ?? 0) < (try log.lastIndex()) {
        // At once and even if empty: an append lost on the way would otherwise never be
        // noticed (the follower's rejection of this one resets `next`).
        _ = try sendAppend(to: from)
      }
      if !message.context.isEmpty {
        try handleReadAck(from: from, context: message.context)
      }
    case .snapshotResponse:
      progress[from]?.recentActive = true
      if progress[from]?.state == .snapshot
        && message.index == progress[from]?.pendingSnapshotIndex
      {
        progress[from]?.snapshotOffset = message.snapshotOffset
        progress[from]?.snapshotChunkSent = false
        try sendSnapshotChunk(to: from)
      }
    case .readIndex:
      try handleReadRequest(context: message.context, requester: from)
    default:
      // Another leader in our own term is impossible in correct Raft (the checkers catch
      // it under test faults); anything else is stale.
      break
    }
  }

  // MARK: - Log replication (leader side)

  /// Appends entries as leader and counts our own copy (persisted before any message that
  /// could make another node count it goes out). Returns the new last index.
  @discardableResult
  private mutating func appendEntries(_ entries: [Entry]) throws -> LogIndex {
    log.append(entries)
    let last = try log.lastIndex()
    _ = progress[id]?.acknowledge(last)
    // Our own copy alone commits only when we are the only voter; otherwise the entries
    // still need a follower's acknowledgement.
    if confState.voters.count == 1 { _ = try maybeCommit() }
    appendsPending = true
    return last
  }

  private mutating func requireLeaderAcceptingProposals() throws {
    guard role == .leader else { throw RaftError.notLeader(leaderHint: leader) }
    if let leadTransferee {
      throw RaftError.proposalDropped("leadership is moving to \(leadTransferee)")
    }
  }

  private mutating func appendAsLeader(kind: EntryKind, data: [UInt8]) throws -> LogIndex {
    let entry = Entry(term: term, index: try log.lastIndex() + 1, kind: kind, data: data)
    if uncommittedBytes > 0 && uncommittedBytes + entry.byteCount > config.uncommittedBytesMax {
      throw RaftError.proposalDropped("\(uncommittedBytes) uncommitted bytes already")
    }
    uncommittedBytes += entry.byteCount
    return try appendEntries([entry])
  }

  /// Leader: sends what every follower is missing, from the `ready()` that follows the
  /// changes (`appendsPending`). Everything proposed, acknowledged and committed since the
  /// last Ready goes out together — per follower, appends of its new entries as far as its
  /// window allows, each carrying the commit index, or, if it has no new entries but has
  /// not been told the commit index yet, one empty append carrying it — instead of one
  /// message per proposal and one per commit advance.
  private mutating func sendPendingAppends() throws {
    guard appendsPending else { return }
    appendsPending = false
    guard role == .leader else { return }
    for member in confState.voters where member != id { try sendPendingAppends(to: member) }
    for member in confState.learners where member != id { try sendPendingAppends(to: member) }
  }

  private mutating func sendPendingAppends(to member: NodeID) throws {
    var sent = false
    while try sendAppend(to: member, sendIfEmpty: false) { sent = true }
    if !sent, let sentCommit = progress[member]?.sentCommit, sentCommit < log.committed {
      _ = try sendAppend(to: member)
    }
  }

  private mutating func broadcastHeartbeat(context: [UInt8]) {
    for member in confState.voters where member != id { sendHeartbeat(to: member, context) }
    for member in confState.learners where member != id { sendHeartbeat(to: member, context) }
  }

  private mutating func sendHeartbeat(to member: NodeID, _ context: [UInt8]) {
    guard let match = progress[member]?.match else { return }
    var heartbeat = message(.heartbeat, to: member)
    // The follower may not hold entries beyond its match (see "Commit indices in
    // heartbeats" in docs/raft.md).
    heartbeat.commit = min(match, log.committed)
    heartbeat.context = context
    send(heartbeat)
    progress[member]?.recordSentCommit(heartbeat.commit)
  }

  /// Sends the entries `member` is missing (or starts a snapshot if they are compacted).
  /// Returns whether a message was sent.
  private mutating func sendAppend(to member: NodeID, sendIfEmpty: Bool = true) throws -> Bool {
    guard member != id, progress[member]?.isPaused == false else { return false }
    let last = try log.lastIndex()
    if let next = progress[member]?.next, next > last + 1 {
      // Only a peer acknowledging entries we do not have leads here; restart probing.
      progress[member]?.becomeProbe()
      progress[member]?.next = min(next, last + 1)
    }
    guard let next = progress[member]?.next else { return false }
    let previousIndex = next - 1
    let entries: [Entry]
    let previousTerm: Term
    do {
      previousTerm = try log.term(at: previousIndex)
      entries =
        next <= last
        ? try log.entries(from: next, to: last + 1, maxBytes: config.appendBytesMax) : []
    } catch RaftStorageError.compacted {
      try startSnapshot(to: member)
      return false
    }
    if entries.isEmpty && !sendIfEmpty { return false }
    var append = message(.appendEntries, to: member)
    append.index = previousIndex
    append.logTerm = previousTerm
    append.entries = entries
    append.commit = log.committed
    let bytes = append.payloadByteCount
    send(append)
    progress[member]?.sentEntries(
      lastIndex: previousIndex + LogIndex(entries.count), entryCount: entries.count,
      bytes: bytes)
    progress[member]?.recordSentCommit(append.commit)
    return true
  }

  private mutating func handleAppendRejection(_ response: Message) throws {
    // Fast backtracking: the follower told us the last index at or below the rejected one
    // whose term is at most the term we sent; skip every entry of ours with a larger term.
    var matchHint = response.rejectHint
    if response.logTerm > 0 {
      matchHint = try log.findConflict(byTerm: response.logTerm, atOrBefore: response.rejectHint)
        .0
    }
    guard progress[response.from]?.rejected(response.index, matchHint: matchHint) == true
    else { return }
    if progress[response.from]?.state == .replicate { progress[response.from]?.becomeProbe() }
    _ = try sendAppend(to: response.from)
  }

  private mutating func handleAppendSuccess(_ response: Message) throws {
    let from = response.from
    guard progress[from]?.acknowledge(response.index) == true else { return }
    switch progress[from]?.state {
    case .probe:
      progress[from]?.becomeReplicate()
    case .snapshot:
      if let match = progress[from]?.match, match + 1 >= (try log.firstIndex()) {
        progress[from]?.becomeProbe()
        progress[from]?.becomeReplicate()
      }
    case .replicate:
      progress[from]?.inflights.freeUpTo(response.index)
    case nil:
      return
    }
    // A new commit index goes to every follower; this one also gets what the window it
    // freed lets through (pipelining), or the commit index if it has not heard it yet. All at
    // the next Ready.
    let committed = try maybeCommit()
    let last = try log.lastIndex()
    if committed || (progress[from]?.next ?? 0) <= last
      || (progress[from]?.sentCommit ?? 0) < log.committed
    {
      appendsPending = true
    }
    if from == leadTransferee, progress[from]?.match == (try log.lastIndex()) {
      sendTimeoutNow(to: from)
    }
  }

  private mutating func sendTimeoutNow(to member: NodeID) {
    send(message(.timeoutNow, to: member))
  }

  /// Raft §5.3/§5.4.2: "a log entry is committed once the leader that created the entry has
  /// replicated it on a majority of the servers", and "only log entries from the leader's
  /// current term are committed by counting replicas".
  private mutating func maybeCommit() throws -> Bool {
    let quorumIndex = quorumMatchIndex()
    guard quorumIndex > log.committed else { return false }
    if !config.testFaults.skipCurrentTermCommitRule {
      guard try log.termIfKnown(at: quorumIndex) == term else { return false }
    }
    log.commit(to: quorumIndex)
    try releaseReadsAwaitingCommit()
    return true
  }

  /// The highest index a quorum of voters holds: the `quorumSize`-th largest match. Sorted
  /// in a stack buffer (a handful of voters), without copying any `Progress`.
  private func quorumMatchIndex() -> LogIndex {
    let voters = confState.voters
    guard !voters.isEmpty else { return 0 }
    return withUnsafeTemporaryAllocation(of: LogIndex.self, capacity: voters.count) { matches in
      for (position, voter) in voters.enumerated() {
        // Insertion sort, largest first.
        let match = progress[voter]?.match ?? 0
        var slot = position
        while slot > 0 && matches[slot - 1] < match {
          matches[slot] = matches[slot - 1]
          slot -= 1
        }
        matches[slot] = match
      }
      return matches[quorumSize - 1]
    }
  }

  // MARK: - Snapshots (leader side)

  private mutating func startSnapshot(to member: NodeID) throws {
    guard progress[member] != nil else { return }
    let snapshot = try log.storage.snapshot()
    guard !snapshot.isEmpty else {
      throw RaftError.corruptStorage("log compacted but storage holds no snapshot")
    }
    progress[member]?.becomeSnapshot(index: snapshot.metadata.index)
    try sendSnapshotChunk(to: member)
  }

  private mutating func sendSnapshotChunk(to member: NodeID) throws {
    guard progress[member]?.state == .snapshot, progress[member]?.snapshotChunkSent == false
    else { return }
    let snapshot = try log.storage.snapshot()
    if snapshot.metadata.index != progress[member]?.pendingSnapshotIndex {
      // The application took a newer snapshot meanwhile: send that one from the start.
      progress[member]?.becomeSnapshot(index: snapshot.metadata.index)
    }
    let total = UInt64(snapshot.data.count)
    let start = min(progress[member]?.snapshotOffset ?? 0, total)
    let end = min(start + UInt64(config.snapshotChunkBytesMax), total)
    var install = message(.installSnapshot, to: member)
    install.snapshot = SnapshotChunk(
      metadata: snapshot.metadata, totalBytes: total, offset: start,
      data: Array(snapshot.data[Int(start)..<Int(end)]))
    send(install)
    progress[member]?.snapshotChunkSent = true
  }

  // MARK: - Follower side

  private mutating func handleAppend(_ append: Message) throws {
    if append.index < log.committed {
      var response = message(.appendResponse, to: append.from)
      response.index = log.committed
      send(response)
      return
    }
    var response = message(.appendResponse, to: append.from)
    // Raft §5.3: "If a follower's log is inconsistent with the leader's, the AppendEntries
    // consistency check will fail" (no entry at prevLogIndex with term prevLogTerm).
    if let lastNew = try log.maybeAppend(
      index: append.index, term: append.logTerm, commit: append.commit, entries: append.entries)
    {
      response.index = lastNew
    } else {
      let probe = min(append.index, try log.lastIndex())
      let (hintIndex, hintTerm) = try log.findConflict(byTerm: append.logTerm, atOrBefore: probe)
      response.index = append.index
      response.reject = true
      response.rejectHint = hintIndex
      response.logTerm = hintTerm
    }
    send(response)
  }

  /// A heartbeat carries no consistency check, so its commit index is only as good as the
  /// leader's proof that we hold it: it sends min(our match, its commit), and our match is
  /// an index we acknowledged in this term after persisting it. A commit beyond our log
  /// therefore means we lost acknowledged entries (or the leader is faulty): we keep our
  /// commit index — nothing proves our entries are the leader's — and answer with a
  /// rejection carrying our last index, so the leader re-sends from there. See docs/raft.md,
  /// "Commit indices in heartbeats".
  private mutating func handleHeartbeat(_ heartbeat: Message) throws {
    let last = try log.lastIndex()
    var response = message(.heartbeatResponse, to: heartbeat.from)
    response.context = heartbeat.context
    if heartbeat.commit <= last {
      log.commit(to: heartbeat.commit)
    } else {
      response.reject = true
      response.rejectHint = last
    }
    send(response)
  }

  private mutating func handleSnapshotChunk(_ install: Message) throws {
    guard let chunk = install.snapshot else { return }
    let metadata = chunk.metadata
    if metadata.index <= log.committed {
      // Already have everything it covers; tell the leader where we are.
      snapshotReceipt = nil
      var response = message(.appendResponse, to: install.from)
      response.index = log.committed
      send(response)
      return
    }
    if chunk.offset == 0 {
      snapshotReceipt = SnapshotReceipt(
        metadata: metadata, totalBytes: chunk.totalBytes, data: chunk.data)
    } else if var receipt = snapshotReceipt, receipt.metadata == metadata,
      receipt.totalBytes == chunk.totalBytes, UInt64(receipt.data.count) == chunk.offset
    {
      receipt.data.append(contentsOf: chunk.data)
      snapshotReceipt = receipt
    }
    guard let receipt = snapshotReceipt, receipt.metadata == metadata,
      UInt64(receipt.data.count) == receipt.totalBytes
    else {
      // Incomplete, a gap or another snapshot: report the byte we need next (resume).
      var response = message(.snapshotResponse, to: install.from)
      response.index = metadata.index
      if let receipt = snapshotReceipt, receipt.metadata == metadata {
        response.snapshotOffset = UInt64(receipt.data.count)
      }
      send(response)
      return
    }
    snapshotReceipt = nil
    var response = message(.appendResponse, to: install.from)
    if try restore(Snapshot(metadata: metadata, data: receipt.data)) {
      response.index = try log.lastIndex()
    } else {
      response.index = log.committed
    }
    send(response)
  }

  /// Installs a complete snapshot from the leader. Returns false if it was not needed.
  private mutating func restore(_ snapshot: Snapshot) throws -> Bool {
    let metadata = snapshot.metadata
    if metadata.index <= log.committed { return false }
    precondition(role == .follower, "only followers install snapshots")
    if try log.matchTerm(metadata.index, metadata.term) {
      // Our log already holds the snapshot's last entry: just learn that it is committed.
      log.commit(to: metadata.index)
      return false
    }
    log.restore(snapshot)
    confState = metadata.confState
    let last = try log.lastIndex()
    for member in confState.members where progress[member] == nil {
      progress[member] = newProgress(member)
    }
    for member in progress.keys where !confState.isMember(member) {
      progress[member] = nil
    }
    precondition(last == metadata.index)
    return true
  }

  // MARK: - Membership

  private mutating func applyConfChange(_ change: ConfChange) throws {
    confState = change.applied(to: confState)
    for member in confState.members {
      if progress[member] == nil { progress[member] = newProgress(member) }
      progress[member]?.isLearner = confState.isLearner(member)
    }
    for member in progress.keys where !confState.isMember(member) {
      progress[member] = nil
    }
    guard role == .leader else { return }
    if !confState.isVoter(id) {
      // A removed leader steps down; the remaining voters elect a successor.
      try becomeFollower(term: term, leader: nil)
      return
    }
    if let leadTransferee, !confState.isVoter(leadTransferee) { self.leadTransferee = nil }
    releaseConfirmedReads()
    // The quorum changed: entries may now be committed, and new members need the log.
    _ = try maybeCommit()
    appendsPending = true
  }

  // MARK: - ReadIndex

  private var committedInCurrentTerm: Bool {
    (try? log.termIfKnown(at: log.committed)) == term
  }

  private mutating func handleReadRequest(context: [UInt8], requester: NodeID) throws {
    let request = PendingRead(
      index: log.committed, context: context, requester: requester, acks: [id])
    // Raft §8: "the leader must have the latest information on which entries are
    // committed ... Raft handles this by having each leader commit a blank no-op entry".
    guard committedInCurrentTerm else {
      readsAwaitingCommit.append(request)
      return
    }
    if confState.voters == [id] || config.testFaults.readWithoutQuorum {
      releaseRead(request)
      return
    }
    pendingReads.append(request)
    // Raft §8: the leader must "exchange heartbeat messages with a majority of the cluster
    // before responding to read-only requests" to be sure it has not been deposed.
    broadcastHeartbeat(context: context)
  }

  private mutating func releaseReadsAwaitingCommit() throws {
    guard !readsAwaitingCommit.isEmpty, committedInCurrentTerm else { return }
    let waiting = readsAwaitingCommit
    readsAwaitingCommit = []
    for request in waiting {
      try handleReadRequest(context: request.context, requester: request.requester)
    }
  }

  private mutating func handleReadAck(from member: NodeID, context: [UInt8]) throws {
    guard confState.isVoter(member),
      let position = pendingReads.firstIndex(where: { $0.context == context })
    else { return }
    pendingReads[position].acks.insert(member)
    releaseConfirmedReads()
  }

  /// Releases every pending read whose leadership confirmation reached a quorum of the
  /// current voters. Runs on each acknowledgement and whenever the voters change: a
  /// smaller quorum (down to the leader alone) may already be met by the acks collected.
  private mutating func releaseConfirmedReads() {
    guard
      let position = pendingReads.lastIndex(where: { read in
        read.acks.filter { confState.isVoter($0) }.count >= quorumSize
      })
    else { return }
    // Confirming leadership for this request confirms it for every earlier one too.
    let released = pendingReads[...position]
    pendingReads.removeSubrange(...position)
    for request in released { releaseRead(request) }
  }

  private mutating func releaseRead(_ request: PendingRead) {
    if request.requester == id {
      readStates.append(ReadState(index: request.index, context: request.context))
    } else {
      var response = message(.readIndexResponse, to: request.requester)
      response.index = request.index
      response.context = request.context
      send(response)
    }
  }

  // MARK: - Messages

  private func message(_ kind: Message.Kind, to member: NodeID, term messageTerm: Term? = nil)
    -> Message
  {
    precondition(member != id, "sending \(kind) to ourselves")
    return Message(kind: kind, from: id, to: member, term: messageTerm ?? term)
  }

  private mutating func send(_ message: Message) {
    precondition(message.from == id && message.to != id)
    outbox.append(message)
  }
}
