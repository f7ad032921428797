/// ReplicaStatus (api key 1200, internal range): a broker's own view of the partition replicas
/// it hosts, for operators (`sbctl topic describe`). Each broker answers only for itself, so
/// a tool asks the leader (HW, ISR, followers' progress) and every follower (its own log end
/// offset) and puts the answers side by side.
public struct ReplicaStatusRequest: WireBody {
  public static let apiKey = ApiKey.replicaStatus

  /// Topics to report; an empty list means every hosted partition of every topic.
  public var topics: [Topic]

  public struct Topic: Sendable, Equatable {
    public var name: String
    /// Partitions to report; empty means every partition of the topic this broker hosts.
    public var partitions: [Int32]

    public init(name: String, partitions: [Int32] = []) {
      self.name = name
      self.partitions = partitions
    }
  }

  public init(topics: [Topic]) {
    self.topics = topics
  }

  static let topicBytesMin = EncodedBytesMin.string + EncodedBytesMin.array

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray("replicaStatus.topics", elementBytesMin: Self.topicBytesMin) {
      reader in
      Topic(
        name: try reader.readString("replicaStatus.topics.name"),
        partitions: try reader.readInt32Array("replicaStatus.topics.partitions"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeInt32Array(topic.partitions)
    }
  }
}

/// What a replica does for its partition, as ReplicaStatus reports it. Values this build does
/// not know decode as they are (a newer broker may add roles) and print as their number.
public struct ReplicaStatusRole: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public let rawValue: Int8

  public init(rawValue: Int8) {
    self.rawValue = rawValue
  }

  /// Reported with an error code: the broker has no replica to describe.
  public static let none = ReplicaStatusRole(rawValue: -1)
  public static let leader = ReplicaStatusRole(rawValue: 0)
  public static let follower = ReplicaStatusRole(rawValue: 1)
  /// A standalone broker's replica: always the leader; it reports an empty ISR.
  public static let standalone = ReplicaStatusRole(rawValue: 2)

  public var description: String {
    switch self {
    case .none: return "none"
    case .leader: return "leader"
    case .follower: return "follower"
    case .standalone: return "standalone"
    default: return "role(\(rawValue))"
    }
  }
}

public struct ReplicaStatusResponse: WireBody {
  public static let apiKey = ApiKey.replicaStatus

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
    /// UNKNOWN_TOPIC_OR_PARTITION when this broker hosts no replica of the partition; the
    /// other fields are then -1 / empty.
    public var errorCode: ErrorCode
    public var errorMessage: String?
    public var role: ReplicaStatusRole
    public var leaderEpoch: Int32
    public var partitionEpoch: Int32
    /// The ISR as this replica knows it (the leader's is the one that counts).
    public var isr: [Int32]
    public var logStartOffset: Int64
    public var highWatermark: Int64
    public var logEndOffset: Int64
    /// End of the fsynced prefix of the log.
    public var durableEndOffset: Int64
    /// The leader's view of each follower; empty on a follower or a standalone broker.
    public var followers: [Follower]

    public init(
      partition: Int32, errorCode: ErrorCode = .none, errorMessage: String? = nil,
      role: ReplicaStatusRole, leaderEpoch: Int32, partitionEpoch: Int32, isr: [Int32],
      logStartOffset: Int64, highWatermark: Int64, logEndOffset: Int64, durableEndOffset: Int64,
      followers: [Follower] = []
    ) {
      self.partition = partition
      self.errorCode = errorCode
      self.errorMessage = errorMessage
      self.role = role
      self.leaderEpoch = leaderEpoch
      self.partitionEpoch = partitionEpoch
      self.isr = isr
      self.logStartOffset = logStartOffset
      self.highWatermark = highWatermark
      self.logEndOffset = logEndOffset
      self.durableEndOffset = durableEndOffset
      self.followers = followers
    }

