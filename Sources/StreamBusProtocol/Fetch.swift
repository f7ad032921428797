/// Fetch (api key 1): read records from partitions; used by consumers and by follower
/// replicas (replication is a long-poll of Fetch against the leader).
public struct FetchRequest: WireBody {
  public static let apiKey = ApiKey.fetch

  /// -1 for a consumer; the follower's broker id for replication.
  public var replicaId: Int32
  /// The follower's broker epoch (fences fetches from a restarted broker); -1 for consumers.
  public var replicaBrokerEpoch: Int64
  public var maxWaitMs: Int32
  public var minBytes: Int32
  public var maxBytes: Int32
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
    /// -1 when unknown; otherwise a mismatch yields FENCED/UNKNOWN_LEADER_EPOCH.
    public var currentLeaderEpoch: Int32
    public var fetchOffset: Int64
    /// Epoch of the last record the follower has, for divergence detection; -1 = none.
    public var lastFetchedEpoch: Int32
    /// Follower's log start offset; -1 for consumers.
    public var logStartOffset: Int64
    public var partitionMaxBytes: Int32

    public init(
      partition: Int32, currentLeaderEpoch: Int32 = -1, fetchOffset: Int64,
      lastFetchedEpoch: Int32 = -1, logStartOffset: Int64 = -1, partitionMaxBytes: Int32
    ) {
      self.partition = partition
      self.currentLeaderEpoch = currentLeaderEpoch
      self.fetchOffset = fetchOffset
      self.lastFetchedEpoch = lastFetchedEpoch
      self.logStartOffset = logStartOffset
      self.partitionMaxBytes = partitionMaxBytes
    }
  }

  public init(
    replicaId: Int32 = -1, replicaBrokerEpoch: Int64 = -1, maxWaitMs: Int32, minBytes: Int32,
    maxBytes: Int32, topics: [Topic]
  ) {
    self.replicaId = replicaId
    self.replicaBrokerEpoch = replicaBrokerEpoch
    self.maxWaitMs = maxWaitMs
    self.minBytes = minBytes
    self.maxBytes = maxBytes
    self.topics = topics
  }

  static let partitionBytesMin = 4 + 4 + 8 + 4 + 8 + 4
  static let topicBytesMin = EncodedBytesMin.string + EncodedBytesMin.array

  public init(from reader: inout WireReader, version: Int16) throws {
    replicaId = try reader.readInt32("fetch.replicaId")
    replicaBrokerEpoch = try reader.readInt64("fetch.replicaBrokerEpoch")
    maxWaitMs = try reader.readInt32("fetch.maxWaitMs")
    minBytes = try reader.readInt32("fetch.minBytes")
    maxBytes = try reader.readInt32("fetch.maxBytes")
    topics = try reader.readArray("fetch.topics", elementBytesMin: Self.topicBytesMin) {
      reader in
      Topic(
        name: try reader.readString("fetch.topics.name"),
        partitions: try reader.readArray(
          "fetch.topics.partitions", elementBytesMin: Self.partitionBytesMin
        ) { reader in
          return Partition(
            partition: try reader.readInt32("fetch.topics.partitions.partition"),
            currentLeaderEpoch: try reader.readInt32("fetch.topics.partitions.currentLeaderEpoch"),
            fetchOffset: try reader.readInt64("fetch.topics.partitions.fetchOffset"),
            lastFetchedEpoch: try reader.readInt32("fetch.topics.partitions.lastFetchedEpoch"),
            logStartOffset: try reader.readInt64("fetch.topics.partitions.logStartOffset"),
            partitionMaxBytes: try reader.readInt32("fetch.topics.partitions.partitionMaxBytes"))
        })
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(replicaId)
    writer.writeInt64(replicaBrokerEpoch)
    writer.writeInt32(maxWaitMs)
    writer.writeInt32(minBytes)
    writer.writeInt32(maxBytes)
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeArray(topic.partitions) { writer, partition in
        writer.writeInt32(partition.partition)
        writer.writeInt32(partition.currentLeaderEpoch)
        writer.writeInt64(partition.fetchOffset)
        writer.writeInt32(partition.lastFetchedEpoch)
        writer.writeInt64(partition.logStartOffset)
        writer.writeInt32(partition.partitionMaxBytes)
      }
    }
  }
}

public struct FetchResponse: WireBody {
  public static let apiKey = ApiKey.fetch

  public var topics: [Topic]

