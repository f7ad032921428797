import StreamBusProtocol
import Testing

@testable import StreamBusClient

@Suite(.timeLimit(.minutes(1))) struct AdminTests {
  @Test func createListDescribeDelete() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      let admin = Admin(config: harness.clientConfig())
      let created = try await admin.createTopic("orders", partitions: 3, configs: ["a": "b"])
      #expect(created.partitions == 3)
      let create = harness.cluster.requests(.createTopics).compactMap {
        request -> CreateTopicsRequest? in
        if case .createTopics(let body) = request { return body }
        return nil
      }
      #expect(create.first?.topics.first?.configs == [.init(key: "a", value: "b")])
      #expect(create.first?.topics.first?.replicationFactor == -1)
      #expect(
        try await admin.listTopics() == [
          TopicListing(name: "orders", partitionCount: 3, replicationFactor: 1)
        ])

      let producer = Producer(config: harness.clientConfig())
      for _ in 0..<4 {
        _ = try await producer.enqueue(topic: "orders", value: [1], partition: 1)
      }
      await producer.close()
      let description = try await admin.describeTopic("orders")
      #expect(description.partitions.map(\.partition) == [0, 1, 2])
      #expect(description.partitions.map(\.leaderId) == [1, 2, 1])
      #expect(description.partitions[1].highWatermark == 4)
      #expect(description.partitions[1].logStartOffset == 0)
      #expect(description.partitions[0].highWatermark == 0)
      #expect(description.partitions[1].isr == [2])
      #expect(description.partitions.allSatisfy { $0.errorCode == .none })
      #expect(description.configs["retention.ms"] == "1000")

      try await admin.deleteTopic("orders")
      #expect(try await admin.listTopics().isEmpty)
      await admin.close()
    }
  }

  @Test func brokerErrorsMapToStreamBusErrors() async throws {
    try await withFakeCluster { harness in
      let admin = Admin(config: harness.clientConfig())
      try await admin.createTopic("dup", partitions: 1)
      let exists = try await #require(throws: StreamBusError.self) {
        try await admin.createTopic("dup", partitions: 1)
      }
      #expect(exists.errorCode == .topicAlreadyExists)
      #expect(exists.kind == .broker)
      #expect(exists.topic == "dup")
      #expect(exists.message.contains("already exists"))

      let badPartitions = try await #require(throws: StreamBusError.self) {
        try await admin.createTopic("zero", partitions: 0)
      }
      #expect(badPartitions.errorCode == .invalidPartitions)

      let badFactor = try await #require(throws: StreamBusError.self) {
        try await admin.createTopic("wide", partitions: 1, replicationFactor: 3)
      }
      #expect(badFactor.errorCode == .invalidReplicationFactor)

      let missing = try await #require(throws: StreamBusError.self) {
        try await admin.deleteTopic("nope")
      }
      #expect(missing.errorCode == .unknownTopicOrPartition)
      #expect(missing.topic == "nope")

      let describeMissing = try await #require(throws: StreamBusError.self) {
        try await admin.describeTopic("nope")
      }
      #expect(describeMissing.errorCode == .unknownTopicOrPartition)
      #expect("\(describeMissing)".contains("UNKNOWN_TOPIC_OR_PARTITION"))
      await admin.close()
    }
  }

  @Test func unreachableClusterIsAConnectionError() async throws {
    // A port from a server that has stopped: nothing listens there any more.
    let harness = try await FakeClusterHarness.start()
    let config = harness.clientConfig()
    await harness.stop()
    var quick = config
    quick.retries = 1
    let admin = Admin(config: quick)
    let error = try await #require(throws: StreamBusError.self) {
      try await admin.listTopics()
    }
    #expect(error.kind == .connection)
    #expect(error.isRetriable)
    #expect(error.message.contains("cannot fetch metadata"))
    await admin.close()
  }
}
