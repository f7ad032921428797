/// The cluster metadata at one offset of the metadata log: what replaying every record up to
/// and including that offset produces.
///
/// A value type: the state machine owns one and applies committed batches to it in place;
/// readers get copies that never change under them. Properties are only changed by
/// ``apply(_:offset:)``, through the one `replay` switch.
public struct MetadataImage: Hashable, Sendable {
  /// Raft index of the last applied entry (0 before the first).
  public private(set) var offset: Int64 = 0
  public private(set) var brokers: [BrokerID: BrokerRegistration] = [:]
  public private(set) var topics: [TopicID: TopicImage] = [:]
  public private(set) var topicIDsByName: [String: TopicID] = [:]
  public private(set) var clusterConfigs: [String: String] = [:]
  public private(set) var features: [String: Int16] = [:]
  public private(set) var nextTopicID: TopicID = 1
  public private(set) var nextBrokerEpoch: BrokerEpoch = 1
  public private(set) var nextProducerID: ProducerID = 0

  public init() {}

  public static let empty = MetadataImage()

  /// Ids, epochs and producer ids above this are refused by replay, so the controller's
  /// allocation arithmetic can never overflow on a hostile or corrupt log.
  public static let idMax: Int64 = 1 << 62

  /// Rebuilds an image from records (for example from ``records()``), stamped with `offset`.
  public init(records: [MetadataRecord], offset: Int64) throws(MetadataError) {
    var image = MetadataImage()
    try image.replayAll(records, batchOffset: offset)
    image.offset = offset
    self = image
  }

  // MARK: - Queries

  public func topic(named name: String) -> TopicImage? {
    guard let id = topicIDsByName[name] else { return nil }
    return topics[id]
  }

  public func partition(_ topicPartition: TopicPartition) -> PartitionRegistration? {
    guard let topic = topics[topicPartition.topicID],
      topicPartition.partition >= 0, Int(topicPartition.partition) < topic.partitions.count
    else { return nil }
    return topic.partitions[Int(topicPartition.partition)]
  }

  /// Topics in id order (creation order).
  public var topicsByID: [TopicImage] {
    topics.values.sorted { $0.id < $1.id }
  }

  /// Every partition, by topic id then index.
  public var allPartitions: [PartitionRegistration] {
    topicsByID.flatMap(\.partitions)
  }

  public var partitionCount: Int {
    topics.values.reduce(0) { $0 + $1.partitions.count }
  }

  /// Brokers that may lead and receive replicas (unfenced, not shutting down), by id.
  public var activeBrokers: [BrokerRegistration] {
    brokers.values.filter(\.isActive).sorted { $0.id < $1.id }
  }

  public func isActive(_ brokerID: BrokerID) -> Bool {
    brokers[brokerID]?.isActive ?? false
  }

  // MARK: - Applying records

  /// Applies the records of one Raft entry, atomically: when a record does not apply the
  /// image is unchanged and the error names it. `offset` must be above ``offset``; an empty
  /// batch just advances it (Raft entries that carry no metadata).
  public mutating func apply(_ records: [MetadataRecord], offset: Int64) throws(MetadataError) {
    guard offset > self.offset else {
      throw MetadataError(
        .invalidReplay, "batch offset \(offset) is not above the image offset \(self.offset)")
    }
    var next = self
    try next.replayAll(records, batchOffset: offset)
    next.offset = offset
    self = next
  }

  /// Decodes one Raft entry's data (``MetadataRecord/encodeBatch(_:)``) and applies it.
  public mutating func apply(encodedBatch: [UInt8], offset: Int64) throws(MetadataError) {
    try apply(MetadataRecord.decodeBatch(encodedBatch), offset: offset)
  }

  public func applying(_ records: [MetadataRecord], offset: Int64) throws(MetadataError)
    -> MetadataImage
  {
    var next = self
    try next.apply(records, offset: offset)
    return next
  }

  /// One record as its own batch at `offset`.
  public func replaying(_ record: MetadataRecord, offset: Int64) throws(MetadataError)
    -> MetadataImage
  {
    try applying([record], offset: offset)
  }

  /// The controller's view of its own proposal before it commits: same replay, offset kept.
  func applyingSpeculatively(_ records: [MetadataRecord]) throws(MetadataError) -> MetadataImage {
    var next = self
    try next.replayAll(records, batchOffset: offset + 1)
    next.offset = offset
    return next
  }

  private mutating func replayAll(_ records: [MetadataRecord], batchOffset: Int64)
    throws(MetadataError)
  {
    for (index, record) in records.enumerated() {
      do {
        try replay(record, batchOffset: batchOffset)
      } catch {
        throw MetadataError(
          error.code, "record \(index) of the batch at offset \(batchOffset): \(error.message)")
      }
    }
  }

