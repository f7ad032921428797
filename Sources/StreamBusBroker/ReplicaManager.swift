import Logging
import NIOConcurrencyHelpers
import NIOPosix
import StreamBusProtocol
import StreamBusStorage

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

/// The topics and partition replicas this broker hosts.
///
/// Topic creation and deletion are serialized on this actor; lookups on the request path
/// read a lock-protected registry instead, so they never queue behind an admin operation.
/// Blocking file work (opening and recovering logs, topic files, removing directories) runs
/// on the NIO thread pool.
///
/// In standalone mode topics come from CreateTopics/DeleteTopics and are persisted in the
/// data directory. In cluster mode the same registry is driven by metadata deltas from the
/// metaserver ("partitions I now lead, follow, or must delete").
public actor ReplicaManager {
  public nonisolated let store: TopicStore
  /// Whether the data disk is full, as the replicas' writes see it.
  public nonisolated let diskSpace: DiskSpaceMonitor
  private let configuration: BrokerConfiguration
  private let threadPool: NIOThreadPool
  private let logger: Logger

  private struct Registry {
    var topics: [String: TopicDescription] = [:]
    var replicas: [TopicPartition: PartitionReplica] = [:]
  }

  private nonisolated let registry = NIOLockedValueBox(Registry())

  private init(configuration: BrokerConfiguration, threadPool: NIOThreadPool, logger: Logger) {
    self.configuration = configuration
    self.store = TopicStore(
      dataDirectory: configuration.dataDirectory, fileSystem: configuration.fileSystem)
    self.threadPool = threadPool
    self.logger = logger
    self.diskSpace = DiskSpaceMonitor(
      dataDirectory: configuration.dataDirectory, fileSystem: configuration.fileSystem,
      logger: logger, probeBytes: configuration.diskFullProbeBytes)
  }

  /// Loads every topic of the data directory and opens (recovers) its partition logs.
  /// Partition directories of no known topic (a crash during create or delete) are removed.
  public static func open(
    configuration: BrokerConfiguration, threadPool: NIOThreadPool = .singleton, logger: Logger
  ) async throws -> ReplicaManager {
    let manager = ReplicaManager(
      configuration: configuration, threadPool: threadPool, logger: logger)
    try await manager.load()
    return manager
  }

  private func load() async throws {
    let store = store
    let defaults = configuration.topicDefaults
    let (topics, directories) = try await threadPool.runIfActive {
      try store.prepare()
      return (try store.loadAll(defaults: defaults), try store.partitionDirectories())
    }
    var known = Set<TopicPartition>()
    for topic in topics {
      for partition in 0..<topic.partitionCount {
        known.insert(TopicPartition(topic: topic.name, partition: partition))
      }
    }
    for (name, topicPartition) in directories where !known.contains(topicPartition) {
      logger.warning(
        "removing partition directory of no known topic (left by an interrupted create or delete)",
        metadata: ["directory": "\(name)"])
      try await removeDirectory(store.dataDirectory + "/" + name)
    }
    for topic in topics {
      let replicas = try await openReplicas(topic)
      registry.withLockedValue { registry in
        registry.topics[topic.name] = topic
        for replica in replicas {
          registry.replicas[replica.topicPartition] = replica
        }
      }
    }
    logger.info(
      "loaded topics",
      metadata: [
        "topics": "\(topics.count)",
        "partitions": "\(topics.reduce(0) { $0 + Int($1.partitionCount) })",
      ])
  }

  /// Cluster mode: topics come from the metadata image, so nothing is loaded here; the
  /// reconciler hosts replicas with `hostReplica` and removes them with `removeReplica`.
  public static func openForCluster(
    configuration: BrokerConfiguration, threadPool: NIOThreadPool = .singleton, logger: Logger
  ) async throws -> ReplicaManager {
    let manager = ReplicaManager(
      configuration: configuration, threadPool: threadPool, logger: logger)
    let fileSystem = configuration.fileSystem
    let dataDirectory = configuration.dataDirectory
    try await threadPool.runIfActive { try fileSystem.createDirectory(dataDirectory) }
    return manager
  }

  /// Runs the disk monitor's probe on the thread pool (see `DiskSpaceMonitor.probe`).
  @discardableResult
  public nonisolated func probeDiskSpace() async -> Bool {
    await diskSpace.probe(on: threadPool)
  }

  // MARK: Lookups (any thread)

  public nonisolated func replica(_ topicPartition: TopicPartition) -> PartitionReplica? {
    registry.withLockedValue { $0.replicas[topicPartition] }
  }

  public nonisolated func topic(named name: String) -> TopicDescription? {
    registry.withLockedValue { $0.topics[name] }
  }

  /// Every topic, sorted by name.
  public nonisolated func allTopics() -> [TopicDescription] {
    registry.withLockedValue { Array($0.topics.values) }.sorted { $0.name < $1.name }
  }

  public nonisolated func allReplicas() -> [PartitionReplica] {
    registry.withLockedValue { Array($0.replicas.values) }
  }

  // MARK: Create and delete

  /// Validates and (unless `validateOnly`) creates a topic: partition logs first, then the
  /// topic file (the commit point), then it becomes visible.
  public func createTopic(
    name: String, partitionCount requestedPartitions: Int32,
    replicationFactor requestedFactor: Int16,
    configs: [(key: String, value: String?)], validateOnly: Bool
  ) async throws(BrokerRequestError) -> TopicDescription {
    try TopicName.validate(name)
    guard topic(named: name) == nil else {
      throw BrokerRequestError(.topicAlreadyExists, "topic \"\(name)\" already exists")
    }
    let partitionCount =
      requestedPartitions == -1 ? configuration.defaultPartitionCount : requestedPartitions
    guard partitionCount >= 1 && partitionCount <= configuration.partitionsPerTopicMax else {
      throw BrokerRequestError(
        .invalidPartitions,
        "partition count \(requestedPartitions) must be in 1...\(configuration.partitionsPerTopicMax)"
          + " (or -1 for the default, \(configuration.defaultPartitionCount))")
    }
    let replicationFactor = requestedFactor == -1 ? Int16(1) : requestedFactor
    guard replicationFactor == 1 else {
      throw BrokerRequestError(
        .invalidReplicationFactor,
        "replication factor \(requestedFactor) is not possible: a standalone broker is the only "
          + "broker, so it must be 1 (or -1 for the default)")
    }
    let config = try TopicConfig(configs, defaults: configuration.topicDefaults)
    let topic = TopicDescription(
      name: name, partitionCount: partitionCount, replicationFactor: replicationFactor,
      config: config)
    if validateOnly {
      return topic
    }

    var replicas: [PartitionReplica] = []
    do {
      // A directory of this name can only be garbage: the topic does not exist.
      for partition in 0..<partitionCount {
        try await removeDirectory(
          store.partitionDirectory(TopicPartition(topic: name, partition: partition)))
      }
      replicas = try await openReplicas(topic)
      let store = store
      try await threadPool.runIfActive { try store.save(topic) }
    } catch {
      for replica in replicas {
        await replica.close(.deleted)
      }
      for partition in 0..<partitionCount {
        try? await removeDirectory(
          store.partitionDirectory(TopicPartition(topic: name, partition: partition)))
      }
      logger.error("creating topic \(name) failed: \(error)")
      throw BrokerRequestError(.storageError, "creating topic \"\(name)\" failed: \(error)")
    }
    registry.withLockedValue { registry in
      registry.topics[name] = topic
      for replica in replicas {
        registry.replicas[replica.topicPartition] = replica
      }
    }
    logger.info(
      "created topic",
      metadata: [
        "topic": "\(name)", "partitions": "\(partitionCount)",
        "configs": "\(config.overrides.map { "\($0.key)=\($0.value)" })",
      ])
    return topic
  }

  /// Removes a topic: it disappears from lookups at once, its replicas close (waiting
  /// requests get UNKNOWN_TOPIC_OR_PARTITION), then its file and directories are deleted.
  public func deleteTopic(name: String) async throws(BrokerRequestError) {
    let removed = registry.withLockedValue { registry -> [PartitionReplica]? in
      guard let topic = registry.topics.removeValue(forKey: name) else { return nil }
      return (0..<topic.partitionCount).compactMap {
        registry.replicas.removeValue(forKey: TopicPartition(topic: name, partition: $0))
      }
    }
    guard let removed else {
      throw BrokerRequestError(.unknownTopicOrPartition, "topic \"\(name)\" does not exist")
    }
    await withTaskGroup(of: Void.self) { group in
      for replica in removed {
        group.addTask { await replica.close(.deleted) }
      }
    }
    let store = store
    do {
      try await threadPool.runIfActive { try store.removeTopicFile(name) }
    } catch {
      logger.error("deleting the topic file of \(name) failed: \(error)")
      throw BrokerRequestError(
        .storageError,
        "topic \"\(name)\" is closed but its file could not be removed (it returns on restart): "
          + "\(error)")
    }
    for replica in removed {
      do {
        try await removeDirectory(store.partitionDirectory(replica.topicPartition))
      } catch {
        // The topic file is gone, so the next start removes the directory.
        logger.warning("removing the directory of \(replica.topicPartition) failed: \(error)")
      }
    }
    logger.info("deleted topic", metadata: ["topic": "\(name)"])
  }

  /// Closes every replica (flushing its log) and forgets them; used at shutdown.
  public func closeAll() async {
    let replicas = registry.withLockedValue { registry -> [PartitionReplica] in
      defer {
        registry.replicas = [:]
        registry.topics = [:]
      }
      return Array(registry.replicas.values)
    }
    await withTaskGroup(of: Void.self) { group in
      for replica in replicas {
        group.addTask { await replica.close(.shutdown) }
      }
    }
  }

  // MARK: Cluster mode

  /// Name of the file in a partition directory that holds the topic id (cluster mode), so a
  /// directory left by a deleted topic of the same name is never mistaken for this one.
  public static let partitionMetadataFileName = "partition.metadata"

  /// The hosted replica of `topicPartition`, opened (recovered) or created when it is not
  /// open yet. A directory whose `partition.metadata` names another topic id (or none) is
  /// deleted first: it belongs to an earlier topic of the same name.
  public func hostReplica(
    _ topicPartition: TopicPartition, topicID: Int64, config: TopicConfig,
    localBrokerID: Int32
  ) async throws -> (replica: PartitionReplica, opened: Bool) {
    if let replica = replica(topicPartition) {
      return (replica, false)
    }
    let directory = store.partitionDirectory(topicPartition)
    let fileSystem = configuration.fileSystem
    let metadataPath = directory + "/" + Self.partitionMetadataFileName
    let expected = Array("version=1\ntopic.id=\(topicID)\n".utf8)
    let existing = try await threadPool.runIfActive { () -> [UInt8]? in
      guard fileSystem.fileExists(directory) else { return nil }
      return try? AtomicFile.read(metadataPath, fileSystem: fileSystem)
    }
    if existing != expected {
      let directoryExists = try await directoryExists(directory)
      if directoryExists {
        logger.info(
          "deleting partition directory of another topic id",
          metadata: ["partition": "\(topicPartition)", "topicID": "\(topicID)"])
      }
      try await removeDirectory(directory)
      do {
        try await threadPool.runIfActive {
          try fileSystem.createDirectory(directory)
          try AtomicFile.write(metadataPath, expected, fileSystem: fileSystem)
        }
      } catch {
        diskSpace.noteWriteFailure(error, while: "creating the directory of \(topicPartition)")
        throw error
      }
    }
    let logConfig = config.logConfig(
      flushPolicy: configuration.flushPolicy, batchBytesMax: configuration.messageBytesMax)
    let minInsyncReplicas = config.minInsyncReplicas
    let threadPool = threadPool
    let logger = logger
    let diskSpace = diskSpace
    let replica: PartitionReplica
    do {
      replica = try await threadPool.runIfActive {
        try PartitionReplica(
          topicPartition: topicPartition, directory: directory, logConfig: logConfig,
          minInsyncReplicas: minInsyncReplicas, fileSystem: fileSystem,
          threadPool: threadPool, logger: logger, localBrokerID: localBrokerID,
          diskSpace: diskSpace)
      }
    } catch {
      diskSpace.noteWriteFailure(error, while: "opening the log of \(topicPartition)")
      throw error
    }
    registry.withLockedValue { $0.replicas[topicPartition] = replica }
    return (replica, true)
  }

  /// Stops hosting a replica (reassigned away or its topic deleted): it disappears from
  /// lookups, closes (waiting requests get UNKNOWN_TOPIC_OR_PARTITION) and its directory is
  /// deleted.
  public func removeReplica(_ topicPartition: TopicPartition) async {
    let removed = registry.withLockedValue { $0.replicas.removeValue(forKey: topicPartition) }
    if let removed {
      await removed.close(.deleted)
    }
    do {
      try await removeDirectory(store.partitionDirectory(topicPartition))
    } catch {
      logger.warning("removing the directory of \(topicPartition) failed: \(error)")
    }
  }

  /// Deletes every partition directory not in `assigned` and not hosted (data of topics
  /// deleted or moved away while this broker was down).
  public func removeUnassignedDirectories(keeping assigned: Set<TopicPartition>) async {
    let store = store
    let directories: [(name: String, topicPartition: TopicPartition)]
    do {
      directories = try await threadPool.runIfActive { try store.partitionDirectories() }
    } catch {
      logger.warning("listing partition directories failed: \(error)")
      return
    }
    for (name, topicPartition) in directories
    where !assigned.contains(topicPartition) && replica(topicPartition) == nil {
      logger.info(
        "deleting partition directory not assigned to this broker",
        metadata: ["directory": "\(name)"])
      try? await removeDirectory(store.dataDirectory + "/" + name)
    }
  }

  private func directoryExists(_ path: String) async throws -> Bool {
    let fileSystem = configuration.fileSystem
    return try await threadPool.runIfActive { fileSystem.fileExists(path) }
  }

  // MARK: Files

  private func openReplicas(_ topic: TopicDescription) async throws -> [PartitionReplica] {
    let logConfig = topic.config.logConfig(
      flushPolicy: configuration.flushPolicy, batchBytesMax: configuration.messageBytesMax)
    var replicas: [PartitionReplica] = []
    do {
      for partition in 0..<topic.partitionCount {
        let topicPartition = TopicPartition(topic: topic.name, partition: partition)
        let directory = store.partitionDirectory(topicPartition)
        let fileSystem = configuration.fileSystem
        let minInsyncReplicas = topic.config.minInsyncReplicas
        let threadPool = threadPool
        let logger = logger
        let diskSpace = diskSpace
        let replica = try await threadPool.runIfActive {
          try PartitionReplica(
            topicPartition: topicPartition, directory: directory, logConfig: logConfig,
            minInsyncReplicas: minInsyncReplicas, fileSystem: fileSystem,
            threadPool: threadPool, logger: logger, diskSpace: diskSpace)
        }
        replicas.append(replica)
      }
    } catch {
      for replica in replicas {
        await replica.close(.shutdown)
      }
      throw error
    }
    return replicas
  }

  private func removeDirectory(_ path: String) async throws {
    let fileSystem = configuration.fileSystem
    try await threadPool.runIfActive {
      guard fileSystem.fileExists(path) else { return }
      try FileManager.default.removeItem(atPath: path)
    }
  }
}
