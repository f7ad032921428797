import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusTransport
import Testing

private func client(
  _ bootstrap: [HostPort], requestTimeoutMs: Int64 = 5_000, attemptTimeoutMs: Int64 = 1_000
) -> MetaClient {
  var configuration = MetaClientConfiguration(
    bootstrap: bootstrap, requestTimeoutMs: requestTimeoutMs)
  configuration.attemptTimeoutMs = attemptTimeoutMs
  configuration.clientID = "meta-client-test"
  return MetaClient(configuration: configuration, logger: quietLogger)
}

private func metaError(_ body: () async throws -> Void) async -> MetaClientError? {
  do {
    try await body()
    return nil
  } catch let error as MetaClientError {
    return error
  } catch {
    Issue.record("expected a MetaClientError, got \(error)")
    return nil
  }
}

@Suite struct MetaClientTests {
  @Test func followsTheNotLeaderHintToTheLeader() async throws {
    let quorum = try await FakeQuorum.start(nodes: 3, leaderID: 3)
    let metaClient = client([quorum.address(1)])
    let created = try await metaClient.createTopic("orders", partitions: 4, replicationFactor: 3)
    #expect(created.topicID == 100)
    #expect(created.partitions == 4)
    #expect(
      quorum.received == [
        .init(nodeID: 1, apiKey: MetaApiKey.createTopics),
        .init(nodeID: 3, apiKey: MetaApiKey.createTopics),
      ])
    #expect(await metaClient.knownLeader == quorum.address(3))
    // The leader is remembered: the next request goes straight to it.
    _ = try await metaClient.listTopics()
    #expect(quorum.received.last == .init(nodeID: 3, apiKey: MetaApiKey.listTopics))
    #expect(quorum.received.count == 3)
    await metaClient.close()
    await quorum.stop()
  }

  @Test func followsTheLeaderWhenItMoves() async throws {
    let quorum = try await FakeQuorum.start(nodes: 3, leaderID: 1)
    let metaClient = client([quorum.address(1), quorum.address(2), quorum.address(3)])
    _ = try await metaClient.quorumStatus()
    quorum.withState { $0.leaderID = 2 }
    let status = try await metaClient.quorumStatus()
    #expect(status.leaderID == 2)
    #expect(status.voters.map(\.nodeID) == [1, 2, 3])
    #expect(quorum.received.map(\.nodeID) == [1, 1, 2])
    await metaClient.close()
    await quorum.stop()
  }

  @Test func skipsAnUnreachableMetaserver() async throws {
    let quorum = try await FakeQuorum.start(nodes: 1, leaderID: 1)
    let dead = try await FakeQuorum.refusingAddress()
    let metaClient = client([dead, quorum.address(1)])
    let topics = try await metaClient.createTopics([
      .init(name: "a", partitions: 1, replicationFactor: 1),
      .init(name: "b", partitions: 2, replicationFactor: 1),
    ])
    #expect(topics.map(\.errorCode) == [.none, .none])
    #expect(await metaClient.knownLeader == quorum.address(1))
    await metaClient.close()
    await quorum.stop()
  }

  @Test func waitsForAnElectionWhileNoLeaderIsKnown() async throws {
    let quorum = try await FakeQuorum.start(nodes: 3, leaderID: nil)
    let metaClient = client([quorum.address(1), quorum.address(2), quorum.address(3)])
    let electLater = Task {
      try await Task.sleep(for: .milliseconds(300))
      quorum.withState { $0.leaderID = 2 }
    }
    let clock = ContinuousClock()
    let start = clock.now
    _ = try await metaClient.listTopics()
    let elapsed = clock.now - start
    try await electLater.value
    #expect(elapsed >= .milliseconds(250))
    #expect(elapsed < .milliseconds(2_000))
    #expect(quorum.received.last == .init(nodeID: 2, apiKey: MetaApiKey.listTopics))
    // Every node was asked while there was no leader, with pauses between rounds (not a
    // busy loop: at most a few dozen tries in 300 ms).
    let nodesAsked = Set(quorum.received.map(\.nodeID))
    #expect(nodesAsked == [1, 2, 3])
    #expect(quorum.received.count < 60)
    await metaClient.close()
    await quorum.stop()
  }

  @Test func refusedConnectionsEndInATimeoutNamingTheLastError() async throws {
    let dead = try await FakeQuorum.refusingAddress()
    let metaClient = client([dead], requestTimeoutMs: 400)
    let clock = ContinuousClock()
    let start = clock.now
    let error = await metaError { _ = try await metaClient.quorumStatus() }
    let elapsed = clock.now - start
    #expect(error?.code == .timeout)
    #expect(error?.errorCode == nil)
    let text = error.map { "\($0)" } ?? ""
    #expect(text.contains("no metaserver answered QuorumStatus within 400 ms"), "\(text)")
    #expect(text.contains("metaservers \(dead)"), "\(text)")
    #expect(
      text.contains("last error: \(dead): connectionFailed: cannot connect to \(dead)"), "\(text)")
    #expect(elapsed >= .milliseconds(400))
    #expect(elapsed < .milliseconds(1_500))
    await metaClient.close()
  }

  @Test func aSilentMetaserverIsLeftAfterOneTry() async throws {
    let quorum = try await FakeQuorum.start(nodes: 2, leaderID: 2)
    quorum.withState { $0.behaviours[1] = .silent }
    let metaClient = client(
      [quorum.address(1), quorum.address(2)], requestTimeoutMs: 3_000, attemptTimeoutMs: 200)
    let clock = ContinuousClock()
    let start = clock.now
    _ = try await metaClient.listTopics()
    let elapsed = clock.now - start
    #expect(elapsed >= .milliseconds(200))
    #expect(elapsed < .milliseconds(1_500))
    #expect(quorum.received.map(\.nodeID) == [1, 2])
    await metaClient.close()
    await quorum.stop()
  }

  @Test func aSilentQuorumTimesOutWithTheNoResponseError() async throws {
    let quorum = try await FakeQuorum.start(nodes: 1, leaderID: 1)
    quorum.withState { $0.behaviours[1] = .silent }
    let metaClient = client([quorum.address(1)], requestTimeoutMs: 300, attemptTimeoutMs: 1_000)
    let error = await metaError { _ = try await metaClient.describeCluster() }
    #expect(error?.code == .timeout)
    #expect(error?.lastError?.contains("requestTimedOut") == true, "\(String(describing: error))")
    await metaClient.close()
    await quorum.stop()
  }

  @Test func serverErrorsSurfaceWithCodeAndMessage() async throws {
    let quorum = try await FakeQuorum.start(nodes: 2, leaderID: 2)
    let metaClient = client([quorum.address(1)])
    _ = try await metaClient.createTopic("orders", partitions: 1)
    let duplicate = await metaError {
      _ = try await metaClient.createTopic("orders", partitions: 1)
    }
    #expect(duplicate?.code == .server)
    #expect(duplicate?.errorCode == .topicAlreadyExists)
    #expect(duplicate?.subject == "orders")
    #expect(
      duplicate.map { "\($0)" }
        == "TOPIC_ALREADY_EXISTS (36) for orders: Topic 'orders' already exists.")
    quorum.withState { $0.leaderErrors = [.reconfigurationInProgress] }
    let busy = await metaError { try await metaClient.addVoter(nodeID: 4) }
    #expect(busy?.errorCode == .reconfigurationInProgress)
    #expect(busy?.message == "injected RECONFIGURATION_IN_PROGRESS")
    // Header errors are not retried: exactly one more request reached the leader.
    #expect(quorum.received.filter { $0.apiKey == MetaApiKey.addVoter }.count == 1)
    try await metaClient.addVoter(nodeID: 4)
    await metaClient.close()
    await quorum.stop()
  }

  @Test func undecodableAnswersAreProtocolViolations() async throws {
    let quorum = try await FakeQuorum.start(nodes: 1, leaderID: 1)
    quorum.withState { $0.behaviours[1] = .garbage }
    let metaClient = client([quorum.address(1)])
    let error = await metaError { _ = try await metaClient.listTopics() }
    #expect(error?.code == .protocolViolation)
    #expect(error?.message.contains("ListTopics") == true)
    await metaClient.close()
    await quorum.stop()
  }

  @Test func transferLeadershipForgetsTheOldLeader() async throws {
    let quorum = try await FakeQuorum.start(nodes: 3, leaderID: 1)
    let metaClient = client([quorum.address(1), quorum.address(2), quorum.address(3)])
    let newLeader = try await metaClient.transferLeadership(to: 3)
    #expect(newLeader == 3)
    #expect(await metaClient.knownLeader == nil)
    _ = try await metaClient.listTopics()
    #expect(await metaClient.knownLeader == quorum.address(3))
    await metaClient.close()
    await quorum.stop()
  }

  @Test func closedClientsRefuseRequests() async throws {
    let quorum = try await FakeQuorum.start(nodes: 1, leaderID: 1)
    let metaClient = client([quorum.address(1)])
    await metaClient.close()
    let error = await metaError { _ = try await metaClient.listTopics() }
    #expect(error?.code == .closed)
    await quorum.stop()
  }

  @Test func anEmptyBootstrapListIsAnInvalidArgument() async {
    let metaClient = client([])
    let error = await metaError { _ = try await metaClient.listTopics() }
    #expect(error?.code == .invalidArgument)
    await metaClient.close()
  }
}
