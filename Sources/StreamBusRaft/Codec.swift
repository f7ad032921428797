// Binary encoding of the Raft value types, used by SQLite storage (blobs) and the transport
// (message frames). Big-endian fixed-width integers, u32 length prefixes. Every decoder checks
// lengths against the remaining bytes before reading or allocating, so corrupt or hostile
// input yields a RaftDecodeError, never a trap.

/// Input bytes that do not hold a valid encoding.
public struct RaftDecodeError: Error, Sendable, Hashable, CustomStringConvertible {
  public var message: String
  /// Byte offset in the input where decoding failed.
  public var offset: Int

  public init(_ message: String, offset: Int) {
    self.message = message
    self.offset = offset
  }

  public var description: String { "Raft decode error at byte \(offset): \(message)" }
}

/// Appends big-endian values to a byte array.
public struct RaftEncoder: Sendable {
  public private(set) var bytes: [UInt8] = []

  public init() {}

  public mutating func write(_ value: UInt8) { bytes.append(value) }

  public mutating func write(_ value: UInt32) {
    withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
  }

  public mutating func write(_ value: UInt64) {
    withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
  }

  public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }

  /// u32 length followed by the bytes.
  public mutating func writeBytes(_ value: [UInt8]) {
    precondition(value.count <= UInt32.max, "byte string too long to encode")
    write(UInt32(value.count))
    bytes.append(contentsOf: value)
  }

  /// u32 count followed by u64 values.
  public mutating func writeIDs(_ values: [UInt64]) {
    precondition(values.count <= UInt32.max, "list too long to encode")
    write(UInt32(values.count))
    for value in values { write(value) }
  }
}

/// Reads big-endian values from a byte array, checking every length first.
public struct RaftDecoder: Sendable {
  private let bytes: [UInt8]
  public private(set) var offset: Int

  public init(_ bytes: [UInt8]) {
    self.bytes = bytes
    self.offset = 0
  }

  public var remainingByteCount: Int { bytes.count - offset }
  public var isAtEnd: Bool { offset == bytes.count }

  // `what` names the field for the error message; it is only built when decoding fails.
  private mutating func require(_ count: Int, _ what: () -> String) throws {
    guard count >= 0, remainingByteCount >= count else {
      throw RaftDecodeError(
        "\(what()) needs \(count) bytes, only \(remainingByteCount) left", offset: offset)
    }
  }

  public mutating func readUInt8(_ what: @autoclosure () -> String = "u8") throws -> UInt8 {
    try require(1, what)
    defer { offset += 1 }
    return bytes[offset]
  }

  public mutating func readUInt32(_ what: @autoclosure () -> String = "u32") throws -> UInt32 {
    try require(4, what)
    let value = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    offset += 4
    return UInt32(bigEndian: value)
  }

  public mutating func readUInt64(_ what: @autoclosure () -> String = "u64") throws -> UInt64 {
    try require(8, what)
    let value = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
    offset += 8
    return UInt64(bigEndian: value)
  }

  public mutating func readBool(_ what: @autoclosure () -> String = "bool") throws -> Bool {
    let start = offset
    switch try readUInt8(what()) {
    case 0: return false
    case 1: return true
    case let other: throw RaftDecodeError("\(what()): invalid boolean \(other)", offset: start)
    }
  }

  public mutating func readBytes(_ what: @autoclosure () -> String = "bytes") throws -> [UInt8] {
    let count = Int(try readUInt32("\(what()) length"))
    try require(count, what)
    defer { offset += count }
    return Array(bytes[offset..<offset + count])
  }

  public mutating func readIDs(_ what: @autoclosure () -> String = "ids") throws -> [UInt64] {
    let count = Int(try readUInt32("\(what()) count"))
    // Check the whole list fits before allocating, so a forged count cannot exhaust memory.
    try require(count.multipliedReportingOverflow(by: 8).overflow ? -1 : count * 8, what)
    var values: [UInt64] = []
    values.reserveCapacity(count)
    for _ in 0..<count { values.append(try readUInt64(what())) }
    return values
  }

  /// Fails unless every byte was consumed: trailing garbage means a framing bug.
  public func expectEnd(_ what: String) throws {
    guard isAtEnd else {
      throw RaftDecodeError("\(remainingByteCount) trailing bytes after \(what)", offset: offset)
    }
  }
}

/// A value with a self-delimiting binary encoding.
public protocol RaftEncodable {
  func encode(into encoder: inout RaftEncoder)
  init(decoding decoder: inout RaftDecoder) throws
}

