import Foundation
import StreamBusRecords
import Testing

@testable import StreamBusStorage

@Suite struct RetentionTests {
  @Test func sizeRetentionDeletesOldestSegmentsAndPersistsStart() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var config = smallConfig(segmentBytes: 1024)
    config.retentionBytes = 3000
    let log = try PartitionLog(directory: directory.path, config: config)
    for number in 0..<100 {
      try log.append(makeBatch(records: 2, valueBytes: 50, seed: number), partitionLeaderEpoch: 0)
    }
    let before = log.segmentBaseOffsets
    let sizeBefore = log.sizeBytes
    let result = try log.applyRetention(nowMs: 0)
    #expect(!result.deletedSegments.isEmpty)
    #expect(result.deletedSegments == Array(before.prefix(result.deletedSegments.count)))
    #expect(log.sizeBytes == sizeBefore - result.deletedBytes)
    #expect(log.sizeBytes <= 3000 + 1024)
    #expect(log.sizeBytes >= 3000 - 1024)
    #expect(log.logStartOffset == log.segmentBaseOffsets[0])
    #expect(result.logStartOffset == log.logStartOffset)
    let below = #expect(throws: StorageError.self) {
      try log.read(from: log.logStartOffset - 1, maxBytes: 100)
    }
    #expect(below?.code == .offsetOutOfRange)
    #expect(try log.read(from: log.logStartOffset, maxBytes: 100).firstOffset == log.logStartOffset)
    #expect(try log.applyRetention(nowMs: 0).deletedSegments.isEmpty)
    let start = log.logStartOffset
    let end = log.logEndOffset
    try log.close()
    let reopened = try PartitionLog(directory: directory.path, config: config)
    #expect(reopened.logStartOffset == start && reopened.logEndOffset == end)
    #expect(
      directory.files().filter { $0.hasSuffix(".log") }.count == reopened.segmentBaseOffsets.count)
  }

  @Test func timeRetentionUsesBatchTimestamps() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var config = smallConfig(segmentBytes: 600)
    config.retentionMs = 10_000
    let log = try PartitionLog(directory: directory.path, config: config)
    for number in 0..<40 {
      try log.append(
        makeBatch(records: 2, valueBytes: 40, timestamp: Int64(number) * 1_000, seed: number),
        partitionLeaderEpoch: 0)
    }
    // At 30 s, batches newer than 20 s must survive.
    let result = try log.applyRetention(nowMs: 30_000)
    #expect(!result.deletedSegments.isEmpty)
    let remaining = try batchHeaders(try readAll(log))
    #expect(remaining.allSatisfy { $0.maxTimestamp >= 0 })
    #expect(remaining.contains { $0.maxTimestamp >= 20_000 })
    let newestDeleted = remaining.first.map { $0.baseOffset } ?? 0
    #expect(newestDeleted == log.logStartOffset)
    #expect(remaining.first.map { $0.maxTimestamp } ?? 0 < 30_000)
    // Everything expired: the active segment goes too, replaced by an empty one at the end.
    let end = log.logEndOffset
    try log.applyRetention(nowMs: 1_000_000)
    #expect(log.logStartOffset == end && log.logEndOffset == end)
    #expect(log.segmentBaseOffsets == [end])
    #expect(try log.read(from: end, maxBytes: 100).bytes.isEmpty)
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    try log.close()
    let reopened = try PartitionLog(directory: directory.path, config: config)
    #expect(reopened.logStartOffset == end && reopened.logEndOffset == end + 3)
  }

  @Test func timeRetentionAfterReopenWalksSealedSegments() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var config = smallConfig(segmentBytes: 600)
    config.retentionMs = 10_000
    do {
      let log = try PartitionLog(directory: directory.path, config: config)
      for number in 0..<30 {
        try log.append(
          makeBatch(records: 2, valueBytes: 40, timestamp: Int64(number) * 1_000),
          partitionLeaderEpoch: 0)
      }
      try log.close()
    }
    let log = try PartitionLog(directory: directory.path, config: config)
    let result = try log.applyRetention(nowMs: 25_000)
    #expect(!result.deletedSegments.isEmpty)
    let first = try batchHeaders(try log.read(from: log.logStartOffset, maxBytes: 1).bytes)[0]
    #expect(first.maxTimestamp < 25_000)
    // Only segments wholly older than 15 s went: the one holding 15 s..20 s data stays.
    let all = try batchHeaders(try readAll(log))
    #expect(all.contains { $0.maxTimestamp >= 15_000 })
  }

  @Test func interruptedRetentionIsFinishedOnOpen() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig(segmentBytes: 600))
    for _ in 0..<30 { try log.append(makeBatch(valueBytes: 40), partitionLeaderEpoch: 0) }
    let bases = log.segmentBaseOffsets
    try log.close()
    // The checkpoint was written but the process died before deleting the files.
    try AtomicFile.write(
      directory.path + "/" + PartitionLog.logStartOffsetCheckpointName,
      Array("0\n\(bases[2])\n".utf8))
    let reopened = try PartitionLog(
      directory: directory.path, config: smallConfig(segmentBytes: 600))
    #expect(reopened.logStartOffset == bases[2])
    #expect(reopened.segmentBaseOffsets == Array(bases[2...]))
    #expect(reopened.recoveryReport.deletedSegments == Array(bases[..<2]))
  }
}
