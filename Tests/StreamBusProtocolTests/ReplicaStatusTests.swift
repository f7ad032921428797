import Testing

@testable import StreamBusProtocol

/// ReplicaStatus (api key 1200): round trips, and every malformed input is a clear error.
@Suite struct ReplicaStatusTests {
  static let request = ReplicaStatusRequest(topics: [
    .init(name: "orders", partitions: [0, 2]), .init(name: "émoji-✓"),
  ])

  static let response = ReplicaStatusResponse(topics: [
    .init(
      name: "orders",
      partitions: [
        .init(
          partition: 0, role: .leader, leaderEpoch: 4, partitionEpoch: 9, isr: [1, 2, 3],
          logStartOffset: 10, highWatermark: 120, logEndOffset: 125, durableEndOffset: 124,
          followers: [
            .init(brokerID: 2, logEndOffset: 120, lastCaughtUpMs: 1_700_000_000_123),
            .init(brokerID: 3, logEndOffset: -1, lastCaughtUpMs: -1),
          ]),
        .init(
          partition: 2, role: .follower, leaderEpoch: 4, partitionEpoch: 9, isr: [1, 2],
          logStartOffset: 0, highWatermark: 7, logEndOffset: 8, durableEndOffset: 8),
        .failure(partition: 5, .unknownTopicOrPartition, message: "no replica of orders-5"),
      ]),
    .init(name: "", partitions: []),
  ])

  private func header(correlationId: Int32 = 12) -> RequestHeader {
    RequestHeader(
      apiKey: .replicaStatus, apiVersion: 0, correlationId: correlationId, clientId: "sbctl")
  }

