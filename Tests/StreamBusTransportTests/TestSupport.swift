import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import StreamBusTransport

struct TemporaryDirectory {
  let path: String

  init() throws {
    path = NSTemporaryDirectory() + "streambus-transport-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }

  func write(_ text: String, to filePath: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: filePath))
  }

  func remove() {
    try? FileManager.default.removeItem(atPath: path)
  }
}

let quietLogger = Logger(label: "streambus.transport.test") { _ in SwiftLogNoOpLogHandler() }

/// A request payload: apiKey, apiVersion, correlationId, then the body.
func makeRequest(apiKey: Int16 = 0, correlationId: Int32, body: [UInt8] = []) -> [UInt8] {
  var buffer = ByteBuffer()
  buffer.writeInteger(apiKey)
  buffer.writeInteger(Int16(1))
  buffer.writeInteger(correlationId)
  buffer.writeBytes(body)
  return buffer.copyReadableBytes()
}

/// Bytes 4..<8 of a request, without copying the body.
func correlationId(of request: [UInt8]) -> Int32 {
  Int32(bitPattern: request[4...7].reduce(0) { $0 << 8 | UInt32($1) })
}

struct ParsedRequest {
  var apiKey: Int16
  var correlationId: Int32
  var body: [UInt8]

  init(_ frame: [UInt8]) {
    var buffer = ByteBuffer(bytes: frame)
    apiKey = buffer.readInteger() ?? -1
    _ = buffer.readInteger(as: Int16.self)
    correlationId = buffer.readInteger() ?? -1
    body = buffer.copyReadableBytes()
  }
}

/// A response payload: correlationId, then the body.
func makeResponse(correlationId: Int32, body: [UInt8]) -> [UInt8] {
  var buffer = ByteBuffer()
  buffer.writeInteger(correlationId)
  buffer.writeBytes(body)
  return buffer.copyReadableBytes()
}

func responseBody(_ response: [UInt8]) -> [UInt8] {
  Array(response.dropFirst(4))
}

struct ClosureHandler: FrameRequestHandler {
  let body: @Sendable ([UInt8], ConnectionInfo) async -> FrameReply

  func handle(frame: [UInt8], connection: ConnectionInfo) async -> FrameReply {
    await body(frame, connection)
  }
}

/// Answers every request with its own correlation id and body.
let echoHandler = ClosureHandler { frame, _ in
  let request = ParsedRequest(frame)
  return .respond(makeResponse(correlationId: request.correlationId, body: request.body))
}

func startServer(
  _ handler: any FrameRequestHandler,
  configure: (inout FrameServerConfiguration) -> Void = { _ in }
) async throws -> FrameServer {
  var configuration = FrameServerConfiguration(host: "127.0.0.1", port: 0)
  configure(&configuration)
  return try await FrameServer.bind(
    configuration: configuration, handler: handler, logger: quietLogger)
}

func connect(
  _ server: FrameServer,
  configure: (inout FrameConnectionConfiguration) -> Void = { _ in }
) async throws -> FrameConnection {
  var configuration = FrameConnectionConfiguration()
  configuration.requestTimeoutMs = 10_000
  configure(&configuration)
  return try await FrameConnection.connect(
    to: server.localAddress, configuration: configuration, logger: quietLogger)
}

/// A raw TCP peer for sending malformed bytes; `readUntilClosed` proves the server hung up.
struct RawPeer {
  let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

  static func connect(to address: HostPort) async throws -> RawPeer {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .connect(host: address.host, port: address.port) { channel in
        channel.eventLoop.makeCompletedFuture {
          try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
        }
      }
    return RawPeer(channel: channel)
  }

  /// Writes `bytes`, then either closes at once or collects everything until the server
  /// closes the connection.
  func send(_ bytes: [UInt8], thenClose: Bool = false, readDelayMs: Int = 0) async throws
    -> [UInt8]
  {
    try await channel.executeThenClose { inbound, outbound in
      try await outbound.write(ByteBuffer(bytes: bytes))
      if thenClose {
        return []
      }
      try await Task.sleep(for: .milliseconds(readDelayMs))
      var received: [UInt8] = []
      do {
        for try await chunk in inbound {
          received.append(contentsOf: chunk.readableBytesView)
        }
      } catch {
        // A reset from the server also counts as "closed".
      }
      return received
    }
  }
}

/// Counts concurrent handler calls and lets a test hold them until released.
actor Gate {
  private(set) var running = 0
  private(set) var runningMax = 0
  private(set) var started = 0
  private var isOpen = false
  private var waiters: [CheckedContinuation<Void, Never>] = []

  func pass() async {
    started += 1
    running += 1
    runningMax = max(runningMax, running)
    if !isOpen {
      await withCheckedContinuation { waiters.append($0) }
    }
    running -= 1
  }

  func open() {
    isOpen = true
    for waiter in waiters {
      waiter.resume()
    }
    waiters.removeAll()
  }

  func waitUntilStarted(_ count: Int) async {
    while started < count {
      try? await Task.sleep(for: .milliseconds(2))
    }
  }
}

/// Polls `condition` until it holds or `timeoutMs` passes (for state other tasks change).
func eventually(timeoutMs: Int = 5000, _ condition: () async -> Bool) async throws -> Bool {
  let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
  while ContinuousClock.now < deadline {
    if await condition() {
      return true
    }
    try await Task.sleep(for: .milliseconds(2))
  }
  return await condition()
}

/// Values appended by concurrent tasks, in the order they arrived.
actor Recorder {
  private(set) var values: [Int32] = []

  func append(_ value: Int32) {
    values.append(value)
  }
}

/// Tracks how many tasks are inside a region at once.
actor OverlapProbe {
  private var inside = 0
  private(set) var insideMax = 0

  func enter() {
    inside += 1
    insideMax = max(insideMax, inside)
  }

  func leave() {
    inside -= 1
  }
}

/// The request payloads as length-prefixed frames in one buffer, for a single raw write.
func framed(_ payloads: [[UInt8]]) -> [UInt8] {
  var bytes: [UInt8] = []
  for payload in payloads {
    bytes += ByteBufferAllocator().frameBuffer(payload: payload).readableBytesView
  }
  return bytes
}

/// The correlation ids of the response frames in `bytes`, in wire order.
func responseCorrelationIds(_ bytes: [UInt8]) throws -> [Int32] {
  var buffer = ByteBuffer(bytes: bytes)
  var ids: [Int32] = []
  while let length = buffer.readInteger(as: UInt32.self) {
    let payload = buffer.readBytes(length: Int(length))
    ids.append(correlationId(ofResponse: try #require(payload)))
  }
  #expect(buffer.readableBytes == 0)
  return ids
}

func correlationId(ofResponse response: [UInt8]) -> Int32 {
  Int32(bitPattern: response[0...3].reduce(0) { $0 << 8 | UInt32($1) })
}
