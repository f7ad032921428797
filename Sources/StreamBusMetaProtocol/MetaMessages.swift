import StreamBusProtocol

/// Every metaserver request body this build understands.
public enum MetaRequest: Sendable, Equatable {
  case brokerRegister(BrokerRegisterRequest)
  case brokerHeartbeat(BrokerHeartbeatRequest)
  case alterPartition(AlterPartitionRequest)
  case allocateProducerIds(AllocateProducerIdsRequest)
  case fetchMetadata(FetchMetadataRequest)
  case createTopics(MetaCreateTopicsRequest)
  case deleteTopics(MetaDeleteTopicsRequest)
  case alterConfigs(AlterConfigsRequest)
  case describeCluster(DescribeClusterRequest)
  case listTopics(ListTopicsRequest)
  case describeTopic(DescribeTopicRequest)
  case quorumStatus(QuorumStatusRequest)
  case addLearner(AddLearnerRequest)
  case addVoter(AddVoterRequest)
  case removeVoter(RemoveVoterRequest)
  case transferLeadership(TransferLeadershipRequest)
  case electPreferredLeaders(ElectPreferredLeadersRequest)

  public var apiKey: ApiKey { body.apiKeyOfType }

  /// The request body as an existential, for code that only encodes it.
  public var body: any WireBody {
    switch self {
    case .brokerRegister(let body): return body
    case .brokerHeartbeat(let body): return body
    case .alterPartition(let body): return body
    case .allocateProducerIds(let body): return body
    case .fetchMetadata(let body): return body
    case .createTopics(let body): return body
    case .deleteTopics(let body): return body
    case .alterConfigs(let body): return body
    case .describeCluster(let body): return body
    case .listTopics(let body): return body
    case .describeTopic(let body): return body
    case .quorumStatus(let body): return body
    case .addLearner(let body): return body
    case .addVoter(let body): return body
    case .removeVoter(let body): return body
    case .transferLeadership(let body): return body
    case .electPreferredLeaders(let body): return body
    }
  }

  /// Decodes a request payload (the bytes after the frame length).
  ///
  /// - Throws: ``ProtocolError`` when the header itself is unreadable: close the connection,
  ///   the peer's framing or protocol cannot be trusted. ``RequestBodyError`` when the header
  ///   is fine but the API is not a metaserver API, the version is unsupported, or the body
  ///   is malformed or followed by extra bytes: answer with
  ///   ``RequestBodyError/errorResponseFrame()`` and keep the connection.
  public static func decode(payload: [UInt8]) throws -> (RequestHeader, MetaRequest) {
    var reader = WireReader(payload)
    let header = try RequestHeader(from: &reader)
    return (header, try decodeBody(header: header, reader: &reader))
  }

  /// Decodes the body of `payload` (the whole request payload, header included) for a
  /// server that already read `header` from it, e.g. to route between API families.
  ///
  /// - Throws: as ``decode(payload:)``; a `header` that is not the one at the start of
  ///   `payload` is a ``ProtocolError`` (close the connection).
  public static func decode(header: RequestHeader, payload: [UInt8]) throws -> MetaRequest {
    var reader = WireReader(payload)
    let actualHeader = try RequestHeader(from: &reader)
    guard actualHeader == header else {
      throw ProtocolError(
        .invalidValue, field: "requestHeader", offset: 0,
        message: "the given header is not the one at the start of the payload")
    }
    return try decodeBody(header: header, reader: &reader)
  }

  private static func decodeBody(header: RequestHeader, reader: inout WireReader) throws
    -> MetaRequest
  {
    do {
      let bodyStart = reader.offset
      guard let versions = MetaApiKey.supportedVersions(header.apiKey) else {
        throw ProtocolError(
          .unknownApiKey, field: "requestHeader.apiKey", offset: 0,
          message: "api key \(header.apiKey.rawValue) is not a metaserver API")
      }
      guard versions.contains(header.apiVersion) else {
        throw ProtocolError(
          .unsupportedVersion, field: "requestHeader.apiVersion", offset: 2,
          message:
            "\(MetaApiKey.name(header.apiKey)) version \(header.apiVersion) is not supported "
            + "(supported \(versions.lowerBound)...\(versions.upperBound))")
      }
      let request = try decodeBody(apiKey: header.apiKey, version: header.apiVersion, &reader)
      try reader.expectEnd(
        "\(MetaApiKey.name(header.apiKey)) request (body started at byte \(bodyStart))")
      return request
    } catch let error as ProtocolError {
      throw RequestBodyError(header: header, underlying: error)
    }
  }

