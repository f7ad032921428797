import Foundation
import StreamBusProtocol
import StreamBusRecords
import StreamBusTestSupport
import Testing

/// Hostile bytes on a raw socket: the broker answers with an error or closes that connection,
/// keeps serving everyone else, and never lets them into stored data.
@Suite(.timeLimit(.minutes(2)))
struct MalformedFrameTests {
  static let topic = "guarded"

  static func framed(_ payload: [UInt8]) -> [UInt8] {
    let length = UInt32(payload.count)
    return [
      UInt8(length >> 24), UInt8((length >> 16) & 0xff), UInt8((length >> 8) & 0xff),
      UInt8(length & 0xff),
    ] + payload
  }

  static func produceFrame(records: [UInt8], correlationId: Int32) -> [UInt8] {
    let request = ProduceRequest(
      acks: -1, timeoutMs: 5_000,
      topics: [.init(name: topic, partitions: [.init(partition: 0, records: records)])])
    return Request.produce(request).encodeFrame(
      header: RequestHeader(
        apiKey: .produce, apiVersion: 0, correlationId: correlationId, clientId: "hostile"))
  }

  /// The produce response's partition error for a frame written on `socket`.
  static func producePartitionError(_ socket: RawSocket, correlationId: Int32) throws -> ErrorCode?
  {
    guard case .frame(let payload) = socket.readFrame() else { return nil }
    let (header, response) = try Response.decode(apiKey: .produce, version: 0, payload: payload)
    #expect(header.correlationId == correlationId)
    if header.errorCode != .none { return header.errorCode }
    guard case .produce(let body) = response else { return nil }
    return body.topics.first?.partitions.first?.errorCode
  }

  @Test func brokerSurvivesMalformedFramesWithDataUnchanged() async throws {
    try await ProcessHarness.run { harness in
      let broker = try await harness.startBroker()
      let client = try await RawBrokerClient.connect(to: broker.address)
      try await client.createTopic(Self.topic)
      let goodValues = (0..<100).map { SequencedValues.value($0) }
      let stored = try await client.produce(
        topic: Self.topic, records: RecordBatches.batch(values: goodValues), acks: -1)
      try #require(stored.errorCode == .none)

      // 1. Length prefix far above frameBytesMax: nothing can be re-framed, so close.
      do {
        let socket = try RawSocket(host: "127.0.0.1", port: broker.port)
        socket.write([0x7f, 0xff, 0xff, 0xff, 0x00, 0x00])
        #expect(socket.readFrame() == .closed, "oversized length prefix")
      }
      // 2. Negative length prefix.
      do {
        let socket = try RawSocket(host: "127.0.0.1", port: broker.port)
        socket.write([0xff, 0xff, 0xff, 0xfe])
        #expect(socket.readFrame() == .closed, "negative length prefix")
      }
      // 3. A frame too short to hold a request header: the correlation id is unknown.
      do {
        let socket = try RawSocket(host: "127.0.0.1", port: broker.port)
        socket.write(Self.framed([0xde, 0xad, 0xbe]))
        #expect(socket.readFrame() == .closed, "truncated header")
      }
      // 4. Garbage after a readable header (unknown API key): an error response, and the
      //    connection stays usable.
      do {
        let socket = try RawSocket(host: "127.0.0.1", port: broker.port)
        let garbage: [UInt8] =
          [0x7a, 0x7a, 0x00, 0x00, 0x00, 0x00, 0x04, 0xd2, 0xff, 0xff]
          + (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        socket.write(Self.framed(garbage))
        guard case .frame(let payload) = socket.readFrame() else {
          Issue.record("no error response to an unknown api key")
          return
        }
        let header = try ResponseHeader.decode(payload: payload)
        #expect(header.correlationId == 1234)
        #expect(header.errorCode == .invalidRequest)
        // Same connection: a valid ApiVersions request still gets its answer.
        let apiVersions = Request.apiVersions(ApiVersionsRequest()).encodeFrame(
          header: RequestHeader(
            apiKey: .apiVersions, apiVersion: 0, correlationId: 1235, clientId: nil))
        socket.write(apiVersions)
        guard case .frame(let second) = socket.readFrame() else {
          Issue.record("connection unusable after an error response")
          return
        }
        #expect(try ResponseHeader.decode(payload: second).correlationId == 1235)
      }
      // 5. Produce batches that fail validation: bad CRC, lying batch length, truncated.
      do {
        let socket = try RawSocket(host: "127.0.0.1", port: broker.port)
        var corrupted = RecordBatches.batch(values: [Array("must not be stored".utf8)])
        corrupted[corrupted.count - 3] ^= 0x55  // inside the CRC-covered record bytes
        socket.write(Self.produceFrame(records: corrupted, correlationId: 10))
        let crcError = try Self.producePartitionError(socket, correlationId: 10)
        #expect(
          crcError != nil && crcError != ErrorCode.none,
          "bad CRC accepted: \(String(describing: crcError))")

        var lying = RecordBatches.batch(values: [Array("must not be stored either".utf8)])
        lying[8] = 0x7f  // batch length field (bytes 8..<12) now far beyond the bytes sent
        socket.write(Self.produceFrame(records: lying, correlationId: 11))
        let lengthError = try Self.producePartitionError(socket, correlationId: 11)
        #expect(lengthError != nil && lengthError != ErrorCode.none, "lying batch length accepted")

        let truncated = Array(RecordBatches.batch(values: [Array("cut".utf8)]).prefix(30))
        socket.write(Self.produceFrame(records: truncated, correlationId: 12))
        let truncatedError = try Self.producePartitionError(socket, correlationId: 12)
        #expect(
          truncatedError != nil && truncatedError != ErrorCode.none, "truncated batch accepted")
      }
      // 6. A huge array count in a produce body: answered with INVALID_REQUEST, no allocation.
      do {
        let socket = try RawSocket(host: "127.0.0.1", port: broker.port)
        var payload: [UInt8] = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0d, 0xff, 0xff]
        payload += [0xff, 0xff, 0x00, 0x00, 0x13, 0x88]  // acks -1, timeoutMs 5000
        payload += [0x7f, 0xff, 0xff, 0xff]  // topics count 2^31-1 with nothing behind it
        socket.write(Self.framed(payload))
        let error = try Self.producePartitionError(socket, correlationId: 13)
        #expect(error == .invalidRequest)
      }

      #expect(broker.process.isRunning, "broker died: \(broker.process.stderrTail())")
      // The broker still serves, and the log holds exactly the good records plus new ones.
      let after = try await RawBrokerClient.connect(to: broker.address)
      let appended = try await after.produce(
        topic: Self.topic, records: RecordBatches.batch(values: [SequencedValues.value(100)]),
        acks: -1)
      #expect(appended.errorCode == .none)
      #expect(appended.baseOffset == 100)
      let records = try await after.readAll(topic: Self.topic)
      #expect(records.map { $0.value ?? [] } == goodValues + [SequencedValues.value(100)])
      #expect(records.map(\.offset) == Array(0...100))
      await after.close()
      await client.close()
    }
  }
}
