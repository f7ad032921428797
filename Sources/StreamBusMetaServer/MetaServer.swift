import Logging
import ServiceLifecycle
import StreamBusTransport

/// A failure starting or running a metaserver (not a request error).
public struct MetaServerError: Error, Sendable, CustomStringConvertible {
  public let message: String

  public init(_ message: String) {
    self.message = message
  }

  public var description: String { message }
}

/// One metaserver process: Raft host, metadata state machine, controller, API and HTTP.
public final class MetaServer: Service, Sendable {
  public let configuration: MetaServerConfiguration
  public let metrics: MetaServerMetrics
  public let raftAddress: HostPort
  public let apiAddress: HostPort
  public let httpAddress: HostPort
  private let http: HTTPEndpointServer
  private let logger: Logger

  private init(
    configuration: MetaServerConfiguration, metrics: MetaServerMetrics, http: HTTPEndpointServer,
    logger: Logger
  ) {
    self.configuration = configuration
    self.metrics = metrics
    self.http = http
    self.raftAddress = configuration.raftListen
    self.apiAddress = configuration.apiListen
    self.httpAddress = http.localAddress
    self.logger = logger
  }

  public static func start(configuration: MetaServerConfiguration, logger: Logger) async throws
    -> MetaServer
  {
    let metrics = MetaServerMetrics()
    let http = try await HTTPEndpointServer.bind(
      listen: configuration.httpListen,
      handler: OperationalEndpoints(
        source: NotStartedStatus(), metrics: metrics,
        enableTestFaults: configuration.enableTestFaults),
      logger: logger)
    let server = MetaServer(
      configuration: configuration, metrics: metrics, http: http, logger: logger)
    if let readyFile = configuration.readyFile {
      try ReadyFile.write(
        path: readyFile, raft: server.raftAddress, api: server.apiAddress,
        http: server.httpAddress)
    }
    return server
  }

  public func run() async throws {
    try await http.run()
  }
}

private struct NotStartedStatus: OperationalStatusSource {
  func readiness() async -> Readiness {
    Readiness(isReady: false, reason: "Raft host not running")
  }
  func refreshMetrics() async {}
  func setTransportFaults(_ faults: TransportFaults) async {}
}
