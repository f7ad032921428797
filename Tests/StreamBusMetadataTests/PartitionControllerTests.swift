import StreamBusProtocol
import Testing

@testable import StreamBusMetadata

@Suite struct AlterPartitionTests {
  /// Three active brokers and one partition with replicas [1, 2, 3] led by 1.
  private func cluster() throws -> (ClusterFixture, PartitionRegistration) {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2, 3])
    try fixture.createTopic("t", partitions: 1, replicationFactor: 3, placementStart: 0)
    let partition = try #require(fixture.partition("t", 0))
    #expect(partition.replicas == [1, 2, 3] && partition.leader == 1)
    return (fixture, partition)
  }

  private func request(
    _ fixture: ClusterFixture, _ partition: PartitionRegistration, isr: [BrokerID],
    brokerID: BrokerID? = nil, brokerEpoch: BrokerEpoch? = nil, leaderEpoch: LeaderEpoch? = nil,
    partitionEpoch: PartitionEpoch? = nil
  ) -> ControllerResult<AlterPartitionResponse> {
    let brokerID = brokerID ?? partition.leader
    return fixture.controller.alterPartition(
      AlterPartitionRequest(
        brokerID: brokerID,
        brokerEpoch: brokerEpoch ?? fixture.image.brokers[brokerID]?.epoch ?? -1,
        partitions: [
          AlterPartitionItem(
            topicID: partition.topicID, partition: partition.partition,
            leaderEpoch: leaderEpoch ?? partition.leaderEpoch,
            partitionEpoch: partitionEpoch ?? partition.partitionEpoch, newISR: isr)
        ]), image: fixture.image)
  }

  @Test func shrinkAndExpandSucceedAndBumpThePartitionEpoch() throws {
    var (fixture, partition) = try cluster()
    let shrink = request(fixture, partition, isr: [1, 3])
    let result = try #require(shrink.response.partitions.first)
    #expect(result.errorCode == .none)
    #expect(result.isr == [1, 3] && result.partitionEpoch == partition.partitionEpoch + 1)
    #expect(result.leader == 1 && result.leaderEpoch == partition.leaderEpoch)
    try fixture.commit(shrink.records)
    let shrunk = try #require(fixture.partition("t", 0))
    #expect(shrunk.isr == [1, 3] && shrunk.partitionEpoch == result.partitionEpoch)

    let expand = request(fixture, shrunk, isr: [1, 3, 2])
    #expect(expand.response.partitions.first?.errorCode == ErrorCode.none)
    try fixture.commit(expand.records)
    #expect(fixture.partition("t", 0)?.isr == [1, 3, 2])
    #expect(fixture.partition("t", 0)?.partitionEpoch == partition.partitionEpoch + 2)
  }

  @Test func unchangedIsrIsAcceptedWithoutARecord() throws {
    let (fixture, partition) = try cluster()
    let result = request(fixture, partition, isr: [3, 2, 1])
    #expect(result.records.isEmpty)
    #expect(result.response.partitions.first?.errorCode == ErrorCode.none)
    #expect(result.response.partitions.first?.partitionEpoch == partition.partitionEpoch)
  }

  @Test func unknownBrokerIsBrokerIdNotRegistered() throws {
    let (fixture, partition) = try cluster()
    let result = request(fixture, partition, isr: [1], brokerID: 9, brokerEpoch: 1)
    #expect(result.response.errorCode == .brokerIdNotRegistered)
    #expect(result.records.isEmpty && result.response.partitions.isEmpty)
  }

  @Test func staleBrokerEpochIsStaleBrokerEpoch() throws {
    let (fixture, partition) = try cluster()
    let epoch = fixture.image.brokers[1]?.epoch ?? 0
    let result = request(fixture, partition, isr: [1], brokerEpoch: epoch - 1)
    #expect(result.response.errorCode == .staleBrokerEpoch)
    #expect(result.records.isEmpty)
  }

  @Test func requestFromANonLeaderIsFencedLeaderEpoch() throws {
    let (fixture, partition) = try cluster()
    let result = request(fixture, partition, isr: [2, 3], brokerID: 2)
    #expect(result.response.errorCode == .none)
    let item = try #require(result.response.partitions.first)
    #expect(item.errorCode == .fencedLeaderEpoch)
    #expect(item.leader == 1 && item.isr == [1, 2, 3], "answers the current state")
    #expect(result.records.isEmpty)
  }

  @Test func staleLeaderEpochIsFencedLeaderEpoch() throws {
    var (fixture, _) = try cluster()
    // Broker 1 loses and regains leadership: its old leader epoch is now stale.
    _ = try fixture.advance(byMs: 1_600, silent: [1])
    _ = try fixture.heartbeat(1)
    let stale = try #require(fixture.partition("t", 0))
    try fixture.commit(
      fixture.controller.alterPartition(
        AlterPartitionRequest(
          brokerID: stale.leader, brokerEpoch: fixture.image.brokers[stale.leader]?.epoch ?? 0,
          partitions: [
            AlterPartitionItem(
              topicID: stale.topicID, partition: 0, leaderEpoch: stale.leaderEpoch,
              partitionEpoch: stale.partitionEpoch, newISR: stale.isr + [1])
          ]), image: fixture.image
      ).records)
    try fixture.commit(fixture.controller.electPreferredLeaders(nil, image: fixture.image).records)
    let current = try #require(fixture.partition("t", 0))
    #expect(current.leader == 1 && current.leaderEpoch == 2)
    let result = request(fixture, current, isr: [1], leaderEpoch: 0)
    #expect(result.response.partitions.first?.errorCode == .fencedLeaderEpoch)
    #expect(result.records.isEmpty)
  }

  @Test func stalePartitionEpochIsInvalidUpdateVersion() throws {
    var (fixture, partition) = try cluster()
    try fixture.commit(request(fixture, partition, isr: [1, 2]).records)
    let result = request(fixture, partition, isr: [1], partitionEpoch: partition.partitionEpoch)
    #expect(result.response.partitions.first?.errorCode == .invalidUpdateVersion)
    #expect(result.records.isEmpty)
  }

  @Test func secondChangeOfOnePartitionInOneRequestIsInvalidUpdateVersion() throws {
    let (fixture, partition) = try cluster()
    let item = AlterPartitionItem(
      topicID: partition.topicID, partition: 0, leaderEpoch: partition.leaderEpoch,
      partitionEpoch: partition.partitionEpoch, newISR: [1, 2])
    var second = item
    second.newISR = [1]
    let result = fixture.controller.alterPartition(
      AlterPartitionRequest(
        brokerID: 1, brokerEpoch: fixture.image.brokers[1]?.epoch ?? 0,
        partitions: [item, second]), image: fixture.image)
    #expect(result.response.partitions.map(\.errorCode) == [.none, .invalidUpdateVersion])
    #expect(result.records.count == 1)
  }

  @Test func isrMustBeReplicasContainingTheLeader() throws {
    let (fixture, partition) = try cluster()
    for isr: [BrokerID] in [[1, 4], [2, 3], [1, 1], []] {
      let result = request(fixture, partition, isr: isr)
      #expect(result.response.partitions.first?.errorCode == .invalidRequest, "\(isr)")
      #expect(result.records.isEmpty)
    }
  }

  @Test func onlyActiveBrokersMayJoinTheIsr() throws {
    var (fixture, partition) = try cluster()
    try fixture.commit(request(fixture, partition, isr: [1]).records)
    _ = try fixture.advance(byMs: 1_600, silent: [3])
    let current = try #require(fixture.partition("t", 0))
    let fencedJoin = request(fixture, current, isr: [1, 3])
    #expect(fencedJoin.response.partitions.first?.errorCode == .ineligibleReplica)
    #expect(fencedJoin.records.isEmpty)
    let activeJoin = request(fixture, current, isr: [1, 2])
    #expect(activeJoin.response.partitions.first?.errorCode == ErrorCode.none)
  }

  @Test func unknownPartitionIsUnknownTopicOrPartition() throws {
    let (fixture, partition) = try cluster()
    var missing = partition
    missing.partition = 7
    let result = request(fixture, missing, isr: [1])
    #expect(result.response.partitions.first?.errorCode == .unknownTopicOrPartition)
  }
}