  private static func decodeBody(
    apiKey: ApiKey, version: Int16, _ reader: inout WireReader
  ) throws -> MetaRequest {
    switch apiKey {
    case MetaApiKey.brokerRegister:
      return .brokerRegister(try BrokerRegisterRequest(from: &reader, version: version))
    case MetaApiKey.brokerHeartbeat:
      return .brokerHeartbeat(try BrokerHeartbeatRequest(from: &reader, version: version))
    case MetaApiKey.alterPartition:
      return .alterPartition(try AlterPartitionRequest(from: &reader, version: version))
    case MetaApiKey.allocateProducerIds:
      return .allocateProducerIds(try AllocateProducerIdsRequest(from: &reader, version: version))
    case MetaApiKey.fetchMetadata:
      return .fetchMetadata(try FetchMetadataRequest(from: &reader, version: version))
    case MetaApiKey.createTopics:
      return .createTopics(try MetaCreateTopicsRequest(from: &reader, version: version))
    case MetaApiKey.deleteTopics:
      return .deleteTopics(try MetaDeleteTopicsRequest(from: &reader, version: version))
    case MetaApiKey.alterConfigs:
      return .alterConfigs(try AlterConfigsRequest(from: &reader, version: version))
    case MetaApiKey.describeCluster:
      return .describeCluster(try DescribeClusterRequest(from: &reader, version: version))
    case MetaApiKey.listTopics:
      return .listTopics(try ListTopicsRequest(from: &reader, version: version))
    case MetaApiKey.describeTopic:
      return .describeTopic(try DescribeTopicRequest(from: &reader, version: version))
    case MetaApiKey.quorumStatus:
      return .quorumStatus(try QuorumStatusRequest(from: &reader, version: version))
    case MetaApiKey.addLearner:
      return .addLearner(try AddLearnerRequest(from: &reader, version: version))
    case MetaApiKey.addVoter:
      return .addVoter(try AddVoterRequest(from: &reader, version: version))
    case MetaApiKey.removeVoter:
      return .removeVoter(try RemoveVoterRequest(from: &reader, version: version))
    case MetaApiKey.transferLeadership:
      return .transferLeadership(try TransferLeadershipRequest(from: &reader, version: version))
    case MetaApiKey.electPreferredLeaders:
      return .electPreferredLeaders(
        try ElectPreferredLeadersRequest(from: &reader, version: version))
    default:
      // Unreachable while `MetaApiKey.all` and this switch agree; reported, not trapped.
      throw ProtocolError(
        .unknownApiKey, field: "requestHeader.apiKey", offset: 0,
        message: "api key \(apiKey.rawValue) has no decoder")
    }
  }

  /// Encodes header and body without the frame length.
  public func encodePayload(header: RequestHeader) -> [UInt8] {
    MetaMessage.encodeRequest(body, header: header, framed: false)
  }

  /// Encodes the length prefix, header and body into one array.
  public func encodeFrame(header: RequestHeader) -> [UInt8] {
    MetaMessage.encodeRequest(body, header: header, framed: true)
  }
}

