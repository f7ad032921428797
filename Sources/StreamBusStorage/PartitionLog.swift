import Glibc
import StreamBusRecords

/// The log of one partition: a directory of segment files holding Kafka v2 record batches
/// in offset order, each with a sparse offset index.
///
/// Not thread-safe and owns no threads or timers: the broker drives it from one actor per
/// partition and passes time in where policy depends on it. Every thrown error is a
/// `StorageError`. After a failed append or flush the log stays readable and consistent
/// (nothing partial becomes visible and `logEndOffset` is unchanged), so the owner may retry
/// once the cause (say, a full disk) is gone.
///
/// Offsets: `logStartOffset` is the first offset still kept, `logEndOffset` (LEO) the offset
/// the next record gets, `durableEndOffset` the offset below which everything is fsynced.
public final class PartitionLog {
  public let directory: String
  public let config: LogConfig
  public let fileSystem: any LogFileSystem
  /// What opening the log found and repaired.
  public private(set) var recoveryReport: RecoveryReport
  /// Which leader epoch wrote from which offset on; kept in step with the log by appends,
  /// truncation, retention and recovery.
  public let leaderEpochCache: LeaderEpochCache

  public private(set) var logStartOffset: Int64
  public internal(set) var durableEndOffset: Int64

  /// Sorted by base offset; the last one is active (takes appends). Never empty while open.
  var segments: [LogSegment]
  let clockMs: @Sendable () -> Int64
  var lastFlushMs: Int64
  /// The flush started by `beginFlush()` and not yet completed.
  var inFlightFlush: InFlightFlush?
  private var isClosed = false
  /// Where the previous read ended, so a consumer reading forward skips the index lookup.
  private var readHint: (offset: Int64, segmentBaseOffset: Int64, position: Int64)?

  public static let logStartOffsetCheckpointName = "log-start-offset.checkpoint"

  /// Opens (creating if needed) the log in `directory`, recovering from a crash: see
  /// docs/storage.md. `clockMs` is wall-clock milliseconds, used for time-based rolling.
  public init(
    directory: String, config: LogConfig = LogConfig(),
    fileSystem: any LogFileSystem = PosixFileSystem(),
    clockMs: @escaping @Sendable () -> Int64 = PartitionLog.wallClockMs
  ) throws {
    try config.validate()
    self.directory = directory
    self.config = config
    self.fileSystem = fileSystem
    self.clockMs = clockMs
    var recovery = LogRecovery(directory: directory, config: config, fileSystem: fileSystem)
    let recovered = try recovery.run()
    segments = recovered.segments
    logStartOffset = recovered.logStartOffset
    recoveryReport = recovery.report
    durableEndOffset = segments[segments.count - 1].nextOffset
    lastFlushMs = clockMs()
    var unreadableCheckpoint: String?
    do {
      leaderEpochCache = try LeaderEpochCache(directory: directory, fileSystem: fileSystem)
    } catch let error as StorageError where error.code == .corruptLog {
      unreadableCheckpoint = error.message
      leaderEpochCache = LeaderEpochCache(emptyIn: directory, fileSystem: fileSystem)
    }
    try recoverLeaderEpochCache(unreadableCheckpoint: unreadableCheckpoint)
  }

  /// Brings the epoch cache in line with the recovered log: rebuilt from the batch headers
  /// when its checkpoint is unreadable, or missing while the log holds batches (a log from
  /// before the cache existed); otherwise cut to the log's offsets, since a crash can leave
  /// entries for batches recovery removed.
  private func recoverLeaderEpochCache(unreadableCheckpoint: String?) throws {
    let checkpointMissing = !fileSystem.fileExists(leaderEpochCache.path)
    if let unreadableCheckpoint {
      recoveryReport.notes.append(
        "rebuilt the leader epoch cache from the log: \(unreadableCheckpoint)")
    }
    if unreadableCheckpoint != nil || (checkpointMissing && logEndOffset > logStartOffset) {
      var rebuilt: [EpochEntry] = []
      for segment in segments {
        try walkHeaders(segment, from: 0, windowBytes: 256 << 10) { _, header in
          let epoch = header.partitionLeaderEpoch
          if epoch >= 0, epoch > rebuilt.last?.epoch ?? -1 {
            rebuilt.append(EpochEntry(epoch: epoch, startOffset: header.baseOffset))
          }
          return true
        }
      }
      // A missing checkpoint is no damage (a standalone broker never assigns epochs), so
      // building it is not a recovery note.
      try leaderEpochCache.replace(with: rebuilt)
    }
    let before = leaderEpochCache.entries
    try leaderEpochCache.truncateFromEnd(endOffset: logEndOffset)
    try leaderEpochCache.truncateFromStart(startOffset: logStartOffset)
    if leaderEpochCache.entries != before {
      recoveryReport.notes.append(
        "cut the leader epoch cache to offsets \(logStartOffset)..<\(logEndOffset): \(before) became \(leaderEpochCache.entries)"
      )
    }
  }

  /// Kafka's end offset of `epoch` in this log (see `LeaderEpochCache.endOffset`), what a
  /// leader answers a follower asking where its last fetched epoch ends.
  public func endOffset(forLeaderEpoch epoch: Int32) -> EpochEndOffset {
    leaderEpochCache.endOffset(for: epoch, logEndOffset: logEndOffset)
  }

