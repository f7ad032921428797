import StreamBusProtocol

/// Deterministic generator so fuzz failures reproduce from the printed seed.
struct SplitMix64: RandomNumberGenerator {
  private var state: UInt64

  init(seed: UInt64) {
    state = seed
  }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var value = state
    value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
    value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
    return value ^ (value >> 31)
  }
}

func patternBytes(count: Int, seed: UInt8) -> [UInt8] {
  (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31) &+ seed }
}

/// One or more examples of every request, covering nulls, empty arrays, sentinels,
/// non-ASCII strings and a large record blob.
enum Fixtures {
  static let bigRecords = patternBytes(count: 3 * 1024 * 1024 + 17, seed: 7)

  static let requests: [(String, Request)] = [
    (
      "produce",
      .produce(
        ProduceRequest(
          acks: -1, timeoutMs: 30_000,
          topics: [
            .init(
              name: "orders",
              partitions: [
                .init(partition: 0, records: patternBytes(count: 61, seed: 1)),
                .init(partition: 3, records: []),
              ]),
            .init(name: "émojis-🚀", partitions: []),
          ]))
    ),
    ("produce empty", .produce(ProduceRequest(acks: 0, timeoutMs: 0, topics: []))),
    (
      "produce big",
      .produce(
        ProduceRequest(
          acks: 1, timeoutMs: 1000,
          topics: [.init(name: "big", partitions: [.init(partition: 9, records: bigRecords)])]))
    ),
    (
      "fetch follower",
      .fetch(
        FetchRequest(
          replicaId: 2, replicaBrokerEpoch: 77, maxWaitMs: 500, minBytes: 1,
          maxBytes: 52_428_800,
          topics: [
            .init(
              name: "orders",
              partitions: [
                .init(
                  partition: 0, currentLeaderEpoch: 5, fetchOffset: 1234, lastFetchedEpoch: 4,
                  logStartOffset: 100, partitionMaxBytes: 1_048_576),
                .init(partition: 1, fetchOffset: 0, partitionMaxBytes: 1),
              ])
          ]))
    ),
    ("fetch empty", .fetch(FetchRequest(maxWaitMs: 0, minBytes: 0, maxBytes: 0, topics: []))),
    (
      "listOffsets",
      .listOffsets(
        ListOffsetsRequest(
          topics: [
            .init(
              name: "t",
              partitions: [
                .init(partition: 0, timestamp: ListOffsetsRequest.latestTimestamp),
                .init(
                  partition: 1, currentLeaderEpoch: 3,
                  timestamp: ListOffsetsRequest.earliestTimestamp),
                .init(partition: 2, timestamp: 1_700_000_000_000),
              ])
          ]))
    ),
    ("metadata all", .metadata(MetadataRequest(topics: nil))),
    ("metadata none", .metadata(MetadataRequest(topics: []))),
    ("metadata some", .metadata(MetadataRequest(topics: ["a", "b", ""]))),
    ("apiVersions", .apiVersions(ApiVersionsRequest())),
    (
      "createTopics",
      .createTopics(
        CreateTopicsRequest(
          topics: [
            .init(
              name: "new", numPartitions: 12, replicationFactor: 3,
              configs: [
                .init(key: "retention.ms", value: "86400000"),
                .init(key: "cleanup.policy", value: nil),
              ]),
            .init(name: "defaults", numPartitions: -1, replicationFactor: -1),
          ], timeoutMs: 5000, validateOnly: true))
    ),
    ("createTopics empty", .createTopics(CreateTopicsRequest(topics: [], timeoutMs: 0))),
    ("deleteTopics", .deleteTopics(DeleteTopicsRequest(names: ["x", "y"], timeoutMs: 100))),
    ("deleteTopics empty", .deleteTopics(DeleteTopicsRequest(names: [], timeoutMs: 0))),
    ("initProducerId", .initProducerId(InitProducerIdRequest())),
    (
      "initProducerId transactional",
      .initProducerId(InitProducerIdRequest(transactionalId: "tx-1", transactionTimeoutMs: 60_000))
    ),
  ]

