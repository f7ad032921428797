import Logging
import NIOConcurrencyHelpers
import StreamBusProtocol
import StreamBusStorage
import StreamBusTransport

/// Decodes each request frame and dispatches it to the replicas; the transport's
/// `FrameRequestHandler`.
///
/// The transport calls `handle` for one connection's requests one at a time, in arrival
/// order, and every request is processed inside that call: a produce's appends are written
/// before it returns, so pipelined produces to a partition get offsets in send order. Only
/// waits go into a `.deferred` reply, which runs while later requests are processed: an
/// acks=all produce waiting for its commit (so one connection's pipelined produces share
/// fdatasyncs) and a fetch long-poll waiting for data.
///
/// A request whose header cannot be read closes the connection (the transport logs the
/// reason); a request with a readable header but a bad body is answered with its error
/// response and logged here. Neither touches stored data.
public final class RequestRouter: FrameRequestHandler {
  public let replicaManager: ReplicaManager
  private let configuration: BrokerConfiguration
  let logger: Logger
  /// Producer ids for InitProducerId (standalone: a file in the data directory).
  let producerIdSource: any ProducerIdSource
  /// This broker as Metadata describes it; the port is known only once bound.
  private let advertisedBroker: NIOLockedValueBox<MetadataResponse.Broker>
  /// Set when the broker begins to shut down: waiting fetches answer at once.
  private let isShuttingDown = NIOLockedValueBox(false)
  /// Cluster mode: Metadata comes from the image, topic admin goes to the metaservers.
  let cluster: ClusterMetadataView?

  public init(
    replicaManager: ReplicaManager, configuration: BrokerConfiguration,
    producerIdSource: any ProducerIdSource, logger: Logger, cluster: ClusterMetadataView? = nil
  ) {
    self.replicaManager = replicaManager
    self.producerIdSource = producerIdSource
    self.configuration = configuration
    self.logger = logger
    self.cluster = cluster
    self.advertisedBroker = NIOLockedValueBox(
      MetadataResponse.Broker(
        nodeId: configuration.nodeId, host: configuration.effectiveAdvertisedHost,
        port: Int32(configuration.listen.port)))
  }

  /// Sets the port Metadata announces (the bound one when listening on port 0).
  public func setAdvertisedPort(_ port: Int) {
    advertisedBroker.withLockedValue { $0.port = Int32(port) }
  }

  /// Ends every fetch long-poll now, so connections drain without waiting out maxWaitMs.
  public func beginShutdown() async {
    isShuttingDown.withLockedValue { $0 = true }
    for replica in replicaManager.allReplicas() {
      replica.fetchWaiters.signalAll()
    }
  }

  public func handle(frame: [UInt8], connection: ConnectionInfo) async -> FrameReply {
    let header: RequestHeader
    let request: Request
    do {
      (header, request) = try Request.decode(payload: frame)
    } catch let error as RequestBodyError {
      logger.warning(
        "answering malformed request with \(error.errorCode)",
        metadata: ["connection": "\(connection)", "error": "\(error)"])
      return .respond(Self.errorPayload(error))
    } catch {
      return .close(reason: "unreadable request header: \(error)")
    }
    let responseHeader = ResponseHeader(correlationId: header.correlationId)
    let response: Response
    switch request {
    case .produce(let body):
      let produce = await appendAll(body)
      if body.acks == 0 {
        return .noResponse
      }
      guard produce.awaitsCommit else {
        return .respond(
          Response.produce(await produce.response()).encodePayload(
            header: responseHeader, version: header.apiVersion))
      }
      return .deferred {
        .respond(
          Response.produce(await produce.response()).encodePayload(
            header: responseHeader, version: header.apiVersion))
      }
    case .fetch(let body):
      if body.replicaId >= 0 && cluster == nil && !hostsClusterReplica(body) {
        return .respond(
          ResponseHeader(
            correlationId: header.correlationId, errorCode: .invalidRequest,
            errorMessage:
              "replica fetch from broker \(body.replicaId): this broker runs standalone "
              + "and has no followers"
          ).encodeErrorOnly())
      }
      if let stale = staleReplicaRefusal(body) {
        return .respond(
          ResponseHeader(
            correlationId: header.correlationId, errorCode: .staleBrokerEpoch,
            errorMessage: stale
          ).encodeErrorOnly())
      }
      switch await startFetch(body) {
      case .answered(let answer):
        return .respondParts(answer.encodeParts(header: responseHeader, version: header.apiVersion))
      case .waiting(let longPoll):
        return .deferred {
          .respondParts(
            await self.finishFetch(longPoll).encodeParts(
              header: responseHeader, version: header.apiVersion))
        }
      }
    case .listOffsets(let body):
      response = .listOffsets(await listOffsets(body))
    case .metadata(let body):
      response = .metadata(cluster?.metadata(body) ?? metadata(body))
    case .apiVersions:
      response = .apiVersions(.supportedByThisBuild)
    case .createTopics(let body):
      if let cluster {
        response = .createTopics(await cluster.createTopics(body))
      } else {
        response = .createTopics(await createTopics(body))
      }
    case .deleteTopics(let body):
      if let cluster {
        response = .deleteTopics(await cluster.deleteTopics(body))
      } else {
        response = .deleteTopics(await deleteTopics(body))
      }
    case .initProducerId(let body):
      response = .initProducerId(await initProducerId(body))
    case .replicaStatus(let body):
      response = .replicaStatus(await replicaStatus(body))
    }
    return .respond(response.encodePayload(header: responseHeader, version: header.apiVersion))
  }

