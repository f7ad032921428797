import StreamBusRaft

/// A safety property that failed, with what was observed.
public struct SafetyViolation: Error, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// A message travelling through the simulated network.
public struct InFlightMessage: Sendable {
  public var message: Message
  /// Tick at or after which it may be delivered.
  public var deliverAt: UInt64
}

/// One simulated server: its durable storage survives crashes, everything else does not.
public final class SimulatedNode {
  public let id: NodeID
  /// Plays the disk: only what the driver persisted before a crash is here afterwards.
  public let storage: MemoryRaftStorage
  /// Nil while crashed.
  public internal(set) var raft: RaftNode?
  public internal(set) var store = KeyValueStore()
  /// Writes proposed here: log index → operation.
  var pendingWrites: [LogIndex: PendingWrite] = [:]
  /// Reads confirmed by ReadIndex, waiting for the state machine to reach their index.
  var readsAwaitingApply: [(index: LogIndex, context: [UInt8])] = []
  /// Reads requested here: context → operation.
  var pendingReads: [[UInt8]: PendingRead] = [:]
  var restartCount: UInt64 = 0
  /// Simulated time of the last crash (meaningful while down).
  public internal(set) var crashedAt: UInt64 = 0
  /// The last term in which this node was seen leading.
  var leaderTerm: Term = 0
  /// A leader-crash trap that caught this node: when it fires, and the commit index the
  /// node had when it became leader.
  var crashTrap: (trigger: LeaderCrashTrigger, readiesLeft: Int, commitAtElection: LogIndex)?
  /// Highest commit index already checked against the cluster's committed log.
  var commitChecked: LogIndex = 0

  struct PendingWrite {
    var operationID: UInt64
    var key: UInt8
    var value: UInt64
    var invokedAt: UInt64
  }

  struct PendingRead {
    var operationID: UInt64
    var key: UInt8
    var invokedAt: UInt64
  }

  init(id: NodeID, storage: MemoryRaftStorage) {
    self.id = id
    self.storage = storage
  }

  public var isUp: Bool { raft != nil }
}

/// When a leader caught by `SimulatedCluster.armLeaderCrash` crashes.
public enum LeaderCrashTrigger: Sendable, Hashable {
  /// In its n-th Ready as leader (1 = the Ready that persists its no-op and would send its
  /// first appends), after persisting it and before sending anything.
  case afterPersistingReady(Int)
  /// In the Ready that first raises its commit index beyond every index any node has
  /// committed so far, after persisting it and before sending anything: a commit only the
  /// leader knows of.
  case afterFirstNewCommit
}

/// Many Raft nodes in one process over a simulated network, driven deterministically.
/// Every Ready is handled the way a production driver must (persist, then send, then apply)
/// and checked: one leader per term, log matching, leader completeness, no committed entry
/// overwritten, applied entries committed and identical everywhere (state-machine safety).
public final class SimulatedCluster {
  public private(set) var nodes: [NodeID: SimulatedNode] = [:]
  public var random: SplitMix64
  public private(set) var now: UInt64 = 0
  public private(set) var inFlight: [InFlightMessage] = []
  /// Directed links that currently lose every message (partitions, symmetric or not).
  public private(set) var blockedLinks: Set<Link> = []
  /// Nodes whose process is paused (a long garbage-collection pause, a stalled VM): they
  /// neither tick nor handle messages, which wait in the network until `resume`.
  public private(set) var pausedNodes: Set<NodeID> = []
  public var network = NetworkBehaviour()
  /// Probability (per Ready) that the node crashes while handling it, in per mille.
  public var crashDuringReadyPerMille = 0
  /// The next node to become leader crashes as this says (one-shot; see `armLeaderCrash`).
  public private(set) var leaderCrashTrap: LeaderCrashTrigger?
  /// Nodes the last trap crashed, in order.
  public private(set) var trappedLeaders: [NodeID] = []
  /// Checker switches are always on; failures are thrown as `SafetyViolation`.
  public private(set) var history: [ClientOperation] = []
  public private(set) var eventLog: [String] = []
  public var recordsEvents = false
  /// Scenario hook: messages for which this returns true are lost at delivery.
  public var dropFilter: ((Message) -> Bool)?
  /// Counters of what happened (message kinds delivered, snapshots installed, ...), to show
  /// that a run exercised the features it claims to.
  public private(set) var statistics: [String: Int] = [:]

