import Foundation
import StreamBusBroker
import StreamBusProtocol
import StreamBusTransport
import Testing

/// One connection's requests are processed in order, but waits (acks=all commits, fetch
/// long-polls) overlap with the requests after them.
@Suite struct PipeliningTests {
  /// `requests` as frames in one buffer, correlation ids 0, 1, 2, ...
  private func frames(_ requests: [Request]) -> [UInt8] {
    var bytes: [UInt8] = []
    for (index, request) in requests.enumerated() {
      bytes += request.encodeFrame(
        header: RequestHeader(
          apiKey: request.apiKey, apiVersion: 0, correlationId: Int32(index), clientId: nil))
    }
    return bytes
  }

  /// Writes every request in one write (pipelined on the wire) and reads `responseCount`
  /// responses.
  private func exchange(_ requests: [Request], on address: HostPort, responseCount: Int)
    async throws -> [[UInt8]]
  {
    let socket = try RawSocket(connectingTo: address)
    defer { socket.close() }
    let bytes = frames(requests)
    return try await onOwnThread {
      try socket.send(bytes)
      return try (0..<responseCount).map { _ in try socket.receiveFrame() }
    }
  }

  private func producePartition(_ payload: [UInt8], correlationId: Int32) throws
    -> ProduceResponse.Partition
  {
    let (header, response) = try Response.decode(apiKey: .produce, version: 0, payload: payload)
    #expect(header.correlationId == correlationId)
    guard case .produce(let body)? = response, let partition = body.topics.first?.partitions.first
    else {
      throw BrokerError("not a produce response: \(String(describing: response))")
    }
    return partition
  }

  @Test func pipelinedAcksAllProducesAppendInOrderAndShareFlushes() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem)
    let client = try await broker.connect()
    _ = try await client.createTopic("pipelined")
    let requestCount = 200
    let batches = (0..<requestCount).map { makeBatch(records: 1 + $0 % 3, seed: $0) }
    let syncsBefore = fileSystem.syncCount
    let payloads = try await exchange(
      batches.map { client.produceRequest(topic: "pipelined", records: $0, acks: -1) },
      on: broker.address, responseCount: requestCount)
    let syncs = fileSystem.syncCount - syncsBefore

    var expectedOffset: Int64 = 0
    var expectedLog: [UInt8] = []
    for (index, payload) in payloads.enumerated() {
      let partition = try producePartition(payload, correlationId: Int32(index))
      #expect(partition.errorCode == .none, "request \(index)")
      #expect(partition.baseOffset == expectedOffset, "request \(index)")
      expectedLog += stored(batches[index], baseOffset: expectedOffset)
      expectedOffset += Int64(1 + index % 3)
    }
    // The log holds the batches in request order, all committed.
    let fetched = try await client.fetch(topic: "pipelined", offset: 0, maxBytes: 1 << 22)
    #expect(fetched.highWatermark == expectedOffset)
    #expect(fetched.records == expectedLog)
    // Every produce waited for an fdatasync, but the connection kept appending meanwhile, so
    // flushes covered many produces each (one per produce without pipelining).
    #expect(syncs >= 1)
    #expect(syncs < requestCount / 2, "\(syncs) fdatasyncs for \(requestCount) produces")
    await client.close()
    try await broker.stop()
  }

  @Test func acksAllWaitDoesNotHoldUpTheNextAppend() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem)
    let observer = try await broker.connect()
    _ = try await observer.createTopic("overlap")
    fileSystem.update { $0.isSyncGateClosed = true }
    let requests = (0..<2).map {
      observer.produceRequest(topic: "overlap", records: makeBatch(records: 3, seed: $0), acks: -1)
    }
    let address = broker.address
    let producing = Task { try await exchange(requests, on: address, responseCount: 2) }
    // Both batches are appended while the first one still waits for its flush.
    #expect(
      try await eventually {
        try await observer.fetch(topic: "overlap", offset: 0).logEndOffset == 6
      })
    #expect(try await observer.fetch(topic: "overlap", offset: 0).highWatermark == 0)
    fileSystem.update { $0.isSyncGateClosed = false }
    let payloads = try await producing.value
    #expect(try producePartition(payloads[0], correlationId: 0).baseOffset == 0)
    #expect(try producePartition(payloads[1], correlationId: 1).baseOffset == 3)
    await observer.close()
    try await broker.stop()
  }

  @Test func waitingFetchDoesNotHoldUpLaterRequestsOfItsConnection() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("poll")
    let batch = makeBatch(records: 3, seed: 1)
    let fetch = Request.fetch(
      FetchRequest(
        maxWaitMs: 20_000, minBytes: 1, maxBytes: 1 << 20,
        topics: [
          FetchRequest.Topic(
            name: "poll",
            partitions: [
              FetchRequest.Partition(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)
            ])
        ]))
    // The fetch waits for data that only the produce behind it on the same connection brings.
    let clock = ContinuousClock()
    let started = clock.now
    let payloads = try await exchange(
      [fetch, client.produceRequest(topic: "poll", records: batch, acks: 1)],
      on: broker.address, responseCount: 2)
    #expect(clock.now - started < .seconds(10))
    let (fetchHeader, fetchResponse) = try Response.decode(
      apiKey: .fetch, version: 0, payload: payloads[0])
    #expect(fetchHeader.correlationId == 0)
    guard case .fetch(let body)? = fetchResponse,
      let partition = body.topics.first?.partitions.first
    else {
      Issue.record("not a fetch response")
      return
    }
    #expect(partition.records == stored(batch, baseOffset: 0))
    #expect(try producePartition(payloads[1], correlationId: 1).baseOffset == 0)
    await client.close()
    try await broker.stop()
  }
}
