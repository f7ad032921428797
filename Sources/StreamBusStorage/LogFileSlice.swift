import Glibc
import Synchronization

/// A byte range of a segment file holding whole batches, for sending without copying
/// (`sendfile(2)`). Owns its own descriptor of the file, so the range stays readable when
/// retention or a topic deletion removes the segment meanwhile: the data lives until the
/// last descriptor closes.
///
/// The descriptor is closed exactly once: by whoever took it with `takeDescriptor()`, or
/// by this object when it goes away with the descriptor still inside.
public final class LogFileSlice: Sendable {
  /// Where the range starts in the file.
  public let position: Int64
  public let byteCount: Int
  private let descriptor: Mutex<Int32?>

  /// Takes ownership of `descriptor`.
  public init(descriptor: Int32, position: Int64, byteCount: Int) {
    precondition(position >= 0 && byteCount >= 0, "slice range must not be negative")
    self.descriptor = Mutex(descriptor)
    self.position = position
    self.byteCount = byteCount
  }

  /// Hands the descriptor over to the caller, who must close it; nil once taken.
  public func takeDescriptor() -> Int32? {
    descriptor.withLock { descriptor in
      defer { descriptor = nil }
      return descriptor
    }
  }

  deinit {
    if let descriptor = takeDescriptor() {
      _ = Glibc.close(descriptor)
    }
  }
}

/// The outcome of `PartitionLog.readSlice`: like `ReadResult`, with the batches as a file
/// range instead of bytes.
public struct SliceReadResult: Sendable {
  /// Whole batches as they are on disk, nil when none was returned.
  public var slice: LogFileSlice?
  /// Set instead of `slice` when the file system cannot share descriptors.
  public var bytes: [UInt8]
  public var firstOffset: Int64?
  public var nextOffset: Int64
  public var logStartOffset: Int64
  public var logEndOffset: Int64

  /// Record bytes returned, in either form.
  public var byteCount: Int { slice?.byteCount ?? bytes.count }
}
