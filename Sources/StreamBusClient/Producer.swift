import StreamBusProtocol
import StreamBusRecords
import StreamBusTransport

/// Producer settings; defaults follow Kafka's where the meaning is the same.
public struct ProducerConfig: Sendable {
  /// How many replicas must have the batch before the broker answers.
  public enum Acks: Sendable, Hashable, CustomStringConvertible {
    /// No response at all: records count as delivered once written to the socket.
    case none
    /// The leader appended the batch.
    case leader
    /// Every in-sync replica has the batch.
    case all

    public var wireValue: Int16 {
      switch self {
      case .none: return 0
      case .leader: return 1
      case .all: return -1
      }
    }

    /// "0", "1", "all" (or "-1").
    public init?(parsing text: String) {
      switch text.lowercased() {
      case "0": self = .none
      case "1": self = .leader
      case "all", "-1": self = .all
      default: return nil
      }
    }

    public var description: String {
      switch self {
      case .none: return "0"
      case .leader: return "1"
      case .all: return "all"
      }
    }
  }

  public var acks: Acks = .all
  /// How long a batch waits for more records before it may be sent.
  public var lingerMs: Int64 = 5
  /// A batch is sent once its records reach this size (a single larger record gets a batch
  /// of its own).
  public var batchBytes: Int = 64 * 1024
  /// Bound on records queued or in flight; `send`/`enqueue` suspend while it is reached.
  public var bufferBytesMax: Int = 32 * 1024 * 1024
  /// Produce requests awaiting a response per broker connection.
  public var inflightRequestsMax: Int = 5
  /// Bound on one encoded produce request (header, topic and partition fields, records).
  /// The broker's frame limit is 64 MiB.
  public var requestBytesMax: Int = 4 * 1024 * 1024
  /// Bound on one partition's records in one produce request; also caps a single batch. The
  /// broker rejects more than its `message.max.bytes` (default 1 MiB) with
  /// `MESSAGE_TOO_LARGE`, so keep this at or below that setting.
  public var requestPartitionBytesMax: Int = 1024 * 1024
  /// A record fails once this long has passed since it was queued, retries included.
  public var deliveryTimeoutMs: Int64 = 120_000
  /// Stamp every batch with a producer id (from InitProducerId) and per-partition sequence
  /// numbers, so a leader recognizes a retried batch it already has and does not append it
  /// twice (Kafka's `enable.idempotence`). Has no effect with `acks: .none`, where the
  /// producer never learns whether a batch arrived.
  public var enableIdempotence: Bool = true

  public init(acks: Acks = .all) {
    self.acks = acks
  }
}

