import Foundation
import Logging
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusMetaServer
import StreamBusProtocol
import StreamBusTransport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// One in-process metaserver (a quorum of one) driven through the real API client.
struct SingleNodeServerTests {
  static func freePort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
      }
    }
    guard bound else { throw MetaServerError("no free port: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
  }

  static func withServer(
    tailBatches: Int = 4_096, _ body: (MetaServer, MetaClient) async throws -> Void
  ) async throws {
    let directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("metaserver-test-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    let raft = HostPort(host: "127.0.0.1", port: try freePort())
    var configuration = MetaServerConfiguration(
      nodeID: 1, dataDirectory: directory.path, raftListen: raft,
      apiListen: HostPort(host: "127.0.0.1", port: 0),
      httpListen: HostPort(host: "127.0.0.1", port: 0), initialCluster: [1: raft])
    configuration.tickIntervalMs = 10
    configuration.raftHeartbeatIntervalMs = 20
    configuration.raftElectionTimeoutMs = 100
    configuration.metadataTailBatchesMax = tailBatches
    configuration.brokerSessionTimeoutMs = 600_000
    let server = try await MetaServer.start(
      configuration: configuration, logger: Logger(label: "test.metaserver"))
    let running = Task { try await server.run() }
    let client = MetaClient(
      bootstrap: [server.apiAddress], requestTimeoutMs: 10_000, logger: Logger(label: "test"))
    do {
      let deadline = ContinuousClock.now + .seconds(10)
      while !server.node.readiness().isReady && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(10))
      }
      try #require(server.node.readiness().isReady)
      try await body(server, client)
    } catch {
      await client.close()
      server.shutdownGracefully()
      _ = await running.result
      throw error
    }
    await client.close()
    server.shutdownGracefully()
    try await running.value
  }

  static func register(_ client: MetaClient, _ id: Int32) async throws -> Int64 {
    let epoch = try await client.brokerRegister(
      BrokerRegisterRequest(
        brokerID: id, incarnationID: 42 + Int64(id),
        endpoints: [MetaEndpoint(name: "client", host: "127.0.0.1", port: 9_090 + id)],
        rack: nil, capacity: MetaBrokerCapacity(diskBytes: 1 << 30))
    ).brokerEpoch
    let offset = try await client.describeCluster().metadataOffset
    let heartbeat = try await client.brokerHeartbeat(
      BrokerHeartbeatRequest(
        brokerID: id, brokerEpoch: epoch, appliedMetadataOffset: offset, wantShutdown: false))
    #expect(!heartbeat.isFenced)
    #expect(heartbeat.leaderID == 1)
    return epoch
  }

  @Test func brokerAndTopicApisEndToEnd() async throws {
    try await Self.withServer { server, client in
      let epoch1 = try await Self.register(client, 1)
      let epoch2 = try await Self.register(client, 2)
      #expect(epoch2 > epoch1)

      // Stale broker epochs are refused with the specific code.
      await #expect {
        _ = try await client.allocateProducerIds(brokerID: 1, brokerEpoch: epoch1 + 100)
      } throws: { ($0 as? MetaClientError)?.errorCode == .staleBrokerEpoch }
      let block1 = try await client.allocateProducerIds(brokerID: 1, brokerEpoch: epoch1)
      let block2 = try await client.allocateProducerIds(brokerID: 2, brokerEpoch: epoch2)
      #expect(block1.count > 0)
      #expect(block2.firstProducerID >= block1.firstProducerID + Int64(block1.count))

      let created = try await client.createTopic("payments", partitions: 4, replicationFactor: 2)
      #expect(created.errorCode == .none)
      let validated = try await client.createTopics(
        [.init(name: "dry", partitions: 1, replicationFactor: 1, configs: [:])],
        validateOnly: true)
      #expect(validated.first?.errorCode == ErrorCode.none)
      #expect(try await client.listTopics().map(\.name) == ["payments"])

      try await client.alterConfigs(
        topic: "payments", changes: [.init(key: "retention.ms", value: "1000")])
      #expect(try await client.describeTopic("payments").configs["retention.ms"] == "1000")
      await #expect {
        try await client.alterConfigs(
          topic: "payments", changes: [.init(key: "retention.ms", value: "soon")])
      } throws: { ($0 as? MetaClientError)?.errorCode == .invalidConfig }

      // AlterPartition from the leader with a stale partition epoch.
      let partition = try #require(try await client.describeTopic("payments").partitions.first)
      let alter = try await client.alterPartition(
        AlterPartitionRequest(
          brokerID: partition.leader, brokerEpoch: partition.leader == 1 ? epoch1 : epoch2,
          partitions: [
            .init(
              topicID: partition.topicID, partition: partition.partition,
              leaderEpoch: partition.leaderEpoch, partitionEpoch: partition.partitionEpoch + 5,
              newIsr: [partition.leader])
          ]))
      #expect(alter.partitions.first?.errorCode == .invalidUpdateVersion)

      await #expect {
        _ = try await client.describeTopic("absent")
      } throws: { ($0 as? MetaClientError)?.errorCode == .unknownTopicOrPartition }

      let elected = try await client.electPreferredLeaders()
      #expect(elected.count == 4)

      try await client.deleteTopic("payments")
      #expect(try await client.listTopics().isEmpty)

      let quorum = try await client.quorumStatus()
      #expect(quorum.leaderID == 1)
      #expect(quorum.voters.map(\.nodeID) == [1])
      #expect(quorum.appliedIndex >= quorum.commitIndex - 1)

      let summary = try await client.describeCluster()
      #expect(summary.brokers.map(\.brokerID) == [1, 2])
      #expect(summary.topicCount == 0)
      _ = server
    }
  }

  @Test func fetchMetadataLongPollsAndFallsBackToTheSnapshot() async throws {
    try await Self.withServer(tailBatches: 2) { _, client in
      _ = try await Self.register(client, 1)
      for index in 0..<4 {
        _ = try await client.createTopic("t\(index)", partitions: 1, replicationFactor: 1)
      }
      let old = try await client.fetchMetadata(fromOffset: 0, maxWaitMs: 0)
      guard case .snapshot(let offset, let data) = old.content else {
        Issue.record("offset 0 is older than a two-batch tail: expected the snapshot")
        return
      }
      #expect(offset == old.committedOffset)
      #expect(!data.isEmpty)

      let recent = try await client.fetchMetadata(fromOffset: offset - 1, maxWaitMs: 0)
      guard case .entries(let entries) = recent.content else {
        Issue.record("expected the newest batch")
        return
      }
      #expect(entries.map(\.offset) == [offset])

      let start = ContinuousClock.now
      let empty = try await client.fetchMetadata(fromOffset: offset, maxWaitMs: 200)
      #expect(ContinuousClock.now - start >= .milliseconds(180))
      if case .entries(let none) = empty.content {
        #expect(none.isEmpty)
      } else {
        Issue.record("expected an empty answer after the wait")
      }
    }
  }

  @Test func quorumChangesAreRefusedWithClearErrors() async throws {
    try await Self.withServer { _, client in
      await #expect {
        try await client.addVoter(nodeID: 7)
      } throws: { error in
        guard let error = error as? MetaClientError else { return false }
        return error.errorCode != nil && !error.message.isEmpty
      }
      await #expect {
        try await client.addLearner(nodeID: 0, raftAddress: "127.0.0.1:1", apiAddress: "")
      } throws: { ($0 as? MetaClientError)?.errorCode == .invalidRequest }
      await #expect {
        try await client.addLearner(nodeID: 5, raftAddress: "not an address", apiAddress: "")
      } throws: { ($0 as? MetaClientError)?.errorCode == .invalidRequest }
    }
  }
}