  /// The one place where metadata changes. Every case checks before it mutates, so a
  /// throwing record leaves the image as it was.
  private mutating func replay(_ record: MetadataRecord, batchOffset: Int64)
    throws(MetadataError)
  {
    switch record {
    case .brokerRegistered(let registration):
      try replayBrokerRegistered(registration, batchOffset: batchOffset)

    case .brokerFenced(let brokerID, let brokerEpoch):
      try requireBroker(brokerID, epoch: brokerEpoch, in: "BrokerFenced")
      brokers[brokerID]?.fenced = true

    case .brokerUnfenced(let brokerID, let brokerEpoch):
      try requireBroker(brokerID, epoch: brokerEpoch, in: "BrokerUnfenced")
      brokers[brokerID]?.fenced = false

    case .brokerUnregistered(let brokerID, let brokerEpoch):
      try requireBroker(brokerID, epoch: brokerEpoch, in: "BrokerUnregistered")
      brokers[brokerID] = nil

    case .brokerControlledShutdown(let brokerID, let brokerEpoch):
      try requireBroker(brokerID, epoch: brokerEpoch, in: "BrokerControlledShutdown")
      brokers[brokerID]?.inControlledShutdown = true

    case .topicCreated(let name, let topicID):
      if let violation = TopicNameRules.violation(name) {
        throw invalid("TopicCreated: \(violation)")
      }
      guard topicIDsByName[name] == nil else {
        throw invalid("TopicCreated: a topic named \"\(name)\" already exists")
      }
      guard topicID < Self.idMax else { throw invalid("TopicCreated: topic id \(topicID)") }
      guard topicID >= nextTopicID else {
        throw invalid(
          "TopicCreated: topic id \(topicID) is below the next unused id \(nextTopicID)")
      }
      topics[topicID] = TopicImage(id: topicID, name: name)
      topicIDsByName[name] = topicID
      nextTopicID = topicID + 1

    case .topicDeleted(let topicID):
      guard let topic = topics[topicID] else {
        throw invalid("TopicDeleted: unknown topic id \(topicID)")
      }
      topics[topicID] = nil
      topicIDsByName[topic.name] = nil

    case .partitionCreated(let partition):
      guard let topic = topics[partition.topicID] else {
        throw invalid("PartitionCreated: unknown topic id \(partition.topicID)")
      }
      guard Int(partition.partition) == topic.partitions.count else {
        throw invalid(
          "PartitionCreated: partition \(partition.topicPartition) is out of order; "
            + "the topic has \(topic.partitions.count) partitions")
      }
      if let violation = Self.structureViolation(partition) {
        throw invalid("PartitionCreated \(partition.topicPartition): \(violation)")
      }
      topics[partition.topicID]?.partitions.append(partition)

    case .partitionChanged(let change):
      let updated = try changedPartition(change)
      topics[change.topicID]?.partitions[Int(change.partition)] = updated

    case .configChanged(let resource, let key, let value):
      guard !key.isEmpty else { throw invalid("ConfigChanged: empty key") }
      switch resource {
      case .cluster:
        clusterConfigs[key] = value
      case .topic(let topicID):
        guard topics[topicID] != nil else {
          throw invalid("ConfigChanged: unknown topic id \(topicID)")
        }
        topics[topicID]?.configs[key] = value
      }

    case .producerIdsAllocated(let brokerID, let firstID, let count):
      guard count > 0, firstID >= nextProducerID, firstID <= Self.idMax else {
        throw invalid(
          "ProducerIdsAllocated for broker \(brokerID): block \(firstID)+\(count) overlaps "
            + "ids already handed out (next \(nextProducerID))")
      }
      let end = firstID + Int64(count)
      guard end <= Self.idMax else {
        throw invalid("ProducerIdsAllocated: block ends past \(Self.idMax)")
      }
      nextProducerID = end

    case .featureLevel(let name, let level):
      guard !name.isEmpty else { throw invalid("FeatureLevel: empty name") }
      features[name] = level

    case .nextIDs(let topicID, let brokerEpoch, let producerID):
      guard [topicID, brokerEpoch, producerID].allSatisfy({ $0 <= Self.idMax }) else {
        throw invalid("NextIDs: a value is above \(Self.idMax)")
      }
      nextTopicID = max(nextTopicID, topicID)
      nextBrokerEpoch = max(nextBrokerEpoch, brokerEpoch)
      nextProducerID = max(nextProducerID, producerID)
    }
  }

