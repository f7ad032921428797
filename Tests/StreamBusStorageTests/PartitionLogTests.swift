import Foundation
import StreamBusRecords
import Testing

@testable import StreamBusStorage

@Suite struct PartitionLogTests {
  /// Appends `count` batches of varying sizes; returns what the log should hold.
  func fill(_ log: PartitionLog, batches count: Int, epoch: Int32 = 1) throws -> [UInt8] {
    var expected: [UInt8] = []
    for number in 0..<count {
      let batch = makeBatch(
        records: 1 + number % 4, valueBytes: 10 + (number * 37) % 300, seed: number)
      let before = log.logEndOffset
      let result = try log.append(batch, partitionLeaderEpoch: epoch)
      #expect(result.baseOffset == before)
      #expect(result.lastOffset == before + Int64(1 + number % 4) - 1)
      #expect(log.logEndOffset == result.lastOffset + 1)
      expected += stored(batch, baseOffset: before, epoch: epoch)
    }
    return expected
  }

  @Test func appendReadRoundTripAcrossManySegments() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    #expect(log.logStartOffset == 0 && log.logEndOffset == 0)
    let expected = try fill(log, batches: 300)
    #expect(log.segmentBaseOffsets.count > 10)
    #expect(try readAll(log) == expected)
    #expect(try readAll(log, maxBytes: 1) == expected)
    #expect(try readAll(log, maxBytes: 700) == expected)
    // Segment files are named by their base offsets.
    let logFiles = directory.files().filter { $0.hasSuffix(".log") }
    #expect(logFiles == log.segmentBaseOffsets.map { LogSegment.fileName($0, ".log") })
    #expect(logFiles.first == "00000000000000000000.log")
    try log.close()
  }

  @Test func readFromEveryOffsetStartsAtTheBatchHoldingIt() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    _ = try fill(log, batches: 120)
    for offset in 0..<log.logEndOffset {
      let result = try log.read(from: offset, maxBytes: 200)
      let headers = try batchHeaders(result.bytes)
      let first = try #require(headers.first)
      #expect(first.baseOffset <= offset && first.lastOffset >= offset, "offset \(offset)")
      #expect(result.firstOffset == first.baseOffset)
      #expect(result.nextOffset == headers.last?.nextOffset)
      for (previous, next) in zip(headers, headers.dropFirst()) {
        #expect(previous.nextOffset == next.baseOffset)
      }
      // Decoding proves the bytes are whole, valid batches with the assigned offsets.
      let batch = try RecordBatch.decode(Array(result.bytes[..<first.totalByteCount]))
      #expect(batch.records.map(\.offset).contains(offset))
    }
  }

  @Test func readReturnsOneWholeBatchLargerThanMaxBytes() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    let big = makeBatch(records: 2, valueBytes: 5_000)
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    try log.append(big, partitionLeaderEpoch: 0)
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    let result = try log.read(from: 3, maxBytes: 100)
    #expect(result.bytes == stored(big, baseOffset: 3, epoch: 0))
    #expect(result.nextOffset == 5)
  }

  @Test func readOutsideTheLogIsOutOfRange() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    let above = #expect(throws: StorageError.self) { try log.read(from: 4, maxBytes: 100) }
    #expect(above?.code == .offsetOutOfRange)
    let below = #expect(throws: StorageError.self) { try log.read(from: -1, maxBytes: 100) }
    #expect(below?.code == .offsetOutOfRange)
    let atEnd = try log.read(from: 3, maxBytes: 100)
    #expect(atEnd.bytes.isEmpty && atEnd.nextOffset == 3 && atEnd.firstOffset == nil)
  }

  @Test func readStopsBeforeMaxOffset() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    for _ in 0..<4 { try log.append(makeBatch(records: 2), partitionLeaderEpoch: 0) }
    let limited = try log.read(from: 0, maxBytes: 1 << 20, maxOffset: 4)
    #expect(try batchHeaders(limited.bytes).map(\.baseOffset) == [0, 2])
    #expect(limited.nextOffset == 4)
    let none = try log.read(from: 4, maxBytes: 1 << 20, maxOffset: 4)
    #expect(none.bytes.isEmpty)
  }

  @Test func sparseIndexHasEntriesEveryIntervalAndMatchesARebuild() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let config = smallConfig(segmentBytes: 1 << 20, indexIntervalBytes: 512)
    let log = try PartitionLog(directory: directory.path, config: config)
    _ = try fill(log, batches: 100)
    let segment = log.activeSegment
    let index = try #require(segment.index)
    #expect(index.count >= Int(segment.size) / 512 / 2)
    #expect(Int64(index.last?.position ?? 0) > segment.size - 512 - 400)
    for entry in index {
      let result = try log.read(
        from: segment.baseOffset + Int64(entry.relativeOffset), maxBytes: 1)
      #expect(result.firstOffset == segment.baseOffset + Int64(entry.relativeOffset))
    }
    try log.close()
    let onDisk = fileBytes(segment.indexPath)
    #expect(onDisk == OffsetIndex.encode(index))
    // Reopening scans the active segment and rebuilds its index: it must come out identical.
    let reopened = try PartitionLog(directory: directory.path, config: config)
    #expect(reopened.recoveryReport.isClean, "\(reopened.recoveryReport)")
    #expect(reopened.activeSegment.index == index)
  }

  @Test func reopenKeepsOffsetsAndData() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let expected: [UInt8]
    do {
      let log = try PartitionLog(directory: directory.path, config: smallConfig())
      expected = try fill(log, batches: 80)
      try log.close()
    }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    #expect(log.recoveryReport.isClean, "\(log.recoveryReport)")
    #expect(log.recoveryReport.scannedSegments == [log.segmentBaseOffsets.last])
    #expect(try readAll(log) == expected)
    #expect(log.durableEndOffset == log.logEndOffset)
    let end = log.logEndOffset
    let result = try log.append(makeBatch(), partitionLeaderEpoch: 2)
    #expect(result.baseOffset == end)
  }

  @Test func severalBatchesInOneAppend() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    let batches = [makeBatch(records: 2), makeBatch(records: 5, seed: 1), makeBatch(records: 1)]
    let result = try log.append(batches.reduce([], +), partitionLeaderEpoch: 9)
    #expect(result.baseOffset == 0 && result.lastOffset == 7 && result.batchCount == 3)
    let headers = try batchHeaders(try readAll(log))
    #expect(headers.map(\.baseOffset) == [0, 2, 7])
    #expect(headers.allSatisfy { $0.partitionLeaderEpoch == 9 })
  }

  @Test func invalidAppendsAreRejectedAndChangeNothing() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    let good = makeBatch()
    var badCRC = good
    badCRC[badCRC.count - 1] ^= 1
    var badCount = good
    badCount.withUnsafeMutableBytes {
      $0.storeBytes(of: Int32(7).bigEndian, toByteOffset: 23, as: Int32.self)
    }
    var tooBig = LogConfig()
    tooBig.batchBytesMax = 100
    let cases: [[UInt8]] = [
      [], Array(good.dropLast()), good + badCRC, badCount, good + [1, 2, 3],
      [UInt8](repeating: 0, count: 70),
    ]
    for bytes in cases {
      let error = #expect(throws: StorageError.self) {
        try log.append(bytes, partitionLeaderEpoch: 0)
      }
      #expect(error?.code == .invalidBatch)
    }
    #expect(log.logEndOffset == 3)
    #expect(try readAll(log) == stored(makeBatch(), baseOffset: 0, epoch: 0))
    let strict = try PartitionLog(directory: directory.path + "/strict", config: tooBig)
    let error = #expect(throws: StorageError.self) {
      try strict.append(makeBatch(valueBytes: 200), partitionLeaderEpoch: 0)
    }
    #expect(error?.message.contains("batchBytesMax") == true)
  }

  @Test func followerAppendKeepsOffsetsAndEpochs() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let leader = try PartitionLog(directory: directory.path + "/leader", config: smallConfig())
    let follower = try PartitionLog(directory: directory.path + "/follower", config: smallConfig())
    for epoch in 1...3 {
      for _ in 0..<20 { try leader.append(makeBatch(), partitionLeaderEpoch: Int32(epoch)) }
    }
    var offset: Int64 = 0
    while offset < leader.logEndOffset {
      let fetched = try leader.read(from: offset, maxBytes: 500)
      try follower.appendAsFollower(fetched.bytes)
      offset = fetched.nextOffset
    }
    #expect(try readAll(follower) == readAll(leader))
    #expect(follower.logEndOffset == leader.logEndOffset)
    let gap = #expect(throws: StorageError.self) {
      try follower.appendAsFollower(stored(makeBatch(), baseOffset: 1_000, epoch: 3))
    }
    #expect(gap?.code == .unexpectedOffset)
    let overlap = #expect(throws: StorageError.self) {
      try follower.appendAsFollower(stored(makeBatch(), baseOffset: 0, epoch: 3))
    }
    #expect(overlap?.code == .unexpectedOffset)
  }

  @Test func truncateRemovesTheSuffixAcrossSegments() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    let expected = try fill(log, batches: 150)
    let segmentsBefore = log.segmentBaseOffsets.count
    let all = try batchHeaders(expected)
    let target = all[40]
    // Cutting inside a batch removes that whole batch.
    let newEnd = try log.truncate(to: target.baseOffset + Int64(target.lastOffsetDelta))
    #expect(newEnd == target.baseOffset)
    #expect(log.logEndOffset == target.baseOffset)
    #expect(log.segmentBaseOffsets.count < segmentsBefore)
    let kept = all[..<40].reduce(0) { $0 + $1.totalByteCount }
    #expect(try readAll(log) == Array(expected[..<kept]))
    #expect(log.durableEndOffset <= log.logEndOffset)
    // Appending continues right after the cut, and the result survives a reopen.
    try log.append(makeBatch(), partitionLeaderEpoch: 5)
    #expect(log.logEndOffset == target.baseOffset + 3)
    let contents = try readAll(log)
    try log.close()
    let reopened = try PartitionLog(directory: directory.path, config: smallConfig())
    #expect(reopened.recoveryReport.isClean, "\(reopened.recoveryReport)")
    #expect(try readAll(reopened) == contents)
    // Truncating at or past the end changes nothing; below the start is refused.
    #expect(try reopened.truncate(to: 1_000_000) == reopened.logEndOffset)
    #expect(try reopened.truncate(to: 0) == 0)
    #expect(try readAll(reopened).isEmpty)
    try reopened.append(makeBatch(), partitionLeaderEpoch: 6)
    #expect(reopened.logEndOffset == 3)
  }

  @Test func truncateFullyRestartsAtAnOffset() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    _ = try fill(log, batches: 30)
    try log.truncateFully(startingAt: 5_000)
    #expect(log.logStartOffset == 5_000 && log.logEndOffset == 5_000)
    try log.append(makeBatch(), partitionLeaderEpoch: 1)
    try log.close()
    let reopened = try PartitionLog(directory: directory.path, config: smallConfig())
    #expect(reopened.logStartOffset == 5_000 && reopened.logEndOffset == 5_003)
    #expect(reopened.segmentBaseOffsets == [5_000])
  }

  @Test func rollsBySizeAndByTime() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let clock = ManualClock(1_000_000)
    var config = smallConfig(segmentBytes: 1 << 20)
    config.segmentMs = 60_000
    let log = try PartitionLog(directory: directory.path, config: config, clockMs: clock.now)
    #expect(try !log.append(makeBatch(), partitionLeaderEpoch: 0).rolledSegment)
    clock.advance(by: 59_999)
    #expect(try !log.append(makeBatch(), partitionLeaderEpoch: 0).rolledSegment)
    clock.advance(by: 1)
    let rolled = try log.append(makeBatch(), partitionLeaderEpoch: 0)
    #expect(rolled.rolledSegment)
    #expect(log.segmentBaseOffsets == [0, 6])
    // Rolling fsyncs the sealed segment, so it counts as durable.
    #expect(log.durableEndOffset >= 6)
  }

  @Test func flushAdvancesDurableEndOffset() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var config = smallConfig()
    config.flushPolicy = .interval(ms: 1_000)
    let log = try PartitionLog(directory: directory.path, config: config, clockMs: { 0 })
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    #expect(log.durableEndOffset == 0 && log.logEndOffset == 3)
    #expect(try !log.flushIfDue(nowMs: 999))
    #expect(try log.flushIfDue(nowMs: 1_000))
    #expect(log.durableEndOffset == 3)
    #expect(try !log.flushIfDue(nowMs: 5_000))  // nothing new to flush
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    #expect(try !log.flushIfDue(nowMs: 1_500))
    try log.flush()
    #expect(log.durableEndOffset == 6)
  }

  @Test func closedLogRefusesWork() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    try log.close()
    let error = #expect(throws: StorageError.self) {
      try log.append(makeBatch(), partitionLeaderEpoch: 0)
    }
    #expect(error?.code == .closed)
    #expect(throws: StorageError.self) { try log.read(from: 0, maxBytes: 10) }
  }

  @Test func invalidConfigIsRejected() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var configs: [LogConfig] = []
    var config = LogConfig()
    config.segmentBytes = 10
    configs.append(config)
    config = LogConfig()
    config.indexIntervalBytes = 0
    configs.append(config)
    config = LogConfig()
    config.retentionBytes = -2
    configs.append(config)
    config = LogConfig()
    config.segmentBytes = Int(UInt32.max)
    configs.append(config)
    for config in configs {
      let error = #expect(throws: StorageError.self) {
        try PartitionLog(directory: directory.path, config: config)
      }
      #expect(error?.code == .invalidConfig)
    }
  }
}

