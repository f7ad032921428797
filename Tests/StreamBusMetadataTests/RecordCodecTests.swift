import StreamBusProtocol
import Testing

@testable import StreamBusMetadata

/// One record of every type, with optional fields both set and unset somewhere.
let sampleRecords: [MetadataRecord] = [
  .brokerRegistered(
    BrokerRegistrationRecord(
      brokerID: 3, incarnationID: -77, brokerEpoch: 12,
      endpoints: [
        BrokerEndpoint(name: "client", host: "10.0.0.3", port: 9092),
        BrokerEndpoint(name: "replication", host: "10.1.0.3", port: 9093),
      ], rack: "rack-a", capacity: BrokerCapacity(diskBytes: 1 << 40),
      directoryID: 0x1234_5678_9ABC)),
  .brokerRegistered(
    BrokerRegistrationRecord(
      brokerID: 4, incarnationID: 5, brokerEpoch: 13, registrationOffset: 99,
      endpoints: [BrokerEndpoint(name: "client", host: "h", port: 1)], rack: nil,
      capacity: BrokerCapacity(diskBytes: 0))),
  .brokerFenced(brokerID: 3, brokerEpoch: 12),
  .brokerUnfenced(brokerID: 3, brokerEpoch: 12),
  .brokerUnregistered(brokerID: 4, brokerEpoch: 13),
  .brokerControlledShutdown(brokerID: 3, brokerEpoch: 12),
  .topicCreated(name: "orders.v1", topicID: 42),
  .topicDeleted(topicID: 42),
  .partitionCreated(
    PartitionRegistration(
      topicID: 42, partition: 0, replicas: [3, 4, 5], isr: [3, 5], leader: 3, leaderEpoch: 2,
      partitionEpoch: 7, addingReplicas: [5], removingReplicas: [4])),
  .partitionChanged(PartitionChange(topicID: 42, partition: 1, partitionEpoch: 8)),
  .partitionChanged(
    PartitionChange(
      topicID: 42, partition: 1, partitionEpoch: 9, leader: -1, leaderEpoch: 3, isr: [],
      replicas: [1, 2], addingReplicas: [2], removingReplicas: [])),
  .configChanged(resource: .cluster, key: "default.replication.factor", value: "3"),
  .configChanged(resource: .topic(42), key: "retention.ms", value: nil),
  .producerIdsAllocated(brokerID: 3, firstID: 1_000, count: 1_000),
  .featureLevel(name: "metadata.version", level: 1),
  .nextIDs(topicID: 43, brokerEpoch: 14, producerID: 2_000),
]

@Suite struct RecordCodecTests {
  @Test func samplesCoverEveryRecordType() {
    let covered = Set(sampleRecords.map(\.recordType))
    #expect(covered == Set(MetadataRecord.RecordType.allCases))
  }

  @Test func everyRecordTypeRoundTrips() throws {
    for record in sampleRecords {
      let bytes = record.encoded()
      #expect(try MetadataRecord(decoding: bytes) == record)
      #expect(Int16(bytes[0]) << 8 | Int16(bytes[1]) == record.recordType.rawValue)
      let version = Int16(bytes[2]) << 8 | Int16(bytes[3])
      #expect(version == record.recordType.currentVersion)
    }
  }

  @Test func batchRoundTrips() throws {
    #expect(try MetadataRecord.decodeBatch(MetadataRecord.encodeBatch([])).isEmpty)
    let bytes = MetadataRecord.encodeBatch(sampleRecords)
    #expect(try MetadataRecord.decodeBatch(bytes) == sampleRecords)
  }

