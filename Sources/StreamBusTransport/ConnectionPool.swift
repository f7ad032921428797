import Logging
import NIOCore
import NIOPosix

/// One shared `FrameConnection` per "host:port", opened on first use and reopened on demand
/// after it failed or closed.
public actor ConnectionPool {
  private let configuration: FrameConnectionConfiguration
  private let logger: Logger
  private let eventLoopGroup: any EventLoopGroup
  private var connections: [HostPort: FrameConnection] = [:]
  /// Connects in progress, so concurrent callers share one attempt instead of racing.
  private var connecting: [HostPort: Task<FrameConnection, any Error>] = [:]
  private var isClosed = false

  public init(
    configuration: FrameConnectionConfiguration = FrameConnectionConfiguration(),
    logger: Logger,
    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
  ) {
    self.configuration = configuration
    self.logger = logger
    self.eventLoopGroup = eventLoopGroup
  }

  /// An open connection to `remote`, connecting when there is none or the last one failed.
  public func connection(to remote: HostPort) async throws -> FrameConnection {
    guard !isClosed else {
      throw TransportError(.connectionClosed, "connection pool is closed")
    }
    if let existing = connections[remote], existing.isActive {
      return existing
    }
    if let attempt = connecting[remote] {
      return try await attempt.value
    }
    let configuration = configuration
    let logger = logger
    let eventLoopGroup = eventLoopGroup
    let attempt = Task {
      try await FrameConnection.connect(
        to: remote, configuration: configuration, logger: logger, eventLoopGroup: eventLoopGroup)
    }
    connecting[remote] = attempt
    defer { connecting[remote] = nil }
    let connection = try await attempt.value
    if isClosed {
      await connection.close()
      throw TransportError(.connectionClosed, "connection pool is closed")
    }
    connections[remote] = connection
    return connection
  }

  /// Sends on the pooled connection to `remote`.
  public func send(_ request: [UInt8], to remote: HostPort, timeoutMs: Int64? = nil) async throws
    -> [UInt8]
  {
    try await connection(to: remote).send(request, timeoutMs: timeoutMs)
  }

  /// Closes every pooled connection; later calls fail.
  public func closeAll() async {
    isClosed = true
    let open = Array(connections.values)
    connections.removeAll()
    for connection in open {
      await connection.close()
    }
  }
}
