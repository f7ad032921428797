import StreamBusRecords

/// Opening a log directory after a clean stop or a crash. See docs/storage.md.
///
/// Sealed segments were fsynced (data and index) when they were rolled, so they are trusted
/// after a cheap check of their index; the last segment may hold a torn or unsynced tail and
/// is scanned batch by batch. Any segment whose index is missing or bad is scanned too, and
/// damage found in a sealed segment truncates the log there (later segments are deleted):
/// the log must stay a contiguous prefix of what was written.
struct LogRecovery {
  let directory: String
  let config: LogConfig
  let fileSystem: any LogFileSystem
  var report: RecoveryReport

  init(directory: String, config: LogConfig, fileSystem: any LogFileSystem) {
    self.directory = directory
    self.config = config
    self.fileSystem = fileSystem
    report = RecoveryReport(directory: directory)
  }

  mutating func run() throws -> (segments: [LogSegment], logStartOffset: Int64) {
    try fileSystem.createDirectory(directory)
    let names = try fileSystem.contentsOfDirectory(directory).sorted()
    var logOffsets: [Int64] = []
    var indexOffsets = Set<Int64>()
    for name in names {
      if name.hasSuffix(AtomicFile.temporarySuffix) {
        try remove(name)
      } else if let offset = LogSegment.parseFileName(name, suffix: ".log") {
        logOffsets.append(offset)
      } else if let offset = LogSegment.parseFileName(name, suffix: ".index") {
        indexOffsets.insert(offset)
      }
    }
    for offset in indexOffsets.subtracting(logOffsets).sorted() {
      try remove(LogSegment.fileName(offset, ".index"))
    }
    logOffsets.sort()

    let checkpointPath = directory + "/" + PartitionLog.logStartOffsetCheckpointName
    var checkpointedStart: Int64?
    if let bytes = try AtomicFile.read(checkpointPath, fileSystem: fileSystem) {
      checkpointedStart = LogStartOffsetCheckpoint.decode(bytes)
      if checkpointedStart == nil {
        report.notes.append("ignored unreadable log start offset checkpoint")
      }
    }

    // A crash during retention can leave segments the checkpoint already gave up.
    if let start = checkpointedStart {
      while logOffsets.count >= 2 && logOffsets[1] <= start {
        try removeSegmentFiles(logOffsets.removeFirst())
      }
    }

    var segments: [LogSegment] = []
    do {
      for (number, baseOffset) in logOffsets.enumerated() {
        let path = directory + "/" + LogSegment.fileName(baseOffset, ".log")
        let descriptor = try fileSystem.open(path, .readWrite)
        let size = try fileSystem.size(descriptor)
        let nextBase = number + 1 < logOffsets.count ? logOffsets[number + 1] : nil
        segments.append(
          LogSegment(
            baseOffset: baseOffset, directory: directory, descriptor: descriptor, size: size,
            nextOffset: nextBase ?? baseOffset))
      }
      try recoverSegments(&segments)
      if segments.isEmpty {
        segments.append(
          try LogSegment.create(
            baseOffset: checkpointedStart ?? 0, directory: directory, fileSystem: fileSystem))
        try fileSystem.syncDirectory(directory)
      }
      var logStartOffset = max(checkpointedStart ?? 0, segments[0].baseOffset)
      let logEndOffset = segments[segments.count - 1].nextOffset
      if logStartOffset > logEndOffset {
        report.notes.append(
          "log start offset \(logStartOffset) was past the recovered end \(logEndOffset); restarted empty there"
        )
        for segment in segments { try deleteSegment(segment) }
        segments = [
          try LogSegment.create(
            baseOffset: logStartOffset, directory: directory, fileSystem: fileSystem)
        ]
        try fileSystem.syncDirectory(directory)
      }
      logStartOffset = max(logStartOffset, segments[0].baseOffset)
      // Whatever survived is on disk as read, but possibly only in the page cache of a
      // kernel that did not crash: sync it so durableEndOffset can start at the end.
      try fileSystem.syncData(segments[segments.count - 1].descriptor)
      report.segmentCount = segments.count
      report.logStartOffset = logStartOffset
      report.logEndOffset = segments[segments.count - 1].nextOffset
      return (segments, logStartOffset)
    } catch {
      for segment in segments { segment.closeFiles(fileSystem) }
      throw error
    }
  }

