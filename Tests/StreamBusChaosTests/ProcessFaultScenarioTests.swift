import Foundation
import StreamBusTestSupport
import Testing

extension NetworkChaosTests {
  /// Process faults on a lab cluster (3 metaservers + 3 brokers, each in its own network
  /// namespace) under the verification workload: kill -9 of the partition leader, of the
  /// metadata leader and of both; two brokers at once; rolling restarts of the brokers and of
  /// the metaservers; a power cut of every process. Each prints its timeline and the measured
  /// unavailability (the workload's acknowledgement gaps over the fault's window) and expects
  /// the workload's PASS: nothing acknowledged lost, duplicated or reordered.
  ///
  /// `CHAOS_LONG=1` repeats the kill scenarios and the rolling restarts.
  @Suite(.serialized, .requiresNetworkLab, .timeLimit(.minutes(10)))
  struct ProcessFaultScenarioTests {
    static let partitions = 3
    static var iterations: Int { ChaosSettings.pick(short: 1, long: 3) }

    // MARK: kill -9

    @Test func killLeaderBroker() async throws {
      try await NetworkScenario.run("kill-leader-broker", partitions: Self.partitions) { scenario in
        var windows: [(label: String, partition: Int32?, fromMs: Int64, toMs: Int64)] = []
        for round in 1...Self.iterations {
          let before = try await scenario.partition(0)
          let victim = before.leader
          let faultMs = scenario.mark(
            "round \(round): fault injected: kill -9 broker \(victim) (leader of p0, epoch "
              + "\(before.leaderEpoch))")
          try await scenario.cluster.kill(.broker(victim))
          let (after, notYetMs) = try await scenario.cluster.waitForPartition(
            scenario.topic, 0, timeoutMs: 20_000, "a new leader"
          ) { $0.leader >= 0 && $0.leader != victim && $0.leaderEpoch > before.leaderEpoch }
          scenario.mark(
            "fault detected (broker \(victim) fenced; not yet at "
              + "\(scenario.timeline.offset(notYetMs))): new leader broker \(after.leader) epoch "
              + "\(after.leaderEpoch), ISR \(after.isr)")
          // Acks go on with the new leader while the old one is down.
          try await Task.sleep(for: .milliseconds(1_500))
          scenario.mark("restarting broker \(victim)")
          try await scenario.cluster.restart(.broker(victim))
          try await scenario.waitForFullIsr(partitions: Self.partitions)
          let recoveredMs = scenario.mark("recovered: broker \(victim) back in every ISR")
          windows.append(
            ("kill -9 of leader broker \(victim) (round \(round))", 0, faultMs, recoveredMs))
          windows.append(
            ("kill -9 of broker \(victim) (round \(round))", nil, faultMs, recoveredMs))
        }
        try await scenario.finish(windows: windows)
      }
    }

    @Test func killMetaserverLeader() async throws {
      try await NetworkScenario.run("kill-metaserver-leader", partitions: Self.partitions) {
        scenario in
        var windows: [(label: String, partition: Int32?, fromMs: Int64, toMs: Int64)] = []
        for round in 1...Self.iterations {
          let leader = try await scenario.cluster.waitForMetadataLeader()
          let faultMs = scenario.mark(
            "round \(round): fault injected: kill -9 metaserver \(leader.id) (metadata leader, "
              + "term \(leader.term))")
          try await scenario.cluster.kill(.metaserver(leader.id))
          let newLeader = try await scenario.cluster.waitForMetadataLeader(excluding: [leader.id])
          scenario.mark(
            "fault detected: new metadata leader metaserver \(newLeader.id) term \(newLeader.term)")
          let writtenMs = try await scenario.firstMetadataWrite("probe-\(round)")
          scenario.mark(
            "first successful metadata write (topic probe-\(round) created)", atMs: writtenMs)
          scenario.mark("restarting metaserver \(leader.id)")
          try await scenario.cluster.restart(.metaserver(leader.id))
          try await scenario.waitForFullIsr(partitions: Self.partitions)
          let recoveredMs = scenario.mark("recovered: metaserver \(leader.id) ready again")
          windows.append(
            ("kill -9 of metaserver \(leader.id) (round \(round))", nil, faultMs, recoveredMs))
        }
        try await scenario.finish(windows: windows)
      }
    }