  deinit {
    for segment in segments { segment.closeFiles(fileSystem) }
  }

  public static func wallClockMs() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
  }

  var activeSegment: LogSegment { segments[segments.count - 1] }

  /// The offset the next appended record gets.
  public var logEndOffset: Int64 { segments.last?.nextOffset ?? logStartOffset }

  /// Base offsets of the segments, oldest first.
  public var segmentBaseOffsets: [Int64] { segments.map(\.baseOffset) }

  /// Bytes of batches held, over all segments.
  public var sizeBytes: Int64 { segments.reduce(0) { $0 + $1.size } }

  private func checkOpen() throws {
    if isClosed { throw StorageError(.closed, "partition log \(directory) is closed") }
  }

  // MARK: Appending

  /// Appends one or more concatenated v2 batches from a producer, assigning offsets from
  /// `logEndOffset` on (rewriting each batch's base offset) and stamping
  /// `partitionLeaderEpoch`; both fields are outside the CRC, so it stays valid. Every batch is
  /// validated (complete, magic 2, CRC, record count) before anything is written. The
  /// epoch cache is not touched: the owner assigns its epoch once, when it becomes leader,
  /// so no checkpoint write (and fsync) lands on the produce path.
  @discardableResult
  public func append(_ batches: [UInt8], partitionLeaderEpoch: Int32) throws -> AppendResult {
    try checkOpen()
    var bytes = batches
    let headers = try validatedHeaders(bytes)
    var nextOffset = logEndOffset
    bytes.withUnsafeMutableBytes { buffer in
      var position = 0
      for header in headers {
        let batch = UnsafeMutableRawBufferPointer(
          rebasing: buffer[position..<position + header.totalByteCount])
        RecordBatchHeader.setBaseOffset(nextOffset, in: batch)
        RecordBatchHeader.setPartitionLeaderEpoch(partitionLeaderEpoch, in: batch)
        nextOffset += Int64(header.lastOffsetDelta) + 1
        position += header.totalByteCount
      }
    }
    return try write(bytes, headers: headers, baseOffset: logEndOffset)
  }

  /// Appends batches replicated from the leader, keeping their offsets and epochs: the
  /// first must start at `logEndOffset` and each must continue where the previous ended.
  /// A batch whose `partitionLeaderEpoch` is above the epoch cache's latest starts that epoch
  /// there (the leader's log is authoritative, so smaller epochs are stored as they are).
  @discardableResult
  public func appendAsFollower(_ batches: [UInt8]) throws -> AppendResult {
    try checkOpen()
    let headers = try validatedHeaders(batches)
    var expected = logEndOffset
    var newEpochs: [EpochEntry] = []
    var latestEpoch = leaderEpochCache.latestEpoch ?? -1
    for header in headers {
      guard header.baseOffset == expected else {
        throw StorageError(
          .unexpectedOffset,
          "follower batch starts at offset \(header.baseOffset), log \(directory) expects \(expected)"
        )
      }
      if header.partitionLeaderEpoch > latestEpoch {
        latestEpoch = header.partitionLeaderEpoch
        newEpochs.append(EpochEntry(epoch: latestEpoch, startOffset: header.baseOffset))
      }
      expected = header.nextOffset
    }
    if !newEpochs.isEmpty { try leaderEpochCache.assign(newEpochs) }
    return try write(batches, headers: headers, baseOffset: logEndOffset)
  }

  private func validatedHeaders(_ bytes: [UInt8]) throws -> [RecordBatchHeader] {
    guard !bytes.isEmpty else { throw StorageError(.invalidBatch, "append of zero bytes") }
    guard bytes.count <= LogConfig.segmentBytesMax else {
      throw StorageError(.invalidBatch, "append of \(bytes.count) bytes is too large")
    }
    let (headers, partialTail): ([RecordBatchHeader], Int)
    do {
      (headers, partialTail) = try bytes.withUnsafeBytes { buffer in
        var scanner = RecordBatchScanner(buffer)
        var headers: [RecordBatchHeader] = []
        while let span = try scanner.next() { headers.append(span.header) }
        return (headers, scanner.partialTailByteCount)
      }
    } catch let error as RecordsError {
      throw StorageError(.invalidBatch, "invalid record batch: \(error)")
    }
    guard partialTail == 0 else {
      throw StorageError(.invalidBatch, "append ends with \(partialTail) bytes of a partial batch")
    }
    for header in headers {
      guard header.totalByteCount <= config.batchBytesMax else {
        throw StorageError(
          .invalidBatch,
          "batch of \(header.totalByteCount) bytes exceeds batchBytesMax \(config.batchBytesMax)")
      }
      guard header.recordCount > 0, header.lastOffsetDelta == header.recordCount - 1 else {
        throw StorageError(
          .invalidBatch,
          "batch has \(header.recordCount) records but last offset delta \(header.lastOffsetDelta)")
      }
    }
    return headers
  }

  /// Writes validated batches whose offsets are final to the end of the active segment
  /// (rolling first if due). On failure, truncates back so nothing partial stays on disk.
  private func write(_ bytes: [UInt8], headers: [RecordBatchHeader], baseOffset: Int64) throws
    -> AppendResult
  {
    precondition(!headers.isEmpty, "validated appends hold at least one batch")
    do {
      try leaderEpochCache.persistIfStale()
    } catch {
      throw annotate(
        error, "rewrite of the leader epoch checkpoint before an append",
        path: leaderEpochCache.path)
    }
    let lastOffset =
      baseOffset + headers.reduce(Int64(0)) { $0 + Int64($1.lastOffsetDelta) + 1 } - 1
    let nowMs = clockMs()
    let rolled = try rollIfDue(appendBytes: bytes.count, lastOffset: lastOffset, nowMs: nowMs)
    let segment = activeSegment
    precondition(segment.nextOffset == baseOffset, "append must continue the log")
    let startPosition = segment.size
    let indexCountBefore = segment.index?.count ?? 0

    var newEntries: [IndexEntry] = []
    var bytesSinceIndexEntry = segment.bytesSinceIndexEntry
    var position = startPosition
    var maxTimestamp = Int64.min
    // Offsets from the running count, not the headers: a leader append's headers were read
    // before its base offsets were assigned.
    var batchBaseOffset = baseOffset
    for header in headers {
      if bytesSinceIndexEntry >= Int64(config.indexIntervalBytes) {
        newEntries.append(
          IndexEntry(
            relativeOffset: UInt32(batchBaseOffset - segment.baseOffset),
            position: UInt32(position)))
        bytesSinceIndexEntry = 0
      }
      batchBaseOffset += Int64(header.lastOffsetDelta) + 1
      bytesSinceIndexEntry += Int64(header.totalByteCount)
      position += Int64(header.totalByteCount)
      maxTimestamp = max(maxTimestamp, header.maxTimestamp)
    }

    do {
      try bytes.withUnsafeBytes {
        try fileSystem.writeAll(segment.descriptor, $0, at: startPosition, path: segment.logPath)
      }
      if !newEntries.isEmpty {
        let indexDescriptor = try activeIndexDescriptor()
        try OffsetIndex.encode(newEntries).withUnsafeBytes {
          try fileSystem.writeAll(
            indexDescriptor, $0, at: Int64(indexCountBefore * IndexEntry.byteCount),
            path: segment.indexPath)
        }
      }
    } catch {
      // Reads never go past `size`, but a crash must not resurrect batches whose append
      // was reported as failed, so cut the file back now (best effort: if this fails too,
      // recovery would see whole batches the caller retries, never torn ones).
      try? fileSystem.truncate(segment.descriptor, to: startPosition)
      if let indexDescriptor = segment.indexDescriptor {
        try? fileSystem.truncate(
          indexDescriptor, to: Int64(indexCountBefore * IndexEntry.byteCount))
      }
      throw annotate(error, "append to \(segment.logPath)", path: segment.logPath)
    }

    segment.size = position
    segment.nextOffset = lastOffset + 1
    if !newEntries.isEmpty {
      // Appended in place: the active index can hold hundreds of thousands of entries.
      if segment.index == nil { segment.index = [] }
      segment.index?.append(contentsOf: newEntries)
    }
    segment.maxTimestamp = max(segment.maxTimestamp ?? maxTimestamp, maxTimestamp)
    segment.firstAppendMs = segment.firstAppendMs ?? nowMs
    segment.hasUnsyncedData = true
    segment.hasUnsyncedIndex = segment.hasUnsyncedIndex || !newEntries.isEmpty
    return AppendResult(
      baseOffset: baseOffset, lastOffset: lastOffset, batchCount: headers.count,
      byteCount: bytes.count, maxTimestamp: maxTimestamp, rolledSegment: rolled)
  }

  private func activeIndexDescriptor() throws -> Int32 {
    let segment = activeSegment
    if let descriptor = segment.indexDescriptor { return descriptor }
    let descriptor = try fileSystem.open(segment.indexPath, .createReadWrite)
    segment.indexDescriptor = descriptor
    return descriptor
  }

  private func rollIfDue(appendBytes: Int, lastOffset: Int64, nowMs: Int64) throws -> Bool {
    let segment = activeSegment
    guard segment.size > 0 else { return false }
    let full = segment.size + Int64(appendBytes) > Int64(config.segmentBytes)
    let old = nowMs - (segment.firstAppendMs ?? nowMs) >= config.segmentMs
    let offsetsOverflowIndex = lastOffset - segment.baseOffset > Int64(UInt32.max)
    guard full || old || offsetsOverflowIndex else { return false }
    try roll()
    return true
  }

  /// Seals the active segment (fsyncing its data and index, so recovery never has to scan
  /// it again) and starts a new one at `logEndOffset`.
  func roll() throws {
    let old = activeSegment
    markInFlightFlushUnsynced()
    try syncSegment(old, includingIndex: true)
    if let descriptor = old.indexDescriptor { fileSystem.close(descriptor) }
    old.indexDescriptor = nil
    let segment = try LogSegment.create(
      baseOffset: old.nextOffset, directory: directory, fileSystem: fileSystem)
    segments.append(segment)
    try fileSystem.syncDirectory(directory)
    durableEndOffset = max(durableEndOffset, old.nextOffset)
  }

  // MARK: Durability

  /// Makes everything appended so far durable (fdatasync of the active segment) and
  /// advances `durableEndOffset` to `logEndOffset`. The active segment's index is not
  /// synced: recovery rebuilds it from the data.
  public func flush() throws {
    try checkOpen()
    markInFlightFlushUnsynced()
    for segment in segments where segment.hasUnsyncedData {
      try syncSegment(segment, includingIndex: false)
    }
    durableEndOffset = logEndOffset
    lastFlushMs = clockMs()
  }

  /// With `.interval(ms)`, flushes when the interval has passed since the last flush and
  /// there is something to flush; returns whether it flushed. Never flushes under
  /// `.groupCommit`, where the owner calls `flush()` itself.
  @discardableResult
  public func flushIfDue(nowMs: Int64) throws -> Bool {
    guard case .interval(let intervalMs) = config.flushPolicy else { return false }
    guard durableEndOffset < logEndOffset, nowMs - lastFlushMs >= intervalMs else {
      return false
    }
    try flush()
    lastFlushMs = nowMs
    return true
  }

  private func syncSegment(_ segment: LogSegment, includingIndex: Bool) throws {
    do {
      if segment.hasUnsyncedData {
        try fileSystem.syncData(segment.descriptor)
        segment.hasUnsyncedData = false
      }
      if includingIndex, segment.hasUnsyncedIndex, let descriptor = segment.indexDescriptor {
        try fileSystem.syncData(descriptor)
        segment.hasUnsyncedIndex = false
      }
    } catch {
      throw annotate(error, "sync of \(segment.logPath)", path: segment.logPath)
    }
  }

  // MARK: Reading

  /// Whole batches starting with the one that contains `offset`, up to about `maxBytes`:
  /// batches are never split, and the first is returned whole even when larger than
  /// `maxBytes` (as Kafka does). Batches at or past `maxOffset` (say, the high watermark)
  /// are left out. Reads from one segment per call with one `pread` of the byte range.
  ///
  /// Throws `offsetOutOfRange` below `logStartOffset` or above `logEndOffset`; at exactly
  /// `logEndOffset` returns no bytes.
  public func read(from offset: Int64, maxBytes: Int, maxOffset: Int64? = nil) throws
    -> ReadResult
  {
    try checkOpen()
    guard offset >= logStartOffset, offset <= logEndOffset else {
      throw StorageError(
        .offsetOutOfRange,
        "offset \(offset) is outside \(logStartOffset)...\(logEndOffset) of \(directory)")
    }
    let limit = min(maxOffset ?? logEndOffset, logEndOffset)
    var segmentNumber = segmentNumber(containing: offset)
    while segmentNumber < segments.count {
      let segment = segments[segmentNumber]
      if let position = try batchPosition(in: segment, containing: offset) {
        return try readBatches(
          segment, from: position, requestedOffset: offset, maxBytes: maxBytes, limit: limit)
      }
      segmentNumber += 1
    }
    return emptyRead(at: offset)
  }

  /// What `read` returns, as a range of the segment file rather than bytes: whole batches
  /// from the one containing `offset`, about `maxBytes` (the first batch whole), every
  /// batch's last offset below `maxOffset`. Reads only batch headers. When the file system
  /// cannot share descriptors (`duplicate` returns nil) the batches come as `bytes`.
  ///
  /// Throws `offsetOutOfRange` like `read`.
  public func readSlice(from offset: Int64, maxBytes: Int, maxOffset: Int64? = nil) throws
    -> SliceReadResult
  {
    try checkOpen()
    guard offset >= logStartOffset, offset <= logEndOffset else {
      throw StorageError(
        .offsetOutOfRange,
        "offset \(offset) is outside \(logStartOffset)...\(logEndOffset) of \(directory)")
    }
    let limit = min(maxOffset ?? logEndOffset, logEndOffset)
    var segmentNumber = segmentNumber(containing: offset)
    while segmentNumber < segments.count {
      let segment = segments[segmentNumber]
      if let position = try batchPosition(in: segment, containing: offset) {
        return try sliceBatches(
          segment, from: position, requestedOffset: offset, maxBytes: maxBytes, limit: limit)
      }
      segmentNumber += 1
    }
    return emptySliceRead(at: offset)
  }

  private func emptySliceRead(at offset: Int64) -> SliceReadResult {
    SliceReadResult(
      slice: nil, bytes: [], firstOffset: nil, nextOffset: offset,
      logStartOffset: logStartOffset, logEndOffset: logEndOffset)
  }

  private func sliceBatches(
    _ segment: LogSegment, from position: Int64, requestedOffset: Int64, maxBytes: Int,
    limit: Int64
  ) throws -> SliceReadResult {
    var end = position
    var firstOffset: Int64?
    var nextOffset = requestedOffset
    do {
      // Small windows: one short pread per large batch, a few small batches per pread.
      try walkHeaders(segment, from: position, windowBytes: 512) { batchPosition, header in
        guard header.lastOffset < limit else { return false }
        let batchEnd = batchPosition + Int64(header.totalByteCount)
        guard firstOffset == nil || batchEnd - position <= Int64(maxBytes) else { return false }
        firstOffset = firstOffset ?? header.baseOffset
        nextOffset = header.nextOffset
        end = batchEnd
        return batchEnd - position < Int64(maxBytes)
      }
    } catch {
      throw annotate(error, "read of \(segment.logPath)", path: segment.logPath)
    }
    guard let firstOffset, end > position else { return emptySliceRead(at: requestedOffset) }
    readHint = (nextOffset, segment.baseOffset, end)
    var result = SliceReadResult(
      slice: nil, bytes: [], firstOffset: firstOffset, nextOffset: nextOffset,
      logStartOffset: logStartOffset, logEndOffset: logEndOffset)
    let descriptor: Int32?
    do {
      descriptor = try fileSystem.duplicate(segment.descriptor)
    } catch {
      throw annotate(error, "dup of \(segment.logPath)", path: segment.logPath)
    }
    if let descriptor {
      result.slice = LogFileSlice(
        descriptor: descriptor, position: position, byteCount: Int(end - position))
    } else {
      result.bytes = try readBytes(segment, at: position, count: Int(end - position))
    }
    return result
  }

  private func emptyRead(at offset: Int64) -> ReadResult {
    ReadResult(
      bytes: [], firstOffset: nil, nextOffset: offset, logStartOffset: logStartOffset,
      logEndOffset: logEndOffset)
  }

  /// The last segment whose base offset is at or below `offset` (the first if none is).
  private func segmentNumber(containing offset: Int64) -> Int {
    var low = 0
    var high = segments.count
    while low < high {
      let middle = (low + high) / 2
      if segments[middle].baseOffset <= offset { low = middle + 1 } else { high = middle }
    }
    return max(0, low - 1)
  }

  /// File position of the batch whose offsets include `offset` (or the first batch after
  /// it), nil when the segment ends before `offset`.
  private func batchPosition(
    in segment: LogSegment, containing offset: Int64, mayRebuildIndex: Bool = true
  ) throws -> Int64? {
    guard offset < segment.nextOffset else { return nil }
    if let hint = readHint, hint.offset == offset, hint.segmentBaseOffset == segment.baseOffset,
      hint.position < segment.size
    {
      return hint.position
    }
    if offset <= segment.baseOffset { return 0 }
    let index = try loadedIndex(segment)
    let (start, entry) = OffsetIndex.lookup(index, relativeOffset: offset - segment.baseOffset)
    var found: Int64?
    var firstHeader = true
    var indexMismatch = false
    do {
      try walkHeaders(segment, from: start, windowBytes: config.indexIntervalBytes + 4096) {
        position, header in
        if firstHeader, let entry,
          header.baseOffset != segment.baseOffset + Int64(entry.relativeOffset)
        {
          indexMismatch = true
          return false
        }
        firstHeader = false
        if header.lastOffset >= offset {
          found = position
          return false
        }
        return true
      }
    } catch let error as StorageError where error.code == .corruptLog && firstHeader && entry != nil
    {
      indexMismatch = true
    }
    if indexMismatch {
      // The index points somewhere that is not the batch it names: rebuild it from the
      // data once and look again.
      guard mayRebuildIndex else {
        throw StorageError(
          .corruptLog, "index of \(segment.logPath) disagrees with its data after a rebuild",
          path: segment.indexPath)
      }
      try rebuildIndex(segment)
      return try batchPosition(in: segment, containing: offset, mayRebuildIndex: false)
    }
    return found
  }

  private func readBatches(
    _ segment: LogSegment, from position: Int64, requestedOffset: Int64, maxBytes: Int,
    limit: Int64
  ) throws -> ReadResult {
    let available = Int(segment.size - position)
    var wanted = min(max(maxBytes, RecordBatchHeader.lengthPrefixByteCount), available)
    var bytes = try readBytes(segment, at: position, count: wanted)
    var (end, firstOffset, nextOffset) = wholeBatches(in: bytes, limit: limit)
    if end == 0 && bytes.count >= RecordBatchHeader.lengthPrefixByteCount {
      // The first batch alone is larger than maxBytes: return it whole.
      let header = bytes.withUnsafeBytes {
        (
          baseOffset: Int64(bigEndian: $0.loadUnaligned(fromByteOffset: 0, as: Int64.self)),
          total: Int(Int32(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: Int32.self)))
            + RecordBatchHeader.lengthPrefixByteCount
        )
      }
      guard header.baseOffset < limit else { return emptyRead(at: requestedOffset) }
      guard header.total >= RecordBatchHeader.byteCount, header.total <= available else {
        throw StorageError(
          .corruptLog, "batch at byte \(position) of \(segment.logPath) has a bad length",
          path: segment.logPath)
      }
      wanted = header.total
      bytes = try readBytes(segment, at: position, count: wanted)
      (end, firstOffset, nextOffset) = wholeBatches(in: bytes, limit: limit)
    }
    guard end > 0, let firstOffset else { return emptyRead(at: requestedOffset) }
    bytes.removeLast(bytes.count - end)
    readHint = (nextOffset, segment.baseOffset, position + Int64(end))
    return ReadResult(
      bytes: bytes, firstOffset: firstOffset, nextOffset: nextOffset,
      logStartOffset: logStartOffset, logEndOffset: logEndOffset)
  }

  /// Length of the prefix of `bytes` made of whole batches below `limit`, with the first
  /// batch's base offset and the offset after the last. Reads only lengths and offsets.
  private func wholeBatches(in bytes: [UInt8], limit: Int64) -> (
    end: Int, firstOffset: Int64?, nextOffset: Int64
  ) {
    bytes.withUnsafeBytes { buffer in
      var end = 0
      var firstOffset: Int64?
      var nextOffset: Int64 = 0
      while end + RecordBatchHeader.byteCount <= buffer.count {
        let baseOffset = Int64(
          bigEndian: buffer.loadUnaligned(fromByteOffset: end, as: Int64.self))
        let total =
          Int(Int32(bigEndian: buffer.loadUnaligned(fromByteOffset: end + 8, as: Int32.self)))
          + RecordBatchHeader.lengthPrefixByteCount
        guard baseOffset < limit, total >= RecordBatchHeader.byteCount,
          end + total <= buffer.count
        else { break }
        let lastOffsetDelta = Int32(
          bigEndian: buffer.loadUnaligned(fromByteOffset: end + 23, as: Int32.self))
        firstOffset = firstOffset ?? baseOffset
        nextOffset = baseOffset + Int64(lastOffsetDelta) + 1
        end += total
      }
      return (end, firstOffset, nextOffset)
    }
  }

  /// `count` bytes from `position` with one pread, into a buffer that is not zeroed first.
  private func readBytes(_ segment: LogSegment, at position: Int64, count: Int) throws -> [UInt8] {
    do {
      return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        initialized = try fileSystem.readFully(
          segment.descriptor, into: UnsafeMutableRawBufferPointer(buffer), at: position)
        guard initialized == count else {
          throw StorageError(
            .corruptLog,
            "\(segment.logPath) ended after \(initialized) of \(count) bytes at \(position)",
            path: segment.logPath)
        }
      }
    } catch {
      throw annotate(error, "read of \(segment.logPath)", path: segment.logPath)
    }
  }

  /// Calls `body` with each batch header from `start` on until it returns false or the
  /// segment ends. Reads `windowBytes` at a time and checks only that lengths are sane.
  func walkHeaders(
    _ segment: LogSegment, from start: Int64, windowBytes: Int,
    _ body: (Int64, RecordBatchHeader) throws -> Bool
  ) throws {
    var window = [UInt8](repeating: 0, count: max(windowBytes, RecordBatchHeader.byteCount))
    var windowStart: Int64 = 0
    var windowCount = 0
    var position = start
    while position < segment.size {
      if position < windowStart
        || position + Int64(RecordBatchHeader.byteCount) > windowStart + Int64(windowCount)
      {
        let want = Int(min(Int64(window.count), segment.size - position))
        windowStart = position
        windowCount = try window.withUnsafeMutableBytes {
          try fileSystem.readFully(
            segment.descriptor, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<want]),
            at: position)
        }
      }
      let offsetInWindow = Int(position - windowStart)
      guard windowCount - offsetInWindow >= RecordBatchHeader.byteCount,
        let header = window.withUnsafeBytes({
          try? RecordBatchHeader(parsing: UnsafeRawBufferPointer(rebasing: $0[offsetInWindow...]))
        }),
        header.batchLength >= RecordBatchHeader.batchLengthMin,
        position + Int64(header.totalByteCount) <= segment.size
      else {
        throw StorageError(
          .corruptLog, "no valid batch header at byte \(position) of \(segment.logPath)",
          path: segment.logPath)
      }
      guard try body(position, header) else { return }
      position += Int64(header.totalByteCount)
    }
  }

  /// Calls `body` with the header of every batch in the log, oldest first (rebuilding
  /// state kept beside the log, such as the idempotent producers' table).
  public func forEachBatchHeader(_ body: (RecordBatchHeader) throws -> Void) throws {
    try checkOpen()
    for segment in segments {
      try walkHeaders(segment, from: 0, windowBytes: 64 << 10) { _, header in
        try body(header)
        return true
      }
    }
  }

  /// The segment's index, loading it from its file on first use (sealed segments) and
  /// rebuilding it from the data when the file is missing or invalid.
  private func loadedIndex(_ segment: LogSegment) throws -> [IndexEntry] {
    if let index = segment.index { return index }
    let limit = segmentOffsetSpan(segment)
    if let bytes = try? OffsetIndex.readFile(
      segment.indexPath, sizeMax: segment.size, fileSystem: fileSystem),
      let index = OffsetIndex.decode(bytes, segmentBytes: segment.size, relativeOffsetLimit: limit)
    {
      segment.index = index
      return index
    }
    try rebuildIndex(segment)
    return segment.index ?? []
  }

  private func segmentOffsetSpan(_ segment: LogSegment) -> Int64 {
    max(segment.nextOffset - segment.baseOffset, 0)
  }

  /// Recomputes a segment's index by walking its batches and rewrites the index file.
  func rebuildIndex(_ segment: LogSegment) throws {
    var index: [IndexEntry] = []
    var bytesSinceIndexEntry: Int64 = 0
    var maxTimestamp: Int64?
    try walkHeaders(segment, from: 0, windowBytes: 256 << 10) { position, header in
      guard position <= Int64(UInt32.max) else {
        throw StorageError(
          .corruptLog, "\(segment.logPath) is larger than the 4 GiB the index can address",
          path: segment.logPath)
      }
      if bytesSinceIndexEntry >= Int64(config.indexIntervalBytes) {
        index.append(
          IndexEntry(
            relativeOffset: UInt32(truncatingIfNeeded: header.baseOffset - segment.baseOffset),
            position: UInt32(position)))
        bytesSinceIndexEntry = 0
      }
      bytesSinceIndexEntry += Int64(header.totalByteCount)
      maxTimestamp = max(maxTimestamp ?? header.maxTimestamp, header.maxTimestamp)
      return true
    }
    segment.index = index
    segment.maxTimestamp = maxTimestamp
    try writeIndexFile(segment, index)
  }

  func writeIndexFile(_ segment: LogSegment, _ index: [IndexEntry]) throws {
    let descriptor =
      try segment.indexDescriptor ?? fileSystem.open(segment.indexPath, .createReadWrite)
    defer { if segment.indexDescriptor == nil { fileSystem.close(descriptor) } }
    try fileSystem.truncate(descriptor, to: 0)
    try OffsetIndex.encode(index).withUnsafeBytes {
      try fileSystem.writeAll(descriptor, $0, at: 0, path: segment.indexPath)
    }
    try fileSystem.syncData(descriptor)
  }

  // MARK: Truncation and retention

  /// Removes every batch holding an offset at or above `offset` (suffix truncation, for a
  /// follower whose log diverged from the leader). A batch is never split: if `offset` falls
  /// inside one, that whole batch goes. Durable before it returns. Returns the new
  /// `logEndOffset`.
  @discardableResult
  public func truncate(to offset: Int64) throws -> Int64 {
    try checkOpen()
    guard offset >= logStartOffset else {
      throw StorageError(
        .offsetOutOfRange,
        "cannot truncate \(directory) to \(offset), below the log start offset \(logStartOffset)"
      )
    }
    guard offset < logEndOffset else { return logEndOffset }
    readHint = nil
    let keep = segmentNumber(containing: offset)
    let segment = segments[keep]
    let cut = try batchPosition(in: segment, containing: offset) ?? segment.size
    var newEnd = segment.nextOffset
    if cut < segment.size {
      try walkHeaders(segment, from: cut, windowBytes: RecordBatchHeader.byteCount) { _, header in
        newEnd = header.baseOffset
        return false
      }
    }
    let index = try loadedIndex(segment).filter { Int64($0.position) < cut }
    try closingOnFailure("truncate of \(segment.logPath)", path: segment.logPath) {
      // Newest first, and durably, before cutting the kept segment: at every moment the
      // files on disk are a contiguous prefix of the log.
      while segments.count > keep + 1 {
        try delete(segments.removeLast())
      }
      try fileSystem.syncDirectory(directory)
      try fileSystem.truncate(segment.descriptor, to: cut)
      try fileSystem.syncData(segment.descriptor)
      segment.size = cut
      segment.nextOffset = newEnd
      segment.index = index
      segment.maxTimestamp = nil
      segment.hasUnsyncedData = false
      if segment.indexDescriptor == nil {
        segment.indexDescriptor = try fileSystem.open(segment.indexPath, .createReadWrite)
      }
      try writeIndexFile(segment, index)
      segment.hasUnsyncedIndex = false
    }
    durableEndOffset = min(durableEndOffset, newEnd)
    // After the data: a crash in between leaves entries past the log end, which recovery
    // drops. A failed checkpoint write (a full disk) leaves the log consistent: the cache
    // is cut in memory and written before the next append (`persistIfStale`).
    // `leaderEpochCache.isCheckpointStale` tells the owner.
    _ = try? leaderEpochCache.truncateFromEnd(endOffset: newEnd)
    return newEnd
  }

  /// Runs a multi-step change of files; if a step fails, the in-memory state may no longer
  /// match the disk, so the log closes itself and the owner reopens it (recovery then
  /// works from what is on disk).
  private func closingOnFailure(_ what: String, path: String, _ body: () throws -> Void) throws {
    do {
      try body()
    } catch {
      for segment in segments { segment.closeFiles(fileSystem) }
      isClosed = true
      throw annotate(error, "\(what) (log closed; reopen to recover)", path: path)
    }
  }

  /// Deletes all data and restarts the log empty at `offset`, which becomes both the log
  /// start and end offset (a follower whose fetch offset fell below the leader's log start).
  public func truncateFully(startingAt offset: Int64) throws {
    try checkOpen()
    precondition(offset >= 0, "offsets are never negative")
    readHint = nil
    try writeLogStartOffsetCheckpoint(offset)
    try closingOnFailure("restart of \(directory) at \(offset)", path: directory) {
      while let segment = segments.popLast() { try delete(segment) }
      segments = [
        try LogSegment.create(baseOffset: offset, directory: directory, fileSystem: fileSystem)
      ]
      try fileSystem.syncDirectory(directory)
      try leaderEpochCache.clear()
    }
    logStartOffset = offset
    durableEndOffset = offset
  }

  /// Deletes whole segments from the oldest while the log is larger than `retentionBytes`
  /// (never the active segment), or while a segment's newest batch timestamp is older than
  /// `nowMs - retentionMs` (the active one too: a new empty segment replaces it). Segments
  /// whose batches carry no timestamp (-1) never expire by time. The new log start offset is
  /// checkpointed before any file is removed.
  @discardableResult
  public func applyRetention(nowMs: Int64) throws -> RetentionResult {
    try checkOpen()
    var expired = 0
    if let retentionMs = config.retentionMs {
      for segment in segments {
        guard segment.size > 0, let newest = try segmentMaxTimestamp(segment), newest >= 0,
          newest < nowMs - retentionMs
        else { break }
        expired += 1
      }
    }
    if let retentionBytes = config.retentionBytes {
      var total = sizeBytes
      var oversize = 0
      while oversize < segments.count - 1, total - segments[oversize].size >= retentionBytes {
        total -= segments[oversize].size
        oversize += 1
      }
      expired = max(expired, oversize)
    }
    guard expired > 0 else { return RetentionResult(logStartOffset: logStartOffset) }
    if expired == segments.count { try roll() }
    let newStart = max(logStartOffset, segments[expired].baseOffset)
    // Retention is what frees a full disk, so a checkpoint that cannot be written for lack
    // of space must not stop it: the oldest segments go first (always a prefix, so the
    // files stay a contiguous log) and the checkpoint is written after. Without it a crash
    // is still safe: recovery starts the log at its first remaining segment.
    var isCheckpointWritten = true
    do {
      try writeLogStartOffsetCheckpoint(newStart)
    } catch let error as StorageError where error.code == .noSpace {
      isCheckpointWritten = false
    }
    logStartOffset = newStart
    readHint = nil
    var result = RetentionResult(logStartOffset: newStart)
    try closingOnFailure("retention in \(directory)", path: directory) {
      for _ in 0..<expired {
        let segment = segments.removeFirst()
        result.deletedSegments.append(segment.baseOffset)
        result.deletedBytes += segment.size
        try delete(segment)
      }
      try fileSystem.syncDirectory(directory)
    }
    if !isCheckpointWritten {
      _ = try? writeLogStartOffsetCheckpoint(newStart)
    }
    // Stale entries below the start only make answers about long-gone epochs vaguer, and
    // recovery cuts them too, so a failure here (a full disk) changes nothing that matters.
    _ = try? leaderEpochCache.truncateFromStart(startOffset: newStart)
    return result
  }

  /// Largest batch timestamp in the segment, walking its headers once if not yet known.
  private func segmentMaxTimestamp(_ segment: LogSegment) throws -> Int64? {
    if let known = segment.maxTimestamp { return known }
    var newest: Int64?
    try walkHeaders(segment, from: 0, windowBytes: 256 << 10) { _, header in
      newest = max(newest ?? header.maxTimestamp, header.maxTimestamp)
      return true
    }
    segment.maxTimestamp = newest
    return newest
  }

  private func delete(_ segment: LogSegment) throws {
    segment.closeFiles(fileSystem)
    for path in [segment.logPath, segment.indexPath] where fileSystem.fileExists(path) {
      try fileSystem.remove(path)
    }
  }

  private func writeLogStartOffsetCheckpoint(_ offset: Int64) throws {
    try AtomicFile.write(
      directory + "/" + Self.logStartOffsetCheckpointName,
      LogStartOffsetCheckpoint.encode(offset), fileSystem: fileSystem)
  }

  // MARK: Closing

  /// Flushes and closes the files. Further calls throw `closed`.
  public func close() throws {
    guard !isClosed else { return }
    defer {
      for segment in segments { segment.closeFiles(fileSystem) }
      isClosed = true
    }
    try flush()
    try syncSegment(activeSegment, includingIndex: true)
  }

  private func annotate(_ error: any Error, _ what: String, path: String) -> StorageError {
    guard let error = error as? StorageError else {
      return StorageError(.ioFailure, "\(what): \(error)", path: path)
    }
    return StorageError(
      error.code, "\(what): \(error.message)", errno: error.errno, path: error.path ?? path)
  }
}

