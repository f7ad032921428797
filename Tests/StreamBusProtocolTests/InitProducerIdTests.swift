import Testing

@testable import StreamBusProtocol

@Suite struct InitProducerIdTests {
  private func payload(_ body: (inout WireWriter) -> Void) -> [UInt8] {
    var writer = WireWriter()
    RequestHeader(apiKey: .initProducerId, apiVersion: 0, correlationId: 9, clientId: "c")
      .encode(into: &writer)
    body(&writer)
    return writer.bytes
  }

  private func bodyError(_ payload: [UInt8]) -> RequestBodyError? {
    thrownError(RequestBodyError.self) { _ = try Request.decode(payload: payload) }
  }

  @Test func layoutIsKafkaVersionZero() {
    let request = Request.initProducerId(
      InitProducerIdRequest(transactionalId: nil, transactionTimeoutMs: 0x0102_0304))
    let header = RequestHeader(
      apiKey: .initProducerId, apiVersion: 0, correlationId: 1, clientId: nil)
    let bytes = request.encodePayload(header: header)
    #expect(Array(bytes[0..<4]) == [0, 22, 0, 0])
    #expect(Array(bytes.suffix(6)) == [0xFF, 0xFF, 1, 2, 3, 4])

    let response = Response.initProducerId(
      InitProducerIdResponse(errorCode: .none, producerId: 258, producerEpoch: 3))
    let responseBytes = response.encodePayload(header: ResponseHeader(correlationId: 1), version: 0)
    #expect(Array(responseBytes.suffix(12)) == [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 3])
    #expect(ApiKey.initProducerId.name == "InitProducerId")
    #expect(ApiKey.supported[.initProducerId] == 0...0)
  }

  @Test func negativeStringLengthOtherThanNullIsRejected() {
    let error = bodyError(
      payload { writer in
        writer.writeInt16(-2)
        writer.writeInt32(0)
      })
    #expect(error?.underlying.field == "initProducerId.transactionalId")
    #expect(error?.errorCode == .invalidRequest)
  }

  @Test func transactionalIdLongerThanTheBodyIsRejected() {
    let error = bodyError(
      payload { writer in
        writer.writeInt16(100)
        writer.writeInt32(0)
      })
    #expect(error?.underlying.code == .truncated)
    #expect(error?.header.correlationId == 9)
  }

  @Test func invalidUTF8TransactionalIdIsRejected() {
    let error = bodyError(
      payload { writer in
        writer.writeInt16(2)
        writer.writeInt8(-1)
        writer.writeInt8(-2)
        writer.writeInt32(0)
      })
    #expect(error?.underlying.code == .invalidUTF8)
  }

  @Test func unsupportedVersionIsABodyError() {
    var writer = WireWriter()
    RequestHeader(apiKey: .initProducerId, apiVersion: 1, correlationId: 9, clientId: "c")
      .encode(into: &writer)
    writer.writeInt16(-1)
    writer.writeInt32(0)
    #expect(bodyError(writer.bytes)?.errorCode == .unsupportedVersion)
  }

  @Test func truncatedResponseIsRejected() {
    let payload = Response.initProducerId(
      InitProducerIdResponse(errorCode: .none, producerId: 7, producerEpoch: 0)
    ).encodePayload(header: ResponseHeader(correlationId: 2), version: 0)
    let error = thrownError(ProtocolError.self) {
      _ = try Response.decode(
        apiKey: .initProducerId, version: 0, payload: Array(payload.dropLast()))
    }
    #expect(error?.code == .truncated)
    #expect(error?.field == "initProducerIdResponse.producerEpoch")
  }
}
