import StreamBusProtocol
import Testing

@testable import StreamBusMetaProtocol

/// A request payload with a valid header for `apiKey` and arbitrary body bytes.
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

private func answerCorrelationId(_ payload: [UInt8]) -> Int32? {
  try? ResponseHeader.decode(payload: payload).correlationId
}

private func bodyError(_ payload: [UInt8]) -> RequestBodyError? {
  thrownError(RequestBodyError.self) { _ = try MetaRequest.decode(payload: payload) }
}

@Suite struct MetaMalformedInputTests {
  /// A cut inside the header closes the connection (ProtocolError); a cut inside the body is
  /// answered (RequestBodyError with the header's correlation id and INVALID_REQUEST).
  @Test func everyTruncationOfEveryRequestThrowsTheRightKind() throws {
    for (name, request) in MetaFixtures.requests {
      let header = MetaFixtures.header(for: request)
      let payload = request.encodePayload(header: header)
      for length in 0..<payload.count {
        let prefix = Array(payload[0..<length])
        do {
          _ = try MetaRequest.decode(payload: prefix)
          Issue.record("\(name) truncated to \(length) bytes decoded")
        } catch let error as ProtocolError {
          #expect(length < MetaFixtures.requestHeaderBytes, "\(name) at \(length): \(error)")
          #expect(error.code == .truncated, "\(name) at \(length): \(error)")
        } catch let error as RequestBodyError {
          #expect(length >= MetaFixtures.requestHeaderBytes, "\(name) at \(length): \(error)")
          #expect(error.header == header)
          #expect(error.errorCode == .invalidRequest)
          #expect(
            error.underlying.code == .truncated || error.underlying.code == .countTooLarge,
            "\(name) at \(length): \(error)")
          let answer = Array(error.errorResponseFrame().dropFirst(4))
          #expect(answerCorrelationId(answer) == header.correlationId)
        } catch {
          Issue.record("\(name) at \(length): unexpected error \(error)")
        }
      }
    }
  }

  @Test func everyTruncationOfEveryResponseThrows() {
    for (name, response) in MetaFixtures.responses {
      guard let apiKey = response.apiKey else { continue }
      let payload = response.encodePayload(header: ResponseHeader(correlationId: 4), version: 0)
      for length in 0..<payload.count {
        let error = thrownError(ProtocolError.self) {
          _ = try MetaResponse.decode(
            apiKey: apiKey, version: 0, payload: Array(payload[0..<length]))
        }
        #expect(
          error?.code == .truncated || error?.code == .countTooLarge,
          "\(name) truncated to \(length): \(String(describing: error))")
      }
    }
  }

  @Test func trailingBytesAreRejected() {
    for (name, request) in MetaFixtures.requests {
      let header = MetaFixtures.header(for: request)
      let payload = request.encodePayload(header: header) + [0]
      let error = bodyError(payload)
      #expect(error?.underlying.code == .trailingBytes, "\(name)")
      #expect(error?.underlying.offset == payload.count - 1, "\(name)")
      #expect(error?.errorResponseHeader.correlationId == header.correlationId)
    }
    for (name, response) in MetaFixtures.responses {
      guard let apiKey = response.apiKey else { continue }
      let payload =
        response.encodePayload(header: ResponseHeader(correlationId: 4), version: 0) + [1, 2]
      let error = thrownError(ProtocolError.self) {
        _ = try MetaResponse.decode(apiKey: apiKey, version: 0, payload: payload)
      }
      #expect(error?.code == .trailingBytes, "\(name)")
    }
  }

  @Test func unknownApiKeysAreAnsweredNotFatal() {
    for apiKey: Int16 in [0, 3, 19, 1000, 1099, 1105, 1109, 1122, 1999, -1, Int16.max] {
      let error = bodyError(rawRequest(apiKey: apiKey) { _ in })
      #expect(error?.underlying.code == .unknownApiKey, "\(apiKey)")
      #expect(error?.errorCode == .invalidRequest)
      #expect(error?.header.correlationId == 31)
    }
    let response = thrownError(ProtocolError.self) {
      _ = try MetaResponse.decode(apiKey: ApiKey.produce, version: 0, payload: [])
    }
    #expect(response?.code == .unknownApiKey)
  }

  @Test func unsupportedVersionsAreAnsweredWithUnsupportedVersion() {
    for version: Int16 in [1, 7, -1] {
      let error = bodyError(rawRequest(apiKey: 1116, version: version) { _ in })
      #expect(error?.underlying.code == .unsupportedVersion)
      #expect(error?.errorCode == .unsupportedVersion)
      #expect(error?.errorResponseHeader.errorCode == .unsupportedVersion)
      #expect(error?.underlying.message.contains("QuorumStatus") == true)
    }
    let response = thrownError(ProtocolError.self) {
      _ = try MetaResponse.decode(
        apiKey: MetaApiKey.quorumStatus, version: 3,
        payload: ResponseHeader(correlationId: 1).encodeErrorOnly())
    }
    #expect(response?.code == .unsupportedVersion)
  }

  @Test func unreadableHeadersAreFatal() {
    let error = thrownError(ProtocolError.self) { _ = try MetaRequest.decode(payload: [4, 76]) }
    #expect(error?.code == .truncated)
    var writer = WireWriter()
    writer.writeInt16(1116)
    writer.writeInt16(0)
    writer.writeInt32(1)
    writer.writeInt16(-7)
    #expect(
      thrownError(ProtocolError.self) { _ = try MetaRequest.decode(payload: writer.bytes) }?.code
        == .invalidLength)
  }

  @Test func aHeaderThatIsNotThePayloadsIsRejected() throws {
    let payload = rawRequest(apiKey: 1116) { _ in }
    let (header, request) = try MetaRequest.decode(payload: payload)
    #expect(try MetaRequest.decode(header: header, payload: payload) == request)
    var other = header
    other.correlationId += 1
    let error = thrownError(ProtocolError.self) {
      _ = try MetaRequest.decode(header: other, payload: payload)
    }
    #expect(error?.code == .invalidValue)
  }

  @Test func hugeCountsFailFastWithoutAllocating() {
    let payload = rawRequest(apiKey: 1111) { $0.writeInt32(Int32.max) }
    let error = bodyError(payload)
    #expect(error?.underlying.code == .countTooLarge)
    let negative = bodyError(rawRequest(apiKey: 1111) { $0.writeInt32(-2) })
    #expect(negative?.underlying.code == .negativeCount)
    let nullNames = bodyError(rawRequest(apiKey: 1111) { $0.writeInt32(-1) })
    #expect(nullNames?.underlying.code == .negativeCount)
  }

  @Test func configKeysMustBeUniqueAndAscending() {
    func createTopics(keys: [String]) -> [UInt8] {
      rawRequest(apiKey: 1110) { writer in
        writer.writeInt32(1)
        writer.writeString("t")
        writer.writeInt32(1)
        writer.writeInt16(1)
        writer.writeInt32(Int32(keys.count))
        for key in keys {
          writer.writeString(key)
          writer.writeString("v")
        }
        writer.writeBool(false)
      }
    }
    #expect(bodyError(createTopics(keys: ["a", "b"])) == nil)
    for keys in [["a", "a"], ["b", "a"]] {
      let error = bodyError(createTopics(keys: keys))
      #expect(error?.underlying.code == .invalidValue, "\(keys)")
      #expect(error?.underlying.field == "createTopics.topics.configs")
    }
  }

  @Test func fetchMetadataKindMustBeKnown() {
    var writer = WireWriter()
    ResponseHeader(correlationId: 1).encode(into: &writer)
    writer.writeInt64(10)
    writer.writeInt8(2)
    let error = thrownError(ProtocolError.self) {
      _ = try MetaResponse.decode(
        apiKey: MetaApiKey.fetchMetadata, version: 0, payload: writer.bytes)
    }
    #expect(error?.code == .invalidValue)
    #expect(error?.field == "fetchMetadataResponse.kind")
  }

  @Test func booleansMustBeZeroOrOne() {
    let payload = rawRequest(apiKey: 1101) { writer in
      writer.writeInt32(1)
      writer.writeInt64(2)
      writer.writeInt64(3)
      writer.writeInt8(2)
    }
    #expect(bodyError(payload)?.underlying.code == .invalidValue)
  }
}
