/// Small files replaced all-or-nothing: checkpoints (log start offset now; high watermark
/// and leader-epoch cache later).
///
/// `write` puts the bytes in `<path>.tmp`, fsyncs it, renames it over `path` and fsyncs
/// the directory, so after a crash the file holds either the old or the new contents and
/// never a torn mix. A leftover `.tmp` is garbage from a crash and may be deleted.
public enum AtomicFile {
  public static let temporarySuffix = ".tmp"

  public static func write(
    _ path: String, _ bytes: [UInt8], fileSystem: any LogFileSystem = PosixFileSystem()
  ) throws {
    let temporaryPath = path + temporarySuffix
    let descriptor = try fileSystem.open(temporaryPath, .createTruncate)
    do {
      try bytes.withUnsafeBytes {
        try fileSystem.writeAll(descriptor, $0, at: 0, path: temporaryPath)
      }
      try fileSystem.syncData(descriptor)
    } catch {
      fileSystem.close(descriptor)
      try? fileSystem.remove(temporaryPath)
      throw error
    }
    fileSystem.close(descriptor)
    try fileSystem.rename(temporaryPath, to: path)
    try fileSystem.syncDirectory(parentDirectory(of: path))
  }

  /// The whole file, or nil when it does not exist.
  public static func read(_ path: String, fileSystem: any LogFileSystem = PosixFileSystem())
    throws -> [UInt8]?
  {
    guard fileSystem.fileExists(path) else { return nil }
    let descriptor = try fileSystem.open(path, .readOnly)
    defer { fileSystem.close(descriptor) }
    let size = try fileSystem.size(descriptor)
    guard size <= checkpointBytesMax else {
      throw StorageError(
        .corruptLog, "\(path) is \(size) bytes, more than a checkpoint can be", path: path)
    }
    var bytes = [UInt8](repeating: 0, count: Int(size))
    let count = try bytes.withUnsafeMutableBytes {
      try fileSystem.readFully(descriptor, into: $0, at: 0)
    }
    return Array(bytes[..<count])
  }

  /// Checkpoints are tiny; anything larger is not one of ours.
  static let checkpointBytesMax: Int64 = 16 << 20

  static func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
  }
}