  static func errorPayload(_ error: RequestBodyError) -> [UInt8] {
    if error.header.apiKey == .apiVersions && error.underlying.code == .unsupportedVersion {
      return Response.apiVersions(.supportedByThisBuild).encodePayload(
        header: error.errorResponseHeader, version: ApiVersionsResponse.fallbackVersion)
    }
    return error.errorResponseHeader.encodeErrorOnly()
  }

  // MARK: Produce

  /// A produce request whose appends are written; `response()` waits for the commits its
  /// acks level needs.
  struct PendingProduce: Sendable {
    let request: ProduceRequest
    /// Per topic, per partition, in request order; empty when the whole request failed.
    let appends: [[PendingAppend]]
    /// The answer of a request refused as a whole.
    let refusal: ProduceResponse?

    var awaitsCommit: Bool { appends.contains { $0.contains { $0.awaitsCommit } } }

    func response() async -> ProduceResponse {
      if let refusal { return refusal }
      var outcomes: [[AppendOutcome]] = []
      outcomes.reserveCapacity(appends.count)
      for topic in appends {
        var topicOutcomes: [AppendOutcome] = []
        topicOutcomes.reserveCapacity(topic.count)
        for append in topic {
          // Sequential waits: the total is still the slowest one's.
          topicOutcomes.append(await append.outcome())
        }
        outcomes.append(topicOutcomes)
      }
      return ProduceResponse(
        topics: request.topics.enumerated().map { topicIndex, topic in
          ProduceResponse.Topic(
            name: topic.name,
            partitions: topic.partitions.enumerated().map { partitionIndex, partition in
              let outcome = outcomes[topicIndex][partitionIndex]
              return ProduceResponse.Partition(
                partition: partition.partition, errorCode: outcome.errorCode,
                errorMessage: outcome.errorMessage, baseOffset: outcome.baseOffset,
                logStartOffset: outcome.logStartOffset, logAppendTimeMs: -1)
            })
        })
    }
  }

