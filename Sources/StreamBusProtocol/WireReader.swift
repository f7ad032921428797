/// Bounds-checked big-endian reader over a byte array.
///
/// Every read checks the remaining length first and throws ``ProtocolError`` on short or
/// malformed input; array counts are checked against the remaining bytes before anything is
/// allocated, so a hostile count cannot make the reader reserve gigabytes.
public struct WireReader: Sendable {
  public let bytes: [UInt8]
  public private(set) var offset: Int

  public init(_ bytes: [UInt8], offset: Int = 0) {
    precondition(offset >= 0 && offset <= bytes.count, "reader offset outside the bytes")
    self.bytes = bytes
    self.offset = offset
  }

  public var remaining: Int { bytes.count - offset }
  public var isAtEnd: Bool { offset == bytes.count }

  private func require(_ count: Int, _ field: StaticString) throws {
    if count > remaining {
      throw ProtocolError(
        .truncated, field: "\(field)", offset: offset,
        message: "needs \(count) bytes, \(remaining) left")
    }
  }

  private mutating func readBigEndian<T: FixedWidthInteger>(_: T.Type, _ field: StaticString) throws
    -> T
  {
    let size = MemoryLayout<T>.size
    try require(size, field)
    var value: T = 0
    for index in offset..<(offset + size) {
      value = (value << 8) | T(truncatingIfNeeded: bytes[index])
    }
    offset += size
    return value
  }

  public mutating func readInt8(_ field: StaticString) throws -> Int8 {
    try readBigEndian(Int8.self, field)
  }

  public mutating func readInt16(_ field: StaticString) throws -> Int16 {
    try readBigEndian(Int16.self, field)
  }

  public mutating func readInt32(_ field: StaticString) throws -> Int32 {
    try readBigEndian(Int32.self, field)
  }

  public mutating func readInt64(_ field: StaticString) throws -> Int64 {
    try readBigEndian(Int64.self, field)
  }

  /// One byte, 0 or 1; anything else is rejected so that encodings stay canonical.
  public mutating func readBool(_ field: StaticString) throws -> Bool {
    let start = offset
    let byte = try readBigEndian(UInt8.self, field)
    switch byte {
    case 0: return false
    case 1: return true
    default:
      throw ProtocolError(
        .invalidValue, field: "\(field)", offset: start, message: "boolean byte is \(byte)")
    }
  }

  /// i16 length then UTF-8; -1 is null.
  public mutating func readNullableString(_ field: StaticString) throws -> String? {
    let start = offset
    let length = try readInt16(field)
    if length == -1 { return nil }
    if length < 0 {
      throw ProtocolError(
        .invalidLength, field: "\(field)", offset: start, message: "string length \(length)")
    }
    let count = Int(length)
    try require(count, field)
    let slice = bytes[offset..<(offset + count)]
    guard let string = String(validating: slice, as: UTF8.self) else {
      throw ProtocolError(
        .invalidUTF8, field: "\(field)", offset: offset, message: "string of \(count) bytes")
    }
    offset += count
    return string
  }

  public mutating func readString(_ field: StaticString) throws -> String {
    let start = offset
    guard let string = try readNullableString(field) else {
      throw ProtocolError(
        .invalidLength, field: "\(field)", offset: start, message: "null where a string is required"
      )
    }
    return string
  }

  /// i32 length then raw bytes; -1 is null. The bytes are copied once.
  public mutating func readNullableBytes(_ field: StaticString) throws -> [UInt8]? {
    let start = offset
    let length = try readInt32(field)
    if length == -1 { return nil }
    if length < 0 {
      throw ProtocolError(
        .invalidLength, field: "\(field)", offset: start, message: "bytes length \(length)")
    }
    let count = Int(length)
    try require(count, field)
    let value = Array(bytes[offset..<(offset + count)])
    offset += count
    return value
  }

  public mutating func readBytes(_ field: StaticString) throws -> [UInt8] {
    let start = offset
    guard let value = try readNullableBytes(field) else {
      throw ProtocolError(
        .invalidLength, field: "\(field)", offset: start, message: "null where bytes are required")
    }
    return value
  }

  /// i32 count then elements; -1 is null.
  ///
  /// `elementBytesMin` is the smallest possible encoding of one element; the count is
  /// rejected unless `count * elementBytesMin` fits in what is left.
  public mutating func readNullableArray<Element>(
    _ field: StaticString, elementBytesMin: Int,
    _ readElement: (inout WireReader) throws -> Element
  ) throws -> [Element]? {
    precondition(elementBytesMin >= 1, "every element occupies at least one byte")
    let start = offset
    let count = try readInt32(field)
    if count == -1 { return nil }
    if count < 0 {
      throw ProtocolError(
        .negativeCount, field: "\(field)", offset: start, message: "array count \(count)")
    }
    let countLimit = remaining / elementBytesMin
    if Int(count) > countLimit {
      throw ProtocolError(
        .countTooLarge, field: "\(field)", offset: start,
        message:
          "array count \(count) needs at least \(Int(count) * elementBytesMin) bytes, "
          + "\(remaining) left")
    }
    var elements: [Element] = []
    elements.reserveCapacity(Int(count))
    for _ in 0..<Int(count) {
      elements.append(try readElement(&self))
    }
    return elements
  }

  public mutating func readArray<Element>(
    _ field: StaticString, elementBytesMin: Int,
    _ readElement: (inout WireReader) throws -> Element
  ) throws -> [Element] {
    let start = offset
    guard let elements = try readNullableArray(field, elementBytesMin: elementBytesMin, readElement)
    else {
      throw ProtocolError(
        .negativeCount, field: "\(field)", offset: start, message: "null where an array is required"
      )
    }
    return elements
  }

  public mutating func readInt32Array(_ field: StaticString) throws -> [Int32] {
    try readArray(field, elementBytesMin: 4) { try $0.readInt32(field) }
  }

  /// Throws ``ProtocolError/Code/trailingBytes`` unless everything was consumed.
  public func expectEnd(_ field: String) throws {
    if remaining != 0 {
      throw ProtocolError(
        .trailingBytes, field: "\(field)", offset: offset,
        message: "\(remaining) bytes after the end of the message")
    }
  }
}
