import StreamBusProtocol
import Testing

@testable import StreamBusMetadata

@Suite struct TopicControllerTests {
  private func cluster(_ brokers: [BrokerID] = [1, 2, 3]) throws -> ClusterFixture {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers(brokers)
    return fixture
  }

  private func create(
    _ fixture: ClusterFixture, _ topic: CreatableTopic, validateOnly: Bool = false
  ) -> ControllerResult<[CreateTopicResult]> {
    fixture.controller.createTopics([topic], validateOnly: validateOnly, image: fixture.image)
  }

  @Test func createTopicProposesTopicConfigsAndPartitionsInOneBatch() throws {
    var fixture = try cluster()
    let result = create(
      fixture,
      CreatableTopic(
        name: "orders", partitions: 4, replicationFactor: 2,
        configs: ["retention.ms": "60000", "min.insync.replicas": "2"]))
    let response = result.response[0]
    #expect(response.errorCode == .none)
    #expect(response.topicID == fixture.image.nextTopicID)
    #expect(response.partitions == 4 && response.replicationFactor == 2)
    #expect(result.records.count == 1 + 2 + 4)
    #expect(result.records.first == .topicCreated(name: "orders", topicID: response.topicID))
    try fixture.commit(result.records)

    let topic = try #require(fixture.image.topic(named: "orders"))
    #expect(topic.configs == ["retention.ms": "60000", "min.insync.replicas": "2"])
    #expect(topic.partitions.count == 4)
    for partition in topic.partitions {
      #expect(partition.replicas.count == 2)
      #expect(partition.isr == partition.replicas)
      #expect(partition.leader == partition.replicas[0])
      #expect(partition.leaderEpoch == 0 && partition.partitionEpoch == 0)
    }
  }

