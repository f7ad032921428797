import Logging
import NIOPosix
import StreamBusProtocol
import StreamBusRecords
import StreamBusStorage

/// The outcome of a produce to one partition.
public struct AppendOutcome: Sendable, Equatable {
  public var errorCode: ErrorCode
  public var errorMessage: String?
  /// Offset of the first appended record; -1 on error.
  public var baseOffset: Int64
  public var logStartOffset: Int64

  static func failure(_ code: ErrorCode, _ message: String?, logStartOffset: Int64 = -1)
    -> AppendOutcome
  {
    AppendOutcome(
      errorCode: code, errorMessage: message, baseOffset: -1, logStartOffset: logStartOffset)
  }
}

/// An append to one partition, already written to the log (or refused) when it exists.
/// acks=all produces get their final outcome from `outcome()`, which waits for the commit;
/// the caller can do other work in between (the next request of its connection).
public struct PendingAppend: Sendable {
  /// The outcome of the write: the failure, or the base offset.
  public let written: AppendOutcome
  let commitWait: CommitWait?

  static func done(_ outcome: AppendOutcome) -> PendingAppend {
    PendingAppend(written: outcome, commitWait: nil)
  }

  /// False when `outcome()` returns at once (an error, acks 0 or 1, already committed).
  public var awaitsCommit: Bool { commitWait != nil }

  /// The outcome once the acks level is met: the write's, or the commit failure
  /// (REQUEST_TIMED_OUT, STORAGE_ERROR, UNKNOWN_TOPIC_OR_PARTITION after a delete).
  public func outcome() async -> AppendOutcome {
    guard let commitWait, let failure = await commitWait.wait() else { return written }
    return .failure(failure.errorCode, failure.message, logStartOffset: written.logStartOffset)
  }
}

/// What one partition returns to a fetch.
public struct ReadOutcome: Sendable, Equatable {
  public var errorCode: ErrorCode
  public var errorMessage: String?
  public var highWatermark: Int64
  public var logStartOffset: Int64
  public var logEndOffset: Int64
  /// Whole batches, all below the high watermark.
  public var records: [UInt8]
  /// The batches as a range of a segment file instead of `records` (from `readSlice`).
  public var recordsFile: LogFileSlice?

  /// Record bytes returned, in either form.
  public var recordByteCount: Int { recordsFile?.byteCount ?? records.count }

  public static func == (left: ReadOutcome, right: ReadOutcome) -> Bool {
    left.errorCode == right.errorCode && left.errorMessage == right.errorMessage
      && left.highWatermark == right.highWatermark
      && left.logStartOffset == right.logStartOffset && left.logEndOffset == right.logEndOffset
      && left.records == right.records && left.recordsFile === right.recordsFile
  }

  static func failure(_ code: ErrorCode, _ message: String?) -> ReadOutcome {
    ReadOutcome(
      errorCode: code, errorMessage: message, highWatermark: -1, logStartOffset: -1,
      logEndOffset: -1, records: [])
  }
}

/// Offsets a partition reports to ListOffsets and Metadata.
public struct ReplicaOffsets: Sendable, Equatable {
  public var logStartOffset: Int64
  public var highWatermark: Int64
  public var logEndOffset: Int64
}

/// Why a replica is closed.
public enum ReplicaCloseReason: Sendable {
  /// The topic was deleted: waiting requests fail with UNKNOWN_TOPIC_OR_PARTITION.
  case deleted
  /// The broker stops: everything appended is flushed and waiting requests complete.
  case shutdown
}

