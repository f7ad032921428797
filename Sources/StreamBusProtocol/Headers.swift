/// Header at the start of every request payload. Its layout never changes with versions.
public struct RequestHeader: Sendable, Hashable {
  public var apiKey: ApiKey
  public var apiVersion: Int16
  public var correlationId: Int32
  public var clientId: String?

  public init(apiKey: ApiKey, apiVersion: Int16, correlationId: Int32, clientId: String?) {
    self.apiKey = apiKey
    self.apiVersion = apiVersion
    self.correlationId = correlationId
    self.clientId = clientId
  }

  public func encode(into writer: inout WireWriter) {
    writer.writeInt16(apiKey.rawValue)
    writer.writeInt16(apiVersion)
    writer.writeInt32(correlationId)
    writer.writeNullableString(clientId)
  }

  public init(from reader: inout WireReader) throws {
    apiKey = ApiKey(rawValue: try reader.readInt16("requestHeader.apiKey"))
    apiVersion = try reader.readInt16("requestHeader.apiVersion")
    correlationId = try reader.readInt32("requestHeader.correlationId")
    clientId = try reader.readNullableString("requestHeader.clientId")
  }
}

/// Header at the start of every response payload. Its layout never changes with versions.
///
/// A non-zero `errorCode` here means the whole request failed; the body may then be empty.
public struct ResponseHeader: Sendable, Hashable {
  public var correlationId: Int32
  public var errorCode: ErrorCode
  public var errorMessage: String?

  public init(correlationId: Int32, errorCode: ErrorCode = .none, errorMessage: String? = nil) {
    self.correlationId = correlationId
    self.errorCode = errorCode
    self.errorMessage = errorMessage
  }

  public func encode(into writer: inout WireWriter) {
    writer.writeInt32(correlationId)
    writer.writeInt16(errorCode.rawValue)
    writer.writeNullableString(errorMessage.map(ResponseHeader.truncatedForWire))
  }

  public init(from reader: inout WireReader) throws {
    correlationId = try reader.readInt32("responseHeader.correlationId")
    errorCode = ErrorCode(rawValue: try reader.readInt16("responseHeader.errorCode"))
    errorMessage = try reader.readNullableString("responseHeader.errorMessage")
  }

  /// Decodes only the header, e.g. for a client matching a response to its request
  /// before it knows which body decoder to use.
  public static func decode(payload: [UInt8]) throws -> ResponseHeader {
    var reader = WireReader(payload)
    return try ResponseHeader(from: &reader)
  }

  /// Encodes a header-only response: the generic answer to a request that failed as a whole.
  public func encodeErrorOnly() -> [UInt8] {
    var writer = WireWriter(reservingCapacity: 64)
    encode(into: &writer)
    return writer.bytes
  }

  /// Error messages come from error descriptions of arbitrary length; cut them to the
  /// string limit on a character boundary rather than trap in the writer.
  static func truncatedForWire(_ message: String) -> String {
    let limit = Int(Int16.max)
    if message.utf8.count <= limit { return message }
    var result = ""
    var used = 0
    for character in message {
      let size = character.utf8.count
      if used + size > limit { break }
      result.append(character)
      used += size
    }
    return result
  }
}
