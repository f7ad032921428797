import StreamBusProtocol
import StreamBusRecords
import Testing

@testable import StreamBusClient

@Suite(.timeLimit(.minutes(1))) struct ProducerTests {
  @Test func keyedRecordsGoToTheMurmur2PartitionWithConsecutiveOffsets() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("keyed", partitions: 6, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      var handles: [DeliveryHandle] = []
      for index in 0..<30 {
        handles.append(
          try await producer.enqueue(
            topic: "keyed", key: Array("key-\(index % 5)".utf8), value: Array("v\(index)".utf8)))
      }
      var offsetsByPartition: [Int32: [Int64]] = [:]
      for (index, handle) in handles.enumerated() {
        let metadata = try await handle.value()
        let expected = Murmur2Partitioner.partition(
          forKey: Array("key-\(index % 5)".utf8), partitionCount: 6)
        #expect(metadata.partition == expected)
        offsetsByPartition[metadata.partition, default: []].append(metadata.offset)
      }
      for (partition, offsets) in offsetsByPartition {
        #expect(offsets == Array(0..<Int64(offsets.count)))
        let stored = try harness.cluster.records(topic: "keyed", partition: Int(partition))
        #expect(stored.count == offsets.count)
      }
      await producer.close()
    }
  }

  @Test func nullKeysStickToOnePartitionUntilItsBatchIsSent() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("sticky", partitions: 4, leaders: [1])
      var producerConfig = ProducerConfig()
      producerConfig.lingerMs = 60_000
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      var first: [DeliveryHandle] = []
      for index in 0..<10 {
        first.append(try await producer.enqueue(topic: "sticky", value: Array("a\(index)".utf8)))
      }
      #expect(Set(first.map(\.partition)).count == 1)
      await producer.flush()
      var second: [DeliveryHandle] = []
      for index in 0..<10 {
        second.append(try await producer.enqueue(topic: "sticky", value: Array("b\(index)".utf8)))
      }
      #expect(Set(second.map(\.partition)).count == 1)
      #expect(second[0].partition != first[0].partition)
      await producer.close()
      #expect(harness.cluster.batchCount(topic: "sticky", partition: Int(first[0].partition)) == 1)
      #expect(harness.cluster.batchCount(topic: "sticky", partition: Int(second[0].partition)) == 1)
    }
  }

  @Test func recordsWithinLingerShareOneBatchAndOneRequest() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("linger", partitions: 1, leaders: [1])
      var producerConfig = ProducerConfig()
      producerConfig.lingerMs = 100
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      let started = ContinuousClock.now
      var handles: [DeliveryHandle] = []
      for index in 0..<20 {
        handles.append(
          try await producer.enqueue(topic: "linger", value: Array("value-\(index)".utf8)))
      }
      #expect(harness.cluster.produceRequests().isEmpty)
      let last = try await handles[19].value()
      #expect(ContinuousClock.now - started >= .milliseconds(90))
      #expect(last.offset == 19)
      #expect(harness.cluster.produceRequests().count == 1)
      #expect(harness.cluster.batchCount(topic: "linger", partition: 0) == 1)
      #expect(try harness.cluster.records(topic: "linger", partition: 0).count == 20)
      await producer.close()
    }
  }

  @Test func fullBatchesAreSentWithoutWaitingForLinger() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("size", partitions: 1, leaders: [1])
      var producerConfig = ProducerConfig()
      producerConfig.lingerMs = 60_000
      producerConfig.batchBytes = 2_048
      // Batch boundaries as built; an idempotent producer merges ready batches into one.
      producerConfig.enableIdempotence = false
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      let value = [UInt8](repeating: 0x61, count: 200)
      var handles: [DeliveryHandle] = []
      for _ in 0..<50 {
        handles.append(try await producer.enqueue(topic: "size", value: value))
      }
      // About 9 records fit in 2 KiB; the full batches go out although linger is a minute
      // (those that filled while a request was outstanding together in the next request).
      _ = try await handles[30].value()
      let requests = harness.cluster.produceRequests()
      #expect(requests.count >= 2)
      var batchCount = 0
      for request in requests {
        for bytes in try batchSizes(request.topics[0].partitions[0].records) {
          #expect(bytes <= 2_048)
          #expect(bytes > 1_500)
          batchCount += 1
        }
      }
      #expect(batchCount >= 3)
      #expect(handles[49].isComplete == false)
      await producer.flush()
      #expect(try harness.cluster.records(topic: "size", partition: 0).count == 50)
      await producer.close()
    }
  }

  @Test func retriableErrorsAreRetriedUntilSuccess() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("retry", partitions: 1, leaders: [1])
      harness.cluster.withState {
        $0.produceErrors[TopicPartition(topic: "retry", partition: 0)] = [
          .notEnoughReplicas, .requestTimedOut,
        ]
      }
      let producer = Producer(config: harness.clientConfig())
      let metadata = try await producer.send(topic: "retry", value: Array("x".utf8))
      #expect(metadata.offset == 0)
      #expect(harness.cluster.produceRequests().count == 3)
      await producer.close()
    }
  }

  @Test func lostConnectionIsRetried() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("drop", partitions: 1, leaders: [1])
      harness.cluster.withState { $0.produceConnectionDrops = 1 }
      let producer = Producer(config: harness.clientConfig())
      let metadata = try await producer.send(topic: "drop", value: Array("x".utf8))
      #expect(metadata.offset == 0)
      #expect(harness.cluster.produceRequests().count == 2)
      await producer.close()
    }
  }

  @Test func slowResponseTimesOutAndIsRetriedAtLeastOnce() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("slowpoke", partitions: 1, leaders: [1])
      harness.cluster.withState { $0.nextProduceDelayMs = 900 }
      var config = harness.clientConfig()
      // Short for the slow produce, long enough for metadata on a loaded machine.
      config.requestTimeoutMs = 300
      var producerConfig = ProducerConfig()
      producerConfig.enableIdempotence = false
      let producer = Producer(config: config, producerConfig: producerConfig)
      let metadata = try await producer.send(topic: "slowpoke", value: Array("once".utf8))
      #expect(metadata.offset >= 0)
      #expect(harness.cluster.produceRequests().count == 2)
      // The slow request was appended too, after the client gave up on it: at least once.
      #expect(
        await eventually {
          (try? harness.cluster.records(topic: "slowpoke", partition: 0).count) == 2
        })
      await producer.close()
    }
  }

  @Test func nonRetriableErrorSurfacesWithCodeTopicAndPartition() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("fatal", partitions: 2, leaders: [1])
      harness.cluster.withState {
        $0.produceErrors[TopicPartition(topic: "fatal", partition: 1)] = [.messageTooLarge]
      }
      let producer = Producer(config: harness.clientConfig())
      let error = try await #require(throws: StreamBusError.self) {
        try await producer.send(topic: "fatal", value: Array("x".utf8), partition: 1)
      }
      #expect(error.errorCode == .messageTooLarge)
      #expect(error.kind == .broker)
      #expect(error.topic == "fatal")
      #expect(error.partition == 1)
      #expect(!error.isRetriable)
      #expect(harness.cluster.produceRequests().count == 1)
      await producer.close()
    }
  }

  @Test func retriesStopAtTheDeliveryTimeout() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("slow", partitions: 1, leaders: [1])
      harness.cluster.withState {
        $0.produceErrors[TopicPartition(topic: "slow", partition: 0)] = Array(
          repeating: .notEnoughReplicas, count: 1_000)
      }
      var producerConfig = ProducerConfig()
      // Long enough for InitProducerId and a second attempt on a loaded machine.
      producerConfig.deliveryTimeoutMs = 1_500
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      let error = try await #require(throws: StreamBusError.self) {
        try await producer.send(topic: "slow", value: Array("x".utf8))
      }
      #expect(error.kind == .timeout)
      #expect(error.errorCode == .notEnoughReplicas)
      #expect(harness.cluster.produceRequests().count >= 2)
      await producer.close()
    }
  }

  @Test func notLeaderRefreshesMetadataAndMovesToTheNewLeader() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("moving", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      #expect(try await producer.send(topic: "moving", value: Array("a".utf8)).offset == 0)
      harness.cluster.moveLeader(topic: "moving", partition: 0, to: 2)
      let metadata = try await producer.send(topic: "moving", value: Array("b".utf8))
      #expect(metadata.offset == 1)
      #expect(harness.cluster.produceRequests(broker: 1).count == 2)
      #expect(harness.cluster.produceRequests(broker: 2).count == 1)
      #expect(harness.cluster.requests(.metadata).count >= 2)
      await producer.close()
    }
  }

  @Test func requestToACutOffLeaderIsGivenUpOnceMetadataNamesItsSuccessor() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("cutoff", partitions: 1, leaders: [1])
      var config = harness.clientConfig()
      // Far beyond the test's own bound: only leaving the old leader can finish the send.
      config.requestTimeoutMs = 600_000
      let producer = Producer(config: config)
      #expect(try await producer.send(topic: "cutoff", value: Array("a".utf8)).offset == 0)
      // Broker 1 stops answering produce requests; the controller moves the leadership.
      harness.cluster.withState { $0.holdProduceOnBrokers = [1] }
      let sending = Task { try await producer.send(topic: "cutoff", value: Array("b".utf8)) }
      #expect(await eventually { harness.cluster.produceRequests(broker: 1).count == 2 })
      harness.cluster.moveLeader(topic: "cutoff", partition: 0, to: 2)
      // The send takes about a second when it works.
      let delivered = try await resultWithin(
        seconds: 20, release: { harness.cluster.withState { $0.holdProduceOnBrokers = [] } }
      ) { try await sending.value }
      harness.cluster.withState { $0.holdProduceOnBrokers = [] }
      // Closed before any check can throw: the fake cluster stops only once its clients left.
      await producer.close()
      let metadata = try #require(delivered, "the send still waited for the cut-off leader")
      #expect(metadata.offset == 1)
      #expect(harness.cluster.produceRequests(broker: 2).count == 1)
      #expect(try harness.cluster.records(topic: "cutoff", partition: 0).count == 2)
    }
  }

  @Test func acksZeroGetsNoResponseAndNoOffsets() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("fire", partitions: 1, leaders: [1])
      let producer = Producer(
        config: harness.clientConfig(), producerConfig: ProducerConfig(acks: .none))
      var handles: [DeliveryHandle] = []
      for index in 0..<5 {
        handles.append(try await producer.enqueue(topic: "fire", value: Array("\(index)".utf8)))
      }
      await producer.flush()
      for handle in handles {
        #expect(try await handle.value().offset == -1)
      }
      #expect(
        await eventually { (try? harness.cluster.records(topic: "fire", partition: 0).count) == 5 })
      #expect(harness.cluster.produceRequests().allSatisfy { $0.acks == 0 })
      await producer.close()
    }
  }

  @Test func sendSuspendsWhenTheBufferIsFull() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("pressure", partitions: 4, leaders: [1])
      harness.cluster.withState { $0.holdProduce = true }
      var producerConfig = ProducerConfig()
      producerConfig.lingerMs = 0
      producerConfig.batchBytes = 1_024
      producerConfig.bufferBytesMax = 4_096
      producerConfig.inflightRequestsMax = 2
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      let value = [UInt8](repeating: 7, count: 500)
      let enqueued = NIOCounter()
      let writer = Task {
        for index in 0..<40 {
          _ = try await producer.enqueue(
            topic: "pressure", value: value, partition: Int32(index % 4))
          enqueued.increment()
        }
      }
      #expect(await eventually { enqueued.value >= 6 })
      try await Task.sleep(for: .milliseconds(100))
      // 4 KiB hold at most 7 records of ~521 bytes; the writer is suspended.
      #expect(enqueued.value < 10)
      #expect(await producer.queuedBytes <= 4_096)
      #expect(harness.cluster.withState { $0.produceInFlightMax } <= 2)
      harness.cluster.withState { $0.holdProduce = false }
      try await writer.value
      await producer.close()
      #expect(enqueued.value == 40)
      #expect(harness.cluster.withState { $0.produceInFlightMax } <= 2)
      var total = 0
      for partition in 0..<4 {
        total += try harness.cluster.records(topic: "pressure", partition: partition).count
      }
      #expect(total == 40)
    }
  }

  @Test func unknownTopicAndPartitionAreClearErrors() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("known", partitions: 2, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      let unknown = try await #require(throws: StreamBusError.self) {
        try await producer.send(topic: "missing", value: [1])
      }
      #expect(unknown.errorCode == .unknownTopicOrPartition)
      #expect(unknown.topic == "missing")
      let badPartition = try await #require(throws: StreamBusError.self) {
        try await producer.send(topic: "known", value: [1], partition: 5)
      }
      #expect(badPartition.kind == .invalidArgument)
      #expect(badPartition.partition == 5)
      await producer.close()
      let closed = try await #require(throws: StreamBusError.self) {
        try await producer.send(topic: "known", value: [1])
      }
      #expect(closed.kind == .closed)
    }
  }

  @Test func recordsOfOnePartitionKeepSendOrderAcrossRetries() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("ordered", partitions: 1, leaders: [1])
      harness.cluster.withState {
        $0.produceErrors[TopicPartition(topic: "ordered", partition: 0)] = [
          .notLeaderOrFollower, .none, .notEnoughReplicas,
        ].filter { $0 != .none }
      }
      var producerConfig = ProducerConfig()
      producerConfig.lingerMs = 0
      producerConfig.batchBytes = 256
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      var handles: [DeliveryHandle] = []
      for index in 0..<200 {
        handles.append(try await producer.enqueue(topic: "ordered", value: Array("\(index)".utf8)))
      }
      await producer.close()
      for (index, handle) in handles.enumerated() {
        #expect(try await handle.value().offset == Int64(index))
      }
      let values = try harness.cluster.records(topic: "ordered", partition: 0).map {
        String(decoding: $0.value ?? [], as: UTF8.self)
      }
      #expect(values == (0..<200).map { "\($0)" })
    }
  }
}