  @Test func apiKeyIsInternalAndSupported() {
    #expect(ApiKey.replicaStatus.rawValue == 1200)
    #expect(ApiKey.replicaStatus.isInternal)
    #expect(ApiKey.replicaStatus.name == "ReplicaStatus")
    #expect(ApiKey.replicaStatus.supportedVersions == 0...0)
    #expect(
      ApiVersionsResponse.supportedByThisBuild.apiKeys.contains { $0.apiKey == .replicaStatus })
  }

  @Test func requestAndResponseRoundTrip() throws {
    let request = Request.replicaStatus(Self.request)
    let (decodedHeader, decoded) = try Request.decode(
      payload: request.encodePayload(header: header()))
    #expect(decodedHeader == header())
    #expect(decoded == request)

    let response = Response.replicaStatus(Self.response)
    let payload = response.encodePayload(header: ResponseHeader(correlationId: 12), version: 0)
    #expect(payload.count <= Self.response.encodedBytesEstimate + 8)
    let (responseHeader, decodedResponse) = try Response.decode(
      apiKey: .replicaStatus, version: 0, payload: payload)
    #expect(responseHeader.correlationId == 12)
    #expect(decodedResponse == response)
  }

  @Test func emptyRequestMeansEverything() throws {
    let request = Request.replicaStatus(ReplicaStatusRequest(topics: []))
    let (_, decoded) = try Request.decode(payload: request.encodePayload(header: header()))
    #expect(decoded == request)
  }

  @Test func unknownRolesSurviveDecoding() throws {
    var partition = ReplicaStatusResponse.Partition.failure(
      partition: 1, .none, message: nil)
    partition.role = ReplicaStatusRole(rawValue: 9)
    let response = Response.replicaStatus(
      ReplicaStatusResponse(topics: [.init(name: "t", partitions: [partition])]))
    let (_, decoded) = try Response.decode(
      apiKey: .replicaStatus, version: 0,
      payload: response.encodePayload(header: ResponseHeader(correlationId: 1), version: 0))
    guard case .replicaStatus(let body) = decoded else {
      Issue.record("decoded \(String(describing: decoded))")
      return
    }
    #expect(body.topics[0].partitions[0].role.rawValue == 9)
    #expect(body.topics[0].partitions[0].role.description == "role(9)")
    #expect(ReplicaStatusRole.follower.description == "follower")
  }

  @Test func everyTruncatedRequestIsABodyError() throws {
    let payload = Request.replicaStatus(Self.request).encodePayload(header: header())
    let headerLength = 10 + "sbctl".utf8.count
    for length in headerLength..<payload.count {
      let error = thrownError(RequestBodyError.self) {
        _ = try Request.decode(payload: Array(payload[0..<length]))
      }
      #expect(error?.errorCode == .invalidRequest, "\(length)")
      #expect(error?.header.correlationId == 12)
      #expect(
        error?.underlying.code == .truncated || error?.underlying.code == .countTooLarge,
        "\(length): \(String(describing: error))")
    }
  }

  @Test func everyTruncatedResponseThrows() {
    let payload = Response.replicaStatus(Self.response).encodePayload(
      header: ResponseHeader(correlationId: 3), version: 0)
    for length in 0..<payload.count {
      let error = thrownError(ProtocolError.self) {
        _ = try Response.decode(
          apiKey: .replicaStatus, version: 0, payload: Array(payload[0..<length]))
      }
      #expect(
        error?.code == .truncated || error?.code == .countTooLarge,
        "\(length): \(String(describing: error))")
    }
  }

  @Test func trailingBytesAreRejected() {
    let payload = Request.replicaStatus(Self.request).encodePayload(header: header()) + [0]
    let error = thrownError(RequestBodyError.self) { _ = try Request.decode(payload: payload) }
    #expect(error?.underlying.code == .trailingBytes)
    #expect(error?.underlying.offset == payload.count - 1)

    let responsePayload =
      Response.replicaStatus(Self.response).encodePayload(
        header: ResponseHeader(correlationId: 3), version: 0) + [7]
    let responseError = thrownError(ProtocolError.self) {
      _ = try Response.decode(apiKey: .replicaStatus, version: 0, payload: responsePayload)
    }
    #expect(responseError?.code == .trailingBytes)
  }

  @Test func hugeAndNegativeCountsAreRejectedWithoutAllocating() {
    func requestBody(_ body: (inout WireWriter) -> Void) -> [UInt8] {
      var writer = WireWriter()
      header().encode(into: &writer)
      body(&writer)
      return writer.bytes
    }
    let hugeTopics = requestBody { writer in
      writer.writeInt32(Int32.max)
      writer.writeInt32(0)
    }
    let hugeError = thrownError(RequestBodyError.self) {
      _ = try Request.decode(payload: hugeTopics)
    }
    #expect(hugeError?.underlying.code == .countTooLarge)
    #expect(hugeError?.underlying.field == "replicaStatus.topics")

    let hugePartitions = requestBody { writer in
      writer.writeInt32(1)
      writer.writeString("t")
      writer.writeInt32(1_000_000)
      writer.writeInt32(0)
    }
    let partitionsError = thrownError(RequestBodyError.self) {
      _ = try Request.decode(payload: hugePartitions)
    }
    #expect(partitionsError?.underlying.code == .countTooLarge)
    #expect(partitionsError?.underlying.field == "replicaStatus.topics.partitions")

    let nullTopics = requestBody { $0.writeInt32(-1) }
    let nullError = thrownError(RequestBodyError.self) {
      _ = try Request.decode(payload: nullTopics)
    }
    #expect(nullError?.underlying.code == .negativeCount)

    // A response partition claiming more followers than its remaining bytes can hold.
    var writer = WireWriter()
    ResponseHeader(correlationId: 1).encode(into: &writer)
    writer.writeInt32(1)
    writer.writeString("t")
    writer.writeInt32(1)
    writer.writeInt32(0)  // partition
    writer.writeInt16(0)  // errorCode
    writer.writeNullableString(nil)
    writer.writeInt8(0)
    writer.writeInt32(1)
    writer.writeInt32(1)
    writer.writeInt32Array([1])
    for _ in 0..<4 { writer.writeInt64(0) }
    writer.writeInt32(2)  // followers: 2 × 20 bytes needed, 20 present
    writer.writeInt32(2)
    writer.writeInt64(0)
    writer.writeInt64(0)
    let followersError = thrownError(ProtocolError.self) {
      _ = try Response.decode(apiKey: .replicaStatus, version: 0, payload: writer.bytes)
    }
    #expect(followersError?.code == .countTooLarge)
    #expect(followersError?.field == "replicaStatusResponse.topics.partitions.followers")
  }

  @Test func smallestElementsDecode() throws {
    // Guards the count checks' minimum sizes: many minimal elements must still decode.
    let request = Request.replicaStatus(
      ReplicaStatusRequest(topics: Array(repeating: .init(name: ""), count: 10)))
    #expect(try Request.decode(payload: request.encodePayload(header: header())).1 == request)
    let minimal = ReplicaStatusResponse.Partition(
      partition: 0, role: .leader, leaderEpoch: 0, partitionEpoch: 0, isr: [],
      logStartOffset: 0, highWatermark: 0, logEndOffset: 0, durableEndOffset: 0,
      followers: Array(repeating: .init(brokerID: 0, logEndOffset: 0, lastCaughtUpMs: 0), count: 3))
    var bare = minimal
    bare.followers = []
    let response = Response.replicaStatus(
      ReplicaStatusResponse(topics: [
        .init(name: "", partitions: Array(repeating: bare, count: 10) + [minimal])
      ]))
    let payload = response.encodePayload(header: ResponseHeader(correlationId: 1), version: 0)
    #expect(try Response.decode(apiKey: .replicaStatus, version: 0, payload: payload).1 == response)
  }
}
