import NIOCore

/// Splits a byte stream into frames: a 4-byte big-endian length N, then N payload bytes.
///
/// The length is checked before any of the body is buffered, so a hostile or corrupt prefix
/// can never make the process allocate `frameBytesMax`-plus bytes.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
  public typealias InboundOut = ByteBuffer

  /// Bytes of the length prefix in front of every frame.
  public static let lengthPrefixBytes = 4
  /// Default upper bound on one frame's payload: 64 MiB.
  public static let frameBytesMaxDefault = 64 * 1024 * 1024

  public let frameBytesMax: Int

  public init(frameBytesMax: Int = FrameDecoder.frameBytesMaxDefault) {
    precondition(
      frameBytesMax >= 0 && frameBytesMax <= Int(Int32.max), "frameBytesMax out of range")
    self.frameBytesMax = frameBytesMax
  }

  public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
    guard let length = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else {
      return nil
    }
    guard length >= 0 else {
      throw TransportError(
        .negativeFrameLength, "frame length prefix \(length) is negative")
    }
    guard Int(length) <= frameBytesMax else {
      throw TransportError(
        .frameTooLarge,
        "frame length prefix \(length) exceeds frameBytesMax \(frameBytesMax)")
    }
    guard buffer.readableBytes >= Self.lengthPrefixBytes + Int(length) else {
      return nil
    }
    buffer.moveReaderIndex(forwardBy: Self.lengthPrefixBytes)
    return buffer.readSlice(length: Int(length))
  }

  public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
    if let frame = try decode(buffer: &buffer) {
      return frame
    }
    if seenEOF && buffer.readableBytes > 0 {
      let pending = buffer.readableBytes
      buffer.moveReaderIndex(to: buffer.writerIndex)
      throw TransportError(
        .truncatedFrame,
        "connection ended inside a frame (\(pending) bytes of an incomplete frame discarded)")
    }
    return nil
  }
}

extension ByteBuffer {
  /// Appends one frame (length prefix and payload) in a single write.
  @inlinable
  mutating func writeFrame(payload: [UInt8]) {
    precondition(payload.count <= Int32.max, "frame payload of \(payload.count) bytes")
    writeInteger(UInt32(truncatingIfNeeded: payload.count))
    writeBytes(payload)
  }
}

extension ByteBufferAllocator {
  /// A buffer holding exactly one encoded frame.
  func frameBuffer(payload: [UInt8]) -> ByteBuffer {
    var buffer = buffer(capacity: FrameDecoder.lengthPrefixBytes + payload.count)
    buffer.writeFrame(payload: payload)
    return buffer
  }
}

extension ByteBuffer {
  /// The readable bytes as a new array: one memcpy, also fast in debug builds, where
  /// `Array(readableBytesView)` copies byte by byte.
  func copyReadableBytes() -> [UInt8] {
    withUnsafeReadableBytes { source in
      [UInt8](unsafeUninitializedCapacity: source.count) { destination, initializedCount in
        UnsafeMutableRawBufferPointer(destination).copyMemory(from: source)
        initializedCount = source.count
      }
    }
  }
}

extension TimeAmount {
  /// Milliseconds from configuration, capped so that a "forever" value such as `Int64.max`
  /// does not overflow the nanosecond count.
  static func clampedMilliseconds(_ milliseconds: Int64) -> TimeAmount {
    .milliseconds(min(max(milliseconds, 0), Int64.max / 1_000_000 - 1))
  }
}
