import Foundation
import Logging
import NIOConcurrencyHelpers
import StreamBusProtocol
import StreamBusRecords
import StreamBusTransport

@testable import StreamBusClient

let quietLogger = Logger(label: "streambus.client.test") { _ in SwiftLogNoOpLogHandler() }

/// The state of a small in-process cluster of fake brokers: topics, leaders, logs, and the
/// faults a test injects. Each `FakeBroker` answers from it with the real protocol codecs.
final class FakeCluster: Sendable {
  struct Partition {
    var leader: Int32
    var epoch: Int32 = 0
    var replicas: [Int32]
    /// Stored batches, offsets already assigned.
    var batches: [[UInt8]] = []
    var logStartOffset: Int64 = 0
    var nextOffset: Int64 = 0
    /// Idempotent producers' recent batches (like the broker's ProducerStateTable): shared
    /// by whichever broker leads, as after a clean election.
    var producers: [Int64: [ProducerBatch]] = [:]
  }

  struct ProducerBatch {
    var epoch: Int16
    var firstSequence: Int32
    var lastSequence: Int32
    var baseOffset: Int64
  }

  struct LoggedRequest {
    var brokerId: Int32
    var header: RequestHeader
    var request: Request
  }

  struct State {
    var brokers: [Int32: HostPort] = [:]
    var topics: [String: [Partition]] = [:]
    var log: [LoggedRequest] = []
    /// Errors answered to the next produce attempts of a partition, in order.
    var produceErrors: [TopicPartition: [ErrorCode]] = [:]
    /// Close the connection instead of answering this many upcoming produce requests.
    var produceConnectionDrops = 0
    /// The next produce request sleeps this long before it is handled (a slow broker).
    var nextProduceDelayMs: Int64 = 0
    /// Close the connection instead of answering this many upcoming fetch requests.
    var fetchConnectionDrops = 0
    /// Fetch requests to these brokers wait, never answered while they are listed (a
    /// leader cut off from the client).
    var holdFetchOnBrokers: Set<Int32> = []
    /// Produce requests wait until this is false.
    var holdProduce = false
    /// Produce requests to these brokers wait, never answered while they are listed (a
    /// leader cut off from the client).
    var holdProduceOnBrokers: Set<Int32> = []
    /// Every request waits until this is false (a broker that stopped responding).
    var holdAll = false
    /// Metadata requests wait until this is false.
    var holdMetadata = false
    /// Close the connection instead of answering any request (a broker going down).
    var dropAll = false
    /// Close the connection instead of answering this many upcoming metadata requests.
    var metadataConnectionDrops = 0
    var produceInFlight = 0
    /// Produce requests whose records were stored or refused (answered or not).
    var produceHandled = 0
    var produceInFlightMax = 0
    /// Appended to the next fetch response of the partition: the first this many bytes of
    /// the following batch (a response cut mid-batch).
    var fetchPartialTailBytes: [TopicPartition: Int] = [:]
    /// Handle this many upcoming produce requests, then close the connection instead of
    /// answering (the acknowledgement is lost, the records are stored).
    var produceResponseDrops = 0
    /// The next producer id InitProducerId hands out.
    var nextProducerId: Int64 = 1000
    /// Errors answered to the next InitProducerId requests, in order.
    var initProducerIdErrors: [ErrorCode] = []
    /// Answer a produce of an unknown idempotent producer with a sequence other than 0 with
    /// UNKNOWN_PRODUCER_ID (as a broker that lost the producer's state does).
    var idempotenceChecks = true
  }

  let state = NIOLockedValueBox(State())

  func withState<Result>(_ body: (inout State) -> Result) -> Result {
    state.withLockedValue(body)
  }

  func createTopic(_ name: String, partitions: Int, leaders: [Int32]) {
    withState { state in
      state.topics[name] = (0..<partitions).map { index in
        let leader = leaders[index % leaders.count]
        return Partition(leader: leader, replicas: [leader])
      }
    }
  }

  func bumpLeaderEpoch(topic: String, partition: Int) {
    withState { $0.topics[topic]?[partition].epoch += 1 }
  }

