import Foundation
import StreamBusRecords
import Testing

@testable import StreamBusStorage

/// Crash recovery: whatever damage a crash or a bad disk leaves at the tail, reopening must
/// give a log whose contents are a prefix (in whole batches) of what was written.
@Suite struct RecoveryTests {
  let fileSystem = unsyncedFileSystem()

  func open(_ directory: TemporaryDirectory) throws -> PartitionLog {
    try PartitionLog(
      directory: directory.path, config: smallConfig(segmentBytes: 2048), fileSystem: fileSystem)
  }

  /// A closed log with a few sealed segments and an active one; returns the stored bytes
  /// of each batch in order.
  func writeLog(_ path: String, batches: Int = 40) throws -> [[UInt8]] {
    let log = try PartitionLog(
      directory: path, config: smallConfig(segmentBytes: 2048), fileSystem: fileSystem)
    var stored: [[UInt8]] = []
    for number in 0..<batches {
      let batch = makeBatch(records: 1 + number % 3, valueBytes: 30 + number * 7 % 90, seed: number)
      let result = try log.append(batch, partitionLeaderEpoch: 1)
      stored.append(StreamBusStorageTests.stored(batch, baseOffset: result.baseOffset, epoch: 1))
    }
    try log.close()
    return stored
  }

  /// The whole-batch prefix of `stored` that `contents` must equal, or nil if it is not one.
  func prefixLength(_ contents: [UInt8], of stored: [[UInt8]]) -> Int? {
    var position = 0
    var count = 0
    for batch in stored {
      guard position + batch.count <= contents.count else { break }
      guard Array(contents[position..<position + batch.count]) == batch else { return nil }
      position += batch.count
      count += 1
    }
    return position == contents.count ? count : nil
  }

  func lastSegmentPath(_ directory: TemporaryDirectory) throws -> String {
    let name = try #require(directory.files().filter { $0.hasSuffix(".log") }.last)
    return directory.path + "/" + name
  }

