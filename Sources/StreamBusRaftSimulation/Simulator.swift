import StreamBusRaft

/// The kinds of trouble a simulation run may inject.
public enum SimulationFault: String, Sendable, Hashable, CaseIterable {
  case drop
  case duplicate
  case reorder
  case partition
  case crash
  case membership
  case transfer
  case snapshot

  /// Parses a comma-separated list ("all" and "none" allowed).
  public static func parseList(_ text: String) throws -> Set<SimulationFault> {
    if text == "all" { return Set(allCases) }
    if text == "none" || text.isEmpty { return [] }
    var faults: Set<SimulationFault> = []
    for name in text.split(separator: ",") {
      guard let fault = SimulationFault(rawValue: String(name)) else {
        throw SafetyViolation(
          "unknown fault '\(name)'; known: \(allCases.map(\.rawValue).joined(separator: ","))")
      }
      faults.insert(fault)
    }
    return faults
  }

  public static func listText(_ faults: Set<SimulationFault>) -> String {
    if faults == Set(allCases) { return "all" }
    if faults.isEmpty { return "none" }
    return allCases.filter(faults.contains).map(\.rawValue).joined(separator: ",")
  }
}

/// One deliberate bug of `RaftTestFaults`, by its command-line name.
public enum RaftFaultSwitch: String, Sendable, Hashable, CaseIterable {
  case secondVote = "second-vote"
  case skipTermCommit = "skip-term-commit"
  case applyBeforeCommit = "apply-before-commit"
  case ackBeforePersist = "ack-before-persist"
  case readWithoutQuorum = "read-without-quorum"

  /// The `RaftTestFaults` setting this switch stands for.
  public var setting: WritableKeyPath<RaftTestFaults, Bool> {
    switch self {
    case .secondVote: return \.grantSecondVote
    case .skipTermCommit: return \.skipCurrentTermCommitRule
    case .applyBeforeCommit: return \.applyBeforeCommit
    case .ackBeforePersist: return \.ackBeforePersist
    case .readWithoutQuorum: return \.readWithoutQuorum
    }
  }

  /// The core settings with only this bug switched on.
  public var faults: RaftTestFaults {
    var faults = RaftTestFaults()
    faults[keyPath: setting] = true
    return faults
  }

  /// The switches set in `faults`, in declaration order.
  public static func switches(in faults: RaftTestFaults) -> [RaftFaultSwitch] {
    allCases.filter { faults[keyPath: $0.setting] }
  }

  /// Parses a comma-separated list of switch names.
  public static func parseList(_ text: String) throws -> RaftTestFaults {
    var faults = RaftTestFaults()
    for name in text.split(separator: ",") {
      guard let fault = RaftFaultSwitch(rawValue: String(name)) else {
        throw SafetyViolation(
          "unknown bug '\(name)'; known: \(allCases.map(\.rawValue).joined(separator: ","))")
      }
      faults[keyPath: fault.setting] = true
    }
    return faults
  }
}

public struct SimulationOptions: Sendable {
  public var seed: UInt64
  public var nodeCount: Int
  /// Events in the safety phase (ticks, client operations, faults).
  public var steps: Int
  public var faults: Set<SimulationFault>
  public var raftFaults: RaftTestFaults
  /// Ticks the healed cluster gets to elect a leader and commit a new write everywhere.
  public var livenessTicksMax: Int = 400
  public var recordsEvents = false

  public init(
    seed: UInt64, nodeCount: Int, steps: Int,
    faults: Set<SimulationFault> = Set(SimulationFault.allCases),
    raftFaults: RaftTestFaults = RaftTestFaults()
  ) {
    self.seed = seed
    self.nodeCount = nodeCount
    self.steps = steps
    self.faults = faults
    self.raftFaults = raftFaults
  }

  /// The command line that reruns exactly this case.
  public var reproduceCommand: String {
    var command =
      "swift run raft-sim --seed \(seed) --nodes \(nodeCount) --steps \(steps) "
      + "--faults \(SimulationFault.listText(faults))"
    let bugs = RaftFaultSwitch.switches(in: raftFaults).map(\.rawValue)
    if !bugs.isEmpty { command += " --bugs \(bugs.joined(separator: ","))" }
    return command
  }
}

