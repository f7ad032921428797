import StreamBusProtocol
import Testing

@testable import StreamBusMetaProtocol

private struct Outcomes {
  var decoded = 0
  var errorKinds: Set<String> = []
}

/// Random and mutated inputs may only produce the documented errors, and anything that
/// decodes must re-encode to the same bytes.
@Suite struct MetaFuzzTests {
  static let seed: UInt64 = 0x4D45_5441_2026

  private func checkRequest(_ payload: [UInt8], context: String, _ outcomes: inout Outcomes) {
    do {
      let (header, request) = try MetaRequest.decode(payload: payload)
      #expect(request.encodePayload(header: header) == payload, "\(context)")
      outcomes.decoded += 1
    } catch let error as ProtocolError {
      outcomes.errorKinds.insert("header \(error.code)")
    } catch let error as RequestBodyError {
      outcomes.errorKinds.insert("body \(error.underlying.code)")
    } catch {
      Issue.record("\(context): unexpected error type \(error)")
    }
  }

  private func checkResponse(
    _ payload: [UInt8], apiKey: ApiKey, context: String, _ outcomes: inout Outcomes
  ) {
    do {
      let (header, response) = try MetaResponse.decode(apiKey: apiKey, version: 0, payload: payload)
      if let response {
        #expect(response.encodePayload(header: header, version: 0) == payload, "\(context)")
      } else {
        #expect(header.errorCode != .none)
        #expect(header.encodeErrorOnly() == payload, "\(context)")
      }
      outcomes.decoded += 1
    } catch let error as ProtocolError {
      outcomes.errorKinds.insert("\(error.code)")
    } catch {
      Issue.record("\(context): unexpected error type \(error)")
    }
  }

  @Test func randomBytesNeverTrap() {
    var generator = SplitMix64(seed: Self.seed)
    let apiKeys = MetaApiKey.all.map(\.apiKey)
    var requestOutcomes = Outcomes()
    var responseOutcomes = Outcomes()
    for iteration in 0..<20_000 {
      let length = Int.random(in: 0..<160, using: &generator)
      var payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
      // Steer half the inputs past the header so every body decoder sees random bytes.
      if iteration % 2 == 0 && payload.count >= 10 {
        let apiKey = apiKeys[iteration / 2 % apiKeys.count].rawValue
        payload[0] = UInt8(apiKey >> 8)
        payload[1] = UInt8(apiKey & 0xFF)
        payload[2] = 0
        payload[3] = 0
        payload[8] = 0xFF
        payload[9] = 0xFF
      }
      let context = "seed \(Self.seed) iteration \(iteration)"
      checkRequest(payload, context: context, &requestOutcomes)
      if iteration % 2 == 0 && payload.count >= 8 {
        // A valid header (no error, null message) so the body decoders run.
        payload[4] = 0
        payload[5] = 0
        payload[6] = 0xFF
        payload[7] = 0xFF
      }
      checkResponse(
        payload, apiKey: apiKeys[iteration % apiKeys.count], context: context, &responseOutcomes)
    }
    for kind in [
      "header truncated", "body truncated", "body countTooLarge", "body negativeCount",
      "body unknownApiKey",
    ] {
      #expect(requestOutcomes.errorKinds.contains(kind), "\(kind)")
    }
    #expect(responseOutcomes.errorKinds.isSuperset(of: ["truncated", "countTooLarge"]))
  }

