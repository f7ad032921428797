import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Who sent a request; handed to the request handler for logging and per-client state.
public struct ConnectionInfo: Sendable, CustomStringConvertible {
  /// Unique within one `FrameServer`, assigned in accept order.
  public let connectionId: UInt64
  /// "ip:port" of the peer, or "unknown" when the socket has none.
  public let remoteAddress: String
  public let localAddress: String

  public init(connectionId: UInt64, remoteAddress: String, localAddress: String) {
    self.connectionId = connectionId
    self.remoteAddress = remoteAddress
    self.localAddress = localAddress
  }

  public var description: String { "connection \(connectionId) from \(remoteAddress)" }
}

/// What the server does with a request once the handler is done with it.
public enum FrameReply: Sendable {
  /// Write this payload back as one frame, in request order.
  case respond([UInt8])
  /// Write the concatenation of these parts as one frame, in request order; file parts go
  /// out with `sendfile(2)` and their descriptors are closed once written (or dropped). If
  /// a file no longer holds its range the connection is closed instead: a frame is never
  /// shorter than its length prefix.
  case respondParts([FramePart])
  /// Write nothing (a produce with acks=0); later responses still keep their order.
  case noResponse
  /// Write the responses before this one, then close the connection (logged with the reason).
  /// No later request of the connection reaches the handler.
  case close(reason: String)
  /// The request is processed; its reply comes from this work, which the server runs
  /// concurrently with the handling of later requests (a produce waiting for its commit, a
  /// fetch waiting for data). The reply still goes out in request order; a `.deferred`
  /// returned by the work runs in turn. The work sees task cancellation once the connection
  /// is closed, and should then return promptly: its reply is discarded.
  case deferred(@Sendable () async -> FrameReply)
}

/// Application logic behind a `FrameServer`: one call per request frame.
///
/// Calls for the requests of one connection are serial, in arrival order: the next call
/// starts only after the previous one returned. So a handler processes a connection's
/// requests in order (appends land in send order) and puts waits that need not hold up
/// later requests into a `.deferred` reply. Up to `inflightRequestsMax` requests per
/// connection are between the start of their call and the write of their reply.
public protocol FrameRequestHandler: Sendable {
  func handle(frame: [UInt8], connection: ConnectionInfo) async -> FrameReply
}

public struct FrameServerConfiguration: Sendable {
  public var host: String
  /// 0 lets the OS pick; read the result from `FrameServer.localAddress`.
  public var port: Int
  public var frameBytesMax: Int = FrameDecoder.frameBytesMaxDefault
  /// Requests per connection handed to the handler and not yet answered (deferred work
  /// included); no further request is handled, and reading stops, at this bound.
  public var inflightRequestsMax: Int = 64
  /// How long a graceful shutdown waits for in-flight requests before closing connections.
  public var shutdownGracePeriodMs: Int64 = 10_000
  public var listenBacklog: Int32 = 256

  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  public init(listen: HostPort) {
    self.init(host: listen.host, port: listen.port)
  }
}

/// A TCP server speaking length-prefixed frames, with pipelining and graceful shutdown.
///
/// Create it with `bind`, then either run it as a `Service` in a `ServiceGroup` (SIGTERM and
/// SIGINT become a graceful shutdown) or call `run()` and `shutdownGracefully()` directly.
public final class FrameServer: Service, Sendable {
  /// The address actually bound (the OS-chosen port when the configuration asked for 0).
  public let localAddress: HostPort
  public let configuration: FrameServerConfiguration
  private let serverChannel: any Channel
  private let registry: ConnectionRegistry
  private let logger: Logger

  private init(
    serverChannel: any Channel, localAddress: HostPort, configuration: FrameServerConfiguration,
    registry: ConnectionRegistry, logger: Logger
  ) {
    self.serverChannel = serverChannel
    self.localAddress = localAddress
    self.configuration = configuration
    self.registry = registry
    self.logger = logger
  }

