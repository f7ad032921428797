import StreamBusRecords

/// One batch an idempotent producer wrote, as remembered for duplicate detection.
public struct ProducerBatchMetadata: Equatable, Sendable {
  public var firstSequence: Int32
  public var lastSequence: Int32
  public var firstOffset: Int64
  public var lastOffset: Int64
  /// The batch's `maxTimestamp`: the producer's clock, as in Kafka (drives expiry).
  public var timestampMs: Int64

  public init(
    firstSequence: Int32, lastSequence: Int32, firstOffset: Int64, lastOffset: Int64,
    timestampMs: Int64
  ) {
    self.firstSequence = firstSequence
    self.lastSequence = lastSequence
    self.firstOffset = firstOffset
    self.lastOffset = lastOffset
    self.timestampMs = timestampMs
  }
}

/// What a partition knows about one producer id: its current epoch and the last few batches
/// of that epoch, oldest first. Never empty: a producer without batches is not in the table.
public struct ProducerStateEntry: Equatable, Sendable {
  public var producerId: Int64
  public var producerEpoch: Int16
  public var batches: [ProducerBatchMetadata]

  public init(producerId: Int64, producerEpoch: Int16, batches: [ProducerBatchMetadata]) {
    precondition(!batches.isEmpty, "a producer state entry holds at least one batch")
    precondition(batches.count <= ProducerStateTable.batchesPerProducerMax, "too many batches")
    self.producerId = producerId
    self.producerEpoch = producerEpoch
    self.batches = batches
  }

  public var lastSequence: Int32 { batches[batches.count - 1].lastSequence }
  public var lastOffset: Int64 { batches[batches.count - 1].lastOffset }
  public var lastTimestampMs: Int64 { batches[batches.count - 1].timestampMs }
}

/// The leader's verdict on a produced batch, before it is appended.
public enum ProducerAppendCheck: Equatable, Sendable {
  /// Append it (then call `record`).
  case append
  /// The same batch was appended before; answer the producer with these offsets and do not
  /// append again (a retry after a lost acknowledgement).
  case duplicate(firstOffset: Int64, lastOffset: Int64)
  /// The batch does not start where the producer's previous batch ended (a gap, an older
  /// batch no longer remembered, or a new epoch not starting at 0).
  case outOfOrder(expectedSequence: Int32)
  /// The batch's epoch is older than the producer's current one: a zombie producer.
  case fencedEpoch
  /// The partition has no state for this producer (never seen, expired, or removed with
  /// the log) and the batch does not start a sequence at 0; the producer must reset.
  case unknownProducer
  /// The producer fields contradict each other (a producer id with a negative epoch or
  /// sequence, a negative offset delta, or a control batch sent by a client).
  case invalidBatch(reason: String)
}

/// The idempotent producer's broker-side state of one partition: for each producer id, its
/// epoch and its last `batchesPerProducerMax` batches, with Kafka's rules for sequence
/// numbers. A value type without I/O or clock: the partition's owner calls `check` before
/// an append, `record` after every append (leader and follower alike), `truncate` when the
/// log is truncated, `removeExpiredProducers` from its timer, and checkpoints it with
/// `snapshot()`.
///
/// Sequence numbers count records per producer id and epoch, start at 0 for a new epoch,
/// and wrap from `Int32.max` to 0. A batch covers sequences `baseSequence` through
/// `baseSequence + lastOffsetDelta` (wrapped).
public struct ProducerStateTable: Equatable, Sendable {
  /// How many recent batches per producer are kept for duplicate detection; Kafka's
  /// producers keep at most 5 requests in flight per partition with idempotence on, so a
  /// retry is always one of the last 5.
  public static let batchesPerProducerMax = 5
  /// Kafka's `producer.id.expiration.ms` default: one day.
  public static let producerIdExpirationMsDefault: Int64 = 86_400_000

