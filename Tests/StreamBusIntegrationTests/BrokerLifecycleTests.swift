import Foundation
import StreamBusClient
import StreamBusProtocol
import StreamBusRecords
import StreamBusTestSupport
import StreamBusTransport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Crash and shutdown behaviour of a real `databroker --standalone` process.
@Suite(.timeLimit(.minutes(2)))
struct BrokerLifecycleTests {
  static let recordsPerBatch = 10
  static let pipelinedRequests = 4

  /// Produces acks=all batches of sequenced values on one connection, several requests in
  /// flight, until the connection fails (the broker was killed).
  static func produceUntilFailure(
    address: String, topic: String, log: AcknowledgementLog
  ) async {
    guard let client = try? await RawBrokerClient.connect(to: address, requestTimeoutMs: 10_000)
    else {
      log.recordFailure()
      return
    }
    await withTaskGroup(of: Void.self) { group in
      for _ in 0..<pipelinedRequests {
        group.addTask {
          while true {
            // Lanes may reach the socket in any order; the check is per acknowledged offset,
            // not on the send order.
            let sequences = log.reserve(recordsPerBatch)
            let batch = RecordBatches.batch(values: sequences.map { SequencedValues.value($0) })
            do {
              let result = try await client.produce(
                topic: topic, records: batch, acks: -1, timeoutMs: 10_000)
              guard result.errorCode == .none else {
                log.recordFailure()
                return
              }
              log.acknowledge(sequences, baseOffset: result.baseOffset)
            } catch {
              log.recordFailure()
              return
            }
          }
        }
      }
    }
    await client.close()
  }