  public struct Topic: Sendable, Equatable {
    public var name: String
    public var partitions: [Partition]

    public init(name: String, partitions: [Partition]) {
      self.name = name
      self.partitions = partitions
    }
  }

  /// Where the follower's log diverges from the leader's: truncate to `endOffset`.
  public struct EpochEndOffset: Sendable, Equatable {
    public var epoch: Int32
    public var endOffset: Int64

    public init(epoch: Int32, endOffset: Int64) {
      self.epoch = epoch
      self.endOffset = endOffset
    }

    /// Encoded as -1/-1: the follower's log does not diverge.
    public static let none = EpochEndOffset(epoch: -1, endOffset: -1)
  }

  public struct LeaderIdAndEpoch: Sendable, Equatable {
    public var leaderId: Int32
    public var leaderEpoch: Int32

    public init(leaderId: Int32, leaderEpoch: Int32) {
      self.leaderId = leaderId
      self.leaderEpoch = leaderEpoch
    }

    public static let unknown = LeaderIdAndEpoch(leaderId: -1, leaderEpoch: -1)
  }

  public struct Partition: Sendable, Equatable {
    public var partition: Int32
    public var errorCode: ErrorCode
    public var highWatermark: Int64
    public var logStartOffset: Int64
    public var logEndOffset: Int64
    public var divergingEpoch: EpochEndOffset
    public var currentLeader: LeaderIdAndEpoch
    /// Concatenated record batches, opaque to this module.
    public var records: [UInt8]

    public init(
      partition: Int32, errorCode: ErrorCode, highWatermark: Int64, logStartOffset: Int64,
      logEndOffset: Int64, divergingEpoch: EpochEndOffset = .none,
      currentLeader: LeaderIdAndEpoch = .unknown, records: [UInt8]
    ) {
      self.partition = partition
      self.errorCode = errorCode
      self.highWatermark = highWatermark
      self.logStartOffset = logStartOffset
      self.logEndOffset = logEndOffset
      self.divergingEpoch = divergingEpoch
      self.currentLeader = currentLeader
      self.records = records
    }
  }

  public init(topics: [Topic]) {
    self.topics = topics
  }

  static let partitionBytesMin = 4 + 2 + 8 + 8 + 8 + (4 + 8) + (4 + 4) + EncodedBytesMin.bytes
  static let topicBytesMin = EncodedBytesMin.string + EncodedBytesMin.array

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray("fetchResponse.topics", elementBytesMin: Self.topicBytesMin) {
      reader in
      Topic(
        name: try reader.readString("fetchResponse.topics.name"),
        partitions: try reader.readArray(
          "fetchResponse.topics.partitions", elementBytesMin: Self.partitionBytesMin
        ) { reader in
          return Partition(
            partition: try reader.readInt32("fetchResponse.topics.partitions.partition"),
            errorCode: ErrorCode(
              rawValue: try reader.readInt16("fetchResponse.topics.partitions.errorCode")),
            highWatermark: try reader.readInt64("fetchResponse.topics.partitions.highWatermark"),
            logStartOffset: try reader.readInt64("fetchResponse.topics.partitions.logStartOffset"),
            logEndOffset: try reader.readInt64("fetchResponse.topics.partitions.logEndOffset"),
            divergingEpoch: EpochEndOffset(
              epoch: try reader.readInt32("fetchResponse.topics.partitions.divergingEpoch.epoch"),
              endOffset: try reader.readInt64(
                "fetchResponse.topics.partitions.divergingEpoch.endOffset")),
            currentLeader: LeaderIdAndEpoch(
              leaderId: try reader.readInt32(
                "fetchResponse.topics.partitions.currentLeader.leaderId"),
              leaderEpoch: try reader.readInt32(
                "fetchResponse.topics.partitions.currentLeader.leaderEpoch")),
            records: try reader.readBytes("fetchResponse.topics.partitions.records"))
        })
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeArray(topic.partitions) { writer, partition in
        writer.writeInt32(partition.partition)
        writer.writeInt16(partition.errorCode.rawValue)
        writer.writeInt64(partition.highWatermark)
        writer.writeInt64(partition.logStartOffset)
        writer.writeInt64(partition.logEndOffset)
        writer.writeInt32(partition.divergingEpoch.epoch)
        writer.writeInt64(partition.divergingEpoch.endOffset)
        writer.writeInt32(partition.currentLeader.leaderId)
        writer.writeInt32(partition.currentLeader.leaderEpoch)
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