  let configure: @Sendable (inout RaftConfig) -> Void
  let raftFaults: RaftTestFaults
  let seed: UInt64
  private var nextOperationID: UInt64 = 1
  private var logicalTime: UInt64 = 0

  // Checker state.
  private var leaderByTerm: [Term: NodeID] = [:]
  /// Terms of the committed log as seen anywhere; `committedTerms[i - 1]` is index i's.
  public private(set) var committedTerms: [Term] = []
  /// Parallel to `committedTerms`: the lowest current term of a node that saw the index
  /// committed, an upper bound of the term in which it was committed.
  private var committedInTerm: [Term] = []
  /// Applied entries anywhere: index → (term, data).
  private var appliedEntries: [LogIndex: EntryFingerprint] = [:]
  /// Log matching: (index, term) → (data, previous term).
  private var entriesByPosition: [Position: EntryFingerprint] = [:]
  private var lastApplied: [NodeID: LogIndex] = [:]
  private var votesGranted: [VoteKey: NodeID] = [:]

  private struct VoteKey: Hashable {
    var voter: NodeID
    var term: Term
  }
  /// Logical time a write was first applied anywhere: it was visible from then on.
  private var firstAppliedAt: [UInt64: UInt64] = [:]

  public struct Link: Hashable, Sendable {
    public var from: NodeID
    public var to: NodeID
    public init(from: NodeID, to: NodeID) {
      self.from = from
      self.to = to
    }
  }

  public struct NetworkBehaviour: Sendable {
    public var dropPerMille = 0
    public var duplicatePerMille = 0
    /// Delivery delay in ticks is uniform in 1...delayTicksMax (reordering).
    public var delayTicksMax: UInt64 = 1
    /// Round-trip every message through the binary codec.
    public var encodesMessages = true
    public init() {}
  }

  private struct Position: Hashable {
    var index: LogIndex
    var term: Term
  }

  private struct EntryFingerprint: Equatable {
    var term: Term
    var data: [UInt8]
    var previousTerm: Term
  }

  public init(
    nodeCount: Int, seed: UInt64, raftFaults: RaftTestFaults = RaftTestFaults(),
    configure: @escaping @Sendable (inout RaftConfig) -> Void = { _ in }
  ) throws {
    precondition(nodeCount > 0)
    self.seed = seed
    self.random = SplitMix64(seed: seed)
    self.raftFaults = raftFaults
    self.configure = configure
    let voters = (1...NodeID(nodeCount)).map { $0 }
    for id in voters {
      let storage = MemoryRaftStorage(confState: ConfState(voters: voters))
      nodes[id] = SimulatedNode(id: id, storage: storage)
      try start(id)
    }
  }

  /// Adds a server that is not yet a member (empty configuration); it joins when the
  /// leader adds it and replicates the log or a snapshot to it.
  public func addNode(_ id: NodeID) throws {
    precondition(nodes[id] == nil, "node \(id) exists")
    nodes[id] = SimulatedNode(id: id, storage: MemoryRaftStorage())
    try start(id)
  }

  public var nodeIDs: [NodeID] { nodes.keys.sorted() }
  public func node(_ id: NodeID) -> SimulatedNode {
    guard let node = nodes[id] else { preconditionFailure("no node \(id)") }
    return node
  }

  public func raft(_ id: NodeID) -> RaftNode {
    guard let raft = node(id).raft else { preconditionFailure("node \(id) is down") }
    return raft
  }

  /// Adds one to a statistics counter.
  public func count(_ name: String) { statistics[name, default: 0] += 1 }

  public func log(_ text: @autoclosure () -> String) {
    if recordsEvents { eventLog.append("t\(now) \(text())") }
  }

  // MARK: - Node lifecycle

  private func start(_ id: NodeID) throws {
    let node = node(id)
    var config = RaftConfig(id: id, randomSeed: seed &* 31 &+ id &* 1_000_003 &+ node.restartCount)
    config.electionTimeoutTicks = 10
    config.heartbeatTicks = 2
    // Tiny budgets so batching limits, flow control and chunked snapshots all engage.
    config.appendBytesMax = 120
    config.inflightMessagesMax = 3
    config.inflightBytesMax = 400
    config.snapshotChunkBytesMax = 10
    config.testFaults = raftFaults
    configure(&config)
    node.raft = try RaftNode(config: config, storage: node.storage)
    let snapshot = try node.storage.snapshot()
    node.store = try KeyValueStore(snapshotData: snapshot.data)
    lastApplied[id] = snapshot.metadata.index
    // A crash may have struck after the hard state was persisted but before it was checked.
    try checkCommitted(node, upTo: try node.storage.initialState().0.commit)
  }