public struct SimulationResult: Sendable {
  public var options: SimulationOptions
  /// Nil if every check passed.
  public var failure: String?
  public var stepsRun: Int
  public var committedIndex: LogIndex
  public var operations: Int
  public var statistics: [String: Int]
  public var events: [String]

  public var passed: Bool { failure == nil }
}

/// Runs one seeded simulation: a safety phase with random faults and client load, then a
/// liveness phase with all faults healed, then the linearizability check.
public enum Simulator {
  public static func run(_ options: SimulationOptions) -> SimulationResult {
    var result = SimulationResult(
      options: options, failure: nil, stepsRun: 0, committedIndex: 0, operations: 0,
      statistics: [:], events: [])
    let cluster: SimulatedCluster
    var settingsDescription = ""
    do {
      // Swarm over the node settings too: from one entry per append with a window of one
      // message, to large batches and deep pipelines.
      var settings = SplitMix64(seed: options.seed ^ 0xC0FF_EE00)
      let appendBytesMax = [1, 60, 120, 1000][Int(settings.next(below: 4))]
      let inflightMessagesMax = 1 + Int(settings.next(below: 4))
      let chunkBytes = [4, 10, 64][Int(settings.next(below: 3))]
      let heartbeatTicks = 1 + Int(settings.next(below: 3))
      // A quarter of the seeds run without CheckQuorum (deposed leaders linger, which
      // stresses ReadIndex) and a quarter without PreVote.
      let checkQuorum = settings.next(below: 4) != 0
      let preVote = settings.next(below: 4) != 0
      settingsDescription =
        "appendBytesMax \(appendBytesMax), inflightMessagesMax \(inflightMessagesMax), "
        + "chunk \(chunkBytes), heartbeat \(heartbeatTicks), checkQuorum \(checkQuorum), "
        + "preVote \(preVote)"
      cluster = try SimulatedCluster(
        nodeCount: options.nodeCount, seed: options.seed, raftFaults: options.raftFaults
      ) { config in
        config.appendBytesMax = UInt64(appendBytesMax)
        config.inflightMessagesMax = inflightMessagesMax
        config.snapshotChunkBytesMax = chunkBytes
        config.heartbeatTicks = heartbeatTicks
        config.checkQuorum = checkQuorum
        config.preVote = preVote
      }
    } catch {
      result.failure = "start-up: \(error)"
      return result
    }
    cluster.recordsEvents = options.recordsEvents
    cluster.log("settings: \(settingsDescription)")
    do {
      try runSafetyPhase(cluster, options, &result)
      try runLivenessPhase(cluster, options)
      cluster.closeHistory()
      try cluster.checkLinearizability()
    } catch {
      result.failure = "\(error)"
    }
    result.committedIndex = LogIndex(cluster.committedTerms.count)
    result.operations = cluster.history.count
    result.events = cluster.eventLog
    result.statistics = cluster.statistics
    return result
  }

