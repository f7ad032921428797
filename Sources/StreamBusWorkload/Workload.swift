import Foundation
import StreamBusClient
import StreamBusVerification

/// Writes unique values to a topic's partitions from several idempotent producers, records every
/// send, acknowledgement and error in a `History`, optionally tails the partitions while it
/// runs, and finally reads every partition from its start to its end for the `HistoryChecker`.
///
/// ```swift
/// let workload = Workload(clientConfig: config, configuration: .init(topic: "t", producers: 3))
/// try await workload.start()
/// // ... inject faults ...
/// await workload.stop()
/// try await workload.finalRead()
/// let report = workload.check(name: "leader-kill")
/// ```
///
/// Each producer runs one task per partition, so a partition without a leader holds up only its
/// own writers (up to `outstandingPerPartitionMax` values each) and the acknowledgement times
/// per partition stay accurate for measuring unavailability.
public actor Workload {
  public nonisolated let history: History
  public nonisolated let configuration: WorkloadConfiguration
  public nonisolated let clientConfig: ClientConfig
  private nonisolated let control: WorkloadControl
  private var partitions: [Int32] = []
  /// Where reads start per partition (`readsFromStartOffsets`); empty: the log start.
  private var readStartOffsets: [Int32: Int64] = [:]
  private var producerTasks: [Task<Void, Never>] = []
  private var readerTasks: [Task<Void, Never>] = []
  private var isStarted = false

  public init(
    clientConfig: ClientConfig, configuration: WorkloadConfiguration, history: History? = nil
  ) {
    self.clientConfig = clientConfig
    self.configuration = configuration
    self.history = history ?? History(topic: configuration.topic)
    control = WorkloadControl(
      recordsMax: configuration.recordsMax,
      deadline: configuration.durationMs.map { ContinuousClock.now + .milliseconds($0) },
      recordsPerSecondMax: configuration.recordsPerSecondMax)
  }

  /// Counts so far.
  public nonisolated var progress: WorkloadProgress { control.progress }

  /// Resolves the partitions and starts the producers (and tailing readers). Returns at once.
  public func start() async throws {
    precondition(!isStarted, "a workload starts once")
    isStarted = true
    partitions = try await resolvePartitions()
    if configuration.readsFromStartOffsets {
      readStartOffsets = try await highWatermarks()
      history.recordNote(
        "reads start at \(readStartOffsets.sorted { $0.key < $1.key })", process: "workload")
    }
    history.recordNote(
      "workload: \(configuration.producers) producers on partitions \(partitions), "
        + "acks \(configuration.producerConfig.acks)", process: "workload")
    for worker in 0..<configuration.producers {
      let producer = Producer(config: clientConfig, producerConfig: configuration.producerConfig)
      let sequence = SequenceCounter()
      let partitionTasks = partitions.map { partition in
        Task {
          await Self.writePartition(
            PartitionWriter(
              worker: worker, partition: partition, producer: producer, sequence: sequence,
              configuration: configuration, history: history, control: control))
        }
      }
      producerTasks.append(
        Task {
          for task in partitionTasks { await task.value }
          await producer.close()
        })
    }
    for reader in 0..<configuration.tailingReaders {
      let consumer = Consumer(config: clientConfig)
      let assignment = partitions.map { TopicPartition(topic: configuration.topic, partition: $0) }
      readerTasks.append(
        Task { [history, control, readStartOffsets] in
          await Self.tail(
            consumer: consumer, assignment: assignment, startOffsets: readStartOffsets,
            process: "tail-\(reader)", history: history, control: control)
          await consumer.close()
        })
    }
  }

  private func resolvePartitions() async throws -> [Int32] {
    if !configuration.partitions.isEmpty { return configuration.partitions }
    let consumer = Consumer(config: clientConfig)
    let found: [Int32]
    do {
      found = try await consumer.partitions(of: configuration.topic).map(\.partition).sorted()
    } catch {
      await consumer.close()
      throw error
    }
    await consumer.close()
    guard !found.isEmpty else {
      throw WorkloadError("topic \(configuration.topic) has no partitions")
    }
    return found
  }

  /// Waits until the producers stopped on their own (`recordsMax` or `durationMs`) and every
  /// value has its outcome; then stops the tailing readers.
  public func waitUntilFinished() async {
    for task in producerTasks { await task.value }
    control.stopReaders()
    for task in readerTasks { await task.value }
  }

  /// Stops sending new values and returns at once; values already queued keep being retried
  /// (`stop()` waits for their outcomes).
  public nonisolated func stopSending() {
    control.stopSending()
  }

  /// Stops sending, waits for the outcome of every value sent (bounded by the producers'
  /// delivery timeout), then stops the tailing readers.
  public func stop() async {
    control.stopSending()
    await waitUntilFinished()
    history.recordNote("workload stopped: \(control.progress)", process: "workload")
  }

  /// Waits until `count` values are acknowledged; false when `timeoutMs` passes first.
  public nonisolated func waitForAcknowledged(atLeast count: Int, timeoutMs: Int64) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    while control.progress.acknowledged < count {
      guard ContinuousClock.now < deadline else { return false }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return true
  }

  /// Reads every partition from its log start to its end, recording the reads as final. The end
  /// is at least the highest acknowledged offset + 1; it is read again until ListOffsets no
  /// longer moves. Gives up after `finalReadTimeoutMs` (the checker then reports what is
  /// missing); throws only when the partitions cannot be found.
  @discardableResult
  public func finalRead() async throws -> FinalReadSummary {
    if partitions.isEmpty { partitions = try await resolvePartitions() }
    let started = ContinuousClock.now
    let deadline = started + .milliseconds(configuration.finalReadTimeoutMs)
    let topic = configuration.topic
    let assignment = partitions.map { TopicPartition(topic: topic, partition: $0) }
    var summary = FinalReadSummary()
    var acknowledgedEnds: [Int32: Int64] = [:]
    for event in history.events where event.kind == .ack {
      if let offset = event.offset {
        acknowledgedEnds[event.partition] = max(acknowledgedEnds[event.partition] ?? 0, offset + 1)
      }
    }
    history.recordNote("final read started", process: "final")

    let admin = Admin(config: clientConfig)
    let consumer = Consumer(config: clientConfig)
    await consumer.assign(assignment)
    try await Self.seekToStart(consumer, assignment: assignment, startOffsets: readStartOffsets)
    var previousEnds: [Int32: Int64]?
    rounds: while ContinuousClock.now < deadline {
      let ends = await Self.logEnds(admin: admin, assignment: assignment, deadline: deadline)
      for partition in partitions {
        summary.targetOffsets[partition] = max(
          ends[partition] ?? 0, acknowledgedEnds[partition] ?? 0,
          summary.targetOffsets[partition] ?? 0)
      }
      while ContinuousClock.now < deadline {
        var done = true
        for tp in assignment {
          let position = await consumer.position(of: tp) ?? -1
          summary.reachedOffsets[tp.partition] = max(position, 0)
          if position < summary.targetOffsets[tp.partition] ?? 0 { done = false }
        }
        if done { break }
        do {
          let records = try await consumer.poll(maxWaitMs: 200)
          summary.recordCount += records.count
          history.record(
            contentsOf: records.map {
              HistoryEvent.read(
                ValueID.decode($0.value), offset: $0.offset, partition: $0.partition,
                process: "final", isFinal: true)
            })
        } catch {
          history.recordNote("final read poll failed: \(error)", process: "final")
          try? await Task.sleep(for: .milliseconds(100))
        }
      }
      if ends == previousEnds && summary.incompletePartitions.isEmpty { break rounds }
      previousEnds = ends
    }
    await consumer.close()
    await admin.close()
    summary.durationMs = Int64(History.milliseconds(ContinuousClock.now - started))
    history.recordNote(summary.description, process: "final")
    return summary
  }

  /// Every partition's end offset (high watermark), retried until each answers or the deadline.
  private static func logEnds(
    admin: Admin, assignment: [TopicPartition], deadline: ContinuousClock.Instant
  ) async -> [Int32: Int64] {
    var ends: [Int32: Int64] = [:]
    var missing = assignment
    while !missing.isEmpty {
      let results = await admin.listOffsets(missing, timestamp: latestOffsetTimestamp)
      for (tp, result) in results {
        if case .success(let offset) = result { ends[tp.partition] = offset }
      }
      missing = missing.filter { ends[$0.partition] == nil }
      guard !missing.isEmpty, ContinuousClock.now < deadline else { break }
      try? await Task.sleep(for: .milliseconds(100))
    }
    return ends
  }

  /// ListOffsets' "latest" timestamp: the high watermark.
  static let latestOffsetTimestamp: Int64 = -1

  /// Checks the history; a failing one is kept as a file (path printed and in the report).
  public nonisolated func check(name: String, historyDirectory: URL? = nil) -> CheckReport {
    HistoryChecker().checkKeepingFailure(history, name: name, directory: historyDirectory)
  }

  /// Starts, runs until `recordsMax`/`durationMs`, reads everything and checks.
  public func run(name: String) async throws -> CheckReport {
    precondition(
      configuration.recordsMax != nil || configuration.durationMs != nil,
      "run() needs recordsMax or durationMs to end")
    try await start()
    await waitUntilFinished()
    try await finalRead()
    return check(name: name)
  }

  // MARK: - Writers and readers

  struct PartitionWriter: Sendable {
    let worker: Int
    let partition: Int32
    let producer: Producer
    let sequence: SequenceCounter
    let configuration: WorkloadConfiguration
    let history: History
    let control: WorkloadControl

    var process: String { "w\(worker)" }

    func recordOutcome(_ id: String, _ handle: DeliveryHandle) async {
      switch await handle.result() {
      case .success(let metadata):
        history.recordAck(id, offset: metadata.offset, process: process, partition: partition)
        control.countAcknowledged()
      case .failure(let error):
        recordFailure(id, error)
      }
    }

    func recordFailure(_ id: String, _ error: any Error) {
      let code = (error as? StreamBusError)?.errorCode?.rawValue
      history.recordError(
        id, errorCode: code, message: "\(error)", process: process, partition: partition)
      control.countFailed()
    }
  }

  private static func writePartition(_ writer: PartitionWriter) async {
    var pending = PendingQueue()
    let outstandingMax = max(1, writer.configuration.outstandingPerPartitionMax)
    while writer.control.takeTicket() {
      await writer.control.waitForSendSlot()
      let id = ValueID.make(worker: writer.worker, sequence: writer.sequence.next())
      writer.history.recordSend(id, process: writer.process, partition: writer.partition)
      do {
        let handle = try await writer.producer.enqueue(
          topic: writer.configuration.topic,
          value: ValueID.encode(id, paddedTo: writer.configuration.valueBytes),
          partition: writer.partition)
        pending.append((id, handle))
      } catch {
        // Not queued, so certainly not written; back off so an unknown topic does not spin.
        writer.recordFailure(id, error)
        try? await Task.sleep(for: .milliseconds(50))
      }
      // Outcomes are recorded as soon as they are in, so their times are accurate.
      while let (id, handle) = pending.first, handle.isComplete {
        pending.removeFirst()
        await writer.recordOutcome(id, handle)
      }
      if pending.count >= outstandingMax, let (id, handle) = pending.removeFirst() {
        await writer.recordOutcome(id, handle)
      }
    }
    while let (id, handle) = pending.removeFirst() {
      await writer.recordOutcome(id, handle)
    }
  }

  /// Every partition's high watermark now (where this run's reads start).
  private func highWatermarks() async throws -> [Int32: Int64] {
    let admin = Admin(config: clientConfig)
    let assignment = partitions.map { TopicPartition(topic: configuration.topic, partition: $0) }
    let ends = await Self.logEnds(
      admin: admin, assignment: assignment, deadline: ContinuousClock.now + .seconds(30))
    await admin.close()
    let missing = partitions.filter { ends[$0] == nil }
    guard missing.isEmpty else {
      throw WorkloadError("no high watermark for partitions \(missing) of \(configuration.topic)")
    }
    return ends
  }

  /// Seeks to `startOffsets` (the log start for partitions not in it).
  private static func seekToStart(
    _ consumer: Consumer, assignment: [TopicPartition], startOffsets: [Int32: Int64]
  ) async throws {
    for partition in assignment {
      try await consumer.seek(
        partition, to: startOffsets[partition.partition].map(SeekPosition.offset) ?? .earliest)
    }
  }

  private static func tail(
    consumer: Consumer, assignment: [TopicPartition], startOffsets: [Int32: Int64],
    process: String, history: History, control: WorkloadControl
  ) async {
    await consumer.assign(assignment)
    do {
      try await seekToStart(consumer, assignment: assignment, startOffsets: startOffsets)
    } catch {
      history.recordNote("\(process) could not seek: \(error)", process: process)
      return
    }
    while !control.readersStopped {
      do {
        let records = try await consumer.poll(maxWaitMs: 200)
        history.record(
          contentsOf: records.map {
            HistoryEvent.read(
              ValueID.decode($0.value), offset: $0.offset, partition: $0.partition,
              process: process, isFinal: false)
          })
        control.countReads(records.count)
      } catch {
        history.recordNote("\(process) poll failed: \(error)", process: process)
        try? await Task.sleep(for: .milliseconds(100))
      }
    }
  }
}

