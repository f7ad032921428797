// The single-threaded heart of a RaftHost: owns the RaftNode, its SQLite storage and the
// state machine, and runs every input (ticks, peer messages, client calls) and the whole
// Ready cycle on one event loop. Nothing here awaits: between a step and the handling of
// the Ready it produces no other input can interleave.

import Logging
import NIOCore
import StreamBusRaft
import StreamBusRaftSQLite
import StreamBusTransport

typealias WaitContinuation = CheckedContinuation<UInt64, any Error>

final class RaftDriver {
  let configuration: RaftHostConfiguration
  let eventLoop: any EventLoop
  private let logger: Logger
  private let storage: SQLiteRaftStorage
  private let stateMachine: any RaftStateMachine
  private let transport: PeerTransport
  private let board: StatusBoard
  private let selfAddresses: PeerAddresses
  private var node: RaftNode
  private(set) var addressBook: AddressBook

  private struct Waiter {
    var continuation: WaitContinuation
    var timeout: Scheduled<Void>
  }

  private struct PendingProposal {
    var term: Term
    var waiter: UInt64
  }

  private var waiters: [UInt64: Waiter] = [:]
  /// Waiters whose task was cancelled before their registration reached the loop.
  private var cancelledBeforeRegistration: Set<UInt64> = []
  /// Outcomes decided while handling a Ready, delivered once the Ready is advanced and the
  /// status published (so a caller resumed by them sees the new state).
  private var decided: [(waiter: UInt64, result: Result<UInt64, RaftHostError>)] = []
  private var proposals: [LogIndex: PendingProposal] = [:]
  private var readsAwaitingIndex: [[UInt8]: UInt64] = [:]
  private var readsAwaitingApply: [(index: LogIndex, waiter: UInt64)] = []
  private var transfers: [UInt64] = []
  private var appliedSinceSnapshot: UInt64 = 0
  private var snapshotIndex: LogIndex
  private var lastContact: [NodeID: NIODeadline] = [:]
  /// Leader: index of the first entry of its term; applying it makes the leader ready.
  private var leaderTermStartIndex: LogIndex?
  private var readyScheduled = false
  /// Role and leader as of the last Ready that reported them.
  private var knownRole = RaftRole.follower
  private var knownLeader: NodeID?
  private var stopReason: String?
  private var closed = false
  private var tickTask: RepeatedTask?
  private let limiter = LogLimiter()

  var id: NodeID { configuration.nodeID }

  init(
    configuration: RaftHostConfiguration, eventLoop: any EventLoop,
    stateMachine: any RaftStateMachine, transport: PeerTransport, board: StatusBoard,
    selfAddresses: PeerAddresses, logger: Logger
  ) throws {
    self.configuration = configuration
    self.eventLoop = eventLoop
    self.stateMachine = stateMachine
    self.transport = transport
    self.board = board
    self.selfAddresses = selfAddresses
    self.logger = logger
    // A founder's new database starts from the bootstrap snapshot (used only on creation;
    // the state machine is still in its initial state here, before any restore).
    let bootstrap =
      configuration.join
      ? nil
      : BootstrapSnapshot.make(
        initialCluster: configuration.initialCluster, initialState: try stateMachine.snapshot())
    storage = try SQLiteRaftStorage(
      path: configuration.databasePath, clusterID: configuration.clusterID,
      nodeID: configuration.nodeID, initialSnapshot: bootstrap,
      options: configuration.storageOptions)
    do {
      // What the log and snapshots say about addresses is newer than the bootstrap flags.
      var book = AddressBook(configuration.initialCluster)
      let snapshot = try storage.snapshot()
      snapshotIndex = snapshot.metadata.index
      if !snapshot.isEmpty {
        let envelope = try SnapshotEnvelope(decoding: snapshot.data)
        book.merge(envelope.addressBook)
        if !BootstrapSnapshot.holdsInitialState(snapshot.metadata.index) {
          try stateMachine.restore(
            from: envelope.stateMachineData, index: snapshot.metadata.index)
        }
      }
      book[configuration.nodeID] = selfAddresses
      addressBook = book
      var raftConfig = RaftConfig(
        id: configuration.nodeID,
        randomSeed: configuration.randomSeed ?? UInt64.random(in: 1...UInt64.max))
      raftConfig.electionTimeoutTicks = configuration.electionTimeoutTicks
      raftConfig.heartbeatTicks = configuration.heartbeatTicks
      raftConfig.preVote = configuration.preVote
      raftConfig.checkQuorum = configuration.checkQuorum
      raftConfig.appendBytesMax = configuration.appendBytesMax
      raftConfig.snapshotChunkBytesMax = configuration.snapshotChunkBytesMax
      node = try RaftNode(config: raftConfig, storage: storage)
    } catch {
      storage.close()
      throw error
    }
    let (hardState, confState) = try storage.initialState()
    let lastIndex = try storage.lastIndex()
    logger.info(
      "raft node started",
      metadata: [
        "node": "\(configuration.nodeID)", "term": "\(hardState.term)",
        "commit": "\(hardState.commit)", "snapshot": "\(snapshotIndex)",
        "last": "\(lastIndex)", "voters": "\(confState.voters)",
        "learners": "\(confState.learners)",
      ])
  }

