/// One entry of a segment's sparse offset index: the batch whose base offset is
/// `segmentBaseOffset + relativeOffset` starts at byte `position` of the segment file.
///
/// On disk each entry is 8 bytes, big-endian: relative offset u32, position u32.
struct IndexEntry: Equatable, Sendable {
  var relativeOffset: UInt32
  var position: UInt32

  static let byteCount = 8
}

enum OffsetIndex {
  static func encode(_ entries: some Collection<IndexEntry>) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: entries.count * IndexEntry.byteCount)
    bytes.withUnsafeMutableBytes { buffer in
      for (number, entry) in entries.enumerated() {
        let at = number * IndexEntry.byteCount
        buffer.storeBytes(of: entry.relativeOffset.bigEndian, toByteOffset: at, as: UInt32.self)
        buffer.storeBytes(of: entry.position.bigEndian, toByteOffset: at + 4, as: UInt32.self)
      }
    }
    return bytes
  }

  static func entry(at number: Int, in buffer: UnsafeRawBufferPointer) -> IndexEntry {
    let at = number * IndexEntry.byteCount
    return IndexEntry(
      relativeOffset: UInt32(bigEndian: buffer.loadUnaligned(fromByteOffset: at, as: UInt32.self)),
      position: UInt32(bigEndian: buffer.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self)))
  }

  /// Decodes an index file, or returns nil when it cannot belong to a segment of
  /// `segmentBytes` bytes holding offsets below `segmentBaseOffset + relativeOffsetLimit`:
  /// a torn size, entries out of order, or positions past the data.
  static func decode(_ bytes: [UInt8], segmentBytes: Int64, relativeOffsetLimit: Int64)
    -> [IndexEntry]?
  {
    guard bytes.count % IndexEntry.byteCount == 0 else { return nil }
    return bytes.withUnsafeBytes { buffer -> [IndexEntry]? in
      var entries: [IndexEntry] = []
      entries.reserveCapacity(bytes.count / IndexEntry.byteCount)
      for number in 0..<bytes.count / IndexEntry.byteCount {
        let entry = entry(at: number, in: buffer)
        guard Int64(entry.position) < segmentBytes,
          Int64(entry.relativeOffset) < relativeOffsetLimit
        else { return nil }
        if let previous = entries.last {
          guard entry.position > previous.position,
            entry.relativeOffset > previous.relativeOffset
          else { return nil }
        }
        entries.append(entry)
      }
      return entries
    }
  }

  /// Position to start scanning from for `relativeOffset`: the last entry at or below it,
  /// or the start of the segment.
  static func lookup(_ entries: [IndexEntry], relativeOffset: Int64) -> (
    position: Int64, entry: IndexEntry?
  ) {
    var low = 0
    var high = entries.count
    while low < high {
      let middle = (low + high) / 2
      if Int64(entries[middle].relativeOffset) <= relativeOffset {
        low = middle + 1
      } else {
        high = middle
      }
    }
    guard low > 0 else { return (0, nil) }
    return (Int64(entries[low - 1].position), entries[low - 1])
  }

  /// An index file's bytes, nil when missing or larger than `sizeMax` (an index is always
  /// smaller than its segment, as each entry stands for at least one 61-byte batch).
  static func readFile(_ path: String, sizeMax: Int64, fileSystem: any LogFileSystem) throws
    -> [UInt8]?
  {
    guard fileSystem.fileExists(path) else { return nil }
    let descriptor = try fileSystem.open(path, .readOnly)
    defer { fileSystem.close(descriptor) }
    let size = try fileSystem.size(descriptor)
    guard size <= max(sizeMax, 0) else { return nil }
    var bytes = [UInt8](repeating: 0, count: Int(size))
    let count = try bytes.withUnsafeMutableBytes {
      try fileSystem.readFully(descriptor, into: $0, at: 0)
    }
    return count == bytes.count ? bytes : nil
  }
}