  private static func runSafetyPhase(
    _ cluster: SimulatedCluster, _ options: SimulationOptions, _ result: inout SimulationResult
  ) throws {
    var random = SplitMix64(seed: options.seed ^ 0x5EED_F00D)
    // Swarm testing: every seed keeps each requested fault kind with probability 3/4 and
    // draws its own intensities, so some seeds hammer one kind of trouble while others
    // stay calm long enough for subtle interleavings (a deposed leader next to a new one).
    // (Iterate in declaration order: a Set's order changes from process to process.)
    let faults = Set(
      SimulationFault.allCases.filter { options.faults.contains($0) && random.next(below: 4) != 0 })
    cluster.log("faults: \(SimulationFault.listText(faults))")
    cluster.network.dropPerMille = faults.contains(.drop) ? Int(random.next(below: 150)) : 0
    cluster.network.duplicatePerMille =
      faults.contains(.duplicate) ? Int(random.next(below: 60)) : 0
    cluster.network.delayTicksMax = faults.contains(.reorder) ? 1 + random.next(below: 5) : 1
    cluster.crashDuringReadyPerMille = faults.contains(.crash) ? Int(random.next(below: 20)) : 0
    let ids = cluster.nodeIDs
    let keysMax: UInt64 = 4 + random.next(below: 4)
    // Weights in quarters so that healing can be rare: a heal weight of 1 keeps a partition
    // for about a hundred ticks, long enough for a second leader to emerge and serve.
    func weight(_ base: UInt64) -> UInt64 { 4 * (1 + random.next(below: 2 * base)) }

    // Weighted event table; faults not enabled simply do not appear.
    var table: [(weight: UInt64, event: Event)] = [
      (160, .tick), (weight(12), .write), (weight(8), .read),
    ]
    if faults.contains(.partition) {
      table += [(weight(2), .partition), (1 + random.next(below: 12), .heal)]
    }
    if faults.contains(.crash) { table += [(weight(2), .crash), (weight(3), .restart)] }
    if faults.contains(.membership) { table.append((weight(2), .membership)) }
    if faults.contains(.transfer) { table.append((weight(1), .transfer)) }
    if faults.contains(.snapshot) { table.append((weight(3), .snapshot)) }
    let totalWeight = table.reduce(0) { $0 + $1.weight }
    // Ticks left during which heal and partition events leave an isolated leader cut off
    // (and the rest connected), so a successor
    // is elected and commits writes while clients still reach the deposed leader: the
    // window in which a ReadIndex without its heartbeat round would return stale data.
    var leaderIsolationTicksLeft = 0
    var isolatedLeader: NodeID?
    // Episodes: short fault patterns built from the same generic actions (partitions,
    // crashes, restarts, client requests), aimed at the situations where Raft's subtler
    // rules matter. They draw from their own generator, so seeds without them replay as
    // before; a quarter of the seeds run without them.
    var nemesis = SplitMix64(seed: options.seed ^ 0x0E71_50DE)
    var episodes: [Episode] = []
    if nemesis.next(below: 4) != 0 {
      if faults.contains(.crash) { episodes.append(.figureEight) }
      if faults.contains(.partition) { episodes.append(.deposedLeaderReads) }
    }
    let episodePeriod = 60 + nemesis.next(below: 240)

    for step in 0..<options.steps {
      result.stepsRun = step + 1
      if !episodes.isEmpty && leaderIsolationTicksLeft == 0
        && nemesis.next(below: episodePeriod) == 0
      {
        let episode = episodes[Int(nemesis.next(below: UInt64(episodes.count)))]
        statistics(cluster, "episode \(episode)")
        // The episode's own crashes replace the random ones while it runs.
        let crashDuringReadyPerMille = cluster.crashDuringReadyPerMille
        cluster.crashDuringReadyPerMille = 0
        switch episode {
        case .figureEight:
          try runFigureEightEpisode(cluster, &nemesis, keysMax: keysMax)
        case .deposedLeaderReads:
          try runDeposedLeaderReadsEpisode(cluster, &nemesis, keysMax: keysMax)
        }
        cluster.crashDuringReadyPerMille = crashDuringReadyPerMille
        continue
      }
      var pick = random.next(below: totalWeight)
      var event = Event.tick
      for item in table {
        if pick < item.weight {
          event = item.event
          break
        }
        pick -= item.weight
      }
      let target = ids[Int(random.next(below: UInt64(ids.count)))]
      switch event {
      case .tick:
        try cluster.tick()
        leaderIsolationTicksLeft = max(0, leaderIsolationTicksLeft - 1)
      case .write:
        // Clients mostly find the leader; sometimes they hit a random node.
        var node = clientTarget(cluster, &random, fallback: target)
        if leaderIsolationTicksLeft > 0, let newest = cluster.currentLeader(),
          newest != isolatedLeader, random.next(below: 4) != 0
        {
          // Clients that found the successor write there (and complete).
          node = newest
        }
        try cluster.write(at: node, key: UInt8(random.next(below: keysMax)))
      case .read:
        var node = clientTarget(cluster, &random, fallback: target)
        if leaderIsolationTicksLeft > 0, let isolatedLeader,
          cluster.node(isolatedLeader).raft?.role == .leader, random.next(below: 4) != 0
        {
          // A client with stale metadata keeps reading from the leader it knew.
          node = isolatedLeader
        }
        try cluster.read(at: node, key: UInt8(random.next(below: keysMax)))
      case .partition where leaderIsolationTicksLeft > 0:
        break  // the isolated leader's partition holds
      case .partition:
        switch random.next(below: 4) {
        case 0:
          cluster.isolate(target)
        case 1:
          // Cut the leader off: the case that tests leases, ReadIndex and stale leaders.
          if let leader = cluster.currentLeader() {
            cluster.isolate(leader)
            leaderIsolationTicksLeft = leaderIsolationTicksMin
            isolatedLeader = leader
          } else {
            cluster.isolate(target)
          }
        case 2:
          var groupA: Set<NodeID> = []
          for id in ids where random.next(below: 2) == 0 { groupA.insert(id) }
          cluster.partition([groupA, Set(ids).subtracting(groupA)])
        default:
          let other = ids[Int(random.next(below: UInt64(ids.count)))]
          if other != target { cluster.block(from: target, to: other) }
        }
      case .heal:
        if leaderIsolationTicksLeft == 0 { cluster.heal() }
      case .crash:
        cluster.crash(target)
      case .restart:
        for id in ids where !cluster.node(id).isUp {
          try cluster.restart(id)
          break
        }
      case .membership:
        try changeMembership(cluster, &random, nodeCount: options.nodeCount)
      case .transfer:
        if let leader = cluster.currentLeader() {
          let voters = cluster.raft(leader).confState.voters.filter { $0 != leader }
          if !voters.isEmpty {
            let to = voters[Int(random.next(below: UInt64(voters.count)))]
            _ = try cluster.transferLeadership(from: leader, to: to)
          }
        }
      case .snapshot:
        if cluster.node(target).isUp {
          try cluster.snapshot(target, keepEntries: random.next(below: 4))
        }
      }
    }
  }

