import StreamBusProtocol
import StreamBusRecords
import Testing

@testable import StreamBusClient

@Suite(.timeLimit(.minutes(1))) struct IdempotentProducerTests {
  /// The batch headers of every produce request's partition entries, in request order.
  private func sentHeaders(_ harness: FakeClusterHarness, broker: Int32? = nil) throws
    -> [[RecordBatchHeader]]
  {
    try harness.cluster.produceRequests(broker: broker).flatMap { request in
      try request.topics.flatMap { topic in
        try topic.partitions.map { entry in
          try entry.records.withUnsafeBytes { buffer in
            var scanner = RecordBatchScanner(buffer)
            var headers: [RecordBatchHeader] = []
            while let span = try scanner.next() { headers.append(span.header) }
            return headers
          }
        }
      }
    }
  }

  @Test func batchesCarryTheProducerIdAndConsecutiveSequencesPerPartition() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("stamped", partitions: 2, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      for index in 0..<3 {
        try await producer.send(topic: "stamped", value: Array("a\(index)".utf8), partition: 0)
      }
      // Two records in one batch advance the sequence by two.
      let first = try await producer.enqueue(topic: "stamped", value: [1], partition: 1)
      let second = try await producer.enqueue(topic: "stamped", value: [2], partition: 1)
      _ = try await (first.value(), second.value())
      try await producer.send(topic: "stamped", value: [3], partition: 1)
      let identity = try #require(await producer.producerIdAndEpoch)
      #expect(identity.producerId == 1000)
      #expect(identity.producerEpoch == 0)
      #expect(harness.cluster.requests(.initProducerId).count == 1)

      let partition0 = try harness.cluster.batchHeaders(topic: "stamped", partition: 0)
      #expect(partition0.map(\.producerId) == [1000, 1000, 1000])
      #expect(partition0.map(\.producerEpoch) == [0, 0, 0])
      #expect(partition0.map(\.baseSequence) == [0, 1, 2])
      let partition1 = try harness.cluster.batchHeaders(topic: "stamped", partition: 1)
      #expect(partition1.map(\.baseSequence) == [0, 2])
      #expect(partition1.map(\.recordCount) == [2, 1])
      await producer.close()
    }
  }

  @Test func batchesReadyDuringARequestGoOutAsOneSequencedBatch() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("grouped", partitions: 1, leaders: [1])
      var producerConfig = ProducerConfig()
      producerConfig.batchBytes = 200
      producerConfig.lingerMs = 0
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      let first = try await producer.enqueue(topic: "grouped", value: [0], partition: 0)
      _ = try await first.value()
      harness.cluster.withState { $0.holdProduce = true }
      var handles: [DeliveryHandle] = []
      for index in 0..<20 {
        handles.append(
          try await producer.enqueue(
            topic: "grouped", value: paddedValue(index, bytes: 60), partition: 0))
      }
      #expect(
        await eventually(timeoutMs: 10_000) {
          harness.cluster.withState { $0.produceInFlight } == 1
        })
      harness.cluster.withState { $0.holdProduce = false }
      var offsets: [Int64] = []
      for handle in handles {
        offsets.append(try await handle.value().offset)
      }
      #expect(offsets == Array(1...20))
      // Every partition entry holds exactly one batch, and sequences continue record by record.
      let headers = try sentHeaders(harness)
      #expect(headers.allSatisfy { $0.count == 1 })
      var expectedSequence: Int32 = 0
      for header in headers.map({ $0[0] }) {
        #expect(header.baseSequence == expectedSequence)
        expectedSequence += header.recordCount
      }
      #expect(expectedSequence == 21)
      #expect(headers.count < 21)
      let stored = try harness.cluster.records(topic: "grouped", partition: 0)
      #expect(stored.count == 21)
      #expect(stored.dropFirst().map(\.value) == (0..<20).map { paddedValue($0, bytes: 60) })
      await producer.close()
    }
  }

  @Test func retryAfterALostResponseIsDeduplicated() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("lost", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      try await producer.send(topic: "lost", value: Array("before".utf8))
      harness.cluster.withState { $0.produceResponseDrops = 1 }
      let metadata = try await producer.send(topic: "lost", value: Array("once".utf8))
      #expect(metadata.offset == 1)
      let requests = harness.cluster.produceRequests()
      #expect(requests.count == 3)
      // The retry carried the very same batch (same sequence, same bytes).
      #expect(
        requests[1].topics[0].partitions[0].records == requests[2].topics[0].partitions[0].records)
      let stored = try harness.cluster.records(topic: "lost", partition: 0)
      #expect(stored.map(\.value) == [Array("before".utf8), Array("once".utf8)])
      try await producer.send(topic: "lost", value: Array("after".utf8))
      #expect(
        try harness.cluster.batchHeaders(topic: "lost", partition: 0).map(\.baseSequence) == [
          0, 1, 2,
        ])
      await producer.close()
    }
  }

  @Test func withoutIdempotenceALostResponseDuplicates() async throws {
    // The control experiment for the test above: the fake really stored the first attempt.
    try await withFakeCluster { harness in
      harness.cluster.createTopic("dup", partitions: 1, leaders: [1])
      var producerConfig = ProducerConfig()
      producerConfig.enableIdempotence = false
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      harness.cluster.withState { $0.produceResponseDrops = 1 }
      try await producer.send(topic: "dup", value: Array("twice".utf8))
      #expect(try harness.cluster.records(topic: "dup", partition: 0).count == 2)
      #expect(
        try harness.cluster.batchHeaders(topic: "dup", partition: 0).map(\.producerId) == [-1, -1])
      #expect(harness.cluster.requests(.initProducerId).isEmpty)
      #expect(await producer.producerIdAndEpoch == nil)
      await producer.close()
    }
  }

  @Test func acksZeroSendsNoProducerId() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("zero", partitions: 1, leaders: [1])
      let producer = Producer(
        config: harness.clientConfig(), producerConfig: ProducerConfig(acks: .none))
      try await producer.send(topic: "zero", value: [1])
      await producer.flush()
      #expect(await eventually { harness.cluster.batchCount(topic: "zero", partition: 0) == 1 })
      #expect(try harness.cluster.batchHeaders(topic: "zero", partition: 0)[0].producerId == -1)
      #expect(harness.cluster.requests(.initProducerId).isEmpty)
      await producer.close()
    }
  }

  @Test func duplicateSequenceNumberCountsAsDelivered() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("known", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      harness.cluster.withState {
        $0.produceErrors[TopicPartition(topic: "known", partition: 0)] = [.duplicateSequenceNumber]
      }
      let metadata = try await producer.send(topic: "known", value: [1])
      // The leader has the batch but no longer knows where: delivered, offset unknown.
      #expect(metadata.offset == -1)
      #expect(harness.cluster.produceRequests().count == 1)
      await producer.close()
    }
  }

  @Test func leaderThatLostTheProducerStateGetsANewProducerId() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("forgot", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      try await producer.send(topic: "forgot", value: Array("a".utf8))
      harness.cluster.forgetProducers(topic: "forgot", partition: 0)
      let metadata = try await producer.send(topic: "forgot", value: Array("b".utf8))
      #expect(metadata.offset == 1)
      #expect(harness.cluster.requests(.initProducerId).count == 2)
      let headers = try harness.cluster.batchHeaders(topic: "forgot", partition: 0)
      #expect(headers.map(\.producerId) == [1000, 1001])
      #expect(headers.map(\.baseSequence) == [0, 0])
      #expect(
        try harness.cluster.records(topic: "forgot", partition: 0).map(\.value) == [
          Array("a".utf8), Array("b".utf8),
        ])
      #expect(await producer.producerIdAndEpoch?.producerId == 1001)
      await producer.close()
    }
  }

  @Test func outOfOrderSequenceIsRetriedUnderANewProducerIdInOrder() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("gap", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      try await producer.send(topic: "gap", value: [0])
      harness.cluster.withState {
        $0.produceErrors[TopicPartition(topic: "gap", partition: 0)] = [.outOfOrderSequenceNumber]
      }
      var handles: [DeliveryHandle] = []
      for index in 1...5 {
        handles.append(try await producer.enqueue(topic: "gap", value: [UInt8(index)]))
      }
      for (index, handle) in handles.enumerated() {
        #expect(try await handle.value().offset == Int64(index + 1))
      }
      let stored = try harness.cluster.records(topic: "gap", partition: 0)
      #expect(stored.map(\.value) == (0...5).map { [UInt8($0)] })
      #expect(
        try harness.cluster.batchHeaders(topic: "gap", partition: 0).dropFirst().allSatisfy {
          $0.producerId == 1001
        })
      await producer.close()
    }
  }

  @Test func notLeaderRedirectResendsTheSameSequencedBatch() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("moved", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      try await producer.send(topic: "moved", value: Array("a".utf8))
      harness.cluster.moveLeader(topic: "moved", partition: 0, to: 2)
      let metadata = try await producer.send(topic: "moved", value: Array("b".utf8))
      #expect(metadata.offset == 1)
      let refused = try #require(harness.cluster.produceRequests(broker: 1).last)
      let accepted = try #require(harness.cluster.produceRequests(broker: 2).first)
      #expect(refused.topics[0].partitions[0].records == accepted.topics[0].partitions[0].records)
      let headers = try harness.cluster.batchHeaders(topic: "moved", partition: 0)
      #expect(headers.map(\.baseSequence) == [0, 1])
      await producer.close()
    }
  }

  @Test func nonRetriableErrorsSurfaceWithTheKafkaName() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("fenced", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      harness.cluster.withState {
        $0.produceErrors[TopicPartition(topic: "fenced", partition: 0)] = [.invalidProducerEpoch]
      }
      let error = await #expect(throws: StreamBusError.self) {
        try await producer.send(topic: "fenced", value: [1])
      }
      #expect(error?.errorCode == .invalidProducerEpoch)
      #expect(error?.description.contains("INVALID_PRODUCER_EPOCH") == true)
      #expect(harness.cluster.produceRequests().count == 1)
      await producer.close()
    }
  }

  @Test func initProducerIdErrorsAreRetriedOrSurfaced() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("init", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      harness.cluster.withState { $0.initProducerIdErrors = [.requestTimedOut, .invalidRequest] }
      // A retriable error is retried; INVALID_REQUEST is not: the waiting record fails.
      let error = await #expect(throws: StreamBusError.self) {
        try await producer.send(topic: "init", value: [1])
      }
      #expect(error?.errorCode == .invalidRequest)
      #expect(harness.cluster.requests(.initProducerId).count == 2)
      #expect(harness.cluster.produceRequests().isEmpty)
      // The next record asks again and gets through.
      let delivered = try await producer.send(topic: "init", value: [2])
      #expect(delivered.offset == 0)
      #expect(await producer.producerIdAndEpoch?.producerId == 1000)
      await producer.close()
    }
  }

  @Test func oneBrokerRefusingInitProducerIdDoesNotFailRecords() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("other", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      harness.cluster.withState { $0.initProducerIdErrors = [.invalidRequest] }
      let delivered = try await producer.send(topic: "other", value: [1])
      #expect(delivered.offset == 0)
      let asked = harness.cluster.withState { state in
        state.log.filter { $0.request.apiKey == .initProducerId }.map(\.brokerId)
      }
      #expect(asked.count == 2)
      #expect(Set(asked) == [1, 2])
      await producer.close()
    }
  }

  @Test func failoverErrorsCostRetriesWithGrowingBackoff() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("busy", partitions: 1, leaders: [1])
      var config = harness.clientConfig()
      config.retryBackoffMs = 20
      config.retryBackoffMaxMs = 60
      let producer = Producer(config: config)
      try await producer.send(topic: "busy", value: [0])
      harness.cluster.withState {
        $0.produceErrors[TopicPartition(topic: "busy", partition: 0)] = [
          .notEnoughReplicas, .requestTimedOut, .leaderNotAvailable, .fencedLeaderEpoch,
          .unknownLeaderEpoch, .notLeaderOrFollower,
        ]
      }
      let started = ContinuousClock.now
      #expect(try await producer.send(topic: "busy", value: [1]).offset == 1)
      let elapsedMs = (ContinuousClock.now - started).wholeMilliseconds
      // Backoffs 20, 40, 60, 60, 60, 60 ms, each within ±20 %.
      #expect(elapsedMs >= 240)
      #expect(harness.cluster.produceRequests().count == 8)
      #expect(try harness.cluster.records(topic: "busy", partition: 0).count == 2)
      await producer.close()
    }
  }

  @Test func leaderMoveSkipsTheRestOfTheBackoff() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("hop", partitions: 1, leaders: [1])
      var config = harness.clientConfig()
      config.retryBackoffMs = 10_000
      config.retryBackoffMaxMs = 10_000
      let producer = Producer(config: config)
      try await producer.send(topic: "hop", value: [0])
      harness.cluster.moveLeader(topic: "hop", partition: 0, to: 2)
      let started = ContinuousClock.now
      let delivered = try await producer.send(topic: "hop", value: [1])
      #expect(delivered.offset == 1)
      // NOT_LEADER_OR_FOLLOWER from broker 1, one metadata refresh naming broker 2, then the
      // retry at once: well below the 8-12 s backoff (even on a loaded machine).
      #expect(ContinuousClock.now - started < .seconds(5))
      #expect(harness.cluster.produceRequests(broker: 2).count == 1)
      await producer.close()
    }
  }

  @Test func unchangedLeaderStillWaitsOutTheBackoff() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("stay", partitions: 1, leaders: [1])
      var config = harness.clientConfig()
      config.retryBackoffMs = 400
      config.retryBackoffMaxMs = 400
      let producer = Producer(config: config)
      try await producer.send(topic: "stay", value: [0])
      harness.cluster.withState {
        $0.produceErrors[TopicPartition(topic: "stay", partition: 0)] = [.notLeaderOrFollower]
      }
      let started = ContinuousClock.now
      _ = try await producer.send(topic: "stay", value: [1])
      #expect(ContinuousClock.now - started >= .milliseconds(320))
      await producer.close()
    }
  }

  @Test func backoffGrowsFromRetryBackoffMsToRetryBackoffMaxMs() {
    let config = ClientConfig(bootstrapBrokers: [HostPort(host: "127.0.0.1", port: 1)])
    #expect(config.retryBackoffMs == 100)
    #expect(config.retryBackoffMaxMs == 1_000)
    for _ in 0..<200 {
      #expect((80...120).contains(config.backoffMs(attempt: 1)))
      #expect((160...240).contains(config.backoffMs(attempt: 2)))
      #expect((640...960).contains(config.backoffMs(attempt: 4)))
      for attempt in [5, 10, 64, Int.max] {
        #expect((800...1_200).contains(config.backoffMs(attempt: attempt)))
      }
    }
    #expect(ProducerConfig().deliveryTimeoutMs == 120_000)
    #expect(ProducerConfig().enableIdempotence)
  }

  @Test func sequencesWrapAtInt32Max() {
    #expect(Producer.sequence(0, advancedBy: 5) == 5)
    #expect(Producer.sequence(Int32.max, advancedBy: 1) == 0)
    #expect(Producer.sequence(Int32.max - 1, advancedBy: 4) == 2)
  }
}