    @Test func killLeaderBrokerAndMetaserverLeaderAtOnce() async throws {
      try await NetworkScenario.run("kill-both-leaders", partitions: Self.partitions) { scenario in
        var windows: [(label: String, partition: Int32?, fromMs: Int64, toMs: Int64)] = []
        for round in 1...Self.iterations {
          let before = try await scenario.partition(0)
          let victim = before.leader
          let metaLeader = try await scenario.cluster.waitForMetadataLeader()
          let faultMs = scenario.mark(
            "round \(round): fault injected: kill -9 broker \(victim) (leader of p0) and "
              + "metaserver \(metaLeader.id) (metadata leader) at once")
          async let brokerKilled: Void = scenario.cluster.kill(.broker(victim))
          async let metaserverKilled: Void = scenario.cluster.kill(.metaserver(metaLeader.id))
          _ = try await (brokerKilled, metaserverKilled)
          let newMetaLeader = try await scenario.cluster.waitForMetadataLeader(
            excluding: [metaLeader.id])
          scenario.mark(
            "new metadata leader metaserver \(newMetaLeader.id) term \(newMetaLeader.term)")
          let (after, _) = try await scenario.cluster.waitForPartition(
            scenario.topic, 0, timeoutMs: 30_000, "a new leader"
          ) { $0.leader >= 0 && $0.leader != victim && $0.leaderEpoch > before.leaderEpoch }
          scenario.mark(
            "fault detected: broker \(victim) fenced by the new controller; new leader broker "
              + "\(after.leader) epoch \(after.leaderEpoch)")
          try await Task.sleep(for: .milliseconds(1_000))
          scenario.mark("restarting metaserver \(metaLeader.id) and broker \(victim)")
          try await scenario.cluster.restart(.metaserver(metaLeader.id))
          try await scenario.cluster.restart(.broker(victim))
          try await scenario.waitForFullIsr(partitions: Self.partitions)
          let recoveredMs = scenario.mark("recovered: every ISR full again")
          windows.append(("kill -9 of both leaders (round \(round))", 0, faultMs, recoveredMs))
          windows.append(("kill -9 of both leaders (round \(round))", nil, faultMs, recoveredMs))
        }
        try await scenario.finish(windows: windows)
      }
    }

