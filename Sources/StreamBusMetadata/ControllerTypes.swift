import StreamBusProtocol

/// What a controller operation decided: the records to propose as one batch (empty when
/// nothing changes) and the answer to send once that batch commits.
public struct ControllerResult<Response: Sendable>: Sendable {
  public var records: [MetadataRecord]
  public var response: Response

  public init(records: [MetadataRecord], response: Response) {
    self.records = records
    self.response = response
  }
}

/// Bounds and defaults of the controller.
public struct ControllerLimits: Sendable, Hashable {
  public var partitionsPerTopicMax: Int32 = 10_000
  /// Used when CreateTopics asks for -1 partitions.
  public var defaultPartitions: Int32 = 1
  /// Used when CreateTopics asks for replication factor -1.
  public var defaultReplicationFactor: Int16 = 1
  public var producerIDBlockSize: Int32 = 1_000
  public var endpointsMax = 16
  public var hostBytesMax = 255
  public var endpointNameBytesMax = 64
  public var rackBytesMax = 255

  public init() {}
}

// MARK: - Brokers

public struct BrokerRegistrationRequest: Sendable, Hashable {
  public var brokerID: BrokerID
  public var incarnationID: Int64
  public var endpoints: [BrokerEndpoint]
  public var rack: String?
  public var capacity: BrokerCapacity
  /// The identity of the broker's data directory; a new one means the data is gone.
  public var directoryID: Int64

  public init(
    brokerID: BrokerID, incarnationID: Int64, endpoints: [BrokerEndpoint], rack: String?,
    capacity: BrokerCapacity, directoryID: Int64 = BrokerRegistrationRecord.unknownDirectoryID
  ) {
    self.brokerID = brokerID
    self.incarnationID = incarnationID
    self.endpoints = endpoints
    self.rack = rack
    self.capacity = capacity
    self.directoryID = directoryID
  }
}

public struct BrokerRegistrationResponse: Sendable, Hashable {
  public var errorCode: ErrorCode
  public var message: String?
  /// -1 on error.
  public var brokerEpoch: BrokerEpoch

  public init(errorCode: ErrorCode, message: String? = nil, brokerEpoch: BrokerEpoch) {
    self.errorCode = errorCode
    self.message = message
    self.brokerEpoch = brokerEpoch
  }
}

public struct BrokerHeartbeatRequest: Sendable, Hashable {
  public var brokerID: BrokerID
  public var brokerEpoch: BrokerEpoch
  /// The offset of the last metadata record the broker applied.
  public var appliedMetadataOffset: Int64
  public var wantShutdown: Bool

  public init(
    brokerID: BrokerID, brokerEpoch: BrokerEpoch, appliedMetadataOffset: Int64,
    wantShutdown: Bool = false
  ) {
    self.brokerID = brokerID
    self.brokerEpoch = brokerEpoch
    self.appliedMetadataOffset = appliedMetadataOffset
    self.wantShutdown = wantShutdown
  }
}

public struct BrokerHeartbeatResponse: Sendable, Hashable {
  public var errorCode: ErrorCode
  public var message: String?
  /// Whether the broker is fenced once this heartbeat's records are applied.
  public var isFenced: Bool
  /// The broker asked to shut down and leads nothing any more: it may exit.
  public var shouldShutdown: Bool

  public init(
    errorCode: ErrorCode, message: String? = nil, isFenced: Bool, shouldShutdown: Bool
  ) {
    self.errorCode = errorCode
    self.message = message
    self.isFenced = isFenced
    self.shouldShutdown = shouldShutdown
  }
}

public struct ProducerIdsResponse: Sendable, Hashable {
  public var errorCode: ErrorCode
  public var message: String?
  public var firstProducerID: ProducerID
  public var count: Int32

  public init(
    errorCode: ErrorCode, message: String? = nil, firstProducerID: ProducerID, count: Int32
  ) {
    self.errorCode = errorCode
    self.message = message
    self.firstProducerID = firstProducerID
    self.count = count
  }
}

// MARK: - Topics

public struct CreatableTopic: Sendable, Hashable {
  public var name: String
  /// -1 = ``ControllerLimits/defaultPartitions``.
  public var partitions: Int32
  /// -1 = ``ControllerLimits/defaultReplicationFactor``.
  public var replicationFactor: Int16
  public var configs: [String: String]

  public init(
    name: String, partitions: Int32, replicationFactor: Int16, configs: [String: String] = [:]
  ) {
    self.name = name
    self.partitions = partitions
    self.replicationFactor = replicationFactor
    self.configs = configs
  }
}

public struct CreateTopicResult: Sendable, Hashable {
  public var name: String
  public var errorCode: ErrorCode
  public var message: String?
  /// 0 on error and for validateOnly.
  public var topicID: TopicID
  public var partitions: Int32
  public var replicationFactor: Int16

  public init(
    name: String, errorCode: ErrorCode, message: String? = nil, topicID: TopicID = 0,
    partitions: Int32 = -1, replicationFactor: Int16 = -1
  ) {
    self.name = name
    self.errorCode = errorCode
    self.message = message
    self.topicID = topicID
    self.partitions = partitions
    self.replicationFactor = replicationFactor
  }
}

