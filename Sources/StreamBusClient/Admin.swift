import StreamBusProtocol
import StreamBusTransport

/// A topic in `Admin.listTopics()`.
public struct TopicListing: Hashable, Sendable {
  public var name: String
  public var partitionCount: Int
  /// Replicas of the first partition (topics are created with one factor for all).
  public var replicationFactor: Int

  public init(name: String, partitionCount: Int, replicationFactor: Int) {
    self.name = name
    self.partitionCount = partitionCount
    self.replicationFactor = replicationFactor
  }
}

/// A partition in `Admin.describeTopic(_:)`: leadership from metadata, offsets from
/// ListOffsets at the leader.
public struct PartitionDescription: Hashable, Sendable {
  public var partition: Int32
  public var leaderId: Int32
  public var leaderEpoch: Int32
  public var replicas: [Int32]
  public var isr: [Int32]
  public var offlineReplicas: [Int32]
  /// The latest offset readable by consumers (ListOffsets "latest"); -1 when the leader
  /// could not be asked.
  public var highWatermark: Int64
  /// The earliest offset still in the log (ListOffsets "earliest"); -1 when unknown.
  public var logStartOffset: Int64
  /// The metadata or ListOffsets error for this partition; `.none` when all is well.
  public var errorCode: ErrorCode

  public init(
    partition: Int32, leaderId: Int32, leaderEpoch: Int32, replicas: [Int32], isr: [Int32],
    offlineReplicas: [Int32], highWatermark: Int64, logStartOffset: Int64, errorCode: ErrorCode
  ) {
    self.partition = partition
    self.leaderId = leaderId
    self.leaderEpoch = leaderEpoch
    self.replicas = replicas
    self.isr = isr
    self.offlineReplicas = offlineReplicas
    self.highWatermark = highWatermark
    self.logStartOffset = logStartOffset
    self.errorCode = errorCode
  }
}

/// `Admin.describeTopic(_:)`'s answer.
public struct TopicDescription: Hashable, Sendable {
  public var name: String
  public var partitions: [PartitionDescription]
  public var configs: [String: String]

  public init(name: String, partitions: [PartitionDescription], configs: [String: String]) {
    self.name = name
    self.partitions = partitions
    self.configs = configs
  }
}

/// Topic administration: create, delete, list, describe.
///
/// Create and delete go to the controller named in metadata (any broker when none is
/// named) and are retried on `NOT_CONTROLLER` and connection errors up to
/// `ClientConfig.retries` times. Every broker error surfaces as a `StreamBusError` carrying
/// the wire code and the topic.
public final class Admin: Sendable {
  let core: ClientCore

  public init(config: ClientConfig) {
    core = ClientCore(config: config)
  }

  /// Closes the connections.
  public func close() async {
    await core.close()
  }

  /// Creates a topic; `-1` for partitions or replication factor means the broker default.
  /// Returns the effective partition count and replication factor.
  @discardableResult
  public func createTopic(
    _ name: String, partitions: Int32, replicationFactor: Int16 = -1,
    configs: [String: String] = [:], timeoutMs: Int32 = 30_000
  ) async throws -> (partitions: Int32, replicationFactor: Int16) {
    try validateTopicName(name)
    let request = CreateTopicsRequest(
      topics: [
        CreateTopicsRequest.Topic(
          name: name, numPartitions: partitions, replicationFactor: replicationFactor,
          configs: configs.sorted { $0.key < $1.key }.map {
            CreateTopicsRequest.Config(key: $0.key, value: $0.value)
          })
      ], timeoutMs: timeoutMs)
    let response = try await sendToController(.createTopics(request), topic: name)
    guard case .createTopics(let body) = response,
      let result = body.topics.first(where: {
        $0.name == name
      })
    else {
      throw StreamBusError(
        .protocolViolation, "CreateTopics response does not mention \"\(name)\"", topic: name)
    }
    if result.errorCode != .none {
      throw StreamBusError.broker(result.errorCode, message: result.errorMessage, topic: name)
    }
    core.metadata.invalidate()
    return (result.numPartitions, result.replicationFactor)
  }

