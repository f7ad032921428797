import Logging
import NIOConcurrencyHelpers
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

  /// True once `outcome()` no longer waits: committed, failed, or never waiting.
  public var isSettled: Bool { commitWait?.isResolved ?? true }

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
  /// The partition's leader and epoch as this replica knows them (fetch responses carry
  /// it so a client can go to the right broker).
  public var currentLeader: FetchResponse.LeaderIdAndEpoch = .unknown

  /// Record bytes returned, in either form.
  public var recordByteCount: Int { recordsFile?.byteCount ?? records.count }

  public static func == (left: ReadOutcome, right: ReadOutcome) -> Bool {
    left.errorCode == right.errorCode && left.errorMessage == right.errorMessage
      && left.highWatermark == right.highWatermark
      && left.logStartOffset == right.logStartOffset && left.logEndOffset == right.logEndOffset
      && left.records == right.records && left.recordsFile === right.recordsFile
      && left.currentLeader == right.currentLeader
  }

  static func failure(
    _ code: ErrorCode, _ message: String?,
    currentLeader: FetchResponse.LeaderIdAndEpoch = .unknown
  ) -> ReadOutcome {
    ReadOutcome(
      errorCode: code, errorMessage: message, highWatermark: -1, logStartOffset: -1,
      logEndOffset: -1, records: [], currentLeader: currentLeader)
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
/// keep being written. When it finishes, the durable end offset moves to the log end offset
/// captured when the flush began, the high watermark is recomputed, acks=all producers
/// below it complete, and waiting fetches wake. Another flush starts right away if more was
/// appended meanwhile, so flushes run back to back under load and each covers everything
/// that arrived during the previous one.
///
/// Standalone (`localBrokerID` nil), the replica is always the leader with epoch 0, the ISR
/// is this broker alone and the high watermark is the durable end offset. In a cluster the
/// metadata image sets the role with `applyLeadership`:
/// - a leader takes produces, answers its followers' fetches (`readForFollower`), whose
///   fetch offsets are their durable log end offsets, and sets the high watermark to the
///   smallest durable end offset over the ISR; it proposes ISR changes
///   (`isrChangeProposal`);
/// - a follower copies the leader's log (`appendAsFollower`, which returns once the data is
///   fsynced), truncates where its log diverged (`truncateForDivergence`) and takes the
///   leader's high watermark, capped by its own log end offset.
/// Both keep the leader-epoch cache and the idempotent producers' state in step with the
/// log, so either can become leader.
public actor PartitionReplica {
  public nonisolated let topicPartition: TopicPartition
  /// This broker's id in a cluster; nil for a standalone broker.
  public nonisolated let localBrokerID: Int32?

  private var log: PartitionLog?
  /// Set when closing starts; no appends or reads are served from then on.
  private var closeReason: ReplicaCloseReason?
  private var isClosing: Bool { closeReason != nil }
  /// Offsets below it are visible to consumers and acknowledged to acks=all producers.
  private var highWatermark: Int64
  private let flushPolicy: FlushPolicy
  private let threadPool: NIOThreadPool
  private let logger: Logger
  /// Told about every write that fails for lack of space (the broker reacts to a full disk).
  private let diskSpace: DiskSpaceMonitor?

  // Leadership.
  public private(set) var role: ReplicaRole
  /// The current leader epoch, readable without the actor (ListOffsets answers it).
  private nonisolated let currentLeaderEpoch: NIOLockedValueBox<Int32>
  /// The effective `min.insync.replicas`.
  public private(set) var minInsyncReplicas: Int
  /// The last leadership applied (nil: none yet, or standalone).
  private var appliedLeadership: PartitionLeadership?
  private var partitionEpoch: Int32 = -1
  private var isr: [Int32] = []
  /// Set while an ISR change is proposed and not yet answered; the high watermark counts
  /// the union of both sets meanwhile (the "maximal" ISR).
  private var inFlightIsr: [Int32]?
  /// Where this leader's epoch starts: a replica joins the ISR only once past it.
  private var leaderEpochStartOffset: Int64 = 0
  private var isLeaderSessionValid = true
  private var followerProgress: [Int32: FollowerProgress] = [:]
  /// The leader's high watermark as the last fetch response carried it (follower).
  private var leaderHighWatermark: Int64 = 0

  private var producerState: ProducerStateTable

  private struct AckWaiter {
    /// The waiter completes once the high watermark reaches this offset.
    var requiredOffset: Int64
    var deadlineMs: Int64
    var commitWait: CommitWait
  }

  /// What the leader knows about one follower.
  private struct FollowerProgress {
    /// The follower's last fetch offset: its durable log end offset (-1: no fetch yet).
    var logEndOffset: Int64 = -1
    var lastCaughtUpTimeMs: Int64
    var lastFetchTimeMs: Int64 = -1
    /// The leader's log end offset when the previous fetch arrived.
    var leaderEndOffsetAtLastFetch: Int64 = -1
  }

  /// A follower append (or a leader stepping down) waiting for its data to be fsynced.
  private struct DurableWaiter {
    var offset: Int64
    var continuation: CheckedContinuation<StorageError?, Never>
  }

  /// Leader append → follower durable, per batch and follower (sbctl, benchmarks).
  private var replicationLag = ReplicationLagTracker()

  /// acks=all producers waiting for the high watermark, in offset order.
  private var ackWaiters: [AckWaiter] = []
  private var durableWaiters: [DurableWaiter] = []
  /// Fetches waiting for news of this partition: woken when the high watermark advances,
  /// the log end offset of a leader grows (followers long-poll for it), the role changes or
  /// the partition closes. Registered without an actor hop.
  nonisolated let fetchWaiters: FetchWaiters
  /// Callers waiting for the in-flight flush to finish (close, truncation).
  private var flushIdleWaiters: [CheckedContinuation<Void, Never>] = []
  /// Retention requested while a flush held the log's descriptors; runs after it.
  private var pendingRetentionNowMs: Int64?
  private var lastFlushStartMs: Int64
  private var consecutiveFlushFailures = 0

  /// Opens (and recovers) the partition's log; blocking, so call it off the cooperative
  /// pool (`ReplicaManager` uses the thread pool). Flushes once so that everything the
  /// recovered log holds is durable before it becomes visible, and rebuilds the idempotent
  /// producers' state from the log's batch headers.
  ///
  /// With `localBrokerID` the replica starts as a leaderless follower until
  /// `applyLeadership`; without, it is a standalone leader.
  init(
    topicPartition: TopicPartition, directory: String, logConfig: LogConfig,
    minInsyncReplicas: Int, fileSystem: any LogFileSystem, threadPool: NIOThreadPool,
    logger: Logger, localBrokerID: Int32? = nil,
    producerIdExpirationMs: Int64 = ProducerStateTable.producerIdExpirationMsDefault,
    diskSpace: DiskSpaceMonitor? = nil
  ) throws {
    let log = try PartitionLog(directory: directory, config: logConfig, fileSystem: fileSystem)
    try log.flush()
    var producerState = try ProducerStateTable(producerIdExpirationMs: producerIdExpirationMs)
    try log.forEachBatchHeader { header in
      try producerState.replay(CollectionOfOne(header))
    }
    self.producerState = producerState
    self.topicPartition = topicPartition
    self.fetchWaiters = FetchWaiters(topicPartition)
    self.localBrokerID = localBrokerID
    self.minInsyncReplicas = minInsyncReplicas
    self.log = log
    // Standalone, everything durable is committed. In a cluster the local log may hold
    // records the ISR never had: the high watermark starts at the log start and moves up
    // as the leader's followers report (or the leader's response says, on a follower).
    self.highWatermark = localBrokerID == nil ? log.durableEndOffset : log.logStartOffset
    self.flushPolicy = logConfig.flushPolicy
    self.threadPool = threadPool
    self.diskSpace = diskSpace
    if localBrokerID == nil {
      role = .standaloneLeader
      currentLeaderEpoch = NIOLockedValueBox(0)
    } else {
      role = .follower(leader: -1, epoch: -1)
      currentLeaderEpoch = NIOLockedValueBox(-1)
    }
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

  /// The current leader epoch (0 standalone, -1 before the first leadership).
  public nonisolated var leaderEpoch: Int32 { currentLeaderEpoch.withLockedValue { $0 } }

  /// The leader as fetch responses name it.
  private var currentLeader: FetchResponse.LeaderIdAndEpoch {
    switch role {
    case .standaloneLeader:
      return FetchResponse.LeaderIdAndEpoch(leaderId: localBrokerID ?? -1, leaderEpoch: 0)
    case .leader(let epoch):
      return FetchResponse.LeaderIdAndEpoch(leaderId: localBrokerID ?? -1, leaderEpoch: epoch)
    case .follower(let leader, let epoch):
      return FetchResponse.LeaderIdAndEpoch(leaderId: leader, leaderEpoch: epoch)
    }
  }

  private var isrCount: Int { localBrokerID == nil ? 1 : isr.count }

  // MARK: Leadership

  /// Applies the partition's leadership from the metadata image. Idempotent; a leadership
  /// with an older leader epoch, or the same leader epoch and an older partition epoch, is
  /// ignored. Ignored on a standalone replica.
  ///
  /// Becoming leader records the epoch in the leader-epoch cache at the log end offset (one
  /// checkpoint write per leadership, not per append) and resets the followers' progress
  /// (ISR members count as caught up now). Becoming follower fails waiting acks=all
  /// producers with NOT_LEADER_OR_FOLLOWER, refuses produces from then on, and returns once
  /// everything this replica wrote as leader is fsynced, so its first fetch offset is
  /// durable.
  public func applyLeadership(_ leadership: PartitionLeadership, nowMs: Int64) async {
    guard let localBrokerID, let log, !isClosing else { return }
    if let applied = appliedLeadership {
      if leadership == applied { return }
      if leadership.leaderEpoch < applied.leaderEpoch
        || (leadership.leaderEpoch == applied.leaderEpoch
          && leadership.partitionEpoch < applied.partitionEpoch)
      {
        logger.debug(
          "ignored stale leadership",
          metadata: [
            "leaderEpoch": "\(leadership.leaderEpoch)",
            "partitionEpoch": "\(leadership.partitionEpoch)",
          ])
        return
      }
    }
    let wasLeader: Bool
    if case .leader = role { wasLeader = true } else { wasLeader = false }
    let isSameLeaderEpoch = appliedLeadership?.leaderEpoch == leadership.leaderEpoch
    if leadership.leader == localBrokerID && !(wasLeader && isSameLeaderEpoch) {
      // Before anything changes: if the checkpoint cannot be written this replica does not
      // lead (a leader without its epoch in the cache would misjudge divergence), and the
      // next application of the same leadership tries again.
      do {
        try log.leaderEpochCache.assign(
          epoch: leadership.leaderEpoch, startOffset: log.logEndOffset)
      } catch {
        noteWriteFailure(error, while: "recording leader epoch \(leadership.leaderEpoch)")
        logger.error(
          "cannot become leader: recording the leader epoch failed",
          metadata: ["leaderEpoch": "\(leadership.leaderEpoch)", "error": "\(error)"])
        return
      }
    }
    if leadership.partitionEpoch > partitionEpoch || !isSameLeaderEpoch {
      inFlightIsr = nil
    }
    appliedLeadership = leadership
    partitionEpoch = leadership.partitionEpoch
    isr = leadership.isr
    minInsyncReplicas = leadership.minInsyncReplicas
    currentLeaderEpoch.withLockedValue { $0 = leadership.leaderEpoch }
    if leadership.leader == localBrokerID {
      if !(wasLeader && isSameLeaderEpoch) {
        role = .leader(epoch: leadership.leaderEpoch)
        leaderEpochStartOffset = log.logEndOffset
        followerProgress = [:]
        replicationLag.reset()
        for replica in leadership.replicas where replica != localBrokerID {
          followerProgress[replica] = FollowerProgress(
            lastCaughtUpTimeMs: leadership.isr.contains(replica) ? nowMs : -1)
        }
        logger.info(
          "became leader",
          metadata: [
            "leaderEpoch": "\(leadership.leaderEpoch)", "isr": "\(leadership.isr)",
            "logEndOffset": "\(log.logEndOffset)", "highWatermark": "\(highWatermark)",
          ])
      } else {
        for replica in leadership.replicas
        where replica != localBrokerID && followerProgress[replica] == nil {
          followerProgress[replica] = FollowerProgress(lastCaughtUpTimeMs: -1)
        }
      }
      updateHighWatermark()
      return
    }
    role = .follower(leader: leadership.leader, epoch: leadership.leaderEpoch)
    followerProgress = [:]
    inFlightIsr = nil
    leaderHighWatermark = highWatermark
    if wasLeader || !isSameLeaderEpoch {
      logger.info(
        "became follower",
        metadata: [
          "leader": "\(leadership.leader)", "leaderEpoch": "\(leadership.leaderEpoch)",
          "logEndOffset": "\(log.logEndOffset)",
        ])
    }
    if wasLeader {
      failAckWaiters(
        below: Int64.max,
        BrokerRequestError(
          .notLeaderOrFollower,
          "leadership of \(topicPartition) moved to broker \(leadership.leader) before the "
            + "batch was committed"))
      // Consumers waiting here get NOT_LEADER_OR_FOLLOWER and go to the new leader.
      fetchWaiters.signalAll()
      if let failure = await waitUntilDurable(log.logEndOffset) {
        logger.error("flush after stepping down failed: \(failure)")
      }
    }
  }

  /// Whether this broker's session with the controller is valid. While it is not, a leader
  /// refuses produces with NOT_LEADER_OR_FOLLOWER and proposes no ISR changes: the
  /// controller may already have moved the leadership.
  public func setLeaderSessionValid(_ valid: Bool) {
    guard valid != isLeaderSessionValid else { return }
    isLeaderSessionValid = valid
    logger.info(valid ? "leader session valid again" : "leader session expired: refusing produces")
  }

  // MARK: Produce

  /// Appends producer batches (storage validates them, CRC included) and returns once they
  /// are written, so appends land in the order of the calls. For acks `0` and `1` that is
  /// the answer; for `-1` the returned `PendingAppend` waits until the high watermark passes
  /// the last appended offset (fsynced on every ISR member). `nowMs` and `timeoutMs` bound
  /// that wait (REQUEST_TIMED_OUT; the data stays appended).
  ///
  /// Refused with NOT_LEADER_OR_FOLLOWER unless this replica leads (with a valid session),
  /// and with NOT_ENOUGH_REPLICAS for acks=-1 when the ISR is smaller than
  /// `min.insync.replicas`. Idempotent batches are checked against the producer state: a
  /// retried batch gets its original base offset without being appended again.
  public func append(_ records: [UInt8], acks: Int16, timeoutMs: Int64, nowMs: Int64)
    -> PendingAppend
  {
    guard let log, !isClosing else { return .done(unknownPartition()) }
    let epoch: Int32
    switch role {
    case .standaloneLeader:
      epoch = 0
    case .leader(let leaderEpoch):
      guard isLeaderSessionValid else {
        return .done(
          .failure(
            .notLeaderOrFollower,
            "broker \(localBrokerID ?? -1) lost its controller session and may no longer "
              + "lead \(topicPartition)"))
      }
      epoch = leaderEpoch
    case .follower(let leader, _):
      return .done(
        .failure(
          .notLeaderOrFollower,
          "broker \(localBrokerID ?? -1) is not the leader of \(topicPartition) "
            + (leader >= 0 ? "(broker \(leader) is)" : "(it has no leader)")))
    }
    if acks == -1 && isrCount < minInsyncReplicas {
      return .done(
        .failure(
          .notEnoughReplicas,
          "min.insync.replicas is \(minInsyncReplicas) but the in-sync replica set has "
            + "\(isrCount) replica\(isrCount == 1 ? "" : "s")",
          logStartOffset: log.logStartOffset))
    }
    let headers: [RecordBatchHeader]
    switch Self.batchHeaders(records) {
    case .success(let parsed):
      headers = parsed
    case .failure(let reason):
      return .done(
        .failure(.corruptMessage, reason.description, logStartOffset: log.logStartOffset))
    }
    switch producerVerdict(headers, logEndOffset: log.logEndOffset) {
    case .append:
      break
    case .duplicate(let firstOffset, let lastOffset):
      let written = AppendOutcome(
        errorCode: .none, errorMessage: nil, baseOffset: firstOffset,
        logStartOffset: log.logStartOffset)
      return ackWait(
        written, lastOffset: lastOffset, acks: acks, timeoutMs: timeoutMs, nowMs: nowMs)
    case .refused(let code, let message):
      return .done(.failure(code, message, logStartOffset: log.logStartOffset))
    }
    let result: AppendResult
    do {
      result = try log.append(records, partitionLeaderEpoch: epoch)
    } catch {
      return .done(appendFailure(error, logStartOffset: log.logStartOffset))
    }
    var batchOffset = result.baseOffset
    for header in headers {
      producerState.record(header, firstOffset: batchOffset)
      batchOffset += Int64(header.lastOffsetDelta) + 1
    }
    switch flushPolicy {
    case .groupCommit:
      startFlushIfIdle()
    case .interval:
      // Durability is left to the interval: the write alone counts on this replica.
      updateHighWatermark()
    }
    if case .leader = role {
      replicationLag.recordAppend(endOffset: result.lastOffset + 1, nowNs: MonotonicClock.nowNs())
      // Followers long-poll for new data, not for a high watermark move.
      fetchWaiters.signalFollowerFetches()
    }
    let written = AppendOutcome(
      errorCode: .none, errorMessage: nil, baseOffset: result.baseOffset,
      logStartOffset: log.logStartOffset)
    return ackWait(
      written, lastOffset: result.lastOffset, acks: acks, timeoutMs: timeoutMs, nowMs: nowMs)
  }

  /// The answer to a written (or duplicate) batch ending at `lastOffset`: at once, or a
  /// wait for the high watermark (acks=all).
  private func ackWait(
    _ written: AppendOutcome, lastOffset: Int64, acks: Int16, timeoutMs: Int64, nowMs: Int64
  ) -> PendingAppend {
    guard acks == -1 && highWatermark <= lastOffset else { return .done(written) }
    // Registered in this actor turn, so no commit or failure can be missed.
    let commitWait = CommitWait()
    let waiter = AckWaiter(
      requiredOffset: lastOffset + 1, deadlineMs: nowMs + max(timeoutMs, 0),
      commitWait: commitWait)
    // A duplicate's original may sit before later waiters: keep the offset order.
    if let later = ackWaiters.firstIndex(where: { $0.requiredOffset > waiter.requiredOffset }) {
      ackWaiters.insert(waiter, at: later)
    } else {
      ackWaiters.append(waiter)
    }
    return PendingAppend(written: written, commitWait: commitWait)
  }

  private enum ProducerVerdict {
    case append
    case duplicate(firstOffset: Int64, lastOffset: Int64)
    case refused(ErrorCode, String)
  }

  /// The idempotence check of every batch of one produce, as if each earlier one had been
  /// appended. A retried batch is answered as a duplicate only when it is the whole produce
  /// (Kafka producers send one batch per partition).
  private func producerVerdict(_ headers: [RecordBatchHeader], logEndOffset: Int64)
    -> ProducerVerdict
  {
    guard headers.contains(where: { $0.producerId >= 0 }) else { return .append }
    var scratch = producerState
    var nextOffset = logEndOffset
    for (index, header) in headers.enumerated() {
      let producer = "producer \(header.producerId) (epoch \(header.producerEpoch))"
      switch scratch.check(header) {
      case .append:
        break
      case .duplicate(let firstOffset, let lastOffset):
        guard headers.count == 1 else {
          return .refused(
            .duplicateSequenceNumber,
            "\(producer) resent sequence \(header.baseSequence) inside a produce of "
              + "\(headers.count) batches")
        }
        return .duplicate(firstOffset: firstOffset, lastOffset: lastOffset)
      case .outOfOrder(let expected):
        return .refused(
          .outOfOrderSequenceNumber,
          "\(producer) sent sequence \(header.baseSequence) to \(topicPartition), expected "
            + "\(expected)")
      case .fencedEpoch:
        return .refused(
          .invalidProducerEpoch,
          "\(producer) is fenced on \(topicPartition): a newer epoch of it has written")
      case .unknownProducer:
        return .refused(
          .unknownProducerId,
          "\(topicPartition) has no state for \(producer) and its batch starts at sequence "
            + "\(header.baseSequence), not 0")
      case .invalidBatch(let reason):
        return .refused(.corruptMessage, reason)
      }
      if index < headers.count - 1 {
        scratch.record(header, firstOffset: nextOffset)
      }
      nextOffset += Int64(header.lastOffsetDelta) + 1
    }
    return .append
  }

  /// The headers of the concatenated batches in `bytes`, or why they cannot be read.
  /// Only the framing is checked here; the log validates contents (CRC, records) on append.
  static func batchHeaders(_ bytes: [UInt8]) -> Result<[RecordBatchHeader], BatchFramingError> {
    bytes.withUnsafeBytes { buffer in
      var headers: [RecordBatchHeader] = []
      var position = 0
      while position < buffer.count {
        guard
          let header = try? RecordBatchHeader(
            parsing: UnsafeRawBufferPointer(rebasing: buffer[position...])),
          header.batchLength >= RecordBatchHeader.batchLengthMin,
          header.totalByteCount <= buffer.count - position
        else {
          return .failure(BatchFramingError("no valid record batch header at byte \(position)"))
        }
        guard header.lastOffsetDelta >= 0 else {
          return .failure(
            BatchFramingError(
              "batch at byte \(position) has last offset delta \(header.lastOffsetDelta)"))
        }
        headers.append(header)
        position += header.totalByteCount
      }
      return .success(headers)
    }
  }

  struct BatchFramingError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
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
    case .noSpace:
      noteWriteFailure(error, while: "appending to \(topicPartition)")
      logger.error("append failed: the data disk is full", metadata: ["error": "\(error)"])
      return .failure(
        .storageError,
        "the data disk of broker \(localBrokerID ?? 0) is full; nothing was appended: "
          + error.message, logStartOffset: logStartOffset)
    default:
      logger.error("append failed: \(error)")
      return .failure(.storageError, error.message, logStartOffset: logStartOffset)
    }
  }

  /// Tells the broker's disk monitor about a failed write (it reacts to a full disk).
  private func noteWriteFailure(_ error: any Error, while action: String) {
    diskSpace?.noteWriteFailure(error, while: action)
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
      noteWriteFailure(failure, while: "flushing \(topicPartition)")
      consecutiveFlushFailures += 1
      logger.error(
        "flush failed; acks=all producers up to offset \(ticket.endOffset) get STORAGE_ERROR",
        metadata: ["error": "\(failure)", "failures": "\(consecutiveFlushFailures)"])
      failAckWaiters(
        below: ticket.endOffset,
        BrokerRequestError(.storageError, "flush failed: \(failure.message)"))
      resumeDurableWaiters(failure: failure)
      if case .follower = role {
        dropUndurableTail(after: failure)
      }
    } else {
      if consecutiveFlushFailures > 0 {
        logger.info("flush succeeded again after \(consecutiveFlushFailures) failures")
      }
      consecutiveFlushFailures = 0
      updateHighWatermark()
      resumeDurableWaiters(failure: nil)
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

  /// A follower whose flush failed removes what it could not make durable: its next fetch
  /// offset must be durable (the leader counts it so), and the leader sends it again.
  private func dropUndurableTail(after failure: StorageError) {
    guard let log, log.durableEndOffset < log.logEndOffset else { return }
    do {
      let newEnd = try log.truncate(to: log.durableEndOffset)
      producerStateTruncated(to: newEnd)
      logger.warning(
        "dropped the replicated data that could not be flushed; it is fetched again",
        metadata: ["logEndOffset": "\(newEnd)", "error": "\(failure)"])
    } catch {
      logger.error("dropping the unflushed tail failed (the log reopens to recover): \(error)")
    }
  }

  /// Returns once everything below `offset` is fsynced (at once under the interval policy,
  /// which leaves durability to the interval), or the flush failure.
  private func waitUntilDurable(_ offset: Int64) async -> StorageError? {
    guard let log else { return StorageError(.closed, "partition \(topicPartition) is closed") }
    guard flushPolicy == .groupCommit, log.durableEndOffset < offset else { return nil }
    startFlushIfIdle()
    return await withCheckedContinuation { continuation in
      durableWaiters.append(DurableWaiter(offset: offset, continuation: continuation))
    }
  }

  /// Resumes the durable waiters the flush satisfied (all of them, with the error, after a
  /// failure).
  private func resumeDurableWaiters(failure: StorageError?) {
    guard !durableWaiters.isEmpty else { return }
    let durable = log?.durableEndOffset ?? -1
    var remaining: [DurableWaiter] = []
    for waiter in durableWaiters {
      if let failure {
        waiter.continuation.resume(returning: failure)
      } else if waiter.offset <= durable {
        waiter.continuation.resume(returning: nil)
      } else {
        remaining.append(waiter)
      }
    }
    durableWaiters = remaining
  }

  /// Waits for the in-flight flush (it holds descriptors truncation may close).
  private func waitForFlushIdle() async {
    while log?.isFlushInFlight == true {
      await withCheckedContinuation { flushIdleWaiters.append($0) }
    }
  }

  // MARK: High watermark

  /// Recomputes the high watermark of a leader: its own end offset (the durable one under
  /// group commit) capped by the durable end offset of every follower in the maximal ISR.
  /// Followers take theirs from the leader instead.
  private func updateHighWatermark() {
    guard let log else { return }
    let localEnd = flushPolicy == .groupCommit ? log.durableEndOffset : log.logEndOffset
    switch role {
    case .standaloneLeader:
      advanceHighWatermark(to: localEnd)
    case .leader:
      var candidate = localEnd
      for member in maximalIsr where member != localBrokerID {
        candidate = min(candidate, followerProgress[member]?.logEndOffset ?? -1)
      }
      advanceHighWatermark(to: candidate)
    case .follower:
      break
    }
  }

  /// The ISR the high watermark waits for: while a change is in flight, both the old and
  /// the proposed members (a shrink must not commit before the controller accepted it).
  private var maximalIsr: [Int32] {
    guard let inFlightIsr else { return isr }
    return isr + inFlightIsr.filter { !isr.contains($0) }
  }

  private func advanceHighWatermark(to offset: Int64) {
    // A deleted partition commits nothing more: its waiters get UNKNOWN_TOPIC_OR_PARTITION.
    guard offset > highWatermark, closeReason != .deleted else { return }
    highWatermark = offset
    // Committed, but by fewer replicas than the topic asks for (the ISR shrank after the
    // append): Kafka's retriable answer, which an idempotent retry turns into success.
    let shortfall: BrokerRequestError? =
      localBrokerID != nil && isr.count < minInsyncReplicas
      ? BrokerRequestError(
        .notEnoughReplicasAfterAppend,
        "committed by an in-sync replica set of \(isr.count), below min.insync.replicas "
          + "\(minInsyncReplicas)")
      : nil
    var completed = 0
    while completed < ackWaiters.count && ackWaiters[completed].requiredOffset <= offset {
      ackWaiters[completed].commitWait.resolve(shortfall)
      completed += 1
    }
    ackWaiters.removeFirst(completed)
    // Consumers wait for the high watermark; a follower's long-poll waits for data (its
    // answer carries the high watermark), else every report of one follower would make the
    // leader re-read all partitions of the other's waiting fetch for nothing.
    fetchWaiters.signalConsumerFetches()
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

  // MARK: Leader: follower fetches

  /// Answers one partition of a follower's Fetch: checks the follower's epochs, notes its
  /// fetch offset as its durable log end offset (and whether it is caught up, by Kafka's
  /// rule), recomputes the high watermark, and returns batches from the fetch offset up to
  /// the log end offset (not just the high watermark: followers copy uncommitted data).
  ///
  /// When the follower's last fetched epoch does not end where it says on this leader (its
  /// log diverged), the answer is `divergingEpoch` = that epoch's end offset here and no
  /// records; the follower truncates and fetches again.
  public func readForFollower(
    _ request: FollowerFetch, nowMs: Int64, asFileSlice: Bool = false
  ) -> FollowerReadOutcome {
    guard let log, !isClosing else {
      return .failure(.unknownTopicOrPartition, "partition \(topicPartition) does not exist")
    }
    guard case .leader(let epoch) = role, let localBrokerID else {
      var outcome = FollowerReadOutcome.failure(
        .notLeaderOrFollower,
        "broker \(localBrokerID ?? -1) does not lead \(topicPartition) in a cluster",
        leaderEpoch: currentLeader.leaderEpoch)
      outcome.leaderID = currentLeader.leaderId
      return outcome
    }
    if request.currentLeaderEpoch >= 0 && request.currentLeaderEpoch < epoch {
      return .failure(
        .fencedLeaderEpoch,
        "fetch for leader epoch \(request.currentLeaderEpoch) of \(topicPartition); the "
          + "current epoch is \(epoch)", leaderEpoch: epoch, leaderID: localBrokerID)
    }
    if request.currentLeaderEpoch > epoch {
      return .failure(
        .unknownLeaderEpoch,
        "fetch for leader epoch \(request.currentLeaderEpoch) of \(topicPartition); this "
          + "leader is at epoch \(epoch)", leaderEpoch: epoch, leaderID: localBrokerID)
    }
    guard request.replicaID != localBrokerID, followerProgress[request.replicaID] != nil else {
      return .failure(
        .notLeaderOrFollower,
        "broker \(request.replicaID) is not a follower of \(topicPartition)", leaderEpoch: epoch,
        leaderID: localBrokerID)
    }
    var outcome = FollowerReadOutcome(
      errorCode: .none, errorMessage: nil, highWatermark: highWatermark,
      logStartOffset: log.logStartOffset, logEndOffset: log.logEndOffset, divergingEpoch: nil,
      records: [], recordsFile: nil, leaderEpoch: epoch, leaderID: localBrokerID)
    if request.lastFetchedEpoch >= 0 {
      let end = log.leaderEpochCache.endOffset(
        for: request.lastFetchedEpoch, logEndOffset: log.logEndOffset)
      if end.isUndefined {
        outcome.errorCode = .unknownLeaderEpoch
        outcome.errorMessage =
          "the follower's last fetched epoch \(request.lastFetchedEpoch) is newer than every "
          + "epoch the leader of \(topicPartition) knows"
        return outcome
      }
      if end.epoch < request.lastFetchedEpoch || end.endOffset < request.fetchOffset {
        outcome.divergingEpoch = (epoch: end.epoch, endOffset: end.endOffset)
        return outcome
      }
    }
    guard request.fetchOffset >= log.logStartOffset && request.fetchOffset <= log.logEndOffset
    else {
      outcome.errorCode = .offsetOutOfRange
      outcome.errorMessage =
        "follower offset \(request.fetchOffset) is outside \(log.logStartOffset)..."
        + "\(log.logEndOffset) (log start offset...log end offset) of \(topicPartition)"
      return outcome
    }
    noteFollowerFetch(request.replicaID, fetchOffset: request.fetchOffset, nowMs: nowMs)
    updateHighWatermark()
    outcome.highWatermark = highWatermark
    guard request.fetchOffset < log.logEndOffset, request.maxBytes > 0 else { return outcome }
    do {
      if asFileSlice {
        let result = try log.readSlice(from: request.fetchOffset, maxBytes: request.maxBytes)
        outcome.records = result.bytes
        outcome.recordsFile = result.slice
      } else {
        outcome.records = try log.read(from: request.fetchOffset, maxBytes: request.maxBytes)
          .bytes
      }
    } catch let error as StorageError where error.code == .offsetOutOfRange {
      outcome.errorCode = .offsetOutOfRange
      outcome.errorMessage = error.message
    } catch {
      logger.error("read for follower \(request.replicaID) failed: \(error)")
      outcome.errorCode = .storageError
      outcome.errorMessage = "\(error)"
    }
    return outcome
  }

  /// Kafka's caught-up rule: a follower is caught up at this fetch when it asks for the
  /// leader's log end offset (or beyond), and was caught up at the previous fetch's time
  /// when it now asks for at least what the log end offset was then.
  private func noteFollowerFetch(_ replicaID: Int32, fetchOffset: Int64, nowMs: Int64) {
    guard let log, var progress = followerProgress[replicaID] else { return }
    let leaderEnd = log.logEndOffset
    if fetchOffset >= leaderEnd {
      progress.lastCaughtUpTimeMs = max(progress.lastCaughtUpTimeMs, nowMs)
    } else if progress.lastFetchTimeMs >= 0 && fetchOffset >= progress.leaderEndOffsetAtLastFetch {
      progress.lastCaughtUpTimeMs = max(progress.lastCaughtUpTimeMs, progress.lastFetchTimeMs)
    }
    progress.logEndOffset = fetchOffset
    progress.lastFetchTimeMs = nowMs
    replicationLag.recordFetch(
      follower: replicaID, fetchOffset: fetchOffset, nowNs: MonotonicClock.nowNs())
    progress.leaderEndOffsetAtLastFetch = leaderEnd
    followerProgress[replicaID] = progress
  }

  // MARK: Leader: ISR changes

  /// The ISR change this leader wants now, or nil: followers not caught up for more than
  /// `replicaLagTimeMaxMs` leave, replicas whose fetch offset reached both the high
  /// watermark and the start of this leader's epoch join. A returned proposal is in flight
  /// until `isrChangeCompleted`; no other is made meanwhile.
  public func isrChangeProposal(nowMs: Int64, replicaLagTimeMaxMs: Int64) -> IsrChangeProposal? {
    guard log != nil, !isClosing, case .leader(let epoch) = role, isLeaderSessionValid,
      inFlightIsr == nil, let localBrokerID, let leadership = appliedLeadership
    else { return nil }
    var newIsr: [Int32] = []
    let candidates = leadership.replicas + isr.filter { !leadership.replicas.contains($0) }
    for replica in candidates {
      if replica == localBrokerID {
        newIsr.append(replica)
        continue
      }
      guard let progress = followerProgress[replica] else { continue }
      if isr.contains(replica) {
        if nowMs - progress.lastCaughtUpTimeMs <= replicaLagTimeMaxMs {
          newIsr.append(replica)
        }
      } else if progress.logEndOffset >= highWatermark
        && progress.logEndOffset >= leaderEpochStartOffset
      {
        newIsr.append(replica)
      }
    }
    guard Set(newIsr) != Set(isr) else { return nil }
    inFlightIsr = newIsr
    logger.info(
      "proposing an ISR change", metadata: ["isr": "\(isr)", "proposed": "\(newIsr)"])
    return IsrChangeProposal(
      topicID: leadership.topicID, partition: topicPartition.partition, leaderEpoch: epoch,
      partitionEpoch: partitionEpoch, newIsr: newIsr)
  }

  /// The controller's answer to the proposal in flight: on success (`error` NONE with the
  /// committed ISR and partition epoch) the ISR is adopted; otherwise the proposal is
  /// dropped and a later `isrChangeProposal` may try again.
  public func isrChangeCompleted(newIsr: [Int32]?, partitionEpoch: Int32?, error: ErrorCode) {
    inFlightIsr = nil
    if error == .none, let newIsr, let newEpoch = partitionEpoch, newEpoch >= self.partitionEpoch {
      isr = newIsr
      self.partitionEpoch = newEpoch
      appliedLeadership?.isr = newIsr
      appliedLeadership?.partitionEpoch = newEpoch
      logger.info("ISR changed", metadata: ["isr": "\(newIsr)", "partitionEpoch": "\(newEpoch)"])
    } else if error != .none {
      logger.warning("ISR change refused", metadata: ["error": "\(error)"])
    }
    updateHighWatermark()
  }

  // MARK: Follower

  /// Where this follower fetches next: its log end offset and the epoch of its newest
  /// batch. The leader counts the fetch offset as durable, so it is one: `appendAsFollower`
  /// returns only once fsynced, and right after stepping down, while what this replica
  /// wrote as leader is still being flushed, the answer is nil (ask again on the next
  /// round). Nil too unless this replica follows a leader.
  public func followerFetchState() -> FollowerFetchState? {
    guard let log, !isClosing, case .follower(let leader, let epoch) = role, leader >= 0 else {
      return nil
    }
    guard flushPolicy != .groupCommit || log.durableEndOffset >= log.logEndOffset else {
      startFlushIfIdle()
      return nil
    }
    // The epoch of the newest batch: a leader's epoch entry at the log end (it led and
    // wrote nothing) is not data the new leader can check.
    let newestBatchEpoch =
      log.leaderEpochCache.entries.last { $0.startOffset < log.logEndOffset }?.epoch ?? -1
    return FollowerFetchState(
      leader: leader, leaderEpoch: epoch, fetchOffset: log.logEndOffset,
      lastFetchedEpoch: newestBatchEpoch, logStartOffset: log.logStartOffset)
  }

  /// The log of a follower (of `leaderEpoch` when given), else the error to answer.
  private func checkFollower(of leaderEpoch: Int32?) throws(BrokerRequestError) -> PartitionLog {
    guard let log, !isClosing else {
      throw BrokerRequestError(
        .unknownTopicOrPartition, "partition \(topicPartition) does not exist")
    }
    guard case .follower(_, let epoch) = role else {
      throw BrokerRequestError(
        .notLeaderOrFollower, "broker \(localBrokerID ?? -1) does not follow \(topicPartition)")
    }
    if let leaderEpoch, epoch != leaderEpoch {
      throw BrokerRequestError(
        epoch > leaderEpoch ? .fencedLeaderEpoch : .unknownLeaderEpoch,
        "data of leader epoch \(leaderEpoch) for \(topicPartition), which follows epoch \(epoch)")
    }
    return log
  }

  /// Appends batches fetched from the leader of `leaderEpoch` (offsets and epochs kept; new
  /// epochs go into the leader-epoch cache, producers into the producer state) and returns
  /// the new log end offset once it is fsynced. Empty `records` are fine: a follower whose
  /// log ends before the leader's log start offset (the leader answered
  /// OFFSET_OUT_OF_RANGE) restarts its log empty at that offset. The high watermark becomes
  /// min(`leaderHighWatermark`, log end offset).
  public func appendAsFollower(
    _ records: [UInt8], leaderEpoch: Int32, leaderHighWatermark: Int64,
    leaderLogStartOffset: Int64
  ) async throws(BrokerRequestError) -> Int64 {
    var log = try checkFollower(of: leaderEpoch)
    if log.logEndOffset < leaderLogStartOffset {
      await waitForFlushIdle()
      log = try checkFollower(of: leaderEpoch)
      if log.logEndOffset < leaderLogStartOffset {
        try restartLog(at: leaderLogStartOffset, log)
      }
    }
    if !records.isEmpty {
      let headers: [RecordBatchHeader]
      switch Self.batchHeaders(records) {
      case .success(let parsed):
        headers = parsed
      case .failure(let reason):
        throw BrokerRequestError(.corruptMessage, "replicated data: \(reason)")
      }
      let result: AppendResult
      do {
        result = try log.appendAsFollower(records)
      } catch let error as StorageError {
        switch error.code {
        case .invalidBatch:
          throw BrokerRequestError(.corruptMessage, error.message)
        case .unexpectedOffset:
          throw BrokerRequestError(.offsetOutOfRange, error.message)
        default:
          noteWriteFailure(error, while: "appending replicated data to \(topicPartition)")
          logger.error("follower append failed: \(error)")
          throw BrokerRequestError(.storageError, error.message)
        }
      } catch {
        throw BrokerRequestError(.unknownServerError, "\(error)")
      }
      var batchOffset = result.baseOffset
      for header in headers {
        producerState.record(header, firstOffset: batchOffset)
        batchOffset = header.nextOffset
      }
    }
    let end = log.logEndOffset
    if let failure = await waitUntilDurable(end) {
      throw BrokerRequestError(.storageError, "flush of replicated data failed: \(failure.message)")
    }
    self.leaderHighWatermark = leaderHighWatermark
    if case .follower = role, let log = self.log {
      advanceHighWatermark(to: min(leaderHighWatermark, log.logEndOffset))
    }
    return end
  }

  /// Empties the log and restarts it at `offset` (the leader no longer has what follows
  /// this replica's end).
  private func restartLog(at offset: Int64, _ log: PartitionLog) throws(BrokerRequestError) {
    do {
      try log.truncateFully(startingAt: offset)
      producerState = try ProducerStateTable(
        producerIdExpirationMs: producerState.producerIdExpirationMs, endOffset: offset)
    } catch {
      noteWriteFailure(error, while: "restarting the log of \(topicPartition)")
      logger.error("restarting the log at \(offset) failed: \(error)")
      throw BrokerRequestError(.storageError, "restarting the log at \(offset) failed: \(error)")
    }
    highWatermark = offset
    logger.warning("restarted the log at the leader's log start offset \(offset)")
  }

  /// Truncates a diverged log after the leader answered `divergingEpoch`: to the smaller of
  /// the leader's end offset of `epoch` and this log's own end offset of that epoch. Never
  /// to the high watermark. Returns the new log end offset.
  public func truncateForDivergence(epoch: Int32, endOffset: Int64) async throws(BrokerRequestError)
    -> Int64
  {
    guard endOffset >= 0 else {
      throw BrokerRequestError(
        .invalidRequest, "diverging epoch \(epoch) with end offset \(endOffset)")
    }
    _ = try checkFollower(of: nil)
    await waitForFlushIdle()
    let log = try checkFollower(of: nil)
    let own = log.leaderEpochCache.endOffset(for: epoch, logEndOffset: log.logEndOffset)
    var target = min(endOffset, log.logEndOffset)
    if !own.isUndefined {
      target = min(target, own.endOffset)
    }
    guard target < log.logEndOffset else {
      // Nothing to cut but epochs that wrote nothing here (this replica led them and was
      // replaced before writing); the leader's history replaces them.
      do {
        try log.leaderEpochCache.truncateFromEnd(endOffset: log.logEndOffset)
      } catch {
        noteWriteFailure(error, while: "updating the leader epoch cache of \(topicPartition)")
        throw BrokerRequestError(.storageError, "updating the leader epoch cache failed: \(error)")
      }
      return log.logEndOffset
    }
    if target < log.logStartOffset {
      try restartLog(at: target, log)
      return target
    }
    let newEnd: Int64
    do {
      newEnd = try log.truncate(to: target)
    } catch {
      noteWriteFailure(error, while: "truncating \(topicPartition)")
      logger.error("truncation to \(target) failed: \(error)")
      throw BrokerRequestError(.storageError, "truncation to \(target) failed: \(error)")
    }
    producerStateTruncated(to: newEnd)
    if log.leaderEpochCache.isCheckpointStale {
      logger.warning(
        "truncated, but the leader epoch checkpoint could not be rewritten yet (retried before the next append)"
      )
    }
    if highWatermark > newEnd {
      // The leader's log is authoritative; this only happens after an unclean election.
      logger.warning(
        "truncation went below the high watermark",
        metadata: ["highWatermark": "\(highWatermark)", "logEndOffset": "\(newEnd)"])
      highWatermark = newEnd
    }
    logger.info(
      "truncated a diverged log",
      metadata: [
        "divergingEpoch": "\(epoch)", "leaderEndOffset": "\(endOffset)",
        "logEndOffset": "\(newEnd)",
      ])
    return newEnd
  }

  /// Keeps the producer state in step with a truncated log, rebuilding it from the log
  /// when a producer lost every batch it remembered.
  private func producerStateTruncated(to newEnd: Int64) {
    guard let log else { return }
    let removed = producerState.truncate(toEndOffset: newEnd)
    guard !removed.isEmpty else { return }
    do {
      var rebuilt = try ProducerStateTable(
        producerIdExpirationMs: producerState.producerIdExpirationMs)
      try log.forEachBatchHeader { header in
        try rebuilt.replay(CollectionOfOne(header))
      }
      producerState = rebuilt
    } catch {
      logger.error("rebuilding the producer state after truncation failed: \(error)")
    }
  }

  /// Takes the leader's high watermark from a response without records.
  public func updateFollowerHighWatermark(_ leaderHighWatermark: Int64) {
    guard let log, !isClosing, case .follower = role else { return }
    self.leaderHighWatermark = leaderHighWatermark
    advanceHighWatermark(to: min(leaderHighWatermark, log.logEndOffset))
  }

  // MARK: Status

  public func replicationState() -> ReplicationState {
    var state = ReplicationState(
      role: role, leaderEpoch: leaderEpoch, partitionEpoch: partitionEpoch,
      isr: localBrokerID == nil ? [] : isr, logStartOffset: log?.logStartOffset ?? -1,
      highWatermark: highWatermark, logEndOffset: log?.logEndOffset ?? -1,
      durableEndOffset: log?.durableEndOffset ?? -1, followers: [])
    if case .leader = role, let leadership = appliedLeadership {
      for replica in leadership.replicas {
        guard let progress = followerProgress[replica] else { continue }
        state.followers.append(
          ReplicationState.FollowerState(
            brokerID: replica, logEndOffset: progress.logEndOffset,
            lastCaughtUpMs: progress.lastCaughtUpTimeMs))
      }
      state.replicationLag = replicationLag.summary()
    }
    return state
  }

  // MARK: Fetch

  /// Batches from `fetchOffset`, up to about `maxBytes` (the first batch whole), all below
  /// the high watermark. OFFSET_OUT_OF_RANGE below the log start offset or above the log
  /// end offset; between the high watermark and the log end offset the answer is empty
  /// (as in Kafka): a consumer that just produced with acks=1 and fetches right after its
  /// batch must wait for the commit, not reset its position.
  ///
  /// Consumers read from the leader only: NOT_LEADER_OR_FOLLOWER elsewhere. A
  /// `currentLeaderEpoch` (-1: unchecked) older than the replica's gives FENCED_LEADER_EPOCH,
  /// a newer one UNKNOWN_LEADER_EPOCH (this broker has not seen that leadership yet).
  public func read(from fetchOffset: Int64, maxBytes: Int, currentLeaderEpoch: Int32 = -1)
    -> ReadOutcome
  {
    read(
      from: fetchOffset, maxBytes: maxBytes, asFileSlice: false,
      currentLeaderEpoch: currentLeaderEpoch)
  }

  /// `read`, with the batches as a range of the segment file (`recordsFile`) to send without
  /// copying; as bytes when the log's file system cannot share descriptors.
  public func readSlice(from fetchOffset: Int64, maxBytes: Int, currentLeaderEpoch: Int32 = -1)
    -> ReadOutcome
  {
    read(
      from: fetchOffset, maxBytes: maxBytes, asFileSlice: true,
      currentLeaderEpoch: currentLeaderEpoch)
  }

  private func read(
    from fetchOffset: Int64, maxBytes: Int, asFileSlice: Bool, currentLeaderEpoch: Int32
  ) -> ReadOutcome {
    guard let log, !isClosing else {
      return .failure(.unknownTopicOrPartition, "partition \(topicPartition) does not exist")
    }
    let leader = self.currentLeader
    if case .follower(let leaderID, _) = role {
      return .failure(
        .notLeaderOrFollower,
        "broker \(localBrokerID ?? -1) is not the leader of \(topicPartition)"
          + (leaderID >= 0 ? " (broker \(leaderID) is)" : " (it has no leader)"),
        currentLeader: leader)
    }
    if currentLeaderEpoch >= 0 && currentLeaderEpoch != leader.leaderEpoch {
      return .failure(
        currentLeaderEpoch < leader.leaderEpoch ? .fencedLeaderEpoch : .unknownLeaderEpoch,
        "fetch for leader epoch \(currentLeaderEpoch) of \(topicPartition); the current epoch "
          + "is \(leader.leaderEpoch)", currentLeader: leader)
    }
    var outcome = ReadOutcome(
      errorCode: .none, errorMessage: nil, highWatermark: highWatermark,
      logStartOffset: log.logStartOffset, logEndOffset: log.logEndOffset, records: [],
      currentLeader: leader)
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
    let expired = producerState.removeExpiredProducers(nowMs: nowMs)
    if !expired.isEmpty {
      logger.debug("forgot expired producers", metadata: ["producerIds": "\(expired)"])
    }
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
      updateHighWatermark()
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
    fetchWaiters.close()
    await waitForFlushIdle()
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
        updateHighWatermark()
        logger.debug("closed", metadata: ["logEndOffset": "\(log.durableEndOffset)"])
      } catch {
        logger.error("final flush failed: \(error)")
      }
      failAckWaiters(
        below: Int64.max,
        BrokerRequestError(.storageError, "the broker stopped before the batch was committed"))
    }
    resumeDurableWaiters(
      failure: StorageError(.closed, "partition \(topicPartition) closed before the flush"))
    self.log = nil
  }
}
