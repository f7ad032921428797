import Foundation
import Glibc
import StreamBusRecords
import Testing

@testable import StreamBusStorage

/// A full disk during the writes a follower makes besides appends: truncation must not
/// close the log when only the leader-epoch checkpoint cannot be rewritten.
@Suite struct DiskFullStorageTests {
  @Test func truncationOnAFullDiskKeepsTheLogOpenAndRewritesTheCheckpointBeforeTheNextAppend()
    throws
  {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    // No index entries: truncation then rewrites an empty index, which needs no space.
    let config = smallConfig(segmentBytes: 1 << 20, indexIntervalBytes: 1 << 20)
    let log = try PartitionLog(directory: directory.path, config: config, fileSystem: fileSystem)
    let first = makeBatch(records: 3, seed: 1)
    try log.leaderEpochCache.assign(epoch: 1, startOffset: 0)
    try log.append(first, partitionLeaderEpoch: 1)
    try log.leaderEpochCache.assign(epoch: 2, startOffset: 3)
    try log.append(makeBatch(records: 2, seed: 2), partitionLeaderEpoch: 2)
    try log.flush()

    fileSystem.update { $0.writeBudget = 0 }
    let newEnd = try log.truncate(to: 3)
    #expect(newEnd == 3)
    #expect(log.leaderEpochCache.entries == [EpochEntry(epoch: 1, startOffset: 0)])
    #expect(log.leaderEpochCache.isCheckpointStale)
    #expect(try readAll(log) == stored(first, baseOffset: 0, epoch: 1))
    // The checkpoint must be rewritten before the log grows past its stale entry; while
    // the disk is full that fails, and nothing is appended.
    let error = #expect(throws: StorageError.self) {
      try log.append(makeBatch(records: 1, seed: 3), partitionLeaderEpoch: 1)
    }
    #expect(error?.code == .noSpace)
    #expect(log.logEndOffset == 3)

    fileSystem.update { $0.writeBudget = nil }
    let second = makeBatch(records: 1, seed: 3)
    let result = try log.append(second, partitionLeaderEpoch: 1)
    #expect(result.baseOffset == 3)
    #expect(!log.leaderEpochCache.isCheckpointStale)
    try log.close()
    let reopened = try PartitionLog(directory: directory.path, config: config)
    #expect(reopened.leaderEpochCache.entries == [EpochEntry(epoch: 1, startOffset: 0)])
    #expect(
      try readAll(reopened)
        == stored(first, baseOffset: 0, epoch: 1) + stored(second, baseOffset: 3, epoch: 1))
    try reopened.close()
  }

  /// A crash while the checkpoint is stale: recovery cuts the entries past the log end.
  @Test func staleCheckpointAfterACrashIsCutByRecovery() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    let config = smallConfig(segmentBytes: 1 << 20, indexIntervalBytes: 1 << 20)
    let log = try PartitionLog(directory: directory.path, config: config, fileSystem: fileSystem)
    try log.leaderEpochCache.assign(epoch: 1, startOffset: 0)
    try log.append(makeBatch(records: 3, seed: 1), partitionLeaderEpoch: 1)
    try log.leaderEpochCache.assign(epoch: 2, startOffset: 3)
    try log.append(makeBatch(records: 2, seed: 2), partitionLeaderEpoch: 2)
    try log.flush()
    fileSystem.update { $0.writeBudget = 0 }
    #expect(try log.truncate(to: 3) == 3)
    // No close: the process dies here.
    let reopened = try PartitionLog(directory: directory.path, config: config)
    #expect(reopened.logEndOffset == 3)
    #expect(reopened.leaderEpochCache.entries == [EpochEntry(epoch: 1, startOffset: 0)])
    try reopened.close()
  }
}

/// Retention is what frees a full disk: it must delete segments even when the log start
/// offset checkpoint cannot be written first.
@Suite struct DiskFullRetentionTests {
  @Test func retentionDeletesSegmentsOnAFullDiskAndRecoveryFindsTheNewStart() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    var config = smallConfig(segmentBytes: 1024)
    config.retentionBytes = 3000
    let log = try PartitionLog(directory: directory.path, config: config, fileSystem: fileSystem)
    for number in 0..<100 {
      try log.append(makeBatch(records: 2, valueBytes: 50, seed: number), partitionLeaderEpoch: 0)
    }
    try log.flush()
    let segmentsBefore = log.segmentBaseOffsets.count
    fileSystem.update { $0.writeBudget = 0 }
    let result = try log.applyRetention(nowMs: 0)
    #expect(!result.deletedSegments.isEmpty)
    #expect(log.segmentBaseOffsets.count == segmentsBefore - result.deletedSegments.count)
    #expect(log.logStartOffset == log.segmentBaseOffsets[0])
    #expect(fileSystem.faults.withLock { $0.failedWrites } > 0, "the checkpoint write never failed")
    #expect(try log.read(from: log.logStartOffset, maxBytes: 100).firstOffset == log.logStartOffset)
    let start = log.logStartOffset
    let end = log.logEndOffset
    // A crash before the checkpoint could be written: recovery starts at the first segment.
    let reopened = try PartitionLog(directory: directory.path, config: config)
    #expect(reopened.logStartOffset == start)
    #expect(reopened.logEndOffset == end)
    try reopened.close()
    // Space back: the next append works on the original log.
    fileSystem.update { $0.writeBudget = nil }
    let next = try log.append(makeBatch(seed: 500), partitionLeaderEpoch: 0)
    #expect(next.baseOffset == end)
    try log.close()
  }
}

@Suite struct DiskFullRollTests {
  /// A roll on a full disk: the new segment's files exist, the append into it fails and is
  /// cut back, and the log (with an empty active segment) stays valid across a reopen.
  @Test func rollOnAFullDiskLeavesAValidEmptyActiveSegment() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    let config = smallConfig(segmentBytes: 1024)
    let log = try PartitionLog(directory: directory.path, config: config, fileSystem: fileSystem)
    var expected: [UInt8] = []
    while log.segmentBaseOffsets.count == 1 {
      let batch = makeBatch(records: 2, valueBytes: 50, seed: expected.count)
      let result = try log.append(batch, partitionLeaderEpoch: 0)
      expected += stored(batch, baseOffset: result.baseOffset, epoch: 0)
      // Stop right before the append that would roll.
      if log.sizeBytes + Int64(batch.count) > 1024 { break }
    }
    try log.flush()
    let end = log.logEndOffset
    fileSystem.update { $0.writeBudget = 0 }
    let error = #expect(throws: StorageError.self) {
      try log.append(makeBatch(records: 2, valueBytes: 50, seed: 999), partitionLeaderEpoch: 0)
    }
    #expect(error?.code == .noSpace)
    #expect(log.logEndOffset == end)
    #expect(log.segmentBaseOffsets == [0, end])
    #expect(try readAll(log) == expected)
    let reopened = try PartitionLog(directory: directory.path, config: config)
    #expect(reopened.recoveryReport.truncations.isEmpty, "\(reopened.recoveryReport)")
    #expect(reopened.logEndOffset == end)
    #expect(try readAll(reopened) == expected)
    try reopened.close()
    fileSystem.update { $0.writeBudget = nil }
    let batch = makeBatch(records: 2, valueBytes: 50, seed: 1_000)
    let result = try log.append(batch, partitionLeaderEpoch: 0)
    #expect(result.baseOffset == end)
    #expect(try readAll(log) == expected + stored(batch, baseOffset: end, epoch: 0))
    try log.close()
  }
}
