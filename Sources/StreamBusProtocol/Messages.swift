/// Every request body this build understands.
public enum Request: Sendable, Equatable {
  case produce(ProduceRequest)
  case fetch(FetchRequest)
  case listOffsets(ListOffsetsRequest)
  case metadata(MetadataRequest)
  case apiVersions(ApiVersionsRequest)
  case createTopics(CreateTopicsRequest)
  case deleteTopics(DeleteTopicsRequest)
  case initProducerId(InitProducerIdRequest)
  case replicaStatus(ReplicaStatusRequest)

  public var apiKey: ApiKey { body.apiKeyOfType }

  private var body: any WireBody {
    switch self {
    case .produce(let body): return body
    case .fetch(let body): return body
    case .listOffsets(let body): return body
    case .metadata(let body): return body
    case .apiVersions(let body): return body
    case .createTopics(let body): return body
    case .deleteTopics(let body): return body
    case .initProducerId(let body): return body
    case .replicaStatus(let body): return body
    }
  }

  /// Decodes a request payload (the bytes after the frame length).
  ///
  /// - Throws: ``ProtocolError`` when the header itself is unreadable (close the
  ///   connection: the peer's framing or protocol cannot be trusted), or
  ///   ``RequestBodyError`` when the header is fine but the API is unknown, the version
  ///   unsupported, or the body malformed or followed by extra bytes (answer with
  ///   ``RequestBodyError/errorResponseHeader`` and keep the connection).
  public static func decode(payload: [UInt8]) throws -> (RequestHeader, Request) {
    var reader = WireReader(payload)
    let header = try RequestHeader(from: &reader)
    do {
      let bodyStart = reader.offset
      guard let versions = header.apiKey.supportedVersions else {
        throw ProtocolError(
          .unknownApiKey, field: "requestHeader.apiKey", offset: 0,
          message: "api key \(header.apiKey.rawValue) is not supported")
      }
      guard versions.contains(header.apiVersion) else {
        throw ProtocolError(
          .unsupportedVersion, field: "requestHeader.apiVersion", offset: 2,
          message:
            "\(header.apiKey.name) version \(header.apiVersion) is not supported "
            + "(supported \(versions.lowerBound)...\(versions.upperBound))")
      }
      let request = try decodeBody(apiKey: header.apiKey, version: header.apiVersion, &reader)
      try reader.expectEnd("\(header.apiKey.name) request (body started at byte \(bodyStart))")
      return (header, request)
    } catch let error as ProtocolError {
      throw RequestBodyError(header: header, underlying: error)
    }
  }

  private static func decodeBody(
    apiKey: ApiKey, version: Int16, _ reader: inout WireReader
  ) throws -> Request {
    switch apiKey {
    case .produce: return .produce(try ProduceRequest(from: &reader, version: version))
    case .fetch: return .fetch(try FetchRequest(from: &reader, version: version))
    case .listOffsets:
      return .listOffsets(try ListOffsetsRequest(from: &reader, version: version))
    case .metadata: return .metadata(try MetadataRequest(from: &reader, version: version))
    case .apiVersions:
      return .apiVersions(try ApiVersionsRequest(from: &reader, version: version))
    case .createTopics:
      return .createTopics(try CreateTopicsRequest(from: &reader, version: version))
    case .deleteTopics:
      return .deleteTopics(try DeleteTopicsRequest(from: &reader, version: version))
    case .initProducerId:
      return .initProducerId(try InitProducerIdRequest(from: &reader, version: version))
    case .replicaStatus:
      return .replicaStatus(try ReplicaStatusRequest(from: &reader, version: version))
    default:
      // Unreachable while `ApiKey.supported` and this switch agree; reported, not trapped.
      throw ProtocolError(
        .unknownApiKey, field: "requestHeader.apiKey", offset: 0,
        message: "api key \(apiKey.rawValue) has no decoder")
    }
  }

  /// Encodes header and body without the frame length.
  public func encodePayload(header: RequestHeader) -> [UInt8] {
    encode(header: header, framed: false)
  }

  /// Encodes the length prefix, header and body into one array (record bytes copied once).
  public func encodeFrame(header: RequestHeader) -> [UInt8] {
    encode(header: header, framed: true)
  }

  private func encode(header: RequestHeader, framed: Bool) -> [UInt8] {
    precondition(header.apiKey == apiKey, "header api key \(header.apiKey) for a \(apiKey) body")
    precondition(
      apiKey.supportedVersions?.contains(header.apiVersion) == true,
      "\(apiKey) version \(header.apiVersion) is not supported by this build")
    let body = self.body
    let headerBytesEstimate = 10 + (header.clientId?.utf8.count ?? 0)
    return encodeMessage(framed: framed, capacity: headerBytesEstimate + body.encodedBytesEstimate)
    { writer in
      header.encode(into: &writer)
      body.encode(into: &writer, version: header.apiVersion)
    }
  }
}

/// Every response body this build understands.
public enum Response: Sendable, Equatable {
  case produce(ProduceResponse)
  case fetch(FetchResponse)
  case listOffsets(ListOffsetsResponse)
  case metadata(MetadataResponse)
  case apiVersions(ApiVersionsResponse)
  case createTopics(CreateTopicsResponse)
  case deleteTopics(DeleteTopicsResponse)
  case initProducerId(InitProducerIdResponse)
  case replicaStatus(ReplicaStatusResponse)

