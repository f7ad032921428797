import Testing

@testable import StreamBusProtocol

/// Builds a request payload by hand: a valid header followed by arbitrary body bytes.
private func rawRequest(
  apiKey: Int16, version: Int16 = 0, correlationId: Int32 = 31,
  body: (inout WireWriter) -> Void
) -> [UInt8] {
  var writer = WireWriter()
  RequestHeader(
    apiKey: ApiKey(rawValue: apiKey), apiVersion: version, correlationId: correlationId,
    clientId: "c"
  ).encode(into: &writer)
  body(&writer)
  return writer.bytes
}

/// The body error for `payload`, requiring that the header decoded.
private func bodyError(_ payload: [UInt8]) -> RequestBodyError? {
  thrownError(RequestBodyError.self) { _ = try Request.decode(payload: payload) }
}

private let headerBytes = 2 + 2 + 4 + 2 + 1  // clientId "c"

@Suite struct MalformedInputTests {
  @Test func everyTruncatedRequestThrows() throws {
    for (name, request) in Fixtures.smallRequests {
      let header = Fixtures.header(for: request)
      let payload = request.encodePayload(header: header)
      let headerLength = 10 + "client-1".utf8.count
      for length in 0..<payload.count {
        let prefix = Array(payload[0..<length])
        do {
          _ = try Request.decode(payload: prefix)
          Issue.record("\(name) truncated to \(length) bytes decoded")
        } catch let error as ProtocolError {
          #expect(length < headerLength, "\(name) at \(length): \(error)")
          #expect(error.code == .truncated)
        } catch let error as RequestBodyError {
          #expect(length >= headerLength, "\(name) at \(length): \(error)")
          #expect(error.header == header)
          #expect(error.errorCode == .invalidRequest)
          #expect(
            error.underlying.code == .truncated || error.underlying.code == .countTooLarge,
            "\(name) at \(length): \(error)")
        }
      }
    }
  }

  @Test func everyTruncatedResponseThrows() throws {
    for (name, response) in Fixtures.smallResponses {
      let payload = response.encodePayload(header: ResponseHeader(correlationId: 4), version: 0)
      for length in 0..<payload.count {
        let error = thrownError(ProtocolError.self) {
          _ = try Response.decode(
            apiKey: response.apiKey, version: 0, payload: Array(payload[0..<length]))
        }
        #expect(
          error?.code == .truncated || error?.code == .countTooLarge,
          "\(name) truncated to \(length): \(String(describing: error))")
      }
    }
  }

  @Test func trailingBytesAreRejected() throws {
    for (name, request) in Fixtures.smallRequests {
      let header = Fixtures.header(for: request)
      let payload = request.encodePayload(header: header) + [0]
      let error = bodyError(payload)
      #expect(error?.underlying.code == .trailingBytes, "\(name)")
      #expect(error?.underlying.offset == payload.count - 1)
      #expect(error?.errorCode == .invalidRequest)
      #expect(error?.errorResponseHeader.correlationId == header.correlationId)
    }
    for (name, response) in Fixtures.smallResponses {
      let payload =
        response.encodePayload(header: ResponseHeader(correlationId: 4), version: 0) + [1, 2]
      let error = thrownError(ProtocolError.self) {
        _ = try Response.decode(apiKey: response.apiKey, version: 0, payload: payload)
      }
      #expect(error?.code == .trailingBytes, "\(name)")
    }
  }

  @Test func unknownApiKeyIsABodyError() {
    for apiKey: Int16 in [4, 17, 21, 999, 1000, 1500, -1, Int16.max] {
      let error = bodyError(rawRequest(apiKey: apiKey) { _ in })
      #expect(error?.underlying.code == .unknownApiKey, "\(apiKey)")
      #expect(error?.errorCode == .invalidRequest)
      #expect(error?.header.correlationId == 31)
    }
    #expect(ApiKey(rawValue: 1000).isInternal)
    #expect(!ApiKey.produce.isInternal)
  }

  @Test func unsupportedVersionIsABodyError() {
    for version: Int16 in [1, 7, -1] {
      let error = bodyError(rawRequest(apiKey: 3, version: version) { $0.writeInt32(-1) })
      #expect(error?.underlying.code == .unsupportedVersion)
      #expect(error?.errorCode == .unsupportedVersion)
      #expect(error?.errorResponseHeader.errorCode == .unsupportedVersion)
    }
    let responseError = thrownError(ProtocolError.self) {
      _ = try Response.decode(
        apiKey: .fetch, version: 3,
        payload: ResponseHeader(correlationId: 1).encodeErrorOnly() + [0, 0, 0, 0])
    }
    #expect(responseError?.code == .unsupportedVersion)
    let unknownResponse = thrownError(ProtocolError.self) {
      _ = try Response.decode(apiKey: ApiKey(rawValue: 1001), version: 0, payload: [])
    }
    #expect(unknownResponse?.code == .unknownApiKey)
  }

  @Test func hugeCountThrowsFastWithoutAllocating() {
    let payload = rawRequest(apiKey: 0) { writer in
      writer.writeInt16(1)
      writer.writeInt32(1000)
      writer.writeInt32(Int32.max)  // topics count
      for _ in 0..<10 { writer.writeInt8(0) }
    }
    let clock = ContinuousClock()
    var error: RequestBodyError?
    let elapsed = clock.measure { error = bodyError(payload) }
    #expect(error?.underlying.code == .countTooLarge)
    #expect(error?.underlying.field == "produce.topics")
    #expect(error?.underlying.offset == headerBytes + 6)
    #expect(elapsed < .milliseconds(50))
  }

  @Test func countJustAboveTheRemainingBytesIsRejected() {
    // Two partition-less topics named "" need 6 bytes each; 11 bytes cannot hold them.
    let payload = rawRequest(apiKey: 20) { writer in
      writer.writeInt32(6)  // names: six empty strings need 12 bytes
      for _ in 0..<11 { writer.writeInt8(0) }
    }
    #expect(bodyError(payload)?.underlying.code == .countTooLarge)
  }

  @Test func negativeCountsAreRejected() {
    for count: Int32 in [-2, -100, Int32.min] {
      let payload = rawRequest(apiKey: 20) { writer in
        writer.writeInt32(count)
        writer.writeInt32(0)
      }
      #expect(bodyError(payload)?.underlying.code == .negativeCount, "\(count)")
    }
    // -1 (null) is only allowed where the array is nullable.
    let nullNames = rawRequest(apiKey: 20) { writer in
      writer.writeInt32(-1)
      writer.writeInt32(0)
    }
    #expect(bodyError(nullNames)?.underlying.code == .negativeCount)
    let nullMetadataTopics = rawRequest(apiKey: 3) { $0.writeInt32(-1) }
    #expect(throws: Never.self) { _ = try Request.decode(payload: nullMetadataTopics) }
    let minusTwoMetadataTopics = rawRequest(apiKey: 3) { $0.writeInt32(-2) }
    #expect(bodyError(minusTwoMetadataTopics)?.underlying.code == .negativeCount)
  }

  @Test func wrongLengthsAreRejected() {
    // String length beyond the payload.
    let longName = rawRequest(apiKey: 20) { writer in
      writer.writeInt32(1)
      writer.writeInt16(50)
      writer.writeInt32(0)
    }
    let longNameError = bodyError(longName)
    #expect(longNameError?.underlying.code == .truncated)
    #expect(longNameError?.underlying.field == "deleteTopics.names")
    #expect(longNameError?.underlying.offset == headerBytes + 6)

    // Null (or below -1) where a string is required.
    for length: Int16 in [-1, -2] {
      let payload = rawRequest(apiKey: 20) { writer in
        writer.writeInt32(1)
        writer.writeInt16(length)
        writer.writeInt32(0)
      }
      #expect(bodyError(payload)?.underlying.code == .invalidLength, "\(length)")
    }

    // Records length negative, null, or beyond the payload.
    for (length, code) in [
      (-5, ProtocolError.Code.invalidLength), (-1, .invalidLength), (9, .truncated),
    ] {
      let payload = rawRequest(apiKey: 0) { writer in
        writer.writeInt16(1)
        writer.writeInt32(1000)
        writer.writeInt32(1)
        writer.writeString("t")
        writer.writeInt32(1)
        writer.writeInt32(0)
        writer.writeInt32(Int32(length))
        writer.writeInt32(0)
      }
      let error = bodyError(payload)
      #expect(error?.underlying.code == code, "\(length)")
      #expect(error?.underlying.field == "produce.topics.partitions.records")
    }
  }

  @Test func invalidUTF8IsRejected() {
    let badBytes: [[UInt8]] = [[0xFF], [0xC3], [0x61, 0xE2, 0x82], [0xED, 0xA0, 0x80]]
    for bytes in badBytes {
      let payload = rawRequest(apiKey: 20) { writer in
        writer.writeInt32(1)
        writer.writeInt16(Int16(bytes.count))
        for byte in bytes { writer.writeInt8(Int8(bitPattern: byte)) }
        writer.writeInt32(0)
      }
      let error = bodyError(payload)
      #expect(error?.underlying.code == .invalidUTF8, "\(bytes)")
      #expect(error?.errorCode == .invalidRequest)
    }
    // In the header, the same fault means the header is unreadable.
    let badClientId: [UInt8] = [0, 3, 0, 0, 0, 0, 0, 1, 0, 1, 0xFF, 0, 0, 0, 0]
    let headerError = thrownError(ProtocolError.self) {
      _ = try Request.decode(payload: badClientId)
    }
    #expect(headerError?.code == .invalidUTF8)
    #expect(headerError?.field == "requestHeader.clientId")
    #expect(headerError?.offset == 10)
  }

  @Test func invalidBooleanIsRejected() {
    let payload = rawRequest(apiKey: 19) { writer in
      writer.writeInt32(0)
      writer.writeInt32(100)
      writer.writeInt8(2)
    }
    let error = bodyError(payload)
    #expect(error?.underlying.code == .invalidValue)
    #expect(error?.underlying.field == "createTopics.validateOnly")
  }

  @Test func unreadableHeaderIsNotABodyError() {
    let cases: [[UInt8]] = [[], [0], [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1, 0]]
    for payload in cases {
      let error = thrownError(ProtocolError.self) { _ = try Request.decode(payload: payload) }
      #expect(error?.code == .truncated, "\(payload)")
    }
    let negativeClientId: [UInt8] = [0, 3, 0, 0, 0, 0, 0, 1, 0xFF, 0xFE]
    let error = thrownError(ProtocolError.self) {
      _ = try Request.decode(payload: negativeClientId)
    }
    #expect(error?.code == .invalidLength)
  }

  @Test func errorDescriptionsNameFieldAndOffset() {
    let error = ProtocolError(
      .truncated, field: "fetch.topics.name", offset: 17, message: "needs 5 bytes, 2 left")
    #expect(
      error.description == "truncated in 'fetch.topics.name' at byte 17: needs 5 bytes, 2 left")
  }
}

