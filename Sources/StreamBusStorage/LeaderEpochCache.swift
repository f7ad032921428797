import StreamBusRecords

/// One leader epoch of a partition and the first offset written in it.
public struct EpochEntry: Sendable, Equatable, CustomStringConvertible {
  public var epoch: Int32
  public var startOffset: Int64

  public init(epoch: Int32, startOffset: Int64) {
    self.epoch = epoch
    self.startOffset = startOffset
  }

  public var description: String { "(epoch \(epoch), start \(startOffset))" }
}

/// The answer to "where does epoch E end in this log?" (Kafka's OffsetsForLeaderEpoch):
/// the largest epoch at or below the requested one that this log knows, and the offset
/// where it ends. `undefined` (-1, -1) when the log cannot say.
public struct EpochEndOffset: Sendable, Equatable, CustomStringConvertible {
  public var epoch: Int32
  public var endOffset: Int64

  public init(epoch: Int32, endOffset: Int64) {
    self.epoch = epoch
    self.endOffset = endOffset
  }

  public static let undefinedEpoch: Int32 = -1
  public static let undefinedOffset: Int64 = -1
  public static let undefined = EpochEndOffset(epoch: undefinedEpoch, endOffset: undefinedOffset)

  public var isUndefined: Bool { epoch == Self.undefinedEpoch && endOffset == Self.undefinedOffset }

  public var description: String { "(epoch \(epoch), end \(endOffset))" }
}

/// The leader-epoch history of one partition log: which leader epoch wrote from which
/// offset on, ordered by epoch (and so by start offset). A follower whose log may have
/// diverged asks the leader where its last epoch ends and truncates there instead of to
/// the high watermark, which could lose acknowledged records.
///
/// Every change is written to `leader-epoch.checkpoint` in the partition directory with
/// `AtomicFile` before the call returns. Not thread-safe: owned by the `PartitionLog`.
public final class LeaderEpochCache {
  public static let checkpointName = "leader-epoch.checkpoint"

  public let path: String
  let fileSystem: any LogFileSystem
  public private(set) var entries: [EpochEntry]

  /// Loads the cache of `directory`, empty when there is no checkpoint yet. A checkpoint that
  /// cannot be read (bad header, checksum, order) throws `corruptLog`.
  public init(directory: String, fileSystem: any LogFileSystem = PosixFileSystem()) throws {
    path = directory + "/" + Self.checkpointName
    self.fileSystem = fileSystem
    if let bytes = try AtomicFile.read(path, fileSystem: fileSystem) {
      entries = try LeaderEpochCheckpoint.decode(bytes, path: path)
    } else {
      entries = []
    }
  }

  /// An empty cache that has not read its checkpoint (recovery replaces an unreadable one).
  init(emptyIn directory: String, fileSystem: any LogFileSystem) {
    path = directory + "/" + Self.checkpointName
    self.fileSystem = fileSystem
    entries = []
  }

  /// Replaces the whole history (recovery rebuilding it from batch headers) and persists it.
  func replace(with entries: [EpochEntry]) throws {
    try LeaderEpochCheckpoint.checkOrder(entries, path: path)
    try persist(entries)
  }

  public var latestEpoch: Int32? { entries.last?.epoch }
  public var latestEntry: EpochEntry? { entries.last }
  public var earliestEntry: EpochEntry? { entries.first }

  /// Records that `epoch` wrote its first record at `startOffset`. Re-assigning the latest
  /// epoch is a no-op (returns false). Throws `invalidEpoch` for an epoch below the latest,
  /// a negative one, or a start offset below the latest entry's. A new epoch starting at the
  /// latest entry's own start offset replaces that entry: the older epoch wrote nothing.
  @discardableResult
  public func assign(epoch: Int32, startOffset: Int64) throws -> Bool {
    try assign([EpochEntry(epoch: epoch, startOffset: startOffset)])
  }