  @Test func mutatedValidEncodingsNeverTrap() {
    let seed = Self.seed ^ 0xABCD
    var generator = SplitMix64(seed: seed)
    let requests = MetaFixtures.requests.map {
      $0.1.encodePayload(header: MetaFixtures.header(for: $0.1))
    }
    let responses = MetaFixtures.responses.compactMap { entry -> (ApiKey, [UInt8])? in
      guard let apiKey = entry.1.apiKey else { return nil }
      return (apiKey, entry.1.encodePayload(header: ResponseHeader(correlationId: 2), version: 0))
    }
    var requestOutcomes = Outcomes()
    var responseOutcomes = Outcomes()
    for iteration in 0..<20_000 {
      let context = "seed \(seed) iteration \(iteration)"
      var request = requests[iteration % requests.count]
      mutate(&request, using: &generator)
      checkRequest(request, context: context, &requestOutcomes)
      var (apiKey, response) = responses[iteration % responses.count]
      mutate(&response, using: &generator)
      checkResponse(response, apiKey: apiKey, context: context, &responseOutcomes)
    }
    #expect(requestOutcomes.decoded > 500)
    #expect(responseOutcomes.decoded > 500)
    for kind in ["truncated", "countTooLarge", "negativeCount", "trailingBytes", "invalidValue"] {
      #expect(requestOutcomes.errorKinds.contains("body \(kind)"), "\(kind)")
      #expect(responseOutcomes.errorKinds.contains(kind), "\(kind)")
    }
  }

  /// Flips bits, writes boundary values over 1 to 4 bytes, or cuts/extends the tail.
  private func mutate(_ bytes: inout [UInt8], using generator: inout SplitMix64) {
    let edits = Int.random(in: 1...3, using: &generator)
    for _ in 0..<edits {
      guard !bytes.isEmpty else { return }
      let position = Int.random(in: 0..<bytes.count, using: &generator)
      switch Int.random(in: 0..<5, using: &generator) {
      case 0:
        bytes[position] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &generator)
      case 1:
        bytes[position] = [0x00, 0x01, 0x7F, 0x80, 0xFF].randomElement(using: &generator) ?? 0
      case 2:
        let fill: UInt8 = Bool.random(using: &generator) ? 0xFF : 0x7F
        for index in position..<min(bytes.count, position + 4) {
          bytes[index] = index == position ? fill : 0xFF
        }
      case 3:
        bytes.removeLast(Int.random(in: 0...(bytes.count - position), using: &generator))
      default:
        bytes.append(UInt8.random(in: 0...255, using: &generator))
      }
    }
  }
}

/// The declared smallest element sizes must equal the real smallest encodings: too large
/// would reject valid messages, too small would weaken the count check.
@Suite struct MetaElementBytesMinTests {
  private func bodyBytes(_ body: some WireBody) -> Int {
    var writer = WireWriter()
    body.encode(into: &writer, version: 0)
    return writer.count
  }