    /// Two of three brokers down: every ISR shrinks to the survivor, so acks=all is refused
    /// with NOT_ENOUGH_REPLICAS (min.insync.replicas 2) until one comes back; nothing that was
    /// acknowledged may be lost.
    @Test func twoBrokersKilledAtOnceThenRestarted() async throws {
      try await NetworkScenario.run("kill-two-brokers", partitions: Self.partitions) { scenario in
        let before = try await scenario.partition(0)
        let victims =
          [before.leader]
          + scenario.cluster.brokerIDs.filter { $0 != before.leader }
          .prefix(1)
        let survivor = scenario.cluster.brokerIDs.first { !victims.contains($0) } ?? -1
        let faultMs = scenario.mark(
          "fault injected: kill -9 brokers \(victims) at once (broker \(victims[0]) led p0)")
        async let first: Void = scenario.cluster.kill(.broker(victims[0]))
        async let second: Void = scenario.cluster.kill(.broker(victims[1]))
        _ = try await (first, second)
        let (after, _) = try await scenario.cluster.waitForPartition(
          scenario.topic, 0, timeoutMs: 20_000, "the survivor leading"
        ) { $0.leader == survivor && $0.isr == [survivor] }
        scenario.mark(
          "fault detected: both fenced; broker \(survivor) leads p0 (epoch \(after.leaderEpoch)) "
            + "with ISR \(after.isr): acks=all refused (NOT_ENOUGH_REPLICAS)")
        // The survivor's own answer (one request, no client retries).
        let refusal = try await scenario.lab.produceProbe(
          from: scenario.cluster.client, brokerAddress: scenario.cluster.brokerAddress(survivor),
          topic: scenario.topic, partition: 0, timeoutMs: 2_000)
        scenario.mark("acks=all produce sent straight to broker \(survivor): \(refusal)")
        #expect(
          refusal.description.contains("NOT_ENOUGH_REPLICAS"),
          "acks=all to a leader with one in-sync replica: \(refusal)")
        try await Task.sleep(for: .milliseconds(ChaosSettings.pick(short: 1_000, long: 6_000)))
        scenario.mark("restarting brokers \(victims)")
        async let firstBack: Void = scenario.cluster.restart(.broker(victims[0]))
        async let secondBack: Void = scenario.cluster.restart(.broker(victims[1]))
        _ = try await (firstBack, secondBack)
        try await scenario.waitForFullIsr(partitions: Self.partitions)
        let recoveredMs = scenario.mark("recovered: every ISR full again")
        let report = try await scenario.finish(windows: [
          ("two brokers down", 0, faultMs, recoveredMs),
          ("two brokers down", nil, faultMs, recoveredMs),
        ])
        print(
          "kill-two-brokers: \(report.failed) sends failed and \(report.indeterminate) were "
            + "indeterminate (the idempotent producers retry NOT_ENOUGH_REPLICAS until the ISR "
            + "is back; whatever failed was never acknowledged)")
      }
    }

    // MARK: Rolling restarts

