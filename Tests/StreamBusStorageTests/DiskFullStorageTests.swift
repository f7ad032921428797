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