/// Sends records to partition leaders in batches.
///
/// Records are grouped per partition into Kafka v2 record batches. A batch may be sent once it
/// reaches `batchBytes`, once it is `lingerMs` old, or on `flush()`/`close()`. At most
/// `inflightRequestsMax` requests are outstanding per broker, and one request carries the
/// batches of every partition of that broker that has some ready (up to `requestBytesMax`).
///
/// Ordering: at most one request per partition is in flight. Batches that became ready while
/// it was outstanding all go out in the partition's next request (up to
/// `requestPartitionBytesMax`), so the bytes per request grow with the broker's response time
/// (self-clocking: with acks=all each request waits for a disk flush, and the next one carries
/// everything that arrived during it). Batches that failed with a retriable error are retried,
/// in order, before any later batch of their partition, so records of one partition are
/// appended in `send` order. Delivery is at least once: a retry after a lost connection may
/// append batches the broker had already appended.
public actor Producer {
  public let config: ProducerConfig
  let core: ClientCore

  private final class Batch {
    let id: UInt64
    let topicPartition: TopicPartition
    var builder = RecordBatchBuilder()
    var estimatedBytes = RecordBatchHeader.byteCount
    var reservedBytes = 0
    let createdAt: ContinuousClock.Instant
    /// `createdAt + deliveryTimeoutMs`: a batch still queued then fails.
    let deliveryDeadline: ContinuousClock.Instant
    let completion = BatchCompletion()
    var attempts = 0
    var retryAfter: ContinuousClock.Instant?
    var encoded: [UInt8]?
    /// Set once the batch went out as (part of) an idempotent batch: every retry resends
    /// exactly those bytes, so the leader can recognize a duplicate.
    var sequenced: SequencedBatch?
    var lastError: StreamBusError?
    /// After a leadership or connection error: the batch waits for a metadata refresh that
    /// completes after the failure (the cache's refresh count reaching this value).
    var metadataRefreshRequired: Int?
    /// After a leadership or connection error: the leader (and its epoch as metadata knew
    /// it) that failed. Once metadata names another leader or a newer epoch, the batch goes
    /// at once instead of waiting out its backoff: a failover costs one metadata round trip.
    var failedLeader: (address: HostPort, epoch: Int32)?

    init(
      id: UInt64, topicPartition: TopicPartition, createdAt: ContinuousClock.Instant,
      deliveryTimeoutMs: Int64
    ) {
      self.id = id
      self.topicPartition = topicPartition
      self.createdAt = createdAt
      self.deliveryDeadline = createdAt + .clampedMilliseconds(deliveryTimeoutMs)
    }
  }

  /// The records of one or more consecutive `Batch`es of a partition, encoded as ONE Kafka
  /// batch stamped with the producer id, epoch and base sequence. Fixed at the first send:
  /// a retry carries the same bytes, so the leader answers a duplicate with the original
  /// offset instead of appending it again. One wire batch per partition per request (as
  /// Kafka's producer does), because a leader that finds a duplicate batch answers for the
  /// whole partition entry.
  private final class SequencedBatch {
    let producerId: Int64
    let producerEpoch: Int16
    let baseSequence: Int32
    let recordCount: Int32
    let encoded: [UInt8]

    init(
      producerId: Int64, producerEpoch: Int16, baseSequence: Int32, recordCount: Int32,
      encoded: [UInt8]
    ) {
      self.producerId = producerId
      self.producerEpoch = producerEpoch
      self.baseSequence = baseSequence
      self.recordCount = recordCount
      self.encoded = encoded
    }
  }

  /// The producer id and epoch InitProducerId handed out.
  private struct ProducerIdentity {
    let producerId: Int64
    let producerEpoch: Int16
  }

  private struct PartitionQueue {
    /// Still accepting records.
    var open: Batch?
    /// Closed batches (full, or put back for a retry), oldest first.
    var ready: [Batch] = []
    /// The batches of the partition's one outstanding request, in log order.
    var inFlight: [Batch] = []

    var isIdle: Bool { open == nil && ready.isEmpty && inFlight.isEmpty }
  }

  /// The batches one produce request will carry, per partition in log order.
  private struct RequestPlan {
    var bytes: Int
    var topics: Set<String> = []
    var partitions: [(topicPartition: TopicPartition, batches: [Batch])] = []
  }

  /// A produce request awaiting its outcome. The producer gives up on it at `deadline` even
  /// when the transport does not (a connect or a write that never finishes), so no batch stays
  /// in flight longer than `requestTimeoutMs`.
  private struct InFlightRequest {
    let leader: HostPort
    let batchIds: [(TopicPartition, [UInt64])]
    let sentAt: ContinuousClock.Instant
    let deadline: ContinuousClock.Instant
    let task: Task<Void, Never>
  }

  /// A request without an answer for this long makes the producer look up the partitions'
  /// leaders (refreshing metadata every `retryBackoffMs` while it waits); once the metadata
  /// names another leader, the request is given up on and its batches go to the new one.
  /// A leader cut off by a network partition never answers, and its requests would
  /// otherwise wait out `requestTimeoutMs` although the controller elected a new leader
  /// after its session timeout. Safe with idempotence: a batch the old leader appended after
  /// all is recognised by its sequence number on the new leader.
  /// The consumer's fetches use the same bound, counted after their long-poll.
  static let leaderCheckAfter = Duration.milliseconds(1_000)

  private struct SpaceWaiter {
    var bytes: Int
    var continuation: CheckedContinuation<Void, Never>
  }

  private var queues: [TopicPartition: PartitionQueue] = [:]
  private var inflightRequestsByBroker: [HostPort: Int] = [:]
  private var stickyPartitions: [String: Int32] = [:]
  /// Topics whose sticky partition just had a batch closed or sent.
  private var stickyNeedsSwitch: Set<String> = []
  private var bufferedBytes = 0
  private var spaceWaiters: [SpaceWaiter] = []
  private var nextBatchId: UInt64 = 0
  private var flushesRunning = 0
  private var isClosed = false
  private var isRefreshingMetadata = false
  private var lastMetadataRefresh: ContinuousClock.Instant?
  /// Failed metadata refreshes in a row; spaces the next one by an exponential backoff.
  private var metadataRefreshFailures = 0
  private var requestsInFlight: [UInt64: InFlightRequest] = [:]
  /// Lower bounds of the earliest delivery deadline of a queued batch and of the earliest
  /// deadline of a request in flight: `drain()` looks for expired ones only once one may have
  /// passed (a scan on every record took a third of the producer's CPU at 58k records/s).
  /// Lowered whenever a batch is queued or a request sent, recomputed by each scan.
  private var queuedExpiryCheckAt: ContinuousClock.Instant?
  private var requestExpiryCheckAt: ContinuousClock.Instant?
  /// When a request in flight may next need its leaders checked (`leaderCheckAfter`).
  private var requestLeaderCheckAt: ContinuousClock.Instant?
  private var nextRequestId: UInt64 = 0
  /// The one timer that runs `drain()` at the next deadline (delivery timeout, request
  /// deadline or retry backoff), so batches expire even when nothing else happens.
  private var wakeUp: (at: ContinuousClock.Instant, id: UInt64, task: Task<Void, Never>)?
  private var nextWakeUpId: UInt64 = 0
  private var random = SystemRandomNumberGenerator()
  /// The producer id every new idempotent batch is stamped with; nil until InitProducerId
  /// answered, and again after a partition lost its producer state (a new id restarts every
  /// partition's sequence at 0).
  private var identity: ProducerIdentity?
  /// The next sequence number per partition under `identity`.
  private var nextSequences: [TopicPartition: Int32] = [:]
  private var isRequestingProducerId = false
  private var lastProducerIdRequest: ContinuousClock.Instant?
  /// Failed InitProducerId requests in a row; spaces the next one by an exponential backoff.
  private var producerIdFailures = 0

  private var isIdempotent: Bool { config.enableIdempotence && config.acks != .none }

  /// The producer id and epoch the producer stamps its batches with (nil before the first
  /// InitProducerId answer, or without idempotence). For monitoring and tests.
  public var producerIdAndEpoch: (producerId: Int64, producerEpoch: Int16)? {
    identity.map { ($0.producerId, $0.producerEpoch) }
  }

  public init(config: ClientConfig, producerConfig: ProducerConfig = ProducerConfig()) {
    precondition(producerConfig.batchBytes > 0, "batchBytes must be positive")
    precondition(producerConfig.inflightRequestsMax > 0, "inflightRequestsMax must be positive")
    precondition(
      producerConfig.bufferBytesMax >= producerConfig.batchBytes,
      "bufferBytesMax must hold at least one batch")
    precondition(
      producerConfig.requestPartitionBytesMax > RecordBatchHeader.byteCount,
      "requestPartitionBytesMax must hold a batch")
    self.config = producerConfig
    self.core = ClientCore(config: config)
  }

  /// Bytes of records queued or in flight (for monitoring and tests).
  public var queuedBytes: Int { bufferedBytes }

  /// Sends one record and waits for its acknowledgement.
  ///
  /// - Parameter partition: an explicit partition; otherwise a non-nil key picks
  ///   `toPositive(murmur2(key)) % partitionCount` (Kafka's default), and records without a
  ///   key stick to one partition until its batch is sent, then move to another.
  @discardableResult
  public func send(
    topic: String, key: [UInt8]? = nil, value: [UInt8]?, headers: [Header] = [],
    partition: Int32? = nil, timestamp: Int64? = nil
  ) async throws -> RecordMetadata {
    try await enqueue(
      topic: topic, key: key, value: value, headers: headers, partition: partition,
      timestamp: timestamp
    ).value()
  }

  /// Queues one record and returns without waiting for the broker; await the handle's
  /// `value()` for the outcome. Suspends only while the topic's metadata is unknown or the
  /// buffer is full (`bufferBytesMax`: backpressure).
  public func enqueue(
    topic: String, key: [UInt8]? = nil, value: [UInt8]?, headers: [Header] = [],
    partition explicitPartition: Int32? = nil, timestamp: Int64? = nil
  ) async throws -> DeliveryHandle {
    guard !isClosed else {
      throw StreamBusError(.closed, "the producer is closed", topic: topic)
    }
    try validateTopicName(topic)
    let recordBytes = Self.estimatedRecordBytes(key: key, value: value, headers: headers)
    guard
      recordBytes + RecordBatchHeader.byteCount
        <= min(config.bufferBytesMax, partitionBytesLimit(topic: topic))
    else {
      throw StreamBusError(
        .invalidArgument, errorCode: .messageTooLarge,
        "record of about \(recordBytes) bytes exceeds bufferBytesMax \(config.bufferBytesMax), requestPartitionBytesMax \(config.requestPartitionBytesMax) or requestBytesMax \(config.requestBytesMax)",
        topic: topic)
    }
    let topicInfo: TopicInfo
    if let cached = core.metadata.snapshot.topics[topic], !cached.partitions.isEmpty {
      topicInfo = cached
    } else {
      topicInfo = try await core.metadata.topic(topic, waitMs: core.config.metadataWaitMs)
    }
    let partitionCount = Int32(topicInfo.partitions.count)
    let partition: Int32
    if let explicitPartition {
      guard topicInfo.partitions.contains(where: { $0.partition == explicitPartition }) else {
        throw StreamBusError(
          .invalidArgument, errorCode: .unknownTopicOrPartition,
          "partition \(explicitPartition) does not exist (topic has \(partitionCount) partitions)",
          topic: topic, partition: explicitPartition)
      }
      partition = explicitPartition
    } else if let key {
      partition =
        topicInfo.partitions[
          Int(Murmur2Partitioner.partition(forKey: key, partitionCount: partitionCount))
        ].partition
    } else {
      partition = stickyPartition(for: topicInfo)
    }
    try await reserve(bytes: recordBytes, topic: topic)
    let topicPartition = TopicPartition(topic: topic, partition: partition)
    let recordTimestamp = timestamp ?? wallClockMs()
    let (batch, batchClosed) = append(
      to: topicPartition, key: key, value: value, headers: headers, timestamp: recordTimestamp,
      recordBytes: recordBytes)
    let handle = DeliveryHandle(
      topic: topic, partition: partition, timestamp: recordTimestamp,
      completion: batch.completion, indexInBatch: batch.builder.records.count - 1)
    if batchClosed || config.lingerMs <= 0 || flushesRunning > 0 {
      drain()
    }
    return handle
  }

  /// Sends everything queued now (ignoring `lingerMs`) and waits until every record queued
  /// before the call is acknowledged or failed.
  public func flush() async {
    flushesRunning += 1
    defer { flushesRunning -= 1 }
    var completions: [BatchCompletion] = []
    for queue in queues.values {
      if let open = queue.open { completions.append(open.completion) }
      completions.append(contentsOf: queue.ready.map(\.completion))
      completions.append(contentsOf: queue.inFlight.map(\.completion))
    }
    drain()
    for completion in completions {
      _ = await completion.wait()
    }
  }

  /// Stops accepting records, delivers everything queued (as `flush()`), then closes the
  /// connections. Records waiting for buffer space fail with a `.closed` error.
  public func close() async {
    guard !isClosed else { return }
    isClosed = true
    let waiters = spaceWaiters
    spaceWaiters.removeAll()
    for waiter in waiters {
      bufferedBytes += waiter.bytes
      waiter.continuation.resume()
    }
    await flush()
    wakeUp?.task.cancel()
    wakeUp = nil
    await core.close()
  }

  // MARK: - Accumulating

  static func estimatedRecordBytes(key: [UInt8]?, value: [UInt8]?, headers: [Header]) -> Int {
    // Length, attributes, timestamp and offset deltas and the three varint lengths are at
    // most 21 bytes together for records under 2 GiB.
    var bytes = 21 + (key?.count ?? 0) + (value?.count ?? 0)
    for header in headers {
      bytes += 10 + header.key.utf8.count + (header.value?.count ?? 0)
    }
    return bytes
  }

  /// Bytes of a produce request besides its topics: the request header (api key, version,
  /// correlation id, client id) and the body's acks, timeout and topic count.
  private var requestFixedBytes: Int { 8 + 2 + core.config.clientId.utf8.count + 10 }

  /// Bytes a topic adds to a request besides its partitions: name and partition count.
  private static func topicFieldBytes(_ topic: String) -> Int { 2 + topic.utf8.count + 4 }

  /// Bytes a partition adds to a request besides its records: index and records length.
  private static let partitionFieldBytes = 8

  /// The most record bytes of one partition that a request may carry.
  private func partitionBytesLimit(topic: String) -> Int {
    min(
      config.requestPartitionBytesMax,
      config.requestBytesMax - requestFixedBytes - Self.topicFieldBytes(topic)
        - Self.partitionFieldBytes)
  }

  private func stickyPartition(for topic: TopicInfo) -> Int32 {
    let previous = stickyPartitions[topic.name]
    if let previous, !stickyNeedsSwitch.contains(topic.name),
      topic.partitions.contains(where: { $0.partition == previous })
    {
      return previous
    }
    stickyNeedsSwitch.remove(topic.name)
    // Prefer partitions with a leader, so a record does not wait for an election.
    let available = topic.partitions.filter { $0.leaderId >= 0 }.map(\.partition)
    var candidates = available.isEmpty ? topic.partitions.map(\.partition) : available
    if candidates.count > 1, let previous {
      candidates.removeAll { $0 == previous }
    }
    let chosen = candidates[Int.random(in: 0..<candidates.count, using: &random)]
    stickyPartitions[topic.name] = chosen
    return chosen
  }

  /// A batch of the topic's sticky partition was closed or sent: the next record without a
  /// key starts filling another partition.
  private func batchLeftAccumulator(_ topicPartition: TopicPartition) {
    if stickyPartitions[topicPartition.topic] == topicPartition.partition {
      stickyNeedsSwitch.insert(topicPartition.topic)
    }
  }

  private func append(
    to topicPartition: TopicPartition, key: [UInt8]?, value: [UInt8]?, headers: [Header],
    timestamp: Int64, recordBytes: Int
  ) -> (Batch, closedBatch: Bool) {
    var queue = queues[topicPartition] ?? PartitionQueue()
    var closedBatch = false
    // `batchBytes`, unless a request could not carry a batch that large.
    let batchBytesLimit = min(config.batchBytes, partitionBytesLimit(topic: topicPartition.topic))
    if let open = queue.open, open.estimatedBytes + recordBytes > batchBytesLimit {
      queue.ready.append(open)
      queue.open = nil
      closedBatch = true
    }
    let batch: Batch
    if let open = queue.open {
      batch = open
    } else {
      batch = Batch(
        id: nextBatchId, topicPartition: topicPartition, createdAt: .now,
        deliveryTimeoutMs: config.deliveryTimeoutMs)
      nextBatchId += 1
      queue.open = batch
      queuedExpiryCheckAt = min(
        queuedExpiryCheckAt ?? batch.deliveryDeadline, batch.deliveryDeadline)
      if config.lingerMs > 0 {
        // A linger longer than the delivery timeout must not delay the batch's expiry.
        let lingerMs = min(config.lingerMs, config.deliveryTimeoutMs)
        Task { [weak self] in
          try? await Task.sleep(for: .milliseconds(lingerMs))
          await self?.drain()
        }
      }
    }
    batch.builder.append(
      key: key, value: value,
      headers: headers.map { RecordHeader(key: $0.key, value: $0.value) }, timestamp: timestamp)
    batch.encoded = nil
    batch.estimatedBytes += recordBytes
    batch.reservedBytes += recordBytes
    let isFull = batch.estimatedBytes >= batchBytesLimit
    if isFull {
      queue.ready.append(batch)
      queue.open = nil
      closedBatch = true
    }
    queues[topicPartition] = queue
    if closedBatch {
      batchLeftAccumulator(topicPartition)
    }
    return (batch, closedBatch)
  }

  private func reserve(bytes: Int, topic: String) async throws {
    if spaceWaiters.isEmpty && bufferedBytes + bytes <= config.bufferBytesMax {
      bufferedBytes += bytes
      return
    }
    await withCheckedContinuation { continuation in
      spaceWaiters.append(SpaceWaiter(bytes: bytes, continuation: continuation))
    }
    // `release` (or `close`) counted our bytes before resuming us.
    if isClosed {
      release(bytes: bytes)
      throw StreamBusError(
        .closed, "the producer was closed while waiting for buffer space",
        topic: topic)
    }
  }

  private func release(bytes: Int) {
    bufferedBytes -= bytes
    precondition(bufferedBytes >= 0, "released more bytes than were reserved")
    while let first = spaceWaiters.first,
      bufferedBytes + first.bytes <= config.bufferBytesMax || bufferedBytes == 0
    {
      spaceWaiters.removeFirst()
      bufferedBytes += first.bytes
      first.continuation.resume()
    }
  }

  // MARK: - Sending

  /// Sends every batch that may go now. A partition with no request in flight sends its closed
  /// batches, oldest first, as many as fit (and its open batch once lingered or flushing,
  /// after every closed one); partitions with the same leader share requests, up to that
  /// connection's free `inflightRequestsMax` slots.
  private func drain() {
    let now = ContinuousClock.now
    if let checkAt = requestExpiryCheckAt, checkAt <= now {
      expireRequests(now: now)
    }
    if let checkAt = requestLeaderCheckAt, checkAt <= now {
      abandonRequestsToFormerLeaders(now: now)
    }
    if let checkAt = queuedExpiryCheckAt, checkAt <= now {
      expireQueuedBatches(now: now)
    }
    // Count first: the snapshot read after it is at least that fresh.
    let refreshCount = core.metadata.refreshCount
    let metadata = core.metadata.snapshot
    var needsMetadata = false
    var needsProducerId = false
    var earliestRetry: ContinuousClock.Instant?
    var plans: [HostPort: [RequestPlan]] = [:]
    var drainAgain = false
    let lingerMs = config.lingerMs
    for (topicPartition, queue) in queues where queue.inFlight.isEmpty {
      var candidates = queue.ready
      if let open = queue.open,
        flushesRunning > 0 || (now - open.createdAt).wholeMilliseconds >= lingerMs
      {
        candidates.append(open)
      }
      guard let head = candidates.first else { continue }
      if let sequenced = head.sequenced {
        // A retry: exactly the batches that went out together, nothing added.
        candidates = Array(candidates.prefix { $0.sequenced === sequenced })
      }
      if let retryAfter = head.retryAfter, retryAfter > now {
        let refreshed = head.metadataRefreshRequired.map { refreshCount >= $0 } ?? true
        if let failed = head.failedLeader, refreshed,
          let current = metadata.leader(of: topicPartition),
          current.broker.address != failed.address || current.epoch > failed.epoch
        {
          head.retryAfter = nil
        } else {
          earliestRetry = min(earliestRetry ?? retryAfter, retryAfter)
          // While waiting out a backoff after a leadership error, keep looking for the new
          // leader (refreshes are spaced by retryBackoffMs).
          needsMetadata = needsMetadata || head.failedLeader != nil
          continue
        }
      }
      if let required = head.metadataRefreshRequired, refreshCount < required {
        needsMetadata = true
        continue
      }
      guard let leader = metadata.leader(of: topicPartition)?.broker.address else {
        needsMetadata = true
        continue
      }
      if isIdempotent && head.sequenced == nil && identity == nil {
        needsProducerId = true
        continue
      }
      let freeSlots = config.inflightRequestsMax - inflightRequestsByBroker[leader, default: 0]
      var leaderPlans = plans[leader] ?? []
      let topicBytes = Self.topicFieldBytes(topicPartition.topic) + Self.partitionFieldBytes
      let partitionLimit = partitionBytesLimit(topic: topicPartition.topic)
      // Into the newest request if it has room for the first batch, else a new request.
      func roomInLast() -> Int {
        guard let last = leaderPlans.last else { return 0 }
        let fields =
          last.topics.contains(topicPartition.topic)
          ? Self.partitionFieldBytes : topicBytes
        return min(config.requestBytesMax - last.bytes - fields, partitionLimit)
      }
      let freshRoom = min(
        config.requestBytesMax - requestFixedBytes - topicBytes, partitionLimit)
      let headBytes = head.sequenced?.encoded.count ?? encodedBytes(of: head)
      guard headBytes <= freshRoom else {
        // Only when the size estimate undercounted a batch near the limit: it can never go.
        let unsendable = head.sequenced == nil ? [head] : candidates
        for batch in unsendable {
          removeFromQueue(batch)
          fail(
            batch,
            with: StreamBusError(
              .invalidArgument, errorCode: .messageTooLarge,
              "batch of \(headBytes) bytes exceeds requestPartitionBytesMax \(config.requestPartitionBytesMax) or requestBytesMax \(config.requestBytesMax)",
              topic: topicPartition.topic, partition: topicPartition.partition))
        }
        drainAgain = true
        continue
      }
      var room = roomInLast()
      let wantedBytes =
        head.sequenced != nil
        ? headBytes : min(candidates.reduce(0) { $0 + encodedBytes(of: $1) }, freshRoom)
      if headBytes > room || (wantedBytes > room && leaderPlans.count < freeSlots) {
        guard leaderPlans.count < freeSlots else { continue }
        leaderPlans.append(RequestPlan(bytes: requestFixedBytes))
        room = roomInLast()
      }
      var taken: [Batch] = []
      var takenBytes = 0
      if head.sequenced != nil {
        taken = candidates
        takenBytes = headBytes
      } else {
        for batch in candidates {
          let bytes = encodedBytes(of: batch)
          guard takenBytes + bytes <= room else { break }
          taken.append(batch)
          takenBytes += bytes
        }
        precondition(!taken.isEmpty, "a batch is never larger than an empty request can carry")
        if isIdempotent, let identity {
          // One header instead of several: never larger than the batches it replaces.
          takenBytes = sequence(taken, of: topicPartition, as: identity).encoded.count
        }
      }
      let index = leaderPlans.count - 1
      leaderPlans[index].bytes +=
        takenBytes
        + (leaderPlans[index].topics.contains(topicPartition.topic)
          ? Self.partitionFieldBytes : topicBytes)
      leaderPlans[index].topics.insert(topicPartition.topic)
      leaderPlans[index].partitions.append((topicPartition, taken))
      plans[leader] = leaderPlans
    }
    for (leader, leaderPlans) in plans {
      for plan in leaderPlans {
        for (topicPartition, batches) in plan.partitions {
          for batch in batches {
            removeFromQueue(batch)
          }
          queues[topicPartition]?.inFlight = batches
          batchLeftAccumulator(topicPartition)
        }
        send(plan, to: leader)
      }
    }
    if drainAgain {
      drain()
    }
    if needsMetadata {
      refreshMetadataThenDrain()
    }
    if needsProducerId {
      requestProducerIdThenDrain()
    }
    scheduleWakeUp(earliestRetry: earliestRetry)
  }

  /// Fails every queued (not in-flight) batch whose delivery deadline has passed, wherever it
  /// is in its partition's queue: behind an outstanding request, waiting for metadata, a
  /// leader or a retry backoff.
  private func expireQueuedBatches(now: ContinuousClock.Instant) {
    for (topicPartition, queue) in queues {
      var expired = queue.ready.filter { $0.deliveryDeadline <= now }
      if let open = queue.open, open.deliveryDeadline <= now {
        expired.append(open)
      }
      guard !expired.isEmpty else { continue }
      // An idempotent batch expires as a whole: its records went out under one sequence
      // range, and a part of it cannot be acknowledged alone.
      let expiredGroups = expired.compactMap(\.sequenced)
      if !expiredGroups.isEmpty {
        expired =
          queue.ready.filter { batch in
            batch.deliveryDeadline <= now
              || expiredGroups.contains { $0 === batch.sequenced }
          } + expired.filter { $0 === queue.open }
      }
      for batch in expired {
        removeFromQueue(batch)
      }
      for batch in expired {
        fail(batch, with: deliveryTimeoutError(batch))
      }
      if let open = queue.open, expired.last === open {
        batchLeftAccumulator(topicPartition)
      }
    }
    var earliest: ContinuousClock.Instant?
    for queue in queues.values {
      for batch in queue.ready {
        earliest = min(earliest ?? batch.deliveryDeadline, batch.deliveryDeadline)
      }
      if let open = queue.open {
        earliest = min(earliest ?? open.deliveryDeadline, open.deliveryDeadline)
      }
    }
    queuedExpiryCheckAt = earliest
  }

  /// Gives up on requests past their deadline, as if they had timed out: their batches are
  /// retried or fail like after any request timeout. A late outcome is ignored.
  private func expireRequests(now: ContinuousClock.Instant) {
    let expired = requestsInFlight.filter { $0.value.deadline <= now }
    for (requestId, request) in expired.sorted(by: { $0.key < $1.key }) {
      request.task.cancel()
      handleOutcome(
        .failure(
          StreamBusError(
            .timeout,
            "Produce to \(request.leader): no outcome within requestTimeoutMs \(core.config.requestTimeoutMs)"
          )), requestId: requestId, drainAfter: false)
    }
    requestExpiryCheckAt = requestsInFlight.values.lazy.map(\.deadline).min()
  }

  /// Gives up on the requests unanswered for `leaderCheckAfter` whose partitions the
  /// metadata now places on another leader; while such requests wait for a leader that has
  /// not moved (or not yet), refreshes the metadata every `retryBackoffMs`.
  private func abandonRequestsToFormerLeaders(now: ContinuousClock.Instant) {
    let metadata = core.metadata.snapshot
    var moved: [(UInt64, InFlightRequest, String)] = []
    var waiting = false
    var nextCheck: ContinuousClock.Instant?
    for (requestId, request) in requestsInFlight {
      let checkAt = request.sentAt + Self.leaderCheckAfter
      guard checkAt <= now else {
        nextCheck = min(nextCheck ?? checkAt, checkAt)
        continue
      }
      if let (topicPartition, address) = metadata.partitionLedElsewhere(
        among: request.batchIds.lazy.map(\.0), than: request.leader)
      {
        moved.append(
          (requestId, request, "the metadata names \(address) as leader of \(topicPartition)"))
      } else {
        waiting = true
      }
    }
    for (requestId, request, reason) in moved.sorted(by: { $0.0 < $1.0 }) {
      request.task.cancel()
      handleOutcome(
        .failure(
          StreamBusError(
            .timeout,
            "Produce to \(request.leader): no answer after \(Self.leaderCheckAfter) and \(reason); retried there"
          )), requestId: requestId, drainAfter: false)
    }
    if waiting {
      let recheck = now + .clampedMilliseconds(core.config.retryBackoffMs)
      nextCheck = min(nextCheck ?? recheck, recheck)
      refreshMetadataThenDrain()
    }
    requestLeaderCheckAt = nextCheck
  }

  /// Keeps one timer armed for the earliest deadline of anything not yet complete.
  private func scheduleWakeUp(earliestRetry: ContinuousClock.Instant?) {
    // The check times are lower bounds: a wake-up for a batch already delivered only
    // recomputes them.
    let earliest = [
      earliestRetry, queuedExpiryCheckAt, requestExpiryCheckAt, requestLeaderCheckAt,
    ].lazy.compactMap { $0 }.min()
    guard let earliest else { return }
    if let wakeUp, wakeUp.at <= earliest {
      return
    }
    wakeUp?.task.cancel()
    let id = nextWakeUpId
    nextWakeUpId += 1
    let task = Task { [weak self] in
      try? await Task.sleep(until: earliest, clock: .continuous)
      await self?.wokeUp(id: id)
    }
    wakeUp = (earliest, id, task)
  }

  private func wokeUp(id: UInt64) {
    guard let wakeUp, wakeUp.id == id else { return }
    self.wakeUp = nil
    drain()
  }

  /// The batch's exact encoded size; encodes it once (appending a record drops the cache).
  private func encodedBytes(of batch: Batch) -> Int {
    if let encoded = batch.encoded {
      return encoded.count
    }
    let encoded = batch.builder.build()
    batch.encoded = encoded
    return encoded.count
  }

  private func removeFromQueue(_ batch: Batch) {
    guard var queue = queues[batch.topicPartition] else { return }
    if queue.open === batch {
      queue.open = nil
    } else if let index = queue.ready.firstIndex(where: { $0 === batch }) {
      queue.ready.remove(at: index)
    }
    queues[batch.topicPartition] = queue
  }

  private func send(_ plan: RequestPlan, to leader: HostPort) {
    inflightRequestsByBroker[leader, default: 0] += 1
    let requestId = nextRequestId
    nextRequestId += 1
    var byTopic: [String: [ProduceRequest.Partition]] = [:]
    for (topicPartition, batches) in plan.partitions {
      var records: [UInt8]
      if let sequenced = batches[0].sequenced {
        records = sequenced.encoded
      } else if batches.count == 1 {
        records = batches[0].encoded ?? []
      } else {
        records = []
        records.reserveCapacity(batches.reduce(0) { $0 + ($1.encoded?.count ?? 0) })
        for batch in batches {
          records.append(contentsOf: batch.encoded ?? [])
        }
      }
      byTopic[topicPartition.topic, default: []].append(
        ProduceRequest.Partition(partition: topicPartition.partition, records: records))
    }
    let request = ProduceRequest(
      acks: config.acks.wireValue,
      timeoutMs: Int32(clamping: core.config.requestTimeoutMs),
      topics: byTopic.keys.sorted().map {
        ProduceRequest.Topic(name: $0, partitions: byTopic[$0] ?? [])
      })
    let batchIds = plan.partitions.map { ($0.topicPartition, $0.batches.map(\.id)) }
    let core = core
    let acks = config.acks
    let task = Task {
      let outcome: Result<ProduceResponse?, StreamBusError>
      do {
        if acks == .none {
          try await core.sendOneWay(.produce(request), to: leader)
          outcome = .success(nil)
        } else {
          guard case .produce(let response) = try await core.send(.produce(request), to: leader)
          else {
            throw StreamBusError(.protocolViolation, "Produce to \(leader): wrong response type")
          }
          outcome = .success(response)
        }
      } catch {
        outcome = .failure(StreamBusError.wrapping(error, context: "Produce to \(leader)"))
      }
      self.handleOutcome(outcome, requestId: requestId)
    }
    let sentAt = ContinuousClock.now
    let deadline = sentAt + .clampedMilliseconds(core.config.requestTimeoutMs)
    requestsInFlight[requestId] = InFlightRequest(
      leader: leader, batchIds: batchIds, sentAt: sentAt, deadline: deadline, task: task)
    requestExpiryCheckAt = min(requestExpiryCheckAt ?? deadline, deadline)
    let leaderCheck = sentAt + Self.leaderCheckAfter
    requestLeaderCheckAt = min(requestLeaderCheckAt ?? leaderCheck, leaderCheck)
  }

  /// Completes or retries the batches of a request; ignored for a request given up on.
  private func handleOutcome(
    _ outcome: Result<ProduceResponse?, StreamBusError>, requestId: UInt64,
    drainAfter: Bool = true
  ) {
    guard let request = requestsInFlight.removeValue(forKey: requestId) else { return }
    let leader = request.leader
    let batchIds = request.batchIds
    inflightRequestsByBroker[leader, default: 1] -= 1
    var invalidate = false
    for (topicPartition, ids) in batchIds {
      guard let batches = queues[topicPartition]?.inFlight, batches.map(\.id) == ids else {
        continue
      }
      queues[topicPartition]?.inFlight = []
      let result: Result<BatchAcknowledgement, StreamBusError>
      switch outcome {
      case .failure(let error):
        result = .failure(error)
      case .success(nil):
        result = .success(BatchAcknowledgement(baseOffset: -1, logAppendTimeMs: -1))
      case .success(let response?):
        let answer = response.topics.first { $0.name == topicPartition.topic }?.partitions.first {
          $0.partition == topicPartition.partition
        }
        if let answer {
          // DUPLICATE_SEQUENCE_NUMBER: the leader has the batch but no longer remembers its
          // offset; it is delivered all the same.
          let isDelivered =
            answer.errorCode == .none
            || (answer.errorCode == .duplicateSequenceNumber && batches[0].sequenced != nil)
          result =
            isDelivered
            ? .success(
              BatchAcknowledgement(
                baseOffset: answer.baseOffset, logAppendTimeMs: answer.logAppendTimeMs))
            : .failure(
              .broker(
                answer.errorCode, message: answer.errorMessage, topic: topicPartition.topic,
                partition: topicPartition.partition))
        } else {
          result = .failure(
            StreamBusError(
              .protocolViolation, "Produce response from \(leader) does not mention the partition",
              topic: topicPartition.topic, partition: topicPartition.partition))
        }
      }
      switch result {
      case .success(let acknowledgement):
        // The broker appended the batches in request order from the base offset it answered.
        var baseOffset = acknowledgement.baseOffset
        for batch in batches {
          complete(
            batch,
            with: .success(
              BatchAcknowledgement(
                baseOffset: baseOffset, logAppendTimeMs: acknowledgement.logAppendTimeMs)))
          if baseOffset >= 0 {
            baseOffset += Int64(batch.builder.records.count)
          }
        }
      case .failure(let error):
        let error =
          error.topic == nil
          ? StreamBusError(
            error.kind, errorCode: error.errorCode, error.message, topic: topicPartition.topic,
            partition: topicPartition.partition) : error
        invalidate = invalidate || error.invalidatesMetadata
        if let sequenced = batches[0].sequenced, error.kind == .broker,
          error.errorCode == .outOfOrderSequenceNumber || error.errorCode == .unknownProducerId
        {
          producerStateLost(batches, sequenced: sequenced, error: error)
        } else {
          retryOrFail(batches, error: error, failedLeader: leader)
        }
      }
    }
    if invalidate {
      core.metadata.invalidate()
      refreshMetadataThenDrain()
    }
    if drainAfter {
      drain()
    }
  }

  /// Puts the batches of a failed request back at the head of their partition's queue, in
  /// order, or fails those out of time (or all of them, for an error that is not retriable).
  private func retryOrFail(
    _ batches: [Batch], error: StreamBusError, isRetriable: Bool? = nil,
    failedLeader: HostPort? = nil
  ) {
    let isRetriable = isRetriable ?? error.isRetriable
    var failed: (address: HostPort, epoch: Int32)?
    if let failedLeader, error.invalidatesMetadata, let first = batches.first {
      // The epoch the failed request was sent under, when metadata still names that leader
      // (-1 otherwise: then metadata already moved on, and the retry need not wait).
      let known = core.metadata.snapshot.leader(of: first.topicPartition)
      failed = (failedLeader, known?.broker.address == failedLeader ? known?.epoch ?? -1 : -1)
    }
    var retried: [Batch] = []
    for batch in batches {
      batch.lastError = error
      batch.attempts += 1
      let backoff = Duration.clampedMilliseconds(core.config.backoffMs(attempt: batch.attempts))
      let deadline = batch.createdAt + .clampedMilliseconds(config.deliveryTimeoutMs)
      guard isRetriable, ContinuousClock.now + backoff < deadline else {
        fail(batch, with: isRetriable ? deliveryTimeoutError(batch) : error)
        continue
      }
      batch.retryAfter = .now + backoff
      batch.metadataRefreshRequired =
        error.invalidatesMetadata ? core.metadata.refreshCount + 1 : nil
      batch.failedLeader = failed
      retried.append(batch)
    }
    guard let first = retried.first else { return }
    queues[first.topicPartition, default: PartitionQueue()].ready.insert(
      contentsOf: retried, at: 0)
    for batch in retried {
      queuedExpiryCheckAt = min(
        queuedExpiryCheckAt ?? batch.deliveryDeadline, batch.deliveryDeadline)
    }
  }

  // MARK: - Idempotence

  /// Encodes `batches` (consecutive, oldest first, none sequenced yet) as one batch with the
  /// partition's next sequence numbers under `identity`, and ties them to it.
  private func sequence(
    _ batches: [Batch], of topicPartition: TopicPartition, as identity: ProducerIdentity
  ) -> SequencedBatch {
    precondition(!batches.isEmpty && batches.allSatisfy { $0.sequenced == nil })
    let recordCount = batches.reduce(0) { $0 + $1.builder.records.count }
    let baseSequence = nextSequences[topicPartition, default: 0]
    var builder: RecordBatchBuilder
    if batches.count == 1 {
      builder = batches[0].builder
    } else {
      builder = RecordBatchBuilder()
      for batch in batches {
        for record in batch.builder.records {
          builder.append(
            key: record.key, value: record.value, headers: record.headers,
            timestamp: record.timestamp)
        }
      }
    }
    builder.producerId = identity.producerId
    builder.producerEpoch = identity.producerEpoch
    builder.baseSequence = baseSequence
    let sequenced = SequencedBatch(
      producerId: identity.producerId, producerEpoch: identity.producerEpoch,
      baseSequence: baseSequence, recordCount: Int32(recordCount), encoded: builder.build())
    nextSequences[topicPartition] = Self.sequence(baseSequence, advancedBy: Int32(recordCount))
    for batch in batches {
      batch.sequenced = sequenced
      // The unstamped encoding is not needed while the stamped one is kept.
      batch.encoded = nil
    }
    return sequenced
  }

  /// The sequence `count` records after `sequence`; Kafka's sequences wrap from `Int32.max`
  /// to 0.
  static func sequence(_ sequence: Int32, advancedBy count: Int32) -> Int32 {
    precondition(sequence >= 0 && count >= 0)
    return Int32((Int64(sequence) + Int64(count)) % (Int64(Int32.max) + 1))
  }

  /// The leader rejected an idempotent batch because it does not continue the sequence it
  /// knows for this producer (OUT_OF_ORDER_SEQUENCE_NUMBER), or knows nothing about the
  /// producer (UNKNOWN_PRODUCER_ID). Either way the batch was NOT appended, and every earlier
  /// batch of the partition was already acknowledged (one request per partition is in
  /// flight), so the leader lost producer state — a batch that expired unacknowledged left
  /// a gap, acks=1 records were lost in a failover, or the producer's state expired. The
  /// safe way on: a new producer id (every partition's sequence restarts at 0), and the
  /// rejected records retried under it, still ahead of every later record of the partition.
  /// They cannot be duplicated: the leader's log does not hold them.
  private func producerStateLost(
    _ batches: [Batch], sequenced: SequencedBatch, error: StreamBusError
  ) {
    if identity?.producerId == sequenced.producerId {
      core.config.logger.warning(
        "leader lost this producer's state; taking a new producer id",
        metadata: [
          "producerId": "\(sequenced.producerId)", "error": "\(error)",
        ])
      identity = nil
      nextSequences = [:]
    }
    for batch in batches {
      batch.sequenced = nil
    }
    retryOrFail(batches, error: error, isRetriable: true)
  }

  /// One InitProducerId at a time, spaced by the retry backoff while they fail, then a drain.
  private func requestProducerIdThenDrain() {
    guard !isRequestingProducerId else { return }
    isRequestingProducerId = true
    var waitMs: Int64 = 0
    if producerIdFailures > 0, let last = lastProducerIdRequest {
      waitMs = max(
        0,
        core.config.backoffMs(attempt: producerIdFailures)
          - (ContinuousClock.now - last).wholeMilliseconds)
    }
    let core = core
    Task { [weak self] in
      if waitMs > 0 {
        try? await Task.sleep(for: .milliseconds(waitMs))
      }
      let result = await Self.initProducerId(core: core)
      await self?.producerIdArrived(result)
    }
  }

  /// Asks the brokers metadata knows (shuffled), then the bootstrap list, until one answers.
  /// The failure is retriable unless every broker asked refused for a reason that is not (a
  /// single broker without InitProducerId, or one that cannot reach its metaserver, must not
  /// fail records another broker could serve).
  private static func initProducerId(core: ClientCore) async -> Result<
    ProducerIdentity, StreamBusError
  > {
    let candidates =
      core.metadata.snapshot.brokers.values.map(\.address).shuffled()
      + core.config.bootstrapBrokers
    var seen = Set<HostPort>()
    var lastError = StreamBusError(.connection, "InitProducerId: no broker to ask")
    var retriableError: StreamBusError?
    for broker in candidates where seen.insert(broker).inserted {
      do {
        guard
          case .initProducerId(let response) = try await core.send(
            .initProducerId(InitProducerIdRequest()), to: broker)
        else {
          throw StreamBusError(
            .protocolViolation, "InitProducerId to \(broker): wrong response type")
        }
        guard response.errorCode == .none else {
          throw StreamBusError.broker(
            response.errorCode,
            message: "InitProducerId to \(broker): \(response.errorCode.meaning)")
        }
        guard response.producerId >= 0, response.producerEpoch >= 0 else {
          throw StreamBusError(
            .protocolViolation,
            "InitProducerId to \(broker): producer id \(response.producerId) epoch \(response.producerEpoch)"
          )
        }
        return .success(
          ProducerIdentity(producerId: response.producerId, producerEpoch: response.producerEpoch))
      } catch {
        lastError = StreamBusError.wrapping(error, context: "InitProducerId to \(broker)")
        if lastError.isRetriable {
          retriableError = lastError
        }
      }
    }
    return .failure(retriableError ?? lastError)
  }

  private func producerIdArrived(_ result: Result<ProducerIdentity, StreamBusError>) {
    isRequestingProducerId = false
    lastProducerIdRequest = .now
    switch result {
    case .success(let newIdentity):
      producerIdFailures = 0
      identity = newIdentity
      nextSequences = [:]
    case .failure(let error):
      producerIdFailures += 1
      // Records waiting for an id fail now when retrying cannot help (a broker without
      // InitProducerId); otherwise they wait, up to their delivery timeout.
      for queue in queues.values {
        var waiting = queue.ready.filter { $0.sequenced == nil }
        if let open = queue.open { waiting.append(open) }
        for batch in waiting {
          batch.lastError = error
          if !error.isRetriable {
            removeFromQueue(batch)
            fail(batch, with: error)
          }
        }
      }
    }
    drain()
  }

  private func deliveryTimeoutError(_ batch: Batch) -> StreamBusError {
    let last = batch.lastError.map { "; last error: \($0)" } ?? ""
    return StreamBusError(
      .timeout, errorCode: batch.lastError?.errorCode,
      "not delivered within deliveryTimeoutMs \(config.deliveryTimeoutMs) after \(batch.attempts) attempts\(last)",
      topic: batch.topicPartition.topic, partition: batch.topicPartition.partition)
  }

  private func fail(_ batch: Batch, with error: StreamBusError) {
    complete(batch, with: .failure(error))
  }

  private func complete(_ batch: Batch, with result: Result<BatchAcknowledgement, StreamBusError>) {
    batch.completion.complete(result)
    release(bytes: batch.reservedBytes)
    batch.reservedBytes = 0
    batch.encoded = nil
    if let queue = queues[batch.topicPartition], queue.isIdle {
      queues[batch.topicPartition] = nil
    }
  }

  /// One refresh at a time, spaced by `retryBackoffMs` (growing exponentially while
  /// refreshes fail), then another drain. Only a drain that finds a batch waiting for
  /// metadata asks again, so refreshes stop once every such batch was sent or expired.
  private func refreshMetadataThenDrain() {
    guard !isRefreshingMetadata else { return }
    isRefreshingMetadata = true
    let waitMs: Int64
    if let last = lastMetadataRefresh {
      let spacingMs =
        metadataRefreshFailures == 0
        ? core.config.retryBackoffMs : core.config.backoffMs(attempt: metadataRefreshFailures)
      waitMs = max(0, spacingMs - (ContinuousClock.now - last).wholeMilliseconds)
    } else {
      waitMs = 0
    }
    let metadata = core.metadata
    Task { [weak self] in
      if waitMs > 0 {
        try? await Task.sleep(for: .milliseconds(waitMs))
      }
      let succeeded = (try? await metadata.refresh()) != nil
      await self?.metadataRefreshed(succeeded: succeeded)
    }
  }

  private func metadataRefreshed(succeeded: Bool) {
    isRefreshingMetadata = false
    lastMetadataRefresh = .now
    metadataRefreshFailures = succeeded ? 0 : metadataRefreshFailures + 1
    drain()
  }
}
