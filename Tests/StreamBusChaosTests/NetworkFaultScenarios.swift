import Foundation
import StreamBusTestSupport
import Testing

extension NetworkChaosTests {
  /// Network-fault scenarios (issue 6): 3 metaservers + 3 brokers, each in its own network
  /// namespace; real faults (iptables DROP, one-way DROP, random loss, TCP resets, tc tbf rate
  /// limits); the `sbctl drill workload` verification workload (idempotent acks=all producers,
  /// a tailing reader, a final full read and the checker) runs in the client namespace
  /// throughout. Each test prints its timeline and the measured unavailability (the longest
  /// acknowledgement gap in the fault's window) and expects the workload's PASS: no
  /// acknowledged record lost, duplicated or reordered.
  ///
  /// Serialized: timing-sensitive (1.5 s broker sessions, 300 ms Raft elections) and each runs
  /// 7 processes on a small machine.
  @Suite(.serialized, .requiresNetworkLab, .timeLimit(.minutes(10)))
  struct NetworkFaultScenarios {
    /// How long each fault stays in force.
    static let faultMs: Int64 = ChaosSettings.pick(short: 6_000, long: 20_000)
    /// Fault rounds of the scenarios that repeat.
    static let rounds = ChaosSettings.pick(short: 1, long: 3)

    // MARK: - Broker leader partitioned into a minority

    /// The leader of p0 is cut off from the metaservers and the other brokers (the client still
    /// reaches it). It must stop acting as leader (a produce sent straight to it is refused),
    /// the majority elects a new leader and goes on; healed, it rejoins the ISR, truncates its
    /// divergent tail and catches up.
    @Test func leaderBrokerInMinorityStepsDownAndRejoinsAfterHeal() async throws {
      try await NetworkScenario.run("minority-broker") { scenario in
        let cluster = scenario.cluster
        var windows: [(label: String, partition: Int32?, fromMs: Int64, toMs: Int64)] = []
        var isolatedBrokers: Set<Int32> = []
        for round in 1...Self.rounds {
          let before = try await scenario.partition(0)
          let leaderID = before.leader
          try #require(leaderID >= 0, "p0 has no leader before the fault: \(before)")
          isolatedBrokers.insert(leaderID)
          let leader = cluster.brokerNode(leaderID)
          let logStart = scenario.logLength(.broker(leaderID))
          let fault = try scenario.lab.partition(
            [leader], from: cluster.serverNodes.filter { $0 != leader })
          let faultAt = scenario.mark(
            "round \(round): fault in effect: partition broker \(leaderID) (leader of p0, epoch "
              + "\(before.leaderEpoch), isr \(before.isr)) | metaservers + other brokers; the "
              + "client still reaches it")
          async let steppedDown = scenario.waitForLog(
            .broker(leaderID), "leader session expired", afterCharacters: logStart,
            timeoutMs: 20_000)

          let (after, notYetAt) = try await cluster.waitForPartition(
            scenario.topic, 0, timeoutMs: 30_000, "new leader"
          ) { $0.leader >= 0 && $0.leader != leaderID }
          scenario.mark(
            "new leader broker \(after.leader) (epoch \(after.leaderEpoch), isr \(after.isr)); "
              + "not yet at \(scenario.timeline.offset(notYetAt))")
          #expect(after.leaderEpoch > before.leaderEpoch)
          #expect(!after.isr.contains(leaderID), "isolated broker still in the ISR: \(after)")
          if let steppedDownAt = try await steppedDown {
            scenario.mark(
              "fault detected: broker \(leaderID) stopped acting as leader (its log: leader "
                + "session expired, refusing produces)", atMs: steppedDownAt)
          } else {
            Issue.record("broker \(leaderID) never logged that it stopped acting as leader")
          }
          let probe = try await scenario.lab.produceProbe(
            from: cluster.client, brokerAddress: cluster.brokerAddress(leaderID),
            topic: scenario.topic, partition: 0, timeoutMs: 3_000)
          scenario.mark("acks=all produce sent straight to the old leader \(leaderID): \(probe)")
          #expect(!probe.isAcknowledged, "the isolated old leader acknowledged a write: \(probe)")

          try await scenario.sleep(untilMs: faultAt + Self.faultMs)
          try scenario.lab.heal(fault)
          scenario.mark("healed: partition of broker \(leaderID) removed")
          let (rejoined, _) = try await cluster.waitForPartition(
            scenario.topic, 0, timeoutMs: 60_000, "broker \(leaderID) back in the ISR"
          ) { $0.isr.count == 3 }
          let recoveredAt = scenario.mark(
            "recovered: broker \(leaderID) rejoined the ISR of p0 (\(rejoined))")
          windows.append(("round \(round) (leader partitioned away)", 0, faultAt, recoveredAt))
        }
        try await Task.sleep(for: .seconds(2))
        try await scenario.finish(windows: windows)
        try await scenario.waitForAllCaughtUp(partitions: 3)
        scenario.mark("caught up: every replica's log end offset equals the high watermark")
        for brokerID in isolatedBrokers.sorted() {
          let truncated =
            cluster.process(of: .broker(brokerID))?.stderrText().contains(
              "truncated a diverged log") ?? false
          print(
            "minority-broker: broker \(brokerID) truncated a divergent tail on rejoin: "
              + (truncated ? "yes" : "no (nothing diverged)"))
        }
      }
    }

