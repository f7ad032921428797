/// A decoded, uncompressed Kafka v2 record batch.
///
/// Decoding copies keys, values and headers out of the buffer; code that only needs to
/// check or route batches should use `validate` or `RecordBatchScanner`, which do not
/// allocate.
public struct RecordBatch: Equatable, Sendable {
  /// The header as read. `encoded()` recomputes `batchLength`, `recordCount` and `crc`.
  public var header: RecordBatchHeader
  public var records: [Record]

  public init(header: RecordBatchHeader, records: [Record]) {
    self.header = header
    self.records = records
  }

  /// Smallest encoding of one record: length, attributes, timestamp delta, offset delta,
  /// key length, value length and header count, one byte each. Bounds a record count
  /// against the bytes present before anything is allocated for it.
  static let recordByteCountMin = 7

  /// Checks the batch that fills `bytes` exactly: length, magic, record count and CRC.
  /// Does not look inside the records; allocates nothing.
  @discardableResult
  public static func validate(_ bytes: UnsafeRawBufferPointer) throws(RecordsError)
    -> RecordBatchHeader
  {
    let header = try RecordBatchHeader(parsing: bytes)
    guard header.batchLength >= RecordBatchHeader.batchLengthMin else {
      throw RecordsError(
        .invalidLength,
        "batch length \(header.batchLength) is below the minimum \(RecordBatchHeader.batchLengthMin)"
      )
    }
    guard header.totalByteCount <= bytes.count else {
      throw RecordsError(
        .truncated, "batch of \(header.totalByteCount) bytes but only \(bytes.count) present")
    }
    guard header.totalByteCount == bytes.count else {
      throw RecordsError(
        .invalidLength,
        "batch of \(header.totalByteCount) bytes followed by \(bytes.count - header.totalByteCount) extra bytes"
      )
    }
    guard header.magic == RecordBatchHeader.currentMagic else {
      throw RecordsError(.invalidMagic, "magic \(header.magic), only 2 is supported")
    }
    guard header.recordCount >= 0 else {
      throw RecordsError(.invalidCount, "negative record count \(header.recordCount)")
    }
    let payloadByteCount = bytes.count - RecordBatchHeader.byteCount
    if header.compressionBits == 0
      && Int(header.recordCount) > payloadByteCount / recordByteCountMin
    {
      throw RecordsError(
        .invalidCount,
        "record count \(header.recordCount) cannot fit in \(payloadByteCount) bytes")
    }
    let computed = CRC32C.checksum(
      UnsafeRawBufferPointer(rebasing: bytes[RecordBatchHeader.crcCoveredStart...]))
    guard computed == header.crc else {
      throw RecordsError(
        .crcMismatch,
        "CRC-32C mismatch: stored \(hex(header.crc)), computed \(hex(computed))")
    }
    return header
  }

  /// Checks the batch that fills `bytes` exactly.
  @discardableResult
  public static func validate(_ bytes: [UInt8]) throws(RecordsError) -> RecordBatchHeader {
    try bytes.withUnsafeBytes { buffer in Result { () throws(RecordsError) in try validate(buffer) }
    }
    .get()
  }

  /// Validates and decodes the batch that fills `bytes` exactly. Compressed batches throw
  /// `unsupportedCompression` naming the codec rather than being misread.
  public static func decode(_ bytes: UnsafeRawBufferPointer) throws(RecordsError) -> RecordBatch {
    let header = try validate(bytes)
    guard header.compressionBits == 0 else {
      let name = header.compression?.description ?? "codec \(header.compressionBits)"
      throw RecordsError(
        .unsupportedCompression,
        "unsupported compression (\(name)): only uncompressed batches can be decoded")
    }
    var reader = ByteReader(bytes, position: RecordBatchHeader.byteCount)
    var records: [Record] = []
    records.reserveCapacity(Int(header.recordCount))
    for index in 0..<Int(header.recordCount) {
      let length = try reader.readVarint("record length")
      guard length >= 0 else {
        throw RecordsError(.invalidLength, "record \(index) has negative length \(length)")
      }
      try reader.require(Int(length), "record body")
      let bodyStart = reader.position
      reader.position += Int(length)
      var body = ByteReader(
        UnsafeRawBufferPointer(rebasing: bytes[bodyStart..<bodyStart + Int(length)]))
      records.append(try decodeRecord(&body, index: index, header: header))
      guard body.remaining == 0 else {
        throw RecordsError(
          .malformedRecord,
          "record \(index) declares \(length) bytes but its fields use \(body.position)")
      }
    }
    guard reader.remaining == 0 else {
      throw RecordsError(
        .malformedRecord,
        "\(reader.remaining) bytes left after the \(header.recordCount) declared records")
    }
    return RecordBatch(header: header, records: records)
  }

