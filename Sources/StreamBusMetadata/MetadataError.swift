import StreamBusProtocol

/// Metadata bytes that cannot be decoded, or a record that cannot be applied to an image.
///
/// Both are fatal for the state machine that hits them: the log is the source of truth, so
/// a record that does not apply means corruption or a controller bug, never a retry.
public struct MetadataError: Error, Sendable, Hashable, CustomStringConvertible {
  /// A struct over a private enum so new kinds can be added without breaking callers.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
      case truncated
      case trailingBytes
      case unknownRecordType
      case unsupportedRecordVersion
      case malformed
      case invalidSnapshot
      case invalidReplay
    }

    private let base: Base

    private init(_ base: Base) {
      self.base = base
    }

    /// The bytes ended before a record or field was complete (or an array count claims more
    /// elements than the remaining bytes can hold).
    public static let truncated = Code(.truncated)
    /// Bytes remain after a record, batch or snapshot was fully decoded.
    public static let trailingBytes = Code(.trailingBytes)
    /// A record type tag this build does not know.
    public static let unknownRecordType = Code(.unknownRecordType)
    /// A known record type at a version this build does not know.
    public static let unsupportedRecordVersion = Code(.unsupportedRecordVersion)
    /// A field is out of its domain (bad length, count, UTF-8, boolean byte).
    public static let malformed = Code(.malformed)
    /// The snapshot header is wrong (magic or format version).
    public static let invalidSnapshot = Code(.invalidSnapshot)
    /// A well-formed record makes no sense against the image (for example a partition of
    /// an unknown topic).
    public static let invalidReplay = Code(.invalidReplay)

    public var description: String { base.rawValue }
  }

  public let code: Code
  public let message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  /// Maps a reader error to the metadata error kinds, keeping its field and offset.
  init(_ error: ProtocolError, context: String) {
    let code: Code
    switch error.code {
    // A count that needs more bytes than remain means the same thing: the input ends early.
    case .truncated, .countTooLarge: code = .truncated
    case .trailingBytes: code = .trailingBytes
    default: code = .malformed
    }
    self.init(code, "\(context): \(error)")
  }

  public var description: String { "metadata \(code): \(message)" }
}
