/// Where one complete, validated batch sits in a buffer of concatenated batches.
public struct RecordBatchSpan: Equatable, Sendable {
  public var header: RecordBatchHeader
  /// Byte range of the whole batch in the scanned buffer.
  public var range: Range<Int>
}

/// Walks a buffer of concatenated v2 batches (a segment file, a produce request, a fetch
/// response), validating each batch's length, magic and CRC without allocating.
///
/// A last batch that is cut short is not an error: fetch responses legitimately end
/// mid-batch, and a crash can leave a torn write at a segment's tail. `next()` then returns
/// nil and `partialTailByteCount` tells how many bytes were left over. A batch whose bytes
/// are all present but wrong (bad CRC, magic or length field) throws.
///
/// Borrows `buffer`: use it only inside the `withUnsafeBytes` scope it came from.
public struct RecordBatchScanner {
  public let buffer: UnsafeRawBufferPointer
  public let verifiesCRC: Bool
  /// Start of the next batch; after the scan, the end of the last complete batch.
  public private(set) var position: Int = 0
  /// After `next()` returned nil: bytes of an incomplete trailing batch (0 for a clean end).
  public private(set) var partialTailByteCount: Int = 0

  public init(_ buffer: UnsafeRawBufferPointer, verifiesCRC: Bool = true) {
    self.buffer = buffer
    self.verifiesCRC = verifiesCRC
  }

  public mutating func next() throws(RecordsError) -> RecordBatchSpan? {
    let remaining = buffer.count - position
    guard remaining > 0 else {
      partialTailByteCount = 0
      return nil
    }
    guard remaining >= RecordBatchHeader.lengthPrefixByteCount else {
      partialTailByteCount = remaining
      return nil
    }
    let batchLength = Int32(
      bigEndian: buffer.loadUnaligned(
        fromByteOffset: position + RecordBatchHeader.batchLengthPosition, as: Int32.self))
    guard batchLength >= RecordBatchHeader.batchLengthMin else {
      throw RecordsError(
        .invalidLength,
        "batch at byte \(position) has length \(batchLength), below the minimum \(RecordBatchHeader.batchLengthMin)"
      )
    }
    let total = Int(batchLength) + RecordBatchHeader.lengthPrefixByteCount
    guard total <= remaining else {
      partialTailByteCount = remaining
      return nil
    }
    let range = position..<position + total
    let bytes = UnsafeRawBufferPointer(rebasing: buffer[range])
    let header: RecordBatchHeader
    do {
      header =
        verifiesCRC ? try RecordBatch.validate(bytes) : try RecordBatchHeader(parsing: bytes)
    } catch {
      throw RecordsError(error.code, "batch at byte \(position): \(error.message)")
    }
    if !verifiesCRC && header.magic != RecordBatchHeader.currentMagic {
      throw RecordsError(
        .invalidMagic, "batch at byte \(position): magic \(header.magic), only 2 is supported")
    }
    position += total
    return RecordBatchSpan(header: header, range: range)
  }
}