  /// Deletes a topic.
  public func deleteTopic(_ name: String, timeoutMs: Int32 = 30_000) async throws {
    try validateTopicName(name)
    let response = try await sendToController(
      .deleteTopics(DeleteTopicsRequest(names: [name], timeoutMs: timeoutMs)), topic: name)
    guard case .deleteTopics(let body) = response,
      let result = body.topics.first(where: { $0.name == name })
    else {
      throw StreamBusError(
        .protocolViolation, "DeleteTopics response does not mention \"\(name)\"", topic: name)
    }
    if result.errorCode != .none {
      throw StreamBusError.broker(result.errorCode, message: result.errorMessage, topic: name)
    }
    core.metadata.invalidate()
  }

  /// Every topic, sorted by name.
  public func listTopics() async throws -> [TopicListing] {
    let metadata = try await core.metadata.refresh()
    return metadata.topics.values.sorted { $0.name < $1.name }.map { topic in
      TopicListing(
        name: topic.name, partitionCount: topic.partitions.count,
        replicationFactor: topic.partitions.first?.replicas.count ?? 0)
    }
  }

  /// Partitions with leader, epoch, replicas and ISR, plus high watermark and log start
  /// offset asked of each partition's leader.
  public func describeTopic(_ name: String) async throws -> TopicDescription {
    try validateTopicName(name)
    let metadata = try await core.metadata.refresh()
    guard let topic = metadata.topics[name] else {
      let code = metadata.topicErrors[name] ?? .unknownTopicOrPartition
      throw StreamBusError.broker(
        code,
        message: code == .unknownTopicOrPartition ? "topic \"\(name)\" does not exist" : nil,
        topic: name)
    }
    let partitions = topic.partitions.map { TopicPartition(topic: name, partition: $0.partition) }
    let latest = await listOffsets(partitions, timestamp: ListOffsetsRequest.latestTimestamp)
    let earliest = await listOffsets(partitions, timestamp: ListOffsetsRequest.earliestTimestamp)
    let descriptions = topic.partitions.map { partition in
      let topicPartition = TopicPartition(topic: name, partition: partition.partition)
      let high = latest[topicPartition]
      let low = earliest[topicPartition]
      var errorCode = partition.errorCode
      for case .failure(let error)? in [high, low] where errorCode == .none {
        errorCode = error.errorCode ?? .networkException
      }
      return PartitionDescription(
        partition: partition.partition, leaderId: partition.leaderId,
        leaderEpoch: partition.leaderEpoch, replicas: partition.replicas, isr: partition.isr,
        offlineReplicas: partition.offlineReplicas,
        highWatermark: (try? high?.get()) ?? -1, logStartOffset: (try? low?.get()) ?? -1,
        errorCode: errorCode)
    }
    return TopicDescription(name: name, partitions: descriptions, configs: topic.configs)
  }

  /// Offsets at `timestamp` (`ListOffsetsRequest.latestTimestamp`, `.earliestTimestamp` or a
  /// time in ms) per partition, asked of each leader. Missing leaders and broker errors are
  /// reported per partition.
  public func listOffsets(_ partitions: [TopicPartition], timestamp: Int64) async
    -> [TopicPartition: Result<Int64, StreamBusError>]
  {
    await OffsetLookup.listOffsets(partitions, timestamp: timestamp, core: core)
  }

  private func sendToController(_ request: Request, topic: String) async throws -> Response {
    var attempt = 0
    while true {
      attempt += 1
      let metadata: ClusterMetadata
      do {
        metadata = try await core.metadata.current()
      } catch let error as StreamBusError where error.isRetriable && attempt <= core.config.retries
      {
        try await Task.sleep(for: .clampedMilliseconds(core.config.backoffMs(attempt: attempt)))
        continue
      }
      let broker =
        metadata.brokers[metadata.controllerId]?.address
        ?? metadata.brokers.values.sorted { $0.nodeId < $1.nodeId }.first?.address
        ?? core.config.bootstrapBrokers[0]
      do {
        let response = try await core.send(request, to: broker)
        if reachedNonController(response), attempt <= core.config.retries {
          core.metadata.invalidate()
          try await Task.sleep(for: .clampedMilliseconds(core.config.backoffMs(attempt: attempt)))
          continue
        }
        return response
      } catch let error as StreamBusError
        where (error.kind != .broker || error.errorCode == .notController)
        && error.isRetriable && attempt <= core.config.retries
      {
        core.metadata.invalidate()
        try await Task.sleep(for: .clampedMilliseconds(core.config.backoffMs(attempt: attempt)))
      } catch let error as StreamBusError where error.topic == nil {
        throw StreamBusError(
          error.kind, errorCode: error.errorCode, error.message, topic: topic,
          partition: error.partition)
      }
    }
  }

