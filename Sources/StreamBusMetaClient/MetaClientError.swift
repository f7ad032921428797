import StreamBusProtocol

/// Every error ``MetaClient`` throws.
///
/// `code` says what kind of failure it is; `errorCode` carries the metaserver's wire code
/// when it answered with one; `lastError` is the last failure seen before a timeout.
public struct MetaClientError: Error, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    // Wrapped so new codes can be added without breaking exhaustive switches downstream.
    private enum Base: String, Hashable, Sendable {
      case server
      case timeout
      case protocolViolation
      case invalidArgument
      case closed
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// A metaserver answered with an error code (see `errorCode`).
    public static let server = Code(.server)
    /// No metaserver gave an answer within the request timeout (unreachable, no leader,
    /// or no response); `lastError` says what the last try ran into.
    public static let timeout = Code(.timeout)
    /// A metaserver sent bytes that do not decode as the answer to the request.
    public static let protocolViolation = Code(.protocolViolation)
    /// The caller passed something unusable (an empty bootstrap list, a request too large).
    public static let invalidArgument = Code(.invalidArgument)
    /// The client was closed or the calling task cancelled.
    public static let closed = Code(.closed)

    public var description: String { base.rawValue }
  }

  public let code: Code
  /// The wire error code when a metaserver sent one.
  public let errorCode: ErrorCode?
  public let message: String
  /// What the last attempt ran into, for timeouts.
  public let lastError: String?
  /// What the error concerns when it concerns one item (a topic name).
  public let subject: String?

  public init(
    _ code: Code, errorCode: ErrorCode? = nil, _ message: String, lastError: String? = nil,
    subject: String? = nil
  ) {
    self.code = code
    self.errorCode = errorCode
    self.message = message
    self.lastError = lastError
    self.subject = subject
  }

  /// A metaserver's error code, with the code's meaning as the message when it gave none.
  public static func server(_ errorCode: ErrorCode, message: String?, subject: String? = nil)
    -> MetaClientError
  {
    let text = message.flatMap { $0.isEmpty ? nil : $0 } ?? errorCode.meaning
    return MetaClientError(.server, errorCode: errorCode, text, subject: subject)
  }

  /// "TOPIC_ALREADY_EXISTS (36) for orders: ...", or "timeout error: ...; last error: ...".
  public var description: String {
    var text: String
    if let errorCode {
      text = "\(errorCode.name) (\(errorCode.rawValue))"
    } else {
      text = "\(code) error"
    }
    if let subject {
      text += " for \(subject)"
    }
    text += ": " + message
    if let lastError {
      text += "; last error: " + lastError
    }
    return text
  }
}