  private mutating func replayBrokerRegistered(
    _ registration: BrokerRegistrationRecord, batchOffset: Int64
  ) throws(MetadataError) {
    let id = registration.brokerID
    guard id >= 0 else { throw invalid("BrokerRegistered: negative broker id \(id)") }
    if let existing = brokers[id], registration.brokerEpoch <= existing.epoch {
      throw invalid(
        "BrokerRegistered: broker \(id) epoch \(registration.brokerEpoch) is not above the "
          + "registered epoch \(existing.epoch)")
    }
    guard registration.brokerEpoch >= 1 && registration.brokerEpoch < Self.idMax else {
      throw invalid("BrokerRegistered: broker \(id) epoch \(registration.brokerEpoch)")
    }
    guard registration.registrationOffset >= BrokerRegistrationRecord.offsetOfThisBatch else {
      throw invalid(
        "BrokerRegistered: broker \(id) registration offset \(registration.registrationOffset)")
    }
    let registrationOffset =
      registration.registrationOffset == BrokerRegistrationRecord.offsetOfThisBatch
      ? batchOffset : registration.registrationOffset
    brokers[id] = BrokerRegistration(
      id: id, incarnationID: registration.incarnationID, epoch: registration.brokerEpoch,
      registrationOffset: registrationOffset, endpoints: registration.endpoints,
      rack: registration.rack, capacity: registration.capacity, fenced: true,
      inControlledShutdown: false, directoryID: registration.directoryID)
    nextBrokerEpoch = max(nextBrokerEpoch, registration.brokerEpoch + 1)
  }

  private func requireBroker(_ brokerID: BrokerID, epoch: BrokerEpoch, in recordName: String)
    throws(MetadataError)
  {
    guard let broker = brokers[brokerID] else {
      throw invalid("\(recordName): broker \(brokerID) is not registered")
    }
    guard broker.epoch == epoch else {
      throw invalid(
        "\(recordName): broker \(brokerID) epoch \(epoch) does not match the registered "
          + "epoch \(broker.epoch)")
    }
  }

  private func changedPartition(_ change: PartitionChange) throws(MetadataError)
    -> PartitionRegistration
  {
    let name = "PartitionChanged \(change.topicPartition)"
    guard let current = partition(change.topicPartition) else {
      throw invalid("\(name): unknown partition")
    }
    guard change.partitionEpoch > current.partitionEpoch else {
      throw invalid(
        "\(name): partition epoch \(change.partitionEpoch) is not above \(current.partitionEpoch)")
    }
    var updated = current
    updated.partitionEpoch = change.partitionEpoch
    if let leaderEpoch = change.leaderEpoch {
      guard leaderEpoch > current.leaderEpoch else {
        throw invalid("\(name): leader epoch \(leaderEpoch) is not above \(current.leaderEpoch)")
      }
      updated.leaderEpoch = leaderEpoch
    }
    if let leader = change.leader, leader != current.leader {
      guard change.leaderEpoch != nil else {
        throw invalid("\(name): leader changes to \(leader) without a new leader epoch")
      }
      updated.leader = leader
    }
    if let isr = change.isr { updated.isr = isr }
    if let replicas = change.replicas { updated.replicas = replicas }
    if let adding = change.addingReplicas { updated.addingReplicas = adding }
    if let removing = change.removingReplicas { updated.removingReplicas = removing }
    if let violation = Self.structureViolation(updated) {
      throw invalid("\(name): \(violation)")
    }
    return updated
  }

  /// What is wrong with a partition's replica sets, if anything.
  static func structureViolation(_ partition: PartitionRegistration) -> String? {
    let replicas = Set(partition.replicas)
    if partition.partition < 0 { return "negative partition index" }
    if partition.replicas.isEmpty { return "no replicas" }
    if replicas.count != partition.replicas.count { return "duplicate replicas" }
    if partition.replicas.contains(where: { $0 < 0 }) { return "negative broker id in replicas" }
    if Set(partition.isr).count != partition.isr.count { return "duplicate ISR members" }
    if !partition.isr.allSatisfy(replicas.contains) { return "ISR member outside the replicas" }
    if partition.leader != noLeader && !partition.isr.contains(partition.leader) {
      return "leader \(partition.leader) is not in the ISR"
    }
    if !partition.addingReplicas.allSatisfy(replicas.contains) {
      return "adding replica outside the replicas"
    }
    if !partition.removingReplicas.allSatisfy(replicas.contains) {
      return "removing replica outside the replicas"
    }
    if partition.leaderEpoch < 0 || partition.partitionEpoch < 0 { return "negative epoch" }
    // Controller bumps add one; an exhausted epoch must not reach that arithmetic.
    if partition.leaderEpoch == .max || partition.partitionEpoch == .max {
      return "epoch exhausted"
    }
    return nil
  }

  private func invalid(_ message: String) -> MetadataError {
    MetadataError(.invalidReplay, message)
  }
}
