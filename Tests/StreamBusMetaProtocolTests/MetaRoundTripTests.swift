import StreamBusProtocol
import Testing

@testable import StreamBusMetaProtocol

@Suite struct MetaRoundTripTests {
  @Test func everyApiHasARequestAndAResponseFixture() {
    let requestKeys = Set(MetaFixtures.requests.map(\.1.apiKey))
    let responseKeys = Set(MetaFixtures.responses.compactMap(\.1.apiKey))
    let allKeys = Set(MetaApiKey.all.map(\.apiKey))
    #expect(requestKeys == allKeys)
    #expect(responseKeys == allKeys)
  }

  @Test func everyRequestRoundTrips() throws {
    for (name, request) in MetaFixtures.requests {
      let header = MetaFixtures.header(for: request)
      let payload = request.encodePayload(header: header)
      let (decodedHeader, decoded) = try MetaRequest.decode(payload: payload)
      #expect(decodedHeader == header, "\(name)")
      #expect(decoded == request, "\(name)")
      #expect(try MetaRequest.decode(header: header, payload: payload) == request, "\(name)")
      let frame = request.encodeFrame(header: header)
      #expect(frame == Framing.frame(payload), "\(name)")
      #expect(
        MetaMessage.encodeRequestPayload(request.body, header: header) == payload, "\(name)")
    }
  }

  @Test func brokerRegisterCarriesTheDataDirectoryFromVersionOne() throws {
    let request = BrokerRegisterRequest(
      brokerID: 7, incarnationID: 11, endpoints: MetaFixtures.endpoints, rack: nil,
      capacity: MetaBrokerCapacity(diskBytes: 5), directoryID: 0x0102_0304_0506)
    #expect(MetaApiKey.supportedVersions(MetaApiKey.brokerRegister) == 0...1)
    for version: Int16 in [0, 1] {
      let header = RequestHeader(
        apiKey: MetaApiKey.brokerRegister, apiVersion: version, correlationId: 1, clientId: "b")
      let payload = MetaMessage.encodeRequestPayload(request, header: header)
      let (_, decoded) = try MetaRequest.decode(payload: payload)
      var expected = request
      if version == 0 { expected.directoryID = 0 }
      #expect(decoded == .brokerRegister(expected), "version \(version)")
    }
  }

  @Test func everyResponseRoundTrips() throws {
    for (name, response) in MetaFixtures.responses {
      let apiKey = try #require(response.apiKey)
      let header = ResponseHeader(correlationId: -5)
      let payload = response.encodePayload(header: header, version: 0)
      let (decodedHeader, decoded) = try MetaResponse.decode(
        apiKey: apiKey, version: 0, payload: payload)
      #expect(decodedHeader == header, "\(name)")
      #expect(decoded == response, "\(name)")
      #expect(response.encodeFrame(header: header, version: 0) == Framing.frame(payload))
    }
  }

  @Test func typedRepliesDecodeTheirBodies() throws {
    let status = try #require(
      MetaFixtures.responses.first { $0.0 == "quorumStatus" }.flatMap {
        if case .quorumStatus(let body) = $0.1 { return body } else { return nil }
      })
    let frame = MetaMessage.encodeResponseFrame(
      status, header: ResponseHeader(correlationId: 9), version: 0)
    let (header, reply) = try MetaMessage.decodeReply(
      to: QuorumStatusRequest.self, version: 0, payload: Array(frame.dropFirst(4)))
    #expect(header.correlationId == 9)
    guard case .success(let decoded) = reply else {
      Issue.record("expected a success, got \(reply)")
      return
    }
    #expect(decoded == status)
  }

  @Test func notLeaderAnswersCarryTheHintForEveryApi() throws {
    let hint = NotLeaderBody(leaderID: 3, leaderAddress: "127.0.0.1:19103")
    for entry in MetaApiKey.all {
      let frame =
        [0, 0, 0, 0] + MetaMessage.notLeaderResponsePayload(correlationId: 12, leader: hint)
      let (header, response) = try MetaResponse.decode(
        apiKey: entry.apiKey, version: 0, payload: Array(frame.dropFirst(4)))
      #expect(header.errorCode == .notLeader)
      #expect(header.errorMessage?.contains("127.0.0.1:19103") == true)
      #expect(response == .notLeader(hint), "\(entry.name)")
    }
    let (_, reply) = try MetaMessage.decodeReply(
      to: MetaCreateTopicsRequest.self, version: 0,
      payload: MetaMessage.notLeaderResponsePayload(correlationId: 1, leader: hint))
    guard case .notLeader(let decodedHint) = reply else {
      Issue.record("expected NOT_LEADER, got \(reply)")
      return
    }
    #expect(decodedHint == hint)
  }

  @Test func notLeaderWithoutBodyMeansLeaderUnknown() throws {
    let payload = ResponseHeader(correlationId: 1, errorCode: .notLeader).encodeErrorOnly()
    let (_, response) = try MetaResponse.decode(
      apiKey: MetaApiKey.quorumStatus, version: 0, payload: payload)
    #expect(response == .notLeader(.unknownLeader))
    let unknown =
      [0, 0, 0, 0] + MetaMessage.notLeaderResponsePayload(correlationId: 2, leader: .unknownLeader)
    let (header, decoded) = try MetaResponse.decode(
      apiKey: MetaApiKey.addVoter, version: 0, payload: Array(unknown.dropFirst(4)))
    #expect(decoded == .notLeader(.unknownLeader))
    #expect(header.errorMessage == "not the leader; the leader is not known")
  }

  @Test func headerOnlyErrorsHaveNoBody() throws {
    let frame =
      [0, 0, 0, 0]
      + MetaMessage.errorResponsePayload(
        correlationId: 3, errorCode: .reconfigurationInProgress, message: "learner 4 is catching up"
      )
    let (header, response) = try MetaResponse.decode(
      apiKey: MetaApiKey.addVoter, version: 0, payload: Array(frame.dropFirst(4)))
    #expect(header.errorCode == .reconfigurationInProgress)
    #expect(header.errorMessage == "learner 4 is catching up")
    #expect(response == nil)
    let (_, reply) = try MetaMessage.decodeReply(
      to: AddVoterRequest.self, version: 0, payload: Array(frame.dropFirst(4)))
    guard case .failure = reply else {
      Issue.record("expected a failure, got \(reply)")
      return
    }
  }

  @Test func configMapsEncodeInKeyOrderWhateverTheInsertionOrder() {
    var first: [String: String] = [:]
    var second: [String: String] = [:]
    let keys = (0..<40).map { "key.\($0)" }
    for key in keys { first[key] = key.uppercased() }
    for key in keys.reversed() { second[key] = key.uppercased() }
    let header = RequestHeader(
      apiKey: MetaApiKey.createTopics, apiVersion: 0, correlationId: 1, clientId: nil)
    func encoded(_ configs: [String: String]) -> [UInt8] {
      MetaMessage.encodeRequestPayload(
        MetaCreateTopicsRequest(
          topics: [.init(name: "t", partitions: 1, replicationFactor: 1, configs: configs)]),
        header: header)
    }
    #expect(encoded(first) == encoded(second))
  }

  @Test func longErrorMessagesAreCutNotTrapped() throws {
    let message = String(repeating: "é", count: 40_000)
    let response = MetaResponse.deleteTopics(
      MetaDeleteTopicsResponse(topics: [
        .init(name: "t", errorCode: .invalidTopic, errorMessage: message)
      ]))
    let payload = response.encodePayload(
      header: ResponseHeader(correlationId: 1, errorCode: .none, errorMessage: message), version: 0)
    let (header, decoded) = try MetaResponse.decode(
      apiKey: MetaApiKey.deleteTopics, version: 0, payload: payload)
    #expect(header.errorMessage.map { $0.utf8.count <= Int(Int16.max) } == true)
    guard case .deleteTopics(let body) = decoded else {
      Issue.record("expected DeleteTopics, got \(String(describing: decoded))")
      return
    }
    let cut = try #require(body.topics.first?.errorMessage)
    #expect(cut.utf8.count <= Int(Int16.max))
    #expect(cut.utf8.count > Int(Int16.max) - 2)
    #expect(message.hasPrefix(cut))
  }
}
