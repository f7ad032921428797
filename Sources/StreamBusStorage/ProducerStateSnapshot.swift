import StreamBusRecords

/// The checkpoint format of a `ProducerStateTable` (all integers big-endian):
///
/// ```
/// magic "SBPS" (4 bytes)   version u16 (1)   endOffset i64   producerCount u32
/// per producer, ascending producer id:
///   producerId i64   producerEpoch i16   batchCount u8 (1...5)
///   per batch, oldest first (32 bytes):
///     firstSequence i32  lastSequence i32  firstOffset i64  lastOffset i64  timestampMs i64
/// crc u32: CRC-32C of every byte before it
/// ```
///
/// The expiry setting is configuration, not state, so it is not stored.
extension ProducerStateTable {
  static let snapshotMagic: [UInt8] = Array("SBPS".utf8)
  /// The only snapshot version this code writes and reads.
  public static let snapshotVersion: UInt16 = 1
  static let snapshotHeaderByteCount = 4 + 2 + 8 + 4
  static let snapshotProducerByteCount = 8 + 2 + 1
  static let snapshotBatchByteCount = 4 + 4 + 8 + 8 + 8
  static let snapshotChecksumByteCount = 4

  /// The table as snapshot bytes, for the owner to write with `AtomicFile`.
  public func snapshot() -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(
      Self.snapshotHeaderByteCount + Self.snapshotChecksumByteCount + producers.count
        * (Self.snapshotProducerByteCount
          + Self.batchesPerProducerMax * Self.snapshotBatchByteCount))
    func append<T: FixedWidthInteger>(_ value: T) {
      withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
    bytes.append(contentsOf: Self.snapshotMagic)
    append(Self.snapshotVersion)
    append(endOffset)
    append(UInt32(producers.count))
    for producerId in producers.keys.sorted() {
      guard let entry = producers[producerId] else { continue }
      append(entry.producerId)
      append(entry.producerEpoch)
      append(UInt8(entry.batches.count))
      for batch in entry.batches {
        append(batch.firstSequence)
        append(batch.lastSequence)
        append(batch.firstOffset)
        append(batch.lastOffset)
        append(batch.timestampMs)
      }
    }
    append(CRC32C.checksum(bytes))
    return bytes
  }

