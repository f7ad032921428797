import Foundation
import StreamBusBroker
import StreamBusProtocol
import Testing

@Suite struct TopicAdminTests {
  @Test func createListDescribeAndDeleteTopics() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()

    let created = try await client.createTopic(
      "orders", partitions: 3,
      configs: [
        .init(key: "retention.ms", value: "60000"), .init(key: "segment.bytes", value: "4096"),
      ])
    #expect(created.errorCode == .none)
    #expect(created.numPartitions == 3)
    #expect(created.replicationFactor == 1)
    #expect(try await client.createTopic("audit-log.v1", partitions: -1).numPartitions == 1)

    let all = try await client.metadata(nil)
    #expect(all.topics.map(\.name) == ["audit-log.v1", "orders"])
    #expect(all.brokers.count == 1)
    #expect(all.brokers.first?.port == Int32(broker.address.port))
    #expect(all.controllerId == 0)
    let orders = try #require(all.topics.first { $0.name == "orders" })
    #expect(orders.partitions.map(\.partition) == [0, 1, 2])
    for partition in orders.partitions {
      #expect(partition.leaderId == 0)
      #expect(partition.leaderEpoch == 0)
      #expect(partition.replicas == [0])
      #expect(partition.isr == [0])
    }
    #expect(
      orders.configs == [
        .init(key: "retention.ms", value: "60000"), .init(key: "segment.bytes", value: "4096"),
      ])
    for partition in 0..<3 {
      #expect(FileManager.default.fileExists(atPath: "\(directory.path)/orders-\(partition)"))
    }
    #expect(FileManager.default.fileExists(atPath: "\(directory.path)/topics/orders"))

    let again = try await client.createTopic("orders")
    #expect(again.errorCode == .topicAlreadyExists)

    let deleted = try await client.deleteTopic("orders")
    #expect(deleted.errorCode == .none)
    #expect(try await client.metadata(nil).topics.map(\.name) == ["audit-log.v1"])
    let missing = try await client.metadata(["orders"])
    #expect(missing.topics.first?.errorCode == .unknownTopicOrPartition)
    #expect(!FileManager.default.fileExists(atPath: "\(directory.path)/orders-0"))
    #expect(!FileManager.default.fileExists(atPath: "\(directory.path)/topics/orders"))
    #expect(try await client.deleteTopic("orders").errorCode == .unknownTopicOrPartition)
    let produce = try await client.produce(topic: "orders", records: makeBatch())
    #expect(produce.errorCode == .unknownTopicOrPartition)

    await client.close()
    try await broker.stop()
  }

  @Test func invalidTopicNamesAreRefused() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    for name in [
      "", ".", "..", "has space", "slash/name", "ümlaut", String(repeating: "x", count: 250),
    ] {
      let result = try await client.createTopic(name)
      #expect(result.errorCode == .invalidTopic, "name \(name)")
      #expect(result.errorMessage?.isEmpty == false)
    }
    #expect(try await client.createTopic(String(repeating: "x", count: 249)).errorCode == .none)
    #expect(try await client.createTopic("a.b_c-D9").errorCode == .none)
    await client.close()
    try await broker.stop()
  }

  @Test func invalidPartitionsReplicationAndConfigsAreRefused() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path) {
      $0.partitionsPerTopicMax = 8
    }
    let client = try await broker.connect()
    #expect(try await client.createTopic("t", partitions: 0).errorCode == .invalidPartitions)
    #expect(try await client.createTopic("t", partitions: 9).errorCode == .invalidPartitions)
    #expect(try await client.createTopic("t", partitions: -2).errorCode == .invalidPartitions)
    let replication = try await client.createTopic("t", replicationFactor: 3)
    #expect(replication.errorCode == .invalidReplicationFactor)
    #expect(replication.errorMessage?.contains("standalone") == true)
    #expect(
      try await client.createTopic("t", replicationFactor: 0).errorCode == .invalidReplicationFactor
    )

    let badConfigs: [CreateTopicsRequest.Config] = [
      .init(key: "retention.ms", value: "soon"),
      .init(key: "retention.ms", value: "-5"),
      .init(key: "retention.bytes", value: "1e9"),
      .init(key: "segment.bytes", value: "10"),
      .init(key: "segment.ms", value: "0"),
      .init(key: "min.insync.replicas", value: "0"),
      .init(key: "cleanup.policy", value: "compact"),
      .init(key: "compression.type", value: "zstd"),
    ]
    for config in badConfigs {
      let result = try await client.createTopic("t", configs: [config])
      #expect(result.errorCode == .invalidConfig, "config \(config.key)=\(config.value ?? "nil")")
      #expect(result.errorMessage?.contains(config.key) == true)
    }
    let twice = try await client.createTopic(
      "t",
      configs: [.init(key: "retention.ms", value: "1"), .init(key: "retention.ms", value: "2")])
    #expect(twice.errorCode == .invalidConfig)
    #expect(try await client.metadata(nil).topics.isEmpty)

    let good = try await client.createTopic(
      "t",
      configs: [
        .init(key: "retention.ms", value: "-1"), .init(key: "retention.bytes", value: "1048576"),
        .init(key: "segment.ms", value: "1000"), .init(key: "min.insync.replicas", value: "1"),
        .init(key: "cleanup.policy", value: "delete"), .init(key: "segment.bytes", value: nil),
      ])
    #expect(good.errorCode == .none)
    await client.close()
    try await broker.stop()
  }

  @Test func validateOnlyAndDuplicateNamesInOneRequest() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    let checked = try await client.createTopic("dry", partitions: 2, validateOnly: true)
    #expect(checked.errorCode == .none)
    #expect(checked.numPartitions == 2)
    #expect(try await client.metadata(nil).topics.isEmpty)
    #expect(!FileManager.default.fileExists(atPath: "\(directory.path)/dry-0"))

    let (_, response) = try await client.send(
      .createTopics(
        CreateTopicsRequest(
          topics: [
            .init(name: "twin", numPartitions: 1, replicationFactor: 1, configs: []),
            .init(name: "twin", numPartitions: 1, replicationFactor: 1, configs: []),
            .init(name: "single", numPartitions: 1, replicationFactor: 1, configs: []),
          ], timeoutMs: 1000)))
    guard case .createTopics(let body)? = response else {
      Issue.record("unexpected response")
      return
    }
    #expect(body.topics.map(\.errorCode) == [.invalidRequest, .invalidRequest, .none])
    #expect(try await client.metadata(nil).topics.map(\.name) == ["single"])
    await client.close()
    try await broker.stop()
  }

  @Test func minInsyncReplicasAboveOneRefusesAcksAll() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic(
      "strict", configs: [.init(key: "min.insync.replicas", value: "2")])
    let all = try await client.produce(topic: "strict", records: makeBatch(), acks: -1)
    #expect(all.errorCode == .notEnoughReplicas)
    let one = try await client.produce(topic: "strict", records: makeBatch(), acks: 1)
    #expect(one.errorCode == .none)
    await client.close()
    try await broker.stop()
  }

  @Test func secondBrokerCannotUseTheSameDataDirectory() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    await #expect(throws: BrokerError.self) {
      _ = try await TestBroker.start(dataDirectory: directory.path)
    }
    try await broker.stop()
    let again = try await TestBroker.start(dataDirectory: directory.path)
    try await again.stop()
  }

  @Test func orphanPartitionDirectoriesAreRemovedOnStart() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("kept", partitions: 1)
    await client.close()
    try await broker.stop()
    // What an interrupted create leaves: a partition directory without a topic file.
    try FileManager.default.createDirectory(
      atPath: "\(directory.path)/ghost-0", withIntermediateDirectories: true)
    try Data("x".utf8).write(to: URL(fileURLWithPath: "\(directory.path)/ghost-0/junk"))
    try FileManager.default.createDirectory(
      atPath: "\(directory.path)/not a partition", withIntermediateDirectories: true)

    let restarted = try await TestBroker.start(dataDirectory: directory.path)
    #expect(!FileManager.default.fileExists(atPath: "\(directory.path)/ghost-0"))
    #expect(FileManager.default.fileExists(atPath: "\(directory.path)/kept-0"))
    #expect(FileManager.default.fileExists(atPath: "\(directory.path)/not a partition"))
    try await restarted.stop()
  }
}

@Suite struct TopicConfigTests {
  @Test func topicNameRules() {
    #expect(throws: Never.self) { try TopicName.validate("a") }
    #expect(throws: Never.self) { try TopicName.validate("A.b-c_9") }
    for bad in ["", ".", "..", "a b", "a/b", "a:b", "é", String(repeating: "a", count: 250)] {
      #expect(throws: BrokerRequestError.self) { try TopicName.validate(bad) }
    }
  }

  @Test func overridesAndEffectiveValues() throws {
    var defaults = TopicDefaults()
    defaults.retentionMs = 1000
    let config = try TopicConfig(
      [("segment.bytes", "2048"), ("retention.ms", "-1"), ("retention.bytes", nil)],
      defaults: defaults)
    #expect(config.overrides.map(\.key) == ["retention.ms", "segment.bytes"])
    #expect(config.retentionMs == nil)
    #expect(config.segmentBytes == 2048)
    #expect(config.retentionBytes == defaults.retentionBytes)
    let plain = try TopicConfig([], defaults: defaults)
    #expect(plain.retentionMs == 1000)
    #expect(plain.overrides.isEmpty)
  }
}