public struct DeleteTopicResult: Sendable, Hashable {
  public var name: String
  public var errorCode: ErrorCode
  public var message: String?

  public init(name: String, errorCode: ErrorCode, message: String? = nil) {
    self.name = name
    self.errorCode = errorCode
    self.message = message
  }
}

/// One key of an AlterConfigs request; a nil value removes the key.
public struct ConfigEntryChange: Sendable, Hashable {
  public var key: String
  public var value: String?

  public init(key: String, value: String?) {
    self.key = key
    self.value = value
  }
}

public struct AlterConfigsResponse: Sendable, Hashable {
  public var errorCode: ErrorCode
  public var message: String?

  public init(errorCode: ErrorCode, message: String? = nil) {
    self.errorCode = errorCode
    self.message = message
  }
}

// MARK: - Partitions

/// One partition's proposed ISR, from its leader.
public struct AlterPartitionItem: Sendable, Hashable {
  public var topicID: TopicID
  public var partition: PartitionIndex
  public var leaderEpoch: LeaderEpoch
  public var partitionEpoch: PartitionEpoch
  public var newISR: [BrokerID]

  public init(
    topicID: TopicID, partition: PartitionIndex, leaderEpoch: LeaderEpoch,
    partitionEpoch: PartitionEpoch, newISR: [BrokerID]
  ) {
    self.topicID = topicID
    self.partition = partition
    self.leaderEpoch = leaderEpoch
    self.partitionEpoch = partitionEpoch
    self.newISR = newISR
  }
}

public struct AlterPartitionRequest: Sendable, Hashable {
  public var brokerID: BrokerID
  public var brokerEpoch: BrokerEpoch
  public var partitions: [AlterPartitionItem]

  public init(brokerID: BrokerID, brokerEpoch: BrokerEpoch, partitions: [AlterPartitionItem]) {
    self.brokerID = brokerID
    self.brokerEpoch = brokerEpoch
    self.partitions = partitions
  }
}

/// The partition's state after the request (current state when refused).
public struct AlterPartitionResult: Sendable, Hashable {
  public var topicID: TopicID
  public var partition: PartitionIndex
  public var errorCode: ErrorCode
  public var message: String?
  public var leader: BrokerID
  public var leaderEpoch: LeaderEpoch
  public var isr: [BrokerID]
  public var partitionEpoch: PartitionEpoch

  public init(
    topicID: TopicID, partition: PartitionIndex, errorCode: ErrorCode, message: String? = nil,
    leader: BrokerID = noLeader, leaderEpoch: LeaderEpoch = -1, isr: [BrokerID] = [],
    partitionEpoch: PartitionEpoch = -1
  ) {
    self.topicID = topicID
    self.partition = partition
    self.errorCode = errorCode
    self.message = message
    self.leader = leader
    self.leaderEpoch = leaderEpoch
    self.isr = isr
    self.partitionEpoch = partitionEpoch
  }
}

public struct AlterPartitionResponse: Sendable, Hashable {
  /// Request-level error (unknown broker, stale broker epoch); then `partitions` is empty.
  public var errorCode: ErrorCode
  public var message: String?
  public var partitions: [AlterPartitionResult]

  public init(
    errorCode: ErrorCode, message: String? = nil, partitions: [AlterPartitionResult] = []
  ) {
    self.errorCode = errorCode
    self.message = message
    self.partitions = partitions
  }
}

/// A partition named the way administrators name it.
public struct TopicNamePartition: Sendable, Hashable {
  public var topic: String
  public var partition: PartitionIndex

  public init(topic: String, partition: PartitionIndex) {
    self.topic = topic
    self.partition = partition
  }
}

public struct ElectLeaderResult: Sendable, Hashable {
  public var topic: String
  public var partition: PartitionIndex
  public var errorCode: ErrorCode
  public var message: String?

  public init(
    topic: String, partition: PartitionIndex, errorCode: ErrorCode, message: String? = nil
  ) {
    self.topic = topic
    self.partition = partition
    self.errorCode = errorCode
    self.message = message
  }
}

/// Counts for DescribeCluster.
public struct ClusterSummary: Sendable, Hashable {
  public var brokerCount: Int
  public var fencedBrokerCount: Int
  public var topicCount: Int
  public var partitionCount: Int
  /// Partitions whose ISR is smaller than their replica set.
  public var underReplicatedPartitionCount: Int
  /// Partitions without a leader.
  public var offlinePartitionCount: Int

  public init(image: MetadataImage) {
    brokerCount = image.brokers.count
    fencedBrokerCount = image.brokers.values.filter(\.fenced).count
    topicCount = image.topics.count
    var partitions = 0
    var underReplicated = 0
    var offline = 0
    for topic in image.topics.values {
      for partition in topic.partitions {
        partitions += 1
        if partition.isUnderReplicated { underReplicated += 1 }
        if partition.isOffline { offline += 1 }
      }
    }
    partitionCount = partitions
    underReplicatedPartitionCount = underReplicated
    offlinePartitionCount = offline
  }
}