  /// Validates and decodes the batch that fills `bytes` exactly.
  public static func decode(_ bytes: [UInt8]) throws(RecordsError) -> RecordBatch {
    try bytes.withUnsafeBytes { buffer in Result { () throws(RecordsError) in try decode(buffer) } }
      .get()
  }

  private static func decodeRecord(
    _ body: inout ByteReader, index: Int, header: RecordBatchHeader
  ) throws(RecordsError) -> Record {
    let attributes = try body.readInteger(Int8.self, "record attributes")
    let timestampDelta = try body.readVarlong("record timestamp delta")
    let offsetDelta = try body.readVarint("record offset delta")
    let key = try body.readNullableBytes("record key")
    let value = try body.readNullableBytes("record value")
    let headerCount = try body.readVarint("record header count")
    // A header is at least two bytes (key length and value length).
    guard headerCount >= 0, Int(headerCount) <= body.remaining / 2 else {
      throw RecordsError(
        .invalidCount,
        "record \(index) header count \(headerCount) cannot fit in \(body.remaining) bytes")
    }
    var headers: [RecordHeader] = []
    headers.reserveCapacity(Int(headerCount))
    for _ in 0..<Int(headerCount) {
      let keyLength = try body.readVarint("header key length")
      guard keyLength >= 0 else {
        throw RecordsError(
          .malformedRecord, "record \(index) has a header with null or negative key length")
      }
      let keyBytes = try body.readBytes(Int(keyLength), "header key")
      guard let key = String(validating: keyBytes, as: UTF8.self) else {
        throw RecordsError(.malformedRecord, "record \(index) has a header key that is not UTF-8")
      }
      headers.append(RecordHeader(key: key, value: try body.readNullableBytes("header value")))
    }
    return Record(
      offset: header.baseOffset &+ Int64(offsetDelta),
      timestamp: header.baseTimestamp &+ timestampDelta,
      key: key, value: value, headers: headers, attributes: attributes)
  }

  /// Encodes the batch uncompressed, with `batchLength`, `recordCount` and `crc` computed
  /// from the records; every other header field is written as it is. Record offsets and
  /// timestamps are stored as deltas from `header.baseOffset` and `header.baseTimestamp`.
  public func encoded() -> [UInt8] {
    precondition(header.compressionBits == 0, "encoding compressed batches is not supported")
    var estimate = RecordBatchHeader.byteCount
    for record in records {
      estimate += 16 + (record.key?.count ?? 0) + (record.value?.count ?? 0)
      for recordHeader in record.headers {
        estimate += 10 + recordHeader.key.utf8.count + (recordHeader.value?.count ?? 0)
      }
    }
    var writer = ByteWriter(capacity: estimate)
    writer.bytes.append(contentsOf: repeatElement(0, count: RecordBatchHeader.byteCount))
    for record in records {
      let offsetDelta = Int32(truncatingIfNeeded: record.offset &- header.baseOffset)
      let timestampDelta = record.timestamp &- header.baseTimestamp
      var bodySize = 1 + varlongSize(timestampDelta) + varintSize(offsetDelta)
      bodySize += nullableBytesSize(record.key) + nullableBytesSize(record.value)
      bodySize += varintSize(Int32(record.headers.count))
      for recordHeader in record.headers {
        let keySize = recordHeader.key.utf8.count
        bodySize += varintSize(Int32(keySize)) + keySize + nullableBytesSize(recordHeader.value)
      }
      writer.writeVarint(Int32(bodySize))
      writer.writeInteger(record.attributes)
      writer.writeVarlong(timestampDelta)
      writer.writeVarint(offsetDelta)
      writer.writeNullableBytes(record.key)
      writer.writeNullableBytes(record.value)
      writer.writeVarint(Int32(record.headers.count))
      for recordHeader in record.headers {
        writer.writeNullableBytes(Array(recordHeader.key.utf8))
        writer.writeNullableBytes(recordHeader.value)
      }
    }
    var finalHeader = header
    finalHeader.magic = RecordBatchHeader.currentMagic
    finalHeader.batchLength = Int32(writer.bytes.count - RecordBatchHeader.lengthPrefixByteCount)
    finalHeader.recordCount = Int32(records.count)
    writer.bytes.withUnsafeMutableBytes { buffer in
      finalHeader.write(to: buffer)
      let crc = CRC32C.checksum(
        UnsafeRawBufferPointer(rebasing: buffer[RecordBatchHeader.crcCoveredStart...]))
      buffer.storeBytes(
        of: crc.bigEndian, toByteOffset: RecordBatchHeader.crcPosition, as: UInt32.self)
    }
    return writer.bytes
  }
}

private func nullableBytesSize(_ bytes: [UInt8]?) -> Int {
  guard let bytes else { return 1 }
  return varintSize(Int32(bytes.count)) + bytes.count
}

func hex(_ value: UInt32) -> String {
  let digits = String(value, radix: 16)
  return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