  /// Stops a node; everything not persisted is gone, and so are its clients' requests and
  /// the messages addressed to it.
  /// With `losingSentMessages` the whole machine fails (power loss): the messages it sent
  /// that are still in flight were in its send buffers and are lost too.
  public func crash(_ id: NodeID, losingSentMessages: Bool = false) {
    let node = node(id)
    guard node.isUp else { return }
    log(losingSentMessages ? "power loss \(id)" : "crash \(id)")
    if losingSentMessages { inFlight.removeAll { $0.message.from == id } }
    node.raft = nil
    node.crashedAt = now
    node.crashTrap = nil
    pausedNodes.remove(id)
    for (_, write) in node.pendingWrites.sorted(by: { $0.key < $1.key }) {
      // Unknown outcome: the write may still be committed by another leader.
      history.append(
        ClientOperation(
          id: write.operationID, key: write.key, kind: .write(write.value),
          invokedAt: write.invokedAt, returnedAt: nil))
    }
    node.pendingWrites = [:]
    node.pendingReads = [:]
    node.readsAwaitingApply = []
    // Messages to the node die with the process; those it already sent are on the wire and
    // still arrive (stale messages from an earlier incarnation that Raft must tolerate).
    inFlight.removeAll { $0.message.to == id }
  }

  public func restart(_ id: NodeID) throws {
    let node = node(id)
    guard !node.isUp else { return }
    node.restartCount += 1
    log(
      "restart \(id) (term \(node.storage.hardState.term), last index "
        + "\((try? node.storage.lastIndex()).map(String.init) ?? "?"))")
    try start(id)
    try drive(id)
  }

  // MARK: - Network

  public func partition(_ groups: [Set<NodeID>]) {
    blockedLinks = []
    for from in nodeIDs {
      for to in nodeIDs where from != to {
        let together = groups.contains { $0.contains(from) && $0.contains(to) }
        if !together { blockedLinks.insert(Link(from: from, to: to)) }
      }
    }
    log("partition \(groups.map { $0.sorted() })")
  }

  /// Cuts every link into and out of `id`.
  public func isolate(_ id: NodeID) {
    for other in nodeIDs where other != id {
      blockedLinks.insert(Link(from: id, to: other))
      blockedLinks.insert(Link(from: other, to: id))
    }
    log("isolate \(id)")
  }

  public func block(from: NodeID, to: NodeID) {
    blockedLinks.insert(Link(from: from, to: to))
    log("block \(from)->\(to)")
  }

  /// The next node that becomes leader (of a term it did not lead before) crashes when
  /// `trigger` says: a leader dying while it re-replicates earlier terms' entries, before
  /// its own entries are on a majority.
  public func armLeaderCrash(_ trigger: LeaderCrashTrigger) {
    leaderCrashTrap = trigger
    log("trap: next leader crashes \(trigger)")
  }

  /// Cancels the armed trap and any leader it caught that has not crashed yet.
  public func disarmLeaderCrash() {
    leaderCrashTrap = nil
    for node in nodes.values { node.crashTrap = nil }
  }

  public func pause(_ id: NodeID) {
    pausedNodes.insert(id)
    log("pause \(id)")
  }

  public func resume(_ id: NodeID) {
    pausedNodes.remove(id)
    log("resume \(id)")
  }

  public func heal() {
    blockedLinks = []
    log("heal")
  }

  private func enqueue(_ message: Message) throws {
    try checkDurability(message)
    if message.kind == .voteResponse && !message.reject {
      // Election safety rests on this: a server grants one vote per term, ever (the vote
      // is persisted before the answer leaves, so not even a crash may change it).
      let key = VoteKey(voter: message.from, term: message.term)
      if let earlier = votesGranted[key], earlier != message.to {
        throw SafetyViolation(
          "node \(message.from) voted for \(earlier) and \(message.to) in term \(message.term)")
      }
      votesGranted[key] = message.to
    }
    var message = message
    if network.encodesMessages {
      message = try Message(decoding: message.encoded())
    }
    if network.dropPerMille > 0 && Int(random.next(below: 1000)) < network.dropPerMille {
      return
    }
    let delay = 1 + random.next(below: network.delayTicksMax)
    inFlight.append(InFlightMessage(message: message, deliverAt: now + delay))
    if network.duplicatePerMille > 0 && Int(random.next(below: 1000)) < network.duplicatePerMille {
      let extra = 1 + random.next(below: network.delayTicksMax + 2)
      inFlight.append(InFlightMessage(message: message, deliverAt: now + extra))
    }
  }

