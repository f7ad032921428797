/// One change to the cluster metadata. The Raft log is a sequence of batches of these, and
/// ``MetadataImage`` is what replaying them in order produces.
public enum MetadataRecord: Hashable, Sendable {
  /// A broker registered (or re-registered with a new incarnation, replacing the old one).
  /// It starts fenced.
  case brokerRegistered(BrokerRegistrationRecord)
  /// The broker may not lead or join ISRs (its session expired, or it finished shutting down).
  case brokerFenced(brokerID: BrokerID, brokerEpoch: BrokerEpoch)
  /// The broker caught up with the metadata log and may lead and join ISRs again.
  case brokerUnfenced(brokerID: BrokerID, brokerEpoch: BrokerEpoch)
  case brokerUnregistered(brokerID: BrokerID, brokerEpoch: BrokerEpoch)
  /// The broker asked to shut down; the controller moves its leaderships away.
  case brokerControlledShutdown(brokerID: BrokerID, brokerEpoch: BrokerEpoch)
  /// Followed in the same batch by one `partitionCreated` per partition, in index order.
  case topicCreated(name: String, topicID: TopicID)
  /// Removes the topic, its partitions and its configs.
  case topicDeleted(topicID: TopicID)
  case partitionCreated(PartitionRegistration)
  case partitionChanged(PartitionChange)
  /// Sets (`value` non-nil) or removes a config key of a topic or of the cluster.
  case configChanged(resource: ConfigResource, key: String, value: String?)
  /// The producer ids `firstID ..< firstID + count` now belong to `brokerID`.
  case producerIdsAllocated(brokerID: BrokerID, firstID: ProducerID, count: Int32)
  /// Records the level of a named feature; also serves as a harmless marker record.
  case featureLevel(name: String, level: Int16)
  /// Raises the id allocators to at least these values. Snapshots carry it because the
  /// records that advanced them (of deleted topics, old registrations) are gone.
  case nextIDs(topicID: TopicID, brokerEpoch: BrokerEpoch, producerID: ProducerID)
}

/// The payload of ``MetadataRecord/brokerRegistered(_:)``.
public struct BrokerRegistrationRecord: Hashable, Sendable {
  public var brokerID: BrokerID
  /// Random per process start; a new value means the broker restarted.
  public var incarnationID: Int64
  public var brokerEpoch: BrokerEpoch
  /// The Raft index of the batch that registered the broker, or
  /// ``BrokerRegistrationRecord/offsetOfThisBatch`` when the controller proposes it (it
  /// cannot know the index yet); replay then uses the batch's offset. The broker is unfenced
  /// only once it reports having applied metadata up to this offset.
  public var registrationOffset: Int64
  public var endpoints: [BrokerEndpoint]
  public var rack: String?
  public var capacity: BrokerCapacity
  /// The identity of the broker's data directory (record version 1; version 0 records
  /// read as ``BrokerRegistrationRecord/unknownDirectoryID``).
  public var directoryID: Int64

  public static let offsetOfThisBatch: Int64 = -1
  /// A registration that did not say which data directory it has (older brokers).
  public static let unknownDirectoryID: Int64 = 0

  public init(
    brokerID: BrokerID, incarnationID: Int64, brokerEpoch: BrokerEpoch,
    registrationOffset: Int64 = offsetOfThisBatch, endpoints: [BrokerEndpoint], rack: String?,
    capacity: BrokerCapacity, directoryID: Int64 = unknownDirectoryID
  ) {
    self.brokerID = brokerID
    self.incarnationID = incarnationID
    self.brokerEpoch = brokerEpoch
    self.registrationOffset = registrationOffset
    self.endpoints = endpoints
    self.rack = rack
    self.capacity = capacity
    self.directoryID = directoryID
  }
}

/// The payload of ``MetadataRecord/partitionChanged(_:)``: nil fields are unchanged.
public struct PartitionChange: Hashable, Sendable {
  public var topicID: TopicID
  public var partition: PartitionIndex
  /// The partition epoch after the change; always strictly above the current one.
  public var partitionEpoch: PartitionEpoch
  public var leader: BrokerID?
  /// Set whenever the leader changes; strictly above the current leader epoch.
  public var leaderEpoch: LeaderEpoch?
  public var isr: [BrokerID]?
  public var replicas: [BrokerID]?
  public var addingReplicas: [BrokerID]?
  public var removingReplicas: [BrokerID]?

  public init(
    topicID: TopicID, partition: PartitionIndex, partitionEpoch: PartitionEpoch,
    leader: BrokerID? = nil, leaderEpoch: LeaderEpoch? = nil, isr: [BrokerID]? = nil,
    replicas: [BrokerID]? = nil, addingReplicas: [BrokerID]? = nil,
    removingReplicas: [BrokerID]? = nil
  ) {
    self.topicID = topicID
    self.partition = partition
    self.partitionEpoch = partitionEpoch
    self.leader = leader
    self.leaderEpoch = leaderEpoch
    self.isr = isr
    self.replicas = replicas
    self.addingReplicas = addingReplicas
    self.removingReplicas = removingReplicas
  }

  public var topicPartition: TopicPartition {
    TopicPartition(topicID: topicID, partition: partition)
  }
}

/// What a config key belongs to.
public enum ConfigResource: Hashable, Sendable {
  case cluster
  case topic(TopicID)
}
