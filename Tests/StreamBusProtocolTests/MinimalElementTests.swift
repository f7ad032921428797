import Testing

@testable import StreamBusProtocol

/// The array count check rejects `count × smallestElement > remaining`. If a smallest-element
/// constant were too large, valid messages made of many minimal elements would be rejected;
/// these messages consist of exactly such elements.
@Suite struct MinimalElementTests {
  static let count = 10

  static let requests: [Request] = [
    .produce(
      ProduceRequest(
        acks: 1, timeoutMs: 0,
        topics: Array(repeating: .init(name: "", partitions: []), count: count))),
    .produce(
      ProduceRequest(
        acks: 1, timeoutMs: 0,
        topics: [
          .init(
            name: "", partitions: Array(repeating: .init(partition: 0, records: []), count: count))
        ])),
    .fetch(
      FetchRequest(
        maxWaitMs: 0, minBytes: 0, maxBytes: 0,
        topics: [
          .init(
            name: "",
            partitions: Array(
              repeating: .init(partition: 0, fetchOffset: 0, partitionMaxBytes: 0), count: count))
        ])),
    .listOffsets(
      ListOffsetsRequest(
        topics: [
          .init(
            name: "", partitions: Array(repeating: .init(partition: 0, timestamp: 0), count: count))
        ])),
    .metadata(MetadataRequest(topics: Array(repeating: "", count: count))),
    .createTopics(
      CreateTopicsRequest(
        topics: Array(
          repeating: .init(
            name: "", numPartitions: 0, replicationFactor: 0,
            configs: Array(repeating: .init(key: "", value: nil), count: count)),
          count: count), timeoutMs: 0)),
    .deleteTopics(DeleteTopicsRequest(names: Array(repeating: "", count: count), timeoutMs: 0)),
  ]

  static let responses: [Response] = [
    .produce(
      ProduceResponse(
        topics: [
          .init(
            name: "",
            partitions: Array(
              repeating: .init(
                partition: 0, errorCode: .none, baseOffset: 0, logStartOffset: 0,
                logAppendTimeMs: 0), count: count))
        ])),
    .fetch(
      FetchResponse(
        topics: [
          .init(
            name: "",
            partitions: Array(
              repeating: .init(
                partition: 0, errorCode: .none, highWatermark: 0, logStartOffset: 0,
                logEndOffset: 0, records: []), count: count))
        ])),
    .listOffsets(
      ListOffsetsResponse(
        topics: [
          .init(
            name: "",
            partitions: Array(
              repeating: .init(
                partition: 0, errorCode: .none, timestamp: 0, offset: 0, leaderEpoch: 0),
              count: count))
        ])),
    .metadata(
      MetadataResponse(
        brokers: Array(repeating: .init(nodeId: 0, host: "", port: 0), count: count),
        clusterId: nil, controllerId: 0,
        topics: Array(
          repeating: .init(
            name: "",
            partitions: Array(
              repeating: .init(partition: 0, leaderId: 0, leaderEpoch: 0, replicas: [], isr: []),
              count: count),
            configs: Array(repeating: .init(key: "", value: ""), count: count)), count: count))),
    .apiVersions(
      ApiVersionsResponse(
        apiKeys: Array(
          repeating: .init(apiKey: .produce, minVersion: 0, maxVersion: 0), count: count))),
    .createTopics(
      CreateTopicsResponse(
        topics: Array(
          repeating: .init(name: "", errorCode: .none, numPartitions: 0, replicationFactor: 0),
          count: count))),
    .deleteTopics(
      DeleteTopicsResponse(
        topics: Array(repeating: .init(name: "", errorCode: .none), count: count))
    ),
  ]

  @Test func requestsOfSmallestElementsDecode() throws {
    for request in Self.requests {
      let header = RequestHeader(
        apiKey: request.apiKey, apiVersion: 0, correlationId: 1, clientId: nil)
      let (_, decoded) = try Request.decode(payload: request.encodePayload(header: header))
      #expect(decoded == request)
    }
  }

  @Test func responsesOfSmallestElementsDecode() throws {
    for response in Self.responses {
      let payload = response.encodePayload(header: ResponseHeader(correlationId: 1), version: 0)
      let (_, decoded) = try Response.decode(
        apiKey: response.apiKey, version: 0, payload: payload)
      #expect(decoded == response)
    }
  }

  @Test func oneElementMoreThanFitsIsRejected() {
    // Claim one more minimal topic than the bytes hold: the count check must fire, not a
    // truncation halfway through the elements.
    var writer = WireWriter()
    RequestHeader(apiKey: .produce, apiVersion: 0, correlationId: 1, clientId: nil)
      .encode(into: &writer)
    writer.writeInt16(1)
    writer.writeInt32(0)
    writer.writeInt32(Int32(Self.count + 1))
    for _ in 0..<Self.count {
      writer.writeString("")
      writer.writeInt32(0)
    }
    let error = thrownError(RequestBodyError.self) {
      _ = try Request.decode(payload: writer.bytes)
    }
    #expect(error?.underlying.code == .countTooLarge)
  }
}
