import StreamBusProtocol
import Testing

@testable import StreamBusClient

/// Every queued or in-flight record completes within `deliveryTimeoutMs` (plus
/// `requestTimeoutMs` for one in flight) whatever the brokers do, and `close()` returns then.
@Suite(.timeLimit(.minutes(1))) struct ProducerDeliveryTimeoutTests {
  static let deliveryTimeoutMs: Int64 = 400
  static let requestTimeoutMs: Int64 = 800
  /// Scheduling slack on a loaded test machine.
  static let slackMs: Int64 = 1_500

  static func producerConfig(deliveryTimeoutMs: Int64 = deliveryTimeoutMs) -> ProducerConfig {
    var config = ProducerConfig()
    config.deliveryTimeoutMs = deliveryTimeoutMs
    config.lingerMs = 1
    return config
  }

  /// A producer that already delivered one record to each partition of `topic`, so its
  /// metadata and connection are warm when the test breaks the broker.
  static func warmProducer(
    _ harness: FakeClusterHarness, topic: String, partitions: Int,
    requestTimeoutMs: Int64 = requestTimeoutMs,
    deliveryTimeoutMs: Int64 = deliveryTimeoutMs
  ) async throws -> Producer {
    harness.cluster.createTopic(topic, partitions: partitions, leaders: [1])
    var config = harness.clientConfig()
    config.requestTimeoutMs = requestTimeoutMs
    let producer = Producer(
      config: config, producerConfig: producerConfig(deliveryTimeoutMs: deliveryTimeoutMs))
    for partition in 0..<Int32(partitions) {
      try await producer.send(topic: topic, value: Array("warm".utf8), partition: partition)
    }
    return producer
  }

  static func enqueue(
    _ producer: Producer, topic: String, partitions: Int, count: Int
  ) async throws -> [DeliveryHandle] {
    var handles: [DeliveryHandle] = []
    for index in 0..<count {
      handles.append(
        try await producer.enqueue(
          topic: topic, value: Array("value-\(index)".utf8),
          partition: Int32(index % partitions)))
    }
    return handles
  }

  /// Closes the producer and checks that every handle failed with a delivery timeout, all
  /// within `boundMs` of `started`.
  static func expectAllTimeOut(
    _ handles: [DeliveryHandle], producer: Producer, started: ContinuousClock.Instant,
    boundMs: Int64
  ) async {
    await producer.close()
    let closedAfter = ContinuousClock.now - started
    #expect(
      closedAfter < .milliseconds(boundMs), "close() returned after \(closedAfter)")
    for handle in handles {
      #expect(handle.isComplete)
      guard case .failure(let error) = await handle.result() else {
        Issue.record("record on partition \(handle.partition) was acknowledged")
        continue
      }
      #expect(error.kind == .timeout, "\(error)")
      #expect(error.message.contains("deliveryTimeoutMs"), "\(error)")
    }
    #expect(await producer.queuedBytes == 0)
  }

  @Test func brokerThatStopsRespondingFailsEveryRecordInTime() async throws {
    try await withFakeCluster { harness in
      let producer = try await Self.warmProducer(harness, topic: "silent", partitions: 3)
      harness.cluster.withState { $0.holdAll = true }
      let started = ContinuousClock.now
      let handles = try await Self.enqueue(producer, topic: "silent", partitions: 3, count: 60)
      await Self.expectAllTimeOut(
        handles, producer: producer, started: started,
        boundMs: Self.deliveryTimeoutMs + Self.requestTimeoutMs + Self.slackMs)
    }
  }

  @Test func brokerThatClosesItsListenerFailsEveryRecordInTime() async throws {
    try await withFakeCluster { harness in
      let producer = try await Self.warmProducer(harness, topic: "gone", partitions: 2)
      await harness.brokers[0].stop()
      let started = ContinuousClock.now
      let handles = try await Self.enqueue(producer, topic: "gone", partitions: 2, count: 40)
      await Self.expectAllTimeOut(
        handles, producer: producer, started: started,
        boundMs: Self.deliveryTimeoutMs + Self.requestTimeoutMs + Self.slackMs)
    }
  }

  /// The leader moved (NOT_LEADER) and metadata requests hang: batches waiting for the
  /// refresh still expire on time instead of waiting for the refresh's request timeout.
  @Test func hangingMetadataRefreshDoesNotParkBatches() async throws {
    try await withFakeCluster { harness in
      // A long request timeout: only the producer's own timer can end the wait in time.
      let producer = try await Self.warmProducer(
        harness, topic: "parked", partitions: 2, requestTimeoutMs: 10_000)
      harness.cluster.withState { state in
        state.holdMetadata = true
        for partition: Int32 in 0..<2 {
          state.produceErrors[TopicPartition(topic: "parked", partition: partition)] = Array(
            repeating: .notLeaderOrFollower, count: 1_000)
        }
      }
      let started = ContinuousClock.now
      let handles = try await Self.enqueue(producer, topic: "parked", partitions: 2, count: 20)
      await Self.expectAllTimeOut(
        handles, producer: producer, started: started,
        boundMs: Self.deliveryTimeoutMs + Self.slackMs)
    }
  }

  /// Metadata requests fail while the leader answers NOT_LEADER: the producer keeps
  /// refreshing on its own (no further sends), backing off, and delivers once both recover.
  @Test func failedMetadataRefreshesAreRetriedWithBackoffUntilDelivered() async throws {
    try await withFakeCluster { harness in
      let producer = try await Self.warmProducer(
        harness, topic: "refresh", partitions: 1, deliveryTimeoutMs: 5_000)
      let metadataBefore = harness.cluster.requests(.metadata).count
      harness.cluster.withState { state in
        state.produceErrors[TopicPartition(topic: "refresh", partition: 0)] = [
          .notLeaderOrFollower
        ]
        state.metadataConnectionDrops = 4
      }
      let handle = try await producer.enqueue(topic: "refresh", value: Array("late".utf8))
      let metadata = try await handle.value()
      #expect(metadata.offset == 1)
      #expect(harness.cluster.withState { $0.metadataConnectionDrops } == 0)
      // Four dropped refreshes and the one that answered.
      #expect(harness.cluster.requests(.metadata).count - metadataBefore >= 5)
      await producer.close()
    }
  }

  /// A broker that is down (every connection dropped) for less than the delivery timeout,
  /// then back: every record is delivered, in order.
  @Test func brokerBackBeforeTheDeadlineGetsEveryRecord() async throws {
    try await withFakeCluster { harness in
      let producer = try await Self.warmProducer(
        harness, topic: "back", partitions: 2, deliveryTimeoutMs: 5_000)
      harness.cluster.withState { $0.dropAll = true }
      let handles = try await Self.enqueue(producer, topic: "back", partitions: 2, count: 40)
      try await Task.sleep(for: .milliseconds(300))
      #expect(!handles.contains { $0.isComplete })
      harness.cluster.withState { $0.dropAll = false }
      await producer.close()
      var offsets: [Int32: [Int64]] = [:]
      for handle in handles {
        offsets[handle.partition, default: []].append(try await handle.value().offset)
      }
      for partition: Int32 in 0..<2 {
        let stored = try harness.cluster.records(topic: "back", partition: Int(partition))
        // At least once: a retry may repeat a batch, never reorder records.
        let values = stored.dropFirst().map { String(decoding: $0.value ?? [], as: UTF8.self) }
        let expected = (0..<40).filter { $0 % 2 == Int(partition) }.map { "value-\($0)" }
        #expect(Array(values.uniqued()) == expected)
        #expect(offsets[partition]?.count == 20)
      }
    }
  }

  /// Like above but the broker stops answering (requests time out) and recovers.
  @Test func unresponsiveBrokerRecoveringBeforeTheDeadlineGetsEveryRecord() async throws {
    try await withFakeCluster { harness in
      let producer = try await Self.warmProducer(
        harness, topic: "pause", partitions: 1, requestTimeoutMs: 300, deliveryTimeoutMs: 5_000)
      harness.cluster.withState { $0.holdAll = true }
      let handles = try await Self.enqueue(producer, topic: "pause", partitions: 1, count: 10)
      try await Task.sleep(for: .milliseconds(500))
      harness.cluster.withState { $0.holdAll = false }
      await producer.close()
      for handle in handles {
        #expect(try await handle.value().offset >= 1)
      }
      // Requests the broker was holding are appended too, possibly after their retries.
      let stored = try harness.cluster.records(topic: "pause", partition: 0)
      let values = stored.dropFirst().map { String(decoding: $0.value ?? [], as: UTF8.self) }
      #expect(Set(values) == Set((0..<10).map { "value-\($0)" }))
    }
  }
}

extension Sequence where Element: Hashable {
  /// The elements in order, each only at its first occurrence.
  fileprivate func uniqued() -> [Element] {
    var seen = Set<Element>()
    return filter { seen.insert($0).inserted }
  }
}