  private enum Episode {
    case figureEight
    case deposedLeaderReads
  }

  private static func statistics(_ cluster: SimulatedCluster, _ name: String) {
    cluster.count(name)
    cluster.log(name)
  }

  /// Ticks until `done` holds (checked after every tick) or `ticksMax` ticks passed.
  private static func tick(
    _ cluster: SimulatedCluster, ticksMax: Int, until done: () -> Bool
  ) throws {
    for _ in 0..<ticksMax {
      if done() { return }
      try cluster.tick()
    }
  }

  /// Episodes start from a whole cluster: everything healed and running, every node a
  /// voter again (earlier membership changes may have removed some, and a pattern that
  /// needs a quorum without the leader needs them) and caught up (so that every node knows
  /// the configuration: changes take effect when applied), and a leader that has committed
  /// an entry of its term (so it serves reads).
  private static func startEpisode(_ cluster: SimulatedCluster) throws -> NodeID? {
    cluster.heal()
    for id in cluster.nodeIDs where !cluster.node(id).isUp { try cluster.restart(id) }
    for _ in 0..<200 {
      if let leader = cluster.currentLeader() {
        let raft = cluster.raft(leader)
        let conf = raft.confState
        guard let missing = cluster.nodeIDs.first(where: { !conf.isVoter($0) }) else {
          let committedTerm = try? cluster.node(leader).storage.term(at: raft.committedIndex)
          let caughtUp = cluster.nodeIDs.allSatisfy {
            (cluster.node($0).raft?.appliedIndex ?? 0) >= raft.committedIndex
          }
          if committedTerm == raft.term && caughtUp { return leader }
          try cluster.tick()
          continue
        }
        let kind: ConfChange.Kind = conf.isLearner(missing) ? .addVoter : .addLearner
        _ = try cluster.proposeConfChange(at: leader, ConfChange(kind: kind, node: missing))
      }
      try cluster.tick()
    }
    return nil
  }

