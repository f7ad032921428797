import Logging
import NIOConcurrencyHelpers
import StreamBusMetadata
import StreamBusRaft
import StreamBusRaftHost

/// The replicated state of a metaserver: the `MetadataImage`, fed by committed Raft entries
/// (each one batch of metadata records), plus a bounded tail of recent batches for
/// FetchMetadata.
///
/// Called by the Raft host on its driver thread; read from any task through a lock. Readers
/// get image copies (a value type), so they never see a half-applied batch.
///
/// A batch that does not decode or does not replay onto the image is skipped: the image only
/// advances its offset, the batch stays out of the tail, and the index is remembered in
/// `rejectedBatches` so the proposer can tell its caller. Replay is deterministic, so every
/// replica skips the same batches; stopping instead (what `RaftStateMachine` allows) would
/// take down the whole quorum over one bad proposal.
public final class MetadataStateMachine: RaftStateMachine, Sendable {
  /// One committed batch as FetchMetadata serves it.
  public struct CommittedBatch: Sendable, Hashable {
    public var offset: Int64
    public var data: [UInt8]
  }

  private struct State {
    var image = MetadataImage()
    /// Successfully applied batches with offsets in (`tailStartOffset`, image.offset].
    var tail: [CommittedBatch] = []
    var tailHead = 0
    /// Every applied batch above this offset is in `tail`; an older fetch gets the snapshot.
    var tailStartOffset: Int64 = 0
    /// Index → why the batch was skipped (bounded: the oldest entries are dropped).
    var rejectedBatches: [Int64: String] = [:]
    var rejectedOrder: [Int64] = []
    var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    var nextWaiterID: UInt64 = 0
    var isClosed = false
    /// Cached `encodeSnapshot()` of the image at `snapshotCacheOffset`.
    var snapshotCache: [UInt8]?
    var snapshotCacheOffset: Int64 = -1

    var tailCount: Int { tail.count - tailHead }
  }

  private let state = NIOLockedValueBox(State())
  private let tailBatchesMax: Int
  private let logger: Logger
  static let rejectedBatchesMax = 1_024

  public init(tailBatchesMax: Int, logger: Logger) {
    precondition(tailBatchesMax > 0, "the tail must hold at least one batch")
    self.tailBatchesMax = tailBatchesMax
    self.logger = logger
  }

  // MARK: - RaftStateMachine

  public func apply(entries: [CommittedEntry]) throws {
    var waiters: [CheckedContinuation<Void, Never>] = []
    state.withLockedValue { state in
      for entry in entries {
        let offset = Int64(clamping: entry.index)
        guard offset > state.image.offset else {
          // Already in the image (restored from a snapshot taken after this entry).
          continue
        }
        do {
          let records = try MetadataRecord.decodeBatch(entry.data)
          try state.image.apply(records, offset: offset)
          state.tail.append(CommittedBatch(offset: offset, data: entry.data))
        } catch {
          reject(offset: offset, reason: "\(error)", state: &state)
        }
      }
      trimTail(&state)
      waiters = Array(state.waiters.values)
      state.waiters.removeAll()
    }
    for waiter in waiters { waiter.resume() }
  }

  public func snapshot() throws -> [UInt8] {
    let image = state.withLockedValue { $0.image }
    return image.encodeSnapshot()
  }

  public func restore(from data: [UInt8], index: LogIndex) throws {
    var image = try MetadataImage(snapshot: data)
    let offset = Int64(clamping: index)
    // The snapshot's image offset is its last metadata batch; the Raft index may be past it
    // (no-op and membership entries carry no metadata).
    if offset > image.offset {
      try image.apply([], offset: offset)
    }
    let restored = image
    var waiters: [CheckedContinuation<Void, Never>] = []
    state.withLockedValue { state in
      state.image = restored
      state.tail = []
      state.tailHead = 0
      state.tailStartOffset = restored.offset
      state.snapshotCache = nil
      waiters = Array(state.waiters.values)
      state.waiters.removeAll()
    }
    for waiter in waiters { waiter.resume() }
    logger.info(
      "metadata image restored from snapshot",
      metadata: ["offset": "\(restored.offset)", "topics": "\(restored.topics.count)"])
  }

  private func reject(offset: Int64, reason: String, state: inout State) {
    logger.error(
      "skipping a committed metadata batch that does not apply",
      metadata: ["offset": "\(offset)", "reason": "\(reason)"])
    // Advancing the offset keeps the image's offset equal to the last applied index.
    try? state.image.apply([], offset: offset)
    state.rejectedBatches[offset] = reason
    state.rejectedOrder.append(offset)
    if state.rejectedOrder.count > Self.rejectedBatchesMax {
      let oldest = state.rejectedOrder.removeFirst()
      state.rejectedBatches[oldest] = nil
    }
  }