extension RaftEncodable {
  /// The encoding as a standalone byte array.
  public func encoded() -> [UInt8] {
    var encoder = RaftEncoder()
    encode(into: &encoder)
    return encoder.bytes
  }

  /// Decodes a standalone byte array, rejecting trailing bytes.
  public init(decoding bytes: [UInt8]) throws {
    var decoder = RaftDecoder(bytes)
    try self.init(decoding: &decoder)
    try decoder.expectEnd("\(Self.self)")
  }
}

extension Entry: RaftEncodable {
  public func encode(into encoder: inout RaftEncoder) {
    encoder.write(term)
    encoder.write(index)
    encoder.write(kind.rawValue)
    encoder.writeBytes(data)
  }

  public init(decoding decoder: inout RaftDecoder) throws {
    let term = try decoder.readUInt64("entry term")
    let indexOffset = decoder.offset
    let index = try decoder.readUInt64("entry index")
    guard index > 0 else { throw RaftDecodeError("entry index 0", offset: indexOffset) }
    let kindOffset = decoder.offset
    let rawKind = try decoder.readUInt8("entry kind")
    guard let kind = EntryKind(rawValue: rawKind) else {
      throw RaftDecodeError("unknown entry kind \(rawKind)", offset: kindOffset)
    }
    let data = try decoder.readBytes("entry data")
    self.init(term: term, index: index, kind: kind, data: data)
  }
}

extension HardState: RaftEncodable {
  public func encode(into encoder: inout RaftEncoder) {
    encoder.write(term)
    encoder.write(vote ?? 0)
    encoder.write(commit)
  }

  public init(decoding decoder: inout RaftDecoder) throws {
    let term = try decoder.readUInt64("hard state term")
    let vote = try decoder.readUInt64("hard state vote")
    let commit = try decoder.readUInt64("hard state commit")
    self.init(term: term, vote: vote == 0 ? nil : vote, commit: commit)
  }
}

extension ConfState: RaftEncodable {
  public func encode(into encoder: inout RaftEncoder) {
    encoder.writeIDs(voters)
    encoder.writeIDs(learners)
  }

  public init(decoding decoder: inout RaftDecoder) throws {
    let start = decoder.offset
    let voters = try decoder.readIDs("voters")
    let learners = try decoder.readIDs("learners")
    let voterSet = Set(voters)
    let learnerSet = Set(learners)
    guard voterSet.count == voters.count, learnerSet.count == learners.count,
      voterSet.isDisjoint(with: learnerSet), !voterSet.contains(0), !learnerSet.contains(0)
    else {
      throw RaftDecodeError(
        "invalid membership voters \(voters) learners \(learners)", offset: start)
    }
    self.init(voters: voters, learners: learners)
  }
}

extension ConfChange: RaftEncodable {
  public func encode(into encoder: inout RaftEncoder) {
    encoder.write(kind.rawValue)
    encoder.write(node)
    // Omitted when empty, so changes without context keep the encoding they always had.
    if !context.isEmpty { encoder.writeBytes(context) }
  }

  public init(decoding decoder: inout RaftDecoder) throws {
    let start = decoder.offset
    let rawKind = try decoder.readUInt8("conf change kind")
    guard let kind = Kind(rawValue: rawKind) else {
      throw RaftDecodeError("unknown conf change kind \(rawKind)", offset: start)
    }
    let node = try decoder.readUInt64("conf change node")
    guard node != 0 else { throw RaftDecodeError("conf change for node 0", offset: start + 1) }
    let context = decoder.isAtEnd ? [] : try decoder.readBytes("conf change context")
    self.init(kind: kind, node: node, context: context)
  }
}

extension SnapshotMetadata: RaftEncodable {
  public func encode(into encoder: inout RaftEncoder) {
    encoder.write(index)
    encoder.write(term)
    confState.encode(into: &encoder)
  }

  public init(decoding decoder: inout RaftDecoder) throws {
    let index = try decoder.readUInt64("snapshot index")
    let term = try decoder.readUInt64("snapshot term")
    let confState = try ConfState(decoding: &decoder)
    self.init(index: index, term: term, confState: confState)
  }
}

extension Snapshot: RaftEncodable {
  public func encode(into encoder: inout RaftEncoder) {
    metadata.encode(into: &encoder)
    encoder.writeBytes(data)
  }

  public init(decoding decoder: inout RaftDecoder) throws {
    let metadata = try SnapshotMetadata(decoding: &decoder)
    let data = try decoder.readBytes("snapshot data")
    self.init(metadata: metadata, data: data)
  }
}
