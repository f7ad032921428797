/// An error from the transport layer: framing, connections, timeouts, process configuration.
///
/// The `code` lets callers branch (retry on `connectionFailed`, give up on `protocolViolation`);
/// the `message` is written for the operator reading a log line.
public struct TransportError: Error, CustomStringConvertible, Sendable {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    // Wrapped so new codes can be added without breaking exhaustive switches downstream.
    private enum Base: String, Hashable, Sendable {
      case frameTooLarge
      case negativeFrameLength
      case truncatedFrame
      case protocolViolation
      case connectionFailed
      case connectionClosed
      case requestTimedOut
      case invalidRequest
      case invalidAddress
      case invalidConfiguration
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// A length prefix above `frameBytesMax`.
    public static let frameTooLarge = Code(.frameTooLarge)
    /// A length prefix with the sign bit set.
    public static let negativeFrameLength = Code(.negativeFrameLength)
    /// The peer closed the connection in the middle of a frame.
    public static let truncatedFrame = Code(.truncatedFrame)
    /// The peer sent something that breaks the request/response contract.
    public static let protocolViolation = Code(.protocolViolation)
    /// Connecting failed (refused, unreachable, connect timeout).
    public static let connectionFailed = Code(.connectionFailed)
    /// The connection closed (or was closed) before the response arrived.
    public static let connectionClosed = Code(.connectionClosed)
    /// No response within the request timeout.
    public static let requestTimedOut = Code(.requestTimedOut)
    /// The caller handed over a payload that cannot be sent.
    public static let invalidRequest = Code(.invalidRequest)
    /// A "host:port" string that does not parse.
    public static let invalidAddress = Code(.invalidAddress)
    /// A configuration file or flag value that does not parse.
    public static let invalidConfiguration = Code(.invalidConfiguration)

    public var description: String { base.rawValue }
  }

  public let code: Code
  /// What went wrong, including the underlying error's text when there is one.
  public let message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "\(code): \(message)" }
}
