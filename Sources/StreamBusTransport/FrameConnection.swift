import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

public struct FrameConnectionConfiguration: Sendable {
  public var connectTimeoutMs: Int64 = 10_000
  /// Default for `send`; long polls pass their own, longer timeout.
  public var requestTimeoutMs: Int64 = 30_000
  /// Bound on response frames accepted and on request frames sent.
  public var frameBytesMax: Int = FrameDecoder.frameBytesMaxDefault

  public init() {}
}

/// One client connection speaking length-prefixed frames, with pipelining.
///
/// Many tasks may `send` concurrently; requests go out in call order and responses are
/// matched first-in first-out, each checked against the request's correlation id.
/// Any connection failure or protocol violation fails every outstanding request and all
/// later ones: open a new connection (or use `ConnectionPool`) to carry on.
public final class FrameConnection: Sendable {
  /// Payload offset and size of the correlation id in a request (after apiKey and apiVersion).
  public static let requestCorrelationIdOffset = 4
  /// Bytes of the request header this layer reads: apiKey i16, apiVersion i16, correlationId i32.
  public static let requestHeaderBytesMin = 8

  public let remote: HostPort
  public let configuration: FrameConnectionConfiguration
  private let channel: any Channel

  private init(channel: any Channel, remote: HostPort, configuration: FrameConnectionConfiguration)
  {
    self.channel = channel
    self.remote = remote
    self.configuration = configuration
  }

  public static func connect(
    to remote: HostPort,
    configuration: FrameConnectionConfiguration = FrameConnectionConfiguration(),
    logger: Logger,
    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
  ) async throws -> FrameConnection {
    var connectionLogger = logger
    connectionLogger[metadataKey: "remote"] = "\(remote)"
    let handlerLogger = connectionLogger
    let bootstrap = ClientBootstrap(group: eventLoopGroup)
      .connectTimeout(.clampedMilliseconds(configuration.connectTimeoutMs))
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelOption(.socketOption(.so_keepalive), value: 1)
      .channelOption(.recvAllocator, value: transportReceiveAllocator)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(FrameDecoder(frameBytesMax: configuration.frameBytesMax)),
            FrameClientHandler(remote: remote, logger: handlerLogger))
        }
      }
    let channel: any Channel
    do {
      channel = try await bootstrap.connect(host: remote.host, port: remote.port).get()
    } catch ChannelError.connectTimeout(let timeout) {
      throw TransportError(
        .connectionFailed,
        "cannot connect to \(remote): no answer within \(timeout.nanoseconds / 1_000_000) ms")
    } catch {
      throw TransportError(
        .connectionFailed, "cannot connect to \(remote): \(describeConnectError(error))")
    }
    connectionLogger.debug("connected")
    return FrameConnection(channel: channel, remote: remote, configuration: configuration)
  }

  /// False once the connection failed or was closed.
  public var isActive: Bool { channel.isActive }

  /// Sends one request and waits for its response payload.
  ///
  /// - Parameter request: the request payload, starting with apiKey, apiVersion and a
  ///   correlation id that the response must echo.
  /// - Parameter timeoutMs: overrides `configuration.requestTimeoutMs`. A timeout fails only
  ///   this request; its late response is discarded when it arrives.
  public func send(_ request: [UInt8], timeoutMs: Int64? = nil) async throws -> [UInt8] {
    let correlationId = try checkedCorrelationId(request)
    let response = channel.eventLoop.makePromise(of: [UInt8].self)
    let written = channel.eventLoop.makePromise(of: Void.self)
    let remote = remote
    written.futureResult.whenFailure { error in
      response.fail(mapWriteError(error, remote: remote))
    }
    channel.writeAndFlush(
      ClientRequest(
        payload: request, correlationId: correlationId, response: response,
        timeoutMs: timeoutMs ?? configuration.requestTimeoutMs),
      promise: written)
    return try await response.futureResult.get()
  }

  /// Sends a request that gets no response (produce with acks=0); returns once written.
  public func sendOneWay(_ request: [UInt8]) async throws {
    let correlationId = try checkedCorrelationId(request)
    let written = channel.eventLoop.makePromise(of: Void.self)
    channel.writeAndFlush(
      ClientRequest(payload: request, correlationId: correlationId, response: nil, timeoutMs: 0),
      promise: written)
    do {
      try await written.futureResult.get()
    } catch {
      throw mapWriteError(error, remote: remote)
    }
  }

  /// Closes the connection; outstanding requests fail with `connectionClosed`.
  public func close() async {
    try? await channel.close()
  }

  private func checkedCorrelationId(_ request: [UInt8]) throws -> Int32 {
    guard request.count >= Self.requestHeaderBytesMin else {
      throw TransportError(
        .invalidRequest,
        "request of \(request.count) bytes is shorter than the \(Self.requestHeaderBytesMin)-byte header"
      )
    }
    guard request.count <= configuration.frameBytesMax else {
      throw TransportError(
        .invalidRequest,
        "request of \(request.count) bytes exceeds frameBytesMax \(configuration.frameBytesMax)")
    }
    return readBigEndianInt32(request, at: Self.requestCorrelationIdOffset)
  }
}

private func readBigEndianInt32(_ bytes: [UInt8], at offset: Int) -> Int32 {
  precondition(offset + 4 <= bytes.count)
  let value =
    UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16
    | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
  return Int32(bitPattern: value)
}

