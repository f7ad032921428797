import Logging
import NIOConcurrencyHelpers
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusTransport

let quietLogger = Logger(label: "streambus.metaclient.test") { _ in SwiftLogNoOpLogHandler() }

/// A few in-process metaservers sharing one state: who leads, which topics exist, and what
/// each node does with requests (answer, ignore, send garbage). Non-leaders answer
/// NOT_LEADER naming the leader, as real followers do.
final class FakeQuorum: Sendable {
  enum Behaviour: Sendable {
    case normal
    /// Never answers (a SIGSTOPped process: the connection stays open).
    case silent
    /// Answers with bytes that do not decode.
    case garbage
    /// Answers NOT_LEADER without naming a leader even when one is known.
    case leaderUnknown
  }

  struct Received: Sendable, Equatable {
    var nodeID: Int32
    var apiKey: ApiKey
  }

  struct State {
    var addresses: [Int32: HostPort] = [:]
    var leaderID: Int32?
    var behaviours: [Int32: Behaviour] = [:]
    var topics: [String: Int64] = [:]
    var topicConfigs: [String: [String: String]] = [:]
    var brokers: [MetaBroker] = []
    var learners: [Int32: String] = [:]
    var nextTopicID: Int64 = 100
    var received: [Received] = []
    /// Header-level errors answered by the leader to the next requests, in order.
    var leaderErrors: [ErrorCode] = []
  }

  let state = NIOLockedValueBox(State())
  private let servers = NIOLockedValueBox<[Int32: FrameServer]>([:])

  func withState<Result>(_ body: (inout State) -> Result) -> Result {
    state.withLockedValue(body)
  }

  /// Starts `count` nodes with ids 1...count on free loopback ports.
  static func start(nodes count: Int, leaderID: Int32?) async throws -> FakeQuorum {
    let quorum = FakeQuorum()
    quorum.withState { $0.leaderID = leaderID }
    for nodeID in 1...Int32(count) {
      var configuration = FrameServerConfiguration(host: "127.0.0.1", port: 0)
      configuration.shutdownGracePeriodMs = 100
      let server = try await FrameServer.bind(
        configuration: configuration, handler: FakeMetaserver(nodeID: nodeID, quorum: quorum),
        logger: quietLogger)
      quorum.servers.withLockedValue { $0[nodeID] = server }
      quorum.withState { $0.addresses[nodeID] = server.localAddress }
      Task { try? await server.run() }
    }
    return quorum
  }

  func address(_ nodeID: Int32) -> HostPort {
    guard let address = withState({ $0.addresses[nodeID] }) else {
      preconditionFailure("node \(nodeID) was not started")
    }
    return address
  }

  var received: [Received] { withState { $0.received } }

  func stop() async {
    let all = servers.withLockedValue { $0 }
    for server in all.values {
      await server.shutdownGracefully()
    }
  }

  /// An address where nothing listens: a server bound to a free port, then shut down.
  static func refusingAddress() async throws -> HostPort {
    struct Unused: FrameRequestHandler {
      func handle(frame: [UInt8], connection: ConnectionInfo) async -> FrameReply {
        .close(reason: "unused")
      }
    }
    let server = try await FrameServer.bind(
      configuration: FrameServerConfiguration(host: "127.0.0.1", port: 0), handler: Unused(),
      logger: quietLogger)
    let address = server.localAddress
    await server.shutdownGracefully()
    return address
  }
}

/// One node of a ``FakeQuorum``, answering with the real metaserver codecs.
struct FakeMetaserver: FrameRequestHandler {
  let nodeID: Int32
  let quorum: FakeQuorum

