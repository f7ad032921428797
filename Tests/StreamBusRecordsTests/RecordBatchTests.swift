import Testing

@testable import StreamBusRecords

@Suite struct RecordBatchTests {
  @Test func builderRoundTrip() throws {
    var builder = RecordBatchBuilder(
      baseOffset: 500, partitionLeaderEpoch: 4, producerId: 77, producerEpoch: 1,
      baseSequence: 9)
    builder.append(key: nil, value: [1, 2, 3], timestamp: 2_000)
    builder.append(
      key: [], value: nil, headers: [RecordHeader(key: "", value: nil)], timestamp: 1_500)
    builder.append(
      key: [9], value: [UInt8](repeating: 7, count: 300),
      headers: [RecordHeader(key: "ключ", value: [0]), RecordHeader(key: "b", value: [])],
      timestamp: 2_500)
    let bytes = builder.build()
    let batch = try RecordBatch.decode(bytes)
    #expect(batch.header.baseOffset == 500)
    #expect(batch.header.partitionLeaderEpoch == 4)
    #expect(batch.header.lastOffsetDelta == 2)
    #expect(batch.header.recordCount == 3)
    #expect(batch.header.baseTimestamp == 2_000)
    #expect(batch.header.maxTimestamp == 2_500)
    #expect(batch.header.producerId == 77)
    #expect(batch.header.baseSequence == 9)
    #expect(batch.records == builder.batch().records)
    #expect(batch.records.map(\.offset) == [500, 501, 502])
    #expect(batch.records[1].timestamp == 1_500)
    #expect(batch.encoded() == bytes)
  }

  @Test func randomRoundTrips() throws {
    var generator = SeededGenerator(state: 42)
    for round in 0..<200 {
      var builder = RecordBatchBuilder(baseOffset: Int64.random(in: 0...1 << 40, using: &generator))
      for _ in 0..<Int.random(in: 1...20, using: &generator) {
        let key =
          Bool.random(using: &generator)
          ? randomBytes(Int.random(in: 0...40, using: &generator), &generator) : nil
        let value =
          Bool.random(using: &generator)
          ? randomBytes(Int.random(in: 0...200, using: &generator), &generator) : nil
        let headers = (0..<Int.random(in: 0...3, using: &generator)).map {
          RecordHeader(key: "k\($0)", value: randomBytes($0 * 3, &generator))
        }
        builder.append(
          key: key, value: value, headers: headers,
          timestamp: Int64.random(in: -1...Int64(1) << 42, using: &generator))
      }
      let bytes = builder.build()
      let batch = try RecordBatch.decode(bytes)
      #expect(batch.records == builder.batch().records, "round \(round)")
      #expect(batch.encoded() == bytes, "round \(round)")
    }
  }

  @Test func patchingBaseOffsetAndEpochKeepsCRC() throws {
    var bytes = sampleBatch()
    bytes.withUnsafeMutableBytes {
      RecordBatchHeader.setBaseOffset(123_456_789_000, in: $0)
      RecordBatchHeader.setPartitionLeaderEpoch(17, in: $0)
    }
    let header = try RecordBatch.validate(bytes)
    #expect(header.baseOffset == 123_456_789_000)
    #expect(header.partitionLeaderEpoch == 17)
    #expect(header.lastOffset == 123_456_789_002)
    #expect(try RecordBatch.decode(bytes).records.map(\.offset).last == 123_456_789_002)
  }

  @Test func headerWriteParseRoundTrip() throws {
    let header = RecordBatchHeader(
      baseOffset: -5, batchLength: 99, partitionLeaderEpoch: 3, magic: 2, crc: 0xDEAD_BEEF,
      attributes: 0x18, lastOffsetDelta: 4, baseTimestamp: 10, maxTimestamp: 20, producerId: 30,
      producerEpoch: 40, baseSequence: 50, recordCount: 5)
    var bytes = [UInt8](repeating: 0, count: RecordBatchHeader.byteCount)
    bytes.withUnsafeMutableBytes { header.write(to: $0) }
    #expect(try RecordBatchHeader(parsing: bytes) == header)
    #expect(header.isTransactional && header.usesLogAppendTime && !header.isControl)
  }