@Suite(.timeLimit(.minutes(1))) struct IdempotentRetryTests {
  @Test func slowResponseRetriedAfterATimeoutIsStoredOnce() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("slow", partitions: 1, leaders: [1])
      harness.cluster.withState { $0.nextProduceDelayMs = 900 }
      var config = harness.clientConfig()
      // Short for the slow produce, long enough for metadata on a loaded machine.
      config.requestTimeoutMs = 300
      let producer = Producer(config: config)
      let metadata = try await producer.send(topic: "slow", value: Array("once".utf8))
      #expect(metadata.offset == 0)
      #expect(harness.cluster.produceRequests().count == 2)
      // Both attempts reached the fake; the second was recognized as the first one's duplicate.
      #expect(await eventually { harness.cluster.withState { $0.produceHandled } == 2 })
      #expect(try harness.cluster.records(topic: "slow", partition: 0).count == 1)
      await producer.close()
    }
  }

  @Test func batchesQueuedBeforeTheProducerIdArrivesAreStampedInOrder() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("early", partitions: 3, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      var handles: [DeliveryHandle] = []
      for index in 0..<30 {
        handles.append(
          try await producer.enqueue(
            topic: "early", value: [UInt8(index)], partition: Int32(index % 3)))
      }
      await producer.flush()
      for handle in handles {
        _ = try await handle.value()
      }
      #expect(harness.cluster.requests(.initProducerId).count == 1)
      for partition in 0..<3 {
        let values = try harness.cluster.records(topic: "early", partition: partition).map(\.value)
        #expect(values == stride(from: partition, to: 30, by: 3).map { [UInt8($0)] })
        let headers = try harness.cluster.batchHeaders(topic: "early", partition: partition)
        #expect(headers.allSatisfy { $0.producerId == 1000 && $0.producerEpoch == 0 })
        #expect(headers.first?.baseSequence == 0)
      }
      await producer.close()
    }
  }
}
