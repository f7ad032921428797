/// Builds one uncompressed batch from records in offset order, the way a producer does:
/// offsets are `baseOffset + index`, the base timestamp is the first record's and the
/// max timestamp the largest.
public struct RecordBatchBuilder: Sendable {
  public var baseOffset: Int64
  public var partitionLeaderEpoch: Int32
  public var producerId: Int64
  public var producerEpoch: Int16
  public var baseSequence: Int32
  public var isTransactional: Bool
  public private(set) var records: [Record] = []

  public init(
    baseOffset: Int64 = 0, partitionLeaderEpoch: Int32 = -1, producerId: Int64 = -1,
    producerEpoch: Int16 = -1, baseSequence: Int32 = -1, isTransactional: Bool = false
  ) {
    self.baseOffset = baseOffset
    self.partitionLeaderEpoch = partitionLeaderEpoch
    self.producerId = producerId
    self.producerEpoch = producerEpoch
    self.baseSequence = baseSequence
    self.isTransactional = isTransactional
  }

  public var isEmpty: Bool { records.isEmpty }

  public mutating func append(
    key: [UInt8]?, value: [UInt8]?, headers: [RecordHeader] = [], timestamp: Int64
  ) {
    records.append(
      Record(
        offset: baseOffset + Int64(records.count), timestamp: timestamp, key: key, value: value,
        headers: headers))
  }

  /// The batch, as a decoded value.
  public func batch() -> RecordBatch {
    precondition(!records.isEmpty, "a record batch needs at least one record")
    // Offsets were assigned against the base offset at append time; rebase if it changed.
    var rebased = records
    for index in rebased.indices { rebased[index].offset = baseOffset + Int64(index) }
    let header = RecordBatchHeader(
      baseOffset: baseOffset, partitionLeaderEpoch: partitionLeaderEpoch,
      attributes: isTransactional ? 0x10 : 0, lastOffsetDelta: Int32(records.count - 1),
      baseTimestamp: records[0].timestamp,
      maxTimestamp: records.lazy.map(\.timestamp).max() ?? records[0].timestamp,
      producerId: producerId, producerEpoch: producerEpoch, baseSequence: baseSequence,
      recordCount: Int32(records.count))
    return RecordBatch(header: header, records: rebased)
  }

  /// The encoded batch bytes.
  public func build() -> [UInt8] { batch().encoded() }
}