  /// Durability: an acknowledgement may only leave once what it acknowledges is on disk,
  /// since the receiver counts it toward commits and elections.
  private func checkDurability(_ message: Message) throws {
    let storage = node(message.from).storage
    switch message.kind {
    case .voteResponse where !message.reject:
      let hardState = storage.hardState
      guard hardState.term == message.term, hardState.vote == message.to else {
        throw SafetyViolation(
          "durability: node \(message.from) granted its term \(message.term) vote to "
            + "\(message.to) before persisting it (stored term \(hardState.term), vote "
            + "\(hardState.vote.map(String.init) ?? "none"))")
      }
    case .appendResponse where !message.reject:
      let stored = try storage.lastIndex()
      guard stored >= message.index else {
        throw SafetyViolation(
          "durability: node \(message.from) acknowledged index \(message.index) with only "
            + "\(stored) entries on disk")
      }
    default:
      break
    }
  }

  /// Message kind names by raw value, for statistics (interpolating an enum is slow).
  private static let kindNames: [String] = {
    var names = [String](repeating: "", count: 256)
    for kind in Message.Kind.allCases { names[Int(kind.rawValue)] = "\(kind)" }
    return names
  }()

  /// Delivers one message now (if its link is up and its target is running).
  public func deliver(_ message: Message) throws {
    guard !blockedLinks.contains(Link(from: message.from, to: message.to)) else { return }
    if let dropFilter, dropFilter(message) { return }
    let node = node(message.to)
    guard node.raft != nil else { return }
    let kindName = Self.kindNames[Int(message.kind.rawValue)]
    statistics["delivered." + kindName, default: 0] += 1
    if message.reject { statistics["delivered." + kindName + ".reject", default: 0] += 1 }
    try withRaft(message.to) { raft in
      do {
        try raft.step(message)
      } catch let error as RaftError {
        if case .invalidMessage = error { return }
        throw error
      }
    }
    try drive(message.to)
  }

  /// Advances time by one tick: every running node ticks, then the messages now due are
  /// delivered in random order.
  public func tick() throws {
    now += 1
    for id in nodeIDs where node(id).isUp && !pausedNodes.contains(id) {
      try withRaft(id) { try $0.tick() }
      try drive(id)
    }
    try deliverDue()
  }

  public func deliverDue() throws {
    var due: [InFlightMessage] = []
    var later: [InFlightMessage] = []
    for item in inFlight {
      if item.deliverAt <= now && !pausedNodes.contains(item.message.to) {
        due.append(item)
      } else {
        later.append(item)
      }
    }
    inFlight = later
    due.shuffle(using: &random)
    for item in due { try deliver(item.message) }
  }

  /// Delivers everything, repeatedly, without ticking, until the network is quiet.
  public func stabilize(roundsMax: Int = 100) throws {
    for _ in 0..<roundsMax {
      let batch = inFlight.filter { !pausedNodes.contains($0.message.to) }
      if batch.isEmpty { return }
      inFlight.removeAll { !pausedNodes.contains($0.message.to) }
      for item in batch { try deliver(item.message) }
    }
  }

  /// Ticks until some node leads (or `ticksMax` passes); returns the leader.
  @discardableResult
  public func runUntilLeader(ticksMax: Int = 200) throws -> NodeID? {
    for _ in 0..<ticksMax {
      if let leader = currentLeader() { return leader }
      try tick()
    }
    return currentLeader()
  }

  /// The running leader with the highest term.
  public func currentLeader() -> NodeID? {
    nodeIDs.compactMap { id -> (NodeID, Term)? in
      guard let raft = node(id).raft, raft.role == .leader else { return nil }
      return (id, raft.term)
    }.max { $0.1 < $1.1 }?.0
  }

  // MARK: - Client operations