  /// The Raft paper's Figure 8 (§5.4.2) as a fault pattern:
  /// (a) the leader is cut off (in larger clusters sometimes with one follower, like S2 in
  ///     the figure) while it takes writes that cannot commit, then its machine fails;
  /// (b) among the others, a node with a most up-to-date log tends to time out first; the
  ///     leader it becomes fails right after persisting its first Ready, so its no-op exists
  ///     on its own disk only;
  /// (c) the old leader returns first and tends to time out first; once leader it fails
  ///     right after its first commit beyond anything committed before (a commit only it
  ///     knows of) — typically while it re-replicates its earlier-term tail;
  /// (d) the failed nodes return one at a time, longest down first, each tending to time
  ///     out first while there is no leader.
  /// A correct leader commits nothing of its predecessors' before its own no-op is on a
  /// majority, so whoever wins in (d) holds every committed entry; the checkers verify it.
  private static func runFigureEightEpisode(
    _ cluster: SimulatedCluster, _ random: inout SplitMix64, keysMax: UInt64
  ) throws {
    guard let oldLeader = try startEpisode(cluster) else { return }
    let ids = cluster.nodeIDs
    var cutOff: Set<NodeID> = [oldLeader]
    let others = ids.filter { $0 != oldLeader && cluster.node($0).isUp }
    if ids.count >= 5 && !others.isEmpty && random.next(below: 2) == 0 {
      cutOff.insert(others[Int(random.next(below: UInt64(others.count)))])
    }
    cluster.partition([cutOff, Set(ids).subtracting(cutOff)])
    // Usually a few writes; sometimes more than one append message carries.
    let writes =
      random.next(below: 4) == 0 ? 20 + random.next(below: 40) : 1 + random.next(below: 7)
    for _ in 0..<writes {
      try cluster.write(at: oldLeader, key: UInt8(random.next(below: keysMax)))
    }
    try tick(cluster, ticksMax: Int(random.next(below: 3))) { false }
    cluster.crash(oldLeader, losingSentMessages: true)
    cluster.heal()
    // (b)
    var trapped = cluster.trappedLeaders.count
    cluster.armLeaderCrash(.afterPersistingReady(1))
    // The node whose timer fires first is one that can win: a most up-to-date log.
    let outside = ids.filter { !cutOff.contains($0) }
    func lastEntry(_ id: NodeID) -> (Term, LogIndex) {
      let storage = cluster.node(id).storage
      let last = (try? storage.lastIndex()) ?? 0
      return ((try? storage.term(at: last)) ?? 0, last)
    }
    let best = outside.map(lastEntry).max { $0 < $1 } ?? (0, 0)
    let candidates = outside.filter { lastEntry($0) == best }
    let likelyNext = candidates[Int(random.next(below: UInt64(candidates.count)))]
    try tickCampaigning(cluster, likelyNext, &random, ticksMax: 80) {
      cluster.trappedLeaders.count > trapped
    }
    cluster.disarmLeaderCrash()
    // (c)
    try cluster.restart(oldLeader)
    trapped = cluster.trappedLeaders.count
    cluster.armLeaderCrash(.afterFirstNewCommit)
    try tickCampaigning(cluster, oldLeader, &random, ticksMax: 80) {
      cluster.trappedLeaders.count > trapped || cluster.currentLeader() != nil
    }
    try tick(cluster, ticksMax: 60) { cluster.trappedLeaders.count > trapped }
    cluster.disarmLeaderCrash()
    // (d)
    let down = ids.filter { !cluster.node($0).isUp }.sorted {
      (cluster.node($0).crashedAt, $0) < (cluster.node($1).crashedAt, $1)
    }
    for id in down {
      try cluster.restart(id)
      try tickCampaigning(cluster, id, &random, ticksMax: 100) { cluster.currentLeader() != nil }
    }
  }

