import StreamBusProtocol

@testable import StreamBusMetaProtocol

/// Deterministic generator so every fuzz failure names a reproducible seed.
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

/// One message of every metaserver API with values that would expose a swapped field,
/// a lost sign bit or a dropped element.
enum MetaFixtures {
  static let endpoints = [
    MetaEndpoint(name: "client", host: "10.0.0.7", port: 9092),
    MetaEndpoint(name: "replication", host: "broker-7.internal", port: 19_093),
  ]

  static let broker = MetaBroker(
    brokerID: 7, incarnationID: -0x1234_5678_9ABC_DEF0, epoch: 4_000_000_123,
    endpoints: endpoints, rack: "rack-b", capacity: MetaBrokerCapacity(diskBytes: 1 << 40),
    fenced: true, inControlledShutdown: false)

  static let partition = MetaPartition(
    topicID: 42, partition: 3, replicas: [7, 2, 9], isr: [7, 9], leader: 7, leaderEpoch: 11,
    partitionEpoch: 29, addingReplicas: [9], removingReplicas: [2])

  static let requests: [(String, MetaRequest)] = [
    (
      "brokerRegister",
      .brokerRegister(
        BrokerRegisterRequest(
          brokerID: 7, incarnationID: Int64.min + 5, endpoints: endpoints, rack: "rack-b",
          capacity: MetaBrokerCapacity(diskBytes: 987_654_321_000)))
    ),
    (
      "brokerRegisterNoRack",
      .brokerRegister(
        BrokerRegisterRequest(
          brokerID: 1, incarnationID: 3, endpoints: [], rack: nil,
          capacity: MetaBrokerCapacity(diskBytes: 0)))
    ),
    (
      "brokerHeartbeat",
      .brokerHeartbeat(
        BrokerHeartbeatRequest(
          brokerID: 3, brokerEpoch: 1_234_567_890_123, appliedMetadataOffset: 77,
          wantShutdown: true))
    ),
    (
      "alterPartition",
      .alterPartition(
        AlterPartitionRequest(
          brokerID: 2, brokerEpoch: 99,
          partitions: [
            .init(topicID: 5, partition: 0, leaderEpoch: 3, partitionEpoch: 8, newIsr: [2, 4]),
            .init(topicID: 6, partition: 12, leaderEpoch: 1, partitionEpoch: 2, newIsr: [2]),
          ]))
    ),
    (
      "allocateProducerIds",
      .allocateProducerIds(AllocateProducerIdsRequest(brokerID: 4, brokerEpoch: 65_537))
    ),
    (
      "fetchMetadata",
      .fetchMetadata(FetchMetadataRequest(fromOffset: 1_001, maxWaitMs: 500, maxBytes: 1 << 20))
    ),
    (
      "createTopics",
      .createTopics(
        MetaCreateTopicsRequest(
          topics: [
            .init(
              name: "orders", partitions: 12, replicationFactor: 3,
              configs: ["retention.ms": "86400000", "min.insync.replicas": "2"]),
            .init(name: "audit.log", partitions: -1, replicationFactor: -1),
          ], validateOnly: true))
    ),
    ("deleteTopics", .deleteTopics(MetaDeleteTopicsRequest(names: ["orders", "ünïcode-topic"]))),
    (
      "alterConfigs",
      .alterConfigs(
        AlterConfigsRequest(
          topic: "orders",
          changes: [
            .init(key: "retention.ms", value: "1000"), .init(key: "cleanup.policy", value: nil),
          ], validateOnly: false))
    ),
    ("describeCluster", .describeCluster(DescribeClusterRequest())),
    ("listTopics", .listTopics(ListTopicsRequest())),
    ("describeTopic", .describeTopic(DescribeTopicRequest(name: "orders"))),
    ("quorumStatus", .quorumStatus(QuorumStatusRequest())),
    (
      "addLearner",
      .addLearner(
        AddLearnerRequest(
          nodeID: 4, raftAddress: "127.0.0.1:19004", apiAddress: "[::1]:19104"))
    ),
    ("addVoter", .addVoter(AddVoterRequest(nodeID: 4))),
    ("removeVoter", .removeVoter(RemoveVoterRequest(nodeID: 2))),
    ("transferLeadership", .transferLeadership(TransferLeadershipRequest(targetID: -1))),
    (
      "electPreferredLeaders",
      .electPreferredLeaders(
        ElectPreferredLeadersRequest(partitions: [
          .init(topic: "orders", partition: 3), .init(topic: "audit", partition: 0),
        ]))
    ),
    (
      "electPreferredLeadersAll",
      .electPreferredLeaders(ElectPreferredLeadersRequest(partitions: nil))
    ),
  ]

