import Logging
import NIOPosix
import StreamBusProtocol
import StreamBusRecords
import StreamBusStorage
import Testing

@testable import StreamBusBroker

/// Three replicas of one partition in one process, each with its own directory, and a pump
/// that plays the replica fetcher: `followerFetchState` → the leader's `readForFollower` →
/// `appendAsFollower` / `truncateForDivergence` / `updateFollowerHighWatermark`.
final class ReplicaTrio {
  static let brokerIDs: [Int32] = [1, 2, 3]
  let topicPartition = TopicPartition(topic: "replicated", partition: 0)
  let directory: TemporaryDirectory
  let threadPool: NIOThreadPool
  let logConfig: LogConfig
  private(set) var replicas: [Int32: PartitionReplica] = [:]
  private(set) var leadership: PartitionLeadership

  /// File systems by broker (the real one for the others).
  let fileSystems: [Int32: any LogFileSystem]
  /// Disk monitors by broker (none for the others).
  let diskSpaces: [Int32: DiskSpaceMonitor]

  init(
    label: String = #function, fileSystems: [Int32: any LogFileSystem] = [:],
    diskSpaces: [Int32: DiskSpaceMonitor] = [:],
    configure: (inout LogConfig) -> Void = { _ in }
  ) throws {
    self.fileSystems = fileSystems
    self.diskSpaces = diskSpaces
    directory = try TemporaryDirectory(label)
    threadPool = NIOThreadPool(numberOfThreads: 2)
    threadPool.start()
    var config = LogConfig()
    configure(&config)
    logConfig = config
    leadership = PartitionLeadership(
      topicID: 42, leader: -1, leaderEpoch: 0, partitionEpoch: 0, replicas: Self.brokerIDs,
      isr: Self.brokerIDs, minInsyncReplicas: 2)
    for id in Self.brokerIDs {
      replicas[id] = try open(id)
    }
  }

  func path(_ id: Int32) -> String { directory.path + "/broker-\(id)" }

  func open(_ id: Int32) throws -> PartitionReplica {
    try PartitionReplica(
      topicPartition: topicPartition, directory: path(id), logConfig: logConfig,
      minInsyncReplicas: 1, fileSystem: fileSystems[id] ?? PosixFileSystem(),
      threadPool: threadPool,
      logger: testLogger, localBrokerID: id, diskSpace: diskSpaces[id])
  }

  subscript(id: Int32) -> PartitionReplica {
    guard let replica = replicas[id] else { preconditionFailure("no replica \(id)") }
    return replica
  }

  /// Closes replica `id` and opens it again from its directory (a broker restart), then
  /// applies the current leadership to it.
  func reopen(_ id: Int32, nowMs: Int64 = 0) async throws {
    await self[id].close(.shutdown)
    replicas[id] = try open(id)
    await self[id].applyLeadership(leadership, nowMs: nowMs)
  }

  /// Publishes a new leadership (next partition epoch) to every replica.
  func elect(
    _ leader: Int32, leaderEpoch: Int32, isr: [Int32]? = nil, minInsyncReplicas: Int = 2,
    nowMs: Int64 = 0, skipping skipped: Set<Int32> = []
  ) async {
    leadership.leader = leader
    leadership.leaderEpoch = leaderEpoch
    leadership.partitionEpoch += 1
    leadership.isr = isr ?? Self.brokerIDs
    leadership.minInsyncReplicas = minInsyncReplicas
    for id in Self.brokerIDs where !skipped.contains(id) {
      await self[id].applyLeadership(leadership, nowMs: nowMs)
    }
  }

  enum PumpStep: Equatable {
    case notFollowing
    case appended(logEndOffset: Int64)
    case caughtUp
    case truncated(logEndOffset: Int64)
    case restarted(logEndOffset: Int64)
    case failed(ErrorCode)
  }

  /// One fetch round for follower `id`.
  @discardableResult
  func pump(_ id: Int32, nowMs: Int64 = 0, maxBytes: Int = 1 << 20) async throws -> PumpStep {
    guard let state = await self[id].followerFetchState(), let leader = replicas[state.leader]
    else { return .notFollowing }
    let outcome = await leader.readForFollower(
      FollowerFetch(
        replicaID: id, fetchOffset: state.fetchOffset, lastFetchedEpoch: state.lastFetchedEpoch,
        currentLeaderEpoch: state.leaderEpoch, logStartOffset: state.logStartOffset,
        maxBytes: maxBytes), nowMs: nowMs)
    if let diverging = outcome.divergingEpoch {
      let end = try await self[id].truncateForDivergence(
        epoch: diverging.epoch, endOffset: diverging.endOffset)
      return .truncated(logEndOffset: end)
    }
    if outcome.errorCode == .offsetOutOfRange && state.fetchOffset < outcome.logStartOffset {
      // The leader no longer has what follows this log: start over at its log start.
      let end = try await self[id].appendAsFollower(
        [], leaderEpoch: outcome.leaderEpoch, leaderHighWatermark: outcome.highWatermark,
        leaderLogStartOffset: outcome.logStartOffset)
      return .restarted(logEndOffset: end)
    }
    guard outcome.errorCode == .none else { return .failed(outcome.errorCode) }
    if outcome.records.isEmpty {
      await self[id].updateFollowerHighWatermark(outcome.highWatermark)
      return .caughtUp
    }
    let end = try await self[id].appendAsFollower(
      outcome.records, leaderEpoch: outcome.leaderEpoch,
      leaderHighWatermark: outcome.highWatermark, leaderLogStartOffset: outcome.logStartOffset)
    return .appended(logEndOffset: end)
  }

  /// Pumps every follower until none gets new data or truncates.
  func pumpUntilQuiet(nowMs: Int64 = 0) async throws {
    for _ in 0..<20 {
      var moved = false
      for id in Self.brokerIDs {
        switch try await pump(id, nowMs: nowMs) {
        case .appended, .truncated, .restarted: moved = true
        default: break
        }
      }
      if !moved { return }
    }
    Issue.record("replication did not settle")
  }

  func state(_ id: Int32) async -> ReplicationState { await self[id].replicationState() }

  /// Every batch of replica `id`'s log, read straight from its files after closing it.
  func closeAndReadLog(_ id: Int32) async throws -> [UInt8] {
    await self[id].close(.shutdown)
    let log = try PartitionLog(directory: path(id), config: logConfig)
    defer { try? log.close() }
    var bytes: [UInt8] = []
    var offset = log.logStartOffset
    while offset < log.logEndOffset {
      let result = try log.read(from: offset, maxBytes: 1 << 20)
      guard result.nextOffset > offset else { break }
      bytes += result.bytes
      offset = result.nextOffset
    }
    return bytes
  }

  func shutdown() async {
    for replica in replicas.values {
      await replica.close(.shutdown)
    }
    try? await threadPool.shutdownGracefully()
    directory.remove()
  }
}

/// A batch from an idempotent producer.
func producerBatch(
  producerId: Int64, producerEpoch: Int16 = 0, baseSequence: Int32, records count: Int = 2,
  seed: Int = 0
) -> [UInt8] {
  var builder = RecordBatchBuilder(
    producerId: producerId, producerEpoch: producerEpoch, baseSequence: baseSequence)
  let timestamp = PartitionLog.wallClockMs()
  for index in 0..<count {
    builder.append(
      key: Array("p\(producerId)-\(baseSequence)-\(index)".utf8),
      value: [UInt8](repeating: UInt8(truncatingIfNeeded: seed &+ index), count: 8),
      timestamp: timestamp)
  }
  return builder.build()
}
