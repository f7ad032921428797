import Foundation
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Metaserver quorums of real processes on loopback: election, writes, reads from every
/// member, failover after kill -9, and restart of the whole quorum.
@Suite(.timeLimit(.minutes(3)))
struct MetaQuorumTests {
  /// Names of the topics every member lists, through a client pinned to that member.
  static func topicNames(_ cluster: MetaCluster, on id: Int) async throws -> [String] {
    let client = cluster.client([id])
    defer { Task { await client.close() } }
    return try await client.listTopics().map(\.name).sorted()
  }

  @Test func threeNodeQuorumElectsOneLeaderAndServesEveryApi() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await MetaCluster.start(harness, count: 3)
      let leader = try await cluster.waitForLeader()
      #expect(cluster.leaders(among: [1, 2, 3]).count == 1)

      // The client starts at a follower and follows its NOT_LEADER hint.
      let follower = [1, 2, 3].first { $0 != leader } ?? 1
      let client = cluster.client([follower, leader])
      try await cluster.registerBrokers(client, count: 3)
      let created = try await client.createTopics([
        .init(
          name: "orders", partitions: 6, replicationFactor: 3, configs: ["retention.ms": "60000"]),
        .init(name: "events", partitions: 3, replicationFactor: 2, configs: [:]),
        .init(name: "bad/name", partitions: 1, replicationFactor: 1, configs: [:]),
      ])
      #expect(created.map(\.errorCode) == [.none, .none, .invalidTopic])
      #expect(created[0].topicID != created[1].topicID)

      // Every member answers reads with the committed state (ReadIndex on followers).
      for id in [1, 2, 3] {
        #expect(try await Self.topicNames(cluster, on: id) == ["events", "orders"])
      }
      let described = try await client.describeTopic("orders")
      #expect(described.partitions.count == 6)
      #expect(described.configs["retention.ms"] == "60000")
      // Leaders are balanced: 6 partitions over 3 brokers, two each.
      let leadersPerBroker = Dictionary(grouping: described.partitions, by: \.leader)
        .mapValues(\.count)
      #expect(leadersPerBroker.values.sorted() == [2, 2, 2])

      let cluster1 = try await client.describeCluster()
      #expect(cluster1.brokers.count == 3)
      #expect(cluster1.brokers.allSatisfy { !$0.fenced })
      #expect(cluster1.partitionCount == 9)
      #expect(cluster1.leaderID == Int32(leader))

      let quorum = try await client.quorumStatus()
      #expect(quorum.leaderID == Int32(leader))
      #expect(quorum.voters.map(\.nodeID).sorted() == [1, 2, 3])
      #expect(quorum.voters.allSatisfy { !$0.apiAddress.isEmpty })

      // A write sent straight to a follower is refused with the leader's API address.
      let pinned = cluster.client([follower], requestTimeoutMs: 3_000)
      await pinned.forgetLeader()
      let topics = try await pinned.createTopics([
        .init(name: "via-hint", partitions: 1, replicationFactor: 1, configs: [:])
      ])
      #expect(topics.first?.errorCode == ErrorCode.none)

      // FetchMetadata from a follower: committed batches in offset order.
      let fetchClient = cluster.client([follower])
      let fetched = try await fetchClient.fetchMetadata(fromOffset: 0, maxWaitMs: 0)
      guard case .entries(let entries) = fetched.content else {
        Issue.record("expected entries, got a snapshot")
        return
      }
      #expect(!entries.isEmpty)
      #expect(entries.map(\.offset) == entries.map(\.offset).sorted())
      #expect(fetched.committedOffset >= entries.last?.offset ?? 0)

