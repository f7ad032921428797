import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import StreamBusTransport

/// One HTTP request as the endpoint handler sees it: small, fully buffered.
public struct HTTPEndpointRequest: Sendable {
  public var method: String
  /// The path without the query string, e.g. "/readyz".
  public var path: String
  /// Query parameters in order of appearance (no percent-decoding: values are plain tokens).
  public var query: [(name: String, value: String)]
  public var body: [UInt8]

  public init(method: String, uri: String, body: [UInt8] = []) {
    self.method = method
    self.body = body
    if let questionMark = uri.firstIndex(of: "?") {
      path = String(uri[..<questionMark])
      query = uri[uri.index(after: questionMark)...].split(separator: "&").map { item in
        if let equals = item.firstIndex(of: "=") {
          return (String(item[..<equals]), String(item[item.index(after: equals)...]))
        }
        return (String(item), "")
      }
    } else {
      path = uri
      query = []
    }
  }

  public func queryValue(_ name: String) -> String? {
    query.first { $0.name == name }?.value
  }
}

public struct HTTPEndpointResponse: Sendable {
  public var status: Int
  public var contentType: String
  public var body: [UInt8]

  public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
    self.status = status
    self.contentType = contentType
    self.body = body
  }

  public init(status: Int, text: String) {
    self.init(status: status, body: Array(text.utf8))
  }
}

/// Application logic behind an `HTTPEndpointServer`.
public protocol HTTPEndpointHandler: Sendable {
  func handle(_ request: HTTPEndpointRequest) async -> HTTPEndpointResponse
}

/// A tiny HTTP/1.1 server for operational endpoints (health, readiness, metrics): requests
/// with bodies up to `requestBodyBytesMax`, keep-alive and pipelining (answered in order).
public final class HTTPEndpointServer: Service, Sendable {
  /// The address actually bound (the OS-chosen port when asked for port 0).
  public let localAddress: HostPort
  private let serverChannel: any Channel
  private let connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>
  private let logger: Logger

  /// Bodies above this are answered 413 without being buffered.
  public static let requestBodyBytesMax = 64 * 1024

  private init(
    serverChannel: any Channel, localAddress: HostPort,
    connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>, logger: Logger
  ) {
    self.serverChannel = serverChannel
    self.localAddress = localAddress
    self.connections = connections
    self.logger = logger
  }

  public static func bind(
    listen: HostPort, handler: any HTTPEndpointHandler, logger: Logger,
    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
  ) async throws -> HTTPEndpointServer {
    let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    let bootstrap = ServerBootstrap(group: eventLoopGroup)
      .serverChannelOption(.backlog, value: 64)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          connections.withLockedValue { $0[ObjectIdentifier(channel)] = channel }
          channel.closeFuture.whenComplete { _ in
            _ = connections.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(channel)) }
          }
          try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withErrorHandling: true)
          try channel.pipeline.syncOperations.addHandler(
            HTTPEndpointChannelHandler(handler: handler, logger: logger))
        }
      }
    let channel: any Channel
    do {
      channel = try await bootstrap.bind(host: listen.host, port: listen.port).get()
    } catch {
      throw TransportError(.connectionFailed, "cannot listen for HTTP on \(listen): \(error)")
    }
    let localAddress = HostPort(host: listen.host, port: channel.localAddress?.port ?? listen.port)
    logger.info("HTTP endpoints listening", metadata: ["address": "\(localAddress)"])
    return HTTPEndpointServer(
      serverChannel: channel, localAddress: localAddress, connections: connections,
      logger: logger)
  }

  /// Serves until a graceful shutdown or cancellation, then closes every connection.
  public func run() async throws {
    let listener = serverChannel
    await withGracefulShutdownHandler {
      await withTaskCancellationHandler {
        try? await listener.closeFuture.get()
      } onCancel: {
        listener.close(promise: nil)
      }
    } onGracefulShutdown: {
      listener.close(promise: nil)
    }
    await closeConnections()
  }

  public func shutdown() async {
    try? await serverChannel.close()
    await closeConnections()
  }

  private func closeConnections() async {
    let open = connections.withLockedValue { Array($0.values) }
    for channel in open {
      try? await channel.close()
    }
  }
}

/// Buffers one request, hands it to the handler on a task, writes the response back on the
/// event loop. `HTTPServerPipelineHandler` (added by `configureHTTPServerPipeline`) holds
/// pipelined requests until the previous response is written, so one is in flight at a time.
final class HTTPEndpointChannelHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let handler: any HTTPEndpointHandler
  private let logger: Logger
  private var head: HTTPRequestHead?
  private var body: [UInt8] = []
  private var isBodyTooLarge = false

  init(handler: any HTTPEndpointHandler, logger: Logger) {
    self.handler = handler
    self.logger = logger
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let requestHead):
      head = requestHead
      body = []
      isBodyTooLarge = false
    case .body(var buffer):
      if body.count + buffer.readableBytes > HTTPEndpointServer.requestBodyBytesMax {
        isBodyTooLarge = true
        body = []
      } else if !isBodyTooLarge {
        body += buffer.readBytes(length: buffer.readableBytes) ?? []
      }
    case .end:
      guard let requestHead = head else { return }
      head = nil
      let keepAlive = requestHead.isKeepAlive
      if isBodyTooLarge {
        write(
          context: context, keepAlive: false,
          response: HTTPEndpointResponse(
            status: 413,
            text:
              "request body above \(HTTPEndpointServer.requestBodyBytesMax) bytes\n"),
          version: requestHead.version)
        return
      }
      let request = HTTPEndpointRequest(
        method: requestHead.method.rawValue, uri: requestHead.uri, body: body)
      body = []
      let handler = handler
      let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
      let eventLoop = context.eventLoop
      Task {
        let response = await handler.handle(request)
        eventLoop.execute {
          let (channelHandler, context) = loopBound.value
          channelHandler.write(
            context: context, keepAlive: keepAlive, response: response,
            version: requestHead.version)
        }
      }
    }
  }

  private func write(
    context: ChannelHandlerContext, keepAlive: Bool, response: HTTPEndpointResponse,
    version: HTTPVersion
  ) {
    guard context.channel.isActive else { return }
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: response.contentType)
    headers.add(name: "Content-Length", value: "\(response.body.count)")
    headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
    let responseHead = HTTPResponseHead(
      version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
    context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
    var buffer = context.channel.allocator.buffer(capacity: response.body.count)
    buffer.writeBytes(response.body)
    context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    let done = context.eventLoop.makePromise(of: Void.self)
    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
    if !keepAlive {
      let channel = context.channel
      done.futureResult.whenComplete { _ in channel.close(promise: nil) }
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    logger.debug("HTTP connection error: \(error)")
    context.close(promise: nil)
  }
}