    // MARK: - Metadata quorum split 2/1

    /// The metadata leader is cut off from the other metaservers and the brokers (the client
    /// still reaches it). A write sent to it fails; the majority elects a new leader and
    /// accepts writes; at no time do two nodes lead in the same term; healed, all three agree
    /// and the refused write never appears.
    @Test func metadataQuorumSplitMinorityRefusesWritesAndConverges() async throws {
      try await NetworkScenario.run("quorum-split") { scenario in
        let cluster = scenario.cluster
        let watch = SplitBrainWatch()
        watch.start(cluster)
        let leader = try await cluster.waitForMetadataLeader()
        let isolated = cluster.metaserverNode(leader.id)
        let majorityIDs = cluster.metaserverIDs.filter { $0 != leader.id }
        let majorityAddresses = majorityIDs.map(cluster.metaserverAPIAddress)
          .joined(separator: ",")
        let fault = try scenario.lab.partition(
          [isolated], from: cluster.serverNodes.filter { $0 != isolated })
        let faultAt = scenario.mark(
          "fault in effect: partition metadata leader \(leader.id) (term \(leader.term)) | "
            + "metaservers \(majorityIDs) + brokers; the client still reaches it")
        async let steppedDown = waitForStepDown(cluster, leader.id, timeoutMs: 15_000)
        // Sent at once, while the isolated node may still believe it leads.
        async let minorityWrite = cluster.sbctl(
          [
            "topic", "create", "minority-write", "--partitions", "1", "--replicas", "3",
            "--metaservers", cluster.metaserverAPIAddress(leader.id),
            "--request-timeout-ms", "6000",
          ], timeoutMs: 30_000)

        let newLeader = try await cluster.waitForMetadataLeader(among: majorityIDs)
        scenario.mark("new metadata leader \(newLeader.id) (term \(newLeader.term))")
        #expect(newLeader.term > leader.term)
        let majorityWrite = try await cluster.sbctl(
          [
            "topic", "create", "during-split", "--partitions", "1", "--replicas", "2",
            "--metaservers", majorityAddresses, "--request-timeout-ms", "15000",
          ], timeoutMs: 30_000)
        scenario.mark(
          majorityWrite.succeeded
            ? "first successful metadata write through the majority (topic during-split created)"
            : "metadata write through the majority FAILED: \(majorityWrite.stderrText)")
        #expect(majorityWrite.succeeded, "majority refused a write: \(majorityWrite.stderrText)")
        markStepDown(scenario, leader.id, try await steppedDown)
        let refused = try await minorityWrite
        let refusal = refused.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
        scenario.mark(
          "metadata write through the isolated node \(leader.id): "
            + (refused.succeeded ? "ACCEPTED" : "refused (\(refused.exit)): \(refusal)"))
        #expect(!refused.succeeded, "the minority accepted a metadata write")
        if let isolatedStatus = try await cluster.metaserverStatus(leader.id) {
          scenario.mark("isolated node's own view: \(isolatedStatus)")
        }

        try await scenario.sleep(untilMs: faultAt + Self.faultMs)
        try scenario.lab.heal(fault)
        scenario.mark("healed: partition of metaserver \(leader.id) removed")
        let converged = try await waitForConvergence(cluster, timeoutMs: 30_000)
        let recoveredAt = scenario.mark(
          "recovered: converged, all three agree: \(converged.map(\.description).joined(separator: ", "))"
        )
        let lookup = try await cluster.sbctl([
          "topic", "describe", "minority-write", "--request-timeout-ms", "5000",
        ])
        scenario.mark(
          "topic of the refused write after heal: "
            + (lookup.succeeded
              ? "EXISTS"
              : "absent (\(lookup.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)))"))
        #expect(!lookup.succeeded, "a write refused by the minority appeared after the heal")
        await watch.stop()
        print("quorum-split: \(watch.summary)")
        #expect(watch.conflicts.isEmpty, "two leaders in one term: \(watch.conflicts)")
        try await scenario.finish(windows: [("the quorum split", nil, faultAt, recoveredAt)])
      }
    }