  /// A producer whose newest batch timestamp is this old is forgotten.
  public let producerIdExpirationMs: Int64
  /// Producer state by producer id.
  public private(set) var producers: [Int64: ProducerStateEntry] = [:]
  /// The offset just past the last batch recorded: a snapshot covers the log below it, and
  /// recovery replays the log from here.
  public private(set) var endOffset: Int64

  public init(
    producerIdExpirationMs: Int64 = producerIdExpirationMsDefault, endOffset: Int64 = 0
  ) throws(StorageError) {
    guard producerIdExpirationMs > 0 else {
      throw StorageError(
        .invalidConfig, "producerIdExpirationMs \(producerIdExpirationMs) must be positive")
    }
    guard endOffset >= 0 else {
      throw StorageError(.invalidConfig, "producer state end offset \(endOffset) is negative")
    }
    self.producerIdExpirationMs = producerIdExpirationMs
    self.endOffset = endOffset
  }

  init(producerIdExpirationMs: Int64, endOffset: Int64, producers: [Int64: ProducerStateEntry]) {
    self.producerIdExpirationMs = producerIdExpirationMs
    self.endOffset = endOffset
    self.producers = producers
  }

  /// The sequence `count` records after `sequence`, wrapping past `Int32.max` to 0.
  public static func sequence(_ sequence: Int32, advancedBy count: Int32) -> Int32 {
    precondition(sequence >= 0 && count >= 0, "sequences and counts are not negative")
    if sequence > Int32.max - count { return count - (Int32.max - sequence) - 1 }
    return sequence + count
  }

  /// Decides whether a produced batch may be appended. Batches without a producer id
  /// (`producerId` < 0) are not idempotent and always pass.
  public func check(_ header: RecordBatchHeader) -> ProducerAppendCheck {
    guard header.producerId >= 0 else { return .append }
    if let reason = Self.invalidProducerFields(header) { return .invalidBatch(reason: reason) }
    if header.isControl {
      return .invalidBatch(reason: "control batches are written by the broker, not producers")
    }
    guard let entry = producers[header.producerId] else {
      return header.baseSequence == 0 ? .append : .unknownProducer
    }
    if header.producerEpoch < entry.producerEpoch { return .fencedEpoch }
    if header.producerEpoch > entry.producerEpoch {
      return header.baseSequence == 0 ? .append : .outOfOrder(expectedSequence: 0)
    }
    let lastSequence = Self.sequence(header.baseSequence, advancedBy: header.lastOffsetDelta)
    if let original = entry.batches.first(where: {
      $0.firstSequence == header.baseSequence && $0.lastSequence == lastSequence
    }) {
      return .duplicate(firstOffset: original.firstOffset, lastOffset: original.lastOffset)
    }
    let expected = Self.sequence(entry.lastSequence, advancedBy: 1)
    return header.baseSequence == expected ? .append : .outOfOrder(expectedSequence: expected)
  }

  /// Notes a batch appended at `firstOffset` (the header's own `baseOffset` may still be
  /// the producer's). Call it for every appended batch, idempotent or not, in offset order,
  /// so `endOffset` follows the log. Followers call it without `check`: the leader decided.
  public mutating func record(_ header: RecordBatchHeader, firstOffset: Int64) {
    precondition(header.lastOffsetDelta >= 0, "an appended batch has a valid offset delta")
    precondition(
      firstOffset >= endOffset,
      "batch at \(firstOffset) recorded below the producer state end offset \(endOffset)")
    let lastOffset = firstOffset + Int64(header.lastOffsetDelta)
    endOffset = lastOffset + 1
    guard header.producerId >= 0, !header.isControl, Self.invalidProducerFields(header) == nil
    else { return }
    let batch = ProducerBatchMetadata(
      firstSequence: header.baseSequence,
      lastSequence: Self.sequence(header.baseSequence, advancedBy: header.lastOffsetDelta),
      firstOffset: firstOffset, lastOffset: lastOffset, timestampMs: header.maxTimestamp)
    if var entry = producers[header.producerId], entry.producerEpoch == header.producerEpoch {
      entry.batches.append(batch)
      if entry.batches.count > Self.batchesPerProducerMax { entry.batches.removeFirst() }
      producers[header.producerId] = entry
    } else {
      // A new epoch restarts the sequence, so the old epoch's batches can never match again.
      producers[header.producerId] = ProducerStateEntry(
        producerId: header.producerId, producerEpoch: header.producerEpoch, batches: [batch])
    }
  }

