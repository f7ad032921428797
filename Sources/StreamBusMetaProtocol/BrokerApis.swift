import StreamBusProtocol

/// A request body of a metaserver API, tied to the body of its answer so a client can
/// decode the answer without a switch.
public protocol MetaRequestBody: WireBody {
  associatedtype Response: WireBody
  /// How long the server may hold this request before answering on purpose (a long poll),
  /// which a client adds to its response timeout.
  var serverWaitMs: Int64 { get }
}

extension MetaRequestBody {
  public var serverWaitMs: Int64 { 0 }
}

// MARK: - BrokerRegister (1100)

/// A broker announces itself at start; the answer carries its new broker epoch.
public struct BrokerRegisterRequest: MetaRequestBody {
  public typealias Response = BrokerRegisterResponse
  public static let apiKey = MetaApiKey.brokerRegister

  public var brokerID: Int32
  /// Random per process start, so the controller tells a restart from a duplicate id.
  public var incarnationID: Int64
  public var endpoints: [MetaEndpoint]
  public var rack: String?
  public var capacity: MetaBrokerCapacity
  /// Random per data directory, kept in it (version 1; 0 = not said): a broker that comes
  /// back with another one has lost its data, and the controller takes it out of its ISRs.
  public var directoryID: Int64

  public init(
    brokerID: Int32, incarnationID: Int64, endpoints: [MetaEndpoint], rack: String?,
    capacity: MetaBrokerCapacity, directoryID: Int64 = 0
  ) {
    self.brokerID = brokerID
    self.incarnationID = incarnationID
    self.endpoints = endpoints
    self.rack = rack
    self.capacity = capacity
    self.directoryID = directoryID
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    brokerID = try reader.readInt32("brokerRegister.brokerID")
    incarnationID = try reader.readInt64("brokerRegister.incarnationID")
    endpoints = try reader.readArray(
      "brokerRegister.endpoints", elementBytesMin: MetaEndpoint.bytesMin
    ) { try MetaEndpoint(from: &$0) }
    rack = try reader.readNullableString("brokerRegister.rack")
    capacity = try MetaBrokerCapacity(from: &reader)
    directoryID = version >= 1 ? try reader.readInt64("brokerRegister.directoryID") : 0
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(brokerID)
    writer.writeInt64(incarnationID)
    writer.writeArray(endpoints) { $1.encode(into: &$0) }
    writer.writeNullableString(rack)
    capacity.encode(into: &writer)
    if version >= 1 {
      writer.writeInt64(directoryID)
    }
  }
}

public struct BrokerRegisterResponse: WireBody {
  public static let apiKey = MetaApiKey.brokerRegister

  /// Strictly larger than every epoch this broker id had before.
  public var brokerEpoch: Int64

  public init(brokerEpoch: Int64) {
    self.brokerEpoch = brokerEpoch
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    brokerEpoch = try reader.readInt64("brokerRegisterResponse.brokerEpoch")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt64(brokerEpoch)
  }
}

// MARK: - BrokerHeartbeat (1101)

public struct BrokerHeartbeatRequest: MetaRequestBody {
  public typealias Response = BrokerHeartbeatResponse
  public static let apiKey = MetaApiKey.brokerHeartbeat

  public var brokerID: Int32
  public var brokerEpoch: Int64
  /// The metadata offset the broker has applied; the controller unfences it once caught up.
  public var appliedMetadataOffset: Int64
  /// The broker is stopping and asks to be moved out of leadership first.
  public var wantShutdown: Bool

  public init(
    brokerID: Int32, brokerEpoch: Int64, appliedMetadataOffset: Int64, wantShutdown: Bool
  ) {
    self.brokerID = brokerID
    self.brokerEpoch = brokerEpoch
    self.appliedMetadataOffset = appliedMetadataOffset
    self.wantShutdown = wantShutdown
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    brokerID = try reader.readInt32("brokerHeartbeat.brokerID")
    brokerEpoch = try reader.readInt64("brokerHeartbeat.brokerEpoch")
    appliedMetadataOffset = try reader.readInt64("brokerHeartbeat.appliedMetadataOffset")
    wantShutdown = try reader.readBool("brokerHeartbeat.wantShutdown")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(brokerID)
    writer.writeInt64(brokerEpoch)
    writer.writeInt64(appliedMetadataOffset)
    writer.writeBool(wantShutdown)
  }
}