  @Test func invalidTopicNamesAreInvalidTopic() throws {
    let fixture = try cluster()
    let names = ["", ".", "..", String(repeating: "x", count: 250), "a/b", "caf\u{E9}", "a b"]
    for name in names {
      let result = create(fixture, CreatableTopic(name: name, partitions: 1, replicationFactor: 1))
      #expect(result.response[0].errorCode == .invalidTopic, "\(name)")
      #expect(result.records.isEmpty)
    }
    let longest = String(repeating: "x", count: 249)
    #expect(
      create(fixture, CreatableTopic(name: longest, partitions: 1, replicationFactor: 1))
        .response[0].errorCode == .none)
  }

  @Test func partitionCountMustBeBetweenOneAndTheMaximum() throws {
    let fixture = try cluster()
    for partitions: Int32 in [0, -2, 10_001] {
      let result = create(
        fixture, CreatableTopic(name: "t", partitions: partitions, replicationFactor: 1))
      #expect(result.response[0].errorCode == .invalidPartitions, "\(partitions)")
      #expect(result.records.isEmpty)
    }
    let largest = create(
      fixture, CreatableTopic(name: "t", partitions: 10_000, replicationFactor: 1),
      validateOnly: true)
    #expect(largest.response[0].errorCode == .none)
  }

  @Test func replicationFactorMayNotExceedUnfencedBrokers() throws {
    var fixture = try cluster()
    _ = try fixture.advance(byMs: 1_600, silent: [3])
    let tooMany = create(fixture, CreatableTopic(name: "t", partitions: 1, replicationFactor: 3))
    #expect(tooMany.response[0].errorCode == .invalidReplicationFactor)
    #expect(tooMany.response[0].message?.contains("2 unfenced") == true)
    let zero = create(fixture, CreatableTopic(name: "t", partitions: 1, replicationFactor: 0))
    #expect(zero.response[0].errorCode == .invalidReplicationFactor)
    let fits = create(fixture, CreatableTopic(name: "t", partitions: 3, replicationFactor: 2))
    #expect(fits.response[0].errorCode == .none)
    try fixture.commit(fits.records)
    #expect(!fixture.image.allPartitions.contains { $0.replicas.contains(3) }, "fenced gets none")
  }

  @Test func topicConfigsAreValidated() throws {
    let fixture = try cluster()
    let invalid: [[String: String]] = [
      ["no.such.key": "1"],
      ["min.insync.replicas": "3"],
      ["min.insync.replicas": "0"],
      ["retention.ms": "soon"],
      ["retention.bytes": "-2"],
      ["segment.bytes": "10"],
      ["cleanup.policy": "compact"],
      ["unclean.leader.election.enable": "yes"],
      ["retention.ms": String(repeating: "9", count: 2_000)],
    ]
    for configs in invalid {
      let result = create(
        fixture,
        CreatableTopic(name: "t", partitions: 1, replicationFactor: 2, configs: configs))
      #expect(result.response[0].errorCode == .invalidConfig, "\(configs)")
      #expect(result.records.isEmpty)
    }
    let valid = create(
      fixture,
      CreatableTopic(
        name: "t", partitions: 1, replicationFactor: 2,
        configs: [
          "min.insync.replicas": "2", "retention.ms": "-1", "retention.bytes": "1000",
          "segment.bytes": "1048576", "segment.ms": "1000", "cleanup.policy": "delete",
          "unclean.leader.election.enable": "false",
        ]))
    #expect(valid.response[0].errorCode == .none)
  }

  @Test func existingTopicIsTopicAlreadyExistsAndRepeatsInARequestAreInvalid() throws {
    var fixture = try cluster()
    try fixture.createTopic("t", partitions: 1, replicationFactor: 1)
    let again = create(fixture, CreatableTopic(name: "t", partitions: 1, replicationFactor: 1))
    #expect(again.response[0].errorCode == .topicAlreadyExists)
    #expect(again.records.isEmpty)

    let repeated = fixture.controller.createTopics(
      [
        CreatableTopic(name: "u", partitions: 1, replicationFactor: 1),
        CreatableTopic(name: "v", partitions: 1, replicationFactor: 1),
        CreatableTopic(name: "u", partitions: 2, replicationFactor: 1),
      ], validateOnly: false, image: fixture.image)
    #expect(repeated.response.map(\.errorCode) == [.invalidRequest, .none, .invalidRequest])
    try fixture.commit(repeated.records)
    #expect(fixture.image.topic(named: "v") != nil && fixture.image.topic(named: "u") == nil)
  }

  @Test func validateOnlyProposesNothing() throws {
    let fixture = try cluster()
    let result = create(
      fixture, CreatableTopic(name: "t", partitions: 3, replicationFactor: 3), validateOnly: true)
    #expect(result.records.isEmpty)
    #expect(result.response[0].errorCode == .none)
    #expect(result.response[0].topicID == 0)
    #expect(result.response[0].partitions == 3)
  }

  @Test func minusOneMeansTheDefaults() throws {
    var fixture = try cluster()
    fixture.controller.limits.defaultPartitions = 5
    fixture.controller.limits.defaultReplicationFactor = 2
    let result = create(fixture, CreatableTopic(name: "t", partitions: -1, replicationFactor: -1))
    #expect(result.response[0].partitions == 5 && result.response[0].replicationFactor == 2)
    try fixture.commit(result.records)
    #expect(fixture.image.topic(named: "t")?.replicationFactor == 2)
  }

  @Test func severalTopicsInOneRequestGetDistinctIDs() throws {
    var fixture = try cluster()
    let result = fixture.controller.createTopics(
      [
        CreatableTopic(name: "a", partitions: 1, replicationFactor: 1),
        CreatableTopic(name: "b", partitions: 1, replicationFactor: 1),
      ], validateOnly: false, image: fixture.image)
    let ids = result.response.map(\.topicID)
    #expect(Set(ids).count == 2)
    try fixture.commit(result.records)
    #expect(fixture.image.topic(named: "a")?.id == ids[0])
    #expect(fixture.image.topic(named: "b")?.id == ids[1])
  }

  @Test func deletedTopicIDsAreNeverReused() throws {
    var fixture = try cluster()
    let first = try fixture.createTopic("t", partitions: 1, replicationFactor: 1).topicID
    try fixture.commit(fixture.controller.deleteTopics(["t"], image: fixture.image).records)
    let snapshotted = try MetadataImage(snapshot: fixture.image.encodeSnapshot())
    fixture.image = snapshotted
    let second = try fixture.createTopic("t", partitions: 1, replicationFactor: 1).topicID
    #expect(second > first)
  }

  @Test func deleteTopicsRemovesTopicsAndRefusesUnknownOnes() throws {
    var fixture = try cluster()
    try fixture.createTopic("a", partitions: 2, replicationFactor: 1)
    try fixture.createTopic("b", partitions: 1, replicationFactor: 1)
    let result = fixture.controller.deleteTopics(["a", "missing", "b", "b"], image: fixture.image)
    #expect(
      result.response.map(\.errorCode) == [
        .none, .unknownTopicOrPartition, .invalidRequest, .invalidRequest,
      ])
    try fixture.commit(result.records)
    #expect(fixture.image.topic(named: "a") == nil)
    #expect(fixture.image.topic(named: "b") != nil)
    #expect(fixture.image.partitionCount == 1)
  }

  @Test func alterConfigsSetsAndRemovesKeys() throws {
    var fixture = try cluster()
    try fixture.createTopic(
      "t", partitions: 1, replicationFactor: 2, configs: ["retention.ms": "5"])
    let result = fixture.controller.alterConfigs(
      topic: "t",
      changes: [
        ConfigEntryChange(key: "retention.ms", value: nil),
        ConfigEntryChange(key: "min.insync.replicas", value: "2"),
        ConfigEntryChange(key: "retention.bytes", value: nil),
      ], image: fixture.image)
    #expect(result.response.errorCode == .none)
    #expect(result.records.count == 2, "removing an unset key changes nothing")
    try fixture.commit(result.records)
    #expect(fixture.image.topic(named: "t")?.configs == ["min.insync.replicas": "2"])
  }

  @Test func alterConfigsIsAllOrNothingAndValidated() throws {
    let fixture = try {
      var fixture = try cluster()
      try fixture.createTopic("t", partitions: 1, replicationFactor: 2)
      return fixture
    }()
    let cases: [(ErrorCode, String, [ConfigEntryChange])] = [
      (.unknownTopicOrPartition, "missing", [ConfigEntryChange(key: "retention.ms", value: "1")]),
      (.invalidConfig, "t", [ConfigEntryChange(key: "min.insync.replicas", value: "3")]),
      (.invalidConfig, "t", [ConfigEntryChange(key: "bogus", value: nil)]),
      (
        .invalidConfig, "t",
        [
          ConfigEntryChange(key: "retention.ms", value: "1"),
          ConfigEntryChange(key: "retention.ms", value: "2"),
        ]
      ),
      (
        .invalidConfig, "t",
        [
          ConfigEntryChange(key: "retention.ms", value: "1"),
          ConfigEntryChange(key: "segment.bytes", value: "1"),
        ]
      ),
    ]
    for (code, topic, changes) in cases {
      let result = fixture.controller.alterConfigs(
        topic: topic, changes: changes, image: fixture.image)
      #expect(result.response.errorCode == code, "\(changes)")
      #expect(result.records.isEmpty)
      #expect(result.response.message != nil)
    }
  }

  @Test func clusterSummaryCountsUnderReplicatedAndOfflinePartitions() throws {
    var fixture = try cluster([1, 2, 3])
    try fixture.createTopic("rf3", partitions: 3, replicationFactor: 3)
    try fixture.createTopic("rf1", partitions: 3, replicationFactor: 1, placementStart: 0)
    _ = try fixture.advance(byMs: 1_600, silent: [2])
    let summary = ClusterSummary(image: fixture.image)
    #expect(summary.brokerCount == 3 && summary.fencedBrokerCount == 1)
    #expect(summary.topicCount == 2 && summary.partitionCount == 6)
    // Every rf3 partition lost broker 2 from its ISR; the rf1 partition on broker 2 is
    // offline (its ISR keeps the last member, so it is not under-replicated).
    #expect(summary.underReplicatedPartitionCount == 3)
    #expect(summary.offlinePartitionCount == 1)
  }
}
