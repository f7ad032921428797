/// Length-prefixed framing: a 4-byte big-endian length N, then N payload bytes.
public enum Framing {
  /// Size of the length prefix.
  public static let prefixBytes = 4
  /// Default bound on N (the payload, not counting the prefix).
  public static let frameBytesMaxDefault = 64 * 1024 * 1024

  /// Validates a length prefix before any payload is buffered.
  ///
  /// - Returns: the payload length N.
  /// - Throws: ``ProtocolError`` with `negativeLength` or `frameTooLarge`.
  public static func checkedPayloadLength(
    _ rawLength: Int32, frameBytesMax: Int = frameBytesMaxDefault
  ) throws -> Int {
    if rawLength < 0 {
      throw ProtocolError(
        .negativeLength, field: "frame.length", offset: 0,
        message: "frame length \(rawLength) is negative")
    }
    let length = Int(rawLength)
    if length > frameBytesMax {
      throw ProtocolError(
        .frameTooLarge, field: "frame.length", offset: 0,
        message: "frame length \(length) exceeds frameBytesMax \(frameBytesMax)")
    }
    return length
  }

  /// Same as ``checkedPayloadLength(_:frameBytesMax:)`` over the first four bytes of `prefix`.
  public static func checkedPayloadLength(
    prefix: some Collection<UInt8>, frameBytesMax: Int = frameBytesMaxDefault
  ) throws -> Int {
    guard prefix.count >= prefixBytes else {
      throw ProtocolError(
        .truncated, field: "frame.length", offset: 0,
        message: "length prefix needs \(prefixBytes) bytes, \(prefix.count) given")
    }
    var raw: UInt32 = 0
    for byte in prefix.prefix(prefixBytes) {
      raw = (raw << 8) | UInt32(byte)
    }
    return try checkedPayloadLength(Int32(bitPattern: raw), frameBytesMax: frameBytesMax)
  }

  /// Prefixes `payload` with its length. Copies the payload; encoders that build large
  /// messages write the prefix in place instead (the `encodeFrame` methods).
  public static func frame(_ payload: [UInt8]) -> [UInt8] {
    precondition(payload.count <= Int(Int32.max), "payload longer than \(Int32.max)")
    var writer = WireWriter(reservingCapacity: prefixBytes + payload.count)
    writer.writeInt32(Int32(payload.count))
    var bytes = writer.bytes
    bytes.append(contentsOf: payload)
    return bytes
  }
}

/// Incremental frame splitter over fed bytes, for tests and tools (the network layer does the
/// same job in its own decoder with ``Framing/checkedPayloadLength(_:frameBytesMax:)``).
///
/// The length prefix is checked as soon as its four bytes have arrived, so an oversized
/// frame is rejected before its payload accumulates. After an error the decoder stays failed:
/// the byte stream has lost its framing and cannot be resynchronised.
public struct FrameDecoder: Sendable {
  public let frameBytesMax: Int
  private var buffer: [UInt8] = []
  private var readIndex = 0
  private var pendingPayloadLength: Int?
  private var failure: ProtocolError?

  public init(frameBytesMax: Int = Framing.frameBytesMaxDefault) {
    precondition(frameBytesMax >= 0, "frameBytesMax must not be negative")
    self.frameBytesMax = frameBytesMax
  }

  /// Bytes received but not yet returned as part of a frame.
  public var bufferedBytes: Int { buffer.count - readIndex }

  /// Appends `bytes` and returns every frame payload completed by them, in order.
  public mutating func feed(_ bytes: some Sequence<UInt8>) throws -> [[UInt8]] {
    if let failure { throw failure }
    buffer.append(contentsOf: bytes)
    var frames: [[UInt8]] = []
    do {
      while let frame = try nextFrame() {
        frames.append(frame)
      }
    } catch let error as ProtocolError {
      failure = error
      throw error
    }
    compact()
    return frames
  }

  private mutating func nextFrame() throws -> [UInt8]? {
    if pendingPayloadLength == nil {
      guard bufferedBytes >= Framing.prefixBytes else { return nil }
      let prefix = buffer[readIndex..<(readIndex + Framing.prefixBytes)]
      pendingPayloadLength = try Framing.checkedPayloadLength(
        prefix: prefix, frameBytesMax: frameBytesMax)
      readIndex += Framing.prefixBytes
    }
    guard let length = pendingPayloadLength, bufferedBytes >= length else { return nil }
    let payload = Array(buffer[readIndex..<(readIndex + length)])
    readIndex += length
    pendingPayloadLength = nil
    return payload
  }

  /// Drops consumed bytes once they dominate the buffer, keeping appends amortised O(1).
  private mutating func compact() {
    if readIndex == buffer.count {
      buffer.removeAll(keepingCapacity: true)
      readIndex = 0
    } else if readIndex > 4096 && readIndex * 2 > buffer.count {
      buffer.removeFirst(readIndex)
      readIndex = 0
    }
  }
}
