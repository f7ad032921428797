import Logging
import StreamBusMetadata
import StreamBusProtocol
import StreamBusStorage

/// Drives the local replicas from metadata images: hosts (opens or creates) every
/// partition whose replicas include this broker, hands each its leadership from the image,
/// closes and deletes the ones no longer assigned here, and tells the fetchers which
/// partitions to copy from which leader.
///
/// Images are applied one at a time, newest first: a reconcile that is running when more
/// images arrive is followed by one reconcile of the latest. Every step is idempotent, so a
/// reconcile of an unchanged image does nothing.
actor ClusterReconciler {
  private let brokerID: Int32
  private let replicaManager: ReplicaManager
  private let configuration: BrokerConfiguration
  private let fetchers: ReplicaFetcherManager
  private let logger: Logger

  /// The topic id each hosted partition belongs to.
  private var hostedTopicIDs: [TopicPartition: Int64] = [:]
  /// The leadership last handed to each hosted replica.
  private var appliedLeadership: [TopicPartition: PartitionLeadership] = [:]
  private var pendingImage: MetadataImage?
  private var isRunning = false
  private var lastImage: MetadataImage?
  private var sessionValid = true
  /// Set once directories of unassigned partitions were removed (after the first
  /// reconcile of a caught-up image).
  private var removedStrayDirectories = false
  private var retryTask: Task<Void, Never>?

  init(
    brokerID: Int32, replicaManager: ReplicaManager, configuration: BrokerConfiguration,
    fetchers: ReplicaFetcherManager, logger: Logger
  ) {
    self.brokerID = brokerID
    self.replicaManager = replicaManager
    self.configuration = configuration
    self.fetchers = fetchers
    self.logger = logger
  }

  /// Queues `image` and reconciles unless a reconcile is already running (which then picks
  /// up the newest queued image when it finishes). Returns once `image` (or a newer one) is
  /// applied, when no reconcile was running.
  func submit(_ image: MetadataImage) async {
    if let pending = pendingImage, pending.offset > image.offset { return }
    pendingImage = image
    guard !isRunning else { return }
    isRunning = true
    while let next = pendingImage {
      pendingImage = nil
      await reconcile(next)
    }
    isRunning = false
  }

  /// Partition directories of topics the image does not assign here (deleted or moved while
  /// this broker was down) go away, once the reconciled image holds this broker's current
  /// registration (`brokerEpoch`). Every record that could have made a local directory
  /// precedes that registration, so such an image cannot miss a topic this broker hosts; a
  /// metaserver that answered from a lagging state earlier cannot make it delete live data.
  /// Returns false while the reconciled image is older than that (call again).
  func removeStrayDirectories(brokerEpoch: Int64) async -> Bool {
    guard !removedStrayDirectories else { return true }
    guard let image = lastImage, image.brokers[brokerID]?.epoch == brokerEpoch else {
      return false
    }
    removedStrayDirectories = true
    await replicaManager.removeUnassignedDirectories(keeping: assignedPartitions(image))
    return true
  }

  /// Whether the broker's metadata session is alive; replicas stop acting as leader while not.
  func setSessionValid(_ valid: Bool) async {
    guard valid != sessionValid else { return }
    sessionValid = valid
    if valid {
      logger.info("metadata session is back; leaders serve again")
    } else {
      logger.warning(
        "no successful heartbeat within the session timeout; not acting as leader until one succeeds"
      )
    }
    for replica in replicaManager.allReplicas() {
      await replica.setLeaderSessionValid(valid)
    }
  }

  private func assignedPartitions(_ image: MetadataImage) -> Set<TopicPartition> {
    var assigned = Set<TopicPartition>()
    for topic in image.topics.values {
      for partition in topic.partitions where partition.replicas.contains(brokerID) {
        assigned.insert(TopicPartition(topic: topic.name, partition: partition.partition))
      }
    }
    return assigned
  }

  /// The topic's configuration over the broker defaults; an entry the broker does not
  /// accept is logged and the defaults are used for the topic.
  private func topicConfig(_ topic: TopicImage) -> TopicConfig {
    let entries = topic.configs.sorted { $0.key < $1.key }.map {
      (key: $0.key, value: Optional($0.value))
    }
    do {
      return try TopicConfig(
        entries.filter { TopicConfig.validKeys.contains($0.key) },
        defaults: configuration.topicDefaults)
    } catch {
      logger.warning(
        "topic config not usable here; using broker defaults",
        metadata: ["topic": "\(topic.name)", "error": "\(error)"])
      do {
        return try TopicConfig([], defaults: configuration.topicDefaults)
      } catch {
        preconditionFailure("the broker's topic defaults were validated at start: \(error)")
      }
    }
  }

  /// `min.insync.replicas` of the topic, else 2 when the replication factor is at least 3,
  /// else 1 (PHASE4 decision).
  static func effectiveMinInsyncReplicas(configs: [String: String], replicationFactor: Int)
    -> Int
  {
    if let text = configs[TopicConfig.minInsyncReplicasKey], let value = Int(text), value >= 1 {
      return value
    }
    return replicationFactor >= 3 ? 2 : 1
  }

  private func reconcile(_ image: MetadataImage) async {
    lastImage = image
    let nowMs = PartitionLog.wallClockMs()
    var assigned = Set<TopicPartition>()
    var followed: [Int32: Set<TopicPartition>] = [:]
    var failed = false
    for topic in image.topicsByID {
      var config: TopicConfig?
      for partition in topic.partitions where partition.replicas.contains(brokerID) {
        let topicPartition = TopicPartition(topic: topic.name, partition: partition.partition)
        assigned.insert(topicPartition)
        if let hostedID = hostedTopicIDs[topicPartition], hostedID != topic.id {
          logger.info(
            "topic was recreated; replacing the local replica",
            metadata: [
              "partition": "\(topicPartition)", "oldTopicID": "\(hostedID)",
              "topicID": "\(topic.id)",
            ])
          await remove(topicPartition)
        }
        let topicConfig = config ?? topicConfig(topic)
        config = topicConfig
        let replica: PartitionReplica
        let opened: Bool
        do {
          (replica, opened) = try await replicaManager.hostReplica(
            topicPartition, topicID: topic.id, config: topicConfig, localBrokerID: brokerID)
        } catch {
          logger.error(
            "cannot open replica; retrying later",
            metadata: ["partition": "\(topicPartition)", "error": "\(error)"])
          failed = true
          continue
        }
        hostedTopicIDs[topicPartition] = topic.id
        if opened {
          logger.info(
            "hosting replica",
            metadata: ["partition": "\(topicPartition)", "topicID": "\(topic.id)"])
          if !sessionValid {
            await replica.setLeaderSessionValid(false)
          }
        }
        let leadership = PartitionLeadership(
          topicID: topic.id, leader: partition.leader, leaderEpoch: partition.leaderEpoch,
          partitionEpoch: partition.partitionEpoch, replicas: partition.replicas,
          isr: partition.isr,
          minInsyncReplicas: Self.effectiveMinInsyncReplicas(
            configs: topic.configs, replicationFactor: partition.replicas.count))
        if opened || appliedLeadership[topicPartition] != leadership {
          await apply(
            leadership, to: replica, previous: appliedLeadership[topicPartition], nowMs: nowMs)
          appliedLeadership[topicPartition] = leadership
        }
        if partition.leader != brokerID && partition.leader != noLeader {
          followed[partition.leader, default: []].insert(topicPartition)
        }
      }
    }
    for topicPartition in hostedTopicIDs.keys where !assigned.contains(topicPartition) {
      logger.info(
        "partition no longer assigned here (reassigned or topic deleted); deleting the replica",
        metadata: ["partition": "\(topicPartition)"])
      await remove(topicPartition)
    }
    await fetchers.update(followed)
    if failed {
      scheduleRetry()
    }
  }

  private func apply(
    _ leadership: PartitionLeadership, to replica: PartitionReplica,
    previous: PartitionLeadership?, nowMs: Int64
  ) async {
    await replica.applyLeadership(leadership, nowMs: nowMs)
    let partition = "\(replica.topicPartition)"
    let changedLeader =
      previous?.leader != leadership.leader || previous?.leaderEpoch != leadership.leaderEpoch
    if leadership.leader == brokerID {
      if changedLeader {
        logger.info(
          "became leader of \(partition) at epoch \(leadership.leaderEpoch)",
          metadata: ["isr": "\(leadership.isr)", "replicas": "\(leadership.replicas)"])
      } else {
        logger.info(
          "ISR of \(partition) is now \(leadership.isr)",
          metadata: ["partitionEpoch": "\(leadership.partitionEpoch)"])
      }
    } else if changedLeader {
      if leadership.leader == noLeader {
        logger.info("\(partition) has no leader (epoch \(leadership.leaderEpoch)); waiting")
      } else {
        logger.info(
          "became follower of \(partition) at epoch \(leadership.leaderEpoch), leader \(leadership.leader)"
        )
      }
    }
  }

  private func remove(_ topicPartition: TopicPartition) async {
    await fetchers.forget(topicPartition)
    await replicaManager.removeReplica(topicPartition)
    hostedTopicIDs[topicPartition] = nil
    appliedLeadership[topicPartition] = nil
  }

  /// Reconciles the last image again in a second (a replica that could not be opened).
  private func scheduleRetry() {
    guard retryTask == nil else { return }
    retryTask = Task { [weak self] in
      try? await Task.sleep(for: .seconds(1))
      guard let self, !Task.isCancelled else { return }
      await self.retry()
    }
  }

  private func retry() async {
    retryTask = nil
    if let image = lastImage {
      await submit(image)
    }
  }

  func stop() {
    retryTask?.cancel()
    retryTask = nil
  }
}
