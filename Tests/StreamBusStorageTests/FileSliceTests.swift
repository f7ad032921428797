import Foundation
import Glibc
import StreamBusRecords
import Testing

@testable import StreamBusStorage

/// The bytes of a slice, read through its own descriptor (which it then gives up).
private func sliceBytes(_ slice: LogFileSlice) throws -> [UInt8] {
  let descriptor = try #require(slice.takeDescriptor())
  defer { close(descriptor) }
  var bytes = [UInt8](repeating: 0, count: slice.byteCount)
  let count = bytes.withUnsafeMutableBytes {
    pread(descriptor, $0.baseAddress, $0.count, off_t(slice.position))
  }
  try #require(count == slice.byteCount)
  return bytes
}

@Suite struct FileSliceTests {
  @Test func slicesHoldTheSameBatchesAsReads() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig(segmentBytes: 2048))
    for number in 0..<40 {
      try log.append(
        makeBatch(records: 1 + number % 3, valueBytes: 30 + number, seed: number),
        partitionLeaderEpoch: 0)
    }
    for maxBytes in [1, 100, 500, 5_000] {
      var offset = log.logStartOffset
      while offset < log.logEndOffset {
        let read = try log.read(from: offset, maxBytes: maxBytes)
        let sliced = try log.readSlice(from: offset, maxBytes: maxBytes)
        let slice = try #require(sliced.slice)
        #expect(sliced.bytes.isEmpty)
        #expect(try sliceBytes(slice) == read.bytes)
        #expect(sliced.firstOffset == read.firstOffset)
        #expect(sliced.nextOffset == read.nextOffset)
        #expect(sliced.byteCount == read.bytes.count)
        offset = sliced.nextOffset
      }
    }
  }

  @Test func slicesStopBeforeTheLimitAndAtTheEnd() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(directory: directory.path, config: smallConfig())
    for number in 0..<5 {
      try log.append(makeBatch(records: 2, seed: number), partitionLeaderEpoch: 0)
    }
    // Offsets 0...9 in batches of two: a limit inside a batch leaves that batch out.
    let limited = try log.readSlice(from: 0, maxBytes: 1 << 20, maxOffset: 5)
    #expect(limited.nextOffset == 4)
    #expect(try batchHeaders(sliceBytes(try #require(limited.slice))).count == 2)
    let nothing = try log.readSlice(from: 4, maxBytes: 1 << 20, maxOffset: 5)
    #expect(nothing.slice == nil && nothing.firstOffset == nil && nothing.nextOffset == 4)
    let atEnd = try log.readSlice(from: 10, maxBytes: 1 << 20)
    #expect(atEnd.slice == nil && atEnd.byteCount == 0)
    #expect(throws: StorageError.self) { try log.readSlice(from: 11, maxBytes: 100) }
    // The first batch comes whole even when larger than maxBytes.
    let first = try log.readSlice(from: 3, maxBytes: 1)
    #expect(first.firstOffset == 2 && first.nextOffset == 4)
  }

  @Test func sliceStaysReadableAfterRetentionDeletesItsSegment() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var config = smallConfig(segmentBytes: 1024)
    config.retentionBytes = 1500
    let log = try PartitionLog(directory: directory.path, config: config)
    for number in 0..<40 {
      try log.append(makeBatch(records: 2, valueBytes: 50, seed: number), partitionLeaderEpoch: 0)
    }
    let expected = try log.read(from: 0, maxBytes: 600).bytes
    let slice = try #require(try log.readSlice(from: 0, maxBytes: 600).slice)
    let result = try log.applyRetention(nowMs: 0)
    #expect(result.deletedSegments.contains(0))
    #expect(try sliceBytes(slice) == expected)
  }

  @Test func fileSystemWithoutSharedDescriptorsGetsBytes() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let log = try PartitionLog(
      directory: directory.path, config: smallConfig(),
      fileSystem: FaultInjectingFileSystem())
    for number in 0..<5 {
      try log.append(makeBatch(records: 2, seed: number), partitionLeaderEpoch: 0)
    }
    let sliced = try log.readSlice(from: 0, maxBytes: 1 << 20)
    #expect(sliced.slice == nil)
    #expect(sliced.bytes == (try log.read(from: 0, maxBytes: 1 << 20)).bytes)
    #expect(sliced.byteCount == sliced.bytes.count && sliced.nextOffset == 10)
  }

  @Test func takenDescriptorIsHandedOverOnce() throws {
    let slice = LogFileSlice(descriptor: dup(0), position: 0, byteCount: 0)
    let descriptor = try #require(slice.takeDescriptor())
    close(descriptor)
    #expect(slice.takeDescriptor() == nil)
  }
}
