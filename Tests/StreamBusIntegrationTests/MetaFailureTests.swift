import Foundation
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Membership changes, lost majorities, paused leaders and one-way network faults against
/// real metaserver processes.
@Suite(.timeLimit(.minutes(3)))
struct MetaFailureTests {
  /// Creates topics one after the other until stopped; records what was acknowledged.
  final class BackgroundWriter: @unchecked Sendable {
    private let lock = NSLock()
    private var acknowledged: [String] = []
    private var failures: [String] = []
    private var task: Task<Void, Never>?

    init(client: MetaClient, prefix: String) {
      task = Task { [self] in
        var index = 0
        while !Task.isCancelled {
          let name = "\(prefix)-\(index)"
          index += 1
          do {
            _ = try await client.createTopic(name, partitions: 1, replicationFactor: 1)
            lock.withLock { acknowledged.append(name) }
          } catch let error as MetaClientError where error.errorCode == .topicAlreadyExists {
            // A try that ended with NOT_LEADER (leadership moved while it was in flight) had
            // committed after all; the client's retry found the topic. It exists: a success.
            lock.withLock { acknowledged.append(name) }
          } catch {
            // The write cut short by `stop` is neither acknowledged nor a failure.
            if Task.isCancelled { break }
            lock.withLock { failures.append("\(name): \(error)") }
          }
          try? await Task.sleep(for: .milliseconds(20))
        }
      }
    }

    func stop() async -> (acknowledged: [String], failures: [String]) {
      let running = lock.withLock { task }
      running?.cancel()
      await running?.value
      return lock.withLock { (acknowledged, failures) }
    }

    var acknowledgedCount: Int { lock.withLock { acknowledged.count } }
  }

  static func topicNames(_ cluster: MetaCluster, on id: Int) async throws -> Set<String> {
    let client = cluster.client([id])
    defer { Task { await client.close() } }
    return Set(try await client.listTopics().map(\.name))
  }

  @Test func learnerJoinsIsPromotedAndAVoterIsRemovedWhileWritesContinue() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await MetaCluster.start(harness, count: 3)
      let admin = cluster.client([1, 2, 3])
      try await cluster.registerBrokers(admin, count: 1)
      let writer = BackgroundWriter(client: cluster.client([1, 2, 3]), prefix: "w")

      try cluster.startJoiner(id: 4)
      let joiner = cluster.node(4)
      try await admin.addLearner(
        nodeID: 4, raftAddress: joiner.raftAddress, apiAddress: joiner.apiAddress)
      try await cluster.waitUntilReady([4])
      // Promotion waits for the learner to catch up; retry while it is still behind.
      var promoted = false
      for _ in 0..<100 where !promoted {
        do {
          try await admin.addVoter(nodeID: 4)
          promoted = true
        } catch let error as MetaClientError where error.errorCode == .reconfigurationInProgress {
          try await Task.sleep(for: .milliseconds(50))
        }
      }
      #expect(promoted)