  /// Binds the listening socket; connections are accepted from this point on.
  public static func bind(
    configuration: FrameServerConfiguration,
    handler: any FrameRequestHandler,
    logger: Logger,
    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
  ) async throws -> FrameServer {
    precondition(configuration.inflightRequestsMax > 0, "inflightRequestsMax must be positive")
    let registry = ConnectionRegistry()
    let bootstrap = ServerBootstrap(group: eventLoopGroup)
      .serverChannelOption(.backlog, value: configuration.listenBacklog)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelOption(.socketOption(.so_keepalive), value: 1)
      .childChannelOption(.recvAllocator, value: transportReceiveAllocator)
      // Writability gates dispatch of further requests; the default 64 KiB high mark would
      // stall pipelining behind every large fetch response.
      .childChannelOption(
        .writeBufferWaterMark,
        value: ChannelOptions.Types.WriteBufferWaterMark(low: 512 * 1024, high: 2 * 1024 * 1024)
      )
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          guard let connectionId = registry.register(channel) else {
            // Accepted in the window between the start of a shutdown and the listener closing.
            channel.close(promise: nil)
            return
          }
          channel.closeFuture.whenComplete { _ in registry.unregister(channel) }
          let info = ConnectionInfo(
            connectionId: connectionId,
            remoteAddress: channel.remoteAddress.map(describeSocketAddress) ?? "unknown",
            localAddress: channel.localAddress.map(describeSocketAddress) ?? "unknown")
          var connectionLogger = logger
          connectionLogger[metadataKey: "connection"] = "\(connectionId)"
          connectionLogger[metadataKey: "peer"] = "\(info.remoteAddress)"
          try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(FrameDecoder(frameBytesMax: configuration.frameBytesMax)),
            FrameServerConnectionHandler(
              requestHandler: handler, info: info, registry: registry,
              inflightRequestsMax: configuration.inflightRequestsMax, logger: connectionLogger))
        }
      }
    let channel: any Channel
    do {
      channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
    } catch {
      throw TransportError(
        .connectionFailed,
        "cannot listen on \(HostPort(host: configuration.host, port: configuration.port)): \(error)"
      )
    }
    let boundPort = channel.localAddress?.port ?? configuration.port
    let localAddress = HostPort(host: configuration.host, port: boundPort)
    logger.info("listening", metadata: ["address": "\(localAddress)"])
    return FrameServer(
      serverChannel: channel, localAddress: localAddress, configuration: configuration,
      registry: registry, logger: logger)
  }

  /// Serves until a graceful shutdown (from the `ServiceGroup`, task cancellation or
  /// `shutdownGracefully()`), then drains connections before returning.
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
    await drainConnections()
  }

  /// Stops accepting, lets in-flight requests finish (up to `shutdownGracePeriodMs`), then
  /// closes every connection. Safe to call more than once and concurrently with `run()`.
  public func shutdownGracefully() async {
    try? await serverChannel.close()
    await drainConnections()
  }

  /// Connections currently open (for tests and metrics).
  public var connectionCount: Int { registry.connectionCount }

  private func drainConnections() async {
    let channels = registry.beginDraining()
    for channel in channels {
      channel.triggerUserOutboundEvent(StopReadingEvent(), promise: nil)
    }
    let deadline = NIODeadline.now() + .clampedMilliseconds(configuration.shutdownGracePeriodMs)
    // Connections close themselves once their last reply is written; poll rather than wire
    // a notification path that only shutdown would use.
    while registry.connectionCount > 0 && NIODeadline.now() < deadline {
      try? await Task.sleep(for: .milliseconds(5))
    }
    let remaining = registry.allChannels()
    if !remaining.isEmpty {
      logger.warning(
        "shutdown grace period over, closing connections with requests in flight",
        metadata: [
          "connections": "\(remaining.count)", "requests": "\(registry.inflightRequestCount)",
        ])
    }
    for channel in remaining {
      try? await channel.close()
    }
    logger.info("stopped", metadata: ["address": "\(localAddress)"])
  }
}

/// Asks a connection to stop reading new requests and close once its replies are written.
struct StopReadingEvent: Sendable {}

/// Receive buffers grow up to 1 MiB so large fetch responses arrive in few reads.
let transportReceiveAllocator = AdaptiveRecvByteBufferAllocator(
  minimum: 64, initial: 16 * 1024, maximum: 1024 * 1024)

func describeSocketAddress(_ address: SocketAddress) -> String {
  guard let ip = address.ipAddress, let port = address.port else {
    return "\(address)"
  }
  return HostPort(host: ip, port: port).description
}

/// Open connections of one server, shared between the accept path and shutdown.
final class ConnectionRegistry: Sendable {
  private struct State {
    var channels: [ObjectIdentifier: any Channel] = [:]
    var nextConnectionId: UInt64 = 1
    var isDraining = false
    var inflightRequestCount = 0
  }

