/// Compression codec in the low 3 bits of a batch's attributes.
public enum CompressionCodec: Int16, Sendable, CustomStringConvertible {
  case none = 0
  case gzip = 1
  case snappy = 2
  case lz4 = 3
  case zstd = 4

  public var description: String {
    switch self {
    case .none: "none"
    case .gzip: "gzip"
    case .snappy: "snappy"
    case .lz4: "lz4"
    case .zstd: "zstd"
    }
  }
}

/// The fixed 61-byte prefix of a Kafka v2 record batch (all integers big-endian):
///
/// ```
///  0 baseOffset i64          8 batchLength i32        12 partitionLeaderEpoch i32
/// 16 magic i8               17 crc u32                21 attributes i16
/// 23 lastOffsetDelta i32    27 baseTimestamp i64      35 maxTimestamp i64
/// 43 producerId i64         51 producerEpoch i16      53 baseSequence i32
/// 57 recordCount i32        61 records...
/// ```
///
/// The CRC covers bytes 21 to the end, so the broker can set `baseOffset` and
/// `partitionLeaderEpoch` in place without recomputing it.
public struct RecordBatchHeader: Equatable, Sendable {
  /// Size of the fixed header.
  public static let byteCount = 61
  /// Bytes before and including `batchLength`, which `batchLength` does not count.
  public static let lengthPrefixByteCount = 12
  /// Smallest legal `batchLength`: a header with no records.
  public static let batchLengthMin = Int32(byteCount - lengthPrefixByteCount)
  /// Where the CRC-covered part begins.
  public static let crcCoveredStart = 21
  /// The only supported magic value.
  public static let currentMagic: Int8 = 2

  static let baseOffsetPosition = 0
  static let batchLengthPosition = 8
  static let partitionLeaderEpochPosition = 12
  static let magicPosition = 16
  static let crcPosition = 17

  public var baseOffset: Int64
  public var batchLength: Int32
  public var partitionLeaderEpoch: Int32
  public var magic: Int8
  public var crc: UInt32
  public var attributes: Int16
  public var lastOffsetDelta: Int32
  public var baseTimestamp: Int64
  public var maxTimestamp: Int64
  public var producerId: Int64
  public var producerEpoch: Int16
  public var baseSequence: Int32
  public var recordCount: Int32

  public init(
    baseOffset: Int64 = 0, batchLength: Int32 = batchLengthMin, partitionLeaderEpoch: Int32 = -1,
    magic: Int8 = currentMagic, crc: UInt32 = 0, attributes: Int16 = 0, lastOffsetDelta: Int32 = -1,
    baseTimestamp: Int64 = -1, maxTimestamp: Int64 = -1, producerId: Int64 = -1,
    producerEpoch: Int16 = -1, baseSequence: Int32 = -1, recordCount: Int32 = 0
  ) {
    self.baseOffset = baseOffset
    self.batchLength = batchLength
    self.partitionLeaderEpoch = partitionLeaderEpoch
    self.magic = magic
    self.crc = crc
    self.attributes = attributes
    self.lastOffsetDelta = lastOffsetDelta
    self.baseTimestamp = baseTimestamp
    self.maxTimestamp = maxTimestamp
    self.producerId = producerId
    self.producerEpoch = producerEpoch
    self.baseSequence = baseSequence
    self.recordCount = recordCount
  }

  /// Reads the 61 header bytes at the start of `bytes`; checks only that they are present.
  /// Use `RecordBatch.validate` to check the length, magic and CRC.
  public init(parsing bytes: UnsafeRawBufferPointer) throws(RecordsError) {
    guard bytes.count >= Self.byteCount else {
      throw RecordsError(
        .truncated, "record batch header needs \(Self.byteCount) bytes, got \(bytes.count)")
    }
    func load<T: FixedWidthInteger>(_ position: Int, _: T.Type) -> T {
      T(bigEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
    }
    baseOffset = load(0, Int64.self)
    batchLength = load(8, Int32.self)
    partitionLeaderEpoch = load(12, Int32.self)
    magic = load(16, Int8.self)
    crc = load(17, UInt32.self)
    attributes = load(21, Int16.self)
    lastOffsetDelta = load(23, Int32.self)
    baseTimestamp = load(27, Int64.self)
    maxTimestamp = load(35, Int64.self)
    producerId = load(43, Int64.self)
    producerEpoch = load(51, Int16.self)
    baseSequence = load(53, Int32.self)
    recordCount = load(57, Int32.self)
  }

  /// Reads the header at the start of `bytes`.
  public init(parsing bytes: [UInt8]) throws(RecordsError) {
    self = try bytes.withUnsafeBytes { buffer in
      Result { () throws(RecordsError) in try RecordBatchHeader(parsing: buffer) }
    }.get()
  }

  /// Whole batch size in bytes, `batchLength` plus the 12 bytes before it.
  public var totalByteCount: Int { Int(batchLength) + Self.lengthPrefixByteCount }

  /// Offset of the batch's last record.
  public var lastOffset: Int64 { baseOffset &+ Int64(lastOffsetDelta) }

  /// Offset just past the batch: where the next batch starts.
  public var nextOffset: Int64 { lastOffset &+ 1 }

  /// Raw codec bits; values 5...7 are not assigned by Kafka.
  public var compressionBits: Int16 { attributes & 0x07 }

  /// The codec, or nil for an unassigned value.
  public var compression: CompressionCodec? { CompressionCodec(rawValue: compressionBits) }

  /// Bit 3: timestamps are the broker's append time rather than the producer's create time.
  public var usesLogAppendTime: Bool { attributes & 0x08 != 0 }

  /// Bit 4: the batch belongs to a transaction.
  public var isTransactional: Bool { attributes & 0x10 != 0 }

  /// Bit 5: the batch holds control records (transaction markers).
  public var isControl: Bool { attributes & 0x20 != 0 }

  /// Writes the header into the first 61 bytes of `bytes`.
  public func write(to bytes: UnsafeMutableRawBufferPointer) {
    precondition(bytes.count >= Self.byteCount, "header needs \(Self.byteCount) bytes")
    func store<T: FixedWidthInteger>(_ value: T, _ position: Int) {
      bytes.storeBytes(of: value.bigEndian, toByteOffset: position, as: T.self)
    }
    store(baseOffset, 0)
    store(batchLength, 8)
    store(partitionLeaderEpoch, 12)
    store(magic, 16)
    store(crc, 17)
    store(attributes, 21)
    store(lastOffsetDelta, 23)
    store(baseTimestamp, 27)
    store(maxTimestamp, 35)
    store(producerId, 43)
    store(producerEpoch, 51)
    store(baseSequence, 53)
    store(recordCount, 57)
  }

  /// Sets the base offset of the batch starting at `bytes`; the CRC stays valid.
  public static func setBaseOffset(_ offset: Int64, in bytes: UnsafeMutableRawBufferPointer) {
    precondition(bytes.count >= byteCount, "not a record batch header")
    bytes.storeBytes(of: offset.bigEndian, toByteOffset: baseOffsetPosition, as: Int64.self)
  }

  /// Sets the partition leader epoch of the batch starting at `bytes`; the CRC stays valid.
  public static func setPartitionLeaderEpoch(
    _ epoch: Int32, in bytes: UnsafeMutableRawBufferPointer
  ) {
    precondition(bytes.count >= byteCount, "not a record batch header")
    bytes.storeBytes(
      of: epoch.bigEndian, toByteOffset: partitionLeaderEpochPosition, as: Int32.self)
  }
}