  private func clock() -> UInt64 {
    logicalTime += 1
    return logicalTime
  }

  /// Proposes a write at `id`. Returns the operation id, or nil if the node refused it.
  @discardableResult
  public func write(at id: NodeID, key: UInt8, value: UInt64? = nil) throws -> UInt64? {
    guard node(id).isUp else { return nil }
    let operationID = nextOperationID
    nextOperationID += 1
    let value = value ?? operationID
    let command = KeyValueCommand(operationID: operationID, key: key, value: value)
    let invokedAt = clock()
    var index: LogIndex?
    try withRaft(id) { raft in
      do {
        index = try raft.propose(command.encoded())
      } catch let error as RaftError where error.isRequestErrorForClients {
        index = nil
      }
    }
    guard let index else { return nil }
    node(id).pendingWrites[index] = SimulatedNode.PendingWrite(
      operationID: operationID, key: key, value: value, invokedAt: invokedAt)
    log("write #\(operationID) k\(key)=\(value) at \(id) index \(index)")
    try drive(id)
    return operationID
  }

  /// Starts a linearizable read at `id`. Returns the operation id, or nil if refused.
  @discardableResult
  public func read(at id: NodeID, key: UInt8) throws -> UInt64? {
    guard node(id).isUp else { return nil }
    let operationID = nextOperationID
    nextOperationID += 1
    var context = RaftEncoder()
    context.write(operationID)
    let invokedAt = clock()
    var accepted = true
    try withRaft(id) { raft in
      do {
        try raft.readIndex(context: context.bytes)
      } catch let error as RaftError where error.isRequestErrorForClients {
        accepted = false
      }
    }
    guard accepted else { return nil }
    node(id).pendingReads[context.bytes] = SimulatedNode.PendingRead(
      operationID: operationID, key: key, invokedAt: invokedAt)
    log("read #\(operationID) k\(key) at \(id)")
    try drive(id)
    return operationID
  }

  /// Settles writes whose client never heard back (end of a run, after the liveness phase
  /// committed a fresh entry). A write some node applied took effect no later than that
  /// first application; a write nobody applied by now never will be (a newer committed
  /// entry precedes or replaces it), so it is dropped. This keeps the checker's search small
  /// without weakening it.
  public func closeHistory() {
    for id in nodeIDs {
      for (_, write) in node(id).pendingWrites.sorted(by: { $0.key < $1.key }) {
        history.append(
          ClientOperation(
            id: write.operationID, key: write.key, kind: .write(write.value),
            invokedAt: write.invokedAt, returnedAt: nil))
      }
      node(id).pendingWrites = [:]
    }
    history = history.compactMap { operation in
      guard operation.returnedAt == nil else { return operation }
      guard let applied = firstAppliedAt[operation.id] else { return nil }
      var settled = operation
      settled.returnedAt = max(applied, operation.invokedAt + 1)
      return settled
    }
  }

  // MARK: - Administrative operations

  /// The application takes a snapshot at its applied index and compacts the log behind it,
  /// keeping `keepEntries` entries for followers that are only slightly behind.
  public func snapshot(_ id: NodeID, keepEntries: UInt64) throws {
    let node = node(id)
    guard let raft = node.raft else { return }
    let applied = raft.appliedIndex
    guard applied > (try node.storage.snapshot()).metadata.index else { return }
    _ = try node.storage.createSnapshot(
      at: applied, confState: raft.confState, data: node.store.snapshotData())
    let compactIndex = applied > keepEntries ? applied - keepEntries : 0
    if compactIndex > 0 {
      try node.storage.compact(upTo: compactIndex)
    }
    log("snapshot \(id) at \(applied), compact to \(compactIndex)")
  }

  public func proposeConfChange(at id: NodeID, _ change: ConfChange) throws -> Bool {
    guard node(id).isUp else { return false }
    var accepted = true
    try withRaft(id) { raft in
      do {
        try raft.proposeConfChange(change)
      } catch let error as RaftError where error.isRequestErrorForClients {
        accepted = false
      }
    }
    if accepted { log("conf change \(change.kind) \(change.node) at \(id)") }
    try drive(id)
    return accepted
  }

