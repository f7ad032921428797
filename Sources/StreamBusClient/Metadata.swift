import NIOConcurrencyHelpers
import StreamBusProtocol
import StreamBusTransport

/// A broker as metadata describes it.
public struct BrokerInfo: Hashable, Sendable {
  public var nodeId: Int32
  public var address: HostPort
  public var rack: String?

  public init(nodeId: Int32, address: HostPort, rack: String? = nil) {
    self.nodeId = nodeId
    self.address = address
    self.rack = rack
  }
}

/// A partition's leadership and replicas as metadata describes them.
public struct PartitionInfo: Hashable, Sendable {
  public var partition: Int32
  /// -1 when the partition has no leader right now.
  public var leaderId: Int32
  public var leaderEpoch: Int32
  public var replicas: [Int32]
  public var isr: [Int32]
  public var offlineReplicas: [Int32]
  /// Non-zero when the broker reported a problem with this partition (e.g. no leader).
  public var errorCode: ErrorCode

  public init(
    partition: Int32, leaderId: Int32, leaderEpoch: Int32, replicas: [Int32], isr: [Int32],
    offlineReplicas: [Int32] = [], errorCode: ErrorCode = .none
  ) {
    self.partition = partition
    self.leaderId = leaderId
    self.leaderEpoch = leaderEpoch
    self.replicas = replicas
    self.isr = isr
    self.offlineReplicas = offlineReplicas
    self.errorCode = errorCode
  }
}

/// A topic as metadata describes it; partitions sorted by number.
public struct TopicInfo: Hashable, Sendable {
  public var name: String
  public var partitions: [PartitionInfo]
  public var configs: [String: String]

  public init(name: String, partitions: [PartitionInfo], configs: [String: String] = [:]) {
    self.name = name
    self.partitions = partitions
    self.configs = configs
  }
}

/// One consistent view of the cluster, from one Metadata response.
struct ClusterMetadata: Sendable {
  var brokers: [Int32: BrokerInfo] = [:]
  var controllerId: Int32 = -1
  var clusterId: String?
  var topics: [String: TopicInfo] = [:]
  /// Topics the broker reported with a topic-level error (name → code).
  var topicErrors: [String: ErrorCode] = [:]
  var fetchedAt: ContinuousClock.Instant?

  /// The leader's address and epoch, or nil when unknown.
  func leader(of topicPartition: TopicPartition) -> (broker: BrokerInfo, epoch: Int32)? {
    guard let topic = topics[topicPartition.topic],
      let partition = topic.partitions.first(where: { $0.partition == topicPartition.partition }),
      partition.leaderId >= 0, let broker = brokers[partition.leaderId]
    else {
      return nil
    }
    return (broker, partition.leaderEpoch)
  }

  /// The first of `partitions` whose known leader is not at `address`, with that leader's
  /// address: a request sent to `address` for it went to a replaced leader. A partition
  /// without a known leader does not count.
  func partitionLedElsewhere(
    among partitions: some Sequence<TopicPartition>, than address: HostPort
  ) -> (partition: TopicPartition, leader: HostPort)? {
    for partition in partitions {
      if let leader = leader(of: partition)?.broker.address, leader != address {
        return (partition, leader)
      }
    }
    return nil
  }

  init() {}

  /// This answer, except for partitions where `cached` knows a newer leader epoch whose
  /// leader this answer still lists: a broker whose metadata lags behind (during a
  /// failover) must not send the client back to a leader it already saw replaced. A topic
  /// missing from an answer is forgotten with its epochs, so a re-created topic starts over.
  func keepingNewerLeaders(from cached: ClusterMetadata) -> ClusterMetadata {
    var merged = self
    for (name, topic) in topics {
      guard let old = cached.topics[name], old.partitions.count == topic.partitions.count
      else { continue }
      var partitions = topic.partitions
      for index in partitions.indices {
        let before = old.partitions[index]
        guard before.partition == partitions[index].partition,
          before.leaderEpoch > partitions[index].leaderEpoch, before.leaderId >= 0,
          brokers[before.leaderId] != nil
        else { continue }
        partitions[index] = before
      }
      merged.topics[name]?.partitions = partitions
    }
    return merged
  }

  init(response: MetadataResponse, fetchedAt: ContinuousClock.Instant) {
    for broker in response.brokers {
      // A port outside the TCP range would trap in HostPort; such a broker is unusable.
      guard (1...65535).contains(broker.port), !broker.host.isEmpty else { continue }
      brokers[broker.nodeId] = BrokerInfo(
        nodeId: broker.nodeId, address: HostPort(host: broker.host, port: Int(broker.port)),
        rack: broker.rack)
    }
    controllerId = response.controllerId
    clusterId = response.clusterId
    for topic in response.topics {
      if topic.errorCode != .none {
        topicErrors[topic.name] = topic.errorCode
        continue
      }
      let partitions = topic.partitions.map {
        PartitionInfo(
          partition: $0.partition, leaderId: $0.leaderId, leaderEpoch: $0.leaderEpoch,
          replicas: $0.replicas, isr: $0.isr, offlineReplicas: $0.offlineReplicas,
          errorCode: $0.errorCode)
      }.sorted { $0.partition < $1.partition }
      topics[topic.name] = TopicInfo(
        name: topic.name, partitions: partitions,
        configs: Dictionary(topic.configs.map { ($0.key, $0.value) }) { _, last in last })
    }
    self.fetchedAt = fetchedAt
  }
}