  /// Checks the recovered log against what was acknowledged: offsets contiguous from 0, every
  /// acknowledged record at its acknowledged offset, and nothing that was never sent.
  static func verifyRecoveredLog(
    _ records: [Record], log: AcknowledgementLog, sentCount: Int
  ) throws {
    for (index, record) in records.enumerated() {
      try #require(record.offset == Int64(index), "offset gap or reorder at position \(index)")
      let sequence = try #require(
        SequencedValues.sequence(of: record.value), "offset \(record.offset): foreign value")
      try #require(sequence < sentCount, "offset \(record.offset): value \(sequence) never sent")
    }
    let sequences = records.compactMap { SequencedValues.sequence(of: $0.value) }
    #expect(Set(sequences).count == sequences.count, "duplicated records after recovery")
    let acknowledged = log.acknowledged
    var missing: [Int] = []
    for (sequence, offset) in acknowledged {
      let index = Int(offset)
      if index >= records.count
        || SequencedValues.sequence(of: records[index].value) != sequence
      {
        missing.append(sequence)
      }
    }
    #expect(
      missing.isEmpty,
      "\(missing.count) acknowledged records lost or moved, e.g. \(missing.sorted().prefix(5))")
    #expect(records.count >= acknowledged.count)
  }

  @Test func killNineDuringAcksAllProduceLosesNothingAcknowledged() async throws {
    try await ProcessHarness.run { harness in
      let dataDirectory = try harness.makeDirectory("data")
      let topic = "crash"
      let log = AcknowledgementLog()
      var expectedRecordsAtLeast = 0

      // Two crash cycles: the second one crashes a broker that itself recovered a crash.
      for cycle in 1...2 {
        let broker = try await harness.startBroker(dataDirectory: dataDirectory)
        if cycle == 1 {
          let admin = try await RawBrokerClient.connect(to: broker.address)
          try await admin.createTopic(topic)
          await admin.close()
        }
        let producer = Task {
          await Self.produceUntilFailure(address: broker.address, topic: topic, log: log)
        }
        // Let a good number of batches be acknowledged, then pull the plug mid-stream.
        let target = log.acknowledgedCount + 3_000
        let deadline = ContinuousClock.now + .seconds(20)
        while log.acknowledgedCount < target && ContinuousClock.now < deadline {
          try await Task.sleep(for: .milliseconds(20))
        }
        try #require(log.acknowledgedCount >= target, "producer made no progress (cycle \(cycle))")
        try await broker.crash()
        await producer.value
        expectedRecordsAtLeast = log.acknowledgedCount

        let restarted = try await harness.startBroker(dataDirectory: dataDirectory)
        let reader = try await RawBrokerClient.connect(to: restarted.address)
        let records = try await reader.readAll(topic: topic)
        await reader.close()
        try Self.verifyRecoveredLog(records, log: log, sentCount: log.sentCount)
        #expect(records.count >= expectedRecordsAtLeast)
        // Cycle 2 appends after this recovered tail; sequence numbers keep growing, so every
        // acknowledgement of both cycles is checked again after the second crash.
        try await restarted.crash()
      }
    }
  }

  /// The same crash, with the client library's Producer (acks=all, batching, several
  /// batches queued) as the writer. Its retries end at the short delivery timeout, so
  /// records in flight at the crash fail instead of landing in the restarted broker.
  @Test func killNineWithClientLibraryProducerLosesNothingAcknowledged() async throws {
    try await ProcessHarness.run { harness in
      let dataDirectory = try harness.makeDirectory("data")
      let broker = try await harness.startBroker(dataDirectory: dataDirectory)
      var config = ClientConfig(
        bootstrapBrokers: [try HostPort(parsing: broker.address)], clientId: "crash-test")
      config.requestTimeoutMs = 2_000
      config.retries = 1
      let admin = Admin(config: config)
      try await admin.createTopic("crash-client", partitions: 1)
      await admin.close()

      var producerConfig = ProducerConfig(acks: .all)
      producerConfig.deliveryTimeoutMs = 1_500
      producerConfig.lingerMs = 1
      // A small buffer keeps the records queued at the crash (which must all time out) few.
      producerConfig.bufferBytesMax = 256 << 10
      let producer = Producer(config: config, producerConfig: producerConfig)
      let log = AcknowledgementLog()
      let (handles, sink) = AsyncStream.makeStream(of: (Int, DeliveryHandle).self)
      let collector = Task {
        for await (sequence, handle) in handles {
          if case .success(let metadata) = await handle.result() {
            log.acknowledge(sequence..<sequence + 1, baseOffset: metadata.offset)
          }
        }
      }
      let sender = Task {
        while !Task.isCancelled {
          let sequence = log.reserve(1).lowerBound
          guard
            let handle = try? await producer.enqueue(
              topic: "crash-client", value: SequencedValues.value(sequence), partition: 0)
          else { break }
          sink.yield((sequence, handle))
          if sequence % 64 == 0 { await Task.yield() }
        }
      }
      let deadline = ContinuousClock.now + .seconds(20)
      while log.acknowledgedCount < 5_000 && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
      }
      try #require(log.acknowledgedCount >= 5_000, "client producer made no progress")
      try await broker.crash()
      sender.cancel()
      // Everything still queued must fail within about deliveryTimeoutMs now that no broker
      // is reachable; a producer that keeps waiting would hang the test, so bound it.
      let stage = StageMarker("waiting for the sender's enqueue to return")
      let settled = await completes(within: .seconds(20)) {
        await sender.value
        sink.finish()
        stage.set("waiting for Producer.close()")
        await producer.close()
        stage.set("waiting for the delivery handles")
        await collector.value
      }
      let stillQueuedBytes = settled ? 0 : await producer.queuedBytes
      #expect(
        settled,
        """
        Producer did not settle within 20 s after its only broker was killed \
        (deliveryTimeoutMs 1500): still \(stage.value), \(stillQueuedBytes) bytes queued
        """)

      let restarted = try await harness.startBroker(dataDirectory: dataDirectory)
      let reader = try await RawBrokerClient.connect(to: restarted.address)
      let records = try await reader.readAll(topic: "crash-client")
      await reader.close()
      try Self.verifyRecoveredLog(records, log: log, sentCount: log.sentCount)
    }
  }

  @Test func sigtermExitsCleanlyAndKeepsData() async throws {
    try await ProcessHarness.run { harness in
      let dataDirectory = try harness.makeDirectory("data")
      let broker = try await harness.startBroker(dataDirectory: dataDirectory)
      let client = try await RawBrokerClient.connect(to: broker.address)
      try await client.createTopic("graceful", partitions: 2)
      var expected: [Int32: [[UInt8]]] = [:]
      for round in 0..<50 {
        let partition = Int32(round % 2)
        let values = (0..<20).map { SequencedValues.value(round * 20 + $0) }
        // acks=1: acknowledged before any fsync, so only a clean shutdown makes them durable.
        let result = try await client.produce(
          topic: "graceful", partition: partition, records: RecordBatches.batch(values: values),
          acks: 1)
        try #require(result.errorCode == .none, "produce: \(result.errorCode)")
        expected[partition, default: []].append(contentsOf: values)
      }
      await client.close()

      let exit = try await broker.terminate()
      #expect(exit == .exited(code: 0), "databroker exit after SIGTERM: \(exit)")
      #expect(broker.process.stderrText().contains("listening on"))

      let restarted = try await harness.startBroker(dataDirectory: dataDirectory)
      let reader = try await RawBrokerClient.connect(to: restarted.address)
      for partition: Int32 in [0, 1] {
        let records = try await reader.readAll(topic: "graceful", partition: partition)
        #expect(records.map(\.offset) == Array(0..<Int64(records.count)))
        #expect(records.map { $0.value ?? [] } == expected[partition] ?? [])
      }
      await reader.close()
      let secondExit = try await restarted.terminate()
      #expect(secondExit == .exited(code: 0))
    }
  }
}