    @Test func rollingRestartOfAllBrokersUnderLoad() async throws {
      try await NetworkScenario.run("rolling-restart-brokers", partitions: Self.partitions) {
        scenario in
        var windows: [(label: String, partition: Int32?, fromMs: Int64, toMs: Int64)] = []
        for round in 1...ChaosSettings.pick(short: 1, long: 2) {
          for broker in scenario.cluster.brokerIDs {
            let stopMs = scenario.mark(
              "round \(round): SIGTERM broker \(broker) (controlled shutdown)")
            let exit = try await scenario.cluster.terminate(.broker(broker))
            scenario.mark("broker \(broker) exited: \(exit.map { "\($0)" } ?? "not running")")
            #expect(
              exit == .exited(code: 0),
              "broker \(broker) did not exit cleanly: \(String(describing: exit))")
            try await scenario.cluster.restart(.broker(broker))
            scenario.mark("broker \(broker) restarted and ready")
            try await scenario.waitForFullIsr(partitions: Self.partitions)
            let backMs = scenario.mark("broker \(broker) back in every ISR")
            windows.append(("restart of broker \(broker) (round \(round))", nil, stopMs, backMs))
          }
        }
        try await scenario.finish(windows: windows)
      }
    }

    @Test func rollingRestartOfAllMetaserversUnderLoad() async throws {
      try await NetworkScenario.run("rolling-restart-metaservers", partitions: Self.partitions) {
        scenario in
        var windows: [(label: String, partition: Int32?, fromMs: Int64, toMs: Int64)] = []
        for round in 1...ChaosSettings.pick(short: 1, long: 2) {
          for id in scenario.cluster.metaserverIDs {
            let stopMs = scenario.mark(
              "round \(round): SIGTERM metaserver \(id) (a leader hands leadership over)")
            let exit = try await scenario.cluster.terminate(.metaserver(id))
            scenario.mark("metaserver \(id) exited: \(exit.map { "\($0)" } ?? "not running")")
            #expect(exit == .exited(code: 0), "metaserver \(id): \(String(describing: exit))")
            let leader = try await scenario.cluster.waitForMetadataLeader(excluding: [id])
            scenario.mark("metadata leader metaserver \(leader.id) term \(leader.term)")
            try await scenario.cluster.restart(.metaserver(id))
            let backMs = scenario.mark("metaserver \(id) restarted and ready")
            windows.append(("restart of metaserver \(id) (round \(round))", nil, stopMs, backMs))
          }
        }
        let writtenMs = try await scenario.firstMetadataWrite("after-rolling-restart")
        scenario.mark("metadata write after the rolling restart succeeded", atMs: writtenMs)
        try await scenario.finish(windows: windows)
      }
    }

    // MARK: Power cut

    /// kill -9 of every process at the same moment, then everything restarted: every
    /// acknowledged record must still be there (acks=all means fsynced on every ISR member).
    @Test func wholeClusterPowerCutAndRestart() async throws {
      try await NetworkScenario.run("power-cut", partitions: Self.partitions) { scenario in
        let cluster = scenario.cluster
        let servers =
          cluster.metaserverIDs.map { LabServer.metaserver($0) }
          + cluster.brokerIDs.map { LabServer.broker($0) }
        let faultMs = scenario.mark("fault injected: kill -9 of all \(servers.count) processes")
        try await withThrowingTaskGroup(of: Void.self) { group in
          for server in servers {
            group.addTask { try await cluster.kill(server) }
          }
          try await group.waitForAll()
        }
        scenario.mark("every process is gone; the workload keeps retrying")
        try await Task.sleep(for: .milliseconds(ChaosSettings.pick(short: 1_000, long: 5_000)))
        scenario.mark("restarting every metaserver, then every broker")
        // A metaserver is ready only with a quorum: start them together.
        try await withThrowingTaskGroup(of: Void.self) { group in
          for id in cluster.metaserverIDs {
            group.addTask { try await cluster.restart(.metaserver(id)) }
          }
          try await group.waitForAll()
        }
        let leader = try await cluster.waitForMetadataLeader()
        scenario.mark("metadata quorum back: leader metaserver \(leader.id) term \(leader.term)")
        try await withThrowingTaskGroup(of: Void.self) { group in
          for id in cluster.brokerIDs {
            group.addTask { try await cluster.restart(.broker(id)) }
          }
          try await group.waitForAll()
        }
        scenario.mark("every broker registered and unfenced")
        try await scenario.waitForFullIsr(partitions: Self.partitions)
        let recoveredMs = scenario.mark("recovered: every partition led with a full ISR")
        try await scenario.finish(windows: [("power cut", nil, faultMs, recoveredMs)])
      }
    }
  }
}

extension NetworkScenario {
  /// Waits until every partition of the topic has a leader and all 3 replicas in its ISR.
  func waitForFullIsr(partitions: Int, timeoutMs: Int = 60_000) async throws {
    for partition in 0..<Int32(partitions) {
      _ = try await cluster.waitForPartition(
        topic, partition, timeoutMs: timeoutMs, "a leader and the full ISR", pollIntervalMs: 200
      ) { $0.leader >= 0 && $0.isr.count == 3 }
    }
  }

  /// Creates a 1-partition topic through the metaservers, retrying until it succeeds (the
  /// quorum may be electing); returns when it did (unix ms).
  func firstMetadataWrite(_ name: String, timeoutMs: Int = 30_000) async throws -> Int64 {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var last = ""
    while ContinuousClock.now < deadline {
      let result = try await cluster.sbctl(
        [
          "topic", "create", name, "--partitions", "1", "--replicas", "3",
          "--metaservers", cluster.metaserverAddresses,
        ], timeoutMs: 20_000)
      if result.succeeded { return LabTimeline.nowMs() }
      last = result.stderrText
      if last.contains("TOPIC_ALREADY_EXISTS") || last.contains("already exists") {
        return LabTimeline.nowMs()
      }
      try await Task.sleep(for: .milliseconds(100))
    }
    throw HarnessError("no metadata write succeeded within \(timeoutMs) ms: \(last)")
  }
}
