import Foundation

/// A stretch without any acknowledgement on one partition: from the last acknowledgement before
/// it to the first one after it (history microseconds).
public struct AcknowledgementGap: Sendable, Hashable {
  public var fromUs: Int64
  public var toUs: Int64

  public init(fromUs: Int64, toUs: Int64) {
    self.fromUs = fromUs
    self.toUs = toUs
  }

  public var durationUs: Int64 { toUs - fromUs }
}

/// One partition's acknowledgements over a run: how many, the first and last, and every gap of
/// at least the asked length between consecutive ones (by acknowledgement time), which is where
/// the partition could not take writes.
public struct PartitionAcknowledgements: Sendable, Hashable {
  public var partition: Int32
  public var acknowledged: Int
  public var firstAckUs: Int64?
  public var lastAckUs: Int64?
  public var gaps: [AcknowledgementGap]

  public init(
    partition: Int32, acknowledged: Int, firstAckUs: Int64?, lastAckUs: Int64?,
    gaps: [AcknowledgementGap]
  ) {
    self.partition = partition
    self.acknowledged = acknowledged
    self.firstAckUs = firstAckUs
    self.lastAckUs = lastAckUs
    self.gaps = gaps
  }

  /// Per partition written or acknowledged in `events` (sorted by partition): its
  /// acknowledgements and the gaps of at least `gapMinUs` between them.
  public static func summarize(_ events: [HistoryEvent], gapMinUs: Int64)
    -> [PartitionAcknowledgements]
  {
    var ackTimes: [Int32: [Int64]] = [:]
    for event in events where event.kind == .ack || event.kind == .send {
      if event.kind == .ack {
        ackTimes[event.partition, default: []].append(event.timeUs)
      } else if ackTimes[event.partition] == nil {
        ackTimes[event.partition] = []
      }
    }
    return ackTimes.keys.sorted().map { partition in
      // Recorded in time order already; sorted anyway so crafted histories work too.
      let times = ackTimes[partition, default: []].sorted()
      var gaps: [AcknowledgementGap] = []
      for (earlier, later) in zip(times, times.dropFirst()) where later - earlier >= gapMinUs {
        gaps.append(AcknowledgementGap(fromUs: earlier, toUs: later))
      }
      return PartitionAcknowledgements(
        partition: partition, acknowledged: times.count, firstAckUs: times.first,
        lastAckUs: times.last, gaps: gaps)
    }
  }
}

extension History {
  /// Wall-clock Unix milliseconds of history time `timeUs` (for matching with other clocks'
  /// events, such as a fault injected by another process).
  public func unixMilliseconds(ofUs timeUs: Int64) -> Int64 {
    Int64((startedAt.timeIntervalSince1970 * 1_000).rounded(.down)) + timeUs / 1_000
  }

  /// The history time (µs) of a wall-clock instant given in Unix milliseconds.
  public func timeUs(ofUnixMilliseconds unixMs: Int64) -> Int64 {
    (unixMs - Int64((startedAt.timeIntervalSince1970 * 1_000).rounded(.down))) * 1_000
  }

  /// `PartitionAcknowledgements.summarize` over this history's events.
  public func acknowledgements(gapMinUs: Int64) -> [PartitionAcknowledgements] {
    PartitionAcknowledgements.summarize(events, gapMinUs: gapMinUs)
  }
}