  func handle(frame: [UInt8], connection: ConnectionInfo) async -> FrameReply {
    let header: RequestHeader
    let request: MetaRequest
    do {
      (header, request) = try MetaRequest.decode(payload: frame)
    } catch let error as RequestBodyError {
      return .respond(error.errorResponseHeader.encodeErrorOnly())
    } catch {
      return .close(reason: "undecodable request: \(error)")
    }
    let (behaviour, leaderID, leaderAddress, injected) = quorum.withState { state in
      state.received.append(FakeQuorum.Received(nodeID: nodeID, apiKey: header.apiKey))
      let behaviour = state.behaviours[nodeID] ?? .normal
      let injected =
        state.leaderID == nodeID && behaviour == .normal ? state.leaderErrors.first : nil
      if injected != nil { state.leaderErrors.removeFirst() }
      return (behaviour, state.leaderID, state.leaderID.flatMap { state.addresses[$0] }, injected)
    }
    let correlationId = header.correlationId
    switch behaviour {
    case .silent:
      return .deferred {
        try? await Task.sleep(for: .seconds(60))
        return .noResponse
      }
    case .garbage:
      var writer = WireWriter()
      ResponseHeader(correlationId: correlationId).encode(into: &writer)
      writer.writeInt32(Int32.max)
      return .respond(writer.bytes)
    case .leaderUnknown:
      return .respond(
        MetaMessage.notLeaderResponsePayload(correlationId: correlationId, leader: .unknownLeader))
    case .normal:
      break
    }
    guard leaderID == nodeID else {
      let hint = NotLeaderBody(
        leaderID: leaderID ?? -1, leaderAddress: leaderAddress.map(\.description))
      return .respond(
        MetaMessage.notLeaderResponsePayload(correlationId: correlationId, leader: hint))
    }
    if let injected {
      return .respond(
        MetaMessage.errorResponsePayload(
          correlationId: correlationId, errorCode: injected, message: "injected \(injected.name)"))
    }
    let responseHeader = ResponseHeader(correlationId: correlationId)
    switch request {
    case .createTopics(let body):
      let results = quorum.withState { state in
        body.topics.map { topic -> MetaCreateTopicsResponse.Result in
          if state.topics[topic.name] != nil {
            return .init(
              name: topic.name, errorCode: .topicAlreadyExists,
              errorMessage: "Topic '\(topic.name)' already exists.", topicID: 0, partitions: 0,
              replicationFactor: 0)
          }
          let topicID = state.nextTopicID
          state.nextTopicID += 1
          state.topics[topic.name] = topicID
          return .init(
            name: topic.name, errorCode: .none, topicID: topicID, partitions: topic.partitions,
            replicationFactor: max(topic.replicationFactor, 1))
        }
      }
      return .respond(
        MetaMessage.encodeResponsePayload(
          MetaCreateTopicsResponse(topics: results), header: responseHeader, version: 0))
    case .listTopics:
      let topics = quorum.withState { state in
        state.topics.sorted { $0.key < $1.key }.map {
          ListTopicsResponse.Topic(
            name: $0.key, topicID: $0.value, partitions: 1, replicationFactor: 1)
        }
      }
      return .respond(
        MetaMessage.encodeResponsePayload(
          ListTopicsResponse(topics: topics), header: responseHeader, version: 0))
    case .quorumStatus:
      let (voters, learners) = quorum.withState { state in
        (
          state.addresses.keys.sorted().map {
            QuorumMember(
              nodeID: $0, raftAddress: "raft-\($0):1",
              apiAddress: state.addresses[$0].map(\.description) ?? "", matchIndex: 10, lag: 0,
              lastContactMs: 1)
          },
          state.learners.sorted { $0.key < $1.key }.map {
            QuorumMember(
              nodeID: $0.key, raftAddress: "raft-\($0.key):1", apiAddress: $0.value,
              matchIndex: 4, lag: 6, lastContactMs: -1)
          }
        )
      }
      return .respond(
        MetaMessage.encodeResponsePayload(
          QuorumStatusResponse(
            leaderID: nodeID, term: 3, commitIndex: 10, appliedIndex: 10, voters: voters,
            learners: learners),
          header: responseHeader, version: 0))
    case .transferLeadership(let body):
      let newLeader = body.targetID == -1 ? (nodeID % 3) + 1 : body.targetID
      quorum.withState { $0.leaderID = newLeader }
      return .respond(
        MetaMessage.encodeResponsePayload(
          TransferLeadershipResponse(newLeaderID: newLeader), header: responseHeader, version: 0))
    case .addVoter:
      return .respond(
        MetaMessage.encodeResponsePayload(AddVoterResponse(), header: responseHeader, version: 0))
    case .addLearner(let body):
      quorum.withState { $0.learners[body.nodeID] = body.apiAddress }
      return .respond(
        MetaMessage.encodeResponsePayload(AddLearnerResponse(), header: responseHeader, version: 0))
    case .removeVoter(let body):
      let known = quorum.withState { $0.learners.removeValue(forKey: body.nodeID) != nil }
      guard known else {
        return .respond(
          MetaMessage.errorResponsePayload(
            correlationId: correlationId, errorCode: .invalidRequest,
            message: "node \(body.nodeID) is not a member"))
      }
      return .respond(
        MetaMessage.encodeResponsePayload(RemoveVoterResponse(), header: responseHeader, version: 0)
      )
    case .deleteTopics(let body):
      let results = quorum.withState { state in
        body.names.map { name -> MetaDeleteTopicsResponse.Result in
          guard state.topics.removeValue(forKey: name) != nil else {
            return .init(
              name: name, errorCode: .unknownTopicOrPartition,
              errorMessage: "Topic '\(name)' does not exist.")
          }
          return .init(name: name, errorCode: .none)
        }
      }
      return .respond(
        MetaMessage.encodeResponsePayload(
          MetaDeleteTopicsResponse(topics: results), header: responseHeader, version: 0))
    case .alterConfigs(let body):
      let known = quorum.withState { state in
        guard state.topics[body.topic] != nil else { return false }
        for change in body.changes {
          state.topicConfigs[body.topic, default: [:]][change.key] = change.value
        }
        return true
      }
      guard known else {
        return .respond(
          MetaMessage.errorResponsePayload(
            correlationId: correlationId, errorCode: .unknownTopicOrPartition,
            message: "Topic '\(body.topic)' does not exist."))
      }
      return .respond(
        MetaMessage.encodeResponsePayload(
          AlterConfigsResponse(), header: responseHeader, version: 0))
    case .describeTopic(let body):
      let found = quorum.withState { state in
        state.topics[body.name].map { ($0, state.topicConfigs[body.name] ?? [:]) }
      }
      guard let (topicID, configs) = found else {
        return .respond(
          MetaMessage.errorResponsePayload(
            correlationId: correlationId, errorCode: .unknownTopicOrPartition,
            message: "Topic '\(body.name)' does not exist."))
      }
      let partition = MetaPartition(
        topicID: topicID, partition: 0, replicas: [1, 2], isr: [1], leader: 1, leaderEpoch: 2,
        partitionEpoch: 5, addingReplicas: [], removingReplicas: [2])
      return .respond(
        MetaMessage.encodeResponsePayload(
          DescribeTopicResponse(
            name: body.name, topicID: topicID, configs: configs, partitions: [partition]),
          header: responseHeader, version: 0))
    case .describeCluster:
      let (brokers, topicCount) = quorum.withState { ($0.brokers, $0.topics.count) }
      return .respond(
        MetaMessage.encodeResponsePayload(
          DescribeClusterResponse(
            clusterID: "fake", leaderID: nodeID, metadataOffset: 10, brokers: brokers,
            topicCount: Int32(topicCount), partitionCount: Int32(topicCount),
            underReplicatedPartitionCount: 0, offlinePartitionCount: 0),
          header: responseHeader, version: 0))
    default:
      return .respond(
        MetaMessage.errorResponsePayload(
          correlationId: correlationId, errorCode: .invalidRequest,
          message: "the fake metaserver does not implement \(MetaApiKey.name(header.apiKey))"))
    }
  }
}