  @Test func lastBatchTruncatedAtEveryByte() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let stored = try writeLog(directory.path)
    let path = try lastSegmentPath(directory)
    let original = fileBytes(path)
    let lastBatch = try #require(stored.last)
    let lastStart = original.count - lastBatch.count
    let expectedEnd = try batchHeaders(lastBatch)[0].baseOffset
    for cut in lastStart..<original.count {
      writeFileBytes(path, Array(original[..<cut]))
      let log = try open(directory)
      #expect(log.logEndOffset == expectedEnd, "cut at \(cut)")
      let report = log.recoveryReport
      if cut > lastStart {
        #expect(report.truncations.count == 1, "cut at \(cut)")
        #expect(report.truncations.first?.toBytes == Int64(lastStart))
      } else {
        #expect(report.truncations.isEmpty)
      }
      #expect(try readAll(log) == Array(stored.dropLast().joined()), "cut at \(cut)")
      // The repaired log takes appends at the recovered end.
      #expect(try log.append(makeBatch(), partitionLeaderEpoch: 2).baseOffset == expectedEnd)
      try log.close()
      writeFileBytes(path, original)
    }
  }

  @Test func flippedBytesInTheActiveSegmentLeaveAPrefix() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let stored = try writeLog(directory.path)
    let path = try lastSegmentPath(directory)
    let original = fileBytes(path)
    let headers = try batchHeaders(original)
    // The partition leader epoch is outside the CRC by design (the broker rewrites it), so a
    // flip there cannot be detected; every other byte is covered by the CRC or by the
    // offset and length checks.
    var epochBytes = Set<Int>()
    var position = 0
    for header in headers {
      epochBytes.formUnion(position + 12..<position + 16)
      position += header.totalByteCount
    }
    let activeBatches = headers.count
    // Every byte of the first and last batch, every third byte in between (each reopen
    // costs a few milliseconds in debug builds).
    let firstEnd = headers[0].totalByteCount
    let lastStart = original.count - headers[headers.count - 1].totalByteCount
    let flips = (0..<original.count).filter {
      !epochBytes.contains($0) && ($0 < firstEnd || $0 >= lastStart || $0 % 3 == 0)
    }
    var truncatedRuns = 0
    for flip in flips {
      var damaged = original
      damaged[flip] ^= 0x10
      writeFileBytes(path, damaged)
      let log = try open(directory)
      let contents = try readAll(log)
      // Compared outside #require so a failure prints a sentence, not the whole log.
      let prefix = prefixLength(contents, of: stored)
      let kept = try #require(prefix, "flip at \(flip): recovered log is not a prefix")
      #expect(kept < stored.count, "flip at \(flip) went unnoticed")
      #expect(kept >= stored.count - activeBatches)
      if !log.recoveryReport.truncations.isEmpty { truncatedRuns += 1 }
      try log.close()
      writeFileBytes(path, original)
    }
    #expect(truncatedRuns == flips.count)
  }

  @Test func garbageAppendedAfterTheLastBatchIsCut() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let stored = try writeLog(directory.path)
    let path = try lastSegmentPath(directory)
    let original = fileBytes(path)
    for garbage in [
      [UInt8](repeating: 0, count: 100), [UInt8](repeating: 0xFF, count: 5), Array(stored[0]),
    ] {
      writeFileBytes(path, original + garbage)
      let log = try open(directory)
      #expect(try readAll(log) == Array(stored.joined()))
      #expect(fileBytes(path) == original)
      try log.close()
    }
  }

  @Test func missingAndCorruptIndexesAreRebuilt() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let stored = try writeLog(directory.path, batches: 80)
    let indexes = directory.files().filter { $0.hasSuffix(".index") }
    #expect(indexes.count >= 4)
    let originals = indexes.map { fileBytes(directory.path + "/" + $0) }
    // Sealed segments: one index deleted, one torn, one pointing past the data.
    try FileManager.default.removeItem(atPath: directory.path + "/" + indexes[0])
    writeFileBytes(directory.path + "/" + indexes[1], Array(originals[1].dropLast(3)))
    writeFileBytes(directory.path + "/" + indexes[2], [0, 0, 0, 1, 0x7F, 0, 0, 0])
    let log = try open(directory)
    let report = log.recoveryReport
    let rebuilt = Set(report.rebuiltIndexes.map { LogSegment.fileName($0, ".index") })
    #expect(rebuilt.isSuperset(of: indexes[0...2]), "\(report)")
    #expect(report.truncations.isEmpty)
    for (name, original) in zip(indexes, originals) {
      #expect(fileBytes(directory.path + "/" + name) == original, "\(name)")
    }
    #expect(try readAll(log) == Array(stored.joined()))
    #expect(try readAll(log, maxBytes: 1) == Array(stored.joined()))
  }

  @Test func wrongButWellFormedIndexIsDetectedOnLookup() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let stored = try writeLog(directory.path, batches: 80)
    let name = try #require(directory.files().filter { $0.hasSuffix(".index") }.first)
    let path = directory.path + "/" + name
    var index = fileBytes(path)
    #expect(index.count >= 16)
    // Shift the first entry's position by one byte: still ordered, still inside the file.
    index[7] &+= 1
    writeFileBytes(path, index)
    let log = try open(directory)
    // Random access (no read hint), newest first, so lookups go through the bad entry.
    let offsets = try batchHeaders(Array(stored.joined())).map { ($0.baseOffset, $0.lastOffset) }
    for (batchNumber, (first, last)) in offsets.enumerated().reversed() {
      for offset in first...last {
        let result = try log.read(from: offset, maxBytes: 1)
        #expect(result.bytes == stored[batchNumber], "offset \(offset)")
      }
    }
    index[7] &-= 1
    #expect(fileBytes(path) == index)
  }

  @Test func corruptionInASealedSegmentWithBadIndexTruncatesTheLogThere() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let stored = try writeLog(directory.path, batches: 80)
    let logs = directory.files().filter { $0.hasSuffix(".log") }
    #expect(logs.count >= 4)
    let damagedPath = directory.path + "/" + logs[1]
    var damaged = fileBytes(damagedPath)
    damaged[damaged.count - 5] ^= 0xFF
    writeFileBytes(damagedPath, damaged)
    try FileManager.default.removeItem(
      atPath: directory.path + "/" + logs[1].replacingOccurrences(of: ".log", with: ".index"))
    let log = try open(directory)
    #expect(log.segmentBaseOffsets.count == 2)
    #expect(log.recoveryReport.deletedSegments.count == logs.count - 2)
    let contents = try readAll(log)
    let prefix = prefixLength(contents, of: stored)
    let kept = try #require(prefix, "recovered log is not a prefix of what was written")
    #expect(kept < stored.count)
    #expect(log.logEndOffset == (try batchHeaders(stored[kept])[0].baseOffset))
    #expect(directory.files().filter { $0.hasSuffix(".log") }.count == 2)
  }

  @Test func leftoversFromACrashAreCleanedUp() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let stored = try writeLog(directory.path)
    writeFileBytes(directory.path + "/log-start-offset.checkpoint.tmp", [1, 2, 3])
    writeFileBytes(directory.path + "/" + LogSegment.fileName(99_999, ".index"), [0, 0])
    writeFileBytes(directory.path + "/unrelated.txt", [1])
    let log = try open(directory)
    #expect(
      Set(log.recoveryReport.removedFiles)
        == ["log-start-offset.checkpoint.tmp", LogSegment.fileName(99_999, ".index")])
    #expect(directory.files().contains("unrelated.txt"))
    #expect(try readAll(log) == Array(stored.joined()))
    #expect(!log.recoveryReport.description.isEmpty)
  }

  @Test func emptyDirectoryAndEmptyLastSegment() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path + "/a/b", config: smallConfig())
    #expect(log.recoveryReport.segmentCount == 1)
    try log.close()
    let reopened = try PartitionLog(directory: directory.path + "/a/b", config: smallConfig())
    #expect(reopened.logEndOffset == 0)
    #expect(reopened.recoveryReport.isClean, "\(reopened.recoveryReport)")
  }
}
