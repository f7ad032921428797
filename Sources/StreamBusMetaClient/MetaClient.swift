import Logging
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusTransport

/// Settings of a ``MetaClient``.
public struct MetaClientConfiguration: Sendable {
  /// Metaservers to ask first; any one of them that answers leads to the leader.
  public var bootstrap: [HostPort]
  /// How long one `send` may take in all, retries and leader changes included.
  public var requestTimeoutMs: Int64 = 30_000
  /// How long one try at one metaserver waits for its answer before moving on (a stopped
  /// process keeps its connection open but never answers).
  public var attemptTimeoutMs: Int64 = 2_000
  public var connectTimeoutMs: Int64 = 2_000
  /// Pause after every metaserver in the list failed once in a row; doubles per further
  /// round up to ``retryBackoffMaxMs``.
  public var retryBackoffMs: Int64 = 20
  public var retryBackoffMaxMs: Int64 = 100
  /// Sent in every request header, for the metaservers' logs.
  public var clientID: String = "meta-client"

  public init(bootstrap: [HostPort], requestTimeoutMs: Int64 = 30_000) {
    self.bootstrap = bootstrap
    self.requestTimeoutMs = requestTimeoutMs
  }
}

/// Sends metaserver API requests to the Raft leader of the metadata quorum.
///
/// Each `send` goes to the leader last seen; a NOT_LEADER answer that names the leader's
/// address is followed at once, and connection failures, timeouts of one try and "leader
/// unknown" answers move on through the bootstrap list with a short backoff after each
/// full round, until the request timeout. Errors are ``MetaClientError``s.
///
/// A write whose try timed out may have been applied; its retry can then fail with an
/// error such as TOPIC_ALREADY_EXISTS.
public actor MetaClient {
  public nonisolated let configuration: MetaClientConfiguration
  private let logger: Logger
  private let pool: ConnectionPool
  /// The metaserver that answered last (normally the leader); tried first.
  private var preferred: HostPort?
  /// Next bootstrap entry to try when there is no preferred metaserver.
  private var bootstrapIndex = 0
  private var nextCorrelationID: Int32 = 1
  private var isClosed = false

  public init(
    bootstrap: [HostPort], requestTimeoutMs: Int64 = 30_000,
    logger: Logger = MetaClient.silentLogger
  ) {
    self.init(
      configuration: MetaClientConfiguration(
        bootstrap: bootstrap, requestTimeoutMs: requestTimeoutMs),
      logger: logger)
  }

  public init(configuration: MetaClientConfiguration, logger: Logger = MetaClient.silentLogger) {
    precondition(configuration.requestTimeoutMs > 0, "requestTimeoutMs must be positive")
    precondition(configuration.attemptTimeoutMs > 0, "attemptTimeoutMs must be positive")
    self.configuration = configuration
    self.logger = logger
    var connectionConfiguration = FrameConnectionConfiguration()
    connectionConfiguration.connectTimeoutMs = min(
      configuration.connectTimeoutMs, configuration.requestTimeoutMs)
    connectionConfiguration.requestTimeoutMs = configuration.attemptTimeoutMs
    pool = ConnectionPool(configuration: connectionConfiguration, logger: logger)
  }

  /// The default: logs nothing (tools that print their own errors).
  public static let silentLogger = Logger(label: "streambus.metaclient") { _ in
    SwiftLogNoOpLogHandler()
  }

  /// The metaserver the next request goes to first: the leader as last seen, if any.
  public var knownLeader: HostPort? { preferred }

  func resetPreferred() {
    preferred = nil
  }

  /// Closes every connection; later sends fail with ``MetaClientError/Code/closed``.
  public func close() async {
    isClosed = true
    await pool.closeAll()
  }

  /// Sends `request` to the leader and returns its answer's body.
  ///
  /// - Parameter timeoutMs: overrides ``MetaClientConfiguration/requestTimeoutMs``.
  /// - Throws: ``MetaClientError``: `.server` with the error code when a metaserver refused
  ///   the request (other than NOT_LEADER), `.timeout` with the last error seen when no
  ///   answer came in time, `.protocolViolation` for an answer that does not decode.
  public func send<Request: MetaRequestBody>(_ request: Request, timeoutMs: Int64? = nil)
    async throws -> Request.Response
  {
    let apiName = MetaApiKey.name(Request.apiKey)
    guard !configuration.bootstrap.isEmpty || preferred != nil else {
      throw MetaClientError(.invalidArgument, "no metaservers to send \(apiName) to")
    }
    let totalMs = timeoutMs ?? configuration.requestTimeoutMs
    let clock = ContinuousClock()
    let start = clock.now
    let deadline = start + .milliseconds(totalMs)
    var failures = 0
    var attempts = 0
    var hintsFollowed: Set<HostPort> = []
    var lastError: String?

    while true {
      if isClosed {
        throw MetaClientError(.closed, "the metaserver client is closed")
      }
      if Task.isCancelled {
        throw MetaClientError(.closed, "\(apiName) cancelled")
      }
      let now = clock.now
      if now >= deadline {
        throw timeoutError(
          apiName: apiName, totalMs: totalMs, attempts: attempts, lastError: lastError)
      }
      // Rounded up, so a try never ends before the deadline it was given.
      let remainingMs = Self.milliseconds(deadline - now) + 1
      let target = nextTarget()
      attempts += 1
      let attemptMs = min(remainingMs, configuration.attemptTimeoutMs + request.serverWaitMs)
      let outcome = await attempt(request, to: target, timeoutMs: attemptMs)
      switch outcome {
      case .answered(let body):
        preferred = target
        return body
      case .refused(let header):
        preferred = target
        throw MetaClientError.server(header.errorCode, message: header.errorMessage)
      case .fatal(let error):
        throw error
      case .notLeader(let hint, let message):
        lastError = "\(target) is not the leader (\(message))"
        if let leader = hint, leader != target, !hintsFollowed.contains(leader) {
          hintsFollowed.insert(leader)
          preferred = leader
          logger.debug(
            "following the leader hint", metadata: ["from": "\(target)", "leader": "\(leader)"])
          continue
        }
        preferred = hint.flatMap { $0 == target ? nil : $0 }
      case .unreachable(let description):
        lastError = "\(target): \(description)"
        if preferred == target {
          preferred = nil
        }
      }
      failures += 1
      if preferred == nil {
        bootstrapIndex += 1
      }
      logger.debug(
        "metaserver try failed",
        metadata: ["api": "\(apiName)", "failures": "\(failures)", "error": "\(lastError ?? "")"])
      // Pause once per round through the list, not after each member: a dead leader's
      // neighbours should be asked at once, a quorum without a leader not hammered.
      let roundSize = max(configuration.bootstrap.count, 1)
      if failures % roundSize == 0 {
        let round = failures / roundSize
        let backoffMs = min(
          configuration.retryBackoffMs << min(round - 1, 16), configuration.retryBackoffMaxMs)
        let wakeUp = min(clock.now + .milliseconds(backoffMs), deadline)
        try? await Task.sleep(until: wakeUp, clock: clock)
      }
    }
  }

  private enum Outcome<Body: Sendable>: Sendable {
    case answered(Body)
    case refused(ResponseHeader)
    case notLeader(HostPort?, message: String)
    case unreachable(String)
    case fatal(MetaClientError)
  }

  private func attempt<Request: MetaRequestBody>(
    _ request: Request, to target: HostPort, timeoutMs: Int64
  ) async -> Outcome<Request.Response> {
    let version = MetaApiKey.supportedVersions(Request.apiKey)?.upperBound ?? 0
    let header = RequestHeader(
      apiKey: Request.apiKey, apiVersion: version, correlationId: takeCorrelationID(),
      clientId: configuration.clientID)
    let payload = MetaMessage.encodeRequestPayload(request, header: header)
    let answer: [UInt8]
    do {
      answer = try await pool.send(payload, to: target, timeoutMs: timeoutMs)
    } catch let error as TransportError {
      switch error.code {
      case .invalidRequest:
        return .fatal(MetaClientError(.invalidArgument, error.message))
      default:
        return .unreachable("\(error)")
      }
    } catch {
      return .unreachable("\(error)")
    }
    do {
      let (responseHeader, reply) = try MetaMessage.decodeReply(
        to: Request.self, version: version, payload: answer)
      switch reply {
      case .success(let body):
        return .answered(body)
      case .notLeader(let body):
        let hint = body.leaderAddress.flatMap { try? HostPort(parsing: $0) }
        let message =
          body.leaderAddress.map { "leader \(body.leaderID) at \($0)" } ?? "leader unknown"
        return .notLeader(hint, message: message)
      case .failure:
        return .refused(responseHeader)
      }
    } catch {
      return .fatal(
        MetaClientError(
          .protocolViolation,
          "\(target) sent an answer to \(MetaApiKey.name(Request.apiKey)) that does not decode: \(error)"
        ))
    }
  }

  private func nextTarget() -> HostPort {
    if let preferred {
      return preferred
    }
    let bootstrap = configuration.bootstrap
    precondition(!bootstrap.isEmpty, "checked by send")
    return bootstrap[bootstrapIndex % bootstrap.count]
  }

  private func takeCorrelationID() -> Int32 {
    let id = nextCorrelationID
    nextCorrelationID = nextCorrelationID == Int32.max ? 1 : nextCorrelationID + 1
    return id
  }

  private func timeoutError(apiName: String, totalMs: Int64, attempts: Int, lastError: String?)
    -> MetaClientError
  {
    let list = configuration.bootstrap.map(\.description).joined(separator: ",")
    return MetaClientError(
      .timeout,
      "no metaserver answered \(apiName) within \(totalMs) ms "
        + "(metaservers \(list), \(attempts) tries)",
      lastError: lastError ?? "none")
  }

  private static func milliseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1000 + attoseconds / 1_000_000_000_000_000
  }
}
