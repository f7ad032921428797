import Testing

@testable import StreamBusProtocol

@Suite struct RoundTripTests {
  @Test(arguments: Fixtures.requests.map(\.0))
  func requestRoundTrips(name: String) throws {
    let request = try #require(Fixtures.requests.first { $0.0 == name }).1
    for clientId in ["client-1", nil, "ünïcødé"] as [String?] {
      let header = RequestHeader(
        apiKey: request.apiKey, apiVersion: 0, correlationId: -12_345, clientId: clientId)
      let payload = request.encodePayload(header: header)
      let (decodedHeader, decoded) = try Request.decode(payload: payload)
      #expect(decodedHeader == header)
      #expect(decoded == request)
      // Encoding is canonical: decoding then encoding reproduces the bytes.
      #expect(decoded.encodePayload(header: decodedHeader) == payload)
    }
  }

  @Test(arguments: Fixtures.responses.map(\.0))
  func responseRoundTrips(name: String) throws {
    let response = try #require(Fixtures.responses.first { $0.0 == name }).1
    let headers = [
      ResponseHeader(correlationId: 99),
      ResponseHeader(correlationId: Int32.min, errorCode: .none, errorMessage: "note"),
      // A top-level error may still carry a body; it is decoded.
      ResponseHeader(correlationId: 1, errorCode: .requestTimedOut, errorMessage: nil),
    ]
    for header in headers {
      let payload = response.encodePayload(header: header, version: 0)
      let (decodedHeader, decoded) = try Response.decode(
        apiKey: response.apiKey, version: 0, payload: payload)
      #expect(decodedHeader == header)
      #expect(decoded == response)
    }
  }

  @Test func frameEncodingMatchesPayloadPlusPrefix() throws {
    for (_, request) in Fixtures.requests {
      let header = Fixtures.header(for: request)
      let payload = request.encodePayload(header: header)
      let frame = request.encodeFrame(header: header)
      #expect(frame == Framing.frame(payload))
      #expect(try Framing.checkedPayloadLength(prefix: frame) == payload.count)
    }
    for (_, response) in Fixtures.responses {
      let header = ResponseHeader(correlationId: 3)
      let frame = response.encodeFrame(header: header, version: 0)
      #expect(frame == Framing.frame(response.encodePayload(header: header, version: 0)))
    }
  }

  @Test func bigRecordsAreReservedOnce() throws {
    let (_, request) = try #require(Fixtures.requests.first { $0.0 == "produce big" })
    let frame = request.encodeFrame(header: Fixtures.header(for: request))
    // The estimate reserved the whole frame up front: no doubling growth happened.
    #expect(frame.capacity >= frame.count)
    #expect(frame.capacity < frame.count + 4096)
    #expect(frame.count > Fixtures.bigRecords.count)

    let (_, response) = try #require(Fixtures.responses.first { $0.0 == "fetch big" })
    let responseFrame = response.encodeFrame(header: ResponseHeader(correlationId: 1), version: 0)
    #expect(responseFrame.capacity < responseFrame.count + 4096)
  }

  @Test func errorOnlyResponseDecodesWithoutBody() throws {
    for (_, response) in Fixtures.responses {
      let header = ResponseHeader(
        correlationId: 5, errorCode: .invalidRequest, errorMessage: "bad body")
      let (decodedHeader, body) = try Response.decode(
        apiKey: response.apiKey, version: 0, payload: header.encodeErrorOnly())
      #expect(decodedHeader == header)
      #expect(body == nil)
      #expect(header.encodeErrorOnlyFrame() == Framing.frame(header.encodeErrorOnly()))
    }
  }

  @Test func successHeaderWithoutBodyIsTruncated() {
    let payload = ResponseHeader(correlationId: 5).encodeErrorOnly()
    let error = thrownError(ProtocolError.self) {
      _ = try Response.decode(apiKey: .metadata, version: 0, payload: payload)
    }
    #expect(error?.code == .truncated)
    #expect(error?.offset == payload.count)
  }

  @Test func unknownErrorCodesArePreserved() throws {
    let header = ResponseHeader(correlationId: 1, errorCode: ErrorCode(rawValue: -77))
    let decoded = try ResponseHeader.decode(payload: header.encodeErrorOnly())
    #expect(decoded.errorCode.rawValue == -77)
    #expect(!decoded.errorCode.isKnown)
    #expect(decoded.errorCode.name == "UNKNOWN_ERROR_CODE(-77)")
  }

  @Test func longErrorMessagesAreCutNotTrapped() throws {
    let message = String(repeating: "é", count: 20_000)  // 40 000 UTF-8 bytes
    let header = ResponseHeader(
      correlationId: 1, errorCode: .unknownServerError, errorMessage: message)
    let decoded = try ResponseHeader.decode(payload: header.encodeErrorOnly())
    let decodedMessage = try #require(decoded.errorMessage)
    #expect(decodedMessage.utf8.count <= Int(Int16.max))
    #expect(decodedMessage.utf8.count >= Int(Int16.max) - 1)
    #expect(message.hasPrefix(decodedMessage))
  }

  @Test func apiVersionsListsEverySupportedApi() {
    let response = ApiVersionsResponse.supportedByThisBuild
    #expect(
      response.apiKeys.map(\.apiKey.rawValue) == [0, 1, 2, 3, 18, 19, 20, 22, 1200])
    for range in response.apiKeys {
      #expect(range.minVersion == 0 && range.maxVersion == 0)
      // ReplicaStatus is internal (for operator tools) yet answered by every broker.
      #expect(!range.apiKey.isInternal || range.apiKey == .replicaStatus)
    }
  }

  @Test func requestHeaderLayoutIsBigEndian() {
    let request = Request.apiVersions(ApiVersionsRequest())
    let header = RequestHeader(
      apiKey: .apiVersions, apiVersion: 0, correlationId: 0x0102_0304, clientId: "ab")
    #expect(
      request.encodePayload(header: header) == [0, 18, 0, 0, 1, 2, 3, 4, 0, 2, 0x61, 0x62])
    let nullClient = RequestHeader(
      apiKey: .apiVersions, apiVersion: 0, correlationId: 1, clientId: nil)
    #expect(request.encodePayload(header: nullClient) == [0, 18, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF])
  }

  @Test func responseHeaderLayout() {
    let header = ResponseHeader(correlationId: 258, errorCode: .unsupportedVersion)
    #expect(header.encodeErrorOnly() == [0, 0, 1, 2, 0, 35, 0xFF, 0xFF])
  }
}