      // A long poll past the end returns as soon as a new batch commits.
      let end = fetched.committedOffset
      async let waited = fetchClient.fetchMetadata(fromOffset: end, maxWaitMs: 10_000)
      try await Task.sleep(for: .milliseconds(200))
      let start = ContinuousClock.now
      _ = try await client.createTopics([
        .init(name: "wakes-poll", partitions: 1, replicationFactor: 1, configs: [:])
      ])
      let polled = try await waited
      #expect(ContinuousClock.now - start < .seconds(5))
      if case .entries(let newEntries) = polled.content {
        #expect(newEntries.first.map { $0.offset > end } == true)
      } else {
        Issue.record("expected entries after the long poll")
      }
      for client in [client, pinned, fetchClient] { await client.close() }
    }
  }

  @Test func fiveNodeQuorumFailsOverAfterKillingTheLeader() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await MetaCluster.start(harness, count: 5)
      let client = cluster.client()
      try await cluster.registerBrokers(client, count: 3)
      var acknowledged: [String] = []
      for index in 0..<10 {
        let name = "before-\(index)"
        _ = try await client.createTopic(name, partitions: 2, replicationFactor: 2)
        acknowledged.append(name)
      }
      let oldLeader = try await cluster.waitForLeader()
      try await cluster.kill(oldLeader)
      let killedAt = ContinuousClock.now
      // The next write succeeds once a new leader is elected.
      _ = try await client.createTopic("after-kill", partitions: 1, replicationFactor: 3)
      let failover = ContinuousClock.now - killedAt
      acknowledged.append("after-kill")
      #expect(failover < .seconds(5), "failover took \(failover)")
      let newLeader = try await cluster.waitForLeader(excluding: [oldLeader])
      #expect(newLeader != oldLeader)

      // Nothing acknowledged is lost, on any survivor.
      for id in [1, 2, 3, 4, 5] where id != oldLeader {
        #expect(try await Self.topicNames(cluster, on: id) == acknowledged.sorted())
      }
      // The old leader comes back as a follower and catches up.
      try cluster.restart(oldLeader)
      try await cluster.waitUntilReady([oldLeader])
      #expect(try await Self.topicNames(cluster, on: oldLeader) == acknowledged.sorted())
      await client.close()
    }
  }

  /// Every node is restarted; the log replays on top of the local snapshot. One node misses
  /// enough writes that the leader compacted past it and must send it a snapshot.
  @Test func restartingEveryNodeKeepsTheStateThroughLogReplayAndSnapshotInstall() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await MetaCluster.start(
        harness, count: 3, extraArguments: ["--snapshot-threshold-entries", "20"])
      let client = cluster.client()
      try await cluster.registerBrokers(client, count: 2)
      let leader = try await cluster.waitForLeader()
      let lagging = [1, 2, 3].first { $0 != leader } ?? 1
      try await cluster.kill(lagging)
      var names: [String] = []
      for index in 0..<60 {
        let name = "t-\(index)"
        _ = try await client.createTopic(name, partitions: 1, replicationFactor: 2)
        names.append(name)
      }
      // The leader compacted its log: the lagging node can only catch up from a snapshot.
      try cluster.restart(lagging)
      try await cluster.waitUntilReady([lagging])
      #expect(try await Self.topicNames(cluster, on: lagging) == names.sorted())
      let laggingLog = cluster.process(lagging)?.stderrText() ?? ""
      #expect(laggingLog.contains("restored from snapshot"), "snapshot install on \(lagging)")

      let describeBefore = try await client.describeCluster()
      // Stop everything (one crash, two graceful), then start everything again.
      for id in [1, 2, 3] {
        if id == leader {
          try await cluster.kill(id)
        } else {
          try await cluster.terminate(id)
        }
      }
      for id in [1, 2, 3] { try cluster.restart(id) }
      try await cluster.waitUntilReady([1, 2, 3])
      await client.forgetLeader()
      for id in [1, 2, 3] {
        #expect(try await Self.topicNames(cluster, on: id) == names.sorted())
      }
      let describeAfter = try await client.describeCluster()
      #expect(describeAfter.brokers.map(\.brokerID) == describeBefore.brokers.map(\.brokerID))
      #expect(describeAfter.partitionCount == describeBefore.partitionCount)
      // Ids keep increasing after the restart.
      let next = try await client.createTopics([
        .init(name: "after-restart", partitions: 1, replicationFactor: 1, configs: [:])
      ])
      let previousIDs = try await client.listTopics().filter { $0.name != "after-restart" }
        .map(\.topicID)
      #expect(next[0].topicID > previousIDs.max() ?? 0)
      await client.close()
    }
  }
}
