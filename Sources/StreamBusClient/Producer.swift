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
  /// Bound on the batches of one produce request.
  public var requestBytesMax: Int = 1024 * 1024
  /// A record fails once this long has passed since it was queued, retries included.
  public var deliveryTimeoutMs: Int64 = 120_000

  public init(acks: Acks = .all) {
    self.acks = acks
  }
}

/// Sends records to partition leaders in batches.
///
/// Records are grouped per partition into Kafka v2 record batches. A batch is sent once it
/// reaches `batchBytes`, once it is `lingerMs` old, or on `flush()`/`close()`. Each request to
/// a broker carries at most one batch per partition and at most `inflightRequestsMax`
/// requests are outstanding per broker.
///
/// Ordering: at most one batch per partition is in flight, and a batch that failed with a
/// retriable error is retried before any later batch of its partition, so records of one
/// partition are appended in `send` order. Delivery is at least once: a retry after a lost
/// connection may append a batch the broker had already appended.
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
    let completion = BatchCompletion()
    var attempts = 0
    var retryAfter: ContinuousClock.Instant?
    var encoded: [UInt8]?
    var lastError: StreamBusError?
    /// After a leadership or connection error: the batch waits for a metadata refresh that
    /// completes after the failure (the cache's refresh count reaching this value).
    var metadataRefreshRequired: Int?

    init(id: UInt64, topicPartition: TopicPartition, createdAt: ContinuousClock.Instant) {
      self.id = id
      self.topicPartition = topicPartition
      self.createdAt = createdAt
    }
  }

  private struct PartitionQueue {
    /// Still accepting records.
    var open: Batch?
    /// Closed batches (full, or put back for a retry), oldest first.
    var ready: [Batch] = []
    var inFlight: Batch?

    var isIdle: Bool { open == nil && ready.isEmpty && inFlight == nil }
  }

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
  private var random = SystemRandomNumberGenerator()

  public init(config: ClientConfig, producerConfig: ProducerConfig = ProducerConfig()) {
    precondition(producerConfig.batchBytes > 0, "batchBytes must be positive")
    precondition(producerConfig.inflightRequestsMax > 0, "inflightRequestsMax must be positive")
    precondition(
      producerConfig.bufferBytesMax >= producerConfig.batchBytes,
      "bufferBytesMax must hold at least one batch")
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
        <= min(config.bufferBytesMax, config.requestBytesMax)
    else {
      throw StreamBusError(
        .invalidArgument, errorCode: .messageTooLarge,
        "record of about \(recordBytes) bytes exceeds bufferBytesMax \(config.bufferBytesMax) or requestBytesMax \(config.requestBytesMax)",
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
      if let inFlight = queue.inFlight { completions.append(inFlight.completion) }
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
    if let open = queue.open, open.estimatedBytes + recordBytes > config.batchBytes {
      queue.ready.append(open)
      queue.open = nil
      closedBatch = true
    }
    let batch: Batch
    if let open = queue.open {
      batch = open
    } else {
      batch = Batch(id: nextBatchId, topicPartition: topicPartition, createdAt: .now)
      nextBatchId += 1
      queue.open = batch
      if config.lingerMs > 0 {
        let lingerMs = config.lingerMs
        Task { [weak self] in
          try? await Task.sleep(for: .milliseconds(lingerMs))
          await self?.drain()
        }
      }
    }
    batch.builder.append(
      key: key, value: value,
      headers: headers.map { RecordHeader(key: $0.key, value: $0.value) }, timestamp: timestamp)
    batch.estimatedBytes += recordBytes
    batch.reservedBytes += recordBytes
    let isFull = batch.estimatedBytes >= config.batchBytes
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

  /// Sends every batch that may go now: per partition the oldest closed batch (or the open
  /// one once lingered or flushing), when no batch of that partition is in flight and its
  /// leader's connection has room.
  private func drain() {
    let now = ContinuousClock.now
    // Count first: the snapshot read after it is at least that fresh.
    let refreshCount = core.metadata.refreshCount
    let metadata = core.metadata.snapshot
    var needsMetadata = false
    var earliestRetry: ContinuousClock.Instant?
    var plans: [HostPort: (bytes: Int, batches: [Batch])] = [:]
    let lingerMs = config.lingerMs
    for (topicPartition, queue) in queues where queue.inFlight == nil {
      let candidate: Batch
      if let first = queue.ready.first {
        if let retryAfter = first.retryAfter, retryAfter > now {
          earliestRetry = min(earliestRetry ?? retryAfter, retryAfter)
          continue
        }
        candidate = first
      } else if let open = queue.open,
        flushesRunning > 0 || (now - open.createdAt).wholeMilliseconds >= lingerMs
      {
        candidate = open
      } else {
        continue
      }
      if (now - candidate.createdAt).wholeMilliseconds >= config.deliveryTimeoutMs {
        removeFromQueue(candidate)
        fail(candidate, with: deliveryTimeoutError(candidate))
        continue
      }
      if let required = candidate.metadataRefreshRequired, refreshCount < required {
        needsMetadata = true
        continue
      }
      guard let leader = metadata.leader(of: topicPartition)?.broker.address else {
        needsMetadata = true
        continue
      }
      guard inflightRequestsByBroker[leader, default: 0] < config.inflightRequestsMax else {
        continue
      }
      let encodedBytes = candidate.encoded?.count ?? candidate.estimatedBytes
      if let planned = plans[leader]?.bytes, planned + encodedBytes > config.requestBytesMax {
        continue
      }
      if plans[leader] == nil {
        plans[leader] = (encodedBytes, [candidate])
      } else {
        plans[leader]?.bytes += encodedBytes
        plans[leader]?.batches.append(candidate)
      }
    }
    for (leader, plan) in plans {
      for batch in plan.batches {
        removeFromQueue(batch)
        queues[batch.topicPartition]?.inFlight = batch
        if batch.encoded == nil {
          batch.encoded = batch.builder.build()
        }
        batchLeftAccumulator(batch.topicPartition)
      }
      send(plan.batches, to: leader)
    }
    if needsMetadata {
      refreshMetadataThenDrain()
    }
    if let earliestRetry {
      Task { [weak self] in
        try? await Task.sleep(until: earliestRetry, clock: .continuous)
        await self?.drain()
      }
    }
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

  private func send(_ batches: [Batch], to leader: HostPort) {
    inflightRequestsByBroker[leader, default: 0] += 1
    var byTopic: [String: [ProduceRequest.Partition]] = [:]
    for batch in batches {
      byTopic[batch.topicPartition.topic, default: []].append(
        ProduceRequest.Partition(
          partition: batch.topicPartition.partition, records: batch.encoded ?? []))
    }
    let request = ProduceRequest(
      acks: config.acks.wireValue,
      timeoutMs: Int32(clamping: core.config.requestTimeoutMs),
      topics: byTopic.keys.sorted().map {
        ProduceRequest.Topic(name: $0, partitions: byTopic[$0] ?? [])
      })
    let batchIds = batches.map { ($0.topicPartition, $0.id) }
    let core = core
    let acks = config.acks
    Task {
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
      self.handleOutcome(outcome, batchIds: batchIds, leader: leader)
    }
  }

  private func handleOutcome(
    _ outcome: Result<ProduceResponse?, StreamBusError>,
    batchIds: [(TopicPartition, UInt64)], leader: HostPort
  ) {
    inflightRequestsByBroker[leader, default: 1] -= 1
    var invalidate = false
    for (topicPartition, id) in batchIds {
      guard let batch = queues[topicPartition]?.inFlight, batch.id == id else { continue }
      queues[topicPartition]?.inFlight = nil
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
          result =
            answer.errorCode == .none
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
        complete(batch, with: .success(acknowledgement))
      case .failure(let error):
        let error =
          error.topic == nil
          ? StreamBusError(
            error.kind, errorCode: error.errorCode, error.message, topic: topicPartition.topic,
            partition: topicPartition.partition) : error
        invalidate = invalidate || error.invalidatesMetadata
        retryOrFail(batch, error: error)
      }
    }
    if invalidate {
      core.metadata.invalidate()
      refreshMetadataThenDrain()
    }
    drain()
  }

  private func retryOrFail(_ batch: Batch, error: StreamBusError) {
    batch.lastError = error
    batch.attempts += 1
    let backoff = Duration.clampedMilliseconds(core.config.backoffMs(attempt: batch.attempts))
    let deadline = batch.createdAt + .clampedMilliseconds(config.deliveryTimeoutMs)
    guard error.isRetriable, ContinuousClock.now + backoff < deadline else {
      fail(batch, with: error.isRetriable ? deliveryTimeoutError(batch) : error)
      return
    }
    batch.retryAfter = .now + backoff
    batch.metadataRefreshRequired =
      error.invalidatesMetadata ? core.metadata.refreshCount + 1 : nil
    queues[batch.topicPartition, default: PartitionQueue()].ready.insert(batch, at: 0)
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

  /// One refresh at a time, spaced by `retryBackoffMs`, then another drain.
  private func refreshMetadataThenDrain() {
    guard !isRefreshingMetadata else { return }
    isRefreshingMetadata = true
    let waitMs: Int64
    if let last = lastMetadataRefresh {
      waitMs = max(0, core.config.retryBackoffMs - (ContinuousClock.now - last).wholeMilliseconds)
    } else {
      waitMs = 0
    }
    let metadata = core.metadata
    Task { [weak self] in
      if waitMs > 0 {
        try? await Task.sleep(for: .milliseconds(waitMs))
      }
      _ = try? await metadata.refresh()
      await self?.metadataRefreshed()
    }
  }

  private func metadataRefreshed() {
    isRefreshingMetadata = false
    lastMetadataRefresh = .now
    drain()
  }
}
