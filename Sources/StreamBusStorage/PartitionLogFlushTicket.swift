/// The fdatasync of one flush, taken out of the log so it can run on a thread where
/// blocking is allowed while the owner keeps appending (group commit).
///
/// Holds only file descriptors and the file system, so it is `Sendable`; `sync()` is the
/// one blocking call. Hand it back with `PartitionLog.completeFlush(_:succeeded:)`.
public struct FlushTicket: Sendable {
  /// `logEndOffset` when the flush began: everything below it is durable once `sync()`
  /// returns.
  public let endOffset: Int64
  let targets: [(descriptor: Int32, path: String)]
  let fileSystem: any LogFileSystem

  /// fdatasyncs every segment that had unsynced appends when the flush began. Blocks.
  public func sync() throws {
    for target in targets {
      do {
        try fileSystem.syncData(target.descriptor)
      } catch let error as StorageError {
        throw StorageError(
          error.code, "sync of \(target.path): \(error.message)", errno: error.errno,
          path: target.path)
      }
    }
  }
}

/// Segments handed to a `FlushTicket` whose sync has not been confirmed yet.
struct InFlightFlush {
  let endOffset: Int64
  let segmentBaseOffsets: [Int64]
}

extension PartitionLog {
  /// Starts a flush of everything appended so far, or returns nil when there is nothing to
  /// flush. Run `ticket.sync()` anywhere (off the owner's executor), then call
  /// `completeFlush`. At most one ticket may be outstanding; while it is, the owner must not
  /// call `applyRetention`, `truncate`, `truncateFully` or `close` (they may close the
  /// descriptors the ticket syncs). Appends, reads, `flush()` and rolls are fine.
  public func beginFlush() -> FlushTicket? {
    precondition(inFlightFlush == nil, "one flush ticket at a time")
    let unsynced = segments.filter(\.hasUnsyncedData)
    guard !unsynced.isEmpty || durableEndOffset < logEndOffset else { return nil }
    for segment in unsynced {
      // Cleared now so appends made during the sync set it again; a failed or superseded
      // sync sets it back (see `markInFlightFlushUnsynced`).
      segment.hasUnsyncedData = false
    }
    inFlightFlush = InFlightFlush(
      endOffset: logEndOffset, segmentBaseOffsets: unsynced.map(\.baseOffset))
    return FlushTicket(
      endOffset: logEndOffset,
      targets: unsynced.map { ($0.descriptor, $0.logPath) }, fileSystem: fileSystem)
  }

  /// Records the outcome of `ticket.sync()`. On success `durableEndOffset` advances to the
  /// ticket's end offset (never past `logEndOffset`); on failure the segments count as
  /// unsynced again so the next flush retries them.
  public func completeFlush(_ ticket: FlushTicket, succeeded: Bool) {
    precondition(
      inFlightFlush?.endOffset == ticket.endOffset, "completeFlush with a ticket not in flight")
    if succeeded {
      inFlightFlush = nil
      durableEndOffset = min(max(durableEndOffset, ticket.endOffset), logEndOffset)
      lastFlushMs = clockMs()
    } else {
      markInFlightFlushUnsynced()
      inFlightFlush = nil
    }
  }

  /// Whether a `FlushTicket` is outstanding.
  public var isFlushInFlight: Bool { inFlightFlush != nil }

  /// A synchronous flush or roll must not trust the cleared flags of segments a ticket is
  /// still syncing: it syncs them again (fdatasync covers the whole file).
  func markInFlightFlushUnsynced() {
    guard let inFlightFlush else { return }
    for segment in segments where inFlightFlush.segmentBaseOffsets.contains(segment.baseOffset) {
      segment.hasUnsyncedData = true
    }
  }
}
