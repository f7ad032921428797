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
    var bugs: [String] = []
    if raftFaults.grantSecondVote { bugs.append("second-vote") }
    if raftFaults.skipCurrentTermCommitRule { bugs.append("skip-term-commit") }
    if raftFaults.applyBeforeCommit { bugs.append("apply-before-commit") }
    if raftFaults.ackBeforePersist { bugs.append("ack-before-persist") }
    if raftFaults.readWithoutQuorum { bugs.append("read-without-quorum") }
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

    for step in 0..<options.steps {
      result.stepsRun = step + 1
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
      case .write:
        // Clients mostly find the leader; sometimes they hit a random node.
        let node = clientTarget(cluster, &random, fallback: target)
        try cluster.write(at: node, key: UInt8(random.next(below: keysMax)))
      case .read:
        let node = clientTarget(cluster, &random, fallback: target)
        try cluster.read(at: node, key: UInt8(random.next(below: keysMax)))
      case .partition:
        switch random.next(below: 4) {
        case 0:
          cluster.isolate(target)
        case 1:
          // Cut the leader off: the case that tests leases, ReadIndex and stale leaders.
          cluster.isolate(cluster.currentLeader() ?? target)
        case 2:
          var groupA: Set<NodeID> = []
          for id in ids where random.next(below: 2) == 0 { groupA.insert(id) }
          cluster.partition([groupA, Set(ids).subtracting(groupA)])
        default:
          let other = ids[Int(random.next(below: UInt64(ids.count)))]
          if other != target { cluster.block(from: target, to: other) }
        }
      case .heal:
        cluster.heal()
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