/// The client's view of the cluster, learned from any broker with the Metadata API.
///
/// Readers take the current snapshot without waiting. A refresh asks the brokers it knows
/// (then the bootstrap list) until one answers; concurrent refreshes share one request.
final class MetadataCache: Sendable {
  private struct State {
    var snapshot = ClusterMetadata()
    var isStale = true
    var refresh: Task<ClusterMetadata, any Error>?
    var refreshCount = 0
  }

  private let config: ClientConfig
  private let sender: MetadataSender
  private let state = NIOLockedValueBox(State())

  init(config: ClientConfig, sender: MetadataSender) {
    self.config = config
    self.sender = sender
  }

  var snapshot: ClusterMetadata { state.withLockedValue { $0.snapshot } }

  /// Completed Metadata requests (for tests).
  var refreshCount: Int { state.withLockedValue { $0.refreshCount } }

  /// Marks the snapshot stale: the next `current()` refreshes. Called after errors that
  /// mean a leader moved or a broker went away.
  func invalidate() {
    state.withLockedValue { $0.isStale = true }
  }

  /// The snapshot, refreshed first when stale or older than `metadataMaxAgeMs`.
  func current() async throws -> ClusterMetadata {
    let (snapshot, isStale) = state.withLockedValue { ($0.snapshot, $0.isStale) }
    if !isStale, let fetchedAt = snapshot.fetchedAt,
      (ContinuousClock.now - fetchedAt).wholeMilliseconds < config.metadataMaxAgeMs
    {
      return snapshot
    }
    return try await refresh()
  }

  /// Fetches metadata for all topics now (or joins a refresh already running).
  @discardableResult
  func refresh() async throws -> ClusterMetadata {
    let task = state.withLockedValue { state -> Task<ClusterMetadata, any Error> in
      if let running = state.refresh { return running }
      let known = state.snapshot.brokers.values.map(\.address)
      let sender = sender
      let bootstrap = config.bootstrapBrokers
      let task = Task {
        try await Self.fetch(from: known.shuffled() + bootstrap, sender: sender)
      }
      state.refresh = task
      return task
    }
    do {
      let fetched = try await task.value
      return state.withLockedValue { state in
        guard state.refresh == task else {
          return fetched.keepingNewerLeaders(from: state.snapshot)
        }
        state.refresh = nil
        state.snapshot = fetched.keepingNewerLeaders(from: state.snapshot)
        state.isStale = false
        state.refreshCount += 1
        return state.snapshot
      }
    } catch {
      state.withLockedValue { state in
        if state.refresh == task { state.refresh = nil }
      }
      throw error
    }
  }

  private static func fetch(from candidates: [HostPort], sender: MetadataSender) async throws
    -> ClusterMetadata
  {
    var seen = Set<HostPort>()
    var failures: [String] = []
    for broker in candidates where seen.insert(broker).inserted {
      do {
        let response = try await sender.send(.metadata(MetadataRequest(topics: nil)), to: broker)
        guard case .metadata(let metadata) = response else {
          throw StreamBusError(.protocolViolation, "Metadata to \(broker): wrong response type")
        }
        return ClusterMetadata(response: metadata, fetchedAt: .now)
      } catch {
        failures.append(StreamBusError.wrapping(error, context: "Metadata").message)
      }
    }
    throw StreamBusError(
      .connection,
      "cannot fetch metadata from any broker (\(failures.joined(separator: "; ")))")
  }

  /// The topic's metadata, refreshing until it appears or `waitMs` passes (a topic that was
  /// just created may take a moment to show up everywhere).
  func topic(_ name: String, waitMs: Int64) async throws -> TopicInfo {
    let deadline = ContinuousClock.now + .clampedMilliseconds(waitMs)
    var metadata = try await current()
    var attempt = 0
    while true {
      if let topic = metadata.topics[name], !topic.partitions.isEmpty {
        return topic
      }
      if ContinuousClock.now >= deadline {
        let code = metadata.topicErrors[name] ?? .unknownTopicOrPartition
        throw StreamBusError.broker(
          code,
          message: code == .unknownTopicOrPartition
            ? "topic \"\(name)\" does not exist" : "topic \"\(name)\": \(code.meaning)",
          topic: name)
      }
      attempt += 1
      try await Task.sleep(for: .clampedMilliseconds(config.backoffMs(attempt: attempt)))
      metadata = try await refresh()
    }
  }
}
