import StreamBusProtocol
import StreamBusStorage

/// Hands out producer ids for InitProducerId. Every id is handed out at most once for the
/// lifetime of the cluster (or of a standalone broker's data directory), crashes included.
public protocol ProducerIdSource: Sendable {
  func nextProducerId() async throws(BrokerRequestError) -> Int64
}

/// A standalone broker's producer ids: a counter persisted in the data directory.
///
/// Ids are reserved in blocks of ``blockSize``. Before the first id of a block is handed
/// out, the block's end is written durably (``AtomicFile``: fsync + rename + directory
/// fsync) to ``fileName``; the next start continues at that end. A crash therefore skips
/// the unused rest of a block but never hands out an id twice.
public actor FileProducerIdSource: ProducerIdSource {
  public static let fileName = "producer-id-block"
  public static let defaultBlockSize: Int64 = 1000
  static let formatVersion = 1

  public let path: String
  public let blockSize: Int64
  private let fileSystem: any LogFileSystem
  /// The next id to hand out; equals ``reservedEnd`` when the reserved block is used up.
  private var nextId: Int64
  /// Ids below this are reserved durably (the value in the file).
  private var reservedEnd: Int64

  /// Reads the persisted block end of `dataDirectory` (0 when the file does not exist yet).
  ///
  /// - Throws: `StorageError` when the file cannot be read or does not hold a valid block end.
  public init(
    dataDirectory: String, blockSize: Int64 = FileProducerIdSource.defaultBlockSize,
    fileSystem: any LogFileSystem = PosixFileSystem()
  ) throws {
    precondition(blockSize >= 1, "a producer id block holds at least one id")
    self.path = dataDirectory + "/" + Self.fileName
    self.blockSize = blockSize
    self.fileSystem = fileSystem
    let end = try Self.readBlockEnd(path, fileSystem: fileSystem) ?? 0
    self.nextId = end
    self.reservedEnd = end
  }

  public func nextProducerId() async throws(BrokerRequestError) -> Int64 {
    if nextId == reservedEnd {
      guard reservedEnd <= Int64.max - blockSize else {
        throw BrokerRequestError(.unknownServerError, "producer ids are exhausted")
      }
      let newEnd = reservedEnd + blockSize
      do {
        try AtomicFile.write(path, Self.encode(blockEnd: newEnd), fileSystem: fileSystem)
      } catch {
        // Nothing of the new block is handed out, so a failed write costs no uniqueness.
        throw BrokerRequestError(
          .storageError, "cannot reserve producer ids in \(path): \(error)")
      }
      reservedEnd = newEnd
    }
    precondition(nextId < reservedEnd, "handing out an id outside the durable block")
    let id = nextId
    nextId += 1
    return id
  }

  static func encode(blockEnd: Int64) -> [UInt8] {
    Array("version=\(formatVersion)\nblock.end=\(blockEnd)\n".utf8)
  }

  static func readBlockEnd(_ path: String, fileSystem: any LogFileSystem) throws -> Int64? {
    guard let bytes = try AtomicFile.read(path, fileSystem: fileSystem) else { return nil }
    func corrupt(_ reason: String) -> StorageError {
      StorageError(.corruptLog, "producer id file \(path): \(reason)", path: path)
    }
    guard let text = String(validating: bytes, as: UTF8.self) else { throw corrupt("not UTF-8") }
    var fields: [String: String] = [:]
    for line in text.split(separator: "\n") {
      guard let equals = line.firstIndex(of: "=") else { throw corrupt("line \"\(line)\"") }
      fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
    }
    guard fields["version"] == String(formatVersion) else {
      throw corrupt("unsupported version \(fields["version"] ?? "(missing)")")
    }
    guard let endText = fields["block.end"], let end = Int64(endText), end >= 0 else {
      throw corrupt("block.end is \(fields["block.end"] ?? "(missing)"), not a count >= 0")
    }
    return end
  }
}