@Suite struct ErrorResponseTests {
  @Test func bodyErrorAnswersWithHeaderOnlyFrame() throws {
    let payload = rawRequest(apiKey: 20, correlationId: 77) { $0.writeInt32(-3) }
    let error = try #require(bodyError(payload))
    var decoder = FrameDecoder()
    let frames = try decoder.feed(error.errorResponseFrame())
    #expect(frames.count == 1)
    let (header, body) = try Response.decode(
      apiKey: .deleteTopics, version: 0, payload: frames[0])
    #expect(header.correlationId == 77)
    #expect(header.errorCode == .invalidRequest)
    #expect(header.errorMessage?.contains("deleteTopics.names") == true)
    #expect(body == nil)
  }

  @Test func unsupportedApiVersionsStillListsVersions() throws {
    let payload = rawRequest(apiKey: 18, version: 9, correlationId: 5) { _ in }
    let error = try #require(bodyError(payload))
    var decoder = FrameDecoder()
    let frame = try #require(try decoder.feed(error.errorResponseFrame()).first)
    // A client that asked for version 9 (which this build cannot decode either) still reads
    // the fallback body.
    let (header, body) = try Response.decode(apiKey: .apiVersions, version: 9, payload: frame)
    #expect(header.correlationId == 5)
    #expect(header.errorCode == .unsupportedVersion)
    #expect(body == .apiVersions(.supportedByThisBuild))
  }

  @Test func unsupportedVersionOfOtherApisIsHeaderOnly() throws {
    let payload = rawRequest(apiKey: 1, version: 4) { _ in }
    let error = try #require(bodyError(payload))
    let frame = error.errorResponseFrame()
    #expect(frame == Framing.frame(error.errorResponseHeader.encodeErrorOnly()))
    #expect(error.errorResponseHeader.errorCode == .unsupportedVersion)
  }
}
