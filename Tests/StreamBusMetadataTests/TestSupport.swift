import StreamBusProtocol
import Testing

@testable import StreamBusMetadata

/// Deterministic generator so a failing randomized test reproduces from its seed.
struct SeededGenerator: RandomNumberGenerator {
  private var state: UInt64

  init(seed: UInt64) {
    state = seed
  }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var mixed = state
    mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
    mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
    return mixed ^ (mixed >> 31)
  }
}

/// A controller with its committed image: operations are applied as the metaserver would
/// after commit, each batch at the next offset.
struct ClusterFixture {
  var controller = MetadataController()
  var image = MetadataImage()
  var sessions = BrokerSessions(nowMs: 0)
  var nowMs: Int64 = 0
  var incarnations: [BrokerID: Int64] = [:]

  mutating func commit(_ records: [MetadataRecord]) throws {
    try image.apply(records, offset: image.offset + 1)
  }

  static func endpoints(_ id: BrokerID) -> [BrokerEndpoint] {
    [BrokerEndpoint(name: "client", host: "127.0.0.1", port: 9000 + id)]
  }

  /// Registers `id` with a fresh incarnation and returns the response.
  @discardableResult
  mutating func register(
    _ id: BrokerID, rack: String? = nil,
    directoryID: Int64 = BrokerRegistrationRecord.unknownDirectoryID
  ) throws -> BrokerRegistrationResponse {
    let incarnation = (incarnations[id] ?? 0) + 1
    incarnations[id] = incarnation
    let result = controller.registerBroker(
      BrokerRegistrationRequest(
        brokerID: id, incarnationID: incarnation, endpoints: Self.endpoints(id), rack: rack,
        capacity: BrokerCapacity(diskBytes: 1 << 30), directoryID: directoryID),
      image: image, sessions: &sessions, nowMs: nowMs)
    try commit(result.records)
    return result.response
  }

  @discardableResult
  mutating func heartbeat(_ id: BrokerID, wantShutdown: Bool = false) throws
    -> BrokerHeartbeatResponse
  {
    let epoch = image.brokers[id]?.epoch ?? -1
    let result = controller.heartbeat(
      BrokerHeartbeatRequest(
        brokerID: id, brokerEpoch: epoch, appliedMetadataOffset: image.offset,
        wantShutdown: wantShutdown),
      image: image, sessions: &sessions, nowMs: nowMs)
    try commit(result.records)
    return result.response
  }

  /// Registers and unfences brokers `ids`, with racks from `racks` when given and data
  /// directory ids from `directories` (else none said).
  mutating func addActiveBrokers(
    _ ids: [BrokerID], racks: [BrokerID: String] = [:], directories: [BrokerID: Int64] = [:]
  ) throws {
    for id in ids {
      try register(
        id, rack: racks[id],
        directoryID: directories[id] ?? BrokerRegistrationRecord.unknownDirectoryID)
      let response = try heartbeat(id)
      precondition(!response.isFenced, "broker \(id) should be unfenced after catching up")
    }
  }

  @discardableResult
  mutating func createTopic(
    _ name: String, partitions: Int32, replicationFactor: Int16, configs: [String: String] = [:],
    placementStart: Int? = nil
  ) throws -> CreateTopicResult {
    let result = controller.createTopics(
      [
        CreatableTopic(
          name: name, partitions: partitions, replicationFactor: replicationFactor,
          configs: configs)
      ], validateOnly: false, image: image, placementStart: placementStart)
    try commit(result.records)
    return result.response[0]
  }

  /// Heartbeats every unfenced broker but `silent`, then fences whoever expired.
  mutating func advance(byMs delta: Int64, silent: Set<BrokerID> = []) throws -> [MetadataRecord] {
    nowMs += delta
    for broker in image.brokers.values.sorted(by: { $0.id < $1.id })
    where !silent.contains(broker.id) {
      try heartbeat(broker.id)
    }
    let records = controller.fenceExpired(image: image, sessions: sessions, nowMs: nowMs)
    try commit(records)
    return records
  }

  func partition(_ topic: String, _ index: PartitionIndex) -> PartitionRegistration? {
    guard let id = image.topicIDsByName[topic] else { return nil }
    return image.partition(TopicPartition(topicID: id, partition: index))
  }
}
