import StreamBusRecords

/// When appended data is fsynced.
public enum FlushPolicy: Sendable, Equatable {
  /// The owner calls `flush()` after each group of appends (before acknowledging them), so
  /// one fdatasync covers many producers. The default: acknowledged means on disk.
  case groupCommit
  /// `flushIfDue(nowMs:)` fsyncs when this long has passed since the last flush; data
  /// acknowledged in between can be lost on power failure (not on a process crash).
  case interval(ms: Int64)
}

/// Settings of one partition log. Defaults follow Kafka's.
public struct LogConfig: Sendable, Equatable {
  /// Roll to a new segment before this size would be exceeded.
  public var segmentBytes: Int = 1 << 30
  /// Roll to a new segment once the active one has been written to for this long.
  public var segmentMs: Int64 = 7 * 24 * 3_600_000
  /// Add an offset index entry after at least this many bytes of batches.
  public var indexIntervalBytes: Int = 4096
  /// Delete the oldest segments while the log is larger than this; nil keeps all.
  public var retentionBytes: Int64? = nil
  /// Delete segments whose newest batch timestamp is older than this; nil keeps all.
  public var retentionMs: Int64? = 7 * 24 * 3_600_000
  /// Largest single batch accepted by `append`.
  public var batchBytesMax: Int = 8 << 20
  public var flushPolicy: FlushPolicy = .groupCommit

  public init() {}

  /// Positions in the offset index are 32-bit, so a segment must stay below 4 GiB even with
  /// one oversize batch past `segmentBytes`.
  public static let segmentBytesMax = Int(Int32.max)

  public func validate() throws {
    func invalid(_ message: String) -> StorageError { StorageError(.invalidConfig, message) }
    guard segmentBytes >= RecordBatchHeader.byteCount && segmentBytes <= Self.segmentBytesMax
    else {
      throw invalid("segmentBytes \(segmentBytes) must be in 61...\(Self.segmentBytesMax)")
    }
    guard segmentMs > 0 else { throw invalid("segmentMs \(segmentMs) must be positive") }
    guard indexIntervalBytes > 0 else {
      throw invalid("indexIntervalBytes \(indexIntervalBytes) must be positive")
    }
    guard batchBytesMax >= RecordBatchHeader.byteCount && batchBytesMax <= Self.segmentBytesMax
    else {
      throw invalid("batchBytesMax \(batchBytesMax) must be in 61...\(Self.segmentBytesMax)")
    }
    if let retentionBytes, retentionBytes < 0 {
      throw invalid("retentionBytes \(retentionBytes) must not be negative")
    }
    if let retentionMs, retentionMs < 0 {
      throw invalid("retentionMs \(retentionMs) must not be negative")
    }
    if case .interval(let ms) = flushPolicy, ms < 0 {
      throw invalid("flush interval \(ms) ms must not be negative")
    }
  }
}