  /// NOT_CONTROLLER reported per topic: the request reached a broker that cannot act on it.
  private func reachedNonController(_ response: Response) -> Bool {
    switch response {
    case .createTopics(let body): return body.topics.contains { $0.errorCode == .notController }
    case .deleteTopics(let body): return body.topics.contains { $0.errorCode == .notController }
    default: return false
    }
  }
}

func validateTopicName(_ name: String) throws {
  guard !name.isEmpty, name.utf8.count <= 249 else {
    throw StreamBusError(
      .invalidArgument, "topic name must be 1 to 249 bytes, got \(name.utf8.count)", topic: name)
  }
}

/// ListOffsets against partition leaders, shared by Admin and Consumer.
enum OffsetLookup {
  static func listOffsets(_ partitions: [TopicPartition], timestamp: Int64, core: ClientCore)
    async -> [TopicPartition: Result<Int64, StreamBusError>]
  {
    var results: [TopicPartition: Result<Int64, StreamBusError>] = [:]
    let metadata: ClusterMetadata
    do {
      metadata = try await core.metadata.current()
    } catch {
      let wrapped = StreamBusError.wrapping(error, context: "ListOffsets")
      for partition in partitions { results[partition] = .failure(wrapped) }
      return results
    }
    var byLeader: [HostPort: [(TopicPartition, Int32)]] = [:]
    for partition in partitions {
      guard let leader = metadata.leader(of: partition) else {
        results[partition] = .failure(
          .broker(
            .leaderNotAvailable, topic: partition.topic, partition: partition.partition))
        continue
      }
      byLeader[leader.broker.address, default: []].append((partition, leader.epoch))
    }
    await withTaskGroup(of: [TopicPartition: Result<Int64, StreamBusError>].self) { group in
      for (broker, entries) in byLeader {
        group.addTask {
          await listOffsets(entries, timestamp: timestamp, broker: broker, core: core)
        }
      }
      for await partial in group {
        results.merge(partial) { _, new in new }
      }
    }
    if results.values.contains(where: {
      if case .failure(let error) = $0 { return error.invalidatesMetadata }
      return false
    }) {
      core.metadata.invalidate()
    }
    return results
  }

  private static func listOffsets(
    _ entries: [(TopicPartition, Int32)], timestamp: Int64, broker: HostPort, core: ClientCore
  ) async -> [TopicPartition: Result<Int64, StreamBusError>] {
    var results: [TopicPartition: Result<Int64, StreamBusError>] = [:]
    let byTopic = Dictionary(grouping: entries) { $0.0.topic }
    let request = ListOffsetsRequest(
      topics: byTopic.keys.sorted().map { topic in
        ListOffsetsRequest.Topic(
          name: topic,
          partitions: (byTopic[topic] ?? []).map {
            ListOffsetsRequest.Partition(
              partition: $0.0.partition, currentLeaderEpoch: $0.1, timestamp: timestamp)
          })
      })
    do {
      guard case .listOffsets(let body) = try await core.send(.listOffsets(request), to: broker)
      else {
        throw StreamBusError(.protocolViolation, "ListOffsets to \(broker): wrong response type")
      }
      for topic in body.topics {
        for partition in topic.partitions {
          let key = TopicPartition(topic: topic.name, partition: partition.partition)
          results[key] =
            partition.errorCode == .none
            ? .success(partition.offset)
            : .failure(
              .broker(partition.errorCode, topic: topic.name, partition: partition.partition))
        }
      }
      for (partition, _) in entries where results[partition] == nil {
        results[partition] = .failure(
          StreamBusError(
            .protocolViolation, "ListOffsets response from \(broker) does not mention \(partition)",
            topic: partition.topic, partition: partition.partition))
      }
    } catch {
      let wrapped = StreamBusError.wrapping(error, context: "ListOffsets")
      for (partition, _) in entries { results[partition] = .failure(wrapped) }
    }
    return results
  }
}
