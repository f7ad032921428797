import Foundation
import StreamBusBroker
import StreamBusProtocol
import StreamBusRecords
import StreamBusStorage
import Testing

@Suite struct ProduceFetchTests {
  @Test(arguments: [Int16(1), -1])
  func produceThenFetchReturnsTheSameBytesWithAssignedOffsets(acks: Int16) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("events", partitions: 2)

    let first = makeBatch(records: 3, seed: 1)
    let second = makeBatch(records: 5, seed: 2)
    let firstResult = try await client.produce(topic: "events", records: first, acks: acks)
    #expect(firstResult.errorCode == .none)
    #expect(firstResult.baseOffset == 0)
    let secondResult = try await client.produce(topic: "events", records: second, acks: acks)
    #expect(secondResult.baseOffset == 3)
    let otherPartition = try await client.produce(
      topic: "events", partition: 1, records: second, acks: acks)
    #expect(otherPartition.baseOffset == 0)

    // acks=1 data becomes visible once the continuous group commit catches up.
    let expected = stored(first, baseOffset: 0) + stored(second, baseOffset: 3)
    var fetched = try await client.fetch(
      topic: "events", offset: 0, maxWaitMs: 2_000, minBytes: Int32(expected.count))
    #expect(fetched.errorCode == .none)
    #expect(fetched.highWatermark == 8)
    #expect(fetched.logEndOffset == 8)
    #expect(fetched.logStartOffset == 0)
    #expect(fetched.records == expected)
    let decoded = try RecordBatch.decode(
      Array(fetched.records[stored(first, baseOffset: 0).count...]))
    #expect(decoded.records.map(\.offset) == [3, 4, 5, 6, 7])

    fetched = try await client.fetch(topic: "events", offset: 3)
    #expect(fetched.records == stored(second, baseOffset: 3))
    fetched = try await client.fetch(topic: "events", offset: 8)
    #expect(fetched.errorCode == .none)
    #expect(fetched.records.isEmpty)
    fetched = try await client.fetch(topic: "events", offset: 9)
    #expect(fetched.errorCode == .offsetOutOfRange)
    fetched = try await client.fetch(topic: "events", offset: -1)
    #expect(fetched.errorCode == .offsetOutOfRange)