@Suite struct CompressedBatchStorageTests {
  /// Compressed batches cannot be decoded yet but are stored and served as opaque,
  /// CRC-checked bytes, the way a Kafka broker keeps producer compression.
  @Test func gzipBatchFromKafkaIsStoredAndServedUnchanged() throws {
    let corpus = URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Fixtures/external/kafka-record-batches")
    let gzip = [UInt8](try Data(contentsOf: corpus.appendingPathComponent("gzip-compressed.bin")))
    let keyed = [UInt8](try Data(contentsOf: corpus.appendingPathComponent("keyed-three.bin")))
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    try log.append(keyed, partitionLeaderEpoch: 4)
    let result = try log.append(gzip, partitionLeaderEpoch: 4)
    #expect(result.baseOffset == 3 && result.lastOffset == 52)
    let read = try log.read(from: 10, maxBytes: 1 << 20)
    #expect(read.bytes == stored(gzip, baseOffset: 3, epoch: 4))
    let header = try RecordBatch.validate(read.bytes)
    #expect(header.compression == .gzip && header.recordCount == 50)
    // The uncompressed one decodes with the log's offsets and epoch.
    let first = try RecordBatch.decode(try log.read(from: 0, maxBytes: 1).bytes)
    #expect(first.records.map(\.offset) == [0, 1, 2])
    #expect(first.header.partitionLeaderEpoch == 4)
  }
}
