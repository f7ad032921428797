import Foundation
import StreamBusRaft
import StreamBusRaftHost
import StreamBusTransport
import Testing

/// Real hosts on loopback TCP, each with its own SQLite database.
@Suite(.serialized) struct RaftHostClusterTests {
  @Test func threeHostsElectOneLeaderAndReplicate() async throws {
    let cluster = try await TestCluster.start(voters: 3)
    do {
      let leaderID = try await cluster.awaitLeader()
      let leader = try cluster.host(leaderID)
      var expected: [String: String] = [:]
      var lastIndex: LogIndex = 0
      for number in 0..<20 {
        let index = try await leader.propose(
          KeyValueStateMachine.command("k\(number)", "v\(number)"))
        #expect(index > lastIndex)
        lastIndex = index
        expected["k\(number)"] = "v\(number)"
        // Resolved only after it is applied on the proposer.
        #expect(try cluster.machine(leaderID).values["k\(number)"] == "v\(number)")
      }
      try await cluster.awaitValues(expected)

      // A follower refuses at once and names the leader and its addresses.
      let followerID = try #require(cluster.hosts.keys.first { $0 != leaderID })
      let follower = try cluster.host(followerID)
      let error = await #expect(throws: RaftHostError.self) {
        try await follower.propose(KeyValueStateMachine.command("x", "y"))
      }
      #expect(error?.code == .notLeader)
      #expect(error?.leaderID == leaderID)
      #expect(error?.leaderAddresses == cluster.addresses[leaderID])
      #expect(follower.leaderAPIAddress == cluster.addresses[leaderID]?.apiAddress)

      // A linearizable read on a follower sees every write acknowledged before it.
      try await leader.propose(KeyValueStateMachine.command("fresh", "1"))
      let readIndex = try await follower.linearizableRead()
      #expect(readIndex >= lastIndex + 1)
      #expect(try cluster.machine(followerID).values["fresh"] == "1")

      // The leader reports every follower's progress.
      let status = leader.status()
      #expect(status.voters.map(\.id) == [1, 2, 3])
      #expect(status.learners.isEmpty)
      for member in status.voters {
        #expect(member.matchIndex != nil)
        #expect(member.lastContactMs != nil)
        #expect(member.addresses == cluster.addresses[member.id])
      }
      #expect(status.appliedIndex == status.commitIndex)
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }

