import StreamBusProtocol

/// Binary encoding of metadata records: `type i16, version i16, body`, big-endian through
/// ``WireWriter``/``WireReader``. A batch (the data of one Raft entry) is an i32 count of
/// length-prefixed records, so every record is checked for trailing bytes on its own.
extension MetadataRecord {
  /// Type tags on disk and on the wire; never renumbered.
  enum RecordType: Int16, CaseIterable {
    case brokerRegistered = 1
    case brokerFenced = 2
    case brokerUnfenced = 3
    case brokerUnregistered = 4
    case brokerControlledShutdown = 5
    case topicCreated = 6
    case topicDeleted = 7
    case partitionCreated = 8
    case partitionChanged = 9
    case configChanged = 10
    case producerIdsAllocated = 11
    case featureLevel = 12
    case nextIDs = 13

    /// The newest body version this build writes; it reads every version up to it.
    var currentVersion: Int16 {
      switch self {
      // 1: the data directory's identity.
      case .brokerRegistered: 1
      default: 0
      }
    }
  }

  var recordType: RecordType {
    switch self {
    case .brokerRegistered: .brokerRegistered
    case .brokerFenced: .brokerFenced
    case .brokerUnfenced: .brokerUnfenced
    case .brokerUnregistered: .brokerUnregistered
    case .brokerControlledShutdown: .brokerControlledShutdown
    case .topicCreated: .topicCreated
    case .topicDeleted: .topicDeleted
    case .partitionCreated: .partitionCreated
    case .partitionChanged: .partitionChanged
    case .configChanged: .configChanged
    case .producerIdsAllocated: .producerIdsAllocated
    case .featureLevel: .featureLevel
    case .nextIDs: .nextIDs
    }
  }

  /// Smallest encoding of a record: type and version.
  static let encodedBytesMin = 4

  public func encoded() -> [UInt8] {
    var writer = WireWriter(reservingCapacity: 64)
    encode(into: &writer)
    return writer.bytes
  }

  /// Strings in records must fit an i16 length; the controller validates lengths before it
  /// builds records, so a longer one here is a caller bug.
  public func encode(into writer: inout WireWriter) {
    writer.writeInt16(recordType.rawValue)
    writer.writeInt16(recordType.currentVersion)
    switch self {
    case .brokerRegistered(let registration):
      writer.writeInt32(registration.brokerID)
      writer.writeInt64(registration.incarnationID)
      writer.writeInt64(registration.brokerEpoch)
      writer.writeInt64(registration.registrationOffset)
      writer.writeArray(registration.endpoints) { writer, endpoint in
        writer.writeString(endpoint.name)
        writer.writeString(endpoint.host)
        writer.writeInt32(endpoint.port)
      }
      writer.writeNullableString(registration.rack)
      writer.writeInt64(registration.capacity.diskBytes)
      writer.writeInt64(registration.directoryID)
    case .brokerFenced(let brokerID, let brokerEpoch),
      .brokerUnfenced(let brokerID, let brokerEpoch),
      .brokerUnregistered(let brokerID, let brokerEpoch),
      .brokerControlledShutdown(let brokerID, let brokerEpoch):
      writer.writeInt32(brokerID)
      writer.writeInt64(brokerEpoch)
    case .topicCreated(let name, let topicID):
      writer.writeString(name)
      writer.writeInt64(topicID)
    case .topicDeleted(let topicID):
      writer.writeInt64(topicID)
    case .partitionCreated(let partition):
      writer.writeInt64(partition.topicID)
      writer.writeInt32(partition.partition)
      writer.writeInt32Array(partition.replicas)
      writer.writeInt32Array(partition.isr)
      writer.writeInt32(partition.leader)
      writer.writeInt32(partition.leaderEpoch)
      writer.writeInt32(partition.partitionEpoch)
      writer.writeInt32Array(partition.addingReplicas)
      writer.writeInt32Array(partition.removingReplicas)
    case .partitionChanged(let change):
      writer.writeInt64(change.topicID)
      writer.writeInt32(change.partition)
      writer.writeInt32(change.partitionEpoch)
      writeOptionalInt32(change.leader, into: &writer)
      writeOptionalInt32(change.leaderEpoch, into: &writer)
      writer.writeNullableArray(change.isr) { $0.writeInt32($1) }
      writer.writeNullableArray(change.replicas) { $0.writeInt32($1) }
      writer.writeNullableArray(change.addingReplicas) { $0.writeInt32($1) }
      writer.writeNullableArray(change.removingReplicas) { $0.writeInt32($1) }
    case .configChanged(let resource, let key, let value):
      switch resource {
      case .cluster:
        writer.writeInt8(0)
      case .topic(let topicID):
        writer.writeInt8(1)
        writer.writeInt64(topicID)
      }
      writer.writeString(key)
      writer.writeNullableString(value)
    case .producerIdsAllocated(let brokerID, let firstID, let count):
      writer.writeInt32(brokerID)
      writer.writeInt64(firstID)
      writer.writeInt32(count)
    case .featureLevel(let name, let level):
      writer.writeString(name)
      writer.writeInt16(level)
    case .nextIDs(let topicID, let brokerEpoch, let producerID):
      writer.writeInt64(topicID)
      writer.writeInt64(brokerEpoch)
      writer.writeInt64(producerID)
    }
  }