/// The log start offset checkpoint: a version line, then the offset, as decimal text.
enum LogStartOffsetCheckpoint {
  static let version = 0

  static func encode(_ offset: Int64) -> [UInt8] {
    Array("\(version)\n\(offset)\n".utf8)
  }

  static func decode(_ bytes: [UInt8]) -> Int64? {
    let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
    guard lines.count == 2, lines[0] == "\(version)", let offset = Int64(lines[1]), offset >= 0
    else { return nil }
    return offset
  }
}

extension LogSegment {
  /// A new empty segment (files created or emptied) at `baseOffset`.
  static func create(baseOffset: Int64, directory: String, fileSystem: any LogFileSystem) throws
    -> LogSegment
  {
    let logPath = directory + "/" + fileName(baseOffset, ".log")
    let descriptor = try fileSystem.open(logPath, .createReadWrite)
    let segment = LogSegment(
      baseOffset: baseOffset, directory: directory, descriptor: descriptor, size: 0,
      nextOffset: baseOffset)
    do {
      try fileSystem.truncate(descriptor, to: 0)
      let indexDescriptor = try fileSystem.open(segment.indexPath, .createReadWrite)
      segment.indexDescriptor = indexDescriptor
      try fileSystem.truncate(indexDescriptor, to: 0)
    } catch {
      segment.closeFiles(fileSystem)
      throw error
    }
    segment.index = []
    return segment
  }
}