  /// Writes every partition's batches and returns once all are written (acks=all commits
  /// are still pending): the caller's next request appends strictly after these.
  func appendAll(_ request: ProduceRequest) async -> PendingProduce {
    guard request.acks == 0 || request.acks == 1 || request.acks == -1 else {
      return PendingProduce(
        request: request, appends: [],
        refusal: ProduceResponse(
          topics: request.topics.map { topic in
            ProduceResponse.Topic(
              name: topic.name,
              partitions: topic.partitions.map {
                ProduceResponse.Partition(
                  partition: $0.partition, errorCode: .invalidRequiredAcks,
                  errorMessage: "acks must be 0, 1 or -1, not \(request.acks)", baseOffset: -1,
                  logStartOffset: -1, logAppendTimeMs: -1)
              })
          }))
    }
    let nowMs = PartitionLog.wallClockMs()
    let timeoutMs = Int64(request.timeoutMs)
    var appends: [[PendingAppend?]] = request.topics.map {
      Array(repeating: nil, count: $0.partitions.count)
    }
    let partitionCount = request.topics.reduce(0) { $0 + $1.partitions.count }
    if partitionCount == 1,
      let topicIndex = request.topics.firstIndex(where: { !$0.partitions.isEmpty })
    {
      // The common case: no task group.
      let topic = request.topics[topicIndex]
      appends[topicIndex][0] = await appendPartition(
        topic: topic.name, topic.partitions[0], acks: request.acks, timeoutMs: timeoutMs,
        nowMs: nowMs)
    } else {
      // Different partitions are independent: their appends run concurrently.
      await withTaskGroup(of: (Int, Int, PendingAppend).self) { group in
        for (topicIndex, topic) in request.topics.enumerated() {
          for (partitionIndex, partition) in topic.partitions.enumerated() {
            group.addTask {
              let append = await self.appendPartition(
                topic: topic.name, partition, acks: request.acks, timeoutMs: timeoutMs,
                nowMs: nowMs)
              return (topicIndex, partitionIndex, append)
            }
          }
        }
        for await (topicIndex, partitionIndex, append) in group {
          appends[topicIndex][partitionIndex] = append
        }
      }
    }
    return PendingProduce(
      request: request,
      appends: appends.map { topic in
        topic.map { $0 ?? .done(.failure(.unknownServerError, "partition was not processed")) }
      },
      refusal: nil)
  }

  private func appendPartition(
    topic: String, _ partition: ProduceRequest.Partition, acks: Int16, timeoutMs: Int64,
    nowMs: Int64
  ) async -> PendingAppend {
    let topicPartition = TopicPartition(topic: topic, partition: partition.partition)
    guard let replica = replicaManager.replica(topicPartition) else {
      return .done(
        .failure(
          .unknownTopicOrPartition, "partition \(topicPartition) does not exist on this broker"))
    }
    guard partition.records.count <= configuration.messageBytesMax else {
      return .done(
        .failure(
          .messageTooLarge,
          "\(partition.records.count) bytes of records for \(topicPartition) exceed "
            + "message.max.bytes \(configuration.messageBytesMax)"))
    }
    return await replica.append(
      partition.records, acks: acks, timeoutMs: timeoutMs, nowMs: nowMs)
  }

  // MARK: Fetch

  /// Whether a follower's fetch names a partition this broker hosts as a cluster replica
  /// (a standalone broker has no followers).
  private func hostsClusterReplica(_ request: FetchRequest) -> Bool {
    request.topics.contains { topic in
      topic.partitions.contains { partition in
        replicaManager.replica(TopicPartition(topic: topic.name, partition: partition.partition))?
          .localBrokerID != nil
      }
    }
  }

  /// Why a follower's fetch is refused as coming from an incarnation of its broker that has
  /// since been replaced (a zombie process: its fetch offsets describe a log that is no
  /// longer the replica's and must not move the high watermark or the ISR), or nil. An
  /// epoch above the one in this broker's metadata is a newer registration not applied here
  /// yet; -1 is a fetcher that does not know its epoch.
  private func staleReplicaRefusal(_ request: FetchRequest) -> String? {
    guard request.replicaId >= 0, request.replicaBrokerEpoch >= 0,
      let registered = cluster?.brokerEpoch(of: request.replicaId),
      request.replicaBrokerEpoch < registered
    else { return nil }
    return "replica fetch from broker \(request.replicaId) at broker epoch "
      + "\(request.replicaBrokerEpoch); its registration is at epoch \(registered)"
  }

  /// A fetch that found too little data on its first read and waits for more.
  struct FetchLongPoll: Sendable {
    let request: FetchRequest
    let deadline: ContinuousClock.Instant
  }

  enum FetchStart: Sendable {
    case answered(FetchAnswer)
    case waiting(FetchLongPoll)
  }

  /// Reads once, in request order with the connection's other requests. Answers at once when
  /// at least `minBytes` are available, a partition has an error, or `maxWaitMs` is 0;
  /// otherwise `finishFetch` waits, off the connection's request order.
  func startFetch(_ request: FetchRequest) async -> FetchStart {
    let maxWaitMs = min(max(Int64(request.maxWaitMs), 0), configuration.fetchWaitMsMax)
    let deadline = ContinuousClock.now.advanced(by: .milliseconds(maxWaitMs))
    let result = await readAll(request)
    if result.isComplete(minBytes: Int(request.minBytes)) || maxWaitMs == 0
      || isShuttingDown.withLockedValue({ $0 })
    {
      return .answered(result.response)
    }
    return .waiting(FetchLongPoll(request: request, deadline: deadline))
  }

