import Logging
import StreamBusMetaProtocol
import StreamBusMetadata
import StreamBusProtocol
import StreamBusRaft
import StreamBusRaftHost
import StreamBusTransport

/// Serves every metaserver API on the API listener.
///
/// Writes go to the controller and are answered once their batch commits; they get
/// NOT_LEADER (with the leader's API address when known) on any node that is not the ready
/// leader. Admin reads (DescribeCluster, ListTopics, DescribeTopic) first confirm with
/// ReadIndex that the local image holds every committed write, so they work on followers
/// too; FetchMetadata is served by any node from what it applied. Malformed frames get an
/// error answer naming the field (the connection stays open); a header that does not parse
/// closes the connection.
public struct MetaRequestHandler: FrameRequestHandler {
  let node: MetaServerNode
  private var logger: Logger { node.logger }
  private var configuration: MetaServerConfiguration { node.configuration }

  public init(node: MetaServerNode) {
    self.node = node
  }

  public func handle(frame: [UInt8], connection: ConnectionInfo) async -> FrameReply {
    let start = ContinuousClock.now
    let header: RequestHeader
    let request: MetaRequest
    do {
      (header, request) = try MetaRequest.decode(payload: frame)
    } catch let error as RequestBodyError {
      logger.warning(
        "answering a malformed request with \(error.errorCode.name)",
        metadata: ["connection": "\(connection)", "error": "\(error)"])
      node.metrics.recordRequest(
        api: MetaApiKey.name(error.header.apiKey), errorName: error.errorCode.name,
        durationNanoseconds: 0)
      return .respond(error.errorResponseHeader.encodeErrorOnly())
    } catch {
      logger.warning(
        "closing a connection that sent an unreadable request header",
        metadata: ["connection": "\(connection)", "error": "\(error)"])
      return .close(reason: "unreadable request header: \(error)")
    }
    let apiName = MetaApiKey.name(header.apiKey)
    let metrics = node.metrics
    let handler = self
    return .deferred {
      let (payload, errorCode) = await handler.answer(request, header: header)
      let elapsed = (ContinuousClock.now - start).components
      metrics.recordRequest(
        api: apiName, errorName: errorCode.name,
        durationNanoseconds: elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
      return .respond(payload)
    }
  }

  // MARK: - Dispatch

  /// The response payload and its header error code (for metrics).
  func answer(_ request: MetaRequest, header: RequestHeader) async -> ([UInt8], ErrorCode) {
    do {
      switch request {
      case .brokerRegister(let body):
        let registration = BrokerRegistrationRequest(body)
        let response = try await control("BrokerRegister", isHeartbeat: true) {
          image, sessions, nowMs in
          node.controllerLogic.registerBroker(
            registration, image: image, sessions: &sessions, nowMs: nowMs)
        }
        try check(response.errorCode, response.message)
        return ok(
          .brokerRegister(BrokerRegisterResponse(brokerEpoch: response.brokerEpoch)), header)

      case .brokerHeartbeat(let body):
        let heartbeat = StreamBusMetadata.BrokerHeartbeatRequest(body)
        let response = try await control("BrokerHeartbeat", isHeartbeat: true) {
          image, sessions, nowMs in
          node.controllerLogic.heartbeat(heartbeat, image: image, sessions: &sessions, nowMs: nowMs)
        }
        try check(response.errorCode, response.message)
        return ok(
          .brokerHeartbeat(
            StreamBusMetaProtocol.BrokerHeartbeatResponse(
              isFenced: response.isFenced, shouldShutdown: response.shouldShutdown,
              leaderID: Int32(clamping: configuration.nodeID))), header)

      case .alterPartition(let body):
        let alter = StreamBusMetadata.AlterPartitionRequest(body)
        let response = try await control("AlterPartition") { image, _, _ in
          node.controllerLogic.alterPartition(alter, image: image)
        }
        try check(response.errorCode, response.message)
        return ok(.alterPartition(StreamBusMetaProtocol.AlterPartitionResponse(response)), header)

      case .allocateProducerIds(let body):
        let response = try await control("AllocateProducerIds") { image, _, _ in
          node.controllerLogic.allocateProducerIds(
            brokerID: body.brokerID, brokerEpoch: body.brokerEpoch, image: image)
        }
        try check(response.errorCode, response.message)
        return ok(
          .allocateProducerIds(
            AllocateProducerIdsResponse(
              firstProducerID: response.firstProducerID, count: response.count)), header)

      case .fetchMetadata(let body):
        return ok(.fetchMetadata(await fetchMetadata(body)), header)

      case .createTopics(let body):
        let topics = body.topics.map {
          CreatableTopic(
            name: $0.name, partitions: $0.partitions, replicationFactor: $0.replicationFactor,
            configs: $0.configs)
        }
        let validateOnly = body.validateOnly
        let results = try await control("CreateTopics") { image, _, _ in
          node.controllerLogic.createTopics(topics, validateOnly: validateOnly, image: image)
        }
        return ok(
          .createTopics(
            MetaCreateTopicsResponse(topics: results.map(MetaCreateTopicsResponse.Result.init))),
          header)

      case .deleteTopics(let body):
        let names = body.names
        let results = try await control("DeleteTopics") { image, _, _ in
          node.controllerLogic.deleteTopics(names, image: image)
        }
        return ok(
          .deleteTopics(
            MetaDeleteTopicsResponse(
              topics: results.map {
                .init(name: $0.name, errorCode: $0.errorCode, errorMessage: $0.message)
              })), header)

      case .alterConfigs(let body):
        let changes = body.changes.map { ConfigEntryChange(key: $0.key, value: $0.value) }
        let validateOnly = body.validateOnly
        let topic = body.topic
        let response = try await control("AlterConfigs") { image, _, _ in
          let result = node.controllerLogic.alterConfigs(
            topic: topic, changes: changes, image: image)
          return validateOnly ? ControllerResult(records: [], response: result.response) : result
        }
        try check(response.errorCode, response.message)
        return ok(.alterConfigs(StreamBusMetaProtocol.AlterConfigsResponse()), header)

      case .electPreferredLeaders(let body):
        let targets = body.partitions?.map {
          TopicNamePartition(topic: $0.topic, partition: $0.partition)
        }
        let results = try await control("ElectPreferredLeaders") { image, _, _ in
          node.controllerLogic.electPreferredLeaders(targets, image: image)
        }
        return ok(
          .electPreferredLeaders(
            ElectPreferredLeadersResponse(
              partitions: results.map {
                .init(
                  topic: $0.topic, partition: $0.partition, errorCode: $0.errorCode,
                  errorMessage: $0.message)
              })), header)

      case .describeCluster:
        let image = try await currentImage()
        let summary = ClusterSummary(image: image)
        let leader = node.host?.status().leaderID.map { Int32(clamping: $0) } ?? -1
        return ok(
          .describeCluster(
            DescribeClusterResponse(
              clusterID: configuration.clusterID, leaderID: leader, metadataOffset: image.offset,
              brokers: image.brokers.values.sorted { $0.id < $1.id }.map(MetaBroker.init),
              topicCount: Int32(clamping: summary.topicCount),
              partitionCount: Int32(clamping: summary.partitionCount),
              underReplicatedPartitionCount: Int32(clamping: summary.underReplicatedPartitionCount),
              offlinePartitionCount: Int32(clamping: summary.offlinePartitionCount))), header)

      case .listTopics:
        let image = try await currentImage()
        return ok(
          .listTopics(
            ListTopicsResponse(
              topics: image.topicsByID.map {
                .init(
                  name: $0.name, topicID: $0.id, partitions: Int32(clamping: $0.partitions.count),
                  replicationFactor: Int16(clamping: $0.replicationFactor))
              })), header)

      case .describeTopic(let body):
        let image = try await currentImage()
        guard let topic = image.topic(named: body.name) else {
          throw ControllerFailure(
            .unknownTopicOrPartition, "topic \"\(body.name)\" does not exist")
        }
        return ok(
          .describeTopic(
            DescribeTopicResponse(
              name: topic.name, topicID: topic.id, configs: topic.configs,
              partitions: topic.partitions.map(MetaPartition.init))), header)

      case .quorumStatus:
        return ok(.quorumStatus(try quorumStatus()), header)

      case .addLearner(let body):
        let host = try leaderHost()
        guard body.nodeID > 0 else {
          throw ControllerFailure(.invalidRequest, "node id \(body.nodeID) must be positive")
        }
        let raftAddress: HostPort
        let apiAddress: HostPort?
        do {
          raftAddress = try HostPort(parsing: body.raftAddress)
          apiAddress = body.apiAddress.isEmpty ? nil : try HostPort(parsing: body.apiAddress)
        } catch let error as TransportError {
          throw ControllerFailure(.invalidRequest, error.message)
        }
        try await raftCall {
          try await host.addLearner(
            UInt64(body.nodeID),
            addresses: PeerAddresses(raftAddress: raftAddress, apiAddress: apiAddress))
        }
        return ok(.addLearner(AddLearnerResponse()), header)

      case .addVoter(let body):
        let host = try leaderHost()
        guard body.nodeID > 0 else {
          throw ControllerFailure(.invalidRequest, "node id \(body.nodeID) must be positive")
        }
        try await raftCall { try await host.promote(UInt64(body.nodeID)) }
        return ok(.addVoter(AddVoterResponse()), header)

      case .removeVoter(let body):
        let host = try leaderHost()
        guard body.nodeID > 0 else {
          throw ControllerFailure(.invalidRequest, "node id \(body.nodeID) must be positive")
        }
        try await raftCall { try await host.remove(UInt64(body.nodeID)) }
        return ok(.removeVoter(RemoveVoterResponse()), header)

      case .transferLeadership(let body):
        let host = try leaderHost()
        let target: UInt64? = body.targetID < 0 ? nil : UInt64(body.targetID)
        if target == 0 {
          throw ControllerFailure(.invalidRequest, "node id 0 is not a valid target")
        }
        let newLeader = try await raftCall { try await host.transferLeadership(to: target) }
        return ok(
          .transferLeadership(TransferLeadershipResponse(newLeaderID: Int32(clamping: newLeader))),
          header)
      }
    } catch let failure as ControllerFailure {
      return (errorPayload(failure, header), failure.errorCode)
    } catch {
      let failure = ControllerFailure(.unknownServerError, "\(error)")
      return (errorPayload(failure, header), failure.errorCode)
    }
  }

  // MARK: - Helpers

  private func ok(_ response: MetaResponse, _ header: RequestHeader) -> ([UInt8], ErrorCode) {
    (
      response.encodePayload(
        header: ResponseHeader(correlationId: header.correlationId), version: header.apiVersion),
      .none
    )
  }

  private func errorPayload(_ failure: ControllerFailure, _ header: RequestHeader) -> [UInt8] {
    if failure.errorCode == .notLeader {
      var body = node.notLeaderBody()
      if let leaderID = failure.leaderID, leaderID != configuration.nodeID {
        body = NotLeaderBody(
          leaderID: Int32(clamping: leaderID),
          leaderAddress: failure.leaderAPIAddress ?? body.leaderAddress)
      }
      let message =
        body.leaderAddress.map {
          "metaserver \(configuration.nodeID) is not the leader; the leader is \(body.leaderID) at \($0)"
        }
        ?? "metaserver \(configuration.nodeID) is not the leader and knows no leader: \(failure.message)"
      return MetaResponse.notLeader(body).encodePayload(
        header: ResponseHeader(
          correlationId: header.correlationId, errorCode: .notLeader, errorMessage: message),
        version: header.apiVersion)
    }
    return ResponseHeader(
      correlationId: header.correlationId, errorCode: failure.errorCode,
      errorMessage: failure.message
    ).encodeErrorOnly()
  }

  private func check(_ errorCode: ErrorCode, _ message: String?) throws(ControllerFailure) {
    guard errorCode == .none else {
      throw ControllerFailure(errorCode, message ?? errorCode.name)
    }
  }

  private func notLeader() -> ControllerFailure {
    let body = node.notLeaderBody()
    return ControllerFailure(
      .notLeader, "not the leader",
      leaderID: body.leaderID >= 0 ? UInt64(body.leaderID) : nil,
      leaderAPIAddress: body.leaderAddress)
  }

  private func control<Response: Sendable>(
    _ name: String, isHeartbeat: Bool = false,
    _ body:
      @escaping @Sendable (MetadataImage, inout BrokerSessions, Int64) -> ControllerResult<
        Response
      >
  ) async throws(ControllerFailure) -> Response {
    guard let controller = node.controller else { throw notLeader() }
    return try await controller.perform(name, isHeartbeat: isHeartbeat, body)
  }

  private func leaderHost() throws(ControllerFailure) -> RaftHost {
    guard let host = node.host, host.status().isLeader else { throw notLeader() }
    return host
  }

  /// Runs a Raft host call, mapping its errors to API errors.
  @discardableResult
  private func raftCall<Value: Sendable>(_ call: () async throws -> Value) async throws
    -> Value
  {
    do {
      return try await call()
    } catch let error as RaftHostError {
      switch error.code {
      case .learnerNotCaughtUp:
        throw ControllerFailure(.reconfigurationInProgress, error.message)
      case .invalidRequest:
        throw ControllerFailure(.invalidRequest, error.message)
      default:
        throw ControllerRunner.failure(for: error)
      }
    }
  }

  /// The local image once ReadIndex confirmed it holds every write committed before now.
  private func currentImage() async throws -> MetadataImage {
    guard let host = node.host else { throw notLeader() }
    try await raftCall { try await host.linearizableRead() }
    return node.stateMachine.image
  }

  private func quorumStatus() throws -> QuorumStatusResponse {
    guard let host = node.host else { throw notLeader() }
    let status = host.status()
    // The leader knows every member's progress; a follower sends the asker there, unless
    // there is no leader, when its own view is the best there is.
    if let leader = status.leaderID, leader != configuration.nodeID {
      throw notLeader()
    }
    func member(_ member: RaftMemberStatus) -> QuorumMember {
      QuorumMember(
        nodeID: Int32(clamping: member.id),
        raftAddress: member.addresses?.raftAddress.description ?? "",
        apiAddress: member.addresses?.apiAddress?.description ?? "",
        matchIndex: Int64(clamping: member.matchIndex ?? 0),
        lag: Int64(clamping: member.lag ?? 0), lastContactMs: member.lastContactMs ?? -1)
    }
    return QuorumStatusResponse(
      leaderID: status.leaderID.map { Int32(clamping: $0) } ?? -1,
      term: Int64(clamping: status.term), commitIndex: Int64(clamping: status.commitIndex),
      appliedIndex: Int64(clamping: status.appliedIndex), voters: status.voters.map(member),
      learners: status.learners.map(member))
  }

  private func fetchMetadata(_ request: FetchMetadataRequest) async -> FetchMetadataResponse {
    let stateMachine = node.stateMachine
    let maxBytes = Int(max(request.maxBytes, 1))
    let waitMs = min(Int64(max(request.maxWaitMs, 0)), configuration.fetchWaitMaxMs)
    var answer = stateMachine.fetch(after: request.fromOffset, maxBytes: maxBytes)
    if case .batches(let batches, _) = answer, batches.isEmpty, waitMs > 0, !node.isShuttingDown {
      await stateMachine.waitForOffset(
        above: max(request.fromOffset, 0), deadline: .now + .milliseconds(waitMs))
      answer = stateMachine.fetch(after: request.fromOffset, maxBytes: maxBytes)
    }
    switch answer {
    case .batches(let batches, let appliedOffset):
      return FetchMetadataResponse(
        committedOffset: appliedOffset,
        content: .entries(batches.map { MetadataLogEntry(offset: $0.offset, data: $0.data) }))
    case .snapshot(let offset, let data):
      return FetchMetadataResponse(
        committedOffset: offset, content: .snapshot(offset: offset, data: data))
    }
  }
}