  func moveLeader(topic: String, partition: Int, to broker: Int32) {
    withState { state in
      state.topics[topic]?[partition].leader = broker
      state.topics[topic]?[partition].epoch += 1
      state.topics[topic]?[partition].replicas = [broker]
    }
  }

  func requests(_ apiKey: ApiKey, broker: Int32? = nil) -> [Request] {
    withState { state in
      state.log.filter { $0.request.apiKey == apiKey && (broker == nil || $0.brokerId == broker) }
        .map(\.request)
    }
  }

  func produceRequests(broker: Int32? = nil) -> [ProduceRequest] {
    requests(.produce, broker: broker).compactMap {
      if case .produce(let body) = $0 { return body }
      return nil
    }
  }

  /// Decoded records of a partition, in offset order.
  func records(topic: String, partition: Int) throws -> [Record] {
    let batches = withState { $0.topics[topic]?[partition].batches ?? [] }
    return try batches.flatMap { try RecordBatch.decode($0).records }
  }

  /// The partition forgets every idempotent producer (as a leader whose state expired).
  func forgetProducers(topic: String, partition: Int) {
    withState { $0.topics[topic]?[partition].producers = [:] }
  }

  /// The batch headers stored for a partition, in offset order.
  func batchHeaders(topic: String, partition: Int) throws -> [RecordBatchHeader] {
    let batches = withState { $0.topics[topic]?[partition].batches ?? [] }
    return try batches.map { try RecordBatchHeader(parsing: $0) }
  }

  func batchCount(topic: String, partition: Int) -> Int {
    withState { $0.topics[topic]?[partition].batches.count ?? 0 }
  }
}

/// One fake broker: a real `FrameServer` on 127.0.0.1 port 0 answering from a `FakeCluster`.
final class FakeBroker: FrameRequestHandler, Sendable {
  let id: Int32
  let cluster: FakeCluster
  private let server = NIOLockedValueBox<FrameServer?>(nil)

  private init(id: Int32, cluster: FakeCluster) {
    self.id = id
    self.cluster = cluster
  }

  static func start(id: Int32, cluster: FakeCluster) async throws -> FakeBroker {
    let broker = FakeBroker(id: id, cluster: cluster)
    var configuration = FrameServerConfiguration(host: "127.0.0.1", port: 0)
    configuration.shutdownGracePeriodMs = 200
    let server = try await FrameServer.bind(
      configuration: configuration, handler: broker, logger: quietLogger)
    broker.server.withLockedValue { $0 = server }
    cluster.withState { $0.brokers[id] = server.localAddress }
    Task { try? await server.run() }
    return broker
  }

  var address: HostPort {
    guard let server = server.withLockedValue({ $0 }) else {
      preconditionFailure("broker not started")
    }
    return server.localAddress
  }

  func stop() async {
    await server.withLockedValue { $0 }?.shutdownGracefully()
  }

