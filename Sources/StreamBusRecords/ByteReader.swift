/// A bounds-checked big-endian cursor over borrowed bytes; every read throws on short input.
///
/// Holds an unsafe pointer, so it must not outlive the `withUnsafeBytes` scope it came from.
@usableFromInline
struct ByteReader {
  @usableFromInline let buffer: UnsafeRawBufferPointer
  @usableFromInline var position: Int

  @inlinable
  init(_ buffer: UnsafeRawBufferPointer, position: Int = 0) {
    self.buffer = buffer
    self.position = position
  }

  @inlinable
  var remaining: Int { buffer.count - position }

  @inlinable
  mutating func require(_ count: Int, _ what: StaticString) throws(RecordsError) {
    guard count >= 0, count <= remaining else {
      throw RecordsError(
        .truncated, "\(what): needs \(count) bytes at position \(position), \(remaining) left")
    }
  }

  @inlinable
  mutating func readInteger<T: FixedWidthInteger>(_: T.Type, _ what: StaticString)
    throws(RecordsError) -> T
  {
    try require(MemoryLayout<T>.size, what)
    let value = T(bigEndian: buffer.loadUnaligned(fromByteOffset: position, as: T.self))
    position += MemoryLayout<T>.size
    return value
  }

  /// Kafka's zigzag varint for 32-bit values: at most 5 bytes, and the 5th byte may only
  /// carry the 4 bits that are left, so a value can never silently overflow.
  @inlinable
  mutating func readVarint(_ what: StaticString) throws(RecordsError) -> Int32 {
    var raw: UInt32 = 0
    var shift: UInt32 = 0
    while true {
      guard position < buffer.count else {
        throw RecordsError(.truncated, "\(what): varint runs past the end at \(position)")
      }
      let byte = buffer[position]
      position += 1
      if shift == 28 && byte > 0x0F {
        throw RecordsError(.invalidVarint, "\(what): varint longer than 5 bytes or over 32 bits")
      }
      raw |= UInt32(byte & 0x7F) << shift
      if byte & 0x80 == 0 { break }
      shift += 7
    }
    return Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
  }

  /// Kafka's zigzag varlong: at most 10 bytes, the 10th carrying only the last bit.
  @inlinable
  mutating func readVarlong(_ what: StaticString) throws(RecordsError) -> Int64 {
    var raw: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      guard position < buffer.count else {
        throw RecordsError(.truncated, "\(what): varlong runs past the end at \(position)")
      }
      let byte = buffer[position]
      position += 1
      if shift == 63 && byte > 0x01 {
        throw RecordsError(
          .invalidVarint, "\(what): varlong longer than 10 bytes or over 64 bits")
      }
      raw |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { break }
      shift += 7
    }
    return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
  }

  /// Bytes prefixed by a varint length, where -1 means null.
  @inlinable
  mutating func readNullableBytes(_ what: StaticString) throws(RecordsError) -> [UInt8]? {
    let length = try readVarint(what)
    if length == -1 { return nil }
    guard length >= 0 else {
      throw RecordsError(.invalidLength, "\(what): negative length \(length)")
    }
    return try readBytes(Int(length), what)
  }

  @inlinable
  mutating func readBytes(_ count: Int, _ what: StaticString) throws(RecordsError) -> [UInt8] {
    try require(count, what)
    let start = position
    position += count
    return [UInt8](UnsafeRawBufferPointer(rebasing: buffer[start..<start + count]))
  }
}

/// Appends big-endian integers and zigzag varints to a growing byte array.
@usableFromInline
struct ByteWriter {
  @usableFromInline var bytes: [UInt8]

  @inlinable
  init(capacity: Int) {
    bytes = []
    bytes.reserveCapacity(capacity)
  }

  @inlinable
  mutating func writeInteger<T: FixedWidthInteger>(_ value: T) {
    withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
  }

  @inlinable
  mutating func writeVarint(_ value: Int32) {
    var raw = UInt32(bitPattern: (value << 1) ^ (value >> 31))
    while raw >= 0x80 {
      bytes.append(UInt8(truncatingIfNeeded: raw) | 0x80)
      raw >>= 7
    }
    bytes.append(UInt8(raw))
  }

  @inlinable
  mutating func writeVarlong(_ value: Int64) {
    var raw = UInt64(bitPattern: (value << 1) ^ (value >> 63))
    while raw >= 0x80 {
      bytes.append(UInt8(truncatingIfNeeded: raw) | 0x80)
      raw >>= 7
    }
    bytes.append(UInt8(raw))
  }

  @inlinable
  mutating func writeNullableBytes(_ value: [UInt8]?) {
    guard let value else {
      writeVarint(-1)
      return
    }
    writeVarint(Int32(value.count))
    bytes.append(contentsOf: value)
  }

  /// Overwrites bytes already written, e.g. a length or CRC known only at the end.
  @inlinable
  mutating func patchInteger<T: FixedWidthInteger>(_ value: T, at offset: Int) {
    precondition(offset >= 0 && offset + MemoryLayout<T>.size <= bytes.count)
    bytes.withUnsafeMutableBytes {
      $0.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
    }
  }
}

/// Encoded size of a zigzag varint, to compute record lengths before writing them.
@inlinable
func varintSize(_ value: Int32) -> Int {
  var raw = UInt32(bitPattern: (value << 1) ^ (value >> 31))
  var size = 1
  while raw >= 0x80 {
    raw >>= 7
    size += 1
  }
  return size
}

@inlinable
func varlongSize(_ value: Int64) -> Int {
  var raw = UInt64(bitPattern: (value << 1) ^ (value >> 63))
  var size = 1
  while raw >= 0x80 {
    raw >>= 7
    size += 1
  }
  return size
}