  private func trimTail(_ state: inout State) {
    while state.tailCount > tailBatchesMax {
      state.tailStartOffset = state.tail[state.tailHead].offset
      state.tailHead += 1
    }
    // Compact the array once the dropped prefix dominates, so trimming stays amortized O(1).
    if state.tailHead > 64 && state.tailHead * 2 > state.tail.count {
      state.tail.removeFirst(state.tailHead)
      state.tailHead = 0
    }
  }

  // MARK: - Reads

  /// The image as of the last applied entry.
  public var image: MetadataImage { state.withLockedValue { $0.image } }

  public var appliedOffset: Int64 { state.withLockedValue { $0.image.offset } }

  /// Why the batch at `offset` was skipped, nil when it applied (or is unknown).
  public func rejection(at offset: Int64) -> String? {
    state.withLockedValue { $0.rejectedBatches[offset] }
  }

  /// What FetchMetadata answers for `fromOffset` right now.
  public enum FetchAnswer: Sendable, Hashable {
    /// Batches after `fromOffset` (possibly none), in order.
    case batches([CommittedBatch], appliedOffset: Int64)
    /// `fromOffset` is older than the tail: the whole image instead.
    case snapshot(offset: Int64, data: [UInt8])
  }

  /// Batches after `fromOffset` up to about `maxBytes` (at least one when there is one), or
  /// the snapshot when the tail does not reach back to `fromOffset`.
  public func fetch(after fromOffset: Int64, maxBytes: Int) -> FetchAnswer {
    let from = max(fromOffset, 0)
    let (answer, imageForSnapshot) = state.withLockedValue {
      state -> (FetchAnswer?, MetadataImage?) in
      if from < state.tailStartOffset {
        if let cached = state.snapshotCache, state.snapshotCacheOffset == state.image.offset {
          return (.snapshot(offset: state.image.offset, data: cached), nil)
        }
        return (nil, state.image)
      }
      var batches: [CommittedBatch] = []
      var bytes = 0
      // Binary search for the first batch above `from`.
      var low = state.tailHead
      var high = state.tail.count
      while low < high {
        let middle = (low + high) / 2
        if state.tail[middle].offset <= from { low = middle + 1 } else { high = middle }
      }
      var index = low
      while index < state.tail.count {
        let batch = state.tail[index]
        if !batches.isEmpty && bytes + batch.data.count > maxBytes { break }
        batches.append(batch)
        bytes += batch.data.count
        index += 1
      }
      return (.batches(batches, appliedOffset: state.image.offset), nil)
    }
    if let answer { return answer }
    guard let image = imageForSnapshot else { return .batches([], appliedOffset: 0) }
    // Encoding outside the lock: a large image must not stall the Raft driver's applies.
    let data = image.encodeSnapshot()
    state.withLockedValue { state in
      if state.image.offset == image.offset {
        state.snapshotCache = data
        state.snapshotCacheOffset = image.offset
      }
    }
    return .snapshot(offset: image.offset, data: data)
  }

  /// Returns once the image offset is above `offset`, the deadline passes, the task is
  /// cancelled or the state machine closes.
  public func waitForOffset(above offset: Int64, deadline: ContinuousClock.Instant) async {
    await withTaskGroup(of: Void.self) { group in
      group.addTask { await self.waitWithoutTimeout(above: offset) }
      group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
      await group.next()
      group.cancelAll()
    }
  }

  private func waitWithoutTimeout(above offset: Int64) async {
    let id = state.withLockedValue { state -> UInt64 in
      state.nextWaiterID += 1
      return state.nextWaiterID
    }
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let resumeNow = state.withLockedValue { state -> Bool in
          if state.isClosed || state.image.offset > offset || Task.isCancelled { return true }
          state.waiters[id] = continuation
          return false
        }
        if resumeNow { continuation.resume() }
      }
    } onCancel: {
      let waiter = state.withLockedValue { $0.waiters.removeValue(forKey: id) }
      waiter?.resume()
    }
  }

  /// Wakes every long-poll (shutdown): they answer with what they have.
  public func close() {
    let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
      state.isClosed = true
      defer { state.waiters.removeAll() }
      return Array(state.waiters.values)
    }
    for waiter in waiters { waiter.resume() }
  }
}