  private var bound: NIOLoopBound<RaftDriver> { NIOLoopBound(self, eventLoop: eventLoop) }

  /// Starts the tick timer and publishes the first status.
  func start() {
    let bound = self.bound
    let interval = TimeAmount.milliseconds(configuration.tickIntervalMs)
    tickTask = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
      bound.value.tick()
    }
    publishStatus()
  }

  // MARK: - Inputs

  func tick() {
    guard stopReason == nil, !closed else { return }
    do {
      try node.tick()
    } catch {
      stop("tick failed: \(error)")
      return
    }
    processReady()
  }

  func receive(from peer: NodeID, sender: PeerAddresses, messages: [Message]) {
    guard stopReason == nil, !closed else { return }
    lastContact[peer] = .now()
    learn(peer, sender)
    for message in messages {
      do {
        try node.step(message)
      } catch let error as RaftError {
        if node.stopReason != nil {
          stop("stepping a message from \(peer) failed: \(error)")
          return
        }
        if limiter.shouldLog("step-\(peer)") {
          logger.debug("ignored peer message", metadata: ["peer": "\(peer)", "error": "\(error)"])
        }
      } catch {
        stop("stepping a message from \(peer) failed: \(error)")
        return
      }
    }
    scheduleReady()
  }

  /// The sender's self-reported addresses fill gaps in the book (a node that joined later
  /// learns the leader's address from its first append) and keep API addresses current;
  /// Raft addresses known from the log or the configuration are not overridden.
  private func learn(_ peer: NodeID, _ sender: PeerAddresses) {
    guard peer != id else { return }
    if var known = addressBook[peer] {
      if let api = sender.apiAddress, known.apiAddress != api {
        known.apiAddress = api
        addressBook[peer] = known
      }
    } else {
      addressBook[peer] = sender
    }
  }

  // MARK: - Client operations (each registers a waiter first)

  /// Registers a waiter; false if it was already answered (cancelled, stopped, closed).
  func register(_ waiter: UInt64, _ continuation: WaitContinuation, timeoutMs: Int64, what: String)
    -> Bool
  {
    if cancelledBeforeRegistration.remove(waiter) != nil {
      continuation.resume(throwing: RaftHostError(.cancelled, "\(what) cancelled"))
      return false
    }
    if let failure = unavailableError() {
      continuation.resume(throwing: failure)
      return false
    }
    let bound = self.bound
    let timeout = eventLoop.scheduleTask(in: .milliseconds(timeoutMs)) {
      let driver = bound.value
      driver.finish(
        waiter, .failure(RaftHostError(.timedOut, "\(what) not done within \(timeoutMs) ms")))
      driver.forget(waiter)
    }
    waiters[waiter] = Waiter(continuation: continuation, timeout: timeout)
    return true
  }

  func cancel(_ waiter: UInt64) {
    if waiters[waiter] != nil {
      finish(waiter, .failure(RaftHostError(.cancelled, "the calling task was cancelled")))
      forget(waiter)
    } else {
      cancelledBeforeRegistration.insert(waiter)
    }
  }

  /// Drops the bookkeeping of a waiter that gave up, so requests the core lost (a ReadIndex
  /// whose message never reached the leader) do not pile up. Rare, so a linear scan.
  private func forget(_ waiter: UInt64) {
    if let index = proposals.first(where: { $0.value.waiter == waiter })?.key {
      proposals[index] = nil
    }
    if let context = readsAwaitingIndex.first(where: { $0.value == waiter })?.key {
      readsAwaitingIndex[context] = nil
    }
    readsAwaitingApply.removeAll { $0.waiter == waiter }
    transfers.removeAll { $0 == waiter }
  }

  func finish(_ waiter: UInt64, _ result: Result<UInt64, RaftHostError>) {
    guard let entry = waiters.removeValue(forKey: waiter) else { return }
    entry.timeout.cancel()
    entry.continuation.resume(with: result.mapError { $0 as any Error })
  }

  private func unavailableError() -> RaftHostError? {
    if let stopReason { return RaftHostError(.stopped, "raft node stopped: \(stopReason)") }
    if closed { return RaftHostError(.shutDown, "raft host is shut down") }
    return nil
  }

  func startProposal(_ data: [UInt8], expectedTerm: Term?, waiter: UInt64) throws {
    if let expectedTerm, node.role == .leader, node.term != expectedTerm {
      throw RaftHostError(
        .proposalDropped,
        "proposal expected term \(expectedTerm) but this leader is in term \(node.term)")
    }
    guard !data.isEmpty else {
      throw RaftHostError(.invalidRequest, "empty proposals are reserved for the leader's no-op")
    }
    guard data.count <= configuration.proposalBytesMax else {
      throw RaftHostError(
        .invalidRequest,
        "proposal of \(data.count) bytes exceeds \(configuration.proposalBytesMax)")
    }
    let index = try raftCall { try $0.propose(data) }
    proposals[index] = PendingProposal(term: node.term, waiter: waiter)
    scheduleReady()
  }

  func startAddLearner(_ member: NodeID, addresses: PeerAddresses, waiter: UInt64) throws {
    guard member != 0 else { throw RaftHostError(.invalidRequest, "node id 0 is reserved") }
    try requireLeader()
    guard !node.confState.isVoter(member) else {
      throw RaftHostError(.invalidRequest, "node \(member) is already a voter")
    }
    var book = membersBook()
    book[member] = addresses
    try startConfChange(
      ConfChange(kind: .addLearner, node: member, context: book.encoded()), waiter: waiter)
  }

  func startPromote(_ member: NodeID, waiter: UInt64) throws {
    try requireLeader()
    guard node.confState.isLearner(member) else {
      throw RaftHostError(.invalidRequest, "node \(member) is not a learner")
    }
    let last = try raftCall { try $0.lastIndex() }
    let match = node.progress[member]?.match ?? 0
    guard match + configuration.promotionLagEntriesMax >= last else {
      throw RaftHostError(
        .learnerNotCaughtUp,
        "learner \(member) has \(match) of \(last) entries "
          + "(at most \(configuration.promotionLagEntriesMax) behind allowed)")
    }
    try startConfChange(ConfChange(kind: .addVoter, node: member), waiter: waiter)
  }

  func startRemove(_ member: NodeID, waiter: UInt64) throws {
    try requireLeader()
    guard node.confState.isMember(member) else {
      throw RaftHostError(.invalidRequest, "node \(member) is not a member")
    }
    try startConfChange(ConfChange(kind: .removeNode, node: member), waiter: waiter)
  }

  private func startConfChange(_ change: ConfChange, waiter: UInt64) throws {
    let index = try raftCall { try $0.proposeConfChange(change) }
    proposals[index] = PendingProposal(term: node.term, waiter: waiter)
    scheduleReady()
  }

  func startRead(waiter: UInt64) throws {
    // The waiter id is unique for the host's lifetime, so it names the request.
    var encoder = RaftEncoder()
    encoder.write(waiter)
    let context = encoder.bytes
    try raftCall { try $0.readIndex(context: context) }
    readsAwaitingIndex[context] = waiter
    scheduleReady()
  }

  func startTransfer(to target: NodeID?, waiter: UInt64) throws {
    try requireLeader()
    let chosen: NodeID
    if let target {
      chosen = target
    } else {
      // The most caught-up other voter needs the shortest catch-up before TimeoutNow.
      let candidates = node.confState.voters.filter { $0 != id }
      guard
        let best = candidates.max(by: { left, right in
          let leftMatch = node.progress[left]?.match ?? 0
          let rightMatch = node.progress[right]?.match ?? 0
          return leftMatch != rightMatch ? leftMatch < rightMatch : left > right
        })
      else {
        throw RaftHostError(.invalidRequest, "no other voter to transfer leadership to")
      }
      chosen = best
    }
    try raftCall { try $0.transferLeadership(to: chosen) }
    transfers.append(waiter)
    scheduleReady()
  }

  /// Committed application entries after `index`, read from the log.
  func readCommitted(after index: LogIndex, maxBytes: Int) throws -> CommittedRead {
    if let failure = unavailableError() { throw failure }
    let applied = node.appliedIndex
    if index >= applied { return .entries([], through: applied) }
    let first = try storage.firstIndex()
    var index = index
    if index + 1 < first {
      // Compacted only through the bootstrap snapshot: nothing of the application's is
      // missing, so a reader from the start simply continues after it.
      guard BootstrapSnapshot.holdsInitialState(first - 1) else {
        return .compacted(snapshotIndex: snapshotIndex)
      }
      index = first - 1
      if index >= applied { return .entries([], through: applied) }
    }
    let entries = try storage.entries(
      from: index + 1, to: applied + 1, maxBytes: UInt64(max(maxBytes, 1)))
    let through = entries.last?.index ?? index
    let application =
      entries
      .filter { $0.kind == .normal && !$0.data.isEmpty }
      .map { CommittedEntry(index: $0.index, term: $0.term, data: $0.data) }
    return .entries(application, through: through)
  }

  private func requireLeader() throws {
    guard node.role == .leader else { throw notLeaderError(node.leader) }
  }

  private func notLeaderError(_ leader: NodeID?) -> RaftHostError {
    let addresses = leader.flatMap { addressBook[$0] }
    let named = leader.map { "node \($0)" + (addresses.map { " (\($0))" } ?? "") } ?? "unknown"
    return RaftHostError(
      .notLeader, "node \(id) is not the leader; leader is \(named)", leaderID: leader,
      leaderAddresses: addresses)
  }

  /// Calls the core, translating its errors; a non-request error stops the host.
  @discardableResult
  private func raftCall<Result>(_ body: (inout RaftNode) throws -> Result) throws -> Result {
    if let failure = unavailableError() { throw failure }
    do {
      return try body(&node)
    } catch let error as RaftError {
      switch error {
      case .notLeader(let hint):
        throw notLeaderError(hint)
      case .proposalDropped(let why):
        throw RaftHostError(.proposalDropped, "proposal dropped: \(why)")
      case .confChangePending:
        throw RaftHostError(
          .reconfigurationInProgress, "another membership change is not applied yet")
      case .invalidConfChange(let why), .invalidRequest(let why), .invalidMessage(let why):
        throw RaftHostError(.invalidRequest, why)
      case .corruptStorage, .safetyViolation, .stopped:
        stop("\(error)")
        throw RaftHostError(.stopped, "raft node stopped: \(error)")
      }
    } catch {
      stop("\(error)")
      throw RaftHostError(.stopped, "raft node stopped: \(error)")
    }
  }

  /// Maps any error thrown by a `start...` call.
  func hostError(_ error: any Error) -> RaftHostError {
    (error as? RaftHostError) ?? RaftHostError(.stopped, "\(error)")
  }

  // MARK: - The Ready cycle

  func scheduleReady() {
    guard !readyScheduled else { return }
    readyScheduled = true
    // Runs after the inputs already queued on the loop, so proposals and messages that
    // arrive together share one Ready: one transaction, one fsync (group commit).
    let bound = self.bound
    eventLoop.execute {
      let driver = bound.value
      driver.readyScheduled = false
      driver.processReady()
    }
  }

  private func processReady() {
    guard stopReason == nil, !closed else { return }
    var rounds = 0
    while node.hasReady && rounds < 8 {
      rounds += 1
      do {
        let ready = try node.ready()
        try handle(ready)
        try node.advance()
        serveReads()
        try maybeSnapshot()
      } catch {
        stop("handling a Ready failed: \(error)")
        return
      }
    }
    publishStatus()
    deliverDecided()
    // Leave room for other inputs when there is much to apply; the rest comes next turn.
    if node.hasReady { scheduleReady() }
  }

  /// Persist, then send, then restore/apply, as the Ready contract requires.
  private func handle(_ ready: Ready) throws {
    // Before a leadership change fails the reads still waiting: these ones were confirmed
    // by a quorum while this node led, so they stay valid.
    for readState in ready.readStates {
      if let waiter = readsAwaitingIndex.removeValue(forKey: readState.context) {
        readsAwaitingApply.append((readState.index, waiter))
      }
    }
    if let soft = ready.softState { try leadershipChanged(soft) }
    if !proposals.isEmpty { failOverwrittenProposals(ready) }
    if ready.mustPersist {
      try storage.persist(
        hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot)
    }
    send(ready.messages)
    if let snapshot = ready.snapshot { try install(snapshot) }
    if !ready.committedEntries.isEmpty { try apply(ready.committedEntries) }
  }

  private func leadershipChanged(_ soft: SoftState) throws {
    defer {
      knownRole = soft.role
      knownLeader = soft.leader
    }
    if soft.role == .leader {
      if knownRole != .leader {
        // The new leader's no-op is the last entry right now.
        leaderTermStartIndex = try node.lastIndex()
      }
    } else {
      leaderTermStartIndex = nil
    }
    if soft.leader != knownLeader {
      logger.info(
        "leader changed",
        metadata: [
          "term": "\(node.term)", "leader": "\(soft.leader.map(String.init) ?? "none")",
          "role": "\(soft.role)",
        ])
      // The core forgets pending ReadIndex requests when leadership moves.
      let reads = readsAwaitingIndex.values
      readsAwaitingIndex = [:]
      for waiter in reads { decided.append((waiter, .failure(notLeaderError(soft.leader)))) }
    }
    if let leader = soft.leader, leader != id {
      for waiter in transfers { decided.append((waiter, .success(leader))) }
      transfers = []
    }
  }

  /// Entries about to overwrite positions of this node's proposals: those proposals lost.
  private func failOverwrittenProposals(_ ready: Ready) {
    if let snapshot = ready.snapshot {
      for (index, pending) in proposals where index <= snapshot.metadata.index {
        proposals[index] = nil
        decided.append(
          (
            pending.waiter,
            .failure(
              RaftHostError(
                .outcomeUnknown,
                "the log up to \(snapshot.metadata.index) was replaced by a snapshot "
                  + "before entry \(index) was seen applied"))
          ))
      }
    }
    guard let first = ready.entries.first?.index, let last = ready.entries.last?.index else {
      return
    }
    for (index, pending) in proposals where index >= first {
      let replacementTerm = index <= last ? ready.entries[Int(index - first)].term : nil
      if replacementTerm != pending.term {
        proposals[index] = nil
        decided.append((pending.waiter, .failure(overwritten(index, pending.term))))
      }
    }
  }

  private func overwritten(_ index: LogIndex, _ term: Term) -> RaftHostError {
    RaftHostError(
      .proposalOverwritten,
      "entry \(index) of term \(term) was replaced by a later leader and will not be applied")
  }

  private func send(_ messages: [Message]) {
    guard !messages.isEmpty else { return }
    var byPeer: [NodeID: [Message]] = [:]
    for message in messages { byPeer[message.to, default: []].append(message) }
    for (peer, batch) in byPeer {
      guard let address = addressBook[peer]?.raftAddress else {
        if limiter.shouldLog("address-\(peer)") {
          logger.warning(
            "no address known for peer, dropping messages", metadata: ["peer": "\(peer)"])
        }
        continue
      }
      transport.send(batch, to: peer, address: address)
    }
  }

  private func install(_ snapshot: Snapshot) throws {
    let envelope = try SnapshotEnvelope(decoding: snapshot.data)
    // The core installs a snapshot only past the commit index, so a node receiving the
    // bootstrap snapshot has applied nothing: its state machine is already in that state.
    if !BootstrapSnapshot.holdsInitialState(snapshot.metadata.index) {
      try stateMachine.restore(from: envelope.stateMachineData, index: snapshot.metadata.index)
    }
    addressBook.merge(envelope.addressBook)
    addressBook[id] = selfAddresses
    snapshotIndex = max(snapshotIndex, snapshot.metadata.index)
    appliedSinceSnapshot = 0
    logger.info(
      "installed snapshot from leader",
      metadata: ["index": "\(snapshot.metadata.index)", "bytes": "\(snapshot.data.count)"])
  }

  private func apply(_ entries: [Entry]) throws {
    var batch: [CommittedEntry] = []
    for entry in entries {
      switch entry.kind {
      case .normal:
        if !entry.data.isEmpty {
          batch.append(CommittedEntry(index: entry.index, term: entry.term, data: entry.data))
        }
      case .confChange:
        try applyMembershipAddresses(try ConfChange(decoding: entry.data))
      }
    }
    if !batch.isEmpty { try stateMachine.apply(entries: batch) }
    appliedSinceSnapshot += UInt64(entries.count)
    for entry in entries {
      guard let pending = proposals.removeValue(forKey: entry.index) else { continue }
      decided.append(
        (
          pending.waiter,
          pending.term == entry.term
            ? .success(entry.index) : .failure(overwritten(entry.index, pending.term))
        ))
    }
  }

  private func applyMembershipAddresses(_ change: ConfChange) throws {
    switch change.kind {
    case .addVoter, .addLearner:
      guard !change.context.isEmpty else { return }
      let book: AddressBook
      do {
        book = try AddressBook(decoding: change.context)
      } catch {
        logger.warning(
          "membership change carries unreadable addresses",
          metadata: ["node": "\(change.node)", "error": "\(error)"])
        return
      }
      for (member, addresses) in book.entries where member != id {
        if member == change.node || addressBook[member] == nil {
          addressBook[member] = addresses
        }
      }
    case .removeNode:
      guard change.node != id else { return }
      addressBook[change.node] = nil
      lastContact[change.node] = nil
      transport.forget(change.node)
    }
  }

  /// Addresses of the current members (what snapshots and membership changes carry).
  private func membersBook() -> AddressBook {
    var book = AddressBook()
    for member in node.confState.members {
      if let addresses = addressBook[member] { book[member] = addresses }
    }
    book[id] = selfAddresses
    return book
  }

  private func serveReads() {
    guard !readsAwaitingApply.isEmpty else { return }
    let applied = node.appliedIndex
    readsAwaitingApply.removeAll { read in
      guard read.index <= applied else { return false }
      decided.append((read.waiter, .success(read.index)))
      return true
    }
  }

  private func maybeSnapshot() throws {
    let applied = node.appliedIndex
    guard appliedSinceSnapshot >= configuration.snapshotThresholdEntries, applied > snapshotIndex
    else { return }
    let envelope = SnapshotEnvelope(
      addressBook: membersBook(), stateMachineData: try stateMachine.snapshot())
    let data = envelope.encoded()
    _ = try storage.createSnapshot(at: applied, confState: node.confState, data: data)
    snapshotIndex = applied
    appliedSinceSnapshot = 0
    let keepFrom =
      applied > configuration.snapshotTrailingEntries
      ? applied - configuration.snapshotTrailingEntries : 0
    if keepFrom >= (try storage.firstIndex()) {
      try storage.compact(upTo: keepFrom)
    }
    logger.debug(
      "snapshot taken", metadata: ["index": "\(applied)", "bytes": "\(data.count)"])
  }

  private func deliverDecided() {
    guard !decided.isEmpty else { return }
    let outcomes = decided
    decided = []
    for outcome in outcomes { finish(outcome.waiter, outcome.result) }
  }

  // MARK: - Status

  func publishStatus() {
    board.publish(buildStatus())
  }

  private func buildStatus() -> RaftHostStatus {
    var status = RaftHostStatus(nodeID: id)
    status.role = node.role
    status.term = node.term
    status.leaderID = node.leader
    status.leaderAddresses = node.leader.flatMap { addressBook[$0] }
    status.commitIndex = node.committedIndex
    status.appliedIndex = node.appliedIndex
    let last = (try? node.lastIndex()) ?? node.committedIndex
    status.lastIndex = last
    status.snapshotIndex = snapshotIndex
    if node.role == .leader, let start = leaderTermStartIndex {
      status.isLeaderReady = node.appliedIndex >= start
    }
    let now = NIODeadline.now()
    func member(_ member: NodeID) -> RaftMemberStatus {
      var entry = RaftMemberStatus(id: member, addresses: addressBook[member])
      if member == id {
        entry.lastContactMs = 0
      } else if let contact = lastContact[member] {
        entry.lastContactMs = (now - contact).nanoseconds / 1_000_000
      }
      if node.role == .leader, let progress = node.progress[member] {
        entry.matchIndex = progress.match
        entry.lag = last > progress.match ? last - progress.match : 0
      }
      return entry
    }
    status.voters = node.confState.voters.map(member)
    status.learners = node.confState.learners.map(member)
    status.stopReason = stopReason
    return status
  }

  // MARK: - Stopping

  private func stop(_ reason: String) {
    guard stopReason == nil else { return }
    stopReason = reason
    logger.error("raft node stopped", metadata: ["reason": "\(reason)"])
    tickTask?.cancel()
    failEverything(RaftHostError(.stopped, "raft node stopped: \(reason)"))
    publishStatus()
  }

  private func failEverything(_ error: RaftHostError) {
    decided = []
    proposals = [:]
    readsAwaitingIndex = [:]
    readsAwaitingApply = []
    transfers = []
    for waiter in Array(waiters.keys) { finish(waiter, .failure(error)) }
  }

  /// Last call on the loop: fails every waiter and closes the database.
  func close() {
    guard !closed else { return }
    closed = true
    tickTask?.cancel()
    failEverything(RaftHostError(.shutDown, "raft host is shut down"))
    storage.close()
  }
}

/// Answer of `RaftHost.readCommitted(after:maxBytes:)`.
public enum CommittedRead: Sendable, Hashable {
  /// Application entries after the requested index, up to the applied index, bounded by the
  /// byte budget; `through` is the last log index examined (membership changes and no-ops
  /// are skipped), where the next read continues.
  case entries([CommittedEntry], through: LogIndex)
  /// The entries right after the requested index were compacted; the state as of
  /// `snapshotIndex` must come from the state machine's snapshot instead.
  case compacted(snapshotIndex: LogIndex)
}