@Suite struct PreferredLeaderElectionTests {
  @Test func preferredLeaderIsRestoredWhenInIsrAndActive() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2, 3])
    try fixture.createTopic("t", partitions: 3, replicationFactor: 3, placementStart: 0)
    _ = try fixture.advance(byMs: 1_600, silent: [1])
    _ = try fixture.heartbeat(1)
    let moved = try #require(fixture.partition("t", 0))
    #expect(moved.replicas[0] == 1 && moved.leader != 1)

    // Not in the ISR yet: not available.
    let early = fixture.controller.electPreferredLeaders(
      [TopicNamePartition(topic: "t", partition: 0)], image: fixture.image)
    #expect(early.response.map(\.errorCode) == [.preferredLeaderNotAvailable])
    #expect(early.records.isEmpty)

    let rejoin = fixture.controller.alterPartition(
      AlterPartitionRequest(
        brokerID: moved.leader, brokerEpoch: fixture.image.brokers[moved.leader]?.epoch ?? 0,
        partitions: [
          AlterPartitionItem(
            topicID: moved.topicID, partition: 0, leaderEpoch: moved.leaderEpoch,
            partitionEpoch: moved.partitionEpoch, newISR: moved.isr + [1])
        ]), image: fixture.image)
    try fixture.commit(rejoin.records)

    let result = fixture.controller.electPreferredLeaders(
      [
        TopicNamePartition(topic: "t", partition: 0),
        TopicNamePartition(topic: "t", partition: 1),
        TopicNamePartition(topic: "nope", partition: 0),
      ], image: fixture.image)
    #expect(
      result.response.map(\.errorCode) == [.none, .electionNotNeeded, .unknownTopicOrPartition])
    try fixture.commit(result.records)
    let restored = try #require(fixture.partition("t", 0))
    #expect(restored.leader == 1)
    #expect(restored.leaderEpoch == moved.leaderEpoch + 1)
    #expect(restored.partitionEpoch == moved.partitionEpoch + 2)
  }

  @Test func electingAllCoversEveryPartition() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2])
    try fixture.createTopic("a", partitions: 2, replicationFactor: 2)
    try fixture.createTopic("b", partitions: 1, replicationFactor: 2)
    let result = fixture.controller.electPreferredLeaders(nil, image: fixture.image)
    #expect(result.response.count == 3)
    #expect(result.response.allSatisfy { $0.errorCode == .electionNotNeeded })
    #expect(result.records.isEmpty)
  }
}