  @Test func smallestEncodingsMatchTheDeclaredMinimums() {
    let capacity = MetaBrokerCapacity(diskBytes: 0)
    let endpoint = MetaEndpoint(name: "", host: "", port: 0)
    #expect(
      bodyBytes(
        BrokerRegisterRequest(
          brokerID: 0, incarnationID: 0, endpoints: [endpoint], rack: "", capacity: capacity))
        - bodyBytes(
          BrokerRegisterRequest(
            brokerID: 0, incarnationID: 0, endpoints: [], rack: "", capacity: capacity))
        == MetaEndpoint.bytesMin)
    let broker = MetaBroker(
      brokerID: 0, incarnationID: 0, epoch: 0, endpoints: [], rack: nil, capacity: capacity,
      fenced: false, inControlledShutdown: false)
    func cluster(_ brokers: [MetaBroker]) -> DescribeClusterResponse {
      DescribeClusterResponse(
        clusterID: "", leaderID: 0, metadataOffset: 0, brokers: brokers, topicCount: 0,
        partitionCount: 0, underReplicatedPartitionCount: 0, offlinePartitionCount: 0)
    }
    #expect(bodyBytes(cluster([broker])) - bodyBytes(cluster([])) == MetaBroker.bytesMin)
    let partition = MetaPartition(
      topicID: 0, partition: 0, replicas: [], isr: [], leader: 0, leaderEpoch: 0, partitionEpoch: 0)
    #expect(
      bodyBytes(DescribeTopicResponse(name: "", topicID: 0, configs: [:], partitions: [partition]))
        - bodyBytes(DescribeTopicResponse(name: "", topicID: 0, configs: [:], partitions: []))
        == MetaPartition.bytesMin)
    let member = QuorumMember(
      nodeID: 0, raftAddress: "", apiAddress: "", matchIndex: 0, lag: 0, lastContactMs: 0)
    func status(_ members: [QuorumMember]) -> QuorumStatusResponse {
      QuorumStatusResponse(
        leaderID: 0, term: 0, commitIndex: 0, appliedIndex: 0, voters: members, learners: [])
    }
    #expect(bodyBytes(status([member])) - bodyBytes(status([])) == QuorumMember.bytesMin)
    #expect(
      bodyBytes(
        AlterPartitionRequest(
          brokerID: 0, brokerEpoch: 0,
          partitions: [
            .init(topicID: 0, partition: 0, leaderEpoch: 0, partitionEpoch: 0, newIsr: [])
          ]))
        - bodyBytes(AlterPartitionRequest(brokerID: 0, brokerEpoch: 0, partitions: []))
        == AlterPartitionRequest.Item.bytesMin)
    #expect(
      bodyBytes(
        AlterPartitionResponse(partitions: [
          .init(
            topicID: 0, partition: 0, errorCode: .none, leader: 0, leaderEpoch: 0, isr: [],
            partitionEpoch: 0)
        ])) - bodyBytes(AlterPartitionResponse(partitions: []))
        == AlterPartitionResponse.Result.bytesMin)
    #expect(
      bodyBytes(
        FetchMetadataResponse(
          committedOffset: 0, content: .entries([MetadataLogEntry(offset: 0, data: [])])))
        - bodyBytes(FetchMetadataResponse(committedOffset: 0, content: .entries([])))
        == MetadataLogEntry.bytesMin)
    #expect(
      bodyBytes(
        MetaCreateTopicsRequest(topics: [.init(name: "", partitions: 0, replicationFactor: 0)]))
        - bodyBytes(MetaCreateTopicsRequest(topics: []))
        == MetaCreateTopicsRequest.Topic.bytesMin)
    #expect(
      bodyBytes(
        MetaCreateTopicsResponse(topics: [
          .init(
            name: "", errorCode: .none, errorMessage: "", topicID: 0, partitions: 0,
            replicationFactor: 0)
        ])) - bodyBytes(MetaCreateTopicsResponse(topics: []))
        == MetaCreateTopicsResponse.Result.bytesMin)
    #expect(
      bodyBytes(
        MetaDeleteTopicsResponse(topics: [.init(name: "", errorCode: .none, errorMessage: "")]))
        - bodyBytes(MetaDeleteTopicsResponse(topics: []))
        == MetaDeleteTopicsResponse.Result.bytesMin)
    #expect(
      bodyBytes(AlterConfigsRequest(topic: "", changes: [.init(key: "", value: "")]))
        - bodyBytes(AlterConfigsRequest(topic: "", changes: []))
        == AlterConfigsRequest.Change.bytesMin)
    #expect(
      bodyBytes(
        ListTopicsResponse(topics: [
          .init(name: "", topicID: 0, partitions: 0, replicationFactor: 0)
        ]))
        - bodyBytes(ListTopicsResponse(topics: []))
        == ListTopicsResponse.Topic.bytesMin)
    #expect(
      bodyBytes(ElectPreferredLeadersRequest(partitions: [.init(topic: "", partition: 0)]))
        - bodyBytes(ElectPreferredLeadersRequest(partitions: []))
        == ElectPreferredLeadersRequest.TopicPartition.bytesMin)
    #expect(
      bodyBytes(
        ElectPreferredLeadersResponse(partitions: [
          .init(topic: "", partition: 0, errorCode: .none, errorMessage: "")
        ])) - bodyBytes(ElectPreferredLeadersResponse(partitions: []))
        == ElectPreferredLeadersResponse.Result.bytesMin)
  }
}
