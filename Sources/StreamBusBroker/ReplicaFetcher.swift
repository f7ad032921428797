import Logging
import NIOConcurrencyHelpers
import StreamBusProtocol
import StreamBusTransport

/// What every fetcher of a broker shares.
struct ReplicaFetcherContext: Sendable {
  var brokerID: Int32
  var settings: ClusterSettings
  var replicaManager: ReplicaManager
  var view: ClusterMetadataView
  /// The broker epoch of the current registration (sent as `replicaBrokerEpoch`).
  var brokerEpoch: @Sendable () async -> Int64
  var logger: Logger
}

/// One `ReplicaFetcher` per leader broker this broker follows partitions of, created and
/// retired as leadership moves.
actor ReplicaFetcherManager {
  private let context: ReplicaFetcherContext
  private var fetchers: [Int32: ReplicaFetcher] = [:]
  private var isStopped = false

  init(context: ReplicaFetcherContext) {
    self.context = context
  }

  /// Makes the fetchers copy exactly `followed` (leader broker → its partitions here).
  func update(_ followed: [Int32: Set<TopicPartition>]) async {
    guard !isStopped else { return }
    for (leader, fetcher) in fetchers where followed[leader]?.isEmpty ?? true {
      fetchers[leader] = nil
      context.logger.info("stopping replica fetcher", metadata: ["leader": "\(leader)"])
      await fetcher.stop()
    }
    for (leader, partitions) in followed where !partitions.isEmpty {
      if let fetcher = fetchers[leader] {
        fetcher.setPartitions(partitions)
      } else {
        context.logger.info(
          "starting replica fetcher",
          metadata: ["leader": "\(leader)", "partitions": "\(partitions.count)"])
        let fetcher = ReplicaFetcher(sourceBrokerID: leader, context: context)
        fetcher.setPartitions(partitions)
        fetcher.start()
        fetchers[leader] = fetcher
      }
    }
  }

  /// Stops copying `topicPartition` (its replica is going away).
  func forget(_ topicPartition: TopicPartition) {
    for fetcher in fetchers.values {
      fetcher.removePartition(topicPartition)
    }
  }

  func stopAll() async {
    isStopped = true
    let all = fetchers.values
    fetchers = [:]
    for fetcher in all {
      await fetcher.stop()
    }
  }
}

/// Copies the partitions this broker follows from one leader broker: one long-poll Fetch
/// (replicaId = this broker) carries all of them. Records are appended with
/// `appendAsFollower`, which returns once they are fsynced, and only then is the next fetch
/// sent, so the leader may take each `fetchOffset` as this replica's durable end. A
/// diverging-epoch answer truncates the log and fetches again; a partition the leader
/// refuses (not leader, fenced or unknown epoch) rests briefly and is retried with the
/// then-current metadata; a connection failure backs off 50 ms doubling up to 1 s.
final class ReplicaFetcher: Sendable {
  let sourceBrokerID: Int32
  private let context: ReplicaFetcherContext
  private let logger: Logger

  private struct State {
    var partitions: Set<TopicPartition> = [] {
      // Sorted once per change, not per fetch round: the round walks every partition.
      didSet {
        sortedPartitions = partitions.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
      }
    }
    var sortedPartitions: [TopicPartition] = []
    var task: Task<Void, Never>?
    var connection: FrameConnection?
    var isStopped = false
    /// A fetch is out (a long-poll of up to `replicaFetchMaxWaitMs`).
    var isFetching = false
    /// The fetch out was cut short (its connection closed) to add partitions at once.
    var wasInterrupted = false
  }

  private let state = NIOLockedValueBox(State())
  private let wakeup = FetchWakeup()
  /// How long a partition the leader refused rests before it is fetched again.
  static let refusedPartitionRestMs: Int64 = 100
  /// How soon a partition skipped because its log is still being flushed is looked at again.
  static let flushingPartitionRecheckMs: Int64 = 10
  /// How often a fetcher paused by a full disk looks whether it has space again.
  static let fullDiskRecheckMs: Int64 = 250
  static let backoffMinMs: Int64 = 50
  static let backoffMaxMs: Int64 = 1_000

