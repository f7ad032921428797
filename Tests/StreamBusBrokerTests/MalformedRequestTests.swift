import Foundation
import StreamBusBroker
import StreamBusProtocol
import StreamBusStorage
import StreamBusTransport
import Testing

@Suite struct MalformedRequestTests {
  @Test func badBodyIsAnsweredAndTheConnectionStaysUsable() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("t")
    _ = try await client.produce(topic: "t", records: makeBatch(), acks: -1)

    // A produce whose topic array claims far more entries than there are bytes.
    var payload = client.payload(
      client.produceRequest(topic: "t", records: makeBatch(), acks: 1), correlationId: 77)
    let headerBytes = 2 + 2 + 4 + 2 + 4  // apiKey, apiVersion, correlationId, clientId "test"
    let topicsCountOffset = headerBytes + 2 + 4
    payload.replaceSubrange(
      topicsCountOffset..<topicsCountOffset + 4, with: [0x7F, 0xFF, 0xFF, 0xFF])
    let answer = try await client.connection.send(payload)
    let header = try ResponseHeader.decode(payload: answer)
    #expect(header.correlationId == 77)
    #expect(header.errorCode == .invalidRequest)
    #expect(header.errorMessage?.contains("produce.topics") == true)

    // Unknown API key and unsupported version.
    let unknownKey: [UInt8] = [0x03, 0xE7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4E, 0xFF, 0xFF]
    #expect(
      try ResponseHeader.decode(payload: try await client.connection.send(unknownKey)).errorCode
        == .invalidRequest)
    let badVersion: [UInt8] = [
      0x00, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x4F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ]
    #expect(
      try ResponseHeader.decode(payload: try await client.connection.send(badVersion)).errorCode
        == .unsupportedVersion)
    let apiVersions: [UInt8] = [0x00, 0x12, 0x00, 0x05, 0x00, 0x00, 0x00, 0x50, 0xFF, 0xFF]
    let (versionsHeader, versions) = try Response.decode(
      apiKey: .apiVersions, version: 5, payload: try await client.connection.send(apiVersions))
    #expect(versionsHeader.errorCode == .unsupportedVersion)
    guard case .apiVersions(let list)? = versions else {
      Issue.record("no ApiVersions fallback body")
      return
    }
    #expect(list.apiKeys.contains { $0.apiKey == .produce })

    // The connection still works and nothing was stored by the bad requests.
    let fetched = try await client.fetch(topic: "t", offset: 0)
    #expect(fetched.highWatermark == 3)
    await client.close()
    try await broker.stop()
  }

  @Test func unreadableHeaderClosesTheConnection() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let socket = try RawSocket(connectingTo: broker.address)
    defer { socket.close() }
    // apiKey, apiVersion, correlationId, then a clientId claiming 100 bytes with 1 present.
    let payload: [UInt8] = [0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x64, 0x41]
    let closed = try await onOwnThread {
      try socket.send([0, 0, 0, UInt8(payload.count)] + payload)
      return try socket.isClosedByPeer()
    }
    #expect(closed)

    // Other connections are unaffected.
    let client = try await broker.connect()
    #expect(try await client.metadata(nil).brokers.count == 1)
    await client.close()
    try await broker.stop()
  }

  @Test func apiVersionsListsEverySupportedApi() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    let (header, response) = try await client.send(.apiVersions(ApiVersionsRequest()))
    #expect(header.errorCode == .none)
    guard case .apiVersions(let body)? = response else {
      Issue.record("unexpected response")
      return
    }
    #expect(body == ApiVersionsResponse.supportedByThisBuild)
    await client.close()
    try await broker.stop()
  }

  @Test func replicaFetchIsRefusedInStandaloneMode() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await TestBroker.start(dataDirectory: directory.path)
    let client = try await broker.connect()
    _ = try await client.createTopic("t")
    let (header, response) = try await client.send(
      .fetch(
        FetchRequest(
          replicaId: 2, maxWaitMs: 0, minBytes: 1, maxBytes: 1000,
          topics: [
            .init(
              name: "t", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1000)])
          ])))
    #expect(header.errorCode == .invalidRequest)
    #expect(response == nil)
    await client.close()
    try await broker.stop()
  }
}

@Suite struct TopicStoreTests {
  @Test func topicFilesRoundTripAndLeftoverTemporariesAreRemoved() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let store = TopicStore(dataDirectory: directory.path, fileSystem: PosixFileSystem())
    try store.prepare()
    let defaults = TopicDefaults()
    let config = try TopicConfig([("retention.ms", "5")], defaults: defaults)
    let topics = [
      TopicDescription(name: "a", partitionCount: 3, replicationFactor: 1, config: config),
      // A topic whose name ends like a temporary file must survive.
      TopicDescription(
        name: "b.tmp", partitionCount: 1, replicationFactor: 1,
        config: try TopicConfig([], defaults: defaults)),
    ]
    for topic in topics { try store.save(topic) }
    // What a crash inside AtomicFile.write leaves: a complete or torn "<name>.tmp".
    try Data(TopicStoreFixtures.encoded("c")).write(
      to: URL(fileURLWithPath: store.topicFilePath("c") + ".tmp"))
    try Data("version=1\nna".utf8).write(
      to: URL(fileURLWithPath: store.topicFilePath("d") + ".tmp"))

    let loaded = try store.loadAll(defaults: defaults)
    #expect(loaded == topics)
    #expect(!FileManager.default.fileExists(atPath: store.topicFilePath("c") + ".tmp"))
    #expect(!FileManager.default.fileExists(atPath: store.topicFilePath("d") + ".tmp"))

    try store.removeTopicFile("a")
    #expect(try store.loadAll(defaults: defaults).map(\.name) == ["b.tmp"])
  }

  @Test func corruptTopicFileStopsLoadingWithItsPath() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let store = TopicStore(dataDirectory: directory.path, fileSystem: PosixFileSystem())
    try store.prepare()
    try Data("version=1\nname=x\npartitions=zero\nreplication.factor=1\n".utf8).write(
      to: URL(fileURLWithPath: store.topicFilePath("x")))
    #expect {
      _ = try store.loadAll(defaults: TopicDefaults())
    } throws: { error in
      "\(error)".contains(store.topicFilePath("x")) && "\(error)".contains("partitions")
    }
  }

  @Test func partitionDirectoryNamesParse() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let store = TopicStore(dataDirectory: directory.path, fileSystem: PosixFileSystem())
    try store.prepare()
    for name in ["orders-0", "my-topic-12", "x-01", "y--1", "topics", "z-"] {
      try FileManager.default.createDirectory(
        atPath: directory.path + "/" + name, withIntermediateDirectories: true)
    }
    let parsed = try store.partitionDirectories().map(\.topicPartition).sorted {
      $0.description < $1.description
    }
    #expect(
      parsed == [
        TopicPartition(topic: "my-topic", partition: 12),
        TopicPartition(topic: "orders", partition: 0),
        TopicPartition(topic: "y-", partition: 1),
      ])
  }
}

enum TopicStoreFixtures {
  static func encoded(_ name: String) -> [UInt8] {
    Array("version=1\nname=\(name)\npartitions=1\nreplication.factor=1\n".utf8)
  }
}
