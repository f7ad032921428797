import NIOConcurrencyHelpers
import StreamBusProtocol
import StreamBusRecords
import StreamBusTransport

/// Consumer settings.
public struct ConsumerConfig: Sendable {
  /// What to do when a position is outside the log (`OFFSET_OUT_OF_RANGE`).
  public enum OffsetResetPolicy: Sendable, Hashable {
    /// Throw a `StreamBusError` naming the partition and offset.
    case none
    /// Jump to the log start offset.
    case earliest
    /// Jump to the latest offset.
    case latest
  }

  /// Where partitions without a position (never seeked) start, and what
  /// `OFFSET_OUT_OF_RANGE` does.
  public var offsetResetPolicy: OffsetResetPolicy = .none
  /// Bytes the broker waits for before answering a fetch early.
  public var fetchMinBytes: Int32 = 1
  /// Bound on one fetch response's records.
  public var fetchMaxBytes: Int32 = 50 * 1024 * 1024
  /// Bound on records per partition in one fetch response; grows automatically when a
  /// single batch is larger, so a big batch never blocks a partition.
  public var partitionMaxBytes: Int32 = 1024 * 1024

  public init(offsetResetPolicy: OffsetResetPolicy = .none) {
    self.offsetResetPolicy = offsetResetPolicy
  }
}

/// Where `Consumer.seek` moves a partition's position.
public enum SeekPosition: Sendable, Hashable {
  /// The log start offset.
  case earliest
  /// The latest offset: only records produced from now on.
  case latest
  case offset(Int64)
}

