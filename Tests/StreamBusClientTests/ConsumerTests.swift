import StreamBusProtocol
import StreamBusRecords
import Testing

@testable import StreamBusClient

@Suite(.timeLimit(.minutes(1))) struct ConsumerTests {
  private func produce(
    _ harness: FakeClusterHarness, topic: String, partition: Int32, values: [String]
  )
    async throws
  {
    let producer = Producer(config: harness.clientConfig())
    for value in values {
      _ = try await producer.enqueue(topic: topic, value: Array(value.utf8), partition: partition)
    }
    await producer.close()
  }

  @Test func longPollReturnsAsSoonAsRecordsArrive() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("poll", partitions: 1, leaders: [1])
      let consumer = Consumer(config: harness.clientConfig())
      let partition = TopicPartition(topic: "poll", partition: 0)
      await consumer.assign([partition])
      #expect(try await consumer.poll(maxWaitMs: 50).isEmpty)
      #expect(await consumer.position(of: partition) == 0)
      let started = ContinuousClock.now
      let polling = Task { try await consumer.poll(maxWaitMs: 5_000) }
      try await Task.sleep(for: .milliseconds(100))
      try await produce(harness, topic: "poll", partition: 0, values: ["one", "two"])
      let records = try await polling.value
      #expect(ContinuousClock.now - started < .milliseconds(3_000))
      #expect(records.map(\.offset) == [0, 1])
      #expect(records.map { String(decoding: $0.value ?? [], as: UTF8.self) } == ["one", "two"])
      #expect(records.allSatisfy { $0.topic == "poll" && $0.partition == 0 && $0.key == nil })
      #expect(await consumer.position(of: partition) == 2)
      // Long poll: the fetch carried the caller's wait.
      let fetches = harness.cluster.requests(.fetch).compactMap { request -> FetchRequest? in
        if case .fetch(let body) = request { return body }
        return nil
      }
      #expect(fetches.contains { $0.maxWaitMs == 5_000 })
      await consumer.close()
    }
  }

  @Test func oneFetchCoversEveryPartitionOfALeader() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("many", partitions: 4, leaders: [1, 2])
      for partition in 0..<4 {
        try await produce(
          harness, topic: "many", partition: Int32(partition), values: ["p\(partition)"])
      }
      let consumer = Consumer(config: harness.clientConfig())
      await consumer.assign((0..<4).map { TopicPartition(topic: "many", partition: Int32($0)) })
      var seen: [ConsumerRecord] = []
      for _ in 0..<5 where seen.count < 4 {
        seen += try await consumer.poll(maxWaitMs: 200)
      }
      #expect(Set(seen.map(\.partition)) == [0, 1, 2, 3])
      let fetches = harness.cluster.requests(.fetch, broker: 1).compactMap {
        request -> FetchRequest? in
        if case .fetch(let body) = request { return body }
        return nil
      }
      #expect(fetches.first?.topics.first?.partitions.count == 2)
      await consumer.close()
    }
  }

  @Test func seekSkipsRecordsBelowTheOffsetInsideABatch() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("seek", partitions: 1, leaders: [1])
      var producerConfig = ProducerConfig()
      producerConfig.lingerMs = 60_000
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      for index in 0..<10 {
        _ = try await producer.enqueue(topic: "seek", value: Array("v\(index)".utf8))
      }
      await producer.close()
      #expect(harness.cluster.batchCount(topic: "seek", partition: 0) == 1)
      let consumer = Consumer(config: harness.clientConfig())
      let partition = TopicPartition(topic: "seek", partition: 0)
      await consumer.assign([partition])
      try await consumer.seek(partition, to: .offset(7))
      let records = try await consumer.poll(maxWaitMs: 500)
      #expect(records.map(\.offset) == [7, 8, 9])
      #expect(await consumer.position(of: partition) == 10)
      try await consumer.seek(partition, to: .latest)
      #expect(try await consumer.poll(maxWaitMs: 50).isEmpty)
      #expect(await consumer.position(of: partition) == 10)
      try await consumer.seek(partition, to: .earliest)
      #expect(try await consumer.poll(maxWaitMs: 500).count == 10)
      await consumer.close()
    }
  }

  @Test func partialTrailingBatchIsIgnoredAndFetchedNextTime() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("partial", partitions: 1, leaders: [1])
      try await produce(harness, topic: "partial", partition: 0, values: ["a", "b"])
      try await produce(harness, topic: "partial", partition: 0, values: ["c"])
      #expect(harness.cluster.batchCount(topic: "partial", partition: 0) >= 2)
      let consumer = Consumer(
        config: harness.clientConfig(),
        consumerConfig: {
          var config = ConsumerConfig()
          // Room for the first batch only; the fake appends 30 bytes of the next one.
          config.partitionMaxBytes = 100
          return config
        }())
      let partition = TopicPartition(topic: "partial", partition: 0)
      harness.cluster.withState { $0.fetchPartialTailBytes[partition] = 30 }
      await consumer.assign([partition])
      var all = try await consumer.poll(maxWaitMs: 500)
      #expect(all.first?.offset == 0)
      #expect(!all.contains { $0.offset == 2 })
      for _ in 0..<5 where all.count < 3 {
        all += try await consumer.poll(maxWaitMs: 200)
      }
      #expect(all.map(\.offset) == [0, 1, 2])
      #expect(await consumer.position(of: partition) == 3)
      await consumer.close()
    }
  }

  @Test func offsetOutOfRangeIsAClearErrorOrResets() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("range", partitions: 1, leaders: [1])
      try await produce(harness, topic: "range", partition: 0, values: ["a", "b", "c"])
      let partition = TopicPartition(topic: "range", partition: 0)
      let strict = Consumer(config: harness.clientConfig())
      await strict.assign([partition])
      try await strict.seek(partition, to: .offset(1_000))
      let error = try await #require(throws: StreamBusError.self) {
        try await strict.poll(maxWaitMs: 100)
      }
      #expect(error.errorCode == .offsetOutOfRange)
      #expect(error.topic == "range")
      #expect(error.partition == 0)
      #expect(error.message.contains("1000"))
      await strict.close()

      let resetting = Consumer(
        config: harness.clientConfig(), consumerConfig: ConsumerConfig(offsetResetPolicy: .earliest)
      )
      await resetting.assign([partition])
      try await resetting.seek(partition, to: .offset(1_000))
      var records = try await resetting.poll(maxWaitMs: 100)
      for _ in 0..<3 where records.isEmpty {
        records = try await resetting.poll(maxWaitMs: 200)
      }
      #expect(records.map(\.offset) == [0, 1, 2])
      await resetting.close()
    }
  }

  @Test func lostConnectionDuringFetchIsAbsorbed() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("flaky", partitions: 1, leaders: [1])
      try await produce(harness, topic: "flaky", partition: 0, values: ["a", "b"])
      harness.cluster.withState { $0.fetchConnectionDrops = 1 }
      let consumer = Consumer(config: harness.clientConfig())
      let partition = TopicPartition(topic: "flaky", partition: 0)
      await consumer.assign([partition])
      #expect(try await consumer.poll(maxWaitMs: 200).isEmpty)
      #expect(await consumer.position(of: partition) == 0)
      #expect(try await consumer.poll(maxWaitMs: 200).map(\.offset) == [0, 1])
      #expect(harness.cluster.requests(.fetch).count == 2)
      await consumer.close()
    }
  }

  @Test func fencedLeaderEpochRefreshesMetadata() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("fenced", partitions: 1, leaders: [1])
      try await produce(harness, topic: "fenced", partition: 0, values: ["a"])
      let consumer = Consumer(config: harness.clientConfig())
      let partition = TopicPartition(topic: "fenced", partition: 0)
      await consumer.assign([partition])
      #expect(try await consumer.poll(maxWaitMs: 200).count == 1)
      let metadataBefore = harness.cluster.requests(.metadata).count
      harness.cluster.bumpLeaderEpoch(topic: "fenced", partition: 0)
      try await produce(harness, topic: "fenced", partition: 0, values: ["b"])
      var records: [ConsumerRecord] = []
      for _ in 0..<10 where records.isEmpty {
        records = try await consumer.poll(maxWaitMs: 100)
      }
      #expect(records.map(\.offset) == [1])
      #expect(harness.cluster.requests(.metadata).count > metadataBefore)
      let epochs = harness.cluster.requests(.fetch).compactMap { request -> Int32? in
        if case .fetch(let body) = request {
          return body.topics[0].partitions[0].currentLeaderEpoch
        }
        return nil
      }
      #expect(epochs.first == 0)
      #expect(epochs.last == 1)
      await consumer.close()
    }
  }

  @Test func consumerFollowsALeaderMove() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("follow", partitions: 1, leaders: [1])
      try await produce(harness, topic: "follow", partition: 0, values: ["a"])
      let consumer = Consumer(config: harness.clientConfig())
      let partition = TopicPartition(topic: "follow", partition: 0)
      await consumer.assign([partition])
      #expect(try await consumer.poll(maxWaitMs: 200).count == 1)
      // The new leader has the same log (as after a clean election).
      harness.cluster.moveLeader(topic: "follow", partition: 0, to: 2)
      try await produce(harness, topic: "follow", partition: 0, values: ["b"])
      var records: [ConsumerRecord] = []
      for _ in 0..<10 where records.isEmpty {
        records = try await consumer.poll(maxWaitMs: 100)
      }
      #expect(records.map(\.offset) == [1])
      #expect(!harness.cluster.requests(.fetch, broker: 2).isEmpty)
      await consumer.close()
    }
  }
}
