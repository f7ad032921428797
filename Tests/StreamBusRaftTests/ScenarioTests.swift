import StreamBusRaft
import StreamBusRaftSimulation
import Testing

/// Feature scenarios. Every Ready in these runs also passes the cluster's safety checkers
/// (one leader per term, log matching, leader completeness, state-machine safety).
@Suite struct ScenarioTests {
  @Test func campaignElectsLeaderAndCommitsNoOp() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    #expect(scenario.raft(1).role == .leader)
    #expect(scenario.raft(1).term == 1)
    for id: NodeID in [2, 3] {
      #expect(scenario.raft(id).role == .follower)
      #expect(scenario.raft(id).leader == 1)
    }
    for id: NodeID in 1...3 {
      #expect(scenario.raft(id).committedIndex == 1, "no-op of term 1 committed on \(id)")
    }
  }

  @Test func electionHappensByTicksAlone() throws {
    let scenario = try Scenario(nodes: 5, seed: 7)
    try scenario.tick(60)
    let leader = try #require(scenario.leader)
    for id in scenario.cluster.nodeIDs where id != leader {
      #expect(scenario.raft(id).leader == leader)
    }
  }

  @Test func replicationCommitsAndAppliesEverywhere() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    try scenario.propose(5, at: 1).stabilize()
    for id: NodeID in 1...3 {
      #expect(scenario.raft(id).committedIndex == 6)
      #expect(scenario.raft(id).appliedIndex == 6)
      #expect(scenario.cluster.node(id).store == scenario.cluster.node(1).store)
    }
  }

  @Test func preVoteKeepsIsolatedNodeFromRaisingTerm() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    try scenario.isolate(3).tick(60)
    #expect(scenario.raft(3).term == 1, "pre-elections never won, so the term never moved")
    try scenario.heal().tick(10)
    #expect(scenario.leader == 1)
    #expect(scenario.raft(1).term == 1, "the healthy leader was not disrupted")
  }

  @Test func withoutPreVoteIsolatedNodeDisruptsLeaderOnReturn() throws {
    let scenario = try Scenario(nodes: 3) { config in
      config.preVote = false
      config.checkQuorum = false
    }.campaign(1)
    try scenario.isolate(3).tick(60)
    #expect(scenario.raft(3).term > 1)
    try scenario.heal().tick(30)
    #expect(scenario.raft(1).term > 1, "the returning node's higher term deposed leader 1")
  }

  @Test func checkQuorumMakesIsolatedLeaderStepDown() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    try scenario.isolate(1).tick(40)
    #expect(scenario.raft(1).role != .leader)
    let newLeader = try #require(scenario.leader)
    #expect(newLeader != 1)
    #expect(scenario.raft(newLeader).term > 1)
  }

  @Test func minorityLeaderCannotCommitAndItsEntriesAreReplaced() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    try scenario.partition([[1], [2, 3]]).propose(3, at: 1).stabilize()
    #expect(scenario.raft(1).committedIndex == 1, "no quorum, no commit")
    try scenario.tick(40)
    let majorityLeader = try #require(scenario.leader)
    #expect(majorityLeader != 1)
    try scenario.propose(2, at: majorityLeader).stabilize()
    try scenario.heal().tick(10).stabilize()
    let leaderLog = scenario.raft(majorityLeader)
    #expect(scenario.raft(1).leader == majorityLeader)
    #expect(try scenario.raft(1).lastIndex() == leaderLog.lastIndex())
    #expect(try scenario.raft(1).lastTerm() == leaderLog.lastTerm())
    #expect(scenario.cluster.node(1).store == scenario.cluster.node(majorityLeader).store)
  }

  @Test func fastBacktrackingSkipsWholeTermsOfConflicts() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    // Node 1 piles up 20 uncommitted entries of term 1 while cut off.
    try scenario.partition([[1], [2, 3]]).propose(20, at: 1).stabilize()
    try scenario.tick(40)
    let first = try #require(scenario.leader)
    let second: NodeID = first == 2 ? 3 : 2
    try scenario.propose(20, at: first).stabilize()
    // A fresh leader starts probing node 1 at its own log end.
    #expect(try scenario.cluster.transferLeadership(from: first, to: second))
    try scenario.stabilize()
    #expect(scenario.leader == second)
    let rejectionsBefore = scenario.cluster.statistics["delivered.appendResponse.reject"] ?? 0
    try scenario.heal().tick(6).stabilize()
    let rejections =
      (scenario.cluster.statistics["delivered.appendResponse.reject"] ?? 0) - rejectionsBefore
    #expect(try scenario.raft(1).lastIndex() == scenario.raft(second).lastIndex())
    // One entry at a time would take about 20 rejections; the term hint takes one or two.
    #expect(rejections >= 1 && rejections <= 3, "\(rejections) rejections")
  }

  @Test func inflightMessageWindowBoundsUnacknowledgedAppends() throws {
    let scenario = try Scenario(nodes: 3) { config in
      config.inflightMessagesMax = 3
      config.inflightBytesMax = 1 << 20
    }.campaign(1)
    var appendsTo2 = 0
    scenario.cluster.dropFilter = { message in
      if message.kind == .appendEntries && message.to == 2 && !message.entries.isEmpty {
        appendsTo2 += 1
      }
      return false
    }
    scenario.cluster.block(from: 2, to: 1)  // node 2's acknowledgements are lost
    for _ in 0..<10 { try scenario.propose(1, at: 1).stabilize() }
    #expect(appendsTo2 == 3, "window of 3 messages, got \(appendsTo2)")
    #expect(scenario.raft(1).committedIndex == 11, "node 3 still forms a quorum")
    try scenario.heal().tick(4).stabilize()
    #expect(scenario.raft(2).committedIndex == 11)
  }

  @Test func inflightByteWindowBoundsUnacknowledgedAppends() throws {
    let scenario = try Scenario(nodes: 3) { config in
      config.inflightMessagesMax = 100
      config.inflightBytesMax = 200
    }.campaign(1)
    var appendsTo2 = 0
    scenario.cluster.dropFilter = { message in
      if message.kind == .appendEntries && message.to == 2 && !message.entries.isEmpty {
        appendsTo2 += 1
      }
      return false
    }
    scenario.cluster.block(from: 2, to: 1)
    for _ in 0..<10 { try scenario.propose(1, at: 1).stabilize() }
    // Each write entry is 38 bytes (21 header + 17 payload): the 6th reaches 200 bytes.
    #expect(appendsTo2 == 6, "got \(appendsTo2)")
  }

  @Test func readIndexOnLeaderAndForwardedFromFollower() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    let write = try #require(try scenario.cluster.write(at: 1, key: 0))
    try scenario.stabilize()
    let leaderRead = try #require(try scenario.cluster.read(at: 1, key: 0))
    let followerRead = try #require(try scenario.cluster.read(at: 2, key: 0))
    try scenario.stabilize()
    let history = scenario.cluster.history
    for id in [leaderRead, followerRead] {
      let read = try #require(history.first { $0.id == id })
      #expect(read.kind == .read(write), "read \(id) sees the committed write")
    }
    try scenario.cluster.checkLinearizability()
  }

  @Test func readIndexNeedsQuorumContact() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    scenario.isolate(1)
    let read = try #require(try scenario.cluster.read(at: 1, key: 0))
    try scenario.stabilize().tick(3)
    #expect(!scenario.cluster.history.contains { $0.id == read }, "a deposed leader cannot serve")
  }

  @Test func leadershipTransferToUpToDateFollower() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    try scenario.propose(2, at: 1).stabilize()
    #expect(try scenario.cluster.transferLeadership(from: 1, to: 2))
    #expect(try scenario.cluster.write(at: 1, key: 0) == nil, "proposals refused mid-transfer")
    try scenario.stabilize()
    #expect(scenario.leader == 2)
    #expect(scenario.raft(2).term == 2)
    #expect(scenario.raft(1).role == .follower)
  }

  @Test func leadershipTransferWaitsForLaggingTarget() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    scenario.crash(3)
    try scenario.propose(5, at: 1).stabilize()
    try scenario.restart(3)
    #expect(try scenario.cluster.transferLeadership(from: 1, to: 3))
    try scenario.stabilize().tick(3).stabilize()
    #expect(scenario.leader == 3)
    #expect(scenario.raft(3).committedIndex >= 6)
  }

  @Test func snapshotCatchesUpLaggingFollowerInChunks() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    scenario.crash(3)
    for key: UInt8 in 0..<6 { try scenario.propose(3, at: 1, key: key) }
    try scenario.stabilize()
    try scenario.cluster.snapshot(1, keepEntries: 0)
    #expect(try scenario.cluster.node(1).storage.firstIndex() == 20)
    try scenario.restart(3)
    try scenario.tick(6).stabilize()
    #expect(scenario.raft(3).appliedIndex == scenario.raft(1).appliedIndex)
    #expect(scenario.cluster.node(3).store == scenario.cluster.node(1).store)
    #expect((scenario.cluster.statistics["delivered.installSnapshot"] ?? 0) >= 5, "chunks")
    #expect(scenario.cluster.statistics["snapshots installed"] == 1)
  }

  @Test func snapshotTransferResumesAfterLostChunk() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    scenario.crash(3)
    for key: UInt8 in 0..<6 { try scenario.propose(3, at: 1, key: key) }
    try scenario.stabilize()
    try scenario.cluster.snapshot(1, keepEntries: 0)
    var deliveredOffsets: [UInt64] = []
    var droppedOnce = false
    scenario.cluster.dropFilter = { message in
      guard message.kind == .installSnapshot, let chunk = message.snapshot else { return false }
      if chunk.offset == 20 && !droppedOnce {
        droppedOnce = true
        return true
      }
      deliveredOffsets.append(chunk.offset)
      return false
    }
    try scenario.restart(3)
    try scenario.tick(8).stabilize()
    #expect(droppedOnce)
    #expect(scenario.cluster.node(3).store == scenario.cluster.node(1).store)
    #expect(deliveredOffsets.contains(20), "the lost chunk was sent again")
    #expect(
      deliveredOffsets.filter { $0 == 0 }.count == 1, "resumed, not restarted: \(deliveredOffsets)")
  }

  @Test func learnerReplicatesWithoutVotingThenIsPromoted() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    try scenario.propose(3, at: 1).stabilize()
    try scenario.cluster.addNode(4)
    #expect(try scenario.cluster.proposeConfChange(at: 1, ConfChange(kind: .addLearner, node: 4)))
    try scenario.stabilize().tick(2).stabilize()
    #expect(scenario.raft(1).confState == ConfState(voters: [1, 2, 3], learners: [4]))
    #expect(scenario.raft(4).appliedIndex == scenario.raft(1).appliedIndex)
    #expect(!scenario.raft(4).isPromotable)
    try scenario.isolate(4).tick(40)
    #expect(scenario.raft(4).role == .follower, "learners never campaign")
    try scenario.heal().tick(2).stabilize()
    #expect(try scenario.cluster.proposeConfChange(at: 1, ConfChange(kind: .addVoter, node: 4)))
    try scenario.stabilize()
    #expect(scenario.raft(1).confState.voters == [1, 2, 3, 4])
    // With four voters the quorum is three: losing two stops commits.
    scenario.crash(3)
    scenario.crash(4)
    let before = scenario.raft(1).committedIndex
    try scenario.propose(1, at: 1).stabilize()
    #expect(scenario.raft(1).committedIndex == before)
  }

  @Test func membershipChangesOneAtATime() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    try scenario.cluster.addNode(4)
    #expect(try scenario.cluster.proposeConfChange(at: 1, ConfChange(kind: .addLearner, node: 4)))
    #expect(
      try !scenario.cluster.proposeConfChange(at: 1, ConfChange(kind: .removeNode, node: 3)),
      "second change refused while the first is unapplied")
    try scenario.stabilize()
    #expect(try scenario.cluster.proposeConfChange(at: 1, ConfChange(kind: .removeNode, node: 3)))
    try scenario.stabilize()
    #expect(scenario.raft(1).confState == ConfState(voters: [1, 2], learners: [4]))
  }

  @Test func newLeaderRefusesMembershipChangeUntilItsNoOpIsApplied() throws {
    let scenario = try Scenario(nodes: 3)
    // Acknowledgements of appends are lost, so the new leader's no-op stays uncommitted.
    scenario.cluster.dropFilter = { $0.kind == .appendResponse }
    try scenario.campaign(1)
    #expect(scenario.raft(1).role == .leader)
    #expect(
      try !scenario.cluster.proposeConfChange(at: 1, ConfChange(kind: .removeNode, node: 3)))
    scenario.cluster.dropFilter = nil
    try scenario.tick(2).stabilize()
    #expect(try scenario.cluster.proposeConfChange(at: 1, ConfChange(kind: .removeNode, node: 3)))
  }

  @Test func removedLeaderStepsDownAndOthersElectSuccessor() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    #expect(try scenario.cluster.proposeConfChange(at: 1, ConfChange(kind: .removeNode, node: 1)))
    try scenario.stabilize()
    #expect(scenario.raft(1).role == .follower)
    try scenario.tick(40)
    let leader = try #require(scenario.leader)
    #expect(leader != 1)
    #expect(scenario.raft(leader).confState.voters == [2, 3])
    try scenario.propose(1, at: leader).stabilize()
    #expect(scenario.raft(leader).committedIndex == scenario.raft(leader).appliedIndex)
  }

  @Test func crashLosesOnlyUnpersistedStateAndRestartCatchesUp() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    try scenario.propose(4, at: 1).stabilize()
    scenario.crash(2)
    try scenario.propose(4, at: 1).stabilize()
    try scenario.restart(2)
    #expect(scenario.raft(2).term == 1, "term survived the crash")
    #expect(try scenario.raft(2).lastIndex() == 5, "persisted entries survived the crash")
    try scenario.tick(3).stabilize()
    #expect(scenario.raft(2).appliedIndex == 9)
    #expect(scenario.cluster.node(2).store == scenario.cluster.node(1).store)
  }
}