  static let responses: [(String, Response)] = [
    (
      "produce",
      .produce(
        ProduceResponse(
          topics: [
            .init(
              name: "orders",
              partitions: [
                .init(
                  partition: 0, errorCode: .none, baseOffset: 42, logStartOffset: 0,
                  logAppendTimeMs: -1),
                .init(
                  partition: 1, errorCode: .notLeaderOrFollower,
                  errorMessage: "leader is broker 3", baseOffset: -1, logStartOffset: -1,
                  logAppendTimeMs: -1),
                .init(
                  partition: 2, errorCode: ErrorCode(rawValue: 31_000), baseOffset: -1,
                  logStartOffset: -1, logAppendTimeMs: -1),
              ])
          ], throttleTimeMs: 15))
    ),
    ("produce empty", .produce(ProduceResponse(topics: []))),
    (
      "fetch",
      .fetch(
        FetchResponse(
          topics: [
            .init(
              name: "orders",
              partitions: [
                .init(
                  partition: 0, errorCode: .none, highWatermark: 100, logStartOffset: 0,
                  logEndOffset: 120, records: patternBytes(count: 300, seed: 3)),
                .init(
                  partition: 1, errorCode: .fencedLeaderEpoch, highWatermark: -1,
                  logStartOffset: -1, logEndOffset: -1,
                  divergingEpoch: .init(epoch: 4, endOffset: 88),
                  currentLeader: .init(leaderId: 2, leaderEpoch: 6), records: []),
              ]),
            .init(name: "empty", partitions: []),
          ]))
    ),
    (
      "fetch big",
      .fetch(
        FetchResponse(
          topics: [
            .init(
              name: "big",
              partitions: [
                .init(
                  partition: 0, errorCode: .none, highWatermark: 1, logStartOffset: 0,
                  logEndOffset: 1, records: bigRecords)
              ])
          ]))
    ),
    (
      "listOffsets",
      .listOffsets(
        ListOffsetsResponse(
          topics: [
            .init(
              name: "t",
              partitions: [
                .init(partition: 0, errorCode: .none, timestamp: -1, offset: 500, leaderEpoch: 2),
                .init(
                  partition: 1, errorCode: .unknownTopicOrPartition, timestamp: -1, offset: -1,
                  leaderEpoch: -1),
              ])
          ]))
    ),
    (
      "metadata",
      .metadata(
        MetadataResponse(
          brokers: [
            .init(nodeId: 1, host: "broker-1.local", port: 9092, rack: "rack-a"),
            .init(nodeId: 2, host: "10.0.0.2", port: 9093),
          ], clusterId: "cluster-xyz", controllerId: 1001,
          topics: [
            .init(
              name: "orders",
              partitions: [
                .init(
                  partition: 0, leaderId: 1, leaderEpoch: 3, replicas: [1, 2, 3], isr: [1, 2],
                  offlineReplicas: [3]),
                .init(
                  errorCode: .leaderNotAvailable, partition: 1, leaderId: -1, leaderEpoch: -1,
                  replicas: [], isr: []),
              ], configs: [.init(key: "min.insync.replicas", value: "2")]),
            .init(errorCode: .unknownTopicOrPartition, name: "missing", partitions: []),
          ]))
    ),
    (
      "metadata empty",
      .metadata(MetadataResponse(brokers: [], clusterId: nil, controllerId: -1, topics: []))
    ),
    ("apiVersions", .apiVersions(ApiVersionsResponse.supportedByThisBuild)),
    ("apiVersions empty", .apiVersions(ApiVersionsResponse(apiKeys: []))),
    (
      "createTopics",
      .createTopics(
        CreateTopicsResponse(
          topics: [
            .init(name: "new", errorCode: .none, numPartitions: 12, replicationFactor: 3),
            .init(
              name: "dup", errorCode: .topicAlreadyExists, errorMessage: "exists",
              numPartitions: -1, replicationFactor: -1),
          ]))
    ),
    (
      "deleteTopics",
      .deleteTopics(
        DeleteTopicsResponse(
          topics: [
            .init(name: "x", errorCode: .none),
            .init(name: "y", errorCode: .unknownTopicOrPartition, errorMessage: "no such topic"),
          ]))
    ),
    ("deleteTopics empty", .deleteTopics(DeleteTopicsResponse(topics: []))),
    (
      "initProducerId",
      .initProducerId(
        InitProducerIdResponse(errorCode: .none, producerId: 0x0123_4567_89AB, producerEpoch: 0))
    ),
    (
      "initProducerId error",
      .initProducerId(
        InitProducerIdResponse(errorCode: .invalidRequest, producerId: -1, producerEpoch: -1))
    ),
  ]

  /// Fixtures without the multi-megabyte blob, for per-byte loops.
  static var smallRequests: [(String, Request)] { requests.filter { !$0.0.hasSuffix("big") } }
  static var smallResponses: [(String, Response)] { responses.filter { !$0.0.hasSuffix("big") } }

  static func header(for request: Request, correlationId: Int32 = 7) -> RequestHeader {
    RequestHeader(
      apiKey: request.apiKey, apiVersion: 0, correlationId: correlationId, clientId: "client-1")
  }
}

/// Runs `body` and returns the thrown error as `E`, or nil when nothing (or something else)
/// was thrown.
func thrownError<E: Error>(_: E.Type, _ body: () throws -> Void) -> E? {
  do {
    try body()
    return nil
  } catch let error as E {
    return error
  } catch {
    return nil
  }
}