    // MARK: - One-way partitions

    /// The leader of p0 receives nothing from anyone (metaservers, brokers, client) but can
    /// still send. Its session expires, it stops leading, the controller fences it once its
    /// heartbeats stop arriving, a new leader takes over; healed, it rejoins the ISR.
    @Test func oneWayPartitionedLeaderBrokerIsReplacedAndRejoins() async throws {
      try await NetworkScenario.run("one-way-broker") { scenario in
        let cluster = scenario.cluster
        var windows: [(label: String, partition: Int32?, fromMs: Int64, toMs: Int64)] = []
        for round in 1...Self.rounds {
          let before = try await scenario.partition(0)
          let leaderID = before.leader
          try #require(leaderID >= 0, "p0 has no leader before the fault: \(before)")
          let leader = cluster.brokerNode(leaderID)
          let logStart = scenario.logLength(.broker(leaderID))
          let fault = try scenario.lab.oneWay(
            leader, dropIncomingFrom: cluster.serverNodes + [cluster.client])
          let faultAt = scenario.mark(
            "round \(round): fault in effect: one-way partition, broker \(leaderID) (leader of "
              + "p0, epoch \(before.leaderEpoch)) drops everything it receives; it can still send")
          async let steppedDown = scenario.waitForLog(
            .broker(leaderID), "leader session expired", afterCharacters: logStart,
            timeoutMs: 30_000)
          let (after, _) = try await cluster.waitForPartition(
            scenario.topic, 0, timeoutMs: 60_000, "new leader"
          ) { $0.leader >= 0 && $0.leader != leaderID }
          scenario.mark(
            "new leader broker \(after.leader) (epoch \(after.leaderEpoch), isr \(after.isr))")
          if let steppedDownAt = try await steppedDown {
            scenario.mark(
              "fault detected: broker \(leaderID) stopped acting as leader (leader session "
                + "expired)", atMs: steppedDownAt)
          } else {
            Issue.record("broker \(leaderID) never logged that it stopped acting as leader")
          }
          try await scenario.sleep(untilMs: faultAt + Self.faultMs)
          try scenario.lab.heal(fault)
          scenario.mark("healed: one-way partition of broker \(leaderID) removed")
          let (rejoined, _) = try await cluster.waitForPartition(
            scenario.topic, 0, timeoutMs: 60_000, "broker \(leaderID) back in the ISR"
          ) { $0.isr.count == 3 }
          let recoveredAt = scenario.mark(
            "recovered: broker \(leaderID) rejoined the ISR of p0 (\(rejoined))")
          windows.append(("round \(round) (one-way leader)", 0, faultAt, recoveredAt))
        }
        try await Task.sleep(for: .seconds(2))
        try await scenario.finish(windows: windows)
        try await scenario.waitForAllCaughtUp(partitions: 3)
        scenario.mark("caught up: every replica's log end offset equals the high watermark")
      }
    }

    /// The metadata leader receives nothing from the other metaservers and the brokers but can
    /// still send to them. The others elect a new leader (at a higher term); never two leaders
    /// in one term; brokers move to the new leader; healed, all converge.
    @Test func oneWayPartitionedMetadataLeaderIsReplacedWithoutSplitBrain() async throws {
      try await NetworkScenario.run("one-way-metaserver") { scenario in
        let cluster = scenario.cluster
        let watch = SplitBrainWatch()
        watch.start(cluster)
        let leader = try await cluster.waitForMetadataLeader()
        let node = cluster.metaserverNode(leader.id)
        let majorityIDs = cluster.metaserverIDs.filter { $0 != leader.id }
        let fault = try scenario.lab.oneWay(
          node, dropIncomingFrom: cluster.serverNodes.filter { $0 != node })
        let faultAt = scenario.mark(
          "fault in effect: one-way partition, metadata leader \(leader.id) (term \(leader.term)) "
            + "drops everything from metaservers \(majorityIDs) and the brokers; it can still send")
        async let steppedDown = waitForStepDown(cluster, leader.id, timeoutMs: 15_000)
        let newLeader = try await cluster.waitForMetadataLeader(
          among: majorityIDs, timeoutMs: 30_000)
        scenario.mark("new metadata leader \(newLeader.id) (term \(newLeader.term))")
        #expect(newLeader.term > leader.term)
        let write = try await cluster.sbctl(
          [
            "topic", "create", "during-one-way", "--partitions", "1", "--replicas", "2",
            "--metaservers",
            majorityIDs.map(cluster.metaserverAPIAddress).joined(separator: ","),
            "--request-timeout-ms", "15000",
          ], timeoutMs: 30_000)
        scenario.mark(
          write.succeeded
            ? "first successful metadata write through the new leader"
            : "metadata write through the majority FAILED: \(write.stderrText)")
        #expect(write.succeeded)
        markStepDown(scenario, leader.id, try await steppedDown)
        if let isolatedStatus = try await cluster.metaserverStatus(leader.id) {
          scenario.mark("isolated node's own view: \(isolatedStatus)")
        }
        try await scenario.sleep(untilMs: faultAt + Self.faultMs)
        try scenario.lab.heal(fault)
        scenario.mark("healed: one-way partition of metaserver \(leader.id) removed")
        let converged = try await waitForConvergence(cluster, timeoutMs: 30_000)
        let recoveredAt = scenario.mark(
          "recovered: converged: \(converged.map(\.description).joined(separator: ", "))")
        await watch.stop()
        print("one-way-metaserver: \(watch.summary)")
        #expect(watch.conflicts.isEmpty, "two leaders in one term: \(watch.conflicts)")
        try await scenario.finish(windows: [
          ("the one-way metadata leader", nil, faultAt, recoveredAt)
        ])
      }
    }

