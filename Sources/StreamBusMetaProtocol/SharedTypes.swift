import StreamBusProtocol

// Building blocks shared by several metaserver APIs. They mirror the metadata model
// (docs/metaserver-protocol.md) field for field, so a handler copies values across without
// translation.

/// A listener of a broker: `name` is "client" for clients, "replication" when separate.
public struct MetaEndpoint: Sendable, Hashable {
  public var name: String
  public var host: String
  public var port: Int32

  public init(name: String, host: String, port: Int32) {
    self.name = name
    self.host = host
    self.port = port
  }

  static let bytesMin = 2 * MetaBytesMin.string + 4

  init(from reader: inout WireReader) throws {
    name = try reader.readString("endpoint.name")
    host = try reader.readString("endpoint.host")
    port = try reader.readInt32("endpoint.port")
  }

  func encode(into writer: inout WireWriter) {
    writer.writeString(name)
    writer.writeString(host)
    writer.writeInt32(port)
  }
}

/// What a broker offers for placement decisions.
public struct MetaBrokerCapacity: Sendable, Hashable {
  public var diskBytes: Int64

  public init(diskBytes: Int64) {
    self.diskBytes = diskBytes
  }

  static let bytesMin = 8

  init(from reader: inout WireReader) throws {
    diskBytes = try reader.readInt64("capacity.diskBytes")
  }

  func encode(into writer: inout WireWriter) {
    writer.writeInt64(diskBytes)
  }
}

/// A registered broker as the metadata image holds it.
public struct MetaBroker: Sendable, Hashable {
  public var brokerID: Int32
  /// Random per process start; a new value means the broker restarted.
  public var incarnationID: Int64
  public var epoch: Int64
  public var endpoints: [MetaEndpoint]
  public var rack: String?
  public var capacity: MetaBrokerCapacity
  public var fenced: Bool
  public var inControlledShutdown: Bool

  public init(
    brokerID: Int32, incarnationID: Int64, epoch: Int64, endpoints: [MetaEndpoint],
    rack: String?, capacity: MetaBrokerCapacity, fenced: Bool, inControlledShutdown: Bool
  ) {
    self.brokerID = brokerID
    self.incarnationID = incarnationID
    self.epoch = epoch
    self.endpoints = endpoints
    self.rack = rack
    self.capacity = capacity
    self.fenced = fenced
    self.inControlledShutdown = inControlledShutdown
  }

  static let bytesMin =
    4 + 8 + 8 + MetaBytesMin.array + MetaBytesMin.string + MetaBrokerCapacity.bytesMin + 1 + 1

  init(from reader: inout WireReader) throws {
    brokerID = try reader.readInt32("broker.brokerID")
    incarnationID = try reader.readInt64("broker.incarnationID")
    epoch = try reader.readInt64("broker.epoch")
    endpoints = try reader.readArray("broker.endpoints", elementBytesMin: MetaEndpoint.bytesMin) {
      try MetaEndpoint(from: &$0)
    }
    rack = try reader.readNullableString("broker.rack")
    capacity = try MetaBrokerCapacity(from: &reader)
    fenced = try reader.readBool("broker.fenced")
    inControlledShutdown = try reader.readBool("broker.inControlledShutdown")
  }

  func encode(into writer: inout WireWriter) {
    writer.writeInt32(brokerID)
    writer.writeInt64(incarnationID)
    writer.writeInt64(epoch)
    writer.writeArray(endpoints) { $1.encode(into: &$0) }
    writer.writeNullableString(rack)
    capacity.encode(into: &writer)
    writer.writeBool(fenced)
    writer.writeBool(inControlledShutdown)
  }
}

/// One partition's replica assignment and leadership as the metadata image holds it.
public struct MetaPartition: Sendable, Hashable {
  public var topicID: Int64
  public var partition: Int32
  public var replicas: [Int32]
  public var isr: [Int32]
  /// -1 when the partition has no leader.
  public var leader: Int32
  public var leaderEpoch: Int32
  public var partitionEpoch: Int32
  public var addingReplicas: [Int32]
  public var removingReplicas: [Int32]

