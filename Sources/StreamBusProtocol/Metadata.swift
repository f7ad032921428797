/// Metadata (api key 3): brokers, controller and partition leadership.
public struct MetadataRequest: WireBody {
  public static let apiKey = ApiKey.metadata

  /// Topic names to describe; nil asks for every topic (an empty array asks for none).
  public var topics: [String]?

  public init(topics: [String]?) {
    self.topics = topics
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readNullableArray(
      "metadata.topics", elementBytesMin: EncodedBytesMin.string
    ) { try $0.readString("metadata.topics.name") }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeNullableArray(topics) { $0.writeString($1) }
  }
}

public struct MetadataResponse: WireBody {
  public static let apiKey = ApiKey.metadata

  public var brokers: [Broker]
  public var clusterId: String?
  /// Broker id of the active controller, -1 when unknown.
  public var controllerId: Int32
  public var topics: [Topic]

  public struct Broker: Sendable, Equatable {
    public var nodeId: Int32
    public var host: String
    public var port: Int32
    public var rack: String?

    public init(nodeId: Int32, host: String, port: Int32, rack: String? = nil) {
      self.nodeId = nodeId
      self.host = host
      self.port = port
      self.rack = rack
    }
  }

  public struct Topic: Sendable, Equatable {
    public var errorCode: ErrorCode
    public var name: String
    public var partitions: [Partition]
    public var configs: [Config]

    public init(
      errorCode: ErrorCode = .none, name: String, partitions: [Partition], configs: [Config] = []
    ) {
      self.errorCode = errorCode
      self.name = name
      self.partitions = partitions
      self.configs = configs
    }
  }

  public struct Partition: Sendable, Equatable {
    public var errorCode: ErrorCode
    public var partition: Int32
    /// -1 when the partition has no leader.
    public var leaderId: Int32
    public var leaderEpoch: Int32
    public var replicas: [Int32]
    public var isr: [Int32]
    public var offlineReplicas: [Int32]

    public init(
      errorCode: ErrorCode = .none, partition: Int32, leaderId: Int32, leaderEpoch: Int32,
      replicas: [Int32], isr: [Int32], offlineReplicas: [Int32] = []
    ) {
      self.errorCode = errorCode
      self.partition = partition
      self.leaderId = leaderId
      self.leaderEpoch = leaderEpoch
      self.replicas = replicas
      self.isr = isr
      self.offlineReplicas = offlineReplicas
    }
  }

  public struct Config: Sendable, Equatable {
    public var key: String
    public var value: String

    public init(key: String, value: String) {
      self.key = key
      self.value = value
    }
  }

  public init(brokers: [Broker], clusterId: String?, controllerId: Int32, topics: [Topic]) {
    self.brokers = brokers
    self.clusterId = clusterId
    self.controllerId = controllerId
    self.topics = topics
  }

  static let brokerBytesMin = 4 + EncodedBytesMin.string + 4 + EncodedBytesMin.string
  static let topicBytesMin = 2 + EncodedBytesMin.string + 2 * EncodedBytesMin.array
  static let partitionBytesMin = 2 + 4 + 4 + 4 + 3 * EncodedBytesMin.array
  static let configBytesMin = 2 * EncodedBytesMin.string

  public init(from reader: inout WireReader, version: Int16) throws {
    brokers = try reader.readArray(
      "metadataResponse.brokers", elementBytesMin: Self.brokerBytesMin
    ) { reader in
      return Broker(
        nodeId: try reader.readInt32("metadataResponse.brokers.nodeId"),
        host: try reader.readString("metadataResponse.brokers.host"),
        port: try reader.readInt32("metadataResponse.brokers.port"),
        rack: try reader.readNullableString("metadataResponse.brokers.rack"))
    }
    clusterId = try reader.readNullableString("metadataResponse.clusterId")
    controllerId = try reader.readInt32("metadataResponse.controllerId")
    topics = try reader.readArray("metadataResponse.topics", elementBytesMin: Self.topicBytesMin) {
      reader in
      return Topic(
        errorCode: ErrorCode(rawValue: try reader.readInt16("metadataResponse.topics.errorCode")),
        name: try reader.readString("metadataResponse.topics.name"),
        partitions: try reader.readArray(
          "metadataResponse.topics.partitions", elementBytesMin: Self.partitionBytesMin
        ) { reader in
          return Partition(
            errorCode: ErrorCode(
              rawValue: try reader.readInt16("metadataResponse.topics.partitions.errorCode")),
            partition: try reader.readInt32("metadataResponse.topics.partitions.partition"),
            leaderId: try reader.readInt32("metadataResponse.topics.partitions.leaderId"),
            leaderEpoch: try reader.readInt32("metadataResponse.topics.partitions.leaderEpoch"),
            replicas: try reader.readInt32Array("metadataResponse.topics.partitions.replicas"),
            isr: try reader.readInt32Array("metadataResponse.topics.partitions.isr"),
            offlineReplicas: try reader.readInt32Array(
              "metadataResponse.topics.partitions.offlineReplicas"))
        },
        configs: try reader.readArray(
          "metadataResponse.topics.configs", elementBytesMin: Self.configBytesMin
        ) {
          reader in
          Config(
            key: try reader.readString("metadataResponse.topics.configs.key"),
            value: try reader.readString("metadataResponse.topics.configs.value"))
        })
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(brokers) { writer, broker in
      writer.writeInt32(broker.nodeId)
      writer.writeString(broker.host)
      writer.writeInt32(broker.port)
      writer.writeNullableString(broker.rack)
    }
    writer.writeNullableString(clusterId)
    writer.writeInt32(controllerId)
    writer.writeArray(topics) { writer, topic in
      writer.writeInt16(topic.errorCode.rawValue)
      writer.writeString(topic.name)
      writer.writeArray(topic.partitions) { writer, partition in
        writer.writeInt16(partition.errorCode.rawValue)
        writer.writeInt32(partition.partition)
        writer.writeInt32(partition.leaderId)
        writer.writeInt32(partition.leaderEpoch)
        writer.writeInt32Array(partition.replicas)
        writer.writeInt32Array(partition.isr)
        writer.writeInt32Array(partition.offlineReplicas)
      }
      writer.writeArray(topic.configs) { writer, config in
        writer.writeString(config.key)
        writer.writeString(config.value)
      }
    }
  }

  public var encodedBytesEstimate: Int {
    var size = 64 + brokers.count * 64
    for topic in topics {
      size += 32 + topic.name.utf8.count + topic.configs.count * 64
      for partition in topic.partitions {
        size +=
          Self.partitionBytesMin
          + 4 * (partition.replicas.count + partition.isr.count + partition.offlineReplicas.count)
      }
    }
    return size
  }
}
