import Testing

@testable import StreamBusMetadata

@Suite struct PlacementTests {
  private func brokers(_ racks: [String?]) -> [BrokerRegistration] {
    racks.enumerated().map { index, rack in
      BrokerRegistration(
        id: BrokerID(index + 1), incarnationID: 1, epoch: 1, registrationOffset: 0,
        endpoints: [], rack: rack, capacity: BrokerCapacity(diskBytes: 0), fenced: false,
        inControlledShutdown: false)
    }
  }

  @Test func rackAlternatingOrderTakesOneBrokerPerRackInTurn() {
    let order = ReplicaPlacement.rackAlternatingOrder(
      brokers(["a", "a", "a", "b", "b", "c", nil]))
    // a: 1 2 3, b: 4 5, c: 6, and 7 without a rack counts as its own.
    #expect(order == [1, 4, 6, 7, 2, 5, 3])
  }

  @Test(arguments: 0..<40)
  func placementProperties(seed: Int) {
    var random = SeededGenerator(seed: UInt64(seed))
    let brokerCount = Int.random(in: 1...9, using: &random)
    let rackNames: [String?] = ["r1", "r2", "r3", "r4", nil]
    let rackChoices = Array(rackNames.prefix(Int.random(in: 1...5, using: &random)))
    let cluster = brokers(
      (0..<brokerCount).map { _ in
        rackChoices[Int.random(in: 0..<rackChoices.count, using: &random)]
      })
    let replicationFactor = Int.random(in: 1...brokerCount, using: &random)
    let partitionCount = Int.random(in: 1...40, using: &random)
    let start = Int.random(in: -50...50, using: &random)

    let assignment = ReplicaPlacement.place(
      partitionCount: partitionCount, replicationFactor: replicationFactor, brokers: cluster,
      start: start)
    #expect(assignment.count == partitionCount)

    var rackKey: [BrokerID: String] = [:]
    for broker in cluster { rackKey[broker.id] = broker.rack ?? "own-\(broker.id)" }
    let rackCount = Set(rackKey.values).count
    var leaderCounts: [BrokerID: Int] = Dictionary(uniqueKeysWithValues: cluster.map { ($0.id, 0) })
    for replicas in assignment {
      #expect(replicas.count == replicationFactor)
      #expect(Set(replicas).count == replicas.count, "no two replicas on one broker")
      #expect(replicas.allSatisfy { rackKey[$0] != nil })
      let racksUsed = Set(replicas.compactMap { rackKey[$0] }).count
      #expect(racksUsed == min(replicationFactor, rackCount), "racks spread first: \(replicas)")
      leaderCounts[replicas[0], default: 0] += 1
    }
    let counts = leaderCounts.values
    #expect((counts.max() ?? 0) - (counts.min() ?? 0) <= 1, "leaders balanced: \(leaderCounts)")

    let again = ReplicaPlacement.place(
      partitionCount: partitionCount, replicationFactor: replicationFactor, brokers: cluster,
      start: start)
    #expect(again == assignment, "deterministic")
  }

  @Test func followerSetsVaryAcrossRoundsOfBrokers() {
    let assignment = ReplicaPlacement.place(
      partitionCount: 12, replicationFactor: 2, brokers: brokers([nil, nil, nil, nil]), start: 0)
    let pairs = Set(assignment.map { Set($0) })
    #expect(pairs.count > 4, "not just one follower per leader: \(assignment)")
  }

  @Test func placementThroughTheControllerIsDeterministicGivenTheStart() throws {
    var first = ClusterFixture()
    try first.addActiveBrokers([1, 2, 3, 4], racks: [1: "a", 2: "a", 3: "b", 4: "b"])
    var second = first
    try first.createTopic("t", partitions: 8, replicationFactor: 2, placementStart: 3)
    try second.createTopic("t", partitions: 8, replicationFactor: 2, placementStart: 3)
    #expect(first.image.allPartitions == second.image.allPartitions)
    for partition in first.image.allPartitions {
      let racks = Set(partition.replicas.map { $0 <= 2 ? "a" : "b" })
      #expect(racks.count == 2, "one replica per rack")
    }
  }
}
