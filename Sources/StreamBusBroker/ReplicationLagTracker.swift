import StreamBusProtocol

/// Percentiles of replication lag in microseconds, as ReplicaStatus reports them.
public typealias ReplicationLagSummary = ReplicaStatusResponse.ReplicationLag

/// The leader's measurement of replication lag: for every appended batch and every
/// follower, the time from the leader's append to the first fetch in which that follower
/// reports the batch durable (its fetch offset passed the batch's end). That is the delay
/// the follower adds to an acks=all produce, the figure the high watermark waits for.
///
/// Bounded: at most `appendCapacity` batches are remembered (a follower far behind loses
/// the samples of the oldest ones) and the newest `sampleCapacity` samples are kept.
struct ReplicationLagTracker {
  static let appendCapacity = 65_536
  static let sampleCapacity = 65_536

  /// Appended batches not yet reported by every follower: end offset (exclusive) and when
  /// the leader appended them, oldest first from `appendsHead`.
  private var appends: [(endOffset: Int64, atNs: UInt64)] = []
  private var appendsHead = 0
  /// The highest fetch offset each follower reported.
  private var reported: [Int32: Int64] = [:]
  private var samplesUs: [Int64] = []
  private var nextSample = 0
  private var sampleCount: Int64 = 0

  /// Starts measuring for a new leadership: followers are known from their first fetch on.
  mutating func reset() {
    self = ReplicationLagTracker()
  }

  mutating func recordAppend(endOffset: Int64, nowNs: UInt64) {
    if appends.count - appendsHead >= Self.appendCapacity {
      appendsHead += 1
    }
    appends.append((endOffset, nowNs))
    compactIfNeeded()
  }

  /// A fetch from `follower` reporting everything below `fetchOffset` durable.
  mutating func recordFetch(follower: Int32, fetchOffset: Int64, nowNs: UInt64) {
    guard let previous = reported[follower] else {
      // The first fetch of a leadership says nothing about when earlier data arrived.
      reported[follower] = fetchOffset
      pruneReported()
      return
    }
    guard fetchOffset > previous else {
      // A truncated follower starts over from its new end.
      reported[follower] = min(previous, fetchOffset)
      return
    }
    var index = firstAppend(endingAfter: previous)
    while index < appends.count && appends[index].endOffset <= fetchOffset {
      let lagNs = nowNs >= appends[index].atNs ? nowNs - appends[index].atNs : 0
      addSample(Int64(lagNs / 1_000))
      index += 1
    }
    reported[follower] = fetchOffset
    pruneReported()
  }

  /// Forgets a follower (it left the replica set).
  mutating func forget(follower: Int32) {
    reported.removeValue(forKey: follower)
  }

  func summary() -> ReplicationLagSummary {
    guard !samplesUs.isEmpty else { return .none }
    let sorted = samplesUs.sorted()
    func at(_ fraction: Double) -> Int64 {
      let index = Int((Double(sorted.count - 1) * fraction).rounded())
      return sorted[min(max(index, 0), sorted.count - 1)]
    }
    return ReplicationLagSummary(
      samples: sampleCount, p50Us: at(0.5), p99Us: at(0.99), maxUs: sorted[sorted.count - 1])
  }

  private mutating func addSample(_ microseconds: Int64) {
    sampleCount += 1
    if samplesUs.count < Self.sampleCapacity {
      samplesUs.append(microseconds)
    } else {
      samplesUs[nextSample] = microseconds
      nextSample = (nextSample + 1) % Self.sampleCapacity
    }
  }

  /// Index of the oldest remembered append whose end offset is above `offset`.
  private func firstAppend(endingAfter offset: Int64) -> Int {
    var low = appendsHead
    var high = appends.count
    while low < high {
      let middle = (low + high) / 2
      if appends[middle].endOffset <= offset {
        low = middle + 1
      } else {
        high = middle
      }
    }
    return low
  }

  /// Drops appends every known follower has reported.
  private mutating func pruneReported() {
    guard let slowest = reported.values.min() else { return }
    appendsHead = max(appendsHead, firstAppend(endingAfter: slowest))
    compactIfNeeded()
  }

  private mutating func compactIfNeeded() {
    if appendsHead > 4_096 && appendsHead * 2 > appends.count {
      appends.removeFirst(appendsHead)
      appendsHead = 0
    }
  }
}