/// Commit indices in heartbeats (docs/raft.md): the leader sends min(match, commit), so a
/// follower always holds the index unless it lost entries it acknowledged.
@Suite struct HeartbeatCommitTests {
  /// The leader never tells a follower a commit index beyond what it knows the follower
  /// holds: a lagging follower hears its own match, not the leader's commit.
  @Test func heartbeatsCarryAtMostTheFollowersMatch() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    let cluster = scenario.cluster
    // Node 3 stops receiving appends (and snapshots): its match stays where it is.
    cluster.dropFilter = {
      $0.to == 3 && ($0.kind == .appendEntries || $0.kind == .installSnapshot)
    }
    let match3 = try #require(scenario.raft(1).progress[3]?.match)
    try scenario.propose(4, at: 1).stabilize()
    #expect(scenario.raft(1).committedIndex > match3)
    var heartbeats: [Message] = []
    cluster.dropFilter = { message in
      if message.kind == .heartbeat { heartbeats.append(message) }
      return message.to == 3 && message.kind == .appendEntries
    }
    try scenario.tick(4)
    let toThree = heartbeats.filter { $0.to == 3 }
    let toTwo = heartbeats.filter { $0.to == 2 }
    #expect(!toThree.isEmpty && !toTwo.isEmpty)
    #expect(toThree.allSatisfy { $0.commit == match3 })
    #expect(toTwo.allSatisfy { $0.commit == scenario.raft(1).committedIndex })
    #expect(scenario.raft(3).stopReason == nil)
  }

  /// Reordered and duplicated heartbeats only ever carry a smaller commit index, which a
  /// follower ignores (commit never goes back).
  @Test func reorderedAndDuplicatedHeartbeatsAreHarmless() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    let cluster = scenario.cluster
    var old: [Message] = []
    cluster.dropFilter = { message in
      if message.kind == .heartbeat && message.to == 3 { old.append(message) }
      return false
    }
    try scenario.tick(2)
    try scenario.propose(3, at: 1).stabilize().tick(2)
    let committed = scenario.raft(3).committedIndex
    cluster.dropFilter = nil
    for heartbeat in old + old.reversed() { try cluster.deliver(heartbeat) }
    #expect(scenario.raft(3).committedIndex == committed)
    #expect(scenario.raft(3).stopReason == nil)
  }

  /// A follower that crashes before persisting entries never acknowledged them, so the
  /// leader's heartbeats after its restart stay within its log.
  @Test func followerThatLostUnpersistedEntriesKeepsRunning() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    let cluster = scenario.cluster
    // Node 3 receives the appends, but its acknowledgements are lost and then so are the
    // entries, as if it had crashed before its disk write: the leader never counted them.
    cluster.dropFilter = { $0.from == 3 && $0.kind == .appendResponse }
    try scenario.propose(3, at: 1).stabilize()
    let persisted = try cluster.node(3).storage.lastIndex()
    cluster.node(3).storage.loseEntries(after: min(persisted, 1))
    scenario.crash(3)
    cluster.dropFilter = nil
    try scenario.restart(3).tick(6).stabilize()
    #expect(scenario.raft(3).stopReason == nil)
    #expect(scenario.raft(3).appliedIndex == scenario.raft(1).committedIndex)
  }

  /// A follower whose disk lost entries it had acknowledged (it claimed durability it did
  /// not have) hears a commit index beyond its log. It keeps running, keeps its commit
  /// index, and tells the leader, which probes again and re-sends the entries.
  /// Before: the follower stopped with "leader 1 says 5 is committed, we only have 2".
  @Test func followerThatLostAcknowledgedEntriesIsRepairedNotStopped() throws {
    let scenario = try Scenario(nodes: 3).campaign(1)
    let cluster = scenario.cluster
    try scenario.propose(4, at: 1).stabilize().tick(2)
    let last = try scenario.raft(1).lastIndex()
    #expect(scenario.raft(1).progress[3]?.match == last)
    scenario.crash(3)
    cluster.node(3).storage.loseEntries(after: 2)
    try scenario.restart(3)
    #expect(try scenario.raft(3).lastIndex() == 2)
    try scenario.tick(6).stabilize()
    #expect(scenario.raft(3).stopReason == nil)
    #expect(try scenario.raft(3).lastIndex() == last)
    #expect(scenario.raft(3).appliedIndex == last)
    #expect(scenario.raft(1).progress[3]?.match == last)
    #expect(cluster.node(3).store == cluster.node(1).store)
  }
}