public struct BrokerHeartbeatResponse: WireBody {
  public static let apiKey = MetaApiKey.brokerHeartbeat

  public var isFenced: Bool
  /// Controlled shutdown finished: the broker leads nothing and may exit.
  public var shouldShutdown: Bool
  /// The metaserver (Raft) leader's node id, -1 when unknown.
  public var leaderID: Int32

  public init(isFenced: Bool, shouldShutdown: Bool, leaderID: Int32) {
    self.isFenced = isFenced
    self.shouldShutdown = shouldShutdown
    self.leaderID = leaderID
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    isFenced = try reader.readBool("brokerHeartbeatResponse.isFenced")
    shouldShutdown = try reader.readBool("brokerHeartbeatResponse.shouldShutdown")
    leaderID = try reader.readInt32("brokerHeartbeatResponse.leaderID")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeBool(isFenced)
    writer.writeBool(shouldShutdown)
    writer.writeInt32(leaderID)
  }
}

// MARK: - AlterPartition (1102)

/// A partition leader asks to change ISRs; every item carries the epochs it was based on.
public struct AlterPartitionRequest: MetaRequestBody {
  public typealias Response = AlterPartitionResponse
  public static let apiKey = MetaApiKey.alterPartition

  public var brokerID: Int32
  public var brokerEpoch: Int64
  public var partitions: [Item]

  public struct Item: Sendable, Hashable {
    public var topicID: Int64
    public var partition: Int32
    public var leaderEpoch: Int32
    public var partitionEpoch: Int32
    public var newIsr: [Int32]

    public init(
      topicID: Int64, partition: Int32, leaderEpoch: Int32, partitionEpoch: Int32,
      newIsr: [Int32]
    ) {
      self.topicID = topicID
      self.partition = partition
      self.leaderEpoch = leaderEpoch
      self.partitionEpoch = partitionEpoch
      self.newIsr = newIsr
    }

    static let bytesMin = 8 + 4 + 4 + 4 + MetaBytesMin.array
  }