  /// Answers once at least `minBytes` are available, a partition has an error, the
  /// deadline passes, the broker shuts down or the task is cancelled (connection closed);
  /// in between it sleeps until a partition's high watermark moves (or, for a follower's
  /// fetch, its log end offset) and then reads again only the partitions with news: the
  /// answers of the others, which had nothing, still hold.
  func finishFetch(_ longPoll: FetchLongPoll) async -> FetchAnswer {
    let request = longPoll.request
    let minBytes = Int(request.minBytes)
    let wakeup = FetchWakeup()
    var replicas: [PartitionReplica] = []
    for topic in request.topics {
      for partition in topic.partitions {
        if let replica = replicaManager.replica(
          TopicPartition(topic: topic.name, partition: partition.partition))
        {
          replicas.append(replica)
          replica.fetchWaiters.add(wakeup, isFollowerFetch: request.replicaId >= 0)
        }
      }
    }
    let timer = Task {
      try? await Task.sleep(until: longPoll.deadline, clock: ContinuousClock())
      wakeup.signal()
    }
    var result = await readAll(request)
    while !result.isComplete(minBytes: minBytes) && ContinuousClock.now < longPoll.deadline
      && !isShuttingDown.withLockedValue({ $0 }) && !Task.isCancelled
    {
      let news = await wakeup.wait()
      result = await readAll(
        request, keepingIdleAnswersOf: news.everything ? nil : result, except: news.partitions)
    }
    timer.cancel()
    for replica in replicas {
      replica.fetchWaiters.remove(wakeup)
    }
    return result.response
  }

  private struct FetchResult {
    var response: FetchAnswer
    var recordBytes: Int
    var hasError: Bool
    /// Record bytes of each partition's answer, by topic and partition index.
    var partitionBytes: [[Int]]

    func isComplete(minBytes: Int) -> Bool {
      hasError || recordBytes >= minBytes
    }
  }