  init(sourceBrokerID: Int32, context: ReplicaFetcherContext) {
    self.sourceBrokerID = sourceBrokerID
    self.context = context
    var logger = context.logger
    logger[metadataKey: "leader"] = "\(sourceBrokerID)"
    self.logger = logger
  }

  /// Replaces the partition set. A partition added while a long-poll is out would wait for
  /// it to end (a new leader's followers would then lag by up to the long-poll bound), so
  /// that fetch is cut short by closing its connection and a new one is sent at once.
  func setPartitions(_ partitions: Set<TopicPartition>) {
    let interrupted = state.withLockedValue { state -> FrameConnection? in
      let added = !partitions.isSubset(of: state.partitions)
      state.partitions = partitions
      guard added, state.isFetching, let connection = state.connection else { return nil }
      state.wasInterrupted = true
      state.connection = nil
      return connection
    }
    wakeup.signal()
    if let interrupted {
      Task { await interrupted.close() }
    }
  }

  func removePartition(_ topicPartition: TopicPartition) {
    state.withLockedValue { _ = $0.partitions.remove(topicPartition) }
  }

  func start() {
    let task = Task { await self.run() }
    state.withLockedValue { $0.task = task }
  }

  /// Stops fetching; an in-flight fetch is abandoned (its connection closed).
  func stop() async {
    let (task, connection) = state.withLockedValue {
      state -> (Task<Void, Never>?, FrameConnection?) in
      state.isStopped = true
      return (state.task, state.connection)
    }
    task?.cancel()
    wakeup.signal()
    await connection?.close()
    await task?.value
  }

  private var isStopped: Bool { state.withLockedValue { $0.isStopped } }

  // MARK: Loop

  /// A partition in one fetch: its replica and the state the request was built from.
  private struct Entry: Sendable {
    var topicPartition: TopicPartition
    var replica: PartitionReplica
    var fetchState: FollowerFetchState
  }

