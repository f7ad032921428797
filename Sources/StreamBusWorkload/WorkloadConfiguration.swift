import StreamBusClient

/// What a `Workload` writes and reads.
public struct WorkloadConfiguration: Sendable {
  public var topic: String
  /// Partitions written and read; empty means every partition of the topic.
  public var partitions: [Int32] = []
  /// Independent `Producer`s (each its own producer id), writing `w<index>-<sequence>` values.
  public var producers: Int = 2
  /// Values to send across all producers; nil sends until `stop()` or `durationMs`.
  public var recordsMax: Int?
  /// Stop sending after this long; nil sends until `stop()` or `recordsMax`.
  public var durationMs: Int64?
  /// Values sent per second across all producers; nil sends as fast as the cluster acknowledges
  /// (bounded by `outstandingPerPartitionMax`).
  public var recordsPerSecondMax: Int?
  /// Record value size: the id padded with `.` (ids longer than this are sent as they are).
  public var valueBytes: Int = 32
  /// Values queued without an outcome per producer and partition. Bounds memory and makes a
  /// partition without a leader stop its own writers only, not the other partitions'.
  public var outstandingPerPartitionMax: Int = 2_000
  public var producerConfig: ProducerConfig
  /// Consumers that read every partition while the producers run; what they see is checked
  /// against the final read.
  public var tailingReaders: Int = 0
  /// Reads (tailing and final) start at each partition's high watermark when the workload
  /// starts instead of the log start, so records of earlier runs on the same topic are not
  /// part of this history's check.
  public var readsFromStartOffsets = false
  /// How long the final read may take before it gives up on reaching every partition's end
  /// (the checker then reports what it could not find).
  public var finalReadTimeoutMs: Int64 = 60_000

  public init(
    topic: String, producers: Int = 2, recordsMax: Int? = nil, durationMs: Int64? = nil,
    producerConfig: ProducerConfig = ProducerConfig(acks: .all)
  ) {
    precondition(producers > 0, "a workload needs at least one producer")
    self.topic = topic
    self.producers = producers
    self.recordsMax = recordsMax
    self.durationMs = durationMs
    self.producerConfig = producerConfig
  }
}

/// Counts of a running workload (sent = queued to a producer).
public struct WorkloadProgress: Sendable, Equatable, CustomStringConvertible {
  public var sent = 0
  public var acknowledged = 0
  public var failed = 0
  public var concurrentReads = 0

  public init() {}

  public var description: String {
    "sent \(sent), acknowledged \(acknowledged), failed \(failed), "
      + "concurrent reads \(concurrentReads)"
  }
}

/// How the final read went.
public struct FinalReadSummary: Sendable, CustomStringConvertible {
  /// Per partition: the offset the read reached (its position at the end).
  public var reachedOffsets: [Int32: Int64] = [:]
  /// Per partition: the end it had to reach (log end seen via ListOffsets, at least the highest
  /// acknowledged offset + 1).
  public var targetOffsets: [Int32: Int64] = [:]
  public var recordCount = 0
  public var durationMs: Int64 = 0

  public init() {}

  /// Partitions whose end was not reached within the timeout.
  public var incompletePartitions: [Int32] {
    targetOffsets.keys.filter { (reachedOffsets[$0] ?? 0) < targetOffsets[$0, default: 0] }.sorted()
  }

  public var description: String {
    var text = "final read: \(recordCount) records in \(durationMs) ms"
    for partition in targetOffsets.keys.sorted() {
      text += ", p\(partition) \(reachedOffsets[partition] ?? 0)/\(targetOffsets[partition] ?? 0)"
    }
    return text
  }
}

/// A workload failure outside the checked history (e.g. the topic cannot be found).
public struct WorkloadError: Error, CustomStringConvertible, Sendable {
  public let description: String

  public init(_ description: String) {
    self.description = description
  }
}