  /// Reads every partition of the fetch, in request order. With `previous`, a partition
  /// that is not in `changed` and had neither records nor an error there keeps its answer
  /// instead of being read again.
  private func readAll(
    _ request: FetchRequest, keepingIdleAnswersOf previous: FetchResult? = nil,
    except changed: Set<TopicPartition> = []
  ) async -> FetchResult {
    // The response must fit in one frame the client accepts; leave room for the headers.
    let responseRecordBytesMax = max(configuration.frameBytesMax - 64 * 1024, 0)
    var remainingBytes = min(max(Int(request.maxBytes), 0), responseRecordBytesMax)
    var recordBytes = 0
    var hasError = false
    var topics: [FetchResponse.Topic] = []
    topics.reserveCapacity(request.topics.count)
    var recordsFiles: [[LogFileSlice?]] = []
    recordsFiles.reserveCapacity(request.topics.count)
    var partitionBytes: [[Int]] = []
    partitionBytes.reserveCapacity(request.topics.count)
    for (topicIndex, topic) in request.topics.enumerated() {
      var partitions: [FetchResponse.Partition] = []
      partitions.reserveCapacity(topic.partitions.count)
      var topicFiles: [LogFileSlice?] = []
      topicFiles.reserveCapacity(topic.partitions.count)
      var topicBytes: [Int] = []
      topicBytes.reserveCapacity(topic.partitions.count)
      for (partitionIndex, partition) in topic.partitions.enumerated() {
        let topicPartition = TopicPartition(topic: topic.name, partition: partition.partition)
        let maxBytes = min(max(Int(partition.partitionMaxBytes), 0), remainingBytes)
        let answer: FetchResponse.Partition
        let recordsFile: LogFileSlice?
        let byteCount: Int
        if let previous, previous.partitionBytes[topicIndex][partitionIndex] == 0,
          !changed.contains(topicPartition)
        {
          // The loop waits only while no answer has an error, so this one had nothing.
          answer = previous.response.response.topics[topicIndex].partitions[partitionIndex]
          recordsFile = nil
          byteCount = 0
        } else if let replica = replicaManager.replica(topicPartition) {
          if request.replicaId >= 0 {
            let outcome = await replica.readForFollower(
              FollowerFetch(
                replicaID: request.replicaId, fetchOffset: partition.fetchOffset,
                lastFetchedEpoch: partition.lastFetchedEpoch,
                currentLeaderEpoch: partition.currentLeaderEpoch,
                logStartOffset: partition.logStartOffset, maxBytes: maxBytes),
              // Copied, not sent as a file range: a follower read reaches above the high
              // watermark, and if this leader is deposed and truncates that tail while a
              // range of it waits in the socket queue, sendfile would make no progress.
              // Consumer reads stop at the high watermark, which truncation never cuts.
              nowMs: PartitionLog.wallClockMs(), asFileSlice: false)
            // A follower must learn of its divergence now, not after the long-poll.
            if outcome.errorCode != .none || outcome.divergingEpoch != nil {
              hasError = true
            }
            answer = FetchResponse.Partition(
              partition: partition.partition, errorCode: outcome.errorCode,
              highWatermark: outcome.highWatermark, logStartOffset: outcome.logStartOffset,
              logEndOffset: outcome.logEndOffset,
              divergingEpoch: outcome.divergingEpoch.map {
                FetchResponse.EpochEndOffset(epoch: $0.epoch, endOffset: $0.endOffset)
              } ?? .none,
              currentLeader: FetchResponse.LeaderIdAndEpoch(
                leaderId: outcome.leaderID, leaderEpoch: outcome.leaderEpoch),
              records: outcome.records)
            recordsFile = outcome.recordsFile
            byteCount = outcome.recordByteCount
          } else {
            let outcome =
              configuration.fetchSendsFileRanges
              ? await replica.readSlice(
                from: partition.fetchOffset, maxBytes: maxBytes,
                currentLeaderEpoch: partition.currentLeaderEpoch)
              : await replica.read(
                from: partition.fetchOffset, maxBytes: maxBytes,
                currentLeaderEpoch: partition.currentLeaderEpoch)
            if outcome.errorCode != .none {
              hasError = true
            }
            var leader = outcome.currentLeader
            if replica.localBrokerID == nil && leader.leaderEpoch >= 0 {
              leader.leaderId = configuration.nodeId
            }
            answer = FetchResponse.Partition(
              partition: partition.partition, errorCode: outcome.errorCode,
              highWatermark: outcome.highWatermark, logStartOffset: outcome.logStartOffset,
              logEndOffset: outcome.logEndOffset, currentLeader: leader,
              records: outcome.records)
            recordsFile = outcome.recordsFile
            byteCount = outcome.recordByteCount
          }
        } else {
          hasError = true
          answer = FetchResponse.Partition(
            partition: partition.partition, errorCode: .unknownTopicOrPartition,
            highWatermark: -1, logStartOffset: -1, logEndOffset: -1, records: [])
          recordsFile = nil
          byteCount = 0
        }
        remainingBytes -= byteCount
        recordBytes += byteCount
        topicFiles.append(recordsFile)
        topicBytes.append(byteCount)
        partitions.append(answer)
      }
      topics.append(FetchResponse.Topic(name: topic.name, partitions: partitions))
      recordsFiles.append(topicFiles)
      partitionBytes.append(topicBytes)
    }
    return FetchResult(
      response: FetchAnswer(response: FetchResponse(topics: topics), recordsFiles: recordsFiles),
      recordBytes: recordBytes, hasError: hasError, partitionBytes: partitionBytes)
  }

  // MARK: ListOffsets

  func listOffsets(_ request: ListOffsetsRequest) async -> ListOffsetsResponse {
    var topics: [ListOffsetsResponse.Topic] = []
    for topic in request.topics {
      var partitions: [ListOffsetsResponse.Partition] = []
      for partition in topic.partitions {
        partitions.append(
          await listOffset(topic: topic.name, partition.partition, timestamp: partition.timestamp))
      }
      topics.append(ListOffsetsResponse.Topic(name: topic.name, partitions: partitions))
    }
    return ListOffsetsResponse(topics: topics)
  }