  private func run() async {
    var backoffMs = Self.backoffMinMs
    /// Partitions the leader refused, with the epoch refused and when to try again.
    var resting: [TopicPartition: (epoch: Int32, untilMs: Int64)] = [:]
    var correlationID: Int32 = 0
    var lastFailure: String?
    var pausedForFullDisk = false
    /// The high watermark each partition last applied from an answer: an idle partition's
    /// answer that repeats it needs no work (a broker follows many idle partitions).
    var appliedHighWatermarks: [TopicPartition: Int64] = [:]
    var lastPartitions: [TopicPartition] = []
    while !Task.isCancelled && !isStopped {
      // Nothing fetched could be appended: stop advancing (the leader drops this replica
      // from the ISR by the lag rule) until the disk monitor's probe finds space again.
      if context.replicaManager.diskSpace.isFull {
        if !pausedForFullDisk {
          logger.warning("data disk is full: replica fetching paused until space is freed")
          pausedForFullDisk = true
          await dropConnection()
        }
        await sleep(untilMonotonicMs: MonotonicClock.nowMs() + Self.fullDiskRecheckMs)
        continue
      }
      if pausedForFullDisk {
        logger.info("data disk has space again: replica fetching resumed")
        pausedForFullDisk = false
      }
      let partitions = state.withLockedValue { $0.sortedPartitions }
      if partitions != lastPartitions {
        let followed = Set(partitions)
        appliedHighWatermarks = appliedHighWatermarks.filter { followed.contains($0.key) }
        lastPartitions = partitions
      }
      let nowMs = MonotonicClock.nowMs()
      var entries: [Entry] = []
      var nextWakeMs: Int64?
      for topicPartition in partitions {
        guard let replica = context.replicaManager.replica(topicPartition) else { continue }
        guard let fetchState = await replica.followerFetchState() else {
          // A follower of this source still flushing what it wrote as leader: ask again
          // soon, not after a whole long-poll of the other partitions.
          if case .follower(let leader, _) = await replica.role, leader == sourceBrokerID {
            nextWakeMs = min(
              nextWakeMs ?? nowMs + Self.flushingPartitionRecheckMs,
              nowMs + Self.flushingPartitionRecheckMs)
          }
          continue
        }
        guard fetchState.leader == sourceBrokerID else { continue }
        if let rest = resting[topicPartition] {
          if rest.epoch == fetchState.leaderEpoch && nowMs < rest.untilMs {
            nextWakeMs = min(nextWakeMs ?? rest.untilMs, rest.untilMs)
            continue
          }
          resting[topicPartition] = nil
        }
        entries.append(
          Entry(topicPartition: topicPartition, replica: replica, fetchState: fetchState))
      }
      guard !entries.isEmpty else {
        // Nothing to fetch now: wait for new partitions, a role change (the reconciler
        // updates the set) or a rest to end.
        await sleep(untilMonotonicMs: nextWakeMs ?? nowMs + 100)
        continue
      }
      correlationID &+= 1
      // A resting partition is left out of this fetch; the long-poll must not outlast its
      // rest, or it waits for data on the others (up to the full bound) before the rested
      // partition is asked for again — right after a leader change, when it matters most.
      var maxWaitMs = context.settings.replicaFetchMaxWaitMs
      if let nextWakeMs {
        maxWaitMs = max(0, min(maxWaitMs, nextWakeMs - nowMs))
      }
      let request = await makeRequest(
        entries, maxWaitMs: maxWaitMs, correlationID: correlationID)
      let response: FetchResponse
      state.withLockedValue { $0.isFetching = true }
      do {
        response = try await send(request)
        state.withLockedValue {
          $0.isFetching = false
          $0.wasInterrupted = false
        }
        if lastFailure != nil {
          logger.info("replica fetcher reconnected")
          lastFailure = nil
        }
        backoffMs = Self.backoffMinMs
      } catch {
        if isStopped || Task.isCancelled { break }
        let interrupted = state.withLockedValue { state -> Bool in
          defer {
            state.isFetching = false
            state.wasInterrupted = false
          }
          return state.wasInterrupted
        }
        if interrupted {
          continue
        }
        let failure = "\(error)"
        if failure != lastFailure {
          logger.warning("replica fetch failed; backing off", metadata: ["error": "\(error)"])
          lastFailure = failure
        }
        await dropConnection()
        try? await Task.sleep(for: .milliseconds(backoffMs))
        backoffMs = min(backoffMs * 2, Self.backoffMaxMs)
        continue
      }
      let refused = await handle(
        response, entries: entries, appliedHighWatermarks: &appliedHighWatermarks)
      let restUntil = MonotonicClock.nowMs() + Self.refusedPartitionRestMs
      for (topicPartition, epoch) in refused {
        resting[topicPartition] = (epoch, restUntil)
      }
    }
    await dropConnection()
  }

  private func sleep(untilMonotonicMs deadlineMs: Int64) async {
    let delayMs = max(deadlineMs - MonotonicClock.nowMs(), 1)
    let wakeup = wakeup
    let timer = Task {
      // A cancelled timer must not signal: the signal is sticky and would end the next
      // sleep at once, every time, and the fetcher would spin.
      guard (try? await Task.sleep(for: .milliseconds(delayMs))) != nil else { return }
      wakeup.signal()
    }
    await wakeup.wait()
    timer.cancel()
  }