/// Reads records from explicitly assigned partitions (no consumer groups).
///
/// `poll` sends one Fetch per partition leader, covering all of that leader's assigned
/// partitions, and long-polls up to `maxWaitMs` for data. Positions advance past every record
/// returned; records below the position inside a fetched batch are skipped and an
/// incomplete batch at the end of a response is ignored (fetched again next time).
public actor Consumer {
  public let config: ConsumerConfig
  let core: ClientCore

  private enum Position: Equatable {
    case offset(Int64)
    case pending(SeekPosition)
  }

  private var positions: [TopicPartition: Position] = [:]
  private var assignment: [TopicPartition] = []
  private var partitionMaxBytes: [TopicPartition: Int32] = [:]
  /// Polls in a row that hit a leadership error or lost connection and returned nothing;
  /// spaces the next attempts by `retryBackoffMs` doubling up to `retryBackoffMaxMs`.
  private var retriableFailureStreak = 0

  public init(config: ClientConfig, consumerConfig: ConsumerConfig = ConsumerConfig()) {
    self.config = consumerConfig
    self.core = ClientCore(config: config)
  }

  public func close() async {
    await core.close()
  }

  /// Replaces the assignment. Partitions kept from the previous assignment keep their
  /// position; new ones start according to `offsetResetPolicy` (earliest when it is `.none`)
  /// unless `seek` is called.
  public func assign(_ partitions: [TopicPartition]) {
    assignment = Array(Set(partitions)).sorted()
    var kept: [TopicPartition: Position] = [:]
    for partition in assignment {
      kept[partition] = positions[partition] ?? .pending(defaultStart)
    }
    positions = kept
  }

  /// All partitions of `topic`, from metadata.
  public func partitions(of topic: String) async throws -> [TopicPartition] {
    let info = try await core.metadata.topic(topic, waitMs: core.config.metadataWaitMs)
    return info.partitions.map { TopicPartition(topic: topic, partition: $0.partition) }
  }

  public var assigned: [TopicPartition] { assignment }

  private var defaultStart: SeekPosition {
    config.offsetResetPolicy == .latest ? .latest : .earliest
  }

  /// Moves an assigned partition's position; earliest/latest are resolved on the next poll.
  public func seek(_ partition: TopicPartition, to position: SeekPosition) throws {
    guard positions[partition] != nil else {
      throw StreamBusError(
        .invalidArgument, "\(partition) is not assigned", topic: partition.topic,
        partition: partition.partition)
    }
    if case .offset(let offset) = position {
      guard offset >= 0 else {
        throw StreamBusError(
          .invalidArgument, "offset \(offset) is negative", topic: partition.topic,
          partition: partition.partition)
      }
      positions[partition] = .offset(offset)
    } else {
      positions[partition] = .pending(position)
    }
  }

  /// Seeks every assigned partition.
  public func seekAll(to position: SeekPosition) throws {
    for partition in assignment {
      try seek(partition, to: position)
    }
  }

  /// The next offset to be returned, nil while it is still to be resolved.
  public func position(of partition: TopicPartition) -> Int64? {
    if case .offset(let offset) = positions[partition] { return offset }
    return nil
  }

  /// Fetches from every assigned partition's leader, waiting up to `maxWaitMs` for records.
  /// Returns the records in offset order per partition (empty when none arrived in time).
  ///
  /// Leadership errors and lost connections are absorbed (metadata is refreshed and the next
  /// poll tries again); `OFFSET_OUT_OF_RANGE` resets per policy or throws; other broker
  /// errors throw.
  public func poll(maxWaitMs: Int64) async throws -> [ConsumerRecord] {
    guard !assignment.isEmpty else {
      throw StreamBusError(.invalidArgument, "poll without assigned partitions")
    }
    let started = ContinuousClock.now
    try await resolvePendingPositions()
    let metadata: ClusterMetadata
    do {
      metadata = try await core.metadata.current()
    } catch let error as StreamBusError where error.isRetriable {
      // No broker answered (all restarting, or a failover in progress): the next poll asks
      // again after a backoff, like any other leadership trouble.
      try await backOffAfterRetriableFailure(maxWaitMs: maxWaitMs, started: started)
      return []
    }
    var byLeader: [HostPort: [(TopicPartition, Int64, Int32)]] = [:]
    var missingLeader = false
    for partition in assignment {
      guard case .offset(let offset) = positions[partition] else { continue }
      guard let leader = metadata.leader(of: partition) else {
        missingLeader = true
        continue
      }
      byLeader[leader.broker.address, default: []].append((partition, offset, leader.epoch))
    }
    if byLeader.isEmpty {
      // Nothing to ask (no leader right now): wait instead of spinning, then let the caller
      // poll again.
      core.metadata.invalidate()
      try await backOffAfterRetriableFailure(maxWaitMs: maxWaitMs, started: started)
      return []
    }
    if missingLeader {
      core.metadata.invalidate()
    }
    let waitMs = Int32(clamping: max(0, maxWaitMs))
    let fetches = try await withThrowingTaskGroup(
      of: (HostPort, Result<FetchResponse, StreamBusError>).self
    ) { group in
      for (leader, entries) in byLeader {
        let request = fetchRequest(entries, maxWaitMs: waitMs)
        let core = core
        group.addTask {
          let result = await Self.fetchLeavingAReplacedLeader(
            request, to: leader, partitions: entries.map(\.0), waitMs: Int64(waitMs), core: core)
          return (leader, result)
        }
      }
      var results: [(HostPort, Result<FetchResponse, StreamBusError>)] = []
      for try await result in group {
        results.append(result)
      }
      return results
    }
    var records: [ConsumerRecord] = []
    var firstError: StreamBusError?
    var retriableFailure = false
    for (_, result) in fetches.sorted(by: { $0.0.description < $1.0.description }) {
      switch result {
      case .failure(let error):
        if error.isRetriable {
          retriableFailure = true
        } else {
          firstError = firstError ?? error
        }
      case .success(let response):
        do {
          let consumed = try consume(response)
          records += consumed.records
          retriableFailure = retriableFailure || consumed.retriableFailure
        } catch let error as StreamBusError {
          firstError = firstError ?? error
        }
      }
    }
    if let firstError, records.isEmpty {
      throw firstError
    }
    if retriableFailure {
      core.metadata.invalidate()
      if records.isEmpty {
        // A leader moved or a connection dropped. When fresh metadata already names a new
        // leader, the next poll goes there at once; otherwise pause so a caller polling in a
        // loop does not spin while metadata catches up. Either way the position stays.
        if await leadershipChanged(since: metadata) {
          return records
        }
        try await backOffAfterRetriableFailure(maxWaitMs: nil, started: started)
        return records
      }
    }
    retriableFailureStreak = 0
    return records
  }

  /// Sends one fetch. A leader cut off by a network partition never answers, and the fetch
  /// would wait out `requestTimeoutMs` although the controller elected a new leader after
  /// its session timeout: once the answer is `Producer.leaderCheckAfter` late (past the
  /// long-poll), metadata is refreshed every `retryBackoffMs`, and when it names another
  /// leader for one of `partitions` the fetch is given up as a retriable timeout (its late
  /// answer is dropped) and the next poll goes to the new leader.
  private static func fetchLeavingAReplacedLeader(
    _ request: FetchRequest, to leader: HostPort, partitions: [TopicPartition], waitMs: Int64,
    core: ClientCore
  ) async -> Result<FetchResponse, StreamBusError> {
    let settled = NIOLockedValueBox(false)
    return await withCheckedContinuation { continuation in
      @Sendable func settle(_ result: Result<FetchResponse, StreamBusError>) -> Bool {
        let first = settled.withLockedValue { done -> Bool in
          defer { done = true }
          return !done
        }
        if first { continuation.resume(returning: result) }
        return first
      }
      let watcher = Task {
        try? await Task.sleep(for: .milliseconds(waitMs) + Producer.leaderCheckAfter)
        while !Task.isCancelled && !settled.withLockedValue({ $0 }) {
          if let fresh = try? await core.metadata.refresh(),
            let moved = fresh.partitionLedElsewhere(among: partitions, than: leader)?.partition
          {
            _ = settle(
              .failure(
                StreamBusError(
                  .timeout,
                  "Fetch to \(leader): no answer after the long-poll and \(Producer.leaderCheckAfter); the metadata names another leader of \(moved)"
                )))
            return
          }
          try? await Task.sleep(for: .milliseconds(core.config.retryBackoffMs))
        }
      }
      Task {
        let result: Result<FetchResponse, StreamBusError>
        do {
          let response = try await core.send(
            .fetch(request), to: leader, timeoutMs: core.config.requestTimeoutMs + waitMs)
          guard case .fetch(let body) = response else {
            throw StreamBusError(.protocolViolation, "Fetch to \(leader): wrong response type")
          }
          result = .success(body)
        } catch {
          result = .failure(StreamBusError.wrapping(error, context: "Fetch to \(leader)"))
        }
        watcher.cancel()
        _ = settle(result)
      }
    }
  }

  /// Refreshes metadata; true when an assigned partition now has another leader or a newer
  /// leader epoch than in `previous`.
  private func leadershipChanged(since previous: ClusterMetadata) async -> Bool {
    guard let fresh = try? await core.metadata.refresh() else { return false }
    return assignment.contains { partition in
      guard let now = fresh.leader(of: partition) else { return false }
      guard let before = previous.leader(of: partition) else { return true }
      return now.broker.address != before.broker.address || now.epoch > before.epoch
    }
  }

  /// Sleeps the retry backoff for the current streak of failed polls (bounded by what is
  /// left of `maxWaitMs`, when given).
  private func backOffAfterRetriableFailure(maxWaitMs: Int64?, started: ContinuousClock.Instant)
    async throws
  {
    retriableFailureStreak += 1
    var sleepMs = core.config.backoffMs(attempt: retriableFailureStreak)
    if let maxWaitMs {
      sleepMs = min(sleepMs, maxWaitMs - (ContinuousClock.now - started).wholeMilliseconds)
    }
    try await Task.sleep(for: .clampedMilliseconds(sleepMs))
  }

  private func fetchRequest(_ entries: [(TopicPartition, Int64, Int32)], maxWaitMs: Int32)
    -> FetchRequest
  {
    let byTopic = Dictionary(grouping: entries) { $0.0.topic }
    return FetchRequest(
      maxWaitMs: maxWaitMs, minBytes: config.fetchMinBytes, maxBytes: config.fetchMaxBytes,
      topics: byTopic.keys.sorted().map { topic in
        FetchRequest.Topic(
          name: topic,
          partitions: (byTopic[topic] ?? []).map { entry in
            FetchRequest.Partition(
              partition: entry.0.partition, currentLeaderEpoch: entry.2, fetchOffset: entry.1,
              partitionMaxBytes: partitionMaxBytes[entry.0] ?? config.partitionMaxBytes)
          })
      })
  }

  /// Decodes one fetch response, advancing positions.
  private func consume(_ response: FetchResponse) throws -> (
    records: [ConsumerRecord], retriableFailure: Bool
  ) {
    var records: [ConsumerRecord] = []
    var firstError: StreamBusError?
    var retriableFailure = false
    for topic in response.topics {
      for answer in topic.partitions {
        let partition = TopicPartition(topic: topic.name, partition: answer.partition)
        guard case .offset(let position) = positions[partition] else { continue }
        switch answer.errorCode {
        case .none:
          let decoded = try decode(answer.records, partition: partition, from: position)
          records += decoded.records
          if decoded.nextOffset > position {
            positions[partition] = .offset(decoded.nextOffset)
            partitionMaxBytes[partition] = nil
          } else if decoded.partialBytes > 0 {
            // A batch larger than the partition bound: ask for more next time.
            let current = partitionMaxBytes[partition] ?? config.partitionMaxBytes
            partitionMaxBytes[partition] = Int32(
              clamping: min(Int64(current) * 2, Int64(config.fetchMaxBytes)))
          }
        case .offsetOutOfRange:
          switch config.offsetResetPolicy {
          case .none:
            firstError =
              firstError
              ?? StreamBusError.broker(
                .offsetOutOfRange,
                message:
                  "offset \(position) is outside the log (log start \(answer.logStartOffset), high watermark \(answer.highWatermark))",
                topic: partition.topic, partition: partition.partition)
          case .earliest:
            positions[partition] = .pending(.earliest)
          case .latest:
            positions[partition] = .pending(.latest)
          }
        default:
          let error = StreamBusError.broker(
            answer.errorCode, topic: partition.topic, partition: partition.partition)
          if error.isRetriable {
            retriableFailure = true
          } else {
            firstError = firstError ?? error
          }
        }
      }
    }
    if let firstError, records.isEmpty {
      throw firstError
    }
    return (records, retriableFailure)
  }

  private func decode(_ bytes: [UInt8], partition: TopicPartition, from position: Int64) throws
    -> DecodedRecords
  {
    do {
      return try bytes.withUnsafeBytes { buffer in
        try Self.decodeBatches(buffer, partition: partition, from: position)
      }
    } catch {
      throw StreamBusError(
        .protocolViolation, errorCode: .corruptMessage,
        "records fetched from offset \(position) do not decode: \(error)", topic: partition.topic,
        partition: partition.partition)
    }
  }

  struct DecodedRecords {
    var records: [ConsumerRecord] = []
    /// The offset after the last complete batch (the position when there was none).
    var nextOffset: Int64
    /// Bytes of an incomplete batch at the end of the response.
    var partialBytes = 0
  }

  static func decodeBatches(
    _ buffer: UnsafeRawBufferPointer, partition: TopicPartition, from position: Int64
  ) throws -> DecodedRecords {
    var result = DecodedRecords(nextOffset: position)
    var scanner = RecordBatchScanner(buffer)
    while let span = try scanner.next() {
      let header = span.header
      if header.nextOffset <= result.nextOffset {
        continue
      }
      if header.isControl {
        result.nextOffset = header.nextOffset
        continue
      }
      let batch = try RecordBatch.decode(UnsafeRawBufferPointer(rebasing: buffer[span.range]))
      for record in batch.records where record.offset >= result.nextOffset {
        result.records.append(
          ConsumerRecord(
            topic: partition.topic, partition: partition.partition, offset: record.offset,
            timestamp: header.usesLogAppendTime ? header.maxTimestamp : record.timestamp,
            key: record.key, value: record.value,
            headers: record.headers.map { Header(key: $0.key, value: $0.value) }))
      }
      result.nextOffset = header.nextOffset
    }
    result.partialBytes = scanner.partialTailByteCount
    return result
  }

  /// Turns earliest/latest into offsets with ListOffsets at the leaders.
  private func resolvePendingPositions() async throws {
    var earliest: [TopicPartition] = []
    var latest: [TopicPartition] = []
    for partition in assignment {
      if case .pending(let seek) = positions[partition] {
        switch seek {
        case .earliest: earliest.append(partition)
        case .latest: latest.append(partition)
        case .offset(let offset): positions[partition] = .offset(offset)
        }
      }
    }
    for (partitions, timestamp, seek) in [
      (earliest, ListOffsetsRequest.earliestTimestamp, SeekPosition.earliest),
      (latest, ListOffsetsRequest.latestTimestamp, SeekPosition.latest),
    ] where !partitions.isEmpty {
      let results = await OffsetLookup.listOffsets(partitions, timestamp: timestamp, core: core)
      for partition in partitions {
        // Another seek may have happened while the lookup was out.
        guard positions[partition] == .pending(seek) else { continue }
        switch results[partition] {
        case .success(let offset):
          positions[partition] = .offset(offset)
        case .failure(let error) where !error.isRetriable:
          throw error
        default:
          break
        }
      }
    }
  }
}
