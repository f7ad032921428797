import Logging
import NIOConcurrencyHelpers
import StreamBusProtocol
import StreamBusTransport

/// Connections, correlation ids and the metadata cache, shared by one Admin, Producer or
/// Consumer. Requests are encoded here and responses decoded; broker errors in the response
/// header become `StreamBusError`s.
final class ClientCore: Sendable {
  let config: ClientConfig
  let pool: ConnectionPool
  private let nextCorrelationId = NIOLockedValueBox<Int32>(1)
  let metadata: MetadataCache

  init(config: ClientConfig) {
    precondition(!config.bootstrapBrokers.isEmpty, "ClientConfig needs at least one broker")
    self.config = config
    var connectionConfiguration = FrameConnectionConfiguration()
    connectionConfiguration.connectTimeoutMs = config.connectTimeoutMs
    connectionConfiguration.requestTimeoutMs = config.requestTimeoutMs
    let pool = ConnectionPool(configuration: connectionConfiguration, logger: config.logger)
    self.pool = pool
    self.metadata = MetadataCache(
      config: config,
      sender: MetadataSender(pool: pool, config: config, correlationIds: nextCorrelationId))
  }

  func close() async {
    await pool.closeAll()
  }

  /// Sends `request` to `broker` and returns the decoded response body.
  func send(_ request: Request, to broker: HostPort, timeoutMs: Int64? = nil) async throws
    -> Response
  {
    try await Self.send(
      request, to: broker, timeoutMs: timeoutMs, pool: pool, config: config,
      correlationIds: nextCorrelationId)
  }

  /// Sends a request that gets no response (produce with acks=0).
  func sendOneWay(_ request: Request, to broker: HostPort) async throws {
    let header = RequestHeader(
      apiKey: request.apiKey, apiVersion: 0,
      correlationId: Self.takeCorrelationId(nextCorrelationId), clientId: config.clientId)
    do {
      let connection = try await pool.connection(to: broker)
      try Task.checkCancellation()
      try await connection.sendOneWay(request.encodePayload(header: header))
    } catch {
      throw StreamBusError.wrapping(error, context: "\(request.apiKey.name) to \(broker)")
    }
  }

  static func takeCorrelationId(_ box: NIOLockedValueBox<Int32>) -> Int32 {
    box.withLockedValue { value in
      let id = value
      value = value == Int32.max ? 1 : value + 1
      return id
    }
  }

  static func send(
    _ request: Request, to broker: HostPort, timeoutMs: Int64?, pool: ConnectionPool,
    config: ClientConfig, correlationIds: NIOLockedValueBox<Int32>
  ) async throws -> Response {
    let apiKey = request.apiKey
    let header = RequestHeader(
      apiKey: apiKey, apiVersion: 0, correlationId: takeCorrelationId(correlationIds),
      clientId: config.clientId)
    let context = "\(apiKey.name) to \(broker)"
    let connection: FrameConnection
    let payload: [UInt8]
    do {
      connection = try await pool.connection(to: broker)
      // A caller that gave up while the connection was opening (a producer past its request
      // deadline) must not have the request written later, behind its retry.
      try Task.checkCancellation()
      payload = try await connection.send(
        request.encodePayload(header: header), timeoutMs: timeoutMs)
    } catch {
      throw StreamBusError.wrapping(error, context: context)
    }
    let responseHeader: ResponseHeader
    let body: Response?
    do {
      (responseHeader, body) = try Response.decode(apiKey: apiKey, version: 0, payload: payload)
    } catch {
      // The stream's framing is intact but its content cannot be trusted any more.
      await connection.close()
      throw StreamBusError.wrapping(error, context: context)
    }
    if responseHeader.errorCode != .none {
      throw StreamBusError.broker(
        responseHeader.errorCode, message: responseHeader.errorMessage.map { "\(context): \($0)" })
    }
    guard let body, body.apiKey == apiKey else {
      throw StreamBusError(.protocolViolation, "\(context): response without a body")
    }
    return body
  }
}

/// What the metadata cache needs to send its own requests, without a reference cycle.
struct MetadataSender: Sendable {
  let pool: ConnectionPool
  let config: ClientConfig
  let correlationIds: NIOLockedValueBox<Int32>

  func send(_ request: Request, to broker: HostPort) async throws -> Response {
    try await ClientCore.send(
      request, to: broker,
      timeoutMs: min(config.metadataAttemptTimeoutMs, config.requestTimeoutMs), pool: pool,
      config: config, correlationIds: correlationIds)
  }
}