  public func transferLeadership(from id: NodeID, to target: NodeID) throws -> Bool {
    guard node(id).isUp else { return false }
    var accepted = true
    try withRaft(id) { raft in
      do {
        try raft.transferLeadership(to: target)
      } catch let error as RaftError where error.isRequestErrorForClients {
        accepted = false
      }
    }
    if accepted {
      statistics["transfers started", default: 0] += 1
      log("transfer \(id) -> \(target)")
    }
    try drive(id)
    return accepted
  }

  /// Node `id` starts an election now; see `RaftNode.campaign(overridingLeases:)`.
  public func campaign(_ id: NodeID, overridingLeases: Bool = false) throws {
    try withRaft(id) { try $0.campaign(overridingLeases: overridingLeases) }
    try drive(id)
  }

  // MARK: - Driver

  private func withRaft(_ id: NodeID, _ body: (inout RaftNode) throws -> Void) throws {
    let node = node(id)
    guard node.raft != nil else { return }
    do {
      // In place (checked just above): copying a RaftNode out and back costs a retain and
      // release of every field.
      try body(&node.raft!)
    } catch let error as RaftError {
      throw SafetyViolation("node \(id) failed: \(error)")
    }
  }

  private enum CrashPoint: CaseIterable {
    case beforePersist
    case afterPersist
    case afterSend
  }

  /// Handles every pending Ready of `id` like a production driver, checking as it goes.
  func drive(_ id: NodeID) throws {
    let node = node(id)
    // (`node.raft?` is read in place: binding a RaftNode copies every field.)
    while node.raft?.hasReady == true {
      var crashPoint: CrashPoint?
      // Crashes strike while a Ready is being written (the window that matters).
      if crashDuringReadyPerMille > 0 && node.raft?.hasPersistentWork == true
        && Int(random.next(below: 1000)) < crashDuringReadyPerMille
      {
        crashPoint = CrashPoint.allCases.randomElement(using: &random)
      }
      var losingSentMessages = false
      if let trapPoint = leaderCrashTrapPoint(node) {
        crashPoint = trapPoint
        losingSentMessages = true
      }
      var ready = Ready()
      try withRaft(id) { ready = try $0.ready() }
      if raftFaults.ackBeforePersist {
        // Deliberately wrong order (test fault): acknowledgements leave before the disk
        // write, so a crash in between loses data others already counted.
        for message in ready.messages { try enqueue(message) }
        if crashPoint != nil {
          crash(id, losingSentMessages: losingSentMessages)
          return
        }
        try persist(node, ready)
      } else {
        if crashPoint == .beforePersist {
          crash(id, losingSentMessages: losingSentMessages)
          return
        }
        try persist(node, ready)
        if crashPoint == .afterPersist {
          crash(id, losingSentMessages: losingSentMessages)
          return
        }
        for message in ready.messages { try enqueue(message) }
      }
      if crashPoint == .afterSend {
        crash(id, losingSentMessages: losingSentMessages)
        return
      }
      try checkReady(node, ready)
      try apply(node, ready)
      try withRaft(id) { try $0.advance() }
      try serveReads(node)
    }
  }

  /// Where the armed leader-crash trap makes `node` crash in the Ready it is about to
  /// handle, if it does.
  private func leaderCrashTrapPoint(_ node: SimulatedNode) -> CrashPoint? {
    guard let role = node.raft?.role, let term = node.raft?.term,
      let committed = node.raft?.committedIndex
    else { return nil }
    if role == .leader && node.leaderTerm != term {
      node.leaderTerm = term
      if let trigger = leaderCrashTrap {
        leaderCrashTrap = nil
        var readies = 0
        if case .afterPersistingReady(let count) = trigger { readies = count }
        node.crashTrap = (trigger, readies, committed)
      }
    }
    guard let trap = node.crashTrap else { return nil }
    guard role == .leader, term == node.leaderTerm else {
      node.crashTrap = nil
      return nil
    }
    let point: CrashPoint?
    switch trap.trigger {
    case .afterPersistingReady:
      node.crashTrap?.readiesLeft -= 1
      point = trap.readiesLeft <= 1 ? .afterPersist : nil
    case .afterFirstNewCommit:
      let knownCommitted = max(trap.commitAtElection, LogIndex(committedTerms.count))
      point = committed > knownCommitted ? .afterPersist : nil
    }
    if point != nil {
      log("trap springs on leader \(node.id) (term \(term), commit \(committed))")
      trappedLeaders.append(node.id)
      statistics["trapped leaders crashed", default: 0] += 1
    }
    return point
  }

