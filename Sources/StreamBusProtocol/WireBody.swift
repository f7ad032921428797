/// A request or response body of one API at one version.
///
/// `version` is passed to both directions so a later version can add fields behind
/// `if version >= n` without new types.
public protocol WireBody: Sendable, Equatable {
  static var apiKey: ApiKey { get }
  init(from reader: inout WireReader, version: Int16) throws
  func encode(into writer: inout WireWriter, version: Int16)
  /// Close upper estimate of the encoded size, used to reserve the output once.
  var encodedBytesEstimate: Int { get }
}

extension WireBody {
  public var encodedBytesEstimate: Int { 256 }
}

extension WireWriter {
  /// Error messages are free text of any length; cut to the string limit instead of trapping.
  mutating func writeErrorMessage(_ message: String?) {
    writeNullableString(message.map(ResponseHeader.truncatedForWire))
  }
}

/// Smallest encodings of the shared building blocks, for array count validation.
enum EncodedBytesMin {
  static let string = 2
  static let array = 4
  static let bytes = 4
}
