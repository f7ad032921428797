/// A malformed or unacceptable byte sequence, with what failed where.
///
/// These are Swift errors about bytes; the wire-level answer a peer sees is an ``ErrorCode``
/// (see ``errorCode``).
public struct ProtocolError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What kind of problem it is. A struct over a private enum so new kinds can be added
  /// without breaking exhaustive switches in callers.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
      case truncated
      case invalidLength
      case negativeCount
      case countTooLarge
      case invalidUTF8
      case invalidValue
      case frameTooLarge
      case negativeLength
      case unknownApiKey
      case unsupportedVersion
      case trailingBytes
    }

    private let base: Base

    private init(_ base: Base) {
      self.base = base
    }

    /// The input ended before the field was complete.
    public static let truncated = Code(.truncated)
    /// A length prefix is invalid (negative where null is not allowed, or below -1).
    public static let invalidLength = Code(.invalidLength)
    /// An array count is negative (and not -1 on a nullable array).
    public static let negativeCount = Code(.negativeCount)
    /// An array count cannot fit in the remaining bytes.
    public static let countTooLarge = Code(.countTooLarge)
    /// A string is not valid UTF-8.
    public static let invalidUTF8 = Code(.invalidUTF8)
    /// A field has a value outside its domain (for example a boolean byte of 7).
    public static let invalidValue = Code(.invalidValue)
    /// A frame length prefix exceeds the configured maximum.
    public static let frameTooLarge = Code(.frameTooLarge)
    /// A frame length prefix is negative.
    public static let negativeLength = Code(.negativeLength)
    /// The request names an API key this build does not know.
    public static let unknownApiKey = Code(.unknownApiKey)
    /// The API is known but not at this version.
    public static let unsupportedVersion = Code(.unsupportedVersion)
    /// Bytes remain after the message was fully decoded.
    public static let trailingBytes = Code(.trailingBytes)

    public var description: String { base.rawValue }
  }

  public let code: Code
  /// Dotted path of the field being read, e.g. `produce.topics.partitions.records`.
  public let field: String
  /// Byte offset within the payload where the field started, when known.
  public let offset: Int?
  public let message: String

  public init(_ code: Code, field: String, offset: Int?, message: String) {
    self.code = code
    self.field = field
    self.offset = offset
    self.message = message
  }

  /// The error code a server answers with when this error hits a request body.
  public var errorCode: ErrorCode {
    switch code {
    case .unsupportedVersion: return .unsupportedVersion
    case .frameTooLarge: return .messageTooLarge
    default: return .invalidRequest
    }
  }

  public var description: String {
    if let offset {
      return "\(code) in '\(field)' at byte \(offset): \(message)"
    }
    return "\(code) in '\(field)': \(message)"
  }
}

/// A request whose header decoded fine but whose body could not be accepted.
///
/// The connection stays usable: answer with ``ResponseHeader`` carrying
/// `header.correlationId` and ``errorCode``, and an empty body. Errors thrown while the
/// header itself is unreadable are plain ``ProtocolError``s: the peer is not speaking this
/// protocol and the connection should be closed.
public struct RequestBodyError: Error, Sendable, Hashable, CustomStringConvertible {
  public let header: RequestHeader
  public let underlying: ProtocolError

  public init(header: RequestHeader, underlying: ProtocolError) {
    self.header = header
    self.underlying = underlying
  }

  public var errorCode: ErrorCode { underlying.errorCode }

  /// The generic error response for this request (header only, empty body).
  public var errorResponseHeader: ResponseHeader {
    ResponseHeader(
      correlationId: header.correlationId, errorCode: errorCode,
      errorMessage: underlying.description)
  }

  /// The complete framed answer to send back for this request.
  ///
  /// Header only, except for an unsupported ApiVersions version: then the body lists this
  /// build's versions at ``ApiVersionsResponse/fallbackVersion`` so the client can retry
  /// with a version both sides speak.
  public func errorResponseFrame() -> [UInt8] {
    if header.apiKey == .apiVersions && underlying.code == .unsupportedVersion {
      return Response.apiVersions(.supportedByThisBuild).encodeFrame(
        header: errorResponseHeader, version: ApiVersionsResponse.fallbackVersion)
    }
    return errorResponseHeader.encodeErrorOnlyFrame()
  }

  public var description: String {
    "request apiKey=\(header.apiKey.rawValue) version=\(header.apiVersion) "
      + "correlationId=\(header.correlationId): \(underlying)"
  }
}