  /// Ticks until `done` holds, while `candidate`'s election timer tends to fire first: on
  /// about half of the ticks without a leader it campaigns (again). Voters still apply
  /// every rule (leases, PreVote, log comparison), so it only wins if it may.
  private static func tickCampaigning(
    _ cluster: SimulatedCluster, _ candidate: NodeID, _ random: inout SplitMix64,
    ticksMax: Int, until done: () -> Bool
  ) throws {
    for _ in 0..<ticksMax {
      if done() { return }
      if cluster.currentLeader() == nil, cluster.node(candidate).isUp,
        random.next(below: 2) == 0
      {
        try cluster.campaign(candidate)
      }
      try cluster.tick()
    }
  }

  /// A leader is cut off while clients keep reading from it: as soon as a successor
  /// exists, a client writes a key there, and once that write has returned, other clients
  /// read the key at the old leader. Without ReadIndex's heartbeat round (Raft §8) the old
  /// leader would answer with the old value. Two ways to cut it off:
  /// - a partition (with at most a minority); reads go to the old leader every tick for as
  ///   long as it believes it leads (with CheckQuorum it soon steps down), ten at most;
  /// - a process pause (garbage collection, a stalled VM): its clock stops too, so it still
  ///   leads when it resumes, and a client's read reaches it before the messages that
  ///   waited for it — the case that breaks leases built on local clocks.
  private static func runDeposedLeaderReadsEpisode(
    _ cluster: SimulatedCluster, _ random: inout SplitMix64, keysMax: UInt64
  ) throws {
    guard let oldLeader = try startEpisode(cluster) else { return }
    let key = UInt8(random.next(below: keysMax))
    if random.next(below: 2) == 0 {
      cluster.pause(oldLeader)
      var write: (operation: UInt64, invokedAt: UInt64)?
      for _ in 0..<100 {
        try cluster.tick()
        if let pending = write {
          if cluster.history.contains(where: { $0.id == pending.operation && $0.returnedAt != nil })
          {
            break
          }
          if cluster.now - pending.invokedAt > 20 { write = nil }
          continue
        }
        if let successor = cluster.currentLeader(), successor != oldLeader,
          let operation = try cluster.write(at: successor, key: key)
        {
          write = (operation, cluster.now)
        }
      }
      cluster.resume(oldLeader)
      try cluster.read(at: oldLeader, key: key)
      return
    }
    let ids = cluster.nodeIDs
    var cutOff: Set<NodeID> = [oldLeader]
    let others = ids.filter { $0 != oldLeader }
    if ids.count >= 5 && random.next(below: 2) == 0 {
      cutOff.insert(others[Int(random.next(below: UInt64(others.count)))])
    }
    cluster.partition([cutOff, Set(ids).subtracting(cutOff)])
    var write: (operation: UInt64, invokedAt: UInt64)?
    var written = false
    var readTicksLeft = 10
    for _ in 0..<120 {
      try cluster.tick()
      if written {
        guard cluster.node(oldLeader).raft?.role == .leader, readTicksLeft > 0 else { break }
        try cluster.read(at: oldLeader, key: key)
        readTicksLeft -= 1
        continue
      }
      if let pending = write {
        if cluster.history.contains(where: { $0.id == pending.operation && $0.returnedAt != nil }) {
          written = true
        } else if cluster.now - pending.invokedAt > 20 {
          write = nil  // lost with its leader: try again
        }
        continue
      }
      if let successor = cluster.currentLeader(), !cutOff.contains(successor),
        let operation = try cluster.write(at: successor, key: key)
      {
        write = (operation, cluster.now)
      }
    }
    cluster.heal()
  }

  /// Ticks an isolated leader stays cut off (heals are deferred): several election
  /// timeouts, enough for a successor to be elected and to commit writes.
  static let leaderIsolationTicksMin = 60