  private let state = NIOLockedValueBox(State())

  /// Returns the new connection's id, or nil when the server is shutting down.
  func register(_ channel: any Channel) -> UInt64? {
    state.withLockedValue { state in
      guard !state.isDraining else { return nil }
      state.channels[ObjectIdentifier(channel)] = channel
      defer { state.nextConnectionId += 1 }
      return state.nextConnectionId
    }
  }

  func unregister(_ channel: any Channel) {
    _ = state.withLockedValue { $0.channels.removeValue(forKey: ObjectIdentifier(channel)) }
  }

  func beginDraining() -> [any Channel] {
    state.withLockedValue { state in
      state.isDraining = true
      return Array(state.channels.values)
    }
  }

  func allChannels() -> [any Channel] {
    state.withLockedValue { Array($0.channels.values) }
  }

  var connectionCount: Int { state.withLockedValue { $0.channels.count } }

  var inflightRequestCount: Int { state.withLockedValue { $0.inflightRequestCount } }

  func requestsStarted(_ count: Int) {
    state.withLockedValue { $0.inflightRequestCount += count }
  }

  func requestsFinished(_ count: Int) {
    state.withLockedValue { $0.inflightRequestCount -= count }
  }
}

/// Runs deferred work, and any work its reply defers to, down to a final reply.
private func settleDeferredReply(_ work: @Sendable () async -> FrameReply) async -> FrameReply {
  var reply = await work()
  while case .deferred(let next) = reply {
    reply = await next()
  }
  return reply
}