  func handle(frame: [UInt8], connection: ConnectionInfo) async -> FrameReply {
    let header: RequestHeader
    let request: Request
    do {
      (header, request) = try Request.decode(payload: frame)
    } catch let error as RequestBodyError {
      return .respond(error.errorResponseHeader.encodeErrorOnly())
    } catch {
      return .close(reason: "undecodable request: \(error)")
    }
    while cluster.withState({ $0.holdAll }) {
      try? await Task.sleep(for: .milliseconds(5))
    }
    if cluster.withState({ $0.dropAll }) {
      return .close(reason: "test drops every connection")
    }
    cluster.withState {
      $0.log.append(FakeCluster.LoggedRequest(brokerId: id, header: header, request: request))
    }
    let response: Response
    switch request {
    case .replicaStatus:
      // The client library never sends it (sbctl's describe does, to real brokers).
      return .respond(
        ResponseHeader(
          correlationId: header.correlationId, errorCode: .invalidRequest,
          errorMessage: "the fake broker has no replica status"
        ).encodeErrorOnly())
    case .metadata:
      if cluster.withState({ state in
        guard state.metadataConnectionDrops > 0 else { return false }
        state.metadataConnectionDrops -= 1
        return true
      }) {
        return .close(reason: "test drops the connection")
      }
      while cluster.withState({ $0.holdMetadata }) {
        try? await Task.sleep(for: .milliseconds(5))
      }
      response = .metadata(metadata())
    case .produce(let produce):
      if cluster.withState({ state in
        guard state.produceConnectionDrops > 0 else { return false }
        state.produceConnectionDrops -= 1
        return true
      }) {
        return .close(reason: "test drops the connection")
      }
      let delayMs = cluster.withState { state in
        defer { state.nextProduceDelayMs = 0 }
        return state.nextProduceDelayMs
      }
      if delayMs > 0 {
        try? await Task.sleep(for: .milliseconds(delayMs))
      }
      cluster.withState { state in
        state.produceInFlight += 1
        state.produceInFlightMax = max(state.produceInFlightMax, state.produceInFlight)
      }
      while cluster.withState({ $0.holdProduce || $0.holdProduceOnBrokers.contains(id) }) {
        try? await Task.sleep(for: .milliseconds(5))
      }
      let answer = self.produce(produce)
      cluster.withState { state in
        state.produceInFlight -= 1
        state.produceHandled += 1
      }
      if produce.acks == 0 {
        return .noResponse
      }
      if cluster.withState({ state in
        guard state.produceResponseDrops > 0 else { return false }
        state.produceResponseDrops -= 1
        return true
      }) {
        return .close(reason: "test loses the produce response")
      }
      response = .produce(answer)
    case .fetch(let fetch):
      if cluster.withState({ state in
        guard state.fetchConnectionDrops > 0 else { return false }
        state.fetchConnectionDrops -= 1
        return true
      }) {
        return .close(reason: "test drops the connection")
      }
      while cluster.withState({ $0.holdFetchOnBrokers.contains(id) }) {
        try? await Task.sleep(for: .milliseconds(5))
      }
      response = .fetch(await self.fetch(fetch))
    case .listOffsets(let list):
      response = .listOffsets(listOffsets(list))
    case .createTopics(let create):
      response = .createTopics(createTopics(create))
    case .deleteTopics(let delete):
      response = .deleteTopics(deleteTopics(delete))
    case .apiVersions:
      response = .apiVersions(.supportedByThisBuild)
    case .initProducerId(let request):
      response = .initProducerId(
        cluster.withState { state in
          if !state.initProducerIdErrors.isEmpty {
            return InitProducerIdResponse(
              errorCode: state.initProducerIdErrors.removeFirst(), producerId: -1,
              producerEpoch: -1)
          }
          guard request.transactionalId == nil else {
            return InitProducerIdResponse(
              errorCode: .invalidRequest, producerId: -1, producerEpoch: -1)
          }
          defer { state.nextProducerId += 1 }
          return InitProducerIdResponse(
            errorCode: .none, producerId: state.nextProducerId, producerEpoch: 0)
        })
    }
    return .respond(
      response.encodePayload(
        header: ResponseHeader(correlationId: header.correlationId), version: 0))
  }

  private func metadata() -> MetadataResponse {
    cluster.withState { state in
      MetadataResponse(
        brokers: state.brokers.sorted { $0.key < $1.key }.map {
          MetadataResponse.Broker(nodeId: $0.key, host: $0.value.host, port: Int32($0.value.port))
        },
        clusterId: "fake", controllerId: state.brokers.keys.min() ?? -1,
        topics: state.topics.sorted { $0.key < $1.key }.map { name, partitions in
          MetadataResponse.Topic(
            errorCode: .none, name: name,
            partitions: partitions.enumerated().map { index, partition in
              MetadataResponse.Partition(
                errorCode: .none, partition: Int32(index), leaderId: partition.leader,
                leaderEpoch: partition.epoch, replicas: partition.replicas, isr: partition.replicas,
                offlineReplicas: [])
            }, configs: [MetadataResponse.Config(key: "retention.ms", value: "1000")])
        })
    }
  }

