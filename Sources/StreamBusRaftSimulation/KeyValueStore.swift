import StreamBusRaft

/// A write carried in a normal log entry: set `key` to `value`, tagged with the client
/// operation that proposed it so the proposer can tell its entry from a replacement.
public struct KeyValueCommand: Sendable, Hashable {
  public var operationID: UInt64
  public var key: UInt8
  public var value: UInt64

  public init(operationID: UInt64, key: UInt8, value: UInt64) {
    self.operationID = operationID
    self.key = key
    self.value = value
  }

  public func encoded() -> [UInt8] {
    var encoder = RaftEncoder()
    encoder.write(operationID)
    encoder.write(key)
    encoder.write(value)
    return encoder.bytes
  }

  /// Nil for an empty payload (a leader's no-op); throws on malformed bytes.
  public static func decode(_ bytes: [UInt8]) throws -> KeyValueCommand? {
    if bytes.isEmpty { return nil }
    var decoder = RaftDecoder(bytes)
    let command = KeyValueCommand(
      operationID: try decoder.readUInt64("operation id"), key: try decoder.readUInt8("key"),
      value: try decoder.readUInt64("value"))
    try decoder.expectEnd("key-value command")
    return command
  }
}

/// The replicated state machine of the simulation: a map of small keys to values.
public struct KeyValueStore: Sendable, Hashable {
  public private(set) var values: [UInt8: UInt64] = [:]

  public init() {}

  public mutating func apply(_ command: KeyValueCommand) {
    values[command.key] = command.value
  }

  public func snapshotData() -> [UInt8] {
    var encoder = RaftEncoder()
    let keys = values.keys.sorted()
    encoder.write(UInt32(keys.count))
    for key in keys {
      encoder.write(key)
      encoder.write(values[key] ?? 0)
    }
    return encoder.bytes
  }

  public init(snapshotData: [UInt8]) throws {
    if snapshotData.isEmpty { return }
    var decoder = RaftDecoder(snapshotData)
    let count = Int(try decoder.readUInt32("key count"))
    guard count <= decoder.remainingByteCount / 9 else {
      throw RaftDecodeError("key count \(count) exceeds snapshot", offset: 0)
    }
    for _ in 0..<count {
      let key = try decoder.readUInt8("key")
      values[key] = try decoder.readUInt64("value")
    }
    try decoder.expectEnd("key-value snapshot")
  }
}
