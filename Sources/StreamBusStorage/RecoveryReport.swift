/// What opening a log found and repaired; the owner logs `description`.
public struct RecoveryReport: Sendable, CustomStringConvertible {
  /// A segment cut back to its last valid batch.
  public struct Truncation: Sendable, Equatable {
    public var segmentBaseOffset: Int64
    public var fromBytes: Int64
    public var toBytes: Int64
    public var reason: String
  }

  public var directory: String
  public var segmentCount = 0
  /// Segments read batch by batch with CRC checks (the last one, and any with a bad index).
  public var scannedSegments: [Int64] = []
  public var scannedBatches = 0
  public var scannedBytes: Int64 = 0
  public var truncations: [Truncation] = []
  /// Segments whose index was missing or invalid and was rebuilt from the data.
  public var rebuiltIndexes: [Int64] = []
  /// Segments deleted: below the log start offset (an interrupted retention) or after a
  /// corrupt segment.
  public var deletedSegments: [Int64] = []
  /// Leftover temporary files and index files without a log.
  public var removedFiles: [String] = []
  public var notes: [String] = []
  public var logStartOffset: Int64 = 0
  public var logEndOffset: Int64 = 0

  /// True when nothing had to be repaired.
  public var isClean: Bool {
    truncations.isEmpty && rebuiltIndexes.isEmpty && deletedSegments.isEmpty
      && removedFiles.isEmpty && notes.isEmpty
  }

  public var description: String {
    var parts = [
      "recovered \(directory): \(segmentCount) segments, offsets \(logStartOffset)..<\(logEndOffset)",
      "scanned \(scannedSegments.count) segments (\(scannedBatches) batches, \(scannedBytes) bytes)",
    ]
    for truncation in truncations {
      parts.append(
        "truncated segment \(truncation.segmentBaseOffset) from \(truncation.fromBytes) to \(truncation.toBytes) bytes: \(truncation.reason)"
      )
    }
    if !rebuiltIndexes.isEmpty { parts.append("rebuilt indexes of \(rebuiltIndexes)") }
    if !deletedSegments.isEmpty { parts.append("deleted segments \(deletedSegments)") }
    if !removedFiles.isEmpty { parts.append("removed \(removedFiles)") }
    parts += notes
    return parts.joined(separator: "; ")
  }
}

/// The outcome of one `append`.
public struct AppendResult: Sendable, Equatable {
  /// Offset of the first record appended.
  public var baseOffset: Int64
  /// Offset of the last record appended.
  public var lastOffset: Int64
  public var batchCount: Int
  public var byteCount: Int
  /// Largest batch `maxTimestamp` among the appended batches.
  public var maxTimestamp: Int64
  /// True when this append started a new segment.
  public var rolledSegment: Bool
}

/// The outcome of one `read`.
public struct ReadResult: Sendable, Equatable {
  /// Whole batches, concatenated as they are on disk.
  public var bytes: [UInt8]
  /// Base offset of the first batch returned, nil when none was.
  public var firstOffset: Int64?
  /// Offset after the last batch returned: where the next read continues. Equal to the
  /// requested offset when nothing was returned.
  public var nextOffset: Int64
  public var logStartOffset: Int64
  public var logEndOffset: Int64
}

/// The outcome of `applyRetention`.
public struct RetentionResult: Sendable, Equatable {
  public var deletedSegments: [Int64] = []
  public var deletedBytes: Int64 = 0
  public var logStartOffset: Int64
}
