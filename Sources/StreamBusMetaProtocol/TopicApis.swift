import StreamBusProtocol

// MARK: - CreateTopics (1110)

/// Named with a `Meta` prefix because StreamBusProtocol's broker API has a `CreateTopicsRequest`.
public struct MetaCreateTopicsRequest: MetaRequestBody {
  public typealias Response = MetaCreateTopicsResponse
  public static let apiKey = MetaApiKey.createTopics

  public var topics: [Topic]
  /// Check everything (names, placement, configs) without creating anything.
  public var validateOnly: Bool

  public struct Topic: Sendable, Hashable {
    public var name: String
    /// -1 asks for the metaserver's default.
    public var partitions: Int32
    /// -1 asks for the metaserver's default.
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

    static let bytesMin = MetaBytesMin.string + 4 + 2 + MetaBytesMin.array
  }

  public init(topics: [Topic], validateOnly: Bool = false) {
    self.topics = topics
    self.validateOnly = validateOnly
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray("createTopics.topics", elementBytesMin: Topic.bytesMin) {
      reader in
      Topic(
        name: try reader.readString("createTopics.topics.name"),
        partitions: try reader.readInt32("createTopics.topics.partitions"),
        replicationFactor: try reader.readInt16("createTopics.topics.replicationFactor"),
        configs: try reader.readStringMap("createTopics.topics.configs"))
    }
    validateOnly = try reader.readBool("createTopics.validateOnly")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeInt32(topic.partitions)
      writer.writeInt16(topic.replicationFactor)
      writer.writeStringMap(topic.configs)
    }
    writer.writeBool(validateOnly)
  }
}

public struct MetaCreateTopicsResponse: WireBody {
  public static let apiKey = MetaApiKey.createTopics

  public var topics: [Result]

  public struct Result: Sendable, Hashable {
    public var name: String
    public var errorCode: ErrorCode
    public var errorMessage: String?
    /// 0 when the topic was not created (or only validated).
    public var topicID: Int64
    public var partitions: Int32
    public var replicationFactor: Int16

    public init(
      name: String, errorCode: ErrorCode, errorMessage: String? = nil, topicID: Int64,
      partitions: Int32, replicationFactor: Int16
    ) {
      self.name = name
      self.errorCode = errorCode
      self.errorMessage = errorMessage
      self.topicID = topicID
      self.partitions = partitions
      self.replicationFactor = replicationFactor
    }

    static let bytesMin = MetaBytesMin.string + 2 + MetaBytesMin.string + 8 + 4 + 2
  }

