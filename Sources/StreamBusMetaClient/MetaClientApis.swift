import StreamBusMetaProtocol
import StreamBusProtocol

// One method per metaserver API. Batch APIs return the per-item results; the single-item
// conveniences (`createTopic`, `deleteTopic`) throw the item's error instead.
extension MetaClient {
  // MARK: Brokers

  public func brokerRegister(_ request: BrokerRegisterRequest) async throws
    -> BrokerRegisterResponse
  {
    try await send(request)
  }

  public func brokerHeartbeat(_ request: BrokerHeartbeatRequest) async throws
    -> BrokerHeartbeatResponse
  {
    try await send(request)
  }

  public func alterPartition(_ request: AlterPartitionRequest) async throws
    -> AlterPartitionResponse
  {
    try await send(request)
  }

  public func allocateProducerIds(brokerID: Int32, brokerEpoch: Int64) async throws
    -> AllocateProducerIdsResponse
  {
    try await send(AllocateProducerIdsRequest(brokerID: brokerID, brokerEpoch: brokerEpoch))
  }

  /// Committed metadata after `fromOffset`; waits up to `maxWaitMs` for some to appear.
  public func fetchMetadata(fromOffset: Int64, maxWaitMs: Int32, maxBytes: Int32 = 1 << 20)
    async throws -> FetchMetadataResponse
  {
    try await send(
      FetchMetadataRequest(fromOffset: fromOffset, maxWaitMs: maxWaitMs, maxBytes: maxBytes))
  }

  // MARK: Topics

  public func createTopics(_ topics: [MetaCreateTopicsRequest.Topic], validateOnly: Bool = false)
    async throws -> [MetaCreateTopicsResponse.Result]
  {
    try await send(MetaCreateTopicsRequest(topics: topics, validateOnly: validateOnly)).topics
  }

  /// Creates one topic; its error, if any, is thrown with the topic as subject.
  public func createTopic(
    _ name: String, partitions: Int32, replicationFactor: Int16 = -1,
    configs: [String: String] = [:]
  ) async throws -> MetaCreateTopicsResponse.Result {
    let results = try await createTopics([
      MetaCreateTopicsRequest.Topic(
        name: name, partitions: partitions, replicationFactor: replicationFactor,
        configs: configs)
    ])
    return try Self.single(results, named: name, api: "CreateTopics") {
      ($0.name, $0.errorCode, $0.errorMessage)
    }
  }

  public func deleteTopics(_ names: [String]) async throws -> [MetaDeleteTopicsResponse.Result] {
    try await send(MetaDeleteTopicsRequest(names: names)).topics
  }

  /// Deletes one topic; its error, if any, is thrown with the topic as subject.
  public func deleteTopic(_ name: String) async throws {
    let results = try await deleteTopics([name])
    _ = try Self.single(results, named: name, api: "DeleteTopics") {
      ($0.name, $0.errorCode, $0.errorMessage)
    }
  }

  /// Sets (`value` non-nil) and deletes (`value` nil) configuration keys of `topic`.
  public func alterConfigs(
    topic: String, changes: [AlterConfigsRequest.Change], validateOnly: Bool = false
  ) async throws {
    _ = try await send(
      AlterConfigsRequest(topic: topic, changes: changes, validateOnly: validateOnly))
  }

  public func describeCluster() async throws -> DescribeClusterResponse {
    try await send(DescribeClusterRequest())
  }

  public func listTopics() async throws -> [ListTopicsResponse.Topic] {
    try await send(ListTopicsRequest()).topics
  }

  public func describeTopic(_ name: String) async throws -> DescribeTopicResponse {
    do {
      return try await send(DescribeTopicRequest(name: name))
    } catch let error as MetaClientError where error.code == .server && error.subject == nil {
      throw MetaClientError(
        .server, errorCode: error.errorCode, error.message, lastError: error.lastError,
        subject: name)
    }
  }

  /// Asks the leader to elect each partition's first replica as its leader; nil = all.
  public func electPreferredLeaders(
    _ partitions: [ElectPreferredLeadersRequest.TopicPartition]? = nil
  ) async throws -> [ElectPreferredLeadersResponse.Result] {
    try await send(ElectPreferredLeadersRequest(partitions: partitions)).partitions
  }

  // MARK: Quorum

  public func quorumStatus() async throws -> QuorumStatusResponse {
    try await send(QuorumStatusRequest())
  }

  public func addLearner(nodeID: Int32, raftAddress: String, apiAddress: String) async throws {
    _ = try await send(
      AddLearnerRequest(nodeID: nodeID, raftAddress: raftAddress, apiAddress: apiAddress))
  }

  /// Promotes the learner `nodeID` to voter.
  public func addVoter(nodeID: Int32) async throws {
    _ = try await send(AddVoterRequest(nodeID: nodeID))
  }

  /// Removes the voter or learner `nodeID`.
  public func removeVoter(nodeID: Int32) async throws {
    _ = try await send(RemoveVoterRequest(nodeID: nodeID))
  }

  /// Moves Raft leadership to `targetID` (-1: any caught-up voter); returns the new leader.
  /// The client forgets the old leader so the next request finds the new one.
  public func transferLeadership(to targetID: Int32 = -1) async throws -> Int32 {
    let response = try await send(TransferLeadershipRequest(targetID: targetID))
    forgetLeader()
    return response.newLeaderID
  }

  /// Makes the next request start from the bootstrap list (after leadership moved away).
  public func forgetLeader() {
    resetPreferred()
  }

  private static func single<Result>(
    _ results: [Result], named name: String, api: String,
    _ fields: (Result) -> (name: String, errorCode: ErrorCode, errorMessage: String?)
  ) throws -> Result {
    guard let result = results.first(where: { fields($0).name == name }) else {
      throw MetaClientError(
        .protocolViolation, "the \(api) answer has no result for \(name)", subject: name)
    }
    let (_, errorCode, errorMessage) = fields(result)
    if errorCode != .none {
      throw MetaClientError.server(errorCode, message: errorMessage, subject: name)
    }
    return result
  }
}