  /// Decodes exactly one record; bytes after it are an error.
  public init(decoding bytes: [UInt8]) throws(MetadataError) {
    self = try MetadataCodec.run("metadata record") {
      var reader = WireReader(bytes)
      let record = try MetadataRecord.read(from: &reader)
      try reader.expectEnd("metadata record")
      return record
    }
  }

  static func read(from reader: inout WireReader) throws -> MetadataRecord {
    let typeTag = try reader.readInt16("record.type")
    let version = try reader.readInt16("record.version")
    guard let type = RecordType(rawValue: typeTag) else {
      throw MetadataError(.unknownRecordType, "unknown metadata record type \(typeTag)")
    }
    guard version >= 0 && version <= type.currentVersion else {
      throw MetadataError(
        .unsupportedRecordVersion,
        "metadata record type \(type) version \(version) is not supported (newest "
          + "\(type.currentVersion))")
    }
    switch type {
    case .brokerRegistered:
      let brokerID = try reader.readInt32("brokerRegistered.brokerID")
      let incarnationID = try reader.readInt64("brokerRegistered.incarnationID")
      let brokerEpoch = try reader.readInt64("brokerRegistered.brokerEpoch")
      let registrationOffset = try reader.readInt64("brokerRegistered.registrationOffset")
      let endpoints = try reader.readArray("brokerRegistered.endpoints", elementBytesMin: 8) {
        reader in
        BrokerEndpoint(
          name: try reader.readString("brokerRegistered.endpoints.name"),
          host: try reader.readString("brokerRegistered.endpoints.host"),
          port: try reader.readInt32("brokerRegistered.endpoints.port"))
      }
      let rack = try reader.readNullableString("brokerRegistered.rack")
      let diskBytes = try reader.readInt64("brokerRegistered.capacity.diskBytes")
      let directoryID =
        version >= 1
        ? try reader.readInt64("brokerRegistered.directoryID")
        : BrokerRegistrationRecord.unknownDirectoryID
      return .brokerRegistered(
        BrokerRegistrationRecord(
          brokerID: brokerID, incarnationID: incarnationID, brokerEpoch: brokerEpoch,
          registrationOffset: registrationOffset, endpoints: endpoints, rack: rack,
          capacity: BrokerCapacity(diskBytes: diskBytes), directoryID: directoryID))
    case .brokerFenced, .brokerUnfenced, .brokerUnregistered, .brokerControlledShutdown:
      let brokerID = try reader.readInt32("broker.brokerID")
      let brokerEpoch = try reader.readInt64("broker.brokerEpoch")
      switch type {
      case .brokerFenced: return .brokerFenced(brokerID: brokerID, brokerEpoch: brokerEpoch)
      case .brokerUnfenced: return .brokerUnfenced(brokerID: brokerID, brokerEpoch: brokerEpoch)
      case .brokerUnregistered:
        return .brokerUnregistered(brokerID: brokerID, brokerEpoch: brokerEpoch)
      default:
        return .brokerControlledShutdown(brokerID: brokerID, brokerEpoch: brokerEpoch)
      }
    case .topicCreated:
      let name = try reader.readString("topicCreated.name")
      let topicID = try reader.readInt64("topicCreated.topicID")
      return .topicCreated(name: name, topicID: topicID)
    case .topicDeleted:
      return .topicDeleted(topicID: try reader.readInt64("topicDeleted.topicID"))
    case .partitionCreated:
      return .partitionCreated(
        PartitionRegistration(
          topicID: try reader.readInt64("partitionCreated.topicID"),
          partition: try reader.readInt32("partitionCreated.partition"),
          replicas: try reader.readInt32Array("partitionCreated.replicas"),
          isr: try reader.readInt32Array("partitionCreated.isr"),
          leader: try reader.readInt32("partitionCreated.leader"),
          leaderEpoch: try reader.readInt32("partitionCreated.leaderEpoch"),
          partitionEpoch: try reader.readInt32("partitionCreated.partitionEpoch"),
          addingReplicas: try reader.readInt32Array("partitionCreated.addingReplicas"),
          removingReplicas: try reader.readInt32Array("partitionCreated.removingReplicas")))
    case .partitionChanged:
      return .partitionChanged(
        PartitionChange(
          topicID: try reader.readInt64("partitionChanged.topicID"),
          partition: try reader.readInt32("partitionChanged.partition"),
          partitionEpoch: try reader.readInt32("partitionChanged.partitionEpoch"),
          leader: try readOptionalInt32(from: &reader, "partitionChanged.leader"),
          leaderEpoch: try readOptionalInt32(from: &reader, "partitionChanged.leaderEpoch"),
          isr: try readNullableInt32Array(from: &reader, "partitionChanged.isr"),
          replicas: try readNullableInt32Array(from: &reader, "partitionChanged.replicas"),
          addingReplicas: try readNullableInt32Array(
            from: &reader, "partitionChanged.addingReplicas"),
          removingReplicas: try readNullableInt32Array(
            from: &reader, "partitionChanged.removingReplicas")))
    case .configChanged:
      let resourceStart = reader.offset
      let resourceType = try reader.readInt8("configChanged.resourceType")
      let resource: ConfigResource
      switch resourceType {
      case 0: resource = .cluster
      case 1: resource = .topic(try reader.readInt64("configChanged.topicID"))
      default:
        throw ProtocolError(
          .invalidValue, field: "configChanged.resourceType", offset: resourceStart,
          message: "resource type \(resourceType)")
      }
      let key = try reader.readString("configChanged.key")
      let value = try reader.readNullableString("configChanged.value")
      return .configChanged(resource: resource, key: key, value: value)
    case .producerIdsAllocated:
      return .producerIdsAllocated(
        brokerID: try reader.readInt32("producerIdsAllocated.brokerID"),
        firstID: try reader.readInt64("producerIdsAllocated.firstID"),
        count: try reader.readInt32("producerIdsAllocated.count"))
    case .featureLevel:
      return .featureLevel(
        name: try reader.readString("featureLevel.name"),
        level: try reader.readInt16("featureLevel.level"))
    case .nextIDs:
      return .nextIDs(
        topicID: try reader.readInt64("nextIDs.topicID"),
        brokerEpoch: try reader.readInt64("nextIDs.brokerEpoch"),
        producerID: try reader.readInt64("nextIDs.producerID"))
    }
  }

