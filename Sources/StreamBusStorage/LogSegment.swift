import StreamBusRecords

/// One `<baseOffset>.log` file and its `<baseOffset>.index`. Internal to `PartitionLog`,
/// which keeps the invariants: batches are contiguous, the first starts at `baseOffset`,
/// and `size` counts only complete, validated batches.
final class LogSegment {
  let baseOffset: Int64
  let logPath: String
  let indexPath: String
  /// Read-write descriptor of the log file; -1 once closed.
  var descriptor: Int32
  /// Descriptor of the index file, open only while the segment is active.
  var indexDescriptor: Int32?
  /// Bytes of complete batches; anything past it in the file is garbage to overwrite.
  var size: Int64
  /// Offset after the last batch, `baseOffset` when empty.
  var nextOffset: Int64
  /// Sparse index in memory; sealed segments load it on first lookup.
  var index: [IndexEntry]?
  /// Largest batch `maxTimestamp`, once known (sealed segments compute it lazily).
  var maxTimestamp: Int64?
  /// When this process first appended to the segment, for time-based rolling.
  var firstAppendMs: Int64?
  /// Appended bytes not yet fdatasynced.
  var hasUnsyncedData = false
  var hasUnsyncedIndex = false

  init(baseOffset: Int64, directory: String, descriptor: Int32, size: Int64, nextOffset: Int64) {
    self.baseOffset = baseOffset
    self.logPath = directory + "/" + LogSegment.fileName(baseOffset, ".log")
    self.indexPath = directory + "/" + LogSegment.fileName(baseOffset, ".index")
    self.descriptor = descriptor
    self.size = size
    self.nextOffset = nextOffset
  }

  static let fileNameDigits = 20

  /// `00000000000000000042.log`: zero-padded so names sort like offsets.
  static func fileName(_ baseOffset: Int64, _ suffix: String) -> String {
    let digits = String(baseOffset)
    return String(repeating: "0", count: max(0, fileNameDigits - digits.count)) + digits + suffix
  }

  /// The base offset in a segment file name, or nil for any other file.
  static func parseFileName(_ name: String, suffix: String) -> Int64? {
    guard name.hasSuffix(suffix) else { return nil }
    let stem = name.dropLast(suffix.count)
    guard stem.count == fileNameDigits, stem.allSatisfy({ $0 >= "0" && $0 <= "9" }) else {
      return nil
    }
    return Int64(stem)
  }

  /// Bytes written since the last index entry; the next entry is due once it reaches the
  /// interval. Derived rather than stored so append, truncation and rebuild always agree.
  var bytesSinceIndexEntry: Int64 {
    size - Int64(index?.last?.position ?? 0)
  }

  func closeFiles(_ fileSystem: any LogFileSystem) {
    if descriptor >= 0 { fileSystem.close(descriptor) }
    descriptor = -1
    if let indexDescriptor { fileSystem.close(indexDescriptor) }
    indexDescriptor = nil
  }
}

/// What a full scan of a segment found.
struct SegmentScan {
  /// Bytes of valid batches from the start.
  var validBytes: Int64 = 0
  var nextOffset: Int64
  var index: [IndexEntry] = []
  var maxTimestamp: Int64?
  var batchCount = 0
  /// Why the scan stopped before the end of the file, nil when it reached the end cleanly.
  var problem: String?
}