      let leader = try await cluster.waitForLeader(among: [1, 2, 3, 4])
      let removed = [1, 2, 3].first { $0 != leader } ?? 1
      try await admin.removeVoter(nodeID: Int32(removed))
      let quorum = try await admin.quorumStatus()
      #expect(
        quorum.voters.map(\.nodeID).sorted()
          == [1, 2, 3, 4].filter { $0 != removed }.map(Int32.init))
      #expect(quorum.learners.isEmpty)

      // Writes keep going on the new configuration.
      let countAfterRemoval = writer.acknowledgedCount
      let deadline = ContinuousClock.now + .seconds(10)
      while writer.acknowledgedCount < countAfterRemoval + 5 && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
      }
      let (acknowledged, failures) = await writer.stop()
      #expect(failures.isEmpty, "writes failed during reconfiguration: \(failures.prefix(3))")
      #expect(acknowledged.count >= countAfterRemoval + 5)
      for id in [1, 2, 3, 4] where id != removed {
        let names = try await Self.topicNames(cluster, on: id)
        #expect(
          Set(acknowledged).isSubset(of: names), "metaserver-\(id) misses acknowledged topics")
      }
      // The removed node no longer takes part: its writes are refused.
      try await cluster.kill(removed)
      _ = try await admin.createTopic("after-removal", partitions: 1, replicationFactor: 1)
      await admin.close()
    }
  }

  /// A voter that joined as a learner must count the whole membership: with the three
  /// founders gone it is one of four voters and must not lead. Its log is replicated from
  /// the start (no snapshot of the metadata yet), so it learns the founders only from the
  /// Raft host's bootstrap snapshot.
  @Test
  func aPromotedJoinerAloneDoesNotBecomeLeader() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await MetaCluster.start(harness, count: 3)
      let admin = cluster.client([1, 2, 3])
      try cluster.startJoiner(id: 4)
      let joiner = cluster.node(4)
      try await admin.addLearner(
        nodeID: 4, raftAddress: joiner.raftAddress, apiAddress: joiner.apiAddress)
      try await cluster.waitUntilReady([4])
      var promoted = false
      for _ in 0..<100 where !promoted {
        do {
          try await admin.addVoter(nodeID: 4)
          promoted = true
        } catch let error as MetaClientError where error.errorCode == .reconfigurationInProgress {
          try await Task.sleep(for: .milliseconds(50))
        }
      }
      try #require(promoted)
      for id in [1, 2, 3] { try await cluster.kill(id) }
      try await Task.sleep(for: .seconds(2))
      #expect(cluster.metric(4, "is_leader") == 0)
      #expect(HTTPProbe.get(cluster.node(4).httpAddress, "/readyz")?.status == 503)
      await admin.close()
    }
  }

  @Test func writesFailWithAClearErrorWithinTheTimeoutWhenTheMajorityIsGone() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await MetaCluster.start(harness, count: 3)
      let setup = cluster.client()
      try await cluster.registerBrokers(setup, count: 1)
      await setup.close()
      let leader = try await cluster.waitForLeader()
      for id in [1, 2, 3] where id != leader {
        try await cluster.kill(id)
      }
      let client = cluster.client(requestTimeoutMs: 3_000)
      let start = ContinuousClock.now
      await #expect {
        _ = try await client.createTopic("no-majority", partitions: 1, replicationFactor: 1)
      } throws: { error in
        // The client gives up at its request timeout and says what its last try ran into.
        let elapsed = ContinuousClock.now - start
        return elapsed < .milliseconds(4_500) && "\(error)".contains("within 3000 ms")
          && (error as? MetaClientError)?.lastError != nil
      }
      // Asked directly, the survivor says why: it knows no leader (it stepped down through
      // CheckQuorum) or the write could not be committed.
      let socket = try RawSocket(
        host: "127.0.0.1", port: cluster.node(leader).apiPort, receiveTimeoutMs: 10_000)
      socket.write(
        MetaMessage.encodeRequestFrame(
          MetaCreateTopicsRequest(topics: [
            .init(name: "direct", partitions: 1, replicationFactor: 1, configs: [:])
          ]),
          header: RequestHeader(
            apiKey: MetaApiKey.createTopics, apiVersion: 0, correlationId: 1, clientId: "test")))
      guard case .frame(let payload) = socket.readFrame() else {
        Issue.record("the survivor did not answer")
        return
      }
      let (header, _) = try MetaMessage.decodeReply(
        to: MetaCreateTopicsRequest.self, version: 0, payload: payload)
      #expect(header.errorCode == .notLeader || header.errorCode == .requestTimedOut)
      let message = header.errorMessage ?? ""
      #expect(
        message.contains("knows no leader") || message.contains("majority"),
        "unclear error: \(message)")
      // The survivor notices it lost the quorum (CheckQuorum) and reports not ready.
      var readiness = HTTPProbe.get(cluster.node(leader).httpAddress, "/readyz")
      let deadline = ContinuousClock.now + .seconds(5)
      while readiness?.status != 503 && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
        readiness = HTTPProbe.get(cluster.node(leader).httpAddress, "/readyz")
      }
      #expect(readiness?.status == 503)
      #expect(readiness?.body.contains("no leader known") == true)
      await client.close()
    }
  }

  @Test func aPausedLeaderIsReplacedAndStepsDownWithoutAcceptingWrites() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await MetaCluster.start(harness, count: 3)
      let client = cluster.client()
      try await cluster.registerBrokers(client, count: 1)
      let oldLeader = try await cluster.waitForLeader()
      let oldTerm = cluster.metric(oldLeader, "raft_term") ?? 0
      let others = [1, 2, 3].filter { $0 != oldLeader }

      cluster.signal(oldLeader, SIGSTOP)
      let newLeader = try await cluster.waitForLeader(among: others)
      let othersClient = cluster.client(others)
      _ = try await othersClient.createTopic("while-paused", partitions: 1, replicationFactor: 1)

      cluster.signal(oldLeader, SIGCONT)
      // Straight to the old leader, without following hints: it must not accept the write.
      let socket = try RawSocket(
        host: "127.0.0.1", port: cluster.node(oldLeader).apiPort, receiveTimeoutMs: 10_000)
      let request = MetaCreateTopicsRequest(topics: [
        .init(name: "stale-leader-write", partitions: 1, replicationFactor: 1, configs: [:])
      ])
      socket.write(
        MetaMessage.encodeRequestFrame(
          request,
          header: RequestHeader(
            apiKey: MetaApiKey.createTopics, apiVersion: 0, correlationId: 7, clientId: "test")))
      guard case .frame(let payload) = socket.readFrame() else {
        Issue.record("no answer from the resumed old leader")
        return
      }
      let (header, reply) = try MetaMessage.decodeReply(
        to: MetaCreateTopicsRequest.self, version: 0, payload: payload)
      if case .success = reply {
        Issue.record("the resumed old leader accepted a write")
      }
      #expect(header.errorCode != .none)

      // It steps down into the new term and follows the new leader.
      let deadline = ContinuousClock.now + .seconds(10)
      while ContinuousClock.now < deadline
        && !(cluster.metric(oldLeader, "is_leader") == 0
          && (cluster.metric(oldLeader, "raft_term") ?? 0) > oldTerm)
      {
        try await Task.sleep(for: .milliseconds(20))
      }
      #expect(cluster.metric(oldLeader, "is_leader") == 0)
      #expect((cluster.metric(oldLeader, "raft_term") ?? 0) > oldTerm)
      #expect(try await cluster.waitForLeader() == newLeader)
      try await cluster.waitUntilReady([oldLeader])
      let names = try await Self.topicNames(cluster, on: oldLeader)
      #expect(names.contains("while-paused"))
      if header.errorCode == .notLeader {
        #expect(!names.contains("stale-leader-write"))
      }
      await client.close()
      await othersClient.close()
    }
  }

  @Test func aFollowerThatStopsHearingTheLeaderDoesNotDisruptIt() async throws {
    try await ProcessHarness.run { harness in
      // A longer election timeout than the other tests: the leader must hear the one healthy
      // follower within it (CheckQuorum) even on a loaded 2-core machine, while the isolated
      // follower still times out and tries to campaign during the 3 s below.
      let cluster = try await MetaCluster.start(
        harness, count: 3, extraArguments: ["--raft-election-timeout-ms", "700"])
      let client = cluster.client()
      try await cluster.registerBrokers(client, count: 1)
      let leader = try await cluster.waitForLeader()
      let term = cluster.metric(leader, "raft_term")
      let isolated = [1, 2, 3].first { $0 != leader } ?? 1
      // One-way loss: the isolated follower receives nothing from the leader, while the
      // leader still hears it. Without PreVote it would campaign and depose the leader.
      try cluster.setFaults(isolated, query: "drop-incoming-from=\(leader)")
      var written: [String] = []
      let until = ContinuousClock.now + .milliseconds(3_000)
      while ContinuousClock.now < until {
        let name = "steady-\(written.count)"
        _ = try await client.createTopic(name, partitions: 1, replicationFactor: 1)
        written.append(name)
        try await Task.sleep(for: .milliseconds(50))
      }
      // The fault is real: the isolated follower lost track of the leader.
      #expect(HTTPProbe.get(cluster.node(isolated).httpAddress, "/readyz")?.status == 503)
      #expect(cluster.metric(leader, "is_leader") == 1)
      #expect(cluster.metric(leader, "raft_term") == term, "the leader's term changed")
      #expect(cluster.leaders(among: [1, 2, 3]).map(\.id) == [leader])

      try cluster.setFaults(isolated, query: "")
      try await cluster.waitUntilReady([isolated], timeoutMs: 10_000)
      #expect(Set(written).isSubset(of: try await Self.topicNames(cluster, on: isolated)))
      await client.close()
    }
  }

  @Test func sigtermOnTheLeaderHandsLeadershipOverBeforeExiting() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await MetaCluster.start(
        harness, count: 3, extraArguments: ["--raft-election-timeout-ms", "2000"])
      let client = cluster.client()
      try await cluster.registerBrokers(client, count: 1)
      let leader = try await cluster.waitForLeader()
      let exit = try await cluster.terminate(leader)
      #expect(exit == .exited(code: 0))
      let log = cluster.process(leader)?.stderrText() ?? ""
      #expect(log.contains("leadership transferred"))
      // With a 2 s election timeout, only a hand-off explains a write this fast.
      let start = ContinuousClock.now
      _ = try await client.createTopic("after-handoff", partitions: 1, replicationFactor: 1)
      #expect(ContinuousClock.now - start < .milliseconds(1_500))
      await client.close()
    }
  }
}