    /// The answer for a partition this broker cannot describe.
    public static func failure(partition: Int32, _ errorCode: ErrorCode, message: String?)
      -> Partition
    {
      Partition(
        partition: partition, errorCode: errorCode, errorMessage: message, role: .none,
        leaderEpoch: -1, partitionEpoch: -1, isr: [], logStartOffset: -1, highWatermark: -1,
        logEndOffset: -1, durableEndOffset: -1)
    }
  }

  public struct Follower: Sendable, Equatable {
    public var brokerID: Int32
    /// The follower's durable log end offset as of its last fetch (-1 before any fetch).
    public var logEndOffset: Int64
    /// Wall-clock ms when the follower was last caught up with the leader (-1: never).
    public var lastCaughtUpMs: Int64

    public init(brokerID: Int32, logEndOffset: Int64, lastCaughtUpMs: Int64) {
      self.brokerID = brokerID
      self.logEndOffset = logEndOffset
      self.lastCaughtUpMs = lastCaughtUpMs
    }
  }

  public init(topics: [Topic]) {
    self.topics = topics
  }

  static let followerBytesMin = 4 + 8 + 8
  // partition, errorCode, errorMessage, role, two epochs, isr, four offsets, followers
  static let partitionBytesMin =
    4 + 2 + EncodedBytesMin.string + 1 + 4 + 4 + EncodedBytesMin.array + 4 * 8
    + EncodedBytesMin.array
  static let topicBytesMin = EncodedBytesMin.string + EncodedBytesMin.array

  public init(from reader: inout WireReader, version: Int16) throws {
    topics = try reader.readArray(
      "replicaStatusResponse.topics", elementBytesMin: Self.topicBytesMin
    ) { reader in
      Topic(
        name: try reader.readString("replicaStatusResponse.topics.name"),
        partitions: try reader.readArray(
          "replicaStatusResponse.topics.partitions", elementBytesMin: Self.partitionBytesMin
        ) { reader in
          Partition(
            partition: try reader.readInt32("replicaStatusResponse.topics.partitions.partition"),
            errorCode: ErrorCode(
              rawValue: try reader.readInt16("replicaStatusResponse.topics.partitions.errorCode")),
            errorMessage: try reader.readNullableString(
              "replicaStatusResponse.topics.partitions.errorMessage"),
            role: ReplicaStatusRole(
              rawValue: try reader.readInt8("replicaStatusResponse.topics.partitions.role")),
            leaderEpoch: try reader.readInt32(
              "replicaStatusResponse.topics.partitions.leaderEpoch"),
            partitionEpoch: try reader.readInt32(
              "replicaStatusResponse.topics.partitions.partitionEpoch"),
            isr: try reader.readInt32Array("replicaStatusResponse.topics.partitions.isr"),
            logStartOffset: try reader.readInt64(
              "replicaStatusResponse.topics.partitions.logStartOffset"),
            highWatermark: try reader.readInt64(
              "replicaStatusResponse.topics.partitions.highWatermark"),
            logEndOffset: try reader.readInt64(
              "replicaStatusResponse.topics.partitions.logEndOffset"),
            durableEndOffset: try reader.readInt64(
              "replicaStatusResponse.topics.partitions.durableEndOffset"),
            followers: try reader.readArray(
              "replicaStatusResponse.topics.partitions.followers",
              elementBytesMin: Self.followerBytesMin
            ) { reader in
              Follower(
                brokerID: try reader.readInt32(
                  "replicaStatusResponse.topics.partitions.followers.brokerID"),
                logEndOffset: try reader.readInt64(
                  "replicaStatusResponse.topics.partitions.followers.logEndOffset"),
                lastCaughtUpMs: try reader.readInt64(
                  "replicaStatusResponse.topics.partitions.followers.lastCaughtUpMs"))
            })
        })
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(topics) { writer, topic in
      writer.writeString(topic.name)
      writer.writeArray(topic.partitions) { writer, partition in
        writer.writeInt32(partition.partition)
        writer.writeInt16(partition.errorCode.rawValue)
        writer.writeErrorMessage(partition.errorMessage)
        writer.writeInt8(partition.role.rawValue)
        writer.writeInt32(partition.leaderEpoch)
        writer.writeInt32(partition.partitionEpoch)
        writer.writeInt32Array(partition.isr)
        writer.writeInt64(partition.logStartOffset)
        writer.writeInt64(partition.highWatermark)
        writer.writeInt64(partition.logEndOffset)
        writer.writeInt64(partition.durableEndOffset)
        writer.writeArray(partition.followers) { writer, follower in
          writer.writeInt32(follower.brokerID)
          writer.writeInt64(follower.logEndOffset)
          writer.writeInt64(follower.lastCaughtUpMs)
        }
      }
    }
  }

  public var encodedBytesEstimate: Int {
    topics.reduce(4) { total, topic in
      total + 6 + topic.name.utf8.count
        + topic.partitions.reduce(0) {
          $0 + Self.partitionBytesMin + 4 * $1.isr.count + Self.followerBytesMin
            * $1.followers.count + ($1.errorMessage?.utf8.count ?? 0)
        }
    }
  }
}