  private mutating func recoverSegments(_ segments: inout [LogSegment]) throws {
    var number = 0
    while number < segments.count {
      let segment = segments[number]
      let isLast = number == segments.count - 1
      if !isLast, try sealedIndexLooksValid(segment) {
        number += 1
        continue
      }
      let scan = try scanSegment(
        segment, fileSize: segment.size, indexIntervalBytes: config.indexIntervalBytes,
        fileSystem: fileSystem)
      report.scannedSegments.append(segment.baseOffset)
      report.scannedBatches += scan.batchCount
      report.scannedBytes += scan.validBytes
      if let problem = scan.problem {
        report.truncations.append(
          RecoveryReport.Truncation(
            segmentBaseOffset: segment.baseOffset, fromBytes: segment.size,
            toBytes: scan.validBytes, reason: problem))
        try fileSystem.truncate(segment.descriptor, to: scan.validBytes)
        try fileSystem.syncData(segment.descriptor)
        segment.size = scan.validBytes
        // Data after damage cannot be part of a contiguous log.
        for later in segments[(number + 1)...].reversed() { try deleteSegment(later) }
        segments.removeLast(segments.count - number - 1)
      } else if !isLast && scan.nextOffset != segment.nextOffset {
        report.notes.append(
          "segment \(segment.baseOffset) ends at offset \(scan.nextOffset) but the next segment starts at \(segment.nextOffset)"
        )
      }
      segment.nextOffset = scan.nextOffset
      segment.maxTimestamp = scan.maxTimestamp
      let existing = try? OffsetIndex.readFile(
        segment.indexPath, sizeMax: segment.size, fileSystem: fileSystem)
      let rebuilt = OffsetIndex.encode(scan.index)
      segment.index = scan.index
      if existing != rebuilt {
        try writeIndex(segment, rebuilt)
        report.rebuiltIndexes.append(segment.baseOffset)
      }
      number += 1
    }
    if let last = segments.last {
      last.indexDescriptor = try fileSystem.open(last.indexPath, .createReadWrite)
    }
  }

  /// Cheap check of a sealed segment's index: present, whole entries, and a last entry
  /// that points inside the segment. Full validation happens when it is first loaded.
  private func sealedIndexLooksValid(_ segment: LogSegment) throws -> Bool {
    guard fileSystem.fileExists(segment.indexPath) else { return false }
    let descriptor = try fileSystem.open(segment.indexPath, .readOnly)
    defer { fileSystem.close(descriptor) }
    let size = try fileSystem.size(descriptor)
    guard size % Int64(IndexEntry.byteCount) == 0 else { return false }
    if size == 0 {
      // No entry is written before indexIntervalBytes of data.
      return segment.size <= Int64(config.indexIntervalBytes) + Int64(config.batchBytesMax)
    }
    var last = [UInt8](repeating: 0, count: IndexEntry.byteCount)
    let count = try last.withUnsafeMutableBytes {
      try fileSystem.readFully(descriptor, into: $0, at: size - Int64(IndexEntry.byteCount))
    }
    guard count == IndexEntry.byteCount else { return false }
    let entry = last.withUnsafeBytes { OffsetIndex.entry(at: 0, in: $0) }
    return Int64(entry.position) < segment.size
      && Int64(entry.relativeOffset) < segment.nextOffset - segment.baseOffset
  }

  private func writeIndex(_ segment: LogSegment, _ bytes: [UInt8]) throws {
    let descriptor = try fileSystem.open(segment.indexPath, .createReadWrite)
    defer { fileSystem.close(descriptor) }
    try fileSystem.truncate(descriptor, to: 0)
    try bytes.withUnsafeBytes {
      try fileSystem.writeAll(descriptor, $0, at: 0, path: segment.indexPath)
    }
    try fileSystem.syncData(descriptor)
  }

  private mutating func remove(_ name: String) throws {
    try fileSystem.remove(directory + "/" + name)
    report.removedFiles.append(name)
  }

  private mutating func removeSegmentFiles(_ baseOffset: Int64) throws {
    for suffix in [".log", ".index"] {
      let path = directory + "/" + LogSegment.fileName(baseOffset, suffix)
      if fileSystem.fileExists(path) { try fileSystem.remove(path) }
    }
    report.deletedSegments.append(baseOffset)
  }

  private mutating func deleteSegment(_ segment: LogSegment) throws {
    segment.closeFiles(fileSystem)
    try removeSegmentFiles(segment.baseOffset)
  }
}