  private func persist(_ node: SimulatedNode, _ ready: Ready) throws {
    try node.storage.persist(
      hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot)
    for entry in ready.entries {
      // Log matching: an (index, term) pair always names the same entry and predecessor.
      let previousTerm = try node.storage.term(at: entry.index - 1)
      let fingerprint = EntryFingerprint(
        term: entry.term, data: entry.data, previousTerm: previousTerm)
      let position = Position(index: entry.index, term: entry.term)
      if let known = entriesByPosition[position] {
        if known != fingerprint {
          throw SafetyViolation(
            "log matching: node \(node.id) holds a different entry at index \(entry.index) "
              + "term \(entry.term)")
        }
      } else {
        entriesByPosition[position] = fingerprint
      }
      // No committed entry is ever overwritten from the term it was committed in onward:
      // every leader of a later term holds it (§5.4). A stale leader of an earlier term
      // (even one later than the entry's own term) may still write something else at that
      // index; that entry can never commit.
      let slot = Int(entry.index - 1)
      if entry.index <= LogIndex(committedTerms.count) && committedTerms[slot] != 0
        && committedTerms[slot] != entry.term && entry.term >= committedInTerm[slot]
      {
        throw SafetyViolation(
          "committed entry \(entry.index) (term \(committedTerms[slot]), committed by term "
            + "\(committedInTerm[slot])) overwritten on node \(node.id) with term \(entry.term)")
      }
    }
  }

  private func checkReady(_ node: SimulatedNode, _ ready: Ready) throws {
    guard let raft = node.raft else { return }
    if raft.role == .leader && leaderByTerm[raft.term] == nil {
      statistics["leaders elected", default: 0] += 1
    }
    if let hardState = ready.hardState { try checkCommitted(node, upTo: hardState.commit) }
    if let snapshot = ready.snapshot {
      try recordCommitted(index: snapshot.metadata.index, term: snapshot.metadata.term, by: node.id)
    }
    if raft.role == .leader {
      // Raft §5.2: "at most one candidate can win the election for a particular term".
      if let other = leaderByTerm[raft.term], other != node.id {
        throw SafetyViolation("two leaders in term \(raft.term): \(other) and \(node.id)")
      }
      if leaderByTerm[raft.term] == nil {
        leaderByTerm[raft.term] = node.id
        log("leader \(node.id) term \(raft.term)")
        try checkLeaderCompleteness(node, term: raft.term)
      }
    }
  }

  /// Entries this node persisted as committed join the cluster's committed log.
  private func checkCommitted(_ node: SimulatedNode, upTo commit: LogIndex) throws {
    guard commit > node.commitChecked else { return }
    let first = try node.storage.firstIndex()
    var index = node.commitChecked + 1
    while index <= commit {
      if index + 1 >= first {
        let term = try node.storage.term(at: index)
        try recordCommitted(index: index, term: term, by: node.id)
      }
      index += 1
    }
    node.commitChecked = commit
  }

  private func recordCommitted(index: LogIndex, term: Term, by id: NodeID) throws {
    guard index > 0 else { return }
    let storage = node(id).storage
    let observerTerm = storage.hardState.term
    if index <= LogIndex(committedTerms.count) {
      let known = committedTerms[Int(index - 1)]
      if known != term {
        throw SafetyViolation(
          "node \(id) committed term \(term) at index \(index), cluster committed term \(known)")
      }
      committedInTerm[Int(index - 1)] = min(committedInTerm[Int(index - 1)], observerTerm)
    } else if index == LogIndex(committedTerms.count) + 1 {
      committedTerms.append(term)
      committedInTerm.append(observerTerm)
    } else {
      // Gap (a snapshot jumped ahead): fill from this node's log where it still has it.
      var fill = LogIndex(committedTerms.count) + 1
      while fill < index {
        committedTerms.append((try? storage.term(at: fill)) ?? 0)
        committedInTerm.append(observerTerm)
        fill += 1
      }
      committedTerms.append(term)
      committedInTerm.append(observerTerm)
    }
  }