  public var apiKey: ApiKey { body.apiKeyOfType }

  private var body: any WireBody {
    switch self {
    case .produce(let body): return body
    case .fetch(let body): return body
    case .listOffsets(let body): return body
    case .metadata(let body): return body
    case .apiVersions(let body): return body
    case .createTopics(let body): return body
    case .deleteTopics(let body): return body
    case .initProducerId(let body): return body
    case .replicaStatus(let body): return body
    }
  }

  /// Decodes a response payload for a request the caller sent with `apiKey` at `version`.
  ///
  /// - Returns: the header, and the body; the body is nil only when the header carries a
  ///   non-zero error code and nothing follows it (the generic error response).
  /// - Throws: ``ProtocolError`` for malformed bytes, trailing bytes, or an api key /
  ///   version this build cannot decode.
  public static func decode(
    apiKey: ApiKey, version: Int16, payload: [UInt8]
  ) throws -> (ResponseHeader, Response?) {
    guard let versions = apiKey.supportedVersions else {
      throw ProtocolError(
        .unknownApiKey, field: "response", offset: nil,
        message: "api key \(apiKey.rawValue) has no response decoder")
    }
    var reader = WireReader(payload)
    let header = try ResponseHeader(from: &reader)
    if header.errorCode != .none && reader.isAtEnd {
      return (header, nil)
    }
    var version = version
    if apiKey == .apiVersions && header.errorCode == .unsupportedVersion {
      // The server could not speak the requested ApiVersions version, so it listed its
      // versions in the one layout every client understands.
      version = ApiVersionsResponse.fallbackVersion
    }
    guard versions.contains(version) else {
      throw ProtocolError(
        .unsupportedVersion, field: "response", offset: nil,
        message: "\(apiKey.name) version \(version) is not supported")
    }
    let response: Response
    switch apiKey {
    case .produce: response = .produce(try ProduceResponse(from: &reader, version: version))
    case .fetch: response = .fetch(try FetchResponse(from: &reader, version: version))
    case .listOffsets:
      response = .listOffsets(try ListOffsetsResponse(from: &reader, version: version))
    case .metadata: response = .metadata(try MetadataResponse(from: &reader, version: version))
    case .apiVersions:
      response = .apiVersions(try ApiVersionsResponse(from: &reader, version: version))
    case .createTopics:
      response = .createTopics(try CreateTopicsResponse(from: &reader, version: version))
    case .deleteTopics:
      response = .deleteTopics(try DeleteTopicsResponse(from: &reader, version: version))
    case .initProducerId:
      response = .initProducerId(try InitProducerIdResponse(from: &reader, version: version))
    case .replicaStatus:
      response = .replicaStatus(try ReplicaStatusResponse(from: &reader, version: version))
    default:
      throw ProtocolError(
        .unknownApiKey, field: "response", offset: nil,
        message: "api key \(apiKey.rawValue) has no response decoder")
    }
    try reader.expectEnd("\(apiKey.name) response")
    return (header, response)
  }

  /// Encodes header and body without the frame length.
  public func encodePayload(header: ResponseHeader, version: Int16) -> [UInt8] {
    encode(header: header, version: version, framed: false)
  }

  /// Encodes the length prefix, header and body into one array (record bytes copied once).
  public func encodeFrame(header: ResponseHeader, version: Int16) -> [UInt8] {
    encode(header: header, version: version, framed: true)
  }

  private func encode(header: ResponseHeader, version: Int16, framed: Bool) -> [UInt8] {
    precondition(
      apiKey.supportedVersions?.contains(version) == true,
      "\(apiKey) version \(version) is not supported by this build")
    let body = self.body
    let headerBytesEstimate = 8 + (header.errorMessage?.utf8.count ?? 0)
    return encodeMessage(framed: framed, capacity: headerBytesEstimate + body.encodedBytesEstimate)
    { writer in
      header.encode(into: &writer)
      body.encode(into: &writer, version: version)
    }
  }
}

extension ResponseHeader {
  /// The framed form of ``encodeErrorOnly()``.
  public func encodeErrorOnlyFrame() -> [UInt8] {
    encodeMessage(framed: true, capacity: 64 + (errorMessage?.utf8.count ?? 0)) { writer in
      encode(into: &writer)
    }
  }
}

extension WireBody {
  fileprivate var apiKeyOfType: ApiKey { Self.apiKey }
}

/// Writes `content` into one buffer, optionally behind a back-filled frame length.
private func encodeMessage(
  framed: Bool, capacity: Int, _ content: (inout WireWriter) -> Void
) -> [UInt8] {
  var writer = WireWriter(reservingCapacity: capacity + (framed ? Framing.prefixBytes : 0))
  if framed {
    writer.writeInt32(0)
  }
  content(&writer)
  if framed {
    let payloadBytes = writer.count - Framing.prefixBytes
    precondition(payloadBytes <= Int(Int32.max), "payload of \(payloadBytes) bytes")
    writer.patchInt32(Int32(payloadBytes), at: 0)
  }
  return writer.bytes
}