/// Reads a segment sequentially in large windows and checks every batch: complete, magic 2,
/// CRC, and offsets that continue exactly from the previous batch. Builds the index the
/// same way appends do, so a rebuilt index equals the one written during appends.
func scanSegment(
  _ segment: LogSegment, fileSize: Int64, indexIntervalBytes: Int,
  fileSystem: any LogFileSystem, windowBytes: Int = 1 << 20
) throws -> SegmentScan {
  var scan = SegmentScan(nextOffset: segment.baseOffset)
  var window = [UInt8](repeating: 0, count: max(windowBytes, RecordBatchHeader.byteCount))
  var windowStart: Int64 = 0
  var windowCount = 0
  var position: Int64 = 0
  var bytesSinceIndexEntry: Int64 = 0

  func stop(_ problem: String) -> SegmentScan {
    var result = scan
    result.problem = "at byte \(position) of \(segment.logPath): \(problem)"
    return result
  }

  while position < fileSize {
    let remaining = fileSize - position
    guard remaining >= Int64(RecordBatchHeader.byteCount) else {
      return stop("\(remaining) trailing bytes, shorter than a batch header")
    }
    if position < windowStart
      || position + Int64(RecordBatchHeader.byteCount)
        > windowStart + Int64(windowCount)
    {
      windowStart = position
      windowCount = try window.withUnsafeMutableBytes { buffer in
        try fileSystem.readFully(
          segment.descriptor,
          into: UnsafeMutableRawBufferPointer(
            rebasing: buffer[..<Int(min(Int64(buffer.count), remaining))]),
          at: position)
      }
      guard windowCount >= RecordBatchHeader.byteCount else {
        return stop("file shorter than its size while scanning")
      }
    }
    let windowOffset = Int(position - windowStart)
    let header: RecordBatchHeader
    do {
      header = try window.withUnsafeBytes {
        try RecordBatchHeader(parsing: UnsafeRawBufferPointer(rebasing: $0[windowOffset...]))
      }
    } catch {
      return stop("unreadable header: \(error)")
    }
    guard header.batchLength >= RecordBatchHeader.batchLengthMin else {
      return stop("batch length \(header.batchLength) below the minimum")
    }
    let total = Int64(header.totalByteCount)
    guard total <= remaining else {
      return stop("batch of \(total) bytes but only \(remaining) left (torn write)")
    }
    guard header.baseOffset == scan.nextOffset else {
      return stop("batch base offset \(header.baseOffset), expected \(scan.nextOffset)")
    }
    guard header.recordCount > 0, header.lastOffsetDelta == header.recordCount - 1 else {
      return stop(
        "record count \(header.recordCount) and last offset delta \(header.lastOffsetDelta) disagree"
      )
    }
    guard position <= Int64(UInt32.max) else {
      return stop("segment larger than the 4 GiB the index can address")
    }
    guard header.lastOffset - segment.baseOffset <= Int64(UInt32.max) else {
      return stop("offset \(header.lastOffset) too far from the segment base for the index")
    }
    // Check the CRC in memory when the batch fits the window, streaming it otherwise.
    let problem: String?
    if total <= Int64(window.count) {
      if position + total > windowStart + Int64(windowCount) {
        windowStart = position
        windowCount = try window.withUnsafeMutableBytes { buffer in
          try fileSystem.readFully(
            segment.descriptor,
            into: UnsafeMutableRawBufferPointer(
              rebasing: buffer[..<Int(min(Int64(buffer.count), remaining))]),
            at: position)
        }
        guard Int64(windowCount) >= total else { return stop("file shorter than its size") }
      }
      let start = Int(position - windowStart)
      problem = window.withUnsafeBytes { buffer in
        do {
          try RecordBatch.validate(
            UnsafeRawBufferPointer(rebasing: buffer[start..<start + Int(total)]))
          return nil
        } catch {
          return "\(error)"
        }
      }
    } else {
      problem = try streamingCRCProblem(
        segment, header: header, position: position, window: &window, fileSystem: fileSystem)
      windowCount = 0
    }
    if let problem { return stop(problem) }

    if bytesSinceIndexEntry >= Int64(indexIntervalBytes) {
      scan.index.append(
        IndexEntry(
          relativeOffset: UInt32(header.baseOffset - segment.baseOffset),
          position: UInt32(position)))
      bytesSinceIndexEntry = 0
    }
    bytesSinceIndexEntry += total
    position += total
    scan.validBytes = position
    scan.nextOffset = header.nextOffset
    scan.maxTimestamp = max(scan.maxTimestamp ?? header.maxTimestamp, header.maxTimestamp)
    scan.batchCount += 1
  }
  return scan
}

/// CRC check of a batch larger than the scan window, reading it in window-sized pieces.
private func streamingCRCProblem(
  _ segment: LogSegment, header: RecordBatchHeader, position: Int64, window: inout [UInt8],
  fileSystem: any LogFileSystem
) throws -> String? {
  guard header.magic == RecordBatchHeader.currentMagic else {
    return "magic \(header.magic), only 2 is supported"
  }
  var crc: UInt32 = 0
  var at = position + Int64(RecordBatchHeader.crcCoveredStart)
  let end = position + Int64(header.totalByteCount)
  while at < end {
    let want = Int(min(Int64(window.count), end - at))
    let count = try window.withUnsafeMutableBytes { buffer in
      try fileSystem.readFully(
        segment.descriptor, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), at: at)
    }
    guard count == want else { return "file shorter than its size" }
    crc = window.withUnsafeBytes {
      CRC32C.extend(crc, UnsafeRawBufferPointer(rebasing: $0[..<count]))
    }
    at += Int64(count)
  }
  return crc == header.crc ? nil : "CRC-32C mismatch in a \(header.totalByteCount)-byte batch"
}
