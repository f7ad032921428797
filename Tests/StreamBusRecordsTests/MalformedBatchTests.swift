import Testing

@testable import StreamBusRecords

/// Hostile or damaged input: every case must throw a `RecordsError`, never trap.
@Suite struct MalformedBatchTests {
  func expectError(
    _ bytes: [UInt8], _ code: RecordsError.Code? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    let error = #expect(throws: RecordsError.self, sourceLocation: sourceLocation) {
      try RecordBatch.decode(bytes)
    }
    if let code { #expect(error?.code == code, sourceLocation: sourceLocation) }
  }

  @Test func truncatedAtEveryByte() {
    let bytes = sampleBatch(records: 4)
    for cut in 0..<bytes.count {
      expectError(Array(bytes[..<cut]), .truncated)
    }
  }

  @Test func everySingleBitFlipIsCaught() {
    let bytes = sampleBatch(records: 2)
    // Flips inside the CRC-covered range or the CRC itself must be detected; the base offset
    // and epoch are outside it by design, and a flipped length reads as truncation/extra bytes.
    for position in RecordBatchHeader.magicPosition..<bytes.count {
      for bit in 0..<8 {
        var damaged = bytes
        damaged[position] ^= UInt8(1 << bit)
        expectError(damaged)
      }
    }
  }

  @Test func badCRC() {
    var bytes = sampleBatch()
    bytes[RecordBatchHeader.crcPosition] ^= 0xFF
    expectError(bytes, .crcMismatch)
  }

  @Test func badMagic() {
    var bytes = sampleBatch()
    bytes[RecordBatchHeader.magicPosition] = 1
    expectError(bytes, .invalidMagic)
  }

  @Test func lengthBeyondBufferAndBelowMinimum() {
    var bytes = sampleBatch()
    bytes.withUnsafeMutableBytes {
      $0.storeBytes(of: Int32(10_000).bigEndian, toByteOffset: 8, as: Int32.self)
    }
    expectError(bytes, .truncated)
    bytes.withUnsafeMutableBytes {
      $0.storeBytes(of: Int32(-1).bigEndian, toByteOffset: 8, as: Int32.self)
    }
    expectError(bytes, .invalidLength)
    bytes.withUnsafeMutableBytes {
      $0.storeBytes(of: Int32(48).bigEndian, toByteOffset: 8, as: Int32.self)
    }
    expectError(bytes, .invalidLength)
    expectError(sampleBatch() + [0], .invalidLength)
  }

  @Test(arguments: [Int32(-1), .min, .max, 4, 2])
  func wrongRecordCounts(_ count: Int32) {
    var bytes = sampleBatch(records: 3)
    bytes.withUnsafeMutableBytes {
      $0.storeBytes(of: count.bigEndian, toByteOffset: 57, as: Int32.self)
    }
    resealCRC(&bytes)
    expectError(bytes)
  }

  /// Offset of the first record's length varint, and of its body.
  let firstRecord = RecordBatchHeader.byteCount

  @Test func recordLengthBeyondBatch() {
    var bytes = sampleBatch(records: 1)
    bytes[firstRecord] = 0x7E  // zigzag 63, more than the batch holds
    resealCRC(&bytes)
    expectError(bytes, .truncated)
  }

  @Test func negativeRecordLength() {
    var bytes = sampleBatch(records: 1)
    bytes[firstRecord] = 0x01  // zigzag -1
    resealCRC(&bytes)
    expectError(bytes, .invalidLength)
  }

  @Test func overlongVarintInRecord() {
    // A single record whose offset delta is an over-long varint; lengths kept consistent.
    var body: [UInt8] = [0x00, 0x00]  // attributes, timestamp delta 0
    body += [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]  // offset delta: 6 bytes
    body += [0x01, 0x01, 0x00]  // null key, null value, 0 headers
    expectError(handmadeBatch(records: [body]), .invalidVarint)
  }

  @Test func hugeHeaderCount() {
    var body: [UInt8] = [0x00, 0x00, 0x00, 0x01, 0x01]
    body += [0xFE, 0xFF, 0xFF, 0xFF, 0x0F]  // header count Int32.max
    expectError(handmadeBatch(records: [body]), .invalidCount)
    let negative: [UInt8] = [0x00, 0x00, 0x00, 0x01, 0x01, 0x03]  // header count -2
    expectError(handmadeBatch(records: [negative]), .invalidCount)
  }

  @Test func nullHeaderKeyAndBadUTF8() {
    let nullKey: [UInt8] = [0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x01, 0x01]
    expectError(handmadeBatch(records: [nullKey]), .malformedRecord)
    let badUTF8: [UInt8] = [0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x02, 0xFF, 0x01]
    expectError(handmadeBatch(records: [badUTF8]), .malformedRecord)
  }

  @Test func keyLengthBeyondRecord() {
    let body: [UInt8] = [0x00, 0x00, 0x00, 0x50, 0x01, 0x00]  // key length 40, 2 bytes left
    expectError(handmadeBatch(records: [body]), .truncated)
  }

  @Test func recordBodyLongerThanItsFields() {
    let body: [UInt8] = [0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0xAA]
    expectError(handmadeBatch(records: [body]), .malformedRecord)
  }

  @Test func trailingBytesAfterRecords() {
    let body: [UInt8] = [0x00, 0x00, 0x00, 0x01, 0x01, 0x00]
    expectError(handmadeBatch(records: [body], trailing: [0, 0, 0, 0, 0, 0, 0]), .malformedRecord)
  }

  @Test func unknownCompressionCodec() {
    var bytes = sampleBatch()
    bytes[22] |= 0x05
    resealCRC(&bytes)
    let error = #expect(throws: RecordsError.self) { try RecordBatch.decode(bytes) }
    #expect(error?.code == .unsupportedCompression)
    #expect(error?.message.contains("codec 5") == true)
  }

  @Test func randomGarbageNeverTraps() {
    var generator = SeededGenerator(state: 99)
    let valid = sampleBatch(records: 5)
    for _ in 0..<2_000 {
      var bytes = valid
      for _ in 0..<Int.random(in: 1...6, using: &generator) {
        let position = Int.random(in: RecordBatchHeader.byteCount..<bytes.count, using: &generator)
        bytes[position] = UInt8.random(in: 0...255, using: &generator)
      }
      resealCRC(&bytes)
      // Either a clean decode or a thrown error; the point is no trap.
      _ = try? RecordBatch.decode(bytes)
    }
  }

  /// A batch around hand-written record bodies (each prefixed with its varint length).
  func handmadeBatch(records bodies: [[UInt8]], trailing: [UInt8] = []) -> [UInt8] {
    var writer = ByteWriter(capacity: 128)
    writer.bytes = [UInt8](repeating: 0, count: RecordBatchHeader.byteCount)
    for body in bodies {
      writer.writeVarint(Int32(body.count))
      writer.bytes += body
    }
    writer.bytes += trailing
    let header = RecordBatchHeader(
      batchLength: Int32(writer.bytes.count - RecordBatchHeader.lengthPrefixByteCount),
      lastOffsetDelta: Int32(bodies.count - 1), recordCount: Int32(bodies.count))
    var bytes = writer.bytes
    bytes.withUnsafeMutableBytes { header.write(to: $0) }
    resealCRC(&bytes)
    return bytes
  }
}