  @Test func varintBoundaries() throws {
    let int32Values: [Int32] = [0, 1, -1, 63, -64, 64, 8191, -8192, .max, .min]
    for value in int32Values {
      var writer = ByteWriter(capacity: 8)
      writer.writeVarint(value)
      #expect(writer.bytes.count == varintSize(value))
      writer.bytes.withUnsafeBytes { buffer in
        var reader = ByteReader(buffer)
        let decoded = try? reader.readVarint("test")
        #expect(decoded == value)
        #expect(reader.remaining == 0)
      }
    }
    let int64Values: [Int64] = [0, 1, -1, 1 << 40, -(1 << 40), .max, .min]
    for value in int64Values {
      var writer = ByteWriter(capacity: 12)
      writer.writeVarlong(value)
      #expect(writer.bytes.count == varlongSize(value))
      writer.bytes.withUnsafeBytes { buffer in
        var reader = ByteReader(buffer)
        let decoded = try? reader.readVarlong("test")
        #expect(decoded == value)
      }
    }
  }

  @Test(
    arguments: [
      [0x80, 0x80, 0x80, 0x80, 0x80, 0x01],  // six bytes
      [0xFF, 0xFF, 0xFF, 0xFF, 0x1F],  // fifth byte over 32 bits
      [0xFF, 0xFF, 0xFF, 0xFF, 0x8F, 0x00],  // continuation on the fifth byte
    ] as [[UInt8]])
  func overlongVarintsAreRejected(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { buffer in
      var reader = ByteReader(buffer)
      let error = #expect(throws: RecordsError.self) { try reader.readVarint("test") }
      #expect(error?.code == .invalidVarint)
    }
  }

  @Test func overlongVarlongIsRejected() {
    let bytes = [UInt8](repeating: 0xFF, count: 9) + [0x02]
    bytes.withUnsafeBytes { buffer in
      var reader = ByteReader(buffer)
      let error = #expect(throws: RecordsError.self) { try reader.readVarlong("test") }
      #expect(error?.code == .invalidVarint)
    }
    let eleven = [UInt8](repeating: 0x80, count: 10) + [0x00]
    eleven.withUnsafeBytes { buffer in
      var reader = ByteReader(buffer)
      #expect(throws: RecordsError.self) { try reader.readVarlong("test") }
    }
  }

  @Test func scannerReportsPartialTailAtEveryCut() throws {
    let batches = [sampleBatch(baseOffset: 0), sampleBatch(baseOffset: 3, records: 5)]
    let all = batches[0] + batches[1]
    for cut in 0...all.count {
      let prefix = Array(all[..<cut])
      try prefix.withUnsafeBytes { buffer in
        var scanner = RecordBatchScanner(buffer)
        var count = 0
        while try scanner.next() != nil { count += 1 }
        let complete = cut >= all.count ? 2 : cut >= batches[0].count ? 1 : 0
        #expect(count == complete, "cut \(cut)")
        let consumed = complete == 2 ? all.count : complete == 1 ? batches[0].count : 0
        #expect(scanner.position == consumed)
        #expect(scanner.partialTailByteCount == cut - consumed)
      }
    }
  }

  @Test func scannerThrowsOnCorruptCompleteBatch() throws {
    var all = sampleBatch() + sampleBatch(baseOffset: 3)
    all[all.count - 1] ^= 0x01
    let (first, secondError, position) = all.withUnsafeBytes { buffer in
      var scanner = RecordBatchScanner(buffer)
      let first = try? scanner.next()
      var secondError: RecordsError?
      do throws(RecordsError) { _ = try scanner.next() } catch { secondError = error }
      return (first, secondError, scanner.position)
    }
    #expect(first?.range == 0..<all.count / 2)
    #expect(secondError?.code == .crcMismatch)
    #expect(position == all.count / 2)
  }
}