    // MARK: - Slow follower

    /// A follower's link is rate limited (tc tbf) far below the replication rate: it falls
    /// behind, the leader removes it from the ISR (acks=all writes go on without it); the
    /// limit removed, it catches up and rejoins.
    @Test func rateLimitedFollowerLeavesTheIsrAndRejoinsWhenTheLinkRecovers() async throws {
      try await NetworkScenario.run(
        "slow-follower", partitions: 1,
        workloadOptions: { $0.valueBytes = 512 }
      ) { scenario in
        let cluster = scenario.cluster
        let before = try await scenario.partition(0)
        let followerID = try #require(
          before.isr.first { $0 != before.leader }, "no follower in \(before)")
        let rateKbit = 200
        let fault = try scenario.lab.rateLimit(cluster.brokerNode(followerID), kbit: rateKbit)
        let faultAt = scenario.mark(
          "fault in effect: rate limit \(rateKbit) kbit/s (tc tbf, both directions) on follower "
            + "broker \(followerID); leader \(before.leader), isr \(before.isr)")
        let (shrunk, _) = try await cluster.waitForPartition(
          scenario.topic, 0, timeoutMs: 30_000, "ISR without broker \(followerID)"
        ) { !$0.isr.contains(followerID) }
        let leftAt = scenario.mark(
          "fault detected: broker \(followerID) left the ISR (\(shrunk)); acks=all writes go on "
            + "with isr \(shrunk.isr)")
        try await scenario.sleep(untilMs: max(faultAt + Self.faultMs, leftAt + 2_000))
        try scenario.lab.heal(fault)
        scenario.mark("healed: rate limit on broker \(followerID) removed")
        let (expanded, _) = try await cluster.waitForPartition(
          scenario.topic, 0, timeoutMs: 60_000, "broker \(followerID) back in the ISR"
        ) { $0.isr.contains(followerID) }
        let recoveredAt = scenario.mark(
          "recovered: broker \(followerID) caught up and rejoined the ISR (\(expanded))")
        try await Task.sleep(for: .seconds(2))
        try await scenario.finish(windows: [
          ("the slow follower (until it left the ISR)", 0, faultAt, leftAt + 1_000),
          ("the follower's return", 0, recoveredAt - 1_000, recoveredAt + 2_000),
        ])
        print(
          "slow-follower: left the ISR \(ChaosSettings.seconds(leftAt - faultAt)) after the limit, "
            + "rejoined \(ChaosSettings.seconds(recoveredAt - leftAt)) after leaving")
        try await scenario.waitForAllCaughtUp(partitions: 1)
      }
    }

    // MARK: - Packet loss and connection resets

