import StreamBusProtocol
import Testing

@testable import StreamBusMetadata

@Suite struct MetadataImageTests {
  // MARK: - Replay rules

  @Test func replayBuildsTopicsPartitionsAndNameIndex() throws {
    var image = MetadataImage()
    try image.apply(
      [
        .topicCreated(name: "orders", topicID: 1),
        .partitionCreated(
          PartitionRegistration(
            topicID: 1, partition: 0, replicas: [1, 2], isr: [1, 2], leader: 1)),
        .configChanged(resource: .topic(1), key: "retention.ms", value: "1000"),
      ], offset: 5)
    #expect(image.offset == 5)
    #expect(image.topic(named: "orders")?.partitions.count == 1)
    #expect(image.topic(named: "orders")?.configs == ["retention.ms": "1000"])
    #expect(image.nextTopicID == 2)
    #expect(image.partition(TopicPartition(topicID: 1, partition: 0))?.leader == 1)
    try image.apply([.topicDeleted(topicID: 1)], offset: 6)
    #expect(image.topics.isEmpty && image.topicIDsByName.isEmpty)
    #expect(image.nextTopicID == 2, "topic ids are never reused")
  }

  @Test func partitionOfAnUnknownTopicThrowsAndLeavesTheImageUnchanged() throws {
    var image = MetadataImage()
    try image.apply([.topicCreated(name: "a", topicID: 1)], offset: 1)
    let before = image
    let error = #expect(throws: MetadataError.self) {
      try image.apply(
        [
          .topicCreated(name: "b", topicID: 2),
          .partitionCreated(
            PartitionRegistration(topicID: 9, partition: 0, replicas: [1], isr: [1], leader: 1)),
        ], offset: 2)
    }
    #expect(error?.code == .invalidReplay)
    #expect(error?.message.contains("record 1") == true)
    #expect(image == before, "a failing batch is not applied in part")
  }

  @Test func nonsensicalRecordsThrowInsteadOfTrapping() throws {
    var base = MetadataImage()
    try base.apply(
      [
        .brokerRegistered(
          BrokerRegistrationRecord(
            brokerID: 1, incarnationID: 1, brokerEpoch: 5,
            endpoints: ClusterFixture.endpoints(1), rack: nil,
            capacity: BrokerCapacity(diskBytes: 0))),
        .topicCreated(name: "t", topicID: 3),
        .partitionCreated(
          PartitionRegistration(
            topicID: 3, partition: 0, replicas: [1, 2], isr: [1], leader: 1, leaderEpoch: 4,
            partitionEpoch: 4)),
      ], offset: 1)
    let bad: [(String, MetadataRecord)] = [
      ("fence unknown broker", .brokerFenced(brokerID: 9, brokerEpoch: 1)),
      ("fence with stale epoch", .brokerFenced(brokerID: 1, brokerEpoch: 4)),
      (
        "register with a non-increasing epoch",
        .brokerRegistered(
          BrokerRegistrationRecord(
            brokerID: 1, incarnationID: 2, brokerEpoch: 5, endpoints: [], rack: nil,
            capacity: BrokerCapacity(diskBytes: 0)))
      ),
      ("duplicate topic name", .topicCreated(name: "t", topicID: 4)),
      ("reused topic id", .topicCreated(name: "u", topicID: 3)),
      ("invalid topic name", .topicCreated(name: "a/b", topicID: 4)),
      ("delete unknown topic", .topicDeleted(topicID: 77)),
      (
        "partition out of order",
        .partitionCreated(
          PartitionRegistration(topicID: 3, partition: 5, replicas: [1], isr: [1], leader: 1))
      ),
      (
        "leader outside the ISR",
        .partitionCreated(
          PartitionRegistration(topicID: 3, partition: 1, replicas: [1, 2], isr: [1], leader: 2))
      ),
      (
        "duplicate replicas",
        .partitionCreated(
          PartitionRegistration(topicID: 3, partition: 1, replicas: [1, 1], isr: [1], leader: 1))
      ),
      (
        "change of unknown partition",
        .partitionChanged(PartitionChange(topicID: 3, partition: 1, partitionEpoch: 9))
      ),
      (
        "partition epoch not increasing",
        .partitionChanged(PartitionChange(topicID: 3, partition: 0, partitionEpoch: 4))
      ),
      (
        "leader change without a leader epoch",
        .partitionChanged(
          PartitionChange(topicID: 3, partition: 0, partitionEpoch: 5, leader: 2, isr: [2]))
      ),
      (
        "leader epoch not increasing",
        .partitionChanged(
          PartitionChange(
            topicID: 3, partition: 0, partitionEpoch: 5, leader: 2, leaderEpoch: 4, isr: [2]))
      ),
      (
        "ISR outside the replicas",
        .partitionChanged(
          PartitionChange(topicID: 3, partition: 0, partitionEpoch: 5, isr: [1, 7]))
      ),
      (
        "exhausted partition epoch",
        .partitionChanged(PartitionChange(topicID: 3, partition: 0, partitionEpoch: .max))
      ),
      ("config of unknown topic", .configChanged(resource: .topic(8), key: "k", value: "v")),
      (
        "producer ids going backwards",
        .producerIdsAllocated(brokerID: 1, firstID: -5, count: 10)
      ),
      (
        "producer ids past the maximum",
        .producerIdsAllocated(brokerID: 1, firstID: .max, count: 10)
      ),
      ("allocator past the maximum", .nextIDs(topicID: .max, brokerEpoch: 1, producerID: 1)),
    ]
    for (name, record) in bad {
      var image = base
      let error = #expect(throws: MetadataError.self, "\(name)") {
        try image.apply([record], offset: 2)
      }
      #expect(error?.code == .invalidReplay, "\(name)")
      #expect(image == base, "\(name)")
    }
  }

  @Test func encodedBatchAppliesLikeItsRecords() throws {
    let fixture = try randomCluster(seed: 21, steps: 40)
    let records = fixture.image.records()
    var image = MetadataImage()
    try image.apply(encodedBatch: MetadataRecord.encodeBatch(records), offset: 9)
    #expect(try image == MetadataImage(records: records, offset: 9))
    let error = #expect(throws: MetadataError.self) {
      try image.apply(encodedBatch: [0, 0, 0, 1], offset: 10)
    }
    #expect(error?.code == .truncated)
    #expect(image.offset == 9)
  }

  @Test func batchOffsetMustIncrease() throws {
    var image = MetadataImage()
    try image.apply([], offset: 3)
    #expect(image.offset == 3)
    let error = #expect(throws: MetadataError.self) { try image.apply([], offset: 3) }
    #expect(error?.code == .invalidReplay)
  }

  @Test func registrationOffsetIsTheOffsetOfItsBatch() throws {
    var fixture = ClusterFixture()
    try fixture.commit([])
    try fixture.register(1)
    #expect(fixture.image.brokers[1]?.registrationOffset == 2)
    #expect(fixture.image.brokers[1]?.fenced == true)
  }

  // MARK: - Round trips

  @Test(arguments: 0..<12)
  func randomImageRoundTripsThroughRecordsAndSnapshot(seed: Int) throws {
    let fixture = try randomCluster(seed: UInt64(seed), steps: 80)
    let image = fixture.image
    #expect(!image.brokers.isEmpty)

    let records = image.records()
    #expect(try MetadataImage(records: records, offset: image.offset) == image)
    #expect(try MetadataRecord.decodeBatch(MetadataRecord.encodeBatch(records)) == records)

    let snapshot = image.encodeSnapshot()
    #expect(try MetadataImage(snapshot: snapshot) == image)
    #expect(try MetadataImage(snapshot: snapshot).encodeSnapshot() == snapshot)
  }

  @Test(arguments: 0..<6)
  func controllerKeepsImageInvariants(seed: Int) throws {
    let image = try randomCluster(seed: 100 + UInt64(seed), steps: 120).image
    for partition in image.allPartitions {
      #expect(!partition.isr.isEmpty, "\(partition.topicPartition) has an empty ISR")
      #expect(MetadataImage.structureViolation(partition) == nil)
      if partition.leader != noLeader {
        #expect(image.isActive(partition.leader), "\(partition.topicPartition) led by inactive")
      }
    }
  }

  @Test func replayingEveryPrefixOfTheRecordsSucceeds() throws {
    let image = try randomCluster(seed: 7, steps: 60).image
    let records = image.records()
    var rebuilt = MetadataImage()
    for (index, record) in records.enumerated() {
      rebuilt = try rebuilt.replaying(record, offset: Int64(index + 1))
    }
    #expect(rebuilt.brokers == image.brokers)
    #expect(rebuilt.topics == image.topics)
    #expect(rebuilt.nextTopicID == image.nextTopicID)
    #expect(rebuilt.nextProducerID == image.nextProducerID)
  }

  // MARK: - Snapshot codec

  @Test func everyTruncationOfASnapshotThrows() throws {
    let image = try randomCluster(seed: 3, steps: 30).image
    let snapshot = image.encodeSnapshot()
    for length in 0..<snapshot.count {
      #expect(throws: MetadataError.self, "cut at \(length)") {
        try MetadataImage(snapshot: Array(snapshot[0..<length]))
      }
    }
    let error = #expect(throws: MetadataError.self) {
      try MetadataImage(snapshot: snapshot + [0])
    }
    #expect(error?.code == .trailingBytes)
  }

  @Test func snapshotHeaderIsChecked() throws {
    let snapshot = MetadataImage().encodeSnapshot()
    var badMagic = snapshot
    badMagic[0] = 0x00
    #expect(throws: MetadataError.self) { try MetadataImage(snapshot: badMagic) }
    #expect((try? MetadataImage(snapshot: badMagic)) == nil)
    let magicError = #expect(throws: MetadataError.self) {
      try MetadataImage(snapshot: badMagic)
    }
    #expect(magicError?.code == .invalidSnapshot)

    var badVersion = snapshot
    badVersion[5] = 9
    let versionError = #expect(throws: MetadataError.self) {
      try MetadataImage(snapshot: badVersion)
    }
    #expect(versionError?.code == .invalidSnapshot)
    #expect(try MetadataImage(snapshot: snapshot) == MetadataImage())
  }

  @Test func snapshotFuzzNeverTraps() throws {
    var random = SeededGenerator(seed: 0x5A4)
    let valid = try randomCluster(seed: 11, steps: 40).image.encodeSnapshot()
    for _ in 0..<1_500 {
      var bytes = valid
      for _ in 0..<Int.random(in: 1...3, using: &random) {
        bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(
          in: 0...255, using: &random)
      }
      _ = try? MetadataImage(snapshot: bytes)
    }
    for _ in 0..<1_500 {
      let length = Int.random(in: 0...64, using: &random)
      var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
      if length >= 14 && Bool.random(using: &random) {
        bytes.replaceSubrange(0..<6, with: [0x53, 0x42, 0x4D, 0x49, 0, 1])
      }
      _ = try? MetadataImage(snapshot: bytes)
    }
  }
}
