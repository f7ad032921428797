/// Big-endian writer appending into one growable byte array.
///
/// Callers reserve the expected size up front so large record blobs are copied exactly once.
public struct WireWriter: Sendable {
  public private(set) var bytes: [UInt8]

  public init(reservingCapacity capacity: Int = 256) {
    bytes = []
    bytes.reserveCapacity(capacity)
  }

  public var count: Int { bytes.count }

  private mutating func writeBigEndian<T: FixedWidthInteger>(_ value: T) {
    let size = MemoryLayout<T>.size
    var shift = (size - 1) * 8
    while shift >= 0 {
      bytes.append(UInt8(truncatingIfNeeded: value >> shift))
      shift -= 8
    }
  }

  public mutating func writeInt8(_ value: Int8) { writeBigEndian(value) }
  public mutating func writeInt16(_ value: Int16) { writeBigEndian(value) }
  public mutating func writeInt32(_ value: Int32) { writeBigEndian(value) }
  public mutating func writeInt64(_ value: Int64) { writeBigEndian(value) }
  public mutating func writeBool(_ value: Bool) { bytes.append(value ? 1 : 0) }

  public mutating func writeNullableString(_ value: String?) {
    guard let value else {
      writeInt16(-1)
      return
    }
    let utf8 = value.utf8
    precondition(utf8.count <= Int(Int16.max), "string longer than \(Int16.max) UTF-8 bytes")
    writeInt16(Int16(utf8.count))
    bytes.append(contentsOf: utf8)
  }

  public mutating func writeString(_ value: String) { writeNullableString(value) }

  public mutating func writeNullableBytes(_ value: [UInt8]?) {
    guard let value else {
      writeInt32(-1)
      return
    }
    precondition(value.count <= Int(Int32.max), "byte field longer than \(Int32.max)")
    writeInt32(Int32(value.count))
    bytes.append(contentsOf: value)
  }

  public mutating func writeBytes(_ value: [UInt8]) { writeNullableBytes(value) }

  public mutating func writeNullableArray<Element>(
    _ elements: [Element]?, _ writeElement: (inout WireWriter, Element) -> Void
  ) {
    guard let elements else {
      writeInt32(-1)
      return
    }
    precondition(elements.count <= Int(Int32.max), "array longer than \(Int32.max)")
    writeInt32(Int32(elements.count))
    for element in elements {
      writeElement(&self, element)
    }
  }

  public mutating func writeArray<Element>(
    _ elements: [Element], _ writeElement: (inout WireWriter, Element) -> Void
  ) {
    writeNullableArray(elements, writeElement)
  }

  public mutating func writeInt32Array(_ values: [Int32]) {
    writeArray(values) { $0.writeInt32($1) }
  }

  /// Overwrites four bytes at `offset` with `value`, used to back-fill a frame length.
  public mutating func patchInt32(_ value: Int32, at offset: Int) {
    precondition(offset >= 0 && offset + 4 <= bytes.count, "patch outside the written bytes")
    for index in 0..<4 {
      bytes[offset + index] = UInt8(truncatingIfNeeded: value >> ((3 - index) * 8))
    }
  }
}