  static let responses: [(String, MetaResponse)] = [
    ("brokerRegister", .brokerRegister(BrokerRegisterResponse(brokerEpoch: 8_589_934_593))),
    (
      "brokerHeartbeat",
      .brokerHeartbeat(BrokerHeartbeatResponse(isFenced: true, shouldShutdown: false, leaderID: 2))
    ),
    (
      "alterPartition",
      .alterPartition(
        AlterPartitionResponse(partitions: [
          .init(
            topicID: 5, partition: 0, errorCode: .none, leader: 2, leaderEpoch: 3, isr: [2, 4],
            partitionEpoch: 9),
          .init(
            topicID: 6, partition: 12, errorCode: .invalidUpdateVersion, leader: 3,
            leaderEpoch: 4, isr: [3], partitionEpoch: 10),
        ]))
    ),
    (
      "allocateProducerIds",
      .allocateProducerIds(AllocateProducerIdsResponse(firstProducerID: 3_000, count: 1_000))
    ),
    (
      "fetchMetadataEntries",
      .fetchMetadata(
        FetchMetadataResponse(
          committedOffset: 1_010,
          content: .entries([
            MetadataLogEntry(offset: 1_002, data: [0, 1, 2, 0xFF]),
            MetadataLogEntry(offset: 1_003, data: []),
          ])))
    ),
    (
      "fetchMetadataSnapshot",
      .fetchMetadata(
        FetchMetadataResponse(
          committedOffset: 5_000, content: .snapshot(offset: 4_096, data: [9, 8, 7, 6, 5])))
    ),
    (
      "createTopics",
      .createTopics(
        MetaCreateTopicsResponse(topics: [
          .init(
            name: "orders", errorCode: .none, topicID: 17, partitions: 12, replicationFactor: 3),
          .init(
            name: "dup", errorCode: .topicAlreadyExists,
            errorMessage: "Topic 'dup' already exists.",
            topicID: 0, partitions: 0, replicationFactor: 0),
        ]))
    ),
    (
      "deleteTopics",
      .deleteTopics(
        MetaDeleteTopicsResponse(topics: [
          .init(name: "orders", errorCode: .none),
          .init(name: "nope", errorCode: .unknownTopicOrPartition, errorMessage: "no such topic"),
        ]))
    ),
    ("alterConfigs", .alterConfigs(AlterConfigsResponse())),
    (
      "describeCluster",
      .describeCluster(
        DescribeClusterResponse(
          clusterID: "sb-cluster-1", leaderID: 3, metadataOffset: 12_345,
          brokers: [
            broker,
            MetaBroker(
              brokerID: 8, incarnationID: 2, epoch: 5, endpoints: [], rack: nil,
              capacity: MetaBrokerCapacity(diskBytes: 0), fenced: false, inControlledShutdown: true),
          ], topicCount: 4, partitionCount: 96, underReplicatedPartitionCount: 5,
          offlinePartitionCount: 1))
    ),
    (
      "listTopics",
      .listTopics(
        ListTopicsResponse(topics: [
          .init(name: "audit", topicID: 1, partitions: 1, replicationFactor: 1),
          .init(name: "orders", topicID: 17, partitions: 12, replicationFactor: 3),
        ]))
    ),
    (
      "describeTopic",
      .describeTopic(
        DescribeTopicResponse(
          name: "orders", topicID: 17, configs: ["retention.ms": "1000", "a": ""],
          partitions: [
            partition,
            MetaPartition(
              topicID: 17, partition: 4, replicas: [1], isr: [], leader: -1, leaderEpoch: 2,
              partitionEpoch: 6),
          ]))
    ),
    (
      "quorumStatus",
      .quorumStatus(
        QuorumStatusResponse(
          leaderID: 2, term: 17, commitIndex: 1_000, appliedIndex: 998,
          voters: [
            QuorumMember(
              nodeID: 1, raftAddress: "127.0.0.1:9001", apiAddress: "127.0.0.1:9101",
              matchIndex: 1_000, lag: 0, lastContactMs: 12),
            QuorumMember(
              nodeID: 2, raftAddress: "127.0.0.1:9002", apiAddress: "127.0.0.1:9102",
              matchIndex: 1_000, lag: 0, lastContactMs: 0),
            QuorumMember(
              nodeID: 3, raftAddress: "127.0.0.1:9003", apiAddress: "127.0.0.1:9103",
              matchIndex: 950, lag: 50, lastContactMs: -1),
          ],
          learners: [
            QuorumMember(
              nodeID: 4, raftAddress: "127.0.0.1:9004", apiAddress: "", matchIndex: 10, lag: 990,
              lastContactMs: 250)
          ]))
    ),
    ("addLearner", .addLearner(AddLearnerResponse())),
    ("addVoter", .addVoter(AddVoterResponse())),
    ("removeVoter", .removeVoter(RemoveVoterResponse())),
    ("transferLeadership", .transferLeadership(TransferLeadershipResponse(newLeaderID: 3))),
    (
      "electPreferredLeaders",
      .electPreferredLeaders(
        ElectPreferredLeadersResponse(partitions: [
          .init(topic: "orders", partition: 3, errorCode: .none),
          .init(
            topic: "audit", partition: 0, errorCode: .ineligibleReplica,
            errorMessage: "preferred replica 4 is not in the ISR"),
        ]))
    ),
  ]

  static func header(for request: MetaRequest, correlationId: Int32 = 77) -> RequestHeader {
    RequestHeader(
      apiKey: request.apiKey, apiVersion: 0, correlationId: correlationId, clientId: "admin-1")
  }

  /// Bytes of the request header above (clientId "admin-1").
  static let requestHeaderBytes = 10 + "admin-1".utf8.count
  /// Bytes of `ResponseHeader(correlationId:)` with no error message.
  static let responseHeaderBytes = 4 + 2 + 2
}