  @Test func everyTruncationOfARecordThrowsTruncated() {
    for record in sampleRecords {
      let bytes = record.encoded()
      for length in 0..<bytes.count {
        let error = #expect(throws: MetadataError.self) {
          try MetadataRecord(decoding: Array(bytes[0..<length]))
        }
        #expect(
          error?.code == .truncated, "\(record) cut at \(length): \(String(describing: error))")
      }
    }
  }

  @Test func everyTruncationOfABatchThrows() {
    let bytes = MetadataRecord.encodeBatch(sampleRecords)
    for length in 0..<bytes.count {
      #expect(throws: MetadataError.self) {
        try MetadataRecord.decodeBatch(Array(bytes[0..<length]))
      }
    }
  }

  @Test func trailingBytesAreRejected() {
    for record in sampleRecords {
      let error = #expect(throws: MetadataError.self) {
        try MetadataRecord(decoding: record.encoded() + [0])
      }
      #expect(error?.code == .trailingBytes)
    }
    let batchError = #expect(throws: MetadataError.self) {
      try MetadataRecord.decodeBatch(MetadataRecord.encodeBatch(sampleRecords) + [1, 2])
    }
    #expect(batchError?.code == .trailingBytes)
  }

  @Test func trailingBytesInsideOneBatchedRecordAreRejected() {
    // A record whose length prefix claims one byte more than its body.
    var writer = WireWriter()
    writer.writeInt32(1)
    let body = MetadataRecord.topicDeleted(topicID: 5).encoded() + [0]
    writer.writeBytes(body)
    let error = #expect(throws: MetadataError.self) {
      try MetadataRecord.decodeBatch(writer.bytes)
    }
    #expect(error?.code == .trailingBytes)
  }

  @Test func unknownRecordTypeIsRejected() {
    var bytes = MetadataRecord.topicDeleted(topicID: 5).encoded()
    bytes[0] = 0x7F
    let error = #expect(throws: MetadataError.self) { try MetadataRecord(decoding: bytes) }
    #expect(error?.code == .unknownRecordType)
    #expect(error?.message.contains("32519") == true, "\(String(describing: error))")
  }

  @Test func versionZeroBrokerRegistrationReadsAsUnknownDirectory() throws {
    let record = BrokerRegistrationRecord(
      brokerID: 3, incarnationID: 9, brokerEpoch: 12,
      endpoints: [BrokerEndpoint(name: "client", host: "h", port: 1)], rack: nil,
      capacity: BrokerCapacity(diskBytes: 7), directoryID: 55)
    var bytes = MetadataRecord.brokerRegistered(record).encoded()
    #expect(bytes[2...3] == [0, 1], "brokerRegistered is written as version 1")
    // Version 0 is the same body without the trailing directory id.
    bytes.removeLast(8)
    bytes[3] = 0
    var expected = record
    expected.directoryID = BrokerRegistrationRecord.unknownDirectoryID
    #expect(try MetadataRecord(decoding: bytes) == .brokerRegistered(expected))
  }

  @Test func unknownRecordVersionIsRejected() {
    for version: Int16 in [1, -1] {
      var bytes = MetadataRecord.topicDeleted(topicID: 5).encoded()
      bytes[2] = UInt8(truncatingIfNeeded: version >> 8)
      bytes[3] = UInt8(truncatingIfNeeded: version)
      let error = #expect(throws: MetadataError.self) { try MetadataRecord(decoding: bytes) }
      #expect(error?.code == .unsupportedRecordVersion)
    }
  }

  @Test func outOfDomainFieldsAreMalformed() {
    // PartitionChanged with a presence byte of 2 for `leader`.
    var writer = WireWriter()
    writer.writeInt16(MetadataRecord.RecordType.partitionChanged.rawValue)
    writer.writeInt16(0)
    writer.writeInt64(1)
    writer.writeInt32(0)
    writer.writeInt32(1)
    writer.writeInt8(2)
    let error = #expect(throws: MetadataError.self) { try MetadataRecord(decoding: writer.bytes) }
    #expect(error?.code == .malformed)

    // ConfigChanged with resource type 9.
    var config = WireWriter()
    config.writeInt16(MetadataRecord.RecordType.configChanged.rawValue)
    config.writeInt16(0)
    config.writeInt8(9)
    config.writeString("k")
    config.writeNullableString(nil)
    let configError = #expect(throws: MetadataError.self) {
      try MetadataRecord(decoding: config.bytes)
    }
    #expect(configError?.code == .malformed)
  }

  @Test func hugeBatchCountIsRejectedBeforeAllocating() {
    var writer = WireWriter()
    writer.writeInt32(Int32.max)
    writer.writeBytes(MetadataRecord.topicDeleted(topicID: 5).encoded())
    let error = #expect(throws: MetadataError.self) {
      try MetadataRecord.decodeBatch(writer.bytes)
    }
    #expect(error?.code == .truncated)
  }

  @Test func randomBytesNeverTrap() {
    var random = SeededGenerator(seed: 0xC0DEC)
    for _ in 0..<3_000 {
      let length = Int.random(in: 0...96, using: &random)
      var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
      // Half the time start with a real type tag so decoding gets past the header.
      if length >= 4 && Bool.random(using: &random) {
        bytes[0] = 0
        bytes[1] = UInt8.random(in: 1...13, using: &random)
        bytes[2] = 0
        bytes[3] = 0
      }
      _ = try? MetadataRecord(decoding: bytes)
      _ = try? MetadataRecord.decodeBatch(bytes)
    }
  }

  @Test func mutatedBatchesNeverTrap() {
    var random = SeededGenerator(seed: 0xBA7C4)
    let valid = MetadataRecord.encodeBatch(sampleRecords)
    for _ in 0..<2_000 {
      var bytes = valid
      for _ in 0..<Int.random(in: 1...4, using: &random) {
        bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(
          in: 0...255, using: &random)
      }
      if let records = try? MetadataRecord.decodeBatch(bytes) {
        // Whatever decodes re-encodes to the same bytes: the encoding is canonical.
        #expect(MetadataRecord.encodeBatch(records) == bytes)
      }
    }
  }
}