  private func produce(_ request: ProduceRequest) -> ProduceResponse {
    cluster.withState { state in
      ProduceResponse(
        topics: request.topics.map { topic in
          ProduceResponse.Topic(
            name: topic.name,
            partitions: topic.partitions.map { entry in
              func failure(_ code: ErrorCode) -> ProduceResponse.Partition {
                ProduceResponse.Partition(
                  partition: entry.partition, errorCode: code, baseOffset: -1,
                  logStartOffset: -1, logAppendTimeMs: -1)
              }
              let index = Int(entry.partition)
              guard let partitions = state.topics[topic.name], partitions.indices.contains(index)
              else { return failure(.unknownTopicOrPartition) }
              guard partitions[index].leader == id else { return failure(.notLeaderOrFollower) }
              let key = TopicPartition(topic: topic.name, partition: entry.partition)
              if var injected = state.produceErrors[key], !injected.isEmpty {
                let code = injected.removeFirst()
                state.produceErrors[key] = injected
                return failure(code)
              }
              let baseOffset = partitions[index].nextOffset
              var offset = baseOffset
              var stored: [[UInt8]] = []
              var producers = partitions[index].producers
              var verdict = ErrorCode.none
              var duplicateOffset: Int64?
              do {
                try entry.records.withUnsafeBytes { buffer in
                  var scanner = RecordBatchScanner(buffer)
                  while let span = try scanner.next() {
                    let header = span.header
                    if header.producerId >= 0 && state.idempotenceChecks {
                      let known = producers[header.producerId] ?? []
                      let lastSequence = header.baseSequence + header.lastOffsetDelta
                      if let duplicate = known.first(where: {
                        $0.firstSequence == header.baseSequence && $0.lastSequence == lastSequence
                      }) {
                        duplicateOffset = duplicate.baseOffset
                        return
                      }
                      if let last = known.last {
                        guard header.baseSequence == last.lastSequence + 1 else {
                          verdict = .outOfOrderSequenceNumber
                          return
                        }
                      } else if header.baseSequence != 0 {
                        verdict = .unknownProducerId
                        return
                      }
                      producers[header.producerId] = Array(
                        (known
                          + [
                            FakeCluster.ProducerBatch(
                              epoch: header.producerEpoch, firstSequence: header.baseSequence,
                              lastSequence: lastSequence, baseOffset: offset)
                          ]).suffix(5))
                    }
                    var batch = Array(buffer[span.range])
                    batch.withUnsafeMutableBytes {
                      RecordBatchHeader.setBaseOffset(offset, in: $0)
                    }
                    offset += Int64(span.header.lastOffsetDelta) + 1
                    stored.append(batch)
                  }
                  if scanner.partialTailByteCount > 0 {
                    throw RecordsError(.truncated, "partial batch")
                  }
                }
              } catch {
                return failure(.corruptMessage)
              }
              if let duplicateOffset {
                return ProduceResponse.Partition(
                  partition: entry.partition, errorCode: .none, baseOffset: duplicateOffset,
                  logStartOffset: 0, logAppendTimeMs: -1)
              }
              if verdict != .none {
                return failure(verdict)
              }
              state.topics[topic.name]?[index].producers = producers
              state.topics[topic.name]?[index].batches += stored
              state.topics[topic.name]?[index].nextOffset = offset
              return ProduceResponse.Partition(
                partition: entry.partition, errorCode: .none, baseOffset: baseOffset,
                logStartOffset: 0, logAppendTimeMs: -1)
            })
        })
    }
  }

  private func fetch(_ request: FetchRequest) async -> FetchResponse {
    let deadline = ContinuousClock.now + .milliseconds(Int64(request.maxWaitMs))
    while true {
      let (response, hasData) = fetchOnce(request)
      if hasData || ContinuousClock.now >= deadline {
        return response
      }
      try? await Task.sleep(for: .milliseconds(5))
    }
  }