  /// Raft §5.4: "the leader for any given term contains all of the entries committed in
  /// previous terms".
  private func checkLeaderCompleteness(_ node: SimulatedNode, term: Term) throws {
    let first = try node.storage.firstIndex()
    let last = try node.storage.lastIndex()
    for (offset, committedTerm) in committedTerms.enumerated() {
      let index = LogIndex(offset + 1)
      if index < first - 1 || committedTerm == 0 { continue }
      guard index <= last, try node.storage.term(at: index) == committedTerm else {
        throw SafetyViolation(
          "leader completeness: leader \(node.id) of term \(term) lacks committed entry "
            + "\(index) (term \(committedTerm))")
      }
    }
  }

  private func apply(_ node: SimulatedNode, _ ready: Ready) throws {
    if let snapshot = ready.snapshot {
      statistics["snapshots installed", default: 0] += 1
      node.store = try KeyValueStore(snapshotData: snapshot.data)
      lastApplied[node.id] = snapshot.metadata.index
      // Writes proposed here and covered by the snapshot: their outcome is unknown now.
      for (index, write) in node.pendingWrites.sorted(by: { $0.key < $1.key })
      where index <= snapshot.metadata.index {
        history.append(
          ClientOperation(
            id: write.operationID, key: write.key, kind: .write(write.value),
            invokedAt: write.invokedAt, returnedAt: nil))
        node.pendingWrites[index] = nil
      }
    }
    for entry in ready.committedEntries {
      let expected = (lastApplied[node.id] ?? 0) + 1
      guard entry.index == expected else {
        throw SafetyViolation("node \(node.id) applied \(entry.index), expected \(expected)")
      }
      lastApplied[node.id] = entry.index
      // Only committed entries may be applied.
      guard entry.index <= LogIndex(committedTerms.count),
        committedTerms[Int(entry.index - 1)] == entry.term
      else {
        throw SafetyViolation(
          "node \(node.id) applied entry \(entry.index) term \(entry.term) that is not committed")
      }
      // State-machine safety: every node applies the same entry at an index.
      let fingerprint = EntryFingerprint(term: entry.term, data: entry.data, previousTerm: 0)
      if let known = appliedEntries[entry.index] {
        guard known == fingerprint else {
          throw SafetyViolation(
            "state machine safety: node \(node.id) applied a different entry at \(entry.index)")
        }
      } else {
        appliedEntries[entry.index] = fingerprint
      }
      var command: KeyValueCommand?
      if entry.kind == .confChange { statistics["conf changes applied", default: 0] += 1 }
      if entry.kind == .normal {
        command = try KeyValueCommand.decode(entry.data)
        if let command {
          node.store.apply(command)
          if firstAppliedAt[command.operationID] == nil {
            firstAppliedAt[command.operationID] = clock()
          }
        }
      }
      if let write = node.pendingWrites.removeValue(forKey: entry.index) {
        if command?.operationID == write.operationID {
          history.append(
            ClientOperation(
              id: write.operationID, key: write.key, kind: .write(write.value),
              invokedAt: write.invokedAt, returnedAt: clock()))
        }
        // Otherwise another entry took the slot: the write was never committed.
      }
    }
    for readState in ready.readStates {
      node.readsAwaitingApply.append((readState.index, readState.context))
    }
  }

  private func serveReads(_ node: SimulatedNode) throws {
    guard let raft = node.raft else { return }
    var waiting: [(index: LogIndex, context: [UInt8])] = []
    for item in node.readsAwaitingApply {
      guard item.index <= raft.appliedIndex else {
        waiting.append(item)
        continue
      }
      guard let read = node.pendingReads.removeValue(forKey: item.context) else { continue }
      statistics["reads served", default: 0] += 1
      history.append(
        ClientOperation(
          id: read.operationID, key: read.key, kind: .read(node.store.values[read.key]),
          invokedAt: read.invokedAt, returnedAt: clock()))
    }
    node.readsAwaitingApply = waiting
  }

  /// Checks the client history recorded so far.
  public func checkLinearizability() throws {
    switch LinearizabilityChecker.verdict(history) {
    case .linearizable:
      break
    case .violation(let problem):
      throw SafetyViolation("linearizability: \(problem)")
    case .inconclusive(let keys):
      statistics["linearizability inconclusive keys", default: 0] += keys.count
    }
  }
}

extension RaftError {
  /// Refusals a client sees and retries elsewhere (the node keeps running).
  var isRequestErrorForClients: Bool {
    switch self {
    case .notLeader, .proposalDropped, .confChangePending, .invalidConfChange, .invalidRequest:
      return true
    default:
      return false
    }
  }
}
