/// ListOffsets (api key 2): find the offset for a timestamp, or the earliest/latest offset.
public struct ListOffsetsRequest: WireBody {
  public static let apiKey = ApiKey.listOffsets

  /// Timestamp sentinel: the log end offset (next offset to be written).
  public static let latestTimestamp: Int64 = -1
  /// Timestamp sentinel: the log start offset.
  public static let earliestTimestamp: Int64 = -2

  /// -1 for a consumer; a broker id when a replica asks.
  public var replicaId: Int32
  public var topics: [Topic]

  public struct Topic: Sendable, Equatable {
    public var name: String
    public var partitions: [Partition]

    public init(name: String, partitions: [Partition]) {
      self.name = name
      self.partitions = partitions
    }
  }

  public struct Partition: Sendable, Equatable {
    public var partition: Int32
    public var currentLeaderEpoch: Int32
    /// Milliseconds since the epoch, or ``latestTimestamp`` / ``earliestTimestamp``.
    public var timestamp: Int64

    public init(partition: Int32, currentLeaderEpoch: Int32 = -1, timestamp: Int64) {
      self.partition = partition
      self.currentLeaderEpoch = currentLeaderEpoch
      self.timestamp = timestamp
    }
  }

  public init(replicaId: Int32 = -1, topics: [Topic]) {
    self.replicaId = replicaId
    self.topics = topics
  }

  static let partitionBytesMin = 4 + 4 + 8
  static let topicBytesMin = EncodedBytesMin.string + EncodedBytesMin.array

  public init(from reader: inout WireReader, version: Int16) throws {
    replicaId = try reader.readInt32("listOffsets.replicaId")
    topics = try reader.readArray("listOffsets.topics", elementBytesMin: Self.topicBytesMin) {
      reader in
      Topic(
        name: try reader.readString("listOffsets.topics.name"),
        partitions: try reader.readArray(
          "listOffsets.topics.partitions", elementBytesMin: Self.partitionBytesMin
        ) { reader in
          return Partition(
            partition: try reader.readInt32("listOffsets.topics.partitions.partition"),
            currentLeaderEpoch: try reader.readInt32(
              "listOffsets.topics.partitions.currentLeaderEpoch"),
            timestamp: try reader.readInt64("listOffsets.topics.partitions.timestamp"))
        })
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(replicaId)
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeArray(topic.partitions) { writer, partition in
        writer.writeInt32(partition.partition)
        writer.writeInt32(partition.currentLeaderEpoch)
        writer.writeInt64(partition.timestamp)
      }
    }
  }
}

public struct ListOffsetsResponse: WireBody {
  public static let apiKey = ApiKey.listOffsets

  public var topics: [Topic]

  public struct Topic: Sendable, Equatable {
    public var name: String
    public var partitions: [Partition]

    public init(name: String, partitions: [Partition]) {
      self.name = name
      self.partitions = partitions
    }
  }

  public struct Partition: Sendable, Equatable {
    public var partition: Int32
    public var errorCode: ErrorCode
    /// Timestamp of the found record, or -1 for the earliest/latest sentinels.
    public var timestamp: Int64
    public var offset: Int64
    public var leaderEpoch: Int32

    public init(
      partition: Int32, errorCode: ErrorCode, timestamp: Int64, offset: Int64, leaderEpoch: Int32
    ) {
      self.partition = partition
      self.errorCode = errorCode
      self.timestamp = timestamp
      self.offset = offset
      self.leaderEpoch = leaderEpoch
    }
  }

  public init(topics: [Topic]) {
    self.topics = topics
  }

  static let partitionBytesMin = 4 + 2 + 8 + 8 + 4
  static let topicBytesMin = EncodedBytesMin.string + EncodedBytesMin.array

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray(
      "listOffsetsResponse.topics", elementBytesMin: Self.topicBytesMin
    ) { reader in
      Topic(
        name: try reader.readString("listOffsetsResponse.topics.name"),
        partitions: try reader.readArray(
          "listOffsetsResponse.topics.partitions", elementBytesMin: Self.partitionBytesMin
        ) { reader in
          return Partition(
            partition: try reader.readInt32("listOffsetsResponse.topics.partitions.partition"),
            errorCode: ErrorCode(
              rawValue: try reader.readInt16("listOffsetsResponse.topics.partitions.errorCode")),
            timestamp: try reader.readInt64("listOffsetsResponse.topics.partitions.timestamp"),
            offset: try reader.readInt64("listOffsetsResponse.topics.partitions.offset"),
            leaderEpoch: try reader.readInt32("listOffsetsResponse.topics.partitions.leaderEpoch"))
        })
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeArray(topic.partitions) { writer, partition in
        writer.writeInt32(partition.partition)
        writer.writeInt16(partition.errorCode.rawValue)
        writer.writeInt64(partition.timestamp)
        writer.writeInt64(partition.offset)
        writer.writeInt32(partition.leaderEpoch)
      }
    }
  }
}