    /// On the leader of p0: 20% random packet loss both ways for a few seconds, then every TCP
    /// connection reset (REJECT tcp-reset) for a few seconds. No acknowledged record is lost;
    /// after the faults every partition has its full ISR again and writes go on.
    @Test func packetLossThenConnectionResetsOnTheLeaderLoseNothing() async throws {
      try await NetworkScenario.run("loss-and-resets") { scenario in
        let cluster = scenario.cluster
        var windows: [(label: String, partition: Int32?, fromMs: Int64, toMs: Int64)] = []
        let lossMs: Int64 = ChaosSettings.pick(short: 5_000, long: 15_000)
        let resetMs: Int64 = ChaosSettings.pick(short: 3_000, long: 8_000)
        for round in 1...Self.rounds {
          let before = try await scenario.partition(0)
          let leaderID = before.leader
          try #require(leaderID >= 0, "p0 has no leader: \(before)")
          let leader = cluster.brokerNode(leaderID)
          let loss = try scenario.lab.loss(leader, percent: 20)
          let lossAt = scenario.mark(
            "round \(round): fault in effect: 20% random packet loss in and out on broker "
              + "\(leaderID) (leader of p0)")
          try await scenario.sleep(untilMs: lossAt + lossMs)
          let during = try? await scenario.partition(0)
          try scenario.lab.heal(loss)
          scenario.mark(
            "healed: packet loss removed; p0 then: \(during.map(\.description) ?? "no answer")")
          let lossRecoveredAt = try await waitForFullIsr(scenario, "after the packet loss")
          windows.append(("round \(round) 20% loss", nil, lossAt, lossRecoveredAt))
          // Acknowledgements flow again before the next fault, so its gap is its own.
          try await Task.sleep(for: .milliseconds(1_500))

          let resets = try scenario.lab.reset(leader)
          let resetAt = scenario.mark(
            "round \(round): fault in effect: every TCP segment to/from broker \(leaderID) "
              + "answered with a reset")
          try await scenario.sleep(untilMs: resetAt + resetMs)
          let duringResets = try? await scenario.partition(0)
          try scenario.lab.heal(resets)
          scenario.mark(
            "healed: resets removed; p0 then: \(duringResets.map(\.description) ?? "no answer")")
          let recoveredAt = try await waitForFullIsr(scenario, "after the resets")
          windows.append(("round \(round) resets", nil, resetAt, recoveredAt))
        }
        try await Task.sleep(for: .seconds(2))
        try await scenario.finish(windows: windows)
        try await scenario.waitForAllCaughtUp(partitions: 3)
        scenario.mark("caught up: every replica's log end offset equals the high watermark")
      }
    }

    // MARK: - Helpers

    /// Waits until every partition of the scenario's topic has a leader and the full ISR.
    private func waitForFullIsr(_ scenario: NetworkScenario, _ what: String) async throws -> Int64 {
      var states: [String] = []
      for partition in Int32(0)..<3 {
        let (state, _) = try await scenario.cluster.waitForPartition(
          scenario.topic, partition, timeoutMs: 60_000, "full ISR \(what)"
        ) { $0.leader >= 0 && $0.isr.count == 3 }
        states.append("p\(partition) leader \(state.leader)")
      }
      return scenario.mark(
        "recovered \(what): every partition has a leader and the full ISR "
          + "(\(states.joined(separator: ", ")))")
    }

    /// Polls a metaserver until it no longer says it leads; the unix ms then, nil on timeout.
    private func waitForStepDown(_ cluster: LabCluster, _ id: Int, timeoutMs: Int) async throws
      -> Int64?
    {
      let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
      while ContinuousClock.now < deadline {
        if let status = try await cluster.metaserverStatus(id, timeoutMs: 300), !status.isLeader {
          return LabTimeline.nowMs()
        }
        try await Task.sleep(for: .milliseconds(50))
      }
      return nil
    }

    private func markStepDown(_ scenario: NetworkScenario, _ id: Int, _ steppedDownAt: Int64?) {
      if let steppedDownAt {
        scenario.mark(
          "fault detected: metaserver \(id) stepped down (no quorum heard from)",
          atMs: steppedDownAt)
      } else {
        scenario.mark("metaserver \(id) still says it leads 15 s into the fault (stale leader)")
      }
    }

    /// Waits until every metaserver answers, exactly one leads, all are in the same term and
    /// every node has applied what the leader had committed when the wait began.
    private func waitForConvergence(_ cluster: LabCluster, timeoutMs: Int) async throws
      -> [LabMetaserverStatus]
    {
      let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
      var target: Int64?
      var last: [LabMetaserverStatus] = []
      while true {
        last = await cluster.metaserverStatuses()
        let leaders = last.filter(\.isLeader)
        if target == nil, leaders.count == 1 { target = leaders[0].commitIndex }
        if let target, last.count == cluster.metaserverIDs.count, leaders.count == 1,
          Set(last.map(\.term)).count == 1, last.allSatisfy({ $0.appliedIndex >= target })
        {
          return last
        }
        guard ContinuousClock.now < deadline else {
          throw HarnessError("metaservers did not converge within \(timeoutMs) ms: \(last)")
        }
        try await Task.sleep(for: .milliseconds(50))
      }
    }
  }
}