/// One partition hosted by this broker, owning its `PartitionLog`.
///
/// Appends and reads run on this actor (the log is not thread-safe). Durability uses group
/// commit: at most one fdatasync per partition runs at a time, on the NIO thread pool (a
/// blocking call on Swift's small cooperative pool would stall every task), while appends
/// keep being written. When it finishes, the high watermark (with one replica, the durable
/// end offset) moves to the log end offset captured when the flush began, acks=all
/// producers below it complete, and waiting fetches wake. Another flush starts right away
/// if more was appended meanwhile, so flushes run back to back under load and each covers
/// everything that arrived during the previous one.
///
/// In standalone mode this replica is always the leader with epoch 0 and the ISR is just
/// this broker. Cluster mode adds a role (leader/follower) and follower log end offsets
/// to the high watermark computation; the log ownership and waiter machinery stay.
public actor PartitionReplica {
  public nonisolated let topicPartition: TopicPartition
  public nonisolated let leaderEpoch: Int32 = 0
  public nonisolated let minInsyncReplicas: Int

  private var log: PartitionLog?
  /// Set when closing starts; no appends or reads are served from then on.
  private var closeReason: ReplicaCloseReason?
  private var isClosing: Bool { closeReason != nil }
  /// Offsets below it are visible to consumers and acknowledged to acks=all producers.
  private var highWatermark: Int64
  private let flushPolicy: FlushPolicy
  private let threadPool: NIOThreadPool
  private let logger: Logger

  private struct AckWaiter {
    /// The waiter completes once the high watermark reaches this offset.
    var requiredOffset: Int64
    var deadlineMs: Int64
    var commitWait: CommitWait
  }

  /// acks=all producers waiting for the high watermark, in offset order.
  private var ackWaiters: [AckWaiter] = []
  private var fetchWakeups: [ObjectIdentifier: FetchWakeup] = [:]
  /// Callers waiting for the in-flight flush to finish (close).
  private var flushIdleWaiters: [CheckedContinuation<Void, Never>] = []
  /// Retention requested while a flush held the log's descriptors; runs after it.
  private var pendingRetentionNowMs: Int64?
  private var lastFlushStartMs: Int64
  private var consecutiveFlushFailures = 0

  /// Opens (and recovers) the partition's log; blocking, so call it off the cooperative
  /// pool (`ReplicaManager` uses the thread pool). Flushes once so that everything the
  /// recovered log holds is durable before it becomes visible.
  init(
    topicPartition: TopicPartition, directory: String, logConfig: LogConfig,
    minInsyncReplicas: Int, fileSystem: any LogFileSystem, threadPool: NIOThreadPool,
    logger: Logger
  ) throws {
    let log = try PartitionLog(directory: directory, config: logConfig, fileSystem: fileSystem)
    try log.flush()
    self.topicPartition = topicPartition
    self.minInsyncReplicas = minInsyncReplicas
    self.log = log
    self.highWatermark = log.durableEndOffset
    self.flushPolicy = logConfig.flushPolicy
    self.threadPool = threadPool
    var logger = logger
    logger[metadataKey: "partition"] = "\(topicPartition)"
    self.logger = logger
    self.lastFlushStartMs = PartitionLog.wallClockMs()
    let report = log.recoveryReport
    if !report.isClean {
      logger.warning("recovered partition log", metadata: ["report": "\(report)"])
    } else {
      logger.debug("opened partition log", metadata: ["logEndOffset": "\(log.logEndOffset)"])
    }
  }

  // MARK: Produce

  /// Appends producer batches (storage validates them, CRC included) and returns once they
  /// are written, so appends land in the order of the calls. For acks `0` and `1` that is
  /// the answer; for `-1` the returned `PendingAppend` waits until the high watermark passes
  /// the last appended offset (fsynced, with one replica). `nowMs` and `timeoutMs` bound
  /// that wait (REQUEST_TIMED_OUT; the data stays appended).
  public func append(_ records: [UInt8], acks: Int16, timeoutMs: Int64, nowMs: Int64)
    -> PendingAppend
  {
    guard let log, !isClosing else { return .done(unknownPartition()) }
    if acks == -1 && minInsyncReplicas > 1 {
      return .done(
        .failure(
          .notEnoughReplicas,
          "min.insync.replicas is \(minInsyncReplicas) but the in-sync replica set has 1 replica",
          logStartOffset: log.logStartOffset))
    }
    let result: AppendResult
    do {
      result = try log.append(records, partitionLeaderEpoch: leaderEpoch)
    } catch {
      return .done(appendFailure(error, logStartOffset: log.logStartOffset))
    }
    switch flushPolicy {
    case .groupCommit:
      startFlushIfIdle()
    case .interval:
      // Durability is left to the interval; with one replica the write alone commits.
      advanceHighWatermark(to: log.logEndOffset)
    }
    let written = AppendOutcome(
      errorCode: .none, errorMessage: nil, baseOffset: result.baseOffset,
      logStartOffset: log.logStartOffset)
    guard acks == -1 && highWatermark <= result.lastOffset else { return .done(written) }
    // Registered in this actor turn, so no commit or failure can be missed.
    let commitWait = CommitWait()
    ackWaiters.append(
      AckWaiter(
        requiredOffset: result.lastOffset + 1, deadlineMs: nowMs + max(timeoutMs, 0),
        commitWait: commitWait))
    return PendingAppend(written: written, commitWait: commitWait)
  }

  private func appendFailure(_ error: any Error, logStartOffset: Int64) -> AppendOutcome {
    guard let error = error as? StorageError else {
      logger.error("append failed: \(error)")
      return .failure(.unknownServerError, "\(error)", logStartOffset: logStartOffset)
    }
    switch error.code {
    case .invalidBatch:
      return .failure(.corruptMessage, error.message, logStartOffset: logStartOffset)
    case .closed:
      return unknownPartition()
    default:
      logger.error("append failed: \(error)")
      return .failure(.storageError, error.message, logStartOffset: logStartOffset)
    }
  }

  private func unknownPartition() -> AppendOutcome {
    .failure(.unknownTopicOrPartition, "partition \(topicPartition) does not exist")
  }

  // MARK: Group commit

  private func startFlushIfIdle() {
    guard let log, !log.isFlushInFlight, let ticket = log.beginFlush() else { return }
    lastFlushStartMs = PartitionLog.wallClockMs()
    let threadPool = threadPool
    Task {
      var failure: StorageError?
      do {
        try await threadPool.runIfActive { try ticket.sync() }
      } catch let error as StorageError {
        failure = error
      } catch {
        failure = StorageError(.ioFailure, "flush could not run: \(error)")
      }
      self.flushCompleted(ticket, failure: failure)
    }
  }

  private func flushCompleted(_ ticket: FlushTicket, failure: StorageError?) {
    guard let log else {
      resumeFlushIdleWaiters()
      return
    }
    log.completeFlush(ticket, succeeded: failure == nil)
    if let failure {
      consecutiveFlushFailures += 1
      logger.error(
        "flush failed; acks=all producers up to offset \(ticket.endOffset) get STORAGE_ERROR",
        metadata: ["error": "\(failure)", "failures": "\(consecutiveFlushFailures)"])
      failAckWaiters(
        below: ticket.endOffset,
        BrokerRequestError(.storageError, "flush failed: \(failure.message)"))
    } else {
      if consecutiveFlushFailures > 0 {
        logger.info("flush succeeded again after \(consecutiveFlushFailures) failures")
      }
      consecutiveFlushFailures = 0
      advanceHighWatermark(to: log.durableEndOffset)
    }
    if let nowMs = pendingRetentionNowMs {
      pendingRetentionNowMs = nil
      runRetention(nowMs: nowMs)
    }
    resumeFlushIdleWaiters()
    // After a failure, the next append or maintenance tick retries rather than a tight loop.
    if failure == nil && !isClosing && flushPolicy == .groupCommit {
      startFlushIfIdle()
    }
  }

  private func advanceHighWatermark(to offset: Int64) {
    // A deleted partition commits nothing more: its waiters get UNKNOWN_TOPIC_OR_PARTITION.
    guard offset > highWatermark, closeReason != .deleted else { return }
    highWatermark = offset
    var completed = 0
    while completed < ackWaiters.count && ackWaiters[completed].requiredOffset <= offset {
      ackWaiters[completed].commitWait.resolve(nil)
      completed += 1
    }
    ackWaiters.removeFirst(completed)
    for wakeup in fetchWakeups.values {
      wakeup.signal()
    }
  }

  /// Fails the acks=all waiters whose batches end at or below `offset`.
  private func failAckWaiters(below offset: Int64, _ error: BrokerRequestError) {
    var failed = 0
    while failed < ackWaiters.count && ackWaiters[failed].requiredOffset <= offset {
      ackWaiters[failed].commitWait.resolve(error)
      failed += 1
    }
    ackWaiters.removeFirst(failed)
  }

  private func resumeFlushIdleWaiters() {
    let waiters = flushIdleWaiters
    flushIdleWaiters = []
    for waiter in waiters {
      waiter.resume()
    }
  }

  // MARK: Fetch

  /// Batches from `fetchOffset`, up to about `maxBytes` (the first batch whole), all below
  /// the high watermark. OFFSET_OUT_OF_RANGE below the log start offset or above the log
  /// end offset; between the high watermark and the log end offset the answer is empty
  /// (as in Kafka): a consumer that just produced with acks=1 and fetches right after its
  /// batch must wait for the commit, not reset its position.
  public func read(from fetchOffset: Int64, maxBytes: Int) -> ReadOutcome {
    read(from: fetchOffset, maxBytes: maxBytes, asFileSlice: false)
  }

  /// `read`, with the batches as a range of the segment file (`recordsFile`) to send without
  /// copying; as bytes when the log's file system cannot share descriptors.
  public func readSlice(from fetchOffset: Int64, maxBytes: Int) -> ReadOutcome {
    read(from: fetchOffset, maxBytes: maxBytes, asFileSlice: true)
  }

  private func read(from fetchOffset: Int64, maxBytes: Int, asFileSlice: Bool) -> ReadOutcome {
    guard let log, !isClosing else {
      return .failure(.unknownTopicOrPartition, "partition \(topicPartition) does not exist")
    }
    var outcome = ReadOutcome(
      errorCode: .none, errorMessage: nil, highWatermark: highWatermark,
      logStartOffset: log.logStartOffset, logEndOffset: log.logEndOffset, records: [])
    guard fetchOffset >= log.logStartOffset && fetchOffset <= log.logEndOffset else {
      outcome.errorCode = .offsetOutOfRange
      outcome.errorMessage =
        "offset \(fetchOffset) is outside \(log.logStartOffset)...\(log.logEndOffset) "
        + "(log start offset...log end offset) of \(topicPartition)"
      return outcome
    }
    guard fetchOffset < highWatermark, maxBytes > 0 else { return outcome }
    do {
      if asFileSlice {
        let result = try log.readSlice(
          from: fetchOffset, maxBytes: maxBytes, maxOffset: highWatermark)
        outcome.records = result.bytes
        outcome.recordsFile = result.slice
      } else {
        let result = try log.read(
          from: fetchOffset, maxBytes: maxBytes, maxOffset: highWatermark)
        outcome.records = Self.batchesBelow(highWatermark, in: result.bytes)
      }
    } catch let error as StorageError where error.code == .offsetOutOfRange {
      outcome.errorCode = .offsetOutOfRange
      outcome.errorMessage = error.message
    } catch {
      logger.error("read failed: \(error)")
      outcome.errorCode = .storageError
      outcome.errorMessage = "\(error)"
    }
    return outcome
  }

  /// The prefix of `bytes` made of whole batches whose last offset is below `limit`, so no
  /// returned batch crosses the high watermark.
  static func batchesBelow(_ limit: Int64, in bytes: [UInt8]) -> [UInt8] {
    let end = bytes.withUnsafeBytes { buffer -> Int in
      var position = 0
      while position + RecordBatchHeader.byteCount <= buffer.count {
        let baseOffset = Int64(
          bigEndian: buffer.loadUnaligned(fromByteOffset: position, as: Int64.self))
        let batchLength = Int32(
          bigEndian: buffer.loadUnaligned(fromByteOffset: position + 8, as: Int32.self))
        let lastOffsetDelta = Int32(
          bigEndian: buffer.loadUnaligned(fromByteOffset: position + 23, as: Int32.self))
        let total = Int(batchLength) + RecordBatchHeader.lengthPrefixByteCount
        guard batchLength >= RecordBatchHeader.batchLengthMin,
          position + total <= buffer.count,
          baseOffset + Int64(lastOffsetDelta) < limit
        else { break }
        position += total
      }
      return position
    }
    return end == bytes.count ? bytes : Array(bytes[..<end])
  }

  /// Registers a fetch to be woken when the high watermark advances or the partition
  /// closes. Remove it with `removeFetchWakeup` when the fetch is answered.
  func addFetchWakeup(_ wakeup: FetchWakeup) {
    fetchWakeups[wakeup.id] = wakeup
    if log == nil || isClosing {
      wakeup.signal()
    }
  }

  func removeFetchWakeup(_ wakeup: FetchWakeup) {
    fetchWakeups.removeValue(forKey: wakeup.id)
  }

  /// Wakes every waiting fetch (shutdown: they answer with what they have).
  func wakeAllFetches() {
    for wakeup in fetchWakeups.values {
      wakeup.signal()
    }
  }

  // MARK: Offsets

  public func offsets() -> ReplicaOffsets? {
    guard let log, !isClosing else { return nil }
    return ReplicaOffsets(
      logStartOffset: log.logStartOffset, highWatermark: highWatermark,
      logEndOffset: log.logEndOffset)
  }

  /// The first batch below the high watermark whose newest record is at or after
  /// `timestamp`: its base offset and max timestamp, or nil when there is none. Batch
  /// granularity: the offset may name a record a little older than `timestamp`.
  public func offset(forTimestamp timestamp: Int64) throws(BrokerRequestError) -> (
    offset: Int64, timestamp: Int64
  )? {
    guard let log, !isClosing else {
      throw BrokerRequestError(
        .unknownTopicOrPartition, "partition \(topicPartition) does not exist")
    }
    var offset = log.logStartOffset
    while offset < highWatermark {
      let result: ReadResult
      do {
        result = try log.read(from: offset, maxBytes: 1 << 20, maxOffset: highWatermark)
      } catch {
        throw BrokerRequestError(.storageError, "\(error)")
      }
      guard result.nextOffset > offset else { return nil }
      var found: (Int64, Int64)?
      result.bytes.withUnsafeBytes { buffer in
        var position = 0
        while found == nil, position + RecordBatchHeader.byteCount <= buffer.count,
          let header = try? RecordBatchHeader(
            parsing: UnsafeRawBufferPointer(rebasing: buffer[position...]))
        {
          if header.maxTimestamp >= timestamp {
            found = (header.baseOffset, header.maxTimestamp)
          }
          position += header.totalByteCount
        }
      }
      if let found { return found }
      offset = result.nextOffset
    }
    return nil
  }

  // MARK: Maintenance

  /// Periodic work: expires acks=all waits past their deadline, flushes under the
  /// interval policy, and retries a failed group-commit flush.
  public func tick(nowMs: Int64) {
    guard let log, !isClosing else { return }
    if ackWaiters.contains(where: { $0.deadlineMs <= nowMs }) {
      // Deadlines differ per request, so expired waiters need not be at the front.
      ackWaiters.removeAll { waiter in
        guard waiter.deadlineMs <= nowMs else { return false }
        waiter.commitWait.resolve(
          BrokerRequestError(
            .requestTimedOut,
            "offset \(waiter.requiredOffset - 1) was appended but not committed in time"))
        return true
      }
    }
    guard !log.isFlushInFlight, log.durableEndOffset < log.logEndOffset else { return }
    switch flushPolicy {
    case .groupCommit:
      startFlushIfIdle()
    case .interval(let intervalMs):
      if nowMs - lastFlushStartMs >= intervalMs {
        startFlushIfIdle()
      }
    }
  }

  /// Deletes segments past the topic's retention (now, or right after the in-flight flush,
  /// which holds descriptors retention may close).
  public func applyRetention(nowMs: Int64) {
    guard let log, !isClosing else { return }
    if log.isFlushInFlight {
      pendingRetentionNowMs = nowMs
    } else {
      runRetention(nowMs: nowMs)
    }
  }

  private func runRetention(nowMs: Int64) {
    guard let log else { return }
    do {
      let result = try log.applyRetention(nowMs: nowMs)
      if !result.deletedSegments.isEmpty {
        logger.info(
          "retention deleted segments",
          metadata: [
            "segments": "\(result.deletedSegments.count)", "bytes": "\(result.deletedBytes)",
            "logStartOffset": "\(result.logStartOffset)",
          ])
      }
      // Retention of an expired active segment rolls it, which syncs it.
      advanceHighWatermark(to: min(log.durableEndOffset, log.logEndOffset))
    } catch {
      logger.error("retention failed: \(error)")
    }
  }

  // MARK: Closing

  /// Stops the replica: waits for the in-flight flush, then closes the log (flushing it).
  /// On `.shutdown` waiting producers complete normally once the final flush succeeds; on
  /// `.deleted` they and any later request get UNKNOWN_TOPIC_OR_PARTITION.
  public func close(_ reason: ReplicaCloseReason) async {
    guard !isClosing else { return }
    closeReason = reason
    for wakeup in fetchWakeups.values {
      wakeup.signal()
    }
    while log?.isFlushInFlight == true {
      await withCheckedContinuation { flushIdleWaiters.append($0) }
    }
    guard let log else { return }
    switch reason {
    case .deleted:
      failAckWaiters(
        below: Int64.max,
        BrokerRequestError(
          .unknownTopicOrPartition, "topic \(topicPartition.topic) was deleted"))
      do {
        try log.close()
      } catch {
        logger.warning("closing the log of a deleted partition failed: \(error)")
      }
    case .shutdown:
      do {
        try log.close()
        advanceHighWatermark(to: log.durableEndOffset)
        logger.debug("closed", metadata: ["logEndOffset": "\(log.durableEndOffset)"])
      } catch {
        logger.error("final flush failed: \(error)")
      }
      failAckWaiters(
        below: Int64.max,
        BrokerRequestError(.storageError, "the broker stopped before the batch was committed"))
    }
    self.log = nil
  }
}