    #expect(try await client.listOffset(topic: "events", timestamp: -2).offset == 0)
    #expect(try await client.listOffset(topic: "events", timestamp: -1).offset == 8)
    await client.close()
    try await broker.stop()
  }

  @Test func oneProduceRequestForSeveralPartitions() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("multi", partitions: 2)
    let batch = makeBatch(records: 2)
    _ = try await client.produce(topic: "multi", partition: 1, records: batch, acks: -1)
    let (_, response) = try await client.send(
      .produce(
        ProduceRequest(
          acks: -1, timeoutMs: 5_000,
          topics: [
            .init(
              name: "multi",
              partitions: [
                .init(partition: 0, records: batch), .init(partition: 1, records: batch),
                .init(partition: 7, records: batch),
              ]),
            .init(name: "absent", partitions: [.init(partition: 0, records: batch)]),
          ])))
    guard case .produce(let body)? = response else {
      Issue.record("unexpected response")
      return
    }
    #expect(body.topics.map(\.name) == ["multi", "absent"])
    #expect(body.topics[0].partitions.map(\.partition) == [0, 1, 7])
    #expect(
      body.topics[0].partitions.map(\.errorCode) == [.none, .none, .unknownTopicOrPartition])
    #expect(body.topics[0].partitions.map(\.baseOffset) == [0, 2, -1])
    #expect(body.topics[1].partitions.map(\.errorCode) == [.unknownTopicOrPartition])
    #expect(
      try await client.fetch(topic: "multi", partition: 1, offset: 2).records
        == stored(batch, baseOffset: 2))
    await client.close()
    try await broker.stop()
  }

  @Test func fetchSizeLimitsReturnWholeBatches() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("sized", partitions: 2)
    let batches = (0..<3).map { makeBatch(records: 2, seed: $0) }
    for partition in Int32(0)..<2 {
      for batch in batches {
        _ = try await client.produce(topic: "sized", partition: partition, records: batch, acks: -1)
      }
    }
    let first = stored(batches[0], baseOffset: 0)
    // A limit below one batch still returns the first batch whole (progress).
    let tiny = try await client.fetch(topic: "sized", offset: 0, partitionMaxBytes: 10)
    #expect(tiny.records == first)
    // A limit between one and two batches returns one.
    let one = try await client.fetch(
      topic: "sized", offset: 0, partitionMaxBytes: Int32(first.count + 10))
    #expect(one.records == first)

    // The response limit is shared: the second partition gets nothing once it is used up.
    let (_, response) = try await client.send(
      .fetch(
        FetchRequest(
          maxWaitMs: 0, minBytes: 1, maxBytes: Int32(first.count),
          topics: [
            .init(
              name: "sized",
              partitions: [
                .init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20),
                .init(partition: 1, fetchOffset: 0, partitionMaxBytes: 1 << 20),
              ])
          ])))
    guard case .fetch(let body)? = response else {
      Issue.record("unexpected response")
      return
    }
    let partitions = try #require(body.topics.first?.partitions)
    #expect(partitions.map(\.records) == [first, []])
    #expect(partitions.map(\.highWatermark) == [6, 6])
    await client.close()
    try await broker.stop()
  }

  @Test func acksZeroGetsNoResponseButAppends() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("fire")
    let batch = makeBatch(records: 2)
    let request = client.produceRequest(topic: "fire", records: batch, acks: 0)
    try await client.connection.sendOneWay(
      client.payload(request, correlationId: client.takeCorrelationId()))
    try await client.connection.sendOneWay(
      client.payload(request, correlationId: client.takeCorrelationId()))
    // The next response on the connection proves no response was written for acks=0.
    let metadata = try await client.metadata(["fire"])
    #expect(metadata.topics.first?.errorCode == ErrorCode.none)
    let fetched = try await client.fetch(
      topic: "fire", offset: 0, maxWaitMs: 2_000, minBytes: Int32(batch.count * 2))
    #expect(fetched.records == stored(batch, baseOffset: 0) + stored(batch, baseOffset: 2))
    await client.close()
    try await broker.stop()
  }

  @Test func invalidAcksAndUnknownTopicAndOversizeRecords() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path) {
      $0.messageBytesMax = 1_000
    }
    let client = try await broker.connect()
    _ = try await client.createTopic("t")
    let invalidAcks = try await client.produce(topic: "t", records: makeBatch(), acks: 2)
    #expect(invalidAcks.errorCode == .invalidRequiredAcks)
    #expect(invalidAcks.baseOffset == -1)
    #expect(
      try await client.produce(topic: "nope", records: makeBatch()).errorCode
        == .unknownTopicOrPartition)
    #expect(
      try await client.produce(topic: "t", partition: 1, records: makeBatch()).errorCode
        == .unknownTopicOrPartition)
    let large = try await client.produce(
      topic: "t", records: makeBatch(records: 4, valueBytes: 400))
    #expect(large.errorCode == .messageTooLarge)
    #expect(try await client.fetch(topic: "nope", offset: 0).errorCode == .unknownTopicOrPartition)
    #expect(
      try await client.listOffset(topic: "nope", timestamp: -1).errorCode
        == .unknownTopicOrPartition)
    #expect(try await client.listOffset(topic: "t", timestamp: -1).offset == 0)
    await client.close()
    try await broker.stop()
  }

  @Test func corruptBatchIsRefusedAndTheLogIsUnchanged() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("t")
    let good = makeBatch(records: 2, seed: 7)
    #expect(try await client.produce(topic: "t", records: good, acks: -1).errorCode == .none)
    let segmentPath = "\(directory.path)/t-0/00000000000000000000.log"
    let before = try Data(contentsOf: URL(fileURLWithPath: segmentPath))

    var corrupt = makeBatch(records: 2, seed: 8)
    corrupt[corrupt.count - 1] ^= 0xFF  // inside the CRC-covered records
    // A valid batch followed by a corrupt one: nothing of the request may be stored.
    let result = try await client.produce(topic: "t", records: makeBatch(seed: 9) + corrupt)
    #expect(result.errorCode == .corruptMessage)
    #expect(result.errorMessage?.isEmpty == false)
    let truncated = try await client.produce(topic: "t", records: Array(good.dropLast(3)))
    #expect(truncated.errorCode == .corruptMessage)
    #expect(try await client.produce(topic: "t", records: []).errorCode == .corruptMessage)

    let after = try Data(contentsOf: URL(fileURLWithPath: segmentPath))
    #expect(after == before)
    #expect(try await client.listOffset(topic: "t", timestamp: -1).offset == 2)
    let next = try await client.produce(topic: "t", records: good, acks: -1)
    #expect(next.baseOffset == 2)
    await client.close()
    try await broker.stop()
  }

  @Test func pipelinedProducesOnOneConnectionAppendInOrder() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("ordered")
    let count = 40
    var frames: [UInt8] = []
    var recordCounts: [Int] = []
    for index in 0..<count {
      let records = 1 + index % 3
      recordCounts.append(records)
      let request = client.produceRequest(
        topic: "ordered", records: makeBatch(records: records, seed: index),
        acks: index % 2 == 0 ? 1 : -1)
      frames += request.encodeFrame(
        header: RequestHeader(
          apiKey: .produce, apiVersion: 0, correlationId: Int32(1000 + index), clientId: nil))
    }
    // All requests leave in one write, so they are pipelined on the wire.
    let socket = try RawSocket(connectingTo: broker.address)
    defer { socket.close() }
    let allFrames = frames
    let payloads = try await onOwnThread {
      try socket.send(allFrames)
      return try (0..<count).map { _ in try socket.receiveFrame() }
    }
    var expectedOffset: Int64 = 0
    for (index, payload) in payloads.enumerated() {
      let (header, response) = try Response.decode(apiKey: .produce, version: 0, payload: payload)
      #expect(header.correlationId == Int32(1000 + index))
      guard case .produce(let body)? = response else {
        Issue.record("not a produce response")
        return
      }
      let partition = try #require(body.topics.first?.partitions.first)
      #expect(partition.errorCode == .none)
      #expect(partition.baseOffset == expectedOffset, "request \(index)")
      expectedOffset += Int64(recordCounts[index])
    }
    await client.close()
    try await broker.stop()
  }
}
