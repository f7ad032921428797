/// A registered broker as the image knows it.
public struct BrokerRegistration: Hashable, Sendable {
  public var id: BrokerID
  public var incarnationID: Int64
  public var epoch: BrokerEpoch
  /// Raft index of the batch that registered this incarnation.
  public var registrationOffset: Int64
  public var endpoints: [BrokerEndpoint]
  public var rack: String?
  public var capacity: BrokerCapacity
  public var fenced: Bool
  public var inControlledShutdown: Bool
  /// The identity of the data directory the broker registered with
  /// (``BrokerRegistrationRecord/unknownDirectoryID`` when it did not say).
  public var directoryID: Int64

  public init(
    id: BrokerID, incarnationID: Int64, epoch: BrokerEpoch, registrationOffset: Int64,
    endpoints: [BrokerEndpoint], rack: String?, capacity: BrokerCapacity, fenced: Bool,
    inControlledShutdown: Bool,
    directoryID: Int64 = BrokerRegistrationRecord.unknownDirectoryID
  ) {
    self.id = id
    self.incarnationID = incarnationID
    self.epoch = epoch
    self.registrationOffset = registrationOffset
    self.endpoints = endpoints
    self.rack = rack
    self.capacity = capacity
    self.fenced = fenced
    self.inControlledShutdown = inControlledShutdown
    self.directoryID = directoryID
  }

  /// May lead partitions, join ISRs and receive new replicas.
  public var isActive: Bool { !fenced && !inControlledShutdown }

  public func endpoint(named name: String) -> BrokerEndpoint? {
    endpoints.first { $0.name == name }
  }
}

/// One partition's replica set and leadership.
public struct PartitionRegistration: Hashable, Sendable {
  public var topicID: TopicID
  public var partition: PartitionIndex
  /// Replica order matters: the first replica is the preferred leader.
  public var replicas: [BrokerID]
  public var isr: [BrokerID]
  /// ``noLeader`` (-1) when the partition is offline.
  public var leader: BrokerID
  public var leaderEpoch: LeaderEpoch
  public var partitionEpoch: PartitionEpoch
  public var addingReplicas: [BrokerID]
  public var removingReplicas: [BrokerID]

  public init(
    topicID: TopicID, partition: PartitionIndex, replicas: [BrokerID], isr: [BrokerID],
    leader: BrokerID, leaderEpoch: LeaderEpoch = 0, partitionEpoch: PartitionEpoch = 0,
    addingReplicas: [BrokerID] = [], removingReplicas: [BrokerID] = []
  ) {
    self.topicID = topicID
    self.partition = partition
    self.replicas = replicas
    self.isr = isr
    self.leader = leader
    self.leaderEpoch = leaderEpoch
    self.partitionEpoch = partitionEpoch
    self.addingReplicas = addingReplicas
    self.removingReplicas = removingReplicas
  }

  public var topicPartition: TopicPartition {
    TopicPartition(topicID: topicID, partition: partition)
  }

  public var isOffline: Bool { leader == noLeader }
  public var isUnderReplicated: Bool { isr.count < replicas.count }
  public var preferredLeader: BrokerID { replicas.first ?? noLeader }
}

/// A topic with its configs and partitions (array position = partition index).
public struct TopicImage: Hashable, Sendable {
  public var id: TopicID
  public var name: String
  /// Only keys set explicitly for this topic; defaults live with the brokers.
  public var configs: [String: String]
  public var partitions: [PartitionRegistration]

  public init(
    id: TopicID, name: String, configs: [String: String] = [:],
    partitions: [PartitionRegistration] = []
  ) {
    self.id = id
    self.name = name
    self.configs = configs
    self.partitions = partitions
  }

  /// Smallest replica count over the partitions (placement gives all the same count).
  public var replicationFactor: Int {
    partitions.map(\.replicas.count).min() ?? 0
  }
}