  /// Restores a table from `snapshot()` bytes read from disk. Every length is checked before
  /// it is used; damaged, cut short or inconsistent bytes throw `corruptLog`.
  public init(
    snapshot bytes: [UInt8], producerIdExpirationMs: Int64 = producerIdExpirationMsDefault
  ) throws(StorageError) {
    func corrupt(_ message: String) -> StorageError {
      StorageError(.corruptLog, "producer state snapshot: \(message)")
    }
    let minimum = Self.snapshotHeaderByteCount + Self.snapshotChecksumByteCount
    guard bytes.count >= minimum else {
      throw corrupt("\(bytes.count) bytes, shorter than the \(minimum)-byte minimum")
    }
    guard Array(bytes[0..<4]) == Self.snapshotMagic else { throw corrupt("bad magic") }
    var reader = SnapshotReader(bytes: bytes, end: bytes.count - Self.snapshotChecksumByteCount)
    reader.position = 4
    let version = try reader.read(UInt16.self, "version")
    guard version == Self.snapshotVersion else {
      throw corrupt("unsupported version \(version) (this broker reads \(Self.snapshotVersion))")
    }
    var checksumReader = SnapshotReader(bytes: bytes, end: bytes.count)
    checksumReader.position = reader.end
    let storedChecksum = try checksumReader.read(UInt32.self, "checksum")
    let computedChecksum = bytes.withUnsafeBytes {
      CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<reader.end]))
    }
    guard storedChecksum == computedChecksum else {
      throw corrupt(
        "checksum mismatch (stored \(storedChecksum), computed \(computedChecksum)): "
          + "damaged or cut short")
    }

    let endOffset = try reader.read(Int64.self, "end offset")
    guard endOffset >= 0 else { throw corrupt("negative end offset \(endOffset)") }
    let producerCount = Int(try reader.read(UInt32.self, "producer count"))
    let entryByteCountMin = Self.snapshotProducerByteCount + Self.snapshotBatchByteCount
    guard producerCount <= reader.remaining / entryByteCountMin else {
      throw corrupt(
        "\(producerCount) producers cannot fit in the \(reader.remaining) bytes left")
    }
    var producers: [Int64: ProducerStateEntry] = [:]
    producers.reserveCapacity(producerCount)
    var previousProducerId: Int64 = -1
    for _ in 0..<producerCount {
      let producerId = try reader.read(Int64.self, "producer id")
      guard producerId > previousProducerId else {
        throw corrupt("producer id \(producerId) after \(previousProducerId): not ascending")
      }
      previousProducerId = producerId
      let producerEpoch = try reader.read(Int16.self, "producer epoch")
      guard producerEpoch >= 0 else {
        throw corrupt("producer \(producerId) has negative epoch \(producerEpoch)")
      }
      let batchCount = Int(try reader.read(UInt8.self, "batch count"))
      guard batchCount >= 1 && batchCount <= Self.batchesPerProducerMax else {
        throw corrupt(
          "producer \(producerId) has \(batchCount) batches, not 1...\(Self.batchesPerProducerMax)")
      }
      var batches: [ProducerBatchMetadata] = []
      batches.reserveCapacity(batchCount)
      var previousLastOffset: Int64 = -1
      for _ in 0..<batchCount {
        let batch = ProducerBatchMetadata(
          firstSequence: try reader.read(Int32.self, "first sequence"),
          lastSequence: try reader.read(Int32.self, "last sequence"),
          firstOffset: try reader.read(Int64.self, "first offset"),
          lastOffset: try reader.read(Int64.self, "last offset"),
          timestampMs: try reader.read(Int64.self, "timestamp"))
        guard batch.firstSequence >= 0 && batch.lastSequence >= 0 else {
          throw corrupt("producer \(producerId) has a negative sequence number")
        }
        guard batch.firstOffset > previousLastOffset && batch.firstOffset <= batch.lastOffset,
          batch.lastOffset < endOffset
        else {
          throw corrupt(
            "producer \(producerId) batch \(batch.firstOffset)...\(batch.lastOffset) is out of "
              + "order or beyond the end offset \(endOffset)")
        }
        previousLastOffset = batch.lastOffset
        batches.append(batch)
      }
      producers[producerId] = ProducerStateEntry(
        producerId: producerId, producerEpoch: producerEpoch, batches: batches)
    }
    guard reader.remaining == 0 else {
      throw corrupt("\(reader.remaining) unexpected bytes after the last producer")
    }
    guard producerIdExpirationMs > 0 else {
      throw StorageError(
        .invalidConfig, "producerIdExpirationMs \(producerIdExpirationMs) must be positive")
    }
    self.init(
      producerIdExpirationMs: producerIdExpirationMs, endOffset: endOffset, producers: producers)
  }
}

/// A bounds-checked big-endian cursor over snapshot bytes, stopping at `end`.
private struct SnapshotReader {
  let bytes: [UInt8]
  let end: Int
  var position = 0

  init(bytes: [UInt8], end: Int) {
    precondition(end <= bytes.count, "reader end beyond the bytes")
    self.bytes = bytes
    self.end = end
  }

  var remaining: Int { end - position }

  mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: String) throws(StorageError) -> T {
    let size = MemoryLayout<T>.size
    guard size <= remaining else {
      throw StorageError(
        .corruptLog,
        "producer state snapshot: \(what) needs \(size) bytes at \(position), \(remaining) left")
    }
    var value: T = 0
    for index in position..<(position + size) {
      value = (value << 8) | T(truncatingIfNeeded: bytes[index])
    }
    position += size
    return value
  }
}
