import Foundation
import Glibc
import StreamBusBroker
import StreamBusProtocol
import StreamBusRecords
import StreamBusStorage
import Testing

@Suite struct DurabilityTests {
  @Test func fetchLongPollWakesOnProduce() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let consumer = try await broker.connect()
    let producer = try await broker.connect()
    _ = try await producer.createTopic("waits")
    let batch = makeBatch(records: 2)

    let started = ContinuousClock.now
    async let fetched = consumer.fetch(topic: "waits", offset: 0, maxWaitMs: 10_000, minBytes: 1)
    try await Task.sleep(for: .milliseconds(100))
    #expect(try await producer.produce(topic: "waits", records: batch).errorCode == .none)
    let result = try await fetched
    let elapsed = ContinuousClock.now - started
    #expect(result.records == stored(batch, baseOffset: 0))
    #expect(result.highWatermark == 2)
    #expect(elapsed < .seconds(5), "woke after \(elapsed), not at the produce")
    await consumer.close()
    await producer.close()
    try await broker.stop()
  }

  /// A long-poll over several partitions re-reads only those with news when it wakes; the
  /// answers of the others (nothing yet) are kept. News on a partition that already had
  /// records must not be lost, nor must the idle partition's answer go stale or wrong.
  @Test func multiPartitionLongPollCollectsNewsFromEachPartition() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let consumer = try await broker.connect()
    let producer = try await broker.connect()
    _ = try await producer.createTopic("news", partitions: 3)
    let first = makeBatch(records: 2, seed: 1)
    let second = makeBatch(records: 3, seed: 2)
    _ = try await producer.produce(topic: "news", partition: 0, records: makeBatch(seed: 0))
    let request = FetchRequest(
      maxWaitMs: 20_000, minBytes: Int32(first.count + second.count), maxBytes: 1 << 20,
      topics: [
        FetchRequest.Topic(
          name: "news",
          partitions: (0..<3).map {
            FetchRequest.Partition(
              partition: $0, fetchOffset: $0 == 0 ? 3 : 0, partitionMaxBytes: 1 << 20)
          })
      ])
    let started = ContinuousClock.now
    async let answer = consumer.send(.fetch(request))
    try await Task.sleep(for: .milliseconds(100))
    // Too little for minBytes: the fetch wakes, reads partition 1 and waits on.
    #expect(
      try await producer.produce(topic: "news", partition: 1, records: first).errorCode == .none)
    try await Task.sleep(for: .milliseconds(100))
    #expect(
      try await producer.produce(topic: "news", partition: 2, records: second).errorCode == .none)
    let (_, response) = try await answer
    let elapsed = ContinuousClock.now - started
    guard case .fetch(let body)? = response, body.topics.count == 1 else {
      Issue.record("bad response \(String(describing: response))")
      return
    }
    let partitions = body.topics[0].partitions
    #expect(partitions.map(\.partition) == [0, 1, 2])
    #expect(partitions.map(\.errorCode) == [.none, .none, .none])
    #expect(partitions[0].records.isEmpty)
    #expect(partitions[0].highWatermark == 3)
    #expect(partitions[1].records == stored(first, baseOffset: 0))
    #expect(partitions[1].highWatermark == 2)
    #expect(partitions[2].records == stored(second, baseOffset: 0))
    #expect(partitions[2].highWatermark == 3)
    #expect(elapsed < .seconds(10), "answered after \(elapsed), not at the second produce")
    await consumer.close()
    await producer.close()
    try await broker.stop()
  }

  @Test func fetchLongPollTimesOutAtMaxWait() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("quiet")
    let started = ContinuousClock.now
    let result = try await client.fetch(topic: "quiet", offset: 0, maxWaitMs: 300, minBytes: 1)
    let elapsed = ContinuousClock.now - started
    #expect(result.errorCode == .none)
    #expect(result.records.isEmpty)
    #expect(elapsed >= .milliseconds(290))
    #expect(elapsed < .milliseconds(3_000))

    // minBytes larger than what is there: waits the full time, then returns what exists.
    let batch = makeBatch(records: 1)
    _ = try await client.produce(topic: "quiet", records: batch, acks: -1)
    let partial = try await client.fetch(
      topic: "quiet", offset: 0, maxWaitMs: 200, minBytes: Int32(batch.count * 10))
    #expect(partial.records == stored(batch, baseOffset: 0))
    await client.close()
    try await broker.stop()
  }

  @Test func shutdownAnswersWaitingFetchesAndFlushesEverything() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let readyFile = directory.path + "/ready"
    let broker = try await TestBroker.start(dataDirectory: directory.path + "/data") {
      $0.readyFile = readyFile
    }
    let address = try String(contentsOfFile: readyFile, encoding: .utf8)
    #expect(address == "\(broker.address)\n")
    let client = try await broker.connect()
    let consumer = try await broker.connect()
    _ = try await client.createTopic("t")
    let batch = makeBatch()
    _ = try await client.produce(topic: "t", records: batch, acks: 1)
    async let polling = consumer.fetch(topic: "t", offset: 3, maxWaitMs: 20_000, minBytes: 1)
    try await Task.sleep(for: .milliseconds(100))
    let started = ContinuousClock.now
    try await broker.stop()
    #expect(ContinuousClock.now - started < .seconds(2))
    let answered = try await polling
    #expect(answered.errorCode == .none)
    #expect(answered.records.isEmpty)
    #expect(!FileManager.default.fileExists(atPath: readyFile))
    await client.close()
    await consumer.close()

    let log = try PartitionLog(directory: directory.path + "/data/t-0")
    #expect(log.logEndOffset == 3)
    #expect(try log.read(from: 0, maxBytes: 1 << 20).bytes == stored(batch, baseOffset: 0))
    try log.close()
  }

  @Test func appendsBecomeVisibleOnlyOnceFlushed() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem)
    let client = try await broker.connect()
    let waiter = try await broker.connect()
    _ = try await client.createTopic("hw")
    let first = makeBatch(records: 2, seed: 1)
    #expect(try await client.produce(topic: "hw", records: first, acks: -1).baseOffset == 0)

    fileSystem.update { $0.isSyncGateClosed = true }
    let second = makeBatch(records: 3, seed: 2)
    // acks=1 answers after the write, while the flush is still held.
    let appended = try await client.produce(topic: "hw", records: second, acks: 1)
    #expect(appended.baseOffset == 2)
    // acks=all waits for the flush.
    async let committed = waiter.produce(
      topic: "hw", records: makeBatch(records: 1, seed: 3), acks: -1)
    try await Task.sleep(for: .milliseconds(50))

    let hidden = try await client.fetch(topic: "hw", offset: 0)
    #expect(hidden.highWatermark == 2)
    #expect(hidden.logEndOffset >= 5)
    #expect(hidden.records == stored(first, baseOffset: 0))
    // Between the high watermark and the log end: nothing yet, but no error either.
    let pending = try await client.fetch(topic: "hw", offset: 3)
    #expect(pending.errorCode == .none)
    #expect(pending.records.isEmpty)
    #expect(try await client.fetch(topic: "hw", offset: 7).errorCode == .offsetOutOfRange)
    #expect(try await client.listOffset(topic: "hw", timestamp: -1).offset == 2)

    fileSystem.update { $0.isSyncGateClosed = false }
    let committedResult = try await committed
    #expect(committedResult.errorCode == .none)
    #expect(committedResult.baseOffset == 5)
    let visible = try await client.fetch(topic: "hw", offset: 2, maxWaitMs: 2_000, minBytes: 1)
    #expect(visible.highWatermark == 6)
    #expect(visible.records.starts(with: stored(second, baseOffset: 2)))
    await client.close()
    await waiter.close()
    try await broker.stop()
  }

  @Test func acksAllTimesOutWhenTheFlushDoesNotFinish() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem)
    let client = try await broker.connect()
    _ = try await client.createTopic("slow")
    fileSystem.update { $0.isSyncGateClosed = true }
    let started = ContinuousClock.now
    let result = try await client.produce(
      topic: "slow", records: makeBatch(), acks: -1, timeoutMs: 200)
    let elapsed = ContinuousClock.now - started
    fileSystem.update { $0.isSyncGateClosed = false }
    #expect(result.errorCode == .requestTimedOut)
    #expect(elapsed >= .milliseconds(200))
    #expect(elapsed < .seconds(3))
    // The batch stays appended and is committed once the flush completes.
    let visible = try await client.fetch(topic: "slow", offset: 0, maxWaitMs: 2_000, minBytes: 1)
    #expect(visible.highWatermark == 3)
    await client.close()
    try await broker.stop()
  }

  @Test func groupCommitSharesFlushesAmongConcurrentProducers() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem)
    let setup = try await broker.connect()
    _ = try await setup.createTopic("shared")
    var clients: [TestClient] = []
    for _ in 0..<8 {
      clients.append(try await broker.connect())
    }
    let syncsBefore = fileSystem.syncCount
    let producers = clients
    let offsets = try await withThrowingTaskGroup(of: [Int64].self) { group in
      for (index, client) in producers.enumerated() {
        group.addTask {
          var offsets: [Int64] = []
          for round in 0..<10 {
            let result = try await client.produce(
              topic: "shared", records: makeBatch(records: 1, seed: index * 100 + round), acks: -1)
            #expect(result.errorCode == .none)
            offsets.append(result.baseOffset)
          }
          return offsets
        }
      }
      var all: [Int64] = []
      for try await offsets in group { all += offsets }
      return all
    }
    #expect(Set(offsets).count == 80)
    #expect(offsets.min() == 0 && offsets.max() == 79)
    // Each acks=all produce waited for a flush; concurrent ones shared them.
    let syncs = fileSystem.syncCount - syncsBefore
    #expect(syncs >= 1)
    #expect(syncs <= 80)
    for client in clients { await client.close() }
    await setup.close()
    try await broker.stop()
  }

  @Test func restartKeepsTopicsAndRecords() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let batches = (0..<4).map { makeBatch(records: 1 + $0, seed: $0) }
    do {
      let broker = try await TestBroker.start(dataDirectory: directory.path)
      let client = try await broker.connect()
      _ = try await client.createTopic(
        "durable", partitions: 2, configs: [.init(key: "retention.bytes", value: "1000000")])
      for batch in batches {
        _ = try await client.produce(topic: "durable", records: batch, acks: -1)
      }
      // acks=1 data is flushed at shutdown too.
      _ = try await client.produce(topic: "durable", partition: 1, records: batches[0], acks: 1)
      await client.close()
      try await broker.stop()
    }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    let metadata = try await client.metadata(nil)
    #expect(metadata.topics.map(\.name) == ["durable"])
    #expect(metadata.topics.first?.partitions.count == 2)
    #expect(metadata.topics.first?.configs == [.init(key: "retention.bytes", value: "1000000")])
    var expected: [UInt8] = []
    var offset: Int64 = 0
    for batch in batches {
      expected += stored(batch, baseOffset: offset)
      offset += Int64(try RecordBatch.decode(batch).records.count)
    }
    let fetched = try await client.fetch(topic: "durable", offset: 0)
    #expect(fetched.records == expected)
    #expect(fetched.highWatermark == offset)
    let other = try await client.fetch(topic: "durable", partition: 1, offset: 0)
    #expect(other.records == stored(batches[0], baseOffset: 0))
    let next = try await client.produce(topic: "durable", records: batches[0], acks: -1)
    #expect(next.baseOffset == offset)
    await client.close()
    try await broker.stop()
  }

  @Test func fullDiskGivesStorageErrorAndReadsKeepWorking() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem)
    let client = try await broker.connect()
    _ = try await client.createTopic("full")
    let first = makeBatch(records: 2, seed: 1)
    #expect(try await client.produce(topic: "full", records: first, acks: -1).errorCode == .none)

    fileSystem.update { $0.writeErrno = ENOSPC }
    let refused = try await client.produce(topic: "full", records: makeBatch(seed: 2), acks: -1)
    #expect(refused.errorCode == .storageError)
    #expect(refused.errorMessage?.contains("No space left") == true)
    let refusedTopic = try await client.createTopic("another")
    #expect(refusedTopic.errorCode == .storageError)

    let fetched = try await client.fetch(topic: "full", offset: 0)
    #expect(fetched.errorCode == .none)
    #expect(fetched.records == stored(first, baseOffset: 0))
    #expect(fetched.logEndOffset == 2)

    fileSystem.update { $0.writeErrno = nil }
    let second = makeBatch(records: 1, seed: 3)
    let accepted = try await client.produce(topic: "full", records: second, acks: -1)
    #expect(accepted.errorCode == .none)
    #expect(accepted.baseOffset == 2)
    let all = try await client.fetch(topic: "full", offset: 0)
    #expect(all.records == stored(first, baseOffset: 0) + stored(second, baseOffset: 2))
    #expect(try await client.metadata(nil).topics.map(\.name) == ["full"])
    await client.close()
    try await broker.stop()
  }

  @Test func failedFlushFailsAcksAllAndRecovers() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem)
    let client = try await broker.connect()
    _ = try await client.createTopic("sync")
    fileSystem.update { $0.syncErrno = EIO }
    let failed = try await client.produce(topic: "sync", records: makeBatch(seed: 1), acks: -1)
    #expect(failed.errorCode == .storageError)
    #expect(try await client.fetch(topic: "sync", offset: 0).highWatermark == 0)
    fileSystem.update { $0.syncErrno = nil }
    // The maintenance tick retries the flush; the earlier append then becomes visible.
    let recovered = try await eventually {
      try await client.fetch(topic: "sync", offset: 0).highWatermark == 3
    }
    #expect(recovered)
    let next = try await client.produce(topic: "sync", records: makeBatch(seed: 2), acks: -1)
    #expect(next.errorCode == .none)
    #expect(next.baseOffset == 3)
    await client.close()
    try await broker.stop()
  }

  @Test func deletingATopicFailsWaitingProducers() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem)
    let admin = try await broker.connect()
    let producer = try await broker.connect()
    let consumer = try await broker.connect()
    _ = try await admin.createTopic("doomed")
    fileSystem.update { $0.isSyncGateClosed = true }
    async let waiting = producer.produce(topic: "doomed", records: makeBatch(), acks: -1)
    async let polling = consumer.fetch(topic: "doomed", offset: 0, maxWaitMs: 10_000, minBytes: 1)
    try await Task.sleep(for: .milliseconds(100))
    async let deleted = admin.deleteTopic("doomed")
    // The long-poll can only end by the replica closing (no data, 10 s wait), so once it
    // has answered the deletion is under way and the flush may finish.
    #expect(try await polling.errorCode == .unknownTopicOrPartition)
    fileSystem.update { $0.isSyncGateClosed = false }
    #expect(try await deleted.errorCode == .none)
    let waitingResult = try await waiting
    #expect(waitingResult.errorCode == .unknownTopicOrPartition, "\(waitingResult)")
    await admin.close()
    await producer.close()
    await consumer.close()
    try await broker.stop()
  }

  @Test func intervalFlushPolicyMakesAppendsVisibleAtOnce() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem) {
      $0.flushPolicy = .interval(ms: 50)
      $0.maintenanceIntervalMs = 10
    }
    let client = try await broker.connect()
    _ = try await client.createTopic("lazy")
    fileSystem.update { $0.isSyncGateClosed = true }
    let batch = makeBatch(records: 2)
    #expect(try await client.produce(topic: "lazy", records: batch, acks: -1).errorCode == .none)
    let fetched = try await client.fetch(topic: "lazy", offset: 0)
    #expect(fetched.records == stored(batch, baseOffset: 0))
    let syncs = fileSystem.syncCount
    fileSystem.update { $0.isSyncGateClosed = false }
    #expect(await eventually { fileSystem.syncCount > syncs })
    await client.close()
    try await broker.stop()
  }

  @Test func retentionDeletesOldSegments() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path) {
      $0.retentionCheckIntervalMs = 20
      $0.maintenanceIntervalMs = 10
    }
    let client = try await broker.connect()
    _ = try await client.createTopic(
      "short",
      configs: [
        .init(key: "segment.bytes", value: "1024"), .init(key: "retention.bytes", value: "2048"),
        .init(key: "retention.ms", value: "-1"),
      ])
    for seed in 0..<30 {
      _ = try await client.produce(
        topic: "short", records: makeBatch(records: 4, valueBytes: 40, seed: seed), acks: -1)
    }
    // Let retention settle (it runs every 20 ms) before reading the start offset.
    try await Task.sleep(for: .milliseconds(200))
    let trimmed = try await eventually {
      try await client.listOffset(topic: "short", timestamp: -2).offset > 0
    }
    #expect(trimmed)
    let start = try await client.listOffset(topic: "short", timestamp: -2).offset
    #expect(try await client.fetch(topic: "short", offset: 0).errorCode == .offsetOutOfRange)
    let fetched = try await client.fetch(topic: "short", offset: start)
    #expect(fetched.errorCode == .none)
    #expect(fetched.logStartOffset == start)
    #expect(!fetched.records.isEmpty, "\(fetched)")
    await client.close()
    try await broker.stop()
  }

  @Test func retentionByTimeDeletesExpiredRecords() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path) {
      $0.retentionCheckIntervalMs = 20
      $0.maintenanceIntervalMs = 10
    }
    let client = try await broker.connect()
    _ = try await client.createTopic("aging", configs: [.init(key: "retention.ms", value: "60000")])
    let old = makeBatch(records: 2, timestamp: PartitionLog.wallClockMs() - 120_000)
    _ = try await client.produce(topic: "aging", records: old, acks: -1)
    let expired = try await eventually {
      try await client.listOffset(topic: "aging", timestamp: -2).offset == 2
    }
    #expect(expired)
    let fresh = makeBatch(records: 1)
    #expect(try await client.produce(topic: "aging", records: fresh, acks: -1).baseOffset == 2)
    try await Task.sleep(for: .milliseconds(100))
    #expect(
      try await client.fetch(topic: "aging", offset: 2).records == stored(fresh, baseOffset: 2))
    await client.close()
    try await broker.stop()
  }

  @Test func listOffsetsByTimestamp() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    // 1970 timestamps: keep time-based retention from deleting them.
    _ = try await client.createTopic("times", configs: [.init(key: "retention.ms", value: "-1")])
    _ = try await client.produce(
      topic: "times", records: makeBatch(records: 2, timestamp: 1_000), acks: -1)
    _ = try await client.produce(
      topic: "times", records: makeBatch(records: 2, timestamp: 5_000), acks: -1)
    let early = try await client.listOffset(topic: "times", timestamp: 0)
    #expect(early.offset == 0)
    let later = try await client.listOffset(topic: "times", timestamp: 3_000)
    #expect(later.offset == 2)
    #expect(later.timestamp == 5_001)
    let none = try await client.listOffset(topic: "times", timestamp: 9_000)
    #expect(none.errorCode == .none)
    #expect(none.offset == -1)
    await client.close()
    try await broker.stop()
  }
}
