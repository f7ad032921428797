import Foundation
import Glibc
import StreamBusBroker
import StreamBusProtocol
import StreamBusStorage
import StreamBusTransport
import Testing

@testable import StreamBusClient

/// A fresh directory under the system temp directory, removed by `remove()`.
private struct TemporaryDirectory {
  let path: String

  init(_ label: String = #function) throws {
    let cleaned = label.filter { $0.isLetter || $0.isNumber }
    var template = Array(
      "\(NSTemporaryDirectory())/streambus-client-\(cleaned.prefix(40))-XXXXXX".utf8CString)
    let created = template.withUnsafeMutableBufferPointer { buffer -> String? in
      guard let base = buffer.baseAddress, let result = mkdtemp(base) else { return nil }
      return String(cString: result)
    }
    path = try #require(created)
  }

  func remove() {
    try? FileManager.default.removeItem(atPath: path)
  }
}

/// An in-process standalone broker on 127.0.0.1:0.
private final class InProcessBroker: Sendable {
  let broker: StandaloneBroker
  let runTask: Task<Void, any Error>

  private init(broker: StandaloneBroker) {
    self.broker = broker
    self.runTask = Task { try await broker.run() }
  }

  static func start(dataDirectory: String) async throws -> InProcessBroker {
    var configuration = BrokerConfiguration(
      dataDirectory: dataDirectory, listen: HostPort(host: "127.0.0.1", port: 0))
    configuration.shutdownGracePeriodMs = 2_000
    return InProcessBroker(
      broker: try await StandaloneBroker.start(configuration: configuration, logger: quietLogger))
  }

  var clientConfig: ClientConfig {
    var config = ClientConfig(bootstrapBrokers: [broker.localAddress], clientId: "test")
    config.retryBackoffMs = 10
    config.retryBackoffMaxMs = 50
    return config
  }

  func stop() async throws {
    await broker.shutdownGracefully()
    try await runTask.value
  }
}

@Suite(.timeLimit(.minutes(1))) struct StandaloneProducerIdTests {
  private func producerId(from broker: InProcessBroker, topic: String) async throws -> Int64 {
    let producer = Producer(config: broker.clientConfig)
    try await producer.send(topic: topic, value: Array("x".utf8))
    let identity = try #require(await producer.producerIdAndEpoch)
    #expect(identity.producerEpoch == 0)
    await producer.close()
    return identity.producerId
  }

  @Test func producerIdsSurviveARestartWithoutReuse() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var broker = try await InProcessBroker.start(dataDirectory: directory.path)
    let admin = Admin(config: broker.clientConfig)
    _ = try await admin.createTopic("ids", partitions: 1)
    await admin.close()
    let first = try await producerId(from: broker, topic: "ids")
    let second = try await producerId(from: broker, topic: "ids")
    #expect(second == first + 1)
    try await broker.stop()

    broker = try await InProcessBroker.start(dataDirectory: directory.path)
    let third = try await producerId(from: broker, topic: "ids")
    // The rest of the first block is skipped, never handed out again.
    #expect(third == FileProducerIdSource.defaultBlockSize)
    try await broker.stop()

    broker = try await InProcessBroker.start(dataDirectory: directory.path)
    #expect(
      try await producerId(from: broker, topic: "ids") == 2 * FileProducerIdSource.defaultBlockSize)
    // Everything produced is there, once.
    let consumer = Consumer(config: broker.clientConfig)
    await consumer.assign([TopicPartition(topic: "ids", partition: 0)])
    var records: [ConsumerRecord] = []
    for _ in 0..<20 where records.count < 4 {
      records += try await consumer.poll(maxWaitMs: 100)
    }
    #expect(records.map(\.offset) == [0, 1, 2, 3])
    await consumer.close()
    try await broker.stop()
  }

  @Test func transactionalIdIsAnInvalidRequest() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let broker = try await InProcessBroker.start(dataDirectory: directory.path)
    let core = ClientCore(config: broker.clientConfig)
    let response = try await core.send(
      .initProducerId(InitProducerIdRequest(transactionalId: "tx", transactionTimeoutMs: 1_000)),
      to: broker.broker.localAddress)
    guard case .initProducerId(let body) = response else {
      Issue.record("wrong response \(response)")
      return
    }
    #expect(body.errorCode == .invalidRequest)
    #expect(body.producerId == -1)
    let fresh = try await core.send(
      .initProducerId(InitProducerIdRequest()), to: broker.broker.localAddress)
    #expect(
      fresh
        == .initProducerId(
          InitProducerIdResponse(errorCode: .none, producerId: 0, producerEpoch: 0)))
    await core.close()
    try await broker.stop()
  }

  @Test func fileSourceReservesABlockDurablyBeforeHandingOutIds() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let path = directory.path + "/" + FileProducerIdSource.fileName
    let source = try FileProducerIdSource(dataDirectory: directory.path, blockSize: 3)
    #expect(!FileManager.default.fileExists(atPath: path))
    #expect(try await source.nextProducerId() == 0)
    #expect(try String(contentsOfFile: path, encoding: .utf8).contains("block.end=3"))
    #expect(try await source.nextProducerId() == 1)
    #expect(try await source.nextProducerId() == 2)
    #expect(try await source.nextProducerId() == 3)
    #expect(try String(contentsOfFile: path, encoding: .utf8).contains("block.end=6"))
    // A crash here: the next source starts after the reserved block.
    let restarted = try FileProducerIdSource(dataDirectory: directory.path, blockSize: 3)
    #expect(try await restarted.nextProducerId() == 6)
  }

  @Test func unreadableIdFileIsAClearError() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let path = directory.path + "/" + FileProducerIdSource.fileName
    for contents in [
      "garbage", "version=1\nblock.end=-4\n", "version=9\nblock.end=4\n", "version=1\n",
    ] {
      try contents.write(toFile: path, atomically: true, encoding: .utf8)
      let error = #expect(throws: StorageError.self) {
        _ = try FileProducerIdSource(dataDirectory: directory.path)
      }
      #expect(error?.description.contains(FileProducerIdSource.fileName) == true, "\(contents)")
    }
  }

  @Test func failedReservationHandsOutNothing() async throws {
    let directory = try TemporaryDirectory()
    let source = try FileProducerIdSource(
      dataDirectory: directory.path + "/missing-subdirectory", blockSize: 2)
    let error = await #expect(throws: BrokerRequestError.self) {
      _ = try await source.nextProducerId()
    }
    #expect(error?.errorCode == .storageError)
    directory.remove()
  }
}