/// Every metaserver response body this build understands, plus the NOT_LEADER answer that
/// any API may get.
public enum MetaResponse: Sendable, Equatable {
  case brokerRegister(BrokerRegisterResponse)
  case brokerHeartbeat(BrokerHeartbeatResponse)
  case alterPartition(AlterPartitionResponse)
  case allocateProducerIds(AllocateProducerIdsResponse)
  case fetchMetadata(FetchMetadataResponse)
  case createTopics(MetaCreateTopicsResponse)
  case deleteTopics(MetaDeleteTopicsResponse)
  case alterConfigs(AlterConfigsResponse)
  case describeCluster(DescribeClusterResponse)
  case listTopics(ListTopicsResponse)
  case describeTopic(DescribeTopicResponse)
  case quorumStatus(QuorumStatusResponse)
  case addLearner(AddLearnerResponse)
  case addVoter(AddVoterResponse)
  case removeVoter(RemoveVoterResponse)
  case transferLeadership(TransferLeadershipResponse)
  case electPreferredLeaders(ElectPreferredLeadersResponse)
  /// Sent with header error code ``ErrorCode/notLeader``, whatever the API asked.
  case notLeader(NotLeaderBody)

  /// The API this body answers; nil for ``notLeader(_:)``, which answers any.
  public var apiKey: ApiKey? { apiBody?.apiKeyOfType }

  private var apiBody: (any WireBody)? {
    switch self {
    case .brokerRegister(let body): return body
    case .brokerHeartbeat(let body): return body
    case .alterPartition(let body): return body
    case .allocateProducerIds(let body): return body
    case .fetchMetadata(let body): return body
    case .createTopics(let body): return body
    case .deleteTopics(let body): return body
    case .alterConfigs(let body): return body
    case .describeCluster(let body): return body
    case .listTopics(let body): return body
    case .describeTopic(let body): return body
    case .quorumStatus(let body): return body
    case .addLearner(let body): return body
    case .addVoter(let body): return body
    case .removeVoter(let body): return body
    case .transferLeadership(let body): return body
    case .electPreferredLeaders(let body): return body
    case .notLeader: return nil
    }
  }

  /// Decodes a response payload for a request the caller sent with `apiKey` at `version`.
  ///
  /// - Returns: the header and the body. The body is ``notLeader(_:)`` when the header says
  ///   NOT_LEADER (an empty body there means the leader is unknown), and nil when the header
  ///   carries another error code and nothing follows it (the generic error response).
  /// - Throws: ``ProtocolError`` for malformed bytes, trailing bytes, or an api key /
  ///   version this build cannot decode.
  public static func decode(
    apiKey: ApiKey, version: Int16, payload: [UInt8]
  ) throws -> (ResponseHeader, MetaResponse?) {
    guard let versions = MetaApiKey.supportedVersions(apiKey) else {
      throw ProtocolError(
        .unknownApiKey, field: "response", offset: nil,
        message: "api key \(apiKey.rawValue) is not a metaserver API")
    }
    guard versions.contains(version) else {
      throw ProtocolError(
        .unsupportedVersion, field: "response", offset: nil,
        message: "\(MetaApiKey.name(apiKey)) version \(version) is not supported")
    }
    var reader = WireReader(payload)
    let header = try ResponseHeader(from: &reader)
    if header.errorCode == .notLeader {
      let body = reader.isAtEnd ? NotLeaderBody.unknownLeader : try NotLeaderBody(from: &reader)
      try reader.expectEnd("\(MetaApiKey.name(apiKey)) NOT_LEADER response")
      return (header, .notLeader(body))
    }
    if header.errorCode != .none && reader.isAtEnd {
      return (header, nil)
    }
    let response = try decodeBody(apiKey: apiKey, version: version, &reader)
    try reader.expectEnd("\(MetaApiKey.name(apiKey)) response")
    return (header, response)
  }