/// Per-connection request pipeline: hands frames to the handler one at a time in arrival
/// order, runs deferred replies concurrently, writes replies in request order, and holds
/// reads while `inflightRequestsMax` requests are open.
///
/// Everything here runs on the channel's event loop; handler calls (one task per
/// connection) and deferred work (one task each) hop back with their replies.
final class FrameServerConnectionHandler: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = IOData

  private let requestHandler: any FrameRequestHandler
  private let info: ConnectionInfo
  private let registry: ConnectionRegistry
  private let inflightRequestsMax: Int
  private let logger: Logger

  /// Frames read but not yet handed to the handler.
  private var queuedFrames = CircularBuffer<[UInt8]>()
  /// Requests handed to the handler whose replies are not yet written (being handled,
  /// deferred work running, or waiting for an earlier reply).
  private var dispatchedCount = 0
  /// Feeds the connection's handler task, which calls the handler for one frame after the
  /// other; it holds at most `inflightRequestsMax` frames.
  private var handlerInbox: AsyncStream<(sequence: UInt64, frame: [UInt8])>.Continuation?
  /// Set when the connection closes: the handler task drops the frames still in its inbox.
  private let isConnectionClosed = NIOLockedValueBox(false)
  /// The handler answered `.close`: later frames are never handled.
  private var isCloseRequested = false
  private var nextSequenceToAssign: UInt64 = 0
  private var nextSequenceToWrite: UInt64 = 0
  private var finishedReplies: [UInt64: FrameReply] = [:]
  /// Running deferred work by request sequence, cancelled when the connection closes.
  private var deferredTasks: [UInt64: Task<Void, Never>] = [:]
  /// A `read` from the channel that we did not pass on because of backpressure.
  private var isReadHeld = false
  private var isStoppingReads = false
  private var isClosed = false
  private var isFlushScheduled = false
  private var context: ChannelHandlerContext?

  init(
    requestHandler: any FrameRequestHandler, info: ConnectionInfo, registry: ConnectionRegistry,
    inflightRequestsMax: Int, logger: Logger
  ) {
    self.requestHandler = requestHandler
    self.info = info
    self.registry = registry
    self.inflightRequestsMax = inflightRequestsMax
    self.logger = logger
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    startHandlerTask(eventLoop: context.eventLoop)
  }

  /// One task per connection calls the handler serially, in arrival order, and goes on with
  /// the next frame as soon as a call returns: the event loop is not in that chain, so a
  /// pipelined connection is handled at the handler's own pace.
  private func startHandlerTask(eventLoop: any EventLoop) {
    let (frames, inbox) = AsyncStream.makeStream(of: (sequence: UInt64, frame: [UInt8]).self)
    handlerInbox = inbox
    let loopBoundSelf = NIOLoopBound(self, eventLoop: eventLoop)
    let handler = requestHandler
    let info = info
    let isConnectionClosed = isConnectionClosed
    Task {
      var isCloseRequested = false
      for await (sequence, frame) in frames {
        let reply: FrameReply
        if isCloseRequested || isConnectionClosed.withLockedValue({ $0 }) {
          // Nobody will read the reply, or the handler asked to close before this request.
          reply = .noResponse
        } else {
          reply = await handler.handle(frame: frame, connection: info)
          if case .close = reply {
            isCloseRequested = true
          }
        }
        eventLoop.execute {
          loopBoundSelf.value.handlerReturned(sequence: sequence, reply: reply)
        }
      }
    }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    markClosed()
    self.context = nil
  }

  func channelActive(context: ChannelHandlerContext) {
    logger.debug("connection opened")
    context.fireChannelActive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !isClosed else { return }
    let frame = unwrapInboundIn(data)
    registry.requestsStarted(1)
    // The one copy per request: the handler gets an owned array, free of NIO types.
    queuedFrames.append(frame.copyReadableBytes())
    handleNextFrame(context: context)
  }

  func read(context: ChannelHandlerContext) {
    if canRead(context: context) {
      context.read()
    } else {
      isReadHeld = true
    }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable && !isClosed {
      handleNextFrame(context: context)
      releaseHeldRead(context: context)
    }
    context.fireChannelWritabilityChanged()
  }

  /// Reading stops while the request window is full, frames wait in the queue, or replies
  /// pile up behind a peer that does not read them: memory per connection stays bounded.
  private func canRead(context: ChannelHandlerContext) -> Bool {
    !isStoppingReads && !isCloseRequested && dispatchedCount < inflightRequestsMax
      && queuedFrames.isEmpty && context.channel.isWritable
  }

  private func releaseHeldRead(context: ChannelHandlerContext) {
    if isReadHeld && canRead(context: context) {
      isReadHeld = false
      context.read()
    }
  }

  func triggerUserOutboundEvent(
    context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?
  ) {
    guard event is StopReadingEvent else {
      context.triggerUserOutboundEvent(event, promise: promise)
      return
    }
    isStoppingReads = true
    promise?.succeed()
    closeIfDrained(context: context)
  }

  func channelInactive(context: ChannelHandlerContext) {
    if dispatchedCount > 0 || !queuedFrames.isEmpty {
      logger.debug(
        "connection closed with requests in flight",
        metadata: ["dispatched": "\(dispatchedCount)", "queued": "\(queuedFrames.count)"])
    } else {
      logger.debug("connection closed")
    }
    markClosed()
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let transportError = error as? TransportError {
      logger.warning("closing connection: \(transportError)")
    } else if let ioError = error as? IOError {
      // Resets and broken pipes are what clients do; not worth a warning.
      logger.debug("closing connection after I/O error: \(ioError)")
    } else {
      logger.warning("closing connection after error: \(error)")
    }
    markClosed()
    context.close(promise: nil)
  }

  /// Passes queued frames to the handler task while the request window has room.
  private func handleNextFrame(context: ChannelHandlerContext) {
    while !isClosed && !isCloseRequested && dispatchedCount < inflightRequestsMax
      && context.channel.isWritable,
      let frame = queuedFrames.popFirst()
    {
      let sequence = nextSequenceToAssign
      nextSequenceToAssign += 1
      dispatchedCount += 1
      handlerInbox?.yield((sequence: sequence, frame: frame))
    }
  }

  fileprivate func handlerReturned(sequence: UInt64, reply: FrameReply) {
    switch reply {
    case .deferred(let work):
      startDeferredWork(sequence: sequence, work)
      // Nothing to write yet: go on with the next request.
      if !isClosed, let context {
        handleNextFrame(context: context)
        releaseHeldRead(context: context)
      }
    case .close:
      isCloseRequested = true
      replyFinished(sequence: sequence, reply: reply)
    case .respond, .respondParts, .noResponse:
      replyFinished(sequence: sequence, reply: reply)
    }
  }

  private func startDeferredWork(
    sequence: UInt64, _ work: @escaping @Sendable () async -> FrameReply
  ) {
    guard let context else {
      // Removed from the pipeline: nobody can write the reply, but the work still runs.
      Task { _ = await settleDeferredReply(work) }.cancel()
      replyFinished(sequence: sequence, reply: .noResponse)
      return
    }
    let promise = context.eventLoop.makePromise(of: FrameReply.self)
    let task = Task {
      promise.succeed(await settleDeferredReply(work))
    }
    deferredTasks[sequence] = task
    if isClosed {
      task.cancel()
    }
    promise.futureResult.assumeIsolated().whenSuccess { reply in
      self.deferredTasks.removeValue(forKey: sequence)
      self.replyFinished(sequence: sequence, reply: reply)
    }
  }

  private func replyFinished(sequence: UInt64, reply: FrameReply) {
    finishedReplies[sequence] = reply
    var wroteResponse = false
    while let next = finishedReplies.removeValue(forKey: nextSequenceToWrite) {
      nextSequenceToWrite += 1
      dispatchedCount -= 1
      registry.requestsFinished(1)
      guard !isClosed, let context else { continue }
      switch next {
      case .respond(let payload):
        context.write(
          wrapOutboundOut(.byteBuffer(context.channel.allocator.frameBuffer(payload: payload))),
          promise: nil)
        wroteResponse = true
      case .respondParts(let parts):
        // On failure the connection is closed: the loop drops the replies after this one.
        if writeParts(parts, context: context) {
          wroteResponse = true
        }
      case .noResponse:
        break
      case .close(let reason):
        logger.info("closing connection at the request handler's demand: \(reason)")
        wroteResponse = false
        markClosed()
        closeAfterPendingWrites(context: context)
      case .deferred:
        preconditionFailure("deferred replies are settled before they are queued for writing")
      }
    }
    guard !isClosed, let context else { return }
    if wroteResponse {
      scheduleFlush(context: context)
    }
    handleNextFrame(context: context)
    releaseHeldRead(context: context)
    closeIfDrained(context: context)
  }

  /// Writes one reply made of parts; on failure closes the connection and returns false.
  private func writeParts(_ parts: [FramePart], context: ChannelHandlerContext) -> Bool {
    let prepared: (writes: [IOData], handles: [NIOFileHandle])
    do {
      prepared = try frameWrites(parts: parts, allocator: context.channel.allocator)
    } catch {
      // The replies before this one still go out; none after it.
      logger.warning("closing connection, reply cannot be sent: \(error)")
      markClosed()
      closeAfterPendingWrites(context: context)
      return false
    }
    guard let last = prepared.writes.last else { return true }
    for write in prepared.writes.dropLast() {
      context.write(wrapOutboundOut(write), promise: nil)
    }
    // Writes complete in order, and all fail once one fails: the last one settles them all.
    let written = context.eventLoop.makePromise(of: Void.self)
    let handles = prepared.handles
    written.futureResult.assumeIsolated().whenComplete { _ in
      for handle in handles {
        try? handle.close()
      }
    }
    context.write(wrapOutboundOut(last), promise: written)
    return true
  }

  /// Replies finishing in the same event loop tick share one flush (one syscall).
  private func scheduleFlush(context: ChannelHandlerContext) {
    guard !isFlushScheduled else { return }
    isFlushScheduled = true
    context.eventLoop.assumeIsolated().execute {
      self.isFlushScheduled = false
      if !self.isClosed {
        context.flush()
      }
    }
  }

  private func closeIfDrained(context: ChannelHandlerContext) {
    if isStoppingReads && !isClosed && dispatchedCount == 0 && queuedFrames.isEmpty {
      markClosed()
      closeAfterPendingWrites(context: context)
    }
  }

  /// Closes once every reply written so far is on the wire: a plain close would drop writes
  /// still queued behind a full socket buffer.
  private func closeAfterPendingWrites(context: ChannelHandlerContext) {
    let written = context.eventLoop.makePromise(of: Void.self)
    context.writeAndFlush(
      wrapOutboundOut(.byteBuffer(context.channel.allocator.buffer(capacity: 0))),
      promise: written)
    written.futureResult.assumeIsolated().whenComplete { _ in
      context.close(promise: nil)
    }
  }

  private func markClosed() {
    guard !isClosed else { return }
    isClosed = true
    // Frames still in the inbox come back unhandled; a running handler call completes.
    isConnectionClosed.withLockedValue { $0 = true }
    handlerInbox?.finish()
    handlerInbox = nil
    if !queuedFrames.isEmpty {
      registry.requestsFinished(queuedFrames.count)
      queuedFrames.removeAll()
    }
    // Their replies can no longer be written; let waits (fetch long-polls) end early.
    for task in deferredTasks.values {
      task.cancel()
    }
  }
}