  private func makeRequest(_ entries: [Entry], maxWaitMs: Int64, correlationID: Int32) async
    -> [UInt8]
  {
    var topics: [FetchRequest.Topic] = []
    var topicIndex: [String: Int] = [:]
    let partitionMaxBytes = Int32(clamping: context.settings.replicaFetchMaxBytes)
    for entry in entries {
      let partition = FetchRequest.Partition(
        partition: entry.topicPartition.partition,
        currentLeaderEpoch: entry.fetchState.leaderEpoch,
        fetchOffset: entry.fetchState.fetchOffset,
        lastFetchedEpoch: entry.fetchState.lastFetchedEpoch,
        logStartOffset: entry.fetchState.logStartOffset, partitionMaxBytes: partitionMaxBytes)
      if let index = topicIndex[entry.topicPartition.topic] {
        topics[index].partitions.append(partition)
      } else {
        topicIndex[entry.topicPartition.topic] = topics.count
        topics.append(FetchRequest.Topic(name: entry.topicPartition.topic, partitions: [partition]))
      }
    }
    let body = FetchRequest(
      replicaId: context.brokerID, replicaBrokerEpoch: await context.brokerEpoch(),
      maxWaitMs: Int32(clamping: maxWaitMs), minBytes: 1,
      maxBytes: Int32(clamping: context.settings.replicaFetchMaxBytes), topics: topics)
    let header = RequestHeader(
      apiKey: .fetch, apiVersion: 0, correlationId: correlationID,
      clientId: "replica-fetcher-\(context.brokerID)")
    return Request.fetch(body).encodePayload(header: header)
  }

  private func send(_ request: [UInt8]) async throws -> FetchResponse {
    let connection = try await currentConnection()
    let payload = try await connection.send(
      request, timeoutMs: context.settings.replicaFetchMaxWaitMs + 10_000)
    let (header, response) = try Response.decode(apiKey: .fetch, version: 0, payload: payload)
    guard header.errorCode == .none, case .fetch(let body) = response else {
      throw BrokerError(
        "leader \(sourceBrokerID) refused the fetch: \(header.errorCode) "
          + (header.errorMessage ?? ""))
    }
    return body
  }

  private func currentConnection() async throws -> FrameConnection {
    guard let address = context.view.clientAddress(of: sourceBrokerID) else {
      throw BrokerError("broker \(sourceBrokerID) has no client endpoint in the metadata")
    }
    let remote = HostPort(host: address.host, port: address.port)
    if let connection = state.withLockedValue({ $0.connection }), connection.isActive,
      connection.remote == remote
    {
      return connection
    }
    await dropConnection()
    var configuration = FrameConnectionConfiguration()
    configuration.connectTimeoutMs = 1_000
    configuration.requestTimeoutMs = context.settings.replicaFetchMaxWaitMs + 10_000
    var connectionLogger = logger
    connectionLogger.logLevel = .warning
    let connection = try await FrameConnection.connect(
      to: remote, configuration: configuration, logger: connectionLogger)
    let stopped = state.withLockedValue { state -> Bool in
      if state.isStopped { return true }
      state.connection = connection
      return false
    }
    if stopped {
      await connection.close()
      throw CancellationError()
    }
    return connection
  }

  private func dropConnection() async {
    let connection = state.withLockedValue { state -> FrameConnection? in
      defer { state.connection = nil }
      return state.connection
    }
    await connection?.close()
  }

  // MARK: Answers

  /// Applies each partition's answer (concurrently: partitions are independent); returns
  /// the partitions the leader refused, with the epoch they were fetched at. An answer with
  /// nothing but an unchanged high watermark is skipped without a task or an actor call.
  private func handle(
    _ response: FetchResponse, entries: [Entry],
    appliedHighWatermarks: inout [TopicPartition: Int64]
  ) async -> [(TopicPartition, Int32)] {
    var byPartition: [TopicPartition: Entry] = [:]
    for entry in entries {
      byPartition[entry.topicPartition] = entry
    }
    var answered: [(Entry, FetchResponse.Partition)] = []
    for topic in response.topics {
      for partition in topic.partitions {
        let topicPartition = TopicPartition(topic: topic.name, partition: partition.partition)
        guard let entry = byPartition.removeValue(forKey: topicPartition) else { continue }
        if partition.errorCode == .none && partition.divergingEpoch == .none
          && partition.records.isEmpty
        {
          // Only the high watermark, applied when it moved and the leadership the fetch was
          // made under still holds.
          if appliedHighWatermarks[topicPartition] != partition.highWatermark
            && entry.replica.leaderEpoch == entry.fetchState.leaderEpoch
          {
            await entry.replica.updateFollowerHighWatermark(partition.highWatermark)
            appliedHighWatermarks[topicPartition] = partition.highWatermark
          }
          continue
        }
        appliedHighWatermarks[topicPartition] = nil
        answered.append((entry, partition))
      }
    }
    return await withTaskGroup(of: (TopicPartition, Int32)?.self) { group in
      for (entry, partition) in answered {
        group.addTask { await self.apply(partition, to: entry) }
      }
      var refused: [(TopicPartition, Int32)] = []
      for await result in group {
        if let result { refused.append(result) }
      }
      return refused
    }
  }

