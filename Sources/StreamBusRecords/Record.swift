/// One header of a record: a UTF-8 key (never null) and nullable bytes.
public struct RecordHeader: Equatable, Sendable {
  public var key: String
  public var value: [UInt8]?

  public init(key: String, value: [UInt8]?) {
    self.key = key
    self.value = value
  }
}

/// One decoded record, with its offset and timestamp made absolute
/// (`baseOffset + offsetDelta`, `baseTimestamp + timestampDelta`). For a batch with
/// log-append time (`RecordBatchHeader.usesLogAppendTime`) Kafka consumers use the batch's
/// `maxTimestamp` instead; `timestamp` keeps the encoded value so re-encoding is exact.
public struct Record: Equatable, Sendable {
  public var offset: Int64
  public var timestamp: Int64
  public var key: [UInt8]?
  public var value: [UInt8]?
  public var headers: [RecordHeader]
  /// The per-record attributes byte; unused by Kafka so far and always 0 from its clients.
  public var attributes: Int8

  public init(
    offset: Int64, timestamp: Int64, key: [UInt8]?, value: [UInt8]?,
    headers: [RecordHeader] = [], attributes: Int8 = 0
  ) {
    self.offset = offset
    self.timestamp = timestamp
    self.key = key
    self.value = value
    self.headers = headers
    self.attributes = attributes
  }
}
