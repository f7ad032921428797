import Foundation
import Glibc
import StreamBusRecords
import Testing

@testable import StreamBusStorage

/// Disk failures: the failed operation throws a typed error, and the log stays readable,
/// consistent and appendable once the cause is gone.
@Suite struct FaultTests {
  @Test func injectedNoSpaceMidWriteLeavesTheLogConsistent() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    let log = try PartitionLog(
      directory: directory.path, config: smallConfig(segmentBytes: 1 << 20),
      fileSystem: fileSystem)
    var expected: [UInt8] = []
    for number in 0..<10 {
      let result = try log.append(makeBatch(seed: number), partitionLeaderEpoch: 0)
      expected += stored(makeBatch(seed: number), baseOffset: result.baseOffset, epoch: 0)
    }
    let segmentPath = log.activeSegment.logPath
    let sizeBefore = fileBytes(segmentPath).count
    let endBefore = log.logEndOffset
    // The disk fills up 100 bytes into a 3-batch append.
    fileSystem.update { $0.writeBudget = 100 }
    let batches = makeBatch(seed: 20) + makeBatch(seed: 21) + makeBatch(seed: 22)
    let error = #expect(throws: StorageError.self) {
      try log.append(batches, partitionLeaderEpoch: 0)
    }
    #expect(error?.code == .noSpace)
    #expect(error?.errno == ENOSPC)
    #expect(error?.message.contains("No space left") == true)
    #expect(log.logEndOffset == endBefore)
    #expect(fileBytes(segmentPath).count == sizeBefore)
    #expect(try readAll(log) == expected)
    // Still full: fails again the same way.
    #expect(throws: StorageError.self) { try log.append(makeBatch(), partitionLeaderEpoch: 0) }
    // Space returns: appends continue at the same offset.
    fileSystem.update { $0.writeBudget = nil }
    let result = try log.append(batches, partitionLeaderEpoch: 0)
    #expect(result.baseOffset == endBefore)
    try log.flush()
    expected += stored(makeBatch(seed: 20), baseOffset: endBefore, epoch: 0)
    expected += stored(makeBatch(seed: 21), baseOffset: endBefore + 3, epoch: 0)
    expected += stored(makeBatch(seed: 22), baseOffset: endBefore + 6, epoch: 0)
    #expect(try readAll(log) == expected)
    try log.close()
    let reopened = try PartitionLog(
      directory: directory.path, config: smallConfig(segmentBytes: 1 << 20))
    #expect(reopened.recoveryReport.isClean, "\(reopened.recoveryReport)")
    #expect(try readAll(reopened) == expected)
  }

  @Test func noSpaceWhileWritingTheIndexRollsBackTheData() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    let config = smallConfig(segmentBytes: 1 << 20, indexIntervalBytes: 64)
    let log = try PartitionLog(directory: directory.path, config: config, fileSystem: fileSystem)
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    let batch = makeBatch(seed: 1)
    // Exactly enough budget for the data, none for the index entry that follows it.
    fileSystem.update { $0.writeBudget = batch.count }
    #expect(throws: StorageError.self) { try log.append(batch, partitionLeaderEpoch: 0) }
    #expect(log.logEndOffset == 3)
    #expect(fileBytes(log.activeSegment.logPath).count == makeBatch().count)
    fileSystem.update { $0.writeBudget = nil }
    try log.append(batch, partitionLeaderEpoch: 0)
    try log.close()
    let reopened = try PartitionLog(directory: directory.path, config: config)
    #expect(reopened.recoveryReport.isClean, "\(reopened.recoveryReport)")
    #expect(reopened.logEndOffset == 6)
  }

  @Test func shortWritesAreCompleted() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    fileSystem.update { $0.writeChunkMax = 7 }
    let log = try PartitionLog(
      directory: directory.path, config: smallConfig(), fileSystem: fileSystem)
    var expected: [UInt8] = []
    for number in 0..<30 {
      let result = try log.append(makeBatch(seed: number), partitionLeaderEpoch: 0)
      expected += stored(makeBatch(seed: number), baseOffset: result.baseOffset, epoch: 0)
    }
    try log.close()
    let reopened = try PartitionLog(directory: directory.path, config: smallConfig())
    #expect(reopened.recoveryReport.isClean, "\(reopened.recoveryReport)")
    #expect(try readAll(reopened) == expected)
  }

  @Test func failedFsyncDoesNotAdvanceDurableEndOffset() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    let log = try PartitionLog(
      directory: directory.path, config: smallConfig(), fileSystem: fileSystem)
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    try log.flush()
    try log.append(makeBatch(), partitionLeaderEpoch: 0)
    fileSystem.update { $0.syncErrno = EIO }
    let error = #expect(throws: StorageError.self) { try log.flush() }
    #expect(error?.code == .ioFailure)
    #expect(error?.errno == EIO)
    #expect(log.durableEndOffset == 3)
    #expect(log.logEndOffset == 6)
    fileSystem.update { $0.syncErrno = nil }
    try log.flush()
    #expect(log.durableEndOffset == 6)
  }

  /// ENOSPC from a real file system: a 1 MiB tmpfs, mounted only when running as root.
  @Test func realNoSpaceOnASmallTmpfs() throws {
    guard getuid() == 0 else {
      print("skipping realNoSpaceOnASmallTmpfs: needs root to mount a tmpfs")
      return
    }
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let mountPoint = directory.path + "/mnt"
    #expect(mkdir(mountPoint, 0o755) == 0)
    guard mount("tmpfs", mountPoint, "tmpfs", 0, "size=1m") == 0 else {
      print("skipping realNoSpaceOnASmallTmpfs: mount failed: \(String(cString: strerror(errno)))")
      return
    }
    defer { umount(mountPoint) }
    // Take part of the space with a file the test removes later, as an operator would.
    let fillerPath = mountPoint + "/filler"
    writeFileBytes(fillerPath, [UInt8](repeating: 1, count: 256 << 10))
    var config = smallConfig(segmentBytes: 256 << 10, indexIntervalBytes: 4096)
    config.batchBytesMax = 1 << 20
    let logPath = mountPoint + "/topic-0"
    let log = try PartitionLog(directory: logPath, config: config)
    var expected: [UInt8] = []
    var failure: StorageError?
    for number in 0..<100 {
      let batch = makeBatch(records: 4, valueBytes: 5_000, seed: number)
      do {
        let result = try log.append(batch, partitionLeaderEpoch: 0)
        expected += stored(batch, baseOffset: result.baseOffset, epoch: 0)
      } catch let error as StorageError {
        failure = error
        break
      }
    }
    let error = try #require(failure, "the 1 MiB tmpfs never filled up")
    print("tmpfs full after \(expected.count) bytes of batches: \(error)")
    #expect(error.code == .noSpace, "\(error)")
    #expect(try readAll(log) == expected)
    let end = log.logEndOffset
    // Space comes back; the next append lands right after the last good batch.
    #expect(unlink(fillerPath) == 0)
    let batch = makeBatch(records: 4, valueBytes: 5_000, seed: 999)
    let result = try log.append(batch, partitionLeaderEpoch: 0)
    #expect(result.baseOffset == end)
    expected += stored(batch, baseOffset: end, epoch: 0)
    try log.close()
    let reopened = try PartitionLog(directory: logPath, config: config)
    #expect(reopened.recoveryReport.truncations.isEmpty, "\(reopened.recoveryReport)")
    #expect(try readAll(reopened) == expected)
    try reopened.close()
  }
}