  /// Several assignments (in order) with one checkpoint write; see `assign(epoch:startOffset:)`.
  /// All are checked before anything changes.
  @discardableResult
  public func assign(_ newEntries: [EpochEntry]) throws -> Bool {
    var updated = entries
    for entry in newEntries {
      guard entry.epoch >= 0, entry.startOffset >= 0 else {
        throw StorageError(
          .invalidEpoch, "leader epoch \(entry) of \(path) must not be negative", path: path)
      }
      if let latest = updated.last {
        if entry.epoch == latest.epoch { continue }
        guard entry.epoch > latest.epoch else {
          throw StorageError(
            .invalidEpoch,
            "leader epoch \(entry.epoch) is older than the latest epoch \(latest.epoch) of \(path)",
            path: path)
        }
        guard entry.startOffset >= latest.startOffset else {
          throw StorageError(
            .invalidEpoch,
            "leader epoch \(entry.epoch) starts at \(entry.startOffset), before epoch \(latest.epoch) at \(latest.startOffset) in \(path)",
            path: path)
        }
        if entry.startOffset == latest.startOffset { updated.removeLast() }
      }
      updated.append(entry)
    }
    guard updated != entries else { return false }
    try persist(updated)
    return true
  }

  /// Kafka's end offset of `requestedEpoch` in a log ending at `logEndOffset`:
  /// - the latest epoch ends at the log end offset;
  /// - an older epoch ends where the next larger known epoch starts, answered with the
  ///   largest known epoch at or below the requested one (the requested one when it is
  ///   older than every entry: the log holds nothing of it before the first entry's start);
  /// - an epoch above the latest, an undefined (negative) one, or any epoch when the cache
  ///   is empty: `undefined`.
  public func endOffset(for requestedEpoch: Int32, logEndOffset: Int64) -> EpochEndOffset {
    guard requestedEpoch >= 0, let latest = entries.last else { return .undefined }
    if requestedEpoch == latest.epoch {
      return EpochEndOffset(epoch: requestedEpoch, endOffset: logEndOffset)
    }
    guard let higher = entries.firstIndex(where: { $0.epoch > requestedEpoch }) else {
      return .undefined
    }
    let floorEpoch = higher > 0 ? entries[higher - 1].epoch : requestedEpoch
    return EpochEndOffset(epoch: floorEpoch, endOffset: entries[higher].startOffset)
  }

  /// Drops the entries starting at or after `endOffset` (the log was truncated there).
  /// Returns whether anything changed.
  @discardableResult
  public func truncateFromEnd(endOffset: Int64) throws -> Bool {
    let kept = entries.filter { $0.startOffset < endOffset }
    guard kept.count != entries.count else { return false }
    do {
      try persist(kept)
    } catch {
      // Entries past the log end on disk are harmless while the log does not grow past
      // them (recovery cuts them), so memory moves on and the next write of the log
      // persists the cache first (`persistIfStale`). A full disk must not stop a truncation.
      entries = kept
      isCheckpointStale = true
      throw error
    }
    return true
  }

  /// True when the checkpoint on disk still holds entries a failed `truncateFromEnd` removed
  /// from memory.
  public private(set) var isCheckpointStale = false

  /// Writes the checkpoint when a truncation could not: call before the log grows, since
  /// stale entries inside the log would misdate its batches after a crash.
  public func persistIfStale() throws {
    guard isCheckpointStale else { return }
    try persist(entries)
  }

  /// Drops the entries wholly below `startOffset` (retention moved the log start) and moves
  /// the start of the epoch that holds `startOffset` up to it. Returns whether anything
  /// changed.
  @discardableResult
  public func truncateFromStart(startOffset: Int64) throws -> Bool {
    guard let holding = entries.lastIndex(where: { $0.startOffset <= startOffset }) else {
      return false
    }
    var kept = Array(entries[holding...])
    kept[0].startOffset = startOffset
    guard kept != entries else { return false }
    try persist(kept)
    return true
  }

  /// Forgets every epoch (the log was emptied).
  public func clear() throws {
    guard !entries.isEmpty || !fileSystem.fileExists(path) else { return }
    try persist([])
  }

