import Glibc

/// A failed storage operation: what went wrong, in words, with the `errno` and path when a
/// system call failed. Every error thrown by this module is a `StorageError`.
public struct StorageError: Error, CustomStringConvertible {
  /// What kind of failure; a struct over a private enum so new codes can be added.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: Hashable, Sendable {
      case noSpace
      case ioFailure
      case offsetOutOfRange
      case invalidBatch
      case unexpectedOffset
      case corruptLog
      case invalidConfig
      case closed
      case invalidEpoch
    }
    private let value: Value
    private init(_ value: Value) { self.value = value }

    /// The disk (or quota) is full: ENOSPC or EDQUOT. Retry after space is freed.
    public static let noSpace = Code(.noSpace)
    /// Any other failed system call (EIO, EBADF, ...).
    public static let ioFailure = Code(.ioFailure)
    /// A read below the log start offset or above the log end offset.
    public static let offsetOutOfRange = Code(.offsetOutOfRange)
    /// Bytes handed to `append` are not valid v2 record batches.
    public static let invalidBatch = Code(.invalidBatch)
    /// A follower append whose offsets do not continue the log.
    public static let unexpectedOffset = Code(.unexpectedOffset)
    /// Data on disk is damaged where it should not be (outside the recoverable tail).
    public static let corruptLog = Code(.corruptLog)
    /// A configuration value out of range.
    public static let invalidConfig = Code(.invalidConfig)
    /// The log was closed.
    public static let closed = Code(.closed)
    /// A leader epoch that would make the epoch history go backwards.
    public static let invalidEpoch = Code(.invalidEpoch)

    public var description: String {
      switch value {
      case .noSpace: "noSpace"
      case .ioFailure: "ioFailure"
      case .offsetOutOfRange: "offsetOutOfRange"
      case .invalidBatch: "invalidBatch"
      case .unexpectedOffset: "unexpectedOffset"
      case .corruptLog: "corruptLog"
      case .invalidConfig: "invalidConfig"
      case .closed: "closed"
      case .invalidEpoch: "invalidEpoch"
      }
    }
  }

  public let code: Code
  public let message: String
  /// The `errno` of the failed system call, if one failed.
  public let errno: Int32?
  public let path: String?

  public init(_ code: Code, _ message: String, errno: Int32? = nil, path: String? = nil) {
    self.code = code
    self.message = message
    self.errno = errno
    self.path = path
  }

  /// The error for a failed system call, classifying a full disk as `noSpace`.
  public static func systemCall(_ call: String, errno number: Int32, path: String?)
    -> StorageError
  {
    let code: Code = (number == ENOSPC || number == EDQUOT) ? .noSpace : .ioFailure
    let reason = String(cString: strerror(number))
    let location = path.map { " on \($0)" } ?? ""
    return StorageError(
      code, "\(call)\(location) failed: \(reason) (errno \(number))", errno: number, path: path)
  }

  public var description: String { "\(code): \(message)" }
}