  public init(brokerID: Int32, brokerEpoch: Int64, partitions: [Item]) {
    self.brokerID = brokerID
    self.brokerEpoch = brokerEpoch
    self.partitions = partitions
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    brokerID = try reader.readInt32("alterPartition.brokerID")
    brokerEpoch = try reader.readInt64("alterPartition.brokerEpoch")
    partitions = try reader.readArray("alterPartition.partitions", elementBytesMin: Item.bytesMin) {
      reader in
      Item(
        topicID: try reader.readInt64("alterPartition.partitions.topicID"),
        partition: try reader.readInt32("alterPartition.partitions.partition"),
        leaderEpoch: try reader.readInt32("alterPartition.partitions.leaderEpoch"),
        partitionEpoch: try reader.readInt32("alterPartition.partitions.partitionEpoch"),
        newIsr: try reader.readInt32Array("alterPartition.partitions.newIsr"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(brokerID)
    writer.writeInt64(brokerEpoch)
    writer.writeArray(partitions) { writer, item in
      writer.writeInt64(item.topicID)
      writer.writeInt32(item.partition)
      writer.writeInt32(item.leaderEpoch)
      writer.writeInt32(item.partitionEpoch)
      writer.writeInt32Array(item.newIsr)
    }
  }

  public var encodedBytesEstimate: Int {
    16 + partitions.reduce(0) { $0 + Item.bytesMin + 4 * $1.newIsr.count }
  }
}

public struct AlterPartitionResponse: WireBody {
  public static let apiKey = MetaApiKey.alterPartition

  public var partitions: [Result]

  /// The partition's state after the request: the accepted one, or the current one with the
  /// reason the request was rejected.
  public struct Result: Sendable, Hashable {
    public var topicID: Int64
    public var partition: Int32
    public var errorCode: ErrorCode
    public var leader: Int32
    public var leaderEpoch: Int32
    public var isr: [Int32]
    public var partitionEpoch: Int32

    public init(
      topicID: Int64, partition: Int32, errorCode: ErrorCode, leader: Int32, leaderEpoch: Int32,
      isr: [Int32], partitionEpoch: Int32
    ) {
      self.topicID = topicID
      self.partition = partition
      self.errorCode = errorCode
      self.leader = leader
      self.leaderEpoch = leaderEpoch
      self.isr = isr
      self.partitionEpoch = partitionEpoch
    }

    static let bytesMin = 8 + 4 + 2 + 4 + 4 + MetaBytesMin.array + 4
  }

  public init(partitions: [Result]) {
    self.partitions = partitions
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    partitions = try reader.readArray(
      "alterPartitionResponse.partitions", elementBytesMin: Result.bytesMin
    ) { reader in
      Result(
        topicID: try reader.readInt64("alterPartitionResponse.partitions.topicID"),
        partition: try reader.readInt32("alterPartitionResponse.partitions.partition"),
        errorCode: ErrorCode(
          rawValue: try reader.readInt16("alterPartitionResponse.partitions.errorCode")),
        leader: try reader.readInt32("alterPartitionResponse.partitions.leader"),
        leaderEpoch: try reader.readInt32("alterPartitionResponse.partitions.leaderEpoch"),
        isr: try reader.readInt32Array("alterPartitionResponse.partitions.isr"),
        partitionEpoch: try reader.readInt32("alterPartitionResponse.partitions.partitionEpoch"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(partitions) { writer, result in
      writer.writeInt64(result.topicID)
      writer.writeInt32(result.partition)
      writer.writeInt16(result.errorCode.rawValue)
      writer.writeInt32(result.leader)
      writer.writeInt32(result.leaderEpoch)
      writer.writeInt32Array(result.isr)
      writer.writeInt32(result.partitionEpoch)
    }
  }

  public var encodedBytesEstimate: Int {
    4 + partitions.reduce(0) { $0 + Result.bytesMin + 4 * $1.isr.count }
  }
}

// MARK: - AllocateProducerIds (1103)

public struct AllocateProducerIdsRequest: MetaRequestBody {
  public typealias Response = AllocateProducerIdsResponse
  public static let apiKey = MetaApiKey.allocateProducerIds

  public var brokerID: Int32
  public var brokerEpoch: Int64

  public init(brokerID: Int32, brokerEpoch: Int64) {
    self.brokerID = brokerID
    self.brokerEpoch = brokerEpoch
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    brokerID = try reader.readInt32("allocateProducerIds.brokerID")
    brokerEpoch = try reader.readInt64("allocateProducerIds.brokerEpoch")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(brokerID)
    writer.writeInt64(brokerEpoch)
  }
}

/// The block `firstProducerID ..< firstProducerID + count`, owned by the asking broker.
public struct AllocateProducerIdsResponse: WireBody {
  public static let apiKey = MetaApiKey.allocateProducerIds

  public var firstProducerID: Int64
  public var count: Int32

  public init(firstProducerID: Int64, count: Int32) {
    self.firstProducerID = firstProducerID
    self.count = count
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    firstProducerID = try reader.readInt64("allocateProducerIdsResponse.firstProducerID")
    count = try reader.readInt32("allocateProducerIdsResponse.count")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt64(firstProducerID)
    writer.writeInt32(count)
  }
}

// MARK: - FetchMetadata (1104)

/// Committed metadata after `fromOffset`, waiting up to `maxWaitMs` when there is none yet.
public struct FetchMetadataRequest: MetaRequestBody {
  public typealias Response = FetchMetadataResponse
  public static let apiKey = MetaApiKey.fetchMetadata

  /// Exclusive: the answer holds entries with a larger offset (-1 or 0 = from the start).
  public var fromOffset: Int64
  /// Long-poll bound; 0 answers at once.
  public var maxWaitMs: Int32
  /// Soft bound on the entry bytes in the answer; at least one entry is always sent.
  public var maxBytes: Int32

  public var serverWaitMs: Int64 { Int64(max(maxWaitMs, 0)) }

  public init(fromOffset: Int64, maxWaitMs: Int32, maxBytes: Int32) {
    self.fromOffset = fromOffset
    self.maxWaitMs = maxWaitMs
    self.maxBytes = maxBytes
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    fromOffset = try reader.readInt64("fetchMetadata.fromOffset")
    maxWaitMs = try reader.readInt32("fetchMetadata.maxWaitMs")
    maxBytes = try reader.readInt32("fetchMetadata.maxBytes")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt64(fromOffset)
    writer.writeInt32(maxWaitMs)
    writer.writeInt32(maxBytes)
  }
}

/// One committed Raft entry of the metadata log: its index and its opaque record bytes
/// (decoded by StreamBusMetadata, not here).
public struct MetadataLogEntry: Sendable, Hashable {
  public var offset: Int64
  public var data: [UInt8]

  public init(offset: Int64, data: [UInt8]) {
    self.offset = offset
    self.data = data
  }

  static let bytesMin = 8 + MetaBytesMin.bytes
}

public struct FetchMetadataResponse: WireBody {
  public static let apiKey = MetaApiKey.fetchMetadata

  /// The serving metaserver's commit index (what the fetcher can expect to catch up to).
  public var committedOffset: Int64
  public var content: Content

  public enum Content: Sendable, Hashable {
    /// The entries following `fromOffset`, in order (empty when the wait ran out).
    case entries([MetadataLogEntry])
    /// The entries after `fromOffset` were compacted away: the image as of `offset`.
    case snapshot(offset: Int64, data: [UInt8])
  }

  public init(committedOffset: Int64, content: Content) {
    self.committedOffset = committedOffset
    self.content = content
  }

  private static let entriesTag: Int8 = 0
  private static let snapshotTag: Int8 = 1

  public init(from reader: inout WireReader, version: Int16) throws {
    committedOffset = try reader.readInt64("fetchMetadataResponse.committedOffset")
    let tagOffset = reader.offset
    let tag = try reader.readInt8("fetchMetadataResponse.kind")
    switch tag {
    case Self.entriesTag:
      content = .entries(
        try reader.readArray(
          "fetchMetadataResponse.entries", elementBytesMin: MetadataLogEntry.bytesMin
        ) { reader in
          MetadataLogEntry(
            offset: try reader.readInt64("fetchMetadataResponse.entries.offset"),
            data: try reader.readBytes("fetchMetadataResponse.entries.data"))
        })
    case Self.snapshotTag:
      content = .snapshot(
        offset: try reader.readInt64("fetchMetadataResponse.snapshot.offset"),
        data: try reader.readBytes("fetchMetadataResponse.snapshot.data"))
    default:
      throw ProtocolError(
        .invalidValue, field: "fetchMetadataResponse.kind", offset: tagOffset,
        message: "kind \(tag) is neither entries (0) nor snapshot (1)")
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt64(committedOffset)
    switch content {
    case .entries(let entries):
      writer.writeInt8(Self.entriesTag)
      writer.writeArray(entries) { writer, entry in
        writer.writeInt64(entry.offset)
        writer.writeBytes(entry.data)
      }
    case .snapshot(let offset, let data):
      writer.writeInt8(Self.snapshotTag)
      writer.writeInt64(offset)
      writer.writeBytes(data)
    }
  }

  public var encodedBytesEstimate: Int {
    switch content {
    case .entries(let entries):
      return 13 + entries.reduce(0) { $0 + MetadataLogEntry.bytesMin + $1.data.count }
    case .snapshot(_, let data):
      return 21 + data.count
    }
  }
}
