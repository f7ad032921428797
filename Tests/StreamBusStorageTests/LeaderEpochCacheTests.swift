import Foundation
import StreamBusRecords
import Testing

@testable import StreamBusStorage

@Suite struct LeaderEpochCacheTests {
  func cache(_ directory: TemporaryDirectory) throws -> LeaderEpochCache {
    try LeaderEpochCache(directory: directory.path)
  }

  func entries(_ pairs: [(Int32, Int64)]) -> [EpochEntry] {
    pairs.map { EpochEntry(epoch: $0.0, startOffset: $0.1) }
  }

  // MARK: The cache alone

  @Test func assignPersistsAcrossReopen() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let first = try cache(directory)
    #expect(first.entries.isEmpty)
    #expect(first.latestEpoch == nil)
    #expect(try first.assign(epoch: 1, startOffset: 0))
    #expect(try !first.assign(epoch: 1, startOffset: 5), "re-assigning the latest epoch is a no-op")
    #expect(try first.assign(epoch: 3, startOffset: 10))
    #expect(try first.assign(epoch: 4, startOffset: 10), "epoch 3 wrote nothing: replaced")
    #expect(try first.assign(epoch: 7, startOffset: 25))
    #expect(first.entries == entries([(1, 0), (4, 10), (7, 25)]))
    let reopened = try cache(directory)
    #expect(reopened.entries == first.entries)
    #expect(reopened.latestEpoch == 7)
    #expect(!FileManager.default.fileExists(atPath: reopened.path + AtomicFile.temporarySuffix))
  }

  @Test func assignRejectsGoingBackwards() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let epochs = try cache(directory)
    try epochs.assign(epoch: 5, startOffset: 100)
    for (epoch, start) in [(Int32(4), Int64(200)), (6, 99), (-1, 300), (8, -3)] {
      #expect {
        try epochs.assign(epoch: epoch, startOffset: start)
      } throws: { ($0 as? StorageError)?.code == .invalidEpoch }
    }
    // A batch of assignments is all or nothing.
    #expect(throws: StorageError.self) {
      try epochs.assign(entries([(6, 150), (7, 120)]))
    }
    #expect(epochs.entries == entries([(5, 100)]))
    #expect(try cache(directory).entries == entries([(5, 100)]))
  }

  /// Every case of Kafka's OffsetsForLeaderEpoch answer.
  @Test func endOffsetFollowsKafka() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let epochs = try cache(directory)
    #expect(epochs.endOffset(for: 0, logEndOffset: 0) == .undefined, "empty cache")
    try epochs.assign(entries([(2, 10), (4, 20), (7, 35)]))
    let logEnd: Int64 = 50
    func ask(_ epoch: Int32) -> EpochEndOffset {
      epochs.endOffset(for: epoch, logEndOffset: logEnd)
    }
    // The latest epoch ends at the log end.
    #expect(ask(7) == EpochEndOffset(epoch: 7, endOffset: 50))
    // A known older epoch ends where the next one starts.
    #expect(ask(2) == EpochEndOffset(epoch: 2, endOffset: 20))
    #expect(ask(4) == EpochEndOffset(epoch: 4, endOffset: 35))
    // An unknown epoch between known ones: the largest known below it, the next one's start.
    #expect(ask(3) == EpochEndOffset(epoch: 2, endOffset: 20))
    #expect(ask(5) == EpochEndOffset(epoch: 4, endOffset: 35))
    #expect(ask(6) == EpochEndOffset(epoch: 4, endOffset: 35))
    // Older than every entry: the requested epoch, ending where the first entry starts.
    #expect(ask(1) == EpochEndOffset(epoch: 1, endOffset: 10))
    #expect(ask(0) == EpochEndOffset(epoch: 0, endOffset: 10))
    // Newer than the latest, or undefined: undefined.
    #expect(ask(8) == .undefined)
    #expect(ask(-1) == .undefined)
    #expect(ask(-1).isUndefined)
  }

  @Test func truncateFromEndDropsEntriesAtOrAfterTheEnd() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let epochs = try cache(directory)
    try epochs.assign(entries([(1, 0), (2, 10), (3, 20), (5, 30)]))
    #expect(try !epochs.truncateFromEnd(endOffset: 31), "nothing starts at or after 31")
    #expect(try epochs.truncateFromEnd(endOffset: 20))
    #expect(epochs.entries == entries([(1, 0), (2, 10)]))
    #expect(epochs.endOffset(for: 2, logEndOffset: 20) == EpochEndOffset(epoch: 2, endOffset: 20))
    #expect(try cache(directory).entries == entries([(1, 0), (2, 10)]))
    // The truncated epochs can be assigned again afterwards (a new leader's history).
    try epochs.assign(epoch: 3, startOffset: 15)
    #expect(try cache(directory).entries == entries([(1, 0), (2, 10), (3, 15)]))
    #expect(try epochs.truncateFromEnd(endOffset: 0))
    #expect(epochs.entries.isEmpty)
  }

  @Test func truncateFromStartKeepsTheEpochHoldingTheNewStart() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let epochs = try cache(directory)
    try epochs.assign(entries([(1, 0), (2, 10), (3, 20), (5, 30)]))
    #expect(try epochs.truncateFromStart(startOffset: 15))
    #expect(epochs.entries == entries([(2, 15), (3, 20), (5, 30)]))
    #expect(try !epochs.truncateFromStart(startOffset: 15))
    #expect(try epochs.truncateFromStart(startOffset: 20))
    #expect(epochs.entries == entries([(3, 20), (5, 30)]))
    #expect(try cache(directory).entries == entries([(3, 20), (5, 30)]))
    // Past every start: only the latest epoch stays, starting at the new start.
    #expect(try epochs.truncateFromStart(startOffset: 44))
    #expect(epochs.entries == entries([(5, 44)]))
    // Before the first entry: nothing to drop.
    #expect(try !epochs.truncateFromStart(startOffset: 3))
  }

  @Test func corruptCheckpointsAreClearErrors() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let epochs = try cache(directory)
    try epochs.assign(entries([(1, 0), (2, 10)]))
    let good = fileBytes(epochs.path)
    let text = String(decoding: good, as: UTF8.self)
    #expect(text.hasPrefix("leader-epoch-checkpoint 1\n2\n1 0\n2 10\ncrc32c "))

    func withChecksum(_ body: String) -> [UInt8] {
      let bytes = Array(body.utf8)
      return bytes + Array("crc32c \(LeaderEpochCheckpoint.hex(CRC32C.checksum(bytes)))\n".utf8)
    }
    var flipped = good
    flipped[good.count / 2] ^= 0x01
    let damaged: [(String, [UInt8])] = [
      ("empty", []),
      ("garbage", Array("\u{0}\u{1}binary junk".utf8)),
      ("bit flip", flipped),
      ("cut short", Array(good.prefix(good.count - 3))),
      ("no checksum", Array("leader-epoch-checkpoint 1\n0\n".utf8)),
      ("unknown version", withChecksum("leader-epoch-checkpoint 9\n0\n")),
      ("count too large", withChecksum("leader-epoch-checkpoint 1\n3\n1 0\n")),
      ("huge count", withChecksum("leader-epoch-checkpoint 1\n99999999999\n")),
      ("bad entry", withChecksum("leader-epoch-checkpoint 1\n1\n1 x\n")),
      ("epoch overflow", withChecksum("leader-epoch-checkpoint 1\n1\n9999999999 0\n")),
      ("out of order", withChecksum("leader-epoch-checkpoint 1\n2\n3 0\n2 10\n")),
      ("offsets backwards", withChecksum("leader-epoch-checkpoint 1\n2\n1 10\n2 5\n")),
      ("negative", withChecksum("leader-epoch-checkpoint 1\n1\n-1 0\n")),
    ]
    for (name, bytes) in damaged {
      writeFileBytes(epochs.path, bytes)
      #expect(
        "\(name)", performing: { try cache(directory) },
        throws: { error in
          guard let error = error as? StorageError else { return false }
          return error.code == .corruptLog && error.message.contains("leader epoch checkpoint")
        })
    }
    writeFileBytes(epochs.path, withChecksum("leader-epoch-checkpoint 1\n0\n"))
    #expect(try cache(directory).entries.isEmpty)
  }

  // MARK: Wired into PartitionLog

  func openLog(_ directory: TemporaryDirectory) throws -> PartitionLog {
    try PartitionLog(
      directory: directory.path, config: smallConfig(segmentBytes: 1024),
      fileSystem: unsyncedFileSystem())
  }

  /// Becomes leader of `epoch` (the replica assigns the epoch once, at the log end offset)
  /// and appends `count` one-record batches; returns the first offset.
  @discardableResult
  func appendLeader(_ log: PartitionLog, epoch: Int32, count: Int = 3) throws -> Int64 {
    let start = log.logEndOffset
    try log.leaderEpochCache.assign(epoch: epoch, startOffset: start)
    for number in 0..<count {
      try log.append(
        makeBatch(records: 1, valueBytes: 60, seed: number), partitionLeaderEpoch: epoch)
    }
    return start
  }

  @Test func leaderEpochsAssignedOnLeadershipDriveEndOffsets() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try openLog(directory)
    try appendLeader(log, epoch: 0, count: 4)
    try appendLeader(log, epoch: 2, count: 5)
    try appendLeader(log, epoch: 5, count: 2)
    #expect(log.leaderEpochCache.entries == entries([(0, 0), (2, 4), (5, 9)]))
    #expect(log.endOffset(forLeaderEpoch: 2) == EpochEndOffset(epoch: 2, endOffset: 9))
    #expect(log.endOffset(forLeaderEpoch: 5) == EpochEndOffset(epoch: 5, endOffset: 11))
    #expect(log.endOffset(forLeaderEpoch: 3) == EpochEndOffset(epoch: 2, endOffset: 9))
    // A fenced leader (older epoch) cannot take the leadership back.
    #expect(
      performing: {
        try log.leaderEpochCache.assign(epoch: 4, startOffset: log.logEndOffset)
      }, throws: { ($0 as? StorageError)?.code == .invalidEpoch })
    // Appends themselves never write the checkpoint (no fsync on the produce path).
    let checkpoint = directory.path + "/" + LeaderEpochCache.checkpointName
    let before = fileBytes(checkpoint)
    try log.append(makeBatch(records: 1), partitionLeaderEpoch: 7)
    #expect(fileBytes(checkpoint) == before)
    #expect(log.leaderEpochCache.latestEpoch == 5)
    try log.truncate(to: 11)
    try log.close()
    let reopened = try openLog(directory)
    #expect(reopened.recoveryReport.isClean, "\(reopened.recoveryReport)")
    #expect(reopened.leaderEpochCache.entries == entries([(0, 0), (2, 4), (5, 9)]))
  }

  @Test func followerAppendsRecordEpochsFromBatchHeaders() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try openLog(directory)
    // One fetch response holding batches of three epochs (and a repeated one).
    var offset: Int64 = 0
    var response: [UInt8] = []
    for epoch: Int32 in [1, 1, 3, 3, 3, 6] {
      response += stored(makeBatch(records: 2, seed: Int(offset)), baseOffset: offset, epoch: epoch)
      offset += 2
    }
    try log.appendAsFollower(response)
    #expect(log.leaderEpochCache.entries == entries([(1, 0), (3, 4), (6, 10)]))
    // A later batch with a smaller epoch is stored as the leader sent it, adding nothing.
    try log.appendAsFollower(stored(makeBatch(records: 1), baseOffset: 12, epoch: 2))
    try log.appendAsFollower(stored(makeBatch(records: 1), baseOffset: 13, epoch: 8))
    #expect(log.leaderEpochCache.entries == entries([(1, 0), (3, 4), (6, 10), (8, 13)]))
    // A rejected (non-contiguous) append changes nothing.
    #expect(throws: StorageError.self) {
      try log.appendAsFollower(stored(makeBatch(records: 1), baseOffset: 99, epoch: 9))
    }
    #expect(log.leaderEpochCache.latestEpoch == 8)
    try log.close()
    #expect(
      try openLog(directory).leaderEpochCache.entries
        == entries([(1, 0), (3, 4), (6, 10), (8, 13)]))
  }

  @Test func logTruncationTruncatesTheCache() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try openLog(directory)
    try appendLeader(log, epoch: 1, count: 10)
    try appendLeader(log, epoch: 2, count: 10)
    try appendLeader(log, epoch: 3, count: 10)
    #expect(log.segmentBaseOffsets.count > 2, "the test needs several segments")
    try log.truncate(to: 25)
    #expect(log.leaderEpochCache.entries == entries([(1, 0), (2, 10), (3, 20)]))
    try log.truncate(to: 20)
    #expect(log.leaderEpochCache.entries == entries([(1, 0), (2, 10)]))
    #expect(log.endOffset(forLeaderEpoch: 2) == EpochEndOffset(epoch: 2, endOffset: 20))
    // The new leader's epoch continues from the truncation point.
    try appendLeader(log, epoch: 4, count: 2)
    #expect(log.leaderEpochCache.entries == entries([(1, 0), (2, 10), (4, 20)]))
    try log.close()
    let reopened = try openLog(directory)
    #expect(reopened.leaderEpochCache.entries == entries([(1, 0), (2, 10), (4, 20)]))
    try reopened.truncateFully(startingAt: 100)
    #expect(reopened.leaderEpochCache.entries.isEmpty)
    try appendLeader(reopened, epoch: 9, count: 1)
    #expect(reopened.leaderEpochCache.entries == entries([(9, 100)]))
  }

  @Test func retentionTruncatesTheCacheFromTheStart() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var config = smallConfig(segmentBytes: 1024)
    config.retentionBytes = 1500
    let log = try PartitionLog(
      directory: directory.path, config: config, fileSystem: unsyncedFileSystem())
    try appendLeader(log, epoch: 1, count: 10)
    try appendLeader(log, epoch: 2, count: 30)
    let result = try log.applyRetention(nowMs: 0)
    #expect(!result.deletedSegments.isEmpty)
    #expect(result.logStartOffset > 10, "the test needs retention past epoch 1")
    #expect(log.leaderEpochCache.entries == entries([(2, result.logStartOffset)]))
    // An epoch older than everything kept ends where the kept history starts.
    #expect(
      log.endOffset(forLeaderEpoch: 1)
        == EpochEndOffset(epoch: 1, endOffset: result.logStartOffset))
    try log.close()
    #expect(
      try openLog(directory).leaderEpochCache.entries == entries([(2, result.logStartOffset)]))
  }

  /// A crash after the cache learned of batches that did not survive (a torn tail).
  @Test func recoveryDropsEntriesBeyondTheRecoveredEnd() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try openLog(directory)
    try appendLeader(log, epoch: 1, count: 3)
    let lastSegment = log.segmentBaseOffsets.last ?? 0
    try appendLeader(log, epoch: 2, count: 1)
    #expect(log.segmentBaseOffsets.last == lastSegment, "the test needs one segment")
    try log.close()
    // Tear the epoch-2 batch: recovery cuts it, so the epoch-2 entry must go too.
    let path = directory.path + "/" + LogSegment.fileName(lastSegment, ".log")
    let bytes = fileBytes(path)
    writeFileBytes(path, Array(bytes.prefix(bytes.count - 5)))
    let reopened = try openLog(directory)
    #expect(reopened.logEndOffset == 3)
    #expect(reopened.leaderEpochCache.entries == entries([(1, 0)]))
    #expect(reopened.recoveryReport.notes.contains { $0.contains("leader epoch cache") })
    #expect(try LeaderEpochCache(directory: directory.path).entries == entries([(1, 0)]))
  }

  @Test func recoveryRebuildsACorruptOrMissingCheckpointFromTheLog() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try openLog(directory)
    try appendLeader(log, epoch: 0, count: 8)
    try appendLeader(log, epoch: 3, count: 8)
    try appendLeader(log, epoch: 4, count: 8)
    let expected = log.leaderEpochCache.entries
    #expect(expected == entries([(0, 0), (3, 8), (4, 16)]))
    try log.close()
    let checkpoint = directory.path + "/" + LeaderEpochCache.checkpointName

    writeFileBytes(checkpoint, Array("not a checkpoint".utf8))
    let fromCorrupt = try openLog(directory)
    #expect(fromCorrupt.leaderEpochCache.entries == expected)
    #expect(
      fromCorrupt.recoveryReport.notes.contains { $0.contains("rebuilt the leader epoch cache") })
    try fromCorrupt.close()
    #expect(try LeaderEpochCache(directory: directory.path).entries == expected)

    try FileManager.default.removeItem(atPath: checkpoint)
    let fromMissing = try openLog(directory)
    #expect(fromMissing.leaderEpochCache.entries == expected)
    #expect(fromMissing.recoveryReport.isClean, "a missing checkpoint is no damage")
    try fromMissing.close()
    #expect(try openLog(directory).recoveryReport.isClean)
  }
}