  // MARK: - Batches

  /// The data of one Raft entry: the records the controller proposes atomically.
  public static func encodeBatch(_ records: [MetadataRecord]) -> [UInt8] {
    var writer = WireWriter(reservingCapacity: 16 + records.count * 48)
    writeRecords(records, into: &writer)
    return writer.bytes
  }

  public static func decodeBatch(_ bytes: [UInt8]) throws(MetadataError) -> [MetadataRecord] {
    try MetadataCodec.run("metadata batch") {
      var reader = WireReader(bytes)
      let records = try readRecords(from: &reader)
      try reader.expectEnd("metadata batch")
      return records
    }
  }

  static func writeRecords(_ records: [MetadataRecord], into writer: inout WireWriter) {
    precondition(records.count <= Int(Int32.max), "more records than an i32 count holds")
    writer.writeInt32(Int32(records.count))
    for record in records {
      let lengthOffset = writer.count
      writer.writeInt32(0)
      record.encode(into: &writer)
      let length = writer.count - lengthOffset - 4
      precondition(length <= Int(Int32.max), "record longer than an i32 length holds")
      writer.patchInt32(Int32(length), at: lengthOffset)
    }
  }

  static func readRecords(from reader: inout WireReader) throws -> [MetadataRecord] {
    try reader.readArray("records", elementBytesMin: 4 + encodedBytesMin) { reader in
      let bytes = try reader.readBytes("records.record")
      var recordReader = WireReader(bytes)
      let record = try MetadataRecord.read(from: &recordReader)
      try recordReader.expectEnd("records.record")
      return record
    }
  }
}

private func writeOptionalInt32(_ value: Int32?, into writer: inout WireWriter) {
  writer.writeBool(value != nil)
  if let value { writer.writeInt32(value) }
}

private func readOptionalInt32(from reader: inout WireReader, _ field: StaticString) throws
  -> Int32?
{
  guard try reader.readBool(field) else { return nil }
  return try reader.readInt32(field)
}

private func readNullableInt32Array(from reader: inout WireReader, _ field: StaticString) throws
  -> [Int32]?
{
  try reader.readNullableArray(field, elementBytesMin: 4) { try $0.readInt32(field) }
}

/// Funnels reader errors into ``MetadataError`` at the public boundary.
enum MetadataCodec {
  static func run<Result>(_ context: String, _ body: () throws -> Result) throws(MetadataError)
    -> Result
  {
    do {
      return try body()
    } catch let error as MetadataError {
      throw error
    } catch let error as ProtocolError {
      throw MetadataError(error, context: context)
    } catch {
      throw MetadataError(.malformed, "\(context): \(error)")
    }
  }
}
