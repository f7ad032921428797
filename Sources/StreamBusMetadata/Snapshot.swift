import StreamBusProtocol

extension MetadataImage {
  /// Records that rebuild this image from an empty one (offset aside): features, cluster
  /// configs, brokers, topics with their configs and partitions, then the id allocators.
  public func records() -> [MetadataRecord] {
    var records: [MetadataRecord] = []
    for (name, level) in features.sorted(by: { $0.key < $1.key }) {
      records.append(.featureLevel(name: name, level: level))
    }
    for (key, value) in clusterConfigs.sorted(by: { $0.key < $1.key }) {
      records.append(.configChanged(resource: .cluster, key: key, value: value))
    }
    for broker in brokers.values.sorted(by: { $0.id < $1.id }) {
      records.append(
        .brokerRegistered(
          BrokerRegistrationRecord(
            brokerID: broker.id, incarnationID: broker.incarnationID, brokerEpoch: broker.epoch,
            registrationOffset: broker.registrationOffset, endpoints: broker.endpoints,
            rack: broker.rack, capacity: broker.capacity, directoryID: broker.directoryID)))
      if !broker.fenced {
        records.append(.brokerUnfenced(brokerID: broker.id, brokerEpoch: broker.epoch))
      }
      if broker.inControlledShutdown {
        records.append(.brokerControlledShutdown(brokerID: broker.id, brokerEpoch: broker.epoch))
      }
    }
    for topic in topicsByID {
      records.append(.topicCreated(name: topic.name, topicID: topic.id))
      for (key, value) in topic.configs.sorted(by: { $0.key < $1.key }) {
        records.append(.configChanged(resource: .topic(topic.id), key: key, value: value))
      }
      for partition in topic.partitions {
        records.append(.partitionCreated(partition))
      }
    }
    // Last: replay of TopicCreated requires ids at or above the allocator.
    records.append(
      .nextIDs(topicID: nextTopicID, brokerEpoch: nextBrokerEpoch, producerID: nextProducerID))
    return records
  }

  /// "SBMI": StreamBus metadata image.
  static let snapshotMagic: [UInt8] = [0x53, 0x42, 0x4D, 0x49]
  static let snapshotFormatVersion: Int16 = 1

  /// The image as a Raft snapshot: magic, format version i16, offset i64, then
  /// ``records()`` in the batch encoding.
  public func encodeSnapshot() -> [UInt8] {
    let records = records()
    var writer = WireWriter(reservingCapacity: 64 + records.count * 64)
    for byte in Self.snapshotMagic { writer.writeInt8(Int8(bitPattern: byte)) }
    writer.writeInt16(Self.snapshotFormatVersion)
    writer.writeInt64(offset)
    MetadataRecord.writeRecords(records, into: &writer)
    return writer.bytes
  }

  public init(snapshot bytes: [UInt8]) throws(MetadataError) {
    let (offset, records) = try MetadataCodec.run("metadata snapshot") {
      var reader = WireReader(bytes)
      for expected in Self.snapshotMagic {
        let byte = UInt8(bitPattern: try reader.readInt8("snapshot.magic"))
        guard byte == expected else {
          throw MetadataError(
            .invalidSnapshot, "not a metadata snapshot: bad magic at byte \(reader.offset - 1)")
        }
      }
      let version = try reader.readInt16("snapshot.formatVersion")
      guard version == Self.snapshotFormatVersion else {
        throw MetadataError(
          .invalidSnapshot,
          "metadata snapshot format version \(version) is not supported (this build reads "
            + "\(Self.snapshotFormatVersion))")
      }
      let offset = try reader.readInt64("snapshot.offset")
      guard offset >= 0 else {
        throw MetadataError(.invalidSnapshot, "metadata snapshot offset \(offset) is negative")
      }
      let records = try MetadataRecord.readRecords(from: &reader)
      try reader.expectEnd("metadata snapshot")
      return (offset, records)
    }
    try self.init(records: records, offset: offset)
  }
}
