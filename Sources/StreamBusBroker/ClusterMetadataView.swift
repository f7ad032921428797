import Logging
import NIOConcurrencyHelpers
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusMetadata
import StreamBusProtocol

/// The cluster as this broker's metadata image shows it, for the client-facing APIs of a
/// cluster broker: Metadata is answered from the image, CreateTopics and DeleteTopics are
/// forwarded to the metaservers (the controller owns topics; the image brings the result).
public final class ClusterMetadataView: Sendable {
  public let brokerID: Int32
  public let clusterID: String
  /// Endpoint name brokers register for clients (and followers) to connect to.
  public static let clientEndpointName = "client"
  private let client: MetaClient
  private let logger: Logger
  private let current = NIOLockedValueBox(MetadataImage())

  public init(brokerID: Int32, clusterID: String, client: MetaClient, logger: Logger) {
    self.brokerID = brokerID
    self.clusterID = clusterID
    self.client = client
    self.logger = logger
  }

  /// The latest image this broker applied.
  public var image: MetadataImage { current.withLockedValue { $0 } }

  /// The registered epoch of a broker in the image (read without copying the image: the
  /// replica fetch path asks on every request).
  func brokerEpoch(of brokerID: Int32) -> Int64? {
    current.withLockedValue { $0.brokers[brokerID]?.epoch }
  }

  func update(_ image: MetadataImage) {
    current.withLockedValue { $0 = image }
  }

  /// The client address of a broker in the image, nil when unknown or it has no endpoint.
  public func clientAddress(of brokerID: Int32) -> (host: String, port: Int)? {
    guard let broker = image.brokers[brokerID],
      let endpoint = broker.endpoint(named: Self.clientEndpointName)
    else { return nil }
    return (endpoint.host, Int(endpoint.port))
  }

  /// The image's leader and leader epoch of a partition; nil when the image lacks it.
  func leadership(topic: String, partition: Int32) -> (leader: Int32, leaderEpoch: Int32)? {
    let image = image
    guard let topicImage = image.topic(named: topic), partition >= 0,
      Int(partition) < topicImage.partitions.count
    else { return nil }
    let registration = topicImage.partitions[Int(partition)]
    return (registration.leader, registration.leaderEpoch)
  }

  // MARK: Metadata

  func metadata(_ request: MetadataRequest) -> MetadataResponse {
    let image = image
    let brokers = image.brokers.values.filter { !$0.fenced }.sorted { $0.id < $1.id }
      .compactMap { broker -> MetadataResponse.Broker? in
        guard let endpoint = broker.endpoint(named: Self.clientEndpointName) else { return nil }
        return MetadataResponse.Broker(
          nodeId: broker.id, host: endpoint.host, port: endpoint.port, rack: broker.rack)
      }
    func describe(_ topic: TopicImage) -> MetadataResponse.Topic {
      MetadataResponse.Topic(
        name: topic.name,
        partitions: topic.partitions.map { partition in
          let offline = partition.replicas.filter { image.brokers[$0]?.fenced ?? true }
          return MetadataResponse.Partition(
            errorCode: partition.leader == noLeader ? .leaderNotAvailable : .none,
            partition: partition.partition, leaderId: partition.leader,
            leaderEpoch: partition.leaderEpoch, replicas: partition.replicas, isr: partition.isr,
            offlineReplicas: offline)
        },
        configs: topic.configs.sorted { $0.key < $1.key }.map {
          MetadataResponse.Config(key: $0.key, value: $0.value)
        })
    }
    let topics: [MetadataResponse.Topic]
    if let names = request.topics {
      topics = names.map { name in
        guard let topic = image.topic(named: name) else {
          return MetadataResponse.Topic(
            errorCode: .unknownTopicOrPartition, name: name, partitions: [])
        }
        return describe(topic)
      }
    } else {
      topics = image.topicsByID.sorted { $0.name < $1.name }.map(describe)
    }
    // Any broker forwards admin requests, so each names itself as the "controller".
    return MetadataResponse(
      brokers: brokers, clusterId: clusterID, controllerId: brokerID, topics: topics)
  }

  // MARK: Topics (forwarded)