  private func fetchOnce(_ request: FetchRequest) -> (FetchResponse, Bool) {
    cluster.withState { state in
      var hasData = false
      let response = FetchResponse(
        topics: request.topics.map { topic in
          FetchResponse.Topic(
            name: topic.name,
            partitions: topic.partitions.map { entry in
              func answer(_ code: ErrorCode, records: [UInt8] = [], high: Int64 = -1)
                -> FetchResponse.Partition
              {
                FetchResponse.Partition(
                  partition: entry.partition, errorCode: code, highWatermark: high,
                  logStartOffset: 0, logEndOffset: high, divergingEpoch: .none,
                  currentLeader: .unknown, records: records)
              }
              let index = Int(entry.partition)
              guard let partitions = state.topics[topic.name], partitions.indices.contains(index)
              else { return answer(.unknownTopicOrPartition) }
              let partition = partitions[index]
              guard partition.leader == id else { return answer(.notLeaderOrFollower) }
              if entry.currentLeaderEpoch >= 0 && entry.currentLeaderEpoch < partition.epoch {
                return answer(.fencedLeaderEpoch)
              }
              guard entry.fetchOffset >= partition.logStartOffset,
                entry.fetchOffset <= partition.nextOffset
              else { return answer(.offsetOutOfRange, high: partition.nextOffset) }
              var bytes: [UInt8] = []
              var batchesAfter: [[UInt8]] = []
              for batch in partition.batches {
                guard let header = try? RecordBatchHeader(parsing: batch),
                  header.lastOffset >= entry.fetchOffset
                else { continue }
                if bytes.isEmpty || bytes.count + batch.count <= Int(entry.partitionMaxBytes) {
                  if batchesAfter.isEmpty {
                    bytes += batch
                    continue
                  }
                }
                batchesAfter.append(batch)
              }
              let key = TopicPartition(topic: topic.name, partition: entry.partition)
              if let cut = state.fetchPartialTailBytes[key], let next = batchesAfter.first {
                bytes += next.prefix(cut)
                state.fetchPartialTailBytes[key] = nil
              }
              if !bytes.isEmpty { hasData = true }
              return answer(.none, records: bytes, high: partition.nextOffset)
            })
        })
      return (response, hasData)
    }
  }

  private func listOffsets(_ request: ListOffsetsRequest) -> ListOffsetsResponse {
    cluster.withState { state in
      ListOffsetsResponse(
        topics: request.topics.map { topic in
          ListOffsetsResponse.Topic(
            name: topic.name,
            partitions: topic.partitions.map { entry in
              let index = Int(entry.partition)
              guard let partitions = state.topics[topic.name], partitions.indices.contains(index)
              else {
                return ListOffsetsResponse.Partition(
                  partition: entry.partition, errorCode: .unknownTopicOrPartition, timestamp: -1,
                  offset: -1, leaderEpoch: -1)
              }
              let partition = partitions[index]
              guard partition.leader == id else {
                return ListOffsetsResponse.Partition(
                  partition: entry.partition, errorCode: .notLeaderOrFollower, timestamp: -1,
                  offset: -1, leaderEpoch: -1)
              }
              let offset =
                entry.timestamp == ListOffsetsRequest.earliestTimestamp
                ? partition.logStartOffset : partition.nextOffset
              return ListOffsetsResponse.Partition(
                partition: entry.partition, errorCode: .none, timestamp: -1, offset: offset,
                leaderEpoch: partition.epoch)
            })
        })
    }
  }

