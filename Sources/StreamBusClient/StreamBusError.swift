import StreamBusProtocol
import StreamBusTransport

/// Every error the client library throws.
///
/// `kind` says where the failure came from; `errorCode` carries the broker's wire code when
/// the broker answered with one; `topic` and `partition` name what the error concerns when
/// it concerns one.
public struct StreamBusError: Error, Sendable, CustomStringConvertible {
  public struct Kind: Hashable, Sendable, CustomStringConvertible {
    // Wrapped so new kinds can be added without breaking exhaustive switches downstream.
    private enum Base: String, Hashable, Sendable {
      case broker
      case connection
      case timeout
      case invalidArgument
      case closed
      case protocolViolation
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// The broker answered with a non-zero error code (see `errorCode`).
    public static let broker = Kind(.broker)
    /// Connecting failed or the connection was lost.
    public static let connection = Kind(.connection)
    /// No answer in time (request timeout, delivery timeout, metadata wait).
    public static let timeout = Kind(.timeout)
    /// The caller passed something unusable (unknown partition number, empty topic name).
    public static let invalidArgument = Kind(.invalidArgument)
    /// The producer or consumer was closed.
    public static let closed = Kind(.closed)
    /// The broker sent bytes that do not decode, or a response that does not fit the request.
    public static let protocolViolation = Kind(.protocolViolation)

    public var description: String { base.rawValue }
  }

  public let kind: Kind
  /// The wire error code when the broker sent one; nil for local failures.
  public let errorCode: ErrorCode?
  public let message: String
  public let topic: String?
  public let partition: Int32?

  public init(
    _ kind: Kind, errorCode: ErrorCode? = nil, _ message: String, topic: String? = nil,
    partition: Int32? = nil
  ) {
    self.kind = kind
    self.errorCode = errorCode
    self.message = message
    self.topic = topic
    self.partition = partition
  }

  /// A broker error code, with the code's meaning as the message when the broker gave none.
  public static func broker(
    _ code: ErrorCode, message: String? = nil, topic: String? = nil, partition: Int32? = nil
  ) -> StreamBusError {
    let text = message.flatMap { $0.isEmpty ? nil : $0 } ?? code.meaning
    return StreamBusError(.broker, errorCode: code, text, topic: topic, partition: partition)
  }

  /// Whether trying again later may succeed: a retriable broker code, a lost connection or a
  /// request timeout.
  public var isRetriable: Bool {
    switch kind {
    case .broker: return errorCode?.isRetriable ?? false
    case .connection, .timeout: return true
    default: return false
    }
  }

  /// Errors after which the partition leader may have moved, so metadata is refreshed.
  var invalidatesMetadata: Bool {
    switch kind {
    case .connection, .timeout: return true
    case .broker:
      guard let errorCode else { return false }
      return StreamBusError.metadataErrorCodes.contains(errorCode)
    default: return false
    }
  }

  static let metadataErrorCodes: Set<ErrorCode> = [
    .notLeaderOrFollower, .fencedLeaderEpoch, .unknownLeaderEpoch, .unknownTopicOrPartition,
    .leaderNotAvailable, .brokerNotAvailable, .replicaNotAvailable, .notController,
  ]

  public var description: String {
    var text = ""
    if let errorCode {
      text += "\(errorCode.name) (\(errorCode.rawValue))"
    } else {
      text += "\(kind) error"
    }
    if let topic {
      text += " for \(topic)"
      if let partition { text += "-\(partition)" }
    }
    text += ": " + message
    return text
  }
}

extension StreamBusError {
  /// Maps a transport or decoding failure to the client's error type.
  static func wrapping(_ error: any Error, context: String) -> StreamBusError {
    if let error = error as? StreamBusError { return error }
    if let error = error as? TransportError {
      switch error.code {
      case .requestTimedOut: return StreamBusError(.timeout, "\(context): \(error.message)")
      case .protocolViolation, .frameTooLarge, .negativeFrameLength, .truncatedFrame:
        return StreamBusError(.protocolViolation, "\(context): \(error.message)")
      case .invalidAddress, .invalidRequest, .invalidConfiguration:
        return StreamBusError(.invalidArgument, "\(context): \(error.message)")
      default: return StreamBusError(.connection, "\(context): \(error.message)")
      }
    }
    if let error = error as? ProtocolError {
      return StreamBusError(.protocolViolation, "\(context): \(error)")
    }
    if error is CancellationError {
      return StreamBusError(.closed, "\(context): cancelled")
    }
    return StreamBusError(.connection, "\(context): \(error)")
  }
}