extension History {
  static func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1_000 + Double(attoseconds) / 1e15
  }
}

/// FIFO of values awaiting their outcome (amortized O(1) removal from the front).
struct PendingQueue {
  private var items: [(String, DeliveryHandle)] = []
  private var head = 0

  var count: Int { items.count - head }
  var first: (String, DeliveryHandle)? { head < items.count ? items[head] : nil }

  mutating func append(_ item: (String, DeliveryHandle)) {
    items.append(item)
  }

  @discardableResult
  mutating func removeFirst() -> (String, DeliveryHandle)? {
    guard head < items.count else { return nil }
    let item = items[head]
    head += 1
    if head >= 1_024 && head * 2 >= items.count {
      items.removeFirst(head)
      head = 0
    }
    return item
  }
}

/// Per-producer sequence numbers, shared by its partition writers so every value is unique.
final class SequenceCounter: @unchecked Sendable {
  private let lock = NSLock()
  private var nextValue = 0

  func next() -> Int {
    lock.withLock {
      defer { nextValue += 1 }
      return nextValue
    }
  }
}

/// Stop flags, the send budget and progress counters shared by the workload's tasks.
final class WorkloadControl: @unchecked Sendable {
  private let lock = NSLock()
  private var remaining: Int?
  private let deadline: ContinuousClock.Instant?
  private var sendingStopped = false
  private var readersStop = false
  private var counts = WorkloadProgress()