  private func createTopics(_ request: CreateTopicsRequest) -> CreateTopicsResponse {
    cluster.withState { state in
      CreateTopicsResponse(
        topics: request.topics.map { topic in
          func failure(_ code: ErrorCode, _ message: String) -> CreateTopicsResponse.Topic {
            CreateTopicsResponse.Topic(
              name: topic.name, errorCode: code, errorMessage: message, numPartitions: -1,
              replicationFactor: -1)
          }
          if state.topics[topic.name] != nil {
            return failure(.topicAlreadyExists, "Topic '\(topic.name)' already exists.")
          }
          guard topic.numPartitions > 0 || topic.numPartitions == -1 else {
            return failure(.invalidPartitions, "Number of partitions must be positive.")
          }
          guard topic.replicationFactor <= Int16(state.brokers.count) else {
            return failure(
              .invalidReplicationFactor,
              "Replication factor \(topic.replicationFactor) exceeds \(state.brokers.count) brokers."
            )
          }
          let count = topic.numPartitions == -1 ? 1 : Int(topic.numPartitions)
          let ids = state.brokers.keys.sorted()
          state.topics[topic.name] = (0..<count).map {
            let leader = ids[$0 % ids.count]
            return FakeCluster.Partition(leader: leader, replicas: [leader])
          }
          return CreateTopicsResponse.Topic(
            name: topic.name, errorCode: .none, errorMessage: nil, numPartitions: Int32(count),
            replicationFactor: 1)
        })
    }
  }

  private func deleteTopics(_ request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    cluster.withState { state in
      DeleteTopicsResponse(
        topics: request.names.map { name in
          guard state.topics.removeValue(forKey: name) != nil else {
            return DeleteTopicsResponse.Topic(
              name: name, errorCode: .unknownTopicOrPartition, errorMessage: nil)
          }
          return DeleteTopicsResponse.Topic(name: name, errorCode: .none)
        })
    }
  }
}

/// A cluster of `count` fake brokers (ids 1...count), stopped by `stop()`.
struct FakeClusterHarness {
  let cluster: FakeCluster
  let brokers: [FakeBroker]

  static func start(brokers count: Int = 1) async throws -> FakeClusterHarness {
    let cluster = FakeCluster()
    var brokers: [FakeBroker] = []
    for id in 1...count {
      brokers.append(try await FakeBroker.start(id: Int32(id), cluster: cluster))
    }
    return FakeClusterHarness(cluster: cluster, brokers: brokers)
  }

  func clientConfig() -> ClientConfig {
    var config = ClientConfig(bootstrapBrokers: [brokers[0].address], clientId: "test")
    config.retryBackoffMs = 10
    config.retryBackoffMaxMs = 50
    config.requestTimeoutMs = 5_000
    config.metadataWaitMs = 300
    return config
  }

  func stop() async {
    // Handlers held by a test would delay the graceful shutdown.
    cluster.withState { state in
      state.holdAll = false
      state.holdMetadata = false
      state.holdProduce = false
    }
    for broker in brokers {
      await broker.stop()
    }
  }
}

/// Runs `body` against a fresh fake cluster, stopping it afterwards.
func withFakeCluster(
  brokers count: Int = 1, _ body: (FakeClusterHarness) async throws -> Void
) async throws {
  let harness = try await FakeClusterHarness.start(brokers: count)
  do {
    try await body(harness)
  } catch {
    await harness.stop()
    throw error
  }
  await harness.stop()
}

/// Polls until `condition` holds or `timeoutMs` passes.
/// `body`'s result, or nil when it has not finished after `seconds` (kept well inside the
/// suites' one-minute limit, which cannot end a hung await). `release` then runs first, to
/// let `body` finish so the failing test does not hang waiting for it.
func resultWithin<T: Sendable>(
  seconds: Int, release: @escaping @Sendable () -> Void,
  _ body: @escaping @Sendable () async throws -> T
) async throws -> T? {
  try await withThrowingTaskGroup(of: T?.self) { group in
    group.addTask { try await body() }
    group.addTask {
      try await Task.sleep(for: .seconds(seconds))
      release()
      return nil
    }
    let first = try await group.next() ?? nil
    group.cancelAll()
    return first
  }
}

func eventually(timeoutMs: Int64 = 3_000, _ condition: () async -> Bool) async -> Bool {
  let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
  while ContinuousClock.now < deadline {
    if await condition() { return true }
    try? await Task.sleep(for: .milliseconds(5))
  }
  return await condition()
}

final class NIOLockedValueBoxInt: Sendable {
  private let box = NIOLockedValueBox(0)
  func add(_ amount: Int) { box.withLockedValue { $0 += amount } }
  func get() -> Int { box.withLockedValue { $0 } }
}
