import StreamBusProtocol
import Testing

@testable import StreamBusMetadata

/// Drives the controller with a seeded random mix of operations, committing every batch it
/// returns. Committing throws if the controller ever produces records that do not replay.
func randomCluster(seed: UInt64, steps: Int) throws -> ClusterFixture {
  var random = SeededGenerator(seed: seed)
  var fixture = ClusterFixture()
  let racks: [String?] = ["east", "west", "north", nil]
  let brokerIDs: [BrokerID] = Array(0..<7)

  func randomElement<T>(_ values: [T]) -> T? {
    values.isEmpty ? nil : values[Int.random(in: 0..<values.count, using: &random)]
  }

  for step in 0..<steps {
    fixture.nowMs += Int64.random(in: 0...400, using: &random)
    switch Int.random(in: 0..<12, using: &random) {
    case 0, 1:
      let id = randomElement(brokerIDs) ?? 0
      try fixture.register(id, rack: randomElement(racks) ?? nil)
      if Int.random(in: 0..<4, using: &random) > 0 {
        try fixture.heartbeat(id)
      }
    case 2:
      if let broker = randomElement(Array(fixture.image.brokers.keys)) {
        try fixture.heartbeat(broker, wantShutdown: Int.random(in: 0..<8, using: &random) == 0)
      }
    case 3, 4:
      var configs: [String: String] = [:]
      if Bool.random(using: &random) { configs["retention.ms"] = "\(step * 1000)" }
      if Bool.random(using: &random) { configs["unclean.leader.election.enable"] = "true" }
      let active = fixture.image.activeBrokers.count
      guard active > 0 else { continue }
      try fixture.createTopic(
        "topic-\(step)", partitions: Int32.random(in: 1...5, using: &random),
        replicationFactor: Int16.random(in: 1...Int16(min(active, 3)), using: &random),
        configs: configs)
    case 5:
      if Int.random(in: 0..<3, using: &random) == 0,
        let name = randomElement(Array(fixture.image.topicIDsByName.keys))
      {
        try fixture.commit(fixture.controller.deleteTopics([name], image: fixture.image).records)
      }
    case 6:
      if let name = randomElement(Array(fixture.image.topicIDsByName.keys)) {
        let value: String? = Bool.random(using: &random) ? "\(step)" : nil
        let result = fixture.controller.alterConfigs(
          topic: name, changes: [ConfigEntryChange(key: "retention.bytes", value: value)],
          image: fixture.image)
        try fixture.commit(result.records)
      }
    case 7:
      let silent = Set([randomElement(brokerIDs) ?? 0])
      _ = try fixture.advance(byMs: Int64.random(in: 200...2_000, using: &random), silent: silent)
    case 8:
      let led = fixture.image.allPartitions.filter { $0.leader != noLeader }
      guard let partition = randomElement(led), let broker = fixture.image.brokers[partition.leader]
      else { continue }
      var isr = partition.replicas.filter {
        $0 == partition.leader || (Bool.random(using: &random) && fixture.image.isActive($0))
      }
      isr.shuffle(using: &random)
      let result = fixture.controller.alterPartition(
        AlterPartitionRequest(
          brokerID: broker.id, brokerEpoch: broker.epoch,
          partitions: [
            AlterPartitionItem(
              topicID: partition.topicID, partition: partition.partition,
              leaderEpoch: partition.leaderEpoch, partitionEpoch: partition.partitionEpoch,
              newISR: isr)
          ]), image: fixture.image)
      #expect(result.response.partitions.first?.errorCode == ErrorCode.none)
      try fixture.commit(result.records)
    case 9:
      if let broker = randomElement(Array(fixture.image.brokers.values)) {
        let result = fixture.controller.allocateProducerIds(
          brokerID: broker.id, brokerEpoch: broker.epoch, image: fixture.image)
        try fixture.commit(result.records)
      }
    case 10:
      try fixture.commit(
        fixture.controller.electPreferredLeaders(nil, image: fixture.image).records)
    default:
      try fixture.commit([
        .featureLevel(name: "feature-\(step % 3)", level: Int16(step)),
        .configChanged(
          resource: .cluster, key: "cluster.key.\(step % 4)",
          value: Bool.random(using: &random) ? "v\(step)" : nil),
      ])
    }
  }
  return fixture
}