  public init(
    topicID: Int64, partition: Int32, replicas: [Int32], isr: [Int32], leader: Int32,
    leaderEpoch: Int32, partitionEpoch: Int32, addingReplicas: [Int32] = [],
    removingReplicas: [Int32] = []
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

  static let bytesMin = 8 + 4 + 4 * MetaBytesMin.array + 4 + 4 + 4

  init(from reader: inout WireReader) throws {
    topicID = try reader.readInt64("partition.topicID")
    partition = try reader.readInt32("partition.partition")
    replicas = try reader.readInt32Array("partition.replicas")
    isr = try reader.readInt32Array("partition.isr")
    leader = try reader.readInt32("partition.leader")
    leaderEpoch = try reader.readInt32("partition.leaderEpoch")
    partitionEpoch = try reader.readInt32("partition.partitionEpoch")
    addingReplicas = try reader.readInt32Array("partition.addingReplicas")
    removingReplicas = try reader.readInt32Array("partition.removingReplicas")
  }

  func encode(into writer: inout WireWriter) {
    writer.writeInt64(topicID)
    writer.writeInt32(partition)
    writer.writeInt32Array(replicas)
    writer.writeInt32Array(isr)
    writer.writeInt32(leader)
    writer.writeInt32(leaderEpoch)
    writer.writeInt32(partitionEpoch)
    writer.writeInt32Array(addingReplicas)
    writer.writeInt32Array(removingReplicas)
  }
}

/// The body of every answer whose header error code is ``ErrorCode/notLeader``, whatever the
/// API: where the client should send the request instead.
public struct NotLeaderBody: Sendable, Hashable {
  /// -1 when this metaserver does not know the leader.
  public var leaderID: Int32
  /// "host:port" of the leader's API listener, when known.
  public var leaderAddress: String?

  public init(leaderID: Int32, leaderAddress: String?) {
    self.leaderID = leaderID
    self.leaderAddress = leaderAddress
  }

  public static let unknownLeader = NotLeaderBody(leaderID: -1, leaderAddress: nil)

  public init(from reader: inout WireReader) throws {
    leaderID = try reader.readInt32("notLeader.leaderID")
    leaderAddress = try reader.readNullableString("notLeader.leaderAddress")
  }

  public func encode(into writer: inout WireWriter) {
    writer.writeInt32(leaderID)
    writer.writeNullableString(leaderAddress)
  }
}

/// Smallest encodings of the wire building blocks, for array count validation.
enum MetaBytesMin {
  static let string = 2
  static let array = 4
  static let bytes = 4
}

extension WireReader {
  /// A string-to-string map sent as an array of (key, value) with keys in strictly ascending
  /// order: one encoding per map (so decode then encode gives the same bytes), no duplicates.
  mutating func readStringMap(_ field: StaticString) throws -> [String: String] {
    var previousKey: String?
    var map: [String: String] = [:]
    let start = offset
    let entries = try readArray(field, elementBytesMin: 2 * MetaBytesMin.string) { reader in
      (try reader.readString(field), try reader.readString(field))
    }
    for (key, value) in entries {
      if let previousKey, !(previousKey < key) {
        throw ProtocolError(
          .invalidValue, field: "\(field)", offset: start,
          message: "key \"\(key)\" after \"\(previousKey)\": keys must be unique and ascending")
      }
      previousKey = key
      map[key] = value
    }
    return map
  }
}

extension WireWriter {
  mutating func writeStringMap(_ map: [String: String]) {
    writeArray(map.sorted { $0.key < $1.key }) { writer, entry in
      writer.writeString(entry.key)
      writer.writeString(entry.value)
    }
  }

  /// Error messages come from descriptions of any length; cut them to the string limit on a
  /// character boundary instead of trapping in the writer.
  mutating func writeMessage(_ message: String?) {
    writeNullableString(message.map(truncatedForWire))
  }
}

/// `message` cut to the longest prefix of whole characters that fits a wire string.
func truncatedForWire(_ message: String) -> String {
  let limit = Int(Int16.max)
  if message.utf8.count <= limit { return message }
  var result = ""
  var used = 0
  for character in message {
    let size = character.utf8.count
    if used + size > limit { break }
    result.append(character)
    used += size
  }
  return result
}
