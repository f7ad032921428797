import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import StreamBusTransport

@Suite struct FrameDecoderTests {
  private func frame(_ payload: [UInt8]) -> ByteBuffer {
    ByteBufferAllocator().frameBuffer(payload: payload)
  }

  @Test func verifierDripFeedsFrames() throws {
    let pairs: [(ByteBuffer, [ByteBuffer])] = [
      (frame([1, 2, 3]), [ByteBuffer(bytes: [1, 2, 3])]),
      (frame([]), [ByteBuffer()]),
      (
        frame(Array(repeating: 7, count: 300)), [ByteBuffer(bytes: Array(repeating: 7, count: 300))]
      ),
      (
        {
          var both = frame([9])
          var second = frame([8, 8])
          both.writeBuffer(&second)
          return both
        }(), [ByteBuffer(bytes: [9]), ByteBuffer(bytes: [8, 8])]
      ),
    ]
    try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) {
      FrameDecoder(frameBytesMax: 1024)
    }
  }

  @Test func frameAtExactlyTheMaximumIsAccepted() throws {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(frameBytesMax: 16)))
    try channel.writeInbound(frame(Array(repeating: 1, count: 16)))
    let decoded = try #require(try channel.readInbound(as: ByteBuffer.self))
    #expect(decoded.readableBytes == 16)
    #expect(try channel.finish().isClean)
  }

  @Test func oversizedLengthIsRejectedBeforeTheBodyArrives() throws {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(frameBytesMax: 16)))
    var prefixOnly = ByteBuffer()
    prefixOnly.writeInteger(UInt32(17))
    let error = #expect(throws: TransportError.self) {
      try channel.writeInbound(prefixOnly)
    }
    #expect(error?.code == .frameTooLarge)
    #expect(error?.message.contains("17") == true)
    _ = try? channel.finish()
  }

  @Test func hugeLengthIsRejectedWithTheDefaultMaximum() throws {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
    var prefixOnly = ByteBuffer()
    prefixOnly.writeInteger(UInt32(FrameDecoder.frameBytesMaxDefault + 1))
    let error = #expect(throws: TransportError.self) {
      try channel.writeInbound(prefixOnly)
    }
    #expect(error?.code == .frameTooLarge)
    _ = try? channel.finish()
  }

  @Test func negativeLengthIsRejected() throws {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
    var prefixOnly = ByteBuffer()
    prefixOnly.writeInteger(Int32(-5))
    let error = #expect(throws: TransportError.self) {
      try channel.writeInbound(prefixOnly)
    }
    #expect(error?.code == .negativeFrameLength)
    _ = try? channel.finish()
  }

  @Test func partialFrameWaitsForMoreBytes() throws {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
    var whole = frame([1, 2, 3, 4, 5])
    let slice = whole.readSlice(length: 6)
    let firstPart = try #require(slice)
    try channel.writeInbound(firstPart)
    #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
    try channel.writeInbound(whole)
    #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(bytes: [1, 2, 3, 4, 5]))
    #expect(try channel.finish().isClean)
  }

  @Test func truncatedFrameAtEndOfStreamIsAnError() throws {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
    var whole = frame([1, 2, 3, 4, 5])
    let slice = whole.readSlice(length: 7)
    let firstPart = try #require(slice)
    try channel.writeInbound(firstPart)
    let error = #expect(throws: TransportError.self) {
      _ = try channel.finish()
    }
    #expect(error?.code == .truncatedFrame)
  }
}