  /// Records batches read from the log (their `baseOffset` is their log offset), skipping
  /// those below `endOffset` that a restored snapshot already covers. Throws `corruptLog`
  /// for a batch with a negative offset delta or one straddling `endOffset`.
  public mutating func replay(_ batches: some Sequence<RecordBatchHeader>) throws(StorageError) {
    for header in batches {
      guard header.lastOffsetDelta >= 0 else {
        throw StorageError(
          .corruptLog,
          "batch at offset \(header.baseOffset) has last offset delta \(header.lastOffsetDelta)")
      }
      if header.lastOffset < endOffset { continue }
      guard header.baseOffset >= endOffset else {
        throw StorageError(
          .corruptLog,
          "batch \(header.baseOffset)...\(header.lastOffset) straddles the producer state end "
            + "offset \(endOffset)")
      }
      record(header, firstOffset: header.baseOffset)
    }
  }

  /// Forgets everything and rebuilds the table from the log's batches in offset order (on
  /// leadership change or recovery without a snapshot). Only the last batches per producer
  /// survive, exactly as if each had been recorded on append.
  public mutating func rebuild(from batches: some Sequence<RecordBatchHeader>)
    throws(StorageError)
  {
    producers = [:]
    endOffset = 0
    try replay(batches)
  }

  /// Drops what the table knows about batches at or beyond `newEndOffset`, after the log was
  /// truncated there (pass the log's new end as `PartitionLog.truncate(to:)` returns it: a
  /// whole batch is removed, so that may be below the offset asked for). A producer keeping at least one batch keeps an exact sequence state
  /// (fewer batches only shortens its duplicate window). A producer that loses all of them
  /// is removed and returned: its state lies in older log batches the table no longer has,
  /// so unless the returned list is empty the caller must rebuild (from a snapshot at or
  /// below `newEndOffset` plus `replay`, or from the whole log).
  @discardableResult
  public mutating func truncate(toEndOffset newEndOffset: Int64) -> [Int64] {
    precondition(newEndOffset >= 0, "a log end offset is not negative")
    endOffset = min(endOffset, newEndOffset)
    var removed: [Int64] = []
    for (producerId, entry) in producers where entry.lastOffset >= newEndOffset {
      let kept = entry.batches.filter { $0.lastOffset < newEndOffset }
      if kept.isEmpty {
        producers[producerId] = nil
        removed.append(producerId)
      } else {
        producers[producerId]?.batches = kept
      }
    }
    return removed.sorted()
  }

  /// Forgets producers whose newest batch timestamp is `producerIdExpirationMs` or more
  /// before `nowMs`; returns their ids. Their next batch gets `unknownProducer` unless it
  /// starts a sequence at 0.
  @discardableResult
  public mutating func removeExpiredProducers(nowMs: Int64) -> [Int64] {
    let expired = producers.values.filter {
      nowMs &- $0.lastTimestampMs >= producerIdExpirationMs
    }.map(\.producerId).sorted()
    for producerId in expired { producers[producerId] = nil }
    return expired
  }

  private static func invalidProducerFields(_ header: RecordBatchHeader) -> String? {
    if header.isControl { return nil }
    if header.producerEpoch < 0 {
      return "producer \(header.producerId) sent epoch \(header.producerEpoch)"
    }
    if header.baseSequence < 0 {
      return "producer \(header.producerId) sent base sequence \(header.baseSequence)"
    }
    if header.lastOffsetDelta < 0 {
      return "last offset delta \(header.lastOffsetDelta) is negative"
    }
    return nil
  }
}