  /// One partition's answer; returns the partition and epoch when the leader refused it.
  private func apply(_ answer: FetchResponse.Partition, to entry: Entry) async -> (
    TopicPartition, Int32
  )? {
    let replica = entry.replica
    // Leadership may have moved while the fetch was out: the answer is then stale.
    guard let current = await replica.followerFetchState(),
      current.leader == sourceBrokerID, current.leaderEpoch == entry.fetchState.leaderEpoch,
      current.fetchOffset == entry.fetchState.fetchOffset
    else { return nil }
    let partition = "\(entry.topicPartition)"
    switch answer.errorCode {
    case .none:
      do {
        if answer.divergingEpoch != .none {
          let newEnd = try await replica.truncateForDivergence(
            epoch: answer.divergingEpoch.epoch, endOffset: answer.divergingEpoch.endOffset)
          logger.info(
            "truncated \(partition) to \(newEnd) (diverged from the leader at epoch \(answer.divergingEpoch.epoch), its end offset \(answer.divergingEpoch.endOffset))"
          )
        } else if !answer.records.isEmpty {
          _ = try await replica.appendAsFollower(
            answer.records, leaderEpoch: current.leaderEpoch,
            leaderHighWatermark: answer.highWatermark,
            leaderLogStartOffset: answer.logStartOffset)
        } else {
          await replica.updateFollowerHighWatermark(answer.highWatermark)
        }
      } catch {
        logger.warning(
          "applying the leader's answer failed; retrying",
          metadata: ["partition": "\(partition)", "error": "\(error)"])
        return (entry.topicPartition, current.leaderEpoch)
      }
      return nil
    case .offsetOutOfRange where answer.logStartOffset > current.fetchOffset:
      // The leader's retention removed what this follower needs next: it cannot catch up by
      // copying, so it restarts its log at the leader's log start (an empty append does).
      do {
        _ = try await replica.appendAsFollower(
          [], leaderEpoch: current.leaderEpoch, leaderHighWatermark: answer.highWatermark,
          leaderLogStartOffset: answer.logStartOffset)
        logger.warning(
          "restarted the log at the leader's log start: the leader no longer has the offset it fetched from",
          metadata: [
            "partition": "\(partition)", "leaderLogStartOffset": "\(answer.logStartOffset)",
            "fetchOffset": "\(current.fetchOffset)",
          ])
        return nil
      } catch {
        logger.warning(
          "restarting the log at the leader's log start failed; retrying",
          metadata: ["partition": "\(partition)", "error": "\(error)"])
        return (entry.topicPartition, current.leaderEpoch)
      }
    case .notLeaderOrFollower, .fencedLeaderEpoch, .unknownLeaderEpoch, .unknownTopicOrPartition:
      // The leader's metadata or ours is behind; newer metadata settles it.
      logger.debug(
        "leader refused the partition; waiting for newer metadata",
        metadata: ["partition": "\(partition)", "error": "\(answer.errorCode)"])
      return (entry.topicPartition, current.leaderEpoch)
    default:
      logger.warning(
        "leader answered an error for the partition",
        metadata: ["partition": "\(partition)", "error": "\(answer.errorCode)"])
      return (entry.topicPartition, current.leaderEpoch)
    }
  }
}
