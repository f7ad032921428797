import Testing

@testable import StreamBusProtocol

@Suite struct FramingTests {
  @Test func prefixCheckAcceptsUpToTheLimit() throws {
    #expect(try Framing.checkedPayloadLength(0, frameBytesMax: 10) == 0)
    #expect(try Framing.checkedPayloadLength(10, frameBytesMax: 10) == 10)
    #expect(
      try Framing.checkedPayloadLength(prefix: [0x04, 0, 0, 0]) == 64 * 1024 * 1024)
    #expect(Framing.frameBytesMaxDefault == 64 * 1024 * 1024)
  }

  @Test func prefixCheckRejectsOversized() {
    let error = thrownError(ProtocolError.self) {
      _ = try Framing.checkedPayloadLength(11, frameBytesMax: 10)
    }
    #expect(error?.code == .frameTooLarge)
    #expect(error?.errorCode == .messageTooLarge)
    let defaultLimit = thrownError(ProtocolError.self) {
      _ = try Framing.checkedPayloadLength(prefix: [0x04, 0, 0, 1])
    }
    #expect(defaultLimit?.code == .frameTooLarge)
  }

  @Test func prefixCheckRejectsNegative() {
    for prefix: [UInt8] in [[0xFF, 0xFF, 0xFF, 0xFF], [0x80, 0, 0, 0]] {
      let error = thrownError(ProtocolError.self) {
        _ = try Framing.checkedPayloadLength(prefix: prefix)
      }
      #expect(error?.code == .negativeLength)
    }
  }

  @Test func prefixCheckNeedsFourBytes() {
    let error = thrownError(ProtocolError.self) {
      _ = try Framing.checkedPayloadLength(prefix: [0, 0, 1])
    }
    #expect(error?.code == .truncated)
  }

  @Test func decoderSplitsDripFedFrames() throws {
    let payloads: [[UInt8]] = [[], [1], patternBytes(count: 1000, seed: 9), [2, 3]]
    let stream = payloads.flatMap(Framing.frame)
    var decoder = FrameDecoder()
    var frames: [[UInt8]] = []
    for byte in stream {
      frames += try decoder.feed([byte])
    }
    #expect(frames == payloads)
    #expect(decoder.bufferedBytes == 0)
  }

  @Test func decoderSplitsRandomChunks() throws {
    var generator = SplitMix64(seed: 42)
    let payloads = (0..<200).map {
      patternBytes(count: Int.random(in: 0..<5000, using: &generator), seed: UInt8($0 % 256))
    }
    let stream = payloads.flatMap(Framing.frame)
    var decoder = FrameDecoder(frameBytesMax: 5000)
    var frames: [[UInt8]] = []
    var index = 0
    while index < stream.count {
      let end = min(stream.count, index + Int.random(in: 1...9000, using: &generator))
      frames += try decoder.feed(stream[index..<end])
      index = end
    }
    #expect(frames == payloads)
  }

  @Test func decoderRejectsOversizedBeforeBuffering() {
    var decoder = FrameDecoder(frameBytesMax: 100)
    // Only the prefix has arrived: the frame is rejected before any payload is held.
    let error = thrownError(ProtocolError.self) { _ = try decoder.feed([0, 0, 0, 101]) }
    #expect(error?.code == .frameTooLarge)
    // The stream has lost framing; the decoder stays failed.
    let again = thrownError(ProtocolError.self) { _ = try decoder.feed(Framing.frame([1])) }
    #expect(again?.code == .frameTooLarge)
  }

  @Test func decoderRejectsNegativeLengthAfterValidFrames() throws {
    var decoder = FrameDecoder()
    #expect(try decoder.feed(Framing.frame([1, 2])) == [[1, 2]])
    let error = thrownError(ProtocolError.self) { _ = try decoder.feed([0xFF, 0xFF, 0xFF, 0xFE]) }
    #expect(error?.code == .negativeLength)
  }

  @Test func pipelinedRequestsKeepTheirOrder() throws {
    var stream: [UInt8] = []
    for (index, (_, request)) in Fixtures.smallRequests.enumerated() {
      stream += request.encodeFrame(
        header: Fixtures.header(for: request, correlationId: Int32(index)))
    }
    var decoder = FrameDecoder()
    let frames = try decoder.feed(stream)
    #expect(frames.count == Fixtures.smallRequests.count)
    for (index, frame) in frames.enumerated() {
      let (header, request) = try Request.decode(payload: frame)
      #expect(header.correlationId == Int32(index))
      #expect(request == Fixtures.smallRequests[index].1)
    }
  }
}
