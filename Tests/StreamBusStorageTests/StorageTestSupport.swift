import Foundation
import Glibc
import StreamBusRecords
import Synchronization
import Testing

@testable import StreamBusStorage

extension String {
  func trimmingSuffix(_ suffix: String) -> String {
    hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
  }
}

/// A fresh directory under the system temp directory, removed by `remove()`.
struct TemporaryDirectory {
  let path: String

  init(_ label: String = #function) throws {
    let cleaned = label.filter { $0.isLetter || $0.isNumber }
    var template = Array(
      "\(NSTemporaryDirectory().trimmingSuffix("/"))/streambus-\(cleaned.prefix(40))-XXXXXX"
        .utf8CString)
    let created = template.withUnsafeMutableBufferPointer { buffer -> String? in
      guard let base = buffer.baseAddress, let result = mkdtemp(base) else { return nil }
      return String(cString: result)
    }
    guard let created else { throw StorageError(.ioFailure, "mkdtemp failed") }
    path = created
  }

  func remove() {
    try? FileManager.default.removeItem(atPath: path)
  }

  func files() -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
  }
}

/// A batch of `count` records with values of `valueBytes` bytes; offsets start at 0 (the
/// log assigns real ones) and timestamps at `timestamp`.
func makeBatch(
  records count: Int = 3, valueBytes: Int = 20, timestamp: Int64 = 1_000, seed: Int = 0
)
  -> [UInt8]
{
  var builder = RecordBatchBuilder()
  for index in 0..<count {
    let fill = UInt8(truncatingIfNeeded: seed &* 31 &+ index)
    builder.append(
      key: Array("k\(seed)-\(index)".utf8),
      value: [UInt8](repeating: fill, count: valueBytes),
      timestamp: timestamp + Int64(index))
  }
  return builder.build()
}

/// The bytes `append` stores for `batch`: the same batch with its offset and epoch set.
func stored(_ batch: [UInt8], baseOffset: Int64, epoch: Int32) -> [UInt8] {
  var bytes = batch
  bytes.withUnsafeMutableBytes {
    RecordBatchHeader.setBaseOffset(baseOffset, in: $0)
    RecordBatchHeader.setPartitionLeaderEpoch(epoch, in: $0)
  }
  return bytes
}

/// Splits a buffer of whole batches into headers, failing the test on anything else.
func batchHeaders(_ bytes: [UInt8]) throws -> [RecordBatchHeader] {
  try bytes.withUnsafeBytes { buffer in
    var scanner = RecordBatchScanner(buffer)
    var headers: [RecordBatchHeader] = []
    while let span = try scanner.next() { headers.append(span.header) }
    #expect(scanner.partialTailByteCount == 0)
    return headers
  }
}

/// Reads the whole log from its start offset with reads of `maxBytes`.
func readAll(_ log: PartitionLog, maxBytes: Int = 1 << 20) throws -> [UInt8] {
  var offset = log.logStartOffset
  var all: [UInt8] = []
  while offset < log.logEndOffset {
    let result = try log.read(from: offset, maxBytes: maxBytes)
    guard result.nextOffset > offset else {
      Issue.record("read at \(offset) made no progress")
      break
    }
    all += result.bytes
    offset = result.nextOffset
  }
  return all
}

func smallConfig(segmentBytes: Int = 4096, indexIntervalBytes: Int = 256) -> LogConfig {
  var config = LogConfig()
  config.segmentBytes = segmentBytes
  config.indexIntervalBytes = indexIntervalBytes
  config.retentionMs = nil
  return config
}

func fileBytes(_ path: String) -> [UInt8] {
  (FileManager.default.contents(atPath: path)).map { [UInt8]($0) } ?? []
}

/// Replaces a file's contents in place (no fsync, no rename: tests simulate damage).
func writeFileBytes(_ path: String, _ bytes: [UInt8]) {
  let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
  #expect(descriptor >= 0, "could not open \(path)")
  guard descriptor >= 0 else { return }
  defer { close(descriptor) }
  let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
  #expect(written == bytes.count, "could not write \(path)")
}

/// A clock the test moves by hand.
final class ManualClock: Sendable {
  private let nowMs: Mutex<Int64>
  init(_ start: Int64) { nowMs = Mutex(start) }
  func now() -> Int64 { nowMs.withLock { $0 } }
  func advance(by ms: Int64) { nowMs.withLock { $0 += ms } }
}

/// The real file system with faults a test switches on: a write budget after which writes
/// fail (after writing what the budget allows, like a disk filling up mid-write), capped
/// write sizes (short writes), and failing fdatasync.
final class FaultInjectingFileSystem: LogFileSystem {
  struct Faults {
    /// Bytes that may still be written before writes fail with `writeErrno`; nil = no limit.
    var writeBudget: Int?
    var writeErrno: Int32 = ENOSPC
    /// Largest count one write call accepts.
    var writeChunkMax: Int?
    var syncErrno: Int32?
    /// Skip fsyncs entirely: for tests that reopen a log thousands of times and test
    /// recovery logic rather than durability.
    var skipsSync = false
    var failedWrites = 0
  }

  let real = PosixFileSystem()
  let faults = Mutex(Faults())

  func update(_ change: (inout Faults) -> Void) { faults.withLock { change(&$0) } }

  func open(_ path: String, _ mode: FileOpenMode) throws -> Int32 { try real.open(path, mode) }
  func close(_ descriptor: Int32) { real.close(descriptor) }

  func write(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, at position: Int64) throws
    -> Int
  {
    let (allowed, failure) = faults.withLock { faults -> (Int, Int32?) in
      var allowed = bytes.count
      if let chunk = faults.writeChunkMax { allowed = min(allowed, chunk) }
      if let budget = faults.writeBudget {
        if budget == 0 {
          faults.failedWrites += 1
          return (0, faults.writeErrno)
        }
        allowed = min(allowed, budget)
        faults.writeBudget = budget - allowed
      }
      return (allowed, nil)
    }
    if let failure { throw StorageError.systemCall("pwrite", errno: failure, path: nil) }
    return try real.write(
      descriptor, UnsafeRawBufferPointer(rebasing: bytes[..<allowed]), at: position)
  }

  func read(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at position: Int64)
    throws -> Int
  {
    try real.read(descriptor, into: buffer, at: position)
  }

  func syncData(_ descriptor: Int32) throws {
    let (failure, skips) = faults.withLock { ($0.syncErrno, $0.skipsSync) }
    if let failure { throw StorageError.systemCall("fdatasync", errno: failure, path: nil) }
    if !skips { try real.syncData(descriptor) }
  }

  func truncate(_ descriptor: Int32, to length: Int64) throws {
    try real.truncate(descriptor, to: length)
  }
  func size(_ descriptor: Int32) throws -> Int64 { try real.size(descriptor) }
  func rename(_ source: String, to destination: String) throws {
    try real.rename(source, to: destination)
  }
  func remove(_ path: String) throws { try real.remove(path) }
  func contentsOfDirectory(_ path: String) throws -> [String] {
    try real.contentsOfDirectory(path)
  }
  func createDirectory(_ path: String) throws { try real.createDirectory(path) }
  func syncDirectory(_ path: String) throws {
    if !faults.withLock({ $0.skipsSync }) { try real.syncDirectory(path) }
  }
  func fileExists(_ path: String) -> Bool { real.fileExists(path) }
}

/// A file system whose fsyncs do nothing, for tests that reopen logs many times.
func unsyncedFileSystem() -> FaultInjectingFileSystem {
  let fileSystem = FaultInjectingFileSystem()
  fileSystem.update { $0.skipsSync = true }
  return fileSystem
}