/// The recovery checker itself must catch what it claims to catch.
@Suite struct RecoveryCheckerTests {
  static func records(_ sequences: [Int], offsets: [Int64]? = nil) -> [Record] {
    sequences.enumerated().map { index, sequence in
      Record(
        offset: offsets?[index] ?? Int64(index), timestamp: 0, key: nil,
        value: SequencedValues.value(sequence), headers: [])
    }
  }

  static func log(acknowledging count: Int, sent: Int) -> AcknowledgementLog {
    let log = AcknowledgementLog()
    let range = log.reserve(sent)
    log.acknowledge(range.startIndex..<range.startIndex + count, baseOffset: 0)
    return log
  }

  @Test func acceptsAcknowledgedPrefixPlusUnacknowledgedTail() throws {
    try BrokerLifecycleTests.verifyRecoveredLog(
      Self.records([0, 1, 2, 3]), log: Self.log(acknowledging: 3, sent: 6), sentCount: 6)
  }

  @Test func detectsLostAcknowledgedRecord() {
    withKnownIssue {
      try BrokerLifecycleTests.verifyRecoveredLog(
        Self.records([0, 1]), log: Self.log(acknowledging: 3, sent: 3), sentCount: 3)
    }
  }

  @Test func detectsOffsetGap() {
    withKnownIssue {
      try BrokerLifecycleTests.verifyRecoveredLog(
        Self.records([0, 1, 2], offsets: [0, 1, 3]), log: Self.log(acknowledging: 2, sent: 3),
        sentCount: 3)
    }
  }

  @Test func detectsForeignAndDuplicatedRecords() {
    withKnownIssue {
      try BrokerLifecycleTests.verifyRecoveredLog(
        Self.records([0, 1, 9]), log: Self.log(acknowledging: 2, sent: 3), sentCount: 3)
    }
    withKnownIssue {
      try BrokerLifecycleTests.verifyRecoveredLog(
        Self.records([0, 1, 1]), log: Self.log(acknowledging: 2, sent: 3), sentCount: 3)
    }
  }
}
