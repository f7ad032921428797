/// Produce (api key 0): append record batches to partitions.
public struct ProduceRequest: WireBody {
  public static let apiKey = ApiKey.produce

  /// 0: no response is awaited; 1: the leader appended; -1: all in-sync replicas have it.
  public var acks: Int16
  public var timeoutMs: Int32
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
    /// Concatenated record batches, opaque to this module.
    public var records: [UInt8]

    public init(partition: Int32, records: [UInt8]) {
      self.partition = partition
      self.records = records
    }
  }

  public init(acks: Int16, timeoutMs: Int32, topics: [Topic]) {
    self.acks = acks
    self.timeoutMs = timeoutMs
    self.topics = topics
  }

  static let partitionBytesMin = 4 + EncodedBytesMin.bytes
  static let topicBytesMin = EncodedBytesMin.string + EncodedBytesMin.array

  public init(from reader: inout WireReader, version: Int16) throws {
    acks = try reader.readInt16("produce.acks")
    timeoutMs = try reader.readInt32("produce.timeoutMs")
    topics = try reader.readArray("produce.topics", elementBytesMin: Self.topicBytesMin) {
      reader in
      Topic(
        name: try reader.readString("produce.topics.name"),
        partitions: try reader.readArray(
          "produce.topics.partitions", elementBytesMin: Self.partitionBytesMin
        ) { reader in
          Partition(
            partition: try reader.readInt32("produce.topics.partitions.partition"),
            records: try reader.readBytes("produce.topics.partitions.records"))
        })
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt16(acks)
    writer.writeInt32(timeoutMs)
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeArray(topic.partitions) { writer, partition in
        writer.writeInt32(partition.partition)
        writer.writeBytes(partition.records)
      }
    }
  }

  public var encodedBytesEstimate: Int {
    var size = 16
    for topic in topics {
      size += 8 + topic.name.utf8.count
      for partition in topic.partitions {
        size += Self.partitionBytesMin + partition.records.count
      }
    }
    return size
  }
}

public struct ProduceResponse: WireBody {
  public static let apiKey = ApiKey.produce

  public var topics: [Topic]
  public var throttleTimeMs: Int32

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
    public var errorMessage: String?
    /// Offset of the first appended record; -1 on error or acks=0.
    public var baseOffset: Int64
    public var logStartOffset: Int64
    /// Broker append time when the topic uses log-append time, else -1.
    public var logAppendTimeMs: Int64

    public init(
      partition: Int32, errorCode: ErrorCode, errorMessage: String? = nil, baseOffset: Int64,
      logStartOffset: Int64, logAppendTimeMs: Int64
    ) {
      self.partition = partition
      self.errorCode = errorCode
      self.errorMessage = errorMessage
      self.baseOffset = baseOffset
      self.logStartOffset = logStartOffset
      self.logAppendTimeMs = logAppendTimeMs
    }
  }

  public init(topics: [Topic], throttleTimeMs: Int32 = 0) {
    self.topics = topics
    self.throttleTimeMs = throttleTimeMs
  }

  static let partitionBytesMin = 4 + 2 + EncodedBytesMin.string + 8 + 8 + 8
  static let topicBytesMin = EncodedBytesMin.string + EncodedBytesMin.array

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray("produceResponse.topics", elementBytesMin: Self.topicBytesMin) {
      reader in
      Topic(
        name: try reader.readString("produceResponse.topics.name"),
        partitions: try reader.readArray(
          "produceResponse.topics.partitions", elementBytesMin: Self.partitionBytesMin
        ) { reader in
          return Partition(
            partition: try reader.readInt32("produceResponse.topics.partitions.partition"),
            errorCode: ErrorCode(
              rawValue: try reader.readInt16("produceResponse.topics.partitions.errorCode")),
            errorMessage: try reader.readNullableString(
              "produceResponse.topics.partitions.errorMessage"),
            baseOffset: try reader.readInt64("produceResponse.topics.partitions.baseOffset"),
            logStartOffset: try reader.readInt64(
              "produceResponse.topics.partitions.logStartOffset"),
            logAppendTimeMs: try reader.readInt64(
              "produceResponse.topics.partitions.logAppendTimeMs"))
        })
    }
    throttleTimeMs = try reader.readInt32("produceResponse.throttleTimeMs")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeArray(topic.partitions) { writer, partition in
        writer.writeInt32(partition.partition)
        writer.writeInt16(partition.errorCode.rawValue)
        writer.writeErrorMessage(partition.errorMessage)
        writer.writeInt64(partition.baseOffset)
        writer.writeInt64(partition.logStartOffset)
        writer.writeInt64(partition.logAppendTimeMs)
      }
    }
    writer.writeInt32(throttleTimeMs)
  }
}
