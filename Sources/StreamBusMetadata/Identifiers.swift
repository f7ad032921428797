/// Broker ids are chosen by operators (Kafka's `node.id`); -1 means "no broker".
public typealias BrokerID = Int32
/// Allocated by the controller from ``MetadataImage/nextTopicID``; never reused, so a topic
/// deleted and created again under the same name is a different topic.
public typealias TopicID = Int64
public typealias PartitionIndex = Int32
public typealias LeaderEpoch = Int32
/// Bumped on every change of a partition (leader, ISR, replicas); AlterPartition requests
/// carry the epoch they were computed from so stale ones are rejected.
public typealias PartitionEpoch = Int32
/// Bumped on every registration of a broker id; requests carry it so a restarted broker's
/// predecessor cannot act in its name.
public typealias BrokerEpoch = Int64
public typealias ProducerID = Int64

/// A partition leader of -1 means the partition has no leader (offline).
public let noLeader: BrokerID = -1

/// One listener of a broker. Name "client" serves clients; "replication" is used between
/// brokers when it is separate.
public struct BrokerEndpoint: Hashable, Sendable {
  public var name: String
  public var host: String
  public var port: Int32

  public init(name: String, host: String, port: Int32) {
    self.name = name
    self.host = host
    self.port = port
  }
}

public struct BrokerCapacity: Hashable, Sendable {
  public var diskBytes: Int64

  public init(diskBytes: Int64) {
    self.diskBytes = diskBytes
  }
}

/// A partition named by topic id (not name, so it survives delete-and-recreate races).
public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
  public var topicID: TopicID
  public var partition: PartitionIndex

  public init(topicID: TopicID, partition: PartitionIndex) {
    self.topicID = topicID
    self.partition = partition
  }

  public static func < (left: TopicPartition, right: TopicPartition) -> Bool {
    (left.topicID, left.partition) < (right.topicID, right.partition)
  }

  public var description: String { "\(topicID)/\(partition)" }
}
