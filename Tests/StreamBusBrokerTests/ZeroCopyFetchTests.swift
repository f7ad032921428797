import Foundation
import Glibc
import StreamBusProtocol
import StreamBusStorage
import Testing

@testable import StreamBusBroker
@testable import StreamBusTransport

/// The payload the parts stand for: byte parts as they are, file parts read from their files.
private func concatenate(_ parts: [FramePart]) throws -> [UInt8] {
  var payload: [UInt8] = []
  for part in parts {
    switch part {
    case .bytes(let bytes):
      payload += bytes
    case .file(let region):
      let descriptor = try #require(region.takeDescriptor())
      defer { close(descriptor) }
      var bytes = [UInt8](repeating: 0, count: region.byteCount)
      let count = bytes.withUnsafeMutableBytes {
        pread(descriptor, $0.baseAddress, $0.count, off_t(region.position))
      }
      try #require(count == region.byteCount)
      payload += bytes
    }
  }
  return payload
}

private func partition(
  _ number: Int32, _ errorCode: ErrorCode = .none, records: [UInt8] = []
) -> FetchResponse.Partition {
  FetchResponse.Partition(
    partition: number, errorCode: errorCode, highWatermark: errorCode == .none ? 40 : -1,
    logStartOffset: errorCode == .none ? 3 : -1, logEndOffset: errorCode == .none ? 41 : -1,
    currentLeader: errorCode == .none ? .init(leaderId: 1, leaderEpoch: 0) : .unknown,
    records: records)
}

@Suite struct ZeroCopyFetchTests {
  @Test func partsEncodeTheSameBytesAsTheResponseEncoder() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let path = directory.path + "/segment"
    let fileBytes = (0..<5_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
    try Data(fileBytes).write(to: URL(fileURLWithPath: path))
    func slice(_ position: Int, _ count: Int) throws -> LogFileSlice {
      let descriptor = open(path, O_RDONLY | O_CLOEXEC)
      try #require(descriptor >= 0)
      return LogFileSlice(descriptor: descriptor, position: Int64(position), byteCount: count)
    }
    let inline: [UInt8] = [1, 2, 3, 4, 5]
    // Topic "a": file, empty, error, file; topic "b": inline bytes, file; topic "c": none.
    let withFiles = FetchResponse(topics: [
      .init(
        name: "a",
        partitions: [partition(0), partition(1), partition(2, .offsetOutOfRange), partition(3)]),
      .init(name: "b", partitions: [partition(0, records: inline), partition(7)]),
      .init(name: "c", partitions: []),
    ])
    let files: [[LogFileSlice?]] = [
      [try slice(0, 1_000), nil, nil, try slice(4_000, 1_000)], [nil, try slice(17, 3)], [],
    ]
    var expected = withFiles
    expected.topics[0].partitions[0].records = Array(fileBytes[0..<1_000])
    expected.topics[0].partitions[3].records = Array(fileBytes[4_000..<5_000])
    expected.topics[1].partitions[1].records = Array(fileBytes[17..<20])
    let header = ResponseHeader(correlationId: 42)
    let parts = FetchAnswer(response: withFiles, recordsFiles: files).encodeParts(
      header: header, version: 0)
    let payload = try concatenate(parts)
    #expect(payload == Response.fetch(expected).encodePayload(header: header, version: 0))
    let (decodedHeader, decoded) = try Response.decode(apiKey: .fetch, version: 0, payload: payload)
    #expect(decodedHeader == header)
    #expect(decoded == .fetch(expected))
  }

  @Test func answerWithoutFilesIsOneBytePart() throws {
    let response = FetchResponse(topics: [
      .init(name: "t", partitions: [partition(0, records: [9])])
    ])
    let header = ResponseHeader(correlationId: 7)
    let parts = FetchAnswer(response: response, recordsFiles: [[nil]]).encodeParts(
      header: header, version: 0)
    #expect(parts.count == 1)
    #expect(
      try concatenate(parts) == Response.fetch(response).encodePayload(header: header, version: 0))
  }

  /// The same fetches against the same data, answered from file ranges and from copies,
  /// give byte-identical payloads.
  @Test func brokerAnswersIdenticallyWithAndWithoutFileRanges() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let writer = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await writer.connect()
    _ = try await client.createTopic("z", partitions: 3)
    for number in 0..<12 {
      let produced = try await client.produce(
        topic: "z", partition: Int32(number % 2),
        records: makeBatch(records: 1 + number % 4, seed: number))
      #expect(produced.errorCode == .none)
    }
    await client.close()
    try await writer.stop()

    let fetches: [FetchRequest] = [
      FetchRequest(
        maxWaitMs: 0, minBytes: 1, maxBytes: 1 << 20,
        topics: [
          .init(
            name: "z",
            partitions: [
              .init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20),
              .init(partition: 1, fetchOffset: 2, partitionMaxBytes: 200),
              .init(partition: 2, fetchOffset: 0, partitionMaxBytes: 1 << 20),
              .init(partition: 1, fetchOffset: 999, partitionMaxBytes: 1 << 20),
              .init(partition: 9, fetchOffset: 0, partitionMaxBytes: 1 << 20),
            ]),
          .init(
            name: "missing",
            partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 10)]),
        ]),
      FetchRequest(
        maxWaitMs: 0, minBytes: 1, maxBytes: 300,
        topics: [
          .init(
            name: "z",
            partitions: [
              .init(partition: 1, fetchOffset: 0, partitionMaxBytes: 1 << 20),
              .init(partition: 0, fetchOffset: 1, partitionMaxBytes: 1 << 20),
            ])
        ]),
    ]
    var payloads: [[[UInt8]]] = []
    for sendsFileRanges in [true, false] {
      let broker = try await TestBroker.start(dataDirectory: directory.path) {
        $0.fetchSendsFileRanges = sendsFileRanges
      }
      let reader = try await broker.connect()
      var answers: [[UInt8]] = []
      for fetch in fetches {
        answers.append(
          try await reader.connection.send(reader.payload(.fetch(fetch), correlationId: 5)))
      }
      await reader.close()
      try await broker.stop()
      payloads.append(answers)
    }
    #expect(payloads[0] == payloads[1])
    let (_, first) = try Response.decode(apiKey: .fetch, version: 0, payload: payloads[0][0])
    guard case .fetch(let body)? = first else {
      Issue.record("not a fetch response")
      return
    }
    #expect(!body.topics[0].partitions[0].records.isEmpty)
    #expect(body.topics[0].partitions[3].errorCode == .offsetOutOfRange)
    #expect(body.topics[1].partitions[0].errorCode == .unknownTopicOrPartition)
  }
}