  private static func decodeBody(
    apiKey: ApiKey, version: Int16, _ reader: inout WireReader
  ) throws -> MetaResponse {
    switch apiKey {
    case MetaApiKey.brokerRegister:
      return .brokerRegister(try BrokerRegisterResponse(from: &reader, version: version))
    case MetaApiKey.brokerHeartbeat:
      return .brokerHeartbeat(try BrokerHeartbeatResponse(from: &reader, version: version))
    case MetaApiKey.alterPartition:
      return .alterPartition(try AlterPartitionResponse(from: &reader, version: version))
    case MetaApiKey.allocateProducerIds:
      return .allocateProducerIds(
        try AllocateProducerIdsResponse(from: &reader, version: version))
    case MetaApiKey.fetchMetadata:
      return .fetchMetadata(try FetchMetadataResponse(from: &reader, version: version))
    case MetaApiKey.createTopics:
      return .createTopics(try MetaCreateTopicsResponse(from: &reader, version: version))
    case MetaApiKey.deleteTopics:
      return .deleteTopics(try MetaDeleteTopicsResponse(from: &reader, version: version))
    case MetaApiKey.alterConfigs:
      return .alterConfigs(try AlterConfigsResponse(from: &reader, version: version))
    case MetaApiKey.describeCluster:
      return .describeCluster(try DescribeClusterResponse(from: &reader, version: version))
    case MetaApiKey.listTopics:
      return .listTopics(try ListTopicsResponse(from: &reader, version: version))
    case MetaApiKey.describeTopic:
      return .describeTopic(try DescribeTopicResponse(from: &reader, version: version))
    case MetaApiKey.quorumStatus:
      return .quorumStatus(try QuorumStatusResponse(from: &reader, version: version))
    case MetaApiKey.addLearner:
      return .addLearner(try AddLearnerResponse(from: &reader, version: version))
    case MetaApiKey.addVoter:
      return .addVoter(try AddVoterResponse(from: &reader, version: version))
    case MetaApiKey.removeVoter:
      return .removeVoter(try RemoveVoterResponse(from: &reader, version: version))
    case MetaApiKey.transferLeadership:
      return .transferLeadership(try TransferLeadershipResponse(from: &reader, version: version))
    case MetaApiKey.electPreferredLeaders:
      return .electPreferredLeaders(
        try ElectPreferredLeadersResponse(from: &reader, version: version))
    default:
      throw ProtocolError(
        .unknownApiKey, field: "response", offset: nil,
        message: "api key \(apiKey.rawValue) has no response decoder")
    }
  }

  /// Encodes header and body without the frame length.
  public func encodePayload(header: ResponseHeader, version: Int16) -> [UInt8] {
    encode(header: header, version: version, framed: false)
  }

  /// Encodes the length prefix, header and body into one array.
  ///
  /// A ``notLeader(_:)`` body needs a header whose error code is NOT_LEADER.
  public func encodeFrame(header: ResponseHeader, version: Int16) -> [UInt8] {
    encode(header: header, version: version, framed: true)
  }

  private func encode(header: ResponseHeader, version: Int16, framed: Bool) -> [UInt8] {
    if case .notLeader(let body) = self {
      precondition(header.errorCode == .notLeader, "a NOT_LEADER body under \(header.errorCode)")
      return MetaMessage.encode(framed: framed, capacity: 64) { writer in
        header.encode(into: &writer)
        body.encode(into: &writer)
      }
    }
    guard let body = apiBody else { preconditionFailure("every other case has an API body") }
    return MetaMessage.encodeResponse(body, header: header, version: version, framed: framed)
  }
}

/// How a metaserver answered one request, decoded for the API the caller sent.
public enum MetaReply<Body: WireBody>: Sendable {
  /// Header error code NONE and the API's body.
  case success(Body)
  /// Header error code NOT_LEADER: try the named leader.
  case notLeader(NotLeaderBody)
  /// Any other header error code (read it from the header); the body, if any, is ignored.
  case failure
}

/// Encoding and decoding entry points for code that works with one body type at a time
/// (clients, which know what they sent, and handlers building an answer).
public enum MetaMessage {
  /// Frames `body` behind `header` (length prefix, header, body) in one array.
  public static func encodeRequestFrame(_ body: some WireBody, header: RequestHeader) -> [UInt8] {
    encodeRequest(body, header: header, framed: true)
  }

  /// `body` behind `header`, without the frame length (what `FrameConnection.send` takes).
  public static func encodeRequestPayload(_ body: some WireBody, header: RequestHeader)
    -> [UInt8]
  {
    encodeRequest(body, header: header, framed: false)
  }

  /// A success answer's payload (what a `FrameRequestHandler` returns): `header` (error
  /// code NONE) and `body`.
  public static func encodeResponsePayload(
    _ body: some WireBody, header: ResponseHeader, version: Int16
  ) -> [UInt8] {
    encodeResponse(body, header: header, version: version, framed: false)
  }

