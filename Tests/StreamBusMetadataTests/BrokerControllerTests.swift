import StreamBusProtocol
import Testing

@testable import StreamBusMetadata

@Suite struct BrokerControllerTests {
  // MARK: - Registration

  @Test func registeringBrokerStartsFenced() throws {
    var fixture = ClusterFixture()
    let response = try fixture.register(1, rack: "a")
    #expect(response.errorCode == .none)
    let broker = try #require(fixture.image.brokers[1])
    #expect(broker.fenced)
    #expect(broker.epoch == response.brokerEpoch)
    #expect(broker.rack == "a")
    #expect(fixture.image.activeBrokers.isEmpty)
  }

  @Test func brokerEpochStrictlyIncreasesPerRegistration() throws {
    var fixture = ClusterFixture()
    var epochs: [BrokerEpoch] = []
    for id: BrokerID in [1, 2, 1, 1, 2] {
      epochs.append(try fixture.register(id).brokerEpoch)
    }
    #expect(epochs == epochs.sorted() && Set(epochs).count == epochs.count, "\(epochs)")
  }

  @Test func sameIncarnationReRegistrationIsIdempotent() throws {
    var fixture = ClusterFixture()
    let first = try fixture.register(1)
    let request = BrokerRegistrationRequest(
      brokerID: 1, incarnationID: fixture.incarnations[1] ?? 0,
      endpoints: ClusterFixture.endpoints(1), rack: nil,
      capacity: BrokerCapacity(diskBytes: 1 << 30))
    let again = fixture.controller.registerBroker(
      request, image: fixture.image, sessions: &fixture.sessions, nowMs: 5)
    #expect(again.records.isEmpty)
    #expect(
      again.response == BrokerRegistrationResponse(errorCode: .none, brokerEpoch: first.brokerEpoch)
    )
  }

  @Test func sameIncarnationWithOtherEndpointsIsDuplicateRegistration() throws {
    var fixture = ClusterFixture()
    try fixture.register(1)
    let request = BrokerRegistrationRequest(
      brokerID: 1, incarnationID: fixture.incarnations[1] ?? 0,
      endpoints: [BrokerEndpoint(name: "client", host: "elsewhere", port: 1)], rack: nil,
      capacity: BrokerCapacity(diskBytes: 1 << 30))
    let result = fixture.controller.registerBroker(
      request, image: fixture.image, sessions: &fixture.sessions, nowMs: 5)
    #expect(result.records.isEmpty)
    #expect(result.response.errorCode == .duplicateBrokerRegistration)
  }

  @Test func newIncarnationReplacesOldAndMovesItsLeadershipInTheSameBatch() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2, 3])
    try fixture.createTopic("t", partitions: 3, replicationFactor: 2, placementStart: 0)
    let led = fixture.image.allPartitions.filter { $0.leader == 1 }
    #expect(!led.isEmpty)
    let oldEpoch = fixture.image.brokers[1]?.epoch ?? 0

    let result = fixture.controller.registerBroker(
      BrokerRegistrationRequest(
        brokerID: 1, incarnationID: 999, endpoints: ClusterFixture.endpoints(1), rack: nil,
        capacity: BrokerCapacity(diskBytes: 1)),
      image: fixture.image, sessions: &fixture.sessions, nowMs: 0)
    #expect(result.response.brokerEpoch > oldEpoch)
    try fixture.commit(result.records)
    let broker = try #require(fixture.image.brokers[1])
    #expect(broker.fenced && broker.incarnationID == 999 && broker.epoch > oldEpoch)
    for before in led {
      let after = try #require(fixture.image.partition(before.topicPartition))
      #expect(after.leader != 1 && after.leader != noLeader)
      #expect(after.leaderEpoch == before.leaderEpoch + 1)
      #expect(!after.isr.contains(1))
    }
  }

  @Test func returningWithAnotherDataDirectoryLeavesEveryIsrEvenAsTheLastMember() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2, 3], directories: [1: 101, 2: 102, 3: 103])
    try fixture.createTopic("t", partitions: 3, replicationFactor: 3, placementStart: 0)
    try fixture.createTopic("solo", partitions: 1, replicationFactor: 1, placementStart: 0)
    #expect(fixture.partition("solo", 0)?.replicas == [1])
    // Broker 1 stops answering: fenced, "solo" goes offline with broker 1 as its last ISR
    // member, and "t" moves its leaderships away.
    _ = try fixture.advance(byMs: 2_000, silent: [1])
    #expect(fixture.image.brokers[1]?.fenced == true)
    #expect(fixture.partition("solo", 0)?.leader == noLeader)
    #expect(fixture.partition("solo", 0)?.isr == [1])

    // It returns with an empty directory (a new id): it may lead nothing it held.
    try fixture.register(1, directoryID: 999)
    let solo = try #require(fixture.partition("solo", 0))
    #expect(solo.isr.isEmpty)
    #expect(solo.leader == noLeader)
    for index in 0..<3 {
      #expect(fixture.partition("t", Int32(index))?.isr.contains(1) == false)
    }
    // Unfenced again, it is elected nowhere: "solo" stays offline until its data returns
    // or someone allows unclean election.
    try fixture.heartbeat(1)
    #expect(fixture.image.brokers[1]?.fenced == false)
    #expect(fixture.partition("solo", 0)?.leader == noLeader)
    #expect(fixture.partition("solo", 0)?.isr.isEmpty == true)
  }

  @Test func returningWithTheSameDataDirectoryKeepsItsLastMemberships() throws {
    var fixture = ClusterFixture()
    try fixture.register(1, directoryID: 7)
    try fixture.heartbeat(1)
    try fixture.createTopic("solo", partitions: 1, replicationFactor: 1)
    _ = try fixture.advance(byMs: 2_000, silent: [1])
    #expect(fixture.partition("solo", 0)?.leader == noLeader)
    try fixture.register(1, directoryID: 7)
    try fixture.heartbeat(1)
    #expect(fixture.partition("solo", 0)?.isr == [1])
    #expect(fixture.partition("solo", 0)?.leader == 1)
  }

  @Test func aQuickRestartWithAnotherDirectoryLeavesTheIsrsAndLeaderships() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2, 3], directories: [1: 101, 2: 102, 3: 103])
    try fixture.createTopic("t", partitions: 3, replicationFactor: 3, placementStart: 0)
    #expect(fixture.image.allPartitions.contains { $0.leader == 1 })
    // Still unfenced (the old process died a moment ago) and back without its data.
    try fixture.register(1, directoryID: 555)
    for partition in fixture.image.allPartitions {
      #expect(!partition.isr.contains(1) && partition.leader != 1, "\(partition)")
      #expect(partition.leader != noLeader)
    }
  }

  @Test func invalidRegistrationIsRefused() throws {
    var fixture = ClusterFixture()
    let good = BrokerRegistrationRequest(
      brokerID: 1, incarnationID: 1, endpoints: ClusterFixture.endpoints(1), rack: "r",
      capacity: BrokerCapacity(diskBytes: 0))
    var negativeID = good
    negativeID.brokerID = -3
    var noEndpoints = good
    noEndpoints.endpoints = []
    var badPort = good
    badPort.endpoints = [BrokerEndpoint(name: "client", host: "h", port: 0)]
    var longHost = good
    longHost.endpoints = [
      BrokerEndpoint(name: "client", host: String(repeating: "h", count: 300), port: 1)
    ]
    var repeatedName = good
    repeatedName.endpoints = ClusterFixture.endpoints(1) + ClusterFixture.endpoints(2)
    var emptyRack = good
    emptyRack.rack = ""
    var negativeDirectory = good
    negativeDirectory.directoryID = -1
    for request in [
      negativeID, noEndpoints, badPort, longHost, repeatedName, emptyRack, negativeDirectory,
    ] {
      let result = fixture.controller.registerBroker(
        request, image: fixture.image, sessions: &fixture.sessions, nowMs: 0)
      #expect(result.records.isEmpty)
      #expect(result.response.errorCode == .invalidRequest)
      #expect(result.response.message != nil)
    }
  }

  // MARK: - Heartbeats

  @Test func heartbeatFromUnknownBrokerIsBrokerIdNotRegistered() {
    var fixture = ClusterFixture()
    let result = fixture.controller.heartbeat(
      BrokerHeartbeatRequest(brokerID: 4, brokerEpoch: 1, appliedMetadataOffset: 0),
      image: fixture.image, sessions: &fixture.sessions, nowMs: 0)
    #expect(result.records.isEmpty)
    #expect(result.response.errorCode == .brokerIdNotRegistered)
  }

  @Test func heartbeatWithStaleBrokerEpochIsStaleBrokerEpoch() throws {
    var fixture = ClusterFixture()
    let first = try fixture.register(1)
    try fixture.register(1)
    let result = fixture.controller.heartbeat(
      BrokerHeartbeatRequest(
        brokerID: 1, brokerEpoch: first.brokerEpoch, appliedMetadataOffset: 100),
      image: fixture.image, sessions: &fixture.sessions, nowMs: 0)
    #expect(result.records.isEmpty)
    #expect(result.response.errorCode == .staleBrokerEpoch)
  }

  @Test func fencedBrokerIsUnfencedOnlyOnceCaughtUpToItsRegistration() throws {
    var fixture = ClusterFixture()
    try fixture.commit([])
    try fixture.commit([])
    let epoch = try fixture.register(1).brokerEpoch
    let registrationOffset = fixture.image.offset
    func beat(applied: Int64) -> ControllerResult<BrokerHeartbeatResponse> {
      fixture.controller.heartbeat(
        BrokerHeartbeatRequest(brokerID: 1, brokerEpoch: epoch, appliedMetadataOffset: applied),
        image: fixture.image, sessions: &fixture.sessions, nowMs: 0)
    }
    let behind = beat(applied: registrationOffset - 1)
    #expect(behind.records.isEmpty)
    #expect(behind.response.isFenced)
    let caughtUp = beat(applied: registrationOffset)
    #expect(caughtUp.records == [.brokerUnfenced(brokerID: 1, brokerEpoch: epoch)])
    #expect(!caughtUp.response.isFenced)
    try fixture.commit(caughtUp.records)
    #expect(fixture.image.isActive(1))
    #expect(beat(applied: registrationOffset + 1).records.isEmpty, "already unfenced")
  }

  @Test func unfencingElectsLeadersForOfflinePartitionsItHolds() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1])
    try fixture.createTopic("solo", partitions: 2, replicationFactor: 1)
    _ = try fixture.advance(byMs: 2_000, silent: [1])
    #expect(fixture.partition("solo", 0)?.leader == noLeader)
    #expect(fixture.partition("solo", 0)?.isr == [1], "last ISR member stays")
    let epochBefore = fixture.partition("solo", 0)?.leaderEpoch ?? -1

    let response = try fixture.heartbeat(1)
    #expect(!response.isFenced)
    for index: PartitionIndex in [0, 1] {
      #expect(fixture.partition("solo", index)?.leader == 1)
    }
    #expect(fixture.partition("solo", 0)?.leaderEpoch == epochBefore + 1)
  }

  @Test func wantShutdownMovesLeadershipAwayAndAllowsShutdown() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2, 3])
    try fixture.createTopic("t", partitions: 6, replicationFactor: 3, placementStart: 0)
    #expect(fixture.image.allPartitions.contains { $0.leader == 2 })

    let response = try fixture.heartbeat(2, wantShutdown: true)
    #expect(response.shouldShutdown)
    let broker = try #require(fixture.image.brokers[2])
    #expect(broker.inControlledShutdown && !broker.isActive)
    for partition in fixture.image.allPartitions {
      #expect(partition.leader != 2 && partition.leader != noLeader)
      #expect(!partition.isr.contains(2))
    }
    let again = fixture.controller.heartbeat(
      BrokerHeartbeatRequest(
        brokerID: 2, brokerEpoch: broker.epoch, appliedMetadataOffset: fixture.image.offset,
        wantShutdown: true), image: fixture.image, sessions: &fixture.sessions, nowMs: 0)
    #expect(again.records.isEmpty, "nothing left to move")
    #expect(again.response.shouldShutdown)
    // A broker shutting down is never unfenced or handed new replicas.
    let created = fixture.controller.createTopics(
      [CreatableTopic(name: "u", partitions: 1, replicationFactor: 3)], validateOnly: false,
      image: fixture.image)
    #expect(created.response[0].errorCode == .invalidReplicationFactor)
  }

  // MARK: - Session expiry

  @Test func sessionExpiryFencesAndMovesLeadershipInTheSameBatch() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2, 3])
    try fixture.createTopic("t", partitions: 3, replicationFactor: 3, placementStart: 0)
    let before = fixture.image
    let led = before.allPartitions.filter { $0.leader == 1 }
    #expect(!led.isEmpty)

    let records = try fixture.advance(byMs: 1_501, silent: [1])
    let epoch = before.brokers[1]?.epoch ?? 0
    #expect(records.first == .brokerFenced(brokerID: 1, brokerEpoch: epoch))
    #expect(records.count == 1 + before.allPartitions.count, "fence + every partition in one batch")
    #expect(fixture.image.brokers[1]?.fenced == true)
    for old in before.allPartitions {
      let new = try #require(fixture.image.partition(old.topicPartition))
      #expect(!new.isr.contains(1))
      #expect(new.partitionEpoch == old.partitionEpoch + 1)
      if old.leader == 1 {
        // First live ISR member in replica order.
        let expected = old.replicas.first { $0 != 1 && old.isr.contains($0) }
        #expect(new.leader == expected)
        #expect(new.leaderEpoch == old.leaderEpoch + 1)
      } else {
        #expect(new.leader == old.leader && new.leaderEpoch == old.leaderEpoch)
      }
    }
  }

  @Test func sessionDoesNotExpireBeforeTheTimeout() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1])
    let last = fixture.sessions.lastHeartbeatMs(1)
    let atTimeout = fixture.controller.fenceExpired(
      image: fixture.image, sessions: fixture.sessions, nowMs: last + 1_500)
    #expect(atTimeout.isEmpty)
    let after = fixture.controller.fenceExpired(
      image: fixture.image, sessions: fixture.sessions, nowMs: last + 1_501)
    #expect(after.count == 1)
    let custom = fixture.controller.fenceExpired(
      image: fixture.image, sessions: fixture.sessions, nowMs: last + 300, sessionTimeoutMs: 250)
    #expect(custom.count == 1)
    #expect(
      fixture.sessions.nextExpiryMs(image: fixture.image, sessionTimeoutMs: 1_500) == last + 1_501)
  }

  @Test func fencingNeverShrinksIsrBelowOneMember() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2])
    try fixture.createTopic("t", partitions: 1, replicationFactor: 2, placementStart: 0)
    let leader = try #require(fixture.partition("t", 0)?.leader)
    let follower: BrokerID = leader == 1 ? 2 : 1

    _ = try fixture.advance(byMs: 1_600, silent: [follower])
    #expect(fixture.partition("t", 0)?.isr == [leader])
    _ = try fixture.advance(byMs: 1_600, silent: [leader, follower])
    let partition = try #require(fixture.partition("t", 0))
    #expect(partition.isr == [leader], "the last in-sync replica stays in the ISR")
    #expect(partition.leader == noLeader, "no election outside the ISR")
  }

  @Test func uncleanElectionPicksALiveReplicaOutsideTheIsr() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2])
    try fixture.createTopic(
      "t", partitions: 1, replicationFactor: 2,
      configs: ["unclean.leader.election.enable": "true"], placementStart: 0)
    let leader = try #require(fixture.partition("t", 0)?.leader)
    let follower: BrokerID = leader == 1 ? 2 : 1
    _ = try fixture.advance(byMs: 1_600, silent: [follower])
    #expect(fixture.partition("t", 0)?.isr == [leader])
    // The follower returns, then the only ISR member dies.
    _ = try fixture.advance(byMs: 10)
    _ = try fixture.advance(byMs: 1_600, silent: [leader])
    let partition = try #require(fixture.partition("t", 0))
    #expect(partition.leader == follower)
    #expect(partition.isr == [follower])
  }

  @Test func enablingUncleanElectionElectsOfflinePartitions() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2])
    try fixture.createTopic("t", partitions: 1, replicationFactor: 2, placementStart: 0)
    let leader = try #require(fixture.partition("t", 0)?.leader)
    let follower: BrokerID = leader == 1 ? 2 : 1
    _ = try fixture.advance(byMs: 1_600, silent: [follower])
    _ = try fixture.advance(byMs: 10)
    _ = try fixture.advance(byMs: 1_600, silent: [leader])
    #expect(fixture.partition("t", 0)?.leader == noLeader)

    let result = fixture.controller.alterConfigs(
      topic: "t",
      changes: [ConfigEntryChange(key: "unclean.leader.election.enable", value: "true")],
      image: fixture.image)
    #expect(result.response.errorCode == .none)
    try fixture.commit(result.records)
    #expect(fixture.partition("t", 0)?.leader == follower)
  }

  @Test func fencingTwoBrokersAtOnceElectsNeither() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2, 3])
    try fixture.createTopic("t", partitions: 6, replicationFactor: 3, placementStart: 0)
    let records = try fixture.advance(byMs: 1_600, silent: [1, 2])
    #expect(records.prefix(2).allSatisfy { if case .brokerFenced = $0 { true } else { false } })
    for partition in fixture.image.allPartitions {
      #expect(partition.leader == 3)
      #expect(partition.isr == [3])
    }
  }

  @Test func controllerFailoverResetAllGivesEveryBrokerAFreshSession() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2])
    // The new controller's clock is far ahead of any heartbeat the old one saw; stale
    // timestamps must not fence anyone.
    let failoverMs: Int64 = 1_000_000
    var sessions = fixture.sessions
    #expect(
      fixture.controller.fenceExpired(image: fixture.image, sessions: sessions, nowMs: failoverMs)
        .count == 2, "without a reset both look expired")
    sessions.resetAll(nowMs: failoverMs)
    #expect(
      fixture.controller.fenceExpired(
        image: fixture.image, sessions: sessions, nowMs: failoverMs + 1_500
      ).isEmpty)
    // Nobody stays unfenced forever: a broker that never heartbeats the new controller
    // expires one session timeout after the reset.
    sessions.recordHeartbeat(2, nowMs: failoverMs + 1_000)
    let records = fixture.controller.fenceExpired(
      image: fixture.image, sessions: sessions, nowMs: failoverMs + 1_501)
    #expect(
      records == [.brokerFenced(brokerID: 1, brokerEpoch: fixture.image.brokers[1]?.epoch ?? 0)])
  }

  @Test func brokersUnknownToANewControllerExpireFromItsStart() {
    let sessions = BrokerSessions(nowMs: 500)
    #expect(sessions.lastHeartbeatMs(7) == 500)
    #expect(!sessions.isExpired(7, nowMs: 2_000, sessionTimeoutMs: 1_500))
    #expect(sessions.isExpired(7, nowMs: 2_001, sessionTimeoutMs: 1_500))
  }

  // MARK: - Producer ids

  @Test func producerIdsAreAllocatedInDisjointBlocksOfOneThousand() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1, 2])
    var blocks: [ProducerIdsResponse] = []
    for id: BrokerID in [1, 2, 1] {
      let epoch = fixture.image.brokers[id]?.epoch ?? 0
      let result = fixture.controller.allocateProducerIds(
        brokerID: id, brokerEpoch: epoch, image: fixture.image)
      try fixture.commit(result.records)
      blocks.append(result.response)
    }
    #expect(blocks.map(\.firstProducerID) == [0, 1_000, 2_000])
    #expect(blocks.allSatisfy { $0.count == 1_000 && $0.errorCode == .none })
    #expect(fixture.image.nextProducerID == 3_000)
  }

  @Test func producerIdsRequireTheCurrentBrokerEpoch() throws {
    var fixture = ClusterFixture()
    try fixture.addActiveBrokers([1])
    let stale = fixture.controller.allocateProducerIds(
      brokerID: 1, brokerEpoch: 0, image: fixture.image)
    #expect(stale.response.errorCode == .staleBrokerEpoch && stale.records.isEmpty)
    let unknown = fixture.controller.allocateProducerIds(
      brokerID: 9, brokerEpoch: 1, image: fixture.image)
    #expect(unknown.response.errorCode == .brokerIdNotRegistered && unknown.records.isEmpty)
  }
}