  func createTopics(_ request: CreateTopicsRequest) async -> CreateTopicsResponse {
    var results: [CreateTopicsResponse.Topic] = []
    var forwarded: [MetaCreateTopicsRequest.Topic] = []
    var nameCounts: [String: Int] = [:]
    for topic in request.topics {
      nameCounts[topic.name, default: 0] += 1
    }
    func failure(_ name: String, _ code: ErrorCode, _ message: String)
      -> CreateTopicsResponse.Topic
    {
      CreateTopicsResponse.Topic(
        name: name, errorCode: code, errorMessage: message, numPartitions: -1,
        replicationFactor: -1)
    }
    for topic in request.topics {
      if nameCounts[topic.name] != 1 {
        continue
      }
      var configs: [String: String] = [:]
      for config in topic.configs {
        if let value = config.value {
          configs[config.key] = value
        }
      }
      forwarded.append(
        MetaCreateTopicsRequest.Topic(
          name: topic.name, partitions: topic.numPartitions,
          replicationFactor: topic.replicationFactor, configs: configs))
    }
    var answers: [String: CreateTopicsResponse.Topic] = [:]
    if !forwarded.isEmpty {
      do {
        for result in try await client.createTopics(
          forwarded, validateOnly: request.validateOnly)
        {
          answers[result.name] = CreateTopicsResponse.Topic(
            name: result.name, errorCode: result.errorCode, errorMessage: result.errorMessage,
            numPartitions: result.errorCode == .none ? result.partitions : -1,
            replicationFactor: result.errorCode == .none ? result.replicationFactor : -1)
        }
      } catch {
        logger.warning("forwarding CreateTopics to the metaservers failed: \(error)")
        for topic in forwarded {
          answers[topic.name] = failure(
            topic.name, Self.errorCode(of: error), "metaservers: \(error)")
        }
      }
    }
    for topic in request.topics {
      if nameCounts[topic.name] != 1 {
        results.append(
          failure(
            topic.name, .invalidRequest,
            "topic \"\(topic.name)\" appears more than once in the request"))
      } else {
        results.append(
          answers[topic.name]
            ?? failure(topic.name, .unknownServerError, "the metaservers did not answer for it"))
      }
    }
    return CreateTopicsResponse(topics: results)
  }

  func deleteTopics(_ request: DeleteTopicsRequest) async -> DeleteTopicsResponse {
    guard !request.names.isEmpty else { return DeleteTopicsResponse(topics: []) }
    var answers: [String: DeleteTopicsResponse.Topic] = [:]
    do {
      for result in try await client.deleteTopics(request.names) {
        answers[result.name] = DeleteTopicsResponse.Topic(
          name: result.name, errorCode: result.errorCode, errorMessage: result.errorMessage)
      }
    } catch {
      logger.warning("forwarding DeleteTopics to the metaservers failed: \(error)")
      return DeleteTopicsResponse(
        topics: request.names.map {
          DeleteTopicsResponse.Topic(
            name: $0, errorCode: Self.errorCode(of: error), errorMessage: "metaservers: \(error)")
        })
    }
    return DeleteTopicsResponse(
      topics: request.names.map {
        answers[$0]
          ?? DeleteTopicsResponse.Topic(
            name: $0, errorCode: .unknownServerError,
            errorMessage: "the metaservers did not answer for it")
      })
  }

  /// The server's error when the metaservers answered with one, else REQUEST_TIMED_OUT (the
  /// quorum could not be reached; the client may retry).
  static func errorCode(of error: any Error) -> ErrorCode {
    if let error = error as? MetaClientError, let code = error.errorCode {
      return code
    }
    return .requestTimedOut
  }
}

extension ClusterMetadataView {
  /// Why ListOffsets for a partition is refused here, nil when this broker leads it:
  /// UNKNOWN_TOPIC_OR_PARTITION when the image lacks it, NOT_LEADER_OR_FOLLOWER otherwise
  /// (the client refreshes its metadata and asks the leader).
  func listOffsetsRefusal(topic: String, partition: Int32) -> ErrorCode? {
    guard let leadership = leadership(topic: topic, partition: partition) else {
      return .unknownTopicOrPartition
    }
    return leadership.leader == brokerID ? nil : .notLeaderOrFollower
  }
}
