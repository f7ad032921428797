import Foundation
import Glibc
import Logging
import StreamBusBroker
import StreamBusProtocol
import StreamBusRecords
import StreamBusStorage
import StreamBusTransport
import Synchronization
import Testing

/// A fresh directory under the system temp directory, removed by `remove()`.
struct TemporaryDirectory {
  let path: String

  init(_ label: String = #function) throws {
    let cleaned = label.filter { $0.isLetter || $0.isNumber }
    var template = Array(
      "\(NSTemporaryDirectory())/streambus-broker-\(cleaned.prefix(40))-XXXXXX".utf8CString)
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

let testLogger: Logger = {
  var logger = Logger(label: "streambus.broker.test")
  logger.logLevel = .critical
  return logger
}()

/// A broker on 127.0.0.1:0 over a temporary data directory, serving in a background task.
final class TestBroker: Sendable {
  let broker: StandaloneBroker
  let runTask: Task<Void, any Error>

  var address: HostPort { broker.localAddress }

  private init(broker: StandaloneBroker) {
    self.broker = broker
    self.runTask = Task { try await broker.run() }
  }

  static func start(
    dataDirectory: String, fileSystem: (any LogFileSystem)? = nil,
    configure: (inout BrokerConfiguration) -> Void = { _ in }
  ) async throws -> TestBroker {
    var configuration = BrokerConfiguration(
      dataDirectory: dataDirectory, listen: HostPort(host: "127.0.0.1", port: 0))
    if let fileSystem {
      configuration.fileSystem = fileSystem
    }
    configuration.shutdownGracePeriodMs = 2_000
    configure(&configuration)
    return TestBroker(
      broker: try await StandaloneBroker.start(configuration: configuration, logger: testLogger))
  }

  func connect() async throws -> TestClient {
    TestClient(
      connection: try await FrameConnection.connect(to: broker.localAddress, logger: testLogger))
  }

  /// Graceful shutdown, waiting until every log is closed.
  func stop() async throws {
    await broker.shutdownGracefully()
    try await runTask.value
  }
}

/// Sends typed requests over one `FrameConnection`.
final class TestClient: Sendable {
  let connection: FrameConnection
  private let nextCorrelationId = Mutex<Int32>(1)

  init(connection: FrameConnection) {
    self.connection = connection
  }

  func takeCorrelationId() -> Int32 {
    nextCorrelationId.withLock { id in
      defer { id += 1 }
      return id
    }
  }

  func payload(_ request: Request, correlationId: Int32) -> [UInt8] {
    request.encodePayload(
      header: RequestHeader(
        apiKey: request.apiKey, apiVersion: 0, correlationId: correlationId, clientId: "test"))
  }

  /// Sends a request and decodes the response, checking the correlation id.
  func send(_ request: Request, timeoutMs: Int64? = nil) async throws -> (ResponseHeader, Response?)
  {
    let correlationId = takeCorrelationId()
    let bytes = try await connection.send(
      payload(request, correlationId: correlationId), timeoutMs: timeoutMs)
    let (header, response) = try Response.decode(
      apiKey: request.apiKey, version: 0, payload: bytes)
    #expect(header.correlationId == correlationId)
    return (header, response)
  }

  func createTopic(
    _ name: String, partitions: Int32 = 1, replicationFactor: Int16 = 1,
    configs: [CreateTopicsRequest.Config] = [], validateOnly: Bool = false
  ) async throws -> CreateTopicsResponse.Topic {
    let (_, response) = try await send(
      .createTopics(
        CreateTopicsRequest(
          topics: [
            CreateTopicsRequest.Topic(
              name: name, numPartitions: partitions, replicationFactor: replicationFactor,
              configs: configs)
          ], timeoutMs: 10_000, validateOnly: validateOnly)))
    guard case .createTopics(let body)? = response, body.topics.count == 1 else {
      Issue.record("unexpected CreateTopics response \(String(describing: response))")
      throw BrokerError("bad response")
    }
    return body.topics[0]
  }

  func deleteTopic(_ name: String) async throws -> DeleteTopicsResponse.Topic {
    let (_, response) = try await send(
      .deleteTopics(DeleteTopicsRequest(names: [name], timeoutMs: 10_000)))
    guard case .deleteTopics(let body)? = response, body.topics.count == 1 else {
      throw BrokerError("bad response \(String(describing: response))")
    }
    return body.topics[0]
  }

  func metadata(_ topics: [String]?) async throws -> MetadataResponse {
    let (_, response) = try await send(.metadata(MetadataRequest(topics: topics)))
    guard case .metadata(let body)? = response else {
      throw BrokerError("bad response \(String(describing: response))")
    }
    return body
  }

  func produceRequest(
    topic: String, partition: Int32 = 0, records: [UInt8], acks: Int16, timeoutMs: Int32 = 10_000
  ) -> Request {
    .produce(
      ProduceRequest(
        acks: acks, timeoutMs: timeoutMs,
        topics: [
          ProduceRequest.Topic(
            name: topic,
            partitions: [ProduceRequest.Partition(partition: partition, records: records)])
        ]))
  }

  func produce(
    topic: String, partition: Int32 = 0, records: [UInt8], acks: Int16 = 1,
    timeoutMs: Int32 = 10_000
  ) async throws -> ProduceResponse.Partition {
    let (_, response) = try await send(
      produceRequest(
        topic: topic, partition: partition, records: records, acks: acks, timeoutMs: timeoutMs))
    guard case .produce(let body)? = response, body.topics.count == 1,
      body.topics[0].partitions.count == 1
    else {
      throw BrokerError("bad response \(String(describing: response))")
    }
    return body.topics[0].partitions[0]
  }

  func fetch(
    topic: String, partition: Int32 = 0, offset: Int64, maxWaitMs: Int32 = 0,
    minBytes: Int32 = 1, maxBytes: Int32 = 1 << 20, partitionMaxBytes: Int32 = 1 << 20
  ) async throws -> FetchResponse.Partition {
    let (_, response) = try await send(
      .fetch(
        FetchRequest(
          maxWaitMs: maxWaitMs, minBytes: minBytes, maxBytes: maxBytes,
          topics: [
            FetchRequest.Topic(
              name: topic,
              partitions: [
                FetchRequest.Partition(
                  partition: partition, fetchOffset: offset,
                  partitionMaxBytes: partitionMaxBytes)
              ])
          ])))
    guard case .fetch(let body)? = response, body.topics.count == 1,
      body.topics[0].partitions.count == 1
    else {
      throw BrokerError("bad response \(String(describing: response))")
    }
    return body.topics[0].partitions[0]
  }

  func listOffset(topic: String, partition: Int32 = 0, timestamp: Int64) async throws
    -> ListOffsetsResponse.Partition
  {
    let (_, response) = try await send(
      .listOffsets(
        ListOffsetsRequest(topics: [
          ListOffsetsRequest.Topic(
            name: topic,
            partitions: [ListOffsetsRequest.Partition(partition: partition, timestamp: timestamp)])
        ])))
    guard case .listOffsets(let body)? = response, body.topics.count == 1,
      body.topics[0].partitions.count == 1
    else {
      throw BrokerError("bad response \(String(describing: response))")
    }
    return body.topics[0].partitions[0]
  }

  func close() async {
    await connection.close()
  }
}

/// A producer-style batch (base offset 0) of `count` records with distinct values, stamped
/// now unless told otherwise (old timestamps would expire under the default retention).
func makeBatch(
  records count: Int = 3, valueBytes: Int = 16, seed: Int = 0,
  timestamp: Int64 = PartitionLog.wallClockMs()
)
  -> [UInt8]
{
  var builder = RecordBatchBuilder()
  for index in 0..<count {
    let fill = UInt8(truncatingIfNeeded: seed &* 31 &+ index)
    builder.append(
      key: Array("k\(seed)-\(index)".utf8), value: [UInt8](repeating: fill, count: valueBytes),
      timestamp: timestamp + Int64(index))
  }
  return builder.build()
}

/// `batch` as the broker stores it: base offset assigned, partition leader epoch 0.
func stored(_ batch: [UInt8], baseOffset: Int64) -> [UInt8] {
  var bytes = batch
  bytes.withUnsafeMutableBytes {
    RecordBatchHeader.setBaseOffset(baseOffset, in: $0)
    RecordBatchHeader.setPartitionLeaderEpoch(0, in: $0)
  }
  return bytes
}

/// The real file system with switchable faults: failing writes (a full disk) and fdatasync
/// calls held until the gate opens (to observe data appended but not yet durable).
final class FaultyFileSystem: LogFileSystem {
  struct Faults {
    var writeErrno: Int32?
    var syncErrno: Int32?
    var isSyncGateClosed = false
    var syncCount = 0
  }

  let real = PosixFileSystem()
  let faults = Mutex(Faults())

  func update(_ change: (inout Faults) -> Void) { faults.withLock { change(&$0) } }

  var syncCount: Int { faults.withLock { $0.syncCount } }

  func open(_ path: String, _ mode: FileOpenMode) throws -> Int32 { try real.open(path, mode) }
  func close(_ descriptor: Int32) { real.close(descriptor) }

  func write(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, at position: Int64) throws
    -> Int
  {
    if let failure = faults.withLock({ $0.writeErrno }) {
      throw StorageError.systemCall("pwrite", errno: failure, path: nil)
    }
    return try real.write(descriptor, bytes, at: position)
  }

  func read(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at position: Int64)
    throws -> Int
  {
    try real.read(descriptor, into: buffer, at: position)
  }

  func syncData(_ descriptor: Int32) throws {
    // Runs on the NIO thread pool (group commit), where blocking is allowed.
    while faults.withLock({ $0.isSyncGateClosed }) {
      usleep(1_000)
    }
    if let failure = faults.withLock({ $0.syncErrno }) {
      throw StorageError.systemCall("fdatasync", errno: failure, path: nil)
    }
    faults.withLock { $0.syncCount += 1 }
    try real.syncData(descriptor)
  }

  func truncate(_ descriptor: Int32, to length: Int64) throws {
    try real.truncate(descriptor, to: length)
  }
  func size(_ descriptor: Int32) throws -> Int64 { try real.size(descriptor) }
  func rename(_ source: String, to destination: String) throws {
    if let failure = faults.withLock({ $0.writeErrno }) {
      throw StorageError.systemCall("rename", errno: failure, path: source)
    }
    try real.rename(source, to: destination)
  }
  func remove(_ path: String) throws { try real.remove(path) }
  func contentsOfDirectory(_ path: String) throws -> [String] {
    try real.contentsOfDirectory(path)
  }
  func createDirectory(_ path: String) throws { try real.createDirectory(path) }
  func syncDirectory(_ path: String) throws { try real.syncDirectory(path) }
  func fileExists(_ path: String) -> Bool { real.fileExists(path) }
}

/// Polls `condition` every few milliseconds until it holds or `timeoutMs` passes.
func eventually(timeoutMs: Int = 5_000, _ condition: () async throws -> Bool) async rethrows
  -> Bool
{
  let deadline = ContinuousClock.now.advanced(by: .milliseconds(timeoutMs))
  while ContinuousClock.now < deadline {
    if try await condition() { return true }
    try? await Task.sleep(for: .milliseconds(5))
  }
  return try await condition()
}

/// Runs blocking work on a thread of its own: blocking one of the few cooperative pool
/// threads would stall the broker under test.
func onOwnThread<Result: Sendable>(_ work: @escaping @Sendable () throws -> Result) async throws
  -> Result
{
  try await withCheckedThrowingContinuation { continuation in
    let thread = Thread {
      continuation.resume(with: Swift.Result { try work() })
    }
    thread.start()
  }
}

/// A blocking TCP socket for tests that must control exactly what goes on the wire
/// (several frames in one write, malformed frames). Call it through `onOwnThread`.
final class RawSocket: Sendable {
  let descriptor: Int32

  init(connectingTo address: HostPort) throws {
    descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw BrokerError("socket failed") }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var socketAddress = sockaddr_in()
    socketAddress.sin_family = sa_family_t(AF_INET)
    socketAddress.sin_port = in_port_t(UInt16(address.port).bigEndian)
    inet_pton(AF_INET, address.host, &socketAddress.sin_addr)
    let result = withUnsafePointer(to: &socketAddress) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard result == 0 else {
      Glibc.close(descriptor)
      throw BrokerError("connect failed: \(String(cString: strerror(errno)))")
    }
  }

  func send(_ bytes: [UInt8]) throws {
    var sent = 0
    while sent < bytes.count {
      let count = bytes.withUnsafeBytes {
        Glibc.send(descriptor, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
      }
      guard count > 0 else { throw BrokerError("send failed") }
      sent += count
    }
  }

  /// Reads exactly `count` bytes; nil when the peer closed first.
  func receive(_ count: Int) throws -> [UInt8]? {
    var bytes = [UInt8](repeating: 0, count: count)
    var received = 0
    while received < count {
      let result = bytes.withUnsafeMutableBytes {
        recv(descriptor, $0.baseAddress! + received, count - received, 0)
      }
      if result == 0 { return nil }
      guard result > 0 else {
        throw BrokerError("recv failed: \(String(cString: strerror(errno)))")
      }
      received += result
    }
    return bytes
  }

  /// One frame's payload.
  func receiveFrame() throws -> [UInt8] {
    guard let prefix = try receive(4) else { throw BrokerError("connection closed") }
    let length = Int(
      UInt32(prefix[0]) << 24 | UInt32(prefix[1]) << 16 | UInt32(prefix[2]) << 8 | UInt32(prefix[3])
    )
    guard let payload = try receive(length) else { throw BrokerError("connection closed") }
    return payload
  }

  /// True when the peer closed the connection (reads end of stream).
  func isClosedByPeer() throws -> Bool {
    try receive(1) == nil
  }

  func close() {
    Glibc.close(descriptor)
  }
}