  private func persist(_ newEntries: [EpochEntry]) throws {
    try AtomicFile.write(path, LeaderEpochCheckpoint.encode(newEntries), fileSystem: fileSystem)
    entries = newEntries
    isCheckpointStale = false
  }
}

/// The checkpoint format, text so an operator can read it:
///
///     leader-epoch-checkpoint 1
///     <entry count>
///     <epoch> <start offset>        (one line per entry, oldest first)
///     crc32c <8 hex digits>         (CRC-32C of every byte before this line)
enum LeaderEpochCheckpoint {
  static let header = "leader-epoch-checkpoint 1"
  static let checksumPrefix = "crc32c "

  static func encode(_ entries: [EpochEntry]) -> [UInt8] {
    var text = "\(header)\n\(entries.count)\n"
    for entry in entries { text += "\(entry.epoch) \(entry.startOffset)\n" }
    var body = Array(text.utf8)
    body += Array("\(checksumPrefix)\(hex(CRC32C.checksum(body)))\n".utf8)
    return body
  }

  static func decode(_ bytes: [UInt8], path: String) throws -> [EpochEntry] {
    func corrupt(_ reason: String) -> StorageError {
      StorageError(.corruptLog, "leader epoch checkpoint \(path) is corrupt: \(reason)", path: path)
    }
    // The checksum line is the last one: find the newline before it.
    guard bytes.last == UInt8(ascii: "\n") else { throw corrupt("it does not end with a newline") }
    let withoutFinalNewline = bytes.dropLast()
    guard let lastLineStart = withoutFinalNewline.lastIndex(of: UInt8(ascii: "\n")).map({ $0 + 1 })
    else { throw corrupt("it has no checksum line") }
    let body = Array(bytes[..<lastLineStart])
    let checksumLine = String(decoding: withoutFinalNewline[lastLineStart...], as: UTF8.self)
    guard checksumLine.hasPrefix(checksumPrefix),
      let stored = UInt32(checksumLine.dropFirst(checksumPrefix.count), radix: 16),
      checksumLine.count == checksumPrefix.count + 8
    else { throw corrupt("bad checksum line") }
    let computed = CRC32C.checksum(body)
    guard stored == computed else {
      throw corrupt("checksum \(hex(stored)) does not match contents (\(hex(computed)))")
    }
    let lines = String(decoding: body, as: UTF8.self).split(
      separator: "\n", omittingEmptySubsequences: false
    ).dropLast()
    guard let first = lines.first, first == header else {
      throw corrupt("unknown header (expected \"\(header)\")")
    }
    guard lines.count >= 2, let count = Int(lines[lines.startIndex + 1]), count >= 0 else {
      throw corrupt("bad entry count")
    }
    guard count == lines.count - 2 else {
      throw corrupt("says \(count) entries but holds \(lines.count - 2)")
    }
    var entries: [EpochEntry] = []
    entries.reserveCapacity(count)
    for line in lines.dropFirst(2) {
      let fields = line.split(separator: " ", omittingEmptySubsequences: false)
      guard fields.count == 2, let epoch = Int32(fields[0]), let start = Int64(fields[1]) else {
        throw corrupt("bad entry line \"\(line)\"")
      }
      entries.append(EpochEntry(epoch: epoch, startOffset: start))
    }
    try checkOrder(entries, path: path)
    return entries
  }

  /// Epochs strictly increasing, start offsets strictly increasing, nothing negative.
  static func checkOrder(_ entries: [EpochEntry], path: String) throws {
    for (number, entry) in entries.enumerated() {
      guard entry.epoch >= 0, entry.startOffset >= 0 else {
        throw StorageError(
          .corruptLog, "leader epoch checkpoint \(path) holds a negative entry \(entry)",
          path: path)
      }
      if number > 0 {
        let previous = entries[number - 1]
        guard entry.epoch > previous.epoch, entry.startOffset > previous.startOffset else {
          throw StorageError(
            .corruptLog,
            "leader epoch checkpoint \(path) is out of order: \(previous) then \(entry)",
            path: path)
        }
      }
    }
  }

  static func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
  }
}