  /// Where a client sends a request: usually some node that believes it leads (clients
  /// with stale metadata reach deposed leaders too), sometimes any node.
  private static func clientTarget(
    _ cluster: SimulatedCluster, _ random: inout SplitMix64, fallback: NodeID
  ) -> NodeID {
    let leaders = cluster.nodeIDs.filter { cluster.node($0).raft?.role == .leader }
    if leaders.isEmpty || random.next(below: 4) == 0 { return fallback }
    return leaders[Int(random.next(below: UInt64(leaders.count)))]
  }

  private static func changeMembership(
    _ cluster: SimulatedCluster, _ random: inout SplitMix64, nodeCount: Int
  ) throws {
    guard let leader = cluster.currentLeader() else { return }
    let conf = cluster.raft(leader).confState
    let outsiders = cluster.nodeIDs.filter { !conf.isMember($0) }
    var options: [ConfChange] = []
    let votersMin = nodeCount / 2 + 1
    if conf.voters.count > votersMin {
      for voter in conf.voters where voter != leader {
        options.append(ConfChange(kind: .removeNode, node: voter))
      }
    }
    for learner in conf.learners {
      options.append(ConfChange(kind: .addVoter, node: learner))
      options.append(ConfChange(kind: .removeNode, node: learner))
    }
    for outsider in outsiders { options.append(ConfChange(kind: .addLearner, node: outsider)) }
    guard !options.isEmpty else { return }
    let change = options[Int(random.next(below: UInt64(options.count)))]
    _ = try cluster.proposeConfChange(at: leader, change)
  }

  private enum Event {
    case tick
    case write
    case read
    case partition
    case heal
    case crash
    case restart
    case membership
    case transfer
    case snapshot
  }

  /// Heals everything and demands progress: a leader emerges, commits a fresh write, and
  /// every member of its configuration applies it, within `livenessTicksMax` ticks.
  private static func runLivenessPhase(_ cluster: SimulatedCluster, _ options: SimulationOptions)
    throws
  {
    cluster.heal()
    cluster.network.dropPerMille = 0
    cluster.network.duplicatePerMille = 0
    // Prompt delivery again: with one-entry appends and a window of one message, catching a
    // follower up costs a round trip per entry, so slow links would only measure patience.
    cluster.network.delayTicksMax = 1
    cluster.crashDuringReadyPerMille = 0
    for id in cluster.nodeIDs where !cluster.node(id).isUp { try cluster.restart(id) }
    var marker: (leader: NodeID, operation: UInt64)?
    var readDone = false
    for _ in 0..<options.livenessTicksMax {
      try cluster.tick()
      guard let leader = cluster.currentLeader() else { continue }
      if marker == nil || marker?.leader != leader {
        if let operation = try cluster.write(at: leader, key: 0) {
          marker = (leader, operation)
        }
      }
      guard let marker else { continue }
      let written = cluster.history.contains {
        $0.id == marker.operation && $0.returnedAt != nil
      }
      guard written else { continue }
      if !readDone {
        _ = try cluster.read(at: leader, key: 0)
        readDone = true
      }
      let leaderRaft = cluster.raft(leader)
      let members = leaderRaft.confState.members
      let target = leaderRaft.appliedIndex
      if members.allSatisfy({ (cluster.node($0).raft?.appliedIndex ?? 0) >= target }) {
        return
      }
    }
    var details: [String] = []
    if let leader = cluster.currentLeader() {
      let leaderRaft = cluster.raft(leader)
      details.append("leader \(leader) term \(leaderRaft.term) conf \(leaderRaft.confState)")
      for member in leaderRaft.confState.members {
        let raft = cluster.node(member).raft
        let progress = leaderRaft.progress[member]
        details.append(
          "\(member): applied \(raft?.appliedIndex ?? 0) commit \(raft?.committedIndex ?? 0) "
            + "\(raft?.role.rawValue ?? "down") term \(raft?.term ?? 0) progress "
            + "\(progress.map { "\($0.state) match \($0.match) next \($0.next)" } ?? "none")")
      }
    }
    throw SafetyViolation(
      "liveness: no leader committed and replicated a write within "
        + "\(options.livenessTicksMax) ticks after healing; " + details.joined(separator: "; "))
  }
}