  public init(topics: [Result]) {
    self.topics = topics
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray("createTopicsResponse.topics", elementBytesMin: Result.bytesMin) {
      reader in
      Result(
        name: try reader.readString("createTopicsResponse.topics.name"),
        errorCode: ErrorCode(
          rawValue: try reader.readInt16("createTopicsResponse.topics.errorCode")),
        errorMessage: try reader.readNullableString("createTopicsResponse.topics.errorMessage"),
        topicID: try reader.readInt64("createTopicsResponse.topics.topicID"),
        partitions: try reader.readInt32("createTopicsResponse.topics.partitions"),
        replicationFactor: try reader.readInt16("createTopicsResponse.topics.replicationFactor"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, result in
      writer.writeString(result.name)
      writer.writeInt16(result.errorCode.rawValue)
      writer.writeMessage(result.errorMessage)
      writer.writeInt64(result.topicID)
      writer.writeInt32(result.partitions)
      writer.writeInt16(result.replicationFactor)
    }
  }
}

// MARK: - DeleteTopics (1111)

/// Named with a `Meta` prefix because StreamBusProtocol's broker API has a `DeleteTopicsRequest`.
public struct MetaDeleteTopicsRequest: MetaRequestBody {
  public typealias Response = MetaDeleteTopicsResponse
  public static let apiKey = MetaApiKey.deleteTopics

  public var names: [String]

  public init(names: [String]) {
    self.names = names
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    names = try reader.readArray("deleteTopics.names", elementBytesMin: MetaBytesMin.string) {
      try $0.readString("deleteTopics.names")
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(names) { $0.writeString($1) }
  }
}

public struct MetaDeleteTopicsResponse: WireBody {
  public static let apiKey = MetaApiKey.deleteTopics

  public var topics: [Result]

  public struct Result: Sendable, Hashable {
    public var name: String
    public var errorCode: ErrorCode
    public var errorMessage: String?

    public init(name: String, errorCode: ErrorCode, errorMessage: String? = nil) {
      self.name = name
      self.errorCode = errorCode
      self.errorMessage = errorMessage
    }

    static let bytesMin = MetaBytesMin.string + 2 + MetaBytesMin.string
  }

  public init(topics: [Result]) {
    self.topics = topics
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray("deleteTopicsResponse.topics", elementBytesMin: Result.bytesMin) {
      reader in
      Result(
        name: try reader.readString("deleteTopicsResponse.topics.name"),
        errorCode: ErrorCode(
          rawValue: try reader.readInt16("deleteTopicsResponse.topics.errorCode")),
        errorMessage: try reader.readNullableString("deleteTopicsResponse.topics.errorMessage"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, result in
      writer.writeString(result.name)
      writer.writeInt16(result.errorCode.rawValue)
      writer.writeMessage(result.errorMessage)
    }
  }
}

// MARK: - AlterConfigs (1112)

/// Sets and deletes configuration keys of one topic, all or nothing. The outcome is the
/// response header's error code and message; the body is empty.
public struct AlterConfigsRequest: MetaRequestBody {
  public typealias Response = AlterConfigsResponse
  public static let apiKey = MetaApiKey.alterConfigs

  public var topic: String
  public var changes: [Change]
  public var validateOnly: Bool

  public struct Change: Sendable, Hashable {
    public var key: String
    /// nil deletes the key (back to the default).
    public var value: String?

    public init(key: String, value: String?) {
      self.key = key
      self.value = value
    }

    static let bytesMin = 2 * MetaBytesMin.string
  }

  public init(topic: String, changes: [Change], validateOnly: Bool = false) {
    self.topic = topic
    self.changes = changes
    self.validateOnly = validateOnly
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    topic = try reader.readString("alterConfigs.topic")
    changes = try reader.readArray("alterConfigs.changes", elementBytesMin: Change.bytesMin) {
      reader in
      Change(
        key: try reader.readString("alterConfigs.changes.key"),
        value: try reader.readNullableString("alterConfigs.changes.value"))
    }
    validateOnly = try reader.readBool("alterConfigs.validateOnly")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeString(topic)
    writer.writeArray(changes) { writer, change in
      writer.writeString(change.key)
      writer.writeNullableString(change.value)
    }
    writer.writeBool(validateOnly)
  }
}

public struct AlterConfigsResponse: WireBody {
  public static let apiKey = MetaApiKey.alterConfigs

  public init() {}

  public init(from reader: inout WireReader, version: Int16) throws {}

  public func encode(into writer: inout WireWriter, version: Int16) {}
}

// MARK: - DescribeCluster (1113)

public struct DescribeClusterRequest: MetaRequestBody {
  public typealias Response = DescribeClusterResponse
  public static let apiKey = MetaApiKey.describeCluster

  public init() {}

  public init(from reader: inout WireReader, version: Int16) throws {}

  public func encode(into writer: inout WireWriter, version: Int16) {}
}

public struct DescribeClusterResponse: WireBody {
  public static let apiKey = MetaApiKey.describeCluster

  public var clusterID: String
  /// The metaserver (Raft) leader's node id, -1 when unknown.
  public var leaderID: Int32
  /// Raft index of the last metadata entry applied to the image that answered.
  public var metadataOffset: Int64
  public var brokers: [MetaBroker]
  public var topicCount: Int32
  public var partitionCount: Int32
  /// Partitions whose ISR is smaller than their replica set.
  public var underReplicatedPartitionCount: Int32
  /// Partitions without a leader.
  public var offlinePartitionCount: Int32

  public init(
    clusterID: String, leaderID: Int32, metadataOffset: Int64, brokers: [MetaBroker],
    topicCount: Int32, partitionCount: Int32, underReplicatedPartitionCount: Int32,
    offlinePartitionCount: Int32
  ) {
    self.clusterID = clusterID
    self.leaderID = leaderID
    self.metadataOffset = metadataOffset
    self.brokers = brokers
    self.topicCount = topicCount
    self.partitionCount = partitionCount
    self.underReplicatedPartitionCount = underReplicatedPartitionCount
    self.offlinePartitionCount = offlinePartitionCount
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    clusterID = try reader.readString("describeClusterResponse.clusterID")
    leaderID = try reader.readInt32("describeClusterResponse.leaderID")
    metadataOffset = try reader.readInt64("describeClusterResponse.metadataOffset")
    brokers = try reader.readArray(
      "describeClusterResponse.brokers", elementBytesMin: MetaBroker.bytesMin
    ) { try MetaBroker(from: &$0) }
    topicCount = try reader.readInt32("describeClusterResponse.topicCount")
    partitionCount = try reader.readInt32("describeClusterResponse.partitionCount")
    underReplicatedPartitionCount = try reader.readInt32(
      "describeClusterResponse.underReplicatedPartitionCount")
    offlinePartitionCount = try reader.readInt32("describeClusterResponse.offlinePartitionCount")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeString(clusterID)
    writer.writeInt32(leaderID)
    writer.writeInt64(metadataOffset)
    writer.writeArray(brokers) { $1.encode(into: &$0) }
    writer.writeInt32(topicCount)
    writer.writeInt32(partitionCount)
    writer.writeInt32(underReplicatedPartitionCount)
    writer.writeInt32(offlinePartitionCount)
  }

  public var encodedBytesEstimate: Int { 64 + brokers.count * 128 }
}

// MARK: - ListTopics (1114)

public struct ListTopicsRequest: MetaRequestBody {
  public typealias Response = ListTopicsResponse
  public static let apiKey = MetaApiKey.listTopics

  public init() {}

  public init(from reader: inout WireReader, version: Int16) throws {}

  public func encode(into writer: inout WireWriter, version: Int16) {}
}

public struct ListTopicsResponse: WireBody {
  public static let apiKey = MetaApiKey.listTopics

  public var topics: [Topic]

  public struct Topic: Sendable, Hashable {
    public var name: String
    public var topicID: Int64
    public var partitions: Int32
    public var replicationFactor: Int16

    public init(name: String, topicID: Int64, partitions: Int32, replicationFactor: Int16) {
      self.name = name
      self.topicID = topicID
      self.partitions = partitions
      self.replicationFactor = replicationFactor
    }

    static let bytesMin = MetaBytesMin.string + 8 + 4 + 2
  }

  public init(topics: [Topic]) {
    self.topics = topics
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray("listTopicsResponse.topics", elementBytesMin: Topic.bytesMin) {
      reader in
      Topic(
        name: try reader.readString("listTopicsResponse.topics.name"),
        topicID: try reader.readInt64("listTopicsResponse.topics.topicID"),
        partitions: try reader.readInt32("listTopicsResponse.topics.partitions"),
        replicationFactor: try reader.readInt16("listTopicsResponse.topics.replicationFactor"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeInt64(topic.topicID)
      writer.writeInt32(topic.partitions)
      writer.writeInt16(topic.replicationFactor)
    }
  }

  public var encodedBytesEstimate: Int {
    4 + topics.reduce(0) { $0 + Topic.bytesMin + $1.name.utf8.count }
  }
}

// MARK: - DescribeTopic (1115)

/// One topic by name; an unknown name is UNKNOWN_TOPIC_OR_PARTITION in the response header.
public struct DescribeTopicRequest: MetaRequestBody {
  public typealias Response = DescribeTopicResponse
  public static let apiKey = MetaApiKey.describeTopic

  public var name: String

  public init(name: String) {
    self.name = name
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    name = try reader.readString("describeTopic.name")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeString(name)
  }
}

public struct DescribeTopicResponse: WireBody {
  public static let apiKey = MetaApiKey.describeTopic

  public var name: String
  public var topicID: Int64
  public var configs: [String: String]
  /// In partition order.
  public var partitions: [MetaPartition]

  public init(name: String, topicID: Int64, configs: [String: String], partitions: [MetaPartition])
  {
    self.name = name
    self.topicID = topicID
    self.configs = configs
    self.partitions = partitions
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    name = try reader.readString("describeTopicResponse.name")
    topicID = try reader.readInt64("describeTopicResponse.topicID")
    configs = try reader.readStringMap("describeTopicResponse.configs")
    partitions = try reader.readArray(
      "describeTopicResponse.partitions", elementBytesMin: MetaPartition.bytesMin
    ) { try MetaPartition(from: &$0) }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeString(name)
    writer.writeInt64(topicID)
    writer.writeStringMap(configs)
    writer.writeArray(partitions) { $1.encode(into: &$0) }
  }

  public var encodedBytesEstimate: Int { 64 + partitions.count * 64 }
}

// MARK: - ElectPreferredLeaders (1121)

public struct ElectPreferredLeadersRequest: MetaRequestBody {
  public typealias Response = ElectPreferredLeadersResponse
  public static let apiKey = MetaApiKey.electPreferredLeaders

  /// nil: every partition whose leader is not its first replica.
  public var partitions: [TopicPartition]?

  public struct TopicPartition: Sendable, Hashable {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
      self.topic = topic
      self.partition = partition
    }

    static let bytesMin = MetaBytesMin.string + 4
  }

  public init(partitions: [TopicPartition]?) {
    self.partitions = partitions
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    partitions = try reader.readNullableArray(
      "electPreferredLeaders.partitions", elementBytesMin: TopicPartition.bytesMin
    ) { reader in
      TopicPartition(
        topic: try reader.readString("electPreferredLeaders.partitions.topic"),
        partition: try reader.readInt32("electPreferredLeaders.partitions.partition"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeNullableArray(partitions) { writer, item in
      writer.writeString(item.topic)
      writer.writeInt32(item.partition)
    }
  }
}

public struct ElectPreferredLeadersResponse: WireBody {
  public static let apiKey = MetaApiKey.electPreferredLeaders

  public var partitions: [Result]

  public struct Result: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var errorCode: ErrorCode
    public var errorMessage: String?

    public init(topic: String, partition: Int32, errorCode: ErrorCode, errorMessage: String? = nil)
    {
      self.topic = topic
      self.partition = partition
      self.errorCode = errorCode
      self.errorMessage = errorMessage
    }

    static let bytesMin = MetaBytesMin.string + 4 + 2 + MetaBytesMin.string
  }

  public init(partitions: [Result]) {
    self.partitions = partitions
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    partitions = try reader.readArray(
      "electPreferredLeadersResponse.partitions", elementBytesMin: Result.bytesMin
    ) { reader in
      Result(
        topic: try reader.readString("electPreferredLeadersResponse.partitions.topic"),
        partition: try reader.readInt32("electPreferredLeadersResponse.partitions.partition"),
        errorCode: ErrorCode(
          rawValue: try reader.readInt16("electPreferredLeadersResponse.partitions.errorCode")),
        errorMessage: try reader.readNullableString(
          "electPreferredLeadersResponse.partitions.errorMessage"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(partitions) { writer, result in
      writer.writeString(result.topic)
      writer.writeInt32(result.partition)
      writer.writeInt16(result.errorCode.rawValue)
      writer.writeMessage(result.errorMessage)
    }
  }
}