  @Test func killedLeaderIsReplacedAndNothingCommittedIsLost() async throws {
    let cluster = try await TestCluster.start(voters: 3)
    do {
      let oldLeaderID = try await cluster.awaitLeader()
      let oldTerm = try cluster.host(oldLeaderID).status().term
      var expected: [String: String] = [:]
      for number in 0..<10 {
        try await cluster.write("before\(number)", "\(number)")
        expected["before\(number)"] = "\(number)"
      }
      let killedAt = ContinuousClock.now
      await cluster.stopNode(oldLeaderID, graceful: false)
      try await cluster.write("after", "1")
      let failover = ContinuousClock.now - killedAt
      print("failover after an abrupt leader stop: \(failover)")
      expected["after"] = "1"
      let newLeaderID = try await cluster.awaitLeader()
      #expect(newLeaderID != oldLeaderID)
      #expect(try cluster.host(newLeaderID).status().term > oldTerm)
      #expect(failover < .seconds(3))
      try await cluster.awaitValues(expected)
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }

  @Test func restartedNodeRecoversFromItsDatabaseAndCatchesUp() async throws {
    let cluster = try await TestCluster.start(voters: 3) {
      $0.snapshotThresholdEntries = 5
      $0.snapshotTrailingEntries = 2
    }
    do {
      let leaderID = try await cluster.awaitLeader()
      let restartedID = try #require(cluster.hosts.keys.sorted().first { $0 != leaderID })
      var expected: [String: String] = [:]
      for number in 0..<12 {
        try await cluster.write("a\(number)", "\(number)")
        expected["a\(number)"] = "\(number)"
      }
      try await cluster.awaitValues(expected)
      let before = try cluster.host(restartedID).status()
      #expect(before.snapshotIndex > 1)
      await cluster.stopNode(restartedID)
      for number in 0..<12 {
        try await cluster.write("b\(number)", "\(number)")
        expected["b\(number)"] = "\(number)"
      }
      let restarted = try await cluster.startNode(restartedID)
      // The state machine came back from the snapshot in the database, then the log.
      #expect(try cluster.machine(restartedID).restoredFrom.first == before.snapshotIndex)
      try await cluster.awaitValues(expected)
      #expect(restarted.status().term >= before.term)
      #expect(restarted.status().appliedIndex > before.appliedIndex)
      _ = try await cluster.awaitLeader()
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }

  @Test func learnerGetsSnapshotIsPromotedAndVoterIsRemoved() async throws {
    let cluster = try await TestCluster.start(voters: 3) {
      $0.snapshotThresholdEntries = 5
      $0.snapshotTrailingEntries = 0
      // Several chunks per snapshot, so chunking is exercised over TCP.
      $0.snapshotChunkBytesMax = 64
    }
    do {
      let leaderID = try await cluster.awaitLeader()
      let leader = try cluster.host(leaderID)
      var expected: [String: String] = [:]
      for number in 0..<30 {
        try await leader.propose(KeyValueStateMachine.command("key\(number)", "value-\(number)"))
        expected["key\(number)"] = "value-\(number)"
      }
      #expect(leader.status().snapshotIndex > 1)

      let learner = try await cluster.startJoiningNode(4)
      #expect(learner.status().voters.isEmpty)
      let learnerAddresses = try #require(cluster.addresses[4])
      try await leader.addLearner(4, addresses: learnerAddresses)
      #expect(leader.status().learners.map(\.id) == [4])
      try await cluster.awaitValues(expected, on: [4])
      // It caught up through InstallSnapshot, not from the compacted log.
      #expect(try cluster.machine(4).restoredFrom.isEmpty == false)
      // It knows every member's addresses (snapshot envelope + membership context).
      try await eventually("learner to know the membership") {
        let status = learner.status()
        return status.learners.map(\.id) == [4] && status.voters.map(\.id) == [1, 2, 3]
          && status.voters.allSatisfy { $0.addresses == cluster.addresses[$0.id] }
      }

      try await eventually("learner to catch up") {
        leader.status().learners.first?.lag == 0
      }
      try await leader.promote(4)
      #expect(leader.status().voters.map(\.id) == [1, 2, 3, 4])
      try await cluster.write("with-four", "yes")
      expected["with-four"] = "yes"
      try await cluster.awaitValues(expected)

      // Restarted from its own database (no initial cluster: it joined), it still knows
      // every member's address and catches up.
      await cluster.stopNode(4)
      let restarted = try await cluster.startNode(4)
      #expect(
        restarted.status().voters.allSatisfy { $0.addresses == cluster.addresses[$0.id] })
      try await cluster.write("after-restart", "yes")
      expected["after-restart"] = "yes"
      try await cluster.awaitValues(expected)

      // Remove a follower: it stops receiving, the rest go on.
      let removedID = try #require([1, 2, 3].first { $0 != leaderID })
      try await leader.remove(removedID)
      #expect(leader.status().voters.map(\.id) == [1, 2, 3, 4].filter { $0 != removedID })
      try await cluster.write("after-remove", "yes")
      expected["after-remove"] = "yes"
      let remaining = [1, 2, 3, 4].filter { $0 != removedID }
      try await cluster.awaitValues(expected, on: remaining)
      try await Task.sleep(for: .milliseconds(300))
      #expect(try cluster.machine(removedID).values["after-remove"] == nil)
      #expect(leader.status().isLeader)
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }

  @Test func wholeClusterRestartKeepsItsState() async throws {
    let cluster = try await TestCluster.start(voters: 3) {
      $0.snapshotThresholdEntries = 7
      $0.snapshotTrailingEntries = 2
    }
    do {
      _ = try await cluster.awaitLeader()
      var expected: [String: String] = [:]
      for number in 0..<20 {
        try await cluster.write("k\(number)", "\(number)")
        expected["k\(number)"] = "\(number)"
      }
      try await cluster.awaitValues(expected)
      let applied = try cluster.hosts.keys.map { try cluster.host($0).status().appliedIndex }
      for id in cluster.hosts.keys.sorted() { await cluster.stopNode(id) }
      for id: NodeID in [1, 2, 3] { try await cluster.startNode(id) }
      // Snapshot install on start-up, then log replay: the state is there before any
      // new leader exists.
      for id: NodeID in [1, 2, 3] {
        #expect(try cluster.machine(id).restoredFrom.count == 1)
      }
      try await cluster.awaitValues(expected)
      _ = try await cluster.awaitLeader()
      try await cluster.write("new", "1")
      expected["new"] = "1"
      try await cluster.awaitValues(expected)
      #expect(
        try cluster.hosts.keys.allSatisfy {
          try cluster.host($0).status().appliedIndex > applied.min() ?? 0
        })
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }

  @Test func oneWayIsolatedFollowerDoesNotDisruptTheLeader() async throws {
    let cluster = try await TestCluster.start(voters: 3) { $0.readTimeoutMs = 500 }
    do {
      let leaderID = try await cluster.awaitLeader()
      let leader = try cluster.host(leaderID)
      let term = leader.status().term
      let isolatedID = try #require(cluster.hosts.keys.sorted().first { $0 != leaderID })
      let isolated = try cluster.host(isolatedID)
      // The follower hears nobody, but everybody hears it: it times out and asks for
      // (pre-)votes again and again, which must not depose the healthy leader.
      for peer in cluster.hosts.keys where peer != isolatedID {
        isolated.faults.setDropInbound(from: peer)
      }
      try await cluster.write("during", "1")
      try await Task.sleep(for: .milliseconds(2_000))
      #expect(leader.status().isLeader)
      #expect(leader.status().term == term)
      try await cluster.write("still", "1")
      #expect(leader.status().term == term)
      #expect(try cluster.machine(isolatedID).values["still"] == nil)
      // Its reads cannot complete (the answers are lost) and fail at the timeout.
      let readError = await #expect(throws: RaftHostError.self) {
        try await isolated.linearizableRead()
      }
      #expect(readError?.code == .timedOut || readError?.code == .notLeader)

      isolated.faults.heal()
      try await cluster.awaitValues(["during": "1", "still": "1"])
      #expect(leader.status().isLeader)
      #expect(leader.status().term == term)
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }

  @Test func proposalOfADeposedLeaderFailsAsOverwritten() async throws {
    let cluster = try await TestCluster.start(voters: 3)
    do {
      let oldID = try await cluster.awaitLeader()
      let old = try cluster.host(oldID)
      let oldTerm = old.status().term
      try await cluster.write("before", "1")
      let others = cluster.hosts.keys.filter { $0 != oldID }
      for peer in others {
        old.faults.setDropOutbound(to: peer)
        old.faults.setDropInbound(from: peer)
      }
      // Appended by the cut-off leader, never replicated.
      let lost = Task { try await old.propose(KeyValueStateMachine.command("lost", "1")) }
      var newID: NodeID?
      try await eventually("the others to elect a leader") {
        newID = others.first { (try? cluster.host($0).status().isLeaderReady) == true }
        return newID != nil
      }
      let newLeader = try cluster.host(try #require(newID))
      #expect(newLeader.status().term > oldTerm)
      try await newLeader.propose(KeyValueStateMachine.command("winner", "1"))
      old.faults.heal()
      let error = await #expect(throws: RaftHostError.self) { try await lost.value }
      #expect(error?.code == .proposalOverwritten)
      try await cluster.awaitValues(["before": "1", "winner": "1"])
      #expect(try cluster.machine(oldID).values["lost"] == nil)
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }

  @Test func transferLeadershipMovesTheLeader() async throws {
    let cluster = try await TestCluster.start(voters: 3)
    do {
      let firstID = try await cluster.awaitLeader()
      try await cluster.write("one", "1")
      let targetID = try #require(cluster.hosts.keys.sorted().first { $0 != firstID })
      let changes = try cluster.host(targetID).statusChanges()
      let newLeader = try await cluster.host(firstID).transferLeadership(to: targetID)
      #expect(newLeader == targetID)
      #expect(try await cluster.awaitLeader() == targetID)
      // The target's status stream reported its promotion.
      var sawLeadership = false
      for await status in changes {
        if status.isLeader && status.isLeaderReady {
          sawLeadership = true
          break
        }
      }
      #expect(sawLeadership)

      // nil picks a caught-up voter other than the leader itself.
      let third = try await cluster.host(targetID).transferLeadership(to: nil)
      #expect(third != targetID)
      #expect(try await cluster.awaitLeader() == third)
      try await cluster.write("two", "2")
      try await cluster.awaitValues(["one": "1", "two": "2"])

      let follower = try cluster.host(targetID)
      let error = await #expect(throws: RaftHostError.self) {
        try await follower.transferLeadership(to: firstID)
      }
      #expect(error?.code == .notLeader)
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }

  @Test func writesFailClearlyWithoutAQuorum() async throws {
    let cluster = try await TestCluster.start(voters: 3) { $0.proposalTimeoutMs = 1_000 }
    do {
      let leaderID = try await cluster.awaitLeader()
      try await cluster.write("one", "1")
      for id in cluster.hosts.keys where id != leaderID { await cluster.stopNode(id) }
      let leader = try cluster.host(leaderID)
      let started = ContinuousClock.now
      let error = await #expect(throws: RaftHostError.self) {
        try await leader.propose(KeyValueStateMachine.command("two", "2"))
      }
      // Either the proposal timed out or CheckQuorum deposed the leader first.
      #expect(error?.code == .timedOut || error?.code == .notLeader)
      #expect(ContinuousClock.now - started < .seconds(2))
      // CheckQuorum: a leader that hears no quorum steps down.
      try await eventually("the isolated leader to step down") { !leader.status().isLeader }
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }
}

@Suite(.serialized) struct RaftHostLoadTests {
  /// Many concurrent proposals: every one resolves with its own index once applied, and
  /// every node applies all of them in the same order.
  @Test func concurrentProposalsAllResolve() async throws {
    let cluster = try await TestCluster.start(voters: 3)
    do {
      let leaderID = try await cluster.awaitLeader()
      let leader = try cluster.host(leaderID)

      var latenciesMs: [Double] = []
      for number in 0..<50 {
        let started = ContinuousClock.now
        try await leader.propose(KeyValueStateMachine.command("seq\(number)", "1"))
        let elapsed = ContinuousClock.now - started
        latenciesMs.append(
          Double(elapsed.components.seconds) * 1_000
            + Double(elapsed.components.attoseconds) / 1e15)
      }
      latenciesMs.sort()
      print(
        "sequential propose on 3 hosts: p50 \(latenciesMs[latenciesMs.count / 2]) ms, "
          + "max \(latenciesMs[latenciesMs.count - 1]) ms")

      let indices = try await withThrowingTaskGroup(of: LogIndex.self) { group in
        for number in 0..<300 {
          group.addTask {
            try await leader.propose(KeyValueStateMachine.command("par\(number)", "\(number)"))
          }
        }
        var indices: [LogIndex] = []
        for try await index in group { indices.append(index) }
        return indices
      }
      #expect(Set(indices).count == 300)
      var expected: [String: String] = [:]
      for number in 0..<300 { expected["par\(number)"] = "\(number)" }
      try await cluster.awaitValues(expected)
      let applied = leader.status().appliedIndex
      try await eventually("followers to apply everything") {
        cluster.hosts.values.allSatisfy { $0.status().appliedIndex == applied }
      }
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }
}