  /// Pacing: value n (from 0) may be sent at `paceStart + n / recordsPerSecond`.
  private let sendInterval: Duration?
  private var paceStart = ContinuousClock.now
  private var paced = 0

  init(recordsMax: Int?, deadline: ContinuousClock.Instant?, recordsPerSecondMax: Int? = nil) {
    remaining = recordsMax
    self.deadline = deadline
    sendInterval = recordsPerSecondMax.map { .seconds(1) / max($0, 1) }
  }

  /// Sleeps until the next value's slot under `recordsPerSecondMax` (returns at once without
  /// one). A writer that falls a second behind its slots (the cluster was slower) restarts
  /// the schedule instead of sending the backlog in a burst.
  func waitForSendSlot() async {
    guard let sendInterval else { return }
    let slot: ContinuousClock.Instant = lock.withLock {
      let now = ContinuousClock.now
      var slot = paceStart + sendInterval * paced
      if now - slot > .seconds(1) {
        paceStart = now
        paced = 0
        slot = now
      }
      paced += 1
      return slot
    }
    if slot > ContinuousClock.now {
      try? await Task.sleep(until: slot, clock: .continuous)
    }
  }

  /// Permission to send one more value: false once stopped, out of budget or past the deadline.
  func takeTicket() -> Bool {
    lock.withLock {
      if sendingStopped { return false }
      if let deadline, ContinuousClock.now >= deadline {
        sendingStopped = true
        return false
      }
      if let left = remaining {
        guard left > 0 else { return false }
        remaining = left - 1
      }
      counts.sent += 1
      return true
    }
  }

  func stopSending() { lock.withLock { sendingStopped = true } }
  func stopReaders() { lock.withLock { readersStop = true } }
  var readersStopped: Bool { lock.withLock { readersStop } }

  func countAcknowledged() { lock.withLock { counts.acknowledged += 1 } }
  func countFailed() { lock.withLock { counts.failed += 1 } }
  func countReads(_ count: Int) { lock.withLock { counts.concurrentReads += count } }
  var progress: WorkloadProgress { lock.withLock { counts } }
}