  /// As ``encodeResponsePayload(_:header:version:)`` behind its frame length.
  public static func encodeResponseFrame(
    _ body: some WireBody, header: ResponseHeader, version: Int16
  ) -> [UInt8] {
    encodeResponse(body, header: header, version: version, framed: true)
  }

  /// The NOT_LEADER answer's payload for the request with `correlationId`, whatever its API.
  public static func notLeaderResponsePayload(
    correlationId: Int32, leader: NotLeaderBody, message: String? = nil
  ) -> [UInt8] {
    let text =
      message
      ?? (leader.leaderAddress.map { "not the leader; the leader is \(leader.leaderID) at \($0)" }
        ?? "not the leader; the leader is not known")
    return MetaResponse.notLeader(leader).encodePayload(
      header: ResponseHeader(
        correlationId: correlationId, errorCode: .notLeader, errorMessage: text),
      version: 0)
  }

  /// A header-only error answer's payload: the whole request failed with `errorCode`.
  public static func errorResponsePayload(
    correlationId: Int32, errorCode: ErrorCode, message: String?
  ) -> [UInt8] {
    precondition(errorCode != .none, "an error answer needs an error code")
    return ResponseHeader(correlationId: correlationId, errorCode: errorCode, errorMessage: message)
      .encodeErrorOnly()
  }

  /// Decodes the answer to a request of type `Request` sent at `version`.
  ///
  /// - Throws: ``ProtocolError`` for malformed bytes or trailing bytes after a body.
  public static func decodeReply<Request: MetaRequestBody>(
    to request: Request.Type, version: Int16, payload: [UInt8]
  ) throws -> (ResponseHeader, MetaReply<Request.Response>) {
    var reader = WireReader(payload)
    let header = try ResponseHeader(from: &reader)
    let name = MetaApiKey.name(Request.apiKey)
    switch header.errorCode {
    case .none:
      let body = try Request.Response(from: &reader, version: version)
      try reader.expectEnd("\(name) response")
      return (header, .success(body))
    case .notLeader:
      let body = reader.isAtEnd ? NotLeaderBody.unknownLeader : try NotLeaderBody(from: &reader)
      try reader.expectEnd("\(name) NOT_LEADER response")
      return (header, .notLeader(body))
    default:
      return (header, .failure)
    }
  }

  static func encodeRequest(_ body: some WireBody, header: RequestHeader, framed: Bool)
    -> [UInt8]
  {
    precondition(
      header.apiKey == body.apiKeyOfType,
      "header api key \(header.apiKey) for a body of \(body.apiKeyOfType)")
    precondition(
      MetaApiKey.supportedVersions(header.apiKey)?.contains(header.apiVersion) == true,
      "\(MetaApiKey.name(header.apiKey)) version \(header.apiVersion) is not supported by this build"
    )
    let headerBytesEstimate = 10 + (header.clientId?.utf8.count ?? 0)
    return encode(framed: framed, capacity: headerBytesEstimate + body.encodedBytesEstimate) {
      writer in
      header.encode(into: &writer)
      body.encode(into: &writer, version: header.apiVersion)
    }
  }

  static func encodeResponse(
    _ body: some WireBody, header: ResponseHeader, version: Int16, framed: Bool
  ) -> [UInt8] {
    precondition(
      MetaApiKey.supportedVersions(body.apiKeyOfType)?.contains(version) == true,
      "\(MetaApiKey.name(body.apiKeyOfType)) version \(version) is not supported by this build")
    let headerBytesEstimate = 8 + (header.errorMessage?.utf8.count ?? 0)
    return encode(framed: framed, capacity: headerBytesEstimate + body.encodedBytesEstimate) {
      writer in
      header.encode(into: &writer)
      body.encode(into: &writer, version: version)
    }
  }

  /// Writes `content` into one buffer, optionally behind a back-filled frame length.
  static func encode(framed: Bool, capacity: Int, _ content: (inout WireWriter) -> Void)
    -> [UInt8]
  {
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
}

extension WireBody {
  var apiKeyOfType: ApiKey { Self.apiKey }
}