private func mapWriteError(_ error: any Error, remote: HostPort) -> any Error {
  if error is TransportError {
    return error
  }
  return TransportError(.connectionClosed, "connection to \(remote) is closed (\(error))")
}

private func describeConnectError(_ error: any Error) -> String {
  if let connectionError = error as? NIOConnectionError {
    let reasons = connectionError.connectionErrors.map {
      "\(describeSocketAddress($0.target)) \(describeSystemError($0.error))"
    }
    if let dnsError = connectionError.dnsAAAAError ?? connectionError.dnsAError, reasons.isEmpty {
      return "name resolution failed (\(dnsError))"
    }
    return reasons.isEmpty ? "\(error)" : reasons.joined(separator: "; ")
  }
  return "\(error)"
}

struct ClientRequest: Sendable {
  var payload: [UInt8]
  var correlationId: Int32
  /// Nil for one-way requests, which take no slot in the response queue.
  var response: EventLoopPromise<[UInt8]>?
  var timeoutMs: Int64
}

/// Matches responses to outstanding requests, first in first out, on the event loop.
final class FrameClientHandler: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundIn = ClientRequest
  typealias OutboundOut = ByteBuffer

  private struct Outstanding {
    var requestNumber: UInt64
    var correlationId: Int32
    /// Nil once the request timed out: the slot stays so later responses still line up.
    var response: EventLoopPromise<[UInt8]>?
    var timeout: Scheduled<Void>?
  }

  private let remote: HostPort
  private let logger: Logger
  private var outstanding = CircularBuffer<Outstanding>()
  private var nextRequestNumber: UInt64 = 0
  /// Set once the connection is unusable; every later request fails with it.
  private var failure: TransportError?
  private var isFlushScheduled = false

  init(remote: HostPort, logger: Logger) {
    self.remote = remote
    self.logger = logger
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    let request = unwrapOutboundIn(data)
    if let failure {
      request.response?.fail(failure)
      promise?.fail(failure)
      return
    }
    if let response = request.response {
      let requestNumber = nextRequestNumber
      nextRequestNumber += 1
      let timeout = context.eventLoop.assumeIsolated().scheduleTask(
        in: .clampedMilliseconds(request.timeoutMs)
      ) {
        self.timeOut(requestNumber: requestNumber, timeoutMs: request.timeoutMs)
      }
      outstanding.append(
        Outstanding(
          requestNumber: requestNumber, correlationId: request.correlationId,
          response: response, timeout: timeout))
    }
    context.write(
      wrapOutboundOut(context.channel.allocator.frameBuffer(payload: request.payload)),
      promise: promise)
  }

  /// Every `send` asks for a flush; requests queued in the same event loop tick share one
  /// (one syscall for a burst of concurrent sends).
  func flush(context: ChannelHandlerContext) {
    guard !isFlushScheduled else { return }
    isFlushScheduled = true
    context.eventLoop.assumeIsolated().execute {
      self.isFlushScheduled = false
      if self.failure == nil {
        context.flush()
      }
    }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = unwrapInboundIn(data)
    guard let oldest = outstanding.popFirst() else {
      fail(
        TransportError(
          .protocolViolation,
          "\(remote) sent a response while no request was outstanding"),
        context: context)
      return
    }
    oldest.timeout?.cancel()
    guard let correlationId = frame.getInteger(at: frame.readerIndex, as: Int32.self) else {
      oldest.response?.fail(
        TransportError(
          .protocolViolation,
          "response from \(remote) is \(frame.readableBytes) bytes, too short for a correlation id")
      )
      fail(
        TransportError(
          .protocolViolation,
          "\(remote) sent a response too short for a correlation id"),
        context: context)
      return
    }
    guard correlationId == oldest.correlationId else {
      let error = TransportError(
        .protocolViolation,
        "\(remote) answered with correlation id \(correlationId) where \(oldest.correlationId) was expected"
      )
      oldest.response?.fail(error)
      fail(error, context: context)
      return
    }
    oldest.response?.succeed(frame.copyReadableBytes())
  }

  func channelInactive(context: ChannelHandlerContext) {
    if failure == nil {
      failure = TransportError(
        .connectionClosed,
        "connection to \(remote) closed with \(outstanding.count) requests outstanding")
    }
    failOutstanding()
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let transportError = error as? TransportError {
      fail(transportError, context: context)
    } else {
      fail(
        TransportError(.connectionClosed, "connection to \(remote) failed: \(error)"),
        context: context)
    }
  }

  private func timeOut(requestNumber: UInt64, timeoutMs: Int64) {
    guard let index = outstanding.firstIndex(where: { $0.requestNumber == requestNumber }) else {
      return
    }
    outstanding[index].response?.fail(
      TransportError(
        .requestTimedOut,
        "no response from \(remote) within \(timeoutMs) ms"))
    outstanding[index].response = nil
  }

  private func fail(_ error: TransportError, context: ChannelHandlerContext) {
    if failure == nil {
      failure = error
      logger.warning("closing connection: \(error)")
    }
    failOutstanding()
    context.close(promise: nil)
  }

  private func failOutstanding() {
    guard let failure else { return }
    while let request = outstanding.popFirst() {
      request.timeout?.cancel()
      request.response?.fail(failure)
    }
  }
}

/// "Connection refused (errno 111)" rather than NIO's description of the failed syscall.
private func describeSystemError(_ error: any Error) -> String {
  guard let ioError = error as? IOError else {
    return "\(error)"
  }
  return "\(String(cString: strerror(ioError.errnoCode))) (errno \(ioError.errnoCode))"
}