@Suite struct ReadIndexSafetyTests {
  /// Raft §8: "a leader must check whether it has been deposed before processing a
  /// read-only request". Without CheckQuorum the deposed leader keeps its role, so only the
  /// heartbeat round of ReadIndex stops it from answering with stale data.
  @Test func deposedLeaderDoesNotServeStaleRead() throws {
    try runDeposedLeaderRead(faults: RaftTestFaults())
  }

  /// The linearizability checker bites: skipping the heartbeat round lets the deposed
  /// leader answer from its stale state, and the client history says so.
  @Test func readWithoutQuorumIsCaughtByLinearizabilityChecker() throws {
    #expect(throws: SafetyViolation.self) {
      try runDeposedLeaderRead(faults: RaftTestFaults(readWithoutQuorum: true))
    }
  }

  private func runDeposedLeaderRead(faults: RaftTestFaults) throws {
    let scenario = try Scenario(nodes: 3, faults: faults) { config in config.checkQuorum = false }
    try scenario.campaign(1)
    try scenario.cluster.write(at: 1, key: 0)
    try scenario.stabilize()
    scenario.partition([[1], [2, 3]])
    // Node 3 heard from leader 1 just now; no time passes in this script, so force it.
    try scenario.campaign(2, overridingLeases: true)
    #expect(scenario.raft(2).role == .leader)
    #expect(scenario.raft(1).role == .leader, "node 1 has not noticed")
    let write = try #require(try scenario.cluster.write(at: 2, key: 0))
    try scenario.stabilize()
    #expect(scenario.cluster.history.contains { $0.id == write && $0.returnedAt != nil })
    let read = try #require(try scenario.cluster.read(at: 1, key: 0))
    try scenario.stabilize().tick(3)
    try scenario.cluster.checkLinearizability()
    #expect(!scenario.cluster.history.contains { $0.id == read })
  }
}

@Suite struct ProposalBoundTests {
  @Test func cutOffLeaderStopsAcceptingProposalsAtUncommittedBound() throws {
    // Each write entry costs 38 bytes: three fit under 120, the fourth does not.
    let scenario = try Scenario(nodes: 3) { config in config.uncommittedBytesMax = 120 }
    try scenario.campaign(1)
    scenario.isolate(1)
    var accepted = 0
    for _ in 0..<6 where try scenario.cluster.write(at: 1, key: 0) != nil { accepted += 1 }
    #expect(accepted == 3)
    try scenario.heal().tick(4).stabilize()
    #expect(try scenario.cluster.write(at: 1, key: 0) != nil, "room again once committed")
  }
}