@Suite(.timeLimit(.minutes(1))) struct ProducerRequestGroupingTests {
  @Test func batchesReadyWhileARequestIsOutstandingGoInTheNextRequest() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("clocked", partitions: 1, leaders: [1])
      harness.cluster.withState { $0.holdProduce = true }
      var producerConfig = ProducerConfig()
      // Several batches per partition entry: the path without idempotence.
      producerConfig.enableIdempotence = false
      producerConfig.lingerMs = 60_000
      producerConfig.batchBytes = RecordBatchHeader.byteCount + 10 * recordEstimate(valueBytes: 79)
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      var handles: [DeliveryHandle] = []
      for index in 0..<10 {
        handles.append(
          try await producer.enqueue(topic: "clocked", value: paddedValue(index, bytes: 79)))
      }
      // The first full batch is sent at once and held by the broker.
      #expect(await eventually { harness.cluster.withState { $0.produceInFlight } == 1 })
      for index in 10..<130 {
        handles.append(
          try await producer.enqueue(topic: "clocked", value: paddedValue(index, bytes: 79)))
      }
      try await Task.sleep(for: .milliseconds(50))
      #expect(harness.cluster.produceRequests().count == 1)
      harness.cluster.withState { $0.holdProduce = false }
      for (index, handle) in handles.enumerated() {
        #expect(try await handle.value().offset == Int64(index))
      }
      let requests = harness.cluster.produceRequests()
      #expect(requests.count == 2)
      let second = try #require(requests.last?.topics.first?.partitions.first?.records)
      #expect(try batchSizes(second).count == 12)
      let values = try harness.cluster.records(topic: "clocked", partition: 0).map(\.value)
      #expect(values == (0..<130).map { paddedValue($0, bytes: 79) })
      await producer.close()
    }
  }

  @Test func retriedRequestOfSeveralBatchesKeepsTheirOrder() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("reordered", partitions: 1, leaders: [1])
      harness.cluster.withState {
        $0.holdProduce = true
        $0.produceErrors[TopicPartition(topic: "reordered", partition: 0)] = [
          .notEnoughReplicas, .notLeaderOrFollower,
        ]
      }
      var producerConfig = ProducerConfig()
      // Several batches per partition entry: the path without idempotence.
      producerConfig.enableIdempotence = false
      producerConfig.lingerMs = 0
      producerConfig.batchBytes = RecordBatchHeader.byteCount + 5 * recordEstimate(valueBytes: 79)
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      var handles: [DeliveryHandle] = []
      for index in 0..<60 {
        handles.append(
          try await producer.enqueue(topic: "reordered", value: paddedValue(index, bytes: 79)))
      }
      harness.cluster.withState { $0.holdProduce = false }
      await producer.flush()
      for (index, handle) in handles.enumerated() {
        #expect(try await handle.value().offset == Int64(index))
      }
      let requests = harness.cluster.produceRequests()
      // The held first request (record 0 alone: linger is 0) fails; its retry carries it and
      // every batch queued meanwhile (11 full of 5 records, the open one with 4), fails again,
      // and the third attempt succeeds.
      #expect(requests.count == 3)
      #expect(try batchSizes(requests[1].topics[0].partitions[0].records).count == 13)
      #expect(try batchSizes(requests[2].topics[0].partitions[0].records).count == 13)
      let values = try harness.cluster.records(topic: "reordered", partition: 0).map(\.value)
      #expect(values == (0..<60).map { paddedValue($0, bytes: 79) })
      await producer.close()
    }
  }

  @Test func requestsStayWithinRequestBytesMaxAndGroupPartitionsOfALeader() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("bounded", partitions: 6, leaders: [1, 2])
      harness.cluster.withState { $0.holdProduce = true }
      var producerConfig = ProducerConfig()
      // Several batches per partition entry: the path without idempotence.
      producerConfig.enableIdempotence = false
      producerConfig.lingerMs = 0
      producerConfig.batchBytes = 600
      producerConfig.requestPartitionBytesMax = 2_000
      producerConfig.requestBytesMax = 4_096
      producerConfig.inflightRequestsMax = 2
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      var handles: [[DeliveryHandle]] = Array(repeating: [], count: 6)
      for index in 0..<300 {
        let partition = index % 6
        handles[partition].append(
          try await producer.enqueue(
            topic: "bounded", value: paddedValue(index, bytes: 90), partition: Int32(partition)))
      }
      harness.cluster.withState { $0.holdProduce = false }
      await producer.flush()
      for partition in 0..<6 {
        for (index, handle) in handles[partition].enumerated() {
          #expect(try await handle.value().offset == Int64(index))
        }
        let values = try harness.cluster.records(topic: "bounded", partition: partition).map(
          \.value)
        #expect(
          values == stride(from: partition, to: 300, by: 6).map { paddedValue($0, bytes: 90) })
      }
      let logged = harness.cluster.withState { $0.log }.filter { $0.request.apiKey == .produce }
      var sawSeveralPartitions = false
      var sawSeveralBatches = false
      for entry in logged {
        #expect(entry.request.encodePayload(header: entry.header).count <= 4_096)
        guard case .produce(let request) = entry.request else { continue }
        let partitions = request.topics.flatMap(\.partitions)
        sawSeveralPartitions = sawSeveralPartitions || partitions.count > 1
        for partition in partitions {
          #expect(partition.records.count <= 2_000)
          #expect(
            harness.cluster.withState { $0.topics["bounded"]?[Int(partition.partition)].leader }
              == entry.brokerId)
          if try batchSizes(partition.records).count > 1 {
            sawSeveralBatches = true
          }
        }
      }
      #expect(sawSeveralPartitions)
      #expect(sawSeveralBatches)
      #expect(harness.cluster.withState { $0.produceInFlightMax } <= 4)
      await producer.close()
    }
  }

  @Test func recordTooLargeForOneRequestFailsAtOnce() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("huge", partitions: 1, leaders: [1])
      var producerConfig = ProducerConfig()
      producerConfig.requestPartitionBytesMax = 1_000
      let producer = Producer(config: harness.clientConfig(), producerConfig: producerConfig)
      let error = try await #require(throws: StreamBusError.self) {
        try await producer.send(topic: "huge", value: [UInt8](repeating: 1, count: 1_000))
      }
      #expect(error.errorCode == .messageTooLarge)
      #expect(harness.cluster.produceRequests().isEmpty)
      let fits = try await producer.send(topic: "huge", value: [UInt8](repeating: 1, count: 900))
      #expect(fits.offset == 0)
      await producer.close()
    }
  }
}

/// The producer's size estimate of a record without key and headers.
func recordEstimate(valueBytes: Int) -> Int {
  Producer.estimatedRecordBytes(
    key: nil, value: [UInt8](repeating: 0, count: valueBytes), headers: [])
}

/// "index" padded with dots to `bytes` bytes.
func paddedValue(_ index: Int, bytes: Int) -> [UInt8] {
  let text = Array("\(index)".utf8)
  return text + [UInt8](repeating: 0x2E, count: bytes - text.count)
}

/// Sizes of the record batches in a produce request's records field.
func batchSizes(_ records: [UInt8]) throws -> [Int] {
  try records.withUnsafeBytes { buffer in
    var scanner = RecordBatchScanner(buffer)
    var sizes: [Int] = []
    while let span = try scanner.next() { sizes.append(span.range.count) }
    #expect(scanner.partialTailByteCount == 0)
    return sizes
  }
}

/// A counter shared between a test and a task it started.
final class NIOCounter: Sendable {
  private let box = NIOLockedValueBoxInt()
  func increment() { box.add(1) }
  var value: Int { box.get() }
}