@Suite struct AtomicFileTests {
  @Test func writeReplacesContentsAndLeavesNoTemporaryFile() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let path = directory.path + "/high-watermark.checkpoint"
    #expect(try AtomicFile.read(path) == nil)
    try AtomicFile.write(path, Array("0\n42\n".utf8))
    #expect(try AtomicFile.read(path) == Array("0\n42\n".utf8))
    try AtomicFile.write(path, Array("0\n43\n".utf8))
    #expect(try AtomicFile.read(path) == Array("0\n43\n".utf8))
    #expect(directory.files() == ["high-watermark.checkpoint"])
  }

  @Test func failedWriteKeepsTheOldContents() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let path = directory.path + "/checkpoint"
    let fileSystem = FaultInjectingFileSystem()
    try AtomicFile.write(path, [1, 2, 3], fileSystem: fileSystem)
    fileSystem.update { $0.syncErrno = EIO }
    #expect(throws: StorageError.self) {
      try AtomicFile.write(path, [9, 9, 9, 9], fileSystem: fileSystem)
    }
    fileSystem.update {
      $0.syncErrno = nil
      $0.writeBudget = 2
    }
    #expect(throws: StorageError.self) {
      try AtomicFile.write(path, [9, 9, 9, 9], fileSystem: fileSystem)
    }
    #expect(try AtomicFile.read(path) == [1, 2, 3])
    #expect(directory.files() == ["checkpoint"])
  }

  @Test func logStartOffsetCheckpointFormat() {
    #expect(LogStartOffsetCheckpoint.decode(LogStartOffsetCheckpoint.encode(123)) == 123)
    #expect(LogStartOffsetCheckpoint.decode(Array("1\n5\n".utf8)) == nil)
    #expect(LogStartOffsetCheckpoint.decode(Array("0\n-5\n".utf8)) == nil)
    #expect(LogStartOffsetCheckpoint.decode(Array("0\n".utf8)) == nil)
    #expect(LogStartOffsetCheckpoint.decode([0xFF, 0xFE]) == nil)
  }
}

@Suite struct FailedMaintenanceTests {
  @Test func failedTruncationClosesTheLogAndReopeningRecovers() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultInjectingFileSystem()
    let log = try PartitionLog(
      directory: directory.path, config: smallConfig(segmentBytes: 1024), fileSystem: fileSystem)
    var stored: [[UInt8]] = []
    for number in 0..<40 {
      let result = try log.append(makeBatch(seed: number), partitionLeaderEpoch: 0)
      stored.append(
        StreamBusStorageTests.stored(
          makeBatch(seed: number), baseOffset: result.baseOffset, epoch: 0))
    }
    try log.flush()
    fileSystem.update { $0.syncErrno = EIO }
    let error = #expect(throws: StorageError.self) { try log.truncate(to: 30) }
    #expect(error?.code == .ioFailure)
    #expect(error?.message.contains("reopen") == true)
    #expect(throws: StorageError.self) { try log.read(from: 0, maxBytes: 100) }
    fileSystem.update { $0.syncErrno = nil }
    let reopened = try PartitionLog(
      directory: directory.path, config: smallConfig(segmentBytes: 1024))
    // Whatever the failed truncation got done, the log is a whole-batch prefix that keeps
    // everything below the truncation point.
    let contents = try readAll(reopened)
    let keptBatches = try batchHeaders(contents).count
    #expect(keptBatches >= 10)
    #expect(contents == Array(stored[..<keptBatches].joined()))
  }
}