  private func listOffset(topic: String, _ partition: Int32, timestamp: Int64) async
    -> ListOffsetsResponse.Partition
  {
    func failure(_ code: ErrorCode) -> ListOffsetsResponse.Partition {
      ListOffsetsResponse.Partition(
        partition: partition, errorCode: code, timestamp: -1, offset: -1, leaderEpoch: -1)
    }
    let topicPartition = TopicPartition(topic: topic, partition: partition)
    if let cluster, let refusal = cluster.listOffsetsRefusal(topic: topic, partition: partition) {
      return failure(refusal)
    }
    guard let replica = replicaManager.replica(topicPartition),
      let offsets = await replica.offsets()
    else {
      return failure(.unknownTopicOrPartition)
    }
    func found(_ offset: Int64, _ timestamp: Int64) -> ListOffsetsResponse.Partition {
      ListOffsetsResponse.Partition(
        partition: partition, errorCode: .none, timestamp: timestamp, offset: offset,
        leaderEpoch: replica.leaderEpoch)
    }
    switch timestamp {
    case ListOffsetsRequest.earliestTimestamp:
      return found(offsets.logStartOffset, -1)
    case ListOffsetsRequest.latestTimestamp:
      return found(offsets.highWatermark, -1)
    case 0...:
      do {
        guard let match = try await replica.offset(forTimestamp: timestamp) else {
          return found(-1, -1)
        }
        return found(match.offset, match.timestamp)
      } catch {
        return failure(error.errorCode)
      }
    default:
      return failure(.invalidRequest)
    }
  }

  // MARK: Metadata

  func metadata(_ request: MetadataRequest) -> MetadataResponse {
    let broker = advertisedBroker.withLockedValue { $0 }
    let nodeId = configuration.nodeId
    let topics: [MetadataResponse.Topic]
    func describe(_ topic: TopicDescription) -> MetadataResponse.Topic {
      MetadataResponse.Topic(
        name: topic.name,
        partitions: (0..<topic.partitionCount).map {
          MetadataResponse.Partition(
            partition: $0, leaderId: nodeId, leaderEpoch: 0, replicas: [nodeId], isr: [nodeId])
        },
        configs: topic.config.overrides.map {
          MetadataResponse.Config(key: $0.key, value: $0.value)
        })
    }
    if let names = request.topics {
      topics = names.map { name in
        guard let topic = replicaManager.topic(named: name) else {
          return MetadataResponse.Topic(
            errorCode: .unknownTopicOrPartition, name: name, partitions: [])
        }
        return describe(topic)
      }
    } else {
      topics = replicaManager.allTopics().map(describe)
    }
    return MetadataResponse(
      brokers: [broker], clusterId: configuration.clusterId, controllerId: nodeId, topics: topics)
  }

  // MARK: Topics

  func createTopics(_ request: CreateTopicsRequest) async -> CreateTopicsResponse {
    var nameCounts: [String: Int] = [:]
    for topic in request.topics {
      nameCounts[topic.name, default: 0] += 1
    }
    var results: [CreateTopicsResponse.Topic] = []
    for topic in request.topics {
      func failure(_ error: BrokerRequestError) -> CreateTopicsResponse.Topic {
        CreateTopicsResponse.Topic(
          name: topic.name, errorCode: error.errorCode, errorMessage: error.message,
          numPartitions: -1, replicationFactor: -1)
      }
      guard nameCounts[topic.name] == 1 else {
        results.append(
          failure(
            BrokerRequestError(
              .invalidRequest, "topic \"\(topic.name)\" appears more than once in the request")))
        continue
      }
      do {
        let created = try await replicaManager.createTopic(
          name: topic.name, partitionCount: topic.numPartitions,
          replicationFactor: topic.replicationFactor,
          configs: topic.configs.map { ($0.key, $0.value) }, validateOnly: request.validateOnly)
        results.append(
          CreateTopicsResponse.Topic(
            name: topic.name, errorCode: .none, numPartitions: created.partitionCount,
            replicationFactor: created.replicationFactor))
      } catch {
        logger.info(
          "refused to create topic", metadata: ["topic": "\(topic.name)", "error": "\(error)"])
        results.append(failure(error))
      }
    }
    return CreateTopicsResponse(topics: results)
  }

  func deleteTopics(_ request: DeleteTopicsRequest) async -> DeleteTopicsResponse {
    var results: [DeleteTopicsResponse.Topic] = []
    for name in request.names {
      do {
        try await replicaManager.deleteTopic(name: name)
        results.append(DeleteTopicsResponse.Topic(name: name, errorCode: .none))
      } catch {
        results.append(
          DeleteTopicsResponse.Topic(
            name: name, errorCode: error.errorCode, errorMessage: error.message))
      }
    }
    return DeleteTopicsResponse(topics: results)
  }
}
